"""Processes the tests start: the `xmsearch` command, a private redis-server, a worker, any process for
a block, a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis

from tests.conftest import ROOT

CLI = [sys.executable, "-c", "from xmsearch.cli import main; main()"]
HEAVY = ("torch", "transformers")  # what a command that encodes nothing must never import
PROBED_CLI = [  # the command, saying at exit on stderr which of HEAVY it imported ("HEAVY: []": none)
    sys.executable,
    "-c",
    f"import atexit, sys; atexit.register(lambda: print('HEAVY:', sorted(set({HEAVY!r}) & set(sys.modules)), "
    "file=sys.stderr)); from xmsearch.cli import main; main()",
]


@contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """The ASGI app served by uvicorn (with `config`) on a free loopback port in a thread, until the
    block ends: its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server with an append-only file, so that a restart keeps the queue."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        self.process = subprocess.Popen([*args, "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class Worker:
    def __init__(self, env: dict[str, str], log: Path, *options: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*CLI, "worker", *options], env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True
            )
        self._wait_for(" ready.", 90)  # Celery's "celery@host ready." (not "already", as in a warning)

    def _wait_for(self, text: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"no {text!r} from the worker in {seconds}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Warm shutdown: the worker process closes (and unlocks) its store."""
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(60)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@contextmanager
def started(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process (its own session, output to `log`) for the block; stopped with SIGTERM after it."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True)
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def wait_until(what: str, check: Callable[[], bool], log: Path, seconds: float = 120) -> None:
    """Poll `check` until it holds; past `seconds`, fail with the end of `log`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} not there after {seconds} s:\n{log.read_text(errors='replace')[-3000:]}")

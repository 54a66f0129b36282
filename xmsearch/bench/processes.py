"""Processes the benchmarks start and wait for: the `xmsearch` command, a free loopback port."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable

from xmsearch.retriever.errors import PermanentError

CLI = [sys.executable, "-c", "from xmsearch.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise PermanentError(f"bench: {what} within {seconds:.0f} s")

"""Fault tests (slow): what was accepted survives SIGKILLs of the process that accepted it."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.helpers import CLI, free_port


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        api = subprocess.Popen([*CLI, "serve"], env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True)
    url = f"http://127.0.0.1:{env['XMSEARCH_API_PORT']}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return api
        if api.poll() is not None:
            raise RuntimeError(f"serve exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"serve was not ready in 120 s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow  # ten restarts of a server that loads the model
def test_a_sigkilled_embedded_server_loses_no_accepted_document(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Clients submit while the embedded server is SIGKILLed at random moments, ten times; after a
    restart every answered job is known and done, and every accepted document is stored once."""
    port = free_port()
    env = {
        **os.environ,
        "XMSEARCH_MODEL": str(tiny_checkpoint),
        "XMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "XMSEARCH_API_AUTH": "disabled",
        "XMSEARCH_API_PORT": str(port),
        "XMSEARCH_DEVICE": "cpu",
    }
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(11)
    accepted: dict[str, list[str]] = {}
    sent = 0
    for _ in range(10):
        api = _serve(env, tmp_path / "api.log")
        kill_at = time.monotonic() + rng.uniform(0.3, 2.5)
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < kill_at:
                docs = [
                    {"id": f"d{sent + i}", "text": f"Note {sent + i} about the old mill.", "language": "en"}
                    for i in range(5)
                ]
                sent += 5
                try:
                    answer = client.post(f"{url}/documents", json={"documents": docs})
                except httpx.TransportError:
                    break
                if answer.status_code == 202:
                    accepted[answer.json()["id"]] = [d["id"] for d in docs]
        os.killpg(api.pid, signal.SIGKILL)
        api.wait(30)
    api = _serve(env, tmp_path / "api.log")
    try:
        with httpx.Client(timeout=30) as client:
            for job_id in accepted:
                job = client.get(f"{url}/jobs/{job_id}").json()
                deadline = time.monotonic() + 120
                while job["status"] in ("queued", "running") and time.monotonic() < deadline:
                    time.sleep(0.2)
                    job = client.get(f"{url}/jobs/{job_id}").json()
                assert job["status"] == "done", job  # known after the kills, with its true status
            stored, cursor = [], None
            while True:
                page = client.get(
                    f"{url}/documents", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}
                ).json()
                stored += [d["id"] for d in page["documents"]]
                if (cursor := page["next"]) is None:
                    break
            status = client.get(f"{url}/status").json()
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        api.wait(60)
    wanted = {doc for docs in accepted.values() for doc in docs}
    assert len(accepted) >= 10 and wanted <= set(stored)  # 0 accepted documents lost
    assert len(stored) == len(set(stored)) == status["points"]  # 0 duplicated (one chunk each)
    print(f"\n{len(accepted)} jobs ({len(wanted)} documents) accepted across 10 SIGKILLs: all stored once")

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
import redis

from tests.conftest import ROOT
from tests.helpers import CLI, RedisServer, Worker, free_port
from xmsearch.ingest.documents import Document
from xmsearch.ingest.pipeline import Indexer
from xmsearch.ingest.reindex_state import ReindexState, load
from xmsearch.retriever.components import index_store
from xmsearch.retriever.index.stores import StoreLockedError
from xmsearch.retriever.model.tiny import make_tiny
from xmsearch.settings import Settings
from xmsearch.workers.reindexing import read


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


@pytest.mark.slow  # twenty worker restarts, each waiting for the killed worker's batch to come back
def test_sigkilled_workers_lose_nothing_and_their_batches_come_back(
    tiny_checkpoint: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    """A distributed ingest while its worker is SIGKILLed twenty times mid-task: nothing lost, nothing
    duplicated, no healthy document dead-lettered; each killed batch is restored to the queue within
    the visibility timeout plus one restore sweep (measured and printed)."""
    import json
    import statistics

    import redis

    from tests.helpers import Worker
    from xmsearch.workers.app import RESTORE_SWEEP_S
    from xmsearch.workers.jobs import DeadLetters, JobStore

    # FAULT_VISIBILITY_S and FAULT_KILLS measure other settings (e.g. the 60 s default, a few kills)
    visibility, kills = int(os.environ.get("FAULT_VISIBILITY_S", "10")), int(os.environ.get("FAULT_KILLS", "20"))
    env = {
        **os.environ,
        "XMSEARCH_MODEL": str(tiny_checkpoint),
        "XMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "XMSEARCH_BROKER_URL": redis_server.url,
        "XMSEARCH_DEVICE": "cpu",
        "XMSEARCH_VISIBILITY_TIMEOUT": str(visibility),
        "XMSEARCH_PRODUCER_BATCH_DOCS": "8",
        # over 10k points: no codebook training (minutes of CPU beside the tasks: test_centroids.py)
        "XMSEARCH_FIRST_STAGE_MIN_POINTS": "1000000",
    }
    text = "the old mill turns by the river. " * 600  # many chunks: a task takes a while (~0.4 s here)
    n_docs = 200 * kills * max(1, visibility // 10) ** 2  # enough work to outlast every kill and its wait
    docs = [{"id": f"d{i}", "text": f"Note {i}: {text}", "language": "en"} for i in range(n_docs)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    sent = subprocess.run(
        [*CLI, "ingest", str(path), "--no-wait", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    job_id = json.loads(sent.stdout)["id"]
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    delays: list[float] = []
    worker = Worker(env, tmp_path / "worker-0.log")
    try:
        for kill in range(1, kills + 1):
            deadline = time.monotonic() + 120
            while not client.hlen("unacked") and time.monotonic() < deadline:
                time.sleep(0.01)
            in_flight = set(client.hkeys("unacked"))  # the batch the worker is running
            assert in_flight, f"kill {kill}: the worker took no task ({len(delays)} delays: {delays})"
            worker.kill()
            killed = time.monotonic()
            worker = Worker(env, tmp_path / f"worker-{kill}.log")  # a restart: it also sweeps for lost tasks
            ready = time.monotonic() - killed
            while in_flight & set(client.hkeys("unacked")) and time.monotonic() < killed + 180:
                time.sleep(0.05)
            delays.append(time.monotonic() - killed)
            # found by the first sweep after both the timeout and the restart (a running worker sweeps)
            assert delays[-1] <= max(visibility, ready) + 2 * RESTORE_SWEEP_S + 5, (kill, ready, delays)
        jobs = JobStore(client)  # the rest of the work, however long it takes here, as long as it goes on
        done, moved = -1, time.monotonic()
        while (job := jobs.get(job_id) or {}).get("status") not in ("done", "failed"):
            if job.get("processed", 0) != done:
                done, moved = job.get("processed", 0), time.monotonic()
            assert time.monotonic() - moved < 120, f"the job made no progress for 120 s: {job}"
            time.sleep(0.5)
    finally:
        worker.stop()
    assert job["status"] == "done" and job["failed"] == 0 and DeadLetters(client).entries() == []
    from xmsearch.retriever.components import index_store
    from xmsearch.settings import Settings

    store = index_store(Settings(model=str(tiny_checkpoint), data_dir=tmp_path / "data"))
    store.open(create=False)
    try:
        page, total, _ = store.documents(limit=len(docs))
    finally:
        store.close()
    assert total == len(docs) == len({p.document_id for p in page})  # 0 lost (point ids: never twice)
    spread = f"{min(delays):.1f} / {statistics.median(delays):.1f} / {max(delays):.1f} s"
    print(
        f"\n{kills} SIGKILLs, {n_docs} documents: redelivery {spread} (min / median / max) with a {visibility} s "
        f"visibility timeout and a {RESTORE_SWEEP_S} s sweep"
    )


REINDEXED = 400  # documents of the reindex fault tests


def _reindex_corpus(model: Path, data: Path) -> Settings:
    """A collection of REINDEXED documents (two chunks each) built with `model`; its settings."""
    settings = Settings(model=str(model), data_dir=data, device="cpu", ingest_batch_size=8)
    indexer = Indexer.from_settings(settings)
    words = ["the", "old", "mill", "turns", "by", "the", "river", "under", "the", "bridge", "all", "day", "long"]
    indexer.ingest(
        Document(id=f"d{i}", text=" ".join(words[(i + j) % len(words)] for j in range(80)), language="en")
        for i in range(REINDEXED)
    )
    indexer.close()
    return settings


def _points(settings: Settings, version: str) -> tuple[int, str | None]:
    """The points of `version`, and the version searched (once a killed process has let go of the store)."""
    store = index_store(settings)
    deadline = time.monotonic() + 60
    while True:
        try:
            store.open(create=False)
            break
        except StoreLockedError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    try:
        return {v["version"]: v["points"] for v in store.collections()}[version], store.current_version()
    finally:
        store.close()


def _killed_mid_copy(state: ReindexState | None) -> bool:
    return state is not None and state.step == "copying" and state.processed >= 40


def _check_resumed(where: str, settings: Settings, killed: ReindexState, final: ReindexState, stored: int) -> None:
    """The resumed reindex completed the version, encoding exactly the chunks not `stored` at the kill."""
    assert killed.version is not None and killed.processed < REINDEXED  # killed mid-copy
    assert final.step == "done" and final.resumed and final.version == killed.version, final
    total, current = _points(settings, killed.version)
    assert current == killed.version
    assert 0 < stored < total and final.encoded == total - stored  # nothing stored before was encoded again
    print(f"\n{where}: killed at {killed.processed} of {REINDEXED} documents ({stored} of {total} chunks stored); the "
          f"resumed run encoded {final.encoded}")  # fmt: skip


@pytest.mark.slow  # a server (or CLI) that loads two models, killed, then started again
@pytest.mark.parametrize("where", ["serve", "cli"])
def test_a_sigkilled_reindex_resumes_and_encodes_each_chunk_once(
    tiny_checkpoint: Path, tmp_path: Path, where: str
) -> None:
    """A reindex SIGKILLed mid-copy, in `serve` or in the CLI, resumes when that is started again: the
    version completes, and the resumed run encodes exactly the chunks the killed one had not stored."""
    other = make_tiny(tmp_path / "tiny-b", seed=1)
    data = tmp_path / "data"
    settings = _reindex_corpus(tiny_checkpoint, data)
    port = free_port()
    env = {
        **os.environ,
        "XMSEARCH_MODEL": str(tiny_checkpoint),
        "XMSEARCH_DATA_DIR": str(data),
        "XMSEARCH_API_AUTH": "disabled",
        "XMSEARCH_API_PORT": str(port),
        "XMSEARCH_DEVICE": "cpu",
        "XMSEARCH_INGEST_BATCH_SIZE": "8",
    }
    url = f"http://127.0.0.1:{port}"
    start = [*CLI, "reindex", "start", "--model", str(other), "--json"]
    log = tmp_path / f"{where}.log"
    if where == "serve":
        process = _serve(env, log)
        assert httpx.post(f"{url}/reindex", json={"model": str(other)}, timeout=30).status_code == 202
    else:
        with log.open("ab") as out:
            process = subprocess.Popen(start, env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True)
    state_file = data / "reindex" / "xmsearch.json"
    deadline = time.monotonic() + 120
    while not _killed_mid_copy(state := load(state_file)):
        assert time.monotonic() < deadline and process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
    assert state is not None
    stored, _ = _points(settings, str(state.version))
    if where == "serve":
        process = _serve(env, log)  # it resumes the reindex it finds unfinished
        try:
            while (final := ReindexState.model_validate(httpx.get(f"{url}/reindex", timeout=30).json())).running:
                assert time.monotonic() < deadline + 120, final
                time.sleep(0.2)
            hits = httpx.post(f"{url}/search", json={"query": "old mill", "language": "en"}, timeout=30).json()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
        assert hits["hits"]
    else:
        rerun = subprocess.run(start, env=env, cwd=ROOT, capture_output=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr.decode()[-3000:]
        final = ReindexState.model_validate_json(rerun.stdout)
    _check_resumed(where, settings, state, final, stored)


@pytest.mark.slow  # a worker that loads two models, killed mid-reindex, then started again
def test_a_worker_sigkilled_mid_reindex_resumes_it_when_it_starts_again(
    tiny_checkpoint: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    """The distributed mode: the worker that owns the store runs the reindex; SIGKILLed mid-copy and
    started again, it resumes the reindex by itself, encoding only the chunks not stored before."""
    other = make_tiny(tmp_path / "tiny-b", seed=1)
    data = tmp_path / "data"
    settings = _reindex_corpus(tiny_checkpoint, data)
    env = {
        **os.environ,
        "XMSEARCH_MODEL": str(tiny_checkpoint),
        "XMSEARCH_DATA_DIR": str(data),
        "XMSEARCH_DEVICE": "cpu",
        "XMSEARCH_INGEST_BATCH_SIZE": "8",
        "XMSEARCH_BROKER_URL": redis_server.url,
    }
    broker = redis.Redis.from_url(redis_server.url, decode_responses=True)
    worker = Worker(env, tmp_path / "worker.log")
    follower = subprocess.Popen([*CLI, "reindex", "start", "--model", str(other)], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not _killed_mid_copy(state := read(broker, "xmsearch")):
        assert time.monotonic() < deadline, state
        time.sleep(0.01)
    worker.kill()
    follower.kill()
    assert state is not None
    stored, _ = _points(settings, str(state.version))
    worker = Worker(env, tmp_path / "worker.log")  # resumes the reindex it finds unfinished
    try:
        while (final := read(broker, "xmsearch")) is None or final.running or final.pid == state.pid:
            assert time.monotonic() < deadline + 120, final
            time.sleep(0.2)
    finally:
        worker.stop()
    _check_resumed("worker", settings, state, final, stored)

"""The distributed mode with a real Redis and real worker processes: delivery exactly once, rejects,
re-ingestion, a poison document, a worker killed mid-batch, Redis restarted during a run.

The tests start their own redis-server (on a free port, in a temporary folder); where the binary is
missing they skip and say so. The store folder belongs to the worker; the tests read it after the
worker has stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import ROOT
from tests.helpers import CLI, PROBED_CLI, RedisServer, Worker, free_port
from xmsearch.ingest.job import Job
from xmsearch.ingestor import Ingestor
from xmsearch.retriever import Encoder
from xmsearch.retriever.index.schema import IndexSpec
from xmsearch.retriever.index.stores.edge import EdgeStore
from xmsearch.settings import Settings
from xmsearch.workers.app import DELETE_TASK, INDEX_TASK, QUEUE, RESTORE_SWEEP_S, make_app
from xmsearch.workers.dispatch import TaskQueue
from xmsearch.workers.jobs import JobStore

Env = dict[str, str]


@pytest.fixture
def env(redis_server: RedisServer, tiny_checkpoint: Path, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XMSEARCH_BROKER_URL": redis_server.url,
        "XMSEARCH_MODEL": str(tiny_checkpoint),
        "XMSEARCH_DATA_DIR": str(tmp_path / "data"),
        "XMSEARCH_DEVICE": "cpu",
        "XMSEARCH_DETECT_LANGUAGE": "false",
        "XMSEARCH_PRODUCER_BATCH_DOCS": "4",
        "XMSEARCH_VISIBILITY_TIMEOUT": "8",
        # some tests store over 10k points: no codebook training (minutes of CPU: test_centroids.py)
        "XMSEARCH_FIRST_STAGE_MIN_POINTS": "1000000",
    }


def _docs(n: int, words: int = 20) -> list[dict[str, object]]:
    return [
        {
            "id": f"doc-{i}",
            "text": " ".join(f"river{i} mill{j} bridge." for j in range(words)),
            "language": "en",
            "metadata": {"i": i},
        }
        for i in range(n)
    ]


def _write(path: Path, *records: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _start(args: list[str], env: Env) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def _cli(args: list[str], env: Env) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _ingest(path: Path, env: dict[str, str], *extra: str) -> tuple[int, dict[str, object]]:
    result = subprocess.run(
        [*CLI, "ingest", str(path), "--json", *extra], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def _stored(env: dict[str, str], encoder: Encoder) -> dict[str, list[int]]:
    spec = IndexSpec(model_id=encoder.spec.model_id, dim=encoder.dim, centroids=True)  # the default first stage
    store = EdgeStore(Path(env["XMSEARCH_DATA_DIR"]) / "edge", "xmsearch", spec)
    store.open(create=False)
    try:
        chunks = store.chunk_hashes([f"doc-{i}" for i in range(1000)] + ["good", "poison"])
        assert store.count() == sum(len(c) for c in chunks.values())  # no point stored twice
        return {doc: sorted(c) for doc, c in chunks.items()}
    finally:
        store.close()


def test_jsonl_lands_exactly_once_with_bad_records_reported(
    env: dict[str, str], tmp_path: Path, encoder: Encoder
) -> None:
    worker = Worker(env, tmp_path / "worker.log")
    try:
        path = _write(tmp_path / "docs.jsonl", *_docs(10), "{not json", {"id": "x"}, {"id": 3, "text": "t"})
        code, job = _ingest(path, env, "--rejects", str(tmp_path / "rejects.jsonl"))
        assert code == 3 and job["status"] == "done"
        assert job["accepted"] == job["processed"] == 10 and job["rejected"] == 3 and job["failed"] == 0
        assert job["encoded"] == job["written"] > 0
        reasons = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
        assert [r["location"] for r in reasons] == ["line 11", "line 12", "line 13"]
        code, again = _ingest(path, env)
        assert again["encoded"] == 0 and again["written"] == 0 and again["skipped_unchanged"] == 10
        changed = _write(tmp_path / "changed.jsonl", {**_docs(1)[0], "text": "river0 has a new mill."})
        _, third = _ingest(changed, env)
        assert third["encoded"] == 1 and third["deleted"] >= 0
        deleted = _cli(["delete", "doc-9"], env)  # through the worker, which owns the store
        assert deleted.returncode == 0, deleted.stderr
    finally:
        worker.stop()
    stored = _stored(env, encoder)
    assert sorted(stored) == sorted(f"doc-{i}" for i in range(9))
    assert stored["doc-0"] == [0]


def _scrape(port: int) -> dict[str, float]:
    """The samples a worker's metrics endpoint serves, by name and labels as written."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    lines = (line.rpartition(" ") for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, _, value in lines}


def test_poison_document_is_dead_lettered_and_the_rest_continue(
    env: dict[str, str], tmp_path: Path, encoder: Encoder
) -> None:
    port = free_port()
    worker = Worker({**env, "XMSEARCH_WORKER_METRICS_PORT": str(port)}, tmp_path / "worker.log")
    try:
        path = _write(
            tmp_path / "docs.jsonl",
            {"id": "good", "text": "a good document."},
            {"id": "poison", "text": "t", "language": "klingon"},
        )
        code, job = _ingest(path, env)
        assert code == 3 and job["failed"] == 1 and job["written"] == 1
        listed = subprocess.run(
            [*CLI, "dlq", "list", "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        entries = json.loads(listed.stdout)
        assert [d["id"] for d in entries[0]["documents"]] == ["poison"]
        assert "'klingon' is not a language code" in entries[0]["reason"]
        # the worker's metrics: its pool process's tasks and documents, and the queue read from Redis
        metrics = _scrape(port)
        assert metrics['xmsearch_tasks_total{outcome="succeeded",task="xmsearch.index"}'] >= 1
        assert metrics['xmsearch_task_seconds_count{task="xmsearch.index"}'] >= 1
        assert metrics['xmsearch_documents_total{outcome="indexed"}'] == 1
        assert metrics["xmsearch_chunks_encoded_total"] == 1
        assert metrics["xmsearch_dead_letters_total"] == 1 and metrics["xmsearch_dead_letters_kept"] == 1
        assert metrics["xmsearch_queue_depth"] == 0 and metrics["xmsearch_queue_unacked"] == 0
    finally:
        worker.stop()
    assert sorted(_stored(env, encoder)) == ["good"]


@pytest.mark.slow
def test_worker_killed_mid_batch_then_restarted(env: Env, tmp_path: Path, encoder: Encoder) -> None:
    env = {**env, "XMSEARCH_PRODUCER_BATCH_DOCS": "1000", "XMSEARCH_PRODUCER_BATCH_CHARS": "100000000"}
    log = tmp_path / "worker.log"
    worker = Worker(env, log)
    path = _write(tmp_path / "docs.jsonl", *_docs(400, words=300))  # one task of several seconds
    producer = subprocess.Popen(
        [*CLI, "ingest", str(path), "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    worker._wait_for("received", 60)
    time.sleep(0.5)  # the batch is being encoded and written
    worker.kill()
    assert "succeeded" not in log.read_text()
    worker = Worker(env, log)  # the unacknowledged batch comes back after the visibility timeout
    try:
        out, _ = producer.communicate(timeout=300)
        job = json.loads(out.strip().splitlines()[-1])
        assert job["status"] == "done" and job["failed"] == 0
    finally:
        worker.stop()
    stored = _stored(env, encoder)
    assert sorted(stored) == sorted(f"doc-{i}" for i in range(400))


@pytest.mark.slow
def test_redis_restarted_during_a_run(
    env: dict[str, str], redis_server: RedisServer, tmp_path: Path, encoder: Encoder
) -> None:
    worker = Worker(env, tmp_path / "worker.log")
    path = _write(tmp_path / "docs.jsonl", *_docs(60, words=60))
    producer = subprocess.Popen(
        [*CLI, "ingest", str(path), "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        worker._wait_for("received", 60)
        redis_server.stop()
        time.sleep(2)
        redis_server.start()
        out, _ = producer.communicate(timeout=300)
        job = json.loads(out.strip().splitlines()[-1])
        assert job["status"] == "done" and job["accepted"] == 60 and job["failed"] == 0
    finally:
        worker.stop()
    assert sorted(_stored(env, encoder)) == sorted(f"doc-{i}" for i in range(60))


def test_redis_stream_intake_with_reclaim(
    env: Env, redis_server: RedisServer, tmp_path: Path, encoder: Encoder
) -> None:
    """Apps push to the stream; entries a dead consumer read but never acknowledged are reclaimed."""
    from xmsearch.workers.intake import GROUP, STREAM, ensure_group
    from xmsearch.workers.jobs import DeadLetters, JobStore

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    ensure_group(client)
    docs = _docs(6)
    client.xadd(STREAM, {"document": json.dumps(docs[0])})
    client.xreadgroup(GROUP, "dead-consumer", {STREAM: ">"}, count=1)  # read, never acknowledged
    for doc in docs[1:]:
        client.xadd(STREAM, {"document": json.dumps(doc)})
    client.xadd(STREAM, {"document": "{broken"})
    client.xadd(STREAM, {"other": "field"})
    worker = Worker(env, tmp_path / "worker.log")
    intake = _start(
        ["intake", "--consumer", "intake-1", "--claim-idle", "0.5"], {**env, "XMSEARCH_PRODUCER_MAX_WAIT": "0.2"}
    )
    jobs = JobStore(client)
    try:
        deadline, job = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            job = jobs.get("intake-intake-1") or {}
            if job.get("accepted") == 6 and job.get("tasks_done") == job.get("tasks_sent"):
                break
            time.sleep(0.3)
        assert job["accepted"] == 6 and job["rejected"] == 2 and job["failed"] == 0
        assert client.xpending(STREAM, GROUP)["pending"] == 0  # everything acknowledged
        reasons = [e["reason"] for e in DeadLetters(client).entries()]
        assert any("invalid JSON" in r for r in reasons) and any("no 'document' field" in r for r in reasons)
    finally:
        intake.terminate()
        intake.wait(30)
        worker.stop()
    assert sorted(_stored(env, encoder)) == sorted(f"doc-{i}" for i in range(6))


def test_dead_letters_can_be_requeued(env: Env, tmp_path: Path, encoder: Encoder) -> None:
    strict = {**env, "XMSEARCH_UNKNOWN_LANGUAGE": "error"}
    worker = Worker(strict, tmp_path / "worker.log")
    try:
        path = _write(tmp_path / "docs.jsonl", {"id": "good", "text": "a fine document", "language": "sw"})
        code, job = _ingest(path, strict)
        assert code == 3 and job["failed"] == 1
        assert len(json.loads(_cli(["dlq", "list", "--json"], env).stdout)) == 1
    finally:
        worker.stop()
    worker = Worker(env, tmp_path / "worker.log")  # the cause is fixed: no adapter -> the fallback one
    try:
        assert _cli(["dlq", "requeue"], env).returncode == 0
        assert json.loads(_cli(["dlq", "list", "--json"], env).stdout) == []
        client = redis.Redis.from_url(env["XMSEARCH_BROKER_URL"], decode_responses=True)
        jobs = JobStore(client)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (jobs.get(job["id"]) or {}).get("written", 0) < 1:  # type: ignore[arg-type]
            time.sleep(0.3)
    finally:
        worker.stop()
    assert sorted(_stored(env, encoder)) == ["good"]


def _unit_context(
    redis_url: str, indexer: object, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> tuple[TaskQueue, list[tuple[str, list[Any]]]]:
    """The tasks' process context with this indexer and a queue on the private Redis, whose sends are
    recorded (task name, args) instead of reaching a worker."""
    from xmsearch.workers import tasks

    queue = TaskQueue(Settings(broker_url=redis_url, **settings))
    sent: list[tuple[str, list[Any]]] = []
    monkeypatch.setattr(queue.app, "send_task", lambda name, args, **_: sent.append((name, args)))
    monkeypatch.setitem(tasks._process, "context", tasks.WorkerContext(indexer, queue))  # type: ignore[arg-type]
    monkeypatch.setattr(queue.jobs, "holds_tasks", lambda: True)  # the recorded sends stand for tasks in the broker
    return queue, sent


def test_a_failing_batch_is_halved_until_the_poison_stands_alone(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unit test of the task body: an unexpected error splits the batch; a lone document dead-letters."""
    from xmsearch.workers import tasks

    class Exploding:
        def write(self, docs: list[object], job: object, on_reject: object) -> None:
            raise RuntimeError("the encoder crashed")

    queue, sends = _unit_context(redis_server.url, Exploding(), monkeypatch)
    jobs = queue.jobs
    jobs.create("j", "test")
    docs = [{"id": f"d{i}", "text": "t"} for i in range(4)]
    tasks.index_documents.push_request(id="t1", retries=0)
    try:
        tasks.index_documents.run("j", docs)
        sent = [args[1] for _, args in sends]
        assert sent == [docs[:2], docs[2:]]
        with pytest.raises(RuntimeError, match="the encoder crashed"):
            tasks.index_documents.run("j", docs[:1])
    finally:
        tasks.index_documents.pop_request()
    job = jobs.get("j") or {}
    assert job["tasks_sent"] == 2 and job["tasks_done"] == 1


def test_a_refused_document_is_dead_lettered_by_its_key_and_requeued_whole(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, encoder: Encoder
) -> None:
    """An id with a quote, a backslash and a line break, of a tenant: its dead letter holds the document
    as sent (tenant included), and requeueing sends it back as it was."""
    from xmsearch.ingest.pipeline import Indexer
    from xmsearch.workers import tasks

    settings = Settings(device="cpu", store="local", data_dir=tmp_path, detect_language=False)
    queue, sends = _unit_context(redis_server.url, Indexer.from_settings(settings, encoder), monkeypatch)
    queue.jobs.create("j", "test")
    odd = {"id": 'he said "hi" \\ then\nleft', "text": "a refused text.", "language": "klingon", "tenant": "acme"}
    fine = {"id": "fine", "text": "a fine text.", "language": "en", "tenant": "acme"}
    tasks.index_documents.push_request(id="t1", retries=0)
    try:
        tasks.index_documents.run("j", [fine, odd])
    finally:
        tasks.index_documents.pop_request()
    [letter] = queue.dead.entries()
    assert letter["documents"] == [odd] and "klingon" in letter["reason"]
    job = queue.jobs.get("j") or {}
    assert job["failed"] == 1 and job["written"] == 1 and job["tasks_done"] == 1
    assert queue.requeue().requeued == 1 and queue.dead.entries() == []
    assert sends == [(INDEX_TASK, ["j", [odd]])]
    assert (queue.jobs.get("j") or {})["failed"] == 0  # the requeued document is counted again when it runs


def test_a_delete_that_fails_for_good_is_dead_lettered_and_ends_its_job(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete task has the index task's guarantees: a permanent error ends the job as failed (a
    waiting `xmsearch delete` returns) with a dead letter that requeues; a task delivered too often is
    dead-lettered too."""
    from xmsearch.ingest.job import JobStatus
    from xmsearch.workers import tasks

    class Broken:
        def delete(self, ids: list[str], tenant: str | None, job: object = None) -> None:
            raise RuntimeError("the store is corrupt")

    queue, sends = _unit_context(redis_server.url, Broken(), monkeypatch, max_redeliveries=2)
    job_id = queue.delete(["a\nb"], "acme")
    [(name, args)] = sends
    assert name == DELETE_TASK
    tasks.delete_documents.apply(args=args, task_id="d1")
    job = queue.jobs.get(job_id) or {}
    assert job["status"] == JobStatus.FAILED and job["tasks_done"] == 1 and job["tasks_failed"] == 1
    [letter] = queue.dead.entries()
    assert letter["task"] == "delete" and letter["document_ids"] == ["a\nb"] and letter["tenant"] == "acme"
    assert "the store is corrupt" in letter["reason"]
    assert queue.requeue().requeued == 1 and sends[-1] == (DELETE_TASK, [job_id, ["a\nb"], "acme"])
    assert not JobStatus((queue.jobs.get(job_id) or {})["status"]).finished  # waiting for the requeued task
    for _ in range(2):  # two deliveries of task d2 whose worker was lost each time
        queue.delivered("d2", 0)
    tasks.delete_documents.apply(args=args, task_id="d2")
    [letter] = queue.dead.entries()
    assert "delivered 3 times" in letter["reason"] and letter["task_failed"]


def test_the_api_in_distributed_mode_enqueues_for_the_workers(env: dict[str, str], tmp_path: Path) -> None:
    """`xmsearch serve` with a broker: on an embedded store (which the workers own) it refuses to start
    and says what to do; with a Qdrant server, documents and deletes are queued for the workers and jobs
    read from Redis, readiness names a server that does not answer, and a dead broker is a named 503."""
    port = free_port()
    api_env = {**env, "XMSEARCH_API_AUTH": "disabled", "XMSEARCH_API_PORT": str(port)}
    refused = _cli(["serve"], api_env)
    assert refused.returncode == 1 and "set XMSEARCH_QDRANT_URL to a Qdrant server" in refused.stderr
    qdrant = {"XMSEARCH_QDRANT_URL": f"http://127.0.0.1:{free_port()}", "XMSEARCH_QDRANT_RETRIES": "0"}
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "api.log").open("wb") as log:
        api = subprocess.Popen(
            [*CLI, "serve"], env={**api_env, **qdrant}, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
        )
    try:
        deadline, ready = time.monotonic() + 90, None
        while time.monotonic() < deadline and (ready is None or ready.json()["checks"].get("model") != "ok"):
            with contextlib.suppress(httpx.TransportError):
                ready = httpx.get(f"{url}/ready", timeout=30)
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["broker"] == "ok" and "StoreUnavailableError" in checks["store"]  # the truth
        posted = httpx.post(f"{url}/documents", json={"documents": _docs(6)}, timeout=60)
        assert posted.status_code == 202 and posted.headers["location"] == f"/jobs/{posted.json()['id']}"
        assert posted.json()["accepted"] == 6 and posted.json()["tasks_sent"] == 2  # batches of 4
        deleted = httpx.delete(f"{url}/documents/doc-5", timeout=60).json()
        assert deleted["status"] == "queued" and deleted["tasks_sent"] == 1
        assert httpx.get(f"{url}/jobs/{posted.json()['id']}").json()["accepted"] == 6
        queued = httpx.post(f"{url}/reindex", json={"settings": {"chunk_overlap": "8"}}, timeout=60)
        assert queued.status_code == 202 and queued.json()["step"] == "queued"  # for a worker (none runs here)
        assert httpx.get(f"{url}/reindex", timeout=60).json()["step"] == "queued"
        assert httpx.delete(f"{url}/reindex", timeout=60).json()["step"] == "cancelled"
        rollback = httpx.post(f"{url}/reindex/rollback", timeout=60)
        assert rollback.status_code == 202 and rollback.json()["rollback"] and rollback.json()["step"] == "queued"
        assert httpx.delete(f"{url}/reindex", timeout=60).json()["step"] == "cancelled"
        redis.Redis.from_url(env["XMSEARCH_BROKER_URL"]).shutdown(nosave=True)
        down = httpx.post(f"{url}/documents", json=_docs(1)[0], timeout=60)
        assert down.status_code == 503 and down.json()["error"]["code"] == "broker_unavailable"
        ready = httpx.get(f"{url}/ready", timeout=60)
        assert ready.status_code == 503 and "Connection" in ready.json()["checks"]["broker"]
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        api.wait(30)


def test_light_commands_do_not_import_torch(redis_server: RedisServer, tmp_path: Path) -> None:
    """Commands that encode nothing start in a fraction of a second: neither torch nor transformers is
    imported (the producer side, jobs and dead letters included)."""
    env = {**os.environ, "XMSEARCH_BROKER_URL": redis_server.url, "XMSEARCH_MODEL": str(tmp_path / "no-model")}
    docs = _write(tmp_path / "docs.jsonl", *_docs(3))
    commands = [["--help"], ["jobs"], ["dlq", "list"], ["dlq", "requeue"], ["ingest", str(docs), "--no-wait"]]
    for args in [*commands, ["api-key", "--json"]]:
        result = subprocess.run([*PROBED_CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (args, result.stderr)
        assert "HEAVY: []" in result.stderr, (args, result.stderr)


def test_dead_letters_that_cannot_be_requeued_are_kept_and_can_be_purged(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead stream entry holds no document: requeue keeps it and says why; entries are named by id
    for a requeue or purge of their own."""
    from xmsearch.retriever.errors import InvalidInputError
    from xmsearch.workers.jobs import DeadLetter

    queue, sends = _unit_context(redis_server.url, object(), monkeypatch)
    queue.jobs.create("j", "test")
    stream_entry = DeadLetter("intake-x", "entry 1-0: invalid JSON")
    first, second = (DeadLetter("j", "refused", documents=[{"id": f"d{i}", "text": "t"}]) for i in range(2))
    for letter in (stream_entry, first, second):
        queue.dead.push(letter)
    done = queue.requeue([first.id])
    assert done.requeued == 1 and [args[1] for _, args in sends] == [first.documents]
    done = queue.requeue()
    assert done.requeued == 1 and [e["id"] for e, _ in done.kept] == [stream_entry.id]
    assert "holds no document" in done.kept[0][1]
    assert [e["id"] for e in queue.dead.entries()] == [stream_entry.id]
    with pytest.raises(InvalidInputError, match="no dead letter nope"):
        queue.purge(["nope"])
    assert queue.purge([stream_entry.id]) == 1 and queue.dead.entries() == []
    listed = _cli(["dlq", "list"], {**os.environ, "XMSEARCH_BROKER_URL": redis_server.url})
    assert listed.returncode == 0 and listed.stdout.strip() == "no dead letters"


def test_jobs_are_listed_as_a_table(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    queue, _ = _unit_context(redis_server.url, object(), monkeypatch)
    job_id = queue.new_job("docs.jsonl", "acme")
    env = {**os.environ, "XMSEARCH_BROKER_URL": redis_server.url, "COLUMNS": "200"}
    lines = _cli(["jobs"], env).stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "submitted", "status", "source"]
    assert lines[1].split()[0] == job_id and "queued" in lines[1] and "docs.jsonl" in lines[1] and "acme" in lines[1]
    assert (
        _cli(["jobs"], {**env, "XMSEARCH_BROKER_URL": redis_server.url.replace("/0", "/1")}).stdout.strip() == "no jobs"
    )


def test_a_worker_sends_task_events_and_takes_celery_options(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    worker = Worker(env, log, "--hostname", "probe@%h")
    try:
        banner = log.read_text()
        assert "task events: ON" in banner and "probe@" in banner
    finally:
        worker.stop()


def test_a_broker_that_keeps_nothing_on_disk_is_refused_unless_allowed(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A Redis without an append-only file would lose every accepted document on a restart: nothing
    is accepted on it (ingest says why, /ready says so) unless XMSEARCH_BROKER_ALLOW_VOLATILE is set."""
    from xmsearch.distributed import Distributed

    client = redis.Redis.from_url(redis_server.url)
    client.config_set("appendonly", "no")  # this test's own server: left so
    env = {**os.environ, "XMSEARCH_BROKER_URL": redis_server.url, "XMSEARCH_MODEL": str(tmp_path / "no-model")}
    docs = _write(tmp_path / "docs.jsonl", *_docs(2))
    refused = _cli(["ingest", str(docs), "--no-wait"], env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "keeps nothing on disk (appendonly no)" in refused.stderr
    assert "XMSEARCH_BROKER_ALLOW_VOLATILE" in refused.stderr and client.zcard("xmsearch:jobs") == 0  # no job
    checks = Distributed(Settings(broker_url=redis_server.url), patient=False).checks()
    assert "BrokerNotDurableError" in checks["broker"]
    allowed = _cli(["ingest", str(docs), "--no-wait", "--json"], {**env, "XMSEARCH_BROKER_ALLOW_VOLATILE": "true"})
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["accepted"] == 2


def test_a_batch_lost_with_its_worker_too_often_is_split_not_dead_lettered(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries lost with the worker count against a batch, but healthy documents must not reach the
    dead letters for it (deploys and the OOM killer lose deliveries too): the batch is halved as new
    tasks; only a lone document lost every time is dead-lettered."""
    from xmsearch.workers import tasks

    queue, sends = _unit_context(redis_server.url, object(), monkeypatch, max_redeliveries=2)
    queue.jobs.create("j", "test")
    queue.jobs.add("j", tasks_sent=1, accepted=4)
    docs = [{"id": f"d{i}", "text": "t"} for i in range(4)]
    for _ in range(2):  # two deliveries whose worker was lost
        queue.delivered("t1", 0)
    tasks.index_documents.apply(args=["j", docs], task_id="t1")
    assert [args[1] for _, args in sends] == [docs[:2], docs[2:]] and queue.dead.entries() == []
    job = queue.jobs.get("j") or {}
    assert (job["tasks_sent"], job["tasks_done"], job["failed"]) == (3, 1, 0)  # still running: the halves
    for _ in range(2):
        queue.delivered("t2", 0)
    tasks.index_documents.apply(args=["j", docs[:1]], task_id="t2")
    [letter] = queue.dead.entries()
    assert letter["documents"] == docs[:1] and "delivered 3 times" in letter["reason"]


def test_a_split_that_runs_again_after_its_worker_was_lost_counts_each_task_once(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed inside a split (after counting a half, before sending it) leaves the batch
    unacknowledged: it is delivered again and split again. The job must still end: each half is counted
    sent once, and the batch done once. A batch that had ended before its worker was lost (written and
    counted) is neither split nor dead-lettered when delivered too often: there is nothing to redo."""
    from xmsearch.workers import tasks

    queue, _ = _unit_context(redis_server.url, object(), monkeypatch, max_redeliveries=2)
    sent: list[str] = []

    def killed_on_the_first_send(name: str, args: list[Any], task_id: str, **_: Any) -> None:
        if not sent:
            sent.append("killed")
            raise SystemExit("SIGKILL")  # counted, never sent
        sent.append(task_id)

    monkeypatch.setattr(queue.app, "send_task", killed_on_the_first_send)
    queue.jobs.create("j", "test")
    queue.jobs.add("j", tasks_sent=1, accepted=4)
    queue.jobs.finish_sending("j")
    docs = [{"id": f"d{i}", "text": "t"} for i in range(4)]
    for _ in range(2):
        queue.delivered("t1", 0)
    for _ in range(2):  # the split, killed; then its redelivery's
        with contextlib.suppress(SystemExit):
            tasks.index_documents.apply(args=["j", docs], task_id="t1", throw=True)
    halves = sent[1:]
    assert len(halves) == 2 and len(set(halves)) == 2
    for half in halves:
        queue.finished(Job(id="j"), half)
        queue.finished(Job(id="j"), half)  # a half that ran twice
    job = queue.jobs.get("j") or {}
    assert (job["tasks_sent"], job["tasks_done"], job["status"]) == (3, 3, "done")
    queue.jobs.create("k", "test")
    queue.jobs.add("k", tasks_sent=2, accepted=5)
    queue.jobs.finish_sending("k")
    queue.finished(Job(id="k"), "t2")
    queue.finished(Job(id="k"), "t3")
    for task_id, batch in (("t2", docs), ("t3", docs[:1])):  # ended, then lost with their workers 3 times
        for _ in range(2):
            queue.delivered(task_id, 0)
        tasks.index_documents.apply(args=["k", batch], task_id=task_id, throw=True)
    assert len(sent) == 3 and queue.dead.entries() == []  # no split sent, no dead letter
    job = queue.jobs.get("k") or {}
    assert (job["tasks_sent"], job["tasks_done"], job["tasks_failed"], job["status"]) == (2, 2, 0, "done")


def test_a_job_whose_tasks_vanished_is_failed_and_the_waiting_cli_says_what_was_lost(env: Env, tmp_path: Path) -> None:
    """Its record survived but its tasks did not (a purged queue, a Redis that lost its last writes):
    the job is failed with what was lost, and `xmsearch ingest` (waiting) exits 1 saying so instead of
    polling for ever."""
    client = redis.Redis.from_url(env["XMSEARCH_BROKER_URL"], decode_responses=True)
    docs = _write(tmp_path / "docs.jsonl", *_docs(6))  # 2 tasks of 4 and 2 documents; no worker runs
    waiting = subprocess.Popen(
        [*CLI, "ingest", str(docs)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while client.llen("xmsearch") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    [job_id] = client.zrange("xmsearch:jobs", 0, -1)
    while client.hget(f"xmsearch:job:{job_id}", "sending") != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
    client.delete("xmsearch")  # the queue is purged
    _, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 1 and "Traceback" not in stderr, stderr
    assert "2 of its 2 tasks vanished from the broker" in stderr and "6 of its 6 documents were not indexed" in stderr


def test_a_reindex_runs_in_the_worker_that_owns_the_store_while_it_keeps_indexing(
    env: Env, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """`reindex start` in the distributed mode: the worker that owns the store rebuilds it with another
    model in a thread while it goes on taking tasks; the documents written and deleted meanwhile reach
    the new version, every point of which the new model wrote; the CLI follows it through Redis."""
    from xmsearch.ingest.export import Export
    from xmsearch.retriever.components import index_store
    from xmsearch.retriever.model.tiny import make_tiny
    from xmsearch.workers.reindexing import read

    other = make_tiny(tmp_path / "tiny-b", seed=1)
    env = {**env, "XMSEARCH_INGEST_BATCH_SIZE": "8"}
    docs = _docs(300, words=12)
    worker = Worker(env, tmp_path / "worker.log")
    try:
        code, _ = _ingest(_write(tmp_path / "docs.jsonl", *docs), env)
        assert code == 0
        started = subprocess.Popen(
            [*CLI, "reindex", "start", "--model", str(other), "--json"], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        broker = redis.Redis.from_url(env["XMSEARCH_BROKER_URL"])
        latest = {str(d["id"]): d for d in docs}
        ingestor = Ingestor.from_settings(Settings(broker_url=env["XMSEARCH_BROKER_URL"], producer_batch_docs=4))
        try:
            deadline, round_ = time.monotonic() + 120, 0
            while (state := read(broker, "xmsearch")) is None or state.running:  # writes all along, tasks beside it
                assert time.monotonic() < deadline and started.poll() is None, started.communicate()
                changed = [{**docs[(round_ * 3 + i) % 300], "text": f"round {round_} changed {i}"} for i in range(2)]
                written = [*changed, {"id": f"added-{round_}", "text": f"added in round {round_}"}]
                latest.update({str(d["id"]): d for d in written})
                ingestor.wait(ingestor.submit(written), timeout=60)
                if round_ == 0:
                    latest.pop("doc-7")
                    ingestor.wait(ingestor.delete(["doc-7"]), timeout=60)
                round_ += 1
        finally:
            ingestor.close()
        out, err = started.communicate(timeout=300)
        assert started.returncode == 0, err[-3000:]
        final = json.loads(out)
        assert final["step"] == "done" and final["version"] == "xmsearch-v2", final
        assert final["caught_up"] > 0  # written in the version searched while it copied, then brought in
        status = _cli(["reindex", "status", "--json"], env)
        assert json.loads(status.stdout)["step"] == "done"
    finally:
        worker.stop()
    settings = Settings(model=str(tiny_checkpoint), data_dir=Path(env["XMSEARCH_DATA_DIR"]), device="cpu")
    store = index_store(settings)  # it follows the collection: the new model's
    store.open(create=False)
    try:
        assert store.current_version() == "xmsearch-v2"
        exported = {r["id"]: r for r in Export(store).records()}
        assert exported == latest
        written_by = {p.model_id for d in latest for p in store.fetch(d, vectors=False)}
        assert written_by == {store.spec.model_id} and store.recorded("xmsearch-v2")["model"] == str(other)  # type: ignore[index]
    finally:
        store.close()


def test_job_counts_are_added_once_per_operation_however_often_the_call_is_sent(redis_server: RedisServer) -> None:
    """A Redis restarted between applying a count and answering gets the same call again from the
    client's retry: counted once (a ingest's job once looked as if a task had vanished)."""
    jobs = JobStore(redis.Redis.from_url(redis_server.url, decode_responses=True))
    jobs.create("j", "test")
    for _ in range(2):
        jobs.add("j", "send-1", tasks_sent=1, accepted=4)  # the retried call
    jobs.add("j", tasks_sent=1, accepted=4)  # another operation
    jobs.add("j", "task-1", tasks_done=1, written=4)
    jobs.add("j", "task-1", tasks_done=1, written=4)  # a task run again after its worker was lost
    job = jobs.get("j")
    assert job is not None and (job["tasks_sent"], job["accepted"], job["tasks_done"], job["written"]) == (2, 8, 1, 4)


def test_a_sweep_lock_left_by_a_killed_worker_holds_redelivery_for_one_sweep_only(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A worker SIGKILLed while it sweeps for abandoned messages leaves the sweep's Redis lock behind:
    the other workers' sweeps skip while it is held. It expires after RESTORE_SWEEP_S (kombu's default
    kept it 300 s), and the next sweep restores a message past the visibility timeout, once."""
    settings = Settings(broker_url=redis_server.url, data_dir=tmp_path, visibility_timeout=8)
    client = redis.Redis.from_url(redis_server.url)
    with make_app(settings).connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_declare(QUEUE)
        payload = {"body": "{}", "headers": {}, "properties": {"delivery_info": {}}}
        client.hset(channel.unacked_key, "lost-tag", json.dumps([payload, "", QUEUE]))
        client.zadd(channel.unacked_index_key, {"lost-tag": time.time() - 60})  # past the visibility timeout
        held = client.lock(channel.unacked_mutex_key, timeout=channel.unacked_mutex_expire)
        assert held.acquire(blocking=False)  # taken by the worker that is then killed: never released
        channel.qos.restore_visible(interval=1)
        assert client.hexists(channel.unacked_key, "lost-tag")  # skipped: the lock is held
        time.sleep(RESTORE_SWEEP_S + 0.5)
        channel.qos.restore_visible(interval=1)
        channel.qos.restore_visible(interval=1)
        assert not client.hexists(channel.unacked_key, "lost-tag")
        assert client.llen(QUEUE) == 1  # restored to the queue, once

"""The Python API for writes (xmsearch.Ingestor) in the embedded mode: validation before anything is
queued, tenants, jobs in order on one thread, a bounded queue, failures kept with their reason, and
close() finishing what was accepted."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from xmsearch import Ingestor, InvalidDocumentsError, QueueFullError, TenantForbiddenError
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.settings import Settings


def make(tmp_path: Path, encoder: Encoder, **overrides: Any) -> Ingestor:
    settings = Settings(model=str(encoder.spec.path), device="cpu", store="local", data_dir=tmp_path, **overrides)
    return Ingestor.from_settings(settings, encoder)


def test_submit_wait_and_delete(tmp_path: Path, detecting_encoder: Encoder) -> None:
    ingestor = make(tmp_path, detecting_encoder)
    assert ingestor.mode == "embedded"
    job = ingestor.wait(ingestor.submit([{"id": "a", "text": "Der Rhein fließt durch Basel.", "language": "de"}]))
    assert job["status"] == "done" and job["written"] == 1 and job["source"] == "python"
    store = ingestor.backend.indexer.store  # type: ignore[attr-defined]
    assert store.fetch("a")[0].language == "de"
    assert ingestor.wait(ingestor.delete(["a"]))["deleted"] == 1 and store.fetch("a") == []
    ingestor.close()


def test_an_invalid_record_refuses_the_whole_submission(tmp_path: Path, detecting_encoder: Encoder) -> None:
    ingestor = make(tmp_path, detecting_encoder, max_document_chars=50)
    records = [{"id": "ok", "text": "fine"}, {"id": "", "text": "x"}, {"id": "long", "text": "y" * 51}]
    with pytest.raises(InvalidDocumentsError) as caught:
        ingestor.submit(records)
    assert [r.location for r in caught.value.rejects] == ["document 1", "document 2"]
    assert "over the limit of 50" in str(caught.value)
    assert ingestor.depth() == 0 and not ingestor.backend.jobs  # type: ignore[attr-defined]
    ingestor.close()


def test_a_tenant_scope_claims_unowned_documents_and_refuses_others(tmp_path: Path, detecting_encoder: Encoder) -> None:
    ingestor = make(tmp_path, detecting_encoder)
    job = ingestor.wait(ingestor.submit([{"id": "a", "text": "Hello world."}], tenant="acme"))
    assert job["tenant"] == "acme"
    assert ingestor.backend.indexer.store.fetch("a", "acme")  # type: ignore[attr-defined]
    with pytest.raises(TenantForbiddenError, match="document 0"):
        ingestor.submit([{"id": "b", "text": "Hi.", "tenant": "globex"}], tenant="acme")
    ingestor.close()


def test_jobs_queue_in_order_bounded_and_close_finishes_them(tmp_path: Path, detecting_encoder: Encoder) -> None:
    ingestor = make(tmp_path, detecting_encoder, api_queue_jobs=1)
    indexer = ingestor.backend.indexer  # type: ignore[attr-defined]
    release = threading.Event()
    real = indexer.ingest

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return real(*args, **kwargs)

    indexer.ingest = slow
    first = ingestor.submit([{"id": "1", "text": "one"}])
    while ingestor.job(first)["status"] == "queued":  # type: ignore[index]
        pass
    second = ingestor.submit([{"id": "2", "text": "two"}])
    with pytest.raises(QueueFullError, match="1 jobs are waiting"):
        ingestor.submit([{"id": "3", "text": "three"}])
    assert ingestor.depth() == 1
    release.set()
    ingestor.close()  # returns once every accepted job is done
    again = make(tmp_path, detecting_encoder)  # the job records outlive the process that ran them
    assert [again.job(j)["status"] for j in (first, second)] == ["done", "done"]  # type: ignore[index]
    assert [j["id"] for j in again.recent(2)] == [second, first]
    again.close()


def test_accepted_jobs_left_by_a_stopped_process_are_indexed_by_the_next(
    tmp_path: Path, detecting_encoder: Encoder
) -> None:
    """What a process accepted and did not finish (it was killed) is in the journal: the next process
    on the data folder indexes it first, in order; a stream it was reading is failed with the reason."""
    from xmsearch.ingestor import JOURNAL_FOLDER
    from xmsearch.journal import Journal

    journal = Journal(tmp_path / JOURNAL_FOLDER)  # as a killed process left it
    journal.accept("j1", "api", None, "index", [{"id": "a", "text": "The river flows past the mill."}])
    journal.accept("j2", "api", "acme", "index", [{"id": "b", "text": "Le pain est cuit.", "tenant": "acme"}])
    journal.accept("j3", "docs.jsonl", None)  # a stream: nothing to read again
    journal.accept("j4", "delete", None, "delete", ["a"])
    journal.close()
    ingestor = make(tmp_path, detecting_encoder)
    try:
        done = [ingestor.wait(j) for j in ("j1", "j2", "j4")]
        assert [(j["status"], j["written"], j["deleted"]) for j in done] == [
            ("done", 1, 0),
            ("done", 1, 0),
            ("done", 0, 1),
        ]
        lost = ingestor.job("j3")
        assert lost is not None and lost["status"] == "failed" and "run the ingest again" in lost["errors"][0]
    finally:
        ingestor.close()


def test_one_process_runs_a_data_folder_s_journal(tmp_path: Path) -> None:
    from xmsearch.journal import Journal
    from xmsearch.retriever.index.stores import StoreLockedError

    first = Journal(tmp_path / "journal")
    try:
        with pytest.raises(StoreLockedError, match=r"is in use by process .*talk to it \(--url\)"):
            Journal(tmp_path / "journal")
    finally:
        first.close()
    Journal(tmp_path / "journal").close()


def test_a_failing_job_keeps_its_reason_and_the_next_one_runs(tmp_path: Path, detecting_encoder: Encoder) -> None:
    ingestor = make(tmp_path, detecting_encoder)
    indexer = ingestor.backend.indexer  # type: ignore[attr-defined]
    real = indexer.ingest
    indexer.ingest = lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))
    failed = ingestor.wait(ingestor.submit([{"id": "1", "text": "one"}]))
    assert failed["status"] == "failed" and failed["errors"] == ["OSError: disk full"]
    indexer.ingest = real
    assert ingestor.wait(ingestor.submit([{"id": "2", "text": "two"}]))["status"] == "done"
    ingestor.close()


def test_the_store_is_optimised_when_idle_after_enough_writes(tmp_path: Path, detecting_encoder: Encoder) -> None:
    ingestor = make(tmp_path, detecting_encoder, optimize_after_points=3)
    store = ingestor.backend.indexer.store  # type: ignore[attr-defined]
    calls: list[int] = []
    store.optimize = lambda: calls.append(1)
    ingestor.wait(ingestor.submit([{"id": "1", "text": "one"}, {"id": "2", "text": "two"}]))
    assert calls == []  # 2 points: not yet
    ingestor.wait(ingestor.submit([{"id": "3", "text": "three"}]))
    ingestor.close()
    assert calls == [1] and ingestor.backend.unoptimized == 0  # type: ignore[attr-defined]


def test_a_job_that_vanishes_while_followed_is_reported_lost_with_its_counts() -> None:
    """A broker restarted without persistence drops the job's record: waiting ends with what was lost,
    instead of polling a missing job forever."""
    from xmsearch.errors import JobLostError
    from xmsearch.ingestor import Ingestor

    counts = {"accepted": 5, "processed": 2, "written": 4, "rejected": 0, "failed": 0}
    answers = iter([{"id": "j", "status": "running", **counts}, None])

    class Vanishing:
        mode = "distributed"

        def job(self, job_id: str) -> dict[str, object] | None:
            return next(answers)

    ingestor = Ingestor(Vanishing(), Settings())  # type: ignore[arg-type]
    with pytest.raises(JobLostError, match=r"job j vanished while it ran .* 'processed': 2"):
        ingestor.wait("j", poll=0.01)

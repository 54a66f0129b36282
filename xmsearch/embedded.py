"""The embedded mode's write path: a bounded queue of jobs in this process, indexed in order by one
thread that owns the store's writes. Every job is in the journal (xmsearch.journal) before it is
answered, with its documents (or ids to delete) until it is done: a process that stops, however it
stops, leaves its accepted work to the next one, which indexes it first. Live jobs' counts are kept in
memory; finished jobs are read from the journal."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from xmsearch.errors import QueueFullError, no_document
from xmsearch.ingest.documents import Document, Reject
from xmsearch.ingest.job import Job, JobStatus
from xmsearch.ingest.pipeline import Indexer
from xmsearch.journal import Journal, Kind

log = logging.getLogger(__name__)
KEPT_ERRORS = 20  # per job: the first reasons kept for the job's status


@dataclass
class EmbeddedJob:
    job: Job
    source: str
    tenant: str | None
    errors: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.job.id,
            "status": str(self.job.status),
            "source": self.source,
            "tenant": self.tenant,
            "created": self.created,
            **asdict(self.job.counts),
            "errors": list(self.errors),
        }

    def note(self, reject: Reject) -> None:
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(f"{reject.location}: {reject.reason}")


class Embedded:
    """Embedded mode: a bounded queue of journaled jobs, indexed in order by one thread that owns the
    writes."""

    mode: Literal["embedded"] = "embedded"
    broker: None = None

    def __init__(self, indexer: Indexer, max_jobs: int, optimize_after: int, journal: Journal) -> None:
        self.indexer = self.writer = indexer
        indexer.store.open(create=True)  # this process owns the embedded store from now on
        indexer.resume()  # a codebook's training or backfill that stopped with the last process
        self.optimize_after = optimize_after
        self.unoptimized = 0  # points written or deleted since the store was last optimized
        self.max_jobs = max_jobs
        self.journal = journal
        self.queue: queue.Queue[tuple[EmbeddedJob, Callable[[], None]] | None] = queue.Queue()
        self.jobs: dict[str, EmbeddedJob] = {}  # the live ones: queued or running
        self.lock = threading.Lock()
        self.accepting = threading.Lock()
        for pending in journal.unfinished():  # what a stopped process accepted goes first, in order
            entry = EmbeddedJob(Job(pending.id, status=JobStatus.QUEUED), pending.source, pending.tenant)
            entry.created = pending.created
            self._enqueue(entry, self._work(entry, pending.kind, pending.payload))
            log.warning("resuming job %s (%s), accepted before the last stop", pending.id, pending.source)
        self.thread = threading.Thread(target=self._run, name="xmsearch-indexer", daemon=True)
        self.thread.start()

    def submit(
        self, records: Iterable[Document | Reject], source: str, tenant: str | None, on_reject: Callable[[Reject], None]
    ) -> str:
        """Documents given whole (a Sequence: the Ingestor's submit) are journaled with the job, so
        they are indexed even if this process stops; a stream is read as the job runs."""
        if isinstance(records, Sequence):
            documents = [r.model_dump(mode="json") for r in records if isinstance(r, Document)]
            return self._accept(source, tenant, on_reject, "index", documents)
        return self._accept(source, tenant, on_reject, None, records)

    def delete(self, document_ids: list[str], tenant: str | None) -> str:
        return self._accept("delete", tenant, lambda r: None, "delete", document_ids)

    def _accept(
        self, source: str, tenant: str | None, on_reject: Callable[[Reject], None], kind: Kind | None, payload: Any
    ) -> str:
        with self.accepting:  # the bound holds for concurrent submissions too
            if self.queue.qsize() >= self.max_jobs:
                raise QueueFullError(f"{self.max_jobs} jobs are waiting to be indexed; retry later")
            entry = EmbeddedJob(Job(status=JobStatus.QUEUED), source, tenant)
            entry.created = self.journal.accept(entry.job.id, source, tenant, kind, payload)  # on disk from here
            self._enqueue(entry, self._work(entry, kind, payload, on_reject))
        return entry.job.id

    def _work(
        self, entry: EmbeddedJob, kind: Kind | None, payload: Any, on_reject: Callable[[Reject], None] = lambda r: None
    ) -> Callable[[], None]:
        """What the indexing thread does for a job."""

        def rejected(reject: Reject) -> None:
            entry.note(reject)
            on_reject(reject)

        def index() -> None:
            records = payload if kind is None else [Document.model_validate(d) for d in payload]
            self.indexer.ingest(records, on_reject=rejected, job=entry.job)

        def delete() -> None:
            for doc in self.indexer.delete(payload, entry.tenant, entry.job):
                entry.errors.append(no_document(doc, entry.tenant))

        return delete if kind == "delete" else index

    def _enqueue(self, entry: EmbeddedJob, work: Callable[[], None]) -> None:
        with self.lock:
            self.jobs[entry.job.id] = entry
        self.queue.put((entry, work))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            entry, work = item
            entry.job.status = JobStatus.RUNNING
            try:
                work()
                entry.job.status = JobStatus.DONE
            except Exception as exc:  # the job fails with its reason; the thread goes on with the next
                entry.errors.append(f"{type(exc).__name__}: {exc}")
                entry.job.status = JobStatus.FAILED
            self.journal.finish(entry.job.id, entry.job.status, asdict(entry.job.counts), entry.errors)
            with self.lock:
                del self.jobs[entry.job.id]
            self.unoptimized += entry.job.counts.written + entry.job.counts.deleted
            if self.queue.empty() and self.unoptimized >= self.optimize_after:
                self._optimize()

    def _optimize(self) -> None:
        """Merge segments, build the first-stage index, reclaim deletions: while idle, since Qdrant Edge
        holds the GIL while it optimizes (searches in this process wait meanwhile)."""
        try:
            with self.indexer.gate:  # not while a reindex swaps the store
                self.indexer.store.optimize()
            self.unoptimized = 0
        except Exception:
            log.exception("optimizing the store failed; it is tried again after the next job")

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self.lock:
            entry = self.jobs.get(job_id)
        return entry.view() if entry else self.journal.get(job_id)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self.lock:
            live = {job_id: entry.view() for job_id, entry in self.jobs.items()}
        return [live.get(job["id"], job) for job in self.journal.recent(limit)]

    def depth(self) -> int:
        return self.queue.qsize()

    def checks(self) -> dict[str, str]:
        return {} if self.thread.is_alive() else {"indexer": "the indexing thread has stopped"}

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)  # after every accepted job
            self.thread.join()
        self.indexer.close()
        self.journal.close()

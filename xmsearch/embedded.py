"""The embedded mode's write path: a bounded queue of jobs in this process, indexed in order by one
thread that owns the store's writes, with each job's status and counts kept in memory."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from xmsearch.errors import QueueFullError, no_document
from xmsearch.ingest.documents import Document, Reject
from xmsearch.ingest.job import Job, JobStatus
from xmsearch.ingest.pipeline import Indexer

log = logging.getLogger(__name__)
KEPT_JOBS = 10_000  # the most recent jobs whose status can still be read
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
    """Embedded mode: a bounded queue of jobs, indexed in order by one thread that owns the writes."""

    mode: Literal["embedded"] = "embedded"

    def __init__(self, indexer: Indexer, max_jobs: int, optimize_after: int) -> None:
        self.indexer = indexer
        indexer.store.open(create=True)  # this process owns the embedded store from now on
        self.optimize_after = optimize_after
        self.unoptimized = 0  # points written or deleted since the store was last optimized
        self.queue: queue.Queue[tuple[EmbeddedJob, Callable[[], None]] | None] = queue.Queue(maxsize=max_jobs)
        self.jobs: OrderedDict[str, EmbeddedJob] = OrderedDict()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="xmsearch-indexer", daemon=True)
        self.thread.start()

    def submit(
        self, records: Iterable[Document | Reject], source: str, tenant: str | None, on_reject: Callable[[Reject], None]
    ) -> str:
        entry = self._new(source, tenant)

        def rejected(reject: Reject) -> None:
            entry.note(reject)
            on_reject(reject)

        def work() -> None:
            self.indexer.ingest(records, on_reject=rejected, job=entry.job)

        self._put(entry, work)
        return entry.job.id

    def delete(self, document_ids: list[str], tenant: str | None) -> str:
        entry = self._new("delete", tenant)

        def work() -> None:
            for doc in self.indexer.delete(document_ids, tenant, entry.job):
                entry.errors.append(no_document(doc, tenant))

        self._put(entry, work)
        return entry.job.id

    def _new(self, source: str, tenant: str | None) -> EmbeddedJob:
        entry = EmbeddedJob(Job(status=JobStatus.QUEUED), source, tenant)
        with self.lock:
            self.jobs[entry.job.id] = entry
            while len(self.jobs) > KEPT_JOBS:
                self.jobs.popitem(last=False)
        return entry

    def _put(self, entry: EmbeddedJob, work: Callable[[], None]) -> None:
        try:
            self.queue.put_nowait((entry, work))
        except queue.Full:
            with self.lock:
                self.jobs.pop(entry.job.id, None)
            raise QueueFullError(f"{self.queue.maxsize} jobs are waiting to be indexed; retry later") from None

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
            self.unoptimized += entry.job.counts.written + entry.job.counts.deleted
            if self.queue.empty() and self.unoptimized >= self.optimize_after:
                self._optimize()

    def _optimize(self) -> None:
        """Merge segments, build the first-stage index, reclaim deletions: while idle, since Qdrant Edge
        holds the GIL while it optimizes (searches in this process wait meanwhile)."""
        try:
            self.indexer.store.optimize()
            self.unoptimized = 0
        except Exception:
            log.exception("optimizing the store failed; it is tried again after the next job")

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self.lock:
            entry = self.jobs.get(job_id)
        return entry.view() if entry else None

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self.lock:
            entries = list(self.jobs.values())[-limit:]
        return [entry.view() for entry in reversed(entries)]

    def depth(self) -> int:
        return self.queue.qsize()

    def checks(self) -> dict[str, str]:
        return {} if self.thread.is_alive() else {"indexer": "the indexing thread has stopped"}

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)  # after every accepted job
            self.thread.join()
        self.indexer.close()

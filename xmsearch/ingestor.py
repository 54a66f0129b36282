"""The Python API for writes: `Ingestor` submits documents, deletes them and reports jobs, with the
same calls in both modes. Embedded (no broker): one background thread in this process indexes the
jobs in order into the store this process owns. Distributed (XMSEARCH_BROKER_URL set): the jobs go to
the Celery workers through Redis, and their counts are read back from Redis.

>>> ingestor = Ingestor.from_settings()  # doctest: +SKIP
>>> job_id = ingestor.submit([{"id": "a", "text": "Der Rhein fließt durch Basel."}])  # doctest: +SKIP
>>> ingestor.wait(job_id)["status"]  # doctest: +SKIP
'done'
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import redis

from ingest.documents import Document, Reject, limits, parse
from ingest.pipeline import Indexer, Job
from retriever.encoder import Encoder
from retriever.errors import InvalidInputError, PermanentError, TransientError
from retriever.metrics import DOCUMENTS
from retriever.settings import Settings, get_settings

log = logging.getLogger(__name__)
KEPT_JOBS = 10_000  # embedded mode: the most recent jobs whose status can still be read
KEPT_ERRORS = 20  # per job: the first reasons kept for the job's status


class InvalidDocumentsError(InvalidInputError):
    """Some submitted records are not valid documents; nothing of the submission was queued."""

    def __init__(self, rejects: list[Reject]) -> None:
        self.rejects = rejects
        shown = "; ".join(f"{r.location}: {r.reason}" for r in rejects[:5])
        more = f" (and {len(rejects) - 5} more)" if len(rejects) > 5 else ""
        super().__init__(f"{len(rejects)} invalid document(s), nothing was queued: {shown}{more}")


class TenantForbiddenError(PermanentError):
    """A caller bound to one tenant named another tenant's documents."""


class QueueFullError(TransientError):
    """The embedded indexing queue is full: retry later."""


class BrokerUnavailableError(TransientError):
    """The distributed mode's broker (Redis) did not answer."""


class _Backend(Protocol):
    mode: str

    def submit(self, documents: list[Document], source: str, tenant: str | None) -> str: ...
    def delete(self, document_ids: list[str], tenant: str | None) -> str: ...
    def job(self, job_id: str) -> dict[str, Any] | None: ...
    def depth(self) -> int: ...
    def check(self) -> None: ...
    def close(self) -> None: ...


class Ingestor:
    """Submit, delete and follow jobs: inline in the embedded mode, through the queue in the distributed one."""

    def __init__(self, backend: _Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, encoder: Encoder | None = None, indexer: Indexer | None = None
    ) -> Ingestor:
        """The mode the settings name; embedded mode loads the model (or uses `indexer`, e.g. one that
        shares its store with a Retriever of the same process)."""
        settings = settings or get_settings()
        if settings.broker_url:
            return cls(_Queued(settings), settings)
        indexer = indexer or Indexer.from_settings(settings, encoder)
        return cls(_Inline(indexer, settings.api_queue_jobs, settings.optimize_after_points), settings)

    @property
    def mode(self) -> str:
        """`embedded` or `distributed`."""
        return self.backend.mode

    def submit(
        self, documents: Iterable[Document | Mapping[str, Any]], tenant: str | None = None, source: str = "python"
    ) -> str:
        """Validate every document, then queue them all as one job; return its id. An invalid record
        refuses the whole submission (InvalidDocumentsError names each problem). With `tenant`, the
        documents belong to that tenant; a document naming another one is refused."""
        docs = self.validate(documents, tenant)
        job_id = self.backend.submit(docs, source, tenant)
        DOCUMENTS.labels("accepted").inc(len(docs))
        return job_id

    def validate(self, documents: Iterable[Document | Mapping[str, Any]], tenant: str | None) -> list[Document]:
        """The documents, checked against the settings' limits and given `tenant`; nothing is queued."""
        context = limits(self.settings)
        docs: list[Document] = []
        rejects: list[Reject] = []
        for i, record in enumerate(documents):
            data = record.model_dump() if isinstance(record, Document) else record  # checked against the limits
            parsed = parse(data, "submit", f"document {i}", context)
            if isinstance(parsed, Reject):
                rejects.append(parsed)
            elif tenant is not None and parsed.tenant not in (None, tenant):
                raise TenantForbiddenError(
                    f"document {i} ({parsed.id!r}) names tenant {parsed.tenant!r}; this caller writes only {tenant!r}"
                )
            else:
                docs.append(parsed if tenant is None else parsed.model_copy(update={"tenant": tenant}))
        if rejects:
            raise InvalidDocumentsError(rejects)
        if not docs:
            raise InvalidInputError("no documents given")
        return docs

    def delete(self, document_ids: Iterable[str], tenant: str | None = None) -> str:
        """Queue the removal of these documents of one tenant (None: documents stored without one)."""
        ids = list(document_ids)
        if not ids or not all(isinstance(i, str) and i for i in ids):
            raise InvalidInputError("give one or more non-empty document ids")
        return self.backend.delete(ids, tenant)

    def job(self, job_id: str) -> dict[str, Any] | None:
        """The job's status (queued, running, done or failed), its counts and first errors; None if unknown."""
        return self.backend.job(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job is done or failed (TimeoutError after `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job is None:
                raise InvalidInputError(f"no job {job_id!r}")
            if job["status"] in ("done", "failed"):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            time.sleep(0.05)

    def depth(self) -> int:
        """Work waiting: submitted jobs not started (embedded) or tasks in the broker queue (distributed)."""
        return self.backend.depth()

    def check(self) -> None:
        """Raise if the write path cannot work (the indexing thread died, the broker is unreachable)."""
        self.backend.check()

    def close(self) -> None:
        """Finish what was accepted, then release the store (embedded) or the connection."""
        self.backend.close()


@dataclass
class _InlineJob:
    job: Job
    source: str
    tenant: str | None
    errors: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.job.id,
            "status": self.job.status,
            "source": self.source,
            "tenant": self.tenant,
            **asdict(self.job.counts),
            "errors": list(self.errors),
        }

    def note(self, reject: Reject) -> None:
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(f"{reject.location}: {reject.reason}")


class _Inline:
    """Embedded mode: a bounded queue of jobs, indexed in order by one thread that owns the writes."""

    mode = "embedded"

    def __init__(self, indexer: Indexer, max_jobs: int, optimize_after: int) -> None:
        self.indexer = indexer
        self.optimize_after = optimize_after
        self.unoptimized = 0  # points written or deleted since the store was last optimized
        self.queue: queue.Queue[tuple[_InlineJob, Callable[[], None]] | None] = queue.Queue(maxsize=max_jobs)
        self.jobs: OrderedDict[str, _InlineJob] = OrderedDict()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="xmsearch-indexer", daemon=True)
        self.thread.start()

    def submit(self, documents: list[Document], source: str, tenant: str | None) -> str:
        entry = self._new(source, tenant)

        def work() -> None:
            self.indexer.ingest(documents, on_reject=entry.note, job=entry.job)

        self._put(entry, work)
        return entry.job.id

    def delete(self, document_ids: list[str], tenant: str | None) -> str:
        entry = self._new("delete", tenant)

        def work() -> None:
            self.indexer.delete(document_ids, tenant)
            entry.job.counts.deleted += len(document_ids)

        self._put(entry, work)
        return entry.job.id

    def _new(self, source: str, tenant: str | None) -> _InlineJob:
        entry = _InlineJob(Job(status="queued"), source, tenant)
        with self.lock:
            self.jobs[entry.job.id] = entry
            while len(self.jobs) > KEPT_JOBS:
                self.jobs.popitem(last=False)
        return entry

    def _put(self, entry: _InlineJob, work: Callable[[], None]) -> None:
        try:
            self.queue.put_nowait((entry, work))
        except queue.Full:
            with self.lock:
                self.jobs.pop(entry.job.id, None)
            raise QueueFullError(f"{self.queue.maxsize} jobs are waiting to be indexed; retry later") from None

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            entry, work = item
            entry.job.status = "running"
            try:
                work()
                entry.job.status = "done"
            except Exception as exc:  # the job fails with its reason; the thread goes on with the next
                entry.errors.append(f"{type(exc).__name__}: {exc}")
                entry.job.status = "failed"
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

    def depth(self) -> int:
        return self.queue.qsize()

    def check(self) -> None:
        if not self.thread.is_alive():
            raise PermanentError("the indexing thread has stopped")

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)  # after every accepted job
            self.thread.join()
        self.indexer.close()


class _Queued:
    """Distributed mode: jobs are Celery tasks; their counts live in Redis."""

    mode = "distributed"

    def __init__(self, settings: Settings) -> None:
        from workers.app import app, configure, redis_client
        from workers.jobs import JobStore

        if app.conf.broker_url != settings.broker_url:
            configure(app, settings)
        self.settings = settings
        self.redis = redis_client(settings, retries=2)  # callers wait on it: a dead broker is an error at once
        self.jobs = JobStore(self.redis)

    def submit(self, documents: list[Document], source: str, tenant: str | None) -> str:
        from workers.producer import enqueue

        with self._broker():
            return enqueue(documents, self.settings, self.jobs, source, tenant=tenant)

    def delete(self, document_ids: list[str], tenant: str | None) -> str:
        from workers.producer import enqueue_delete

        with self._broker():
            return enqueue_delete(document_ids, tenant, self.jobs)

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._broker():
            job = self.jobs.get(job_id)
        if job is not None and job["status"] == "running" and not job["tasks_done"]:
            job["status"] = "queued"
        return job

    def depth(self) -> int:
        from workers.app import QUEUE

        try:
            return int(self.redis.llen(QUEUE))
        except redis.RedisError:
            return -1  # unknown: /ready names the problem

    def check(self) -> None:
        with self._broker():
            self.redis.ping()

    @contextmanager
    def _broker(self) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, OSError) as exc:
            where = self.settings.broker_url
            raise BrokerUnavailableError(f"the broker at {where} did not answer: {exc}") from exc

    def close(self) -> None:
        self.redis.close()

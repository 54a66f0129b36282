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
from typing import Any, Literal, Protocol

import redis

from xmsearch.ingest.documents import Document, Reject, limits, parse
from xmsearch.ingest.job import Job, JobStatus
from xmsearch.ingest.pipeline import Indexer
from xmsearch.retriever.components import Components
from xmsearch.retriever.errors import InvalidInputError, PermanentError, TransientError
from xmsearch.retriever.metrics import DOCUMENTS
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.settings import Settings, get_settings

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


Mode = Literal["embedded", "distributed"]
OnReject = Callable[[Reject], None]


def mode_for(settings: Settings) -> Mode:
    """The one place the mode is decided: distributed when a broker is named, else embedded."""
    return "distributed" if settings.broker_url else "embedded"


class _Backend(Protocol):
    mode: Mode

    def submit(
        self, records: Iterable[Document | Reject], source: str, tenant: str | None, on_reject: OnReject
    ) -> str: ...
    def delete(self, document_ids: list[str], tenant: str | None) -> str: ...
    def job(self, job_id: str) -> dict[str, Any] | None: ...
    def depth(self) -> int: ...
    def checks(self) -> dict[str, str]: ...
    def close(self) -> None: ...


class Ingestor:
    """The one door for writes: submit, ingest, delete and follow jobs, inline in the embedded mode and
    through the queue in the distributed one. The CLI, the HTTP API and Python callers all write
    through it; only it knows the mode."""

    def __init__(self, backend: _Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        encoder: Encoder | None = None,
        components: Components | None = None,
        patient: bool = False,
    ) -> Ingestor:
        """The mode the settings name. Embedded: the model is loaded (or `components` are used, e.g. those
        a Retriever of the same process shares) and this process owns the store from now on.
        Distributed: `patient` rides out a broker restart (a long ingest); otherwise a dead broker is
        an error at once (a caller is waiting)."""
        settings = settings or get_settings()
        if mode_for(settings) == "distributed":
            return cls(_Queued(settings, patient), settings)
        indexer = Indexer(components or Components.load(settings, encoder), settings)
        return cls(_Inline(indexer, settings.api_queue_jobs, settings.optimize_after_points), settings)

    @property
    def mode(self) -> Mode:
        """`embedded` or `distributed`."""
        return self.backend.mode

    def submit(
        self, documents: Iterable[Document | Mapping[str, Any]], tenant: str | None = None, source: str = "python"
    ) -> str:
        """Validate every document, then queue them all as one job; return its id. An invalid record
        refuses the whole submission (InvalidDocumentsError names each problem). With `tenant`, the
        documents belong to that tenant; a document naming another one is refused."""
        docs = self.validate(documents, tenant)
        job_id = self.backend.submit(docs, source, tenant, lambda r: None)
        DOCUMENTS.labels("accepted").inc(len(docs))
        return job_id

    def ingest(self, records: Iterable[Document | Reject], source: str, on_reject: OnReject = lambda r: None) -> str:
        """Queue a stream of records (a file, standard input) as one job, read as it goes; records that
        are not documents are counted as rejected and passed to `on_reject`. Return the job id."""
        return self.backend.submit(records, source, None, on_reject)

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

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] = lambda job: None,
        poll: float = 0.05,
    ) -> dict[str, Any]:
        """Block until the job is done or failed (TimeoutError after `timeout` seconds), passing the job
        to `on_progress` at each poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job is None:
                raise InvalidInputError(f"no job {job_id!r}")
            on_progress(job)
            if JobStatus(job["status"]).finished:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            time.sleep(poll)

    def depth(self) -> int:
        """Work waiting: submitted jobs not started (embedded) or tasks in the broker queue (distributed)."""
        return self.backend.depth()

    def checks(self) -> dict[str, str]:
        """What the write path needs, each `ok` or the problem: the broker (distributed); the indexing
        thread (embedded) is named only when it has stopped."""
        return self.backend.checks()

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
            "status": str(self.job.status),
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

    mode: Mode = "embedded"

    def __init__(self, indexer: Indexer, max_jobs: int, optimize_after: int) -> None:
        self.indexer = indexer
        indexer.store.open(create=True)  # this process owns the embedded store from now on
        self.optimize_after = optimize_after
        self.unoptimized = 0  # points written or deleted since the store was last optimized
        self.queue: queue.Queue[tuple[_InlineJob, Callable[[], None]] | None] = queue.Queue(maxsize=max_jobs)
        self.jobs: OrderedDict[str, _InlineJob] = OrderedDict()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="xmsearch-indexer", daemon=True)
        self.thread.start()

    def submit(self, records: Iterable[Document | Reject], source: str, tenant: str | None, on_reject: OnReject) -> str:
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
            self.indexer.delete(document_ids, tenant)
            entry.job.counts.deleted += len(document_ids)

        self._put(entry, work)
        return entry.job.id

    def _new(self, source: str, tenant: str | None) -> _InlineJob:
        entry = _InlineJob(Job(status=JobStatus.QUEUED), source, tenant)
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

    def depth(self) -> int:
        return self.queue.qsize()

    def checks(self) -> dict[str, str]:
        return {} if self.thread.is_alive() else {"indexer": "the indexing thread has stopped"}

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)  # after every accepted job
            self.thread.join()
        self.indexer.close()


class _Queued:
    """Distributed mode: jobs are Celery tasks; their counts live in Redis."""

    mode: Mode = "distributed"

    def __init__(self, settings: Settings, patient: bool) -> None:
        from xmsearch.workers.dispatch import TaskQueue

        self.settings = settings
        self.tasks = TaskQueue(settings, retries=40 if patient else 2)

    def submit(self, records: Iterable[Document | Reject], source: str, tenant: str | None, on_reject: OnReject) -> str:
        from xmsearch.workers.producer import enqueue

        with self._broker():
            return enqueue(records, self.tasks, source, on_reject, tenant)

    def delete(self, document_ids: list[str], tenant: str | None) -> str:
        with self._broker():
            return self.tasks.delete(document_ids, tenant)

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._broker():
            return self.tasks.jobs.get(job_id)

    def depth(self) -> int:
        return self.tasks.depth()

    def checks(self) -> dict[str, str]:
        try:
            with self._broker():
                self.tasks.redis.ping()
        except BrokerUnavailableError as exc:
            return {"broker": f"{type(exc).__name__}: {exc}"}
        return {"broker": "ok"}

    @contextmanager
    def _broker(self) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, OSError) as exc:
            where = self.settings.broker_url
            raise BrokerUnavailableError(f"the broker at {where} did not answer: {exc}") from exc

    def close(self) -> None:
        self.tasks.close()

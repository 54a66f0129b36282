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
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from xmsearch.errors import InvalidDocumentsError, JobLostError, TenantForbiddenError
from xmsearch.ingest.documents import Document, Reject, limits, parse
from xmsearch.ingest.job import JobStatus
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.metrics import DOCUMENTS
from xmsearch.settings import Settings, get_settings

if TYPE_CHECKING:  # each mode's imports load with it: the distributed side never imports torch
    from xmsearch.ingest.pipeline import Indexer
    from xmsearch.retriever.components import Components
    from xmsearch.retriever.model.encoder import Encoder
    from xmsearch.workers.dispatch import TaskQueue

log = logging.getLogger(__name__)


RECENT_WINDOW = 1000  # jobs looked through for one tenant's recent ones
JOURNAL_FOLDER = "journal"  # the embedded mode's jobs and accepted work, in the data folder
Mode = Literal["embedded", "distributed", "remote"]
OnReject = Callable[[Reject], None]


def mode_for(settings: Settings) -> Mode:
    """The one place the mode is decided: remote when an API is named (the CLI against a running
    API), distributed when a broker is named, else embedded."""
    if settings.api_url:
        return "remote"
    return "distributed" if settings.broker_url else "embedded"


class _Backend(Protocol):
    """What each mode's write path does (xmsearch.embedded, xmsearch.distributed, xmsearch.remote)."""

    @property
    def mode(self) -> Mode: ...
    @property
    def writer(self) -> Indexer | None: ...  # the Indexer that writes in this process (embedded)
    @property
    def broker(self) -> TaskQueue | None: ...  # the broker's task queue (distributed)

    def submit(
        self, records: Iterable[Document | Reject], source: str, tenant: str | None, on_reject: OnReject
    ) -> str: ...
    def delete(self, document_ids: list[str], tenant: str | None) -> str: ...
    def job(self, job_id: str) -> dict[str, Any] | None: ...
    def recent(self, limit: int) -> list[dict[str, Any]]: ...
    def depth(self) -> int: ...
    def checks(self) -> dict[str, str]: ...
    def close(self) -> None: ...


def claim(doc: Document, tenant: str, where: str) -> Document:
    """The document as `tenant`'s own; TenantForbiddenError when it names another tenant."""
    if doc.tenant not in (None, tenant):
        raise TenantForbiddenError(
            f"{where} ({doc.id!r}) names tenant {doc.tenant!r}; this caller writes only {tenant!r}"
        )
    return doc.model_copy(update={"tenant": tenant})


def _owned(record: Document | Reject, tenant: str, source: str) -> Document | Reject:
    """A streamed record claimed for `tenant`: another tenant's document is rejected, not the stream."""
    if isinstance(record, Reject):
        return record
    try:
        return claim(record, tenant, "the document")
    except TenantForbiddenError as exc:
        return Reject(source, f"document {record.id!r}", str(exc), record.text[:200])


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
        if mode_for(settings) == "remote":
            from xmsearch.remote import ApiClient, Remote

            return cls(Remote(ApiClient.from_settings(settings)), settings)
        if mode_for(settings) == "distributed":
            from xmsearch.distributed import Distributed  # imports Celery: only in this mode

            return cls(Distributed(settings, patient), settings)
        from xmsearch.embedded import Embedded
        from xmsearch.ingest.pipeline import Indexer
        from xmsearch.journal import Journal
        from xmsearch.retriever.components import Components

        indexer = Indexer(components or Components.load(settings, encoder), settings)
        journal = Journal(None if str(settings.data_dir) == ":memory:" else settings.data_dir / JOURNAL_FOLDER)
        return cls(Embedded(indexer, settings.api_queue_jobs, settings.optimize_after_points, journal), settings)

    @property
    def mode(self) -> Mode:
        """`embedded`, `distributed` or `remote`."""
        return self.backend.mode

    @property
    def indexer(self) -> Indexer | None:
        """The Indexer that writes in this process (embedded); None where writes go elsewhere."""
        return self.backend.writer

    @property
    def queue(self) -> TaskQueue | None:
        """The broker's task queue (distributed); None in the other modes."""
        return self.backend.broker

    @property
    def runs_here(self) -> bool:
        """The jobs run in this process (embedded): a caller about to exit waits for them."""
        return self.mode == "embedded"

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

    def ingest(
        self,
        records: Iterable[Document | Reject],
        source: str,
        on_reject: OnReject = lambda r: None,
        tenant: str | None = None,
    ) -> str:
        """Queue a stream of records (a file, standard input) as one job, read as it goes; records that
        are not documents are counted as rejected and passed to `on_reject`. With `tenant`, documents
        without one become its own, and one naming another tenant is rejected. Return the job id."""
        owned = records if tenant is None else (_owned(record, tenant, source) for record in records)
        return self.backend.submit(owned, source, tenant, on_reject)

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
            else:
                docs.append(parsed if tenant is None else claim(parsed, tenant, f"document {i}"))
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

    def recent(self, limit: int = 20, tenant: str | None = None) -> list[dict[str, Any]]:
        """The most recent jobs, newest first (only `tenant`'s when given; among the last 1,000)."""
        jobs = self.backend.recent(limit if tenant is None else RECENT_WINDOW)
        return [job for job in jobs if tenant is None or job.get("tenant") == tenant][:limit]

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
        last: dict[str, Any] | None = None
        while True:
            job = self.job(job_id)
            if job is None and last is not None:
                done = {name: last[name] for name in ("accepted", "processed", "written", "rejected", "failed")}
                raise JobLostError(
                    f"job {job_id} vanished while it ran (was the broker restarted without persistence?): what it had "
                    f"not finished is lost; its last counts were {done}"
                )
            if job is None:
                raise InvalidInputError(f"no job {job_id!r}")
            last = job
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

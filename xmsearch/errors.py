"""The errors of the write path (the Ingestor and its two modes), apart from the modes themselves so
that importing them (the API's error table) loads neither torch nor Celery."""

from __future__ import annotations

from xmsearch.ingest.documents import Reject
from xmsearch.retriever.errors import InvalidInputError, PermanentError, TransientError


def no_document(document_id: str, tenant: str | None) -> str:
    """How a document that is not there is named, in job errors and in 404 answers."""
    return f"no document {document_id!r}" + ("" if tenant is None else f" of tenant {tenant!r}")


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


class JobLostError(PermanentError):
    """A job's record vanished while it was followed: the broker lost it (and what it had not done)."""

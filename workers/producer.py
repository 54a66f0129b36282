"""The producer: validated documents grouped into tasks by count, by size and by a maximum wait, so
that workers see full batches for bulk files and for a trickle of single documents alike."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ingest.documents import Document, Reject
from retriever.settings import Settings
from workers.jobs import JobStore

_END = object()
_RETRY_POLICY = {"max_retries": 30, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 5.0}


def _with_timeouts(records: Iterable[Document | Reject], wait: float) -> Iterator[Document | Reject | None]:
    """The records, with None whenever `wait` seconds pass without one (the reader runs in a thread)."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=1024)

    def read() -> None:
        try:
            for record in records:
                buffer.put(record)
        finally:
            buffer.put(_END)

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            item = buffer.get(timeout=wait)
        except queue.Empty:
            yield None
            continue
        if item is _END:
            return
        yield item


def enqueue(
    records: Iterable[Document | Reject],
    settings: Settings,
    jobs: JobStore,
    source: str,
    on_reject: Callable[[Reject], None] = lambda r: None,
    tenant: str | None = None,
) -> str:
    """Send every document as index tasks; return the job id (its counts live in Redis; `tenant`
    records whose job it is)."""
    from workers.tasks import index_documents

    job_id = uuid.uuid4().hex
    jobs.create(job_id, source, tenant)
    batch: list[dict[str, Any]] = []
    chars, first_at = 0, 0.0

    def send() -> None:
        nonlocal batch, chars
        jobs.add(job_id, tasks_sent=1, accepted=len(batch))
        index_documents.apply_async(args=[job_id, batch], retry=True, retry_policy=_RETRY_POLICY)
        batch, chars = [], 0

    for record in _with_timeouts(records, settings.producer_max_wait):
        if isinstance(record, Reject):
            jobs.add(job_id, rejected=1)
            on_reject(record)
        elif record is not None:
            if not batch:
                first_at = time.monotonic()
            batch.append(record.model_dump())
            chars += len(record.text)
        full = len(batch) >= settings.producer_batch_docs or chars >= settings.producer_batch_chars
        waited = batch and time.monotonic() - first_at >= settings.producer_max_wait
        if batch and (full or waited):
            send()
    if batch:
        send()
    jobs.finish_sending(job_id)
    return job_id


def enqueue_delete(document_ids: list[str], tenant: str | None, jobs: JobStore) -> str:
    """Send one delete task for the workers (they own the store); return its job id."""
    from workers.tasks import delete_documents

    job_id = uuid.uuid4().hex
    jobs.create(job_id, "delete", tenant)
    jobs.add(job_id, tasks_sent=1)
    jobs.finish_sending(job_id)
    delete_documents.apply_async(args=[job_id, document_ids, tenant], retry=True, retry_policy=_RETRY_POLICY)
    return job_id

"""The producer: validated documents grouped into tasks by count, by size and by a maximum wait, so
that workers see full batches for bulk files and for a trickle of single documents alike."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from xmsearch.ingest.documents import Document, Reject
from xmsearch.workers.dispatch import TaskQueue

_END = object()


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
    tasks: TaskQueue,
    source: str,
    on_reject: Callable[[Reject], None] = lambda r: None,
    tenant: str | None = None,
) -> str:
    """Send every document as index tasks; return the job id (its counts live in Redis; `tenant`
    records whose job it is)."""
    settings = tasks.settings
    job_id = tasks.new_job(source, tenant)
    batch: list[dict[str, Any]] = []
    chars, first_at = 0, 0.0
    for record in _with_timeouts(records, settings.producer_max_wait):
        if isinstance(record, Reject):
            tasks.jobs.add(job_id, rejected=1)
            on_reject(record)
        elif record is not None:
            if not batch:
                first_at = time.monotonic()
            batch.append(record.model_dump())
            chars += len(record.text)
        full = len(batch) >= settings.producer_batch_docs or chars >= settings.producer_batch_chars
        waited = batch and time.monotonic() - first_at >= settings.producer_max_wait
        if batch and (full or waited):
            tasks.send_index(job_id, batch, accepted=len(batch))
            batch, chars = [], 0
    if batch:
        tasks.send_index(job_id, batch, accepted=len(batch))
    tasks.jobs.finish_sending(job_id)
    return job_id

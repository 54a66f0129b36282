"""The distributed mode's write path: jobs become Celery tasks through the TaskQueue, and their
counts are read back from Redis; a broker that does not answer is a BrokerUnavailableError."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import redis

from xmsearch.errors import BrokerUnavailableError
from xmsearch.ingest.documents import Document, Reject
from xmsearch.settings import Settings
from xmsearch.workers.errors import BrokerNotDurableError


class Distributed:
    """Distributed mode: jobs are Celery tasks; their counts live in Redis."""

    mode: Literal["distributed"] = "distributed"
    writer: None = None

    def __init__(self, settings: Settings, patient: bool) -> None:
        from xmsearch.workers.app import PATIENT_RETRIES
        from xmsearch.workers.dispatch import TaskQueue

        self.settings = settings
        self.tasks = self.broker = TaskQueue(settings, retries=PATIENT_RETRIES if patient else 2)

    def submit(
        self, records: Iterable[Document | Reject], source: str, tenant: str | None, on_reject: Callable[[Reject], None]
    ) -> str:
        from xmsearch.workers.producer import enqueue

        with self._broker():
            return enqueue(records, self.tasks, source, on_reject, tenant)

    def delete(self, document_ids: list[str], tenant: str | None) -> str:
        with self._broker():
            return self.tasks.delete(document_ids, tenant)

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._broker():
            return self.tasks.jobs.get(job_id)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self._broker():
            return self.tasks.jobs.recent(limit)

    def depth(self) -> int:
        return self.tasks.depth()

    def checks(self) -> dict[str, str]:
        try:
            with self._broker():
                self.tasks.redis.ping()
                self.tasks.ensure_durable()
        except (BrokerUnavailableError, BrokerNotDurableError) as exc:
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

"""The intake that apps push to without Python: a Redis Stream read by a consumer group.

An app adds an entry with one field, `document`, holding the document as JSON:
    XADD xmsearch:intake * document '{"id": "a", "text": "...", "language": "fr"}'
Each `xmsearch intake` process is a consumer of the group: it reads up to a batch of entries
(waiting at most producer_max_wait for more), sends them as one index task, and acknowledges them
once the task is queued (at least once; the tasks are idempotent). Entries that a consumer read but
never acknowledged (it died) are reclaimed after `claim_idle` seconds. Bad entries are dead-lettered
with their entry id and the reason, and acknowledged.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any

import redis

from xmsearch.ingest.documents import Document, Limits, Reject, limits, load_json, parse
from xmsearch.workers.dispatch import TaskQueue
from xmsearch.workers.jobs import DeadLetter

log = logging.getLogger(__name__)
STREAM = "xmsearch:intake"
GROUP = "xmsearch"


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _record(entry_id: str, fields: dict[str, str], context: Limits) -> Document | Reject:
    where = f"entry {entry_id}"
    raw = fields.get("document")
    if raw is None:
        return Reject(STREAM, where, "the entry has no 'document' field", json.dumps(fields)[:200])
    try:
        data = load_json(raw)
    except ValueError as exc:  # not JSON, or nested too deeply
        return Reject(STREAM, where, f"invalid JSON: {exc}", raw[:200])
    if not isinstance(data, dict):
        return Reject(STREAM, where, f"a document is a JSON object, not {type(data).__name__}", raw[:200])
    return parse(data, STREAM, where, context)


class Intake:
    """One consumer of the intake stream."""

    def __init__(self, queue: TaskQueue, consumer: str | None = None, claim_idle: float = 60.0):
        self.queue, self.redis, self.settings = queue, queue.redis, queue.settings
        self.consumer = consumer or f"intake-{uuid.uuid4().hex[:8]}"
        self.claim_idle_ms = int(claim_idle * 1000)
        self.job_id = f"intake-{self.consumer}"
        self.context = limits(self.settings)

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until `stop` is set (forever by default); refuse a broker that keeps nothing on disk."""
        self.queue.ensure_durable()
        ensure_group(self.redis)
        if self.queue.jobs.get(self.job_id) is None:
            self.queue.jobs.create(self.job_id, STREAM)
        while stop is None or not stop.is_set():
            self.step()

    def step(self) -> int:
        """Reclaim abandoned entries, read new ones, send them; the number of entries handled."""
        size = self.settings.producer_batch_docs
        claimed = self.redis.xautoclaim(STREAM, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=size)
        entries: list[tuple[str, dict[str, str]]] = list(claimed[1])
        if len(entries) < size:
            block = int(self.settings.producer_max_wait * 1000)
            streams: Any = self.redis.xreadgroup(
                GROUP, self.consumer, {STREAM: ">"}, count=size - len(entries), block=block
            )
            for _, stream_entries in streams or []:
                entries += stream_entries
        if entries:
            self._send(entries)
        return len(entries)

    def _send(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        documents: list[dict[str, Any]] = []
        for entry_id, fields in entries:
            record = _record(entry_id, fields, self.context)
            if isinstance(record, Reject):
                self.queue.dead.push(DeadLetter(self.job_id, f"{record.location}: {record.reason}"))
                self.queue.jobs.add(self.job_id, rejected=1)
            else:
                documents.append(record.model_dump())
        if documents:
            self.queue.send_index(self.job_id, documents, accepted=len(documents))
        self.redis.xack(STREAM, GROUP, *[entry_id for entry_id, _ in entries])

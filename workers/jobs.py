"""Job counts and dead letters, kept in Redis so that producers, workers and `xmsearch jobs` / `dlq`
in other processes all see them."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from typing import Any

import redis

from ingest.pipeline import JobCounts

PREFIX = "xmsearch"
JOB_TTL_S = 7 * 24 * 3600
COUNTS = tuple(f.name for f in fields(JobCounts))


class JobStore:
    """One Redis hash per job: its counts, the tasks sent and done, and its status."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def _key(self, job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}"

    def create(self, job_id: str, source: str, tenant: str | None = None) -> None:
        key = self._key(job_id)
        mapping: dict[str | bytes, str | int | float] = {name: 0 for name in (*COUNTS, "tasks_sent", "tasks_done")}
        mapping.update(source=source, created=time.time())
        if tenant is not None:
            mapping["tenant"] = tenant
        self.redis.hset(key, mapping=mapping)  # type: ignore[arg-type]
        self.redis.expire(key, JOB_TTL_S)
        self.redis.zadd(f"{PREFIX}:jobs", {job_id: time.time()})

    def add(self, job_id: str, **deltas: int) -> None:
        pipe = self.redis.pipeline()
        for name, value in deltas.items():
            if value:
                pipe.hincrby(self._key(job_id), name, value)
        pipe.execute()

    def finish_sending(self, job_id: str) -> None:
        self.redis.hset(self._key(job_id), "sending", "done")

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self._key(job_id))
        if not raw:
            return None
        data = {str(k): str(v) for k, v in raw.items()}  # the client decodes responses
        out: dict[str, Any] = {"id": job_id, "source": data.get("source", ""), "tenant": data.get("tenant")}
        for name in (*COUNTS, "tasks_sent", "tasks_done"):
            out[name] = int(data.get(name, 0))
        sent_all = data.get("sending") == "done"
        out["status"] = "done" if sent_all and out["tasks_done"] >= out["tasks_sent"] else "running"
        return out

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        ids = [str(i) for i in self.redis.zrevrange(f"{PREFIX}:jobs", 0, limit - 1)]
        return [job for job in (self.get(i) for i in ids) if job is not None]


class DeadLetters:
    """Tasks that will not succeed (bad input, or too many deliveries), with the reason, to inspect
    and requeue."""

    key = f"{PREFIX}:dlq"

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def push(self, job_id: str, documents: list[dict[str, Any]], reason: str) -> None:
        entry = {"job_id": job_id, "documents": documents, "reason": reason, "time": time.time()}
        self.redis.rpush(self.key, json.dumps(entry, ensure_ascii=False))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(self.key, 0, -1)]

    def take_all(self) -> list[dict[str, Any]]:
        """Take every entry out (to requeue them) atomically."""
        pipe = self.redis.pipeline()
        pipe.lrange(self.key, 0, -1)
        pipe.delete(self.key)
        raw, _ = pipe.execute()
        return [json.loads(r) for r in raw]

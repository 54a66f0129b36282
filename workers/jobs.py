"""Job counts and dead letters, kept in Redis so that producers, workers and `xmsearch jobs` / `dlq`
in other processes all see them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import redis

from xmsearch.ingest.job import COUNTS, JobStatus
from xmsearch.workers.metrics import DEAD_LETTERS

PREFIX = "xmsearch"
JOB_TTL_S = 7 * 24 * 3600
TASK_COUNTS = ("tasks_sent", "tasks_done", "tasks_failed")
LOST_RECHECK_S = 0.5
# Counts added once per operation id, however often the client sends them: a Redis that restarts
# between applying a call and answering it gets the same call again from the client's retry.
ADD_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


class JobStore:
    """One Redis hash per job: its counts, the tasks sent, done and failed for good, and whether the
    producer has sent them all.

    A job whose tasks were all sent but are not all done, while the broker holds no task at all (none
    waiting, none delivered and unacknowledged: `holds_tasks`), lost them (a broker that lost its last
    writes, a purged queue): it is reported failed, with what was lost, rather than running for ever."""

    def __init__(self, client: redis.Redis, holds_tasks: Callable[[], bool] = lambda: True) -> None:
        self.redis = client
        self.holds_tasks = holds_tasks
        self._add_once = client.register_script(ADD_ONCE)

    def _key(self, job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}"

    def create(self, job_id: str, source: str, tenant: str | None = None) -> None:
        key = self._key(job_id)
        mapping: dict[str | bytes, str | int | float] = {name: 0 for name in (*COUNTS, *TASK_COUNTS)}
        mapping.update(source=source, created=time.time())
        if tenant is not None:
            mapping["tenant"] = tenant
        self.redis.hset(key, mapping=mapping)  # type: ignore[arg-type]
        self.redis.expire(key, JOB_TTL_S)
        self.redis.zadd(f"{PREFIX}:jobs", {job_id: time.time()})

    def add(self, job_id: str, op: str | None = None, **deltas: int) -> None:
        """Add to the job's counts, once per `op` (a fresh one by default) even if the call is retried."""
        changes = [str(part) for name, value in deltas.items() if value for part in (name, value)]
        if changes:
            keys = [self._key(job_id), f"{self._key(job_id)}:ops"]
            self._add_once(keys=keys, args=[op or uuid.uuid4().hex, JOB_TTL_S, *changes])

    def counted(self, job_id: str, op: str) -> bool:
        """Whether operation `op` (e.g. a task's end) was already added to the job's counts."""
        return bool(self.redis.sismember(f"{self._key(job_id)}:ops", op))

    def finish_sending(self, job_id: str) -> None:
        self.redis.hset(self._key(job_id), "sending", "done")

    def get(self, job_id: str) -> dict[str, Any] | None:
        read = self._read(job_id)
        if read is not None and self._stranded(*read):
            time.sleep(LOST_RECHECK_S)  # a task between the queue and its worker is in neither for a moment
            read = self._read(job_id)
            if read is not None and self._stranded(*read):
                return self._lost(read[0])
        return None if read is None else read[0]

    @staticmethod
    def _lost(job: dict[str, Any]) -> dict[str, Any]:
        """The job failed, with what was lost: its tasks vanished from the broker."""
        job["status"] = str(JobStatus.FAILED)
        lost, unfinished = job["tasks_sent"] - job["tasks_done"], job["accepted"] - job["processed"]
        job["errors"] = [
            f"{lost} of its {job['tasks_sent']} tasks vanished from the broker before they ran (a Redis that lost "
            f"its last writes, or a purged queue): {unfinished} of its {job['accepted']} documents were not "
            "indexed; send them again (unchanged ones are skipped)"
        ]
        return job

    def _stranded(self, job: dict[str, Any], sent_all: bool) -> bool:
        return sent_all and not JobStatus(job["status"]).finished and not self.holds_tasks()

    def _read(self, job_id: str) -> tuple[dict[str, Any], bool] | None:
        """The job as reported, and whether the producer has sent all its tasks."""
        raw = self.redis.hgetall(self._key(job_id))
        if not raw:
            return None
        data = {str(k): str(v) for k, v in raw.items()}  # the client decodes responses
        out: dict[str, Any] = {"id": job_id, "source": data.get("source", ""), "tenant": data.get("tenant")}
        out["created"] = float(data["created"]) if "created" in data else None
        for name in (*COUNTS, *TASK_COUNTS):
            out[name] = int(data.get(name, 0))
        sent_all = data.get("sending") == "done"
        out["status"] = str(status(sent_all, out))
        return out, sent_all

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        ids = [str(i) for i in self.redis.zrevrange(f"{PREFIX}:jobs", 0, limit - 1)]
        return [job for job in (self.get(i) for i in ids) if job is not None]


def status(sent_all: bool, counts: dict[str, int]) -> JobStatus:
    """A distributed job's status from its task counts."""
    if sent_all and counts["tasks_done"] >= counts["tasks_sent"]:
        return JobStatus.FAILED if counts["tasks_failed"] > 0 else JobStatus.DONE
    return JobStatus.RUNNING if counts["tasks_done"] else JobStatus.QUEUED


@dataclass
class DeadLetter:
    """A task, or the documents of one, that will not succeed as it is: what it was and why.

    `task_failed`: the whole task failed for good (out of retries, a lone poison document, delivered
    too often), as opposed to documents a successful task refused (e.g. the language policy)."""

    job_id: str
    reason: str
    task: Literal["index", "delete"] = "index"
    documents: list[dict[str, Any]] = field(default_factory=list)  # index: the documents, as sent
    document_ids: list[str] = field(default_factory=list)  # delete: the ids and their tenant
    tenant: str | None = None
    task_failed: bool = False
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # names the entry for requeue and purge

    @property
    def why_kept(self) -> str | None:
        """Why requeueing cannot help, or None when it can."""
        if self.task == "index" and not self.documents:
            return "it holds no document (a record that was not one: fix it at its source and send it again)"
        return None

    @classmethod
    def from_json(cls, raw: str) -> DeadLetter:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def as_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


class DeadLetters:
    """The dead-letter list, to inspect and requeue."""

    key = f"{PREFIX}:dlq"

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def push(self, letter: DeadLetter) -> None:
        self.redis.rpush(self.key, letter.as_json())
        DEAD_LETTERS.inc()

    def raw(self) -> list[str]:
        return [str(r) for r in self.redis.lrange(self.key, 0, -1)]

    def entries(self) -> list[dict[str, Any]]:
        return [asdict(DeadLetter.from_json(raw)) for raw in self.raw()]

    def remove(self, raw: str) -> None:
        """Remove one entry (exactly as listed by `raw`), once it was requeued."""
        self.redis.lrem(self.key, 1, raw)

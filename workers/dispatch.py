"""The one way a task reaches the workers: `TaskQueue` sends index and delete tasks (with the broker
retry policy) and counts each in its job; it dead-letters a task that failed for good and requeues
dead letters. The producer, the stream intake, the tasks' batch split and `xmsearch dlq` all send
through it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis

from xmsearch.ingest.job import Job
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.workers.app import DELETE_TASK, INDEX_TASK, PATIENT_RETRIES, QUEUE, XmsearchCelery, make_app, redis_client
from xmsearch.workers.errors import BrokerNotDurableError
from xmsearch.workers.jobs import DeadLetter, DeadLetters, JobStore
from xmsearch.workers.settings import WorkerSettings

# How long sending waits for a broker that does not answer (kombu's publish retries).
RETRY_POLICY = {"max_retries": 30, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 5.0}
DELIVERIES_TTL_S = 7 * 24 * 3600
UNACKED = "unacked"  # kombu's Redis transport: where delivered, unacknowledged messages wait


def broker_counts(client: redis.Redis) -> tuple[int, int]:
    """The broker's tasks, in one round trip: waiting in the queue, and delivered to a worker but not
    acknowledged yet (kombu keeps those in its `unacked` hash until the task ends)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(QUEUE)
    pipe.hlen(UNACKED)
    waiting, unacked = pipe.execute()
    return int(waiting), int(unacked)


@dataclass(frozen=True)
class Requeued:
    """What `requeue` did: entries sent again, and those kept with the reason."""

    requeued: int
    kept: list[tuple[dict[str, Any], str]]


class TaskQueue:
    """Sends tasks to the workers and keeps their jobs' counts (Redis), for one broker."""

    def __init__(
        self, settings: WorkerSettings, app: XmsearchCelery | None = None, retries: int = PATIENT_RETRIES
    ) -> None:
        self.settings = settings
        self.app = app or make_app(settings)
        self.redis = redis_client(settings, retries)
        self.jobs = JobStore(self.redis, self.holds_tasks)
        self.dead = DeadLetters(self.redis)
        self._durable = settings.broker_allow_volatile

    def ensure_durable(self) -> None:
        """Refuse a broker that would lose accepted work on a restart (no append-only file), unless the
        settings allow it; said once. A Redis that does not tell (INFO disabled) is taken at its word."""
        if self._durable:
            return
        try:
            aof = self.redis.info("persistence").get("aof_enabled")
        except redis.ResponseError:
            aof = None  # INFO renamed or disabled (some managed services): cannot tell
        if aof == 0:
            raise BrokerNotDurableError(
                f"the broker at {self.settings.broker_url} keeps nothing on disk (appendonly no): a Redis restart "
                "would lose every accepted document and job. Run Redis with --appendonly yes (or CONFIG SET "
                "appendonly yes), or set XMSEARCH_BROKER_ALLOW_VOLATILE=true to accept that"
            )
        self._durable = True

    def new_job(self, source: str, tenant: str | None = None) -> str:
        self.ensure_durable()  # before anything is accepted
        job_id = uuid.uuid4().hex
        self.jobs.create(job_id, source, tenant)
        return job_id

    def send_index(
        self, job_id: str, documents: list[dict[str, Any]], accepted: int = 0, task_id: str | None = None
    ) -> None:
        """Count one more task of the job (and `accepted` documents), then queue it. A task sent again
        under the same `task_id` (its sender ran again) is counted once."""
        task_id = task_id or uuid.uuid4().hex
        self.jobs.add(job_id, f"sent:{task_id}", tasks_sent=1, accepted=accepted)
        self.app.send_task(INDEX_TASK, args=[job_id, documents], task_id=task_id, retry=True, retry_policy=RETRY_POLICY)

    def send_delete(self, job_id: str, document_ids: list[str], tenant: str | None) -> None:
        task_id = uuid.uuid4().hex
        self.jobs.add(job_id, f"sent:{task_id}", tasks_sent=1)
        self.app.send_task(
            DELETE_TASK, args=[job_id, document_ids, tenant], task_id=task_id, retry=True, retry_policy=RETRY_POLICY
        )

    def split(self, job_id: str, documents: list[dict[str, Any]], task_id: str) -> None:
        """Task `task_id`'s batch failed: it is sent again as two tasks of its job, halves, and counted
        done after they are counted, so the job never looks done early. The halves' ids come from its
        id: a split that runs again (its worker was lost in between) counts nothing twice."""
        if self.jobs.counted(job_id, task_id):
            return  # it had ended (its documents written) before its worker was lost: nothing to redo
        half = len(documents) // 2
        for i, part in enumerate((documents[:half], documents[half:])):
            self.send_index(job_id, part, task_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{task_id}/{i}")))
        self.jobs.add(job_id, task_id, tasks_done=1)

    def delete(self, document_ids: list[str], tenant: str | None) -> str:
        """One delete job of one task (the workers own the store); its id."""
        job_id = self.new_job("delete", tenant)
        self.send_delete(job_id, document_ids, tenant)
        self.jobs.finish_sending(job_id)
        return job_id

    def finished(self, job: Job, task_id: str) -> None:
        """Task `task_id` is done: add what it counted to its job (the producer counted the accepted
        documents). A task ends once in its job's counts, whichever way (done, split, failed), even when
        it ran again after its worker was lost before acknowledging it."""
        counts = {name: value for name, value in asdict(job.counts).items() if name != "accepted"}
        self.jobs.add(job.id, task_id, **counts, tasks_done=1)

    def fail(self, task: str, task_id: str, args: list[Any], reason: str) -> None:
        """A task failed for good: dead-letter it with the reason, and count it done and failed (unless it
        had ended already, before its worker was lost: then there is nothing to dead-letter)."""
        job_id = args[0]
        if self.jobs.counted(job_id, task_id):
            return
        if task == DELETE_TASK:
            letter = DeadLetter(job_id, reason, "delete", document_ids=args[1], tenant=args[2], task_failed=True)
        else:
            letter = DeadLetter(job_id, reason, "index", documents=args[1], task_failed=True)
        self.dead.push(letter)
        self.jobs.add(job_id, task_id, failed=len(letter.documents), tasks_failed=1, tasks_done=1)

    def delivered(self, task_id: str, retries: int) -> int:
        """Count one more delivery of this task (attempt); how many there were."""
        key = f"xmsearch:deliveries:{task_id}:{retries}"
        count = int(self.redis.incr(key))
        self.redis.expire(key, DELIVERIES_TTL_S)
        return count

    def requeue(self, ids: Sequence[str] = ()) -> Requeued:
        """Send every dead letter (or those of `ids`) that can succeed again as a new task of its job
        (taking back what it counted as failed); keep the others, saying why."""
        done, kept = 0, []
        for raw, letter in self._chosen(ids):
            why = letter.why_kept
            if why is not None:
                kept.append((asdict(letter), why))
                continue
            self._reopen(letter)
            if letter.task == "delete":
                self.send_delete(letter.job_id, letter.document_ids, letter.tenant)
            else:
                self.send_index(letter.job_id, letter.documents)
            self.dead.remove(raw)  # after sending: a crash in between requeues it twice (tasks are idempotent)
            done += 1
        return Requeued(done, kept)

    def purge(self, ids: Sequence[str] = ()) -> int:
        """Drop every dead letter (or those of `ids`) for good; how many were dropped."""
        chosen = self._chosen(ids)
        for raw, _ in chosen:
            self.dead.remove(raw)
        return len(chosen)

    def _chosen(self, ids: Sequence[str]) -> list[tuple[str, DeadLetter]]:
        letters = [(raw, DeadLetter.from_json(raw)) for raw in self.dead.raw()]
        unknown = set(ids) - {letter.id for _, letter in letters}
        if unknown:
            raise InvalidInputError(f"no dead letter {', '.join(sorted(unknown))} (see xmsearch dlq list)")
        return [(raw, letter) for raw, letter in letters if not ids or letter.id in ids]

    def _reopen(self, letter: DeadLetter) -> None:
        if self.jobs.get(letter.job_id) is None:  # expired since
            self.jobs.create(letter.job_id, "dlq requeue")
            self.jobs.finish_sending(letter.job_id)
            return
        self.jobs.add(letter.job_id, failed=-len(letter.documents), tasks_failed=-int(letter.task_failed))

    def holds_tasks(self) -> bool:
        """Whether the broker holds any task: waiting in the queue, or delivered to a worker and not
        acknowledged yet."""
        return any(broker_counts(self.redis))

    def depth(self) -> int:
        """Tasks waiting in the broker queue (-1: the broker did not answer)."""
        try:
            return int(self.redis.llen(QUEUE))
        except redis.RedisError:
            return -1

    def close(self) -> None:
        self.redis.close()

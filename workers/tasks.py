"""The worker tasks: index a batch of documents, delete documents.

Each worker process loads the model and opens the store once (on start), sets torch threads to its
share of the cores, and closes the store on shutdown. Tasks are acknowledged late and rejected on
worker loss, so a killed worker's batch is delivered again; points have deterministic ids and
unchanged chunks are skipped, so a second delivery writes nothing twice. Transient faults (Qdrant or
Redis not answering) are retried with exponential backoff and jitter; bad input is not retried. A
batch that fails for another reason is split in halves until the poison document stands alone; that
one, a document the language policy refuses, and a task delivered more than `max_redeliveries` times
go to the dead-letter list with the reason.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from ingest.documents import Document, Reject
from ingest.pipeline import Indexer, Job
from retriever.errors import TransientError
from retriever.settings import get_settings
from workers.app import app, redis_client
from workers.jobs import DeadLetters, JobStore

log = logging.getLogger(__name__)
_process: dict[str, Any] = {}


def indexer() -> Indexer:
    """This process's indexer: the model is loaded once per worker process, never per task."""
    if "indexer" not in _process:
        _process["indexer"] = Indexer.from_settings(get_settings())
    return _process["indexer"]


def _stores() -> tuple[JobStore, DeadLetters]:
    if "redis" not in _process:
        _process["redis"] = redis_client(get_settings())
    return JobStore(_process["redis"]), DeadLetters(_process["redis"])


@worker_process_init.connect
def _start(**_: Any) -> None:
    import torch

    settings = get_settings()
    torch.set_num_threads(settings.threads or max(1, (os.cpu_count() or 1) // settings.worker_concurrency))
    ready = indexer()
    ready.store.open(create=True)  # the embedded store belongs to this process from now on
    ready.encoder.encode_documents(["warm up"], ready.encoder.spec.languages[0])  # pages the weights in
    log.info("worker process %d is warm", os.getpid())


@worker_process_shutdown.connect
def _stop(**_: Any) -> None:
    if "indexer" in _process:
        _process.pop("indexer").close()


class IndexTask(Task):  # type: ignore[misc]
    autoretry_for = (TransientError,)
    retry_backoff = True
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = get_settings().task_retries

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Out of retries, or a single poison document: to the dead letters, with the reason."""
        job_id, documents = args
        jobs, dead = _stores()
        dead.push(job_id, documents, f"{type(exc).__name__}: {exc}")
        jobs.add(job_id, failed=len(documents), tasks_done=1)


@app.task(base=IndexTask, bind=True, name="xmsearch.index")
def index_documents(self: Task, job_id: str, documents: list[dict[str, Any]]) -> None:
    jobs, dead = _stores()
    if _over_delivered(self):
        reason = (
            f"delivered {get_settings().max_redeliveries + 1} times without finishing (its worker was lost each time)"
        )
        dead.push(job_id, documents, reason)
        jobs.add(job_id, failed=len(documents), tasks_done=1)
        return
    docs = [Document.model_validate(d) for d in documents]
    job = Job(id=job_id)
    refused: list[Reject] = []
    try:
        indexer().write(docs, job, refused.append)
    except TransientError:
        raise
    except Exception:
        if len(documents) == 1:
            raise  # the poison document: on_failure dead-letters it
        log.exception("batch of %d failed; splitting it to isolate the cause", len(documents))
        half = len(documents) // 2
        jobs.add(job_id, tasks_sent=2, tasks_done=1)
        for part in (documents[:half], documents[half:]):
            index_documents.apply_async(args=[job_id, part])
        return
    by_id = {d["id"]: d for d in documents}
    for reject in refused:
        doc_id = reject.location.removeprefix("document ").strip("'")
        dead.push(job_id, [by_id[doc_id]] if doc_id in by_id else [], reject.reason)
    counts = vars(job.counts)
    jobs.add(job_id, **{k: v for k, v in counts.items() if k != "accepted"}, tasks_done=1)


def _over_delivered(task: Task) -> bool:
    """Count this delivery; True once a task came back more often than allowed (a worker-killer)."""
    jobs, _ = _stores()
    key = f"xmsearch:deliveries:{task.request.id}:{task.request.retries}"
    count = int(jobs.redis.incr(key))
    jobs.redis.expire(key, 7 * 24 * 3600)
    return count > get_settings().max_redeliveries


@app.task(bind=True, name="xmsearch.delete", autoretry_for=(TransientError,), retry_backoff=True, retry_jitter=True)
def delete_documents(self: Task, job_id: str, document_ids: list[str], tenant: str | None = None) -> None:
    indexer().delete(document_ids, tenant)
    jobs, _ = _stores()
    jobs.add(job_id, deleted=len(document_ids), tasks_done=1)

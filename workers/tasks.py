"""The worker tasks: index a batch of documents, delete documents.

Each worker process loads the model and opens the store once (on start), sets torch threads to its
share of the cores, and closes the store on shutdown. Tasks are acknowledged late and rejected on
worker loss, so a killed worker's task is delivered again; points have deterministic ids and
unchanged chunks are skipped, so a second delivery writes nothing twice. Both tasks have the same
guarantees: transient faults (Qdrant or Redis not answering) are retried with exponential backoff
and jitter; a task that fails for good goes to the dead letters with the reason and counts as done
(and failed) in its job. An index batch that fails for another reason, or whose worker was lost more
than `max_redeliveries` times (a killer document, but also deploys, preemption and the OOM killer),
is split in halves as new tasks until the cause stands alone: only a lone document (or a delete) that
keeps failing is dead-lettered. A document the language policy refuses is dead-lettered alone, with
its (tenant, id).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from celery import Task, current_app, shared_task
from celery.signals import worker_process_init, worker_process_shutdown

from xmsearch.ingest.documents import Document, Reject
from xmsearch.ingest.job import Job
from xmsearch.ingest.pipeline import Indexer
from xmsearch.ingest.reindex import last
from xmsearch.retriever.errors import TransientError
from xmsearch.workers import metrics  # noqa: F401  # the task metrics follow Celery's signals
from xmsearch.workers.app import DELETE_TASK, INDEX_TASK, REINDEX_TASK, XmsearchCelery
from xmsearch.workers.dispatch import TaskQueue
from xmsearch.workers.jobs import DeadLetter
from xmsearch.workers.reindexing import WorkerReindex

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What one worker process holds for its tasks: the indexer (model and store), the queue, and the
    reindex it may run."""

    indexer: Indexer
    queue: TaskQueue
    reindex: WorkerReindex = field(init=False)

    def __post_init__(self) -> None:
        self.reindex = WorkerReindex(self.queue.settings, self.indexer, self.queue.redis)


_process: dict[str, WorkerContext] = {}


def context(app: XmsearchCelery) -> WorkerContext:
    """This process's context: the model is loaded once per worker process, never per task."""
    if "context" not in _process:
        _process["context"] = WorkerContext(Indexer.from_settings(app.settings), TaskQueue(app.settings, app))
    return _process["context"]


@worker_process_init.connect
def _start(**_: Any) -> None:
    import torch

    settings = current_app.settings  # the worker's app, built by `xmsearch worker`
    torch.set_num_threads(settings.threads or max(1, (os.cpu_count() or 1) // settings.worker_concurrency))
    ready = context(current_app).indexer
    ready.store.open(create=True)  # the embedded store belongs to this process from now on
    ready.encoder.encode_documents(["warm up"], ready.encoder.spec.languages[0])  # pages the weights in
    ready.resume()  # a codebook's training or backfill that stopped with its process
    left = last(settings)
    if left is not None and left.unfinished:  # this store's reindex, stopped with its worker
        log.warning("resuming the reindex of %s (%s) left %s", settings.collection, left.changes, left.step)
        context(current_app).reindex.start(left.changes, left.rollback)
    log.info("worker process %d is warm", os.getpid())


@worker_process_shutdown.connect
def _stop(**_: Any) -> None:
    if "context" in _process:
        ctx = _process.pop("context")
        ctx.reindex.stop()  # it keeps its version, and resumes when a worker starts again
        ctx.indexer.close()


class QueueTask(Task):  # type: ignore[misc]
    """What both tasks guarantee (retries come from the settings, through the app's annotations)."""

    autoretry_for = (TransientError,)
    retry_backoff = True
    retry_backoff_max = 60
    retry_jitter = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        queue = context(self.app).queue
        limit = queue.settings.max_redeliveries
        if queue.delivered(self.request.id, self.request.retries) > limit:  # its worker was lost each time
            if self.name == INDEX_TASK and len(args[1]) > 1:  # deploys and OOM kills too: halve, not dead-letter
                log.warning("batch of %d lost with its worker %d times; splitting it", len(args[1]), limit + 1)
                queue.split(args[0], args[1], self.request.id)
                return None
            reason = f"delivered {limit + 1} times without finishing (its worker was lost each time)"
            queue.fail(self.name, self.request.id, list(args), reason)  # a document that kills workers on its own
            return None
        return super().__call__(*args, **kwargs)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Out of retries, a lone poison document, or a permanent error: to the dead letters."""
        context(self.app).queue.fail(self.name, task_id, list(args), f"{type(exc).__name__}: {exc}")


@shared_task(base=QueueTask, bind=True, name=INDEX_TASK)
def index_documents(self: Task, job_id: str, documents: list[dict[str, Any]]) -> None:
    ctx = context(self.app)
    docs = [Document.model_validate(d) for d in documents]
    job = Job(id=job_id)
    refused: list[Reject] = []
    try:
        ctx.indexer.write(docs, job, refused.append)
    except TransientError:
        raise
    except Exception:
        if len(documents) == 1:
            raise  # the poison document: on_failure dead-letters it
        log.exception("batch of %d failed; splitting it to isolate the cause", len(documents))
        ctx.queue.split(job_id, documents, self.request.id)
        return
    sent = {doc.key: raw for doc, raw in zip(docs, documents, strict=True)}
    for reject in refused:
        letter = [sent[reject.key]] if reject.key in sent else []
        ctx.queue.dead.push(DeadLetter(job_id, reject.reason, "index", documents=letter))
    ctx.queue.finished(job, self.request.id)


@shared_task(base=QueueTask, bind=True, name=DELETE_TASK)
def delete_documents(self: Task, job_id: str, document_ids: list[str], tenant: str | None = None) -> None:
    ctx = context(self.app)
    job = Job(id=job_id)
    ctx.indexer.delete(document_ids, tenant, job)
    ctx.queue.finished(job, self.request.id)


@shared_task(bind=True, name=REINDEX_TASK)
def reindex_collection(self: Task, changes: dict[str, str], rollback: bool = False) -> None:
    """Start a reindex (or a rollback) in this worker process; it runs in a thread of its own."""
    context(self.app).reindex.start(changes, rollback)

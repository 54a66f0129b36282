"""The Prometheus metrics of the queue's tasks: what each task did and how long it took, and the
dead letters written; recorded through Celery's signals in whichever process runs the task
(`metrics_http.py` serves a worker's, all its pool processes added up)."""

from __future__ import annotations

import os
import time
from typing import Any

from celery.signals import task_failure, task_postrun, task_prerun, task_retry, worker_process_shutdown
from prometheus_client import Counter, Histogram

from xmsearch.workers.metrics_http import MULTIPROC_ENV

TASKS = Counter(
    "xmsearch_tasks",
    "Queue tasks by name and outcome: succeeded, retried (a transient fault), failed (dead-lettered).",
    ["task", "outcome"],
)
TASK_SECONDS = Histogram(
    "xmsearch_task_seconds",
    "Seconds a queue task ran, by name.",
    ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
DEAD_LETTERS = Counter("xmsearch_dead_letters", "Dead letters written (a document or task that failed for good).")
_started: dict[str, float] = {}  # task id -> when it started, in this process


@task_prerun.connect
def _task_started(task_id: str, **_: Any) -> None:
    _started[task_id] = time.monotonic()


@task_postrun.connect
def _task_ended(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_SECONDS.labels(task.name).observe(time.monotonic() - started)
    if state == "SUCCESS":
        TASKS.labels(task.name, "succeeded").inc()


@task_retry.connect
def _task_retried(sender: Any = None, **_: Any) -> None:
    TASKS.labels(getattr(sender, "name", "?"), "retried").inc()


@task_failure.connect
def _task_failed(sender: Any = None, **_: Any) -> None:
    TASKS.labels(getattr(sender, "name", "?"), "failed").inc()


@worker_process_shutdown.connect
def _process_ended(**_: Any) -> None:
    """A pool process that ends leaves its counters; its live gauges go with it."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())

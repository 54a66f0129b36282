"""The Celery app, built from the settings it is given: Redis broker, late acknowledgement,
rejection on worker loss, prefetch 1, a visibility timeout above the longest task, JSON only, and the
retry budget of the xmsearch tasks."""

from __future__ import annotations

import logging

import redis
from celery import Celery
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from xmsearch.retriever.errors import PermanentError
from xmsearch.retriever.index.stores import backend_for
from xmsearch.workers.settings import QueueSettings, WorkerSettings

log = logging.getLogger(__name__)

QUEUE = "xmsearch"
INDEX_TASK = "xmsearch.index"
DELETE_TASK = "xmsearch.delete"
REINDEX_TASK = "xmsearch.reindex"
RESTORE_SWEEP_S = 5  # how often workers look for tasks whose worker was lost (past the visibility timeout)


class XmsearchCelery(Celery):  # type: ignore[misc]
    """A Celery app that carries the settings it was built from (its tasks read them)."""

    settings: WorkerSettings


def broker_url(settings: QueueSettings) -> str:
    if not settings.broker_url:
        raise PermanentError("the distributed mode needs XMSEARCH_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
    return settings.broker_url


def make_app(settings: WorkerSettings) -> XmsearchCelery:
    """An app for these settings; a worker started from it runs the tasks of `xmsearch.workers.tasks`."""
    app = XmsearchCelery("xmsearch", include=["xmsearch.workers.tasks"], set_as_current=False)
    app.settings = settings
    retries = {"max_retries": settings.task_retries}
    app.conf.update(
        broker_url=broker_url(settings),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_annotations={INDEX_TASK: retries, DELETE_TASK: retries},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a restarted Redis is waited for, not given up on
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # kombu sweeps for abandoned messages every interval x throttle seconds (10 x 10 by default,
            # which added up to 100 s to a killed worker's redelivery): every RESTORE_SWEEP_S instead
            "unacked_restore_interval": RESTORE_SWEEP_S,
            "unacked_restore_throttle": 1,
            # a sweep holds a Redis lock for milliseconds, but one held by a worker killed mid-sweep
            # stayed for kombu's default 300 s, stopping every worker's sweeps meanwhile (a killed
            # batch came back after 180+ s instead of ~10: tests/test_faults.py); restores are
            # transactions, so two sweeps overlapping after a short expiry restore a message once
            "unacked_mutex_expire": RESTORE_SWEEP_S,
        },
        worker_hijack_root_logger=False,
    )
    return app


def worker_processes(settings: WorkerSettings, wanted: int) -> int:
    """How many worker processes may run: one where the store is an Edge folder (one process owns it)."""
    if wanted > 1 and backend_for(settings) == "edge":
        log.warning("Qdrant Edge admits one process per store: running 1 worker process, not %d", wanted)
        return 1
    return wanted


PATIENT_RETRIES = 40  # about a minute of Redis retries: enough to ride out a restart


def redis_client(settings: QueueSettings, retries: int = PATIENT_RETRIES) -> redis.Redis:
    """A client for jobs and dead letters that rides out a Redis restart (by default about a minute of
    retries; fewer where a caller is waiting on the answer)."""
    return redis.Redis.from_url(
        broker_url(settings),
        socket_timeout=10,
        health_check_interval=30,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )

"""The Celery app, configured from the settings: Redis broker, late acknowledgement, rejection on
worker loss, prefetch 1, a visibility timeout above the longest task, JSON only."""

from __future__ import annotations

import redis
from celery import Celery
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from retriever.errors import PermanentError
from retriever.settings import Settings, get_settings

QUEUE = "xmsearch"


def broker_url(settings: Settings) -> str:
    if not settings.broker_url:
        raise PermanentError("the distributed mode needs XMSEARCH_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
    return settings.broker_url


def make_app(settings: Settings) -> Celery:
    app = Celery("xmsearch", include=["workers.tasks"])
    configure(app, settings)
    return app


def configure(app: Celery, settings: Settings) -> None:
    """Point the app at the settings' broker (a caller may pass settings other than the environment's,
    before the app has sent anything)."""
    app.conf.update(
        broker_url=settings.broker_url or "memory://",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a restarted Redis is waited for, not given up on
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        worker_hijack_root_logger=False,
    )


def redis_client(settings: Settings, retries: int = 40) -> redis.Redis:
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


app = make_app(get_settings())

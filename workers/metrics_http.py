"""Serving `xmsearch worker`'s metrics: every pool process's samples added up, and the broker's
queue read at each scrape, from the worker's main process on its own port.

Celery's prefork pool runs tasks in child processes, so a worker uses prometheus-client's
multiprocess mode: each process writes its samples into one folder (PROMETHEUS_MULTIPROC_DIR), and
the main process adds them up when scraped. The folder must be set before any metric exists in the
process, which is why this module imports no metric and prometheus-client only once it is set. The
model and index layers' metrics (documents, chunks encoded, encoder batches) come along.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from xmsearch.workers.settings import WorkerSettings

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class QueueCollector:
    """The broker's state at scrape time: tasks waiting, tasks delivered and not yet acknowledged, and
    dead letters kept (-1 where Redis does not answer)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Any]:
        import redis
        from prometheus_client.core import GaugeMetricFamily

        from xmsearch.workers.app import redis_client
        from xmsearch.workers.dispatch import broker_counts
        from xmsearch.workers.jobs import DeadLetters

        client = redis_client(self.settings, retries=0)
        try:
            waiting, unacked = broker_counts(client)
            dead = int(client.llen(DeadLetters.key))
        except redis.RedisError:
            waiting = unacked = dead = -1
        finally:
            client.close()
        yield GaugeMetricFamily("xmsearch_queue_depth", "Tasks waiting in the broker queue.", value=waiting)
        yield GaugeMetricFamily("xmsearch_queue_unacked", "Tasks delivered to a worker, not yet done.", value=unacked)
        yield GaugeMetricFamily("xmsearch_dead_letters_kept", "Dead letters in the list (`xmsearch dlq`).", value=dead)


def serve_worker_metrics(settings: WorkerSettings) -> str | None:
    """Prepare the multiprocess folder and serve every process's metrics and the queue's on the
    worker metrics port from this (the main) process: call it before anything creates a metric. Where
    it listens (None: off, or the port is taken: the worker runs on without metrics, and says so)."""
    if not settings.worker_metrics_port:
        return None
    folder = os.environ.get(MULTIPROC_ENV)
    if folder is None:
        folder = tempfile.mkdtemp(prefix="xmsearch-worker-metrics-")
        atexit.register(shutil.rmtree, folder, True)
    shutil.rmtree(folder, ignore_errors=True)  # samples of an earlier run would add up with this one's
    os.makedirs(folder)
    os.environ[MULTIPROC_ENV] = folder
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QueueCollector(settings))  # type: ignore[arg-type]
    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    try:
        start_http_server(port, host, registry)
    except OSError as exc:
        log.warning("worker metrics not served: %s:%d is taken (%s); set XMSEARCH_WORKER_METRICS_PORT", host, port, exc)
        return None
    log.info("worker metrics at http://%s:%d/metrics", host, port)
    return f"{host}:{port}"

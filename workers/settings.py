"""The queue settings (`XMSEARCH_*`): the broker, workers, retries and producer batches; and the
settings a worker runs with (these and the indexer's)."""

from __future__ import annotations

from pydantic import Field

from xmsearch.ingest.settings import IndexerSettings
from xmsearch.retriever.settings import EnvSettings


class QueueSettings(EnvSettings):
    """The distributed mode: the broker, worker processes, delivery guarantees and producer batches."""

    broker_url: str | None = Field(
        None,
        description="Redis URL of the Celery broker (distributed mode); unset: ingestion runs in process.",
        examples=["redis://127.0.0.1:6379/0"],
    )
    broker_allow_volatile: bool = Field(
        False,
        description="Accept work on a Redis that keeps nothing on disk (appendonly no): a restart then loses what "
        "was accepted. Off: such a broker is refused.",
    )
    worker_concurrency: int = Field(1, ge=1, description="Worker processes per `xmsearch worker` (Edge: 1).")
    worker_metrics_port: int = Field(
        9108, ge=0, le=65535, description="Port where `xmsearch worker` serves its Prometheus metrics (0: none)."
    )
    worker_metrics_host: str = Field(
        "127.0.0.1", description="Address of the worker's metrics (0.0.0.0 in a container, to be scraped)."
    )
    task_retries: int = Field(5, ge=0, description="Retries of a task that met a transient fault.")
    max_redeliveries: int = Field(3, ge=1, description="Deliveries of one task (worker lost) before dead-lettering.")
    visibility_timeout: int = Field(
        60,
        ge=5,
        description="Seconds before Redis redelivers an unacknowledged task: how soon a killed worker's batch comes "
        "back. A task running longer is delivered again early, which costs only time (writes are idempotent).",
    )
    producer_batch_docs: int = Field(
        128, ge=1, description="Documents per task at most (big enough for the worker to sort by length)."
    )
    producer_batch_chars: int = Field(200_000, ge=1, description="Characters of text per task at most.")
    producer_max_wait: float = Field(1.0, gt=0, description="Seconds a partial batch waits for more documents.")


class WorkerSettings(IndexerSettings, QueueSettings):
    """What a worker process (and the Celery app) runs with."""

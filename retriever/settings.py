"""The one settings object of xmsearch: every entry point reads it, from `XMSEARCH_*` variables
(or a `.env` file in the working folder)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "antoinelouis/colbert-xm"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ApiKey(BaseModel):
    """One API key, stored as the SHA-256 of the key (make one with `xmsearch api-key`)."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the key.")
    name: str = Field("key", max_length=100, description="Shown in logs, never the key itself.")
    tenant: str | None = Field(
        None, min_length=1, max_length=256, description="Bound to this tenant: reads and writes only its documents."
    )


class Settings(BaseSettings):
    """Configuration shared by the encoder, the store, ingestion, the workers, the API and the CLI."""

    model_config = SettingsConfigDict(env_prefix="XMSEARCH_", env_file=".env", extra="ignore", protected_namespaces=())

    model: str = Field(DEFAULT_MODEL, description="Hub id or local folder of a ColBERT-XM (colbert-ai) checkpoint.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = fp32 on CPU and fp16 on CUDA (as the reference encodes documents)."
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Texts per forward pass.")
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads for this process; unset keeps torch's default."
    )
    marker_convention: Literal["legacy", "current"] = Field(
        "legacy", description="legacy = colbert-ai <= 0.2.20 (what ColBERT-XM was trained with)."
    )
    unknown_language: Literal["fallback", "error"] = Field(
        "fallback", description="What to do with a language that has no adapter."
    )
    fallback_language: str = Field("en", description="Adapter used by the fallback policy.")
    detect_language: bool = Field(True, description="Detect the language of texts given without one.")
    langid_min_confidence: float = Field(
        0.6, ge=0.0, le=1.0, description="Detections below this confidence follow the unknown-language policy."
    )

    store: Literal["auto", "edge", "local", "server"] = Field(
        "auto", description="auto = server when qdrant_url is set, else Qdrant Edge in data_dir."
    )
    data_dir: Path = Field(Path("data"), description="Folder of the embedded stores (Edge, local mode).")
    qdrant_url: str | None = Field(None, description="URL of a Qdrant server or cluster (distributed mode).")
    qdrant_api_key: SecretStr | None = Field(None, description="API key of the Qdrant server.")
    qdrant_grpc: bool = Field(False, description="Talk gRPC to the server (port 6334) instead of REST.")
    qdrant_timeout: float = Field(10.0, gt=0, description="Seconds before a server request is given up.")
    qdrant_retries: int = Field(3, ge=0, le=10, description="Retries of a server request that did not answer.")
    collection: str = Field(
        "xmsearch", pattern=r"^[A-Za-z0-9_-]{1,100}$", description="Alias that readers and writers use."
    )
    vector_datatype: Literal["float16", "float32"] = Field("float16", description="Storage type of the token vectors.")
    quantization: Literal["none", "int8", "binary"] = Field(
        "none", description="An extra quantized copy of the token vectors kept in RAM (originals on disk)."
    )
    metadata_indexes: dict[str, Literal["keyword", "integer", "float", "bool"]] = Field(
        default_factory=dict, description='Payload indexes on metadata keys, e.g. {"category": "keyword"}.'
    )
    first_stage: Literal["auto", "on", "off"] = Field(
        "auto", description="A single-vector HNSW prefetch before exact MaxSim: auto = from first_stage_min_points."
    )
    first_stage_encoding: Literal["mean", "muvera"] = Field(
        "mean", description="mean = normalised mean of the token vectors (128 dims); muvera needs xmsearch[muvera]."
    )
    first_stage_min_points: int = Field(
        10_000, ge=0, description="Collection size from which `auto` uses the first stage."
    )
    first_stage_candidates: int = Field(400, ge=10, le=10_000, description="Candidates reranked by MaxSim.")
    query_batching: bool = Field(
        True, description="Encode the queries of concurrent searches together (never waits for a timer)."
    )
    max_k: int = Field(1000, ge=1, description="The most hits one search may ask for.")
    max_document_chars: int = Field(2_000_000, ge=1, description="Longest document text accepted.")
    max_metadata_bytes: int = Field(65_536, ge=2, description="Largest metadata object (as JSON) accepted.")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks of a document.")
    ingest_batch_size: int = Field(64, ge=1, le=4096, description="Chunks encoded and written together.")

    broker_url: str | None = Field(
        None, description="Redis URL of the Celery broker (distributed mode); unset: ingestion runs in process."
    )
    worker_concurrency: int = Field(1, ge=1, description="Worker processes per `xmsearch worker` (Edge: 1).")
    task_retries: int = Field(5, ge=0, description="Retries of a task that met a transient fault.")
    max_redeliveries: int = Field(3, ge=1, description="Deliveries of one task (worker lost) before dead-lettering.")
    visibility_timeout: int = Field(3600, ge=5, description="Seconds before Redis redelivers an unacknowledged task.")
    producer_batch_docs: int = Field(
        128, ge=1, description="Documents per task at most (big enough for the worker to sort by length)."
    )
    producer_batch_chars: int = Field(200_000, ge=1, description="Characters of text per task at most.")
    producer_max_wait: float = Field(1.0, gt=0, description="Seconds a partial batch waits for more documents.")

    api_auth: Literal["required", "disabled"] = Field(
        "required", description="disabled = no API keys (local use only: `serve` then listens on loopback only)."
    )
    api_keys: list[ApiKey] = Field(
        default_factory=list, description='JSON list, e.g. [{"sha256": "...", "name": "app", "tenant": "acme"}].'
    )
    api_host: str = Field("127.0.0.1", description="Address `xmsearch serve` listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `xmsearch serve` listens on.")
    api_max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    api_max_documents: int = Field(1000, ge=1, description="Documents per POST /documents at most.")
    api_max_queries: int = Field(64, ge=1, description="Queries per POST /search/batch at most.")
    max_query_chars: int = Field(2000, ge=1, description="Longest query text accepted (tokens: query_maxlen).")
    optimize_after_points: int = Field(
        20_000,
        ge=1,
        description="Embedded API: optimise the store when idle once this many points were written or deleted.",
    )
    api_queue_jobs: int = Field(
        64, ge=1, description="Embedded mode: submitted jobs waiting to be indexed before the API answers 503."
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {value!r}")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

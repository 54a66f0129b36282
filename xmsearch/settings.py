"""The one settings object of xmsearch, `Settings`: every group (model, index, search, ingestion,
queue, API, embedded mode, remote mode, logs) in one, read from `XMSEARCH_*` variables (or a `.env` file). Entry points
read it once (`get_settings`); library code takes the group it is given."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from xmsearch.logs import LogSettings
from xmsearch.retriever.settings import EnvSettings
from xmsearch.workers.settings import WorkerSettings


class ApiKey(BaseModel):
    """One API key, stored as the SHA-256 of the key (make one with `xmsearch api-key`)."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the key.")
    name: str = Field("key", max_length=100, description="Shown in logs, never the key itself.")
    tenant: str | None = Field(
        None, min_length=1, max_length=256, description="Bound to this tenant: reads and writes only its documents."
    )


class ApiSettings(EnvSettings):
    """The HTTP API: keys, where it listens, and the limits of a request."""

    api_auth: Literal["required", "disabled"] = Field(
        "required", description="disabled = no API keys (local use only: `serve` then listens on loopback only)."
    )
    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description='JSON list, e.g. [{"sha256": "...", "name": "app", "tenant": "acme"}].',
        examples=['\'[{"sha256": "<from xmsearch api-key>", "name": "app"}]\''],
    )
    api_host: str = Field("127.0.0.1", description="Address `xmsearch serve` listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `xmsearch serve` listens on.")
    api_max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    api_body_timeout: float = Field(
        30.0, gt=0, description="Seconds a request body may stall before the request is answered 408."
    )
    api_header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client may take to send a request's headers before it is answered 408."
    )
    api_max_documents: int = Field(1000, ge=1, description="Documents per POST /documents at most.")
    api_max_queries: int = Field(64, ge=1, description="Queries per POST /search/batch at most.")


class EmbeddedSettings(EnvSettings):
    """The embedded mode's indexing queue (in the process that owns the store)."""

    api_queue_jobs: int = Field(
        64, ge=1, description="Embedded mode: submitted jobs waiting to be indexed before the API answers 503."
    )
    optimize_after_points: int = Field(
        20_000,
        ge=1,
        description="Embedded API: optimise the store when idle once this many points were written or deleted.",
    )


class ClientSettings(EnvSettings):
    """The remote mode: the CLI and the Ingestor talk to a running xmsearch API instead of opening the
    store or the queue (`--url` and `--api-key` set these for one command)."""

    api_url: str | None = Field(
        None, description="A running xmsearch API, e.g. http://127.0.0.1:8000 (needs xmsearch[client])."
    )
    api_key: SecretStr | None = Field(None, description="The API key the remote mode sends (X-API-Key).")


class Settings(WorkerSettings, ApiSettings, EmbeddedSettings, ClientSettings, LogSettings):
    """Everything: what the CLI, the API and `from_settings()` read."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings.from_env()

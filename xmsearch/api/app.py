"""The FastAPI application: its settings, keys, error handlers, middleware and routes, and the
service it starts (model and store) and stops (finishing the accepted jobs first)."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import Gauge

from xmsearch.api import errors
from xmsearch.api.auth import KeyRing
from xmsearch.api.middleware import LimitsAndMetrics
from xmsearch.api.routes import router
from xmsearch.api.service import Service
from xmsearch.ingestor import mode_for
from xmsearch.retriever.index.stores import backend_for
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.settings import Settings, get_settings

QUEUE_DEPTH = Gauge("xmsearch_queue_depth", "Work waiting: jobs not started (embedded) or broker tasks (distributed).")

VERSION = importlib.metadata.version("xmsearch")
DESCRIPTION = """Multilingual late-interaction search (ColBERT-XM multivectors in Qdrant).

Send an API key as `X-API-Key: <key>` or `Authorization: Bearer <key>`. A key bound to a tenant
reads and writes only that tenant's documents, whatever the request says. Errors are JSON:
`{"error": {"code": "...", "message": "...", "details": [...]}}` with a stable `code`.
"""


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_config(settings: Settings) -> None:
    """Refuse settings an API cannot serve from, saying what to do instead: in the distributed mode the
    workers own an embedded store folder (Edge or local mode admit one process), so an API process
    could not search it and its readiness would lie. An API is never a client of another one."""
    if mode_for(settings) == "remote":
        raise errors.ConfigurationError(
            f"XMSEARCH_API_URL={settings.api_url} makes this process a client of another API; unset it to serve"
        )
    if mode_for(settings) == "distributed" and backend_for(settings) != "server":
        raise errors.ConfigurationError(
            f"the distributed mode's workers own the {backend_for(settings)} store in {settings.data_dir}, so the API "
            "could not search it: set XMSEARCH_QDRANT_URL to a Qdrant server (workers and API share it), or unset "
            "XMSEARCH_BROKER_URL for the embedded mode"
        )


def check_serving(settings: Settings, host: str, processes: int) -> None:
    """Refuse a way of serving that cannot work or is unsafe, saying what to do instead."""
    check_config(settings)
    if settings.api_auth == "disabled" and host not in LOOPBACK:
        raise errors.ConfigurationError(
            f"XMSEARCH_API_AUTH=disabled serves loopback only, not {host}: configure API keys"
        )
    if processes > 1 and mode_for(settings) == "embedded":
        raise errors.ConfigurationError(
            "the embedded mode owns its store in one process: --workers 1, or use the distributed mode"
        )


def create_app(settings: Settings | None = None, encoder: Encoder | None = None) -> FastAPI:
    """The API for these settings; the model loads (or `encoder` is used) when the app starts."""
    settings = settings or get_settings()
    check_config(settings)
    keys = KeyRing(settings)
    if keys.required and not keys.keys:
        raise errors.ConfigurationError(
            "no API keys: set XMSEARCH_API_KEYS (make one with `xmsearch api-key`), or XMSEARCH_API_AUTH=disabled "
            "for local use"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await asyncio.to_thread(Service.start, settings, encoder)
        app.state.service = service
        QUEUE_DEPTH.set_function(service.ingestor.depth)
        try:
            yield
        finally:
            await asyncio.to_thread(service.close)

    app = FastAPIOffline(title="xmsearch", version=VERSION, description=DESCRIPTION, lifespan=lifespan)
    app.state.keys = keys
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(LimitsAndMetrics, max_body=settings.api_max_body_bytes, body_timeout=settings.api_body_timeout)
    app.include_router(router)
    return app

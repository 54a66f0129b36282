"""The HTTP API (FastAPI, served by uvicorn through `xmsearch serve`): ingestion, search, jobs, health,
readiness and Prometheus metrics, with API keys and tenant-bound keys. `create_app` loads on first use,
so that `xmsearch api-key` (xmsearch.api.auth) does not import the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xmsearch.retriever.lazy import lazy_exports

if TYPE_CHECKING:
    from xmsearch.api.app import create_app

__all__ = ["create_app"]
__getattr__ = lazy_exports(__name__, {"create_app": "xmsearch.api.app"})

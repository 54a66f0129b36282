"""The HTTP API (FastAPI, served by uvicorn through `xmsearch serve`): ingestion, search, jobs, health,
readiness and Prometheus metrics, with API keys and tenant-bound keys."""

from xmsearch.api.app import create_app

__all__ = ["create_app"]

"""Store backends behind one interface: Qdrant Edge (embedded default), a Qdrant server through
qdrant-client, and qdrant-client's local mode (tests, tiny data)."""

from __future__ import annotations

from typing import Literal

from xmsearch.retriever.index.schema import IndexSpec
from xmsearch.retriever.index.stores.base import CollectionNotFoundError, Store, StoreLockedError, StoreUnavailableError
from xmsearch.retriever.settings import StoreSettings

Backend = Literal["edge", "local", "server"]


def backend_for(settings: StoreSettings) -> Backend:
    """The backend the settings name: `auto` is a server when a URL is set, else Qdrant Edge."""
    if settings.store == "auto":
        return "server" if settings.qdrant_url else "edge"
    return settings.store


def make_store(settings: StoreSettings, spec: IndexSpec) -> Store:
    """The store of the backend the settings name, for `spec` (not yet opened: call `open`)."""
    backend = backend_for(settings)
    if backend == "server":
        from xmsearch.retriever.index.stores.qdrant import QdrantStore

        if not settings.qdrant_url:
            from xmsearch.retriever.errors import PermanentError

            raise PermanentError("XMSEARCH_STORE=server needs XMSEARCH_QDRANT_URL")
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantStore.server(
            settings.qdrant_url, settings.collection, spec, api_key=key, grpc=settings.qdrant_grpc,
            timeout=settings.qdrant_timeout, retries=settings.qdrant_retries,
        )  # fmt: skip
    if backend == "local":
        from xmsearch.retriever.index.stores.qdrant import QdrantStore

        in_memory = str(settings.data_dir) == ":memory:"
        return QdrantStore.local(None if in_memory else settings.data_dir / "local", settings.collection, spec)
    from xmsearch.retriever.index.stores.edge import EdgeStore

    return EdgeStore(settings.data_dir / "edge", settings.collection, spec)


__all__ = ["CollectionNotFoundError", "Store", "StoreLockedError", "StoreUnavailableError", "backend_for", "make_store"]

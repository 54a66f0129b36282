"""Store backends behind one interface: Qdrant Edge (embedded default), a Qdrant server through
qdrant-client, and qdrant-client's local mode (tests, tiny data)."""

from __future__ import annotations

from retriever.schema import IndexSpec
from retriever.settings import Settings
from retriever.stores.base import CollectionNotFoundError, Store, StoreLockedError, StoreUnavailableError


def open_store(settings: Settings, spec: IndexSpec) -> Store:
    """The backend the settings name (not yet opened: call `open`)."""
    backend = settings.store
    if backend == "auto":
        backend = "server" if settings.qdrant_url else "edge"
    if backend == "server":
        from retriever.stores.qdrant import QdrantStore

        if not settings.qdrant_url:
            from retriever.errors import PermanentError

            raise PermanentError("XMSEARCH_STORE=server needs XMSEARCH_QDRANT_URL")
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantStore.server(
            settings.qdrant_url, settings.collection, spec, api_key=key, grpc=settings.qdrant_grpc,
            timeout=settings.qdrant_timeout, retries=settings.qdrant_retries,
        )  # fmt: skip
    if backend == "local":
        from retriever.stores.qdrant import QdrantStore

        in_memory = str(settings.data_dir) == ":memory:"
        return QdrantStore.local(None if in_memory else settings.data_dir / "local", settings.collection, spec)
    from retriever.stores.edge import EdgeStore

    return EdgeStore(settings.data_dir / "edge", settings.collection, spec)


__all__ = ["CollectionNotFoundError", "Store", "StoreLockedError", "StoreUnavailableError", "open_store"]

"""Store backends behind one interface: Qdrant Edge (embedded default), a Qdrant server through
qdrant-client, and qdrant-client's local mode (tests, tiny data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

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
            timeout=settings.qdrant_timeout, retries=settings.qdrant_retries, shards=settings.qdrant_shards,
            replication=settings.qdrant_replication_factor,
        )  # fmt: skip
    if backend == "local":
        from xmsearch.retriever.index.stores.qdrant import QdrantStore

        in_memory = str(settings.data_dir) == ":memory:"
        return QdrantStore.local(None if in_memory else settings.data_dir / "local", settings.collection, spec)
    from xmsearch.retriever.index.stores.edge import EdgeStore

    return EdgeStore(settings.data_dir / "edge", settings.collection, spec)


def searched_record(settings: StoreSettings) -> tuple[str | None, dict[str, Any] | None]:
    """The version the alias of the store the settings name points at, and what it recorded of how
    it was built (None, None: no collection yet); read without a spec or a model."""
    probe = make_store(settings, IndexSpec(model_id="", dim=1))  # reads the record only: no spec is checked
    try:
        version = probe.current_version()
        return version, probe.recorded(version) if version else None
    finally:
        probe.close()


def open_as_built(settings: StoreSettings) -> Store:
    """The store the settings name, open for the spec its searched version recorded (no model
    needed): what moves a collection (a copy, a snapshot) reads."""
    _, record = searched_record(settings)
    if record is None:
        raise CollectionNotFoundError(f"collection {settings.collection!r} has nothing to copy")
    store = make_store(settings, IndexSpec.from_record(record))
    store.open(create=False)
    return store


def settings_at(settings: StoreSettings, location: str, api_key: str | None = None) -> StoreSettings:
    """The store settings of another place, as a copy names it: a Qdrant server's URL (http:// or
    https://, with its API key), `local:FOLDER` (qdrant-client's local mode) or `edge:FOLDER` (Qdrant
    Edge; a bare folder too), the folder being a data folder like XMSEARCH_DATA_DIR; the collection
    and everything else as `settings`."""
    if location.startswith(("http://", "https://")):
        key = SecretStr(api_key) if api_key else None
        return settings.model_copy(update={"store": "server", "qdrant_url": location, "qdrant_api_key": key})
    kind, colon, folder = location.partition(":")
    if colon and kind in ("edge", "local"):
        return settings.model_copy(update={"store": kind, "data_dir": Path(folder)})
    return settings.model_copy(update={"store": "edge", "data_dir": Path(location)})


__all__ = [
    "CollectionNotFoundError",
    "Store",
    "StoreLockedError",
    "StoreUnavailableError",
    "backend_for",
    "make_store",
    "open_as_built",
    "searched_record",
    "settings_at",
]

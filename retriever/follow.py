"""Following the collection's alias where another process may move it (on a Qdrant server: a reindex
or a rollback elsewhere). A process that follows reads and writes the version its model built, by
name, never the alias itself; it asks where the alias points at most every FOLLOW_EVERY_S, and moves
to a new version together with the model and settings that built it (`load_version`). So it never
scores one model's queries against another's vectors, nor writes them into another's version."""

from __future__ import annotations

import time

from xmsearch.retriever.components import Components, encoder_for, index_spec, recorded_settings
from xmsearch.retriever.index.first_stage import make_first_stage
from xmsearch.retriever.index.stores import Store, backend_for
from xmsearch.retriever.index.stores.base import CollectionNotFoundError

FOLLOW_EVERY_S = 2.0  # how often a following process asks where the alias points


def follows(components: Components, follow: bool | None) -> bool:
    """Whether a process with these components follows the alias: on a server, unless told."""
    return backend_for(components.settings) == "server" if follow is None else follow


class Follow:
    """The version of `store`'s alias that this process reads and writes, by name."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pinned: tuple[str, Store] | None = None  # None: the version the alias names, at the next use
        self._checked = time.monotonic()

    def view(self) -> Store:
        """The store of the version pinned (pinned now to the alias's, if none is)."""
        if self.pinned is None:
            version = self.store.current_version()
            if version is None:
                raise CollectionNotFoundError(f"collection {self.store.alias!r} has no version")
            self.pinned = (version, self.store.version_store(version, self.store.spec))
        return self.pinned[1]

    def moved(self) -> str | None:
        """The version the alias names, if it moved from the one pinned (asked every FOLLOW_EVERY_S)."""
        if self.pinned is None or time.monotonic() - self._checked < FOLLOW_EVERY_S:
            return None
        self._checked = time.monotonic()
        version = self.store.current_version()
        return version if version not in (None, self.pinned[0]) else None

    def recheck(self) -> None:
        """Ask where the alias points at the next `moved` (a reindex elsewhere may have just swapped)."""
        self._checked = float("-inf")

    def pin(self, version: str, view: Store) -> None:
        """From now on `version` (whose store is `view`); the alias's store is told its spec."""
        self.store.spec = view.spec
        self.pinned = (version, view)


def load_version(components: Components, version: str) -> tuple[Components, Store]:
    """The components `version` was built with (its model: the same encoder where it is this one's)
    and a store of that version."""
    store = components.store
    settings = recorded_settings(components.settings, store.recorded(version) or {})
    encoder = encoder_for(settings, components)
    first_stage = make_first_stage(encoder.spec.dim, settings)
    view = store.version_store(version, index_spec(encoder.spec, settings, first_stage))  # refused if it differs
    return Components(settings, encoder, store, first_stage), view

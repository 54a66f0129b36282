"""The writes made while a reindex runs: which documents they touched (the reindex brings those into
the new version from the version searched), and how they are paused for its last step (the last few,
verification, the swap). In one process (`serve`, the worker that owns an embedded store) the
Indexer says so itself (`ProcessWrites`); the workers of a Qdrant server say so through Redis
(`xmsearch.workers.reindexing.SharedWrites`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from xmsearch.ingest.pipeline import Indexer, Key


class ConcurrentWrites(Protocol):
    def following(self) -> AbstractContextManager[Callable[[], list[Key]]]:
        """While open, the documents written are kept; it gives the call that takes those kept so far."""

    def pending(self) -> int:
        """Documents written and not yet taken."""

    def paused(self) -> AbstractContextManager[None]:
        """While open, no write is made (those in flight are done first)."""


class NoWrites:
    """A reindex that holds the store alone (the CLI): nothing is written meanwhile."""

    @contextlib.contextmanager
    def following(self) -> Iterator[Callable[[], list[Key]]]:
        yield list

    def pending(self) -> int:
        return 0

    def paused(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


class ProcessWrites:
    """The writes of this process, made through its Indexer (which holds its gate for each)."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer
        self._touched: set[Key] = set()
        self._guard = threading.Lock()

    def _watch(self, keys: Iterable[Key]) -> None:
        with self._guard:
            self._touched.update(keys)

    def _take(self) -> list[Key]:
        with self._guard:
            keys = list(self._touched)
            self._touched.clear()
        return keys

    @contextlib.contextmanager
    def following(self) -> Iterator[Callable[[], list[Key]]]:
        self.indexer.watchers.append(self._watch)
        try:
            yield self._take
        finally:
            self.indexer.watchers.remove(self._watch)

    def pending(self) -> int:
        return len(self._touched)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self.indexer.gate:
            yield

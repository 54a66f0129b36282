"""The small interface every store backend implements, and what they share.

A store holds one logical collection (the alias readers use) over versioned physical collections, so
that a reindex can build a new version and swap the alias atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from xmsearch.retriever.errors import PermanentError, TransientError
from xmsearch.retriever.index.filters import Condition
from xmsearch.retriever.index.schema import Hit, IndexSpec, Point


class CollectionNotFoundError(PermanentError):
    """Searching or reading a collection that has not been created (nothing ingested yet)."""


class StoreLockedError(PermanentError):
    """An embedded store folder is open in another process."""


class StoreUnavailableError(TransientError):
    """The Qdrant server did not answer within the retries."""


def own_versions(alias: str, names: list[str]) -> list[str]:
    """The names that are versions of `alias` (`<alias>-v<N>`), oldest first."""
    mine = [n for n in names if n.rpartition("-v")[0] == alias and n.rpartition("-v")[2].isdigit()]
    return sorted(mine, key=lambda n: int(n.rpartition("-v")[2]))


def next_version(alias: str, versions: list[str]) -> str:
    """The name of the version after the newest of `versions`."""
    return f"{alias}-v{int(versions[-1].rpartition('-v')[2]) + 1 if versions else 1}"


class Store(Protocol):
    """A Qdrant collection behind an alias, for one IndexSpec."""

    backend: str
    alias: str
    spec: IndexSpec

    def open(self, create: bool = True) -> None:
        """Check (or, with create, make) the collection behind the alias; refuse a mismatched spec.
        Once open, calling it again does nothing."""

    def upsert(self, points: Sequence[Point]) -> None:
        """Write points; searchable when the call returns."""

    def delete_documents(self, document_ids: Sequence[str], tenant: str | None = None) -> None:
        """Remove every chunk of these documents of one tenant (None: the documents without a tenant).

        A document is known by (tenant, id): two tenants may use the same id without touching each other."""

    def delete_chunks(self, document_id: str, chunks: Sequence[int], tenant: str | None = None) -> None:
        """Remove some chunks of one document (those a shorter new version no longer has)."""

    def chunk_hashes(self, document_ids: Sequence[str], tenant: str | None = None) -> dict[str, dict[int, str]]:
        """The stored content hash of every chunk of these documents: {document id: {chunk: hash}}."""

    def count(self, conditions: Sequence[Condition] = ()) -> int:
        """Exact number of points matching the conditions."""

    def fetch(self, document_id: str, tenant: str | None = None) -> list[Point]:
        """Every chunk of a document, in chunk order, with its vectors."""

    def search(
        self,
        queries: Sequence[np.ndarray],
        k: int,
        conditions: Sequence[Condition] = (),
        first_stage: Sequence[np.ndarray] | None = None,
        candidates: int = 0,
    ) -> list[list[Hit]]:
        """Exact MaxSim top-k per query; with first-stage vectors, prefetch `candidates` then rerank."""

    def versions(self) -> list[str]:
        """The physical collections of this alias, oldest first."""

    def create_version(self) -> str:
        """Make a new empty physical collection for the spec (for a reindex) and return its name."""

    def swap(self, version: str) -> None:
        """Point the alias at `version` atomically."""

    def optimize(self) -> None:
        """Build indexes and reclaim deleted points where the backend needs it done explicitly."""

    def close(self) -> None:
        """Release the store (files, locks, connections)."""

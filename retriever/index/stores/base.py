"""The small interface every store backend implements, and what they share.

A store holds one logical collection (the alias readers use) over versioned physical collections, so
that a reindex can build a new version and swap the alias atomically.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xmsearch.retriever.errors import PermanentError, TransientError
from xmsearch.retriever.index.filters import Condition, owned_by
from xmsearch.retriever.index.schema import HASH_FIELDS, Hit, IndexSpec, Point


class CollectionNotFoundError(PermanentError):
    """Searching or reading a collection that has not been created (nothing ingested yet)."""


class StoreNotOpenError(PermanentError):
    """A store used before `open` (or after `close`): a mistake in the caller, not a missing collection."""


class StoreLockedError(TransientError):
    """An embedded store folder is open in another process: busy, retry later (or use a server)."""


class StoreUnavailableError(TransientError):
    """The Qdrant server did not answer within the retries."""


def own_versions(alias: str, names: list[str]) -> list[str]:
    """The names that are versions of `alias` (`<alias>-v<N>`), oldest first."""
    mine = [n for n in names if n.rpartition("-v")[0] == alias and n.rpartition("-v")[2].isdigit()]
    return sorted(mine, key=lambda n: int(n.rpartition("-v")[2]))


def next_version(alias: str, versions: list[str]) -> str:
    """The name of the version after the newest of `versions`."""
    return f"{alias}-v{int(versions[-1].rpartition('-v')[2]) + 1 if versions else 1}"


def _of_document(document_id: str, tenant: str | None) -> tuple[Condition, ...]:
    """The points of one document of one tenant (None: of no tenant)."""
    return (Condition("document_id", equals=document_id), owned_by(tenant))


Record = tuple[dict[str, Any], Any]  # a stored point's payload and its vectors (None when not asked for)
Scored = tuple[float, dict[str, Any]]  # a hit's score and payload


@dataclass(frozen=True)
class Query:
    """One MaxSim query of a search, as each engine turns it into a request: k hits under the engine's
    filter; with a first-stage vector, `candidates` prefetched by it and reranked; rescored exactly
    when the store searches a quantized copy."""

    vectors: np.ndarray
    first_stage: np.ndarray | None
    k: int
    candidates: int
    filter: Any
    rescore: bool


class Store(ABC):
    """A Qdrant collection behind an alias, for one IndexSpec. A backend implements the collection
    operations and four primitives of its engine (write, delete by filter, scroll by filter, a batch
    of MaxSim queries); what is built on them is the same for every backend, here."""

    backend: str
    alias: str
    spec: IndexSpec

    @abstractmethod
    def open(self, create: bool = True) -> None:
        """Check (or, with create, make) the collection behind the alias; refuse a mismatched spec.
        Once open, calling it again does nothing."""

    @abstractmethod
    def count(self, conditions: Sequence[Condition] = ()) -> int:
        """Exact number of points matching the conditions."""

    @abstractmethod
    def versions(self) -> list[str]:
        """The physical collections of this alias, oldest first."""

    @abstractmethod
    def create_version(self) -> str:
        """Make a new empty physical collection for the spec (for a reindex) and return its name."""

    @abstractmethod
    def swap(self, version: str) -> None:
        """Point the alias at `version` atomically."""

    @abstractmethod
    def optimize(self) -> None:
        """Build indexes and reclaim deleted points where the backend needs it done explicitly."""

    @abstractmethod
    def close(self) -> None:
        """Release the store (files, locks, connections)."""

    @abstractmethod
    def _write(self, points: Sequence[Point]) -> None:
        """Write points already checked against the spec."""

    @abstractmethod
    def _delete(self, conditions: Sequence[Condition]) -> None:
        """Remove the points matching every condition."""

    @abstractmethod
    def _records(self, conditions: Sequence[Condition], fields: Sequence[str] | None, vectors: bool) -> list[Record]:
        """Every point matching the conditions: these payload fields (None: all) and the token vectors."""

    @abstractmethod
    def _engine_filter(self, conditions: tuple[Condition, ...]) -> Any:
        """The conditions in the engine's filter type (None when there are none)."""

    @abstractmethod
    def _request(self, query: Query) -> Any:
        """The engine's request for one query."""

    @abstractmethod
    def _run(self, requests: list[Any]) -> list[list[Scored]]:
        """Run the requests in one round trip: (score, payload) of the best points of each."""

    def upsert(self, points: Sequence[Point]) -> None:
        """Write points (wrong sizes are refused before anything is written); searchable on return."""
        for point in points:
            point.check(self.spec.dim)
        self._write(points)

    def delete_documents(self, document_ids: Sequence[str], tenant: str | None = None) -> dict[str, int]:
        """Remove every chunk of these documents of one tenant (None: the documents without a tenant);
        how many chunks each had (0: no such document). A document is known by (tenant, id): two
        tenants may use the same id without touching each other."""
        removed = {doc: self.count(_of_document(doc, tenant)) for doc in dict.fromkeys(document_ids)}
        found = tuple(doc for doc, chunks in removed.items() if chunks)
        if found:
            self._delete((Condition("document_id", any_of=found), owned_by(tenant)))
        return removed

    def delete_chunks(self, document_id: str, chunks: Sequence[int], tenant: str | None = None) -> None:
        """Remove some chunks of one document (those a shorter new version no longer has)."""
        if chunks:
            self._delete((*_of_document(document_id, tenant), Condition("chunk", any_of=tuple(chunks))))

    def chunk_hashes(self, document_ids: Sequence[str], tenant: str | None = None) -> dict[str, dict[int, str]]:
        """The stored content hash of every chunk of these documents: {document id: {chunk: hash}}."""
        out: dict[str, dict[int, str]] = {}
        if document_ids:
            conditions = (Condition("document_id", any_of=tuple(document_ids)), owned_by(tenant))
            for payload, _ in self._records(conditions, HASH_FIELDS, vectors=False):
                out.setdefault(payload["document_id"], {})[int(payload["chunk"])] = payload.get("content_hash", "")
        return out

    def fetch(self, document_id: str, tenant: str | None = None, vectors: bool = True) -> list[Point]:
        """Every chunk of a document, in chunk order, with its vectors (unless `vectors` is False)."""
        records = self._records(_of_document(document_id, tenant), None, vectors=vectors)
        return sorted((Point.from_record(payload, vector) for payload, vector in records), key=lambda p: p.chunk)

    def search(
        self,
        queries: Sequence[np.ndarray],
        k: int,
        conditions: Sequence[Condition] = (),
        first_stage: Sequence[np.ndarray] | None = None,
        candidates: int = 0,
    ) -> list[list[Hit]]:
        """Exact MaxSim top-k per query; with first-stage vectors, prefetch `candidates` then rerank."""
        flt, rescore, limit = self._engine_filter(tuple(conditions)), self.spec.quantized, max(candidates, k)
        first = [None] * len(queries) if first_stage is None else list(first_stage)
        found = self._run(
            [self._request(Query(v, f, k, limit, flt, rescore)) for v, f in zip(queries, first, strict=True)]
        )
        return [[Hit.from_payload(score, payload) for score, payload in hits] for hits in found]

"""The small interface every store backend implements, and what they share.

A store holds one logical collection (the alias readers use) over versioned physical collections, so
that a reindex can build a new version and swap the alias atomically.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmsearch.retriever.errors import InvalidInputError, PermanentError, TransientError
from xmsearch.retriever.index.codebook import Codebook, Sparse
from xmsearch.retriever.index.filters import Condition, owned_by
from xmsearch.retriever.index.pooling import pool_passage, pool_query
from xmsearch.retriever.index.schema import (
    CENTROIDS,
    FIRST_STAGE,
    HASH_FIELDS,
    HIT_FIELDS,
    POOLED,
    POOLED_FACTOR,
    SOURCE,
    TOKENS,
    Hit,
    IndexSpec,
    Page,
    Point,
    by_document,
    first_stage_field,
    point_id,
)

GROUP_READ = 4  # grouped searches read this many chunks per document wanted, then this many times more
MAX_GROUP_DEPTH = 10_000  # the deepest a grouped search reads a ranking (chunks)


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


def disk_usage(folder: Path | None) -> int | None:
    """Bytes used under a folder (blocks, not apparent sizes); None when there is no such folder."""
    if folder is None or not folder.is_dir():
        return None
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())


def _claim(codebook: Codebook, owner: str) -> dict[str, Any]:
    """The codebook's record, with who is giving the points their centroids and when it last said so."""
    return {**codebook.record(), "owner": owner, "heartbeat": time.time()}


def _of_document(document_id: str, tenant: str | None) -> tuple[Condition, ...]:
    """The points of one document of one tenant (None: of no tenant)."""
    return (Condition("document_id", equals=document_id), owned_by(tenant))


FIRST_CHUNK = Condition("chunk", equals=0)  # every document has one: it stands for the document
SCROLL_PAGE = 1024  # points read per round trip when reading everything that matches
Cursor = str | None  # where a page of points starts: a point id (None: the first page)
Record = tuple[dict[str, Any], Any]  # a stored point's payload and its vectors by name (None when none asked for)
Vectors = tuple[str, ...]  # the vector fields a read returns (none: payload only)
Fields = Sequence[str] | None  # the payload fields a read returns (None: all)
Scored = tuple[float, dict[str, Any]]  # a hit's score and payload
SparseUpdate = tuple[str, Sparse]  # a point's id and its centroid vector
BACKFILL_PASSES = 5  # a backfill reads again what writes made meanwhile without centroids, this many times at most
BACKFILL_STALE_S = 60.0  # a backfill whose process has not written its heartbeat for this long is taken over


@dataclass(frozen=True)
class Query:
    """One MaxSim query of a search, as each engine turns it into a request: k hits under the engine's
    filter, none scoring under the threshold; with a first-stage vector, `candidates` prefetched by it
    and reranked; rescored exactly (`oversampling` candidates per hit) when the store searches a
    quantized copy. Through a shortlist (`coarse`), every stage scores the originals, the exact rerank
    of the shortlist being the rescoring: scored on a binary copy, the pooled query's shortlists
    kept 0.72 of the exact top-10 at 51k passages, on the originals 0.97 (README, "Search speed")."""

    vectors: np.ndarray
    first_stage: np.ndarray | Sparse | None
    k: int
    candidates: int
    filter: Any
    oversampling: float  # a quantized copy searched: candidates per hit rescored on the originals (0: originals only)
    score_threshold: float | None = None
    coarse: np.ndarray | None = None  # the query that picks the shortlist among the candidates
    shortlist: int = 0  # with `coarse`: the candidates it keeps for the exact rerank
    coarse_field: str = TOKENS  # what `coarse` scores: the tokens, or the pooled passages (POOLED)


SHORTLIST_HITS = 10  # a shortlist's size was measured for this many hits (README, "Search speed")


@dataclass(frozen=True)
class Shortlist:
    """The middle stage of a search with a first stage: the candidates scored by MaxSim, and the best
    of them reranked exactly: `size` for each SHORTLIST_HITS hits of the page. Scored by the whole
    query against the passages pooled at index time (schema POOLED) where the collection holds them
    and `passages` allows; else by the query pooled by `pool_factor` (`pooling.pool_query`: fewer
    query vectors, a lower bound of the exact score) against the tokens. At 51k real passages the
    pooled passages kept 0.979 of the exact top-10 with 1,200 candidates in 0.83x the time the pooled
    query took to keep 0.978 of 800 (README, "Search speed"): each candidate scored costs Qdrant a
    fixed part that grows with its vectors (about 3 us for 12, 9 us for 92)."""

    size: int
    pool_factor: int
    passages: bool = True

    def keeps(self, end: int, depth: int, candidates: int) -> int:
        """How many of `candidates` it keeps for a page ending at hit `end`, read `depth` deep (a
        grouped page reads more chunks than it shows); 0 where it is skipped: it would keep them all,
        or under twice the depth read (a deeper read reranks every candidate exactly)."""
        kept = self.size * math.ceil(end / SHORTLIST_HITS)
        return kept if 2 * depth <= kept < candidates else 0


class Store(ABC):
    """A Qdrant collection behind an alias, for one IndexSpec. A backend implements the collection
    operations and four primitives of its engine (write, delete by filter, scroll by filter, a batch
    of MaxSim queries); what is built on them is the same for every backend, here."""

    backend: str
    alias: str
    spec: IndexSpec
    where: str  # where it is, for messages and `status`: a folder, a server's URL, or the backend
    disk: Path | None = None  # the folder it keeps on this machine (None: a server's, or memory)

    @abstractmethod
    def open(self, create: bool = True) -> None:
        """Check (or, with create, make) the collection behind the alias; refuse a mismatched spec.
        Once open, calling it again does nothing."""

    @abstractmethod
    def count(self, conditions: Sequence[Condition] = ()) -> int:
        """Exact number of points matching the conditions."""

    @abstractmethod
    def facet(self, key: str, conditions: Sequence[Condition] = (), limit: int = 10) -> dict[str, int]:
        """The most frequent values of payload `key` among the points matching the conditions, with
        their exact counts, most frequent first."""

    def document_languages(self, conditions: Sequence[Condition] = (), limit: int = 10) -> dict[str, int]:
        """Documents per language among those matching the conditions (their first chunks' languages)."""
        return self.facet("language", (*conditions, FIRST_CHUNK), limit)

    @abstractmethod
    def versions(self) -> list[str]:
        """The physical collections of this alias, oldest first."""

    @abstractmethod
    def create_version(self, spec: IndexSpec | None = None) -> str:
        """Make a new empty physical collection for `spec` (default: this store's; for a reindex, the
        new settings') and return its name."""

    @abstractmethod
    def swap(self, version: str, spec: IndexSpec | None = None) -> None:
        """Point the alias at `version` atomically; with `spec` (a reindex that changed the model or
        the settings), the version must have been built for it and this store serves it from now on."""

    @abstractmethod
    def hold(self) -> None:
        """Take the store for this process without opening the alias's version, which may not exist
        yet (a copy builds a version before the alias points at it); `close` lets it go."""

    @abstractmethod
    def version_store(self, version: str, spec: IndexSpec) -> Store:
        """A store of one version (not the alias), built for `spec`, open, sharing this store's
        connection or folder lock: a reindex writes the new version through it while the alias still
        serves the old one. Closing it leaves this store open."""

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
    def _page(
        self, conditions: Sequence[Condition], fields: Fields, vectors: Vectors, limit: int, cursor: Cursor
    ) -> tuple[list[Record], Cursor]:
        """Up to `limit` points matching the conditions from `cursor` on (None: the first), in the
        engine's point order: these payload fields (None: all) and vector fields (by name); and the
        cursor of the next page (None: no more)."""

    @abstractmethod
    def current_version(self) -> str | None:
        """The physical collection the alias points at (None: none yet)."""

    @abstractmethod
    def _recorded(self, version: str) -> dict[str, Any] | None:
        """What `version` recorded about how it was built (None: nothing)."""

    @abstractmethod
    def _version_counts(self, version: str) -> tuple[int, int]:
        """The points and documents (first chunks) of `version`."""

    @abstractmethod
    def _version_size(self, version: str) -> int | None:
        """The bytes `version` takes on this machine's disk (None: not measured here)."""

    @abstractmethod
    def _drop(self, version: str) -> None:
        """Remove `version` (not the current one) and everything in it, its codebook too."""

    @abstractmethod
    def _version(self) -> str | None:
        """The version this store reads and writes: the alias's, or the one a version store holds."""

    @abstractmethod
    def _codebook_record(self, version: str) -> dict[str, Any] | None:
        """What `version` recorded of its codebook (None: none, or one still being saved)."""

    @abstractmethod
    def _codebook_centroids(self, version: str, size: int) -> np.ndarray:
        """The centroids of the codebook `version` recorded, in order."""

    @abstractmethod
    def _save_codebook(self, version: str, codebook: Codebook) -> bool:
        """Save the codebook of `version`, its record last, unless it has one (False: another process
        saved one first)."""

    @abstractmethod
    def _write_codebook_record(self, version: str, record: dict[str, Any]) -> None:
        """Record the codebook's state again (who backfills it, that every point has its centroids)."""

    @abstractmethod
    def _set_sparse(self, updates: Sequence[SparseUpdate], unchanged: Condition) -> None:
        """Give points their centroid vectors, each only where it still matches `unchanged` (holds the
        content they were computed for)."""

    def codebook_record(self) -> dict[str, Any] | None:
        """What the version this store uses records of its codebook: id, size, trained_on, seed,
        complete, and who is giving the points their centroids (None: no codebook yet)."""
        version = self._version()
        return None if version is None else self._codebook_record(version)

    def codebook(self) -> Codebook | None:
        """The codebook of the version this store uses (None: none yet)."""
        version = self._version()
        record = None if version is None else self._codebook_record(version)
        if version is None or record is None:
            return None
        return Codebook.from_record(self._codebook_centroids(version, int(record["size"])), record)

    def save_codebook(self, codebook: Codebook) -> Codebook:
        """Save a new codebook for the version this store uses; the codebook it has if another process
        saved one first (every writer must use the same)."""
        version = self._version()
        if version is None:
            raise CollectionNotFoundError(f"collection {self.alias!r} has no version in {self.where} to train for")
        if self._save_codebook(version, codebook):
            return codebook
        saved = self.codebook()
        if saved is None:
            raise TransientError(f"another process is saving the codebook of {version!r}; try again")
        return saved

    def claim_backfill(self, codebook: Codebook, owner: str) -> bool:
        """Whether `owner` is to give the points their centroids now: the codebook is not complete and
        no other process has kept its claim fresh within BACKFILL_STALE_S (one that died is taken over)."""
        version = self._version()
        record = None if version is None else self._codebook_record(version)
        if version is None or record is None or record.get("complete"):
            return False
        claimed = (
            record.get("owner") not in (None, owner) and time.time() - record.get("heartbeat", 0) < BACKFILL_STALE_S
        )
        if claimed:
            return False
        self._write_codebook_record(version, _claim(codebook, owner))
        return True

    def backfill(self, codebook: Codebook, owner: str = "", settle_s: float = 0.0) -> int:
        """Give every point without centroids its centroid vector, reading again until a pass finds
        none, the last one starting `settle_s` after this call (the time other writers take to see the
        codebook); then record the codebook as complete. Keeps `owner`'s claim fresh meanwhile. How
        many points it gave centroids to."""
        version = self._version()
        if version is None:
            raise CollectionNotFoundError(f"collection {self.alias!r} has no version in {self.where}")

        def heartbeat() -> None:
            self._write_codebook_record(version, _claim(codebook, owner))

        settled = time.monotonic() + settle_s
        done, passes = 0, 0
        while passes < BACKFILL_PASSES:
            start = time.monotonic()
            found = self._backfill_pass(codebook, heartbeat)
            done += found
            if not found and start >= settled:
                self._write_codebook_record(version, _claim(dataclasses.replace(codebook, complete=True), owner))
                return done
            passes += 1 if found else 0
            time.sleep(0 if found else max(0.0, settled - time.monotonic()))
        raise TransientError(f"points of {self.alias!r} kept arriving without centroids; the backfill goes on later")

    def _backfill_pass(self, codebook: Codebook, heartbeat: Callable[[], None]) -> int:
        page: list[Point] = []
        found = 0
        for payload, vector in self._records(
            (Condition(CENTROIDS, no_vector=True),), (*HASH_FIELDS, "tenant"), (TOKENS,)
        ):
            page.append(Point.from_record(payload, vector))
            if len(page) == SCROLL_PAGE:
                self._set_centroids(page, codebook)
                found, page = found + len(page), []
                heartbeat()
        if page:
            self._set_centroids(page, codebook)
        return found + len(page)

    def _set_centroids(self, points: list[Point], codebook: Codebook) -> None:
        """The points' centroid vectors, each written only where the point still holds the content it was
        read with (a write made meanwhile is not overwritten)."""
        updates = [
            (point_id(self.alias, p.document_id, p.chunk, p.tenant), codebook.document(p.vectors)) for p in points
        ]
        self._set_sparse(updates, Condition("content_hash", any_of=tuple(p.content_hash for p in points)))

    def recorded(self, version: str) -> dict[str, Any] | None:
        """What `version` recorded about how it was built (None: nothing); needs no open store."""
        return self._recorded(version)

    def collections(self) -> list[dict[str, Any]]:
        """Every version of the alias, oldest first: whether searches use it, what it was built with,
        its points, documents and size on disk."""
        current = self.current_version()
        out = []
        for version in self.versions():
            points, documents = self._version_counts(version)
            out.append(
                {
                    "version": version,
                    "current": version == current,
                    "built_with": self.recorded(version) or {},
                    "points": points,
                    "documents": documents,
                    "size_bytes": self._version_size(version),
                }
            )
        return out

    def drop(self, version: str) -> None:
        """Remove a version that searches do not use; the current one is refused."""
        if version not in self.versions():
            raise CollectionNotFoundError(f"collection {self.alias!r} has no version {version!r} in {self.where}")
        if version == self.current_version():
            raise InvalidInputError(
                f"{version!r} is the version searches use: point {self.alias!r} at another (reindex, rollback) first"
            )
        self._drop(version)

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
            for payload, _ in self._records(conditions, HASH_FIELDS, ()):
                out.setdefault(payload["document_id"], {})[int(payload["chunk"])] = payload.get("content_hash", "")
        return out

    def _records(self, conditions: Sequence[Condition], fields: Fields, vectors: Vectors) -> Iterator[Record]:
        """Every point matching the conditions, read page by page as the caller iterates."""
        cursor: Cursor = None
        while True:
            records, cursor = self._page(conditions, fields, vectors, SCROLL_PAGE, cursor)
            yield from records
            if cursor is None:
                return

    def points(self, cursor: Cursor = None, limit: int = SCROLL_PAGE) -> tuple[list[Point], Cursor]:
        """A page of whole points as stored, in storage order: payload, token vectors, the first-stage
        vector the spec holds and the pooled passage where it holds those (what a copy to another store
        writes, without pooling each passage again), and the cursor of the next page."""
        records, after = self._page((), None, self._stored_vectors(), limit, cursor)
        return [Point.from_record(payload, vector) for payload, vector in records], after

    def whole_points(self, conditions: Sequence[Condition]) -> Iterator[Point]:
        """Every point matching the conditions, whole as `points` reads it, page by page as the caller
        iterates."""
        records = self._records(tuple(conditions), None, self._stored_vectors())
        return (Point.from_record(payload, vector) for payload, vector in records)

    def _stored_vectors(self) -> tuple[str, ...]:
        """Every vector field a point of this spec is stored with."""
        fields = (TOKENS, *(f for f in (FIRST_STAGE, CENTROIDS) if self.spec.holds(f)))
        return fields + ((POOLED,) if self.spec.pooled else ())

    def token_vectors(self) -> Iterator[np.ndarray]:
        """Every point's token vectors, in storage order, read page by page as the caller iterates."""
        return (
            Point.from_record(payload, vector).vectors for payload, vector in self._records((), HASH_FIELDS, (TOKENS,))
        )

    def documents(
        self, conditions: Sequence[Condition] = (), limit: int = 100, cursor: Cursor = None
    ) -> tuple[list[Point], int, Cursor]:
        """A page of the documents whose first chunk matches the conditions (chunk 0 stands for its
        document: text, language, tenant, metadata), how many match in all, and the cursor of the
        next page (None: no more)."""
        if cursor is not None:
            try:
                uuid.UUID(cursor)
            except ValueError:
                raise InvalidInputError(f"cursor {cursor!r} is not one a listing answered (its `next`)") from None
        records, after = self._page((*conditions, FIRST_CHUNK), HIT_FIELDS, (), limit, cursor)
        return [Point.from_record(payload, None) for payload, _ in records], self.count_documents(conditions), after

    def first_chunks(self, conditions: Sequence[Condition] = ()) -> Iterator[Point]:
        """Every document's first chunk matching the conditions, in storage order, without vectors but
        with what it keeps of the document as ingested (`source`); read page by page."""
        records = self._records((*conditions, FIRST_CHUNK), (*HIT_FIELDS, SOURCE), ())
        return (Point.from_record(payload, None) for payload, _ in records)

    def chunk_counts(self, conditions: Sequence[Condition] = ()) -> Counter[tuple[str | None, str]]:
        """How many chunks each document matching the conditions has, by (tenant, id)."""
        records = self._records(conditions, ("document_id", "tenant"), ())
        return Counter((payload.get("tenant"), payload["document_id"]) for payload, _ in records)

    def count_documents(self, conditions: Sequence[Condition] = ()) -> int:
        """How many documents have a first chunk matching the conditions (every document has one)."""
        return self.count((*conditions, FIRST_CHUNK))

    def describe(self, conditions: Sequence[Condition] = ()) -> dict[str, Any]:
        """What `xmsearch status` shows: where the collection is, its versions, what it was built
        with, its points and documents (matching the conditions) and its size on disk (None: unknown)."""
        return {
            "backend": self.backend,
            "collection": self.alias,
            "location": self.where,
            "version": self.current_version(),
            "versions": self.versions(),
            "spec": self.spec.record(),
            "points": self.count(conditions),
            "documents": self.count_documents(conditions),
            "size_bytes": disk_usage(self.disk),
            "codebook": self.codebook_record(),
        }

    def fetch(self, document_id: str, tenant: str | None = None, vectors: bool = True) -> list[Point]:
        """Every chunk of a document, in chunk order, with its vectors (unless `vectors` is False)."""
        records = self._records(_of_document(document_id, tenant), None, (TOKENS,) if vectors else ())
        return sorted((Point.from_record(payload, vector) for payload, vector in records), key=lambda p: p.chunk)

    def search(
        self,
        queries: Sequence[np.ndarray],
        page: Page,
        conditions: Sequence[Condition] = (),
        first_stage: Sequence[np.ndarray | Sparse] | None = None,
        candidates: int = 0,
        shortlist: Shortlist | None = None,
    ) -> list[list[Hit]]:
        """The page of each query's exact MaxSim ranking; with first-stage vectors, `candidates`
        prefetched then reranked (through `shortlist`, where it keeps fewer). Grouped, the ranking is
        read deeper (a few times more each round) until the page holds enough documents or the ranking
        ends; then each document's next best chunks are found by one exact query within it."""
        flt = self._engine_filter(tuple(conditions))
        first = [None] * len(queries) if first_stage is None else list(first_stage)
        answers: list[list[Hit]] = [[] for _ in queries]
        pending, depth = list(range(len(queries))), page.end * (GROUP_READ if page.group else 1)
        while pending:
            requests = [
                self._request(self._query(queries[i], depth, flt, page, first[i], max(candidates, depth), shortlist))
                for i in pending
            ]
            again = []
            for i, scored in zip(pending, self._run(requests), strict=True):
                hits = [Hit.from_payload(score, payload) for score, payload in scored]
                if page.group:
                    hits = by_document(hits)
                    if len(hits) < page.end and len(scored) == depth and depth < MAX_GROUP_DEPTH:
                        again.append(i)  # too few documents, and more chunks to read
                        continue
                answers[i] = hits[page.offset : page.end]
            pending, depth = again, min(depth * GROUP_READ, MAX_GROUP_DEPTH)
        if page.group and page.chunks_per_document > 1:
            answers = self._with_other_chunks(queries, answers, tuple(conditions), page)
        return answers

    def _query(
        self,
        vectors: np.ndarray,
        k: int,
        flt: Any,
        page: Page,
        first: np.ndarray | Sparse | None = None,
        candidates: int = 0,
        shortlist: Shortlist | None = None,
    ) -> Query:
        query = Query(vectors, first, k, candidates, flt, self.spec.oversampling, page.score_threshold)
        if first is None or shortlist is None or not (kept := shortlist.keeps(page.end, k, candidates)):
            return query
        if shortlist.passages and self.spec.pooled:
            return dataclasses.replace(query, coarse=vectors, coarse_field=POOLED, shortlist=kept, oversampling=0.0)
        coarse = pool_query(vectors, shortlist.pool_factor)
        return dataclasses.replace(query, coarse=coarse, shortlist=kept, oversampling=0.0)

    def _vectors(self, point: Point) -> dict[str, np.ndarray | Sparse]:
        """The vector fields a point is written with: its tokens, its first-stage vector where the
        collection holds that field, and its pooled passage where the collection holds those (the one
        it carries from a copy's source, or pooled here)."""
        vectors: dict[str, np.ndarray | Sparse] = {TOKENS: point.vectors}
        if point.first_stage is not None and self.spec.holds(field := first_stage_field(point.first_stage)):
            vectors[field] = point.first_stage
        if self.spec.pooled:
            vectors[POOLED] = pool_passage(point.vectors, POOLED_FACTOR) if point.pooled is None else point.pooled
        return vectors

    def _quantization(self, query: Query) -> dict[str, Any] | None:
        """How a query's token stages read the quantized copy, as the arguments of the engine's
        QuantizationSearchParams (None: there is none): rescored with the query's oversampling, or
        not at all (through a shortlist, the stages score the originals)."""
        if not self.spec.quantized:
            return None
        return {"rescore": True, "oversampling": query.oversampling} if query.oversampling else {"ignore": True}

    def _with_other_chunks(
        self, queries: Sequence[np.ndarray], answers: list[list[Hit]], conditions: tuple[Condition, ...], page: Page
    ) -> list[list[Hit]]:
        """Each document's best chunks after its first, ranked within the document (one round trip)."""
        wanted = [(i, hit) for i, hits in enumerate(answers) for hit in hits]
        within = [self._engine_filter((*conditions, *_of_document(hit.document_id, hit.tenant))) for _, hit in wanted]
        requests = [
            self._request(self._query(queries[i], page.chunks_per_document, flt, page))
            for (i, _), flt in zip(wanted, within, strict=True)
        ]
        out: list[list[Hit]] = [[] for _ in answers]
        for (i, hit), scored in zip(wanted, self._run(requests) if requests else [], strict=True):
            others = [Hit.from_payload(score, payload) for score, payload in scored]
            others = [o for o in others if o.chunk != hit.chunk][: page.chunks_per_document - 1]  # ties: any order
            out[i].append(dataclasses.replace(hit, other_chunks=tuple(others)))
        return out

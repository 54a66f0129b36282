"""The Qdrant Edge backend (qdrant-edge-py: the real Rust engine in process), the embedded default.

Edge has no collections or aliases, so a store folder holds their equivalent:

    <data_dir>/edge/<alias>/
        .lock              our lock: Edge allows one process per shard, and this names the owner
        CURRENT            the version readers use, swapped atomically (write, fsync, rename)
        <alias>-v1/        one Edge shard per version
        <alias>-v1.json    the IndexSpec record of that version (model id, vector size, schema)

Writes are searchable when `update` returns (synchronous, WAL-backed). Nothing optimises in the
background: the store calls the optimiser on close after writes (it builds the first-stage HNSW and
quantized copies and reclaims deleted points), and `optimize()` runs it on demand.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as q

from xmsearch.retriever.index.codebook import Codebook, Sparse
from xmsearch.retriever.index.filters import Condition, FilterVocabulary, translate
from xmsearch.retriever.index.schema import (
    CENTROIDS,
    FIRST_STAGE,
    HIT_FIELDS,
    POOLED,
    TOKENS,
    IndexSpec,
    Point,
    first_stage_field,
    point_id,
)
from xmsearch.retriever.index.stores.base import (
    FIRST_CHUNK,
    CollectionNotFoundError,
    Cursor,
    Fields,
    Query,
    Record,
    Scored,
    SparseUpdate,
    Store,
    StoreLockedError,
    StoreNotOpenError,
    Vectors,
    disk_usage,
    next_version,
    own_versions,
)

log = logging.getLogger(__name__)
UPSERT_BATCH = 256
EDGE_FILTERS = FilterVocabulary(
    filter=q.Filter,
    field=q.FieldCondition,
    match_value=lambda value: q.MatchValue(value),  # type: ignore[arg-type]  # floats never reach it
    match_any=q.MatchAny,
    range=q.RangeFloat,
    is_null=q.IsNullCondition,
    has_vector=q.HasVectorCondition,
)
_DATATYPES = {"float16": q.VectorStorageDatatype.Float16, "float32": q.VectorStorageDatatype.Float32}
_INDEX_TYPES = {
    "keyword": q.PayloadSchemaType.Keyword,
    "integer": q.PayloadSchemaType.Integer,
    "float": q.PayloadSchemaType.Float,
    "bool": q.PayloadSchemaType.Bool,
}


def _config(spec: IndexSpec) -> Any:
    """The Edge configuration of a collection built for `spec`."""
    quantization: Any = None
    if spec.quantization == "int8":
        quantization = q.ScalarQuantizationConfig(q.ScalarType.Int8, quantile=0.99, always_ram=True)
    elif spec.quantization == "binary":
        quantization = q.BinaryQuantizationConfig(always_ram=True)

    def multivector(quantization: Any = None, memory: Any = None) -> Any:
        return q.EdgeVectorParams(
            size=spec.dim,
            distance=q.Distance.Dot,  # unit vectors: dot = cosine, MaxSim as the reference scores
            multivector_config=q.MultiVectorConfig(q.MultiVectorComparator.MaxSim),
            datatype=_DATATYPES[spec.datatype],
            quantization_config=quantization,
            hnsw_config=q.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000, payload_m=0),
            memory=memory,
        )

    # quantized: the copy searched stays in RAM, the originals (read to rescore) on disk
    vectors = {TOKENS: multivector(quantization, q.Memory.Cold if spec.quantized else None)}
    if spec.pooled:
        vectors[POOLED] = multivector()  # scored in full by every shortlist: in RAM
    if spec.first_stage_dim:
        vectors[FIRST_STAGE] = q.EdgeVectorParams(
            size=spec.first_stage_dim,
            distance=q.Distance.Dot,
            hnsw_config=q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1_000),
        )
    sparse = {CENTROIDS: q.EdgeSparseVectorParams()} if spec.centroids else None
    return q.EdgeConfig(vectors=vectors, sparse_vectors=sparse)


def _edge_vector(vector: np.ndarray | Sparse) -> Any:
    """A vector (dense, multi or sparse) as Edge takes it (lists convert faster than arrays)."""
    if isinstance(vector, Sparse):
        return q.SparseVector(vector.indices.tolist(), vector.values.tolist())
    return vector.tolist()


def _write_atomically(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write a file whole or not at all: into a temporary file, flushed, then renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open(mode) as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class _HeldLock:
    """The folder lock of a version store: held by the store it belongs to, so nothing to do."""

    held = True

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


class FolderLock:
    """An exclusive flock on `<folder>/.lock` holding the owner's pid and command, released on close
    or when the process dies."""

    EDGE = (
        "Qdrant Edge allows one process per store: stop that process, or run a Qdrant server "
        "(XMSEARCH_QDRANT_URL) for several processes"
    )

    def __init__(self, folder: Path, advice: str = EDGE) -> None:
        self.folder = folder
        self.path = folder / ".lock"
        self.advice = advice  # what to do when another process holds it
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self.held:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "an unknown process"
            os.close(fd)
            raise StoreLockedError(f"{self.folder} is in use by process {owner}; {self.advice}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} ({' '.join(sys.argv)[:200]})".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class EdgeStore(Store):
    """A versioned collection in a folder, through Qdrant Edge."""

    backend = "edge"

    def __init__(self, root: Path, alias: str, spec: IndexSpec, pinned: str | None = None) -> None:
        self.folder = self.disk = root / alias
        self.where = str(self.folder)
        self.alias = alias
        self.spec = spec
        self._pinned = pinned  # a version store: this version, not the one CURRENT names
        self._lock: FolderLock | _HeldLock = _HeldLock() if pinned else FolderLock(self.folder)
        self._shard: Any = None
        self._dirty = False
        self._opening = threading.Lock()

    def hold(self) -> None:
        self._lock.acquire()

    def version_store(self, version: str, spec: IndexSpec) -> EdgeStore:
        if not self._lock.held:
            raise StoreNotOpenError(f"the store {self.folder} is used before open() or after close()")
        if version not in self.versions():
            raise CollectionNotFoundError(f"version {version!r} does not exist in {self.folder}")
        view = EdgeStore(self.folder.parent, self.alias, spec, pinned=version)
        view.open(create=False)
        return view

    @property
    def shard(self) -> Any:
        if self._shard is None:
            raise StoreNotOpenError(f"the store {self.folder} is used before open() or after close()")
        return self._shard

    def open(self, create: bool = True) -> None:
        if self._shard is not None:
            return
        with self._opening:  # threads sharing this store open it once
            if self._shard is None:
                self._load(create)

    def _load(self, create: bool) -> None:
        current = self._current()
        if current is None and not create:
            raise CollectionNotFoundError(
                f"collection {self.alias!r} does not exist in {self.folder}: ingest documents first"
            )
        self._lock.acquire()
        try:
            if current is None:
                current = self.create_version()
                self._write_current(current)
            self._check(current)
            self._shard = _edge_call(q.EdgeShard.load, str(self.folder / current), self._config())
        except BaseException:
            self._lock.release()
            raise

    def _current(self) -> str | None:
        if self._pinned is not None:
            return self._pinned
        pointer = self.folder / "CURRENT"
        return pointer.read_text().strip() if pointer.is_file() else None

    def _write_current(self, version: str) -> None:
        _write_atomically(self.folder / "CURRENT", lambda fh: fh.write(version + "\n"))
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _check(self, version: str) -> None:
        self.spec = self.spec.check(self._recorded(version), self.alias)

    def _config(self) -> Any:
        return _config(self.spec)

    def versions(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return own_versions(self.alias, [p.name for p in self.folder.iterdir() if p.is_dir()])

    def create_version(self, spec: IndexSpec | None = None) -> str:
        spec = spec or self.spec
        name = next_version(self.alias, self.versions())
        shard = _edge_call(q.EdgeShard.create, str(self.folder / name), _config(spec))
        try:
            for field, kind in spec.payload_indexes().items():
                shard.update(q.UpdateOperation.create_field_index(field, _INDEX_TYPES[kind]))
        finally:
            shard.close()
        (self.folder / f"{name}.json").write_text(json.dumps(spec.record()))
        return name

    def swap(self, version: str, spec: IndexSpec | None = None) -> None:
        if version not in self.versions():
            raise CollectionNotFoundError(f"version {version!r} does not exist in {self.folder}")
        spec = (spec or self.spec).check(self._recorded(version), self.alias)
        reopen = self._shard is not None
        if reopen:  # not optimised first: that holds the GIL (this process's searches would wait); it is kept as is
            self.shard.close()
            self._shard, self._dirty = None, False
        self._write_current(version)
        self.spec = spec
        if reopen:
            self._shard = _edge_call(q.EdgeShard.load, str(self.folder / version), self._config())

    def _write(self, points: Sequence[Point]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):
            batch = [self._edge_point(p) for p in points[start : start + UPSERT_BATCH]]
            self.shard.update(q.UpdateOperation.upsert_points(batch))
            self._dirty = True

    def _edge_point(self, point: Point) -> Any:
        vectors = {name: _edge_vector(vector) for name, vector in self._vectors(point).items()}
        return q.Point(point_id(self.alias, point.document_id, point.chunk, point.tenant), vectors, point.payload())

    def _delete(self, conditions: Sequence[Condition]) -> None:
        self.shard.update(q.UpdateOperation.delete_points_by_filter(translate(tuple(conditions), EDGE_FILTERS)))
        self._dirty = True

    def _page(
        self, conditions: Sequence[Condition], fields: Fields, vectors: Vectors, limit: int, cursor: Cursor
    ) -> tuple[list[Record], Cursor]:
        request = q.ScrollRequest(
            filter=translate(tuple(conditions), EDGE_FILTERS),
            limit=limit,
            offset=cursor,
            with_payload=True if fields is None else q.PayloadSelector.Include(list(fields)),
            with_vector=list(vectors) if vectors else False,
        )
        page, after = self.shard.scroll(request)
        return [(r.payload or {}, r.vector) for r in page], None if after is None else str(after)

    def current_version(self) -> str | None:
        return self._current()

    def _recorded(self, version: str) -> dict[str, Any] | None:
        record_file = self.folder / f"{version}.json"
        return json.loads(record_file.read_text()) if record_file.is_file() else None

    def _version_counts(self, version: str) -> tuple[int, int]:
        if version == self._current() and self._shard is not None:
            shard, owned = self._shard, False
        else:
            shard, owned = _edge_call(q.EdgeShard.load, str(self.folder / version)), True
        try:
            documents = q.CountRequest(exact=True, filter=translate((FIRST_CHUNK,), EDGE_FILTERS))
            return int(shard.count(q.CountRequest(exact=True))), int(shard.count(documents))
        finally:
            if owned:
                shard.close()

    def _version_size(self, version: str) -> int | None:
        return disk_usage(self.folder / version)

    def _drop(self, version: str) -> None:
        shutil.rmtree(self.folder / version)
        for suffix in (".json", ".codebook.json", ".codebook.npy"):
            (self.folder / f"{version}{suffix}").unlink(missing_ok=True)

    def _version(self) -> str | None:
        return self._current()

    def _codebook_record(self, version: str) -> dict[str, Any] | None:
        record = self.folder / f"{version}.codebook.json"  # written last: no record, no codebook yet
        return json.loads(record.read_text()) if record.is_file() else None

    def _codebook_centroids(self, version: str, size: int) -> np.ndarray:
        return np.load(self.folder / f"{version}.codebook.npy")

    def _save_codebook(self, version: str, codebook: Codebook) -> bool:
        if (self.folder / f"{version}.codebook.json").is_file():
            return False
        _write_atomically(self.folder / f"{version}.codebook.npy", lambda fh: np.save(fh, codebook.centroids), "wb")
        self._write_codebook_record(version, codebook.record())
        return True

    def _write_codebook_record(self, version: str, record: dict[str, Any]) -> None:
        _write_atomically(self.folder / f"{version}.codebook.json", lambda fh: json.dump(record, fh))

    def _set_sparse(self, updates: Sequence[SparseUpdate], unchanged: Condition) -> None:
        vectors = [q.PointVectors(key, {CENTROIDS: _edge_vector(sparse)}) for key, sparse in updates]
        self.shard.update(q.UpdateOperation.update_vectors(vectors, translate((unchanged,), EDGE_FILTERS)))
        self._dirty = True

    def facet(self, key: str, conditions: Sequence[Condition] = (), limit: int = 10) -> dict[str, int]:
        request = q.FacetRequest(key, limit=limit, exact=True, filter=self._engine_filter(tuple(conditions)))
        return {str(hit.value): int(hit.count) for hit in self.shard.facet(request).hits}

    def count(self, conditions: Sequence[Condition] = ()) -> int:
        return int(self.shard.count(q.CountRequest(exact=True, filter=self._engine_filter(tuple(conditions)))))

    def _engine_filter(self, conditions: tuple[Condition, ...]) -> Any:
        return translate(conditions, EDGE_FILTERS)

    def _request(self, query: Query) -> Any:
        reading = self._quantization(query)
        params = None if reading is None else q.SearchParams(quantization=q.QuantizationSearchParams(**reading))
        prefetches = None
        if query.first_stage is not None:
            nearest = q.Query.Nearest(_edge_vector(query.first_stage), using=first_stage_field(query.first_stage))
            prefetches = [q.Prefetch(limit=query.candidates, query=nearest, filter=query.filter)]
            if query.coarse is not None:
                coarse = q.Query.Nearest(query.coarse.tolist(), using=query.coarse_field)
                prefetches = [
                    q.Prefetch(query.shortlist, query=coarse, prefetches=prefetches, params=params, filter=query.filter)
                ]
        tokens = q.Query.Nearest(query.vectors.tolist(), using=TOKENS)
        return q.QueryRequest(
            limit=query.k,
            query=tokens,
            prefetches=prefetches,
            filter=query.filter,
            score_threshold=query.score_threshold,
            params=params,
            with_payload=q.PayloadSelector.Include(list(HIT_FIELDS)),
        )

    def _run(self, requests: list[Any]) -> list[list[Scored]]:
        results = self.shard.query_batch(q.QueryBatchRequest(requests))
        return [[(p.score, p.payload or {}) for p in points] for points in results]

    def optimize(self) -> None:
        """Build the first-stage HNSW and quantized copies, merge segments, reclaim deletions."""
        self.shard.optimize()
        self._dirty = False

    def _close_shard(self) -> None:
        if self._dirty:
            self.optimize()
        self.shard.close()
        self._shard = None

    def close(self) -> None:
        if self._shard is not None:
            self._close_shard()
        self._lock.release()


def _edge_call(fn: Any, *args: Any) -> Any:
    """Edge raises bare Exceptions; a held WAL lock becomes StoreLockedError."""
    try:
        return fn(*args)
    except Exception as exc:
        if "WouldBlock" in str(exc):
            raise StoreLockedError(f"the Edge shard {args[0]} is open in another process ({exc})") from exc
        raise

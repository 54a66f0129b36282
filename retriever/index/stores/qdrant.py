"""The qdrant-client backend: a Qdrant server or cluster by URL, or qdrant-client's local mode (in
memory or a folder), which runs the same client code path in pure Python for tests and tiny data."""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from xmsearch.retriever.index.codebook import Codebook, Sparse
from xmsearch.retriever.index.filters import Condition, FilterVocabulary, translate
from xmsearch.retriever.index.schema import (
    CENTROIDS,
    FIRST_STAGE,
    HIT_FIELDS,
    METADATA_KEY,
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
    StoreUnavailableError,
    Vectors,
    next_version,
    own_versions,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH_BYTES = 16 * 1024 * 1024  # JSON size per upsert request, well under the server's 32 MB limit
CODEBOOK_SUFFIX = "-codebook"  # a version's codebook: a collection of its centroids beside it
CODEBOOK_KEY = "xmsearch_codebook"  # that collection's metadata entry: the codebook's record, written last
CENTROIDS_PER_REQUEST = 2048
_INDEX_TYPES = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
}


def _unreachable(exc: BaseException) -> bool:
    """Errors that mean 'the server did not answer' (worth a retry), not 'the request is wrong'."""
    if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError)):
        return True
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpcio comes with qdrant-client
        return False
    return isinstance(exc, grpc.RpcError) and exc.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )


_LOCAL_LOCKS: weakref.WeakKeyDictionary[QdrantClient, threading.RLock] = weakref.WeakKeyDictionary()
_LOCAL_LOCKS_MADE = threading.Lock()


def _local_lock(client: QdrantClient) -> threading.RLock:
    """The lock every call on a local-mode client holds: local mode keeps a collection in parallel
    Python lists and numpy arrays that concurrent writes leave at different lengths, for good
    (qdrant-client issue 1193; seen here as a worker's write beside a reindex in one process)."""
    with _LOCAL_LOCKS_MADE:
        return _LOCAL_LOCKS.setdefault(client, threading.RLock())


QDRANT_FILTERS = FilterVocabulary(
    filter=models.Filter,
    field=models.FieldCondition,
    match_value=lambda value: models.MatchValue(value=value),
    match_any=lambda values: models.MatchAny(any=values),
    range=models.Range,
    is_null=lambda key: models.IsNullCondition(is_null=models.PayloadField(key=key)),
    has_vector=lambda name: models.HasVectorCondition(has_vector=name),
)


def to_qdrant_filter(conditions: Sequence[Condition]) -> models.Filter | None:
    """The caller's filter form as a qdrant-client filter."""
    return translate(tuple(conditions), QDRANT_FILTERS)


class QdrantStore(Store):
    """A collection behind an alias, through qdrant-client (server or local mode)."""

    def __init__(
        self,
        client: QdrantClient,
        alias: str,
        spec: IndexSpec,
        backend: str,
        retries: int = 0,
        owns_client: bool = True,
        collection: str | None = None,
        layout: dict[str, int] | None = None,
    ) -> None:
        self.client = client
        self.layout = layout or {}  # how a server spreads a new version: shard_number, replication_factor
        self._owns_client = owns_client  # a version store shares its store's client
        self.alias = alias  # names the points (their ids) whatever version holds them
        self.collection = collection or alias  # what calls address: the alias, or one version (a version store)
        self.spec = spec
        self.backend = backend
        self.retries = retries
        options = getattr(client, "init_options", {})
        self.disk = Path(options["path"]) if options.get("path") else None
        self.where = str(options.get("url") or self.disk or backend)
        self._opened = False
        self._opening = threading.Lock()

    @classmethod
    def server(cls, url: str, alias: str, spec: IndexSpec, *, api_key: str | None = None, grpc: bool = False,
               timeout: float = 10.0, retries: int = 3, shards: int = 1,
               replication: int = 1) -> QdrantStore:  # fmt: skip
        # no version probe at construction: it would be one more request outside the bounded retries
        client = QdrantClient(
            url=url, api_key=api_key, prefer_grpc=grpc, timeout=int(timeout), check_compatibility=False
        )
        layout = {"shard_number": shards, "replication_factor": replication}
        return cls(client, alias, spec, "server", retries, layout=layout)

    @classmethod
    def local(cls, path: Path | None, alias: str, spec: IndexSpec) -> QdrantStore:
        """Local mode in memory (path None) or in a folder, which one process at a time may open."""
        if path is None:
            return cls(QdrantClient(location=":memory:"), alias, spec, "local")
        path.mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as exc:  # qdrant-client's portalocker lock on the folder
            raise StoreLockedError(f"the local store {path} is open in another process ({exc})") from exc
        return cls(client, alias, spec, "local")

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a client call, retrying a server that does not answer, then a clear error."""
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=0.2, max=2.0) + wait_random(0, 0.2),
            retry=retry_if_exception(_unreachable),
            reraise=True,
        )
        try:
            with _local_lock(self.client) if self.backend == "local" else contextlib.nullcontext():
                return retrying(fn, *args, **kwargs)
        except Exception as exc:
            if _unreachable(exc):
                attempts = self.retries + 1
                raise StoreUnavailableError(
                    f"Qdrant at {self.where} did not answer after {attempts} attempts ({type(exc).__name__}: {exc})"
                ) from exc
            raise

    def _version(self) -> str | None:
        return self._target() if self.collection == self.alias else self.collection

    def _codebook_record(self, version: str) -> dict[str, Any] | None:
        name = version + CODEBOOK_SUFFIX
        if not self._call(self.client.collection_exists, name):
            return None
        record: dict[str, Any] | None = (self._call(self.client.get_collection, name).config.metadata or {}).get(
            CODEBOOK_KEY
        )
        return record or None  # none yet: its centroids are still being written

    def _codebook_centroids(self, version: str, size: int) -> np.ndarray:
        name = version + CODEBOOK_SUFFIX
        points, _ = self._call(self.client.scroll, name, limit=size, with_vectors=True, with_payload=False)
        return np.array([p.vector for p in sorted(points, key=lambda p: int(p.id))], np.float32)

    def _save_codebook(self, version: str, codebook: Codebook) -> bool:
        name = version + CODEBOOK_SUFFIX
        if self._call(self.client.collection_exists, name):
            return False
        try:
            vectors = models.VectorParams(size=codebook.centroids.shape[1], distance=models.Distance.DOT)
            self._call(self.client.create_collection, name, vectors_config=vectors)
        except Exception as exc:
            if "already exists" in str(exc):  # another process created it between the check and here
                return False
            raise
        for start in range(0, codebook.size, CENTROIDS_PER_REQUEST):
            rows = codebook.centroids[start : start + CENTROIDS_PER_REQUEST]
            points = [models.PointStruct(id=start + i, vector=row.tolist()) for i, row in enumerate(rows)]
            self._call(self.client.upsert, name, points=points, wait=True)
        self._write_codebook_record(version, codebook.record())
        return True

    def _write_codebook_record(self, version: str, record: dict[str, Any]) -> None:
        self._call(self.client.update_collection, version + CODEBOOK_SUFFIX, metadata={CODEBOOK_KEY: record})

    def _set_sparse(self, updates: Sequence[SparseUpdate], unchanged: Condition) -> None:
        points = [models.PointVectors(id=key, vector={CENTROIDS: _vector(sparse)}) for key, sparse in updates]
        only = to_qdrant_filter((unchanged,))
        self._call(self.client.update_vectors, self.collection, points=points, update_filter=only, wait=True)

    def _target(self) -> str | None:
        aliases = self._call(self.client.get_aliases).aliases
        return next((a.collection_name for a in aliases if a.alias_name == self.alias), None)

    def open(self, create: bool = True) -> None:
        if self._opened:
            return
        with self._opening:  # threads sharing this store open it once
            if not self._opened:
                self._load(create)

    def _load(self, create: bool) -> None:
        target = self._target()
        if target is None:
            if not create:
                raise CollectionNotFoundError(
                    f"collection {self.alias!r} does not exist in {self.where}: ingest documents first"
                )
            self.swap(self.create_version())
        else:
            info = self._call(self.client.get_collection, target)
            self.spec = self.spec.check((info.config.metadata or {}).get(METADATA_KEY), self.alias)
        self._opened = True

    def versions(self) -> list[str]:
        return own_versions(self.alias, [c.name for c in self._call(self.client.get_collections).collections])

    def create_version(self, spec: IndexSpec | None = None) -> str:
        spec = spec or self.spec
        name = next_version(self.alias, self.versions())
        self._call(
            self.client.create_collection,
            name,
            vectors_config=_vectors_config(spec),
            sparse_vectors_config={CENTROIDS: models.SparseVectorParams()} if spec.centroids else None,
            metadata={METADATA_KEY: spec.record()},
            **self.layout,
        )
        with warnings.catch_warnings():  # local mode says, once per index, that it ignores them
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field, kind in spec.payload_indexes().items():
                self._call(self.client.create_payload_index, name, field_name=field, field_schema=_INDEX_TYPES[kind])
        return name

    def hold(self) -> None:
        """Nothing to take: a server serves many processes (local mode's folder is taken when made)."""

    def version_store(self, version: str, spec: IndexSpec) -> QdrantStore:
        if version not in self.versions():
            raise CollectionNotFoundError(f"version {version!r} does not exist in {self.where}")
        view = QdrantStore(self.client, self.alias, spec, self.backend, self.retries, False, version, self.layout)
        view.spec = spec.check(view._recorded(version), version)
        view._opened = True  # the version is its collection: every call names it
        return view

    def swap(self, version: str, spec: IndexSpec | None = None) -> None:
        as_built = (spec or self.spec).check(self._recorded(version), version)
        operations: list[models.AliasOperations] = [
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=version, alias_name=self.alias))
        ]
        if self._target() is not None:
            operations.insert(0, models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias)))
        self._call(self.client.update_collection_aliases, change_aliases_operations=operations)
        self.spec = as_built

    def _write(self, points: Sequence[Point]) -> None:
        batch: list[models.PointStruct] = []
        size = 0
        for point in points:
            vectors = {name: _vector(vector) for name, vector in self._vectors(point).items()}
            batch.append(
                models.PointStruct(
                    id=point_id(self.alias, point.document_id, point.chunk, point.tenant),
                    vector=vectors,
                    payload=point.payload(),
                )
            )
            size += point.vectors.size * 12 + len(point.text) * 2
            if size >= BATCH_BYTES:
                self._call(self.client.upsert, self.collection, points=batch, wait=True)
                batch, size = [], 0
        if batch:
            self._call(self.client.upsert, self.collection, points=batch, wait=True)

    def _delete(self, conditions: Sequence[Condition]) -> None:
        selector = models.FilterSelector(filter=to_qdrant_filter(conditions))
        self._call(self.client.delete, self.collection, points_selector=selector, wait=True)

    def _page(
        self, conditions: Sequence[Condition], fields: Fields, vectors: Vectors, limit: int, cursor: Cursor
    ) -> tuple[list[Record], Cursor]:
        page, after = self._call(
            self.client.scroll, self.collection, scroll_filter=to_qdrant_filter(conditions), limit=limit, offset=cursor,
            with_payload=True if fields is None else list(fields), with_vectors=list(vectors) if vectors else False,
        )  # fmt: skip
        return [(r.payload or {}, r.vector) for r in page], None if after is None else str(after)

    def current_version(self) -> str | None:
        return self._target()

    def _recorded(self, version: str) -> dict[str, Any] | None:
        info = self._call(self.client.get_collection, version)
        recorded: dict[str, Any] | None = (info.config.metadata or {}).get(METADATA_KEY)
        return recorded

    def _version_counts(self, version: str) -> tuple[int, int]:
        points = self._call(self.client.count, version, exact=True).count
        first = to_qdrant_filter((FIRST_CHUNK,))
        return points, self._call(self.client.count, version, count_filter=first, exact=True).count

    def _version_size(self, version: str) -> int | None:
        return None  # a server's disk, or local mode's one file for all versions: not per version

    def _drop(self, version: str) -> None:
        self._call(self.client.delete_collection, version)
        if self._call(self.client.collection_exists, version + CODEBOOK_SUFFIX):
            self._call(self.client.delete_collection, version + CODEBOOK_SUFFIX)

    def facet(self, key: str, conditions: Sequence[Condition] = (), limit: int = 10) -> dict[str, int]:
        found = self._call(
            self.client.facet, self.collection, key, facet_filter=to_qdrant_filter(conditions), limit=limit, exact=True
        )
        return {str(hit.value): int(hit.count) for hit in found.hits}

    def count(self, conditions: Sequence[Condition] = ()) -> int:
        return self._call(
            self.client.count, self.collection, count_filter=to_qdrant_filter(conditions), exact=True
        ).count

    def _engine_filter(self, conditions: tuple[Condition, ...]) -> Any:
        return to_qdrant_filter(conditions)

    def _request(self, query: Query) -> Any:
        reading = self._quantization(query)
        params = (
            None if reading is None else models.SearchParams(quantization=models.QuantizationSearchParams(**reading))
        )
        prefetch = None
        if query.first_stage is not None:
            using = first_stage_field(query.first_stage)
            prefetch = models.Prefetch(
                query=_vector(query.first_stage), using=using, limit=query.candidates, filter=query.filter
            )
            if query.coarse is not None:
                prefetch = models.Prefetch(
                    prefetch=prefetch, query=query.coarse.tolist(), using=query.coarse_field, limit=query.shortlist,
                    filter=query.filter, params=params,
                )  # fmt: skip
        return models.QueryRequest(
            query=query.vectors.tolist(), using=TOKENS, limit=query.k, filter=query.filter, params=params,
            prefetch=prefetch, score_threshold=query.score_threshold, with_payload=list(HIT_FIELDS),
        )  # fmt: skip

    def _run(self, requests: list[Any]) -> list[list[Scored]]:
        responses = self._call(self.client.query_batch_points, self.collection, requests=requests)
        return [[(p.score, p.payload or {}) for p in r.points] for r in responses]

    def optimize(self) -> None:
        """Nothing to do: a server optimises in the background, local mode has no indexes."""

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _vectors_config(spec: IndexSpec) -> dict[str, models.VectorParams]:
    """The vector fields of a collection built for `spec`."""

    def multivector(
        on_disk: bool = False, quantization: models.QuantizationConfig | None = None
    ) -> models.VectorParams:
        return models.VectorParams(
            size=spec.dim,
            distance=models.Distance.DOT,  # the vectors are unit length: dot = cosine, MaxSim as the reference
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            hnsw_config=models.HnswConfigDiff(m=0),  # exact scan: HNSW on token vectors costs much, gains nothing
            datatype=models.Datatype(spec.datatype),
            on_disk=on_disk,
            quantization_config=quantization,
        )

    # the quantized copy is the tokens' alone (as on Edge): quantized, the originals on disk
    config = {TOKENS: multivector(spec.quantized, _quantization(spec))}
    if spec.pooled:
        config[POOLED] = multivector()  # scored in full by every shortlist: in RAM
    if spec.first_stage_dim:
        config[FIRST_STAGE] = models.VectorParams(size=spec.first_stage_dim, distance=models.Distance.DOT)
    return config


def _vector(vector: np.ndarray | Sparse) -> Any:
    """A vector (dense, multi or sparse) as qdrant-client takes it."""
    if isinstance(vector, Sparse):
        return models.SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())
    return vector.tolist()  # type: ignore[no-any-return]


def _quantization(spec: IndexSpec) -> models.QuantizationConfig | None:
    """The quantized copy of a collection built for `spec` (None: none)."""
    if spec.quantization == "int8":
        return models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
        )
    if spec.quantization == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    return None

"""The collection schema, in one place: vector fields, payload fields and their indexes, point ids,
and the record of which model (and vector size) a collection was built with.

Every backend builds its collection from an IndexSpec and stores points shaped by `Point`; searches
return `Hit`s. Nothing here talks to Qdrant.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import numpy as np

from xmsearch.retriever.errors import InvalidInputError, PermanentError
from xmsearch.retriever.index.codebook import Sparse

TOKENS = "tokens"  # the per-token multivector, compared with MaxSim
FIRST_STAGE = "first_stage"  # one vector per passage for the optional HNSW prefetch
CENTROIDS = "centroids"  # the sparse vector over a passage's token centroids (the centroid first stage)
POOLED = "pooled"  # the passage's token vectors pooled by POOLED_FACTOR, what a search's shortlist scores
POOLED_FACTOR = 8  # README, "Search speed": 0.979 of the exact top-10 at 51k in 0.83x the pooled query's time
SCHEMA_VERSION = 3  # 3: pooled passages (an older xmsearch refuses it, rather than write points without them)
READ_SCHEMAS = (2, 3)  # 2: point ids include the tenant (a version of 2 is read and written as built)
METADATA_KEY = "xmsearch"  # the collection metadata entry that records the spec

# Payload fields and the index each one gets (filters use these; `text` and `metadata` are stored).
INDEXED_FIELDS: dict[str, Literal["keyword", "integer", "float", "bool"]] = {
    "document_id": "keyword",
    "chunk": "integer",
    "language": "keyword",
    "tenant": "keyword",
    "content_hash": "keyword",
    "model_id": "keyword",
}
HASH_FIELDS = ("document_id", "chunk", "content_hash")  # what change detection reads back
SOURCE = "source"  # the document as ingested (exact text, language as given), on its first chunk
HIT_FIELDS = ("document_id", "chunk", "text", "language", "tenant", "metadata")  # what a hit or a listing reads
FILTERABLE = ("document_id", "chunk", "language", "tenant", "content_hash")
MAX_TOKENS_PER_POINT = 8192  # Qdrant: at most 1,048,576 numbers per point (8,192 x 128)
MAX_CHUNKS_PER_DOCUMENT = 10  # the most chunks one grouped hit shows
# quantized copies: candidates fetched per hit, then rescored on the originals; on 51k real passages
# int8 x2 kept 0.999 of the exact top-10 and binary x8 0.987 (x2: 0.899), each at the same latency
RESCORE_OVERSAMPLING = {"int8": 2.0, "binary": 8.0}


def first_stage_field(vector: np.ndarray | Sparse) -> str:
    """The vector field a first-stage vector goes in: sparse centroids, or the dense first stage."""
    return CENTROIDS if isinstance(vector, Sparse) else FIRST_STAGE


def _first_stage(named: dict[str, Any]) -> np.ndarray | Sparse | None:
    """The first-stage vector among a stored point's vectors as read back (None: not read, or none)."""
    if named.get(FIRST_STAGE) is not None:
        return np.asarray(named[FIRST_STAGE], np.float32)
    sparse = named.get(CENTROIDS)  # either engine's sparse vector: indices and values
    if sparse is None:
        return None
    return Sparse(np.asarray(sparse.indices, np.int64), np.asarray(sparse.values, np.float32))


class StoreMismatchError(PermanentError):
    """The collection was built with another model, vector size or schema."""


@dataclass(frozen=True)
class IndexSpec:
    """What a collection is built for; recorded in the collection and checked on every open."""

    model_id: str
    dim: int
    datatype: Literal["float16", "float32"] = "float16"
    quantization: Literal["none", "int8", "binary"] = "none"
    first_stage_dim: int = 0  # 0: no dense first-stage vector
    centroids: bool = False  # a sparse vector over token centroids (the centroid first stage)
    pooled: bool = False  # the pooled passages a shortlist scores (POOLED); as the collection was built
    metadata_indexes: dict[str, Literal["keyword", "integer", "float", "bool"]] = field(default_factory=dict)
    # what else shaped the stored points (the model as named, precision, chunking, first-stage encoding):
    # recorded for `collections list` and a reindex, not checked on open
    built_with: dict[str, Any] = field(default_factory=dict, compare=False)

    def record(self) -> dict[str, Any]:
        """What a new version records about how it is built (the first four are checked on open)."""
        return {
            "schema": self.schema,
            "model_id": self.model_id,
            "dim": self.dim,
            "first_stage_dim": self.first_stage_dim,
            "centroids": self.centroids,
            "pooled": self.pooled,
            "datatype": self.datatype,
            "quantization": self.quantization,
            "metadata_indexes": dict(self.metadata_indexes),
            **self.built_with,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> IndexSpec:
        """The spec a version recorded (e.g. to point the alias back at it)."""
        checked = (
            "schema", "model_id", "dim", "datatype", "quantization", "first_stage_dim", "centroids", "pooled",
            "metadata_indexes",
        )  # fmt: skip
        return cls(
            model_id=record["model_id"],
            dim=record["dim"],
            datatype=record.get("datatype", "float16"),
            quantization=record.get("quantization", "none"),
            first_stage_dim=record.get("first_stage_dim", 0),
            centroids=record.get("centroids", False),
            pooled=record.get("pooled", False),
            metadata_indexes=record.get("metadata_indexes", {}),
            built_with={k: v for k, v in record.items() if k not in checked},
        )

    def holds(self, field: str) -> bool:
        """Whether points of this spec have the first-stage vector field `field`."""
        return (field == CENTROIDS and self.centroids) or (field == FIRST_STAGE and self.first_stage_dim > 0)

    @property
    def schema(self) -> int:
        """The point layout's version: 3 where points hold pooled passages, else 2 (the same points)."""
        return SCHEMA_VERSION if self.pooled else 2

    def as_built(self, recorded: dict[str, Any] | None) -> IndexSpec:
        """This spec with what a version recorded of the fields its points may lack: whether they hold
        pooled passages (a version built before them has none, and is searched without them)."""
        return dataclasses.replace(self, pooled=bool((recorded or {}).get("pooled", False)))

    @property
    def quantized(self) -> bool:
        """Searches run on a quantized copy and are rescored exactly."""
        return self.quantization != "none"

    @property
    def oversampling(self) -> float:
        """Candidates read from the quantized copy per hit, rescored on the originals (0: none)."""
        return RESCORE_OVERSAMPLING.get(self.quantization, 0.0)

    def payload_indexes(self) -> dict[str, Literal["keyword", "integer", "float", "bool"]]:
        return {**INDEXED_FIELDS, **{f"metadata.{k}": v for k, v in self.metadata_indexes.items()}}

    def check(self, recorded: dict[str, Any] | None, collection: str) -> IndexSpec:
        """Refuse a collection built for another model (its vectors would be silent garbage); this spec
        as that collection was built (`as_built`), what a store of it uses."""
        if not recorded:
            raise StoreMismatchError(f"collection {collection!r} was not made by xmsearch (no {METADATA_KEY} record)")
        fingerprint = str(recorded.get("model_id", "")).rpartition("@")[2]
        if fingerprint != self.model_id.rpartition("@")[2] or recorded.get("dim") != self.dim:
            raise StoreMismatchError(
                f"collection {collection!r} holds vectors of model {recorded.get('model_id')} (dim "
                f"{recorded.get('dim')}), not of {self.model_id} (dim {self.dim}); reindex into a new "
                "collection or point XMSEARCH_MODEL at the model it was built with"
            )
        if recorded.get("first_stage_dim", 0) != self.first_stage_dim:
            raise StoreMismatchError(
                f"collection {collection!r} has a first-stage vector of {recorded.get('first_stage_dim', 0)} dims "
                f"(0 = none), the settings ask for {self.first_stage_dim}: set XMSEARCH_FIRST_STAGE and "
                "XMSEARCH_FIRST_STAGE_ENCODING as when it was built, or reindex"
            )
        if recorded.get("centroids", False) != self.centroids:
            has = "has" if recorded.get("centroids", False) else "has no"
            raise StoreMismatchError(
                f"collection {collection!r} {has} centroid first stage, the settings ask for "
                f"{'one' if self.centroids else 'none'}: set XMSEARCH_FIRST_STAGE and XMSEARCH_FIRST_STAGE_ENCODING "
                "as when it was built, or reindex"
            )
        if recorded.get("schema") not in READ_SCHEMAS:
            raise StoreMismatchError(
                f"collection {collection!r} has schema {recorded.get('schema')}, this version reads schemas "
                f"{READ_SCHEMAS[0]}-{SCHEMA_VERSION} (point ids include the tenant since schema 2): index again into "
                "a new collection (XMSEARCH_COLLECTION) or data folder (XMSEARCH_DATA_DIR)"
            )
        return self.as_built(recorded)


def point_id(collection: str, document_id: str, chunk: int, tenant: str | None = None) -> str:
    """Deterministic id: writing the same chunk twice overwrites it (idempotent writes). A document is
    known by (tenant, id), so tenants never overwrite each other's documents."""
    if tenant is None:
        name = f"xmsearch:{collection}:{document_id}:{chunk}"
    else:  # another prefix, and the tenant length-prefixed: no (tenant, id) pair can spell another's name
        name = f"xmsearch-tenant:{collection}:{len(tenant)}:{tenant}:{document_id}:{chunk}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


@dataclass(frozen=True)
class Source:
    """A document as it was ingested, kept on its first chunk: its exact text (chunk texts overlap and
    are trimmed) and its language as given (None: detected per chunk), so it can be rebuilt."""

    text: str
    language: str | None = None

    @classmethod
    def from_payload(cls, payload: Any) -> Source | None:
        return cls(payload["text"], payload.get("language")) if isinstance(payload, dict) else None


@dataclass(frozen=True)
class Point:
    """One chunk of one document, ready to store."""

    document_id: str
    chunk: int
    vectors: np.ndarray  # (tokens, dim) float32, unit rows
    text: str
    language: str
    content_hash: str
    model_id: str
    tenant: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    first_stage: np.ndarray | Sparse | None = None  # dense (mean, MUVERA) or over centroids
    source: Source | None = None  # chunk 0: the document as ingested (to rebuild it, e.g. for a reindex)
    pooled: np.ndarray | None = None  # its pooled passage as stored (a copy carries it); None: pooled at write

    @classmethod
    def from_record(cls, payload: dict[str, Any], vector: Any) -> Point:
        """A stored point back from its payload and its vectors (a dict by name, with the first-stage
        vector and the pooled passage where they were read, or the token matrix; None when they were
        not read: an empty matrix)."""
        named = vector if isinstance(vector, dict) else {TOKENS: vector}
        tokens = named.get(TOKENS)
        return cls(
            document_id=payload["document_id"],
            chunk=int(payload["chunk"]),
            vectors=np.empty((0, 0), np.float32) if tokens is None else np.asarray(tokens, dtype=np.float32),
            text=payload.get("text", ""),
            language=payload.get("language", ""),
            content_hash=payload.get("content_hash", ""),
            model_id=payload.get("model_id", ""),
            tenant=payload.get("tenant"),
            metadata=payload.get("metadata") or {},
            first_stage=_first_stage(named),
            source=Source.from_payload(payload.get(SOURCE)),
            pooled=None if named.get(POOLED) is None else np.asarray(named[POOLED], dtype=np.float32),
        )

    def payload(self) -> dict[str, Any]:
        out = {
            "document_id": self.document_id,
            "chunk": self.chunk,
            "text": self.text,
            "language": self.language,
            "content_hash": self.content_hash,
            "model_id": self.model_id,
            "tenant": self.tenant,
            "metadata": self.metadata,
        }
        if self.source is not None:
            out[SOURCE] = {"text": self.source.text, "language": self.source.language}
        return out

    def check(self, dim: int) -> None:
        """Wrong sizes are refused before anything is written."""
        where, v = f"document {self.document_id!r} chunk {self.chunk}", self.vectors
        if not isinstance(v, np.ndarray) or v.ndim != 2 or v.shape[1] != dim:
            shape = getattr(v, "shape", type(v).__name__)
            raise InvalidInputError(f"{where}: vectors of shape {shape}, expected (n, {dim})")
        if not 0 < v.shape[0] <= MAX_TOKENS_PER_POINT:
            raise InvalidInputError(f"{where}: {v.shape[0]} token vectors, expected 1 to {MAX_TOKENS_PER_POINT}")
        if not np.isfinite(v).all():
            raise InvalidInputError(f"{where}: vectors hold NaN or infinity")


@dataclass(frozen=True)
class Hit:
    """One ranked passage."""

    score: float
    document_id: str
    chunk: int
    text: str
    language: str
    metadata: dict[str, Any]
    tenant: str | None = None
    other_chunks: tuple[Hit, ...] = ()  # grouped by document: its next best matching chunks

    @property
    def document(self) -> tuple[str | None, str]:
        """What a document is known by: (tenant, id)."""
        return self.tenant, self.document_id

    @classmethod
    def from_payload(cls, score: float, payload: dict[str, Any]) -> Hit:
        return cls(
            score=float(score),
            document_id=payload["document_id"],
            chunk=int(payload["chunk"]),
            text=payload.get("text", ""),
            language=payload.get("language", ""),
            metadata=payload.get("metadata") or {},
            tenant=payload.get("tenant"),
        )


def check_query(vectors: np.ndarray, dim: int) -> None:
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.shape[1] != dim or vectors.shape[0] == 0:
        shape = getattr(vectors, "shape", type(vectors).__name__)
        raise InvalidInputError(f"query vectors of shape {shape}, expected (n, {dim})")


def check_k(k: int, max_k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise InvalidInputError(f"k must be an integer from 1 to {max_k}, not {k!r}")


@dataclass(frozen=True)
class Page:
    """Which results of a ranking a search answers: `k` of them after the first `offset`, none scoring
    under `score_threshold`; documents (each its best chunk, with up to `chunks_per_document` - 1 more
    of its matching chunks) or single chunks."""

    k: int = 10
    offset: int = 0
    score_threshold: float | None = None
    group: bool = True
    chunks_per_document: int = 1

    @property
    def end(self) -> int:
        return self.offset + self.k

    def check(self, max_k: int) -> None:
        """Refuse what no search can answer: the results end at most `max_k` deep."""
        check_k(self.k, max_k)
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise InvalidInputError(f"offset must be an integer from 0, not {self.offset!r}")
        if self.end > max_k:
            raise InvalidInputError(f"offset + k is {self.end}; results end at most {max_k} deep (max_k)")
        if not 1 <= self.chunks_per_document <= MAX_CHUNKS_PER_DOCUMENT:
            raise InvalidInputError(
                f"chunks_per_document must be from 1 to {MAX_CHUNKS_PER_DOCUMENT}, not {self.chunks_per_document!r}"
            )
        if self.score_threshold is not None and not math.isfinite(self.score_threshold):
            raise InvalidInputError(f"score_threshold must be a finite number, not {self.score_threshold!r}")


class Paging(TypedDict, total=False):
    """A Page's fields besides k, as keyword arguments of the Retriever's searches."""

    offset: int
    score_threshold: float | None
    group: bool
    chunks_per_document: int


def by_document(hits: list[Hit]) -> list[Hit]:
    """Ranked chunks -> ranked documents: each document's best chunk."""
    best: dict[tuple[str | None, str], Hit] = {}
    for hit in hits:
        best.setdefault(hit.document, hit)
    return list(best.values())

"""The request and response bodies of the HTTP API; their descriptions are the OpenAPI document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictInt, Tag

from xmsearch.ingest.documents import Document
from xmsearch.ingest.job import JobStatus
from xmsearch.retriever.index.schema import MAX_CHUNKS_PER_DOCUMENT, Hit, Paging, Point
from xmsearch.retriever.model.langid import Hints
from xmsearch.retriever.model.languages import Source

if TYPE_CHECKING:
    from xmsearch.retriever.search import SearchResult

FILTER_HELP = (
    'Every key must hold (AND): {"language": "fr"} equal, {"tenant": ["a", "b"]} any of, '
    '{"metadata.year": {"gte": 2020}} range (gt, gte, lt, lte), {"tenant": null} no value. Keys: document_id, '
    "chunk, language, tenant, content_hash, metadata.<key>."
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentBatch(Strict):
    documents: list[Document] = Field(min_length=1, description="The documents of one job (limit: api_max_documents).")


def _shape(body: Any) -> str:
    return "batch" if isinstance(body, dict) and "documents" in body else "one"


DocumentsIn = Annotated[
    Annotated[Document, Tag("one")] | Annotated[DocumentBatch, Tag("batch")],
    Discriminator(_shape),  # errors name the fields of the shape sent, not of both
]


class JobOut(BaseModel):
    id: str = Field(description="The job id (GET /jobs/{id}).")
    status: JobStatus = Field(description="Where the job is.")
    source: str = Field(description="api, delete, or the file it came from.")
    tenant: str | None = Field(None, description="The tenant of the key that submitted it (null: unbound).")
    created: float | None = Field(None, description="When it was submitted (seconds since the epoch).")
    accepted: int = Field(0, description="Valid documents taken in.")
    processed: int = Field(
        0, description="Valid documents finished (indexed, unchanged, superseded by a later copy, or failed)."
    )
    skipped_unchanged: int = Field(0, description="Documents whose chunks were stored already.")
    encoded: int = Field(0, description="Chunks encoded.")
    written: int = Field(0, description="Points written.")
    deleted: int = Field(0, description="Chunks removed (deleted documents, or chunks a shorter new version lost).")
    missing: int = Field(0, description="Documents to delete that were not there.")
    rejected: int = Field(0, description="Records that were not valid documents.")
    failed: int = Field(0, description="Valid documents that could not be indexed (see errors, or the DLQ).")
    tasks_sent: int | None = Field(None, description="Distributed mode: tasks queued for the workers.")
    tasks_done: int | None = Field(None, description="Distributed mode: tasks the workers finished.")
    tasks_failed: int | None = Field(
        None, description="Distributed mode: tasks that failed for good (dead-lettered); the job is then failed."
    )
    errors: list[str] = Field(
        default_factory=list,
        description="Why it failed: the first reasons (embedded), or the tasks the broker lost (distributed).",
    )


class PageIn(Strict):
    """Which results of the ranking to answer (the same fields on one search and a batch)."""

    offset: StrictInt = Field(0, ge=0, description="Skip this many results first (offset + k: at most max_k).")
    score_threshold: float | None = Field(None, description="No result scoring under this (MaxSim score).")
    group: Literal["document", "chunk"] = Field(
        "document",
        description="document: each document once, as its best chunk (and its score); chunk: every matching chunk.",
    )
    chunks_per_document: StrictInt = Field(
        1, ge=1, le=MAX_CHUNKS_PER_DOCUMENT, description="Grouped: also show each document's next best chunks."
    )

    def paging(self) -> Paging:
        return Paging(
            offset=self.offset,
            score_threshold=self.score_threshold,
            group=self.group == "document",
            chunks_per_document=self.chunks_per_document,
        )


class HintsIn(Strict):
    """What the application knows of a query's language, for detection (the same on one search and a batch)."""

    language_hint: str | None = Field(
        None,
        min_length=1,
        max_length=35,
        description="The language to take when detection is unsure and the query may be in it (its script "
        "agrees); stronger than Accept-Language.",
    )
    allowed_languages: list[str] | None = Field(
        None, max_length=100, description="The only languages the query may be in (detection chooses among them)."
    )

    def hints(self, accept_language: str | None) -> Hints:
        """These hints, then the request's Accept-Language header (weakest); a bad code is a 422."""
        return Hints.of(self.language_hint, self.allowed_languages, accept_language)


class SearchIn(PageIn, HintsIn):
    query: str = Field(min_length=1, description="The query, in any language (limit: max_query_chars).")
    k: StrictInt = Field(10, ge=1, description="How many hits (limit: max_k).")
    language: str | None = Field(
        None, min_length=1, max_length=35, description="The query's language; detected if absent (it wins over hints)."
    )
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)


class SearchBatchIn(PageIn, HintsIn):
    queries: list[str] = Field(min_length=1, description="The queries (limit: api_max_queries).")
    k: StrictInt = Field(10, ge=1, description="Hits per query (limit: max_k).")
    languages: list[str | None] | None = Field(
        None, description="One language per query (null entries are detected); all detected if absent."
    )
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP + " Applies to every query.")


class LanguageOut(BaseModel):
    code: str = Field(
        description="The query's base language (fr, de, zh): given or detected, even when the fallback adapter "
        "encoded it; the adapter's where none is known."
    )
    adapter: str = Field(description="The model's language adapter that encoded the query.")
    source: Source = Field(
        description="How the language was chosen: given with the request; detected; a hint (language_hint, "
        "Accept-Language) where detection was unsure; the prior of the tenant searching (its default languages, "
        "the languages of its documents) where detection was unsure and no hint applied; none (fallback: "
        "detection unsure or off)."
    )
    confidence: float | None = Field(None, description="The detector's confidence, when detected (or hinted).")
    fallback: bool = Field(
        description="True when the fallback adapter encoded the query (no adapter, or detection unsure)."
    )
    reason: str | None = Field(None, description="Why the fallback adapter was used.")


class ChunkOut(BaseModel):
    chunk: int = Field(description="The chunk number within the document (0 first).")
    text: str = Field(description="The chunk's text.")
    language: str = Field(description="The chunk's language.")


class ChunkHitOut(ChunkOut):
    score: float = Field(description="The chunk's MaxSim score.")


class HitOut(ChunkHitOut):
    score: float = Field(description="The MaxSim score (higher is better); grouped: the document's best chunk's.")
    document_id: str
    tenant: str | None = None
    metadata: dict[str, Any] = Field(description="The document's metadata.")
    other_chunks: list[ChunkHitOut] = Field(
        default_factory=list, description="Grouped, with chunks_per_document > 1: the document's next best chunks."
    )

    @classmethod
    def of(cls, hit: Hit) -> HitOut:
        others = [ChunkHitOut(score=o.score, chunk=o.chunk, text=o.text, language=o.language) for o in hit.other_chunks]
        return cls(**{**vars(hit), "other_chunks": others})


class DocumentOut(BaseModel):
    id: str = Field(description="The document id.")
    tenant: str | None = Field(None, description="Its tenant (null: none).")
    metadata: dict[str, Any] = Field(description="The document's metadata.")
    text: str | None = Field(
        description="The document's exact text as ingested (null: stored by an xmsearch that did not keep it)."
    )
    chunks: list[ChunkOut] = Field(description="Its stored chunks, in order.")

    @classmethod
    def of(cls, points: list[Point]) -> DocumentOut:
        first = points[0]
        chunks = [ChunkOut(chunk=p.chunk, text=p.text, language=p.language) for p in points]
        text = first.source.text if first.source else None
        return cls(id=first.document_id, tenant=first.tenant, metadata=first.metadata, text=text, chunks=chunks)


class DocumentSummaryOut(BaseModel):
    id: str = Field(description="The document id.")
    tenant: str | None = Field(None, description="Its tenant (null: none).")
    language: str = Field(description="The language of its first chunk.")
    metadata: dict[str, Any] = Field(description="The document's metadata.")

    @classmethod
    def of(cls, first: Point) -> DocumentSummaryOut:
        return cls(id=first.document_id, tenant=first.tenant, language=first.language, metadata=first.metadata)


class DocumentsOut(BaseModel):
    documents: list[DocumentSummaryOut] = Field(description="This page of documents.")
    total: int = Field(description="How many documents there are (for this tenant, if one was asked for).")
    next: str | None = Field(description="The cursor of the next page (null: this was the last).")


class SpecOut(BaseModel):
    model_id: str = Field(description="The model (and its weights' fingerprint) the vectors are of.")
    dim: int = Field(description="Token vector size.")
    schema_: int = Field(alias="schema", description="The point layout's version.")
    first_stage_dim: int = Field(description="Size of the dense first-stage vector (0: none).")
    centroids: bool = Field(False, description="A sparse vector over token centroids (the centroid first stage).")
    pooled: bool = Field(False, description="Each passage pooled by 8, what a search's shortlist scores (schema 3).")
    datatype: str = Field(description="How vectors are stored (float16, float32).")
    quantization: str = Field(description="The quantized copy searched first (none, int8, binary).")


class StatusOut(BaseModel):
    backend: str = Field(description="edge (embedded), local or server.")
    collection: str = Field(description="The alias searches use.")
    location: str = Field(description="Its folder, or the server's URL.")
    version: str | None = Field(description="The version the alias points at.")
    versions: list[str] = Field(description="Every version, oldest first (a reindex builds a new one).")
    spec: SpecOut = Field(description="What the collection was built with.")
    points: int = Field(description="Stored chunks.")
    documents: int = Field(description="Stored documents.")
    size_bytes: int | None = Field(description="Size on disk (null: a server's, not measured here).")
    codebook: dict[str, Any] | None = Field(
        None,
        description="The centroid codebook of the version searched: id (fingerprint), size, trained_on (token "
        "vectors), seed, complete (every point has its centroids: searches use it). Null: none yet.",
    )


class VersionOut(BaseModel):
    version: str = Field(description="The physical collection (`<alias>-vN`).")
    current: bool = Field(description="Searches use it (the alias points at it).")
    built_with: dict[str, Any] = Field(
        description="What it was built with: model id and name, dim, schema, datatype, quantization, first stage, "
        "precision, doc_maxlen, chunk_overlap, token_pool_factor, metadata indexes."
    )
    points: int = Field(description="Stored chunks.")
    documents: int = Field(description="Stored documents.")
    size_bytes: int | None = Field(description="Size on disk (null: not measured here).")


class CollectionsOut(BaseModel):
    collection: str = Field(description="The alias searches use.")
    versions: list[VersionOut] = Field(description="Every version, oldest first.")


class SearchOut(BaseModel):
    query: str
    language: LanguageOut
    hits: list[HitOut]
    timings_ms: dict[str, float] = Field(description="encode and search milliseconds (per query, for a batch).")

    @classmethod
    def of(cls, result: SearchResult) -> SearchOut:
        lang = result.language
        return cls(
            query=result.query,
            language=LanguageOut(
                code=lang.code,
                adapter=lang.adapter,
                source=lang.source,
                confidence=lang.confidence,
                fallback=lang.fallback,
                reason=lang.reason,
            ),
            hits=[HitOut.of(h) for h in result.hits],
            timings_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
        )


class JobsOut(BaseModel):
    jobs: list[JobOut] = Field(description="The most recent jobs, newest first.")


class SearchBatchOut(BaseModel):
    results: list[SearchOut] = Field(description="One result per query, in order.")


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    ready: bool
    mode: Literal["embedded", "distributed"]
    checks: dict[str, str] = Field(description='model, store and (distributed) broker: "ok" or the problem.')


class ReindexIn(Strict):
    model: str | None = Field(
        None, max_length=1000, description="The new model: a hub id, or a checkpoint folder on the API's machine."
    )
    settings: dict[str, Annotated[str, Field(max_length=10_000)]] = Field(
        default_factory=dict,
        max_length=20,
        description='Settings to change, name -> value as the environment gives it, e.g. {"vector_datatype": '
        '"float32"}: precision, chunk_overlap, token_pool_factor, vector_datatype, quantization, first_stage, '
        "first_stage_encoding, metadata_indexes.",
    )

    def changes(self) -> dict[str, str]:
        return self.settings | ({} if self.model is None else {"model": self.model})

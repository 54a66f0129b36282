"""The ingestion settings (`XMSEARCH_*`): document limits and write batches; and the
settings an Indexer runs with (these and the retriever's)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from xmsearch.retriever.settings import EnvSettings, RetrieverSettings


class IngestSettings(EnvSettings):
    """Documents in: what a document may hold, how many chunks go together."""

    max_document_chars: int = Field(2_000_000, ge=1, description="Longest document text accepted.")
    max_metadata_bytes: int = Field(65_536, ge=2, description="Largest metadata object (as JSON) accepted.")
    ingest_batch_size: int = Field(64, ge=1, le=4096, description="Chunks encoded and written together.")
    extra_fields: Literal["refuse", "metadata"] = Field(
        "refuse",
        description="A record's fields besides id, text, language, tenant and metadata (title, url, ...): refuse the "
        "record, or keep them in its metadata (its own metadata keys win).",
    )


class IndexerSettings(RetrieverSettings, IngestSettings):
    """What the write path runs with: the model and the index, and ingestion."""

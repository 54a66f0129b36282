"""Reindexing in process: the documents of the version searched, rebuilt as they were ingested
(`xmsearch.ingest.export`), are indexed into a new version built with other settings (the model, its
precision, the chunking, the vector datatype, quantization, first stage); the new version is verified,
then the alias moves to it atomically. The old version stays, for a rollback, until it is dropped.

Resumable: a reindex that stopped leaves its version unswapped; the next one with the same settings
indexes into it again, and change detection skips every chunk already there (the encoder runs once
per chunk), while documents no longer in the source are removed from it.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from xmsearch.ingest.documents import Document, Reject, limits
from xmsearch.ingest.export import Export
from xmsearch.ingest.job import Job
from xmsearch.ingest.pipeline import Indexer
from xmsearch.ingest.settings import IndexerSettings
from xmsearch.ingest.sources import read_path
from xmsearch.retriever.components import Components, following, index_spec, index_store
from xmsearch.retriever.errors import InvalidInputError, PermanentError
from xmsearch.retriever.index.filters import owned_by
from xmsearch.retriever.index.first_stage import make_first_stage
from xmsearch.retriever.index.schema import IndexSpec, Page
from xmsearch.retriever.index.stores import Store, backend_for
from xmsearch.retriever.settings import SettingsError

# What a reindex may change: each shapes the stored points (the rest of the settings do not).
REINDEXABLE = (
    "model",
    "precision",
    "chunk_overlap",
    "vector_datatype",
    "quantization",
    "first_stage",
    "first_stage_encoding",
    "metadata_indexes",
)
SAMPLE_SEARCHES = 3  # documents whose opening words must find them in the new version before the swap
Key = tuple[str | None, str]  # a document: (tenant, id)


class VerificationError(PermanentError):
    """The new version does not hold what the old one does: nothing was swapped."""


@dataclass
class Reindexed:
    """What a reindex did: the version built and the one it replaced, its job's counts, and what
    verification compared."""

    version: str
    previous: str | None
    job: Job
    documents: dict[str, int] = field(default_factory=dict)  # per tenant ("" = none), in the new version
    removed: int = 0  # documents a resumed version held that the source no longer has
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "previous": self.previous,
            "resumed": self.resumed,
            "documents": self.documents,
            "removed": self.removed,
            **dataclasses.asdict(self.job.counts),
        }


def target_settings(settings: IndexerSettings, changes: dict[str, str]) -> IndexerSettings:
    """The settings a reindex builds with: these, with `changes` (names as in the settings, values as
    the environment gives them), each checked as the environment would be."""
    unknown = sorted(set(changes) - set(REINDEXABLE))
    if unknown:
        raise InvalidInputError(f"a reindex cannot change {', '.join(unknown)}; it changes {', '.join(REINDEXABLE)}")
    data = settings.model_dump()
    for name, value in changes.items():
        data[name] = json.loads(value) if name == "metadata_indexes" and isinstance(value, str) else value
    try:
        return type(settings).model_validate(data)
    except (ValidationError, json.JSONDecodeError) as exc:
        raise SettingsError(f"reindex settings: {exc}") from None


def _resumable(store: Store, spec: IndexSpec) -> str | None:
    """The newest version after the one searched, if it was built for exactly `spec`: a reindex with
    these settings that did not finish (or was rolled back from)."""
    versions, current = store.versions(), store.current_version()
    newer = versions[versions.index(current) + 1 :] if current in versions else []
    if not newer:
        return None
    return newer[-1] if store.recorded(newer[-1]) == spec.record() else None


def reindex(
    settings: IndexerSettings,
    changes: dict[str, str],
    on_progress: Callable[[Job], None] = lambda job: None,
    on_total: Callable[[int], None] = lambda documents: None,
    source_path: str | None = None,
) -> Reindexed:
    """Rebuild the collection the settings name with `changes`, verify it, and swap the alias to it;
    `on_total` is told how many documents there are, `on_progress` follows the job. With
    `source_path` (JSON Lines, a folder: what `ingest` reads), the new version holds that source's
    documents instead of the current version's."""
    # a missing path is an error now, before any model loads
    named = None if source_path is None else (source_path, read_path(source_path, limits(settings)))
    if backend_for(settings) == "server":
        raise PermanentError(
            "a reindex runs in process on an embedded store (Qdrant Edge or local mode) for now; on a Qdrant "
            "server it needs the workers, which is not built yet"
        )
    from xmsearch.retriever.model.encoder import Encoder  # torch: where the new model is loaded

    target = target_settings(following(settings), changes)  # what the version searched was built with, changed
    encoder = Encoder.from_pretrained(target.model, target)
    first_stage = make_first_stage(encoder.spec.dim, target)
    spec = index_spec(encoder.spec, target, first_stage)
    source = index_store(settings)  # the version searched: its own spec, read without its model
    source.open(create=False)
    try:
        previous = source.current_version()
        if source_path is None:
            on_total(source.count_documents())
        version = _resumable(source, spec)
        resumed = version is not None
        version = version or source.create_version(spec)
        building = source.version_store(version, spec)  # shares the source's lock or client
        try:
            parts = Components(target, encoder, building, first_stage)
            report = _build(source, building, parts, target, on_progress, named)
        finally:
            building.close()
        source.swap(version, spec)
        return dataclasses.replace(report, version=version, previous=previous, resumed=resumed)
    finally:
        source.close()


def _build(
    source: Store,
    building: Store,
    components: Components,
    settings: IndexerSettings,
    on_progress: Callable[[Job], None],
    named: tuple[str, Iterator[Document | Reject]] | None,
) -> Reindexed:
    """Index every source document (the current version's, or those of a `named` source) into
    `building`, remove what the source does not hold, and verify: documents per tenant, chunks per
    document, and sample searches."""
    indexer = Indexer(components, settings)
    export = Export(source)
    expected: dict[Key, int] = {}  # chunks each document should have
    rejects: list[Reject] = []

    def documents() -> Iterator[Document | Reject]:
        records = named[1] if named else (Document.model_validate(r) for r in export.records())
        for doc in records:
            if isinstance(doc, Document):
                expected[doc.key] = len(indexer.chunker.split(doc.text))
            yield doc

    job = indexer.ingest(documents(), on_reject=rejects.append, on_progress=on_progress)
    if rejects:
        raise VerificationError(
            f"{len(rejects)} record(s) of {named[0] if named else 'the collection'} were rejected (e.g. "
            f"{rejects[0].location}: {rejects[0].reason}): fix them and run the reindex again; nothing swapped"
        )
    if export.unrebuildable:
        tenant, first = export.unrebuildable[0]
        owner = f" of tenant {tenant!r}" if tenant else ""
        raise VerificationError(
            f"{len(export.unrebuildable)} document(s) were stored before xmsearch kept each document's text (e.g. "
            f"{first!r}{owner}): reindex from their source instead; nothing swapped"
        )
    chunks = building.chunk_counts()
    removed = _remove_stale(building, chunks, expected)
    counts = _verify(building, chunks, expected)
    _sample_searches(components, building, expected)
    return Reindexed(version="", previous=None, job=job, documents=counts, removed=removed)


def _remove_stale(building: Store, chunks: Counter[Key], expected: dict[Key, int]) -> int:
    """Documents a resumed version holds that the source does not (deleted since): removed, and taken
    out of `chunks`."""
    stale: dict[str | None, list[str]] = {}
    for tenant, document_id in [key for key in chunks if key not in expected]:
        stale.setdefault(tenant, []).append(document_id)
        del chunks[tenant, document_id]
    for tenant, ids in stale.items():
        building.delete_documents(ids, tenant)
    return sum(len(ids) for ids in stale.values())


def _verify(building: Store, chunks: Counter[Key], expected: dict[Key, int]) -> dict[str, int]:
    """The new version (its chunks per document: `chunks`) holds every source document, each with the
    chunks its text gives, and nothing else; its documents per tenant."""
    if chunks != Counter(expected):
        missing = [key for key in expected if chunks.get(key) != expected[key]]
        extra = [key for key in chunks if key not in expected]
        example = (missing or extra)[0]
        raise VerificationError(
            f"the new version does not match its source: {len(missing)} document(s) without their chunks, "
            f"{len(extra)} not in the source (e.g. {example[1]!r}); nothing swapped"
        )
    per_tenant = Counter(tenant or "" for tenant, _ in expected)
    for tenant, n in per_tenant.items():
        held = building.count_documents([owned_by(tenant or None)])
        if held != n:
            raise VerificationError(f"the new version holds {held} document(s) of tenant {tenant!r}, not {n}")
    return dict(per_tenant)


def _sample_searches(components: Components, building: Store, expected: dict[Key, int]) -> None:
    """A few documents' opening words, searched in the new version with the new model, find hits."""
    for tenant, document_id in list(expected)[:SAMPLE_SEARCHES]:
        [point] = building.fetch(document_id, tenant, vectors=False)[:1]
        words = " ".join(point.text.split()[:8])
        prepared = components.encoder.prepare([words], point.language or None, "query")  # its adapter
        vectors = components.encoder.encode(prepared)
        hits = building.search(vectors, Page(1), [owned_by(tenant)])[0]
        if not hits:
            raise VerificationError(f"a search for document {document_id!r} found nothing in the new version")


def rollback(settings: IndexerSettings) -> tuple[str, str, dict[str, Any]]:
    """Point the alias back at the version before the one searched (a reindex's old version); the
    version left, the one searched now, and what that one was built with (its model, to search it)."""
    store = index_store(settings)
    store.open(create=False)
    try:
        versions, current = store.versions(), store.current_version()
        older = versions[: versions.index(current)] if current in versions else []
        if not older:
            raise InvalidInputError(f"nothing to roll back to: {current!r} is the oldest version of {store.alias!r}")
        record = store.recorded(older[-1]) or {}
        store.swap(older[-1], IndexSpec.from_record(record))
        return str(current), older[-1], record
    finally:
        store.close()

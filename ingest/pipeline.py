"""The write path: documents -> chunks -> language per chunk -> change detection -> encode -> points
-> store, with the counts of a job.

Change detection: every chunk carries a content hash of (the model weights' fingerprint, adapter,
tenant, metadata, text; the first chunk, which also stores the document's exact text, of that text
too).
Re-ingesting an unchanged document encodes nothing; a changed one re-encodes the chunks whose hash
changed and deletes the chunks it no longer has. Records that are not documents, and documents that
cannot be encoded (a language refused by the policy), are rejected with the reason; everything
around them goes in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from xmsearch.ingest.chunking import Chunk, Chunker
from xmsearch.ingest.documents import Document, Reject
from xmsearch.ingest.job import Job, JobStatus
from xmsearch.ingest.settings import IndexerSettings, IngestSettings
from xmsearch.retriever.components import Components
from xmsearch.retriever.errors import InvalidInputError, TransientError
from xmsearch.retriever.follow import Follow, follows, load_version
from xmsearch.retriever.index.first_stage import WRITER_REFRESH_S
from xmsearch.retriever.index.pooling import pool_tokens
from xmsearch.retriever.index.schema import Point, Source
from xmsearch.retriever.index.stores import Store
from xmsearch.retriever.metrics import CHUNKS_ENCODED, DOCUMENTS
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.retriever.model.langid import NO_HINTS, Hints
from xmsearch.retriever.model.languages import Resolution


def content_hash(fingerprint: str, adapter: str, doc: Document, chunk: Chunk) -> str:
    """What a stored chunk depends on: the model's weights (not the name it was loaded by), the
    adapter, and the chunk. The first chunk also carries the document as ingested (to rebuild it), so
    it depends on all of it: any change to a document rewrites its first chunk."""
    source = [doc.text, doc.language] if chunk.number == 0 else None
    key = json.dumps(
        [fingerprint, adapter, doc.tenant, doc.metadata, chunk.text, source], ensure_ascii=False, sort_keys=True
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


Key = tuple[str | None, str]  # a document: (tenant, id)


@dataclass(frozen=True)
class _Planned:
    doc: Document
    chunks: list[Chunk]
    chunker: Chunker  # what split it: a reindex that switched this process's model meanwhile splits it again

    def split(self, chunker: Chunker) -> list[Chunk]:
        return self.chunks if chunker is self.chunker else chunker.split(self.doc.text)


class Indexer:
    """Indexes documents into the store the settings name, in this process.

    Each write (a batch, a deletion) holds `gate`, runs the `before_write` hooks, then tells
    `watchers` which documents it touched: a reindex in this process follows the writes made while it
    copies, and holds the gate to pause them for its last step (catching up, verifying, swapping); on
    a Qdrant server the hooks tell a reindex in another worker, through Redis."""

    def __init__(self, components: Components, settings: IngestSettings, follow: bool | None = None) -> None:
        self._use(components)
        self.settings = settings
        # on a server other processes move the alias: write the version this model built, by name, and follow
        self.follow = Follow(components.store) if follows(components, follow) else None
        self.gate = threading.RLock()
        self.before_write: list[Callable[[], None]] = []  # under the gate, before each write
        self.watchers: list[Callable[[Iterable[Key]], None]] = []

    def _use(self, components: Components) -> None:
        self.components = components
        self.encoder = components.encoder
        self.store = components.store
        self.first_stage = components.first_stage
        self.chunker = Chunker(self.encoder.tokenizer, components.settings.chunk_overlap)  # the index decides

    def use(self, components: Components) -> None:
        """Write with `components` (another model, the version it built) from now on; the caller holds
        the gate, so no write is half done with the old ones."""
        with self.gate:
            self._use(components)
            if self.follow is not None:
                self.follow.pinned = None  # the version the alias names now

    def _target(self) -> Store:
        """Where writes go: the alias; or, following, the version this model built, after moving (with
        the model that built it) to the one the alias names, if another process moved it."""
        self.store.open(create=True)
        if self.follow is None:
            return self.store
        target = self.follow.view()
        if (version := self.follow.moved()) is not None:
            components, target = load_version(self.components, version)
            self._use(components)
            self.follow.pin(version, target)
        return target

    @classmethod
    def from_settings(cls, settings: IndexerSettings, encoder: Encoder | None = None) -> Indexer:
        """The encoder and store the settings name (the store opens on the first write)."""
        return cls(Components.load(settings, encoder), settings)

    def ingest(
        self,
        records: Iterable[Document | Reject],
        on_reject: Callable[[Reject], None] = lambda r: None,
        on_progress: Callable[[Job], None] = lambda j: None,
        job: Job | None = None,
    ) -> Job:
        """Index every document of `records` (streamed: memory stays bounded by one batch), counting
        into `job` (a new one by default)."""
        job = job or Job()
        pending: dict[tuple[str | None, str], _Planned] = {}
        chunks = 0
        for record in records:
            if isinstance(record, Reject):
                job.counts.rejected += 1
                DOCUMENTS.labels("rejected").inc()
                on_reject(record)
                continue
            job.counts.accepted += 1
            plan = _Planned(record, self.chunker.split(record.text), self.chunker)
            replaced = pending.pop(record.key, None)  # a later copy wins
            if replaced is not None:
                job.counts.processed += 1
            chunks += len(plan.chunks) - (len(replaced.chunks) if replaced else 0)
            pending[record.key] = plan
            if chunks >= self.settings.ingest_batch_size:
                self._write_isolating(list(pending.values()), job, on_reject)
                pending.clear()
                chunks = 0
                on_progress(job)
        if pending:
            self._write_isolating(list(pending.values()), job, on_reject)
        job.status = JobStatus.DONE
        on_progress(job)
        return job

    def write(
        self, documents: Sequence[Document], job: Job, on_reject: Callable[[Reject], None] = lambda r: None
    ) -> None:
        """Index one batch of valid documents (a worker's task), adding to the job's counts."""
        unique = {doc.key: doc for doc in documents}  # a later copy wins
        job.counts.processed += len(documents) - len(unique)
        self._write(
            [_Planned(doc, self.chunker.split(doc.text), self.chunker) for doc in unique.values()], job, on_reject
        )

    def delete(self, document_ids: Sequence[str], tenant: str | None = None, job: Job | None = None) -> list[str]:
        """Remove these documents of one tenant (None: the documents stored without a tenant), counting
        the chunks removed and the documents not found into `job`; the ids not found."""
        job = job or Job()
        with self.gate:
            self._before()
            try:
                removed = self._target().delete_documents(list(document_ids), tenant)
            finally:
                self._touched((tenant, document_id) for document_id in document_ids)
        missing = [doc for doc, chunks in removed.items() if not chunks]
        job.counts.deleted += sum(removed.values())
        job.counts.missing += len(missing)
        return missing

    def resume(self) -> None:
        """Go on with what writes start beside them and a stopped process left unfinished (a codebook
        to train, points still without centroids), without waiting for the next write: a process that
        owns writes calls it once it starts."""
        if self.first_stage is not None:
            with self.gate:
                store = self._target()
            self.first_stage.refresh(store, 0.0)  # the codebook a stopped process saved, if any
            self.first_stage.maintain(store, self.components.settings.first_stage_min_points)

    def wait(self) -> None:
        """Until the work a write started beside the writes is done (e.g. the codebook's training)."""
        if self.first_stage is not None:
            self.first_stage.wait()

    def close(self) -> None:
        """Close the store. Work started beside the writes stops with the process (a worker's shutdown
        never waits minutes for a codebook): the next write trains again, or takes the backfill over."""
        self.store.close()

    def _write_isolating(self, planned: list[_Planned], job: Job, on_reject: Callable[[Reject], None]) -> None:
        """Write a batch; one that fails (not a transient fault) is halved until the document that
        fails stands alone: it is failed and reported with the reason, the rest goes in. (A worker's
        task does this across tasks instead, so that the document reaches the dead letters.)"""
        before = dataclasses.replace(job.counts)
        try:
            self._write(planned, job, on_reject)
        except TransientError:
            raise
        except Exception as exc:
            job.counts = before  # what the failed attempt counted is counted again by the retries
            if len(planned) > 1:
                half = len(planned) // 2
                self._write_isolating(planned[:half], job, on_reject)
                self._write_isolating(planned[half:], job, on_reject)
                return
            doc = planned[0].doc
            job.counts.failed += 1
            job.counts.processed += 1
            DOCUMENTS.labels("failed").inc()
            reason = f"could not be indexed: {type(exc).__name__}: {exc}"
            on_reject(Reject("ingest", f"document {doc.id!r}", reason, doc.text[:200], doc.key))

    def _before(self) -> None:
        for hook in self.before_write:
            hook()

    def _touched(self, keys: Iterable[Key]) -> None:
        touched = list(keys)
        for watcher in self.watchers:
            watcher(touched)

    def _hints(self, doc: Document) -> Hints:
        """What is known of an unsure document's language: its tenant's configured languages (never the
        languages of what is stored, which would make a document's adapter depend on what came before)."""
        languages = self.components.settings.tenant_languages.get(doc.tenant or "", [])
        return Hints(prior=tuple(languages)) if languages else NO_HINTS

    def _write(self, planned: list[_Planned], job: Job, on_reject: Callable[[Reject], None]) -> None:
        with self.gate:
            self._before()
            try:
                self._write_batch(planned, job, on_reject)
            finally:  # what failed half way is caught up with by a reindex too
                self._touched(plan.doc.key for plan in planned)

    def _write_batch(self, planned: list[_Planned], job: Job, on_reject: Callable[[Reject], None]) -> None:
        store = self._target()
        existing: dict[tuple[str | None, str], dict[int, str]] = {}
        for tenant in {p.doc.tenant for p in planned}:
            ids = [p.doc.id for p in planned if p.doc.tenant == tenant]
            existing.update({(tenant, i): h for i, h in store.chunk_hashes(ids, tenant).items()})
        todo: list[tuple[Document, Chunk, Resolution, str]] = []
        failed = 0
        for plan in planned:
            chunks = plan.split(self.chunker)
            try:
                texts = [c.text for c in chunks]
                langs = self.encoder.document_languages(plan.doc.text, texts, plan.doc.language, self._hints(plan.doc))
            except InvalidInputError as exc:
                job.counts.failed += 1
                failed += 1
                on_reject(Reject("ingest", f"document {plan.doc.id!r}", str(exc), plan.doc.text[:200], plan.doc.key))
                continue
            stored = existing.get(plan.doc.key, {})
            changed = False
            for chunk, lang in zip(chunks, langs, strict=True):
                digest = content_hash(self.encoder.spec.fingerprint, lang.adapter, plan.doc, chunk)
                if stored.get(chunk.number) != digest:
                    todo.append((plan.doc, chunk, lang, digest))
                    changed = True
            stale = [n for n in stored if n >= len(chunks)]
            if stale:
                store.delete_chunks(plan.doc.id, stale, plan.doc.tenant)
                job.counts.deleted += len(stale)
            if not changed and not stale:
                job.counts.skipped_unchanged += 1
        if todo:
            self._encode_and_store(todo, job, store)
        job.counts.processed += len(planned)
        DOCUMENTS.labels("failed").inc(failed)
        DOCUMENTS.labels("indexed").inc(len(planned) - failed)

    def _encode_and_store(self, todo: list[tuple[Document, Chunk, Resolution, str]], job: Job, store: Store) -> None:
        texts, languages = [c.text for _, c, _, _ in todo], [r for _, _, r, _ in todo]
        vectors = self.encoder.encode(self.encoder.tokenize(texts, languages, "document"))
        if (factor := self.components.settings.token_pool_factor) > 1:
            vectors = [pool_tokens(v, factor) for v in vectors]
        job.counts.encoded += len(vectors)
        CHUNKS_ENCODED.inc(len(vectors))
        first = None
        if self.first_stage is not None:
            self.first_stage.refresh(store, WRITER_REFRESH_S)  # a codebook another process trained since
            first = self.first_stage.documents(vectors)
        points = [
            Point(
                document_id=doc.id,
                chunk=chunk.number,
                vectors=v,
                text=chunk.text,
                language=lang.code,
                content_hash=digest,
                model_id=self.encoder.spec.model_id,
                tenant=doc.tenant,
                metadata=doc.metadata,
                first_stage=None if first is None else first[i],
                source=Source(doc.text, doc.language) if chunk.number == 0 else None,
            )
            for i, ((doc, chunk, lang, digest), v) in enumerate(zip(todo, vectors, strict=True))
        ]
        with self.encoder.priority.background():  # a search in this process goes first
            store.upsert(points)
            if self.first_stage is not None:  # e.g. the codebook, once the collection is large enough
                self.first_stage.maintain(store, self.components.settings.first_stage_min_points)
        job.counts.written += len(points)

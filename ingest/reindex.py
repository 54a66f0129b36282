"""Reindexing: the documents of the version searched, rebuilt as they were ingested
(`xmsearch.ingest.export`), are indexed into a new version built with other settings (the model, its
precision, the chunking, the vector datatype, quantization, first stage); the new version is verified,
then the alias moves to it atomically. The old version stays, for a rollback, until it is dropped.

It runs in a process of its own (the CLI: the store is its alone for the run), or inside the process
that owns the store and keeps serving (`xmsearch serve`, `Live`): there the writes made meanwhile go
to the version searched as usual, and the reindex follows them (the Indexer tells it which documents
each write touched) and brings them into the new version, first while writes go on, then with writes
paused for its last step: the last few, verification, and the swap, during which the process's
searches move to the new model and version together (no search mixes models, none fails).

Resumable: a reindex that stopped leaves its version unswapped; the next one with the same settings
indexes into it again, and change detection skips every chunk already there (the encoder runs once
per chunk), while documents no longer in the source are removed from it. Its state
(`xmsearch.ingest.reindex_state`) is kept beside the store for `status`, `cancel`, and the process that
resumes it after a crash.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from xmsearch.ingest.concurrent_writes import ConcurrentWrites, NoWrites, ProcessWrites
from xmsearch.ingest.documents import Document, Reject, limits
from xmsearch.ingest.export import Export, as_record
from xmsearch.ingest.job import Job
from xmsearch.ingest.pipeline import Indexer, Key
from xmsearch.ingest.reindex_state import (
    ReindexRunningError,
    ReindexState,
    ReindexUnavailableError,
    cancel_path,
    load,
    save,
    state_path,
)
from xmsearch.ingest.settings import IndexerSettings
from xmsearch.ingest.sources import read_path
from xmsearch.retriever.components import (
    Components,
    encoder_for,
    following,
    index_spec,
    index_store,
    recorded_settings,
)
from xmsearch.retriever.errors import InvalidInputError, PermanentError
from xmsearch.retriever.index.filters import owned_by
from xmsearch.retriever.index.first_stage import make_first_stage
from xmsearch.retriever.index.schema import IndexSpec, Page
from xmsearch.retriever.index.stores import Store, backend_for
from xmsearch.retriever.metrics import REINDEX_DOCUMENTS, REINDEX_RUNNING
from xmsearch.retriever.model.checkpoint import locate, read_spec
from xmsearch.retriever.settings import RetrieverSettings, named_as_settings

# What a reindex may change: each shapes the stored points (the rest of the settings do not).
REINDEXABLE = (
    "model",
    "precision",
    "chunk_overlap",
    "token_pool_factor",
    "vector_datatype",
    "quantization",
    "first_stage",
    "first_stage_encoding",
    "metadata_indexes",
)
SAMPLE_SEARCHES = 3  # documents whose opening words must find them in the new version before the swap
PAUSE_AT = 64  # documents written meanwhile still to bring in when writes are paused for the last step


class VerificationError(PermanentError):
    """The new version does not hold what the old one does: nothing was swapped."""


class ReindexCancelledError(PermanentError):
    """The reindex was cancelled: its version was dropped, nothing swapped."""


class ReindexInterruptedError(PermanentError):
    """The process stops: the reindex keeps its version, and resumes when the process starts again."""


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


@dataclass(frozen=True)
class Live:
    """A process that keeps serving while it reindexes (`xmsearch serve`, a worker): its writer, whose
    store is the source; `switch`, which moves its searches and writes to new components while the
    store swaps (the callable given) with no search in flight; and the writes made meanwhile that the
    reindex follows (by default this process's own, through its writer)."""

    indexer: Indexer
    switch: Callable[[Components, Callable[[], None]], None]
    writes: ConcurrentWrites | None = None

    def followed(self) -> ConcurrentWrites:
        return self.writes or ProcessWrites(self.indexer)


def target_settings(settings: IndexerSettings, changes: dict[str, str]) -> IndexerSettings:
    """The settings a reindex builds with: these, with `changes`, each checked as the environment
    would be."""
    return settings.with_changes(changes, REINDEXABLE, "a reindex")


def _resumable(store: Store, spec: IndexSpec) -> str | None:
    """The newest version after the one searched, if it was built for exactly `spec`: a reindex with
    these settings that did not finish (or was rolled back from)."""
    versions, current = store.versions(), store.current_version()
    newer = versions[versions.index(current) + 1 :] if current in versions else []
    if not newer:
        return None
    return newer[-1] if store.recorded(newer[-1]) == spec.record() else None


def last(settings: RetrieverSettings) -> ReindexState | None:
    """The collection's last reindex (None: never), `interrupted` if its process is gone."""
    state = load(state_path(settings))
    if state is not None and state.running and not state.alive():
        state.step = "interrupted"
        state.error = (
            f"process {state.pid} stopped while it ran: `xmsearch reindex start` with the same changes resumes it"
        )
    return state


def running(settings: RetrieverSettings) -> ReindexState | None:
    """The reindex of the collection that a live process runs now (None: none does)."""
    state = last(settings)
    return state if state is not None and state.running else None


def _previous(store: Store) -> str:
    """The version before the one searched (what a rollback returns to)."""
    versions, current = store.versions(), store.current_version()
    older = versions[: versions.index(current)] if current in versions else []
    if not older:
        raise InvalidInputError(f"nothing to roll back to: {current!r} is the oldest version of {store.alias!r}")
    return older[-1]


class Reindex:
    """One reindex of the collection the settings name, with `changes`: run it (`run`), follow it
    (`state`, `on_change`), stop it (`cancel` drops its version; `interrupt` keeps it to resume).

    With `rollback`, it returns to the version before the one searched, with what built that one
    (its model): it brings it up to date first (the documents written since it was left, changed or
    deleted; change detection skips the rest), then swaps to it. No write made since is lost."""

    def __init__(
        self,
        settings: IndexerSettings,
        changes: dict[str, str],
        source_path: str | None = None,
        live: Live | None = None,
        on_change: Callable[[ReindexState], None] = lambda state: None,
        cancelled: Callable[[], bool] = lambda: False,
        rollback: bool = False,
    ) -> None:
        changes = named_as_settings(changes)
        self.settings, self.changes, self.source_path, self.live = settings, changes, source_path, live
        self.on_change, self.cancelled = on_change, cancelled  # `cancelled`: asked elsewhere (e.g. through Redis)
        self.path = state_path(settings)
        # what the version searched records (a process's settings are the full ones)
        base: IndexerSettings = live.indexer.components.settings if live else following(settings)  # type: ignore[assignment]
        self.into: str | None = None  # a rollback: the version it returns to
        if rollback:
            probe = live.indexer.store if live else index_store(settings)
            try:
                self.into = _previous(probe)
                self.target = recorded_settings(base, probe.recorded(self.into) or {})
            finally:
                if not live:
                    probe.close()
        else:
            self.target = target_settings(base, changes)
        read_spec(locate(self.target.model), self.target.model)  # a model that is not there: said now, not later
        other = running(settings)
        if other is not None and other.pid != os.getpid():
            raise ReindexRunningError(
                f"a reindex of {settings.collection!r} runs in process {other.pid} ({other.step}, changes "
                f"{other.changes}): wait for it, or stop it with `xmsearch reindex cancel`"
            )
        t = time.time()
        self.state = ReindexState(
            collection=settings.collection, step="loading", changes=changes, source=source_path, pid=os.getpid(),
            started=t, updated=t, rollback=rollback,
        )  # fmt: skip
        self._stop: type[PermanentError] | None = None
        if self.path is not None:
            cancel_path(self.path).unlink(missing_ok=True)
        self._update()

    def cancel(self) -> None:
        """Stop at the next batch and drop the version built so far."""
        self._stop = ReindexCancelledError

    def interrupt(self) -> None:
        """Stop at the next batch, keeping the version built so far for a resume."""
        self._stop = ReindexInterruptedError

    def _update(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self.state, name, value)
        self.state.updated = time.time()
        REINDEX_RUNNING.set(1 if self.state.running else 0)
        REINDEX_DOCUMENTS.labels("processed").set(self.state.processed)
        REINDEX_DOCUMENTS.labels("total").set(self.state.total or 0)
        save(self.path, self.state)  # each step and batch: another process reads it
        self.on_change(self.state)

    def _check_stop(self) -> None:
        if self._stop is None and (self.cancelled() or (self.path is not None and cancel_path(self.path).exists())):
            self._stop = ReindexCancelledError  # asked by `reindex cancel` in another process
        if self._stop is ReindexCancelledError:
            raise ReindexCancelledError(f"the reindex of {self.settings.collection!r} was cancelled; nothing swapped")
        if self._stop is ReindexInterruptedError:
            raise ReindexInterruptedError(
                f"the reindex of {self.settings.collection!r} was interrupted by the process stopping; it resumes "
                "when the process starts again (or with `xmsearch reindex start` and the same changes)"
            )

    def run(self) -> Reindexed:
        """Build, verify and swap; the state says how it ended (done, failed, cancelled, interrupted)."""
        try:
            done = self._run()
        except ReindexCancelledError as exc:
            self._update(step="cancelled", error=str(exc), finished=time.time())
            raise
        except ReindexInterruptedError as exc:
            self._update(step="interrupted", error=str(exc), finished=time.time())
            raise
        except BaseException as exc:
            self._update(step="failed", error=f"{type(exc).__name__}: {exc}", finished=time.time())
            raise
        finally:
            if self.path is not None:
                cancel_path(self.path).unlink(missing_ok=True)
        self._update(step="done", finished=time.time(), documents=done.documents, removed=done.removed)
        return done

    def _run(self) -> Reindexed:
        settings, live = self.settings, self.live
        # a missing path is an error now, before any model loads
        named = None if self.source_path is None else (self.source_path, read_path(self.source_path, limits(settings)))
        if backend_for(settings) == "server" and live is None:  # others may write meanwhile, unseen
            raise ReindexUnavailableError(
                "on a Qdrant server, run it where the writes made meanwhile are followed: through the workers "
                "(XMSEARCH_BROKER_URL set), or inside `xmsearch serve` (POST /reindex, `xmsearch --url URL reindex`)"
            )
        target = self.target
        encoder = encoder_for(target, live.indexer.components if live else None)  # live: the same model is shared
        encoder.ready_queries()  # the verification searches encode queries: load their runtime before writes pause
        first_stage = make_first_stage(encoder.spec.dim, target)
        spec = index_spec(encoder.spec, target, first_stage)
        store = live.indexer.store if live else index_store(settings)  # the version searched, read without its model
        store.open(create=False)
        try:
            previous = store.current_version()
            resumable = None if self.into else _resumable(store, spec)
            resumed = resumable is not None
            version = self.into or resumable or store.create_version(spec)
            total = None if named else store.count_documents()
            self._update(step="copying", version=version, previous=previous, resumed=resumed, total=total,
                         copying_since=time.time())  # fmt: skip
            building = store.version_store(version, spec)  # shares the store's lock or client
            try:
                copy = _Copy(store, building, Components(target, encoder, building, first_stage), target, named)
                report = self._build(
                    copy, lambda: store.swap(version, spec), Components(target, encoder, store, first_stage)
                )
            except ReindexCancelledError:
                building.close()
                if self.into is None:  # a rollback's version stays: what it returns to
                    store.drop(version)
                raise
            finally:
                building.close()
            return dataclasses.replace(report, version=version, previous=previous, resumed=resumed)
        finally:
            if not live:
                store.close()

    def _build(self, copy: _Copy, swap: Callable[[], None], after: Components) -> Reindexed:
        """Copy, catch up with the writes made meanwhile, then, with writes paused: the last of them,
        verification, and the swap (this process's readers and writer move to `after`)."""

        def progress(job: Job) -> None:
            counts = job.counts
            self._update(processed=counts.processed, encoded=counts.encoded, skipped=counts.skipped_unchanged)
            self._check_stop()

        writes = self.live.followed() if self.live else NoWrites()
        with writes.following() as drain:  # before the first document is read: no write is missed
            copy.run(progress)
            self._check_stop()
            self._update(step="catching_up")
            while writes.pending() > PAUSE_AT:  # the writes made meanwhile, while writes go on
                self._update(caught_up=self.state.caught_up + copy.resync(drain()))
                self._check_stop()
            copy.indexer.wait()  # as after the copy: a codebook the catch-up started is whole before the swap
            copy.building.optimize()  # the long part of closing it, before writes pause (Edge)
            with writes.paused():  # writes wait from here
                self._update(caught_up=self.state.caught_up + copy.resync(drain()), step="verifying")
                report = copy.verify()
                self._check_stop()
                self._update(step="swapping")
                copy.building.close()  # the store opens the version in its place
                if self.live:
                    self.live.switch(after, swap)
                else:
                    swap()
                return report


class _Copy:
    """The documents of the source (the version searched, or a named file or folder) indexed into the
    version being built, and what verification expects of it."""

    def __init__(
        self,
        source: Store,
        building: Store,
        components: Components,
        settings: IndexerSettings,
        named: tuple[str, Iterator[Document | Reject]] | None,
    ) -> None:
        self.source, self.building, self.components, self.named = source, building, components, named
        self.indexer = Indexer(components, settings, follow=False)  # it writes the version it builds, by name
        self.batch = settings.ingest_batch_size
        self.export = Export(source)
        self.expected: dict[Key, int] = {}  # chunks each document should have
        self.rejects: list[Reject] = []
        self.job = Job()

    def run(self, on_progress: Callable[[Job], None]) -> None:
        def documents() -> Iterator[Document | Reject]:
            records = self.named[1] if self.named else (Document.model_validate(r) for r in self.export.records())
            for doc in records:
                if isinstance(doc, Document):
                    self.expected[doc.key] = len(self.indexer.chunker.split(doc.text))
                yield doc

        self.indexer.ingest(documents(), on_reject=self.rejects.append, on_progress=on_progress, job=self.job)
        self.indexer.wait()  # a codebook trained for the new version is complete before it is searched

    def resync(self, keys: list[Key]) -> int:
        """Bring these documents (written since the copy began) into the new version as the source
        holds them now: indexed again (change detection skips what is already there), or removed."""
        for start in range(0, len(keys), self.batch):
            present: list[Document] = []
            gone: dict[str | None, list[str]] = {}
            for tenant, document_id in keys[start : start + self.batch]:
                first = self.source.fetch(document_id, tenant, vectors=False)[:1]
                record = as_record(first[0]) if first and first[0].chunk == 0 else None
                if record is None:
                    gone.setdefault(tenant, []).append(document_id)
                    self.expected.pop((tenant, document_id), None)
                    continue
                doc = Document.model_validate(record)
                present.append(doc)
                self.expected[doc.key] = len(self.indexer.chunker.split(doc.text))
            if present:
                self.indexer.write(present, self.job, self.rejects.append)
            for tenant, ids in gone.items():
                self.indexer.delete(ids, tenant, self.job)
        return len(keys)

    def verify(self) -> Reindexed:
        """Nothing rejected, nothing unrebuildable; then remove what the source does not hold, and
        check documents per tenant, chunks per document, and sample searches."""
        if self.rejects:
            first = self.rejects[0]
            raise VerificationError(
                f"{len(self.rejects)} record(s) of {self.named[0] if self.named else 'the collection'} were rejected "
                f"(e.g. {first.location}: {first.reason}): fix them and run the reindex again; nothing swapped"
            )
        if self.export.unrebuildable:
            tenant, first_id = self.export.unrebuildable[0]
            owner = f" of tenant {tenant!r}" if tenant else ""
            raise VerificationError(
                f"{len(self.export.unrebuildable)} document(s) were stored before xmsearch kept each document's text "
                f"(e.g. {first_id!r}{owner}): reindex from their source instead; nothing swapped"
            )
        chunks = self.building.chunk_counts()
        removed = _remove_stale(self.building, chunks, self.expected)
        counts = _verify(self.building, chunks, self.expected)
        _sample_searches(self.components, self.building, self.expected)
        return Reindexed(version="", previous=None, job=self.job, documents=counts, removed=removed)


def reindex(
    settings: IndexerSettings,
    changes: dict[str, str],
    on_change: Callable[[ReindexState], None] = lambda state: None,
    source_path: str | None = None,
) -> Reindexed:
    """Rebuild the collection the settings name with `changes`, verify it, and swap the alias to it,
    in this process (which holds the store for the run); `on_change` follows its state. With
    `source_path` (JSON Lines, a folder: what `ingest` reads), the new version holds that source's
    documents instead of the current version's."""
    return Reindex(settings, changes, source_path, on_change=on_change).run()


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
    """A few documents' opening words, searched in the new version with the new model as every search
    is made (through its first stage and shortlist where the collection has them), find hits: a
    first stage that finds nothing for them fails the verification, as an exact search would not."""
    for tenant, document_id in list(expected)[:SAMPLE_SEARCHES]:
        [point] = building.fetch(document_id, tenant, vectors=False)[:1]
        words = " ".join(point.text.split()[:8])
        given = point.source.language if point.source else None  # as ingested ("und" is stored for undetected)
        prepared = components.encoder.prepare([words], given, "query")
        vectors = components.encoder.encode(prepared)
        hits = components.search(building, vectors, Page(1), [owned_by(tenant)], building.count)[0]
        if not hits:
            raise VerificationError(f"a search for document {document_id!r} found nothing in the new version")


def cancel(settings: IndexerSettings, wait_s: float = 60.0) -> ReindexState:
    """Cancel the collection's reindex: one running in another process is asked to stop (it drops its
    version); one that a crash or a stop interrupted has its version dropped here (the store must be
    free). The state it ended in."""
    path = state_path(settings)
    state = last(settings)
    if state is None or not state.unfinished:
        raise InvalidInputError(f"no reindex of {settings.collection!r} to cancel")
    if path is not None and state.alive():
        cancel_path(path).touch()
        deadline = time.monotonic() + wait_s
        while (state := load(path)) is not None and state.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if state is None or state.running:
            raise PermanentError(f"the reindex in process {state.pid if state else '?'} did not stop in {wait_s:.0f} s")
        return state
    store = index_store(settings)  # an interrupted one: nothing runs it, its version is dropped here
    store.open(create=False)
    try:
        if state.version and state.version in store.versions() and state.version != store.current_version():
            store.drop(state.version)
    finally:
        store.close()
    state.step, state.finished = "cancelled", time.time()
    save(path, state)
    return state


def rollback(
    settings: IndexerSettings, live: Live | None = None, on_change: Callable[[ReindexState], None] = lambda s: None
) -> Reindexed:
    """Return to the version before the one searched, with its model, brought up to date first (see
    `Reindex`); what it did (`previous`: the version left)."""
    return Reindex(settings, {}, live=live, on_change=on_change, rollback=True).run()

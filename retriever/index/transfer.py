"""Moving a collection between stores without encoding anything again: the searched version of one
store (Edge, a Qdrant server, local mode) becomes a new version of another, point by point with its
token vectors, first-stage vector and payload, and the codebook with them. A snapshot is such a copy
into a Qdrant Edge folder, archived; a restore copies it back into any store.

A copy builds a new version of the target and points the target's alias at it only once it is
verified: the same number of points and documents, sample searches (exact, and through the centroid
first stage where there is one) ranking the same passages with the same scores, and the sampled
points' pooled passages equal. Pooled passages are copied as stored, not pooled again. It is
resumable: after each page it records where the source's scroll got to, so a copy that was stopped
goes on from there when run again (points have deterministic ids: a page written twice is written
once). Writes to the source during a copy are not followed: the verification finds them, and the
version is dropped, so that the next run starts afresh.
"""

from __future__ import annotations

import dataclasses
import json
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from xmsearch.retriever.errors import InvalidInputError, PermanentError
from xmsearch.retriever.index.codebook import Codebook
from xmsearch.retriever.index.filters import Condition
from xmsearch.retriever.index.schema import IndexSpec, Page, Point
from xmsearch.retriever.index.stores.base import SCROLL_PAGE, CollectionNotFoundError, Cursor, Store

SAMPLE_POINTS = 200  # the points whose documents the exact searches compared rank
SAMPLE_QUERIES = 20  # searches compared between the source and the copy, in each way verify searches
QUERY_TOKENS = 32  # a sample query: the first token vectors of a stored passage
SCORE_TOLERANCE = 1e-3  # relative: float16 storage (Edge rounds the query too) and two engines
FIRST_STAGE_PROBE = 4
FIRST_STAGE_CANDIDATES = 100
Progress = Callable[[int, int], None]  # points copied so far, points in all


class CopyVerificationError(PermanentError):
    """The copy does not hold what the source holds (the source changed meanwhile, or a store lost writes)."""


@dataclass
class _State:
    """Where a copy got to, saved after each page so that it can go on."""

    source: str  # the source store and version
    target: str  # the target store
    version: str  # the target's version being filled
    cursor: Cursor = None
    copied: int = 0

    @classmethod
    def load(cls, path: Path | None) -> _State | None:
        if path is None or not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(dataclasses.asdict(self)))
            tmp.replace(path)


@dataclass(frozen=True)
class CopyReport:
    """What a copy did: from where to where, the version it built, what it holds, how it checked."""

    source: str
    target: str
    version: str
    points: int
    documents: int
    resumed_at: int  # points already copied by an earlier run (0: started afresh)
    searches_compared: int
    codebook: str | None  # the codebook's id (None: the source had none)
    seconds: float
    replaced: str | None  # the version the target's alias pointed at before (kept; None: none)

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def copy_collection(
    source: Store,
    target_for: Callable[[IndexSpec], Store],
    state_file: Path | None = None,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy the version `source` searches into a new version of the store `target_for` makes for its
    spec, verify it, and point the target's alias at it. `source` is opened here and left open; the
    target is closed. With a state file, a copy stopped before the end goes on where it was."""
    started = time.monotonic()
    source.open(create=False)
    from_version = source.current_version()
    recorded = None if from_version is None else source.recorded(from_version)
    if from_version is None or recorded is None:
        raise CollectionNotFoundError(f"collection {source.alias!r} has nothing to copy in {source.where}")
    spec = IndexSpec.from_record(recorded)
    target = target_for(spec)
    origin = f"{source.where} {from_version}"
    try:
        if target.where == source.where and target.alias == source.alias:
            raise PermanentError(f"the source and the target are the same collection ({source.where})")
        target.hold()
        state = _State.load(state_file)
        if state is not None and not (state.target == target.where and _unfinished(target, state)):
            state = None  # its version is gone, searched, or in another store
        if state is not None and state.source != origin:
            target.drop(state.version)  # a copy of what the source searched before: started afresh
            state = None
        if state is None:
            state = _State(origin, target.where, target.create_version(spec))
        resumed_at = state.copied
        view = target.version_store(state.version, spec)
        try:
            codebook = source.codebook()
            if codebook is not None and view.codebook() is None:
                view.save_codebook(codebook)
            total = source.count()
            while True:
                points, after = source.points(state.cursor, SCROLL_PAGE)
                view.upsert(points)
                state.cursor, state.copied = after, state.copied + len(points)
                state.save(state_file)
                if progress is not None:
                    progress(state.copied, total)
                if after is None:
                    break
            try:
                compared, problem = verify(source, view, codebook), None
            except CopyVerificationError as exc:
                compared, problem = 0, exc
            points_in, documents_in = view.count(), view.count_documents()
        finally:
            view.close()
        if problem is not None:  # what the version holds cannot be trusted: the next run starts afresh
            target.drop(state.version)
            if state_file is not None:
                state_file.unlink(missing_ok=True)
            raise problem
        replaced = target.current_version()
        target.swap(state.version, spec)
    finally:
        target.close()
    if state_file is not None:
        state_file.unlink(missing_ok=True)
    return CopyReport(
        source=origin, target=target.where, version=state.version, points=points_in, documents=documents_in,
        resumed_at=resumed_at, searches_compared=compared, codebook=None if codebook is None else codebook.id,
        seconds=round(time.monotonic() - started, 2), replaced=replaced,
    )  # fmt: skip


def _unfinished(target: Store, state: _State) -> bool:
    """Whether the version a saved state names is still there to go on with (not dropped, not searched)."""
    return state.version in target.versions() and state.version != target.current_version()


def verify(source: Store, copy: Store, codebook: Codebook | None) -> int:
    """Check that `copy` holds what `source` holds: the same points and documents, and sample searches
    finding the same passages with the same scores: exact among the documents of a sample of points,
    and through the centroid first stage over everything when their codebook (the source's) is
    complete; and the sampled points' pooled passages the same where the source holds those. How
    many searches were compared; CopyVerificationError otherwise."""
    counts = (source.count(), source.count_documents()), (copy.count(), copy.count_documents())
    if counts[0] != counts[1]:
        raise CopyVerificationError(
            f"the copy holds {counts[1][0]:,} points of {counts[1][1]:,} documents, the source "
            f"{counts[0][0]:,} of {counts[0][1]:,}: the source changed during the copy; run it again with writes "
            "stopped"
        )
    samples, _ = source.points(None, SAMPLE_POINTS)  # ids are hashes: the first page is a fair sample
    queries = [p.vectors[:QUERY_TOKENS] for p in samples[:SAMPLE_QUERIES]]
    page = Page(k=10, group=False)
    # exact MaxSim costs the whole collection per query: among the sampled documents only
    scope = (Condition("document_id", any_of=tuple({p.document_id for p in samples})),)
    compared = _compare(source.search(queries, page, scope), copy.search(queries, page, scope), "exact")
    if codebook is not None and codebook.complete:
        first = [codebook.query(q, FIRST_STAGE_PROBE) for q in queries]
        ranked = [s.search(queries, page, first_stage=first, candidates=FIRST_STAGE_CANDIDATES) for s in (source, copy)]
        compared += _compare(ranked[0], ranked[1], "first-stage")
    if source.spec.pooled:
        _same_pooled(samples, copy, scope)
    return compared


def _same_pooled(samples: list[Point], copy: Store, scope: tuple[Condition, ...]) -> None:
    """The sampled points' pooled passages (what a shortlist scores) are in the copy as in the source."""
    copied = {(p.tenant, p.document_id, p.chunk): p for p in copy.whole_points(scope)}
    for point in samples:
        there = copied.get((point.tenant, point.document_id, point.chunk))
        pooled = None if there is None else there.pooled
        if (
            point.pooled is None
            or pooled is None
            or pooled.shape != point.pooled.shape
            or not np.allclose(pooled, point.pooled, atol=SCORE_TOLERANCE)
        ):
            raise CopyVerificationError(
                f"document {point.document_id!r} chunk {point.chunk}: its pooled passage in the copy is not the "
                "source's"
            )


def _compare(expected: list[list[Any]], found: list[list[Any]], kind: str) -> int:
    """Each query's hits: scores equal within the tolerance, the same passages (ties at the last score aside)."""
    for i, (want, got) in enumerate(zip(expected, found, strict=True)):
        scores = np.array([h.score for h in want]), np.array([h.score for h in got])
        same_scores = len(want) == len(got) and np.allclose(*scores, rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE)
        last = scores[0][-1] if len(want) else 0.0
        above = last + SCORE_TOLERANCE * max(1.0, abs(last))  # hits tied with the last may differ
        settled = [{(h.tenant, h.document_id, h.chunk) for h in hits if h.score > above} for hits in (want, got)]
        if not same_scores or settled[0] != settled[1]:
            raise CopyVerificationError(
                f"{kind} search {i + 1} ranks differently in the copy (scores {np.round(scores[1], 4).tolist()}, "
                f"the source's {np.round(scores[0], 4).tolist()})"
            )
    return len(expected)


def snapshot(source: Store, path: Path, progress: Progress | None = None) -> CopyReport:
    """Write the version `source` searches to `path`: a tar archive (gzip-compressed where the name
    ends in .gz) of a Qdrant Edge store folder that holds a verified copy of it alone, whatever store
    it came from. The archive appears whole or not at all."""
    from xmsearch.retriever.index.stores.edge import EdgeStore

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".xmsearch-snapshot-") as scratch:
        report = copy_collection(source, lambda spec: EdgeStore(Path(scratch), source.alias, spec), progress=progress)
        partial = path.with_name(path.name + ".partial")
        with tarfile.open(partial, "w:gz" if path.name.endswith(".gz") else "w") as tar:
            tar.add(
                Path(scratch) / source.alias, source.alias, filter=lambda m: None if m.name.endswith(".lock") else m
            )
        partial.replace(path)
    return dataclasses.replace(report, target=str(path))


def restore(path: Path, target_for: Callable[[IndexSpec], Store], progress: Progress | None = None) -> CopyReport:
    """Copy the collection a snapshot holds into a new version of the store `target_for` makes, verify
    it and point the store's alias at it (the version it pointed at before is kept)."""
    from xmsearch.retriever.index.stores import open_as_built
    from xmsearch.retriever.settings import StoreSettings

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".xmsearch-restore-") as scratch:
        edge = Path(scratch) / "edge"  # a data folder's Edge stores, as XMSEARCH_DATA_DIR holds them
        try:
            with tarfile.open(path) as tar:
                tar.extractall(edge, filter="data")  # no member may land outside the scratch folder
        except (tarfile.TarError, OSError) as exc:
            reason = "not a tar archive, compressed or not" if isinstance(exc, tarfile.ReadError) else exc
            raise InvalidInputError(f"{path} is not a snapshot xmsearch can read ({reason})") from None
        folders = [p for p in edge.iterdir() if p.is_dir()]
        if len(folders) != 1 or not (folders[0] / "CURRENT").is_file():
            raise InvalidInputError(f"{path} is not an xmsearch snapshot (one collection folder with its CURRENT)")
        alias = folders[0].name
        try:
            settings = StoreSettings(store="edge", data_dir=Path(scratch), collection=alias)
        except ValidationError:
            raise InvalidInputError(f"{path} is not an xmsearch snapshot ({alias!r} is no collection name)") from None
        try:
            source = open_as_built(settings)
        except CollectionNotFoundError:
            raise InvalidInputError(f"{path} holds no version record of collection {alias!r}") from None
        try:
            report = copy_collection(source, target_for, progress=progress)
        finally:
            source.close()
    return dataclasses.replace(report, source=str(path))

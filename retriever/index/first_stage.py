"""The optional first stage: a vector per passage that the engine searches for candidates, which are
then reranked with exact MaxSim in the same query (a Qdrant `prefetch`).

Three encodings (README, "First stage", has the measurements):
- `centroids`: a sparse vector over the centroids of the passage's token vectors, from a codebook
  trained on the collection once it reaches `first_stage_min_points` (PLAID's candidate generation
  inside Qdrant; `codebook.py`). Until the codebook is trained, and its vectors given to every point
  already stored, searches are exact.
- `mean`: the normalised mean of the token vectors (128 dims), searched with HNSW.
- `muvera`: MUVERA fixed-dimensional encodings (fastembed's, `pip install xmsearch[muvera]`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from xmsearch.retriever.errors import PermanentError
from xmsearch.retriever.index.codebook import SAMPLE_PER_CENTROID, Codebook, Sparse, codebook_size, train
from xmsearch.retriever.index.pooling import unit_rows
from xmsearch.retriever.index.stores.base import Shortlist, Store
from xmsearch.retriever.settings import SearchSettings

log = logging.getLogger(__name__)
Vector = np.ndarray | Sparse  # one passage's or query's first-stage vector
WRITER_REFRESH_S = 2.0  # a writer without a codebook looks for one (another process's) this often
RETRY_BUILD_S = 60  # after a failed training or backfill, the next write tries again this much later
CLAIM_RECHECK_S = 20.0  # a process waiting on another's backfill looks at its claim this often


class FirstStage(Protocol):
    """Encodes token matrices into one vector each; documents and queries may differ."""

    name: str
    dim: int  # of a dense vector (0: sparse)

    def documents(self, vectors: Sequence[np.ndarray]) -> Sequence[Vector | None]: ...

    def queries(self, vectors: Sequence[np.ndarray]) -> Sequence[Vector] | None:
        """The queries' vectors; None while the first stage cannot serve (searches are exact)."""
        ...

    def candidates(self, points: int, pooled: bool = False) -> int:
        """How many candidates to rerank in a collection of `points` passages (`pooled`: whose
        shortlist scores pooled passages): from the curve measured on real passages, so that recall@10
        stays level as the collection grows (README, "First stage")."""
        ...

    def refresh(self, store: Store, max_age_s: float) -> None:
        """Read again what the store holds for it, if older than `max_age_s`."""
        ...

    def maintain(self, store: Store, min_points: int) -> None:
        """After a write: build what the store needs from now on (a writer calls it; may work on in
        a thread)."""
        ...

    def wait(self, timeout: float | None = None) -> None:
        """Until what `maintain` started is done."""
        ...


class _Stateless:
    """A first stage computed from the vectors alone: nothing to read or build. One vector per passage
    loses about 0.01 of recall@10 each time the collection doubles at a fixed number of candidates:
    600 at 10k passages (0.970 with mean pooling), growing 1.27x per doubling."""

    def candidates(self, points: int, pooled: bool = False) -> int:
        return grown(points, 600, 10_000, 0.35)

    def refresh(self, store: Store, max_age_s: float) -> None:
        pass

    def maintain(self, store: Store, min_points: int) -> None:
        pass

    def wait(self, timeout: float | None = None) -> None:
        pass


class MeanPooling(_Stateless):
    """The normalised mean of the token vectors, for documents and queries alike."""

    name = "mean"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def documents(self, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(unit_rows(np.stack([v.mean(axis=0) for v in vectors])))

    def queries(self, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.documents(vectors)


class Muvera(_Stateless):
    """MUVERA fixed-dimensional encodings through fastembed (an optional dependency)."""

    name = "muvera"

    def __init__(self, dim: int, k_sim: int = 5, dim_proj: int = 16, r_reps: int = 20, seed: int = 42) -> None:
        try:
            from fastembed.postprocess import Muvera as FastembedMuvera
        except ImportError as exc:
            raise PermanentError("the MUVERA first stage needs fastembed: pip install 'xmsearch[muvera]'") from exc
        self._muvera = FastembedMuvera(dim=dim, k_sim=k_sim, dim_proj=dim_proj, r_reps=r_reps, random_seed=seed)
        self.dim = int(self._muvera.embedding_size)

    def documents(self, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self._muvera.process_document(v).astype(np.float32) for v in vectors]

    def queries(self, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self._muvera.process_query(v).astype(np.float32) for v in vectors]


class Centroids:
    """Sparse vectors over the centroids of the collection's codebook (see the module docstring)."""

    name = "centroids"
    dim = 0

    def __init__(self, probe: int, size: int = 0, seed: int = 0, shortlisted: bool = False) -> None:
        self.probe = probe  # nearest centroids per query token
        self.size = size  # centroids of a new codebook (0: from the collection's size)
        self.seed = seed
        self.shortlisted = shortlisted  # searches rerank the candidates through a shortlist (SearchSettings)
        self.codebook: Codebook | None = None
        self._read_at = -float("inf")
        self._building: threading.Thread | None = None  # training and backfilling, beside the writes
        self._failed_at = -float("inf")
        self._starting = threading.Lock()

    def candidates(self, points: int, pooled: bool = False) -> int:
        """Reranked exactly, 600: recall@10 0.977-0.978 at 10k, 25k and 51k passages with a codebook
        trained at 10k. Through a shortlist of the query pooled, 800: 0.978-0.980 at the same sizes,
        in 0.67x the time of 600 reranked exactly at 51k; of pooled passages, 1,200: 0.979-0.981, in
        0.83x the time of the pooled query's 800 at 51k (README, "Search speed"). 7% more per
        doubling beyond 50k, where it was not measured."""
        base = (1200 if pooled else 800) if self.shortlisted else 600
        return grown(points, base, 50_000, 0.1)

    def documents(self, vectors: Sequence[np.ndarray]) -> list[Sparse | None]:
        codebook = self.codebook
        return [None if codebook is None else codebook.document(v) for v in vectors]

    def queries(self, vectors: Sequence[np.ndarray]) -> list[Sparse] | None:
        codebook = self.codebook
        if codebook is None or not codebook.complete:  # some points have no centroids yet: exact
            return None
        return [codebook.query(v, self.probe) for v in vectors]

    def refresh(self, store: Store, max_age_s: float) -> None:
        if self.codebook is not None and self.codebook.complete:
            return  # a version's codebook never changes once complete
        if time.monotonic() - self._read_at < max_age_s:
            return
        self._read_at = time.monotonic()
        if self.codebook is None:
            self.codebook = store.codebook()
            return
        record = store.codebook_record()  # the same centroids: only whether they are complete now
        if record is not None and record.get("id") == self.codebook.id and record.get("complete"):
            self.codebook = dataclasses.replace(self.codebook, complete=True)

    def maintain(self, store: Store, min_points: int) -> None:
        """Once the collection has `min_points` points: train its codebook and give every point stored
        before it its centroids, in a thread of this process, so that writes go on meanwhile (they take
        the codebook at their next write; a task never outlives its broker's visibility timeout). One
        process backfills at a time; the others wait, and one takes over where it died."""
        if self.codebook is not None and self.codebook.complete:
            return
        with self._starting:
            if self._building is not None and self._building.is_alive():
                return
            if time.monotonic() - self._failed_at < RETRY_BUILD_S:
                return
            points = store.count() if self.codebook is None else 0
            if self.codebook is None and points < max(min_points, 1):
                return
            self._building = threading.Thread(
                target=self._build, args=(store, points), name="xmsearch-codebook", daemon=True
            )
            self._building.start()

    def wait(self, timeout: float | None = None) -> None:
        """Until the training and backfill this process started are done."""
        if self._building is not None:
            self._building.join(timeout)

    def _build(self, store: Store, points: int) -> None:
        try:
            if self.codebook is None:
                self.codebook = store.save_codebook(self._train(store, points))
            owner = f"{socket.gethostname()}:{os.getpid()}"
            while not store.claim_backfill(self.codebook, owner):  # another process is giving the points centroids
                time.sleep(CLAIM_RECHECK_S)  # until it is done, or has died and its claim can be taken over
                record = store.codebook_record()
                if record is None or record.get("id") != self.codebook.id:
                    return  # its version was dropped meanwhile
                if record.get("complete"):
                    self.codebook = dataclasses.replace(self.codebook, complete=True)
                    return
            started = time.perf_counter()
            # the last pass starts once every writer has the codebook: other processes (a server's) look
            # for it every WRITER_REFRESH_S; this process's writers have it at once, a write in flight lands
            settle_s = 3 * WRITER_REFRESH_S if store.backend == "server" else 1.0
            backfilled = store.backfill(self.codebook, owner, settle_s)
            self.codebook = dataclasses.replace(self.codebook, complete=True)
            log.info("gave %d stored points their centroids in %.1f s", backfilled, time.perf_counter() - started)
        except Exception:
            self._failed_at = time.monotonic()
            log.exception("the centroid codebook could not be built; retrying in %d s", RETRY_BUILD_S)

    def _train(self, store: Store, points: int) -> Codebook:
        """A codebook trained on a sample of the store's token vectors (points in storage order: their
        ids are hashes, so any prefix is a fair sample)."""
        rows: list[np.ndarray] = []
        size, tokens = 0, 0
        for matrix in store.token_vectors():
            rows.append(matrix)
            tokens += len(matrix)
            if len(rows) == 256 and not size:  # enough to know the tokens per point
                size = self.size or codebook_size(points * tokens // len(rows))
            if size and tokens >= SAMPLE_PER_CENTROID * size:
                break
        sample = np.concatenate(rows)
        size = min(size or self.size or codebook_size(points * tokens // len(rows)), len(sample))
        started = time.perf_counter()
        codebook = train(sample, size, self.seed)
        log.info(
            "trained a codebook of %d centroids on %d token vectors of %d points in %.1f s",
            size, len(sample), len(rows), time.perf_counter() - started,
        )  # fmt: skip
        return codebook


def grown(points: int, base: int, from_points: int, exponent: float) -> int:
    """`base` candidates up to `from_points` passages, times (passages / from_points) ** exponent above,
    between 100 and 10,000."""
    return max(100, min(10_000, round(base * max(1.0, points / from_points) ** exponent)))


def shortlist_of(settings: SearchSettings) -> Shortlist | None:
    """The shortlist the settings ask searches to rerank through (None: every candidate exactly)."""
    return Shortlist(settings.shortlist, settings.shortlist_pool_factor) if settings.shortlist else None


def make_first_stage(token_dim: int, settings: SearchSettings) -> FirstStage | None:
    """The first stage the settings ask for, or None when it is off."""
    if settings.first_stage == "off":
        return None
    if settings.first_stage_encoding == "muvera":
        return Muvera(token_dim)
    if settings.first_stage_encoding == "centroids":
        return Centroids(
            settings.first_stage_probe, settings.first_stage_centroids, shortlisted=shortlist_of(settings) is not None
        )
    return MeanPooling(token_dim)

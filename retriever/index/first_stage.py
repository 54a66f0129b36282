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

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from xmsearch.retriever.errors import PermanentError
from xmsearch.retriever.index.codebook import SAMPLE_PER_CENTROID, Codebook, Sparse, codebook_size, train
from xmsearch.retriever.index.stores.base import Store
from xmsearch.retriever.settings import SearchSettings

log = logging.getLogger(__name__)
Vector = np.ndarray | Sparse  # one passage's or query's first-stage vector
WRITER_REFRESH_S = 2.0  # a writer without a codebook looks for one (another process's) this often


class FirstStage(Protocol):
    """Encodes token matrices into one vector each; documents and queries may differ."""

    name: str
    dim: int  # of a dense vector (0: sparse)

    def documents(self, vectors: Sequence[np.ndarray]) -> Sequence[Vector | None]: ...

    def queries(self, vectors: Sequence[np.ndarray]) -> Sequence[Vector] | None:
        """The queries' vectors; None while the first stage cannot serve (searches are exact)."""
        ...

    def refresh(self, store: Store, max_age_s: float) -> None:
        """Read again what the store holds for it, if older than `max_age_s`."""
        ...

    def maintain(self, store: Store, min_points: int) -> None:
        """After a write: build what the store needs from now on (a writer calls it)."""
        ...


class _Stateless:
    """A first stage computed from the vectors alone: nothing to read or build."""

    def refresh(self, store: Store, max_age_s: float) -> None:
        pass

    def maintain(self, store: Store, min_points: int) -> None:
        pass


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row (last axis) scaled to length 1, as float32."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


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

    def __init__(self, probe: int, size: int = 0, seed: int = 0) -> None:
        self.probe = probe  # nearest centroids per query token
        self.size = size  # centroids of a new codebook (0: from the collection's size)
        self.seed = seed
        self.codebook: Codebook | None = None
        self._read_at = -float("inf")

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
        if time.monotonic() - self._read_at >= max_age_s:
            self._read_at = time.monotonic()
            self.codebook = store.codebook() or self.codebook

    def maintain(self, store: Store, min_points: int) -> None:
        """Once the collection has `min_points` points: train its codebook, then give every point
        stored before it its centroids (other writers take the codebook at their next write)."""
        if self.codebook is not None and self.codebook.complete:
            return
        if self.codebook is None:
            points = store.count()
            if points < max(min_points, 1):
                return
            self.codebook = store.save_codebook(self._train(store, points))
        started = time.perf_counter()
        # on a server, other processes write too: they take the codebook within WRITER_REFRESH_S
        backfilled = store.backfill(self.codebook, settle_s=0.0 if store.backend == "edge" else 3 * WRITER_REFRESH_S)
        self.codebook = store.codebook()
        log.info("gave %d stored points their centroids in %.1f s", backfilled, time.perf_counter() - started)

    def _train(self, store: Store, points: int) -> Codebook:
        """A codebook trained on a sample of the store's token vectors (points in storage order: their
        ids are hashes, so any prefix is a fair sample)."""
        rows: list[np.ndarray] = []
        wanted, tokens = 0, 0
        for matrix in store.token_vectors():
            rows.append(matrix)
            tokens += len(matrix)
            if len(rows) == 256 and not wanted:  # enough to know the tokens per point
                wanted = SAMPLE_PER_CENTROID * (self.size or codebook_size(points * tokens // len(rows)))
            if wanted and tokens >= wanted:
                break
        sample = np.concatenate(rows)
        size = min(self.size or codebook_size(points * tokens // len(rows)), len(sample))
        started = time.perf_counter()
        codebook = train(sample, size, self.seed)
        log.info(
            "trained a codebook of %d centroids on %d token vectors of %d points in %.1f s",
            size, len(sample), len(rows), time.perf_counter() - started,
        )  # fmt: skip
        return codebook


CANDIDATES_AT_10K = 400  # reranked at 10,000 passages ...
CANDIDATES_GROWTH = 0.25  # ... times (passages / 10,000) ** this: 1.19x per doubling


def candidates_for(points: int) -> int:
    """The candidates to rerank in a collection of `points` passages: on real passages recall@10 at a
    fixed number of candidates falls by about 0.01 each time the collection doubles, and this growth
    (fitted on 10k, 25k and 51k real passages: README, "First stage") keeps it at its 10k level."""
    return max(100, min(10_000, round(CANDIDATES_AT_10K * (max(points, 1) / 10_000) ** CANDIDATES_GROWTH)))


def make_first_stage(token_dim: int, settings: SearchSettings) -> FirstStage | None:
    """The first stage the settings ask for, or None when it is off."""
    if settings.first_stage == "off":
        return None
    if settings.first_stage_encoding == "muvera":
        return Muvera(token_dim)
    if settings.first_stage_encoding == "centroids":
        return Centroids(settings.first_stage_probe, settings.first_stage_centroids)
    return MeanPooling(token_dim)

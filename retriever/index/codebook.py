"""The centroid codebook of a collection: k-means centroids of its token vectors, and the sparse
vectors they give passages and queries (PLAID's candidate generation, expressed as Qdrant sparse
vectors so that the engine finds the candidates itself, with filters, in the query that reranks them).

A passage's sparse vector holds, with weight 1, the centroid nearest to each of its tokens. A query's
holds, for each query token, its `probe` nearest centroids weighted by their similarity to it (summed
where tokens share one). The dot product of the two approximates MaxSim: each query token scores the
centroids it is near that the passage has. The centroids come from spherical k-means over a seeded
sample of the collection's token vectors, so a codebook is the same for the same sample and seed.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

ASSIGN_ROWS = 16_384  # token vectors compared with every centroid at once (bounds the memory of a step)
SAMPLE_PER_CENTROID = 16  # the training sample: this many token vectors per centroid, at most
KMEANS_ITERATIONS = 12
SMALL_K = 8  # up to this many nearest centroids are found by rounds of argmax (see _top)


@dataclass(frozen=True, eq=False)
class Sparse:
    """A sparse vector: distinct centroid ids and their weights."""

    indices: np.ndarray  # int64, distinct, ascending
    values: np.ndarray  # float32


def codebook_size(tokens: int) -> int:
    """The number of centroids for a collection of `tokens` token vectors: 16,384, or fewer (a power
    of two, at least 256) where there are not SAMPLE_PER_CENTROID tokens for each. Measured on real
    passages (README, "First stage"): at 51k passages 16,384 centroids found 0.983 of the exact top-10
    with 700 candidates where 8,192 found 0.970, and the codebook is trained once, when a collection
    reaches the threshold, for all it grows to after; training 16,384 takes about 2 minutes on 2 cores."""
    fitting = 2 ** math.floor(math.log2(max(tokens // SAMPLE_PER_CENTROID, 1)))
    return int(min(16_384, max(256, fitting)))


def _nearest(rows: np.ndarray, columns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The similarities and ids of each row's k nearest centroids (unordered), in chunks of rows.
    `columns`: the centroids transposed, contiguous (dim x size): a query's 32 rows took 2.5 ms against
    them on one thread, 3.2 ms against the transposed view of the centroids (AMD EPYC, AVX-512)."""
    sims, ids = [], []
    for start in range(0, rows.shape[0], ASSIGN_ROWS):
        scores = rows[start : start + ASSIGN_ROWS] @ columns
        top = _top(scores, k)
        sims.append(np.take_along_axis(scores, top, axis=1))
        ids.append(top)
    return np.concatenate(sims), np.concatenate(ids)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """The column ids of each row's k largest scores (unordered). A few (a query's probes): k rounds of
    argmax, 0.2 ms for 32 x 16,384 where argpartition took 5 ms; more: argpartition."""
    if k > SMALL_K:
        return np.argpartition(-scores, k - 1, axis=1)[:, :k]
    work = scores.copy() if k > 1 else scores
    rows = np.arange(len(work))
    top = np.empty((len(work), k), dtype=np.intp)
    for j in range(k):
        top[:, j] = work.argmax(axis=1)
        if j < k - 1:
            work[rows, top[:, j]] = -np.inf
    return top


@dataclass(frozen=True, eq=False)
class Codebook:
    """Unit centroids (size x dim, float32) and what they were trained on."""

    centroids: np.ndarray
    trained_on: int = 0  # token vectors in the training sample
    seed: int = 0
    complete: bool = False  # every point of its version has its centroids (searches may use it)

    @property
    def size(self) -> int:
        return int(self.centroids.shape[0])

    @functools.cached_property
    def columns(self) -> np.ndarray:
        """The centroids transposed, contiguous: what tokens are compared with (`_nearest`)."""
        return np.ascontiguousarray(self.centroids.T)

    @property
    def id(self) -> str:
        """A fingerprint of the centroids: the version records it, and points written with it."""
        return hashlib.sha256(np.ascontiguousarray(self.centroids, np.float32).tobytes()).hexdigest()[:16]

    def record(self) -> dict[str, int | str | bool]:
        """What a version records about its codebook."""
        fields = {"size": self.size, "trained_on": self.trained_on, "seed": self.seed, "complete": self.complete}
        return {"id": self.id, **fields}

    @classmethod
    def from_record(cls, centroids: np.ndarray, record: dict[str, Any]) -> Codebook:
        """A saved codebook back; refused when the centroids are not the ones recorded."""
        codebook = cls(
            np.ascontiguousarray(centroids, np.float32), int(record.get("trained_on", 0)), int(record.get("seed", 0)),
            bool(record.get("complete", False)),
        )  # fmt: skip
        if codebook.id != record.get("id"):
            raise ValueError(f"the saved centroids have fingerprint {codebook.id}, the record says {record.get('id')}")
        return codebook

    def document(self, vectors: np.ndarray) -> Sparse:
        """A passage's sparse vector: the centroid of each token, weight 1."""
        _, ids = _nearest(np.asarray(vectors, np.float32), self.columns, 1)
        unique = np.unique(ids)
        return Sparse(unique.astype(np.int64), np.ones(len(unique), np.float32))

    def query(self, vectors: np.ndarray, probe: int) -> Sparse:
        """A query's sparse vector: each token's `probe` nearest centroids, weighted by similarity.

        Scored on one BLAS thread: a query's product with the centroids is small (on an Intel Xeon,
        2.5 ms against 1.3 ms on two threads, before `columns`), whereas the BLAS threads left spinning
        after it were measured to double the next query's encoding (ONNX Runtime, 23 -> 45 ms) on a
        2-core CPU."""
        with _blas_controller().limit(limits=1, user_api="blas"):
            sims, ids = _nearest(np.asarray(vectors, np.float32), self.columns, min(probe, self.size))
        unique, where = np.unique(ids.ravel(), return_inverse=True)
        weights = np.zeros(len(unique), np.float32)
        np.add.at(weights, where, np.maximum(sims.ravel(), 0.0))
        keep = weights > 0  # Qdrant scores nothing for a zero weight: leave those out
        return Sparse(unique[keep].astype(np.int64), weights[keep])


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def train(vectors: np.ndarray, size: int, seed: int = 0, iterations: int = KMEANS_ITERATIONS) -> Codebook:
    """Spherical k-means over (a seeded sample of) unit token vectors: `size` centroids, at most
    SAMPLE_PER_CENTROID token vectors per centroid in the sample. Empty clusters restart at a sampled
    token vector, so every centroid is used."""
    rng = np.random.default_rng(seed)
    vectors = np.asarray(vectors, np.float32)
    n = min(len(vectors), size * SAMPLE_PER_CENTROID)
    if n < size:
        raise ValueError(f"a codebook of {size} centroids needs at least {size} token vectors, got {len(vectors)}")
    sample = vectors[np.sort(rng.choice(len(vectors), n, replace=False))]
    centroids = sample[rng.choice(n, size, replace=False)].copy()
    for _ in range(iterations):
        labels = _nearest(sample, np.ascontiguousarray(centroids.T), 1)[1][:, 0]
        counts = np.bincount(labels, minlength=size)
        used = counts > 0
        sums = np.zeros_like(centroids)
        sums[used] = np.add.reduceat(sample[np.argsort(labels, kind="stable")], (np.cumsum(counts) - counts)[used])
        empty = np.flatnonzero(~used)
        sums[empty] = sample[rng.choice(n, len(empty), replace=False)]
        centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return Codebook(centroids.astype(np.float32), trained_on=n, seed=seed)

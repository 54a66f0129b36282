"""Token pooling: a matrix of token vectors clustered (Ward's hierarchical clustering) into about
1/factor as many groups.

At index time each group can be stored as the mean of its tokens, so the index holds factor-times fewer
vectors (Clavié et al., 2024, "Reducing the Footprint of Multi-Vector Retrieval with Minimal
Performance Impact via Token Pooling"; README, "First stage" has what it costs here). A query is
never pooled for its exact score. A search's shortlist (`stores/base.py`, `Shortlist`) scores the
candidates by the whole query against their passages pooled at index time into unit means
(`pool_passage`), or, in a collection built without them, by the query pooled into the sums of its
groups against the tokens. Deterministic: the same vectors give
the same groups.
"""

from __future__ import annotations

import math

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row (last axis) scaled to length 1, as float32."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def ready() -> None:
    """Import what pooling needs (scipy's clustering, about 0.5 s) now rather than at the first
    pooling, e.g. a process's first search through the pooled query's shortlist (a process's first
    write of pooled passages imports it then)."""
    import scipy.cluster.hierarchy  # noqa: F401


def _groups(vectors: np.ndarray, factor: int) -> list[np.ndarray]:
    """The token vectors of each of ceil(n / factor) Ward clusters, in order of their labels."""
    from scipy.cluster.hierarchy import fcluster, linkage  # at the first pooling (or `ready`): others skip it

    groups = max(1, math.ceil(len(vectors) / factor))
    labels = fcluster(linkage(vectors.astype(np.float64), method="ward"), t=groups, criterion="maxclust")
    return [vectors[labels == label] for label in np.unique(labels)]


def pool_tokens(vectors: np.ndarray, factor: int) -> np.ndarray:
    """ceil(n / factor) vectors from n: the means of Ward clusters (factor 1, or a passage of at most
    two tokens: the vectors unchanged)."""
    if factor <= 1 or len(vectors) <= 2:
        return vectors
    return np.stack([group.mean(axis=0) for group in _groups(vectors, factor)]).astype(np.float32)


def pool_query(vectors: np.ndarray, factor: int) -> np.ndarray:
    """ceil(n / factor) vectors from a query's n: the sums of Ward clusters. Under a dot product its
    MaxSim with any passage is at most the exact one (each group's best passage token scores the sum
    of its tokens' scores there, never more than the sum of each token's best), equal where a
    group's tokens share their best token; factor 1 (or at most two tokens): the vectors unchanged."""
    if factor <= 1 or len(vectors) <= 2:
        return vectors
    return np.stack([group.sum(axis=0) for group in _groups(vectors, factor)]).astype(np.float32)


def pool_passage(vectors: np.ndarray, factor: int) -> np.ndarray:
    """A passage's pooled copy for the shortlist: the means of `pool_tokens`, scaled to unit length
    (as the token vectors are, so that each scores a query token by its direction alone: measured on
    51k real passages pooled by 8, 1,000 candidates, 150 kept: unit means kept 0.968 of the exact
    top-10, the raw means 0.930)."""
    return unit_rows(pool_tokens(vectors, factor))

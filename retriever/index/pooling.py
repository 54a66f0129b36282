"""Token pooling at index time: a passage's token vectors clustered (Ward's hierarchical clustering)
into about 1/factor as many groups, each stored as the mean of its tokens, so the index holds
factor-times fewer vectors (Clavié et al., 2024, "Reducing the Footprint of Multi-Vector Retrieval
with Minimal Performance Impact via Token Pooling"; README, "First stage" has what it costs here).
Queries are never pooled. Deterministic: the same vectors give the same pooled vectors.
"""

from __future__ import annotations

import math

import numpy as np


def pool_tokens(vectors: np.ndarray, factor: int) -> np.ndarray:
    """ceil(n / factor) vectors from n: the means of Ward clusters (factor 1, or a passage of at most
    two tokens: the vectors unchanged)."""
    n = len(vectors)
    if factor <= 1 or n <= 2:
        return vectors
    from scipy.cluster.hierarchy import fcluster, linkage  # only where pooling is on

    groups = max(1, math.ceil(n / factor))
    labels = fcluster(linkage(vectors.astype(np.float64), method="ward"), t=groups, criterion="maxclust")
    pooled = np.stack([vectors[labels == label].mean(axis=0) for label in np.unique(labels)])
    return pooled.astype(np.float32)

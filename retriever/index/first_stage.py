"""The optional first stage: one vector per passage, searched with HNSW, whose top candidates are then
reranked with exact MaxSim (a Qdrant `prefetch`).

Two encodings were measured (README, "First stage"): the normalised mean of the token vectors (128
dims) and MUVERA fixed-dimensional encodings (fastembed's implementation, 640 to 40,960 dims). On real
token vectors mean pooling kept as much of the exact top-10 as MUVERA up to 20,480 dims at a fraction
of the size, so it is the default; MUVERA stays available (`pip install xmsearch[muvera]`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from xmsearch.retriever.errors import PermanentError
from xmsearch.retriever.settings import SearchSettings


class FirstStage(Protocol):
    """Encodes token matrices into one vector each; documents and queries may differ."""

    name: str
    dim: int

    def documents(self, vectors: Sequence[np.ndarray]) -> np.ndarray: ...

    def queries(self, vectors: Sequence[np.ndarray]) -> np.ndarray: ...


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row (last axis) scaled to length 1, as float32."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class MeanPooling:
    """The normalised mean of the token vectors, for documents and queries alike."""

    name = "mean"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def documents(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        return unit_rows(np.stack([v.mean(axis=0) for v in vectors]))

    def queries(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        return self.documents(vectors)


class Muvera:
    """MUVERA fixed-dimensional encodings through fastembed (an optional dependency)."""

    name = "muvera"

    def __init__(self, dim: int, k_sim: int = 5, dim_proj: int = 16, r_reps: int = 20, seed: int = 42) -> None:
        try:
            from fastembed.postprocess import Muvera as FastembedMuvera
        except ImportError as exc:
            raise PermanentError("the MUVERA first stage needs fastembed: pip install 'xmsearch[muvera]'") from exc
        self._muvera = FastembedMuvera(dim=dim, k_sim=k_sim, dim_proj=dim_proj, r_reps=r_reps, random_seed=seed)
        self.dim = int(self._muvera.embedding_size)

    def documents(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self._muvera.process_document(v) for v in vectors]).astype(np.float32)

    def queries(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self._muvera.process_query(v) for v in vectors]).astype(np.float32)


def make_first_stage(token_dim: int, settings: SearchSettings) -> FirstStage | None:
    """The first stage the settings ask for, or None when it is off."""
    if settings.first_stage == "off":
        return None
    if settings.first_stage_encoding == "muvera":
        return Muvera(token_dim)
    return MeanPooling(token_dim)

"""Token pooling at index time: fewer vectors, deterministic, scores within the bounds a cluster mean
allows, and applied by the write path as a version records it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmsearch.ingest.documents import Document
from xmsearch.ingest.pipeline import Indexer
from xmsearch.retriever import Encoder
from xmsearch.retriever.index.pooling import pool_passage, pool_query, pool_tokens
from xmsearch.settings import Settings


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _maxsim(q: np.ndarray, d: np.ndarray) -> float:
    return float((q @ d.T).max(axis=1).sum())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), factor=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_pooling_keeps_one_vector_per_factor_tokens_and_bounds_every_score(n: int, factor: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    doc, query = _unit(rng.normal(size=(n, 16))), _unit(rng.normal(size=(8, 16)))
    pooled = pool_tokens(doc, factor)
    assert len(pooled) == (n if factor == 1 or n <= 2 else math.ceil(n / factor))
    np.testing.assert_array_equal(pooled, pool_tokens(doc, factor))  # deterministic
    # a cluster mean scores the mean of its tokens' scores: never above the best of them, and at most
    # (the farthest any token lies from the mean kept for it) below, per query token
    exact, approx = _maxsim(query, doc), _maxsim(query, pooled)
    radius = max(float(np.min(np.linalg.norm(pooled - t, axis=1))) for t in doc)
    assert approx <= exact + 1e-5
    assert approx >= exact - len(query) * radius - 1e-5


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), factor=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_a_pooled_passage_is_its_cluster_means_at_unit_length(n: int, factor: int, seed: int) -> None:
    """What a shortlist scores: the same clusters as `pool_tokens`, each mean scaled to unit length
    (a query token scores its direction), deterministic."""
    doc = _unit(np.random.default_rng(seed).normal(size=(n, 16)))
    pooled = pool_passage(doc, factor)
    np.testing.assert_allclose(pooled, _unit(pool_tokens(doc, factor)), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(pooled, pool_passage(doc, factor))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 32), factor=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_a_pooled_query_scores_at_most_the_exact_maxsim(n: int, factor: int, seed: int) -> None:
    """The sums of a query's groups: a lower bound of every passage's exact score, deterministic; a
    query whose tokens repeat (as ColBERT's [MASK] tokens nearly do) pools without loss."""
    rng = np.random.default_rng(seed)
    query, doc = _unit(rng.normal(size=(n, 16))), _unit(rng.normal(size=(40, 16)))
    pooled = pool_query(query, factor)
    assert len(pooled) == (n if factor == 1 or n <= 2 else math.ceil(n / factor))
    np.testing.assert_array_equal(pooled, pool_query(query, factor))
    assert _maxsim(pooled, doc) <= _maxsim(query, doc) + 1e-4
    repeated = np.repeat(query[:4], 8, axis=0)  # 4 distinct tokens, 8 times each
    assert np.isclose(_maxsim(pool_query(repeated, 8), doc), _maxsim(repeated, doc), atol=1e-4)


def test_factor_one_and_tiny_passages_are_untouched() -> None:
    doc = _unit(np.random.default_rng(0).normal(size=(2, 8)))
    assert pool_tokens(doc, 4) is doc and pool_tokens(doc, 1) is doc


def test_the_write_path_pools_and_the_version_records_it(tmp_path: Path, encoder: Encoder) -> None:
    docs = [
        Document(id=f"d{i}", text=" ".join(["river mill bridge passport travel"] * 4), language="en") for i in range(3)
    ]
    counts = {}
    for factor in (1, 2):
        settings = Settings(device="cpu", data_dir=tmp_path / str(factor), collection="docs", token_pool_factor=factor)
        indexer = Indexer.from_settings(settings, encoder)
        indexer.ingest(docs)
        stored = indexer.store.fetch("d0")
        counts[factor] = len(stored[0].vectors)
        assert indexer.store.spec.record()["token_pool_factor"] == factor
        indexer.close()
    assert counts[2] == math.ceil(counts[1] / 2)


@pytest.mark.parametrize("factor", [0, 17])
def test_the_factor_is_bounded(factor: int) -> None:
    with pytest.raises(ValueError, match="token_pool_factor"):
        Settings(token_pool_factor=factor)

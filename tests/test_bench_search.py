"""The search benchmark's measuring code on small synthetic data (the full run needs xmsearch[bench])."""

from __future__ import annotations

import numpy as np
import pytest

from xmsearch.bench.search import DIM, Resampled, measure, python_doc_passages
from xmsearch.retriever.index.first_stage import MeanPooling


def _docs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = rng.normal(size=(int(rng.integers(5, 30)), DIM)).astype(np.float32)
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_measure_reports_latency_recall_and_size(backend: str) -> None:
    docs = _docs(60)
    sampler = Resampled(docs)
    rng = np.random.default_rng(1)
    queries = [sampler.query_from(docs[i], rng) for i in range(5)]
    rows = measure(backend, "synthetic", docs, len(docs), queries, [60], MeanPooling(DIM))
    exact, first = rows
    assert exact.mode == "exact" and exact.p50_ms > 0 and exact.p95_ms >= exact.p50_ms
    assert exact.bytes_per_token is not None and exact.bytes_per_token > 0
    assert first.mode == "mean+60" and first.recall_at_10 == 1.0  # every point is a candidate: exact


def test_resampled_documents_are_unit_and_reproducible() -> None:
    docs = _docs(10)
    a = list(Resampled(docs, seed=3).documents(5))
    b = list(Resampled(docs, seed=3).documents(5))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_python_doc_passages() -> None:
    passages = python_doc_passages(50, words=40)
    assert len(passages) == 50 and len(set(passages)) == 50
    assert all(10 <= len(p.split()) <= 40 for p in passages)

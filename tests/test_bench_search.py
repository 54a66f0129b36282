"""The search benchmark's measuring code on small synthetic vectors (the full run needs xmsearch[bench])."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from xmsearch.bench.search import (
    DIM,
    SearchFigures,
    WholeSearch,
    encoded,
    extrapolate,
    measure_muvera,
    measure_size,
    measure_variants,
    python_doc_passages,
)
from xmsearch.retriever.index.pooling import pool_passage
from xmsearch.retriever.index.schema import POOLED_FACTOR
from xmsearch.retriever.index.stores.base import Shortlist


def _docs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = rng.normal(size=(int(rng.integers(5, 30)), DIM)).astype(np.float32)
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out


def _shortlist_recall(query: np.ndarray, docs: list[np.ndarray], size: int) -> float:
    """The share of the exact top-10 that the exact top-10 of the `size` passages ranked first by
    the query against their pooled passages holds."""

    def maxsim(doc: np.ndarray) -> float:
        return float((query @ doc.T).max(axis=1).sum())

    exact = sorted(range(len(docs)), key=lambda i: -maxsim(docs[i]))[:10]
    kept = sorted(range(len(docs)), key=lambda i: -maxsim(pool_passage(docs[i], POOLED_FACTOR)))[:size]
    return len(set(sorted(kept, key=lambda i: -maxsim(docs[i]))[:10]) & set(exact)) / 10


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_every_method_with_every_point_a_candidate_is_exact(backend: str) -> None:
    docs = _docs(60)
    queries = [d[:4] for d in _docs(5, seed=1)]
    rows, exact, codebook = measure_size(
        docs,
        queries,
        [60],
        [4],
        backend=backend,
        centroids=16,
        shortlists=[Shortlist(20, 1, passages=False), Shortlist(30, 4), Shortlist(60, 2)],  # type: ignore[arg-type]
    )
    # a shortlist of the unpooled query keeps the exact top-20; one as large as the candidates is not measured
    through, passages = ", shortlist 20 (query pooled by 1)", ", shortlist 30 (pooled passages)"
    assert [(r.method, r.candidates) for r in rows] == [
        ("exact", None), ("mean", 60), (f"mean{through}", 60), (f"mean{passages}", 60), ("centroids/4", 60),
        (f"centroids/4{through}", 60), (f"centroids/4{passages}", 60),
    ]  # fmt: skip
    assert all(r.recall_at_10 == 1.0 for r in rows if not r.method.endswith(passages))
    # every passage a candidate: the pooled passages' shortlist keeps what a numpy MaxSim of the
    # query against each passage pooled by POOLED_FACTOR keeps
    expected = statistics.mean(_shortlist_recall(q, docs, 30) for q in queries)
    assert expected < 1 and all(r.recall_at_10 == pytest.approx(expected) for r in rows if r.method.endswith(passages))
    assert rows[0].p50_ms is not None and rows[0].p95_ms is not None and rows[0].p95_ms >= rows[0].p50_ms
    assert rows[0].disk_bytes_per_token is not None and rows[0].disk_bytes_per_token > 0
    assert len(exact) == 5 and all(len(ids) == 10 for ids in exact)
    assert codebook.size == 16 and codebook.complete
    again, _, same = measure_size(docs[:30], queries, [30], [4], codebook, backend=backend)  # type: ignore[arg-type]
    assert same is codebook and all(r.recall_at_10 == 1.0 for r in again)


def test_whole_searches_time_encoding_and_search_per_runtime_and_candidates() -> None:
    docs = _docs(40)
    calls: list[str] = []

    def encoder(label: str) -> Callable[[str], np.ndarray]:
        def encode(text: str) -> np.ndarray:
            calls.append(label)
            return _docs(1, seed=len(text))[0]

        return encode

    whole = WholeSearch({"a": encoder("a"), "b": encoder("b")}, ["one query", "another", "a third one", "four"])
    queries = [d[:4] for d in _docs(3, seed=1)]
    rows, _, _ = measure_size(docs, queries, [10, 40], [4], centroids=8, whole=whole, shortlists=[Shortlist(20, 2)])
    timed = [r for r in rows if r.method.startswith("whole search")]
    through = ", shortlist 20 (pooled passages)"
    assert [(r.method, r.candidates) for r in timed] == [
        ("whole search, a", 10), ("whole search, a", 40), (f"whole search, a{through}", 40),
        ("whole search, b", 10), ("whole search, b", 40), (f"whole search, b{through}", 40),
    ]  # fmt: skip
    assert all(r.size == 40 and r.recall_at_10 is None and r.p50_ms and r.p50_ms > 0 for r in timed)
    assert all("latency only; encode p50" in r.note for r in timed)
    assert calls.count("a") == calls.count("b") == 3 + 3 * 4  # warm-up, then every text per row
    assert all(
        not r.method.startswith("whole") for r in extrapolate(rows + [dataclasses.replace(r, size=80) for r in rows])
    )


def test_muvera_with_every_point_a_candidate_is_exact() -> None:
    pytest.importorskip("fastembed", reason="MUVERA needs the extra muvera (a test dependency)")
    docs = _docs(40)
    queries = [d[:4] for d in _docs(3, seed=1)]
    _, exact, _ = measure_size(docs, queries, [40], [4], centroids=8)
    rows = measure_muvera(docs, queries, exact, [5, 40])
    assert [(r.method, r.candidates) for r in rows] == [("muvera", 5), ("muvera", 40)]
    assert rows[1].recall_at_10 == 1.0 and rows[0].recall_at_10 is not None and rows[0].recall_at_10 < 1.0
    assert "10,240 dims" in rows[0].note


def test_extrapolation_fits_the_loss_per_doubling() -> None:
    rows = [
        SearchFigures(10_000, "exact", None, 1.0, 100.0, 110.0),
        SearchFigures(20_000, "exact", None, 1.0, 200.0, 220.0),
        SearchFigures(10_000, "mean", 400, 0.95, 5.0, 6.0),
        SearchFigures(20_000, "mean", 400, 0.94, 5.0, 6.0),
    ]
    exact, mean = extrapolate(rows, to=80_000)
    assert exact.p50_ms == pytest.approx(800.0) and "extrapolated" in exact.note
    assert mean.recall_at_10 == pytest.approx(0.92) and "0.0100 recall lost per doubling" in mean.note


def test_encoded_vectors_are_cached(tmp_path: Path) -> None:
    calls = []

    def encode(texts: list[str]) -> list[np.ndarray]:
        calls.append(len(texts))
        return [np.full((len(t), DIM), 1 / np.sqrt(DIM), np.float32) for t in texts]

    first = encoded(["ab", "cde"], encode, tmp_path)
    again = encoded(["ab", "cde"], encode, tmp_path)
    assert calls == [2] and [v.shape for v in again] == [(2, DIM), (3, DIM)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_python_doc_passages() -> None:
    passages = python_doc_passages(50, words=40)
    assert len(passages) == 50 and len(set(passages)) == 50
    assert all(10 <= len(p.split()) <= 40 for p in passages)


def test_smaller_indexes_report_ram_and_disk_per_token() -> None:
    docs = _docs(2500)  # enough tokens (~40k) for Edge to build the quantized copies
    queries = [d[:4] for d in _docs(3, seed=2)]
    _, exact, _ = measure_size(docs, queries, [40], [4], centroids=16)
    rows = {r.method: r for r in measure_variants(docs, queries, exact)}
    assert set(rows) == {"exact int8", "exact binary", "exact pooled/2", "exact int8 pooled/2"}
    int8, binary = rows["exact int8"], rows["exact binary"]
    assert int8.ram_bytes_per_token and binary.ram_bytes_per_token and int8.disk_bytes_per_token
    assert binary.ram_bytes_per_token < int8.ram_bytes_per_token < int8.disk_bytes_per_token
    assert all(r.recall_at_10 is not None and 0 <= r.recall_at_10 <= 1 for r in rows.values())

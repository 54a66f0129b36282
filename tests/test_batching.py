"""Query batching: concurrent callers share forward passes, each gets exactly its own vectors, a
failure reaches every caller of its pass and no one else, and searches give the same hits batched or not."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from xmsearch.retriever.model.batching import QueryBatcher
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings


class SlowEncoder:
    """Blocks its first pass until every caller has queued, so that the grouping is deterministic."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[list[str]] = []

    def __call__(self, queries: list[tuple[str, str]]) -> list[np.ndarray]:
        texts = [text for text, _ in queries]
        if not self.calls:
            self.release.wait(10)
        self.calls.append(list(texts))
        if "boom" in texts:
            raise RuntimeError("the encoder crashed")
        return [np.full((2, 2), float(t.removeprefix("q")), dtype=np.float32) for t in texts]


def _until(batcher: QueryBatcher, leading: bool, pending: int) -> None:
    while True:
        with batcher._lock:
            if batcher._busy == leading and len(batcher._pending) == pending:
                return


def test_waiting_callers_share_a_pass_and_get_their_own_vectors() -> None:
    fake = SlowEncoder()
    batcher: QueryBatcher[tuple[str, str]] = QueryBatcher(fake, max_texts=3)
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(batcher.encode, [("q0", "en_XX")])
        _until(batcher, leading=True, pending=0)  # the first caller leads and is encoding
        others = []
        for i, texts in enumerate((["q1", "q11"], ["q2"], ["q3"]), start=1):  # queued in this order
            others.append(pool.submit(batcher.encode, [(t, "en_XX") for t in texts]))
            _until(batcher, leading=True, pending=i)
        fake.release.set()
        results = [first.result(), *(f.result() for f in others)]
    assert [[float(v[0, 0]) for v in r] for r in results] == [[0.0], [1.0, 11.0], [2.0], [3.0]]
    assert fake.calls[0] == ["q0"]  # an idle encoder takes the first query at once
    assert fake.calls[1:] == [["q1", "q11", "q2"], ["q3"]]  # the rest grouped in order, within max_texts
    assert batcher.passes == 3


def test_a_failure_reaches_the_callers_of_its_pass_only() -> None:
    fake = SlowEncoder()
    batcher: QueryBatcher[tuple[str, str]] = QueryBatcher(fake, max_texts=1)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher.encode, [("q0", "en_XX")])
        _until(batcher, leading=True, pending=0)
        bad = pool.submit(batcher.encode, [("boom", "en_XX")])
        _until(batcher, leading=True, pending=1)
        good = pool.submit(batcher.encode, [("q2", "en_XX")])
        _until(batcher, leading=True, pending=2)
        fake.release.set()
        assert float(first.result()[0][0, 0]) == 0.0
        with pytest.raises(RuntimeError, match="crashed"):
            bad.result()
        assert float(good.result()[0][0, 0]) == 2.0


def test_concurrent_searches_equal_sequential_ones(tmp_path: Path, encoder: Encoder, tiny_checkpoint: Path) -> None:
    from xmsearch.ingest.pipeline import Indexer

    settings = Settings(model=str(tiny_checkpoint), device="cpu", store="local", data_dir=tmp_path)
    indexer = Indexer.from_settings(settings, encoder)
    docs = [{"id": f"d{i}", "text": f"river {i} flows past mill {i * 7}", "language": "en"} for i in range(20)]
    from xmsearch.ingest.documents import Document

    indexer.ingest([Document(**d) for d in docs])
    indexer.close()
    queries = [f"mill {i * 7}" for i in range(16)]
    plain = Retriever.from_settings(settings.model_copy(update={"query_batching": False}), encoder)
    expected = [[(h.document_id, round(h.score, 4)) for h in plain.search(q, 3, "en").hits] for q in queries]
    plain.close()
    batched = Retriever.from_settings(settings, encoder)
    with ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(lambda q: [(h.document_id, round(h.score, 4)) for h in batched.search(q, 3, "en").hits], queries)
        )
    assert got == expected
    assert batched.batcher is not None and batched.batcher.passes <= len(queries)
    batched.close()

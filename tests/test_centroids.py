"""The centroid first stage: a deterministic codebook, sparse vectors inside Qdrant (Edge and
qdrant-client), trained once the collection reaches the threshold and backfilled onto every point,
recorded with its version; with every point a candidate it ranks as exact MaxSim, filters and
tenants included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import as_stored
from xmsearch.ingest.documents import Document
from xmsearch.ingest.pipeline import Indexer
from xmsearch.retriever import Encoder
from xmsearch.retriever.index.codebook import Codebook, codebook_size, train
from xmsearch.retriever.index.filters import Condition, parse_filter
from xmsearch.retriever.index.first_stage import Centroids, MeanPooling, make_first_stage
from xmsearch.retriever.index.schema import CENTROIDS, IndexSpec, Page, Point
from xmsearch.retriever.index.stores.base import BACKFILL_STALE_S, Store
from xmsearch.retriever.index.stores.edge import EdgeStore
from xmsearch.retriever.index.stores.qdrant import QdrantStore
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings

WORDS = "river mill bridge passport travel search engine token query document children summer evening".split()  # noqa: SIM905


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_the_codebook_and_its_vectors_are_deterministic_for_a_seed() -> None:
    vectors = _unit(np.random.default_rng(3).normal(size=(3000, 16)))
    a, b = train(vectors, 64, seed=7), train(vectors, 64, seed=7)
    assert a.id == b.id and np.array_equal(a.centroids, b.centroids)
    assert train(vectors, 64, seed=8).id != a.id
    assert a.size == 64 and np.allclose(np.linalg.norm(a.centroids, axis=1), 1, atol=1e-5)
    doc, query = a.document(vectors[:40]), a.query(vectors[:5], probe=4)
    assert np.array_equal(doc.indices, b.document(vectors[:40]).indices) and set(doc.values) == {1.0}
    assert np.all(np.diff(query.indices) > 0) and 1 <= len(query.indices) <= 20
    # each query token's best centroid is the nearest: the weight of a centroid sums its tokens' similarities
    sims = vectors[:5] @ a.centroids.T
    for row in sims:
        assert row.argmax() in query.indices
    assert np.isclose(query.values.sum(), np.sort(np.maximum(sims, 0), axis=1)[:, -4:].sum(), atol=1e-4)
    assert Codebook.from_record(a.centroids, a.record()).id == a.id
    with pytest.raises(ValueError, match="fingerprint"):
        Codebook.from_record(a.centroids[::-1], a.record())


def test_codebook_size_follows_the_collection() -> None:
    assert codebook_size(10) == 256
    assert codebook_size(16 * 5000) == 4096  # 16 sample tokens per centroid
    assert codebook_size(920_000) == 16384  # ~10k passages: the threshold
    assert codebook_size(10**12) == 16384


def test_candidates_grow_with_the_collection_as_measured() -> None:
    centroids, mean = Centroids(4), MeanPooling(16)
    assert [centroids.candidates(n) for n in (1_000, 10_000, 50_000)] == [600, 600, 600]
    assert centroids.candidates(100_000) == 643 and centroids.candidates(1_000_000) == 810
    shortlisted = Centroids(4, shortlisted=True)  # the candidates go through a shortlist: more for the same time
    assert [shortlisted.candidates(n) for n in (10_000, 50_000, 100_000)] == [800, 800, 857]
    # a shortlist of pooled passages scores each candidate for less: more of them for the same time
    assert [shortlisted.candidates(n, pooled=True) for n in (10_000, 50_000, 100_000)] == [1200, 1200, 1286]
    assert centroids.candidates(50_000, pooled=True) == 600  # every candidate reranked exactly
    for shortlist, expected in ((150, True), (0, False)):
        made = make_first_stage(16, Settings(shortlist=shortlist))
        assert isinstance(made, Centroids) and made.shortlisted is expected
    assert [mean.candidates(n) for n in (10_000, 20_000, 51_000)] == [600, 765, 1061]
    assert mean.candidates(10**12) == 10_000


def _documents(n: int, offset: int = 0) -> list[Document]:
    rng = np.random.default_rng(offset)
    return [
        Document(
            id=f"d{i}",
            text=" ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))),
            language="en",
            tenant=("acme", "globex")[i % 2],
            metadata={"n": i},
        )
        for i in range(offset, offset + n)
    ]


@pytest.fixture(params=["edge", "local"])
def centroid_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(
        device="cpu", store=request.param, data_dir=tmp_path, collection="docs", detect_language=False,
        first_stage="on", first_stage_encoding="centroids", first_stage_min_points=30, first_stage_centroids=32,
        first_stage_candidates=10_000, first_stage_probe=32,
    )  # fmt: skip


@pytest.fixture
def indexed(centroid_settings: Settings, encoder: Encoder) -> Iterator[tuple[Indexer, Retriever]]:
    indexer = Indexer.from_settings(centroid_settings, encoder)
    indexer.ingest(_documents(20))  # under the threshold: no codebook, no centroids
    store = indexer.store
    assert store.codebook() is None and store.count((Condition(CENTROIDS, no_vector=True),)) == 20
    indexer.ingest(_documents(20, offset=20))  # crosses it: trained, every point backfilled (in a thread)
    indexer.wait()
    retriever = Retriever(indexer.components)
    yield indexer, retriever
    indexer.close()


def test_crossing_the_threshold_trains_the_codebook_and_backfills_every_point(
    indexed: tuple[Indexer, Retriever],
) -> None:
    indexer, _ = indexed
    store = indexer.store
    codebook = store.codebook()
    assert codebook is not None and codebook.complete and codebook.size == 32
    assert store.count() == 40 and store.count((Condition(CENTROIDS, no_vector=True),)) == 0
    recorded = store.describe()["codebook"]  # the version records its codebook, and who backfilled it
    assert {k: recorded[k] for k in codebook.record()} == codebook.record() and recorded["owner"]
    indexer.ingest(_documents(5, offset=40))  # written with the codebook from now on
    assert store.count((Condition(CENTROIDS, no_vector=True),)) == 0
    assert isinstance(indexer.first_stage, Centroids) and indexer.first_stage.codebook is not None
    assert indexer.first_stage.codebook.id == codebook.id


def test_with_every_point_a_candidate_the_centroid_first_stage_is_exact_maxsim(
    indexed: tuple[Indexer, Retriever], encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer, retriever = indexed
    store = indexer.store
    queries = ["river bridge", "passport travel summer", "query token"]
    vectors = [encoder.encode_queries([q], "en")[0] for q in queries]
    prefetched: list[bool] = []
    search = Store.search

    def spy(self: Store, *args: Any) -> Any:
        prefetched.append(args[3] is not None)
        return search(self, *args)

    monkeypatch.setattr(Store, "search", spy)
    tolerance, _ = as_stored(store.backend, store.spec.datatype)
    for text, q in zip(queries, vectors, strict=True):
        for flt in (None, {"tenant": "acme"}, {"metadata.n": {"lt": 10}}):
            via = retriever.search(text, k=10, language="en", filter=flt, group=False).hits
            exact = search(store, [q], Page(10, group=False), parse_filter(flt))[0]
            assert [(h.tenant, h.document_id) for h in via] == [(h.tenant, h.document_id) for h in exact]
            np.testing.assert_allclose([h.score for h in via], [h.score for h in exact], atol=tolerance)
            if flt and "tenant" in flt:
                assert {h.tenant for h in via} == {"acme"}
    assert prefetched == [True] * 9  # every search went through the centroids


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_one_process_backfills_at_a_time_and_a_dead_ones_claim_is_taken_over(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = IndexSpec(model_id="tiny@abc", dim=16, centroids=True)
    store = EdgeStore(tmp_path, "docs", spec) if backend == "edge" else QdrantStore.local(tmp_path, "docs", spec)
    store.open()
    rng = np.random.default_rng(0)
    store.upsert(
        [Point(f"d{i}", 0, _unit(rng.normal(size=(6, 16))), "t", "en", f"h{i}", "tiny@abc") for i in range(30)]
    )
    codebook = store.save_codebook(train(np.concatenate(list(store.token_vectors())), 8))
    assert store.claim_backfill(codebook, "host:1")
    assert not store.claim_backfill(codebook, "host:2")  # host:1 is on it
    assert store.claim_backfill(codebook, "host:1")  # its own claim, renewed
    later = time.time() + BACKFILL_STALE_S + 1
    monkeypatch.setattr(time, "time", lambda: later)  # host:1 went silent: taken over
    assert store.claim_backfill(codebook, "host:2")
    assert store.backfill(codebook, "host:2") == 30
    assert store.codebook_record()["complete"] and not store.claim_backfill(codebook, "host:3")  # type: ignore[index]
    assert store.count((Condition(CENTROIDS, no_vector=True),)) == 0
    store.close()


def test_a_backfill_that_stopped_with_its_process_goes_on_when_a_writer_starts(
    centroid_settings: Settings, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process trained the codebook, claimed the backfill and died: the next process that owns
    writes goes on at its start (no write needed), waiting until the dead claim is stale, with the
    same codebook."""
    from xmsearch.retriever.index import first_stage
    from xmsearch.retriever.index.stores import base

    before = Indexer.from_settings(centroid_settings.model_copy(update={"first_stage_min_points": 10**9}), encoder)
    before.ingest(_documents(40))  # no codebook yet: no point has centroids
    store = before.store
    codebook = store.save_codebook(train(np.concatenate(list(store.token_vectors())), 32))
    assert store.claim_backfill(codebook, "gone:1")  # then it died
    before.close()
    monkeypatch.setattr(first_stage, "CLAIM_RECHECK_S", 0.05)
    monkeypatch.setattr(base, "BACKFILL_STALE_S", 0.5)
    after = Indexer.from_settings(centroid_settings, encoder)
    try:
        after.resume()
        after.wait()
        record = after.store.codebook_record() or {}
        assert record["complete"] and record["id"] == codebook.id and record["owner"] != "gone:1"
        assert after.store.count((Condition(CENTROIDS, no_vector=True),)) == 0
    finally:
        after.close()


def test_a_few_nearest_centroids_are_those_of_a_full_partition() -> None:
    """Rounds of argmax (a query's probes) find the same centroids as argpartition."""
    from xmsearch.retriever.index.codebook import SMALL_K, _top

    scores = np.random.default_rng(3).standard_normal((32, 2048)).astype(np.float32)
    for k in (1, 2, 4, SMALL_K, SMALL_K + 3):
        want = np.sort(np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)
        np.testing.assert_array_equal(np.sort(_top(scores, k), axis=1), want)

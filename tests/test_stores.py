"""Contract tests: every backend stores, filters, deletes and searches the same way, with exact MaxSim
scores and order equal to a brute-force numpy MaxSim (1e-3 in float16 storage, 1e-5 in float32)."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models

from tests.conftest import as_stored
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.index.filters import parse_filter
from xmsearch.retriever.index.pooling import pool_passage, pool_query
from xmsearch.retriever.index.schema import (
    FIRST_STAGE,
    POOLED,
    POOLED_FACTOR,
    TOKENS,
    IndexSpec,
    Page,
    Point,
    StoreMismatchError,
    point_id,
)
from xmsearch.retriever.index.stores import CollectionNotFoundError, Store
from xmsearch.retriever.index.stores.base import Shortlist
from xmsearch.retriever.index.stores.edge import EdgeStore
from xmsearch.retriever.index.stores.qdrant import QdrantStore

DIM = 16
BACKENDS = ["local-memory", "local-folder", "edge"]


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_store(backend: str, root: Path, spec: IndexSpec) -> Store:
    if backend == "local-memory":
        return QdrantStore.local(None, "docs", spec)
    if backend == "local-folder":
        return QdrantStore.local(root / "local", "docs", spec)
    return EdgeStore(root / "edge", "docs", spec)


def corpus(rng: np.random.Generator, n_docs: int = 30) -> list[Point]:
    points = []
    for d in range(n_docs):
        for c in range(1 + d % 3):
            points.append(
                Point(
                    document_id=f"doc-{d}",
                    chunk=c,
                    vectors=unit(rng, int(rng.integers(4, 40))),
                    text=f"text of doc {d} chunk {c}",
                    language=["en", "fr", "de"][d % 3],
                    content_hash=f"h{d}.{c}",
                    model_id="tiny@abc",
                    tenant=["acme", "globex"][d % 2],
                    metadata={"year": 2000 + d, "kind": ["news", "blog"][d % 2]},
                )
            )
    return points


def maxsim(q: np.ndarray, d: np.ndarray) -> float:
    return float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum())


@pytest.fixture(params=[(b, dt) for b in BACKENDS for dt in ("float16", "float32")], ids=lambda p: f"{p[0]}-{p[1]}")
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, list[Point]]]:
    backend, datatype = request.param
    spec = IndexSpec(model_id="tiny@abc", dim=DIM, datatype=datatype, metadata_indexes={"kind": "keyword"})
    s = make_store(backend, tmp_path, spec)
    s.open()
    points = corpus(np.random.default_rng(0))
    s.upsert(points)
    yield s, points
    s.close()


def test_scores_and_order_equal_numpy_maxsim(store: tuple[Store, list[Point]]) -> None:
    s, points = store
    tolerance, stored = as_stored(s.backend, s.spec.datatype)
    rng = np.random.default_rng(1)
    queries = [unit(rng, 32) for _ in range(5)]
    for q, hits in zip(queries, s.search(queries, Page(10, group=False)), strict=True):
        exact = sorted(((maxsim(stored(q), stored(p.vectors)), p.document_id, p.chunk) for p in points), reverse=True)[
            :10
        ]
        np.testing.assert_allclose([h.score for h in hits], [e[0] for e in exact], atol=tolerance)
        assert [(h.document_id, h.chunk) for h in hits] == [(e[1], e[2]) for e in exact]


def test_pages_of_documents_and_chunks_equal_brute_force(store: tuple[Store, list[Point]]) -> None:
    """Grouped: each document once, at its best chunk's score, with its next best chunks; offset and
    score_threshold cut the same ranking a brute-force MaxSim gives."""
    s, points = store
    tolerance, stored = as_stored(s.backend, s.spec.datatype)
    q = unit(np.random.default_rng(5), 32)
    ranked = sorted(((maxsim(stored(q), stored(p.vectors)), p) for p in points), key=lambda x: -x[0])
    documents: dict[tuple[str | None, str], list[int]] = {}
    for _, p in ranked:
        documents.setdefault((p.tenant, p.document_id), []).append(p.chunk)
    order = list(documents)
    hits = s.search([q], Page(4, offset=3, chunks_per_document=2))[0]
    assert [h.document for h in hits] == order[3:7]
    assert [[h.chunk, *(o.chunk for o in h.other_chunks)] for h in hits] == [documents[d][:2] for d in order[3:7]]
    assert s.search([q], Page(4, offset=3))[0] == [dataclasses.replace(h, other_chunks=()) for h in hits]
    chunks = s.search([q], Page(5, offset=2, group=False))[0]
    assert [(h.document_id, h.chunk) for h in chunks] == [(p.document_id, p.chunk) for _, p in ranked[2:7]]
    threshold = (ranked[5][0] + ranked[6][0]) / 2
    if abs(ranked[5][0] - ranked[6][0]) > 4 * tolerance:
        above = s.search([q], Page(50, score_threshold=threshold, group=False))[0]
        assert len(above) == 6 and min(h.score for h in above) >= threshold - tolerance


def test_a_grouped_page_reads_deeper_until_it_holds_enough_documents(tmp_path: Path) -> None:
    """One document whose many chunks all outscore the others does not crowd the page."""
    s = make_store("edge", tmp_path, IndexSpec(model_id="tiny@abc", dim=DIM))
    s.open()
    rng = np.random.default_rng(6)
    q = unit(rng, 8)
    crowd = [Point("crowd", c, q.copy(), "same", "en", f"c{c}", "tiny@abc") for c in range(60)]
    others = [Point(f"doc-{d}", 0, unit(rng, 8), "other", "en", f"d{d}", "tiny@abc") for d in range(5)]
    s.upsert(crowd + others)
    hits = s.search([q], Page(3, chunks_per_document=3))[0]
    s.close()
    assert hits[0].document_id == "crowd" and len({h.document_id for h in hits}) == 3
    assert len(hits[0].other_chunks) == 2 and all(not h.other_chunks for h in hits[1:])


def test_documents_are_listed_page_by_page_and_counted(store: tuple[Store, list[Point]]) -> None:
    s, points = store
    acme = parse_filter({"tenant": "acme"})
    expected = {p.document_id for p in points if p.tenant == "acme"}
    seen, cursor, pages = [], None, 0
    while True:
        page, total, cursor = s.documents(acme, limit=4, cursor=cursor)
        seen += [p.document_id for p in page]
        assert total == 15
        pages += 1
        if cursor is None:
            break
    assert sorted(seen) == sorted(expected) and pages == 4  # 15 documents, 4 a page, each once
    assert s.count_documents(acme) == 15 and s.count_documents() == 30
    described = s.describe()
    assert described["points"] == len(points) and described["documents"] == 30
    assert described["version"] == "docs-v1" and described["versions"] == ["docs-v1"]
    assert described["spec"]["model_id"] == "tiny@abc" and described["spec"]["datatype"] == s.spec.datatype
    assert (described["size_bytes"] is None) == (s.disk is None)


def test_filters_match_brute_force(store: tuple[Store, list[Point]]) -> None:
    s, points = store
    q = unit(np.random.default_rng(2), 32)
    cases = [
        ({"language": "fr"}, lambda p: p.language == "fr"),
        ({"tenant": ["acme"], "metadata.kind": "news"}, lambda p: p.tenant == "acme" and p.metadata["kind"] == "news"),
        ({"metadata.year": {"gte": 2010, "lt": 2020}}, lambda p: 2010 <= p.metadata["year"] < 2020),
        (
            {"document_id": ["doc-1", "doc-2"], "chunk": 0},
            lambda p: p.document_id in ("doc-1", "doc-2") and p.chunk == 0,
        ),
    ]
    for raw, keep in cases:
        conditions = parse_filter(raw)
        allowed = [p for p in points if keep(p)]
        assert s.count(conditions) == len(allowed), raw
        hits = s.search([q], Page(50, group=False), conditions=conditions)[0]
        assert {(h.document_id, h.chunk) for h in hits} == {(p.document_id, p.chunk) for p in allowed}, raw


def test_hits_carry_the_payload(store: tuple[Store, list[Point]]) -> None:
    s, _ = store
    hit = s.search(
        [unit(np.random.default_rng(3), 32)], Page(1, group=False), conditions=parse_filter({"document_id": "doc-4"})
    )[0][0]
    assert hit.document_id == "doc-4" and hit.text.startswith("text of doc 4")
    assert hit.language == "fr" and hit.tenant == "acme" and hit.metadata == {"year": 2004, "kind": "news"}


def test_writes_are_idempotent_and_searchable_at_once(store: tuple[Store, list[Point]]) -> None:
    s, points = store
    before = s.count()
    s.upsert(points[:5])  # same ids: overwritten, not added
    assert s.count() == before
    new = Point("fresh", 0, unit(np.random.default_rng(4), 5), "fresh text", "en", "h", "tiny@abc")
    s.upsert([new])
    assert s.count() == before + 1
    top = s.search([new.vectors], Page(1, group=False))[0][0]
    assert top.document_id == "fresh"


def test_fetch_and_delete_a_document(store: tuple[Store, list[Point]]) -> None:
    s, points = store
    chunks = s.fetch("doc-5", "globex")
    want = [p for p in points if p.document_id == "doc-5"]
    assert [c.chunk for c in chunks] == [0, 1, 2] == [p.chunk for p in want]
    np.testing.assert_allclose(chunks[1].vectors, want[1].vectors, atol=1e-3)
    assert chunks[0].content_hash == "h5.0" and chunks[0].metadata == {"year": 2005, "kind": "blog"}
    before = s.count()
    s.delete_documents(["doc-5", "no-such-doc"], "globex")
    assert s.count() == before - 3 and s.fetch("doc-5", "globex") == []


def test_tenants_own_their_document_ids(store: tuple[Store, list[Point]]) -> None:
    s, _ = store
    vectors = unit(np.random.default_rng(5), 4)
    owners = [None, "acme", "globex", "4:acme"]  # "4:acme" must not collide with acme's ids either
    s.upsert([Point("shared", 0, vectors, f"of {t}", "en", f"h-{t}", "tiny@abc", tenant=t) for t in owners])
    assert [s.fetch("shared", t)[0].text for t in owners] == [f"of {t}" for t in owners]
    assert s.chunk_hashes(["shared"], "acme") == {"shared": {0: "h-acme"}}
    assert s.count(parse_filter({"document_id": "shared", "tenant": None})) == 1
    s.delete_documents(["shared"], "acme")
    s.delete_chunks("shared", [0], None)
    assert [len(s.fetch("shared", t)) for t in owners] == [0, 0, 1, 1]


def test_wrong_vector_sizes_are_refused_and_nothing_is_written(store: tuple[Store, list[Point]]) -> None:
    s, _ = store
    before = s.count()
    good = Point("ok", 0, unit(np.random.default_rng(5), 3), "t", "en", "h", "tiny@abc")
    bad = Point("bad", 0, unit(np.random.default_rng(5), 3, dim=DIM + 1), "t", "en", "h", "tiny@abc")
    with pytest.raises(InvalidInputError, match=r"'bad' chunk 0: vectors of shape \(3, 17\), expected \(n, 16\)"):
        s.upsert([good, bad])
    empty = Point("empty", 0, np.zeros((0, DIM), np.float32), "t", "en", "h", "tiny@abc")
    with pytest.raises(InvalidInputError, match="0 token vectors"):
        s.upsert([empty])
    nan = Point("nan", 0, np.full((2, DIM), np.nan, np.float32), "t", "en", "h", "tiny@abc")
    with pytest.raises(InvalidInputError, match="NaN"):
        s.upsert([nan])
    assert s.count() == before


def test_alias_swaps_to_a_new_version(store: tuple[Store, list[Point]]) -> None:
    s, _ = store
    assert s.versions() == ["docs-v1"]
    v2 = s.create_version()
    assert v2 == "docs-v2" and s.count() > 0  # readers still on v1
    s.swap(v2)
    assert s.count() == 0  # the alias now names the empty v2
    s.swap("docs-v1")
    assert s.count() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_versions_are_listed_with_what_built_them_and_old_ones_dropped(backend: str, tmp_path: Path) -> None:
    built = {"model": "./tiny", "precision": "fp32", "chunk_overlap": 16}
    spec = IndexSpec(model_id="tiny@abc", dim=DIM, datatype="float32", built_with=built)
    s = make_store(backend, tmp_path, spec)
    s.open()
    try:
        points = corpus(np.random.default_rng(0), n_docs=10)
        s.upsert(points)
        v2 = s.create_version()
        s.swap(v2)
        s.upsert(points[:3])  # doc-0 (1 chunk), doc-1 (2 chunks)
        v1, now = s.collections()
        assert (v1["version"], v1["current"], v1["points"], v1["documents"]) == ("docs-v1", False, len(points), 10)
        assert (now["version"], now["current"], now["points"], now["documents"]) == ("docs-v2", True, 3, 2)
        assert now["built_with"] == {**spec.record(), **built} and now["built_with"]["datatype"] == "float32"
        assert (v1["size_bytes"] is None) == (backend != "edge")
        with pytest.raises(InvalidInputError, match="the version searches use"):
            s.drop(v2)
        with pytest.raises(CollectionNotFoundError, match="no version 'docs-v9'"):
            s.drop("docs-v9")
        s.drop("docs-v1")
        assert s.versions() == ["docs-v2"] and s.count() == 3
        assert [v["version"] for v in s.collections()] == ["docs-v2"]
    finally:
        s.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_collection_is_a_clear_error(backend: str, tmp_path: Path) -> None:
    s = make_store(backend, tmp_path, IndexSpec(model_id="tiny@abc", dim=DIM))
    with pytest.raises(CollectionNotFoundError, match=r"'docs' does not exist.*ingest documents first"):
        s.open(create=False)
    s.close()


@pytest.mark.parametrize("backend", ["local-folder", "edge"])
def test_another_model_is_refused(backend: str, tmp_path: Path) -> None:
    s = make_store(backend, tmp_path, IndexSpec(model_id="tiny@abc", dim=DIM))
    s.open()
    s.close()
    other = make_store(backend, tmp_path, IndexSpec(model_id="other@def", dim=DIM))
    with pytest.raises(StoreMismatchError, match="holds vectors of model tiny@abc"):
        other.open()
    other.close()
    moved = make_store(backend, tmp_path, IndexSpec(model_id="renamed-folder@abc", dim=DIM))
    moved.open()  # the same weights under another name are the same model
    moved.close()


def test_point_ids_are_deterministic() -> None:
    assert point_id("docs", "a", 0) == point_id("docs", "a", 0)
    assert len({point_id("docs", "a", 0), point_id("docs", "a", 1), point_id("other", "a", 0)}) == 3
    assert point_id("docs", "x", 0, "acme") not in {
        point_id("docs", "x", 0),
        point_id("docs", "15:xmsearch-tenant:x", 0),
    }


@pytest.mark.parametrize("quantization", ["int8", "binary"])
def test_edge_quantized_copy_is_rescored(tmp_path: Path, quantization: str) -> None:
    spec = IndexSpec(model_id="tiny@abc", dim=DIM, quantization=quantization)  # type: ignore[arg-type]
    s = EdgeStore(tmp_path, "docs", spec)
    s.open()
    points = corpus(np.random.default_rng(0))
    s.upsert(points)
    s.optimize()  # builds the quantized copy
    q = unit(np.random.default_rng(6), 32)
    hits = s.search([q], Page(5, group=False))[0]
    _, stored = as_stored("edge", "float16")
    # rescoring with the originals: the scores returned are the exact MaxSim of the stored vectors
    by_id = {(p.document_id, p.chunk): p.vectors for p in points}
    for h in hits:
        assert abs(h.score - maxsim(stored(q), stored(by_id[(h.document_id, h.chunk)]))) < 1e-3
    s.close()


@pytest.mark.parametrize(
    ("backend", "quantization", "pooled"),
    [
        *((b, "none", pooled) for b in BACKENDS for pooled in (False, True)),
        *(("edge", quantization, pooled) for quantization in ("int8", "binary") for pooled in (False, True)),
    ],
)
def test_a_shortlist_is_the_exact_ranking_of_the_candidates_its_coarse_query_ranks_first(
    backend: str, quantization: str, pooled: bool, tmp_path: Path
) -> None:
    """First stage, then the candidates scored coarsely, then the best `size` of them reranked
    exactly: the hits are a numpy MaxSim's exact ranking of the shortlist a numpy MaxSim picks, filters
    included; a shortlist as large as the candidates is the plain rerank. Coarsely: the whole query
    against the passages pooled at write time where the collection holds them, else (a collection
    built before them) the query pooled by 4 against the tokens. A store with a quantized copy scores
    both stages on the originals: the shortlist is its rescoring."""
    spec = IndexSpec(model_id="tiny@abc", dim=DIM, first_stage_dim=DIM, quantization=quantization, pooled=pooled)  # type: ignore[arg-type]
    s = make_store(backend, tmp_path, spec)
    s.open()
    rng = np.random.default_rng(0)
    points = [dataclasses.replace(p, first_stage=unit(rng, 1)[0]) for p in corpus(rng)]
    s.upsert(points)
    s.optimize()  # Edge: builds the quantized copy
    tolerance, stored = as_stored(s.backend, s.spec.datatype)
    q, first = unit(rng, 32), unit(rng, 1)[0]
    if pooled:
        assert len(pool_passage(points[0].vectors, POOLED_FACTOR)) == math.ceil(len(points[0].vectors) / POOLED_FACTOR)

        def coarse(p: Point) -> float:
            return maxsim(stored(q), stored(pool_passage(p.vectors, POOLED_FACTOR)))
    else:
        assert len(pool_query(q, 4)) == 8

        def coarse(p: Point) -> float:
            return maxsim(stored(pool_query(q, 4)), stored(p.vectors))

    by_pooled_query = sorted(points, key=lambda p: -maxsim(stored(pool_query(q, 4)), stored(p.vectors)))[:12]
    # the seed tells the two coarse scorings apart: pooled passages pick another shortlist
    assert (sorted(points, key=lambda p: -coarse(p))[:12] != by_pooled_query) is pooled

    def shortlisted(kept: list[Point], size: int) -> list[Point]:
        """The exact ranking of the `size` points the coarse query ranks first."""
        ranked = sorted(kept, key=lambda p: -coarse(p))
        edge = [coarse(p) for p in ranked[size - 1 : size + 1]]
        assert edge[0] - edge[1] > 10 * tolerance  # the seed leaves no near-tie at the shortlist's edge
        return sorted(ranked[:size], key=lambda p: -maxsim(stored(q), stored(p.vectors)))

    for flt in ({}, {"tenant": "acme"}):
        conditions = parse_filter(flt)
        kept = [p for p in points if not flt or p.tenant == "acme"]
        want = shortlisted(kept, 12)[:5]
        hits = s.search([q], Page(5, group=False), conditions, [first], 1000, Shortlist(12, 4))[0]
        assert [(h.document_id, h.chunk) for h in hits] == [(p.document_id, p.chunk) for p in want]
        np.testing.assert_allclose(
            [h.score for h in hits], [maxsim(stored(q), stored(p.vectors)) for p in want], atol=tolerance
        )
        # grouped: 2 documents (read 8 chunks deep) of the 16 chunks kept, each at its best chunk's exact score
        documents: dict[tuple[str | None, str], float] = {}
        for p in shortlisted(kept, 16):
            documents.setdefault((p.tenant, p.document_id), maxsim(stored(q), stored(p.vectors)))
        grouped = s.search([q], Page(2), conditions, [first], 1000, Shortlist(16, 4))[0]
        assert [h.document for h in grouped] == list(documents)[:2]
        np.testing.assert_allclose([h.score for h in grouped], list(documents.values())[:2], atol=tolerance)
        plain = s.search([q], Page(10, group=False), conditions, [first], 1000)[0]
        assert s.search([q], Page(10, group=False), conditions, [first], 1000, Shortlist(1000, 4))[0] == plain
    s.close()


@pytest.mark.parametrize("backend", ["local-folder", "edge"])
def test_a_collection_built_before_pooled_passages_is_written_and_searched_without_them(
    backend: str, tmp_path: Path
) -> None:
    """A version built without pooled passages (as every version before them), opened by settings
    that want them: the store takes what the version recorded, writes no pooled passages into it (its
    engine has no such field), and its shortlist pools the query instead."""
    old = IndexSpec(model_id="tiny@abc", dim=DIM, first_stage_dim=DIM)
    before = {k: v for k, v in old.record().items() if k != "pooled"}  # as recorded before pooled passages
    assert before["schema"] == 2 and dataclasses.replace(old, pooled=True).record()["schema"] == 3
    s = make_store(backend, tmp_path, old)
    s.open()
    if isinstance(s, EdgeStore):
        (s.folder / f"{s.current_version()}.json").write_text(json.dumps(before))
    s.close()
    s = make_store(backend, tmp_path, dataclasses.replace(old, pooled=True))
    s.open()
    assert not s.spec.pooled
    rng = np.random.default_rng(0)
    points = [dataclasses.replace(p, first_stage=unit(rng, 1)[0]) for p in corpus(rng)]
    s.upsert(points)
    q, first = unit(rng, 32), unit(rng, 1)[0]
    query = s._query(q, 10, None, Page(10, group=False), first, 100, Shortlist(20, 4))
    assert query.coarse_field != POOLED and query.coarse is not None and len(query.coarse) == 8
    assert len(s.search([q], Page(10, group=False), (), [first], 100, Shortlist(20, 4))[0]) == 10
    s.close()
    assert not IndexSpec.from_record(before).pooled
    assert not dataclasses.replace(old, pooled=True).check(before, "docs").pooled


def test_a_server_collection_quantizes_the_tokens_alone() -> None:
    """As on Edge: the tokens' quantized copy in RAM, their originals on disk; the pooled passages
    (scored in full by every shortlist) and the first stage neither quantized nor on disk."""
    from xmsearch.retriever.index.stores.qdrant import _vectors_config

    spec = IndexSpec(model_id="tiny@abc", dim=DIM, quantization="binary", first_stage_dim=DIM, pooled=True)
    config = _vectors_config(spec)
    assert isinstance(config[TOKENS].quantization_config, models.BinaryQuantization) and config[TOKENS].on_disk
    assert config[POOLED].quantization_config is None and not config[POOLED].on_disk
    assert config[FIRST_STAGE].quantization_config is None
    assert _vectors_config(dataclasses.replace(spec, quantization="none"))[TOKENS].quantization_config is None


def test_threads_sharing_a_local_mode_client_keep_every_write() -> None:
    """qdrant-client's local mode is not safe for concurrent writes (its issue 1193: a collection's
    arrays end at different lengths and every later read fails); the store serializes the calls on a
    local-mode client. The same writes through stores that take no lock broke 5 collections of 5."""
    from qdrant_client import QdrantClient

    client = QdrantClient(location=":memory:")
    spec = IndexSpec(model_id="tiny@abc", dim=DIM)
    stores = [QdrantStore(client, "docs", spec, "local", 0, False) for _ in range(8)]
    for store in stores:
        store.open()

    def write(n: int) -> None:
        rng = np.random.default_rng(n)
        for batch in range(20):
            points = [Point(f"t{n}-{batch}-{i}", 0, unit(rng, 4), "x", "en", "h", "tiny@abc") for i in range(10)]
            stores[n].upsert(points)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert stores[0].count() == 1600
    assert len(stores[0].search([unit(np.random.default_rng(9), 4)], Page(10))[0]) == 10


def test_a_shortlist_keeps_its_size_per_ten_hits_and_steps_aside_for_deep_reads() -> None:
    shortlist = Shortlist(150, 4)
    assert shortlist.keeps(10, 10, 800) == 150  # a top-10
    assert shortlist.keeps(10, 40, 800) == 150  # a grouped page of 10 reads 40 chunks
    assert shortlist.keeps(10, 160, 800) == 0  # its deeper round: every candidate reranked exactly
    assert shortlist.keeps(30, 30, 800) == 450  # 150 per 10 hits
    assert shortlist.keeps(150, 150, 800) == 0  # offset 140: it would keep them all
    assert shortlist.keeps(10, 10, 150) == 0


def test_a_collection_of_an_older_schema_is_refused_with_what_to_do() -> None:
    spec = IndexSpec(model_id="tiny@abc", dim=DIM)
    with pytest.raises(StoreMismatchError, match=r"has schema 1.*index again into a new collection"):
        spec.check({**spec.record(), "schema": 1}, "docs")
    with pytest.raises(StoreMismatchError, match=r"has schema 4, this version reads schemas 2-3"):
        spec.check({**spec.record(), "schema": 4}, "docs")


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_sharing_a_store_open_it_once(backend: str, tmp_path: Path) -> None:
    spec = IndexSpec(model_id="tiny@abc", dim=DIM)
    first = make_store(backend, tmp_path, spec)
    first.open()
    first.upsert(corpus(np.random.default_rng(6), 3))
    if backend == "local-memory":
        shared = first  # an in-memory collection lives in its client
    else:
        first.close()
        shared = make_store(backend, tmp_path, spec)
    barrier = threading.Barrier(8)

    def open_and_count() -> int:
        barrier.wait()
        shared.open(create=False)
        return shared.count()

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda _: open_and_count(), range(8)))
    assert len(set(counts)) == 1 and counts[0] > 0
    shared.close()

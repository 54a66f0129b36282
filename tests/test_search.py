"""The Retriever end to end on the tiny encoder: exact scores, languages, filters, the first stage,
and every kind of bad input the issue names."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, as_stored
from xmsearch.retriever import Encoder, InvalidInputError
from xmsearch.retriever.index.filters import owned_by
from xmsearch.retriever.index.first_stage import MeanPooling
from xmsearch.retriever.index.pooling import pool_passage
from xmsearch.retriever.index.schema import POOLED, POOLED_FACTOR, IndexSpec, Point
from xmsearch.retriever.index.stores import (
    CollectionNotFoundError,
    Store,
    StoreLockedError,
    StoreUnavailableError,
    make_store,
)
from xmsearch.retriever.index.stores.qdrant import QdrantStore
from xmsearch.retriever.model.langid import Hints
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings

DOCS = [
    ("river", "en", "acme", "The river flows past the old mill, and children play on the bridge."),
    ("passport-fr", "fr", "acme", "Comment renouveler mon passeport avant de voyager à l'étranger ?"),
    ("passport-de", "de", "globex", "Wie verlängere ich meinen Reisepass vor einer Auslandsreise?"),
    ("passport-zh", "zh", "globex", "出国旅行前如何更新护照？请向领事馆索取表格。"),
    ("mill-ru", "ru", "acme", "Река течёт мимо старой мельницы, и дети каждый летний вечер играют на мосту."),
    (
        "search",
        "en",
        "globex",
        "Search engines rank documents by comparing each query token with every document token.",
    ),
]


def _settings(tmp_path: Path, store: str, **extra: object) -> Settings:
    return Settings(device="cpu", store=store, data_dir=tmp_path, collection="docs", detect_language=True, **extra)  # type: ignore[arg-type]


def _index(retriever: Retriever) -> dict[str, np.ndarray]:
    enc = retriever.encoder
    texts = [d[3] for d in DOCS]
    vectors = enc.encode_documents(texts, [d[1] for d in DOCS])
    first_stage = retriever.components.first_stage or MeanPooling(enc.dim)
    first = first_stage.documents(vectors)  # as the write path gives them
    points = [
        Point(doc_id, 0, v, text, lang, "h", enc.spec.model_id, tenant=tenant, metadata={"n": i}, first_stage=first[i])
        for i, ((doc_id, lang, tenant, text), v) in enumerate(zip(DOCS, vectors, strict=True))
    ]
    retriever.store.open(create=True)
    retriever.store.upsert(points)
    return {p.document_id: p.vectors for p in points}


@pytest.fixture(params=["local", "edge"])
def indexed(
    request: pytest.FixtureRequest, tmp_path: Path, detecting_encoder: Encoder
) -> Iterator[tuple[Retriever, dict[str, np.ndarray]]]:
    retriever = Retriever.from_settings(_settings(tmp_path, request.param, first_stage="off"), detecting_encoder)
    stored = _index(retriever)
    yield retriever, stored
    retriever.close()


def test_scores_are_exact_maxsim_of_the_encoded_query(indexed: tuple[Retriever, dict[str, np.ndarray]]) -> None:
    retriever, stored = indexed
    result = retriever.search("how do I renew a passport", k=6, language="en")
    q = retriever.encoder.encode_queries(["how do I renew a passport"], "en")[0]
    tolerance, rounded = as_stored(retriever.store.backend, retriever.store.spec.datatype)
    exact = sorted(((float((rounded(q) @ rounded(v).T).max(axis=1).sum()), d) for d, v in stored.items()), reverse=True)
    assert [h.document_id for h in result.hits] == [d for _, d in exact]
    np.testing.assert_allclose([h.score for h in result.hits], [s for s, _ in exact], atol=tolerance)
    assert result.language.adapter == "en_XX" and result.timings_ms["encode"] > 0


def test_language_is_detected_or_given(indexed: tuple[Retriever, dict[str, np.ndarray]]) -> None:
    retriever, _ = indexed
    results = retriever.search_batch(
        ["Wie verlängere ich meinen Reisepass?", "renouveler passeport"], k=2, languages=[None, "fr"]
    )
    assert [r.language.adapter for r in results] == ["de_DE", "fr_XX"]
    assert results[0].language.confidence is not None and results[1].language.confidence is None


def test_filters_apply(indexed: tuple[Retriever, dict[str, np.ndarray]]) -> None:
    retriever, _ = indexed
    hits = retriever.search("passport", k=10, language="en", filter={"tenant": "globex", "language": ["de", "zh"]}).hits
    assert {h.document_id for h in hits} == {"passport-de", "passport-zh"}
    assert all(h.tenant == "globex" for h in hits)
    hits = retriever.search("passport", k=10, language="en", filter={"metadata.n": {"gte": 4}}).hits
    assert {h.document_id for h in hits} == {"mill-ru", "search"}


@pytest.mark.parametrize("encoding", ["mean", "muvera"])
def test_first_stage_prefetch_then_exact_rerank(tmp_path: Path, encoder: Encoder, encoding: str) -> None:
    if encoding == "muvera":
        pytest.importorskip("fastembed", reason="MUVERA needs the extra muvera (a test dependency)")
    retriever = Retriever.from_settings(
        _settings(tmp_path, "edge", first_stage="on", first_stage_encoding=encoding, first_stage_candidates=10), encoder
    )
    stored = _index(retriever)
    hits = retriever.search("renew a passport", k=3, language="en").hits
    q = encoder.encode_queries(["renew a passport"], "en")[0]
    _, rounded = as_stored("edge", "float16")
    exact = sorted(
        ((float((rounded(q) @ rounded(v).T).max(axis=1).sum()), d) for d, v in stored.items()), reverse=True
    )[:3]
    assert [h.document_id for h in hits] == [d for _, d in exact]  # all 6 are candidates: same as exact
    np.testing.assert_allclose([h.score for h in hits], [s for s, _ in exact], atol=1e-3)
    retriever.close()


@pytest.mark.parametrize("store", ["local", "edge"])
def test_the_shortlist_setting_reranks_what_the_whole_query_keeps_of_the_pooled_passages(
    tmp_path: Path, encoder: Encoder, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection with a first stage holds each passage pooled by POOLED_FACTOR. Every passage a
    candidate, the shortlist 4 of them for 2 hits: the hits are the exact ranking of the 4 whose pooled
    passages the whole query ranks first."""
    from xmsearch.retriever.index.stores import base

    queries: list[base.Query] = []
    plain_query = base.Store._query
    monkeypatch.setattr(base.Store, "_query", lambda *a, **kw: queries.append(plain_query(*a, **kw)) or queries[-1])
    settings = _settings(
        tmp_path, store, first_stage="on", first_stage_encoding="mean", first_stage_candidates=10, shortlist=4
    )
    retriever = Retriever.from_settings(settings, encoder)
    stored = _index(retriever)
    assert retriever.store.spec.pooled
    q = encoder.encode_queries(["renew a passport"], "en")[0]
    _, rounded = as_stored(store, "float16")

    def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
        return float((rounded(query) @ rounded(doc).T).max(axis=1).sum())

    shortlist = sorted(stored, key=lambda d: -maxsim(q, pool_passage(stored[d], POOLED_FACTOR)))[:4]
    hits = retriever.search("renew a passport", k=2, language="en", group=False).hits
    assert [(x.coarse_field, x.shortlist) for x in queries] == [(POOLED, 4)]  # through the shortlist
    np.testing.assert_array_equal(queries[0].coarse, q)  # the whole query
    assert [h.document_id for h in hits] == sorted(shortlist, key=lambda d: -maxsim(q, stored[d]))[:2]
    retriever.search("renew a passport", k=2, language="en")  # grouped: read 8 deep, past half of 4: exact
    assert queries[-1].coarse is None
    retriever.close()


def test_first_stage_auto_stays_off_below_the_threshold(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefetched: list[bool] = []
    search = Store.search
    monkeypatch.setattr(Store, "search", lambda store, *a: prefetched.append(a[3] is not None) or search(store, *a))
    for threshold in (100, 5):  # 6 documents
        settings = _settings(
            tmp_path, "local", first_stage="auto", first_stage_encoding="mean", first_stage_min_points=threshold
        )
        retriever = Retriever.from_settings(settings, encoder)
        if threshold == 100:
            _index(retriever)
        assert retriever.search("renew a passport", k=2, language="en").hits
        retriever.close()
    assert prefetched == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": ""}, "query 0 is empty"),
        ({"query": "   "}, "query 0 is empty"),
        ({"query": "word " * 80}, r"query 0 is \d+ tokens long; the model reads at most 64"),
        ({"query": "ok", "k": 0}, "k must be an integer from 1 to 1000, not 0"),
        ({"query": "ok", "k": -3}, "k must be an integer"),
        ({"query": "ok", "k": 10**6}, "k must be an integer from 1 to 1000"),
        ({"query": "ok", "k": True}, "k must be an integer"),
        ({"query": "ok", "filter": {"colour": "red"}}, "cannot filter on 'colour'"),
        ({"query": "ok", "language": "klingon"}, "'klingon' is not a language code"),
    ],
)
def test_bad_queries(indexed: tuple[Retriever, dict[str, np.ndarray]], kwargs: dict[str, object], message: str) -> None:
    retriever, _ = indexed
    with pytest.raises(InvalidInputError, match=message):
        retriever.search(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("store", ["local", "edge"])
def test_missing_collection(tmp_path: Path, encoder: Encoder, store: str) -> None:
    retriever = Retriever.from_settings(_settings(tmp_path, store), encoder)
    with pytest.raises(CollectionNotFoundError, match=r"'docs' does not exist.*ingest documents first"):
        retriever.search("hello", language="en")
    retriever.close()


HOLD = """
import sys, time
from pathlib import Path
from xmsearch.retriever.index.schema import IndexSpec
from xmsearch.retriever.index.stores.edge import EdgeStore
store = EdgeStore(Path(sys.argv[1]), "docs", IndexSpec(model_id=sys.argv[2], dim=int(sys.argv[3])))
store.open()
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


def test_store_locked_by_another_process_names_it(tmp_path: Path, encoder: Encoder) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD), str(tmp_path / "edge"), encoder.spec.model_id, str(encoder.dim)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        retriever = Retriever.from_settings(_settings(tmp_path, "edge"), encoder)
        with pytest.raises(StoreLockedError, match=rf"in use by process {holder.pid} .*one process per store"):
            retriever.search("hello", language="en")
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0


def test_server_that_does_not_answer_is_retried_then_reported(encoder: Encoder) -> None:
    import socket

    with socket.socket() as sock:  # a port that refuses connections
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(store="server", qdrant_url=f"http://127.0.0.1:{port}", qdrant_retries=2, qdrant_timeout=1.0)
    store = make_store(settings, IndexSpec(model_id=encoder.spec.model_id, dim=encoder.dim))
    assert isinstance(store, QdrantStore)
    with pytest.raises(StoreUnavailableError, match=rf"127.0.0.1:{port} did not answer after 3 attempts"):
        store.open()


def test_server_that_accepts_but_never_replies_times_out() -> None:
    import socket

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        store = QdrantStore.server(url, "docs", IndexSpec(model_id="m@abc", dim=16), timeout=1.0, retries=1)
        with pytest.raises(StoreUnavailableError, match="did not answer after 2 attempts"):
            store.count()


@pytest.mark.parametrize("store", ["local", "edge"])
def test_a_tenants_searches_lean_on_its_languages_where_detection_is_unsure(
    tmp_path: Path, detecting_encoder: Encoder, store: str
) -> None:
    """'hotel' could be in many languages: searched for a tenant whose documents are German, it takes
    the German adapter (source "prior"); a tenant's configured languages come first; the request's own
    hints and a given language win over both; without one tenant there is no prior."""
    docs = [("acme", "de", "Das Hotel liegt am Fluss."), ("acme", "de", "Zimmer mit Blick auf die Brücke."),
            ("acme", "en", "Rooms by the river."), ("globex", "fr", "L'hôtel est près du pont.")]  # fmt: skip
    encoder = detecting_encoder
    vectors = encoder.encode_documents([d[2] for d in docs], [d[1] for d in docs])
    points = [
        Point(f"d{i}", 0, v, text, lang, "h", encoder.spec.model_id, tenant=tenant)
        for i, ((tenant, lang, text), v) in enumerate(zip(docs, vectors, strict=True))
    ]
    settings = _settings(tmp_path, store, first_stage="off", tenant_languages={"globex": ["es"]})
    retriever = Retriever.from_settings(settings, encoder)
    retriever.store.open(create=True)
    retriever.store.upsert(points)
    try:
        assert retriever.store.document_languages([owned_by("acme")]) == {"de": 2, "en": 1}
        acme = retriever.search("hotel", scope=[owned_by("acme")]).language
        assert (acme.adapter, acme.source) == ("de_DE", "prior")
        filtered = retriever.search("hotel", filter={"tenant": "acme"}).language
        assert filtered.adapter == "de_DE"
        globex = retriever.search("hotel", filter={"tenant": "globex"}).language
        assert (globex.adapter, globex.source) == ("es_XX", "prior")  # its configured language before its documents'
        hinted = retriever.search("hotel", scope=[owned_by("acme")], hints=Hints(preferred=("fr",))).language
        assert (hinted.adapter, hinted.source) == ("fr_XX", "hint")
        given = retriever.search("hotel", language="en", scope=[owned_by("acme")]).language
        assert (given.adapter, given.source) == ("en_XX", "given")
        anyone = retriever.search("hotel").language
        assert anyone.source != "prior"
        both = retriever.search("hotel", filter={"tenant": ["acme", "globex"]}).language
        assert both.source != "prior"  # several tenants: no one's prior
    finally:
        retriever.close()
    off = Retriever.from_settings(settings.model_copy(update={"langid_tenant_prior": False}), encoder)
    try:
        assert off.search("hotel", scope=[owned_by("acme")]).language.source != "prior"
    finally:
        off.close()

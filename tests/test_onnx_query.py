"""Queries on ONNX Runtime: fp32 gives the reference's vectors, int8 keeps the stated agreement, the
export is made once, `auto` takes the runtime it measured faster (once), and mistakes are one line."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import GOLDEN
from tests.test_golden import _load, vectors_match
from xmsearch.bench.encode import agreement, ranking_agreement, top10
from xmsearch.retriever import Encoder
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.model import measured, onnx_query, query_runtime
from xmsearch.retriever.model.checkpoint import read_spec
from xmsearch.settings import Settings

pytest.importorskip("onnxruntime", reason="onnxruntime (a dependency of xmsearch) is not installed")

QUERIES = ["wie alt ist der Eiffelturm", "capital of france", "le chat noir", "hotel", "база данных"]
LANGS = ["de", "en", "fr", "en", "ru"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache, so that exports are made (and counted) by these tests."""
    home = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home))
        yield home / "xmsearch" / "onnx"


def _encoder(path: Path, runtime: str, precision: str = "fp32") -> Encoder:
    settings = Settings(device="cpu", precision=precision, query_runtime=runtime, detect_language=False)
    return Encoder.from_pretrained(path, settings)


def test_onnx_queries_match_colbert_ai(cache: Path) -> None:
    """The reference's goldens (queries on ONNX Runtime, documents on torch) within 1e-4."""
    manifest, data = _load("legacy")
    assert vectors_match(_encoder(GOLDEN / "checkpoint", "onnx"), manifest, data) >= 70


def test_onnx_gives_torch_fp32_vectors_for_mixed_languages_and_a_bf16_backbone(
    cache: Path, encoder: Encoder, tiny_checkpoint: Path
) -> None:
    want = encoder.encode_queries(QUERIES, LANGS)
    for precision in ("fp32", "bf16"):  # the graph's inputs come from the checkpoint, not the backbone
        got = _encoder(tiny_checkpoint, "onnx", precision).encode_queries(QUERIES, LANGS)
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(b, a, atol=1e-5)


def test_int8_queries_keep_the_stated_agreement_and_ignore_their_batch(
    cache: Path, encoder: Encoder, tiny_checkpoint: Path
) -> None:
    """Mean cosine of at least 0.999 to fp32's query vectors and at least 0.9 of each query's exact
    top-10 (the bar bf16 is held to); a query's vectors are the same alone or batched."""
    int8 = _encoder(tiny_checkpoint, "onnx-int8")
    mean, worst = agreement(encoder.encode_queries(QUERIES, LANGS), int8.encode_queries(QUERIES, LANGS))
    assert mean >= 0.999 and worst >= 0.99
    rng = np.random.default_rng(0)
    words = [*" ".join(QUERIES[:3]).split(), "tower", "paris", "cat", "old", "city", "river"]
    docs = encoder.encode_documents([" ".join(rng.choice(words, size=int(rng.integers(4, 15)))) for _ in range(60)])
    queries = [" ".join(rng.choice(words, size=3)) for _ in range(20)]
    ranked = top10(docs, encoder.encode_queries(queries, "en"))
    assert ranking_agreement(ranked, top10(docs, int8.encode_queries(queries, "en"))) >= 0.9
    together = int8.encode_queries(QUERIES, LANGS)
    for query, lang, batched in zip(QUERIES, LANGS, together, strict=True):
        np.testing.assert_array_equal(int8.encode_queries([query], [lang])[0], batched)


def test_the_export_is_made_once_per_model_and_variant(
    cache: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _encoder(tiny_checkpoint, "onnx-int8").ready_queries()
    path = onnx_query.exported_path(read_spec(tiny_checkpoint), "onnx-int8")
    assert path.parent == cache and path.is_file()

    def refuse(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_query, "export", refuse)
    assert _encoder(tiny_checkpoint, "onnx-int8").encode_queries(["hotel"], "en")[0].shape[1] == 16


def test_only_a_process_that_searches_loads_the_session(
    cache: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's encoder (documents only) never loads or exports the query graph; a Retriever loads
    it when it takes the encoder, so that its first search does not wait for it."""
    from xmsearch.retriever.components import Components
    from xmsearch.retriever.model import encoder as encoder_module
    from xmsearch.retriever.search import Retriever

    loaded: list[object] = []

    def counted(*args: object) -> onnx_query.OnnxQueries:
        loaded.append(args)
        return onnx_query.OnnxQueries(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(encoder_module, "OnnxQueries", counted)
    settings = Settings(device="cpu", query_runtime="onnx", detect_language=False, data_dir=tmp_path)
    encoder = Encoder.from_pretrained(tiny_checkpoint, settings)
    encoder.encode_documents(["a document to index"], "en")
    assert loaded == []
    retriever = Retriever(Components.load(settings, encoder))
    assert len(loaded) == 1
    encoder.encode_queries(["hotel"], "en")
    assert len(loaded) == 1
    retriever.close()


def test_missing_onnxruntime_and_a_bad_runtime_are_one_line(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name))
    with pytest.raises(InvalidInputError, match=r"needs the package onnxruntime: pip install onnxruntime"):
        _encoder(tiny_checkpoint, "onnx")
    with pytest.raises(ValueError, match="query_runtime"):
        Settings(query_runtime="tensorrt")


@pytest.mark.parametrize("faster", ["onnx", "torch"])
def test_auto_takes_the_runtime_measured_faster_once_then_reads_its_choice(
    cache: Path, encoder: Encoder, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, faster: str
) -> None:
    """Both runtimes encode the same query (the onnx run on the ONNX Runtime session, the torch run
    not); the one measured 1.1x faster runs queries, and a later load only reads the choice (no second
    measurement, and no session where torch was chosen). Either way the vectors are torch fp32's
    within 1e-5."""
    kept = cache.parent / "query_runtime.json"
    kept.unlink(missing_ok=True)
    sessions: list[object] = []
    runs: list[tuple[str, int]] = []
    real_call, real_init = onnx_query.OnnxQueries.__call__, onnx_query.OnnxQueries.__init__

    def counted_call(self: onnx_query.OnnxQueries, *args: object) -> np.ndarray:
        sessions.append(self)
        return real_call(self, *args)  # type: ignore[arg-type]

    def counted_init(self: onnx_query.OnnxQueries, *args: object) -> None:
        runs.append(("session made", len(sessions)))
        real_init(self, *args)  # type: ignore[arg-type]

    def in_turns(measured: dict[str, Callable[[], object]]) -> dict[str, float]:
        for name, run in measured.items():
            before = len(sessions)
            out = run()
            assert isinstance(out, np.ndarray) and out.shape[0] == 1
            runs.append((name, len(sessions) - before))  # how many ONNX Runtime runs it made
        return {"torch": 0.02, "onnx": 0.01} if faster == "onnx" else {"torch": 0.01, "onnx": 0.0095}

    monkeypatch.setattr(onnx_query.OnnxQueries, "__call__", counted_call)
    monkeypatch.setattr(onnx_query.OnnxQueries, "__init__", counted_init)
    monkeypatch.setattr(query_runtime, "in_turns", in_turns)
    auto = _encoder(tiny_checkpoint, "auto")
    assert auto.query_runtime == faster
    assert runs == [("torch", 0), ("session made", 0), ("onnx", 1)]
    [record] = json.loads(kept.read_text()).values()
    assert record["chosen"] == faster
    assert (auto._onnx_queries is not None) == (faster == "onnx")
    want = encoder.encode_queries(QUERIES, LANGS)
    for a, b in zip(want, auto.encode_queries(QUERIES, LANGS), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)

    again = _encoder(tiny_checkpoint, "auto")
    assert again.query_runtime == faster
    made = [run for run in runs if run[0] == "session made"]
    assert len(made) == (2 if faster == "onnx" else 1)  # read, not measured again: a session only for onnx
    assert len(runs) == 3 + len(made) - 1


def test_measured_in_turns_and_onnx_only_where_clearly_faster() -> None:
    order: list[str] = []
    seconds = measured.in_turns({"torch": lambda: order.append("torch"), "onnx": lambda: order.append("onnx")})
    assert order == ["torch", "onnx"] * 6 and set(seconds) == {"torch", "onnx"}  # a warm-up round, then 5
    assert query_runtime.choose({"torch": 0.099, "onnx": 0.059}) == "onnx"
    assert query_runtime.choose({"torch": 0.0494, "onnx": 0.0459}) == "torch"  # 1.08x: not worth a session


def test_auto_runs_queries_on_torch_without_onnxruntime_or_where_it_fails(
    cache: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name))
    with caplog.at_level("INFO", logger="xmsearch.retriever.model.encoder"):
        auto = _encoder(tiny_checkpoint, "auto")
        assert auto.encode_queries(["hotel"], "en")[0].shape[1] == 16
    assert auto._onnx_queries is None
    assert "query runtime auto: torch (the package onnxruntime is not installed" in caplog.text
    monkeypatch.setattr(importlib.util, "find_spec", real)

    def broken(*args: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(onnx_query, "export", broken)
    monkeypatch.setattr(onnx_query, "exported_path", lambda *args: cache / "never-made.onnx")
    (cache.parent / "query_runtime.json").unlink(missing_ok=True)  # measured again, not read
    with caplog.at_level("INFO", logger="xmsearch.retriever.model.encoder"):
        failed = _encoder(tiny_checkpoint, "auto")
        assert failed.encode_queries(["hotel"], "en")[0].shape[1] == 16
    assert failed._onnx_queries is None
    assert "query runtime auto: torch (ONNX Runtime failed: OSError: No space left on device)" in caplog.text
    assert not (cache.parent / "query_runtime.json").exists()  # not kept: tried again at the next load
    assert query_runtime.unavailable(torch.device("cuda")) == "queries run on cuda"


def test_positions_are_transformers_own() -> None:
    from transformers.models.xmod.modeling_xmod import XmodEmbeddings

    ids = np.array([[0, 5, 6, 1, 1], [0, 7, 1, 8, 2]])  # padding (1) in the middle and at the end
    want = XmodEmbeddings.create_position_ids_from_input_ids(torch.from_numpy(ids), 1).numpy()
    np.testing.assert_array_equal(onnx_query._positions(ids, 1), want)

"""Language identification: measured accuracy on the bundled set, adapters, thresholds and policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmsearch.bench.encode import bench_langid
from xmsearch.retriever import Encoder, UnknownLanguageError
from xmsearch.settings import Settings


@pytest.fixture(scope="module")
def detecting(detecting_encoder: Encoder) -> Encoder:
    return detecting_encoder


def test_accuracy_on_the_81_language_set() -> None:
    queries, passages = bench_langid(threshold=0.6)
    assert queries.texts == 486 and passages.texts == 162
    assert queries.accuracy >= 0.93 and passages.accuracy >= 0.99
    assert queries.kept_accuracy >= 0.98 and queries.kept >= 0.8


def test_detected_languages_pick_their_adapters(detecting: Encoder) -> None:
    texts = [
        "Wie verlängere ich meinen Reisepass vor einer Auslandsreise?",
        "Comment renouveler mon passeport avant de voyager à l'étranger ?",
        "出國旅行前如何更新護照？請向領事館索取表格。",
        "出国旅行前如何更新护照？请向领事馆索取表格。",
        "Как продлить паспорт перед поездкой за границу?",
    ]
    got = detecting.resolve_languages(texts)
    assert [r.adapter for r in got] == ["de_DE", "fr_XX", "zh_TW", "zh_CN", "ru_RU"]
    assert all(r.confidence is not None and r.confidence >= 0.6 and not r.fallback for r in got)
    assert detecting.resolve_languages(texts) == got  # deterministic


def test_given_languages_are_not_overridden(detecting: Encoder) -> None:
    got = detecting.resolve_languages(["Wie verlängere ich meinen Reisepass?", "hello"], [None, "fr"])
    assert [r.adapter for r in got] == ["de_DE", "fr_XX"]
    assert got[1].confidence is None


def test_detected_language_without_adapter_falls_back(detecting: Encoder, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        got = detecting.resolve_languages(["Jinsi ya kufanya upya pasipoti kabla ya kusafiri nje ya nchi"])
    assert got[0].adapter == "en_XX" and got[0].fallback and got[0].requested == "sw"
    assert "detected language sw" in caplog.text


def test_unsure_detection_follows_the_policy(tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    strict = Encoder.from_pretrained(
        tiny_checkpoint, Settings(device="cpu", langid_min_confidence=0.999, unknown_language="error")
    )
    with pytest.raises(UnknownLanguageError, match="language detection is unsure"):
        strict.encode_queries(["ok ok"])
    lenient = Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", langid_min_confidence=0.999))
    with caplog.at_level("WARNING"):
        got = [lenient.resolve_languages([text])[0] for text in ("ok ok", "hm ok", "ok")]
    assert all(r.fallback and r.reason and "detection is unsure" in r.reason for r in got)  # every answer says so
    assert all(r.confidence is not None and r.confidence < 0.999 for r in got)  # with the best guess's confidence
    assert caplog.text.count("language detection is unsure") == 1  # the log says it once per process

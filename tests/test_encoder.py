"""The encoder's behaviour beyond the goldens: shapes, order, batching, languages, precision, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xmsearch.retriever import Encoder, InvalidInputError, UnknownLanguageError
from xmsearch.settings import Settings

TEXTS = [
    "The river flows past the old mill.",
    "Comment renouveler mon passeport ?",
    "short",
    "Der Fluss fließt an der alten Mühle vorbei, und die Kinder spielen jeden Sommerabend auf der Brücke.",
    "出国旅行前如何更新护照？",
    "كيف أجدد جواز سفري",
]
LANGS = ["en", "fr", "en", "de", "zh", "ar"]


def test_shapes_and_unit_vectors(encoder: Encoder) -> None:
    queries = encoder.encode_queries(TEXTS, LANGS)
    docs = encoder.encode_documents(TEXTS, LANGS)
    assert all(q.shape == (encoder.spec.query_maxlen, 16) and q.dtype == np.float32 for q in queries)
    assert all(d.ndim == 2 and d.shape[1] == 16 and d.dtype == np.float32 for d in docs)
    for v in [*queries, *docs]:
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_order_is_restored_whatever_the_batching(encoder: Encoder, tiny_checkpoint: Path) -> None:
    one_by_one = [encoder.encode_documents([t], [lang])[0] for t, lang in zip(TEXTS, LANGS, strict=True)]
    big = Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", detect_language=False, batch_size=64))
    for together in (encoder.encode_documents(TEXTS, LANGS), big.encode_documents(TEXTS, LANGS)):
        for a, b in zip(one_by_one, together, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_documents_drop_pad_and_skiplist_rows(encoder: Encoder) -> None:
    tok = encoder.tokenizer
    text = "a , b . c | d"
    rows = tok.document_rows([text])[0]
    kept = [i for i in rows if i not in set(tok.skiplist.tolist())]
    assert encoder.encode_documents([text], "en")[0].shape[0] == len(kept) < len(rows)


def test_truncated_document_has_at_most_doc_maxlen_rows(encoder: Encoder) -> None:
    doc = encoder.encode_documents(["word " * 5000], "en")[0]
    assert doc.shape[0] <= encoder.spec.doc_maxlen


def test_adapters_change_the_vectors_and_mix_in_one_batch(encoder: Encoder) -> None:
    text = "The river flows past the old mill."
    en, fr = encoder.encode_queries([text, text], ["en", "fr"])
    assert np.abs(en - fr).max() > 1e-2
    np.testing.assert_allclose(encoder.encode_queries([text], "fr_XX")[0], fr, atol=1e-5)


def test_one_forward_pass_per_batch_with_mixed_languages(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[torch.Tensor] = []
    original = encoder.model.backbone.forward

    def counting(*args: object, **kwargs: torch.Tensor) -> object:
        calls.append(kwargs["lang_ids"])
        return original(*args, **kwargs)

    monkeypatch.setattr(encoder.model.backbone, "forward", counting)
    encoder.encode_documents(TEXTS[:4], LANGS[:4])  # batch_size 4: one batch, three languages
    assert len(calls) == 1
    adapters = [encoder.spec.languages[i] for i in calls[0].tolist()]
    assert sorted(adapters) == sorted(["en_XX", "fr_XX", "en_XX", "de_DE"])


def test_language_forms_resolve_to_the_same_adapter(encoder: Encoder) -> None:
    text = ["出国旅行前如何更新護照"]
    hant = encoder.encode_queries(text, "zh_TW")[0]
    for code in ("zh-Hant", "zh-TW", "zh-HK", "zho-Hant"):
        np.testing.assert_array_equal(encoder.encode_queries(text, code)[0], hant)
    assert np.abs(encoder.encode_queries(text, "zh-Hans")[0] - hant).max() > 1e-3


def test_unknown_language_follows_the_policy(tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    fallback = Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", detect_language=False))
    with caplog.at_level("WARNING"):
        got = fallback.resolve_languages(["habari"], "sw")
    assert got[0].adapter == "en_XX" and got[0].fallback
    assert "'sw' has no adapter" in caplog.text
    strict = Encoder.from_pretrained(
        tiny_checkpoint, Settings(device="cpu", detect_language=False, unknown_language="error")
    )
    with pytest.raises(UnknownLanguageError, match=r"'sw' has no adapter.*adapters: en_XX"):
        strict.encode_queries(["habari"], "sw")


def test_fallback_adapter_is_configurable(tiny_checkpoint: Path) -> None:
    enc = Encoder.from_pretrained(
        tiny_checkpoint, Settings(device="cpu", detect_language=False, fallback_language="de")
    )
    assert enc.resolve_languages(["x"], "sw")[0].adapter == "de_DE"
    assert enc.resolve_languages(["x"])[0].adapter == "de_DE"  # no language and detection off


@pytest.mark.parametrize("code", ["xx", "klingon", "", "12", "fr-FR-x-bogus-!!"])
def test_malformed_language_codes_are_errors(encoder: Encoder, code: str) -> None:
    with pytest.raises(UnknownLanguageError, match="is not a language code"):
        encoder.encode_queries(["hello"], code)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ("a single string", "list of strings"),
        ([""], "text 0 is empty"),
        (["ok", "   \n\t"], "text 1 is empty or only whitespace"),
        (["ok", 3], "text 1 is a int"),
        ([None], "text 0 is a NoneType"),
    ],
)
def test_bad_texts(encoder: Encoder, texts: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        encoder.encode_documents(texts, "en")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=message):
        encoder.encode_queries(texts, "en")  # type: ignore[arg-type]


def test_languages_must_match_texts(encoder: Encoder) -> None:
    with pytest.raises(InvalidInputError, match="2 languages given for 3 texts"):
        encoder.encode_queries(["a", "b", "c"], ["en", "fr"])


def test_empty_list_gives_empty_result(encoder: Encoder) -> None:
    assert encoder.encode_documents([]) == []
    assert encoder.encode_queries([]) == []


def test_bf16_on_cpu_agrees_with_fp32(encoder: Encoder, tiny_checkpoint: Path) -> None:
    from xmsearch.bench.encode import agreement

    bf16 = Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", precision="bf16", detect_language=False))
    assert bf16.model.backbone.dtype == torch.bfloat16
    mean, worst = agreement(encoder.encode_documents(TEXTS, LANGS), bf16.encode_documents(TEXTS, LANGS))
    assert mean > 0.99 and worst > 0.9


def test_bf16_queries_rank_documents_as_fp32_does(encoder: Encoder, tiny_checkpoint: Path) -> None:
    """The stated agreement: each bf16 query's exact top-10 holds at least 0.9 of fp32's on average."""
    from xmsearch.bench.encode import ranking_agreement, top10

    bf16 = Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", precision="bf16", detect_language=False))
    rng = np.random.default_rng(0)
    words = " ".join(TEXTS).split()
    docs = [" ".join(rng.choice(words, size=int(rng.integers(5, 20)))) for _ in range(60)]
    queries = [" ".join(rng.choice(words, size=4)) for _ in range(20)]
    fp32_top = top10(encoder.encode_documents(docs, "en"), encoder.encode_queries(queries, "en"))
    bf16_top = top10(bf16.encode_documents(docs, "en"), bf16.encode_queries(queries, "en"))
    assert ranking_agreement(fp32_top, bf16_top) >= 0.9


def test_fp16_on_cpu_and_missing_cuda_are_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(InvalidInputError, match="fp16 is for CUDA"):
        Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", precision="fp16"))
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="no CUDA device"):
            Encoder.from_pretrained(tiny_checkpoint, Settings(device="cuda:0"))


def test_settings_reject_a_bad_device() -> None:
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        Settings(device="gpu")


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMSEARCH_BATCH_SIZE", "7")
    monkeypatch.setenv("XMSEARCH_MARKER_CONVENTION", "current")
    settings = Settings()
    assert settings.batch_size == 7 and settings.marker_convention == "current"


def test_threads_setting_is_applied(tiny_checkpoint: Path) -> None:
    before = torch.get_num_threads()
    try:
        Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

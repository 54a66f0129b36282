"""The encoder against goldens written by the reference (colbert-ai 0.2.20 / 0.2.22, see make_goldens.py):
ids exactly, vectors within 1e-4 in fp32, for queries and documents, both marker conventions."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from tests.conftest import GOLDEN
from xmsearch.retriever import Encoder, InvalidInputError
from xmsearch.settings import Settings

CONVENTIONS = ["legacy", "current"]


def _load(convention: str) -> tuple[dict[str, Any], Any]:
    data = np.load(GOLDEN / f"{convention}.npz")
    return json.loads(str(data["manifest"])), data


def _batches(manifest: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The cases grouped as the reference encoded them, in batch order."""
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for case in manifest["cases"]:
        groups[case["batch_id"]].append(case)
    return [sorted(cases, key=lambda c: c["batch_index"]) for _, cases in sorted(groups.items())]


@pytest.fixture(scope="module", params=CONVENTIONS)
def golden(request: pytest.FixtureRequest) -> tuple[Encoder, dict[str, Any], Any]:
    manifest, data = _load(request.param)
    settings = Settings(device="cpu", precision="fp32", marker_convention=request.param, detect_language=False)
    return Encoder.from_pretrained(GOLDEN / "checkpoint", settings), manifest, data


def test_goldens_cover_what_the_issue_asks(golden: tuple[Encoder, dict[str, Any], Any]) -> None:
    _, manifest, _ = golden
    cases = manifest["cases"]
    assert {c["kind"] for c in cases} == {"query", "doc"}
    assert {"en_XX", "fr_XX", "de_DE", "zh_CN", "ar_AR"} <= {c["lang"] for c in cases}
    assert any(c["truncated"] and c["kind"] == "query" for c in cases)
    assert any(c["truncated"] and c["kind"] == "doc" for c in cases)
    assert any(c["n_kept"] < c["n_attended"] for c in cases if c["kind"] == "doc")  # skiplist at work


def test_skiplist_matches_reference(golden: tuple[Encoder, dict[str, Any], Any]) -> None:
    encoder, _, data = golden
    assert encoder.tokenizer.skiplist.tolist() == data["skiplist"].tolist()


def test_token_ids_match_exactly(golden: tuple[Encoder, dict[str, Any], Any]) -> None:
    encoder, manifest, data = golden
    tok = encoder.tokenizer
    for batch in _batches(manifest):
        texts = [c["text"] for c in batch]
        if batch[0]["kind"] == "query":
            built = tok.query_batch(tok.query_rows(texts))
        else:
            built = tok.document_batch(tok.document_rows(texts))
        for i, case in enumerate(batch):
            key = case["key"]
            assert built.input_ids[i].tolist() == data[f"{key}/input_ids"].tolist(), case["text"]
            assert built.attention_mask[i].tolist() == data[f"{key}/attention_mask"].tolist(), case["text"]
            assert built.keep[i].tolist() == data[f"{key}/keep"].tolist(), case["text"]


def test_vectors_match_within_1e_4(golden: tuple[Encoder, dict[str, Any], Any]) -> None:
    assert vectors_match(*golden) >= 70


def vectors_match(encoder: Encoder, manifest: dict[str, Any], data: Any) -> int:
    """Every non-empty case encoded as the reference encoded it, within 1e-4; how many were compared."""
    compared = 0
    for batch in _batches(manifest):
        batch = [c for c in batch if c["text"].strip()]
        if not batch:
            continue
        texts, langs = [c["text"] for c in batch], [c["lang"] for c in batch]
        encode = encoder.encode_queries if batch[0]["kind"] == "query" else encoder.encode_documents
        for case, got in zip(batch, encode(texts, langs), strict=True):
            want = data[f"{case['key']}/vectors"]
            assert got.dtype == np.float32
            assert got.shape == want.shape, case["text"]
            np.testing.assert_allclose(got, want, atol=1e-4, err_msg=case["text"])
            compared += 1
    return compared


def test_maxsim_scores_match(golden: tuple[Encoder, dict[str, Any], Any]) -> None:
    encoder, manifest, data = golden
    by_key = {c["key"]: c for c in manifest["cases"]}
    q_keys = [str(k) for k in data["scores/query_keys"]]
    d_keys = [str(k) for k in data["scores/doc_keys"]]
    usable_q = [i for i, k in enumerate(q_keys) if by_key[k]["text"].strip()]
    usable_d = [j for j, k in enumerate(d_keys) if by_key[k]["text"].strip()]
    queries = encoder.encode_queries(
        [by_key[q_keys[i]]["text"] for i in usable_q], [by_key[q_keys[i]]["lang"] for i in usable_q]
    )
    docs = encoder.encode_documents(
        [by_key[d_keys[j]]["text"] for j in usable_d], [by_key[d_keys[j]]["lang"] for j in usable_d]
    )
    ours = np.array([[(q @ d.T).max(axis=1).sum() for d in docs] for q in queries])
    np.testing.assert_allclose(ours, data["scores/maxsim"][np.ix_(usable_q, usable_d)], atol=1e-3)


def test_empty_texts_are_refused_not_encoded(golden: tuple[Encoder, dict[str, Any], Any]) -> None:
    encoder, manifest, _ = golden
    empty = [c for c in manifest["cases"] if not c["text"].strip()]
    assert empty, "the goldens include empty texts"
    with pytest.raises(InvalidInputError, match="empty"):
        encoder.encode_documents([empty[0]["text"]], "en")

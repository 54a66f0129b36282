"""Tokenisation with the real XLM-R tokenizer: the examples of the design note, id for id."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xmsearch.retriever.model.checkpoint import read_spec
from xmsearch.retriever.model.tiny import make_tiny
from xmsearch.retriever.model.tokenization import ColbertTokenizer

MASK = 250001
XLMR_SKIPLIST = [6, 15, 20, 44, 101, 152, 242, 248, 378, 468, 619, 661, 705, 711, 977, 997, 1374, 1388, 1745, 2203,
                 2819, 3650, 4426, 6780, 9473, 10114, 10666, 13331, 51912]  # fmt: skip


@pytest.fixture(scope="module")
def xlmr_checkpoint(xlmr_tokenizer: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint carrying the real XLM-R tokenizer, with ColBERT-XM's lengths."""
    out = tmp_path_factory.mktemp("xlmr") / "ckpt"
    return make_tiny(
        out, tokenizer_json=xlmr_tokenizer, hidden_size=8, layers=1, heads=1, query_maxlen=32, doc_maxlen=256
    )


def _tok(path: Path, convention: str = "legacy") -> ColbertTokenizer:
    return ColbertTokenizer(read_spec(path), convention)  # type: ignore[arg-type]


def test_legacy_query_example(xlmr_checkpoint: Path) -> None:
    tok = _tok(xlmr_checkpoint)
    batch = tok.query_batch(tok.query_rows(["what color is amber urine"]))
    assert batch.input_ids[0].tolist() == [0, 3, 5, 2367, 10576, 83, 920, 56, 55400, 13, 2] + [MASK] * 21
    assert batch.attention_mask[0].tolist() == [1] * 32  # attend_to_mask_tokens
    assert batch.keep.all()


def test_legacy_document_example(xlmr_checkpoint: Path) -> None:
    tok = _tok(xlmr_checkpoint)
    batch = tok.document_batch(tok.document_rows(["Ceci est un premier document."]))
    assert batch.input_ids[0].tolist() == [0, 3, 5, 124532, 437, 51, 9882, 12937, 5, 2]
    assert batch.keep[0].all()  # the glued final "." (5) and the legacy "." are kept


def test_current_query_example(xlmr_checkpoint: Path) -> None:
    tok = _tok(xlmr_checkpoint, "current")
    batch = tok.query_batch(tok.query_rows(["what color is amber urine"]))
    assert batch.input_ids[0].tolist() == [0, 3, 2367, 10576, 83, 920, 56, 55400, 13, 2] + [MASK] * 22


def test_xlmr_skiplist_is_the_29_reference_ids(xlmr_checkpoint: Path) -> None:
    assert _tok(xlmr_checkpoint).skiplist.tolist() == XLMR_SKIPLIST


def test_standalone_punctuation_is_dropped_glued_is_kept(xlmr_checkpoint: Path) -> None:
    tok = _tok(xlmr_checkpoint)
    batch = tok.document_batch(tok.document_rows(["word , word."]))
    ids, keep = batch.input_ids[0].tolist(), batch.keep[0].tolist()
    dropped = [i for i, k in zip(ids, keep, strict=True) if not k]
    assert dropped and set(dropped) <= set(XLMR_SKIPLIST)
    assert ids[-2] == 5 and keep[-2]  # "word." ends with the glued "." piece, which stays


def test_truncation_counts_special_tokens(xlmr_checkpoint: Path) -> None:
    tok = _tok(xlmr_checkpoint)
    long = " ".join(["amber"] * 1000)
    assert len(tok.document_rows([long])[0]) == 256
    assert tok.document_rows([long])[0][-1] == 2  # </s> survives truncation
    assert len(tok.query_rows([long])[0]) == 32


def test_markers_missing_from_vocab_become_unk(xlmr_checkpoint: Path) -> None:
    tok = _tok(xlmr_checkpoint)
    assert tok.query_marker_id == tok.doc_marker_id == 3


def test_marker_in_vocab_is_used(tiny_checkpoint: Path) -> None:
    spec = dataclasses.replace(read_spec(tiny_checkpoint), query_marker="<s>", doc_marker="</s>")
    tok = ColbertTokenizer(spec)
    assert tok.query_rows(["hello"])[0][1] == 0
    assert tok.document_rows(["hello"])[0][1] == 2


def test_no_skiplist_without_mask_punctuation(tiny_checkpoint: Path) -> None:
    spec = dataclasses.replace(read_spec(tiny_checkpoint), mask_punctuation=False)
    tok = ColbertTokenizer(spec)
    assert tok.skiplist.size == 0
    assert tok.document_batch(tok.document_rows(["a , b ."])).keep.all()


def test_masks_not_attended_when_metadata_says_so(tiny_checkpoint: Path) -> None:
    spec = dataclasses.replace(read_spec(tiny_checkpoint), attend_to_mask_tokens=False)
    tok = ColbertTokenizer(spec)
    batch = tok.query_batch(tok.query_rows(["hello"]))
    assert batch.attention_mask[0].sum() == len(tok.query_rows(["hello"])[0])
    assert batch.keep.all()  # the mask rows are still output vectors, as in the reference

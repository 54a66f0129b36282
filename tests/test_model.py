"""Device and precision choice, and adapter routing (same bits as transformers' own adapter loop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xmsearch.retriever import Encoder
from xmsearch.retriever.model import precision
from xmsearch.retriever.model.loading import pick_device, pick_dtype, set_adapter_routing
from xmsearch.retriever.model.precision import auto_precision, cache_key, choose
from xmsearch.settings import Settings


def test_auto_device_and_precision() -> None:
    device = pick_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16


def test_routing_gives_the_same_bits_as_transformers(encoder: Encoder) -> None:
    tok, backbone = encoder.tokenizer, encoder.model.backbone
    batch = tok.document_batch(tok.document_rows(["one text", "another, longer text here", "third"]))
    ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
    for lang_ids in (torch.tensor([0, 0, 0]), torch.tensor([1, 0, 4])):
        with torch.inference_mode():
            routed = backbone(input_ids=ids, attention_mask=mask, lang_ids=lang_ids).last_hidden_state
            set_adapter_routing(backbone, False)
            try:
                plain = backbone(input_ids=ids, attention_mask=mask, lang_ids=lang_ids).last_hidden_state
            finally:
                set_adapter_routing(backbone, True)
        assert torch.equal(routed, plain)
    assert "lang_adapter" in vars(backbone.encoder.layer[0].output)


def test_auto_precision_measures_once_then_reads_the_cache(
    encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone, spec = encoder.model.backbone, encoder.spec
    cache = tmp_path / "precision.json"
    chosen = auto_precision(backbone, spec.query_maxlen, spec.doc_maxlen, cache)
    recorded = json.loads(cache.read_text())[cache_key(backbone, spec.query_maxlen, spec.doc_maxlen)]
    assert chosen == recorded["chosen"] == choose(recorded) and chosen in ("fp32", "bf16")
    assert recorded["fp32"]["query"] > 0 and recorded["bf16"]["documents"] > 0 and recorded["cosine"] > 0.99
    assert next(backbone.parameters()).dtype == torch.float32  # measured on a copy: the model is untouched

    def no_measuring(*args: object) -> None:
        raise AssertionError("measured again")

    monkeypatch.setattr(precision, "measure", no_measuring)
    assert auto_precision(backbone, spec.query_maxlen, spec.doc_maxlen, cache) == chosen


def test_bf16_is_taken_only_where_faster_on_both_and_close_enough() -> None:
    fast = {"fp32": {"query": 0.05, "documents": 1.0}, "bf16": {"query": 0.02, "documents": 0.4}, "cosine": 0.9998}
    assert choose(fast) == "bf16"
    assert choose({**fast, "bf16": {"query": 0.02, "documents": 1.5}}) == "fp32"  # slower documents
    assert choose({**fast, "bf16": {"query": 0.049, "documents": 0.4}}) == "fp32"  # not faster by 10%
    assert choose({**fast, "cosine": 0.99}) == "fp32"


def test_auto_on_a_cpu_loads_what_the_measurement_chose(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for chosen, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        monkeypatch.setattr(precision, "choose", lambda figures, chosen=chosen: chosen)
        (tmp_path / "xmsearch" / "precision.json").unlink(missing_ok=True)
        loaded = Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", precision="auto"))
        assert loaded.model.dtype == dtype and next(loaded.model.backbone.parameters()).dtype == dtype

"""Device and precision choice, and adapter routing (same bits as transformers' own adapter loop)."""

from __future__ import annotations

import torch

from xmsearch.retriever import Encoder
from xmsearch.retriever.model.loading import pick_device, pick_dtype, set_adapter_routing


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

"""Tiny checkpoints: reproducible bytes, the reference on-disk format, and loadable by transformers."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from transformers import AutoTokenizer, XmodModel

from xmsearch.retriever.model.tiny import build_tokenizer, make_tiny


def test_same_seed_same_bytes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    again = make_tiny(tmp_path / "again")
    for name in ("config.json", "artifact.metadata", "model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (tiny_checkpoint / name).read_bytes(), name


def test_layout_matches_the_reference_checkpoint(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "xmod" and config["architectures"] == ["HF_ColBERT"]
    meta = json.loads((tiny_checkpoint / "artifact.metadata").read_text())
    assert meta["query_token_id"] == "[unused0]" and meta["doc_token_id"] == "[unused1]"
    with safe_open(tiny_checkpoint / "model.safetensors", framework="pt") as weights:
        keys = set(weights.keys())
        assert weights.get_slice("linear.weight").get_shape() == [meta["dim"], config["hidden_size"]]
    assert all(k.startswith("roberta.") for k in keys - {"linear.weight"})
    assert any(".adapter_modules.fr_XX." in k for k in keys)


def test_transformers_loads_it_directly(tiny_checkpoint: Path) -> None:
    model = XmodModel.from_pretrained(tiny_checkpoint)
    assert list(model.encoder.layer[0].output.adapter_modules.keys())[:2] == ["en_XX", "fr_XX"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert tokenizer.pad_token_id == 1 and tokenizer.mask_token == "<mask>"


def test_project_tokenizer_is_xlmr_shaped() -> None:
    tok = build_tokenizer()
    assert [tok.token_to_id(t) for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert tok.token_to_id("<mask>") == tok.get_vocab_size() - 1
    assert tok.encode("hello world").ids[0] == 0 and tok.encode("hello world").ids[-1] == 2


def test_given_tokenizer_and_languages(tmp_path: Path) -> None:
    tokenizer_json = tmp_path / "tok.json"
    build_tokenizer(max_words=50).save(str(tokenizer_json))
    out = make_tiny(tmp_path / "ckpt", languages=["sw_KE", "en_XX"], tokenizer_json=tokenizer_json, dim=8)
    config = json.loads((out / "config.json").read_text())
    assert config["languages"] == ["sw_KE", "en_XX"] and config["default_language"] == "sw_KE"
    assert json.loads((out / "artifact.metadata").read_text())["dim"] == 8

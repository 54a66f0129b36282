"""Tiny ColBERT-XM checkpoints in the exact on-disk format of `antoinelouis/colbert-xm`.

Random weights, a few adapters, and either a small XLM-R-shaped tokenizer trained here on a bundled
multilingual corpus or a given tokenizer.json. For tests and offline smoke runs: deterministic for a
given seed, so two runs give byte-identical files.
"""

from __future__ import annotations

import json
import math
import shutil
import string
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import XmodConfig, XmodModel

from xmsearch.retriever.model.checkpoint import (
    BACKBONE_PREFIX,
    CONFIG_FILE,
    METADATA_FILE,
    POSITION_OFFSET,
    PROJECTION_KEY,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
)

DEFAULT_LANGUAGES = ("en_XX", "fr_XX", "de_DE", "es_XX", "zh_CN", "zh_TW", "ar_AR", "ru_RU")
SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


def build_tokenizer(max_words: int = 600) -> Tokenizer:
    """An XLM-R-shaped Unigram tokenizer built from the bundled corpus by counting (no training, so
    the result is reproducible): <s>=0 <pad>=1 </s>=2 <unk>=3, then `▁`, every character, `▁`-glued
    punctuation (so the skiplist has several ids, as XLM-R's does) and the most frequent words."""
    corpus = resources.files("xmsearch.retriever.model").joinpath("data/tiny_corpus.txt").read_text(encoding="utf-8")
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    words = Counter("▁" + w for w in normalizer.normalize_str(corpus).split())
    chars = Counter(c for w, n in words.items() for c in w for _ in range(n))
    chars.update({c: 1 for c in string.punctuation + string.digits} | {"▁" + c: 1 for c in "([{-\"'«¿¡"})
    counts = chars + Counter(dict(sorted(words.items(), key=lambda wn: (-wn[1], wn[0]))[:max_words]))
    total = sum(counts.values())
    pieces = sorted(((p, round(math.log(n / total), 6)) for p, n in counts.items()), key=lambda p: (-p[1], p[0]))
    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    tokenizer = Tokenizer(models.Unigram(specials + pieces, unk_id=3))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t, _ in specials])
    tokenizer.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tokenizer


def make_tiny(
    out: Path,
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    dim: int = 16,
    query_maxlen: int = 64,
    doc_maxlen: int = 128,
    attend_to_mask_tokens: bool = True,
    tokenizer_json: Path | None = None,
    seed: int = 0,
) -> Path:
    """Write a random tiny checkpoint to `out` (created; existing checkpoint files are replaced).

    query_maxlen defaults to 64, not ColBERT-XM's 32: the bundled tokenizer's small vocabulary spells
    unknown words letter by letter, so real queries need more tokens than with XLM-R."""
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_json is not None:
        shutil.copyfile(tokenizer_json, out / TOKENIZER_FILE)
        tokenizer = Tokenizer.from_file(str(out / TOKENIZER_FILE))
    else:
        tokenizer = build_tokenizer()
        tokenizer.save(str(out / TOKENIZER_FILE))
    config = XmodConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 4,
        max_position_embeddings=max(query_maxlen, doc_maxlen) + POSITION_OFFSET,
        type_vocab_size=1,
        languages=list(languages),
        default_language=languages[0],
        adapter_reduction_factor=2,
        adapter_layer_norm=False,
        adapter_reuse_layer_norm=True,
        ln_before_adapter=True,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    _write_json(out / CONFIG_FILE, {**config.to_diff_dict(), "architectures": ["HF_ColBERT"]})
    _write_json(out / METADATA_FILE, _metadata(dim, query_maxlen, doc_maxlen, attend_to_mask_tokens))
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        extra = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512} if "config" in name else {}
        _write_json(out / name, {**SPECIAL_TOKENS, **extra})
    save_file(_weights(config, dim, seed), str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    return out


def _weights(config: XmodConfig, dim: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    backbone = XmodModel(config)
    tensors = {BACKBONE_PREFIX + k: v for k, v in backbone.state_dict().items()}
    for key, value in tensors.items():
        # Random init makes adapters near-identity; widen them so that languages visibly differ.
        if ".adapter_modules." in key and key.endswith("weight"):
            tensors[key] = torch.randn(value.shape, generator=generator) * 0.3
    tensors[PROJECTION_KEY] = torch.randn(dim, config.hidden_size, generator=generator) / config.hidden_size**0.5
    return {k: v.contiguous() for k, v in tensors.items()}


def _metadata(dim: int, query_maxlen: int, doc_maxlen: int, attend_to_mask_tokens: bool) -> dict[str, object]:
    """The ColBERT settings colbert-ai writes into artifact.metadata (the ones that shape vectors)."""
    return {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_token": "[Q]",
        "doc_token": "[D]",
        "dim": dim,
        "query_maxlen": query_maxlen,
        "doc_maxlen": doc_maxlen,
        "attend_to_mask_tokens": attend_to_mask_tokens,
        "mask_punctuation": True,
        "similarity": "cosine",
        "interaction": "colbert",
        "checkpoint": "xmsearch-tiny",
    }


def _write_json(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")

"""A checkpoint opened for training: the backbone in fp32 with only the chosen weights trainable, the
projection as a parameter, a forward pass that gives exactly the vectors the Encoder gives (same
tokenisation, markers, query augmentation and skiplist; dropout aside), MaxSim scores with padding
masked as colbert-ai masks it, and `save`, which writes a checkpoint in the reference's on-disk format:
the source's tensors with the trained ones replaced (every frozen tensor stays bit-identical)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xmsearch.retriever.model.checkpoint import (
    BACKBONE_PREFIX,
    CONFIG_FILE,
    PROJECTION_KEY,
    WEIGHTS_FILE,
    locate,
    read_spec,
)
from xmsearch.retriever.model.languages import LanguageResolver
from xmsearch.retriever.model.loading import load_model, pick_device
from xmsearch.retriever.model.tokenization import ColbertTokenizer, TokenBatch

RECORD_FILE = "training.json"  # how a checkpoint written here was made
MASKED = -1e4  # a document's padding and skiplist rows never win a query token's max (colbert-ai: -9999)


@dataclass(frozen=True)
class Progress:
    """What a training loop reports after each optimizer step."""

    step: int
    steps: int
    loss: float
    examples_per_s: float
    tokens_per_s: float


class TrainableColbert(torch.nn.Module):
    """The backbone and projection of a checkpoint, with `trainable` choosing the backbone weights
    that learn (by name); the projection learns when `projection` is true."""

    def __init__(self, name: str, device: str, trainable: Callable[[str], bool], projection: bool = True) -> None:
        super().__init__()
        self.spec = read_spec(locate(name), name)
        loaded = load_model(self.spec, pick_device(device), "fp32")
        self.device = loaded.device
        self.backbone = loaded.backbone
        self.projection = torch.nn.Parameter(loaded.projection.clone(), requires_grad=projection)
        for parameter_name, parameter in self.backbone.named_parameters():
            parameter.requires_grad = trainable(parameter_name)
        self.tokenizer = ColbertTokenizer(self.spec)
        self.languages = LanguageResolver(self.spec.languages, "error")

    def adapter_index(self, language: str) -> int:
        """The position of `language`'s adapter (any code the resolver knows)."""
        return self.languages.index[self.languages.resolve(language).adapter]

    def queries(self, texts: Sequence[str], lang_ids: Sequence[int]) -> torch.Tensor:
        """(n, query_maxlen, dim) unit vectors, every row kept (the query augmentation)."""
        vectors, _ = self._encode(self.tokenizer.query_batch(self.tokenizer.queries(list(texts)).rows), lang_ids)
        return vectors

    def documents(self, texts: Sequence[str], lang_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, longest, dim) unit vectors and the (n, longest) mask of the rows kept."""
        return self._encode(self.tokenizer.document_batch(self.tokenizer.documents(list(texts)).rows), lang_ids)

    def _encode(self, batch: TokenBatch, lang_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.backbone(
            input_ids=torch.from_numpy(batch.input_ids).to(self.device),
            attention_mask=torch.from_numpy(batch.attention_mask).to(self.device),
            lang_ids=torch.tensor(np.asarray(lang_ids, dtype=np.int64), device=self.device),
        ).last_hidden_state
        keep = torch.from_numpy(batch.keep).to(self.device)
        vectors = (hidden.float() @ self.projection.T) * keep.unsqueeze(-1)
        return torch.nn.functional.normalize(vectors, p=2, dim=2), keep


def maxsim(queries: torch.Tensor, documents: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(n queries, m documents) late-interaction scores: each query token's best document row, summed."""
    similarities = torch.einsum("qld,pmd->qplm", queries, documents)
    similarities = similarities.masked_fill(~keep[None, :, None, :], MASKED)
    return similarities.max(dim=3).values.sum(dim=2)


def save(model: TrainableColbert, out: Path, record: dict[str, Any], config: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint to `out`: the source's files, its tensors with every trainable one (and
    those of `model.backbone` the source lacks, e.g. a new adapter) replaced, `config` (if given) as
    config.json, and `record` as training.json."""
    source = model.spec.path
    out.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.is_file() and file.name not in (WEIGHTS_FILE, RECORD_FILE):
            shutil.copyfile(file, out / file.name)
    tensors = load_file(str(source / WEIGHTS_FILE))
    stored = tensors[PROJECTION_KEY].dtype  # a new tensor is stored as the checkpoint stores its own
    for name, parameter in model.backbone.named_parameters():
        key = BACKBONE_PREFIX + name
        if parameter.requires_grad or key not in tensors:
            dtype = tensors[key].dtype if key in tensors else stored
            tensors[key] = parameter.detach().to("cpu", dtype).contiguous()
    tensors[PROJECTION_KEY] = model.projection.detach().to("cpu", tensors[PROJECTION_KEY].dtype).contiguous()
    partial = out / f".{WEIGHTS_FILE}.partial"
    save_file(tensors, str(partial), metadata={"format": "pt"})
    partial.replace(out / WEIGHTS_FILE)  # whole or not at all
    if config is not None:
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    (out / RECORD_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return out

"""`precision=auto` on a CPU: fp32 or bf16, chosen by timing the model's own shapes, not by CPU flags.

bf16 was measured at 3.3x fp32's throughput on one CPU of the same kind and at 0.61x on another (AVX512-
BF16 without AMX), so flags do not tell. Once per CPU and model shape, the loaded fp32 backbone and a
bf16 copy of it each encode a query (1 x query_maxlen) and a document batch (4 x doc_maxlen); bf16 is
taken where it is faster on both and its vectors keep a cosine of at least MIN_COSINE to fp32's. The
result is cached (~/.cache/xmsearch/precision.json, keyed by CPU model, torch version, threads and model
shape), so later loads only read it.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import XmodModel

from xmsearch.retriever.model.measured import cache_root, cpu_name, model_shape, remembered, timed

log = logging.getLogger(__name__)

MIN_COSINE = 0.999  # bf16 vectors must stay this close to fp32's (measured 0.9998 on real-size models)
MIN_SPEEDUP = 1.1  # and be this much faster, on queries and on documents
DOCUMENT_BATCH = 4


def cache_key(backbone: XmodModel, query_maxlen: int, doc_maxlen: int) -> str:
    shape = model_shape(backbone.config)
    return (
        f"{cpu_name()}|torch {torch.__version__}|{torch.get_num_threads()} threads|{shape}|{query_maxlen}|{doc_maxlen}"
    )


def measure(backbone: XmodModel, query_maxlen: int, doc_maxlen: int, seed: int = 0) -> dict[str, Any]:
    """fp32 and bf16 seconds per query and per document batch, and the mean cosine of their vectors."""
    generator = torch.Generator().manual_seed(seed)
    vocab = backbone.config.vocab_size
    shapes = {"query": (1, query_maxlen), "documents": (DOCUMENT_BATCH, doc_maxlen)}
    inputs = {name: torch.randint(5, vocab, shape, generator=generator) for name, shape in shapes.items()}
    half = copy.deepcopy(backbone).to(torch.bfloat16)  # type: ignore[arg-type]  # transformers wraps .to
    figures: dict[str, Any] = {"fp32": {}, "bf16": {}, "cosine": 1.0}
    cosines = []
    with torch.inference_mode():
        for name, ids in inputs.items():
            outputs = {}
            for label, model in (("fp32", backbone), ("bf16", half)):

                def forward(model: XmodModel = model, ids: torch.Tensor = ids) -> torch.Tensor:
                    lang_ids = torch.zeros(ids.shape[0], dtype=torch.long)
                    return model(
                        input_ids=ids, attention_mask=torch.ones_like(ids), lang_ids=lang_ids
                    ).last_hidden_state

                figures[label][name], outputs[label] = timed(forward)
            cosines.append(
                torch.nn.functional.cosine_similarity(outputs["fp32"].float(), outputs["bf16"].float(), dim=-1).mean()
            )
    del half
    figures["cosine"] = float(torch.stack(cosines).min())
    return figures


def choose(figures: dict[str, Any]) -> str:
    """bf16 where it is faster on queries and documents by MIN_SPEEDUP and close enough; else fp32."""
    faster = all(figures["fp32"][name] >= MIN_SPEEDUP * figures["bf16"][name] for name in ("query", "documents"))
    return "bf16" if faster and figures["cosine"] >= MIN_COSINE else "fp32"


def cache_file() -> Path:
    return cache_root() / "precision.json"


def auto_precision(backbone: XmodModel, query_maxlen: int, doc_maxlen: int, cache: Path | None = None) -> str:
    """fp32 or bf16 for this CPU and model shape: read from the cache, or measured once and cached."""
    cache = cache or cache_file()

    def measured() -> dict[str, Any]:
        figures = measure(backbone, query_maxlen, doc_maxlen)
        figures["chosen"] = choose(figures)
        log.info(
            "precision auto: %s (query %.1f ms fp32, %.1f ms bf16; documents %.0f ms fp32, %.0f ms bf16; cosine %.5f)",
            figures["chosen"], 1000 * figures["fp32"]["query"], 1000 * figures["bf16"]["query"],
            1000 * figures["fp32"]["documents"], 1000 * figures["bf16"]["documents"], figures["cosine"],
        )  # fmt: skip
        return figures

    return remembered(cache, cache_key(backbone, query_maxlen, doc_maxlen), ("fp32", "bf16"), measured)

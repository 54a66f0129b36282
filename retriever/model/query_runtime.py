"""`query_runtime=auto`: what runs a searching process's query forwards, decided once per CPU and model.

A query is one short forward (query_maxlen tokens), where torch's per-call overheads weigh most. On a
CPU with ONNX Runtime installed, the loaded torch backbone (fp32 or bf16, as `precision` chose) and the
query graph in fp32 (`onnx`: torch fp32's vectors within 1e-5) each encode a query, and `onnx` is taken
where it is the faster: on an AMD EPYC with AVX2 only, 59 ms against torch fp32's 99 ms (README). Its
vectors are at least as exact as torch's, so no agreement is traded. `onnx-int8` is never taken by
auto: it moves rankings (recall@10 of 0.88-0.90 against fp32's top-10 on the real-size random model).
On a CUDA device, or without ONNX Runtime, queries stay on torch. The choice is kept in
~/.cache/xmsearch/query_runtime.json, keyed by CPU model, the torch and ONNX Runtime versions, threads,
the model's shape and its dtype, so later loads only read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from xmsearch.retriever.model.measured import cache_root, cpu_name, remembered, timed
from xmsearch.retriever.model.onnx_query import missing_package

log = logging.getLogger(__name__)


def unavailable(device: torch.device) -> str | None:
    """Why queries cannot run on ONNX Runtime here (None: they can)."""
    if device.type != "cpu":
        return f"queries run on {device}"
    if (module := missing_package()) is not None:
        return f"the package {module} is not installed (pip install {module})"
    return None


def cache_key(config: PretrainedConfig, query_maxlen: int, dtype: torch.dtype, threads: int) -> str:
    import onnxruntime

    shape = f"{config.hidden_size}x{config.num_hidden_layers}x{config.intermediate_size}"
    return (
        f"{cpu_name()}|torch {torch.__version__}|onnxruntime {onnxruntime.__version__}|{threads} threads|{shape}"
        f"|{query_maxlen}|{str(dtype).removeprefix('torch.')}"
    )


def choose(figures: dict[str, Any]) -> str:
    """onnx where its query measured faster than torch's; else torch."""
    return "onnx" if figures["onnx"] < figures["torch"] else "torch"


def cache_file() -> Path:
    return cache_root() / "query_runtime.json"


def auto_query_runtime(
    key: str, on_torch: Callable[[], object], on_onnx: Callable[[], object], cache: Path | None = None
) -> str:
    """onnx or torch for this CPU and model: read from the cache, or each runtime's query timed once."""

    def measured() -> dict[str, Any]:
        figures: dict[str, Any] = {"torch": timed(on_torch)[0], "onnx": timed(on_onnx)[0]}
        figures["chosen"] = choose(figures)
        log.info(
            "query runtime auto: %s (a query: %.1f ms on torch, %.1f ms on ONNX Runtime)",
            figures["chosen"], 1000 * figures["torch"], 1000 * figures["onnx"],
        )  # fmt: skip
        return figures

    return remembered(cache or cache_file(), key, ("onnx", "torch"), measured)

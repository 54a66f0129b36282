"""`query_runtime=auto`: what runs a searching process's query forwards, decided once per CPU and model.

A query is one short forward (query_maxlen tokens), where torch's per-call overheads weigh most. On a
CPU with ONNX Runtime installed, the loaded torch backbone (fp32 or bf16, as `precision` chose) and the
query graph in fp32 (`onnx`: torch fp32's vectors within 1e-5) encode the same query in turns, and
`onnx` is taken where it is MIN_SPEEDUP faster (it costs a session, 341 MB at the real size, and a
one-off export): on an AMD EPYC with AVX2 only, 59 ms against torch fp32's 99 ms (README). Its vectors
are at least as exact as torch's, so no agreement is traded. `onnx-int8` is never taken by auto: it
moves rankings (recall@10 of 0.88-0.90 against fp32's top-10 on the real-size random model). On a
CUDA device, or without ONNX Runtime, queries stay on torch. The choice is kept in
~/.cache/xmsearch/query_runtime.json, keyed by CPU model, the torch and ONNX Runtime versions, how the
graph is made, threads, the model's shape and its dtype, so later loads only read it.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from xmsearch.retriever.model.measured import cache_root, cpu_name, in_turns, model_shape, remembered
from xmsearch.retriever.model.onnx_query import EXPORT_REVISION, missing_package

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.1  # onnx must be this much faster than torch to be worth its session


def unavailable(device: torch.device) -> str | None:
    """Why queries cannot run on ONNX Runtime here (None: they can)."""
    if device.type != "cpu":
        return f"queries run on {device}"
    if (module := missing_package()) is not None:
        return f"the package {module} is not installed (pip install {module})"
    return None


def cache_key(config: PretrainedConfig, query_maxlen: int, dtype: torch.dtype, threads: int) -> str:
    return (
        f"{cpu_name()}|torch {torch.__version__}|onnxruntime {importlib.metadata.version('onnxruntime')}"
        f"|r{EXPORT_REVISION}|{threads} threads|{model_shape(config)}|{query_maxlen}"
        f"|{str(dtype).removeprefix('torch.')}"
    )


def choose(figures: dict[str, Any]) -> str:
    """onnx where its query measured MIN_SPEEDUP faster than torch's; else torch."""
    return "onnx" if MIN_SPEEDUP * figures["onnx"] <= figures["torch"] else "torch"


def cache_file() -> Path:
    return cache_root() / "query_runtime.json"


def auto_query_runtime(
    key: str, on_torch: Callable[[], object], on_onnx: Callable[[], object], cache: Path | None = None
) -> str:
    """onnx or torch for this CPU and model: read from the cache, or each runtime's query timed once."""

    def measured() -> dict[str, Any]:
        figures: dict[str, Any] = in_turns({"torch": on_torch, "onnx": on_onnx})
        figures["chosen"] = choose(figures)
        log.info(
            "query runtime auto: %s (a query: %.1f ms on torch, %.1f ms on ONNX Runtime)",
            figures["chosen"], 1000 * figures["torch"], 1000 * figures["onnx"],
        )  # fmt: skip
        return figures

    return remembered(cache or cache_file(), key, ("onnx", "torch"), measured)

"""Loading the XMOD backbone and the ColBERT projection onto a device, in a chosen precision."""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import safe_open
from transformers import XmodConfig, XmodModel
from transformers.utils import logging as hf_logging

from xmsearch.retriever.errors import CheckpointError, InvalidInputError
from xmsearch.retriever.model.checkpoint import PROJECTION_KEY, WEIGHTS_FILE, CheckpointSpec

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoadedModel:
    """The backbone (eval mode, on its device and dtype) and the fp32 projection [dim, hidden]."""

    backbone: XmodModel
    projection: torch.Tensor
    device: torch.device
    dtype: torch.dtype


def pick_device(name: str) -> torch.device:
    """auto -> the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {name!r} was asked for but torch sees no CUDA device")
    return device


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype to load in: auto -> fp16 on CUDA (as the reference encodes documents), fp32 on CPU
    (where `load_model` then measures whether bf16 is faster: precision.py)."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise InvalidInputError("precision fp16 is for CUDA devices; on the CPU use bf16 or fp32")
    return _DTYPES[precision]


def load_model(spec: CheckpointSpec, device: torch.device, precision: str) -> LoadedModel:
    """Load the backbone (prefix `roberta.` stripped by transformers) and the projection, in the
    precision asked for (auto on a CPU: fp32 or bf16, whichever measured faster here)."""
    dtype = pick_dtype(precision, device)
    backbone = load_backbone(spec, dtype)
    with safe_open(spec.path / WEIGHTS_FILE, framework="pt") as weights:
        projection = weights.get_tensor(PROJECTION_KEY).to(device=device, dtype=torch.float32)
    backbone.to(device=device).eval()  # type: ignore[call-arg]  # transformers wraps .to in a decorator mypy misreads
    set_adapter_routing(backbone, True)
    if precision == "auto" and device.type == "cpu":
        from xmsearch.retriever.model.precision import auto_precision

        if auto_precision(backbone, spec.query_maxlen, spec.doc_maxlen) == "bf16":
            backbone.to(torch.bfloat16)  # type: ignore[call-arg,arg-type]
            dtype = torch.bfloat16
    log.info("loaded %s on %s in %s", spec.model_id, device, str(dtype).removeprefix("torch."))
    return LoadedModel(backbone, projection, device, dtype)


def load_backbone(spec: CheckpointSpec, dtype: torch.dtype, attention: str = "sdpa") -> XmodModel:
    """The XMOD backbone of a checkpoint, on the CPU, in `dtype`."""
    config = XmodConfig.from_pretrained(spec.path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused `linear.weight` is expected, not worth a warning
    hf_logging.disable_progress_bar()
    try:
        return XmodModel.from_pretrained(spec.path, config=config, dtype=dtype, attn_implementation=attention)
    except Exception as exc:
        raise CheckpointError(f"cannot load the XMOD backbone from {spec.path}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def set_adapter_routing(backbone: XmodModel, on: bool) -> None:
    """Run only the adapters that the batch uses (on) or every adapter of the checkpoint (off).

    transformers' XmodOutput applies each of the checkpoint's adapters (81 for ColBERT-XM) to a boolean
    selection in every layer, even when no text of the batch is in that language. Routing visits only
    the languages present, and a one-language batch skips the selection entirely. The arithmetic per
    token is unchanged: the results are the same bits (tests/test_model.py), a single query is about a
    third faster on CPU. Off restores transformers' own method (the bare baseline of the benchmark).
    """
    for layer in backbone.encoder.layer:
        output = layer.output
        if on:
            output.lang_adapter = types.MethodType(_present_adapters_only, output)
        else:
            vars(output).pop("lang_adapter", None)


def _present_adapters_only(self: Any, lang_ids: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
    """XmodOutput.lang_adapter, visiting only present languages."""
    adapters = list(self.adapter_modules.values())
    present = torch.unique(lang_ids).tolist()

    def adapt(hidden: torch.Tensor) -> torch.Tensor:
        if len(present) == 1:
            return adapters[int(present[0])](hidden)
        adapted = torch.zeros_like(hidden)
        for index in present:
            selected = lang_ids == index
            adapted[selected] = adapters[int(index)](hidden[selected])
        return adapted

    return adapter_residual(self, hidden_states, adapt)


def adapter_residual(
    output: Any, hidden_states: torch.Tensor, adapt: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """XmodOutput.lang_adapter's layer norm and residual rules around an adapter function."""
    if not output.ln_before_adapter:
        residual = hidden_states
    if output.adapter_layer_norm is not None:
        hidden_states = output.adapter_layer_norm(hidden_states)
    elif output.adapter_reuse_layer_norm:
        hidden_states = output.LayerNorm(hidden_states)
    if output.ln_before_adapter:
        residual = hidden_states
    return output.dropout(adapt(hidden_states)) + residual

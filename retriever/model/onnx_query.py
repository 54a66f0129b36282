"""Queries on ONNX Runtime (`query_runtime=onnx` or `onnx-int8`, and `auto` where `onnx` measured faster
than torch: query_runtime.py): the backbone exported once per model and cached, then run by ONNX
Runtime for queries, while documents stay on torch.

A query is one short forward (query_maxlen tokens), where torch's per-call overheads and its fp32 CPU
kernels weigh most. The exported graph holds the encoder layers (attention exported in its eager form,
which ONNX Runtime's transformer optimizer fuses), the position embeddings, the layer norms, the
ColBERT projection and the normalisation: it returns the query's unit vectors. It takes the word
embeddings of the tokens and, per layer, the weights of the query's language adapter as inputs, both
read from the checkpoint's own fp32 tensors (memory-mapped: the 250k-row table is not held twice, and
a bf16 backbone does not round them), so one file serves every language. For `onnx-int8` its linear
layers and attention projections are quantized dynamically to int8, one scale per output channel,
weights in 7 bits so that CPUs without VNNI do not saturate (the adapters, being inputs, stay fp32).
The file lives in ~/.cache/xmsearch/onnx, keyed by the weights' fingerprint, the variant, how it is
made (EXPORT_REVISION) and the ONNX Runtime version; exporting a real-size model took
about 25 s, once.

`onnx` gives torch fp32's vectors (within 1e-5, tested); `onnx-int8` trades a little agreement for
speed: `xmsearch bench encode --query-runtimes onnx,onnx-int8` measures both against fp32 on the
model's own queries (README: figures).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from transformers import XmodModel

from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.model.checkpoint import PROJECTION_KEY, WEIGHTS_FILE, CheckpointSpec
from xmsearch.retriever.model.loading import LoadedModel, adapter_residual, load_backbone
from xmsearch.retriever.model.measured import cache_root

log = logging.getLogger(__name__)

Variant = Literal["onnx", "onnx-int8"]
OPSET = 17
ADAPTER_LANGUAGES_KEPT = 8  # fp32 copies of the adapter weights kept for the most recent languages


def cache_dir() -> Path:
    return cache_root() / "onnx"


EXPORT_REVISION = 2  # how the file is made; a new revision exports again (2: int8 weights in 7 bits)


def missing_package() -> str | None:
    """The package ONNX Runtime queries need that is not installed (None: both are)."""
    return next((module for module in ("onnxruntime", "onnx") if importlib.util.find_spec(module) is None), None)


def require_onnxruntime() -> None:
    """One line naming the package where ONNX Runtime or onnx is missing."""
    if (module := missing_package()) is not None:
        raise InvalidInputError(f"XMSEARCH_QUERY_RUNTIME=onnx needs the package {module}: pip install {module}")


def exported_path(spec: CheckpointSpec, variant: Variant) -> Path:
    import onnxruntime

    return cache_dir() / f"{spec.fingerprint}-{variant}-r{EXPORT_REVISION}-ort{onnxruntime.__version__}.onnx"


class _QueryGraph(torch.nn.Module):
    """The backbone, each layer's language adapter taken from inputs (4 per layer), then the ColBERT
    projection and the normalisation: the query's unit vectors."""

    def __init__(self, backbone: XmodModel, projection: torch.Tensor) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = projection
        self.adapters: list[torch.Tensor] = []
        for index, layer in enumerate(backbone.encoder.layer):
            layer.output.lang_adapter = functools.partial(self._adapt, layer.output, index)

    def _adapt(self, output: Any, index: int, lang_ids: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = self.adapters[4 * index : 4 * index + 4]
        act = next(iter(output.adapter_modules.values())).adapter_act_fn

        def adapt(x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(act(torch.nn.functional.linear(x, w1, b1)), w2, b2)

        return adapter_residual(output, hidden_states, adapt)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *adapters: torch.Tensor,
    ) -> torch.Tensor:
        self.adapters = list(adapters)
        lang_ids = torch.zeros(inputs_embeds.shape[0], dtype=torch.long)
        hidden = self.backbone(
            inputs_embeds=inputs_embeds, position_ids=position_ids, attention_mask=attention_mask, lang_ids=lang_ids
        ).last_hidden_state
        return torch.nn.functional.normalize(hidden @ self.projection.T, p=2, dim=2)


def adapter_weights(backbone: XmodModel, lang_id: int) -> list[torch.Tensor]:
    """The language's adapter weights of every layer, in the graph's input order."""
    out = []
    for layer in backbone.encoder.layer:
        adapter = list(layer.output.adapter_modules.values())[lang_id]
        out += [adapter.dense1.weight, adapter.dense1.bias, adapter.dense2.weight, adapter.dense2.bias]
    return out


def input_names(layers: int) -> list[str]:
    return ["inputs_embeds", "position_ids", "attention_mask"] + [
        f"adapter{i}.{name}" for i in range(layers) for name in ("w1", "b1", "w2", "b2")
    ]


def export(spec: CheckpointSpec, variant: Variant, path: Path) -> None:
    """Export the checkpoint's fp32 backbone, fuse it and (int8) quantize it, into `path` atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    started = time.monotonic()
    backbone = load_backbone(spec, torch.float32, "eager")
    config = backbone.config
    with safe_open(spec.path / WEIGHTS_FILE, framework="pt") as weights:
        projection = weights.get_tensor(PROJECTION_KEY).float()
    model = _QueryGraph(backbone, projection).eval()
    ids = torch.full((1, spec.query_maxlen), 5, dtype=torch.long)
    embeds = backbone.embeddings.word_embeddings(ids)
    positions = backbone.embeddings.create_position_ids_from_input_ids(ids, config.pad_token_id)
    mask = torch.ones_like(ids)
    mask[:, spec.query_maxlen // 2 :] = 0  # a mask with zeros, so that the traced graph keeps it (queries have them)
    names = input_names(config.num_hidden_layers)
    dynamic = {0: "batch", 1: "tokens"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw, fused, final = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx", Path(tmp) / "final.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on constants that are constant for queries
            torch.onnx.export(
                model,
                (embeds, positions, mask, *adapter_weights(backbone, 0)),
                str(raw),
                input_names=names,
                output_names=["vectors"],
                dynamic_axes={name: dynamic for name in names[:3]} | {"vectors": dynamic},
                opset_version=OPSET,
                dynamo=False,
            )
        del model, backbone
        optimized = optimizer.optimize_model(
            str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        )
        optimized.save_model_to_file(str(fused))
        if variant == "onnx-int8":
            # weights in 7 bits (reduce_range): a CPU without VNNI (AVX2 alone) sums pairs of 8-bit
            # products in 16 bits, which saturate; there the tiny model's queries kept a mean cosine of
            # 0.99856 to fp32 with 8 bits and 0.99990 with 7. One file for every CPU (the cache is not
            # keyed by CPU).
            quantize_dynamic(
                str(fused), str(final), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                op_types_to_quantize=["MatMul", "Attention"], extra_options={"DefaultTensorType": 1},  # 1 = FLOAT
            )  # fmt: skip
        else:
            fused.rename(final)
        os.replace(final, path)
    log.info("exported %s for queries on ONNX Runtime (%s) in %.0f s: %s", spec.model_id, variant,
             time.monotonic() - started, path)  # fmt: skip


class OnnxQueries:
    """Runs query forwards on ONNX Runtime; the word embeddings and adapters are fed from the checkpoint."""

    def __init__(self, spec: CheckpointSpec, loaded: LoadedModel, variant: Variant, threads: int | None) -> None:
        if loaded.device.type != "cpu":
            raise InvalidInputError(
                f"XMSEARCH_QUERY_RUNTIME={variant} runs queries on the CPU; with device {loaded.device} use torch"
            )
        require_onnxruntime()
        import onnxruntime

        path = exported_path(spec, variant)
        if not path.exists():
            log.info("exporting %s for queries on ONNX Runtime (%s), once", spec.model_id, variant)
            export(spec, variant, path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config = loaded.backbone.config
        self.languages = list(loaded.backbone.encoder.layer[0].output.adapter_modules.keys())
        self.names = input_names(self.config.num_hidden_layers)
        self.variant = variant
        self.dim = spec.dim
        # fp32 weights from the checkpoint itself (memory-mapped), whatever precision the backbone runs in
        self.weights = safe_open(spec.path / WEIGHTS_FILE, framework="pt")
        self.keys = set(self.weights.keys())
        self.lock = threading.Lock()
        self._adapters = functools.lru_cache(maxsize=ADAPTER_LANGUAGES_KEPT)(self._read_adapters)

    def _tensor(self, name: str) -> Any:
        return self.weights.get_slice(name if name in self.keys else f"roberta.{name}")

    def _read_adapters(self, lang_id: int) -> list[np.ndarray]:
        """The language's adapter weights (fp32) in the graph's input order."""
        language = self.languages[lang_id]
        names = [
            f"encoder.layer.{i}.output.adapter_modules.{language}.{part}"
            for i in range(self.config.num_hidden_layers)
            for part in ("dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias")
        ]
        with self.lock:
            return [self._tensor(name)[:].float().contiguous().numpy() for name in names]

    def _embeddings(self, ids: np.ndarray) -> np.ndarray:
        """The fp32 word embeddings of the tokens, read row by row from the checkpoint."""
        unique, where = np.unique(ids, return_inverse=True)
        with self.lock:
            table = self._tensor("embeddings.word_embeddings.weight")
            rows = np.concatenate([table[i : i + 1].float().numpy() for i in unique.tolist()])
        return rows[where.reshape(ids.shape)]

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, lang_ids: np.ndarray) -> np.ndarray:
        """The unit vectors [batch, tokens, dim] of a batch of queries: one run per language present,
        or with int8 one per query, since dynamic quantization scales activations by the range of the
        whole run and a query's vectors must not depend on the queries batched with it.

        Everything is done by ONNX Runtime or numpy, nothing by torch: torch's thread pool, woken for
        the projection or a few small ops between runs, competed with ONNX Runtime's threads and made
        a query 1.5x slower on a 2-core CPU."""
        out = np.empty((*input_ids.shape, self.dim), dtype=np.float32)
        for lang_id, rows in _groups(lang_ids, each_alone=self.variant == "onnx-int8"):
            ids = input_ids[rows]
            feeds = {
                "inputs_embeds": self._embeddings(ids),
                "position_ids": _positions(ids, int(self.config.pad_token_id or 0)),
                "attention_mask": attention_mask[rows],
            } | dict(zip(self.names[3:], self._adapters(lang_id), strict=True))
            out[rows] = self.session.run(None, feeds)[0]
        return out


def _positions(ids: np.ndarray, padding_idx: int) -> np.ndarray:
    """XmodEmbeddings.create_position_ids_from_input_ids, on numpy (tests/test_onnx_query.py)."""
    mask = (ids != padding_idx).astype(np.int64)
    return np.cumsum(mask, axis=1) * mask + padding_idx


def _groups(lang_ids: np.ndarray, each_alone: bool) -> Iterator[tuple[int, np.ndarray]]:
    """(language id, row indices) of each run."""
    if each_alone:
        for row, lang_id in enumerate(lang_ids.tolist()):
            yield int(lang_id), np.array([row])
        return
    for lang_id in np.unique(lang_ids).tolist():
        yield int(lang_id), np.flatnonzero(lang_ids == lang_id)

"""Finding a ColBERT-XM checkpoint (local folder or hub) and reading its frozen description.

A checkpoint is what colbert-ai writes: `config.json` (an XMOD config), `artifact.metadata` (the
ColBERT settings: dim, lengths, markers...), `model.safetensors` (the backbone under `roberta.` and the
projection `linear.weight`) and the tokenizer files. Every value the encoder needs comes from here.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from xmsearch.retriever.errors import CheckpointError, CheckpointUnavailableError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METADATA_FILE = "artifact.metadata"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
REQUIRED_FILES = (CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE, TOKENIZER_FILE)
HUB_PATTERNS = [*REQUIRED_FILES, "tokenizer_config.json", "special_tokens_map.json"]
BACKBONE_PREFIX = "roberta."
PROJECTION_KEY = "linear.weight"
# RoBERTa-style position ids start after the padding index, so two positions are never used.
POSITION_OFFSET = 2

LOCAL_HINT = (
    "Name a local checkpoint folder instead with XMSEARCH_MODEL=/path/to/folder "
    "(for an offline smoke run: `xmsearch model make-tiny ./tiny-model` then XMSEARCH_MODEL=./tiny-model)."
)


@dataclass(frozen=True)
class CheckpointSpec:
    """What the encoder needs to know about a checkpoint, read once from its files."""

    path: Path
    name: str
    model_id: str
    dim: int
    hidden_size: int
    query_maxlen: int
    doc_maxlen: int
    query_marker: str
    doc_marker: str
    mask_punctuation: bool
    attend_to_mask_tokens: bool
    languages: tuple[str, ...]
    default_language: str | None
    config: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """The weights' fingerprint: the same whatever name the checkpoint was loaded by."""
        return self.model_id.rpartition("@")[2]


def locate(name: str) -> Path:
    """The folder holding checkpoint `name`: a local folder, or the hub snapshot (downloaded once)."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{name} is a file; a checkpoint is a folder holding {', '.join(REQUIRED_FILES)}")
        return path
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise CheckpointError(f"checkpoint folder {name} does not exist")
    return _download(name)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # the hub raises many types for "cannot reach" / "offline" / "not found"
        raise CheckpointUnavailableError(
            f"cannot load checkpoint {repo_id!r} from the Hugging Face hub and it is not in the local "
            f"cache ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}). " + LOCAL_HINT
        ) from exc


def read_spec(path: Path, name: str | None = None) -> CheckpointSpec:
    """Read and cross-check a checkpoint folder; every inconsistency is a CheckpointError."""
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(
            f"{path} is not a ColBERT-XM checkpoint: missing {', '.join(missing)} "
            f"(expected {', '.join(REQUIRED_FILES)})"
        )
    config = _read_json(path / CONFIG_FILE)
    meta = _read_json(path / METADATA_FILE)
    if config.get("model_type") != "xmod":
        raise CheckpointError(f"{path / CONFIG_FILE}: model_type is {config.get('model_type')!r}, expected 'xmod'")
    dim, hidden_size = _positive(meta, "dim", path), _positive(config, "hidden_size", path)
    _check_weights(path, dim, hidden_size)
    spec = CheckpointSpec(
        path=path,
        name=name or str(path),
        model_id=f"{name or path.name}@{_fingerprint(path)}",
        dim=dim,
        hidden_size=hidden_size,
        query_maxlen=_positive(meta, "query_maxlen", path),
        doc_maxlen=_positive(meta, "doc_maxlen", path),
        query_marker=str(meta.get("query_token_id", "[unused0]")),
        doc_marker=str(meta.get("doc_token_id", "[unused1]")),
        mask_punctuation=bool(meta.get("mask_punctuation", True)),
        attend_to_mask_tokens=bool(meta.get("attend_to_mask_tokens", False)),
        languages=tuple(config.get("languages") or ()),
        default_language=config.get("default_language"),
        config=config,
    )
    _check_consistency(spec)
    return spec


def _check_consistency(spec: CheckpointSpec) -> None:
    if not spec.languages:
        raise CheckpointError(f"{spec.path / CONFIG_FILE} lists no adapter languages")
    limit = int(spec.config.get("max_position_embeddings", 514)) - POSITION_OFFSET
    for key in ("query_maxlen", "doc_maxlen"):
        if getattr(spec, key) > limit:
            raise CheckpointError(f"{key}={getattr(spec, key)} exceeds the model's {limit} positions")


def _check_weights(path: Path, dim: int, hidden_size: int) -> None:
    file = path / WEIGHTS_FILE
    try:
        with safe_open(file, framework="numpy") as weights:  # the header only: no torch
            keys = set(weights.keys())
            shape = tuple(weights.get_slice(PROJECTION_KEY).get_shape()) if PROJECTION_KEY in keys else None
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise CheckpointError(f"cannot read {file}: {exc}") from exc
    if shape is None:
        raise CheckpointError(f"{file} has no {PROJECTION_KEY} (the ColBERT projection)")
    if not any(k.startswith(BACKBONE_PREFIX) for k in keys):
        raise CheckpointError(f"{file} has no weights under {BACKBONE_PREFIX!r}")
    if shape != (dim, hidden_size):
        raise CheckpointError(
            f"{PROJECTION_KEY} has shape {list(shape)} but artifact.metadata says dim={dim} and "
            f"config.json says hidden_size={hidden_size} (expected [{dim}, {hidden_size}])"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def _positive(data: dict[str, Any], key: str, path: Path) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise CheckpointError(f"{path}: {key} must be a positive integer, found {value!r}")
    return value


def _fingerprint(path: Path) -> str:
    """A short hash of what defines the vectors: config, metadata, tokenizer, the weights' header and
    the projection's bytes (cheap to read, and different for any two trained or generated models)."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, METADATA_FILE, TOKENIZER_FILE):
        digest.update((path / name).read_bytes())
    with (path / WEIGHTS_FILE).open("rb") as fh:
        header = fh.read(int.from_bytes(fh.read(8), "little"))
        digest.update(header)
        start, end = json.loads(header)[PROJECTION_KEY]["data_offsets"]
        fh.seek(8 + len(header) + start)
        digest.update(fh.read(end - start))
    return digest.hexdigest()[:12]

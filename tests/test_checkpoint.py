"""Finding and reading checkpoints: every broken folder is a CheckpointError that names the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from xmsearch.retriever import CheckpointError, CheckpointUnavailableError, Encoder
from xmsearch.retriever.model.checkpoint import locate, read_spec
from xmsearch.settings import Settings


@pytest.fixture
def copy(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def _edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_spec_values_come_from_the_files(copy: Path) -> None:
    _edit_json(copy / "artifact.metadata", query_maxlen=24, doc_maxlen=100, mask_punctuation=False)
    spec = read_spec(copy)
    assert (spec.dim, spec.hidden_size, spec.query_maxlen, spec.doc_maxlen) == (16, 32, 24, 100)
    assert spec.mask_punctuation is False
    assert spec.languages[:2] == ("en_XX", "fr_XX")


def test_model_id_changes_with_the_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from xmsearch.retriever.model.tiny import make_tiny

    other = make_tiny(tmp_path / "other", seed=1)
    assert read_spec(tiny_checkpoint).model_id.split("@")[1] != read_spec(other).model_id.split("@")[1]


def test_folder_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"not a ColBERT-XM checkpoint: missing config\.json"):
        read_spec(tmp_path)


def test_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        locate(str(tmp_path / "nope"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        locate(str(tmp_path / "f"))


def test_projection_disagreeing_with_metadata_dim(copy: Path) -> None:
    _edit_json(copy / "artifact.metadata", dim=128)
    with pytest.raises(CheckpointError, match=r"linear\.weight has shape \[16, 32\].*dim=128"):
        read_spec(copy)


def test_projection_disagreeing_with_hidden_size(copy: Path) -> None:
    weights = load_file(copy / "model.safetensors")
    weights["linear.weight"] = weights["linear.weight"][:, :16].contiguous()
    save_file(weights, copy / "model.safetensors")
    with pytest.raises(CheckpointError, match="hidden_size=32"):
        read_spec(copy)


def test_missing_projection(copy: Path) -> None:
    weights = load_file(copy / "model.safetensors")
    del weights["linear.weight"]
    save_file(weights, copy / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"no linear\.weight"):
        read_spec(copy)


def test_wrong_model_type_and_bad_values(copy: Path) -> None:
    _edit_json(copy / "config.json", model_type="bert")
    with pytest.raises(CheckpointError, match="model_type is 'bert'"):
        read_spec(copy)
    _edit_json(copy / "config.json", model_type="xmod")
    _edit_json(copy / "artifact.metadata", query_maxlen="32")
    with pytest.raises(CheckpointError, match="query_maxlen must be a positive integer"):
        read_spec(copy)
    _edit_json(copy / "artifact.metadata", query_maxlen=4000)
    with pytest.raises(CheckpointError, match="exceeds the model's"):
        read_spec(copy)


def test_corrupt_json_and_weights(copy: Path) -> None:
    (copy / "artifact.metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"cannot read .*artifact\.metadata"):
        read_spec(copy)


def test_truncated_weights_file(copy: Path) -> None:
    data = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(data[:1000])
    with pytest.raises(CheckpointError, match=r"cannot read .*model\.safetensors"):
        read_spec(copy)


def test_hub_unreachable_says_how_to_use_a_local_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointUnavailableError, match="XMSEARCH_MODEL=/path/to/folder"):
        Encoder.from_pretrained("antoinelouis/colbert-xm", Settings(device="cpu"))

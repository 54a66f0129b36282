"""The command line: exit codes, JSON output, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from retriever import Encoder
from xmsearch.cli import DEMO_TEXTS, app

runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point, in a subprocess, as a user runs it."""
    code = "from xmsearch.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def test_make_tiny_then_info(tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = runner.invoke(app, ["model", "make-tiny", str(out), "--languages", "en_XX,sw_KE"])
    assert result.exit_code == 0, result.output
    info = runner.invoke(app, ["model", "info", str(out), "--json"])
    assert info.exit_code == 0
    assert json.loads(info.stdout)["languages"] == ["en_XX", "sw_KE"]


def test_demo_json(tiny_checkpoint: Path, encoder: Encoder) -> None:
    result = runner.invoke(app, ["demo", "--model", str(tiny_checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == encoder.spec.model_id
    langs = [lang for lang, _ in DEMO_TEXTS]
    q = encoder.encode_queries(data["texts"], langs)
    d = encoder.encode_documents(data["texts"], langs)
    want = [[float((qi @ dj.T).max(axis=1).sum()) for dj in d] for qi in q]
    np.testing.assert_allclose(data["maxsim"], want, atol=1e-3)


def test_errors_are_one_line_with_exit_code_1(tmp_path: Path) -> None:
    result = _run("model", "info", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "error: checkpoint folder" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_hub_is_explained(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "XMSEARCH_MODEL": "antoinelouis/colbert-xm"}
    result = _run("demo", env=env)
    assert result.returncode == 1
    assert "cannot load checkpoint 'antoinelouis/colbert-xm'" in result.stderr
    assert "XMSEARCH_MODEL" in result.stderr and "Traceback" not in result.stderr


def test_usage_error_exit_code_2() -> None:
    assert _run("no-such-command").returncode == 2


def test_bench_encode_prints_ratios(tiny_checkpoint: Path) -> None:
    result = runner.invoke(
        app,
        [
            "bench",
            "encode",
            "--model",
            str(tiny_checkpoint),
            "--docs",
            "16",
            "--queries",
            "4",
            "--repeats",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    fp32, bf16 = json.loads(result.stdout)
    assert fp32["precision"] == "float32" and bf16["precision"] == "bfloat16"
    assert fp32["ratio"] > 0 and fp32["docs_per_s"] > 0 and fp32["query_p50_ms"] > 0
    assert bf16["mean_cosine_vs_fp32"] > 0.99

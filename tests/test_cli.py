"""The command line: exit codes, JSON output, errors without tracebacks."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import CLI, PROBED_CLI
from xmsearch.cli import app

runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point, in a subprocess, as a user runs it."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)


def test_make_tiny_then_info(tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = runner.invoke(app, ["model", "make-tiny", str(out), "--languages", "en_XX,sw_KE"])
    assert result.exit_code == 0, result.output
    info = runner.invoke(app, ["model", "info", str(out), "--json"])
    assert info.exit_code == 0
    assert json.loads(info.stdout)["languages"] == ["en_XX", "sw_KE"]


def test_demo_indexes_the_sample_corpus_once_and_answers_the_queries(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XMSEARCH_MODEL": str(tiny_checkpoint),
        "XMSEARCH_DATA_DIR": str(tmp_path),
        "XMSEARCH_DEVICE": "cpu",
    }
    first = _run("demo", "--json", "--k", "2", env=env)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["job"]["counts"]["accepted"] == 40 and data["job"]["counts"]["rejected"] == 0
    assert data["job"]["counts"]["encoded"] >= 40
    assert len(data["results"]) == 12 and all(len(r["hits"]) == 2 for r in data["results"])
    again = json.loads(_run("demo", "--json", env=env).stdout)
    assert again["job"]["counts"]["encoded"] == 0 and again["job"]["counts"]["skipped_unchanged"] == 40


def test_ingest_search_delete_commands(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XMSEARCH_MODEL": str(tiny_checkpoint),
        "XMSEARCH_DATA_DIR": str(tmp_path),
        "XMSEARCH_DEVICE": "cpu",
    }
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": "a", "text": "The river flows past the old mill.", "language": "en"}\nnot json\n')
    result = _run("ingest", str(docs), "--json", "--rejects", str(tmp_path / "rejects.jsonl"), env=env)
    assert result.returncode == 3  # done, with rejects
    assert json.loads(result.stdout)["counts"]["written"] == 1
    assert json.loads((tmp_path / "rejects.jsonl").read_text())["location"] == "line 2"
    found = json.loads(_run("search", "old mill", "--lang", "en", "--json", env=env).stdout)
    assert [h["document_id"] for h in found["hits"]] == ["a"]
    assert found["language"] == {
        "code": "en",
        "adapter": "en_XX",
        "source": "given",
        "confidence": None,
        "fallback": False,
        "reason": None,
    }
    assert _run("delete", "a", env=env).returncode == 0
    missing = _run("delete", "a", "never-was", env=env)
    assert missing.returncode == 3 and "deleted 0 chunk(s) of 0 document(s)" in missing.stdout
    assert "not found: no document 'a'" in missing.stdout and "no document 'never-was'" in missing.stdout
    assert json.loads(_run("search", "old mill", "--lang", "en", "--json", env=env).stdout)["hits"] == []
    bad = _run("search", "x", "--filter", "{nope", env=env)
    assert bad.returncode == 1 and "--filter is not valid JSON" in bad.stderr


def test_search_shows_each_document_once_and_pages(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {"XMSEARCH_MODEL": str(tiny_checkpoint), "XMSEARCH_DATA_DIR": str(tmp_path)}

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    long = " ".join(f"The old mill number {i} turns by the river." for i in range(40))  # several chunks
    records = [{"id": "long", "text": long, "language": "en"}]
    records += [{"id": f"d{i}", "text": f"A short note {i} about a mill.", "language": "en"} for i in range(3)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run("ingest", str(tmp_path / "docs.jsonl"))
    grouped = run("search", "old mill river", "--lang", "en", "--more", "1").splitlines()
    documents = [line.split()[1].split("#")[0] for line in grouped[1:] if not line.startswith("         ")]
    assert sorted(documents) == ["d0", "d1", "d2", "long"]  # each once
    assert any(line.startswith("         ") and " #" in line for line in grouped)  # a next best chunk, indented
    chunks = json.loads(run("search", "old mill river", "--lang", "en", "--chunks", "--json"))
    assert len([h for h in chunks["hits"] if h["document_id"] == "long"]) > 1
    first, second = (
        json.loads(run("search", "mill", "--lang", "en", "--k", "2", "--offset", o, "--json")) for o in "02"
    )
    assert sorted(h["document_id"] for h in first["hits"] + second["hits"]) == ["d0", "d1", "d2", "long"]
    best, runner_up = first["hits"][0]["score"], first["hits"][1]["score"]
    listed = json.loads(run("documents", "--limit", "3", "--json"))
    assert listed["total"] == 4 and len(listed["documents"]) == 3 and listed["next"]
    rest = json.loads(run("documents", "--cursor", listed["next"], "--json"))
    assert sorted(d["id"] for d in listed["documents"] + rest["documents"]) == ["d0", "d1", "d2", "long"]
    table = run("documents")
    assert table.splitlines()[0].split() == ["id", "tenant", "language", "metadata"] and "4 of 4 document(s)" in table
    shown = run("status")
    assert "documents     4\n" in shown and re.search(r"\npoints +\d+ chunks\n", shown) and "size on disk" in shown
    described = json.loads(run("status", "--json"))
    assert (described["documents"], described["spec"]["schema"], described["backend"]) == (4, 3, "edge")
    assert described["spec"]["pooled"] and "shortlist of pooled passages" in shown
    above = json.loads(run("search", "mill", "--lang", "en", "--min-score", str((best + runner_up) / 2), "--json"))
    assert [h["document_id"] for h in above["hits"]] == [first["hits"][0]["document_id"]]
    [version] = json.loads(run("collections", "list", "--json"))["versions"]
    assert version["current"] and version["documents"] == 4 and version["built_with"]["model"] == str(tiny_checkpoint)
    table = run("collections", "list")
    assert "xmsearch-v1 (searched): 4 documents" in table and "chunk_overlap 32" in table
    refused = runner.invoke(app, ["collections", "drop", "xmsearch-v1"], env=env)
    assert refused.exit_code != 0 and "the version searches use" in str(refused.exception)


def test_reading_the_index_loads_no_model(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XMSEARCH_MODEL": str(tiny_checkpoint), "XMSEARCH_DATA_DIR": str(tmp_path)}
    for args in (["status"], ["documents", "--tenant", "acme"], ["collections", "list"], ["export"]):
        result = subprocess.run([*PROBED_CLI, *args], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 1 and "HEAVY: []" in result.stderr, result.stderr
        assert "collection 'xmsearch' does not exist" in result.stderr and "ingest documents first" in result.stderr


def test_errors_are_one_line_with_exit_code_1(tmp_path: Path) -> None:
    result = _run("model", "info", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "error: checkpoint folder" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_input_is_one_line_before_any_model_loads(tmp_path: Path) -> None:
    env = {**os.environ, "XMSEARCH_MODEL": str(tmp_path / "no-model"), "XMSEARCH_DATA_DIR": str(tmp_path)}
    result = _run("ingest", str(tmp_path / "missing.jsonl"), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "missing.jsonl: no such file or folder" in result.stderr and "checkpoint" not in result.stderr


def test_a_wrong_setting_is_one_line() -> None:
    result = _run("search", "hi", env={**os.environ, "XMSEARCH_STORE": "bogus"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: XMSEARCH_STORE='bogus': Input should be 'auto', 'edge', 'local' or 'server' (e.g. XMSEARCH_STORE=auto)"
    ]


def test_unreachable_hub_is_explained(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "XMSEARCH_MODEL": "antoinelouis/colbert-xm"}
    result = _run("demo", env=env)
    assert result.returncode == 1
    assert "cannot load checkpoint 'antoinelouis/colbert-xm'" in result.stderr
    assert "XMSEARCH_MODEL" in result.stderr and "Traceback" not in result.stderr


def test_a_dead_broker_is_exit_code_4_and_names_it(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XMSEARCH_MODEL": str(tiny_checkpoint), "XMSEARCH_BROKER_URL": "redis://127.0.0.1:9/0"}
    result = _run("delete", "a", env=env)
    assert result.returncode == 4, result.stderr
    assert "the broker at redis://127.0.0.1:9/0 did not answer" in result.stderr and "Traceback" not in result.stderr


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0 and result.stdout.strip().startswith("xmsearch ")


def test_ingest_for_a_tenant(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XMSEARCH_MODEL": str(tiny_checkpoint), "XMSEARCH_DATA_DIR": str(tmp_path)}
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        '{"id": "mine", "text": "The mill turns.", "language": "en"}\n'
        '{"id": "theirs", "text": "The bridge.", "language": "en", "tenant": "globex"}\n'
    )
    result = _run("ingest", str(docs), "--tenant", "acme", "--json", env=env)
    job = json.loads(result.stdout)
    assert result.returncode == 3 and job["tenant"] == "acme" and job["written"] == 1 and job["rejected"] == 1
    assert "names tenant 'globex'; this caller writes only 'acme'" in job["errors"][0]
    hits = json.loads(_run("search", "mill", "--lang", "en", "--json", env=env).stdout)["hits"]
    assert [(h["document_id"], h["tenant"]) for h in hits] == [("mine", "acme")]


def test_usage_error_exit_code_2() -> None:
    assert _run("no-such-command").returncode == 2


def test_bench_encode_prints_ratios(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the ONNX export of the runtime row goes there
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
            "--query-runtimes",
            "onnx-int8",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    fp32, bf16, int8 = json.loads(result.stdout)
    assert fp32["precision"] == "float32" and bf16["precision"] == "bfloat16"
    assert fp32["ratio"] > 0 and fp32["docs_per_s"] > 0 and fp32["query_p50_ms"] > 0
    assert bf16["mean_cosine_vs_fp32"] > 0.99
    assert int8["precision"] == "float32, onnx-int8 queries" and int8["mean_cosine_vs_fp32"] > 0.999


@pytest.mark.slow  # a benchmark: starts a server and loads the model twice
def test_bench_api_reports_both_paths(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XMSEARCH_MODEL": str(tiny_checkpoint),
        "XMSEARCH_DEVICE": "cpu",
        "XMSEARCH_DATA_DIR": str(tmp_path),
    }
    result = _run("bench", "api", "--clients", "2", "--seconds", "0.5", "--rounds", "1", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["path"] for r in rows] == ["direct", "api", "direct, unbatched"]
    assert all(r["requests"] > 0 and r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in rows)


def test_a_hit_is_one_line_cut_at_a_word() -> None:
    from rich.cells import cell_len

    from xmsearch.api.models import HitOut
    from xmsearch.cli.output import hit_line, snippet

    text = "The river\nflows past [bold]the old mill\n\nand under the bridge, then on to the sea."
    assert snippet(text, 40) == "The river flows past [bold]the old mill…"
    assert snippet("short text", 40) == "short text"
    wide = snippet("日本は世界有数の火山国であり、気象庁は活火山を選定している。", 20)
    assert wide.endswith("…") and cell_len(wide) <= 20 and wide.startswith("日本は")  # two cells a character
    assert snippet(text, 38) == "The river flows past [bold]the old…"
    line = hit_line(HitOut(score=1.5, document_id="doc", chunk=0, text=text, language="en", metadata={}), 40)
    assert "\n" not in line and line.endswith("mill…") and "\\[bold]" in line  # markup is escaped


def test_progress_counts_documents_of_a_known_total_with_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from xmsearch.cli import output

    screen = Console(file=io.StringIO(), force_terminal=True, width=200)
    monkeypatch.setattr(output, "stderr", screen)
    base = {"accepted": 0, "rejected": 0, "encoded": 0, "skipped_unchanged": 0, "tasks_sent": 1, "tasks_done": 0}
    steps = [{**base, "processed": n, "accepted": n, "status": "running"} for n in (0, 3, 8)]

    class Jobs:
        def wait(self, job_id: str, on_progress: Any, poll: float) -> dict[str, Any]:
            for job in steps:
                on_progress(job)
                time.sleep(0.15)
            return steps[-1]

    assert output.follow(Jobs(), "abcdef123456", quiet=False, expected=31) == steps[-1]  # type: ignore[arg-type]
    shown = screen.file.getvalue()  # type: ignore[attr-defined]
    assert "job abcdef12" in shown and "3/31" in shown and "8/31" in shown and "tasks 0/1" in shown
    assert "docs/s" in shown and "0:00:" in shown  # a rate and the time left


def test_export_writes_the_documents_as_ingested_and_ingest_reads_them_back(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Exact text (white space, scripts, unnormalised accents), language as given, tenant and metadata
    come back as records `ingest` reads; a copy ingested elsewhere exports the same records."""
    from tests.test_ingest import MULTILINGUAL
    from xmsearch.ingest.export import Export
    from xmsearch.retriever.components import index_store
    from xmsearch.settings import Settings

    docs = [
        {"id": f"d{i}", "text": text}
        | ({"language": "de"} if i == 0 else {})
        | ({"tenant": "acme"} if i % 2 else {})
        | ({"metadata": {"n": i, "tags": ["a", "ü"]}} if i % 3 == 0 else {})
        for i, text in enumerate(MULTILINGUAL)
    ]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")

    def run(data: Path, *args: str) -> Any:
        env = {"XMSEARCH_MODEL": str(tiny_checkpoint), "XMSEARCH_DATA_DIR": str(data)}
        return runner.invoke(app, list(args), env=env)

    assert run(tmp_path / "a", "ingest", str(source)).exit_code == 0
    assert run(tmp_path / "a", "export", "--output", str(tmp_path / "a.jsonl")).exit_code == 0
    exported = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(exported, key=lambda r: r["id"]) == docs
    assert run(tmp_path / "b", "ingest", str(tmp_path / "a.jsonl")).exit_code == 0
    assert run(tmp_path / "b", "export", "--output", str(tmp_path / "b.jsonl"), "--tenant", "acme").exit_code == 0
    copied = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(copied, key=lambda r: r["id"]) == [d for d in docs if d.get("tenant") == "acme"]

    store = index_store(Settings(model=str(tiny_checkpoint), data_dir=tmp_path / "a"))
    store.open(create=False)
    try:  # a document stored before the first chunk kept the text
        first = store.fetch("d5", "acme")[0]
        store.upsert([dataclasses.replace(first, document_id="old", source=None)])
        job = Export(store)
        assert len(list(job.records())) == len(docs) and job.unrebuildable == [("acme", "old")]
    finally:
        store.close()
    refused = run(tmp_path / "a", "export", "--output", str(tmp_path / "c.jsonl"))
    assert refused.exit_code != 0 and "1 document(s) were stored before" in str(refused.exception)

"""The contention and reindex benchmarks end to end on the tiny model: every figure a real
measurement (searches answered, documents indexed, chunks encoded again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmsearch.bench import contention
from xmsearch.settings import Settings


def test_contention_bench_measures_both_priority_settings(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, queries = contention._corpus()
    short = [{**t, "text": t["text"][:80]} for t in texts]  # one chunk each: the tiny model's searches stay quick
    monkeypatch.setattr(contention, "_corpus", lambda: (short, queries))
    settings = Settings(model=str(tiny_checkpoint), device="cpu", detect_language=False, data_dir=tmp_path)
    on, off = contention.run(settings, clients=2, seconds=0.3, share=0.5)
    assert (on.priority, off.priority) == ("on (share 0.5)", "off")
    for row in (on, off):
        assert 0 < row.idle_p50_ms <= row.idle_p99_ms and 0 < row.busy_p50_ms <= row.busy_p99_ms
        assert row.ingest_alone_docs_per_s > 0 and row.ingest_busy_docs_per_s > 0
        assert row.as_dict()["p50_ratio"] == row.busy_p50_ms / row.idle_p50_ms


def test_reindex_bench_encodes_every_chunk_again_and_reports_the_ratio(tiny_checkpoint: Path) -> None:
    from xmsearch.bench.reindex import run

    figures = run(Settings(model=str(tiny_checkpoint), device="cpu", detect_language=False), n_docs=30, idle_s=0.5)
    assert figures.documents == 30 and figures.chunks >= 30
    assert figures.ingest_docs_per_s > 0 and figures.reindex_docs_per_s > 0 and figures.live_reindex_docs_per_s > 0
    assert figures.as_dict()["ratio"] == figures.reindex_docs_per_s / figures.ingest_docs_per_s
    assert figures.searches_during_reindex > 0 and figures.search_idle_p50_ms > 0  # searches answered throughout
    assert figures.as_dict()["search_p50_ratio"] == figures.search_during_reindex_p50_ms / figures.search_idle_p50_ms

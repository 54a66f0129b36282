"""`xmsearch bench reindex`: documents/s of a reindex (every document rebuilt from the store, encoded
again, verified, swapped) against plain ingestion of the same documents, in one run, on an embedded
store in a temporary folder; then, as `xmsearch serve` runs it, a reindex inside the serving process
with clients searching back to back throughout: search p50 during it against idle, and its documents/s.
Every run includes loading the model; each reindex changes the vector datatype, so that it encodes
every chunk again with the same model."""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from xmsearch.api.service import Service
from xmsearch.bench.api import drive
from xmsearch.bench.search import python_doc_passages
from xmsearch.ingest.documents import Document
from xmsearch.ingest.pipeline import Indexer
from xmsearch.ingest.reindex import reindex
from xmsearch.settings import Settings

IDLE_S = 5.0  # searches alone, before the live reindex


@dataclass(frozen=True)
class ReindexFigures:
    documents: int
    chunks: int
    ingest_docs_per_s: float
    reindex_docs_per_s: float
    live_reindex_docs_per_s: float  # inside the serving process, with searches throughout
    search_idle_p50_ms: float
    search_during_reindex_p50_ms: float
    searches_during_reindex: int

    @property
    def ratio(self) -> float:
        return self.reindex_docs_per_s / self.ingest_docs_per_s

    @property
    def search_p50_ratio(self) -> float:
        return self.search_during_reindex_p50_ms / self.search_idle_p50_ms

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": self.ratio, "search_p50_ratio": self.search_p50_ratio}


def run(settings: Settings, n_docs: int, clients: int = 2, idle_s: float = IDLE_S) -> ReindexFigures:
    docs = [Document(id=f"p{i}", text=t, language="en") for i, t in enumerate(python_doc_passages(n_docs))]
    queries = [(" ".join(doc.text.split()[:6]), "en") for doc in docs[:50]]
    with tempfile.TemporaryDirectory(prefix="xmsearch-bench-reindex-") as tmp:
        local = settings.model_copy(update={"data_dir": Path(tmp), "qdrant_url": None, "store": "edge"})
        start = time.perf_counter()
        indexer = Indexer.from_settings(local)
        try:
            job = indexer.ingest(docs)
        finally:
            indexer.close()
        ingest_s = time.perf_counter() - start
        other = "float32" if local.vector_datatype == "float16" else "float16"
        start = time.perf_counter()
        done = reindex(local, {"vector_datatype": other})
        reindex_s = time.perf_counter() - start
        assert done.job.counts.encoded == job.counts.encoded  # every chunk encoded again, once
        back: dict[str, str] = {"vector_datatype": local.vector_datatype}
        live_s, idle, during = _live(Service.start(local), queries, clients, idle_s, back)
    return ReindexFigures(
        len(docs), job.counts.written, len(docs) / ingest_s, len(docs) / reindex_s, len(docs) / live_s,
        float(np.percentile(idle, 50)), float(np.percentile(during, 50)), len(during),
    )  # fmt: skip


def _live(
    service: Service, queries: list[tuple[str, str]], clients: int, idle_s: float, changes: dict[str, str]
) -> tuple[float, list[float], list[float]]:
    """Seconds a reindex takes inside the serving process while `clients` search back to back, and
    the search latencies (ms) before it (idle) and during it."""
    search = lambda query, language: service.retriever.search(query, 10, language)  # noqa: E731
    encoder = service.retriever.encoder
    lengths = encoder.tokenizer.queries([q for q, _ in queries]).lengths
    queries = [q for q, n in zip(queries, lengths, strict=True) if n <= encoder.spec.query_maxlen]
    try:
        drive(search, queries, clients, 1.0)  # warm
        idle = drive(search, queries, clients, idle_s)
        finished, during = threading.Event(), list[float]()
        driver = threading.Thread(target=lambda: during.extend(drive(search, queries, clients, 0, finished)))
        driver.start()
        start = time.perf_counter()
        service.start_reindex(changes)
        assert service.reindexing is not None
        service.reindexing[1].join()
        live_s = time.perf_counter() - start
        finished.set()
        driver.join()
        state = service.reindexing[0].state
        assert state.step == "done", state.error
        return live_s, idle, during
    finally:
        service.close()

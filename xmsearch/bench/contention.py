"""`xmsearch bench contention`: searches while the same process indexes (the embedded mode, as
`xmsearch serve` runs it: one encoder, one store, the journaled indexing thread), with search
priority on and off, in one run.

For each setting of the priority it measures search latency with the indexer idle, indexing
throughput with no search, then both at once: search latency during an ingest and the documents
indexed meanwhile. Clients send their next query as soon as the last one is answered; the ingested
documents are the bundled corpus under fresh ids, so every one is encoded, and under another
tenant than the one searched, so that the searched collection stays the same size.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from xmsearch.bench.api import drive
from xmsearch.ingestor import Ingestor
from xmsearch.retriever.components import Components
from xmsearch.retriever.model.priority import SearchPriority
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings


@dataclass(frozen=True)
class ContentionFigures:
    priority: str  # "on (share s)" or "off"
    idle_p50_ms: float
    idle_p99_ms: float
    busy_p50_ms: float
    busy_p99_ms: float
    ingest_alone_docs_per_s: float
    ingest_busy_docs_per_s: float

    @property
    def p50_ratio(self) -> float:
        return self.busy_p50_ms / self.idle_p50_ms

    @property
    def p99_ratio(self) -> float:
        return self.busy_p99_ms / self.idle_p99_ms

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "p50_ratio": self.p50_ratio, "p99_ratio": self.p99_ratio}


SIZING_DOCS = 40
SEARCHED = "searched"  # the tenant searched: what is ingested meanwhile (another tenant) leaves its cost alone


def _corpus() -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    data = resources.files("xmsearch.ingest") / "data"
    docs = [json.loads(line) for line in (data / "sample_corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    queries = [(q["query"], q["language"]) for q in json.loads((data / "sample_queries.json").read_text())]
    return [{"text": d["text"], "language": d["language"]} for d in docs], queries


def run(settings: Settings, clients: int, seconds: float, share: float) -> list[ContentionFigures]:
    texts, queries = _corpus()
    with tempfile.TemporaryDirectory(prefix="xmsearch-bench-contention-") as tmp:
        local = settings.model_copy(update={"data_dir": Path(tmp), "qdrant_url": None, "store": "edge"})
        components = Components.load(local)
        retriever, ingestor = Retriever(components), Ingestor.from_settings(local, components=components)
        batches = iter(range(1_000_000))

        def ingest(n: int, tenant: str = "load") -> str:
            batch = next(batches)
            docs = [{**texts[i % len(texts)], "id": f"b{batch}-{i}", "tenant": tenant} for i in range(n)]
            return ingestor.submit(docs, source="bench")

        try:
            ingestor.wait(ingest(len(texts), SEARCHED))  # something to find, and a warm encoder and store
            lengths = components.encoder.tokenizer.queries([q for q, _ in queries]).lengths
            queries = [q for q, n in zip(queries, lengths, strict=True) if n <= components.encoder.spec.query_maxlen]
            search = lambda query, language: retriever.search(query, 10, language, {"tenant": SEARCHED})  # noqa: E731
            drive(search, queries, clients, min(2.0, seconds))
            rows = []
            for label, value in ((f"on (share {share:g})", share), ("off", 1.0)):
                encoder = components.encoder
                encoder.priority = SearchPriority(value, encoder.settings.background_batch_size)
                rows.append(_phases(label, ingestor, ingest, search, queries, clients, seconds))
            return rows
        finally:
            ingestor.close()
            retriever.close()


def _phases(
    label: str,
    ingestor: Ingestor,
    ingest: Callable[[int], str],
    search: Callable[[str, str], object],
    queries: list[tuple[str, str]],
    clients: int,
    seconds: float,
) -> ContentionFigures:
    """Searches alone, an ingest alone (which sizes the next), then an ingest with searches back to
    back until it is done."""
    idle = drive(search, queries, clients, seconds)
    start = time.perf_counter()
    job = ingestor.wait(ingest(SIZING_DOCS))
    alone = job["processed"] / (time.perf_counter() - start)
    job_id = ingest(max(SIZING_DOCS, int(alone * seconds)))  # about `seconds` of work alone
    finished, busy = threading.Event(), list[float]()
    driver = threading.Thread(target=lambda: busy.extend(drive(search, queries, clients, 0, finished)))
    start = time.perf_counter()
    driver.start()
    job = ingestor.wait(job_id)
    during = job["processed"] / (time.perf_counter() - start)
    finished.set()
    driver.join()
    (idle50, idle99), (busy50, busy99) = np.percentile(idle, [50, 99]), np.percentile(busy, [50, 99])
    return ContentionFigures(label, idle50, idle99, busy50, busy99, alone, during)

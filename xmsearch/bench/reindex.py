"""`xmsearch bench reindex`: documents/s of a reindex (every document rebuilt from the store, encoded
again, verified, swapped) against plain ingestion of the same documents, in one run, on an embedded
store in a temporary folder. Both include loading the model; the reindex changes the vector
datatype, so that it encodes every chunk again with the same model."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from xmsearch.bench.search import python_doc_passages
from xmsearch.ingest.documents import Document
from xmsearch.ingest.pipeline import Indexer
from xmsearch.ingest.reindex import reindex
from xmsearch.settings import Settings


@dataclass(frozen=True)
class ReindexFigures:
    documents: int
    chunks: int
    ingest_docs_per_s: float
    reindex_docs_per_s: float

    @property
    def ratio(self) -> float:
        return self.reindex_docs_per_s / self.ingest_docs_per_s

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": self.ratio}


def run(settings: Settings, n_docs: int) -> ReindexFigures:
    docs = [Document(id=f"p{i}", text=t, language="en") for i, t in enumerate(python_doc_passages(n_docs))]
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
    return ReindexFigures(len(docs), job.counts.written, len(docs) / ingest_s, len(docs) / reindex_s)

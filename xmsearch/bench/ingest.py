"""`xmsearch bench ingest`: documents/s from a JSON Lines file to searchable points, through a real
Redis broker and a real worker process, next to the encoder alone on the same texts, in one run.

The worker is started and warmed (model loaded) before the clock starts; the end-to-end time runs
from the first line read to the job's last task done. A private redis-server is started when
XMSEARCH_BROKER_URL is unset.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from xmsearch.bench.processes import CLI, free_port, wait_for
from xmsearch.bench.search import python_doc_passages
from xmsearch.ingest.documents import limits
from xmsearch.ingest.job import JobStatus
from xmsearch.ingest.sources import read_path
from xmsearch.retriever.errors import PermanentError
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.settings import Settings


@dataclass(frozen=True)
class IngestFigures:
    documents: int
    chunks: int
    end_to_end_docs_per_s: float
    encoder_docs_per_s: float
    ratio: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run(settings: Settings, n_docs: int) -> IngestFigures:
    with tempfile.TemporaryDirectory(prefix="xmsearch-bench-ingest-") as tmp:
        folder = Path(tmp)
        corpus = folder / "docs.jsonl"
        passages = python_doc_passages(n_docs)
        corpus.write_text(
            "".join(json.dumps({"id": f"p{i}", "text": t, "language": "en"}) + "\n" for i, t in enumerate(passages))
        )
        redis_process, url = None, settings.broker_url
        if url is None:
            if shutil.which("redis-server") is None:
                raise PermanentError("bench ingest needs XMSEARCH_BROKER_URL or a redis-server binary to start one")
            port = free_port()
            redis_process = subprocess.Popen(
                ["redis-server", "--port", str(port), "--save", "", "--dir", tmp], stdout=subprocess.DEVNULL
            )
            url = f"redis://127.0.0.1:{port}/0"
        env = {
            **os.environ,
            "XMSEARCH_BROKER_URL": url,
            "XMSEARCH_DATA_DIR": str(folder / "data"),
            "XMSEARCH_STORE": "edge",
        }
        log = folder / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen([*CLI, "worker"], env=env, stdout=out, stderr=out, start_new_session=True)
        try:
            wait_for(lambda: "is warm" in log.read_text(errors="replace"), 600, "the worker did not load the model")
            end_to_end, chunks = _end_to_end(corpus, settings.model_copy(update={"broker_url": url}))
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(120)
            if redis_process:
                redis_process.terminate()
                redis_process.wait(10)
        encoder = Encoder.from_pretrained(settings.model, settings)
        texts = [r.text for r in read_path(str(corpus), limits(settings)) if hasattr(r, "text")]
        encoder.encode_documents(texts[:8], "en")  # warm-up
        start = time.perf_counter()
        encoder.encode_documents(texts, "en")
        alone = len(texts) / (time.perf_counter() - start)
    e2e = len(passages) / end_to_end
    return IngestFigures(len(passages), chunks, e2e, alone, e2e / alone)


def _end_to_end(corpus: Path, settings: Settings) -> tuple[float, int]:
    """Producer in this process (its clock starts at the first line read), the worker in its own."""
    from xmsearch.workers.dispatch import TaskQueue
    from xmsearch.workers.producer import enqueue

    tasks = TaskQueue(settings)
    start = time.perf_counter()
    job_id = enqueue(read_path(str(corpus), limits(settings)), tasks, str(corpus))
    wait_for(lambda: JobStatus((tasks.jobs.get(job_id) or {})["status"]).finished, 3600, "the job did not finish")
    elapsed = time.perf_counter() - start
    job = tasks.jobs.get(job_id) or {}
    if job.get("failed") or job.get("rejected"):
        raise PermanentError(f"bench ingest: the run had failures: {job}")
    return elapsed, int(job["written"])

"""`xmsearch bench api`: a bounded load test of POST /search on loopback, next to the Retriever called
directly with the same concurrency, queries and index, in one run.

A third path, the Retriever with query batching off, shows what grouping concurrent queries into
one forward pass gains. The bundled corpus is indexed once and copied, so that the API server (`xmsearch serve`, its own
process, as deployed) and the direct Retriever (this process) each own an identical store. Phases
alternate (direct, API, direct, API, ...) so that drift on a noisy machine hits both alike; each
client sends its next query as soon as the last one is answered.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import httpx
import numpy as np

from xmsearch.bench.processes import CLI, free_port, wait_for
from xmsearch.ingest.documents import limits
from xmsearch.ingest.pipeline import Indexer
from xmsearch.ingest.sources import read_jsonl
from xmsearch.retriever.errors import PermanentError
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings


@dataclass(frozen=True)
class LoadFigures:
    path: str  # direct | api
    requests: int
    per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def drive(
    call: Callable[[str, str], object],
    queries: list[tuple[str, str]],
    clients: int,
    seconds: float,
    until: threading.Event | None = None,
) -> list[float]:
    """`clients` threads calling back to back for `seconds` (or until `until` is set); every latency
    in ms."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[BaseException] = []
    stop = time.perf_counter() + seconds
    over = until.is_set if until is not None else lambda: time.perf_counter() >= stop

    def client(n: int) -> None:
        i = n
        while not over() and not failures:
            query, language = queries[i % len(queries)]
            start = time.perf_counter()
            try:
                call(query, language)
            except Exception as exc:
                failures.append(exc)
                return
            latencies[n].append((time.perf_counter() - start) * 1000)
            i += clients

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise PermanentError(f"bench api: a request failed: {failures[0]}")
    return [x for per in latencies for x in per]


def _figures(path: str, latencies: list[float], seconds: float) -> LoadFigures:
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return LoadFigures(path, len(latencies), len(latencies) / seconds, float(p50), float(p95), float(p99))


def run(settings: Settings, clients: int, seconds: float, rounds: int, k: int) -> list[LoadFigures]:
    data = resources.files("xmsearch.ingest") / "data"
    queries = [(q["query"], q["language"]) for q in json.loads((data / "sample_queries.json").read_text())]
    with tempfile.TemporaryDirectory(prefix="xmsearch-bench-api-") as tmp:
        direct_dir, api_dir = Path(tmp) / "direct", Path(tmp) / "api"
        local = settings.model_copy(update={"data_dir": direct_dir, "qdrant_url": None, "store": "edge"})
        indexer = Indexer.from_settings(local)
        with (data / "sample_corpus.jsonl").open("rb") as lines:
            indexer.ingest(read_jsonl(lines, "sample", limits(local)))
        indexer.close()
        shutil.copytree(direct_dir, api_dir)
        retriever = Retriever.from_settings(local, indexer.encoder)
        lengths = indexer.encoder.tokenizer.queries([q for q, _ in queries]).lengths
        queries = [q for q, n in zip(queries, lengths, strict=True) if n <= indexer.encoder.spec.query_maxlen]
        port = free_port()
        env = {
            **os.environ,
            "XMSEARCH_DATA_DIR": str(api_dir),
            "XMSEARCH_STORE": "edge",
            "XMSEARCH_API_AUTH": "disabled",
            "XMSEARCH_API_PORT": str(port),
            "XMSEARCH_MODEL": settings.model,
        }
        env.pop("XMSEARCH_BROKER_URL", None)
        log = Path(tmp) / "server.log"  # a file, not a pipe: a chatty server never blocks on a full pipe
        with log.open("wb") as out:
            server = subprocess.Popen([*CLI, "serve"], env=env, stdout=out, stderr=out, start_new_session=True)
        try:
            return _measure(retriever, f"http://127.0.0.1:{port}", server, log, queries, clients, seconds, rounds, k)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(60)
            retriever.close()


def _measure(
    retriever: Retriever,
    url: str,
    server: subprocess.Popen[bytes],
    log: Path,
    queries: list[tuple[str, str]],
    clients: int,
    seconds: float,
    rounds: int,
    k: int,
) -> list[LoadFigures]:
    def up() -> bool:
        if server.poll() is not None:
            raise PermanentError(f"bench api: the server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            return httpx.get(f"{url}/ready").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 300, "the API server was not ready")
    local = threading.local()

    def over_http(query: str, language: str) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)  # one keep-alive connection per client
        response = local.client.post("/search", json={"query": query, "language": language, "k": k})
        if response.status_code != 200:
            raise PermanentError(f"POST /search answered {response.status_code}: {response.text[:300]}")

    unbatched = Retriever(  # the same encoder and store, one forward pass per search
        replace(retriever.components, settings=retriever.settings.model_copy(update={"query_batching": False}))
    )
    paths: dict[str, Callable[[str, str], object]] = {
        "direct": lambda query, language: retriever.search(query, k, language),
        "api": over_http,
        "direct, unbatched": lambda query, language: unbatched.search(query, k, language),
    }
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    for call in paths.values():  # warm every path (threads, connections, caches)
        drive(call, queries, clients, min(2.0, seconds))
    for _ in range(rounds):
        for name, call in paths.items():
            latencies[name] += drive(call, queries, clients, seconds)
    return [_figures(name, latencies[name], seconds * rounds) for name in paths]


def as_dicts(rows: list[LoadFigures]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]

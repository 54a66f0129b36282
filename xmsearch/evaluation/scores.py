"""The measures of a run, computed by ir-measures (trec_eval underneath), never by hand: nDCG@10,
MRR@10 and Recall@100, overall and per query language, per query for the paired comparison of two
configurations (Student's paired t-test, scipy), and the run itself in TREC format so that anyone can
compute them again with their own tool."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ir_measures
from ir_measures import RR, R, nDCG
from scipy import stats

# name shown -> ir-measures measure (RR@10 is MRR@10 once averaged over the queries)
MEASURES = {"nDCG@10": nDCG @ 10, "MRR@10": RR @ 10, "R@100": R @ 100}
Ranking = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Scores:
    """A run's measures: overall, per query language, and per query (measure -> query -> value)."""

    overall: dict[str, float]
    languages: dict[str, dict[str, float]]
    queries_per_language: dict[str, int]
    per_query: dict[str, dict[str, float]]


@dataclass(frozen=True)
class Difference:
    """Another configuration against the baseline, on one measure, over the same queries."""

    measure: str
    delta: float
    p_value: float | None  # None: the same value on every query


def score(qrels: dict[str, dict[str, int]], ranking: Ranking, languages: Mapping[str, str]) -> Scores:
    """Every judged query counts; one without hits scores 0."""
    run = {query: dict(hits) for query, hits in ranking.items()}
    per_query: dict[str, dict[str, float]] = {name: {} for name in MEASURES}
    names = {measure: name for name, measure in MEASURES.items()}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, run):
        per_query[names[metric.measure]][metric.query_id] = float(metric.value)
    by_language: dict[str, list[str]] = {}
    for query in qrels:
        by_language.setdefault(languages.get(query, "?"), []).append(query)
    return Scores(
        _aggregate(qrels, run),
        {lang: _aggregate({q: qrels[q] for q in queries}, run) for lang, queries in sorted(by_language.items())},
        {lang: len(queries) for lang, queries in sorted(by_language.items())},
        per_query,
    )


def _aggregate(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    values = ir_measures.calc_aggregate(list(MEASURES.values()), qrels, {q: run[q] for q in qrels if q in run})
    return {name: float(values[measure]) for name, measure in MEASURES.items()}


def compare(baseline: Scores, other: Scores) -> list[Difference]:
    """Each measure's mean difference (other - baseline) and the paired t-test's two-sided p-value."""
    differences = []
    for name in MEASURES:
        queries = sorted(baseline.per_query[name])
        before = [baseline.per_query[name][q] for q in queries]
        after = [other.per_query[name].get(q, 0.0) for q in queries]
        delta = other.overall[name] - baseline.overall[name]
        same = all(math.isclose(a, b) for a, b in zip(before, after, strict=True))
        p_value = None if same or len(queries) < 2 else float(stats.ttest_rel(after, before).pvalue)
        differences.append(Difference(name, delta, None if p_value is None or math.isnan(p_value) else p_value))
    return differences


def write_trec(ranking: Ranking, path: Path, tag: str) -> None:
    """The run as TREC run lines: query Q0 document rank score tag."""
    with path.open("w", encoding="utf-8") as out:
        for query, hits in ranking.items():
            ranked = sorted(hits.items(), key=lambda hit: -hit[1])
            for rank, (document, value) in enumerate(ranked, 1):
                out.write(f"{query} Q0 {document} {rank} {value:.6f} {tag}\n")

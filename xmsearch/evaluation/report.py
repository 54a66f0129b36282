"""An evaluation's report: each configuration's measures (overall and per language), every other
configuration compared with the first, written as JSON beside each run in TREC format (and, on
request, a plot of nDCG@10 per language)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from xmsearch.evaluation.data import EvalSet
from xmsearch.evaluation.runs import Run
from xmsearch.evaluation.scores import MEASURES, compare, score, write_trec
from xmsearch.retriever.errors import PermanentError

REPORT = "results.json"


def report(evalset: EvalSet, runs: list[Run], k: int, out: Path) -> dict[str, Any]:
    """The report of these runs; written with the runs (<name>.trec) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    scored = [score(evalset.qrels, run.ranking, run.languages) for run in runs]
    configs = []
    for run, scores in zip(runs, scored, strict=True):
        write_trec(run.ranking, out / f"{run.config.name}.trec", run.config.name)
        configs.append(
            {
                "name": run.config.name,
                "changes": run.config.changes,
                "language": run.config.language,
                "index": str(run.index),
                "reused_index": run.reused,
                "rejected": [f"{r.location}: {r.reason}" for r in run.rejected],
                "ms_per_query": round(run.ms_per_query, 2),
                "overall": scores.overall,
                "languages": scores.languages,
                "queries_per_language": scores.queries_per_language,
                "run": str(out / f"{run.config.name}.trec"),
            }
        )
    comparisons = [
        {"baseline": runs[0].config.name, "other": run.config.name, **asdict(difference)}
        for run, scores in zip(runs[1:], scored[1:], strict=True)
        for difference in compare(scored[0], scores)
    ]
    result = {
        "set": evalset.name,
        "documents": evalset.documents,
        "queries": len(evalset.queries),
        "k": k,
        "measures": list(MEASURES),
        "test": "paired t-test, two-sided, over the judged queries",
        "configs": configs,
        "comparisons": comparisons,
    }
    (out / REPORT).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def can_plot() -> None:
    """Refuse a plot without matplotlib (said before the evaluation runs, not after)."""
    try:
        import matplotlib
    except ImportError:
        raise PermanentError("--plot needs matplotlib: pip install 'xmsearch[plot]'") from None
    matplotlib.use("Agg")  # files only, no display


def plot(result: dict[str, Any], path: Path, measure: str = "nDCG@10") -> None:
    """Bars of `measure` per query language, one per configuration (needs matplotlib)."""
    can_plot()
    import matplotlib.pyplot as plt

    languages = sorted({lang for config in result["configs"] for lang in config["languages"]})
    figure, axes = plt.subplots(figsize=(max(6.0, len(languages) * 0.9), 4))
    width = 0.8 / len(result["configs"])
    for i, config in enumerate(result["configs"]):
        values = [config["languages"].get(lang, {}).get(measure, 0.0) for lang in languages]
        axes.bar([x + i * width for x in range(len(languages))], values, width, label=config["name"])
    axes.set_xticks([x + width * (len(result["configs"]) - 1) / 2 for x in range(len(languages))], languages)
    axes.set_ylabel(measure)
    axes.set_title(f"{result['set']}: {measure} per query language")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)

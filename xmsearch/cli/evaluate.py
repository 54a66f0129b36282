"""`xmsearch eval`: retrieval quality on judged data (xmsearch.evaluation), as tables, a JSON report
and TREC runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from xmsearch.cli.output import console, stderr
from xmsearch.cli.root import app


@app.command("eval")
def evaluate(
    data: Annotated[
        Path | None,
        typer.Argument(
            help="A BEIR folder or mMARCO TSV files (default: the bundled xmsearch-mini set).", show_default=False
        ),
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            "-c",
            help="NAME or NAME:KEY=VALUE,... (any setting, and language=given|detect|CODE); repeat to compare, "
            "the first is the baseline. Default: the settings as they are.",
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="The judgements: qrels/SPLIT.tsv (BEIR), qrels.SPLIT.tsv.")] = "test",
    language: Annotated[
        str | None, typer.Option(help="Language of the documents and queries whose files give none.")
    ] = None,
    k: Annotated[int, typer.Option(help="Documents retrieved per query (Recall@100 needs 100).")] = 100,
    out: Annotated[Path, typer.Option(help="Folder of the report (results.json) and the runs (NAME.trec).")] = Path(
        "eval-results"
    ),
    work: Annotated[
        Path | None, typer.Option(help="Folder of the indexes built, reused by later runs (default: DATA_DIR/eval).")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Also draw nDCG@10 per language into this image.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """nDCG@10, MRR@10 and Recall@100 of each configuration, overall and per query language, and each
    configuration against the first with a paired t-test.

    Examples: xmsearch eval; xmsearch eval ./scifact -c centroids:first_stage=on -c exact:first_stage=off;
    xmsearch eval ./mmarco-fr --split dev --language fr -c routed -c forced:language=fr
    """
    from xmsearch.evaluation.data import load
    from xmsearch.evaluation.report import REPORT, can_plot, report
    from xmsearch.evaluation.report import plot as draw
    from xmsearch.evaluation.runs import Config, evaluate
    from xmsearch.ingest.documents import limits
    from xmsearch.settings import get_settings

    if plot is not None:
        can_plot()
    settings = get_settings()
    configs = [Config.parse(text) for text in config or ["default"]]
    evalset = load(data, limits(settings), split, language)
    with stderr.status("evaluating", spinner="dots") as status:
        runs = evaluate(evalset, configs, settings, work or settings.data_dir / "eval", k, status.update)
    result = report(evalset, runs, k, out)
    if plot is not None:
        draw(result, plot)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    _show(result)
    stderr.print(f"report: {out / REPORT}; runs (TREC): {out}/NAME.trec" + (f"; plot: {plot}" if plot else ""))


def _show(result: dict[str, Any]) -> None:
    measures = result["measures"]
    table = Table(title=f"{result['set']}: {result['documents']} documents, {result['queries']} judged queries")
    for column in ("configuration", *measures, "ms/query", "index"):
        table.add_column(column, justify="left" if column in ("configuration", "index") else "right")
    for c in result["configs"]:
        index = "reused" if c["reused_index"] else f"built ({len(c['rejected'])} rejected)"
        table.add_row(c["name"], *(f"{c['overall'][m]:.4f}" for m in measures), f"{c['ms_per_query']:.1f}", index)
    console.print(table)
    languages = Table(title="nDCG@10 per query language (queries)")
    languages.add_column("language")
    for c in result["configs"]:
        languages.add_column(c["name"], justify="right")
    first = result["configs"][0]
    for lang, count in first["queries_per_language"].items():
        cells = [f"{c['languages'].get(lang, {}).get('nDCG@10', 0.0):.4f}" for c in result["configs"]]
        languages.add_row(f"{lang} ({count})", *cells)
    console.print(languages)
    if result["comparisons"]:
        differences = Table(title=f"against {first['name']} ({result['test']})")
        for column in ("configuration", "measure", "difference", "p-value"):
            differences.add_column(column, justify="left" if column in ("configuration", "measure") else "right")
        for d in result["comparisons"]:
            p_value = "identical" if d["p_value"] is None else f"{d['p_value']:.3g}"
            differences.add_row(d["other"], d["measure"], f"{d['delta']:+.4f}", p_value)
        console.print(differences)

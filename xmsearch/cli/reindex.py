"""`xmsearch reindex start|rollback`: rebuild the collection with another model or other index
settings into a new version, verified, then swapped; or point it back at the version before."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from xmsearch.cli.output import console, job_progress, stderr
from xmsearch.ingest.job import Job

app = typer.Typer(no_args_is_help=True, help="Rebuild the collection with another model or other settings.")


def _changes(model: str | None, sets: list[str]) -> dict[str, str]:
    from xmsearch.retriever.errors import InvalidInputError

    changes = {} if model is None else {"model": model}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidInputError(f"--set takes KEY=VALUE (e.g. --set vector_datatype=float32), not {item!r}")
        changes[name.strip().lower().removeprefix("xmsearch_")] = value
    return changes


@app.command("start")
def start(
    model: Annotated[str | None, typer.Option(help="The new model: a hub id or a local checkpoint folder.")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="A setting to change, KEY=VALUE: precision, chunk_overlap, vector_datatype, "
                     "quantization, first_stage, first_stage_encoding, metadata_indexes."),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Build from this JSON Lines file or folder instead of the collection itself.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:  # fmt: skip
    """Rebuild every document of the collection (every tenant, as ingested) into a new version with
    the new model or settings, verify it (documents per tenant, chunks per document, sample searches),
    then point the collection at it. The old version stays for `reindex rollback` until dropped
    (`collections drop`). Run again after an interruption: it resumes, encoding nothing twice.

    Embedded stores only for now: the store is locked for the run (stop `xmsearch serve` first).

    Examples:
      xmsearch reindex start --model ./colbert-xm-finetuned
      xmsearch reindex start --set vector_datatype=float32 --set chunk_overlap=64
      xmsearch reindex start --source corpus.jsonl   (the new version holds exactly that source)
    """
    from xmsearch.ingest.reindex import reindex
    from xmsearch.settings import get_settings

    changes = _changes(model, sets or [])
    with job_progress("reindex", as_json) as progress:
        bar = progress.add_task("reading the collection", total=None)

        def show(job: Job) -> None:
            counts = job.counts
            description = f"{counts.encoded:,} chunks encoded, {counts.skipped_unchanged:,} already there"
            progress.update(bar, completed=counts.processed, description=description)

        done = reindex(get_settings(), changes, show, lambda total: progress.update(bar, total=total), source)
    if as_json:
        print(json.dumps(done.as_dict()))
        return
    counts = done.job.counts
    resumed = " (resumed)" if done.resumed else ""
    console.print(
        f"{done.version}{resumed} is searched now, in place of {done.previous}: {counts.processed:,} documents, "
        f"{counts.encoded:,} chunks encoded, {done.removed:,} removed; per tenant {done.documents}"
    )
    stderr.print("searches and writes follow it: each process loads the model and settings it records when it starts")


@app.command("rollback")
def rollback_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Point the collection back at the version before the one searched (what a reindex replaced).

    Example: xmsearch reindex rollback
    """
    from xmsearch.ingest.reindex import rollback
    from xmsearch.settings import get_settings

    left, now, record = rollback(get_settings())
    if as_json:
        print(json.dumps({"left": left, "version": now, "built_with": record}))
        return
    console.print(
        f"{now} is searched again, in place of {left}, with its model {record.get('model', record['model_id'])}"
    )

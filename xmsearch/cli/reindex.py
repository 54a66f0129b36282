"""`xmsearch reindex start|status|cancel|rollback`: rebuild the collection with another model or other
index settings into a new version, verified, then swapped; follow or cancel it; or point the
collection back at the version before. In this process on the store (which it holds for the run), or,
with --url, inside a running `xmsearch serve`, which keeps searching and writing meanwhile."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xmsearch.cli.output import console, job_progress, stderr

if TYPE_CHECKING:
    from xmsearch.ingest.reindex_state import ReindexState
    from xmsearch.settings import Settings
    from xmsearch.workers.dispatch import TaskQueue

app = typer.Typer(no_args_is_help=True, help="Rebuild the collection with another model or other settings.")
POLL_S = 0.5  # how often a reindex in a running API is asked how far it is
JSON = Annotated[bool, typer.Option("--json", help="Print JSON (the shape the API answers).")]


def _changes(model: str | None, sets: list[str]) -> dict[str, str]:
    from xmsearch.retriever.errors import InvalidInputError

    changes = {} if model is None else {"model": model}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidInputError(f"--set takes KEY=VALUE (e.g. --set vector_datatype=float32), not {item!r}")
        changes[name] = value
    return changes


def _api(settings: Settings, method: str, path: str, **options: Any) -> Any:
    """The answer of the running API (XMSEARCH_API_URL, --url); None when this process works on the store."""
    from xmsearch.ingestor import mode_for

    if mode_for(settings) != "remote":
        return None
    from xmsearch.remote import ApiClient

    return ApiClient.once(settings, method, path, **options)


def _queue(settings: Settings) -> TaskQueue | None:
    """The broker of the distributed mode, where the worker that owns the store runs the reindex (None:
    another mode)."""
    from xmsearch.ingestor import mode_for

    if mode_for(settings) != "distributed":
        return None
    from xmsearch.workers.dispatch import TaskQueue

    return TaskQueue(settings, retries=2)


def _remote_state(settings: Settings, queue: TaskQueue | None) -> ReindexState | None:
    """The reindex as the running API or the broker knows it (None: the collection's never was)."""
    from xmsearch.ingest.reindex_state import ReindexState

    if queue is not None:
        from xmsearch.workers.reindexing import read

        return read(queue.redis, settings.collection)
    return ReindexState.model_validate(_api(settings, "GET", "/reindex"))


def _describe(state: ReindexState) -> str:
    return (
        f"{state.step}: {state.encoded:,} chunks encoded, {state.skipped:,} already there, "
        f"{state.caught_up:,} written meanwhile"
    )


def _print(state: ReindexState, as_json: bool) -> None:
    if as_json:
        print(state.model_dump_json())
        return
    if state.step == "done" and state.rollback:
        console.print(
            f"{state.version} is searched again, in place of {state.previous}, brought up to date: "
            f"{state.encoded:,} chunks encoded, {state.removed:,} documents removed"
        )
        return
    if state.step == "done":
        resumed = " (resumed)" if state.resumed else ""
        console.print(
            f"{state.version}{resumed} is searched now, in place of {state.previous}: {state.processed:,} documents, "
            f"{state.encoded:,} chunks encoded, {state.caught_up:,} written meanwhile, {state.removed:,} removed; "
            f"per tenant {state.documents}"
        )
        return
    done = f"{state.processed:,}" + (f" of {state.total:,}" if state.total is not None else "")
    rate = f", {state.rate:.1f} documents/s" if state.rate else ""
    left = f", about {state.seconds_left:.0f} s left" if state.seconds_left is not None else ""
    console.print(
        f"reindex of {state.collection} to {state.version or '(not created yet)'} with {state.changes}: {state.step}, "
        f"{done} documents{rate}{left}, in process {state.pid}" + (f"\n{state.error}" if state.error else "")
    )


@app.command("start")
def start(
    model: Annotated[str | None, typer.Option(help="The new model: a hub id or a local checkpoint folder.")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="A setting to change, KEY=VALUE: precision, chunk_overlap, token_pool_factor, "
                     "vector_datatype, quantization, first_stage, first_stage_encoding, metadata_indexes."),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Build from this JSON Lines file or folder instead of the collection itself.")
    ] = None,
    as_json: JSON = False,
) -> None:  # fmt: skip
    """Rebuild every document of the collection (every tenant, as ingested) into a new version with
    the new model or settings, verify it (documents per tenant, chunks per document, sample searches),
    then point the collection at it. The old version stays for `reindex rollback` until dropped
    (`collections drop`). Run again after an interruption: it resumes, encoding nothing twice.

    On the store, this process holds it for the run. With --url (a running `xmsearch serve`), the API
    reindexes while it keeps searching and writing; what is written meanwhile reaches the new version,
    and searches move to the new model at the swap.

    Examples:
      xmsearch reindex start --model ./colbert-xm-finetuned
      xmsearch reindex start --set vector_datatype=float32 --set chunk_overlap=64
      xmsearch reindex start --source corpus.jsonl   (the new version holds exactly that source)
      xmsearch --url http://127.0.0.1:8000 reindex start --model ./other
    """
    _run(_changes(model, sets or []), source, as_json, rollback=False)


def _run(changes: dict[str, str], source: str | None, as_json: bool, rollback: bool) -> None:
    """A reindex (or a rollback) here, in the running API, or in a worker, followed to its end."""
    from xmsearch.ingest.reindex import Reindex
    from xmsearch.ingest.reindex_state import ReindexState
    from xmsearch.ingestor import mode_for
    from xmsearch.retriever.errors import InvalidInputError, PermanentError
    from xmsearch.settings import get_settings

    settings = get_settings()
    with job_progress("rollback" if rollback else "reindex", as_json) as progress:
        bar = progress.add_task("loading the model", total=None)

        def show(state: ReindexState) -> None:
            progress.update(bar, completed=state.processed, total=state.total, description=_describe(state))

        queue = _queue(settings)
        elsewhere = mode_for(settings) != "embedded"  # the API or a worker runs it
        if source is not None and elsewhere:
            raise InvalidInputError("--source is read by this process: not with an API or the workers")
        path = "/reindex/rollback" if rollback else "/reindex"
        answer = _api(settings, "POST", path, **({} if rollback else {"json": {"settings": changes}}))
        if answer is not None:
            state = ReindexState.model_validate(answer)
        elif queue is not None:
            from xmsearch.workers.reindexing import request

            state = request(queue, settings, changes, rollback)
        else:
            here = Reindex(settings, changes, source, on_change=show, rollback=rollback)
            here.run()
            state = here.state
        while state.running:  # in the API or a worker: followed
            time.sleep(POLL_S)
            state = _remote_state(settings, queue) or state
            show(state)
        if state.step != "done":
            raise PermanentError(f"the {'rollback' if rollback else 'reindex'} ended {state.step}: {state.error}")
    _print(state, as_json)
    if not as_json and not elsewhere:
        stderr.print("searches and writes follow it: each process loads the model and settings it records at start")


@app.command("status")
def status(as_json: JSON = False) -> None:
    """The collection's reindex, running or last: its step, documents done of the total, rate, time
    left, the version it builds, its error (an interrupted one resumes with `reindex start`).

    Example: xmsearch reindex status --json
    """
    from xmsearch.ingest.reindex import last
    from xmsearch.ingestor import mode_for
    from xmsearch.retriever.errors import InvalidInputError
    from xmsearch.settings import get_settings

    settings = get_settings()
    queue = _queue(settings)
    state = last(settings) if mode_for(settings) == "embedded" else _remote_state(settings, queue)
    if state is None:
        raise InvalidInputError(f"{settings.collection!r} was never reindexed")
    _print(state, as_json)


@app.command("cancel")
def cancel_cmd(as_json: JSON = False) -> None:
    """Stop the running reindex and drop the version it built (searches never left the current one);
    an interrupted one has its version dropped.

    Example: xmsearch reindex cancel
    """
    from xmsearch.ingest.reindex import cancel
    from xmsearch.ingest.reindex_state import ReindexState
    from xmsearch.settings import get_settings

    settings = get_settings()
    if (queue := _queue(settings)) is not None:
        from xmsearch.workers.reindexing import cancel as cancel_in_worker

        _print(cancel_in_worker(queue.redis, settings.collection), as_json)
        return
    answer = _api(settings, "DELETE", "/reindex")
    _print(cancel(settings) if answer is None else ReindexState.model_validate(answer), as_json)


@app.command("rollback")
def rollback_cmd(as_json: JSON = False) -> None:
    """Return to the version before the one searched (what a reindex replaced), with its model. It
    is brought up to date first with what was written since (changed, added, deleted documents;
    the rest is skipped), so nothing written since is lost; then searches and writes move to it.

    Example: xmsearch reindex rollback
    """
    _run({}, None, as_json, rollback=True)

"""Commands of the distributed mode: a worker, the stream intake, jobs and dead letters."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from xmsearch.cli.output import console, jobs_table, print_job, stderr
from xmsearch.cli.root import app


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (default: the setting).")] = None,
) -> None:
    """Run a Celery worker that indexes the queued tasks (distributed mode).

    Task events are on, so that Flower or `celery events` can watch it; other options pass through
    to `celery worker`.

    Example: XMSEARCH_BROKER_URL=redis://127.0.0.1:6379/0 xmsearch worker --concurrency 2 --hostname w1@%h
    """
    from xmsearch.logs import serving
    from xmsearch.settings import get_settings
    from xmsearch.workers.metrics_http import serve_worker_metrics

    settings = get_settings()
    serving(settings)  # task lines go through the one handler (text or JSON)
    serve_worker_metrics(settings)  # before any metric exists: the pool processes' samples add up

    from xmsearch.workers.app import QUEUE, make_app, worker_processes

    celery_app = make_app(settings)
    n = worker_processes(settings, concurrency or settings.worker_concurrency)
    celery_app.worker_main(
        [
            "worker",
            "--loglevel=INFO",
            f"--concurrency={n}",
            "--pool=prefork",
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--task-events",
            *ctx.args,
        ]
    )


@app.command()
def intake(
    consumer: Annotated[str | None, typer.Option(help="This consumer's name (default: a random one).")] = None,
    claim_idle: Annotated[float, typer.Option(help="Seconds before an unacknowledged entry is reclaimed.")] = 60.0,
) -> None:
    """Read documents that apps push to the Redis Stream `xmsearch:intake` and queue them for the workers.

    An app pushes:  XADD xmsearch:intake * document '{"id": "a", "text": "...", "language": "fr"}'
    Example: XMSEARCH_BROKER_URL=redis://127.0.0.1:6379/0 xmsearch intake --consumer intake-1
    """
    from xmsearch.logs import serving
    from xmsearch.settings import get_settings
    from xmsearch.workers.dispatch import TaskQueue
    from xmsearch.workers.intake import STREAM, Intake

    settings = get_settings()
    serving(settings)
    intake = Intake(TaskQueue(settings), consumer, claim_idle)
    stderr.print(f"intake {intake.consumer}: reading {STREAM} at {settings.broker_url} (Ctrl-C stops)")
    intake.run()


@app.command()
def jobs(
    job_id: Annotated[str | None, typer.Argument(help="One job (default: the recent ones).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show ingestion jobs and their counts (distributed mode, or a running API with --url).

    Embedded jobs live in the process that runs them.

    Examples: xmsearch jobs    xmsearch jobs 3f2a... --json    xmsearch --url http://127.0.0.1:8000 jobs
    """
    from xmsearch.ingestor import Ingestor, mode_for
    from xmsearch.retriever.errors import InvalidInputError
    from xmsearch.settings import get_settings

    settings = get_settings()
    if mode_for(settings) == "embedded":
        raise InvalidInputError(
            "embedded jobs live in the process that runs them: ask a running API (--url), or set XMSEARCH_BROKER_URL"
        )
    ingestor = Ingestor.from_settings(settings)
    try:
        if job_id:
            job = ingestor.job(job_id)
            if job is None:
                raise InvalidInputError(f"no job {job_id!r} (jobs are kept for 7 days)")
            print_job(job, as_json)
            return
        recent = ingestor.recent()
    finally:
        ingestor.close()
    if as_json:
        print(json.dumps(recent))
    elif recent:
        console.print(jobs_table(recent))
    else:
        console.print("no jobs")


@app.command()
def dlq(
    action: Annotated[str, typer.Argument(help="list | requeue | purge")] = "list",
    ids: Annotated[list[str] | None, typer.Argument(help="Entries to requeue or purge (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List, requeue or purge the dead letters (distributed mode).

    List shows each entry's id, job, documents and reason; requeue sends those that can succeed again
    as new tasks of their jobs (the others are kept, and the reason is said); purge drops them for
    good. Name entries by their id to requeue or purge only those.

    Examples: xmsearch dlq list --json    xmsearch dlq requeue    xmsearch dlq purge 3f2a9c1b7d0e
    """
    from xmsearch.retriever.errors import InvalidInputError
    from xmsearch.settings import get_settings
    from xmsearch.workers.dispatch import TaskQueue

    tasks = TaskQueue(get_settings())
    chosen = ids or []
    if action == "list":
        entries = tasks.dead.entries()
        if as_json:
            print(json.dumps(entries))
            return
        if not entries:
            console.print("no dead letters")
        for e in entries:
            docs = ", ".join(d.get("id", "?") for d in e["documents"]) or ", ".join(e["document_ids"])
            console.print(escape(f"{e['id']}  job {e['job_id']} ({e['task']}): [{docs}] {e['reason']}"))
    elif action == "requeue":
        done = tasks.requeue(chosen)
        console.print(f"requeued {done.requeued} dead letter(s)")
        for entry, why in done.kept:
            console.print(escape(f"kept {entry['id']} (job {entry['job_id']}: {entry['reason']}): {why}"))
    elif action == "purge":
        console.print(f"purged {tasks.purge(chosen)} dead letter(s)")
    else:
        raise InvalidInputError(f"dlq takes list, requeue or purge, not {action!r}")

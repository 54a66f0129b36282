"""What the commands print: jobs (human or JSON), a live view of a running job, and rejected records."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from xmsearch.api.models import ChunkHitOut, HitOut
from xmsearch.ingest.job import COUNTS, JobStatus
from xmsearch.retriever.errors import XmsearchError

if TYPE_CHECKING:
    from xmsearch.ingest.documents import Reject
    from xmsearch.ingestor import Ingestor

console = Console(soft_wrap=True)  # lines as written: a terminal wraps them, not rich at 80 columns
stderr = Console(stderr=True, soft_wrap=True)  # errors, logs and progress: logs print above a live bar


class Rejects:
    """Rejected records: all written to the --rejects file as they come, the first few kept to show."""

    SHOWN = 20

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.sink = path.open("w", encoding="utf-8") if path else None
        self.first: list[Reject] = []
        self.count = 0

    def __call__(self, reject: Reject) -> None:
        self.count += 1
        if len(self.first) < self.SHOWN:
            self.first.append(reject)
        if self.sink:
            self.sink.write(reject.as_json() + "\n")

    def close(self) -> None:
        if self.sink:
            self.sink.close()

    def show(self) -> None:
        for reject in self.first:
            console.print("[yellow]rejected[/yellow] " + escape(f"{reject.source} {reject.location}: {reject.reason}"))
        if self.count > len(self.first):
            console.print(
                f"... and {self.count - len(self.first)} more" + (f" (all in {self.path})" if self.path else "")
            )


class RateColumn(ProgressColumn):
    """Things (documents, points) per second, once known."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} {self.unit}/s", style="progress.data.speed")


def job_progress(label: str, quiet: bool, unit: str = "docs") -> Progress:
    """The live bar of a job (on standard error): things finished of a total, rate, time left, counts."""
    columns = (
        SpinnerColumn(),
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
    )
    return Progress(*columns, console=stderr, transient=True, disable=quiet)


def follow(ingestor: Ingestor, job_id: str, quiet: bool, expected: int | None = None) -> dict[str, Any]:
    """A live bar of the job until it is done: records finished (documents processed and records
    rejected) of `expected` (None: not known; then of those read so far), rate, time left, counts."""
    with job_progress(f"job {job_id[:8]}", quiet) as progress:
        bar = progress.add_task("", total=expected)

        def show(job: dict[str, Any]) -> None:
            done = job["processed"] + job["rejected"]
            counts = (
                f"{job['encoded']} chunks encoded, {job['skipped_unchanged']} unchanged, {job['rejected']} rejected"
            )
            if job.get("tasks_sent"):
                counts += f", tasks {job['tasks_done']}/{job['tasks_sent']}"
            total = expected if expected is not None else job["accepted"] + job["rejected"] or None
            progress.update(bar, completed=done, total=total, description=counts)

        return ingestor.wait(job_id, on_progress=show, poll=0.2)


def job_json(job: dict[str, Any]) -> dict[str, Any]:
    """The job as printed by --json: its fields, and its counts also grouped under `counts`."""
    return {**job, "counts": {name: job[name] for name in COUNTS}}


def raise_if_failed(job: dict[str, Any], what: str) -> None:
    """A failed job is an error (exit code 1) that says why."""
    if job.get("status") == JobStatus.FAILED:
        reasons = "; ".join(job.get("errors") or []) or "a task failed for good (see `xmsearch dlq list`)"
        raise XmsearchError(f"the {what} job {job['id']} failed: {reasons}")


JOB_COLUMNS = ("status", "source", "tenant", "accepted", "written", "rejected", "failed", "tasks_done", "tasks_sent")


def snippet(text: str, width: int) -> str:
    """A passage on one line of at most `width` terminal cells (wide scripts take two): white space
    folded, cut at a word boundary where there is one, with an ellipsis."""
    flat = " ".join(text.split())
    if cell_len(flat) <= width:
        return flat
    cut = set_cell_size(flat, width - 1).rstrip()
    if len(cut) < len(flat) and flat[len(cut)] != " " and " " in cut:  # the cut fell inside a word
        cut = cut.rsplit(" ", 1)[0]
    return cut + "…"


def hit_line(hit: ChunkHitOut, width: int, extra: str = "") -> str:
    """One search hit on one line, markup-safe: score, [tenant/]document#chunk [language], its text
    (a document's other chunks: #chunk only)."""
    where = f"#{hit.chunk} [{hit.language}{extra}]"
    if isinstance(hit, HitOut):
        where = f"{'' if hit.tenant is None else hit.tenant + '/'}{hit.document_id}{where}"
    return escape(f"{hit.score:7.2f}  {where}  {snippet(hit.text, width)}")


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    """Jobs as a table, newest first: id, submitted (local time), status and counts."""
    table = Table(box=None, header_style="bold")
    for column in ("id", "submitted", *JOB_COLUMNS):
        table.add_column(column.replace("_", " "), justify="right" if column in COUNTS or "tasks" in column else "left")
    for job in jobs:
        created = job.get("created")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) if created else "-"
        cells = ["-" if job.get(c) is None else str(job[c]) for c in JOB_COLUMNS]
        table.add_row(job["id"], when, *(escape(cell) for cell in cells))
    return table


def print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(job_json(job)))
        return
    shown = {k: v for k, v in job.items() if k not in ("errors", "source", "tenant") and v is not None}
    console.print(" ".join(f"{k.replace('_', ' ')}: {v}" for k, v in shown.items()))

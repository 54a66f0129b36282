"""The embedded mode's journal: jobs and the work they were accepted with, in SQLite (WAL, a full sync
on each commit) in `<data folder>/journal/`. A submission is committed before it is answered, so a crash or a
SIGKILL loses nothing accepted: the next process that opens the folder indexes what was left, in
order. Job records (status, counts, first errors) outlive the process too.

One row per job in `jobs` (kept: the last KEPT_JOBS finished ones); one row in `work` per job not yet
finished that can be run again (its documents, or the ids to delete). A stream (a file being read
while it is indexed) has no `work` row: it cannot be read again, so an interrupted one is failed with
the reason, and running the ingest again finishes it (unchanged documents are skipped).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xmsearch.ingest.job import COUNTS, JobStatus
from xmsearch.retriever.index.stores.edge import FolderLock

KEPT_JOBS = 10_000  # finished jobs whose status can still be read
ADVICE = (
    "the embedded mode runs one process per data folder (it owns the journal of accepted jobs): stop that "
    "process, talk to it (--url), or use the distributed mode (XMSEARCH_BROKER_URL)"
)
Kind = Literal["index", "delete"]
JOB_COLUMNS = "id, source, tenant, created, status, counts, errors"  # a job as `_view` reads it

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    source TEXT NOT NULL,
    tenant TEXT,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}',
    errors TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS work (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Pending:
    """A job accepted but not finished when the last process stopped, with what it was accepted with."""

    id: str
    source: str
    tenant: str | None
    created: float
    kind: Kind
    payload: Any


class Journal:
    """Jobs and their accepted work in `<folder>/jobs.sqlite3` (in memory for a folder of None), which
    one process at a time runs: it resumes what is unfinished, so a second one would run it twice."""

    def __init__(self, folder: Path | None) -> None:
        self._lock = None
        if folder is not None:
            self._lock = FolderLock(folder, ADVICE)
            self._lock.acquire()  # StoreLockedError naming the owner when another process runs it
        self.db = sqlite3.connect(
            ":memory:" if folder is None else str(folder / "jobs.sqlite3"),
            check_same_thread=False,
            isolation_level=None,
        )
        self.lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        self.db.executescript(SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def accept(
        self, job_id: str, source: str, tenant: str | None, kind: Kind | None = None, payload: Any = None
    ) -> float:
        """Record a new queued job, with its work when it can be run again; on disk when this returns.
        The time it was created."""
        created = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, source, tenant, created, status) VALUES (?, ?, ?, ?, ?)",
                (job_id, source, tenant, created, str(JobStatus.QUEUED)),
            )
            if kind is not None:
                db.execute("INSERT INTO work VALUES (?, ?, ?)", (job_id, kind, json.dumps(payload, ensure_ascii=False)))
        return created

    def finish(self, job_id: str, status: JobStatus, counts: dict[str, int], errors: list[str]) -> None:
        """The job's outcome; its work is done with (and the oldest finished jobs beyond KEPT_JOBS go)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = ?, counts = ?, errors = ? WHERE id = ?",
                (str(status), json.dumps(counts), json.dumps(errors, ensure_ascii=False), job_id),
            )
            db.execute("DELETE FROM work WHERE job_id = ?", (job_id,))
            db.execute(
                "DELETE FROM jobs WHERE status IN (?, ?) AND seq <= (SELECT MAX(seq) FROM jobs) - ?",
                (str(JobStatus.DONE), str(JobStatus.FAILED), KEPT_JOBS),
            )

    def unfinished(self) -> list[Pending]:
        """The jobs accepted and not finished, oldest first; those that cannot be run again (streams)
        are failed here with the reason."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT j.id, j.source, j.tenant, j.created, w.kind, w.payload FROM jobs j "
                "LEFT JOIN work w ON w.job_id = j.id WHERE j.status IN (?, ?) ORDER BY j.seq",
                (str(JobStatus.QUEUED), str(JobStatus.RUNNING)),
            ).fetchall()
            lost = [row[0] for row in rows if row[4] is None]
            reason = json.dumps(["interrupted: the process stopped while it read this stream; run the ingest again"])
            db.executemany(
                "UPDATE jobs SET status = ?, errors = ? WHERE id = ?",
                [(str(JobStatus.FAILED), reason, job_id) for job_id in lost],
            )
        return [Pending(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows if r[4] is not None]

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _view(row)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_view(row) for row in rows]

    def close(self) -> None:
        with self.lock:
            self.db.close()
        if self._lock is not None:
            self._lock.release()


def _view(row: tuple[Any, ...]) -> dict[str, Any]:
    job_id, source, tenant, created, status, counts, errors = row
    numbers = json.loads(counts)
    return {
        "id": job_id,
        "status": status,
        "source": source,
        "tenant": tenant,
        "created": created,
        **{name: int(numbers.get(name, 0)) for name in COUNTS},
        "errors": json.loads(errors),
    }

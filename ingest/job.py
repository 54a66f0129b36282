"""What a job is, in both modes: its status and its counts. The embedded mode keeps them in memory,
the distributed mode in Redis (`xmsearch.workers.jobs`); both report them through these types."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is: queued (nothing started), running, done, or failed (part of it failed for good)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Nothing more will happen to the job."""
        return self in (JobStatus.DONE, JobStatus.FAILED)


@dataclass
class JobCounts:
    accepted: int = 0  # valid documents read
    processed: int = 0  # valid documents finished: indexed, unchanged, superseded by a later copy, or failed
    skipped_unchanged: int = 0  # documents whose chunks were all stored already
    encoded: int = 0  # chunks encoded
    written: int = 0  # points written
    deleted: int = 0  # chunks removed (shorter new versions, deleted documents)
    rejected: int = 0  # records that are not valid documents
    failed: int = 0  # valid documents that could not be indexed
    missing: int = 0  # documents to delete that were not there


COUNTS = tuple(f.name for f in fields(JobCounts))


@dataclass
class Job:
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    counts: JobCounts = field(default_factory=JobCounts)
    status: JobStatus = JobStatus.RUNNING

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "status": str(self.status), "counts": asdict(self.counts)}

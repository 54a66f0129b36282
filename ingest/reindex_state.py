"""What a reindex reports while it runs and after: its step, its documents done of the total, rate and
time left, the versions it builds and replaces, its error. The running process keeps it in a file
beside the store (`<data_dir>/reindex/<collection>.json`), so `reindex status` and `reindex cancel`
from another process find it, and a process restarted after a crash resumes the reindex it names."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from xmsearch.retriever.errors import PermanentError
from xmsearch.retriever.settings import RetrieverSettings

Step = Literal[
    "queued", "loading", "copying", "catching_up", "verifying", "swapping", "done", "failed", "cancelled", "interrupted"
]
ENDED: frozenset[Step] = frozenset({"done", "failed", "cancelled", "interrupted"})


class ReindexRunningError(PermanentError):
    """Another reindex of the collection runs: one at a time."""


class ReindexUnavailableError(PermanentError):
    """This deployment cannot reindex here (the message says where it can)."""


class ReindexState(BaseModel):
    """One reindex of one collection, as `reindex status --json` and GET /reindex show it (with
    `running`, `rate` in documents/s and `seconds_left`)."""

    collection: str
    step: Step = Field(
        description="queued (for a worker), loading (the new model), copying, catching_up (with writes made "
        "meanwhile), verifying, swapping; then done, failed, cancelled or interrupted (resumed by a rerun)."
    )
    changes: dict[str, str] = Field(description="What the reindex changes: setting -> value as given.")
    source: str | None = Field(None, description="The file or folder it builds from (None: the collection itself).")
    rollback: bool = Field(False, description="A rollback: back to the version before, brought up to date first.")
    pid: int = Field(description="The process that runs it (0: none yet).")
    started: float
    updated: float
    copying_since: float | None = None
    finished: float | None = None
    version: str | None = Field(None, description="The version it builds.")
    previous: str | None = Field(None, description="The version searched when it started.")
    resumed: bool = False
    total: int | None = Field(None, description="Documents to copy (None: a named source, read as it goes).")
    processed: int = 0
    encoded: int = Field(0, description="Chunks encoded.")
    skipped: int = Field(0, description="Documents already in the new version (a resumed reindex).")
    caught_up: int = Field(0, description="Documents written while it copied, brought into the new version.")
    removed: int = Field(0, description="Documents a resumed version held that the source no longer has.")
    documents: dict[str, int] = Field(default_factory=dict, description="Done: documents per tenant ('' = none).")
    error: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def running(self) -> bool:
        return self.step not in ENDED

    @property
    def unfinished(self) -> bool:
        """Running, or stopped by a crash or a process stop: a rerun with its changes resumes it."""
        return self.step not in ("done", "failed", "cancelled")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float | None:
        """Documents per second since the copy began."""
        if self.copying_since is None or self.processed == 0:
            return None
        return self.processed / max((self.finished or self.updated) - self.copying_since, 1e-9)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def seconds_left(self) -> float | None:
        rate = self.rate
        if not self.running or rate is None or self.total is None:
            return None
        return max(self.total - self.processed, 0) / rate

    def alive(self) -> bool:
        """Whether the process that runs it still does (a crashed one left `running` behind)."""
        if not self.running or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True


def state_path(settings: RetrieverSettings) -> Path | None:
    """Where the collection's reindex state is kept (None: an in-memory store keeps none)."""
    if str(settings.data_dir) == ":memory:":
        return None
    return settings.data_dir / "reindex" / f"{settings.collection}.json"


def cancel_path(path: Path) -> Path:
    """The file whose presence asks the reindex running in another process to stop and drop its version."""
    return path.with_suffix(".cancel")


def save(path: Path | None, state: ReindexState) -> None:
    """Write the state atomically (a reader never sees half of it)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json())
    os.replace(tmp, path)


def load(path: Path | None) -> ReindexState | None:
    """The last reindex of the collection (None: there was none, or it left no readable record)."""
    if path is None or not path.is_file():
        return None
    try:
        return ReindexState.model_validate(json.loads(path.read_text()))
    except ValueError:
        return None

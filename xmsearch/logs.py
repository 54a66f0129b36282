"""How every xmsearch process logs: one handler on the root logger, text or JSON lines
(`XMSEARCH_LOG_FORMAT`), at `XMSEARCH_LOG_LEVEL`. The CLI, the API server (uvicorn's loggers included)
and the workers all log through it, to stderr."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

from pydantic import Field
from rich.file_proxy import FileProxy

from xmsearch.retriever.settings import EnvSettings

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message")


class LogSettings(EnvSettings):
    """Logs: how much, and as text for people or JSON lines for a log pipeline."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Field(
        None, description="The least severe records shown (default: WARNING; INFO for serve, worker and intake)."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description='json = one JSON object per line: {"asctime", "levelname", "name", "message", ...}.'
    )


class CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the process's stderr; while a progress bar shows, through rich's proxy of it, which
    prints the line above the bar instead of through it. (Other replacements of sys.stderr, such as
    Celery's redirect into logging, are bypassed: they would loop a record back into logging.)"""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr if isinstance(sys.stderr, FileProxy) else sys.__stderr__

    @stream.setter
    def stream(self, value: Any) -> None:
        """The stream is looked up for each record."""


def configure(settings: LogSettings, debug: bool = False) -> None:
    """Install the one handler on the root logger (replacing any other), at the settings' level (or
    DEBUG with --debug)."""
    handler = CurrentStderr()
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(" ".join(f"%({name})s" for name in JSON_FIELDS)))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    level = "DEBUG" if debug else settings.log_level or "WARNING"
    logging.basicConfig(level=level, handlers=[handler], force=True)


def serving(settings: LogSettings) -> None:
    """A server (API, worker, intake) shows its INFO lines unless a level was set (or --debug shows more)."""
    root = logging.getLogger()
    if settings.log_level is None and root.level > logging.INFO:
        root.setLevel(logging.INFO)

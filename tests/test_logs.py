"""Logging: one handler, text or JSON lines, printed above a live progress bar rather than through it."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.file_proxy import FileProxy
from rich.progress import Progress

from tests.helpers import CLI
from xmsearch.logs import CurrentStderr, LogSettings, configure, serving


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_json_lines_carry_level_logger_and_message(capfd: pytest.CaptureFixture[str]) -> None:
    configure(LogSettings(log_format="json", log_level="INFO"))
    logging.getLogger("xmsearch.test").info("indexed %d documents", 3)
    line = json.loads(capfd.readouterr().err.strip())
    assert line["levelname"] == "INFO" and line["name"] == "xmsearch.test"
    assert line["message"] == "indexed 3 documents" and line["asctime"]


def test_levels_commands_warn_servers_inform_and_a_set_level_wins() -> None:
    configure(LogSettings())
    assert logging.getLogger().level == logging.WARNING
    serving(LogSettings())
    assert logging.getLogger().level == logging.INFO
    configure(LogSettings(log_level="ERROR"))
    serving(LogSettings(log_level="ERROR"))
    assert logging.getLogger().level == logging.ERROR
    configure(LogSettings(log_level="ERROR"), debug=True)
    assert logging.getLogger().level == logging.DEBUG


def test_a_record_logged_under_a_progress_bar_goes_through_rich() -> None:
    """While a bar shows, sys.stderr is rich's proxy, which prints whole lines above the bar; the
    handler looks sys.stderr up for each record instead of keeping the stream it started with."""
    configure(LogSettings())
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, CurrentStderr)
    console = Console(file=io.StringIO(), force_terminal=True, stderr=True)
    with Progress(console=console, redirect_stderr=True) as progress:
        progress.add_task("work", total=10)
        assert isinstance(handler.stream, FileProxy)
        logging.getLogger("xmsearch.test").warning("a warning during a bar")
    assert "WARNING xmsearch.test: a warning during a bar\n" in console.file.getvalue()  # type: ignore[attr-defined]


def test_a_bad_log_setting_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "XMSEARCH_LOG_FORMAT": "xml"}
    result = subprocess.run([*CLI, "status"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: XMSEARCH_LOG_FORMAT='xml'")

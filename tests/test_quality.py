"""The code stays formatted, linted and typed: ruff and mypy run as part of the suite."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_passes(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_top_level_import_name() -> None:
    """The project installs `xmsearch` alone: the root folders are its subpackages, so an app's own
    `workers` or `ingest` package is never shadowed."""
    import importlib.metadata

    import xmsearch.ingest
    import xmsearch.retriever
    import xmsearch.workers

    ours = {name for name, dists in importlib.metadata.packages_distributions().items() if "xmsearch" in dists}
    assert ours == {"xmsearch"}
    assert {m.__name__ for m in (xmsearch.ingest, xmsearch.retriever, xmsearch.workers)} == {
        "xmsearch.ingest",
        "xmsearch.retriever",
        "xmsearch.workers",
    }

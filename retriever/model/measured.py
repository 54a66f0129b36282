"""Choices measured once per CPU and kept: where xmsearch's cache lives, how a run is timed, and the
JSON file of measurements (one record per key, the choice under "chosen") that later loads only read.
`precision=auto` (precision.py) and `query_runtime=auto` (query_runtime.py) both keep theirs here."""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

REPEATS = 5
T = TypeVar("T")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_shape(config: Any) -> str:
    """A transformer's shape as measurement keys name it: hidden size x layers x intermediate size."""
    return f"{config.hidden_size}x{config.num_hidden_layers}x{config.intermediate_size}"


def cache_root() -> Path:
    """xmsearch's folder of measured and derived files ($XDG_CACHE_HOME, else ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xmsearch"


def timed(run: Callable[[], T]) -> tuple[float, T]:
    """The median seconds of REPEATS runs (after one warm-up) and the last output."""
    out = run()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def in_turns(runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The median seconds of each run, timed in turns (REPEATS rounds, after one warm-up round), so
    that a machine warming up or busy for a while weighs on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(REPEATS + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def remembered(cache: Path, key: str, choices: Collection[str], measure: Callable[[], dict[str, Any]]) -> str:
    """The choice kept under `key` in `cache`, or else `measure()`d now (a record whose "chosen" is
    one of `choices`) and kept. A cache that cannot be written (a read-only home) only costs measuring
    again next time."""
    try:
        known: dict[str, Any] = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), dict) and known[key].get("chosen") in choices:
        return str(known[key]["chosen"])
    figures = measure()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**known, key: figures}, indent=1))
        os.replace(tmp, cache)
    except OSError as exc:
        log.warning("could not keep the measurement in %s: %s", cache, exc)
    return str(figures["chosen"])

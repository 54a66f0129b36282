"""Package attributes that import their module on first use: `from retriever import Encoder` works,
while `import xmsearch.retriever.errors` (the CLI, workers, the API's error table) does not pull in torch."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` serving each name of `homes` ({name: module}) from its module."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(homes[name]), name)

    return __getattr__

"""The switch between a process's model and collection version: searches and reads hold it shared,
a switch (a reindex or rollback swapping the version in this process, with the model that built it)
holds it alone. So a query encoded by one model is only ever scored against a version that model
built, and no search fails during the switch: it waits for it, which is brief (the swap of an
already built version)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SwitchLock:
    """Many readers or one switch; a switch that waits holds new readers back (it is never starved)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._readers = 0
        self._switching = False  # a switch runs or waits for the readers in flight

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._switching)
            self._readers += 1
        try:
            yield
        finally:
            with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @contextmanager
    def switching(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._switching)
            self._switching = True
            self._changed.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._changed:
                self._switching = False
                self._changed.notify_all()

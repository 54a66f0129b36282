"""Searches first: how background indexing shares one process's encoder and cores with searches.

In the embedded mode one process both searches and indexes, and on a CPU a document pass and a query
pass that run at once slow each other down several times over (measured: search p50 5.3x its idle
value during an ingest). So background work goes in small steps (a document pass, a store write),
and each step waits while searches are in flight, for at most what keeps background work its share
of the time: after background work ran t seconds, its next step waits up to t * (1 - share) / share,
then runs alone (new searches wait for it; it is short). With no search in flight nothing waits;
with searches back to back, indexing still advances at its share.
While searches were seen in the last few seconds, document passes are small (a few texts, about as
fast per text on a CPU), so that a search that arrives during one waits little.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

RECENT_S = 5.0  # searches seen this recently keep document passes small
QUIET_S = 0.02  # searches this far apart leave the cores to background steps
MAX_WAIT_S = 2.0  # the longest a background step waits (e.g. the first after an idle spell)


class SearchPriority:
    """The gate between searches (foreground) and background indexing steps in one process."""

    def __init__(self, share: float, background_batch: int) -> None:
        self.share = share  # 1.0: no priority, background work never waits
        self.background_batch = background_batch
        self._changed = threading.Condition()
        self._searching = 0  # searches in flight
        self._waiting = 0  # searches at the door, waiting for a background step
        self._stepping = False  # a background step holds the cores: new searches wait for it
        self._last_search = -RECENT_S
        self._ran_since = time.monotonic()  # when background work last resumed after a wait

    @contextmanager
    def search(self) -> Iterator[None]:
        """A search in flight: background steps wait for it (within their share); it waits only for a
        background step already running."""
        with self._changed:
            self._waiting += 1  # a step about to start sees it at the door
            self._changed.wait_for(lambda: not self._stepping)
            self._waiting -= 1
            self._searching += 1
        try:
            yield
        finally:
            with self._changed:
                self._searching -= 1
                self._last_search = time.monotonic()
                self._changed.notify_all()

    def _quiet(self) -> bool:
        return not self._searching and not self._waiting and time.monotonic() - self._last_search >= QUIET_S

    @contextmanager
    def background(self) -> Iterator[None]:
        """One background step, alone on the cores: it starts once searches have been quiet for a
        moment, or, once it has waited what its share allows for the time background work ran since
        its last wait, after the searches in flight (new ones wait for the step)."""
        if self.share >= 1.0:
            yield
            return
        start = time.monotonic()
        deadline = start + min(MAX_WAIT_S, (start - self._ran_since) * (1.0 - self.share) / self.share)
        with self._changed:
            while not self._quiet() and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(min(left, QUIET_S))
            self._stepping = True
        try:
            with self._changed:
                self._changed.wait_for(lambda: self._searching == 0)
            self._ran_since = time.monotonic()
            yield
        finally:
            with self._changed:
                self._stepping = False
                self._changed.notify_all()

    def pass_size(self, batch_size: int) -> int:
        """Texts per background document pass: small while searches are recent."""
        busy = self._searching or time.monotonic() - self._last_search < RECENT_S
        return min(batch_size, self.background_batch) if self.share < 1.0 and busy else batch_size

"""Query batching across concurrent callers: searches that arrive while the encoder is busy are
encoded together in the next forward pass.

A query costs a forward pass of 32 positions, so several queries in one pass cost far less than one
pass each (on a 2-core CPU, 4 queries in one pass take 2.4x the time of one). No caller waits for a
timer: an idle encoder takes a query at once, and only queries that would have queued anyway are
grouped. One caller at a time leads: it encodes the queue's front (its own queries first), then hands
the lead to the next waiting caller, so nobody encodes for longer than its own batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(eq=False)
class _Request(Generic[T]):
    queries: list[T]
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: list[np.ndarray] | None = None
    error: BaseException | None = None


class QueryBatcher(Generic[T]):
    """Encodes the queries of concurrent callers in shared forward passes of at most `max_texts`:
    `encode` takes the queries of a pass (of any type T, e.g. prepared queries) and returns one
    vector matrix each."""

    def __init__(self, encode: Callable[[list[T]], list[np.ndarray]], max_texts: int) -> None:
        self._encode = encode
        self.max_texts = max_texts
        self._lock = threading.Lock()
        self._pending: list[_Request[T]] = []
        self._busy = False
        self.passes = 0  # forward passes run (for tests and figures)

    def encode(self, queries: list[T]) -> list[np.ndarray]:
        request = _Request(queries)
        with self._lock:
            self._pending.append(request)
            if not self._busy:
                self._busy = request.lead = True
        if not request.lead:
            request.wake.wait()  # done by another leader, or handed the lead
        if request.result is None and request.error is None:
            self._run_batch()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _run_batch(self) -> None:
        with self._lock:
            batch = [self._pending.pop(0)]  # the leader's own request is first in the queue
            size = len(batch[0].queries)
            while self._pending and size + len(self._pending[0].queries) <= self.max_texts:
                size += len(self._pending[0].queries)
                batch.append(self._pending.pop(0))
        try:
            vectors = self._encode([q for r in batch for q in r.queries])
            start = 0
            for r in batch:
                r.result, start = vectors[start : start + len(r.queries)], start + len(r.queries)
        except BaseException as exc:  # every caller of the pass gets the failure
            for r in batch:
                r.error = exc
        with self._lock:
            self.passes += 1
            if self._pending:
                successor = self._pending[0]
                successor.lead = True
                successor.wake.set()
            else:
                self._busy = False
        for r in batch:
            r.wake.set()

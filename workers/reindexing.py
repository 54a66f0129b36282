"""A reindex in the distributed mode: one worker runs it in a thread, beside the tasks it keeps
taking. The state is kept in Redis, where `xmsearch reindex start|status|cancel` on any machine find
it; a worker that starts again resumes a reindex it left unfinished (a crash, a stop).

On an embedded store (Qdrant Edge or local mode admit one process) that worker owns the store, and
follows its own writes as `xmsearch serve` does; at the swap its tasks move to the new model with it.
On a Qdrant server every worker writes, so every worker says through Redis what it wrote while a
reindex runs (`WriterHooks`: it registers before each write, and adds the documents it touched after
it), and waits while the reindex pauses writes for its last step (`SharedWrites`: it waits for the
writes in flight, then verifies and swaps). Then each worker, its writes pinned to the version its
model built, moves to the new version with the new model before its next write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, cast

import redis

from xmsearch.ingest.reindex import Live, Reindex, target_settings
from xmsearch.ingest.reindex_state import ReindexRunningError, ReindexState
from xmsearch.retriever import follow
from xmsearch.retriever.errors import InvalidInputError, PermanentError
from xmsearch.retriever.index.stores import backend_for
from xmsearch.workers.app import REINDEX_TASK
from xmsearch.workers.settings import WorkerSettings

if TYPE_CHECKING:
    from xmsearch.ingest.pipeline import Indexer, Key
    from xmsearch.retriever.components import Components
    from xmsearch.workers.dispatch import TaskQueue

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0  # a running reindex's state is published at least this often
STALE_S = 60.0  # a running state not published for this long: its worker is gone
WRITE_STALE_S = 300.0  # a write registered this long ago: its worker died mid-write (not waited for)
PAUSE_POLL_S = 0.1


def _key(collection: str) -> str:
    return f"xmsearch:reindex:{collection}"


def _cancel_key(collection: str) -> str:
    return f"xmsearch:reindex:{collection}:cancel"


def _writes_key(collection: str, what: str) -> str:
    """`mode` (following or paused: a reindex runs), `touched` (documents written meanwhile), `writing`
    (the writes in flight, by worker)."""
    return f"xmsearch:reindex:{collection}:writes:{what}"


class WriterHooks:
    """What a worker on a Qdrant server does around each of its writes, for a reindex in any worker."""

    def __init__(self, client: redis.Redis, collection: str, indexer: Indexer) -> None:
        self.redis, self.indexer = client, indexer
        self.mode, self.touched = _writes_key(collection, "mode"), _writes_key(collection, "touched")
        self.writing = _writes_key(collection, "writing")
        self.me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # one per writer (its gate)
        indexer.before_write.append(self.before)
        indexer.watchers.append(self.after)

    def before(self) -> None:
        """Registered as writing (while a reindex pauses writes, not: it waits); while a reindex runs,
        it asks where the alias points before each write, so that it moves as soon as it is swapped."""
        while True:
            self.redis.hset(self.writing, self.me, time.time())
            if (mode := self.redis.get(self.mode)) != "paused":
                break
            self.redis.hdel(self.writing, self.me)
            time.sleep(PAUSE_POLL_S)
        if mode is not None and self.indexer.follow is not None:
            self.indexer.follow.recheck()

    def after(self, keys: Iterable[Key]) -> None:
        """What was written is kept while a reindex runs (asked after the write: none is missed)."""
        try:
            touched = [json.dumps(key) for key in keys]
            if touched and self.redis.exists(self.mode):
                self.redis.sadd(self.touched, *touched)
        finally:
            self.redis.hdel(self.writing, self.me)


class SharedWrites:
    """The writes of every worker on a Qdrant server, as a reindex follows and pauses them (Redis)."""

    def __init__(self, client: redis.Redis, collection: str) -> None:
        self.redis = client
        self.mode, self.touched = _writes_key(collection, "mode"), _writes_key(collection, "touched")
        self.writing = _writes_key(collection, "writing")
        self._current = "following"
        self._guard = threading.Lock()

    def _set(self, mode: str | None = None) -> None:
        """Set the mode (or set the current one again): it expires if this process dies, so writers
        never wait for a reindex that is gone (one that resumes copies everything again)."""
        with self._guard:
            self._current = mode or self._current
            self.redis.set(self.mode, self._current, ex=int(STALE_S))

    @contextlib.contextmanager
    def following(self) -> Iterator[Callable[[], list[Key]]]:
        self.redis.delete(self.touched)
        stop = threading.Event()

        def keep() -> None:
            while not stop.wait(STALE_S / 6):
                self._set()

        self._set("following")
        keeper = threading.Thread(target=keep, daemon=True)
        keeper.start()
        try:
            yield self._take
            self._set("settling")  # writers ask the alias before each write: each moves at its next one
            time.sleep(2 * follow.FOLLOW_EVERY_S)
        finally:
            stop.set()
            keeper.join()
            self.redis.delete(self.mode, self.touched)

    def _take(self) -> list[Key]:
        keys: list[Key] = []
        while batch := cast(list[str], self.redis.spop(self.touched, 1000)):
            keys += [(tenant, document_id) for tenant, document_id in map(json.loads, batch)]
        return keys

    def pending(self) -> int:
        return int(self.redis.scard(self.touched))  # type: ignore[arg-type]

    def _in_flight(self) -> bool:
        since = cast(list[str], self.redis.hvals(self.writing))
        return any(float(at) > time.time() - WRITE_STALE_S for at in since)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self._set("paused")
        try:
            while self._in_flight():
                time.sleep(PAUSE_POLL_S)  # the writes in flight finish (and say what they touched)
            yield
        finally:
            self._set("following")


def publish(client: redis.Redis, state: ReindexState) -> None:
    client.set(_key(state.collection), state.model_dump_json())


def read(client: redis.Redis, collection: str) -> ReindexState | None:
    """The collection's last reindex in the distributed mode, `interrupted` if its worker went quiet."""
    raw = client.get(_key(collection))
    if raw is None:
        return None
    state = ReindexState.model_validate_json(raw)
    if state.running and state.step != "queued" and time.time() - state.updated > STALE_S:
        state.step = "interrupted"
        state.error = f"its worker has not said anything for {STALE_S:.0f} s: it resumes when that worker starts again"
    return state


def request(
    queue: TaskQueue, settings: WorkerSettings, changes: dict[str, str], rollback: bool = False
) -> ReindexState:
    """Queue a reindex (or a rollback) for a worker (on an embedded store, the one that owns it); its
    first state."""
    running = read(queue.redis, settings.collection)
    if running is not None and running.running:
        raise ReindexRunningError(
            f"a reindex of {settings.collection!r} runs ({running.step}, changes {running.changes}): wait for it, or "
            "stop it with `xmsearch reindex cancel`"
        )
    if not rollback:
        target_settings(settings, changes)  # names and values, checked here; the model, by the worker
    now = time.time()
    state = ReindexState(collection=settings.collection, step="queued", changes=changes, pid=0, started=now,
                         updated=now, rollback=rollback)  # fmt: skip
    queue.redis.delete(_cancel_key(settings.collection))
    publish(queue.redis, state)
    queue.app.send_task(REINDEX_TASK, args=[changes, rollback])
    return state


def cancel(client: redis.Redis, collection: str, wait_s: float = 60.0) -> ReindexState:
    """Ask the worker to stop the reindex and drop its version; the state it ended in."""
    state = read(client, collection)
    if state is None or not state.running:
        raise InvalidInputError(f"no reindex of {collection!r} runs")
    client.set(_cancel_key(collection), "1", ex=3600)
    if state.step == "queued":  # no worker took it yet: the one that does will not start it
        state.step, state.finished = "cancelled", time.time()
        publish(client, state)
        return state
    deadline = time.monotonic() + wait_s
    while (state := read(client, collection)) is not None and state.running and time.monotonic() < deadline:
        time.sleep(0.2)
    if state is None or state.running:
        raise PermanentError(f"the reindex of {collection!r} did not stop in {wait_s:.0f} s")
    return state


class WorkerReindex:
    """The reindex this worker process runs, in a thread of its own, publishing its state to Redis."""

    def __init__(self, settings: WorkerSettings, indexer: Indexer, client: redis.Redis) -> None:
        self.settings, self.indexer, self.redis = settings, indexer, client
        self.running: tuple[Reindex, threading.Thread] | None = None
        self.shared = backend_for(settings) == "server"  # every worker writes: they say so through Redis
        if self.shared:
            WriterHooks(client, settings.collection, indexer)

    def start(self, changes: dict[str, str], rollback: bool = False) -> None:
        if self.running is not None and self.running[1].is_alive():
            log.warning("a reindex runs in this worker already; %s is not started", changes)
            return
        collection = self.settings.collection
        if self.redis.exists(_cancel_key(collection)):  # cancelled while it was queued
            log.warning("the reindex %s was cancelled before it started", changes)
            return
        try:
            if self.shared:  # this worker's writes follow the alias like the others' (its gate is not taken)
                live = Live(self.indexer, lambda parts, swap: swap(), SharedWrites(self.redis, collection))
            else:
                live = Live(self.indexer, self._switch)
            reindex = Reindex(self.settings, changes, live=live, on_change=self._publish, rollback=rollback,
                              cancelled=lambda: bool(self.redis.exists(_cancel_key(collection))))  # fmt: skip
        except Exception as exc:  # a model this worker cannot find, a bad value: the one who asked reads it
            now, error = time.time(), f"{type(exc).__name__}: {exc}"
            failed = ReindexState(collection=collection, step="failed", changes=changes, pid=0, started=now,
                                  updated=now, finished=now, error=error)  # fmt: skip
            publish(self.redis, failed)
            log.warning("reindex refused: %s", exc)
            return
        thread = threading.Thread(target=self._run, args=(reindex,), name="xmsearch-reindex", daemon=True)
        self.running = (reindex, thread)
        thread.start()

    def _switch(self, components: Components, swap: Callable[[], None]) -> None:
        swap()
        self.indexer.use(components)

    def _publish(self, state: ReindexState) -> None:
        try:
            publish(self.redis, state)
        except redis.RedisError:  # the next step or heartbeat says it again
            log.warning("could not publish the reindex state to Redis", exc_info=True)

    def _run(self, reindex: Reindex) -> None:
        beat = threading.Event()

        def heartbeat() -> None:
            while not beat.wait(HEARTBEAT_S):
                self._publish(reindex.state)

        threading.Thread(target=heartbeat, daemon=True).start()
        try:
            done = reindex.run()
            log.info("reindex done: %s is searched now, in place of %s", done.version, done.previous)
        except Exception as exc:  # the state says how it ended
            log.warning("reindex %s: %s", reindex.state.step, exc)
        finally:
            beat.set()
            self.redis.delete(_cancel_key(self.settings.collection))

    def stop(self) -> None:
        """The worker stops: the reindex keeps its version, and resumes when a worker starts again."""
        if self.running is not None and self.running[1].is_alive():
            self.running[0].interrupt()
            self.running[1].join()

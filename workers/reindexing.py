"""A reindex in the distributed mode. The worker process that owns the store (an embedded one: Qdrant
Edge or local mode admit one process) runs it in a thread, beside the tasks it keeps taking, whose
writes it follows as `xmsearch serve` does; at the swap its tasks move to the new model with it. The
state is kept in Redis, where `xmsearch reindex start|status|cancel` on any machine find it; a worker
that starts again resumes a reindex it left unfinished (a crash, a stop).

On a Qdrant server several workers write at once, and the others' writes would not be followed:
that is refused, saying so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from xmsearch.ingest.reindex import Live, Reindex, target_settings
from xmsearch.ingest.reindex_state import ReindexRunningError, ReindexState, ReindexUnavailableError
from xmsearch.retriever.errors import InvalidInputError, PermanentError
from xmsearch.retriever.index.stores import backend_for
from xmsearch.workers.app import REINDEX_TASK
from xmsearch.workers.settings import WorkerSettings

if TYPE_CHECKING:
    from xmsearch.ingest.pipeline import Indexer
    from xmsearch.retriever.components import Components
    from xmsearch.workers.dispatch import TaskQueue

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0  # a running reindex's state is published at least this often
STALE_S = 60.0  # a running state not published for this long: its worker is gone
NOT_ON_A_SERVER = (
    "a reindex through the workers runs in the worker that owns an embedded store; on a Qdrant server several "
    "workers write at once and their writes would not reach the new version: run it inside `xmsearch serve` in the "
    "embedded mode (POST /reindex), with the workers stopped"
)


def _key(collection: str) -> str:
    return f"xmsearch:reindex:{collection}"


def _cancel_key(collection: str) -> str:
    return f"xmsearch:reindex:{collection}:cancel"


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


def request(queue: TaskQueue, settings: WorkerSettings, changes: dict[str, str]) -> ReindexState:
    """Queue a reindex for the worker that owns the store; its first state."""
    if backend_for(settings) == "server":
        raise ReindexUnavailableError(NOT_ON_A_SERVER)
    running = read(queue.redis, settings.collection)
    if running is not None and running.running:
        raise ReindexRunningError(
            f"a reindex of {settings.collection!r} runs ({running.step}, changes {running.changes}): wait for it, or "
            "stop it with `xmsearch reindex cancel`"
        )
    target_settings(settings, changes)  # names and values, checked here; the model, by the worker
    now = time.time()
    state = ReindexState(collection=settings.collection, step="queued", changes=changes, pid=0, started=now,
                         updated=now)  # fmt: skip
    queue.redis.delete(_cancel_key(settings.collection))
    publish(queue.redis, state)
    queue.app.send_task(REINDEX_TASK, args=[changes])
    return state


def cancel(client: redis.Redis, collection: str, wait_s: float = 60.0) -> ReindexState:
    """Ask the worker to stop the reindex and drop its version; the state it ended in."""
    state = read(client, collection)
    if state is None or not state.running:
        raise InvalidInputError(f"no reindex of {collection!r} runs")
    client.set(_cancel_key(collection), "1", ex=3600)
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

    def start(self, changes: dict[str, str]) -> None:
        if self.running is not None and self.running[1].is_alive():
            log.warning("a reindex runs in this worker already; %s is not started", changes)
            return
        collection = self.settings.collection
        try:
            if backend_for(self.settings) == "server":
                raise ReindexUnavailableError(NOT_ON_A_SERVER)
            live = Live(self.indexer, self._switch)
            reindex = Reindex(self.settings, changes, live=live, on_change=self._publish,
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

"""What the routes use: the retriever and the ingestor of one API process, its readiness, and the
reindex it runs.

Both share one set of Components (model and store). Embedded mode: this process owns the store, and
the Ingestor's indexing thread writes to it; a reindex runs here too, in a thread of its own, while
searches and writes go on, and at its swap both move to the new model and version together. A
reindex that this process's last run left unfinished (a crash, a stop) resumes when it starts.
Distributed mode: documents go to the workers through Redis, and searches go to the Qdrant server.
Only the Ingestor knows which.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from xmsearch.ingest.reindex import Live, Reindex, last
from xmsearch.ingest.reindex_state import ReindexRunningError, ReindexState, ReindexUnavailableError
from xmsearch.ingestor import Ingestor
from xmsearch.retriever.components import Components
from xmsearch.retriever.errors import InvalidInputError, XmsearchError
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings
from xmsearch.workers.reindexing import cancel, read, request

log = logging.getLogger(__name__)


@dataclass
class Service:
    """What the routes use: the retriever, the ingestor, and the reindex of this process."""

    settings: Settings
    retriever: Retriever
    ingestor: Ingestor
    reindexing: tuple[Reindex, threading.Thread] | None = None
    _reindex_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, settings: Settings, encoder: Encoder | None = None) -> Service:
        components = Components.load(settings, encoder)
        service = cls(settings, Retriever(components), Ingestor.from_settings(settings, components=components))
        left = last(settings)
        if service.ingestor.indexer is not None and left is not None and left.unfinished:
            log.warning("resuming the reindex of %s (%s) that the last run left %s", settings.collection, left.changes,
                        left.step)  # fmt: skip
            try:
                service.start_reindex(left.changes, left.source, left.rollback)
            except XmsearchError as exc:  # e.g. its model is gone: serving goes on; it stays interrupted
                log.error("the reindex left unfinished cannot resume: %s", exc)
        return service

    def _live(self, what: str) -> Live:
        indexer = self.ingestor.indexer
        if indexer is None:
            raise ReindexUnavailableError(
                f"{what} through the API runs in the process that owns an embedded store (xmsearch serve without a "
                "broker); in the distributed mode, run `xmsearch reindex rollback` where the store is reached"
            )

        def switch(components: Components, swap: Any) -> None:
            def moved() -> None:
                swap()
                indexer.use(components)

            self.retriever.switch(components, moved)

        return Live(indexer, switch)

    def start_reindex(self, changes: dict[str, str], source: str | None = None, rollback: bool = False) -> ReindexState:
        """Start a reindex (or a rollback) in a thread of this process (distributed: a reindex in a
        worker); its state."""
        if (queue := self.ingestor.queue) is not None:
            return request(queue, self.settings, changes, rollback)
        live = self._live("a rollback" if rollback else "a reindex")
        with self._reindex_lock:
            if self.reindexing is not None and self.reindexing[1].is_alive():
                state = self.reindexing[0].state
                raise ReindexRunningError(
                    f"a reindex of {self.settings.collection!r} runs already ({state.step}, changes {state.changes}): "
                    "wait for it, or cancel it"
                )
            reindex = Reindex(self.settings, changes, source, live, rollback=rollback)  # checks the changes now
            thread = threading.Thread(target=_run, args=(reindex,), name="xmsearch-reindex", daemon=True)
            self.reindexing = (reindex, thread)
            thread.start()
            return reindex.state

    def reindex_state(self) -> ReindexState | None:
        """The reindex this process runs or ran last, else the last one recorded for the collection."""
        if (queue := self.ingestor.queue) is not None:
            return read(queue.redis, self.settings.collection)
        return self.reindexing[0].state if self.reindexing else last(self.settings)

    def cancel_reindex(self) -> ReindexState:
        """Stop the running reindex at its next batch and drop its version; its final state."""
        if (queue := self.ingestor.queue) is not None:
            return cancel(queue.redis, self.settings.collection)
        if self.reindexing is None or not self.reindexing[1].is_alive():
            raise InvalidInputError(f"no reindex of {self.settings.collection!r} runs")
        reindex, thread = self.reindexing
        reindex.cancel()
        thread.join()
        return reindex.state

    def rollback(self) -> ReindexState:
        """Searches and writes go back to the version before, with its model, once it is brought up
        to date with what was written since (in a thread, as a reindex); its state."""
        return self.start_reindex({}, rollback=True)

    def checks(self) -> dict[str, str]:
        out = {"model": "ok", "store": "ok"}
        try:
            self.retriever.store.versions()
        except Exception as exc:
            out["store"] = f"{type(exc).__name__}: {exc}"
        return {**out, **self.ingestor.checks()}

    def close(self) -> None:
        if self.reindexing is not None and self.reindexing[1].is_alive():
            self.reindexing[0].interrupt()  # it keeps its version and resumes at the next start
            self.reindexing[1].join()
        self.ingestor.close()  # finishes the accepted jobs first
        self.retriever.close()


def _run(reindex: Reindex) -> None:
    try:
        done = reindex.run()
        log.info("reindex done: %s is searched now, in place of %s", done.version, done.previous)
    except Exception as exc:  # the state says how it ended; the thread ends with it
        log.warning("reindex %s: %s", reindex.state.step, exc)

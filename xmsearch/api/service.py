"""What the routes use: the retriever and the ingestor of one API process, and its readiness.

Both share one set of Components (model and store). Embedded mode: this process owns the store, and
the Ingestor's indexing thread writes to it. Distributed mode: documents go to the workers through
Redis, and searches go to the Qdrant server. Only the Ingestor knows which.
"""

from __future__ import annotations

from dataclasses import dataclass

from xmsearch.ingestor import Ingestor
from xmsearch.retriever.components import Components
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings


@dataclass
class Service:
    """What the routes use: the retriever and the ingestor."""

    settings: Settings
    retriever: Retriever
    ingestor: Ingestor

    @classmethod
    def start(cls, settings: Settings, encoder: Encoder | None = None) -> Service:
        components = Components.load(settings, encoder)
        return cls(settings, Retriever(components), Ingestor.from_settings(settings, components=components))

    def checks(self) -> dict[str, str]:
        out = {"model": "ok", "store": "ok"}
        try:
            self.retriever.store.versions()
        except Exception as exc:
            out["store"] = f"{type(exc).__name__}: {exc}"
        return {**out, **self.ingestor.checks()}

    def close(self) -> None:
        self.ingestor.close()  # finishes the accepted jobs first
        self.retriever.close()

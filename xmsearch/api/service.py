"""What the routes use: the retriever and the ingestor of one API process, and its readiness.

Embedded mode: this process owns the store; one Retriever and one Indexer share it. Distributed mode:
documents go to the workers through Redis, and searches go to the Qdrant server.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.pipeline import Indexer
from retriever.encoder import Encoder
from retriever.search import Retriever, assemble
from retriever.settings import Settings
from xmsearch.ingestor import Ingestor


@dataclass
class Service:
    """What the routes use: the retriever, the ingestor, and the mode."""

    settings: Settings
    retriever: Retriever
    ingestor: Ingestor

    @classmethod
    def start(cls, settings: Settings, encoder: Encoder | None = None) -> Service:
        parts = assemble(settings, encoder)
        retriever = Retriever(*parts)
        if settings.broker_url:
            return cls(settings, retriever, Ingestor.from_settings(settings))
        retriever.store.open(create=True)  # this process owns the embedded store from now on
        return cls(settings, retriever, Ingestor.from_settings(settings, indexer=Indexer(*parts)))

    def checks(self) -> dict[str, str]:
        out = {"model": "ok", "store": "ok"}
        try:
            self.retriever.store.versions()
        except Exception as exc:
            out["store"] = f"{type(exc).__name__}: {exc}"
        if self.ingestor.mode == "distributed":
            out["broker"] = "ok"
        try:
            self.ingestor.check()
        except Exception as exc:
            out["broker" if self.ingestor.mode == "distributed" else "indexer"] = f"{type(exc).__name__}: {exc}"
        return out

    def close(self) -> None:
        self.ingestor.close()  # finishes the accepted jobs first
        self.retriever.close()

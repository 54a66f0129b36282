"""The one wiring point: `Components` builds, from the settings, what readers (`Retriever`) and writers
(`Indexer`) share: the encoder, the first stage, the collection's IndexSpec and the store that holds
it (made, not yet opened)."""

from __future__ import annotations

from dataclasses import dataclass

from xmsearch.retriever.index.first_stage import FirstStage, make_first_stage
from xmsearch.retriever.index.schema import IndexSpec
from xmsearch.retriever.index.stores import Store, make_store
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.retriever.settings import RetrieverSettings, StoreSettings


def index_spec(encoder: Encoder, settings: StoreSettings, first_stage: FirstStage | None) -> IndexSpec:
    """The collection a given encoder and settings write and read."""
    return IndexSpec(
        model_id=encoder.spec.model_id,
        dim=encoder.spec.dim,
        datatype=settings.vector_datatype,
        quantization=settings.quantization,
        first_stage_dim=first_stage.dim if first_stage else 0,
        metadata_indexes=dict(settings.metadata_indexes),
    )


@dataclass(frozen=True)
class Components:
    """The encoder, store and first stage of one process, for one set of settings.

    >>> parts = Components.load(settings)  # doctest: +SKIP
    >>> Retriever(parts), Indexer(parts)  # doctest: +SKIP
    """

    settings: RetrieverSettings
    encoder: Encoder
    store: Store
    first_stage: FirstStage | None

    @classmethod
    def load(cls, settings: RetrieverSettings, encoder: Encoder | None = None) -> Components:
        """Load the model the settings name (unless `encoder` is given) and make their store."""
        encoder = encoder or Encoder.from_pretrained(settings.model, settings)
        first_stage = make_first_stage(encoder.spec.dim, settings)
        return cls(settings, encoder, make_store(settings, index_spec(encoder, settings, first_stage)), first_stage)

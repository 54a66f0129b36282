"""The one wiring point: `Components` builds, from the settings, what readers (`Retriever`) and writers
(`Indexer`) share: the encoder, the first stage, the collection's IndexSpec and the store that holds
it (made, not yet opened)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xmsearch.retriever.index.first_stage import FirstStage, make_first_stage
from xmsearch.retriever.index.schema import IndexSpec
from xmsearch.retriever.index.stores import Store, make_store
from xmsearch.retriever.model.checkpoint import CheckpointSpec, locate, read_spec
from xmsearch.retriever.settings import RetrieverSettings

if TYPE_CHECKING:
    from xmsearch.retriever.model.encoder import Encoder


def index_spec(checkpoint: CheckpointSpec, settings: RetrieverSettings, first_stage: FirstStage | None) -> IndexSpec:
    """The collection a checkpoint and the settings write and read."""
    return IndexSpec(
        model_id=checkpoint.model_id,
        dim=checkpoint.dim,
        datatype=settings.vector_datatype,
        quantization=settings.quantization,
        first_stage_dim=first_stage.dim if first_stage else 0,
        metadata_indexes=dict(settings.metadata_indexes),
        built_with={
            "model": settings.model,
            "precision": settings.precision,
            "doc_maxlen": checkpoint.doc_maxlen,
            "chunk_overlap": settings.chunk_overlap,
            "first_stage": settings.first_stage_encoding if first_stage else "none",
        },
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
        if encoder is None:
            from xmsearch.retriever.model.encoder import Encoder  # torch: only where a model is loaded

            encoder = Encoder.from_pretrained(settings.model, settings)
        first_stage = make_first_stage(encoder.spec.dim, settings)
        store = make_store(settings, index_spec(encoder.spec, settings, first_stage))
        return cls(settings, encoder, store, first_stage)


def index_store(settings: RetrieverSettings) -> Store:
    """The store the settings name, for the checkpoint they name, read without loading its weights:
    for the commands that read the index and encode nothing (they never import torch)."""
    checkpoint = read_spec(locate(settings.model), settings.model)
    return make_store(settings, index_spec(checkpoint, settings, make_first_stage(checkpoint.dim, settings)))

"""The one wiring point: `Components` builds, from the settings, what readers (`Retriever`) and writers
(`Indexer`) share: the encoder, the first stage, the collection's IndexSpec and the store that holds
it (made, not yet opened)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from xmsearch.retriever.errors import TransientError
from xmsearch.retriever.index.filters import Condition
from xmsearch.retriever.index.first_stage import FirstStage, make_first_stage, shortlist_of
from xmsearch.retriever.index.schema import Hit, IndexSpec, Page
from xmsearch.retriever.index.stores import Store, make_store, searched_record
from xmsearch.retriever.model.checkpoint import CheckpointSpec, locate, read_spec
from xmsearch.retriever.settings import RetrieverSettings

if TYPE_CHECKING:
    from xmsearch.retriever.model.encoder import Encoder

log = logging.getLogger(__name__)
CODEBOOK_TTL_S = 30.0  # how long a search trusts the codebook it read (a writer may train one meanwhile)


# What a version records of how it was built -> the setting it comes from (readers and writers follow it)
RECORDED_SETTINGS = {
    "model": "model",
    "precision": "precision",
    "chunk_overlap": "chunk_overlap",
    "token_pool_factor": "token_pool_factor",
    "datatype": "vector_datatype",
    "quantization": "quantization",
    "metadata_indexes": "metadata_indexes",
}
S = TypeVar("S", bound=RetrieverSettings)


def following(settings: S) -> S:
    """The settings, with what the collection's searched version recorded of how it was built (its
    model, precision, chunking, vector storage, first-stage encoding): readers and writers follow the
    collection, so that after a reindex or a rollback every process loads the model of the version it
    searches. The settings decide only for a new collection (or one that predates the record)."""
    try:
        version, record = searched_record(settings)
    except TransientError:  # a server that does not answer, a folder in use: opening the store will say so
        return settings
    if not record:
        return settings
    changed = _changes(settings, record)
    if "model" in changed:
        log.warning(
            "XMSEARCH_MODEL names %s, but %s (%s) was built with %s: using that (to move to %s: xmsearch reindex "
            "start --model %s)", settings.model, settings.collection, version, changed["model"], settings.model,
            settings.model,
        )  # fmt: skip
    elif changed:
        log.info("collection %s (%s) was built with %s: following it", settings.collection, version, changed)
    return settings.model_copy(update=changed)


def _changes(settings: RetrieverSettings, record: dict[str, Any]) -> dict[str, Any]:
    update = {name: record[key] for key, name in RECORDED_SETTINGS.items() if key in record}
    if record.get("first_stage") == "none":  # built without first-stage vectors: none to search
        update["first_stage"] = "off"
    elif "first_stage" in record:
        update["first_stage_encoding"] = record["first_stage"]
    current = {**{name: getattr(settings, name) for name in update}, "model": _model_name(settings.model)}
    return {name: value for name, value in update.items() if current[name] != value}  # a folder, however named


def recorded_settings(settings: S, record: dict[str, Any]) -> S:
    """The settings, with what a version `record`ed of how it was built (to search or write it)."""
    return settings.model_copy(update=_changes(settings, record))


def _model_name(name: str) -> str:
    """How a version records its model: a local folder as an absolute path, a hub id as given."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def index_spec(checkpoint: CheckpointSpec, settings: RetrieverSettings, first_stage: FirstStage | None) -> IndexSpec:
    """The collection a checkpoint and the settings write and read."""
    return IndexSpec(
        model_id=checkpoint.model_id,
        dim=checkpoint.dim,
        datatype=settings.vector_datatype,
        quantization=settings.quantization,
        first_stage_dim=first_stage.dim if first_stage else 0,
        centroids=first_stage is not None and first_stage.name == "centroids",
        pooled=first_stage is not None,  # what a shortlist scores: only searches with a first stage have one
        metadata_indexes=dict(settings.metadata_indexes),
        built_with={
            "model": _model_name(settings.model),
            "precision": settings.precision,
            "doc_maxlen": checkpoint.doc_maxlen,
            "chunk_overlap": settings.chunk_overlap,
            "token_pool_factor": settings.token_pool_factor,
            "first_stage": settings.first_stage_encoding if first_stage else "none",
        },
    )


@dataclass(frozen=True)
class Components:
    """The encoder, store and first stage of one process, for one set of settings, and how a search
    reads a store with them (`search`).

    >>> parts = Components.load(settings)  # doctest: +SKIP
    >>> Retriever(parts), Indexer(parts)  # doctest: +SKIP
    """

    settings: RetrieverSettings
    encoder: Encoder
    store: Store
    first_stage: FirstStage | None

    def search(
        self,
        store: Store,
        vectors: list[np.ndarray],
        page: Page,
        conditions: Sequence[Condition],
        size: Callable[[], int],
    ) -> list[list[Hit]]:
        """Encoded queries searched in `store` as the settings make every search: through the first
        stage and its shortlist where the settings and the collection's `size` call for them (the
        candidates by that size), else exact MaxSim."""
        first, mode = self.first_stage, self.settings.first_stage
        prefetch, candidates = None, 0
        points = size() if first is not None and mode != "off" else 0
        if first is not None and (mode == "on" or (mode == "auto" and points >= self.settings.first_stage_min_points)):
            first.refresh(store, CODEBOOK_TTL_S)  # e.g. a codebook a writer trained since
            queries = first.queries(vectors)
            if queries is not None:
                prefetch = list(queries)
                candidates = self.settings.first_stage_candidates or first.candidates(points, store.spec.pooled)
        return store.search(vectors, page, conditions, prefetch, candidates, shortlist_of(self.settings))

    @classmethod
    def load(cls, settings: RetrieverSettings, encoder: Encoder | None = None) -> Components:
        """Load the model the settings name (unless `encoder` is given) and make their store."""
        settings = following(settings)
        encoder = encoder or encoder_for(settings)
        first_stage = make_first_stage(encoder.spec.dim, settings)
        store = make_store(settings, index_spec(encoder.spec, settings, first_stage))
        return cls(settings, encoder, store, first_stage)


def encoder_for(settings: RetrieverSettings, current: Components | None = None) -> Encoder:
    """The encoder `settings` name: `current`'s own where it is the same model at the same precision
    (a change of index settings only: no second copy of the weights), else loaded, sharing `current`'s
    search priority (the process's searches still go first)."""
    wanted = (settings.model, settings.precision)
    if current is not None and (current.settings.model, current.settings.precision) == wanted:
        return current.encoder
    from xmsearch.retriever.model.encoder import Encoder  # torch: only where a model is loaded

    encoder = Encoder.from_pretrained(settings.model, settings)
    if current is not None:
        encoder.priority = current.encoder.priority
    return encoder


def index_store(settings: RetrieverSettings) -> Store:
    """The store the settings name, for the checkpoint they name, read without loading its weights:
    for the commands that read the index and encode nothing (they never import torch)."""
    settings = following(settings)
    return make_store(settings, spec_of(settings))


def spec_of(settings: RetrieverSettings) -> IndexSpec:
    """The collection the settings' checkpoint and index settings build, read without loading its
    weights."""
    checkpoint = read_spec(locate(settings.model), settings.model)
    return index_spec(checkpoint, settings, make_first_stage(checkpoint.dim, settings))

"""Runs of an evaluation: each configuration (a name and settings changes) searches every judged
query of the set for its top k documents. An index is built once per way of building one (the
model's fingerprint, precision, chunking, pooling, vector storage, first-stage encoding, store) and
kept in the work folder, so that configurations that differ only at search time (exact or first
stage, candidates, routing) share it, and a later evaluation of the same corpus reuses it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmsearch.evaluation.data import EvalSet, Query
from xmsearch.ingest.documents import Reject
from xmsearch.ingest.pipeline import Indexer
from xmsearch.retriever.components import Components, encoder_for, spec_of
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.index.first_stage import Centroids
from xmsearch.retriever.model.languages import is_language
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings

log = logging.getLogger(__name__)
BUILT = "eval-index.json"  # in an index folder once its corpus is all in (and its codebook complete)
COLLECTION = "eval"
SEARCH_BATCH = 16  # queries per search call
ROUTINGS = ("given", "detect")  # or a language code: every query encoded with that adapter


@dataclass(frozen=True)
class Config:
    """A way of searching: settings changes (any setting, as in the environment) and how queries get
    their language: `given` (the set's; detected where it gives none), `detect`, or a code."""

    name: str
    changes: dict[str, str] = field(default_factory=dict)
    language: str = "given"

    @classmethod
    def parse(cls, text: str) -> Config:
        """NAME or NAME:KEY=VALUE,KEY=VALUE (e.g. exact:first_stage=off, fr:language=fr)."""
        name, _, rest = text.partition(":")
        changes: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, equals, value = part.partition("=")
            if not equals or not key.strip():
                raise InvalidInputError(f"configuration {text!r}: {part!r} is not KEY=VALUE")
            changes[key.strip()] = value.strip()
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name.strip()) or name.strip() in (".", ".."):
            raise InvalidInputError(
                f"configuration {text!r}: give it a name first, of letters, digits, '.', '_' and '-' (its run is "
                "written as NAME.trec): NAME:KEY=VALUE,..."
            )
        language = changes.pop("language", "given")
        return cls(name.strip(), changes, language)


@dataclass
class Run:
    """What one configuration retrieved: query id -> document id -> score, and each query's language
    (given, or as detected)."""

    config: Config
    ranking: dict[str, dict[str, float]]
    languages: dict[str, str]
    index: Path
    reused: bool
    rejected: list[Reject]
    ms_per_query: float  # encoding and search, in batches of SEARCH_BATCH


def evaluate(
    evalset: EvalSet,
    configs: list[Config],
    settings: Settings,
    work: Path,
    k: int = 100,
    on_step: Callable[[str], None] = lambda step: None,
) -> list[Run]:
    """Every configuration's run over the set's queries, the indexes built (or reused) in `work`."""
    if len({c.name for c in configs}) != len(configs):
        raise InvalidInputError("give each configuration its own name")
    runs: list[Run] = []
    current: Components | None = None
    for config in configs:
        search_settings = _settings(settings, config)
        build = search_settings.model_copy(update={"first_stage": "on", "first_stage_min_points": 2**62})
        folder = work / f"{evalset.name}-{_index_key(evalset, build)}"
        build = build.model_copy(update={"data_dir": folder})
        components = Components.load(build, encoder_for(build, current))
        current = components
        reused = (folder / BUILT).is_file()
        rejected = [] if reused else _build(components, build, evalset, on_step, config.name)
        on_step(f"{config.name}: searching {len(evalset.queries)} queries")
        retriever = Retriever(dataclasses.replace(components, settings=search_settings.model_copy(
            update={"data_dir": folder})), follow=False)  # fmt: skip
        try:
            runs.append(_search(retriever, evalset.queries, config, k, folder, reused, rejected))
        finally:
            retriever.close()
    return runs


def _settings(settings: Settings, config: Config) -> Settings:
    """The settings a configuration searches with, in a folder of the evaluation's own."""
    if config.language not in ROUTINGS and not is_language(config.language):
        raise InvalidInputError(
            f"configuration {config.name}: language={config.language!r} is not given, detect or a code"
        )
    changed = settings.with_changes(config.changes, who=f"configuration {config.name}")
    if changed.store == "server" or (changed.qdrant_url and changed.store == "auto"):
        log.info("configuration %s: evaluating on an embedded copy, not on the server", config.name)
    store = changed.store if changed.store in ("edge", "local") else "edge"
    return changed.model_copy(update={"store": store, "qdrant_url": None, "collection": COLLECTION})


def _index_key(evalset: EvalSet, settings: Settings) -> str:
    """What an index is built from: the corpus, the store, and how its points are made."""
    shaped = {"corpus": evalset.digest, "store": settings.store, "spec": spec_of(settings).record()}
    return hashlib.sha256(json.dumps(shaped, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _build(
    components: Components, settings: Settings, evalset: EvalSet, on_step: Callable[[str], None], name: str
) -> list[Reject]:
    """Index the corpus into a fresh folder, with the centroid codebook trained on all of it."""
    folder = settings.data_dir
    shutil.rmtree(folder, ignore_errors=True)  # a build that stopped half way
    folder.mkdir(parents=True)
    on_step(f"{name}: indexing {evalset.documents} documents into {folder}")
    rejected: list[Reject] = []
    indexer = Indexer(components, settings, follow=False)
    try:
        started = time.perf_counter()
        job = indexer.ingest(evalset.corpus, rejected.append)
        if isinstance(components.first_stage, Centroids):
            on_step(f"{name}: training the centroid codebook on {job.counts.written} passages")
            components.first_stage.maintain(indexer.store, 1)
            indexer.wait()
        seconds = round(time.perf_counter() - started, 1)
        built = {"documents": evalset.documents, "passages": job.counts.written, "rejected": len(rejected)}
        (folder / BUILT).write_text(json.dumps({**built, "seconds": seconds}))
    finally:
        indexer.close()
    return rejected


def _search(
    retriever: Retriever,
    queries: list[Query],
    config: Config,
    k: int,
    folder: Path,
    reused: bool,
    rejected: list[Reject],
) -> Run:
    ranking: dict[str, dict[str, float]] = {}
    languages: dict[str, str] = {}
    times: list[float] = []
    retriever.search(queries[0].text, k, _language(queries[0], config.language))  # loads and warms: not timed
    for start in range(0, len(queries), SEARCH_BATCH):
        batch = queries[start : start + SEARCH_BATCH]
        asked = [_language(q, config.language) for q in batch]
        began = time.perf_counter()
        results = retriever.search_batch([q.text for q in batch], k, asked)
        times.append((time.perf_counter() - began) * 1000 / len(batch))
        for query, result in zip(batch, results, strict=True):
            ranking[query.id] = {hit.document_id: hit.score for hit in result.hits}
            languages[query.id] = query.language or result.language.code
    return Run(config, ranking, languages, folder, reused, rejected, float(np.mean(times)) if times else 0.0)


def _language(query: Query, routing: str) -> str | None:
    if routing == "given":
        return query.language
    return None if routing == "detect" else routing

"""The Retriever: a query in any language -> its adapter -> 32 token vectors -> MaxSim search on the
collection alias (optionally a single-vector prefetch first) -> ranked passages."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xmsearch.retriever.components import Components
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.index.filters import Condition, parse_filter
from xmsearch.retriever.index.schema import Hit, check_k
from xmsearch.retriever.index.stores.base import CollectionNotFoundError
from xmsearch.retriever.model.batching import QueryBatcher
from xmsearch.retriever.model.encoder import Encoder, Languages
from xmsearch.retriever.model.languages import Resolution
from xmsearch.retriever.settings import Settings, get_settings

COUNT_TTL_S = 30.0  # how long the collection size behind first_stage=auto is trusted


@dataclass(frozen=True)
class SearchResult:
    """The hits of one query, the language its adapter was chosen for, and where the time went."""

    query: str
    language: Resolution
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)


class Retriever:
    """Searches one collection with one encoder.

    >>> retriever = Retriever.from_settings()  # doctest: +SKIP
    >>> retriever.search("wie alt ist der Eiffelturm", k=5).hits[0].text  # doctest: +SKIP
    """

    def __init__(self, components: Components) -> None:
        self.components = components
        self.encoder = components.encoder
        self.store = components.store
        self.settings = settings = components.settings
        self.first_stage = components.first_stage
        self._count: tuple[float, int] | None = None
        self.batcher = (
            QueryBatcher(self.encoder.encode_queries, settings.batch_size) if settings.query_batching else None
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None, encoder: Encoder | None = None) -> Retriever:
        """The encoder and store the settings name (the store is opened on first search)."""
        return cls(Components.load(settings or get_settings(), encoder))

    def search(
        self,
        query: str,
        k: int = 10,
        language: str | None = None,
        filter: dict[str, Any] | None = None,
        scope: Sequence[Condition] = (),
    ) -> SearchResult:
        """The k best passages for one query."""
        return self.search_batch([query], k, None if language is None else [language], filter, scope)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        languages: Languages = None,
        filter: dict[str, Any] | None = None,
        scope: Sequence[Condition] = (),
    ) -> list[SearchResult]:
        """The k best passages for each query (one encoder pass, one store round trip).

        `scope` is ANDed with the filter whatever it says (e.g. the tenant an API key is bound to)."""
        check_k(k, self.settings.max_k)
        conditions = [*parse_filter(filter), *scope]
        queries = list(queries)
        self._check_lengths(queries)
        start = time.perf_counter()
        langs = self.encoder.resolve_languages(queries, languages)
        adapters = [r.adapter for r in langs]
        if self.batcher is not None:  # with the queries of concurrent searches, in one forward pass
            vectors = self.batcher.encode(queries, adapters)
        else:
            vectors = self.encoder.encode_queries(queries, adapters)
        encoded = time.perf_counter()
        self.store.open(create=False)  # CollectionNotFoundError until something is ingested; then a no-op
        prefetch = self._first_stage_vectors(vectors)
        hits = self.store.search(vectors, k, conditions, prefetch, self.settings.first_stage_candidates)
        done = time.perf_counter()
        timings = {"encode": (encoded - start) * 1000 / len(queries), "search": (done - encoded) * 1000 / len(queries)}
        return [SearchResult(q, lang, h, timings) for q, lang, h in zip(queries, langs, hits, strict=True)]

    def _check_lengths(self, queries: list[str]) -> None:
        if isinstance(queries, str) or not queries:
            raise InvalidInputError("give one or more queries")
        for i, query in enumerate(queries):
            if not isinstance(query, str) or not query.strip():
                raise InvalidInputError(f"query {i} is empty or not a string")
            if len(query) > self.settings.max_query_chars:
                raise InvalidInputError(
                    f"query {i} is {len(query)} characters, over the limit of {self.settings.max_query_chars}"
                )
        limit = self.encoder.spec.query_maxlen
        for i, n in enumerate(self.encoder.tokenizer.query_lengths(queries)):
            if n > limit:
                raise InvalidInputError(f"query {i} is {n} tokens long; the model reads at most {limit} (query_maxlen)")

    def _first_stage_vectors(self, vectors: list[np.ndarray]) -> list[np.ndarray] | None:
        if self.first_stage is None or self.settings.first_stage == "off":
            return None
        if self.settings.first_stage == "auto" and self._size() < self.settings.first_stage_min_points:
            return None
        return list(self.first_stage.queries(vectors))

    def _size(self) -> int:
        now = time.monotonic()
        if self._count is None or now - self._count[0] > COUNT_TTL_S:
            self._count = (now, self.store.count())
        return self._count[1]

    def close(self) -> None:
        self.store.close()


__all__ = ["CollectionNotFoundError", "Retriever", "SearchResult"]

"""The Retriever: a query in any language -> its adapter -> 32 token vectors -> MaxSim search on the
collection alias (optionally a single-vector prefetch first) -> ranked passages.

On a Qdrant server, where other processes may move the alias (a reindex, a rollback), a Retriever
searches the version its model built, by name, and follows the alias: when it moves, the new
version's model loads in the background while searches go on against the old version, then both
switch at once (no search mixes models, none fails)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack

from xmsearch.retriever.components import Components
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.follow import Follow, follows, load_version
from xmsearch.retriever.index import pooling
from xmsearch.retriever.index.filters import Condition, owned_by, parse_filter, searched_tenant
from xmsearch.retriever.index.first_stage import shortlist_of
from xmsearch.retriever.index.schema import Hit, Page, Paging, Point
from xmsearch.retriever.index.stores import Store
from xmsearch.retriever.index.stores.base import CollectionNotFoundError
from xmsearch.retriever.model.batching import QueryBatcher
from xmsearch.retriever.model.encoder import Encoder, Languages, Prepared
from xmsearch.retriever.model.langid import NO_HINTS, Hints
from xmsearch.retriever.model.languages import Resolution
from xmsearch.retriever.settings import RetrieverSettings
from xmsearch.retriever.switch import SwitchLock

log = logging.getLogger(__name__)
COUNT_TTL_S = 30.0  # how long the collection size behind first_stage=auto (and a tenant's languages) is trusted
TENANT_PRIOR_SHARE = 0.05  # a tenant's language counts in its prior from this share of its documents
TENANT_PRIOR_LANGUAGES = 5  # the most frequent of a tenant's document languages read for its prior
TENANTS_CACHED = 4096


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

    def __init__(self, components: Components, follow: bool | None = None) -> None:
        _ready(components)
        self._use(components)
        self._switch = SwitchLock()  # searches and reads share it; switching to another model and version holds it
        # on a server other processes move the alias: search the version this model built, by name, and follow
        self.follow = Follow(components.store) if follows(components, follow) else None
        self._moving = threading.Lock()  # one move to a new version at a time
        self.batcher: QueryBatcher[Prepared] | None = None
        if self.settings.query_batching:  # the queries of concurrent searches share forward passes
            encode = lambda parts: self.encoder.encode(Prepared.join(parts))  # noqa: E731  # the encoder of the moment
            self.batcher = QueryBatcher(encode, self.settings.batch_size)

    def _use(self, components: Components) -> None:
        self.components = components
        self.encoder = components.encoder
        self.store = components.store
        self.settings = components.settings
        self._count: tuple[float, int] | None = None
        self._tenant_languages: dict[str, tuple[float, list[str]]] = {}  # tenant -> (read at, its documents' languages)

    def switch(self, components: Components, swap: Callable[[], None], pinned: tuple[str, Store] | None = None) -> None:
        """Search with `components` (another model, the version it built) from now on: `swap` moves
        the store to that version while no search or read is in flight; new ones wait for it.
        Following, reads go to `pinned` (None: the version the alias names at the next read)."""
        _ready(components)  # before searches wait on the switch
        with self._switch.switching():
            swap()
            self._use(components)
            if self.follow is not None:
                self.follow.pinned = None
                if pinned is not None:
                    self.follow.pin(*pinned)

    def _reader(self) -> Store:
        """The store reads go to: the alias, or (following) the version this model built."""
        self.store.open(create=False)  # CollectionNotFoundError until something is ingested; then a no-op
        return self.follow.view() if self.follow else self.store

    def _follow(self) -> None:
        """Following: when the alias moved, the move starts in the background (searches go on against
        the version pinned until it is done)."""
        version = self.follow.moved() if self.follow else None
        if version is not None and self._moving.acquire(blocking=False):
            threading.Thread(target=self._move, args=(version,), name="xmsearch-follow", daemon=True).start()

    def _move(self, version: str) -> None:
        """Load what `version` was built with (its model, unless it is this one), then switch to it."""
        try:
            components, view = load_version(self.components, version)
            self.switch(components, lambda: None, (version, view))
            log.info("following %s to %s, built with %s", self.store.alias, version, components.settings.model)
        except Exception:  # searches go on against the version pinned; the next check tries again
            log.exception("could not follow %s to %s", self.store.alias, version)
        finally:
            self._moving.release()

    @classmethod
    def from_settings(cls, settings: RetrieverSettings | None = None, encoder: Encoder | None = None) -> Retriever:
        """The encoder and store the settings name (the store is opened on first search)."""
        return cls(Components.load(settings or RetrieverSettings.from_env(), encoder))

    def search(
        self,
        query: str,
        k: int = 10,
        language: str | None = None,
        filter: dict[str, Any] | None = None,
        scope: Sequence[Condition] = (),
        hints: Hints | None = None,
        **paging: Unpack[Paging],
    ) -> SearchResult:
        """The k best documents (or, with group=False, chunks) for one query."""
        languages = None if language is None else [language]
        return self.search_batch([query], k, languages, filter, scope, hints, **paging)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        languages: Languages = None,
        filter: dict[str, Any] | None = None,
        scope: Sequence[Condition] = (),
        hints: Hints | None = None,
        **paging: Unpack[Paging],
    ) -> list[SearchResult]:
        """The k best documents (each its best chunk) for each query, one encoder pass and one store
        round trip. Paging: `offset` (skip the first), `score_threshold` (no hit scoring under it),
        `group=False` (single chunks), `chunks_per_document` (show each document's next best chunks).

        `scope` is ANDed with the filter whatever it says (e.g. the tenant an API key is bound to).
        `hints` tell the detection of queries given without a language what the caller knows: the
        languages allowed, the preferred ones (a hint, Accept-Language) where detection is unsure."""
        page = Page(k, **paging)
        page.check(self.settings.max_k)
        conditions = [*parse_filter(filter), *scope]
        if isinstance(queries, str) or not queries:
            raise InvalidInputError("give one or more queries")
        queries = list(queries)
        self._follow()
        with self._switch.reading():  # one model and the version it built, for the whole search
            return self._search(queries, languages, page, conditions, hints)

    def _search(
        self, queries: list[str], languages: Languages, page: Page, conditions: list[Condition], hints: Hints | None
    ) -> list[SearchResult]:
        start = time.perf_counter()
        limit = self.settings.max_query_chars
        if _detects(languages):
            hints = self._with_tenant_prior(hints or NO_HINTS, conditions)
        prepared = self.encoder.prepare(queries, languages, "query", "query", limit, hints)
        self._check_lengths(prepared)
        with self.encoder.priority.search():  # indexing in this process waits (within its share)
            vectors = self.encoder.encode(prepared) if self.batcher is None else self.batcher.encode(prepared.split())
            encoded = time.perf_counter()
            hits = self.components.search(self._reader(), vectors, page, conditions, self._size)
        done = time.perf_counter()
        timings = {"encode": (encoded - start) * 1000 / len(queries), "search": (done - encoded) * 1000 / len(queries)}
        results = zip(queries, prepared.languages, hits, strict=True)
        return [SearchResult(q, lang, h, timings) for q, lang, h in results]

    def _with_tenant_prior(self, hints: Hints, conditions: Sequence[Condition]) -> Hints:
        """The hints, with the languages of the one tenant the search is for (none: the hints as they
        are): its default languages, then those of its documents (cached for COUNT_TTL_S)."""
        tenant = searched_tenant(conditions)
        if tenant is None:
            return hints
        prior = list(self.settings.tenant_languages.get(tenant, ()))
        if self.settings.langid_tenant_prior:
            now = time.monotonic()
            cached = self._tenant_languages.get(tenant)
            if cached is None or now - cached[0] > COUNT_TTL_S:
                if len(self._tenant_languages) >= TENANTS_CACHED:
                    self._tenant_languages.clear()
                counts = self._reader().document_languages([owned_by(tenant)], TENANT_PRIOR_LANGUAGES)
                total = sum(counts.values())
                cached = (now, [code for code, n in counts.items() if n >= TENANT_PRIOR_SHARE * total])
                self._tenant_languages[tenant] = cached
            prior.extend(cached[1])
        return hints.with_prior(prior)

    def _check_lengths(self, prepared: Prepared) -> None:
        """A query longer than the model reads is refused, not cut (its end would be ignored)."""
        limit = self.encoder.spec.query_maxlen
        for i, n in enumerate(prepared.lengths):
            if n > limit:
                raise InvalidInputError(f"query {i} is {n} tokens long; the model reads at most {limit} (query_maxlen)")

    def _size(self) -> int:
        now = time.monotonic()
        if self._count is None or now - self._count[0] > COUNT_TTL_S:
            self._count = (now, self.store.count())
        return self._count[1]

    def document(self, document_id: str, tenant: str | None = None) -> list[Point]:
        """The stored chunks of one document of one tenant, in order, without their vectors ([]: none)."""
        with self._switch.reading():
            return self._reader().fetch(document_id, tenant, vectors=False)

    def documents(
        self, scope: Sequence[Condition] = (), limit: int = 100, cursor: str | None = None
    ) -> tuple[list[Point], int, str | None]:
        """A page of the stored documents within `scope` (each as its first chunk, without vectors),
        how many there are in all, and the cursor of the next page (None: the last)."""
        with self._switch.reading():
            return self._reader().documents(scope, limit, cursor)

    def status(self, scope: Sequence[Condition] = ()) -> dict[str, Any]:
        """The collection: where, its versions, what it was built with, points and documents within
        `scope`, size on disk."""
        with self._switch.reading():
            self.store.open(create=False)
            return self.store.describe(scope)

    def collections(self) -> list[dict[str, Any]]:
        """Every version of the collection, oldest first: whether searches use it, what it was built
        with, points, documents, size on disk."""
        with self._switch.reading():
            self.store.open(create=False)
            return self.store.collections()

    def drop(self, version: str) -> None:
        """Remove a version searches do not use (e.g. the one a reindex replaced, once it is not needed
        for a rollback)."""
        with self._switch.reading():
            self.store.open(create=False)
            self.store.drop(version)

    def close(self) -> None:
        self.store.close()


def _ready(components: Components) -> None:
    """Load what searches with `components` need beyond the model, so that no search waits for it: the
    query runtime's session, and scipy's clustering where searches may pool their query (a shortlist
    over a collection built before pooled passages)."""
    components.encoder.ready_queries()
    if shortlist_of(components.settings) is not None:
        pooling.ready()


def _detects(languages: Languages) -> bool:
    """Whether some query goes without a language (its language is detected)."""
    return languages is None or (not isinstance(languages, str) and any(code is None for code in languages))


__all__ = ["CollectionNotFoundError", "Retriever", "SearchResult"]

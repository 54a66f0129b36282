"""Hard negatives from the current index: each (query, positive) pair becomes a training triple whose
negatives are the passages the collection ranks highest for the query that are not its positive
(after skipping the first `skip`, which are often unjudged positives)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from xmsearch.evaluation.data import numbered_lines
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.index.schema import Hit
from xmsearch.retriever.search import Retriever

SEARCH_BATCH = 16


@dataclass(frozen=True)
class Pair:
    query: str
    positive: str
    positive_id: str | None  # the positive's document id in the collection, when known
    language: str | None


def read_pairs(path: Path) -> list[Pair]:
    """JSON Lines {"query", "positive", "positive_id"?, "language"?}; a bad line names itself."""
    pairs = []
    for where, line in numbered_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: not JSON ({exc.msg})") from None
        query, positive = (record.get("query"), record.get("positive")) if isinstance(record, dict) else (None, None)
        if not (isinstance(query, str) and query.strip() and isinstance(positive, str) and positive.strip()):
            raise InvalidInputError(f'{where}: needs a "query" and a "positive", each a non-empty text')
        known = record.get("positive_id")
        pairs.append(Pair(query, positive, None if known is None else str(known), record.get("language")))
    return pairs


def mine(retriever: Retriever, pairs: list[Pair], negatives: int, skip: int = 0) -> Iterator[dict[str, object]]:
    """A triple per pair, in order, with up to `negatives` hard negatives (a pair the collection has
    nothing else for is left out)."""
    depth = skip + negatives + 1  # the positive may be among them
    for first in range(0, len(pairs), SEARCH_BATCH):
        batch = pairs[first : first + SEARCH_BATCH]
        results = retriever.search_batch([p.query for p in batch], depth, [p.language for p in batch])
        for pair, result in zip(batch, results, strict=True):
            others = [
                h for h in result.hits if h.document_id != pair.positive_id and h.text.strip() != pair.positive.strip()
            ]
            chosen = [h.text for h in others[skip : skip + negatives]]
            if chosen:
                language = pair.language or result.language.code
                yield {"query": pair.query, "positive": pair.positive, "negatives": chosen, "language": language}


def _is_positive(hit: Hit, pair: Pair) -> bool:
    return hit.document_id == pair.positive_id or hit.text.strip() == pair.positive.strip()

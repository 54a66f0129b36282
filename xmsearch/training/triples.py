"""Training triples on disk: JSON Lines of {"query", "positive", "negatives": [...], "language"?}, or
TSV lines of query <tab> positive <tab> negative... (colbert-ai's triples with their texts). A line
that is not one is a one-line error naming its file and line."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from xmsearch.evaluation.data import numbered_lines
from xmsearch.retriever.errors import InvalidInputError


@dataclass(frozen=True)
class Triple:
    query: str
    positive: str
    negatives: tuple[str, ...]
    language: str


def read_triples(path: Path, language: str) -> list[Triple]:
    """Every triple of `path`; `language` is that of records that name none."""
    triples = [_triple(line, where, language) for where, line in numbered_lines(path)]
    if not triples:
        raise InvalidInputError(f"{path}: no triples")
    return triples


def _triple(line: str, where: str, language: str) -> Triple:
    texts: list[object] = list(line.split("\t"))
    if line.lstrip().startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: not JSON ({exc.msg})") from None
        negatives = record.get("negatives") if isinstance(record, dict) else None
        texts = [record.get("query"), record.get("positive"), *negatives] if isinstance(negatives, list) else []
        language = record.get("language") or language
    if len(texts) < 3 or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InvalidInputError(f"{where}: needs a query, a positive and at least one negative, each a non-empty text")
    query, positive, *negatives = (str(t) for t in texts)
    return Triple(query, positive, tuple(negatives), str(language))


def hold_out(triples: list[Triple], share: float, seed: int) -> tuple[list[Triple], list[Triple]]:
    """(training, held out): `share` of the queries, chosen by seed, never trained on."""
    queries = sorted({t.query for t in triples})
    held = set(random.Random(seed).sample(queries, round(len(queries) * share))) if share > 0 else set()
    return [t for t in triples if t.query not in held], [t for t in triples if t.query in held]


def digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]

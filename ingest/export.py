"""A collection's documents as they were ingested, rebuilt from what each first chunk keeps (its exact
text, its language as given) with its tenant and metadata: records that `xmsearch ingest` reads back,
for a backup, a move to another machine, or the source of a reindex."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from xmsearch.retriever.index.filters import Condition
from xmsearch.retriever.index.schema import Point
from xmsearch.retriever.index.stores import Store


@dataclass
class Export:
    """Reads the documents of one store within `scope`; `unrebuildable` names those stored before
    xmsearch kept each document's text (they cannot be rebuilt: ingest them again from their source)."""

    store: Store
    scope: Sequence[Condition] = ()
    unrebuildable: list[tuple[str | None, str]] = field(default_factory=list)

    def records(self) -> Iterator[dict[str, Any]]:
        """One record per document: id, text, and language, tenant and metadata where it has them."""
        for point in self.store.first_chunks(self.scope):
            record = as_record(point)
            if record is None:
                self.unrebuildable.append((point.tenant, point.document_id))
            else:
                yield record


def as_record(first: Point) -> dict[str, Any] | None:
    """A document as ingested, from its first chunk (None: stored before xmsearch kept the text)."""
    if first.source is None:
        return None
    record: dict[str, Any] = {"id": first.document_id, "text": first.source.text}
    optional = {"language": first.source.language, "tenant": first.tenant, "metadata": first.metadata}
    return record | {name: value for name, value in optional.items() if value}

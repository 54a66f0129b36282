"""A collection's documents as they were ingested, rebuilt from what each first chunk keeps (its exact
text, its language as given) with its tenant and metadata: records that `xmsearch ingest` reads back,
for a backup, a move to another machine, or the source of a reindex."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from xmsearch.retriever.index.filters import Condition
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
            if point.source is None:
                self.unrebuildable.append((point.tenant, point.document_id))
                continue
            record: dict[str, Any] = {"id": point.document_id, "text": point.source.text}
            optional = {"language": point.source.language, "tenant": point.tenant, "metadata": point.metadata}
            yield record | {name: value for name, value in optional.items() if value}

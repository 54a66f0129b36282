"""The entry points an app uses, and the command line: the one place that sees every package
(workers -> ingest -> retriever).

>>> from xmsearch import Ingestor, Retriever  # doctest: +SKIP
>>> job_id = Ingestor.from_settings().submit([{"id": "a", "text": "Le Rhône traverse Lyon."}])  # doctest: +SKIP
>>> Retriever.from_settings().search("Which river flows through Lyon?").hits  # doctest: +SKIP

The names load on first use, so that `xmsearch --help` and other light commands do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xmsearch.retriever.lazy import lazy_exports

if TYPE_CHECKING:
    from xmsearch.errors import InvalidDocumentsError, QueueFullError, TenantForbiddenError
    from xmsearch.ingestor import Ingestor
    from xmsearch.retriever.search import Retriever, SearchResult

_HOMES = {
    "Retriever": "xmsearch.retriever.search",
    "SearchResult": "xmsearch.retriever.search",
    "Ingestor": "xmsearch.ingestor",
    "InvalidDocumentsError": "xmsearch.errors",
    "QueueFullError": "xmsearch.errors",
    "TenantForbiddenError": "xmsearch.errors",
}
__all__ = ["Ingestor", "InvalidDocumentsError", "QueueFullError", "Retriever", "SearchResult", "TenantForbiddenError"]
__getattr__ = lazy_exports(__name__, _HOMES)

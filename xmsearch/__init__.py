"""The entry points an app uses, and the command line: the one place that sees every package
(workers -> ingest -> retriever).

>>> from xmsearch import Ingestor, Retriever  # doctest: +SKIP
>>> job_id = Ingestor.from_settings().submit([{"id": "a", "text": "Le Rhône traverse Lyon."}])  # doctest: +SKIP
>>> Retriever.from_settings().search("Which river flows through Lyon?").hits  # doctest: +SKIP
"""

from retriever.search import Retriever, SearchResult
from xmsearch.ingestor import Ingestor, InvalidDocumentsError, QueueFullError, TenantForbiddenError

__all__ = ["Ingestor", "InvalidDocumentsError", "QueueFullError", "Retriever", "SearchResult", "TenantForbiddenError"]

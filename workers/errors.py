"""The errors of the distributed mode that the layers above name (the API maps them to codes); light
to import (no Celery)."""

from __future__ import annotations

from xmsearch.retriever.errors import PermanentError


class BrokerNotDurableError(PermanentError):
    """The broker would lose accepted work on a restart (no append-only file), and the settings do not
    allow that."""

"""The model and the index: ColBERT-XM checkpoints, tokenisation, language adapters and encoding.

`from xmsearch.retriever import Encoder` is the public entry point for encoding. This package never
imports Celery: ingestion and workers build on it, not the other way round. The names load on first
use, so that importing `xmsearch.retriever.errors` or `.settings` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xmsearch.retriever.lazy import lazy_exports

if TYPE_CHECKING:
    from xmsearch.retriever.errors import (
        CheckpointError,
        CheckpointUnavailableError,
        InvalidInputError,
        UnknownLanguageError,
        XmsearchError,
    )
    from xmsearch.retriever.model.encoder import Encoder
    from xmsearch.retriever.model.langid import Hints
    from xmsearch.retriever.settings import EncoderSettings, RetrieverSettings

_HOMES = {
    "Encoder": "xmsearch.retriever.model.encoder",
    "Hints": "xmsearch.retriever.model.langid",
    "CheckpointError": "xmsearch.retriever.errors",
    "CheckpointUnavailableError": "xmsearch.retriever.errors",
    "InvalidInputError": "xmsearch.retriever.errors",
    "UnknownLanguageError": "xmsearch.retriever.errors",
    "XmsearchError": "xmsearch.retriever.errors",
    "EncoderSettings": "xmsearch.retriever.settings",
    "RetrieverSettings": "xmsearch.retriever.settings",
}
__all__ = [
    "CheckpointError",
    "CheckpointUnavailableError",
    "Encoder",
    "EncoderSettings",
    "Hints",
    "InvalidInputError",
    "RetrieverSettings",
    "UnknownLanguageError",
    "XmsearchError",
]
__getattr__ = lazy_exports(__name__, _HOMES)

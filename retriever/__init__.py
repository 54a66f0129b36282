"""The model and the index: ColBERT-XM checkpoints, tokenisation, language adapters and encoding.

`from retriever import Encoder` is the public entry point for encoding. This package never imports
Celery: ingestion and workers build on it, not the other way round. The names load on first use, so
that importing `retriever.errors` or `retriever.settings` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retriever.lazy import lazy_exports

if TYPE_CHECKING:
    from retriever.encoder import Encoder
    from retriever.errors import (
        CheckpointError,
        CheckpointUnavailableError,
        InvalidInputError,
        UnknownLanguageError,
        XmsearchError,
    )
    from retriever.settings import Settings, get_settings

_HOMES = {
    "Encoder": "retriever.encoder",
    "CheckpointError": "retriever.errors",
    "CheckpointUnavailableError": "retriever.errors",
    "InvalidInputError": "retriever.errors",
    "UnknownLanguageError": "retriever.errors",
    "XmsearchError": "retriever.errors",
    "Settings": "retriever.settings",
    "get_settings": "retriever.settings",
}
__all__ = [
    "CheckpointError",
    "CheckpointUnavailableError",
    "Encoder",
    "InvalidInputError",
    "Settings",
    "UnknownLanguageError",
    "XmsearchError",
    "get_settings",
]
__getattr__ = lazy_exports(__name__, _HOMES)

"""The model and the index: ColBERT-XM checkpoints, tokenisation, language adapters and encoding.

`from retriever import Encoder` is the public entry point for encoding. This package never imports
Celery: ingestion and workers build on it, not the other way round.
"""

from retriever.encoder import Encoder
from retriever.errors import (
    CheckpointError,
    CheckpointUnavailableError,
    InvalidInputError,
    UnknownLanguageError,
    XmsearchError,
)
from retriever.settings import Settings, get_settings

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

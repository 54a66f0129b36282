"""The one settings object of xmsearch: every entry point reads it, from `XMSEARCH_*` variables
(or a `.env` file in the working folder)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "antoinelouis/colbert-xm"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class Settings(BaseSettings):
    """Configuration shared by the encoder, the CLI and (later) the store, ingestion and workers."""

    model_config = SettingsConfigDict(env_prefix="XMSEARCH_", env_file=".env", extra="ignore", protected_namespaces=())

    model: str = Field(DEFAULT_MODEL, description="Hub id or local folder of a ColBERT-XM (colbert-ai) checkpoint.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = fp32 on CPU and fp16 on CUDA (as the reference encodes documents)."
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Texts per forward pass.")
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads for this process; unset keeps torch's default."
    )
    marker_convention: Literal["legacy", "current"] = Field(
        "legacy", description="legacy = colbert-ai <= 0.2.20 (what ColBERT-XM was trained with)."
    )
    unknown_language: Literal["fallback", "error"] = Field(
        "fallback", description="What to do with a language that has no adapter."
    )
    fallback_language: str = Field("en", description="Adapter used by the fallback policy.")
    detect_language: bool = Field(True, description="Detect the language of texts given without one.")
    langid_min_confidence: float = Field(
        0.6, ge=0.0, le=1.0, description="Detections below this confidence follow the unknown-language policy."
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {value!r}")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

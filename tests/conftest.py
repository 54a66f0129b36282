"""Shared fixtures: a generated tiny checkpoint, the committed golden checkpoint, and ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from retriever import Encoder, Settings
from retriever.tiny import make_tiny

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
SHARED = ROOT.parent / "shared"
XLMR_TOKENIZER = SHARED / "fixtures" / "xlmr-tokenizer" / "tokenizer.json"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly generated tiny checkpoint (8 adapters, project-built tokenizer)."""
    return make_tiny(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def encoder(tiny_checkpoint: Path) -> Encoder:
    """An fp32 CPU encoder on the tiny checkpoint, language detection off (languages are given)."""
    return Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", detect_language=False, batch_size=4))


@pytest.fixture(scope="session")
def xlmr_tokenizer() -> Path:
    """The real XLM-R tokenizer from ../shared (absent in a fresh clone: the test is skipped)."""
    if not XLMR_TOKENIZER.is_file():
        pytest.skip(f"the real XLM-R tokenizer is not at {XLMR_TOKENIZER} (../shared is absent in a fresh clone)")
    return XLMR_TOKENIZER

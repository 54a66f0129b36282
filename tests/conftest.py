"""Shared fixtures: a generated tiny checkpoint, the committed golden checkpoint, ../shared, and a
private Redis."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from xmsearch.retriever import Encoder
from xmsearch.retriever.model.tiny import make_tiny
from xmsearch.settings import Settings

if TYPE_CHECKING:
    from tests.helpers import RedisServer

# The suite checks exact scores, so it encodes in fp32 unless a test asks for a precision; `auto`'s
# measurement (fp32 or bf16, whichever is faster on this CPU) is tested on its own (test_model.py).
os.environ.setdefault("XMSEARCH_PRECISION", "fp32")
# and it runs queries on torch, as documents: `query_runtime=auto` (ONNX Runtime in fp32 where it measured
# faster, within 1e-5 of torch's vectors) is tested on its own (test_onnx_query.py).
os.environ.setdefault("XMSEARCH_QUERY_RUNTIME", "torch")
# Workers started in parallel would all ask for the default metrics port: the tests that scrape one
# give it a free port of its own.
os.environ.setdefault("XMSEARCH_WORKER_METRICS_PORT", "0")

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
def detecting_encoder(tiny_checkpoint: Path) -> Encoder:
    """The same, with language detection on (threshold 0.6)."""
    return Encoder.from_pretrained(tiny_checkpoint, Settings(device="cpu", langid_min_confidence=0.6, batch_size=4))


@pytest.fixture(scope="session")
def xlmr_tokenizer() -> Path:
    """The real XLM-R tokenizer from ../shared (absent in a fresh clone: the test is skipped)."""
    if not XLMR_TOKENIZER.is_file():
        pytest.skip(f"the real XLM-R tokenizer is not at {XLMR_TOKENIZER} (../shared is absent in a fresh clone)")
    return XLMR_TOKENIZER


def as_stored(backend: str, datatype: str) -> tuple[float, Callable[[np.ndarray], np.ndarray]]:
    """The tolerance of the issue and the rounding an engine applies to what it stores and compares:
    Qdrant Edge keeps float16 vectors and compares the query in float16 too; qdrant-client's local
    mode keeps float32 whatever the datatype. The brute-force reference MaxSim runs on the same
    rounded vectors (the stored ones)."""
    if datatype == "float16" and backend == "edge":
        return 1e-3, lambda v: v.astype(np.float16).astype(np.float32)
    return 1e-5, lambda v: v


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server (with an append-only file) for one test."""
    from tests.helpers import RedisServer

    if shutil.which("redis-server") is None:
        pytest.skip(
            "these tests start their own Redis and no redis-server binary is on PATH (apt-get install redis-server)"
        )
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def qdrant_server(tmp_path: Path) -> Iterator[str]:
    """A Qdrant server's URL where none can run: tests/qdrant_standin.py (Qdrant's REST API over
    qdrant-client's local engine) in a process of its own, on a free port, for one test."""
    import httpx

    from tests.helpers import free_port, started, wait_until

    port = free_port()
    command = [sys.executable, "-m", "tests.qdrant_standin", "--port", str(port), "--path", str(tmp_path / "qdrant")]
    url, log = f"http://127.0.0.1:{port}", tmp_path / "qdrant.log"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/collections", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    with started(command, dict(os.environ), log):
        wait_until("the Qdrant stand-in", up, log, 60)
        yield url

"""Hostile records at every door: whatever validation accepts can be stored, and whatever it refuses
is one named reason, never a crash (API, JSON Lines file, stream intake)."""

from __future__ import annotations

import json
import math
import select
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_api import api_settings, as_, error
from xmsearch.api import create_app
from xmsearch.ingest.documents import MAX_DEPTH, Document, Reject, json_problem, parse
from xmsearch.ingest.sources import read_jsonl
from xmsearch.retriever.index.schema import IndexSpec, Point
from xmsearch.retriever.index.stores.edge import EdgeStore
from xmsearch.retriever.index.stores.qdrant import QdrantStore
from xmsearch.retriever.model.encoder import Encoder

LIMITS = {"max_chars": 10_000, "max_metadata_bytes": 65_536}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("deep", {"id": "d", "text": "t", "metadata": nested(900)}, f"metadata: nested more than {MAX_DEPTH} levels"),
    ("nan", {"id": "n", "text": "t", "metadata": {"x": math.nan}}, "metadata: x: nan is not a JSON number"),
    ("inf", {"id": "i", "text": "t", "metadata": {"x": [1, -math.inf]}}, "x[1]: -inf is not a JSON number"),
    ("surrogate", {"id": "s", "text": "t\ud800"}, "text: holds a lone surrogate"),
    ("surrogate key", {"id": "k", "text": "t", "metadata": {"\udfff": 1}}, "a key holds a lone surrogate"),
    ("surrogate id", {"id": "\ud800", "text": "t"}, "id: holds a lone surrogate"),
    ("huge int", {"id": "h", "text": "t", "metadata": {"n": 2**70}}, "n: an integer that does not fit in 64 bits"),
]


def test_each_hostile_record_is_one_named_reason() -> None:
    for name, record, reason in HOSTILE:
        got = parse(record, "src", "line 1", LIMITS)
        assert isinstance(got, Reject) and reason in got.reason, (name, got)


def test_a_file_of_hostile_lines_is_read_to_its_end() -> None:
    lines = [json.dumps(r, allow_nan=True) for _, r, _ in HOSTILE]
    lines += ["[" * 100_000, json.dumps({"id": "fine", "text": "ok"})]  # deeper than the JSON parser goes
    got = list(read_jsonl(iter(line.encode("utf-8", "surrogatepass") + b"\n" for line in lines), "f", LIMITS))  # type: ignore[arg-type]
    assert [type(r).__name__ for r in got] == ["Reject"] * (len(HOSTILE) + 1) + ["Document"]
    assert "invalid JSON: nested too deeply to parse" in got[-2].reason  # type: ignore[union-attr]


def test_the_intake_turns_every_hostile_entry_into_a_reject() -> None:
    from xmsearch.workers.intake import _record

    for name, record, reason in HOSTILE:
        got = _record("1-0", {"document": json.dumps(record, allow_nan=True)}, LIMITS)
        assert isinstance(got, Reject) and reason in got.reason, (name, got)
    assert "nested too deeply" in _record("1-0", {"document": "[" * 100_000}, LIMITS).reason  # type: ignore[union-attr]


def test_the_api_refuses_hostile_documents_by_name(tmp_path: Path, detecting_encoder: Encoder) -> None:
    settings = api_settings(tmp_path, model=str(detecting_encoder.spec.path), api_max_body_bytes=1_000_000)
    json_body = {**as_("admin"), "content-type": "application/json"}
    with TestClient(create_app(settings, detecting_encoder)) as client:
        for name, record, reason in HOSTILE:
            body = json.dumps(record, allow_nan=True).encode("utf-8", "surrogatepass")
            status, code, message = error(client.post("/documents", content=body, headers=json_body))
            assert (status, code) == (422, "invalid_documents") and reason in message, (name, status, message)
        deep = client.post("/documents", content=b"[" * 100_000, headers=json_body)
        assert error(deep)[:2] == (400, "invalid_json")
        strict_k = client.post("/search", json={"query": "x", "k": True}, headers=as_("admin"))
        assert error(strict_k)[:2] == (422, "invalid_request")
        bad_key = client.post("/search", json={"query": "x", "filter": {"metadata..": 1}}, headers=as_("admin"))
        assert error(bad_key)[:2] == (422, "invalid_input") and "'metadata..'" in error(bad_key)[2]
        assert client.head("/health").status_code == 200 and client.head("/ready").status_code in (200, 503)


def same_json(a: Any, b: Any) -> bool:
    """Equal, floats within a few ulps (Edge's JSON parser does not always round the last digit)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-14, abs_tol=0.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=8)  # surrogates included
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


def test_whatever_validation_accepts_every_store_stores(tmp_path: Path) -> None:
    """Property: a document that passes validation is stored and read back unchanged, on Qdrant Edge
    and on qdrant-client's local mode (the server's code path)."""
    spec = IndexSpec(model_id="m@x", dim=4)
    stores = [EdgeStore(tmp_path / "edge", "docs", spec), QdrantStore.local(None, "docs", spec)]
    for store in stores:
        store.open()
    vectors = np.eye(4, dtype=np.float32)[:2]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4), st.text(min_size=1, max_size=20))
    def check(metadata: dict[str, Any], text: str) -> None:
        got = parse({"id": "p", "text": text, "metadata": metadata}, "prop", "x", LIMITS)
        if isinstance(got, Reject):
            return
        assert isinstance(got, Document) and json_problem(got.metadata) is None
        for store in stores:
            store.upsert([Point("p", 0, vectors, got.text, "en", "h", "m@x", metadata=got.metadata)])
            back = store.fetch("p", vectors=False)
            assert same_json(back[0].metadata, got.metadata) and back[0].text == got.text, store.backend

    try:
        check()
    finally:
        for store in stores:
            store.close()


def test_a_body_shorter_than_its_content_length_is_answered_408(tmp_path: Path, detecting_encoder: Encoder) -> None:
    """A client that promises more than it sends holds nothing open past the body timeout."""
    from tests.helpers import serving

    settings = api_settings(tmp_path, model=str(detecting_encoder.spec.path), api_body_timeout=0.5)
    with serving(create_app(settings, detecting_encoder)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            head = f"POST /documents HTTP/1.1\r\nHost: x\r\nX-API-Key: {as_('admin')['X-API-Key']}\r\n"
            sock.sendall(f"{head}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode() + b'{"id": ')
            answer = _read_answer(sock)
    assert answer.startswith("HTTP/1.1 408") and "request_timeout" in answer and "stalled for 0.5 s" in answer


def test_slow_or_silent_request_headers_are_answered_408(
    tmp_path: Path, detecting_encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that says nothing, or sends its headers a byte at a time, is answered 408 and
    closed once the header deadline passes: on a new connection and on a kept-alive one."""
    from tests.helpers import serving
    from xmsearch.api.protocol import HeaderTimeoutProtocol
    from xmsearch.settings import get_settings

    monkeypatch.setenv("XMSEARCH_API_HEADER_TIMEOUT", "0.5")
    get_settings.cache_clear()
    settings = api_settings(tmp_path, model=str(detecting_encoder.spec.path))

    def answer(sock: socket.socket, dribble: bytes) -> str:
        for byte in dribble:  # a byte every 0.2 s, never a whole head within the deadline, until answered
            sock.sendall(bytes([byte]))
            if select.select([sock], [], [], 0.2)[0]:
                break
        raw = b""
        while chunk := sock.recv(4096):  # until the server closes
            raw += chunk
        return raw.decode()

    try:
        with serving(create_app(settings, detecting_encoder), http=HeaderTimeoutProtocol) as url:
            host, port = url.removeprefix("http://").split(":")
            address = (host, int(port))
            with socket.create_connection(address, timeout=10) as silent:
                said = answer(silent, b"")
            with socket.create_connection(address, timeout=10) as slow:
                dribbled = answer(slow, b"GET /health HTTP/1.1\r\nHost: x\r\n")
            with socket.create_connection(address, timeout=10) as kept:
                kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                first = _read_answer(kept)
                second = answer(kept, b"GET /health HTTP/1.1\r\nHo")
    finally:
        get_settings.cache_clear()
    for text in (said, dribbled, second):
        assert text.startswith("HTTP/1.1 408") and "request_timeout" in text and "more than 0.5 s" in text, text
    assert first.startswith("HTTP/1.1 200"), first


def _read_answer(sock: socket.socket) -> str:
    """One whole HTTP answer (its head and its body may come in separate segments)."""
    raw = b""
    while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < _length(raw):
        chunk = sock.recv(4096)
        if not chunk:
            break
        raw += chunk
    return raw.decode()


def _length(raw: bytes) -> int:
    """The Content-Length of an HTTP answer's head (0 until the head is complete)."""
    head = raw.partition(b"\r\n\r\n")[0].decode().lower()
    return next((int(line.split(":")[1]) for line in head.splitlines() if line.startswith("content-length:")), 0)

"""The HTTP API with the real app (model, store, background indexer): ingest, search, delete, jobs,
errors, API keys, tenant-bound keys and limits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from xmsearch.api import create_app
from xmsearch.api.auth import digest
from xmsearch.api.errors import ConfigurationError
from xmsearch.retriever.errors import PermanentError, TransientError
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.settings import ApiKey, Settings

KEYS = {"admin": "xms_admin-key", "acme": "xms_acme-key", "globex": "xms_globex-key"}
DOCS = [
    {"id": "river", "text": "The river flows past the old mill and the bridge.", "language": "en"},
    {"id": "pain", "text": "Le pain est cuit au four chaque matin.", "language": "fr", "metadata": {"topic": "food"}},
]


def api_settings(tmp_path: Path, **overrides: Any) -> Settings:
    keys = [ApiKey(sha256=digest(k), name=n, tenant=None if n == "admin" else n) for n, k in KEYS.items()]
    base: dict[str, Any] = {
        "device": "cpu",
        "data_dir": tmp_path / "data",
        "api_keys": keys,
        "api_max_documents": 5,
        "api_max_queries": 3,
        "api_max_body_bytes": 4096,
        "max_document_chars": 1000,
        "max_k": 50,
        "max_query_chars": 200,
    }
    return Settings(**{**base, **overrides})


@pytest.fixture
def client(tmp_path: Path, detecting_encoder: Encoder) -> Iterator[TestClient]:
    app = create_app(api_settings(tmp_path, model=str(detecting_encoder.spec.path)), detecting_encoder)
    with TestClient(app) as c:
        yield c


def as_(who: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[who]}


def error(response: Any) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def test_ingest_search_delete_and_jobs(client: TestClient) -> None:
    r = client.post("/documents", json={"documents": DOCS}, headers=as_("admin"))
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running", "done")
    job_id = r.json()["id"]
    for _ in range(200):
        job = client.get(f"/jobs/{job_id}", headers=as_("admin")).json()
        if job["status"] == "done":
            break
    assert job["accepted"] == 2 and job["written"] == 2 and job["errors"] == []

    r = client.post("/search", json={"query": "old mill bridge", "k": 5, "language": "en"}, headers=as_("admin"))
    assert r.status_code == 200
    result = r.json()
    assert result["hits"][0]["document_id"] == "river" and result["hits"][0]["text"].startswith("The river")
    assert result["language"] == {
        "code": "en",
        "adapter": "en_XX",
        "source": "given",
        "confidence": None,
        "fallback": False,
        "reason": None,
    }
    assert set(result["timings_ms"]) == {"encode", "search"}

    r = client.post("/search", json={"query": "pain", "filter": {"metadata.topic": "food"}}, headers=as_("admin"))
    assert [h["document_id"] for h in r.json()["hits"]] == ["pain"] and r.json()["hits"][0]["metadata"] == {
        "topic": "food"
    }

    again = client.post("/documents?wait=true", json=DOCS[0], headers=as_("admin")).json()  # one document, unchanged
    assert again["status"] == "done" and again["skipped_unchanged"] == 1 and again["encoded"] == 0

    r = client.delete("/documents/river?wait=true", headers={"Authorization": f"Bearer {KEYS['admin']}"})
    assert r.status_code == 200 and r.json()["deleted"] == 1
    hits = client.post("/search", json={"query": "old mill bridge"}, headers=as_("admin")).json()["hits"]
    assert [h["document_id"] for h in hits] == ["pain"]


def test_search_answers_documents_or_chunks_by_page(client: TestClient) -> None:
    long = {
        "id": "long",
        "text": " ".join(f"The old mill {i} turns by the river." for i in range(25)),
        "language": "en",
    }
    assert client.post("/documents?wait=true", json={"documents": [long, *DOCS]}, headers=as_("admin")).is_success
    body = {"query": "old mill river", "language": "en", "chunks_per_document": 3}
    hits = client.post("/search", json=body, headers=as_("admin")).json()["hits"]
    assert sorted(h["document_id"] for h in hits) == ["long", "pain", "river"]  # each document once
    top = hits[0]
    assert top["document_id"] == "long" and len(top["other_chunks"]) == 2
    assert all(o["score"] <= top["score"] and o["chunk"] != top["chunk"] for o in top["other_chunks"])
    chunks = client.post("/search", json={**body, "group": "chunk", "k": 5}, headers=as_("admin")).json()["hits"]
    assert [h["document_id"] for h in chunks] == ["long"] * 5 and all(h["other_chunks"] == [] for h in chunks)
    page = {"query": "old mill river", "language": "en", "k": 1, "offset": 1}
    second = client.post("/search", json=page, headers=as_("admin")).json()["hits"]
    assert [h["document_id"] for h in second] == [hits[1]["document_id"]]
    above = {**page, "offset": 0, "score_threshold": top["score"] + 1}
    assert client.post("/search", json=above, headers=as_("admin")).json()["hits"] == []


def test_search_batch_keeps_query_order(client: TestClient) -> None:
    client.post("/documents?wait=true", json={"documents": DOCS}, headers=as_("admin"))
    body = {"queries": ["pain four", "river bridge"], "languages": ["fr", None], "k": 1}
    results = client.post("/search/batch", json=body, headers=as_("admin")).json()["results"]
    assert [r["hits"][0]["document_id"] for r in results] == ["pain", "river"]
    assert [r["language"]["source"] for r in results] == ["given", "detected"]


def test_language_hints_and_accept_language_reach_the_detection(client: TestClient) -> None:
    """An unsure query takes the request's hint, else Accept-Language; a bad hint is a named 422."""
    client.post("/documents?wait=true", json={"documents": DOCS}, headers=as_("admin"))
    ask = {"query": "vacunas", "k": 1}
    plain = client.post("/search", json=ask, headers=as_("admin")).json()["language"]
    assert plain["source"] == "detected" and plain["code"] == "es" and plain["confidence"] < 0.6
    hinted = client.post("/search", json={**ask, "language_hint": "fr"}, headers=as_("admin")).json()["language"]
    assert (hinted["source"], hinted["adapter"]) == ("hint", "fr_XX")
    browser = {**as_("admin"), "Accept-Language": "hu-HU, fr;q=0.8"}  # Hungarian: not plausible for "vacunas"
    accepted = client.post("/search", json=ask, headers=browser).json()["language"]
    assert (accepted["source"], accepted["adapter"]) == ("hint", "fr_XX")
    allowed = client.post("/search", json={**ask, "allowed_languages": ["fr"]}, headers=browser).json()["language"]
    assert (allowed["adapter"], allowed["confidence"]) == ("fr_XX", 1.0)  # the only language it may be in
    batch = {"queries": ["vacunas", "river bridge"], "languages": [None, "en"], "language_hint": "es"}
    sources = [
        r["language"]["source"]
        for r in client.post("/search/batch", json=batch, headers=as_("admin")).json()["results"]
    ]
    assert sources == ["hint", "given"]
    status, code, message = error(
        client.post("/search", json={**ask, "language_hint": "klingon"}, headers=as_("admin"))
    )[:3]
    assert (status, code) == (422, "invalid_input") and "language_hint: 'klingon' is not a language code" in message


def test_api_keys(client: TestClient) -> None:
    assert error(client.post("/search", json={"query": "x"}))[:2] == (401, "missing_api_key")
    assert error(client.post("/search", json={"query": "x"}, headers={"X-API-Key": "xms_wrong"}))[:2] == (
        401,
        "invalid_api_key",
    )
    assert client.get("/health").status_code == 200  # liveness and metrics need no key
    assert client.get("/metrics").status_code == 200


def test_a_tenant_key_reads_and_writes_only_its_tenant(client: TestClient) -> None:
    shared = {"id": "shared", "text": "The harbour crane lifts containers.", "language": "en"}
    acme_job = client.post("/documents?wait=true", json=shared, headers=as_("acme")).json()
    client.post("/documents?wait=true", json={**shared, "text": "Globex builds rockets."}, headers=as_("globex"))
    assert acme_job["tenant"] == "acme"

    def ids(who: str, body: dict[str, Any]) -> list[tuple[str, str | None]]:
        hits = client.post("/search", json={"query": "harbour crane", **body}, headers=as_(who)).json()["hits"]
        return [(h["document_id"], h["tenant"]) for h in hits]

    assert ids("acme", {}) == [("shared", "acme")]  # the same id in two tenants: two documents
    assert ids("acme", {"filter": {"tenant": "globex"}}) == []  # a filter cannot widen the scope
    assert ids("acme", {"filter": {"tenant": ["acme", "globex"]}}) == [("shared", "acme")]
    assert sorted(ids("admin", {})) == [("shared", "acme"), ("shared", "globex")]

    other = {"id": "x", "text": "Hello there.", "tenant": "globex"}
    assert error(client.post("/documents", json=other, headers=as_("acme")))[:2] == (403, "tenant_forbidden")
    assert error(client.delete("/documents/shared?tenant=globex", headers=as_("acme")))[:2] == (403, "tenant_forbidden")
    globex_job = client.post("/documents", json={"id": "g", "text": "Rockets."}, headers=as_("globex")).json()["id"]
    assert error(client.get(f"/jobs/{globex_job}", headers=as_("acme")))[:2] == (404, "job_not_found")

    client.delete("/documents/shared?wait=true", headers=as_("acme"))
    assert sorted(ids("admin", {})) == [("g", "globex"), ("shared", "globex")]  # jobs run in order


def test_limits(client: TestClient) -> None:
    many = {"documents": [{"id": str(i), "text": "t"} for i in range(6)]}
    assert error(client.post("/documents", json=many, headers=as_("admin")))[:2] == (413, "too_many_documents")
    huge = {"id": "h", "text": "x" * 5000}
    assert error(client.post("/documents", json=huge, headers=as_("admin")))[:2] == (413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'{"id": "h", "text": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    streamed = client.post("/documents", content=chunks(), headers={**as_("admin"), "content-type": "application/json"})
    assert error(streamed)[:2] == (413, "body_too_large")
    long_doc = {"id": "l", "text": "word " * 300}
    status, code, message = error(client.post("/documents", json=long_doc, headers=as_("admin")))
    assert (status, code) == (422, "invalid_documents") and "over the limit of 1000" in message
    status, code, message = error(client.post("/search", json={"query": "q", "k": 51}, headers=as_("admin")))
    assert (status, code) == (422, "invalid_input") and "1 to 50" in message
    status, code, message = error(client.post("/search", json={"query": "q" * 201}, headers=as_("admin")))
    assert (status, code) == (422, "invalid_input") and "over the limit of 200" in message
    batch = {"queries": ["a", "b", "c", "d"]}
    assert error(client.post("/search/batch", json=batch, headers=as_("admin")))[:2] == (413, "too_many_queries")
    deep = {"query": "q", "k": 10, "offset": 45}
    status, code, message = error(client.post("/search", json=deep, headers=as_("admin")))
    assert (status, code) == (422, "invalid_input") and "offset + k is 55; results end at most 50 deep" in message


def test_bad_requests_get_named_errors(client: TestClient) -> None:
    headers = {**as_("admin"), "content-type": "application/json"}
    assert error(client.post("/search", content=b'{"query": ', headers=headers))[:2] == (400, "invalid_json")
    status, code, message = error(client.post("/search", json={"query": "x", "k": "many"}, headers=as_("admin")))
    assert (status, code) == (422, "invalid_request") and "body.k" in message
    status, code, message = error(client.post("/documents", json={"id": "a", "text": "  "}, headers=as_("admin")))
    assert (status, code) == (422, "invalid_documents") and "text is empty" in message
    huge = {"id": "a", "text": "t", "metadata": {"n": [2**64]}}
    status, code, message = error(client.post("/documents", json=huge, headers=as_("admin")))
    assert (status, code) == (422, "invalid_documents") and "does not fit in 64 bits" in message
    blank = {"documents": [{"id": "a", "text": "fine"}, {"id": "b", "text": "\n "}]}
    body = client.post("/documents", json=blank, headers=as_("admin")).json()["error"]
    assert body["code"] == "invalid_documents" and "Value error" not in body["message"]
    assert body["details"] == [{"location": "document 1", "reason": "text: text is empty or only whitespace"}]
    wrong_type = client.post("/documents", json={"documents": [{"id": 3, "text": "t"}]}, headers=as_("admin"))
    assert error(wrong_type)[:2] == (422, "invalid_request") and "body.documents.0.id" in error(wrong_type)[2]
    status, code, message = error(
        client.post("/search", json={"query": "x", "filter": {"colour": "red"}}, headers=as_("admin"))
    )
    assert (status, code) == (422, "invalid_input") and "'colour'" in message
    status, code, message = error(client.post("/search", json={"query": "x", "language": "?!"}, headers=as_("admin")))
    assert status == 422 and code in ("invalid_input", "unknown_language") and "?!" in message
    batch = {"queries": ["a", "b"], "languages": ["en"]}
    assert error(client.post("/search/batch", json=batch, headers=as_("admin")))[:2] == (422, "invalid_input")
    assert error(client.get("/jobs/nope", headers=as_("admin")))[:2] == (404, "job_not_found")
    assert error(client.get("/nowhere"))[:2] == (404, "not_found")


def test_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/ready").json() == {"ready": True, "mode": "embedded", "checks": {"model": "ok", "store": "ok"}}
    client.post("/documents?wait=true", json={"documents": DOCS}, headers=as_("admin"))
    client.post("/search", json={"query": "mill"}, headers=as_("admin"))
    text = client.get("/metrics").text
    for needle in (
        'xmsearch_http_requests_total{method="POST",route="/search",status="200"}',
        'xmsearch_http_request_seconds_bucket{le="0.001",method="POST",route="/documents"}',
        'xmsearch_documents_total{outcome="accepted"}',
        'xmsearch_documents_total{outcome="indexed"}',
        'xmsearch_encoder_batch_size_count{kind="query"}',
        "xmsearch_queue_depth 0.0",
    ):
        assert needle in text, needle


def test_the_openapi_document_names_every_field_and_error(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if path not in ("/health", "/ready", "/metrics"):
                assert {"401", "422"} <= set(op["responses"]), (method, path)
    for name in ("SearchIn", "SearchBatchIn", "JobOut", "Document", "LanguageOut"):
        for field, schema in spec["components"]["schemas"][name]["properties"].items():
            assert schema.get("description"), f"{name}.{field} has no description"


def test_keys_are_required_unless_disabled(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="XMSEARCH_API_KEYS"):
        create_app(api_settings(tmp_path, api_keys=[]))
    assert create_app(api_settings(tmp_path, api_keys=[], api_auth="disabled")) is not None


def test_api_key_command_makes_a_working_entry() -> None:
    from typer.testing import CliRunner

    from xmsearch.cli import app

    out = CliRunner().invoke(app, ["api-key", "--name", "portal", "--tenant", "acme", "--json"])
    made = json.loads(out.stdout)
    assert ApiKey(**made["entry"]).tenant == "acme" and made["entry"]["sha256"] == digest(made["key"])


@pytest.mark.parametrize(("doc_id", "path"), [("notes/2024/a.md", "notes/2024/a.md"), ("a\nb", "a%0Ab")])
def test_ids_with_slashes_or_line_breaks_can_be_deleted(client: TestClient, doc_id: str, path: str) -> None:
    doc = {"id": doc_id, "text": "Notes about the harbour.", "language": "en"}
    client.post("/documents?wait=true", json=doc, headers=as_("admin"))
    deleted = client.delete(f"/documents/{path}?wait=true", headers=as_("admin"))
    assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
    assert client.post("/search", json={"query": "harbour"}, headers=as_("admin")).json()["hits"] == []


def test_one_language_code_rule_for_payloads_and_answers(client: TestClient) -> None:
    """A language without an adapter (Swedish here) is encoded with the fallback adapter; the stored
    chunk and the search answer both report the text's own language, and the answer names the adapter."""
    doc = {"id": "sv", "text": "Floden rinner förbi den gamla kvarnen.", "language": "sv"}
    assert client.post("/documents?wait=true", json=doc, headers=as_("admin")).status_code == 200
    r = client.post("/search", json={"query": "floden kvarnen", "language": "sv-SE", "k": 1}, headers=as_("admin"))
    assert r.json()["language"] == {
        "code": "sv",
        "adapter": "en_XX",
        "source": "given",
        "confidence": None,
        "fallback": True,
        "reason": "language 'sv-SE' has no adapter in this checkpoint",
    }
    assert r.json()["hits"][0]["document_id"] == "sv" and r.json()["hits"][0]["language"] == "sv"


def test_deletes_count_what_was_removed_and_an_unknown_document_is_a_404(client: TestClient) -> None:
    client.post("/documents?wait=true", json={"documents": DOCS}, headers=as_("admin"))
    status, code, message = error(client.delete("/documents/nope?wait=true", headers=as_("admin")))
    assert (status, code) == (404, "document_not_found") and "no document 'nope'" in message
    status, code, _ = error(client.delete("/documents/river?wait=true", headers=as_("acme")))
    assert (status, code) == (404, "document_not_found")  # acme has no 'river': the admin's is untouched
    gone = client.delete("/documents/river?wait=true", headers=as_("admin")).json()
    assert gone["deleted"] == 1 and gone["missing"] == 0


def test_a_queued_job_answers_where_to_follow_it(client: TestClient) -> None:
    r = client.post("/documents", json=DOCS[0], headers=as_("admin"))
    assert r.status_code == 202 and r.headers["location"] == f"/jobs/{r.json()['id']}"
    assert client.get(r.headers["location"], headers=as_("admin")).json()["id"] == r.json()["id"]


def test_recent_jobs_newest_first_and_only_a_tenant_s_own(client: TestClient) -> None:
    first = client.post("/documents", json=DOCS[0], headers=as_("admin")).json()["id"]
    second = client.post("/documents", json=DOCS[1], headers=as_("admin")).json()["id"]
    acme = client.post("/documents", json={"id": "a", "text": "Hello."}, headers=as_("acme")).json()["id"]
    listed = client.get("/jobs?limit=3", headers=as_("admin")).json()["jobs"]
    assert [j["id"] for j in listed] == [acme, second, first] and listed[0]["created"] >= listed[2]["created"]
    assert [j["id"] for j in client.get("/jobs", headers=as_("acme")).json()["jobs"]] == [acme]


def test_an_api_that_could_not_search_refuses_to_start(tmp_path: Path) -> None:
    """Distributed mode on an embedded store: the workers own it, so the API would only ever answer
    store_locked while saying it is ready."""
    with pytest.raises(ConfigurationError, match="set XMSEARCH_QDRANT_URL to a Qdrant server"):
        create_app(api_settings(tmp_path, broker_url="redis://127.0.0.1:9/0"))
    create_app(api_settings(tmp_path, broker_url="redis://127.0.0.1:9/0", qdrant_url="http://127.0.0.1:9"))
    with pytest.raises(ConfigurationError, match="makes this process a client of another API; unset it to serve"):
        create_app(api_settings(tmp_path, api_url="http://127.0.0.1:9"))


def test_a_stored_document_can_be_read_back(client: TestClient) -> None:
    client.post("/documents?wait=true", json={"documents": DOCS}, headers=as_("admin"))
    client.post("/documents?wait=true", json={"id": "mine", "text": "Hello there."}, headers=as_("acme"))
    doc = client.get("/documents/pain", headers=as_("admin")).json()
    assert doc == {
        "id": "pain",
        "tenant": None,
        "metadata": {"topic": "food"},
        "text": DOCS[1]["text"],
        "chunks": [{"chunk": 0, "text": DOCS[1]["text"], "language": "fr"}],
    }
    assert client.get("/documents/mine", headers=as_("acme")).json()["tenant"] == "acme"
    assert error(client.get("/documents/mine", headers=as_("globex")))[:2] == (404, "document_not_found")
    assert error(client.get("/documents/pain?tenant=acme", headers=as_("globex")))[:2] == (403, "tenant_forbidden")


def test_documents_are_listed_and_counted_per_tenant(client: TestClient) -> None:
    assert client.get("/documents", headers=as_("admin")).json() == {"documents": [], "total": 0, "next": None}
    client.post("/documents?wait=true", json={"documents": DOCS}, headers=as_("admin"))
    mine = [{"id": f"m{i}", "text": f"Note {i}."} for i in range(3)]
    client.post("/documents?wait=true", json={"documents": mine}, headers=as_("acme"))
    everything = client.get("/documents", headers=as_("admin")).json()
    assert everything["total"] == 5 and everything["next"] is None
    assert sorted(d["id"] for d in everything["documents"]) == ["m0", "m1", "m2", "pain", "river"]
    pages, cursor = [], None
    while True:
        page = client.get(
            "/documents", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=as_("acme")
        )
        body = page.json()
        assert body["total"] == 3 and all(d["tenant"] == "acme" for d in body["documents"])
        pages.append([d["id"] for d in body["documents"]])
        if (cursor := body["next"]) is None:
            break
    assert len(pages) == 2 and sorted(i for page in pages for i in page) == ["m0", "m1", "m2"]
    assert client.get("/documents?tenant=acme", headers=as_("admin")).json()["total"] == 3
    assert error(client.get("/documents?tenant=acme", headers=as_("globex")))[:2] == (403, "tenant_forbidden")
    assert error(client.get("/documents?cursor=nope", headers=as_("admin")))[:2] == (422, "invalid_input")
    status = client.get("/status", headers=as_("admin")).json()
    assert (status["points"], status["documents"], status["backend"]) == (5, 5, "edge")
    assert (
        status["spec"]["schema"] == 3
        and status["spec"]["pooled"]
        and status["version"] in status["versions"]
        and status["size_bytes"] > 0
    )
    assert client.get("/status", headers=as_("acme")).json()["documents"] == 3


def test_the_docs_pages_need_no_network(client: TestClient) -> None:
    """Swagger UI and ReDoc load their scripts and styles from this server, not a CDN."""
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
        assert assets and all(a.startswith("/") and "://" not in a for a in assets), (page, assets)
        for asset in assets:
            response = client.get(asset)
            assert response.status_code == 200 and len(response.content) > 1000, asset


def test_the_cli_talks_to_a_running_api(tmp_path: Path, detecting_encoder: Encoder) -> None:
    """--url: the commands work while the API owns the embedded store; its answers and errors are the
    CLI's (JSON shapes, one-line errors, exit codes)."""
    from typer.testing import CliRunner

    from tests.helpers import serving
    from xmsearch.cli import app

    runner = CliRunner()
    settings = api_settings(tmp_path, model=str(detecting_encoder.spec.path), max_document_chars=60)
    docs = tmp_path / "docs.jsonl"
    lines = [*(json.dumps(d) for d in DOCS), "{broken", json.dumps({"id": "long", "text": "word " * 20})]
    docs.write_text("\n".join(lines) + "\n")
    with serving(create_app(settings, detecting_encoder)) as url:

        def cli(*args: str, key: str = "admin") -> Any:
            return runner.invoke(app, ["--url", url, "--api-key", KEYS[key], *args], env={"XMSEARCH_DATA_DIR": "x"})

        ingested = cli("ingest", str(docs), "--json", "--rejects", str(tmp_path / "rejects.jsonl"))
        job = json.loads(ingested.stdout)
        assert ingested.exit_code == 3 and job["status"] == "done", ingested.output  # done, with rejects
        assert (job["accepted"], job["processed"], job["rejected"], job["written"]) == (2, 2, 2, 2)
        rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
        assert [r["location"] for r in rejects] == ["line 3", "document 'long'"]
        assert "over the limit of 60" in rejects[1]["reason"]  # the server's limit, stricter than this one's
        found = json.loads(cli("search", "old mill bridge", "--lang", "en", "--k", "1", "--json").stdout)
        assert [h["document_id"] for h in found["hits"]] == ["river"] and found["language"]["adapter"] == "en_XX"
        assert "river#0 [en]" in cli("search", "old mill bridge", "--lang", "en").stdout
        assert json.loads(cli("status", "--json").stdout)["documents"] == 2
        assert json.loads(cli("documents", "--json").stdout)["total"] == 2
        assert cli("documents", "--json", key="acme").stdout.count('"id"') == 0  # a bound key sees its own
        assert json.loads(cli("jobs", "--json").stdout)[0]["accepted"] >= 1
        gone = cli("delete", "river", "nope", "--json")
        assert gone.exit_code == 3 and json.loads(gone.stdout)["missing"] == 1
        refused = runner.invoke(app, ["--url", url, "--api-key", "xms_wrong", "status"]).exception
        assert isinstance(refused, PermanentError) and "answered 401 invalid_api_key" in str(refused)  # exit code 1
    down = runner.invoke(app, ["--url", url, "status"]).exception
    assert isinstance(down, TransientError) and f"the API at {url} did not answer" in str(down)  # exit code 4


def test_versions_are_listed_and_dropped_by_administrator_keys_only(client: TestClient) -> None:
    client.post("/documents?wait=true", json={"documents": DOCS}, headers=as_("admin"))
    listed = client.get("/collections", headers=as_("admin")).json()
    [version] = listed["versions"]
    assert version["current"] and version["documents"] == len(DOCS) and version["points"] >= len(DOCS)
    assert {"model_id", "model", "precision", "chunk_overlap", "datatype"} <= set(version["built_with"])
    assert error(client.get("/collections", headers=as_("acme")))[:2] == (403, "admin_required")
    assert error(client.delete(f"/collections/{version['version']}", headers=as_("acme")))[:2] == (
        403,
        "admin_required",
    )
    current = error(client.delete(f"/collections/{version['version']}", headers=as_("admin")))
    assert current[:2] == (422, "invalid_input") and "the version searches use" in current[2]
    assert error(client.delete("/collections/nope-v7", headers=as_("admin")))[:2] == (404, "collection_not_found")

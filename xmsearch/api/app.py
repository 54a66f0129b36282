"""The FastAPI application: routes, the service it wraps, and its start-up and shutdown.

Embedded mode: this process owns the store; one Retriever and one Indexer share it, and submitted
jobs are indexed by a background thread. Distributed mode: documents go to the workers through Redis,
and searches go to the Qdrant server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from ingest.pipeline import Indexer
from retriever.encoder import Encoder
from retriever.filters import owned_by
from retriever.search import Retriever, assemble
from retriever.settings import Settings, get_settings
from xmsearch.api import errors
from xmsearch.api.auth import Caller, KeyRing, Principal
from xmsearch.api.errors import COMMON_RESPONSES, ApiError, ErrorBody
from xmsearch.api.middleware import LimitsAndMetrics
from xmsearch.api.models import (
    DocumentBatch,
    DocumentsIn,
    HealthOut,
    JobOut,
    ReadyOut,
    SearchBatchIn,
    SearchBatchOut,
    SearchIn,
    SearchOut,
)
from xmsearch.ingestor import Ingestor

QUEUE_DEPTH = Gauge("xmsearch_queue_depth", "Work waiting: jobs not started (embedded) or broker tasks (distributed).")
WAIT_LIMIT_S = 600.0  # the longest ?wait=true holds a request

DESCRIPTION = """Multilingual late-interaction search (ColBERT-XM multivectors in Qdrant).

Send an API key as `X-API-Key: <key>` or `Authorization: Bearer <key>`. A key bound to a tenant
reads and writes only that tenant's documents, whatever the request says. Errors are JSON:
`{"error": {"code": "...", "message": "...", "details": [...]}}` with a stable `code`.
"""


@dataclass
class Service:
    """What the routes use: the retriever, the ingestor, and the mode."""

    settings: Settings
    retriever: Retriever
    ingestor: Ingestor

    @classmethod
    def start(cls, settings: Settings, encoder: Encoder | None = None) -> Service:
        parts = assemble(settings, encoder)
        retriever = Retriever(*parts)
        if settings.broker_url:
            return cls(settings, retriever, Ingestor.from_settings(settings))
        retriever.store.open(create=True)  # this process owns the embedded store from now on
        return cls(settings, retriever, Ingestor.from_settings(settings, indexer=Indexer(*parts)))

    def checks(self) -> dict[str, str]:
        out = {"model": "ok", "store": "ok"}
        try:
            self.retriever.store.versions()
        except Exception as exc:
            out["store"] = f"{type(exc).__name__}: {exc}"
        if self.ingestor.mode == "distributed":
            out["broker"] = "ok"
        try:
            self.ingestor.check()
        except Exception as exc:
            out["broker" if self.ingestor.mode == "distributed" else "indexer"] = f"{type(exc).__name__}: {exc}"
        return out

    def close(self) -> None:
        self.ingestor.close()  # finishes the accepted jobs first
        self.retriever.close()


def create_app(settings: Settings | None = None, encoder: Encoder | None = None) -> FastAPI:
    """The API for these settings; the model loads (or `encoder` is used) when the app starts."""
    settings = settings or get_settings()
    keys = KeyRing(settings)
    if keys.required and not keys.keys:
        raise errors.ConfigurationError(
            "no API keys: set XMSEARCH_API_KEYS (make one with `xmsearch api-key`), or XMSEARCH_API_AUTH=disabled "
            "for local use"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await asyncio.to_thread(Service.start, settings, encoder)
        app.state.service = service
        QUEUE_DEPTH.set_function(service.ingestor.depth)
        try:
            yield
        finally:
            await asyncio.to_thread(service.close)

    app = FastAPI(title="xmsearch", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.keys = keys
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(LimitsAndMetrics, max_body=settings.api_max_body_bytes)
    _routes(app, settings)
    return app


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _visible(job: dict[str, Any] | None, caller: Principal, job_id: str) -> JobOut:
    if job is None or (caller.tenant is not None and job.get("tenant") != caller.tenant):
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")  # another tenant's job is not disclosed
    return JobOut.model_validate(job)


def _routes(app: FastAPI, settings: Settings) -> None:
    write = {**COMMON_RESPONSES, 403: {"model": ErrorBody, "description": "tenant_forbidden"}}
    read = {**COMMON_RESPONSES, 404: {"model": ErrorBody, "description": "collection_not_found"}}

    @app.post("/documents", status_code=202, responses={**write, 200: {"model": JobOut}}, tags=["ingest"])
    def post_documents(
        body: DocumentsIn,
        caller: Caller,
        request: Request,
        response: Response,
        wait: Annotated[bool, Query(description="Answer when the job is done (200), not when queued (202).")] = False,
    ) -> JobOut:
        """Index one document or a batch as one job; unchanged documents are skipped. An invalid document
        refuses the whole request (422 invalid_documents, naming each one)."""
        docs = body.documents if isinstance(body, DocumentBatch) else [body]
        if len(docs) > settings.api_max_documents:
            raise ApiError(
                413, "too_many_documents", f"{len(docs)} documents; send at most {settings.api_max_documents}"
            )
        ingestor = _service(request).ingestor
        job_id = ingestor.submit(docs, tenant=caller.tenant, source="api")
        return _job_answer(ingestor, job_id, wait, response)

    @app.delete(
        "/documents/{document_id:path}", status_code=202, responses={**write, 200: {"model": JobOut}}, tags=["ingest"]
    )
    def delete_document(
        document_id: str,
        caller: Caller,
        request: Request,
        response: Response,
        tenant: Annotated[str | None, Query(description="The document's tenant (a bound key: its own).")] = None,
        wait: Annotated[bool, Query(description="Answer when the delete is done (200).")] = False,
    ) -> JobOut:
        """Remove every chunk of one document (of one tenant); ids may hold slashes (folder sources)."""
        if caller.tenant is not None and tenant not in (None, caller.tenant):
            raise ApiError(403, "tenant_forbidden", f"this key may not delete documents of tenant {tenant!r}")
        ingestor = _service(request).ingestor
        job_id = ingestor.delete([document_id], caller.tenant if caller.tenant is not None else tenant)
        return _job_answer(ingestor, job_id, wait, response)

    @app.get("/jobs/{job_id}", responses={**COMMON_RESPONSES, 404: {"model": ErrorBody}}, tags=["ingest"])
    def get_job(job_id: str, caller: Caller, request: Request) -> JobOut:
        """A job's status and counts (a tenant-bound key sees only its own jobs)."""
        return _visible(_service(request).ingestor.job(job_id), caller, job_id)

    @app.post("/search", responses=read, tags=["search"])
    def search(body: SearchIn, caller: Caller, request: Request) -> SearchOut:
        """The k best passages for a query in any language, encoded with its language's adapter."""
        scope = [] if caller.tenant is None else [owned_by(caller.tenant)]
        result = _service(request).retriever.search(body.query, body.k, body.language, body.filter, scope)
        return SearchOut.of(result, given=body.language is not None)

    @app.post("/search/batch", responses=read, tags=["search"])
    def search_batch(body: SearchBatchIn, caller: Caller, request: Request) -> SearchBatchOut:
        """Several queries in one encoder pass and one store round trip."""
        if len(body.queries) > settings.api_max_queries:
            raise ApiError(
                413, "too_many_queries", f"{len(body.queries)} queries; send at most {settings.api_max_queries}"
            )
        if body.languages is not None and len(body.languages) != len(body.queries):
            raise ApiError(422, "invalid_input", f"{len(body.languages)} languages for {len(body.queries)} queries")
        scope = [] if caller.tenant is None else [owned_by(caller.tenant)]
        results = _service(request).retriever.search_batch(body.queries, body.k, body.languages, body.filter, scope)
        given = body.languages or [None] * len(results)
        return SearchBatchOut(
            results=[SearchOut.of(r, lang is not None) for r, lang in zip(results, given, strict=True)]
        )

    @app.get("/health", tags=["operations"])
    def health() -> HealthOut:
        """Alive (answers without touching the model or the store; no key needed)."""
        return HealthOut()

    @app.get("/ready", responses={503: {"model": ReadyOut}}, tags=["operations"])
    def ready(request: Request) -> JSONResponse:
        """Model loaded, store and (distributed) broker reachable; 503 with the failing check otherwise."""
        service: Service | None = getattr(request.app.state, "service", None)
        if service is None:
            body = ReadyOut(
                ready=False, mode="distributed" if settings.broker_url else "embedded", checks={"model": "loading"}
            )
        else:
            checks = service.checks()
            body = ReadyOut(ready=all(v == "ok" for v in checks.values()), mode=service.ingestor.mode, checks=checks)  # type: ignore[arg-type]
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics: requests, latencies, documents, queue depth, encoder batch sizes (no key needed)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _job_answer(ingestor: Ingestor, job_id: str, wait: bool, response: Response) -> JobOut:
    if not wait:
        return JobOut.model_validate(ingestor.job(job_id))
    response.status_code = 200
    try:
        return JobOut.model_validate(ingestor.wait(job_id, WAIT_LIMIT_S))
    except TimeoutError:
        response.status_code = 202
        return JobOut.model_validate(ingestor.job(job_id))

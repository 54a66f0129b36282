"""The routes of the HTTP API: what each one takes, answers and refuses (the OpenAPI document is
generated from them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.convertors import Convertor, register_url_convertor

from xmsearch.api.auth import Caller, Principal
from xmsearch.api.errors import COMMON_RESPONSES, ApiError, ErrorBody
from xmsearch.api.models import (
    CollectionsOut,
    DocumentBatch,
    DocumentOut,
    DocumentsIn,
    DocumentsOut,
    DocumentSummaryOut,
    HealthOut,
    JobOut,
    JobsOut,
    ReadyOut,
    ReindexIn,
    SearchBatchIn,
    SearchBatchOut,
    SearchIn,
    SearchOut,
    StatusOut,
    VersionOut,
)
from xmsearch.api.service import Service
from xmsearch.errors import no_document
from xmsearch.ingest.reindex_state import ReindexState
from xmsearch.ingestor import Ingestor, mode_for

WAIT_LIMIT_S = 600.0  # the longest ?wait=true holds a request


class DocumentIdConvertor(Convertor[str]):
    """Any document id in a path, slashes and line breaks included (ids come from users and folders)."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("document_id", DocumentIdConvertor())


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _visible(job: dict[str, Any] | None, caller: Principal, job_id: str) -> JobOut:
    if job is None or (caller.tenant is not None and job.get("tenant") != caller.tenant):
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")  # another tenant's job is not disclosed
    return JobOut.model_validate(job)


FORBIDDEN: dict[int | str, dict[str, Any]] = {403: {"model": ErrorBody, "description": "tenant_forbidden"}}
WRITE = {**COMMON_RESPONSES, **FORBIDDEN}
READ = {**COMMON_RESPONSES, 404: {"model": ErrorBody, "description": "collection_not_found"}}
ADMIN: dict[int | str, dict[str, Any]] = {403: {"model": ErrorBody, "description": "admin_required"}}
router = APIRouter()


@router.post("/documents", status_code=202, responses={**WRITE, 200: {"model": JobOut}}, tags=["ingest"])
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
    service = _service(request)
    most = service.settings.api_max_documents
    if len(docs) > most:
        raise ApiError(413, "too_many_documents", f"{len(docs)} documents; send at most {most}")
    ingestor = service.ingestor
    job_id = ingestor.submit(docs, tenant=caller.tenant, source="api")
    return _job_answer(ingestor, job_id, wait, response)


@router.delete(
    "/documents/{document_id:document_id}",
    status_code=202,
    responses={**WRITE, 200: {"model": JobOut}, 404: {"model": ErrorBody, "description": "document_not_found"}},
    tags=["ingest"],
)
def delete_document(
    document_id: str,
    caller: Caller,
    request: Request,
    response: Response,
    tenant: Annotated[str | None, Query(description="The document's tenant (a bound key: its own).")] = None,
    wait: Annotated[bool, Query(description="Answer when the delete is done (200).")] = False,
) -> JobOut:
    """Remove every chunk of one document (of one tenant); ids may hold slashes (folder sources). With
    `wait=true`, a document that is not there is a 404 (document_not_found)."""
    owner = caller.owner(tenant, "delete")
    ingestor = _service(request).ingestor
    job = _job_answer(ingestor, ingestor.delete([document_id], owner), wait, response)
    if job.missing:
        raise ApiError(404, "document_not_found", no_document(document_id, owner))
    return job


@router.get(
    "/documents/{document_id:document_id}",
    responses={
        **READ,
        **FORBIDDEN,
        404: {"model": ErrorBody, "description": "document_not_found, collection_not_found"},
    },
    tags=["ingest"],
)
def get_document(
    document_id: str,
    caller: Caller,
    request: Request,
    tenant: Annotated[str | None, Query(description="The document's tenant (a bound key: its own).")] = None,
) -> DocumentOut:
    """One stored document: its chunks (text, language), tenant and metadata."""
    owner = caller.owner(tenant, "read")
    points = _service(request).retriever.document(document_id, owner)
    if not points:
        raise ApiError(404, "document_not_found", no_document(document_id, owner))
    return DocumentOut.of(points)


@router.get(
    "/documents",
    responses={**READ, **FORBIDDEN},
    tags=["ingest"],
)
def list_documents(
    caller: Caller,
    request: Request,
    tenant: Annotated[
        str | None, Query(description="Only this tenant's documents (a bound key: its own; absent: every tenant's).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Documents in this page.")] = 100,
    cursor: Annotated[str | None, Query(description="Where the page starts: the `next` of the page before.")] = None,
) -> DocumentsOut:
    """The stored documents, page by page (in storage order, not alphabetical), and how many there are."""
    documents, total, after = _service(request).retriever.documents(caller.within(tenant, "list"), limit, cursor)
    return DocumentsOut(documents=[DocumentSummaryOut.of(p) for p in documents], total=total, next=after)


@router.get("/status", responses={**READ, **FORBIDDEN}, tags=["operations"])
def status(
    caller: Caller,
    request: Request,
    tenant: Annotated[
        str | None, Query(description="Count only this tenant's points and documents (a bound key: its own).")
    ] = None,
) -> StatusOut:
    """The collection: where it is, its versions, what it was built with, its points and documents
    (of one tenant, if asked for; a bound key: its own) and size on disk."""
    return StatusOut.model_validate(_service(request).retriever.status(caller.within(tenant, "count")))


@router.get("/collections", responses={**READ, **ADMIN}, tags=["operations"])
def collections(caller: Caller, request: Request) -> CollectionsOut:
    """Every version of the collection, oldest first: whether searches use it, what it was built with
    (model, precision, chunking, datatype, quantization, first stage), points, documents and size on
    disk. Unbound (administrator) keys only."""
    caller.require_admin("list the collection's versions")
    retriever = _service(request).retriever
    versions = [VersionOut.model_validate(v) for v in retriever.collections()]
    return CollectionsOut(collection=retriever.store.alias, versions=versions)


@router.delete(
    "/collections/{version}",
    responses={**READ, **ADMIN, 422: {"model": ErrorBody, "description": "invalid_input: the version searched"}},
    tags=["operations"],
)
def drop_collection(version: str, caller: Caller, request: Request) -> CollectionsOut:
    """Remove a version that searches do not use (the one searched is refused); answers the versions
    left. Unbound (administrator) keys only."""
    caller.require_admin("drop a version")
    _service(request).retriever.drop(version)
    return collections(caller, request)


REINDEX = {
    **COMMON_RESPONSES,
    **ADMIN,
    409: {"model": ErrorBody, "description": "reindex_running"},
}


@router.post("/reindex", status_code=202, responses=REINDEX, tags=["operations"])
def start_reindex(body: ReindexIn, caller: Caller, request: Request) -> ReindexState:
    """Rebuild every document of the collection (every tenant, as ingested) into a new version with
    another model or other index settings, in this process, while searches and writes go on; then
    verify it and swap to it, searches moving to the new model at the same moment. Follow it with
    GET /reindex. Embedded mode (the API owns the store) only for now. Unbound (administrator) keys."""
    caller.require_admin("start a reindex")
    return _service(request).start_reindex(body.changes())


@router.get(
    "/reindex", responses={**REINDEX, 404: {"model": ErrorBody, "description": "no_reindex"}}, tags=["operations"]
)
def reindex_status(caller: Caller, request: Request) -> ReindexState:
    """The reindex running, or the last one: its step, documents done of the total, rate, seconds
    left, versions, error. Unbound (administrator) keys only."""
    caller.require_admin("follow a reindex")
    state = _service(request).reindex_state()
    if state is None:
        raise ApiError(404, "no_reindex", "the collection was never reindexed")
    return state


@router.delete("/reindex", responses=REINDEX, tags=["operations"])
def cancel_reindex(caller: Caller, request: Request) -> ReindexState:
    """Stop the running reindex and drop the version it built; searches never left the current one.
    Unbound (administrator) keys only."""
    caller.require_admin("cancel a reindex")
    return _service(request).cancel_reindex()


@router.post("/reindex/rollback", status_code=202, responses=REINDEX, tags=["operations"])
def rollback(caller: Caller, request: Request) -> ReindexState:
    """Return to the version before the one searched, with its model: it is first brought up to date
    with what was written since (as a reindex: follow it with GET /reindex), then searches and writes
    move to it. 422 when there is none. Unbound (administrator) keys only."""
    caller.require_admin("roll back")
    return _service(request).rollback()


@router.get("/jobs", responses=COMMON_RESPONSES, tags=["ingest"])
def recent_jobs(
    caller: Caller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100, description="How many jobs, newest first.")] = 20,
) -> JobsOut:
    """The most recent jobs (a tenant-bound key sees only its own)."""
    jobs = _service(request).ingestor.recent(limit, caller.tenant)
    return JobsOut(jobs=[JobOut.model_validate(job) for job in jobs])


@router.get("/jobs/{job_id}", responses={**COMMON_RESPONSES, 404: {"model": ErrorBody}}, tags=["ingest"])
def get_job(job_id: str, caller: Caller, request: Request) -> JobOut:
    """A job's status and counts (a tenant-bound key sees only its own jobs)."""
    return _visible(_service(request).ingestor.job(job_id), caller, job_id)


@router.post("/search", responses=READ, tags=["search"])
def search(body: SearchIn, caller: Caller, request: Request) -> SearchOut:
    """The k best documents (each as its best chunk; or single chunks: group=chunk) for a query in any
    language, encoded with its language's adapter."""
    retriever = _service(request).retriever
    hints = body.hints(request.headers.get("accept-language"))
    result = retriever.search(body.query, body.k, body.language, body.filter, caller.scope, hints, **body.paging())
    return SearchOut.of(result)


@router.post("/search/batch", responses=READ, tags=["search"])
def search_batch(body: SearchBatchIn, caller: Caller, request: Request) -> SearchBatchOut:
    """Several queries in one encoder pass and one store round trip."""
    service = _service(request)
    most = service.settings.api_max_queries
    if len(body.queries) > most:
        raise ApiError(413, "too_many_queries", f"{len(body.queries)} queries; send at most {most}")
    if body.languages is not None and len(body.languages) != len(body.queries):
        raise ApiError(422, "invalid_input", f"{len(body.languages)} languages for {len(body.queries)} queries")
    hints = body.hints(request.headers.get("accept-language"))
    results = service.retriever.search_batch(
        body.queries, body.k, body.languages, body.filter, caller.scope, hints, **body.paging()
    )
    return SearchBatchOut(results=[SearchOut.of(r) for r in results])


@router.get("/health", tags=["operations"])
@router.head("/health", include_in_schema=False)  # load balancers that probe with HEAD
def health() -> HealthOut:
    """Alive (answers without touching the model or the store; no key needed)."""
    return HealthOut()


@router.get("/ready", responses={503: {"model": ReadyOut}}, tags=["operations"])
@router.head("/ready", include_in_schema=False)
def ready(request: Request) -> JSONResponse:
    """Model loaded, store and (distributed) broker reachable; 503 with the failing check otherwise."""
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:
        body = ReadyOut(ready=False, mode=mode_for(request.app.state.settings), checks={"model": "loading"})
    else:
        checks = service.checks()
        body = ReadyOut(ready=all(v == "ok" for v in checks.values()), mode=service.ingestor.mode, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", tags=["operations"], response_class=Response)
def metrics() -> Response:
    """Prometheus metrics: requests, latencies, documents, queue depth, encoder batch sizes (no key needed)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _job_answer(ingestor: Ingestor, job_id: str, wait: bool, response: Response) -> JobOut:
    """The job: done (200) when waited for and finished in time, else queued (202, Location: the job)."""
    if wait:
        try:
            job = ingestor.wait(job_id, WAIT_LIMIT_S)
            response.status_code = 200
            return JobOut.model_validate(job)
        except TimeoutError:
            pass
    response.status_code = 202
    response.headers["Location"] = f"/jobs/{job_id}"
    return JobOut.model_validate(ingestor.job(job_id))

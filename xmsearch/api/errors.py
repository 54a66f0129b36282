"""Errors as JSON with a stable code: `{"error": {"code": "...", "message": "...", "details": [...]}}`.

Every xmsearch error type maps to one status and code here, so the same fault always reads the same."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from xmsearch.errors import BrokerUnavailableError, InvalidDocumentsError, QueueFullError, TenantForbiddenError
from xmsearch.ingest.documents import Reject, field_reason
from xmsearch.ingest.reindex_state import ReindexRunningError, ReindexUnavailableError
from xmsearch.retriever.errors import (
    CheckpointError,
    InvalidInputError,
    PermanentError,
    TransientError,
    UnknownLanguageError,
    XmsearchError,
    plain,
)
from xmsearch.retriever.index.schema import StoreMismatchError
from xmsearch.retriever.index.stores.base import CollectionNotFoundError, StoreLockedError
from xmsearch.workers.errors import BrokerNotDurableError

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable code (see the README's table of error codes).")
    message: str = Field(description="What went wrong, naming the field, document or limit.")
    details: list[dict[str, Any]] | None = Field(None, description="Per-field or per-document problems, if any.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class ConfigurationError(PermanentError):
    """The settings do not make a safe API (no keys while keys are required)."""


class ApiError(Exception):
    """An error the API answers with its own status and code."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


# Most specific first: the first matching type names the answer.
_MAPPING: list[tuple[type[Exception], int, str]] = [
    (InvalidDocumentsError, 422, "invalid_documents"),
    (UnknownLanguageError, 422, "unknown_language"),
    (InvalidInputError, 422, "invalid_input"),
    (CheckpointError, 422, "invalid_model"),  # at request time: the model a reindex names
    (ReindexRunningError, 409, "reindex_running"),
    (ReindexUnavailableError, 409, "reindex_unavailable"),
    (TenantForbiddenError, 403, "tenant_forbidden"),
    (CollectionNotFoundError, 404, "collection_not_found"),
    (QueueFullError, 503, "queue_full"),
    (BrokerUnavailableError, 503, "broker_unavailable"),
    (StoreMismatchError, 500, "store_mismatch"),
    (BrokerNotDurableError, 500, "broker_not_durable"),
    (StoreLockedError, 503, "store_locked"),
    (TransientError, 503, "unavailable"),
    (PermanentError, 500, "server_error"),
]
_HTTP_CODES = {
    400: "invalid_json",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
}

# Documented on every route that can answer them.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid_json"},
    401: {"model": ErrorBody, "description": "missing_api_key, invalid_api_key"},
    413: {"model": ErrorBody, "description": "body_too_large, too_many_documents, too_many_queries"},
    422: {"model": ErrorBody, "description": "invalid_request, invalid_input, invalid_documents, unknown_language"},
    503: {"model": ErrorBody, "description": "unavailable, queue_full, broker_unavailable, store_locked (retry later)"},
}


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, details=details))
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


# Document fields whose value (not type or shape) is refused: answered as invalid_documents.
_CONTENT_ERRORS = {"value_error", "string_too_short", "string_too_long", "string_unicode"}


def _field(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A body location without the shape tag (`one`, `batch`) that the user never sent."""
    return (loc[0], *loc[2:]) if len(loc) > 1 and loc[0] == "body" and loc[1] in ("one", "batch") else loc


def _document_reject(error: dict[str, Any]) -> Reject | None:
    """A document-content error as the Ingestor's reject of that document; None for anything else."""
    loc = error["loc"]
    if error.get("type") not in _CONTENT_ERRORS or len(loc) < 3 or loc[0] != "body":
        return None
    if loc[1] == "one":
        index, field = 0, loc[2:]
    elif loc[1] == "batch" and len(loc) > 4 and loc[2] == "documents":
        index, field = loc[3], loc[4:]
    else:
        return None
    return Reject("api", f"document {index}", field_reason(field, error), "")


def _answer(exc: XmsearchError) -> JSONResponse:
    status, code = next(((s, c) for t, s, c in _MAPPING if isinstance(exc, t)), (500, "server_error"))
    if status >= 500 and status != 503:
        log.error("%s: %s", code, exc)
    details = None
    if isinstance(exc, InvalidDocumentsError):
        details = [{"location": r.location, "reason": r.reason} for r in exc.rejects]
    return error_response(status, code, str(exc), details)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into an ErrorBody."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(XmsearchError)
    async def _xmsearch(_: Request, exc: XmsearchError) -> JSONResponse:
        return _answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            where = next(e for e in errors if e.get("type") == "json_invalid")
            reason = where.get("ctx", {}).get("error", "")
            return error_response(400, "invalid_json", f"the body is not valid JSON: {reason}")
        invalid = [_document_reject(e) for e in errors]
        if all(invalid):  # documents of the right shape whose content is refused, as the Ingestor refuses them
            return _answer(InvalidDocumentsError([r for r in invalid if r is not None]))
        details = [{"field": ".".join(str(p) for p in _field(e["loc"])), "reason": plain(e["msg"])} for e in errors]
        shown = "; ".join(f"{d['field']}: {d['reason']}" for d in details[:5])
        return error_response(422, "invalid_request", shown, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        if code == "invalid_json":  # FastAPI's only 400: a body its parser gave up on (e.g. nested too deeply)
            return error_response(400, code, f"the body could not be parsed as JSON ({exc.detail})")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", f"an unexpected {type(exc).__name__}; see the server log")

"""Documents as they come in, validated, and the rejects of records that are not documents."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, ValidationInfo, field_validator

from xmsearch.ingest.settings import IngestSettings
from xmsearch.retriever.errors import plain
from xmsearch.retriever.index.filters import out_of_int64

MAX_ID_CHARS = 512
MAX_DEPTH = 32  # levels of nesting in a document's metadata
NOT_UNICODE = "holds a lone surrogate (such as \\ud800), which is not Unicode text"


class Document(BaseModel):
    """One document: `id` and `text` required; `language`, `tenant` and `metadata` optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr = Field(
        min_length=1, max_length=MAX_ID_CHARS, description="Your id; with the tenant, what the document is known by."
    )
    text: StrictStr = Field(description="The text; long texts are split into chunks the model can read.")
    language: StrictStr | None = Field(
        None, min_length=1, max_length=35, description="ISO 639 code or BCP-47 tag; detected per chunk when absent."
    )
    tenant: StrictStr | None = Field(
        None, min_length=1, max_length=256, description="Owner; a tenant-bound API key sets it to its own tenant."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Any JSON object, returned with hits; filter on it with metadata.<key>."
    )

    @property
    def key(self) -> tuple[str | None, str]:
        """What the store knows a document by: two tenants may use the same id."""
        return (self.tenant, self.id)

    @field_validator("id", "text", "language", "tenant")
    @classmethod
    def _unicode(cls, value: str | None) -> str | None:
        if value is not None and not _is_unicode(value):
            raise ValueError(NOT_UNICODE)
        return value

    @field_validator("text")
    @classmethod
    def _text(cls, text: str, info: ValidationInfo) -> str:
        if not text.strip():
            raise ValueError("text is empty or only whitespace")
        limit = (info.context or {}).get("max_chars")
        if limit is not None and len(text) > limit:
            raise ValueError(f"text is {len(text)} characters, over the limit of {limit}")
        return text

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, metadata: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        problem = json_problem(metadata)  # first: nothing below recurses into a deep value
        if problem:
            raise ValueError(problem)
        size = len(json.dumps(metadata, ensure_ascii=False))
        limit = (info.context or {}).get("max_metadata_bytes")
        if limit is not None and size > limit:
            raise ValueError(f"metadata is {size} bytes as JSON, over the limit of {limit}")
        return metadata


def load_json(raw: str | bytes) -> Any:
    """A record's JSON; ValueError (JSONDecodeError, UnicodeDecodeError, or this) for what is not,
    including nesting deeper than the parser goes."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply to parse") from None


def _is_unicode(text: str) -> bool:
    """No lone surrogates (JSON's "\\ud800" decodes to one): the text can be stored as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_problem(value: Any) -> str | None:
    """What keeps a JSON value from being stored, with where in it (`a.b[2]: ...`), or None: nesting
    deeper than MAX_DEPTH, NaN or an infinity, an integer over 64 bits, a lone surrogate in a key or
    a string. Walked without recursion, so any depth the JSON parser admits is answered."""
    todo: list[tuple[Any, str, int]] = [(value, "", 0)]
    while todo:
        item, where, depth = todo.pop()
        at = f"{where}: " if where else ""
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, dict):
            for key, inner in item.items():
                if not _is_unicode(key):
                    return f"{at}a key holds a lone surrogate, which is not Unicode text"
                todo.append((inner, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(item, list):
            todo.extend((inner, f"{where}[{i}]", depth + 1) for i, inner in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{at}{item} is not a JSON number (NaN and infinities cannot be stored)"
        elif out_of_int64(item):
            return f"{at}an integer that does not fit in 64 bits"
        elif isinstance(item, str) and not _is_unicode(item):
            return f"{at}{NOT_UNICODE}"
    return None


@dataclass(frozen=True)
class Reject:
    """A record that was not accepted: where it came from, why, and its beginning."""

    source: str
    location: str  # "line 12", "entry 1700000000-0", a relative path
    reason: str
    excerpt: str
    key: tuple[str | None, str] | None = None  # (tenant, id) of a valid document that could not be indexed

    def as_json(self) -> str:
        record = asdict(self)
        if self.key is None:
            del record["key"]
        return json.dumps(record, ensure_ascii=False)


Limits = dict[str, Any]  # the validation context: sizes, and what to do with extra fields


def limits(settings: IngestSettings) -> Limits:
    """The validation context the settings give."""
    return {
        "max_chars": settings.max_document_chars,
        "max_metadata_bytes": settings.max_metadata_bytes,
        "extra_fields": settings.extra_fields,
    }


def _extras_into_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """A record's fields besides a document's own (title, url, ...) moved into its metadata; a key
    the record's own metadata also has keeps the metadata's value."""
    extras = {k: v for k, v in data.items() if k not in Document.model_fields}
    if not extras or not isinstance(data.get("metadata", {}), dict):
        return data
    own = {k: v for k, v in data.items() if k in Document.model_fields}
    return {**own, "metadata": {**extras, **data.get("metadata", {})}}


def parse(data: Any, source: str, location: str, context: Limits) -> Document | Reject:
    """A Document, or a Reject naming each problem (field and reason)."""
    if context.get("extra_fields") == "metadata" and isinstance(data, dict):
        data = _extras_into_metadata(data)
    try:
        return Document.model_validate(data, context=context)
    except ValidationError as exc:
        reasons = "; ".join(field_reason(e["loc"], e) for e in exc.errors())
        return Reject(source, location, reasons, _excerpt(data))


def field_reason(field: Sequence[Any], error: Mapping[str, Any]) -> str:
    """One validation problem of a document (a pydantic error) in the user's words: `metadata.n: ...`."""
    message = NOT_UNICODE if error.get("type") == "string_unicode" else plain(error["msg"])
    return f"{'.'.join(str(p) for p in field) or 'record'}: {message}"


def _excerpt(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    return text[:200]

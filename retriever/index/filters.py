"""The filter form callers use, and its translation to Qdrant filters.

A filter is a JSON object; every key must hold (AND):
    {"language": "fr"}                         equal
    {"tenant": ["acme", "globex"]}             any of
    {"tenant": null}                           no value (documents without a tenant)
    {"metadata.year": {"gte": 2020, "lt": 2025}}  range (gt, gte, lt, lte)
    {"metadata.category": "news", "language": ["fr", "de"]}
Keys: document_id, chunk, language, tenant, content_hash, or metadata.<key> (any key of the documents'
metadata; index the ones you filter on with XMSEARCH_METADATA_INDEXES for speed). Anything else is an
InvalidInputError that names the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.index.schema import FILTERABLE

Scalar = str | int | float | bool
RANGE_KEYS = ("gt", "gte", "lt", "lte")
METADATA_KEY = re.compile(r'metadata(\.[^.\[\]"\s]+)+')  # what Qdrant reads as a JSON path into the metadata
INT64 = (-(2**63), 2**63 - 1)  # Qdrant's integers


def out_of_int64(value: object) -> bool:
    """An integer (not a bool) that Qdrant cannot hold."""
    return isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]


@dataclass(frozen=True)
class Condition:
    """One key's condition: exactly one of `equals`, `any_of`, `range`, `null`, `no_vector` is set."""

    key: str
    equals: Scalar | None = None
    any_of: tuple[Scalar, ...] | None = None
    range: dict[str, float] | None = None
    null: bool = False  # the key holds no value
    no_vector: bool = False  # the point has no vector named `key` (the store's own queries, never a user's filter)


def owned_by(tenant: str | None) -> Condition:
    """The points of one tenant's namespace (None: the documents stored without a tenant)."""
    return Condition("tenant", equals=tenant) if tenant is not None else Condition("tenant", null=True)


def searched_tenant(conditions: Sequence[Condition]) -> str | None:
    """The one tenant these conditions keep a search to (a tenant-bound key's scope, or a filter on
    one tenant), or None: any tenant, several, or the documents without one."""
    tenants = {c.equals for c in conditions if c.key == "tenant" and isinstance(c.equals, str)}
    if len(tenants) != 1 or any(c.key == "tenant" and c.equals is None for c in conditions):
        return None
    return tenants.pop()


def parse_filter(raw: dict[str, Any] | None) -> list[Condition]:
    """Validate the filter form; every problem is reported with its key."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise InvalidInputError(f"a filter is a JSON object of key: condition, not {type(raw).__name__}")
    return [_condition(key, value) for key, value in raw.items()]


def _condition(key: str, value: Any) -> Condition:
    if key not in FILTERABLE and not METADATA_KEY.fullmatch(key):
        raise InvalidInputError(
            f"cannot filter on {key!r}: use one of {', '.join(FILTERABLE)} or metadata.<key> (nested: "
            "metadata.<key>.<key>; a key is not empty and holds no dots, brackets, quotes or spaces)"
        )
    if any(out_of_int64(v) for v in (value if isinstance(value, list) else [value])):
        raise InvalidInputError(f"filter {key!r}: integers must fit in 64 bits")
    if value is None:
        return Condition(key, null=True)
    if isinstance(value, (str, int, float, bool)):
        return Condition(key, equals=value)
    if isinstance(value, list):
        if not value or not all(isinstance(v, (str, int, float, bool)) for v in value):
            raise InvalidInputError(f"filter {key!r}: a list must hold one or more strings, numbers or booleans")
        return Condition(key, any_of=tuple(value))
    if isinstance(value, dict):
        unknown = set(value) - set(RANGE_KEYS)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
        if not value or unknown or not numbers:
            raise InvalidInputError(f"filter {key!r}: a range takes numbers under {', '.join(RANGE_KEYS)}")
        return Condition(key, range={k: float(v) for k, v in value.items()})
    raise InvalidInputError(f"filter {key!r}: expected a value, a list or a range, not {type(value).__name__}")


@dataclass(frozen=True)
class FilterVocabulary:
    """The constructors of one Qdrant binding (qdrant-client models or qdrant-edge), so that one
    translation serves both."""

    filter: Callable[..., Any]  # Filter(must=[...]) / Filter(should=[...])
    field: Callable[..., Any]  # FieldCondition(key=..., match=... | range=...)
    match_value: Callable[[Scalar], Any]
    match_any: Callable[[list[Any]], Any]
    range: Callable[..., Any]  # Range(gt=, gte=, lt=, lte=)
    is_null: Callable[[str], Any]  # IsNullCondition on a key
    has_vector: Callable[[str], Any]  # HasVectorCondition on a vector name


def translate(conditions: list[Condition] | tuple[Condition, ...], vocabulary: FilterVocabulary) -> Any:
    """The conditions (AND) as a filter of the given binding, or None for no conditions."""
    if not conditions:
        return None
    return vocabulary.filter(must=[_translate(c, vocabulary) for c in conditions])


def _translate(c: Condition, v: FilterVocabulary) -> Any:
    if c.null:
        return v.is_null(c.key)
    if c.no_vector:
        return v.filter(must_not=[v.has_vector(c.key)])
    if c.range is not None:
        return v.field(key=c.key, range=v.range(**c.range))
    if c.any_of is not None:
        if all(isinstance(x, str) for x in c.any_of) or all(type(x) is int for x in c.any_of):
            return v.field(key=c.key, match=v.match_any(list(c.any_of)))
        return v.filter(should=[_translate(Condition(c.key, equals=x), v) for x in c.any_of])
    if isinstance(c.equals, float):  # Qdrant matches keywords, integers and booleans; a float is a range
        return v.field(key=c.key, range=v.range(gte=c.equals, lte=c.equals))
    assert c.equals is not None
    return v.field(key=c.key, match=v.match_value(c.equals))

"""The filter form: what it accepts, what it refuses (naming the key)."""

from __future__ import annotations

import pytest

from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.index.filters import Condition, parse_filter


def test_forms() -> None:
    got = parse_filter({"language": "fr", "tenant": ["a", "b"], "metadata.year": {"gte": 2020, "lt": 2025}})
    assert got == [
        Condition("language", equals="fr"),
        Condition("tenant", any_of=("a", "b")),
        Condition("metadata.year", range={"gte": 2020.0, "lt": 2025.0}),
    ]
    assert parse_filter(None) == [] and parse_filter({}) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": "red"}, "cannot filter on 'colour'"),
        ({"metadata.": "x"}, "cannot filter on 'metadata.'"),
        ({"text": "x"}, "cannot filter on 'text'"),
        ({"language": []}, "a list must hold one or more"),
        ({"language": [{"a": 1}]}, "a list must hold"),
        ({"chunk": {"near": 3}}, "a range takes numbers under gt, gte, lt, lte"),
        ({"chunk": {"gte": "3"}}, "a range takes numbers"),
        ({"chunk": [None]}, "a list must hold one or more strings"),
        (["language", "fr"], "a filter is a JSON object"),
    ],
)
def test_refusals_name_the_problem(raw: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_filter(raw)  # type: ignore[arg-type]

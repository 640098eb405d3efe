"""The filter language: parsing, errors that name the path, and the reference semantics."""

from __future__ import annotations

from typing import Any

import pytest

from somaagent.errors import ValidationError
from somaagent.memory.filters import And, Condition, Or, conditions, matches, parse_filter, to_dict


def test_forms_parse_to_the_typed_ast() -> None:
    assert parse_filter({"topic": "bio"}) == Condition("topic", "eq", "bio")
    assert parse_filter({"year": {"gte": 2020, "lt": 2024}}) == And(
        (Condition("year", "gte", 2020), Condition("year", "lt", 2024))
    )
    assert parse_filter({"lang": {"in": ["en", "fr"]}}) == Condition("lang", "in", ("en", "fr"))
    parsed = parse_filter({"or": [{"a": 1}, {"and": [{"b": True}, {"c": {"ne": "x"}}]}]})
    assert parsed == Or(
        (Condition("a", "eq", 1), And((Condition("b", "eq", True), Condition("c", "ne", "x"))))
    )
    assert parse_filter(None) is None and parse_filter({}) is None
    assert parse_filter(parsed) is parsed
    assert len(conditions(parsed)) == 3


@pytest.mark.parametrize(
    "raw",
    [
        {"topic": "bio", "year": {"gte": 2020}},
        {"or": [{"a": {"in": [1, "x", True]}}, {"b": {"nin": [2.5]}}]},
        {"and": [{"a": {"gt": 1}}, {"a": {"lte": 9}}]},
    ],
)
def test_to_dict_round_trips(raw: dict[str, Any]) -> None:
    parsed = parse_filter(raw)
    assert parsed is not None
    assert parse_filter(to_dict(parsed)) == parsed


@pytest.mark.parametrize(
    ("raw", "loc", "kind"),
    [
        ({"year": {"gtx": 1}}, ["filter", "year", "gtx"], "filter.unknown_operator"),
        ({"year": {"gt": "2020"}}, ["filter", "year", "gt"], "filter.invalid_value"),
        ({"year": {"gt": True}}, ["filter", "year", "gt"], "filter.invalid_value"),
        ({"a": {"in": []}}, ["filter", "a", "in"], "filter.invalid_value"),
        ({"a": {"in": [1, [2]]}}, ["filter", "a", "in", 1], "filter.invalid_value"),
        ({"a": None}, ["filter", "a"], "filter.invalid_value"),
        ({"a": float("nan")}, ["filter", "a"], "filter.invalid_value"),
        ({"or": []}, ["filter", "or"], "filter.invalid_value"),
        ({"or": [{"a": 1}, "x"]}, ["filter", "or", 1], "filter.invalid_type"),
        ({"a": {"and": [{"b": 1}]}}, ["filter", "a", "and"], "filter.unknown_operator"),
        ({"a": {}}, ["filter", "a"], "filter.empty"),
        ([("a", 1)], ["filter"], "filter.invalid_type"),
    ],
)
def test_errors_name_the_path(raw: Any, loc: list[Any], kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_filter(raw)
    assert caught.value.errors[0]["loc"] == loc
    assert caught.value.errors[0]["type"] == kind
    assert caught.value.status_code == 422


def test_too_deep_is_refused() -> None:
    raw: dict[str, Any] = {"a": 1}
    for _ in range(20):
        raw = {"or": [raw, {"b": 2}]}
    with pytest.raises(ValidationError, match="nest"):
        parse_filter(raw)


META = {"topic": "bio", "year": 2021, "score": 1.0, "draft": True}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"topic": "bio"}, True),
        ({"year": 2021.0}, True),  # numbers compare by value
        ({"score": 1}, True),
        ({"draft": 1}, False),  # a boolean never equals a number
        ({"draft": True}, True),
        ({"year": {"gt": 2020, "lte": 2021}}, True),
        ({"topic": {"gt": 1}}, False),  # ranges fail on non-numbers
        ({"draft": {"gte": 0}}, False),
        ({"topic": {"in": ["chem", "bio"]}}, True),
        ({"topic": {"nin": ["chem", "bio"]}}, False),
        ({"missing": {"ne": "x"}}, True),  # negations pass records without the field
        ({"missing": {"nin": ["x"]}}, True),
        ({"missing": {"eq": "x"}}, False),
        ({"missing": {"lt": 5}}, False),
        ({"or": [{"missing": 1}, {"topic": "bio"}]}, True),
        ({"and": [{"missing": {"ne": 1}}, {"topic": {"ne": "bio"}}]}, False),
    ],
)
def test_reference_semantics(raw: dict[str, Any], expected: bool) -> None:
    assert matches(parse_filter(raw), META) is expected
    assert matches(None, META)

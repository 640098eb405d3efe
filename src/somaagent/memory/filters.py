"""The one metadata filter language of SomaAgent's memory, parsed into a small typed AST.

Users write a filter as JSON-like data; every vector-store back-end translates the parsed
:data:`Filter` into its native form, and :func:`matches` is the pure-Python reference that the
contract tests hold each back-end to::

    {"topic": "bio"}                                   # a bare value means eq
    {"topic": {"eq": "bio"}, "year": {"gte": 2020}}    # several fields: all must hold
    {"year": {"gte": 2020, "lt": 2024}}                # several operators: all must hold
    {"lang": {"in": ["en", "fr"]}}
    {"or": [{"topic": "bio"}, {"and": [{"year": {"lt": 2000}}, {"draft": false}]}]}

Operators: ``eq``, ``ne``, ``in``, ``nin`` (any scalar), ``gt``, ``gte``, ``lt``, ``lte``
(numbers only), and the logical ``and`` / ``or`` (a non-empty list of filters).

Semantics, identical on every back-end:

* scalars are ``str``, ``int`` (64-bit: what every back-end stores), ``float`` and ``bool``;
  ``True`` never equals ``1``, while ``1`` equals ``1.0``;
* field names are non-empty strings that do not start with ``$`` (the operator prefix of
  the back-ends' own languages, and never a stored metadata key);
* ``ne`` and ``nin`` are the negations of ``eq`` and ``in``: a record that lacks the field
  passes them (as in ChromaDB, Qdrant's ``must_not`` and MongoDB); every other operator fails
  on a missing field.

A bad filter raises :class:`~somaagent.errors.ValidationError` whose ``errors`` name the path,
e.g. ``{"loc": ["filter", "year", "gtx"], "msg": "unknown operator 'gtx' ...", "type": ...}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from somaagent.errors import ValidationError

__all__ = [
    "COMPARISON_OPERATORS",
    "LOGICAL_OPERATORS",
    "And",
    "Condition",
    "Filter",
    "FilterInput",
    "Operator",
    "Or",
    "Scalar",
    "conditions",
    "matches",
    "parse_filter",
    "to_dict",
]

Scalar: TypeAlias = str | int | float | bool
Operator = Literal["eq", "ne", "in", "nin", "gt", "gte", "lt", "lte"]
COMPARISON_OPERATORS: Final[frozenset[str]] = frozenset(get_args(Operator))
LOGICAL_OPERATORS: Final[frozenset[str]] = frozenset({"and", "or"})
RANGE_OPERATORS: Final[frozenset[str]] = frozenset({"gt", "gte", "lt", "lte"})
MAX_DEPTH: Final = 16
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Condition:
    """One test on one metadata field.

    Attributes:
        field: the metadata key.
        op: the operator.
        value: a scalar, or for ``in`` / ``nin`` a non-empty tuple of scalars.
    """

    field: str
    op: Operator
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class And:
    """Every clause holds (at least two clauses)."""

    clauses: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one clause holds (at least two clauses)."""

    clauses: tuple[Filter, ...]


Filter: TypeAlias = Condition | And | Or
"""A parsed filter: a :class:`Condition` or a logical combination of filters."""

FilterInput: TypeAlias = Filter | Mapping[str, Any] | None
"""What the stores accept: a parsed :data:`Filter`, the raw dict form, or ``None``."""


def _invalid(loc: Sequence[str | int], msg: str, kind: str) -> ValidationError:
    path = ".".join(str(part) for part in loc[1:]) or "filter"
    return ValidationError(
        f"invalid filter at {path}: {msg}",
        errors=[{"loc": list(loc), "msg": msg, "type": f"filter.{kind}"}],
    )


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _scalar(value: object, loc: list[str | int], op: str) -> Scalar:
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        raise _invalid(
            loc, f"'{op}' takes integers that fit in 64 bits, got {value}", "invalid_value"
        )
    if not _is_scalar(value):
        raise _invalid(
            loc,
            f"'{op}' takes a string, number or boolean, got {type(value).__name__}",
            "invalid_value",
        )
    if op in RANGE_OPERATORS and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _invalid(loc, f"'{op}' takes a number, got {type(value).__name__}", "invalid_value")
    return value  # type: ignore[return-value]


def _condition(field: str, op: str, value: object, loc: list[str | int]) -> Condition:
    if op not in COMPARISON_OPERATORS:
        known = ", ".join(sorted(COMPARISON_OPERATORS))
        raise _invalid(loc, f"unknown operator '{op}' (known: {known})", "unknown_operator")
    if op in ("in", "nin"):
        if not isinstance(value, list | tuple) or not value:
            raise _invalid(loc, f"'{op}' takes a non-empty list of values", "invalid_value")
        items = tuple(_scalar(item, [*loc, index], "eq") for index, item in enumerate(value))
        return Condition(field, op, items)  # type: ignore[arg-type]
    return Condition(field, op, _scalar(value, loc, op))  # type: ignore[arg-type]


def _combine(kind: type[And] | type[Or], clauses: list[Filter]) -> Filter:
    return clauses[0] if len(clauses) == 1 else kind(tuple(clauses))


def _parse(raw: object, loc: list[str | int], depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise _invalid(loc, f"filters nest at most {MAX_DEPTH} levels deep", "too_deep")
    if not isinstance(raw, Mapping) or not raw:
        raise _invalid(loc, "a filter is a non-empty object", "invalid_type")
    clauses: list[Filter] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise _invalid(loc, f"field names are non-empty strings, got {key!r}", "invalid_field")
        here = [*loc, key]
        if key.startswith("$"):
            # a back-end's own operator ($where, $eq, ...): refused here, as a client mistake,
            # not passed on to fail in the store as if the store were down
            raise _invalid(
                here,
                f"unknown operator or field {key!r}: field names do not start with '$' "
                "(operators: eq, ne, in, nin, gt, gte, lt, lte; and, or)",
                "unknown_operator",
            )
        if key in LOGICAL_OPERATORS:
            if not isinstance(value, list | tuple) or not value:
                raise _invalid(here, f"'{key}' takes a non-empty list of filters", "invalid_value")
            parts = [_parse(item, [*here, index], depth + 1) for index, item in enumerate(value)]
            clauses.append(_combine(And if key == "and" else Or, parts))
        elif isinstance(value, Mapping):
            if not value:
                raise _invalid(here, "an operator object needs at least one operator", "empty")
            for op, operand in value.items():
                if isinstance(op, str) and op in LOGICAL_OPERATORS:
                    raise _invalid(
                        [*here, op],
                        f"'{op}' combines filters and belongs at the top level, not under a field",
                        "unknown_operator",
                    )
                clauses.append(_condition(key, str(op), operand, [*here, str(op)]))
        else:
            clauses.append(_condition(key, "eq", value, here))
    return _combine(And, clauses)


def parse_filter(raw: FilterInput) -> Filter | None:
    """Parse and validate a filter in SomaAgent's filter language.

    Args:
        raw: the dict form (see the module docstring), an already parsed :data:`Filter`
            (returned as is), or ``None`` / ``{}`` for no filter.

    Returns:
        The typed filter, or ``None`` when there is nothing to filter on.

    Raises:
        ValidationError: the filter is malformed; ``errors[0]["loc"]`` starts with
            ``"filter"`` and names the bad field or operator.
    """
    if raw is None:
        return None
    if isinstance(raw, Condition | And | Or):
        return raw
    if isinstance(raw, Mapping) and not raw:
        return None
    return _parse(raw, ["filter"], 0)


def to_dict(node: Filter) -> dict[str, Any]:
    """The canonical dict form of a parsed filter (``parse_filter(to_dict(f)) == f``)."""
    if isinstance(node, Condition):
        value = list(node.value) if isinstance(node.value, tuple) else node.value
        return {node.field: {node.op: value}}
    key = "and" if isinstance(node, And) else "or"
    return {key: [to_dict(clause) for clause in node.clauses]}


def conditions(node: Filter) -> list[Condition]:
    """Every condition in a filter, depth first (for back-ends that check field support)."""
    if isinstance(node, Condition):
        return [node]
    return [found for clause in node.clauses for found in conditions(clause)]


def _equal(left: object, right: Scalar) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    return False


def _compare(op: str, left: object, right: float) -> bool:
    if isinstance(left, bool) or not isinstance(left, int | float):
        return False
    if op == "gt":
        return left > right
    if op == "gte":
        return left >= right
    if op == "lt":
        return left < right
    return left <= right


def matches(node: Filter | None, metadata: Mapping[str, object]) -> bool:
    """Whether a record's metadata satisfies a filter: the reference semantics.

    Args:
        node: a parsed filter (``None`` matches everything).
        metadata: the record's metadata.

    Returns:
        ``True`` when the record passes the filter.
    """
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(clause, metadata) for clause in node.clauses)
    if isinstance(node, Or):
        return any(matches(clause, metadata) for clause in node.clauses)
    if node.field not in metadata:
        return node.op in ("ne", "nin")
    value = metadata[node.field]
    if node.op == "eq":
        return _equal(value, node.value)  # type: ignore[arg-type]
    if node.op == "ne":
        return not _equal(value, node.value)  # type: ignore[arg-type]
    if node.op in ("in", "nin"):
        assert isinstance(node.value, tuple)
        found = any(_equal(value, item) for item in node.value)
        return found if node.op == "in" else not found
    assert isinstance(node.value, int | float)
    return _compare(node.op, value, float(node.value))

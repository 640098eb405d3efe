"""What every back-end shares: validation before any write, score normalisation, error shapes.

Back-ends call these so that a bad name, record or ``k`` is the same
:class:`~somaagent.errors.ValidationError` everywhere, and scores mean the same everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from somaagent.errors import ConfigurationError, ConflictError, NotFoundError, ValidationError
from somaagent.memory.filters import Filter, FilterInput, parse_filter
from somaagent.memory.stores.base import (
    CollectionInfo,
    MetadataValue,
    Metric,
    SearchHit,
    VectorRecord,
)

__all__ = [
    "COLLECTION_NAME",
    "METRICS",
    "check_dimension",
    "check_k",
    "check_metadata",
    "check_name",
    "check_query",
    "check_records",
    "conflict",
    "hit",
    "not_found",
    "require_selection",
    "score_for",
    "where_of",
]

COLLECTION_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,61}[A-Za-z0-9]$")
METRICS: Final[frozenset[str]] = frozenset({"cosine", "dot", "euclidean"})
MAX_ID_LENGTH: Final = 512
MAX_K: Final = 10_000


def _invalid(loc: list[str | int], msg: str, kind: str = "value_error") -> ValidationError:
    return ValidationError(msg, errors=[{"loc": loc, "msg": msg, "type": kind}])


def check_name(name: str) -> str:
    """Validate a collection name (3–63 of ``[A-Za-z0-9_-]``, starting and ending alphanumeric)."""
    if not isinstance(name, str) or not COLLECTION_NAME.match(name):
        raise _invalid(
            ["collection"],
            f"invalid collection name {name!r}: use 3-63 letters, digits, '_' or '-', "
            "starting and ending with a letter or digit",
        )
    return name


def check_dimension(dimension: int, metric: str) -> None:
    """Validate a new collection's settings."""
    if (
        isinstance(dimension, bool)
        or not isinstance(dimension, int)
        or not 1 <= dimension <= 65_536
    ):
        raise _invalid(["dimension"], f"dimension must be an integer 1..65536, got {dimension!r}")
    if metric not in METRICS:
        raise _invalid(["metric"], f"metric must be cosine, dot or euclidean, got {metric!r}")


def check_metadata(
    metadata: Mapping[str, Any] | None, loc: list[str | int]
) -> dict[str, MetadataValue]:
    """Validate flat scalar metadata and return it as a plain dict."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise _invalid(loc, "metadata must be an object of scalar values")
    clean: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or key.startswith("$"):
            raise _invalid([*loc, str(key)], f"metadata keys are non-empty strings, got {key!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _invalid([*loc, key], f"metadata value for {key!r} is not finite")
        if not isinstance(value, str | int | float | bool):
            raise _invalid(
                [*loc, key],
                f"metadata value for {key!r} must be a string, number or boolean, "
                f"got {type(value).__name__}",
            )
        clean[key] = value
    return clean


def check_records(
    records: Sequence[VectorRecord], dimension: int
) -> tuple[list[str], npt.NDArray[np.float32], list[dict[str, MetadataValue]]]:
    """Validate a whole upsert batch before anything is written.

    Returns:
        The ids, the vectors as one ``float32`` array, and the cleaned metadata.

    Raises:
        ValidationError: naming the first bad record (``loc = ["records", i, field]``) and its id;
            also for an id repeated within the batch.
    """
    ids: list[str] = []
    seen: dict[str, int] = {}
    rows = np.empty((len(records), dimension), dtype=np.float32)
    metadata: list[dict[str, MetadataValue]] = []
    for index, record in enumerate(records):
        loc: list[str | int] = ["records", index]
        if not isinstance(record, VectorRecord):
            raise _invalid(loc, f"record {index} is not a VectorRecord")
        rid = record.id
        if not isinstance(rid, str) or not 1 <= len(rid) <= MAX_ID_LENGTH:
            raise _invalid([*loc, "id"], f"record {index}: ids are 1-{MAX_ID_LENGTH} characters")
        if rid in seen:
            raise _invalid([*loc, "id"], f"record {index}: id {rid!r} repeats record {seen[rid]}")
        seen[rid] = index
        try:
            vector = np.asarray(record.vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise _invalid([*loc, "vector"], f"record {index} ({rid!r}): not numbers") from None
        if vector.shape != (dimension,):
            raise _invalid(
                [*loc, "vector"],
                f"record {index} ({rid!r}) has dimension {vector.shape[-1] if vector.ndim else 0}"
                f", the collection's is {dimension}",
                "dimension_mismatch",
            )
        if not np.isfinite(vector).all():
            raise _invalid([*loc, "vector"], f"record {index} ({rid!r}) has non-finite values")
        if record.document is not None and not isinstance(record.document, str):
            raise _invalid([*loc, "document"], f"record {index} ({rid!r}): document is not text")
        rows[index] = vector
        ids.append(rid)
        metadata.append(check_metadata(record.metadata, [*loc, "metadata"]))
    return ids, rows, metadata


def check_query(vector: Any, dimension: int) -> npt.NDArray[np.float32]:
    """Validate a search vector."""
    try:
        array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise _invalid(["vector"], "the query vector is not numbers") from None
    if array.shape != (dimension,):
        raise _invalid(
            ["vector"],
            f"the query vector has shape {array.shape}, the collection's dimension is {dimension}",
            "dimension_mismatch",
        )
    if not np.isfinite(array).all():
        raise _invalid(["vector"], "the query vector has non-finite values")
    return array


def check_k(k: int) -> int:
    """Validate ``k`` (1..10,000)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise _invalid(["k"], f"k must be an integer 1..{MAX_K}, got {k!r}")
    return k


def require_selection(ids: Sequence[str] | None, node: Filter | None) -> None:
    """``delete`` needs ids or a filter: deleting everything is ``delete_collection``."""
    if ids is None and node is None:
        raise _invalid(
            ["ids"],
            "delete needs ids or a filter (delete_collection removes everything)",
            "missing",
        )


def where_of(where: FilterInput) -> Filter | None:
    """Parse a filter argument (already parsed filters pass through)."""
    return parse_filter(where)


def score_for(metric: Metric, distance: float) -> float:
    """The [0, 1] score for a distance in SomaAgent's convention (see :mod:`.base`)."""
    if metric == "cosine":
        score = 1.0 - distance / 2.0
    elif metric == "dot":
        score = (2.0 - distance) / 2.0  # distance = 1 - dot
    else:
        score = 1.0 / (1.0 + max(distance, 0.0))
    return min(1.0, max(0.0, score))


def hit(
    metric: Metric,
    distance: float,
    id: str,
    document: str | None,
    metadata: Mapping[str, Any] | None,
) -> SearchHit:
    """Build a :class:`SearchHit` from a distance in SomaAgent's convention."""
    return SearchHit(
        id=id,
        score=score_for(metric, float(distance)),
        distance=float(distance),
        metric=metric,
        document=document,
        metadata=dict(metadata or {}),
    )


def not_found(name: str) -> NotFoundError:
    """The error for an unknown collection."""
    return NotFoundError(f"collection {name!r} not found")


def conflict(name: str, existing: CollectionInfo | None = None, asked: str = "") -> ConflictError:
    """The error for a collection that exists (with other settings, when ``asked`` says so)."""
    if existing is not None and asked:
        return ConflictError(
            f"collection {name!r} exists with dimension {existing.dimension} and metric "
            f"{existing.metric!r}, not {asked}"
        )
    return ConflictError(f"collection {name!r} already exists")


def missing_extra(backend: str, module: str, extra: str) -> ConfigurationError:
    """The error for a back-end whose client library is not installed."""
    return ConfigurationError(
        f"the {backend} vector store needs the {module!r} package: "
        f"install the `{extra}` extra: pip install 'somaagent[{extra}]'"
    )

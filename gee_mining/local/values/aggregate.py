"""Earth Engine aggregate algorithms (``fc.aggregate_sum('p')`` and friends).

Each reads one property of every element of a collection and skips elements
where it is null or missing, as Earth Engine's aggregations do. Statistics over
no values are null (``sum`` is 0, ``count`` 0, ``product`` 1).
"""

from __future__ import annotations

import json
import math
from typing import Any

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.info import to_info
from gee_mining.local.core.registry import algorithm
from gee_mining.local.values.collection import sort_key
from gee_mining.local.values.featurecollection import as_collection


def _values(name: str, collection: Any, prop: str) -> list[Any]:
    fc = as_collection(f"AggregateFeatureCollection.{name}", collection)
    return [v for v in (f.get(prop) for f in fc.features) if v is not None]


def _numbers(name: str, collection: Any, prop: str) -> list[float]:
    values = _values(name, collection, prop)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise EngineError(
                f"AggregateFeatureCollection.{name}: Property '{prop}' has a non-numeric value: {json.dumps(v, default=str)}."
            )
    return values


def _sum(values: list[Any]) -> Any:
    if all(isinstance(v, int) for v in values):
        return sum(values)
    return math.fsum(values)


def _variance(values: list[float], ddof: int) -> float | None:
    n = len(values)
    if n - ddof <= 0:
        return None
    mean = math.fsum(values) / n
    return math.fsum((v - mean) ** 2 for v in values) / (n - ddof)


def _sqrt(value: float | None) -> float | None:
    return None if value is None else math.sqrt(value)


@algorithm("AggregateFeatureCollection.array")
def array(collection, property):  # noqa: A002
    """The list of the property's non-null values, in collection order."""
    return _values("array", collection, property)


@algorithm("AggregateFeatureCollection.first")
def first(collection, property):  # noqa: A002
    values = _values("first", collection, property)
    return values[0] if values else None


@algorithm("AggregateFeatureCollection.count")
def count(collection, property):  # noqa: A002
    return len(_values("count", collection, property))


@algorithm("AggregateFeatureCollection.count_distinct")
def count_distinct(collection, property):  # noqa: A002
    return len({json.dumps(to_info(v), sort_keys=True) for v in _values("count_distinct", collection, property)})


def _extreme(name: str, collection: Any, prop: str, pick: Any) -> Any:
    values = _values(name, collection, prop)
    return pick(values, key=sort_key) if values else None


@algorithm("AggregateFeatureCollection.min")
def min_(collection, property):  # noqa: A002
    return _extreme("min", collection, property, min)


@algorithm("AggregateFeatureCollection.max")
def max_(collection, property):  # noqa: A002
    return _extreme("max", collection, property, max)


@algorithm("AggregateFeatureCollection.sum")
def sum_(collection, property):  # noqa: A002
    return _sum(_numbers("sum", collection, property))


@algorithm("AggregateFeatureCollection.product")
def product(collection, property):  # noqa: A002
    return math.prod(_numbers("product", collection, property))


@algorithm("AggregateFeatureCollection.mean")
def mean(collection, property):  # noqa: A002
    values = _numbers("mean", collection, property)
    return math.fsum(values) / len(values) if values else None


@algorithm("AggregateFeatureCollection.sample_var")
def sample_var(collection, property):  # noqa: A002
    return _variance(_numbers("sample_var", collection, property), 1)


@algorithm("AggregateFeatureCollection.sample_sd")
def sample_sd(collection, property):  # noqa: A002
    return _sqrt(_variance(_numbers("sample_sd", collection, property), 1))


@algorithm("AggregateFeatureCollection.total_var")
def total_var(collection, property):  # noqa: A002
    return _variance(_numbers("total_var", collection, property), 0)


@algorithm("AggregateFeatureCollection.total_sd")
def total_sd(collection, property):  # noqa: A002
    return _sqrt(_variance(_numbers("total_sd", collection, property), 0))


@algorithm("AggregateFeatureCollection.stats")
def stats(collection, property):  # noqa: A002
    """The dictionary of the ``aggregate_stats`` reference: max, mean, min, sample_sd,
    sample_var, sum, sum_sq, total_count, total_sd, total_var, valid_count,
    weight_sum, weighted_sum (elements without the property are not counted)."""
    values = _numbers("stats", collection, property)
    n = len(values)
    total = _sum(values)
    svar, tvar = _variance(values, 1), _variance(values, 0)
    return {
        "max": max(values) if values else None,
        "mean": math.fsum(values) / n if n else None,
        "min": min(values) if values else None,
        "sample_sd": _sqrt(svar),
        "sample_var": svar,
        "sum": total,
        "sum_sq": _sum([v * v for v in values]),
        "total_count": n,
        "total_sd": _sqrt(tvar),
        "total_var": tvar,
        "valid_count": n,
        "weight_sum": n,
        "weighted_sum": total,
    }


def _histogram_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(to_info(value), separators=(",", ":"))


@algorithm("AggregateFeatureCollection.histogram")
def histogram(collection, property):  # noqa: A002
    """Counts of each distinct value, keyed by the value as a string, keys sorted."""
    counts: dict[str, int] = {}
    for v in _values("histogram", collection, property):
        key = _histogram_key(v)
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))

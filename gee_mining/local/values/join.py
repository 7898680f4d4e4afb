"""Earth Engine joins: a :class:`Join` value and ``Join.apply``.

``Join.apply(join, primary, secondary, condition)`` tests every (primary,
secondary) pair with ``condition(primary, secondary)``: the filter's
``leftField`` reads the primary element and ``rightField`` the secondary one.
``withinDistance`` and ``maxDifference`` conditions give a join measure (the
distance in metres, the absolute difference), which ``saveBest`` minimises and
``measureKey`` records. Matches keep the secondary collection's order unless an
``ordering`` property is given (stable sort; nulls last).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.values.collection import sort_key
from gee_mining.local.values.element import set_property
from gee_mining.local.values.feature import Feature
from gee_mining.local.values.featurecollection import FeatureCollection, as_collection
from gee_mining.local.values.filter import Filter


@dataclass(frozen=True)
class Join:
    """``kind``: simple, inverted, inner, saveAll, saveFirst or saveBest; ``options``: its arguments."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    ee_type = "Join"

    def to_info(self) -> dict:
        return {"type": "Join", "kind": self.kind, **{k: v for k, v in self.options.items() if v is not None}}


@algorithm("Join.simple")
def simple():
    return Join("simple")


@algorithm("Join.inverted")
def inverted():
    return Join("inverted")


@algorithm("Join.inner")
def inner(primaryKey, secondaryKey, measureKey):  # noqa: N803
    return Join("inner", {"primaryKey": primaryKey, "secondaryKey": secondaryKey, "measureKey": measureKey})


@algorithm("Join.saveAll")
def save_all(matchesKey, ordering, ascending, measureKey, outer):  # noqa: N803
    return Join(
        "saveAll",
        {
            "matchesKey": matchesKey,
            "ordering": ordering,
            "ascending": ascending,
            "measureKey": measureKey,
            "outer": outer,
        },
    )


@algorithm("Join.saveFirst")
def save_first(matchKey, ordering, ascending, measureKey, outer):  # noqa: N803
    return Join(
        "saveFirst",
        {"matchKey": matchKey, "ordering": ordering, "ascending": ascending, "measureKey": measureKey, "outer": outer},
    )


@algorithm("Join.saveBest")
def save_best(matchKey, measureKey, outer):  # noqa: N803
    return Join("saveBest", {"matchKey": matchKey, "measureKey": measureKey, "outer": outer})


def _measure(condition: Filter, primary: Any, match: Any) -> Any:
    if condition.measure is None:
        raise EngineError(
            "Join.apply: The join condition produces no join measure; use Filter.withinDistance or "
            "Filter.maxDifference with measureKey or saveBest."
        )
    return condition.measure(primary, match)


def _ordered(matches: list[Any], ordering: str | None, ascending: bool) -> list[Any]:
    if ordering is None:
        return matches
    present = [m for m in matches if m.get(ordering) is not None]
    missing = [m for m in matches if m.get(ordering) is None]
    present.sort(key=lambda m: sort_key(m.get(ordering)), reverse=not ascending)
    return present + missing


@algorithm("Join.apply")
def apply(join, primary, secondary, condition):
    if not isinstance(join, Join):
        raise EngineError("Join.apply: 'join' must be a Join.")
    if not isinstance(condition, Filter):
        raise EngineError("Join.apply: 'condition' must be a Filter.")
    left = as_collection("Join.apply", primary)
    right = as_collection("Join.apply", secondary).features
    test = condition.test
    opts = join.options
    out: list[Any] = []
    for p in left.features:
        matches = [s for s in right if test(p, s)]
        if join.kind == "simple":
            if matches:
                out.append(p)
        elif join.kind == "inverted":
            if not matches:
                out.append(p)
        elif join.kind == "inner":
            for s in matches:
                props = {opts["primaryKey"]: p, opts["secondaryKey"]: s}
                if opts["measureKey"] is not None:
                    props[opts["measureKey"]] = _measure(condition, p, s)
                out.append(Feature(None, props, f"{p.id}_{s.id}"))
        else:
            out.extend(_save(join, condition, p, matches))
    # saveAll/saveFirst/saveBest keep the primary collection's kind (images stay an ImageCollection).
    return FeatureCollection(out) if join.kind == "inner" else left.with_features(out)


def _save(join: Join, condition: Filter, p: Any, matches: list[Any]) -> list[Any]:
    opts = join.options
    measure_key = opts.get("measureKey")
    if join.kind == "saveBest":
        scored = [(m, _measure(condition, p, m)) for m in matches]
        scored = [(m, d) for m, d in scored if d is not None]
        if not scored:
            return [p] if opts["outer"] else []
        best, d = min(scored, key=lambda md: md[1])
        return [set_property(p, opts["matchKey"], set_property(best, measure_key, d))]
    if measure_key is not None:
        matches = [set_property(m, measure_key, _measure(condition, p, m)) for m in matches]
    matches = _ordered(matches, opts["ordering"], opts["ascending"])
    if join.kind == "saveAll":
        if not matches and not opts["outer"]:
            return []
        return [set_property(p, opts["matchesKey"], matches)]
    if not matches:
        return [p] if opts["outer"] else []
    return [set_property(p, opts["matchKey"], matches[0])]

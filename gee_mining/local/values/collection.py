"""Collection algorithms (shared by feature and image collections).

Collections keep their order: ``filter``, ``map``, ``distinct`` and ``remap``
keep the input order, ``limit`` with a key sorts stably. The collection's
id and properties survive the algorithms that transform its elements.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.info import to_info
from gee_mining.local.core.registry import Column, algorithm, per_element, vectorised
from gee_mining.local.values.date import Date
from gee_mining.local.values.element import Element
from gee_mining.local.values.feature import Feature, geometry_algorithm
from gee_mining.local.values.featurecollection import FeatureCollection, as_collection
from gee_mining.local.values.filter import _PLAIN, Filter, _geometry, field_value, parse_expression
from gee_mining.local.values.geometry import Geometry, intersects_any, intersects_pairs
from gee_mining.local.values.spatial_index import candidates_intersecting, candidates_many


@algorithm("Collection.loadTable", context=True)
def load_table(ctx, tableId, geometryColumn, version):  # noqa: N803
    return ctx.catalog.table(tableId)


@algorithm("Collection")
def collection(features):
    """A collection of the given elements; those without an id get their position ("0", "1", ...)."""
    out = []
    for i, f in enumerate(features):
        if not isinstance(f, Element):
            raise EngineError(f"Collection: Element {i} is not a Feature: {getattr(f, 'ee_type', type(f).__name__)}.")
        out.append(f if f.id is not None else f.copy_with(id=str(i)))
    return FeatureCollection(out)


def as_filter(name: str, value: Any) -> Filter:
    if isinstance(value, Filter):
        return value
    if isinstance(value, str):
        return parse_expression(value)
    raise EngineError(f"{name}: 'filter' must be a Filter, not {getattr(value, 'ee_type', type(value).__name__)}.")


def _filtered(fc: FeatureCollection, features: list[Any]) -> FeatureCollection:
    """``fc`` with the elements a filter kept: a filter of an asset is still read from its index."""
    out = fc.with_features(features)
    out.stored = fc.stored
    return out


def _count_scanned(ctx: Any, fc: FeatureCollection, filters: int = 1) -> None:
    """A filter on a computed collection tests each of its elements (``limits.features_scanned_per_request``)."""
    if not fc.stored:
        ctx.count_scanned(len(fc.features) * filters)


@algorithm("Collection.filter", context=True)
def filter_(ctx, collection, filter):  # noqa: A002
    """The elements that pass, in order. A bounds filter on a large collection first
    prunes by bounding boxes (an index kept with the collection), then tests exactly.
    On a computed collection each element counts as scanned (the request's work bound)."""
    fc = as_collection("Collection.filter", collection)
    flt = as_filter("Collection.filter", filter)
    test = flt.test
    if flt.membership is not None and len(fc.features) > 64:
        _count_scanned(ctx, fc)
        return _filtered(fc, _members_of(fc, *flt.membership, test))
    geometry_test = flt.geometry_test
    if geometry_test is not None and geometry_test[1] == "intersects" and len(fc.features) > 64:
        return filter_many(1, fc, Column([flt]), ctx)[0]  # candidates from the index, tested in one call
    if flt.geometry_any is not None and len(fc.features) > 64:
        _count_scanned(ctx, fc)
        return _filtered(fc, _intersecting_any(fc.features, flt.geometry_any))
    passed = _in_ranges(fc, flt.ranges) if flt.ranges is not None and len(fc.features) > 64 else None
    if passed is not None:
        _count_scanned(ctx, fc)
        return _filtered(fc, [f for f, ok in zip(fc.features, passed, strict=True) if ok])
    _count_scanned(ctx, fc)
    candidates = fc.features
    if flt.bounds is not None and len(fc.features) > 64:
        candidates = candidates_intersecting(fc, flt.bounds)
    return _filtered(fc, [f for f in candidates if test(f, f)])


_RANGE_TESTS = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal}
_RANGE_TESTS.update({"not_" + op: (lambda a, b, test=test: ~test(a, b)) for op, test in list(_RANGE_TESTS.items())})


def _in_ranges(fc: FeatureCollection, clauses: tuple) -> np.ndarray | None:
    """Which elements pass one of the ``ranges`` clauses (each an and of comparisons of a property with a
    number), tested on each property's column of numbers (kept with the collection: a collection filtered
    for many blocks, say); None where a property holds anything but plain numbers exactly held as doubles
    (nulls, strings, booleans, dates, integers past 2**53): the filter then tests element by element."""
    if fc.value_index is None:
        fc.value_index = {}
    columns = {}
    for field in {c[0] for clause in clauses for c in clause}:
        key = ("numbers", field)
        if key not in fc.value_index:
            values = [field_value(f, field) for f in fc.features]
            exact = set(map(type, values)) <= {int, float} and all(type(v) is float or abs(v) <= 2**53 for v in values)
            fc.value_index[key] = np.array(values, dtype=np.float64) if exact else None
        columns[field] = fc.value_index[key]
        if columns[field] is None:
            return None
    passed = np.zeros(len(fc.features), dtype=bool)
    for clause in clauses:
        keep = np.ones(len(fc.features), dtype=bool)
        for field, op, number in clause:
            keep &= _RANGE_TESTS[op](columns[field], number)
        passed |= keep
    return passed


def _intersecting_any(feats: list[Any], tests: tuple[tuple[str, str, Any, Any], ...]) -> list[Any]:
    """The elements passing one of the ``geometry_test``s of a ``Filter.or`` (each ``Geometry.intersects`` of
    the element's field and a fixed geometry), in order, decided in bulk (:func:`intersects_any`: the scalar
    algorithm's decision for each pair), not element by element and part by part."""
    passed = np.zeros(len(feats), dtype=bool)
    for field in dict.fromkeys(t[0] for t in tests):
        shapes = [_geometry(field_value(f, field)) for f in feats]
        rows = [i for i, g in enumerate(shapes) if g is not None and not passed[i]]
        parts = [t for t in tests if t[0] == field]
        if rows:
            passed[rows] = intersects_any([shapes[i] for i in rows], [t[2] for t in parts], [t[3] for t in parts])
    return [f for f, ok in zip(feats, passed, strict=True) if ok]


def _members_of(fc: FeatureCollection, field: str, values: frozenset, test: Any) -> list[Any]:
    """The elements whose ``field`` is one of ``values``, in order, from the collection's index of that
    property's plain values (built on first use and kept with the collection: a collection filtered by
    zone, say, once per zone); elements without a plain value there are tested one by one."""
    if fc.value_index is None:
        fc.value_index = {}
    index = fc.value_index.get(field)
    if index is None:
        plain: dict[Any, list[int]] = {}
        other: list[int] = []
        for i, f in enumerate(fc.features):
            value = field_value(f, field)
            if type(value) in _PLAIN:
                plain.setdefault(value, []).append(i)
            else:
                other.append(i)
        index = fc.value_index[field] = (plain, other)
    plain, other = index
    feats = fc.features
    picked = {i for v in values if v in plain for i in plain[v]}
    picked.update(i for i in other if test(feats[i], feats[i]))
    return [feats[i] for i in sorted(picked)]


@vectorised("Collection.filter")
def filter_many(n, collection, filter, ctx):  # noqa: A002
    """Bounds filters of one collection, one per element (``filterBounds`` of each cell): candidates from
    one bulk query of the collection's index, then every (element, candidate) pair tested at once."""
    tests = [getattr(f, "geometry_test", None) for f in filter] if isinstance(filter, Column) else [None]
    if isinstance(collection, Column) or any(t is None or t[1] != "intersects" for t in tests):
        return per_element("Collection.filter", n, {"ctx": ctx, "collection": collection, "filter": filter})
    fc = as_collection("Collection.filter", collection)
    _count_scanned(ctx, fc, n)
    feats = fc.features
    if len(feats) > 64:
        candidates = candidates_many(fc, [t[2] for t in tests])
    else:
        candidates = [np.arange(len(feats))] * n
    owner = np.repeat(np.arange(n), [len(c) for c in candidates])
    cand = np.concatenate(candidates).astype(np.int64) if n else np.empty(0, dtype=np.int64)
    lefts = [_geometry(field_value(feats[j], tests[k][0])) for k, j in zip(owner, cand, strict=True)]
    known = np.array([g is not None for g in lefts], dtype=bool)
    passed = np.zeros(len(cand), dtype=bool)
    rows = np.nonzero(known)[0]
    if len(rows):
        passed[rows] = intersects_pairs(
            [lefts[r] for r in rows], [tests[owner[r]][2] for r in rows], [tests[owner[r]][3] for r in rows]
        )
    cuts = np.concatenate([[0], np.cumsum([len(c) for c in candidates])])
    return [
        _filtered(fc, [feats[j] for j, ok in zip(cand[a:b], passed[a:b], strict=True) if ok])
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]


def sort_key(value: Any) -> tuple:
    """Order of property values: numbers, then strings, then anything else; nulls go last."""
    if isinstance(value, Date):
        value = value.millis
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(_info(value), sort_keys=True))


def _info(value: Any) -> Any:
    return to_info(value)


@algorithm("Collection.limit")
def limit(collection, limit, key, ascending):  # noqa: A002
    """Sort by ``key`` (stable, nulls last in either direction), then keep the first ``limit``."""
    fc = as_collection("Collection.limit", collection)
    feats = fc.features
    if key is not None:
        present = [f for f in feats if f.get(key) is not None]
        missing = [f for f in feats if f.get(key) is None]
        present.sort(key=lambda f: sort_key(f.get(key)), reverse=not ascending)
        feats = present + missing
    if limit is not None:
        if limit < 0:
            raise EngineError("Collection.limit: 'limit' must be non-negative.")
        feats = feats[: int(limit)]
    return fc.with_features(list(feats))


@algorithm("Collection.merge")
def merge(collection1, collection2):
    """Both collections' elements; ids get the prefixes ``1_`` and ``2_`` as on Earth Engine."""
    a = as_collection("Collection.merge", collection1)
    b = as_collection("Collection.merge", collection2)
    return FeatureCollection(merged_elements(a, b))


def merged_elements(a: FeatureCollection, b: FeatureCollection) -> list:
    """The elements of ``a`` then ``b``, ids prefixed ``1_`` and ``2_`` as Earth Engine's merges name them."""
    return [f.copy_with(id=f"1_{f.id}") for f in a.features] + [f.copy_with(id=f"2_{f.id}") for f in b.features]


@algorithm("Collection.size")
def size(collection):
    return len(as_collection("Collection.size", collection).features)


@algorithm("Collection.first")
def first(collection):
    """The first element, or null for an empty collection."""
    feats = as_collection("Collection.first", collection).features
    return feats[0] if feats else None


def _call(fn: Any, *args: Any) -> Any:
    if not callable(fn):
        raise EngineError("Collection.map: 'baseAlgorithm' must be a function.")
    return fn(*args)


@algorithm("Collection.map")
def map_(collection, baseAlgorithm, dropNulls):  # noqa: N803
    """Apply the function to each element; results without an id take the input's."""
    fc = as_collection("Collection.map", collection)
    if not callable(baseAlgorithm):
        raise EngineError("Collection.map: 'baseAlgorithm' must be a function.")
    fn: Callable[[Any], Any] = baseAlgorithm
    results = fn.map(fc.features) if hasattr(fn, "map") else [fn(f) for f in fc.features]
    out = []
    for f, r in zip(fc.features, results, strict=True):
        if r is None:
            if dropNulls:
                continue
            raise EngineError("Collection.map: A mapped algorithm must return a Feature or Image, not null.")
        if not isinstance(r, Element):
            raise EngineError(
                "Collection.map: A mapped algorithm must return a Feature or Image, "
                f"not {getattr(r, 'ee_type', type(r).__name__)}."
            )
        if r.id is None and f.id is not None:
            r = r.copy_with(id=f.id)
        out.append(r)
    return fc.with_features(out)


@algorithm("Collection.iterate")
def iterate(collection, function, first):
    fc = as_collection("Collection.iterate", collection)
    acc = first
    for f in fc.features:
        acc = _call(function, f, acc)
    return acc


@algorithm("Collection.toList")
def to_list(collection, count, offset):
    fc = as_collection("Collection.toList", collection)
    count, offset = int(count), int(offset or 0)
    if count < 0 or offset < 0:
        raise EngineError("Collection.toList: 'count' and 'offset' must be non-negative.")
    return list(fc.features[offset : offset + count])


def merged_geometry(name: str, fc: FeatureCollection) -> Any:
    """All geometries of ``fc`` as one multi-geometry (MultiPolygon, MultiLineString,
    MultiPoint, or a GeometryCollection when the kinds differ), not dissolved."""
    geoms = [f.geometry for f in fc.features if getattr(f, "geometry", None) is not None]
    if not geoms:
        return Geometry(shapely.GeometryCollection(), type_name="GeometryCollection")
    proj, geodesic = geoms[0].proj, geoms[0].geodesic
    for g in geoms:
        if g.proj != proj or g.geodesic != geodesic:
            raise EngineError(
                f"{name}: all the geometries of the collection must share the projection and edge interpretation."
            )
    shapes = np.fromiter([g.shape for g in geoms], dtype=object, count=len(geoms))
    parts = shapely.get_parts(shapes)
    parts = list(parts[~shapely.is_empty(parts)])
    kinds = {p.geom_type for p in parts}
    if kinds == {"Polygon"}:
        return Geometry.merged(shapely.MultiPolygon(parts), geoms)
    if kinds == {"LineString"} or kinds == {"LinearRing"}:
        shape = shapely.MultiLineString(parts)
    elif kinds == {"Point"}:
        shape = shapely.MultiPoint(parts)
    else:
        shape = shapely.GeometryCollection(parts)
    return Geometry(shape, proj, geodesic=geodesic)


@algorithm("Collection.geometry")
def geometry(collection, maxError):  # noqa: N803
    return merged_geometry("Collection.geometry", as_collection("Collection.geometry", collection))


@vectorised("Collection.geometry")
def geometry_many(n, collection, maxError):  # noqa: N803
    """Each collection's merged geometry; collections of polygons (the usual case) merged in one call."""
    if not isinstance(collection, Column):
        return per_element("Collection.geometry", n, {"collection": collection, "maxError": maxError})
    colls = [as_collection("Collection.geometry", c) for c in collection]
    geoms = [[f.geometry for f in fc.features if getattr(f, "geometry", None) is not None] for fc in colls]
    shapes = np.fromiter([g.shape for gs in geoms for g in gs], dtype=object, count=sum(map(len, geoms)))
    owner = np.repeat(np.arange(n), [len(gs) for gs in geoms])
    parts, part_of = shapely.get_parts(shapes, return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, part_owner = parts[keep], owner[part_of[keep]]
    polygonal = np.ones(n, dtype=bool)
    np.logical_and.at(polygonal, part_owner, shapely.get_type_id(parts) == 3)
    uniform = [bool(gs) and all(g.proj == gs[0].proj and g.geodesic == gs[0].geodesic for g in gs) for gs in geoms]
    has_parts = np.zeros(n, dtype=bool)
    has_parts[part_owner] = True
    fast = polygonal & has_parts & np.array(uniform, dtype=bool)
    merged: dict[int, Any] = {}
    rows = np.nonzero(fast[part_owner])[0]
    if len(rows):
        which, compact = np.unique(part_owner[rows], return_inverse=True)
        merged = dict(zip(which.tolist(), shapely.multipolygons(parts[rows], indices=compact), strict=True))
    return [
        Geometry.merged(merged[i], geoms[i]) if fast[i] else merged_geometry("Collection.geometry", colls[i])
        for i in range(n)
    ]


@algorithm("Collection.bounds")
def bounds(collection, maxError, proj):  # noqa: N803
    geom = merged_geometry("Collection.bounds", as_collection("Collection.bounds", collection))
    return geometry_algorithm("bounds")(geometry=geom, maxError=maxError, proj=proj)


@algorithm("Collection.union")
def union(collection, maxError):  # noqa: N803
    """One feature with id ``union_result`` whose geometry dissolves all the collection's geometries."""
    geom = merged_geometry("Collection.union", as_collection("Collection.union", collection))
    dissolved = geometry_algorithm("dissolve")(geometry=geom, maxError=maxError, proj=None)
    return FeatureCollection([Feature(dissolved, {}, "union_result")])


@algorithm("Collection.reduceColumns")
def reduce_columns(collection, reducer, selectors, weightSelectors):  # noqa: N803
    """Apply ``reducer`` to the selected properties, one column per selector."""
    fc = as_collection("Collection.reduceColumns", collection)
    n_inputs = getattr(reducer, "input_count", None)
    if n_inputs is not None and n_inputs != len(selectors):
        raise EngineError(
            f"Collection.reduceColumns: Need {n_inputs} input selectors for reducer, but got {len(selectors)}."
        )
    columns = [[f.get(s) for f in fc.features] for s in selectors]
    weights = None
    if weightSelectors:
        if len(weightSelectors) not in (1, len(selectors)):
            raise EngineError("Collection.reduceColumns: weightSelectors must match the selectors.")
        weights = [f.get(weightSelectors[0]) for f in fc.features]
        weights = [0 if w is None else w for w in weights]
    return reducer.reduce(columns, weights) if weights is not None else reducer.reduce(columns)


@algorithm("Collection.remap")
def remap(collection, lookupIn, lookupOut, columnName):  # noqa: N803
    """Map the property's values through the two lists; elements with other values are dropped."""
    fc = as_collection("Collection.remap", collection)
    if len(lookupIn) != len(lookupOut):
        raise EngineError("Collection.remap: lookupIn and lookupOut must have the same length.")
    table = {_hashable(k): v for k, v in zip(lookupIn, lookupOut, strict=True)}
    out = []
    for f in fc.features:
        key = _hashable(f.get(columnName))
        if key in table:
            props = dict(f.properties)
            props[columnName] = table[key]
            out.append(f.copy_with(properties=props))
    return fc.with_features(out)


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | dict):
        return json.dumps(_info(value), sort_keys=True)
    return value


@algorithm("Collection.distinct")
def distinct(collection, properties):
    """The first element of each distinct combination of the properties (``.geo``: the geometry)."""
    fc = as_collection("Collection.distinct", collection)
    names = [properties] if isinstance(properties, str) else list(properties)
    seen: set[str] = set()
    out = []
    for f in fc.features:
        key = json.dumps([_info(_field(f, n)) for n in names], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return fc.with_features(out)


def _field(element: Any, name: str) -> Any:
    return field_value(element, name)


def _row_random(seed: int, key: str) -> float:
    digest = hashlib.blake2b(f"{int(seed)}\x00{key}".encode(), digest_size=8).digest()
    return ((int.from_bytes(digest, "big") >> 11) + 0.5) / float(1 << 53)


@algorithm("Collection.randomColumn")
def random_column(collection, columnName, seed, distribution, rowKeys):  # noqa: N803
    """A deterministic pseudo-random number per element, from the seed and the row keys.

    ``uniform`` draws in [0, 1), ``normal`` from the standard normal. The values
    depend only on (seed, row keys), so they are stable across runs and filters,
    but they are not Earth Engine's values for the same seed.
    """
    fc = as_collection("Collection.randomColumn", collection)
    if distribution not in ("uniform", "normal"):
        raise EngineError(
            f"Collection.randomColumn: Unknown distribution '{distribution}'. Must be 'uniform' or 'normal'."
        )
    keys = list(rowKeys or ["system:index"])
    normal = statistics.NormalDist()
    out = []
    for f in fc.features:
        key = json.dumps([_info(f.get(k)) for k in keys])
        u = _row_random(seed, key)
        value = u if distribution == "uniform" else normal.inv_cdf(u)
        props = dict(f.properties)
        props[columnName] = value
        out.append(f.copy_with(properties=props))
    return fc.with_features(out)


@algorithm("Collection.flatten")
def flatten(collection):
    """Elements of a collection of collections; ids become ``<outer id>_<inner id>``."""
    fc = as_collection("Collection.flatten", collection)
    out = []
    for outer in fc.features:
        if isinstance(outer, FeatureCollection):
            out.extend(f.copy_with(id=f"{outer.id}_{f.id}") for f in outer.features)
        else:
            raise EngineError("Collection.flatten: The collection's elements must be collections.")
    return FeatureCollection(out)

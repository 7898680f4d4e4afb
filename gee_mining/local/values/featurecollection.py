"""FeatureCollection: an ordered list of features plus collection properties.

A collection is an Element too (``ee.Collection`` extends ``ee.Element``):
``fc.set('x', 1)`` sets a collection property and ``fc.get('system:id')``
reads its asset id. Its elements are usually features; a ``map`` that returns
collections gives a collection of collections, which ``flatten`` undoes.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import shapely

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.info import to_info
from gee_mining.local.core.registry import algorithm
from gee_mining.local.values.element import Element
from gee_mining.local.values.feature import Feature
from gee_mining.local.values.geometry import Geometry, covering_cells


def column_type(value: Any) -> str:
    """The ``columns`` type name Earth Engine reports for a property value."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Long"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "List"
    if isinstance(value, dict):
        return "Dictionary"
    return getattr(value, "ee_type", "Object")


class FeatureCollection(Element):
    ee_type = "FeatureCollection"
    id_property = "system:id"
    __slots__ = ("features", "spatial_index", "value_index", "stored")

    def __init__(self, features: list[Any], properties: dict[str, Any] | None = None, id: str | None = None):
        super().__init__(properties, id)
        self.features = list(features)
        self.spatial_index = None
        self.value_index: dict[str, Any] | None = None  # property -> positions by value (collection._members_of)
        self.stored = False  # an asset's elements (or a filter of them): Earth Engine filters it by index

    def copy_with(
        self, features: list[Any] | None = None, properties: dict[str, Any] | None = None, **changes: Any
    ) -> FeatureCollection:
        out = type(self).__new__(type(self))
        out.features = self.features if features is None else features
        out.properties = self.properties if properties is None else properties
        out.id = changes.get("id", self.id)
        out.spatial_index = self.spatial_index if features is None else None
        out.value_index = self.value_index if features is None else None
        out.stored = self.stored if features is None else False
        return out

    def with_features(self, features: list[Any]) -> FeatureCollection:
        """The same collection (id and properties) with other elements."""
        return self.copy_with(features)

    def columns(self) -> dict[str, str]:
        cols: dict[str, str] = {}
        for f in self.features:
            for key, value in getattr(f, "properties", {}).items():
                if value is None:
                    continue
                t = column_type(value)
                if key in cols and cols[key] != t:
                    cols[key] = "Float" if {cols[key], t} == {"Long", "Float"} else "Object"
                else:
                    cols.setdefault(key, t)
        cols["system:index"] = "String"
        return dict(sorted(cols.items()))

    def to_info(self, features: list[Any] | None = None) -> dict:
        info: dict[str, Any] = {"type": "FeatureCollection", "columns": self.columns()}
        if self.id is not None:
            info["id"] = self.id
        if self.properties:
            info["properties"] = to_info(self.properties)
        feats = self.features if features is None else features
        info["features"] = [f.to_info() if isinstance(f, Feature) else to_info(f) for f in feats]
        return info


def as_collection(name: str, value: Any) -> FeatureCollection:
    if not isinstance(value, FeatureCollection):
        raise EngineError(
            f"{name}: expected a FeatureCollection, got {getattr(value, 'ee_type', type(value).__name__)}."
        )
    return value


def _unit_random(seed: int, key: str) -> float:
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)


@algorithm("FeatureCollection.randomPoints")
def random_points(region, points, seed, maxError):  # noqa: N803
    """``points`` points drawn uniformly by area (on the sphere for geographic regions) inside ``region``.

    Deterministic for a given seed, but not Earth Engine's sequence: the same
    seed gives other points than on Earth Engine. Inside-tests are planar in the
    region's coordinates (a geodesic edge's bulge is not followed).
    """
    if region is None:
        raise EngineError("FeatureCollection.randomPoints: Parameter 'region' is required.")
    n = int(points)
    if n < 0:
        raise EngineError("FeatureCollection.randomPoints: 'points' must be non-negative.")
    shape = region.shape
    if shape.is_empty or shape.area == 0:
        raise EngineError("FeatureCollection.randomPoints: The region must be a polygon with a non-zero area.")
    shapely.prepare(shape)
    minx, miny, maxx, maxy = shape.bounds
    geographic = region.proj.is_geographic
    if geographic:
        lo, hi = math.sin(math.radians(max(miny, -90.0))), math.sin(math.radians(min(maxy, 90.0)))
    out: list[Feature] = []
    draw = 0
    limit = max(1000, n * 10_000)
    while len(out) < n:
        if draw > limit:
            raise EngineError("FeatureCollection.randomPoints: could not place the points inside the region.")
        u = _unit_random(int(seed), f"x{draw}")
        v = _unit_random(int(seed), f"y{draw}")
        draw += 1
        x = minx + u * (maxx - minx)
        y = math.degrees(math.asin(lo + v * (hi - lo))) if geographic else miny + v * (maxy - miny)
        if shapely.contains_xy(shape, x, y):
            out.append(Feature(Geometry(shapely.Point(x, y), region.proj), {}, str(len(out))))
    return FeatureCollection(out)


@algorithm("Geometry.coveringGrid")
def covering_grid(geometry, proj, scale):
    """The cells of ``proj``'s grid that intersect ``geometry`` (see :func:`.geometry.covering_cells`):
    each a Feature with id ``"x,y"`` (its integer cell indices), no properties, and a planar polygon in
    ``proj``'s base CRS."""
    return FeatureCollection([Feature(cell, {}, id=cell_id) for cell_id, cell in covering_cells(geometry, proj, scale)])

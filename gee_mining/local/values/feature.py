"""Feature: a geometry (or none) with properties (Earth Engine's ``ee.Feature``).

The geometric ``Feature.*`` algorithms apply the ``Geometry.*`` algorithm of the
same name to the feature's geometry, found through the registry so that this
module depends on nothing private of ``geometry.py``. Those that make a new
geometry return a feature with it and the (left) feature's properties and id;
the others return the geometry algorithm's number or boolean.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from gee_mining.local.core import registry
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.info import _PLAIN, to_info
from gee_mining.local.core.registry import Column, algorithm, per_element, vectorised
from gee_mining.local.values.element import Element
from gee_mining.local.values.geometry import Geometry, infos_many
from gee_mining.local.values.string import selector_pattern


class Feature(Element):
    ee_type = "Feature"
    __slots__ = ("geometry",)

    def __init__(self, geometry: Any = None, properties: dict[str, Any] | None = None, id: str | None = None):
        super().__init__(properties, id)
        self.geometry = geometry

    def copy_with(self, properties: dict[str, Any] | None = None, **changes: Any) -> Feature:
        """A new feature sharing what is not changed (values are never mutated in place)."""
        out = Feature.__new__(Feature)
        out.properties = self.properties if properties is None else properties
        out.id = changes.get("id", self.id)
        out.geometry = changes.get("geometry", self.geometry)
        return out

    def to_info(self) -> dict:
        """GeoJSON of the feature (a page of many is made in bulk by :func:`features_info`)."""
        info: dict[str, Any] = {
            "type": "Feature",
            "geometry": None if self.geometry is None else self.geometry.to_info(),
        }
        if self.id is not None:
            info["id"] = self.id
        info["properties"] = to_info(self.properties)
        return info


def features_info(features: list[Feature], arrays: bool = False) -> list[dict]:
    """``f.to_info()`` of each feature, the coordinates of their geometries, and of the geometries among their
    properties, made in bulk (``infos_many``; with ``arrays``, polygon rings as numpy arrays, for an encoder
    that writes them). One pass makes every feature's dict with its geometries' places held (the same keys
    in the same order), and the geometries' infos, made together, are put in their places."""
    out: list[dict] = []
    geoms: list[Geometry] = []
    places: list[tuple[dict, str]] = []
    for f in features:
        info: dict[str, Any] = {"type": "Feature", "geometry": None}
        if f.geometry is not None:
            geoms.append(f.geometry)
            places.append((info, "geometry"))
        if f.id is not None:
            info["id"] = f.id
        props: dict[str, Any] = {}
        for k, v in f.properties.items():
            if type(v) in _PLAIN:
                props[str(k)] = v
            elif type(v) is Geometry:
                props[str(k)] = None
                geoms.append(v)
                places.append((props, str(k)))
            else:
                props[str(k)] = to_info(v)
        info["properties"] = props
        out.append(info)
    for (holder, key), made in zip(places, infos_many(geoms, arrays), strict=True):
        holder[key] = made
    return out


@functools.cache
def geometry_algorithm(name: str) -> Callable[..., Any]:
    """The implementation of ``Geometry.<name>`` (501 "not implemented" if absent)."""
    return registry.get(f"Geometry.{name}").func


def _as_feature(name: str, value: Any) -> Feature:
    if not isinstance(value, Feature):
        raise EngineError(f"{name}: expected a Feature, got {getattr(value, 'ee_type', type(value).__name__)}.")
    return value


def _geometry_of(op: str, feature: Any) -> Any:
    geom = _as_feature(f"Feature.{op}", feature).geometry
    if geom is None:
        raise EngineError(f"Geometry.{op}: Parameter 'geometry' is required.")
    return geom


def feature_geometry(feature: Any, maxError: Any, proj: Any, geodesics: Any, name: str = "Feature.geometry") -> Any:  # noqa: N803
    """The feature's geometry, in ``proj`` and with ``geodesics`` edges when given."""
    geom = _as_feature(name, feature).geometry
    if geom is None or (proj is None and geodesics is None):
        return geom
    if proj is not None:
        return geometry_algorithm("transform")(geometry=geom, proj=proj, maxError=maxError, geodesic=geodesics)
    if bool(geodesics) == geom.geodesic:
        return geom
    return Geometry(geom.shape, geom.proj, geodesic=bool(geodesics))


@algorithm("Element.geometry")
def element_geometry(feature, maxError, proj, geodesics):  # noqa: N803
    return feature_geometry(feature, maxError, proj, geodesics, "Element.geometry")


@algorithm("Feature")
def feature(geometry, metadata, geometryKey):  # noqa: N803
    """``ee.Feature(geometry, properties)``; a Feature given as geometry lends its geometry."""
    if geometryKey is not None:
        raise EngineError("Feature: the 'geometryKey' argument is not supported by the gee-mining local engine.")
    if metadata is not None and not isinstance(metadata, dict):
        raise EngineError("Feature: 'metadata' must be a Dictionary.")
    props = dict(metadata) if metadata else {}
    new_id = props.pop("system:index", None)
    return Feature(geometry, props, None if new_id is None else str(new_id))


@vectorised("Feature")
def feature_many(n, geometry, metadata, geometryKey):  # noqa: N803
    """``ee.Feature(geometry, properties)`` for each element (a mapped function making thousands): the same
    features made without the per-call dispatch; anything the scalar form refuses goes through it."""
    metas = metadata if isinstance(metadata, Column) else [metadata] * n
    if geometryKey is not None or not all(m is None or type(m) is dict for m in metas):
        return per_element("Feature", n, {"geometry": geometry, "metadata": metadata, "geometryKey": geometryKey})
    geoms = geometry if isinstance(geometry, Column) else [geometry] * n
    out = []
    for geom, meta in zip(geoms, metas, strict=True):
        props = dict(meta) if meta else {}
        new_id = props.pop("system:index", None)
        f = Feature.__new__(Feature)
        f.properties, f.id, f.geometry = props, None if new_id is None else str(new_id), geom
        out.append(f)
    return out


@algorithm("Feature.id")
def id_(element):
    if not isinstance(element, Element):
        raise EngineError("Feature.id: expected an Element.")
    return element.id


@algorithm("Feature.geometry")
def geometry(feature, maxError, proj, geodesics):  # noqa: N803
    return feature_geometry(feature, maxError, proj, geodesics)


@vectorised("Feature.geometry")
def geometry_many(n, feature, maxError, proj, geodesics):  # noqa: N803
    """The features' own geometries (no projection or edge kind asked for); anything else element by element."""
    if proj is None and geodesics is None and isinstance(feature, Column) and all(type(f) is Feature for f in feature):
        return [f.geometry for f in feature]
    return per_element(
        "Feature.geometry", n, {"feature": feature, "maxError": maxError, "proj": proj, "geodesics": geodesics}
    )


@algorithm("Feature.setGeometry")
def set_geometry(feature, geometry):
    return _as_feature("Feature.setGeometry", feature).copy_with(geometry=geometry)


@algorithm("Feature.select")
def select(input, propertySelectors, newProperties, retainGeometry):  # noqa: A002, N803
    """Keep the properties matching the selectors (names or regular expressions), renamed if asked.

    The id is always kept; the output follows the order of the selectors.
    """
    feat = _as_feature("Feature.select", input)
    props = feat.properties
    chosen: list[str] = []
    for selector in propertySelectors:
        if selector in props:
            matches = [selector]
        else:
            pattern = selector_pattern(selector)
            if pattern is None:
                raise EngineError(f"Feature.select: Invalid property selector '{selector}'.")
            matches = [k for k in props if pattern.fullmatch(k)]
        chosen.extend(m for m in matches if m not in chosen)
    if newProperties is not None:
        if len(newProperties) != len(chosen):
            raise EngineError(
                f"Feature.select: The number of new property names ({len(newProperties)}) must match the number "
                f"of selected properties ({len(chosen)})."
            )
        out = {new: props[old] for old, new in zip(chosen, newProperties, strict=True)}
    else:
        out = {k: props[k] for k in chosen}
    return feat.copy_with(out, geometry=feat.geometry if retainGeometry else None)


# -- geometry wrappers ---------------------------------------------------------


def _unary_to_feature(op: str) -> Callable[..., Any]:
    def run(feature, maxError, proj):  # noqa: N803
        geom = geometry_algorithm(op)(geometry=_geometry_of(op, feature), maxError=maxError, proj=proj)
        return feature.copy_with(geometry=geom)

    run.__name__ = op
    run.__doc__ = f"The feature with ``Geometry.{op}`` of its geometry, properties kept."
    return run


def _unary_value(op: str) -> Callable[..., Any]:
    def run(feature, maxError, proj):  # noqa: N803
        return geometry_algorithm(op)(geometry=_geometry_of(op, feature), maxError=maxError, proj=proj)

    run.__name__ = op
    run.__doc__ = f"``Geometry.{op}`` of the feature's geometry."
    return run


def _binary_to_feature(op: str) -> Callable[..., Any]:
    def run(left, right, maxError, proj):  # noqa: N803
        geom = geometry_algorithm(op)(
            left=_geometry_of(op, left), right=_geometry_of(op, right), maxError=maxError, proj=proj
        )
        return left.copy_with(geometry=geom)

    run.__name__ = op
    run.__doc__ = f"The left feature with ``Geometry.{op}`` of both geometries, the left's properties kept."
    return run


def _binary_value(op: str) -> Callable[..., Any]:
    def run(left, right, maxError, proj):  # noqa: N803
        return geometry_algorithm(op)(
            left=_geometry_of(op, left), right=_geometry_of(op, right), maxError=maxError, proj=proj
        )

    run.__name__ = op
    run.__doc__ = f"``Geometry.{op}`` of the two features' geometries."
    return run


for _op in ("bounds", "centroid", "convexHull", "simplify"):
    algorithm(f"Feature.{_op}")(_unary_to_feature(_op))
for _op in ("area", "length", "perimeter"):
    algorithm(f"Feature.{_op}")(_unary_value(_op))
for _op in ("difference", "intersection", "symmetricDifference", "union"):
    algorithm(f"Feature.{_op}")(_binary_to_feature(_op))
for _op in ("containedIn", "contains", "disjoint", "intersects", "closestPoint", "closestPoints"):
    algorithm(f"Feature.{_op}")(_binary_value(_op))


@algorithm("Feature.dissolve")
def dissolve(feature, maxError, proj):  # noqa: N803
    geom = geometry_algorithm("dissolve")(geometry=_geometry_of("dissolve", feature), maxError=maxError, proj=proj)
    return feature.copy_with(geometry=geom)


@algorithm("Feature.buffer")
def buffer(feature, distance, maxError, proj):  # noqa: N803
    geom = geometry_algorithm("buffer")(
        geometry=_geometry_of("buffer", feature), distance=distance, maxError=maxError, proj=proj
    )
    return feature.copy_with(geometry=geom)


@algorithm("Feature.cutLines")
def cut_lines(feature, distances, maxError, proj):  # noqa: N803
    geom = geometry_algorithm("cutLines")(
        geometry=_geometry_of("cutLines", feature), distances=distances, maxError=maxError, proj=proj
    )
    return feature.copy_with(geometry=geom)


@algorithm("Feature.transform")
def transform(feature, proj, maxError, geodesic):  # noqa: N803
    geom = geometry_algorithm("transform")(
        geometry=_geometry_of("transform", feature), proj=proj, maxError=maxError, geodesic=geodesic
    )
    return feature.copy_with(geometry=geom)


@algorithm("Feature.distance")
def distance(left, right, maxError, proj, spherical):  # noqa: N803
    return geometry_algorithm("distance")(
        left=_geometry_of("distance", left),
        right=_geometry_of("distance", right),
        maxError=maxError,
        proj=proj,
        spherical=spherical,
    )


@algorithm("Feature.withinDistance")
def within_distance(left, right, distance, maxError, proj):  # noqa: N803
    return geometry_algorithm("withinDistance")(
        left=_geometry_of("withinDistance", left),
        right=_geometry_of("withinDistance", right),
        distance=distance,
        maxError=maxError,
        proj=proj,
    )

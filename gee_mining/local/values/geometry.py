"""Geometry: a shapely geometry in a projection, geodesic or planar.

Earth Engine's rules, as implemented here:

- Coordinates are in the geometry's projection (EPSG:4326 by default). A
  geodesic geometry's edges are shortest paths on the Earth; a planar one's are
  straight in its projection. Only geographic geometries can be geodesic.
- Without a ``proj`` argument, area, length, perimeter, distance and buffer
  distances are in metres on the WGS84 ellipsoid (``pyproj.Geod``): geodesic
  edges are measured exactly; planar edges are first densified until the
  geodesics between their vertices stay within ``maxError`` of them. With
  ``proj``, the work is planar in that projection and in its units.
- Whenever a geometry changes projection, or its edges change kind (geodesic to
  straight), its edges are densified until the reprojected curve is within
  ``maxError`` (metres) of the straight edges that replace it. An analytic
  bound on that deviation (``L**2 * (tan(lat) + 1) / (8 R)`` for an edge of length
  ``L``) makes this a no-op, with no per-edge Python work, for the small
  polygons the product handles (edges of a few km or less).
- Topology (intersects, union, ...) is computed with shapely in the common
  planar space: EPSG:4326 longitude/latitude (geodesic edges densified), the
  shared CRS of two planar geometries, or ``proj`` when given.
- Buffer, centroid and simplify of a geographic geometry are computed in a
  local azimuthal equidistant projection (AEQD, WGS84) centred near the
  geometry: distances from the centre are exact and other distortion is below
  ``(r / R)**2 / 6`` (2e-6 for a geometry 50 km across). The centre is snapped to
  a 0.25 degree grid so the cached transformers are shared by nearby geometries.

Geometries crossing the antimeridian are not specially handled (their
longitudes must be continuous), and unbounded geometries are not represented.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.affinity
import shapely.ops

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import Column, algorithm, per_element, vectorised
from gee_mining.local.core.types import promotion, signature_default
from gee_mining.local.values.projection import (
    LOCAL_PREFIX,
    WGS84,
    Projection,
    is_geographic,
    meters_per_unit,
    transformer,
)

GEOD = pyproj.Geod(ellps="WGS84")
EARTH_RADIUS = 6378137.0
DEFAULT_MAX_ERROR = 1.0  # metres, when an algorithm's maxError is unspecified
LONLAT = "EPSG:4326"
MAX_GRID_CANDIDATES = 20_000_000

_GEOJSON_TYPES = {
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "LinearRing",
    "GeometryCollection",
}
_POLYGONAL = ("Polygon", "MultiPolygon")
_LINEAR = ("LineString", "LinearRing", "MultiLineString")


class ErrorMargin:
    """``ee.ErrorMargin``: a tolerance in metres or projected units, or infinite."""

    ee_type = "ErrorMargin"

    def __init__(self, value: float = 0.0, unit: str = "meters"):
        self.value = float(value)
        self.unit = unit

    def to_info(self) -> dict:
        info: dict[str, Any] = {"type": "ErrorMargin", "unit": self.unit}
        if self.unit != "infinite":
            info["value"] = int(self.value) if self.value.is_integer() else self.value
        return info


class Geometry:
    """``shape`` holds coordinates in ``proj``'s CRS units (``proj`` has no transform)."""

    ee_type = "Geometry"
    __slots__ = ("shape", "proj", "geodesic", "type_name", "even_odd", "_in_crs", "_members")

    def __init__(
        self,
        shape: shapely.Geometry,
        proj: Projection = WGS84,
        geodesic: bool | None = None,
        type_name: str | None = None,
        even_odd: bool = True,
    ):
        if not proj.is_identity:
            shape = shapely.affinity.affine_transform(shape, proj.forward())
            proj = proj.base
        self.shape = shape
        self.proj = proj
        self.geodesic = proj.is_geographic if geodesic is None else bool(geodesic and proj.is_geographic)
        self.type_name = type_name if type_name in _GEOJSON_TYPES else shape.geom_type
        self.even_odd = even_odd
        self._in_crs: dict | None = None  # reprojections kept (see in_crs); set here: an unset slot is slow to test
        self._members: tuple[Geometry, ...] | None = None  # see merged

    @property
    def crs(self) -> str:
        return self.proj.crs

    @property
    def edges_geodesic(self) -> bool:
        return self.geodesic and self.shape.geom_type not in ("Point", "MultiPoint")

    @classmethod
    def merged(cls, shape: shapely.MultiPolygon, members: Sequence[Geometry]) -> Geometry:
        """The MultiPolygon made of the polygons of ``members`` (geometries sharing one projection and
        edge kind), in order: reprojected member by member through their caches (see :func:`in_crs`),
        so that a polygon merged into many collections' geometries is reprojected once."""
        first = members[0]
        geom = cls(shape, first.proj, first.geodesic)
        geom._members = tuple(members)
        return geom

    def replace(self, shape: shapely.Geometry, type_name: str | None = None) -> Geometry:
        """The same projection and edge kind with another shape."""
        return Geometry(shape, self.proj, self.geodesic, type_name)

    def to_info(self, coordinates: list | None = None) -> dict:
        """GeoJSON of the geometry (``coordinates``: its shape's, when already made in bulk)."""
        info = _shape_info(self.shape, self.type_name, coordinates)
        if not (self.proj.crs == LONLAT):
            info["crs"] = {"type": "name", "properties": {"name": self.proj.crs}}
        if self.proj.is_geographic and not self.geodesic and info["type"] not in ("Point", "MultiPoint"):
            info["geodesic"] = False
        if not self.even_odd and info["type"] in _POLYGONAL:
            info["evenOdd"] = False
        return info

    def __repr__(self) -> str:
        return f"Geometry({self.shape.wkt[:80]}, {self.proj.crs}, geodesic={self.geodesic})"


def _shape_info(shape: shapely.Geometry, type_name: str | None = None, coordinates: list | None = None) -> dict:
    if coordinates is not None and type_name in _GEOJSON_TYPES and type_name != "GeometryCollection":
        return {"type": type_name, "coordinates": coordinates}  # made in bulk, for a shape of this type
    if shape.geom_type == "GeometryCollection":
        return {"type": "GeometryCollection", "geometries": [_shape_info(g) for g in shapely.get_parts(shape)]}
    kind = type_name if type_name in _GEOJSON_TYPES and type_name != "GeometryCollection" else shape.geom_type
    return {"type": kind, "coordinates": _coordinates(shape) if coordinates is None else coordinates}


def infos_many(geoms: list[Geometry], arrays: bool = False) -> list[dict]:
    """``g.to_info()`` of each geometry, the coordinates of all (multi)polygons, and of all points, taken in
    one call each: what a page of thousands of features is made of. With ``arrays``, each ring's coordinates
    are an ``(n, 2)`` numpy array (a view of one array), for an encoder that writes arrays as JSON lists (the
    service's orjson): no Python float or list is made per vertex."""
    shapes = _object_array([g.shape for g in geoms])
    types, full = shapely.get_type_id(shapes), ~shapely.is_empty(shapes)
    bulk = np.nonzero(np.isin(types, (3, 6)) & full)[0]
    coords: list[Any] = [None] * len(geoms)
    for i, c in zip(bulk.tolist(), _polygon_coordinates_many(shapes[bulk], arrays), strict=True):
        coords[i] = c
    points = np.nonzero((types == 0) & full)[0]
    for i, c in zip(points.tolist(), shapely.get_coordinates(shapes[points]).tolist(), strict=True):
        coords[i] = c
    out = []
    for g, c in zip(geoms, coords, strict=True):
        kind = g.type_name
        if c is None or kind == "GeometryCollection" or g.proj.crs != LONLAT:
            out.append(g.to_info(c))
            continue
        info = {"type": kind, "coordinates": c}  # what g.to_info(c) makes for lon/lat (a geographic CRS)
        if not g.geodesic and kind not in ("Point", "MultiPoint"):
            info["geodesic"] = False
        if not g.even_odd and kind in _POLYGONAL:
            info["evenOdd"] = False
        out.append(info)
    return out


def _polygon_coordinates_many(shapes: np.ndarray, arrays: bool = False) -> list[list]:
    """:func:`_coordinates` of non-empty polygons and multipolygons: every vertex in one list (or array), sliced.
    Polygons without holes (a buffer's, most mines') are sliced from their own coordinates, the others through
    their parts and rings (which shapely copies)."""
    simple = (shapely.get_type_id(shapes) == 3) & (shapely.get_num_interior_rings(shapes) == 0)
    if not simple.all():
        out: list[Any] = [None] * len(shapes)
        for rows, coords in ((simple, _rings_of_simple), (~simple, _coordinates_by_rings)):
            idx = np.nonzero(rows)[0]
            for i, c in zip(idx.tolist(), coords(shapes[idx], arrays), strict=True):
                out[i] = c
        return out
    return _rings_of_simple(shapes, arrays)


def _rings_of_simple(shapes: np.ndarray, arrays: bool) -> list[list]:
    """:func:`_coordinates` of polygons without holes: each one ring, all of their coordinates."""
    xy = shapely.get_coordinates(shapes)
    points = xy if arrays else xy.tolist()
    cuts = np.cumsum(np.concatenate([[0], shapely.get_num_coordinates(shapes)])).tolist()
    return [[points[a:b]] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _coordinates_by_rings(shapes: np.ndarray, arrays: bool) -> list[list]:
    """:func:`_coordinates` of non-empty polygons and multipolygons, through their parts and rings."""
    parts, part_owner = shapely.get_parts(shapes, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    points = xy if arrays else xy.tolist()
    cuts = np.searchsorted(ring_of, np.arange(len(rings) + 1)).tolist()
    ring_lists = [points[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    cuts = np.searchsorted(ring_part, np.arange(len(parts) + 1)).tolist()
    part_lists = [ring_lists[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    cuts = np.searchsorted(part_owner, np.arange(len(shapes) + 1)).tolist()
    multi = (shapely.get_type_id(shapes) == 6).tolist()
    return [part_lists[a:b] if m else part_lists[a] for a, b, m in zip(cuts[:-1], cuts[1:], multi, strict=True)]


def _coordinates(shape: shapely.Geometry) -> list:
    kind = shape.geom_type
    if shape.is_empty:
        return []
    if kind == "Point":
        return [float(shape.x), float(shape.y)]
    if kind in ("LineString", "LinearRing"):
        return np.asarray(shape.coords)[:, :2].tolist()
    if kind == "Polygon":
        return [_coordinates(shape.exterior)] + [_coordinates(r) for r in shape.interiors]
    if kind == "GeometryCollection":
        return [_coordinates(g) for g in shape.geoms]
    return [_coordinates(g) for g in shape.geoms]


# -- error margins ----------------------------------------------------------------


def max_error_m(
    margin: ErrorMargin | None, default: float = DEFAULT_MAX_ERROR, proj: Projection | None = None
) -> float:
    """An ErrorMargin in metres (``inf`` for an infinite one)."""
    if margin is None:
        return default
    if margin.unit == "infinite":
        return math.inf
    value = max(margin.value, 0.0)
    if margin.unit == "projected" and proj is not None:
        return value * proj.nominal_scale()
    return value if value > 0 else default


# -- reprojection with densification ------------------------------------------------


def _is_tame(crs: str) -> bool:
    """CRSs whose geodesics and lines bend no more than parallels do (the analytic bound holds)."""
    if crs.startswith(LOCAL_PREFIX):
        return True
    if crs.startswith("EPSG:326") or crs.startswith("EPSG:327"):
        return len(crs) == 10
    return is_geographic(crs)


def _edge_mask(shape: shapely.Geometry) -> np.ndarray:
    """For the coordinates of ``shape`` (``shapely.get_coordinates`` order), whether
    each consecutive pair is an edge (and not a jump between rings or parts)."""
    seqs: list[shapely.Geometry] = []
    for part in _flat_parts(shape):
        seqs.extend([part.exterior, *part.interiors] if part.geom_type == "Polygon" else [part])
    counts = shapely.get_num_coordinates(np.array(seqs, dtype=object)).astype(np.int64)
    is_edge = np.concatenate(
        [
            np.append(np.full(max(n - 1, 0), s.geom_type != "Point"), False) if n else []
            for s, n in zip(seqs, counts, strict=True)
        ]
    ).astype(bool)
    return is_edge[:-1]


def _bbox_small(bounds: Any, lonlat: np.ndarray | None, src: str, max_err: float) -> bool:
    """Whether the bound holds for an edge as long as the bounding box's diagonal,
    hence for every edge: an O(1) test that settles small geometries."""
    x0, y0, x1, y1 = bounds
    if is_geographic(src):
        lat = math.radians(min(max(abs(y0), abs(y1)), 89.0))
        diag = math.hypot((x1 - x0) * 111_320.0, (y1 - y0) * 110_600.0) * 1.01
    else:
        diag = math.hypot(x1 - x0, y1 - y0) * meters_per_unit(src) * 1.01
        lat_deg = 84.0 if lonlat is None or not len(lonlat) else min(float(np.abs(lonlat[:, 1]).max()), 89.0)
        lat = math.radians(lat_deg)
    return 2.0 * diag**2 * (math.tan(lat) + 1.0) / (8.0 * 6_356_752.0) <= max_err


def _edges_small(xy: np.ndarray, lonlat: np.ndarray | None, src: str, max_err: float, mask: np.ndarray | None) -> bool:
    """Whether every edge's curvature deviation is provably under ``max_err`` metres."""
    if len(xy) < 2:
        return True
    bound = _edge_bounds(xy, lonlat, src)
    if mask is not None:
        bound = bound[mask[: len(bound)]]
    return bool(np.all(bound <= max_err))


def _edge_bounds(xy: np.ndarray, lonlat: np.ndarray | None, src: str) -> np.ndarray:
    """For each pair of consecutive points, the analytic bound (metres) on how far the edge between them
    bends when it changes projection or kind (``lonlat``: the points in longitude and latitude, for a
    projected ``src``; without them, the worst latitude UTM allows)."""
    d = np.diff(xy, axis=0)
    if is_geographic(src):
        lat = np.radians(np.maximum(np.abs(xy[:-1, 1]), np.abs(xy[1:, 1])))
        length = np.hypot(d[:, 0] * np.cos(lat) * 111_320.0, d[:, 1] * 110_600.0) * 1.01
        lat_max = np.minimum(lat, np.radians(89.0))
    else:
        length = np.hypot(d[:, 0], d[:, 1]) * meters_per_unit(src) * 1.01
        if lonlat is not None:
            lat_max = np.radians(np.minimum(np.maximum(np.abs(lonlat[:-1, 1]), np.abs(lonlat[1:, 1])), 89.0))
        else:
            lat_max = np.full(len(length), np.radians(84.0))
    return 2.0 * length**2 * (np.tan(lat_max) + 1.0) / (8.0 * 6_356_752.0)


def _transform_xy(xy: np.ndarray, src: str, dst: str) -> np.ndarray:
    if src == dst or len(xy) == 0:
        return xy
    x, y = transformer(src, dst).transform(xy[:, 0], xy[:, 1])
    out = np.column_stack([x, y])
    if not math.isfinite(float(out.sum())):
        raise EngineError(f"Geometry: Unable to transform coordinates from {src} to {dst}.")
    return out


def _midpoints(xy: np.ndarray, crs: str, geodesic: bool) -> np.ndarray:
    return _edge_midpoints(xy[:-1], xy[1:], crs, geodesic)


def _edge_midpoints(a: np.ndarray, b: np.ndarray, crs: str, geodesic: bool) -> np.ndarray:
    """Midpoints of the edges from ``a[i]`` to ``b[i]`` (geodesic or straight in ``crs``)."""
    if not geodesic:
        return (a + b) / 2.0
    ll_a = _transform_xy(a, crs, LONLAT)
    ll_b = _transform_xy(b, crs, LONLAT)
    az, _, dist = GEOD.inv(ll_a[:, 0], ll_a[:, 1], ll_b[:, 0], ll_b[:, 1])
    lon, lat, _ = GEOD.fwd(ll_a[:, 0], ll_a[:, 1], az, np.asarray(dist) / 2.0)
    lon = np.asarray(lon)
    # keep longitudes continuous with the edge's start
    lon = np.where(lon - ll_a[:, 0] > 180, lon - 360, np.where(lon - ll_a[:, 0] < -180, lon + 360, lon))
    return _transform_xy(np.column_stack([lon, lat]), LONLAT, crs)


def _deviation_m(p: np.ndarray, q: np.ndarray, crs: str) -> np.ndarray:
    d = p - q
    if is_geographic(crs):
        lat = np.radians(np.clip((p[:, 1] + q[:, 1]) / 2.0, -90, 90))
        return np.hypot(d[:, 0] * np.cos(lat) * 111_320.0, d[:, 1] * 110_600.0)
    return np.hypot(d[:, 0], d[:, 1]) * meters_per_unit(crs)


def _densify_seq(xy: np.ndarray, src: str, dst: str, src_geo: bool, dst_geo: bool, max_err: float) -> np.ndarray:
    """One coordinate sequence reprojected, with vertices added until each new
    edge (geodesic if ``dst_geo``) is within ``max_err`` metres of the old one."""
    xy = np.asarray(xy, dtype=float)[:, :2]
    if len(xy) < 2 or not math.isfinite(max_err):
        return _transform_xy(xy, src, dst)
    if src == dst and src_geo == dst_geo:
        return xy
    out = _transform_xy(xy, src, dst)
    if _is_tame(src) and _is_tame(dst):
        lonlat = out if is_geographic(dst) else None
        if _bbox_small((*xy.min(axis=0), *xy.max(axis=0)), lonlat, src, max_err) or _edges_small(
            xy, lonlat, src, max_err, None
        ):
            return out
    pts = xy
    for _ in range(30):
        mids = _midpoints(pts, src, src_geo)
        mids_dst = _transform_xy(mids, src, dst)
        chord = _midpoints(out, dst, dst_geo)
        bad = _deviation_m(mids_dst, chord, dst) > max_err
        if not bad.any():
            return out
        idx = np.nonzero(bad)[0] + 1
        pts = np.insert(pts, idx, mids[bad], axis=0)
        out = np.insert(out, idx, mids_dst[bad], axis=0)
    return out


def _rebuild(shape: shapely.Geometry, fn: Callable[[np.ndarray], np.ndarray]) -> shapely.Geometry:
    """``shape`` with every coordinate sequence passed through ``fn``."""
    kind = shape.geom_type
    if shape.is_empty:
        return shape
    if kind == "Point":
        return shapely.Point(fn(np.asarray(shape.coords))[0])
    if kind == "LineString":
        return shapely.LineString(fn(np.asarray(shape.coords)))
    if kind == "LinearRing":
        return shapely.LinearRing(fn(np.asarray(shape.coords)))
    if kind == "Polygon":
        return shapely.Polygon(
            fn(np.asarray(shape.exterior.coords)), [fn(np.asarray(r.coords)) for r in shape.interiors]
        )
    parts = [_rebuild(g, fn) for g in shape.geoms]
    return type(shape)(parts)


def reproject(
    shape: shapely.Geometry, src: str, dst: str, src_geo: bool, dst_geo: bool, max_err: float
) -> shapely.Geometry:
    """``shape`` from CRS ``src`` to ``dst``: its edges (geodesic or straight, per
    ``src_geo``) become edges of kind ``dst_geo`` within ``max_err`` metres."""
    if shape.is_empty:
        return shape
    if src == dst and src_geo == dst_geo:
        return shape
    only_points = shape.geom_type in ("Point", "MultiPoint")
    if only_points or not math.isfinite(max_err):
        return shape if src == dst else shapely.transform(shape, lambda xy: _transform_xy(xy, src, dst))
    if _is_tame(src) and _is_tame(dst):
        if _bbox_small(shape.bounds, None, src, max_err):
            return shape if src == dst else shapely.transform(shape, lambda xy: _transform_xy(xy, src, dst))
        xy = shapely.get_coordinates(shape)
        out = _transform_xy(xy, src, dst)
        lonlat = out if is_geographic(dst) else None
        if _bbox_small(shape.bounds, lonlat, src, max_err) or _edges_small(xy, lonlat, src, max_err, _edge_mask(shape)):
            return shape if src == dst else shapely.transform(shape, lambda _xy: out)
    return _rebuild(shape, lambda xy: _densify_seq(xy, src, dst, src_geo, dst_geo, max_err))


def in_crs(geom: Geometry, crs: str, max_err: float, geodesic: bool = False) -> shapely.Geometry:
    """``geom``'s shape in ``crs`` with edges of the given kind, within ``max_err`` metres.

    Kept on the (immutable) geometry: a polygon tested against many grid cells,
    or a cell measured several ways, is reprojected once per target."""
    cache = geom._in_crs
    if cache is None:
        cache = geom._in_crs = {}
    key = (crs, max_err, geodesic)
    shape = cache.get(key)
    if shape is None:
        if geom._members is not None:
            return in_crs_many([geom], crs, max_err, geodesic)[0]
        if len(cache) > 8:
            cache.clear()
        shape = cache[key] = reproject(geom.shape, geom.crs, crs, geom.edges_geodesic, geodesic, max_err)
    return shape


def in_proj(geom: Geometry, proj: Projection, max_err: float) -> shapely.Geometry:
    """``geom``'s shape in the units of ``proj`` (its transform applied), straight edges."""
    shape = in_crs(geom, proj.crs, max_err, False)
    if not proj.is_identity:
        shape = shapely.affinity.affine_transform(shape, proj.inverse())
    return shape


def from_proj(shape: shapely.Geometry, proj: Projection) -> Geometry:
    """A planar Geometry from a shape in ``proj``'s units."""
    return Geometry(shape, proj, geodesic=False)


def geodesic_lonlat(geom: Geometry, max_err: float) -> shapely.Geometry:
    """``geom`` in EPSG:4326 with geodesic edges (for measuring on the ellipsoid)."""
    return in_crs(geom, LONLAT, max_err, geodesic=True)


# -- local metric projection --------------------------------------------------------


def local_crs(shape_lonlat: shapely.Geometry) -> str:
    """An AEQD CRS centred near a lon/lat shape (snapped, so transformers are shared)."""
    x0, y0, x1, y1 = shapely.bounds(shape_lonlat)
    if x1 - x0 > 180.0:  # parts on both sides of the antimeridian: centred the narrower way round
        lon_all = shapely.get_coordinates(shape_lonlat)[:, 0]
        shifted = np.where(lon_all < 0, lon_all + 360.0, lon_all)
        if shifted.max() - shifted.min() < x1 - x0:
            x0, x1 = float(shifted.min()), float(shifted.max())
    lon, lat = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    if max(x1 - x0, y1 - y0) < 2.0:
        lon, lat = round(lon * 4) / 4, round(lat * 4) / 4
    return _local_crs_at(lon, lat)


def _local_crs_at(lon: float, lat: float) -> str:
    """The AEQD CRS centred at ``lon``, ``lat`` (wrapped and clamped): :func:`local_crs`'s string."""
    lon = ((lon + 180.0) % 360.0) - 180.0
    lat = min(max(lat, -90.0), 90.0)
    return f"{LOCAL_PREFIX}+lat_0={lat:.6f} +lon_0={lon:.6f} +ellps=WGS84 +units=m +no_defs +type=crs"


def _local(geom: Geometry, max_err: float) -> tuple[shapely.Geometry, str]:
    """``geom`` in a local AEQD projection (straight edges), and that CRS."""
    ll = in_crs(geom, LONLAT, max_err, geom.edges_geodesic) if geom.crs != LONLAT else geom.shape
    crs = local_crs(ll)
    return reproject(ll, LONLAT, crs, geom.edges_geodesic, False, max_err), crs


def _back(shape: shapely.Geometry, local: str, geom: Geometry, max_err: float) -> Geometry:
    """A local-AEQD shape back in ``geom``'s projection, with ``geom``'s edge kind."""
    shape = reproject(shape, local, geom.crs, False, geom.geodesic, max_err)
    return Geometry(shape, geom.proj, geom.geodesic)


# -- parts ------------------------------------------------------------------------


def _flat_parts(shape: shapely.Geometry) -> list[shapely.Geometry]:
    if shape.geom_type in ("Polygon", "LineString", "Point", "LinearRing"):
        return [shape]
    out: list[shapely.Geometry] = []
    for part in shapely.get_parts(shape):
        if part.geom_type == "GeometryCollection" or part.geom_type.startswith("Multi"):
            out.extend(_flat_parts(part))
        else:
            out.append(part)
    return out


def _polygons(shape: shapely.Geometry) -> list[shapely.Polygon]:
    return [p for p in _flat_parts(shape) if p.geom_type == "Polygon" and not p.is_empty]


def _lines(shape: shapely.Geometry) -> list[shapely.Geometry]:
    return [p for p in _flat_parts(shape) if p.geom_type in ("LineString", "LinearRing") and not p.is_empty]


def _ring_area(ring: shapely.Geometry) -> float:
    xy = shapely.get_coordinates(ring)
    area, _ = GEOD.polygon_area_perimeter(xy[:, 0], xy[:, 1])
    return abs(area)


def _line_length(line: shapely.Geometry) -> float:
    xy = shapely.get_coordinates(line)
    return float(GEOD.line_length(xy[:, 0], xy[:, 1]))


# -- common space for binary operations -----------------------------------------------


def _space(left: Geometry, right: Geometry | None, proj: Projection | None) -> tuple[Projection, bool]:
    """The projection binary operations run in, and whether results are geodesic."""
    if proj is not None:
        return proj, False
    geoms = [left] if right is None else [left, right]
    if all(g.crs == left.crs for g in geoms) and not any(g.edges_geodesic for g in geoms):
        return left.proj, left.geodesic
    return WGS84, any(g.geodesic for g in geoms)


def _pair(
    left: Geometry, right: Geometry, maxError, proj
) -> tuple[shapely.Geometry, shapely.Geometry, Projection, bool]:
    space, geodesic = _space(left, right, proj)
    err = max_error_m(maxError, proj=space)
    return in_proj(left, space, err), in_proj(right, space, err), space, geodesic


def _result(shape: shapely.Geometry, space: Projection, geodesic: bool) -> Geometry:
    if not space.is_identity:
        shape = shapely.affinity.affine_transform(shape, space.forward())
    return Geometry(shape, space.base, geodesic)


def _clean(shape: shapely.Geometry) -> shapely.Geometry:
    """A valid shape for overlay operations (bow-ties and self-intersections repaired)."""
    return shape if shape.is_valid else shapely.make_valid(shape)


# -- geometry constructors ------------------------------------------------------------


def _ctor_proj(crs: Any, coordinates: Any) -> Projection:
    if crs is not None:
        return Projection.coerce(crs)
    projs = {g.crs for g in _geometries_in(coordinates)}
    if len(projs) == 1:
        return Projection(projs.pop())
    return WGS84


def _geometries_in(value: Any) -> list[Geometry]:
    if isinstance(value, Geometry):
        return [value]
    if isinstance(value, list | tuple):
        return [g for v in value for g in _geometries_in(v)]
    return []


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _resolve(name: str, value: Any, proj: Projection, max_err: float) -> Any:
    """Coordinates with Geometry points replaced by their coordinates in ``proj``."""
    if isinstance(value, Geometry):
        shape = in_proj(value, proj, max_err)
        if shape.geom_type != "Point":
            raise EngineError(f"{name}: Invalid coordinates: expected a point but got a {value.type_name}.")
        return [shape.x, shape.y]
    if isinstance(value, list | tuple):
        if value and all(_is_number(v) for v in value) and len(value) > 2 and len(value) % 2 == 0:
            return [[float(value[i]), float(value[i + 1])] for i in range(0, len(value), 2)]
        return [_resolve(name, v, proj, max_err) for v in value]
    if _is_number(value):
        return float(value)
    raise EngineError(f"{name}: Invalid coordinates: {value!r}.")


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        value = value[0]
        depth += 1
    return depth


def _nest(name: str, coords: Any, depth: int) -> list:
    """Coordinates wrapped to ``depth`` levels (a point is depth 1), as the client's ``_fixDepth``."""
    if not isinstance(coords, list):
        raise EngineError(f"{name}: Invalid coordinates: {coords!r}.")
    if not coords:
        return []
    if all(_is_number(c) for c in coords) and len(coords) != 2:
        coords = [coords[i : i + 2] for i in range(0, len(coords), 2)]
    level = _depth(coords)
    while level < depth:
        coords = [coords]
        level += 1
    if level != depth:
        raise EngineError(f"{name}: Invalid geometry: coordinates are nested {level} levels deep, expected {depth}.")
    return coords


def _point(name: str, xy: Any, proj: Projection) -> tuple[float, float]:
    if not isinstance(xy, list) or len(xy) != 2 or not all(_is_number(v) for v in xy):
        raise EngineError(f"{name}: Invalid coordinates: a point needs 2 numbers, got {xy!r}.")
    x, y = float(xy[0]), float(xy[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise EngineError(f"{name}: Invalid coordinates: non-finite value in {xy!r}.")
    if proj.is_geographic and abs(y) > 90 and proj.is_identity:
        raise EngineError(f"{name}: Latitude out of range: {y} (must be between -90 and 90).")
    return x, y


def _line(name: str, pts: list, proj: Projection, minimum: int = 2) -> list[tuple[float, float]]:
    line = [_point(name, p, proj) for p in pts]
    if len(line) < minimum:
        raise EngineError(f"{name}: Invalid geometry: a LineString needs at least {minimum} points, got {len(line)}.")
    return line


def _ring(name: str, pts: list, proj: Projection) -> list[tuple[float, float]]:
    ring = [_point(name, p, proj) for p in pts]
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring = ring[:-1]
    if len(set(ring)) < 3:
        raise EngineError(
            f"{name}: Invalid geometry: a LinearRing needs at least 3 distinct points, got {len(set(ring))}."
        )
    return ring + [ring[0]]


def _polygon(name: str, rings: list, proj: Projection, even_odd: bool) -> shapely.Polygon:
    if not rings:
        return shapely.Polygon()
    shell, *holes = [_ring(name, r, proj) for r in rings]
    if not even_odd and not shapely.LinearRing(shell).is_ccw:
        raise EngineError(
            f"{name}: a clockwise shell with evenOdd=false describes the outside of the ring, "
            "an unbounded polygon the gee-mining local engine does not support."
        )
    return shapely.Polygon(shell, holes)


def _make(
    name: str,
    kind: str,
    coordinates: Any,
    crs: Any,
    geodesic: Any,
    maxError: Any,  # noqa: N803
    evenOdd: Any = True,  # noqa: N803
) -> Geometry:
    proj = _ctor_proj(crs, coordinates)
    err = max_error_m(maxError, proj=proj)
    if geodesic is None:
        inputs = _geometries_in(coordinates)
        geodesic = any(g.geodesic for g in inputs) if inputs else None
    depth = {"Point": 1, "MultiPoint": 2, "LineString": 2, "LinearRing": 2, "MultiLineString": 3, "Polygon": 3}
    depth["MultiPolygon"] = 4
    coords = _nest(name, _resolve(name, coordinates, proj, err), depth[kind])
    even_odd = True if evenOdd is None else bool(evenOdd)
    if kind == "Point":
        shape = shapely.Point(_point(name, coords, proj)) if coords else shapely.Point()
    elif kind == "MultiPoint":
        try:  # numbers, as _resolve left them
            xy = np.array(coords, dtype=np.float64) if coords else np.empty((0, 2))
        except (TypeError, ValueError):
            xy = np.empty((0, 0))
        if xy.ndim == 2 and xy.shape[1] == 2 and np.isfinite(xy).all():
            shape = shapely.multipoints(xy) if len(xy) else shapely.MultiPoint()
        else:  # the error names the bad point
            shape = shapely.MultiPoint([_point(name, p, proj) for p in coords])
    elif kind == "LineString":
        shape = shapely.LineString(_line(name, coords, proj)) if coords else shapely.LineString()
    elif kind == "LinearRing":
        shape = shapely.LinearRing(_ring(name, coords, proj)) if coords else shapely.LinearRing()
    elif kind == "MultiLineString":
        shape = shapely.MultiLineString([_line(name, line, proj) for line in coords])
    elif kind == "Polygon":
        shape = _polygon(name, coords, proj, even_odd)
    else:
        shape = shapely.MultiPolygon([_polygon(name, p, proj, even_odd) for p in coords])
    return Geometry(shape, proj, geodesic, kind, even_odd)


@algorithm("GeometryConstructors.Point")
def point(coordinates, crs):
    return _make("Geometry.Point", "Point", coordinates, crs, None, None)


@algorithm("GeometryConstructors.MultiPoint")
def multi_point(coordinates, crs):
    return _make("Geometry.MultiPoint", "MultiPoint", coordinates, crs, None, None)


@algorithm("GeometryConstructors.LineString")
def line_string(coordinates, crs, geodesic, maxError):  # noqa: N803
    return _make("Geometry.LineString", "LineString", coordinates, crs, geodesic, maxError)


@algorithm("GeometryConstructors.LinearRing")
def linear_ring(coordinates, crs, geodesic, maxError):  # noqa: N803
    return _make("Geometry.LinearRing", "LinearRing", coordinates, crs, geodesic, maxError)


@algorithm("GeometryConstructors.MultiLineString")
def multi_line_string(coordinates, crs, geodesic, maxError):  # noqa: N803
    return _make("Geometry.MultiLineString", "MultiLineString", coordinates, crs, geodesic, maxError)


@algorithm("GeometryConstructors.Polygon")
def polygon(coordinates, crs, geodesic, maxError, evenOdd):  # noqa: N803
    return _make("Geometry.Polygon", "Polygon", coordinates, crs, geodesic, maxError, evenOdd)


@algorithm("GeometryConstructors.MultiPolygon")
def multi_polygon(coordinates, crs, geodesic, maxError, evenOdd):  # noqa: N803
    return _make("Geometry.MultiPolygon", "MultiPolygon", coordinates, crs, geodesic, maxError, evenOdd)


@algorithm("GeometryConstructors.Rectangle")
def rectangle(coordinates, crs, geodesic, evenOdd):  # noqa: N803
    """Corners ``[[x1, y1], [x2, y2]]`` (or four numbers, or two points) become the
    ring ``[[x1, y2], [x1, y1], [x2, y1], [x2, y2]]``, the ring the client builds."""
    name = "Geometry.Rectangle"
    proj = _ctor_proj(crs, coordinates)
    if geodesic is None:
        inputs = _geometries_in(coordinates)
        geodesic = any(g.geodesic for g in inputs) if inputs else None
    coords = _resolve(name, coordinates, proj, DEFAULT_MAX_ERROR)
    if isinstance(coords, list) and len(coords) == 4 and all(_is_number(c) for c in coords):
        coords = [coords[:2], coords[2:]]
    if not isinstance(coords, list) or len(coords) != 2:
        raise EngineError(f"{name}: The Geometry.Rectangle constructor requires 2 points or 4 coordinates.")
    (x1, y1), (x2, y2) = (_point(name, c, proj) for c in coords)
    shape = shapely.Polygon([(x1, y2), (x1, y1), (x2, y1), (x2, y2), (x1, y2)])
    return Geometry(shape, proj, geodesic, "Polygon", True if evenOdd is None else bool(evenOdd))


def _canonical_longitude(lon: float) -> float:
    lon = lon % 360
    return lon - 360 if lon > 180 else lon


@algorithm("GeometryConstructors.BBox")
def bbox(west, south, east, north):
    """A planar WGS84 rectangle, canonicalised as the client's ``ee.Geometry.BBox`` does."""
    if not west < math.inf:
        raise EngineError(f"Geometry.BBox: west must not be {west}")
    if not east > -math.inf:
        raise EngineError(f"Geometry.BBox: east must not be {east}")
    if not south <= 90:
        raise EngineError(f"Geometry.BBox: south must be at most +90°, but was {south}°")
    if not north >= -90:
        raise EngineError(f"Geometry.BBox: north must be at least -90°, but was {north}°")
    south, north = max(south, -90), min(north, 90)
    if east - west >= 360:
        west, east = -180, 180
    else:
        west, east = _canonical_longitude(west), _canonical_longitude(east)
        if east < west:
            east += 360
    shape = shapely.Polygon([(west, north), (west, south), (east, south), (east, north), (west, north)])
    return Geometry(shape, WGS84, False, "Polygon")


@algorithm("GeometryConstructors.MultiGeometry")
def multi_geometry(geometries, crs, geodesic, maxError):  # noqa: N803
    proj = _ctor_proj(crs, geometries)
    err = max_error_m(maxError, proj=proj)
    if geodesic is None:
        geodesic = any(g.geodesic for g in geometries) if geometries else None
    target_geo = bool(geodesic and proj.is_geographic) if geodesic is not None else proj.is_geographic
    parts = [reproject(g.shape, g.crs, proj.crs, g.edges_geodesic, target_geo, err) for g in geometries]
    return Geometry(shapely.GeometryCollection(parts), proj, geodesic, "GeometryCollection")


# -- information ----------------------------------------------------------------


@algorithm("Geometry.coordinates")
def coordinates(geometry):
    return _coordinates(geometry.shape)


@algorithm("Geometry.type")
def type_(geometry):
    if geometry.shape.geom_type == "GeometryCollection":
        return "GeometryCollection"
    return geometry.type_name


@algorithm("Geometry.geometries")
def geometries(geometry):
    shape = geometry.shape
    if shape.geom_type == "GeometryCollection" or shape.geom_type.startswith("Multi"):
        return [geometry.replace(part) for part in shapely.get_parts(shape)]
    return [geometry]


@algorithm("Geometry.projection")
def projection(geometry):
    return geometry.proj


@algorithm("Geometry.isUnbounded")
def is_unbounded(geometry):
    return False


@algorithm("Geometry.edgesAreGeodesics")
def edges_are_geodesics(geometry):
    return geometry.geodesic


@algorithm("Geometry.geodesic")
def geodesic(geometry):
    return geometry.geodesic


# -- measures ---------------------------------------------------------------------


@algorithm("Geometry.area")
def area(geometry, maxError, proj):  # noqa: N803
    """Square metres on the ellipsoid, or square units of ``proj``."""
    if proj is not None:
        return float(sum(p.area for p in _polygons(in_proj(geometry, proj, max_error_m(maxError, proj=proj)))))
    shape = geometry.shape
    if geometry.crs != LONLAT or (
        not geometry.edges_geodesic and not _bbox_small(shape.bounds, None, LONLAT, max_error_m(maxError))
    ):
        shape = geodesic_lonlat(geometry, max_error_m(maxError))
    total = 0.0
    for poly in _polygons(shape):
        total += _ring_area(poly.exterior) - sum(_ring_area(r) for r in poly.interiors)
    return total


@algorithm("Geometry.length")
def length(geometry, maxError, proj):  # noqa: N803
    if proj is not None:
        return float(sum(p.length for p in _lines(in_proj(geometry, proj, max_error_m(maxError, proj=proj)))))
    return float(sum(_line_length(p) for p in _lines(geodesic_lonlat(geometry, max_error_m(maxError)))))


@algorithm("Geometry.perimeter")
def perimeter(geometry, maxError, proj):  # noqa: N803
    if proj is not None:
        return float(sum(p.length for p in _polygons(in_proj(geometry, proj, max_error_m(maxError, proj=proj)))))
    shape = geodesic_lonlat(geometry, max_error_m(maxError))
    return float(sum(_line_length(r) for p in _polygons(shape) for r in [p.exterior, *p.interiors]))


def _nearest_geodesic(a: shapely.Geometry, b: shapely.Geometry, max_err: float) -> tuple[shapely.Point, shapely.Point]:
    """The closest pair of points of two lon/lat shapes (straight lon/lat edges).

    The pair found in lon/lat is refined twice in an AEQD projection centred on
    the current left point, where distances from that point are exact."""
    pa, pb = shapely.ops.nearest_points(a, b)
    for _ in range(2):
        centre = f"{LOCAL_PREFIX}+lat_0={pa.y:.9f} +lon_0={pa.x:.9f} +ellps=WGS84 +units=m +no_defs +type=crs"
        la = reproject(a, LONLAT, centre, False, False, max_err)
        lb = reproject(b, LONLAT, centre, False, False, max_err)
        qa, qb = shapely.ops.nearest_points(la, lb)
        back = _transform_xy(np.array([[qa.x, qa.y], [qb.x, qb.y]]), centre, LONLAT)
        pa, pb = shapely.Point(back[0]), shapely.Point(back[1])
    return pa, pb


def _closest(left: Geometry, right: Geometry, maxError, proj):  # noqa: N803
    """The closest pair of points (shapes) and the projection they are in.

    Without ``proj`` the pair is found on the ellipsoid and returned in EPSG:4326."""
    if proj is not None:
        err = max_error_m(maxError, proj=proj)
        a, b = in_proj(left, proj, err), in_proj(right, proj, err)
        if a.is_empty or b.is_empty:
            return None, None, proj
        pa, pb = shapely.ops.nearest_points(a, b)
        return pa, pb, proj
    err = max_error_m(maxError)
    a, b = in_crs(left, LONLAT, err), in_crs(right, LONLAT, err)
    if a.is_empty or b.is_empty:
        return None, None, WGS84
    if shapely.intersects(a, b):
        p = shapely.ops.nearest_points(shapely.intersection(_clean(a), _clean(b)), a)[0]
        return p, p, WGS84
    pa, pb = _nearest_geodesic(a, b, err)
    return pa, pb, WGS84


@algorithm("Geometry.distance")
def distance(left, right, maxError, proj, spherical):  # noqa: N803
    """Metres on the WGS84 ellipsoid between the closest points, or units of ``proj``."""
    if spherical and proj is None:
        raise EngineError(
            "Geometry.distance: spherical=true is not implemented by the gee-mining local engine "
            "(it measures on the WGS84 ellipsoid)."
        )
    pa, pb, space = _closest(left, right, maxError, proj)
    if pa is None:
        return None
    if proj is not None:
        return float(pa.distance(pb))
    if pa.equals(pb):
        return 0.0
    return float(GEOD.inv(pa.x, pa.y, pb.x, pb.y)[2])


_distance = distance


@algorithm("Geometry.withinDistance")
def within_distance(left, right, distance, maxError, proj):  # noqa: N803
    measured = _distance(left, right, maxError, proj, False)
    return measured is not None and measured <= distance


@algorithm("Geometry.closestPoint")
def closest_point(left, right, maxError, proj):  # noqa: N803
    """The point of ``right`` nearest to ``left``."""
    _, pb, space = _closest(left, right, maxError, proj)
    return None if pb is None else _result(pb, space, False)


@algorithm("Geometry.closestPoints")
def closest_points(left, right, maxError, proj):  # noqa: N803
    pa, pb, space = _closest(left, right, maxError, proj)
    if pa is None:
        return {}
    return {"left": _result(pa, space, False), "right": _result(pb, space, False)}


# -- predicates -----------------------------------------------------------------


def _predicate(test: Callable[[shapely.Geometry, shapely.Geometry], bool]):
    def run(left, right, maxError, proj):  # noqa: N803
        a, b, _, _ = _pair(left, right, maxError, proj)
        return bool(test(a, b))

    return run


algorithm("Geometry.intersects")(_predicate(shapely.intersects))
algorithm("Geometry.disjoint")(_predicate(shapely.disjoint))
algorithm("Geometry.contains")(_predicate(lambda a, b: shapely.contains(_clean(a), b)))
algorithm("Geometry.containedIn")(_predicate(lambda a, b: shapely.within(a, _clean(b))))


# -- overlay --------------------------------------------------------------------


def _overlay(op: Callable[[shapely.Geometry, shapely.Geometry], shapely.Geometry]):
    def run(left, right, maxError, proj):  # noqa: N803
        a, b, space, geodesic = _pair(left, right, maxError, proj)
        return _result(op(_clean(a), _clean(b)), space, geodesic)

    return run


algorithm("Geometry.intersection")(_overlay(shapely.intersection))
algorithm("Geometry.union")(_overlay(shapely.union))
algorithm("Geometry.difference")(_overlay(shapely.difference))
algorithm("Geometry.symmetricDifference")(_overlay(shapely.symmetric_difference))


def _single(geometry: Geometry, maxError, proj) -> tuple[shapely.Geometry, Projection, bool]:  # noqa: N803
    space, geodesic = _space(geometry, None, proj)
    return in_proj(geometry, space, max_error_m(maxError, proj=space)), space, geodesic


@algorithm("Geometry.dissolve")
def dissolve(geometry, maxError, proj):  # noqa: N803
    shape, space, geodesic = _single(geometry, maxError, proj)
    parts = shapely.get_parts(shape)
    if len(parts) <= 1 and shape.geom_type not in ("GeometryCollection",) and not shape.geom_type.startswith("Multi"):
        return _result(shape, space, geodesic)
    return _result(shapely.union_all([_clean(p) for p in _flat_parts(shape)]), space, geodesic)


@algorithm("Geometry.convexHull")
def convex_hull(geometry, maxError, proj):  # noqa: N803
    shape, space, geodesic = _single(geometry, maxError, proj)
    return _result(shapely.convex_hull(shape), space, geodesic)


@algorithm("Geometry.bounds")
def bounds(geometry, maxError, proj):  # noqa: N803
    """The planar bounding rectangle (in EPSG:4326 unless ``proj`` is given)."""
    space = proj if proj is not None else WGS84
    err = max_error_m(maxError, proj=space)
    shape = in_proj(geometry, space, err)
    if shape.is_empty:
        return _result(shapely.Polygon(), space, False)
    x0, y0, x1, y1 = shapely.bounds(shape)
    if x0 == x1 and y0 == y1 and geometry.shape.geom_type == "Point":
        return _result(shapely.Point(x0, y0), space, False)
    box = shapely.Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
    return _result(box, space, False)


@algorithm("Geometry.centroid")
def centroid(geometry, maxError, proj):  # noqa: N803
    """Planar centroid in ``proj``, or, for a geodesic geometry, in a local AEQD
    projection (see the module docstring), returned as a point in EPSG:4326."""
    err = max_error_m(maxError)
    if proj is not None:
        shape = in_proj(geometry, proj, max_error_m(maxError, proj=proj))
        return _result(shapely.centroid(shape), proj, False)
    if not geometry.edges_geodesic:
        c = shapely.centroid(geometry.shape)
        if geometry.crs == LONLAT or c.is_empty:
            return Geometry(c, geometry.proj, geometry.geodesic)
        return Geometry(reproject(c, geometry.crs, LONLAT, False, False, err), WGS84)
    local, crs = _local(geometry, err)
    c = shapely.centroid(local)
    if c.is_empty:
        return Geometry(c, WGS84)
    return Geometry(reproject(c, crs, LONLAT, False, True, err), WGS84)


def _quad_segs(radius: float, max_err: float) -> int:
    """Segments per quarter circle so that chords stay within ``max_err`` of the arc."""
    if radius <= 0 or not math.isfinite(max_err) or max_err >= radius:
        return 1
    half_angle = math.acos(1.0 - max_err / radius)
    return int(min(max(math.ceil(math.pi / (4.0 * half_angle)), 1), 1024))


@algorithm("Geometry.buffer")
def buffer(geometry, distance, maxError, proj):  # noqa: N803
    """Metres in a local AEQD projection (geographic geometries) or units of ``proj``.
    ``maxError`` defaults to 1% of the distance, as Earth Engine documents."""
    default = abs(distance) * 0.01 if distance else DEFAULT_MAX_ERROR
    if proj is not None:
        err = max_error_m(maxError, default * proj.nominal_scale(), proj=proj)
        shape = in_proj(geometry, proj, err)
        units_err = err / proj.nominal_scale()
        return _result(shape.buffer(distance, quad_segs=_quad_segs(abs(distance), units_err)), proj, False)
    err = max_error_m(maxError, default)
    local, crs = _local(geometry, err)
    buffered = shapely.buffer(local, distance, quad_segs=_quad_segs(abs(distance), err))
    return _back(buffered, crs, geometry, err)


@algorithm("Geometry.simplify")
def simplify(geometry, maxError, proj):  # noqa: N803
    """Douglas-Peucker (topology preserving) with ``maxError`` as tolerance."""
    if proj is not None:
        err = max_error_m(maxError, proj=proj)
        shape = in_proj(geometry, proj, err)
        return _result(shapely.simplify(shape, err / proj.nominal_scale()), proj, False)
    err = max_error_m(maxError)
    local, crs = _local(geometry, err)
    return _back(shapely.simplify(local, err), crs, geometry, err)


@algorithm("Geometry.transform")
def transform(geometry, proj, maxError, geodesic):  # noqa: N803
    proj = Projection.coerce(proj)
    target_geo = proj.is_geographic if geodesic is None else bool(geodesic and proj.is_geographic)
    shape = reproject(
        geometry.shape, geometry.crs, proj.crs, geometry.edges_geodesic, target_geo, max_error_m(maxError)
    )
    return Geometry(shape, proj.base, target_geo, geometry.type_name, geometry.even_odd)


@algorithm("Geometry.cutLines")
def cut_lines(geometry, distances, maxError, proj):  # noqa: N803
    """Lines cut at the given distances along them (metres, or units of ``proj``)."""
    cuts = sorted(float(d) for d in distances)
    if proj is not None:
        err = max_error_m(maxError, proj=proj)
        lines = _lines(in_proj(geometry, proj, err))
        pieces = [seg for line in lines for seg in _cut(line, cuts)]
        return _result(shapely.MultiLineString(pieces), proj, False)
    err = max_error_m(maxError)
    local, crs = _local(geometry, err)
    pieces = [seg for line in _lines(local) for seg in _cut(line, cuts)]
    return _back(shapely.MultiLineString(pieces), crs, geometry, err)


def _cut(line: shapely.Geometry, cuts: list[float]) -> list[shapely.LineString]:
    total = line.length
    marks = [0.0] + [c for c in cuts if 0.0 < c < total] + [total]
    out = []
    for start, end in zip(marks[:-1], marks[1:], strict=True):
        if end > start:
            out.append(shapely.ops.substring(shapely.LineString(line.coords), start, end))
    return out


# -- covering grid --------------------------------------------------------------


def covering_cells(geometry: Geometry, proj: Projection, scale: Any) -> list[tuple[str, Geometry]]:
    """The cells of ``proj``'s grid (unit squares of its coordinates, so cells of
    its scale aligned on its transform's origin) that intersect ``geometry``
    (``Geometry.coveringGrid``, whose features ``featurecollection.py`` makes).

    Each cell is an id ``"x,y"`` (its integer cell indices) and a planar polygon
    in ``proj``'s base CRS. The test is exact in the projection: the geometry is
    reprojected (geodesic edges densified to 1 cm) and each candidate cell is
    tested with shapely, vectorised per part.
    """
    if scale is not None:
        proj = proj.scaled(scale / proj.nominal_scale(), scale / proj.nominal_scale())
    members = getattr(geometry, "_members", None)
    parts = _flat_parts(geometry.shape) if members is None else []
    if members is not None:  # a collection's merged geometry: its members' reprojections, cached
        shapes = _object_array(in_crs_many(list(members), proj.crs, 0.01, False))
    elif len(parts) > 1:  # the parts of a multi-geometry, reprojected together
        shapes = reproject_many(_object_array(parts), geometry.crs, proj.crs, geometry.edges_geodesic, False, 0.01)
    else:
        shapes = _object_array([in_crs(geometry, proj.crs, 0.01)])
    if not proj.is_identity:
        shapes = _affine_many(shapes, proj.inverse())
    cells = grid_cells(shapes)
    if not len(cells):
        return []
    a, b, c, d, e, f = proj.transform
    ij = cells.astype(np.float64)
    u = ij[:, :1] + np.array([0.0, 0.0, 1.0, 1.0, 0.0])  # corners (i, j+1), (i, j), (i+1, j), (i+1, j+1), (i, j+1)
    v = ij[:, 1:] + np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    squares = shapely.polygons(np.stack([a * u + b * v + c, d * u + e * v + f], axis=-1))
    base = proj.base
    return [
        (f"{i},{j}", Geometry(square, base, False, "Polygon"))
        for (i, j), square in zip(cells.tolist(), squares, strict=True)
    ]


def _affine_many(shapes: np.ndarray, matrix: tuple[float, ...]) -> np.ndarray:
    """``shapely.affinity.affine_transform`` of each 2-D shape, in one call (the same arithmetic)."""
    a, b, d, e, xoff, yoff = matrix

    def coords(xy: np.ndarray) -> np.ndarray:
        x, y = xy.T
        return np.stack([a * x + b * y + xoff, d * x + e * y + yoff]).T

    return shapely.transform(shapes, coords)


def _simple_parts(shapes: np.ndarray) -> np.ndarray:
    """The non-empty points, lines and polygons of the shapes, multi-geometries and collections opened."""
    parts = shapely.get_parts(shapes)
    while True:
        nested = shapely.get_type_id(parts) >= 4  # multi-geometries and collections
        if not nested.any():
            return parts[~shapely.is_empty(parts)]
        parts = np.concatenate([parts[~nested], shapely.get_parts(parts[nested])])


def grid_cells(shapes: np.ndarray) -> np.ndarray:
    """Integer cells ``[i, i+1] x [j, j+1]`` that intersect any of the shapes: rows ``(i, j)``, sorted by (j, i)."""
    parts_arr = _simple_parts(shapes)
    if not len(parts_arr):
        return np.empty((0, 2), dtype=np.int64)
    shapely.prepare(parts_arr)
    b = shapely.bounds(parts_arr)
    i0, j0 = np.floor(b[:, 0]).astype(np.int64), np.floor(b[:, 1]).astype(np.int64)
    i1, j1 = np.floor(b[:, 2]).astype(np.int64), np.floor(b[:, 3]).astype(np.int64)
    nx, ny = i1 - i0 + 1, j1 - j0 + 1
    counts = nx * ny
    total = int(counts.sum())
    if total > MAX_GRID_CANDIDATES:
        raise EngineError(
            f"Geometry.coveringGrid: the geometry spans {total} grid cells; "
            f"the local engine tests at most {MAX_GRID_CANDIDATES}. Use a coarser scale."
        )
    owner_all = np.repeat(np.arange(len(parts_arr)), counts)
    offset_all = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    found = []
    for lo in range(0, total, 1_000_000):
        owner, offset = owner_all[lo : lo + 1_000_000], offset_all[lo : lo + 1_000_000]
        ci = i0[owner] + offset % nx[owner]
        cj = j0[owner] + offset // nx[owner]
        hit = shapely.intersects(parts_arr[owner], shapely.box(ci, cj, ci + 1, cj + 1))
        found.append(np.column_stack([ci[hit], cj[hit]]))
    cells = np.concatenate(found)
    if not len(cells):
        return cells
    # One sortable key per cell (rows by j, then i) instead of np.unique over rows.
    imin, jmin = cells.min(axis=0)
    width = int(cells[:, 0].max() - imin) + 1
    keys = np.unique((cells[:, 1] - jmin) * width + (cells[:, 0] - imin))
    return np.column_stack([keys % width + imin, keys // width + jmin])


# -- error margins ----------------------------------------------------------------


INFINITE_MARGIN_M = 2.0e7  # a margin in metres this large or larger is infinite (the API reference)
FINEST_MARGIN_M = 0.001  # a finer non-zero margin in metres is refused (the API reference)


@algorithm("ErrorMargin")
def error_margin(value, unit):
    """As the API reference's examples of ``ee.ErrorMargin`` show: a negative value counts by its
    magnitude (``ErrorMargin(-1)`` is 1 m), 2e7 m or more is infinite, a non-zero margin under 1 mm is
    an error (the reference shows no message; this one names the bound)."""
    if unit not in ("meters", "projected", "infinite"):
        raise EngineError(f"ErrorMargin: Unknown unit '{unit}'. Expected 'meters', 'projected' or 'infinite'.")
    if unit != "infinite" and value is None:
        raise EngineError("ErrorMargin: A value is required unless the unit is 'infinite'.")
    value = 0.0 if value is None else abs(float(value))
    if unit == "meters" and value >= INFINITE_MARGIN_M:
        return ErrorMargin(0.0, "infinite")
    if unit == "meters" and 0 < value < FINEST_MARGIN_M:
        raise EngineError(f"ErrorMargin: {value} m is finer than the finest margin, {FINEST_MARGIN_M} m.")
    return ErrorMargin(value, unit)


# -- vectorised forms (a mapped function evaluated for many elements at once) ---------------------
#
# Each returns, element by element, exactly what the scalar algorithm above returns: the same
# coordinates go through the same transformer, only in one call for all elements. Whatever they do
# not vectorise (geodesic centroids, shapes needing densification, non-geometries) runs per element.


def _object_array(items: list[Any]) -> np.ndarray:
    """``items`` as a 1-d object array, each item one element: ``fromiter`` does not probe each shape for
    the array protocols, as ``arr[:] = items`` does (8 times slower on shapely geometries)."""
    return np.fromiter(items, dtype=object, count=len(items))


def _bbox_small_many(b: np.ndarray, src: str, max_err: float, lat_max: np.ndarray | None = None) -> np.ndarray:
    """:func:`_bbox_small` for many bounds at once; False for empty shapes. For a projected ``src``,
    ``lat_max``: each shape's largest absolute latitude in degrees (its vertices in lon/lat), where known:
    the test then holds where the scalar form's holds without them or with them (the bound grows with the
    latitude, so at the lower of the two, capped at 84 degrees)."""
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    with np.errstate(invalid="ignore"):
        if is_geographic(src):
            lat = np.radians(np.minimum(np.maximum(np.abs(y0), np.abs(y1)), 89.0))
            diag = np.hypot((x1 - x0) * 111_320.0, (y1 - y0) * 110_600.0) * 1.01
        else:
            diag = np.hypot(x1 - x0, y1 - y0) * meters_per_unit(src) * 1.01
            lat = math.radians(84.0) if lat_max is None else np.radians(np.minimum(lat_max, 84.0))
        return np.isfinite(diag) & (2.0 * diag**2 * (np.tan(lat) + 1.0) / (8.0 * 6_356_752.0) <= max_err)


def _edges_small_many(
    shapes: np.ndarray, src: str, dst: str, max_err: float, moved: np.ndarray | None = None
) -> np.ndarray:
    """:func:`_edges_small` of each (multi)polygon or (multi)line, with the edges of all shapes in one
    pass (lon/lat from one transformer call); False for other kinds of shape. ``moved`` (an object array
    like ``shapes``): where the shapes are all (multi)polygons and that call's lon/lat are the target's
    coordinates, each shape with them, as ``shapely.transform`` would make it (the same points through the
    same transformer): a shape whose edges pass needs no second transformation."""
    ok = np.zeros(len(shapes), dtype=bool)
    types = shapely.get_type_id(shapes)
    idx = np.nonzero(np.isin(types, (1, 3, 5, 6)))[0]
    if not len(idx):
        return ok
    parts, part_owner = shapely.get_parts(shapes[idx], return_index=True)
    poly = shapely.get_type_id(parts) == 3
    rings, ring_part = shapely.get_rings(parts[poly], return_index=True)
    seqs = np.concatenate([rings, parts[~poly]])
    seq_owner = np.concatenate([part_owner[poly][ring_part], part_owner[~poly]])
    xy, seq_of = shapely.get_coordinates(seqs, return_index=True)
    lonlat = _transform_xy(xy, src, dst) if is_geographic(dst) and not is_geographic(src) else None
    small = _rings_small(xy, lonlat, seq_of, len(seqs), src, max_err)
    good = np.ones(len(idx), dtype=bool)
    np.logical_and.at(good, seq_owner, small)
    ok[idx] = good
    if moved is not None and lonlat is not None and len(idx) == len(shapes) and poly.all():
        # every shape polygonal: its rings' coordinates in order are its own (shapely.get_coordinates order)
        moved[:] = shapely.set_coordinates(shapes.copy(), lonlat)
    return ok


def _rings_small(
    xy: np.ndarray, lonlat: np.ndarray | None, ring_of: np.ndarray, n: int, src: str, max_err: float
) -> np.ndarray:
    """:func:`_edges_small` of each of ``n`` rings (or lines) whose coordinates are ``xy``, in sequence
    ``ring_of`` (``lonlat``: the same points in longitude and latitude, for a projected ``src``)."""
    edge = ring_of[:-1] == ring_of[1:]
    bound = _edge_bounds(xy, lonlat, src)
    small = np.ones(n, dtype=bool)
    small[ring_of[:-1][edge & (bound > max_err)]] = False
    return small


def _densify_polygons_many(
    shapes: np.ndarray, src: str, dst: str, src_geo: bool, dst_geo: bool, max_err: float
) -> np.ndarray:
    """:func:`reproject` of each (multi)polygon by :func:`_densify_seq`'s rule, with every ring's edges
    in one array: each round bisects, in all rings at once, the edges still off by more than
    ``max_err``; a ring whose edges all pass gets no new vertex, as it would alone."""
    parts, part_owner = shapely.get_parts(shapes, return_index=True)
    if shapely.is_empty(parts).any():
        return _object_array([reproject(s, src, dst, src_geo, dst_geo, max_err) for s in shapes])
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    pts, ring_of = shapely.get_coordinates(rings, return_index=True)
    out = _transform_xy(pts, src, dst)
    # Edges (k, k + 1) to test: those of the rings the analytic bound does not settle (_densify_seq
    # skips those), then the halves of bisected edges.
    check = np.ones(len(pts), dtype=bool)
    if _is_tame(src) and _is_tame(dst):
        settled = _rings_small(pts, out if is_geographic(dst) else None, ring_of, len(rings), src, max_err)
        check = ~settled[ring_of]
    for _ in range(30):
        edge = np.nonzero(check[:-1] & (ring_of[:-1] == ring_of[1:]))[0]
        mids = _edge_midpoints(pts[edge], pts[edge + 1], src, src_geo)
        mids_dst = _transform_xy(mids, src, dst)
        chord = _edge_midpoints(out[edge], out[edge + 1], dst, dst_geo)
        bad = _deviation_m(mids_dst, chord, dst) > max_err
        if not bad.any():
            break
        at = edge[bad] + 1
        pts = np.insert(pts, at, mids[bad], axis=0)
        out = np.insert(out, at, mids_dst[bad], axis=0)
        ring_of = np.insert(ring_of, at, ring_of[at - 1])
        starts = edge[bad] + np.arange(len(at))  # where each bisected edge now starts
        check = np.zeros(len(pts), dtype=bool)
        check[starts] = True
        check[starts + 1] = True
    new_rings = shapely.linearrings(out, indices=ring_of)
    polygons = shapely.polygons(new_rings, indices=ring_part)
    result = np.empty(len(shapes), dtype=object)
    multi = shapely.get_type_id(shapes) == 6
    single = np.nonzero(~multi)[0]
    result[single] = polygons[np.searchsorted(part_owner, single)]
    if multi.any():
        rows = np.nonzero(multi[part_owner])[0]
        compact = np.unique(part_owner[rows], return_inverse=True)[1]
        result[multi] = shapely.multipolygons(polygons[rows], indices=compact)
    return result


def reproject_many(
    shapes: np.ndarray,
    src: str,
    dst: str,
    src_geo: bool,
    dst_geo: bool,
    max_err: float,
    plain: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`reproject` of each shape: the points and the small shapes (no densification needed)
    through one transformer call, the rest one by one. ``plain`` (a boolean array like ``shapes``, filled
    in): which shapes came out as their vertices transformed and nothing more, which does not depend on
    ``dst_geo`` (the test of their edges does not), so that their shapes serve both kinds of edge."""
    if src == dst and src_geo == dst_geo:
        if plain is not None:
            plain[:] = True
        return shapes
    out = shapes.copy()
    empty = shapely.is_empty(shapes)
    types = shapely.get_type_id(shapes)
    direct = (types == 0) | (types == 4) | (not math.isfinite(max_err))
    if _is_tame(src) and _is_tame(dst):
        b = shapely.bounds(shapes)
        direct |= _bbox_small_many(b, src, max_err)
        rest = np.nonzero(~direct & ~empty)[0]
        if len(rest):
            moved = np.full(len(rest), None, dtype=object)
            passed = _edges_small_many(shapes[rest], src, dst, max_err, moved)
            direct[rest] = passed
            if moved[0] is not None:  # already in dst (the edges' test transformed them): not transformed again
                out[rest[passed]] = moved[passed]
                direct[rest[passed]] = False
                empty = empty | np.isin(np.arange(len(shapes)), rest[passed])  # settled: left alone below
    direct &= ~empty
    if direct.any() and src != dst:
        out[direct] = shapely.transform(shapes[direct], lambda xy: _transform_xy(xy, src, dst))
    rest = ~direct & ~empty
    if plain is not None:
        plain[:] = ~rest
    polygonal = rest & np.isin(types, (3, 6))
    if polygonal.sum() > 1 and math.isfinite(max_err):
        out[polygonal] = _densify_polygons_many(shapes[polygonal], src, dst, src_geo, dst_geo, max_err)
        rest &= ~polygonal
    for i in np.nonzero(rest)[0]:
        out[i] = reproject(shapes[i], src, dst, src_geo, dst_geo, max_err)
    return out


def in_crs_many(geoms: list[Geometry], crs: str, max_err: float, geodesic: bool = False) -> list[shapely.Geometry]:
    """:func:`in_crs` of each geometry (its cache read and filled), reprojected in groups of one source CRS."""
    key, twin = (crs, max_err, geodesic), (crs, max_err, not geodesic)
    out: list[Any] = [None] * len(geoms)
    todo: dict[tuple[str, bool], list[int]] = {}
    merged: list[int] = []
    both: list[int] = []  # reprojected with no vertex added: the same shape for the other kind of edge
    for i, g in enumerate(geoms):
        cache = g._in_crs
        shape = cache.get(key) if cache else None
        if shape is not None:
            out[i] = shape
        elif g._members is not None:
            merged.append(i)
        elif g.proj.crs == crs and not g.geodesic and not geodesic:
            out[i] = g.shape  # planar and in crs already: reproject_many would return it as it is
        else:
            todo.setdefault((g.proj.crs, g.geodesic and g.edges_geodesic), []).append(i)
    for (src, src_geo), idx in todo.items():
        plain = np.zeros(len(idx), dtype=bool)
        shapes = reproject_many(
            _object_array([geoms[i].shape for i in idx]), src, crs, src_geo, geodesic, max_err, plain
        )
        for i, shape in zip(idx, shapes, strict=True):
            out[i] = shape
        both.extend(np.asarray(idx)[plain].tolist())
    if merged:
        members = list({id(m): m for i in merged for m in geoms[i]._members}.values())
        shape_of = dict(zip(map(id, members), in_crs_many(members, crs, max_err, geodesic), strict=True))
        for i in merged:
            parts = shapely.get_parts(_object_array([shape_of[id(m)] for m in geoms[i]._members]))
            out[i] = shapely.multipolygons(parts[~shapely.is_empty(parts)])
    for idx in [*todo.values(), merged]:
        for i in idx:
            g = geoms[i]
            cache = g._in_crs
            if cache is None:
                cache = g._in_crs = {}
            elif len(cache) > 8:
                cache.clear()
            cache[key] = out[i]
    for i in both:
        geoms[i]._in_crs[twin] = out[i]
    return out


def _all_geometries(value: Any) -> bool:
    return isinstance(value, Column) and all(isinstance(g, Geometry) for g in value)


def _shared(*values: Any) -> bool:
    return not any(isinstance(v, Column) for v in values)


@vectorised("Geometry.transform")
def transform_many(n, geometry, proj, maxError, geodesic):  # noqa: N803
    if not (_all_geometries(geometry) and _shared(proj, maxError, geodesic)):
        args = {"geometry": geometry, "proj": proj, "maxError": maxError, "geodesic": geodesic}
        return per_element("Geometry.transform", n, args)
    proj = Projection.coerce(proj)
    target_geo = proj.is_geographic if geodesic is None else bool(geodesic and proj.is_geographic)
    err = max_error_m(maxError)
    out: list[Any] = [None] * n
    plain = [i for i, g in enumerate(geometry) if g._members is None]
    for i, shape in zip(plain, in_crs_many([geometry[i] for i in plain], proj.crs, err, target_geo), strict=True):
        g = geometry[i]  # reprojected as in_crs does (so kept for a filter or a bound of the same geometry)
        out[i] = Geometry(shape, proj.base, target_geo, g.type_name, g.even_odd)
    groups: dict[tuple[str, bool], list[int]] = {}
    for i, g in enumerate(geometry):
        if g._members is not None:  # a collection's merged geometry: its own shape reprojected, as the scalar form
            groups.setdefault((g.crs, g.edges_geodesic), []).append(i)
    for (src, src_geo), idx in groups.items():
        shapes = reproject_many(
            _object_array([geometry[i].shape for i in idx]), src, proj.crs, src_geo, target_geo, err
        )
        for i, shape in zip(idx, shapes, strict=True):
            g = geometry[i]
            out[i] = Geometry(shape, proj.base, target_geo, g.type_name, g.even_odd)
    return out


def _in_proj_many(geoms: list[Geometry], proj: Projection, max_err: float) -> list[shapely.Geometry]:
    shapes = in_crs_many(geoms, proj.crs, max_err, False)
    if proj.is_identity:
        return shapes
    return list(_affine_many(_object_array(shapes), proj.inverse()))


@vectorised("Geometry.buffer")
def buffer_many(n, geometry, distance, maxError, proj):  # noqa: N803
    """:func:`buffer` of lon/lat geometries by one distance in metres: each reprojected to its local AEQD
    projection (:func:`local_crs`) and back by :func:`_reproject_pairs` (equal to :func:`reproject` shape by
    shape, one transformer call per projection each way), and all buffered in one call. Geometries in other
    projections, empty ones, and buffers in a given ``proj`` as the scalar form."""
    if not (_all_geometries(geometry) and _shared(distance, maxError, proj)) or proj is not None:
        return per_element(
            "Geometry.buffer", n, {"geometry": geometry, "distance": distance, "maxError": maxError, "proj": proj}
        )
    err = max_error_m(maxError, abs(distance) * 0.01 if distance else DEFAULT_MAX_ERROR)
    out: list[Any] = [None] * n
    shapes = _object_array([g.shape for g in geometry])
    bulk = np.array([g.proj.crs == LONLAT for g in geometry], dtype=bool) & ~shapely.is_empty(shapes)
    for i in np.nonzero(~bulk)[0].tolist():
        out[i] = buffer(geometry[i], distance, maxError, None)
    todo = np.nonzero(bulk)[0].tolist()
    if not todo:
        return out
    shapes = shapes[bulk]
    crs, pair_of = _local_crs_groups(shapes)
    geo = np.array([geometry[i].geodesic for i in todo], dtype=bool)
    edges_geo = geo & ~np.isin(shapely.get_type_id(shapes), (0, 4))  # Geometry.edges_geodesic
    planar = np.zeros(len(todo), dtype=bool)
    local = _reproject_pairs(shapes, [(LONLAT, c) for c in crs], pair_of, edges_geo, planar, err)
    grown = shapely.buffer(local, distance, quad_segs=_quad_segs(abs(distance), err))
    back = _reproject_pairs(grown, [(c, LONLAT) for c in crs], pair_of, planar, geo, err)
    kinds = [_POLYGON_KINDS.get(t) for t in shapely.get_type_id(back).tolist()]  # as Geometry() names them
    for i, shape, kind in zip(todo, back.tolist(), kinds, strict=True):
        out[i] = Geometry(shape, geometry[i].proj, geometry[i].geodesic, kind)
    return out


_POLYGON_KINDS = {3: "Polygon", 6: "MultiPolygon"}  # shapely type ids: what shape.geom_type says


def _local_crs_many(shapes: np.ndarray) -> list[str]:
    """:func:`local_crs` of each non-empty lon/lat shape (see :func:`_local_crs_groups`)."""
    names, which = _local_crs_groups(shapes)
    return [names[k] for k in which.tolist()]


def _local_crs_groups(shapes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """:func:`local_crs` of non-empty lon/lat shapes as groups: the CRS of each group, and each shape's group.
    Centres computed on whole arrays, one string made per distinct centre (by :func:`_local_crs_at`, as the
    scalar form makes it); a shape across the antimeridian as the scalar form, in a group of its own."""
    b = shapely.bounds(shapes)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    lon, lat = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    snap = np.maximum(x1 - x0, y1 - y0) < 2.0
    # np.round rounds half to even as Python's round does; + 0.0 turns its -0.0 into round()'s 0
    lon = np.where(snap, np.round(lon * 4) / 4 + 0.0, lon)
    lat = np.where(snap, np.round(lat * 4) / 4 + 0.0, lat)
    centres, which = np.unique(np.column_stack([lon, lat]), axis=0, return_inverse=True)
    names = [_local_crs_at(x, y) for x, y in centres.tolist()]
    which = which.ravel()
    for i in np.nonzero(x1 - x0 > 180.0)[0].tolist():
        which[i] = len(names)
        names.append(local_crs(shapes[i]))
    return names, which


def _reproject_pairs(
    shapes: np.ndarray,
    pairs: list[tuple[str, str]],
    pair_of: np.ndarray,
    src_geo: np.ndarray,
    dst_geo: np.ndarray,
    max_err: float,
) -> np.ndarray:
    """``reproject(shapes[i], *pairs[pair_of[i]], src_geo[i], dst_geo[i], max_err)`` of each shape, where the
    pairs go between EPSG:4326 and local AEQD projections, all one way: every (multi)polygon's vertices
    through one transformer call per pair, the analytic edge test (:func:`reproject_many`'s) on all rings at
    once, and the shapes it does not settle, or that are not plain 2-d (multi)polygons, by
    :func:`reproject_many` in groups of one pair and edge kind."""
    src0, dst0 = pairs[0]
    order = np.argsort(pair_of, kind="stable")
    ordered = shapes[order]
    types = shapely.get_type_id(ordered)
    fast = np.nonzero(np.isin(types, (3, 6)) & ~shapely.is_empty(ordered) & ~shapely.has_z(ordered))[0]
    xy = shapely.get_coordinates(ordered[fast])  # shapes in order, each in its own
    counts = shapely.get_num_coordinates(ordered[fast])
    starts = np.concatenate([[0], np.cumsum(counts)])  # where each shape's vertices start (and the last end)
    moved = np.empty_like(xy)
    cuts = starts[np.searchsorted(pair_of[order][fast], np.arange(len(pairs) + 1))].tolist()
    for k, (a, z) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        if z > a:
            moved[a:z, 0], moved[a:z, 1] = transformer(*pairs[k]).transform(xy[a:z, 0], xy[a:z, 1])
    if not math.isfinite(float(moved.sum())):  # _transform_xy's error, naming the first pair that failed
        k = int(np.searchsorted(cuts, np.nonzero(~np.isfinite(moved).all(axis=1))[0][0], side="right")) - 1
        raise EngineError(f"Geometry: Unable to transform coordinates from {pairs[k][0]} to {pairs[k][1]}.")
    passed = np.ones(len(fast), dtype=bool)
    if math.isfinite(max_err):
        to_lonlat = is_geographic(dst0) and not is_geographic(src0)
        lat_max = _largest_per_shape(np.abs(moved[:, 1]), starts) if to_lonlat else None
        passed = _bbox_small_many(shapely.bounds(ordered[fast]), src0, max_err, lat_max)
        unsure = np.nonzero(~passed)[0]
        if len(unsure):
            points = np.repeat(~passed, counts)  # the vertices of the shapes the box test did not settle
            lonlat = moved[points] if to_lonlat else None
            passed[unsure] = _edges_small_of(ordered[fast][unsure], xy[points], lonlat, src0, max_err)
    result = ordered.copy()
    result[fast] = _with_coordinates(ordered[fast], moved, counts)
    slow = np.ones(len(ordered), dtype=bool)
    slow[fast[passed]] = False
    _reproject_rest(
        result, ordered, np.nonzero(slow)[0], pairs, pair_of[order], src_geo[order], dst_geo[order], max_err
    )
    out = np.empty(len(shapes), dtype=object)
    out[order] = result
    return out


def _with_coordinates(shapes: np.ndarray, xy: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """``shapely.set_coordinates(shapes.copy(), xy)`` of non-empty 2-d (multi)polygons (``counts``: their numbers
    of vertices, where known): the polygons without holes (every buffer of a polygon without holes, most mines)
    made anew from ``xy`` by ``from_ragged_array``, a third of ``set_coordinates``' time on a map's buffers; the
    others by ``set_coordinates``."""
    simple = (shapely.get_type_id(shapes) == 3) & (shapely.get_num_interior_rings(shapes) == 0)
    if not simple.any():
        return shapely.set_coordinates(shapes.copy(), xy)
    counts = shapely.get_num_coordinates(shapes) if counts is None else counts
    if simple.all():
        return _polygons_from(xy, counts)
    mine = np.repeat(simple, counts)  # each vertex: whether its shape is a polygon without holes
    out = np.empty(len(shapes), dtype=object)
    out[simple] = _polygons_from(xy[mine], counts[simple])
    out[~simple] = shapely.set_coordinates(shapes[~simple].copy(), xy[~mine])
    return out


def _polygons_from(xy: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Polygons of one ring each, the k-th made of the next ``counts[k]`` points of ``xy`` (closed rings)."""
    rings = np.concatenate([[0], np.cumsum(counts)])
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, xy, (rings, np.arange(len(counts) + 1)))


def _largest_per_shape(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The largest of ``values`` of each shape, whose values are ``values[starts[k]:starts[k + 1]]`` (at least
    one each: the vertices of non-empty shapes)."""
    if len(starts) < 2:
        return np.zeros(0)
    return np.maximum.reduceat(values, starts[:-1])


def _edges_small_of(
    shapes: np.ndarray, xy: np.ndarray, lonlat: np.ndarray | None, src: str, max_err: float
) -> np.ndarray:
    """:func:`_edges_small` of each (multi)polygon, given its vertices ``xy`` (``shapely.get_coordinates``
    order; ``lonlat``: the same in longitude and latitude, for a projected ``src``), all rings in one pass."""
    parts, part_owner = shapely.get_parts(shapes, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    ring_of = np.repeat(np.arange(len(rings)), shapely.get_num_coordinates(rings))
    small = _rings_small(xy, lonlat, ring_of, len(rings), src, max_err)
    passed = np.ones(len(shapes), dtype=bool)
    passed[part_owner[ring_part[~small]]] = False
    return passed


def _reproject_rest(result, shapes, rows, pairs, pair_of, src_geo, dst_geo, max_err) -> None:
    """``result[rows]``: ``shapes[rows]`` by :func:`reproject_many`, in groups of one pair and edge kinds."""
    groups: dict[tuple[int, bool, bool], list[int]] = {}
    keys = zip(pair_of[rows].tolist(), src_geo[rows].tolist(), dst_geo[rows].tolist(), strict=True)
    for i, key in zip(rows.tolist(), keys, strict=True):
        groups.setdefault(key, []).append(i)
    for (k, sg, dg), idx in groups.items():
        result[idx] = reproject_many(shapes[idx], *pairs[k], sg, dg, max_err)


@vectorised("Geometry.bounds")
def bounds_many(n, geometry, maxError, proj):  # noqa: N803
    if not (_all_geometries(geometry) and _shared(maxError, proj)):
        return per_element("Geometry.bounds", n, {"geometry": geometry, "maxError": maxError, "proj": proj})
    space = proj if proj is not None else WGS84
    shapes = _object_array(_in_proj_many(geometry, space, max_error_m(maxError, proj=space)))
    b = shapely.bounds(shapes)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    rings = np.stack([np.column_stack(c) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))], axis=1)
    empty = shapely.is_empty(shapes)
    boxes = shapely.polygons(np.where(empty[:, None, None], 0.0, rings))
    out = []
    for i, g in enumerate(geometry):
        if empty[i]:
            out.append(_result(shapely.Polygon(), space, False))
        elif x0[i] == x1[i] and y0[i] == y1[i] and g.shape.geom_type == "Point":
            out.append(_result(shapely.Point(x0[i], y0[i]), space, False))
        else:
            out.append(_result(boxes[i], space, False))
    return out


@vectorised("Geometry.centroid")
def centroid_many(n, geometry, maxError, proj):  # noqa: N803
    if not (_all_geometries(geometry) and _shared(maxError, proj)):
        return per_element("Geometry.centroid", n, {"geometry": geometry, "maxError": maxError, "proj": proj})
    if proj is not None:
        shapes = _in_proj_many(geometry, proj, max_error_m(maxError, proj=proj))
        return [_result(c, proj, False) for c in shapely.centroid(_object_array(shapes))]
    err = max_error_m(maxError)
    out: list[Any] = [None] * n
    planar = [i for i, g in enumerate(geometry) if not g.edges_geodesic]
    cents = shapely.centroid(_object_array([geometry[i].shape for i in planar]))
    to_lonlat: dict[str, list[int]] = {}
    for i, c in zip(planar, cents, strict=True):
        g = geometry[i]
        if g.crs == LONLAT or c.is_empty:
            out[i] = Geometry(c, g.proj, g.geodesic, "Point")  # a centroid is a (maybe empty) Point
        else:
            to_lonlat.setdefault(g.crs, []).append(i)
            out[i] = c
    for crs, idx in to_lonlat.items():
        points = reproject_many(_object_array([out[i] for i in idx]), crs, LONLAT, False, False, err)
        for i, p in zip(idx, points, strict=True):
            out[i] = Geometry(p, WGS84)
    for i, g in enumerate(geometry):
        if g.edges_geodesic:
            out[i] = centroid(g, maxError, None)
    return out


@vectorised("Geometry.area")
def area_many(n, geometry, maxError, proj):  # noqa: N803
    """Planar areas in ``proj`` in one call for polygons and multipolygons (GEOS sums the parts in the
    scalar form's order); everything else as the scalar form."""
    if not (_all_geometries(geometry) and _shared(maxError, proj)):
        return per_element("Geometry.area", n, {"geometry": geometry, "maxError": maxError, "proj": proj})
    if proj is None:
        return _geodesic_areas(geometry, maxError)
    shapes = _object_array(_in_proj_many(geometry, proj, max_error_m(maxError, proj=proj)))
    polygonal = np.isin(shapely.get_type_id(shapes), (3, 6)) & ~shapely.is_empty(shapes)
    areas = shapely.area(shapes)
    return [float(areas[i]) if polygonal[i] else area(g, maxError, proj) for i, g in enumerate(geometry)]


def _geodesic_areas(geometry: list[Geometry], maxError: Any) -> list[float]:  # noqa: N803
    """Geodesic areas of lon/lat polygons and multipolygons that need no densification, with all their rings'
    coordinates taken in one call and summed in the scalar form's order; everything else as the scalar form."""
    err = max_error_m(maxError)
    shapes = _object_array([g.shape for g in geometry])
    lonlat = np.array([g.crs == LONLAT for g in geometry], dtype=bool)
    geodesic = np.array([g.edges_geodesic for g in geometry], dtype=bool)
    fast = lonlat & np.isin(shapely.get_type_id(shapes), (3, 6)) & ~shapely.is_empty(shapes)
    slow = fast & ~geodesic
    if slow.any():
        fast[slow] = _bbox_small_many(shapely.bounds(shapes[slow]), LONLAT, err)
    idx = np.nonzero(fast)[0]
    simple = (shapely.get_type_id(shapes[idx]) == 3) & (shapely.get_num_interior_rings(shapes[idx]) == 0)
    xy = shapely.get_coordinates(shapes[idx[simple]])  # a polygon without holes: its one ring's area, as the
    counts = shapely.get_num_coordinates(shapes[idx[simple]])  # scalar form's 0.0 + (ring - 0) gives it
    totals = dict(zip(idx[simple].tolist(), _ring_areas(xy, np.cumsum(np.concatenate([[0], counts]))), strict=True))
    totals.update(_areas_by_parts(idx[~simple], shapes[idx[~simple]]))
    out: list[Any] = [None] * len(geometry)
    for i, g in enumerate(geometry):
        out[i] = totals[i] if i in totals else area(g, maxError, None)
    return out


def _ring_areas(xy: np.ndarray, cuts: np.ndarray) -> list[float]:
    """The geodesic area of each ring whose vertices are ``xy[cuts[k]:cuts[k + 1]]`` (square metres, unsigned)."""
    x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    ring_area = GEOD._polygon_area_perimeter  # what Geod.polygon_area_perimeter calls, on views of one copy
    bounds = cuts.tolist()
    return [abs(ring_area(x[a:b], y[a:b])[0]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _areas_by_parts(idx: np.ndarray, shapes: np.ndarray) -> dict[int, float]:
    """``{idx[k]: area of shapes[k]}`` for lon/lat (multi)polygons: each part's exterior less its holes, the
    parts added one by one from 0.0, in the scalar form's order."""
    parts, part_owner = shapely.get_parts(shapes, return_index=True)
    parts_ok = ~shapely.is_empty(parts)
    rings, ring_part = shapely.get_rings(parts[parts_ok], return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    rings_m2 = _ring_areas(xy, np.searchsorted(ring_of, np.arange(len(rings) + 1)))
    cuts = np.searchsorted(ring_part, np.arange(int(parts_ok.sum()) + 1)).tolist()
    parts_m2 = [rings_m2[a] - sum(rings_m2[a + 1 : b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    cuts = np.searchsorted(part_owner[parts_ok], np.arange(len(idx) + 1)).tolist()
    return {
        i: functools.reduce(operator.add, parts_m2[a:b], 0.0)
        for i, a, b in zip(idx.tolist(), cuts[:-1], cuts[1:], strict=True)
    }


def intersects_pairs(lefts: list[Geometry], rights: list[Geometry], margins: list[Any]) -> np.ndarray:
    """``Geometry.intersects(lefts[i], rights[i], margins[i])`` for every pair, as the scalar algorithm
    decides it (the same common space and reprojection), with one vectorised test per space."""
    out = np.zeros(len(lefts), dtype=bool)
    groups: dict[tuple, list[int]] = {}
    spaces: dict[tuple, tuple[Projection, float]] = {}
    for i, (a, b, margin) in enumerate(zip(lefts, rights, margins, strict=True)):
        space, _ = _space(a, b, None)
        err = max_error_m(margin, proj=space)
        key = (space.crs, space.transform, err)
        spaces[key] = (space, err)
        groups.setdefault(key, []).append(i)
    for key, idx in groups.items():
        space, err = spaces[key]
        shapes = {}
        for side in (lefts, rights):
            unique = list({id(side[i]): side[i] for i in idx}.values())
            shapes.update(zip(map(id, unique), _in_proj_many(unique, space, err), strict=True))
        a = _object_array([shapes[id(lefts[i])] for i in idx])
        b = _object_array([shapes[id(rights[i])] for i in idx])
        out[idx] = shapely.intersects(a, b)
    return out


def intersects_any(lefts: list[Geometry], rights: list[Geometry], margins: list[Any]) -> np.ndarray:
    """For each of ``lefts``, whether ``Geometry.intersects(left, rights[j], margins[j])`` holds for some
    ``j``, each pair decided as the scalar algorithm decides it (the pair's common space and reprojection):
    the lefts grouped by what their space depends on, and per group and space one tree query of the rights'
    shapes with the exact predicate, not one test per pair."""
    out = np.zeros(len(lefts), dtype=bool)
    kinds: dict[tuple, list[int]] = {}
    for i, a in enumerate(lefts):
        kinds.setdefault((id(a.proj), a.geodesic, a.edges_geodesic), []).append(i)
    for idx in kinds.values():
        first = lefts[idx[0]]
        groups: dict[tuple, tuple[Projection, float, list[int]]] = {}
        for j, (b, margin) in enumerate(zip(rights, margins, strict=True)):
            space, _ = _space(first, b, None)
            err = max_error_m(margin, proj=space)
            groups.setdefault((space.crs, space.transform, err), (space, err, []))[2].append(j)
        for space, err, js in groups.values():
            todo = [i for i in idx if not out[i]]
            if not todo:
                break
            tree = shapely.STRtree(_object_array(_in_proj_many([rights[j] for j in js], space, err)))
            shapes = _object_array(_in_proj_many([lefts[i] for i in todo], space, err))
            hit = tree.query(shapes, predicate="intersects")[0]
            out[np.asarray(todo)[np.unique(hit)]] = True
    return out


def _clean_many(shapes: list[shapely.Geometry]) -> np.ndarray:
    """:func:`_clean` of each shape, validity tested in one call."""
    arr = _object_array(shapes)
    invalid = ~shapely.is_valid(arr)
    for i in np.nonzero(invalid)[0]:
        arr[i] = shapely.make_valid(arr[i])
    return arr


def _side(value: Any, n: int, proj: Projection, err: float) -> list[shapely.Geometry]:
    """One operand of a vectorised binary operation, in ``proj``'s units: a column, or one geometry for all."""
    if isinstance(value, Column):
        return _in_proj_many(value, proj, err)
    return _in_proj_many([value], proj, err) * n


def _overlay_many(name: str, op: Callable[[Any, Any], Any]):
    def run(n, left, right, maxError, proj):  # noqa: N803
        operands = [v for v in (left, right) if isinstance(v, Column)]
        if (
            proj is None
            or not _shared(maxError, proj)
            or not all(_all_geometries(v) for v in operands)
            or not all(isinstance(v, Geometry) for v in (left, right) if not isinstance(v, Column))
        ):
            return per_element(name, n, {"left": left, "right": right, "maxError": maxError, "proj": proj})
        err = max_error_m(maxError, proj=proj)
        a = _clean_many(_side(left, n, proj, err))
        b = _clean_many(_side(right, n, proj, err))
        return [_result(shape, proj, False) for shape in op(a, b)]

    return run


vectorised("Geometry.intersection")(_overlay_many("Geometry.intersection", shapely.intersection))
vectorised("Geometry.union")(_overlay_many("Geometry.union", shapely.union))
vectorised("Geometry.difference")(_overlay_many("Geometry.difference", shapely.difference))
vectorised("Geometry.symmetricDifference")(_overlay_many("Geometry.symmetricDifference", shapely.symmetric_difference))


@vectorised("Geometry.dissolve")
def dissolve_many(n, geometry, maxError, proj):  # noqa: N803
    """Reprojection of all elements' geometries at once (``proj`` given); each union as the scalar form."""
    if proj is None or not (_all_geometries(geometry) and _shared(maxError, proj)):
        return per_element("Geometry.dissolve", n, {"geometry": geometry, "maxError": maxError, "proj": proj})
    err = max_error_m(maxError, proj=proj)
    out: list[Any] = [None] * n
    merged = [i for i, g in enumerate(geometry) if proj.is_identity and g._members is not None]
    if merged:  # collections' merged geometries: their members' repaired parts, cached on the members
        members = list({id(m): m for i in merged for m in geometry[i]._members}.values())
        parts_of = dict(zip(map(id, members), _clean_parts_many(members, proj.crs, err), strict=True))
        for i in merged:
            out[i] = _result(shapely.union_all([p for m in geometry[i]._members for p in parts_of[id(m)]]), proj, False)
    rest = [i for i in range(n) if out[i] is None]
    shapes = _in_proj_many([geometry[i] for i in rest], proj, err)
    multi = [s.geom_type == "GeometryCollection" or s.geom_type.startswith("Multi") for s in shapes]
    parts = _cleaned_groups([_flat_parts(s) if m else [] for s, m in zip(shapes, multi, strict=True)])
    for i, shape, m, ps in zip(rest, shapes, multi, parts, strict=True):
        out[i] = _result(shapely.union_all(ps) if m else shape, proj, False)
    return out


def _cleaned_groups(groups: list[list[shapely.Geometry]]) -> list[list[shapely.Geometry]]:
    """Each group's shapes repaired for overlays (:func:`_clean`), validity tested in one call for all."""
    cleaned = iter(_clean_many([p for ps in groups for p in ps]))
    return [[next(cleaned) for _ in ps] for ps in groups]


def _clean_parts_many(members: list[Geometry], crs: str, err: float) -> list[list[shapely.Geometry]]:
    """Each geometry's non-empty parts in ``crs`` (straight edges), repaired for overlays (:func:`_clean`):
    kept in its reprojection cache, as a polygon dissolved with others in many cells is."""
    key = (crs, err, False, "clean parts")
    out: list[Any] = [None] * len(members)
    for i, m in enumerate(members):
        cache = m._in_crs
        out[i] = cache.get(key) if cache else None
    todo = [i for i, parts in enumerate(out) if parts is None]
    if todo:
        shapes = in_crs_many([members[i] for i in todo], crs, err, False)
        parts = _cleaned_groups([[p for p in _flat_parts(s) if not p.is_empty] for s in shapes])
        for i, ps in zip(todo, parts, strict=True):
            out[i] = members[i]._in_crs[key] = ps
    return out


@vectorised("Geometry.coordinates")
def coordinates_many(n, geometry):
    """Points' and hole-free polygons' coordinates from one array conversion; the rest as the scalar form."""
    if not _all_geometries(geometry):
        return per_element("Geometry.coordinates", n, {"geometry": geometry})
    shapes = _object_array([g.shape for g in geometry])
    kind = shapely.get_type_id(shapes)
    simple = ((kind == 0) | ((kind == 3) & (shapely.get_num_interior_rings(shapes) == 0))) & ~shapely.is_empty(shapes)
    xy, owner = shapely.get_coordinates(shapes[simple], return_index=True)
    cuts = np.searchsorted(owner, np.arange(simple.sum() + 1)).tolist()
    flat = xy.tolist()
    rows = iter(range(simple.sum()))
    out = []
    for i, g in enumerate(geometry):
        if not simple[i]:
            out.append(_coordinates(g.shape))
            continue
        k = next(rows)
        points = flat[cuts[k] : cuts[k + 1]]
        out.append(points[0] if kind[i] == 0 else [points])
    return out


# the promotions and signature defaults the argument checks apply (see ``types``)
@promotion("ErrorMargin", "Number")
def _margin_of_number(value: Any) -> ErrorMargin:
    return ErrorMargin(float(value), "meters")


@signature_default("ErrorMargin")
def _default_margin(default: dict) -> ErrorMargin:
    return ErrorMargin(default.get("value", 0.0), default.get("unit", "meters"))

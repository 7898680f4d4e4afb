"""Geometry: a shapely geometry in a projection, geodesic or planar.

Earth Engine's rules: coordinates are in the geometry's projection (EPSG:4326
by default); a geodesic geometry's edges are shortest paths on the Earth and its
area, length and distances are in metres on the ellipsoid (WGS84, with
``pyproj.Geod``); a planar geometry's edges are straight in its projection.
"""

from __future__ import annotations

from typing import Any

import shapely

from .projection import WGS84, Projection

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


class ErrorMargin:
    """``ee.ErrorMargin``: a tolerance in metres or projected units, or infinite."""

    ee_type = "ErrorMargin"

    def __init__(self, value: float = 0.0, unit: str = "meters"):
        self.value = float(value)
        self.unit = unit

    def to_info(self) -> dict:
        info: dict[str, Any] = {"type": "ErrorMargin", "unit": self.unit}
        if self.unit != "infinite":
            info["value"] = self.value
        return info


class Geometry:
    """``shape`` holds coordinates in ``proj``'s CRS units."""

    ee_type = "Geometry"
    __slots__ = ("shape", "proj", "geodesic", "type_name", "even_odd")

    def __init__(
        self,
        shape: shapely.Geometry,
        proj: Projection = WGS84,
        geodesic: bool | None = None,
        type_name: str | None = None,
        even_odd: bool = True,
    ):
        self.shape = shape
        self.proj = proj
        self.geodesic = proj.is_geographic if geodesic is None else bool(geodesic and proj.is_geographic)
        self.type_name = type_name or shape.geom_type
        self.even_odd = even_odd

    def to_info(self) -> dict:
        from shapely.geometry import mapping

        if self.type_name == "GeometryCollection" or self.shape.geom_type == "GeometryCollection":
            parts = [
                Geometry(g, self.proj, self.geodesic).to_info() for g in shapely.get_parts(self.shape)
            ]
            info: dict[str, Any] = {"type": "GeometryCollection", "geometries": parts}
        else:
            gj = mapping(self.shape)
            info = {"type": self.type_name if self.type_name in _GEOJSON_TYPES else gj["type"]}
            info["coordinates"] = _listify(gj["coordinates"])
        if not self.proj.is_wgs84:
            info["crs"] = {"type": "name", "properties": {"name": self.proj.crs}}
        if self.proj.is_geographic and not self.geodesic and info["type"] not in ("Point", "MultiPoint"):
            info["geodesic"] = False
        return info


def _listify(coords: Any) -> Any:
    if isinstance(coords, tuple | list):
        return [_listify(c) for c in coords]
    return coords

"""Step 1: grids of cells over mine polygons.

Cells are squares of a chosen size (5500, 2750 and 1375 m carry the zoom
labels 14, 15 and 16). By default each cell lives in the UTM zone of the
polygons it covers (the Sentinel-2 native projection, EPSG:326zz north of the
equator and 327zz south of it, as Sentinel-2 tiles are), on the grid whose
origin is the projection's origin: cells are then square and true to size on
the ground, an image exported in the cell's projection at 10 m is exactly
cell/10 pixels wide, and every cell splits exactly into the 4 cells of the next
finer level (5500 = 2 x 2750 = 4 x 1375), which the pyramid search relies on.
``projection="EPSG:3857"`` puts every cell on one Web Mercator grid instead
(square on a Google-like map, not true to size away from the equator).

Everything on geometry runs server-side through ``ee``
(``Geometry.coveringGrid`` per zone, intersections and areas in the zone's
projection, spatial filters), so the same code runs on Earth Engine and on the
local engine. Cell names, the nearest-negative assignment and file writing are
small pure functions on the results.

Positives overlap the union of the polygons by at least 0.1 % of their area
(``overlap`` is that fraction); each positive gets its own negative, the
nearest cell (centre to centre) that touches no polygon, optionally at least
``margin`` metres from every polygon.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyproj
import shapely

from gee_mining.contracts.gc_pause import deferred_gc
from gee_mining.errors import InputError
from gee_mining.io.pages import iter_features

ZOOM_SIZES: dict[int, float] = {14: 5500.0, 15: 2750.0, 16: 1375.0}
MIN_OVERLAP = 0.001
MAX_ERROR_M = 1.0
NEGATIVE_REACH = 48  # cells: how far from its positive a negative is looked for
PAGE_SIZE = 5000  # features asked for per computeFeatures page (the server may send fewer)


# -- specs and names (pure) ----------------------------------------------------------


@dataclass(frozen=True)
class GridSpec:
    """A grid level: the cell size in metres, its zoom label, and the grid projection."""

    cell_size: float
    zoom: int
    projection: str = "utm"

    def __post_init__(self):
        if not (self.cell_size > 0 and math.isfinite(self.cell_size)):
            raise InputError(f"cell size {self.cell_size!r}: give a positive size in metres, e.g. 5500.")
        if self.projection not in ("utm", "EPSG:3857"):
            raise InputError(f"grid projection {self.projection!r}: use 'utm' (default) or 'EPSG:3857'.")

    @classmethod
    def of(cls, cell_size: float | None = None, zoom: int | None = None, projection: str = "utm") -> GridSpec:
        """A spec from a size, a zoom label, or both (sizes other than 5500/2750/1375 m need a label)."""
        if cell_size is None and zoom is None:
            raise InputError("give a cell size (--cell 5500) or a zoom level (14, 15, 16).")
        if cell_size is None:
            if zoom not in ZOOM_SIZES:
                raise InputError(f"zoom {zoom}: known levels are {sorted(ZOOM_SIZES)}; give a cell size as well.")
            cell_size = ZOOM_SIZES[zoom]
        if zoom is None:
            zoom = next((z for z, s in ZOOM_SIZES.items() if s == float(cell_size)), None)
            if zoom is None:
                raise InputError(
                    f"cell size {cell_size} m has no zoom label: pass one (e.g. --zoom 13), "
                    f"or use one of {sorted(ZOOM_SIZES.values())}."
                )
        return cls(float(cell_size), int(zoom), projection)

    def child(self) -> GridSpec:
        """The next finer level: each cell splits into 4."""
        return GridSpec(self.cell_size / 2, self.zoom + 1, self.projection)


def check_nesting(levels: Sequence[GridSpec]) -> None:
    """Each level must halve the previous one on the same projection, so cells split into 4."""
    for coarse, fine in zip(levels, levels[1:], strict=False):
        if fine.projection != coarse.projection or abs(coarse.cell_size - 2 * fine.cell_size) > 1e-9:
            raise InputError(
                f"levels {coarse.cell_size} m -> {fine.cell_size} m break the nesting: each level must be half "
                "the previous one, on the same grid projection."
            )


def utm_epsg(lon: float, lat: float) -> int:
    """The EPSG code of the UTM zone (WGS84, by hemisphere) of a point, as Sentinel-2 tiles are."""
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"({lon}, {lat}) is outside the world's longitudes and latitudes.")
    zone = min(60, int(math.floor((lon + 180) / 6)) + 1)
    return (32600 if lat >= 0 else 32700) + zone


def encode_coordinate(value: float) -> str:
    """The seed's encoding: the coordinate times 1000 as an integer, a leading 0 for the minus sign.

    -29.5 -> '029500', 29.5 -> '29500', 0.25 -> '250', -0.25 -> '0250'.
    """
    n = int(round(abs(value) * 1000))
    return ("0" if value < 0 and n else "") + str(n)


def decode_coordinate(text: str) -> float:
    if not text.isdigit():
        raise InputError(f"{text!r} is not an encoded coordinate (digits, a leading 0 for negatives).")
    if len(text) > 1 and text[0] == "0":
        return -int(text[1:]) / 1000
    return int(text) / 1000


def cell_name(lat: float, lon: float, zoom: int, overlap: float | None) -> str:
    """``LAT_LON_Zoom_OverlapPct``; OverlapPct is the percent overlap with one decimal, or ``neg``."""
    pct = "neg" if overlap is None else f"{overlap * 100:.1f}"
    return f"{encode_coordinate(lat)}_{encode_coordinate(lon)}_{zoom}_{pct}"


@dataclass(frozen=True)
class CellName:
    lat: float
    lon: float
    zoom: int
    overlap_pct: float | None  # None for negatives

    @property
    def is_negative(self) -> bool:
        return self.overlap_pct is None


_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(neg|\d+(?:\.\d+)?)$")


def parse_cell_name(name: str) -> CellName:
    m = _NAME.match(name)
    if not m:
        raise InputError(
            f"{name!r} is not a cell name of the form LAT_LON_Zoom_OverlapPct (e.g. 029500_14125_14_12.5)."
        )
    lat, lon, zoom, pct = m.groups()
    return CellName(decode_coordinate(lat), decode_coordinate(lon), int(zoom), None if pct == "neg" else float(pct))


def assign_negatives(
    positives: Sequence[tuple[int, int]],
    blocked: set[tuple[int, int]],
    cell_size: float,
    radius: int,
) -> list[tuple[tuple[int, int], float] | None]:
    """Give each positive (cell indices x, y) a distinct free cell, nearest first.

    Free cells are those within ``radius`` cells (Chebyshev) of a positive that
    are not ``blocked`` (cells touching a polygon, or already taken). Pairs are
    taken in order of centre-to-centre distance, ties by positive order, then
    by candidate (y, x); each positive and each cell is used once. Returns, per
    positive, ``((x, y), distance in metres)``, or None when none is left
    within the radius.
    """

    out: list[tuple[tuple[int, int], float] | None] = [None] * len(positives)
    if not positives:
        return out
    r = np.arange(-radius, radius + 1)
    dx, dy = (a.ravel() for a in np.meshgrid(r, r))
    off = (dx != 0) | (dy != 0)
    dx, dy = dx[off], dy[off]
    pos = np.asarray(positives, dtype=np.int64).reshape(-1, 2)
    x = (pos[:, :1] + dx).ravel()
    y = (pos[:, 1:] + dy).ravel()
    d2 = np.tile(dx * dx + dy * dy, len(pos))
    who = np.repeat(np.arange(len(pos)), len(dx))
    if blocked:
        keys = np.array([((bx + 2**30) << 31) | (by + 2**30) for bx, by in blocked], dtype=np.int64)
        free = ~np.isin(((x + 2**30) << 31) | (y + 2**30), keys)
        x, y, d2, who = x[free], y[free], d2[free], who[free]
    order = np.lexsort((x, y, who, d2))
    used: set[tuple[int, int]] = set()
    for i, cx, cy, dd in zip(
        who[order].tolist(), x[order].tolist(), y[order].tolist(), d2[order].tolist(), strict=True
    ):
        if out[i] is None and (cx, cy) not in used:
            out[i] = ((cx, cy), math.sqrt(dd) * cell_size)
            used.add((cx, cy))
    return out


# -- server-side graphs ----------------------------------------------------------------


def tag_zones(ee, polygons, spec: GridSpec):
    """Each polygon with ``grid_epsg``: the UTM zone of its centroid (or 3857)."""
    if spec.projection == "EPSG:3857":
        return polygons.map(lambda f: f.set("grid_epsg", 3857))

    def tag(f):
        c = f.geometry().centroid(MAX_ERROR_M).coordinates()
        lon, lat = ee.Number(c.get(0)), ee.Number(c.get(1))
        zone = lon.add(180).divide(6).floor().add(1).min(60)
        south = lat.lt(0).multiply(100)  # 326zz north of the equator, 327zz south
        return f.set("grid_epsg", south.add(32600).add(zone).int())

    return polygons.map(tag)


@dataclass(frozen=True)
class Metadata:
    """What each cell is annotated with, server-side.

    ``countries``: a table with a country name column (Earth Engine's LSIB by
    default): the country at the cell's centre. ``landcover``: an image or
    image collection of classes (ESA WorldCover by default): the share of each
    class in the cell, from pixels sampled at ``landcover_scale`` metres.
    ``images``: extra ``(column, image id, band, reducer name)`` statistics
    (e.g. ``("elevation", "USGS/SRTMGL1_003", "elevation", "mean")``).
    ``tables``: extra ``(column, table id, property)``: the property of the
    table's feature at the cell's centre. None switches a source off.
    """

    countries: str | None = "USDOS/LSIB_SIMPLE/2017"
    country_column: str = "country_na"
    landcover: str | None = "ESA/WorldCover/v200"
    landcover_band: str = "Map"
    landcover_scale: float = 100.0
    images: tuple[tuple[str, str, str, str], ...] = ()
    tables: tuple[tuple[str, str, str], ...] = ()


NO_METADATA = Metadata(countries=None, landcover=None)
METADATA_REDUCERS = ("mean", "median", "min", "max", "sum", "stdDev", "mode", "count")


def parse_image_stat(text: str) -> tuple[str, str, str, str]:
    """``COLUMN=IMAGE_ID:BAND:REDUCER`` (e.g. ``elevation=USGS/SRTMGL1_003:elevation:mean``) as a ``Metadata.images`` entry."""
    column, sep, rest = text.partition("=")
    parts = rest.rsplit(":", 2)
    if not sep or not column or len(parts) != 3 or not all(parts):
        raise InputError(
            f"image statistic {text!r}: write COLUMN=IMAGE_ID:BAND:REDUCER, e.g. elevation=USGS/SRTMGL1_003:elevation:mean"
        )
    image_id, band, reducer = parts
    if reducer not in METADATA_REDUCERS:
        raise InputError(f"image statistic {text!r}: reducer {reducer!r} is not one of {', '.join(METADATA_REDUCERS)}")
    return column, image_id, band, reducer


def parse_table_property(text: str) -> tuple[str, str, str]:
    """``COLUMN=TABLE_ID:PROPERTY`` (the property of the table's feature at the cell's centre) as a ``Metadata.tables`` entry."""
    column, sep, rest = text.partition("=")
    parts = rest.rsplit(":", 1)
    if not sep or not column or len(parts) != 2 or not all(parts):
        raise InputError(
            f"table property {text!r}: write COLUMN=TABLE_ID:PROPERTY, e.g. basin=projects/p/assets/basins:NAME"
        )
    return column, parts[0], parts[1]


def _at_centre(ee, table_id: str, point, column: str):
    hit = ee.FeatureCollection(table_id).filterBounds(point).first()
    return ee.Algorithms.If(hit, ee.Feature(hit).get(column), None)


def _image(ee, asset_id: str):
    """An image asset, or the first image of an image collection (WorldCover is a collection of one)."""
    info = ee.data.getAsset(asset_id)
    if info.get("type") == "IMAGE_COLLECTION":
        return ee.ImageCollection(asset_id).first()
    return ee.Image(asset_id)


def _corners(ee, box):
    """A bounding rectangle's south-west and north-east corners (all the table needs of its ring)."""
    ring = ee.List(box.coordinates().get(0))
    return ee.List([ring.get(0), ring.get(2)])


def _cell_properties(ee, cell, proj, epsg: int, metadata: Metadata = NO_METADATA):
    g = cell.geometry()
    lonlat = g.transform("EPSG:4326", MAX_ERROR_M)
    centre = g.centroid(MAX_ERROR_M)
    props = {
        "epsg": epsg,
        "centroid": centre.coordinates(),
        "bounds": _corners(ee, lonlat.bounds(MAX_ERROR_M)),
    }
    if metadata.countries:
        props["country"] = _at_centre(ee, metadata.countries, centre, metadata.country_column)
    if metadata.landcover:
        classes = _image(ee, metadata.landcover).select(metadata.landcover_band)
        props["landcover"] = classes.reduceRegion(
            ee.Reducer.frequencyHistogram(), g, metadata.landcover_scale, proj
        ).get(metadata.landcover_band)
    for column, image_id, band, reducer in metadata.images:
        # At the image's own resolution (its default projection), not the grid's 1 m unit.
        stat = _image(ee, image_id).select(band).reduceRegion(getattr(ee.Reducer, reducer)(), g, maxPixels=1e10)
        props[column] = stat.get(band)
    for column, table_id, prop in metadata.tables:
        props[column] = _at_centre(ee, table_id, centre, prop)
    return props


def positive_cells(
    ee,
    tagged,
    epsg: int,
    spec: GridSpec,
    id_column: str,
    region=None,
    keep: Sequence[str] = (),
    metadata: Metadata = NO_METADATA,
    with_geometry: bool = True,
):
    """The zone's cells overlapping the polygons, with overlap fraction, polygon ids, centroid, bounds.

    Cells below the minimum overlap are dropped unless their id (``"x,y"``) is in ``keep``. Without
    ``with_geometry`` the features carry no square (the table needs only its bounds): less to send back.
    """
    crs = ee.Projection(f"EPSG:{epsg}")
    zone_polys = tagged.filter(ee.Filter.eq("grid_epsg", epsg))
    if region is not None:
        zone_polys = zone_polys.filterBounds(region)
    cells = zone_polys.geometry().coveringGrid(crs.atScale(spec.cell_size))
    area = spec.cell_size * spec.cell_size

    def measure(cell):
        g = cell.geometry()
        touching = tagged.filterBounds(g)
        inter = touching.geometry().dissolve(MAX_ERROR_M, crs).intersection(g, MAX_ERROR_M, crs)
        props = _cell_properties(ee, cell, crs, epsg, metadata)
        props["overlap"] = inter.area(MAX_ERROR_M, crs).divide(area)
        props["polygon_ids"] = touching.aggregate_array(id_column)
        return cell.set(props) if with_geometry else _without_geometry(ee, cell, props)

    passes = ee.Filter.gte("overlap", MIN_OVERLAP)
    if keep:
        passes = ee.Filter.Or(passes, ee.Filter.inList("system:index", list(keep)))
    return cells.map(measure).filter(passes)


def _without_geometry(ee, cell, props: dict):
    return ee.Feature(None, props).set("system:index", cell.id())


def neighbour_zones(epsg: int) -> list[int]:
    """A UTM zone's EPSG with its east and west neighbours (across the antimeridian too), both hemispheres."""
    if epsg == 3857:
        return [3857]
    zone = epsg % 100
    zones = {zone, zone % 60 + 1, (zone - 2) % 60 + 1}
    return sorted(base + z for base in (32600, 32700) for z in zones)


def _touching_grid(ee, tagged, epsg: int, spec: GridSpec, margin: float):
    """The zone's cells touching a (buffered) polygon of it or of a neighbouring zone, within reach of the
    pairing: polygons farther than :data:`NEGATIVE_REACH` cells (plus two, against rounding) from the box
    around the zone's own polygons cannot touch a cell a negative may be looked for in. Zones whose box
    could reach the antimeridian keep every neighbour (see :func:`reach_is_clear_of_antimeridian`); the grid
    itself is planar in the zone and safe there."""
    crs = ee.Projection(f"EPSG:{epsg}")
    near = tagged.filter(ee.Filter.inList("grid_epsg", neighbour_zones(epsg)))
    if margin > 0:
        near = near.map(lambda f: f.setGeometry(f.geometry().buffer(margin, MAX_ERROR_M)))
    reach = (NEGATIVE_REACH + 2) * spec.cell_size * math.sqrt(2)  # the box's corners too
    if reach_is_clear_of_antimeridian(epsg, reach + margin):
        zone_box = tagged.filter(ee.Filter.eq("grid_epsg", epsg)).geometry().bounds(MAX_ERROR_M, crs)
        near = near.filterBounds(zone_box.buffer(reach, spec.cell_size / 10, crs))
    return near.geometry().coveringGrid(crs.atScale(spec.cell_size))


def reach_is_clear_of_antimeridian(epsg: int, reach_m: float) -> bool:
    """Whether a UTM zone's polygons, grown by ``reach_m`` metres, stay at least a zone's width (6 degrees,
    for polygons reaching out of their zone) from the antimeridian even at 84 degrees of latitude, UTM's
    limit: there the box can be tested in longitude and latitude (the local engine's common space for a
    UTM box against longitude/latitude polygons), which an antimeridian crossing would break."""
    if not (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        return False
    zone = epsg % 100
    degrees = reach_m / (111_320.0 * math.cos(math.radians(84.0))) + 6.0
    return min(6 * (zone - 1), 6 * (60 - zone)) > degrees


def touching_collection(ee, tagged, epsg: int, spec: GridSpec, margin: float):
    """The zone's cells that touch a polygon, or come within ``margin`` metres of one: the cells no
    negative may take, as features with ids ``"x,y"`` and no geometry. Polygons of the neighbouring zones
    count too (cells near a zone edge or the antimeridian), within the pairing's reach (see
    :func:`_touching_grid`)."""
    cells = _touching_grid(ee, tagged, epsg, spec, margin)
    return cells.map(lambda c: ee.Feature(None, {"cell": c.id()}).set("system:index", c.id()))


def touching_cells(ee, tagged, epsg: int, spec: GridSpec, margin: float):
    """Ids (``"x,y"``) of :func:`touching_collection`'s cells, as a list."""
    return _touching_grid(ee, tagged, epsg, spec, margin).aggregate_array("system:index")


def measured_cells(ee, epsg: int, spec: GridSpec, cells: Sequence[tuple[int, int]], metadata: Metadata = NO_METADATA):
    """Centroids and bounds (EPSG:4326) of the given cells of a zone's grid, as a FeatureCollection of
    features without geometry (ids ``"x,y"``).

    The cells travel as their centres, one JSON string (a graph of one rectangle per cell would take the
    client longer to serialise than the engine to measure them), and become the grid's own squares again
    by ``coveringGrid`` of those points: ids ``"x,y"``, planar in the zone's projection."""
    crs = ee.Projection(f"EPSG:{epsg}")
    size = spec.cell_size
    centres = json.dumps([[(x + 0.5) * size, (y + 0.5) * size] for x, y in cells])
    points = ee.Geometry.MultiPoint(ee.List(ee.String(centres).decodeJSON()), f"EPSG:{epsg}")
    return points.coveringGrid(crs.atScale(size)).map(
        lambda cell: _without_geometry(ee, cell, _cell_properties(ee, cell, crs, epsg, metadata))
    )


# -- the step ------------------------------------------------------------------------------


@dataclass
class GridTable:
    """The grid: one row per cell (positives, then their negatives), plus what happened."""

    spec: GridSpec
    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def positives(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["label"] == 1]

    @property
    def negatives(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["label"] == 0]


def _index(cell_id: str) -> tuple[int, int]:
    """A cell's ``"x,y"`` id (or a flattened collection's ``"k_x,y"``) as indices."""
    x, y = cell_id.rsplit("_", 1)[-1].split(",")
    return int(x), int(y)


def _row(feature: dict, spec: GridSpec, label: int) -> dict[str, Any]:
    p = feature["properties"]
    lon, lat = p["centroid"]
    xs = [c[0] for c in p["bounds"]]
    ys = [c[1] for c in p["bounds"]]
    x, y = _index(feature["id"])
    return {
        "name": cell_name(lat, lon, spec.zoom, p["overlap"] if label else None),
        "zoom": spec.zoom,
        "cell_size": spec.cell_size,
        "label": label,
        "overlap": p.get("overlap", 0.0) if label else 0.0,
        "epsg": int(p["epsg"]),
        "cell_x": x,
        "cell_y": y,
        "lon": lon,
        "lat": lat,
        "west": min(xs),
        "south": min(ys),
        "east": max(xs),
        "north": max(ys),
        "polygon_ids": list(p.get("polygon_ids", [])) if label else [],
        "distance_m": 0.0,
        "pair": None,
        "nesting_only": False,
        **_metadata_columns(p),
    }


_BASE_PROPERTIES = {"centroid", "bounds", "epsg", "overlap", "polygon_ids"}


def _metadata_columns(props: dict[str, Any]) -> dict[str, Any]:
    """Metadata properties as table columns; a land-cover histogram becomes one share column per class."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key in _BASE_PROPERTIES:
            continue
        if key == "landcover":
            hist = value or {}
            total = sum(hist.values())
            for cls, count in sorted(hist.items(), key=lambda kv: float(kv[0])):
                out[f"lc_{int(float(cls))}"] = count / total if total else 0.0
        else:
            out[key] = value
    return out


def available_metadata(ee, metadata: Metadata, warn: Callable[[str], None]) -> Metadata:
    """``metadata`` without the sources whose assets the engine does not have (each one warned about)."""

    def exists(asset_id: str) -> bool:
        try:
            ee.data.getAsset(asset_id)
            return True
        except ee.EEException:
            warn(f"metadata source {asset_id} not found on this engine: its columns are left out")
            return False

    return dataclasses.replace(
        metadata,
        countries=metadata.countries if metadata.countries and exists(metadata.countries) else None,
        landcover=metadata.landcover if metadata.landcover and exists(metadata.landcover) else None,
        images=tuple(m for m in metadata.images if exists(m[1])),
        tables=tuple(m for m in metadata.tables if exists(m[1])),
    )


@deferred_gc()  # thousands of cells decoded and tabulated: see gc_pause
def build_grid(
    ee,
    polygons: Any,
    spec: GridSpec,
    *,
    region: Any = None,
    margin: float = 0.0,
    id_column: str | None = None,
    progress: Callable[[str], None] | None = None,
    keep: dict[int, set[str]] | None = None,
    metadata: Metadata | None = None,
) -> GridTable:
    """Positives with overlap, their distinct nearest negatives, names: the grid of one level.

    ``polygons``: an ``ee.FeatureCollection`` or a table asset id. ``region``: an
    optional ``ee.Geometry`` to restrict to. ``margin``: keep negatives this many
    metres from every polygon. ``id_column``: the polygons' id property
    (default: ``id`` if the table has it, else ``system:index``). ``keep``: per
    zone EPSG, ids (``"x,y"``) of cells kept as positives whatever their
    overlap (the parents of finer positives, see :func:`build_levels`).
    ``metadata``: what to annotate cells with (default :class:`Metadata`: country
    and land-cover shares, from the sources the engine has).
    """

    say = progress or (lambda msg: None)
    fc = ee.FeatureCollection(polygons) if isinstance(polygons, str) else polygons
    if margin < 0:
        raise InputError(f"margin {margin}: give a distance in metres >= 0.")
    count = fc.size().getInfo()
    if count == 0:
        raise InputError("the polygon set is empty: give a table with at least one mine polygon.")
    if id_column is None:
        first = fc.first().propertyNames().getInfo()
        id_column = "id" if "id" in first else "system:index"
    tagged = tag_zones(ee, fc, spec)
    zones = sorted({int(z) for z in tagged.aggregate_array("grid_epsg").distinct().getInfo()})
    table = GridTable(spec)
    metadata = available_metadata(ee, Metadata() if metadata is None else metadata, table.warnings.append)
    say(f"[grid] {count:,} polygons in {len(zones)} grid zone(s) at {spec.cell_size:g} m (zoom {spec.zoom})")
    # One request per phase for all zones: the polygons are tagged once per request, not once per zone.
    pos_fc = ee.FeatureCollection(
        [
            positive_cells(
                ee, tagged, epsg, spec, id_column, region, sorted((keep or {}).get(epsg, ())), metadata, False
            )
            for epsg in zones
        ]
    ).flatten()
    by_zone: dict[int, list[dict[str, Any]]] = {}
    for f in iter_features(pos_fc, PAGE_SIZE):
        row = _row(f, spec, 1)
        row["nesting_only"] = row["overlap"] < MIN_OVERLAP
        by_zone.setdefault(row["epsg"], []).append(row)
    say(f"[grid] {sum(map(len, by_zone.values())):,} positive cells in {len(by_zone)} zone(s)")
    pos_zones = sorted(by_zone)
    if pos_zones:
        lists = ee.List([touching_cells(ee, tagged, epsg, spec, margin) for epsg in pos_zones]).getInfo()
        blocked = {epsg: {_index(i) for i in ids} for epsg, ids in zip(pos_zones, lists, strict=True)}
        say(f"[grid] {sum(map(len, blocked.values())):,} cells touch a polygon: pairing negatives")
        add_negatives(ee, table, {epsg: by_zone[epsg] for epsg in pos_zones}, blocked, metadata)
    names = [r["name"] for r in table.rows]
    if len(set(names)) != len(names):
        raise AssertionError("cell names are not unique")  # cannot happen for cells >= 100 m apart
    say(f"[grid] {len(table.positives)} positives, {len(table.negatives)} negatives")
    return table


def pair_negatives(
    spec: GridSpec,
    epsg: int,
    positives: list[dict[str, Any]],
    blocked: set[tuple[int, int]],
    warn: Callable[[str], None],
) -> list[tuple[tuple[int, int], float] | None]:
    """Each positive's distinct nearest free cell of its zone (see :func:`assign_negatives`), searching
    ever farther (3 to :data:`NEGATIVE_REACH` cells) for the positives still without one.

    A first round over the 8 neighbours settles most positives cheaply; it makes the same choices as the
    first pairs of the 3-cell round (those at distance 1 and sqrt 2, taken first there too)."""
    pos_index = [(r["cell_x"], r["cell_y"]) for r in positives]
    assigned: list = [None] * len(positives)
    blocked = set(blocked)
    radius = 1
    while True:
        todo = [i for i, a in enumerate(assigned) if a is None]
        hits = assign_negatives([pos_index[i] for i in todo], blocked, spec.cell_size, radius)
        for k, hit in zip(todo, hits, strict=True):
            if hit is not None:
                assigned[k] = hit
                blocked.add(hit[0])
        missing = sum(a is None for a in assigned)
        if not missing:
            return assigned
        if radius >= NEGATIVE_REACH:
            warn(f"EPSG:{epsg}: {missing} positive cell(s) got no negative within {radius} cells.")
            return assigned
        radius = 3 if radius == 1 else radius * 2


def add_negatives(
    ee,
    table: GridTable,
    positives: dict[int, list[dict[str, Any]]],
    blocked: dict[int, set[tuple[int, int]]],
    metadata: Metadata,
) -> None:
    """Pair each positive (per zone EPSG) with its nearest free cell, measure those cells server-side (one
    request for all zones), and append positives and negatives to ``table``."""

    spec = table.spec
    assigned = {
        epsg: pair_negatives(spec, epsg, rows, blocked.get(epsg, set()), table.warnings.append)
        for epsg, rows in positives.items()
    }
    chosen = {epsg: [a[0] for a in hits if a is not None] for epsg, hits in assigned.items()}
    measured = {}
    zones = [epsg for epsg in sorted(chosen) if chosen[epsg]]
    if zones:
        cells = ee.FeatureCollection([measured_cells(ee, epsg, spec, chosen[epsg], metadata) for epsg in zones])
        for f in iter_features(cells.flatten(), PAGE_SIZE):
            row = _row(f, spec, 0)
            measured[(row["epsg"], row["cell_x"], row["cell_y"])] = row
    for epsg, rows in positives.items():
        for pos, neg in zip(rows, assigned[epsg], strict=True):
            table.rows.append(pos)
            if neg is not None:
                row = dict(measured[(epsg, *neg[0])])
                row["distance_m"] = neg[1]
                row["pair"] = pos["name"]
                pos["pair"] = row["name"]
                table.rows.append(row)


# -- the global run: Export.table tasks per zone, then the negatives from what they wrote ----------


def export_grid(
    ee,
    polygons: Any,
    spec: GridSpec,
    bucket: str,
    prefix: str,
    *,
    region: Any = None,
    margin: float = 0.0,
    id_column: str | None = None,
    metadata: Metadata | None = None,
    start: bool = True,
) -> list[Any]:
    """Start the global run of one level as batch tasks: per UTM zone, an ``Export.table`` (GeoJSON) of its
    positive cells (``PREFIX/zZOOM/positives_EPSGnnnnn``) and one of the cells no negative may take
    (``.../touching_EPSGnnnnn``). :func:`grid_from_exports` then pairs the negatives. Returns the tasks.
    """
    fc = ee.FeatureCollection(polygons) if isinstance(polygons, str) else polygons
    if id_column is None:
        id_column = "id" if "id" in fc.first().propertyNames().getInfo() else "system:index"
    warnings_: list[str] = []
    metadata = available_metadata(ee, Metadata() if metadata is None else metadata, warnings_.append)
    tagged = tag_zones(ee, fc, spec)
    zones = sorted({int(z) for z in tagged.aggregate_array("grid_epsg").distinct().getInfo()})
    tasks = []
    for epsg in zones:
        for kind, collection in (
            ("positives", positive_cells(ee, tagged, epsg, spec, id_column, region, (), metadata)),
            ("touching", touching_collection(ee, tagged, epsg, spec, margin)),
        ):
            task = ee.batch.Export.table.toCloudStorage(
                collection,
                description=f"grid_z{spec.zoom}_{kind}_EPSG{epsg}",
                bucket=bucket,
                fileNamePrefix=f"{prefix}/z{spec.zoom}/{kind}_EPSG{epsg}",
                fileFormat="GeoJSON",
            )
            if start:
                task.start()
            tasks.append(task)
    return tasks


def grid_from_exports(ee, folder: str | os.PathLike, spec: GridSpec, metadata: Metadata | None = None) -> GridTable:
    """The grid of one level from the files :func:`export_grid`'s tasks wrote (downloaded to ``folder``,
    the ``zZOOM`` folder): positives as exported, negatives paired here and measured server-side."""

    folder = Path(folder)
    table = GridTable(spec)
    metadata = available_metadata(ee, Metadata() if metadata is None else metadata, table.warnings.append)
    files = sorted(folder.glob("positives_EPSG*.geojson"))
    if not files:
        raise InputError(f"{folder}: no positives_EPSG*.geojson files; download the export tasks' output there.")
    positives: dict[int, list[dict[str, Any]]] = {}
    blocked: dict[int, set[tuple[int, int]]] = {}
    for path in files:
        epsg = int(path.stem.rsplit("EPSG", 1)[1])
        touching = folder / f"touching_EPSG{epsg}.geojson"
        if not touching.exists():
            raise InputError(f"{touching} is missing: its export task has not finished or was not downloaded.")
        rows = [_row(f, spec, 1) for f in json.loads(path.read_text())["features"]]
        for r in rows:
            r["nesting_only"] = r["overlap"] < MIN_OVERLAP
        if rows:
            positives[epsg] = rows
            blocked[epsg] = {_index(f["properties"]["cell"]) for f in json.loads(touching.read_text())["features"]}
    add_negatives(ee, table, positives, blocked, metadata)
    return table


def build_levels(ee, polygons: Any, levels: Sequence[GridSpec], **options: Any) -> list[GridTable]:
    """Nested grids, coarse to fine, such that every positive lies inside a positive of each coarser level.

    A fine cell may pass the 0.1 % overlap threshold while its parent, four
    times larger, does not; such parents are kept as positives, with their true
    overlap and ``nesting_only`` set, so that the pyramid never loses a mine
    between levels. Levels are built finest first.
    """
    levels = list(levels)
    check_nesting(levels)
    out: list[GridTable] = []
    keep: dict[int, set[str]] = {}
    for spec in reversed(levels):
        table = build_grid(ee, polygons, spec, keep=keep, **options)
        out.append(table)
        keep = {}
        for r in table.positives:
            keep.setdefault(r["epsg"], set()).add(f"{r['cell_x'] // 2},{r['cell_y'] // 2}")
    return out[::-1]


# -- a cell's pixel grid (pure) --------------------------------------------------------


@dataclass(frozen=True)
class PixelGrid:
    """The pixel lattice of one cell: ``width`` x ``height`` pixels of ``scale`` metres in ``crs``.

    ``transform`` is Earth Engine's ``crsTransform`` (``[xScale, 0, x0, 0, -yScale, y1]``, the
    upper-left corner), so ``ee.Image.reproject(crs, transform)``, ``computePixels``'s grid and
    ``Export.image``'s ``crsTransform`` all land on the same pixels, on Earth Engine and locally.
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    @property
    def scale(self) -> float:
        return self.transform[0]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in ``crs``."""
        x0, y1 = self.transform[2], self.transform[5]
        return x0, y1 - self.height * self.scale, x0 + self.width * self.scale, y1

    def ee_grid(self) -> dict:
        """The ``grid`` argument of ``ee.data.computePixels`` for this lattice."""
        return {
            "dimensions": {"width": self.width, "height": self.height},
            "affineTransform": dict(zip(("scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY"),
                                        self.transform, strict=True)),
            "crsCode": self.crs,
        }  # fmt: skip


def pixel_grid(row: dict[str, Any], scale: float = 10.0) -> PixelGrid:
    """The lattice of a grid-table row (``epsg``, ``cell_x``, ``cell_y``, ``cell_size``) at ``scale`` metres.

    The lattice is aligned to multiples of ``scale`` in the cell's UTM zone, as Sentinel-2's own
    10, 20 and 60 m pixels are, so nothing is resampled. When ``scale`` divides the cell (5500 and
    2750 m at 10 m) the lattice is the cell, exactly ``cell_size / scale`` pixels wide. When it
    does not (1375 m at 10 m: 137.5 pixels) the lattice is the smallest one that covers the cell,
    reaching at most one pixel beyond it (138 x 138 pixels for every 1375 m cell at 10 m).
    """
    size = float(row["cell_size"])
    if not scale > 0:
        raise InputError(f"scale {scale!r}: give a positive pixel size in metres, e.g. 10.")
    x0, y0 = row["cell_x"] * size, row["cell_y"] * size
    left, bottom = math.floor(x0 / scale + 1e-9) * scale, math.floor(y0 / scale + 1e-9) * scale
    right, top = math.ceil((x0 + size) / scale - 1e-9) * scale, math.ceil((y0 + size) / scale - 1e-9) * scale
    width, height = int(round((right - left) / scale)), int(round((top - bottom) / scale))
    epsg = int(row["epsg"])
    return PixelGrid(f"EPSG:{epsg}", (scale, 0.0, left, 0.0, -scale, top), width, height)


def child_indices(cell_x: int, cell_y: int) -> list[tuple[int, int]]:
    """The indices of the 4 cells of the next finer level inside cell ``(cell_x, cell_y)``: NW, NE, SW, SE.

    The grid's origin is its projection's origin, so cell ``(x, y)`` of size ``s`` is exactly the cells
    ``(2x .. 2x+1, 2y .. 2y+1)`` of size ``s/2`` (y grows northwards).
    """
    x, y = 2 * int(cell_x), 2 * int(cell_y)
    return [(x, y + 1), (x + 1, y + 1), (x, y), (x + 1, y)]


def child_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The 4 cells of the next finer level that tile a grid-table row's cell, as rows (NW, NE, SW, SE).

    Each is named ``<parent name>_q<k>`` (k = 0..3 in that order; their overlap is not measured, so
    they carry no ``LAT_LON_Zoom_OverlapPct`` name of their own), keeps the parent's ``label`` and
    metadata, records ``parent`` and ``split_depth``, and has its own index, size, centroid and bounds.
    Used to re-plan an export that failed for being too large (``jobs``).
    """
    size = float(row["cell_size"]) / 2
    dropped = {"overlap", "polygon_ids", "pair", "distance_m", "nesting_only"}
    out = []
    for k, (x, y) in enumerate(child_indices(row["cell_x"], row["cell_y"])):
        child = {key: value for key, value in row.items() if key not in dropped}
        child.update(name=f"{row['name']}_q{k}", cell_size=size, cell_x=x, cell_y=y, parent=row["name"],
                     split_depth=int(row.get("split_depth") or 0) + 1)  # fmt: skip
        if row.get("zoom") is not None:
            child["zoom"] = int(row["zoom"]) + 1
        polygon = cell_polygon(child)
        west, south, east, north = polygon.bounds
        centre = polygon.centroid
        child.update(lon=centre.x, lat=centre.y, west=west, south=south, east=east, north=north)
        out.append(child)
    return out


def ee_cell_geometry(ee, row: dict[str, Any]):
    """The cell's square as an ``ee.Geometry`` in its own projection (planar, as the grid made it)."""
    x0, y0 = row["cell_x"] * row["cell_size"], row["cell_y"] * row["cell_size"]
    s = row["cell_size"]
    return ee.Geometry.Rectangle([x0, y0, x0 + s, y0 + s], f"EPSG:{int(row['epsg'])}", False)


# -- writing -------------------------------------------------------------------------------

COLUMNS = [
    "name", "zoom", "cell_size", "label", "overlap", "epsg", "cell_x", "cell_y", "lon", "lat",
    "west", "south", "east", "north", "distance_m", "pair", "nesting_only", "polygon_ids",
]  # fmt: skip


def cell_polygon(row: dict[str, Any]):
    """The cell's square in its projection, reprojected to EPSG:4326 (edges densified)."""

    size = row["cell_size"]
    x0, y0 = row["cell_x"] * size, row["cell_y"] * size
    square = shapely.segmentize(shapely.box(x0, y0, x0 + size, y0 + size), size / 16)
    tf = pyproj.Transformer.from_crs(row["epsg"], 4326, always_xy=True)
    return shapely.transform(square, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


def write_table(table: GridTable, path: str | os.PathLike) -> Path:
    """Write the grid as GeoParquet (.parquet), GeoPackage (.gpkg) or CSV with bounds (.csv)."""

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".gpkg", ".csv"):
        raise InputError(f"{path}: write the grid as .parquet (GeoParquet), .gpkg or .csv.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".partial-", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        {".parquet": _write_parquet, ".gpkg": _write_gpkg, ".csv": _write_csv}[suffix](table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def columns_of(table: GridTable) -> list[str]:
    """The base columns, then metadata columns in order of first appearance."""
    extra: dict[str, None] = {}
    for r in table.rows:
        for key in r:
            if key not in COLUMNS:
                extra.setdefault(key, None)
    lc = sorted((k for k in extra if k.startswith("lc_")), key=lambda k: int(k[3:]))
    return COLUMNS + [k for k in extra if not k.startswith("lc_")] + lc


def _column(rows: Iterable[dict], name: str) -> list:
    if name == "polygon_ids":
        return [";".join(str(v) for v in r[name]) for r in rows]
    if name.startswith("lc_"):
        return [r.get(name, 0.0) for r in rows]
    return [r.get(name) for r in rows]


def _write_csv(table: GridTable, path: Path) -> None:

    columns = columns_of(table)
    values = [_column(table.rows, c) for c in columns]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for row in zip(*values, strict=True):
            w.writerow(["" if v is None else v for v in row])


def _write_parquet(table: GridTable, path: Path) -> None:

    geoms = [shapely.to_wkb(cell_polygon(r)) for r in table.rows]
    data = {c: _column(table.rows, c) for c in columns_of(table)}
    data["geometry"] = geoms
    geo = {
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"], "crs": None}},
    }
    pa_table = pa.table(data).replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    pq.write_table(pa_table, path)


def _write_gpkg(table: GridTable, path: Path) -> None:

    path.unlink(missing_ok=True)
    geoms = np.array([shapely.to_wkb(cell_polygon(r)) for r in table.rows], dtype=object)
    columns = columns_of(table)
    fields = []
    for c in columns:
        values = _column(table.rows, c)
        kind = object if any(isinstance(v, str) for v in values) or any(v is None for v in values) else None
        fields.append(np.array(values, dtype=kind))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyogrio.raw.write(
            path,
            geometry=geoms,
            field_data=fields,
            fields=columns,
            crs="EPSG:4326",
            driver="GPKG",
            geometry_type="Polygon",
            layer="grid",
        )


def parse_region(ee, text: str | None):
    """``W,S,E,N`` in degrees as an ee.Geometry.Rectangle, checked against the world's bounds."""
    if not text:
        return None
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--region {text!r}: give west,south,east,north in degrees, e.g. -60,-10,-50,0.") from None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InputError(
            f"--region {text!r} is outside the world or empty: longitudes within -180..180, latitudes within "
            "-90..90, west < east and south < north."
        )
    return ee.Geometry.Rectangle([west, south, east, north], None, False)

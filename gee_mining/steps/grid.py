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
local engine. Cell names, nesting and the nearest-negative assignment are pure
functions in :mod:`gee_mining.contracts.cells`; the table is written by :mod:`gee_mining.io.grid_table`.

Positives overlap the union of the polygons by at least 0.1 % of their area
(``overlap`` is that fraction); each positive gets its own negative, the
nearest cell (centre to centre) that touches no polygon, optionally at least
``margin`` metres from every polygon.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gee_mining.contracts.cells import (
    MIN_OVERLAP,
    NEGATIVE_REACH,
    GridSpec,
    GridTable,
    assign_negatives,
    cell_bounds,
    cell_index,
    cell_name,
    check_nesting,
    neighbour_zones,
    reach_is_clear_of_antimeridian,
)
from gee_mining.contracts.gc_pause import deferred_gc
from gee_mining.errors import InputError
from gee_mining.io.pages import iter_features

MAX_ERROR_M = 1.0
PAGE_SIZE = 5000  # features asked for per computeFeatures page (the server may send fewer)
GRID_BLOCK = 128  # cells: the side of the lattice squares whose positives one request asks for
MEASURE_BLOCK = 1000  # negatives measured per request: each answer stays bounded however many there are


# -- specs and names (pure) ----------------------------------------------------------


# -- server-side graphs ----------------------------------------------------------------


def tag_zones(ee, polygons, spec: GridSpec):
    """Each polygon with ``grid_epsg``: the UTM zone of its centroid (or 3857).

    A polygon with parts on both sides of the antimeridian (split there, as RFC 7946 asks: its
    longitude/latitude bounds span more than 180 degrees) goes to zone 60, whose projection is continuous
    across the antimeridian; its planar centroid in degrees would be near longitude 0, half a world away."""
    if spec.projection == "EPSG:3857":
        return polygons.map(lambda f: f.set("grid_epsg", 3857))

    def tag(f):
        c = f.geometry().centroid(MAX_ERROR_M).coordinates()
        lon, lat = ee.Number(c.get(0)), ee.Number(c.get(1))
        # The bounds' west and east (a point's bounds are the point: one longitude).
        lons = f.geometry().bounds(MAX_ERROR_M).coordinates().flatten().slice(0, 3, 2)
        width = ee.Number(lons.reduce(ee.Reducer.max())).subtract(lons.reduce(ee.Reducer.min()))
        zone = lon.add(180).divide(6).floor().add(1).min(60).max(width.gt(180).multiply(60))
        south = lat.lt(0).multiply(100)  # 326zz north of the equator, 327zz south
        return f.set("grid_epsg", south.add(32600).add(zone).int())

    return polygons.map(tag)


UTM_LIMITS = (-80.0, 84.0)  # UTM's latitudes (beyond them: the polar UPS zones, which the grid has not)
MERCATOR_LIMIT = 85.0511  # Web Mercator's square world


def check_latitudes(ee, polygons, spec: GridSpec, id_column: str) -> None:
    """Refuse polygons beyond the grid projection's latitudes (UTM: 80 S to 84 N; Web Mercator: 85.05 S to
    85.05 N), naming up to five of them: cells there would not be the true-sized squares the grid promises
    (one request)."""
    south, north = UTM_LIMITS if spec.projection == "utm" else (-MERCATOR_LIMIT, MERCATOR_LIMIT)
    caps = ee.Geometry.MultiPolygon(
        [
            [[[-180, north], [180, north], [180, 90], [-180, 90]]],
            [[[-180, -90], [180, -90], [180, south], [-180, south]]],
        ],
        None,
        False,
    )
    beyond = polygons.filterBounds(caps)
    found = ee.Dictionary({"n": beyond.size(), "ids": beyond.limit(5).aggregate_array(id_column)}).getInfo()
    if found["n"]:
        ids = ", ".join(str(i) for i in found["ids"])
        where = "UTM zones end (the grid has no polar UPS zones)" if spec.projection == "utm" else "Web Mercator ends"
        raise InputError(
            f"{found['n']} polygon(s) ({id_column} {ids}{', ...' if found['n'] > 5 else ''}) reach beyond "
            f"{north:g} N or {-south:g} S, where {where}: clip them at those latitudes or leave them out."
        )


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


def lattice_index(ee, geometry, crs, cell_size: float) -> dict[str, Any]:
    """A grid cell's index on the zone's lattice, read from its square (its centre in the zone's projection,
    divided by the cell size and floored), not from ``coveringGrid``'s feature ids, whose format Earth Engine
    does not document: ``cell_x``, ``cell_y`` and ``cell`` (``"x,y"``, the key of :func:`~gee_mining.contracts.
    cells.cell_index`). The centre lies half a cell from every edge, so rounding cannot move it off its cell."""
    xy = geometry.centroid(MAX_ERROR_M, crs).coordinates()
    x = ee.Number(xy.get(0)).divide(cell_size).floor()
    y = ee.Number(xy.get(1)).divide(cell_size).floor()
    return {"cell_x": x, "cell_y": y, "cell": x.format("%.0f").cat(",").cat(y.format("%.0f"))}


def _cell_properties(ee, cell, proj, epsg: int, cell_size: float, metadata: Metadata = NO_METADATA):
    g = cell.geometry()
    lonlat = g.transform("EPSG:4326", MAX_ERROR_M)
    centre = g.centroid(MAX_ERROR_M)
    props = {
        "epsg": epsg,
        "centroid": centre.coordinates(),
        "bounds": _corners(ee, lonlat.bounds(MAX_ERROR_M)),
        **lattice_index(ee, g, proj, cell_size),
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
    polygons,
    tagged,
    epsg: int,
    spec: GridSpec,
    id_column: str,
    region=None,
    keep: Sequence[str] = (),
    metadata: Metadata = NO_METADATA,
    with_geometry: bool = True,
    block: tuple[int, int, int] | None = None,
):
    """The zone's cells overlapping the polygons, with overlap fraction, polygon ids, centroid, bounds and
    their lattice index (:func:`lattice_index`).

    ``polygons`` is the polygon table as loaded (``ee.FeatureCollection(asset)``), ``tagged`` the same with
    each polygon's zone (:func:`tag_zones`). Each cell's polygons are found by ``filterBounds`` on the
    table, which Earth Engine answers from the table's spatial index; on ``tagged``, a computed collection,
    every cell would compute and scan every polygon.
    Cells below the minimum overlap are dropped unless their key (``"x,y"``) is in ``keep``. Without
    ``with_geometry`` the features carry no square (the table needs only its bounds): less to send back.
    ``block``: ``(bx, by, n)``, only the cells of that square of n x n cells of the zone's lattice (see
    :func:`zone_blocks`): what one request can answer, however large the polygons.
    """
    crs = ee.Projection(f"EPSG:{epsg}")
    zone_polys = tagged.filter(ee.Filter.eq("grid_epsg", epsg))
    if region is not None:
        zone_polys = zone_polys.filterBounds(region)
    if block is None:
        cells = zone_polys.geometry().coveringGrid(crs.atScale(spec.cell_size))
    else:
        cells = _block_cells(ee, zone_polys, crs, spec.cell_size, block)
    area = spec.cell_size * spec.cell_size

    def measure(cell):
        g = cell.geometry()
        touching = polygons.filterBounds(g)
        inter = touching.geometry().dissolve(MAX_ERROR_M, crs).intersection(g, MAX_ERROR_M, crs)
        props = _cell_properties(ee, cell, crs, epsg, spec.cell_size, metadata)
        props["overlap"] = inter.area(MAX_ERROR_M, crs).divide(area)
        props["polygon_ids"] = touching.aggregate_array(id_column)
        return cell.set(props) if with_geometry else _without_geometry(ee, cell, props)

    passes = ee.Filter.gte("overlap", MIN_OVERLAP)
    if keep:
        passes = ee.Filter.Or(passes, ee.Filter.inList("cell", list(keep)))
    return cells.map(measure).filter(passes)


def _block_square(ee, crs, cell_size: float, block: tuple[int, int, int], inset: float = 0.0):
    bx, by, n = block
    side = n * cell_size
    x0, y0 = bx * side + inset, by * side + inset
    return ee.Geometry.Rectangle([x0, y0, x0 + side - 2 * inset, y0 + side - 2 * inset], crs, False)


def _block_cells(ee, zone_polys, crs, cell_size: float, block: tuple[int, int, int]):
    """The covering grid's cells (exactly those of the unblocked grid) that lie in the block: the grid of the
    polygons whose box (in the zone's metres) reaches the block, kept where a cell meets the block's square
    shrunk by a thousandth of a cell (planar in the zone's projection, both of them: cells of the
    neighbouring blocks only touch its edge). The polygons are chosen by numbers, not by a filter on the
    square, which would go through longitude and latitude and break where the block crosses 180 degrees."""
    bx, by, n = block
    side, pad = n * cell_size, cell_size / 1000

    def box(f):  # the bounds' corners (a point's bounds are the point)
        flat = f.geometry().bounds(MAX_ERROR_M, crs).coordinates().flatten()
        xs, ys = flat.slice(0, None, 2), flat.slice(1, None, 2)
        return f.set({
            "gx0": xs.reduce(ee.Reducer.min()), "gx1": xs.reduce(ee.Reducer.max()),
            "gy0": ys.reduce(ee.Reducer.min()), "gy1": ys.reduce(ee.Reducer.max()),
        })  # fmt: skip

    reaches = ee.Filter.And(
        ee.Filter.lte("gx0", (bx + 1) * side + pad),
        ee.Filter.gte("gx1", bx * side - pad),
        ee.Filter.lte("gy0", (by + 1) * side + pad),
        ee.Filter.gte("gy1", by * side - pad),
    )
    cells = zone_polys.map(box).filter(reaches).geometry().coveringGrid(crs.atScale(cell_size))
    return cells.filterBounds(_block_square(ee, crs, cell_size, block, pad))


def zone_blocks(ee, tagged, zones: Sequence[int], spec: GridSpec, block: int, region=None) -> dict[int, list]:
    """Per zone EPSG, the blocks (``(bx, by)``: squares of ``block`` x ``block`` cells of the zone's lattice)
    that its polygons touch: the covering grid at the block's scale, on the same origin, each block's index
    read from its square (:func:`lattice_index`; one request)."""
    ids = []
    for epsg in zones:
        crs = ee.Projection(f"EPSG:{epsg}")
        zone_polys = tagged.filter(ee.Filter.eq("grid_epsg", epsg))
        if region is not None:
            zone_polys = zone_polys.filterBounds(region)
        side = spec.cell_size * block
        squares = zone_polys.geometry().coveringGrid(crs.atScale(side))
        ids.append(keyed_cells(ee, squares, crs, side).aggregate_array("cell"))
    answers = ee.List(ids).getInfo()
    return {epsg: sorted(cell_index(i) for i in found) for epsg, found in zip(zones, answers, strict=True)}


def _without_geometry(ee, cell, props: dict):
    return ee.Feature(None, props).set("system:index", props["cell"])


def keyed_cells(ee, cells, crs, cell_size: float):
    """Grid cells (``coveringGrid``'s squares) as features without geometry holding only their key ``cell``
    (``"x,y"``, read from each square by :func:`lattice_index`)."""

    def keyed(cell):
        key = lattice_index(ee, cell.geometry(), crs, cell_size)["cell"]
        return ee.Feature(None, {"cell": key}).set("system:index", key)

    return cells.map(keyed)


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


def touching_collection(ee, tagged, epsg: int, spec: GridSpec, margin: float):
    """The zone's cells that touch a polygon, or come within ``margin`` metres of one: the cells no
    negative may take, as features with ids ``"x,y"`` and no geometry. Polygons of the neighbouring zones
    count too (cells near a zone edge or the antimeridian), within the pairing's reach (see
    :func:`_touching_grid`)."""
    crs = ee.Projection(f"EPSG:{epsg}")
    return keyed_cells(ee, _touching_grid(ee, tagged, epsg, spec, margin), crs, spec.cell_size)


def touching_cells(ee, tagged, epsg: int, spec: GridSpec, margin: float):
    """Keys (``"x,y"``) of :func:`touching_collection`'s cells, as a list."""
    return touching_collection(ee, tagged, epsg, spec, margin).aggregate_array("cell")


def measured_cells(ee, epsg: int, spec: GridSpec, cells: Sequence[tuple[int, int]], metadata: Metadata = NO_METADATA):
    """Centroids and bounds (EPSG:4326) of the given cells of a zone's grid, as a FeatureCollection of
    features without geometry (ids ``"x,y"``).

    The cells travel as their centres, one JSON string (a graph of one rectangle per cell would take the
    client longer to serialise than the engine to measure them), and become the grid's own squares again
    by ``coveringGrid`` of those points, planar in the zone's projection, each with its index read from its
    square (:func:`lattice_index`)."""
    crs = ee.Projection(f"EPSG:{epsg}")
    size = spec.cell_size
    centres = json.dumps([[(x + 0.5) * size, (y + 0.5) * size] for x, y in cells])
    points = ee.Geometry.MultiPoint(ee.List(ee.String(centres).decodeJSON()), f"EPSG:{epsg}")
    return points.coveringGrid(crs.atScale(size)).map(
        lambda cell: _without_geometry(ee, cell, _cell_properties(ee, cell, crs, epsg, size, metadata))
    )


# -- the step ------------------------------------------------------------------------------


def _row(feature: dict, spec: GridSpec, label: int) -> dict[str, Any]:
    p = feature["properties"]
    lon, lat = p["centroid"]
    xs = [c[0] for c in p["bounds"]]
    ys = [c[1] for c in p["bounds"]]
    x, y = int(p["cell_x"]), int(p["cell_y"])
    west, south, east, north = min(xs), min(ys), max(xs), max(ys)
    if east - west > 180.0:  # the cell crosses the antimeridian: its bounds go the short way round (RFC 7946)
        west, south, east, north = cell_bounds(
            {"epsg": int(p["epsg"]), "cell_x": x, "cell_y": y, "cell_size": spec.cell_size}
        )
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
        "west": west,
        "south": south,
        "east": east,
        "north": north,
        "polygon_ids": list(p.get("polygon_ids", [])) if label else [],
        "distance_m": 0.0,
        "pair": None,
        "nesting_only": False,
        **_metadata_columns(p),
    }


_BASE_PROPERTIES = {"centroid", "bounds", "epsg", "overlap", "polygon_ids", "cell", "cell_x", "cell_y"}


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
    block: int | None = GRID_BLOCK,
) -> GridTable:
    """Positives with overlap, their distinct nearest negatives, names: the grid of one level.

    ``polygons``: an ``ee.FeatureCollection`` or a table asset id. ``region``: an
    optional ``ee.Geometry`` to restrict to. ``margin``: keep negatives this many
    metres from every polygon. ``id_column``: the polygons' id property
    (default: ``id`` if the table has it, else ``system:index``). ``keep``: per
    zone EPSG, ids (``"x,y"``) of cells kept as positives whatever their
    overlap (the parents of finer positives, see :func:`build_levels`).
    ``metadata``: what to annotate cells with (default :class:`Metadata`: country
    and land-cover shares, from the sources the engine has). ``block``: the side, in cells, of the squares
    of each zone's lattice whose positives one request asks for (see :func:`_positives_by_block`); None: one
    request per zone.
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
    check_latitudes(ee, fc, spec, id_column)
    tagged = tag_zones(ee, fc, spec)
    zones = sorted({int(z) for z in tagged.aggregate_array("grid_epsg").distinct().getInfo()})
    table = GridTable(spec)
    metadata = available_metadata(ee, Metadata() if metadata is None else metadata, table.warnings.append)
    say(f"[grid] {count:,} polygons in {len(zones)} grid zone(s) at {spec.cell_size:g} m (zoom {spec.zoom})")
    by_zone = _positives_by_block(ee, fc, tagged, zones, spec, id_column, region, keep or {}, metadata, block, say)
    say(f"[grid] {sum(map(len, by_zone.values())):,} positive cells in {len(by_zone)} zone(s)")
    pos_zones = sorted(by_zone)
    if pos_zones:
        lists = ee.List([touching_cells(ee, tagged, epsg, spec, margin) for epsg in pos_zones]).getInfo()
        blocked = {epsg: {cell_index(i) for i in ids} for epsg, ids in zip(pos_zones, lists, strict=True)}
        say(f"[grid] {sum(map(len, blocked.values())):,} cells touch a polygon: pairing negatives")
        add_negatives(ee, table, {epsg: by_zone[epsg] for epsg in pos_zones}, blocked, metadata)
    names = [r["name"] for r in table.rows]
    if len(set(names)) != len(names):
        raise AssertionError("cell names are not unique")  # cannot happen for cells >= 100 m apart
    say(f"[grid] {len(table.positives)} positives, {len(table.negatives)} negatives")
    return table


def _positives_by_block(ee, polygons, tagged, zones, spec, id_column, region, keep, metadata, block, say):
    """Per zone EPSG, its positive rows, asked for block by block (:func:`zone_blocks`), one request each:
    the engine's memory and each answer follow a block, not the polygons (a country is hundreds of
    thousands of cells, more than one interactive request of Earth Engine may compute). Rows are in the
    order of the unblocked grid: by row of the lattice, then column."""
    blocks = {z: [None] for z in zones} if block is None else zone_blocks(ee, tagged, zones, spec, block, region)
    total, done = sum(map(len, blocks.values())), 0
    by_zone: dict[int, list[dict[str, Any]]] = {}
    for epsg in zones:
        kept = sorted(keep.get(epsg, ()))
        for b in blocks[epsg]:
            square = None if b is None else (*b, block)
            cells = positive_cells(ee, polygons, tagged, epsg, spec, id_column, region, kept, metadata, False, square)
            for f in iter_features(cells, PAGE_SIZE):
                row = _row(f, spec, 1)
                row["nesting_only"] = row["overlap"] < MIN_OVERLAP
                by_zone.setdefault(epsg, []).append(row)
            done += 1
            if total > 1:
                say(f"[grid] block {done}/{total} (EPSG:{epsg}): {len(by_zone.get(epsg, [])):,} positive cells so far")
    for rows in by_zone.values():
        rows.sort(key=lambda r: (r["cell_y"], r["cell_x"]))
    return by_zone


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
    measure_block: int = MEASURE_BLOCK,
) -> None:
    """Pair each positive (per zone EPSG) with its nearest free cell, measure those cells server-side, and
    append positives and negatives to ``table``. The negatives are measured ``measure_block`` cells a request
    (one ``computeFeatures`` each): every answer, its work and its time stay bounded however many cells the
    run has (Earth Engine aborts an interactive request after about 5 minutes or 10 MB)."""
    if measure_block < 1:
        raise InputError(f"measure_block {measure_block!r}: give a number of cells >= 1.")

    spec = table.spec
    assigned = {
        epsg: pair_negatives(spec, epsg, rows, blocked.get(epsg, set()), table.warnings.append)
        for epsg, rows in positives.items()
    }
    chosen = {epsg: [a[0] for a in hits if a is not None] for epsg, hits in assigned.items()}
    measured = {}
    for epsg in sorted(chosen):
        for i in range(0, len(chosen[epsg]), measure_block):
            cells = measured_cells(ee, epsg, spec, chosen[epsg][i : i + measure_block], metadata)
            for f in iter_features(cells, PAGE_SIZE):
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
    check_latitudes(ee, fc, spec, id_column)
    tagged = tag_zones(ee, fc, spec)
    zones = sorted({int(z) for z in tagged.aggregate_array("grid_epsg").distinct().getInfo()})
    tasks = []
    for epsg in zones:
        for kind, collection in (
            ("positives", positive_cells(ee, fc, tagged, epsg, spec, id_column, region, (), metadata)),
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


def grid_from_exports(ee, folder: str | os.PathLike, spec: GridSpec, metadata: Metadata | None = None,
                      measure_block: int = MEASURE_BLOCK) -> GridTable:  # fmt: skip
    """The grid of one level from the files :func:`export_grid`'s tasks wrote (downloaded to ``folder``,
    the ``zZOOM`` folder): positives as exported, negatives paired here and measured server-side,
    ``measure_block`` cells a request (:func:`add_negatives`)."""

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
            blocked[epsg] = {cell_index(f["properties"]["cell"]) for f in json.loads(touching.read_text())["features"]}
    add_negatives(ee, table, positives, blocked, metadata, measure_block)
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


def ee_cell_geometry(ee, row: dict[str, Any]):
    """The cell's square as an ``ee.Geometry`` in its own projection (planar, as the grid made it)."""
    x0, y0 = row["cell_x"] * row["cell_size"], row["cell_y"] * row["cell_size"]
    s = row["cell_size"]
    return ee.Geometry.Rectangle([x0, y0, x0 + s, y0 + s], f"EPSG:{int(row['epsg'])}", False)


# -- writing -------------------------------------------------------------------------------


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

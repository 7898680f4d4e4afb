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
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
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
from gee_mining.contracts.datasets import LSIB, WORLDCOVER
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
    across the antimeridian; its planar centroid in degrees would be near longitude 0, half a world away.
    In UTM, each polygon also keeps its longitude/latitude bounds (``grid_west``, ``grid_south``, ``grid_east``,
    ``grid_north``): what a zone's requests choose the polygons within their reach by (:func:`_near`)."""
    if spec.projection == "EPSG:3857":
        return polygons.map(lambda f: f.set("grid_epsg", 3857))

    def tag(f):
        c = f.geometry().centroid(MAX_ERROR_M).coordinates()
        lon, lat = ee.Number(c.get(0)), ee.Number(c.get(1))
        # The bounds' west and east, south and north (a point's bounds are the point: one of each).
        flat = f.geometry().bounds(MAX_ERROR_M).coordinates().flatten()
        lons, lats = flat.slice(0, 3, 2), flat.slice(1, 6, 4)
        west, east = lons.reduce(ee.Reducer.min()), lons.reduce(ee.Reducer.max())
        width = ee.Number(east).subtract(west)
        zone = lon.add(180).divide(6).floor().add(1).min(60).max(width.gt(180).multiply(60))
        south = lat.lt(0).multiply(100)  # 326zz north of the equator, 327zz south
        box = {"grid_west": west, "grid_east": east}
        box.update(grid_south=lats.reduce(ee.Reducer.min()), grid_north=lats.reduce(ee.Reducer.max()))
        return f.set({"grid_epsg": south.add(32600).add(zone).int(), **box})

    return polygons.map(tag)


UTM_LIMITS = (-80.0, 84.0)  # UTM's latitudes (beyond them: the polar UPS zones, which the grid has not)
MERCATOR_LIMIT = 85.0511  # Web Mercator's square world


def beyond_latitudes(ee, polygons, tagged, spec: GridSpec):
    """The polygons that reach beyond the grid projection's latitudes (UTM: 80 S to 84 N; Web Mercator: 85.05 S
    to 85.05 N). In UTM, by the latitude bounds :func:`tag_zones` keeps (``grid_south``, ``grid_north``: the
    geodesic edges' bulge included), two numeric filters on what the zones are read from; in Web Mercator,
    whose tags hold no bounds, by ``filterBounds`` of the two caps beyond (an exact test of each polygon)."""
    south, north = UTM_LIMITS if spec.projection == "utm" else (-MERCATOR_LIMIT, MERCATOR_LIMIT)
    if spec.projection == "utm":
        return tagged.filter(ee.Filter.Or(ee.Filter.gte("grid_north", north), ee.Filter.lte("grid_south", south)))
    caps = ee.Geometry.MultiPolygon(
        [
            [[[-180, north], [180, north], [180, 90], [-180, 90]]],
            [[[-180, -90], [180, -90], [180, south], [-180, south]]],
        ],
        None,
        False,
    )
    return polygons.filterBounds(caps)


def refuse_beyond(spec: GridSpec, id_column: str, count: int, ids: Sequence[Any]) -> None:
    """Refuse ``count`` polygons beyond the projection's latitudes (:func:`beyond_latitudes`), naming up to five
    (``ids``): cells there would not be the true-sized squares the grid promises."""
    if not count:
        return
    south, north = UTM_LIMITS if spec.projection == "utm" else (-MERCATOR_LIMIT, MERCATOR_LIMIT)
    names = ", ".join(str(i) for i in ids)
    where = "UTM zones end (the grid has no polar UPS zones)" if spec.projection == "utm" else "Web Mercator ends"
    raise InputError(
        f"{count} polygon(s) ({id_column} {names}{', ...' if count > 5 else ''}) reach beyond "
        f"{north:g} N or {-south:g} S, where {where}: clip them at those latitudes or leave them out."
    )


def check_latitudes(ee, polygons, spec: GridSpec, id_column: str, tagged=None) -> None:
    """Refuse polygons beyond the grid projection's latitudes (:func:`beyond_latitudes`, :func:`refuse_beyond`;
    one request). ``tagged``: the polygons as :func:`tag_zones` gives them (made here if None)."""
    tagged = tag_zones(ee, polygons, spec) if tagged is None else tagged
    beyond = beyond_latitudes(ee, polygons, tagged, spec)
    found = ee.Dictionary({"n": beyond.size(), "ids": beyond.limit(5).aggregate_array(id_column)}).getInfo()
    refuse_beyond(spec, id_column, found["n"], found["ids"])


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

    countries: str | None = LSIB
    country_column: str = "country_na"
    landcover: str | None = WORLDCOVER
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


TRACED_FUNCTIONS = 64  # mapped functions kept traced (a run's zones times the grid's few kinds of map)
_TRACED: OrderedDict[Hashable, Any] = OrderedDict()
_TRACED_LOCK = threading.Lock()


def mapped(ee, collection, key: Hashable, fn: Callable[[Any], Any]):
    """``collection.map(fn)`` over features, ``fn`` traced once per ``key``, which must hold everything ``fn``
    reads besides its feature (ee objects compare and hash by their graphs): the ``ee`` client traces a mapped
    Python function three times at each ``map`` (to check that it returns, to name its argument, to keep its
    body), and the grid maps the same few functions in every request of a zone's groups. The graph sent is
    the same as ``map``'s; an unhashable key is mapped as ``map`` does."""
    try:
        hash(key)
    except TypeError:
        return collection.map(fn)
    with _TRACED_LOCK:
        custom = _TRACED.get(key)
        if custom is None:
            custom = ee.CustomFunction.create(lambda e: fn(ee.Feature(e, None)), "Object", ["Object"])
            _TRACED[key] = custom
            while len(_TRACED) > TRACED_FUNCTIONS:
                _TRACED.popitem(last=False)
        else:
            _TRACED.move_to_end(key)
    return ee.FeatureCollection(ee.ApiFunction.call_("Collection.map", collection, custom))


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
    group: BlockGroup | None = None,
):
    """The zone's cells overlapping the polygons, with overlap fraction, polygon ids, centroid, bounds and
    their lattice index (:func:`lattice_index`).

    ``polygons`` is the polygon table as loaded (``ee.FeatureCollection(asset)``), ``tagged`` the same with
    each polygon's zone (:func:`tag_zones`). Each cell's polygons are found by ``filterBounds`` on the
    table, which Earth Engine answers from the table's spatial index; on ``tagged``, a computed collection,
    every cell would compute and scan every polygon.
    Cells below the minimum overlap are dropped unless their key (``"x,y"``) is in ``keep``. Without
    ``with_geometry`` the features carry no square (the table needs only its bounds): less to send back.
    ``group``: only the cells of its blocks (squares of the zone's lattice, see :func:`plan_groups`): what
    one request can answer, however large the polygons.
    """
    crs = ee.Projection(f"EPSG:{epsg}")
    blocks = group is not None and bool(group.blocks)
    # With blocks: the boxes of the zone's and its neighbours' polygons, as the touching cells box them.
    zone_polys = _boxed(ee, _near(ee, tagged, epsg, group, spec.cell_size), crs) if blocks else tagged
    zone_polys = zone_polys.filter(ee.Filter.eq("grid_epsg", epsg))
    if region is not None:
        zone_polys = zone_polys.filterBounds(region)
    if blocks:
        cells = _block_cells(ee, zone_polys, crs, spec.cell_size, group)
    else:
        cells = zone_polys.geometry().coveringGrid(crs.atScale(spec.cell_size))
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
    key = ("measure", polygons, epsg, spec.cell_size, id_column, metadata, with_geometry)
    return mapped(ee, cells, key, measure).filter(passes)


def _runs(blocks: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Blocks as runs of neighbours along a row of the lattice, ``(first bx, last bx, by)``: a group's blocks
    (in the lattice's row order, mostly side by side) in a few rectangles, not one each, so that its graph
    holds a few filters and rings where it held a block's each (the same cells: see :func:`_block_cells`)."""
    runs: list[list[int]] = []
    for bx, by in sorted(set(blocks), key=lambda b: (b[1], b[0])):
        if runs and runs[-1][2] == by and runs[-1][1] == bx - 1:
            runs[-1][1] = bx
        else:
            runs.append([bx, bx, by])
    return [(a, b, c) for a, b, c in runs]


def _square_rings(cell_size: float, group: BlockGroup, grow: float) -> list[list[list[float]]]:
    """The group's blocks as rings of the zone's projection (metres), a ring a run of neighbouring blocks
    (:func:`_runs`), each grown by ``grow`` metres a side (shrunk, if negative: then the ring of a run holds
    the gaps between its blocks' shrunk squares, which no cell lies in alone)."""
    side = group.side * cell_size
    return [
        [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        for b0, b1, by in _runs(group.blocks)
        for x0, y0, x1, y1 in [(b0 * side - grow, by * side - grow, (b1 + 1) * side + grow, (by + 1) * side + grow)]
    ]


CLIP_ERROR_M = 0.01  # the clip of the polygons to a group's blocks: as fine as coveringGrid's own reprojection


def _near(ee, tagged, epsg: int, group: BlockGroup | None = None, cell_size: float = 0.0, margin: float = 0.0):
    """The polygons of a zone and of its neighbours (:func:`~gee_mining.contracts.cells.neighbour_zones`).

    With a ``group`` whose ``zone`` lists every block of the zone: only those whose longitude/latitude bounds
    (:func:`tag_zones`) meet those of the rectangle around the zone's blocks grown by :data:`NEGATIVE_REACH` + 3
    cells and ``margin`` metres (every rim :func:`_block_cells` is asked for lies within :data:`NEGATIVE_REACH`
    + 2 cells; one more against rounding): the same collection for every group of the zone, which the engine
    keeps with the zone's box map, so the neighbours' polygons far from the zone's blocks are neither boxed
    nor scanned request after request (at 5,232 Amazon polygons each was boxed for 6 zones). Chosen by
    numbers, not by a spatial filter (whose test of each polygon would go through a densified copy of the
    rectangle); left out near the antimeridian, where longitudes wrap
    (:func:`~gee_mining.contracts.cells.reach_is_clear_of_antimeridian`)."""
    near = tagged.filter(ee.Filter.inList("grid_epsg", neighbour_zones(epsg)))
    if group is None or not group.zone:
        return near
    grow = (NEGATIVE_REACH + 3) * cell_size + margin
    if not reach_is_clear_of_antimeridian(epsg, (group.side * cell_size + grow) * math.sqrt(2)):
        return near
    side = group.side * cell_size
    xs, ys = [b[0] for b in group.zone], [b[1] for b in group.zone]
    x0, y0, x1, y1 = (
        min(xs) * side - grow,
        min(ys) * side - grow,
        (max(xs) + 1) * side + grow,
        (max(ys) + 1) * side + grow,
    )
    crs = f"EPSG:{epsg}"
    box = ee.Geometry.Rectangle([x0, y0, x1, y1], crs, False).transform("EPSG:4326", MAX_ERROR_M).bounds(MAX_ERROR_M)
    corners = ee.List(box.coordinates().get(0))
    sw, ne = ee.List(corners.get(0)), ee.List(corners.get(2))
    west, south, east, north = sw.get(0), sw.get(1), ne.get(0), ne.get(1)
    return near.filter(
        ee.Filter.And(
            ee.Filter.lte("grid_west", east),
            ee.Filter.gte("grid_east", west),
            ee.Filter.lte("grid_south", north),
            ee.Filter.gte("grid_north", south),
        )
    )


def _boxed(ee, polys, crs):
    """Each polygon with its bounds' corners in the zone's projection (``gx0``, ``gy0``, ``gx1``, ``gy1``; a
    point's bounds are the point): what :func:`_block_cells` chooses the polygons of blocks by. One mapped
    collection per zone, which every request of the zone's blocks asks for again (the engine keeps it)."""

    def box(f):
        flat = f.geometry().bounds(MAX_ERROR_M, crs).coordinates().flatten()
        xs, ys = flat.slice(0, None, 2), flat.slice(1, None, 2)
        return f.set({
            "gx0": xs.reduce(ee.Reducer.min()), "gx1": xs.reduce(ee.Reducer.max()),
            "gy0": ys.reduce(ee.Reducer.min()), "gy1": ys.reduce(ee.Reducer.max()),
        })  # fmt: skip

    return mapped(ee, polys, ("box", crs), box)


def _block_cells(ee, polys, crs, cell_size: float, group: BlockGroup, rim: int = 0):
    """The covering grid's cells (exactly those of the unblocked grid) that lie in the group's blocks (grown
    by ``rim`` cells), of ``polys`` as :func:`_boxed` gives them: the grid of the polygons whose box (in the
    zone's metres) reaches a block, clipped to
    the blocks grown by two thousandths of a cell (the engine's work follows the blocks, not the polygons: a
    country is clipped to a block), kept where a cell meets a block's square shrunk by a thousandth of a cell
    (planar in the zone's projection, all of them: cells of the neighbouring blocks only touch its edge).
    The polygons are chosen by numbers, not by a filter on the square, which would go through longitude and
    latitude and break where the block crosses 180 degrees."""
    side, pad = group.side * cell_size, cell_size / 1000
    grow = rim * cell_size + pad
    reaches = [  # a polygon's box meets a grown block of a run iff it meets the run's grown rectangle
        ee.Filter.And(
            ee.Filter.lte("gx0", (b1 + 1) * side + grow),
            ee.Filter.gte("gx1", b0 * side - grow),
            ee.Filter.lte("gy0", (by + 1) * side + grow),
            ee.Filter.gte("gy1", by * side - grow),
        )
        for b0, b1, by in _runs(group.blocks)
    ]
    rings = _square_rings(cell_size, group, grow + pad)
    clip = ee.Geometry.MultiPolygon([[r] for r in rings], crs, False).dissolve(CLIP_ERROR_M, crs)
    shapes = polys.filter(ee.Filter.Or(*reaches)).geometry()
    cells = shapes.intersection(clip, CLIP_ERROR_M, crs).coveringGrid(crs.atScale(cell_size))
    squares = [ee.Geometry.Polygon([r], crs, False) for r in _square_rings(cell_size, group, grow - 2 * pad)]
    return cells.filter(ee.Filter.Or(*[ee.Filter.bounds(sq) for sq in squares]))


@dataclass(frozen=True)
class BlockGroup:
    """Blocks of a zone's lattice (squares of ``side`` x ``side`` cells, indices ``(bx, by)``) whose cells
    one request asks for; ``cells``: at most how many cells they hold near the polygons (occupied tiles
    times a tile's cells); ``zone``: every block of the zone's groups (see :func:`_near`). No blocks: the whole
    zone in one request."""

    epsg: int
    side: int = 0
    blocks: tuple[tuple[int, int], ...] = ()
    cells: int = 0
    zone: tuple[tuple[int, int], ...] = ()


# cells: the side of the squares (at most) whose occupancy sizes the groups. A small mine's tile counts 16 cells
# (a 16-cell tile counted 256): groups of scattered mines hold more of them, fewer requests (25 -> 15 at 5,232
# Amazon polygons), while a densely covered block still counts its 16,384 cells.
TILE = 4
GROUP_CELLS = GRID_BLOCK * GRID_BLOCK  # cells: what one request's blocks hold at most (a full block alone)
GROUP_BLOCKS = 16  # blocks one request asks for at most (each brings its rim of touching cells)


def tile_side(block: int) -> int:
    """The largest divisor of ``block`` up to :data:`TILE`: tiles nest in blocks."""
    return max(d for d in range(1, min(TILE, block) + 1) if block % d == 0)


def group_blocks(
    epsg: int, tiles: Sequence[tuple[int, int]], block: int, tile: int, bound: int = GROUP_CELLS
) -> list[BlockGroup]:
    """A zone's occupied tiles as groups of blocks, in the lattice's row order (by, bx), each group's cells
    (``tile * tile`` per occupied tile) at most ``bound`` (a block alone may hold more: its request is bounded
    by the block) and at most :data:`GROUP_BLOCKS` blocks: the requests follow the cells near the polygons,
    not the number of blocks they are scattered over."""
    per = block // tile
    counts: dict[tuple[int, int], int] = {}
    for tx, ty in tiles:
        key = (ty // per, tx // per)
        counts[key] = counts.get(key, 0) + tile * tile
    groups: list[BlockGroup] = []
    members: list[tuple[int, int]] = []
    cells = 0
    for (by, bx), n in sorted(counts.items()):
        if members and (cells + n > bound or len(members) == GROUP_BLOCKS):
            groups.append(BlockGroup(epsg, block, tuple(members), cells))
            members, cells = [], 0
        members.append((bx, by))
        cells += n
    if members:
        groups.append(BlockGroup(epsg, block, tuple(members), cells))
    return groups


def plan_groups(ee, tagged, zones: Sequence[int], spec: GridSpec, block: int | None, region=None) -> list[BlockGroup]:
    """The requests of the positives, zone by zone: the tiles (:func:`tile_side`) the zones' polygons touch,
    the covering grid at the tile's scale on the same origin, paged (each answer bounded), grouped by
    :func:`group_blocks`. ``block`` None: one group per zone (no request)."""
    if block is None:
        return [BlockGroup(epsg) for epsg in zones]
    tile = tile_side(block)
    grids = []
    for epsg in zones:
        crs = ee.Projection(f"EPSG:{epsg}")
        zone_polys = tagged.filter(ee.Filter.eq("grid_epsg", epsg))
        if region is not None:
            zone_polys = zone_polys.filterBounds(region)
        side = spec.cell_size * tile
        grid = keyed_cells(ee, zone_polys.geometry().coveringGrid(crs.atScale(side)), crs, side)
        grids.append(grid.map(lambda c, epsg=epsg: c.set("zone", epsg)))
    tiles: dict[int, list[tuple[int, int]]] = {epsg: [] for epsg in zones}
    for f in iter_features(ee.FeatureCollection(grids).flatten(), PAGE_SIZE):
        tiles[int(f["properties"]["zone"])].append(cell_index(f["properties"]["cell"]))
    out = []
    for epsg in zones:
        groups = group_blocks(epsg, tiles[epsg], block, tile)
        every = tuple(b for g in groups for b in g.blocks)
        out += [dataclasses.replace(g, zone=every) for g in groups]
    return out


def _without_geometry(ee, cell, props: dict):
    return ee.Feature(None, props).set("system:index", props["cell"])


def keyed_cells(ee, cells, crs, cell_size: float):
    """Grid cells (``coveringGrid``'s squares) as features without geometry holding only their key ``cell``
    (``"x,y"``, read from each square by :func:`lattice_index`)."""

    def keyed(cell):
        key = lattice_index(ee, cell.geometry(), crs, cell_size)["cell"]
        return ee.Feature(None, {"cell": key}).set("system:index", key)

    return mapped(ee, cells, ("keyed", crs, cell_size), keyed)


def _touching_grid(ee, tagged, epsg: int, spec: GridSpec, margin: float, group: BlockGroup | None = None,
                   reach: int = NEGATIVE_REACH):  # fmt: skip
    """The zone's cells touching a (buffered) polygon of it or of a neighbouring zone, within reach of the
    pairing. With a ``group`` of blocks: those in its blocks grown by ``reach`` cells (plus two, against
    rounding; see :func:`_block_cells`). Else polygons farther than :data:`NEGATIVE_REACH` cells (plus two, against
    rounding) from the box around the zone's own polygons cannot touch a cell a negative may be looked for
    in. Zones whose box could reach the antimeridian keep every neighbour (see
    :func:`reach_is_clear_of_antimeridian`); the grid itself is planar in the zone and safe there."""
    crs = ee.Projection(f"EPSG:{epsg}")
    near = _near(ee, tagged, epsg, group, spec.cell_size, margin)
    if margin > 0:
        near = near.map(lambda f: f.setGeometry(f.geometry().buffer(margin, MAX_ERROR_M)))
    if group is not None and group.blocks:
        return _block_cells(ee, _boxed(ee, near, crs), crs, spec.cell_size, group, reach + 2)
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


def touching_cells(ee, tagged, epsg: int, spec: GridSpec, margin: float, group: BlockGroup | None = None,
                   reach: int = NEGATIVE_REACH):  # fmt: skip
    """Keys (``"x,y"``) of :func:`touching_collection`'s cells (of the ``group``'s blocks and their rims of
    ``reach`` cells), as a list."""
    crs = ee.Projection(f"EPSG:{epsg}")
    grid = _touching_grid(ee, tagged, epsg, spec, margin, group, reach)
    return keyed_cells(ee, grid, crs, spec.cell_size).aggregate_array("cell")


ANSWER_BYTES = 8_000_000  # bytes: the most touching-cell keys one answer carries (Earth Engine's cap: about 10 MB)
WORLD_M = 21_000_000  # metres: no UTM or Web Mercator coordinate is farther from its projection's origin


def key_bytes(cell_size: float, group: BlockGroup | None = None, reach: int = NEGATIVE_REACH) -> int:
    """At most how many bytes one cell key (``"x,y"``) takes in an answer's list, quotes and separator
    included: from the lattice indices of the ``group``'s blocks grown by ``reach`` cells (plus two, as
    :func:`_touching_grid` grows them), or, without blocks, of any cell of the projection."""
    if group is None or not group.blocks:
        far = math.ceil(WORLD_M / cell_size)
        xs = ys = (-far, far)
    else:
        grow = reach + 2
        bxs, bys = [b[0] for b in group.blocks], [b[1] for b in group.blocks]
        xs = (min(bxs) * group.side - grow, (max(bxs) + 1) * group.side + grow)
        ys = (min(bys) * group.side - grow, (max(bys) + 1) * group.side + grow)
    return max(len(str(v)) for v in xs) + max(len(str(v)) for v in ys) + 5  # the comma, 2 quotes, ", "


def touching_pages(ee, keys, cell_size: float, group: BlockGroup | None, reach: int, answer_bytes: int):
    """The keys of a list (:func:`touching_cells` of the ``group``'s blocks and a rim of ``reach`` cells) as
    features (property ``touching``) of at most ``answer_bytes`` of keys each (:func:`key_bytes`), so that every
    answer that holds them stays bounded however dense the polygons: a paged request sends a few features a
    page, where one list of all the keys could pass Earth Engine's 10 MB (a fully covered group's 50-cell rim:
    up to 16 x 232 x 232 keys). One feature of the whole list where the blocks and rims cannot hold more keys
    than that (the group's request, the 12-cell rim at 1375 m); else slices of the list, at least one."""
    keys = ee.List(keys)
    per = max(1, (answer_bytes - 200) // key_bytes(cell_size, group, reach))  # 200 bytes: the feature around
    if group is not None and group.blocks:
        most = len(group.blocks) * (group.side + 2 * (reach + 2)) ** 2  # the grown blocks' cells (_touching_grid)
        if most <= per:
            return ee.FeatureCollection([ee.Feature(None, {"touching": keys})])
    starts = ee.List.sequence(0, keys.size().subtract(1).max(0), per)
    return ee.FeatureCollection(
        starts.map(lambda i: ee.Feature(None, {"touching": keys.slice(i, ee.Number(i).add(per))}))
    )


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
    return mapped(
        ee,
        points.coveringGrid(crs.atScale(size)),
        ("measured", epsg, size, metadata),
        lambda cell: _without_geometry(ee, cell, _cell_properties(ee, cell, crs, epsg, size, metadata)),
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


@dataclass
class GridSummary:
    """What a streamed grid (:func:`stream_grid`) wrote: its counts and warnings (the rows went to its sink)."""

    spec: GridSpec
    positives: int = 0
    negatives: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)


Sink = Callable[[list[dict[str, Any]]], None]
"""Where a streamed grid's rows go, a block group's at a time: each positive followed by its negative."""


def _prepare(ee, polygons: Any, spec: GridSpec, margin: float, id_column: str | None):
    """The polygons checked (not empty, within the projection's latitudes), tagged with their zones: (the
    table as loaded, the tagged collection, zone EPSGs, id column, count). One request: the count, the first
    polygon's property names, the zones and the polygons beyond the latitudes (:func:`beyond_latitudes`; up to
    five of their ids, by ``id`` if the table has it, else by ``system:index``, when no ``id_column`` is given)."""
    fc = ee.FeatureCollection(polygons) if isinstance(polygons, str) else polygons
    if margin < 0:
        raise InputError(f"margin {margin}: give a distance in metres >= 0.")
    tagged = tag_zones(ee, fc, spec)
    size = fc.size()
    beyond = beyond_latitudes(ee, fc, tagged, spec)
    first = beyond.limit(5)
    if id_column is None:
        names = ee.List(ee.Algorithms.If(size, fc.first().propertyNames(), []))
        ids = ee.Algorithms.If(names.contains("id"), first.aggregate_array("id"), first.aggregate_array("system:index"))
    else:
        names, ids = ee.List([]), first.aggregate_array(id_column)
    zones = tagged.aggregate_array("grid_epsg").distinct()
    found = ee.Dictionary({"n": size, "names": names, "zones": zones, "beyond": beyond.size(), "ids": ids}).getInfo()
    count = found["n"]
    if count == 0:
        raise InputError("the polygon set is empty: give a table with at least one mine polygon.")
    if id_column is None:
        id_column = "id" if "id" in found["names"] else "system:index"
    refuse_beyond(spec, id_column, found["beyond"], found["ids"])
    zones = sorted({int(z) for z in found["zones"]})
    return fc, tagged, zones, id_column, count


def stream_grid(
    ee,
    polygons: Any,
    spec: GridSpec,
    sink: Sink,
    *,
    region: Any = None,
    margin: float = 0.0,
    id_column: str | None = None,
    progress: Callable[[str], None] | None = None,
    keep: dict[int, set[str]] | None = None,
    metadata: Metadata | None = None,
    block: int | None = GRID_BLOCK,
    answer_bytes: int = ANSWER_BYTES,
) -> GridSummary:
    """The grid of one level (see :func:`build_grid` for the arguments), handed to ``sink`` a group of blocks
    at a time: memory follows a group of blocks (and the negatives of the row of blocks before it), not the
    zone nor the country.

    Per zone, group by group in the lattice's row order (:func:`plan_groups`), one paged request a group
    (:func:`_group_cells`): the group's positives, the cells touching a polygon within :data:`NEAR_REACH` cells
    of its blocks, and the previous group's negatives measured. Its negatives are paired there
    (:func:`pair_group`: nearest first, never a cell an earlier group took; the touching cells within the
    pairing's whole reach asked for in one more request only when a positive has no negative within
    :data:`NEAR_REACH`), measured with the next group's cells (more than :data:`MEASURE_BLOCK`: the rest one
    request a thousand) and passed on. The pairs depend on the blocks only where positives of two groups want
    the same free cell: the earlier group's positive gets it. ``answer_bytes``: the most bytes of touching-cell
    keys one answer carries (:func:`touching_pages`; an engine with a lower answer limit than Earth Engine's
    10 MB needs less), so that no answer grows with how dense the polygons are."""
    if not answer_bytes >= 1024:
        raise InputError(
            f"answer_bytes {answer_bytes!r}: give at least 1024 (Earth Engine's answers hold about 10 MB)."
        )
    say = progress or (lambda msg: None)
    summary = GridSummary(spec)
    fc, tagged, zones, id_column, count = _prepare(ee, polygons, spec, margin, id_column)
    metadata = available_metadata(ee, Metadata() if metadata is None else metadata, summary.warnings.append)
    groups = plan_groups(ee, tagged, zones, spec, block, region)
    say(f"[grid] {count:,} polygons in {len(zones)} grid zone(s) at {spec.cell_size:g} m (zoom {spec.zoom}): "
        f"{len(groups)} request(s) of positives")  # fmt: skip
    pairing = _Pairing(ee, tagged, spec, margin, metadata, summary, sink, answer_bytes=answer_bytes)
    for i, group in enumerate(groups):
        with deferred_gc():  # a group's cells decoded and tabulated (the collector runs between groups)
            ahead = pairing.negatives_ahead()
            positives, near, measured = _group_cells(
                ee, fc, tagged, group, spec, id_column, region, keep or {}, metadata, margin, ahead, answer_bytes
            )
            pairing.flush(measured)
        say(f"[grid] group {i + 1}/{len(groups)} (EPSG:{group.epsg}): {len(positives):,} positive cells")
        if positives:
            pairing.pair(group, positives, near)
    with deferred_gc():
        pairing.flush({})
    unpaired = pairing.unpaired
    summary.warnings.extend(
        f"EPSG:{epsg}: {n} positive cell(s) got no negative within {NEGATIVE_REACH} cells."
        for epsg, n in unpaired.items()
        if n
    )
    say(f"[grid] {summary.positives} positives, {summary.negatives} negatives")
    return summary


NEAR_REACH = 6  # cells: the rim of a group's blocks whose touching cells come with its positives


@dataclass
class _Pairing:
    """:func:`stream_grid`'s pairing, group after group: a group's negatives paired (:func:`pair_group`), then
    measured in the next group's request (:meth:`negatives_ahead`; at most :data:`MEASURE_BLOCK` of them,
    the rest by :func:`paired_rows`), and its rows passed on (:meth:`flush`)."""

    ee: Any
    tagged: Any
    spec: GridSpec
    margin: float
    metadata: Metadata
    summary: GridSummary
    sink: Sink
    taken: dict[int, set[tuple[int, int]]] = dataclasses.field(default_factory=dict)
    unpaired: dict[int, int] = dataclasses.field(default_factory=dict)
    pending: tuple[int, list[dict[str, Any]], list[Any]] | None = None
    answer_bytes: int = ANSWER_BYTES

    def pair(self, group: BlockGroup, positives: list[dict[str, Any]], near: set[tuple[int, int]] | None) -> None:
        ee, spec = self.ee, self.spec

        def wider(reach: int = NEGATIVE_REACH) -> set[tuple[int, int]]:
            keys = touching_cells(ee, self.tagged, group.epsg, spec, self.margin, group, reach)
            pages = iter_features(touching_pages(ee, keys, spec.cell_size, group, reach, self.answer_bytes), 1)
            return {cell_index(k) for f in pages for k in f["properties"]["touching"]}

        if near is None:  # one group for the zone: its touching cells asked for on their own
            blocked, reach = wider(), NEGATIVE_REACH
        else:
            blocked, reach = near, NEAR_REACH
        hits = pair_group(spec, group, positives, blocked, self.taken.setdefault(group.epsg, set()), reach, wider)
        self.unpaired[group.epsg] = self.unpaired.get(group.epsg, 0) + sum(h is None for h in hits)
        self.pending = (group.epsg, positives, hits)

    def negatives_ahead(self):
        """The pending group's negatives (the first :data:`MEASURE_BLOCK`) as :func:`measured_cells`, or None."""
        if self.pending is None:
            return None
        epsg, _, hits = self.pending
        chosen = [h[0] for h in hits if h is not None][:MEASURE_BLOCK]
        return measured_cells(self.ee, epsg, self.spec, chosen, self.metadata) if chosen else None

    def flush(self, measured: dict[tuple[int, int], dict[str, Any]]) -> None:
        """The pending group's rows, its negatives as ``measured`` holds them (the rest measured here), to the
        sink."""
        if self.pending is None:
            return
        epsg, positives, hits = self.pending
        self.pending = None
        rows = paired_rows(self.ee, self.spec, epsg, positives, hits, self.metadata, measured=measured)
        self.summary.positives += len(positives)
        self.summary.negatives += len(rows) - len(positives)
        self.sink(rows)


def _group_cells(ee, polygons, tagged, group, spec, id_column, region, keep, metadata, margin, ahead=None,
                 answer_bytes: int = ANSWER_BYTES):  # fmt: skip
    """A group's positive rows, in the lattice's row order (y, then x); with blocks, the cells touching a
    polygon within :data:`NEAR_REACH` cells of its blocks (what the pairing's first rounds need: most
    positives find their negative there; see :func:`pair_negatives`), else None; and the rows of the cells
    ``ahead`` measures (:func:`measured_cells`: the previous group's negatives) by ``(x, y)``. One request:
    the positives, then the touching cells' keys (:func:`touching_pages`: at most ``answer_bytes`` a feature),
    then the measured cells (an answer bounded by the group's blocks and :data:`MEASURE_BLOCK`; paged)."""
    kept = sorted(k for k in keep.get(group.epsg, ()) if _in_group(cell_index(k), group))
    parts = [positive_cells(ee, polygons, tagged, group.epsg, spec, id_column, region, kept, metadata, False, group)]
    near = None
    if group.blocks:
        keys = touching_cells(ee, tagged, group.epsg, spec, margin, group, NEAR_REACH)
        parts.append(touching_pages(ee, keys, spec.cell_size, group, NEAR_REACH, answer_bytes))
        near = set()
    if ahead is not None:
        parts.append(ahead)
    found = parts[0] if len(parts) == 1 else ee.FeatureCollection(parts).flatten()
    rows, measured = [], {}
    for f in iter_features(found, PAGE_SIZE):
        props = f["properties"]
        if "touching" in props:
            near.update(cell_index(k) for k in props["touching"])
        elif "overlap" not in props:  # a measured cell (positives have their overlap)
            row = _row(f, spec, 0)
            measured[(row["cell_x"], row["cell_y"])] = row
        else:
            row = _row(f, spec, 1)
            row["nesting_only"] = row["overlap"] < MIN_OVERLAP
            rows.append(row)
    rows.sort(key=lambda r: (r["cell_y"], r["cell_x"]))
    return rows, near, measured


def pair_group(
    spec: GridSpec,
    group: BlockGroup,
    positives: Sequence[dict[str, Any]],
    blocked: set[tuple[int, int]],
    taken: set[tuple[int, int]],
    reach: int = NEGATIVE_REACH,
    wider: Callable[[int], set[tuple[int, int]]] | None = None,
) -> list[tuple[tuple[int, int], float] | None]:
    """:func:`pair_negatives` of one group's positives (in their order) against the cells touching a polygon
    within ``reach`` cells of its blocks (``blocked``; ``wider(r)``: those within ``r`` cells, asked for only
    if a positive has no negative within ``reach``) and the negatives earlier groups of the
    zone ``taken``; the group's negatives are added to ``taken``, and those no later group can reach (below the
    group's last row of blocks less :data:`NEGATIVE_REACH` cells: groups come in the lattice's row order)
    dropped, so that ``taken`` holds about a row of blocks' negatives, not the zone's."""
    cells = [(r["cell_x"], r["cell_y"]) for r in positives]
    hits = pair_negatives(spec, group.epsg, cells, blocked | taken, lambda msg: None, reach, wider)  # counted per zone
    taken.update(h[0] for h in hits if h is not None)
    if group.blocks:
        floor = max(by for _, by in group.blocks) * group.side - NEGATIVE_REACH
        taken.difference_update([c for c in taken if c[1] < floor])
    return hits


def _in_group(cell: tuple[int, int], group: BlockGroup) -> bool:
    return not group.blocks or (cell[0] // group.side, cell[1] // group.side) in group.blocks


def _pair_in_grid_order(spec, epsg, cells, blocked, warn):
    """:func:`pair_negatives` of the zone's cells taken in the lattice's row order (its ties are broken by
    the positives' order), in ``cells``' order."""
    order = sorted(range(len(cells)), key=lambda i: (cells[i][1], cells[i][0]))
    hits = pair_negatives(spec, epsg, [cells[i] for i in order], blocked, warn)
    out: list[Any] = [None] * len(cells)
    for k, i in enumerate(order):
        out[i] = hits[k]
    return out


def build_grid(ee, polygons: Any, spec: GridSpec, **options: Any) -> GridTable:
    """Positives with overlap, their distinct nearest negatives, names: the grid of one level, in memory.

    ``polygons``: an ``ee.FeatureCollection`` or a table asset id. ``region``: an
    optional ``ee.Geometry`` to restrict to. ``margin``: keep negatives this many
    metres from every polygon. ``id_column``: the polygons' id property
    (default: ``id`` if the table has it, else ``system:index``). ``keep``: per
    zone EPSG, ids (``"x,y"``) of cells kept as positives whatever their
    overlap (the parents of finer positives, see :func:`build_levels`).
    ``metadata``: what to annotate cells with (default :class:`Metadata`: country
    and land-cover shares, from the sources the engine has). ``block``: the side, in cells, of the squares
    of each zone's lattice whose positives are asked for by groups (see :func:`plan_groups`); None: one
    request per zone. ``progress``: called with progress lines. A table too large for memory:
    :func:`stream_grid`.
    """
    table = GridTable(spec)
    summary = stream_grid(ee, polygons, spec, table.rows.extend, **options)
    table.warnings.extend(summary.warnings)
    names = [r["name"] for r in table.rows]
    if len(set(names)) != len(names):
        raise AssertionError("cell names are not unique")  # cannot happen for cells >= 100 m apart
    return table


def pair_negatives(
    spec: GridSpec,
    epsg: int,
    positives: Sequence[tuple[int, int]],
    blocked: set[tuple[int, int]],
    warn: Callable[[str], None],
    reach: int = NEGATIVE_REACH,
    wider: Callable[[int], set[tuple[int, int]]] | None = None,
) -> list[tuple[tuple[int, int], float] | None]:
    """Each positive's (cell indices x, y) distinct nearest free cell of its zone (see
    :func:`assign_negatives`), searching ever farther (3 to :data:`NEGATIVE_REACH` cells) for the positives
    still without one.

    A first round over the 8 neighbours settles most positives cheaply; it makes the same choices as the
    first pairs of the 3-cell round (those at distance 1 and sqrt 2, taken first there too). ``blocked`` need
    only be complete within ``reach`` cells of the positives: a round farther first adds ``wider(r)`` (the
    blocked cells within ``r`` cells), so that the choices are those of the complete set. The first such round
    asks for its own radius only (say the 12-cell round of a group whose request brought :data:`NEAR_REACH`:
    most positives left settle there, and the cells within 12 of a block are a fraction of those within
    :data:`NEGATIVE_REACH`), a later one for the whole reach."""
    pos_index = list(positives)
    assigned: list = [None] * len(positives)
    blocked = set(blocked)
    radius, widened = 1, False
    while True:
        if radius > reach and wider is not None:
            reach = NEGATIVE_REACH if widened else radius
            blocked |= wider(reach)
            widened, wider = True, None if reach >= NEGATIVE_REACH else wider
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


def paired_rows(
    ee,
    spec: GridSpec,
    epsg: int,
    positives: list[dict[str, Any]],
    hits: Sequence[tuple[tuple[int, int], float] | None],
    metadata: Metadata,
    measure_block: int = MEASURE_BLOCK,
    measured: dict[tuple[int, int], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The positives of a zone, each followed by its negative (``hits``, from :func:`pair_negatives`), the
    negatives measured server-side ``measure_block`` cells a request (one paged ``computeFeatures`` each:
    every answer, its work and its time stay bounded however many cells the run has; Earth Engine aborts an
    interactive request after about 5 minutes or 10 MB), the pairs named on both rows. ``measured``: rows of
    negatives measured already (by ``(x, y)``; :func:`stream_grid` measures them with the next group's
    cells)."""
    if measure_block < 1:
        raise InputError(f"measure_block {measure_block!r}: give a number of cells >= 1.")
    measured = dict(measured or {})
    chosen = [h[0] for h in hits if h is not None and h[0] not in measured]
    for i in range(0, len(chosen), measure_block):
        for f in iter_features(measured_cells(ee, epsg, spec, chosen[i : i + measure_block], metadata), PAGE_SIZE):
            row = _row(f, spec, 0)
            measured[(row["cell_x"], row["cell_y"])] = row
    rows = []
    for pos, neg in zip(positives, hits, strict=True):
        rows.append(pos)
        if neg is not None:
            row = dict(measured[neg[0]])
            row["distance_m"] = neg[1]
            row["pair"] = pos["name"]
            pos["pair"] = row["name"]
            rows.append(row)
    return rows


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
    check_latitudes(ee, fc, spec, id_column, tagged)
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
    ``measure_block`` cells a request (:func:`paired_rows`)."""

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
    for epsg, rows in positives.items():
        cells = [(r["cell_x"], r["cell_y"]) for r in rows]
        hits = _pair_in_grid_order(spec, epsg, cells, blocked[epsg], table.warnings.append)
        table.rows.extend(paired_rows(ee, spec, epsg, rows, hits, metadata, measure_block))
    return table


def stream_levels(
    ee, polygons: Any, levels: Sequence[GridSpec], sinks: Sequence[Sink], **options: Any
) -> list[GridSummary]:
    """Nested grids, coarse to fine, each streamed to its sink (see :func:`stream_grid`), such that every
    positive lies inside a positive of each coarser level.

    A fine cell may pass the 0.1 % overlap threshold while its parent, four
    times larger, does not; such parents are kept as positives, with their true
    overlap and ``nesting_only`` set, so that the pyramid never loses a mine
    between levels. Levels are built finest first; what is kept of a level for the next is its positives'
    parents' indices."""
    levels = list(levels)
    check_nesting(levels)
    out: list[GridSummary] = []
    keep: dict[int, set[str]] = {}
    for spec, sink in zip(reversed(levels), reversed(list(sinks)), strict=True):
        parents: dict[int, set[str]] = {}

        def emit(rows: list[dict[str, Any]], sink: Sink = sink, parents: dict = parents) -> None:
            for r in rows:
                if r["label"] == 1:
                    parents.setdefault(r["epsg"], set()).add(f"{r['cell_x'] // 2},{r['cell_y'] // 2}")
            sink(rows)

        out.append(stream_grid(ee, polygons, spec, emit, keep=keep, **options))
        keep = parents
    return out[::-1]


def build_levels(ee, polygons: Any, levels: Sequence[GridSpec], **options: Any) -> list[GridTable]:
    """:func:`stream_levels` into tables in memory."""
    tables = [GridTable(spec) for spec in levels]
    summaries = stream_levels(ee, polygons, levels, [t.rows.extend for t in tables], **options)
    for table, summary in zip(tables, summaries, strict=True):
        table.warnings.extend(summary.warnings)
    return tables


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

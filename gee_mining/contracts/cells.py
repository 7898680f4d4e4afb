"""The cell contract: grid levels, cell indices and names, nesting, and the grid table's rows (pure).

A grid level (:class:`GridSpec`) is a square cell size on the grid whose origin is its projection's
origin (each cell in its polygons' UTM zone by default, or one Web Mercator grid): cell ``(x, y)``
of size ``s`` is the square ``[x s, (x + 1) s] x [y s, (y + 1) s]`` in the zone's metres, so a cell
splits exactly into the 4 cells of the level half its size (:func:`child_indices`). A cell's name
(:func:`cell_name`) is ``LAT_LON_Zoom_OverlapPct``. A grid table (:class:`GridTable`) holds one row
per cell; :func:`cell_row` is the row of a cell nobody has measured yet (the pyramid's cells).

Everything here is numbers, shapely and pyproj: no ``ee``, no files. The grid step
(:mod:`gee_mining.steps.grid`) computes the cells server-side; :mod:`gee_mining.io.grid_table`
writes and reads the table.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.affinity

from gee_mining.errors import InputError

ZOOM_SIZES: dict[int, float] = {14: 5500.0, 15: 2750.0, 16: 1375.0}
MIN_CELL_M = 10.0  # one Sentinel-2 pixel
MAX_CELL_M = 200_000.0  # well inside a UTM zone (about 668 km wide at the equator)


MIN_OVERLAP = 0.001


NEGATIVE_REACH = 48  # cells: how far from its positive a negative is looked for


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
        if not MIN_CELL_M <= float(cell_size) <= MAX_CELL_M:
            raise InputError(
                f"cell size {cell_size:g} m: give {MIN_CELL_M:g} to {MAX_CELL_M:g} m (a cell holds whole 10 m pixels "
                "and fits in its UTM zone), e.g. --cell 5500."
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


UNMEASURED = "na"  # the OverlapPct of a cell whose overlap was not measured (a search's cell, not a sample)


def cell_name(lat: float, lon: float, zoom: int, overlap: float | None, measured: bool = True) -> str:
    """``LAT_LON_Zoom_OverlapPct``: the cell's centre (see :func:`encode_coordinate`), its zoom label, and
    the percent overlap with the polygons (one decimal), ``neg`` for a negative, or ``na`` when the
    overlap was not measured (``measured=False``: the pyramid's cells, which no polygon labelled)."""
    if not measured:
        pct = UNMEASURED
    else:
        pct = "neg" if overlap is None else f"{overlap * 100:.1f}"
    return f"{encode_coordinate(lat)}_{encode_coordinate(lon)}_{zoom}_{pct}"


@dataclass(frozen=True)
class CellName:
    lat: float
    lon: float
    zoom: int
    overlap_pct: float | None  # None for negatives and unmeasured cells
    measured: bool = True  # False for an ``na`` name: neither positive nor negative

    @property
    def is_negative(self) -> bool:
        return self.measured and self.overlap_pct is None


_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(neg|na|\d+(?:\.\d+)?)$")


def parse_cell_name(name: str) -> CellName:
    """A cell name read back. A LEADING 0 IS A MINUS SIGN: ``029500`` is -29.5, ``29500`` is +29.5.

    >>> parse_cell_name("029500_070125_14_12.3")  # 29.5 S, 70.125 W: zoom 14, 12.3 % mine
    CellName(lat=-29.5, lon=-70.125, zoom=14, overlap_pct=12.3, measured=True)
    >>> parse_cell_name("5250_13875_16_neg")  # 5.25 N, 13.875 E: a negative
    CellName(lat=5.25, lon=13.875, zoom=16, overlap_pct=None, measured=True)
    >>> parse_cell_name("0250_0_15_na").lat  # 0.25 S on the prime meridian, overlap not measured
    -0.25
    """
    m = _NAME.match(name)
    if not m:
        raise InputError(
            f"{name!r} is not a cell name of the form LAT_LON_Zoom_OverlapPct (e.g. 029500_14125_14_12.5)."
        )
    lat, lon, zoom, pct = m.groups()
    overlap = None if pct in ("neg", UNMEASURED) else float(pct)
    return CellName(decode_coordinate(lat), decode_coordinate(lon), int(zoom), overlap, pct != UNMEASURED)


NEGATIVE_BLOCK = 256  # cells: the side of the lattice blocks the negatives search works through, one at a time
_BAND = 512  # window offsets (whole distances) whose pairs are made and taken together
_CHUNK = 1 << 20  # candidate pairs made at a time


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

    Memory and time follow the pairs that can still be taken, not the positives times the window (the
    inside of a country-sized polygon has millions of those): the window's offsets are taken in bands of
    whole distances, nearest first (the order above, band after band); each band's pairs are made only for
    the positives still without a cell and only with cells still free, block by block of the lattice
    (:func:`_free_pairs`).
    """

    out: list[tuple[tuple[int, int], float] | None] = [None] * len(positives)
    if not positives:
        return out
    pos = np.asarray(positives, dtype=np.int64).reshape(-1, 2)
    dx, dy = _offsets(radius)
    d2 = dx * dx + dy * dy
    by_distance = np.argsort(d2, kind="stable")
    dx, dy, d2 = dx[by_distance], dy[by_distance], d2[by_distance]
    taken = set(blocked)
    lo = 0
    while lo < len(d2):
        hi = min(lo + _BAND, len(d2))
        hi = int(np.searchsorted(d2, d2[hi - 1], side="right"))  # a distance is never split between bands
        todo = np.array([i for i, a in enumerate(out) if a is None], dtype=np.int64)
        if not len(todo):
            break
        x, y, dd, who = _free_pairs(pos[todo], taken, dx[lo:hi], dy[lo:hi])
        order = np.lexsort((x, y, todo[who], dd))
        for i, cx, cy, d in zip(
            todo[who[order]].tolist(), x[order].tolist(), y[order].tolist(), dd[order].tolist(), strict=True
        ):
            if out[i] is None and (cx, cy) not in taken:
                out[i] = ((cx, cy), math.sqrt(d) * cell_size)
                taken.add((cx, cy))
        lo = hi
    return out


def _offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(-radius, radius + 1)
    dx, dy = (a.ravel() for a in np.meshgrid(r, r))
    off = (dx != 0) | (dy != 0)
    return dx[off], dy[off]


def _block_keys(bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    return ((bx + 2**30) << 31) | (by + 2**30)


def _free_pairs(
    pos: np.ndarray, taken: set[tuple[int, int]], dx: np.ndarray, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cell x, y, squared distance in cells, positive's index) for each offset (dx, dy) of each positive
    that lands on a cell not ``taken``.

    Positives are taken by :data:`NEGATIVE_BLOCK`-cell block of the lattice: the block and a rim as wide
    as the offsets reach become a raster of free cells (from the taken cells of the block and its 8
    neighbours), whose summed-area table drops the positives with no free cell within reach before any
    pair is made."""
    size = NEGATIVE_BLOCK
    reach = int(max(np.abs(dx).max(), np.abs(dy).max()))
    if reach > size:
        raise ValueError(f"a reach of {reach} cells exceeds the block of {size} cells")
    cells = np.array(list(taken), dtype=np.int64).reshape(-1, 2)
    cell_keys = _block_keys(cells[:, 0] // size, cells[:, 1] // size)
    by_key = np.argsort(cell_keys, kind="stable")
    cell_keys, cells = cell_keys[by_key], cells[by_key]
    keys = _block_keys(pos[:, 0] // size, pos[:, 1] // size)
    by_block = np.argsort(keys, kind="stable")
    starts = np.unique(keys[by_block], return_index=True)[1]
    pieces: list[tuple[np.ndarray, ...]] = []
    step = max(1, _CHUNK // len(dx))
    for members in np.split(by_block, starts[1:]):
        bx, by = (int(v) // size for v in pos[members[0]])
        ox, oy = bx * size - reach, by * size - reach
        free = _free_raster(cells, cell_keys, bx, by, ox, oy, size + 2 * reach)
        members = members[_window_counts(free, pos[members, 0] - ox, pos[members, 1] - oy, reach) > 0]
        for lo in range(0, len(members), step):
            idx = members[lo : lo + step]
            cx, cy = (pos[idx, :1] + dx).ravel(), (pos[idx, 1:] + dy).ravel()
            ok = free[cy - oy, cx - ox]
            pieces.append((cx[ok], cy[ok], np.tile(dx * dx + dy * dy, len(idx))[ok], np.repeat(idx, len(dx))[ok]))
    if not pieces:
        return tuple(np.empty(0, dtype=np.int64) for _ in range(4))  # type: ignore[return-value]
    x, y, d2, who = (np.concatenate(col) for col in zip(*pieces, strict=True))
    return x, y, d2, who


def _free_raster(
    cells: np.ndarray, cell_keys: np.ndarray, bx: int, by: int, ox: int, oy: int, width: int
) -> np.ndarray:
    """The cells not in ``cells`` (sorted by block key) of the square ``width`` cells wide from cell (ox, oy),
    as a boolean raster [y, x]; only the blocks around block (bx, by) are looked at."""
    free = np.ones((width, width), dtype=bool)
    for nx in (bx - 1, bx, bx + 1):
        for ny in (by - 1, by, by + 1):
            k = _block_keys(np.int64(nx), np.int64(ny))
            lo, hi = np.searchsorted(cell_keys, [k, k + 1])
            near = cells[lo:hi] - (ox, oy)
            inside = ((near >= 0) & (near < width)).all(axis=1)
            free[near[inside, 1], near[inside, 0]] = False
    return free


def _window_counts(free: np.ndarray, px: np.ndarray, py: np.ndarray, radius: int) -> np.ndarray:
    """How many free cells lie within ``radius`` (Chebyshev) of each (px, py), raster coordinates."""
    sat = np.zeros((free.shape[0] + 1, free.shape[1] + 1), dtype=np.int64)
    sat[1:, 1:] = free.cumsum(axis=0).cumsum(axis=1)
    x0, y0, x1, y1 = px - radius, py - radius, px + radius + 1, py + radius + 1
    return sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]


def neighbour_zones(epsg: int) -> list[int]:
    """A UTM zone's EPSG with its east and west neighbours (across the antimeridian too), both hemispheres."""
    if epsg == 3857:
        return [3857]
    zone = epsg % 100
    zones = {zone, zone % 60 + 1, (zone - 2) % 60 + 1}
    return sorted(base + z for base in (32600, 32700) for z in zones)


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


def cell_index(cell_id: str) -> tuple[int, int]:
    """A cell's key ``"x,y"`` (as ``steps.grid.lattice_index`` reads it from the cell's square; or a flattened
    collection's ``"k_x,y"``) as indices."""
    x, y = cell_id.rsplit("_", 1)[-1].split(",")
    return int(x), int(y)


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
        west, south, east, north = lonlat_bounds(polygon)
        centre = _centre(child)
        child.update(lon=centre[0], lat=centre[1], west=west, south=south, east=east, north=north)
        out.append(child)
    return out


def cell_polygon(row: dict[str, Any]):
    """The cell's square in its projection, reprojected to EPSG:4326 (edges densified); a cell across the
    antimeridian is split there into two parts (RFC 7946), never one polygon around the world."""

    size = row["cell_size"]
    x0, y0 = row["cell_x"] * size, row["cell_y"] * size
    square = shapely.segmentize(shapely.box(x0, y0, x0 + size, y0 + size), size / 16)
    tf = _to_lonlat(int(row["epsg"]))
    return split_antimeridian(shapely.transform(square, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1]))))


def _centre(row: dict[str, Any]) -> tuple[float, float]:
    """The centre of the cell's square in its zone, in degrees."""
    size = row["cell_size"]
    return _to_lonlat(int(row["epsg"])).transform((row["cell_x"] + 0.5) * size, (row["cell_y"] + 0.5) * size)


def cell_bounds(row: dict[str, Any]) -> tuple[float, float, float, float]:
    """The cell's ``(west, south, east, north)`` in degrees; ``west > east`` for a cell across the antimeridian."""
    return lonlat_bounds(cell_polygon(row))


# -- the antimeridian (pure) ------------------------------------------------------------------------


def _unwrap(xy: np.ndarray, ref: float) -> np.ndarray:
    """A coordinate sequence with longitudes made continuous (no step over 180 degrees), starting within 180
    degrees of ``ref``."""
    lon = xy[:, 0].copy()
    steps = (np.diff(lon) + 180.0) % 360.0 - 180.0
    start = lon[0] + round((ref - lon[0]) / 360.0) * 360.0
    lon = start + np.concatenate([[0.0], np.cumsum(steps)])
    return np.column_stack([lon, xy[:, 1]])


def _crosses(shape: shapely.Geometry) -> bool:
    xy = shapely.get_coordinates(shape)
    return len(xy) > 1 and bool(np.any(np.abs(np.diff(xy[:, 0])) > 180.0))


def _unwrapped_polygon(poly: shapely.Polygon) -> shapely.Polygon:
    outer = np.asarray(poly.exterior.coords)[:, :2]
    ref = float(outer[0, 0])
    ring = _unwrap(outer, ref)
    if abs(ring[-1, 0] - ring[0, 0]) > 1e-9:
        raise InputError(
            f"a polygon around a pole (its ring circles the Earth, starting at {outer[0, 0]:g}, {outer[0, 1]:g}): "
            "the grid cannot cover polar caps; leave it out or cut it into pieces that do not circle the pole."
        )
    holes = [_unwrap(np.asarray(r.coords)[:, :2], ref) for r in poly.interiors]
    return shapely.Polygon(ring, holes)


def split_antimeridian(geom: Any) -> Any:
    """A lon/lat geometry whose edges step over the antimeridian (consecutive longitudes more than 180
    degrees apart: the short way round, as Earth Engine's geodesic edges go) split there into parts within
    -180..180, as RFC 7946 asks. Geometries that do not cross come back unchanged; points have no edges.
    Raises InputError for a ring that circles a pole (no split gives it a meaning on a flat map)."""
    if geom is None or geom.is_empty or not _crosses(geom):
        return geom
    parts = [p for p in shapely.get_parts(geom)]
    if len(parts) > 1 or geom.geom_type.startswith("Multi") or geom.geom_type == "GeometryCollection":
        pieces = [split_antimeridian(p) for p in parts]
        return shapely.union_all(pieces) if geom.area > 0 else shapely.GeometryCollection(pieces)
    if geom.geom_type == "Polygon":
        shape = _unwrapped_polygon(geom)
    elif geom.geom_type in ("LineString", "LinearRing"):
        xy = np.asarray(geom.coords)[:, :2]
        shape = shapely.LineString(_unwrap(xy, float(xy[0, 0])))
    else:
        return geom
    if not shape.is_valid:  # a self-intersecting ring across 180: repaired as the reader repairs the others
        shape = shapely.make_valid(shape, method="structure", keep_collapsed=False)
    out = []
    for k in (-2, -1, 0, 1, 2):
        piece = shapely.intersection(shape, shapely.box(360.0 * k - 180.0, -90.0, 360.0 * k + 180.0, 90.0))
        if not piece.is_empty:
            out.extend(shapely.get_parts(shapely.affinity.translate(piece, -360.0 * k)))
    kept = [p for p in out if p.geom_type in ("Polygon", "LineString")]
    if geom.geom_type == "Polygon":
        return shapely.MultiPolygon([p for p in kept if p.geom_type == "Polygon"])
    return shapely.MultiLineString([p for p in kept if p.geom_type == "LineString"])


def lonlat_bounds(geom: Any) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` of a lon/lat geometry, the narrower way round the globe: a geometry with
    parts on both sides of the antimeridian has ``west > east`` (e.g. 179.9 .. -179.9), as RFC 7946's bbox."""
    west, south, east, north = shapely.bounds(geom).tolist()
    if east - west <= 180.0:
        return west, south, east, north
    lon = shapely.get_coordinates(geom)[:, 0]
    shifted = np.where(lon < 0, lon + 360.0, lon)
    if shifted.max() - shifted.min() >= east - west:
        return west, south, east, north
    return float(shifted.min()), south, float(shifted.max() - 360.0), north


def _to_lonlat(epsg: int) -> pyproj.Transformer:
    """A transformer to longitude/latitude, one per CRS and thread (making one costs far more than using
    it; pyproj transformers are not to be shared between threads)."""
    return _transformer(epsg, threading.get_ident())


@lru_cache(maxsize=256)
def _transformer(epsg: int, thread: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)


def cell_row(epsg: int, x: int, y: int, spec: GridSpec) -> dict[str, Any]:
    """Cell ``(x, y)`` of ``spec`` in zone ``epsg`` as a grid-table row whose overlap is not measured.

    The grid's columns that need no polygons: ``name`` (:func:`cell_name` with OverlapPct ``na``, from
    the cell's centre), ``zoom``, ``cell_size``, ``epsg``, ``cell_x``, ``cell_y``, ``lon``/``lat`` (the
    centre of the square in its zone, in degrees) and ``west``/``south``/``east``/``north`` (the bounds
    of the square in degrees, edges densified). What :func:`~gee_mining.contracts.lattice.pixel_grid`,
    exports and detectors read, and the pyramid's cells.
    """
    size = spec.cell_size
    row: dict[str, Any] = {"name": "", "zoom": spec.zoom, "cell_size": size, "epsg": int(epsg),
                           "cell_x": int(x), "cell_y": int(y)}  # fmt: skip
    lon, lat = _to_lonlat(int(epsg)).transform((x + 0.5) * size, (y + 0.5) * size)
    west, south, east, north = cell_bounds(row)
    row.update(name=cell_name(lat, lon, spec.zoom, None, measured=False), lon=lon, lat=lat,
               west=west, south=south, east=east, north=north)  # fmt: skip
    return row

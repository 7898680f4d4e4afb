"""The cell contract, the pixel lattice and the grid table's schema, checked against pyproj, shapely,
rasterio and pyarrow (pure: no engine)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pyproj
import pytest
import rasterio.transform
import rasterio.windows
import shapely

from gee_mining.contracts.cells import (
    GridSpec,
    GridTable,
    assign_negatives,
    cell_row,
    child_indices,
    parse_cell_name,
)
from gee_mining.contracts.lattice import PixelGrid, pixel_grid
from gee_mining.contracts.schemas import COLUMNS, GRID_SCHEMA, GridRow, check_rows
from gee_mining.errors import InputError
from gee_mining.io.grid_table import read_grid_table, write_table
from gee_mining.pyramid import children

SPEC = GridSpec.of(2750)


def test_cell_row_is_named_from_its_centre_by_pyproj():
    epsg, x, y = 32721, 153, -2801  # south of the equator: negative latitudes
    row = cell_row(epsg, x, y, SPEC)
    tf = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)
    lon, lat = tf.transform((x + 0.5) * 2750.0, (y + 0.5) * 2750.0)
    lat_text = ("0" if lat < 0 else "") + str(round(abs(lat) * 1000))
    lon_text = ("0" if lon < 0 else "") + str(round(abs(lon) * 1000))
    assert row["name"] == f"{lat_text}_{lon_text}_15_na"
    assert (row["lon"], row["lat"]) == pytest.approx((lon, lat), abs=1e-12)
    square = shapely.box(x * 2750.0, y * 2750.0, (x + 1) * 2750.0, (y + 1) * 2750.0)
    corners = np.column_stack(tf.transform(*shapely.get_coordinates(square.segmentize(10.0)).T))
    assert (row["west"], row["south"], row["east"], row["north"]) == pytest.approx(
        (*corners.min(axis=0), *corners.max(axis=0)), abs=1e-6
    )
    parsed = parse_cell_name(row["name"])
    assert not parsed.measured and not parsed.is_negative and parsed.overlap_pct is None
    assert (parsed.lat, parsed.lon, parsed.zoom) == pytest.approx((lat, lon, 15), abs=5e-4)


def test_pyramid_children_are_the_grid_cells_they_tile():
    row = cell_row(32633, 40, 1200, SPEC)
    kids = children(row, SPEC.child())
    assert [(k["cell_x"], k["cell_y"]) for k in kids] == child_indices(40, 1200)
    parent = shapely.box(*pixel_grid(row, 1.0).bounds)
    union = shapely.union_all([shapely.box(*pixel_grid(k, 1.0).bounds) for k in kids])
    assert union.equals(parent)
    assert len({k["name"] for k in kids}) == 4 and all(k["name"].endswith("_16_na") for k in kids)


def test_lattice_agrees_with_rasterio():
    g = pixel_grid({"epsg": 32633, "cell_x": 101, "cell_y": 3001, "cell_size": 1375.0})
    assert (g.width, g.height, g.epsg) == (138, 138, 32633)
    t = g.affine
    assert g.bounds == pytest.approx(rasterio.transform.array_bounds(g.height, g.width, t))
    cols, rows = np.array([0, 3, 137]), np.array([0, 5, 138])
    xs, ys = rasterio.transform.xy(t, rows, cols, offset="ul")
    assert np.allclose(g.pixel_to_crs(cols, rows), (xs, ys))
    r, c = rasterio.transform.rowcol(t, np.array(xs) + 1, np.array(ys) - 1)
    fc, fr = g.crs_to_pixel(np.array(xs) + 1, np.array(ys) - 1)
    assert np.array_equal(np.floor(fc), c) and np.array_equal(np.floor(fr), r)
    sub = g.window(7, 9, 20, 30)
    assert sub.affine == rasterio.windows.transform(rasterio.windows.Window(7, 9, 20, 30), t)
    assert g.outline().area == pytest.approx(g.size * 100.0)
    sheared = PixelGrid("EPSG:32633", (10.0, 2.0, 500.0, 1.0, -10.0, 900.0), 4, 3)
    assert sheared.bounds == pytest.approx(shapely.bounds(sheared.outline()))
    with pytest.raises(InputError):
        PixelGrid("EPSG:32633", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), 0, 3)


def _table() -> GridTable:
    rows = []
    for x, label in [(10, 1), (12, 0)]:
        r = cell_row(32633, x, 1200, SPEC)
        r.update(label=label, overlap=0.25 if label else 0.0, distance_m=0.0 if label else 5500.0,
                 pair=None, nesting_only=False, polygon_ids=["a", "b"] if label else [], country="Z", lc_10=0.5)  # fmt: skip
        rows.append(r)
    rows[0]["pair"], rows[1]["pair"] = rows[1]["name"], rows[0]["name"]
    return GridTable(SPEC, rows)


def test_written_grid_has_the_schema_and_reads_back(tmp_path):
    table = _table()
    schema = pq.read_schema(write_table(table, tmp_path / "g.parquet"))
    assert schema.names == [*COLUMNS, "country", "lc_10", "geometry"]
    for f in GRID_SCHEMA:
        assert schema.field(f.name).type == f.type, f.name
    for suffix in ("parquet", "csv", "gpkg"):
        path = write_table(table, tmp_path / f"g.{suffix}")
        back = read_grid_table(path)
        assert [r["name"] for r in back] == [r["name"] for r in table.rows]
        for got, want in zip(back, table.rows, strict=True):
            assert (got["epsg"], got["cell_x"], got["cell_y"], got["cell_size"]) == (
                32633,
                want["cell_x"],
                1200,
                2750.0,
            )
            assert type(got["cell_x"]) is int and type(got["cell_size"]) is float


def test_rows_without_a_cell_are_refused(tmp_path):
    with pytest.raises(InputError, match="lacks cell_x"):
        check_rows([{"name": "a", "epsg": 32633, "cell_y": 1, "cell_size": 10.0}])
    with pytest.raises(InputError, match="non-numeric"):
        GridRow.of({"name": "a", "epsg": "x", "cell_x": 1, "cell_y": 1, "cell_size": 10.0})
    (tmp_path / "dup.csv").write_text("name,epsg,cell_x,cell_y,cell_size\na,32633,1,1,10\na,32633,2,1,10\n")
    with pytest.raises(InputError, match="repeat"):
        read_grid_table(tmp_path / "dup.csv")


def test_cell_name_examples_in_the_docs_decode_as_documented():
    """Issue 27 item 10: the leading-0-is-minus rule has worked examples (doctest) and the docs' table agrees."""
    import doctest
    import re
    from pathlib import Path

    from gee_mining.contracts import cells

    result = doctest.testmod(cells, verbose=False)
    assert result.attempted >= 3 and result.failed == 0
    table = (Path(__file__).resolve().parents[1] / "docs" / "grid.md").read_text()
    rows = re.findall(r"^\| `(\d+_\d+_\d+_[\w.]+)` \| ([-+]?[\d.]+) .*?\| ([-+]?[\d.]+)", table, flags=re.M)
    assert len(rows) == 3
    for name, lat, lon in rows:
        parsed = cells.parse_cell_name(name)
        assert (parsed.lat, parsed.lon) == (float(lat), float(lon))


def _nearest_free_reference(positives, blocked, cell_size, radius):
    """Every (positive, free cell) pair in the window, sorted by (distance, positive, y, x), taken greedily."""
    pairs = sorted(
        (dx * dx + dy * dy, i, py + dy, px + dx)
        for i, (px, py) in enumerate(positives)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if (dx, dy) != (0, 0) and (px + dx, py + dy) not in blocked
    )
    out, used = [None] * len(positives), set()
    for d2, i, y, x in pairs:
        if out[i] is None and (x, y) not in used:
            out[i] = ((x, y), math.sqrt(d2) * cell_size)
            used.add((x, y))
    return out


@pytest.mark.parametrize("radius", [1, 3, 12, pytest.param(48, marks=pytest.mark.slow)])
def test_assign_negatives_equals_the_greedy_reference(radius):
    """Pairs made block by block and band by band take the same cells as every pair sorted at once: a solid
    square of positives (a large polygon's inside, most without a free cell in reach), scattered positives
    across the lattice blocks' edges and at negative indices, random blocked cells."""
    rng = np.random.default_rng(radius)
    solid = [(x, y) for y in range(250, 262) for x in range(-6, 9)]
    scattered = [tuple(p) for p in rng.integers(-300, 600, size=(40, 2)).tolist()]
    positives = list(dict.fromkeys(solid + scattered))
    blocked = set(positives) | {tuple(p) for p in rng.integers(-300, 600, size=(300, 2)).tolist()}
    got = assign_negatives(positives, blocked, 5500.0, radius)
    assert got == _nearest_free_reference(positives, blocked, 5500.0, radius)
    assert any(g is None for g in got) == (radius < 12)

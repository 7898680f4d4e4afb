"""The grid at the world's edges: the antimeridian and the poles, checked against shapely and pyproj in a
split frame (longitudes unwrapped past 180, projected to the zone with pyproj), and a fuzz test of the grid
command: every outcome is a table that agrees with the reference, or a one-line error."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pyproj
import pytest
import shapely
import shapely.affinity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gee_mining.contracts.cells import GridSpec, lonlat_bounds, split_antimeridian

ZONE60_SOUTH = 32760
SIZE = 5500.0


def run_grid(tmp_path, geometries, *args, name="mines.geojson", engine_catalog=None):
    """``gee-mining grid`` on a GeoJSON of ``geometries`` (GeoJSON dicts): exit code and rows."""
    import gee_mining
    from gee_mining.cli.main import main

    src = tmp_path / name
    feats = [{"type": "Feature", "properties": {"id": i}, "geometry": g} for i, g in enumerate(geometries)]
    src.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    out = tmp_path / "grid.csv"
    out.unlink(missing_ok=True)
    try:
        rc = main(["grid", "--polygons", str(src), "--cell", str(int(SIZE)), "--out", str(out), *args])
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    rows = list(csv.DictReader(out.open())) if out.exists() else None
    return rc, rows


def utm_of(shape_unwrapped, epsg):
    """A lon/lat shape (longitudes may run past 180: the split frame) in the zone's metres, by pyproj."""
    tf = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    dense = shapely.segmentize(shape_unwrapped, 0.001)
    return shapely.transform(dense, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


def reference_cells(poly_utm):
    """Cells of size SIZE overlapping ``poly_utm`` by >= 0.1 %, with the overlap fraction."""
    x0, y0, x1, y1 = poly_utm.bounds
    out = {}
    for i in range(math.floor(x0 / SIZE), math.ceil(x1 / SIZE)):
        for j in range(math.floor(y0 / SIZE), math.ceil(y1 / SIZE)):
            frac = shapely.box(i * SIZE, j * SIZE, (i + 1) * SIZE, (j + 1) * SIZE).intersection(poly_utm).area
            if frac / SIZE**2 >= 0.001:
                out[(i, j)] = frac / SIZE**2
    return out


def reference_bounds(epsg, i, j):
    """(west, south, east, north) of a cell by pyproj, in the split frame, wrapped to -180..180."""
    tf = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)
    edge = np.linspace(0, SIZE, 65)
    xs = np.concatenate([edge, np.full(65, SIZE), edge[::-1], np.zeros(65)]) + i * SIZE
    ys = np.concatenate([np.zeros(65), edge, np.full(65, SIZE), edge[::-1]]) + j * SIZE
    lon, lat = tf.transform(xs, ys)
    lon = np.where(np.asarray(lon) < 0, np.asarray(lon) + 360.0, lon)
    wrap = lambda v: v - 360.0 if v > 180.0 else v  # noqa: E731
    return wrap(lon.min()), float(np.min(lat)), wrap(lon.max()), float(np.max(lat))


# A 0.1 x 0.05 degree mine across the antimeridian at 17 S, in the split frame (179.95 .. 180.05).
MINE = shapely.box(179.95, -17.0, 180.05, -16.95)
SPLIT = {
    "type": "MultiPolygon",
    "coordinates": [
        [[[179.95, -17.0], [180, -17.0], [180, -16.95], [179.95, -16.95], [179.95, -17.0]]],
        [[[-180, -17.0], [-179.95, -17.0], [-179.95, -16.95], [-180, -16.95], [-180, -17.0]]],
    ],
}
CROSSING = {
    "type": "Polygon",
    "coordinates": [[[179.95, -17.0], [-179.95, -17.0], [-179.95, -16.95], [179.95, -16.95], [179.95, -17.0]]],
}


def check_against_reference(rows, mines_split_frame, epsg):
    poly = shapely.union_all([utm_of(m, epsg) for m in mines_split_frame])
    expected = reference_cells(poly)
    pos = [r for r in rows if r["label"] == "1"]
    neg = [r for r in rows if r["label"] == "0"]
    assert {int(r["epsg"]) for r in rows} == {epsg}
    got = {(int(r["cell_x"]), int(r["cell_y"])): float(r["overlap"]) for r in pos}
    assert set(got) == set(expected)
    assert max(abs(got[k] - expected[k]) for k in got) < 1e-4
    assert len(neg) == len(pos)
    for r in neg:  # a negative touches no mine
        i, j = int(r["cell_x"]), int(r["cell_y"])
        assert (i, j) not in got
        assert not shapely.box(i * SIZE, j * SIZE, (i + 1) * SIZE, (j + 1) * SIZE).intersects(poly)
    crossing = 0
    for r in rows:
        want = reference_bounds(epsg, int(r["cell_x"]), int(r["cell_y"]))
        have = tuple(float(r[k]) for k in ("west", "south", "east", "north"))
        assert np.allclose(have, want, atol=1e-4), (have, want)
        crossing += have[0] > have[2]
    return crossing


@pytest.mark.parametrize("geometry", [SPLIT, CROSSING], ids=["split-at-180", "one-ring-across"])
def test_antimeridian_mine_is_gridded_in_one_zone_as_shapely_does(tmp_path, engine_catalog, geometry):
    rc, rows = run_grid(tmp_path, [geometry], engine_catalog=engine_catalog)
    assert rc == 0
    crossing = check_against_reference(rows, [MINE], ZONE60_SOUTH)
    assert crossing >= 2  # cells across the antimeridian are there, with west > east (RFC 7946)


def test_mines_on_both_sides_of_the_antimeridian_pair_negatives_clear_of_both(tmp_path, engine_catalog):
    west_mine = shapely.box(179.90, -17.0, 179.97, -16.95)  # zone 60
    east_mine = shapely.box(180.03, -17.0, 180.10, -16.95)  # -179.97 .. -179.90: zone 1 by its centroid
    geoms = [json.loads(shapely.to_geojson(m)) for m in (west_mine, shapely.affinity.translate(east_mine, -360.0))]
    rc, rows = run_grid(tmp_path, geoms, engine_catalog=engine_catalog)
    assert rc == 0
    by_zone = {}
    for r in rows:
        by_zone.setdefault(int(r["epsg"]), []).append(r)
    assert set(by_zone) == {32701, 32760}
    mines = [west_mine, east_mine]
    for epsg, zone_rows in by_zone.items():
        everything = shapely.union_all([utm_of(m, epsg) for m in mines])
        for r in zone_rows:
            if r["label"] == "0":
                i, j = int(r["cell_x"]), int(r["cell_y"])
                assert not shapely.box(i * SIZE, j * SIZE, (i + 1) * SIZE, (j + 1) * SIZE).intersects(everything)


def test_polygons_beyond_utm_are_refused_by_name(tmp_path, engine_catalog, capsys):
    arctic = json.loads(shapely.to_geojson(shapely.box(10.0, 85.0, 10.5, 85.2)))
    antarctic = json.loads(shapely.to_geojson(shapely.box(60.0, -81.0, 60.5, -80.5)))
    fine = json.loads(shapely.to_geojson(shapely.box(10.0, 45.0, 10.02, 45.02)))
    rc, rows = run_grid(tmp_path, [fine, arctic, antarctic], engine_catalog=engine_catalog)
    err = capsys.readouterr().err
    assert rc == 2 and rows is None
    assert "2 polygon(s) (id 1, 2)" in err and "84 N" in err and "80 S" in err


def test_a_polygon_whose_geodesic_edge_bulges_past_84_n_is_refused_by_its_index(ee_local):
    """A polygon with every vertex within 83.6 N whose northern edge, a geodesic 60 degrees of longitude long,
    bulges past 84 N (pyproj's Geod: its highest point) is refused, named by ``system:index`` (the table has no
    ``id``); the same polygon a degree south, whose edge stays below 84 N, is not."""
    from gee_mining.errors import InputError
    from gee_mining.steps.grid import NO_METADATA, _prepare, build_grid

    def top(lat):
        return max(p for _, p in pyproj.Geod(ellps="WGS84").npts(-30, lat, 30, lat, 200))

    def table(south):
        ring = [[-30, south], [30, south], [30, south + 0.1], [-30, south + 0.1], [-30, south]]
        feature = ee_local.Feature(ee_local.Geometry.Polygon([ring]), {"name": "bulge"})
        return ee_local.FeatureCollection([feature.set("system:index", "arctic-7")])

    assert top(83.6) > 84.3 and top(82.6) < 83.9
    with pytest.raises(InputError, match=r"1 polygon\(s\) \(system:index arctic-7\) reach beyond 84 N"):
        build_grid(ee_local, table(83.5), GridSpec.of(5500), metadata=NO_METADATA, block=None)
    assert _prepare(ee_local, table(82.5), GridSpec.of(5500), 0.0, None)[3:] == ("system:index", 1)


def test_a_mine_near_utm_northern_limit_agrees_with_shapely(tmp_path, engine_catalog):
    mine = shapely.box(20.0, 83.80, 20.6, 83.85)  # Svalbard's latitude and beyond, still in UTM
    rc, rows = run_grid(tmp_path, [json.loads(shapely.to_geojson(mine))], engine_catalog=engine_catalog)
    assert rc == 0
    check_against_reference(rows, [mine], 32634)


def test_split_antimeridian_and_bounds_are_rfc7946():
    parts = split_antimeridian(shapely.Polygon(CROSSING["coordinates"][0]))
    assert parts.geom_type == "MultiPolygon" and len(parts.geoms) == 2
    assert all(-180 <= x <= 180 for x in shapely.get_coordinates(parts)[:, 0])
    assert math.isclose(parts.area, MINE.area, rel_tol=1e-12)
    assert np.allclose(lonlat_bounds(parts), (179.95, -17.0, -179.95, -16.95))
    assert lonlat_bounds(shapely.box(10, 0, 11, 1)) == (10.0, 0.0, 11.0, 1.0)


def _box_ring(lon, lat, w, h):
    """A box's ring as a user writes it: longitudes wrapped to -180..180, so one across 180 steps over it."""
    wrap = lambda v: (v + 180.0) % 360.0 - 180.0  # noqa: E731
    return [[wrap(lon), lat], [wrap(lon + w), lat], [wrap(lon + w), lat + h], [wrap(lon), lat + h], [wrap(lon), lat]]


@st.composite
def grid_inputs(draw):
    """A box anywhere (near the poles and the antimeridian too), tiny to 0.2 degrees, or a bow-tie, a point,
    a line, or nothing."""
    kind = draw(st.sampled_from(["box", "box", "box", "bowtie", "point", "line", "empty"]))
    lat = draw(st.one_of(st.floats(-85.0, 85.0), st.sampled_from([-80.1, 83.7, 84.05, -79.9])))
    lon = draw(st.one_of(st.floats(-180.0, 179.99), st.floats(179.8, 179.99)))
    w, h = (draw(st.floats(1e-5, 0.2)) for _ in range(2))
    ring = _box_ring(lon, lat, w, h)
    geometry = {
        "box": {"type": "Polygon", "coordinates": [ring]},
        "bowtie": {"type": "Polygon", "coordinates": [[ring[0], ring[2], ring[1], ring[3], ring[0]]]},
        "point": {"type": "Point", "coordinates": ring[0]},
        "line": {"type": "LineString", "coordinates": ring[:3]},
        "empty": None,
    }[kind]
    return kind, (lon, lat, w, h), geometry


def reference_zone(lon, lat, w, h):
    """The UTM zone (EPSG) of a box's centre in the split frame, and whether the box is beyond UTM."""
    c = (lon + w / 2 + 180.0) % 360.0 - 180.0
    epsg = (32600 if lat + h / 2 >= 0 else 32700) + min(60, int(math.floor((c + 180) / 6)) + 1)
    return (32760 if lat < 0 else 32660) if lon + w > 180 else epsg, lat + h > 84 or lat < -80


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(case=grid_inputs())
def test_fuzz_grid_gives_a_table_shapely_agrees_with_or_a_clear_error(tmp_path_factory, engine_catalog, case):
    kind, (lon, lat, w, h), geometry = case
    tmp = tmp_path_factory.mktemp("fuzz")
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc, rows = run_grid(tmp, [geometry], engine_catalog=engine_catalog)  # any exception fails the test
    epsg, beyond = reference_zone(lon, lat, w, h)
    if rc == 2:
        message = err.getvalue().strip()
        assert message.startswith("gee-mining: error:") and "\n" not in message and rows is None
        assert beyond or kind in ("point", "line", "empty", "bowtie"), message
        return
    assert rc == 0 and rows is not None
    if kind != "box":
        return
    assert not beyond
    mine = shapely.box(lon, lat, lon + w, lat + h)
    expected = reference_cells(utm_of(mine, epsg))
    got = {(int(r["cell_x"]), int(r["cell_y"])): float(r["overlap"]) for r in rows if r["label"] == "1"}
    assert {int(r["epsg"]) for r in rows} <= {epsg}
    assert set(got) == set(expected)

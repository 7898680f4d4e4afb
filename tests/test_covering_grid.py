"""Geometry.coveringGrid against an independent enumeration of UTM grid cells.

"ee.Geometry.coveringGrid": one feature per cell of ``proj``'s grid that
intersects the geometry, "where cell corners are at integer-valued positions in
the projection"; with ``atScale(s)`` those are multiples of ``s`` metres. The
reference here transforms vertices with pyproj and tests every cell of the
bounding box with shapely.
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely
from conftest import shared_file


def reference_cells(polygons_lonlat, epsg: str, size: float) -> set[tuple[int, int]]:
    tf = pyproj.Transformer.from_crs("EPSG:4326", epsg, always_xy=True)
    cells = set()
    for poly in polygons_lonlat:
        local = shapely.transform(poly, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        x0, y0, x1, y1 = local.bounds
        for i in range(int(np.floor(x0 / size)), int(np.floor(x1 / size)) + 1):
            for j in range(int(np.floor(y0 / size)), int(np.floor(y1 / size)) + 1):
                if local.intersects(shapely.box(i * size, j * size, (i + 1) * size, (j + 1) * size)):
                    cells.add((i, j))
    return cells


def ids_to_cells(ids) -> set[tuple[int, int]]:
    return {tuple(int(v) for v in key.split(",")) for key in ids}


def utm_epsg(lon: float, lat: float) -> str:
    return f"EPSG:{(32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1}"


RING = [[-55.71, -6.41], [-55.69, -6.405], [-55.685, -6.43], [-55.70, -6.44], [-55.715, -6.425]]


@pytest.mark.parametrize("size", [100, 1375, 2750, 5500])
def test_small_polygon_cells(ee_local, size):
    ee = ee_local
    grid = ee.Geometry.Polygon([RING]).coveringGrid(ee.Projection("EPSG:32721").atScale(size))
    info = grid.getInfo()
    got = ids_to_cells(f["id"] for f in info["features"])
    assert got == reference_cells([shapely.Polygon(RING)], "EPSG:32721", size)
    for feature in info["features"][:20]:
        i, j = (int(v) for v in feature["id"].split(","))
        geom = feature["geometry"]
        assert geom["crs"]["properties"]["name"] == "EPSG:32721"
        assert shapely.Polygon(geom["coordinates"][0]).equals(
            shapely.box(i * size, j * size, (i + 1) * size, (j + 1) * size)
        )
        assert feature["properties"] == {}


def test_scale_argument_overrides(ee_local):
    ee = ee_local
    poly = ee.Geometry.Polygon([RING])
    a = poly.coveringGrid(ee.Projection("EPSG:32721"), 2750).aggregate_array("system:index").getInfo()
    b = poly.coveringGrid(ee.Projection("EPSG:32721").atScale(2750)).aggregate_array("system:index").getInfo()
    assert sorted(a) == sorted(b)


def test_degree_grid(ee_local):
    ee = ee_local
    # vertices off the grid lines: a vertex exactly on a cell edge is a floating-point coin toss
    ring = [[x + 0.0013, y + 0.0017] for x, y in RING]
    grid = ee.Geometry.Polygon([ring]).coveringGrid(ee.Projection("EPSG:4326").scale(0.01, 0.01))
    got = ids_to_cells(grid.aggregate_array("system:index").getInfo())
    poly = shapely.Polygon(ring)
    expect = {
        (i, j)
        for i in range(-5575, -5565)
        for j in range(-648, -637)
        if poly.intersects(shapely.box(i * 0.01, j * 0.01, (i + 1) * 0.01, (j + 1) * 0.01))
    }
    assert got == expect


def _demo_zone():
    import pyogrio.raw

    path = shared_file("polygons/mining_tropics_demo.gpkg")
    _, _, wkb, fields = pyogrio.raw.read(path)[:4]
    polys = shapely.from_wkb(wkb)
    centres = shapely.centroid(polys)
    zones = [utm_epsg(c.x, c.y) for c in centres]
    epsg = max(set(zones), key=zones.count)
    chosen = [i for i, z in enumerate(zones) if z == epsg]
    return epsg, [int(fields[2][i]) for i in chosen], [polys[i] for i in chosen]


def test_real_mining_polygons_5500m(ee_local):
    ee = ee_local
    epsg, ids, polys = _demo_zone()
    fc = ee.FeatureCollection("projects/gee-mining-test/assets/mining_tropics_demo").filter(ee.Filter.inList("id", ids))
    grid = fc.geometry().coveringGrid(ee.Projection(epsg).atScale(5500))
    got = ids_to_cells(grid.aggregate_array("system:index").getInfo())
    assert got == reference_cells(polys, epsg, 5500)
    assert len(got) >= len(polys)


def test_2750_cells_nest_in_5500_cells(ee_local):
    ee = ee_local
    epsg, ids, _ = _demo_zone()
    geom = (
        ee.FeatureCollection("projects/gee-mining-test/assets/mining_tropics_demo")
        .filter(ee.Filter.inList("id", ids))
        .geometry()
    )
    coarse_fc = geom.coveringGrid(ee.Projection(epsg).atScale(5500)).getInfo()["features"]
    fine_fc = geom.coveringGrid(ee.Projection(epsg).atScale(2750)).getInfo()["features"]
    coarse = [shapely.Polygon(f["geometry"]["coordinates"][0]) for f in coarse_fc]
    tree = shapely.STRtree(coarse)
    coarse_ids = {f["id"] for f in coarse_fc}
    for feature in fine_fc:
        cell = shapely.Polygon(feature["geometry"]["coordinates"][0])
        containing = [k for k in tree.query(cell) if coarse[k].contains(cell)]
        assert len(containing) == 1
        i, j = (int(v) for v in feature["id"].split(","))
        assert coarse_fc[containing[0]]["id"] == f"{i // 2},{j // 2}"
        assert f"{i // 2},{j // 2}" in coarse_ids
    assert len(fine_fc) <= 4 * len(coarse_fc)


def test_5232_polygons_at_1375m_is_exact(ee_local):
    import pyogrio.raw

    path = shared_file("polygons/amazon_mining_2024_model.geojson")
    ee = ee_local
    fc = ee.FeatureCollection("projects/gee-mining-test/assets/amazon_mining_2024")
    fc.size().getInfo()  # load the table outside the timing
    ids = (
        fc.geometry().coveringGrid(ee.Projection("EPSG:32721").atScale(1375)).aggregate_array("system:index").getInfo()
    )
    polys = shapely.from_wkb(pyogrio.raw.read(path)[2])
    parts = [p for g in polys for p in shapely.get_parts(g)]
    assert ids_to_cells(ids) == reference_cells(parts, "EPSG:32721", 1375)
    assert len(ids) == len(set(ids))

"""gee_mining.steps.labels.label_bands against shapely at the pixel centres of a cell's 10 m lattice."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from test_grid import graph_algorithms

from gee_mining.contracts.lattice import pixel_grid
from gee_mining.errors import InputError
from gee_mining.steps.labels import label_bands

EPSG = 32633
ROW = {"name": "test-cell", "epsg": EPSG, "cell_size": 1380.0, "cell_x": 360, "cell_y": 3600}  # 138 x 138 px
X0, Y0 = 360 * 1380.0, 3600 * 1380.0  # lower-left corner of the cell
CRS = f"EPSG:{EPSG}"

# Shapes in the cell's CRS, with coordinates off the 10 m lattice so no pixel centre lies on an edge
# by construction: a quadrilateral reaching out of the cell (its nearest edge is then outside for
# some pixels), a polygon with a hole, and a two-part multipolygon.
QUAD = shapely.Polygon([(X0 - 203.3, Y0 + 401.7), (X0 + 351.1, Y0 + 257.9), (X0 + 498.2, Y0 + 796.4),
                        (X0 + 121.6, Y0 + 952.3)])  # fmt: skip
HOLED = shapely.Polygon(
    [(X0 + 700.4, Y0 + 700.2), (X0 + 1300.7, Y0 + 690.9), (X0 + 1310.1, Y0 + 1290.3), (X0 + 705.5, Y0 + 1295.6)],
    [[(X0 + 900.3, Y0 + 900.1), (X0 + 1100.9, Y0 + 905.2), (X0 + 1095.4, Y0 + 1100.7), (X0 + 903.6, Y0 + 1090.8)]],
)
MULTI = shapely.MultiPolygon([
    shapely.Polygon([(X0 + 800.2, Y0 + 100.3), (X0 + 1000.6, Y0 + 120.1), (X0 + 900.9, Y0 + 300.4)]),
    shapely.box(X0 + 1100.15, Y0 + 150.35, X0 + 1250.45, Y0 + 400.55),
])  # fmt: skip
TOL_M = 1e-3  # the engine's distance is exact (shapely, no reprojection here); float32 rounding is < 2e-4 m


def _ee_geometry(ee, shape):
    def rings(p):
        return [[list(c) for c in p.exterior.coords]] + [[list(c) for c in r.coords] for r in p.interiors]

    if shape.geom_type == "MultiPolygon":
        return ee.Geometry.MultiPolygon([rings(p) for p in shape.geoms], CRS, False)
    return ee.Geometry.Polygon(rings(shape), CRS, False)


def _fc(ee, shapes):
    return ee.FeatureCollection([ee.Feature(_ee_geometry(ee, s), {"id": i}) for i, s in enumerate(shapes)])


def _pixels(ee, image, grid):
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid.ee_grid()})


def _centres(grid):
    a, _, c, _, e, f = grid.transform
    return np.meshgrid(c + a * (np.arange(grid.width) + 0.5), f + e * (np.arange(grid.height) + 0.5))


def _check(ee, shapes):
    grid = pixel_grid(ROW)
    got = _pixels(ee, label_bands(_fc(ee, shapes), grid), grid)
    assert got.shape == (138, 138)
    assert got["_mine"].dtype == np.uint8 and got["distance"].dtype == np.float32
    xx, yy = _centres(grid)
    union = shapely.union_all(shapes)
    inside = shapely.contains_xy(union, xx, yy)
    unsigned = shapely.distance(union.boundary, shapely.points(xx, yy))
    signed = np.where(inside, -unsigned, unsigned)
    disagree = (got["_mine"] == 1) != inside
    assert not (disagree & (unsigned > 1e-6)).any()
    err = np.abs(got["distance"] - signed)
    assert err.max() <= TOL_M, err.max()
    assert np.array_equal(got["distance"] < 0, inside)
    return got, inside


def test_mine_and_signed_distance_match_shapely(ee_local):
    got, inside = _check(ee_local, [QUAD])
    assert 500 < inside.sum() < 138 * 138 / 2


def test_hole_and_multipolygon(ee_local):
    got, inside = _check(ee_local, [QUAD, HOLED, MULTI])
    xx, yy = _centres(pixel_grid(ROW))
    in_hole = shapely.contains_xy(shapely.Polygon(HOLED.interiors[0]), xx, yy)
    assert in_hole.any() and (got["_mine"][in_hole] == 0).all() and (got["distance"][in_hole] > 0).all()
    for part in MULTI.geoms:
        assert (got["_mine"][shapely.contains_xy(part, xx, yy)] == 1).all()


def test_empty_collection_is_no_mine_and_the_search_radius(ee_local):
    ee = ee_local
    grid = pixel_grid(ROW)
    got = _pixels(ee, label_bands(ee.FeatureCollection([]), ROW, search_radius=750), grid)
    assert (got["_mine"] == 0).all()
    assert (got["distance"] == 750).all()


def test_distance_is_capped_at_the_search_radius(ee_local):
    ee = ee_local
    grid = pixel_grid(ROW)
    got = _pixels(ee, label_bands(_fc(ee, [QUAD]), grid, search_radius=100), grid)
    xx, yy = _centres(grid)
    inside = shapely.contains_xy(QUAD, xx, yy)
    unsigned = np.minimum(shapely.distance(QUAD.boundary, shapely.points(xx, yy)), 100)
    np.testing.assert_allclose(got["distance"], np.where(inside, -unsigned, unsigned), atol=TOL_M)


def test_graph_uses_only_earth_engine_algorithms(ee_local):
    from gee_mining.contracts.signatures import signatures

    used = graph_algorithms(ee_local, label_bands(_fc(ee_local, [QUAD, MULTI]), ROW))
    assert {"Image.paint", "Collection.distance", "Image.reproject"} <= used
    assert used <= set(signatures()), used - set(signatures())


@pytest.mark.parametrize("kwargs", [{"grid": "cell"}, {"search_radius": 0}])
def test_bad_input_is_refused(ee_local, kwargs):
    with pytest.raises(InputError):
        label_bands(ee_local.FeatureCollection([]), **kwargs)

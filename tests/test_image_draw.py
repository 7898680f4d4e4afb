"""Image.paint, Collection.draw, Image.distance and Image.fastDistanceTransform against shapely and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

X0, Y0, W, H = 500000.0, 5800000.0, 60, 50
POLYS = [
    [(500103.3, 5799801.7), (500251.1, 5799757.9), (500298.2, 5799596.4), (500121.6, 5799652.3)],
    [(500401.7, 5799703.1), (500503.9, 5799702.2), (500452.4, 5799611.8)],
]


def _grid():
    return {
        "dimensions": {"width": W, "height": H},
        "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": X0, "shearY": 0, "scaleY": -10, "translateY": Y0},
        "crsCode": "EPSG:32633",
    }


def _pixels(ee, image):
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": _grid()})


def _fc(ee):
    feats = [
        ee.Feature(ee.Geometry.Polygon([[list(p) for p in ring]], "EPSG:32633", False), {"v": i + 3})
        for i, ring in enumerate(POLYS)
    ]
    return ee.FeatureCollection(feats)


def _centres_inside(ring):
    xx, yy = np.meshgrid(X0 + 10 * (np.arange(W) + 0.5), Y0 - 10 * (np.arange(H) + 0.5))
    return shapely.contains_xy(shapely.Polygon(ring), xx, yy)


def test_paint_fills_pixel_centres_inside(ee_local):
    # ee.Image.paint reference: replaces each band's values where a geometry covers the image
    ee = ee_local
    got = _pixels(ee, ee.Image(0).paint(_fc(ee), 1))["constant"]
    ref = _centres_inside(POLYS[0]) | _centres_inside(POLYS[1])
    np.testing.assert_array_equal(got, ref.astype(got.dtype))


def test_paint_color_from_property(ee_local):
    ee = ee_local
    got = _pixels(ee, ee.Image(0).paint(_fc(ee), "v"))["constant"]
    ref = np.where(_centres_inside(POLYS[1]), 4, np.where(_centres_inside(POLYS[0]), 3, 0))
    np.testing.assert_array_equal(got, ref)


def test_paint_on_masked_image_unmasks_painted_pixels(ee_local):
    ee = ee_local
    img = ee.Image(0).updateMask(0).paint(_fc(ee), 1)
    got = _pixels(ee, img.unmask(-1))["constant"]
    ref = np.where(_centres_inside(POLYS[0]) | _centres_inside(POLYS[1]), 1, -1)
    np.testing.assert_array_equal(got, ref)


def test_fast_distance_transform_is_squared_pixel_distance(ee_local):
    # ee.Image.fastDistanceTransform reference: "the default distance metric returns squared distance"
    ndimage = pytest.importorskip("scipy.ndimage")
    ee = ee_local
    target = _centres_inside(POLYS[0]) | _centres_inside(POLYS[1])
    got = _pixels(ee, ee.Image(0).paint(_fc(ee), 1).fastDistanceTransform(100))["constant"]
    np.testing.assert_allclose(got, ndimage.distance_transform_edt(~target) ** 2)


@pytest.mark.parametrize("metric", ["manhattan", "chebyshev"])
def test_fast_distance_transform_metrics(ee_local, metric):
    ndimage = pytest.importorskip("scipy.ndimage")
    ee = ee_local
    target = _centres_inside(POLYS[0]) | _centres_inside(POLYS[1])
    got = _pixels(ee, ee.Image(0).paint(_fc(ee), 1).fastDistanceTransform(100, "pixels", metric))["constant"]
    ref = ndimage.distance_transform_cdt(~target, metric="taxicab" if metric == "manhattan" else "chessboard")
    np.testing.assert_allclose(got, ref)


@pytest.mark.parametrize(("units", "radius", "factor"), [("pixels", 12, 1.0), ("meters", 120, 10.0)])
def test_distance_in_kernel_units_masked_beyond_radius(ee_local, units, radius, factor):
    # ee.Image.distance reference: distance to the nearest non-zero pixel with a distance kernel;
    # pixels farther than the kernel's radius are masked (its example)
    ndimage = pytest.importorskip("scipy.ndimage")
    ee = ee_local
    target = _centres_inside(POLYS[0]) | _centres_inside(POLYS[1])
    kernel = ee.Kernel.euclidean(radius, units)
    img = ee.Image(0).paint(_fc(ee), 1).distance(kernel).unmask(-1)
    got = _pixels(ee, img)["constant"]
    d = ndimage.distance_transform_edt(~target)
    ref = np.where(d <= 12, d * factor, -1)
    np.testing.assert_allclose(got, ref)


def test_draw_is_rgb_and_masked_outside(ee_local):
    ee = ee_local
    img = _fc(ee).draw("FF8000", 3, 1)
    assert img.bandNames().getInfo() == ["vis-red", "vis-green", "vis-blue"]
    px = _pixels(ee, img.unmask(7))
    inside = _centres_inside(POLYS[0])
    assert (px["vis-red"][inside] == 255).all() and (px["vis-green"][inside] == 128).all()
    assert (px["vis-blue"][inside] == 0).all()
    assert (px["vis-red"][:2, :2] == 7).all()


def test_collection_distance_to_points_lines_and_polygon_boundaries(ee_local):
    # ee.FeatureCollection.distance reference: distance in metres from the pixel centre to the nearest
    # point, line or polygon boundary, also inside polygons; masked beyond searchRadius
    ee = ee_local
    line = [(500050.5, 5799950.2), (500580.3, 5799900.7)]
    point = (500133.3, 5799555.5)
    fc = _fc(ee).merge(
        ee.FeatureCollection([
            ee.Feature(ee.Geometry.LineString([list(c) for c in line], "EPSG:32633", False)),
            ee.Feature(ee.Geometry.Point(list(point), "EPSG:32633")),
        ])
    )  # fmt: skip
    radius = 120.0
    got = _pixels(ee, fc.distance(radius, 1).unmask(-1))["distance"]
    xx, yy = np.meshgrid(X0 + 10 * (np.arange(W) + 0.5), Y0 - 10 * (np.arange(H) + 0.5))
    edges = shapely.union_all([shapely.Polygon(r).boundary for r in POLYS] + [shapely.LineString(line),
                                                                            shapely.Point(point)])  # fmt: skip
    ref = shapely.distance(edges, shapely.points(xx, yy))
    ref = np.where(ref <= radius, ref, -1)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert (got == -1).any() and (got > 0).any()


def test_collection_distance_refuses_degree_grids(ee_local):
    ee = ee_local
    grid = {"dimensions": {"width": 4, "height": 4}, "crsCode": "EPSG:4326",
            "affineTransform": {"scaleX": 0.01, "shearX": 0, "translateX": 15, "shearY": 0, "scaleY": -0.01,
                                "translateY": 52}}  # fmt: skip
    with pytest.raises(ee.EEException, match="Collection.distance.*projected"):
        ee.data.computePixels({"expression": _fc(ee).distance(), "fileFormat": "NUMPY_NDARRAY", "grid": grid})

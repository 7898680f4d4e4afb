"""Image.reduceRegion(s), sample, stratifiedSample, reduceNeighborhood, focal ops, reduceResolution, reduce.

References are computed here from the same files read with rasterio, with region masks from shapely
(pixel centres in the polygon, the rule of the "Reducing an Image Region" guide) and scipy.ndimage.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import shapely
from conftest import shared_file

L1C = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
B4 = "imagery/s2_l1c_T33UUU_20170216/T33UUU_20170216T102101_B04.jp2"
RING = [
    (331003.3, 5818001.7),
    (335123.1, 5817507.9),
    (337998.2, 5820996.4),
    (332501.6, 5821502.3),
]  # no pixel centre on an edge
X0, Y0 = 330000.0, 5822040.0  # the B4 lattice's origin (10 m pixels)


@pytest.fixture(scope="module")
def b4():
    import rasterio

    with rasterio.open(shared_file(B4)) as ds:
        return ds.read(1).astype(np.float64)


@pytest.fixture(scope="module")
def inside(b4):
    h, w = b4.shape
    cx = X0 + 10 * (np.arange(w) + 0.5)
    cy = Y0 - 10 * (np.arange(h) + 0.5)
    xx, yy = np.meshgrid(cx, cy)
    return shapely.contains_xy(shapely.Polygon(RING), xx, yy)


def _region(ee):
    return ee.Geometry.Polygon([[list(p) for p in RING]], "EPSG:32633", False)


def _reduce(ee, reducer, **kw):
    img = ee.Image(L1C).select("B4")
    return img.reduceRegion(reducer, _region(ee), kw.pop("scale", 10), **kw).getInfo()


def test_unweighted_statistics_equal_numpy(ee_local, b4, inside):
    # guide "Reducing an Image Region": unweighted reducers take pixels whose centroid is in the region
    vals = b4[inside]
    ee = ee_local
    assert _reduce(ee, ee.Reducer.count()) == {"B4": int(inside.sum())}
    assert _reduce(ee, ee.Reducer.minMax()) == {"B4_min": vals.min(), "B4_max": vals.max()}
    assert _reduce(ee, ee.Reducer.median())["B4"] == pytest.approx(np.median(vals))
    got = _reduce(ee, ee.Reducer.percentile([10, 90]))
    assert got == pytest.approx({"B4_p10": np.percentile(vals, 10), "B4_p90": np.percentile(vals, 90)})
    assert _reduce(ee, ee.Reducer.mean().unweighted())["B4"] == pytest.approx(vals.mean())
    assert _reduce(ee, ee.Reducer.sum().unweighted())["B4"] == pytest.approx(vals.sum())
    hist = _reduce(ee, ee.Reducer.frequencyHistogram().unweighted())["B4"]
    keys, counts = np.unique(vals.astype(int), return_counts=True)
    assert hist == {str(k): int(c) for k, c in zip(keys, counts, strict=True)}


@pytest.mark.slow
def test_weighted_mean_uses_covered_fraction(ee_local, b4):
    # guide "Weighted Reductions": weights are the covered fraction, quantised to 8 bits
    poly = shapely.Polygon(RING)
    h, w = b4.shape
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    boxes = shapely.box(X0 + 10 * cols, Y0 - 10 * (rows + 1), X0 + 10 * (cols + 1), Y0 - 10 * rows)
    frac = shapely.area(shapely.intersection(boxes, poly)) / 100.0
    weight = np.minimum(np.floor(frac * 256), 255) / 255
    expected = np.sum(weight * b4) / np.sum(weight)
    assert _reduce(ee_local, ee_local.Reducer.mean())["B4"] == pytest.approx(expected, rel=1e-9)


def test_max_pixels_error_and_best_effort(ee_local, inside):
    # ee.Image.reduceRegion reference: maxPixels default 1e7; bestEffort uses a larger scale
    ee = ee_local
    with pytest.raises(
        ee.EEException, match=r"Too many pixels in the region. Found \d+, but maxPixels allows only 1000."
    ):
        _reduce(ee, ee.Reducer.count(), maxPixels=1000)
    got = _reduce(ee, ee.Reducer.count(), maxPixels=20000, bestEffort=True)["B4"]
    assert 0 < got <= 20000


def test_output_keys_follow_bands(ee_local):
    shared_file("imagery")
    # multi-band image, one-input reducer: one key per band (and per output when several)
    ee = ee_local
    img = ee.Image(L1C).select(["B4", "B8"])
    assert set(img.reduceRegion(ee.Reducer.mean(), _region(ee), 20).getInfo()) == {"B4", "B8"}
    keys = set(img.reduceRegion(ee.Reducer.minMax(), _region(ee), 20).getInfo())
    assert keys == {"B4_min", "B4_max", "B8_min", "B8_max"}


def test_reduce_regions_names_single_band_outputs(ee_local, b4, inside):
    ee = ee_local
    fc = ee.FeatureCollection([ee.Feature(_region(ee), {"name": "a"})])
    feats = ee.Image(L1C).select("B4").reduceRegions(fc, ee.Reducer.count(), 10).getInfo()["features"]
    assert feats[0]["properties"] == {"name": "a", "count": int(inside.sum())}


def _peak_bytes(run) -> int:
    """tracemalloc's peak (numpy reports its buffers to it) while ``run()`` runs, over what was held before."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_reduce_regions_holds_one_region_of_pixels_at_a_time(ee_local, b4):
    """reduceRegions over many cells holds one cell's intermediate pixels at a time: its peak memory does not grow
    with the cells (a page of 500 fine cells of a 58-band image held 8.7 GB when every cell's pixels stayed cached),
    and each cell's means are those of the B4 file (rasterio) and of its 3x3 focal mean (scipy) there."""
    ndimage = pytest.importorskip("scipy.ndimage")
    ee = ee_local
    b = ee.Image(L1C).select("B4")
    image = ee.Image.cat([b, *[b.focalMean(10 * k, "square", "meters").rename(f"m{k}") for k in (1, 2, 3)]])

    def cells(n):  # 64 x 64 pixel cells at 10 m, side by side
        boxes = [(331000 + 640 * (i % 6), 5818000 + 640 * (i // 6)) for i in range(n)]
        geoms = [ee.Geometry.Rectangle([x, y, x + 640, y + 640], "EPSG:32633", False) for x, y in boxes]
        return boxes, ee.FeatureCollection([ee.Feature(g, {"i": i}) for i, g in enumerate(geoms)])

    def reduce(n):
        return image.reduceRegions(cells(n)[1], ee.Reducer.mean(), 10, "EPSG:32633").getInfo()["features"]

    reduce(1)  # the file's reader and the engine's one-time state, out of the measure
    few, many = _peak_bytes(lambda: reduce(3)), _peak_bytes(lambda: reduce(24))
    assert many < 2 * few  # 8x the cells: every cell's pixels held would be about 8x the peak
    boxes, _ = cells(24)
    m1 = ndimage.uniform_filter(b4, size=3, mode="nearest")
    for f, (x, y) in zip(sorted(reduce(24), key=lambda f: f["properties"]["i"]), boxes, strict=True):
        c, r = int((x - X0) / 10), int((Y0 - y - 640) / 10)
        assert f["properties"]["B4"] == pytest.approx(b4[r : r + 64, c : c + 64].mean(), rel=1e-9)
        assert f["properties"]["m1"] == pytest.approx(m1[r : r + 64, c : c + 64].mean(), rel=1e-6)


def test_own_pixels_reads_the_request_cache_drops_its_writes_and_counts_its_work():
    """A region's own pixel cache sees what the request cached, forgets what it added, and the band pixels it
    computed still count as the request's (a batch task's work, an interactive request's bound)."""
    from gee_mining.local.core.evaluator import Context
    from gee_mining.local.raster.band import own_pixels

    ctx = Context(pixels={"seen": 1}, pixels_computed=5)
    with own_pixels(ctx) as scope:
        assert scope.pixels["seen"] == 1
        scope.pixels["new"] = 2
        scope.count_pixels(7)
    assert ctx.pixels == {"seen": 1} and ctx.pixels_computed == 12


def test_sample_counts(ee_local, b4, inside):
    # ee.Image.sample reference: one feature per pixel in the region (no subsampling by default)
    ee = ee_local
    img = ee.Image(L1C).select("B4")
    small = ee.Geometry.Rectangle([332000, 5819000, 332200, 5819100], "EPSG:32633", False)
    fc = img.sample(small, 10).getInfo()["features"]
    assert len(fc) == 20 * 10
    assert sorted(f["properties"]["B4"] for f in fc) == sorted(b4[294:304, 200:220].ravel().tolist())
    assert img.sample(_region(ee), 10, numPixels=50, seed=3).size().getInfo() == 50
    a = img.sample(_region(ee), 10, numPixels=20, seed=7).getInfo()
    b = img.sample(_region(ee), 10, numPixels=20, seed=7).getInfo()
    assert a == b


def test_stratified_sample_counts(ee_local):
    shared_file("imagery")
    # ee.Image.stratifiedSample reference: numPoints per class, all points of a class with fewer pixels
    ee = ee_local
    small = ee.Geometry.Rectangle([332000, 5819000, 332200, 5819100], "EPSG:32633", False)
    cls = ee.Image(L1C).select("B4").gt(1100).rename("cls")
    n1 = cls.reduceRegion(ee.Reducer.sum().unweighted(), small, 10).getInfo()["cls"]
    fc = cls.stratifiedSample(numPoints=30, classBand="cls", region=small, scale=10, seed=1)
    counts = fc.aggregate_histogram("cls").getInfo()
    assert counts == {"0": min(30, 200 - n1), "1": min(30, n1)}
    fc = cls.stratifiedSample(5, "cls", small, 10, classValues=[0, 1], classPoints=[2, 400])
    assert fc.aggregate_histogram("cls").getInfo() == {"0": min(2, 200 - n1), "1": n1}


def _pixels(ee, image, x0=333000, y0=5820000, w=40, h=30, scale=10):
    grid = {
        "dimensions": {"width": w, "height": h},
        "affineTransform": {
            "scaleX": scale,
            "shearX": 0,
            "translateX": x0,
            "shearY": 0,
            "scaleY": -scale,
            "translateY": y0,
        },
        "crsCode": "EPSG:32633",
    }
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid})


@pytest.mark.parametrize(("op", "scipy_fn"), [("focalMax", "maximum_filter"), ("focalMin", "minimum_filter")])
def test_focal_ops_equal_scipy(ee_local, b4, op, scipy_fn):
    ndimage = pytest.importorskip("scipy.ndimage")
    ee = ee_local
    img = getattr(ee.Image(L1C).select("B4"), op)(radius=2, kernelType="circle")
    got = _pixels(ee, img)["B4"]
    r0, c0 = int((Y0 - 5820000) / 10), int((333000 - X0) / 10)
    foot = np.array([[dx * dx + dy * dy <= 4 for dx in range(-2, 3)] for dy in range(-2, 3)])
    ref = getattr(ndimage, scipy_fn)(b4, footprint=foot, mode="nearest")[r0 : r0 + 30, c0 : c0 + 40]
    np.testing.assert_array_equal(got, ref)


def test_reduce_neighborhood_mean_equals_uniform_filter(ee_local, b4):
    ndimage = pytest.importorskip("scipy.ndimage")
    ee = ee_local
    img = ee.Image(L1C).select("B4").reduceNeighborhood(ee.Reducer.mean(), ee.Kernel.square(1))
    got = _pixels(ee, img)["B4_mean"]
    r0, c0 = 204, 300
    ref = ndimage.uniform_filter(b4, size=3)[r0 : r0 + 30, c0 : c0 + 40]
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_reduce_neighborhood_wide_box_equals_scipy(ee_local, b4):
    # a 15 x 15 box (70 m at 10 m): mean, population stdDev, sum and count against scipy.ndimage and numpy
    ndimage = pytest.importorskip("scipy.ndimage")
    ee = ee_local
    img = ee.Image(L1C).select("B4")
    stats = ee.Reducer.mean().combine(ee.Reducer.stdDev(), sharedInputs=True)
    got = _pixels(ee, img.reduceNeighborhood(stats, ee.Kernel.square(70, "meters")))
    r0, c0 = 204, 300
    mean = ndimage.uniform_filter(b4, size=15)
    sd = np.sqrt(np.maximum(ndimage.uniform_filter(b4 * b4, size=15) - mean * mean, 0))
    np.testing.assert_allclose(got["B4_mean"], mean[r0 : r0 + 30, c0 : c0 + 40], rtol=1e-9)
    np.testing.assert_allclose(got["B4_stdDev"], sd[r0 : r0 + 30, c0 : c0 + 40], rtol=1e-6, atol=1e-6)
    window = b4[r0 - 7 : r0 + 8, c0 - 7 : c0 + 8]  # the first output pixel's window, by hand
    assert got["B4_stdDev"][0, 0] == pytest.approx(window.std(), rel=1e-9)
    summed = _pixels(ee, img.reduceNeighborhood(ee.Reducer.sum(), ee.Kernel.square(3, "pixels", False)))
    np.testing.assert_allclose(summed["B4_sum"], 49 * ndimage.uniform_filter(b4, size=7)[r0 : r0 + 30, c0 : c0 + 40])


def test_reduce_neighborhood_box_skips_masked_pixels(ee_local, b4):
    # masked pixels take no part: each window's mean and count over its unmasked pixels only (numpy by hand)
    ee = ee_local
    img = ee.Image(L1C).select("B4")
    masked = img.updateMask(img.lt(1060))
    reducer = ee.Reducer.mean().combine(ee.Reducer.count(), sharedInputs=True)
    got = _pixels(ee, masked.reduceNeighborhood(reducer, ee.Kernel.square(2), skipMasked=False))
    r0, c0 = 204, 300
    ok = b4 < 1060
    assert 0.05 < ok[r0 : r0 + 30, c0 : c0 + 40].mean() < 0.95  # the mask bites
    for i, j in [(0, 0), (5, 17), (29, 39), (12, 3)]:
        win, keep = (
            b4[r0 + i - 2 : r0 + i + 3, c0 + j - 2 : c0 + j + 3],
            ok[r0 + i - 2 : r0 + i + 3, c0 + j - 2 : c0 + j + 3],
        )
        assert got["B4_count"][i, j] == keep.sum()
        if keep.any():
            assert got["B4_mean"][i, j] == pytest.approx(win[keep].mean(), rel=1e-9)


def test_reduce_resolution_mean_of_blocks(ee_local, b4):
    # ee.Image.reduceResolution reference: inputs weighted by the fraction of the output pixel they cover
    ee = ee_local
    img = ee.Image(L1C).select("B4").reduceResolution(ee.Reducer.mean()).reproject("EPSG:32633", None, 40)
    grid_x0, grid_y0 = 333000, 5820000
    got = _pixels(ee, img, grid_x0, grid_y0, 10, 8, scale=40)["B4"]
    block = b4[204 : 204 + 32, 300 : 300 + 40].reshape(8, 4, 10, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(got, block)


def test_reduce_across_bands(ee_local):
    shared_file("imagery")
    ee = ee_local
    img = ee.Image(L1C).select(["B2", "B3", "B4"])
    px = _pixels(ee, img.addBands(img.reduce(ee.Reducer.max())))
    np.testing.assert_array_equal(px["max"], np.maximum(np.maximum(px["B2"], px["B3"]), px["B4"]))

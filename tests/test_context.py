"""The screening's context features (steps.context) against scipy.ndimage on the real L1C crop, and the forest
screening model (pyramid.probability.ForestScreen) deployed through ee against scikit-learn's own predict_proba, and its
pixel sample drawn by mine size against pixel counts and pyproj areas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from conftest import shared_file

from gee_mining.contracts.bands import GREENEST_NDVI_BAND
from gee_mining.errors import InputError
from gee_mining.pyramid.probability import sample_context, sample_hard_negatives
from gee_mining.steps.context import BARE_NDVI, context_image, context_names

L1C = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
FILE = "imagery/s2_l1c_T33UUU_20170216/T33UUU_20170216T102101_{}.jp2"
X0, Y0 = 330000.0, 5822040.0  # the 10 m lattice's origin
R0, C0, H, W = 204, 300, 30, 40  # the window fetched (rows, columns of the 10 m lattice)


@pytest.fixture
def l1c_crop():
    """The real L1C crop, which the engine's catalog serves as ``L1C``: skipped, saying why, without it."""
    return shared_file(FILE.format("B04"))


def _read(band):
    import rasterio

    with rasterio.open(shared_file(FILE.format(band))) as ds:
        return ds.read(1).astype(np.float64)


def _pixels(ee, image):
    grid = {
        "dimensions": {"width": W, "height": H},
        "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": X0 + 10 * C0, "shearY": 0, "scaleY": -10,
                            "translateY": Y0 - 10 * R0},
        "crsCode": "EPSG:32633",
    }  # fmt: skip
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid})


def _window(a):
    return a[R0 : R0 + H, C0 : C0 + W]


def test_context_bands_equal_scipy(ee_local, l1c_crop):
    ndimage = pytest.importorskip("scipy.ndimage")
    ee = ee_local
    image = context_image(ee.Image(L1C).select(BANDS), radii=[60])
    got = _pixels(ee, image.select(["NDVI_mean_60m", "NDVI_sd_60m", "B4_sd_60m", "bare_60m", "water_60m"]))
    b4, b8, b3 = _read("B04"), _read("B08"), _read("B03")
    ndvi, ndwi = (b8 - b4) / (b8 + b4), (b3 - b8) / (b3 + b8)

    def mean(a):
        return ndimage.uniform_filter(a, size=13)  # 60 m at 10 m: 6 pixels each side

    def sd(a):
        return np.sqrt(np.maximum(mean(a * a) - mean(a) ** 2, 0))

    np.testing.assert_allclose(got["NDVI_mean_60m"], _window(mean(ndvi)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["NDVI_sd_60m"], _window(sd(ndvi)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["B4_sd_60m"], _window(sd(b4)), rtol=1e-4)
    bare = _window(mean((ndvi < BARE_NDVI).astype(float)))
    assert 0 < bare.mean() < 1  # both kinds of pixel in the window
    np.testing.assert_allclose(got["bare_60m"], bare, atol=1e-6)
    np.testing.assert_allclose(got["water_60m"], _window(mean((ndwi > 0).astype(float))), atol=1e-6)


def test_context_names_are_the_image_bands(ee_local, l1c_crop):
    image = context_image(ee_local.Image(L1C).select(BANDS), radii=[20, 150])
    assert image.bandNames().getInfo() == context_names(BANDS, [20, 150])


@pytest.mark.parametrize("radii", [[], [0], [60, 60]])
def test_bad_radii_are_refused(ee_local, radii):
    with pytest.raises(InputError, match="radii"):
        context_image(ee_local.Image(L1C).select(BANDS), radii=radii)


def test_forest_screen_deployed_equals_sklearn(ee_local, l1c_crop):
    # the forest compiled to ee.Classifier.decisionTreeEnsemble gives scikit-learn's predict_proba at each pixel
    from gee_mining.pyramid.probability import fit_forest, probability_image

    ee = ee_local
    composite = ee.Image(L1C).select(BANDS)
    names = context_names(BANDS, [20])
    table = pd.DataFrame(_pixels(ee, context_image(composite, [20])).reshape(-1))[names]
    table["_mine"] = (table["NDVI"] > np.median(table["NDVI"])).astype(int)  # any two classes will do
    screen = fit_forest(table, names, radii=[20], trees=5, max_depth=4)
    got = _pixels(ee, probability_image(ee, screen, composite))["probability"].reshape(-1)
    want = screen.forest.predict_proba(table[names].to_numpy(dtype=float))[:, 1]
    assert 0 < want.min() < want.max() < 1 or len(set(want)) > 2  # not a constant
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_fit_forest_refuses_bad_tables():
    from gee_mining.pyramid.probability import fit_forest

    table = pd.DataFrame({"a": [0.1, 0.2, 0.3, 0.4], "_mine": [0, 0, 0, 0]})
    with pytest.raises(InputError, match="lacks column"):
        fit_forest(table, ["a", "b"])
    with pytest.raises(InputError, match="one class"):
        fit_forest(table, ["a"])


def test_seasonal_context_bands_equal_scipy(ee_local, l1c_crop):
    """With a greenest-NDVI band (here a stand-in: the normalized difference of B8 and B3 of the real crop), the
    seasonal features are its local mean and the share of pixels whose greenest NDVI stays below BARE_NDVI."""
    ndimage = pytest.importorskip("scipy.ndimage")
    ee = ee_local
    composite = ee.Image(L1C).select(BANDS)
    composite = composite.addBands(composite.normalizedDifference(["B8", "B3"]).rename(GREENEST_NDVI_BAND))
    image = context_image(composite, radii=[20, 60], seasonal=True)
    assert image.bandNames().getInfo() == context_names([*BANDS, GREENEST_NDVI_BAND], [20, 60])
    got = _pixels(ee, image.select(["NDVI_max_mean_60m", "bare_all_year_60m", "bare_all_year_20m"]))
    b8, b3 = _read("B08"), _read("B03")
    greenest = (b8 - b3) / (b8 + b3)
    low = (greenest < BARE_NDVI).astype(float)
    share = _window(ndimage.uniform_filter(low, size=13))
    assert 0.05 < share.mean() < 0.95  # both kinds of pixel in the window
    np.testing.assert_allclose(got["NDVI_max_mean_60m"], _window(ndimage.uniform_filter(greenest, size=13)),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(got["bare_all_year_60m"], share, atol=1e-6)
    np.testing.assert_allclose(got["bare_all_year_20m"], _window(ndimage.uniform_filter(low, size=5)), atol=1e-6)
    plain = context_image(ee.Image(L1C).select(BANDS), radii=[20, 60])  # without the band: no seasonal features
    assert plain.bandNames().getInfo() == context_names(BANDS, [20, 60])
    assert not any("all_year" in n for n in context_names(BANDS, [20, 60]))


def test_island_score_equals_numpy(ee_local, l1c_crop):
    """``IslandScore``: each cell's score is max(share of hits, weight * share of hits whose square neighbourhood
    holds less than ``below`` hits), against numpy and scipy on the probability's own pixels (a stand-in
    probability from the real crop's NDVI), on 343.75 m cells scored at 343.75 / 32 m, the kernel 3 pixels."""
    ndimage = pytest.importorskip("scipy.ndimage")
    from gee_mining.contracts.cells import GridSpec, cell_row
    from gee_mining.pyramid.core import IslandScore, PyramidSpec, score_cells

    ee = ee_local
    probability = ee.Image(L1C).normalizedDifference(["B8", "B4"]).unitScale(-0.1, 0.5).rename("probability")
    spec, scale = GridSpec.of(343.75, 18), 343.75 / 32
    island = IslandScore(weight=10, radius_m=3 * scale, below=0.3)
    rows = [cell_row(32633, x, y, spec) for x, y in [(965, 16930), (970, 16928), (990, 16932), (1000, 16925)]]
    plain = score_cells(ee, probability, rows, scale, 0.6)
    got = score_cells(ee, probability, rows, scale, 0.6, island=island)
    with pytest.raises(InputError, match="islands"):
        PyramidSpec((spec,), islands=(island, None))
    raised = 0  # cells whose score the island term decides
    for row in rows:
        x0, y1 = row["cell_x"] * 343.75 - 3 * scale, (row["cell_y"] + 1) * 343.75 + 3 * scale  # 3 pixels of margin
        grid = {"dimensions": {"width": 38, "height": 38}, "crsCode": "EPSG:32633",
                "affineTransform": {"scaleX": scale, "shearX": 0, "translateX": x0, "shearY": 0, "scaleY": -scale,
                                    "translateY": y1}}  # fmt: skip
        p = np.asarray(ee.data.computePixels({"expression": probability, "fileFormat": "NUMPY_NDARRAY",
                                              "grid": grid})["probability"], dtype=float)  # fmt: skip
        hits = (p > 0.6).astype(float)
        around = ndimage.uniform_filter(hits, size=7, mode="constant")[3:-3, 3:-3]
        inner = hits[3:-3, 3:-3]
        isolated = (inner > 0) & (around < 0.3 - 1e-9)
        share = float(inner.mean())
        assert plain[row["name"]]["score"] == pytest.approx(share, abs=1e-9)
        assert got[row["name"]]["score"] == pytest.approx(max(share, 10 * float(isolated.mean())), abs=1e-9)
        assert got[row["name"]]["pixels"] == 32 * 32
        raised += got[row["name"]]["score"] > share
    assert 0 < raised < len(rows)  # the island term decides some cells, the share the others


def _square_lonlat(x0: float, y0: float, side: float):
    """A ``side`` m square of UTM 33N with its lower-left corner at (x0, y0), as lon/lat coordinates."""
    to_lonlat = pyproj.Transformer.from_crs(32633, 4326, always_xy=True)
    xs, ys = [x0, x0 + side, x0 + side, x0, x0], [y0, y0, y0 + side, y0 + side, y0]
    lon, lat = to_lonlat.transform(xs, ys)
    return [list(map(list, zip(lon, lat, strict=True)))]


def test_mine_pixels_drawn_equally_by_mine_size(ee_local, l1c_crop):
    """With ``mine_strata_km2`` every size class gives its share of the mine pixels (all of a class's pixels when it
    has fewer), where a uniform draw over mine area takes nearly all from the largest mine. Reference: the pixel
    counts of each square on the 10 m lattice, and each square's area on the ellipsoid (pyproj.Geod)."""
    ee = ee_local
    geod = pyproj.Geod(ellps="WGS84")
    x0, y0 = 333000.0, 5816000.0  # 10 m lattice lines: each square holds (side / 10) ** 2 pixels
    sides = {1: 30.0, 2: 400.0, 3: 1100.0}  # 0.0009 km2 (class 1: < 0.05), 0.16 (0.05-1), 1.21 (>= 1)
    offsets = {1: (0.0, 0.0), 2: (100.0, 0.0), 3: (600.0, 0.0)}
    squares = {c: _square_lonlat(x0 + offsets[c][0], y0 + offsets[c][1], s) for c, s in sides.items()}
    km2 = {c: abs(geod.geometry_area_perimeter(shapely.Polygon(sq[0]))[0]) / 1e6 for c, sq in squares.items()}
    assert km2[1] < 0.05 <= km2[2] < 1 <= km2[3]
    polygons = ee.FeatureCollection([ee.Feature(ee.Geometry.Polygon(sq), {"id": c}) for c, sq in squares.items()])
    region = ee.Geometry.Rectangle([x0 - 200, y0 - 200, x0 + 1900, y0 + 1300], "EPSG:32633", False)
    image = ee.Image(L1C).select(BANDS)
    pixels = 300
    table = sample_context(ee, image, region, polygons, pixels, seed=3, radii=[20], mine_strata_km2=(0.05, 1))
    counts = table["_mine"].value_counts().to_dict()
    inside = {c: round((s / 10) ** 2) for c, s in sides.items()}
    assert counts == {0: pixels, 1: min(inside[1], pixels // 3), 2: pixels // 3, 3: pixels // 3}
    uniform = sample_context(ee, image, region, polygons, pixels, seed=3, radii=[20])
    assert uniform["_mine"].value_counts().to_dict() == {0: pixels, 1: pixels}
    for bad in ((1, 0.05), (0.05, 0.05), (0, 1)):
        with pytest.raises(InputError, match="ascending"):
            sample_context(ee, image, region, polygons, pixels, radii=[20], mine_strata_km2=bad)


def test_hard_negatives_are_the_flagged_mine_free_pixels(ee_local, l1c_crop):
    """``sample_hard_negatives`` draws only pixels outside the mines whose probability exceeds the threshold, all of
    them when there are fewer than asked, labelled 0. Reference: NDVI from the crop's own JP2 bands (rasterio), the
    stand-in probability ``(NDVI - 0.2) / 0.4 > 0.5`` being ``NDVI > 0.4``, and the mine square's pixels on the
    10 m lattice."""
    ee = ee_local
    probability = ee.Image(L1C).normalizedDifference(["B8", "B4"]).unitScale(0.2, 0.6).rename("probability")
    features = context_image(ee.Image(L1C).select(BANDS), radii=[20])
    x0, y0 = X0 + 10 * C0, Y0 - 10 * (R0 + H)  # the window's lower-left corner
    region = ee.Geometry.Rectangle([x0, y0, x0 + 10 * W, y0 + 10 * H], "EPSG:32633", False)
    mine = ee.FeatureCollection([ee.Feature(ee.Geometry.Polygon(_square_lonlat(x0 + 100, y0 + 100, 100)))])
    ndvi = _window((_read("B08") - _read("B04")) / (_read("B08") + _read("B04")))
    inside = np.zeros((H, W), dtype=bool)
    inside[H - 20 : H - 10, 10:20] = True  # rows from the top: the square spans 100-200 m above the lower edge
    flagged = int(((ndvi > 0.4) & ~inside).sum())
    assert 20 < flagged < H * W - inside.sum() - 20  # both kinds of mine-free pixel
    assert ((ndvi > 0.4) & inside).any()  # and flagged pixels inside the mine, which must not be drawn
    every = sample_hard_negatives(ee, probability, features, region, mine, pixels=H * W, seed=1)
    assert len(every) == flagged
    assert (every["NDVI"] > 0.4).all() and (every["_mine"] == 0).all()
    assert sorted(every["NDVI"].round(5)) == sorted(np.round(ndvi[(ndvi > 0.4) & ~inside], 5))
    some = sample_hard_negatives(ee, probability, features, region, mine, pixels=flagged // 2, seed=1)
    assert len(some) == flagged // 2 and set(some.columns) == set(context_names(BANDS, [20])) | {"_mine"}
    with pytest.raises(InputError, match="hard-negatives"):
        sample_hard_negatives(ee, probability, features, region, mine, pixels=0)

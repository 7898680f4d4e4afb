"""Image.visualize and Image.blend against numpy visualisations of the same pixels.

Rules checked (Earth Engine docs): "ee.Image.visualize" (bands, gain, bias,
min, max, gamma, opacity, palette of CSS names or hex strings such as
['red', '00FF00', 'blueviolet'], forceRgbOutput), the guide "Image
Visualization" (the first three bands by default; floats stretched over
[0, 1], 16-bit data over their full range; a palette for single-band images
only), REST "VisualizationOptions" (values outside the range are clamped), and
"ee.Image.blend" (the top image over the bottom one, masks as opacity, a
single band replicated to the other's band count).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import l1c_grid, shared_file

L1C = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
FILES = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08"}
# a 64 x 48 window of the crop's native 10 m lattice (EPSG:32633)
COL0, ROW0, W, H = 300, 200, 64, 48
NATIVE_GRID = l1c_grid(COL0, ROW0, W, H)
LONLAT_GRID = {  # 8 x 4 pixels of 1 degree around (0, 0)
    "dimensions": {"width": 8, "height": 4},
    "affineTransform": {"scaleX": 1, "shearX": 0, "translateX": -4, "shearY": 0, "scaleY": -1, "translateY": 2},
    "crsCode": "EPSG:4326",
}


def read_band(band: str) -> np.ndarray:
    """The band's pixels in the test window, read straight from the shared file."""
    import rasterio
    from rasterio.windows import Window

    path = shared_file(f"imagery/s2_l1c_T33UUU_20170216/T33UUU_20170216T102101_{FILES[band]}.jp2")
    with rasterio.open(path) as ds:
        return ds.read(1, window=Window(COL0, ROW0, W, H)).astype(np.float64)


def pixels(ee, image, grid=NATIVE_GRID) -> np.ndarray:
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid})


def byte(t: np.ndarray) -> np.ndarray:
    """[0, 1] to 0..255, rounded to nearest."""
    return np.floor(np.clip(t, 0, 1) * 255 + 0.5)


def reference_stretch(x, lo, hi, gamma=1.0):
    return byte(np.clip((x - lo) / (hi - lo), 0, 1) ** (1.0 / gamma))


@pytest.fixture(scope="module")
def scene(ee_local):
    shared_file("imagery/s2_l1c_T33UUU_20170216")
    return ee_local.Image(L1C)


# -- output bands -----------------------------------------------------------------


@pytest.mark.parametrize(
    "params, names",
    [
        ({"bands": ["B4", "B3", "B2"], "min": 0, "max": 3000}, ["vis-red", "vis-green", "vis-blue"]),
        ({"bands": ["B4"], "min": 0, "max": 3000}, ["vis-gray"]),
        ({"bands": ["B4"], "forceRgbOutput": True}, ["vis-red", "vis-green", "vis-blue"]),
        ({"bands": ["B4"], "palette": ["black", "white"]}, ["vis-red", "vis-green", "vis-blue"]),
        ({}, ["vis-red", "vis-green", "vis-blue"]),  # the first three bands by default
    ],
)
def test_visualize_band_names_and_types(scene, params, names):
    vis = scene.visualize(**params)
    assert vis.bandNames().getInfo() == names
    types = vis.bandTypes().getInfo()
    assert all(t == {"type": "PixelType", "precision": "int", "min": 0, "max": 255} for t in types.values())


def test_visualize_default_uses_first_three_bands(scene, ee_local):
    first3 = [scene.bandNames().getInfo()[i] for i in range(3)]
    got = pixels(ee_local, scene.visualize(min=0, max=2000))
    want = pixels(ee_local, scene.visualize(bands=first3, min=0, max=2000))
    for name in ("vis-red", "vis-green", "vis-blue"):
        assert np.array_equal(got[name], want[name])


# -- stretches ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"min": 0, "max": 3000},
        {"min": 500, "max": 1500},
        {"min": [0, 100, 200], "max": [3000, 2500, 2000]},
        {"min": 0, "max": 3000, "gamma": 1.6},
        {"min": 0, "max": 3000, "gamma": [0.7, 1.0, 2.2]},
        {"gain": 0.1, "bias": -20},
        {"gain": [0.05, 0.1, 0.2]},
        {"bias": [-1000, -900, -800]},
    ],
)
def test_visualize_rgb_stretch_matches_numpy(scene, ee_local, params):
    bands = ["B4", "B3", "B2"]
    got = pixels(ee_local, scene.visualize(bands=bands, **params))

    def per_band(key, default):
        v = params.get(key, default)
        return v if isinstance(v, list) else [v] * 3

    for i, (band, out) in enumerate(zip(bands, ("vis-red", "vis-green", "vis-blue"), strict=True)):
        x = read_band(band)
        gamma = per_band("gamma", 1.0)[i]
        if "gain" in params or "bias" in params:
            want = np.floor(np.clip(x * per_band("gain", 1.0)[i] + per_band("bias", 0.0)[i], 0, 255) + 0.5)
        else:
            want = reference_stretch(x, per_band("min", 0)[i], per_band("max", 1)[i], gamma)
        assert got[out].dtype == np.uint8
        np.testing.assert_array_equal(got[out].astype(np.float64), want)


def test_visualize_single_band_is_gray(scene, ee_local):
    got = pixels(ee_local, scene.select("B8").visualize(min=200, max=4000))
    np.testing.assert_array_equal(got["vis-gray"].astype(np.float64), reference_stretch(read_band("B8"), 200, 4000))


def test_visualize_force_rgb_repeats_the_band(scene, ee_local):
    got = pixels(ee_local, scene.select("B8").visualize(min=200, max=4000, forceRgbOutput=True))
    want = reference_stretch(read_band("B8"), 200, 4000)
    for name in ("vis-red", "vis-green", "vis-blue"):
        np.testing.assert_array_equal(got[name].astype(np.float64), want)


def test_visualize_default_stretch_of_16_bit_data_is_the_full_range(scene, ee_local):
    """Guide "Image Visualization": 16-bit data are stretched to the full range of possible values."""
    got = pixels(ee_local, scene.select("B4").visualize())
    np.testing.assert_array_equal(got["vis-gray"].astype(np.float64), reference_stretch(read_band("B4"), 0, 65535))


@pytest.mark.parametrize("value, want", [(0.25, 64), (0.5, 128), (-3.5, 0), (7.5, 255)])
def test_visualize_default_stretch_of_floats_is_zero_to_one(ee_local, value, want):
    """Guide "Image Visualization": floats are stretched in [0, 1] (values outside clamped)."""
    got = pixels(ee_local, ee_local.Image.constant(value).visualize(), LONLAT_GRID)
    assert np.all(got["vis-gray"] == want)


# -- palettes ----------------------------------------------------------------------


def reference_palette(t: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """Colours at positions t in [0, 1], linearly interpolated between neighbours (np.interp per channel)."""
    stops = np.linspace(0, 1, len(colors))
    rgb = np.array(colors, dtype=np.float64)
    return np.stack([np.floor(np.interp(t, stops, rgb[:, k]) + 0.5) for k in range(3)], axis=-1)


@pytest.mark.parametrize(
    "palette, rgb",
    [
        (["red", "00FF00", "blueviolet"], [(255, 0, 0), (0, 255, 0), (138, 43, 226)]),  # CSS blueviolet is #8A2BE2
        (["#000000", "FFFFFF"], [(0, 0, 0), (255, 255, 255)]),
        (
            "d7191c,fdae61,ffffbf,abdda4,2b83ba",
            [(215, 25, 28), (253, 174, 97), (255, 255, 191), (171, 221, 164), (43, 131, 186)],
        ),
        (["navy", "teal", "olive", "maroon"], [(0, 0, 128), (0, 128, 128), (128, 128, 0), (128, 0, 0)]),
    ],
)
def test_palette_matches_numpy_interpolation(scene, ee_local, palette, rgb):
    ndvi_like = scene.select("B8")
    got = pixels(ee_local, ndvi_like.visualize(min=300, max=3500, palette=palette))
    t = np.clip((read_band("B8") - 300) / 3200, 0, 1)
    want = reference_palette(t, rgb)
    for k, name in enumerate(("vis-red", "vis-green", "vis-blue")):
        np.testing.assert_array_equal(got[name].astype(np.float64), want[..., k])


def test_palette_with_gamma(scene, ee_local):
    got = pixels(ee_local, scene.select("B8").visualize(min=300, max=3500, gamma=2.0, palette=["black", "red"]))
    t = np.clip((read_band("B8") - 300) / 3200, 0, 1) ** 0.5
    np.testing.assert_array_equal(got["vis-red"].astype(np.float64), np.floor(t * 255 + 0.5))
    assert np.all(got["vis-green"] == 0) and np.all(got["vis-blue"] == 0)


def test_palette_of_a_constant(ee_local):
    img = ee_local.Image.constant(1).visualize(min=0, max=2, palette=["white", "blue", "black"])
    got = pixels(ee_local, img, LONLAT_GRID)
    assert (int(got["vis-red"][0, 0]), int(got["vis-green"][0, 0]), int(got["vis-blue"][0, 0])) == (0, 0, 255)


@pytest.mark.parametrize(
    "value, want", [(0, (0, 0, 0)), (1, (255, 255, 255)), (2, (255, 0, 0)), (0.5, (128, 128, 128))]
)
def test_palette_with_gain_indexes_the_palette(ee_local, value, want):
    """With gain/bias (and a palette) the value x * gain + bias is a position along the palette
    (ee.data.getMapId's conversion of gain/bias to ranges uses len(palette) - 1 as the range)."""
    img = ee_local.Image.constant(value).visualize(gain=1, bias=0, palette=["black", "white", "red"])
    got = pixels(ee_local, img, LONLAT_GRID)
    assert (int(got["vis-red"][0, 0]), int(got["vis-green"][0, 0]), int(got["vis-blue"][0, 0])) == want


# -- masks and opacity ----------------------------------------------------------------


def test_visualize_masks_where_any_band_is_masked(ee_local):
    ee = ee_local
    left = ee.Geometry.Rectangle([-4, -2, 0, 2], None, False)
    img = ee.Image.constant([0.2, 0.4, 0.6]).addBands(ee.Image.constant(0.9).clip(left), overwrite=True)
    vis = img.visualize(bands=["constant_0", "constant_1", "constant"])
    png = ee.data.computePixels({"expression": vis, "fileFormat": "PNG", "grid": LONLAT_GRID})
    from io import BytesIO

    from PIL import Image as PILImage

    rgba = np.asarray(PILImage.open(BytesIO(png)).convert("RGBA"))
    assert np.all(rgba[:, :4, 3] == 255) and np.all(rgba[:, 4:, 3] == 0)
    assert tuple(rgba[0, 0]) == (51, 102, 230, 255)  # 0.2, 0.4, 0.9 of 255, rounded


@pytest.mark.parametrize("opacity, alpha", [(1, 255), (0.5, 128), (0.25, 64), (0.3, 77)])
def test_opacity_scales_the_alpha(ee_local, opacity, alpha):
    from io import BytesIO

    from PIL import Image as PILImage

    vis = ee_local.Image.constant(0.5).visualize(opacity=opacity)
    png = ee_local.data.computePixels({"expression": vis, "fileFormat": "PNG", "grid": LONLAT_GRID})
    la = np.asarray(PILImage.open(BytesIO(png)))
    assert np.all(la[..., 0] == 128) and np.all(la[..., 1] == alpha)


def test_opacity_zero_masks_everything(ee_local):
    got = pixels(ee_local, ee_local.Image.constant(0.5).visualize(opacity=0), LONLAT_GRID)
    assert np.all(got["vis-gray"] == 0)  # masked pixels are written as 0


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, message",
    [
        ({"bands": ["B4", "B3", "B2"], "palette": ["red", "blue"]}, "palette"),
        ({"bands": ["B4", "B3"]}, "1 or 3 bands"),
        ({"bands": ["B4"], "min": 0, "gain": 2}, "Gain and bias"),
        ({"bands": ["B4"], "palette": ["red", "notacolour"]}, "notacolour"),
        ({"bands": ["B4", "B3", "B2"], "min": [0, 1]}, "min"),
        ({"bands": ["B99"]}, "B99"),
        ({"bands": ["B4"], "opacity": 1.5}, "opacity"),
    ],
)
def test_visualize_errors(scene, params, message):
    import ee

    with pytest.raises(ee.EEException, match=message):
        scene.visualize(**params).getInfo()


# -- blend -----------------------------------------------------------------------------------


@pytest.fixture
def halves(ee_local):
    """A blue bottom everywhere, a red top on the left half of LONLAT_GRID only."""
    ee = ee_local
    left = ee.Geometry.Rectangle([-4, -2, 0, 2], None, False)
    bottom = ee.Image.constant([0, 0, 255]).visualize(min=0, max=255)
    top = ee.Image.constant([255, 0, 0]).visualize(min=0, max=255).clip(left)
    return bottom, top


def test_blend_takes_the_top_where_it_is_unmasked(ee_local, halves):
    bottom, top = halves
    got = pixels(ee_local, bottom.blend(top), LONLAT_GRID)
    rgb = np.stack([got["vis-red"], got["vis-green"], got["vis-blue"]], axis=-1)
    assert np.all(rgb[:, :4] == (255, 0, 0)) and np.all(rgb[:, 4:] == (0, 0, 255))


def test_blend_with_opacity_mixes(ee_local, halves):
    """The top's mask times its opacity is the alpha: 0.25 * red + 0.75 * blue on the left half."""
    bottom, _ = halves
    left = ee_local.Geometry.Rectangle([-4, -2, 0, 2], None, False)
    top = ee_local.Image.constant([255, 0, 0]).visualize(min=0, max=255, opacity=0.25).clip(left)
    got = pixels(ee_local, bottom.blend(top), LONLAT_GRID)
    np.testing.assert_allclose(got["vis-red"][:, :4], 63.75)
    np.testing.assert_allclose(got["vis-blue"][:, :4], 191.25)
    assert np.all(got["vis-red"][:, 4:] == 0) and np.all(got["vis-blue"][:, 4:] == 255)


def test_blend_replicates_a_single_band(ee_local):
    ee = ee_local
    left = ee.Geometry.Rectangle([-4, -2, 0, 2], None, False)
    bottom = ee.Image.constant([10, 20, 30])
    top = ee.Image.constant(99).clip(left)
    blended = bottom.blend(top)
    assert blended.bandNames().getInfo() == ["constant_0", "constant_1", "constant_2"]
    got = pixels(ee, blended, LONLAT_GRID)
    for name, base in (("constant_0", 10), ("constant_1", 20), ("constant_2", 30)):
        assert np.all(got[name][:, :4] == 99) and np.all(got[name][:, 4:] == base)


def test_blend_keeps_the_bottom_where_both_are_masked(ee_local):
    ee = ee_local
    left = ee.Geometry.Rectangle([-4, -2, 0, 2], None, False)
    top_row = ee.Geometry.Rectangle([-4, 0, 4, 2], None, False)
    bottom = ee.Image.constant(1).clip(top_row)
    top = ee.Image.constant(2).clip(left)
    png = ee.data.computePixels(
        {"expression": bottom.blend(top).visualize(min=0, max=2), "fileFormat": "PNG", "grid": LONLAT_GRID}
    )
    from io import BytesIO

    from PIL import Image as PILImage

    la = np.asarray(PILImage.open(BytesIO(png)))
    alpha = la[..., 1]
    assert np.all(alpha[:, :4] == 255)  # the top covers the left half
    assert np.all(alpha[:2, 4:] == 255) and np.all(alpha[2:, 4:] == 0)  # the bottom covers the top row only
    assert np.all(la[:, :4, 0] == 255) and np.all(la[:2, 4:, 0] == 128)


def test_blend_band_count_mismatch(ee_local):
    import ee

    with pytest.raises(ee.EEException, match="same number of bands"):
        ee_local.Image.constant([1, 2]).blend(ee_local.Image.constant([1, 2, 3])).getInfo()

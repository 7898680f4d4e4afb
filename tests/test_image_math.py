"""Per-pixel Image algorithms (image_math.py) through the real ``ee`` client.

Pixels come back through ``ee.data.computePixels`` (NPY) on exact grids and
are compared with numpy on the same files read with rasterio, with pyproj
(coordinates, geodesic areas) and with the values Earth Engine's reference
pages document; each test names the page it checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import shared_file

L1C = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
L1C_DIR = "imagery/s2_l1c_T33UUU_20170216"
UTM = "EPSG:32633"
X0, Y0 = 330000.0, 5822040.0  # the crop's upper-left corner (its 10 m bands' transform)

# A 96 x 64 window of the crop's 10 m lattice.
COL, ROW, W, H = 300, 200, 96, 64


def utm_grid(col=COL, row=ROW, width=W, height=H, scale=10.0):
    return {
        "dimensions": {"width": width, "height": height},
        "affineTransform": {
            "scaleX": scale,
            "shearX": 0,
            "translateX": X0 + col * 10.0,
            "shearY": 0,
            "scaleY": -scale,
            "translateY": Y0 - row * 10.0,
        },
        "crsCode": UTM,
    }


# A 4 x 3 grid of 0.01 degree pixels near Berlin.
LONLAT_GRID = {
    "dimensions": {"width": 4, "height": 3},
    "affineTransform": {
        "scaleX": 0.01,
        "shearX": 0,
        "translateX": 13.0,
        "shearY": 0,
        "scaleY": -0.01,
        "translateY": 52.5,
    },
    "crsCode": "EPSG:4326",
}


def pixels(ee, image, grid=None):
    """The image's pixels as a structured numpy array (masked pixels read 0, as on Earth Engine)."""
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid or LONLAT_GRID})


def values(ee, image, band=None, grid=None):
    arr = pixels(ee, image, grid)
    return arr[band or arr.dtype.names[0]].astype(np.float64)


def read_band(name, col=COL, row=ROW, width=W, height=H):
    """The crop's band ``name`` (10 m bands) over the test window, read with rasterio."""
    import rasterio
    from rasterio.windows import Window

    path = shared_file(f"{L1C_DIR}/T33UUU_20170216T102101_{name}.jp2")
    with rasterio.open(path) as src:
        assert tuple(src.transform)[:6] == (10.0, 0.0, X0, 0.0, -10.0, Y0)
        return src.read(1, window=Window(col, row, width, height)).astype(np.float64)


def method_of(image, name):
    """The client's method for an algorithm (Python spells and/or/not as And/Or/Not)."""
    return getattr(image, {"and": "And", "or": "Or", "not": "Not"}.get(name, name))


def ptype(precision, lo=None, hi=None):
    out = {"type": "PixelType", "precision": precision}
    if lo is not None:
        out.update(min=lo, max=hi)
    return out


@pytest.fixture(scope="module")
def s2(ee_local):
    shared_file(f"{L1C_DIR}/T33UUU_20170216T102101_B04.jp2")
    return ee_local.Image(L1C)


@pytest.fixture(scope="module")
def red_nir():
    return read_band("B04"), read_band("B08")


# -- NDVI on the real crop ----------------------------------------------------------------


def _ndvi(nir, red):
    total = nir + red
    return np.divide(nir - red, total, out=np.zeros_like(total), where=total != 0)


def test_normalized_difference_matches_numpy(ee_local, s2, red_nir):
    # ee.Image.normalizedDifference: (first - second) / (first + second), band 'nd'.
    red, nir = red_nir
    nd = s2.normalizedDifference(["B8", "B4"])
    assert nd.bandNames().getInfo() == ["nd"]
    got = values(ee_local, nd, "nd", utm_grid())
    np.testing.assert_allclose(got, _ndvi(nir, red).astype(np.float32), rtol=0, atol=1e-7)


def test_ndvi_by_expression_and_operators_match_numpy(ee_local, s2, red_nir):
    # ee.Image.expression: b('name') bands of the image, variables from the map; Mathematical Operations guide.
    red, nir = red_nir
    want = _ndvi(nir, red)
    by_b = s2.expression("(b('B8') - b('B4')) / (b('B8') + b('B4'))")
    by_map = s2.expression("NDVI = (NIR - RED) / (NIR + RED)", {"NIR": s2.select("B8"), "RED": s2.select("B4")})
    by_ops = s2.select("B8").subtract(s2.select("B4")).divide(s2.select("B8").add(s2.select("B4")))
    image = by_b.rename("b").addBands(by_map).addBands(by_ops.rename("ops"))
    arr = pixels(ee_local, image, utm_grid())
    for band in ("b", "NDVI", "ops"):
        np.testing.assert_allclose(arr[band].astype(np.float64), want, rtol=0, atol=1e-6)
    assert by_map.bandNames().getInfo() == ["NDVI"]
    # Output bands are named after image1 when both have one band (ee.Image.subtract).
    assert by_b.bandNames().getInfo() == ["B8"]


def test_expression_with_band_access_forms(ee_local, s2, red_nir):
    # ee.Image.expression: "The bands of each such image can be accessed like image.band_name or image[0]."
    red, nir = red_nir
    pair = s2.select(["B4", "B8"])
    expr = s2.expression("evi = 2.5 * (i.B8 - i[0]) / (i['B8'] + 6 * b(3) - 7.5 * b('B2') + 1)", {"i": pair})
    blue = read_band("B02")
    want = 2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1)
    got = values(ee_local, expr, "evi", utm_grid())
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_ndvi_int_bands_give_float(ee_local, s2):
    # ee.Image.normalizedDifference returns fractions in [-1, 1]; the guide's NDVI from integer
    # reflectances with subtract/divide gives fractions too (floating point division).
    assert s2.normalizedDifference(["B8", "B4"]).bandTypes().getInfo() == {"nd": ptype("float")}
    ratio = s2.select("B8").divide(s2.select("B4"))
    assert ratio.bandTypes().getInfo()["B8"]["precision"] in ("float", "double")


# -- arithmetic and types -----------------------------------------------------------------------

ARITHMETIC = [
    # (method, left, right, expected value)
    ("add", 7, 5, 12),
    ("subtract", 7, 5, 2),
    ("multiply", 7, 5, 35),
    ("divide", 7, 2, 3.5),
    ("divide", 7, 0, 0),  # ee.Image.divide: "returning 0 for division by 0"
    ("divide", -10.2, 5, -2.04),
    ("mod", 7, 5, 2),
    ("mod", -12, 5, -2),  # ee.Number.mod: the remainder has the dividend's sign
    ("pow", 2, 10, 1024),
    ("pow", 9, 0.5, 3),
    ("max", 7, 5, 7),
    ("min", 7, 5, 5),
    ("first", 7, 5, 7),
    ("firstNonZero", 0, 5, 5),
    ("firstNonZero", 3, 5, 3),
    ("hypot", 3, 4, 5),
    ("atan2", -1, 0, math.pi),  # ee.Number.atan2 example: (-1).atan2(0) is pi; image1 is x, image2 is y
    ("atan2", 0, 1, math.pi / 2),
    ("gammainc", 1, 1, 1 - 1 / math.e),  # ee.Number.gammainc example: 1 - 1/e
]


@pytest.mark.parametrize(("method", "left", "right", "want"), ARITHMETIC)
def test_binary_arithmetic(ee_local, method, left, right, want):
    image = method_of(ee_local.Image(left), method)(right)
    got = values(ee_local, image)
    np.testing.assert_allclose(got, np.full((3, 4), want), rtol=1e-6, atol=1e-6)


INT_TYPES = [
    # The output type is "the union of the input types" (ee.Image.add): integer results carry
    # the range the operation can produce.
    ("add", 7, 5, ptype("int", 12, 12)),
    ("subtract", 7, 5, ptype("int", 2, 2)),
    ("multiply", -3, 5, ptype("int", -15, -15)),
    ("max", 7, 5, ptype("int", 7, 7)),
    ("min", 7, 5, ptype("int", 5, 5)),
    ("add", 7, 0.5, ptype("float")),
    ("multiply", 2, 0.1, ptype("double")),  # 0.1 is not a float32: a double constant
    ("gt", 7, 5, ptype("int", 0, 1)),
    ("eq", 7.5, 7.5, ptype("int", 0, 1)),
    ("and", 1, 0, ptype("int", 0, 1)),
]


@pytest.mark.parametrize(("method", "left", "right", "want"), INT_TYPES)
def test_binary_pixel_types(ee_local, method, left, right, want):
    image = method_of(ee_local.Image(left), method)(right)
    assert image.bandTypes().getInfo() == {"constant": want}


def test_add_uint16_bands_widens_the_range(s2):
    # ee.Image.add: the output type holds every sum of two uint16 values.
    types = s2.select("B4").add(s2.select("B8")).bandTypes().getInfo()
    assert types == {"B4": ptype("int", 0, 131070)}
    assert s2.select("B4").subtract(s2.select("B8")).bandTypes().getInfo() == {"B4": ptype("int", -65535, 65535)}


UNARY = [
    ("abs", -2.5, 2.5),
    ("sqrt", 16, 4),
    ("exp", 1, math.e),
    ("log", math.e, 1),
    ("log10", 1000, 3),
    ("floor", -2.5, -3),
    ("ceil", -2.5, -2),
    ("round", 10.5, 11),  # ee.Number.round: 10.5 -> 11, -10.5 -> -11
    ("round", -10.5, -11),
    ("sin", math.pi / 2, 1),
    ("cos", 0, 1),
    ("tan", math.pi / 4, 1),
    ("signum", -7, -1),
    ("signum", 0, 0),
    ("not", 0, 1),
    ("not", 3, 0),
    ("erf", 0.5, math.erf(0.5)),
    ("erfc", 0.5, math.erfc(0.5)),
    ("erfInv", math.erf(0.3), 0.3),
    ("erfcInv", math.erfc(0.3), 0.3),
    ("gamma", 5, 24),
    ("gamma", 0.5, math.sqrt(math.pi)),
    ("bitCount", 7, 3),
    ("bitCount", 1024 + 2048, 2),
]


@pytest.mark.parametrize(("method", "value", "want"), UNARY)
def test_unary_math(ee_local, method, value, want):
    got = values(ee_local, method_of(ee_local.Image(value), method)())
    np.testing.assert_allclose(got, np.full((3, 4), want), rtol=1e-6, atol=1e-6)


COMPARISONS = [
    ("lt", 3, 5, 1),
    ("lt", 5, 5, 0),
    ("lte", 5, 5, 1),
    ("gt", 3, 5, 0),
    ("gte", 5, 5, 1),
    ("eq", 5, 5, 1),
    ("neq", 5, 5, 0),
    ("and", 2, 3, 1),
    ("and", 2, 0, 0),
    ("or", 0, 3, 1),
    ("or", 0, 0, 0),
]


@pytest.mark.parametrize(("method", "left", "right", "want"), COMPARISONS)
def test_comparisons_and_logic(ee_local, method, left, right, want):
    # ee.Image.lt & co.: "Returns 1 iff ..." - 0/1 pixels.
    arr = pixels(ee_local, method_of(ee_local.Image(left), method)(right))
    assert arr["constant"].dtype == np.uint8
    assert (arr["constant"] == want).all()


def test_comparison_on_pixel_lon_lat_matches_numpy(ee_local):
    lonlat = ee_local.Image.pixelLonLat()
    image = lonlat.select("longitude").gt(13.015).And(lonlat.select("latitude").lt(52.485))
    lon = 13.0 + 0.01 * (np.arange(4) + 0.5)
    lat = 52.5 - 0.01 * (np.arange(3) + 0.5)
    want = (lon[None, :] > 13.015) & (lat[:, None] < 52.485)
    np.testing.assert_array_equal(values(ee_local, image), want.astype(float))


# -- casts --------------------------------------------------------------------------------------

CASTS = [
    # ee.Number.toInt / toUint8 / ...: floats lose their fraction, out-of-range values become the
    # nearest bound of the type's range.
    ("toInt", 1.7, 1, ptype("int", -(2**31), 2**31 - 1)),
    ("int", -1.7, -1, ptype("int", -(2**31), 2**31 - 1)),
    ("toUint8", 300, 255, ptype("int", 0, 255)),
    ("uint8", -5, 0, ptype("int", 0, 255)),
    ("byte", 256.5, 255, ptype("int", 0, 255)),
    ("toByte", 12.9, 12, ptype("int", 0, 255)),
    ("int8", 200, 127, ptype("int", -128, 127)),
    ("toInt8", -200, -128, ptype("int", -128, 127)),
    ("int16", 70000, 32767, ptype("int", -32768, 32767)),
    ("toShort", -70000, -32768, ptype("int", -32768, 32767)),
    ("uint16", 70000, 65535, ptype("int", 0, 65535)),
    ("toUint16", 1.5, 1, ptype("int", 0, 65535)),
    ("int32", 2**31 + 12345, 2**31 - 1, ptype("int", -(2**31), 2**31 - 1)),
    ("uint32", -1, 0, ptype("int", 0, 2**32 - 1)),
    ("toUint32", 2**32 + 5, 2**32 - 1, ptype("int", 0, 2**32 - 1)),
    ("long", 1.9, 1, ptype("int", -(2**63), 2**63 - 1)),
    ("toInt64", -1.9, -1, ptype("int", -(2**63), 2**63 - 1)),
    ("toInt16", 3, 3, ptype("int", -32768, 32767)),
    ("toInt32", 3, 3, ptype("int", -(2**31), 2**31 - 1)),
    ("toLong", 3, 3, ptype("int", -(2**63), 2**63 - 1)),
    ("float", 3, 3, ptype("float")),
    ("toFloat", 0.1, float(np.float32(0.1)), ptype("float")),
    ("double", 3, 3, ptype("double")),
    ("toDouble", 0.1, 0.1, ptype("double")),
]


@pytest.mark.parametrize(("method", "value", "want", "want_type"), CASTS)
def test_casts(ee_local, method, value, want, want_type):
    image = getattr(ee_local.Image.constant(value), method)()
    assert image.bandTypes().getInfo() == {"constant": want_type}
    got = pixels(ee_local, image)["constant"]
    assert got.dtype == np.dtype({"float": np.float32, "double": np.float64}.get(want_type["precision"], got.dtype))
    assert (got.astype(np.float64) == np.float64(want)).all() or np.allclose(got.astype(np.float64), want, rtol=1e-15)


def test_cast_band_types_and_order(ee_local, s2):
    # ee.Image.cast: casts some or all bands to the given types; bandOrder orders the result.
    image = s2.select(["B4", "B8", "B3"])
    cast = image.cast({"B4": "float", "B8": "int8"}, ["B8", "B4", "B3"])
    assert cast.bandNames().getInfo() == ["B8", "B4", "B3"]
    types = cast.bandTypes().getInfo()
    assert types["B4"] == ptype("float")
    assert types["B8"] == ptype("int", -128, 127)
    assert types["B3"] == ptype("int", 0, 65535)
    got = pixels(ee_local, cast, utm_grid(width=8, height=8))
    np.testing.assert_array_equal(got["B8"], np.minimum(read_band("B08", width=8, height=8), 127))
    with pytest.raises(ee_local.EEException, match="not found"):
        image.cast({"B5": "float"}).getInfo()


# -- bit operations (QA60 cloud bits) --------------------------------------------------------------


QA_VALUES = np.array([0, 1024, 2048, 3072, 1025, 4096 + 2048])


def _qa_image(ee):
    return ee.Image.constant([int(v) for v in QA_VALUES]).toUint16()


def test_qa60_cloud_bits(ee_local):
    # Sentinel-2 QA60: bit 10 opaque clouds, bit 11 cirrus; the usual maskS2clouds test.
    qa = _qa_image(ee_local)
    clear = qa.bitwiseAnd(1 << 10).eq(0).And(qa.bitwiseAnd(1 << 11).eq(0))
    arr = pixels(ee_local, clear)
    got = np.array([arr[n][0, 0] for n in arr.dtype.names])
    want = ((QA_VALUES & (1 << 10)) == 0) & ((QA_VALUES & (1 << 11)) == 0)
    np.testing.assert_array_equal(got, want.astype(np.uint8))


BITS = [
    ("bitwiseAnd", 12, 10, 12 & 10),
    ("bitwiseOr", 12, 10, 12 | 10),
    ("bitwiseXor", 12, 10, 12 ^ 10),
    ("leftShift", 3, 4, 3 << 4),
    ("rightShift", 3072, 10, 3),
    ("rightShift", -16, 2, -4),  # arithmetic shift keeps the sign
    ("bitwise_and", 7, 5.9, 7 & 5),  # floats are truncated to integers first
]


@pytest.mark.parametrize(("method", "left", "right", "want"), BITS)
def test_bitwise_binary(ee_local, method, left, right, want):
    image = method_of(ee_local.Image(left), method)(right)
    assert (values(ee_local, image) == want).all()


def test_bitwise_not_and_shift_types(ee_local):
    # ee.Number.bitwiseNot: NOT 25 is -26 (two's complement).
    image = ee_local.Image(25).bitwiseNot()
    assert (values(ee_local, image) == -26).all()
    assert image.bandTypes().getInfo() == {"constant": ptype("int", -26, -26)}
    qa = _qa_image(ee_local).select(0)
    assert qa.rightShift(10).bandTypes().getInfo() == {"constant_0": ptype("int", 0, 63)}
    assert qa.bitwiseAnd(1024).bandTypes().getInfo() == {"constant_0": ptype("int", 0, 1024)}


def test_bit_ops_on_pixel_lon_lat_match_numpy(ee_local):
    lon = ee_local.Image.pixelLonLat().select("longitude").multiply(1000).int()
    image = lon.bitwiseAnd(255).addBands(lon.rightShift(3).rename("shifted")).addBands(lon.bitwiseXor(5).rename("x"))
    arr = pixels(ee_local, image)
    ref = np.trunc((13.0 + 0.01 * (np.arange(4) + 0.5)) * 1000).astype(np.int64)[None, :].repeat(3, 0)
    np.testing.assert_array_equal(arr["longitude"], ref & 255)
    np.testing.assert_array_equal(arr["shifted"], ref >> 3)
    np.testing.assert_array_equal(arr["x"], ref ^ 5)


# -- band matching and naming ---------------------------------------------------------------------


def test_band_matching_and_names(ee_local, s2):
    # ee.Image.add: one band is used against all the bands of the other image; output bands are
    # named for the longer input, or image1's when they have the same length.
    pair = s2.select(["B4", "B8"])
    assert ee_local.Image(1).add(pair).bandNames().getInfo() == ["B4", "B8"]
    assert pair.add(1).bandNames().getInfo() == ["B4", "B8"]
    assert pair.add(s2.select(["B2", "B3"])).bandNames().getInfo() == ["B4", "B8"]
    with pytest.raises(ee_local.EEException, match="same number of bands"):
        pair.add(s2.select(["B2", "B3", "B5"])).getInfo()
    red, nir = read_band("B04", width=8, height=4), read_band("B08", width=8, height=4)
    arr = pixels(ee_local, ee_local.Image(100).subtract(pair), utm_grid(width=8, height=4))
    np.testing.assert_array_equal(arr["B4"], 100 - red)
    np.testing.assert_array_equal(arr["B8"], 100 - nir)


def test_constant_does_not_take_the_default_projection(ee_local, s2):
    # Projections guide: a real band's projection is the default projection of derived bands; a
    # constant's WGS84 at 1 degree does not replace it, whichever side the constant is on.
    info = s2.select("B4").getInfo()["bands"][0]
    for image in (ee_local.Image(1).subtract(s2.select("B4")), s2.select("B4").multiply(2)):
        proj = image.projection().getInfo()
        assert proj["crs"] == UTM
        assert proj["transform"] == info["crs_transform"]


def test_math_drops_properties_and_set_get_work(ee_local, s2):
    # ee.Image.normalizedDifference: the input image properties are not retained.
    assert s2.normalizedDifference(["B8", "B4"]).propertyNames().getInfo() == []
    assert s2.add(1).propertyNames().getInfo() == []
    tagged = s2.set("cloudy", 3).set("system:index", "abc")
    assert tagged.get("cloudy").getInfo() == 3
    assert tagged.get("system:index").getInfo() == "abc"
    assert tagged.id().getInfo() == "abc"
    assert "cloudy" in tagged.propertyNames().getInfo()
    assert s2.get("MGRS_TILE").getInfo() == "33UUU"


# -- masks ---------------------------------------------------------------------------------------------


def test_mask_propagates_through_arithmetic(ee_local, s2):
    # Mathematical Operations guide: only the intersection of unmasked pixels is unmasked.
    red = s2.select("B4")
    nir = s2.select("B8")
    masked = red.updateMask(red.gt(1000)).add(nir.updateMask(nir.lt(2500)))
    arr = pixels(ee_local, masked.addBands(masked.mask().rename("m")), utm_grid())
    r, n = read_band("B04"), read_band("B08")
    valid = (r > 1000) & (n < 2500)
    assert 0 < valid.sum() < valid.size
    np.testing.assert_array_equal(arr["m"], valid.astype(np.uint8))
    np.testing.assert_array_equal(arr["B4"], np.where(valid, r + n, 0))


def test_normalized_difference_masks_negative_inputs(ee_local):
    # ee.Image.normalizedDifference: a negative pixel value in either input band masks the output.
    # Floats are checked in both bands (one comparison for both), ints only where their type can be negative.
    cases = (([-1, 2], 0, 0), ([2, -1], 0, 0), ([3, 1], 1, 0.5), ([0, 0], 1, 0), ([1.5, -0.5], 0, 0),
             ([-0.5, 1.5], 0, 0), ([1.5, 0.5], 1, 0.5))  # fmt: skip
    for pair, want_mask, want in cases:
        nd = ee_local.Image.constant(pair).normalizedDifference()
        arr = pixels(ee_local, nd.addBands(nd.mask().rename("m")))
        assert (arr["m"] == want_mask).all()
        np.testing.assert_allclose(arr["nd"], want)


def _nd_reference(a, b, mask, check_a, check_b):
    """numpy's normalised difference as ee.Image.normalizedDifference documents it, as an NPY answer holds it:
    (a - b) / (a + b) in float64, 0 where a + b is 0, masked where an input is masked or negative (checked only
    for a type that can be negative), masked pixels 0, cast to float32."""
    total = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        nd = np.where(total == 0, 0.0, (a - b) / total)
    mask = mask | (check_a & (a < 0)) | (check_b & (b < 0))
    return np.where(mask, 0.0, nd).astype(np.float32)


def test_normalized_differences_written_into_an_npy_answer_match_numpy_bit_for_bit(ee_local, s2):
    # The encoder writes a normalised difference straight into its field, a block of rows at a time (here 5 blocks
    # of 39 rows, the last short): positive integers, zeros on both sides, integers that may be negative, masked
    # pixels, doubles, a + b = 0 everywhere, a = -b; each band also computed whole (the `_c` twin, through
    # add(0)). All must be numpy's float32 of the float64 arithmetic, bit for bit.
    width, height = 700, 160
    grid = utm_grid(col=100, row=100, width=width, height=height)
    r, n = (read_band(b, 100, 100, width, height) for b in ("B04", "B08"))
    red, nir = s2.select("B4"), s2.select("B8")
    none = np.zeros(r.shape, bool)
    cases = {  # name: (first, second, numpy first, numpy second, numpy mask, first checked, second checked)
        "pos": (nir, red, n, r, none, False, False),
        "zeros": (nir.where(nir.gt(1800), 0), red.where(red.gt(1200), 0),
                  np.where(n > 1800, 0, n), np.where(r > 1200, 0, r), none, False, False),
        "neg_int": (nir.subtract(1900), red, n - 1900, r, none, True, False),
        "masked": (nir.updateMask(nir.gt(1700)), red, n, r, ~(n > 1700), False, False),
        "doubles": (nir.divide(10000).subtract(0.19), red.divide(10000), n / 10000 - 0.19, r / 10000, none, True, True),
        "all_zero": (nir.multiply(0), red.multiply(0), 0 * n, 0 * r, none, False, False),
        "opposite": (nir.divide(10), nir.divide(-10), n / 10, n / -10, none, True, True),
    }  # fmt: skip
    image = None
    for name, (first, second, *_) in cases.items():
        nd = first.addBands(second).normalizedDifference()
        pair = nd.rename(name).addBands(nd.add(0).rename(f"{name}_c"))
        image = pair if image is None else image.addBands(pair)
    arr = pixels(ee_local, image, grid)
    assert arr.dtype == np.dtype([(f"{c}{t}", "<f4") for c in cases for t in ("", "_c")])
    for name, (_, _, a, b, mask, check_a, check_b) in cases.items():
        want = _nd_reference(a, b, mask, check_a, check_b)
        np.testing.assert_array_equal(arr[name], want, err_msg=name)
        np.testing.assert_array_equal(arr[f"{name}_c"], want, err_msg=name)
    assert (arr["neg_int"] == 0).any() and (arr["masked"] == 0).any() and (arr["zeros"] == 0).any()


def test_normalized_differences_of_an_npy_answer_are_not_held_as_whole_bands(ee_local, s2):
    # Written straight into the answer, 12 normalised differences of 4 bands need the answer and the 4 inputs, not
    # 12 float64 bands and masks beside them (which alone would be 2.25x the answer). The answer's buffer is the
    # engine's kept one, reused (the warm-up's answer is dropped), so the peak is mostly the inputs.
    import tracemalloc

    from gee_mining.io.pixels import compute_npy

    width, height = 700, 160
    bands = ["B2", "B3", "B4", "B8"]
    image = None
    for a in bands:
        for b in bands:
            if a != b:
                nd = s2.normalizedDifference([a, b]).rename(f"{a}_{b}")
                image = nd if image is None else image.addBands(nd)
    grid = utm_grid(col=100, row=100, width=width, height=height)
    compute_npy({"expression": image, "grid": grid})  # the engine's answer buffer and its file reads warm
    ee_local.data.computePixels({"expression": ee_local.Image(0), "fileFormat": "NPY", "grid": grid})
    tracemalloc.start()
    try:
        got = compute_npy({"expression": image, "grid": grid})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    answer = got.nbytes
    np.testing.assert_array_equal(
        got["B8_B4"],
        _nd_reference(*(read_band(b, 100, 100, width, height) for b in ("B08", "B04")), False, False, False),
    )
    assert answer == 12 * 4 * width * height
    assert peak < 2 * answer, (peak, answer)  # was 17.3 MB (3.2x) when each difference was computed whole; now 4.6


def test_where_clamp_unit_scale(ee_local, s2):
    red = s2.select("B4")
    r = read_band("B04")
    # ee.Image.where: where test is nonzero, the value; elsewhere the input.
    replaced = red.where(red.gt(1200), 0)
    # ee.Image.clamp: values limited to [low, high].
    clamped = red.clamp(900, 1100)
    # ee.Image.unitScale: [low, high] becomes [0, 1], not clamped, floating point.
    scaled = red.unitScale(1000, 2000)
    image = replaced.rename("w").addBands(clamped.rename("c")).addBands(scaled.rename("u"))
    arr = pixels(ee_local, image, utm_grid())
    np.testing.assert_array_equal(arr["w"], np.where(r > 1200, 0, r))
    np.testing.assert_array_equal(arr["c"], np.clip(r, 900, 1100))
    np.testing.assert_allclose(arr["u"], (r - 1000) / 1000, rtol=1e-6)
    types = image.bandTypes().getInfo()
    assert types["c"] == ptype("int", 900, 1100)
    assert types["u"] == ptype("float")
    assert types["w"] == ptype("int", 0, 65535)


def test_where_keeps_input_where_test_or_value_masked(ee_local):
    # ee.Image.where: "If at a given pixel, either test or value is masked, the input value is used.
    # If the input is masked, nothing is done."
    lon = ee_local.Image.pixelLonLat().select("longitude")
    value = ee_local.Image(99).updateMask(lon.gt(13.02))
    image = ee_local.Image(1).where(ee_local.Image(1), value)
    got = values(ee_local, image)
    lons = 13.0 + 0.01 * (np.arange(4) + 0.5)
    np.testing.assert_array_equal(got, np.where(lons > 13.02, 99, 1)[None, :].repeat(3, 0))
    masked_input = ee_local.Image(1).updateMask(0).where(1, 5)
    assert (values(ee_local, masked_input.mask()) == 0).all()


# -- expressions -----------------------------------------------------------------------------------

EXPRESSIONS = [
    # Expressions section of the Mathematical Operations guide: arithmetic, relational, logical and
    # ternary operators and Math functions.
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("2 ** 3 ** 2", 512),
    ("-2 ** 2", -4),
    ("7 % 4", 3),
    ("7 / 2", 3.5),
    ("3 > 2 && 2 > 1", 1),
    ("3 > 2 && !(2 > 1)", 0),
    ("0 || 5", 1),
    ("1 ^ 1", 0),
    ("1 ^ 0", 1),
    ("5 == 5 ? 10 : 20", 10),
    ("5 != 5 ? 10 : 20", 20),
    ("abs(-3) + sqrt(16) + max(1, 2) + min(1, 2)", 10),
    ("floor(2.7) + ceil(2.1) + round(2.5)", 8),
    ("pow(2, 5)", 32),
    ("Math.PI", math.pi),
    ("cos(Math.PI)", -1),
    ("exp(log(5))", 5),
]


@pytest.mark.parametrize(("expr", "want"), EXPRESSIONS)
def test_expression_language(ee_local, expr, want):
    got = values(ee_local, ee_local.Image(0).expression(expr))
    np.testing.assert_allclose(got, np.full((3, 4), want), rtol=1e-6, atol=1e-6)


def test_expression_variables_and_errors(ee_local):
    lonlat = ee_local.Image.pixelLonLat()
    image = lonlat.expression("b('longitude') > 13.02 ? lat.latitude : -1", {"lat": lonlat})
    lon = 13.0 + 0.01 * (np.arange(4) + 0.5)
    lat = 52.5 - 0.01 * (np.arange(3) + 0.5)
    want = np.where(lon[None, :] > 13.02, lat[:, None], -1)
    np.testing.assert_allclose(values(ee_local, image), want)
    # Calling b() with no arguments, or using a variable by itself, returns all bands.
    assert lonlat.expression("b() * 2").bandNames().getInfo() == ["longitude", "latitude"]
    assert lonlat.expression("v + 1", {"v": lonlat}).bandNames().getInfo() == ["longitude", "latitude"]
    with pytest.raises(ee_local.EEException, match="not defined"):
        lonlat.expression("nope + 1").getInfo()
    with pytest.raises(ee_local.EEException, match="Unknown function"):
        lonlat.expression("frobnicate(1)").getInfo()
    with pytest.raises(ee_local.EEException, match="did not match"):
        lonlat.expression("b('B99')").getInfo()
    with pytest.raises(ee_local.EEException, match="Unexpected"):
        lonlat.expression("1 +").getInfo()


# -- synthetic images -------------------------------------------------------------------------------


def test_pixel_lon_lat_matches_pyproj(ee_local):
    # ee.Image.pixelLonLat: bands 'longitude' and 'latitude', in degrees, at each pixel.
    import pyproj

    image = ee_local.Image.pixelLonLat()
    assert image.bandNames().getInfo() == ["longitude", "latitude"]
    arr = pixels(ee_local, image, utm_grid(width=6, height=5))
    cols, rows = np.meshgrid(np.arange(6) + 0.5, np.arange(5) + 0.5)
    xs, ys = X0 + COL * 10 + cols * 10, Y0 - ROW * 10 - rows * 10
    lon, lat = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(xs, ys)
    np.testing.assert_allclose(arr["longitude"], lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(arr["latitude"], lat, rtol=0, atol=1e-9)


def test_pixel_coordinates_in_a_projection(ee_local):
    # ee.Image.pixelCoordinates: the x and y coordinates of each pixel in the given projection
    # (atScale scales both axes of the CRS, so y grows northwards here).
    proj = ee_local.Projection(UTM).atScale(20)
    arr = pixels(ee_local, ee_local.Image.pixelCoordinates(proj), utm_grid(width=4, height=3))
    xs = X0 + COL * 10 + (np.arange(4) + 0.5) * 10
    ys = Y0 - ROW * 10 - (np.arange(3) + 0.5) * 10
    np.testing.assert_allclose(arr["x"], np.broadcast_to(xs / 20, (3, 4)))
    np.testing.assert_allclose(arr["y"], np.broadcast_to((ys / 20)[:, None], (3, 4)))


def _geod_areas(corners_lonlat):
    import pyproj

    geod = pyproj.Geod(ellps="WGS84")
    return np.array([abs(geod.polygon_area_perimeter(lons, lats)[0]) for lons, lats in corners_lonlat])


def test_pixel_area_on_utm_and_lonlat_grids(ee_local):
    # ee.Image.pixelArea: each pixel's area in square metres, one band 'area'; its default projection
    # is WGS84 at 1 degree. The reference: geodesic polygons on the WGS84 ellipsoid (pyproj.Geod).
    import pyproj

    image = ee_local.Image.pixelArea()
    assert image.bandNames().getInfo() == ["area"]
    assert image.projection().getInfo()["crs"] == "EPSG:4326"
    # A 1 km UTM grid: pixel edges are straight in UTM; densify them for the geodesic reference.
    grid = utm_grid(width=3, height=2, scale=1000)
    got = values(ee_local, image, grid=grid)
    to_ll = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    x0, y0 = X0 + COL * 10, Y0 - ROW * 10
    polys = []
    for r in range(2):
        for c in range(3):
            t = np.linspace(0, 1, 50)
            left, top = x0 + c * 1000, y0 - r * 1000
            xs = np.concatenate([left + 1000 * t, np.full(50, left + 1000), left + 1000 * t[::-1], np.full(50, left)])
            ys = np.concatenate([np.full(50, top), top - 1000 * t, np.full(50, top - 1000), top - 1000 * t[::-1]])
            polys.append(to_ll.transform(xs, ys))
    np.testing.assert_allclose(got.ravel(), _geod_areas(polys), rtol=1e-6)
    # A 0.01 degree grid: cells bounded by meridians and parallels.
    got = values(ee_local, image)
    polys = []
    for r in range(3):
        for c in range(4):
            w, n = 13.0 + 0.01 * c, 52.5 - 0.01 * r
            lons = np.concatenate([np.linspace(w, w + 0.01, 50), np.linspace(w + 0.01, w, 50)])
            lats = np.concatenate([np.full(50, n), np.full(50, n - 0.01)])
            polys.append((lons, lats))
    np.testing.assert_allclose(got.ravel(), _geod_areas(polys), rtol=1e-6)


def test_image_geometry_is_the_footprint(ee_local):
    """ "ee.Image.geometry": the footprint of the image; a constant image is unbounded (the whole world)."""
    import pyproj
    import rasterio
    import shapely
    import shapely.geometry

    ee = ee_local
    path = shared_file("imagery/s2_l1c_T33UUU_20170216/T33UUU_20170216T102101_B04.jp2")
    with rasterio.open(path) as ds:
        left, bottom, right, top = ds.bounds
    tf = pyproj.Transformer.from_crs(32633, 4326, always_xy=True)
    corners = [tf.transform(x, y) for x, y in ((left, bottom), (right, bottom), (right, top), (left, top))]
    footprint = shapely.geometry.shape(ee.Image(L1C).select("B4").geometry().getInfo())
    assert footprint.buffer(1e-6).contains(shapely.Polygon(corners).buffer(-1e-6))
    assert shapely.Polygon(corners).area == pytest.approx(footprint.area, rel=1e-3)
    world = ee.Image(1).geometry().getInfo()
    assert shapely.geometry.shape(world).bounds == (-180, -90, 180, 90)

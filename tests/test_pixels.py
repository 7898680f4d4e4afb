"""Pixels out as pictures: computePixels PNG/JPEG/AUTO_JPEG_PNG, thumbnails and downloads.

Docs checked: REST "image.computePixels" and "VisualizationOptions" (ranges
mapped to 0-255 and clamped, one range per band or one for all;
paletteColors for one band; gamma; opacity), REST "ImageFileFormat" (JPEG and
PNG for display; AUTO_JPEG_PNG picks JPEG or PNG depending on whether any
pixel is transparent; ZIPPED_GEO_TIFF(_PER_BAND) for thumbnails), "projects.thumbnails"
(create, then getPixels), "ee.Image.getThumbURL" (dimensions: the maximum
dimension, the other from the aspect; region: by default the image's bounds)
and "ee.Image.getDownloadURL" (ZIPPED_GEO_TIFF_PER_BAND by default, one GeoTIFF
per band; GEO_TIFF and NPY).

References are numpy stretches of the shared files read with rasterio, and
grids worked out with pyproj, never values produced by the engine.
"""

from __future__ import annotations

import io
import urllib.request
import zipfile

import numpy as np
import pytest

from tests.conftest import shared_file

L1C = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
FILES = {"B1": "B01", "B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08"}
ORIGIN = (330000.0, 5822040.0)  # the crop's upper-left corner in EPSG:32633
COL0, ROW0, W, H = 700, 300, 80, 60


def native_grid(col0=COL0, row0=ROW0, width=W, height=H) -> dict:
    return {
        "dimensions": {"width": width, "height": height},
        "affineTransform": {
            "scaleX": 10,
            "shearX": 0,
            "translateX": ORIGIN[0] + 10 * col0,
            "shearY": 0,
            "scaleY": -10,
            "translateY": ORIGIN[1] - 10 * row0,
        },
        "crsCode": "EPSG:32633",
    }


def band_path(band: str):
    return shared_file(f"imagery/s2_l1c_T33UUU_20170216/T33UUU_20170216T102101_{FILES[band]}.jp2")


def read_band(band: str, col0=COL0, row0=ROW0, width=W, height=H, boundless=False) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(band_path(band)) as ds:
        return ds.read(1, window=Window(col0, row0, width, height), boundless=boundless, fill_value=0).astype(float)


def stretch(x, lo, hi, gamma=1.0):
    return np.floor(np.clip((x - lo) / (hi - lo), 0, 1) ** (1 / gamma) * 255 + 0.5)


def decode(data: bytes) -> tuple[str, np.ndarray]:
    from PIL import Image as PILImage

    im = PILImage.open(io.BytesIO(data))
    return im.format, np.asarray(im)


@pytest.fixture(scope="module")
def scene(ee_local):
    shared_file("imagery/s2_l1c_T33UUU_20170216")
    return ee_local.Image(L1C)


# -- computePixels ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, ranges, gamma",
    [
        ({"ranges": [{"min": 0, "max": 3000}]}, [(0, 3000)] * 3, 1.0),
        (
            {"ranges": [{"min": 100, "max": 2500}, {"min": 200, "max": 2600}, {"min": 300, "max": 2700}]},
            [(100, 2500), (200, 2600), (300, 2700)],
            1.0,
        ),
        ({"ranges": [{"min": 0, "max": 3000}], "gamma": 1.8}, [(0, 3000)] * 3, 1.8),
    ],
)
def test_compute_pixels_png_with_visualization_options(scene, ee_local, options, ranges, gamma):
    data = ee_local.data.computePixels(
        {
            "expression": scene,
            "fileFormat": "PNG",
            "bandIds": ["B4", "B3", "B2"],
            "grid": native_grid(),
            "visualizationOptions": options,
        }
    )
    fmt, rgba = decode(data)
    assert fmt == "PNG" and rgba.shape == (H, W, 4)
    for k, (band, (lo, hi)) in enumerate(zip(["B4", "B3", "B2"], ranges, strict=True)):
        np.testing.assert_array_equal(rgba[..., k].astype(float), stretch(read_band(band), lo, hi, gamma))
    assert np.all(rgba[..., 3] == 255)


def test_compute_pixels_png_palette(scene, ee_local):
    data = ee_local.data.computePixels(
        {
            "expression": scene,
            "fileFormat": "PNG",
            "bandIds": ["B8"],
            "grid": native_grid(),
            "visualizationOptions": {"ranges": [{"min": 500, "max": 4000}], "paletteColors": ["FF0000", "0000FF"]},
        }
    )
    _, rgba = decode(data)
    t = np.clip((read_band("B8") - 500) / 3500, 0, 1)
    np.testing.assert_array_equal(rgba[..., 0].astype(float), np.floor((1 - t) * 255 + 0.5))
    np.testing.assert_array_equal(rgba[..., 2].astype(float), np.floor(t * 255 + 0.5))
    assert np.all(rgba[..., 1] == 0)


def test_compute_pixels_png_opacity(scene, ee_local):
    data = ee_local.data.computePixels(
        {
            "expression": scene.select("B4"),
            "fileFormat": "PNG",
            "grid": native_grid(),
            "visualizationOptions": {"ranges": [{"min": 0, "max": 3000}], "opacity": 0.4},
        }
    )
    _, la = decode(data)
    assert np.all(la[..., 1] == 102)  # 0.4 * 255, rounded


def test_compute_pixels_png_of_a_visualized_image(scene, ee_local):
    vis = scene.visualize(bands=["B8", "B4", "B3"], min=0, max=4000)
    _, rgba = decode(ee_local.data.computePixels({"expression": vis, "fileFormat": "PNG", "grid": native_grid()}))
    for k, band in enumerate(["B8", "B4", "B3"]):
        np.testing.assert_array_equal(rgba[..., k].astype(float), stretch(read_band(band), 0, 4000))


def test_compute_pixels_jpeg_is_close_to_the_stretch(scene, ee_local):
    data = ee_local.data.computePixels(
        {
            "expression": scene.visualize(bands=["B4", "B3", "B2"], min=0, max=3000),
            "fileFormat": "JPEG",
            "grid": native_grid(),
        }
    )
    fmt, rgb = decode(data)
    assert fmt == "JPEG" and rgb.shape == (H, W, 3)
    want = np.stack([stretch(read_band(b), 0, 3000) for b in ("B4", "B3", "B2")], axis=-1)
    assert np.mean(np.abs(rgb.astype(float) - want)) < 4  # JPEG is lossy


def test_auto_jpeg_png_is_jpeg_when_opaque_and_png_with_transparency(scene, ee_local):
    vis = scene.visualize(bands=["B4", "B3", "B2"], min=0, max=3000)
    inside = ee_local.data.computePixels({"expression": vis, "fileFormat": "AUTO_JPEG_PNG", "grid": native_grid()})
    assert decode(inside)[0] == "JPEG"
    # a window hanging 20 pixels over the crop's western edge: transparent there
    edge = ee_local.data.computePixels(
        {"expression": vis, "fileFormat": "AUTO_JPEG_PNG", "grid": native_grid(col0=-20, row0=100)}
    )
    fmt, rgba = decode(edge)
    assert fmt == "PNG"
    assert np.all(rgba[:, :20, 3] == 0) and np.all(rgba[:, 20:, 3] == 255)
    want = stretch(read_band("B4", col0=0, row0=100, width=W - 20), 0, 3000)
    np.testing.assert_array_equal(rgba[:, 20:, 0].astype(float), want)


def test_png_without_visualization_uses_the_default_stretch(scene, ee_local):
    """Guide "Image Visualization": 16-bit data are stretched over their full range by default."""
    data = ee_local.data.computePixels(
        {"expression": scene, "fileFormat": "PNG", "bandIds": ["B8"], "grid": native_grid()}
    )
    _, la = decode(data)
    np.testing.assert_array_equal(la[..., 0].astype(float), stretch(read_band("B8"), 0, 65535))


def test_npy_with_visualization_options(scene, ee_local):
    arr = ee_local.data.computePixels(
        {
            "expression": scene,
            "fileFormat": "NUMPY_NDARRAY",
            "bandIds": ["B4"],
            "grid": native_grid(),
            "visualizationOptions": {"ranges": [{"min": 0, "max": 2000}]},
        }
    )
    assert arr.dtype.names == ("vis-gray",)
    np.testing.assert_array_equal(arr["vis-gray"].astype(float), stretch(read_band("B4"), 0, 2000))


def test_unknown_format_is_refused(scene, ee_local):
    import ee

    with pytest.raises(ee.EEException, match="TF_RECORD_IMAGE"):
        ee_local.data.computePixels({"expression": scene, "fileFormat": "TF_RECORD_IMAGE", "grid": native_grid()})


@pytest.mark.parametrize("width, height", [(0, H), (W, -1)])
def test_a_grid_without_pixels_is_refused_with_earth_engines_message(ee_local, width, height):
    import ee

    grid = native_grid(width=width, height=height)
    with pytest.raises(ee.EEException, match=f"Invalid pixel grid dimensions {width}x{height}"):
        ee_local.data.computePixels({"expression": ee_local.Image.constant(1), "fileFormat": "NPY", "grid": grid})


# -- thumbnails over HTTP -------------------------------------------------------------------


def fetch(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.headers["Content-Type"], r.read()


def test_thumbnail_url_points_at_the_engine(ee_http, scene):
    url = scene.getThumbURL({"bands": ["B4", "B3", "B2"], "min": 0, "max": 3000, "dimensions": 64})
    assert url.startswith("http://127.0.0.1:") and url.endswith(":getPixels")
    assert "/v1/projects/gee-mining-test/thumbnails/" in url


def test_thumbnail_over_http_matches_a_reprojection(ee_http, scene):
    """getThumbURL with a lon/lat region and dimensions: the image's projection over the region's bounds."""
    import pyproj
    import rasterio
    from rasterio.transform import Affine
    from rasterio.warp import Resampling, reproject

    ee = ee_http
    west, south, east, north = 12.60, 52.48, 12.62, 52.49
    url = scene.getThumbURL(
        {
            "bands": ["B4", "B3", "B2"],
            "min": 0,
            "max": 3000,
            "dimensions": 128,
            "region": ee.Geometry.Rectangle([west, south, east, north]),
            "format": "png",
        }
    )
    ctype, data = fetch(url)
    assert ctype == "image/png"
    fmt, rgba = decode(data)
    # the region's bounds in EPSG:32633 (edges densified), 128 pixels along the longer side
    lon = np.concatenate(
        [np.linspace(west, east, 65), np.full(65, east), np.linspace(east, west, 65), np.full(65, west)]
    )
    lat = np.concatenate(
        [np.full(65, south), np.linspace(south, north, 65), np.full(65, north), np.linspace(north, south, 65)]
    )
    xs, ys = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True).transform(lon, lat)
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    if x1 - x0 >= y1 - y0:
        w, h = 128, round(128 * (y1 - y0) / (x1 - x0))
    else:
        w, h = round(128 * (x1 - x0) / (y1 - y0)), 128
    assert rgba.shape == (h, w, 4)
    dst_transform = Affine((x1 - x0) / w, 0, x0, 0, -(y1 - y0) / h, y1)
    for k, band in enumerate(["B4", "B3", "B2"]):
        with rasterio.open(band_path(band)) as ds:
            dst = np.zeros((h, w))
            reproject(
                ds.read(1).astype(float), dst, src_transform=ds.transform, src_crs=ds.crs,
                dst_transform=dst_transform, dst_crs="EPSG:32633", resampling=Resampling.nearest,
            )  # fmt: skip
        equal = rgba[..., k].astype(float) == stretch(dst, 0, 3000)
        assert equal.mean() > 0.99, f"{band}: {equal.mean():.4f} of pixels agree"
    assert np.all(rgba[..., 3] == 255)


def test_thumbnail_jpeg_and_default_region(ee_http, scene):
    """Without a region the thumbnail covers the image's bounds; 'jpg' gives JPEG."""
    url = scene.getThumbURL({"bands": ["B8"], "min": 0, "max": 4000, "dimensions": 96, "format": "jpg"})
    ctype, data = fetch(url)
    fmt, gray = decode(data)
    assert ctype == "image/jpeg" and fmt == "JPEG"
    assert max(gray.shape) == 96
    # the crop is 15.36 km x 7.68 km in EPSG:32633, i.e. 2:1
    assert gray.shape == (48, 96)


def test_thumbnail_palette_of_a_constant(ee_http):
    ee = ee_http
    url = ee.Image.constant(0.5).getThumbURL(
        {
            "min": 0,
            "max": 1,
            "palette": ["black", "lime"],
            "dimensions": "20x10",
            "region": [-10, -5, 10, 5],
            "format": "png",
        }
    )
    _, rgba = decode(fetch(url)[1])
    assert rgba.shape == (10, 20, 4)
    assert np.all(rgba == (0, 128, 0, 255))


def test_thumbnail_of_unknown_id_is_404(ee_http, scene):
    import urllib.error

    url = scene.getThumbURL({"bands": ["B8"], "dimensions": 16})
    bad = url.replace(url.rsplit("/", 1)[1], "0123456789abcdef:getPixels")
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(bad)
    assert e.value.code == 404


def test_thumbnail_errors_surface_at_creation(ee_local, scene):
    import ee

    with pytest.raises(ee.EEException, match="palette"):
        scene.getThumbURL({"bands": ["B4", "B3", "B2"], "palette": ["red", "blue"], "dimensions": 16})


# -- downloads -------------------------------------------------------------------------------

REGION = (12.575, 52.470, 12.581, 52.4725)  # west, south, east, north: about 40 x 28 pixels of 10 m


def utm_bbox(west, south, east, north):
    """The region's bounding box in EPSG:32633 (its edges densified, as lines of lon/lat)."""
    import pyproj

    t = np.linspace(0, 1, 65)
    lon = np.concatenate([west + (east - west) * t, np.full(65, east), east - (east - west) * t, np.full(65, west)])
    lat = np.concatenate(
        [np.full(65, south), south + (north - south) * t, np.full(65, north), north - (north - south) * t]
    )
    xs, ys = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True).transform(lon, lat)
    return min(xs), min(ys), max(xs), max(ys)


def expected_download(band: str, factor: int = 1):
    """A 10 m grid covering the region's bounding box on the crop's lattice, masked (0) where a pixel's
    centre is outside the box ("ee.Image.clipToBoundsAndScale": clipped to the bounding box in the
    image's projection); B1 (60 m) is read by nearest neighbour: each native pixel 6 x 6 times."""
    import math

    x0, y0, x1, y1 = utm_bbox(*REGION)
    col0, col1 = math.floor((x0 - ORIGIN[0]) / 10), math.ceil((x1 - ORIGIN[0]) / 10)
    row0, row1 = math.floor((ORIGIN[1] - y1) / 10), math.ceil((ORIGIN[1] - y0) / 10)
    w, h = col1 - col0, row1 - row0
    if factor == 1:
        values = read_band(band, col0, row0, w, h)
    else:
        c0, r0 = col0 // factor, row0 // factor
        coarse = read_band(band, c0, r0, w // factor + 2, h // factor + 2)
        fine = np.repeat(np.repeat(coarse, factor, axis=0), factor, axis=1)
        values = fine[row0 - factor * r0 : row0 - factor * r0 + h, col0 - factor * c0 : col0 - factor * c0 + w]
    cx = ORIGIN[0] + 10 * (col0 + np.arange(w) + 0.5)
    cy = ORIGIN[1] - 10 * (row0 + np.arange(h) + 0.5)
    inside = ((cx >= x0) & (cx <= x1))[None, :] & ((cy >= y0) & (cy <= y1))[:, None]
    transform = (10.0, 0.0, ORIGIN[0] + 10 * col0, 0.0, -10.0, ORIGIN[1] - 10 * row0)
    return np.where(inside, values, 0.0), transform


def test_download_url_zip_of_geotiffs_per_band(ee_http, scene):
    import rasterio
    from rasterio.io import MemoryFile

    ee = ee_http
    url = scene.getDownloadURL({"bands": ["B4", "B1"], "scale": 10, "region": ee.Geometry.Rectangle(list(REGION))})
    ctype, data = fetch(url)
    assert ctype == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.namelist() == ["download.B4.tif", "download.B1.tif"]
    for name, band, factor in (("download.B4.tif", "B4", 1), ("download.B1.tif", "B1", 6)):
        want, transform = expected_download(band, factor)
        with MemoryFile(zf.read(name)) as mem, mem.open() as ds:
            assert ds.crs == rasterio.crs.CRS.from_epsg(32633)
            assert tuple(ds.transform)[:6] == pytest.approx(transform)
            np.testing.assert_array_equal(ds.read(1).astype(float), want)


@pytest.mark.parametrize("fmt", ["GEO_TIFF", "NPY", "ZIPPED_GEO_TIFF"])
def test_download_url_other_formats(ee_http, scene, fmt):
    from rasterio.io import MemoryFile

    ee = ee_http
    region = ee.Geometry.Rectangle(list(REGION))
    url = scene.select(["B4", "B8"]).getDownloadURL({"scale": 10, "region": region, "format": fmt, "name": "crop"})
    _, data = fetch(url)
    want, transform = expected_download("B8")
    if fmt == "NPY":
        arr = np.load(io.BytesIO(data))
        assert arr.dtype.names == ("B4", "B8")
        np.testing.assert_array_equal(arr["B8"].astype(float), want)
        return
    if fmt == "ZIPPED_GEO_TIFF":
        zf = zipfile.ZipFile(io.BytesIO(data))
        assert zf.namelist() == ["crop.tif"]
        data = zf.read("crop.tif")
    with MemoryFile(data) as mem, mem.open() as ds:
        assert ds.count == 2 and ds.descriptions == ("B4", "B8")
        assert tuple(ds.transform)[:6] == pytest.approx(transform)
        np.testing.assert_array_equal(ds.read(2).astype(float), want)


def test_npy_answer_is_numpys_save_of_the_bands_with_masked_pixels_zero():
    # The answer is written a block of rows at a time (here 3, the last one short) into one buffer: byte for byte what
    # np.save writes for the structured array of the bands, masked pixels 0, integer bands rounded and clipped.
    from gee_mining.local.raster.band import Band
    from gee_mining.local.raster.image import Image
    from gee_mining.local.raster.pixels import encode_npy, pixels_writer
    from gee_mining.local.raster.pixeltype import PixelType

    rng = np.random.default_rng(3)
    shape = (300, 700)
    types = {"d": PixelType("double"), "f": PixelType("float"), "u": PixelType.int_range(0, 65535)}
    values = {"d": rng.normal(size=shape), "f": rng.normal(size=shape), "u": rng.uniform(-10, 70000, shape)}
    masks = {"d": rng.random(shape) < 0.2, "f": np.zeros(shape, bool), "u": rng.random(shape) < 0.1}
    image = Image([Band(n, t, None, None, None) for n, t in types.items()])
    arrays = {n: np.ma.MaskedArray(values[n], masks[n]) for n in types}
    got = encode_npy(image, shape, {n: pixels_writer(a, types[n].numpy_dtype()) for n, a in arrays.items()})
    want = np.zeros(shape, [("d", "<f8"), ("f", "<f4"), ("u", "<u2")])
    for n in ("d", "f"):
        want[n] = np.where(masks[n], 0, values[n])
    want["u"] = np.clip(np.round(np.where(masks["u"], 0, values["u"])), 0, 65535)
    buf = io.BytesIO()
    np.save(buf, want)
    assert got == buf.getvalue()


def _npy_answer(kept, shape, seed):
    """An NPY answer of two bands written through ``kept``, and np.save's bytes of the same bands."""
    from gee_mining.local.raster.band import Band
    from gee_mining.local.raster.image import Image
    from gee_mining.local.raster.pixels import encode_npy, pixels_writer
    from gee_mining.local.raster.pixeltype import PixelType

    rng = np.random.default_rng(seed)
    image = Image([Band(n, PixelType(t), None, None, None) for n, t in (("a", "double"), ("b", "float"))])
    values = {n: rng.normal(size=shape) for n in ("a", "b")}
    writers = {
        b.name: pixels_writer(np.ma.MaskedArray(values[b.name]), b.pixel_type.numpy_dtype()) for b in image.bands
    }
    got = encode_npy(image, shape, writers, kept)
    want = np.zeros(shape, [("a", "<f8"), ("b", "<f4")])
    for n, v in values.items():
        want[n] = v
    buf = io.BytesIO()
    np.save(buf, want)
    return got, buf.getvalue()


def test_npy_answers_are_numpys_save_and_a_kept_buffer_is_reused_only_once_its_answer_is_dropped():
    # Answers are handed over without a copy (a read-only view of the buffer), so a buffer may be written again
    # only when nothing refers to its last answer: answers held stay np.save's bytes while others are written.
    from gee_mining.local.raster.pixels import AnswerBuffers

    kept = AnswerBuffers(max_bytes=200_000, keep=2)
    first, first_want = _npy_answer(kept, (90, 110), 1)
    held = np.frombuffer(first, np.uint8)  # what a reader keeps of the first answer: a view, no copy
    del first
    second, second_want = _npy_answer(kept, (40, 30), 2)  # the first buffer is still referred to: fresh memory
    assert not np.shares_memory(np.frombuffer(second, np.uint8), held)
    assert len(kept) == 2 and held.tobytes() == first_want and second == second_want
    with pytest.raises(ValueError, match="read-only"):
        held[0] = 1
    third, third_want = _npy_answer(kept, (20, 30), 3)  # nothing free: the third is fresh memory, not kept
    assert len(kept) == 2 and held.tobytes() == first_want and second == second_want and third == third_want
    address = held.__array_interface__["data"][0]
    del held
    fourth, fourth_want = _npy_answer(kept, (50, 60), 4)  # written in the first answer's buffer, now free
    assert np.frombuffer(fourth, np.uint8).__array_interface__["data"][0] == address
    assert fourth == fourth_want and second == second_want and third == third_want
    big, big_want = _npy_answer(kept, (150, 170), 5)  # over max_bytes: fresh memory, never kept
    assert big == big_want and len(big) > kept.max_bytes and len(kept) == 2
    kept.clear()
    assert len(kept) == 0 and fourth == fourth_want  # an answer held keeps its memory


def test_a_failed_answer_frees_its_kept_buffer():
    from gee_mining.local.raster.pixels import AnswerBuffers

    kept = AnswerBuffers(max_bytes=1000, keep=1)
    kept.write(100, lambda a: a.fill(1))  # dropped at once: its buffer is free
    with pytest.raises(RuntimeError):
        kept.write(50, lambda a: (_ for _ in ()).throw(RuntimeError("boom")))
    answer = kept.write(80, lambda a: a.fill(7))
    assert len(kept) == 1 and bytes(answer) == bytes([7]) * 80


def test_an_npy_answer_held_in_process_is_not_overwritten_by_the_next_request(ee_local):
    # In-process the engine's answer reaches the caller without a copy (compute_npy reads it as a view): a later
    # request may write in an answer's memory only once the caller has dropped it. Even answers are held, odd ones
    # dropped at once: each even answer after the first is written where the odd one before it was.
    from gee_mining.io.pixels import compute_npy

    ee = ee_local
    image = ee.Image.pixelCoordinates("EPSG:32633")
    base = native_grid(width=40, height=30)
    held, addresses = {}, []
    for k in range(6):
        grid = {**base, "affineTransform": {**base["affineTransform"], "translateX": ORIGIN[0] + 400 * k}}
        got = compute_npy({"expression": image, "grid": grid})
        addresses.append(got.__array_interface__["data"][0])
        if k % 2 == 0:
            held[k] = got
        del got
    for k, got in held.items():
        x = ORIGIN[0] + 400 * k + 10 * np.arange(40) + 5  # pixel centres
        np.testing.assert_array_equal(got["x"], np.broadcast_to(x, (30, 40)))
    assert addresses[2] == addresses[1] and addresses[4] == addresses[3]  # reused once dropped
    assert len(set(addresses[0::2])) == 3  # never while held


def test_a_larger_answer_replaces_a_free_kept_buffer_behind_a_held_one():
    # The pool is full: a held answer's buffer, then a free one; a larger fresh answer takes the free one's place.
    # (Kept buffers of different sizes were once compared elementwise while the free one was looked up: "operands
    # could not be broadcast together", an internal error of computePixels after other requests.)
    from gee_mining.local.raster.pixels import AnswerBuffers

    kept = AnswerBuffers(max_bytes=10_000, keep=2)
    held = kept.write(1000, lambda a: a.fill(1))
    dropped = kept.write(2000, lambda a: a.fill(2))
    del dropped
    larger = kept.write(3000, lambda a: a.fill(3))
    assert len(kept) == 2 and bytes(held) == bytes([1]) * 1000 and bytes(larger) == bytes([3]) * 3000
    sizes = sorted(k.buffer.size for k in kept._kept)
    assert sizes == [1000, 3000]

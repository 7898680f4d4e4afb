"""Map tiles: getMapId, then 256x256 Web Mercator tiles over HTTP, fetched the way geemap does.

Docs checked: "ee.Image.getMapId" / "ee.data.getMapId" (the visualisation
parameters wrap the image in Image.visualize; the answer's tile_fetcher
formats tile URLs), REST "projects.maps.create" and "projects.maps.tiles.get"
(tiles by zoom, x, y), REST "ImageFileFormat" (AUTO_JPEG_PNG: JPEG or PNG
depending on whether any pixel is transparent).

The reference for a tile is independent of the engine: the XYZ tile's bounds
in EPSG:3857 from the spherical Mercator formulas, rasterio.warp.reproject of
the real L1C crop onto that grid with nearest resampling, then the stretch in
numpy.
"""

from __future__ import annotations

import io
import math
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.conftest import shared_file

L1C = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
FILES = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08"}
HALF_WORLD = math.pi * 6378137.0  # EPSG:3857 spans [-HALF_WORLD, HALF_WORLD] in x and y


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a point (slippy-map tile names)."""
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def tile_transform(z: int, x: int, y: int):
    from rasterio.transform import Affine

    span = 2 * HALF_WORLD / 2**z
    return Affine(span / 256, 0, -HALF_WORLD + x * span, 0, -span / 256, HALF_WORLD - y * span)


def reference_tile(band: str, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """The band reprojected onto the tile (nearest), and where the tile has data."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    path = shared_file(f"imagery/s2_l1c_T33UUU_20170216/T33UUU_20170216T102101_{FILES[band]}.jp2")
    with rasterio.open(path) as ds:
        src = ds.read(1).astype(np.float64)
        dst = np.full((256, 256), np.nan)
        reproject(
            src, dst, src_transform=ds.transform, src_crs=ds.crs, src_nodata=None,
            dst_transform=tile_transform(z, x, y), dst_crs="EPSG:3857", dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )  # fmt: skip
    valid = np.isfinite(dst)
    return np.where(valid, dst, 0.0), valid


def stretch(x, lo, hi):
    return np.floor(np.clip((x - lo) / (hi - lo), 0, 1) * 255 + 0.5)


def fetch(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.headers["Content-Type"], r.read()


def decode(data: bytes):
    from PIL import Image as PILImage

    im = PILImage.open(io.BytesIO(data))
    return im.format, np.asarray(im)


@pytest.fixture(scope="module")
def scene(ee_local):
    shared_file("imagery/s2_l1c_T33UUU_20170216")
    return ee_local.Image(L1C)


VIS = {"bands": ["B4", "B3", "B2"], "min": 0, "max": 3000}
Z = 14  # about 5.9 m of ground per pixel at 52.5 N: finer than the 10 m bands, so no pyramid level is read
INSIDE = tile_xy(12.60, 52.49, Z)  # a tile well inside the crop (12.49-12.72 E, 52.45-52.53 N)
WEST_EDGE = tile_xy(12.4943, 52.49, Z)  # a tile across the crop's western edge


def test_map_id_names_a_map_of_the_project(ee_local, scene):
    mapid = scene.getMapId(VIS)
    assert mapid["mapid"].startswith("projects/gee-mining-test/maps/")
    assert mapid["tile_fetcher"].url_format.endswith(f"/v1/{mapid['mapid']}/tiles/{{z}}/{{x}}/{{y}}")


def test_tile_over_http_matches_a_reprojection(ee_http, scene):
    x, y = INSIDE
    mapid = scene.getMapId({**VIS, "format": "png"})
    url = ee_http.data.getTileUrl(mapid, x, y, Z)  # as geemap does: then a plain HTTP GET
    assert url == mapid["tile_fetcher"].format_tile_url(x, y, Z)
    assert url.startswith("http://127.0.0.1:")
    ctype, data = fetch(url)
    fmt, rgba = decode(data)
    assert ctype == "image/png" and fmt == "PNG" and rgba.shape == (256, 256, 4)
    assert np.all(rgba[..., 3] == 255)
    for k, band in enumerate(VIS["bands"]):
        ref, valid = reference_tile(band, Z, x, y)
        assert valid.all()
        equal = rgba[..., k].astype(float) == stretch(ref, 0, 3000)
        assert equal.mean() > 0.99, f"{band}: {equal.mean():.4f} of pixels agree"


def test_tile_across_the_image_edge_is_transparent_outside(ee_http, scene):
    """AUTO_JPEG_PNG (getMapId's default) gives PNG where some pixels are transparent."""
    x, y = WEST_EDGE
    ctype, data = fetch(ee_http.data.getTileUrl(scene.getMapId(VIS), x, y, Z))
    fmt, rgba = decode(data)
    assert ctype == "image/png" and fmt == "PNG"
    ref, valid = reference_tile("B4", Z, x, y)
    assert 0.05 < valid.mean() < 0.95
    agree = (rgba[..., 3] == 255) == valid
    assert agree.mean() > 0.99
    both = valid & (rgba[..., 3] == 255)
    assert (rgba[..., 0][both].astype(float) == stretch(ref[both], 0, 3000)).mean() > 0.99


def test_opaque_tile_with_auto_format_is_jpeg(ee_http, scene):
    x, y = INSIDE
    ctype, data = fetch(ee_http.data.getTileUrl(scene.getMapId(VIS), x, y, Z))
    fmt, rgb = decode(data)
    assert ctype == "image/jpeg" and fmt == "JPEG" and rgb.shape == (256, 256, 3)
    ref, _ = reference_tile("B4", Z, x, y)
    assert np.mean(np.abs(rgb[..., 0].astype(float) - stretch(ref, 0, 3000))) < 5  # JPEG is lossy


def test_palette_tile(ee_http, scene):
    x, y = INSIDE
    mapid = scene.select("B8").getMapId({"min": 0, "max": 4000, "palette": ["000000", "00FF00"], "format": "png"})
    _, rgba = decode(fetch(ee_http.data.getTileUrl(mapid, x, y, Z))[1])
    ref, _ = reference_tile("B8", Z, x, y)
    assert (rgba[..., 1].astype(float) == stretch(ref, 0, 4000)).mean() > 0.99
    assert np.all(rgba[..., 0] == 0) and np.all(rgba[..., 2] == 0)


def test_tile_outside_the_image_is_fully_transparent(ee_http, scene):
    x, y = tile_xy(-60.0, -10.0, Z)
    fmt, rgba = decode(fetch(ee_http.data.getTileUrl(scene.getMapId(VIS), x, y, Z))[1])
    assert fmt == "PNG" and np.all(rgba[..., 3] == 0)


def test_world_tile_of_a_constant(ee_http):
    mapid = ee_http.Image.constant(1).getMapId({"min": 0, "max": 1, "palette": ["black", "orange"]})
    fmt, rgb = decode(fetch(ee_http.data.getTileUrl(mapid, 0, 0, 0))[1])
    assert fmt == "JPEG" and rgb.shape == (256, 256, 3)
    assert np.all(np.abs(rgb.astype(int) - (255, 165, 0)) <= 2)  # CSS orange is #FFA500


@pytest.mark.parametrize("z, x, y, code", [(3, 8, 0, 404), (3, 0, 8, 404), (31, 0, 0, 400)])
def test_tiles_out_of_range(ee_http, scene, z, x, y, code):
    mapid = scene.getMapId(VIS)
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(mapid["tile_fetcher"].url_format.format(x=x, y=y, z=z))  # format_tile_url would wrap x
    assert e.value.code == code


def test_unknown_map_is_404(ee_http, scene):
    url = scene.getMapId(VIS)["tile_fetcher"].format_tile_url(0, 0, 0)
    bad = url.replace("/maps/", "/maps/0123456789abcdef")
    bad = bad[: bad.index("/maps/") + len("/maps/0123456789abcdef")] + "/tiles/0/0/0"
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(bad)
    assert e.value.code == 404


def test_map_errors_surface_at_creation(ee_local, scene):
    import ee

    with pytest.raises(ee.EEException, match="palette"):
        scene.getMapId({"bands": ["B4", "B3", "B2"], "palette": ["red", "blue"]})

"""Xee (``xarray.open_dataset(..., engine="ee")``) on the local engine, through ``gee_mining.connect``.

Xee reads an ImageCollection with one ``getInfo`` (size, properties, first image's bands) and then
``computePixels`` per chunk, each chunk stacking a chunk's images with ``Image.addBands`` into one image whose
bands share a name (Earth Engine renames them ``B4``, ``B4_1``...: "Image.addBands", argument ``overwrite``).
The references are independent of Xee: ``ee.data.computePixels`` of each image on the same grid, and the
GeoTIFF of a batch export read with rasterio. The world is SIMULATED (a 1 km world of one month).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import finished_task

xr = pytest.importorskip("xarray")
xee = pytest.importorskip("xee")
rasterio = pytest.importorskip("rasterio")

S2 = "COPERNICUS/S2_SR_HARMONIZED"
BANDS = ["B4", "B11"]  # 10 m and 20 m bands: Xee reads them all on one 10 m grid


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory, engine_catalog):
    """A 1 km, one-month simulated world (about 1 s to write); its catalog path."""
    from gee_mining.world import generate_world, world_catalog_toml

    out = tmp_path_factory.mktemp("xee_world")
    generate_world(out / "world", size_km=1, months=1, seed=5, project="gee-mining-test")
    catalog = out / "catalog.toml"
    catalog.write_text(world_catalog_toml(out / "world"))
    return catalog


@pytest.fixture
def ee_world(tiny_world, tmp_path):
    """``ee`` connected to the tiny world; the connection (the conftest connects back afterwards)."""
    import ee

    import gee_mining

    conn = gee_mining.connect("local", project="gee-mining-test", catalog=tiny_world, storage_root=tmp_path)
    return ee, conn


def _grid(crs: str, transform: tuple, shape: tuple[int, int]) -> dict:
    a, b, c, d, e, f = transform
    return {
        "dimensions": {"width": shape[0], "height": shape[1]},
        "affineTransform": {"scaleX": a, "shearX": b, "translateX": c, "shearY": d, "scaleY": e, "translateY": f},
        "crsCode": crs,
    }


def _compute_pixels(ee, image, params: dict) -> dict[str, np.ma.MaskedArray]:
    """Each band of ``image`` on Xee's grid by ``computePixels``, masked where the image is masked."""
    grid = _grid(params["crs"], tuple(params["crs_transform"]), tuple(params["shape_2d"]))
    values = ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid})
    mask = ee.data.computePixels({"expression": image.mask(), "fileFormat": "NUMPY_NDARRAY", "grid": grid})
    return {n: np.ma.masked_array(values[n].astype(np.float64), mask[n] == 0) for n in values.dtype.names}


@pytest.mark.slow  # a site build / Chromium / every pixel of a collection: more than a few seconds
def test_a_collection_opens_with_xee_and_every_pixel_equals_compute_pixels(ee_world):
    ee, _ = ee_world
    collection = ee.ImageCollection(S2).select(BANDS)
    params = xee.helpers.extract_grid_params(collection)
    assert params["crs"].startswith("EPSG:327") and tuple(params["crs_transform"])[0] == 10

    ds = xr.open_dataset(collection, engine="ee", **params).load()  # one chunk: all images stacked by addBands
    ids = collection.aggregate_array("system:index").getInfo()
    times = collection.aggregate_array("system:time_start").getInfo()
    assert list(ds.data_vars) == BANDS and ds.sizes["time"] == len(ids) >= 2
    assert [t.astype("datetime64[ms]").astype(int) for t in ds.time.values] == times
    width, height = params["shape_2d"]
    assert (ds.sizes["x"], ds.sizes["y"]) == (width, height)
    # Coordinates are pixel centres of the grid.
    a, _, c, _, e, f = params["crs_transform"]
    np.testing.assert_allclose(ds.x.values[[0, -1]], [c + a / 2, c + a * (width - 0.5)])
    np.testing.assert_allclose(ds.y.values[[0, -1]], [f + e / 2, f + e * (height - 0.5)])

    for t, image_id in enumerate(ids):
        reference = _compute_pixels(ee, collection.filter(ee.Filter.eq("system:index", image_id)).first(), params)
        for band in BANDS:
            got = ds[band].isel(time=t).values
            want = reference[band]
            np.testing.assert_array_equal(np.isnan(got), np.ma.getmaskarray(want), err_msg=f"{image_id} {band}")
            np.testing.assert_array_equal(got[~np.isnan(got)], want.compressed(), err_msg=f"{image_id} {band}")


def test_masked_pixels_read_as_nan(ee_world):
    ee, _ = ee_world
    params = xee.helpers.extract_grid_params(ee.ImageCollection(S2).select(["B4"]))
    collection = ee.ImageCollection(S2).select(["B4"]).map(lambda im: im.updateMask(im.gt(2000)))
    ds = xr.open_dataset(collection, engine="ee", **params).load()
    raw = _compute_pixels(ee, ee.ImageCollection(S2).first().select(["B4"]), params)["B4"]
    got = ds.B4.isel(time=0).values
    expected_masked = raw.filled(0) <= 2000
    assert 0 < expected_masked.sum() < expected_masked.size  # the test sees masked and unmasked pixels
    np.testing.assert_array_equal(np.isnan(got), expected_masked)
    np.testing.assert_array_equal(got[~expected_masked], raw.filled(0)[~expected_masked])


def test_a_masked_collection_keeps_the_grid_xee_reads(ee_world):
    """Earth Engine's "Image.updateMask" and "Image.unmask" pages: the output "retains the metadata and footprint
    of the input image". Xee's ``extract_grid_params`` reads the first image's band ``dimensions``; a cloud-masked
    collection (the usual input) has the grid of the unmasked one, and ``unmask(sameFootprint=false)`` has none."""
    ee, _ = ee_world
    raw = ee.ImageCollection(S2).select(["B4", "B11"])
    want = xee.helpers.extract_grid_params(raw)
    masked = raw.map(lambda im: im.updateMask(im.select("B4").gt(2000)))
    assert xee.helpers.extract_grid_params(masked) == want
    assert xee.helpers.extract_grid_params(masked.map(lambda im: im.unmask(0))) == want
    bands = masked.first().unmask(0, False).getInfo()["bands"]
    assert all("dimensions" not in b for b in bands)  # a footprint extended to the whole world
    ds = xr.open_dataset(masked, engine="ee", **want)
    assert ds.sizes["x"] == want["shape_2d"][0] and int(np.isnan(ds.B4.isel(time=0).values).sum()) > 0


def test_a_lon_lat_grid_from_a_geometry_equals_compute_pixels(ee_world):
    """Resampled onto EPSG:4326 (``xee.helpers.fit_geometry``): Xee and computePixels read the same pixels."""
    ee, _ = ee_world
    shapely = pytest.importorskip("shapely")
    collection = ee.ImageCollection(S2).select(["B8"])
    bounds = collection.first().geometry().bounds().getInfo()["coordinates"][0]
    lons, lats = [p[0] for p in bounds], [p[1] for p in bounds]
    box = shapely.box(min(lons), min(lats), max(lons), max(lats)).buffer(-0.002)
    params = xee.helpers.fit_geometry(box, grid_crs="EPSG:4326", grid_scale=(0.0001, -0.0001))
    ds = xr.open_dataset(collection, engine="ee", **params)
    assert ds.sizes["x"] == params["shape_2d"][0] > 50
    got = ds.B8.isel(time=0).values
    want = _compute_pixels(ee, collection.first(), params)["B8"]
    np.testing.assert_array_equal(got, want.filled(np.nan))


def test_xee_pixels_equal_a_batch_export_read_with_rasterio(ee_world):
    ee, conn = ee_world
    image = ee.ImageCollection(S2).select(BANDS).first()
    params = xee.helpers.extract_grid_params(image)
    width, height = params["shape_2d"]
    task = ee.batch.Export.image.toCloudStorage(
        image.toFloat(),
        description="xee_reference",
        bucket="xee-test",
        fileNamePrefix="xee/first",
        crs=params["crs"],
        crsTransform=list(params["crs_transform"]),
        dimensions=f"{width}x{height}",
    )
    task.start()
    assert finished_task(task)["state"] == "COMPLETED", task.status()
    path = conn.storage_root / "xee-test" / "xee" / "first.tif"
    with rasterio.open(path) as src:
        exported = src.read().astype(np.float64)
        assert src.crs.to_string() == params["crs"]
        assert tuple(src.transform)[:6] == tuple(float(v) for v in params["crs_transform"])
    ds = xr.open_dataset(ee.ImageCollection([image]), engine="ee", **params)
    for i, band in enumerate(BANDS):
        np.testing.assert_array_equal(ds[band].isel(time=0).values, exported[i], err_msg=band)


def test_add_bands_renames_a_clashing_band_with_a_numerical_suffix(ee_local):
    """Earth Engine's "Image.addBands" (overwrite false): "the new band will be renamed with a numerical suffix
    (`foo` to `foo_1` unless `foo_1` exists, then `foo_2`...)"; its ee.Image.constant page prints
    ``ee.Image([0xff, 0x88, 0x00])`` as bands constant, constant_1, constant_2. Xee stacks images this way."""
    ee = ee_local
    assert ee.Image([0xFF, 0x88, 0x00]).bandNames().getInfo() == ["constant", "constant_1", "constant_2"]
    img = ee.Image(1).rename("foo").addBands(ee.Image(2).rename("foo_1")).addBands(ee.Image(3).rename("foo"))
    assert img.bandNames().getInfo() == ["foo", "foo_1", "foo_2"]
    assert img.addBands(ee.Image(4).rename("foo"), None, True).bandNames().getInfo() == ["foo", "foo_1", "foo_2"]
    grid = _grid("EPSG:4326", (1, 0, 0, 0, -1, 1), (1, 1))
    px = ee.data.computePixels({"expression": img.toInt32(), "fileFormat": "NUMPY_NDARRAY", "grid": grid})
    assert [int(px[n][0, 0]) for n in px.dtype.names] == [1, 2, 3]

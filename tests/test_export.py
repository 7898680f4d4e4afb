"""Batch exports through the real ``ee`` client into an EMULATED Cloud Storage bucket.

The engine runs with ``storage="emulator"``: a ``gcp-storage-emulator`` on
127.0.0.1; files are read back with the official ``google-cloud-storage``
client, GeoTIFFs with rasterio, TFRecords with tensorflow's ``tf.data``, and
compared with ``ee.data.computePixels`` on the same grid and with the
Sentinel-2 file itself.

Earth Engine documents what is checked: "Exporting Images" / Export.image.toCloudStorage
(file naming, fileDimensions, maxPixels), the REST reference "ImageFileExportOptions"
(GeoTiffImageExportOptions, TfRecordImageExportOptions) and the guide "TFRecord and
Earth Engine" (patches, kernelSize buffering, the mixer sidecar).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time

import numpy as np
import pytest
from conftest import finished_task, shared_file

S2 = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
L1C_B04 = "imagery/s2_l1c_T33UUU_20170216/T33UUU_20170216T102101_B04.jp2"
# The L1C crop's 10 m grid starts at (330000, 5822040); the export grid starts 200 px right, 100 px down.
X0, Y0 = 330000 + 10 * 200, 5822040 - 10 * 100
SIZE = 550
BANDS = ["B4", "B3", "B2"]


@pytest.fixture(scope="module")
def emulated(ee_local, engine_catalog, tmp_path_factory):
    """``ee`` against an engine whose Cloud Storage is the emulator; (ee, engine)."""
    import gee_mining

    conn = gee_mining.connect(
        "local",
        project="gee-mining-test",
        catalog=engine_catalog,
        storage_root=tmp_path_factory.mktemp("emulated"),
        storage="emulator",
    )
    yield ee_local, conn.local_engine
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


def _image(ee):
    shared_file(L1C_B04)
    return ee.Image(S2).select(BANDS)


def _export(ee, image, prefix, bucket="exports", **kwargs):
    task = ee.batch.Export.image.toCloudStorage(
        image,
        description=prefix.replace("/", "_"),
        bucket=bucket,
        fileNamePrefix=prefix,
        crs="EPSG:32633",
        crsTransform=[10, 0, X0, 0, -10, Y0],
        dimensions=f"{SIZE}x{SIZE}",
        **kwargs,
    )
    task.start()
    return task


def _reference(ee, image, x0=X0, y0=Y0, width=SIZE, height=SIZE) -> np.ndarray:
    """computePixels on a 10 m grid of EPSG:32633: (bands, rows, cols) float64."""
    out = ee.data.computePixels(
        {
            "expression": image,
            "fileFormat": "NUMPY_NDARRAY",
            "grid": {
                "dimensions": {"width": width, "height": height},
                "affineTransform": {
                    "scaleX": 10,
                    "shearX": 0,
                    "translateX": x0,
                    "shearY": 0,
                    "scaleY": -10,
                    "translateY": y0,
                },
                "crsCode": "EPSG:32633",
            },
        }
    )
    return np.stack([out[n].astype(np.float64) for n in out.dtype.names])


def _blobs(engine, bucket, prefix):
    return sorted(b.name for b in engine.storage_client().list_blobs(bucket, prefix=prefix))


def _download(engine, bucket, name) -> bytes:
    return engine.storage_client().bucket(bucket).blob(name).download_as_bytes()


# -- GeoTIFF ----------------------------------------------------------------------------


def test_cog_export_lands_in_the_emulated_bucket_and_equals_compute_pixels(emulated):
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.windows import Window

    ee, engine = emulated
    image = _image(ee)
    task = _export(ee, image, "cog/s2", formatOptions={"cloudOptimized": True})
    status = finished_task(task)
    assert status["state"] == "COMPLETED", status
    assert status["destination_uris"] == ["gs://exports/cog/s2.tif"]
    assert _blobs(engine, "exports", "cog/") == ["cog/s2.tif"]
    data = _download(engine, "exports", "cog/s2.tif")
    with MemoryFile(data) as mem, mem.open() as ds:
        assert (ds.width, ds.height, ds.count) == (SIZE, SIZE, 3)
        assert ds.crs.to_epsg() == 32633
        assert tuple(ds.transform)[:6] == (10, 0, X0, 0, -10, Y0)
        assert ds.dtypes == ("uint16",) * 3  # the bands' pixel type (uint16 DN)
        assert ds.descriptions == tuple(BANDS)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.overviews(1), "a cloud-optimized GeoTIFF carries overviews"
        assert ds.block_shapes[0] == (256, 256)
        got = ds.read().astype(np.float64)
    np.testing.assert_array_equal(got, _reference(ee, image))
    # and equal to the Sentinel-2 file itself (B4 is native 10 m on this lattice)
    with rasterio.open(shared_file(L1C_B04)) as src:
        row, col = src.index(X0 + 5, Y0 - 5)
        raw = src.read(1, window=Window(col, row, SIZE, SIZE))
    np.testing.assert_array_equal(got[0], raw)


def test_geotiff_file_dimensions_shard_with_earth_engine_names(emulated):
    """fileDimensions=256 on 550x550 px: 3x3 files named PREFIX-<row offset>-<col offset>.tif."""
    from rasterio.io import MemoryFile

    ee, engine = emulated
    image = _image(ee).select(["B4"])
    status = finished_task(_export(ee, image, "shards/b4", fileDimensions=256))
    assert status["state"] == "COMPLETED", status
    offsets = [0, 256, 512]
    expected = [f"shards/b4-{r:010d}-{c:010d}.tif" for r in offsets for c in offsets]
    assert _blobs(engine, "exports", "shards/") == sorted(expected)
    assert sorted(status["destination_uris"]) == sorted(f"gs://exports/{n}" for n in expected)
    mosaic = np.zeros((SIZE, SIZE))
    for r in offsets:
        for c in offsets:
            with MemoryFile(_download(engine, "exports", f"shards/b4-{r:010d}-{c:010d}.tif")) as mem, mem.open() as ds:
                assert ds.width == min(256, SIZE - c) and ds.height == min(256, SIZE - r)
                assert tuple(ds.transform)[:6] == (10, 0, X0 + 10 * c, 0, -10, Y0 - 10 * r)
                assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG"
                mosaic[r : r + ds.height, c : c + ds.width] = ds.read(1)
    np.testing.assert_array_equal(mosaic, _reference(ee, image)[0])


def test_file_dimensions_must_be_a_multiple_of_the_shard_size(emulated):
    # Export.image.toCloudStorage: fileDimensions "Must be a multiple of shardSize".
    ee, _ = emulated
    with pytest.raises(ee.EEException, match=r"fileDimensions \(300x300\) must be a multiple of shardSize \(256\)"):
        _export(ee, _image(ee), "bad/dims", fileDimensions=300)


def test_no_data_value_marks_masked_pixels(emulated):
    from rasterio.io import MemoryFile

    ee, engine = emulated
    image = _image(ee).select(["B4"])
    masked = image.updateMask(image.gt(1500))
    status = finished_task(_export(ee, masked, "nodata/b4", formatOptions={"noData": 7}))
    assert status["state"] == "COMPLETED", status
    ref = _reference(ee, image)[0]
    with MemoryFile(_download(engine, "exports", "nodata/b4.tif")) as mem, mem.open() as ds:
        assert ds.nodata == 7
        got = ds.read(1)
    np.testing.assert_array_equal(got, np.where(ref > 1500, ref, 7))


def test_integer_bands_widen_and_float_with_integer_is_refused(emulated):
    """GeoTIFF bands share one type; Earth Engine refuses mixed float/integer bands with
    "Exported bands must have compatible data types; found inconsistent types: ..."
    (the error users report, e.g. geemap issue #87)."""
    from rasterio.io import MemoryFile

    ee, engine = emulated
    b4 = _image(ee).select(["B4"])
    status = finished_task(_export(ee, b4.addBands(ee.Image.constant(-3)), "types/ints"))
    assert status["state"] == "COMPLETED", status
    with MemoryFile(_download(engine, "exports", "types/ints.tif")) as mem, mem.open() as ds:
        assert ds.dtypes == ("int32", "int32")  # uint16 and a negative constant: int32 holds both
        assert (ds.read(2) == -3).all()
    status = finished_task(_export(ee, b4.addBands(ee.Image.constant(0.5)), "types/mixed"))
    assert status["state"] == "FAILED"
    assert (
        "Exported bands must have compatible data types; found inconsistent types: UInt16 and Float32"
        in (status["error_message"])
    )
    assert _blobs(engine, "exports", "types/mixed") == []


def test_max_pixels_error(emulated):
    # Export.image.toCloudStorage: "maxPixels: Restrict the number of pixels in the export."
    ee, engine = emulated
    status = finished_task(_export(ee, _image(ee), "big/s2", maxPixels=1000))
    assert status["state"] == "FAILED"
    assert status["error_message"].startswith(
        f"Export too large: specified {SIZE * SIZE} pixels (max: 1000). Specify higher maxPixels value"
    )
    assert _blobs(engine, "exports", "big/") == []


def test_region_and_scale_export(emulated):
    """crs + scale + region: the grid of the CRS at that scale covering the region."""
    from rasterio.io import MemoryFile

    ee, engine = emulated
    image = _image(ee).select(["B4"])
    region = ee.Geometry.Rectangle([X0, Y0 - 1000, X0 + 1500, Y0], ee.Projection("EPSG:32633"), False)
    task = ee.batch.Export.image.toCloudStorage(
        image,
        description="scaled",
        bucket="exports",
        fileNamePrefix="scaled/b4",
        crs="EPSG:32633",
        scale=20,
        region=region,
    )
    task.start()
    status = finished_task(task)
    assert status["state"] == "COMPLETED", status
    with MemoryFile(_download(engine, "exports", "scaled/b4.tif")) as mem, mem.open() as ds:
        assert (ds.width, ds.height) == (75, 50)
        assert tuple(ds.transform)[:6] == (20, 0, X0, 0, -20, Y0)


# -- TFRecord ----------------------------------------------------------------------------


def _tf():
    os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="keras-"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow", reason="tensorflow (the `tf` extra) reads TFRecords back")


@pytest.mark.slow  # tensorflow
@pytest.mark.parametrize("kernel", [0, 32])
def test_tfrecord_patches_read_back_with_tf_data(emulated, tmp_path, kernel):
    """patchDimensions 256 on 550x550 px: 2x2 patches (the border patches that do not fit are
    dropped), each (256 + kernelSize)^2 floats per band, buffered kernelSize/2 on each side."""
    tf = _tf()
    ee, engine = emulated
    image = _image(ee)
    options = {"patchDimensions": [256, 256], "compressed": True}
    if kernel:
        options["kernelSize"] = [kernel, kernel]
    prefix = f"tfr{kernel}/s2"
    status = finished_task(_export(ee, image, prefix, fileFormat="TFRecord", formatOptions=options))
    assert status["state"] == "COMPLETED", status
    names = _blobs(engine, "exports", f"tfr{kernel}/")
    assert names == [f"{prefix}-00000.tfrecord.gz", f"{prefix}-mixer.json"]
    mixer = json.loads(_download(engine, "exports", f"{prefix}-mixer.json"))
    assert mixer == {
        "projection": {"crs": "EPSG:32633", "affine": {"doubleMatrix": [10.0, 0.0, X0, 0.0, -10.0, Y0]}},
        "patchDimensions": [256, 256],
        "patchesPerRow": 2,
        "totalPatches": 4,
    }
    path = tmp_path / "p.tfrecord.gz"
    path.write_bytes(_download(engine, "exports", f"{prefix}-00000.tfrecord.gz"))
    side = 256 + kernel
    spec = {b: tf.io.FixedLenFeature([side, side], tf.float32) for b in BANDS}
    dataset = tf.data.TFRecordDataset([str(path)], compression_type="GZIP").map(
        lambda r: tf.io.parse_single_example(r, spec)
    )
    patches = [{b: p[b].numpy() for b in BANDS} for p in dataset]
    assert len(patches) == 4
    m = kernel // 2
    ref = _reference(ee, image, X0 - 10 * m, Y0 + 10 * m, SIZE + 2 * m, SIZE + 2 * m)  # the region plus margins
    for k, patch in enumerate(patches):
        r, c = divmod(k, 2)
        for i, band in enumerate(BANDS):
            expected = ref[i, r * 256 : r * 256 + side, c * 256 : c * 256 + side]
            got = patch[band]
            # margins outside the export region are outside its clip: compare inside only
            inside = np.zeros((side, side), dtype=bool)
            rows = np.arange(side) + r * 256 - m
            cols = np.arange(side) + c * 256 - m
            inside[np.ix_((rows >= 0) & (rows < SIZE), (cols >= 0) & (cols < SIZE))] = True
            np.testing.assert_array_equal(got[inside], expected[inside].astype(np.float32))


def test_tfrecord_max_file_size_shards_files(emulated):
    """maxFileSize (bytes before compression) splits the patches over PREFIX-00000.tfrecord, -00001, ..."""
    from gee_mining.local.service.tfrecord import decode_example, read_records

    ee, engine = emulated
    image = _image(ee).select(["B4"])
    options = {"patchDimensions": [128, 128], "maxFileSize": 2 * 128 * 128 * 4 + 200}
    status = finished_task(_export(ee, image, "small/b4", fileFormat="TFRecord", formatOptions=options))
    assert status["state"] == "COMPLETED", status
    names = _blobs(engine, "exports", "small/")
    assert names == [f"small/b4-{i:05d}.tfrecord" for i in range(8)] + ["small/b4-mixer.json"]  # 16 patches, 2 a file
    ref = _reference(ee, image)[0]
    k = 0
    for name in names[:-1]:
        for record in read_records(_download(engine, "exports", name)):
            r, c = divmod(k, 4)
            got = decode_example(record)["B4"].reshape(128, 128)
            np.testing.assert_array_equal(got, ref[r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128])
            k += 1
    assert k == 16


# -- operations: cancel, failure ---------------------------------------------------------------


def test_cancel_mid_run_leaves_nothing(emulated):
    ee, engine = emulated
    # small shards make many tiles: the cancel flag is checked between them
    task = _export(ee, _image(ee), "cancelled/s2", shardSize=16)
    seen = []
    deadline = time.time() + 30
    while time.time() < deadline:
        meta = ee.data.getOperation(task.operation_name)["metadata"]
        seen.append(meta.get("progress"))
        if meta["state"] == "RUNNING" and (meta.get("progress") or 0) > 0:
            break
        time.sleep(0.01)
    assert 0 < seen[-1] < 1, seen
    task.cancel()
    status = finished_task(task)
    assert status["state"] == "CANCELLED"
    assert _blobs(engine, "exports", "cancelled/") == []


def test_failure_carries_its_error(emulated):
    shared_file("imagery")
    ee, engine = emulated
    task = _export(ee, ee.Image("projects/gee-mining-test/assets/no_such_image"), "failed/x")
    status = finished_task(task)
    assert status["state"] == "FAILED"
    assert "not found" in status["error_message"].lower()
    assert _blobs(engine, "exports", "failed/") == []


def test_to_asset_is_refused_clearly(emulated):
    ee, _ = emulated
    task = ee.batch.Export.image.toAsset(
        _image(ee), description="asset", assetId="projects/gee-mining-test/assets/out", scale=10
    )
    with pytest.raises(ee.EEException, match="toAsset is not supported by the local engine"):
        task.start()


def test_drive_export_lands_in_the_local_drive_folder(emulated):
    ee, engine = emulated
    task = ee.batch.Export.image.toDrive(
        _image(ee).select(["B4"]),
        description="drive",
        folder="results",
        fileNamePrefix="b4",
        crs="EPSG:32633",
        crsTransform=[10, 0, X0, 0, -10, Y0],
        dimensions="64x32",
    )
    task.start()
    status = finished_task(task)
    assert status["state"] == "COMPLETED", status
    path = engine.storage_root / "drive" / "results" / "b4.tif"
    assert path.is_file() and status["destination_uris"] == [path.resolve().as_uri()]


# -- tables ----------------------------------------------------------------------------


def test_table_export_to_the_emulated_bucket(emulated):
    ee, engine = emulated
    fc = ee.FeatureCollection("projects/gee-mining-test/assets/squares")
    task = ee.batch.Export.table.toCloudStorage(fc, description="sq", bucket="tables", fileNamePrefix="t/squares")
    task.start()
    status = finished_task(task)
    assert status["state"] == "COMPLETED", status
    assert status["destination_uris"] == ["gs://tables/t/squares.csv"]
    rows = list(csv.DictReader(io.StringIO(_download(engine, "tables", "t/squares.csv").decode())))
    expected = json.loads((__import__("pathlib").Path(__file__).parent / "data" / "squares.geojson").read_text())
    assert len(rows) == len(expected["features"])
    assert list(rows[0])[0] == "system:index" and list(rows[0])[-1] == ".geo"
    for row, feature in zip(rows, expected["features"], strict=True):
        assert json.loads(row[".geo"])["type"] == feature["geometry"]["type"]

"""Image collections: loading, filters on real items, composites, mosaics, joins.

References are independent: scene metadata read from the BigEarthNet JSON
files, patch bounds from rasterio and pyproj, and numpy reductions over pixel
stacks read straight from the Level-1C JPEG2000 files with rasterio. Each test
cites the Earth Engine page whose behaviour it checks.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from conftest import SHARED_DATA, finished_task, l1c_grid, shared_file

L1C_ID = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
L1C_DIR = "imagery/s2_l1c_T33UUU_20170216"
SR = "COPERNICUS/S2_SR_HARMONIZED"
BEN_DIR = "imagery/bigearthnet_s2_l2a"
# A 40 x 24 window of the crop's 10 m lattice (EPSG:32633, origin 330000, 5822040).
COL0, ROW0, W, H = 300, 200, 40, 24
GRID = l1c_grid(COL0, ROW0, W, H)
# (band, mask threshold): the stack's image k is band k, masked where its value <= threshold.
STACK = [("B2", 1150), ("B3", 1000), ("B4", 900), ("B8", 1900), ("B2", 1250)]


def _read_window(band: str) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    path = shared_file(f"{L1C_DIR}/T33UUU_20170216T102101_{band.replace('B', 'B0') if len(band) == 2 else band}.jp2")
    with rasterio.open(path) as ds:
        assert ds.transform.a == 10 and ds.transform.c == 330000 and ds.transform.f == 5822040
        return ds.read(1, window=Window(COL0, ROW0, W, H)).astype(np.float64)


@pytest.fixture(scope="module")
def stack() -> np.ma.MaskedArray:
    """The numpy reference stack: (images, H, W), masked as the engine stack is."""
    layers = []
    for band, thr in STACK:
        x = _read_window(band)
        layers.append(np.ma.MaskedArray(x, x <= thr))
    return np.ma.stack(layers)


def _collection(ee):
    img = ee.Image(L1C_ID)
    images = [
        img.select([b]).rename("x").updateMask(img.select(b).gt(thr)).set("system:index", f"{i}")
        for i, (b, thr) in enumerate(STACK)
    ]
    return ee.ImageCollection.fromImages(images)


def _pixels(ee, image, grid=GRID) -> np.ndarray:
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid})


def _masked(ee, image, band: str, grid=GRID) -> np.ma.MaskedArray:
    """A band's values and mask (from ``Image.mask()``) on the grid."""
    values = _pixels(ee, image.select([band]), grid)[band].astype(np.float64)
    valid = _pixels(ee, image.select([band]).mask(), grid)[band]
    return np.ma.MaskedArray(values, valid == 0)


def _assert_same(got: np.ma.MaskedArray, want: np.ma.MaskedArray, rtol: float = 1e-6) -> None:
    want_mask = np.ma.getmaskarray(want)
    np.testing.assert_array_equal(np.ma.getmaskarray(got), want_mask)
    np.testing.assert_allclose(got.data[~want_mask], np.asarray(want.data, dtype=np.float64)[~want_mask], rtol=rtol)


# -- loading and the Collection algorithms on real items -------------------------------------------------


def _ben_items() -> list[dict]:
    root = SHARED_DATA / BEN_DIR
    if not root.is_dir():
        pytest.skip(f"{root} is absent: this test needs the project's shared real data")
    items = []
    for meta in sorted(root.glob("*/*_labels_metadata.json")):
        info = json.loads(meta.read_text())
        when = dt.datetime.fromisoformat(info["acquisition_date"]).replace(tzinfo=dt.UTC)
        tile = info["tile_source"].split("_T")[-1].split("_")[0]
        items.append({"folder": meta.parent, "millis": int(when.timestamp() * 1000), "tile": tile})
    return items


def test_load_sorts_by_time_and_counts_items(ee_local):
    # "ImageCollection Overview": ee.ImageCollection(id) loads the catalog's images; size() counts them.
    items = _ben_items()
    ic = ee_local.ImageCollection(SR)
    assert ic.size().getInfo() == len(items) == 6
    assert ic.aggregate_array("system:time_start").getInfo() == sorted(i["millis"] for i in items)
    info = ic.getInfo()
    assert info["type"] == "ImageCollection" and len(info["features"]) == 6
    assert all(f["type"] == "Image" for f in info["features"])


@pytest.mark.parametrize(
    ("start", "end"), [("2017-06-01", "2017-07-01"), ("2017-06-15", "2018-01-01"), ("2018-01-01", "2019-01-01")]
)
def test_filter_date_on_real_items(ee_local, start, end):
    # ee.ImageCollection.filterDate: start inclusive, end exclusive, on system:time_start.
    items = _ben_items()
    lo = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC).timestamp() * 1000
    hi = dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC).timestamp() * 1000
    want = sum(1 for i in items if lo <= i["millis"] < hi)
    assert ee_local.ImageCollection(SR).filterDate(start, end).size().getInfo() == want


def test_filter_metadata_on_mgrs_tile(ee_local):
    # ee.ImageCollection.filterMetadata(name, 'equals', value).
    items = _ben_items()
    for tile in {i["tile"] for i in items}:
        got = ee_local.ImageCollection(SR).filterMetadata("MGRS_TILE", "equals", tile)
        assert got.size().getInfo() == sum(1 for i in items if i["tile"] == tile)
        assert set(got.aggregate_array("MGRS_TILE").getInfo()) == {tile}


def test_filter_bounds_uses_the_image_footprint(ee_local):
    # ee.ImageCollection.filterBounds: "images whose footprint intersects the geometry".
    import pyproj
    import rasterio

    items = _ben_items()
    folder = items[0]["folder"]
    with rasterio.open(next(folder.glob("*_B02.tif"))) as ds:
        left, bottom, right, top = ds.bounds
        crs = ds.crs.to_string()
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
        (left + right) / 2, (bottom + top) / 2
    )
    got = ee_local.ImageCollection(SR).filterBounds(ee_local.Geometry.Point([lon, lat]))
    assert got.size().getInfo() == 1
    assert got.first().get("BIGEARTHNET_PATCH").getInfo() == folder.name
    far = ee_local.ImageCollection(SR).filterBounds(ee_local.Geometry.Point([0.0, 0.0]))
    assert far.size().getInfo() == 0


def test_map_limit_sort_first_to_list(ee_local):
    shared_file("imagery")
    # ee.ImageCollection.map returns an ImageCollection; limit/sort/first/toList as on collections.
    ic = ee_local.ImageCollection(SR)
    mapped = ic.map(lambda im: im.select(["B4", "B8"]).set("n", 1))
    info = mapped.limit(2).getInfo()
    assert info["type"] == "ImageCollection"
    assert [b["id"] for b in info["features"][0]["bands"]] == ["B4", "B8"]
    times = ic.aggregate_array("system:time_start").getInfo()
    assert ic.sort("system:time_start", False).first().get("system:time_start").getInfo() == max(times)
    assert ic.limit(3, "system:time_start").size().getInfo() == 3
    assert ee_local.List(ic.toList(10)).size().getInfo() == 6
    # ee.ImageCollection.select maps Image.select over the images.
    assert ic.select(["B2"], ["blue"]).first().bandNames().getInfo() == ["blue"]


# -- composites ---------------------------------------------------------------------------------------


def _np_mode(s: np.ma.MaskedArray) -> np.ma.MaskedArray:
    out = np.zeros(s.shape[1:])
    mask = np.zeros(s.shape[1:], dtype=bool)
    for idx in np.ndindex(*s.shape[1:]):
        vals = s[(slice(None), *idx)].compressed()
        if len(vals) == 0:
            mask[idx] = True
            continue
        v, c = np.unique(vals, return_counts=True)
        out[idx] = v[np.argmax(c)]  # np.unique sorts: ties go to the smallest value
    return np.ma.MaskedArray(out, mask)


NUMPY_COMPOSITES = {
    "median": lambda s: np.ma.median(s, axis=0),
    "mean": lambda s: s.mean(axis=0),
    "min": lambda s: s.min(axis=0),
    "max": lambda s: s.max(axis=0),
    "sum": lambda s: np.ma.MaskedArray(s.sum(axis=0).data, s.count(axis=0) == 0),
    "mode": _np_mode,
}


@pytest.mark.parametrize("method", list(NUMPY_COMPOSITES))
def test_shortcut_composites_match_numpy(ee_local, stack, method):
    # "ImageCollection Reductions": ic.median(), ic.mean(), ... reduce per pixel, ignoring masked pixels,
    # and keep the band names ("the resulting band names will not have the name of the reducer appended").
    composite = getattr(_collection(ee_local), method)()
    assert composite.bandNames().getInfo() == ["x"]
    _assert_same(_masked(ee_local, composite, "x"), NUMPY_COMPOSITES[method](stack))


def test_count_composite(ee_local, stack):
    # ee.ImageCollection.count: "the number of images with a valid mask at each pixel".
    got = _pixels(ee_local, _collection(ee_local).count())["x"]
    want = stack.count(axis=0)
    np.testing.assert_array_equal(got[want > 0], want[want > 0])


def test_median_of_even_count_is_mean_of_middle_values(ee_local, stack):
    # ee.Reducer.percentile: p50 is the median; with an even count the two middle values are averaged
    # (as numpy's median); the stack has pixels with 2 and 4 valid values.
    counts = stack.count(axis=0)
    assert (counts % 2 == 0).any() and (counts % 2 == 1).any()
    got = _masked(ee_local, _collection(ee_local).median(), "x")
    even = (counts % 2 == 0) & (counts > 0)
    np.testing.assert_allclose(got.data[even], np.ma.median(stack, axis=0).data[even])


def test_constant_composites(ee_local):
    # ee.ImageCollection.mode: "If multiple mode values occur, the minimum mode value is returned."
    ee = ee_local
    ic = ee.ImageCollection([ee.Image(v) for v in (3, 1, 3, 1, 10, 2)])
    grid = {
        "dimensions": {"width": 2, "height": 2},
        "affineTransform": {
            "scaleX": 0.1,
            "shearX": 0,
            "translateX": 10,
            "shearY": 0,
            "scaleY": -0.1,
            "translateY": 50,
        },
        "crsCode": "EPSG:4326",
    }
    assert _pixels(ee, ic.mode(), grid)["constant"][0, 0] == 1
    assert _pixels(ee, ic.median(), grid)["constant"][0, 0] == 2.5
    assert _pixels(ee, ic.sum(), grid)["constant"][0, 0] == 20
    assert _pixels(ee, ic.product(), grid)["constant"][0, 0] == 180
    assert _pixels(ee, ic.count(), grid)["constant"][0, 0] == 6


@pytest.mark.parametrize(
    ("make", "names", "reference"),
    [
        (lambda ee: ee.Reducer.median(), ["x_median"], lambda s: [np.ma.median(s, axis=0)]),
        (lambda ee: ee.Reducer.mean(), ["x_mean"], lambda s: [s.mean(axis=0)]),
        (lambda ee: ee.Reducer.minMax(), ["x_min", "x_max"], lambda s: [s.min(axis=0), s.max(axis=0)]),
        (lambda ee: ee.Reducer.stdDev(), ["x_stdDev"], lambda s: [s.std(axis=0)]),
        (lambda ee: ee.Reducer.variance(), ["x_variance"], lambda s: [s.var(axis=0)]),
        (
            lambda ee: ee.Reducer.percentile([10, 50, 90]),
            ["x_p10", "x_p50", "x_p90"],
            lambda s: [_np_percentile(s, p) for p in (10, 50, 90)],
        ),
        (lambda ee: ee.Reducer.first(), ["x_first"], lambda s: [_np_first(s, last=False)]),
        (lambda ee: ee.Reducer.last(), ["x_last"], lambda s: [_np_first(s, last=True)]),
        (
            lambda ee: ee.Reducer.mean().combine(ee.Reducer.stdDev(), sharedInputs=True),
            ["x_mean", "x_stdDev"],
            lambda s: [s.mean(axis=0), s.std(axis=0)],
        ),
    ],
)
def test_reduce_with_reducers_names_and_values(ee_local, stack, make, names, reference):
    # ee.ImageCollection.reduce: "reducers with a single input will prefix the output name with the input
    # band name (e.g., '10_mean', '20_mean')".
    composite = _collection(ee_local).reduce(make(ee_local))
    assert composite.bandNames().getInfo() == names
    for name, want in zip(names, reference(stack), strict=True):
        _assert_same(_masked(ee_local, composite, name), want)


def _np_percentile(s: np.ma.MaskedArray, p: float) -> np.ma.MaskedArray:
    filled = s.filled(np.nan)
    count = s.count(axis=0)
    with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        out = np.nanpercentile(filled, p, axis=0, method="linear")
    return np.ma.MaskedArray(np.nan_to_num(out), count == 0)


def _np_first(s: np.ma.MaskedArray, last: bool) -> np.ma.MaskedArray:
    valid = ~np.ma.getmaskarray(s)
    order = valid[::-1] if last else valid
    idx = np.argmax(order, axis=0)
    if last:
        idx = s.shape[0] - 1 - idx
    return np.ma.MaskedArray(np.take_along_axis(s.data, idx[None], axis=0)[0], ~valid.any(axis=0))


def test_reduce_with_a_multi_input_reducer(ee_local, stack):
    # ee.ImageCollection.reduce: a reducer with several inputs takes the bands in order and names its
    # outputs directly; Reducer.max(2) gives the second input where the first is largest.
    ee = ee_local
    img = ee.Image(L1C_ID)
    ic = ee.ImageCollection(
        [img.select(["B2", "B3"]).updateMask(img.select("B2").gt(t)).rename(["a", "b"]) for t in (1100, 1200)]
    )
    ic = ic.merge(ee.ImageCollection([img.select(["B3", "B4"]).rename(["a", "b"])]))
    composite = ic.reduce(ee.Reducer.max(2))
    assert composite.bandNames().getInfo() == ["max", "max1"]
    b2, b3, b4 = (_read_window(b) for b in ("B2", "B3", "B4"))
    a = np.ma.stack(
        [np.ma.MaskedArray(b2, b2 <= 1100), np.ma.MaskedArray(b2, b2 <= 1200), np.ma.MaskedArray(b3, False)]
    )
    b = np.stack([b3, b3, b4])
    idx = np.argmax(a.filled(-np.inf), axis=0)
    got = _pixels(ee, composite)
    np.testing.assert_array_equal(got["max"], np.take_along_axis(a.data, idx[None], axis=0)[0])
    np.testing.assert_array_equal(got["max1"], np.take_along_axis(b, idx[None], axis=0)[0])


def test_reduce_refuses_heterogeneous_collections(ee_local):
    shared_file("imagery")
    # ee.ImageCollection.reduce: "If the reducer has a single input, it will be applied separately to each
    # band of the collection" - which needs every image to have the same bands.
    ee = ee_local
    img = ee.Image(L1C_ID)
    ic = ee.ImageCollection([img.select(["B2"]), img.select(["B2", "B3"])])
    with pytest.raises(ee.EEException, match="homogeneous"):
        ic.reduce(ee.Reducer.mean()).bandNames().getInfo()
    # reduce.* shortcuts match bands by name instead.
    assert ic.mean().bandNames().getInfo() == ["B2", "B3"]


def test_composite_default_projection_is_one_degree_wgs84(ee_local):
    shared_file("imagery")
    # "Projections" guide: "Image collections reduced into composites or mosaics ... will have a default
    # WGS84 projection with a 1-degree scale"; ee.Projection.nominalScale of 1 degree is 111319.49 m.
    ee = ee_local
    for composite in (_collection(ee).median(), _collection(ee).mosaic(), _collection(ee).reduce(ee.Reducer.mean())):
        proj = composite.projection()
        info = proj.getInfo()
        assert info["crs"] == "EPSG:4326"
        assert abs(info["transform"][0]) == 1 and abs(info["transform"][4]) == 1
        assert proj.nominalScale().getInfo() == pytest.approx(111319.49, abs=0.01)


# -- mosaics -------------------------------------------------------------------------------------------


def test_mosaic_puts_the_last_image_on_top(ee_local, stack):
    # ee.ImageCollection.mosaic: "Prioritizes images last to first and fills invalid pixels with preceding
    # valid pixels."
    got = _masked(ee_local, _collection(ee_local).mosaic(), "x")
    want = np.ma.MaskedArray(np.zeros(stack.shape[1:]), np.ones(stack.shape[1:], dtype=bool))
    for layer in stack:
        valid = ~np.ma.getmaskarray(layer)
        want.data[valid] = layer.data[valid]
        want.mask[valid] = False
    _assert_same(got, want)


def test_quality_mosaic_takes_all_bands_of_the_best_image(ee_local):
    shared_file("imagery")
    # ee.ImageCollection.qualityMosaic: "selects the image (per-pixel) with the HIGHEST quality-band-score";
    # "All bands from the selected image ... are included in the output".
    ee = ee_local
    img = ee.Image(L1C_ID)
    pairs = [("B2", "B8"), ("B3", "B4"), ("B4", "B2")]
    ic = ee.ImageCollection([img.select([q, v], ["q", "v"]) for q, v in pairs])
    got = _pixels(ee, ic.qualityMosaic("q"))
    quality = np.stack([_read_window(q) for q, _ in pairs])
    values = np.stack([_read_window(v) for _, v in pairs])
    # ties go to the later image
    best = quality.shape[0] - 1 - np.argmax(quality[::-1], axis=0)
    np.testing.assert_array_equal(got["q"], quality.max(axis=0))
    np.testing.assert_array_equal(got["v"], np.take_along_axis(values, best[None], axis=0)[0])


def _batch_work(ee, image, name: str) -> int:
    """Export ``image`` on GRID as a batch task; the band pixels the task computed (the engine's work counter)."""
    import gee_mining

    task = ee.batch.Export.image.toCloudStorage(image.toFloat(), description=name, bucket="work-count",
                                                fileNamePrefix=name, crs=GRID["crsCode"],
                                                crsTransform=[GRID["affineTransform"][k] for k in
                                                              ("scaleX", "shearX", "translateX", "shearY", "scaleY",
                                                               "translateY")],
                                                dimensions=f"{W}x{H}")  # fmt: skip
    task.start()
    assert finished_task(task)["state"] == "COMPLETED", task.status()
    return gee_mining.current_connection().local_engine.operations.pixels_computed(task.id)


def test_a_batch_task_counts_the_pixels_of_every_image_a_composite_reads(ee_local):
    """A batch task's work (band pixels computed, every band of the graph once) includes the pixels each image of a
    composite or quality mosaic computes in its own scope. Lower bounds: each image's band is a read and a sum (2
    bands); the median computes both bands of the 3 images, the quality mosaic at least each image's quality band;
    then the 2 output bands. (Before, the quality mosaic's scopes were not counted: 7 of its at least 8.)"""
    shared_file("imagery")
    ee = ee_local
    img = ee.Image(L1C_ID)
    ic = ee.ImageCollection([img.select([q, v], ["q", "v"]).add(0) for q, v in (("B2", "B8"), ("B3", "B4"),
                                                                            ("B4", "B2"))])  # fmt: skip
    n = W * H
    assert _batch_work(ee, ic.median(), "median") >= (3 * 2 * 2 + 2) * n
    assert _batch_work(ee, ic.qualityMosaic("q"), "quality") >= (3 * 2 + 2) * n


# -- collections of images: merge, toBands, joins, links -------------------------------------------------


def test_merge_to_bands_and_combine(ee_local):
    shared_file("imagery")
    # ee.ImageCollection.merge: "all the images that were in either collection"; ee.ImageCollection.toBands:
    # bands "named by prefixing the existing band names with the image id"; ee.ImageCollection.combine:
    # "an inner join on ID with merging of the bands".
    ee = ee_local
    ic = ee.ImageCollection(SR).limit(2)
    merged = ic.merge(ic)
    assert merged.size().getInfo() == 4
    ids = ic.aggregate_array("system:index").getInfo()
    assert merged.aggregate_array("system:index").getInfo() == [f"1_{i}" for i in ids] + [f"2_{i}" for i in ids]
    bands = ic.select(["B4", "B8"]).toBands().bandNames().getInfo()
    assert bands == [f"{i}_{b}" for i in ids for b in ("B4", "B8")]
    combined = ee.ImageCollection.combine(ic.select(["B4"]), ee.ImageCollection(SR).select(["B8"]))
    assert combined.size().getInfo() == 2
    assert combined.first().bandNames().getInfo() == ["B4", "B8"]


def _probability(ee):
    """A stand-in for S2_CLOUD_PROBABILITY: per item, band 'probability' (the item's B8), same system:index."""
    return ee.ImageCollection(SR).map(lambda im: im.select(["B8"], ["probability"]))


def test_join_save_first_on_system_index_then_add_bands(ee_local):
    shared_file("imagery")
    # The s2cloudless tutorial ("Sentinel-2 Cloud Masking with s2cloudless"): join the cloud probability
    # collection with ee.Join.saveFirst('s2cloudless') and ee.Filter.equals(leftField='system:index',
    # rightField='system:index'), then add the matched image's 'probability' band.
    ee = ee_local
    joined = ee.ImageCollection(
        ee.Join.saveFirst("s2cloudless").apply(
            primary=ee.ImageCollection(SR),
            secondary=_probability(ee),
            condition=ee.Filter.equals(leftField="system:index", rightField="system:index"),
        )
    )
    with_prob = joined.map(lambda img: img.addBands(ee.Image(img.get("s2cloudless")).select("probability")))
    assert with_prob.size().getInfo() == 6
    first = with_prob.first()
    assert first.bandNames().getInfo()[-1] == "probability"
    info = first.select(["B8", "probability"]).getInfo()
    grid = {
        "dimensions": {"width": 20, "height": 20},
        "affineTransform": dict(
            zip(
                ["scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY"],
                info["bands"][0]["crs_transform"],
                strict=True,
            )
        ),
        "crsCode": info["bands"][0]["crs"],
    }
    px = _pixels(ee, first.select(["B8", "probability"]), grid)
    np.testing.assert_array_equal(px["probability"], px["B8"])
    # the joined collection reduces as any image collection does
    assert with_prob.select(["probability"]).median().bandNames().getInfo() == ["probability"]


def test_inner_join_then_cat_reduces(ee_local):
    shared_file("imagery")
    # "Inner Joins" guide: the joined features' 'primary' and 'secondary' images are combined with
    # ee.Image.cat, and the result is used as an ImageCollection.
    ee = ee_local
    inner = ee.Join.inner().apply(
        ee.ImageCollection(SR).select(["B4"]),
        _probability(ee),
        ee.Filter.equals(leftField="system:index", rightField="system:index"),
    )
    assert inner.size().getInfo() == 6
    cat = ee.ImageCollection(inner.map(lambda f: ee.Image(f.get("primary")).addBands(ee.Image(f.get("secondary")))))
    assert cat.first().bandNames().getInfo() == ["B4", "probability"]
    assert cat.max().bandNames().getInfo() == ["B4", "probability"]


def test_link_collection(ee_local):
    shared_file("imagery")
    # ee.ImageCollection.linkCollection: bands of the matching image (default match: system:index) are
    # added; without a match "any new or updated bands will be fully masked".
    ee = ee_local
    linked = ee.ImageCollection(SR).linkCollection(_probability(ee), ["probability"])
    assert linked.size().getInfo() == 6
    first = linked.first()
    assert first.bandNames().getInfo()[-1] == "probability"
    info = first.select(["B8"]).getInfo()["bands"][0]
    grid = {
        "dimensions": {"width": 10, "height": 10},
        "affineTransform": dict(
            zip(
                ["scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY"], info["crs_transform"], strict=True
            )
        ),
        "crsCode": info["crs"],
    }
    px = _pixels(ee, first.select(["B8", "probability"]), grid)
    np.testing.assert_array_equal(px["probability"], px["B8"])
    unmatched = ee.ImageCollection(SR).linkCollection(
        _probability(ee).map(lambda im: im.set("system:index", "other")), ["probability"]
    )
    mask = _pixels(ee, unmatched.first().select(["probability"]).mask(), grid)["probability"]
    assert (mask == 0).all()


# -- composites of files on one lattice (computed on the native lattice, integer sorts) ---------------


def _native_scenes(tmp_path, n=5, extremes=False):
    """``n`` scenes of a 10 m band A (40 x 40) and a 20 m band B (20 x 20), uint16 with nodata 0.
    ``extremes``: band A's pixel (25, 25) holds the type's largest value 65535 in scene 0, and pixel
    (26, 26) is nodata in every scene."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(7)
    arrays = {"A": [], "B": []}
    lines = []
    for k in range(n):
        files = {}
        for band, res, size in (("A", 10, 40), ("B", 20, 20)):
            data = rng.integers(1, 60000, (size, size), dtype=np.uint16)
            data[rng.random((size, size)) < 0.3] = 0
            if extremes and band == "A":
                data[25, 25] = 65535 if k == 0 else data[25, 25]
                data[26, 26] = 0
            path = tmp_path / f"s{k}_{band}.tif"
            with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint16",
                               crs="EPSG:32633", transform=from_origin(500000, 6000000, res, res), nodata=0) as ds:  # fmt: skip
                ds.write(data, 1)
            files[band] = path
            arrays[band].append(data)
        lines.append(f'[[image]]\nid = "t/c/s{k}"\ncollection = "t/c"\ntime_start = "2021-01-0{k + 1}"\n'
                     f'bands = {{ A = "{files["A"]}", B = "{files["B"]}" }}\n')  # fmt: skip
    (tmp_path / "catalog.toml").write_text("\n".join(lines))
    return {b: np.stack(v) for b, v in arrays.items()}


def test_native_lattice_composites_match_numpy(tmp_path, monkeypatch):
    # A 10 m request over a 10 m and a 20 m band, reaching 10 px past the files' edge: nearest upsampling
    # of the 20 m band (pixel i, j of 10 m reads i // 2, j // 2), nodata and outside masked; the median
    # and percentiles equal numpy's on the upsampled stack, at full and at a coarser (pyramid) scale.
    # The integer keys are sorted 7 pixels at a time here (many blocks, the last one short).
    import ee

    import gee_mining
    from gee_mining.local.values import reducer

    monkeypatch.setattr(reducer, "_KEY_BLOCK", 7)

    raw = _native_scenes(tmp_path)
    gee_mining.connect("local", project="native-test", catalog=tmp_path / "catalog.toml", storage_root=tmp_path / "st")
    grid = {"dimensions": {"width": 30, "height": 30}, "crsCode": "EPSG:32633",
            "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": 500200, "shearY": 0, "scaleY": -10,
                                "translateY": 6000000 - 200}}  # fmt: skip
    want = {}
    for band, f in (("A", 1), ("B", 2)):
        up = np.zeros((5, 30, 30), np.uint16)  # outside the files: nodata
        inner = raw[band].repeat(f, 1).repeat(f, 2)[:, 20:, 20:]
        up[:, : inner.shape[1], : inner.shape[2]] = inner
        want[band] = np.ma.MaskedArray(up.astype(np.float64), up == 0)
    ic = ee.ImageCollection("t/c")
    got = ee.data.computePixels({"expression": ic.median(), "fileFormat": "NUMPY_NDARRAY", "grid": grid})
    pct = ee.data.computePixels(
        {"expression": ic.reduce(ee.Reducer.percentile([25])), "fileFormat": "NUMPY_NDARRAY", "grid": grid}
    )
    for band in ("A", "B"):
        med = np.ma.median(want[band], axis=0)
        valid = ~np.ma.getmaskarray(med)
        assert valid.sum() > 100 and (~valid).sum() > 100
        np.testing.assert_array_equal(got[band][valid], med.data[valid])
        np.testing.assert_array_equal(got[band][~valid], 0)
        p25 = _np_percentile(want[band], 25)
        np.testing.assert_allclose(pct[f"{band}_p25"][valid], p25.data[valid], rtol=1e-12)
    # at 40 m the 20 m band reads pyramid level 1 (2 x 2 means): a float stack, the same median as numpy's
    coarse = {**grid, "dimensions": {"width": 5, "height": 5},
              "affineTransform": {**grid["affineTransform"], "scaleX": 40, "scaleY": -40}}  # fmt: skip
    got40 = ee.data.computePixels({"expression": ic.median(), "fileFormat": "NUMPY_NDARRAY", "grid": coarse})["B"]
    b = np.ma.MaskedArray(raw["B"].astype(np.float64), raw["B"] == 0)[:, 10:20, 10:20]
    level1 = b.reshape(5, 5, 2, 5, 2).mean(axis=(2, 4))
    # (the stack of a uint16 band is float32, as on the request's grid: the means agree to float32's precision)
    np.testing.assert_allclose(got40, np.ma.median(level1, axis=0).filled(0), rtol=1e-6)


def test_open_datasets_are_bounded_and_closed(tmp_path):
    from gee_mining.local.raster.resample import DatasetCache

    _native_scenes(tmp_path, n=2)
    cache = DatasetCache(size=2)
    paths = sorted(tmp_path.glob("*.tif"))
    kept = []
    for p in paths:
        with cache.dataset(p) as ds:
            kept.append(ds)
            assert ds.read(1).shape in ((40, 40), (20, 20))
    assert len(cache) == 2 and [d.closed for d in kept] == [True, True, False, False]
    cache.close()
    assert all(d.closed for d in kept) and len(cache) == 0
    with cache.dataset(paths[0]) as ds:  # a closed cache still reads, opening per read
        assert not ds.closed
    assert ds.closed


@pytest.mark.parametrize("key_block", [2048, 64])  # one block of keys; 15 blocks, the last one short
def test_native_composites_inside_the_files_match_numpy_for_even_counts(tmp_path, monkeypatch, key_block):
    # A 10 m request inside the files, so the stack is read straight from them as sort keys DN - 1 (nodata 0
    # sorts last). 4 scenes: pixels have 0-4 valid values; the median of an even count is the mean of the two
    # middle values (numpy's; the engine's direct median, as Earth Engine's for up to maxRaw values), a pixel
    # with none is masked and written 0, and the largest DN (65535) stays a valid value.
    import ee

    import gee_mining
    from gee_mining.local.values import reducer

    monkeypatch.setattr(reducer, "_KEY_BLOCK", key_block)
    raw = _native_scenes(tmp_path, n=4, extremes=True)
    gee_mining.connect("local", project="native-even", catalog=tmp_path / "catalog.toml", storage_root=tmp_path / "st")
    grid = {"dimensions": {"width": 30, "height": 30}, "crsCode": "EPSG:32633",
            "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": 500050, "shearY": 0, "scaleY": -10,
                                "translateY": 6000000 - 50}}  # fmt: skip
    ic = ee.ImageCollection("t/c")
    got = ee.data.computePixels({"expression": ic.median(), "fileFormat": "NUMPY_NDARRAY", "grid": grid})
    pct = ee.data.computePixels(
        {"expression": ic.reduce(ee.Reducer.percentile([25, 90])), "fileFormat": "NUMPY_NDARRAY", "grid": grid}
    )
    gee_mining.disconnect()
    for band, f in (("A", 1), ("B", 2)):
        up = raw[band].repeat(f, 1).repeat(f, 2)[:, 5:35, 5:35]
        stack = np.ma.MaskedArray(up.astype(np.float64), up == 0)
        count = stack.count(axis=0)
        assert {0, 1, 2, 3, 4} <= set(np.unique(count))
        med = np.ma.median(stack, axis=0)
        valid = count > 0
        np.testing.assert_array_equal(got[band][valid], med.data[valid])
        np.testing.assert_array_equal(got[band][~valid], 0)
        for p in (25, 90):
            want = _np_percentile(stack, p)
            np.testing.assert_allclose(pct[f"{band}_p{p}"][valid], want.data[valid], rtol=1e-12)
            np.testing.assert_array_equal(pct[f"{band}_p{p}"][~valid], 0)
    assert got["A"][20, 20] == np.ma.median(np.ma.masked_equal(raw["A"][:, 25, 25], 0).astype(np.float64))
    assert got["A"][21, 21] == 0  # no valid value at all


def _open_files_under(folder) -> int:
    """How many of this process's open file descriptors point into ``folder`` (Linux's /proc)."""
    import os

    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder))
        except OSError:
            pass  # closed since listed
    return count


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_engine_keeps_at_most_its_bound_of_files_open_and_closes_them_on_disconnect(tmp_path):
    import ee

    import gee_mining

    _native_scenes(tmp_path, n=4)  # 8 files
    assert _open_files_under(tmp_path) == 0
    gee_mining.connect("local", project="open-files", catalog=tmp_path / "catalog.toml", storage_root=tmp_path / "st")
    gee_mining.current_connection().local_engine.catalog._handles.size = 3
    grid = {"dimensions": {"width": 30, "height": 30}, "crsCode": "EPSG:32633",
            "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": 500050, "shearY": 0, "scaleY": -10,
                                "translateY": 6000000 - 50}}  # fmt: skip
    for _ in range(2):  # the second request reuses what the first left open
        ee.data.computePixels(
            {"expression": ee.ImageCollection("t/c").median(), "fileFormat": "NUMPY_NDARRAY", "grid": grid}
        )
        assert 1 <= _open_files_under(tmp_path) <= 3
    gee_mining.disconnect()
    assert _open_files_under(tmp_path) == 0


def test_window_reads_through_rasterios_c_read_equal_its_public_read(tmp_path, monkeypatch):
    # The composite's reads call rasterio's C read under ``ds.read`` (its Python layer costs more than the
    # read); the pixels must be those of the public read, and the fallback (a rasterio without it) too.
    import rasterio
    from rasterio.windows import Window

    from gee_mining.local.raster import resample

    _native_scenes(tmp_path, n=1)
    frame = Window(3, 5, 17, 11)
    with rasterio.open(tmp_path / "s0_A.tif") as ds:
        want = ds.read(1, window=frame)
        assert resample._C_READ is not None  # this rasterio (>= 1.3) has it: the fast path is the one tested
        for reader in (resample._C_READ, None):
            monkeypatch.setattr(resample, "_C_READ", reader)
            out = np.zeros((11, 17), np.uint16)
            resample._read_window(ds, 1, frame, out)
            np.testing.assert_array_equal(out, want)
    assert (want > 0).any()

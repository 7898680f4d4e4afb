"""Step 2 composites (gee_mining.steps.sentinel2) on a tiny simulated world, through the real ``ee`` client.

References are independent of the code: scene bands, Cloud Score+, SCL and cloud
truth are read back from the world's files with rasterio, coarse bands are
repeated onto the 10 m lattice (the world's 10/20/60 m lattices nest), and the
median is numpy's ``nanmedian`` (mean of the two middle values for an even
count, which is Earth Engine's exact median).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from gee_mining.contracts.bands import BANDS, GREENEST_NDVI_BAND
from gee_mining.errors import InputError
from gee_mining.steps.sentinel2 import CompositeSpec, collection, composite, greenest_ndvi, region_of

CELL = 600  # metres: a 60 x 60 pixel cell inside the 3 km world
START, END = "2019-01-01", "2019-04-01"


@pytest.fixture(scope="module")
def world(sim_world):
    """The session's simulated world (conftest.SIM_WORLD)."""
    return sim_world


@pytest.fixture(scope="module")
def ee_world(ee_local, engine_catalog, sim_catalog):
    import gee_mining

    gee_mining.connect("local", project="gee-mining-test", catalog=sim_catalog)
    yield ee_local
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


@pytest.fixture(scope="module")
def cell(world):
    """A grid-table-like row for a 600 m cell inside the world, and its (row, col) offset in the world's 10 m lattice."""
    x0, top = world.grid["origin"]
    epsg = int(world.grid["crs"].split(":")[1])
    cx = math.ceil(x0 / CELL) + 1
    cy = math.floor(top / CELL) - 2
    row = {"name": "test", "epsg": epsg, "cell_x": cx, "cell_y": cy, "cell_size": CELL}
    offset = (int(round((top - (cy + 1) * CELL) / 10)), int(round((cx * CELL - x0) / 10)))
    assert min(offset) > 0 and max(offset) + CELL // 10 <= world.grid["size_m"] // 10
    return row, offset


def _read(path: Path, band: int) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(band)


def _to10(a: np.ndarray, n10: int) -> np.ndarray:
    k = n10 // a.shape[0]
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1)


@pytest.fixture(scope="module")
def files(world):
    """Per scene (in time order): every band at 10 m (DN), cs_cdf, SCL at 10 m, cloud truth; all from the files."""
    out = Path(world.out_dir)
    items = [json.loads(line) for line in (out / "s2_sr_harmonized.jsonl").read_text().splitlines()]
    n = world.grid["size_m"] // 10
    scenes = []
    for item in items:
        if not START <= item["time_start"][:10] < END:
            continue
        index = item["id"].rsplit("/", 1)[1]
        bands = {b: _to10(_read(out / item["bands"][b][0], item["bands"][b][1]), n).astype(float) for b in BANDS}
        scl = _to10(_read(out / item["bands"]["SCL"][0], item["bands"]["SCL"][1]), n)
        cs_cdf = _read(out / "CLOUD_SCORE_PLUS" / f"{index}.tif", 2)
        truth = _read(out / "truth" / "clouds" / f"{index}.tif", 1)
        scenes.append({"bands": bands, "scl": scl, "cs_cdf": cs_cdf, "truth": truth, "time": item["time_start"]})
    assert len(scenes) == 18
    return scenes


def _pixels(ee, image, row) -> dict[str, np.ma.MaskedArray]:
    from gee_mining.contracts.lattice import pixel_grid

    arr = ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": pixel_grid(row).ee_grid()})
    out = {}
    for b in arr.dtype.names:
        data = np.asarray(arr[b], dtype=float)
        mask = np.ma.getmaskarray(arr[b]) if np.ma.isMaskedArray(arr) else np.zeros(data.shape, bool)
        out[b] = np.ma.MaskedArray(data, mask)
    return out


def _reference(files, keep_of, offset) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """numpy: per band, nanmedian over the scenes ``keep_of(scene)`` keeps, / 10000, cut to the cell."""
    r, c = offset
    win = (slice(r, r + CELL // 10), slice(c, c + CELL // 10))
    keep = np.stack([keep_of(s)[win] for s in files])
    ref = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: no clear scene, masked in the composite
        for b in BANDS:
            stack = np.stack([s["bands"][b][win] for s in files])
            ref[b] = np.nanmedian(np.where(keep, stack, np.nan), axis=0) / 10000
    return ref, keep


def _assert_matches(got, ref, keep):
    has = keep.any(axis=0)
    assert list(got) == list(BANDS)
    for b in BANDS:
        assert (got[b].mask == ~has).all(), b
        np.testing.assert_allclose(got[b].data[has], ref[b][has], rtol=0, atol=1e-6, err_msg=b)
        assert 0 <= got[b].data[has].min() and got[b].data[has].max() <= 1.5, b


def test_cloud_score_plus_composite_equals_numpy_and_has_no_cloud(ee_world, files, cell):
    ee = ee_world
    row, offset = cell
    image = composite(row, start=START, end=END)  # the default spec: Cloud Score+ cs_cdf >= 0.6
    got = _pixels(ee, image, row)
    ref, keep = _reference(files, lambda s: s["cs_cdf"] >= 0.6, offset)
    _assert_matches(got, ref, keep)
    # the world's truth: every scene a pixel's composite uses is clear there
    r, c = offset
    win = (slice(r, r + CELL // 10), slice(c, c + CELL // 10))
    truth = np.stack([s["truth"][win] for s in files])
    assert not (keep & (truth > 0)).any()
    assert keep.any(axis=0).mean() > 0.9  # 3 months leave most pixels with a clear view
    assert (truth > 0).any(axis=0).mean() > 0.5  # and the clouds were there to mask
    info = image.getInfo()
    assert [b["data_type"]["precision"] for b in info["bands"]] == ["float"] * len(BANDS)
    assert info["bands"][0]["crs"] == f"EPSG:{row['epsg']}"
    assert info["bands"][0]["crs_transform"] == [
        10.0,
        0.0,
        row["cell_x"] * CELL,
        0.0,
        -10.0,
        (row["cell_y"] + 1) * CELL,
    ]


def test_greenest_ndvi_over_two_seasons_equals_numpy(ee_world, files, cell):
    """The seasonal band: the greenest NDVI over the Cloud Score+-clear scenes of January and of March (February
    left out), against numpy's maximum of (B8 - B4) / (B8 + B4) over those scenes read from the world's files."""
    ee = ee_world
    row, (r, c) = cell
    specs = [CompositeSpec(start="2019-01-01", end="2019-02-01"), CompositeSpec(start="2019-03-01", end="2019-04-01")]
    got = _pixels(ee, greenest_ndvi(region_of(row), specs), row)[GREENEST_NDVI_BAND]
    win = (slice(r, r + CELL // 10), slice(c, c + CELL // 10))
    used = [s for s in files if s["time"][5:7] in ("01", "03")]
    assert 0 < len(used) < len(files)
    keep = np.stack([s["cs_cdf"][win] >= 0.6 for s in used])
    ndvi = np.stack([(s["bands"]["B8"] - s["bands"]["B4"]) / (s["bands"]["B8"] + s["bands"]["B4"]) for s in used])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: no clear scene, masked in the band
        ref = np.nanmax(np.where(keep, ndvi[:, win[0], win[1]], np.nan), axis=0)
    has = keep.any(axis=0)
    assert has.mean() > 0.9 and (got.mask == ~has).all()
    np.testing.assert_allclose(got.data[has], ref[has], rtol=0, atol=1e-6)
    # the maximum, not the median: above the January-March median composite's NDVI nearly everywhere
    median = _pixels(ee, composite(row, start="2019-01-01", end="2019-04-01").normalizedDifference(["B8", "B4"]), row)
    assert (got.data[has] >= median["nd"].data[has] - 1e-6).mean() > 0.95
    with pytest.raises(InputError, match="at least one period"):
        greenest_ndvi(region_of(row), [])


def test_scl_composite_equals_numpy_and_lets_thin_clouds_through(ee_world, files, cell):
    ee = ee_world
    row, offset = cell
    spec = CompositeSpec(start=START, end=END, mask="scl")
    got = _pixels(ee, composite(row, spec), row)
    ref, keep = _reference(files, lambda s: np.isin(s["scl"], spec.scl_keep), offset)
    _assert_matches(got, ref, keep)
    # measured, as documented for Sen2Cor: SCL keeps some thin-cloud / faint-shadow pixels
    r, c = offset
    win = (slice(r, r + CELL // 10), slice(c, c + CELL // 10))
    truth = np.stack([s["truth"][win] for s in files])
    assert (keep & np.isin(truth, (1, 5))).any()


def test_other_masks_and_prefilter_run(ee_world, world, cell):
    ee = ee_world
    row, _ = cell
    for mask in ("s2cloudless", "none"):
        got = _pixels(ee, composite(row, start=START, end=END, mask=mask, bands=("B4", "B8")), row)
        assert list(got) == ["B4", "B8"] and got["B8"].count() > 0
    with pytest.warns(UserWarning, match="QA60"):
        composite(row, start="2023-01-01", end="2023-06-01", mask="qa60")
    _pixels(ee, composite(row, start=START, end=END, mask="qa60", bands=("B2",)), row)
    region = ee.Geometry.Point(world.parameters["center"])
    n_all = collection(region, CompositeSpec(start=START, end=END)).size().getInfo()
    n_clear = collection(region, CompositeSpec(start=START, end=END, max_cloudy_percentage=50)).size().getInfo()
    expected = sum(START <= s["time_start"][:10] < END and s["CLOUDY_PIXEL_PERCENTAGE"] <= 50 for s in world.scenes)
    assert n_all == 18 and n_clear == expected < 18


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": "fmask"}, "mask='fmask'"),
        ({"bands": ("B2", "AOT", "TCI_R")}, "AOT, TCI_R"),
        ({"bands": ("B10",)}, "B10"),
        ({"cs_threshold": 1.5}, "cs_threshold"),
        ({"start": "2020-01-01", "end": "2019-01-01"}, "start="),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message, cell):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        composite(cell[0], **kwargs)


def test_graph_uses_only_earth_engine_algorithms(ee_local, cell):
    from test_grid import graph_algorithms

    from gee_mining.contracts.signatures import signatures

    ee = ee_local
    images = [composite(cell[0], mask=m) for m in ("cs_plus", "s2cloudless", "scl", "none")]
    with pytest.warns(UserWarning):
        images.append(composite(cell[0], start="2022-01-01", mask="qa60", end="2023-01-01"))
    used = graph_algorithms(ee, ee.List(images))
    assert {"Image.linkCollection", "Join.saveFirst", "Image.reproject"} <= used
    assert used <= set(signatures()), used - set(signatures())


def test_composite_of_a_real_l2a_patch_equals_its_band_files(ee_local):
    """A real BigEarthNet Level-2A patch (Austria, 2017-06-13) as the only scene of a 1200 m cell on its own
    10 m lattice: the unmasked median is the scene, DN / 10000, its 20 and 60 m bands on the 10 m pixels
    they cover (nearest neighbour), read here with rasterio from the patch's own band files."""
    from conftest import shared_file

    folder = shared_file("imagery/bigearthnet_s2_l2a/S2A_MSIL2A_20170613T101031_87_48")
    row = {"name": "ben", "epsg": 32633, "cell_x": 337, "cell_y": 4451, "cell_size": 1200.0}
    with pytest.warns(UserWarning, match="before 2019-01-01"):  # real 2017 data: EE's 2017 L2A is not global
        image = composite(row, CompositeSpec(start="2017-06-13", end="2017-06-14", mask="none"))
    got = _pixels(ee_local, image, row)
    assert sorted(got) == sorted(BANDS)
    for band in BANDS:
        name = "B" + band[1:].zfill(2) if band[1:].isdigit() else band
        dn = _read(folder / f"{folder.name}_{name}.tif", 1).astype(float)
        expected = _to10(dn, 120) / 10000
        assert not got[band].mask.any()
        np.testing.assert_allclose(got[band].data, expected, rtol=1e-6, atol=1e-7, err_msg=band)

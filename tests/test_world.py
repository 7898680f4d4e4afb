"""The simulated Sentinel-2 world (gee_mining.world): files, spectra, clouds, composites, datasets.

References are independent of the generator: pixels are read back with rasterio,
library spectra are resampled by earthlib itself, cloud truth comes from the
truth rasters, composites are recomputed with numpy from the files.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import SHARED_DATA, shared_file

from gee_mining.world import generate_world

NON_VEGETATED = (4, 5, 6, 7, 9, 10, 11, 12)  # roof, paved road, natural soil/rock, mine soil, tailings, rock, haul road
NOISE = 0.004


@pytest.fixture(scope="module")
def world(sim_world):
    """The session's simulated world (conftest.SIM_WORLD)."""
    return sim_world


@pytest.fixture(scope="module")
def ee_world(ee_local, engine_catalog, sim_catalog):
    """``ee`` on a catalog holding the test catalog (real scenes) and the simulated world side by side."""
    import gee_mining

    gee_mining.connect("local", project="gee-mining-test", catalog=sim_catalog)
    yield ee_local
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


def _read(path: Path, band: int | None = None) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(band) if band else ds.read()


def _items(world, name: str) -> list[dict]:
    return [json.loads(line) for line in (Path(world.out_dir) / name).read_text().splitlines()]


# ---------------------------------------------------------------- files and metadata


def test_scenes_follow_the_sentinel2_rhythm_and_naming(world):
    items = _items(world, "s2_sr_harmonized.jsonl")
    assert len(items) == len(world.scenes) == 18  # Jan-Mar 2019 every 5 days
    days = [np.datetime64(i["time_start"][:10]) for i in items]
    assert set(np.diff(days).astype(int)) == {5}
    for item in items:
        index = item["id"].rsplit("/", 1)[1]
        # Earth Engine's S2 system:index: datatake time _ granule time _ T + MGRS tile
        assert re.fullmatch(r"\d{8}T\d{6}_\d{8}T\d{6}_T\d{2}[C-X][A-Z]{2}", index), index
        props = item["properties"]
        assert props["MGRS_TILE"] == world.mgrs_tile and index.endswith("_T" + world.mgrs_tile)
        assert props["GEE_MINING_SIMULATED"] is True
        assert 0 <= props["CLOUDY_PIXEL_PERCENTAGE"] <= 100
        assert list(item["bands"]) == [*"B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B11 B12".split(), "SCL", "MSK_CLDPRB", "QA60"]
    assert [i["properties"]["SPACECRAFT_NAME"] for i in items[:2]] == ["Sentinel-2A", "Sentinel-2B"]


def test_manifest_records_seed_sources_and_what_is_simulated(world):
    data = json.loads((Path(world.out_dir) / "manifest.json").read_text())
    assert data["seed"] == 3
    assert data["sources"]["earthlib"]["version"]
    assert data["polygons"]["source"] == "generated"
    assert any("simulated" in s.lower() or "SIMULATED" in s for s in data["simulated"])
    assert data["spectra"]["mine_soil"] and data["spectra"]["forest"]
    assert data["grid"]["crs"].startswith("EPSG:327")  # the default world is south of the equator


@pytest.mark.parametrize(("band", "scale"), [("B2", 10), ("B8", 10), ("B5", 20), ("B12", 20), ("B1", 60), ("B9", 60),
                                             ("SCL", 20), ("MSK_CLDPRB", 20), ("QA60", 60)])  # fmt: skip
def test_native_resolutions_through_the_engine(ee_world, world, band, scale):
    ee = ee_world
    lon, lat = world.parameters["center"]
    img = ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED").filterBounds(ee.Geometry.Point([lon, lat])).first()
    proj = img.select(band).projection()
    assert proj.nominalScale().getInfo() == pytest.approx(scale)
    assert proj.crs().getInfo() == world.grid["crs"]


@pytest.mark.slow
def test_same_seed_same_bytes(tmp_path):
    def digest(folder: Path) -> dict[str, str]:
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    a = generate_world(tmp_path / "a", size_km=1.2, months=1, seed=11, workers=2)
    b = generate_world(tmp_path / "b", size_km=1.2, months=1, seed=11, workers=1)
    c = generate_world(tmp_path / "c", size_km=1.2, months=1, seed=12, workers=1)
    da, db, dc = digest(Path(a.out_dir)), digest(Path(b.out_dir)), digest(Path(c.out_dir))
    assert len(da) > 30 and da == db
    assert da.keys() == dc.keys() and sum(da[k] != dc[k] for k in da) > len(da) // 2


# ---------------------------------------------------------------- surfaces trace back to library spectra


def _library_resampled(names: list[str]) -> np.ndarray:
    """earthlib's own resampling of the named library spectra to B2, B3, B4, B8 (earthlib's Sentinel2 sensor)."""
    import earthlib
    from earthlib.sensors import Sentinel2

    lib = earthlib.full_library
    rows = [lib.names.index(n) for n in names]
    out = np.asarray(lib[rows].to_sensor(Sentinel2).data)
    cols = [Sentinel2.band_names.index(b) for b in ("B2", "B3", "B4", "B8")]
    return out[:, cols]


def test_pure_surface_pixels_are_library_spectra(world):
    out = Path(world.out_dir)
    material, base, _green = _read(out / "truth" / "surface.tif")
    brightness = _read(out / "truth" / "brightness.tif", 1)
    palette = world.truth["palette"]
    checked = 0
    # scenes without any cloud, cirrus or shadow (faint haze below the flags' thresholds is not "pure")
    clear_scenes = [s for s in world.scenes if s["cloud_cover"] == 0 and not s["cirrus"]]
    assert clear_scenes
    for scene in clear_scenes:
        refl = _read(out / "S2_SR_HARMONIZED" / scene["index"] / "10m.tif").astype(float) / 10000
        pure = np.isin(material, NON_VEGETATED)
        entries = np.unique(base[pure])
        names = [palette[e] for e in entries]
        assert all(not n.startswith("modelled:") for n in names)
        spectra = _library_resampled(names)
        lookup = dict(zip(entries.tolist(), spectra, strict=True))
        expected = np.stack([lookup[e] for e in base[pure]]) * brightness[pure][:, None]
        residual = refl[:, pure].T - expected
        # what is left is the sensor noise the generator documents (sigma 0.004), centred on zero
        assert np.abs(residual.mean(axis=0)).max() < 0.001
        assert residual.std(axis=0) == pytest.approx(np.full(4, NOISE), rel=0.15)
        assert np.abs(residual).max() < 7 * NOISE
        checked += pure.sum()
    assert checked > 10_000


def test_mines_are_bare_but_bare_is_not_only_mines(world):
    out = Path(world.out_dir)
    material = _read(out / "truth" / "surface.tif", 1)
    wc = _read(out / "WorldCover" / "ESA_WorldCover_10m_2021_v200_Map.tif", 1)
    assert set(np.unique(wc)) <= {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100}
    assert np.isin(material, (9, 10, 11, 12, 13)).sum() > 0  # mine surfaces
    assert np.isin(material, (6, 7)).sum() > 0  # natural bare soil and rock outside mines


# ---------------------------------------------------------------- clouds and their flags


def test_every_cloud_pixel_is_flagged_by_cloud_score_plus(world):
    out = Path(world.out_dir)
    flagged_total = 0
    for scene in world.scenes:
        truth = _read(out / scene["truth"]["path"], 1)
        cs, cs_cdf = _read(out / "CLOUD_SCORE_PLUS" / f"{scene['index']}.tif")
        cloudy = truth > 0
        assert (cs_cdf[cloudy] < 0.6).all() and (cs[cloudy] < 0.6).all()
        assert (cs_cdf[~cloudy] >= 0.6).all()
        flagged_total += cloudy.sum()
    assert flagged_total > 10_000


def test_scl_and_qa60_flag_clouds_as_documented_including_misses(world):
    out = Path(world.out_dir)
    misses = thin_blocks = 0
    for scene in world.scenes:
        truth = _read(out / scene["truth"]["path"], 1)
        scl = _read(out / "S2_SR_HARMONIZED" / scene["index"] / "20m_qa.tif", 1)
        blocks = (
            truth.reshape(truth.shape[0] // 2, 2, truth.shape[1] // 2, 2).transpose(0, 2, 1, 3).reshape(*scl.shape, 4)
        )

        def every(c: int, blocks=blocks) -> np.ndarray:
            return (blocks == c).all(axis=-1)

        assert (scl[every(3)] == 9).all()  # opaque cloud: high probability
        assert (scl[every(4)] == 10).all()  # cirrus
        assert not np.isin(scl[every(0)], (3, 8, 9, 10)).any()  # clear stays clear
        thin = every(1)
        thin_blocks += thin.sum()
        misses += np.isin(scl[thin], (4, 5, 6)).sum()
        qa = _read(out / "S2_SR_HARMONIZED" / scene["index"] / "QA60.tif", 1)
        assert set(np.unique(qa)) <= {0, 1024, 2048}
        assert np.isin(scl[thin], (4, 5, 6, 10)).all()  # thin edges: missed, or flagged as cirrus where cirrus is
    # SCL misses thin cloud edges, as Sen2Cor does: they keep a surface class
    assert thin_blocks > 0 and misses > thin_blocks // 2


def _grid(world, scale: int = 10) -> dict:
    x0, y0 = world.grid["origin"]
    n = world.grid["size_m"] // scale
    return {
        "dimensions": {"width": n, "height": n},
        "affineTransform": {"scaleX": scale, "shearX": 0, "translateX": x0, "shearY": 0, "scaleY": -scale,
                            "translateY": y0},
        "crsCode": world.grid["crs"],
    }  # fmt: skip


def test_masked_median_is_cloud_free_unmasked_is_not(ee_world, world):
    """The Cloud Score+ recipe of Earth Engine's docs (linkCollection, cs_cdf >= 0.6, median), measured."""
    ee = ee_world
    out = Path(world.out_dir)
    lon, lat = world.parameters["center"]
    s2 = (
        ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED")
        .filterBounds(ee.Geometry.Point([lon, lat]))
        .filterDate("2019-01-01", "2019-04-01")
    )
    cs = ee.ImageCollection("GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED")
    masked = s2.linkCollection(cs, ["cs_cdf"]).map(lambda img: img.updateMask(img.select("cs_cdf").gte(0.6))).median()
    plain = s2.median()

    def pixels(image):
        arr = ee.data.computePixels(
            {"expression": image.select("B2"), "fileFormat": "NUMPY_NDARRAY", "grid": _grid(world)}
        )
        data = np.asarray(arr["B2"], dtype=float)
        mask = np.ma.getmaskarray(arr["B2"]) if np.ma.isMaskedArray(arr) else np.zeros(data.shape, bool)
        return np.ma.MaskedArray(data, mask)

    got_masked, got_plain = pixels(masked), pixels(plain)
    # independent reference from the files: per pixel, the median of the scenes the truth calls clear
    stack = np.stack([_read(out / "S2_SR_HARMONIZED" / s["index"] / "10m.tif", 1) for s in world.scenes]).astype(float)
    clear = np.stack([_read(out / s["truth"]["path"], 1) == 0 for s in world.scenes])
    reference = np.ma.median(np.ma.MaskedArray(stack, ~clear), axis=0)
    has_clear = clear.any(axis=0)
    assert (got_masked.mask == ~has_clear).all()
    np.testing.assert_allclose(got_masked[has_clear], reference[has_clear], atol=0.51)
    # cloud contamination: blue brighter than the clear median by more than 0.02 reflectance
    contaminated_plain = np.mean((got_plain - reference)[has_clear] > 200)
    contaminated_masked = np.mean((got_masked - reference)[has_clear] > 200)
    assert contaminated_masked == 0
    assert contaminated_plain > 0.002, contaminated_plain


# ---------------------------------------------------------------- collections and tables through the engine


def test_real_and_simulated_scenes_in_one_collection(ee_world, world):
    ee = ee_world
    s2 = ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED")
    lon, lat = world.parameters["center"]
    simulated = s2.filterBounds(ee.Geometry.Point([lon, lat]))
    assert simulated.size().getInfo() == len(world.scenes)
    assert simulated.aggregate_array("GEE_MINING_SIMULATED").distinct().getInfo() == [True]
    folder = SHARED_DATA / "imagery" / "bigearthnet_s2_l2a"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the real scenes need the shared data")
    from pyproj import Transformer

    band = next(folder.glob("*/*_B02.tif"))
    with rasterio.open(band) as ds:
        x, y = ds.xy(ds.height // 2, ds.width // 2)
        lon_r, lat_r = Transformer.from_crs(ds.crs, 4326, always_xy=True).transform(x, y)
    assert s2.size().getInfo() > len(world.scenes)
    picked = s2.filterBounds(ee.Geometry.Point([lon_r, lat_r]))
    assert picked.size().getInfo() >= 1
    assert picked.aggregate_array("GEE_MINING_SIMULATED").getInfo() == []
    assert picked.aggregate_array("BIGEARTHNET_PATCH").getInfo() == [band.parent.name]


def test_worldcover_and_lsib(ee_world, world):
    ee = ee_world
    wc = ee.ImageCollection("ESA/WorldCover/v200")
    assert wc.size().getInfo() == 1
    assert wc.first().bandNames().getInfo() == ["Map"]
    lon, lat = world.parameters["center"]
    lsib = ee.FeatureCollection("USDOS/LSIB_SIMPLE/2017")
    here = lsib.filterBounds(ee.Geometry.Point([lon, lat])).first()
    assert here.get("country_na").getInfo() == "Brazil"
    assert lsib.filter(ee.Filter.eq("country_na", "Brazil")).first().get("wld_rgn").getInfo() == "South America"


def test_mine_table_is_the_mines_in_the_scenes(ee_world, world):
    ee = ee_world
    mines = ee.FeatureCollection("projects/gee-mining-test/assets/world_mines")
    assert mines.size().getInfo() == world.polygons["count"] > 0
    assert set(mines.aggregate_array("source").getInfo()) == {"generated by gee-mining world (simulated)"}


def test_user_polygons(tmp_path):
    path = shared_file("polygons/mining_tropics_demo.gpkg")
    m = generate_world(tmp_path / "u", polygons=path, size_km=2, months=1, seed=0)
    assert m.polygons["source"] == "user" and m.polygons["count"] >= 1
    material = _read(Path(m.out_dir) / "truth" / "surface.tif", 1)
    assert np.isin(material, (9, 10, 11, 12, 13)).sum() > 100


def test_cli_world(tmp_path, capsys):
    from gee_mining.cli.main import main

    assert main(["world", "--out", str(tmp_path / "w"), "--size-km", "1.2", "--months", "1", "--seed", "5"]) == 0
    assert (tmp_path / "w" / "catalog.toml").exists()
    assert "simulated world" in capsys.readouterr().out

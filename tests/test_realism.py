"""The hard simulated world (gee_mining.world.realism): what each knob does, checked against independent references.

References: numpy masks of the cloud fields for Cloud Score+'s misses, shapely distances for the ragged mine edges,
earthlib's library (through ``world.spectra.library``) for the soil pools, and the real BigEarthNet Level-2A
patches in ../shared/data for the NIR texture and NBR2 (skipped without them). Worlds are tiny (2.4 km, 2 months).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from conftest import shared_file

from gee_mining.errors import InputError
from gee_mining.world import clouds, generate_world
from gee_mining.world.landscape import WorldGrid, _mined_ground, _rasterize
from gee_mining.world.realism import EASY, HARD, Realism, index_percentiles, nir_texture, realism_of
from gee_mining.world.scenes import schedule
from gee_mining.world.spectra import build_palette, library


def test_cloud_score_plus_misses_thin_cloud_and_faint_shadow_only_when_hard():
    rng = np.random.default_rng(0)
    alpha = rng.uniform(0, 0.4, (60, 60)).astype(np.float32)
    shadow = rng.uniform(0, 0.3, (60, 60)).astype(np.float32)
    tau = np.zeros_like(alpha)
    zero = np.zeros_like(alpha)
    _, easy = clouds.cloud_score_plus(alpha, tau, shadow, zero, zero)
    _, hard = clouds.cloud_score_plus(alpha, tau, shadow, zero, zero, HARD.cs_thin_miss, HARD.cs_shadow_miss)
    truth = (alpha >= clouds.THIN) | (shadow >= clouds.SHADOW_MIN)
    assert ((easy < 0.6) == truth).all()  # the easy flags are the truth
    seen = (alpha >= HARD.cs_thin_miss) | (shadow >= HARD.cs_shadow_miss)
    assert ((hard < 0.6) == seen).all()
    missed = truth & ~seen
    assert missed.sum() > 100 and (hard[missed] >= 0.6).all()


def test_mined_ground_leaves_patches_and_wanders_within_the_edge_band():
    grid = WorldGrid(32721, 561000.0, 9306000.0, 2400)
    poly = shapely.Point(562200, 9304800).buffer(600)
    mask = _rasterize([poly], grid, 10) > 0
    assert (_mined_ground(np.random.default_rng(1), grid, [poly], mask, EASY) == mask).all()
    mined = _mined_ground(np.random.default_rng(1), grid, [poly], mask, HARD)
    inside = mined[mask].mean()
    assert 1 - HARD.remnants - 0.1 < inside < 1 - HARD.remnants + 0.05  # patches left unmined
    ys, xs = np.nonzero(mined & ~mask)
    assert len(xs) > 50  # mine material outside the outline ...
    pts = shapely.points(grid.x0 + (xs + 0.5) * 10, grid.y0 - (ys + 0.5) * 10)
    assert shapely.distance(poly.boundary, pts).max() <= HARD.ragged_edge_m + 10  # ... but only within the band
    ys, xs = np.nonzero(mask & ~mined)
    inner = shapely.points(grid.x0 + (xs + 0.5) * 10, grid.y0 - (ys + 0.5) * 10)
    assert (shapely.distance(poly.boundary, inner) > HARD.ragged_edge_m + 10).any()  # remnants deep inside


def test_hard_palette_draws_many_spectra_and_mine_soil_is_not_only_bright():
    lib = library()
    soils = lib.where("soil")
    brightness = lib.values[soils][:, [3, 7, 10]].mean(axis=1)
    bright_cut = np.quantile(brightness, 0.75)
    by_name = dict(zip(lib.names, lib.values, strict=True))
    easy = build_palette(np.random.default_rng(5))
    hard = build_palette(np.random.default_rng(5), HARD.spectra_per_material, None, HARD.mine_soil_pool)
    assert len(easy.base[9]) == 5 and len(hard.base[9]) == HARD.spectra_per_material
    easy_b = [by_name[easy.names[k]][[3, 7, 10]].mean() for k in easy.base[9]]
    hard_b = [by_name[hard.names[k]][[3, 7, 10]].mean() for k in hard.base[9]]
    assert min(easy_b) > bright_cut  # the easy world's mine soil: the brightest quarter only
    assert min(hard_b) < bright_cut  # the hard one's: any soil, as dark as natural ones


def test_realism_refuses_bad_knobs():
    with pytest.raises(ValueError, match="realism"):
        realism_of("medium")
    with pytest.raises(ValueError, match="soil pools"):
        Realism(mine_soil_pool="rock")
    with pytest.raises(ValueError, match="remnants"):
        Realism(remnants=0.9)


def _clear_scene_stats(out: Path, realism: str) -> tuple[float, list[float], dict]:
    m = generate_world(out / realism, size_km=2.4, months=2, seed=3, realism=realism, workers=1)
    root = Path(m.out_dir)
    for s in m.scenes:
        with rasterio.open(root / "truth" / "clouds" / f"{s['index']}.tif") as ds:
            if ds.read(1).any():
                continue
        with rasterio.open(root / "S2_SR_HARMONIZED" / s["index"] / "10m.tif") as a:
            b10 = a.read().astype(np.float64) / 1e4
        with rasterio.open(root / "S2_SR_HARMONIZED" / s["index"] / "20m.tif") as b:
            b20 = b.read().astype(np.float64) / 1e4
        return nir_texture(b10[3]), index_percentiles(b20[4], b20[5]), json.loads((root / "manifest.json").read_text())
    pytest.fail(f"the {realism} world of seed 3 has no clear scene")


def _real_patches() -> list[tuple[float, list[float]]]:
    folder = shared_file("imagery/bigearthnet_s2_l2a")
    out = []
    for patch in sorted(p for p in folder.iterdir() if p.is_dir()):
        meta = json.loads(next(patch.glob("*_labels_metadata.json")).read_text())
        if any("snow" in lab.lower() for lab in meta.get("labels", [])) or "20180204" in patch.name:
            continue  # the February 2018 patch is snow-covered: not what a tropical world should match

        def band(name: str, patch=patch) -> np.ndarray:
            with rasterio.open(next(patch.glob(f"*_{name}.tif"))) as ds:
                return ds.read(1).astype(np.float64) / 1e4

        out.append((nir_texture(band("B08")), index_percentiles(band("B11"), band("B12"))))
    return out


@pytest.mark.slow
def test_hard_world_texture_and_nbr2_match_the_real_patches(tmp_path):
    real = _real_patches()
    tex_lo, tex_hi = min(t for t, _ in real), max(t for t, _ in real)
    nbr2_p95_hi = max(p[2] for _, p in real)
    tex_easy, nbr2_easy, _ = _clear_scene_stats(tmp_path, "easy")
    tex_hard, nbr2_hard, manifest = _clear_scene_stats(tmp_path, "hard")
    assert manifest["parameters"]["realism"]["name"] == "hard"
    assert tex_easy < tex_lo  # the easy world is smoother than any real patch (issue 25: about half)
    assert tex_lo * 0.9 <= tex_hard <= tex_hi * 1.15
    assert nbr2_easy[2] > nbr2_p95_hi + 0.1  # the easy world's vegetation: NBR2 far above the real patches'
    assert nbr2_hard[2] <= nbr2_p95_hi + 0.05


def test_world_cli_builds_a_hard_world_and_refuses_it_over_years(tmp_path, capsys):
    from gee_mining.cli.main import main

    assert main(["world", "--out", str(tmp_path / "w"), "--size-km", "0.6", "--months", "1", "--realism", "hard",
                 "-q"]) == 0  # fmt: skip
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["parameters"]["realism"] == HARD.as_json()
    assert main(["world", "--out", str(tmp_path / "y"), "--years", "2019-2020", "--realism", "hard"]) == 2
    assert "one-year worlds" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


# ---------------------------------------------------------------- mine sizes, artisanal pits, camps, fields, snow


def test_hard_mine_areas_span_0005_to_20_km2_and_the_easy_ones_do_not():
    from gee_mining.pyramid.world import MINE_AREAS, cluster_polygons
    from gee_mining.world.landscape import generated_polygons, mine_area_bounds

    hard = np.array(
        [p.area for p in cluster_polygons(200_000.0, 80, np.random.default_rng(2), areas=MINE_AREAS["hard"])]
    )
    easy = np.array(
        [p.area for p in cluster_polygons(200_000.0, 80, np.random.default_rng(2), areas=MINE_AREAS["easy"])]
    )
    assert hard.min() >= 5000 and (hard < 0.01e6).mean() > 2 * (easy < 0.01e6).mean()  # more artisanal-sized pits
    assert hard.max() > 3e6 and hard.max() <= 20e6 * 1.02 and easy.max() <= 0.62e6  # mines of several km2 (shapely)
    grid = WorldGrid(32721, 561000.0, 9306000.0, 60_000)
    assert mine_area_bounds(HARD, 60_000.0) == (5000.0, 20e6)
    assert mine_area_bounds(HARD, 11_000.0)[1] == pytest.approx(0.05 * 11_000.0**2)  # at most 5 % of the world
    areas = [p.area for s in range(6) for p in generated_polygons(grid, np.random.default_rng(s), HARD)]
    assert min(areas) >= 5000 and max(areas) <= 20e6 * 1.02 and min(areas) < 0.01e6


@pytest.fixture(scope="module")
def hard_world(tmp_path_factory):
    """A tiny hard world (2.4 km, January-February, seed 3: three of its scenes have snow)."""
    return generate_world(tmp_path_factory.mktemp("hard") / "w", size_km=2.4, months=2, seed=3, realism="hard",
                          workers=1)  # fmt: skip


def _pixel_points(grid: WorldGrid, mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return shapely.points(grid.x0 + (xs + 0.5) * 10, grid.y0 - (ys + 0.5) * 10)


def test_artisanal_pits_are_small_strung_along_the_river_with_turbid_water(hard_world):
    root = Path(hard_world.out_dir)
    features = json.loads((root / "tables" / "mines.geojson").read_text())["features"]
    grid = WorldGrid(int(hard_world.grid["crs"].split(":")[1]), *hard_world.grid["origin"], hard_world.grid["size_m"])
    to_utm = grid.to_utm()
    pits = [shapely.transform(shapely.geometry.shape(f["geometry"]),
                              lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
            for f in features if f["properties"].get("kind") == "artisanal"]  # fmt: skip
    assert len(pits) >= 5 and hard_world.polygons["artisanal"] == len(pits)
    areas = np.array([p.area for p in pits])
    assert areas.min() >= 5000 and areas.max() <= 0.05e6 * 1.05  # 0.005-0.05 km2 (shapely, in UTM)
    with rasterio.open(root / "truth" / "surface.tif") as ds:
        material = ds.read(1)
    turbid = material == 13
    pit_mask = _rasterize(pits, grid, 10) > 0
    water = _pixel_points(grid, ((material == 8) | turbid) & ~pit_mask)  # river (and lake) water
    assert shapely.distance(shapely.multipoints(water), shapely.centroid(pits)).max() < 300
    assert (turbid & pit_mask).sum() > 0 and (turbid & ~pit_mask).sum() > 50  # ponds in the pits, a turbid river
    easy = json.loads(
        (root / "manifest.json").read_text())["parameters"]["realism"]["artisanal_per_100km2"]  # fmt: skip
    assert easy == HARD.artisanal_per_100km2 and EASY.artisanal_per_100km2 == 0


def test_camps_put_roofs_inside_mine_polygons_only():
    from gee_mining.world.landscape import _add_camps

    grid = WorldGrid(32721, 561000.0, 9306000.0, 2400)
    mine = shapely.Point(562200, 9304800).buffer(300)
    material = np.full(grid.shape(10), 9, dtype=np.uint8)
    _add_camps(np.random.default_rng(0), grid, [mine], material, 0.0)
    assert not (material == 4).any()
    _add_camps(np.random.default_rng(0), grid, [mine], material, 1.0)
    roofs = _pixel_points(grid, material == 4)
    assert 4 <= len(roofs) and shapely.distance(mine, roofs).max() <= 10 * np.sqrt(0.5)  # pixel centres inside


def test_seasonal_crop_fields_are_bare_in_winter():
    from gee_mining.world.landscape import SPRING_SOWING, _phenology, greenness

    material = np.full((200, 200), 3, dtype=np.uint8)
    field_id = (np.arange(200)[:, None] // 10) * 100 + np.arange(200)[None, :] // 10  # 400 fields
    easy = _phenology(np.random.default_rng(4), material, field_id).groups
    hard = _phenology(np.random.default_rng(4), material, field_id, 1.0).groups
    assert ((hard[:, 1] >= SPRING_SOWING[0]) & (hard[:, 1] <= SPRING_SOWING[1])).all()
    bare = lambda groups, doy: float(np.mean(greenness(groups, doy) == 0))  # noqa: E731
    assert bare(hard, 20) == 1.0 and bare(hard, 150) == 0.0  # bare through January, all green in late May
    assert 0.4 < bare(easy, 20) < 0.9  # sown any day: about 1 - 115 / 365 of the fields bare on any day


def test_cloud_products_confuse_snow_and_cloud_as_documented():
    rng = np.random.default_rng(1)
    alpha = rng.uniform(0, 0.5, (80, 80)).astype(np.float32)
    zero = np.zeros_like(alpha)
    snowy = rng.random((80, 80)) < 0.5
    false = snowy & (rng.random((80, 80)) < 0.3)
    conf = clouds.SnowConfusion(snowy, false, HARD.snow_cloud_miss)
    _, cdf = clouds.cloud_score_plus(alpha, zero, zero, zero, zero, snow=conf)
    cloud = alpha >= clouds.THIN
    expected = (cloud & ~(snowy & (alpha < HARD.snow_cloud_miss))) | false
    assert ((cdf < 0.6) == expected).all()
    assert (cdf[snowy & cloud & (alpha < HARD.snow_cloud_miss) & ~false] >= 0.6).all()  # thin cloud over snow: missed
    assert (cdf[false & ~cloud] < 0.6).all()  # clear snow: flagged as cloud
    scl = clouds.scl_snow(np.full((80, 80), 5, np.uint8), alpha, zero, snowy, false, HARD.snow_cloud_miss)
    assert (scl[snowy & (alpha < HARD.snow_cloud_miss) & ~(false & ~cloud)] == 11).all()
    assert (scl[false & ~cloud] == 8).all() and (scl[~snowy] == 5).all()


def test_snow_scenes_show_snow_the_flags_confuse(hard_world):
    root = Path(hard_world.out_dir)
    snowy_scenes = [s for s in hard_world.scenes if "snow" in s["truth"]]
    assert snowy_scenes and all(s["time_start"][5:7] in ("12", "01", "02", "03") for s in snowy_scenes)
    clear_snow, cs_false, scl_snow = 0, 0, 0
    for s in snowy_scenes:
        with rasterio.open(root / s["truth"]["snow"]["path"]) as ds:
            snow = ds.read(1) >= 50
        with rasterio.open(root / s["truth"]["path"]) as ds:
            clear = ds.read(1) == 0
        with rasterio.open(root / "S2_SR_HARMONIZED" / s["index"] / "10m.tif") as ds:
            b3 = ds.read(2).astype(np.float64)
        with rasterio.open(root / "S2_SR_HARMONIZED" / s["index"] / "20m.tif") as ds:
            b11 = np.repeat(np.repeat(ds.read(5).astype(np.float64), 2, 0), 2, 1)
        with rasterio.open(root / "CLOUD_SCORE_PLUS" / f"{s['index']}.tif") as ds:
            cdf = ds.read(2)
        with rasterio.open(root / "S2_SR_HARMONIZED" / s["index"] / "20m_qa.tif") as ds:
            scl = np.repeat(np.repeat(ds.read(1), 2, 0), 2, 1)
        ndsi = (b3 - b11) / (b3 + b11)
        sel = snow & clear
        assert np.median(ndsi[sel]) > 0.4  # snow by the usual NDSI test (> 0.4), from the rendered bands
        assert snow.sum() == s["truth"]["snow"]["pixels"]
        clear_snow += int(sel.sum())
        cs_false += int((sel & (cdf < 0.6)).sum())
        scl_snow += int((sel & (scl == 11)).sum())
    assert clear_snow > 1000
    props = {json.loads(line)["id"].split("/")[-1]: json.loads(line)["properties"]
             for line in (root / "s2_sr_harmonized.jsonl").read_text().splitlines()}  # fmt: skip
    for s in hard_world.scenes:  # SNOW_ICE_PERCENTAGE: the share of SCL's snow class, as Sen2Cor reports it
        with rasterio.open(root / "S2_SR_HARMONIZED" / s["index"] / "20m_qa.tif") as ds:
            share = 100 * float(np.mean(ds.read(1) == 11))
        assert props[s["index"]]["SNOW_ICE_PERCENTAGE"] == pytest.approx(share, abs=1e-5)
        assert (share > 0) == ("snow" in s["truth"])
    assert abs(cs_false / clear_snow - HARD.snow_cs_false) < 0.08  # snow Cloud Score+ takes for cloud
    assert scl_snow / clear_snow > 0.7  # SCL calls most of it snow


def test_hard_urban_spectra_overlap_mine_soil_and_the_easy_ones_do_not():
    lib = library()
    by_name = dict(zip(lib.names, lib.values, strict=True))
    soils = lib.where("soil")
    brightness = lib.values[soils][:, [3, 7, 10]].mean(axis=1)  # B4, B8, B11, as the soil pools are cut
    upper = brightness[brightness > np.quantile(brightness, 0.5)]  # the hard world's mine-soil pool
    lo, hi = np.quantile(upper, [0.05, 0.95])

    def inside(palette) -> float:
        urban = [by_name[palette.names[k]][[3, 7, 10]].mean() for m in (4, 5) for k in palette.base[m]]
        return float(np.mean([(lo < b < hi) for b in urban]))

    easy = build_palette(np.random.default_rng(1))
    hard = build_palette(np.random.default_rng(1), HARD.spectra_per_material, None, HARD.mine_soil_pool,
                         HARD.crop_soil_pool, HARD.urban_pool)  # fmt: skip
    assert inside(easy) == 0 and inside(hard) >= 0.1  # concrete and painted roofs as bright as mine soil
    with pytest.raises(ValueError, match="urban"):
        build_palette(np.random.default_rng(1), urban="suburban")


def test_extra_months_add_the_later_passes_and_leave_the_first_months_alone():
    grid = WorldGrid(32721, 561000.0, 9306000.0, 2400)
    january = schedule(grid, 2019, 1)
    both = schedule(grid, 2019, 1, (6,))
    assert both[: len(january)] == january  # same numbers, times and ids: a paired comparison sees the same January
    first = january[0].sensing.date()
    # the reference: every 5th day from the first pass, through the year, kept in January or June
    passes = [first + dt.timedelta(days=5 * k) for k in range(74)]
    expected = [d for d in passes if d.year == 2019 and d.month in (1, 6)]
    assert [s.sensing.date() for s in both] == expected
    assert len(both) - len(january) == 6 and len({s.index for s in both}) == len(both)
    assert [s.number for s in both] == list(range(len(both)))  # unique numbers: each scene draws its own clouds
    for bad in [(1,), (13,), (0,)]:
        with pytest.raises(InputError, match="extra months"):
            schedule(grid, 2019, 1, bad)

"""The hard simulated world (gee_mining.world.realism): what each knob does, checked against independent references.

References: numpy masks of the cloud fields for Cloud Score+'s misses, shapely distances for the ragged mine edges,
earthlib's library (through ``world.spectra.library``) for the soil pools, and the real BigEarthNet Level-2A
patches in ../shared/data for the NIR texture and NBR2 (skipped without them). Worlds are tiny (2.4 km, 2 months).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from conftest import shared_file

from gee_mining.world import clouds, generate_world
from gee_mining.world.landscape import WorldGrid, _mined_ground, _rasterize
from gee_mining.world.realism import EASY, HARD, Realism, index_percentiles, nir_texture, realism_of
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

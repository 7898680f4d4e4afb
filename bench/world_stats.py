"""Issue 25: the simulated world's statistics beside the real Sentinel-2 patches' (the table in docs/world.md).

Real: the BigEarthNet Level-2A patches in ``../shared/data/imagery/bigearthnet_s2_l2a`` (120 x 120 px at 10 m;
the snow-covered February 2018 patch is reported apart: it is the only one with snow). Simulated: one world of
each realism (``easy``, ``hard``; same seed, size and months), measured on the scenes the truth says are cloud
free, with the same code. Statistics:

- **NIR texture**: the robust standard deviation (1.4826 x median absolute deviation) of horizontally
  neighbouring B8 differences, divided by sqrt 2: the pixel-to-pixel variation of the near infrared, which
  a smooth simulated surface lacks;
- **NDVI and NBR2 percentiles** (5th, 50th, 95th) of every pixel (B11, B12 at 20 m against B8, B4 at 10 m: each
  index on its own bands' lattice);
- **cloud-flag miss rates** (simulated only: the real patches carry no cloud truth): per truth class (thin
  cloud, cloud, opaque cloud, cirrus, shadow), the share of its pixels that Cloud Score+ (``cs_cdf < 0.6``) and
  SCL (3, 8, 9, 10) do not flag, over every scene of the world;
- **snow**: the share of pixels the usual snow test calls snow (NDSI = (B3 - B11) / (B3 + B11) > 0.4 and
  B8 > 0.11) on the real patches, the real snowy Level-1C crop of tile 33UUU (top of atmosphere) and the simulated
  cloud-free scenes; for the simulator, the scenes with snow, and how the cloud products treat its snow truth
  (clear snow flagged as cloud; cloud over snow missed);
- **mine sizes** (km2): the simulated world's polygon table (its artisanal pits among them) and the pyramid
  evaluation's worlds (``cluster_polygons`` as ``evaluate pyramid`` draws them: 14 worlds of 11 km, 6 clusters;
  without their artisanal pits, which the rendered surface adds), beside the real polygons in
  ``../shared/data/polygons`` (areas on the WGS84 ellipsoid).

The index percentiles and texture are medians over the cloud-free scenes, on their pixels without snow (the real patches they are
compared with have none).

Usage: ``.venv/bin/python bench/world_stats.py [--size-km 5] [--months 3] [--seed 3] [--out runs/world_stats]``;
prints the markdown tables and writes ``world_stats.json``. All simulated figures are SIMULATED.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyproj
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gee_mining, not an installed one
from gee_mining.io.polygons import read_polygons  # noqa: E402
from gee_mining.pyramid.world import MINE_AREAS, cluster_polygons  # noqa: E402
from gee_mining.world import generate_world  # noqa: E402
from gee_mining.world.clouds import TRUTH_CLASSES  # noqa: E402
from gee_mining.world.realism import index_percentiles, nir_texture  # noqa: E402

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
REAL = SHARED / "imagery" / "bigearthnet_s2_l2a"
L1C = SHARED / "imagery" / "s2_l1c_T33UUU_20170216"
POLYGONS = {"real Maus/Tang tropics demo": SHARED / "polygons" / "mining_tropics_demo.gpkg",
            "real Earth Genome Amazon 2024": SHARED / "polygons" / "amazon_mining_2024_model.geojson"}  # fmt: skip


def snow_share(b3, b8, b11) -> float:
    """Share of pixels the usual snow test calls snow: NDSI (B3 - B11) / (B3 + B11) > 0.4 and B8 > 0.11."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ndsi = (b3 - b11) / (b3 + b11)
    return round(float(np.mean((ndsi > 0.4) & (b8 > 0.11))), 4)


def _up(a: np.ndarray, shape) -> np.ndarray:
    """A coarser band repeated onto the 10 m lattice ``shape``."""
    f = shape[0] // a.shape[0]
    return np.repeat(np.repeat(a, f, axis=0), f, axis=1)[: shape[0], : shape[1]]


def stats(b3, b4, b8, b11, b12) -> dict:
    return {"nir_texture": round(nir_texture(b8), 4), "ndvi_p5_50_95": index_percentiles(b8, b4),
            "nbr2_p5_50_95": index_percentiles(b11, b12), "snow_share": snow_share(b3, b8, _up(b11, b3.shape))}  # fmt: skip


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1).astype(np.float64) / 1e4


def real_stats(folder: Path = REAL) -> dict[str, dict]:
    out = {}
    for patch in sorted(p for p in folder.iterdir() if p.is_dir()):

        def band(name: str, patch=patch) -> np.ndarray:
            (path,) = patch.glob(f"*_{name}.tif")
            return _read(path)

        meta = json.loads(next(patch.glob("*_labels_metadata.json")).read_text())
        out[patch.name] = {**stats(band("B03"), band("B04"), band("B08"), band("B11"), band("B12")),
                           "date": meta.get("acquisition_date"), "labels": meta.get("labels")}  # fmt: skip
    return out


def l1c_snow(folder: Path = L1C) -> dict | None:
    """The snow test on the real Level-1C crop of tile 33UUU, 2017-02-16 (top of atmosphere; clouds included)."""
    if not folder.exists():
        return None
    b3, b8, b11 = (_read(next(folder.glob(f"*_{b}.jp2"))) for b in ("B03", "B08", "B11"))
    return {"name": folder.name, "snow_share": snow_share(b3, b8, _up(b11, b3.shape))}


def _rates(missed: dict, total: dict) -> dict:
    return {k: round(missed[k] / total[k], 3) if total.get(k) else None for k in missed}


def _snow_counts(root: Path, s: dict, truth: np.ndarray, cs_flag: np.ndarray, scl: np.ndarray, acc: dict) -> None:
    """Add one scene's snow confusion counts to ``acc``: clear snow pixels, those Cloud Score+ flags and those SCL
    calls cloud or snow; cloud over snow and those each product misses."""
    with rasterio.open(root / s["truth"]["snow"]["path"]) as ds:
        snowy = ds.read(1) >= 50
    clear, cloud = snowy & (truth == 0), snowy & np.isin(truth, (1, 2, 3))
    scl_cloud = np.isin(scl, (8, 9, 10))
    for k, v in {"clear_snow": clear, "clear_snow_cs_cloud": clear & cs_flag, "clear_snow_scl_cloud": clear & scl_cloud,
                 "clear_snow_scl_snow": clear & (scl == 11), "cloud_over_snow": cloud,
                 "cloud_over_snow_cs_missed": cloud & ~cs_flag,
                 "cloud_over_snow_scl_missed": cloud & ~scl_cloud}.items():  # fmt: skip
        acc[k] = acc.get(k, 0) + int(v.sum())


def mine_sizes_km2(areas_m2) -> dict:
    a = np.asarray(areas_m2, dtype=np.float64) / 1e6
    return {"count": int(a.size), "min": round(float(a.min()), 4),
            "p5_50_95": [round(float(v), 4) for v in np.percentile(a, [5, 50, 95])], "max": round(float(a.max()), 3),
            "share_below_0.05": round(float(np.mean(a < 0.05)), 3)}  # fmt: skip


def real_mine_sizes() -> dict:
    geod = pyproj.Geod(ellps="WGS84")
    out = {}
    for name, path in POLYGONS.items():
        if path.exists():
            polys = read_polygons(path).geometries
            out[name] = mine_sizes_km2([abs(geod.geometry_area_perimeter(g)[0]) for g in polys if g is not None])
    return out


def pyramid_mine_sizes(realism: str, worlds: int = 14, clusters: int = 6, size_m: float = 11040.0) -> dict:
    """Mine sizes of ``evaluate pyramid``'s worlds as it draws them (without the artisanal pits)."""
    areas = MINE_AREAS[realism]
    if realism == "hard":
        areas = (*areas[:3], min(areas[3], 0.05 * size_m * size_m))
    polys = [p for s in range(1, worlds + 1)
             for p in cluster_polygons(size_m, clusters, np.random.default_rng([s, 12]), areas=areas,
                                       keep_smallest=realism == "hard")]  # fmt: skip
    return mine_sizes_km2([p.area for p in polys])


def _clear_scene(root: Path, s: dict) -> dict:
    """A cloud-free scene's statistics: the snow test on every pixel, the rest on the pixels without snow."""
    folder = root / "S2_SR_HARMONIZED" / s["index"]
    with rasterio.open(folder / "10m.tif") as a, rasterio.open(folder / "20m.tif") as b:
        b10, b20 = a.read().astype(np.float64) / 1e4, b.read().astype(np.float64) / 1e4
    share = snow_share(b10[1], b10[3], _up(b20[4], b10.shape[1:]))
    if "snow" in s["truth"]:
        with rasterio.open(root / s["truth"]["snow"]["path"]) as ds:
            snow10 = ds.read(1) > 0
        b10[:, snow10] = np.nan
        h, w = b20.shape[1:]
        b20[:, snow10[: 2 * h, : 2 * w].reshape(h, 2, w, 2).any(axis=(1, 3))] = np.nan
    return {**stats(b10[1], b10[2], b10[3], b20[4], b20[5]), "snow_share": share}


def sim_stats(out: Path, realism: str, size_km: float, months: int, seed: int) -> dict:
    m = generate_world(out / realism, size_km=size_km, months=months, seed=seed, realism=realism)
    root = Path(m.out_dir)
    per_scene, truth_n, missed, snow = [], {}, {"cloud_score_plus": {}, "scl": {}}, {}
    for s in m.scenes:
        folder = root / "S2_SR_HARMONIZED" / s["index"]
        with rasterio.open(root / "truth" / "clouds" / f"{s['index']}.tif") as ds:
            truth = ds.read(1)
        if not truth.any():
            per_scene.append(_clear_scene(root, s))
        with rasterio.open(root / "CLOUD_SCORE_PLUS" / f"{s['index']}.tif") as ds:
            cs_flag = ds.read(2) < 0.6
        with rasterio.open(folder / "20m_qa.tif") as ds:
            scl = _up(ds.read(1), truth.shape)
        scl_flag = np.isin(scl, (3, 8, 9, 10))
        for c in range(1, 6):
            sel = truth == c
            truth_n[c] = truth_n.get(c, 0) + int(sel.sum())
            missed["cloud_score_plus"][c] = missed["cloud_score_plus"].get(c, 0) + int((sel & ~cs_flag).sum())
            missed["scl"][c] = missed["scl"].get(c, 0) + int((sel & ~scl_flag).sum())
        if "snow" in s["truth"]:
            _snow_counts(root, s, truth, cs_flag, scl, snow)
    rates = {p: {TRUTH_CLASSES[c]: round(v[c] / truth_n[c], 3) if truth_n[c] else None for c in v}
             for p, v in missed.items()}  # fmt: skip
    dry = per_scene
    clear = {k: [x[k] for x in dry] for k in dry[0]} if dry else {}
    winter = [s for s in m.scenes if s["time_start"][5:7] in ("12", "01", "02", "03")]
    areas = [
        f["properties"]["area_m2"] for f in json.loads((root / "tables" / "mines.geojson").read_text())["features"]
    ]
    return {"SIMULATED": True, "realism": realism, "clear_scenes": len(per_scene),
            "scenes": len(m.scenes),
            "nir_texture": round(float(np.median(clear.get("nir_texture", [np.nan]))), 4),
            "ndvi_p5_50_95": np.median(clear["ndvi_p5_50_95"], axis=0).round(3).tolist() if dry else None,
            "nbr2_p5_50_95": np.median(clear["nbr2_p5_50_95"], axis=0).round(3).tolist() if dry else None,
            "snow_share_clear_scenes": round(float(np.mean([x["snow_share"] for x in per_scene])), 4) if per_scene else None,
            "snow_scenes": sum("snow" in s["truth"] for s in m.scenes), "december_march_scenes": len(winter),
            "snow_confusion": {**_rates({"clear_snow_cs_cloud": snow.get("clear_snow_cs_cloud", 0),
                                         "clear_snow_scl_cloud": snow.get("clear_snow_scl_cloud", 0),
                                         "clear_snow_scl_snow": snow.get("clear_snow_scl_snow", 0)},
                                        dict.fromkeys(("clear_snow_cs_cloud", "clear_snow_scl_cloud",
                                                       "clear_snow_scl_snow"), snow.get("clear_snow", 0))),
                               **_rates({"cloud_over_snow_cs_missed": snow.get("cloud_over_snow_cs_missed", 0),
                                         "cloud_over_snow_scl_missed": snow.get("cloud_over_snow_scl_missed", 0)},
                                        dict.fromkeys(("cloud_over_snow_cs_missed", "cloud_over_snow_scl_missed"),
                                                      snow.get("cloud_over_snow", 0))),
                               "pixels": snow},
            "mine_sizes_km2": mine_sizes_km2(areas), "artisanal_pits": m.polygons.get("artisanal", 0),
            "cloud_flag_miss_rate": rates, "truth_pixels": {TRUTH_CLASSES[c]: n for c, n in truth_n.items()}}  # fmt: skip


def _f(v, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def table(real: dict, sims: list[dict], l1c: dict | None = None, sizes: dict | None = None) -> str:
    rows = ["| source | NIR texture | NDVI p5 / p50 / p95 | NBR2 p5 / p50 / p95 | snow share (NDSI test) |",
            "|---|---|---|---|---|"]  # fmt: skip
    for name, r in real.items():
        what = (r["labels"] or ["?"])[0].lower()
        rows.append(f"| real L2A `{name}` ({what}) | {r['nir_texture']:.4f} | "
                    f"{' / '.join(f'{v:.2f}' for v in r['ndvi_p5_50_95'])} | "
                    f"{' / '.join(f'{v:.2f}' for v in r['nbr2_p5_50_95'])} | {r['snow_share']:.3f} |")  # fmt: skip
    if l1c:
        rows.append(f"| real L1C `{l1c['name']}` (top of atmosphere, clouds) | - | - | - | {l1c['snow_share']:.3f} |")
    for s in sims:
        rows.append(f"| SIMULATED {s['realism']} ({s['clear_scenes']} clear scenes; all but the snow share on "
                    f"pixels without snow) | {s['nir_texture']:.4f} | "
                    f"{' / '.join(f'{v:.2f}' for v in s['ndvi_p5_50_95'])} | "
                    f"{' / '.join(f'{v:.2f}' for v in s['nbr2_p5_50_95'])} | {_f(s['snow_share_clear_scenes'])} |")  # fmt: skip
    rows += ["", "| SIMULATED world | product | " + " | ".join(TRUTH_CLASSES[c] for c in range(1, 6)) + " |",
             "|---|---|" + "---|" * 5]  # fmt: skip
    for s in sims:
        for prod, rates in s["cloud_flag_miss_rate"].items():
            cells = " | ".join(_f(rates.get(TRUTH_CLASSES[c])) for c in range(1, 6))
            rows.append(f"| {s['realism']} | {prod} missed | {cells} |")
    rows += ["", "| SIMULATED world | scenes with snow (of December-March) | clear snow: Cloud Score+ says cloud | "
             "SCL says cloud | SCL says snow | cloud over snow: Cloud Score+ misses | SCL misses |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in sims:
        c = s["snow_confusion"]
        rows.append(f"| {s['realism']} | {s['snow_scenes']} of {s['december_march_scenes']} | "
                    f"{_f(c['clear_snow_cs_cloud'])} | {_f(c['clear_snow_scl_cloud'])} | {_f(c['clear_snow_scl_snow'])} | "
                    f"{_f(c['cloud_over_snow_cs_missed'])} | {_f(c['cloud_over_snow_scl_missed'])} |")  # fmt: skip
    rows += ["", "| mine polygons | count | min | p5 / p50 / p95 (km2) | max | share below 0.05 km2 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    named = {**(sizes or {}), **{f"SIMULATED {s['realism']} world's table ({s['artisanal_pits']} artisanal pits)":
                                 s["mine_sizes_km2"] for s in sims}}  # fmt: skip
    for name, z in named.items():
        rows.append(f"| {name} | {z['count']} | {z['min']:.4f} | {' / '.join(f'{v:.3f}' for v in z['p5_50_95'])} | "
                    f"{z['max']:.2f} | {z['share_below_0.05']:.2f} |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-km", type=float, default=5.0)
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default="runs/world_stats")
    args = ap.parse_args()
    out = Path(args.out)
    real, l1c = real_stats(), l1c_snow()
    sizes = {**real_mine_sizes(), **{f"SIMULATED {r} pyramid worlds (14 x 11 km, 6 clusters; no artisanal pits)":
                                     pyramid_mine_sizes(r) for r in ("easy", "hard")}}  # fmt: skip
    sims = [sim_stats(out, r, args.size_km, args.months, args.seed) for r in ("easy", "hard")]
    (out / "world_stats.json").write_text(json.dumps({"real": real, "real_l1c": l1c, "mine_sizes": sizes,
                                                      "simulated": sims}, indent=1))  # fmt: skip
    print(table(real, sims, l1c, sizes))


if __name__ == "__main__":
    main()

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
  SCL (3, 8, 9, 10) do not flag, over every scene of the world.

Usage: ``.venv/bin/python bench/world_stats.py [--size-km 6] [--months 2] [--seed 3] [--out runs/world_stats]``;
prints the markdown table and writes ``world_stats.json``. All simulated figures are SIMULATED.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio

from gee_mining.world import generate_world
from gee_mining.world.clouds import TRUTH_CLASSES
from gee_mining.world.realism import index_percentiles, nir_texture

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagery" / "bigearthnet_s2_l2a"


def stats(b4, b8, b11, b12) -> dict:
    return {"nir_texture": round(nir_texture(b8), 4), "ndvi_p5_50_95": index_percentiles(b8, b4),
            "nbr2_p5_50_95": index_percentiles(b11, b12)}  # fmt: skip


def real_stats(folder: Path = REAL) -> dict[str, dict]:
    out = {}
    for patch in sorted(p for p in folder.iterdir() if p.is_dir()):

        def band(name: str, patch=patch) -> np.ndarray:
            (path,) = patch.glob(f"*_{name}.tif")
            with rasterio.open(path) as ds:
                return ds.read(1).astype(np.float64) / 1e4

        meta = json.loads(next(patch.glob("*_labels_metadata.json")).read_text())
        out[patch.name] = {**stats(band("B04"), band("B08"), band("B11"), band("B12")),
                           "date": meta.get("acquisition_date"), "labels": meta.get("labels")}  # fmt: skip
    return out


def sim_stats(out: Path, realism: str, size_km: float, months: int, seed: int) -> dict:
    m = generate_world(out / realism, size_km=size_km, months=months, seed=seed, realism=realism)
    root = Path(m.out_dir)
    per_scene, truth_n, missed = [], {}, {"cloud_score_plus": {}, "scl": {}}
    for s in m.scenes:
        folder = root / "S2_SR_HARMONIZED" / s["index"]
        with rasterio.open(root / "truth" / "clouds" / f"{s['index']}.tif") as ds:
            truth = ds.read(1)
        if not truth.any():
            with rasterio.open(folder / "10m.tif") as a, rasterio.open(folder / "20m.tif") as b:
                b10, b20 = a.read().astype(np.float64) / 1e4, b.read().astype(np.float64) / 1e4
            per_scene.append(stats(b10[2], b10[3], b20[4], b20[5]))
        with rasterio.open(root / "CLOUD_SCORE_PLUS" / f"{s['index']}.tif") as ds:
            cs_flag = ds.read(2) < 0.6
        with rasterio.open(folder / "20m_qa.tif") as ds:
            scl = np.repeat(np.repeat(ds.read(1), 2, axis=0), 2, axis=1)
        scl_flag = np.isin(scl, (3, 8, 9, 10))
        for c in range(1, 6):
            sel = truth == c
            truth_n[c] = truth_n.get(c, 0) + int(sel.sum())
            missed["cloud_score_plus"][c] = missed["cloud_score_plus"].get(c, 0) + int((sel & ~cs_flag).sum())
            missed["scl"][c] = missed["scl"].get(c, 0) + int((sel & ~scl_flag).sum())
    rates = {p: {TRUTH_CLASSES[c]: round(v[c] / truth_n[c], 3) if truth_n[c] else None for c in v}
             for p, v in missed.items()}  # fmt: skip
    clear = {k: [s[k] for s in per_scene] for k in per_scene[0]} if per_scene else {}
    return {"SIMULATED": True, "realism": realism, "clear_scenes": len(per_scene), "scenes": len(m.scenes),
            "nir_texture": round(float(np.median(clear.get("nir_texture", [np.nan]))), 4),
            "ndvi_p5_50_95": np.median(clear["ndvi_p5_50_95"], axis=0).round(3).tolist() if per_scene else None,
            "nbr2_p5_50_95": np.median(clear["nbr2_p5_50_95"], axis=0).round(3).tolist() if per_scene else None,
            "cloud_flag_miss_rate": rates, "truth_pixels": {TRUTH_CLASSES[c]: n for c, n in truth_n.items()}}  # fmt: skip


def table(real: dict, sims: list[dict]) -> str:
    rows = ["| source | NIR texture | NDVI p5 / p50 / p95 | NBR2 p5 / p50 / p95 |", "|---|---|---|---|"]
    for name, r in real.items():
        what = (r["labels"] or ["?"])[0].lower()
        rows.append(f"| real L2A `{name}` ({what}) | {r['nir_texture']:.4f} | "
                    f"{' / '.join(f'{v:.2f}' for v in r['ndvi_p5_50_95'])} | "
                    f"{' / '.join(f'{v:.2f}' for v in r['nbr2_p5_50_95'])} |")  # fmt: skip
    for s in sims:
        rows.append(f"| SIMULATED {s['realism']} ({s['clear_scenes']} clear scenes) | {s['nir_texture']:.4f} | "
                    f"{' / '.join(f'{v:.2f}' for v in s['ndvi_p5_50_95'])} | "
                    f"{' / '.join(f'{v:.2f}' for v in s['nbr2_p5_50_95'])} |")  # fmt: skip
    rows += ["", "| SIMULATED world | product | " + " | ".join(TRUTH_CLASSES[c] for c in range(1, 6)) + " |",
             "|---|---|" + "---|" * 5]  # fmt: skip
    for s in sims:
        for prod, rates in s["cloud_flag_miss_rate"].items():
            cells = " | ".join("-" if rates.get(TRUTH_CLASSES[c]) is None else f"{rates[TRUTH_CLASSES[c]]:.3f}"
                               for c in range(1, 6))  # fmt: skip
            rows.append(f"| {s['realism']} | {prod} missed | {cells} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-km", type=float, default=6.0)
    ap.add_argument("--months", type=int, default=2)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default="runs/world_stats")
    args = ap.parse_args()
    out = Path(args.out)
    real = real_stats()
    sims = [sim_stats(out, r, args.size_km, args.months, args.seed) for r in ("easy", "hard")]
    (out / "world_stats.json").write_text(json.dumps({"real": real, "simulated": sims}, indent=1))
    print(table(real, sims))


if __name__ == "__main__":
    main()

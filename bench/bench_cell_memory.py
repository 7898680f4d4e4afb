"""Peak memory of the cell model's feature page on the local engine: ``cellmodel.cell_features`` of N fine cells
(343.75 m at 343.75/64 = 5.37 m, as the pyramid's finest level) of the real L1C crop, one request, with context
radii 20, 60 and 150 m (13 context bands, 32 bands in the feature image), each run in a fresh process.

Issue 25: one page of 500 cells of the seasonal worlds' feature image (about 58 bands) peaked at 8.7 GB, because
the engine kept every cell's intermediate pixels for the whole request. ``reduceRegions`` now gives each region its
own pixel cache (``local.raster.band.own_pixels``); ``--arms`` also runs the engine with the old request-wide cache
(``image_reduce.own_pixels`` replaced by a pass-through) on the same cells, paired run by run.

Usage: ``.venv/bin/python bench/bench_cell_memory.py [--cells 40,160] [--repeats 2]`` (about 1-2 min). Needs
../shared/data (the real L1C crop).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import contextlib, json, resource, shutil, sys, tempfile, time
from pathlib import Path
import gee_mining
from gee_mining.contracts.cells import GridSpec, cell_row
from gee_mining.io.catalog import catalog_toml
from gee_mining.local.raster import image_reduce
from gee_mining.pyramid import cellmodel as cm
from gee_mining.steps.context import CONTEXT_RADII_M, context_image, context_names

n, arm, shared, world = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
if arm == "request-wide":
    image_reduce.own_pixels = contextlib.nullcontext  # the cache as it was: every region's pixels kept
tmp = Path(tempfile.mkdtemp(prefix="cellmem-"))
bands = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
if world:  # a prepared world's composite (read only) and its seasonal context, as the evaluation's fine level
    saved = json.loads((Path(world) / "prepared.json").read_text())["saved"]
    gee_mining.connect("local", project="gee-mining-bench", catalog=saved["catalog"], storage_root=tmp / "storage")
    import ee
    composite, epsg, radii, seasonal = ee.Image(saved["composite_id"]), saved["epsg"], list(CONTEXT_RADII_M), True
    x0, y0 = (int(v // 343.75) + 1 for v in saved["bounds"][:2])
else:  # the real L1C crop
    (tmp / "catalog.toml").write_text(catalog_toml(shared, "gee-mining-bench"))
    gee_mining.connect("local", project="gee-mining-bench", catalog=tmp / "catalog.toml", storage_root=tmp / "storage")
    import ee
    composite = ee.Image("COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU").select(bands)
    epsg, radii, seasonal, x0, y0 = 32633, [20, 60, 150], False, 965, 16916
probability = composite.normalizedDifference(["B8", "B4"]).unitScale(-0.1, 0.5).rename("probability")
ctx_image = context_image(composite, radii=radii, seasonal=seasonal)
spec = cm.CellModelSpec()
context = cm.context_bands(spec, context_names(bands + ["NDVI_max"] * seasonal, radii))
cells = [(x0 + i % 14, y0 + i // 14) for i in range(n)]
rows = [cell_row(epsg, x, y, GridSpec.of(343.75, 18)) for x, y in cells]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, c0 = time.perf_counter(), time.process_time()
got = cm.cell_features(ee, probability, ctx_image, rows, 343.75 / 64, spec, context)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
digest = round(sum(v["share_50"] + v["B11_hit"] for v in got.values()), 6)
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_mb": peak / 1e3, "before_mb": before / 1e3, "check": digest,
                  "bands": cm._image_bands(spec, context)}))
shutil.rmtree(tmp, ignore_errors=True)
"""


def run(cells: int, arm: str, shared: Path, world: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLCONFIGDIR": os.environ.get("MPLCONFIGDIR", "/tmp/mpl")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(cells), arm, str(shared), world], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="40,160", help="cells per page, comma-separated (default 40,160)")
    parser.add_argument("--repeats", type=int, default=2, help="paired runs per page size (default 2)")
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"), help="the real data folder")
    parser.add_argument("--world", default="", help="a seed folder of a prepared evaluation (prepared.json, read "
                        "only), e.g. /tmp/pyr2/smoke/seed_21: its composite and seasonal context instead of the crop")  # fmt: skip
    args = parser.parse_args()
    print("cells | arm | peak RSS MB (min/median) | growth over setup MB | wall s | cpu s | ratio peak, wall, cpu "
          "(request-wide / per-region, paired: min/median)")  # fmt: skip
    for n in [int(v) for v in args.cells.split(",")]:
        pairs = [(run(n, "per-region", Path(args.shared), args.world),
                  run(n, "request-wide", Path(args.shared), args.world)) for _ in range(args.repeats)]  # fmt: skip
        assert all(a["check"] == b["check"] for a, b in pairs), "the two arms disagree on the features"
        for i, arm in enumerate(("per-region", "request-wide")):
            rs = [p[i] for p in pairs]
            peak, grow = [r["peak_mb"] for r in rs], [r["peak_mb"] - r["before_mb"] for r in rs]
            print(f"{n} ({rs[0]['bands']} bands) | {arm} | {min(peak):.0f}/{statistics.median(peak):.0f} | {statistics.median(grow):.0f} | "
                  f"{statistics.median(r['wall_s'] for r in rs):.1f} | {statistics.median(r['cpu_s'] for r in rs):.1f}")  # fmt: skip
        ratios = {k: [b[k] / a[k] for a, b in pairs] for k in ("peak_mb", "wall_s", "cpu_s")}
        print(f"{n} | ratio | " + ", ".join(f"{k} {min(v):.2f}/{statistics.median(v):.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()

"""Issue 24 benchmark: Earth Engine tasks and requests per 1,000 cells, per-cell (``cell-image``) against
batched (``cell-image-batch``) exports, side by side as a ratio, in one run.

Two sources, both printed:

1. **The plan** (``gee_mining.batch.plan``, what ``gee-mining plan`` prints) of the 5,232 Amazon polygons of
   ``../shared/data/polygons/amazon_mining_2024_model.geojson`` (or ``--polygons FILE``) at 5500/2750/1375 m:
   tasks and interactive requests per 1,000 cells, per product.
2. **A small real run** on the local engine (in-process, Earth Engine's limits on) over a SIMULATED world
   (3 km, 2 months of scenes): the same cells exported with each product through the launcher
   (``batch.jobs.run_job``), the engine's requests counted by handler (``Router.calls``): export tasks,
   interactive requests (``value:compute``, ``computePixels``, ...), and the launcher's polls (one
   ``listOperations`` a round). Beside the polls: what a poller reading each active operation every round
   (``getOperation`` per cell, the launcher before issue 24) would have sent, counted from the ledger at
   each round of the same run. Polls follow the run's duration (one round every ``poll_interval``, 0.2 s
   here, 30 s by default on Earth Engine), not its cells: compare the two poll rows within a column.

Usage: ``.venv/bin/python bench/bench_batches.py [--polygons FILE] [--cell-size 320]``
"""

from __future__ import annotations

import argparse
import csv
import math
import sqlite3
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT.parent / "shared" / "data" / "polygons" / "amazon_mining_2024_model.geojson"
PRODUCTS = ("cell-image", "cell-image-batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polygons", default=str(AMAZON), help="polygon file for the plan (default: Amazon)")
    parser.add_argument("--cell-size", type=float, default=320.0, help="cell size of the real run, metres")
    args = parser.parse_args()
    planned = _plan(Path(args.polygons))
    measured = _real_run(args.cell_size)
    print()
    print(f"{'per 1,000 cells':<44} {'per-cell':>10} {'batched':>10} {'ratio':>8}")
    for label, (per_cell, batched) in {**planned, **measured}.items():
        ratio = f"{per_cell / batched:8.1f}" if batched else "       -"
        print(f"{label:<44} {per_cell:10.1f} {batched:10.1f} {ratio}")
    print("ratio: per-cell / batched (how many times fewer with batches)")


def _plan(path: Path) -> dict[str, tuple[float, float]]:
    """Tasks and interactive requests per 1,000 cells in the plan of the polygons at three levels."""
    from gee_mining.batch.plan import cells_of_polygons, plan_job
    from gee_mining.contracts.cells import GridSpec
    from gee_mining.io.polygons import read_polygons
    from gee_mining.steps.cell_image import ImagerySpec

    t = time.perf_counter()
    shapes = [g for g in read_polygons(path).geometries if g is not None]
    levels = [cells_of_polygons(shapes, GridSpec.of(s)) for s in (5500, 2750, 1375)]
    plan = plan_job(levels, PRODUCTS, len(ImagerySpec(indices=()).band_names))
    cells = sum(len(rows) for rows in levels)
    tasks = {p: sum(q.tasks for q in plan.products if q.product == p) for p in PRODUCTS}
    print(f"plan: {len(shapes):,} polygons of {path.name}, 5500/2750/1375 m: {cells:,} cells "
          f"({time.perf_counter() - t:.0f} s)")  # fmt: skip
    for p in PRODUCTS:
        print(f"  {p:>18}: {tasks[p]:,} tasks")
    k = 1000 / cells
    interactive = plan.interactive_requests * k
    return {
        "plan: tasks": (tasks["cell-image"] * k, tasks["cell-image-batch"] * k),
        "plan: interactive requests": (interactive, interactive),
    }


def _real_run(size: float) -> dict[str, tuple[float, float]]:
    """Both products over the same cells of a simulated world; the engine's requests per 1,000 cells."""
    import ee

    import gee_mining
    from gee_mining.batch.jobs import run_job
    from gee_mining.batch.spec import parse_spec
    from gee_mining.contracts.cells import GridSpec, cell_row
    from gee_mining.local.service.router import INTERACTIVE
    from gee_mining.world import generate_world

    tmp = Path(tempfile.mkdtemp(prefix="bench-batches-"))
    world = generate_world(tmp / "world", size_km=3, months=2, seed=3, project="gee-mining-bench")
    conn = gee_mining.connect("local", project="gee-mining-bench", catalog=world.catalog, storage_root=tmp / "st")
    router = conn.local_engine.router
    (x0, y0), side = world.grid["origin"], world.grid["size_m"]
    epsg = int(world.grid["crs"].split(":")[1])
    xs = range(math.ceil(x0 / size), math.floor((x0 + side) / size))
    ys = range(math.ceil((y0 - side) / size), math.floor(y0 / size))
    rows = [cell_row(epsg, x, y, GridSpec(size, 17)) for y in ys for x in xs]
    cells = tmp / "cells.csv"
    with open(cells, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["name", "zoom", "epsg", "cell_x", "cell_y", "cell_size", "label"])
        w.writeheader()
        w.writerows({**{k: r[k] for k in w.fieldnames if k != "label"}, "label": 1} for r in rows)
    print(f"real run: {len(rows)} cells of {size:g} m over a SIMULATED 3 km world, local engine, limits on")
    counts = {}
    for product in PRODUCTS:
        spec = parse_spec({"name": product.replace("-", "_"), "product": product, "cells": str(cells),
                           "max_running": 4, "destination": {"bucket": "bench", "prefix": product},
                           "params": {"polygons": world.asset_ids["mines"], "start": "2019-01-01",
                                      "end": "2019-03-01", "indices": []}})  # fmt: skip
        ledger = tmp / f"{product}.sqlite"
        active: list[int] = []

        def counting(seconds: float, ledger=ledger, active=active) -> None:
            db = sqlite3.connect(ledger)
            active.append(
                db.execute("SELECT COUNT(*) FROM cells WHERE state IN ('SUBMITTED', 'RUNNING')").fetchone()[0]
            )
            db.close()
            time.sleep(seconds)

        router.calls.clear()
        t = time.perf_counter()
        result = run_job(ee, spec, ledger, progress=None, poll_interval=0.2, sleep=counting)
        assert result.ok, result.failed
        calls = dict(router.calls)
        counts[product] = {
            "tasks": calls.get("export_image", 0),
            "interactive": sum(calls.get(k, 0) for k in INTERACTIVE),
            "polls": calls.get("list_operations", 0) + calls.get("get_operation", 0),
            "per-operation polls": sum(active),
        }
        print(f"  {product:>18}: {result.submitted} tasks, {time.perf_counter() - t:.1f} s, calls {calls}")
    k = 1000 / len(rows)
    labels = {"tasks": "real run: tasks", "interactive": "real run: interactive requests",
              "polls": "real run: poll requests (listOperations)",
              "per-operation polls": "real run: polls, one getOperation per operation"}  # fmt: skip
    return {labels[key]: (counts["cell-image"][key] * k, counts["cell-image-batch"][key] * k) for key in labels}


if __name__ == "__main__":
    main()

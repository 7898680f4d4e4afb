"""Rehearsal of a global run on the 5,232 Amazon polygons, one level, all batched products, limits on.

The cells are those the plan makes of the real polygons (``batch.plan.cells_of_polygons``: every cell
meeting a polygon in its zone, one negative each); a SIMULATED world (``gee-mining world --polygons``) covers
a few km of them, centred on the densest group of cells. The local engine (Earth Engine's documented limits
on, as by default) serves the world's scenes and the whole polygon table; the real ``ee`` client runs the
launcher (``batch.jobs.run_job``) for ``cell-image-batch``, ``pixel-table-batch`` and ``tfrecord-batch`` over
EVERY cell, then the per-cell products (``cell-image``, ``pixel-table``) for the cells the world touches,
as the reference. It checks, and prints:

- tasks submitted per product == planned (``batch.plan.plan_job``); interactive requests == 0 for the batched
  products and one scene count per 500 cells for the per-cell ones, as planned (the engine's router counts its
  requests by handler); no task failed (a limit tripped would fail one);
- every cell the world touches: its window of its batch file equals its own ``cell-image`` band by band
  exactly, and its rows of the batch CSV equal its own ``pixel-table`` rows;
- cells outside the world have no clear pixel: the batch writes no file for them (``skipEmptyTiles``) or,
  at 1375 m, an all-nodata window of a 2 x 2-cell block shared with a world cell; no
  CSV row (TFRecord patches are not checked here); a per-cell export job of such a cell fails it before any task,
  with the error ``export-cells`` gives (no scene covers it), and writes no file.

    python bench/rehearsal_amazon.py [--level 2750] [--size-km 4] [--months 2] [--radius-km R]

``--radius-km R`` keeps only the cells within R km of the world's centre (a smaller run of the same path).
SIMULATED imagery: the figures are counts and times of the local engine, not of Earth Engine.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows

from gee_mining.batch.jobs import run_job
from gee_mining.batch.plan import cells_of_polygons, plan_job
from gee_mining.batch.spec import parse_spec
from gee_mining.contracts.cells import GridSpec
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.io.catalog import catalog_text, table_entry
from gee_mining.io.polygons import read_polygons
from gee_mining.local.service.router import INTERACTIVE
from gee_mining.steps.sentinel2 import SCENE_BATCH
from gee_mining.world import generate_world, world_catalog_toml

ROOT = Path(__file__).resolve().parents[1]
POLYGONS = ROOT.parent / "shared" / "data" / "polygons" / "amazon_mining_2024_model.geojson"
PROJECT = "gee-mining-test"
AMAZON = f"projects/{PROJECT}/assets/amazon_mining_2024"
BUCKET = "rehearsal"
BATCHED = ("cell-image-batch", "pixel-table-batch", "tfrecord-batch")
PARAMS = {"start": "2019-01-01", "end": "2019-03-01"}
NODATA = -9999.0


@dataclass
class Rehearsal:
    """What a rehearsal ran and measured."""

    level_m: float
    cells: int
    world_cells: list[str]
    planned: dict[str, int]
    submitted: dict[str, int] = field(default_factory=dict)
    interactive: dict[str, int] = field(default_factory=dict)
    exports: dict[str, int] = field(default_factory=dict)
    failed: dict[str, list] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    outside_failed_clearly: int = 0
    outside_no_file: int = 0
    mismatches: dict[str, list] = field(default_factory=dict)
    outside_in_shared_file: int = 0
    outside_tried: int = 0
    compared_bands: int = 0
    compared_rows: int = 0


def amazon_cells(path: Path, level_m: float) -> list[dict]:
    """The grid rows the plan makes of the polygons at one level (positives and one negative each)."""
    shapes = [g for g in read_polygons(path).geometries if g is not None]
    return cells_of_polygons(shapes, GridSpec.of(level_m))


def densest_centre(rows: list[dict], size_m: float) -> tuple[int, float, float]:
    """The zone and UTM centre of the square of 3 x ``size_m`` (on the cell lattice) holding the most cells: a
    world of ``size_m`` there covers the middle of a dense cluster, with cells of the cluster around it."""
    counts: Counter = Counter()
    size = rows[0]["cell_size"]
    k = max(2, int(3 * size_m // size))
    for r in rows:  # every window of k x k cells that holds r counts it
        for dx in range(k):
            for dy in range(k):
                counts[r["epsg"], r["cell_x"] - dx, r["cell_y"] - dy] += 1
    (epsg, x, y), _ = counts.most_common(1)[0]
    return epsg, (x + k / 2) * size, (y + k / 2) * size


def world_around(out: Path, rows: list[dict], size_km: float, months: int):
    """A SIMULATED world over the densest group of cells, from the real polygons; its manifest."""
    import pyproj

    epsg, cx, cy = densest_centre(rows, size_km * 1000)
    lon, lat = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(cx, cy)
    return generate_world(out, polygons=POLYGONS, size_km=size_km, months=months, center=(lon, lat),
                          project=PROJECT)  # fmt: skip


def near_world(rows: list[dict], world, radius_m: float) -> list[dict]:
    """The rows of the world's zone whose cells lie within ``radius_m`` of the world's centre (all if 0)."""
    if not radius_m:
        return rows
    x0, y0 = world.grid["origin"]
    cx, cy = x0 + world.grid["size_m"] / 2, y0 - world.grid["size_m"] / 2
    out = []
    for r in rows:
        a, b, c, d = pixel_grid(r).bounds
        if f"EPSG:{r['epsg']}" == world.grid["crs"] and max(abs((a + c) / 2 - cx), abs((b + d) / 2 - cy)) <= radius_m:
            out.append(r)
    return out


def in_world(row: dict, world) -> bool:
    """Whether the cell's lattice meets the world's square (same zone only: the world is one zone)."""
    if f"EPSG:{row['epsg']}" != world.grid["crs"]:
        return False
    x0, y0 = world.grid["origin"]
    side = world.grid["size_m"]
    a, b, c, d = pixel_grid(row).bounds
    return a < x0 + side and c > x0 and b < y0 and d > y0 - side


def write_cells(path: Path, rows: list[dict]) -> None:
    keys = ["name", "zoom", "epsg", "cell_x", "cell_y", "cell_size", "label"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def job(work: Path, name: str, product: str, rows: list[dict], **extra):
    cells = work / f"{name}.csv"
    write_cells(cells, rows)
    return parse_spec({"name": name, "product": product, "cells": str(cells), "max_running": 2,
                       "destination": {"bucket": BUCKET, "prefix": name},
                       "params": {"polygons": AMAZON, **PARAMS, **extra}})  # fmt: skip


def run_counted(ee, eng, spec, ledger: Path, timeout: float):
    """Run a job; its result, the tasks it made (listOperations) and the engine's requests by handler."""
    eng.router.calls.clear()
    before = len(ee.data.listOperations())
    result = run_job(ee, spec, ledger, progress=None, poll_interval=0.05, timeout=timeout)
    return result, len(ee.data.listOperations()) - before, dict(eng.router.calls)


def connect(work: Path, world):
    """The local engine, limits on, serving the world and the whole polygon table; (ee, engine, storage)."""
    import ee

    import gee_mining

    catalog = work / "catalog.toml"
    catalog.write_text(world_catalog_toml(world.out_dir) + "\n" + catalog_text([table_entry(AMAZON, POLYGONS)]))
    storage = work / "storage"
    conn = gee_mining.connect("local", project=PROJECT, catalog=catalog, storage_root=storage)
    assert conn.local_engine.limits.enabled, "the rehearsal runs with Earth Engine's limits on"
    return ee, conn.local_engine, storage


def run_batched(ee, eng, work: Path, rows: list[dict], rep: Rehearsal, timeout: float) -> None:
    """The three batched products over every cell, counted."""
    for product in BATCHED:
        t0 = time.perf_counter()
        result, tasks, calls = run_counted(ee, eng, job(work, product, product, rows), work / f"{product}.sqlite",
                                           timeout)  # fmt: skip
        rep.seconds[product] = round(time.perf_counter() - t0, 1)
        rep.submitted[product] = tasks if tasks == result.submitted else -1
        rep.interactive[product] = sum(calls.get(k, 0) for k in INTERACTIVE)
        rep.exports[product] = calls.get("export_image", 0) + calls.get("export_table", 0)
        rep.failed[product] = result.failed


def members(ledger: Path) -> dict[str, str]:
    """Each cell's file ('' when none) from a batch ledger, and its window (JSON)."""
    rows = sqlite3.connect(ledger).execute("SELECT cell, file, window FROM members").fetchall()
    return {c: (f or "", w) for c, f, w in rows}


def _read(path: Path, window=None):
    with rasterio.open(path) as ds:
        return ds.read(window=window), ds.descriptions


def compare_images(work: Path, storage: Path, names: list[str], rep: Rehearsal) -> None:
    """Each world cell's window of its batch file equals its own cell-image export, band by band."""
    where = members(work / "cell-image-batch.sqlite")
    for cell in names:
        uri, window = where[cell]
        want, bands = _read(storage / BUCKET / "cells" / f"{cell}.tif")
        if not uri:  # no file: the cell has no clear pixel, so its own export is all nodata
            assert (want == NODATA).all(), f"{cell}: clear pixels in its own export but no batch file"
            continue
        col, row, w, h = json.loads(window)
        got, got_bands = _read(storage / uri.removeprefix("gs://"), rasterio.windows.Window(col, row, w, h))
        assert got_bands == bands and got.shape == want.shape, cell
        for b, name in enumerate(bands):  # exact equality; a difference is recorded (checked in ``check``)
            diff = got[b] != want[b]
            if diff.any():
                rep.mismatches[f"image {cell} {name}"] = [int(diff.sum()), float(np.abs(got[b] - want[b]).max())]
        rep.compared_bands += len(bands)


def _table(path: Path, drop: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    if not path.exists():
        return out
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            out.setdefault(r["cell"], []).append(tuple(sorted((k, v) for k, v in r.items() if k not in drop)))
    return {k: sorted(v) for k, v in out.items()}


def compare_tables(storage: Path, names: list[str], outside: set[str], rep: Rehearsal) -> None:
    """Each world cell's rows of the batch CSVs equal its own pixel-table; no row for a cell outside."""
    got: dict[str, list[tuple]] = {}
    bare: dict[str, list[tuple]] = {}  # without the distance label
    for path in (storage / BUCKET / "pixel-table-batch").glob("*.csv"):
        for cell, rows in _table(path).items():
            assert cell not in got, f"{cell}: rows in two batch tables"
            got[cell] = rows
        bare.update(_table(path, ("distance",)))
    assert not set(got) & outside, f"rows for cells outside the world: {sorted(set(got) & outside)[:5]}"
    for cell in names:
        want = _table(storage / BUCKET / "tables" / f"{cell}.csv").get(cell, [])
        if got.get(cell, []) != want:
            own = _table(storage / BUCKET / "tables" / f"{cell}.csv", ("distance",)).get(cell, [])
            rows = len(set(got.get(cell, [])) ^ set(want)) // 2
            rep.mismatches[f"table {cell}"] = [rows, "distance only" if bare.get(cell, []) == own else "other columns"]
        rep.compared_rows += len(want)


def rehearse(work: Path, level_m: float = 1375.0, size_km: float = 4.0, months: int = 2, radius_km: float = 0.0,
             timeout: float = 1800.0, say=print) -> Rehearsal:  # fmt: skip
    """The whole rehearsal in ``work``; asserts what it must show and returns the figures."""
    t0 = time.perf_counter()
    rows = amazon_cells(POLYGONS, level_m)
    world = world_around(work / "world", rows, size_km, months)
    say(f"cells {len(rows)} at {level_m:g} m; SIMULATED world {world.grid['crs']} {size_km:g} km, "
        f"{len(world.scenes)} scenes ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    rows = near_world(rows, world, radius_km * 1000)
    inside = [r for r in rows if in_world(r, world)]
    plan = plan_job([rows], [*BATCHED, "cell-image", "pixel-table"], bands=14)
    rep = Rehearsal(level_m, len(rows), [r["name"] for r in inside], {p.product: p.tasks for p in plan.products})
    assert plan.interactive_requests == 2 * -(-len(rows) // SCENE_BATCH) and inside, "the world must touch some cells"
    ee, eng, storage = connect(work, world)
    run_batched(ee, eng, work, rows, rep, timeout)
    say(f"batched: {rep.submitted} tasks (planned {rep.planned}), {rep.seconds} s")
    # The reference: each world cell's own task; and two cells outside the world (all nodata).
    outside = [r for r in rows if not in_world(r, world)][:2]
    t1 = time.perf_counter()
    for name, product in (("cells", "cell-image"), ("tables", "pixel-table")):
        result, tasks, calls = run_counted(ee, eng, job(work, name, product, inside), work / f"{name}.sqlite", timeout)
        assert result.ok and tasks == len(inside), (product, result.failed)
        assert sum(calls.get(k, 0) for k in INTERACTIVE) == -(-len(inside) // SCENE_BATCH), (product, calls)
    failed = run_counted(ee, eng, job(work, "outside", "cell-image", outside), work / "outside.sqlite", timeout)[0]
    rep.outside_tried = len(outside)
    rep.seconds["per-cell reference"] = round(time.perf_counter() - t1, 1)
    check(work, storage, rows, rep, outside=[r["name"] for r in outside], failed=failed.failed)
    rep.seconds["total"] = round(time.perf_counter() - t0, 1)
    return rep


def check(work: Path, storage: Path, rows: list[dict], rep: Rehearsal, outside: list[str], failed) -> None:
    """What the rehearsal must show (asserts)."""
    for product in BATCHED:
        assert rep.failed[product] == [], (product, rep.failed[product][:3])  # no limit tripped, no task failed
        assert rep.submitted[product] == rep.planned[product], (product, rep.submitted, rep.planned)
        assert rep.interactive[product] == 0 and rep.exports[product] == rep.planned[product], product
    inside = set(rep.world_cells)
    rest = {r["name"] for r in rows} - inside
    where = members(work / "cell-image-batch.sqlite")
    assert sorted(where) == sorted(r["name"] for r in rows)  # every cell in the ledger once
    # outside the world: no file, or (a file block shared with a world cell, 1375 m) a window all nodata
    for cell in rest:
        uri, window = where[cell]
        if uri:
            col, row, w, h = json.loads(window)
            got, _ = _read(storage / uri.removeprefix("gs://"), rasterio.windows.Window(col, row, w, h))
            assert (got == NODATA).all(), f"{cell}: outside the world, yet clear pixels in its batch window"
            rep.outside_in_shared_file += 1
        else:
            rep.outside_no_file += 1
    rep.files = {p: sum(1 for f in (storage / BUCKET / p).rglob("*") if f.is_file()) for p in BATCHED}
    compare_images(work, storage, rep.world_cells, rep)
    compare_tables(storage, rep.world_cells, rest, rep)
    # a per-cell export job of a cell with no imagery fails it before any task, as export-cells does, no file
    errors = dict(failed)
    for cell in outside:
        assert "no Sentinel-2 scene covers this cell" in errors.get(cell, ""), (cell, errors)
        assert not list((storage / BUCKET / "outside").glob(f"{cell}*")), f"{cell}: a file was written"
        rep.outside_failed_clearly += 1
    assert rep.compared_bands > 0 and rep.compared_rows > 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--level", type=float, default=1375.0)
    p.add_argument("--size-km", type=float, default=4.0)
    p.add_argument("--months", type=int, default=2)
    p.add_argument(
        "--radius-km",
        type=float,
        default=0.0,
        help="only the cells within this distance of the world's centre (default 0: every cell)",
    )
    p.add_argument("--work", help="working folder (default: a temporary one)")
    args = p.parse_args(argv)
    if not POLYGONS.exists():
        print(f"{POLYGONS} is absent: the rehearsal needs the shared real data beside the checkout", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rep = rehearse(work, args.level, args.size_km, args.months, args.radius_km)
    print(json.dumps(rep.__dict__, indent=1, default=str))
    return 1 if rep.mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())

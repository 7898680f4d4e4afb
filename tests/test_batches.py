"""Batched exports: many cells in one Earth Engine task, each cell its own file, equal to its per-cell export.

The rehearsal runs on the shared simulated world with the local engine's Earth Engine limits on (the
default): the same cells exported per cell (``cell-image``, one task each) and in batches
(``cell-image-batch``), band by band equal; the tasks and interactive requests counted on the engine
(its requests by handler, ``ee.data.listOperations``) against the plan. The file-to-cell mapping is checked
against pixel arithmetic done here (rasterio's transform of each file), not against the mapping's own code.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3

import numpy as np
import pytest
import rasterio

from gee_mining.batch.batches import Batch, cells_per_file, file_offsets, plan_batches, split_batch
from gee_mining.batch.jobs import run_job
from gee_mining.batch.plan import TaskModel, plan_job
from gee_mining.batch.spec import parse_spec
from gee_mining.contracts.cells import GridSpec, cell_row
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.errors import InputError

BUCKET = "batches"
PARAMS = {"start": "2019-01-01", "end": "2019-04-01", "indices": ["NDVI"]}


@pytest.fixture(scope="module")
def engine(sim_world, sim_catalog, tmp_path_factory):
    """The local engine (limits on, as by default) serving the simulated world; (ee, engine, storage root)."""
    import gee_mining

    storage = tmp_path_factory.mktemp("batch_storage")
    conn = gee_mining.connect("local", project="gee-mining-test", catalog=sim_catalog, storage_root=storage)
    assert conn.local_engine.limits.enabled
    import ee

    yield ee, conn.local_engine, storage


def _world_cells(world, size: float, zoom: int) -> list[dict]:
    """Every cell of ``size`` m wholly inside the simulated world, as grid rows."""
    x0, y0 = world.grid["origin"]
    side = world.grid["size_m"]
    epsg = int(world.grid["crs"].split(":")[1])
    xs = range(math.ceil(x0 / size), math.floor((x0 + side) / size))
    ys = range(math.ceil((y0 - side) / size), math.floor(y0 / size))
    return [cell_row(epsg, x, y, GridSpec(size, zoom)) for y in ys for x in xs]


def _write_cells(path, rows):
    keys = ["name", "zoom", "epsg", "cell_x", "cell_y", "cell_size", "label"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows({**r, "label": 1} for r in rows)


def _job(tmp_path, name, product, rows, polygons, **extra):
    cells = tmp_path / f"{name}.csv"
    _write_cells(cells, rows)
    return parse_spec({"name": name, "product": product, "cells": str(cells), "max_running": 2,
                       "destination": {"bucket": BUCKET, "prefix": name},
                       "params": {"polygons": polygons, **PARAMS, **extra}})  # fmt: skip


def _read(path, window=None):
    with rasterio.open(path) as ds:
        return ds.read(window=window), ds.transform, ds.descriptions


def test_a_batched_job_writes_each_cell_equal_to_its_own_export(engine, sim_world, tmp_path):
    ee, eng, storage = engine
    polygons = sim_world.asset_ids["mines"]
    # 640 m cells (64 px: one cell a file) and 645 m cells (64.5 px: 2 x 2 cells a file of 129 px), a hole left.
    cells640 = _world_cells(sim_world, 640.0, 19)
    cells645 = _world_cells(sim_world, 645.0, 20)
    rows = [c for i, c in enumerate(cells640) if i != 1][:5] + cells645[:3]
    assert len(rows) == 8 and cells_per_file(645.0) == 2 and cells_per_file(640.0) == 1
    batched = _job(tmp_path, "batched", "cell-image-batch", rows, polygons, files_per_side=2)
    single = _job(tmp_path, "single", "cell-image", rows, polygons)
    plan = plan_job([[r for r in rows if r["cell_size"] == s] for s in (640.0, 645.0)],
                    ["cell-image-batch", "cell-image"], bands=16, files_per_side=2)  # fmt: skip
    planned = {(p.product, p.level_m): p.tasks for p in plan.products}

    eng.router.calls.clear()
    ops_before = len(ee.data.listOperations())
    result = run_job(ee, batched, tmp_path / "b.sqlite", progress=None, poll_interval=0.05, timeout=300)
    calls = dict(eng.router.calls)
    assert result.ok, result.failed
    tasks = len(ee.data.listOperations()) - ops_before
    # As planned: the tasks submitted, and no interactive computation on the way.
    assert tasks == result.submitted == planned[("cell-image-batch", 640.0)] + planned[("cell-image-batch", 645.0)]
    assert tasks < len(rows)
    from gee_mining.local.service.router import INTERACTIVE

    assert sum(calls.get(k, 0) for k in INTERACTIVE) == 0
    # the plan's interactive requests: the per-cell product's scene counts, one per level of under 500 cells
    assert plan.interactive_requests == len({r["cell_size"] for r in rows})
    assert calls.get("export_image") == tasks
    # The reference: each cell's own task.
    assert run_job(ee, single, tmp_path / "s.sqlite", progress=None, poll_interval=0.05, timeout=300).ok
    assert planned[("cell-image", 640.0)] + planned[("cell-image", 645.0)] == len(rows)

    members = sqlite3.connect(tmp_path / "b.sqlite").execute("SELECT cell, unit, file, window FROM members").fetchall()
    assert sorted(m[0] for m in members) == sorted(r["name"] for r in rows)  # each cell once
    for cell, _unit, uri, window in members:
        row = next(r for r in rows if r["name"] == cell)
        own = storage / BUCKET / "single" / f"{cell}.tif"
        want, want_tf, want_bands = _read(own)
        assert uri, f"{cell}: no file (the world covers it: it has clear pixels)"
        path = storage / uri.removeprefix("gs://")
        col, r0, w, h = json.loads(window)
        got, got_tf, got_bands = _read(path, rasterio.windows.Window(col, r0, w, h))
        # The window's corner, from the file's own transform, is the cell lattice's corner (independent check).
        grid = pixel_grid(row)
        assert (got_tf.c + col * got_tf.a, got_tf.f + r0 * got_tf.e) == (grid.transform[2], grid.transform[5])
        assert (w, h) == (grid.width, grid.height) and got_bands == want_bands
        assert tuple(want_tf)[:6] == tuple(grid.transform)
        for b, name in enumerate(want_bands):
            np.testing.assert_array_equal(got[b], want[b], err_msg=f"{cell} band {name}")
        assert np.isfinite(want).all() and (want != -9999).any()
    # Outside the job's cells the files hold nodata: the hole left in the 640 m cells is no one's pixels.
    hole = cells640[1]
    assert hole["name"] not in {m[0] for m in members}
    # A new ledger adopting what is at the destination (after a damaged one) submits nothing and places every
    # cell in the same file and window as the run that wrote them.
    adopted = run_job(ee, batched, tmp_path / "adopt.sqlite", progress=None, poll_interval=0.05, timeout=60,
                      adopt_existing=True)  # fmt: skip
    assert adopted.ok and adopted.submitted == 0
    again = sqlite3.connect(tmp_path / "adopt.sqlite").execute("SELECT cell, file, window FROM members").fetchall()
    assert sorted(again) == sorted((c, f, w) for c, _u, f, w in members)


def test_the_file_names_map_back_to_their_cells():
    rows = [cell_row(32721, x, y, GridSpec(1375.0, 16)) for x, y in [(100, -3), (101, -3), (104, -2)]]
    (batch,) = plan_batches(rows, files_per_side=8)
    assert batch.file_px == 275 and (batch.bx0, batch.bx1, batch.by0, batch.by1) == (50, 52, -2, -1)
    grid = batch.grid
    assert (grid.width, grid.height) == (3 * 275, 2 * 275)
    # The file at row 275, column 0 is block (50, -2), the south-west one: cells 100 and 101 of row -3.
    assert file_offsets("p/b-0000000275-0000000000.tif", "p/b") == (275, 0)
    from gee_mining.batch.batches import cells_of_file

    got = {
        w.cell: (w.col_off, w.row_off, w.width, w.height)
        for w in cells_of_file(batch, "p/b-0000000275-0000000000.tif", "p/b")
    }  # noqa: E501
    # 1375 m cells at 10 m: x = 100 starts at 137,500 m (column 0 of the block at 137,500 m), x = 101 at
    # 138,875 m, floored to 138,870 m: column 137. Row -3's top is -2,750 m, the block's top -2,750 m: row 0.
    assert got == {rows[0]["name"]: (0, 0, 138, 138), rows[1]["name"]: (137, 0, 138, 138)}
    with pytest.raises(InputError, match="not a file of the batch"):
        file_offsets("p/b_q0-0000000000-0000000000.tif", "p/b")


def test_a_split_keeps_every_cell_exactly_once():
    rows = [cell_row(32633, x, y, GridSpec(5500.0, 14)) for x in range(10) for y in range(7) if (x * y) % 3]
    (batch,) = plan_batches(rows, files_per_side=16)
    parts = split_batch(batch)
    assert 2 <= len(parts) <= 4
    names = [c["name"] for p in parts for c in p.cells]
    assert sorted(names) == sorted(r["name"] for r in rows)
    assert all(Batch.from_row(p.to_row()) == p for p in parts)
    one = plan_batches(rows[:1], files_per_side=16)[0]
    assert split_batch(one) == []


def test_plan_counts_and_model():
    rows = [cell_row(32633, x, 0, GridSpec(5500.0, 14)) for x in range(600)]
    products = ["cell-image-batch", "pixel-table-batch", "tfrecord-batch", "cell-image", "pixel-table"]
    plan = plan_job([rows], products, bands=14, concurrent_tasks=2)
    got = {p.product: p for p in plan.products}
    # 2,816 km batches: 512 cells of 5500 m a side, x 0..511 and 512..599; per cell: 600 tasks.
    assert [got[p].tasks for p in products] == [2, 2, 2, 600, 600]
    assert [got[p].files for p in products] == [600, 2, 2, 600, 600]  # a file per cell; one CSV / TFRecord set
    px = 600 * 550 * 550
    assert got["cell-image"].bytes_written == got["cell-image-batch"].bytes_written == px * 14 * 4
    assert got["tfrecord-batch"].bytes_written == px * (14 + 2) * 4  # + x, y
    assert got["pixel-table-batch"].bytes_written == px * (14 + 12) * 10  # CSV text, an estimate
    model = TaskModel()
    assert got["cell-image"].task_seconds == pytest.approx(600 * model.seconds(0.3025))
    assert plan.to_json()["total_tasks"] == 1206


def test_a_batch_over_the_cell_cap_is_split_into_quadrants():
    rows = [cell_row(32633, x, y, GridSpec(5500.0, 14)) for x in range(20) for y in range(10)]
    (whole,) = plan_batches(rows)
    parts = plan_batches(rows, max_cells=30)
    assert all(len(b.cells) <= 30 for b in parts) and len(parts) >= 200 // 30
    assert sorted(c["name"] for b in parts for c in b.cells) == sorted(r["name"] for r in rows)
    assert all(b.name.startswith(whole.name + "_q") for b in parts)
    with pytest.raises(InputError, match="max_cells"):
        plan_batches(rows, max_cells=0)


def test_plan_cli_writes_total_tasks_and_interactive_requests(tmp_path, capsys):
    from gee_mining.cli.main import main

    out = tmp_path / "plan.json"
    assert main(["plan", "--polygons", "tests/data/squares.geojson", "--levels", "5500,2750",
                 "--products", "cell-image-batch,cell-image", "--json", str(out)]) == 0  # fmt: skip
    plan = json.loads(out.read_text())
    per_cell = sum(p["tasks"] for p in plan["products"] if p["product"] == "cell-image")
    cells = sum(p["cells"] for p in plan["products"] if p["product"] == "cell-image")
    assert plan["total_tasks"] == sum(p["tasks"] for p in plan["products"]) and per_cell == cells > 0
    # the per-cell product's cells no scene covers fail before any task: one scene count per 500 cells a level
    checks = sum(-(-p["cells"] // 500) for p in plan["products"] if p["product"] == "cell-image")
    assert plan["interactive_requests"] == checks > 0 and plan["task_model"]["sources"]
    assert "total_tasks" in capsys.readouterr().out


def _csv_rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _by_cell(rows: list[dict]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for r in rows:
        out.setdefault(r["cell"], []).append(tuple(sorted(r.items())))
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.slow
def test_a_batched_pixel_table_holds_each_cells_own_table(engine, sim_world, tmp_path):
    """645 m cells (65 px lattices, 2 x 2 a file block): neighbouring lattices share a pixel column, which
    belongs to both cells' tables. sampleRegions takes every pixel (no sampling), so equality is exact."""
    ee, eng, storage = engine
    polygons = sim_world.asset_ids["mines"]
    rows = _world_cells(sim_world, 645.0, 20)[:3]
    batched = _job(tmp_path, "ptb", "pixel-table-batch", rows, polygons, files_per_side=1)
    single = _job(tmp_path, "pts", "pixel-table", rows, polygons)
    result = run_job(ee, batched, tmp_path / "ptb.sqlite", progress=None, poll_interval=0.05, timeout=300)
    assert result.ok, result.failed
    assert run_job(ee, single, tmp_path / "pts.sqlite", progress=None, poll_interval=0.05, timeout=300).ok
    members = sqlite3.connect(tmp_path / "ptb.sqlite").execute("SELECT cell, file FROM members").fetchall()
    assert sorted(m[0] for m in members) == sorted(r["name"] for r in rows)
    got = {}
    for uri in {m[1] for m in members}:
        got.update(_by_cell(_csv_rows(storage / uri.removeprefix("gs://"))))
    assert sorted(got) == sorted(r["name"] for r in rows)  # every row names one of the batch's cells
    for row in rows:
        want = _by_cell(_csv_rows(storage / BUCKET / "pts" / f"{row['name']}.csv"))[row["name"]]
        assert got[row["name"]] == want and len(want) > 100, row["name"]
        grid = pixel_grid(row)
        for rec in map(dict, got[row["name"]]):  # position: the pixel centre in the cell's own lattice
            assert float(rec["x"]) == grid.transform[2] + 10 * int(rec["col"]) + 5
            assert float(rec["y"]) == grid.transform[5] - 10 * int(rec["row"]) - 5
    # The first two cells share a lattice column: its pixels are in both tables.
    xs = [{dict(r)["x"] for r in got[row["name"]]} for row in rows[:2]]
    assert len(xs[0] & xs[1]) == 1


def _patches(storage, names) -> list[dict]:
    from gee_mining.local.service.tfrecord import decode_example, read_records

    out = []
    for name in sorted(names):
        out += [decode_example(r) for r in read_records((storage / name).read_bytes())]
    return out


def _run(ee, spec, ledger):
    result = run_job(ee, spec, ledger, progress=None, poll_interval=0.05, timeout=300)
    assert result.ok, result.failed
    return result


@pytest.mark.slow
def test_rehearsal_every_batched_product_at_one_level(engine, sim_world, tmp_path):
    """All batched products at one level (640 m, 4 cells and a hole, 4 x 4 cells a batch), limits on:
    tasks as planned, no interactive request, no task refused; TFRecord patches equal the per-cell export's."""
    ee, eng, storage = engine
    from gee_mining.local.service.router import INTERACTIVE

    polygons = sim_world.asset_ids["mines"]
    world = _world_cells(sim_world, 640.0, 19)
    squares: dict[tuple, list[dict]] = {}
    for c in world:  # batches of 4 x 4 cells from the zone origin
        squares.setdefault((c["cell_x"] // 4, c["cell_y"] // 4), []).append(c)
    big, other = sorted(squares.values(), key=len, reverse=True)[:2]
    xs, ys = {c["cell_x"] for c in big}, {c["cell_y"] for c in big}
    assert len(xs) >= 2 and len(ys) >= 2
    # The hole: a corner cell of the big square's rectangle, which the other cells still span.
    corner = {(c["cell_x"], c["cell_y"]): c for c in big}
    hole = corner[min(xs), max(ys)]
    rows = [corner[max(xs), max(ys)], corner[min(xs), min(ys)], corner[max(xs), min(ys)], other[0]]
    products = ["cell-image-batch", "pixel-table-batch", "tfrecord-batch"]
    plan = plan_job([rows], products, bands=15, files_per_side=4)
    batches = {(r["cell_x"] // 4, r["cell_y"] // 4) for r in rows}
    assert len(batches) == 2
    extra = {"cell-image-batch": {}, "pixel-table-batch": {}, "tfrecord-batch": {"patch_size": 32}}
    for product in products:
        spec = _job(tmp_path, product, product, rows, polygons, files_per_side=4, **extra[product])
        eng.router.calls.clear()
        ops_before = len(ee.data.listOperations())
        result = _run(ee, spec, tmp_path / f"{product}.sqlite")
        calls = dict(eng.router.calls)
        tasks = len(ee.data.listOperations()) - ops_before
        planned = next(p for p in plan.products if p.product == product)
        assert tasks == result.submitted == planned.tasks == len(batches), product
        assert sum(calls.get(k, 0) for k in INTERACTIVE) == plan.interactive_requests == 0, (product, calls)
    assert plan.total_tasks == 3 * len(batches)
    # The TFRecord patches: each names its cell by its x/y bands, and equals the cell's own patch.
    single = _job(tmp_path, "tfs", "cell-image", rows, polygons, format="TFRecord", patch_size=32)
    _run(ee, single, tmp_path / "tfs.sqlite")
    got = _patches(storage / BUCKET, [n.relative_to(storage / BUCKET) for n in (storage / BUCKET / "tfrecord-batch")
                                      .glob("*.tfrecord.gz")])  # fmt: skip
    kept = dropped = 0
    for row in rows:
        grid = pixel_grid(row)
        own = _patches(storage / BUCKET, [f"tfs/{row['name']}-00000.tfrecord.gz"])
        assert len(own) == 4  # 64 px: 2 x 2 patches of 32, row-major (the mixer's order)
        for k, patch in enumerate(own):
            r, c = divmod(k, 2)
            x0 = grid.transform[2] + c * 320 + 5
            y0 = grid.transform[5] - r * 320 - 5
            match = [p for p in got if p["x"][0] == x0 and p["y"][0] == y0]
            masked = np.zeros(32 * 32, bool)
            for values in patch.values():
                masked |= values == -9999  # defaultValue = nodata
            if masked.mean() > 0.5:  # maxMaskedRatio 0.5: dropped
                assert match == []
                dropped += 1
                continue
            assert len(match) == 1, (row["name"], k)
            kept += 1
            xs = match[0]["x"].reshape(32, 32)
            assert (xs[:, 1:] - xs[:, :-1] == 10).all() and np.floor(xs / 640).min() == row["cell_x"]
            assert set(match[0]) == set(patch) | {"x", "y"}
            for name, values in patch.items():
                np.testing.assert_array_equal(match[0][name], values, err_msg=f"{row['name']} patch {k} {name}")
    # Every batched patch is one of the cells' patches: none outside the cells (the hole's included).
    assert kept == len(got) and kept + dropped == 4 * len(rows) and kept > 0
    # The hole lies inside a batch's rectangle: its patches, all masked, were computed and dropped.
    exported = sum((b.grid.width // 32) * (b.grid.height // 32) for b in plan_batches(rows, files_per_side=4))
    assert exported >= kept + dropped + 4
    assert not [p for p in got if np.floor(p["x"] / 640).min() == hole["cell_x"] and
                np.floor(p["y"] / 640).min() == hole["cell_y"]]  # fmt: skip


def test_tfrecord_batch_patch_size_and_masked_ratio_are_checked(tmp_path):
    from gee_mining.batch.products import patch_size_of

    rows = [cell_row(32721, x, -3, GridSpec(size, 0)) for size in (5500.0, 1375.0) for x in (100, 101)]
    big, small = plan_batches(rows[:2])[0], plan_batches(rows[2:])[0]
    job = _job(tmp_path, "tfb", "tfrecord-batch", rows[:2], "projects/p/assets/mines")
    # Defaults: the largest divisor of the file block up to 128 (550 = 2 x 5^2 x 11; 275 = 5^2 x 11).
    assert (patch_size_of(big, job), patch_size_of(small, job)) == (110, 55)
    with pytest.raises(InputError, match="does not divide the 275 px file block"):
        patch_size_of(small, _job(tmp_path, "tfc", "tfrecord-batch", rows[2:], "projects/p/assets/mines",
                                  patch_size=110))  # fmt: skip
    with pytest.raises(InputError, match="max_masked_ratio"):
        _job(tmp_path, "tfd", "tfrecord-batch", rows[:2], "projects/p/assets/mines", max_masked_ratio=1.5)
    with pytest.raises(InputError, match="margin"):  # not a parameter of the batched product: refused by name
        _job(tmp_path, "tfe", "tfrecord-batch", rows[:2], "projects/p/assets/mines", margin=16)

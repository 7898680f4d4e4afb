"""Batch export jobs through the real ``ee`` client against the local engine, into emulated Cloud Storage.

Checked: every cell exported exactly once (files listed with the official google-cloud-storage
client and counted by name), a second run submits nothing (the engine's operations counted
with ``ee.data.listOperations``), a ledger left with SUBMITTING rows (a crash between the
ledger write and the engine's answer) resumes to exactly one operation per cell, GeoTIFFs on
the cell's lattice (read with rasterio against ``pixel_grid``), bad spec fields -> InputError.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sqlite3
import time

import pytest

from gee_mining.batch.jobs import Ledger, is_transient, run_job
from gee_mining.batch.spec import JobSpec, load_spec, parse_spec
from gee_mining.errors import InputError
from gee_mining.io.grid_table import read_grid_table

BUCKET = "jobs"
SIZE = 1375.0
SCALE = 55.0  # 25 x 25 px per cell: cheap


@pytest.fixture(scope="module")
def emulated(ee_local, engine_catalog, tmp_path_factory):
    """``ee`` against an engine whose Cloud Storage is the emulator; (ee, engine)."""
    import gee_mining

    conn = gee_mining.connect(
        "local",
        project="gee-mining-test",
        catalog=engine_catalog,
        storage_root=tmp_path_factory.mktemp("jobs-storage"),
        storage="emulator",
    )
    conn.local_engine.storage_client().create_bucket(BUCKET)  # as a user makes it before a job: tests run alone
    yield ee_local, conn.local_engine
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


@pytest.fixture(autouse=True)
def _back_to_the_test_engine():
    """Override conftest's: this module keeps its emulator engine for all its tests."""
    yield


def _cells(path, n=8):
    rows = [
        {"name": f"c16_{i}", "zoom": 16, "label": 1, "epsg": 32633, "cell_x": 250 + i % 4, "cell_y": 4230 + i // 4,
         "cell_size": SIZE}
        for i in range(n)
    ]  # fmt: skip
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def _spec(tmp_path, name, product="cell-geotiff", n=8, **params):
    cells = tmp_path / f"{name}.csv"
    rows = _cells(cells, n)
    spec = parse_spec({
        "name": name, "product": product, "cells": str(cells),
        "destination": {"bucket": BUCKET, "prefix": f"runs/{name}"},
        "params": {"scale": SCALE, **params} if product not in ("grid-table", "cell-image", "pixel-table") else params,
        "max_running": 2,
    })  # fmt: skip
    return spec, rows


def _blobs(engine, prefix):
    return sorted(b.name for b in engine.storage_client().list_blobs(BUCKET, prefix=prefix))


def _ops(ee):
    return ee.data.listOperations()


def _ops_of(ee, spec):
    return [o for o in _ops(ee) if o["metadata"].get("description", "").startswith(spec.name + "_")]


def test_geotiff_job_exports_each_cell_once_and_rerun_submits_nothing(emulated, tmp_path):
    import rasterio

    from gee_mining.contracts.lattice import pixel_grid

    ee, engine = emulated
    spec, rows = _spec(tmp_path, "geo8", value=7.0)
    ledger = tmp_path / "geo8.sqlite"
    lines = []
    result = run_job(ee, spec, ledger, progress=lines.append, poll_interval=0.05, timeout=120)
    assert result.ok and result.submitted == 8
    assert result.counts["SUCCEEDED"] == 8
    names = _blobs(engine, "runs/geo8/")
    assert names == sorted(f"runs/geo8/{r['name']}.tif" for r in rows)
    assert len(_ops_of(ee, spec)) == 8
    # The file lies on the cell's lattice and holds the constant.
    blob = engine.storage_client().bucket(BUCKET).blob(f"runs/geo8/{rows[5]['name']}.tif").download_as_bytes()
    path = tmp_path / "one.tif"
    path.write_bytes(blob)
    grid = pixel_grid(rows[5], scale=SCALE)
    with rasterio.open(path) as ds:
        assert (ds.width, ds.height) == (grid.width, grid.height) == (25, 25)
        assert ds.crs.to_epsg() == 32633
        assert tuple(ds.transform)[:6] == (SCALE, 0.0, grid.transform[2], 0.0, -SCALE, grid.transform[5])
        assert (ds.read(1) == 7.0).all()
    # The ledger: one row per cell, each with its operation and the file's URI.
    db = sqlite3.connect(ledger)
    got = db.execute("SELECT cell, state, operation, attempts, uris FROM cells ORDER BY cell").fetchall()
    assert [g[0] for g in got] == sorted(r["name"] for r in rows)
    assert all(g[1] == "SUCCEEDED" and g[2] and g[3] == 1 and ".tif" in g[4] for g in got)
    assert len({g[2] for g in got}) == 8
    # A second run submits nothing new.
    before = len(_ops(ee))
    again = run_job(ee, spec, ledger, progress=None, poll_interval=0.05, timeout=60)
    assert again.submitted == 0 and again.ok
    assert len(_ops(ee)) == before
    assert _blobs(engine, "runs/geo8/") == names


def test_never_more_running_than_max_running(emulated, tmp_path):
    ee, engine = emulated
    spec, _ = _spec(tmp_path, "limit", n=6)
    spec = JobSpec(**{**spec.__dict__, "max_running": 1})
    seen = []

    def watching(seconds):  # observes the engine's operations between polls; changes nothing
        seen.append(sum(o["metadata"]["state"] in ("PENDING", "RUNNING") for o in _ops_of(ee, spec)))
        time.sleep(seconds)

    result = run_job(ee, spec, tmp_path / "limit.sqlite", progress=None, poll_interval=0.02, timeout=120,
                     sleep=watching)  # fmt: skip
    assert result.ok and result.submitted == 6
    assert seen and max(seen) <= 1
    assert len(_blobs(engine, "runs/limit/")) == 6


def test_list_operations_pages_like_earth_engine(emulated, monkeypatch):
    """``operations.list`` answers pages of ``pageSize`` with ``nextPageToken``: the ``ee`` client, asking 3 a page,
    gets every operation once, newest first, in ceil(n / 3) requests, and an operation started between two pages
    neither repeats nor hides one of the listing."""
    import math

    ee, engine = emulated
    for i in range(4):  # a few operations of our own, on top of the module's
        ee.batch.Export.table.toCloudStorage(
            ee.FeatureCollection([ee.Feature(None, {"i": i})]), description=f"pages_{i}", bucket=BUCKET,
            fileNamePrefix=f"pages/{i}",
        ).start()  # fmt: skip
    every = engine.operations.list()
    monkeypatch.setattr(ee.data, "_TASKLIST_PAGE_SIZE", 3)
    engine.router.calls.clear()
    listed = ee.data.listOperations()
    assert [o["name"] for o in listed] == [o["name"] for o in every]
    assert len({o["name"] for o in listed}) == len(every) >= 4
    assert engine.router.calls["list_operations"] == math.ceil(len(every) / 3)
    first, token = engine.operations.page(3)
    ee.batch.Export.table.toCloudStorage(
        ee.FeatureCollection([ee.Feature(None, {"i": 9})]), description="pages_late", bucket=BUCKET,
        fileNamePrefix="pages/late",
    ).start()  # fmt: skip
    second, _ = engine.operations.page(3, token)
    assert not {o["name"] for o in first} & {o["name"] for o in second}
    assert [o["name"] for o in first + second] == [o["name"] for o in every[:6]]
    with pytest.raises(Exception, match="Invalid page token"):
        engine.operations.page(3, "x9")


def test_the_launcher_polls_with_one_listing_per_round(emulated, tmp_path):
    """Each poll round is one ``listOperations`` (one request for up to 500 operations), never a request per
    cell: over the whole run, no ``getOperation`` and at most one listing per round, for 8 cells at once."""
    ee, engine = emulated
    spec, _ = _spec(tmp_path, "listing", n=8)
    spec = JobSpec(**{**spec.__dict__, "max_running": 8})
    assert len(_ops(ee)) < 500  # one page: the listing is one request
    rounds, counting = _counting_sleep()
    engine.router.calls.clear()
    result = run_job(ee, spec, tmp_path / "listing.sqlite", progress=None, poll_interval=0.05, timeout=120,
                     sleep=counting)  # fmt: skip
    calls = dict(engine.router.calls)
    assert result.ok and result.submitted == 8
    assert calls.get("get_operation", 0) == 0
    assert 1 <= calls["list_operations"] <= len(rounds) + 1
    assert calls["export_image"] == 8


def _counting_sleep():
    """A list of the launcher's sleeps (one a polling round) and the sleep that records them."""
    rounds: list[float] = []

    def counting(seconds):
        rounds.append(seconds)
        time.sleep(seconds)

    return rounds, counting


def _table_exports(ee, n, tag):
    """``n`` small table exports started now (the project's newest operations); their operation names."""
    names = []
    for i in range(n):  # one after another: each is newer than the one before
        task = ee.batch.Export.table.toCloudStorage(
            ee.FeatureCollection([ee.Feature(None, {"i": i})]), description=f"{tag}_{i}", bucket=BUCKET,
            fileNamePrefix=f"{tag}/{i}",
        )  # fmt: skip
        task.start()
        names.append(task.name)
    return names


def test_find_operations_reads_the_listing_only_as_far_as_needed(emulated, monkeypatch):
    """Earth Engine lists a project's operations newest first, ``pageSize`` a page with ``nextPageToken``. Asked
    for the 6 newest with 3 a page, ``find_operations`` reads 2 pages (not the whole listing) and returns them
    as the client's full ``listOperations`` has them; asked for one old operation, it stops after the first page
    (one ``getOperation`` is no dearer than the next page) and leaves it to ``getOperation``; asked for 6 spread
    over the listing, it reads on while more are missing than pages were read."""
    from gee_mining.batch.tasks import find_operations

    ee, engine = emulated
    names = _table_exports(ee, 8, "find")
    every = {o["name"]: o for o in ee.data.listOperations()}
    pages = math.ceil(len(every) / 3)
    assert pages >= 4  # else reading every page would pass too
    engine.router.calls.clear()
    found = find_operations(ee, names[-6:], page_size=3)
    assert engine.router.calls["list_operations"] == 2
    assert sorted(found) == sorted(names[-6:])
    assert all(found[n]["metadata"]["description"] == every[n]["metadata"]["description"] for n in found)
    oldest = list(every)[-1]
    engine.router.calls.clear()
    assert find_operations(ee, [oldest], page_size=3) == {}
    assert engine.router.calls["list_operations"] == 1
    spread = [*names[-3:], *list(every)[-3:]]  # 3 on the first page, 3 on the last
    engine.router.calls.clear()
    found = find_operations(ee, spread, page_size=3)
    assert 1 < engine.router.calls["list_operations"] <= pages
    assert set(found) <= set(spread) and set(names[-3:]) <= set(found)
    assert len(spread) - len(found) <= engine.router.calls["list_operations"]


def test_a_poll_round_reads_the_first_pages_only(emulated, tmp_path, monkeypatch):
    """A job of 8 cells, 3 at once, in a project whose listing is many pages (3 operations a page): each round
    reads about one page and a few operations on their own, never the whole listing; every cell is exported."""
    from gee_mining.batch import tasks

    ee, engine = emulated
    _table_exports(ee, 12, "older")
    monkeypatch.setattr(tasks, "OPERATIONS_PAGE", 3)
    pages = math.ceil(len(ee.data.listOperations()) / 3)
    assert pages >= 5
    spec, _ = _spec(tmp_path, "getting", n=8)
    spec = JobSpec(**{**spec.__dict__, "max_running": 3})
    rounds, counting = _counting_sleep()
    engine.router.calls.clear()
    result = run_job(ee, spec, tmp_path / "getting.sqlite", progress=None, poll_interval=0.05, timeout=120,
                     sleep=counting)  # fmt: skip
    calls = dict(engine.router.calls)
    assert result.ok and result.submitted == 8 and calls["export_image"] == 8
    assert 1 <= calls["list_operations"] <= len(rounds) + 1  # a whole listing a round would be >= 5 a round
    assert calls.get("get_operation", 0) <= len(rounds) + 1


def test_resume_after_crash_in_submitting(emulated, tmp_path):
    """A crash after the ledger said SUBMITTING (and the engine may or may not have heard): one op per cell."""
    ee, engine = emulated
    spec, rows = _spec(tmp_path, "crash", product="grid-table")
    ledger_path = tmp_path / "crash.sqlite"
    ledger = Ledger(ledger_path)
    ledger.bind(spec)
    ledger.add_cells(spec, rows)
    # Cells 0-2: the engine got the request before the crash (submitted with the ledger's request id).
    from gee_mining.batch.products import PRODUCTS

    for row in rows[:3]:
        task = PRODUCTS["grid-table"](ee, row, spec)
        task._request_id = spec.request_id(row["name"])
        task.start()
        ledger.update(row["name"], state="SUBMITTING", attempts=1)
    # Cells 3-4: the crash came before the engine heard of them.
    for row in rows[3:5]:
        ledger.update(row["name"], state="SUBMITTING", attempts=1)
    ledger.close()
    assert len(_ops_of(ee, spec)) == 3

    result = run_job(ee, spec, ledger_path, progress=None, poll_interval=0.05, timeout=120)
    assert result.ok
    ops = _ops_of(ee, spec)
    assert len(ops) == 8
    assert sorted(o["metadata"]["description"] for o in ops) == sorted(f"crash_{r['name']}" for r in rows)
    assert _blobs(engine, "runs/crash/") == sorted(f"runs/crash/{r['name']}.csv" for r in rows)
    # Each file holds its own cell (the grid-table product writes the cell's row).
    text = engine.storage_client().bucket(BUCKET).blob(f"runs/crash/{rows[4]['name']}.csv").download_as_text()
    parsed = list(csv.DictReader(text.splitlines()))
    assert len(parsed) == 1 and parsed[0]["name"] == rows[4]["name"]


def test_deterministic_task_failure_is_not_retried(emulated, tmp_path):
    ee, engine = emulated
    # A negative pixel size can never work: every cell fails before submission, with the reason.
    spec, rows = _spec(tmp_path, "bad", n=2, scale=-10.0)
    result = run_job(ee, spec, tmp_path / "bad.sqlite", progress=None, poll_interval=0.02, timeout=30)
    assert result.counts["FAILED"] == 2 and result.submitted == 0
    assert all("positive pixel size" in msg for _, msg in result.failed)
    assert _ops_of(ee, spec) == []


def test_request_ids_are_deterministic(tmp_path):
    spec, _ = _spec(tmp_path, "ids", n=1)
    same, _ = _spec(tmp_path, "ids", n=1)
    other, _ = _spec(tmp_path, "ids", n=1, value=2.0)
    assert spec.request_id("a") == same.request_id("a")
    assert spec.request_id("a") != spec.request_id("b") != other.request_id("b")
    assert spec.request_id("a") != other.request_id("a")
    assert spec.request_id("a", 1) != spec.request_id("a")


def test_ledger_of_another_job_is_refused(tmp_path):
    a, _ = _spec(tmp_path, "one", n=1)
    b, _ = _spec(tmp_path, "two", n=1)
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.bind(a)
    with pytest.raises(InputError, match="belongs to job"):
        ledger.bind(b)


@pytest.mark.parametrize(
    "message, transient",
    [
        ("HTTP Error 429: Too Many Requests", True),
        ("Too many tasks already in the queue (3000). Please wait for some of them to complete.", True),
        ("<HttpError 503 'Service Unavailable'>", True),
        ("An internal error has occurred (request: 1234).", True),
        ("User memory limit exceeded.", False),
        ("Computation timed out.", False),
        ("Invalid argument: 'crs' must be a string", False),
        ("Image.select: Pattern 'B99' did not match any bands.", False),
    ],
)
def test_error_classes(message, transient):
    assert is_transient(message) is transient


BASE = {"name": "j", "product": "cell-geotiff", "cells": "g.csv", "destination": {"bucket": "my-bucket"}}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"name": None}, "name"),
        ({"name": "a b/c"}, "name"),
        ({"product": "video"}, "product"),
        ({"cells": "g.shp"}, "cells"),
        ({"destination": None}, "destination"),
        ({"destination": {"bucket": "Bad_Bucket!"}}, "bucket"),
        ({"destination": {"bucket": "ok-bucket", "prefix": 3}}, "prefix"),
        ({"engine": "gcp"}, "engine"),
        ({"max_running": 0}, "max_running"),
        ({"max_running": True}, "max_running"),
        ({"params": [1]}, "params"),
        ({"bucket": "x"}, "bucket"),
    ],
)
def test_bad_spec_fields(change, field):
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(InputError, match=field):
        parse_spec(data)


def test_example_specs_parse():
    from pathlib import Path

    specs = sorted((Path(__file__).resolve().parents[1] / "export_jobs").glob("*.toml"))
    assert len(specs) >= 2
    for path in specs:
        spec = load_spec(path)
        assert spec.path == path and spec.max_running >= 1


def test_cells_file_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_grid_table(tmp_path / "none.csv")
    (tmp_path / "g.csv").write_text("name,epsg\nx,32633\n")
    with pytest.raises(InputError, match="cell_x"):
        read_grid_table(tmp_path / "g.csv")


def test_engine_failure_is_recorded_once_and_not_retried(emulated, tmp_path):
    """A task the engine fails (a band that does not exist) ends FAILED with the engine's message, one operation."""
    from gee_mining.batch import jobs, products

    def missing_band(ee, row, spec):
        return ee.batch.Export.image.toCloudStorage(
            ee.Image.constant(1).select("nope"), description=products._description(spec, row), bucket=spec.bucket,
            fileNamePrefix=products._file_prefix(spec, row), crs="EPSG:32633", crsTransform=[55, 0, 0, 0, -55, 0],
            dimensions="4x4",
        )  # fmt: skip

    jobs.PRODUCTS["test-missing-band"] = missing_band
    try:
        spec, _ = _spec(tmp_path, "enginefail", product="test-missing-band", n=2)
        ledger = tmp_path / "enginefail.sqlite"
        result = run_job(ee_ := emulated[0], spec, ledger, progress=None, poll_interval=0.02, timeout=60)
        assert result.counts["FAILED"] == 2
        assert all("nope" in msg for _, msg in result.failed), result.failed
        assert len(_ops_of(ee_, spec)) == 2
        again = run_job(ee_, spec, ledger, progress=None, poll_interval=0.02, timeout=60)
        assert again.submitted == 0 and len(_ops_of(ee_, spec)) == 2
    finally:
        del jobs.PRODUCTS["test-missing-band"]


def test_transient_submission_errors_are_retried_with_backoff(emulated, tmp_path):
    """A product whose first two submissions raise 429 (the engine has no fault injection yet): retried, one file."""
    from gee_mining.batch import jobs, products

    ee, engine = emulated
    calls = {"n": 0}

    def flaky(ee, row, spec):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ee.EEException("HTTP Error 429: Too Many Requests")
        return products.cell_geotiff(ee, row, spec)

    jobs.PRODUCTS["test-flaky"] = flaky
    waits = []
    try:
        spec, rows = _spec(tmp_path, "flaky", product="test-flaky", n=1)
        result = run_job(ee, spec, tmp_path / "flaky.sqlite", progress=None, poll_interval=0.0, timeout=60,
                         backoff_base=0.01, sleep=waits.append)  # fmt: skip
    finally:
        del jobs.PRODUCTS["test-flaky"]
    assert result.ok and result.submitted == 1
    assert len(_ops_of(ee, spec)) == 1
    assert _blobs(engine, "runs/flaky/") == [f"runs/flaky/{rows[0]['name']}.tif"]
    row = sqlite3.connect(tmp_path / "flaky.sqlite").execute("SELECT attempts, error FROM cells").fetchone()
    assert row == (3, None)


def test_succeeded_cells_are_verified_with_checksums(emulated, tmp_path):
    """After SUCCEEDED the files are looked up at the destination; the ledger keeps each file's CRC32C,
    which equals google-crc32c's checksum of the bytes downloaded with google-cloud-storage."""
    import base64

    import google_crc32c

    from gee_mining.batch.jobs import Ledger

    ee, engine = emulated
    spec, rows = _spec(tmp_path, "verify", n=3, value=2.0)
    ledger_path = tmp_path / "verify.sqlite"
    assert run_job(ee, spec, ledger_path, progress=None, poll_interval=0.05, timeout=120).ok
    ledger = Ledger(ledger_path)
    try:
        for row in ledger.rows():
            files = json.loads(row["checksum"])
            assert list(files) == [f"gs://{BUCKET}/runs/verify/{row['cell']}.tif"]
            data = engine.storage_client().bucket(BUCKET).blob(f"runs/verify/{row['cell']}.tif").download_as_bytes()
            assert files[next(iter(files))] == base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
    finally:
        ledger.close()


def test_a_task_that_succeeds_without_its_files_fails_verification(emulated, tmp_path):
    """A product writing under another name: the task succeeds, the cell's files are missing, the cell FAILS."""
    from gee_mining.batch import jobs, products

    ee, engine = emulated
    spec, rows = _spec(tmp_path, "nofiles", n=2, value=1.0)

    def elsewhere(ee, row, spec):
        task = products.cell_geotiff(ee, row, spec)
        task.config["fileExportOptions"]["cloudStorageDestination"]["filenamePrefix"] = f"other/{row['name']}"
        return task

    jobs.PRODUCTS["elsewhere-test"] = elsewhere
    try:
        spec = jobs.JobSpec(**{**spec.__dict__, "product": "elsewhere-test"})
        result = run_job(ee, spec, tmp_path / "nofiles.sqlite", progress=None, poll_interval=0.05, timeout=120)
    finally:
        del jobs.PRODUCTS["elsewhere-test"]
    assert result.counts["FAILED"] == 2
    assert all("verification" in msg and "holds no file" in msg for _, msg in result.failed)


def test_a_one_file_product_is_verified_by_name(emulated, tmp_path):
    """A per-cell CSV (grid-table) is checked by its name, not by listing the destination: the ledger's checksum
    of each cell is Cloud Storage's own (the official client's crc32c of the cell's one object); a task writing
    under another name still fails verification."""
    from gee_mining.batch import jobs, products

    ee, engine = emulated
    spec, rows = _spec(tmp_path, "byname", product="grid-table", n=3)
    result = run_job(ee, spec, tmp_path / "byname.sqlite", progress=None, poll_interval=0.05, timeout=120)
    assert result.ok
    blobs = {b.name: b.crc32c for b in engine.storage_client().list_blobs(BUCKET, prefix="runs/byname/")}
    assert sorted(blobs) == sorted(f"runs/byname/{r['name']}.csv" for r in rows)
    ledger = Ledger(tmp_path / "byname.sqlite")
    try:
        for row in ledger.rows():
            name = f"runs/byname/{row['cell']}.csv"
            assert json.loads(row["checksum"]) == {f"gs://{BUCKET}/{name}": blobs[name]}
    finally:
        ledger.close()

    def elsewhere(ee, row, spec):
        task = products.grid_table(ee, row, spec)
        task.config["fileExportOptions"]["cloudStorageDestination"]["filenamePrefix"] = f"other/{row['name']}"
        return task

    jobs.PRODUCTS["elsewhere-test"] = elsewhere
    try:
        spec = jobs.JobSpec(
            **{**spec.__dict__, "product": "elsewhere-test", "name": "byname2", "prefix": "runs/byname2"}
        )
        result = run_job(ee, spec, tmp_path / "byname2.sqlite", progress=None, poll_interval=0.05, timeout=120)
    finally:
        del jobs.PRODUCTS["elsewhere-test"]
    assert result.counts["FAILED"] == 3
    assert all("holds no file" in msg for _, msg in result.failed)


def test_retry_failed_requeues_with_new_request_ids_and_cancel_stops_tasks(emulated, tmp_path):
    from gee_mining.batch.jobs import JobError, Ledger, cancel_job, retry_failed

    ee, engine = emulated
    spec, rows = _spec(tmp_path, "again", n=2, scale=-10.0)
    ledger_path = tmp_path / "again.sqlite"
    run_job(ee, spec, ledger_path, progress=None, poll_interval=0.02, timeout=30)
    before = {r["cell"]: r["request_id"] for r in Ledger(ledger_path).rows()}
    assert retry_failed(spec, ledger_path) == 2
    ledger = Ledger(ledger_path)
    after = {r["cell"]: (r["state"], r["generation"], r["request_id"]) for r in ledger.rows()}
    ledger.close()
    assert all(s == "PENDING" and g == 1 and rid != before[c] for c, (s, g, rid) in after.items())
    assert all(rid == spec.request_id(c, 1) for c, (_, _, rid) in after.items())

    big, _ = _spec(tmp_path, "cancelme", n=4, value=3.0)
    with pytest.raises(JobError, match="resume"):
        run_job(ee, big, tmp_path / "cancel.sqlite", progress=None, poll_interval=0.0, timeout=0.0)
    active = Ledger(tmp_path / "cancel.sqlite").rows(("SUBMITTED", "RUNNING"))
    assert active  # the run stopped with tasks in flight
    cancelled = cancel_job(ee, big, tmp_path / "cancel.sqlite")
    ledger = Ledger(tmp_path / "cancel.sqlite")
    rows = {r["cell"]: r for r in ledger.rows()}
    ledger.close()
    gone = [r for r in rows.values() if r["state"] == "FAILED" and "cancelled" in (r["error"] or "")]
    assert len(gone) == cancelled
    for r in gone:  # the engine agrees: those operations were cancelled, not finished
        assert ee.data.getOperation(r["operation"])["metadata"]["state"] in ("CANCELLED", "CANCELLING")
    # resuming finishes every cell that was not cancelled, and submits nothing twice
    result = run_job(ee, big, tmp_path / "cancel.sqlite", progress=None, poll_interval=0.05, timeout=120)
    assert result.counts["SUCCEEDED"] == 4 - cancelled and result.counts["FAILED"] == cancelled
    assert len(_ops_of(ee, big)) == 4


@pytest.mark.slow
def test_a_job_under_injected_faults_loses_nothing_and_duplicates_nothing(engine_catalog, tmp_path):
    """503s on submissions and polls, tasks dying with internal errors, slow tasks: every cell ends with
    exactly one successful export, its file at the destination, and a re-run submits nothing."""
    import ee

    import gee_mining

    faults = {"transient_rate": 0.25, "task_failure_rate": 0.3, "slow_task_rate": 0.3, "slow_task_s": 0.2, "seed": 7}
    conn = gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog,
                              storage_root=tmp_path / "st", engine_settings={"faults": faults})  # fmt: skip
    engine = conn.local_engine
    spec, rows = _spec(tmp_path, "faulty", n=8, value=5.0)
    result = run_job(ee, spec, tmp_path / "faulty.sqlite", progress=None, poll_interval=0.02, timeout=300,
                     backoff_base=0.01, max_attempts=12)  # fmt: skip
    assert result.ok, result.failed
    injected = engine.faults.injected
    assert injected["transient"] > 0 and injected["task_failure"] > 0 and injected["slow"] > 0
    ops = _ops_of(ee, spec)
    succeeded = [o for o in ops if o["metadata"]["state"] == "SUCCEEDED"]
    assert sorted(o["metadata"]["description"] for o in succeeded) == sorted(f"faulty_{r['name']}" for r in rows)
    assert len(ops) == 8 + sum(1 for o in ops if o["metadata"]["state"] == "FAILED")
    files = sorted(p.name for p in (tmp_path / "st" / BUCKET / "runs" / "faulty").glob("*.tif"))
    assert files == sorted(f"{r['name']}.tif" for r in rows)
    again = run_job(ee, spec, tmp_path / "faulty.sqlite", progress=None, poll_interval=0.02, timeout=60)
    assert again.submitted == 0 and again.ok


def test_cells_over_the_memory_limit_are_split_into_their_four_children(engine_catalog, tmp_path):
    """With split_failed, a cell whose export fails with "User memory limit exceeded" (25 x 25 px over a limit of
    400 px) becomes SPLIT and its 4 children (13 x 13 px each) are exported once each; the children tile the
    parent exactly (shapely); without split_failed the cell ends FAILED with the message, and a depth limit
    stops the splitting."""
    import ee
    import rasterio
    import shapely

    import gee_mining
    from gee_mining.batch.jobs import Ledger

    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog, storage_root=tmp_path / "st",
                              engine_settings={"faults": {"memory_limit_pixels": 400}})  # fmt: skip
    spec, rows = _spec(tmp_path, "big", n=3, value=3.0)
    plain = run_job(ee, spec, tmp_path / "plain.sqlite", progress=None, poll_interval=0.02, timeout=60)
    assert plain.counts["FAILED"] == 3 and not plain.ok
    assert all("User memory limit exceeded" in m for _, m in plain.failed)

    split = JobSpec(**{**spec.__dict__, "name": "bigsplit", "split_failed": True})
    lines: list[str] = []
    result = run_job(ee, split, tmp_path / "split.sqlite", progress=lines.append, poll_interval=0.02, timeout=120)
    assert result.ok, result.failed
    assert result.counts["SPLIT"] == 3 and result.counts["SUCCEEDED"] == 12
    assert sum("SPLIT" in line for line in lines) == 3
    ops = _ops_of(ee, split)
    succeeded = sorted(o["metadata"]["description"] for o in ops if o["metadata"]["state"] == "SUCCEEDED")
    children = sorted(f"{r['name']}_q{k}" for r in rows for k in range(4))
    assert succeeded == sorted(f"bigsplit_{c}" for c in children)
    folder = tmp_path / "st" / BUCKET / "runs" / "big"
    assert sorted(p.name for p in folder.glob("*.tif")) == sorted(f"{c}.tif" for c in children)
    for r in rows:
        x0, y0 = r["cell_x"] * SIZE, r["cell_y"] * SIZE
        parent = shapely.box(x0, y0, x0 + SIZE, y0 + SIZE)
        squares = []
        for k in range(4):
            with rasterio.open(folder / f"{r['name']}_q{k}.tif") as ds:
                assert (ds.width, ds.height) == (13, 13) and (ds.read(1) == 3.0).all()
                left, bottom, right, top = ds.bounds
                assert left <= x0 + (k % 2) * SIZE / 2 and top >= y0 + SIZE - (k // 2) * SIZE / 2
            squares.append(shapely.box(x0 + (k % 2) * SIZE / 2, y0 + (1 - k // 2) * SIZE / 2,
                                       x0 + (k % 2 + 1) * SIZE / 2, y0 + (2 - k // 2) * SIZE / 2))  # fmt: skip
        assert shapely.union_all(squares).symmetric_difference(parent).area < 1e-6
    ledger = Ledger(tmp_path / "split.sqlite")
    assert {c["parent"] for c in ledger.split_cells()} == {r["name"] for r in rows}
    ledger.close()
    again = run_job(ee, split, tmp_path / "split.sqlite", progress=None, poll_interval=0.02, timeout=60)
    assert again.submitted == 0 and again.ok

    tight = JobSpec(**{**split.__dict__, "name": "tight", "max_split_depth": 0})
    stopped = run_job(ee, tight, tmp_path / "tight.sqlite", progress=None, poll_interval=0.02, timeout=60)
    assert stopped.counts["FAILED"] == 3 and all("max_split_depth" in m for _, m in stopped.failed)


def _serve(tmp_path, faults: dict, *extra: str):
    """``gee-mining serve`` in another process (Earth Engine's limits on): the process and its URL."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    serve = subprocess.Popen(
        [sys.executable, "-m", "gee_mining.cli", "serve", "--project", "gee-mining-test", "--storage",
         str(tmp_path / "st"), "--faults", json.dumps(faults), *extra],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    return serve, serve.stdout.readline().split(" on ")[1].split(" ")[0]


def _kill_and_finish(tmp_path, job, url: str, kills: int, seed: int, window: tuple[float, float],
                     once_started: bool = False):  # fmt: skip
    """Start the launcher (`gee-mining export run JOB --url URL`) and SIGKILL it after a random wait, ``kills``
    times; then one run to the end. That run's progress and result, and how many launchers the signal killed
    (a launcher that had already finished the job exits 0 and does not count). ``once_started``: the wait
    starts when the launcher has said its first line (its ledger is planned), so every kill lands inside the
    job, not in the interpreter's start (seconds on a busy machine)."""
    import random
    import signal
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = [sys.executable, "-m", "gee_mining.cli", "export", "run", str(job), "--url", url,
           "--project", "gee-mining-test", "--storage", str(tmp_path / "st")]  # fmt: skip
    rng = random.Random(seed)
    killed = 0
    for _ in range(kills):
        said = subprocess.PIPE if once_started else subprocess.DEVNULL  # progress lines go to stderr
        launcher = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=said, env=env, text=True)
        if once_started:
            launcher.stderr.readline()
        time.sleep(rng.uniform(*window))
        launcher.send_signal(signal.SIGKILL)
        launcher.communicate()
        killed += launcher.returncode == -signal.SIGKILL  # 0: it had finished the job before the signal
    final = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    return final.stderr + final.stdout, killed


def _stop(serve) -> str:
    """Stop the engine process (SIGINT: it reports its refusals); what it said."""
    import signal

    serve.send_signal(signal.SIGINT)
    try:
        return serve.communicate(timeout=30)[0]
    finally:
        serve.terminate()
        serve.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_of_the_launcher_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    """The launcher (`gee-mining export run`) killed with SIGKILL eight times at random moments while an
    engine in another process (`gee-mining serve`, slow tasks) keeps running; a last run finishes.
    Every cell then has exactly one operation (requestIds deduplicate resubmissions) and one file.
    The engine runs with Earth Engine's limits, a repeated requestId answered with an error (the default
    ``duplicate_request_id = "error"``) and a quota of 2 requests per second, so the launcher meets 429s
    (its submissions come 3 at once; its polls, one listing a second, would not)."""
    import ee

    import gee_mining

    serve, url = _serve(tmp_path, {"slow_task_rate": 1.0, "slow_task_s": 1.0}, "--limits", "requests_per_s=2")
    try:
        cells = tmp_path / "cells.csv"
        rows = _cells(cells, n=24)
        job = tmp_path / "kill.toml"
        job.write_text(
            f'name = "kill"\nproduct = "cell-geotiff"\ncells = "{cells}"\nmax_running = 3\n'
            f'[destination]\nbucket = "{BUCKET}"\nprefix = "runs/kill"\n[params]\nscale = {SCALE}\n'
        )
        said, killed = _kill_and_finish(tmp_path, job, url, kills=8, seed=11, window=(1.5, 3.5))
        assert killed == 8
        done_before = int(said.split(" already done")[0].rsplit(" ", 1)[1])
        assert done_before < 24  # the kills did interrupt the job: the last run still had cells to finish
        gee_mining.connect("local", project="gee-mining-test", url=url)
        ops = [o for o in ee.data.listOperations() if o["metadata"]["description"].startswith("kill_")]
        assert sorted(o["metadata"]["description"] for o in ops) == sorted(f"kill_{r['name']}" for r in rows)
        assert all(o["metadata"]["state"] == "SUCCEEDED" for o in ops)
        ledger = Ledger(tmp_path / "kill.ledger.sqlite")
        by_cell = {r["cell"]: r for r in ledger.rows()}
        ledger.close()
        assert all(r["state"] == "SUCCEEDED" for r in by_cell.values())
        assert sorted(r["operation"] for r in by_cell.values()) == sorted(o["name"] for o in ops)
        files = sorted(p.name for p in (tmp_path / "st" / BUCKET / "runs" / "kill").glob("*.tif"))
        assert files == sorted(f"{r['name']}.tif" for r in rows)
    finally:
        said = _stop(serve)
    assert int(said.split("refused: rate ")[1].split(",")[0]) > 0, said  # the launcher did meet 429s


@pytest.mark.slow
def test_sigkill_of_the_launcher_on_batched_exports_loses_and_duplicates_no_cell(tmp_path, sim_world, sim_catalog):
    """The same trial on ``cell-image-batch`` (several cells a task, several files a task) over the simulated
    world: after the kills and a last run, each batch has exactly one operation, SUCCEEDED; the ledger's
    ``members`` table holds every cell once with its file; and, read from the files themselves (rasterio
    bounds against each cell's lattice square), every cell lies in exactly one file of the destination."""
    import ee
    import rasterio
    import shapely

    import gee_mining
    from gee_mining.contracts.cells import GridSpec, cell_row
    from gee_mining.contracts.lattice import pixel_grid

    serve, url = _serve(tmp_path, {"slow_task_rate": 1.0, "slow_task_s": 2.0}, "--catalog", str(sim_catalog))
    start = time.time()
    try:
        x0, y0 = sim_world.grid["origin"]
        epsg, size = int(sim_world.grid["crs"].split(":")[1]), 640.0
        xs = range(math.ceil(x0 / size), math.floor((x0 + sim_world.grid["size_m"]) / size))
        ys = range(math.ceil((y0 - sim_world.grid["size_m"]) / size), math.floor(y0 / size))
        rows = [cell_row(epsg, x, y, GridSpec(size, 16)) for y in ys for x in xs]
        cells = tmp_path / "cells.csv"
        with open(cells, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["name", "zoom", "epsg", "cell_x", "cell_y", "cell_size", "label"])
            w.writeheader()
            w.writerows({**{k: r[k] for k in w.fieldnames if k != "label"}, "label": 1} for r in rows)
        job = tmp_path / "killb.toml"
        job.write_text(
            f'name = "killb"\nproduct = "cell-image-batch"\ncells = "{cells}"\nmax_running = 3\n'
            f'[destination]\nbucket = "{BUCKET}"\nprefix = "runs/killb"\n[params]\n'
            f'polygons = "{sim_world.asset_ids["mines"]}"\nstart = "2019-01-01"\nend = "2019-02-01"\n'
            "indices = []\nfiles_per_side = 2\n"
        )
        # every wait is shorter than one task (2 s), so at least the first launcher dies with its tasks in flight;
        # on a fast machine the later ones may find the job done and exit 0 (seen on CI: 9 of 9 done)
        said, killed = _kill_and_finish(tmp_path, job, url, kills=3, seed=5, window=(0.3, 1.8), once_started=True)
        assert killed >= 1  # the kills did interrupt the job
        planned = int(re.search(r"(\d+) batches \(\d+ new\), \d+ already", said).group(1))
        assert "(0 new)" in said  # the killed runs had planned the batches: the kills landed inside the job
        gee_mining.connect("local", project="gee-mining-test", url=url)
        ops = [o for o in ee.data.listOperations() if o["metadata"]["description"].startswith("killb_")]
        ledger = Ledger(tmp_path / "killb.ledger.sqlite")
        units, members = ledger.rows(), ledger.members()
        ledger.close()
        assert len(rows) > len(units) > 1 and all(u["state"] == "SUCCEEDED" for u in units)
        assert planned == len(units)  # the last run resumed the job the killed ones had planned
        assert sorted(o["metadata"]["description"] for o in ops) == sorted(f"killb_{u['cell']}" for u in units)
        assert all(o["metadata"]["state"] == "SUCCEEDED" for o in ops)
        assert sorted(m["cell"] for m in members) == sorted(r["name"] for r in rows)  # 0 lost
        folder = tmp_path / "st" / BUCKET / "runs" / "killb"
        files = sorted(folder.glob("*.tif"))
        assert sorted(f"gs://{BUCKET}/runs/killb/{p.name}" for p in files) == sorted({m["file"] for m in members})
        holding: dict[str, list[str]] = {r["name"]: [] for r in rows}
        for path in files:
            with rasterio.open(path) as ds:
                box = shapely.box(*ds.bounds)
            for r in rows:
                t = pixel_grid(r).transform
                if box.contains(shapely.box(t[2], t[5] - 64 * 10.0, t[2] + 64 * 10.0, t[5])):
                    holding[r["name"]].append(f"gs://{BUCKET}/runs/killb/{path.name}")
        assert holding == {m["cell"]: [m["file"]] for m in members}  # 0 duplicated: each cell in one file, its own
        print(f"batched SIGKILL trial: {len(rows)} cells, {len(units)} batches, {time.time() - start:.0f} s")
    finally:
        _stop(serve)


# --------------------------------------------------------------------------- the ledger's edges (issue 29, 27)


def test_cells_finished_while_the_engine_was_away_are_not_exported_again(emulated, tmp_path, engine_catalog):
    """A launcher stops with tasks in flight; they finish; the engine restarts (it forgets its operations).
    The next run finds the finished cells' files instead of exporting them again: every cell exactly once."""
    import gee_mining
    from gee_mining.batch.jobs import JobError
    from gee_mining.connection import disconnect

    ee, engine = emulated
    options = dict(project="gee-mining-restart", catalog=engine_catalog, storage_root=tmp_path / "st")
    try:
        gee_mining.connect("local", **options)
        spec, rows = _spec(tmp_path, "restart", n=3)
        ledger = tmp_path / "restart.sqlite"
        with pytest.raises(JobError, match="resume"):
            run_job(ee, spec, ledger, progress=None, poll_interval=0.0, timeout=0.0)
        in_flight = Ledger(ledger).rows(("SUBMITTED", "RUNNING"))
        assert len(in_flight) == 2
        for row in in_flight:  # the tasks finish while no launcher watches
            while ee.data.getOperation(row["operation"])["metadata"]["state"] not in ("SUCCEEDED", "FAILED"):
                pass
        disconnect()
        gee_mining.connect("local", **options)  # a fresh engine on the same storage: it knows no operation
        lines = []
        result = run_job(ee, spec, ledger, progress=lines.append, poll_interval=0.02, timeout=60)
        assert result.ok and result.counts["SUCCEEDED"] == 3
        assert result.submitted == 1  # only the cell never submitted
        assert len(ee.data.listOperations()) == 1
        assert sum("files are at the destination" in line for line in lines) == 2
        files = sorted(p.name for p in (tmp_path / "st" / BUCKET / "runs" / "restart").iterdir())
        assert files == sorted(f"{r['name']}.tif" for r in rows)
    finally:
        disconnect()
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog,
                           storage_root=engine.storage_root, storage="emulator")  # fmt: skip


def test_ledger_rows_in_an_unknown_state_are_an_error_naming_them(emulated, tmp_path):
    ee, _ = emulated
    spec, rows = _spec(tmp_path, "unknownstate", n=3)
    ledger_path = tmp_path / "unknownstate.sqlite"
    ledger = Ledger(ledger_path)
    ledger.bind(spec)
    ledger.add_cells(spec, rows)
    ledger.update(rows[1]["name"], state="DONE")
    ledger.close()
    with pytest.raises(InputError, match=rf"{rows[1]['name']} \('DONE'\).*UPDATE cells SET state='PENDING'"):
        run_job(ee, spec, ledger_path, progress=None, poll_interval=0.02, timeout=30)
    assert _ops_of(ee, spec) == []  # nothing was submitted


def test_a_damaged_ledger_is_a_clear_error_and_the_recovery_exports_nothing_twice(emulated, tmp_path):
    ee, engine = emulated
    spec, rows = _spec(tmp_path, "damaged", n=2)
    ledger_path = tmp_path / "damaged.sqlite"
    assert run_job(ee, spec, ledger_path, progress=None, poll_interval=0.02, timeout=60).ok
    ops = len(_ops_of(ee, spec))
    ledger_path.write_bytes(bytes(range(256)) * 64)  # random bytes where the database was
    for suffix in ("-wal", "-shm"):
        ledger_path.with_name(ledger_path.name + suffix).unlink(missing_ok=True)
    with pytest.raises(InputError, match=r"damaged.*mv .*--adopt-existing"):
        run_job(ee, spec, ledger_path, progress=None, poll_interval=0.02, timeout=30)
    ledger_path.rename(tmp_path / "damaged.sqlite.damaged")  # the recovery the message gives
    result = run_job(ee, spec, ledger_path, progress=None, poll_interval=0.02, timeout=30, adopt_existing=True)
    assert result.ok and result.submitted == 0 and result.counts["SUCCEEDED"] == 2
    assert len(_ops_of(ee, spec)) == ops


def test_retry_failed_after_fixing_the_spec_uses_the_same_ledger(emulated, tmp_path):
    from gee_mining.batch.jobs import retry_failed

    ee, engine = emulated
    broken, rows = _spec(tmp_path, "fixme", n=2, scale=-10.0)
    ledger_path = tmp_path / "fixme.sqlite"
    assert run_job(ee, broken, ledger_path, progress=None, poll_interval=0.02, timeout=30).counts["FAILED"] == 2
    fixed, _ = _spec(tmp_path, "fixme", n=2)
    with pytest.raises(InputError, match="retry-failed"):  # a plain run says what to do
        run_job(ee, fixed, ledger_path, progress=None, poll_interval=0.02, timeout=30)
    said = []
    assert retry_failed(fixed, ledger_path, say=said.append) == 2
    assert said and "new parameters" in said[0]
    result = run_job(ee, fixed, ledger_path, progress=None, poll_interval=0.02, timeout=60)
    assert result.ok and result.counts["SUCCEEDED"] == 2
    assert _blobs(engine, "runs/fixme/") == sorted(f"runs/fixme/{r['name']}.tif" for r in rows)


def test_retry_failed_without_a_ledger_creates_nothing(tmp_path):
    from gee_mining.batch.jobs import retry_failed

    spec, _ = _spec(tmp_path, "neverrun", n=1)
    with pytest.raises(InputError, match="has not run yet"):
        retry_failed(spec, tmp_path / "neverrun.sqlite")
    assert not (tmp_path / "neverrun.sqlite").exists()


BASE = {"name": "t", "product": "cell-image", "cells": "c.csv", "destination": {"bucket": "my-bucket"},
        "params": {"polygons": "projects/p/assets/mines"}}  # fmt: skip


@pytest.mark.parametrize(
    ("table", "change", "message"),
    [
        ("params", {"indicies": ["NDVI"]}, "unknown key 'indicies': did you mean 'indices'"),
        ("params", {"patchsize": 100}, "did you mean 'patch_size'"),
        ("destination", {"prefx": "a"}, r"\[destination\]: unknown key 'prefx': did you mean 'prefix'"),
        (None, {"max_runing": 3}, "did you mean 'max_running'"),
        ("params", {"polygons": "mines.gpkg"}, "is a file, but an export task reads its polygons from a table asset"),
        ("params", {"mask": "clouds"}, "not a known cloud mask"),
    ],
)
def test_spec_schema_refuses_unknown_keys_with_the_nearest_one(table, change, message):
    data = json.loads(json.dumps(BASE))
    (data[table] if table else data).update(change)
    with pytest.raises(InputError, match=message):
        parse_spec(data)


@pytest.mark.parametrize(
    "bucket",
    ["ab", "My-Bucket", "-lead", "trail-", "a" * 64, "192.168.1.1", "goog-data", "my-google-bucket", "a..b", "a b"],
)
def test_one_bucket_rule_for_jobs_and_export_cells(bucket):
    """Cloud Storage's naming rules (3-63 characters, lowercase, no IP, no 'goog'), the same in both places."""
    from gee_mining.batch.exports import ExportSpec

    with pytest.raises(InputError, match="bucket"):
        parse_spec({**BASE, "destination": {"bucket": bucket}})
    with pytest.raises(InputError, match="bucket"):
        ExportSpec(f"gs://{bucket}/cells")
    for good in ("my_bucket.example.com", "abc", "a" * 63):
        parse_spec({**BASE, "destination": {"bucket": good}})
        ExportSpec(f"gs://{good}/cells")


def _toml_values():
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=8)  # fmt: skip


def test_fuzzed_job_specs_raise_only_input_errors(tmp_path):
    """Hypothesis: any table (keys near the real ones, any values) and any bytes as a spec file either parse or
    raise InputError with a message; no other exception reaches the user."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    keys = st.sampled_from([*BASE, "engine", "max_running", "split_failed", "max_split_depth", "nme", "x"])
    tables = st.dictionaries(keys, _toml_values(), max_size=6).map(lambda d: {**BASE, **d})
    nested = st.fixed_dictionaries({
        "params": st.dictionaries(st.sampled_from(["polygons", "format", "patch_size", "margin", "indices", "mask",
                                                   "start", "pairwise", "labels", "scale", "bands"]),
                                  _toml_values(), max_size=4),
        "destination": st.dictionaries(st.sampled_from(["bucket", "prefix", "bukket"]), _toml_values(), max_size=2),
    }).map(lambda d: {**BASE, **d})  # fmt: skip

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(tables, nested, _toml_values()))
    def tables_only_input_errors(data):
        try:
            parse_spec(data)
        except InputError as exc:
            assert str(exc).strip()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def files_only_input_errors(blob):
        path = tmp_path / "fuzz.toml"
        path.write_bytes(blob)
        try:
            load_spec(path)
        except InputError as exc:
            assert str(exc).strip()

    tables_only_input_errors()
    files_only_input_errors()

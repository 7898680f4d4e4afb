"""The local engine refuses what Earth Engine refuses: one test per limit, through the real ``ee`` client.

Each test sends a request just under the limit (it passes), one just over (``ee.EEException`` with Earth
Engine's message), and then shows that the engine keeps serving. Where the default would need big data,
a setting lowers the limit; where it is cheap, the real default is tested too. Each docstring quotes the
limit and its source as ../shared/notes/earth-engine-limits.md lists it (row numbers there).
"""

from __future__ import annotations

import io
import json
import threading
import time

import ee
import numpy as np
import pytest

import gee_mining
from gee_mining.batch.tasks import start_with_request_id
from gee_mining.local import Limits, LocalEngine

MB = 1 << 20


def _grid(width: int, height: int, scale: float = 10.0) -> dict:
    return {
        "dimensions": {"width": width, "height": height},
        "affineTransform": {
            "scaleX": scale,
            "shearX": 0,
            "translateX": 500000.0,
            "shearY": 0,
            "scaleY": -scale,
            "translateY": 100000.0,
        },  # fmt: skip
        "crsCode": "EPSG:32633",
    }


def _pixels(image, width: int, height: int):
    return ee.data.computePixels({"expression": image, "fileFormat": "NPY", "grid": _grid(width, height)})


def _serving() -> None:
    """The engine still answers after a refusal."""
    assert ee.Number(20).add(22).getInfo() == 42


@pytest.fixture
def limited(tmp_path, ee_local):
    """Connect ``ee`` to a fresh local engine with some limits (and faults) changed; its LocalEngine."""

    def connect(faults: dict | None = None, **limits):
        settings: dict = {"limits": limits}
        if faults:
            settings["faults"] = faults
        conn = gee_mining.connect("local", project="gee-mining-limits", storage_root=tmp_path, engine_settings=settings)
        return conn.local_engine

    yield connect
    gee_mining.disconnect()


def _no_retries() -> None:
    """The ``ee`` client's own retries off (after connecting: ``ee.Initialize`` resets them), so that a 429
    reaches the test; the client retries 429 and 5xx answers with exponential backoff."""
    ee.data.setMaxRetries(0)


# --------------------------------------------------------------------------- settings


def test_limits_are_on_by_default_and_switch_off_as_a_whole(tmp_path):
    """Defaults are Earth Engine's values (notes rows 1-3, 5, 10); ``{"limits": False}`` is a plain engine."""
    on = LocalEngine(storage_root=tmp_path)
    off = LocalEngine(storage_root=tmp_path, settings={"limits": False})
    try:
        assert on.limits.enabled and on.limits.compute_pixels_bytes == 50_331_648
        assert (on.limits.pixels_per_side, on.limits.bands, on.limits.max_queued_tasks) == (32768, 1024, 3000)
        assert (on.limits.max_concurrent_tasks, on.limits.requests_per_s, on.limits.concurrent_requests) == (2, 100, 40)
        assert on.limits.request_time_s == 300
        assert not off.limits.enabled
        assert gee_mining.connection.current_connection().local_engine.limits.enabled  # the tests' engine too
    finally:
        on.close()
        off.close()
    with pytest.raises(Exception, match="unknown limit setting"):
        Limits.from_settings({"limits": {"pixels_per_sidee": 1}})


# --------------------------------------------------------------------------- computePixels


def test_compute_pixels_side_at_the_real_default(ee_local):
    """REST ``projects.image.computePixels``: at most 32,768 px on either side (notes row 3).

    Earth Engine's exact text is not documented; the engine's names the dimensions and the limit."""
    image = ee.Image.constant(1).toByte()
    raw = _pixels(image, 32768, 1)
    assert np.load(io.BytesIO(raw)).shape == (1, 32768)
    with pytest.raises(ee.EEException, match=r"Pixel grid dimensions \(32769x1\) must be less than or equal to 32768"):
        _pixels(image, 32769, 1)
    with pytest.raises(ee.EEException, match=r"\(1x40000\)"):
        _pixels(image, 1, 40000)
    _serving()


def test_compute_pixels_bands(ee_local):
    """REST ``projects.image.computePixels``: at most 1,024 bands (notes row 3); tested at the default."""
    ok = ee.Image.constant([1] * 1024).toByte()
    assert len(np.load(io.BytesIO(_pixels(ok, 1, 1)), max_header_size=100_000).dtype.names) == 1024
    with pytest.raises(ee.EEException, match=r"Number of bands \(1025\) must be less than or equal to 1024"):
        _pixels(ee.Image.constant([1] * 1025).toByte(), 1, 1)
    _serving()


def test_compute_pixels_bytes_count_each_bands_type(limited):
    """REST ``projects.image.computePixels``: at most 48 MB uncompressed, pixels x bands x bytes of each
    band's type (notes row 3). Lowered to 500 bytes: 10x10 px of a byte and a float band is 100 x (1 + 4)."""
    limited(compute_pixels_bytes=500)
    image = ee.Image.constant(1).toByte().addBands(ee.Image.constant(2).toFloat().rename("f"))
    _pixels(image, 10, 10)
    with pytest.raises(
        ee.EEException, match=r"Total request size \(510 bytes\) must be less than or equal to 500 bytes"
    ):
        _pixels(image, 102, 1)
    _serving()


def test_compute_pixels_bytes_at_the_real_default(ee_local):
    """The 48 MB (50,331,648 bytes) of REST ``projects.image.computePixels`` at its default: one float64
    band of 32,768 x 193 px is 50,593,792 bytes, refused before any pixel is computed (notes row 3)."""
    t = time.monotonic()
    with pytest.raises(
        ee.EEException, match=r"Total request size \(50593792 bytes\) must be less than or equal to 50331648"
    ):
        _pixels(ee.Image.constant(1).toDouble(), 32768, 193)
    assert time.monotonic() - t < 5
    _serving()


# --------------------------------------------------------------------------- answers and pages


def test_answer_size(limited):
    """Interactive answers are limited to about 10 MB (guide "Processing environments", notes row 1).
    Lowered to 2,000 bytes; Earth Engine's exact text is not documented."""
    limited(answer_bytes=2000)
    assert len(ee.List.sequence(0, 99).getInfo()) == 100  # ~300 bytes
    with pytest.raises(ee.EEException, match=r"Response size exceeds limit of 2000 bytes"):
        ee.List.sequence(0, 999).getInfo()  # ~4,000 bytes
    _serving()


def test_pages_are_short_by_default_and_deterministic(ee_local):
    """REST ``projects.table.computeFeatures``: pageSize is a maximum; "the server may return fewer"
    (notes row 4). By default the engine does, so every paging loop meets short pages."""
    from gee_mining.io.pages import fetch_features

    fc = ee.FeatureCollection([ee.Feature(None, {"i": i}) for i in range(60)])

    def lengths():
        out, params = [], {"expression": fc, "pageSize": 10}
        while True:
            page = ee.data.computeFeatures(dict(params))
            out.append(len(page["features"]))
            if not page.get("nextPageToken"):
                return out
            params["pageToken"] = page["nextPageToken"]

    first = lengths()
    assert sum(first) == 60 and max(first) <= 10 and min(first[:-1]) < 10
    assert lengths() == first  # seeded by the request: the same request pages the same way
    assert [f["properties"]["i"] for f in fetch_features(fc, 10)] == list(range(60))


def test_full_pages_with_short_pages_off(limited):
    """With ``short_pages`` off a page holds pageSize features, as long as they fit the page's bytes."""
    limited(short_pages=False)
    fc = ee.FeatureCollection([ee.Feature(None, {"i": i}) for i in range(25)])
    page = ee.data.computeFeatures({"expression": fc, "pageSize": 10})
    assert len(page["features"]) == 10


def test_page_bytes(limited):
    """One computeFeatures page is an interactive answer: about 10 MB (notes rows 1, 4). Lowered to 2,000
    bytes, a page is cut short (the server "may return fewer") and paging still brings every feature; a
    single feature over the limit is refused."""
    from gee_mining.io.pages import fetch_features

    limited(page_bytes=2000, short_pages=False)
    fc = ee.FeatureCollection([ee.Feature(None, {"i": i, "pad": "x" * 100}) for i in range(40)])
    page = ee.data.computeFeatures({"expression": fc, "pageSize": 40})
    assert 0 < len(page["features"]) < 40 and len(json.dumps(page["features"], separators=(",", ":"))) <= 2000
    assert [f["properties"]["i"] for f in fetch_features(fc, 40)] == list(range(40))
    big = ee.FeatureCollection([ee.Feature(None, {"pad": "x" * 3000})])
    with pytest.raises(ee.EEException, match=r"Response size exceeds limit of 2000 bytes"):
        ee.data.computeFeatures({"expression": big, "pageSize": 1})
    _serving()


def test_request_size(limited):
    """The serialised request: Google's API front end refuses a payload over 10 MB with "Request payload
    size exceeds the limit: 10485760 bytes." (Earth Engine's REST API). Lowered to 4,000 bytes."""
    limited(request_bytes=4000)
    assert ee.String("x" * 3000).length().getInfo() == 3000
    with pytest.raises(ee.EEException, match=r"Request payload size exceeds the limit: 4000 bytes"):
        ee.String("x" * 5000).length().getInfo()
    _serving()


# --------------------------------------------------------------------------- interactive time and work


def test_request_time_budget(limited):
    """Interactive requests must finish in about 5 minutes, else "Computation timed out." (guide "Processing
    environments", notes rows 1, 13). Lowered to 50 ms; the error names the budget."""
    engine = limited(request_time_s=0.05)
    assert ee.Number(1).add(1).getInfo() == 2
    # iterate: one step after another (no column form), each step checking the deadline, so the request is
    # well past 50 ms at a check whatever the machine's speed
    slow = ee.List.sequence(0, 20000).iterate(lambda x, acc: ee.Number(acc).add(ee.Number(x).sqrt()), 0)
    with pytest.raises(ee.EEException, match=r"Computation timed out\..*budget of 0\.05 s, limits\.request_time_s"):
        ee.Number(slow).getInfo()
    assert engine.limits.request_time_s == 0.05
    _serving()


def test_pixels_per_request(limited):
    """A work bound for what Earth Engine does not finish interactively in 5 minutes (notes row 1): band
    pixels computed by one request. Lowered to 900; the error names the count and the bound."""
    limited(pixels_per_request=900)
    _pixels(ee.Image.constant(1), 30, 30)
    with pytest.raises(ee.EEException, match=r"Computation timed out\..*961 band pixels.*bound of 900"):
        _pixels(ee.Image.constant(1), 31, 31)
    _serving()


def test_pixels_per_request_counts_bands_written_straight_into_the_answer(limited):
    """A normalised difference is written straight into its field of an NPY answer, never computed as a whole band;
    its pixels still count: two constant inputs and the difference on 30 x 30 are 2,700 band pixels."""
    nd = ee.Image.constant([3, 1]).normalizedDifference()
    limited(pixels_per_request=2700)
    answer = np.load(io.BytesIO(bytes(_pixels(nd, 30, 30))))
    np.testing.assert_array_equal(answer["nd"], np.full((30, 30), 0.5, np.float32))  # (3 - 1) / (3 + 1)
    limited(pixels_per_request=2699)
    with pytest.raises(ee.EEException, match=r"Computation timed out\..*2,700 band pixels.*bound of 2,699"):
        _pixels(nd, 30, 30)
    _serving()


def test_features_scanned_by_filters_on_computed_collections(limited, engine_catalog, tmp_path):
    """A work bound for what Earth Engine does not finish interactively in 5 minutes (notes row 1): Earth
    Engine filters a stored asset by its index, a computed collection (made by ``map``, a list of features,
    ...) element by element. Our bound (10 million by default; Earth Engine documents no number), lowered
    to 1,000: ten filters of a computed collection of 100 features pass, eleven fail naming the count and
    the bound; an asset's filters do not count; batch tasks have no bound."""
    assert Limits().features_scanned_per_request == 10_000_000
    limited(features_scanned_per_request=1000)
    computed = ee.FeatureCollection(ee.List.sequence(0, 99).map(lambda i: ee.Feature(None, {"i": i})))

    def filtered(times: int):
        return ee.List([computed.filter(ee.Filter.gte("i", k)).size() for k in range(times)])

    assert filtered(10).getInfo() == [100 - k for k in range(10)]
    with pytest.raises(
        ee.EEException, match=r"Computation timed out\..*scanned 1,100 features of computed collections.*bound of 1,000"
    ):
        filtered(11).getInfo()
    _serving()
    # filters inside a map count once per element: 11 cells each filtering the 100 features
    cells = ee.List.sequence(0, 10).map(lambda k: computed.filter(ee.Filter.gte("i", k)).size())
    with pytest.raises(ee.EEException, match=r"scanned 1,100 features"):
        cells.getInfo()

    # an asset is filtered by its index: its filters do not count; the same features mapped do
    settings = {"limits": {"features_scanned_per_request": 1}}
    gee_mining.connect("local", project="gee-mining-limits", catalog=engine_catalog, storage_root=tmp_path,
                       engine_settings=settings)  # fmt: skip
    squares = ee.FeatureCollection("projects/gee-mining-test/assets/squares")
    n = squares.size().getInfo()
    assert n >= 2
    assert squares.filter(ee.Filter.notNull(["system:index"])).size().getInfo() == n
    with pytest.raises(ee.EEException, match=rf"scanned {n} features.*bound of 1,"):
        squares.map(lambda f: f).filter(ee.Filter.notNull(["system:index"])).size().getInfo()
    task = ee.batch.Export.table.toCloudStorage(computed.filter(ee.Filter.gte("i", 50)), "scan", bucket="limits",
                                                fileNamePrefix="scan", fileFormat="CSV")  # fmt: skip
    task.start()
    assert _wait_done([task.name])[0] == "SUCCEEDED"
    _serving()


# --------------------------------------------------------------------------- batch


def _table_task(description: str):
    fc = ee.FeatureCollection([ee.Feature(None, {"i": 1})])
    return ee.batch.Export.table.toCloudStorage(
        collection=fc, description=description, bucket="limits", fileNamePrefix=description, fileFormat="CSV"
    )


def _wait_done(names: list[str], timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [ee.data.getOperation(n)["metadata"]["state"] for n in names]
        if all(s in ("SUCCEEDED", "FAILED", "CANCELLED") for s in states):
            return states
        time.sleep(0.05)
    raise AssertionError(f"tasks not done after {timeout} s")


def test_at_most_two_tasks_run(limited):
    """About 2 concurrent batch tasks per project on the noncommercial tiers (guide "Earth Engine quotas",
    notes row 2): the rest wait PENDING (READY in the task list) and run later."""
    limited(faults={"slow_task_rate": 1.0, "slow_task_s": 0.4}, max_concurrent_tasks=2)
    tasks = [_table_task(f"run{i}") for i in range(5)]
    for t in tasks:
        t.start()
    seen_running, seen_pending = 0, 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # One listing: a snapshot of every task at once (five getOperation calls could see a task end and
        # the next start between two of them, three RUNNING that never ran together).
        listed = {o["name"]: o["metadata"]["state"] for o in ee.data.listOperations()}
        states = [listed[t.name] for t in tasks]
        seen_running = max(seen_running, states.count("RUNNING"))
        seen_pending = max(seen_pending, states.count("PENDING"))
        if all(s == "SUCCEEDED" for s in states):
            break
        time.sleep(0.05)
    assert seen_running == 2 and seen_pending >= 1
    assert [t.status()["state"] for t in tasks] == ["COMPLETED"] * 5


def test_queue_cap(limited):
    """ "Too many tasks already in the queue (3000)." (Earth Engine's text as users quote it; notes row 10).
    Lowered to 3 unfinished tasks; answered 429, so it is retried, and a task is accepted once the queue drains."""
    limited(faults={"slow_task_rate": 1.0, "slow_task_s": 0.5}, max_queued_tasks=3)
    _no_retries()
    started = [_table_task(f"q{i}") for i in range(3)]
    for t in started:
        t.start()
    with pytest.raises(ee.EEException, match=r"Too many tasks already in the queue \(3\)\."):
        _table_task("q3").start()
    _wait_done([t.name for t in started])
    late = _table_task("q4")
    late.start()
    assert _wait_done([late.name]) == ["SUCCEEDED"]


def test_request_id_format(ee_local):
    """REST ``projects.image.export`` requestId: "allowed characters a-z A-Z 0-9 -, at most 60" (notes row 5)."""
    ok = _table_task("rid-ok")
    ok._request_id = "a" * 59 + "-"
    ok.start()
    bad = _table_task("rid-bad")
    bad._request_id = "a" * 61
    with pytest.raises(ee.EEException, match=r"Invalid requestId.*at most 60 characters"):
        bad.start()
    underscore = _table_task("rid-underscore")
    underscore._request_id = "a_b"
    with pytest.raises(ee.EEException, match=r"Invalid requestId 'a_b'"):
        underscore.start()
    assert _wait_done([ok.name]) == ["SUCCEEDED"]


def test_duplicate_request_id_modes(limited):
    """REST ``projects.image.export``: "if more than one request is made with the same non-empty requestId,
    only one of those requests may successfully start a long-running operation" (notes row 5). Mode
    "error" (the default) refuses the repeat; mode "first" returns the first operation. Either way the
    launcher's ``start_with_request_id`` ends with that one operation."""
    limited()  # the default: "error"
    first = _table_task("dup")
    first._request_id = "dup-0001"
    first.start()
    again = _table_task("dup")
    again._request_id = "dup-0001"
    with pytest.raises(ee.EEException, match=r"Request id 'dup-0001' was already used"):
        again.start()
    assert start_with_request_id(ee, _table_task("dup"), "dup-0001") == first.name
    ops = [op for op in ee.data.listOperations() if op["metadata"]["description"] == "dup"]
    assert len(ops) == 1
    limited(duplicate_request_id="first")
    one = start_with_request_id(ee, _table_task("dup2"), "dup-0002")
    assert start_with_request_id(ee, _table_task("dup2"), "dup-0002") == one
    _serving()


# --------------------------------------------------------------------------- quotas


def test_requests_per_second(limited):
    """About 100 requests per second per project (guide "Earth Engine quotas", notes row 2); past it, HTTP
    429. Lowered to 5/s: 5 requests pass at once, the 6th is refused; with the ``ee`` client's own retries
    (exponential backoff on 429) the same request then succeeds. Earth Engine's exact text is not documented."""
    limited(requests_per_s=5)
    _no_retries()
    for i in range(5):
        assert ee.Number(i).getInfo() == i
    with pytest.raises(ee.EEException, match=r"Too many requests: quota exceeded for requests per second"):
        ee.Number(5).getInfo()
    ee.data.setMaxRetries(5)
    assert ee.Number(6).getInfo() == 6  # the client's backoff waits for the bucket to refill
    _serving()


def test_concurrent_requests(limited):
    """About 40 concurrent requests per project (guide "Earth Engine quotas", notes row 2); past it, 429
    "Too many concurrent aggregations." (notes row 13). Lowered to 2; one slot held by a request in flight."""
    engine = limited(concurrent_requests=2)
    _no_retries()
    assert ee.Number(1).getInfo() == 1  # one in flight of 2: passes
    held = threading.Event()
    release = threading.Event()

    def in_flight():
        with engine.router.quotas.admit(), engine.router.quotas.admit():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=in_flight)
    thread.start()
    try:
        held.wait(10)
        with pytest.raises(ee.EEException, match=r"Too many concurrent aggregations\."):
            ee.Number(2).getInfo()
    finally:
        release.set()
        thread.join()
    _serving()


# --------------------------------------------------------------------------- the API reference's examples


@pytest.mark.parametrize(
    ("margin", "expected"),
    [
        ((0,), {"type": "ErrorMargin", "unit": "meters", "value": 0}),
        ((1,), {"type": "ErrorMargin", "unit": "meters", "value": 1}),
        ((-1,), {"type": "ErrorMargin", "unit": "meters", "value": 1}),
        ((1.99e7,), {"type": "ErrorMargin", "unit": "meters", "value": 19900000}),
        ((2e7,), {"type": "ErrorMargin", "unit": "infinite"}),
        ((1, "projected"), {"type": "ErrorMargin", "unit": "projected", "value": 1}),
        ((1, "infinite"), {"type": "ErrorMargin", "unit": "infinite"}),
    ],
)
def test_error_margin_as_the_api_reference_shows(ee_local, margin, expected):
    """``ee.ErrorMargin``'s examples in the API reference (the ``ee`` package's docstring): "Negative margin
    yields a positive value", "Values >= 2.0e7 are turned into an 'infinite'"."""
    assert ee.ErrorMargin(*margin).getInfo() == expected


def test_error_margin_finer_than_a_millimetre_fails(ee_local):
    """ "High precision for 'meters' (< 0.001) results in an error." (the API reference's example)."""
    with pytest.raises(ee.EEException, match="ErrorMargin"):
        ee.ErrorMargin(0.0009, "meters").getInfo()


def test_serve_limits_option():
    """``gee-mining serve --limits``: on, off, name=value pairs or JSON; a bad name is an InputError naming it."""
    from gee_mining.cli.main import limits_option
    from gee_mining.errors import InputError

    assert limits_option("on") is True and limits_option("off") is False
    assert limits_option("max_concurrent_tasks=4,short_pages=false") == {
        "max_concurrent_tasks": 4,
        "short_pages": False,
    }
    assert limits_option('{"request_time_s": 600}') == {"request_time_s": 600}
    assert Limits.from_settings({"limits": limits_option("max_concurrent_tasks=4")}).max_concurrent_tasks == 4
    with pytest.raises(InputError, match="--limits"):
        limits_option("max_concurrent_tasks")


def test_pixel_table_pages_stay_under_their_byte_bound(limited, monkeypatch):
    """``fetch_pixel_table`` asked 5,000 features a page whatever the columns: with the 66 normalised
    differences that is about 15 MB, over Earth Engine's ~10 MB answers (notes row 1). ``page_size_for``
    chooses the page from the columns. Scaled down: a 150,000-byte bound for the engine's pages and for the
    chosen size, 600 pixels of 93 columns with float32 values as the engine writes them. The old size asks for
    more than the bound holds (the engine cuts the answer short; Earth Engine may refuse it); the new pages
    come back whole, each under the bound and not below half of it."""
    from itertools import combinations

    from gee_mining.contracts.schemas import columns
    from gee_mining.io.pages import iter_features, page_size_for

    bound = 150_000
    limited(page_bytes=bound, short_pages=False)
    s2 = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
    names = columns([*s2, *(f"ND_{a}_{b}" for a, b in combinations(s2, 2)), "distance", "_mine"])
    assert 90 <= len(names) <= 100
    proj = ee.Projection("EPSG:32633").atScale(10)
    xy = ee.Image.pixelCoordinates(proj)
    base = xy.select("x").multiply(0.0001371).add(xy.select("y").multiply(0.0002917))
    image = ee.Image.cat([base.add(k / 97).toFloat().rename(n) for k, n in enumerate(names)])  # float32 values
    region = ee.Geometry.Rectangle([500000, 0, 500300, 200], "EPSG:32633", False)  # 30 x 20 pixels
    fc = image.sample(region=region, projection=proj, geometries=False)
    seen: list[tuple[int, int, int]] = []  # (asked, answered, bytes) of each page
    compute = ee.data.computeFeatures

    def spy(params):
        page = compute(params)
        seen.append(
            (params["pageSize"], len(page["features"]), len(json.dumps(page["features"], separators=(",", ":"))))
        )
        return page

    monkeypatch.setattr(ee.data, "computeFeatures", spy)
    old = list(iter_features(fc, page_size=5000))
    assert len(old) == 600 and seen[0][1] < 600  # asked for all 600 at once: over the bound, cut short
    seen.clear()
    size = page_size_for(names, bound)
    got = list(iter_features(fc, page_size=size))
    assert [f["properties"] for f in got] == [f["properties"] for f in old]
    assert 1 < size < 600 and len(seen) == -(-600 // size)
    for asked, answered, nbytes in seen[:-1]:
        assert answered == asked == size and bound / 2 < nbytes <= bound, (asked, answered, nbytes)
    assert page_size_for(names) * len(json.dumps(got[0], separators=(",", ":"))) <= 4 * 1024 * 1024
    assert page_size_for(names) < 5000 and page_size_for(["x"]) == 5000  # narrow tables keep full pages


def test_a_scoring_page_that_times_out_is_scored_in_halves(limited):
    """The pyramid's interactive scoring (``score_cells``): a page the engine refuses as "Computation timed out."
    is scored again in halves, with the same scores as an engine without the bound; one cell that still times out
    is an error naming the cell and the way out. The bound here is the engine's band-pixel work bound, lowered so
    that one and two cells pass and a whole page does not (checked first)."""
    from gee_mining.errors import GeeMiningError
    from gee_mining.pyramid.core import PyramidSpec, score_cells, score_collection, start_cells

    spec = PyramidSpec.of([2750, 1375], [15, 16])
    region = ee.Geometry.Rectangle([561000, 9294960, 572000, 9305960], "EPSG:32721", False)
    probability = ee.Image.pixelCoordinates(ee.Projection("EPSG:32721")).select("x").divide(3000).sin().abs()
    limited()
    cells = start_cells(ee, region, spec.levels[0], 32721)
    unbounded = score_cells(ee, probability, cells, spec.scales[0], 0.5)
    assert len(cells) > 4 and len({v["score"] for v in unbounded.values()}) > 1

    def page(n: int):
        return ee.data.computeFeatures(
            {"expression": score_collection(ee, probability, cells[:n], spec.scales[0], 0.5)}
        )

    limited(pixels_per_request=80_000)
    assert len(page(2)["features"]) == 2
    with pytest.raises(ee.EEException, match="Computation timed out"):
        page(len(cells))
    said: list[str] = []
    assert score_cells(ee, probability, cells, spec.scales[0], 0.5, progress=said.append) == unbounded
    assert said and said[0] == f"[pyramid] a request of {len(cells)} cells timed out: scoring them as " \
        f"{len(cells) // 2} + {len(cells) - len(cells) // 2}"  # fmt: skip
    limited(pixels_per_request=5_000)
    with pytest.raises(GeeMiningError, match=f"scoring cell {cells[0]['name']} alone timed out.*--scales.*export_to"):
        score_cells(ee, probability, cells, spec.scales[0], 0.5)
    _serving()

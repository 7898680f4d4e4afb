"""The grid streamed by zone and group of blocks: requests bounded by the input, rows written as they
come, the table appearing whole (or not at all), a killed run's partial removed by the next run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pyproj
import pytest
import shapely

from gee_mining.contracts.cells import NEGATIVE_REACH, GridSpec, cell_row
from gee_mining.errors import InputError
from gee_mining.io import grid_table
from gee_mining.io.grid_table import GridTableWriter, read_grid_table
from gee_mining.local.service.router import INTERACTIVE
from gee_mining.steps.grid import (
    _TRACED,
    GROUP_BLOCKS,
    GROUP_CELLS,
    NO_METADATA,
    BlockGroup,
    _near,
    _runs,
    _square_rings,
    build_grid,
    key_bytes,
    mapped,
    pair_group,
    pair_negatives,
    plan_groups,
    stream_grid,
    tag_zones,
    touching_pages,
)

# 64 small squares (about 1.1 km) half a degree apart in UTM zone 33 N: each alone in its block of 4 cells.
SCATTERED = [
    shapely.box(12.6 + 0.5 * i, 0.6 + 0.5 * j, 12.61 + 0.5 * i, 0.61 + 0.5 * j) for i in range(8) for j in range(8)
]


def _collection(ee, polys):
    return ee.FeatureCollection(
        [ee.Feature(ee.Geometry(shapely.geometry.mapping(p)), {"id": k}) for k, p in enumerate(polys)]
    )


def _reference(polys, size, epsg=32633):
    """The cells (x, y) of the zone's lattice each polygon overlaps by at least 0.1 % of a cell (shapely, pyproj)."""
    tf = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    out = set()
    for p in polys:
        q = shapely.transform(shapely.segmentize(p, 0.001), lambda xy: np.column_stack(tf.transform(*xy.T)))
        x0, y0, x1, y1 = q.bounds
        for x in range(math.floor(x0 / size), math.ceil(x1 / size)):
            for y in range(math.floor(y0 / size), math.ceil(y1 / size)):
                cell = shapely.box(x * size, y * size, (x + 1) * size, (y + 1) * size)
                if cell.intersection(q).area >= 0.001 * size * size:
                    out.add((x, y))
    return out


@pytest.mark.slow
def test_scattered_polygons_take_requests_by_group_not_by_block(ee_local, _session_connection):
    """64 scattered mines, each in its own block: the positives, touching cells and negatives are asked for by
    groups of up to GROUP_BLOCKS blocks (3 requests a group, plus 5 for the polygons and the tiles), not one
    request per block (the rows equal the shapely reference's cells)."""
    _, conn = _session_connection
    calls = conn.local_engine.router.calls
    spec = GridSpec.of(5500)
    before = sum(calls[k] for k in INTERACTIVE)
    table = build_grid(ee_local, _collection(ee_local, SCATTERED), spec, block=4, metadata=NO_METADATA)
    requests = sum(calls[k] for k in INTERACTIVE) - before
    assert requests <= 5 + 3 * math.ceil(len(SCATTERED) / GROUP_BLOCKS), requests
    got = {(r["cell_x"], r["cell_y"]) for r in table.positives}
    assert got == _reference(SCATTERED, spec.cell_size)
    assert len(table.negatives) == len(table.positives)


def _cli(args, tmp_path):
    command = [sys.executable, "-m", "gee_mining.cli.main", "grid", *args]
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_killed_grid_leaves_a_partial_the_next_run_removes(tmp_path):
    """`grid` killed with SIGKILL mid-run leaves its `.partial-PID-*` table (nothing can run after SIGKILL);
    the next run writing to that folder removes it at its start, as that process is gone, even when the
    next run itself fails (an empty polygon set): no partial and no output remain."""
    polygons = tmp_path / "mines.geojson"
    feature = {
        "type": "Feature",
        "properties": {"id": 1},
        "geometry": shapely.geometry.mapping(shapely.box(-55, -10, -54, -9)),
    }
    polygons.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    out = tmp_path / "out" / "grid.parquet"
    run = _cli(["--polygons", str(polygons), "--cell", "5500", "--out", str(out)], tmp_path)
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".partial-{run.pid}-*.parquet")) and run.poll() is None:
        assert time.monotonic() < deadline, "no partial table appeared"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL
    stale = list(out.parent.glob(".partial-*"))
    assert [p.name.split("-")[1] for p in stale] == [str(run.pid)] and not out.exists()

    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    again = _cli(["--polygons", str(empty), "--cell", "5500", "--out", str(out)], tmp_path)
    _, err = again.communicate(timeout=120)
    assert again.returncode != 0 and "Traceback" not in err, err
    assert not list(out.parent.iterdir()), list(out.parent.iterdir())


@pytest.mark.slow
def test_streamed_rows_come_by_group_and_pair_as_one_zone(ee_local):
    """stream_grid hands its sink each group's rows (positive, then its negative) as the group completes, never
    more than a group's cells; negatives touch no polygon (shapely). Here no two groups' positives want the same
    free cell, so the pairs, made group by group, are those of the zone asked for in one request."""
    spec = GridSpec.of(5500)
    polys = SCATTERED[:24] + [shapely.box(13.0, 5.0, 13.3, 5.3)]  # one 33 km square: a few blocks of 4 cells
    fc = _collection(ee_local, polys)
    calls = []
    summary = stream_grid(ee_local, fc, spec, calls.append, block=4, metadata=NO_METADATA)
    whole = build_grid(ee_local, fc, spec, block=None, metadata=NO_METADATA)
    rows = [r for c in calls for r in c]
    assert len(calls) >= 2 and max(len(c) for c in calls) <= 2 * GROUP_BLOCKS * 16
    assert all(
        c[0]["label"] == 1 and all(a["label"] or b["label"] for a, b in zip(c, c[1:], strict=False)) for c in calls
    )
    assert sorted(rows, key=lambda r: r["name"]) == sorted(whole.rows, key=lambda r: r["name"])
    assert (summary.positives, summary.negatives) == (len(whole.positives), len(whole.negatives))
    tf = pyproj.Transformer.from_crs(4326, 32633, always_xy=True)
    union = shapely.union_all([shapely.transform(p, lambda xy: np.column_stack(tf.transform(*xy.T))) for p in polys])
    for r in rows:
        x, y, s = r["cell_x"] * spec.cell_size, r["cell_y"] * spec.cell_size, spec.cell_size
        assert shapely.box(x, y, x + s, y + s).intersects(union) == (r["label"] == 1), r["name"]


@pytest.mark.parametrize("suffix", ["parquet", "csv", "gpkg"])
def test_writer_writes_group_by_group_what_one_table_would(tmp_path, monkeypatch, suffix):
    """Rows added in pieces and written 3 rows a group: a column empty in the first group and real later, a
    land-cover class first seen in the last group, integers then reals: the file reads back as the rows
    (pyarrow, csv, pyogrio), as a table written at once would, and is there only once closed."""
    monkeypatch.setattr(grid_table, "ROWS_PER_GROUP", 3)
    spec = GridSpec.of(5500)

    rows = []
    for k in range(8):
        r = cell_row(32633, k, 2 * k, spec)
        r.update(label=k % 2, polygon_ids=[k, "a"], overlap=0.5 if k % 2 else 0.0, elevation=None if k < 4 else k / 2)
        r["count"] = k if k < 6 else k + 0.5
        if k == 7:
            r["lc_80"] = 0.25
        rows.append(r)
    path = tmp_path / f"grid.{suffix}"
    with GridTableWriter(path) as writer:
        writer.add(rows[:5])
        writer.add(rows[5:])
        assert not path.exists() and len(list(tmp_path.glob(".partial-*"))) == 1
    assert not list(tmp_path.glob(".partial-*"))
    back = read_grid_table(path)
    assert [r["name"] for r in back] == [r["name"] for r in rows]
    for got, want in zip(back, rows, strict=True):
        assert float(got["lc_80"] or 0) == want.get("lc_80", 0.0)
        assert float(got["count"]) == want["count"]
        assert (
            got["elevation"] in (None, "")
            if want["elevation"] is None
            else float(got["elevation"]) == want["elevation"]
        )
        assert got["polygon_ids"] == f"{want['polygon_ids'][0]};a"
    if suffix == "parquet":
        schema = pq.read_schema(path)
        assert str(schema.field("count").type) == "double" and str(schema.field("elevation").type) == "double"
        assert pq.ParquetFile(path).metadata.num_row_groups == 3
    if suffix == "gpkg":
        assert len(pyogrio.raw.read(path)[2]) == len(rows)


def test_groups_pair_in_turn_and_keep_only_the_negatives_a_later_group_can_reach():
    """pair_group: two groups' positives (3, 0) and (5, 0) both want the one free cell at distance 1, (4, 0): the
    earlier group's takes it and the later one's gets the nearest free cell left (a brute-force search over the
    window, ties by y then x); a group 20 blocks up drops from ``taken`` what no later group can reach."""

    spec = GridSpec.of(5500)
    p1, p2 = (3, 0), (5, 0)
    ring = {(p[0] + dx, p[1] + dy) for p in (p1, p2) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    blocked = ring - {(4, 0)}
    taken: set = set()

    def row(cell):
        return {"cell_x": cell[0], "cell_y": cell[1]}

    first = pair_group(spec, BlockGroup(32633, 4, ((0, 0),)), [row(p1)], blocked, taken)
    second = pair_group(spec, BlockGroup(32633, 4, ((1, 0),)), [row(p2)], blocked, taken)
    assert first == [((4, 0), 5500.0)]
    window = [
        (dx * dx + dy * dy, p2[1] + dy, p2[0] + dx)
        for dx in range(-NEGATIVE_REACH, NEGATIVE_REACH + 1)
        for dy in range(-NEGATIVE_REACH, NEGATIVE_REACH + 1)
        if (p2[0] + dx, p2[1] + dy) not in blocked | {(4, 0)}
    ]
    d2, y, x = min(window)
    assert second == [((x, y), 5500.0 * math.sqrt(d2))] and (x, y) != (4, 0)
    assert taken == {(4, 0), (x, y)}
    far = pair_group(spec, BlockGroup(32633, 4, ((0, 20),)), [row((1, 81))], set(), taken)
    assert taken == {far[0][0]} and far[0][0][1] >= 80 - NEGATIVE_REACH


def test_memory_of_the_pairing_follows_a_row_of_blocks_not_the_zone():
    """200 groups up a column (4 x 4 positives each, 3,200 in all): each group's negatives are distinct from
    every earlier group's (all 3,200 distinct, none on a positive), yet ``taken`` never holds more than the
    negatives of the blocks within the pairing's reach below the current one: what the pairing keeps between
    groups does not grow with the zone (before, the zone's cells and touching cells were held until the zone
    was paired: about 3 KB a positive)."""

    spec, side = GridSpec.of(5500), 4
    taken: set = set()
    negatives, positives, most = [], set(), 0
    for by in range(200):
        cells = [(x, y) for y in range(by * side, (by + 1) * side) for x in range(side)]
        positives.update(cells)
        rows = [{"cell_x": x, "cell_y": y} for x, y in cells]
        reach = NEGATIVE_REACH + 2  # the touching cells come with the blocks' rim: the column's positives there
        rim = {(x, y) for y in range(by * side - reach, (by + 1) * side + reach) for x in range(side) if y >= 0}
        hits = pair_group(spec, BlockGroup(32633, side, ((0, by),)), rows, rim, taken)
        negatives += [h[0] for h in hits]
        most = max(most, len(taken))
    assert len(negatives) == len(set(negatives)) == 3200 and not set(negatives) & positives
    assert most <= side * side * (NEGATIVE_REACH // side + 2), most


def test_pairing_asks_for_the_wider_touching_cells_only_when_a_round_goes_past_them():
    """pair_negatives with the touching cells known only within ``reach`` cells (those a group's request brings)
    and ``wider(r)`` for the rest: a positive whose free cells within 6 cells are all blocked gets the nearest
    free cell of the complete blocked set (a brute-force search), the cells blocked beyond 6 cells avoided,
    and ``wider`` is called once, for the 12-cell round; positives settled within 6 cells never call it."""

    spec = GridSpec.of(5500)
    positive = (0, 0)
    full = {(x, y) for x in range(-7, 8) for y in range(-7, 8)}  # everything within 7 cells blocked
    full |= {(x, 8) for x in range(-8, 9)} | {(8, y) for y in range(-8, 8)}  # the nearest cells past 7 too
    near = {c for c in full if max(abs(c[0]), abs(c[1])) <= 6}
    calls = []

    def wider(reach):
        calls.append(reach)
        return full

    hits = pair_negatives(spec, 32633, [positive], near, lambda msg: None, 6, wider)
    d2, y, x = _nearest_free(full)
    assert hits == [((x, y), 5500.0 * math.sqrt(d2))] and calls == [12]  # the 12-cell round's own reach
    assert hits == pair_negatives(spec, 32633, [positive], full, lambda msg: None)  # as with the whole set
    calls.clear()
    assert pair_negatives(spec, 32633, [(100, 100)], near, lambda msg: None, 6, wider)[0][1] == 5500.0
    assert calls == []


def _nearest_free(blocked: set[tuple[int, int]]) -> tuple[int, int, int]:
    """Brute force: (squared distance, y, x) of the nearest cell within the negatives' reach of (0, 0) that is not
    blocked, ties to the smaller y then x."""

    r = range(-NEGATIVE_REACH, NEGATIVE_REACH + 1)
    return min((dx * dx + dy * dy, dy, dx) for dx in r for dy in r if (dx, dy) not in blocked)


def test_pairing_asks_for_the_whole_reach_when_the_first_wider_round_is_not_enough():
    """A positive with every cell within 13 cells blocked (and half of those at 14): ``wider(12)`` for the
    12-cell round, then ``wider(48)`` for the 24-cell one, and the nearest free cell of the complete set (a
    brute-force search). It fails if the second round kept the cells known within 12 only (it would take a
    cell at 13, blocked beyond what the first answer held)."""

    spec = GridSpec.of(5500)
    full = {(x, y) for x in range(-13, 14) for y in range(-13, 14)}
    full |= {(x, y) for x in range(-14, 15) for y in range(-14, 15) if y <= 0}
    calls = []

    def wider(reach):
        calls.append(reach)
        return {c for c in full if max(abs(c[0]), abs(c[1])) <= reach}

    near = {c for c in full if max(abs(c[0]), abs(c[1])) <= 6}
    hits = pair_negatives(spec, 32633, [(0, 0)], near, lambda msg: None, 6, wider)
    d2, y, x = _nearest_free(full)
    assert (x, y) == (0, 14) and hits == [((0, 14), 5500.0 * 14)]
    assert calls == [12, NEGATIVE_REACH]


def test_a_zone_boxes_only_the_neighbours_polygons_within_reach_of_its_blocks(ee_local):
    """The polygons a zone's requests box (``_near`` with the zone's blocks): its own and a neighbour zone's
    polygon 5 km across the zone edge (within the pairing's reach of the blocks), not one 600 km east; the
    table is that of the whole zone asked for in one request (block=None, no such choice), and its negatives
    touch neither polygon (shapely, in the zone's UTM)."""

    spec = GridSpec.of(5500)
    own = shapely.box(17.93, 1.0, 17.98, 1.05)  # zone 33 N, whose east edge is 18 E
    across = shapely.box(17.99 + 0.02, 0.9, 18.1, 1.15)  # zone 34 N, just across
    far = shapely.box(23.5, 1.0, 23.53, 1.03)  # zone 34 N, 600 km east: beyond 4 + 51 cells of 5.5 km
    fc = _collection(ee_local, [own, across, far])
    tagged = tag_zones(ee_local, fc, spec)
    (group,) = plan_groups(ee_local, tagged, [32633], spec, 4)
    assert sorted(_near(ee_local, tagged, 32633).aggregate_array("id").getInfo()) == [0, 1, 2]
    assert sorted(_near(ee_local, tagged, 32633, group, spec.cell_size).aggregate_array("id").getInfo()) == [0, 1]
    blocked = build_grid(ee_local, fc, spec, block=4, metadata=NO_METADATA)
    whole = build_grid(ee_local, fc, spec, block=None, metadata=NO_METADATA)
    assert blocked.rows == whole.rows and blocked.negatives
    tf = pyproj.Transformer.from_crs(4326, 32633, always_xy=True)
    utm = [
        shapely.transform(shapely.segmentize(p, 0.001), lambda xy: np.column_stack(tf.transform(*xy.T)))
        for p in (own, across)
    ]
    s = spec.cell_size
    for r in blocked.rows:
        if r["epsg"] == 32633 and r["label"] == 0:
            cell = shapely.box(r["cell_x"] * s, r["cell_y"] * s, (r["cell_x"] + 1) * s, (r["cell_y"] + 1) * s)
            assert not any(cell.intersects(u) for u in utm), r["name"]


def test_groups_count_the_cells_of_the_small_tiles_the_mines_touch(ee_local):
    """The 64 scattered mines at 1375 m in blocks of 128 cells: each occupied 4 x 4-cell tile counts 16 cells
    toward a group's bound (the tiles from shapely and pyproj: 5.5 km squares of the zone's lattice that a
    mine, reprojected, meets): 1,280 cells for the 9 blocks' one group, where 16 x 16-cell tiles counted 256
    cells each, 16,384 in all, a full block's bound."""

    spec = GridSpec.of(1375)
    tagged = tag_zones(ee_local, _collection(ee_local, SCATTERED), spec)
    groups = plan_groups(ee_local, tagged, [32633], spec, 128)
    tf = pyproj.Transformer.from_crs(4326, 32633, always_xy=True)
    side = 4 * spec.cell_size
    tiles = set()
    for p in SCATTERED:
        q = shapely.transform(shapely.segmentize(p, 0.001), lambda xy: np.column_stack(tf.transform(*xy.T)))
        x0, y0, x1, y1 = q.bounds
        for i in range(math.floor(x0 / side), math.floor(x1 / side) + 1):
            for j in range(math.floor(y0 / side), math.floor(y1 / side) + 1):
                if q.intersects(shapely.box(i * side, j * side, (i + 1) * side, (j + 1) * side)):
                    tiles.add((i, j))
    blocks = {(i // 32, j // 32) for i, j in tiles}
    assert len(tiles) >= 64 and 16 * len(tiles) <= GROUP_CELLS < 256 * len(tiles)
    assert [(len(g.blocks), g.cells) for g in groups] == [(len(blocks), 16 * len(tiles))]


def test_blocks_merge_into_runs_along_their_rows():
    """A group's blocks as runs of side-by-side blocks of one row (hand-computed): a gap or another row starts a
    new run; the rings of the runs cover exactly the blocks' squares (shapely), grown or shrunk."""

    blocks = ((0, 0), (1, 0), (3, 0), (1, 1), (2, 1), (5, 2))
    assert _runs(blocks) == [(0, 1, 0), (3, 3, 0), (1, 2, 1), (5, 5, 2)]
    group = BlockGroup(32633, 4, blocks)
    squares = shapely.union_all([shapely.box(4 * bx, 4 * by, 4 * bx + 4, 4 * by + 4) for bx, by in blocks])
    rings = shapely.union_all([shapely.Polygon(r) for r in _square_rings(1.0, group, 0.0)])
    assert rings.symmetric_difference(squares).area == 0.0
    grown = shapely.union_all([shapely.Polygon(r) for r in _square_rings(1.0, group, 0.5)])
    assert grown.symmetric_difference(squares.buffer(0.5, join_style="mitre")).area < 1e-9


def _margin_blocked(poly, size: float, margin: float, centre: tuple[int, int], reach: int = 20) -> set[tuple[int, int]]:
    """Cells (offsets from ``centre``) within ``margin`` metres of ``poly`` in UTM 33 N (shapely, pyproj)."""
    tf = pyproj.Transformer.from_crs(4326, 32633, always_xy=True)
    q = shapely.transform(shapely.segmentize(poly, 0.001), lambda xy: np.column_stack(tf.transform(*xy.T)))
    offsets = [(dx, dy) for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)]
    x0, y0 = ((np.array(offsets) + centre) * size).T
    distance = shapely.distance(shapely.box(x0, y0, x0 + size, y0 + size), q)
    return {o for o, d in zip(offsets, distance, strict=True) if d <= margin}


def _free_near(blocked: set[tuple[int, int]], reach: int = 12) -> list[tuple[int, int]]:
    """The offsets within ``reach`` cells (Chebyshev) not in ``blocked``."""
    r = range(-reach, reach + 1)
    return [(dx, dy) for dx in r for dy in r if (dx, dy) not in blocked]


def test_touching_cells_come_in_answers_bounded_however_many_there_are(tmp_path):
    """An engine whose answers are capped at 2,000 bytes (Earth Engine's 10 MB, lowered): a polygon whose margin
    blocks every cell within 12 cells (Chebyshev, the pairing's round) of its positive (1,041 touching cells,
    about 9 kB of keys) still gets its grid with ``answer_bytes=2000``: the touching cells of the group's request
    and of both wider requests (12 cells, then the 48-cell reach) come a bounded list a feature. The negative is
    the brute-force nearest free cell (shapely, pyproj), past 12 cells. It fails with one list of all the keys
    (the answer is refused)."""
    import ee

    import gee_mining

    spec, margin = GridSpec.of(5500), 95_950.0
    poly = shapely.box(14.965, 1.0, 14.974, 1.009)  # inside cell (90, 20) of UTM 33 N
    blocked = _margin_blocked(poly, spec.cell_size, margin, (90, 20))
    assert blocked == _margin_blocked(poly, spec.cell_size, margin - 100, (90, 20))  # no cell near the margin:
    assert blocked == _margin_blocked(poly, spec.cell_size, margin + 100, (90, 20))  # geodesic or planar alike
    d2, dy, dx = _nearest_free(blocked)
    assert d2 > 12 * 12 and len(blocked) == 1041 and not _free_near(blocked)
    settings = {"limits": {"answer_bytes": 2000, "page_bytes": 2000}}
    gee_mining.connect("local", project="gee-mining-answers", storage_root=tmp_path, engine_settings=settings)
    try:
        with pytest.raises(ee.EEException, match="Response size exceeds limit of 2000 bytes"):
            ee.List.repeat("90,20", 400).getInfo()  # the cap holds: 1,041 keys in one list would pass it
        fc = _collection(ee, [poly])
        table = build_grid(ee, fc, spec, margin=margin, metadata=NO_METADATA, answer_bytes=2000)
    finally:
        gee_mining.disconnect()
    (pos,), (neg,) = table.positives, table.negatives
    assert (pos["cell_x"], pos["cell_y"]) == (90, 20)
    assert (neg["cell_x"], neg["cell_y"]) == (90 + dx, 20 + dy)
    assert neg["distance_m"] == pytest.approx(spec.cell_size * math.sqrt(d2))
    with pytest.raises(InputError, match="answer_bytes 100: give at least 1024"):
        build_grid(ee, fc, spec, margin=margin, metadata=NO_METADATA, answer_bytes=100)


def test_touching_keys_are_sliced_only_where_the_blocks_could_hold_more_than_an_answer(ee_local):
    """touching_pages: 25 keys of a 4-cell block with a 6-cell rim (keys of at most 9 bytes: 2 digits a side, a
    sign, quotes and separators) and 300 bytes an answer: slices of (300 - 200) // 9 = 11 keys, in order; with
    8 MB, one feature (the block and rim hold 20 x 20 cells, far fewer than an answer's keys)."""

    group = BlockGroup(32633, 4, ((0, 0),))
    keys = [f"{x},{y}" for x in range(-5, 0) for y in range(5)]
    assert key_bytes(5500.0, group, 6) == 9
    sliced = touching_pages(ee_local, keys, 5500.0, group, 6, 300).aggregate_array("touching").getInfo()
    assert [len(k) for k in sliced] == [11, 11, 3] and sum(sliced, []) == keys
    whole = touching_pages(ee_local, keys, 5500.0, group, 6, 8_000_000).aggregate_array("touching").getInfo()
    assert whole == [keys]


def test_a_mapped_function_is_traced_once_per_key_and_sent_as_map_sends_it(ee_local):
    """mapped: the graph equals the ee client's own ``map`` of the same function; a second map with the same key
    (another collection) does not call the Python function again, and its values are computed per feature (areas
    against shapely in the zone's projection, pyproj); another key traces again; an unhashable key maps as
    ``map`` does."""

    calls = []

    def area(f):
        calls.append(1)
        return f.set("a", f.geometry().area(1, ee_local.Projection("EPSG:32633")))

    polys = SCATTERED[:3]
    fc = _collection(ee_local, polys)
    key = ("test-area", len(_TRACED), object.__hash__(calls))
    assert mapped(ee_local, fc, key, area).serialize() == fc.map(area).serialize()
    traced = len(calls)  # the client's map traced it 3 times, mapped 3 more
    other = _collection(ee_local, polys[::-1])
    got = mapped(ee_local, other, key, area).aggregate_array("a").getInfo()
    assert len(calls) == traced
    tf = pyproj.Transformer.from_crs(4326, 32633, always_xy=True)
    want = [shapely.transform(shapely.segmentize(p, 1e-4), lambda xy: np.column_stack(tf.transform(*xy.T))).area
            for p in polys[::-1]]  # fmt: skip
    assert got == pytest.approx(want, rel=1e-6)
    mapped(ee_local, fc, (*key, "other"), area)
    assert len(calls) == traced + 3
    unhashable = mapped(ee_local, fc, ("test-area", []), area)
    assert unhashable.serialize() == fc.map(area).serialize() and len(calls) == traced + 9

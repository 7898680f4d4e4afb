"""Step 1 benchmark: the grid of the 5,232 Amazon mining polygons at 1375 m.

Side by side in one run: ``gee_mining.steps.grid.build_grid`` on the local engine vs
a vectorised shapely STRtree reference that builds the same table:

- positive cells with their overlap fraction (the union of the polygons a cell touches, a lone polygon
  taken as it is, clipped to the cell's square by ``shapely.clip_by_rect``: about 2x faster than a general
  intersection, the same areas within 1e-12) and the ids of the polygons they touch;
- each positive's distinct nearest cell touching no polygon (same rule: nearest
  centre first, ties by positive order, then by the cell's y and x);
- every cell's centroid and bounds in longitude/latitude.

The reference is written here with shapely, pyproj and numpy only, and is
checked against the engine's table in the same run. Each size is a table of its
own: the first n polygons written to one GeoJSON file, which the engine reads as
a table asset (as a user's table is) and the reference reads its polygons from
(both outside the timing). Each engine run starts a fresh local engine, so that
nothing the engine derived from the polygons in an earlier run (their spatial
index, their reprojections) is reused. Also: how the engine's time grows from
500 to 5,232 polygons.

Usage: ``.venv/bin/python bench/bench_grid.py [--sizes 500,1000,2500,5232] [--repeat 3] [--no-memory]``
Goal (issue 26): paired ratio <= 1.5x at 5,232 polygons, <= 2x at 500.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyogrio
import pyproj
import shapely
from bench_composite import peak_mb  # the benches' one peak-memory probe (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT.parent / "shared" / "data" / "polygons" / "amazon_mining_2024_model.geojson"
SIZE = 1375.0


def _zones(polys) -> np.ndarray:
    cents = shapely.centroid(polys)
    lon, lat = shapely.get_x(cents), shapely.get_y(cents)
    return np.where(lat >= 0, 32600, 32700) + np.minimum(60, np.floor((lon + 180) / 6).astype(int) + 1)


def _square(cells: np.ndarray):
    return shapely.box(cells[:, 0] * SIZE, cells[:, 1] * SIZE, (cells[:, 0] + 1) * SIZE, (cells[:, 1] + 1) * SIZE)


def _candidates(shapes) -> np.ndarray:
    """Integer cells (x, y) inside the shapes' bounding boxes, without repeats, in rows (by y, then x) as
    ``coveringGrid`` lists them: the order that breaks ties between positives wanting the same negative. All
    boxes' cells made at once (no array per polygon), their repeats dropped by one sort of row-major keys."""
    b = shapely.bounds(shapes)
    i0, j0 = np.floor(b[:, 0] / SIZE).astype(np.int64), np.floor(b[:, 1] / SIZE).astype(np.int64)
    i1, j1 = np.floor(b[:, 2] / SIZE).astype(np.int64), np.floor(b[:, 3] / SIZE).astype(np.int64)
    nx = i1 - i0 + 1
    counts = nx * (j1 - j0 + 1)
    owner = np.repeat(np.arange(len(shapes)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    x, y = i0[owner] + offset % nx[owner], j0[owner] + offset // nx[owner]
    x0, y0, width = x.min(), y.min(), x.max() - x.min() + 1
    key = np.unique((y - y0) * width + (x - x0))  # sorted: by y, then x
    return np.column_stack([key % width + x0, key // width + y0])


def _touching(shapes) -> set[tuple[int, int]]:
    cand = _candidates(shapes)
    hit = np.unique(shapely.STRtree(shapes).query(_square(cand), predicate="intersects")[0])
    return {(int(x), int(y)) for x, y in cand[hit]}


def _negatives(pos: np.ndarray, blocked: set) -> list:
    """Each positive's distinct nearest free cell: all (distance, positive, y, x) candidates sorted, taken
    greedily, within 1 cell (the 8 neighbours), then 3, 6, ..., 48 cells for those still without one."""
    out: list = [None] * len(pos)
    taken = set(blocked)
    radius = 1
    while True:
        todo = np.array([k for k, o in enumerate(out) if o is None])
        r = np.arange(-radius, radius + 1)
        dx, dy = (a.ravel() for a in np.meshgrid(r, r))
        keep = (dx != 0) | (dy != 0)
        dx, dy = dx[keep], dy[keep]
        x = (pos[todo, 0][:, None] + dx).ravel()
        y = (pos[todo, 1][:, None] + dy).ravel()
        d2 = np.tile(dx * dx + dy * dy, len(todo))
        who = np.repeat(todo, len(dx))
        for k in np.lexsort((x, y, who, d2)):
            i, cell = who[k], (int(x[k]), int(y[k]))
            if out[i] is None and cell not in taken:
                out[i] = (cell, math.sqrt(d2[k]) * SIZE)
                taken.add(cell)
        if all(o is not None for o in out) or radius >= 48:
            return out
        radius = 3 if radius == 1 else radius * 2


def _lonlat(tf, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (lon, lat) and bounds (west, south, east, north) of cells, through pyproj."""
    cx, cy = tf.transform((cells[:, 0] + 0.5) * SIZE, (cells[:, 1] + 0.5) * SIZE)
    corners = [
        tf.transform((cells[:, 0] + u) * SIZE, (cells[:, 1] + v) * SIZE) for u, v in ((0, 0), (1, 0), (1, 1), (0, 1))
    ]
    lon, lat = np.stack([c[0] for c in corners]), np.stack([c[1] for c in corners])
    return np.column_stack([cx, cy]), np.column_stack([lon.min(0), lat.min(0), lon.max(0), lat.max(0)])


def reference(polys) -> dict:
    """The grid table with shapely, pyproj and numpy: ``{(epsg, x, y): row}`` for positives and negatives."""
    zone_of = _zones(polys)
    rows = {}
    for code in np.unique(zone_of):
        to_utm = pyproj.Transformer.from_crs(4326, int(code), always_xy=True)
        to_ll = pyproj.Transformer.from_crs(int(code), 4326, always_xy=True)
        utm = shapely.transform(polys, lambda xy, tf=to_utm: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        zone = code % 100
        near = np.isin(zone_of % 100, [zone, zone % 60 + 1, (zone - 2) % 60 + 1])
        cand = _candidates(utm[zone_of == code])
        boxes = _square(cand)
        cell_k, poly_k = shapely.STRtree(utm).query(boxes, predicate="intersects")
        order = np.argsort(cell_k, kind="stable")
        cell_k, poly_k = cell_k[order], poly_k[order]
        cuts = np.searchsorted(cell_k, np.arange(len(cand) + 1))
        positives = []
        for k in range(len(cand)):
            hits = poly_k[cuts[k] : cuts[k + 1]]
            if len(hits):
                shape = utm[hits[0]] if len(hits) == 1 else shapely.union_all(utm[hits])  # one: its own union
                x0, y0 = cand[k] * SIZE
                frac = shapely.clip_by_rect(shape, x0, y0, x0 + SIZE, y0 + SIZE).area / SIZE**2
                if frac >= 0.001:
                    positives.append((k, frac, sorted(int(h) for h in hits)))
        if not positives:
            continue
        pos = cand[[k for k, _, _ in positives]]
        negs = _negatives(pos, _touching(utm[near]))
        neg_cells = np.array([n[0] for n in negs if n is not None]).reshape(-1, 2)
        cents, bounds = _lonlat(to_ll, np.concatenate([pos, neg_cells]))
        for n, (_, frac, ids) in enumerate(positives):
            rows[(int(code), *map(int, pos[n]))] = {
                "overlap": frac,
                "ids": ids,
                "centroid": cents[n],
                "bounds": bounds[n],
            }
        for m, cell in enumerate(neg_cells):
            rows[(int(code), *map(int, cell))] = {
                "overlap": 0.0,
                "centroid": cents[len(pos) + m],
                "bounds": bounds[len(pos) + m],
            }
    return rows


def agreement(table, ref: dict) -> str:
    """How far the engine's table is from the reference: positives, overlaps, polygon ids (the local catalog
    numbers rows in hexadecimal), negatives, centroids."""
    got = {(r["epsg"], r["cell_x"], r["cell_y"]): r for r in table.rows}
    pos = {k for k, r in got.items() if r["label"] == 1}
    ref_pos = {k for k, r in ref.items() if "ids" in r}
    both = pos & ref_pos
    d_overlap = max((abs(got[k]["overlap"] - ref[k]["overlap"]) for k in both), default=0.0)
    ids_same = sum(sorted(int(i, 16) for i in got[k]["polygon_ids"]) == ref[k]["ids"] for k in both)
    negs = {k for k, r in got.items() if r["label"] == 0}
    ref_negs = set(ref) - ref_pos
    shared = set(got) & set(ref)
    d_centre = max(
        (math.hypot(got[k]["lon"] - ref[k]["centroid"][0], got[k]["lat"] - ref[k]["centroid"][1]) for k in shared),
        default=0.0,
    )
    d_bounds = max(
        (
            max(abs(got[k][side] - ref[k]["bounds"][j]) for j, side in enumerate(("west", "south", "east", "north")))
            for k in shared
        ),
        default=0.0,
    )
    return (
        f"positives {'same' if pos == ref_pos else f'DIFFER ({len(pos ^ ref_pos)})'}, overlap within {d_overlap:.1e}, "
        f"ids same {ids_same:,}/{len(both):,}, negatives same {len(negs & ref_negs):,}/{len(ref_negs):,}, "
        f"centroids within {d_centre:.1e} deg, bounds within {d_bounds:.1e} deg"
    )


ASSET = "projects/gee-mining-bench/assets/amazon"


def _table_of(n: int, folder: Path) -> str:
    """The first ``n`` Amazon polygons as a GeoJSON file in ``folder`` (features copied as they are, so the
    coordinates are the same numbers), and its catalog entry (``ASSET_n``)."""
    data = json.loads(AMAZON.read_text())
    data["features"] = data["features"][:n]
    path = folder / f"amazon_{n}.geojson"
    path.write_text(json.dumps(data))
    return f'[[table]]\nid = "{ASSET}_{n}"\npath = "{path}"\n'


def _timed(fn) -> tuple[float, float, object]:
    """``fn()``'s wall and CPU seconds (this process: the in-process engine and the reference alike) and its
    result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))  # this checkout's gee_mining, not an installed one
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500,1000,2500,5232")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternating, paired")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    args = parser.parse_args(argv)
    if not AMAZON.exists():
        print(f"skip: {AMAZON} is absent (the project's shared data)")
        return 0
    import ee

    import gee_mining
    from gee_mining.contracts.cells import GridSpec
    from gee_mining.steps.grid import build_grid

    sizes = [int(v) for v in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="gee-mining-bench-"))
    catalog = tmp / "catalog.toml"
    catalog.write_text("".join(_table_of(n, tmp) for n in sizes))

    def fresh_engine(n: int):
        """A new local engine for each run, the table of ``n`` polygons read outside the timing: nothing it
        derived from the polygons in an earlier run (their spatial index, their reprojections, cached on them)
        is reused, as the reference reuses nothing either."""
        gee_mining.disconnect()
        gee_mining.connect("local", project="gee-mining-bench", catalog=catalog)
        fc = ee.FeatureCollection(f"{ASSET}_{n}")
        fc.size().getInfo()
        gc.collect()
        return fc

    spec = GridSpec.of(SIZE)
    print(f"== grid at {SIZE:g} m: engine (build_grid) vs a shapely/pyproj/numpy reference of the same table ==")
    print(f"{args.repeat} runs of each side, alternating, a fresh engine for each run; ratios paired run by run")
    print("(wall seconds, and CPU seconds of this process: on a machine shared with other work the CPU time is")
    print(" the steadier measure of the work each side does); peak memory (tracemalloc) in one more run each")
    print(
        f"{'polygons':>9} {'cells':>7} {'engine s':>9} {'ref s':>7} {'wall ratio min/med':>19} "
        f"{'engine cpu':>11} {'ref cpu':>8} {'cpu ratio min/med':>18} {'peak MiB eng/ref':>17}  agreement"
    )
    for n in sizes:
        polys = shapely.from_wkb(pyogrio.raw.read(tmp / f"amazon_{n}.geojson")[2])  # the engine's table's polygons
        engine, refs = [], []
        for _ in range(args.repeat):  # alternating, so that a noisy moment hits both sides
            fc = fresh_engine(n)
            engine.append(_timed(lambda fc=fc: build_grid(ee, fc, spec)))
            table = engine[-1][2]
            gc.collect()
            refs.append(_timed(lambda polys=polys: reference(polys)))
            ref = refs[-1][2]
        wall = sorted(e[0] / r[0] for e, r in zip(engine, refs, strict=True))
        cpu = sorted(e[1] / r[1] for e, r in zip(engine, refs, strict=True))
        peak = ""
        if args.memory:
            fc = fresh_engine(n)
            peak = f"{peak_mb(lambda fc=fc: build_grid(ee, fc, spec)):.0f}/{peak_mb(lambda polys=polys: reference(polys)):.0f}"
        print(
            f"{'':>9} runs: engine {', '.join(f'{e[0]:.2f}' for e in engine)} s wall, "
            f"{', '.join(f'{e[1]:.2f}' for e in engine)} s cpu; reference {', '.join(f'{r[0]:.2f}' for r in refs)} s wall, "
            f"{', '.join(f'{r[1]:.2f}' for r in refs)} s cpu"
        )
        print(
            f"{n:>9,} {len(table.rows):>7,} {min(e[0] for e in engine):>9.2f} {min(r[0] for r in refs):>7.2f} "
            f"{wall[0]:>9.2f} / {statistics.median(wall):<7.2f} {min(e[1] for e in engine):>11.2f} "
            f"{min(r[1] for r in refs):>8.2f} {cpu[0]:>8.2f} / {statistics.median(cpu):<7.2f} {peak:>17}  "
            f"{agreement(table, ref)}"
        )
    print("goal (issue 26): ratio <= 1.5x at 5,232 polygons, <= 2x at 500")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

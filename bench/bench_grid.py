"""Step 1 benchmark: the grid of the 5,232 Amazon mining polygons at 1375 m.

Side by side in one run: ``gee_mining.grid.build_grid`` on the local engine
(positives with overlap, and their negatives) vs a vectorised shapely STRtree
reference computing the same positives and overlaps directly; and how the
engine's time grows from 500 to 5,232 polygons.

Usage: ``.venv/bin/python bench/bench_grid.py [--sizes 500,1000,2500,5232]``
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyogrio
import pyproj
import shapely

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT.parent / "shared" / "data" / "polygons" / "amazon_mining_2024_model.geojson"
SIZE = 1375.0


def reference(polys) -> dict:
    """Positives and overlaps with shapely: STRtree per UTM zone, vectorised intersections."""
    cents = shapely.centroid(polys)
    lon, lat = shapely.get_x(cents), shapely.get_y(cents)
    epsg = np.where(lat >= 0, 32600, 32700) + np.minimum(60, np.floor((lon + 180) / 6).astype(int) + 1)
    out = {}
    for code in np.unique(epsg):
        tf = pyproj.Transformer.from_crs(4326, int(code), always_xy=True)
        utm = shapely.transform(polys, lambda xy, tf=tf: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        members = utm[epsg == code]
        tree = shapely.STRtree(utm)
        cells = []
        for b in shapely.bounds(members):
            for i in range(math.floor(b[0] / SIZE), math.ceil(b[2] / SIZE)):
                for j in range(math.floor(b[1] / SIZE), math.ceil(b[3] / SIZE)):
                    cells.append((i, j))
        cells = sorted(set(cells))
        boxes = shapely.box(*np.array([(i * SIZE, j * SIZE, (i + 1) * SIZE, (j + 1) * SIZE) for i, j in cells]).T)
        hit_cells, _ = tree.query(boxes, predicate="intersects")
        member_tree = shapely.STRtree(members)
        covered = np.unique(member_tree.query(boxes, predicate="intersects")[0])
        for k in covered:
            near = tree.query(boxes[k], predicate="intersects")
            frac = shapely.intersection(boxes[k], shapely.union_all(utm[near])).area / SIZE**2
            if frac >= 0.001:
                out[(int(code), *cells[k])] = frac
        del hit_cells
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500,1000,2500,5232")
    args = parser.parse_args(argv)
    if not AMAZON.exists():
        print(f"skip: {AMAZON} is absent (the project's shared data)")
        return 0
    import ee

    import gee_mining
    from gee_mining.grid import GridSpec, build_grid

    _, _, wkb, _ = pyogrio.raw.read(AMAZON)
    polys = shapely.from_wkb(wkb)
    tmp = Path(tempfile.mkdtemp(prefix="gee-mining-bench-"))
    catalog = tmp / "catalog.toml"
    catalog.write_text(f'[[table]]\nid = "projects/gee-mining-bench/assets/amazon"\npath = "{AMAZON}"\n')
    gee_mining.connect("local", project="gee-mining-bench", catalog=catalog)
    fc = ee.FeatureCollection("projects/gee-mining-bench/assets/amazon")
    fc.size().getInfo()  # the table read once, outside the timings
    spec = GridSpec.of(SIZE)
    print(f"== grid at {SIZE:g} m: engine (positives + negatives) vs shapely STRtree (positives only) ==")
    print(f"{'polygons':>9} {'engine s':>9} {'positives':>9} {'reference s':>12} {'ratio':>6}")
    for n in [int(v) for v in args.sizes.split(",")]:
        subset = fc.limit(n)
        t = time.perf_counter()
        table = build_grid(ee, subset, spec)
        engine_s = time.perf_counter() - t
        t = time.perf_counter()
        ref = reference(polys[:n])
        ref_s = time.perf_counter() - t
        got = {(r["epsg"], r["cell_x"], r["cell_y"]) for r in table.positives}
        agree = "same cells" if got == set(ref) else f"DIFFERENT ({len(got ^ set(ref))} cells)"
        print(f"{n:>9,} {engine_s:>9.2f} {len(table.positives):>9,} {ref_s:>12.2f} {engine_s / ref_s:>6.2f}x  {agree}")
    print("goal: ratio <= 2x at 5,232 polygons (the engine also finds the negatives)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

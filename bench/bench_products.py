"""Issue 6 benchmark: the whole per-cell product for 20 cells on the local engine, and where the time goes.

A simulated world (10 km, a year of scenes: 73 Level-2A scenes with Cloud Score+) is
generated in a temporary folder; 20 zoom-16 cells (1375 m, 138 x 138 pixels of 10 m) inside
it, positives and negatives, come from ``grid.build_grid``. For each cell, through the real
``ee`` client on the in-process local engine:

1. composite: the Cloud Score+ masked median of the 12 bands (``sentinel2.composite``), fetched
   with ``computePixels`` (NPY);
2. + indices: the composite with the 66 pairwise normalised differences (``indices.add_indices``);
3. labels: ``_mine`` and the signed distance alone (``labels.label_bands``);
4. export: the whole product (``imagery.cell_image``: composite, 66 ND, labels; 80 float bands)
   as a cloud-optimized GeoTIFF with ``Export.image`` (``exports.export_cells``), end to end.

Stage shares are differences of these side-by-side timings (the engine caches nothing between
requests): indices = (2) - (1); writing the file = (4) - (2) - (3). Peak memory is the
process's maximum resident set size (``resource.getrusage``) after the run, and the peak of
Python allocations (tracemalloc) during one cell's export, in a separate pass.

Usage: ``.venv/bin/python bench/bench_products.py [--cells 20] [--months 12]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--size-km", type=float, default=10.0)
    args = parser.parse_args()

    import ee

    import gee_mining
    from gee_mining.batch.exports import ExportSpec, export_cells
    from gee_mining.contracts.bands import BANDS
    from gee_mining.contracts.cells import GridSpec
    from gee_mining.contracts.lattice import pixel_grid
    from gee_mining.steps.cell_image import ImagerySpec
    from gee_mining.steps.grid import build_grid
    from gee_mining.steps.indices import add_indices
    from gee_mining.steps.labels import label_bands
    from gee_mining.steps.sentinel2 import composite
    from gee_mining.world import generate_world

    tmp = Path(tempfile.mkdtemp(prefix="bench-products-"))
    t = time.perf_counter()
    world = generate_world(tmp / "world", size_km=args.size_km, months=args.months, seed=0, project="gee-mining-bench")
    print(f"world: {len(world.scenes)} scenes in {time.perf_counter() - t:.1f} s")
    gee_mining.connect("local", project="gee-mining-bench", catalog=world.catalog, storage_root=tmp / "storage")
    mines = world.asset_ids["mines"]
    table = build_grid(ee, mines, GridSpec.of(1375))
    x0, top = world.grid["origin"]
    size = world.grid["size_m"]

    def inside(r):
        xmin, ymin, xmax, ymax = pixel_grid(r).bounds
        return xmin >= x0 and xmax <= x0 + size and ymin >= top - size and ymax <= top

    rows = [r for r in table.rows if inside(r)][: args.cells]
    print(f"cells: {len(rows)} of 138 x 138 px ({sum(r['label'] for r in rows)} positives)")
    spec = ImagerySpec(pairwise=BANDS)

    def fetch(image, row) -> None:
        ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": pixel_grid(row).ee_grid()})

    stages = {"composite": 0.0, "composite + 66 ND": 0.0, "labels": 0.0, "export (whole product, COG)": 0.0}
    for i, row in enumerate(rows):
        t = time.perf_counter()
        fetch(composite(row, spec.composite), row)
        stages["composite"] += time.perf_counter() - t
        t = time.perf_counter()
        fetch(add_indices(composite(row, spec.composite), pairwise=BANDS), row)
        stages["composite + 66 ND"] += time.perf_counter() - t
        t = time.perf_counter()
        fetch(label_bands(ee.FeatureCollection(mines), row), row)
        stages["labels"] += time.perf_counter() - t
        t = time.perf_counter()
        (result,) = export_cells([row], mines, ExportSpec("gs://bench/cells"), spec)
        assert result.state == "COMPLETED", result
        stages["export (whole product, COG)"] += time.perf_counter() - t
        print(f"  cell {i + 1}/{len(rows)} done")
    total = stages["export (whole product, COG)"]
    shares = {
        "composite (median of the masked scenes)": stages["composite"],
        "66 normalised differences": stages["composite + 66 ND"] - stages["composite"],
        "labels (_mine, signed distance)": stages["labels"],
        "writing the GeoTIFF (rest of the export)": total - stages["composite + 66 ND"] - stages["labels"],
    }
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    export_cells(rows[:1], mines, ExportSpec("gs://bench/traced"), spec)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"\nwhole per-cell product for {len(rows)} cells: {total:.1f} s ({total / len(rows):.2f} s per cell)")
    for name, seconds in shares.items():
        note = "  (within timing noise)" if abs(seconds) < 0.03 * total else ""
        print(f"  {name:45s} {seconds:7.1f} s  {seconds / total:6.1%}{note}")
    print(f"peak resident memory of the process: {rss_mb:.0f} MB; peak Python allocations in one export: "
          f"{peak / 1e6:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()

"""Issue 3 benchmark: a median composite of a year of scenes plus 66 normalised differences.

A year of synthetic Sentinel-2-like scenes (73 scenes, one every 5 days; 12
reflectance bands B1..B12 with B8A at their native 10/20/60 m; random DN with
cloud masks written as nodata 0) is written as GeoTIFFs in a temporary folder
and registered as an image collection in a temporary catalog. For one 550 x
550 cell at 10 m the benchmark computes

    the 12-band median composite and the 66 ``ND_Bi_Bj = (Bi - Bj) / (Bi + Bj)``

1. through the engine: ``ee.ImageCollection(...).median()`` plus 66
   ``normalizedDifference`` bands, fetched with ``ee.data.computePixels``
   (NPY) through the real ``ee`` client, in-process;
2. hand-written in numpy on the same files: rasterio window reads, nearest
   upsampling of the 20 m and 60 m bands to 10 m, a sort-based masked median
   (much faster than ``np.nanmedian``), the same ND arithmetic;

checks that both give the same pixels, and prints times, peak memory
(tracemalloc, in a separate run so that tracing does not slow the timings)
and their ratios side by side. Goal: engine time <= 1.3 x numpy time.

Usage: ``.venv/bin/python bench/bench_composite.py [--repeat 3] [--scenes 73]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "projects/gee-mining-bench/assets/s2_year"
BANDS = {  # band -> native pixel size (m)
    "B1": 60,
    "B2": 10,
    "B3": 10,
    "B4": 10,
    "B5": 20,
    "B6": 20,
    "B7": 20,
    "B8": 10,
    "B8A": 20,
    "B9": 60,
    "B11": 20,
    "B12": 20,
}
CRS = "EPSG:32633"
SCENE_M = 6600  # scenes are 6.6 km squares
X0, Y0 = 400000, 5400000  # scene upper-left corner
CELL = 550  # the cell: 550 x 550 px at 10 m, 600 m inside the scene (on the 60 m lattice)
CELL_X0, CELL_Y0 = X0 + 600, Y0 - 600
PAIRS = list(itertools.combinations(BANDS, 2))


def write_scenes(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` scenes of random DN with clouds (nodata 0), and a catalog TOML registering them."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    start = dt.datetime(2021, 1, 1, 10, 0, tzinfo=dt.UTC)
    entries = []
    for k in range(n):
        clouds60 = rng.random((SCENE_M // 60, SCENE_M // 60)) < rng.uniform(0.0, 0.6)
        files = {}
        for band, res in BANDS.items():
            size = SCENE_M // res
            data = rng.integers(1, 10000, (size, size), dtype=np.uint16)
            f = 60 // res
            data[np.repeat(np.repeat(clouds60, f, 0), f, 1)] = 0
            path = folder / f"scene{k:03d}_{band}.tif"
            with rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=size,
                height=size,
                count=1,
                dtype="uint16",
                crs=CRS,
                transform=from_origin(X0, Y0, res, res),
                nodata=0,
                tiled=True,
                blockxsize=256 if size >= 256 else 16 * (size // 16 or 1),
                blockysize=256 if size >= 256 else 16 * (size // 16 or 1),
            ) as ds:
                ds.write(data, 1)
            files[band] = path
        when = (start + dt.timedelta(days=5 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")
        bands = ", ".join(f'{b} = "{p}"' for b, p in files.items())
        entries.append(
            f'[[image]]\nid = "{COLLECTION}/scene{k:03d}"\ncollection = "{COLLECTION}"\n'
            f'time_start = "{when}"\nbands = {{ {bands} }}\n'
        )
    catalog = folder / "catalog.toml"
    catalog.write_text("\n".join(entries))
    return catalog


GRID = {
    "dimensions": {"width": CELL, "height": CELL},
    "affineTransform": {
        "scaleX": 10,
        "shearX": 0,
        "translateX": CELL_X0,
        "shearY": 0,
        "scaleY": -10,
        "translateY": CELL_Y0,
    },
    "crsCode": CRS,
}


def engine_composite(ee) -> np.ndarray:
    median = ee.ImageCollection(COLLECTION).median()
    image = median
    for a, b in PAIRS:
        image = image.addBands(median.normalizedDifference([a, b]).rename(f"ND_{a}_{b}"))
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": GRID})


def numpy_composite(folder: Path, n: int) -> dict[str, np.ndarray]:
    """The same composite by hand: windowed reads, nearest upsampling, sort-based masked median, NDs."""
    import rasterio
    from rasterio.windows import Window

    medians: dict[str, np.ndarray] = {}
    for band, res in BANDS.items():
        f = res // 10
        off = 600 // res  # the cell starts 600 m inside the scene, on every band's lattice
        size = -(-CELL * 10 // res)
        stack = np.empty((n, CELL, CELL), np.float32)
        for k in range(n):
            with rasterio.open(folder / f"scene{k:03d}_{band}.tif") as ds:
                block = ds.read(1, window=Window(off, off, size, size))
            if f > 1:
                block = np.repeat(np.repeat(block, f, 0), f, 1)[:CELL, :CELL]
            layer = stack[k]
            layer[...] = block
            layer[block == 0] = np.nan
        s = np.sort(stack, axis=0)
        count = (~np.isnan(stack)).sum(axis=0)
        lo = np.take_along_axis(s, ((np.maximum(count, 1) - 1) // 2)[None], axis=0)[0].astype(np.float64)
        hi = np.take_along_axis(s, (count // 2)[None], axis=0)[0].astype(np.float64)
        medians[band] = np.where(count > 0, (lo + hi) / 2, 0.0)
    out = dict(medians)
    for a, b in PAIRS:
        x, y = medians[a], medians[b]
        out[f"ND_{a}_{b}"] = ((x - y) / (x + y)).astype(np.float32)
    return out


def timed_pairs(engine, numpy_, repeat: int) -> tuple[float, float, float]:
    """Best times of both paths and the median ratio of back-to-back pairs (the two paths alternate,
    so that a busy machine slows both alike)."""
    pairs = []
    for _ in range(repeat):
        t = time.perf_counter()
        engine()
        te = time.perf_counter() - t
        t = time.perf_counter()
        numpy_()
        pairs.append((te, time.perf_counter() - t))
    return min(p[0] for p in pairs), min(p[1] for p in pairs), statistics.median(e / n for e, n in pairs)


def peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenes", type=int, default=73)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import ee

    import gee_mining

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        catalog = write_scenes(folder, args.scenes)
        print(f"wrote {args.scenes} scenes x {len(BANDS)} bands in {time.perf_counter() - t:.1f} s")
        gee_mining.connect("local", project="gee-mining-bench", catalog=catalog, storage_root=folder / "storage")

        got = engine_composite(ee)
        want = numpy_composite(folder, args.scenes)
        assert list(got.dtype.names) == list(want), "band names differ"
        for name, ref in want.items():
            np.testing.assert_allclose(got[name], ref, rtol=1e-6 if name.startswith("ND_") else 0, err_msg=name)
        print(f"same pixels: {len(want)} bands ({len(BANDS)} medians + {len(PAIRS)} NDs) on {CELL} x {CELL}")

        t_engine, t_numpy, pair_ratio = timed_pairs(
            lambda: engine_composite(ee), lambda: numpy_composite(folder, args.scenes), args.repeat
        )
        m_engine = peak_mb(lambda: engine_composite(ee))
        m_numpy = peak_mb(lambda: numpy_composite(folder, args.scenes))

    print()
    print(f"{'':24}{'engine':>12}{'numpy':>12}{'ratio':>10}")
    print(f"{f'time (best of {args.repeat}), s':24}{t_engine:12.3f}{t_numpy:12.3f}{t_engine / t_numpy:10.2f}")
    print(f"{'median pair ratio':24}{'':24}{pair_ratio:10.2f}")
    print(f"{'peak memory, MiB':24}{m_engine:12.1f}{m_numpy:12.1f}{m_engine / m_numpy:10.2f}")
    goal = pair_ratio <= 1.3
    print(f"\ngoal engine/numpy time <= 1.3: {'met' if goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

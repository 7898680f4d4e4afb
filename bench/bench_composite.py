"""Issue 3/26 benchmark: a median composite of a year of scenes plus 66 normalised differences.

A year of synthetic Sentinel-2-like scenes (73 scenes, one every 5 days; 12
reflectance bands B1..B12 with B8A at their native 10/20/60 m; random uint16 DN
with cloud masks written as nodata 0) is written as GeoTIFFs in a temporary
folder and registered as an image collection in a temporary catalog. For one
550 x 550 cell at 10 m the benchmark computes

    the 12-band median composite and the 66 ``ND_Bi_Bj = (Bi - Bj) / (Bi + Bj)``

1. through the engine: ``ee.ImageCollection(...).median()`` plus 66
   ``normalizedDifference`` bands, fetched with ``ee.data.computePixels``
   (NPY) through the real ``ee`` client, in-process, and read as the library
   reads an NPY answer (``gee_mining.io.pixels.compute_npy``: a read-only
   view of the answer's bytes; the client's ``NUMPY_NDARRAY`` conversion,
   ``numpy.load``, copies the records field by field, about 0.05 s a strip).
   The engine writes the answer's records a block of rows at a time and
   computes each normalised difference straight into its field of the block
   (``Band.rows_into``), never as a whole float64 band.
   In-process the engine hands its answer over without a copy (a read-only
   memoryview of the buffer it wrote it in); its buffers are kept across
   runs and reused once the previous run's answers are dropped
   (``--fresh-answers`` drops them before each run; the traced run always).
   The 78 bands of the whole cell are 109 MB, over Earth Engine's 48 MiB per
   request, so the cell is fetched as three strips of rows (on the 60 m
   lattice), as a user must;
2. the reference, "native numpy" (``numpy_composite``): the fastest plain
   numpy we could write on the same files. Each band's median is taken at its
   NATIVE resolution (10, 20 or 60 m; 1, 1/4 or 1/36 of the pixels): the 73
   windows are read with ``out=`` straight into one uint16 stack (rasterio's
   public ``read``). Then, 2048 pixels at a time in one reused buffer that
   stays in cache, uint32 sort keys ``DN - 1`` are made pixel-major (each
   pixel's 73 values in one row; nodata 0 wraps to 2**32 - 1 and sorts last)
   and the rows sorted: numpy's SIMD sort of 32-bit keys is 4-6x faster here
   than its uint16 sort and 2-3x faster than ``np.partition`` at two fixed
   ranks; sorting rows is about 1.3x faster than sorting along the scenes
   axis; and a whole key array (88 MB for a 10 m band) is fresh memory,
   page-faulted in on every run, where the block is not. The median of each
   pixel's ``count`` valid values is the mean of ranks ``(count - 1) // 2``
   and ``count // 2`` (picked by flat index). Then nearest upsampling to 10 m and the same ND
   arithmetic. Its datasets are opened once and kept open across runs, as the
   engine keeps them (an open costs about 1 ms, a window read 0.1 ms);

checks that both give the same pixels, and prints times, peak memory
(tracemalloc, in a separate run so that tracing does not slow the timings)
and their ratios side by side, paired run by run (engine and reference
alternate, so a busy machine slows both alike): min and median of the
per-pair ratios. Goal (issue 26): median pair ratio <= 1.2. Wall and CPU seconds are both paired
(CPU: ``time.process_time``, all threads), since the machine may be shared.

Usage: ``.venv/bin/python bench/bench_composite.py [--repeat 5] [--scenes 73]``
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


STRIPS = ((0, 186), (186, 372), (372, CELL))
KEY_BLOCK = 2048  # pixels keyed and sorted at a time by the reference: 2048 x 73 x 4 bytes fit a 1 MiB L2  # rows; each strip's 78 bands fit in 48 MiB


def engine_composite(ee) -> list[np.ndarray]:
    from gee_mining.io.pixels import compute_npy

    median = ee.ImageCollection(COLLECTION).median()
    image = median
    for a, b in PAIRS:
        image = image.addBands(median.normalizedDifference([a, b]).rename(f"ND_{a}_{b}"))
    parts = []
    for r0, r1 in STRIPS:
        grid = {
            "dimensions": {"width": CELL, "height": r1 - r0},
            "affineTransform": {**GRID["affineTransform"], "translateY": CELL_Y0 - 10 * r0},
            "crsCode": CRS,
        }
        parts.append(compute_npy({"expression": image, "grid": grid}))
    return parts  # the cell's three strips of rows, as Earth Engine answers them


def open_datasets(folder: Path, n: int) -> dict[tuple[int, str], object]:
    import rasterio

    return {(k, band): rasterio.open(folder / f"scene{k:03d}_{band}.tif") for k in range(n) for band in BANDS}


def native_median(datasets: dict, n: int, band: str, res: int) -> np.ndarray:
    """One band's median at its native resolution, on integers.

    The windows are read straight into one uint16 stack (``out=``, no per-read array). Masked
    pixels are 0 (the files' nodata); ``DN - 1`` computed in uint32 maps them to 2**32 - 1, so
    they sort last, and keeps the order of the valid values. The keys are made pixel-major and
    sorted ``KEY_BLOCK`` pixels at a time in one reused buffer (it stays in cache; a whole key
    array is fresh memory each run). numpy sorts 32-bit integers with SIMD (4-6x faster here than
    its uint16 sort, 2-3x faster than ``np.partition`` at two fixed ranks). The median of a pixel's ``count`` valid values is the
    mean of sorted ranks ``(count - 1) // 2`` and ``count // 2``, plus the 1 taken off."""
    return sorted_median(*read_band(datasets, n, band, res))


def read_band(datasets: dict, n: int, band: str, res: int) -> tuple[np.ndarray, np.ndarray]:
    """One band's windows of the cell in one uint16 stack (``out=``), and each pixel's count of valid values."""
    from rasterio.windows import Window

    off = 600 // res  # the cell starts 600 m inside the scene, on every band's lattice
    size = -(-CELL * 10 // res)
    window = Window(off, off, size, size)
    raw = np.empty((n, size, size), np.uint16)
    for k in range(n):
        datasets[k, band].read(1, window=window, out=raw[k])
    return raw, np.count_nonzero(raw, axis=0).reshape(-1)


def sorted_median(raw: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The median of each pixel's ``count`` valid values of ``raw`` (uint16, 0 masked), as :func:`native_median`
    describes."""
    n, size = raw.shape[0], raw.shape[1]
    flat, pixels = raw.reshape(n, -1), size * size
    median = np.empty(pixels)
    keys = np.empty((KEY_BLOCK, n), np.uint32)  # one buffer, reused: it stays in cache, no fresh memory
    row = np.arange(KEY_BLOCK) * n
    for start in range(0, pixels, KEY_BLOCK):
        stop = min(start + KEY_BLOCK, pixels)
        block, c, r = keys[: stop - start], count[start:stop], row[: stop - start]
        np.subtract(flat[:, start:stop].T, 1, out=block, dtype=np.uint32)  # pixel-major: one row a pixel
        block.sort(axis=1)
        picked = block.reshape(-1)
        np.add(picked[r + (np.maximum(c, 1) - 1) // 2], picked[r + c // 2], out=median[start:stop], dtype=np.float64)
    median *= 0.5
    median += 1.0
    median[count == 0] = 0.0
    return median.reshape(size, size)


def numpy_composite(datasets: dict, n: int) -> dict[str, np.ndarray]:
    """The reference: native-resolution integer medians, nearest upsampling, then the NDs at 10 m."""
    medians: dict[str, np.ndarray] = {}
    for band, res in BANDS.items():
        m = native_median(datasets, n, band, res)
        f = res // 10
        medians[band] = m if f == 1 else m.repeat(f, 0).repeat(f, 1)[:CELL, :CELL]
    out = dict(medians)
    for a, b in PAIRS:
        x, y = medians[a], medians[b]
        out[f"ND_{a}_{b}"] = ((x - y) / (x + y)).astype(np.float32)
    return out


def check_same_pixels(ee, datasets: dict, n: int) -> None:
    """Both sides give the same pixels, bit for bit (NDs included). A function, so that its answers are dropped when
    it returns: held (they once stayed in ``main``'s locals through the timed runs), they kept the engine's three
    answer buffers in use, and every timed run wrote its 110 MB of answers in fresh memory (page faults, a cold
    cache) instead of reusing the buffers as the header describes; ``--fresh-answers`` measures that case."""
    got = engine_composite(ee)
    want = numpy_composite(datasets, n)
    assert all(list(part.dtype.names) == list(want) for part in got), "band names differ"
    for name, ref in want.items():
        joined = np.concatenate([part[name] for part in got])
        np.testing.assert_array_equal(joined, ref, err_msg=name)
    print(f"same pixels: {len(want)} bands ({len(BANDS)} medians + {len(PAIRS)} NDs) on {CELL} x {CELL}")


def timed_pairs(engine, numpy_, repeat: int) -> list[tuple[float, float, float, float]]:
    """(engine wall, reference wall, engine CPU, reference CPU) seconds of back-to-back runs, the two
    alternating (CPU: this process's, all threads; a shared machine slows wall time, not CPU time)."""
    pairs = []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        engine()
        te, ce = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        numpy_()
        pairs.append((te, time.perf_counter() - t, ce, time.process_time() - c))
    return pairs


def forget_kept_values(gee_mining, answers: bool = False) -> None:
    """Empty the connected local engine's cache of computed values (kept across requests, as Earth Engine
    keeps them): each timed run of a bench then computes its graph, as its reference does. ``answers``: drop its
    NPY answer buffers too, so that the run allocates the memory it writes its answers in (the traced run does,
    so that its peak counts them). Timed runs keep them by default: a buffer is reused only once the answers
    written in it are dropped (the previous run's), as the reference's outputs reuse the memory the allocator
    got back from the previous run's (glibc serves blocks under 32 MiB from its heap; the answers are 36.8 MB,
    above what it keeps, so they would be fresh memory each time)."""
    router = gee_mining.current_connection().local_engine.router
    router.results.clear()
    if answers:
        router.answer_buffers.clear()


def peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scenes", type=int, default=73)
    parser.add_argument("--fresh-answers", action="store_true",
                        help="drop the engine's NPY answer buffers before each timed run (fresh memory each run)")  # fmt: skip
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

        datasets = open_datasets(folder, args.scenes)
        check_same_pixels(ee, datasets, args.scenes)  # its answers are dropped when it returns, as each run's

        def engine_run(answers: bool = args.fresh_answers):
            forget_kept_values(gee_mining, answers)
            return engine_composite(ee)

        pairs = timed_pairs(engine_run, lambda: numpy_composite(datasets, args.scenes), args.repeat)
        m_engine = peak_mb(lambda: engine_run(answers=True))
        m_numpy = peak_mb(lambda: numpy_composite(datasets, args.scenes))
        for ds in datasets.values():
            ds.close()
        gee_mining.disconnect()

    print(f"\nreference: native numpy (uint16 read with out=, uint32 keys DN - 1 pixel-major, 2048 px at a time, integer sort at native "
          f"resolution, nearest upsampling); {args.repeat} pairs, engine run first in each; engine answer buffers "
          f"{'dropped before each run' if args.fresh_answers else 'kept across runs'}")  # fmt: skip
    report(pairs, m_engine, m_numpy)
    return 0


def report(pairs: list[tuple[float, float, float, float]], m_engine: float, m_numpy: float) -> None:
    """Times, ratios paired run by run (min / median) in wall and CPU seconds, and peak memory."""
    print(f"{'':16}{'engine min / median':>22}{'numpy min / median':>22}{'pair ratio min / median':>26}")
    for label, e, r in (("wall, s", 0, 1), ("CPU, s", 2, 3)):
        ratios = [p[e] / p[r] for p in pairs]
        eng = f"{min(p[e] for p in pairs):.3f} / {statistics.median(p[e] for p in pairs):.3f}"
        ref = f"{min(p[r] for p in pairs):.3f} / {statistics.median(p[r] for p in pairs):.3f}"
        print(f"{label:16}{eng:>22}{ref:>22}{f'{min(ratios):.2f} / {statistics.median(ratios):.2f}':>26}")
    print(f"{'peak memory, MiB':16}{m_engine:22.1f}{m_numpy:22.1f}{m_engine / m_numpy:26.2f}")
    for label, e, r in (("wall", 0, 1), ("CPU", 2, 3)):
        median = statistics.median(p[e] / p[r] for p in pairs)
        print(f"goal median pair ratio engine/native numpy <= 1.2 ({label}): {'met' if median <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    raise SystemExit(main())

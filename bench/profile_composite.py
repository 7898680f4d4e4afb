"""Issue 26: where the composite bench's time goes, section by section, engine and reference side by side.

Runs ``bench_composite``'s two sides alternately (same scenes, same strips) and times each section in CPU
seconds (``time.process_time``), exclusive of the sections it calls: thin wrappers around the engine's
functions and the ee client's, and the reference's phases timed inline (the same code as
``bench_composite.native_median``, cut in three). Prints each section's time per run, its minimum, and the
totals paired run by run. "shared:" sections are work both sides do; "engine:" sections are what the
reference does not do (the request, the graph, the NPY answer). Wrapping costs a few microseconds a call (a
few hundred calls a run, and about 4,000 of the block-wise normalised differences: about 10 ms).

Usage: ``.venv/bin/python bench/profile_composite.py [--repeat 5] [--scenes 73]``
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_composite as bc  # noqa: E402

SECONDS: collections.Counter = collections.Counter()
_STACK: list[float] = []


def timed(label: str, fn):
    """``fn`` with its CPU seconds, less those of timed calls inside it, added to ``SECONDS[label]``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _STACK.append(0.0)
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.process_time() - start
            inner = _STACK.pop()
            SECONDS[label] += spent - inner
            if _STACK:
                _STACK[-1] += spent

    return wrapper


def wrap_engine() -> None:
    """Timers around the ee client's serialiser, the graph evaluation, the engine's compute and NPY steps."""
    from ee import serializer

    from gee_mining.local.raster import image_collection, image_math, pixels, resample
    from gee_mining.local.service.router import Router

    serializer.encode = timed("client: serialise the graph", serializer.encode)
    Router._evaluate_in = staticmethod(timed("engine: graph evaluation", Router._evaluate_in))
    pixels.npy_writers = timed("engine: band dispatch, caches", pixels.npy_writers)
    pixels.encode_npy_rows = timed("engine: NPY header, answer buffers", pixels.encode_npy_rows)
    pixels._fill_records = timed("engine: NPY fill records", pixels._fill_records)
    image_collection._unsigned_stack = timed("shared: reads + count", image_collection._unsigned_stack)
    image_collection.reduce_int_stack = timed("shared: keys + sort + pick", image_collection.reduce_int_stack)
    resample._nearest_separable = timed("shared: upsampling + 66 ND", resample._nearest_separable)
    image_math._nd_into = timed("shared: upsampling + 66 ND", image_math._nd_into)  # a call a block and band


def reference_median(datasets: dict, n: int, band: str, res: int) -> np.ndarray:
    """``bench_composite.native_median`` cut into its three phases, each timed."""
    raw, count = timed("shared: reads + count", bc.read_band)(datasets, n, band, res)
    return timed("shared: keys + sort + pick", bc.sorted_median)(raw, count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scenes", type=int, default=73)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(bc.ROOT))
    import ee

    import gee_mining

    wrap_engine()
    bc.native_median = reference_median
    with tempfile.TemporaryDirectory() as tmp:
        catalog = bc.write_scenes(Path(tmp), args.scenes)
        gee_mining.connect("local", project="gee-mining-bench", catalog=catalog, storage_root=Path(tmp) / "storage")
        datasets = bc.open_datasets(Path(tmp), args.scenes)
        engine = timed(
            "engine: client request, reader", lambda: (bc.forget_kept_values(gee_mining), bc.engine_composite(ee))
        )
        reference = timed("shared: upsampling + 66 ND", lambda: bc.numpy_composite(datasets, args.scenes))
        engine(), reference()
        runs = [_paired_run(engine, reference) for _ in range(args.repeat)]
        for ds in datasets.values():
            ds.close()
        gee_mining.disconnect()
    report(runs)
    return 0


def _paired_run(engine, reference) -> tuple[dict, float, dict, float]:
    """(engine sections, engine CPU, reference sections, reference CPU) of one engine run and one reference run."""
    out = []
    for side in (engine, reference):
        gc.collect()
        before, start = dict(SECONDS), time.process_time()
        side()
        total = time.process_time() - start
        out += [{k: v - before.get(k, 0.0) for k, v in SECONDS.items() if v - before.get(k, 0.0) > 0}, total]
    return tuple(out)


def report(runs: list[tuple[dict, float, dict, float]]) -> None:
    print(f"{'section (CPU s, exclusive)':34}{'engine min / median':>22}{'reference min / median':>26}")
    labels = sorted({k for r in runs for k in (*r[0], *r[2])}, key=lambda k: (k.split(":")[0], k))
    for label in labels:
        cells = []
        for side in (0, 2):
            values = [r[side].get(label, 0.0) for r in runs]
            cells.append(f"{min(values):.3f} / {statistics.median(values):.3f}" if any(values) else "-")
        print(f"{label:34}{cells[0]:>22}{cells[1]:>26}")
    ratios = [r[1] / r[3] for r in runs]
    eng = [r[1] for r in runs]
    ref = [r[3] for r in runs]
    print(f"{'total':34}{f'{min(eng):.3f} / {statistics.median(eng):.3f}':>22}"
          f"{f'{min(ref):.3f} / {statistics.median(ref):.3f}':>26}")  # fmt: skip
    print(f"pair ratio engine / reference, min / median: {min(ratios):.2f} / {statistics.median(ratios):.2f}")
    only = [sum(v for k, v in r[0].items() if not k.startswith("shared:")) for r in runs]
    floor = [(r[3] + o) / r[3] for r, o in zip(runs, only, strict=True)]
    print(f"engine-only sections, CPU s min / median: {min(only):.3f} / {statistics.median(only):.3f}; the ratio "
          f"if the shared sections were at parity (reference + engine-only, paired): {min(floor):.2f} / "
          f"{statistics.median(floor):.2f}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())

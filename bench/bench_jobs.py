"""Issue 9/26 benchmark: 10,000 cheap export tasks through the launcher against the local engine.

A job of N cells (``grid-table`` product: each task writes one cell's row as a small CSV) runs
with ``run_job`` on the local engine, ``max_running`` tasks at a time, every cell written to the
SQLite ledger before and after its submission and polled until done, polling every
``--poll`` seconds (default: the command line's interval for the local engine,
``tasks.LOCAL_POLL_S``, 1 s; 0 makes the launcher spin, which measures its polling more than its
work). Printed, side by side for N = 1,000 and 10,000 in one run (all jobs in one project, so the
last job's project holds every earlier operation too, as a real project does): tasks per second
(submitted and tracked to SUCCEEDED, files verified), CPU milliseconds per task of the launcher
(and of the engine when it serves from another process), and the peak of Python allocations
(tracemalloc) and of the process's resident memory; memory should stay flat as N grows. Then the
ratios of the largest size to the smallest: tasks/s (goal, issue 26: >= 0.9) and CPU per task.
About 6-10 minutes on 2 quiet cores; ``--sizes 500,2000`` for a quick look.

By default the engine serves from another process (``gee-mining serve``, over loopback HTTP), so
the memory figures are the launcher's own: an engine keeps every operation it ever ran, as Earth
Engine's task list does, and would grow with N whatever the launcher does. ``--inline`` runs the
engine in-process instead (faster, no HTTP; memory then includes the engine's).

Usage: ``.venv/bin/python bench/bench_jobs.py [--sizes 1000,10000] [--max-running 64] [--poll 1] [--inline]``
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gee_mining, not an installed one
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--poll", type=float, default=None, help="seconds between poll rounds (default 1 s)")
    parser.add_argument("--max-running", type=int, default=64)
    parser.add_argument("--inline", action="store_true", help="run the engine in this process")
    args = parser.parse_args()

    import ee

    import gee_mining

    tmp = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    serve = None
    if args.inline:
        gee_mining.connect("local", project="gee-mining-bench", storage_root=tmp / "storage")
    else:
        serve = subprocess.Popen(
            [sys.executable, "-m", "gee_mining.cli.main", "serve", "--project", "gee-mining-bench", "--storage",
             str(tmp / "storage")], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        url = serve.stdout.readline().split(" on ")[1].split(" ")[0]
        gee_mining.connect("local", project="gee-mining-bench", url=url)
    print(f"engine: {'in-process' if args.inline else 'another process, loopback HTTP'}")
    try:
        _run(ee, args, tmp, None if args.inline else tmp / "storage", None if serve is None else serve.pid)
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=30)


def _cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) of another process so far, from /proc (0 when there is none)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(ee, args, tmp: Path, storage_root: Path | None, engine_pid: int | None) -> None:
    from gee_mining.batch.jobs import run_job
    from gee_mining.batch.spec import parse_spec
    from gee_mining.batch.tasks import LOCAL_POLL_S

    poll = LOCAL_POLL_S if args.poll is None else args.poll
    print(f"max_running {args.max_running}, a poll round every {poll:g} s")
    print(f"{'cells':>7} {'seconds':>8} {'tasks/s':>8} {'launcher CPU ms/task':>21} {'engine CPU ms/task':>19} "
          f"{'peak alloc MB':>14} {'max RSS MB':>11}")  # fmt: skip
    rates, cpus = [], []
    for n in [int(v) for v in args.sizes.split(",")]:
        cells = tmp / f"cells_{n}.csv"
        with cells.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["name", "zoom", "label", "epsg", "cell_x", "cell_y", "cell_size"])
            for i in range(n):
                w.writerow([f"c{n}_{i}", 16, 1, 32633, 200 + i % 100, 4000 + i // 100, 1375.0])
        spec = parse_spec({
            "name": f"bench{n}", "product": "grid-table", "cells": str(cells),
            "destination": {"bucket": "bench", "prefix": f"n{n}"}, "max_running": args.max_running,
        })  # fmt: skip
        tracemalloc.start()
        t, cpu, engine_cpu = time.perf_counter(), time.process_time(), _cpu_of(engine_pid)
        result = run_job(ee, spec, tmp / f"ledger_{n}.sqlite", progress=None, poll_interval=poll,
                         storage_root=storage_root)  # fmt: skip
        seconds, cpu = time.perf_counter() - t, (time.process_time() - cpu) / n * 1e3
        engine_cpu = (_cpu_of(engine_pid) - engine_cpu) / n * 1e3
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert result.ok and result.submitted == n, result.counts
        files = len(list((tmp / "storage" / "bench" / f"n{n}").glob("*.csv")))
        assert files == n, files
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n:7d} {seconds:8.1f} {n / seconds:8.1f} {cpu:21.1f} {engine_cpu:19.1f} {peak / 1e6:14.1f} {rss:11.0f}")
        rates.append(n / seconds)
        cpus.append(cpu + engine_cpu)
    ratio = rates[-1] / rates[0]
    print(f"tasks/s at the largest size / at the smallest: {ratio:.2f}; CPU per task (launcher + engine), largest / "
          f"smallest: {cpus[-1] / cpus[0]:.2f} (goal, issue 26: tasks/s ratio >= 0.9: "
          f"{'met' if ratio >= 0.9 else 'NOT met'})")  # fmt: skip


if __name__ == "__main__":
    main()

"""The grid's memory against the size of the polygon: a box of N degrees (default 26, about Brazil's size) at
5500 m, `gee-mining grid` in its own process under an 8 GiB address-space cap, its peak resident memory (the
child's ``ru_maxrss`` from ``os.wait4``), wall time, positives and negatives.

Issue 29: a Brazil-sized box made `grid` grow to 22.5 GB and be killed. The grid streams by group of blocks
and pairs negatives per group (``steps.grid.stream_grid``), so memory follows a group, not the box.

Usage: ``.venv/bin/python bench/bench_grid_memory.py [--degrees 6,12,26] [--cell 5500]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAP = 8 << 30  # bytes of address space


def run_box(degrees: float, cell: float, work: Path, west: float = -55.0, south: float = -10.0) -> dict:
    """`grid` of one box in a fresh process under the cap: exit code, seconds, peak RSS (MB), counts."""
    ring = [[west, south], [west + degrees, south], [west + degrees, south + degrees], [west, south + degrees]]
    polygons = work / f"box{degrees:g}.geojson"
    feature = {
        "type": "Feature",
        "properties": {"id": 1},
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
    }
    polygons.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    out = work / f"grid{degrees:g}.json"
    command = [sys.executable, "-m", "gee_mining.cli.main", "grid", "--polygons", str(polygons), "--cell", f"{cell:g}",
               "--out", str(work / f"grid{degrees:g}.parquet"), "--json", str(out)]  # fmt: skip

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))

    start = time.perf_counter()
    child = subprocess.Popen(command, preexec_fn=cap, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "MPLCONFIGDIR": str(work)}, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    err = child.stderr.read().decode(errors="replace")
    level = json.loads(out.read_text())["levels"][0] if out.exists() else {}
    return {"degrees": degrees, "exit": os.waitstatus_to_exitcode(status), "seconds": round(time.perf_counter() - start),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "positives": level.get("positives"),
            "negatives": level.get("negatives"), "error": err.strip().splitlines()[-1:] if status else []}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--degrees", default="26", help="box sizes in degrees, comma-separated (default 26)")
    p.add_argument("--cell", type=float, default=5500.0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for degrees in (float(d) for d in args.degrees.split(",")):
            print(json.dumps(run_box(degrees, args.cell, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

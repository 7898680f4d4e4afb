"""Local engine benchmarks (issue: foundation), measured side by side in one run.

value:compute round-trip latency: median of many small requests, in-process and
over loopback HTTP, through the real ``ee`` client.

``FeatureCollection.map`` (geodesic area, centroid, 100 m buffer) over the 5,232
Amazon polygons against the fastest plain shapely + pyproj reference is
``bench/bench_map.py`` (it was also here, against a weaker per-polygon loop).

Usage: ``.venv/bin/python bench/bench_engine.py [--requests 300]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT.parent / "shared" / "data" / "polygons" / "amazon_mining_2024_model.geojson"
ASSET = "projects/gee-mining-bench/assets/amazon"


def latency(ee, n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        ee.Number(i).add(1).getInfo()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))  # this checkout's gee_mining, not an installed one
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)

    import ee

    import gee_mining

    if not AMAZON.exists():
        print(f"skip: {AMAZON} is absent (the project's shared data)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="gee-mining-bench-"))
    catalog = tmp / "catalog.toml"
    catalog.write_text(f'[[table]]\nid = "{ASSET}"\npath = "{AMAZON}"\n')

    print("== value:compute round trip (median of", args.requests, "requests) ==")
    gee_mining.connect("local", project="gee-mining-bench", catalog=catalog)
    in_process = latency(ee, args.requests)
    gee_mining.connect("local", project="gee-mining-bench", catalog=catalog, http=True)
    over_http = latency(ee, args.requests)
    print(f"in-process : {in_process * 1e3:7.2f} ms")
    print(f"HTTP       : {over_http * 1e3:7.2f} ms   (HTTP / in-process = {over_http / in_process:.2f}x)")

    return 0


if __name__ == "__main__":
    sys.exit(main())

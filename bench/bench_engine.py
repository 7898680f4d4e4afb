"""Local engine benchmarks (issue: foundation), measured side by side in one run.

1. value:compute round-trip latency: median of many small requests, in-process
   and over loopback HTTP, through the real ``ee`` client.
2. ``FeatureCollection.map`` (geodesic area, centroid, 100 m buffer) over the
   5,232 Amazon mining polygons through the engine (results paged back to the
   client) vs the same work written directly with shapely and pyproj.

Usage: ``.venv/bin/python bench/bench_engine.py [--requests 300] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyproj
import shapely
from bench_composite import forget_kept_values  # the benches' shared probes (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT.parent / "shared" / "data" / "polygons" / "amazon_mining_2024_model.geojson"
ASSET = "projects/gee-mining-bench/assets/amazon"
GEOD = pyproj.Geod(ellps="WGS84")


def latency(ee, n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        ee.Number(i).add(1).getInfo()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def engine_map(ee) -> int:
    from gee_mining.io.pages import iter_features

    fc = ee.FeatureCollection(ASSET)
    out = fc.map(
        lambda f: ee.Feature(
            f.geometry().buffer(100, 1),
            {"area": f.geometry().area(1), "centroid": f.geometry().centroid(1)},
        )
    )
    return sum(1 for _ in iter_features(out, page_size=1000))


@functools.lru_cache(maxsize=128)
def _utm(zone: int, south: bool):
    crs = pyproj.CRS.from_epsg((32700 if south else 32600) + zone)
    fwd = pyproj.Transformer.from_crs(4326, crs, always_xy=True)
    inv = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)
    return fwd, inv


def direct_map(geoms) -> int:
    """The same work written directly: geodesic area, centroid, buffer in the local UTM zone."""
    results = []
    for g in geoms:
        area = abs(GEOD.geometry_area_perimeter(g)[0])
        c = g.centroid
        fwd, inv = _utm(int((c.x + 180) // 6) + 1, c.y < 0)
        projected = shapely.transform(g, lambda xy, f=fwd: np.column_stack(f.transform(xy[:, 0], xy[:, 1])))
        buffered = shapely.transform(
            projected.buffer(100), lambda xy, f=inv: np.column_stack(f.transform(xy[:, 0], xy[:, 1]))
        )
        centroid = shapely.transform(
            projected.centroid, lambda xy, f=inv: np.column_stack(f.transform(xy[:, 0], xy[:, 1]))
        )
        results.append((area, centroid, shapely.geometry.mapping(buffered)))
    return len(results)


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))  # this checkout's gee_mining, not an installed one
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import ee
    import pyogrio

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

    gee_mining.connect("local", project="gee-mining-bench", catalog=catalog)
    _, _, wkb, _ = pyogrio.raw.read(AMAZON)
    geoms = list(shapely.from_wkb(wkb))
    engine_map(ee)  # warm: table read once, as the engine keeps it
    engine_t, direct_t = [], []
    for _ in range(args.repeat):
        forget_kept_values(gee_mining)  # the map computed in each run, not read from the engine's cache
        t = time.perf_counter()
        n_engine = engine_map(ee)
        engine_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        n_direct = direct_map(geoms)
        direct_t.append(time.perf_counter() - t)
    assert n_engine == n_direct == len(geoms), (n_engine, n_direct)
    e, d = min(engine_t), min(direct_t)
    print(f"== FeatureCollection.map(area, centroid, buffer) over {len(geoms):,} polygons (best of {args.repeat}) ==")
    print(f"engine (in-process, paged back) : {e:7.3f} s")
    print(f"shapely + pyproj directly       : {d:7.3f} s")
    print(f"ratio engine / direct           : {e / d:7.2f}x   (goal <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

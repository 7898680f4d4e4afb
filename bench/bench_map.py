"""Issue 26 benchmark: ``FeatureCollection.map`` against the fastest plain shapely + pyproj we could write.

The map (issue 26's): for each of N Amazon mining polygons (the 5,232 of the shared data, repeated with
a small shift to reach larger N), its geodesic area (``area(1)``), its geodesic centroid
(``centroid(1)``) and the polygon buffered by 100 m (``buffer(100, 1)``), as a new feature.

1. through the engine: ``ee.FeatureCollection(table).map(...)`` paged back with
   ``gee_mining.io.pages.iter_features`` (``computeFeatures``, 1,000 features a page) through the
   real ``ee`` client, in-process; the table read once before the timings, as the engine keeps it;
2. the reference, "vectorised shapely + pyproj": the geodesic areas by the C call behind
   ``pyproj.Geod.polygon_area_perimeter`` per ring (pyproj has no batched polygon area; the engine calls the
   same), the centroids in one ``shapely.centroid`` call (a table's polygons have planar edges, so Earth
   Engine's centroid is the planar one in degrees), the buffers in an azimuthal equidistant projection centred
   on each polygon (the engine's rule: its box's centre snapped to 0.25 degree, so that polygons share one):
   every vertex of every polygon in one array, one pyproj call per projection each way on its slice
   (transformers built from PROJ pipelines, kept across runs as the engine keeps its own), all polygons
   buffered in one ``shapely.buffer`` call with the engine's segments per quarter circle for a 1 m error, and
   the buffers' vertices, back in degrees, written straight into the output (no shapes made of them); the
   output as GeoJSON dicts, each buffer's geometry as GeoJSON text written by orjson from views of one
   coordinate array (the same numbers as ``shapely.to_geojson``, checked in every run, in half its time).

A second reference, timed in the same rounds and printed beside ("ref. as dicts"), hands back the engine's own
product: each buffer as the GeoJSON dict the ``ee`` client gives (rings as lists of ``[x, y]`` lists, all made by
one ``tolist``). The goal is judged against the first (text), the faster. Both references pause Python's cyclic
collector while they build their output and then make one pass over the young objects, as the library does
around each answer page the client decodes: each side walks its product once (left on, the dicts reference
made hundreds of passes a run, three of them full ones, 0.14 s median: the spread of its ratio came from
there). The bench prints, from the measured decode and the engine's collector passes, how far 1.5x of the text
reference can be reached at all.

What the reference does not do, and the engine must (it favours the reference):
- it leaves each buffer as GeoJSON text, where the engine's answer pages are decoded by the ``ee`` client
  (``json.loads`` of about 11.7 MB at 5,232 polygons: 0.16-0.30 s, about a third of the engine's CPU time;
  the bench prints it, measured apart on the same features, page by page), and the collector walks what it
  decoded;
- it does not test the edges of the shapes it reprojects, which the engine does to know whether they must
  be densified (maxError 1 m); at these polygons' sizes none needs it, so the outputs are the same.

Checked in the same run: areas within 1e-9 relative, centroids within 1 cm and buffers within 1 mm
(Hausdorff) except for any large polygon whose edges the engine densifies: within 2 m. Times paired
run by run (engine and reference alternate, so a busy machine slows both alike), CPU seconds of this
process (the engine runs in-process) and wall: min and median of both and of the per-pair ratios; before each
timed run what is alive is collected and frozen out of the garbage collector's passes, so that neither side
pays for walking the other's objects. Peak memory (tracemalloc, in a separate run). Per side, to show where
its run-to-run spread comes from: round by round, its CPU, system CPU and minor page faults (memory taken back
from the kernel: the ``ee`` client's decoded answer is about 45 MiB of Python objects, whose allocator hands
emptied arenas back), and the medians of the cyclic collector's passes by generation. Goal (issue 26): median
ratio <= 1.5.

Usage: ``.venv/bin/python bench/bench_map.py [--sizes 5232,20000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pyogrio
import pyproj
import shapely
from bench_composite import forget_kept_values, peak_mb  # the benches' shared probes (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT.parent / "shared" / "data" / "polygons" / "amazon_mining_2024_model.geojson"
ASSET = "projects/gee-mining-bench/assets/polygons"
DISTANCE = 100.0
QUAD_SEGS = math.ceil(math.pi / (4 * math.acos(1 - 1.0 / DISTANCE)))  # chords within 1 m of a 100 m arc
GEOD = pyproj.Geod(ellps="WGS84")


def polygons(n: int) -> np.ndarray:
    """``n`` polygons: the Amazon ones, then copies shifted by 0.5 degree east per round."""
    _, _, wkb, _ = pyogrio.raw.read(AMAZON)
    base = shapely.from_wkb(wkb)
    rounds = [shapely.transform(base, lambda xy, k=k: xy + [0.5 * k, 0.0]) for k in range(-(-n // len(base)))]
    return np.concatenate(rounds)[:n]


def write_table(folder: Path, polys: np.ndarray) -> Path:
    path = folder / f"polygons_{len(polys)}.geojson"
    pyogrio.raw.write(
        path,
        geometry=shapely.to_wkb(polys),
        field_data=[np.arange(len(polys))],
        fields=["k"],
        geometry_type="MultiPolygon" if (shapely.get_type_id(polys) == 6).any() else "Polygon",
        crs="EPSG:4326",
        driver="GeoJSON",
    )
    catalog = folder / f"catalog_{len(polys)}.toml"
    catalog.write_text(f'[[table]]\nid = "{ASSET}"\npath = "{path}"\n')
    return catalog


def engine_map(ee) -> list[dict]:
    from gee_mining.io.pages import iter_features

    def fn(f):
        g = f.geometry()
        return ee.Feature(g.buffer(DISTANCE, 1), {"area": g.area(1), "centroid": g.centroid(1)})

    return list(iter_features(ee.FeatureCollection(ASSET).map(fn), page_size=1000))


@functools.cache
def _aeqd(lon0: float, lat0: float) -> tuple[pyproj.Transformer, pyproj.Transformer]:
    """Transformers to and from the AEQD projection centred there, written as PROJ pipelines (about 0.1 ms to
    build, where ``Transformer.from_crs`` searches for operations for about 10 ms) and kept across runs, as the
    engine keeps its own."""
    aeqd = f"+proj=aeqd +lat_0={lat0:.6f} +lon_0={lon0:.6f} +ellps=WGS84 +units=m +no_defs"
    return (
        pyproj.Transformer.from_pipeline(f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step {aeqd}"),
        pyproj.Transformer.from_pipeline(
            f"+proj=pipeline +step +inv {aeqd} +step +proj=unitconvert +xy_in=rad +xy_out=deg"
        ),
    )


def _grouped_transform(shapes: np.ndarray, group: np.ndarray, transformers: list) -> np.ndarray:
    """Every vertex of ``shapes`` (sorted by ``group``) through its group's transformer, one call per group."""
    xy = shapely.get_coordinates(shapes)
    return shapely.set_coordinates(
        shapes.copy(), _transform_groups(xy, _vertex_cuts(shapes, group, transformers), transformers)
    )


def _vertex_cuts(shapes: np.ndarray, group: np.ndarray, transformers: list) -> list[int]:
    """Where each group's vertices start and end in ``shapely.get_coordinates(shapes)`` (shapes sorted by group)."""
    ends = np.concatenate([[0], np.cumsum(shapely.get_num_coordinates(shapes))])
    return ends[np.searchsorted(group, np.arange(len(transformers) + 1))].tolist()


def _transform_groups(xy: np.ndarray, cuts: list[int], transformers: list) -> np.ndarray:
    """``xy[cuts[k]:cuts[k + 1]]`` through ``transformers[k]``, one call each, into a new array."""
    out = np.empty_like(xy)
    for t, a, z in zip(transformers, cuts[:-1], cuts[1:], strict=True):
        out[a:z, 0], out[a:z, 1] = t.transform(xy[a:z, 0], xy[a:z, 1])
    return out


@contextlib.contextmanager
def _collector_paused():
    """The cyclic collector paused while the output is built, then one pass over the young objects: what
    ``gee_mining``'s ``deferred_gc`` does around each answer page the engine's client decodes, so that each side
    walks its product once (the dicts reference, on its own, paid 436 young, 39 middle and 3 full passes a run,
    0.14 s median and the cause of its run-to-run spread)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
            gc.collect(0)


def reference_map(polys: np.ndarray, dicts: bool = False) -> list[dict]:
    """The same work written directly, on whole arrays wherever shapely and pyproj allow; each buffer as GeoJSON
    text or, with ``dicts``, as the GeoJSON dict the ``ee`` client hands back (the engine's product)."""
    with _collector_paused():
        areas = _geodesic_areas(polys)
        centroids = shapely.get_coordinates(shapely.centroid(polys))  # planar edges (a table's): planar centroids
        geo = _buffers(polys, dicts)
        return [
            {"geometry": g, "properties": {"area": float(a), "centroid": {"type": "Point", "coordinates": [x, y]}}}
            for g, a, (x, y) in zip(geo, areas, centroids.tolist(), strict=True)
        ]


def _geodesic_areas(polys: np.ndarray) -> np.ndarray:
    """Each (multi)polygon's geodesic area: each ring's by the C call behind ``Geod.polygon_area_perimeter``
    (``Geod._polygon_area_perimeter``, as the engine calls it: the public one converts its arguments first, 13
    ms more a run) on views of contiguous coordinates, exteriors less holes, summed by polygon."""
    parts, part_owner = shapely.get_parts(polys, return_index=True)
    rings, ring_owner = shapely.get_rings(parts, return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])  # contiguous: pyproj copies no slice
    cuts = np.searchsorted(ring_of, np.arange(len(rings) + 1)).tolist()
    ring_area = np.array(
        [abs(GEOD._polygon_area_perimeter(x[a:b], y[a:b])[0]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    )
    exterior = np.r_[True, ring_owner[1:] != ring_owner[:-1]]
    return np.bincount(part_owner[ring_owner], np.where(exterior, ring_area, -ring_area), len(polys))


def _buffers(polys: np.ndarray, dicts: bool) -> list:
    """Each polygon buffered in an azimuthal equidistant projection centred on its box (the engine's rule: the
    box's centre snapped to 0.25 degree, so that polygons share one), one pyproj call per projection each way;
    the buffers' coordinates back in degrees written straight into the output (GeoJSON text, or dicts), no
    shapes made of them."""
    b = shapely.bounds(polys)
    lon0 = np.round((b[:, 0] + b[:, 2]) / 2 * 4) / 4
    lat0 = np.round((b[:, 1] + b[:, 3]) / 2 * 4) / 4
    centres, group = np.unique(np.column_stack([lon0, lat0]), axis=0, return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    pairs = [_aeqd(float(x0), float(y0)) for x0, y0 in centres]
    local = _grouped_transform(polys[order], group[order], [p[0] for p in pairs])
    grown = shapely.buffer(local, DISTANCE, quad_segs=QUAD_SEGS)
    back = [p[1] for p in pairs]
    lonlat = _transform_groups(shapely.get_coordinates(grown), _vertex_cuts(grown, group[order], back), back)
    made = geojson_geometries(grown, lonlat) if dicts else geojson_texts(grown, lonlat)  # as a client gets it
    out: list = [None] * len(polys)
    for k, g in zip(order.tolist(), made, strict=True):
        out[k] = g
    return out


def geojson_texts(shapes: np.ndarray, xy: np.ndarray) -> list[bytes]:
    """The GeoJSON text of each (multi)polygon whose vertices are ``xy`` (``shapely.get_coordinates`` order), written
    by orjson with each ring a view of that array (the same numbers as ``shapely.to_geojson``, in about half its
    time)."""
    return [orjson.dumps(g, option=orjson.OPT_SERIALIZE_NUMPY) for g in geojson_geometries(shapes, xy, lists=False)]


def geojson_geometries(shapes: np.ndarray, xy: np.ndarray, lists: bool = True) -> list[dict]:
    """The GeoJSON geometry of each (multi)polygon as a dict, with the structure of ``shapes`` and the vertices
    ``xy`` (in ``shapely.get_coordinates(shapes)`` order): its rings lists of ``[x, y]`` lists (what the ``ee``
    client hands back: all coordinates made by one ``tolist``) or, without ``lists``, numpy views of one array;
    a polygon without holes sliced as it is, the others through their parts' and rings' lengths."""
    simple = (shapely.get_type_id(shapes) == 3) & (shapely.get_num_interior_rings(shapes) == 0)
    points = xy.tolist() if lists else xy
    ends = np.concatenate([[0], np.cumsum(shapely.get_num_coordinates(shapes))]).tolist()
    geoms: list = [None] * len(shapes)
    for i in np.nonzero(simple)[0].tolist():
        geoms[i] = {"type": "Polygon", "coordinates": [points[ends[i] : ends[i + 1]]]}
    idx = np.nonzero(~simple)[0]
    parts, part_owner = shapely.get_parts(shapes[idx], return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    ring_len = shapely.get_num_coordinates(rings)
    first = np.searchsorted(part_owner[ring_part], np.arange(len(idx)))  # each shape's first ring
    within = np.cumsum(ring_len) - ring_len  # where each ring starts, counted over these shapes' rings
    start = np.asarray(ends)[idx][part_owner[ring_part]] + within - within[first][part_owner[ring_part]]
    ring_xy = [points[a : a + n] for a, n in zip(start.tolist(), ring_len.tolist(), strict=True)]
    cuts = np.searchsorted(ring_part, np.arange(len(parts) + 1)).tolist()
    part_xy = [ring_xy[a:z] for a, z in zip(cuts[:-1], cuts[1:], strict=True)]
    cuts = np.searchsorted(part_owner, np.arange(len(idx) + 1)).tolist()
    multi = (shapely.get_type_id(shapes[idx]) == 6).tolist()
    for i, a, z, m in zip(idx.tolist(), cuts[:-1], cuts[1:], multi, strict=True):
        geoms[i] = (
            {"type": "MultiPolygon", "coordinates": part_xy[a:z]}
            if m
            else {"type": "Polygon", "coordinates": part_xy[a]}
        )
    return geoms


def check(got: list[dict], want: list[dict], polys: np.ndarray) -> str:
    assert len(got) == len(want) == len(polys), (len(got), len(want))
    a = np.array([f["properties"]["area"] for f in got])
    b = np.array([f["properties"]["area"] for f in want])
    d_area = float(np.max(np.abs(a - b) / b))
    c = np.array([f["properties"]["centroid"]["coordinates"] for f in got])
    d = np.array([f["properties"]["centroid"]["coordinates"] for f in want])
    cos = np.cos(np.radians(d[:, 1]))
    off = np.hypot((c[:, 0] - d[:, 0]) * 111_320 * cos, (c[:, 1] - d[:, 1]) * 110_600)
    d_cent, n_far = float(off.max()), int((off > 0.01).sum())
    mine = shapely.from_geojson([json.dumps(f["geometry"]) for f in got])
    theirs = shapely.from_geojson([f["geometry"] for f in want])
    gap = shapely.hausdorff_distance(mine, theirs) * 111_320  # degrees to metres, at most (cos(lat) <= 1)
    d_buf, n_buf = float(gap.max()), int((gap > 1e-3).sum())
    assert d_area < 1e-9 and d_cent < 2.0 and d_buf < 2.0, (d_area, d_cent, d_buf)
    return (
        f"areas within {d_area:.1e} (relative); centroids within 1 cm but {n_far} within {d_cent:.2f} m, buffers "
        f"within 1 mm but {n_buf} within {d_buf:.2f} m (large polygons whose edges the engine densifies to "
        "maxError 1 m)"
    )


def run_size(ee, gee_mining, folder: Path, n: int, repeat: int) -> bool:
    polys = polygons(n)
    gee_mining.connect("local", project="gee-mining-bench", catalog=write_table(folder, polys))
    ee.FeatureCollection(ASSET).size().getInfo()  # the table read once, outside the timings
    print(f"\n== {n:,} polygons: {check(engine_map(ee), reference_map(polys), polys)} ==")
    texts = [json.loads(f["geometry"]) for f in reference_map(polys[:200])]
    assert [f["geometry"] for f in reference_map(polys[:200], dicts=True)] == texts  # the two products agree
    mine = geojson_texts(polys, shapely.get_coordinates(polys))
    assert [json.loads(t) for t in mine] == [json.loads(t) for t in shapely.to_geojson(polys)]
    cpu, wall, cpu_dicts, runs = [], [], [], []
    for _ in range(repeat):
        forget_kept_values(gee_mining)  # the map computed in each run, not read from the engine's cache
        e = _timed(lambda: engine_map(ee))
        r = _timed(lambda: reference_map(polys))
        wall.append((e.wall, r.wall))
        cpu.append((e.cpu, r.cpu))
        d = _timed(lambda: reference_map(polys, dicts=True))
        cpu_dicts.append((e.cpu, d.cpu))
        runs.append((e, r, d))
    forget_kept_values(gee_mining)
    got = engine_map(ee)
    pages = [orjson.dumps({"type": "FeatureCollection", "features": got[k : k + 1000]}) for k in range(0, n, 1000)]
    decode = min(_decode_cpu(pages) for _ in range(repeat))
    del got
    m_engine, m_ref = peak_mb(lambda: engine_map(ee)), peak_mb(lambda: reference_map(polys))
    gee_mining.disconnect()
    collector = statistics.median(sum(t for _, t in e.gc) for e, _, _ in runs)  # the engine's: one pass a page
    _report(cpu, wall, cpu_dicts, (m_engine, m_ref), decode, collector)
    _report_runs(runs)
    return statistics.median(e / r for e, r in cpu) <= 1.5


def _report(
    cpu: list, wall: list, cpu_dicts: list, peaks: tuple[float, float], decode: float, collector: float
) -> None:
    """The figures side by side: min and median of each side and of the per-pair ratios."""
    print(f"{'':30}{'engine':>10}{'reference':>12}{'pair ratio':>12}")
    rows = [("CPU", cpu), ("wall", wall), ("CPU, ref. as dicts", cpu_dicts)]
    for label, pairs in rows:
        ratios = [e / r for e, r in pairs]
        for stat, fn in (("min", min), ("median", statistics.median)):
            print(
                f"{label + ' ' + stat + ', s':30}{fn(p[0] for p in pairs):10.3f}{fn(p[1] for p in pairs):12.3f}"
                f"{fn(ratios):12.2f}"
            )
    print(f"{'peak memory, MiB':30}{peaks[0]:10.1f}{peaks[1]:12.1f}{peaks[0] / peaks[1]:12.2f}")
    e_min, r_min = min(p[0] for p in cpu), min(p[1] for p in cpu)
    print(
        f"of the engine's CPU: the ee client's json.loads of the answer (the same features, measured apart, min) "
        f"{decode:.3f} s; the engine's min less it, over the reference's min: {(e_min - decode) / r_min:.2f}"
    )
    _report_bound(cpu, decode, collector)


def _report_bound(cpu: list, decode: float, collector: float) -> None:
    """Whether 1.5x of the text reference is within reach at all: what the client alone pays (decoding the
    answer, which the text reference does not, and the collector's passes over what it decoded) against the
    room 1.5x leaves above the reference. With the engine's own work equal to the reference's (its best, as
    the reference is the fastest plain implementation of that work), the ratio is 1 + client / reference."""
    client = decode + collector
    for stat, fn in (("min", min), ("median", statistics.median)):
        ref = fn(p[1] for p in cpu)
        print(
            f"bound ({stat}): 1.5x leaves {0.5 * ref:.3f} s above the text reference's {ref:.3f} s; the client "
            f"alone takes {client:.3f} s (decode {decode:.3f} + collector {collector:.3f}): with the engine's own "
            f"work equal to the reference's, the ratio would be 1 + {client:.3f} / {ref:.3f} = {1 + client / ref:.2f}"
        )


def _report_runs(runs: list[tuple[Run, Run, Run]]) -> None:
    """Where a side's CPU varies from run to run: by round, its CPU and the kernel's share (system CPU, minor page
    faults: memory the allocators took back from the kernel); the cyclic collector's passes (medians)."""
    for k, side in enumerate(("engine", "reference", "ref. as dicts")):
        mine = [pair[k] for pair in runs]
        passes = " / ".join(f"{statistics.median([g for g, _ in r.gc].count(k) for r in mine):g}" for k in range(3))
        print(
            f"{side}: by round, CPU {' '.join(f'{r.cpu:.3f}' for r in mine)} s, system CPU "
            f"{' '.join(f'{r.sys:.3f}' for r in mine)} s, minor page faults {' '.join(str(r.faults) for r in mine)}; "
            f"collector passes {passes} (generations 0 / 1 / 2, medians) taking "
            f"{statistics.median(sum(t for _, t in r.gc) for r in mine):.3f} s"
        )


def _decode_cpu(pages: list[bytes]) -> float:
    """CPU seconds of the ``ee`` client's decoding of an answer, page by page as the client gets it
    (googleapiclient: ``json.loads`` of each page's text, 1,000 features a page as the bench asks: the whole
    answer decoded at once is slower at 20,000 features, 0.77 s against 0.64 s page by page in one measurement,
    and the bench printed 1.25 s for it once); the collector paused as ``iter_features`` pauses it, the decoded
    pages freed outside the time."""
    bodies = [text.decode() for text in pages]
    gc.collect()
    gc.disable()
    try:
        cpu = time.process_time()
        decoded = [json.loads(body) for body in bodies]
        spent = time.process_time() - cpu
        del decoded  # freed outside the time: the decoding alone
        return spent
    finally:
        gc.enable()


@dataclasses.dataclass(frozen=True)
class Run:
    """One timed run: wall and CPU seconds, of which system CPU; minor page faults; the cyclic collector's
    passes (generation, CPU seconds)."""

    wall: float
    cpu: float
    sys: float
    faults: int
    gc: list[tuple[int, float]]


def _timed(fn) -> Run:
    """``fn()``'s wall and CPU seconds (this process: the in-process engine and the reference alike), with its
    system CPU, page faults and collector passes. What is alive before the run is collected and frozen out of
    the cyclic collector's passes first, so that neither side pays for walking the other's objects (the
    reference, which runs with the collector on, otherwise paid 0.2-0.3 s for a full pass over the engine's
    objects in some runs)."""
    gc.collect()
    gc.freeze()
    passes: list[tuple[int, float]] = []
    started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            passes.append((info["generation"], time.process_time() - started[0]))

    gc.callbacks.append(on_gc)
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        gc.callbacks.remove(on_gc)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return Run(wall, cpu, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt, passes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5232,20000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if not AMAZON.exists():
        print(f"skip: {AMAZON} is absent (the project's shared data)")
        return 0
    sys.path.insert(0, str(ROOT))
    import ee

    import gee_mining

    print(f"map: geodesic area, geodesic centroid, buffer by {DISTANCE:g} m; {args.repeat} pairs per size")
    with tempfile.TemporaryDirectory() as tmp:
        met = [run_size(ee, gee_mining, Path(tmp), int(n), args.repeat) for n in args.sizes.split(",")]
    print(f"\ngoal median CPU pair ratio engine/reference <= 1.5: {'met' if all(met) else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

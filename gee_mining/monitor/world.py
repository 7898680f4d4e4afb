"""A monitoring run on a SIMULATED multi-year world (:mod:`gee_mining.world.years`) through the local engine.

:func:`prepare_world` connects ``ee`` to the world's catalog, exports each year's composite once (batch tasks,
:func:`gee_mining.monitor.core.year_composites`) and serves them as image assets beside the world's datasets, so
every later graph reads a composite instead of recomputing the median of every scene.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ee
import shapely

from gee_mining.connection import connect
from gee_mining.errors import InputError
from gee_mining.io.catalog import write_catalog
from gee_mining.monitor.core import (
    MonitorRegion,
    MonitorSpec,
    Verdict,
    fit_on_first_year,
    year_composites,
)
from gee_mining.pyramid.probability import composite_entry


@dataclass
class MonitorWorld:
    """A world ready to monitor: its region, each year's composite asset id and the catalog serving them."""

    folder: Path
    region: MonitorRegion
    composites: dict[int, str]
    catalog: Path
    years: tuple[int, ...]


def world_region(folder: Path) -> tuple[MonitorRegion, dict]:
    """The world's square and its mine table as a :class:`MonitorRegion`, and its manifest."""
    path = folder / "manifest.json"
    if not path.exists():
        raise InputError(f"{folder}: no manifest.json; make a world with `gee-mining world years --out {folder}`.")
    manifest = json.loads(path.read_text())
    epsg = int(manifest["grid"]["crs"].split(":")[1])
    x0, top = manifest["grid"]["origin"]
    size = float(manifest["grid"]["size_m"])
    return MonitorRegion(epsg, (float(x0), top - size, x0 + size, float(top)), manifest["asset_ids"]["mines"]), manifest


def prepare_world(world_dir: str | os.PathLike, spec: MonitorSpec, out_dir: str | os.PathLike,
                  progress=None) -> MonitorWorld:  # fmt: skip
    """Export the world's per-year composites and serve them (``projects/<project>/assets/composite_<year>``)."""
    folder = Path(world_dir).resolve()
    region, manifest = world_region(folder)
    have = sorted({int(s["time_start"][:4]) for s in manifest["scenes"]})
    missing = [y for y in spec.years if y not in have]
    if missing:
        raise InputError(f"{folder}: no scenes in {missing}; the world holds {have[0]}-{have[-1]}: pick --years there.")
    out = Path(out_dir)
    storage = out / "storage"
    project = manifest["parameters"]["project"]
    connect("local", project=project, catalog=folder / "catalog.toml", storage_root=storage)
    paths = year_composites(region, spec, out / "work", progress)
    ids = {y: f"projects/{project}/assets/composite_{y}" for y in spec.years}
    entries = [composite_entry(paths[y], ids[y], spec.composite_spec(y)) for y in spec.years]
    catalog = write_catalog(out / "work" / "catalog_monitor.toml", entries, [folder / "catalog.toml"])
    connect("local", project=project, catalog=catalog, storage_root=storage)
    return MonitorWorld(folder, region, ids, catalog, spec.years)


def reuse_world(world_dir: str | os.PathLike, spec: MonitorSpec, out_dir: str | os.PathLike) -> MonitorWorld:
    """A world :func:`prepare_world` already prepared into ``out_dir``: its composites served again, nothing
    recomputed (a clear error if they are not there)."""
    folder = Path(world_dir).resolve()
    region, manifest = world_region(folder)
    out = Path(out_dir)
    catalog = out / "work" / "catalog_monitor.toml"
    if not catalog.exists():
        raise InputError(f"{out}: no prepared composites ({catalog.name}); prepare the world again.")
    project = manifest["parameters"]["project"]
    connect("local", project=project, catalog=catalog, storage_root=out / "storage")
    ids = {y: f"projects/{project}/assets/composite_{y}" for y in spec.years}
    return MonitorWorld(folder, region, ids, catalog, spec.years)


def fit_first_year(world: MonitorWorld, pixels: int = 500, seed: int = 0, verdicts: Sequence[Verdict] = ()):
    """The screening model fitted on the world's first composite (:func:`gee_mining.monitor.core.fit_on_first_year`);
    a ``LinearModel`` and the pixel table it was fitted on."""
    return fit_on_first_year(ee.Image(world.composites[world.years[0]]), world.region, pixels, seed, verdicts)


def known_outlines(world: MonitorWorld) -> list:
    """The known mines' outlines (EPSG:4326) from the world's own table, for the review page's map."""
    data = json.loads((world.folder / "tables" / "mines.geojson").read_text())
    return [shapely.geometry.shape(f["geometry"]) for f in data["features"]]

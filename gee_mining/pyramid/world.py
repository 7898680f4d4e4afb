"""A simulated world for the pyramid: a few compact mine clusters on a square aligned to a coarse grid level.

The pyramid pays off where mines cover a small share of the area, as they do on Earth (about 0.07 %
of the land). ``generate_world``'s own polygons are spread over the whole square (a cluster every
~3 km), which leaves nothing to prune; this module writes its own: ``clusters`` compact groups of
mines (areas log-normal around 0.1 km2, within ``cluster_radius`` metres of the group's centre),
and places the square so that its top-left corner lies on a corner of the ``align`` grid (the UTM
grid of that cell size, origin at the projection's origin), so the square is covered by whole cells
of that level and of every finer one. SIMULATED, like every world.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ee
import numpy as np
import pyproj
import shapely

from gee_mining.connection import connect
from gee_mining.io.catalog import table_entry, write_catalog
from gee_mining.pyramid.probability import composite_entry, export_composite
from gee_mining.steps.sentinel2 import CompositeSpec
from gee_mining.world import generate_world
from gee_mining.world.landscape import _blob
from gee_mining.world.realism import Realism, realism_of

DEFAULT_EPSG = 32721  # UTM 21S: the Tapajos basin (Para, Brazil), as the default world
DEFAULT_CORNER = (561000.0, 9306000.0)  # a corner of the 5500 m grid on the 60 m world lattice (16500 = lcm)


# Mine areas (m2) of a pyramid world: (log-normal median, sigma, smallest, largest) for each realism. The hard world
# spans 0.005-20 km2, at most 5 % of the world's area (the easy one 0.02-0.6 km2): small pits beside large ones, as
# mapped mining areas are; its river also gets clusters of artisanal pits (``world.landscape``).
MINE_AREAS = {"easy": (0.1e6, 0.8, 0.02e6, 0.6e6), "hard": (0.1e6, 1.5, 0.005e6, 20e6)}


def cluster_polygons(
    size_m: float, clusters: int, rng: np.random.Generator, cluster_radius: float = 500.0, per_cluster=(2, 5),
    areas: tuple[float, float, float, float] = MINE_AREAS["easy"], keep_smallest: bool = False,
):  # fmt: skip
    """Mine polygons (shapely, local metres from the square's top-left corner, y down) in compact clusters;
    ``areas``: (median, sigma, smallest, largest) of their log-normal areas in m2. ``keep_smallest`` (the hard
    world): no polygon below the smallest area, also when one was cut into pieces by its neighbours."""

    polys: list = []
    margin = 0.12 * size_m
    centres: list[tuple[float, float]] = []
    while len(centres) < clusters:
        c = tuple(rng.uniform(margin, size_m - margin, 2))
        if all(math.dist(c, o) > 4 * cluster_radius for o in centres):
            centres.append(c)
    for cx, cy in centres:
        for k in range(int(rng.integers(per_cluster[0], per_cluster[1] + 1))):
            area = float(np.clip(rng.lognormal(math.log(areas[0]), areas[1]), areas[2], areas[3]))
            x, y = (
                (cx, cy) if k == 0 else (cx + rng.normal(0, cluster_radius / 2), cy + rng.normal(0, cluster_radius / 2))
            )
            shape = _blob(rng, x, y, area)
            if any(shape.intersects(p) for p in polys):
                shape = shape.difference(shapely.union_all(polys))
            if shape.is_empty or shape.area < 5000:
                continue
            if shape.geom_type != "Polygon":
                shape = max(shape.geoms, key=lambda g: g.area)
            if keep_smallest and shape.area < areas[2]:
                continue
            polys.append(shape)
    return polys


def generate_pyramid_world(
    out_dir: str | os.PathLike,
    size_km: float = 22.0,
    clusters: int = 3,
    months: int = 2,
    seed: int = 0,
    epsg: int = DEFAULT_EPSG,
    corner: tuple[float, float] = DEFAULT_CORNER,
    project: str = "gee-mining-local",
    progress=None,
    library_part: str | None = None,
    realism: str | Realism | None = None,
    extra_months: tuple[int, ...] = (),
):
    """Write a SIMULATED world (see :func:`gee_mining.world.generate_world`) whose top-left corner is ``corner``
    (UTM metres in ``epsg``) with ``clusters`` compact mine clusters; returns its manifest. ``library_part``: paint
    it from that half of the spectral library only (``generate_world``); ``realism``: ``"easy"`` or ``"hard"``
    (``generate_world``; the hard world's mines also span more sizes, ``MINE_AREAS``); ``extra_months``: scenes of
    these later months too (``generate_world``)."""

    realism = realism_of(realism)
    rng = np.random.default_rng([seed, 12])
    size = max(60, int(round(size_km * 1000 / 60)) * 60)
    x0, top = corner
    areas = MINE_AREAS.get(realism.name, MINE_AREAS["easy"])
    if realism.largest_mine_km2 > 0:  # the hard world: at most 5 % of the world, as generate_world's own mines
        areas = (*areas[:3], min(areas[3], 0.05 * size * size))
    local = cluster_polygons(size, clusters, rng, areas=areas, keep_smallest=realism.largest_mine_km2 > 0)
    to_ll = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)
    features = []
    for i, p in enumerate(local):
        utm = shapely.transform(p, lambda xy: np.column_stack([x0 + xy[:, 0], top - xy[:, 1]]))
        ll = shapely.transform(utm, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
        features.append({
            "type": "Feature",
            "geometry": shapely.geometry.mapping(ll),
            "properties": {"id": i, "source": "generated by gee-mining pyramid (simulated)", "area_m2": round(p.area, 1)},
        })  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    poly_path = out / "pyramid_mines.geojson"
    poly_path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    # WorldGrid.around floors (centre - size/2) to 60 m: aim 1 m inside so the corner lands exactly
    centre = to_ll.transform(x0 + size / 2 + 1, top - size / 2 + 1)
    return generate_world(
        out, polygons=poly_path, size_km=size / 1000, months=months, seed=seed, center=centre, project=project,
        progress=progress, library_part=library_part, realism=realism, extra_months=tuple(extra_months),
    )  # fmt: skip


def seed_corner(seed: int, size_km: float, corner: tuple[float, float] = DEFAULT_CORNER) -> tuple[float, float]:
    """A top-left corner of its own for the world of ``seed``: worlds of different seeds sit side by side (8 to a
    row, then rows further south), on corners of the 5500 m grid and of the 60 m world lattice (steps of 16500 m),
    so their squares and their mines never overlap."""
    if seed < 0:
        raise ValueError(f"seed {seed}: a world seed is 0 or more.")
    step = 16500.0 * (1 + math.ceil(size_km * 1000 / 16500))
    return corner[0] + (seed % 8 - 4) * step, corner[1] - (seed // 8) * step


@dataclass
class SimulatedPyramid:
    """A SIMULATED world ready for the pyramid: its composite served as an image asset, its mines as a table."""

    world: Any  # WorldManifest
    epsg: int
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in EPSG:epsg (the world's square)
    composite_id: str
    mines_id: str
    catalog: Path  # the catalog the engine serves now: the base catalog + the composite + the mines

    def region(self, ee):
        return ee.Geometry.Rectangle(list(self.bounds), f"EPSG:{self.epsg}", False)


def prepare_simulated(
    out_dir: str | os.PathLike,
    base_catalog: str | os.PathLike | None = None,
    storage_root: str | os.PathLike | None = None,
    size_km: float = 11.0,
    clusters: int = 2,
    months: int = 1,
    seed: int = 0,
    project: str = "gee-mining-pyramid",
    engine_project: str | None = None,
    progress=None,
    corner: tuple[float, float] = DEFAULT_CORNER,
    library_part: str | None = None,
    realism: str | None = None,
    extra_months: tuple[int, ...] = (),
) -> SimulatedPyramid:
    """Generate :func:`generate_pyramid_world`, export its composite once (on the world's engine), then connect
    ``ee`` to ``base_catalog`` plus two assets: the composite (``projects/<project>/assets/composite``) and the
    world's mines (``projects/<project>/assets/world_mines``). The world's own Sentinel-2 collections are not
    served afterwards, so a caller's engine keeps its own; ``engine_project``: the project of that last connection
    (default ``project``). ``corner``, ``library_part``, ``realism`` and ``extra_months``: as
    :func:`generate_pyramid_world`; with ``extra_months`` the composite also holds ``GREENEST_NDVI_BAND`` over the
    first months and those (``export_composite``'s ``seasons``)."""

    say = progress or (lambda msg: None)
    out = Path(out_dir)
    world = generate_pyramid_world(out / "world", size_km, clusters, months, seed, corner=corner, project=project,
                                   library_part=library_part, realism=realism, extra_months=extra_months)  # fmt: skip
    say(f"[pyramid] SIMULATED world of {world.grid['size_m'] / 1000:g} km, {len(world.scenes)} scenes")
    storage = Path(storage_root or out / "storage")
    connect("local", project=project, catalog=world.catalog, storage_root=storage)
    epsg = int(world.grid["crs"].split(":")[1])
    x0, top = world.grid["origin"]
    size = float(world.grid["size_m"])
    bounds = (float(x0), top - size, x0 + size, float(top))
    year = world.parameters["year"]
    spec = CompositeSpec(
        start=f"{year}-01-01", end=f"{year}-{1 + months:02d}-01" if months < 12 else f"{year + 1}-01-01"
    )
    seasons = [CompositeSpec(start=f"{year}-{m:02d}-01", end=f"{year}-{m + 1:02d}-01" if m < 12 else f"{year + 1}-01-01")
               for m in sorted(set(extra_months))]  # fmt: skip
    path = export_composite(ee, epsg, bounds, spec, download_to=out, progress=None, seasons=seasons)
    composite_id = f"projects/{project}/assets/composite"
    mines_id = f"projects/{project}/assets/world_mines"
    mines_path = Path(world.out_dir) / "tables" / "mines.geojson"
    # The base catalog is included by its absolute path: its own relative paths stay relative to it.
    include = [Path(base_catalog).resolve()] if base_catalog else []
    entries = [composite_entry(path, composite_id, spec, seasons), table_entry(mines_id, mines_path.resolve())]
    catalog = write_catalog(out / "catalog_pyramid.toml", entries, include)
    connect("local", project=engine_project or project, catalog=catalog, storage_root=storage)
    say(f"[pyramid] composite exported and served as {composite_id}")
    return SimulatedPyramid(world, epsg, bounds, composite_id, mines_id, catalog)

"""A simulated Sentinel-2 world for the local engine: scenes, cloud products, land cover, borders, mines.

``generate_world(out_dir)`` writes, into ``out_dir``, a catalog TOML the local
engine serves under Earth Engine's ids (``COPERNICUS/S2_SR_HARMONIZED``,
``GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED``, ``COPERNICUS/S2_CLOUD_PROBABILITY``,
``ESA/WorldCover/v200``, ``USDOS/LSIB_SIMPLE/2017`` and the mine polygons as
``projects/<project>/assets/world_mines``), the files behind them and
``manifest.json``. It is simulated imagery, labelled as such in every scene's
properties (``GEE_MINING_SIMULATED``) and in the manifest; see docs/world.md.

Deterministic: the same arguments and seed write the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import earthlib
import numpy as np
import pyogrio
import shapely

from gee_mining.contracts.datasets import CLOUD_SCORE_PLUS, LSIB, S2_CLOUD_PROBABILITY, S2_SR, WORLDCOVER
from gee_mining.errors import InputError
from gee_mining.io.catalog import CatalogEntry, catalog_text, table_entry, write_catalog
from gee_mining.world.datasets import (
    mine_polygons,
    write_lsib,
    write_polygons,
    write_worldcover,
)
from gee_mining.world.landscape import DEFAULT_CENTER, WorldGrid, build_surface, generated_polygons
from gee_mining.world.manifest import WorldManifest
from gee_mining.world.realism import Realism, realism_of
from gee_mining.world.scenes import check_extra_months, make_static, render_all, schedule, write_tif
from gee_mining.world.spectra import MATERIALS

__all__ = [
    "WorldManifest",
    "generate_world",
    "world_catalog_toml",
]


def _choose_centre(polys: list[shapely.Geometry], size_km: float) -> tuple[float, float]:
    """The centre of the polygon nearest to most polygon area within the world's square."""
    cent = np.array([[p.centroid.x, p.centroid.y] for p in polys])
    areas = np.array([p.area for p in polys])
    half = size_km / 2 / 111.32
    kx = np.cos(np.radians(cent[:, 1]))[:, None]
    near = (np.abs(cent[:, 0][:, None] - cent[:, 0][None]) * kx < half * 0.8) & (
        np.abs(cent[:, 1][:, None] - cent[:, 1][None]) < half * 0.8
    )
    best = int(np.argmax(near.astype(float) @ areas))
    return float(cent[best, 0]), float(cent[best, 1])


def _clear(out: Path) -> None:
    """Empty the folders a previous world left in ``out`` (other files stay), and make ``out``."""
    if out.exists():
        for sub in ("S2_SR_HARMONIZED", "CLOUD_SCORE_PLUS", "S2_CLOUD_PROBABILITY", "truth", "WorldCover", "tables"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


@dataclass
class _Mines:
    """The world's grid and its mine polygons (lon/lat, UTM, properties) and where they came from."""

    grid: WorldGrid
    center: tuple[float, float]
    lonlat: list[shapely.Geometry]
    utm: list[shapely.Geometry]
    props: list[dict]
    info: dict


def _user_mines(polygons: str | os.PathLike, center, size_km: float) -> _Mines:
    """A world around a user's polygons (centred on their densest group unless ``center`` is given)."""
    user_polys, user_props = mine_polygons(polygons)
    if not user_polys:
        raise InputError(f"{polygons}: no polygons found.")
    lon, lat = center or _choose_centre(user_polys, size_km)
    grid = WorldGrid.around(lon, lat, size_km)
    box = grid.bounds_lonlat()
    keep = [i for i, p in enumerate(user_polys) if p.intersects(box)]
    to_utm = grid.to_utm()
    lonlat = [user_polys[i] for i in keep]
    props = [{**user_props[i], "source_row": i} for i in keep]
    utm = [shapely.transform(p, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1]))) for p in lonlat]
    info = {"source": "user", "path": str(polygons), "count_in_file": len(user_polys), "count": len(keep)}
    return _Mines(grid, (lon, lat), lonlat, utm, props, info)


def _lonlat(polygon: shapely.Geometry, grid: WorldGrid) -> shapely.Geometry:
    """A generated mine (UTM) in degrees, as the polygon table stores it. A sliver left by cutting one mine from
    another can cross itself once reprojected (a ring's vertices a few millimetres apart); such an outline is
    repaired with ``make_valid`` (its polygonal part), so every table polygon is valid, as EE's tables are."""
    to_ll = grid.to_lonlat()
    out = shapely.transform(polygon, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    if out.is_valid:
        return out
    fixed = shapely.make_valid(out)
    parts = [g for g in getattr(fixed, "geoms", [fixed]) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if len(parts) > 1 else parts[0]


def _generated_mines(center, size_km: float, rng: np.random.Generator, realism: Realism) -> _Mines:
    """A world around ``center`` (default: ``DEFAULT_CENTER``) with generated mine polygons."""
    lon, lat = center or DEFAULT_CENTER
    grid = WorldGrid.around(lon, lat, size_km)
    utm = generated_polygons(grid, rng, realism)
    lonlat = [_lonlat(p, grid) for p in utm]
    props = [
        {"id": i, "source": "generated by gee-mining world (simulated)", "area_m2": round(p.area, 1)}
        for i, p in enumerate(utm)
    ]
    info = {
        "source": "generated",
        "count": len(utm),
        "method": "log-normal areas around 0.23 km2 (median of real mapped mining polygons), irregular "
        "elongated outlines, clustered (a large pit with satellites)",
    }
    return _Mines(grid, (lon, lat), lonlat, utm, props, info)


def _add_artisanal(mines: _Mines, pits: list[shapely.Geometry]) -> None:
    """Add the artisanal pits the hard world's surface drew along its river (UTM) to ``mines`` (in place): they are
    mines like the others, in the polygon table with ``kind = "artisanal"``."""
    if not pits:
        return
    first = max((int(p.get("id", -1)) for p in mines.props if isinstance(p.get("id"), int)), default=-1) + 1
    for k, p in enumerate(pits):
        mines.utm.append(p)
        mines.lonlat.append(_lonlat(p, mines.grid))
        mines.props.append({"id": first + k, "source": "artisanal pits along the river, generated by gee-mining world "
                            "(simulated)", "area_m2": round(p.area, 1), "kind": "artisanal"})  # fmt: skip
    mines.info = {**mines.info, "count": len(mines.utm), "artisanal": len(pits)}


def _write_catalog(out: Path, results: list[dict], worldcover: dict, lsib: Path, mines_path: Path, mines_id: str):
    """The world's catalog TOML (paths relative to it) and the collections' JSON-lines indexes; its path."""

    def jsonl(name: str, key: str) -> str:
        (out / name).write_text("".join(json.dumps(r[key]) + "\n" for r in results))
        return name

    (out / "worldcover.jsonl").write_text(json.dumps(worldcover, sort_keys=True) + "\n")
    entries = [
        CatalogEntry("image_collection", {"id": S2_SR, "index": jsonl("s2_sr_harmonized.jsonl", "s2")}),
        CatalogEntry("image_collection", {"id": CLOUD_SCORE_PLUS, "index": jsonl("cloud_score_plus.jsonl", "csplus")}),
        CatalogEntry(
            "image_collection",
            {"id": S2_CLOUD_PROBABILITY, "index": jsonl("s2_cloud_probability.jsonl", "probability")},
        ),
        CatalogEntry("image_collection", {"id": WORLDCOVER, "index": "worldcover.jsonl"}),
        table_entry(LSIB, lsib.relative_to(out).as_posix()),
        table_entry(mines_id, mines_path.relative_to(out).as_posix()),
    ]
    header = "Written by `gee-mining world`: a SIMULATED Sentinel-2 world (see manifest.json and docs/world.md)."
    return write_catalog(out / "catalog.toml", entries, header=header)


def _write_datasets(out: Path, grid: WorldGrid, surface, mines: _Mines, results: list[dict], project: str):
    """The truth rasters, WorldCover, LSIB, the mine polygons and the catalog; the catalog's path and the mines' id."""
    write_tif(
        out / "truth" / "surface.tif",
        np.stack([surface.material.astype(np.uint16), surface.base, surface.green]),
        grid,
        10,
        ["material", "base_spectrum", "green_spectrum"],
    )
    write_tif(out / "truth" / "brightness.tif", surface.brightness, grid, 10, ["brightness"])
    worldcover = write_worldcover(grid, surface, out)
    lsib = write_lsib(out)
    mines_path = write_polygons(mines.lonlat, mines.props, out)
    mines_id = f"projects/{project}/assets/world_mines"
    return _write_catalog(out, results, worldcover, lsib, mines_path, mines_id), mines_id


def generate_world(
    out_dir: str | os.PathLike,
    polygons: str | os.PathLike | None = None,
    size_km: float = 20.0,
    year: int = 2019,
    seed: int = 0,
    months: int = 12,
    center: tuple[float, float] | None = None,
    project: str = "gee-mining-local",
    workers: int | None = None,
    progress=None,
    library_part: str | None = None,
    realism: str | Realism | None = None,
    extra_months: tuple[int, ...] = (),
) -> WorldManifest:
    """Write a simulated world of ``size_km`` x ``size_km`` for ``months`` months of ``year`` into ``out_dir``.

    ``polygons``: a polygon file (any format the catalog reads); the world is
    centred on the densest group of them (or on ``center``, lon/lat). Without
    it, mine polygons are generated (and documented as generated). ``library_part``: paint the world from one
    half of the spectral library only (``"train"`` or ``"test"``; see ``world.spectra.library_part``), so that
    worlds for training and for testing share no spectrum. ``realism``: ``"easy"`` (default) or ``"hard"``
    (:mod:`gee_mining.world.realism`: many spectra per material, mine soils from the brighter half of the soils, which natural soils overlap,
    unmined patches and ragged edges in the polygons, missed thin cloud and faint shadow, haze, real texture).
    ``extra_months``: also the scenes of these later months (``scenes.schedule``), e.g. ``(6,)`` with ``months=1``:
    a winter and a summer month, where a crop field is green in one and a mine bare in both.
    """
    t0 = time.perf_counter()
    realism = realism_of(realism)
    extra_months = tuple(check_extra_months(months, extra_months))  # before any work
    out = Path(out_dir)
    _clear(out)
    rng = np.random.default_rng([seed, 1])
    timing: dict[str, float] = {}
    if polygons is not None:
        mines = _user_mines(polygons, center, size_km)
    else:
        mines = _generated_mines(center, size_km, rng, realism)
    grid = mines.grid
    timing["polygons"] = time.perf_counter() - t0

    surface = build_surface(grid, mines.utm, rng, library_part, realism)
    _add_artisanal(mines, surface.artisanal)
    timing["surface"] = time.perf_counter() - t0 - sum(timing.values())
    static = make_static(grid, surface, seed, out, realism)
    specs = schedule(grid, year, months, tuple(extra_months))
    n_workers = workers or min(2, os.cpu_count() or 1)
    results = render_all(static, specs, n_workers, progress)
    timing["scenes"] = time.perf_counter() - t0 - sum(timing.values())

    parameters = {"size_km": size_km, "year": year, "months": months, "center": list(mines.center), "project": project,
                  "library_part": library_part, "realism": realism.as_json()}  # fmt: skip
    if extra_months:  # only then: a world without them keeps its manifest byte for byte
        parameters["extra_months"] = list(extra_months)
    manifest = finish_world(out, seed, parameters, surface, mines, results, project)
    timing["total"] = time.perf_counter() - t0
    manifest.timing_s = {k: round(v, 3) for k, v in timing.items()}
    return manifest


def finish_world(out: Path, seed: int, parameters: dict, surface, mines: _Mines, results: list[dict],
                 project: str) -> WorldManifest:  # fmt: skip
    """Write the datasets, the catalog and ``manifest.json`` of rendered scenes (``results``); the manifest.

    Shared by the one-year world and the multi-year one (``gee_mining.world.years``): the scenes of every year
    go in one collection, and ``surface`` (the first year's) gives the truth rasters and WorldCover.
    """
    catalog, mines_id = _write_datasets(out, mines.grid, surface, mines, results, project)
    manifest = _manifest(out, catalog, seed, parameters, mines.grid, surface, results, mines, mines_id)
    # size_bytes: every file but manifest.json itself (same seed, same bytes: timings stay out of the file)
    manifest.size_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    written = {k: v for k, v in manifest.__dict__.items() if k != "timing_s"}
    (out / "manifest.json").write_text(
        json.dumps({**written, "out_dir": ".", "catalog": "catalog.toml"}, indent=1, sort_keys=True) + "\n"
    )
    return manifest


def _manifest(out: Path, catalog: Path, seed: int, parameters: dict, grid: WorldGrid, surface, results: list[dict],
              mines: _Mines, mines_id: str) -> WorldManifest:  # fmt: skip
    """What ``generate_world`` wrote, for ``manifest.json``."""
    palette = surface.palette
    spectra = {
        MATERIALS[m][0]: sorted(
            {palette.names[k] for k in palette.base[m]} | {palette.names[k] for k in palette.green.get(m, [])}
        )
        for m in MATERIALS
    }
    bounds = grid.bounds_lonlat().bounds
    return WorldManifest(
        out_dir=str(out.resolve()),
        catalog=str(catalog.resolve()),
        seed=seed,
        parameters=parameters,
        grid={
            "crs": grid.crs,
            "origin": [grid.x0, grid.y0],
            "size_m": grid.size,
            "bounds_lonlat": [round(b, 7) for b in bounds],
            "pixels_10m": list(grid.shape(10)),
        },
        mgrs_tile=grid.mgrs_tile(),
        scenes=[
            {
                "index": r["index"],
                "time_start": r["time_start"],
                "cloud_cover": round(r["cover"], 4),
                "cirrus": r["cirrus"],
                "CLOUDY_PIXEL_PERCENTAGE": r["s2"]["properties"]["CLOUDY_PIXEL_PERCENTAGE"],
                "truth": r["truth"],
            }
            for r in results
        ],  # fmt: skip
        polygons=mines.info,
        sources={
            "earthlib": {"version": earthlib.__version__, "license": "MIT", "library": "earthlib full_library"},
            "natural_earth": {"file": "pyogrio/tests/fixtures/naturalearth_lowres", "pyogrio": pyogrio.__version__},
            "polygons": mines.info["source"],
        },
        spectra=spectra,
        asset_ids={
            "s2": S2_SR,
            "cloud_score_plus": CLOUD_SCORE_PLUS,
            "cloud_probability": S2_CLOUD_PROBABILITY,
            "worldcover": WORLDCOVER,
            "lsib": LSIB,
            "mines": mines_id,
        },
        truth={
            "surface": "truth/surface.tif (material, base_spectrum, green_spectrum: palette indices)",
            "brightness": "truth/brightness.tif",
            "clouds": "truth/clouds/<system:index>.tif (0 clear, 1 thin cloud, 2 cloud, 3 opaque, 4 cirrus, 5 shadow)",
            "palette": list(palette.names),
            "materials": {str(k): v[0] for k, v in MATERIALS.items()},
        },
    )


def world_catalog_toml(out_dir: str | os.PathLike) -> str:
    """The world's catalog entries with absolute paths, to merge into another catalog TOML."""
    out = Path(out_dir).resolve()
    data = tomllib.loads((out / "catalog.toml").read_text())
    entries = [
        CatalogEntry(kind, {k: str(out / v) if k in ("index", "path") else v for k, v in fields.items()})
        for kind, items in data.items()
        for fields in items
    ]
    return catalog_text(entries)

"""A SIMULATED world over several years: mines that appear, grow and are abandoned, and change that is not mining.

``generate_years(out_dir, YearsSpec(...))`` writes one catalog (as :func:`gee_mining.world.generate_world`
does, through the same renderer and the same writers) whose Sentinel-2 collection holds the scenes of every
year. Each year has its own surface: the world's land (drawn once, without mines) with that year's state
painted over it:

- **mines** (:class:`MineHistory`): a known mine exists from the first year (the mine table the catalog
  serves holds these, with their first-year outlines, as an official register would); a new mine appears in
  a later year and is in no table. An active mine grows outward by ``growth_m`` metres a year (its outline
  buffered), and the ring it will take next year is cleared first (bare soil, no vegetation). An abandoned
  mine stops growing and revegetates (grass).
- **other change** (:class:`Change`): new crop fields (permanent), fire scars (dark ground for one year),
  floods (water for one year), urban growth (roofs, permanent), so that change is not only mines.

The truth is kept beside the scenes: ``truth/mines_by_year.parquet`` (mine x year: id, known, state, area
of bare mine ground in m2, the year it appeared, the year it was abandoned, its outline in lon/lat WKT),
``truth/changes.json`` and ``truth/years/<year>_material.tif``. ``disturbed_m2`` adds the ring cleared ahead of
the pit to ``area_m2``: all the ground the mine has laid bare, what a footprint seen from space measures.
Deterministic: the same spec, same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from gee_mining.errors import InputError
from gee_mining.world import WorldManifest, _clear, _Mines, finish_world
from gee_mining.world.fields import Field
from gee_mining.world.landscape import (
    DEFAULT_CENTER,
    Surface,
    WorldGrid,
    _blob,
    _local_to_utm,
    _native_resolutions,
    _rasterize,
    _Spectra,
    build_surface,
)
from gee_mining.world.scenes import make_static, render_all, schedule, write_tif
from gee_mining.world.spectra import MATERIAL_ID, VEGETATED

CHANGE_KINDS = {"field": "crop", "fire": "natural_soil", "flood": "water", "urban": "roof"}
ONE_YEAR = ("fire", "flood")  # changes that last one year; the others stay


@dataclass(frozen=True)
class YearsSpec:
    """What a multi-year world holds: its years, size, mines (known, new, abandoned), growth and other change."""

    years: tuple[int, ...] = (2019, 2020, 2021, 2022, 2023)
    size_km: float = 6.0
    months: int = 1
    known_mines: int = 4
    new_mines: int = 3
    abandoned: int = 1  # known mines abandoned (revegetating) in some year after the first
    growth_m: tuple[float, float] = (15.0, 40.0)  # outward growth per year of an active mine, metres (range)
    changes: tuple[tuple[str, int], ...] = (("field", 2), ("fire", 2), ("flood", 1), ("urban", 1))
    center: tuple[float, float] | None = None
    library_part: str | None = None
    project: str = "gee-mining-local"

    def __post_init__(self) -> None:
        years = tuple(int(y) for y in self.years)
        if len(years) < 2 or list(years) != list(range(years[0], years[0] + len(years))):
            raise InputError(f"years {self.years}: give two or more consecutive years, e.g. 2019-2023.")
        object.__setattr__(self, "years", years)
        if min(self.known_mines, self.new_mines, self.abandoned) < 0 or self.abandoned > self.known_mines:
            raise InputError("known_mines, new_mines, abandoned: counts of 0 or more, abandoned <= known_mines.")
        bad = [k for k, _ in self.changes if k not in CHANGE_KINDS]
        if bad:
            raise InputError(f"changes {bad}: use some of {', '.join(CHANGE_KINDS)}.")
        if not 1 <= self.months <= 12:
            raise InputError(f"months {self.months}: 1 to 12 months of each year.")


@dataclass(frozen=True)
class MineHistory:
    """One mine through the years: its first outline (UTM metres), when it appeared and was abandoned, its growth."""

    id: str
    known: bool  # in the world's mine table (it exists in the first year)
    shape: shapely.Geometry  # outline the year it appeared
    appeared: int
    abandoned: int | None  # first year it is no longer worked (revegetating); None: worked to the end
    growth_m: float  # outward growth per active year

    def outline(self, year: int) -> shapely.Geometry | None:
        """The mine's outline in ``year`` (None before it appeared); it stops growing once abandoned."""
        if year < self.appeared:
            return None
        last = year if self.abandoned is None else min(year, self.abandoned - 1)
        grown = max(0, last - self.appeared)
        return self.shape.buffer(self.growth_m * grown, quad_segs=8) if grown else self.shape

    def state(self, year: int) -> str:
        if year < self.appeared:
            return "absent"
        return "abandoned" if self.abandoned is not None and year >= self.abandoned else "active"

    def bare_area_m2(self, year: int) -> float:
        """Bare mine ground in ``year``: the outline while worked, 0 once abandoned (revegetated) or before."""
        return float(self.outline(year).area) if self.state(year) == "active" else 0.0

    def cleared_area_m2(self, year: int) -> float:
        """Ground cleared ahead of the pit in ``year`` (the ring it takes next year, bare soil already): 0 unless
        worked that year and the next."""
        if self.state(year) != "active":
            return 0.0
        return float(self.outline(year + 1).area - self.outline(year).area)


@dataclass(frozen=True)
class Change:
    """A change that is not mining: ``kind`` (``CHANGE_KINDS``) over ``shape`` (UTM metres) from ``year``."""

    kind: str
    shape: shapely.Geometry
    year: int

    def present(self, year: int) -> bool:
        return year == self.year if self.kind in ONE_YEAR else year >= self.year


@dataclass(frozen=True)
class History:
    """Every mine's and every change's history in a world."""

    mines: list[MineHistory]
    changes: list[Change]


def _place(rng: np.random.Generator, extent: float, area: float, taken: list, gap: float) -> shapely.Geometry:
    """A blob of ``area`` m2 (local metres) at least ``gap`` metres from every shape in ``taken``."""
    for _ in range(200):
        x, y = rng.uniform(0.12, 0.88, 2) * extent
        shape = _blob(rng, float(x), float(y), area)
        if all(shape.distance(t) > gap for t in taken):
            return shape
    raise InputError(f"no room for another {area / 1e6:.2f} km2 shape in a {extent / 1000:g} km world: use a larger "
                     "size_km or fewer mines and changes.")  # fmt: skip


def plan_history(grid: WorldGrid, spec: YearsSpec, rng: np.random.Generator) -> History:
    """Mines and changes, placed apart (each mine's last outline 250 m clear of everything else)."""
    extent = float(grid.size)
    years = spec.years
    mines: list[MineHistory] = []
    taken: list[shapely.Geometry] = []
    growth = spec.growth_m
    for i in range(spec.known_mines + spec.new_mines):
        known = i < spec.known_mines
        area = float(np.clip(rng.lognormal(math.log(0.08e6 if known else 0.03e6), 0.5), 0.015e6, 0.4e6))
        g = float(rng.uniform(*growth))
        appeared = years[0] if known else int(rng.choice(years[1:]))
        reach = g * (years[-1] - appeared) + 250.0
        shape = _place(rng, extent, area, [t.buffer(reach) for t in taken], 0.0)
        taken.append(shape.buffer(g * (years[-1] - appeared)))
        abandoned = int(rng.choice(years[1:])) if known and i < spec.abandoned else None
        mines.append(MineHistory(str(i), known, _local_to_utm(grid, shape), appeared, abandoned, g))
    changes = []
    for kind, count in spec.changes:
        for _ in range(count):
            area = float(rng.uniform(0.04e6, 0.2e6))
            shape = _place(rng, extent, area, taken, 250.0)
            taken.append(shape)
            changes.append(Change(kind, _local_to_utm(grid, shape), int(rng.choice(years[1:]))))
    return History(mines, changes)


@dataclass(frozen=True)
class _Textures:
    """Fixed per world: the mine-material patterns and a rank field choosing each material's spectrum."""

    inner: np.ndarray
    tail: np.ndarray
    rank: np.ndarray


def _textures(grid: WorldGrid, rng: np.random.Generator) -> _Textures:
    h, w = grid.shape(10)
    extent = float(grid.size)
    inner = Field.random(rng, extent, 150.0).sample(h, w, 10.0)
    tail = Field.random(rng, extent, 300.0).sample(h, w, 10.0)
    rank = np.clip(Field.random(rng, extent, 350.0).sample(h, w, 10.0) / 3.0 + 0.5, 0, 0.999)
    return _Textures(inner, tail, rank)


def year_material(base: Surface, grid: WorldGrid, history: History, tex: _Textures, year: int):
    """``year``'s materials (uint8, 10 m), brightness factor and bare-mine mask painted over the mine-free land."""
    material = base.material.copy()
    brightness = base.brightness.copy()
    for c in history.changes:
        if c.present(year):
            sel = _rasterize([c.shape], grid, 10) > 0
            if c.kind == "field":
                sel &= np.isin(material, VEGETATED)
            material[sel] = MATERIAL_ID[CHANGE_KINDS[c.kind]]
            if c.kind == "fire":  # charred ground: dark
                brightness[sel] *= np.float32(0.45)
    active = [m for m in history.mines if m.state(year) == "active"]
    abandoned = [m.outline(year) for m in history.mines if m.state(year) == "abandoned"]
    cleared = [m.outline(year + 1) for m in active]  # next year's ring is cleared first
    material[_rasterize(cleared, grid, 10) > 0] = MATERIAL_ID["natural_soil"]
    mine_mask = _rasterize([m.outline(year) for m in active], grid, 10) > 0
    pattern = np.full(material.shape, MATERIAL_ID["mine_soil"], dtype=np.uint8)
    pattern[tex.inner > 0.6] = MATERIAL_ID["mine_rock"]
    pattern[tex.tail > 0.9] = MATERIAL_ID["tailings"]
    material = np.where(mine_mask, pattern, material)
    material[_rasterize(abandoned, grid, 10) > 0] = MATERIAL_ID["grass"]
    return material, brightness, mine_mask


def year_surface(base: Surface, grid: WorldGrid, history: History, tex: _Textures, year: int) -> Surface:
    """The surface of ``year``: changed pixels take a spectrum of their new material (vegetation: its green one,
    without a season), the rest keeps the base world's spectra and phenology."""
    material, brightness, mine_mask = year_material(base, grid, history, tex, year)
    changed = (material != base.material) | (brightness != base.brightness)
    spectra_base, spectra_green = base.base.copy(), base.green.copy()
    palette = base.palette
    for m in np.unique(material[changed]):
        sel = changed & (material == m)
        pool = palette.green.get(int(m), palette.base[int(m)])
        pick = pool[np.minimum((tex.rank[sel] * len(pool)).astype(int), len(pool) - 1)]
        spectra_base[sel] = pick
        spectra_green[sel] = pick
    groups = base.groups
    still = np.flatnonzero(groups[:, 0] == 0)
    if not len(still):
        groups = np.vstack([groups, np.zeros((1, 4), dtype=np.float32)])
        still = [len(groups) - 1]
    group10 = np.where(changed, np.int32(still[0]), base.group[10]).astype(np.int32)
    spectra = _Spectra(spectra_base, spectra_green, brightness)
    A, D, group = _native_resolutions(palette.values, spectra, group10)
    return Surface(material, spectra_base, spectra_green, brightness, group, groups, A, D, palette, mine_mask)


def _to_lonlat(grid: WorldGrid, geom: shapely.Geometry) -> shapely.Geometry:
    tf = grid.to_lonlat()
    return shapely.transform(geom, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


def _known_table(grid: WorldGrid, history: History, center) -> _Mines:
    """The mine table the catalog serves: the known mines' first-year outlines (new mines are in no table)."""
    known = [m for m in history.mines if m.known]
    utm = [m.shape for m in known]
    lonlat = [_to_lonlat(grid, g) for g in utm]
    props = [{"id": int(m.id), "source": "generated by gee-mining world years (simulated)",
              "area_m2": round(m.shape.area, 1), "year": m.appeared} for m in known]  # fmt: skip
    info = {"source": "generated", "count": len(known),
            "method": "known mines of a multi-year world, their outlines in its first year (gee_mining.world.years)"}  # fmt: skip
    return _Mines(grid, center, lonlat, utm, props, info)


def mines_by_year(grid: WorldGrid, history: History, years: tuple[int, ...]) -> pd.DataFrame:
    """The truth table: one row per mine and year (absent years left out)."""
    rows = []
    for m in history.mines:
        for y in years:
            if y < m.appeared:
                continue
            rows.append({
                "mine_id": m.id, "year": y, "known": m.known, "state": m.state(y),
                "area_m2": round(m.bare_area_m2(y), 1), "outline_area_m2": round(m.outline(y).area, 1),
                "disturbed_m2": round(m.bare_area_m2(y) + m.cleared_area_m2(y), 1),
                "appeared": m.appeared, "abandoned": m.abandoned, "growth_m_per_year": round(m.growth_m, 2),
                "geometry_wkt": _to_lonlat(grid, m.outline(y)).wkt,
            })  # fmt: skip
    return pd.DataFrame(rows)


def _write_truth(out: Path, grid: WorldGrid, history: History, years, materials: dict[int, np.ndarray]) -> None:
    truth = out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    mines_by_year(grid, history, years).to_parquet(truth / "mines_by_year.parquet", index=False)
    changes = [{"kind": c.kind, "year": c.year, "one_year": c.kind in ONE_YEAR, "area_m2": round(c.shape.area, 1),
                "geometry_wkt": _to_lonlat(grid, c.shape).wkt} for c in history.changes]  # fmt: skip
    (truth / "changes.json").write_text(json.dumps({"SIMULATED": True, "changes": changes}, indent=1) + "\n")
    for y, material in materials.items():
        write_tif(truth / "years" / f"{y}_material.tif", material, grid, 10, ["material"])


def generate_years(out_dir: str | os.PathLike, spec: YearsSpec | None = None, seed: int = 0, workers: int | None = None,
                   progress=None) -> WorldManifest:  # fmt: skip
    """Write a SIMULATED multi-year world (see the module docstring) into ``out_dir``; its manifest.

    The scenes of year k are numbered from 1000 k, so no two years share a sky.
    """
    spec = spec or YearsSpec()
    t0 = time.perf_counter()
    out = Path(out_dir)
    _clear(out)
    rng = np.random.default_rng([seed, 28])
    lon, lat = spec.center or DEFAULT_CENTER
    grid = WorldGrid.around(lon, lat, spec.size_km)
    history = plan_history(grid, spec, rng)
    base = build_surface(grid, [], rng, spec.library_part)
    tex = _textures(grid, rng)
    results, surfaces = [], {}
    for k, year in enumerate(spec.years):
        surfaces[year] = year_surface(base, grid, history, tex, year)
        static = make_static(grid, surfaces[year], seed, out)
        specs = [dataclasses.replace(s, number=s.number + 1000 * k) for s in schedule(grid, year, spec.months)]
        results += render_all(static, specs, workers or min(2, os.cpu_count() or 1), progress)
        if progress:
            progress(f"[world years] {year} rendered ({time.perf_counter() - t0:.0f} s)")
    _write_truth(out, grid, history, spec.years, {y: s.material for y, s in surfaces.items()})
    mines = _known_table(grid, history, (lon, lat))
    parameters = {"years": list(spec.years), "year": spec.years[0], "size_km": spec.size_km, "months": spec.months,
                  "center": [lon, lat], "project": spec.project, "library_part": spec.library_part,
                  "multi_year": {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("center", "project")}}  # fmt: skip
    manifest = finish_world(out, seed, parameters, surfaces[spec.years[0]], mines, results, spec.project)
    manifest.timing_s = {"total": round(time.perf_counter() - t0, 3)}
    return manifest

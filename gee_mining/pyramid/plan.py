"""The cost of a world-scale pyramid, planned from level statistics of a real polygon set.

Per level (coarse to fine) the plan needs how many cells hold a mine. Those counts come from the
polygon set, server-side: per UTM zone, ``Geometry.coveringGrid`` of the zone's polygons at the
level's cell size, counted (``size``). Fine levels over thousands of polygons are slow on the local
engine (5,232 polygons at 1375 m: ~85 s), so levels finer than ``measured_down_to`` are
**extrapolated**: each further level multiplies the count by the last measured fine/coarse ratio
(a mine cluster splits into fewer than 4 children per level, so the ratio is measured, not 4).

From the counts: level 0 evaluates every cell of the land (``land_km2`` / cell area); each later
level evaluates the 4 children of each kept cell; a level keeps ``positives x fp_factor`` cells
(``fp_factor`` >= 1: the kept cells per cell holding a mine, measured on the simulated world). Earth
Engine tasks: screening exports one table per ``cells_per_task`` cells per level (``core.export_scores``: at
most ``SCORE_BATCH_CELLS`` a task, and at least one per zone); the detector
exports one image per finest cell. Pixels: cells x (cell / scale)^2 at each level; the detector's
patches at 10 m. Bytes: the detector's float32 patches of ``bands`` bands, uncompressed (an upper
bound: exported GeoTIFFs are compressed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gee_mining.contracts.cells import GridSpec
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.pyramid.core import SCORE_BATCH_CELLS, PyramidSpec
from gee_mining.steps.grid import tag_zones

LAND_KM2 = 148.9e6  # the Earth's land area (km2), the level-0 region of a world run


@dataclass
class PlanLevel:
    zoom: int
    cell_size: float
    positives: int
    measured: bool
    cells_evaluated: int
    cells_kept: int
    pixels: int
    tasks: int


@dataclass
class WorldPlan:
    name: str
    polygons: int
    levels: list[PlanLevel]
    fine_cells: int
    detector_tasks: int
    detector_pixels: int
    detector_bytes: int
    exhaustive_cells: int
    exhaustive_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> int:
        return sum(lv.tasks for lv in self.levels) + self.detector_tasks

    def rows(self) -> list[tuple]:
        out = [
            (f"screen z{lv.zoom} ({lv.cell_size:g} m)", lv.positives, "measured" if lv.measured else "extrapolated",
             lv.cells_evaluated, lv.cells_kept, lv.pixels, lv.tasks, 0)
            for lv in self.levels
        ]  # fmt: skip
        out.append(("detector (finest cells)", "", "", self.fine_cells, "", self.detector_pixels, self.detector_tasks,
                    self.detector_bytes))  # fmt: skip
        out.append(("exhaustive detector (every finest land cell)", "", "", self.exhaustive_cells, "", "",
                    self.exhaustive_cells, self.exhaustive_bytes))  # fmt: skip
        return out


def positive_cell_counts(ee, polygons: Any, levels: Sequence[GridSpec]) -> list[int]:
    """Per level, the cells (in the UTM zone of each polygon) that touch a polygon, counted server-side."""
    fc = ee.FeatureCollection(polygons) if isinstance(polygons, str) else polygons
    tagged = tag_zones(ee, fc, levels[0])
    zones = sorted({int(z) for z in tagged.aggregate_array("grid_epsg").distinct().getInfo()})
    counts = []
    for spec in levels:
        sizes = [
            tagged.filter(ee.Filter.eq("grid_epsg", epsg))
            .geometry()
            .coveringGrid(ee.Projection(f"EPSG:{epsg}").atScale(spec.cell_size))
            .size()
            for epsg in zones
        ]
        counts.append(int(ee.List(sizes).reduce(ee.Reducer.sum()).getInfo()))
    return counts


def world_plan(
    ee,
    polygons: Any,
    spec: PyramidSpec,
    name: str = "",
    measured_down_to: float | None = None,
    fp_factor: Sequence[float] | float = 2.0,
    land_km2: float = LAND_KM2,
    bands: int = 12,
    cells_per_task: int = SCORE_BATCH_CELLS,
    scale_to_polygons: int | None = None,
) -> WorldPlan:
    """The plan of ``spec``'s levels over the world's land, with the mines of ``polygons`` (see the module's
    docstring). ``scale_to_polygons``: scale the positive counts by that many polygons over the set's count
    (e.g. 44,929 for the full Maus et al. layer from its 100-polygon demo subset: an extrapolation, said so)."""

    fc = ee.FeatureCollection(polygons) if isinstance(polygons, str) else polygons
    n_polygons = int(fc.size().getInfo())
    levels = list(spec.levels)
    limit = measured_down_to if measured_down_to is not None else levels[-1].cell_size
    measured = [lv for lv in levels if lv.cell_size >= limit]
    counts = positive_cell_counts(ee, fc, measured)
    notes = []
    while len(counts) < len(levels):
        ratio = counts[-1] / counts[-2] if len(counts) > 1 and counts[-2] else 4.0
        counts.append(int(round(counts[-1] * ratio)))
    if len(measured) < len(levels):
        notes.append(
            f"levels finer than {limit:g} m extrapolated with the last measured ratio "
            f"({counts[len(measured) - 1] / max(1, counts[len(measured) - 2]):.2f} cells per coarser cell)"
        )
    if scale_to_polygons:
        factor = scale_to_polygons / n_polygons
        counts = [int(round(c * factor)) for c in counts]
        notes.append(f"positive cells scaled by {factor:.1f} ({scale_to_polygons:,} / {n_polygons:,} polygons)")
    fps = list(fp_factor) if isinstance(fp_factor, Sequence) else [float(fp_factor)] * len(levels)
    plan_levels = []
    evaluated = math.ceil(land_km2 * 1e6 / levels[0].cell_size ** 2)
    for i, (lv, scale) in enumerate(zip(levels, spec.scales, strict=True)):
        if i > 0:
            evaluated = 4 * plan_levels[-1].cells_kept
        kept = min(evaluated, int(round(counts[i] * fps[i])))
        pixels = int(evaluated * (lv.cell_size / scale) ** 2)
        plan_levels.append(PlanLevel(lv.zoom, lv.cell_size, counts[i], i < len(measured), evaluated, kept, pixels,
                                     math.ceil(evaluated / cells_per_task)))  # fmt: skip
    fine = plan_levels[-1].cells_kept
    lattice = pixel_grid({"epsg": 32601, "cell_x": 0, "cell_y": 0, "cell_size": levels[-1].cell_size})
    patch = lattice.width * lattice.height
    exhaustive = math.ceil(land_km2 * 1e6 / levels[-1].cell_size ** 2)
    return WorldPlan(name, n_polygons, plan_levels, fine, fine, fine * patch, fine * patch * bands * 4, exhaustive,
                     exhaustive * patch * bands * 4, notes)  # fmt: skip

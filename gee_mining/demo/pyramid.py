"""The pyramid's step in ``make demo``: a SIMULATED world searched coarse to fine, its cost next to an exhaustive
run, a map of the kept and dropped cells of each level, and the world-scale plan from the real polygon sets."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.patches as mpatches
import matplotlib.pyplot as plt
import numpy as np
import pyproj
import shapely

from gee_mining.connection import current_connection
from gee_mining.io.catalog import AMAZON_ID, MINES_ID
from gee_mining.pyramid.core import PyramidResult, PyramidSpec, calibrate, run_exhaustive, run_pyramid, start_cells
from gee_mining.pyramid.detectors import PixelModelDetector
from gee_mining.pyramid.plan import WorldPlan, world_plan
from gee_mining.pyramid.probability import fit_probability
from gee_mining.pyramid.world import SimulatedPyramid, prepare_simulated
from gee_mining.tools.report import Report

PLAN_SIZES, PLAN_ZOOMS = [44000, 22000, 11000, 5500, 2750, 1375], [11, 12, 13, 14, 15, 16]


def _levels_figure(result, sim, exhaustive_detected, coarsest: float):

    matplotlib.use("Agg")

    n = len(result.levels)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.9))

    data = json.loads((Path(sim.world.out_dir) / "tables" / "mines.geojson").read_text())
    tf = pyproj.Transformer.from_crs(4326, sim.epsg, always_xy=True)
    mines = [
        shapely.transform(
            shapely.geometry.shape(f["geometry"]), lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1]))
        )
        for f in data["features"]
    ]
    xmin, ymin, xmax, ymax = sim.bounds
    for ax, lv, kept, dropped in zip(axes, result.levels, result.kept, result.dropped, strict=True):
        s = lv.cell_size
        for rows, colour in ((dropped, "#bdbdbd"), (kept, "#ffb300")):
            for r in rows:
                ax.add_patch(mpatches.Rectangle((r["cell_x"] * s, r["cell_y"] * s), s, s, facecolor=colour,
                                                edgecolor="white", lw=0.4))  # fmt: skip
        for part in (part for m in mines for part in getattr(m, "geoms", [m])):  # a mine may be in several parts
            x, y = part.exterior.xy
            ax.fill(x, y, color="#c62828", lw=0)
        ax.set_xlim(xmin, xmin + 4 * coarsest)
        ax.set_ylim(ymax - 4 * coarsest, ymax)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"z{lv.zoom} ({s:g} m): {lv.cells_kept}/{lv.cells_evaluated} kept", fontsize=8)
    handles = [mpatches.Patch(color="#ffb300", label="kept"), mpatches.Patch(color="#bdbdbd", label="dropped"),
               mpatches.Patch(color="#c62828", label="known mines (SIMULATED)")]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("SIMULATED world: cells evaluated at each level (white gaps: never evaluated)", fontsize=9)
    return fig


@dataclass(frozen=True)
class _Searches:
    """The pyramid and exhaustive searches of the simulated world, on thresholds calibrated for 98 % recall."""

    spec: PyramidSpec  # the levels as given
    calibrated: PyramidSpec  # the same levels with calibrated thresholds
    result: PyramidResult
    exhaustive: PyramidResult

    @property
    def ratio(self) -> float:
        """How many times fewer finest cells the pyramid evaluated than the exhaustive run."""
        return self.exhaustive.detector.cells / max(1, self.result.detector.cells)


def demo_step(ee, report, ctx) -> None:
    """Add the "Pyramid" section (see the module's docstring)."""

    section = report.section("SIMULATED · in-sample · The pyramid: coarse-to-fine search, its cost and recall")
    conn = current_connection()
    if conn is None or conn.storage_root is None:
        Report.text(section, "Skipped: the pyramid demo runs on an in-process local engine.", "warn")
        return
    t0 = time.perf_counter()
    out = Path(ctx.out) / "pyramid"
    scale = ctx.scale
    sim = prepare_simulated(out, conn.catalog, conn.storage_root, size_km=scale.pyramid_km,
                            clusters=scale.pyramid_clusters, engine_project=conn.project, progress=ctx.progress)  # fmt: skip
    ctx.timings["pyramid: simulated world + composite export"] = time.perf_counter() - t0
    t = time.perf_counter()
    runs = _search(ee, ctx, sim, out)
    ctx.timings["pyramid: calibration, pyramid and exhaustive runs"] = time.perf_counter() - t
    _search_report(section, sim, runs, scale.pyramid_clusters)
    result, exhaustive = runs.result, runs.exhaustive
    ctx.summary["pyramid"] = {
        "thresholds": list(runs.calibrated.thresholds),
        "recall_pyramid": result.recall,
        "recall_exhaustive": exhaustive.recall,
        "fine_cells_pyramid": result.detector.cells,
        "fine_cells_exhaustive": exhaustive.detector.cells,
        "ratio": runs.ratio,
    }
    # false positives per level measured here feed the world plan
    fp = [max(1.0, lv.cells_kept / max(1, lv.positives_evaluated)) for lv in result.levels]
    fp_factor = sum(fp) / len(fp)
    t = time.perf_counter()
    plans = _world_plans(ee, fp_factor)
    ctx.timings["pyramid: world-scale plans"] = time.perf_counter() - t
    if not plans:
        Report.text(section, "World-scale plan skipped: the real polygon sets (../shared/data) are absent.", "warn")
        return
    _plans_report(section, plans, fp_factor)
    ctx.summary["pyramid"]["plans"] = {
        p.name: {"tasks": p.tasks, "fine_cells": p.fine_cells, "exhaustive_cells": p.exhaustive_cells,
                 "detector_bytes": p.detector_bytes, "exhaustive_bytes": p.exhaustive_bytes}
        for p in plans
    }  # fmt: skip


def _search(ee, ctx, sim: SimulatedPyramid, out: Path) -> _Searches:
    """Fit the pixel model, calibrate the levels' thresholds on the known mines, and run the pyramid and the
    exhaustive search with the same detector."""
    model = fit_probability(ee, ee.Image(sim.composite_id), sim.region(ee), sim.mines_id, pixels=1000)
    spec = PyramidSpec.of(list(ctx.scale.pyramid_cells), list(ctx.scale.pyramid_zooms))
    cells = start_cells(ee, sim.region(ee), spec.levels[0], sim.epsg)
    calibrated = calibrate(ee, model.image, spec, cells, sim.mines_id, target_recall=0.98)
    detector = PixelModelDetector(model.image, block=8, folder=out / "patches")
    result = run_pyramid(ee, model.image, calibrated, cells, detector, sim.mines_id, progress=ctx.progress)
    exhaustive = run_exhaustive(ee, calibrated, cells, detector, sim.mines_id)
    return _Searches(spec, calibrated, result, exhaustive)


def _search_report(section, sim: SimulatedPyramid, runs: _Searches, clusters: int) -> None:
    """What the simulated search did, a map of its levels, and its cost next to the exhaustive run's."""
    spec, calibrated, result, exhaustive = runs.spec, runs.calibrated, runs.result, runs.exhaustive
    Report.text(
        section,
        f"SIMULATED data. A {sim.world.grid['size_m'] / 1000:g} km world with {len(result.known_mines)} generated "
        f"mines in {clusters} cluster(s); its 1-month composite exported once and served as an image asset. Screening score: "
        f"the share of a cell's pixels whose mine probability (a logistic pixel model compiled to image "
        f"algebra by gee_mining.ml.classify) exceeds {spec.pixel_threshold}, by Image.reduceRegions at cell/64 m per pixel. "
        f"Thresholds calibrated on the known mines for a target recall of 98 %: "
        f"{', '.join(f'z{lv.zoom} {t:.3f}' for lv, t in zip(spec.levels, calibrated.thresholds, strict=True))}. "
        f"Detector: the pixel model thresholded into boxes (not YOLO; see docs/pyramid.md). Calibrated and measured "
        f"on the same world (in-sample).",
        "warn",
    )
    Report.figure(section, _levels_figure(result, sim, exhaustive.detected_mines, spec.levels[0].cell_size),
                  "SIMULATED: kept (amber) and dropped (grey) cells at each level; mines in red.")  # fmt: skip
    rows = [tuple(r.values()) for r in result.cost_rows()]
    rows.append(("exhaustive detector (every finest cell)", None, exhaustive.detector.cells, None,
                 exhaustive.detector.pixels, exhaustive.detector.patches_exported, exhaustive.detector.patches_seen,
                 len(exhaustive.detected_mines)))  # fmt: skip
    Report.table(
        section,
        list(result.cost_rows()[0].keys()),
        [tuple("" if v is None else (round(v, 4) if isinstance(v, float) else v) for v in r) for r in rows],
        f"Cost per level, and the exhaustive reference. Recall of known mines: pyramid {result.recall:.3f}, "
        f"exhaustive {exhaustive.recall:.3f}; finest cells evaluated: {result.detector.cells} vs "
        f"{exhaustive.detector.cells} ({runs.ratio:.1f}x fewer). Dropped mines: {result.dropped_at() or 'none'}.",
    )


def _world_plans(ee, fp_factor: float) -> list[WorldPlan]:
    """World-scale plans from the real polygon sets the catalog holds (none when they are absent)."""
    plan_spec = PyramidSpec.of(PLAN_SIZES, PLAN_ZOOMS)
    plans = []
    for table_id, limit, scale_to in ((MINES_ID, None, 44929), (AMAZON_ID, 5500, None)):
        try:
            ee.data.getAsset(table_id)
        except ee.EEException:
            continue
        plans.append(world_plan(ee, table_id, plan_spec, table_id.rsplit("/", 1)[1], measured_down_to=limit,
                                fp_factor=fp_factor, scale_to_polygons=scale_to))  # fmt: skip
    return plans


def _plans_report(section, plans: list[WorldPlan], fp_factor: float) -> None:
    """A table per world-scale plan: cells, pixels, tasks and bytes of each stage."""
    for plan in plans:
        Report.table(
            section,
            [
                "stage",
                "cells with mines",
                "counts",
                "cells evaluated",
                "cells kept",
                "pixels",
                "EE tasks",
                "bytes exported",
            ],
            [tuple(f"{v:,}" if isinstance(v, int) else v for v in r) for r in plan.rows()],
            f"World-scale plan from {plan.name} ({plan.polygons:,} real polygons): level 0 covers the Earth's land "
            f"(148.9 M km2); each level keeps cells with mines x {fp_factor:.2f} (the kept/positive ratio measured "
            f"above). {'; '.join(plan.notes)}. Total EE tasks {plan.tasks:,}; exported bytes are float32, "
            f"12 bands, uncompressed (an upper bound).",
        )

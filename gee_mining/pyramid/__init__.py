"""The pyramid: coarse-to-fine search for mines, with its cost accounted (see docs/pyramid.md).

>>> spec = PyramidSpec.of([5500, 2750, 1375])
>>> cells = start_cells(ee, region, spec.levels[0], epsg=32721)
>>> spec = calibrate(ee, probability, spec, cells, "projects/p/assets/known_mines", target_recall=0.98)
>>> result = run_pyramid(ee, probability, spec, cells, detector=YoloDetector(weights, dataset_spec))
>>> exhaustive = run_exhaustive(ee, spec, cells, detector)      # the reference it saves on
"""

from __future__ import annotations

from gee_mining.contracts.cells import cell_row
from gee_mining.pyramid.core import (
    DetectorCost,
    IslandScore,
    LevelStats,
    PyramidResult,
    PyramidSpec,
    ZoomCheck,
    calibrate,
    children,
    descendants,
    export_scores,
    run_exhaustive,
    run_levels,
    run_pyramid,
    score_cells,
    start_cells,
    zoom_check,
)
from gee_mining.pyramid.detectors import Detector, DetectorRun, PixelModelDetector, YoloDetector

__all__ = [
    "IslandScore",
    "Detector",
    "DetectorCost",
    "DetectorRun",
    "LevelStats",
    "PixelModelDetector",
    "PyramidResult",
    "PyramidSpec",
    "YoloDetector",
    "ZoomCheck",
    "calibrate",
    "cell_row",
    "children",
    "descendants",
    "export_scores",
    "run_exhaustive",
    "run_levels",
    "run_pyramid",
    "score_cells",
    "start_cells",
    "zoom_check",
]

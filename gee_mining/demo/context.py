"""What every demo step receives (the run context) and what the demo returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoScale:
    """How big a demo run is: the grid levels, the simulated worlds it generates, how much the pixel study reads.

    ``make demo`` runs at :data:`FULL`; the test suite runs the same steps at :data:`SMALL`, which keeps every
    step and every section of the report but spends a fraction of the time (the tests check structure and
    independent references, not the demo's figures).
    """

    grid_cells: tuple[float, ...] = (5500.0, 2750.0, 1375.0)  # step 1's levels over the mine polygons (m)
    world_km: float = 8.0  # side of the simulated world
    world_months: int = 12  # months of 2019 with scenes
    study_pixels_per_cell: int = 3000  # pixel-study rows sampled per cell
    study_rows: int = 10_000  # at most this many training rows for the L1-logistic path and the other models
    study_logistic_penalties: int = 20  # penalties along the L1-logistic path
    study_lasso_penalties: int = 50  # penalties along the LASSO path
    pyramid_km: float = 11.04  # side of the pyramid's own simulated world: 4 x 4 cells of its coarsest level
    pyramid_cells: tuple[float, ...] = (2750.0, 1375.0, 687.5, 343.75)  # the pyramid's levels (m)...
    pyramid_zooms: tuple[int, ...] = (15, 16, 17, 18)  # ...and their zoom labels
    pyramid_clusters: int = 2  # mine clusters in the pyramid's world

    @property
    def grid_text(self) -> str:
        """The grid levels, e.g. "5500, 2750, 1375 m"."""
        return ", ".join(f"{c:g}" for c in self.grid_cells) + " m"

    def describe(self) -> str:
        """The simulated world in words, for the report's parameters and the progress lines."""
        return f"{self.world_km:g} km, {self.world_months} months of 2019, seed 0"


FULL = DemoScale()
SMALL = DemoScale(grid_cells=(5500.0, 2750.0), world_km=6.0, world_months=4, study_pixels_per_cell=300,
                  study_rows=1500, study_logistic_penalties=4, study_lasso_penalties=8, pyramid_km=5.52,
                  pyramid_cells=(1375.0, 687.5, 343.75), pyramid_zooms=(16, 17, 18), pyramid_clusters=1)  # fmt: skip


@dataclass
class DemoResult:
    out_dir: Path
    report: Path
    summary: dict = field(default_factory=dict)


@dataclass
class DemoContext:
    """What the demo's steps share: each step reads what earlier ones left here and adds its own.

    A step is a function ``step(ee, report, ctx) -> None`` in its pipeline module (``demo_step``);
    it adds a section to ``report``, writes under ``ctx.out / <its name>``, and records its figures
    in ``ctx.summary[<its name>]`` and its time in ``ctx.timings``. Warnings (repaired polygons, masked
    scenes, failed exports) go in ``ctx.summary[<its name>]["warnings"]`` (a list of str) or are raised
    with ``warnings.warn``; the report lists them all in its Warnings section.
    """

    out: Path
    world: Any  # WorldManifest of the simulated world, or None when the demo runs on a given catalog
    mines_id: str | None  # the table asset of the mine polygons the grid used
    grids: dict[int, Any] = field(default_factory=dict)  # zoom -> GridTable of step 1
    summary: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    progress: Callable[[str], None] = print
    scale: DemoScale = FULL

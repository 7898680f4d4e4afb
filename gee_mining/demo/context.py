"""What every demo step receives (the run context) and what the demo returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

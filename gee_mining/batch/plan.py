"""The plan of a global run, before anything runs: tasks, interactive requests, bytes and wall time.

:func:`plan_job` counts the tasks of an export job from its cells with the launcher's own planning
(``batch.jobs.job_units``, ``batch.batches.plan_batches``), so the plan is what the launcher submits (a
test runs the same job on the local engine and compares). :func:`cells_of_polygons` gives the cells a
polygon set makes at one level without an engine (shapely and pyproj: every cell whose square meets a
polygon in the UTM zone of its centroid, as ``steps.grid`` tags zones, plus one negative per positive),
for ``gee-mining plan --polygons FILE --levels ...``.

The per-task time model (:class:`TaskModel`) is stated with the plan; its numbers are ASSUMPTIONS, not
measurements on Earth Engine (none are possible offline): a fixed cost per task (queueing behind the
project's other tasks, start-up, writing files) and a compute cost per megapixel of cell stack actually
computed (masked pixels outside the cells are not counted). Calibrate them from the first tasks of a run
(``updateTime - startTime`` in ``ee.data.listOperations``). Wall time at ``N`` concurrent tasks is the
longest of (total task time / N) and the longest task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyproj
import shapely

from gee_mining.batch.batches import DEFAULT_FILES_PER_SIDE, plan_batches
from gee_mining.batch.products import BATCHED_PRODUCTS, SCENE_CHECKED
from gee_mining.contracts.cells import GridSpec, assign_negatives, utm_epsg
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.errors import InputError
from gee_mining.steps.sentinel2 import SCENE_BATCH

PLAN_PRODUCTS = ("cell-image-batch", "pixel-table-batch", "tfrecord-batch", "cell-image", "pixel-table")
BATCHED_PLAN_PRODUCTS = tuple(p for p in PLAN_PRODUCTS if p in BATCHED_PRODUCTS)
BYTES_PER_VALUE = 4  # float32 (the cell stack's type); files are compressed, so this is an upper bound
CSV_BYTES_PER_VALUE = 10  # a pixel-table value as CSV text (sign, digits, separator); an estimate
TABLE_EXTRA_COLUMNS = 12  # a pixel table's columns besides the bands: cell, row, col, x, y and ~7 metadata
PATCH_EXTRA_BANDS = 2  # tfrecord-batch's x and y bands


def bytes_per_pixel(product: str, bands: int) -> int:
    """Bytes a product writes per cell pixel (uncompressed; TFRecord patches kept by maxMaskedRatio only)."""
    if product.startswith("pixel-table"):
        return (bands + TABLE_EXTRA_COLUMNS) * CSV_BYTES_PER_VALUE
    if product == "tfrecord-batch":
        return (bands + PATCH_EXTRA_BANDS) * BYTES_PER_VALUE
    return bands * BYTES_PER_VALUE


@dataclass(frozen=True)
class TaskModel:
    """Seconds an export task takes: ``fixed_s + s_per_megapixel * megapixels computed`` (ASSUMPTIONS)."""

    fixed_s: float = 120.0
    s_per_megapixel: float = 10.0
    sources: str = (
        "assumed, not measured: Earth Engine publishes no throughput. fixed_s covers queueing after a slot "
        "frees, start-up and file writes (minutes per task are typical of small exports); s_per_megapixel "
        "covers a year's cloud-masked median of 12 Sentinel-2 bands with labels per million 10 m pixels. "
        "Concurrency: about 2 batch tasks per noncommercial project (guide 'Earth Engine quotas'). "
        "Calibrate from the first tasks of a run (updateTime - startTime of listOperations)."
    )

    def seconds(self, megapixels: float) -> float:
        return self.fixed_s + self.s_per_megapixel * megapixels


@dataclass
class ProductPlan:
    """One product at one level: its tasks, cells, files, pixels and bytes."""

    product: str
    level_m: float
    cells: int
    tasks: int
    files: int
    megapixels: float
    bytes_written: int
    bands: int
    task_seconds: float
    largest_task_megapixels: float


@dataclass
class RunPlan:
    """The whole plan: per product and level, the totals, and the model behind the wall time."""

    products: list[ProductPlan]
    concurrent_tasks: int
    model: TaskModel
    interactive_requests: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total_tasks(self) -> int:
        return sum(p.tasks for p in self.products)

    @property
    def wall_seconds(self) -> float:
        total = sum(p.task_seconds for p in self.products)
        longest = max((self.model.seconds(p.largest_task_megapixels) for p in self.products), default=0.0)
        return max(total / self.concurrent_tasks, longest)

    def to_json(self) -> dict[str, Any]:
        return {
            "total_tasks": self.total_tasks,
            "interactive_requests": self.interactive_requests,
            "bytes_written": sum(p.bytes_written for p in self.products),
            "concurrent_tasks": self.concurrent_tasks,
            "wall_seconds": round(self.wall_seconds, 1),
            "wall_days": round(self.wall_seconds / 86400, 2),
            "task_model": asdict(self.model),
            "products": [asdict(p) for p in self.products],
            "notes": self.notes,
        }


def plan_product(rows: Sequence[dict[str, Any]], product: str, bands: int, model: TaskModel,
                 files_per_side: int | None = DEFAULT_FILES_PER_SIDE) -> ProductPlan:  # fmt: skip
    """The tasks ``product`` makes of ``rows`` (what ``batch.jobs.job_units`` submits), with pixels and bytes."""
    if product not in PLAN_PRODUCTS:
        raise InputError(f"product {product!r}: the plan knows {', '.join(PLAN_PRODUCTS)}.")
    pixels = [pixel_grid(r).size for r in rows]
    level = float(rows[0]["cell_size"]) if rows else 0.0
    if product not in BATCHED_PRODUCTS:  # one task (and file) per cell
        units = [[p] for p in pixels]
        files = len(rows)
    else:
        index = {r["name"]: p for r, p in zip(rows, pixels, strict=True)}
        batches = plan_batches(rows, files_per_side)
        units = [[index[c["name"]] for c in b.cells] for b in batches]
        # image batches: a file per block holding a cell; a table batch: one CSV; TFRecord: at least one file
        files = sum(len(b.blocks) if BATCHED_PRODUCTS[product] == "image" else 1 for b in batches)
    mpx = [sum(u) / 1e6 for u in units]
    return ProductPlan(product, level, len(rows), len(units), files, round(sum(mpx), 3),
                       int(sum(pixels) * bytes_per_pixel(product, bands)), bands,
                       round(sum(model.seconds(m) for m in mpx), 1), round(max(mpx, default=0.0), 3))  # fmt: skip


def plan_job(levels: Sequence[Sequence[dict[str, Any]]], products: Sequence[str], bands: int,
             concurrent_tasks: int = 2, model: TaskModel | None = None,
             files_per_side: int | None = DEFAULT_FILES_PER_SIDE) -> RunPlan:  # fmt: skip
    """The plan of ``products`` over each level's cells. Export jobs make no interactive request, but for the
    per-cell imagery products (``SCENE_CHECKED``), whose cells no scene covers fail before any task: one scene
    count per 500 cells (``steps.sentinel2.SCENE_BATCH``)."""
    if not (isinstance(concurrent_tasks, int) and concurrent_tasks >= 1):
        raise InputError(f"concurrent tasks {concurrent_tasks!r}: give a whole number >= 1 (2 on Community).")
    model = model or TaskModel()
    plans = [plan_product(rows, p, bands, model, files_per_side) for rows in levels if rows for p in products]
    checks = sum(-(-len(rows) // SCENE_BATCH) for rows in levels if rows for p in products if p in SCENE_CHECKED)
    return RunPlan(plans, concurrent_tasks, model, interactive_requests=checks)


def _zone_cells(shapes: list[Any], epsg: int, size: float) -> set[tuple[int, int]]:
    """The cells of ``size`` in zone ``epsg`` whose squares meet any of ``shapes`` (lon/lat)."""
    tf = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    out: set[tuple[int, int]] = set()
    for shape in shapes:
        utm = shapely.transform(shape, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        x0, y0, x1, y1 = utm.bounds
        xs = np.arange(math.floor(x0 / size), math.floor(x1 / size) + 1)
        ys = np.arange(math.floor(y0 / size), math.floor(y1 / size) + 1)
        gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
        boxes = shapely.box(gx * size, gy * size, (gx + 1) * size, (gy + 1) * size)
        hit = shapely.intersects(boxes, utm)
        out.update(zip(gx[hit].tolist(), gy[hit].tolist(), strict=True))
    return out


def cells_of_polygons(shapes: Iterable[Any], spec: GridSpec, negative_reach: int = 3) -> list[dict[str, Any]]:
    """The grid rows a polygon set makes at one level without an engine: positives, one negative each.

    Zones as ``steps.grid.tag_zones`` gives them (the zone of each polygon's centroid). Negatives are the
    nearest free cells within ``negative_reach`` cells (``contracts.cells.assign_negatives``; the grid step
    looks farther, so a plan may count a few negatives fewer than a grid holds).
    """
    by_zone: dict[int, list[Any]] = {}
    for shape in shapes:
        c = shape.centroid
        by_zone.setdefault(utm_epsg(c.x, c.y), []).append(shape)
    rows = []
    for epsg, shapes_in in sorted(by_zone.items()):
        positives = sorted(_zone_cells(shapes_in, epsg, spec.cell_size))
        pairs = assign_negatives(positives, set(positives), spec.cell_size, negative_reach)
        negatives = [p[0] for p in pairs if p is not None]
        for label, cells in ((1, positives), (0, negatives)):
            rows += [{"name": f"{epsg}_{spec.zoom}_{x}_{y}", "epsg": epsg, "cell_x": x, "cell_y": y,
                      "cell_size": spec.cell_size, "zoom": spec.zoom, "label": label} for x, y in cells]  # fmt: skip
    return rows

"""The pyramid: coarse-to-fine search for mines, with its cost accounted.

A run starts from the cells of a coarse grid level over a region (for example 5500 m, or 44 km for
a continent), scores every cell server-side from a one-band mine-probability image (the share of
its pixels whose probability exceeds ``pixel_threshold``, by ``Image.reduceRegions`` at a coarse
``scale``: one number per cell, cheap), keeps the cells whose score reaches the level's threshold,
splits each kept cell into its 4 children (the grid's nesting: cells of size ``s`` on the UTM grid
whose origin is the projection's origin split exactly into cells of ``s/2``), and repeats. The cells
that survive the finest level go to a detector (:class:`~gee_mining.pyramid.detectors.Detector`:
YOLO on exported patches, or the documented pixel-model detector). Dropped cells are never looked
at again: every cell inside a dropped cell stays negative.

Thresholds come from :func:`calibrate`: on a region whose mines are known, it runs the same
levels and picks each level's threshold as high as it can while the level keeps a target share of
the known mines still alive (a mine is alive at a level while some evaluated cell that touches it is
kept). Everything the run costs is counted per level (:class:`LevelStats`) and compared with an
exhaustive run of the same detector on every finest-level cell (:func:`exhaustive_cells`).

Server-side graphs use only Earth Engine algorithms (``reduceRegions``, ``Reducer.mean``/``count``,
``Image.gt``, ``FeatureCollection.filterBounds``...); cell indices, splitting and bookkeeping are
small pure functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely

from gee_mining.batch.batches import plan_batches
from gee_mining.batch.exports import ExportSpec
from gee_mining.batch.tasks import run_tasks, succeeded
from gee_mining.connection import open_bucket
from gee_mining.contracts.cells import GridSpec, cell_index, cell_row, check_nesting, child_indices
from gee_mining.errors import GeeMiningError, InputError
from gee_mining.io.pages import iter_features
from gee_mining.pyramid import cellmodel
from gee_mining.pyramid.cellmodel import CellModel, CellModelSpec
from gee_mining.steps.grid import ee_cell_geometry, keyed_cells

MAX_ERROR_M = 1.0
PAGE_CELLS = 500  # cells per interactive scoring request: its graph, its work and its answer do not grow with a run
SCORE_BATCH_CELLS = 8000  # cells per scoring export task (batch.batches: a request near 4 MB of 10)


# -- specs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IslandScore:
    """A cell score that also counts small isolated blobs of mine pixels: ``max(share, weight * island share)``.

    ``share`` is the plain score (the share of the cell's pixels whose probability exceeds the pixel threshold); the
    island share is the share of its pixels that are such hits *and* whose square neighbourhood of ``radius_m``
    metres holds less than ``below`` hits. Why: a 0.005-0.05 km2 pit is 1-4 % of a 343.75 m cell, so its share is
    below that of mine-free cells with natural bare soil or rock, which covers whole neighbourhoods; as an island it
    counts ``weight`` times. On one fold of SIMULATED validation worlds the fine level kept 0.97 of the mines on 4.0x
    fewer fine cells with it, 0.94 on 3.1x without; on fresh validation worlds the gain did not hold up (0.973 at
    4.1x against the plain share's 0.982 at 3.5x), so it is off by default (docs/pyramid.md). Server-side: ``Image.reduceNeighborhood`` and one
    ``reduceRegions`` of two bands."""

    weight: float = 10.0
    radius_m: float = 150.0
    below: float = 0.3

    def __post_init__(self) -> None:
        if not (self.weight > 0 and self.radius_m > 0 and 0 < self.below <= 1):
            raise InputError(f"island score {self}: weight > 0, radius_m > 0 (metres) and below in (0, 1].")


@dataclass(frozen=True)
class PyramidSpec:
    """The levels (coarse to fine, each half the previous), how each is scored, and the kept-cell thresholds.

    ``scales``: metres per pixel at which each level's score is computed (default: cell size / 64, at
    least 10 m: 86 m for 5500 m cells, 21 m for 1375 m). ``pixel_threshold``: a pixel counts as mine
    when its probability exceeds it. ``thresholds``: per level, the least score (share of mine pixels,
    0..1) a cell needs to be kept; ``None`` keeps every cell of that level (no screening there). ``islands``: per
    level, an :class:`IslandScore` (small isolated blobs count more) or None. ``cell_model``: the last level's score
    is a learned classifier's probability (:mod:`gee_mining.pyramid.cellmodel`): a ``CellModelSpec`` that
    :func:`~gee_mining.pyramid.calibration.calibrate_worlds` trains, or the trained ``CellModel`` a run uses. The
    detector runs on the cells kept at the last level.
    """

    levels: tuple[GridSpec, ...]
    scales: tuple[float, ...] = ()
    pixel_threshold: float = 0.5
    thresholds: tuple[float | None, ...] = ()
    islands: tuple[IslandScore | None, ...] = ()  # per level: the island score, or None (the plain share)
    cell_model: CellModelSpec | CellModel | None = None  # the last level's learned score, or None (the share)

    def __post_init__(self) -> None:
        levels = tuple(self.levels)
        if not levels:
            raise InputError("a pyramid needs at least one grid level, e.g. 5500,2750,1375.")
        check_nesting(levels)
        object.__setattr__(self, "levels", levels)
        scales = tuple(float(s) for s in self.scales) or tuple(max(10.0, lv.cell_size / 64) for lv in levels)
        if len(scales) != len(levels) or not all(s > 0 for s in scales):
            raise InputError(f"scales {self.scales}: give one positive scale (metres) per level ({len(levels)}).")
        object.__setattr__(self, "scales", scales)
        thresholds = tuple(self.thresholds) or (None,) * len(levels)
        if len(thresholds) != len(levels):
            raise InputError(f"thresholds {self.thresholds}: give one per level ({len(levels)}), None to keep all.")
        for t in thresholds:
            if t is not None and not 0 <= t <= 1:
                raise InputError(f"threshold {t}: a cell's score is a share of pixels, 0..1.")
        object.__setattr__(self, "thresholds", thresholds)
        islands = tuple(self.islands) or (None,) * len(levels)
        if len(islands) != len(levels) or not all(i is None or isinstance(i, IslandScore) for i in islands):
            raise InputError(f"islands {self.islands}: one IslandScore or None per level ({len(levels)}).")
        object.__setattr__(self, "islands", islands)
        if not 0 <= self.pixel_threshold < 1:
            raise InputError(f"pixel_threshold {self.pixel_threshold}: a probability in 0..1.")
        if self.cell_model is not None and not isinstance(self.cell_model, (CellModelSpec, CellModel)):
            raise InputError(f"cell_model {self.cell_model!r}: a CellModelSpec (to train) or a trained CellModel.")
        if self.cell_model is not None and islands[-1] is not None:
            raise InputError("the last level has both an island score and a cell model: give one of them.")

    @classmethod
    def of(cls, sizes: Iterable[float], zooms: Iterable[int] | None = None, **kwargs: Any) -> PyramidSpec:
        """A spec from cell sizes (``[5500, 2750, 1375]``); sizes outside 5500/2750/1375 need ``zooms``."""
        sizes = [float(s) for s in sizes]
        zooms = list(zooms) if zooms is not None else [None] * len(sizes)
        if len(zooms) != len(sizes):
            raise InputError(f"zooms {zooms}: give one zoom label per level ({len(sizes)}).")
        return cls(tuple(GridSpec.of(s, z) for s, z in zip(sizes, zooms, strict=True)), **kwargs)

    def with_thresholds(self, thresholds: Sequence[float | None]) -> PyramidSpec:

        return dataclasses.replace(self, thresholds=tuple(thresholds))


# -- cells (pure) ----------------------------------------------------------------------------------


def children(row: dict[str, Any], child: GridSpec) -> list[dict[str, Any]]:
    """The 4 cells of the next finer level inside ``row``'s cell (the grid's nesting)."""
    return [cell_row(row["epsg"], x, y, child) for x, y in child_indices(row["cell_x"], row["cell_y"])]


def descendants(rows: Iterable[dict[str, Any]], levels: Sequence[GridSpec]) -> list[dict[str, Any]]:
    """Every cell of ``levels[-1]`` inside ``rows`` (cells of ``levels[0]``)."""
    out = list(rows)
    for spec in levels[1:]:
        out = [c for r in out for c in children(r, spec)]
    return out


def start_cells(ee, region, spec: GridSpec, epsg: int, inside: bool = True) -> list[dict[str, Any]]:
    """The cells of ``spec`` in zone ``epsg`` over ``region`` (an ``ee.Geometry``), server-side
    (``Geometry.coveringGrid``), read back in pages; with ``inside``, only the cells the region contains
    whole."""
    proj = ee.Projection(f"EPSG:{epsg}")
    cells = region.coveringGrid(proj.atScale(spec.cell_size))
    if inside:
        cells = cells.map(lambda c: c.set("inside", region.contains(c.geometry(), MAX_ERROR_M, proj))).filter(
            ee.Filter.eq("inside", True)
        )
    # Paged: a continent's coarse cells are more than one interactive answer may hold (5,000 elements).
    keys = [f["properties"]["cell"] for f in iter_features(keyed_cells(ee, cells, proj, spec.cell_size), 5000)]
    out = [cell_row(epsg, *cell_index(key), spec) for key in keys]
    if not out:
        raise InputError(f"the region holds no whole {spec.cell_size:g} m cell in EPSG:{epsg}: give a larger region.")
    return sorted(out, key=lambda r: (-r["cell_y"], r["cell_x"]))


# -- server-side scoring ---------------------------------------------------------------------------


def score_collection(ee, probability, rows: Sequence[dict[str, Any]], scale: float, pixel_threshold: float,
                     polygons=None, id_column: str = "id", island: IslandScore | None = None):  # fmt: skip
    """The graph of one batch: each cell (same zone) with ``score`` (share of unmasked pixels whose probability
    exceeds ``pixel_threshold``, at ``scale`` metres in the cell's zone; with ``island``, :class:`IslandScore`'s
    score) and ``pixels`` (how many pixels that share is of); with ``polygons``, also ``mines``: the ids of the
    known polygons the cell touches."""

    epsg = rows[0]["epsg"]
    fc = ee.FeatureCollection([ee.Feature(ee_cell_geometry(ee, r), {"name": r["name"]}) for r in rows])
    hits = ee.Image(probability).gt(pixel_threshold).rename("hit")
    reducer = ee.Reducer.mean().combine(ee.Reducer.count(), sharedInputs=True)
    if island is None:
        scored = hits.reduceRegions(collection=fc, reducer=reducer, scale=scale, crs=f"EPSG:{epsg}")
    else:
        scored = _island_scores(ee, hits, fc, reducer, scale, epsg, island)
    if polygons is not None:
        known = ee.FeatureCollection(polygons)
        scored = scored.map(lambda c: c.set("mines", known.filterBounds(c.geometry()).aggregate_array(id_column)))
    return scored


def score_cells(ee, probability, rows: Sequence[dict[str, Any]], scale: float, pixel_threshold: float,
                polygons=None, id_column: str = "id", export_to: str | None = None,
                progress: Callable[[str], None] | None = None,
                island: IslandScore | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """``{cell name: {"score", "pixels", "mines"}}`` for ``rows``, computed server-side.

    Interactive by default, for small runs: one request per page of at most ``PAGE_CELLS`` cells of one zone,
    so no request (its graph, its ``reduceRegions`` work, its answer) grows with the run. A page the engine
    refuses as too long ("Computation timed out.": Earth Engine's 5-minute interactive bound) is scored again as
    two half pages, down to one cell (:func:`_score_page`). With ``export_to``
    (``gs://BUCKET/PREFIX``), the path of a global run: :func:`export_scores`, one batch task per
    ``SCORE_BATCH_CELLS`` cells, read back from storage."""
    if export_to is not None:
        return export_scores(ee, probability, rows, scale, pixel_threshold, export_to, polygons, id_column, progress,
                             island)  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    by_zone: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_zone.setdefault(r["epsg"], []).append(r)
    for zone_rows in by_zone.values():
        for i in range(0, len(zone_rows), PAGE_CELLS):
            page = zone_rows[i : i + PAGE_CELLS]
            out.update(_score_page(ee, probability, page, scale, pixel_threshold, polygons, id_column, progress,
                                    island))  # fmt: skip
    return _all_scored(rows, out)


def _score_page(ee, probability, page: Sequence[dict[str, Any]], scale: float, pixel_threshold: float, polygons,
                id_column: str, progress: Callable[[str], None] | None,
                island: IslandScore | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """One page's scores; a page refused as "Computation timed out." is scored as two halves (a slow engine, or
    a heavy probability image, costs more requests, not the run). One cell that still times out is an error
    naming the cell and the way out."""
    try:
        fc = score_collection(ee, probability, page, scale, pixel_threshold, polygons, id_column, island)
        return {f["properties"]["name"]: _score(f["properties"]) for f in iter_features(fc, page_size=len(page))}
    except ee.EEException as exc:
        if "Computation timed out" not in str(exc):
            raise
        if len(page) == 1:
            raise GeeMiningError(
                f"scoring cell {page[0]['name']} alone timed out on the engine ({exc}); score at a coarser scale "
                "(PyramidSpec.scales, --scales) or by batch export (export_to=gs://BUCKET/PREFIX)."
            ) from exc
        half = len(page) // 2
        if progress:
            progress(f"[pyramid] a request of {len(page)} cells timed out: scoring them as {half} + {len(page) - half}")
        scores = _score_page(
            ee, probability, page[:half], scale, pixel_threshold, polygons, id_column, progress, island
        )
        return scores | _score_page(ee, probability, page[half:], scale, pixel_threshold, polygons, id_column,
                                    progress, island)  # fmt: skip


def _island_scores(ee, hits, fc, reducer, scale: float, epsg: int, island: IslandScore):
    """Each cell's ``mean`` = max(share of hits, weight * share of island hits) and ``count`` (pixels), server-side."""
    around = hits.reduceNeighborhood(ee.Reducer.mean(), ee.Kernel.square(island.radius_m, "meters"))
    isolated = hits.And(around.lt(island.below)).rename("island")
    scored = hits.addBands(isolated).reduceRegions(collection=fc, reducer=reducer, scale=scale, crs=f"EPSG:{epsg}")

    def combine(cell):
        d = cell.toDictionary()
        share, isl = ee.Number(d.get("hit_mean", 0)), ee.Number(d.get("island_mean", 0))
        return cell.set({"mean": share.max(isl.multiply(island.weight)), "count": d.get("hit_count", 0)})

    return scored.map(combine)


def _score(p: dict[str, Any]) -> dict[str, Any]:
    return {"score": float(p.get("mean") or 0.0), "pixels": int(p.get("count") or 0),
            "mines": [str(m) for m in p.get("mines") or []]}  # fmt: skip


def _all_scored(rows: Sequence[dict[str, Any]], out: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    missing = [r["name"] for r in rows if r["name"] not in out]
    if missing:
        raise GeeMiningError(f"the engine returned no score for {len(missing)} cell(s), e.g. {missing[0]}")
    return out


def export_scores(ee, probability, rows: Sequence[dict[str, Any]], scale: float, pixel_threshold: float,
                  destination: str, polygons=None, id_column: str = "id",
                  progress: Callable[[str], None] | None = None,
                  island: IslandScore | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """:func:`score_cells` by batch export: the cells grouped as the batched products group them
    (``batch.batches.plan_batches``: one zone and level, a compact block, at most ``SCORE_BATCH_CELLS``), each
    group's :func:`score_collection` exported as one GeoJSON table (``Export.table.toCloudStorage``) to
    ``destination/scores-<batch>-<digest of its cells>.geojson`` and read back from storage. Tasks: one per
    batch (a few per zone and level); interactive requests: none."""
    dest = ExportSpec(destination)
    batches = plan_batches(rows, max_cells=SCORE_BATCH_CELLS)
    names, tasks = [], []
    for b in batches:
        digest = hashlib.sha256(",".join(c["name"] for c in b.cells).encode()).hexdigest()[:10]
        name = f"{dest.prefix.rstrip('/')}/scores-{b.name}-{digest}".lstrip("/")
        fc = score_collection(ee, probability, b.cells, scale, pixel_threshold, polygons, id_column, island)
        tasks.append(ee.batch.Export.table.toCloudStorage(fc, f"scores-{b.name}-{digest}"[:100], bucket=dest.bucket,
                                                          fileNamePrefix=name, fileFormat="GeoJSON"))  # fmt: skip
        names.append(f"{name}.geojson")
    if progress:
        progress(f"[pyramid] scoring {len(rows)} cells in {len(tasks)} export task(s) -> {destination}")
    statuses = run_tasks(tasks, progress=progress)
    failed = [f"{b.name}: {st.get('error_message', st['state'])}" for b, st in zip(batches, statuses, strict=True)
              if not succeeded(st)]  # fmt: skip
    if failed:
        raise GeeMiningError("score export failed: " + "; ".join(failed))
    bucket = open_bucket(dest.bucket)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        for f in json.loads(bucket.read(name))["features"]:
            out[f["properties"]["name"]] = _score(f["properties"])
    return _all_scored(rows, out)


# -- results ---------------------------------------------------------------------------------------


@dataclass
class LevelStats:
    """What one level cost and kept."""

    zoom: int
    cell_size: float
    scale: float
    threshold: float | None
    cells_evaluated: int
    cells_kept: int
    pixels: int  # pixels scored server-side (unmasked, at ``scale``)
    positives_evaluated: int = 0  # cells touching a known mine (labelled runs)
    positives_kept: int = 0
    mines_alive: int = 0  # known mines touched by a kept cell
    mines_dropped: list[str] = field(default_factory=list)  # known mines no kept cell touches any more


@dataclass
class DetectorCost:
    """What a detector run on a set of finest-level cells cost."""

    cells: int
    patches_exported: int
    patches_seen: int
    pixels: int  # pixels of the exported patches (server-side)
    bytes_exported: int
    seconds: float = 0.0


@dataclass
class PyramidResult:
    """A run: per-level statistics, the kept and dropped cells of each level, and the detector's output."""

    spec: PyramidSpec
    levels: list[LevelStats]
    kept: list[list[dict[str, Any]]]  # per level, kept cells (rows with their score)
    dropped: list[list[dict[str, Any]]]  # per level, dropped cells
    detections: list[Any] = field(default_factory=list)
    detector: DetectorCost | None = None
    known_mines: list[str] = field(default_factory=list)
    detected_mines: list[str] = field(default_factory=list)

    @property
    def fine_cells(self) -> list[dict[str, Any]]:
        return self.kept[-1]

    @property
    def recall(self) -> float | None:
        """Share of the known mines a detection touches (None when no mines are known)."""
        if not self.known_mines:
            return None
        return len(self.detected_mines) / len(self.known_mines)

    def dropped_at(self) -> dict[str, int]:
        """Known mine id -> the zoom of the level that dropped it."""
        return {m: lv.zoom for lv in self.levels for m in lv.mines_dropped}

    def cost_rows(self) -> list[dict[str, Any]]:
        rows = [
            {
                "stage": f"screen z{lv.zoom} ({lv.cell_size:g} m at {lv.scale:g} m/px)",
                "threshold": lv.threshold,
                "cells evaluated": lv.cells_evaluated,
                "cells kept": lv.cells_kept,
                "pixels server-side": lv.pixels,
                "patches exported": 0,
                "patches seen by detector": 0,
                "known mines alive": lv.mines_alive,
            }
            for lv in self.levels
        ]
        if self.detector is not None:
            rows.append(detector_row("detector", self.detector, len(self.detected_mines)))
        return rows


def detector_row(stage: str, cost: DetectorCost, mines: int) -> dict[str, Any]:
    return {
        "stage": stage,
        "threshold": None,
        "cells evaluated": cost.cells,
        "cells kept": None,
        "pixels server-side": cost.pixels,
        "patches exported": cost.patches_exported,
        "patches seen by detector": cost.patches_seen,
        "known mines alive": mines,
    }


# -- the search -------------------------------------------------------------------------------------


def _choose_threshold(best: dict[str, float], target: float) -> tuple[float, list[str]]:
    """The highest threshold that keeps at least ``target`` of the mines (by each mine's best cell score).

    A mine whose best score is 0 cannot be kept by any positive threshold; such mines are the first
    dropped, and the threshold never goes to 0 (which would keep every cell)."""
    if not best:
        return 1.0, []
    scores = sorted(best.values(), reverse=True)
    k = max(1, math.ceil(target * len(scores) - 1e-9))
    t = scores[k - 1]
    if t <= 0:
        positive = [s for s in scores if s > 0]
        t = min(positive) if positive else 1.0
    return t, sorted(m for m, s in best.items() if s < t)


def _level_target(
    spec: PyramidSpec, cells: Sequence[dict[str, Any]], labelled: bool, calibrate_to: float | None
) -> float | None:
    """Check a run's start cells and calibration target; each level's share of the mines still alive to keep
    (the target's ``1 / levels`` power), or None without calibration."""
    if not cells:
        raise InputError("no cells to start from: give the region's cells of the first level (start_cells).")
    sizes = {float(r["cell_size"]) for r in cells}
    if sizes != {spec.levels[0].cell_size}:
        raise InputError(f"start cells of {sorted(sizes)} m: the first level is {spec.levels[0].cell_size:g} m.")
    if calibrate_to is None:
        return None
    if not labelled:
        raise InputError("calibration needs the known mine polygons (polygons=...).")
    if not 0 < calibrate_to <= 1:
        raise InputError(f"target recall {calibrate_to}: a share in (0, 1].")
    return calibrate_to ** (1 / len(spec.levels))


def _calibrated_threshold(current: Sequence[dict[str, Any]], alive: set[str], target: float) -> float | None:
    """The level's threshold that keeps ``target`` of the mines still alive, each by its best-scoring cell."""
    best = {m: 0.0 for m in alive}
    for r in current:
        for m in r["mines"]:
            if m in best:
                best[m] = max(best[m], r["score"])
    threshold, _ = _choose_threshold(best, target)
    return threshold


def _count_mines(
    stats: LevelStats, current: Sequence[dict[str, Any]], kept: Sequence[dict[str, Any]], alive: set[str]
) -> set[str]:
    """Fill a labelled level's mine counts in ``stats``; the mines still alive after it."""
    stats.positives_evaluated = sum(bool(r["mines"]) for r in current)
    stats.positives_kept = sum(bool(r["mines"]) for r in kept)
    still = {m for r in kept for m in r["mines"]} & alive
    stats.mines_dropped = sorted(alive - still)
    stats.mines_alive = len(still)
    return still


def run_levels(
    ee,
    probability,
    spec: PyramidSpec,
    cells: Sequence[dict[str, Any]],
    polygons=None,
    id_column: str = "id",
    calibrate_to: float | None = None,
    progress: Callable[[str], None] | None = None,
    export_to: str | None = None,
    context=None,
) -> PyramidResult:
    """Screen ``cells`` (of ``spec.levels[0]``) level by level; with ``calibrate_to``, choose each level's threshold
    on the known ``polygons`` so the level keeps that share of the mines still alive (see :func:`calibrate`).
    With ``export_to`` (``gs://BUCKET/PREFIX``), each level's scores are batch exports (:func:`export_scores`)
    under ``PREFIX/z<zoom>``: a global run's path; without it, interactive pages of ``PAGE_CELLS`` cells.
    ``context``: the world's context image, which a trained ``spec.cell_model`` reads at the last level."""
    say = progress or (lambda msg: None)
    _check_cell_model(spec, context, export_to)
    labelled = polygons is not None
    per_level_target = _level_target(spec, cells, labelled, calibrate_to)
    known: set[str] | None = None
    alive: set[str] = set()
    result = PyramidResult(spec, [], [], [])
    thresholds = list(spec.thresholds)
    current = [dict(r) for r in cells]
    for i, (level, scale) in enumerate(zip(spec.levels, spec.scales, strict=True)):
        if i > 0:
            current = [c for r in result.kept[-1] for c in children(r, level)]
        where = f"{export_to.rstrip('/')}/z{level.zoom}" if export_to else None
        scores = _level_scores(ee, probability, spec, i, current, polygons, id_column, where, progress, context)
        for r in current:
            r.update(scores[r["name"]])
        if labelled:
            touched = {m for r in current for m in r["mines"]}
            known, alive = (touched, set(touched)) if known is None else (known, alive & touched)
        if per_level_target is not None:
            thresholds[i] = _calibrated_threshold(current, alive, per_level_target)
        t = thresholds[i]
        kept = [r for r in current if t is None or r["score"] >= t]
        dropped = [r for r in current if not (t is None or r["score"] >= t)]
        stats = LevelStats(level.zoom, level.cell_size, scale, t, len(current), len(kept),
                           sum(r["pixels"] for r in current))  # fmt: skip
        if labelled:
            alive = _count_mines(stats, current, kept, alive)
        result.levels.append(stats)
        result.kept.append(kept)
        result.dropped.append(dropped)
        say(f"[pyramid] z{level.zoom} ({level.cell_size:g} m): {len(kept)}/{len(current)} cells kept (threshold {t})")
    result.spec = spec.with_thresholds(thresholds)
    result.known_mines = sorted(known or ())
    return result


def _level_scores(ee, probability, spec: PyramidSpec, i: int, rows: Sequence[dict[str, Any]], polygons,
                  id_column: str, where: str | None, progress, context) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Level ``i``'s scores of ``rows``: the trained cell model's at the last level when the spec has one, else
    the share (:func:`score_cells`)."""
    if not rows:
        return {}
    scale = spec.scales[i]
    if i + 1 == len(spec.levels) and spec.cell_model is not None:
        return cellmodel.score_rows(ee, spec.cell_model, probability, context, rows, scale, polygons, id_column)
    return score_cells(ee, probability, rows, scale, spec.pixel_threshold, polygons, id_column, where, progress,
                       spec.islands[i])  # fmt: skip


def _check_cell_model(spec: PyramidSpec, context, export_to: str | None) -> None:
    """A run with a cell model needs it trained, the world's context image, and interactive scoring."""
    if spec.cell_model is None:
        return
    if not isinstance(spec.cell_model, CellModel):
        raise InputError("the pyramid's cell model is not trained: calibrate on train worlds first (calibrate_worlds).")
    if context is None:
        raise InputError("a cell model reads the world's context image: pass context=context_image(composite, ...).")
    if export_to is not None:
        raise InputError("a cell model scores interactively only (export_to is not supported with it yet).")


def calibrate(ee, probability, spec: PyramidSpec, cells, polygons, target_recall: float = 0.98,
              id_column: str = "id", progress=None, export_to: str | None = None) -> PyramidSpec:  # fmt: skip
    """``spec`` with thresholds chosen on labelled cells: at each of the L levels, the highest score threshold
    that keeps at least ``target_recall ** (1/L)`` of the known mines still alive, so the whole pyramid keeps
    at least ``target_recall`` of them on this region (mines the model gives no signal at all are dropped
    first, and reported)."""
    return run_levels(ee, probability, spec, cells, polygons, id_column, target_recall, progress, export_to).spec


def mines_hit(detections: Sequence[Any], polygons: dict[str, Any]) -> list[str]:
    """Ids of the known mine polygons (EPSG:4326 shapely geometries) that some detection's polygon touches."""

    if not detections or not polygons:
        return []
    ids = list(polygons)
    tree = shapely.STRtree([polygons[i] for i in ids])
    hit: set[str] = set()
    for d in detections:
        for j in tree.query(d.geometry, predicate="intersects"):
            hit.add(ids[int(j)])
    return sorted(hit)


def run_pyramid(
    ee,
    probability,
    spec: PyramidSpec,
    cells: Sequence[dict[str, Any]],
    detector=None,
    polygons=None,
    id_column: str = "id",
    progress: Callable[[str], None] | None = None,
    export_to: str | None = None,
    context=None,
) -> PyramidResult:
    """Screen level by level with ``spec``'s thresholds, then run ``detector`` on the cells kept at the finest
    level. With ``polygons`` (known mines: an ee table id or FeatureCollection), count recall per level and the
    detector's recall (a mine is found when a detection touches it). ``export_to``: scores by batch export
    (:func:`run_levels`), the path of a global run."""
    if any(t is None for t in spec.thresholds[:-1]) and progress:
        progress("[pyramid] some levels have no threshold: every cell of those levels is kept (calibrate first?)")
    result = run_levels(ee, probability, spec, cells, polygons, id_column, None, progress, export_to, context)
    if detector is not None:
        run = detector.detect(ee, result.fine_cells)
        result.detections, result.detector = run.detections, run.cost
        if polygons is not None:
            result.detected_mines = mines_hit(
                run.detections, known_polygons(ee, polygons, id_column, result.known_mines)
            )
    return result


def run_exhaustive(ee, spec: PyramidSpec, cells: Sequence[dict[str, Any]], detector, polygons=None,
                   id_column: str = "id") -> PyramidResult:  # fmt: skip
    """The same detector on every finest-level cell under ``cells`` (no screening): the pyramid's reference."""
    fine = descendants(cells, spec.levels)
    run = detector.detect(ee, fine)
    result = PyramidResult(spec, [], [fine], [[]], run.detections, run.cost)
    if polygons is not None:
        touched = score_mines(ee, fine, polygons, id_column)
        result.known_mines = sorted(touched)
        result.detected_mines = mines_hit(run.detections, known_polygons(ee, polygons, id_column, result.known_mines))
    return result


def score_mines(ee, rows: Sequence[dict[str, Any]], polygons, id_column: str = "id") -> set[str]:
    """Ids of the known mines that touch any of ``rows`` (server-side ``filterBounds``)."""

    out: set[str] = set()
    for i in range(0, len(rows), PAGE_CELLS):
        cells = ee.FeatureCollection([ee.Feature(ee_cell_geometry(ee, r)) for r in rows[i : i + PAGE_CELLS]])
        ids = ee.FeatureCollection(polygons).filterBounds(cells.geometry(MAX_ERROR_M)).aggregate_array(id_column)
        out |= {str(v) for v in ids.getInfo()}
    return out


KNOWN_BLOCK = 1000  # polygon ids asked for per request: the filter and the answer stay bounded


def known_polygons(ee, polygons, id_column: str, ids: Iterable[str]) -> dict[str, Any]:
    """The known mines of ``ids`` as EPSG:4326 shapely geometries (read through ``ee``).

    The table is filtered server-side (``Filter.inList`` on ``id_column``, :data:`KNOWN_BLOCK` ids a
    request): only the wanted polygons travel, never the whole table (the Maus layer is 44,929 polygons, more
    than Earth Engine sends in one interactive answer). An id is looked for as text and, when it reads as a
    number, as that number: ids come back from the scores as text whatever the column's type."""
    want = sorted({str(i) for i in ids})
    table = ee.FeatureCollection(polygons)
    out = {}
    for start in range(0, len(want), KNOWN_BLOCK):
        chunk = want[start : start + KNOWN_BLOCK]
        for f in iter_features(table.filter(ee.Filter.inList(id_column, _as_values(chunk)))):
            key = str(f["properties"].get(id_column, f.get("id")))
            if key in want and f.get("geometry"):
                out[key] = shapely.geometry.shape(f["geometry"])
    return out


def _as_values(ids: Sequence[str]) -> list[Any]:
    """Each id as text, and as the number it reads as (an integer, else a float), if it reads as one."""
    values: list[Any] = list(ids)
    for text in ids:
        try:
            number = float(text)
        except ValueError:
            continue
        values.append(int(number) if number.is_integer() and "." not in text else number)
    return values


# -- zoom-level change --------------------------------------------------------------------------------


@dataclass
class ZoomCheck:
    """Labels of two grid levels side by side: negatives must stay negative across levels.

    ``broken``: coarse negatives holding a fine positive (must be empty: a cell called mine-free at the coarse
    level would hide a mine). ``fine_negatives_in_coarse_positives``: fine negatives inside a coarse positive
    (allowed only where chosen on purpose, e.g. hard negatives next to mines; listed so they can be checked).
    """

    coarse_zoom: int
    fine_zoom: int
    broken: list[tuple[str, str]]
    fine_negatives_in_coarse_positives: list[tuple[str, str]]

    @property
    def ok(self) -> bool:
        return not self.broken


def zoom_check(coarse, fine) -> ZoomCheck:
    """Compare two :class:`gee_mining.contracts.cells.GridTable` levels of the same polygons (``fine`` nested in ``coarse``)."""
    ratio = coarse.spec.cell_size / fine.spec.cell_size
    k = round(math.log2(ratio))
    if k < 1 or abs(2**k - ratio) > 1e-9 or coarse.spec.projection != fine.spec.projection:
        raise InputError(
            f"levels {coarse.spec.cell_size:g} m and {fine.spec.cell_size:g} m do not nest: the coarse size must be "
            "the fine size times a power of 2, on the same grid projection."
        )
    by_key = {(r["epsg"], r["cell_x"], r["cell_y"]): r for r in coarse.rows}

    def parent(r):
        return by_key.get((r["epsg"], r["cell_x"] >> k, r["cell_y"] >> k))

    broken, allowed = [], []
    for r in fine.rows:
        p = parent(r)
        if p is None:
            continue
        if r["label"] == 1 and p["label"] == 0:
            broken.append((p["name"], r["name"]))
        elif r["label"] == 0 and p["label"] == 1:
            allowed.append((p["name"], r["name"]))
    return ZoomCheck(coarse.spec.zoom, fine.spec.zoom, broken, allowed)

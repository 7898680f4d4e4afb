"""The pyramid measured out of sample: trained and calibrated on some SIMULATED worlds, reported on others.

Every figure the pyramid reports used to come from the world it was tuned on. Here each seed makes
its own world (:func:`gee_mining.pyramid.world.prepare_simulated`), placed on a square of its own
(:func:`~gee_mining.pyramid.world.seed_corner`: no two worlds share ground or a mine) and painted
from one half of the spectral library (``library_part``: the train worlds from ``"train"``, the
test worlds from ``"test"``, so no spectrum a test world shows was ever seen in training). The
screening model is fitted on a pixel sample pooled over the train worlds; the thresholds are
calibrated on the pooled mines of the train worlds with a margin
(:func:`gee_mining.pyramid.calibration.calibrate_worlds`). Both are then frozen and the pyramid runs
on each test world with the pixel-model detector at the finest level. :func:`check_disjoint`
refuses an evaluation whose train and test worlds share a seed, a mine or a spectrum.

Reported per test world and pooled: recall (a mine is found when a detection touches it) with its
95 % Clopper-Pearson interval, the screening's own recall (mines still touched by a kept fine
cell), fine cells against the exhaustive count, false alarms per 1000 km2 (kept fine cells and
boxes that touch no mine), the precision those rates would give at a realistic mine share
(``mine_share`` of the land, 0.07 % by default), and the cost (fine cells, pixels, tasks).
All of it is SIMULATED.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import ee
import pandas as pd
import shapely

from gee_mining.connection import connect
from gee_mining.contracts.bands import GREENEST_NDVI_BAND
from gee_mining.errors import InputError
from gee_mining.io.catalog import write_catalog
from gee_mining.io.files import write_json
from gee_mining.io.prepared import forget_prepared, read_prepared, refuse_links, write_prepared
from gee_mining.ml.detect.dataset import DatasetSpec
from gee_mining.pyramid.calibration import (
    Calibration,
    CalibrationWorld,
    calibrate_worlds,
    clopper_pearson,
    world_bootstrap_interval,
)
from gee_mining.pyramid.cellmodel import CellModelSpec
from gee_mining.pyramid.core import (
    IslandScore,
    PyramidResult,
    PyramidSpec,
    descendants,
    known_polygons,
    run_exhaustive,
    run_pyramid,
    start_cells,
)
from gee_mining.pyramid.detectors import PixelModelDetector, YoloDetector
from gee_mining.pyramid.probability import (
    FEATURE_INDICES,
    fit_forest,
    fit_logistic,
    mine_strata,
    probability_image,
    sample_context,
    sample_hard_negatives,
    sample_pixels,
)
from gee_mining.pyramid.world import SimulatedPyramid, prepare_simulated, seed_corner
from gee_mining.steps.context import context_image, context_names
from gee_mining.steps.indices import add_indices
from gee_mining.world.manifest import WorldManifest, generator_digest
from gee_mining.world.realism import REALISMS
from gee_mining.world.scenes import check_extra_months

MODEL_FILE = "yolo_model.json"  # written by `evaluate yolo`: the weights, their dataset spec and the seeds they saw
SCREENINGS = ("forest", "logistic")  # the screening models fit_screening can fit
# A coarse level whose calibrated threshold would drop less than a quarter of the train cells is not screened: on the
# hard worlds the 2750 m level kept 42 of 48 train cells and dropped 48 of 305 held-out mines, whole clusters of pits
# in one cell (issue 25; docs/pyramid.md, "Where the held-out mines are lost").
MIN_PRUNE = 0.25
SIZE_BINS_KM2 = (0.05, 0.2, 1.0)  # recall is also reported for mines below 0.05 km2, 0.05-0.2, 0.2-1, above 1


@dataclass(frozen=True)
class WorldsSpec:
    """The SIMULATED worlds an evaluation builds (:func:`prepare_worlds`: one square world per seed): the seeds it
    trains on and those it holds out, and each world's size, mine clusters, months of scenes and difficulty. Every
    evaluation's spec is one (``EvaluationSpec``, ``HeldoutSpec``, ``YoloEvaluationSpec``), so a folder of worlds
    serves them all."""

    train_seeds: tuple[int, ...]
    test_seeds: tuple[int, ...]
    size_km: float = 11.04
    clusters: int = 4
    months: int = 1
    realism: str = "hard"  # the worlds' difficulty (gee_mining.world.realism): "hard" (default) or "easy"
    workers: int = 1  # processes that build worlds side by side
    seasons: tuple[int, ...] = ()  # later months with scenes too (e.g. (6,)): the composite gains the greenest NDVI

    def __post_init__(self) -> None:
        train, test = tuple(int(s) for s in self.train_seeds), tuple(int(s) for s in self.test_seeds)
        if not train or not test:
            raise InputError(
                "give at least one train seed and one test seed, e.g. --train-seeds 1,2,3 --test-seeds 4,5"
            )
        shared = sorted(set(train) & set(test))
        if shared:
            raise InputError(f"seed(s) {shared} are both train and test: a world is used for one or the other.")
        if any(s < 0 for s in train + test) or len(set(train)) < len(train) or len(set(test)) < len(test):
            raise InputError(f"seeds {train} / {test}: distinct seeds, 0 or more.")
        if self.realism not in REALISMS:
            raise InputError(f"realism {self.realism!r}: one of {', '.join(REALISMS)}.")
        object.__setattr__(self, "seasons", tuple(check_extra_months(self.months, self.seasons)))
        object.__setattr__(self, "train_seeds", train)
        object.__setattr__(self, "test_seeds", test)


@dataclass(frozen=True)
class EvaluationSpec(WorldsSpec):
    """What the pyramid's evaluation builds and how it tunes: the worlds, levels, calibration target and margin."""

    levels: tuple[float, ...] = (2750, 1375, 687.5, 343.75)
    zooms: tuple[int, ...] = (15, 16, 17, 18)
    scales: tuple[float, ...] = ()  # metres per pixel each level is scored at; () = PyramidSpec's default (cell / 64)
    target_recall: float = 0.98
    margin: float | None = None  # a fixed factor on each threshold, or None: chosen across the train worlds
    min_prune: float = MIN_PRUNE  # a coarse level whose threshold drops less than this share of cells keeps them all
    pixels: int = 1000  # sampled pixels per class per train world
    mine_strata_km2: tuple[float, ...] = ()  # mine pixels drawn equally by mine size class (probability.sample_context)
    hard_negatives: int = 0  # > 0: a second forest, with this many of the first one's mine-free flagged pixels a world
    mine_share: float = 0.0007  # a realistic share of land that is mine, for precision
    confidence: float = 0.95
    exhaustive: bool = False  # also run the detector on every fine cell (slow: the reference recall)
    detector: str = "pixel"  # the fine level's detector: "pixel" (the pixel model in boxes) or "yolo"
    weights: str | None = None  # with detector "yolo": weights an `evaluate yolo` run trained (yolo_model.json)
    screening: str = "forest"  # the screening model: "forest" (context features) or "logistic" (the pixel alone)
    use_seasons: bool = True  # False: worlds with seasons screened without the greenest NDVI (the paired baseline)
    island_weight: float = 0.0  # > 0: the two finest levels score max(share, weight * island share) (IslandScore)
    cell_model: bool = False  # True: the finest level's score is a learned cell classifier (pyramid.cellmodel)
    cell_keep: float | None = None  # with cell_model: CellModelSpec.keep (None: its default, 0.98)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.margin is None and len(self.train_seeds) < 2:
            raise InputError(
                f"a cross-world margin needs at least two train worlds (got {list(self.train_seeds)}): add train "
                "seeds, or give a fixed margin, e.g. --margin 0.5."
            )
        if not 0 <= self.min_prune < 1:
            raise InputError(
                f"min_prune {self.min_prune}: a share of cells in [0, 1), e.g. 0.25 (0 screens every level)."
            )
        if mine_strata(self.mine_strata_km2) and self.screening != "forest":
            raise InputError("--mine-strata draws the forest's pixel sample: use it with --screening forest.")
        if self.hard_negatives < 0 or (self.hard_negatives and self.screening != "forest"):
            raise InputError(f"hard_negatives {self.hard_negatives} (--hard-negatives): 0, or pixels a train world "
                             "for a second forest (with --screening forest), e.g. 1000.")  # fmt: skip
        if self.island_weight < 0:
            raise InputError(f"island_weight {self.island_weight}: 0 (the plain share) or a positive weight, e.g. 10.")
        if self.cell_keep is not None and not (self.cell_model and 0 < self.cell_keep <= 1):
            raise InputError(f"cell_keep {self.cell_keep} (--cell-keep): a share of train mines in (0, 1], e.g. 0.99, "
                             "and only with the cell model (--cell-model).")  # fmt: skip
        if self.cell_model and self.screening != "forest":
            raise InputError("a cell model reads the forest's context image: use --screening forest with it.")
        if self.screening not in SCREENINGS:
            raise InputError(f"screening {self.screening!r}: one of {', '.join(SCREENINGS)}.")
        if not 0 < self.mine_share < 1:
            raise InputError(f"mine_share {self.mine_share}: a share of land in (0, 1), e.g. 0.0007.")
        if self.detector not in ("pixel", "yolo") or (self.detector == "yolo") != bool(self.weights):
            raise InputError(f"detector {self.detector!r} / weights {self.weights!r}: pixel (no weights), or yolo with "
                             "the weights of an `evaluate yolo` run (--detector yolo --weights OUT/yolo_model.json).")  # fmt: skip
        self.pyramid_spec()  # validates the levels

    def pyramid_spec(self) -> PyramidSpec:
        """The levels, their scales and, with ``island_weight``, the :class:`IslandScore` of the two finest levels
        (scored at about 10 m and finer, where a small pit is tens of pixels)."""
        islands: tuple[IslandScore | None, ...] = ()
        if self.island_weight:
            n = len(self.levels)
            islands = tuple(IslandScore(self.island_weight) if i >= n - 2 else None for i in range(n))
        if self.cell_model and islands:
            islands = islands[:-1] + (None,)  # the cell model reads the island share itself
        keep = {} if self.cell_keep is None else {"keep": self.cell_keep}
        cell = CellModelSpec(**keep) if self.cell_model else None
        return PyramidSpec.of(self.levels, self.zooms, scales=tuple(self.scales), islands=islands, cell_model=cell)


@dataclass
class WorldResult:
    """One held-out world: its mines, what the pyramid found and kept, and what it cost. SIMULATED."""

    seed: int
    mines: int
    detected: int
    recall: float | None
    recall_ci_low: float | None
    recall_ci_high: float | None
    screening_recall: float | None  # mines a kept fine cell still touches
    fine_cells: int
    exhaustive_fine_cells: int
    area_km2: float
    mine_area_km2: float
    false_alarm_cells: int  # kept fine cells that touch no mine
    boxes: int
    false_alarm_boxes: int  # boxes that touch no mine
    pixels_screening: int
    pixels_detector: int
    tasks: int  # Earth Engine batch tasks (the composite's export)
    patches: int  # fine cells whose probability image was fetched
    mine_areas_km2: dict[str, float] = field(default_factory=dict)
    detected_ids: list[str] = field(default_factory=list)
    alive_ids: list[str] = field(default_factory=list)
    exhaustive_recall: float | None = None
    seconds: float = 0.0
    lost: list[dict[str, Any]] = field(default_factory=list)  # each missed mine: where it was lost (lost_mines)

    def as_json(self) -> dict[str, Any]:
        out = {"SIMULATED": True, **asdict(self)}
        out.update(rates(self.area_km2, self.mine_area_km2, self.false_alarm_cells, self.false_alarm_boxes,
                         self.boxes - self.false_alarm_boxes))  # fmt: skip
        out["recall_by_size"] = recall_by_size([self])
        for k in ("mine_areas_km2", "detected_ids", "alive_ids"):
            out.pop(k)
        return out


def rates(area_km2: float, mine_km2: float, fa_cells: int, fa_boxes: int, true_boxes: int,
          mine_share: float = 0.0007) -> dict[str, Any]:  # fmt: skip
    """False alarms per 1000 km2 of mine-free land, and the precision of the boxes at ``mine_share``: true boxes
    scale with the mined area (``true_boxes / mine_km2`` per mined km2), false ones with the mine-free area."""
    free = max(area_km2 - mine_km2, 1e-9)
    fa_box_rate = fa_boxes / free  # per km2
    true_rate = true_boxes / mine_km2 if mine_km2 > 0 else 0.0  # per mined km2
    t, f = true_rate * mine_share, fa_box_rate * (1 - mine_share)
    return {
        "false_alarm_cells_per_1000km2": 1000 * fa_cells / free,
        "false_alarms_per_1000km2": 1000 * fa_box_rate,
        "precision_at_mine_share": t / (t + f) if t + f > 0 else None,
        "mine_share": mine_share,
    }


def fine_cell_ratio_at_share(fine: int, fa_cells: int, exhaustive: int, area_km2: float, mine_km2: float,
                             mine_share: float = 0.0007) -> float | None:  # fmt: skip
    """Exhaustive over kept fine cells on land where mines cover ``mine_share``, as :func:`rates` scales precision:
    kept cells that touch no mine scale with the mine-free area, kept cells that touch one with the mined area,
    exhaustive cells with the land. The worlds are mine-dense (a few % of their area, so that they hold enough
    mines); real land is not, and there the ratio is set by the false alarms."""
    free = max(area_km2 - mine_km2, 1e-9)
    true_rate = (fine - fa_cells) / mine_km2 if mine_km2 > 0 else 0.0
    kept = fa_cells / free * (1 - mine_share) + true_rate * mine_share  # per km2
    return (exhaustive / area_km2) / kept if kept > 0 and area_km2 > 0 else None


def recall_by_size(worlds: Sequence[WorldResult]) -> list[dict[str, Any]]:
    """Recall per mine-area bin (``SIZE_BINS_KM2``), with its interval."""
    edges = (0.0, *SIZE_BINS_KM2, float("inf"))
    out = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        ids = [(w.seed, m) for w in worlds for m, a in w.mine_areas_km2.items() if lo <= a < hi]
        found = sum(m in set(w.detected_ids) for w in worlds for s, m in ids if s == w.seed)
        low, high = clopper_pearson(found, len(ids)) if ids else (None, None)
        out.append({"area_km2": [lo, hi if hi != float("inf") else None], "mines": len(ids), "detected": found,
                    "recall": found / len(ids) if ids else None, "recall_ci_low": low, "recall_ci_high": high})  # fmt: skip
    return out


# -- worlds ----------------------------------------------------------------------------------------


def _prepare(args: tuple) -> SimulatedPyramid:
    """One seed's world, or the one already prepared in its folder with the same parameters (``prepared.json``,
    written last: worlds are deterministic, so a rerun reuses them; the key holds the generator's
    source digest, so a world of older generator code is rebuilt)."""
    out, seed, part, spec = args
    key = {"seed": seed, "library_part": part, "size_km": spec.size_km, "clusters": spec.clusters,
           "months": spec.months, "realism": REALISMS[spec.realism].as_json(), "generator": generator_digest()}  # fmt: skip
    if spec.seasons:  # only then: the key of a world without extra months stays as it was
        key["extra_months"] = list(spec.seasons)
    saved = read_prepared(out, key)
    if saved is not None:
        world = WorldManifest.read(Path(out) / "world" / "manifest.json")
        world.out_dir, world.catalog = str(Path(out) / "world"), str(Path(out) / "world" / "catalog.toml")
        return SimulatedPyramid(world, saved["epsg"], tuple(saved["bounds"]), saved["composite_id"],
                                saved["mines_id"], Path(out) / "catalog_pyramid.toml")  # fmt: skip
    forget_prepared(out)
    sim = prepare_simulated(
        out, None, size_km=spec.size_km, clusters=spec.clusters, months=spec.months, seed=seed,
        project=f"gee-mining-eval-{seed}", corner=seed_corner(seed, spec.size_km), library_part=part,
        realism=spec.realism, extra_months=spec.seasons,
    )  # fmt: skip
    write_prepared(out, key, {"epsg": sim.epsg, "bounds": list(sim.bounds), "composite_id": sim.composite_id,
                              "mines_id": sim.mines_id})  # fmt: skip
    return sim


def prepare_worlds(out: Path, spec: WorldsSpec, say: Callable[[str], None]) -> dict[int, SimulatedPyramid]:
    """Each seed's world (train worlds from the library's ``train`` half, test worlds from its ``test`` half), then
    ``ee`` connected to one catalog that serves every world's composite and mines under its own project. A seed
    folder that is or holds a link is refused before any world is built (it would be rebuilt in another run's)."""
    jobs = [(out / f"seed_{s}", s, "train", spec) for s in spec.train_seeds]
    jobs += [(out / f"seed_{s}", s, "test", spec) for s in spec.test_seeds]
    for job in jobs:
        refuse_links(job[0])
    t0 = time.perf_counter()
    if spec.workers > 1:
        with ProcessPoolExecutor(spec.workers, mp_context=get_context("spawn")) as pool:
            sims = list(pool.map(_prepare, jobs))
    else:
        sims = []
        for job in jobs:
            sims.append(_prepare(job))
            say(f"[evaluate] world of seed {job[1]} ready ({len(sims)}/{len(jobs)}, {time.perf_counter() - t0:.0f} s)")
    worlds = {job[1]: sim for job, sim in zip(jobs, sims, strict=True)}
    catalog = write_catalog(out / "catalog_evaluation.toml", [], [Path(w.catalog).resolve() for w in worlds.values()])
    connect("local", project="gee-mining-evaluate", catalog=catalog, storage_root=out / "storage")
    return worlds


def world_mines(sim: SimulatedPyramid) -> dict[str, shapely.Geometry]:
    """A world's mine polygons (EPSG:4326), read from its own file, by id."""
    data = json.loads((Path(sim.world.out_dir) / "tables" / "mines.geojson").read_text())
    return {str(f["properties"]["id"]): shapely.geometry.shape(f["geometry"]) for f in data["features"]}


def world_spectra(sim: SimulatedPyramid) -> set[str]:
    """The library spectra a world drew (its palette, without the two modelled water constants every world has)."""
    data = json.loads((Path(sim.world.out_dir) / "manifest.json").read_text())
    return {n for n in data["truth"]["palette"] if not n.startswith("modelled:")}


def check_disjoint(train: dict[int, SimulatedPyramid], test: dict[int, SimulatedPyramid]) -> None:
    """Refuse train and test worlds that share a seed, touch a common mine (or ground), or draw a common spectrum."""
    shared = set(train) & set(test)
    if shared:
        raise InputError(f"seed(s) {sorted(shared)} are both train and test worlds.")
    train_mines = [g for s in train.values() for g in world_mines(s).values()]
    tree = shapely.STRtree(train_mines) if train_mines else None
    train_spectra = set().union(*(world_spectra(s) for s in train.values()))
    for seed, sim in test.items():
        boxes = [shapely.box(*w.bounds) for w in train.values() if w.epsg == sim.epsg]
        if any(b.intersects(shapely.box(*sim.bounds)) and not b.touches(shapely.box(*sim.bounds)) for b in boxes):
            raise InputError(f"the test world of seed {seed} overlaps a train world's square.")
        if tree is not None and any(len(tree.query(g, predicate="intersects")) for g in world_mines(sim).values()):
            raise InputError(f"the test world of seed {seed} holds a mine that touches a train world's mine.")
        common = world_spectra(sim) & train_spectra
        if common:
            raise InputError(f"the test world of seed {seed} draws spectra the train worlds drew: {sorted(common)[:3]}")


# -- training, calibration, test -------------------------------------------------------------------


def fit_screening(train: dict[int, SimulatedPyramid], spec: EvaluationSpec):
    """One screening model on a pixel sample pooled over the train worlds (``spec.pixels`` per class each): the
    random forest on context features (``screening="forest"``) or the logistic model on the pixel's own spectrum
    and indices (``"logistic"``). Worlds with extra months carry ``GREENEST_NDVI_BAND``; the model reads it unless
    ``spec.use_seasons`` is off."""
    first = next(iter(train.values()))
    composite = ee.Image(first.composite_id)
    bands = [b for b in composite.bandNames().getInfo() if spec.use_seasons or b != GREENEST_NDVI_BAND]
    if spec.screening == "forest":
        seasonal = GREENEST_NDVI_BAND in bands
        tables = [sample_context(ee, ee.Image(w.composite_id), w.region(ee), w.mines_id, spec.pixels, seed=s,
                                 seasonal=seasonal, mine_strata_km2=spec.mine_strata_km2)
                  for s, w in train.items()]  # fmt: skip
        forest = fit_forest(pd.concat(tables, ignore_index=True), context_names(bands))
        if not spec.hard_negatives:
            return forest
        for s, w in train.items():
            composite = ee.Image(w.composite_id)
            tables.append(sample_hard_negatives(ee, probability_image(ee, forest, composite),
                                                context_image(composite, forest.radii, seasonal), w.region(ee),
                                                w.mines_id, spec.hard_negatives, seed=s))  # fmt: skip
        return fit_forest(pd.concat(tables, ignore_index=True), context_names(bands))
    tables = [sample_pixels(ee, ee.Image(w.composite_id), w.region(ee), w.mines_id, spec.pixels, seed=s)
              for s, w in train.items()]  # fmt: skip
    features = add_indices(composite, list(FEATURE_INDICES))
    return fit_logistic(features, pd.concat(tables, ignore_index=True), bands + list(FEATURE_INDICES)).model


def evaluate_world(seed: int, sim: SimulatedPyramid, model, spec: PyramidSpec, ev: EvaluationSpec,
                   out: Path, detector=None) -> WorldResult:  # fmt: skip
    """The frozen model and thresholds on one held-out world; ``detector`` at the fine level (default: the pixel
    model in boxes)."""
    t0 = time.perf_counter()
    image = probability_image(ee, model, ee.Image(sim.composite_id))
    cells = start_cells(ee, sim.region(ee), spec.levels[0], sim.epsg)
    detector = detector or PixelModelDetector(image, block=8, folder=out / f"seed_{seed}" / "patches")
    context = _context(model, sim) if spec.cell_model is not None else None
    result = run_pyramid(ee, image, spec, cells, detector, sim.mines_id, context=context)
    polys = known_polygons(ee, sim.mines_id, "id", result.known_mines)
    tree = shapely.STRtree([polys[m] for m in result.known_mines]) if polys else None
    false_boxes = sum(
        tree is None or not len(tree.query(d.geometry, predicate="intersects")) for d in result.detections
    )
    n, k = len(result.known_mines), len(result.detected_mines)
    low, high = clopper_pearson(k, n, ev.confidence) if n else (None, None)
    alive = sorted({m for r in result.fine_cells for m in r["mines"]})
    table = _mine_table(sim)
    areas = {m: table[m][0] / 1e6 for m in result.known_mines if m in table}
    side = (sim.bounds[2] - sim.bounds[0]) * (sim.bounds[3] - sim.bounds[1]) / 1e6
    res = WorldResult(
        seed, n, k, k / n if n else None, low, high, len(alive) / n if n else None, len(result.fine_cells),
        len(descendants(cells, spec.levels)), side, sum(areas.values()),
        sum(not r["mines"] for r in result.fine_cells), len(result.detections), false_boxes,
        sum(lv.pixels for lv in result.levels), result.detector.pixels, 1, result.detector.patches_exported,
        areas, list(result.detected_mines), alive,
    )  # fmt: skip
    res.lost = lost_mines(result, areas, {m: kind for m, (_, kind) in table.items()})
    if ev.exhaustive:
        res.exhaustive_recall = run_exhaustive(ee, spec, cells, detector, sim.mines_id).recall
    res.seconds = time.perf_counter() - t0
    return res


def _mine_table(sim: SimulatedPyramid) -> dict[str, tuple[float, str]]:
    """Mine id -> (area in m2, kind: "artisanal" for the river pits, "mine" for the others)."""
    data = json.loads((Path(sim.world.out_dir) / "tables" / "mines.geojson").read_text())
    return {str(f["properties"]["id"]): (float(f["properties"]["area_m2"]), str(f["properties"].get("kind", "mine")))
            for f in data["features"]}  # fmt: skip


def lost_mines(result: PyramidResult, areas_km2: dict[str, float], kinds: dict[str, str]) -> list[dict[str, Any]]:
    """Each known mine no detection touches, with where the pyramid lost it: ``lost_at`` is ``"z<zoom>"`` of the
    screening level after which no kept cell touched it, or ``"detector"`` when a kept fine cell still did and no
    box touched it. Says which stage to look at when recall falls short."""
    dropped, found = result.dropped_at(), set(result.detected_mines)
    return [{"id": m, "area_km2": areas_km2.get(m), "kind": kinds.get(m, "mine"),
             "lost_at": f"z{dropped[m]}" if m in dropped else "detector"}
            for m in result.known_mines if m not in found]  # fmt: skip


def _missed(world: WorldResult) -> str:
    counts = lost_counts([world])["lost_at"]
    return "; missed at " + ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else ""


def lost_counts(worlds: Sequence[WorldResult]) -> dict[str, dict[str, int]]:
    """Missed mines counted by where they were lost and by kind, over ``worlds``."""
    lost = [m for w in worlds for m in w.lost]
    return {"lost_at": dict(sorted(Counter(m["lost_at"] for m in lost).items())),
            "kind": dict(sorted(Counter(m["kind"] for m in lost).items()))}  # fmt: skip


def pooled(worlds: Sequence[WorldResult], ev: EvaluationSpec) -> dict[str, Any]:
    """The held-out worlds together: recall with its interval, fine cells, false alarms, precision, cost."""
    n, k = sum(w.mines for w in worlds), sum(w.detected for w in worlds)
    low, high = clopper_pearson(k, n, ev.confidence) if n else (None, None)
    fine, exhaustive = sum(w.fine_cells for w in worlds), sum(w.exhaustive_fine_cells for w in worlds)
    area, mine_km2 = sum(w.area_km2 for w in worlds), sum(w.mine_area_km2 for w in worlds)
    fa_boxes = sum(w.false_alarm_boxes for w in worlds)
    out = {
        "SIMULATED": True, "worlds": len(worlds), "mines": n, "detected": k, "recall": k / n if n else None,
        "recall_ci_low": low, "recall_ci_high": high, "confidence": ev.confidence,
        "screening_recall": sum(len(w.alive_ids) for w in worlds) / n if n else None,
        "fine_cells": fine, "exhaustive_fine_cells": exhaustive, "fine_cell_ratio": exhaustive / max(1, fine),
        "area_km2": area, "mine_area_km2": mine_km2, "boxes": sum(w.boxes for w in worlds),
        "false_alarm_boxes": fa_boxes, "false_alarm_cells": sum(w.false_alarm_cells for w in worlds),
        "cost": {"fine_cells": fine, "pixels_screening": sum(w.pixels_screening for w in worlds),
                 "pixels_detector": sum(w.pixels_detector for w in worlds), "tasks": sum(w.tasks for w in worlds),
                 "patches": sum(w.patches for w in worlds)},
        "recall_by_size": recall_by_size(worlds),
        "missed": lost_counts(worlds),
    }  # fmt: skip
    out.update(rates(area, mine_km2, out["false_alarm_cells"], fa_boxes, out["boxes"] - fa_boxes, ev.mine_share))
    out["fine_cell_ratio_at_mine_share"] = fine_cell_ratio_at_share(fine, out["false_alarm_cells"], exhaustive, area,
                                                                    mine_km2, ev.mine_share)  # fmt: skip
    if n:  # mines of one world are not independent: the interval with the worlds resampled, beside the exact one
        wl, wh = world_bootstrap_interval([w.detected for w in worlds], [w.mines for w in worlds], ev.confidence)
        out.update(recall_ci_low_worlds=wl, recall_ci_high_worlds=wh)
    if all(w.exhaustive_recall is not None for w in worlds):
        hits = sum(round((w.exhaustive_recall or 0) * w.mines) for w in worlds)
        out["exhaustive_recall"] = hits / n if n else None
    return out


def evaluate_pyramid(out_dir: str | os.PathLike, ev: EvaluationSpec,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Build the worlds, train and calibrate on ``ev.train_seeds``, report on ``ev.test_seeds``; writes
    ``evaluation.json`` in ``out_dir`` (whole or not at all) and returns it. Each test world's figures are also
    appended to ``worlds.jsonl`` as it finishes."""
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    yolo = yolo_model(ev) if ev.detector == "yolo" else None  # before the long work: refused weights fail fast
    worlds = prepare_worlds(out, ev, say)
    train = {s: worlds[s] for s in ev.train_seeds}
    test = {s: worlds[s] for s in ev.test_seeds}
    check_disjoint(train, test)
    model = fit_screening(train, ev)
    say(f"[evaluate] screening model fitted on {len(train)} train world(s)")
    cal = _calibrate(train, model, ev, say)
    results = []
    progress_file = out / "worlds.jsonl"  # one line per finished test world: a long run can be read as it goes
    progress_file.unlink(missing_ok=True)
    for seed, sim in test.items():
        detector = yolo_detector(yolo, seed, sim, ev.levels, out / "yolo_cells" / f"seed_{seed}") if yolo else None
        results.append(evaluate_world(seed, sim, model, cal.spec, ev, out, detector))
        r = results[-1]
        with progress_file.open("a") as f:
            f.write(json.dumps(r.as_json(), default=str) + "\n")
        say(f"[evaluate] test world {seed}: {r.detected}/{r.mines} mines, {r.fine_cells}/{r.exhaustive_fine_cells} "
            f"fine cells ({r.seconds:.0f} s){_missed(r)}")  # fmt: skip
    report = {
        "SIMULATED": True,
        "what": "the pyramid trained and calibrated on the train worlds only, measured on the test worlds",
        "protocol": {
            "train_seeds": list(ev.train_seeds),
            "test_seeds": list(ev.test_seeds),
            "spec": {k: v for k, v in asdict(ev).items() if k not in ("train_seeds", "test_seeds")},
            "calibration": cal.as_json(),
            "screening_model": model.to_json(),
            "detector": {
                "name": ev.detector,
                **({k: yolo[k] for k in ("weights", "train_seeds", "imgsz", "conf")} if yolo else {}),
            },
        },  # fmt: skip
        "worlds": [r.as_json() for r in results],
        "pooled": pooled(results, ev),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "evaluation.json", report)
    return report


def read_model_file(weights: str | os.PathLike) -> dict[str, Any]:
    """The ``yolo_model.json`` of an ``evaluate yolo`` run: the file itself, its folder, or weights under that folder
    (``.../yolo/runs/train_worlds/weights/last.pt``: those weights, with the run's record); an error naming the file
    when there is none."""
    path = Path(weights)
    if path.name == MODEL_FILE and path.is_file():
        return json.loads(path.read_text())
    for folder in [path, *path.parents]:
        if (folder / MODEL_FILE).is_file():
            model = json.loads((folder / MODEL_FILE).read_text())
            if path.suffix == ".pt" and path.is_file():
                model["weights"] = str(path)
            return model
    raise InputError(f"--weights {weights}: no {MODEL_FILE} beside it; give the weights an `evaluate yolo` run wrote "
                     "(they record the seeds they were trained on).")  # fmt: skip


def yolo_model(ev: EvaluationSpec) -> dict[str, Any]:
    """The ``yolo_model.json`` of ``ev.weights``, refused when the model saw a test world."""
    model = read_model_file(ev.weights)
    seen = sorted(set(model["train_seeds"]) & set(ev.test_seeds))
    if seen:
        raise InputError(f"--weights {ev.weights} was trained on seed(s) {seen}, which are test seeds here: train it "
                         "on other seeds (evaluate yolo --train-seeds) or test on other worlds.")  # fmt: skip
    return model


def yolo_detector(model: dict[str, Any], seed: int, sim: SimulatedPyramid, levels: Sequence[float],
                  folder: Path) -> YoloDetector:  # fmt: skip
    """YOLO at the fine level: each kept cell's block of the world's composite, of the level whose lattice is the
    training patch (1375 m for 138 px), and the boxes scoring at least the model's ``conf`` that overlap a kept
    cell."""
    context = next((lv for lv in levels if math.ceil(lv / 10 - 1e-9) == model["patch_px"]), model["patch_px"] * 10)
    return YoloDetector(model["weights"], DatasetSpec.from_json(model["dataset_spec"]), image=ee.Image(sim.composite_id),
                        destination=f"gs://gee-mining-evaluate/yolo-{seed}", conf=model["conf"], folder=folder,
                        predict_args={"imgsz": model["imgsz"]}, context=float(context))  # fmt: skip


def _context(model, sim: SimulatedPyramid):
    """The world's context image as the screening forest reads it (a cell model reads some of its bands)."""
    return context_image(ee.Image(sim.composite_id), model.radii, model.seasonal)


def _calibrate(train: dict[int, SimulatedPyramid], model, ev: EvaluationSpec, say) -> Calibration:
    spec = ev.pyramid_spec()
    worlds = []
    for seed, sim in train.items():
        image = probability_image(ee, model, ee.Image(sim.composite_id))
        cells = start_cells(ee, sim.region(ee), spec.levels[0], sim.epsg)
        context = _context(model, sim) if ev.cell_model else None
        worlds.append(CalibrationWorld(f"seed_{seed}", image, cells, sim.mines_id, context=context))
    return calibrate_worlds(ee, worlds, spec, ev.target_recall, ev.margin, ev.confidence, say, ev.min_prune)

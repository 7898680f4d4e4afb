"""Pixel models measured out of sample: the study's LASSO model and the Earth Engine classifiers, chosen on some
SIMULATED worlds, measured on others and on the real mine-free Sentinel-2 scenes.

The worlds are the pyramid evaluation's (:func:`gee_mining.pyramid.evaluate.prepare_worlds`: one square and one
half of the spectral library per seed, reused through ``prepared.json``; :func:`~gee_mining.pyramid.evaluate.
check_disjoint` refuses worlds that share a seed, a mine or a spectrum). The models are fitted and their
hyper-parameters chosen on pixel samples of the train worlds only (``heldout_study``, ``heldout_classify``);
then each frozen model is applied to every held-out world as an ``ee`` graph on the engine (the LASSO model as
``ml.classify.compile_linear``, a classifier with ``Image.classify``), and its flags are counted there
(:func:`measure_flags`: one request a world, whatever its size). Reported per world and pooled: pixel recall,
mine recall (a mine is found when at least ``min_mine_share`` of its pixels are flagged) with their 95 %
Clopper-Pearson intervals (the pyramid's :func:`~gee_mining.pyramid.calibration.clopper_pearson`), flagged
mine-free pixels per 1000 km2, the share of natural bare ground (the truth's ``natural_soil`` and
``natural_rock`` outside mines) called mine, the precision at a realistic mine share
(:func:`gee_mining.pyramid.evaluate.rates`), and the cost. All of it is SIMULATED, except
:func:`real_false_alarms`: the same frozen models on the real scenes of ``../shared/data``, which hold no mine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import ee
import pandas as pd

from gee_mining.connection import connect
from gee_mining.contracts.bands import BANDS, MINE_BAND
from gee_mining.errors import InputError
from gee_mining.io.catalog import CatalogEntry, find_shared_data, imagery_entries, shared_entries, write_catalog
from gee_mining.io.pages import iter_features
from gee_mining.pyramid.calibration import clopper_pearson
from gee_mining.pyramid.evaluate import (
    EvaluationSpec,
    WorldsSpec,
    check_disjoint,
    prepare_worlds,
    rates,
    world_mines,
)
from gee_mining.pyramid.world import SimulatedPyramid
from gee_mining.steps.indices import feature_image
from gee_mining.steps.labels import label_bands, painted
from gee_mining.world.spectra import MATERIAL_ID

NATURAL_BARE = (MATERIAL_ID["natural_soil"], MATERIAL_ID["natural_rock"])
"""The truth's materials that count as natural bare ground (outside mine polygons)."""
LABEL_RADIUS_M = 300.0  # the distance label's reach: beyond the study's 200 m clip


@dataclass(frozen=True)
class HeldoutSpec(WorldsSpec):
    """The worlds (``WorldsSpec``, as ``evaluate pyramid``'s), the pixel sample drawn from each train world, and how
    flags count."""

    pixels: int = 500  # sampled pixels per class per train world
    mine_share: float = 0.0007  # a realistic share of land that is mine, for precision
    min_mine_share: float = 0.25  # a mine counts as found when at least this share of its pixels is flagged
    confidence: float = 0.95
    fine_cell_m: float = 343.75  # the pyramid's finest cell: a pixel model reads all of them
    real_data: bool = True  # also count the frozen models' flags on the real mine-free scenes (when present)

    def __post_init__(self) -> None:
        super().__post_init__()  # validates the seeds and the realism
        if len(self.train_seeds) < 2:
            raise InputError(f"train seeds {list(self.train_seeds)}: the models are chosen leaving one train world "
                             "out, so give at least two, e.g. --train-seeds 1,2,3.")  # fmt: skip
        if int(self.pixels) < 10:
            raise InputError(f"pixels {self.pixels}: sample at least 10 pixels per class per train world.")
        if not 0 < self.min_mine_share <= 1:
            raise InputError(f"min_mine_share {self.min_mine_share}: a share in (0, 1], e.g. 0.25.")
        self.worlds_spec()  # validates the mine share

    def worlds_spec(self) -> EvaluationSpec:
        """The pyramid evaluation's spec of the same worlds (what its screening model is fitted with)."""
        worlds = {f.name: getattr(self, f.name) for f in fields(WorldsSpec)}
        return EvaluationSpec(**worlds, margin=0.5, pixels=self.pixels, mine_share=self.mine_share,
                              confidence=self.confidence)  # fmt: skip


@dataclass
class Worlds:
    """The prepared worlds, split, with the id of each world's truth (material) image on the engine."""

    train: dict[int, SimulatedPyramid]
    test: dict[int, SimulatedPyramid]
    truth_ids: dict[int, str]
    real_ids: list[str]  # the real mine-free scenes the engine serves (none without ../shared/data)
    real_why: str = ""  # why there are none


def truth_id(seed: int) -> str:
    return f"projects/gee-mining-eval-{seed}/assets/truth_surface"


def prepare(out: Path, spec: HeldoutSpec, say: Callable[[str], None]) -> Worlds:
    """The worlds (:func:`~gee_mining.pyramid.evaluate.prepare_worlds`, checked disjoint), then ``ee`` connected to
    one catalog that also serves each world's truth raster and the real scenes of ``../shared/data`` (if any)."""
    worlds = prepare_worlds(out, spec, say)
    train = {s: worlds[s] for s in spec.train_seeds}
    test = {s: worlds[s] for s in spec.test_seeds}
    check_disjoint(train, test)
    entries = [
        CatalogEntry("image", {"id": truth_id(s), "path": (Path(w.world.out_dir) / "truth" / "surface.tif").resolve(),
                               "band_names": ["material", "base_spectrum", "green_spectrum"]})
        for s, w in worlds.items()
    ]  # fmt: skip
    shared = find_shared_data() if spec.real_data else None
    real = [e.fields["id"] for e in imagery_entries(shared)] if shared is not None else []
    entries += shared_entries(shared, "gee-mining-evaluate")
    catalog = write_catalog(out / "catalog_heldout.toml", entries, [(out / "catalog_evaluation.toml").resolve()])
    connect("local", project="gee-mining-evaluate", catalog=catalog, storage_root=out / "storage")
    why = "skipped (--no-real)" if not spec.real_data else "" if real else (
        "the real scenes (../shared/data/imagery) are absent beside this checkout")  # fmt: skip
    return Worlds(train, test, {s: truth_id(s) for s in worlds}, real, why)


# -- samples -------------------------------------------------------------------------------------------------------


def sample_world(sim: SimulatedPyramid, seed: int, pixels: int, extra: Sequence[str] = ()) -> pd.DataFrame:
    """``pixels`` pixels per class of one world (server-side ``stratifiedSample`` on ``_mine``, one paged request):
    the composite's bands, the ``extra`` features (``ND_a_b``, indices, computed by ``ee``), ``_mine`` and the
    signed ``distance`` to a mine's edge, with ``cell`` and ``world`` columns naming the world."""
    features = feature_image(ee.Image(sim.composite_id), list(dict.fromkeys([*BANDS, *extra])))
    labels = label_bands(ee.FeatureCollection(sim.mines_id), search_radius=LABEL_RADIUS_M)
    sample = features.addBands(labels).stratifiedSample(
        numPoints=int(pixels), classBand=MINE_BAND, region=sim.region(ee), scale=10, seed=int(seed), geometries=False
    )
    table = pd.DataFrame([f["properties"] for f in iter_features(sample)])
    if table.empty or table[MINE_BAND].nunique() < 2:
        raise InputError(f"the world of seed {seed} gave a sample without both classes: give it more clusters.")
    return table.assign(cell=f"seed_{seed}", world=int(seed))


# -- applying a frozen model to a world --------------------------------------------------------------------------


@dataclass
class WorldFigures:
    """One held-out world under one frozen pixel model: what its flags hit and cost. SIMULATED."""

    seed: int
    model: str
    pixels: int  # observed pixels of the world
    mine_pixels: int
    detected_pixels: int  # flagged pixels inside mines
    false_alarm_pixels: int  # flagged pixels outside mines
    bare_pixels: int  # natural bare ground outside mines
    bare_flagged: int
    mines: int
    detected: int  # mines with at least min_mine_share of their pixels flagged
    area_km2: float
    mine_area_km2: float
    fine_cells: int
    seconds: float = 0.0

    def as_json(self, spec: HeldoutSpec) -> dict[str, Any]:
        return {"SIMULATED": True, **asdict(self), **figures(self.counts(), spec)}

    def counts(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k not in ("seed", "model", "seconds")}


COUNTS = ("pixels", "mine_pixels", "detected_pixels", "false_alarm_pixels", "bare_pixels", "bare_flagged", "mines",
          "detected", "area_km2", "mine_area_km2", "fine_cells")  # fmt: skip


def figures(c: dict[str, float], spec: HeldoutSpec) -> dict[str, Any]:
    """Recall (mines, and pixels) with their intervals, false alarms, bare ground called mine, precision, cost."""
    out: dict[str, Any] = {}
    for name, k, n in (("recall", c["detected"], c["mines"]), ("pixel_recall", c["detected_pixels"], c["mine_pixels"])):
        low, high = clopper_pearson(int(k), int(n), spec.confidence) if n else (None, None)
        out.update({name: k / n if n else None, f"{name}_ci_low": low, f"{name}_ci_high": high})
    r = rates(c["area_km2"], c["mine_area_km2"], int(c["false_alarm_pixels"]), int(c["false_alarm_pixels"]),
              int(c["detected_pixels"]), spec.mine_share)  # fmt: skip
    out["false_alarms_per_1000km2"] = r["false_alarms_per_1000km2"]  # flagged mine-free pixels
    out["false_alarm_km2_per_1000km2"] = r["false_alarms_per_1000km2"] * 1e-4  # as area (10 m pixels)
    out["natural_bare_called_mine"] = c["bare_flagged"] / c["bare_pixels"] if c["bare_pixels"] else None
    out["precision_at_mine_share"] = r["precision_at_mine_share"]
    out["mine_share"] = spec.mine_share
    out["exhaustive_fine_cells"] = int(c["fine_cells"])  # a pixel model reads every pixel: it is the exhaustive cost
    out["cost"] = {"pixels": int(c["pixels"]), "fine_cells": int(c["fine_cells"]), "tasks": 0,
                   "requests_per_world": 1}  # fmt: skip
    return out


def measure_flags(
    flag: Any, sim: SimulatedPyramid, seed: int, truth: str, model: str, spec: HeldoutSpec
) -> WorldFigures:
    """Count a frozen model's 0/1 ``flag`` image over one world on the engine, in one request: pixel sums on the
    world's 10 m lattice (``reduceRegion``) and the flagged share of each mine (a mean grouped by the mines' painted
    ids: no per-polygon geometry work, so a ragged mine outline cannot fail it; a mine too small to hold a pixel
    centre counts as missed)."""
    t0 = time.perf_counter()
    mines = ee.FeatureCollection(sim.mines_id)
    mine = painted(mines)
    free = mine.Not()
    material = ee.Image(truth).select("material")
    bare = material.eq(NATURAL_BARE[0]).Or(material.eq(NATURAL_BARE[1])).And(free)
    seen = flag.mask().gt(0)
    hit = flag.unmask(0).gt(0).And(seen)
    parts = {"pixels": seen, "mine_pixels": mine.And(seen), "detected_pixels": hit.And(mine),
             "false_alarm_pixels": hit.And(free), "bare_pixels": bare.And(seen), "bare_flagged": hit.And(bare)}  # fmt: skip
    stack = ee.Image.cat([v.rename(k).toInt32() for k, v in parts.items()])
    ids = ee.Image.constant(-1).toInt32().paint(mines, "id").rename("id")
    grid = {
        "crs": f"EPSG:{sim.epsg}",
        "crsTransform": [10, 0, sim.bounds[0], 0, -10, sim.bounds[3]],
        "maxPixels": int(1e9),
    }
    info = ee.Dictionary({
        "sums": stack.reduceRegion(ee.Reducer.sum(), sim.region(ee), **grid),
        "groups": ee.Image.cat([hit.toFloat().rename("flagged"), ids]).reduceRegion(
            ee.Reducer.mean().group(groupField=1, groupName="id"), sim.region(ee), **grid).get("groups"),
        "areas": mines.aggregate_array("area_m2"),
    }).getInfo()  # fmt: skip
    found = sum(g["id"] >= 0 and g["mean"] >= spec.min_mine_share for g in info["groups"])
    side = (sim.bounds[2] - sim.bounds[0]) * (sim.bounds[3] - sim.bounds[1])
    return WorldFigures(
        seed, model, *(int(info["sums"][k]) for k in parts), len(info["areas"]), found, side / 1e6,
        sum(info["areas"]) / 1e6, round(side / spec.fine_cell_m**2), time.perf_counter() - t0,
    )  # fmt: skip


def pooled(worlds: Sequence[WorldFigures], spec: HeldoutSpec) -> dict[str, Any]:
    """The held-out worlds of one model together: counts summed, then the same figures."""
    counts = {k: sum(w.counts()[k] for w in worlds) for k in COUNTS}
    return {"SIMULATED": True, "worlds": len(worlds), **counts, **figures(counts, spec),
            "seconds": round(sum(w.seconds for w in worlds), 1)}  # fmt: skip


def real_false_alarms(models: dict[str, Callable[[Any], Any]], worlds: Worlds,
                      say: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """Each frozen model (a function of a reflectance image to its 0/1 flags) on each real mine-free scene: the share
    of observed pixels flagged and the flagged 10 m pixels per km2. Every flag there is a false alarm. REAL data."""
    if not worlds.real_ids:
        return {"available": False, "why": worlds.real_why}
    scenes = []
    for sid in worlds.real_ids:
        image = ee.Image(sid)
        reflectance = image.select(list(BANDS)).toFloat().divide(10000)
        proj = image.select("B2").projection()
        row: dict[str, Any] = {"id": sid, "level": "L1C (top of atmosphere)" if "S2_HARMONIZED/" in sid else "L2A"}
        names = list(models)  # every model's flags as one band each: one request and one pass a scene
        flags = ee.Image.cat([models[n](reflectance).unmask(0).gt(0).rename(f"f{i}").toFloat()
                              for i, n in enumerate(names)])  # fmt: skip
        stats = flags.reduceRegion(ee.Reducer.mean(), crs=proj, scale=10, maxPixels=int(1e9)).getInfo()
        for i, name in enumerate(names):
            share = float(stats[f"f{i}"]) if stats.get(f"f{i}") is not None else None
            row[name] = {"flagged_share": share, "flagged_pixels_per_km2": share * 1e4 if share is not None else None}
        scenes.append(row)
        say(f"[evaluate] real scene {sid.rsplit('/', 1)[-1]}: " + ", ".join(
            f"{m} {row[m]['flagged_share']:.3f}" for m in models if row[m]["flagged_share"] is not None))  # fmt: skip
    return {"available": True, "REAL": True, "mines": "none (mine-free scenes: every flag is a false alarm)",
            "scenes": scenes}  # fmt: skip


def held_out_mines(worlds: Worlds) -> int:
    """How many mines the held-out worlds hold (their own files)."""
    return sum(len(world_mines(w)) for w in worlds.test.values())


def spec_json(spec: HeldoutSpec) -> dict[str, Any]:
    """The spec without its seeds (the report's protocol lists those apart)."""
    return {k: v for k, v in asdict(spec).items() if k not in ("train_seeds", "test_seeds")}

"""YOLO measured out of sample: trained on the patches of some SIMULATED worlds, measured on others' patches.

The worlds are the pyramid evaluation's (:func:`gee_mining.pyramid.evaluate.prepare_worlds`: each seed its own
square, the train worlds painted from one half of the spectral library, the test worlds from the other;
:func:`~gee_mining.pyramid.evaluate.check_disjoint` refuses shared seeds, mines or spectra). Each world's
composite, exported once through ``ee``, is cut into patches by the detection pipeline
(:func:`~gee_mining.ml.detect.dataset.cut_patches`, as ``gee-mining detect patches``) and made a YOLO dataset
(:func:`~gee_mining.ml.detect.dataset.build_dataset`, as ``gee-mining detect dataset``):

- train worlds: windows holding a mine every ``mine_stride`` pixels (overlapping, shifted views), the others
  every ``patch_px``; YOLO is trained on these only. Ultralytics validates once, after the last epoch, on the same
  train patches (it needs a validation set: an in-sample figure, reported as such); nothing is chosen on it: the
  last epoch's weights are the model.
- test worlds: a plain tiling (stride = ``patch_px``), so every pixel is seen once and false boxes are per area.
  With the default 138 px patches (the 1375 m level's lattice) the 1104 px world is tiled whole.

Reported per test world and pooled, all SIMULATED:

- mine recall, two ways, each with its 95 % Clopper-Pearson interval
  (:func:`gee_mining.pyramid.calibration.clopper_pearson`): a mine is *touched* when a box scoring at least
  ``conf`` intersects its polygon (the pyramid's criterion), *matched* when some box's IoU with the part of the
  polygon inside that box's patch is at least ``min_iou`` (:func:`gee_mining.ml.detect.evaluate.polygon_iou`);
- boxes, and false boxes (boxes that touch no mine) per 1000 km2 of mine-free land, and the precision those
  rates give at a realistic mine share (:func:`gee_mining.pyramid.evaluate.rates`);
- mAP50 / mAP50-95 of the boxes on the held-out patches (ultralytics' validator, the labels as targets);
- how long the training took.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import shapely

from gee_mining.errors import InputError
from gee_mining.io.files import write_json
from gee_mining.ml.detect.dataset import (
    RGB,
    DatasetSpec,
    build_dataset,
    cut_patches,
    dataset_summary,
    keep_near_mines,
    to_crs,
)
from gee_mining.ml.detect.evaluate import evaluate, polygon_iou
from gee_mining.ml.detect.predict import Detection, predict_cells
from gee_mining.ml.detect.train import load_model, train
from gee_mining.pyramid.calibration import clopper_pearson
from gee_mining.pyramid.evaluate import (
    MODEL_FILE,
    WorldsSpec,
    check_disjoint,
    prepare_worlds,
    rates,
    recall_by_size,
    world_mines,
)
from gee_mining.pyramid.world import SimulatedPyramid


@dataclass(frozen=True)
class YoloEvaluationSpec(WorldsSpec):
    """The worlds (``WorldsSpec``, as the pyramid's evaluation builds them, so a folder serves both evaluations), the
    patches and a small CPU training."""

    patch_px: int = 138  # the 1375 m level's lattice at 10 m: 8 x 8 patches tile an 11.04 km world
    mine_stride: int = 46  # train windows holding a mine every 46 px (the others every patch_px)
    bands: tuple[str, ...] = RGB
    epochs: int = 8
    imgsz: int = 128
    batch: int = 8
    conf: float = 0.25  # a box counts from this score
    min_iou: float = 0.25  # a mine is matched by a box of at least this IoU with the mine inside the box's patch
    mine_share: float = 0.0007
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()  # validates the seeds and the realism
        object.__setattr__(self, "bands", tuple(self.bands))
        if self.patch_px < 32 or self.mine_stride < 1:
            raise InputError(f"patch_px {self.patch_px} / mine_stride {self.mine_stride}: at least 32 and 1 pixels.")
        if self.epochs < 1 or self.imgsz < 32 or self.imgsz % 32:
            raise InputError(f"epochs {self.epochs} / imgsz {self.imgsz}: at least 1 epoch, imgsz a multiple of 32.")
        if not 0 < self.conf < 1 or not 0 < self.min_iou <= 1:
            raise InputError(f"conf {self.conf} / min_iou {self.min_iou}: a score in (0, 1) and an IoU in (0, 1].")
        if not 0 < self.mine_share < 1:
            raise InputError(f"mine_share {self.mine_share}: a share of land in (0, 1), e.g. 0.0007.")
        DatasetSpec(bands=self.bands)  # validates the bands


@dataclass
class YoloWorldResult:
    """One held-out world's patches under the trained YOLO. SIMULATED."""

    seed: int
    mines: int
    detected: int  # mines a box touches
    matched: int  # mines a box overlaps with IoU >= min_iou (inside the box's patch)
    patches: int
    boxes: int
    false_alarm_boxes: int  # boxes that touch no mine
    false_alarm_patches: int  # patches with a box that hold no mine
    area_km2: float
    mine_area_km2: float
    mine_areas_km2: dict[str, float] = field(default_factory=dict)
    detected_ids: list[str] = field(default_factory=list)

    def as_json(self, ev: YoloEvaluationSpec) -> dict[str, Any]:
        out = {"SIMULATED": True, **{k: v for k, v in asdict(self).items() if k not in ("mine_areas_km2",
                                                                                         "detected_ids")}}  # fmt: skip
        out.update(recall_figures(self.mines, self.detected, self.matched, ev.confidence))
        out.update(rates(self.area_km2, self.mine_area_km2, self.false_alarm_patches, self.false_alarm_boxes,
                         self.boxes - self.false_alarm_boxes, ev.mine_share))  # fmt: skip
        out["false_alarm_patches_per_1000km2"] = out.pop("false_alarm_cells_per_1000km2")
        return out


def recall_figures(mines: int, touched: int, matched: int, confidence: float = 0.95) -> dict[str, Any]:
    """Recall when a box touches a mine and when one matches it, each with its Clopper-Pearson interval."""
    out: dict[str, Any] = {}
    for name, k in (("recall", touched), ("recall_matched", matched)):
        low, high = clopper_pearson(k, mines, confidence) if mines else (None, None)
        out.update({name: k / mines if mines else None, f"{name}_ci_low": low, f"{name}_ci_high": high})
    return out


# -- patches and datasets ------------------------------------------------------------------------


def composite_path(sim: SimulatedPyramid) -> Path:
    """The world's composite GeoTIFF, exported through ``ee`` when the world was prepared."""
    path = Path(sim.catalog).parent / "composite.tif"
    if not path.is_file():
        raise InputError(f"{path} is missing: delete {path.parent} and rerun, so the world is prepared again.")
    return path


def world_patches(seed: int, sim: SimulatedPyramid, out: Path, ev: YoloEvaluationSpec, train_world: bool,
                  dspec: DatasetSpec) -> list[Path]:  # fmt: skip
    """A world's composite cut into patches (named ``seed_<seed>_<col>_<row>``): near mines every
    ``mine_stride`` px in a train world, a plain tiling in a test world."""
    tiles = out / "tiles"
    tiles.mkdir(parents=True, exist_ok=True)
    tile = tiles / f"seed_{seed}.tif"
    tile.unlink(missing_ok=True)
    tile.symlink_to(composite_path(sim).resolve())
    keep, stride = None, ev.patch_px
    if train_world:
        keep = keep_near_mines(list(world_mines(sim).values()), ev.mine_stride, ev.patch_px, dspec)
        stride = math.gcd(ev.mine_stride, ev.patch_px)
    kind = "train" if train_world else "test"
    return cut_patches([tile], out / "patches" / kind / f"seed_{seed}", ev.patch_px, stride, keep=keep, overwrite=True)


def build_datasets(worlds: dict[int, SimulatedPyramid], out: Path, ev: YoloEvaluationSpec, say) -> dict[str, Any]:
    """The train dataset (train worlds' patches and mines) and the test dataset (test worlds'), and each test
    patch's world."""
    dspec = DatasetSpec(bands=ev.bands)
    patches: dict[str, list[Path]] = {"train": [], "test": []}
    seed_of: dict[str, int] = {}
    for seed, sim in worlds.items():
        kind = "train" if seed in ev.train_seeds else "test"
        files = world_patches(seed, sim, out, ev, kind == "train", dspec)
        patches[kind] += files
        seed_of.update({p.stem: seed for p in files})
        say(f"[evaluate] {kind} world {seed}: {len(files)} patches of {ev.patch_px} px")
    polys = {k: [g for s in (ev.train_seeds if k == "train" else ev.test_seeds)
                 for g in world_mines(worlds[s]).values()] for k in patches}  # fmt: skip
    sets = {k: build_dataset(patches[k], polys[k], out / f"dataset_{k}", dspec, overwrite=True) for k in patches}
    return {"datasets": sets, "patches": patches, "seed_of": seed_of}


# -- scoring boxes against the truth (pure geometry) -----------------------------------------------


def score_world(seed: int, sim: SimulatedPyramid, detections: Sequence[Detection], patches: Sequence[Any],
                ev: YoloEvaluationSpec) -> YoloWorldResult:  # fmt: skip
    """A test world's mines against the boxes on its patches (``patches``: their ``CellRaster``)."""
    mines = world_mines(sim)
    ids = list(mines)
    tree = shapely.STRtree([mines[i] for i in ids]) if ids else None
    touched: set[str] = set()
    false_boxes, boxed = 0, set()
    for d in detections:
        hits = [ids[int(j)] for j in tree.query(d.geometry, predicate="intersects")] if tree is not None else []
        touched.update(hits)
        false_boxes += not hits
        boxed.add(d.cell)
    footprints = {p.name: p.lattice.outline() for p in patches}
    matches = polygon_iou(detections, [mines[i] for i in ids], ev.min_iou, footprints) if ids else []
    matched = {ids[m["polygon"]] for m in matches if m["polygon"] is not None}
    covered = shapely.union_all(list(footprints.values()))
    epsg = patches[0].lattice.epsg if patches else sim.epsg
    local = {i: shapely.make_valid(to_crs(mines[i], epsg)) for i in ids}  # reprojection can make a ring touch itself
    with_mine = {p.name for p in patches if any(footprints[p.name].intersects(g) for g in local.values())}
    areas = {i: g.area / 1e6 for i, g in local.items()}
    return YoloWorldResult(
        seed, len(ids), len(touched), len(matched), len(patches), len(detections), false_boxes,
        len(boxed - with_mine), covered.area / 1e6, sum(shapely.intersection(g, covered).area for g in local.values()) / 1e6,
        areas, sorted(touched),
    )  # fmt: skip


def pooled(worlds: Sequence[YoloWorldResult], ev: YoloEvaluationSpec) -> dict[str, Any]:
    """The held-out worlds together: recall two ways with intervals, boxes, false boxes, precision."""
    total = {k: sum(getattr(w, k) for w in worlds) for k in ("mines", "detected", "matched", "patches", "boxes",
                                                             "false_alarm_boxes", "false_alarm_patches")}  # fmt: skip
    area, mine_km2 = sum(w.area_km2 for w in worlds), sum(w.mine_area_km2 for w in worlds)
    out = {"SIMULATED": True, "worlds": len(worlds), **total, "area_km2": area, "mine_area_km2": mine_km2,
           "conf": ev.conf, "min_iou": ev.min_iou, "confidence": ev.confidence}  # fmt: skip
    out.update(recall_figures(total["mines"], total["detected"], total["matched"], ev.confidence))
    out.update(rates(area, mine_km2, total["false_alarm_patches"], total["false_alarm_boxes"],
                     total["boxes"] - total["false_alarm_boxes"], ev.mine_share))  # fmt: skip
    out["false_alarm_patches_per_1000km2"] = out.pop("false_alarm_cells_per_1000km2")
    out["recall_by_size"] = recall_by_size(worlds)
    return out


# -- the evaluation --------------------------------------------------------------------------------


def train_yolo(ds, out: Path, ev: YoloEvaluationSpec, say) -> dict[str, Any]:
    """YOLO (yolo11n from its yaml) trained on the train dataset only, on the CPU; its weights and timing."""
    yaml = ds.write_split("train_worlds", ds.names, ds.names)  # ultralytics needs a val set: the same patches
    t0 = time.process_time()
    result = train(yaml, "yolo11n.yaml", out_dir=out / "runs", name="train_worlds", epochs=ev.epochs,
                   imgsz=ev.imgsz, batch=ev.batch, device="cpu", seed=ev.seed, progress=say, flipud=0.5, val=False)  # fmt: skip
    return {"weights": str(result.last), "seconds": round(result.seconds, 1),
            "cpu_seconds": round(time.process_time() - t0, 1), "epochs": result.epochs,
            "train_images": result.train_images, "images_per_s": round(result.images_per_s, 1),
            "in_sample_metrics": result.metrics}  # fmt: skip


def write_model_file(out: Path, training: dict[str, Any], dspec: DatasetSpec, ev: YoloEvaluationSpec) -> Path:
    """``yolo_model.json``: what ``evaluate pyramid --detector yolo`` needs (weights, bands and scaling, image size)
    and what it checks (the seeds the model was trained on)."""
    return write_json(out / MODEL_FILE, {"SIMULATED": True, "weights": training["weights"],
                                         "dataset_spec": dspec.to_json(), "imgsz": ev.imgsz, "conf": ev.conf,
                                         "train_seeds": list(ev.train_seeds), "patch_px": ev.patch_px})  # fmt: skip


def evaluate_yolo(out_dir: str | os.PathLike, ev: YoloEvaluationSpec,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Build (or reuse) the worlds, train YOLO on the train worlds' patches, measure it on the test worlds' patches;
    writes ``yolo_evaluation.json`` and ``yolo_model.json`` in ``out_dir`` (each whole or not at all)."""
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    worlds = prepare_worlds(out, ev, say)
    check_disjoint({s: worlds[s] for s in ev.train_seeds}, {s: worlds[s] for s in ev.test_seeds})
    work = out / "yolo"
    data = build_datasets(worlds, work, ev, say)
    train_ds, test_ds = data["datasets"]["train"], data["datasets"]["test"]
    training = train_yolo(train_ds, work, ev, say)
    say(f"[evaluate] YOLO trained on {training['train_images']} patches in {training['seconds']:.0f} s")
    model = load_model(None, training["weights"])
    box_metrics = evaluate(model, test_ds.yaml, split="val", imgsz=ev.imgsz)
    dets = predict_cells(model, data["patches"]["test"], test_ds.spec, conf=ev.conf, imgsz=ev.imgsz)
    results = []
    for seed in ev.test_seeds:
        mine = [d for d in dets if data["seed_of"][d.cell] == seed]
        rasters = [test_ds.raster(c["name"]) for c in test_ds.cells if data["seed_of"][c["name"]] == seed]
        results.append(score_world(seed, worlds[seed], mine, rasters, ev))
        r = results[-1]
        say(f"[evaluate] test world {seed}: {r.detected}/{r.mines} mines touched, {r.matched} matched, "
            f"{r.false_alarm_boxes}/{r.boxes} boxes touch no mine")  # fmt: skip
    report = {
        "SIMULATED": True,
        "what": "YOLO trained on the train worlds' patches only, measured on the test worlds' patches",
        "protocol": {"train_seeds": list(ev.train_seeds), "test_seeds": list(ev.test_seeds),
                     "spec": {k: v for k, v in asdict(ev).items() if k not in ("train_seeds", "test_seeds")},
                     "train_dataset": dataset_summary(train_ds), "test_dataset": dataset_summary(test_ds)},
        "training": training,
        "held_out_box_metrics": box_metrics,
        "worlds": [r.as_json(ev) for r in results],
        "pooled": {**pooled(results, ev), **{f"box_{k}": v for k, v in box_metrics.items()}},
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    write_model_file(out, training, test_ds.spec, ev)
    write_json(out / "yolo_evaluation.json", report)
    return report

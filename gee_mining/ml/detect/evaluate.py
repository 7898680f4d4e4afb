"""Evaluating detectors: box metrics (ultralytics' validator), cell-level detection, IoU with polygons, k-fold CV.

- :func:`evaluate` : mAP50, mAP50-95, precision and recall of a model on a split of a dataset
  yaml (ultralytics' ``model.val``, the COCO-style metrics its papers report).
- :func:`cell_metrics` : does a cell with a mine get a box, does a negative cell stay empty
  (a cell is "detected" when it has a box scoring at least ``conf``): confusion counts,
  precision, recall, accuracy.
- :func:`polygon_iou` : how well boxes mapped back to EPSG:4326 cover the true polygons.
- :func:`cross_validate` : train and evaluate on each geographic fold; a summary (mean, std) across folds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from gee_mining.errors import InputError
from gee_mining.ml.detect.dataset import DetectDataset, to_crs
from gee_mining.ml.detect.offline import OFFLINE_TRAIN_ARGS, no_network, prepare_ultralytics
from gee_mining.ml.detect.predict import predict_cells
from gee_mining.ml.detect.splits import geographic_folds
from gee_mining.ml.detect.train import _dataset_imgsz, load_model, train

BOX_METRICS = ("map50", "map50_95", "precision", "recall")


def untrained_model(model_yaml: str = "yolo11n.yaml", channels: int = 3, nc: int = 1, seed: int = 0):
    """An ``ultralytics.YOLO`` with freshly initialised weights for ``channels`` inputs: the baseline to beat."""
    prepare_ultralytics()
    # deferred: heavy optional dependencies (the `yolo` extra), imported only once ultralytics is prepared
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    with no_network():
        yolo = YOLO(str(model_yaml))
        yolo.model = DetectionModel(str(model_yaml), ch=channels, nc=nc, verbose=False)
        yolo.model.args = dict(yolo.model.args) if hasattr(yolo.model, "args") else {}
    return yolo


def evaluate(
    model,
    data: str | os.PathLike,
    split: str = "val",
    imgsz: int | None = None,
    batch: int = 16,
    device: str | None = "cpu",
    conf: float = 0.001,
    iou: float = 0.7,
    **val_args: Any,
) -> dict[str, float]:
    """mAP50, mAP50-95, precision, recall of ``model`` (a YOLO or weights path) on ``split`` of ``data``."""

    if isinstance(model, (str, os.PathLike)):
        model = load_model(None, model)
    data = Path(data)
    if not data.is_file():
        raise InputError(f"dataset yaml {data} does not exist.")
    args = {"plots": False, "workers": 0, **val_args}
    args.pop("amp", None)
    with no_network():
        m = model.val(
            data=str(data.resolve()),
            split=split,
            imgsz=imgsz or _dataset_imgsz(data),
            batch=batch,
            device=device,
            conf=conf,
            iou=iou,
            verbose=False,
            **args,
        )
    return {
        "map50": float(m.box.map50),
        "map50_95": float(m.box.map),
        "precision": float(m.box.mp),
        "recall": float(m.box.mr),
    }


def cell_metrics(scores: dict[str, float], truth: dict[str, bool], conf: float = 0.25) -> dict[str, float]:
    """Cell-level detection: ``scores`` = best box score per cell (absent = no box), ``truth`` = cell has a mine."""
    tp = sum(1 for c, t in truth.items() if t and scores.get(c, 0.0) >= conf)
    fn = sum(1 for c, t in truth.items() if t and scores.get(c, 0.0) < conf)
    fp = sum(1 for c, t in truth.items() if not t and scores.get(c, 0.0) >= conf)
    tn = sum(1 for c, t in truth.items() if not t and scores.get(c, 0.0) < conf)
    n = tp + fn + fp + tn

    def ratio(a, b):
        return a / b if b else float("nan")

    return {
        "cells": n,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "cell_precision": ratio(tp, tp + fp),
        "cell_recall": ratio(tp, tp + fn),
        "cell_accuracy": ratio(tp + tn, n),
    }


def dataset_cell_metrics(model, ds: DetectDataset, cells: Sequence[str], conf: float = 0.25, **predict_args) -> dict:
    """:func:`cell_metrics` of ``model`` on these cells of the dataset (truth: the cell has a label box)."""

    sources = [ds.cell(c)["source"] for c in cells]
    dets = predict_cells(model, sources, ds.spec, conf=min(conf, 0.05), **predict_args)
    scores: dict[str, float] = {}
    for d in dets:
        scores[d.cell] = max(scores.get(d.cell, 0.0), d.score)
    truth = {c: bool(ds.cell(c)["boxes"]) for c in cells}
    return cell_metrics(scores, truth, conf)


def polygon_iou(detections, polygons: Sequence, min_iou: float = 0.0, footprints=None) -> list[dict]:
    """For each detection, the true polygon (EPSG:4326) it overlaps most and the IoU of their areas.

    Areas are measured in the detection's UTM CRS (the polygon reprojected with pyproj). A box is
    compared with the whole polygon, so an irregular polygon's IoU with even its exact bounding box
    is below 1 (the fill ratio of the polygon in its box). ``footprints`` (``{cell: polygon in the
    cell's CRS}``, e.g. ``ds.raster(name).lattice.outline()``): compare with the part of the polygon inside
    the detection's cell only, the part the detector could see.
    """

    out = []
    for d in detections:
        best, best_iou = None, 0.0
        for i, p in enumerate(polygons):
            if p is None or not p.intersects(d.geometry):
                continue
            local = to_crs(p, d.epsg)
            if not local.is_valid:  # a valid lon/lat ring can touch itself once reprojected
                local = shapely.make_valid(local)
            if footprints is not None and d.cell in footprints:
                local = shapely.intersection(local, footprints[d.cell])
            inter = shapely.intersection(local, d.crs_geometry).area
            union = shapely.union(local, d.crs_geometry).area
            iou = inter / union if union else 0.0
            if iou > best_iou:
                best, best_iou = i, iou
        if best_iou >= min_iou:
            out.append({"cell": d.cell, "score": d.score, "polygon": best, "iou": best_iou})
    return out


def label_iou(detections, ds: DetectDataset) -> list[dict]:
    """For each detection, the IoU (shapely, pixel space) with the best-matching label box of its cell (0 if none).

    The label box is the bounding box of the polygon part's visible piece, so this is the IoU a box
    detector can reach 1 on; :func:`polygon_iou` compares with the polygon itself.
    """

    out = []
    for d in detections:
        pred = shapely.box(*d.pixel_box)
        best, best_iou = None, 0.0
        for b in ds.cell(d.cell)["boxes"]:
            true = shapely.box(b["x0"], b["y0"], b["x1"], b["y1"])
            union = shapely.union(pred, true).area
            iou = shapely.intersection(pred, true).area / union if union else 0.0
            if iou > best_iou:
                best, best_iou = b["polygon"], iou
        out.append({"cell": d.cell, "score": d.score, "polygon": best, "iou": best_iou})
    return out


def iou_summary(matches: Sequence[dict]) -> dict[str, float]:
    """Mean, median, and shares at or above 0.5 and 0.25 of the ``iou`` of matches (NaN when none)."""

    v = np.array([m["iou"] for m in matches], float)
    if not v.size:
        return {"n": 0, "mean": math.nan, "median": math.nan, "share_ge_0.5": math.nan, "share_ge_0.25": math.nan}
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "share_ge_0.5": float((v >= 0.5).mean()),
        "share_ge_0.25": float((v >= 0.25).mean()),
    }


@dataclass
class CVResult:
    """Per-fold metrics and their mean and standard deviation across folds."""

    folds: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)


def summarise(folds: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    out = {}
    for k in keys:
        vals = [float(f[k]) for f in folds if k in f and not math.isnan(float(f[k]))]
        if vals:
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            out[k] = {"mean": mean, "std": std, "min": min(vals), "max": max(vals), "n": len(vals)}
    return out


def cross_validate(
    ds: DetectDataset,
    k: int = 5,
    by: str = "region",
    region_deg: float = 1.0,
    table=None,
    model: str = "yolo11n.yaml",
    weights: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "runs/detect/cv",
    seed: int = 0,
    conf: float = 0.25,
    progress: Callable[[str], None] | None = None,
    stratify: bool = False,
    **train_args: Any,
) -> CVResult:
    """Train on k-1 geographic folds, evaluate on the held-out one, k times; box and cell metrics per fold."""

    folds = geographic_folds(ds, k, by, region_deg, table, seed, stratify)
    rows = []
    for fold in folds:
        yaml = ds.write_split(fold.name, fold.train, fold.val)
        result = train(yaml, model, weights, out_dir, fold.name, seed=seed, progress=progress, **train_args)

        trained = load_model(None, result.best)
        device = train_args.get("device", "cpu")
        box = evaluate(trained, yaml, imgsz=train_args.get("imgsz"), device=device)
        cells = dataset_cell_metrics(trained, ds, fold.val, conf=conf, device=device)
        rows.append({"fold": fold.name, "train_cells": len(fold.train), "val_cells": len(fold.val), **box, **cells})
        if progress:
            progress(f"[detect] {fold.name}: mAP50 {box['map50']:.3f}, cell recall {cells['cell_recall']:.2f}")
    keys = (*BOX_METRICS, "cell_precision", "cell_recall", "cell_accuracy")
    return CVResult(rows, summarise(rows, keys))


__all__ = [
    "OFFLINE_TRAIN_ARGS",
    "CVResult",
    "cell_metrics",
    "cross_validate",
    "dataset_cell_metrics",
    "evaluate",
    "iou_summary",
    "label_iou",
    "polygon_iou",
    "summarise",
    "untrained_model",
]

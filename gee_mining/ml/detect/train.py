"""Training YOLO detectors with ultralytics, offline.

``train(data, model="yolo11n.yaml")`` builds the architecture from its yaml (ultralytics
ships the yamls; nothing is downloaded) with as many input channels as the dataset's
``channels:``; ``weights=`` starts from a checkpoint you have on disk (a ``.pt``: its
matching layers are loaded into the yaml's model, or it is the model itself when no yaml
is given). Every other keyword goes to ``ultralytics.YOLO.train`` unchanged (``epochs``,
``imgsz``, ``batch``, ``lr0``, ``mosaic``, ``optimizer``, ...), so all its settings are
reachable. The run happens inside :func:`~gee_mining.ml.detect.offline.no_network`, with
``plots=False``, ``amp=False`` and ``workers=0`` unless you pass them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gee_mining.errors import InputError
from gee_mining.ml.detect.offline import (
    OFFLINE_TRAIN_ARGS,
    is_model_yaml,
    no_network,
    prepare_ultralytics,
    resolve_weights,
)

DEFAULT_MODEL = "yolo11n.yaml"


@dataclass
class TrainResult:
    """What a training run left: its folder, best and last weights, final validation metrics and speed."""

    run_dir: Path
    best: Path
    last: Path
    metrics: dict[str, float]
    seconds: float
    train_images: int
    epochs: int
    images_per_s: float  # training images per second (excluding validation)
    history: list[dict[str, float]] = field(default_factory=list)


def load_model(
    model: str | os.PathLike | None = DEFAULT_MODEL, weights: str | os.PathLike | None = None, task="detect"
):
    """An ``ultralytics.YOLO``: from a model yaml (no download), from a weights file, or a yaml with weights loaded.

    A name such as ``yolo11n.pt`` that is not a file is an error naming the file: gee-mining never
    lets ultralytics download it.
    """
    prepare_ultralytics()
    from ultralytics import YOLO  # deferred: heavy optional dependency (the `yolo` extra)

    with no_network():
        if model is not None and is_model_yaml(model):
            yolo = YOLO(str(model), task=task)
            if weights is not None:
                yolo.load(str(resolve_weights(weights)))
            return yolo
        source = weights if model is None else model
        if source is None:
            raise InputError("give a model yaml (e.g. 'yolo11n.yaml') or a weights file.")
        return YOLO(str(resolve_weights(source)), task=task)


def _metrics_of(trainer_metrics: dict | None) -> dict[str, float]:
    keys = {
        "metrics/mAP50(B)": "map50",
        "metrics/mAP50-95(B)": "map50_95",
        "metrics/precision(B)": "precision",
        "metrics/recall(B)": "recall",
    }
    m = trainer_metrics or {}
    return {v: float(m[k]) for k, v in keys.items() if k in m}


class _EpochRecord:
    """Ultralytics callbacks that keep each epoch's validation metrics (``history``) and the training time and
    image count (``timing``), and say each epoch's mAP50 through ``progress``."""

    def __init__(self, name: str, progress: Callable[[str], None] | None):
        self.name, self.progress = name, progress
        self.history: list[dict[str, float]] = []
        self.timing = {"train_s": 0.0, "start": 0.0, "images": 0}

    def attach(self, yolo: Any) -> None:
        yolo.add_callback("on_train_epoch_start", self.on_train_epoch_start)
        yolo.add_callback("on_train_epoch_end", self.on_train_epoch_end)
        yolo.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)

    def on_train_epoch_start(self, trainer: Any) -> None:
        self.timing["start"] = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any) -> None:
        self.timing["train_s"] += time.perf_counter() - self.timing["start"]
        self.timing["images"] = len(trainer.train_loader.dataset)

    def on_fit_epoch_end(self, trainer: Any) -> None:
        row = {"epoch": min(trainer.epoch + 1, trainer.epochs), **_metrics_of(trainer.metrics)}
        if self.history and self.history[-1]["epoch"] >= row["epoch"]:
            return  # the final validation of best.pt fires this callback again
        self.history.append(row)
        if self.progress:
            self.progress(
                f"[detect] {self.name}: epoch {row['epoch']}/{trainer.epochs} mAP50 {row.get('map50', 0):.3f}"
            )


def train(
    data: str | os.PathLike,
    model: str | os.PathLike | None = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "runs/detect",
    name: str = "train",
    epochs: int = 50,
    imgsz: int | None = None,
    batch: int = 16,
    device: str | None = "cpu",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    **settings: Any,
) -> TrainResult:
    """Train a detector on a dataset yaml (``data.yaml`` or a split's ``data_<name>.yaml``).

    ``imgsz`` defaults to the dataset's largest image side (read from ``dataset.json`` when present,
    else 640). Results go to ``<out_dir>/<name>/`` (``weights/best.pt``, ``weights/last.pt``,
    ``results.csv``); an existing run of that name is replaced.
    """
    data = Path(data)
    if not data.is_file():
        raise InputError(f"dataset yaml {data} does not exist: write one with `gee-mining detect dataset`.")
    if imgsz is None:
        imgsz = _dataset_imgsz(data)
    yolo = load_model(model, weights)
    args = {**OFFLINE_TRAIN_ARGS, **settings}
    out = Path(out_dir).resolve()
    record = _EpochRecord(name, progress)
    record.attach(yolo)
    t0 = time.perf_counter()
    with no_network():
        yolo.train(
            data=str(data.resolve()),
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device=device,
            seed=seed,
            project=str(out),
            name=name,
            exist_ok=True,
            verbose=False,
            **args,
        )
    seconds = time.perf_counter() - t0
    trainer = yolo.trainer
    history, timing = record.history, record.timing
    n_epochs = len(history) or epochs
    return TrainResult(
        run_dir=Path(trainer.save_dir),
        best=Path(trainer.best),
        last=Path(trainer.last),
        metrics=_metrics_of(trainer.metrics),
        seconds=seconds,
        train_images=timing["images"],
        epochs=n_epochs,
        images_per_s=timing["images"] * n_epochs / timing["train_s"] if timing["train_s"] else 0.0,
        history=history,
    )


def _dataset_imgsz(data: Path) -> int:

    meta = data.parent / "dataset.json"
    if meta.is_file():
        cells = json.loads(meta.read_text())["cells"]
        side = max(max(c["width"], c["height"]) for c in cells)
        return max(32, int(-(-side // 32) * 32))
    return 640

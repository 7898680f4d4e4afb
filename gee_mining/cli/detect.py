"""``gee-mining detect patches | dataset | train | evaluate | predict | cv``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from gee_mining.cli.common import parse_key_values
from gee_mining.cli.output import add_json_option, emit, print_figures, progress
from gee_mining.io.grid_table import read_grid_table
from gee_mining.ml.detect.dataset import (
    DatasetSpec,
    build_dataset,
    cut_patches,
    dataset_summary,
    keep_near_mines,
    open_dataset,
)
from gee_mining.ml.detect.evaluate import cross_validate, dataset_cell_metrics, evaluate
from gee_mining.ml.detect.predict import merge_detections, predict_cells, write_detections, zero_shot
from gee_mining.ml.detect.splits import geographic_split
from gee_mining.ml.detect.train import load_model, train


def _settings(pairs: list[str] | None) -> dict:
    """``key=value`` pairs (ultralytics' own setting names) to keyword arguments."""

    return parse_key_values(pairs, "setting", "lr0=0.005 or mosaic=0 (an ultralytics setting)")


def _dataset(args) -> int:

    spec = DatasetSpec(
        bands=tuple(args.bands.split(",")),
        scaling=tuple((k, tuple(float(x) for x in v.split(":"))) for k, v in (s.split("=") for s in args.scale or [])),
        min_box_px=args.min_box_px,
        min_visible=args.min_visible,
        negatives=not args.no_negatives,
    )
    ds = build_dataset(args.cells, args.polygons, args.out, spec, overwrite=args.overwrite, progress=progress(args))
    emit(args, {**dataset_summary(ds), "yaml": str(ds.yaml)},
         lambda: print_figures("dataset", dataset_summary(ds), ds.yaml))  # fmt: skip
    return 0


def _patches(args) -> int:

    keep = None
    if args.polygons:
        mine_stride = args.mine_stride or args.stride or args.size
        other_stride = args.stride or args.size
        keep = keep_near_mines(args.polygons, mine_stride, other_stride)
        args.stride = math.gcd(mine_stride, other_stride)
    written = cut_patches(args.images, args.out, args.size, args.stride, keep=keep, overwrite=args.overwrite)
    print(f"{len(written)} patches of {args.size} x {args.size} px -> {args.out}")
    return 0


def _split_yaml(args) -> Path:

    ds = open_dataset(args.dataset)
    table = read_grid_table(args.table) if getattr(args, "table", None) else None
    fold = geographic_split(ds, args.val_fraction, args.by, args.region_deg, table, args.seed, args.stratify)
    return ds.write_split("split", fold.train, fold.val)


def _train(args) -> int:

    yaml = _split_yaml(args) if args.val_fraction else Path(args.dataset) / "data.yaml"
    r = train(yaml, args.model, args.weights, args.out, args.name, epochs=args.epochs, imgsz=args.imgsz,
              batch=args.batch, device=args.device, seed=args.seed, progress=progress(args), **_settings(args.set))  # fmt: skip
    figures = {"best": str(r.best), **r.metrics, "images_per_s": round(r.images_per_s, 1)}
    emit(args, figures, lambda: print_figures("trained", figures))
    return 0


def _evaluate(args) -> int:

    ds = open_dataset(args.dataset)
    yaml = Path(args.data) if args.data else ds.yaml
    model = load_model(None, args.weights)
    box = evaluate(model, yaml, split=args.split, device=args.device)
    cells = [Path(line.strip()).stem for line in _split_list(yaml, args.split)]
    figures = {**box, **dataset_cell_metrics(model, ds, cells, conf=args.conf, device=args.device)}
    emit(args, figures, lambda: print_figures(f"{args.split} split", figures))
    return 0


def _split_list(yaml: Path, split: str) -> list[str]:
    for line in yaml.read_text().splitlines():
        if line.startswith(f"{split}:"):
            return (yaml.parent / json.loads(line.split(":", 1)[1].strip())).read_text().split()
    return []


def _predict(args) -> int:

    spec = open_dataset(args.dataset).spec if args.dataset else DatasetSpec(bands=tuple(args.bands.split(",")))
    if args.prompt:
        dets = zero_shot(args.weights, args.cells, spec, prompts=args.prompt, conf=args.conf, device=args.device)
    else:
        dets = predict_cells(
            args.weights, args.cells, spec, conf=args.conf, device=args.device, progress=progress(args)
        )
    merged = merge_detections(dets) if not args.no_merge else dets
    path = write_detections(merged, args.out)
    print(f"{len(merged)} detections ({len(dets)} boxes) -> {path}")
    return 0


def _cv(args) -> int:

    ds = open_dataset(args.dataset)
    table = read_grid_table(args.table) if args.table else None
    res = cross_validate(ds, args.k, args.by, args.region_deg, table, args.model, args.weights, args.out,
                         args.seed, stratify=args.stratify, epochs=args.epochs, batch=args.batch,
                         device=args.device, progress=progress(args), **_settings(args.set))  # fmt: skip
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "cv.json").write_text(json.dumps({"folds": res.folds, "summary": res.summary}, indent=1))
    emit(args, res.summary, lambda: print_figures("cross-validation", res.summary, Path(args.out) / "cv.json"))
    return 0


def _split_args(p) -> None:
    p.add_argument("--by", default="region", help="group cells by region (lat/lon blocks), utm, country, or a column")
    p.add_argument("--region-deg", type=float, default=1.0, help="block size in degrees for --by region")
    p.add_argument("--table", help="grid table (.parquet/.csv) for --by country or another column")
    p.add_argument("--seed", type=int, default=0, help="seed of the geographic split")
    p.add_argument("--stratify", action="store_true", help="keep the share of cells with mines alike in every split")


def _train_args(p) -> None:
    p.add_argument("--model", default="yolo11n.yaml", help="model yaml (built offline) or a weights file")
    p.add_argument("--weights", help="start from these weights (a .pt file on disk; never downloaded)")
    p.add_argument("--epochs", type=int, default=50, help="training epochs")
    p.add_argument("--batch", type=int, default=16, help="images per training batch")
    p.add_argument("--device", default="cpu", help="torch device: cpu, 0 (the first GPU), 0,1 ...")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="any ultralytics train setting, e.g. lr0=0.005")


def add_cli(subparsers) -> None:
    """Add ``gee-mining detect ...`` to the CLI's subparsers."""
    det = subparsers.add_parser("detect", help="YOLO mine detection: datasets, training, evaluation, predictions")
    sub = det.add_subparsers(dest="detect_command", required=True)
    _add_patches(sub)
    _add_dataset(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_cv(sub)


def _add_patches(sub) -> None:
    """``gee-mining detect patches``."""
    p = sub.add_parser("patches", help="cut exported GeoTIFFs (tiles, larger cells) into patch GeoTIFFs")
    p.add_argument("--images", required=True, help="folder of GeoTIFFs (or one file)")
    p.add_argument("--out", required=True, help="folder for the patch GeoTIFFs")
    p.add_argument("--size", type=int, default=128, help="patch side in pixels")
    p.add_argument("--stride", type=int, help="pixels between patches (default: --size; less = overlapping)")
    p.add_argument("--polygons", help="mine polygons: with --mine-stride, patches holding a mine are cut more densely")
    p.add_argument("--mine-stride", type=int, help="pixels between patches that hold a mine (needs --polygons)")
    p.add_argument("--overwrite", action="store_true", help="replace patches already in --out")
    p.set_defaults(func=_patches)


def _add_dataset(sub) -> None:
    """``gee-mining detect dataset``."""
    p = sub.add_parser("dataset", help="YOLO images + labels + data.yaml from per-cell GeoTIFFs and mine polygons")
    p.add_argument("--cells", required=True, help="folder of per-cell GeoTIFFs (<cell name>.tif)")
    p.add_argument("--polygons", required=True, help="polygon file, or an Earth Engine table id")
    p.add_argument("--out", required=True, help="dataset folder (images/, labels/, data.yaml)")
    p.add_argument("--bands", default="B4,B3,B2", help="comma-separated bands/indices (3 = PNG, else multi-page TIFF)")
    p.add_argument("--scale", nargs="*", metavar="BAND=LO:HI", help="8-bit range per band (default docs/detect.md)")
    p.add_argument("--min-box-px", type=float, default=2.0, help="smallest box side kept, pixels (default 2)")
    p.add_argument("--min-visible", type=float, default=0.2,
                   help="keep a polygon part when this share of it is in the cell, or it covers this share "
                        "of the cell (default 0.2)")  # fmt: skip
    p.add_argument("--no-negatives", action="store_true", help="leave out cells without boxes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    add_json_option(p, "the dataset's counts (cells, images, boxes) and its data.yaml")
    p.set_defaults(func=_dataset)


def _add_train(sub) -> None:
    """``gee-mining detect train``."""
    p = sub.add_parser("train", help="train with ultralytics, offline")
    p.add_argument("--dataset", required=True, help="folder written by `detect dataset`")
    p.add_argument("--val-fraction", type=float, default=0.25, help="geographic hold-out (0: train and val on all)")
    p.add_argument("--out", default="runs/detect", help="folder of training runs")
    p.add_argument("--name", default="train", help="this run's subfolder of --out")
    p.add_argument("--imgsz", type=int, help="training image size in pixels (default: the dataset's image size)")
    _train_args(p)
    _split_args(p)
    add_json_option(p, "the best weights' path and validation figures")
    p.set_defaults(func=_train)


def _add_evaluate(sub) -> None:
    """``gee-mining detect evaluate``."""
    p = sub.add_parser("evaluate", help="mAP50, mAP50-95, precision, recall and cell-level metrics")
    p.add_argument("--dataset", required=True, help="folder written by `detect dataset`")
    p.add_argument("--weights", required=True, help="trained weights (.pt file on disk)")
    p.add_argument("--data", help="a split yaml of the dataset (default data.yaml)")
    p.add_argument("--split", default="val", help="which split of the yaml to measure: val, test or train")
    p.add_argument("--conf", type=float, default=0.25, help="score for a cell to count as detected")
    p.add_argument("--device", default="cpu", help="torch device: cpu, 0 (the first GPU) ...")
    add_json_option(p, "the box and cell figures")
    p.set_defaults(func=_evaluate)


def _add_predict(sub) -> None:
    """``gee-mining detect predict``."""
    p = sub.add_parser("predict", help="boxes on per-cell GeoTIFFs -> EPSG:4326 polygons (GeoJSON / GeoParquet)")
    p.add_argument("--cells", required=True, help="folder of per-cell GeoTIFFs (<cell name>.tif)")
    p.add_argument("--weights", required=True, help="a .pt file on disk (yours, or a COCO / YOLO-World model)")
    p.add_argument("--dataset", help="the training dataset (for its bands and scaling)")
    p.add_argument("--bands", default="B4,B3,B2", help="bands when no --dataset is given")
    p.add_argument("--prompt", nargs="*", help="open-vocabulary prompts (YOLO-World), e.g. 'open-pit mine'")
    p.add_argument("--conf", type=float, default=0.25, help="smallest box score kept")
    p.add_argument("--device", default="cpu", help="torch device: cpu, 0 (the first GPU) ...")
    p.add_argument("--no-merge", action="store_true", help="keep boxes of neighbouring cells apart")
    p.add_argument("--out", required=True, help=".geojson or .parquet")
    p.set_defaults(func=_predict)


def _add_cv(sub) -> None:
    """``gee-mining detect cv``."""
    p = sub.add_parser("cv", help="k-fold cross-validation by geography, with a summary across folds")
    p.add_argument("--dataset", required=True, help="folder written by `detect dataset`")
    p.add_argument("--k", type=int, default=5, help="number of geographic folds")
    p.add_argument("--out", default="runs/detect/cv", help="folder of the folds' runs and cv.json")
    _train_args(p)
    _split_args(p)
    add_json_option(p, "the summary across folds")
    p.set_defaults(func=_cv)

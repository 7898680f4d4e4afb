"""Does the detector learn on the simulated world? And how fast is it on this CPU?

1. A simulated world (default 23.04 km, 3 months, ~30-40 generated mines) is exported through the
   real ``ee`` client as 384 x 384 px tiles (composite + label bands, ``computePixels``).
2. ``cut_patches`` cuts 128 x 128 px patches (1280 m) from the tiles: every 32 px where a mine is
   (overlapping, shifted views of each mine), every 128 px elsewhere (background images).
3. RGB (B4, B3, B2) and 12-band (B1..B12) datasets; one geographic split by tile, stratified on
   "has a mine" (a tile's patches are all in train or all in validation, so no pixel is in both).
4. For each input: validation mAP50 of an untrained yolo11n (same split) and of yolo11n trained from
   its yaml; predictions on the validation patches (score >= 0.25) mapped to EPSG:4326, their IoU
   with the true polygons and with the label boxes (shapely); training images/s and inference
   patches/s. A picture of predicted boxes on validation patches (``--figure``).

    PYTHONPATH=. python bench/bench_detect.py [--epochs 15] [--out DIR (reused: world and tiles kept)]
            [--figure docs/detect_predictions.jpg]

No GPU is used (``device=cpu``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

TILE = 384


def export_tiles(out: Path, size_km: float, months: int, seed: int) -> tuple[object, float]:
    """The world and its tiles (reused when ``out`` already holds them)."""
    import ee

    import gee_mining
    from gee_mining.contracts.lattice import PixelGrid
    from gee_mining.steps import labels, sentinel2
    from gee_mining.world import generate_world
    from gee_mining.world.manifest import WorldManifest

    t0 = time.perf_counter()
    manifest, n = out / "world" / "manifest.json", int(size_km * 1000 // (TILE * 10))
    if manifest.is_file() and len(list((out / "tiles").glob("t*.tif"))) == n * n:
        world = WorldManifest.read(manifest)  # world and tiles of an earlier run in --out: nothing to export
        if (world.parameters["size_km"], world.parameters["months"]) == (size_km, months):
            return world, 0.0
    world = generate_world(out / "world", size_km=size_km, months=months, seed=seed, project="bench-detect")
    gee_mining.connect("local", project="bench-detect", catalog=world.catalog)
    fc = ee.FeatureCollection(world.asset_ids["mines"])
    x0, top = world.grid["origin"]
    size = world.grid["size_m"]
    n = int(size // (TILE * 10))
    region = ee.Geometry.Rectangle([x0, top - size, x0 + size, top], world.grid["crs"], False)
    composite = sentinel2.composite(region, start=f"{world.parameters['year']}-01-01",
                                    end=f"{world.parameters['year']}-{1 + months:02d}-01")  # fmt: skip
    tiles = out / "tiles"
    tiles.mkdir(exist_ok=True)
    for i in range(n):
        for j in range(n):
            path = tiles / f"t{i}{j}.tif"
            if path.exists():
                continue
            grid = PixelGrid(world.grid["crs"], (10.0, 0.0, x0 + i * TILE * 10, 0.0, -10.0, top - j * TILE * 10),
                             TILE, TILE)  # fmt: skip
            image = composite.addBands(labels.label_bands(fc, grid))
            data = ee.data.computePixels({"expression": image, "fileFormat": "GEO_TIFF", "grid": grid.ee_grid()})
            path.with_suffix(".partial").write_bytes(data)
            path.with_suffix(".partial").rename(path)
    return world, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--size-km", type=float, default=23.04)
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--pos-stride", type=int, default=32)
    ap.add_argument("--neg-stride", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--inputs", default="rgb,ms12")
    ap.add_argument("--out", default=None)
    ap.add_argument("--figure", default=None, help="write a picture of predicted boxes (PNG/JPEG)")
    ap.add_argument("--reuse", action="store_true", help="reuse the trained weights and timings of a previous run")
    ap.add_argument("--speed-rounds", type=int, default=2, help="side-by-side speed rounds (1 epoch + predict each)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_detect_")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from gee_mining.ml.detect.offline import no_network, prepare_ultralytics

    prepare_ultralytics(out / "ultralytics")
    import shapely
    import torch

    from gee_mining.contracts.bands import BANDS
    from gee_mining.ml.detect.dataset import (
        DatasetSpec,
        build_dataset,
        cut_patches,
        dataset_summary,
        keep_near_mines,
        load_polygons,
        to_crs,
    )
    from gee_mining.ml.detect.evaluate import evaluate, iou_summary, label_iou, polygon_iou, untrained_model
    from gee_mining.ml.detect.figures import save_boxes_figure
    from gee_mining.ml.detect.predict import predict_cells
    from gee_mining.ml.detect.splits import geographic_split
    from gee_mining.ml.detect.train import load_model, train

    t_all = time.perf_counter()
    world, t_export = export_tiles(out, args.size_km, args.months, args.seed)
    polygons = load_polygons(out / "world" / "tables" / "mines.geojson")
    print(f"world + {len(list((out / 'tiles').glob('*.tif')))} tiles of {TILE} px: {t_export:.0f} s", flush=True)

    keep = keep_near_mines(polygons, args.pos_stride, args.neg_stride)

    t = time.perf_counter()
    patches = out / f"patches_{args.patch}_{args.pos_stride}_{args.neg_stride}"
    if not patches.exists():
        cut_patches(out / "tiles", patches, args.patch, math.gcd(args.pos_stride, args.neg_stride), keep=keep)
    t_cut = time.perf_counter() - t
    report = {
        "machine": f"{os.cpu_count()} CPUs (shared), torch {torch.__version__}, threads {torch.get_num_threads()}, "
        "no GPU lent",
        "world": {"size_km": args.size_km, "months": args.months, "seed": args.seed, "mines": len(polygons)},
        "export_s": round(t_export, 1),
        "cut_s": round(t_cut, 1),
        "settings": {k: getattr(args, k) for k in ("epochs", "patch", "pos_stride", "neg_stride", "batch")},
        "runs": {},
    }
    inputs = {"rgb": ("B4", "B3", "B2"), "ms12": BANDS}
    figure_done = False
    trained_runs = {}
    for label in args.inputs.split(","):
        ds = build_dataset(patches, polygons, out / f"ds_{label}", DatasetSpec(bands=inputs[label]), overwrite=True)
        tile_of = {c["name"]: {"tile": c["name"].rsplit("_", 2)[0]} for c in ds.cells}
        split = geographic_split(ds, 0.25, by="tile", table=tile_of, seed=0, stratify=True)
        yaml = ds.write_split("bench", split.train, split.val)
        previous = json.loads((out / "bench_detect.json").read_text())["runs"].get(label) if args.reuse else None
        with no_network() as refused:
            base = evaluate(untrained_model(channels=ds.spec.channels), yaml, imgsz=args.patch)
            if previous:
                best = out / "runs" / label / "weights" / "best.pt"
                timing = {k: previous[k] for k in ("train_s", "train_images_per_s")}
            else:
                r = train(yaml, "yolo11n.yaml", out_dir=out / "runs", name=label, epochs=args.epochs,
                          imgsz=args.patch, batch=args.batch, flipud=0.5, val=False)  # fmt: skip
                best = r.best
                timing = {"train_s": round(r.seconds, 1), "train_images_per_s": round(r.images_per_s, 1)}
            model = load_model(None, best)
            trained = evaluate(model, yaml, imgsz=args.patch)
            val_sources = [ds.cell(c)["source"] for c in split.val]
            t = time.perf_counter()
            dets = predict_cells(model, val_sources, ds.spec, conf=0.25, imgsz=args.patch)
            infer_s = time.perf_counter() - t
        assert not refused, refused
        trained_runs[label] = (ds, yaml, best, val_sources)
        footprints = {c: ds.raster(c).lattice.outline() for c in split.val}
        per_box = label_iou(dets, ds)
        per_poly = polygon_iou(dets, polygons, footprints=footprints)
        poly_whole = iou_summary(polygon_iou(dets, polygons))
        # the ceiling for a box: IoU of each validation label box with its polygon's part inside the patch
        ceiling = []
        for c in split.val:
            raster = ds.raster(c)
            for b in ds.cell(c)["boxes"]:
                part = shapely.intersection(
                    to_crs(polygons[b["polygon"]], raster.lattice.epsg), raster.lattice.outline()
                )
                xs, ys = raster.lattice.pixel_to_crs([b["x0"], b["x1"]], [b["y0"], b["y1"]])
                box = shapely.box(min(xs), min(ys), max(xs), max(ys))
                ceiling.append({"iou": part.intersection(box).area / part.union(box).area})
        pos_val = [c for c in split.val if ds.cell(c)["boxes"]]
        run = {
            "dataset": dataset_summary(ds),
            "train_patches": len(split.train),
            "val_patches": len(split.val),
            "val_positive_patches": len(pos_val),
            "val_tiles": sorted({tile_of[c]["tile"] for c in split.val}),
            "untrained": base,
            "trained": trained,
            **timing,
            "inference_patches_per_s": round(len(val_sources) / infer_s, 1),
            "detections_val": len(dets),
            "iou_with_label_box": iou_summary(per_box),
            "iou_with_polygon_in_patch": iou_summary(per_poly),
            "iou_with_whole_polygon": poly_whole,
            "iou_label_box_with_polygon_in_patch (ceiling)": iou_summary(ceiling),
            "per_box": [
                {
                    "cell": m["cell"],
                    "score": round(m["score"], 3),
                    "iou_label_box": round(m["iou"], 3),
                    "iou_polygon_in_patch": round(q["iou"], 3),
                }
                for m, q in zip(per_box, per_poly, strict=True)
            ],
            "network_attempts": len(refused),
        }
        report["runs"][label] = run
        print(label, json.dumps({k: v for k, v in run.items() if k != "per_box"}, indent=1), flush=True)
        if args.figure and not figure_done:
            shown = sorted(pos_val, key=lambda c: -sum(d.score for d in dets if d.cell == c))
            shown = [c for c in shown if int(c.rsplit("_", 2)[1]) % 64 == 0 and int(c.rsplit("_", 2)[2]) % 64 == 0]
            negs = [c for c in split.val if not ds.cell(c)["boxes"]][:2]
            save_boxes_figure(args.figure, ds, shown[:10] + negs, dets,
                              title=f"SIMULATED world - validation patches ({label}): label boxes yellow dashed, "
                                    f"predictions red (score >= 0.25)", columns=6)  # fmt: skip
            figure_done = True
    # Speed side by side: the learning runs above may see different loads on a shared machine, so RGB and 12-band
    # alternate here, each round one training epoch from scratch and one prediction pass over the validation patches.
    speed: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.speed_rounds):
        for label, (ds, yaml, best, val_sources) in trained_runs.items():
            with no_network():
                r = train(yaml, "yolo11n.yaml", out_dir=out / "runs", name=f"speed_{label}", epochs=1,
                          imgsz=args.patch, batch=args.batch, flipud=0.5, val=False)  # fmt: skip
                model = load_model(None, best)
                t = time.perf_counter()
                predict_cells(model, val_sources, ds.spec, conf=0.25, imgsz=args.patch)
                infer = len(val_sources) / (time.perf_counter() - t)
            s = speed.setdefault(label, {"train_images_per_s": [], "inference_patches_per_s": []})
            s["train_images_per_s"].append(round(r.images_per_s, 1))
            s["inference_patches_per_s"].append(round(infer, 1))
    if speed:
        report["speed_side_by_side"] = speed
        if {"rgb", "ms12"} <= set(speed):
            report["speed_ratio_ms12_over_rgb"] = {
                k: round(sum(speed["ms12"][k]) / sum(speed["rgb"][k]), 2) for k in speed["rgb"]
            }
        print("speed", json.dumps(speed), report.get("speed_ratio_ms12_over_rgb"), flush=True)
    report["total_s"] = round(time.perf_counter() - t_all, 1)
    (out / "bench_detect.json").write_text(json.dumps(report, indent=1))
    print(f"total {report['total_s']:.0f} s; written {out / 'bench_detect.json'}")


if __name__ == "__main__":
    main()

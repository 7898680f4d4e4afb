"""Does the detector learn on the simulated world? And how fast is it on this CPU?

Builds a 4 km simulated world, exports 64 x 64 px cells (640 m) on an overlapping lattice
(cells every 320 m, so each mine is seen whole in some cell) through the real ``ee``
client, makes RGB and 12-band datasets, splits them by geography (0.01 degree blocks),
trains yolo11n from its yaml, and prints validation mAP50 of the trained model next to an
untrained one on the same split, IoU of predicted boxes with the true polygons, training
images/s and inference patches/s.

    PYTHONPATH=. python bench/bench_detect.py [--epochs 30] [--size-km 4]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--size-km", type=float, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_detect_"))
    from gee_mining.detect.offline import prepare_ultralytics

    prepare_ultralytics(out / "ultralytics")
    import ee

    import gee_mining
    from gee_mining import labels, sentinel2
    from gee_mining.detect.dataset import REFLECTANCE, DatasetSpec, build_dataset, dataset_summary, load_polygons
    from gee_mining.detect.evaluate import evaluate, polygon_iou, untrained_model
    from gee_mining.detect.predict import predict_cells
    from gee_mining.detect.splits import geographic_split
    from gee_mining.detect.train import load_model, train
    from gee_mining.grid import PixelGrid
    from gee_mining.world import generate_world

    t0 = time.perf_counter()
    world = generate_world(out / "world", size_km=args.size_km, months=3, seed=3, project="bench-detect")
    gee_mining.connect("local", project="bench-detect", catalog=world.catalog)
    fc = ee.FeatureCollection(world.asset_ids["mines"])
    x0, top = world.grid["origin"]
    size = world.grid["size_m"]
    cells = out / "cells"
    cells.mkdir(exist_ok=True)
    step, cell = 320, 640
    n = int((size - cell) // step) + 1
    composite = None
    for i in range(n):
        for j in range(n):
            cx, cy = x0 + i * step, top - j * step
            grid = PixelGrid(world.grid["crs"], (10.0, 0.0, cx, 0.0, -10.0, cy), 64, 64)
            if composite is None:
                row = {"epsg": int(world.grid["crs"].split(":")[1]), "cell_x": 0, "cell_y": 0, "cell_size": cell}
                composite = sentinel2.composite(ee.Geometry.Rectangle([x0, top - size, x0 + size, top],
                                                                      world.grid["crs"], False),
                                                start="2019-01-01", end="2019-04-01")  # fmt: skip
                del row
            image = composite.addBands(labels.label_bands(fc, grid))
            data = ee.data.computePixels({"expression": image, "fileFormat": "GEO_TIFF", "grid": grid.ee_grid()})
            (cells / f"p{i:02d}_{j:02d}.tif").write_bytes(data)
    t_export = time.perf_counter() - t0
    print(f"world + export of {n * n} cells: {t_export:.0f} s")
    polygons = load_polygons(Path(world.out_dir) / "tables" / "mines.geojson")
    report = {"cells": n * n, "export_s": round(t_export, 1), "runs": {}}
    for label, bands in (("rgb", ("B4", "B3", "B2")), ("ms12", REFLECTANCE)):
        ds = build_dataset(cells, polygons, out / f"ds_{label}", DatasetSpec(bands=bands), overwrite=True)
        split = geographic_split(ds, 0.3, by="region", region_deg=0.01, seed=1)
        yaml = ds.write_split("bench", split.train, split.val)
        base = evaluate(untrained_model(channels=ds.spec.channels), yaml)
        r = train(yaml, "yolo11n.yaml", out_dir=out / "runs", name=label, epochs=args.epochs, batch=16)
        model = load_model(None, r.best)
        trained = evaluate(model, yaml)
        val_sources = [ds.cell(c)["source"] for c in split.val]
        t = time.perf_counter()
        dets = predict_cells(model, val_sources, ds.spec, conf=0.25)
        infer_s = time.perf_counter() - t
        ious = [m["iou"] for m in polygon_iou(dets, polygons)]
        report["runs"][label] = {
            "dataset": dataset_summary(ds),
            "train_cells": len(split.train),
            "val_cells": len(split.val),
            "untrained": base,
            "trained": trained,
            "train_images_per_s": round(r.images_per_s, 1),
            "train_s": round(r.seconds, 1),
            "inference_patches_per_s": round(len(val_sources) / infer_s, 1),
            "detections_val": len(dets),
            "median_iou_with_polygon": round(sorted(ious)[len(ious) // 2], 3) if ious else math.nan,
        }
        print(label, json.dumps(report["runs"][label], indent=1))
    (out / "bench_detect.json").write_text(json.dumps(report, indent=1))
    print(f"total {time.perf_counter() - t0:.0f} s; written {out / 'bench_detect.json'}")


if __name__ == "__main__":
    main()

"""Detections on exported cells, turned back into geographic polygons.

``predict_cells(model, cells, spec)`` makes each per-cell GeoTIFF into the same 8-bit image
the dataset used (same bands, same fixed scaling), runs the detector, and maps each box
from pixel coordinates to the cell's CRS with the GeoTIFF's affine transform (column,
row -> x, y), then to EPSG:4326 (pyproj; the box's edges densified so the polygon follows
the projection's curvature). :func:`merge_detections` joins boxes of neighbouring cells
that overlap or touch across a cell edge (within ``gap_px`` pixels, in the shared UTM
CRS) into one polygon with the best score. :func:`write_detections` writes GeoJSON or
GeoParquet.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import shapely

from gee_mining.errors import InputError
from gee_mining.io.grid_table import geoparquet_metadata
from gee_mining.ml.detect.dataset import CellRaster, DatasetSpec, cell_image, find_cells, open_cell, write_image
from gee_mining.ml.detect.offline import NetworkRefused, no_network
from gee_mining.ml.detect.train import load_model


@dataclass
class Detection:
    """One box: its cell(s), score, class, pixel box, box in the cell's CRS, and polygon in EPSG:4326."""

    cell: str
    score: float
    cls: int
    name: str
    pixel_box: tuple[float, float, float, float]  # x0, y0, x1, y1 (columns, rows)
    epsg: int
    crs_geometry: Any  # shapely polygon in EPSG:epsg
    geometry: Any  # shapely polygon in EPSG:4326
    cells: list[str] = field(default_factory=list)

    def properties(self) -> dict:
        return {
            "cell": self.cell,
            "cells": ",".join(self.cells or [self.cell]),
            "score": round(self.score, 5),
            "class": self.cls,
            "class_name": self.name,
            "epsg": self.epsg,
            "x0": self.pixel_box[0],
            "y0": self.pixel_box[1],
            "x1": self.pixel_box[2],
            "y1": self.pixel_box[3],
        }


def crs_to_lonlat(geometry, epsg: int):

    tf = pyproj.Transformer.from_crs(int(epsg), 4326, always_xy=True)
    return shapely.transform(geometry, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


def box_to_geometry(cell: CellRaster, box: Sequence[float], densify: int = 8) -> tuple[Any, Any]:
    """``(polygon in the cell's CRS, polygon in EPSG:4326)`` of a pixel box ``(x0, y0, x1, y1)``."""

    x0, y0, x1, y1 = (float(v) for v in box)
    xs, ys = cell.lattice.pixel_to_crs([x0, x1, x1, x0], [y0, y0, y1, y1])
    local = shapely.Polygon(np.column_stack([xs, ys]))
    step = max(local.length / (4 * densify), 1e-6)
    return local, crs_to_lonlat(shapely.segmentize(local, step), cell.lattice.epsg)


def detection_from_box(cell: CellRaster, box, score: float, cls: int = 0, name: str = "mine") -> Detection:
    local, lonlat = box_to_geometry(cell, box)
    return Detection(
        cell.name, float(score), int(cls), name, tuple(float(v) for v in box), cell.lattice.epsg, local, lonlat
    )


def predict_cells(
    model,
    cells: Any,
    spec: DatasetSpec,
    conf: float = 0.25,
    iou: float = 0.7,
    imgsz: int | None = None,
    device: str | None = "cpu",
    batch: int = 16,
    max_det: int = 100,
    progress: Callable[[str], None] | None = None,
    **predict_args: Any,
) -> list[Detection]:
    """Run ``model`` (an ``ultralytics.YOLO`` or weights path) on per-cell GeoTIFFs; boxes as :class:`Detection`.

    ``spec`` must be the training dataset's (``open_dataset(root).spec``): the same bands and scaling.
    """

    if isinstance(model, (str, os.PathLike)):
        model = load_model(None, model)
    paths = find_cells(cells)
    rasters = [open_cell(p) for p in paths]
    if imgsz is None:
        side = max(max(r.lattice.width, r.lattice.height) for r in rasters) if rasters else 64
        imgsz = max(32, int(-(-side // 32) * 32))
    tmp = Path(tempfile.mkdtemp(prefix="gee-mining-detect-"))
    out: list[Detection] = []
    try:
        by_path = {}
        for r in rasters:
            image = tmp / "images" / (r.name + spec.image_suffix)
            image.parent.mkdir(exist_ok=True)
            write_image(cell_image(r.path, spec), image)
            by_path[str(image.resolve())] = r
        # A folder, not a list: ultralytics reads a list of paths with PIL (first TIFF page only), a folder with
        # its own reader, which stacks a multi-page TIFF's pages as channels as in training.
        names = model.names if hasattr(model, "names") else {0: "mine"}
        done = 0
        with no_network():
            results = model.predict(
                str(tmp / "images"), stream=True, conf=conf, iou=iou, imgsz=imgsz, device=device, max_det=max_det,
                batch=batch, verbose=False, **predict_args,
            )  # fmt: skip
            for res in results:
                r = by_path[str(Path(res.path).resolve())]
                boxes = res.boxes
                xyxy = boxes.xyxy.cpu().numpy() if len(boxes) else np.zeros((0, 4))
                for b, s, c in zip(xyxy, boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy(), strict=True):
                    out.append(detection_from_box(r, b, s, int(c), str(names.get(int(c), int(c)))))
                done += 1
                if progress and (done % 100 == 0 or done == len(rasters)):
                    progress(f"[detect] predicted {done}/{len(rasters)} cells")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def merge_detections(detections: Sequence[Detection], gap_px: float = 1.0) -> list[Detection]:
    """Join boxes of *different* cells that overlap or lie within ``gap_px`` pixels across a cell edge.

    Merging happens in each UTM CRS (cells of one zone share it); a merged detection's geometry is the
    union of its boxes, its score the best, its ``cells`` every cell it came from. Boxes within one
    cell are left as the detector's non-maximum suppression gave them.
    """

    out: list[Detection] = []
    by_epsg: dict[int, list[Detection]] = {}
    for d in detections:
        by_epsg.setdefault(d.epsg, []).append(d)
    for epsg, dets in by_epsg.items():
        scale = 10.0
        tol = gap_px * scale
        n = len(dets)
        parent = list(range(n))

        def find(i, parent=parent):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        tree = shapely.STRtree([d.crs_geometry for d in dets])
        for i, d in enumerate(dets):
            for j in tree.query(d.crs_geometry, predicate="dwithin", distance=tol):
                j = int(j)
                if j != i and dets[j].cell != d.cell:
                    parent[find(i)] = find(j)
        groups: dict[int, list[Detection]] = {}
        for i in range(n):
            groups.setdefault(find(i), []).append(dets[i])
        for members in groups.values():
            if len(members) == 1:
                out.append(members[0])
                continue
            best = max(members, key=lambda d: d.score)
            local = shapely.union_all([m.crs_geometry.buffer(tol / 2, join_style="mitre") for m in members]).buffer(
                -tol / 2, join_style="mitre"
            )
            lonlat = crs_to_lonlat(shapely.segmentize(local, max(local.length / 64, 1e-6)), epsg)
            cells = sorted({c for m in members for c in (m.cells or [m.cell])})
            out.append(
                Detection(best.cell, best.score, best.cls, best.name, best.pixel_box, epsg, local, lonlat, cells)
            )
    return out


def write_detections(detections: Sequence[Detection], path: str | os.PathLike) -> Path:
    """Write detections (EPSG:4326 polygons with cell, score, class) as GeoJSON (.geojson/.json) or GeoParquet."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    if path.suffix in (".geojson", ".json"):
        features = [
            {"type": "Feature", "geometry": shapely.geometry.mapping(d.geometry), "properties": d.properties()}
            for d in detections
        ]
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    elif path.suffix == ".parquet":
        props = [d.properties() for d in detections]
        keys = list(props[0]) if props else list(Detection("", 0, 0, "", (0, 0, 0, 0), 0, None, None).properties())
        data = {k: [p[k] for p in props] for k in keys}
        data["geometry"] = [shapely.to_wkb(d.geometry) for d in detections]
        geo = geoparquet_metadata(["Polygon", "MultiPolygon"])
        pq.write_table(pa.table(data).replace_schema_metadata({b"geo": geo}), tmp)
    else:
        raise InputError(f"{path}: write detections as .geojson or .parquet (GeoParquet).")
    tmp.replace(path)
    return path


def zero_shot(
    weights: str | os.PathLike,
    cells: Any,
    spec: DatasetSpec = DatasetSpec(),
    prompts: Sequence[str] | None = ("open-pit mine", "mine"),
    classes: Sequence[str] | None = None,
    **predict_args: Any,
) -> list[Detection]:
    """Detections of a model trained elsewhere (a COCO model, YOLO-World, YOLOE), with weights you provide.

    ``prompts`` set an open-vocabulary model's classes (ignored by closed-set models); ``classes``
    keeps only detections of those class names. A missing weights file is an :class:`InputError`
    naming it; a model that would need to download more (YOLO-World's text encoder, for one) is an
    error naming what it tried to fetch. Nothing is ever downloaded.
    """

    model = load_model(None, weights)
    if prompts and hasattr(model.model, "set_classes"):
        try:
            with no_network():
                model.set_classes(list(prompts))
        except NetworkRefused as e:
            raise InputError(
                f"{weights}: setting the prompts {list(prompts)} needs the model's text encoder, which ultralytics would "
                f"download ({e}). Put the encoder's file where ultralytics looks for it, or pass prompts=None."
            ) from e
    dets = predict_cells(model, cells, spec, **predict_args)
    if classes:
        keep = set(classes)
        dets = [d for d in dets if d.name in keep]
    return dets

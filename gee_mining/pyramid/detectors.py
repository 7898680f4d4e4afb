"""Fine-level detectors for the pyramid: anything that turns cells into georeferenced, scored detections.

:class:`Detector` is the interface (a ``typing.Protocol``): ``detect(ee, cells) -> DetectorRun``, where
``cells`` are grid rows of the finest level and each detection is a
:class:`gee_mining.ml.detect.predict.Detection` (a box as an EPSG:4326 polygon with a score). Two
implementations:

- :class:`YoloDetector`: the trained YOLO model of :mod:`gee_mining.ml.detect` on per-cell GeoTIFFs
  exported through ``ee`` (``Export.image.toCloudStorage``, one task per cell, as
  :func:`gee_mining.batch.exports.export_cells` starts them), predicted offline.
- :class:`PixelModelDetector`: the pixel model itself, thresholded into boxes. Per cell, the
  probability image is exported on the cell's 10 m lattice (``computePixels`` as a GeoTIFF), the
  pixels above ``threshold`` are grouped into 8-connected components offline, and each component of
  at least ``min_pixels`` pixels becomes a box whose score is its highest probability. It is a real,
  if plain, detector: it finds what the pixel model sees, with no learned notion of shape. Tests use
  it because a YOLO run on hundreds of cells is too slow for CI; the demo and the bench run YOLO.

Both count what they cost: patches exported (one per cell), patches the detector saw, the pixels
Earth Engine computed for them and the bytes that came back.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import rasterio
import shapely
from rasterio.windows import Window
from scipy import ndimage

from gee_mining.batch.exports import ExportSpec, export_cells
from gee_mining.contracts.lattice import PixelGrid, pixel_grid
from gee_mining.errors import GeeMiningError
from gee_mining.ml.detect.dataset import open_cell
from gee_mining.ml.detect.predict import detection_from_box, predict_cells
from gee_mining.pyramid.core import DetectorCost
from gee_mining.steps.cell_image import ImagerySpec


@dataclass
class DetectorRun:
    """A detector's output on some cells: detections (``gee_mining.ml.detect.predict.Detection``) and its cost."""

    detections: list[Any]
    cost: DetectorCost
    files: list[Path] = field(default_factory=list)


@runtime_checkable
class Detector(Protocol):
    """Cells of the finest level -> georeferenced detections with scores, and what that cost."""

    name: str

    def detect(self, ee: Any, cells: Sequence[dict[str, Any]]) -> DetectorRun: ...


def _workdir(folder: str | os.PathLike | None, prefix: str) -> Path:
    if folder is not None:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix=prefix))


@dataclass
class PixelModelDetector:
    """The probability image thresholded into boxes (see the module's docstring): an honest, plain detector."""

    probability: Any  # one-band ee.Image, 0..1
    threshold: float = 0.5
    min_pixels: int = 4
    folder: str | os.PathLike | None = None  # where the per-cell GeoTIFFs go (a temporary folder by default)
    block: int = 1  # fetch blocks of block x block neighbouring cells in one request (the same pixels, fewer calls)
    name: str = "pixel model thresholded into boxes"

    def detect(self, ee: Any, cells: Sequence[dict[str, Any]]) -> DetectorRun:

        t0 = time.perf_counter()
        out = _workdir(self.folder, "gee-mining-pyramid-")
        detections, files, pixels, nbytes = [], [], 0, 0
        image = ee.Image(self.probability).rename("probability").toFloat()
        for group in _blocks(cells, self.block):
            for row, (path, size) in zip(group, self._export(ee, image, group, out), strict=True):
                files.append(path)
                nbytes += size
                raster = open_cell(path, name=row["name"])
                pixels += raster.lattice.size
                with rasterio.open(path) as ds:
                    prob = ds.read(1, masked=True).filled(0.0)
                labels, _ = ndimage.label(prob > self.threshold, structure=np.ones((3, 3)))
                for k, sl in enumerate(ndimage.find_objects(labels), start=1):
                    if sl is None:
                        continue
                    part = labels[sl] == k
                    if part.sum() < self.min_pixels:
                        continue
                    box = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
                    detections.append(detection_from_box(raster, box, float(prob[sl][part].max())))
        cost = DetectorCost(len(cells), len(files), len(files), pixels, nbytes, time.perf_counter() - t0)
        return DetectorRun(detections, cost, files)

    @staticmethod
    def _export(ee: Any, image: Any, group: Sequence[dict[str, Any]], out: Path) -> list[tuple[Path, int]]:
        """Each cell's probability GeoTIFF on its own 10 m lattice: one ``computePixels`` per cell, or one per
        block of neighbouring cells cut into the cells' lattices (the same pixels: every lattice is aligned to
        multiples of 10 m in the zone, and the image is computed per pixel)."""

        grids = [pixel_grid(r) for r in group]
        if len(group) == 1:
            data = ee.data.computePixels({"expression": image, "fileFormat": "GEO_TIFF", "grid": grids[0].ee_grid()})
            path = out / f"{group[0]['name']}.tif"
            path.write_bytes(data)
            return [(path, len(data))]
        xmin = min(g.bounds[0] for g in grids)
        ymax = max(g.bounds[3] for g in grids)
        width = round((max(g.bounds[2] for g in grids) - xmin) / 10)
        height = round((ymax - min(g.bounds[1] for g in grids)) / 10)
        block = PixelGrid(grids[0].crs, (10.0, 0.0, xmin, 0.0, -10.0, ymax), width, height)
        tmp = out / f".block-{group[0]['name']}.tif"
        tmp.write_bytes(ee.data.computePixels({"expression": image, "fileFormat": "GEO_TIFF", "grid": block.ee_grid()}))
        written = []
        try:
            with rasterio.open(tmp) as src:
                for row, g in zip(group, grids, strict=True):
                    col0, row0 = round((g.bounds[0] - xmin) / 10), round((ymax - g.bounds[3]) / 10)
                    window = Window(col0, row0, g.width, g.height)
                    profile = {**src.profile, "width": g.width, "height": g.height,
                               "transform": src.window_transform(window)}  # fmt: skip
                    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
                    path = out / f"{row['name']}.tif"
                    with rasterio.open(path, "w", **profile) as dst:
                        dst.write(src.read(window=window))
                        dst.descriptions = src.descriptions
                    written.append((path, path.stat().st_size))
        finally:
            tmp.unlink(missing_ok=True)
        return written


def _blocks(cells: Sequence[dict[str, Any]], block: int) -> list[list[dict[str, Any]]]:
    """Cells grouped by zone and by ``block`` x ``block`` squares of their level's grid."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in cells:
        key = (r["epsg"], r["cell_size"], r["cell_x"] // block, r["cell_y"] // block) if block > 1 else (r["name"],)
        groups.setdefault(key, []).append(r)
    return list(groups.values())


@dataclass
class YoloDetector:
    """The trained YOLO model (``gee_mining.ml.detect``) on per-cell GeoTIFFs exported through ``ee``.

    ``weights``: the trained model (a weights file, or an ``ultralytics.YOLO``); ``dataset_spec``: the
    training dataset's spec (``open_dataset(root).spec``: same bands and 8-bit scaling); ``imagery``: what
    each cell's image holds (:class:`gee_mining.steps.cell_image.ImagerySpec`; labels off unless ``polygons`` are
    given), or ``image``: an ``ee.Image`` exported on each cell's lattice instead (a composite already served
    as an asset); ``destination``: ``gs://bucket/prefix`` for the export tasks.

    ``context``: a cell size (metres, a multiple of the cells' size) of the blocks exported instead of the cells
    themselves. A fine cell (343.75 m, 35 px) is smaller than many mines and than the patches YOLO was trained
    on; with ``context=1375`` each kept cell's enclosing 1375 m block (138 px, the training patch) is exported
    once, however many of its cells were kept, and only the boxes that overlap a kept cell are returned. The
    cost counts the blocks' pixels.
    """

    weights: Any
    dataset_spec: Any
    imagery: Any = None
    image: Any = None
    destination: str = "gs://gee-mining-pyramid/cells"
    polygons: Any = None
    conf: float = 0.25
    folder: str | os.PathLike | None = None
    name: str = "YOLO on exported patches"
    predict_args: dict = field(default_factory=dict)
    context: float | None = None

    def detect(self, ee: Any, cells: Sequence[dict[str, Any]]) -> DetectorRun:

        t0 = time.perf_counter()
        out = _workdir(self.folder, "gee-mining-pyramid-yolo-")
        imagery = self.imagery or ImagerySpec()
        if self.polygons is None and imagery.labels:
            imagery = dataclasses.replace(imagery, labels=False)
        if not cells:
            return DetectorRun([], DetectorCost(0, 0, 0, 0, 0, 0.0))
        exported = context_blocks(cells, self.context) if self.context else list(cells)
        results = export_cells(exported, self.polygons, ExportSpec(self.destination), imagery, download_to=out,
                               image=self.image)  # fmt: skip
        failed = [f"{r.cell}: {r.state} {r.error or ''}".strip() for r in results if r.state != "COMPLETED"]
        if failed:
            raise GeeMiningError(
                f"{self.name}: {len(failed)} of {len(results)} cell exports failed: {'; '.join(failed[:5])}"
            )
        files = [p for r in results for p in r.local_files]
        dets = predict_cells(self.weights, files, self.dataset_spec, conf=self.conf, **self.predict_args)
        if self.context:
            dets = boxes_on_cells(dets, cells)
        pixels = sum(pixel_grid(r).width * pixel_grid(r).height for r in exported)
        cost = DetectorCost(len(cells), len(results), len(files), pixels, sum(p.stat().st_size for p in files),
                            time.perf_counter() - t0)  # fmt: skip
        return DetectorRun(dets, cost, files)


def context_blocks(cells: Sequence[dict[str, Any]], size: float) -> list[dict[str, Any]]:
    """The cells of ``size`` metres (same zone, same grid origin) that hold the centres of ``cells``, each once."""
    blocks: dict[tuple, dict[str, Any]] = {}
    for r in cells:
        cx = (r["cell_x"] + 0.5) * float(r["cell_size"])
        cy = (r["cell_y"] + 0.5) * float(r["cell_size"])
        key = (int(r["epsg"]), math.floor(cx / size), math.floor(cy / size))
        blocks.setdefault(key, {"name": f"ctx{size:g}_{key[0]}_{key[1]}_{key[2]}".replace(".", "p"),
                                "epsg": key[0], "cell_x": key[1], "cell_y": key[2], "cell_size": float(size)})  # fmt: skip
    return list(blocks.values())


def boxes_on_cells(detections: Sequence[Any], cells: Sequence[dict[str, Any]]) -> list[Any]:
    """The detections whose box overlaps (with some area) one of ``cells`` (grid rows; compared in the cell's
    zone, on the cell's exact square)."""
    squares: dict[int, list] = {}
    for r in cells:
        size = float(r["cell_size"])
        squares.setdefault(int(r["epsg"]), []).append(
            shapely.box(r["cell_x"] * size, r["cell_y"] * size, (r["cell_x"] + 1) * size, (r["cell_y"] + 1) * size)
        )
    trees = {epsg: shapely.STRtree(sq) for epsg, sq in squares.items()}
    kept = []
    for d in detections:
        tree = trees.get(int(d.epsg))
        if tree is not None and any(
            shapely.intersection(d.crs_geometry, squares[int(d.epsg)][int(j)]).area > 0
            for j in tree.query(d.crs_geometry, predicate="intersects")
        ):
            kept.append(d)
    return kept

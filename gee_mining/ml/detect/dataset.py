"""YOLO datasets from exported per-cell GeoTIFFs and mine polygons.

Input: the per-cell GeoTIFFs of the export step (``<cell name>.tif``, float32, band
descriptions = band names B1..B12, indices, ``_mine``, ``distance``; the cell's UTM CRS
at 10 m) and the mine polygons (a polygon file, GeoJSON features, shapely geometries in
EPSG:4326, or an Earth Engine table id read through ``ee``). Output: a folder that
ultralytics trains on::

    <out>/images/<cell>.png | .tif   8-bit image of the selected bands
    <out>/labels/<cell>.txt          YOLO boxes "0 xc yc w h" (normalised); empty for negatives
    <out>/dataset.json               the spec, the 8-bit scaling and each cell's georeference and boxes
    <out>/data.yaml                  all cells as train and val (splits add data_<name>.yaml)

**Boxes.** Each polygon *part* (a MultiPolygon gives one box per part) is reprojected
from EPSG:4326 to the cell's CRS (vertex by vertex, pyproj), intersected with the
image's footprint, and its box is the bounding box of the visible piece in pixel
coordinates (column = (x - x0) / 10, row = (y0 - y) / 10). A part is kept when the
visible piece has at least ``min_visible`` of the part's area and its box is at least
``min_box_px`` pixels wide and high.

**8-bit scaling (reproducible, the same for every image).** Each band has a fixed range
``(lo, hi)``: ``u8 = clip(round(255 * (v - lo) / (hi - lo)), 0, 255)``, NaN -> 0, and pixels
with no observation (every reflectance band 0, the export's nodata) -> 0 in every channel.
Defaults: B1-B5 reflectance 0..0.3, B6-B12 0..0.5, ``MSI`` 0..3, any other band (indices)
-1..1; override per band with ``scaling={"B4": (0, 0.2)}``. Fixed ranges rather than
per-image stretches keep a pixel's value independent of its neighbours, so training and
prediction see the same numbers.

**Image format.** Exactly three bands: PNG, written R, G, B in the order given (the
default ``("B4", "B3", "B2")`` is natural colour). Any other count: a multi-page TIFF,
one grayscale page per band in the order given, with ``channels: N`` in the yaml (the
format ultralytics' multispectral loader reads; a GDAL multi-sample TIFF is rejected).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ee
import numpy as np
import pyproj
import rasterio
import rasterio.errors
import shapely
from PIL import Image
from rasterio.transform import Affine
from rasterio.windows import Window
from shapely.geometry import shape

from gee_mining.contracts.bands import BANDS, LABEL_BANDS
from gee_mining.contracts.lattice import PixelGrid
from gee_mining.errors import InputError
from gee_mining.io.cell_tags import CELL_TAG, cell_tag_value, read_cell_tag
from gee_mining.io.pages import iter_features
from gee_mining.io.polygons import read_polygons

RGB = ("B4", "B3", "B2")
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(("B1", "B2", "B3", "B4", "B5"), (0.0, 0.3)),
    **dict.fromkeys(("B6", "B7", "B8", "B8A", "B9", "B11", "B12"), (0.0, 0.5)),
    "MSI": (0.0, 3.0),
}
INDEX_RANGE = (-1.0, 1.0)
CLASS_NAME = "mine"


@dataclass(frozen=True)
class DatasetSpec:
    """How cells become YOLO images and labels.

    ``bands``: the image channels, in order (band names of the GeoTIFFs; any reflectance band or
    index, not ``_mine``/``distance``). ``scaling``: per-band ``(lo, hi)`` overriding the defaults.
    ``min_box_px``: smallest box width and height (pixels) kept. ``min_visible``: smallest fraction of
    a polygon part's area that must lie inside the image. ``negatives``: keep cells without any box as
    background images (empty label files).
    """

    bands: tuple[str, ...] = RGB
    scaling: tuple[tuple[str, tuple[float, float]], ...] = ()
    min_box_px: float = 2.0
    min_visible: float = 0.2
    negatives: bool = True

    def __post_init__(self) -> None:
        bands = (self.bands,) if isinstance(self.bands, str) else tuple(self.bands)
        if not bands:
            raise InputError("bands is empty: give the image's bands, e.g. ('B4', 'B3', 'B2') or all of B1..B12.")
        if len(set(bands)) != len(bands):
            raise InputError(f"bands {bands} has duplicates.")
        bad = [b for b in bands if b in LABEL_BANDS]
        if bad:
            raise InputError(f"bands {bad} are the labels, not image bands: leave _mine and distance out of bands.")
        scaling = self.scaling.items() if isinstance(self.scaling, dict) else self.scaling
        scaling = tuple((str(k), (float(v[0]), float(v[1]))) for k, v in scaling)
        for name, (lo, hi) in scaling:
            if not hi > lo:
                raise InputError(f"scaling[{name!r}] = ({lo}, {hi}): hi must be above lo.")
        if not self.min_box_px >= 0:
            raise InputError(f"min_box_px={self.min_box_px} must be >= 0 pixels.")
        if not 0 <= self.min_visible <= 1:
            raise InputError(f"min_visible={self.min_visible} must be a fraction in 0..1.")
        object.__setattr__(self, "bands", bands)
        object.__setattr__(self, "scaling", scaling)

    @property
    def channels(self) -> int:
        return len(self.bands)

    @property
    def image_suffix(self) -> str:
        return ".png" if self.channels == 3 else ".tif"

    def range_of(self, band: str) -> tuple[float, float]:
        """The ``(lo, hi)`` of ``band`` in the 8-bit scaling."""
        return dict(self.scaling).get(band) or DEFAULT_RANGES.get(band, INDEX_RANGE)

    def to_json(self) -> dict:
        d = asdict(self)
        d["bands"] = list(self.bands)
        d["scaling"] = {b: list(self.range_of(b)) for b in self.bands}
        return d

    @classmethod
    def from_json(cls, d: dict) -> DatasetSpec:
        return cls(
            bands=tuple(d["bands"]),
            scaling=tuple((k, tuple(v)) for k, v in d.get("scaling", {}).items()),
            min_box_px=d.get("min_box_px", 2.0),
            min_visible=d.get("min_visible", 0.2),
            negatives=d.get("negatives", True),
        )


# -- georeference and pixels -----------------------------------------------------------------


@dataclass(frozen=True)
class CellRaster:
    """One exported cell image: its name (the file stem), its file, and its pixel lattice."""

    name: str
    path: str
    lattice: PixelGrid


def lattice_of(crs, transform: Affine, width: int, height: int, where: str) -> PixelGrid:
    """The lattice of a raster (rasterio's CRS and affine); per-cell images are in an EPSG code."""
    if crs is None or crs.to_epsg() is None:
        raise InputError(f"{where}: no EPSG CRS; per-cell GeoTIFFs are in the cell's UTM EPSG code.")
    t = transform
    return PixelGrid(f"EPSG:{int(crs.to_epsg())}", (t.a, t.b, t.c, t.d, t.e, t.f), width, height)


def open_cell(path: str | os.PathLike, name: str | None = None) -> CellRaster:
    """The georeference of a per-cell GeoTIFF; its name from ``name`` (a caller that wrote the file for a known
    cell), else the ``GEE_MINING_CELL`` tag (the file stem, with a warning, for files without one)."""

    path = Path(path)
    if not path.is_file():
        raise InputError(f"cell image {path} does not exist.")
    if name is None:
        tagged = read_cell_tag(path)
        if tagged is None:
            warnings.warn(f"{path}: no GEE_MINING_CELL tag; the cell is named after the file.", stacklevel=2)
        name = path.stem if tagged is None else str(tagged["name"])
    with rasterio.open(path) as ds:
        return CellRaster(name, str(path), lattice_of(ds.crs, ds.transform, ds.width, ds.height, str(path)))


def read_bands(path: str | os.PathLike, bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(array (len(bands), H, W) float32, nodata mask (H, W))`` of the named bands of a per-cell GeoTIFF.

    A pixel is nodata where every reflectance band present is 0 or NaN (the export's nodata 0).
    """

    with rasterio.open(path) as ds:
        names = list(ds.descriptions)
        missing = [b for b in bands if b not in names]
        if missing:
            raise InputError(
                f"{path}: bands {missing} are not in the file (it has {', '.join(n or '?' for n in names)}); "
                "choose bands among those or export them."
            )
        data = ds.read([names.index(b) + 1 for b in bands]).astype(np.float32)
        refl = [names.index(b) + 1 for b in BANDS if b in names]
        r = ds.read(refl).astype(np.float32) if refl else data
    nodata = np.all((r == 0) | np.isnan(r), axis=0)
    return data, nodata


def to_uint8(data: np.ndarray, nodata: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """The 8-bit image (H, W, C) of ``data`` (C, H, W) under the spec's fixed per-band ranges."""
    out = np.empty(data.shape[1:] + (data.shape[0],), np.uint8)
    for i, band in enumerate(spec.bands):
        lo, hi = spec.range_of(band)
        v = np.nan_to_num((data[i].astype(np.float64) - lo) / (hi - lo) * 255.0, nan=0.0)
        out[..., i] = np.clip(np.rint(v), 0, 255).astype(np.uint8)
    out[nodata] = 0
    return out


def write_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an 8-bit (H, W, C) image: PNG for C = 3 (RGB order), else a multi-page grayscale TIFF."""

    path = Path(path)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise InputError(f"image must be (H, W, C) uint8, got {image.shape} {image.dtype}.")
    if image.shape[2] == 3 and path.suffix == ".png":
        Image.fromarray(image, "RGB").save(path)
    else:
        pages = [Image.fromarray(np.ascontiguousarray(image[..., i]), "L") for i in range(image.shape[2])]
        pages[0].save(path, format="TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    return path


def cell_image(path: str | os.PathLike, spec: DatasetSpec) -> np.ndarray:
    """The 8-bit (H, W, C) image of a per-cell GeoTIFF under ``spec``."""
    data, nodata = read_bands(path, spec.bands)
    return to_uint8(data, nodata, spec)


# -- polygons and boxes (pure geometry) ---------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A box in pixel coordinates of one image (``x0 <= x1`` columns, ``y0 <= y1`` rows, edges of pixels)."""

    x0: float
    y0: float
    x1: float
    y1: float
    polygon: int = -1  # index of the polygon in the list given
    part: int = 0  # index of the part in the polygon
    visible: float = 1.0  # fraction of the part's area inside the image

    def yolo(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``(xc, yc, w, h)`` normalised by the image size."""
        return ((self.x0 + self.x1) / 2 / width, (self.y0 + self.y1) / 2 / height,
                (self.x1 - self.x0) / width, (self.y1 - self.y0) / height)  # fmt: skip


def polygon_parts(geometry) -> list:
    """The polygons of a Polygon / MultiPolygon / GeometryCollection (other types give none)."""
    if geometry is None or geometry.is_empty:
        return []
    if geometry.geom_type == "Polygon":
        return [geometry]
    if geometry.geom_type in ("MultiPolygon", "GeometryCollection"):
        return [p for g in geometry.geoms for p in polygon_parts(g)]
    return []


@functools.lru_cache(maxsize=64)
def _transformer(src: int, dst: int) -> pyproj.Transformer:
    """One transformer per pair of codes: building one costs milliseconds, and a dataset reprojects every polygon
    for every cell."""
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def to_crs(geometry, epsg: int, src: int = 4326):
    """``geometry`` reprojected vertex by vertex from EPSG:``src`` to EPSG:``epsg`` (pyproj, x/y order)."""

    if int(epsg) == int(src):
        return geometry
    tf = _transformer(int(src), int(epsg))
    return shapely.transform(geometry, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


def cell_boxes(
    cell: CellRaster, polygons: Sequence, spec: DatasetSpec = DatasetSpec(), src_epsg: int = 4326
) -> list[Box]:
    """The boxes of ``polygons`` (shapely, EPSG:``src_epsg``) in ``cell``'s image, per the spec's limits.

    A polygon part is kept when at least ``min_visible`` of it lies in the cell, or when it covers at least
    ``min_visible`` of the cell (a cell inside a large open pit is mine, not background); its box is clipped
    to the image."""

    footprint = cell.lattice.outline()
    boxes = []
    for i, geometry in enumerate(polygons):
        if geometry is None:
            continue
        local = to_crs(geometry, cell.lattice.epsg, src_epsg)
        if not local.is_valid:  # a valid lon/lat ring can touch itself once reprojected (ragged simulated edges)
            local = shapely.make_valid(local)
        if not local.intersects(footprint):
            continue
        for j, part in enumerate(polygon_parts(local)):
            if part.area <= 0:
                continue
            visible = shapely.intersection(part, footprint)
            if visible.is_empty or visible.area <= 0:
                continue
            fraction = visible.area / part.area
            if fraction < spec.min_visible and visible.area / footprint.area < spec.min_visible:
                continue  # neither enough of the polygon in the cell nor enough of the cell in the polygon
            ring = np.concatenate([np.asarray(p.exterior.coords) for p in polygon_parts(visible)])
            cols, rows = cell.lattice.crs_to_pixel(ring[:, 0], ring[:, 1])
            x0, x1 = max(0.0, float(cols.min())), min(float(cell.lattice.width), float(cols.max()))
            y0, y1 = max(0.0, float(rows.min())), min(float(cell.lattice.height), float(rows.max()))
            if x1 - x0 < spec.min_box_px or y1 - y0 < spec.min_box_px:
                continue
            boxes.append(Box(x0, y0, x1, y1, i, j, round(fraction, 6)))
    return boxes


def label_text(boxes: Iterable[Box], width: int, height: int) -> str:
    """YOLO label lines ``0 xc yc w h`` (class 0 = mine), 6 decimals."""
    return "".join("0 " + " ".join(f"{v:.6f}" for v in b.yolo(width, height)) + "\n" for b in boxes)


def load_polygons(polygons: Any) -> list:
    """Mine polygons as shapely geometries in EPSG:4326.

    Accepts a polygon file (GeoJSON, GeoPackage, Shapefile, FlatGeobuf, GeoParquet: read with
    pyogrio and reprojected to EPSG:4326), an Earth Engine table id or ``ee.FeatureCollection``
    (fetched through ``ee``), a GeoJSON FeatureCollection dict, or shapely geometries.
    """

    if isinstance(polygons, (str, os.PathLike)) and Path(polygons).exists():
        return read_polygons(polygons).geometries
    if (
        isinstance(polygons, str)
        and "/" in polygons
        and not os.path.exists(polygons)
        and not polygons.endswith((".geojson", ".gpkg", ".shp", ".parquet", ".fgb", ".json"))
    ):
        polygons = ee.FeatureCollection(polygons)
    if type(polygons).__name__ == "FeatureCollection" and hasattr(polygons, "getInfo"):
        return [shape(f["geometry"]) if f.get("geometry") else None for f in iter_features(polygons)]
    if isinstance(polygons, dict) and polygons.get("type") == "FeatureCollection":
        return [shape(f["geometry"]) if f.get("geometry") else None for f in polygons["features"]]
    if isinstance(polygons, (str, os.PathLike)):
        raise InputError(f"polygons {polygons!s}: no such file (give a polygon file or an Earth Engine table id).")
    return [g if hasattr(g, "geom_type") else shape(g) for g in polygons]


# -- the dataset ---------------------------------------------------------------------------------


@dataclass
class DetectDataset:
    """A YOLO dataset written by :func:`build_dataset`."""

    root: Path
    spec: DatasetSpec
    cells: list[dict] = field(default_factory=list)  # per cell: name, image, label, epsg, transform, size, boxes

    @property
    def yaml(self) -> Path:
        return self.root / "data.yaml"

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.cells]

    def cell(self, name: str) -> dict:
        for c in self.cells:
            if c["name"] == name:
                return c
        raise InputError(f"cell {name!r} is not in the dataset {self.root}.")

    def raster(self, name: str) -> CellRaster:
        c = self.cell(name)
        lattice = PixelGrid(f"EPSG:{int(c['epsg'])}", tuple(c["transform"]), c["width"], c["height"])
        return CellRaster(c["name"], c["source"], lattice)

    def write_split(self, name: str, train: Sequence[str], val: Sequence[str], test: Sequence[str] = ()) -> Path:
        """``data_<name>.yaml`` with image lists ``<name>_train.txt`` / ``_val`` (/ ``_test``) of these cells."""
        known = set(self.names)
        lists = {"train": list(train), "val": list(val)}
        if test:
            lists["test"] = list(test)
        for split, cells in lists.items():
            bad = sorted(set(cells) - known)
            if bad:
                raise InputError(f"split {name!r}: {split} cells {bad[:5]} are not in the dataset {self.root}.")
            if not cells:
                raise InputError(f"split {name!r}: no {split} cells.")
        for split, cells in lists.items():
            (self.root / f"{name}_{split}.txt").write_text(
                "".join(f"./images/{self.cell(c)['image']}\n" for c in cells)
            )
        return write_yaml(self.root / f"data_{name}.yaml", self.root, {s: f"{name}_{s}.txt" for s in lists}, self.spec)


def write_yaml(path: Path, root: Path, splits: dict[str, str], spec: DatasetSpec) -> Path:
    lines = [f"path: {json.dumps(str(root.resolve()))}"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in splits.items()]
    lines += [f"channels: {spec.channels}", "nc: 1", "names:", f"  0: {CLASS_NAME}", ""]
    path.write_text("\n".join(lines))
    return path


def open_dataset(root: str | os.PathLike) -> DetectDataset:
    """A dataset :func:`build_dataset` wrote (reads ``dataset.json``)."""
    root = Path(root)
    if root.suffix in (".yaml", ".yml"):
        root = root.parent
    meta = root / "dataset.json"
    if not meta.is_file():
        raise InputError(f"{meta} is missing: {root} is not a dataset written by `gee-mining detect dataset`.")
    d = json.loads(meta.read_text())
    return DetectDataset(root.resolve(), DatasetSpec.from_json(d["spec"]), d["cells"])


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A fresh ``<out>.partial`` folder to write into; renamed to ``out`` (replacing it) when the block ends
    without error, deleted otherwise, so a failure leaves nothing half-written."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def cut_patches(
    images: Any,
    out_dir: str | os.PathLike,
    size: int = 128,
    stride: int | None = None,
    keep: Callable[[str, CellRaster], bool] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Cut exported GeoTIFFs (larger cells or tiles) into ``size`` x ``size`` patch GeoTIFFs every ``stride`` pixels.

    Each patch keeps every band, its band names and its exact georeference (the window's affine),
    so :func:`build_dataset` and :func:`~gee_mining.ml.detect.predict.predict_cells` treat it as an
    exported cell. Patches are named ``<image stem>_<col>_<row>`` (pixel offsets of the window);
    windows that would run past the image's right or bottom edge are not cut. ``keep(name,
    raster)`` (optional) chooses which patches to write. ``stride < size`` gives overlapping
    patches, so an object cut by one window's edge is seen whole in a neighbour. Written under a
    ``.partial`` name and renamed when complete. Each patch carries its own ``GEE_MINING_CELL`` tag: its name,
    the image it was cut from (``parent``, that image's cell name where it has a tag) and the window's offsets,
    so readers name it from the file, not from the file name.
    """

    stride = int(stride or size)
    if size < 8 or stride < 1:
        raise InputError(f"size={size} must be >= 8 pixels and stride={stride} >= 1.")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists: choose another folder or pass overwrite=True.")
    paths = find_cells(images)
    written = []
    with staged_folder(out) as tmp:
        for path in paths:
            parent = (read_cell_tag(path) or {}).get("name", Path(path).stem)
            with rasterio.open(path) as src:
                if src.width < size or src.height < size:
                    raise InputError(f"{path} is {src.width} x {src.height} px, smaller than the patch size {size}.")
                profile = {**src.profile, "width": size, "height": size, "compress": "deflate"}
                for key in ("blockxsize", "blockysize", "tiled"):
                    profile.pop(key, None)
                for row in range(0, src.height - size + 1, stride):
                    for col in range(0, src.width - size + 1, stride):
                        window = Window(col, row, size, size)
                        a, b, c, d, e, f = tuple(src.transform)[:6]
                        t = Affine(a, b, c + a * col + b * row, d, e, f + d * col + e * row)
                        name = f"{Path(path).stem}_{col}_{row}"
                        if keep is not None and not keep(
                            name, CellRaster(name, "", lattice_of(src.crs, t, size, size, str(path)))
                        ):
                            continue
                        with rasterio.open(tmp / f"{name}.tif", "w", **{**profile, "transform": t}) as dst:
                            dst.write(src.read(window=window))
                            dst.descriptions = src.descriptions
                            tag = {"name": name, "parent": parent, "col_off": col, "row_off": row}
                            dst.update_tags(**{CELL_TAG: cell_tag_value(tag)})
                        written.append(name)
    return [out / f"{n}.tif" for n in written]


def keep_near_mines(
    polygons: Any, mine_stride: int, other_stride: int, spec: DatasetSpec = DatasetSpec()
) -> Callable[[str, CellRaster], bool]:
    """A ``keep`` for :func:`cut_patches`: windows with a mine box every ``mine_stride`` px, others every ``other_stride``.

    A window "has a mine" when :func:`cell_boxes` gives it a box under ``spec``'s limits. Cut with
    ``stride = gcd`` of the two (e.g. 32 and 128: cut every 32, keep background windows at multiples
    of 128). Polygons (see :func:`load_polygons`) are reprojected once per CRS and indexed (STRtree).
    """

    geoms = [g for g in load_polygons(polygons) if g is not None]
    if mine_stride < 1 or other_stride < 1:
        raise InputError(f"strides must be >= 1 pixel (got {mine_stride} and {other_stride}).")
    by_epsg: dict[int, tuple[list, Any]] = {}

    def keep(name: str, raster: CellRaster) -> bool:
        epsg = raster.lattice.epsg
        if epsg not in by_epsg:
            local = [to_crs(g, epsg) for g in geoms]
            by_epsg[epsg] = (local, shapely.STRtree(local))
        local, tree = by_epsg[epsg]
        near = [local[i] for i in tree.query(raster.lattice.outline())]
        stride = mine_stride if near and cell_boxes(raster, near, spec, src_epsg=epsg) else other_stride
        col, row = (int(v) for v in name.rsplit("_", 2)[1:])
        return col % stride == 0 and row % stride == 0

    return keep


def find_cells(cells: Any) -> list[Path]:
    """Per-cell GeoTIFFs: a folder (every ``*.tif`` in it), a file, or a list of files."""
    if isinstance(cells, (str, os.PathLike)):
        p = Path(cells)
        if p.is_dir():
            found = sorted(p.glob("*.tif"))
            if not found:
                raise InputError(f"{p} holds no .tif files: give the folder of the per-cell GeoTIFF export.")
            return found
        return [p]
    return [Path(c) for c in cells]


CELL_ERRORS = (rasterio.errors.RasterioError, InputError, OSError, ValueError)
"""What reading one cell's GeoTIFF raises when the file is truncated, empty or damaged."""


def _dataset_record(path: Path, geoms: Any, spec: DatasetSpec, tmp: Path) -> dict | None:
    """Write one cell's image and label file into ``tmp``; its ``dataset.json`` record (None: no box, no negatives)."""
    cell = open_cell(path)
    boxes = cell_boxes(cell, geoms, spec)
    if not boxes and not spec.negatives:
        return None
    image = cell_image(path, spec)
    name = cell.name + spec.image_suffix
    write_image(image, tmp / "images" / name)
    (tmp / "labels" / f"{cell.name}.txt").write_text(label_text(boxes, cell.lattice.width, cell.lattice.height))
    lon, lat = cell.lattice.centre_lonlat()
    return {
        "name": cell.name,
        "image": name,
        "source": str(Path(path).resolve()),
        "epsg": cell.lattice.epsg,
        "transform": list(cell.lattice.transform),
        "width": cell.lattice.width,
        "height": cell.lattice.height,
        "lon": lon,
        "lat": lat,
        "boxes": [asdict(b) for b in boxes],
    }


def build_dataset(
    cells: Any,
    polygons: Any,
    out_dir: str | os.PathLike,
    spec: DatasetSpec = DatasetSpec(),
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DetectDataset:
    """Write a YOLO dataset (images, labels, ``dataset.json``, ``data.yaml``) from per-cell GeoTIFFs.

    ``cells``: a folder of ``<cell name>.tif`` or a list of them. ``polygons``: see
    :func:`load_polygons`. The folder is written beside ``out_dir`` and renamed into place at
    the end, so an error leaves nothing half-written.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists: choose another folder or pass overwrite=True (--overwrite).")
    paths = find_cells(cells)
    geoms = load_polygons(polygons)
    records = []
    with staged_folder(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        failed = []
        for n, path in enumerate(paths):
            try:
                record = _dataset_record(path, geoms, spec, tmp)
            except CELL_ERRORS as exc:  # one damaged GeoTIFF: reported, the other cells still go in
                failed.append({"source": str(path), "error": str(exc)})
                if progress:
                    progress(f"[detect] dataset: skipped {path}: {exc}")
                continue
            if record is not None:
                records.append(record)
            if progress and (n + 1) % 50 == 0:
                progress(f"[detect] dataset: {n + 1}/{len(paths)} cells")
        if failed and progress:
            progress(
                f"[detect] dataset: {len(failed)} of {len(paths)} cell(s) could not be read (dataset.json 'failed')"
            )
        if failed and len(failed) == len(paths):  # every cell failed alike: the input, not a damaged file
            raise InputError(f"none of the {len(paths)} cells could be read; the first: {failed[0]['error']}")
        if not records:
            raise InputError(f"no images written from {len(paths)} cells (negatives=False and no cell has a box).")
        meta = {"spec": spec.to_json(), "class_names": [CLASS_NAME], "cells": records, "failed": failed}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=1))
        (tmp / "all.txt").write_text("".join(f"./images/{r['image']}\n" for r in records))
        write_yaml(tmp / "data.yaml", out, {"train": "all.txt", "val": "all.txt"}, spec)
    return DetectDataset(out.resolve(), spec, records)


def dataset_summary(ds: DetectDataset) -> dict:
    """Counts: cells, positives, negatives, boxes, box sizes (pixels)."""
    sizes = [math.sqrt((b["x1"] - b["x0"]) * (b["y1"] - b["y0"])) for c in ds.cells for b in c["boxes"]]
    pos = sum(1 for c in ds.cells if c["boxes"])
    return {
        "cells": len(ds.cells),
        "positive_cells": pos,
        "negative_cells": len(ds.cells) - pos,
        "boxes": len(sizes),
        "median_box_px": float(np.median(sizes)) if sizes else 0.0,
        "channels": ds.spec.channels,
        "bands": list(ds.spec.bands),
    }

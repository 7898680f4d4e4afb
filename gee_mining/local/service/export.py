"""Batch exports (``image:export``, ``table:export``, ``classifier:export``), written through the engine's
storage.

A Cloud Storage destination ``gs://BUCKET/PREFIX`` goes to the engine's
:mod:`~.storage` (a local folder, the Cloud Storage emulator or real Cloud
Storage); a Drive destination to the local folder ``<storage_root>/drive/FOLDER``.

Files are first written to a private staging folder and only uploaded once the
whole export has been computed, so a failed or cancelled task leaves nothing
behind (files already uploaded by a task that fails while uploading are
deleted again). Exports run on the engine's worker pool
(:mod:`~.operations`); the cancel flag is checked between tiles and patches.

Images, as Earth Engine writes them ("Exporting Images" guide, the REST
``ImageFileExportOptions`` reference and the "TFRecord and Earth Engine" guide):

- GeoTIFF: ``PREFIX.tif``, or ``PREFIX-RRRRRRRRRR-CCCCCCCCCC.tif`` (pixel offsets
  of row then column) when ``fileDimensions`` splits the image; tiled
  ``shardSize`` (default 256) blocks (256 when the shard is not a multiple of 16, as TIFF
  tiles must be); ``skipEmptyTiles`` leaves out the files whose every pixel is masked; cloud-optimized with overviews on
  ``formatOptions.cloudOptimized``; masked pixels 0, or ``noData`` (then also
  the file's nodata tag). All bands share one data type: integer bands widen
  to a type holding every band's range; bands of float and integer or of
  float and double types are refused, as Earth Engine refuses them ("Exported
  bands must have compatible data types; ...").
- TFRecord: one ``tf.train.Example`` per patch of ``patchDimensions`` (plus
  ``kernelSize/2`` on each side), one float feature per band, patches in
  row-major order and border patches that do not fit dropped; files
  ``PREFIX-00000.tfrecord[.gz]`` split at ``maxFileSize`` bytes (before
  compression, default 1 GiB), and the ``PREFIX-mixer.json`` sidecar.

The work is that of the pixels that may be unmasked: files, tiles and patches where every band is surely
masked (``Band.surely_masked``: a mask painted from geometries that miss them, no image over them) are not
computed (:func:`live_windows`), so a batch of scattered cells costs its cells, not its rectangle; the files
written and their names are those of the full tiling, as before.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import pickle
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.shutil import copy as rio_copy
from rasterio.windows import Window

from gee_mining.contracts.lattice import PixelGrid
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.evaluator import Context, Evaluator, evaluate
from gee_mining.local.core.info import to_info
from gee_mining.local.raster.classifier import Classifier
from gee_mining.local.raster.grid import checked_grid, grid_covering
from gee_mining.local.raster.image import Image, as_image
from gee_mining.local.raster.pixels import grid_from_request
from gee_mining.local.raster.pixeltype import PixelType
from gee_mining.local.service.storage import FolderStorage, Storage
from gee_mining.local.service.tfrecord import RecordWriter, encode_example, frame
from gee_mining.local.values.feature import Feature
from gee_mining.local.values.featurecollection import FeatureCollection
from gee_mining.local.values.geometry import Geometry, in_crs
from gee_mining.local.values.projection import at_scale

_TABLE_EXTENSIONS = {"CSV": "csv", "GEO_JSON": "geojson"}
ASSETS_FOLDER = "assets"  # Export.*.toAsset: <storage_root>/assets/<hash>.geojson|.classifier, in index.jsonl
ASSETS_INDEX = "index.jsonl"
EXPORTABLE_CLASSIFIERS = ("Classifier.smileRandomForest", "Classifier.smileCart", "Classifier.decisionTree",
                          "Classifier.decisionTreeEnsemble")  # fmt: skip
"""What ``Export.classifier.toAsset`` saves ("Only supported for ee.Classifier.smileRandomForest,
ee.Classifier.smileCart, ee.Classifier.DecisionTree and ee.Classifier.DecisionTreeEnsemble", its reference)."""
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_TILE_SIZE = 256
DEFAULT_MAX_TFRECORD_BYTES = 1 << 30
_GDAL_NAMES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
}

Staged = list[tuple[str, Path]]  # (object name, local file)


# -- destinations -----------------------------------------------------------------------


def _destination(engine: Any, options: Mapping[str, Any], default_prefix: str) -> tuple[Storage, str, str]:
    """(storage, bucket, filename prefix) of a ``fileExportOptions``."""
    if "cloudStorageDestination" in options:
        dest = options["cloudStorageDestination"] or {}
        bucket = dest.get("bucket")
        if not bucket:
            raise EngineError("Export: a Cloud Storage destination needs a bucket.")
        storage = getattr(engine, "storage", None) or FolderStorage(engine.storage_root)
        return storage, bucket, dest.get("filenamePrefix") or default_prefix
    if "driveDestination" in options:
        dest = options["driveDestination"] or {}
        prefix = dest.get("filenamePrefix") or default_prefix
        folder = (dest.get("folder") or "").replace("/", "_")
        return FolderStorage(Path(engine.storage_root)), "drive", f"{folder}/{prefix}" if folder else prefix
    raise EngineError("Export: the local engine writes to Cloud Storage or Drive destinations only.")


def _commit(storage: Storage, bucket: str, staged: Staged, cancelled: Callable[[], bool]) -> list[str]:
    """Upload staged files; on any failure or cancellation remove what was uploaded."""
    done: list[str] = []
    try:
        for name, path in staged:
            if cancelled():
                raise EngineError("Computation was cancelled.", status=499)
            with path.open("rb") as fh:
                storage.write(bucket, name, fh)
            done.append(name)
        if cancelled():  # cancelled while uploading: take the files back
            raise EngineError("Computation was cancelled.", status=499)
    except BaseException:
        for name in done:
            try:
                storage.delete(bucket, name)
            except Exception:  # best effort: the original error matters more
                pass
        raise
    return [storage.uri(bucket, n) for n in done]


def _progress(op: Any, fraction: float) -> None:
    op.metadata["progress"] = round(min(max(fraction, 0.0), 1.0), 4)
    op.metadata["updateTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


# -- tables -----------------------------------------------------------------------------------


def table_export_work(engine: Any, payload: dict, ctx: Context):
    if "assetExportOptions" in payload:
        return table_asset_work(engine, payload, ctx)
    options = payload.get("fileExportOptions") or {}
    fmt = options.get("fileFormat", "CSV")
    if fmt not in _TABLE_EXTENSIONS:
        raise EngineError(f"Export.table: file format {fmt} is not supported by the local engine (CSV, GEO_JSON).")
    storage, bucket, prefix = _destination(engine, options, payload.get("description") or "myExportTableTask")
    selectors = payload.get("selectors")
    expression = payload["expression"]

    def work(op) -> list[str]:
        ctx.cancelled = op.cancel_event
        value = evaluate(expression, ctx)
        if not isinstance(value, FeatureCollection):
            raise EngineError("Export.table: the exported value is not a FeatureCollection.")
        text = io.StringIO(newline="")
        (_write_csv if fmt == "CSV" else _write_geojson)(text, value, selectors)
        ctx.check_cancelled()
        with tempfile.TemporaryDirectory(prefix="gee-mining-export-") as tmp:
            path = Path(tmp) / "table"
            path.write_bytes(text.getvalue().encode("utf-8"))
            return _commit(storage, bucket, [(f"{prefix}.{_TABLE_EXTENSIONS[fmt]}", path)], op.cancel_event.is_set)

    return work


def _asset_destination(payload: dict, what: str) -> tuple[str, dict]:
    """An asset export's ``assetExportOptions.earthEngineDestination``: its asset name and the whole entry."""
    dest = (payload.get("assetExportOptions") or {}).get("earthEngineDestination") or {}
    name = dest.get("name")
    if not name:
        raise EngineError(f"{what}: give an assetId (projects/PROJECT/assets/NAME).")
    return name, dest


def table_asset_work(engine: Any, payload: dict, ctx: Context):
    """``Export.table.toAsset``: the collection written as a GeoJSON file under
    ``<storage_root>/assets/`` and added to the engine's catalog as a table asset, which
    ``ee.FeatureCollection(assetId)`` then reads (as Earth Engine serves an exported table asset)."""
    name, _ = _asset_destination(payload, "Export.table.toAsset")
    expression = payload["expression"]

    def work(op) -> list[str]:
        ctx.cancelled = op.cancel_event
        if engine.catalog.has(name):
            raise EngineError(f"Cannot overwrite asset '{name}'.")
        value = evaluate(expression, ctx)
        if not isinstance(value, FeatureCollection):
            raise EngineError("Export.table: the exported value is not a FeatureCollection.")
        text = io.StringIO()
        _write_geojson(text, value, payload.get("selectors"), ids=False)  # the asset numbers its rows
        ctx.check_cancelled()
        path = _asset_path(engine, name, ".geojson")
        staged = path.with_suffix(".tmp")
        staged.write_text(text.getvalue())
        staged.replace(path)
        _index_asset(engine, name, path, "table")
        engine.catalog.add_table(name, path)
        return [name]

    return work


def classifier_export_work(engine: Any, payload: dict, ctx: Context):
    """``Export.classifier.toAsset`` (``classifier:export``): the classifier trained once, by a batch task, and
    saved as a classifier asset that ``ee.Classifier.load(assetId)`` reads back without training again.
    Earth Engine saves only trained random forests, CART and given decision trees; so does this engine."""
    name, dest = _asset_destination(payload, "Export.classifier.toAsset")
    expression = payload["expression"]

    def work(op) -> list[str]:
        ctx.cancelled = op.cancel_event
        if engine.catalog.has(name) and not dest.get("overwrite"):
            raise EngineError(f"Cannot overwrite asset '{name}'.")
        value = evaluate(expression, ctx)
        if not isinstance(value, Classifier):
            raise EngineError("Export.classifier: the exported value is not a Classifier.")
        if value.kind not in EXPORTABLE_CLASSIFIERS:
            raise EngineError(f"Export.classifier: {value.kind} cannot be exported; Earth Engine saves only "
                              f"{', '.join(EXPORTABLE_CLASSIFIERS)}.")  # fmt: skip
        if not value.trained:
            raise EngineError(f"Export.classifier: the classifier ({value.kind}) is not trained.")
        ctx.check_cancelled()
        path = _asset_path(engine, name, ".classifier")
        staged = path.with_suffix(".tmp")
        staged.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        staged.replace(path)
        _index_asset(engine, name, path, "classifier")
        engine.catalog.add_classifier(name, path)
        return [name]

    return work


def _asset_path(engine: Any, name: str, suffix: str) -> Path:
    folder = Path(engine.storage_root) / ASSETS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (hashlib.sha256(name.encode()).hexdigest()[:24] + suffix)


def _index_asset(engine: Any, name: str, path: Path, kind: str) -> None:
    """List an exported asset in the storage folder's index: the engines of this folder find it there."""
    with (path.parent / ASSETS_INDEX).open("a") as fh:
        fh.write(json.dumps({"id": name, "path": path.name, "kind": kind}) + "\n")


def load_exported_assets(catalog: Any, storage_root: Path) -> None:
    """Add the table and classifier assets earlier ``Export.*.toAsset`` tasks wrote under ``storage_root`` to
    ``catalog``: on Earth Engine an asset outlives the session that made it."""
    index = Path(storage_root) / ASSETS_FOLDER / ASSETS_INDEX
    if not index.exists():
        return
    for line in index.read_text().splitlines():
        entry = json.loads(line)
        path = index.parent / entry["path"]
        if not path.exists():
            continue
        if entry.get("kind") == "classifier":
            catalog.add_classifier(entry["id"], path)  # the latest export of an id (overwrite) wins
        elif not catalog.has(entry["id"]):
            catalog.add_table(entry["id"], path)


def _write_csv(fh, fc: FeatureCollection, selectors: list[str] | None) -> None:
    infos = [f.to_info() for f in fc.features]
    cols = selectors or (["system:index", *sorted({k for i in infos for k in i["properties"]}), ".geo"])
    w = csv.writer(fh)
    w.writerow(cols)
    for feat, info in zip(fc.features, infos, strict=True):
        row = []
        for c in cols:
            if c == "system:index":
                row.append(feat.id or "")
            elif c == ".geo":
                row.append(json.dumps(info["geometry"], separators=(",", ":")) if info["geometry"] else "")
            else:
                v = to_info(feat.properties.get(c))
                row.append("" if v is None else json.dumps(v) if isinstance(v, list | dict) else v)
        w.writerow(row)


def _write_geojson(fh, fc: FeatureCollection, selectors: list[str] | None, ids: bool = True) -> None:
    out = fc.to_info()
    if not ids:
        for f in out["features"]:
            f.pop("id", None)
    if selectors:
        for f in out["features"]:
            f["properties"] = {k: v for k, v in f["properties"].items() if k in selectors}
    json.dump({"type": "FeatureCollection", "features": out["features"]}, fh)


# -- images: the export grid ----------------------------------------------------------------


def _int64(value: Any, default: int) -> int:
    """An Int64Value as the client sends it: {"value": "123"}, "123" or 123."""
    if value is None:
        return default
    if isinstance(value, Mapping):
        value = value.get("value", default)
    return int(float(value))


def _dims(value: Any, name: str, minimum: int = 1) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        w, h = value.get("width"), value.get("height")
    elif isinstance(value, list | tuple) and len(value) == 2:
        w, h = value
    else:
        w = h = value
    try:
        w, h = int(w), int(h)
    except (TypeError, ValueError):
        raise EngineError(f"Export.image: invalid {name} {value!r}.") from None
    if w < minimum or h < minimum:
        raise EngineError(f"Export.image: {name} must be >= {minimum}.")
    return w, h


def export_region(ev: Evaluator) -> Geometry | None:
    """The region the client folded into ``Image.clipToBoundsAndScale`` (the graph's last call), if any."""
    node = ev.values.get(ev.result_id) or {}
    call = node.get("functionInvocationValue") or {}
    if call.get("functionName") != "Image.clipToBoundsAndScale":
        return None
    arg = (call.get("arguments") or {}).get("geometry")
    if arg is None:
        return None
    value = ev.node(arg, ev.root)
    if isinstance(value, Feature):
        value = value.geometry
    return value if isinstance(value, Geometry) else None


def export_grid(image: Image, region: Geometry | None) -> PixelGrid:
    """The pixel grid an export writes, from the image's default projection and the client's
    region / scale / dimensions (recorded by ``Image.clipToBoundsAndScale``).

    Without a scale or dimensions the grid is the default projection's own
    lattice covering the region; with ``scale`` the lattice of that projection
    at that scale; with dimensions the region's bounding box divided into that
    many pixels.
    """
    proj = image.default_projection()
    if region is None:
        footprint = image.footprint()
        if footprint is None:
            raise EngineError("Export.image: Unable to export unbounded image; specify a region.")
        region = Geometry(footprint, geodesic=False)
    size = image.properties.get("gee_mining:output_size") or {}
    tolerance = max(min(proj.nominal_scale(), 1.0) * 1e-3, 1e-6)
    shape = region.shape if region.crs == proj.crs else in_crs(region, proj.crs, tolerance)
    if shape.is_empty:
        raise EngineError("Export.image: the export region is empty.")
    bounds = shape.bounds
    xmin, ymin, xmax, ymax = bounds
    scale, width, height, max_dim = (size.get(k) for k in ("scale", "width", "height", "maxDimension"))
    if scale is not None:
        return grid_covering(at_scale(projection=proj, meters=float(scale)), bounds)
    if width is not None or height is not None or max_dim is not None:
        if width is None or height is None:
            side = float(max_dim if max_dim is not None else max(width or 0, height or 0))
            pixel = max(xmax - xmin, ymax - ymin) / side
            width = max(1, round((xmax - xmin) / pixel))
            height = max(1, round((ymax - ymin) / pixel))
            sx = sy = pixel
        else:
            sx, sy = (xmax - xmin) / int(width), (ymax - ymin) / int(height)
        return checked_grid(proj.crs, (sx, 0.0, xmin, 0.0, -sy, ymax), int(width), int(height))
    return grid_covering(proj, bounds)


def check_max_pixels(grid: PixelGrid, max_pixels: int) -> None:
    if grid.size > max_pixels:
        raise EngineError(
            f"Export too large: specified {grid.size} pixels (max: {max_pixels}). "
            "Specify higher maxPixels value if you intend to export a large area."
        )


def common_dtype(image: Image) -> np.dtype:
    """One data type for every band of a GeoTIFF, or Earth Engine's error when bands are incompatible."""
    types = [b.pixel_type for b in image.bands]
    if not types:
        raise EngineError("Export.image: the image has no bands.")
    if all(t.is_int for t in types):
        return PixelType.int_range(min(t.min for t in types), max(t.max for t in types)).numpy_dtype()
    dtypes = [t.numpy_dtype() for t in types]
    first = dtypes[0]
    for dt in dtypes[1:]:
        if dt != first:
            raise EngineError(
                "Exported bands must have compatible data types; found inconsistent types: "
                f"{_GDAL_NAMES.get(first.name, first.name)} and {_GDAL_NAMES.get(dt.name, dt.name)}."
            )
    return first


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


# -- images: the task ------------------------------------------------------------------------


def image_export_work(engine: Any, payload: dict, ctx: Context):
    """Validate an ``image:export`` request and return the work its operation runs."""
    if "assetExportOptions" in payload:
        raise EngineError(
            "Export.image.toAsset is not supported by the local engine: export to Cloud Storage or Drive instead."
        )
    options = payload.get("fileExportOptions") or {}
    fmt = options.get("fileFormat", "GEO_TIFF")
    if fmt not in ("GEO_TIFF", "TF_RECORD_IMAGE"):
        raise EngineError(
            f"Export.image: file format {fmt} is not supported by the local engine (GEO_TIFF, TF_RECORD_IMAGE)."
        )
    storage, bucket, prefix = _destination(engine, options, payload.get("description") or "myExportImageTask")
    max_pixels = _int64(payload.get("maxPixels"), DEFAULT_MAX_PIXELS)
    expression = payload.get("expression")
    if expression is None:
        raise EngineError("Request is missing 'expression'.")
    if fmt == "GEO_TIFF":
        writer = _geotiff_writer(options.get("geoTiffOptions") or {}, prefix)
    else:
        writer = _tfrecord_writer(options.get("tfRecordOptions") or {}, prefix)
    request_grid = payload.get("grid")

    def work(op) -> list[str]:
        ctx.cancelled = op.cancel_event
        ev = Evaluator(expression, ctx)
        image = as_image("Export.image", ev.evaluate())
        if request_grid:
            grid = grid_from_request(request_grid)
        else:
            grid = export_grid(image, export_region(ev))
        check_max_pixels(grid, max_pixels)
        if getattr(engine, "faults", None) is not None:
            engine.faults.memory(grid.size)
        with tempfile.TemporaryDirectory(prefix="gee-mining-export-") as tmp:
            staged = writer(image, grid, ctx, Path(tmp), lambda f: _progress(op, 0.95 * f))
            op.pixels_computed = ctx.pixels_computed
            uris = _commit(storage, bucket, staged, op.cancel_event.is_set)
        return uris

    return work


def _tiles(total: int, step: int) -> list[tuple[int, int]]:
    return [(o, min(step, total - o)) for o in range(0, total, step)]


def live_windows(grid: PixelGrid, step: tuple[int, int], image: Image, margin: tuple[int, int] = (0, 0)
                 ) -> set[tuple[int, int]]:  # fmt: skip
    """The ``(column, row)`` indices of the windows of ``step`` pixels tiling ``grid`` (each widened by
    ``margin``) where ``image`` may hold an unmasked pixel: the others are surely masked (``Image.surely_masked``)
    and need no computing. Probed as a quadtree, so a batch of scattered cells in a large rectangle costs about
    (its live windows x the tree's depth) probes, not one per window."""
    (sw, sh), (mx, my) = step, margin
    nx, ny = math.ceil(grid.width / sw), math.ceil(grid.height / sh)
    live: set[tuple[int, int]] = set()
    stack = [(0, 0, nx, ny)]
    while stack:
        i0, j0, i1, j1 = stack.pop()
        w, h = min(i1 * sw, grid.width) - i0 * sw, min(j1 * sh, grid.height) - j0 * sh
        if image.surely_masked(grid.window(i0 * sw - mx, j0 * sh - my, w + 2 * mx, h + 2 * my)):
            continue
        if i1 - i0 == 1 and j1 - j0 == 1:
            live.add((i0, j0))
        elif i1 - i0 >= j1 - j0:
            mid = (i0 + i1) // 2
            stack += [(i0, j0, mid, j1), (mid, j0, i1, j1)]
        else:
            mid = (j0 + j1) // 2
            stack += [(i0, j0, i1, mid), (i0, mid, i1, j1)]
    return live


def _geotiff_writer(options: Mapping[str, Any], prefix: str):
    cog = bool(options.get("cloudOptimized"))
    tile = _int64(options.get("tileSize"), DEFAULT_TILE_SIZE)
    if tile <= 0:
        raise EngineError(f"Export.image: shardSize must be a positive number of pixels, got {tile}.")
    file_dims = _dims(options.get("tileDimensions"), "fileDimensions")
    if file_dims and (file_dims[0] % tile or file_dims[1] % tile):
        raise EngineError(
            f"Export.image: fileDimensions ({file_dims[0]}x{file_dims[1]}) must be a multiple of shardSize ({tile})."
        )
    nodata_opt = options.get("noData")
    nodata = None
    if isinstance(nodata_opt, Mapping):
        nodata = float(nodata_opt.get("floatValue", nodata_opt.get("integerValue", 0)))
    elif nodata_opt is not None:
        nodata = float(nodata_opt)
    skip_empty = bool(options.get("skipEmptyFiles"))

    def write(image: Image, grid: PixelGrid, ctx: Context, tmp: Path, progress) -> Staged:
        dtype = common_dtype(image)
        fw, fh = file_dims or (grid.width, grid.height)
        files = [(c, r, w, h) for r, h in _tiles(grid.height, fh) for c, w in _tiles(grid.width, fw)]
        if skip_empty:  # files surely all masked are neither computed nor written
            live = live_windows(grid, (fw, fh), image)
            files = [f for f in files if (f[0] // fw, f[1] // fh) in live]
        sharded = grid.width > fw or grid.height > fh
        staged: Staged = []
        total = max(1, sum(math.ceil(w / tile) * math.ceil(h / tile) for _, _, w, h in files))
        done = 0
        for i, (c0, r0, w, h) in enumerate(files):
            name = f"{prefix}-{r0:010d}-{c0:010d}.tif" if sharded else f"{prefix}.tif"
            path = tmp / f"{i}.tif"
            base = done

            def tile_done(n: int, base: int = base) -> None:
                progress((base + n) / total)

            wrote_any = _write_geotiff(image, grid.window(c0, r0, w, h), ctx, path, dtype, tile, nodata, cog, tile_done)
            # skipEmptyTiles: a file whose every pixel is masked is not written (Earth Engine's "skipEmptyFiles").
            done += math.ceil(w / tile) * math.ceil(h / tile)
            if wrote_any or not skip_empty:
                staged.append((name, path))
        return staged

    return write


def tiff_block(shard: int) -> int:
    """The GeoTIFF's internal block side for a ``shardSize``: the shard when TIFF allows it (a multiple of 16),
    else 256. ``shardSize`` is the computation tile ("Size in pixels of the tiles in which this image will be
    computed"); Earth Engine documents no rule tying it to 16, only that ``fileDimensions`` is a multiple of it,
    so a file of a 550 px cell (``shardSize`` 550) is allowed; its TIFF blocks are the engine's own choice."""
    return shard if shard % 16 == 0 else DEFAULT_TILE_SIZE


def _property_tags(image: Image) -> dict[str, str]:
    """The image's plain properties (strings and numbers, no ``system:`` or other namespaced ones) as GeoTIFF tags."""
    return {
        k: str(v)
        for k, v in image.properties.items()
        if ":" not in k and isinstance(v, (str, int, float)) and not isinstance(v, bool)
    }


def _write_geotiff(
    image: Image,
    grid: PixelGrid,
    ctx: Context,
    path: Path,
    dtype: np.dtype,
    tile: int,
    nodata: float | None,
    cog: bool,
    tile_done: Callable[[int], None],
) -> bool:
    """Write one GeoTIFF of ``grid``, tile by tile; True if any pixel is unmasked."""
    plain = path.with_suffix(".plain.tif") if cog else path
    block = tiff_block(tile)
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": len(image.bands),
        "dtype": dtype.name,
        "crs": rasterio.crs.CRS.from_user_input(grid.crs),
        "transform": grid.affine,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "BIGTIFF": "IF_SAFER",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    fill = 0.0 if nodata is None else nodata
    any_valid = False
    n_tiles = 0
    with rasterio.open(plain, "w", **profile) as ds:
        for i, band in enumerate(image.bands, start=1):
            ds.set_band_description(i, band.name)
        ds.update_tags(**_property_tags(image))
        for r0, h in _tiles(grid.height, tile):
            for c0, w in _tiles(grid.width, tile):
                ctx.check_cancelled()
                sub = grid.window(c0, r0, w, h)
                empty = image.surely_masked(sub)  # every band masked: the fill, nothing computed
                for i, band in enumerate(image.bands, start=1):
                    arr = np.ma.masked_all((h, w)) if empty or band.surely_masked(sub) else band.compute(sub, ctx)
                    any_valid = any_valid or not np.ma.getmaskarray(arr).all()
                    ds.write(_cast(arr.filled(fill), dtype), i, window=Window(c0, r0, w, h))
                ctx.pixels.clear()  # tiles do not share pixels: keep memory flat
                n_tiles += 1
                tile_done(n_tiles)
    if cog:
        rio_copy(plain, path, driver="COG", compress="DEFLATE", blocksize=block, overview_resampling="nearest")
        plain.unlink()
    return any_valid


def _tfrecord_options(options: Mapping[str, Any]) -> tuple:
    """A TFRecord export's format options, checked: patch size, margin (x, y), compress, maximum file bytes, the
    default value of masked pixels and the largest masked share of a patch kept."""
    patch = _dims(options.get("tileDimensions"), "patchDimensions")
    if patch is None:
        raise EngineError("Export.image: TFRecord exports need formatOptions.patchDimensions.")
    kernel = _dims(options.get("marginDimensions"), "kernelSize", minimum=0) or (1, 1)
    for k in kernel:
        if k > 1 and k % 2:
            raise EngineError(
                f"Export.image: an odd kernelSize ({k}) is not supported by the local engine; "
                "patches are buffered by kernelSize/2 pixels on each side."
            )
    mx, my = kernel[0] // 2, kernel[1] // 2
    compress = bool(options.get("compress"))
    max_bytes = _int64(options.get("maxSizeBytes"), DEFAULT_MAX_TFRECORD_BYTES)
    default = float(options.get("defaultValue") or 0.0)
    ratio = options.get("maxMaskedRatio")
    ratio = 1.0 if ratio is None else float(ratio.get("value", 1.0) if isinstance(ratio, Mapping) else ratio)
    for unsupported in ("tensorDepths", "sequenceData", "collapseBands"):
        if options.get(unsupported):
            raise EngineError(f"Export.image: TFRecord option {unsupported} is not supported by the local engine.")
    return patch, (mx, my), compress, max_bytes, default, ratio


def _tfrecord_writer(options: Mapping[str, Any], prefix: str):
    """The writer of a TFRecord export: its patches as ``tf.train.Example`` records in files of at most
    ``maxSizeBytes``, and the ``mixer.json`` where every patch is kept."""
    patch, (mx, my), compress, max_bytes, default, ratio = _tfrecord_options(options)
    suffix = ".tfrecord.gz" if compress else ".tfrecord"

    def write(image: Image, grid: PixelGrid, ctx: Context, tmp: Path, progress) -> Staged:
        pw, ph = patch
        per_row, rows = grid.width // pw, grid.height // ph
        if per_row == 0 or rows == 0:
            raise EngineError(
                f"Export.image: patchDimensions ({pw}x{ph}) are larger than the export region "
                f"({grid.width}x{grid.height})."
            )
        defaults = {b.name: _band_default(default, b.pixel_type) for b in image.bands}
        staged: Staged = []
        writer: RecordWriter | None = None
        fh = None
        total = per_row * rows
        live = live_windows(grid.window(0, 0, per_row * pw, rows * ph), patch, image, (mx, my))
        try:
            for k, arrays in _patch_arrays(image, grid, ctx, patch, (mx, my), per_row, live, ratio == 1.0):
                masked = np.zeros(next(iter(arrays.values())).shape, dtype=bool)
                for a in arrays.values():
                    masked |= np.ma.getmaskarray(a)
                if ratio < 1.0 and masked.mean() > ratio:
                    progress((k + 1) / total)
                    continue
                record = encode_example({n: a.filled(defaults[n]).astype(np.float32) for n, a in arrays.items()})
                size = len(frame(record)) if writer is None else len(record) + 16
                if writer is None or (writer.bytes_written and writer.bytes_written + size > max_bytes):
                    if writer is not None:
                        writer.close()
                        fh.close()
                    path = tmp / f"{len(staged):05d}{suffix}"
                    fh = path.open("wb")
                    writer = RecordWriter(fh, compress)
                    staged.append((f"{prefix}-{len(staged):05d}{suffix}", path))
                writer.write(record)
                progress((k + 1) / total)
        finally:
            if writer is not None:
                writer.close()
            if fh is not None:
                fh.close()
        if ratio == 1.0:
            staged.append((f"{prefix}-mixer.json", _write_mixer(tmp, grid, patch, per_row, total)))
        return staged

    return write


def _write_mixer(tmp: Path, grid: PixelGrid, patch: tuple[int, int], per_row: int, total: int) -> Path:
    """The export's ``mixer.json``: its projection, patch size and patch counts, as Earth Engine writes it."""
    mixer = {
        "projection": {"crs": grid.crs, "affine": {"doubleMatrix": [float(t) for t in grid.transform]}},
        "patchDimensions": list(patch),
        "patchesPerRow": per_row,
        "totalPatches": total,
    }
    path = tmp / "mixer.json"
    path.write_text(json.dumps(mixer, indent=2))
    return path


STRIP_PIXELS = 2048  # patches are computed a strip of up to this many pixels wide at a time


def _patch_arrays(image: Image, grid: PixelGrid, ctx: Context, patch, margin, per_row: int,
                  live: set[tuple[int, int]], keep_masked: bool):  # fmt: skip
    """``(k, {band: masked array})`` for each patch ``k`` in row-major order, its ``margin`` included.

    Computed a strip of patches at a time (one window of up to :data:`STRIP_PIXELS` pixels wide per row of
    patches, then sliced): the same pixels as patch by patch, on the same lattice, with far fewer
    evaluations of the image graph. Only the ``live`` patches (``(column, row)``, :func:`live_windows`) are
    computed; the others are surely all masked: left out, or all masked arrays with ``keep_masked`` (a
    ``maxMaskedRatio`` of 1 keeps them). The cancel flag is checked between strips."""
    (pw, ph), (mx, my) = patch, margin
    step = max(1, STRIP_PIXELS // pw)
    by_row: dict[int, list[int]] = defaultdict(list)
    for c, r in sorted(live):
        by_row[r].append(c)
    for r in range(grid.height // ph) if keep_masked else sorted(by_row):
        chunks = range(0, per_row, step) if keep_masked else sorted({c - c % step for c in by_row[r]})
        for c0 in chunks:
            count = min(step, per_row - c0)
            alive = [j for j in range(count) if (c0 + j, r) in live]
            strip = {}
            if alive:  # one window from the chunk's first live patch to its last
                ctx.check_cancelled()
                a, b = alive[0], alive[-1] + 1
                sub = grid.window((c0 + a) * pw - mx, r * ph - my, (b - a) * pw + 2 * mx, ph + 2 * my)
                strip = {band.name: np.ma.masked_all(sub.shape) if band.surely_masked(sub) else band.compute(sub, ctx)
                         for band in image.bands}  # fmt: skip
                ctx.pixels.clear()
            for j in range(count):
                if (c0 + j, r) in live:
                    o = (j - alive[0]) * pw
                    yield r * per_row + c0 + j, {n: v[:, o : o + pw + 2 * mx] for n, v in strip.items()}
                elif keep_masked:
                    yield (
                        r * per_row + c0 + j,
                        {b.name: np.ma.masked_all((ph + 2 * my, pw + 2 * mx)) for b in image.bands},
                    )


def _band_default(value: float, ptype: PixelType) -> float:
    """``defaultValue`` as a band holds it: fraction dropped and clamped for integer bands."""
    if not ptype.is_int:
        return value
    return float(min(max(math.trunc(value), ptype.min), ptype.max))

"""What an export job makes of each cell: the products, one function each, by name in :data:`PRODUCTS`.

A product is ``product(ee, row, job) -> ee.batch.Task`` (unstarted): the task that writes that cell's
output under the job's ``gs://bucket/prefix``. The launcher (``batch.jobs.run_job``) calls it for every cell
of the job's grid table. A new product is a function here and a line in :data:`PRODUCTS`
(docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import PurePath
from typing import Any, Protocol

from gee_mining.batch.batches import Batch, search_radius
from gee_mining.batch.exports import ExportSpec, cell_export_task, export_pixel_table, task_description
from gee_mining.contracts.bands import NODATA
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.contracts.schemas import columns
from gee_mining.errors import InputError
from gee_mining.io.polygons import POLYGON_SUFFIXES
from gee_mining.steps.cell_image import ImagerySpec
from gee_mining.steps.cell_image import cell_image as image_of
from gee_mining.steps.grid import ee_cell_geometry
from gee_mining.steps.labels import painted
from gee_mining.steps.pixel_tables import cells_pixel_features
from gee_mining.steps.sentinel2 import CompositeSpec, no_scene_error, scene_counts

JOB_PARAMS = ("polygons", "format", "patch_size", "margin", "files_per_side", "max_masked_ratio")  # not imagery


class Job(Protocol):
    """What a product reads of its job (``batch.spec.JobSpec`` is one)."""

    name: str
    product: str
    bucket: str
    prefix: str
    params: dict[str, Any]


def _description(spec: Job, row: dict) -> str:
    """An Earth Engine task description (letters, digits, '-', '_', at most 100 characters)."""

    return task_description(row["name"], spec.name)


def _file_prefix(spec: Job, row: dict) -> str:
    return f"{spec.prefix}/{row['name']}" if spec.prefix else str(row["name"])


def cell_geotiff(ee, row: dict, spec: Job):
    """A GeoTIFF on the cell's lattice (``params.scale`` m, default 10) of a cheap image (``params.value``).

    The image is ``ee.Image.constant(value)``: the product exercises the launcher; real
    per-cell products (composites, indices) plug in the same way.
    """

    grid = pixel_grid(row, scale=float(spec.params.get("scale", 10.0)))
    image = ee.Image.constant(float(spec.params.get("value", 1.0))).toFloat().rename("value")
    return ee.batch.Export.image.toCloudStorage(
        image,
        description=_description(spec, row),
        bucket=spec.bucket,
        fileNamePrefix=_file_prefix(spec, row),
        crs=grid.crs,
        crsTransform=list(grid.transform),
        dimensions=f"{grid.width}x{grid.height}",
        fileFormat="GeoTIFF",
    )


def grid_table(ee, row: dict, spec: Job):
    """The cell itself (its polygon and grid-table columns) as a table file (``params.format``, default CSV).

    Not for global runs: the grid table already holds these squares (one task per cell would re-export it).
    It stays as the cheapest product that writes a cell's identity, for the launcher's crash tests and
    ``bench/bench_jobs.py``."""

    props = {k: v for k, v in row.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    fc = ee.FeatureCollection([ee.Feature(ee_cell_geometry(ee, row), props)])
    return ee.batch.Export.table.toCloudStorage(
        fc,
        description=_description(spec, row),
        bucket=spec.bucket,
        fileNamePrefix=_file_prefix(spec, row),
        fileFormat=str(spec.params.get("format", "CSV")),
    )


def _imagery(spec: Job):

    params = {k: v for k, v in spec.params.items() if k not in JOB_PARAMS}
    if "polygons" not in spec.params:
        raise InputError(f'job {spec.name}: [params] needs polygons = "<table asset id of the mine polygons>".')
    polygons = spec.params["polygons"]
    if not isinstance(polygons, str) or not polygons.strip():
        raise InputError(f'job {spec.name}: params.polygons = {polygons!r}: give a table asset id, e.g. '
                         '"projects/my-project/assets/mines".')  # fmt: skip
    if PurePath(polygons).suffix.lower() in (*POLYGON_SUFFIXES, ".csv"):
        raise InputError(
            f"job {spec.name}: params.polygons = {polygons!r} is a file, but an export task reads its polygons from "
            "a table asset: upload it (earthengine upload table --asset_id=projects/PROJECT/assets/NAME "
            f"{polygons}; for the local engine, add it to the catalog TOML of gee-mining serve / --catalog) and give "
            'its id, e.g. polygons = "projects/my-project/assets/mines".'
        )
    return spec.params["polygons"], ImagerySpec.from_params(params)


def cell_image(ee, row: dict, spec: Job):
    """The cell's image (composite, indices, labels; ``steps.cell_image.cell_image``) as a COG or TFRecord patches.

    ``params``: ``polygons`` (asset id), ``format`` ("GeoTIFF" or "TFRecord"), ``patch_size``, ``margin``
    and the imagery options (``indices``, ``pairwise``, ``start``, ``end``, ``mask``, ...).
    """

    polygons, imagery = _imagery(spec)
    export = ExportSpec(
        f"gs://{spec.bucket}/{spec.prefix}",
        str(spec.params.get("format", "GeoTIFF")),
        patch_size=int(spec.params.get("patch_size", 128)),
        margin=int(spec.params.get("margin", 0)),
    )
    return cell_export_task(row, polygons, export, imagery, description=_description(spec, row))


SCENE_CHECKED = ("cell-image", "pixel-table")
"""Per-cell imagery products: the launcher fails their cells no scene covers (:func:`uncovered`) before any task."""


def uncovered(ee, rows: list[dict], spec: Job) -> dict[str, str]:
    """The cells of ``rows`` no Sentinel-2 scene covers in the job's period, each with the error ``export-cells``
    gives it (their export would be all nodata and look like a success): one request per 500 cells."""
    _, imagery = _imagery(spec)
    counts = scene_counts(rows, imagery.composite)
    return {r["name"]: no_scene_error(r, imagery.composite) for r, n in zip(rows, counts, strict=True) if n == 0}


def pixel_table(ee, row: dict, spec: Job):
    """The cell's pixel table (``steps.pixel_tables.pixel_features``) as CSV; ``params`` as for ``cell-image``."""

    polygons, imagery = _imagery(spec)
    image = image_of(row, polygons, imagery)
    return export_pixel_table(
        row, image, imagery.band_names, f"gs://{spec.bucket}/{spec.prefix}", description=_description(spec, row)
    )


def _cells_mask(ee, batch: Batch):
    """1 on the pixels of the batch's cells (their lattices' squares, whose edges are pixel edges), else 0."""
    crs = f"EPSG:{batch.epsg}"
    boxes = [pixel_grid(c).bounds for c in batch.cells]
    fc = ee.FeatureCollection([ee.Feature(ee.Geometry.Rectangle(list(b), crs, False)) for b in boxes])
    return painted(fc)


def _batch_stack(ee, batch: Batch, spec: Job):
    """The cell stack over a batch's rectangle (scenes over it, labels with its cells' own search radius), on
    the zone's 10 m lattice, and that lattice; the imagery spec used. Each cell's pixels are those of its own
    ``cell-image`` (the lattice is shared, the radius is the cell's)."""
    polygons, imagery = _imagery(spec)
    first = batch.cells[0]
    if imagery.labels and imagery.search_radius is None:
        imagery = replace(imagery, search_radius=search_radius(first))
    grid = batch.grid
    region = ee.Geometry.Rectangle(list(grid.bounds), grid.crs, False)
    return image_of(first, polygons, imagery, region=region, label_grid=grid), grid, imagery


def _image_export(ee, image, grid, spec: Job, row: dict, **options):
    return ee.batch.Export.image.toCloudStorage(
        image.reproject(crs=grid.crs, crsTransform=list(grid.transform)),
        description=_description(spec, row),
        bucket=spec.bucket,
        fileNamePrefix=_file_prefix(spec, row),
        crs=grid.crs,
        crsTransform=list(grid.transform),
        dimensions=f"{grid.width}x{grid.height}",
        maxPixels=int(1e13),
        **options,
    )


def cell_image_batch(ee, row: dict, spec: Job):
    """Every cell of a batch (``batch.batches``) in ONE task: one GeoTIFF per file block, each cell's pixels
    those of its ``cell-image`` export (params as for ``cell-image``, GeoTIFF only; ``files_per_side``).

    The image is the cell stack (scenes over the batch's rectangle, labels with the cells' own search radius)
    masked outside the batch's cells, exported on the zone's 10 m lattice with ``fileDimensions`` = a file
    block and ``skipEmptyTiles``; ``batches.cells_of_file`` maps each file back to its cells.

    Bands: the 12 Sentinel-2 bands and the labels (``_mine``, ``distance``) by default, as every batched
    product: indices and normalised differences are cheap to compute offline from the 12 bands
    (``contracts.features``), so they are not shipped unless ``params.indices`` / ``params.pairwise`` ask.
    """
    batch = Batch.from_row(row)
    if str(spec.params.get("format", "GeoTIFF")).lower() != "geotiff":
        raise InputError(f"job {spec.name}: cell-image-batch writes GeoTIFFs; remove format or use cell-image.")
    image, grid, _ = _batch_stack(ee, batch, spec)
    return _image_export(ee, image.updateMask(_cells_mask(ee, batch)), grid, spec, row, shardSize=batch.file_px,
                         fileDimensions=[batch.file_px, batch.file_px], skipEmptyTiles=True, fileFormat="GeoTIFF",
                         formatOptions={"cloudOptimized": True, "noData": NODATA})  # fmt: skip


def pixel_table_batch(ee, row: dict, spec: Job):
    """Every cell of a batch in ONE table export: ``PREFIX/<batch>.csv``, the rows of each cell's ``pixel-table``.

    One ``sampleRegions`` over all the batch's cells (``steps.pixel_tables.cells_pixel_features``): every
    unmasked pixel of each cell, no sampling (so no seed: the rows are each cell's full table, exactly). Each row
    carries its cell's name in ``cell`` and its grid row's metadata, taken from the cell's feature (never from a
    file name), and ``row``/``col`` in that cell's own lattice. Bands: the 12 Sentinel-2 bands and the labels by
    default (indices and normalised differences are computed offline where they are used; ``params.indices`` /
    ``params.pairwise`` add them).
    """
    batch = Batch.from_row(row)
    image, _, imagery = _batch_stack(ee, batch, spec)
    return ee.batch.Export.table.toCloudStorage(
        cells_pixel_features(list(batch.cells), image),
        description=_description(spec, row),
        bucket=spec.bucket,
        fileNamePrefix=_file_prefix(spec, row),
        fileFormat="CSV",
        selectors=columns(imagery.band_names, batch.cells[0]),
    )


def patch_size_of(batch: Batch, spec: Job) -> int:
    """The patch side of a TFRecord batch: ``params.patch_size``, which must divide the file block (so every
    block pixel is in exactly one patch and, at 5500 and 2750 m, every patch in one cell); by default the largest
    divisor of the block that is at most 128 (550 px blocks: 110; 275 px: 55)."""
    f = batch.file_px
    size = spec.params.get("patch_size")
    if size is None:
        return max(d for d in range(1, min(f, 128) + 1) if f % d == 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or f % size:
        divisors = [d for d in range(2, min(f, 256) + 1) if f % d == 0]
        raise InputError(f"job {spec.name}: patch_size = {size!r} does not divide the {f} px file block of "
                         f"{batch.cell_size:g} m cells; use one of {divisors}.")  # fmt: skip
    return size


def _masked_ratio(spec: Job) -> float:
    ratio = spec.params.get("max_masked_ratio", 0.5)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise InputError(f"job {spec.name}: max_masked_ratio = {ratio!r}: give a fraction in [0, 1], e.g. 0.5.")
    return float(ratio)


def tfrecord_batch(ee, row: dict, spec: Job):
    """Every cell of a batch in ONE TFRecord export: patches of the cell stack, patches with no cell dropped.

    The image is that of ``cell-image-batch`` (masked outside the batch's cells) plus the bands ``x`` and ``y``,
    each pixel centre in the zone's UTM CRS (masked outside the cells only), exported on the batch's lattice with:

    - ``patchDimensions`` = ``params.patch_size`` (:func:`patch_size_of`: it divides the file block);
    - ``maxMaskedRatio`` (the client's ``formatOptions.maskedThreshold``) = ``params.max_masked_ratio`` (default
      0.5): a patch with a larger share of masked pixels (outside the cells, or without a clear observation) is
      not written. Earth Engine then writes no mixer sidecar, so
      the patches carry their place: ``x``/``y`` give each pixel's cell (``floor(x / cell_size)``) without
      relying on file names or patch order;
    - ``defaultValue`` = the nodata value (``contracts.bands.NODATA``, -9999): a masked pixel reads -9999 in
      every band, never a valid reflectance or a "distance 0" label (Earth Engine's default is 0).

    Bands: the 12 Sentinel-2 bands, the labels, ``x``, ``y`` by default (indices are computed offline from the
    12 bands; ``params.indices`` / ``params.pairwise`` add them).
    """
    batch = Batch.from_row(row)
    image, grid, _ = _batch_stack(ee, batch, spec)
    mask = _cells_mask(ee, batch)
    xy = ee.Image.pixelCoordinates(ee.Projection(grid.crs)).select(["x", "y"]).toFloat().updateMask(mask)
    ratio = _masked_ratio(spec)
    size = patch_size_of(batch, spec)
    options = {"patchDimensions": [size, size], "maskedThreshold": ratio, "defaultValue": NODATA,
               "compressed": True}  # fmt: skip
    return _image_export(ee, image.updateMask(mask).addBands(xy), grid, spec, row, fileFormat="TFRecord",
                         formatOptions=options)  # fmt: skip


PRODUCTS: dict[str, Callable[..., Any]] = {
    "cell-geotiff": cell_geotiff,
    "grid-table": grid_table,
    "cell-image": cell_image,
    "pixel-table": pixel_table,
    "cell-image-batch": cell_image_batch,
    "pixel-table-batch": pixel_table_batch,
    "tfrecord-batch": tfrecord_batch,
}

TABLE_FORMATS = ("CSV", "GeoJSON", "KML", "KMZ", "SHP", "TFRecord", "GeoParquet")
_ONE_FILE = {"CSV": ".csv", "GeoJSON": ".geojson", "KML": ".kml", "KMZ": ".kmz"}  # formats written as one file


def one_file_suffix(spec: Job) -> str | None:
    """The suffix of the one file a cell's task writes (``PREFIX/<cell><suffix>``), for the per-cell table products
    in one-file formats; None where a task may write several (GeoTIFF tiles, TFRecord shards, a shapefile's parts)
    or a batch's files. The launcher checks that file by name instead of listing the destination."""
    if spec.product == "pixel-table":
        return ".csv"
    if spec.product == "grid-table":
        return _ONE_FILE.get(str(spec.params.get("format", "CSV")))
    return None


_IMAGERY_PARAMS = frozenset(
    {f.name for f in fields(CompositeSpec)} | {"indices", "pairwise", "labels", "search_radius", "polygons"}
)
PARAMS: dict[str, frozenset[str]] = {
    "cell-geotiff": frozenset({"scale", "value"}),
    "grid-table": frozenset({"format"}),
    "cell-image": _IMAGERY_PARAMS | {"format", "patch_size", "margin"},
    "pixel-table": _IMAGERY_PARAMS,
    "cell-image-batch": _IMAGERY_PARAMS | {"format", "files_per_side"},
    "pixel-table-batch": _IMAGERY_PARAMS | {"files_per_side"},
    "tfrecord-batch": _IMAGERY_PARAMS | {"files_per_side", "patch_size", "max_masked_ratio"},
}
"""The ``[params]`` each product reads: the job spec refuses any other key (a typo must not fall back to a default)."""


def check_params(spec: Job) -> None:
    """Check a job's ``[params]`` values up front (the imagery options, the polygons), so that a bad value is one
    error before any task is submitted rather than one failed task per cell."""
    for key in ("scale", "value"):
        value = spec.params.get(key, 1.0)
        if spec.product == "cell-geotiff" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"params.{key} = {value!r}: give a number, e.g. {key} = 10")
    table_format = spec.params.get("format", "CSV")
    if spec.product == "grid-table" and table_format not in TABLE_FORMATS:
        raise InputError(f"params.format = {table_format!r}: use one of {', '.join(TABLE_FORMATS)}")
    if "polygons" in PARAMS.get(spec.product, ()):
        _imagery(spec)
        ImagerySpec.from_params({k: v for k, v in spec.params.items() if k in _IMAGERY_PARAMS})
    if spec.product == "tfrecord-batch":
        _masked_ratio(spec)
        if "patch_size" in spec.params and not (
            isinstance(spec.params["patch_size"], int) and spec.params["patch_size"] > 0
        ):
            raise InputError(
                f"params.patch_size = {spec.params['patch_size']!r}: give a whole number of pixels, e.g. 55."
            )
    if spec.product == "cell-image":
        ExportSpec(f"gs://{spec.bucket}/{spec.prefix}", str(spec.params.get("format", "GeoTIFF")),
                   patch_size=spec.params.get("patch_size", 128), margin=spec.params.get("margin", 0))  # fmt: skip


BATCHED_PRODUCTS: dict[str, str] = {"cell-image-batch": "image", "pixel-table-batch": "table",
                                     "tfrecord-batch": "tfrecord"}  # fmt: skip
"""Products whose unit is a batch of cells (``batch.batches``), by the files they write: the launcher plans
batches for them and verifies each batch by its kind (``batch.jobs.verify_batch``)."""

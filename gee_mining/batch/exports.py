"""Step 2 exports: one cloud-optimized GeoTIFF, or TFRecord patches, per grid cell.

Each cell's image (``steps.cell_image.cell_image``) goes out as an ``Export.image.toCloudStorage``
task on the cell's own 10 m lattice (its UTM CRS, ``crsTransform`` and ``dimensions``),
named after the cell:

- GeoTIFF: ``PREFIX/<cell>.tif``, cloud-optimized, float32, masked pixels -9999 (the nodata tag).
- TFRecord: ``PREFIX/<cell>-00000.tfrecord.gz`` (and more files past ``max_file_size``) plus
  ``PREFIX/<cell>-mixer.json``: patches of ``patch_size`` pixels, each with ``margin`` extra
  pixels on every side (Earth Engine's ``kernelSize = 2 * margin``), one float feature per band; masked
  pixels (no clear observation) hold ``defaultValue`` = -9999, the GeoTIFFs' nodata value (Earth Engine's
  default would be 0: a valid reflectance, and "not a mine, distance 0" in the labels).

The destination is ``gs://BUCKET/PREFIX``: on Earth Engine a real bucket; on the local
engine its storage (a folder under ``storage_root``, the Cloud Storage emulator, or real
Cloud Storage). ``download_to=FOLDER`` copies each cell's finished files into a local
folder, through ``google-cloud-storage`` or the local engine's folder, whatever the engine.
Large runs (thousands of cells, a few tasks at a time, resumable) go through
``gee-mining export run JOB`` (``gee_mining.batch.jobs``), which uses the same task builders.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ee

from gee_mining.batch.tasks import start_tasks, succeeded, wait_for
from gee_mining.connection import open_bucket
from gee_mining.contracts.bands import NODATA
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.contracts.schemas import check_rows, columns
from gee_mining.errors import InputError
from gee_mining.io.cell_tags import CELL_TAG, cell_tag_value
from gee_mining.io.storage import parse_gs_url
from gee_mining.steps.cell_image import ImagerySpec, cell_image
from gee_mining.steps.pixel_tables import pixel_features

FORMATS = ("GeoTIFF", "TFRecord")


@dataclass(frozen=True)
class ExportSpec:
    """Where and how cells are exported: ``gs://BUCKET/PREFIX``, the format and its options."""

    destination: str
    format: Literal["GeoTIFF", "TFRecord"] = "GeoTIFF"
    patch_size: int = 128
    margin: int = 0
    compressed: bool = True
    cloud_optimized: bool = True
    max_file_size: int | None = None

    def __post_init__(self) -> None:
        parse_gs_url(self.destination, "destination")
        fmt = {f.lower(): f for f in FORMATS}.get(str(self.format).lower())
        if fmt is None:
            raise InputError(f"format {self.format!r}: use one of {', '.join(FORMATS)}.")
        object.__setattr__(self, "format", fmt)
        if not (isinstance(self.patch_size, int) and self.patch_size > 0):
            raise InputError(f"patch_size {self.patch_size!r}: give a positive number of pixels, e.g. 128.")
        if not (isinstance(self.margin, int) and self.margin >= 0):
            raise InputError(f"margin {self.margin!r}: give a number of pixels >= 0.")

    @property
    def bucket(self) -> str:
        return parse_gs_url(self.destination)[0]

    @property
    def prefix(self) -> str:
        return parse_gs_url(self.destination)[1]

    def file_prefix(self, cell: str) -> str:
        return f"{self.prefix}/{cell}" if self.prefix else cell

    def format_options(self) -> dict[str, Any]:
        if self.format == "GeoTIFF":
            return {"cloudOptimized": bool(self.cloud_optimized), "noData": NODATA}
        options: dict[str, Any] = {
            "patchDimensions": [self.patch_size, self.patch_size],
            "compressed": bool(self.compressed),
            "defaultValue": NODATA,  # masked pixels read -9999, not Earth Engine's default 0 ("distance 0")
        }
        if self.margin:
            options["kernelSize"] = [2 * self.margin, 2 * self.margin]
        if self.max_file_size:
            options["maxFileSize"] = int(self.max_file_size)
        return options


@dataclass
class ExportResult:
    """One cell's export: its task, final state, files at the destination and local copies."""

    cell: str
    task_id: str
    state: str
    files: list[str] = field(default_factory=list)  # gs:// URIs
    local_files: list[Path] = field(default_factory=list)
    error: str | None = None


def task_description(cell: str, prefix: str = "cell") -> str:
    """An Earth Engine task description: letters, digits, '-' and '_', at most 100 characters."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{prefix}_{cell}")[:100]


def export_task(image: Any, row: dict[str, Any], spec: ExportSpec, description: str | None = None):
    """The (unstarted) ``Export.image.toCloudStorage`` task of ``image`` on the cell's 10 m lattice."""

    grid = pixel_grid(row)
    if spec.format == "TFRecord" and (grid.width % spec.patch_size or grid.height % spec.patch_size):
        raise InputError(
            f"patch_size {spec.patch_size}: the {grid.width} x {grid.height} pixel cell {row['name']} does not split "
            f"into whole patches; use a divisor of {grid.width} (Earth Engine would drop the border patches)."
        )
    if spec.format == "GeoTIFF":  # the cell's row travels in the file (GEE_MINING_CELL tag)
        image = ee.Image(image).set(CELL_TAG, cell_tag_value(row))
    return ee.batch.Export.image.toCloudStorage(
        image,
        description=description or task_description(row["name"]),
        bucket=spec.bucket,
        fileNamePrefix=spec.file_prefix(row["name"]),
        crs=grid.crs,
        crsTransform=list(grid.transform),
        dimensions=f"{grid.width}x{grid.height}",
        maxPixels=int(1e10),
        fileFormat=spec.format,
        formatOptions=spec.format_options(),
    )


def cell_export_task(
    row: dict[str, Any], polygons: Any, spec: ExportSpec, imagery: ImagerySpec | None = None, **kw: Any
):
    """The export task of one cell's image (composite, indices, labels)."""
    return export_task(cell_image(row, polygons, imagery), row, spec, **kw)


def export_cells(
    rows: Sequence[dict[str, Any]],
    polygons: Any,
    spec: ExportSpec,
    imagery: ImagerySpec | None = None,
    download_to: str | os.PathLike | None = None,
    wait: bool = True,
    progress: Callable[[str], None] | None = None,
    image: Any = None,
) -> list[ExportResult]:
    """Export every cell of ``rows``: start one task per cell, wait, list (and optionally copy) the files.

    Each cell's image is ``steps.cell_image.cell_image`` (composite, indices, labels), or ``image`` when given: any
    ``ee.Image`` (a composite served as an asset, a probability map) exported on each cell's lattice.

    For a few cells or a demo. Thousands of cells belong in an export job
    (``gee-mining export run``), which keeps at most ``max_running`` tasks alive and resumes.
    """
    rows = check_rows(rows)
    names = [r["name"] for r in rows]
    if len(set(names)) != len(names):
        raise InputError("rows: cell names repeat; give each cell once (names are the files' names).")
    tasks = [cell_export_task(row, polygons, spec, imagery) if image is None else export_task(image, row, spec)
             for row in rows]  # fmt: skip
    start_tasks(tasks, progress, [f"{row['name']} ({spec.format})" for row in rows])
    if not wait:
        return [ExportResult(r["name"], t.id, "RUNNING") for r, t in zip(rows, tasks, strict=True)]
    statuses = wait_for(tasks, progress=progress)
    results = []
    bucket = open_bucket(spec.bucket)
    for row, task, status in zip(rows, tasks, statuses, strict=True):
        state = "COMPLETED" if succeeded(status) else status["state"]
        result = ExportResult(row["name"], task.id, state, error=status.get("error_message"))
        if state == "COMPLETED":
            names = cell_files(bucket.list(spec.file_prefix(row["name"])), spec.file_prefix(row["name"]))
            result.files = [f"gs://{spec.bucket}/{n}" for n in names]
            if download_to is not None:
                result.local_files = [bucket.download(n, Path(download_to) / Path(n).name) for n in names]
        results.append(result)
    failed = [r for r in results if r.state != "COMPLETED"]
    if progress:
        progress(f"[exports] {len(results) - len(failed)} cells exported, {len(failed)} failed")
    return results


def cell_files(names: Sequence[str], file_prefix: str) -> list[str]:
    """The objects one cell's export wrote: ``P.tif``, ``P-*.tif``, ``P-NNNNN.tfrecord[.gz]``, ``P-mixer.json``."""
    pattern = re.compile(re.escape(file_prefix) + r"(\.tif|-\d+-\d+\.tif|-\d{5}\.tfrecord(\.gz)?|-mixer\.json)$")
    return sorted(n for n in names if pattern.fullmatch(n))


def export_pixel_table(row: dict[str, Any], image: Any, bands: Sequence[str], destination: str, description=None):
    """An (unstarted) ``Export.table.toCloudStorage`` task writing the cell's pixel table as CSV.

    ``destination`` is ``gs://BUCKET/PREFIX``; the file is ``PREFIX/<cell>.csv``.
    """

    spec = ExportSpec(destination)
    return ee.batch.Export.table.toCloudStorage(
        pixel_features(row, image),
        description=description or task_description(row["name"], "pixels"),
        bucket=spec.bucket,
        fileNamePrefix=spec.file_prefix(row["name"]),
        fileFormat="CSV",
        selectors=columns(bands, row),
    )

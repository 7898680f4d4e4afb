"""Step 2 exports: one cloud-optimized GeoTIFF, or TFRecord patches, per grid cell.

Each cell's image (``imagery.cell_image``) goes out as an ``Export.image.toCloudStorage``
task on the cell's own 10 m lattice (its UTM CRS, ``crsTransform`` and ``dimensions``),
named after the cell:

- GeoTIFF: ``PREFIX/<cell>.tif``, cloud-optimized, float32, masked pixels -9999 (the nodata tag).
- TFRecord: ``PREFIX/<cell>-00000.tfrecord.gz`` (and more files past ``max_file_size``) plus
  ``PREFIX/<cell>-mixer.json``: patches of ``patch_size`` pixels, each with ``margin`` extra
  pixels on every side (Earth Engine's ``kernelSize = 2 * margin``), one float feature per band.

The destination is ``gs://BUCKET/PREFIX``: on Earth Engine a real bucket; on the local
engine its storage (a folder under ``storage_root``, the Cloud Storage emulator, or real
Cloud Storage). ``download_to=FOLDER`` copies each cell's finished files into a local
folder, through ``google-cloud-storage`` or the local engine's folder, whatever the engine.
Large runs (thousands of cells, a few tasks at a time, resumable) go through
``gee-mining export run JOB`` (``gee_mining.batch.jobs``), which uses the same task builders.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ee
import google_crc32c
from google.cloud import storage

from gee_mining.connection import current_connection
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.contracts.schemas import check_rows
from gee_mining.errors import GeeMiningError, InputError
from gee_mining.steps.cell_image import ImagerySpec, cell_image

FORMATS = ("GeoTIFF", "TFRecord")
NODATA = -9999.0
"""GeoTIFF nodata: 0 is a valid `_mine` and `distance` value, -9999 is no value of any band."""


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
        if not isinstance(self.destination, str) or not self.destination.startswith("gs://"):
            raise InputError(
                f"destination {self.destination!r}: give gs://BUCKET/PREFIX (on the local engine it lands under the "
                "engine's storage); for a local copy add download_to=FOLDER (CLI: --download DIR)."
            )
        if not self.bucket:
            raise InputError(f"destination {self.destination!r} names no bucket: give gs://BUCKET/PREFIX.")
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
        return self.destination.removeprefix("gs://").partition("/")[0]

    @property
    def prefix(self) -> str:
        return self.destination.removeprefix("gs://").partition("/")[2].strip("/")

    def file_prefix(self, cell: str) -> str:
        return f"{self.prefix}/{cell}" if self.prefix else cell

    def format_options(self) -> dict[str, Any]:
        if self.format == "GeoTIFF":
            return {"cloudOptimized": bool(self.cloud_optimized), "noData": NODATA}
        options: dict[str, Any] = {
            "patchDimensions": [self.patch_size, self.patch_size],
            "compressed": bool(self.compressed),
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


def wait_for(tasks: Sequence[Any], poll_s: float = 1.0, timeout_s: float | None = None, progress=None) -> list[dict]:
    """Poll started tasks until each ends (COMPLETED, FAILED or CANCELLED); their final statuses."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    done: dict[int, dict] = {}
    last = None
    while len(done) < len(tasks):
        for i, task in enumerate(tasks):
            if i not in done:
                status = task.status()
                if status.get("state") in ("COMPLETED", "SUCCEEDED", "FAILED", "CANCELLED"):
                    done[i] = status
        line = f"[exports] {len(done)}/{len(tasks)} tasks finished"
        if progress and line != last:
            progress(line)
            last = line
        if len(done) < len(tasks):
            if deadline is not None and time.monotonic() > deadline:
                raise GeeMiningError(f"{len(tasks) - len(done)} export task(s) still running after {timeout_s:g} s.")
            time.sleep(poll_s)
    return [done[i] for i in range(len(tasks))]


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

    Each cell's image is ``imagery.cell_image`` (composite, indices, labels), or ``image`` when given: any
    ``ee.Image`` (a composite served as an asset, a probability map) exported on each cell's lattice.

    For a few cells or a demo. Thousands of cells belong in an export job
    (``gee-mining export run``), which keeps at most ``max_running`` tasks alive and resumes.
    """
    rows = check_rows(rows)
    names = [r["name"] for r in rows]
    if len(set(names)) != len(names):
        raise InputError("rows: cell names repeat; give each cell once (names are the files' names).")
    tasks = []
    for i, row in enumerate(rows):
        task = cell_export_task(row, polygons, spec, imagery) if image is None else export_task(image, row, spec)
        task.start()
        tasks.append(task)
        if progress:
            progress(f"[exports] started {i + 1}/{len(rows)}: {row['name']} ({spec.format})")
    if not wait:
        return [ExportResult(r["name"], t.id, "RUNNING") for r, t in zip(rows, tasks, strict=True)]
    statuses = wait_for(tasks, progress=progress)
    results = []
    bucket = open_bucket(spec.bucket)
    for row, task, status in zip(rows, tasks, statuses, strict=True):
        state = "COMPLETED" if status["state"] in ("COMPLETED", "SUCCEEDED") else status["state"]
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


# -- reading what exports wrote ---------------------------------------------------------


class Bucket:
    """The objects of one Cloud Storage bucket as the current engine sees them (listing and download).

    On Earth Engine and on a local engine backed by the emulator or real Cloud Storage this is
    ``google-cloud-storage``; on a local engine with folder storage, the bucket's folder.
    """

    def __init__(self, name: str, client: Any = None, folder: Path | None = None):
        self.name, self._client, self._folder = name, client, folder

    def list(self, prefix: str = "") -> list[str]:
        if self._folder is not None:
            # Only the folder the prefix ends in is scanned (not the whole bucket): a job verifying
            # each of 10,000 cells must not read 10,000 names 10,000 times.
            parent, _, stem = prefix.rpartition("/")
            base = self._folder / parent if parent else self._folder
            if not base.is_dir():
                return []
            found = []
            for entry in os.scandir(base):
                if not entry.name.startswith(stem) or entry.name.startswith(".partial-"):
                    continue
                if entry.is_file():
                    found.append(f"{parent}/{entry.name}" if parent else entry.name)
                elif entry.is_dir():
                    found += [
                        p.relative_to(self._folder).as_posix() for p in Path(entry.path).rglob("*") if p.is_file()
                    ]
            return sorted(found)
        return sorted(b.name for b in self._client.list_blobs(self.name, prefix=prefix))

    def read(self, name: str) -> bytes:
        if self._folder is not None:
            return (self._folder / name).read_bytes()
        return self._client.bucket(self.name).blob(name).download_as_bytes()

    def download(self, name: str, path: str | os.PathLike) -> Path:
        """Copy one object to ``path`` atomically (a partial file never stays behind)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".partial-{path.name}")
        try:
            tmp.write_bytes(self.read(name))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def crc32c(self, name: str) -> str:
        """The object's CRC32C, base64 as Cloud Storage reports it (computed from the bytes for a folder)."""
        if self._folder is None:
            blob = self._client.bucket(self.name).get_blob(name)
            if blob is not None and blob.crc32c:
                return blob.crc32c

        return base64.b64encode(google_crc32c.Checksum(self.read(name)).digest()).decode()

    def size(self, name: str) -> int:
        if self._folder is not None:
            return (self._folder / name).stat().st_size
        blob = self._client.bucket(self.name).get_blob(name)
        return int(blob.size) if blob is not None else -1


def open_bucket(name: str, storage_root: str | os.PathLike | None = None) -> Bucket:
    """The bucket ``name`` where the current engine's exports land.

    ``storage_root``: the folder of a local engine's folder storage, for a local engine that serves
    from another process (``gee-mining serve --storage DIR``), whose storage this process cannot see.
    """

    if storage_root is not None:
        return Bucket(name, folder=Path(storage_root) / name)
    conn = current_connection()
    engine = conn.local_engine if conn is not None and conn.is_local else None
    if conn is not None and conn.is_local and engine is None:
        raise InputError(
            f"the local engine at {conn.url} serves from another process: give its storage folder "
            "(gee-mining serve --storage DIR; then --storage DIR here) to read what exports wrote."
        )
    if engine is not None:
        if engine.storage_kind == "local":
            return Bucket(name, folder=Path(engine.storage_root) / name)
        return Bucket(name, client=engine.storage_client())

    return Bucket(name, client=storage.Client(project=conn.project if conn else None))

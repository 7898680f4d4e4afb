"""The grid table on disk: written as GeoParquet, GeoPackage or CSV, and read back (one reader for all).

The columns are :data:`gee_mining.contracts.schemas.COLUMNS`, then the metadata columns (see
:func:`columns_of`); GeoParquet and GeoPackage add the cell's polygon in EPSG:4326. Files are written
under a temporary name and renamed, so a failure leaves no half-written table. Every reader of a grid
table (job cells files, the CLI, the detector's splits) goes through :func:`iter_grid_table` /
:func:`read_grid_table`, which check each row's cell columns with
:class:`~gee_mining.contracts.schemas.GridRow`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyproj
import shapely

from gee_mining.contracts.cells import (
    GridTable,
    cell_polygon,
)
from gee_mining.contracts.schemas import COLUMNS, GridRow
from gee_mining.errors import InputError


def check_table_path(path: str | os.PathLike) -> Path:
    """The grid table's path if its suffix is one we write (checked before any work), else InputError."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".gpkg", ".csv"):
        raise InputError(f"{path}: write the grid as .parquet (GeoParquet), .gpkg or .csv.")
    return path


def remove_stale_partials(path: Path) -> None:
    """Remove ``.partial-PID-*`` files beside ``path`` left by a process that no longer runs (a killed ``grid``)."""
    for stale in path.parent.glob(".partial-*"):
        match = re.fullmatch(r"\.partial-(\d+)-\w{8}\.(parquet|gpkg|csv)", stale.name)
        if match is None:
            continue
        try:
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except PermissionError:
            pass  # another user's live process


def write_table(table: GridTable, path: str | os.PathLike) -> Path:
    """Write the grid as GeoParquet (.parquet), GeoPackage (.gpkg) or CSV with bounds (.csv)."""

    path = check_table_path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".partial-{os.getpid()}-", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        {".parquet": _write_parquet, ".gpkg": _write_gpkg, ".csv": _write_csv}[suffix](table, tmp)
        readable_by_all(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def columns_of(table: GridTable) -> list[str]:
    """The base columns, then metadata columns in order of first appearance."""
    extra: dict[str, None] = {}
    for r in table.rows:
        for key in r:
            if key not in COLUMNS:
                extra.setdefault(key, None)
    lc = sorted((k for k in extra if k.startswith("lc_")), key=lambda k: int(k[3:]))
    return COLUMNS + [k for k in extra if not k.startswith("lc_")] + lc


def _column(rows: Iterable[dict], name: str) -> list:
    if name == "polygon_ids":
        return [";".join(str(v) for v in r[name]) for r in rows]
    if name.startswith("lc_"):
        return [r.get(name, 0.0) for r in rows]
    return [r.get(name) for r in rows]


def _write_csv(table: GridTable, path: Path) -> None:

    columns = columns_of(table)
    values = [_column(table.rows, c) for c in columns]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for row in zip(*values, strict=True):
            w.writerow(["" if v is None else v for v in row])


def geoparquet_metadata(geometry_types: list[str]) -> bytes:
    """The ``geo`` metadata of a GeoParquet file of WKB geometries in longitude/latitude (EPSG:4326).

    The CRS is written as PROJJSON, as GeoParquet 1.0 asks: ``"crs": null`` would mean "CRS unknown" (readers such
    as geopandas and QGIS then open the file without one); coordinates stay longitude first, as the spec orders.
    """
    column = {"encoding": "WKB", "geometry_types": geometry_types, "crs": pyproj.CRS("EPSG:4326").to_json_dict()}
    return json.dumps({"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": column}}).encode()


def readable_by_all(path: Path) -> None:
    """Give a file written through ``mkstemp`` (0600) the mode a plain ``open`` would: 0666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _write_parquet(table: GridTable, path: Path) -> None:

    geoms = [shapely.to_wkb(cell_polygon(r)) for r in table.rows]
    data = {c: _column(table.rows, c) for c in columns_of(table)}
    data["geometry"] = geoms
    pa_table = pa.table(data).replace_schema_metadata({b"geo": geoparquet_metadata(["Polygon"])})
    pq.write_table(pa_table, path)


def _write_gpkg(table: GridTable, path: Path) -> None:

    path.unlink(missing_ok=True)
    geoms = np.array([shapely.to_wkb(cell_polygon(r)) for r in table.rows], dtype=object)
    columns = columns_of(table)
    fields = []
    for c in columns:
        values = _column(table.rows, c)
        kind = object if any(isinstance(v, str) for v in values) or any(v is None for v in values) else None
        fields.append(np.array(values, dtype=kind))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyogrio.raw.write(
            path,
            geometry=geoms,
            field_data=fields,
            fields=columns,
            crs="EPSG:4326",
            driver="GPKG",
            geometry_type="Polygon",
            layer="grid",
        )


def iter_grid_table(path: str | os.PathLike, batch: int = 4096) -> Iterator[dict[str, Any]]:
    """The rows of a grid table file (.parquet, .gpkg, .csv), streamed, each checked for name, epsg,
    cell_x, cell_y, cell_size and those typed (a job of a million cells never holds them all in memory);
    other columns as the format gives them (text in a CSV)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: the cells file does not exist: write it with gee-mining grid -o {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        fh = path.open(newline="")
        rows: Iterable[dict[str, Any]] = csv.DictReader(fh)
    elif suffix == ".parquet":
        fh = pq.ParquetFile(path)
        rows = (r for b in fh.iter_batches(batch_size=batch) for r in b.to_pylist())
    elif suffix == ".gpkg":
        fh = None
        rows = _gpkg_rows(path)
    else:
        raise InputError(f"{path}: cells must be .parquet, .gpkg or .csv")
    try:
        for i, row in enumerate(rows):
            yield GridRow.of(row, f"{path}, row {i + 1}").typed(row)
    finally:
        if fh is not None and hasattr(fh, "close"):
            fh.close()


def _gpkg_rows(path: Path) -> list[dict[str, Any]]:
    """A GeoPackage's attribute rows (pyogrio's raw reader: no geopandas needed)."""
    meta, _, _, fields = pyogrio.raw.read(path, read_geometry=False)
    columns = [f.tolist() for f in fields]
    return [dict(zip(meta["fields"], values, strict=True)) for values in zip(*columns, strict=True)]


def duplicate_names(path: str | os.PathLike) -> InputError:
    """The error for a cells file whose names repeat."""
    return InputError(f"{path}: cell names repeat: one row per cell (a ledger row and a requestId per name)")


def read_grid_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a grid table file (see :func:`iter_grid_table`); repeated names are an error."""
    out = list(iter_grid_table(path))
    if len({r["name"] for r in out}) != len(out):
        raise duplicate_names(path)
    return out

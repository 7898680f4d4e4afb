"""The grid table on disk: written as GeoParquet, GeoPackage or CSV, and read back (one reader for all).

The columns are :data:`gee_mining.contracts.schemas.COLUMNS`, then the metadata columns (see
:meth:`GridTableWriter.columns`); GeoParquet and GeoPackage add the cell's polygon in EPSG:4326. Files are written
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
from collections.abc import Callable, Iterable, Iterator
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


PARTIAL = re.compile(r"\.partial-(\d+)-\w{8}\.(parquet|gpkg|csv)")
"""The name of a table being written: the writing process's id, then mkstemp's 8 characters."""


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove the ``.partial-PID-*`` tables in ``folder`` whose process no longer runs (a killed ``grid``): a
    partial of a live process (or of another user's, which cannot be signalled) is left alone. Returns
    those removed."""
    removed = []
    for stale in folder.glob(".partial-*"):
        match = PARTIAL.fullmatch(stale.name)
        if match is None or int(match[1]) == os.getpid():
            continue
        try:
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
            removed.append(stale)
        except PermissionError:
            pass  # another user's live process
    return removed


ROWS_PER_GROUP = 8192  # rows per parquet row group, CSV or GeoPackage append: what the final pass holds at once


class GridTableWriter:
    """A grid table written block by block: memory follows the rows of one :meth:`add`, not the table.

    Opening it removes the dead processes' partial tables in the output's folder and creates this one's
    (``.partial-PID-XXXXXXXX.SUFFIX``, seen from the start of the run: a killed run leaves it, the next run
    removes it). :meth:`add` appends rows to an anonymous spool file (JSON lines, in the output's folder;
    it disappears with the process, however it ends) and notes their columns; :meth:`close` writes the
    table from the spool in groups of :data:`ROWS_PER_GROUP` rows (the metadata columns, such as the land
    cover classes, are known only once every row is in) and renames it onto the output. Used as a context
    manager, a failure removes the partial and leaves no output."""

    def __init__(self, path: str | os.PathLike):
        self.path = check_table_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.path.parent)
        fd, name = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".partial-{os.getpid()}-", suffix=self.path.suffix.lower()
        )
        os.close(fd)
        self.partial = Path(name)
        self._spool = tempfile.TemporaryFile("w+", dir=self.path.parent, encoding="utf-8")
        self._extra: dict[str, None] = {}
        self.count = 0

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows (in order) to the table."""
        for r in rows:
            for key in r:
                if key not in COLUMNS:
                    self._extra.setdefault(key, None)
            self._spool.write(json.dumps(r, allow_nan=True) + "\n")
            self.count += 1

    def columns(self) -> list[str]:
        """The base columns, then metadata columns in order of first appearance (land cover classes sorted)."""
        lc = sorted((k for k in self._extra if k.startswith("lc_")), key=lambda k: int(k[3:]))
        return COLUMNS + [k for k in self._extra if not k.startswith("lc_")] + lc

    def _groups(self) -> Iterator[list[dict[str, Any]]]:
        self._spool.seek(0)
        group: list[dict[str, Any]] = []
        for line in self._spool:
            group.append(json.loads(line))
            if len(group) == ROWS_PER_GROUP:
                yield group
                group = []
        if group or not self.count:
            yield group

    def close(self) -> Path:
        """Write the table and rename it onto the output; returns the output's path."""
        try:
            write = {".parquet": _write_parquet, ".gpkg": _write_gpkg, ".csv": _write_csv}[self.path.suffix.lower()]
            write(self._groups, self.columns(), self.partial)
            readable_by_all(self.partial)
            os.replace(self.partial, self.path)
        except BaseException:
            self.abort()
            raise
        self._spool.close()
        return self.path

    def abort(self) -> None:
        """Leave no output: the partial table and the spool removed."""
        self._spool.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> GridTableWriter:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_table(table: GridTable, path: str | os.PathLike) -> Path:
    """Write the grid as GeoParquet (.parquet), GeoPackage (.gpkg) or CSV with bounds (.csv)."""
    with GridTableWriter(path) as writer:
        writer.add(table.rows)
    return writer.path


def _column(rows: Iterable[dict], name: str) -> list:
    if name == "polygon_ids":
        return [";".join(str(v) for v in r[name]) for r in rows]
    if name.startswith("lc_"):
        return [r.get(name, 0.0) for r in rows]
    return [r.get(name) for r in rows]


Groups = Callable[[], Iterator[list[dict[str, Any]]]]
"""The table's rows, group by group, from the start each time it is called."""


def _write_csv(groups: Groups, columns: list[str], path: Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for rows in groups():
            values = [_column(rows, c) for c in columns]
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


def _arrow(rows: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    data = {c: _column(rows, c) for c in columns}
    data["geometry"] = [shapely.to_wkb(cell_polygon(r)) for r in rows]
    return pa.table(data)


def _write_parquet(groups: Groups, columns: list[str], path: Path) -> None:
    """Two passes over the groups: their column types unified (a column empty in one group, integer in one
    and real in another, as one table of them all would have it), then one row group each."""
    schema = pa.unify_schemas([_arrow(rows, columns).schema for rows in groups()], promote_options="permissive")
    schema = schema.with_metadata({b"geo": geoparquet_metadata(["Polygon"])})
    with pq.ParquetWriter(path, schema) as writer:
        for rows in groups():
            writer.write_table(_arrow(rows, columns).cast(schema))


def _gpkg_kinds(groups: Groups, columns: list[str]) -> list[Any]:
    """Each column's numpy dtype over all groups: text where a value is text or missing, else real where a
    value is real, else as numpy finds it (the field's type is set by the first group written)."""
    text, real = set(), set()
    for rows in groups():
        for c in columns:
            values = _column(rows, c)
            if any(isinstance(v, str) or v is None for v in values):
                text.add(c)
            elif any(isinstance(v, float) for v in values):
                real.add(c)
    return [object if c in text else float if c in real else None for c in columns]


def _write_gpkg(groups: Groups, columns: list[str], path: Path) -> None:
    path.unlink(missing_ok=True)
    kinds = _gpkg_kinds(groups, columns)
    for i, rows in enumerate(groups()):
        geoms = np.array([shapely.to_wkb(cell_polygon(r)) for r in rows], dtype=object)
        fields = [np.array(_column(rows, c), dtype=kind) for c, kind in zip(columns, kinds, strict=True)]
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
                append=i > 0,
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

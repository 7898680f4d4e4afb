"""Pixel tables on disk: one table per cell (Parquet and/or CSV), written and read with their schema's types.

The columns are the contract of ``gee_mining.contracts.schemas`` (position, bands, the cell's metadata). Tables
come from two routes that give the same rows: server-side (``steps.pixel_tables.pixel_features``, exported as CSV
and read back with ``csv_to_table``) and offline from a cell's GeoTIFF (``from_geotiff``, its metadata from the
file's ``GEE_MINING_CELL`` tag). ``read_pixel_table`` reads only the columns and cells asked for (pyarrow
datasets), so tables larger than memory can be sampled by cell.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import rasterio

from gee_mining.contracts.schemas import METADATA_COLUMNS, POSITION_COLUMNS, cell_metadata, columns
from gee_mining.errors import InputError
from gee_mining.io.cell_tags import read_cell_tag

FORMATS = ("parquet", "csv")


def typed_pixel_table(df, bands: Iterable[str]):
    """``df`` with the schema's types: int32 positions, float64 coordinates, float32 bands, uint8 ``_mine``."""
    for name in ("row", "col"):
        if name in df:
            df[name] = df[name].astype(np.int32)
    for name in ("x", "y", "lat", "lon", "overlap"):
        if name in df:
            df[name] = df[name].astype(np.float64)
    for name in bands:
        if name in df:
            df[name] = df[name].astype(np.uint8 if name == "_mine" else np.float32)
    for name in ("epsg", "zoom", "cell_label"):
        if name in df:
            df[name] = df[name].astype(np.int32)
    return df


def csv_to_table(path: str | os.PathLike, bands: Sequence[str] | None = None):
    """A pixel-table CSV (as ``Export.table`` wrote it) as a DataFrame with the schema's types."""

    df = pd.read_csv(path, dtype={"cell": str, "country": str})
    if bands is None:
        bands = [c for c in df.columns if c not in POSITION_COLUMNS and c not in METADATA_COLUMNS]
        bands = [c for c in bands if not c.startswith("lc_")]
    return typed_pixel_table(df.sort_values(["row", "col"], ignore_index=True), bands)


def _cell_row(path: Path, row: dict[str, Any] | None) -> dict[str, Any]:
    """The cell's row from the file's ``GEE_MINING_CELL`` tag; ``row`` (with a warning) for files without one."""
    tagged = read_cell_tag(path)
    if tagged is not None:
        return tagged
    if row is None:
        raise InputError(f"{path}: the GeoTIFF carries no cell metadata (GEE_MINING_CELL tag); give its grid row.")
    warnings.warn(f"{path}: no GEE_MINING_CELL tag; the cell's metadata come from the row given.", stacklevel=3)
    return row


def from_geotiff(path: str | os.PathLike, row: dict[str, Any] | None = None):
    """The pixel table of one exported cell GeoTIFF (``exports``): rows for the pixels with data.

    The cell's name and metadata come from the file's ``GEE_MINING_CELL`` tag; ``row`` (the cell's
    grid row) serves only files without the tag (exports written before the tag, or elsewhere).
    """

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such GeoTIFF; export the cell first (gee_mining.batch.exports.export_cells).")
    row = _cell_row(path, row)
    with rasterio.open(path) as ds:
        bands = list(ds.descriptions)
        if any(b is None for b in bands):
            raise InputError(f"{path}: bands have no names (descriptions); export it with gee_mining.batch.exports.")
        data = ds.read()
        nodata = ds.nodata
        t = ds.transform
    valid = np.ones(data.shape[1:], bool) if nodata is None else ~np.all(data == nodata, axis=0)
    rr, cc = np.nonzero(valid)
    df = pd.DataFrame({"cell": row["name"], "row": rr, "col": cc})
    df["x"] = t.c + (cc + 0.5) * t.a
    df["y"] = t.f + (rr + 0.5) * t.e
    for i, b in enumerate(bands):
        df[b] = data[i][rr, cc]
    for k, v in cell_metadata(row).items():
        if k != "cell":
            df[k] = v
    return typed_pixel_table(df[columns(bands, row)], bands)


def write_pixel_table(df, out_dir: str | os.PathLike, formats: Sequence[str] = ("parquet",)) -> list[Path]:
    """One file per cell, ``<out_dir>/<cell>.<format>``; each written whole or not at all."""
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise InputError(f"formats {bad}: use {', '.join(FORMATS)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for cell, part in df.groupby("cell", sort=True):
        for fmt in formats:
            path = out / f"{cell}.{fmt}"
            tmp = path.with_name(f".partial-{path.name}")
            try:
                if fmt == "parquet":
                    part.to_parquet(tmp, index=False)
                else:
                    part.to_csv(tmp, index=False)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            paths.append(path)
    return paths


def read_pixel_table(path: str | os.PathLike, columns: Sequence[str] | None = None, cells: Iterable[str] | None = None):
    """A pixel table (a folder of per-cell Parquet or CSV files, or one file) as a pandas DataFrame.

    Only ``columns`` are read (all when None) and only the ``cells`` named (all when None).
    """

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no pixel table there; write one with gee-mining pixels or write_pixel_table.")
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    fmt = "parquet"
    if path.is_dir() and not files:
        files, fmt = sorted(path.glob("*.csv")), "csv"
    elif path.suffix == ".csv":
        fmt = "csv"
    if not files:
        raise InputError(f"{path}: holds no .parquet or .csv pixel tables.")
    wanted = None if cells is None else set(cells)
    if wanted is not None and path.is_dir():
        files = [f for f in files if f.stem in wanted]
    dataset = ds.dataset([str(f) for f in files], format=fmt)
    cols = None if columns is None else list(dict.fromkeys(columns))
    if cols is not None:
        missing = sorted(set(cols) - set(dataset.schema.names))
        if missing:
            raise InputError(f"{path}: no column(s) {missing}; it has {dataset.schema.names}.")
    filt = None if wanted is None else ds.field("cell").isin(sorted(wanted))
    return dataset.to_table(columns=cols, filter=filt).to_pandas()

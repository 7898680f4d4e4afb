"""Step 3 pixel tables: one row per pixel of a cell, for the pixel study and classifiers.

Columns (the contract the study, the classifiers and the detector read):

- ``cell`` (the cell's name), ``row``, ``col`` (int32: the pixel in the cell's lattice,
  ``grid.pixel_grid(row)``, 0 = top / left), ``x``, ``y`` (float64: the pixel centre in the cell's
  UTM CRS);
- every band of the cell's image (``imagery.cell_image``): B1..B12, the requested indices,
  ``distance`` (signed metres) and ``_mine`` (0/1), float32 (``_mine`` uint8);
- the cell's metadata: ``epsg``, ``zoom``, ``cell_label`` (1 positive, 0 negative cell),
  ``overlap``, ``lat``, ``lon`` (its centroid), ``country`` and land-cover shares ``lc_<class>``
  when the grid has them.

Pixels with no clear observation (masked in the composite) have no row.

Two routes to the same table:

- **Server-side**, on Earth Engine or the local engine: ``pixel_features(row, image)`` is an
  ``ee.FeatureCollection`` (``Image.sampleRegions`` on the cell's lattice, the cell's metadata
  copied onto every pixel); ``export_pixel_table`` sends it to Cloud Storage as CSV with
  ``Export.table``, and ``csv_to_table`` reads such a CSV back with the schema's types.
- **Offline**, from the per-cell GeoTIFFs that ``exports`` wrote: ``from_geotiff`` reads the file
  (bands named by their descriptions, nodata skipped) and adds the same columns.

``write_pixel_table`` writes a folder of ``<cell>.parquet`` (and/or ``.csv``) files;
``read_pixel_table`` reads back only the columns and cells asked for (pyarrow datasets), so
tables larger than memory can be sampled by cell.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import ee
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import rasterio

from gee_mining.contracts.lattice import pixel_grid
from gee_mining.errors import InputError
from gee_mining.io.cell_tags import read_cell_tag
from gee_mining.io.pages import iter_features

POSITION_COLUMNS = ("cell", "row", "col", "x", "y")
METADATA_COLUMNS = ("epsg", "zoom", "cell_label", "overlap", "lat", "lon", "country")
FORMATS = ("parquet", "csv")


def cell_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The metadata a grid row gives each of its pixels (``cell_label`` is the grid's ``label``)."""
    meta: dict[str, Any] = {"cell": row["name"]}
    for key in ("epsg", "zoom", "overlap", "lat", "lon", "country"):
        if key in row and row[key] is not None:
            meta[key] = row[key]
    if "label" in row:
        meta["cell_label"] = int(row["label"])
    meta.update({k: float(v) for k, v in row.items() if k.startswith("lc_") and v is not None})
    return meta


def pixel_features(row: dict[str, Any], image: Any):
    """Every unmasked pixel of ``image`` on the cell's lattice as a feature: position, bands, metadata.

    ``image`` is the cell's image (``imagery.cell_image``). Written with the ``ee`` API only.
    """

    grid = pixel_grid(row)
    x0, top = grid.transform[2], grid.transform[5]
    proj = ee.Projection(grid.crs, list(grid.transform))
    xy = ee.Image.pixelCoordinates(ee.Projection(grid.crs))  # metres; the sample puts them at pixel centres
    col = xy.select("x").subtract(x0).divide(grid.scale).floor().toInt32().rename("col")
    row_band = ee.Image.constant(top).subtract(xy.select("y")).divide(grid.scale).floor().toInt32().rename("row")
    stacked = image.addBands(ee.Image.cat([row_band, col, xy.select("x"), xy.select("y")]))
    xmin, ymin, xmax, ymax = grid.bounds
    region = ee.Geometry.Rectangle([xmin, ymin, xmax, ymax], grid.crs, False)
    meta = cell_metadata(row)
    cell = ee.FeatureCollection([ee.Feature(region, meta)])
    return stacked.sampleRegions(collection=cell, properties=list(meta), projection=proj, geometries=False)


def columns(bands: Sequence[str], row: dict[str, Any] | None = None) -> list[str]:
    """The table's columns, in order: position, bands, metadata (of ``row`` when given)."""
    meta = [k for k in cell_metadata(row) if k != "cell"] if row else list(METADATA_COLUMNS)
    return [*POSITION_COLUMNS, *bands, *meta]


def _typed(df, bands: Iterable[str]):

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


def fetch_pixel_table(row: dict[str, Any], image: Any, bands: Sequence[str]):
    """The cell's pixel table computed server-side and fetched now (small cells; big runs export)."""

    records = [f["properties"] for f in iter_features(pixel_features(row, image), page_size=5000)]
    cols = columns(bands, row)
    df = pd.DataFrame.from_records(records, columns=cols) if records else pd.DataFrame(columns=cols)
    return _typed(df.sort_values(["row", "col"], ignore_index=True), bands)


def csv_to_table(path: str | os.PathLike, bands: Sequence[str] | None = None):
    """A pixel-table CSV (as ``Export.table`` wrote it) as a DataFrame with the schema's types."""

    df = pd.read_csv(path, dtype={"cell": str, "country": str})
    if bands is None:
        bands = [c for c in df.columns if c not in POSITION_COLUMNS and c not in METADATA_COLUMNS]
        bands = [c for c in bands if not c.startswith("lc_")]
    return _typed(df.sort_values(["row", "col"], ignore_index=True), bands)


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
    return _typed(df[columns(bands, row)], bands)


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

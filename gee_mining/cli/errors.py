"""One error path for every command: known failures become one line naming the input and the fix.

Our own errors (``gee_mining.errors``) already say what to do. Failures of the libraries underneath (Earth
Engine's ``ee.EEException``, GEOS through shapely, GDAL through rasterio, pyarrow, sqlite, pyproj, the OS) are
turned into one line here, naming the command's inputs; anything else is a bug and keeps its traceback.
``--debug`` (anywhere on the command line) shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import sqlite3

import ee
import pyarrow
import pyproj.exceptions
import rasterio.errors
import shapely.errors

from gee_mining.errors import GeeMiningError

# The options that name a command's inputs and outputs, as the user typed them.
INPUT_OPTIONS = ("polygons", "grid", "cells", "pixels", "job", "ledger", "from_geotiff", "dataset", "images",
                 "catalog", "run_dir", "out")  # fmt: skip


def named_inputs(args: argparse.Namespace) -> str:
    """``--polygons a.gpkg, --out b.parquet``: the files and folders the command was given."""
    given = []
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            flag = name if name in ("job", "run_dir") else "--" + name.replace("_", "-")
            given.append(f"{flag} {value}")
    return ", ".join(given) or "the command's arguments"


def _os_error(exc: OSError) -> str:
    where = exc.filename or "a file"
    what = exc.strerror or str(exc)
    if isinstance(exc, PermissionError):
        return f"{where}: {what}: choose a folder you can write to, or change its permissions"
    if isinstance(exc, FileNotFoundError):
        return f"{where}: {what}: check the path"
    if isinstance(exc, IsADirectoryError | NotADirectoryError):
        return f"{where}: {what}: give a file where a file is expected and a folder where a folder is"
    return f"{where}: {what}"


def explain(exc: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message of a known failure, or None for a bug (which keeps its traceback)."""
    inputs = named_inputs(args)
    if isinstance(exc, GeeMiningError):
        return str(exc)
    if isinstance(exc, ee.EEException):
        return (f"Earth Engine: {exc} ({inputs}): check the asset ids and parameters; on the local engine "
                "`gee-mining algorithms` lists what it implements")  # fmt: skip
    if isinstance(exc, shapely.errors.ShapelyError):
        return (f"geometry: {exc} ({inputs}): the polygons are invalid (unclosed rings, NaN or empty "
                "coordinates?); repair them, e.g. with shapely.make_valid or ogr2ogr -makevalid")  # fmt: skip
    if isinstance(exc, rasterio.errors.RasterioError):
        return (f"raster: {exc} ({inputs}): not a readable GeoTIFF (truncated or damaged?); export it "
                "again")  # fmt: skip
    if isinstance(exc, pyproj.exceptions.CRSError | pyproj.exceptions.ProjError):
        return f"coordinates: {exc} ({inputs}): give the file a CRS (EPSG code) or coordinates in degrees"
    if isinstance(exc, pyarrow.ArrowException):
        return (f"table: {exc} ({inputs}): not a readable Parquet/CSV table of the expected columns; write it "
                "again with gee-mining grid / pixels")  # fmt: skip
    if isinstance(exc, sqlite3.DatabaseError):
        return (f"database: {exc} ({inputs}): the ledger or GeoPackage is damaged or not a database; move it "
                "aside and run again")  # fmt: skip
    if isinstance(exc, UnicodeDecodeError):
        return f"a binary file where text was expected ({inputs}): give a text file (TOML, CSV, JSON)"
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, MemoryError):
        return f"out of memory ({inputs}): run on fewer cells (--limit, --region) or a coarser grid"
    return None

"""Polygon files: the one reader (GeoJSON, GeoPackage, Shapefile, FlatGeobuf, GeoParquet) and their catalog entry.

:func:`read_polygons` gives the features of a file as shapely geometries in EPSG:4326 with their
properties as plain Python values (what ``json.dumps`` and the local engine take). The simulated
world, the detector's dataset and the CLI's ``--polygons`` all read polygon files through it.
:func:`register_polygon_file` serves a user's file to the local engine under an asset id.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import shapely

from gee_mining.contracts.cells import split_antimeridian
from gee_mining.contracts.tables import plain_value, to_lonlat
from gee_mining.errors import InputError
from gee_mining.io.catalog import table_entry, write_catalog

POLYGON_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".parquet", ".geoparquet")


@dataclass(frozen=True)
class PolygonFile:
    """A polygon file's features: geometries in EPSG:4326 (None where a feature has none) and properties."""

    path: Path
    geometries: list[Any]
    properties: list[dict[str, Any]]
    source_crs: str | None
    split: int = 0  # features split at the antimeridian


def _read_parquet(path: Path) -> tuple[np.ndarray, dict[str, list], str | None]:
    """GeoParquet: the primary geometry column (WKB), the other columns and the CRS its ``geo`` metadata gives."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"geo", b"{}") or b"{}")
    col = meta.get("primary_column", "geometry")
    if col not in table.column_names:
        raise InputError(f"{path}: no geometry column '{col}' (is it GeoParquet?).")
    crs = meta.get("columns", {}).get(col, {}).get("crs")
    crs_text = json.dumps(crs) if isinstance(crs, dict) else crs
    geoms = shapely.from_wkb(table.column(col).to_pylist())
    return geoms, {n: table.column(n).to_pylist() for n in table.column_names if n != col}, crs_text


def _read_ogr(path: Path) -> tuple[np.ndarray, dict[str, Any], str | None]:
    """Any vector format GDAL reads (GeoJSON, GeoPackage, Shapefile, FlatGeobuf)."""
    meta, _fids, wkb, fields = pyogrio.raw.read(path)
    geoms = shapely.from_wkb(wkb) if wkb is not None else np.full(len(fields[0]) if len(fields) else 0, None)
    return geoms, dict(zip(meta["fields"], fields, strict=True)), meta.get("crs")


def read_polygons(path: str | os.PathLike, what: str = "polygons") -> PolygonFile:
    """The features of a polygon file in EPSG:4326; ``what`` names the file in error messages (``--polygons``).

    Geometries whose edges cross the antimeridian (a step of more than 180 degrees of longitude, the short way
    round as on Earth Engine) come back split there into parts within -180..180 (RFC 7946), so that every
    later step, planar in longitude and latitude or not, sees where they are."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file.")
    if path.suffix.lower() not in POLYGON_SUFFIXES:
        raise InputError(f"{what} {path}: not a polygon file; use one of {', '.join(POLYGON_SUFFIXES)}.")
    try:
        reader = _read_parquet if path.suffix.lower() in (".parquet", ".geoparquet") else _read_ogr
        geoms, columns, crs = reader(path)
        geoms = to_lonlat(np.asarray(geoms, dtype=object), crs)
    except InputError:
        raise
    except Exception as e:  # pyogrio, pyarrow and pyproj raise several kinds
        hint = ": close each ring (its last point repeats its first)" if "closed linestring" in str(e) else ""
        raise InputError(f"{what} {path}: cannot read it as a polygon file ({e}){hint}.") from None
    names = list(columns)
    props = [{n: plain_value(columns[n][i]) for n in names} for i in range(len(geoms))]
    geometries = [None if g is None or g.is_empty else g for g in geoms]
    geometries = _checked(geometries, f"{what} {path}", crs)
    split = 0
    for i, g in enumerate(geometries):
        try:
            geometries[i] = split_antimeridian(g)
        except InputError as e:
            raise InputError(f"{what} {path}: feature {i}: {e}") from None
        split += geometries[i] is not g
    return PolygonFile(path, geometries, props, crs, split)


def _checked(geometries: list[Any], where: str, crs: str | None) -> list[Any]:
    """The geometries if they are polygons in degrees; InputError for NaN coordinates, coordinates outside
    longitude/latitude (metres with no CRS, latitude 95) or no polygon at all; other geometry types (points,
    lines) are left out with a warning."""
    for i, g in enumerate(geometries):
        if g is None:
            continue
        xy = shapely.get_coordinates(g)
        if not np.isfinite(xy).all():
            raise InputError(f"{where}: feature {i} has NaN or infinite coordinates: fix or remove it.")
        if (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
            x, y = xy[np.argmax((np.abs(xy[:, 0]) > 180) | (np.abs(xy[:, 1]) > 90))]
            hint = ("these look like metres, not degrees: declare the file's CRS (ogr2ogr -a_srs EPSG:326NN) or "
                    "reproject it to degrees" if np.abs(xy).max() > 1000 else f"the coordinates do not fit the file's CRS ({crs or 'none: degrees assumed'}); fix them")  # fmt: skip
            raise InputError(
                f"{where}: feature {i} has the point ({x:g}, {y:g}), outside longitude -180..180 / latitude "
                f"-90..90: {hint}."
            )
    kinds = [None if g is None else g.geom_type for g in geometries]
    polygonal = [k in ("Polygon", "MultiPolygon") or (k == "GeometryCollection" and _has_polygon(g))
                 for k, g in zip(kinds, geometries, strict=True)]  # fmt: skip
    others = sorted({k for k, p in zip(kinds, polygonal, strict=True) if k and not p})
    if others and not any(polygonal):
        raise InputError(
            f"{where}: the file holds no polygons, only {', '.join(others)} features: mines are outlines (polygons); "
            "buffer points or lines into polygons first (e.g. ogr2ogr -dialect sqlite -sql "
            '"SELECT ST_Buffer(geometry, 0.005) FROM layer")'
        )
    if others:
        warnings.warn(
            f"{where}: {sum(1 for k, p in zip(kinds, polygonal, strict=True) if k and not p)} {'/'.join(others)} "
            "feature(s) are not polygons and are left out.",
            UserWarning,
            stacklevel=3,
        )
    return [g if p else None for g, p in zip(geometries, polygonal, strict=True)]


def _has_polygon(g: Any) -> bool:
    return any(part.geom_type in ("Polygon", "MultiPolygon") for part in getattr(g, "geoms", ()))


def _write_geojson(geoms: list[Any], props: list[dict[str, Any]], path: Path) -> Path:
    """A GeoJSON FeatureCollection (EPSG:4326) of ``geoms`` with ``props``."""
    features = [
        {"type": "Feature", "geometry": None if g is None else json.loads(shapely.to_geojson(g)), "properties": p}
        for g, p in zip(geoms, props, strict=True)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def register_polygon_file(
    path: str | os.PathLike, catalog_dir: Path, project: str, base: str | os.PathLike | None = None
) -> tuple[str, Path, int]:
    """A catalog for a user's polygon file, with invalid polygons repaired (and ``base``'s assets included).

    Returns the asset id the local engine serves it under, the catalog path and the number of polygons
    repaired (each with ``shapely.make_valid``, written to ``polygons_repaired.geojson`` in EPSG:4326).
    """
    polygons = read_polygons(path, "--polygons")
    geoms = np.array(polygons.geometries, dtype=object)
    present = np.array([g is not None for g in geoms], dtype=bool)
    if not present.any():
        raise InputError(f"--polygons {path}: the file holds no polygons.")
    invalid = present.copy()
    invalid[present] = ~shapely.is_valid(geoms[present].astype(object))
    repaired = int(invalid.sum())
    catalog_dir.mkdir(parents=True, exist_ok=True)
    source = polygons.path
    if polygons.split and not repaired:  # the engine reads the split parts, not the file's crossing rings
        source = _write_geojson(list(geoms), polygons.properties, catalog_dir / "polygons_split.geojson")
    if repaired:
        geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
        source = _write_geojson(list(geoms), polygons.properties, catalog_dir / "polygons_repaired.geojson")
        warnings.warn(
            f"{repaired} invalid polygon(s) in {path} were repaired (shapely.make_valid).", UserWarning, stacklevel=2
        )
    asset_id = f"projects/{project}/assets/{re.sub(r'[^A-Za-z0-9_-]', '_', polygons.path.stem)}"
    include = [Path(base).resolve()] if base else []
    catalog = write_catalog(catalog_dir / "catalog.toml", [table_entry(asset_id, source.resolve())], include)
    return asset_id, catalog, repaired

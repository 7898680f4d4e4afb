"""The local catalog: Earth Engine asset ids mapped to local files.

A catalog is a small TOML file::

    [[table]]
    id = "projects/my-project/assets/maus"
    path = "polygons/maus.gpkg"      # relative to the TOML file
    # layer = "..."                  # GeoPackage layer, if several
    # geodesic = false               # edges as Earth Engine's table upload reads them
    # x = "lon"; y = "lat"           # CSV: coordinate columns (or a WKT column `geometry`/`.geo`)

Tables may be GeoJSON, GeoPackage, Shapefile, FlatGeobuf, GeoParquet or CSV.
Geometries are reprojected to EPSG:4326, as Earth Engine does on upload. A table
is read once per engine and then served from memory.
"""

from __future__ import annotations

import csv
import json
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from .errors import EngineError, NotFound
from .feature import Feature
from .featurecollection import FeatureCollection
from .geometry import Geometry

TABLE_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".fgb", ".parquet", ".geoparquet", ".csv"}


@dataclass(frozen=True)
class TableEntry:
    id: str
    path: Path
    layer: str | None = None
    geodesic: bool = False
    x: str | None = None
    y: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the entry and the fix."""


@dataclass
class Catalog:
    tables: dict[str, TableEntry] = field(default_factory=dict)
    source: Path | None = None
    _loaded: dict[str, FeatureCollection] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_file(cls, path: str | Path) -> Catalog:
        path = Path(path)
        try:
            config = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise CatalogError(f"Catalog file {path} does not exist; create it or pass another --catalog.") from None
        except tomllib.TOMLDecodeError as e:
            raise CatalogError(f"Catalog file {path} is not valid TOML: {e}") from None
        catalog = cls(source=path)
        for i, entry in enumerate(config.get("table", [])):
            catalog.add_table(**_entry_args(entry, path.parent, f"{path}: [[table]] #{i + 1}"))
        return catalog

    def add_table(self, id: str, path: str | Path, **options: Any) -> TableEntry:
        path = Path(path)
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise CatalogError(
                f"Table {id}: {path.name} is not a supported table file ({', '.join(sorted(TABLE_SUFFIXES))})."
            )
        entry = TableEntry(id=id, path=path, **options)
        self.tables[id] = entry
        self._loaded.pop(id, None)
        return entry

    def asset_ids(self) -> list[str]:
        return sorted(self.tables)

    def has(self, asset_id: str) -> bool:
        return asset_id in self.tables

    def table(self, asset_id: str) -> FeatureCollection:
        """The table as a FeatureCollection; Earth Engine's error if unknown."""
        entry = self.tables.get(asset_id)
        if entry is None:
            raise NotFound(f"Collection.loadTable: Collection asset '{asset_id}' not found.")
        with self._lock:
            if asset_id not in self._loaded:
                self._loaded[asset_id] = read_table(entry)
            return self._loaded[asset_id]

    def asset_info(self, asset_id: str) -> dict:
        entry = self.tables.get(asset_id)
        if entry is None:
            raise NotFound(f"Asset '{asset_id}' not found.")
        size = entry.path.stat().st_size if entry.path.exists() else 0
        return {"type": "TABLE", "name": asset_id, "id": asset_id, "sizeBytes": str(size)}


def _entry_args(entry: dict, base: Path, where: str) -> dict:
    if "id" not in entry or "path" not in entry:
        raise CatalogError(f"{where}: every table needs 'id' and 'path'.")
    args = dict(entry)
    p = Path(args["path"]).expanduser()
    args["path"] = p if p.is_absolute() else base / p
    known = {"id", "path", "layer", "geodesic", "x", "y", "properties"}
    unknown = set(args) - known
    if unknown:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}.")
    return args


def read_table(entry: TableEntry) -> FeatureCollection:
    """Read a table file into features in EPSG:4326 (ids are row numbers, as on upload)."""
    if not entry.path.exists():
        raise EngineError(
            f"Collection.loadTable: the file for asset '{entry.id}' is missing ({entry.path}); "
            "fix the path in the catalog.",
            status=404,
        )
    suffix = entry.path.suffix.lower()
    if suffix == ".csv":
        geoms, columns = _read_csv(entry)
    elif suffix in (".parquet", ".geoparquet"):
        geoms, columns = _read_parquet(entry)
    else:
        geoms, columns = _read_ogr(entry)
    names = list(columns)
    values = [columns[n] for n in names]
    features = []
    for i, geom in enumerate(geoms):
        props = {n: _plain(v[i]) for n, v in zip(names, values, strict=True)}
        g = None if geom is None or geom.is_empty else Geometry(geom, geodesic=entry.geodesic)
        features.append(Feature(g, props, id=f"{i:020x}"))
    return FeatureCollection(features, dict(entry.properties), id=entry.id)


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _to_wgs84(geoms: np.ndarray, crs: str | None) -> np.ndarray:
    if not crs:
        return geoms
    import pyproj

    src = pyproj.CRS.from_user_input(crs)
    if src.equals(pyproj.CRS.from_epsg(4326)):
        return geoms
    tf = pyproj.Transformer.from_crs(src, 4326, always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


def _read_ogr(entry: TableEntry):
    import pyogrio

    meta, _fids, wkb, fields = pyogrio.raw.read(entry.path, layer=entry.layer)
    geoms = shapely.from_wkb(wkb) if wkb is not None else np.full(len(fields[0]) if fields else 0, None)
    geoms = _to_wgs84(geoms, meta.get("crs"))
    return list(geoms), dict(zip(meta["fields"], fields, strict=True))


def _read_parquet(entry: TableEntry):
    import pyarrow.parquet as pq

    table = pq.read_table(entry.path)
    meta = json.loads((table.schema.metadata or {}).get(b"geo", b"{}") or b"{}")
    col = meta.get("primary_column", "geometry")
    if col not in table.column_names:
        raise EngineError(f"Collection.loadTable: {entry.path} has no geometry column '{col}'.")
    crs = meta.get("columns", {}).get(col, {}).get("crs")
    crs_text = None
    if isinstance(crs, dict):
        crs_text = json.dumps(crs)
    elif isinstance(crs, str):
        crs_text = crs
    geoms = _to_wgs84(shapely.from_wkb(table.column(col).to_pylist()), crs_text)
    columns = {n: table.column(n).to_pylist() for n in table.column_names if n != col}
    return list(geoms), columns


def _read_csv(entry: TableEntry):
    with entry.path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return [], {}
    header = list(rows[0])
    x = entry.x or next((h for h in header if h.lower() in ("longitude", "lon", "lng", "x")), None)
    y = entry.y or next((h for h in header if h.lower() in ("latitude", "lat", "y")), None)
    wkt = next((h for h in header if h in (".geo", "geometry", "WKT", "wkt")), None)
    geoms: list[Any] = []
    for r in rows:
        if x and y and r.get(x) not in (None, "") and r.get(y) not in (None, ""):
            geoms.append(shapely.Point(float(r[x]), float(r[y])))
        elif wkt and r.get(wkt):
            text = r[wkt]
            geoms.append(
                shapely.geometry.shape(json.loads(text)) if text.lstrip().startswith("{") else shapely.from_wkt(text)
            )
        else:
            geoms.append(None)
    skip = {c for c in (x, y, wkt) if c}
    columns = {h: [_csv_value(r[h]) for r in rows] for h in header if h not in skip}
    return geoms, columns


def _csv_value(text: str | None) -> Any:
    if text is None or text == "":
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text

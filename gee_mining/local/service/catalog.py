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

Images are raster files (GeoTIFF, JPEG2000, anything rasterio reads), one file
per band or one multi-band file; an image may belong to an image collection::

    [[image]]
    id = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
    collection = "COPERNICUS/S2_HARMONIZED"       # optional
    time_start = "2017-02-16T10:21:01Z"           # system:time_start
    bands = { B2 = "s2/B02.jp2", B3 = "s2/B03.jp2" }   # name -> file (band 1)
    # or: path = "multi.tif" and band_names = ["B2", "B3"]
    pyramiding = { SCL = "sample" }               # default "mean"
    properties = { CLOUDY_PIXEL_PERCENTAGE = 12.5 }

    [[image_collection]]
    id = "COPERNICUS/S2_SR_HARMONIZED"
    index = "s2_items.jsonl"     # optional: one JSON object per line, keys as [[image]]
    global_from = "2019-01-01"   # optional: global coverage since (the asset's "properties" say so)

``include = ["other.toml"]`` (relative to this file) adds another catalog's assets first.

Band headers are read on first use and kept; raster files stay open across reads and requests (a
bounded least-recently-used set, closed with the engine).
"""

from __future__ import annotations

import csv
import json
import pickle
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import shapely

from gee_mining.contracts.cells import split_antimeridian
from gee_mining.contracts.tables import plain_value, to_lonlat
from gee_mining.errors import InputError
from gee_mining.local.core.errors import EngineError, NotFound
from gee_mining.local.raster.image import Image, ImageCollection
from gee_mining.local.raster.resample import DatasetCache, FileSource, source_band
from gee_mining.local.values.date import Date
from gee_mining.local.values.feature import Feature
from gee_mining.local.values.featurecollection import FeatureCollection
from gee_mining.local.values.geometry import Geometry

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


@dataclass(frozen=True)
class ImageEntry:
    id: str
    bands: dict[str, tuple[Path, int]]
    collection: str | None = None
    time_start: Any = None
    time_end: Any = None
    pyramiding: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def index(self) -> str:
        """``system:index``: the id's last path element, as Earth Engine names collection items."""
        return self.id.rsplit("/", 1)[-1]


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the entry and the fix."""


@dataclass
class Catalog:
    tables: dict[str, TableEntry] = field(default_factory=dict)
    images: dict[str, ImageEntry] = field(default_factory=dict)
    collections: dict[str, list[str]] = field(default_factory=dict)
    coverage: dict[str, int] = field(default_factory=dict)  # collection id -> global_from (ms): global since
    classifiers: dict[str, Path] = field(default_factory=dict)  # Export.classifier.toAsset: id -> pickled model
    source: Path | None = None
    _loaded: dict[str, FeatureCollection] = field(default_factory=dict, repr=False)
    _sources: dict[tuple[Path, int, str], Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _handles: DatasetCache = field(default_factory=DatasetCache, repr=False)  # open rasters, across requests
    _images: dict[str, Image] = field(default_factory=dict, repr=False)  # engine images are values: built once
    generation: int = 0  # bumped by every asset added or replaced: computed values kept across requests expire

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
        for other in config.get("include", []):
            included = cls.from_file(_resolve(other, path.parent))
            catalog.tables.update(included.tables)
            catalog.images.update(included.images)
            catalog.coverage.update(included.coverage)
            for cid, ids in included.collections.items():
                catalog.collections.setdefault(cid, []).extend(ids)
        for i, entry in enumerate(config.get("table", [])):
            catalog.add_table(**_entry_args(entry, path.parent, f"{path}: [[table]] #{i + 1}"))
        for i, entry in enumerate(config.get("image", [])):
            catalog.add_image(**_image_args(entry, path.parent, f"{path}: [[image]] #{i + 1}"))
        for i, entry in enumerate(config.get("image_collection", [])):
            where = f"{path}: [[image_collection]] #{i + 1}"
            if "id" not in entry:
                raise CatalogError(f"{where}: every image collection needs an 'id'.")
            catalog.collections.setdefault(entry["id"], [])
            if "global_from" in entry:
                catalog.coverage[entry["id"]] = Date.coerce(entry["global_from"]).millis
            if "index" in entry:
                index = _resolve(entry["index"], path.parent)
                try:
                    lines = index.read_text().splitlines()
                except FileNotFoundError:
                    raise CatalogError(f"{where}: index file {index} does not exist.") from None
                for n, line in enumerate(lines):
                    if line.strip():
                        item = {"collection": entry["id"], **json.loads(line)}
                        catalog.add_image(**_image_args(item, index.parent, f"{index}: line {n + 1}"))
        return catalog

    def add_image(
        self,
        id: str,
        bands: dict[str, Any],
        collection: str | None = None,
        **options: Any,
    ) -> ImageEntry:
        """Register an image; ``bands`` maps band names to a path or a (path, band index) pair."""
        files = {}
        for name, spec in bands.items():
            path, index = (spec, 1) if isinstance(spec, str | Path) else (spec[0], int(spec[1]))
            files[name] = (Path(path), index)
        entry = ImageEntry(id=id, bands=files, collection=collection, **options)
        self.images[id] = entry
        self.generation += 1
        self._images.pop(id, None)
        if collection:
            items = self.collections.setdefault(collection, [])
            if id not in items:
                items.append(id)
        return entry

    def image(self, asset_id: str):
        """The image as an engine Image; Earth Engine's error if unknown."""
        entry = self.images.get(asset_id)
        if entry is None:
            if asset_id in self.collections:
                raise EngineError(f"Image.load: Asset '{asset_id}' is an image collection, not an image.")
            raise NotFound(f"Image.load: Image asset '{asset_id}' not found.")
        return self._image(entry)

    def image_collection(self, collection_id: str):
        items = self.collections.get(collection_id)
        if items is None:
            raise NotFound(
                f"ImageCollection.load: ImageCollection asset '{collection_id}' not found. "
                "(Local engine: its catalog does not hold this collection. For Sentinel-2 imagery on this "
                "machine, build a simulated world around your polygons: gee-mining world --polygons FILE "
                "--out runs/world, then pass --catalog runs/world/catalog.toml; docs/world.md.)"
            )
        images = [self._image(self.images[i]) for i in items]
        images.sort(key=lambda im: (im.properties.get("system:time_start") or 0, im.id))
        out = ImageCollection(images, {}, id=collection_id)
        out.stored = True  # an asset: Earth Engine filters it by its index
        return out

    def _source(self, path: Path, index: int, pyramiding: str):
        key = (path, index, pyramiding)
        with self._lock:
            if key not in self._sources:
                if not path.exists():
                    raise EngineError(f"Image.load: the file {path} is missing; fix the path in the catalog.", 404)
                self._sources[key] = FileSource.open(path, index, pyramiding, self._handles)
            return self._sources[key]

    def close(self) -> None:
        """Close the raster files kept open; later reads open and close their file each time."""
        self._handles.close()

    def _image(self, entry: ImageEntry) -> Image:
        """The entry's engine Image, built on first use (band headers, footprint union) and then reused."""
        image = self._images.get(entry.id)
        if image is None:
            image = self._images[entry.id] = self._build_image(entry)
        return image

    def _build_image(self, entry: ImageEntry) -> Image:
        bands = [
            source_band(name, self._source(path, index, entry.pyramiding.get(name, "mean")))
            for name, (path, index) in entry.bands.items()
        ]
        props: dict[str, Any] = dict(entry.properties)
        props["system:id"] = entry.id
        if entry.time_start is not None:
            props["system:time_start"] = Date.coerce(entry.time_start).millis
        if entry.time_end is not None:
            props["system:time_end"] = Date.coerce(entry.time_end).millis
        footprints = [b.footprint for b in bands if b.footprint is not None]
        if footprints:
            props.setdefault("system:footprint", Geometry(shapely.union_all(footprints), geodesic=False))
        return Image(bands, props, id=entry.index)

    def add_table(self, id: str, path: str | Path, **options: Any) -> TableEntry:
        path = Path(path)
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise CatalogError(
                f"Table {id}: {path.name} is not a supported table file ({', '.join(sorted(TABLE_SUFFIXES))})."
            )
        entry = TableEntry(id=id, path=path, **options)
        self.tables[id] = entry
        self.generation += 1
        self._loaded.pop(id, None)
        return entry

    def add_classifier(self, id: str, path: str | Path) -> None:
        """A classifier asset (``Export.classifier.toAsset``): the engine's pickled trained classifier."""
        self.classifiers[id] = Path(path)
        self.generation += 1

    def classifier(self, asset_id: str) -> Any:
        """The trained classifier of a classifier asset (``Classifier.load``); Earth Engine's error if unknown.
        The file is the engine's own (written by its export under its storage folder), read as it was written."""
        path = self.classifiers.get(asset_id)
        if path is None or not path.exists():
            kind = "" if asset_id not in self.tables and asset_id not in self.images else " (it is not a classifier)"
            raise NotFound(f"Classifier.load: Classifier asset '{asset_id}' not found{kind}.")
        with path.open("rb") as fh:
            return pickle.load(fh)

    def asset_ids(self) -> list[str]:
        return sorted({*self.tables, *self.images, *self.collections, *self.classifiers})

    def has(self, asset_id: str) -> bool:
        return any(asset_id in d for d in (self.tables, self.images, self.collections, self.classifiers))

    def table(self, asset_id: str) -> FeatureCollection:
        """The table as a FeatureCollection; Earth Engine's error if unknown."""
        entry = self.tables.get(asset_id)
        if entry is None:
            raise NotFound(f"Collection.loadTable: Collection asset '{asset_id}' not found.")
        with self._lock:
            if asset_id not in self._loaded:
                self._loaded[asset_id] = read_table(entry)
                self._loaded[asset_id].stored = True  # an asset: Earth Engine filters it by its index
            return self._loaded[asset_id]

    def asset_info(self, asset_id: str) -> dict:
        if asset_id in self.images:
            return {"type": "IMAGE", "name": asset_id, "id": asset_id}
        if asset_id in self.collections:
            info = {"type": "IMAGE_COLLECTION", "name": asset_id, "id": asset_id}
            if asset_id in self.coverage:  # from [[image_collection]] global_from
                info["properties"] = {"global_from": self.coverage[asset_id]}
            return info
        if asset_id in self.classifiers:
            return {"type": "CLASSIFIER", "name": asset_id, "id": asset_id}
        entry = self.tables.get(asset_id)
        if entry is None:
            raise NotFound(f"Asset '{asset_id}' not found.")
        size = entry.path.stat().st_size if entry.path.exists() else 0
        return {"type": "TABLE", "name": asset_id, "id": asset_id, "sizeBytes": str(size)}


def _resolve(path: str | Path, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _image_args(entry: dict, base: Path, where: str) -> dict:
    known = {"id", "bands", "path", "band_names", "collection", "time_start", "time_end", "pyramiding", "properties"}
    unknown = set(entry) - known
    if unknown:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}.")
    if "id" not in entry:
        raise CatalogError(f"{where}: every image needs an 'id'.")
    args = {k: v for k, v in entry.items() if k not in ("path", "band_names", "bands")}
    if "bands" in entry:
        if not isinstance(entry["bands"], dict) or not entry["bands"]:
            raise CatalogError(f"{where}: 'bands' must map band names to files.")
        args["bands"] = {
            name: (_resolve(spec, base), 1) if isinstance(spec, str) else (_resolve(spec[0], base), int(spec[1]))
            for name, spec in entry["bands"].items()
        }
    elif "path" in entry:
        names = entry.get("band_names")
        if not names:
            raise CatalogError(f"{where}: a multi-band 'path' needs 'band_names'.")
        path = _resolve(entry["path"], base)
        args["bands"] = {name: (path, i + 1) for i, name in enumerate(names)}
    else:
        raise CatalogError(f"{where}: give 'bands' (one file per band) or 'path' with 'band_names'.")
    return args


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
        props = {n: plain_value(v[i]) for n, v in zip(names, values, strict=True)}
        geom = _split_at_antimeridian(geom)
        g = None if geom is None or geom.is_empty else Geometry(geom, geodesic=entry.geodesic)
        features.append(Feature(g, props, id=f"{i:020x}"))
    return FeatureCollection(features, dict(entry.properties), id=entry.id)


def _split_at_antimeridian(geom: Any) -> Any:
    """A shape across the antimeridian (a projected file's, reprojected, or one whose edges step over 180
    degrees) in parts either side of it, as Earth Engine holds them (RFC 7946). A ring around a pole (a
    countries table's Antarctica, drawn along the map's edges) has no such split: it is kept as the file
    has it, a planar ring Earth Engine reads the same way."""
    try:
        return split_antimeridian(geom)
    except InputError:
        return geom


def _read_ogr(entry: TableEntry):
    meta, _fids, wkb, fields = pyogrio.raw.read(entry.path, layer=entry.layer)
    geoms = shapely.from_wkb(wkb) if wkb is not None else np.full(len(fields[0]) if fields else 0, None)
    geoms = to_lonlat(geoms, meta.get("crs"))
    return list(geoms), dict(zip(meta["fields"], fields, strict=True))


def _read_parquet(entry: TableEntry):
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
    geoms = to_lonlat(shapely.from_wkb(table.column(col).to_pylist()), crs_text)
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

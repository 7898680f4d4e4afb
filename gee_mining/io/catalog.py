"""The local engine's catalog TOML: the one place that writes it, and the entries of the shared real data.

Every catalog this package writes (the simulated world's, the demo's, a user's polygon file, the
pyramid's composite) is built from :class:`CatalogEntry` values by :func:`catalog_text`, which
quotes every string as TOML requires (paths with quotes or backslashes included).

Catalog entries for the project's shared real data (``../shared/data``):

The real Sentinel-2 scenes register under Earth Engine's collection ids, with
Earth Engine's band names and the scene properties that their file names and
metadata give (nothing invented): the Level-1C crop as an item of
``COPERNICUS/S2_HARMONIZED``, the BigEarthNet Level-2A patches as items of
``COPERNICUS/S2_SR_HARMONIZED``. Tables register under
``projects/<project>/assets/<name>``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

S2_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
L1C_DIR = "imagery/s2_l1c_T33UUU_20170216"
BIGEARTHNET_DIR = "imagery/bigearthnet_s2_l2a"
TABLES = {
    "mining_tropics_demo": "polygons/mining_tropics_demo.gpkg",
    "amazon_mining_2024": "polygons/amazon_mining_2024_model.geojson",
}


@dataclass(frozen=True)
class Coverage:
    """When an Earth Engine collection becomes global: composites of an earlier period have holes."""

    asset: str
    global_from: str  # YYYY-MM-DD, the first day of global coverage
    source: str  # the page that says so
    quote: str


COVERAGE = {
    "COPERNICUS/S2_SR_HARMONIZED": Coverage(
        "COPERNICUS/S2_SR_HARMONIZED",
        "2019-01-01",
        "https://developers.google.com/earth-engine/datasets/catalog/COPERNICUS_S2_SR",
        "WARNING: 2017-2018 L2 coverage in the EE collection is not yet global.",
    ),
}
"""Earth Engine's collections whose early years are not global, with the catalog page that says so (the
Level-2A page: the ``_HARMONIZED`` collection holds the same scenes, offset removed). Written into the
local catalog as ``global_from`` (:func:`coverage_entry`); the pipeline warns from it
(``steps.sentinel2.collection``)."""


def coverage_before(asset_id: str, start: str) -> Coverage | None:
    """The asset's :class:`Coverage` when a period starting at ``start`` (YYYY-MM-DD...) begins before
    the asset is global, else None."""
    cov = COVERAGE.get(asset_id)
    return cov if cov is not None and str(start)[:10] < cov.global_from else None


def find_shared_data() -> Path | None:
    """``$GEE_MINING_SHARED_DATA``, or ``../shared/data`` beside the checkout or the working folder."""
    env = os.environ.get("GEE_MINING_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parents[1]
    candidates += [here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return next((c for c in candidates if (c / "polygons").is_dir() or (c / "imagery").is_dir()), None)


def _file_band(name: str) -> str:
    """Earth Engine's band name for a file suffix: B01 -> B1, B8A -> B8A."""
    return re.sub(r"^B0(\d)$", r"B\1", name)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped, the rest as is."""
    out = []
    for ch in str(text):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    """A TOML key: bare when it may be, quoted otherwise."""
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: Any) -> str:
    """A TOML value of a string, path, bool, number, list or dict (an inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (str, os.PathLike)):
        return toml_string(os.fspath(value))
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"{value!r}: no TOML form for a {type(value).__name__}")


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog entry: its kind (``table``, ``image``, ``image_collection``) and its fields, in order."""

    kind: Literal["table", "image", "image_collection"]
    fields: dict[str, Any]

    def toml(self) -> str:
        """``[[kind]]`` and one ``key = value`` line per field."""
        return "\n".join([f"[[{self.kind}]]", *(f"{toml_key(k)} = {toml_value(v)}" for k, v in self.fields.items())])


def table_entry(asset_id: str, path: str | os.PathLike) -> CatalogEntry:
    """A ``[[table]]`` entry serving the vector file ``path`` under ``asset_id``."""
    return CatalogEntry("table", {"id": asset_id, "path": os.fspath(path)})


def catalog_text(entries: Iterable[CatalogEntry], include: Sequence[str | os.PathLike] = (), header: str = "") -> str:
    """A catalog TOML: ``header`` (comment lines), the ``include`` list, then the entries (blank lines between)."""
    parts = ["\n".join(f"# {line}" for line in header.splitlines())] if header else []
    if include:
        parts.append(f"include = {toml_value([os.fspath(p) for p in include])}")
    parts += [e.toml() for e in entries]
    return "\n\n".join(parts) + "\n"


def write_catalog(
    path: str | os.PathLike, entries: Iterable[CatalogEntry], include: Sequence[str | os.PathLike] = (), header=""
) -> Path:
    """Write :func:`catalog_text` to ``path``; the path. Files inside the catalog's folder are written relative to
    it (the engine reads them relative to the catalog), so a folder copied or moved whole still serves its own
    files, not those of the folder it was copied from; files elsewhere keep their absolute paths."""
    path = Path(path)
    folder = path.parent.resolve()
    entries = [CatalogEntry(e.kind, {k: _relative_field(k, v, folder) for k, v in e.fields.items()}) for e in entries]
    path.write_text(catalog_text(entries, [_relative(p, folder) for p in include], header))
    return path


def _relative(value: str | os.PathLike, folder: Path) -> str | os.PathLike:
    """``value`` relative to ``folder`` (POSIX form) when it is an absolute path inside it, else unchanged."""
    p = Path(value)
    if not p.is_absolute():
        return value
    try:
        return p.resolve().relative_to(folder).as_posix()
    except ValueError:
        return value


def _relative_field(key: str, value: Any, folder: Path) -> Any:
    if key in ("path", "index"):
        return _relative(value, folder)
    if key == "bands" and isinstance(value, dict):
        return {b: _relative(v, folder) if isinstance(v, (str, os.PathLike)) else [_relative(v[0], folder), *v[1:]]
                for b, v in value.items()}  # fmt: skip
    return value


def coverage_entry(asset_id: str) -> CatalogEntry:
    """An ``[[image_collection]]`` entry marking ``asset_id`` with its ``global_from`` date (:data:`COVERAGE`)."""
    return CatalogEntry("image_collection", {"id": asset_id, "global_from": COVERAGE[asset_id].global_from})


def _image_entry(asset_id: str, collection: str, time_start: str, bands: dict[str, Path], props: dict) -> CatalogEntry:
    fields = {"id": asset_id, "collection": collection, "time_start": time_start, "bands": bands, "properties": props}
    return CatalogEntry("image", fields)


def imagery_entries(shared: Path) -> list[CatalogEntry]:
    """``[[image]]`` entries for the real scenes found under ``shared``."""
    out = []
    l1c = shared / L1C_DIR
    if l1c.is_dir():
        files = {_file_band(p.stem.rsplit("_", 1)[-1]): p.resolve() for p in sorted(l1c.glob("*.jp2"))}
        bands = {b: files[b] for b in S2_BANDS if b in files}
        index = "20170216T102101_20170216T102101_T33UUU"
        out.append(
            _image_entry(
                f"COPERNICUS/S2_HARMONIZED/{index}",
                "COPERNICUS/S2_HARMONIZED",
                "2017-02-16T10:21:01Z",
                bands,
                {"MGRS_TILE": "33UUU", "SPACECRAFT_NAME": "Sentinel-2A", "PROCESSING_LEVEL": "Level-1C (crop)"},
            )
        )
    ben = shared / BIGEARTHNET_DIR
    for folder in sorted(p for p in ben.glob("*") if p.is_dir()) if ben.is_dir() else []:
        meta_files = list(folder.glob("*_labels_metadata.json"))
        if not meta_files:
            continue
        meta = json.loads(meta_files[0].read_text())
        m = re.match(r"(S2[AB])_MSIL1C_(\w+?)_N\d+_R(\d+)_T(\w+?)_(\w+)\.SAFE", meta["tile_source"])
        if not m:
            continue
        sat, datatake, orbit, tile, product = m.groups()
        patch = folder.name.split("_", 3)[-1]
        index = f"{datatake}_{product}_T{tile}_{patch}"
        files = {_file_band(p.stem.rsplit("_", 1)[-1]): p.resolve() for p in sorted(folder.glob("*_B*.tif"))}
        bands = {b: files[b] for b in S2_BANDS if b in files}
        when = meta["acquisition_date"].replace(" ", "T") + "Z"
        out.append(
            _image_entry(
                f"COPERNICUS/S2_SR_HARMONIZED/{index}",
                "COPERNICUS/S2_SR_HARMONIZED",
                when,
                bands,
                {
                    "MGRS_TILE": tile,
                    "SPACECRAFT_NAME": "Sentinel-2A" if sat == "S2A" else "Sentinel-2B",
                    "SENSING_ORBIT_NUMBER": int(orbit),
                    "BIGEARTHNET_PATCH": folder.name,
                    "BIGEARTHNET_LABELS": meta["labels"],
                },
            )
        )
    return out


def table_entries(shared: Path, project: str) -> list[CatalogEntry]:
    """``[[table]]`` entries for the polygon files found under ``shared``."""
    return [
        table_entry(f"projects/{project}/assets/{name}", (shared / rel).resolve())
        for name, rel in TABLES.items()
        if (shared / rel).exists()
    ]


def shared_entries(shared: Path | None, project: str) -> list[CatalogEntry]:
    """Entries for everything in the shared data folder (none when there is none)."""
    if shared is None:
        return []
    images = imagery_entries(shared)
    marks = [coverage_entry(c) for c in COVERAGE if any(e.fields.get("collection") == c for e in images)]
    return table_entries(shared, project) + images + marks


def catalog_toml(shared: Path | None, project: str) -> str:
    """A catalog of everything in the shared data folder (empty when there is none)."""
    return "" if shared is None else catalog_text(shared_entries(shared, project))


MINES_ID = "projects/gee-mining-local/assets/mining_tropics_demo"


AMAZON_ID = "projects/gee-mining-local/assets/amazon_mining_2024"


COUNTRIES_ID = "projects/gee-mining-local/assets/naturalearth_countries"


WORLD_MINES_ID = "projects/gee-mining-local/assets/world_mines"

"""Catalog entries for the project's shared real data (``../shared/data``).

The real Sentinel-2 scenes register under Earth Engine's collection ids, with
Earth Engine's band names and the scene properties that their file names and
metadata give (nothing invented): the Level-1C crop as an item of
``COPERNICUS/S2_HARMONIZED``, the BigEarthNet Level-2A patches as items of
``COPERNICUS/S2_SR_HARMONIZED``. Tables register under
``projects/<project>/assets/<name>``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

S2_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
L1C_DIR = "imagery/s2_l1c_T33UUU_20170216"
BIGEARTHNET_DIR = "imagery/bigearthnet_s2_l2a"
TABLES = {
    "mining_tropics_demo": "polygons/mining_tropics_demo.gpkg",
    "amazon_mining_2024": "polygons/amazon_mining_2024_model.geojson",
}


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


def _toml_value(value) -> str:
    return json.dumps(value)


def _image_toml(asset_id: str, collection: str, time_start: str, bands: dict[str, Path], props: dict) -> str:
    lines = [
        "[[image]]",
        f"id = {_toml_value(asset_id)}",
        f"collection = {_toml_value(collection)}",
        f"time_start = {_toml_value(time_start)}",
        "bands = { " + ", ".join(f"{k} = {_toml_value(str(v))}" for k, v in bands.items()) + " }",
        "properties = { " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in props.items()) + " }",
    ]
    return "\n".join(lines)


def imagery_toml(shared: Path) -> str:
    """TOML ``[[image]]`` entries for the real scenes found under ``shared``."""
    out = []
    l1c = shared / L1C_DIR
    if l1c.is_dir():
        files = {_file_band(p.stem.rsplit("_", 1)[-1]): p.resolve() for p in sorted(l1c.glob("*.jp2"))}
        bands = {b: files[b] for b in S2_BANDS if b in files}
        index = "20170216T102101_20170216T102101_T33UUU"
        out.append(
            _image_toml(
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
            _image_toml(
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
    return "\n\n".join(out)


def tables_toml(shared: Path, project: str) -> str:
    out = []
    for name, rel in TABLES.items():
        path = shared / rel
        if path.exists():
            out.append(f'[[table]]\nid = "projects/{project}/assets/{name}"\npath = {_toml_value(str(path.resolve()))}')
    return "\n\n".join(out)


def catalog_toml(shared: Path | None, project: str) -> str:
    """A catalog of everything in the shared data folder (empty when there is none)."""
    if shared is None:
        return ""
    return "\n\n".join(p for p in (tables_toml(shared, project), imagery_toml(shared)) if p) + "\n"


MINES_ID = "projects/gee-mining-local/assets/mining_tropics_demo"


AMAZON_ID = "projects/gee-mining-local/assets/amazon_mining_2024"


COUNTRIES_ID = "projects/gee-mining-local/assets/naturalearth_countries"


WORLD_MINES_ID = "projects/gee-mining-local/assets/world_mines"

"""A grid cell's row carried inside its exported GeoTIFF, as the GDAL metadata tag ``GEE_MINING_CELL``.

The per-cell export sets the tag as an image property (``batch.exports.export_task``); the local engine
writes an image's plain properties as GeoTIFF tags. Readers (the pixel table's ``from_geotiff``, the
detector's dataset) take the cell's name and metadata from the tag, not from the file name.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import rasterio

CELL_TAG = "GEE_MINING_CELL"


def cell_tag_value(row: dict[str, Any]) -> str:
    """The row's plain fields (name, zoom, epsg, overlap, pair, label, ...) as the JSON text of the tag."""
    plain = {}
    for key, value in row.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (str, int, float, bool)):
            plain[key] = value
    return json.dumps(plain, sort_keys=True)


def read_cell_tag(path: str | os.PathLike) -> dict[str, Any] | None:
    """The cell row a GeoTIFF carries in its ``GEE_MINING_CELL`` tag (None when it has none)."""
    with rasterio.open(path) as ds:
        text = ds.tags().get(CELL_TAG)
    return None if text is None else json.loads(text)


def write_cell_tag(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Tag a cell's GeoTIFF written by other means than an export (``computePixels``: no image properties there)."""
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(**{CELL_TAG: cell_tag_value(row)})

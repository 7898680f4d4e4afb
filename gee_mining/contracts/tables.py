"""What every table reader returns, whoever reads: property values as plain Python and geometries in lon/lat.

The library's polygon reader (``io.polygons``) and the local engine's catalog (``local.service.catalog``) read the
same files; both give a feature's values and geometry through these two functions, so a table looks the same to
the pipeline and to the engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyproj
import shapely


def plain_value(value: Any) -> Any:
    """A column value as plain Python: numbers, strings, ISO dates, None for missing (NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def to_lonlat(geoms: np.ndarray, crs: str | None) -> np.ndarray:
    """Geometries in ``crs`` (EPSG:4326 when None) reprojected to EPSG:4326, longitude first."""
    if not crs:
        return geoms
    src = pyproj.CRS.from_user_input(crs)
    if src.equals(pyproj.CRS.from_epsg(4326)):
        return geoms
    tf = pyproj.Transformer.from_crs(src, 4326, always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))

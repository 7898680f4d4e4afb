"""Pixel grids: the (crs, affine transform, width, height) a request computes on.

The lattice itself is the library's :class:`gee_mining.contracts.lattice.PixelGrid` (its
transform has Earth Engine's order ``(scaleX, shearX, translateX, shearY, scaleY, translateY)``,
which is also rasterio's ``Affine(a, b, c, d, e, f)``). Here are the engine's functions over it:
its :class:`Projection`, grids from requests (with Earth Engine's errors), the grid covering a
region, and whether two transforms share a lattice.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

from gee_mining.contracts.lattice import PixelGrid, Transform
from gee_mining.local.core.errors import EngineError
from gee_mining.local.values.projection import Projection, transformer


def grid_projection(grid: PixelGrid) -> Projection:
    """The engine's :class:`Projection` of ``grid``'s lattice (its CRS and transform): the contract's
    lattice knows nothing of the engine, so the engine derives it here."""
    return Projection.from_crs(grid.crs, grid.transform)


def checked_grid(crs: str, transform: Transform, width: int, height: int) -> PixelGrid:
    """The lattice a request names, refusing a non-positive size with Earth Engine's message
    (the contract's own check raises the library's ``InputError``, which clients do not expect)."""
    if width <= 0 or height <= 0:
        raise EngineError(f"Invalid pixel grid dimensions {width}x{height}.")
    return PixelGrid(crs, transform, width, height)


def grid_covering(
    proj: Projection, bounds: tuple[float, float, float, float], max_pixels: float | None = None
) -> PixelGrid:
    """The smallest grid of ``proj``'s pixel lattice that covers ``bounds`` (in proj's CRS).

    ``proj.transform`` maps pixel indices to CRS units (a scaled projection,
    as ``ee.Projection.atScale`` makes). Pixels whose interior the bounds touch
    are included.
    """
    a, b, c, d, e, f = proj.transform
    if b != 0 or d != 0:
        raise EngineError("Pixel grids with a sheared or rotated transform are not supported by the local engine.")
    xmin, ymin, xmax, ymax = bounds
    cols = sorted(((xmin - c) / a, (xmax - c) / a))
    rows = sorted(((ymin - f) / e, (ymax - f) / e))
    eps = 1e-6  # tolerant of rounding in bounds computed from the same lattice
    col0, col1 = math.floor(cols[0] + eps), math.ceil(cols[1] - eps)
    row0, row1 = math.floor(rows[0] + eps), math.ceil(rows[1] - eps)
    width, height = max(1, col1 - col0), max(1, row1 - row0)
    if max_pixels is not None and width * height > max_pixels:
        raise EngineError(
            f"Too many pixels in the region. Found {width * height}, but maxPixels allows only {int(max_pixels)}."
        )
    return PixelGrid(proj.crs, (a, b, c + a * col0, d, e, f + e * row0), width, height)


def same_lattice(src: Transform, dst: Transform) -> tuple[int, int] | None:
    """If ``dst``'s pixels are ``src``'s pixels shifted by whole pixels, the (col, row) offset of dst in src."""
    if src[0] != dst[0] or src[4] != dst[4] or src[1] != 0 or src[3] != 0 or dst[1] != 0 or dst[3] != 0:
        return None
    col = (dst[2] - src[2]) / src[0]
    row = (dst[5] - src[5]) / src[4]
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(col)), int(round(row))


def bounds_in(region_lonlat: shapely.Geometry, crs: str) -> tuple[float, float, float, float]:
    """Bounds in ``crs`` of a lon/lat region, its edges densified so that curved images of them count."""
    if crs == "EPSG:4326":
        return tuple(shapely.bounds(region_lonlat))
    x0, y0, x1, y1 = shapely.bounds(region_lonlat)
    step = max(x1 - x0, y1 - y0) / 64.0 or 1e-6
    coords = shapely.get_coordinates(shapely.segmentize(region_lonlat, step))
    xs, ys = transformer("EPSG:4326", crs).transform(coords[:, 0], coords[:, 1])
    xs, ys = np.asarray(xs), np.asarray(ys)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        raise EngineError(f"The region cannot be expressed in {crs}.")
    return float(xs[ok].min()), float(ys[ok].min()), float(xs[ok].max()), float(ys[ok].max())

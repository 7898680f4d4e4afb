"""Pixel grids: the (crs, affine transform, width, height) a request computes on.

Pure functions over a frozen :class:`PixelGrid`. The transform has Earth
Engine's order ``(scaleX, shearX, translateX, shearY, scaleY, translateY)``,
mapping pixel (column, row) corners to CRS coordinates:
``x = scaleX * col + shearX * row + translateX``. It is also rasterio's
``Affine(a, b, c, d, e, f)`` order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio.transform import Affine

from gee_mining.local.core.errors import EngineError
from gee_mining.local.values.projection import Projection, transformer

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class PixelGrid:
    crs: str
    transform: Transform
    width: int
    height: int

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise EngineError(f"Invalid pixel grid dimensions {self.width}x{self.height}.")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def size(self) -> int:
        return self.width * self.height

    @property
    def affine(self):
        return Affine(*self.transform)

    @property
    def projection(self) -> Projection:
        return Projection.from_crs(self.crs, self.transform)

    @property
    def is_rectilinear(self) -> bool:
        return self.transform[1] == 0 and self.transform[3] == 0

    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in the grid's CRS."""
        a, b, c, d, e, f = self.transform
        xs = [c, c + a * self.width, c + b * self.height, c + a * self.width + b * self.height]
        ys = [f, f + d * self.width, f + e * self.height, f + d * self.width + e * self.height]
        return (min(xs), min(ys), max(xs), max(ys))

    def outline(self) -> shapely.Polygon:
        a, b, c, d, e, f = self.transform
        w, h = self.width, self.height
        corners = [(0, 0), (w, 0), (w, h), (0, h)]
        return shapely.Polygon([(a * i + b * j + c, d * i + e * j + f) for i, j in corners])

    def pixel_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of every pixel centre, as two (height, width) arrays."""
        a, b, c, d, e, f = self.transform
        cols = np.arange(self.width) + 0.5
        rows = np.arange(self.height) + 0.5
        cc, rr = np.meshgrid(cols, rows)
        return a * cc + b * rr + c, d * cc + e * rr + f

    def window(self, col_off: int, row_off: int, width: int, height: int) -> PixelGrid:
        """A sub-grid (or super-grid) sharing this grid's lattice."""
        a, b, c, d, e, f = self.transform
        return PixelGrid(
            self.crs, (a, b, c + a * col_off + b * row_off, d, e, f + d * col_off + e * row_off), width, height
        )


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

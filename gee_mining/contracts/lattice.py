"""The pixel lattice: the one description of "which pixels" shared by every step, model and export.

A lattice is a CRS, an affine transform and a size. The transform has Earth Engine's order
``(scaleX, shearX, translateX, shearY, scaleY, translateY)``, which is also rasterio's
``Affine(a, b, c, d, e, f)`` order, mapping pixel (column, row) corners to CRS coordinates:
``x = a * col + b * row + c``, ``y = d * col + e * row + f``. So ``ee.Image.reproject(crs,
crsTransform)``, ``computePixels``'s ``grid``, ``Export.image``'s ``crsTransform`` and a GeoTIFF's
georeference all name the same pixels, on Earth Engine and locally.

:func:`pixel_grid` gives a grid-table cell's lattice. Pure: numbers, shapely and pyproj only.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyproj
import shapely
from affine import Affine

from gee_mining.errors import InputError

Transform = tuple[float, float, float, float, float, float]
EE_TRANSFORM_KEYS = ("scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY")


def _to_lonlat(crs: str) -> pyproj.Transformer:
    """A transformer to longitude/latitude, one per CRS and thread (making one costs far more than using
    it; pyproj transformers are not to be shared between threads)."""
    return _transformer(crs, threading.get_ident())


@lru_cache(maxsize=256)
def _transformer(crs: str, thread: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(crs, 4326, always_xy=True)


@dataclass(frozen=True)
class PixelGrid:
    """``width`` x ``height`` pixels in ``crs`` placed by ``transform`` (see the module docstring).

    For a cell's lattice (:func:`pixel_grid`) the transform is ``[scale, 0, x0, 0, -scale, y1]``: the
    upper-left corner, north up. Sheared or rotated transforms are described too (``bounds``,
    ``outline``, the pixel/CRS maps hold for any affine); ``scale`` is the x pixel size.
    """

    crs: str
    transform: Transform
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"pixel lattice of {self.width} x {self.height} pixels: give a positive size.")

    @property
    def scale(self) -> float:
        return self.transform[0]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width): the shape of the lattice's arrays."""
        return (self.height, self.width)

    @property
    def size(self) -> int:
        return self.width * self.height

    @property
    def epsg(self) -> int:
        """The CRS's EPSG code (``"EPSG:32633"`` -> 32633); an error for a CRS given otherwise."""
        authority, _, code = self.crs.partition(":")
        if authority.upper() != "EPSG" or not code.isdigit():
            raise InputError(f"CRS {self.crs!r} is not an EPSG code (EPSG:nnnn).")
        return int(code)

    @property
    def affine(self) -> Affine:
        """The transform as rasterio's ``Affine``."""
        return Affine(*self.transform)

    @property
    def is_rectilinear(self) -> bool:
        return self.transform[1] == 0 and self.transform[3] == 0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in ``crs``: the box around the lattice's four corners."""
        a, b, c, d, e, f = self.transform
        w, h = self.width, self.height
        xs = [c, c + a * w, c + b * h, c + a * w + b * h]
        ys = [f, f + d * w, f + e * h, f + d * w + e * h]
        return (min(xs), min(ys), max(xs), max(ys))

    def outline(self) -> shapely.Polygon:
        """The lattice's footprint in ``crs`` (its four corners)."""
        xs, ys = self.pixel_to_crs([0, self.width, self.width, 0], [0, 0, self.height, self.height])
        return shapely.Polygon(np.column_stack([xs, ys]))

    def pixel_to_crs(self, col, row) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of pixel positions (``col``, ``row`` in pixels; 0 is the upper-left corner)."""
        a, b, c, d, e, f = self.transform
        col, row = np.asarray(col, float), np.asarray(row, float)
        return a * col + b * row + c, d * col + e * row + f

    def crs_to_pixel(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions (col, row) of CRS coordinates: the inverse of :meth:`pixel_to_crs`."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        x, y = np.asarray(x, float) - c, np.asarray(y, float) - f
        return (e * x - b * y) / det, (-d * x + a * y) / det

    def pixel_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of every pixel centre, as two (height, width) arrays."""
        cc, rr = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        return self.pixel_to_crs(cc, rr)

    def centre_lonlat(self) -> tuple[float, float]:
        """The lattice's centre in longitude and latitude (EPSG:4326)."""
        x, y = self.pixel_to_crs(self.width / 2, self.height / 2)
        lon, lat = _to_lonlat(self.crs).transform(float(x), float(y))
        return float(lon), float(lat)

    def lonlat_boxes(self, reach_m: float = 0.0, points: int = 16) -> list[tuple[float, float, float, float]]:
        """(west, south, east, north) boxes in degrees that cover the lattice grown by ``reach_m`` metres.

        Why: a step that draws polygons on a cell first keeps the polygons near it, in EPSG:4326, so
        polygons on the far side of the globe are never projected into the cell's zone (a transverse
        Mercator zone cannot hold them). The grown outline is sampled at ``points`` points per side
        and padded by 1 % of its span; one box, or two where it crosses the antimeridian.
        """
        xmin, ymin, xmax, ymax = self.bounds
        xmin, ymin, xmax, ymax = xmin - reach_m, ymin - reach_m, xmax + reach_m, ymax + reach_m
        t = np.linspace(0.0, 1.0, points)
        xs = np.concatenate(
            [xmin + (xmax - xmin) * t, np.full(points, xmax), xmax - (xmax - xmin) * t, np.full(points, xmin)]
        )
        ys = np.concatenate(
            [np.full(points, ymin), ymin + (ymax - ymin) * t, np.full(points, ymax), ymax - (ymax - ymin) * t]
        )
        lon, lat = _to_lonlat(self.crs).transform(xs, ys)
        lon, lat = np.asarray(lon), np.asarray(lat)
        pad = 0.01 * max(float(np.ptp(lat)), 1e-6)
        south, north = max(float(lat.min()) - pad, -90.0), min(float(lat.max()) + pad, 90.0)
        if float(np.ptp(lon)) > 180:  # across the antimeridian: east of it (negative) and west of it
            east_part, west_part = lon[lon < 0], lon[lon >= 0]
            return [
                (float(west_part.min()) - pad, south, 180.0, north),
                (-180.0, south, float(east_part.max()) + pad, north),
            ]
        return [(max(float(lon.min()) - pad, -180.0), south, min(float(lon.max()) + pad, 180.0), north)]

    def window(self, col_off: int, row_off: int, width: int, height: int) -> PixelGrid:
        """A sub-lattice (or super-lattice) on the same pixels, ``col_off``/``row_off`` pixels from this one."""
        a, b, c, d, e, f = self.transform
        moved = (a, b, c + a * col_off + b * row_off, d, e, f + d * col_off + e * row_off)
        return PixelGrid(self.crs, moved, width, height)

    def ee_grid(self) -> dict:
        """The ``grid`` argument of ``ee.data.computePixels`` for this lattice."""
        return {
            "dimensions": {"width": self.width, "height": self.height},
            "affineTransform": dict(zip(EE_TRANSFORM_KEYS, self.transform, strict=True)),
            "crsCode": self.crs,
        }


def pixel_grid(row: dict[str, Any], scale: float = 10.0) -> PixelGrid:
    """The lattice of a grid-table row (``epsg``, ``cell_x``, ``cell_y``, ``cell_size``) at ``scale`` metres.

    The lattice is aligned to multiples of ``scale`` in the cell's UTM zone, as Sentinel-2's own
    10, 20 and 60 m pixels are, so nothing is resampled. When ``scale`` divides the cell (5500 and
    2750 m at 10 m) the lattice is the cell, exactly ``cell_size / scale`` pixels wide. When it
    does not (1375 m at 10 m: 137.5 pixels) the lattice is the smallest one that covers the cell,
    reaching at most one pixel beyond it (138 x 138 pixels for every 1375 m cell at 10 m).
    """
    size = float(row["cell_size"])
    if not scale > 0:
        raise InputError(f"scale {scale!r}: give a positive pixel size in metres, e.g. 10.")
    x0, y0 = row["cell_x"] * size, row["cell_y"] * size
    left, bottom = math.floor(x0 / scale + 1e-9) * scale, math.floor(y0 / scale + 1e-9) * scale
    right, top = math.ceil((x0 + size) / scale - 1e-9) * scale, math.ceil((y0 + size) / scale - 1e-9) * scale
    width, height = int(round((right - left) / scale)), int(round((top - bottom) / scale))
    epsg = int(row["epsg"])
    return PixelGrid(f"EPSG:{epsg}", (scale, 0.0, left, 0.0, -scale, top), width, height)

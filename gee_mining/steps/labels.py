"""Step 2 labels: which pixels are mine, and how far each pixel centre is from a mine's edge.

``label_bands(polygons, grid)`` is an ``ee.Image`` with two bands on a cell's 10 m lattice:

- ``_mine`` (uint8): 1 where the pixel centre lies inside a polygon, 0 elsewhere
  (``ee.Image(0).byte().paint(polygons, 1)``: paint fills the pixels whose centre is inside).
- ``distance`` (float): signed distance in metres from the pixel centre to the nearest polygon
  edge (outer or inner ring), negative inside (where ``_mine`` is 1), positive outside.
  ``FeatureCollection.distance`` measures to polygon boundaries, also inside polygons, so
  the sign comes from ``_mine``. Pixels farther than ``search_radius`` from every edge read
  ``+search_radius`` outside and ``-search_radius`` inside (a cap, not a mask), so the band
  has no masked pixels; an empty collection gives ``_mine`` 0 and ``distance`` ``+search_radius``
  everywhere.

With a grid, only the polygons near the cell (``polygons_near``: within ``search_radius``, filtered
in EPSG:4326) are drawn: a polygon file may span the globe, and a polygon 90 degrees of longitude
away cannot be projected into the cell's UTM zone (Earth Engine and the local engine both refuse:
"Unable to transform coordinates"). Far polygons change neither band, so the filter changes no pixel.

Written once with the ``ee`` API: it runs on Earth Engine, on the local engine and as
Code Editor JavaScript alike.
"""

from __future__ import annotations

import math
from typing import Any

import ee

from gee_mining.contracts.lattice import PixelGrid, pixel_grid
from gee_mining.errors import InputError

DEFAULT_SEARCH_RADIUS = 5000.0  # metres, without a grid
MAX_ERROR = 1.0  # metres: reprojection error of the polygons when distances are measured


def painted(polygons: Any, value: Any = 1) -> Any:
    """The label image of ``polygons``: ``value`` (a number, or a property of each polygon) where a pixel's centre
    lies inside one, 0 elsewhere; byte. The one painter of mine labels and masks: paint fills the pixels whose centre
    is inside, at whatever lattice the image is computed on."""
    return ee.Image(0).byte().paint(ee.FeatureCollection(polygons), value).byte()


def _lattice(grid: PixelGrid | dict[str, Any] | None) -> PixelGrid | None:
    if grid is None or isinstance(grid, PixelGrid):
        return grid
    if isinstance(grid, dict):
        return pixel_grid(grid)
    raise InputError(
        f"grid must be a gee_mining.contracts.lattice.PixelGrid or a grid-table row (dict), got {type(grid).__name__}."
    )


def polygons_near(polygons, grid: PixelGrid | dict[str, Any], reach_m: float = 0.0):
    """``polygons`` (an ``ee.FeatureCollection``) that may lie within ``reach_m`` metres of the cell.

    A server-side ``filterBounds`` on the cell's box in longitude and latitude
    (``PixelGrid.lonlat_boxes``), so nothing far away is ever projected into the cell's zone; one
    request's graph, whatever the number of polygons.
    """
    lattice = _lattice(grid)
    rings = [[[[w, s], [e, s], [e, n], [w, n], [w, s]]] for w, s, e, n in lattice.lonlat_boxes(reach_m)]
    region = ee.Geometry.MultiPolygon(rings, "EPSG:4326", False)
    return ee.FeatureCollection(polygons).filterBounds(region)


def label_bands(polygons, grid: PixelGrid | dict[str, Any] | None = None, search_radius: float | None = None):
    """The ``_mine`` and ``distance`` bands of ``polygons`` (an ``ee.FeatureCollection``).

    ``grid`` is a cell's lattice (``gee_mining.contracts.lattice.pixel_grid(row)``) or a grid-table row: the
    image is then reprojected onto it (``crs`` and ``crsTransform``). ``search_radius`` (metres)
    caps the distance; by default the lattice's diagonal (every pixel of a cell that holds an
    edge gets its exact distance), or 5 km without a grid.
    """

    lattice = _lattice(grid)
    if search_radius is None:
        if lattice is None:
            search_radius = DEFAULT_SEARCH_RADIUS
        else:
            search_radius = math.ceil(math.hypot(lattice.width, lattice.height) * lattice.scale)
    search_radius = float(search_radius)
    if not search_radius > 0:
        raise InputError(f"search_radius must be a positive number of metres, got {search_radius}.")
    fc = ee.FeatureCollection(polygons)
    if lattice is not None:
        fc = polygons_near(fc, lattice, search_radius)
    mine = painted(fc).rename("_mine")
    unsigned = fc.distance(search_radius, MAX_ERROR).unmask(search_radius)
    signed = unsigned.where(mine, unsigned.multiply(-1)).toFloat().rename("distance")
    image = mine.addBands(signed)
    if lattice is not None:
        image = image.reproject(crs=lattice.crs, crsTransform=list(lattice.transform))
    return image

"""Band names every layer shares: the Sentinel-2 reflectance bands, the label bands, the nodata value.

One place, so that the composite, the indices, the labels, the exports, the pixel tables, the study, the
classifiers and the detector all mean the same bands by the same names.
"""

from __future__ import annotations

BANDS: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
"""The 12 spectral bands of Sentinel-2 L2A, in Earth Engine's order (B10, cirrus, is not in L2A)."""

GREENEST_NDVI_BAND = "NDVI_max"
"""A seasonal band beside a composite: the greenest NDVI each pixel showed over several periods (seasons). A crop
field or grass is green in some season; a mine, natural bare ground and roofs in none."""

MINE_BAND = "_mine"
"""The label band: 1 where the pixel centre lies inside a mine polygon, 0 elsewhere."""

DISTANCE_BAND = "distance"
"""The label band: signed metres to the nearest polygon edge, negative inside a mine, positive outside."""

LABEL_BANDS: tuple[str, ...] = (MINE_BAND, DISTANCE_BAND)
"""The label bands, in the order a cell's image stacks them after its spectral bands."""

NODATA = -9999.0
"""GeoTIFF nodata: 0 is a valid ``_mine`` and ``distance`` value, -9999 is no value of any band."""

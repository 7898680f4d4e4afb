"""Step 3 pixel tables: one row per pixel of a cell, for the pixel study and classifiers.

Columns (the contract the study, the classifiers and the detector read):

- ``cell`` (the cell's name), ``row``, ``col`` (int32: the pixel in the cell's lattice,
  ``contracts.lattice.pixel_grid(row)``, 0 = top / left), ``x``, ``y`` (float64: the pixel centre in the cell's
  UTM CRS);
- every band of the cell's image (``steps.cell_image.cell_image``): B1..B12, the requested indices,
  ``distance`` (signed metres) and ``_mine`` (0/1), float32 (``_mine`` uint8);
- the cell's metadata: ``epsg``, ``zoom``, ``cell_label`` (1 positive, 0 negative cell),
  ``overlap``, ``lat``, ``lon`` (its centroid), ``country`` and land-cover shares ``lc_<class>``
  when the grid has them.

Pixels with no clear observation (masked in the composite) have no row.

Two routes to the same table:

- **Server-side**, on Earth Engine or the local engine: ``pixel_features(row, image)`` is an
  ``ee.FeatureCollection`` (``Image.sampleRegions`` on the cell's lattice, the cell's metadata
  copied onto every pixel); ``export_pixel_table`` sends it to Cloud Storage as CSV with
  ``Export.table``, and ``csv_to_table`` reads such a CSV back with the schema's types.
- **Offline**, from the per-cell GeoTIFFs that the exports wrote: ``gee_mining.io.pixel_table.from_geotiff``
  reads the file (bands named by their descriptions, nodata skipped) and adds the same columns.

This module holds the graphs; the columns are ``gee_mining.contracts.schemas`` and the files
(``write_pixel_table``, ``read_pixel_table``, ``csv_to_table``) are ``gee_mining.io.pixel_table``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ee
import pandas as pd

from gee_mining.contracts.lattice import pixel_grid
from gee_mining.contracts.schemas import cell_metadata, columns
from gee_mining.io.pages import iter_features
from gee_mining.io.pixel_table import typed_pixel_table


def pixel_features(row: dict[str, Any], image: Any):
    """Every unmasked pixel of ``image`` on the cell's lattice as a feature: position, bands, metadata.

    ``image`` is the cell's image (``steps.cell_image.cell_image``). Written with the ``ee`` API only.
    """

    grid = pixel_grid(row)
    x0, top = grid.transform[2], grid.transform[5]
    proj = ee.Projection(grid.crs, list(grid.transform))
    xy = ee.Image.pixelCoordinates(ee.Projection(grid.crs))  # metres; the sample puts them at pixel centres
    col = xy.select("x").subtract(x0).divide(grid.scale).floor().toInt32().rename("col")
    row_band = ee.Image.constant(top).subtract(xy.select("y")).divide(grid.scale).floor().toInt32().rename("row")
    stacked = image.addBands(ee.Image.cat([row_band, col, xy.select("x"), xy.select("y")]))
    xmin, ymin, xmax, ymax = grid.bounds
    region = ee.Geometry.Rectangle([xmin, ymin, xmax, ymax], grid.crs, False)
    meta = cell_metadata(row)
    cell = ee.FeatureCollection([ee.Feature(region, meta)])
    return stacked.sampleRegions(collection=cell, properties=list(meta), projection=proj, geometries=False)


def fetch_pixel_table(row: dict[str, Any], image: Any, bands: Sequence[str]):
    """The cell's pixel table computed server-side and fetched now (small cells; big runs export)."""

    records = [f["properties"] for f in iter_features(pixel_features(row, image), page_size=5000)]
    cols = columns(bands, row)
    df = pd.DataFrame.from_records(records, columns=cols) if records else pd.DataFrame(columns=cols)
    return typed_pixel_table(df.sort_values(["row", "col"], ignore_index=True), bands)

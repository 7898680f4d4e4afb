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
from gee_mining.errors import InputError
from gee_mining.io.pages import PAGE_BYTES, iter_features, page_size_for
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


def cells_pixel_features(rows: Sequence[dict[str, Any]], image: Any):
    """The pixel tables of many cells of ONE zone and level in one collection: for every cell the rows of
    ``pixel_features(row, image)``, its ``cell`` and metadata taken from its grid row.

    One ``sampleRegions`` over the cells' lattice squares (each a feature carrying its row's metadata and its
    lattice's corner), on the zone's 10 m lattice that every cell's own lattice is part of; ``row`` and ``col``
    are then each pixel's place in its own cell's lattice (a pixel on the shared edge of two 1375 m lattices is
    in both, once each). ``image`` is the stack over all the cells (``cell_image(..., region=...)``). For the
    batched pixel-table product (``batch.products``): one task, not one per cell.
    """

    grids = [pixel_grid(r) for r in rows]
    crs, scale = grids[0].crs, grids[0].scale
    if any(g.crs != crs or g.scale != scale for g in grids):
        raise InputError("cells_pixel_features: give cells of one zone and scale (a batch, batch.batches).")
    xy = ee.Image.pixelCoordinates(ee.Projection(crs))
    stacked = image.addBands(xy.select(["x", "y"]))
    feats, keys = [], []
    for row, g in zip(rows, grids, strict=True):
        meta = cell_metadata(row)
        keys = keys or list(meta)
        box = ee.Geometry.Rectangle(list(g.bounds), crs, False)
        feats.append(ee.Feature(box, {**meta, "_x0": g.transform[2], "_top": g.transform[5]}))
    lattice = ee.Projection(crs, [scale, 0, 0, 0, -scale, 0])
    samples = stacked.sampleRegions(collection=ee.FeatureCollection(feats), properties=[*keys, "_x0", "_top"],
                                    projection=lattice, geometries=False)  # fmt: skip

    def place(f):
        col = ee.Number(f.get("x")).subtract(f.get("_x0")).divide(scale).floor().toInt32()
        row = ee.Number(f.get("_top")).subtract(f.get("y")).divide(scale).floor().toInt32()
        return f.set({"row": row, "col": col})

    return samples.map(place)


def fetch_pixel_table(row: dict[str, Any], image: Any, bands: Sequence[str], max_page_bytes: int = PAGE_BYTES):
    """The cell's pixel table computed server-side and fetched now (small cells; big runs export), in pages
    of as many pixels as keep each answer under ``max_page_bytes`` (``io.pages.page_size_for`` of the
    table's columns: about 1,000 pixels of 90 columns, 3,000 of 30, for 4 MB)."""

    cols = columns(bands, row)
    page = page_size_for(cols, max_page_bytes)
    records = [f["properties"] for f in iter_features(pixel_features(row, image), page_size=page)]
    df = pd.DataFrame.from_records(records, columns=cols) if records else pd.DataFrame(columns=cols)
    return typed_pixel_table(df.sort_values(["row", "col"], ignore_index=True), bands)

"""Spatial context of each pixel, computed server-side with the ``ee`` API: neighbourhood statistics at several radii.

A pixel's own spectrum does not tell a mine from natural bare soil or a bare field: in the hard SIMULATED world
(and on Earth) they share soil spectra (issue 25: a pixel model keeps 283-310 mine-free fine cells of 1,024 on
a held-out world with the best possible threshold). What differs is around the pixel:

- **texture**: a mine is a patchwork of pit floor, benches, tailings, haul roads and pit water at a scale of tens
  of metres; a bare field is one soil, edge to edge; the local standard deviation of NDVI, NBR, NDBI, B11 and B4
  says which;
- **how much bare ground is near**: a small pit in forest is a bare island; a field or a bare plain is bare far
  around (the share of bare pixels, NDVI below ``BARE_NDVI``, at each radius);
- **water beside bare ground**: pit water and tailings ponds (the share of water pixels, NDWI above 0);
- the local mean of the indices (what a pixel's neighbourhood looks like, not just the pixel);
- **the season**, where the composite carries ``GREENEST_NDVI_BAND`` (the greenest NDVI over several seasons,
  ``steps.sentinel2.greenest_ndvi``): a field bare in winter is green in summer, a mine is bare all year. The
  band is a feature of its own, and at each radius its local mean and the share of pixels bare all year
  (greenest NDVI below ``BARE_NDVI``) are too.

Each statistic is ``Image.reduceNeighborhood`` with a square kernel in metres (``Kernel.square(r, 'meters')``):
the same metres at every scale a pyramid level is computed at (on Earth Engine, a kernel in metres is resized
with the zoom level as here), mean and standard deviation in one pass (``Reducer.mean().combine(stdDev)``). The
local engine reduces such boxes by summed-area tables, in time independent of the radius.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ee

from gee_mining.contracts.bands import GREENEST_NDVI_BAND
from gee_mining.errors import InputError
from gee_mining.steps.indices import add_indices

CONTEXT_INDICES: tuple[str, ...] = ("NDVI", "NDWI", "NBR", "NDBI")
"""Indices added to the 12 reflectance bands (the screening model's per-pixel features)."""
CONTEXT_RADII_M: tuple[float, ...] = (20.0, 60.0, 150.0)
"""Radii (metres, square kernels) of the neighbourhood statistics: a few pixels, a small pit, a mine and its ring."""
TEXTURE_BANDS: tuple[str, ...] = ("NDVI", "NBR", "NDBI", "B11", "B4")
"""Bands whose local mean and standard deviation are features."""
BARE_NDVI = 0.35  # below this NDVI a pixel counts as bare ground


def context_names(bands: Sequence[str], radii: Sequence[float] = CONTEXT_RADII_M) -> list[str]:
    """The feature names :func:`context_image` makes, in its band order, for a composite of ``bands`` (with the
    seasonal features where ``bands`` hold ``GREENEST_NDVI_BAND``: ``context_image(..., seasonal=True)``)."""
    names = [*bands, *CONTEXT_INDICES]
    for r in radii:
        tag = f"{r:g}m"
        names += [f"{b}_{s}_{tag}" for b in TEXTURE_BANDS for s in ("mean", "sd")]
        names += [f"bare_{tag}", f"water_{tag}"]
        if GREENEST_NDVI_BAND in bands:
            names += [f"{GREENEST_NDVI_BAND}_mean_{tag}", f"bare_all_year_{tag}"]
    return names


def context_image(composite: Any, radii: Sequence[float] = CONTEXT_RADII_M, seasonal: bool = False) -> Any:
    """``composite`` (Sentinel-2 reflectance bands) with ``CONTEXT_INDICES`` and, for each radius ``r`` in metres,
    ``<band>_mean_<r>m`` and ``<band>_sd_<r>m`` of ``TEXTURE_BANDS``, ``bare_<r>m`` and ``water_<r>m`` (shares of
    bare and of water pixels). ``seasonal`` (a composite with ``GREENEST_NDVI_BAND``): also ``NDVI_max_mean_<r>m``
    and ``bare_all_year_<r>m`` (the share of pixels whose greenest NDVI stays below ``BARE_NDVI``). Band order:
    :func:`context_names`."""
    radii = [float(r) for r in radii]
    if not radii or any(r <= 0 for r in radii) or len(set(radii)) < len(radii):
        raise InputError(f"context radii {radii}: distinct positive radii in metres, e.g. 20,60,150.")
    image = add_indices(ee.Image(composite), list(CONTEXT_INDICES))
    source = image.select(list(TEXTURE_BANDS))
    around = {"bare": image.select("NDVI").lt(BARE_NDVI).toFloat(), "water": image.select("NDWI").gt(0).toFloat()}
    if seasonal:
        greenest = image.select(GREENEST_NDVI_BAND)
        around[f"{GREENEST_NDVI_BAND}_mean"] = greenest.toFloat()
        around["bare_all_year"] = greenest.lt(BARE_NDVI).toFloat()
    keys = list(around)
    shares = ee.Image.cat([im.rename(f"s{i}") for i, im in enumerate(around.values())])
    stats = ee.Reducer.mean().combine(ee.Reducer.stdDev(), sharedInputs=True)
    out = [image]
    for r in radii:
        kernel = ee.Kernel.square(r, "meters")
        tag = f"{r:g}m"
        spread = source.reduceNeighborhood(stats, kernel)
        names = [f"{b}_{s}" for b in TEXTURE_BANDS for s in ("mean", "stdDev")]
        out.append(spread.select(names, [f"{b}_{s}_{tag}" for b in TEXTURE_BANDS for s in ("mean", "sd")]))
        means = shares.reduceNeighborhood(ee.Reducer.mean(), kernel)
        out.append(means.select([f"s{i}_mean" for i in range(len(keys))], [f"{k}_{tag}" for k in keys]))
    return ee.Image.cat(out).toFloat()

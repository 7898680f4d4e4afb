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
- the local mean of the indices (what a pixel's neighbourhood looks like, not just the pixel).

Each statistic is ``Image.reduceNeighborhood`` with a square kernel in metres (``Kernel.square(r, 'meters')``):
the same metres at every scale a pyramid level is computed at (on Earth Engine, a kernel in metres is resized
with the zoom level as here), mean and standard deviation in one pass (``Reducer.mean().combine(stdDev)``). The
local engine reduces such boxes by summed-area tables, in time independent of the radius.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ee

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
    """The feature names :func:`context_image` makes, in its band order, for a composite of ``bands``."""
    names = [*bands, *CONTEXT_INDICES]
    for r in radii:
        tag = f"{r:g}m"
        names += [f"{b}_{s}_{tag}" for b in TEXTURE_BANDS for s in ("mean", "sd")]
        names += [f"bare_{tag}", f"water_{tag}"]
    return names


def context_image(composite: Any, radii: Sequence[float] = CONTEXT_RADII_M) -> Any:
    """``composite`` (Sentinel-2 reflectance bands) with ``CONTEXT_INDICES`` and, for each radius ``r`` in metres,
    ``<band>_mean_<r>m`` and ``<band>_sd_<r>m`` of ``TEXTURE_BANDS``, ``bare_<r>m`` and ``water_<r>m`` (shares of
    bare and of water pixels). Band order: :func:`context_names`."""
    radii = [float(r) for r in radii]
    if not radii or any(r <= 0 for r in radii) or len(set(radii)) < len(radii):
        raise InputError(f"context radii {radii}: distinct positive radii in metres, e.g. 20,60,150.")
    image = add_indices(ee.Image(composite), list(CONTEXT_INDICES))
    source = image.select(list(TEXTURE_BANDS))
    shares = ee.Image.cat([
        image.select("NDVI").lt(BARE_NDVI).toFloat().rename("bare"),
        image.select("NDWI").gt(0).toFloat().rename("water"),
    ])  # fmt: skip
    stats = ee.Reducer.mean().combine(ee.Reducer.stdDev(), sharedInputs=True)
    out = [image]
    for r in radii:
        kernel = ee.Kernel.square(r, "meters")
        tag = f"{r:g}m"
        spread = source.reduceNeighborhood(stats, kernel)
        names = [f"{b}_{s}" for b in TEXTURE_BANDS for s in ("mean", "stdDev")]
        out.append(spread.select(names, [f"{b}_{s}_{tag}" for b in TEXTURE_BANDS for s in ("mean", "sd")]))
        around = shares.reduceNeighborhood(ee.Reducer.mean(), kernel)
        out.append(around.select(["bare_mean", "water_mean"], [f"bare_{tag}", f"water_{tag}"]))
    return ee.Image.cat(out).toFloat()

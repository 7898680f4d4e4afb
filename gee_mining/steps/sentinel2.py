"""Step 2: cloud-masked median Sentinel-2 composites, one per grid cell.

``composite(cell, spec)`` builds an ``ee.Image`` with the ``ee`` API only, so the
same graph runs on Earth Engine, on the local engine and as Code Editor
JavaScript: ``COPERNICUS/S2_SR_HARMONIZED`` filtered by the cell and the period
(optionally by ``CLOUDY_PIXEL_PERCENTAGE``), each scene cloud-masked, the
spectral bands converted from DN to surface reflectance (DN / 10000, float), the
per-pixel median over the scenes that stay unmasked, on the cell's 10 m lattice.

Cloud masks (``CompositeSpec.mask``):

- ``"cs_plus"`` (default): Cloud Score+ (``GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED``)
  linked by ``system:index`` with ``linkCollection``; keep ``cs_band >= cs_threshold``
  (Google's recommended recipe: ``cs_cdf``, 0.6).
- ``"s2cloudless"``: ``COPERNICUS/S2_CLOUD_PROBABILITY`` joined on ``system:index``
  (``Join.saveFirst``); keep ``probability < probability_threshold``.
- ``"scl"``: keep the Scene Classification classes in ``scl_keep`` (default 4
  vegetation, 5 bare soil, 6 water, 7 unclassified, 11 snow; drops 0 no data, 1
  saturated, 2 dark area, 3 cloud shadow, 8-10 clouds and cirrus). SCL is 20 m.
- ``"qa60"``: drop pixels with QA60 bit 10 (opaque cloud) or 11 (cirrus). QA60 is
  60 m, misses small clouds, and is empty (no cloud flagged) in scenes from
  2022-01-25 to about 2024-02-28 (processing baseline 04.00): a period overlapping
  that window gives a ``UserWarning``.
- ``"none"``: no mask.

Why: every later step (indices, pixel tables, training) reads this image; the
median of cloud-free observations over a year is robust to leftover clouds and
shadows and to single odd acquisitions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import ee

from gee_mining.contracts.bands import BANDS, GREENEST_NDVI_BAND
from gee_mining.contracts.datasets import CLOUD_SCORE_PLUS, S2_CLOUD_PROBABILITY, S2_SR
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.contracts.schemas import is_grid_row
from gee_mining.errors import InputError
from gee_mining.io.catalog import coverage_before
from gee_mining.steps.grid import ee_cell_geometry

MASKS = ("cs_plus", "scl", "s2cloudless", "qa60", "none")
CS_BANDS = ("cs", "cs_cdf")
# bands of S2_SR_HARMONIZED that are not surface reflectance (and that the simulated world partly lacks)
NON_REFLECTANCE = ("AOT", "WVP", "SCL", "TCI_R", "TCI_G", "TCI_B", "MSK_CLDPRB", "MSK_SNWPRB", "QA10", "QA20", "QA60")
QA60_GAP = ("2022-01-25", "2024-02-28")
"""Scenes in this window have an empty QA60 band on Earth Engine (no cloud ever flagged)."""


@dataclass(frozen=True)
class CompositeSpec:
    """What goes into a composite: the period ``[start, end)``, the cloud mask and its thresholds, the bands."""

    start: str = "2019-01-01"
    end: str = "2020-01-01"
    mask: str = "cs_plus"
    cs_threshold: float = 0.6
    cs_band: str = "cs_cdf"
    probability_threshold: float = 40
    scl_keep: tuple[int, ...] = (4, 5, 6, 7, 11)
    max_cloudy_percentage: float | None = None
    bands: tuple[str, ...] = BANDS

    def __post_init__(self) -> None:
        if self.mask not in MASKS:
            raise InputError(f"mask={self.mask!r} is not a known cloud mask: use one of {', '.join(MASKS)}.")
        if self.cs_band not in CS_BANDS:
            raise InputError(f"cs_band={self.cs_band!r} is not a Cloud Score+ band: use 'cs_cdf' or 'cs'.")
        if not 0 <= self.cs_threshold <= 1:
            raise InputError(f"cs_threshold={self.cs_threshold} is outside 0..1 (Cloud Score+ is 0..1; 0.6 is usual).")
        if not 0 <= self.probability_threshold <= 100:
            raise InputError(f"probability_threshold={self.probability_threshold} is outside 0..100 (percent).")
        if self.max_cloudy_percentage is not None and not 0 <= self.max_cloudy_percentage <= 100:
            raise InputError(f"max_cloudy_percentage={self.max_cloudy_percentage} is outside 0..100 (or None).")
        bands = (self.bands,) if isinstance(self.bands, str) else tuple(self.bands)
        if not bands:
            raise InputError("bands is empty: give some of " + " ".join(BANDS) + ".")
        unknown = [b for b in bands if b not in BANDS]
        if unknown:
            other = [b for b in unknown if b in NON_REFLECTANCE]
            why = (
                f" ({', '.join(other)}: not surface reflectance, and AOT, WVP, TCI_*, MSK_SNWPRB, QA10, QA20 are not"
                " in the simulated world; select them from collection() yourself)"
                if other
                else ""
            )
            raise InputError(
                f"bands {', '.join(unknown)} are not Sentinel-2 reflectance bands{why}: use some of {' '.join(BANDS)}."
            )
        if len(set(bands)) != len(bands):
            raise InputError(f"bands {bands} has duplicates.")
        object.__setattr__(self, "bands", bands)
        object.__setattr__(self, "scl_keep", tuple(int(c) for c in self.scl_keep))
        if not self.scl_keep or not set(self.scl_keep) <= set(range(12)):
            raise InputError(f"scl_keep={self.scl_keep} must name some SCL classes 0..11 (default 4, 5, 6, 7, 11).")
        object.__setattr__(self, "start", str(self.start))
        object.__setattr__(self, "end", str(self.end))
        if self.start[:10] >= self.end[:10]:
            raise InputError(f"start={self.start!r} is not before end={self.end!r}.")


def region_of(target: Any):
    """The ``ee.Geometry`` of a grid row (its square in its own projection) or a geometry as given."""
    if is_grid_row(target):
        return ee_cell_geometry(ee, target)
    if isinstance(target, ee.ComputedObject):
        return target
    raise InputError(
        f"composite target {type(target).__name__} is neither a grid row (a dict with epsg, cell_x, cell_y, "
        "cell_size, as gee_mining.contracts.cells.GridTable rows are) nor an ee.Geometry."
    )


def _warn_qa60(spec: CompositeSpec) -> None:
    lo, hi = QA60_GAP
    if spec.start[:10] <= hi and spec.end[:10] > lo:
        warnings.warn(
            f"mask='qa60' over {spec.start}..{spec.end}: scenes from {lo} to about {hi} have an empty QA60 band "
            "on Earth Engine (no cloud flagged), so their clouds pass. Use mask='cs_plus'.",
            UserWarning,
            stacklevel=3,
        )


def _warn_coverage(spec: CompositeSpec) -> None:
    cov = coverage_before(S2_SR, spec.start)
    if cov is not None:
        warnings.warn(
            f"{S2_SR} over {spec.start}..{spec.end}: the period starts before {cov.global_from}, when the "
            f'collection becomes global on Earth Engine ({cov.source}: "{cov.quote}"), so cells outside its '
            f"early coverage get empty composites. Start the period on {cov.global_from} or later.",
            UserWarning,
            stacklevel=3,
        )


def collection(region, spec: CompositeSpec | None = None):
    """``S2_SR_HARMONIZED`` over ``region`` in ``[start, end)``, prefiltered and cloud-masked per ``spec``.

    Each image keeps all its bands (the masks apply to all of them) and its
    properties; reflectance scaling and band selection happen in :func:`composite`.
    A period starting before the collection is global (``io.catalog.COVERAGE``) gives a ``UserWarning``.
    """
    spec = spec or CompositeSpec()
    _warn_coverage(spec)
    s2 = ee.ImageCollection(S2_SR).filterBounds(region).filterDate(spec.start, spec.end)
    if spec.max_cloudy_percentage is not None:
        s2 = s2.filter(ee.Filter.lte("CLOUDY_PIXEL_PERCENTAGE", spec.max_cloudy_percentage))
    if spec.mask == "cs_plus":
        band, threshold = spec.cs_band, spec.cs_threshold
        linked = s2.linkCollection(ee.ImageCollection(CLOUD_SCORE_PLUS), [band])
        return linked.map(lambda img: img.updateMask(img.select(band).gte(threshold)))
    if spec.mask == "s2cloudless":
        probability = ee.ImageCollection(S2_CLOUD_PROBABILITY).filterBounds(region).filterDate(spec.start, spec.end)
        joined = ee.Join.saveFirst("s2cloudless").apply(
            primary=s2,
            secondary=probability,
            condition=ee.Filter.equals(leftField="system:index", rightField="system:index"),
        )
        threshold = spec.probability_threshold
        return ee.ImageCollection(joined).map(
            lambda img: img.updateMask(ee.Image(img.get("s2cloudless")).select("probability").lt(threshold))
        )
    if spec.mask == "scl":
        keep = spec.scl_keep

        def scl_mask(img):
            scl = img.select("SCL")
            ok = scl.eq(keep[0])
            for c in keep[1:]:
                ok = ok.Or(scl.eq(c))
            return img.updateMask(ok)

        return s2.map(scl_mask)
    if spec.mask == "qa60":
        _warn_qa60(spec)
        return s2.map(lambda img: img.updateMask(img.select("QA60").bitwiseAnd((1 << 10) | (1 << 11)).eq(0)))
    return s2


SIMULATED_PROPERTY = "GEE_MINING_SIMULATED"  # set (true) on every scene of the simulated world (gee_mining.world)


def simulated_flag(region, spec: CompositeSpec | None = None):
    """``"true"`` (an ``ee.String``) when any Sentinel-2 scene of ``region`` in the spec's period is a simulated one,
    else ``"false"``.

    Why: a file made from the local engine's simulated world must say so, or once copied it looks real.
    Computed server-side with the image it describes (no request of its own); on Earth Engine, where no
    scene carries the property, it is ``"false"``.
    """
    spec = spec or CompositeSpec()
    scenes = ee.ImageCollection(S2_SR).filterBounds(region).filterDate(spec.start, spec.end)
    count = scenes.filter(ee.Filter.eq(SIMULATED_PROPERTY, True)).size()
    return ee.String(ee.Algorithms.If(count.gt(0), "true", "false"))


SCENE_BATCH = 500  # cells whose scenes one request counts (:func:`scene_counts`)


def no_scene_error(row: dict, spec: CompositeSpec) -> str:
    """What a cell no Sentinel-2 scene covers in the period gets, the same from ``export-cells`` and an export
    job: its name, the period and the fix (on the local engine, a simulated world over the cell)."""
    lon, lat = pixel_grid(row).centre_lonlat()
    return (
        f"{row['name']}: no Sentinel-2 scene covers this cell from {spec.start} to {spec.end} (its export would be "
        "all nodata); on the local engine the catalog's imagery (a simulated world covers only its square: see its "
        f"manifest.json) does not reach it. Build a world there: gee-mining world --center={lon:.4f},{lat:.4f} "
        "--polygons FILE"
    )


def scene_counts(rows: list[dict], spec: CompositeSpec | None = None, batch: int = SCENE_BATCH) -> list[int]:
    """The number of Sentinel-2 scenes over each grid cell in the spec's period (before cloud masking).

    Why: a cell no scene covers (outside the local engine's simulated world, or at sea) would export as
    an all-nodata file and look like success; callers refuse it up front. One request per ``batch`` cells.
    """
    spec = spec or CompositeSpec()
    counts: list[int] = []
    for i in range(0, len(rows), batch):
        sizes = [
            ee.ImageCollection(S2_SR).filterBounds(region_of(row)).filterDate(spec.start, spec.end).size()
            for row in rows[i : i + batch]
        ]
        counts += [int(n) for n in ee.List(sizes).getInfo()]
    return counts


def composite(cell_row_or_geometry, spec: CompositeSpec | None = None, **overrides):
    """The median reflectance composite (float, 0..1) of ``spec.bands`` over a grid cell or a geometry.

    A grid row (``gee_mining.contracts.cells.GridTable`` row) gives an image reprojected to
    the cell's 10 m lattice (``pixel_grid(row)``: its CRS and ``crsTransform``),
    so exports and ``computePixels`` of the cell land on its pixels; 20 and 60 m
    bands are sampled nearest-neighbour onto it, as Earth Engine does. A
    geometry gives the composite in Earth Engine's default composite projection:
    pass a grid to ``computePixels``/``Export`` yourself. Keyword overrides
    (``start=``, ``mask=``, ...) replace fields of ``spec``. The median of an even
    count is the mean of the two middle values (Earth Engine's exact median).
    Pixels where every scene is masked stay masked.
    """
    spec = spec or CompositeSpec()
    if overrides:
        names = {f.name for f in fields(CompositeSpec)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise InputError(f"unknown composite option(s) {', '.join(bad)}: use {', '.join(sorted(names))}.")
        spec = replace(spec, **overrides)
    region = region_of(cell_row_or_geometry)
    bands = list(spec.bands)
    scenes = collection(region, spec).map(lambda img: img.select(bands).toFloat().divide(10000))
    # A fully masked image with the bands keeps the median's bands when no scene covers the region.
    nothing = ee.Image.constant([0] * len(bands)).rename(bands).toFloat().updateMask(0)
    image = scenes.merge(ee.ImageCollection([nothing])).median().rename(bands).toFloat()
    if is_grid_row(cell_row_or_geometry):
        grid = pixel_grid(cell_row_or_geometry, scale=10)
        image = image.reproject(crs=grid.crs, crsTransform=list(grid.transform))
    return image


def greenest_ndvi(region, specs: Sequence[CompositeSpec]):
    """The greenest NDVI (B8, B4) each pixel showed in any cloud-masked scene of the periods of ``specs``: one band,
    ``GREENEST_NDVI_BAND``, the maximum over every scene of every period.

    Why: a median composite of one season sees a crop field bare in winter as bare as a mine. Over a winter and a
    summer period (e.g. January and June), a field or grass is green at least once and a mine, natural bare ground
    or a roof never is: the seasonal cue, as a band. Missed thin cloud and shadow lower NDVI, so the maximum is
    robust to them. Pixels no scene of any period sees stay masked.
    """
    if not specs:
        raise InputError("greenest_ndvi needs at least one period (a CompositeSpec per season).")
    scenes = ee.ImageCollection([ee.Image.constant(0).rename(GREENEST_NDVI_BAND).toFloat().updateMask(0)])
    for spec in specs:
        ndvi = collection(region, spec).map(
            lambda img: img.normalizedDifference(["B8", "B4"]).rename(GREENEST_NDVI_BAND).toFloat()
        )
        scenes = scenes.merge(ndvi)
    return scenes.max().rename(GREENEST_NDVI_BAND).toFloat()

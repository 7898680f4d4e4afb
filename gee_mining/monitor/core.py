"""Monitoring across years: per-year mine probability, the footprint of every known mine, and new candidates.

For a region (a rectangle on a UTM lattice), a span of years and a screening model (the pyramid's pixel model,
:mod:`gee_mining.pyramid.probability`), everything on imagery is one ``ee`` graph run as batch exports, so the
work grows with the region only on the server:

1. per-year composites (:func:`gee_mining.steps.sentinel2.composite`, the pipeline's cloud masking), each exported
   once (``Export.image``, one task a year) and read back as an image (:func:`year_composites`);
2. per-year probability: the frozen screening model compiled over each year's composite;
3. footprints (:func:`footprint_table`): for every known polygon buffered by ``known_buffer_m`` (room to grow), the
   area of pixels at or above the threshold each year, and at ``threshold +/- band`` (the area interval: how much
   the area moves with the threshold), summed server-side with ``reduceRegions`` and exported as one table (one
   task for any number of mines);
4. candidates (:func:`candidate_image`): pixels at or above the threshold outside every buffered known polygon,
   per year, stacked into the number of years seen, the first year seen and the highest probability; exported as
   one GeoTIFF (one task) and grouped into 8-connected components offline (the local engine has no
   ``Image.reduceToVectors``; :mod:`gee_mining.pyramid.detectors` groups pixels the same way);
5. candidate attributes (:func:`annotate`): nearest known mine and distance (``Join.saveBest`` on
   ``Filter.withinDistance``), country (``USDOS/LSIB_SIMPLE/2017``, ``Join.saveFirst`` on ``Filter.intersects``)
   and land cover (``ESA/WorldCover/v200`` mode), one exported table per page of candidates (their outlines travel
   in the export request, so they are paged: at most ``ATTRIBUTE_PAGE_BYTES`` of outlines a request, 45,000
   candidates of ~1 KB each make ~45 tasks); a candidate with no mine within ``nearest_within_m`` or outside every
   country gets null there.

Interactive requests: none that grow with the region (``getInfo`` of band names only); no request of any kind grows
with the number of candidates.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ee
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import rasterio.windows
import shapely
from pyproj import Transformer
from rasterio.features import shapes
from scipy import ndimage

from gee_mining.batch.tasks import run_tasks, succeeded
from gee_mining.connection import open_bucket
from gee_mining.contracts.bands import MINE_BAND
from gee_mining.contracts.datasets import LSIB, WORLDCOVER
from gee_mining.errors import GeeMiningError, InputError
from gee_mining.io.pages import iter_features
from gee_mining.io.storage import gs_key, parse_gs_url
from gee_mining.pyramid.probability import (
    FEATURE_INDICES,
    export_composite,
    feature_names,
    fit_logistic,
    probability_image,
)
from gee_mining.steps.indices import add_indices
from gee_mining.steps.labels import painted
from gee_mining.steps.sentinel2 import CompositeSpec

NO_YEAR = 9999  # "never seen" in the first-year band


@dataclass(frozen=True)
class MonitorSpec:
    """How a monitoring run looks: its years, the composites, the thresholds and the candidate rules."""

    years: tuple[int, ...]
    months: int = 12  # months of each year in its composite, from January
    mask: str = "cs_plus"
    threshold: float = 0.5  # probability at or above which a pixel is mine
    band: float = 0.05  # the area interval: areas at threshold + band and threshold - band
    min_years: int = 1  # a candidate pixel is seen in at least this many years
    min_pixels: int = 20  # a candidate has at least this many 10 m pixels (0.002 km2)
    new_only: bool = False  # only pixels first seen after the first year make candidates (new since the span began)
    persistent: bool = False  # a candidate pixel is seen every year from its first year to the last (mines stay)
    min_ndvi_before: float | None = None  # a candidate pixel's NDVI in the first year at least this (was vegetated)
    growth_scale: float = 1.0  # footprint growth times this (a bias correction chosen on train worlds)
    footprint_threshold: float | None = None  # the footprints' own threshold (None: ``threshold``)
    known_buffer_m: float = 200.0  # a known mine's room to grow: its footprint zone, and no candidate there
    nearest_within_m: float = 50_000.0
    destination: str = "gs://gee-mining-monitor/run"

    def __post_init__(self) -> None:
        years = tuple(int(y) for y in self.years)
        if not years or sorted(set(years)) != list(years):
            raise InputError(f"years {self.years}: one or more increasing years, e.g. --years 2019-2023.")
        object.__setattr__(self, "years", years)
        if not 0 < self.threshold < 1:
            raise InputError(f"threshold {self.threshold}: inside (0, 1).")
        name, t = (
            ("threshold", self.threshold)
            if self.footprint_threshold is None
            else ("footprint_threshold", self.footprint_threshold)
        )
        if not 0 < t < 1 or not 0 <= self.band < min(t, 1 - t):  # the footprints' area interval
            raise InputError(f"{name} {t} +/- band {self.band}: inside (0, 1).")
        if not 1 <= self.min_years <= len(years):
            raise InputError(f"min_years {self.min_years}: 1 to the number of years ({len(years)}).")
        if not 1 <= self.months <= 12:
            raise InputError(f"months {self.months}: 1 to 12.")
        if self.min_ndvi_before is not None and not -1 <= self.min_ndvi_before <= 1:
            raise InputError(f"min_ndvi_before {self.min_ndvi_before}: an NDVI, -1 to 1 (or None: no rule).")
        if not self.growth_scale > 0:
            raise InputError(f"growth_scale {self.growth_scale}: above 0 (1: no correction).")
        parse_gs_url(self.destination, "monitor destination")  # a bad one found before any export

    def composite_spec(self, year: int) -> CompositeSpec:
        end = f"{year + 1}-01-01" if self.months == 12 else f"{year}-{self.months + 1:02d}-01"
        return CompositeSpec(start=f"{year}-01-01", end=end, mask=self.mask)


@dataclass(frozen=True)
class MonitorRegion:
    """Where: a rectangle (``bounds`` xmin, ymin, xmax, ymax on multiples of 10 m in ``EPSG:epsg``) and the table of
    known mine polygons (an asset id) with its id column."""

    epsg: int
    bounds: tuple[float, float, float, float]
    mines_id: str
    id_column: str = "id"

    def geometry(self):
        return ee.Geometry.Rectangle(list(self.bounds), f"EPSG:{self.epsg}", False)

    @property
    def area_km2(self) -> float:
        return (self.bounds[2] - self.bounds[0]) * (self.bounds[3] - self.bounds[1]) / 1e6


@dataclass
class Candidate:
    """Pixels seen as mine outside every known mine, merged across years: one polygon (EPSG:4326) and its figures."""

    id: int
    geometry: Any  # shapely, EPSG:4326
    score: float  # mean over its pixels of the highest yearly probability
    area_m2: float
    first_year: int
    years_seen: int  # most years any of its pixels was seen
    attributes: dict[str, Any] = field(default_factory=dict)
    previous_verdict: str | None = None  # a reviewer's verdict on it in an earlier run (None: new, to review)


VERDICTS = ("mine", "not_mine", "unsure")


@dataclass(frozen=True)
class Verdict:
    """A reviewer's verdict on one candidate: what it is, and where (its outline, EPSG:4326)."""

    candidate_id: int
    verdict: str
    geometry: Any  # shapely, EPSG:4326


def mark_reviewed(candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> list[Candidate]:
    """Each candidate with the verdict of the reviewed outline it intersects (a mine grows, so this year's outline
    of a candidate reviewed last year overlaps the old one); where several do, the most cautious: mine, then
    unsure, then not mine. A candidate with a previous verdict is not new: the review page does not show it again."""
    if not verdicts:
        return list(candidates)
    rank = {"mine": 0, "unsure": 1, "not_mine": 2}
    tree = shapely.STRtree([v.geometry for v in verdicts])
    out = []
    for c in candidates:
        hits = [verdicts[i].verdict for i in tree.query(c.geometry, predicate="intersects")]
        out.append(dataclasses.replace(c, previous_verdict=min(hits, key=rank.get) if hits else None))
    return out


def year_composites(region: MonitorRegion, spec: MonitorSpec, out: Path, progress=None) -> dict[int, Path]:
    """Each year's composite exported once (one batch task a year) on the region's 10 m lattice; local paths."""
    paths = {}
    for year in spec.years:
        paths[year] = export_composite(
            ee, region.epsg, region.bounds, spec.composite_spec(year), destination=f"{spec.destination}/composites",
            name=f"composite_{year}", download_to=out / "composites", progress=progress,
        )  # fmt: skip
    return paths


def probabilities(model, composites: dict[int, Any]) -> dict[int, Any]:
    """The frozen screening model (a ``LinearModel``) over each year's composite: one-band images, 0..1."""
    return {y: probability_image(ee, model, ee.Image(c)).rename("probability") for y, c in composites.items()}


def known_zones(region: MonitorRegion, spec: MonitorSpec):
    """The known polygons buffered by ``known_buffer_m`` (each keeps its id as ``mine_id``)."""
    mines = ee.FeatureCollection(region.mines_id).filterBounds(region.geometry())
    col = region.id_column
    return mines.map(lambda f: ee.Feature(f.geometry().buffer(spec.known_buffer_m),
                                          {"mine_id": f.get(col), "known_area_m2": f.geometry().area(1)}))  # fmt: skip


def _tag(t: float) -> str:
    return f"{round(t * 100):03d}"


def footprint_image(probs: dict[int, Any], thresholds: Sequence[float]):
    """Bands ``a<ttt>_<year>``: the pixel area (m2) where the year's probability is at or above each threshold."""
    area = ee.Image.pixelArea()
    bands = [probs[y].gte(t).multiply(area).rename(f"a{_tag(t)}_{y}") for t in thresholds for y in sorted(probs)]
    return ee.Image.cat(bands)


def _export_table(collection, spec: MonitorSpec, name: str, fmt: str, out: Path, selectors=None, progress=None):
    """One ``Export.table.toCloudStorage`` task, waited for and downloaded to ``out/<name>.<ext>``; the path."""
    bucket, key = _destination(spec, name)
    ext = {"CSV": "csv", "GeoJSON": "geojson"}[fmt]
    task = ee.batch.Export.table.toCloudStorage(collection, description=f"monitor_{name}", bucket=bucket,
                                                fileNamePrefix=key, fileFormat=fmt, selectors=selectors)  # fmt: skip
    return _run_and_download(task, name, bucket, f"{key}.{ext}", out / f"{name}.{ext}", progress)


def _destination(spec: MonitorSpec, name: str) -> tuple[str, str]:
    """The bucket and object prefix of an export named ``name`` under ``spec.destination``."""
    return gs_key(spec.destination, name, "monitor destination")


def _run_and_download(task, name: str, bucket: str, key: str, target: Path, progress=None) -> Path:
    """One export task run and waited for (an error names it), its file downloaded to ``target``."""
    (status,) = run_tasks([task], progress=progress)
    if not succeeded(status):
        raise GeeMiningError(f"monitor: the {name} export failed: {status.get('error_message', status)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    open_bucket(bucket).download(key, target)
    return target


def footprint_sums(probs: dict[int, Any], region: MonitorRegion, spec: MonitorSpec, out: Path,
                   thresholds: Sequence[float], progress=None) -> list[dict]:  # fmt: skip
    """Per known mine (``mine_id``) the area (m2) at or above each threshold each year in its zone (columns
    ``a<ttt>_<year>``) and in the first year inside its own polygon (``i<ttt>``): ``reduceRegions`` over the
    buffered known polygons, one exported table for any number of mines."""
    first = probs[min(probs)]
    known = ee.FeatureCollection(region.mines_id).filterBounds(region.geometry())
    inside = painted(known).multiply(ee.Image.pixelArea())
    image = footprint_image(probs, thresholds).addBands(
        ee.Image.cat([first.gte(t).multiply(inside).rename(f"i{_tag(t)}") for t in thresholds])
    )
    sums = image.reduceRegions(collection=known_zones(region, spec), reducer=ee.Reducer.sum(), scale=10,
                               crs=f"EPSG:{region.epsg}")  # fmt: skip
    names = [f"a{_tag(t)}_{y}" for t in thresholds for y in sorted(probs)] + [f"i{_tag(t)}" for t in thresholds]
    path = _export_table(sums, spec, "footprints", "CSV", out, ["mine_id", "known_area_m2", *names], progress)
    return list(csv.DictReader(io.StringIO(path.read_text())))


def footprint_table(probs: dict[int, Any], region: MonitorRegion, spec: MonitorSpec, out: Path,
                    progress=None) -> pd.DataFrame:  # fmt: skip
    """Known mine x year: area (m2) at the threshold, its interval at threshold +/- band, and the growth since the
    first year with the interval the same thresholds give."""
    t = spec.threshold if spec.footprint_threshold is None else spec.footprint_threshold
    ts = (t, t + spec.band, t - spec.band)
    return footprint_frame(footprint_sums(probs, region, spec, out, ts, progress), sorted(probs), ts, spec.growth_scale)


def footprint_frame(rows: list[dict], years: Sequence[int], ts: Sequence[float], scale: float = 1.0) -> pd.DataFrame:
    """The exported sums as one row per mine and year.

    ``detected_m2``: the area at or above the threshold in the mine's zone. ``growth_m2``: the change of that area
    since the first year, divided by the share of the known polygon detected in the first year (``i<ttt>`` over
    the polygon's area): what the model misses inside a mine is taken as the same share every year, and what it
    sees around the mine (bare ground, roads) cancels in the change; times ``scale``, a correction chosen on train
    worlds (the model also counts the ground cleared ahead of a pit, which grows with it: growth runs ahead).
    ``area_m2``: the known area plus that growth, floored at 0: a mine that was abandoned and regrew loses the
    cleared ground around it too, so its growth can exceed its registered area; an area is never below 0.
    Intervals: the same estimates at threshold + band and - band, in order. A mine nothing was detected in during
    the first year has no estimate (NaN).
    """
    out = []
    t, hi, lo = (_tag(x) for x in ts)
    for r in rows:
        known = float(r.get("known_area_m2") or "nan")
        first = {k: float(r[f"a{k}_{years[0]}"] or 0) for k in (t, hi, lo)}
        inside = {k: float(r.get(f"i{k}") or 0) for k in (t, hi, lo)}
        share = {k: inside[k] / known if inside[k] > 0 else float("nan") for k in (t, hi, lo)}
        for y in years:
            raw = {k: float(r[f"a{k}_{y}"] or 0) for k in (t, hi, lo)}
            g = {k: scale * (raw[k] - first[k]) / share[k] for k in (t, hi, lo)}
            growths = sorted((g[hi], g[lo], g[t]))
            out.append({"mine_id": str(r["mine_id"]), "year": int(y), "known_area_m2": known, "detected_m2": raw[t],
                        "area_m2": max(0.0, known + g[t]), "area_low_m2": max(0.0, known + growths[0]),
                        "area_high_m2": max(0.0, known + growths[2]),
                        "growth_m2": g[t], "growth_low_m2": growths[0], "growth_high_m2": growths[2]})  # fmt: skip
    return pd.DataFrame(out, columns=FOOTPRINT_COLUMNS)


FOOTPRINT_COLUMNS = ["mine_id", "year", "known_area_m2", "detected_m2", "area_m2", "area_low_m2", "area_high_m2",
                     "growth_m2", "growth_low_m2", "growth_high_m2"]  # fmt: skip


def candidate_image(probs: dict[int, Any], region: MonitorRegion, spec: MonitorSpec,
                    thresholds: Sequence[float] | None = None, first_composite=None):  # fmt: skip
    """Outside the buffered known polygons: per threshold ``n<ttt>`` (years at or above it), ``f<ttt>`` (first
    such year, ``NO_YEAR`` if none) and ``s<ttt>`` (1 where the pixel stays at or above it every year from its first
    to the last: a mine stays, a fire scar or a flood does not), and ``score`` (the highest yearly probability).
    With ``first_composite`` (the first year's composite) also ``ndvi0``: its NDVI, to keep only ground that was
    vegetated when the span began (a new mine clears vegetation; natural bare ground was bare all along)."""
    outside = painted(known_zones(region, spec)).Not()
    bands = []
    for t in thresholds or (spec.threshold,):
        bands += list(temporal_bands(probs, t))
    score = ee.ImageCollection([probs[y].unmask(0).toFloat() for y in sorted(probs)]).max().rename("score")
    if first_composite is not None:
        bands.append(ee.Image(first_composite).normalizedDifference(["B8", "B4"]).rename("ndvi0"))
    return ee.Image.cat([*[b.toFloat() for b in bands], score]).updateMask(outside)


def temporal_bands(probs: dict[int, Any], t: float) -> tuple:
    """At threshold ``t``: years seen (``n<ttt>``), first year seen (``f<ttt>``) and seen every year since
    (``s<ttt>``), each one image computed server-side from the yearly probabilities."""
    years = sorted(probs)
    seen = [probs[y].unmask(0).gte(t) for y in years]
    count = ee.ImageCollection([s.toInt16() for s in seen]).sum()
    first = ee.ImageCollection([s.multiply(y - NO_YEAR).add(NO_YEAR).toInt16() for s, y in zip(seen, years, strict=True)]).min()  # fmt: skip
    stays = ee.ImageCollection([s.Or(first.gt(y)).toInt16() for s, y in zip(seen, years, strict=True)]).min()
    stays = stays.And(first.lt(NO_YEAR))
    return count.rename(f"n{_tag(t)}"), first.rename(f"f{_tag(t)}"), stays.rename(f"s{_tag(t)}")


def export_image(image, region: MonitorRegion, spec: MonitorSpec, name: str, out: Path, progress=None) -> Path:
    """An image of the region on its 10 m lattice, one batch task; the local GeoTIFF ``out/<name>.tif``."""
    xmin, ymin, xmax, ymax = region.bounds
    bucket, key = _destination(spec, name)
    task = ee.batch.Export.image.toCloudStorage(
        image, description=f"monitor_{name}", bucket=bucket, fileNamePrefix=key, crs=f"EPSG:{region.epsg}",
        crsTransform=[10, 0, xmin, 0, -10, ymax], dimensions=f"{round((xmax - xmin) / 10)}x{round((ymax - ymin) / 10)}",
        maxPixels=int(1e10), fileFormat="GeoTIFF",
    )  # fmt: skip
    return _run_and_download(task, name, bucket, f"{key}.tif", out / f"{name}.tif", progress)


def export_candidate_image(image, region: MonitorRegion, spec: MonitorSpec, out: Path, progress=None) -> Path:
    """The candidate image (:func:`candidate_image`), one batch task; the local GeoTIFF ``out/candidates.tif``."""
    return export_image(image, region, spec, "candidates", out, progress)


def probability_stack(probs: dict[int, Any]):
    """Every year's probability as one image, bands ``p_<year>``: exported once (:func:`export_image`) and read
    back, each threshold reads the stored probabilities instead of recompiling the model over the composite."""
    return ee.Image.cat([probs[y].rename(f"p_{y}").toFloat() for y in sorted(probs)])


def stacked_probabilities(image_id: str, years: Sequence[int]) -> dict[int, Any]:
    """The per-year probability images of a stored :func:`probability_stack`."""
    return {y: ee.Image(image_id).select(f"p_{y}").rename("probability") for y in years}


def vectorise(
    path: Path, threshold: float, min_years: int, min_pixels: int, after: int | None = None,
    persistent: bool = False, min_ndvi_before: float | None = None,
) -> list[Candidate]:  # fmt: skip
    """8-connected groups of pixels seen in at least ``min_years`` years at ``threshold`` (bands of
    :func:`candidate_image`), of at least ``min_pixels`` pixels, as polygons in EPSG:4326. ``after``: only pixels
    first seen after that year (so a new mine beside ground that was already bare is not merged into it).
    ``persistent``: only pixels seen every year since their first (band ``s<ttt>``); ``min_ndvi_before``: only
    pixels whose first-year NDVI (band ``ndvi0``) is at least this. Both were computed server-side; here they
    only select pixels before grouping."""
    wanted = [f"n{_tag(threshold)}", f"f{_tag(threshold)}", "score"]
    wanted += [f"s{_tag(threshold)}"] if persistent else []
    wanted += ["ndvi0"] if min_ndvi_before is not None else []
    with rasterio.open(path) as ds:
        names = list(ds.descriptions)
        missing = [n for n in wanted if n not in names]
        if missing:
            raise InputError(f"{path}: no band(s) {missing}; export the candidate image with threshold {threshold}"
                             " (ndvi0: with the first year's composite).")  # fmt: skip
        data = {n: ds.read(names.index(n) + 1, masked=True).filled(0) for n in wanted}
        transform, crs = ds.transform, ds.crs
    count, first, score = data[f"n{_tag(threshold)}"], data[f"f{_tag(threshold)}"], data["score"]
    seen = (count >= min_years) & (first > after) if after is not None else count >= min_years
    if persistent:
        seen &= data[f"s{_tag(threshold)}"] > 0
    if min_ndvi_before is not None:
        seen &= data["ndvi0"] >= min_ndvi_before
    labels, _ = ndimage.label(seen, structure=np.ones((3, 3)))
    to_ll = Transformer.from_crs(crs, 4326, always_xy=True)
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        part = labels[sl] == k
        if part.sum() < min_pixels:
            continue
        win = rasterio.windows.Window(sl[1].start, sl[0].start, part.shape[1], part.shape[0])
        polys = [shapely.geometry.shape(g) for g, v in shapes(part.astype(np.uint8), mask=part,
                 transform=rasterio.windows.transform(win, transform)) if v]  # fmt: skip
        utm = shapely.union_all(polys)
        ll = shapely.transform(utm, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
        out.append(Candidate(len(out) + 1, ll, float(score[sl][part].mean()), float(part.sum() * 100.0),
                             int(first[sl][part].min()), int(count[sl][part].max())))  # fmt: skip
    return out


def select(candidates: Sequence[Candidate], spec: MonitorSpec) -> list[Candidate]:
    """The candidates ``spec`` keeps (``new_only``: first seen after the span's first year), numbered from 1."""
    kept = [c for c in candidates if not spec.new_only or c.first_year > spec.years[0]]
    return [dataclasses.replace(c, id=i) for i, c in enumerate(kept, start=1)]


ATTRIBUTE_PAGE_BYTES = 1_000_000
"""Outlines (GeoJSON text) per attribute export request: the serialised request is about 1.4 times that plus ~6 KB
of graph (measured with ``ee.serializer``), well under the 10 MB Earth Engine refuses."""


def pages(candidates: Sequence[Candidate], max_bytes: int = ATTRIBUTE_PAGE_BYTES) -> list[list[Candidate]]:
    """The candidates in consecutive pages whose outlines (GeoJSON text) hold at most ``max_bytes`` each (a larger
    outline alone), so no export request grows with the number of candidates: the pages do."""
    out: list[list[Candidate]] = []
    size = 0
    for c in candidates:
        n = len(json.dumps(shapely.geometry.mapping(c.geometry)))
        if not out or size + n > max_bytes:
            out.append([])
            size = 0
        out[-1].append(c)
        size += n
    return out


def attribute_table(candidates: Sequence[Candidate], region: MonitorRegion, spec: MonitorSpec):
    """One page of candidates with their nearest known mine and distance (``Join.saveBest`` on
    ``Filter.withinDistance``), country (LSIB, ``Join.saveFirst`` on ``Filter.intersects``) and land cover
    (WorldCover mode, ``reduceRegions``): a collection of rows keyed by ``cid``."""
    fc = ee.FeatureCollection([ee.Feature(ee.Geometry(shapely.geometry.mapping(c.geometry)), {"cid": c.id})
                               for c in candidates])  # fmt: skip
    col = region.id_column
    near = ee.Join.saveBest(matchKey="nearest", measureKey="distance").apply(
        fc, ee.FeatureCollection(region.mines_id),
        ee.Filter.withinDistance(distance=spec.nearest_within_m, leftField=".geo", rightField=".geo", maxError=1),
    )  # fmt: skip
    # saveBest records the measure on the match (as Earth Engine does)
    near = near.map(lambda f: ee.Feature(None, {"cid": f.get("cid"), "nearest_mine": ee.Feature(f.get("nearest")).get(col),
                                                "distance_m": ee.Feature(f.get("nearest")).get("distance")}))  # fmt: skip
    country = ee.Join.saveFirst("country").apply(fc, ee.FeatureCollection(LSIB),
                                                 ee.Filter.intersects(leftField=".geo", rightField=".geo"))  # fmt: skip
    country = country.map(lambda f: ee.Feature(None, {"cid": f.get("cid"),
                                                      "country": ee.Feature(f.get("country")).get("country_na"),
                                                      "country_code": ee.Feature(f.get("country")).get("country_co")}))  # fmt: skip
    cover = ee.ImageCollection(WORLDCOVER).first().select("Map").reduceRegions(fc, ee.Reducer.mode(), 10)
    cover = cover.map(lambda f: ee.Feature(None, {"cid": f.get("cid"), "land_cover": f.get("mode")}))
    return near.merge(country).merge(cover)


ATTRIBUTE_COLUMNS = ["cid", "nearest_mine", "distance_m", "country", "country_code", "land_cover"]


def annotate(candidates: Sequence[Candidate], region: MonitorRegion, spec: MonitorSpec, out: Path,
             progress=None, page_bytes: int = ATTRIBUTE_PAGE_BYTES) -> int:  # fmt: skip
    """Each candidate's nearest known mine and distance, country and land cover (:func:`attribute_table`), one
    exported table per page of outlines (:func:`pages`), the tasks run side by side; sets ``Candidate.attributes``
    (None where nothing matches). The number of export tasks."""
    if not candidates:
        return 0
    bucket = _destination(spec, "")[0]
    tasks, keys = [], []
    for k, page in enumerate(pages(candidates, page_bytes), start=1):
        key = _destination(spec, f"candidate_attributes_{k:05d}")[1]
        tasks.append(ee.batch.Export.table.toCloudStorage(
            attribute_table(page, region, spec), description=f"monitor_candidate_attributes_{k:05d}", bucket=bucket,
            fileNamePrefix=key, fileFormat="CSV", selectors=ATTRIBUTE_COLUMNS))  # fmt: skip
        keys.append(f"{key}.csv")
    failed = [s for s in run_tasks(tasks, progress=progress) if not succeeded(s)]
    if failed:
        raise GeeMiningError(f"monitor: {len(failed)} candidate attribute export(s) failed: "
                             f"{failed[0].get('error_message', failed[0])}")  # fmt: skip
    merged: dict[int, dict[str, Any]] = {c.id: dict.fromkeys(ATTRIBUTE_COLUMNS[1:]) for c in candidates}
    for key in keys:
        target = out / Path(key).name
        out.mkdir(parents=True, exist_ok=True)
        open_bucket(bucket).download(key, target)
        for r in csv.DictReader(io.StringIO(target.read_text())):
            merged[int(float(r["cid"]))].update({k: v for k, v in r.items() if k != "cid" and v not in ("", None)})
    for c in candidates:
        a = merged[c.id]
        a["distance_m"] = float(a["distance_m"]) if a["distance_m"] is not None else None
        a["land_cover"] = int(float(a["land_cover"])) if a["land_cover"] is not None else None
        c.attributes = a
    return len(tasks)


def candidates_frame(candidates: Sequence[Candidate]):
    """The candidates as a GeoDataFrame (EPSG:4326), one row each."""
    import_cols = ["nearest_mine", "distance_m", "country", "country_code", "land_cover"]
    rows = [{"candidate_id": c.id, "score": c.score, "area_m2": c.area_m2, "first_year": c.first_year,
             "years_seen": c.years_seen, **{k: c.attributes.get(k) for k in import_cols},
             "previous_verdict": c.previous_verdict} for c in candidates]  # fmt: skip
    return gpd.GeoDataFrame(rows, geometry=[c.geometry for c in candidates], crs="EPSG:4326",
                            columns=["candidate_id", "score", "area_m2", "first_year", "years_seen", *import_cols,
                                     "previous_verdict"])  # fmt: skip


@dataclass
class MonitorResult:
    """What a run wrote: the footprints (known mine x year), the candidates, and the files."""

    footprints: pd.DataFrame
    candidates: list[Candidate]
    files: dict[str, str]
    tasks: int  # Earth Engine batch tasks started
    probabilities: dict[int, Any] = field(default_factory=dict)  # year -> the probability image

    @property
    def new(self) -> list[Candidate]:
        """The candidates no reviewer has seen: what the review page shows."""
        return [c for c in self.candidates if c.previous_verdict is None]


def run_monitor(model, composites: dict[int, Any], region: MonitorRegion, spec: MonitorSpec, out_dir,
                progress: Callable[[str], None] | None = None, reviewed: Sequence[Verdict] = ()) -> MonitorResult:  # fmt: skip
    """Footprints and candidates for ``composites`` (year -> ``ee.Image``) with the screening ``model``; writes
    ``footprints.parquet`` and ``candidates.gpkg`` (whole or not at all) and ``monitor.json`` into ``out_dir``.
    ``reviewed``: verdicts of earlier runs; a candidate on a reviewed outline keeps that verdict
    (:func:`mark_reviewed`) and is not new."""
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    work = out / "work"
    probs = probabilities(model, composites)
    foot = footprint_table(probs, region, spec, work)
    say(f"[monitor] footprints of {foot['mine_id'].nunique()} known mine(s) over {len(spec.years)} year(s)")
    image = candidate_image(probs, region, spec, first_composite=composites[spec.years[0]])
    raster = export_candidate_image(image, region, spec, work)
    after = spec.years[0] if spec.new_only else None
    groups = vectorise(raster, spec.threshold, spec.min_years, spec.min_pixels, after, spec.persistent,
                       spec.min_ndvi_before)  # fmt: skip
    cands = mark_reviewed(select(groups, spec), reviewed)
    attribute_tasks = annotate(cands, region, spec, work)
    new = sum(c.previous_verdict is None for c in cands)
    say(f"[monitor] {len(cands)} candidate(s) outside the known mines, {new} new (the rest reviewed before)")
    files = write_outputs(out, foot, cands, spec, region)
    return MonitorResult(foot, cands, files, tasks=2 + attribute_tasks, probabilities=probs)


def write_outputs(out: Path, foot: pd.DataFrame, cands: Sequence[Candidate], spec: MonitorSpec,
                  region: MonitorRegion) -> dict[str, str]:  # fmt: skip
    """``footprints.parquet``, ``candidates.gpkg`` and ``monitor.json``, each written beside then renamed."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"footprints": out / "footprints.parquet", "candidates": out / "candidates.gpkg",
             "summary": out / "monitor.json"}  # fmt: skip
    tmp = {k: p.with_name(f".partial-{p.name}") for k, p in files.items()}
    foot.to_parquet(tmp["footprints"], index=False)
    candidates_frame(cands).to_file(tmp["candidates"], driver="GPKG", layer="candidates")
    summary = {"years": list(spec.years), "spec": {k: v for k, v in spec.__dict__.items()},
               "region": {"epsg": region.epsg, "bounds": list(region.bounds), "mines": region.mines_id},
               "known_mines": int(foot["mine_id"].nunique()), "candidates": len(cands),
               "new_candidates": sum(c.previous_verdict is None for c in cands),
               "reviewed_before": {v: sum(c.previous_verdict == v for c in cands) for v in VERDICTS},
               "nulls": "nearest_mine/distance_m: no known mine within nearest_within_m; country: outside every "
                        "LSIB polygon; land_cover: no WorldCover pixel"}  # fmt: skip
    tmp["summary"].write_text(json.dumps(summary, indent=1, default=str))
    for k, p in files.items():
        tmp[k].replace(p)
    return {k: str(p) for k, p in files.items()}


MINE_STRATUM = 255  # the mine pixels' stratum (WorldCover classes are 10 .. 100)


REJECTED_STRATUM = 254  # pixels of candidates a reviewer rejected: hard negatives


def _as_collection(geoms: Sequence[Any]):
    return ee.FeatureCollection([ee.Feature(ee.Geometry(shapely.geometry.mapping(g))) for g in geoms])


def sample_by_land_cover(composite, region: MonitorRegion, pixels: int = 500, seed: int = 0,
                         confirmed: Sequence[Any] = (), rejected: Sequence[Any] = ()) -> pd.DataFrame:  # fmt: skip
    """A pixel table of the composite with its indices, ``pixels`` pixels from the known mines and as many from each
    WorldCover class outside them (``stratifiedSample``, one request), labelled ``_mine``; column ``stratum`` says
    where each came from.

    Why: a class-balanced sample of "mine" against "everything else" holds almost no built-up or bare ground (rare
    in most land), which are what mines are mistaken for; one stratum per land-cover class keeps them in.
    ``confirmed`` and ``rejected``: outlines (EPSG:4326) of candidates a reviewer called mine (sampled as mine) and
    not mine (a stratum of their own, labelled not mine: hard negatives)."""
    features = add_indices(ee.Image(composite), list(FEATURE_INDICES))
    cover = ee.ImageCollection(WORLDCOVER).first().select("Map")
    stratum = cover.unmask(0).paint(ee.FeatureCollection(region.mines_id), MINE_STRATUM)
    if rejected:
        stratum = stratum.paint(_as_collection(rejected), REJECTED_STRATUM)
    if confirmed:
        stratum = stratum.paint(_as_collection(confirmed), MINE_STRATUM)
    sample = features.addBands(stratum.rename("stratum").toInt()).stratifiedSample(
        numPoints=pixels, classBand="stratum", region=region.geometry(), scale=10, seed=seed, geometries=False
    )
    table = pd.DataFrame([f["properties"] for f in iter_features(sample)])
    if table.empty:
        raise InputError(f"{region.mines_id}: no pixel sampled in the region; is the composite empty there?")
    table[MINE_BAND] = (table["stratum"] == MINE_STRATUM).astype(int)
    return table


def fit_screening(tables: Sequence[pd.DataFrame], composite):
    """The pyramid's logistic screening model fitted on pixel tables (:func:`sample_by_land_cover`); a
    ``LinearModel``."""
    features = add_indices(ee.Image(composite), list(FEATURE_INDICES))
    names = feature_names(ee, composite)
    return fit_logistic(features, pd.concat(list(tables), ignore_index=True), names).model


def fit_on_first_year(first, region: MonitorRegion, pixels: int = 500, seed: int = 0,
                      verdicts: Sequence[Verdict] = ()):  # fmt: skip
    """The screening model fitted on the first year's composite ``first``, labelled by the known mines and
    stratified by land cover (:func:`sample_by_land_cover`), with a reviewer's ``verdicts`` as labels (mine) and
    hard negatives (not mine); a ``LinearModel`` and the pixel table it was fitted on."""
    confirmed = [v.geometry for v in verdicts if v.verdict == "mine"]
    rejected = [v.geometry for v in verdicts if v.verdict == "not_mine"]
    table = sample_by_land_cover(first, region, pixels, seed, confirmed, rejected)
    return fit_screening([table], first), table

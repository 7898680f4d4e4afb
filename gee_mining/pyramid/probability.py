"""A mine-probability image for screening: a logistic regression on a server-side pixel sample, deployed
with ``gee_mining.ml.classify`` (``LinearModel`` compiled to an ee.Image), so the pyramid screens with exactly the
model the classifiers would deploy; the pyramid itself takes *any* one-band probability image.

Why a pixel model: screening needs a probability that Earth Engine can compute per pixel at any
scale over a whole region, from the composite alone; the pyramid then aggregates it per cell.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gee_mining.batch.tasks import run_tasks, succeeded
from gee_mining.connection import open_bucket
from gee_mining.contracts.bands import GREENEST_NDVI_BAND, MINE_BAND
from gee_mining.contracts.models import LinearModel
from gee_mining.errors import InputError
from gee_mining.io.catalog import CatalogEntry
from gee_mining.io.pages import iter_features
from gee_mining.io.storage import gs_key
from gee_mining.ml.classify import compile_linear, forest_image
from gee_mining.steps.context import CONTEXT_RADII_M, context_image, context_names
from gee_mining.steps.indices import add_indices
from gee_mining.steps.labels import painted
from gee_mining.steps.sentinel2 import CompositeSpec, composite, greenest_ndvi

FEATURE_INDICES: tuple[str, ...] = ("NDVI", "NDWI", "NBR", "NDBI")
"""Indices added to the 12 reflectance bands as features of the screening model."""


@dataclass(frozen=True)
class ProbabilityModel:
    """A fitted pixel model as the image it compiles to, and the model itself (its JSON is the classifiers')."""

    image: Any  # one-band ee.Image "probability", 0..1
    model: LinearModel
    train_pixels: int
    train_mine_pixels: int


def fit_logistic(features, table, names: Sequence[str], label: str = MINE_BAND, C: float = 1.0,
                 threshold: float = 0.5) -> ProbabilityModel:  # fmt: skip
    """Fit scikit-learn's class-balanced logistic regression on standardised features of a pixel table (a pandas
    DataFrame with the feature columns and ``label``) and compile it over ``features`` (an image that has those
    bands) with ``ml.classify.compile_linear``."""

    names = list(names)
    missing = [c for c in [*names, label] if c not in table.columns]
    if missing:
        raise InputError(f"pixel table lacks column(s) {', '.join(missing)}: sample the feature image with its labels.")
    data = table.dropna(subset=names + [label])
    y = data[label].to_numpy() > 0.5
    if y.all() or not y.any():
        raise InputError("the pixel table holds only one class: sample cells with and without mines.")
    x = data[names].to_numpy(dtype=float)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=2000)).fit(x, y)
    model = LinearModel.from_sklearn(pipe, names, threshold=threshold, source="gee_mining.pyramid screening model")
    image = compile_linear(model, features, features_ready=True).select("probability")
    return ProbabilityModel(image, model, int(len(y)), int(np.sum(y)))


@dataclass(frozen=True)
class ForestScreen:
    """A screening model that sees context: scikit-learn's random forest on each pixel's spectrum, indices and
    neighbourhood statistics (:func:`gee_mining.steps.context.context_image` at ``radii``), deployed as
    ``ee.Classifier.decisionTreeEnsemble`` (``ml.classify.forest_image``: each tree's leaves hold the class-1
    share, averaged over the trees, so the image is the forest's ``predict_proba``)."""

    forest: Any  # a fitted sklearn RandomForestClassifier on classes 0 / 1
    features: tuple[str, ...]
    radii: tuple[float, ...] = CONTEXT_RADII_M
    train_pixels: int = 0
    train_mine_pixels: int = 0

    def to_json(self) -> dict[str, Any]:
        ranked = sorted(zip(self.features, self.forest.feature_importances_, strict=True), key=lambda t: -t[1])
        return {"kind": "random_forest", "deployed_as": "ee.Classifier.decisionTreeEnsemble (REGRESSION: mean of "
                "the trees' class-1 shares)", "features": list(self.features), "context_radii_m": list(self.radii),
                "trees": len(self.forest.estimators_), "max_depth": self.forest.max_depth,
                "min_samples_leaf": self.forest.min_samples_leaf, "train_pixels": self.train_pixels,
                "train_mine_pixels": self.train_mine_pixels,
                "seasonal": self.seasonal, "importance": {k: round(float(v), 4) for k, v in ranked[:12]}}  # fmt: skip

    @property
    def seasonal(self) -> bool:
        """Whether the forest reads the seasonal features (its composite carries ``GREENEST_NDVI_BAND``)."""
        return GREENEST_NDVI_BAND in self.features


def fit_forest(table: pd.DataFrame, names: Sequence[str], radii: Sequence[float] = CONTEXT_RADII_M,
               label: str = MINE_BAND, trees: int = 30, max_depth: int = 12, min_leaf: int = 10,
               seed: int = 0) -> ForestScreen:  # fmt: skip
    """Fit scikit-learn's random forest (``trees`` trees of at most ``max_depth`` levels and ``min_leaf`` pixels a
    leaf, kept small so the compiled ensemble stays a small request) on a pixel table of context features
    (:func:`sample_pixels` with ``radii``)."""
    names = list(names)
    missing = [c for c in [*names, label] if c not in table.columns]
    if missing:
        raise InputError(f"pixel table lacks column(s) {', '.join(missing)}: sample the context image with labels.")
    data = table.dropna(subset=names + [label])
    y = (data[label].to_numpy() > 0.5).astype(int)
    if y.all() or not y.any():
        raise InputError("the pixel table holds only one class: sample cells with and without mines.")
    forest = RandomForestClassifier(trees, max_depth=max_depth, min_samples_leaf=min_leaf, class_weight="balanced",
                                    random_state=seed, n_jobs=1).fit(data[names].to_numpy(dtype=float), y)  # fmt: skip
    return ForestScreen(forest, tuple(names), tuple(float(r) for r in radii), int(len(y)), int(y.sum()))


def _table(sample) -> pd.DataFrame:
    """A sample's properties as a table, read page by page (``io.pages.iter_features``)."""
    return pd.DataFrame([f["properties"] for f in iter_features(sample)])


def mine_strata(areas_km2: Sequence[float]) -> tuple[float, ...]:
    """The edges of :func:`sample_context`'s mine size classes, checked: ascending positive areas in km2."""
    edges = tuple(float(e) for e in areas_km2)
    if list(edges) != sorted(set(edges)) or any(e <= 0 for e in edges):
        raise InputError(f"mine strata {list(edges)} (mine_strata_km2, --mine-strata): ascending positive areas in "
                         "km2, e.g. 0.05,1.")  # fmt: skip
    return edges


def sample_context(ee, composite, region, polygons, pixels: int = 2000, scale: float = 10.0, seed: int = 0,
                   radii: Sequence[float] = CONTEXT_RADII_M, seasonal: bool = False,
                   mine_strata_km2: Sequence[float] = ()) -> pd.DataFrame:  # fmt: skip
    """:func:`sample_pixels` of the context image (:func:`gee_mining.steps.context.context_image`; ``seasonal``: with
    the seasonal features of a composite that carries ``GREENEST_NDVI_BAND``).

    ``mine_strata_km2`` (ascending areas, e.g. ``(0.05, 1)``): the ``pixels`` mine pixels are drawn in equal parts
    from the mines of each size class (below 0.05 km2, 0.05-1, 1 and above) instead of uniformly over mine area,
    where a few large mines give nearly every pixel and the small pits a few per cent. The table's ``_mine`` is
    then the pixel's class (1, 2, ...; 0 outside mines), which :func:`fit_forest` reads as mine / not mine."""
    features = context_image(ee.Image(composite), radii, seasonal)
    fc = ee.FeatureCollection(polygons)
    edges = mine_strata(mine_strata_km2)
    classes, points = None, None
    if edges:

        def stratum(f):
            area, k = f.geometry().area(1).divide(1e6), ee.Number(1)
            for e in edges:
                k = k.add(area.gte(e))
            return f.set("_stratum", k)

        fc = fc.map(stratum)
        classes = list(range(len(edges) + 2))
        points = [pixels] + [pixels // (len(edges) + 1)] * (len(edges) + 1)
    mine = painted(fc, "_stratum" if edges else 1).rename(MINE_BAND)
    sample = features.addBands(mine).stratifiedSample(
        numPoints=pixels, classBand=MINE_BAND, region=region, scale=scale, seed=seed, geometries=False,
        classValues=classes, classPoints=points,
    )  # fmt: skip
    return _table(sample)


def sample_hard_negatives(ee, probability, features, region, polygons, pixels: int, scale: float = 10.0,
                          seed: int = 0, threshold: float = 0.5) -> pd.DataFrame:  # fmt: skip
    """``pixels`` mine-free pixels of ``region`` that a first screening model flags (``probability`` above
    ``threshold``, the pyramid's pixel threshold): its false alarms on a train world, with ``features`` (the context
    image), labelled 0 (one ``stratifiedSample`` request; a world with fewer such pixels gives them all).

    Why: a uniform draw of mine-free pixels is nearly all vegetation; the natural bare soil, rock and bare fields
    that the pyramid's fine cells must tell from small pits are a few per cent of it. A second forest fitted with
    these pixels as well spends its splits where the first one errs (hard-negative mining)."""
    if pixels <= 0:
        raise InputError(f"hard negatives {pixels} (--hard-negatives): a positive number of pixels a train world.")
    flagged = ee.Image(probability).gt(threshold).And(painted(polygons).Not()).byte().rename("_flagged")
    sample = ee.Image(features).addBands(flagged).stratifiedSample(
        numPoints=pixels, classBand="_flagged", region=region, scale=scale, seed=seed, geometries=False,
        classValues=[0, 1], classPoints=[0, pixels],
    )  # fmt: skip
    return _table(sample).drop(columns="_flagged", errors="ignore").assign(**{MINE_BAND: 0})


def context_feature_names(ee, composite, radii: Sequence[float] = CONTEXT_RADII_M) -> list[str]:
    """The forest's features over ``composite``: :func:`gee_mining.steps.context.context_names` of its bands."""
    return context_names(ee.Image(composite).bandNames().getInfo(), radii)


def sample_pixels(ee, composite, region, polygons, pixels: int = 2000, scale: float = 10.0, seed: int = 0,
                  indices: Sequence[str] = FEATURE_INDICES) -> pd.DataFrame:  # fmt: skip
    """A pixel table of ``pixels`` pixels per class over ``region``: server-side ``stratifiedSample`` of ``composite``
    with its indices and the ``_mine`` label painted from ``polygons`` (one request)."""

    features = add_indices(ee.Image(composite), list(indices))
    mine = painted(polygons).rename(MINE_BAND)
    sample = features.addBands(mine).stratifiedSample(
        numPoints=pixels, classBand=MINE_BAND, region=region, scale=scale, seed=seed, geometries=False
    )
    return _table(sample)


def feature_names(ee, composite, indices: Sequence[str] = FEATURE_INDICES) -> list[str]:
    """The screening model's features: the composite's bands, then ``indices``."""
    return [b for b in ee.Image(composite).bandNames().getInfo()] + list(indices)


def probability_image(ee, model: LinearModel | ForestScreen, composite, indices: Sequence[str] = FEATURE_INDICES):
    """A fitted screening model compiled over another composite (a world it was not fitted on): a linear model over
    the composite and ``indices``, or a :class:`ForestScreen` over the composite's context image."""
    if isinstance(model, ForestScreen):
        features = context_image(ee.Image(composite), model.radii, model.seasonal)
        return forest_image(model.forest, model.features, features, features_ready=True).select("probability")
    features = add_indices(ee.Image(composite), list(indices))
    return compile_linear(model, features, features_ready=True).select("probability")


def fit_probability(ee, composite, region, polygons, pixels: int = 2000, scale: float = 10.0, seed: int = 0,
                    indices: Sequence[str] = FEATURE_INDICES) -> ProbabilityModel:  # fmt: skip
    """Sample ``pixels`` pixels per class over ``region`` (:func:`sample_pixels`), fit a logistic model on that pixel
    table, and return it as a probability image over ``composite``."""

    table = sample_pixels(ee, composite, region, polygons, pixels, scale, seed, indices)
    features = add_indices(ee.Image(composite), list(indices))
    return fit_logistic(features, table, feature_names(ee, composite, indices))


def composite_bands(composite_spec=None, seasons: Sequence[CompositeSpec] = ()) -> list[str]:
    """The exported composite's bands: the spec's reflectance bands, then ``GREENEST_NDVI_BAND`` with ``seasons``."""
    return list((composite_spec or CompositeSpec()).bands) + ([GREENEST_NDVI_BAND] if seasons else [])


def export_composite(ee, epsg: int, bounds: Sequence[float], composite_spec=None, destination: str = "gs://gee-mining-pyramid/composite",
                     name: str = "composite", download_to=None, progress=None,
                     seasons: Sequence[CompositeSpec] = ()):  # fmt: skip
    """Export the composite of a rectangle (``bounds`` = xmin, ymin, xmax, ymax in ``EPSG:epsg``, multiples of
    10 m) on its 10 m lattice as one cloud-optimized GeoTIFF (``Export.image.toCloudStorage``), so that screening
    and the fine-level detector read it as an image asset instead of recomputing the median of every scene at each
    level (on Earth Engine, ``Export.image.toAsset`` does the same). ``seasons``: periods besides the composite's
    own; the export then also holds ``GREENEST_NDVI_BAND``, the greenest NDVI over the composite's period and these
    (``steps.sentinel2.greenest_ndvi``: the seasonal cue). Returns the local copy's path."""

    bucket, key = gs_key(destination, name, "composite destination")  # before any work
    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    width, height = round((xmax - xmin) / 10), round((ymax - ymin) / 10)
    if width <= 0 or height <= 0 or abs(width * 10 - (xmax - xmin)) > 1e-6 or abs(height * 10 - (ymax - ymin)) > 1e-6:
        raise InputError(f"bounds {tuple(bounds)}: give xmin < xmax, ymin < ymax, on multiples of 10 m.")
    region = ee.Geometry.Rectangle([xmin, ymin, xmax, ymax], f"EPSG:{epsg}", False)
    image = composite(region, composite_spec)
    if seasons:
        image = image.addBands(greenest_ndvi(region, [composite_spec or CompositeSpec(), *seasons]))
    task = ee.batch.Export.image.toCloudStorage(
        image, description=f"pyramid_{name}", bucket=bucket, fileNamePrefix=key,
        crs=f"EPSG:{epsg}", crsTransform=[10, 0, xmin, 0, -10, ymax], dimensions=f"{width}x{height}",
        maxPixels=int(1e10), fileFormat="GeoTIFF", formatOptions={"cloudOptimized": True},
    )  # fmt: skip
    (status,) = run_tasks([task], progress=progress)
    if not succeeded(status):
        raise RuntimeError(f"the composite export failed: {status.get('error_message', status)}")
    target = Path(download_to or ".") / f"{name}.tif"
    target.parent.mkdir(parents=True, exist_ok=True)
    open_bucket(bucket).download(f"{key}.tif", target)
    _band_interleaved(target)
    return target


def _band_interleaved(path) -> None:
    """Rewrite a multi-band GeoTIFF band-interleaved and uncompressed, in place (same pixels, georeference and
    band names): reading one band of a window then decodes that band only, not all of them."""

    tmp = path.with_name(f".partial-{path.name}")
    with rasterio.open(path) as src:
        profile = {**src.profile, "interleave": "band", "tiled": True, "blockxsize": 256, "blockysize": 256,
                   "compress": None}  # fmt: skip
        with rasterio.open(tmp, "w", **profile) as dst:
            for i in range(1, src.count + 1):
                dst.write(src.read(i), i)
            dst.descriptions = src.descriptions
    os.replace(tmp, path)


def composite_entry(path, asset_id: str, composite_spec=None, seasons: Sequence[CompositeSpec] = ()) -> CatalogEntry:
    """A catalog ``[[image]]`` entry serving an exported composite GeoTIFF (of ``seasons`` too) under ``asset_id``."""

    bands = composite_bands(composite_spec, seasons)
    return CatalogEntry("image", {"id": asset_id, "path": Path(path).resolve(), "band_names": bands})

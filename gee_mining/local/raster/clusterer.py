"""Unsupervised classifiers: the ``Clusterer`` value, ``Clusterer.*``, ``Image.cluster`` and
``FeatureCollection.cluster``, with scikit-learn underneath.

Earth Engine runs Weka's clusterers; this engine runs scikit-learn's k-means:

- ``wekaKMeans``: Weka's SimpleKMeans measures Euclidean distance on inputs scaled to [0, 1]
  by their training minimum and maximum (Weka's ``EuclideanDistance`` normalises by default);
  so does this engine, then runs one k-means (``n_init=1``) with random (``init=0``) or
  k-means++ (``init=1``) seeds from ``seed``, at most ``maxIterations`` (default 500, Weka's)
  iterations. Canopy (2) and farthest-first (3) seeding, ``canopies`` and the Manhattan
  distance are refused with an error naming the argument. Cluster numbers are 0..k-1 in the
  order k-means found them, as in Weka; they carry no meaning until matched to labels.
- ``wekaXMeans``: k-means for every k in ``minClusters``..``maxClusters``, keeping the k with
  the best Bayesian information criterion (Pelleg and Moore's spherical-Gaussian BIC), a
  global search where Weka's X-means splits centres recursively; same scaling as above.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.raster.classifier import _subsample, per_pixel, table
from gee_mining.local.raster.image import Image, as_image, derive
from gee_mining.local.raster.pixeltype import PixelType


@dataclass(frozen=True)
class Clusterer:
    """An Earth Engine clusterer: constructor, and once trained the inputs, the scaling and the model."""

    kind: str
    args: dict[str, Any]
    schema: tuple[str, ...] | None = None
    model: Any = field(default=None, repr=False, compare=False)
    lo: Any = field(default=None, repr=False, compare=False)
    span: Any = field(default=None, repr=False, compare=False)

    ee_type = "Clusterer"

    def to_info(self) -> dict:
        return {"type": self.kind, "trained": self.model is not None, "schema": list(self.schema or [])}

    def assign(self, name: str, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise EngineError(f"{name}: the clusterer ({self.kind}) is not trained; call Clusterer.train first.")
        if not len(x):
            return np.zeros(0)
        return self.model.predict((x - self.lo) / self.span).astype(np.float64)


def as_clusterer(name: str, value: Any) -> Clusterer:
    if not isinstance(value, Clusterer):
        raise EngineError(f"{name}: expected a Clusterer, got {getattr(value, 'ee_type', type(value).__name__)}.")
    return value


def _refuse(kind: str, argument: str, value: Any, why: str) -> EngineError:
    return EngineError(f"{kind}: {argument}={value!r} is not supported by the gee-mining local engine: {why}.")


def _check_distance(kind: str, value: Any) -> None:
    if str(value) != "Euclidean":
        raise _refuse(kind, "distanceFunction", value, "only Euclidean")


@algorithm("Clusterer.wekaKMeans")
def weka_kmeans(nClusters, init, canopies, maxCandidates, periodicPruning, minDensity, t1, t2, distanceFunction,  # noqa: N803
                maxIterations, preserveOrder, fast, seed):  # fmt: skip
    kind = "Clusterer.wekaKMeans"
    if int(nClusters) < 1:
        raise _refuse(kind, "nClusters", nClusters, "give at least 1")
    if int(init) not in (0, 1):
        raise _refuse(kind, "init", init, "use 0 (random) or 1 (k-means++)")
    if canopies:
        raise _refuse(kind, "canopies", canopies, "canopy clustering is not implemented")
    _check_distance(kind, distanceFunction)
    return Clusterer(kind, {"nClusters": int(nClusters), "init": int(init), "maxIterations": maxIterations,
                            "seed": int(seed or 0)})  # fmt: skip


@algorithm("Clusterer.wekaXMeans")
def weka_xmeans(minClusters, maxClusters, maxIterations, maxKMeans, maxForChildren, useKD, cutoffFactor,  # noqa: N803
                distanceFunction, seed):  # fmt: skip
    kind = "Clusterer.wekaXMeans"
    if not 1 <= int(minClusters) <= int(maxClusters):
        raise _refuse(kind, "minClusters", minClusters, f"give 1 <= minClusters <= maxClusters ({maxClusters})")
    _check_distance(kind, distanceFunction)
    return Clusterer(kind, {"minClusters": int(minClusters), "maxClusters": int(maxClusters),
                            "maxKMeans": int(maxKMeans), "seed": int(seed or 0)})  # fmt: skip


def _kmeans(k: int, x: np.ndarray, init: str, max_iter: int, seed: int):
    return KMeans(n_clusters=k, init=init, n_init=1, max_iter=max_iter, random_state=seed).fit(x)


def _bic(km: Any, x: np.ndarray) -> float:
    """Pelleg and Moore's BIC of a k-means fit (identical spherical Gaussians)."""
    n, d = x.shape
    k = km.n_clusters
    sizes = np.bincount(km.labels_, minlength=k).astype(np.float64)
    if n <= k:
        return -np.inf
    var = float(km.inertia_) / (d * (n - k))
    if var <= 0:
        return np.inf
    ll = np.sum(
        sizes[sizes > 0] * np.log(sizes[sizes > 0])
        - sizes[sizes > 0] * np.log(n)
        - sizes[sizes > 0] * d / 2 * np.log(2 * np.pi * var)
        - (sizes[sizes > 0] - 1) * d / 2
    )
    params = (k - 1) + k * d + 1
    return float(ll - params / 2 * np.log(n))


@algorithm("Clusterer.train")
def train(clusterer, features, inputProperties, subsampling, subsamplingSeed):  # noqa: N803
    name = "Clusterer.train"
    c = as_clusterer(name, clusterer)
    columns, x, _ = table(name, features, inputProperties)
    if not 0 < float(subsampling) <= 1:
        raise EngineError(f"{name}: 'subsampling' must be in (0, 1].")
    x = x[_subsample(len(x), float(subsampling), int(subsamplingSeed or 0))]
    if not len(x):
        raise EngineError(f"{name}: no feature has every input property ({columns}).")
    lo = x.min(axis=0)
    span = x.max(axis=0) - lo
    span[span == 0] = 1.0
    xs = (x - lo) / span
    a = c.args
    if c.kind == "Clusterer.wekaKMeans":
        k = a["nClusters"]
        if len(xs) < k:
            raise EngineError(f"{name}: {len(xs)} training rows are fewer than nClusters ({k}).")
        model = _kmeans(k, xs, "random" if a["init"] == 0 else "k-means++", int(a["maxIterations"] or 500), a["seed"])
    else:
        fits = [
            _kmeans(k, xs, "k-means++", int(a["maxKMeans"]), a["seed"])
            for k in range(a["minClusters"], min(a["maxClusters"], len(xs)) + 1)
        ]
        model = max(fits, key=lambda km: _bic(km, xs))
    return replace(c, schema=tuple(columns), model=model, lo=lo, span=span)


@algorithm("Clusterer.schema")
def schema(clusterer):
    c = as_clusterer("Clusterer.schema", clusterer)
    if c.schema is None:
        raise EngineError("Clusterer.schema: the clusterer is not trained.")
    return list(c.schema)


@algorithm("Image.cluster")
def image_cluster(image, clusterer, outputName):  # noqa: N803
    name = "Image.cluster"
    img = as_image(name, image)
    c = as_clusterer(name, clusterer)
    if c.model is None:
        raise EngineError(f"{name}: the clusterer ({c.kind}) is not trained; call Clusterer.train first.")
    missing = [s for s in c.schema if s not in img.band_names]
    if missing:
        raise EngineError(f"{name}: the image lacks the band(s) {missing} the clusterer was trained on.")

    fn = per_pixel(lambda x: c.assign(name, x))

    k = int(c.model.n_clusters)
    return Image([derive(str(outputName), [img.band(s) for s in c.schema], fn, PixelType.int_range(0, k - 1))])


@algorithm("FeatureCollection.cluster")
def collection_cluster(features, clusterer, outputName):  # noqa: N803
    name = "FeatureCollection.cluster"
    c = as_clusterer(name, clusterer)
    if c.model is None:
        raise EngineError(f"{name}: the clusterer ({c.kind}) is not trained; call Clusterer.train first.")
    _, x, keep = table(name, features, list(c.schema))
    values: list[Any] = [None] * len(features.features)
    for i, v in zip(keep, c.assign(name, x), strict=True):
        values[i] = int(v)
    return features.with_features(
        [
            f.copy_with(properties={**f.properties, str(outputName): v})
            for f, v in zip(features.features, values, strict=True)
        ]
    )

"""Server-side pixel classification: samples, Earth Engine classifiers and clusterers, accuracy on
held-out cells, probability maps.

Every step is an ``ee`` graph (Earth Engine, the local engine and the Code Editor run the same):

1. ``cell_features(row, polygons, spec)``: the model's features (bands, ``ND_a_b``, spectral indices)
   and the ``_mine`` class band, selected from the cell's image (``steps.cell_image``) on the cell's
   10 m lattice.
2. ``training_samples(rows, ...)``: per cell, ``stratifiedSample`` on ``_mine`` (raster labels) or
   points drawn inside the mine polygons and anywhere in negative cells (point labels), each sample
   tagged with its ``cell``. ``split_cells`` divides cells (a positive with its paired negative)
   into training and held-out cells, so no held-out pixel shares a cell with a training pixel.
3. ``train(samples, spec)``: ``ee.Classifier.<name>(**params).train(samples, '_mine', features)``.
   A run exports each sample set once to a table asset (``exported_samples``: ``Export.table.toAsset``,
   batch) and trains on the asset, so no interactive answer grows with the number of samples.
   ``exported_classifier`` trains once more than that: ``Export.classifier.toAsset`` (one batch task) saves
   the trained classifier, and every cell's export reads it with ``ee.Classifier.load`` instead of
   training again (random forests and CART: the classifiers Earth Engine saves).
4. ``accuracy(classifier, test_samples)``: ``classify`` + ``errorMatrix`` on held-out cells, the
   ConfusionMatrix figures fetched in one request of a fixed size.
5. ``probability_image(row, classifier, spec)`` / ``export_probability``: the classifier in
   PROBABILITY mode over a cell, exported as a GeoTIFF on the cell's lattice.

Clusterers (``wekaKMeans``, ``wekaXMeans``) are trained on the same samples without labels;
``match_clusters`` maps each cluster to the label most of its training samples carry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import ee
import numpy as np

from gee_mining.batch.exports import ExportSpec, export_task, task_description
from gee_mining.batch.tasks import run_tasks, succeeded
from gee_mining.contracts.bands import MINE_BAND
from gee_mining.contracts.features import check_feature, derived_features
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.contracts.schemas import check_rows
from gee_mining.errors import GeeMiningError, InputError
from gee_mining.steps.cell_image import ImagerySpec, cell_image
from gee_mining.steps.sentinel2 import CompositeSpec

DEFAULT_FEATURES = ("B2", "B3", "B4", "B8", "B11", "B12", "NDVI", "NBR2", "ND_B11_B8", "ND_B12_B4")
CLASSIFIERS = ("smileRandomForest", "smileCart", "smileGradientTreeBoost", "libsvm", "minimumDistance",
               "smileNaiveBayes")  # fmt: skip
CLUSTERERS = ("wekaKMeans", "wekaXMeans")
SAMPLING = ("stratified", "points")
SAVED_CLASSIFIERS = ("smileRandomForest", "smileCart")
"""The classifiers of ``CLASSIFIERS`` that ``Export.classifier.toAsset`` saves (its reference: random
forests, CART and given decision trees); the others are trained again wherever they are used."""


@dataclass(frozen=True)
class ClassifySpec:
    """What to sample and which Earth Engine classifier to train.

    ``classifier`` is an ``ee.Classifier`` constructor name (``smileRandomForest``...) and ``params`` its
    arguments; ``sampling`` is ``stratified`` (``stratifiedSample`` on ``_mine``) or ``points`` (points in
    the mine polygons and in negative cells); ``points_per_class`` per cell and class; ``test_fraction``
    of the cells (positive-negative pairs kept together) is held out.
    """

    features: tuple[str, ...] = DEFAULT_FEATURES
    classifier: str = "smileRandomForest"
    params: dict[str, Any] = field(default_factory=lambda: {"numberOfTrees": 50})
    sampling: str = "stratified"
    points_per_class: int = 200
    test_fraction: float = 0.3
    seed: int = 0
    composite: CompositeSpec = field(default_factory=CompositeSpec)

    def __post_init__(self) -> None:
        if isinstance(self.features, str):
            raise InputError(f"features={self.features!r}: give a list of feature names, e.g. ['B4', 'NDVI'].")
        object.__setattr__(self, "features", tuple(self.features))
        if not self.features or len(set(self.features)) != len(self.features):
            raise InputError(f"features: give distinct feature names, got {list(self.features)}.")
        for f in self.features:
            check_feature(f)
        if self.classifier not in CLASSIFIERS:
            raise InputError(f"classifier={self.classifier!r}: use one of {', '.join(CLASSIFIERS)}.")
        if self.sampling not in SAMPLING:
            raise InputError(f"sampling={self.sampling!r}: use one of {', '.join(SAMPLING)}.")
        if int(self.points_per_class) < 1:
            raise InputError(f"points_per_class={self.points_per_class}: give at least 1.")
        if not 0 < float(self.test_fraction) < 1:
            raise InputError(f"test_fraction={self.test_fraction}: give a fraction strictly between 0 and 1.")


@dataclass(frozen=True)
class Accuracy:
    """A ConfusionMatrix's figures (rows actual, columns predicted, classes in ``order``)."""

    matrix: list[list[int]]
    order: list[int]
    accuracy: float
    kappa: float
    producers: list[float]  # recall per class
    consumers: list[float]  # precision per class
    fscore: list[float]
    samples: int

    def as_dict(self) -> dict[str, Any]:

        return asdict(self)


# -- cells and samples ---------------------------------------------------------------------------------------------


def split_cells(
    rows: Sequence[dict[str, Any]], test_fraction: float = 0.3, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Training and held-out cells. A positive and its paired negative (``pair``) stay together;
    at least one unit goes to each side when there are two or more."""

    rows = check_rows(rows, "split_cells")
    by_name = {r["name"]: r for r in rows}
    units: list[list[dict]] = []
    seen: set[str] = set()
    for r in sorted(rows, key=lambda r: r["name"]):
        if r["name"] in seen:
            continue
        unit = [r]
        seen.add(r["name"])
        partner = r.get("pair")
        if partner in by_name and partner not in seen:
            unit.append(by_name[partner])
            seen.add(partner)
        units.append(unit)
    if len(units) < 2:
        raise InputError(f"split_cells: {len(rows)} cell(s) form one unit; hold-out needs at least two units.")
    order = np.random.default_rng(seed).permutation(len(units))
    n_test = min(len(units) - 1, max(1, int(round(test_fraction * len(units)))))
    test = [r for i in order[:n_test] for r in units[i]]
    train = [r for i in order[n_test:] for r in units[i]]
    return train, test


def cell_region(row: dict[str, Any]):
    """The cell's square as an ``ee.Geometry`` in its UTM projection."""

    grid = pixel_grid(row)
    return ee.Geometry.Rectangle(list(grid.bounds), grid.crs, False)


def cell_features(row: dict[str, Any], polygons: Any, spec: ClassifySpec, labels: bool = True):
    """The cell's features (float32, in ``spec.features`` order) and, with ``labels``, the ``_mine`` band
    (uint8), masked where the composite has no clear observation, on the cell's 10 m lattice: the bands
    of the cell's image (``steps.cell_image``) that the classifier reads."""

    if labels and polygons is None:
        raise InputError("cell_features needs the mine polygons (a table asset id) for the _mine labels.")
    imagery = ImagerySpec(composite=spec.composite, indices=tuple(derived_features(spec.features)), labels=labels)
    image = cell_image(row, polygons, imagery)
    features = image.select(list(spec.features))
    return features.addBands(image.select(MINE_BAND).toByte()) if labels else features


def training_samples(rows: Sequence[dict[str, Any]], polygons: Any, spec: ClassifySpec):
    """Labelled pixels of ``rows`` as one ``ee.FeatureCollection`` (features, ``_mine``, ``cell``)."""

    fc_polys = polygons if isinstance(polygons, ee.FeatureCollection) else ee.FeatureCollection(polygons)
    parts = []
    for i, row in enumerate(rows):
        image = cell_features(row, fc_polys, spec)
        region = cell_region(row)
        proj = ee.Projection(pixel_grid(row).crs, list(pixel_grid(row).transform))
        seed = spec.seed * 7919 + i
        if spec.sampling == "stratified":
            s = image.stratifiedSample(numPoints=int(spec.points_per_class), classBand=MINE_BAND, region=region,
                                       projection=proj, seed=seed, geometries=False)  # fmt: skip
        else:
            inside = fc_polys.filterBounds(region).geometry(1).intersection(region, 1)
            pos = ee.FeatureCollection.randomPoints(inside, int(spec.points_per_class), seed)
            neg = ee.FeatureCollection.randomPoints(region, int(spec.points_per_class), seed + 1)
            pts = pos.merge(neg) if int(row.get("label", 0)) == 1 else neg
            s = image.sampleRegions(collection=pts, projection=proj, geometries=False)
        parts.append(s.map(lambda f, name=row["name"]: f.set("cell", name)))
    if not parts:
        raise InputError("training_samples: no cells given.")
    return ee.FeatureCollection(parts).flatten()


# -- supervised --------------------------------------------------------------------------------------------------


def make_classifier(spec: ClassifySpec):
    """The untrained ``ee.Classifier`` of ``spec`` (constructor name and arguments)."""

    return getattr(ee.Classifier, spec.classifier)(**spec.params)


def train(samples: Any, spec: ClassifySpec, mode: str = "CLASSIFICATION"):
    """``ee.Classifier.<name>(**params)`` in ``mode``, trained on the samples' features to predict ``_mine``."""
    return make_classifier(spec).setOutputMode(mode).train(samples, MINE_BAND, list(spec.features))


def accuracy(classifier: Any, samples: Any, order: Sequence[int] = (0, 1)) -> Accuracy:
    """ConfusionMatrix figures of ``classifier`` (CLASSIFICATION mode) on ``samples`` (held-out cells),
    computed by Earth Engine and fetched in one request."""
    classified = samples.classify(classifier.setOutputMode("CLASSIFICATION"), "predicted")
    return matrix_figures(classified.errorMatrix(MINE_BAND, "predicted", list(order)), samples.size())


def matrix_figures(cm: Any, size: Any = None) -> Accuracy:
    d = ee.Dictionary({"matrix": cm.array(), "order": cm.order(), "accuracy": cm.accuracy(), "kappa": cm.kappa(),
                       "producers": cm.producersAccuracy(), "consumers": cm.consumersAccuracy(),
                       "fscore": cm.fscore(), "samples": size if size is not None else 0}).getInfo()  # fmt: skip
    return Accuracy(
        matrix=[[int(v) for v in row] for row in d["matrix"]],
        order=[int(v) for v in d["order"]],
        accuracy=float(d["accuracy"]),
        kappa=float(d["kappa"]),
        producers=[float(r[0]) for r in d["producers"]],
        consumers=[float(v) for v in d["consumers"][0]],
        fscore=[float(v) for v in d["fscore"]],
        samples=int(d["samples"]),
    )


def probability_image(row: dict[str, Any], classifier: Any, spec: ClassifySpec):
    """The probability of a mine over one cell: ``classifier`` in PROBABILITY mode on the cell's features."""
    image = cell_features(row, None, spec, labels=False)
    return image.classify(classifier.setOutputMode("PROBABILITY"), "probability").toFloat()


def export_probability(row: dict[str, Any], image: Any, destination: str, description: str | None = None):
    """The (unstarted) export of a probability map on the cell's lattice: ``destination/<cell>.tif``."""

    return export_task(image, row, ExportSpec(destination), description or task_description(row["name"], "prob"))


# -- unsupervised ---------------------------------------------------------------------------------------------------


def train_clusterer(samples: Any, spec: ClassifySpec, name: str = "wekaKMeans", **params: Any):
    """``ee.Clusterer.<name>(**params)`` trained on the samples' features (labels unused)."""

    if name not in CLUSTERERS:
        raise InputError(f"clusterer {name!r}: use one of {', '.join(CLUSTERERS)}.")
    if name == "wekaKMeans":
        params.setdefault("nClusters", 2)
    return getattr(ee.Clusterer, name)(**params).train(samples, list(spec.features))


def match_clusters(clusterer: Any, samples: Any, max_clusters: int = 64) -> dict[int, int]:
    """Each cluster's label: the ``_mine`` value most of its samples carry (ties to 0), from the
    cluster-by-label counts Earth Engine computes (``errorMatrix`` of label vs cluster)."""
    counts = samples.cluster(clusterer, "cluster").errorMatrix(MINE_BAND, "cluster", list(range(max_clusters)))
    m = np.array(counts.array().getInfo())
    return {k: int(m[1, k] > m[0, k]) for k in range(m.shape[1]) if m[:, k].sum() > 0}


def clusters_to_labels(clustered: Any, mapping: dict[int, int], band: str = "cluster"):
    """An image (or collection) of cluster numbers mapped to labels: ``ee.Image`` with ``where``."""

    out = ee.Image.constant(0).toByte()
    for k, label in sorted(mapping.items()):
        if label:
            out = out.where(clustered.select(band).eq(k), 1)
    return out.updateMask(clustered.select(band).mask()).rename("mine")


def cluster_accuracy(clusterer: Any, mapping: dict[int, int], samples: Any) -> Accuracy:
    """Figures of the cluster-to-label mapping on ``samples`` (held-out cells)."""

    keys = sorted(mapping)
    labelled = samples.cluster(clusterer, "cluster").map(
        lambda f: f.set("predicted", ee.List([mapping[k] for k in keys]).get(ee.List(keys).indexOf(f.get("cluster"))))
    )
    return matrix_figures(labelled.errorMatrix(MINE_BAND, "predicted", [0, 1]), samples.size())


def fetch_samples(samples: Any):
    """The samples computed once and brought back as a constant ``ee.FeatureCollection``, so that later
    graphs do not recompute the composites. Interactive and growing with the input: Earth Engine aborts it
    above 5,000 features; for tests and demos of a few cells. A run uses :func:`exported_samples`."""

    return ee.FeatureCollection([ee.Feature(None, f["properties"]) for f in samples.getInfo()["features"]])


# -- samples as table assets (what a run of any size uses) ----------------------------------------------------


def samples_asset_id(prefix: str, rows: Sequence[dict[str, Any]], polygons: Any, spec: ClassifySpec, part: str) -> str:
    """The table asset of one part (``train``/``test``) of a sample set: ``PREFIX-<digest>-<part>``, the
    digest of what the samples depend on (the cells, the polygons, the features, sampling, seed and
    composite; not the classifier), so the same samples are exported once and reused on a rerun."""
    if not re.fullmatch(r"projects/[^/]+/assets/[A-Za-z0-9_/-]+", prefix):
        raise InputError(
            f"samples asset prefix {prefix!r}: give projects/PROJECT/assets/NAME (letters, digits, '-', '_')."
        )
    labels = polygons if isinstance(polygons, str) else polygons.serialize()
    key = json.dumps([spec.features, spec.sampling, spec.points_per_class, spec.seed, asdict(spec.composite),
                      sorted(r["name"] for r in rows), labels], sort_keys=True, default=str)  # fmt: skip
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:12]}-{part}"


def asset_exists(asset_id: str) -> bool:
    """Whether Earth Engine holds the asset (one ``getAsset`` request; "not found" is no)."""
    try:
        ee.data.getAsset(asset_id)
    except ee.EEException as exc:
        if re.search(r"not found|does not exist", str(exc), re.IGNORECASE):
            return False
        raise
    return True


def export_samples(samples: Any, asset_id: str, description: str | None = None):
    """The (unstarted) ``Export.table.toAsset`` of a sample collection."""
    return ee.batch.Export.table.toAsset(
        samples, description or f"samples-{asset_id.rsplit('/', 1)[-1]}"[:100], asset_id
    )


def exported_samples(graphs: dict[str, Any], progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Each sample graph (asset id -> ``ee.FeatureCollection``) as a table asset, exported in one batch
    of tasks where the asset does not exist yet: ``ee.FeatureCollection(asset_id)`` for each.

    The samples are computed once, by batch tasks; training and accuracy then read the assets, and no
    interactive request grows with the number of samples (``getInfo`` of a collection stops at 5,000)."""
    todo = {aid: g for aid, g in graphs.items() if not asset_exists(aid)}
    if progress:
        progress(f"[samples] {len(graphs) - len(todo)} sample table(s) exist, exporting {len(todo)}")
    if todo:
        statuses = run_tasks([export_samples(g, aid) for aid, g in todo.items()], progress=progress)
        failed = [f"{aid}: {st.get('error_message', st['state'])}" for aid, st in zip(todo, statuses, strict=True)
                  if not succeeded(st)]  # fmt: skip
        if failed:
            raise GeeMiningError("sample export failed: " + "; ".join(failed))
    return {aid: ee.FeatureCollection(aid) for aid in graphs}


def classifier_asset_id(samples_id: str, spec: ClassifySpec) -> str:
    """The classifier asset of ``spec`` trained on the sample asset ``samples_id``: ``<samples_id>-clf-<digest>``,
    the digest of the classifier and its arguments (the samples' own digest is in ``samples_id``)."""
    key = json.dumps([spec.classifier, spec.params, spec.features], sort_keys=True, default=str)
    return f"{samples_id}-clf-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def exported_classifier(samples: Any, spec: ClassifySpec, asset_id: str, progress: Callable[[str], None] | None = None):
    """The classifier of ``spec`` trained once on ``samples`` and saved as a classifier asset
    (``Export.classifier.toAsset``, one batch task, none when the asset exists), read back with
    ``ee.Classifier.load``: a graph that uses it (a cell's probability export) no longer trains.

    Only ``SAVED_CLASSIFIERS`` can be saved (Earth Engine's rule): others are refused here, by name."""
    if spec.classifier not in SAVED_CLASSIFIERS:
        raise InputError(f"classifier {spec.classifier!r} cannot be saved as an asset (Earth Engine saves "
                         f"{', '.join(SAVED_CLASSIFIERS)}); train it where it is used instead.")  # fmt: skip
    if asset_exists(asset_id):
        if progress:
            progress(f"[classifier] {asset_id} exists: loading it")
    else:
        if progress:
            progress(f"[classifier] training once: Export.classifier.toAsset -> {asset_id}")
        task = ee.batch.Export.classifier.toAsset(train(samples, spec), f"clf-{asset_id.rsplit('/', 1)[-1]}"[:100],
                                                  asset_id)  # fmt: skip
        status = run_tasks([task], progress=progress)[0]
        if not succeeded(status):
            raise GeeMiningError(
                f"classifier export failed: {asset_id}: {status.get('error_message', status['state'])}"
            )
    return ee.Classifier.load(asset_id)


def load_classifier(asset_id: str):
    """A saved classifier (``ee.Classifier.load``); a missing asset is an error naming it and the fix."""
    if not asset_exists(asset_id):
        raise InputError(f"classifier asset {asset_id!r} not found: export it first "
                         "(gee-mining classify deploy trains and saves it; Export.classifier.toAsset).")  # fmt: skip
    return ee.Classifier.load(asset_id)


def held_out_samples(
    train_rows: Sequence[dict[str, Any]],
    test_rows: Sequence[dict[str, Any]],
    polygons: Any,
    spec: ClassifySpec,
    prefix: str,
    progress: Callable[[str], None] | None = None,
) -> tuple[Any, Any]:
    """The training and held-out cells' samples as table assets under ``prefix`` (:func:`exported_samples`:
    two batch tasks the first time, none on a rerun): two ``ee.FeatureCollection``."""
    parts = {
        samples_asset_id(prefix, rows, polygons, spec, part): training_samples(rows, polygons, spec)
        for rows, part in ((train_rows, "train"), (test_rows, "test"))
    }
    tables = exported_samples(parts, progress=progress)
    train_id, test_id = parts
    return tables[train_id], tables[test_id]

"""Step 3 server-side in ``make demo``: on the imagery step's zoom-16 cells of the simulated world, an
Earth Engine random forest trained on some cells and measured on held-out cells, a logistic model
fitted offline on the same samples and compiled to an image expression, k-means clusters matched
to labels, and the probability maps of a held-out cell."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gee_mining.contracts.lattice import pixel_grid
from gee_mining.contracts.models import LinearModel
from gee_mining.io.pages import fetch_features
from gee_mining.ml.classify.model import compile_linear
from gee_mining.ml.classify.pipeline import (
    Accuracy,
    ClassifySpec,
    accuracy,
    cell_features,
    cluster_accuracy,
    held_out_samples,
    match_clusters,
    matrix_figures,
    probability_image,
    split_cells,
    train,
    train_clusterer,
)
from gee_mining.tools.report import Report


@dataclass
class _Models:
    """The demo's classifiers, trained on some cells and measured on the held-out ones."""

    spec: ClassifySpec
    train_rows: list[dict]
    test_rows: list[dict]
    forest: Any  # the trained ee.Classifier (random forest)
    lin: LinearModel  # the offline logistic, as a linear model compiled to image algebra
    rf: Accuracy
    lr: Accuracy
    kmeans: Accuracy
    mapping: Any  # k-means cluster -> label, by majority


def demo_step(ee, report, ctx) -> None:
    """Add the classification section (see the module's docstring)."""

    matplotlib.use("Agg")

    cells = (ctx.summary.get("imagery") or {}).get("cells_table")
    if ctx.world is None or not cells:
        return
    t0 = time.perf_counter()
    mines = ctx.world.asset_ids["mines"]
    models = _train_models(ee, ctx, cells, mines)
    ctx.timings["step 3: samples, random forest, logistic, k-means"] = time.perf_counter() - t0

    t = time.perf_counter()
    row = next((r for r in models.test_rows if r.get("label") == 1), models.test_rows[0])
    arr = _probability_maps(ee, row, mines, models)
    ctx.timings["step 3: probability maps of a held-out cell"] = time.perf_counter() - t

    _classify_section(report, models, cells, row, arr)
    rf, lr, kmeans = models.rf, models.lr, models.kmeans
    ctx.summary["classify"] = {
        "train_cells": [r["name"] for r in models.train_rows],
        "test_cells": [r["name"] for r in models.test_rows],
        "random_forest": rf.as_dict(),
        "logistic_compiled": lr.as_dict(),
        "kmeans_matched": kmeans.as_dict(),
        "cluster_labels": models.mapping,
    }
    ctx.progress(f"[demo] classify: held-out accuracy forest {rf.accuracy:.3f}, logistic {lr.accuracy:.3f}, "
                 f"k-means {kmeans.accuracy:.3f}")  # fmt: skip


def _train_models(ee, ctx, cells: list[dict], mines: str) -> _Models:
    """Split the cells, sample them, and train and measure the random forest, the compiled logistic and k-means."""
    spec = ClassifySpec(points_per_class=150, params={"numberOfTrees": 50})
    train_rows, test_rows = split_cells(cells, 0.3, seed=0)
    ctx.progress(f"[demo] classify: {len(train_rows)} training cells, {len(test_rows)} held-out cells")
    prefix = mines.split("/assets/")[0] + "/assets/gee-mining-demo-samples"  # the world's project
    train_fc, test_fc = held_out_samples(train_rows, test_rows, mines, spec, prefix, ctx.progress)  # as a run does
    forest = train(train_fc, spec)
    rf = accuracy(forest, test_fc)
    lin, lr = _logistic(ee, ctx, spec, train_fc, test_fc)
    km = train_clusterer(train_fc, spec, "wekaKMeans", nClusters=4, seed=1)
    mapping = match_clusters(km, train_fc)
    kmeans = cluster_accuracy(km, mapping, test_fc)
    return _Models(spec, train_rows, test_rows, forest, lin, rf, lr, kmeans, mapping)


def _logistic(ee, ctx, spec: ClassifySpec, train_fc, test_fc) -> tuple[LinearModel, Accuracy]:
    """A logistic regression fitted offline on the forest's training samples, written as a linear model,
    and its accuracy on the held-out samples (with the same formula the image expression uses)."""
    rows = fetch_features(train_fc)  # paged (computeFeatures): no answer over Earth Engine's limits
    x = np.array([[f["properties"][b] for b in spec.features] for f in rows])
    y = np.array([f["properties"]["_mine"] for f in rows])
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
    lin = LinearModel.from_sklearn(logistic, spec.features, source="demo: logistic on the forest's training samples")
    lin.write(ctx.out / "classify" / "logistic_model.json")
    lin_classified = test_fc.map(
        lambda f: f.set("predicted", ee.Number(_linear_score(ee, f, lin)).gt(0).toInt())
    )  # the same formula the image expression uses, on the held-out samples
    lr = matrix_figures(lin_classified.errorMatrix("_mine", "predicted", [0, 1]), test_fc.size())
    return lin, lr


def _probability_maps(ee, row: dict, mines: str, models: _Models) -> np.ndarray:
    """The forest's and the compiled logistic's mine probability, the label and the RGB bands of one cell,
    computed server-side (a structured array with one field per band)."""
    grid = pixel_grid(row)
    features = cell_features(row, mines, models.spec)
    maps = ee.Image.cat([
        probability_image(row, models.forest, models.spec).rename("forest"),
        compile_linear(models.lin, features, features_ready=True).select("probability").rename("logistic"),
        features.select("_mine").toFloat(),
        features.select(["B4", "B3", "B2"]),
    ])  # fmt: skip
    return ee.data.computePixels({"expression": maps, "fileFormat": "NUMPY_NDARRAY", "grid": grid.ee_grid()})


HELD_OUT = (
    "In-sample: the held-out cells are of the world the models were trained on, so these figures say how well they "
    "fit this world, not how they do on another. Measured on held-out worlds (`gee-mining evaluate classify`, "
    "SIMULATED, 175 mines in 6 worlds never used to train or choose a setting): smileRandomForest finds 173/175 "
    "mines (95 % interval 0.959-0.999) and smileCart 174/175 (0.969-1.000), flagging 169 and 203 km2 of every "
    "1000 km2 of mine-free land; docs/pyramid.md."
)


def _classify_section(report, models: _Models, cells: list[dict], row: dict, arr: np.ndarray) -> None:
    """The report's step 3 section: what ran, the accuracy table, confusion matrices and probability maps."""
    spec, rf, lr, kmeans = models.spec, models.rf, models.lr, models.kmeans
    s = report.section(
        "SIMULATED · in-sample · Step 3 server-side: Earth Engine classifiers, compiled models, accuracy"
    )
    Report.text(
        s,
        f"SIMULATED imagery. Stratified samples of _mine ({spec.points_per_class} pixels per class and cell) on the "
        f"features {', '.join(spec.features)} of {len(cells)} zoom-16 cells, split by cell: "
        f"{len(models.train_rows)} training cells, {len(models.test_rows)} held out "
        f"({', '.join(r['name'] for r in models.test_rows)}). "
        "ee.Classifier.smileRandomForest(50) was trained and evaluated with classify + errorMatrix on the engine; "
        "a logistic regression fitted offline with scikit-learn on the same training samples was compiled to an "
        "ee.Image expression; ee.Clusterer.wekaKMeans(4) clusters were matched to labels by majority.",
        "warn",
    )
    Report.text(s, HELD_OUT, "warn")
    Report.table(
        s,
        ["model", "held-out samples", "accuracy", "kappa", "recall (mine)", "precision (mine)", "F1 (mine)"],
        [(name, a.samples, f"{a.accuracy:.3f}", f"{a.kappa:.3f}", f"{a.producers[1]:.3f}", f"{a.consumers[1]:.3f}",
          f"{a.fscore[1]:.3f}") for name, a in (("random forest (Earth Engine)", rf), ("logistic, compiled", lr),
                                                 ("k-means (4) matched to labels", kmeans))],
        "SIMULATED: ConfusionMatrix figures on the held-out cells (producer's accuracy = recall, consumer's = "
        "precision).",
    )  # fmt: skip
    Report.figure(s, _confusion_figure(models),
                  "SIMULATED: confusion matrices on the held-out cells (rows actual, columns predicted).")  # fmt: skip
    Report.figure(s, _maps_figure(arr), f"SIMULATED: probability maps of held-out cell {row['name']}, computed "
                  "server-side (Image.classify in PROBABILITY mode; the compiled logistic as image algebra).")  # fmt: skip


def _confusion_figure(models: _Models):
    """The three models' confusion matrices side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True, layout="constrained")  # no label over a neighbour
    named = (("random forest", models.rf), ("logistic (compiled)", models.lr), ("k-means → labels", models.kmeans))
    for k, (ax, (name, a)) in enumerate(zip(axes, named, strict=True)):
        m = np.array(a.matrix)
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", color="black" if v < m.max() / 2 else "white")
        ax.set_xticks([0, 1], ["not mine", "mine"])
        ax.set_yticks([0, 1], ["not mine", "mine"])
        ax.set_xlabel("predicted")
        if k == 0:
            ax.set_ylabel("actual")
        ax.set_title(f"{name}: accuracy {a.accuracy:.2f}", fontsize=9)
    return fig


def _maps_figure(arr: np.ndarray):
    """The cell's composite, its label and the two models' probability maps."""
    rgb = np.stack([arr[b] for b in ("B4", "B3", "B2")], axis=-1).astype(float)
    rgb = np.clip(rgb / max(np.nanpercentile(rgb, 99), 1e-6), 0, 1)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.8))
    panels = [(rgb, "composite (B4, B3, B2)", None), (arr["_mine"], "_mine label", "Reds"),
              (arr["forest"], "random forest P(mine)", "magma"), (arr["logistic"], "compiled logistic P(mine)", "magma")]  # fmt: skip
    for ax, (img, title, cmap) in zip(axes, panels, strict=True):
        im = ax.imshow(img, cmap=cmap, vmin=None if cmap is None else 0, vmax=None if cmap is None else 1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        if cmap == "magma":
            fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def _linear_score(ee, feature, model):
    """The model's logit on one sample's properties, as an ``ee.Number`` expression."""
    score = ee.Number(model.intercept)
    for name, m, sc, c in zip(model.features, model.mean, model.scale, model.coef, strict=True):
        score = score.add(ee.Number(feature.get(name)).subtract(m).divide(sc).multiply(c))
    return score

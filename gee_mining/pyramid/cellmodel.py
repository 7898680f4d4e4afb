"""A learned fine-cell score: a classifier on a handful of per-cell aggregates, instead of the share of mine pixels.

Why: at the finest level (343.75 m) a pit of 0.005-0.025 km2 is 1-4 % of its cell, so its share of mine pixels
(0.02-0.07) sits below that of mine-free cells with natural bare soil or rock (10 % of them score above 0.5, issue
25). What tells them apart is the pit's surroundings at its own scale: how confident its pixels are, whether they
form an island, the water, tailings and roughness (``B11`` texture) under them, the greenest NDVI of the season.
A share cannot combine such cues; a cell-level classifier can.

GEE-first, per fine cell: ONE ``Image.reduceRegions`` (mean and max) of a multi-band image (:func:`feature_image`:
shares above several pixel thresholds, the probability, an island band, context bands and the same context bands
over the cell's mine pixels only), a ``map`` that divides the latter by the share of mine pixels, then
``FeatureCollection.classify`` with an ``ee.Classifier.smileRandomForest`` in PROBABILITY mode. The classifier is
trained (``Classifier.train``) on the train worlds' fine cells, each labelled by the mines it holds
(:func:`overlap_labels`). The calibration's scores of a train world come from a classifier trained on the other
train worlds (cross-fitted: :func:`cross_fitted_scores`), so the fine threshold is chosen on out-of-world scores
and needs no margin. Requests: one per page of cells, as the share; the trained classifier is a graph sent with
each page (its training table: a few thousand cells of 40 numbers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gee_mining.errors import InputError
from gee_mining.io.pages import iter_features
from gee_mining.steps.grid import ee_cell_geometry

PAGE_CELLS = 500  # at most, cells per interactive request, as the share's scoring
# At most, band pixels of the feature image that one page reduces: 500 cells of 64 x 64 pixels (343.75 m at 5.37 m)
# and 40 bands (17 context bands, the seasonal worlds' fine level); finer pixels or more bands make pages smaller.
PAGE_BAND_PIXELS = 500 * 64 * 64 * 40
LABEL = "mine_cell"
# Context bands (gee_mining.steps.context names) whose cell mean and mean over the cell's mine pixels the classifier
# reads; the greenest-NDVI ones exist only on a seasonal composite and are left out elsewhere.
CELL_CONTEXT = ("NDVI_max", "NDWI", "NDVI", "NBR", "NDBI", "B11", "B12", "B4", "B2", "water_60m", "water_150m",
                "bare_all_year_150m", "bare_all_year_20m", "NDVI_max_mean_150m", "B11_sd_150m", "B11_sd_20m",
                "NDBI_sd_60m")  # fmt: skip


@dataclass(frozen=True)
class CellModelSpec:
    """How the fine level's learned score is built and calibrated.

    ``thresholds``: the pixel probabilities whose shares are features; ``context``: context bands read (those the
    world's context image lacks are skipped); ``island_m``/``island_below``: a mine pixel is an island pixel when its
    square neighbourhood of that half-side holds less than that share of mine pixels; ``label_cut``: a cell is a
    positive when it holds at least this share of some mine's largest overlap with any cell (a mine's cells cut by a
    sliver are left out of training, not counted as mine-free); ``trees``/``min_leaf``: the random forest; ``keep``:
    the share of the train mines still alive at the fine level that its threshold keeps (on cross-fitted scores, with
    no margin)."""

    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)
    context: tuple[str, ...] = CELL_CONTEXT
    island_m: float = 150.0
    island_below: float = 0.3
    label_cut: float = 0.99
    trees: int = 300
    min_leaf: int = 3
    keep: float = 0.98

    def __post_init__(self) -> None:
        if not self.thresholds or not all(0 <= t < 1 for t in self.thresholds) or 0.5 not in self.thresholds:
            raise InputError(f"cell model thresholds {self.thresholds}: probabilities in [0, 1), 0.5 among them.")
        if not (0 < self.label_cut <= 1 and 0 < self.keep <= 1 and self.trees >= 1 and self.min_leaf >= 1):
            raise InputError(f"cell model {self}: label_cut and keep in (0, 1], trees and min_leaf at least 1.")
        if not (self.island_m > 0 and 0 < self.island_below <= 1):
            raise InputError(f"cell model island {self.island_m} m / {self.island_below}: metres > 0, share in (0, 1].")


@dataclass(frozen=True)
class CellModel:
    """A trained fine-cell classifier: its spec, the feature names it reads and the ``ee.Classifier`` (a graph)."""

    spec: CellModelSpec
    names: tuple[str, ...]
    classifier: Any
    cells: int = 0  # training cells
    positives: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"kind": "ee.Classifier.smileRandomForest (PROBABILITY) on per-cell aggregates", "features": list(
            self.names), "training_cells": self.cells, "positives": self.positives, "trees": self.spec.trees,
            "min_leaf": self.spec.min_leaf, "label_cut": self.spec.label_cut, "keep": self.spec.keep}  # fmt: skip


def context_bands(spec: CellModelSpec, available: Sequence[str]) -> list[str]:
    """The spec's context bands that the context image holds, in the spec's order."""
    return [b for b in spec.context if b in set(available)]


def feature_names(spec: CellModelSpec, context: Sequence[str]) -> list[str]:
    """The classifier's features, in order: shares above each threshold, mean and max probability, island share,
    then per context band its cell mean and its mean over the cell's mine pixels (``<band>_hit``)."""
    names = [_share(t) for t in spec.thresholds] + ["p_mean", "p_max", "island"]
    return names + [n for b in context for n in (b, f"{b}_hit")]


def _share(t: float) -> str:
    return f"share_{round(t * 100):02d}"


def feature_image(ee, probability, context_image, spec: CellModelSpec, context: Sequence[str]):
    """The multi-band image whose cell means (and, for ``p``, max) the features are made of, all server-side."""
    p = ee.Image(probability).select(0).rename("p")
    hit = p.gt(0.5)
    around = hit.reduceNeighborhood(ee.Reducer.mean(), ee.Kernel.square(spec.island_m, "meters"))
    bands = [p.gt(t).rename(_share(t)) for t in spec.thresholds] + [p, hit.And(around.lt(spec.island_below))
                                                                   .rename("island")]  # fmt: skip
    ctx = ee.Image(context_image).select(list(context))
    hx = ctx.multiply(hit).rename([f"{b}_hx" for b in context])
    return ee.Image.cat(bands).toFloat().addBands(ctx.toFloat()).addBands(hx.toFloat())


def feature_collection(ee, probability, context_image, rows: Sequence[dict[str, Any]], scale: float,
                       spec: CellModelSpec, context: Sequence[str], polygons=None, id_column: str = "id"):  # fmt: skip
    """Each cell of ``rows`` (one zone) with the features of :func:`feature_names`, ``pixels`` and, with ``polygons``,
    ``mines`` (ids it touches) and ``overlaps`` (m2 of each inside the cell): one ``reduceRegions``, one ``map``."""
    epsg = rows[0]["epsg"]
    fc = ee.FeatureCollection([ee.Feature(ee_cell_geometry(ee, r), {"name": r["name"]}) for r in rows])
    reducer = (
        ee.Reducer.mean().combine(ee.Reducer.max(), sharedInputs=True).combine(ee.Reducer.count(), sharedInputs=True)
    )
    image = feature_image(ee, probability, context_image, spec, context)
    reduced = image.reduceRegions(collection=fc, reducer=reducer, scale=scale, crs=f"EPSG:{epsg}")
    share = _share(0.5)
    proj = ee.Projection(f"EPSG:{epsg}")
    known = ee.FeatureCollection(polygons) if polygons is not None else None

    def features(cell):
        d = cell.toDictionary()
        hits = ee.Number(d.get(f"{share}_mean", 0)).max(1e-9)
        props = {t: d.get(f"{t}_mean", 0) for t in [_share(t) for t in spec.thresholds] + ["island"] + list(context)}
        props |= {f"{b}_hit": ee.Number(d.get(f"{b}_hx_mean", 0)).divide(hits) for b in context}
        props |= {"p_mean": d.get("p_mean", 0), "p_max": d.get("p_max", 0), "pixels": d.get("p_count", 0)}
        out = ee.Feature(cell.geometry(), props).set("name", cell.get("name"))
        if known is None:
            return out
        inside = known.filterBounds(cell.geometry()).map(
            lambda m: m.set("overlap", m.geometry().intersection(cell.geometry(), 1, proj).area(1, proj))
        )
        return out.set({"mines": inside.aggregate_array(id_column), "overlaps": inside.aggregate_array("overlap")})

    return reduced.map(features)


def cell_features(ee, probability, context_image, rows: Sequence[dict[str, Any]], scale: float, spec: CellModelSpec,
                  context: Sequence[str], polygons=None, id_column: str = "id") -> dict[str, dict[str, Any]]:  # fmt: skip
    """``{cell name: properties}`` of :func:`feature_collection`, one request per page of :func:`page_cells` cells
    of one zone (no request grows with the run)."""
    out: dict[str, dict[str, Any]] = {}

    def fetch(page):
        fc = feature_collection(ee, probability, context_image, page, scale, spec, context, polygons, id_column)
        return {f["properties"]["name"]: f["properties"] for f in iter_features(fc, page_size=len(page))}

    for page in _pages(rows, page_cells(rows[0]["cell_size"], scale, _image_bands(spec, context)) if rows else 1):
        out |= _halving(ee, fetch, page)
    missing = [r["name"] for r in rows if r["name"] not in out]
    if missing:
        raise InputError(f"the engine returned no cell features for {len(missing)} cell(s), e.g. {missing[0]}")
    return out


def page_cells(cell_size: float, scale: float, bands: int) -> int:
    """Cells per page: ``PAGE_CELLS``, fewer where the page's cells x pixels x bands of the feature image would pass
    ``PAGE_BAND_PIXELS`` (a finer scale, more context bands), at least one. Why: a page's work and memory follow its
    band pixels, not its cells; a fixed count of cells lets them grow with the scale and the bands."""
    per_cell = math.ceil(cell_size / scale - 1e-9) ** 2 * max(1, bands)
    return max(1, min(PAGE_CELLS, PAGE_BAND_PIXELS // per_cell))


def _image_bands(spec: CellModelSpec, context: Sequence[str]) -> int:
    """Bands of :func:`feature_image`: the shares, the probability, the island, each context band twice."""
    return len(spec.thresholds) + 2 + 2 * len(context)


def _pages(rows: Sequence[dict[str, Any]], size: int = PAGE_CELLS):
    """Pages of at most ``size`` rows of one zone each."""
    by_zone: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_zone.setdefault(r["epsg"], []).append(r)
    for zone_rows in by_zone.values():
        for i in range(0, len(zone_rows), size):
            yield zone_rows[i : i + size]


def _halving(ee, fetch, page: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``fetch(page)``; a page the engine refuses as "Computation timed out." (Earth Engine's 5-minute interactive
    bound) is fetched again as two halves, down to one cell (as the share's scoring does)."""
    try:
        return fetch(page)
    except ee.EEException as exc:
        if "Computation timed out" not in str(exc) or len(page) == 1:
            raise
        half = len(page) // 2
        return _halving(ee, fetch, page[:half]) | _halving(ee, fetch, page[half:])


def overlap_labels(rows: Sequence[dict[str, Any]], cut: float) -> list[int | None]:
    """Per row (``mines`` ids, ``overlaps`` m2): 1 when it holds at least ``cut`` of some mine's largest overlap with
    any of ``rows``, 0 when it touches no mine, None otherwise (a sliver of a mine: neither class). Why: the pyramid
    keeps a mine when one fine cell that holds it is kept, so the classifier learns each mine's main cells; a cell
    that only grazes a mine looks mine-free and would teach it noise."""
    best: dict[str, float] = {}
    for r in rows:
        for m, a in zip(r["mines"], r["overlaps"], strict=True):
            best[m] = max(best.get(m, 0.0), float(a))
    out: list[int | None] = []
    for r in rows:
        if not r["mines"]:
            out.append(0)
        else:
            main = any(
                best[m] > 0 and float(a) >= cut * best[m] for m, a in zip(r["mines"], r["overlaps"], strict=True)
            )
            out.append(1 if main else None)
    return out


def _table(ee, rows: Sequence[dict[str, Any]], names: Sequence[str], labels: Sequence[int] | None = None):
    feats = []
    for i, r in enumerate(rows):
        props = {n: float(r.get(n) or 0.0) for n in names} | {"name": r["name"]}
        if labels is not None:
            props[LABEL] = int(labels[i])
        feats.append(ee.Feature(None, props))
    return ee.FeatureCollection(feats)


def train(ee, rows: Sequence[dict[str, Any]], labels: Sequence[int | None], spec: CellModelSpec,
          names: Sequence[str]) -> CellModel:  # fmt: skip
    """The classifier trained on the labelled ``rows`` (rows whose label is None are left out)."""
    pairs = [(r, y) for r, y in zip(rows, labels, strict=True) if y is not None]
    positives = sum(y for _, y in pairs)
    if not positives or positives == len(pairs):
        raise InputError(
            f"cell model: {positives} mine cell(s) of {len(pairs)}: train on worlds with and without mines."
        )
    table = _table(ee, [r for r, _ in pairs], names, [y for _, y in pairs])
    forest = ee.Classifier.smileRandomForest(numberOfTrees=spec.trees, minLeafPopulation=spec.min_leaf, seed=0)
    classifier = forest.setOutputMode("PROBABILITY").train(table, LABEL, list(names))
    return CellModel(spec, tuple(names), classifier, len(pairs), positives)


def classify_rows(ee, model: CellModel, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``{cell name: probability}`` of rows whose features are known here (the calibration's cross-fitted scores)."""
    out: dict[str, float] = {}
    for i in range(0, len(rows), PAGE_CELLS):
        page = rows[i : i + PAGE_CELLS]
        fc = _table(ee, page, model.names).classify(model.classifier, "classification")
        out |= {f["properties"]["name"]: float(f["properties"]["classification"] or 0.0)
                for f in iter_features(fc, page_size=len(page))}  # fmt: skip
    return out


def cross_fitted_scores(ee, worlds: dict[str, Sequence[dict[str, Any]]], spec: CellModelSpec,
                        names: Sequence[str]) -> tuple[dict[str, dict[str, float]], CellModel]:  # fmt: skip
    """Per world, its cells' probabilities from a classifier trained on the OTHER worlds' cells (out of world, as
    a held-out world will be scored), and the classifier trained on all worlds (the one the run uses)."""
    if len(worlds) < 2:
        raise InputError(f"a cross-fitted cell model needs at least two train worlds (got {len(worlds)}).")
    labels = {w: overlap_labels(rows, spec.label_cut) for w, rows in worlds.items()}
    scores = {}
    for w, rows in worlds.items():
        others = [(r, y) for o in worlds if o != w for r, y in zip(worlds[o], labels[o], strict=True)]
        model = train(ee, [r for r, _ in others], [y for _, y in others], spec, names)
        scores[w] = classify_rows(ee, model, rows)
    every = [(r, y) for w in worlds for r, y in zip(worlds[w], labels[w], strict=True)]
    return scores, train(ee, [r for r, _ in every], [y for _, y in every], spec, names)


def score_rows(ee, model: CellModel, probability, context_image, rows: Sequence[dict[str, Any]], scale: float,
               polygons=None, id_column: str = "id") -> dict[str, dict[str, Any]]:  # fmt: skip
    """``{cell name: {"score", "pixels", "mines"}}``: the features server-side and the classifier's probability,
    one request per page (the run's fine level on a world no classifier saw)."""
    context = [n for n in model.names if not n.endswith("_hit")][len(model.spec.thresholds) + 3 :]
    out: dict[str, dict[str, Any]] = {}

    def fetch(page):
        fc = feature_collection(ee, probability, context_image, page, scale, model.spec, context, polygons, id_column)
        fc = fc.classify(model.classifier, "classification")
        return {f["properties"]["name"]: f["properties"] for f in iter_features(fc, page_size=len(page))}

    size = page_cells(rows[0]["cell_size"], scale, _image_bands(model.spec, context)) if rows else 1
    for page in _pages(rows, size):
        for p in _halving(ee, fetch, page).values():
            out[p["name"]] = {"score": float(p.get("classification") or 0.0), "pixels": int(p.get("pixels") or 0),
                              "mines": [str(m) for m in p.get("mines") or []]}  # fmt: skip
    return out

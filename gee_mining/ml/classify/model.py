"""Offline models compiled to Earth Engine: linear / logistic models as image expressions, scikit-learn
trees and forests as ``ee.Classifier.decisionTree`` / ``decisionTreeEnsemble``.

The formats are contracts (``gee_mining.contracts.models``): :class:`LinearModel`, the pixel study's JSON
hand-off, and the decision-tree text that ``forest_to_strings`` writes. Features are computed from a
composite by ``steps.indices.feature_image`` (bands, ``ND_a_b``, spectral indices, the grammar of
``contracts.features``) with the ``ee`` API, so the same graph runs on Earth Engine, on the local engine
and in the Code Editor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ee

from gee_mining.contracts.models import LinearModel, forest_to_strings
from gee_mining.steps.indices import feature_image


def compile_linear(model: LinearModel, image: Any, features_ready: bool = False) -> Any:
    """The model as an ``ee.Image`` with bands ``score``, ``probability`` and ``mine`` (0/1).

    ``image`` is a reflectance composite (or, with ``features_ready``, an image that already has the
    model's feature bands). ``probability`` is ``sigmoid(score)`` for a logistic model, the score
    clamped to [0, 1] for a LASSO on the binary target, and for a LASSO on the distance target
    (positive inside) ``sigmoid(score / 30 m)``, a monotone map from "30 m inside" (0.73) to
    "30 m outside" (0.27).
    """

    x = image.select(list(model.features)) if features_ready else feature_image(image, model.features)
    z = x.subtract(ee.Image.constant(list(model.mean))).divide(ee.Image.constant(list(model.scale)))
    terms = z.multiply(ee.Image.constant(list(model.coef)))
    score = terms.reduce(ee.Reducer.sum()).add(model.intercept).rename("score")
    if model.kind == "logistic":
        prob = _sigmoid(ee, score)
        mine = prob.gt(model.cutoff)
    elif model.target == "binary":
        prob = score.clamp(0, 1)
        mine = score.gt(model.cutoff)
    else:
        prob = _sigmoid(ee, score.divide(30.0))
        mine = score.gt(model.cutoff)
    return ee.Image.cat([score, prob.toFloat().rename("probability"), mine.toByte().rename("mine")])


def _sigmoid(ee: Any, z: Any) -> Any:
    return ee.Image.constant(1).divide(ee.Image.constant(1).add(z.multiply(-1).exp()))


def compile_forest(model: Any, features: Sequence[str]) -> Any:
    """A scikit-learn binary tree classifier or forest as an ``ee.Classifier`` in REGRESSION mode whose
    output is ``predict_proba(x)[:, 1]``: each tree's leaves hold the class-1 probability, and
    Earth Engine's ensemble in REGRESSION mode averages the trees, as scikit-learn's forest does.
    Classify with :func:`forest_image` (probability, and mine where probability > 0.5)."""

    strings = forest_to_strings(model, features, "probability")
    if len(strings) == 1:
        clf = ee.Classifier.decisionTree(strings[0])
    else:
        clf = ee.Classifier.decisionTreeEnsemble(strings)
    return clf.setOutputMode("REGRESSION")


def forest_image(model: Any, features: Sequence[str], image: Any, features_ready: bool = False) -> Any:
    """The forest applied to an image: bands ``probability`` and ``mine`` (probability > 0.5, which is
    scikit-learn's ``predict`` for two classes, ties going to class 0)."""

    x = image.select(list(features)) if features_ready else feature_image(image, features)
    prob = x.classify(compile_forest(model, features), "probability")
    return ee.Image.cat([prob.toFloat(), prob.gt(0.5).toByte().rename("mine")])

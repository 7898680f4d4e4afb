"""Offline models compiled to Earth Engine: linear / logistic models as image expressions, scikit-learn
trees and forests as ``ee.Classifier.decisionTree`` / ``decisionTreeEnsemble`` strings.

The hand-off with the pixel study is a JSON file (:class:`LinearModel`)::

    {"kind": "lasso" | "logistic", "features": ["B4", "ND_B8_B4", "NDVI", ...],
     "mean": [...], "scale": [...], "coef": [...], "intercept": float,
     "threshold": float | null, "target": "binary" | "distance", "source": str}

``coef`` applies to the standardised features ``(x - mean) / scale``; a logistic model's
probability is ``sigmoid(score)``. Feature names are Sentinel-2 bands (``B4``), pairwise
normalised differences ``ND_a_b = (a - b) / (a + b)`` and spyndex index names (``NDVI``), the
names ``gee_mining.steps.indices`` gives them. :func:`feature_image` computes them from a composite
with the ``ee`` API, so the same graph runs on Earth Engine, on the local engine and in the
Code Editor.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ee
import numpy as np

from gee_mining.errors import InputError
from gee_mining.steps.indices import BANDS, add_indices, index_formula

KINDS = ("lasso", "logistic")
TARGETS = ("binary", "distance")
_ND = re.compile(r"^ND_(B\d+A?)_(B\d+A?)$")


@dataclass(frozen=True)
class LinearModel:
    """A linear model on standardised features: ``score = intercept + sum(coef * (x - mean) / scale)``.

    ``kind="logistic"``: the probability of a mine is ``sigmoid(score)``. ``kind="lasso"``: the
    score is the prediction of ``target`` (``binary``: the ``_mine`` label, ``distance``: the pixel
    study's distance target, metres from the nearest mine edge with the sign flipped so that it is
    POSITIVE INSIDE a mine, then clipped or tanh-scaled, 0 at the edge; see
    ``gee_mining.ml.study.TargetSpec``). ``threshold`` turns the output into a class: mine where the
    probability (logistic) or the score (lasso) > threshold; None means 0.5 (binary) or 0 (distance).
    """

    kind: str
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float | None = None
    target: str = "binary"
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("features", "mean", "scale", "coef"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
                raise InputError(f"LinearModel.{name}: give a list, got {type(value).__name__}.")
            object.__setattr__(self, name, tuple(str(v) if name == "features" else float(v) for v in value))
        if self.kind not in KINDS:
            raise InputError(f"LinearModel.kind={self.kind!r}: use one of {', '.join(KINDS)}.")
        if self.target not in TARGETS:
            raise InputError(f"LinearModel.target={self.target!r}: use one of {', '.join(TARGETS)}.")
        if self.kind == "logistic" and self.target != "binary":
            raise InputError("LinearModel: a logistic model predicts the binary target; set target='binary'.")
        n = len(self.features)
        if not n or len(set(self.features)) != n:
            raise InputError(f"LinearModel.features: give distinct feature names, got {list(self.features)}.")
        for name in ("mean", "scale", "coef"):
            if len(getattr(self, name)) != n:
                raise InputError(f"LinearModel.{name} has {len(getattr(self, name))} values for {n} features.")
        bad = [f for f, s in zip(self.features, self.scale, strict=True) if not (math.isfinite(s) and s > 0)]
        if bad:
            raise InputError(f"LinearModel.scale must be positive and finite; it is not for {bad}.")
        if not all(math.isfinite(v) for v in self.mean + self.coef + (float(self.intercept),)):
            raise InputError("LinearModel: mean, coef and intercept must be finite numbers.")
        object.__setattr__(self, "intercept", float(self.intercept))
        if self.threshold is not None:
            object.__setattr__(self, "threshold", float(self.threshold))
        for f in self.features:
            check_feature(f)

    @property
    def cutoff(self) -> float:
        """The threshold in use (the default when ``threshold`` is None)."""
        if self.threshold is not None:
            return self.threshold
        return 0.0 if self.target == "distance" else 0.5

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("features", "mean", "scale", "coef"):
            d[k] = list(d[k])
        return d

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        keys = {"kind", "features", "mean", "scale", "coef", "intercept", "threshold", "target", "source"}
        unknown = sorted(set(data) - keys)
        missing = sorted({"kind", "features", "mean", "scale", "coef", "intercept"} - set(data))
        if unknown or missing:
            raise InputError(
                f"linear model JSON: {'unknown keys ' + str(unknown) if unknown else ''}"
                f"{'; ' if unknown and missing else ''}{'missing keys ' + str(missing) if missing else ''}; "
                f"the keys are {sorted(keys)}."
            )
        return cls(**data)

    @classmethod
    def read(cls, path: str | os.PathLike) -> LinearModel:
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: no such model file (a linear model JSON written by the pixel study).")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not JSON ({e}).") from None
        return cls.from_json(data)

    @classmethod
    def from_sklearn(
        cls,
        estimator: Any,
        features: Sequence[str],
        scaler: Any = None,
        *,
        threshold: float | None = None,
        target: str = "binary",
        source: str = "",
    ) -> LinearModel:
        """From a fitted scikit-learn linear model (``Lasso``, ``LassoCV``, ``LogisticRegression``...) or a
        ``Pipeline(StandardScaler, model)``; ``scaler`` is the ``StandardScaler`` fitted on the raw features
        (None: the model was fitted on raw features, mean 0 and scale 1)."""
        est = estimator
        if hasattr(est, "steps"):
            *pre, (_, est) = est.steps
            scalers = [s for _, s in pre if hasattr(s, "scale_")]
            if len(pre) != len(scalers) or len(scalers) > 1:
                raise InputError("from_sklearn: a pipeline may hold one StandardScaler and then the linear model.")
            scaler = scalers[0] if scalers else scaler
        if not hasattr(est, "coef_"):
            raise InputError(f"from_sklearn: {type(est).__name__} is not a fitted linear model (no coef_).")
        coef = np.asarray(est.coef_, dtype=np.float64)
        if coef.ndim == 2:
            if coef.shape[0] != 1:
                raise InputError("from_sklearn: only binary (one row of coef_) models compile to one score.")
            coef = coef[0]
        intercept = float(np.ravel(est.intercept_)[0]) if np.size(est.intercept_) else 0.0
        n = len(features)
        if len(coef) != n:
            raise InputError(f"from_sklearn: the model has {len(coef)} coefficients for {n} feature names.")
        mean = np.zeros(n) if scaler is None or scaler.mean_ is None else np.asarray(scaler.mean_, dtype=np.float64)
        scale = np.ones(n) if scaler is None or scaler.scale_ is None else np.asarray(scaler.scale_, dtype=np.float64)
        kind = "logistic" if hasattr(est, "predict_proba") else "lasso"
        return cls(kind, tuple(features), tuple(mean), tuple(scale), tuple(coef), intercept, threshold, target,
                   source or type(est).__name__)  # fmt: skip

    def score_numpy(self, x: np.ndarray) -> np.ndarray:
        """The score on rows of raw features (for tests and offline checks; Earth Engine uses :func:`compile_linear`)."""
        z = (np.asarray(x, dtype=np.float64) - np.array(self.mean)) / np.array(self.scale)
        return z @ np.array(self.coef) + self.intercept


def check_feature(name: str) -> None:
    """A feature name must be a band, ``ND_a_b`` of two bands, or a spectral index name."""

    if name in BANDS:
        return
    m = _ND.match(name)
    if m:
        bad = [b for b in m.groups() if b not in BANDS]
        if bad or m.group(1) == m.group(2):
            raise InputError(f"feature {name!r}: ND_a_b needs two distinct Sentinel-2 bands of {list(BANDS)}.")
        return
    try:
        index_formula(name)
    except InputError as e:
        raise InputError(f"feature {name!r} is not a Sentinel-2 band, ND_a_b or a spectral index: {e}") from None


def feature_image(image: Any, features: Sequence[str]) -> Any:
    """The named features of a Sentinel-2 reflectance image, as float32 bands in that order.

    Bands are taken as they are; ``ND_a_b`` is ``(a - b) / (a + b)`` (as ``indices.add_indices``
    computes it); other names are spyndex indices (``indices.add_indices``)."""

    features = list(features)
    for f in features:
        check_feature(f)
    named = [f for f in features if f not in BANDS and not _ND.match(f)]
    base = add_indices(image, named) if named else image
    bands = []
    for f in features:
        m = _ND.match(f)
        if m:
            a, b = (image.select(x).toFloat() for x in m.groups())
            bands.append(a.subtract(b).divide(a.add(b)).rename(f))
        else:
            bands.append(base.select(f).toFloat())
    return ee.Image.cat(bands)


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


# -- trees ---------------------------------------------------------------------------------------------------------


def _num(v: float) -> str:
    """A float written so that Earth Engine's parser gets back the same double (shortest round-trip repr)."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def tree_to_string(tree: Any, features: Sequence[str], value: str = "probability") -> str:
    """A fitted scikit-learn ``DecisionTreeClassifier`` / ``DecisionTreeRegressor`` as Earth Engine's
    decision-tree text (R's rpart print format: ``N) band<=threshold n deviance yval``, children of
    N numbered 2N and 2N+1, leaves marked ``*``).

    The left child is scikit-learn's ``x <= threshold`` and the right ``x > threshold``; thresholds are
    written exactly (Python's shortest round-trip repr). ``value``: what a leaf outputs:
    ``"probability"`` (of class 1, a binary classifier; use the classifier in REGRESSION mode),
    ``"class"`` (the majority class) or ``"mean"`` (a regressor).
    """
    t = tree.tree_
    features = list(features)
    if tree.n_features_in_ != len(features):
        raise InputError(f"tree_to_string: the tree has {tree.n_features_in_} inputs for {len(features)} names.")
    classes = getattr(tree, "classes_", None)
    if value in ("probability", "class") and classes is None:
        raise InputError(f"tree_to_string: value={value!r} needs a classifier; use value='mean' for a regressor.")
    if value == "probability" and not set(np.asarray(classes).tolist()) <= {0, 1}:
        raise InputError(f"tree_to_string: value='probability' needs classes 0 and 1, got {list(classes)}.")

    def yval(node: int) -> float:
        v = t.value[node][0]
        if value == "mean":
            return float(v[0])
        if value == "class":
            return float(classes[int(np.argmax(v))])
        p = v / v.sum()
        idx = list(np.asarray(classes).tolist())
        return float(p[idx.index(1)]) if 1 in idx else 0.0

    lines = [
        f"n= {int(t.n_node_samples[0])}",
        "",
        "node), split, n, deviance, yval",
        "      * denotes terminal node",
        "",
    ]
    stack = [(0, 1, 0, "root")]
    while stack:
        node, number, depth, split = stack.pop()
        left, right = int(t.children_left[node]), int(t.children_right[node])
        leaf = " *" if left == -1 else ""
        lines.append(f"{'  ' * depth}{number}) {split} {int(t.n_node_samples[node])} {t.impurity[node]:.6g} "
                     f"{_num(yval(node))}{leaf}")  # fmt: skip
        if left != -1:
            name, thr = features[int(t.feature[node])], _num(t.threshold[node])
            stack.append((right, 2 * number + 1, depth + 1, f"{name}>{thr}"))
            stack.append((left, 2 * number, depth + 1, f"{name}<={thr}"))
    return "\n".join(lines) + "\n"


def forest_to_strings(model: Any, features: Sequence[str], value: str = "probability") -> list[str]:
    """Each tree of a fitted scikit-learn tree or forest (``RandomForestClassifier``, ``ExtraTrees*``,
    ``RandomForestRegressor``) as a decision-tree string."""
    trees = [model] if hasattr(model, "tree_") else list(getattr(model, "estimators_", []))
    if not trees or not all(hasattr(t, "tree_") for t in trees):
        raise InputError(f"forest_to_strings: {type(model).__name__} is not a fitted scikit-learn tree or forest.")
    return [tree_to_string(t, features, value) for t in trees]


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

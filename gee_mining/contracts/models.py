"""The model formats every layer shares: the linear model's JSON, and scikit-learn trees as Earth Engine's tree text.

The linear model is the hand-off between the pixel study, the classifiers and the pyramid: a JSON file
(:class:`LinearModel`)::

    {"kind": "lasso" | "logistic", "features": ["B4", "ND_B8_B4", "NDVI", ...],
     "mean": [...], "scale": [...], "coef": [...], "intercept": float,
     "threshold": float | null, "target": "binary" | "distance", "source": str}

``coef`` applies to the standardised features ``(x - mean) / scale``; a logistic model's
probability is ``sigmoid(score)``. Feature names follow ``contracts.features`` (bands, ``ND_a_b``,
spectral index names). ``ml.classify.compile_linear`` turns it into an ``ee.Image``.

The tree text is ``ee.Classifier.decisionTree``'s (R's rpart print format): :func:`tree_to_string` writes
a fitted scikit-learn tree in it, for the classifiers (``ml.classify.compile_forest``) and for the local
engine (``Classifier.explain``). scikit-learn objects are duck-typed (``tree_``, ``coef_``, ``classes_``...):
nothing here imports scikit-learn.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gee_mining.contracts.features import check_feature
from gee_mining.errors import InputError

KINDS = ("lasso", "logistic")
TARGETS = ("binary", "distance")
TREE_VALUES = ("probability", "class", "mean", "rpart")


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


# -- trees ---------------------------------------------------------------------------------------------------------


def format_number(v: float) -> str:
    """A float written so that Earth Engine's parser gets back the same double (shortest round-trip repr)."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def tree_to_string(tree: Any, features: Sequence[str], value: str = "probability") -> str:
    """A fitted scikit-learn ``DecisionTreeClassifier`` / ``DecisionTreeRegressor`` as Earth Engine's
    decision-tree text (R's rpart print format: ``N) band<=threshold n deviance yval``, children of
    N numbered 2N and 2N+1, listed depth first, leaves marked ``*``).

    The left child is scikit-learn's ``x <= threshold`` and the right ``x > threshold``; thresholds are
    written exactly (Python's shortest round-trip repr). ``value``: what a leaf outputs:
    ``"probability"`` (of class 1, a binary classifier; use the classifier in REGRESSION mode),
    ``"class"`` (the majority class), ``"mean"`` (a regressor), or ``"rpart"`` (as rpart prints a
    node: a classifier's class followed by its class proportions, a regressor's mean; what the local
    engine's ``Classifier.explain`` writes).
    """
    t = tree.tree_
    features = list(features)
    if tree.n_features_in_ != len(features):
        raise InputError(f"tree_to_string: the tree has {tree.n_features_in_} inputs for {len(features)} names.")
    yval = _leaf_values(tree, value)
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
                     f"{yval(node)}{leaf}")  # fmt: skip
        if left != -1:
            name, thr = features[int(t.feature[node])], format_number(t.threshold[node])
            stack.append((right, 2 * number + 1, depth + 1, f"{name}>{thr}"))
            stack.append((left, 2 * number, depth + 1, f"{name}<={thr}"))
    return "\n".join(lines) + "\n"


def _leaf_values(tree: Any, value: str) -> Callable[[int], str]:
    """``node -> yval text`` for :func:`tree_to_string`'s ``value`` (checked against the tree's kind)."""
    if value not in TREE_VALUES:
        raise InputError(f"tree_to_string: value={value!r}: use one of {', '.join(TREE_VALUES)}.")
    t = tree.tree_
    classes = getattr(tree, "classes_", None)
    if value in ("probability", "class") and classes is None:
        raise InputError(f"tree_to_string: value={value!r} needs a classifier; use value='mean' for a regressor.")
    if value == "probability" and not set(np.asarray(classes).tolist()) <= {0, 1}:
        raise InputError(f"tree_to_string: value='probability' needs classes 0 and 1, got {list(classes)}.")

    def yval(node: int) -> str:
        v = t.value[node][0]
        if value == "mean" or (value == "rpart" and classes is None):
            return format_number(v[0])
        majority = format_number(np.asarray(classes)[int(np.argmax(v))])
        if value == "class":
            return majority
        p = v / v.sum()
        if value == "rpart":
            return majority + " (" + " ".join(f"{x:.4g}" for x in p) + ")"
        idx = list(np.asarray(classes).tolist())
        return format_number(p[idx.index(1)] if 1 in idx else 0.0)

    return yval


def forest_to_strings(model: Any, features: Sequence[str], value: str = "probability") -> list[str]:
    """Each tree of a fitted scikit-learn tree or forest (``RandomForestClassifier``, ``ExtraTrees*``,
    ``RandomForestRegressor``) as a decision-tree string."""
    trees = [model] if hasattr(model, "tree_") else list(getattr(model, "estimators_", []))
    if not trees or not all(hasattr(t, "tree_") for t in trees):
        raise InputError(f"forest_to_strings: {type(model).__name__} is not a fitted scikit-learn tree or forest.")
    return [tree_to_string(t, features, value) for t in trees]

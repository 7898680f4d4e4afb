"""Supervised classifiers: the ``Classifier`` value, ``Classifier.*``, ``Image.classify`` and
``FeatureCollection.classify``, with scikit-learn underneath.

A :class:`Classifier` is a value like a reducer: ``Classifier.smileRandomForest(...)`` makes an
untrained one, ``Classifier.train`` fits it to a feature collection (the class in
``classProperty``, inputs in ``inputProperties``), ``setOutputMode`` chooses what
``classify`` writes. Earth Engine runs Smile (and libsvm) models; this engine runs
scikit-learn's closest equivalents, so a model trained here is not the model Earth Engine
would train on the same samples (docs/classify.md lists the differences). What *is* the
same is the meaning of a given model: ``Classifier.decisionTree`` /
``decisionTreeEnsemble`` parse the text tree format (R's ``rpart`` print format, which
``explain()`` writes) and evaluate it exactly, so a tree compiled offline predicts here
what it predicts there.

Decisions where Earth Engine's documentation is silent or Smile differs:

- ``smileRandomForest``: each tree is a scikit-learn CART (Gini) fitted to a sample of
  ``bagFraction`` of the rows drawn without replacement (with replacement when 1, as Smile's
  ``subsample`` does), ``variablesPerSplit`` inputs per split (default floor(sqrt(p))),
  seeded by ``seed``; the forest votes (majority, ties to the smaller class value);
  PROBABILITY is the fraction of trees voting for class 1.
- ``decisionTreeEnsemble``: CLASSIFICATION is the majority vote of the trees (ties to the
  smaller value), REGRESSION the mean of the trees' leaf values, PROBABILITY the fraction of
  trees whose leaf says class 1.
- PROBABILITY is defined for two classes (0 and 1): the probability of class 1. More classes,
  MULTIPROBABILITY, RAW and RAW_REGRESSION need array-valued pixels, which this engine does not
  have: they are refused with an error naming the mode.
- Rows with a null input or class are left out of training; a class value that is not a whole
  number is refused (Earth Engine wants integer classes).
- ``explain()`` importances are scikit-learn's (impurity decrease normalised to sum 1), not
  Smile's unnormalised sums.
- Unsupported options (``libsvm`` ONE_CLASS and the Margin procedure, PROBABILITY for
  ``libsvm``, ``minimumDistance`` with ``kNearest`` > 1, categorical splits in tree strings)
  are refused with an error naming the algorithm and the argument.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn import ensemble, naive_bayes, svm, tree
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from gee_mining.contracts.models import tree_to_string
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.raster.image import Image, as_image, derive
from gee_mining.local.raster.pixeltype import PixelType
from gee_mining.local.values.confusion_matrix import ConfusionMatrix
from gee_mining.local.values.featurecollection import as_collection

MODES = ("CLASSIFICATION", "REGRESSION", "PROBABILITY", "MULTIPROBABILITY", "RAW", "RAW_REGRESSION")
_SUPPORTED_MODES = ("CLASSIFICATION", "REGRESSION", "PROBABILITY")


@dataclass(frozen=True)
class Classifier:
    """An Earth Engine classifier: its constructor (``kind``, ``args``), output mode and, once trained,
    the input names (``schema``), the class values and the fitted model."""

    kind: str
    args: dict[str, Any]
    mode: str = "CLASSIFICATION"
    schema: tuple[str, ...] | None = None
    model: Any = field(default=None, repr=False, compare=False)
    data: Any = field(default=None, repr=False, compare=False)  # (X, y) kept to refit on a change of mode

    ee_type = "Classifier"

    @property
    def trained(self) -> bool:
        return self.model is not None

    def to_info(self) -> dict:
        return {"type": self.kind, "mode": self.mode, "trained": self.trained, "schema": list(self.schema or [])}

    def predict(self, name: str, x: np.ndarray) -> np.ndarray:
        """The output of ``mode`` for each row of ``x`` (rows are pixels or features, columns the schema)."""
        if not self.trained:
            raise EngineError(f"{name}: the classifier ({self.kind}) is not trained; call Classifier.train first.")
        if self.mode not in _SUPPORTED_MODES:
            raise EngineError(
                f"{name}: output mode {self.mode} is not supported by the gee-mining local engine "
                "(it needs array-valued pixels); use CLASSIFICATION, REGRESSION or PROBABILITY."
            )
        if len(x) == 0:
            return np.zeros(0)
        return self.model.output(name, self.mode, x)


def as_classifier(name: str, value: Any) -> Classifier:
    if not isinstance(value, Classifier):
        raise EngineError(f"{name}: expected a Classifier, got {getattr(value, 'ee_type', type(value).__name__)}.")
    return value


def _refuse(kind: str, argument: str, value: Any, why: str = "") -> EngineError:
    return EngineError(
        f"{kind}: {argument}={value!r} is not supported by the gee-mining local engine{': ' + why if why else ''}."
    )


# -- models ---------------------------------------------------------------------------------------------------


class _Model:
    """A fitted model: ``output(name, mode, x)``; classes in ``classes`` (None for regression)."""

    classes: np.ndarray | None = None
    regression: bool = False

    def output(self, name: str, mode: str, x: np.ndarray) -> np.ndarray:
        if mode == "REGRESSION":
            if not self.regression:
                raise EngineError(f"{name}: REGRESSION needs a classifier trained in REGRESSION mode.")
            return self.regress(x)
        if self.regression:
            raise EngineError(f"{name}: a classifier trained for REGRESSION cannot output {mode}.")
        if mode == "PROBABILITY":
            _check_binary(name, self.classes)
            return self.probability(x)
        return self.classify(x)

    def classify(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def probability(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def regress(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def explain(self, schema: tuple[str, ...]) -> dict:
        return {}


def _check_binary(name: str, classes: np.ndarray | None) -> None:
    if classes is None or not set(np.asarray(classes).tolist()) <= {0, 1}:
        raise EngineError(
            f"{name}: PROBABILITY is supported for two classes, 0 and 1 (the probability of class 1); this "
            f"classifier has classes {None if classes is None else np.asarray(classes).tolist()}."
        )


class _Sklearn(_Model):
    """A scikit-learn estimator: ``predict``; ``predict_proba`` for PROBABILITY where it has one."""

    def __init__(self, est: Any, regression: bool, kind: str):
        self.est = est
        self.regression = regression
        self.kind = kind
        self.classes = None if regression else np.asarray(est.classes_)

    def classify(self, x):
        return np.asarray(self.est.predict(x), dtype=np.float64)

    def regress(self, x):
        return np.asarray(self.est.predict(x), dtype=np.float64)

    def probability(self, x):
        if not hasattr(self.est, "predict_proba"):
            raise _refuse(self.kind, "outputMode", "PROBABILITY")
        p = self.est.predict_proba(x)
        return p[:, list(self.est.classes_).index(1)] if 1 in self.est.classes_ else np.zeros(len(x))

    def explain(self, schema):
        out: dict[str, Any] = {}
        imp = getattr(self.est, "feature_importances_", None)
        if imp is not None:
            out["importance"] = {n: float(v) for n, v in zip(schema, imp, strict=True)}
        if hasattr(self.est, "tree_"):
            out["tree"] = tree_to_string(self.est, list(schema), "rpart")
        if hasattr(self.est, "estimators_") and not hasattr(self.est, "tree_"):
            out["numberOfTrees"] = int(np.size(self.est.estimators_))
        return out


class _Forest(_Model):
    """Smile's random forest as scikit-learn trees: per-tree row samples, majority vote."""

    def __init__(self, trees: list[Any], regression: bool, classes: np.ndarray | None, oob_error: float | None):
        self.trees = trees
        self.regression = regression
        self.classes = classes
        self.oob_error = oob_error

    def _votes(self, x):
        return np.stack([t.predict(x) for t in self.trees])

    def classify(self, x):
        return _majority(self._votes(x), self.classes)

    def probability(self, x):
        return (self._votes(x) == 1).mean(axis=0)

    def regress(self, x):
        return self._votes(x).mean(axis=0)

    def explain(self, schema):
        imp = np.mean([t.feature_importances_ for t in self.trees], axis=0)
        out = {
            "numberOfTrees": len(self.trees),
            "importance": {n: float(v) for n, v in zip(schema, imp, strict=True)},
            "trees": [tree_to_string(t, list(schema), "rpart") for t in self.trees],
        }
        if self.oob_error is not None:
            out["outOfBagErrorEstimate"] = self.oob_error
        return out


def _majority(votes: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """The most frequent value per column of ``votes`` (trees x rows); ties go to the smaller value."""
    values = np.unique(votes) if classes is None else np.asarray(classes, dtype=np.float64)
    counts = np.stack([(votes == v).sum(axis=0) for v in values])
    return values[np.argmax(counts, axis=0)].astype(np.float64)


class _MinimumDistance(_Model):
    """Nearest class mean by ``metric`` (euclidean, manhattan, cosine, mahalanobis with each class's covariance)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, metric: str, regression: bool):
        self.metric = metric
        self.regression = regression
        self.classes = np.unique(y)
        self.means = np.stack([x[y == c].mean(axis=0) for c in self.classes])
        if metric == "mahalanobis":
            self.inv = [np.linalg.pinv(np.atleast_2d(np.cov(x[y == c], rowvar=False))) for c in self.classes]

    def distances(self, x):
        if self.metric == "euclidean":
            return np.sqrt(((x[None, :, :] - self.means[:, None, :]) ** 2).sum(axis=2))
        if self.metric == "manhattan":
            return np.abs(x[None, :, :] - self.means[:, None, :]).sum(axis=2)
        if self.metric == "cosine":
            xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
            mn = self.means / np.maximum(np.linalg.norm(self.means, axis=1, keepdims=True), 1e-300)
            return np.arccos(np.clip(mn @ xn.T, -1.0, 1.0))
        d = []
        for mean, inv in zip(self.means, self.inv, strict=True):
            diff = x - mean
            d.append(np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, inv, diff), 0)))
        return np.stack(d)

    def output(self, name, mode, x):
        if mode == "REGRESSION":
            return self.distances(x).min(axis=0)
        return super().output(name, mode, x) if mode != "PROBABILITY" else self._no_probability()

    def _no_probability(self):
        raise _refuse("Classifier.minimumDistance", "outputMode", "PROBABILITY")

    def classify(self, x):
        return self.classes[np.argmin(self.distances(x), axis=0)].astype(np.float64)


def _fit(kind: str, args: dict[str, Any], x: np.ndarray, y: np.ndarray, regression: bool) -> _Model:
    a = args
    if kind == "Classifier.smileCart":
        cls = tree.DecisionTreeRegressor if regression else tree.DecisionTreeClassifier
        est = cls(max_leaf_nodes=_max_nodes(kind, a["maxNodes"]), min_samples_leaf=int(a["minLeafPopulation"]),
                  random_state=0)  # fmt: skip
        return _Sklearn(est.fit(x, y), regression, kind)
    if kind == "Classifier.smileRandomForest":
        return _fit_forest(a, x, y, regression)
    if kind == "Classifier.smileGradientTreeBoost":
        losses = {"LeastSquares": "squared_error", "LeastAbsoluteDeviation": "absolute_error", "Huber": "huber"}
        if a["loss"] not in losses:
            raise _refuse(kind, "loss", a["loss"], f"use one of {', '.join(losses)}")
        common = dict(n_estimators=int(a["numberOfTrees"]), learning_rate=float(a["shrinkage"]),
                      subsample=float(a["samplingRate"]), max_leaf_nodes=_max_nodes(kind, a["maxNodes"]),
                      max_depth=None, random_state=int(a["seed"] or 0))  # fmt: skip
        if regression:
            est = ensemble.GradientBoostingRegressor(loss=losses[a["loss"]], **common)
        else:
            est = ensemble.GradientBoostingClassifier(**common)  # Smile's classification loss is the log loss
        return _Sklearn(est.fit(x, y), regression, kind)
    if kind in ("Classifier.libsvm", "Classifier.svm"):
        return _fit_svm(kind, a, x, y, regression)
    if kind == "Classifier.minimumDistance":
        metric = str(a["metric"]).lower()
        if metric not in ("euclidean", "manhattan", "cosine", "mahalanobis"):
            raise _refuse(kind, "metric", a["metric"], "use euclidean, manhattan, cosine or mahalanobis")
        if int(a["kNearest"]) != 1:
            raise _refuse(kind, "kNearest", a["kNearest"], "only the nearest class mean (1)")
        return _MinimumDistance(x, y, metric, regression)
    if kind == "Classifier.smileNaiveBayes":
        if regression:
            raise _refuse(kind, "outputMode", "REGRESSION")
        if np.any(x < 0):
            raise EngineError(f"{kind}: inputs must be non-negative counts (Smile's multinomial naive Bayes).")
        return _Sklearn(naive_bayes.MultinomialNB(alpha=float(a["lambda"])).fit(x, y), False, kind)
    raise EngineError(f"{kind}: training this classifier is not implemented by the gee-mining local engine.")


def _max_nodes(kind: str, value: Any) -> int | None:
    if value is None:
        return None
    if int(value) < 2:
        raise _refuse(kind, "maxNodes", value, "a tree needs at least 2 leaf nodes")
    return int(value)


def _fit_forest(a: dict[str, Any], x: np.ndarray, y: np.ndarray, regression: bool) -> _Forest:
    kind = "Classifier.smileRandomForest"
    n_trees = int(a["numberOfTrees"])
    if n_trees < 1:
        raise _refuse(kind, "numberOfTrees", a["numberOfTrees"], "give at least 1")
    frac = float(a["bagFraction"])
    if not 0 < frac <= 1:
        raise _refuse(kind, "bagFraction", a["bagFraction"], "give a fraction in (0, 1]")
    p = x.shape[1]
    mtry = int(a["variablesPerSplit"]) if a["variablesPerSplit"] else max(1, int(math.floor(math.sqrt(p))))
    if regression and not a["variablesPerSplit"]:
        mtry = max(1, p // 3)  # Smile's regression forest default
    rng = np.random.default_rng(int(a["seed"] or 0))
    n = len(y)
    size = max(1, int(round(frac * n)))
    trees, oob_votes = [], [[] for _ in range(n)]
    for _ in range(n_trees):
        rows = rng.integers(0, n, n) if frac == 1 else rng.choice(n, size, replace=False)
        cls = DecisionTreeRegressor if regression else DecisionTreeClassifier
        est = cls(max_features=min(mtry, p), min_samples_leaf=int(a["minLeafPopulation"]),
                  max_leaf_nodes=_max_nodes(kind, a["maxNodes"]), random_state=int(rng.integers(2**31)))  # fmt: skip
        est.fit(x[rows], y[rows])
        trees.append(est)
        out = np.setdiff1d(np.arange(n), rows)
        if len(out) and not regression:
            for i, v in zip(out, est.predict(x[out]), strict=True):
                oob_votes[i].append(v)
    classes = None if regression else np.unique(y)
    oob_error = None
    if not regression:
        scored = [(i, v) for i, v in enumerate(oob_votes) if v]
        if scored:
            pred = [_majority(np.array(v)[:, None], classes)[0] for _, v in scored]
            oob_error = float(np.mean([p != y[i] for (i, _), p in zip(scored, pred, strict=True)]))
    return _Forest(trees, regression, classes, oob_error)


def _fit_svm(kind: str, a: dict[str, Any], x: np.ndarray, y: np.ndarray, regression: bool) -> _Model:
    kernels = {"LINEAR": "linear", "POLY": "poly", "RBF": "rbf", "SIGMOID": "sigmoid"}
    kernel = kernels.get(str(a["kernelType"]).upper())
    if kernel is None:
        raise _refuse(kind, "kernelType", a["kernelType"], f"use one of {', '.join(kernels)}")
    if str(a["decisionProcedure"]) != "Voting":
        raise _refuse(kind, "decisionProcedure", a["decisionProcedure"], "only Voting (libsvm's one-vs-one)")
    common: dict[str, Any] = {"kernel": kernel, "shrinking": bool(a["shrinking"])}
    if a["degree"] is not None:
        common["degree"] = int(a["degree"])
    common["gamma"] = float(a["gamma"]) if a["gamma"] is not None else 1.0 / x.shape[1]  # libsvm's default
    if a["coef0"] is not None:
        common["coef0"] = float(a["coef0"])
    if a["terminationEpsilon"] is not None:
        common["tol"] = float(a["terminationEpsilon"])
    svm_type = str(a["svmType"]).upper()
    cost = float(a["cost"]) if a["cost"] is not None else 1.0
    nu = float(a["nu"]) if a["nu"] is not None else 0.5
    if svm_type == "C_SVC" and not regression:
        est = svm.SVC(C=cost, **common)
    elif svm_type == "NU_SVC" and not regression:
        est = svm.NuSVC(nu=nu, **common)
    elif svm_type == "EPSILON_SVR" and regression:
        eps = float(a["lossEpsilon"]) if a["lossEpsilon"] is not None else 0.1
        est = svm.SVR(C=cost, epsilon=eps, **common)
    elif svm_type == "NU_SVR" and regression:
        est = svm.NuSVR(C=cost, nu=nu, **common)
    else:
        raise _refuse(kind, "svmType", a["svmType"],
                      "use C_SVC or NU_SVC to classify, EPSILON_SVR or NU_SVR with REGRESSION mode")  # fmt: skip
    return _Sklearn(est.fit(x, y), regression, kind)  # SVC has no predict_proba: PROBABILITY is refused


# -- tree strings ----------------------------------------------------------------------------------------------


_NODE = re.compile(r"^\s*(\d+)\)\s+(.*?)\s*$")
_SPLIT = re.compile(r"^(.+?)\s*(<=|>=|<|>|=)\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(.*)$")
_ROOT = re.compile(r"^root\s+(\S+)\s+(\S+)\s+(\S+)(.*)$")


@dataclass
class ParsedTree:
    """A decision tree as arrays: node k tests ``x[feature[k]] op threshold[k]`` and goes to
    ``left[k]`` when true, else ``right[k]``; a leaf (left == -1) outputs ``value[k]``."""

    features: list[str]
    feature: np.ndarray
    op: list[str]
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray

    def evaluate(self, x: np.ndarray, columns: dict[str, int]) -> np.ndarray:
        """Each row's leaf value; ``columns`` maps a feature name to its column of ``x``."""
        n = len(x)
        node = np.zeros(n, dtype=np.int64)
        active = np.arange(n)
        cols = np.array([columns[f] for f in self.features], dtype=np.int64) if self.features else np.zeros(0, int)
        col_of_node = cols[self.feature] if len(cols) else np.zeros(len(self.left), dtype=np.int64)
        ops = {"<=": np.less_equal, "<": np.less, ">": np.greater, ">=": np.greater_equal}
        used = {o for o, left in zip(self.op, self.left, strict=True) if left != -1}
        single = ops[used.pop()] if len(used) == 1 else None
        opcode = np.array([list(ops).index(o) if o in ops else -1 for o in self.op])
        while len(active):
            k = node[active]
            internal = self.left[k] != -1
            if not internal.all():
                active, k = active[internal], k[internal]
            if not len(active):
                break
            v = x[active, col_of_node[k]]
            if single is not None:
                go_left = single(v, self.threshold[k])
            else:
                go_left = np.empty(len(active), dtype=bool)
                for code, fn in enumerate(ops.values()):
                    sel = opcode[k] == code
                    if sel.any():
                        go_left[sel] = fn(v[sel], self.threshold[k[sel]])
            node[active] = np.where(go_left, self.left[k], self.right[k])
        return self.value[node]


@functools.lru_cache(maxsize=4096)
def parse_tree_cached(text: str, name: str) -> ParsedTree:
    """:func:`parse_tree`, remembered across requests (a compiled forest is sent with every request)."""
    return parse_tree(text, name)


def parse_tree(text: str, name: str) -> ParsedTree:
    """Parse the rpart text format (``N) split n deviance yval [(probs)] [*]``; children of N are 2N, 2N+1)."""
    if not isinstance(text, str):
        raise EngineError(f"{name}: the tree must be a string.")
    nodes: dict[int, tuple] = {}
    for line in text.splitlines():
        m = _NODE.match(line)
        if not m:
            continue
        number, rest = int(m.group(1)), m.group(2).rstrip("*").strip()
        if number == 1:
            r = _ROOT.match(rest)
            if not r:
                raise EngineError(f"{name}: node 1 must be 'root n deviance yval'; got {line.strip()!r}.")
            nodes[1] = (None, None, None, _float(r.group(3), name, line))
            continue
        s = _SPLIT.match(rest)
        if not s:
            raise EngineError(
                f"{name}: cannot read the node line {line.strip()!r} (want 'N) band<=value n deviance yval')."
            )
        feat, op, thr, yval = s.group(1).strip(), s.group(2), s.group(3), s.group(6)
        if op == "=":
            raise EngineError(f"{name}: categorical splits ({line.strip()!r}) are not supported by the local engine.")
        nodes[number] = (feat, op, _float(thr, name, line), _float(yval, name, line))
    if 1 not in nodes:
        raise EngineError(f"{name}: the tree has no root node ('1) root n deviance yval').")
    for k in nodes:
        if k > 1 and k // 2 not in nodes:
            raise EngineError(f"{name}: node {k} has no parent node {k // 2}.")
        if k > 1 and (k ^ 1) not in nodes:
            raise EngineError(f"{name}: node {k} has no sibling node {k ^ 1}.")
    order = sorted(nodes)
    index = {k: i for i, k in enumerate(order)}
    features: list[str] = []
    feat_ix, ops, thr, left, right, value = [], [], [], [], [], []
    for k in order:
        value.append(nodes[k][3])
        child = nodes.get(2 * k)
        if child is None:
            feat_ix.append(0), ops.append(""), thr.append(0.0), left.append(-1), right.append(-1)
            continue
        f, op, t, _ = child
        if f not in features:
            features.append(f)
        feat_ix.append(features.index(f))
        ops.append(op)
        thr.append(t)
        left.append(index[2 * k])
        right.append(index[2 * k + 1])
    return ParsedTree(features, np.array(feat_ix), ops, np.array(thr), np.array(left), np.array(right),
                      np.array(value, dtype=np.float64))  # fmt: skip


def _float(text: str, name: str, line: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise EngineError(f"{name}: {text!r} is not a number in {line.strip()!r}.") from None


class _Trees(_Model):
    """Given tree strings: one tree, or an ensemble (vote / mean)."""

    def __init__(self, trees: list[ParsedTree], strings: list[str], single: bool):
        self.trees = trees
        self.strings = strings
        self.single = single
        self.schema = tuple(dict.fromkeys(f for t in trees for f in t.features))
        leaves = np.unique(np.concatenate([t.value[t.left == -1] for t in trees]))
        self.classes = leaves if np.all(leaves == np.round(leaves)) else None

    def _values(self, x):
        cols = {f: i for i, f in enumerate(self.schema)}
        return np.stack([t.evaluate(x, cols) for t in self.trees])

    def output(self, name, mode, x):
        v = self._values(x)
        if mode == "REGRESSION":
            return v.mean(axis=0)
        if self.classes is None:
            raise EngineError(f"{name}: the trees' leaf values are not class values; use REGRESSION mode.")
        if mode == "PROBABILITY":
            _check_binary(name, self.classes)
            return (v == 1).mean(axis=0)
        return _majority(v, self.classes)

    def explain(self, schema):
        return {"tree": self.strings[0]} if self.single else {"numberOfTrees": len(self.trees), "trees": self.strings}


# -- constructors ----------------------------------------------------------------------------------------------


def _untrained(kind: str, **args: Any) -> Classifier:
    return Classifier(kind, args)


@algorithm("Classifier.smileRandomForest")
def smile_random_forest(numberOfTrees, variablesPerSplit, minLeafPopulation, bagFraction, maxNodes, seed):  # noqa: N803
    return _untrained("Classifier.smileRandomForest", numberOfTrees=numberOfTrees, variablesPerSplit=variablesPerSplit,
                      minLeafPopulation=minLeafPopulation, bagFraction=bagFraction, maxNodes=maxNodes, seed=seed)  # fmt: skip


@algorithm("Classifier.smileCart")
def smile_cart(maxNodes, minLeafPopulation):  # noqa: N803
    return _untrained("Classifier.smileCart", maxNodes=maxNodes, minLeafPopulation=minLeafPopulation)


@algorithm("Classifier.smileGradientTreeBoost")
def smile_gradient_tree_boost(numberOfTrees, shrinkage, samplingRate, maxNodes, loss, seed):  # noqa: N803
    return _untrained("Classifier.smileGradientTreeBoost", numberOfTrees=numberOfTrees, shrinkage=shrinkage,
                      samplingRate=samplingRate, maxNodes=maxNodes, loss=loss, seed=seed)  # fmt: skip


@algorithm("Classifier.libsvm")
def libsvm(decisionProcedure, svmType, kernelType, shrinking, degree, gamma, coef0, cost, nu, terminationEpsilon,  # noqa: N803
           lossEpsilon, oneClass):  # fmt: skip
    if oneClass is not None or str(svmType).upper() == "ONE_CLASS":
        raise _refuse("Classifier.libsvm", "svmType", "ONE_CLASS")
    return _untrained("Classifier.libsvm", decisionProcedure=decisionProcedure, svmType=svmType, kernelType=kernelType,
                      shrinking=shrinking, degree=degree, gamma=gamma, coef0=coef0, cost=cost, nu=nu,
                      terminationEpsilon=terminationEpsilon, lossEpsilon=lossEpsilon)  # fmt: skip


@algorithm("Classifier.minimumDistance")
def minimum_distance(metric, kNearest):  # noqa: N803
    return _untrained("Classifier.minimumDistance", metric=metric, kNearest=kNearest)


@algorithm("Classifier.smileNaiveBayes")
def smile_naive_bayes(lambda_):
    return _untrained("Classifier.smileNaiveBayes", **{"lambda": lambda_})


@algorithm("Classifier.decisionTree")
def decision_tree(treeString):  # noqa: N803
    model = _Trees([parse_tree_cached(treeString, "Classifier.decisionTree")], [treeString], single=True)
    return Classifier("Classifier.decisionTree", {}, schema=model.schema, model=model)


@algorithm("Classifier.decisionTreeEnsemble")
def decision_tree_ensemble(treeStrings):  # noqa: N803
    if not treeStrings:
        raise EngineError("Classifier.decisionTreeEnsemble: 'treeStrings' must hold at least one tree.")
    trees = [parse_tree_cached(s, f"Classifier.decisionTreeEnsemble (tree {i})") for i, s in enumerate(treeStrings)]
    model = _Trees(trees, list(treeStrings), single=False)
    return Classifier("Classifier.decisionTreeEnsemble", {}, schema=model.schema, model=model)


# -- training and use --------------------------------------------------------------------------------------------


def table(name: str, features: Any, columns: list[str] | None, exclude: tuple[str, ...] = ()) -> tuple:
    """The numeric columns of a feature collection as a matrix: (names, X, rows kept).

    ``columns`` defaults to the collection's ``band_order`` property (set by Earth Engine's
    samplers), else the first feature's properties; rows with a null or non-numeric value are dropped."""
    fc = as_collection(name, features)
    if not fc.features:
        raise EngineError(f"{name}: the training collection is empty.")
    if columns is None:
        order = fc.properties.get("band_order")
        first = fc.features[0].properties
        columns = [
            c for c in (order if isinstance(order, list) else first) if c not in exclude and not c.startswith("system:")
        ]
    if not columns:
        raise EngineError(f"{name}: no input properties: give inputProperties.")
    rows, keep = [], []
    for i, f in enumerate(fc.features):
        vals = [f.properties.get(c) for c in columns]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            rows.append(vals)
            keep.append(i)
    missing = [c for c in columns if all(c not in f.properties for f in fc.features)]
    if missing:
        raise EngineError(f"{name}: no feature has the input property '{missing[0]}'.")
    return list(columns), np.array(rows, dtype=np.float64).reshape(len(rows), len(columns)), keep


def _subsample(n: int, fraction: float, seed: int) -> np.ndarray:
    if fraction >= 1:
        return np.arange(n)
    rng = np.random.default_rng(int(seed))
    return np.sort(rng.choice(n, max(1, int(round(fraction * n))), replace=False))


@algorithm("Classifier.train")
def train(classifier, features, classProperty, inputProperties, subsampling, subsamplingSeed):  # noqa: N803
    name = "Classifier.train"
    c = as_classifier(name, classifier)
    if c.kind in ("Classifier.decisionTree", "Classifier.decisionTreeEnsemble"):
        raise EngineError(f"{name}: {c.kind} is already a complete model; it cannot be trained.")
    if not 0 < float(subsampling) <= 1:
        raise EngineError(f"{name}: 'subsampling' must be in (0, 1].")
    columns, x, keep = table(name, features, inputProperties, exclude=(classProperty,))
    fc = features.features
    y_all = [fc[i].properties.get(classProperty) for i in keep]
    ok = [i for i, v in enumerate(y_all) if isinstance(v, int | float) and not isinstance(v, bool)]
    if not ok:
        raise EngineError(f"{name}: no feature has a numeric class property '{classProperty}' with all inputs.")
    x = x[ok]
    y = np.array([y_all[i] for i in ok], dtype=np.float64)
    pick = _subsample(len(y), float(subsampling), int(subsamplingSeed or 0))
    x, y = x[pick], y[pick]
    regression = c.mode == "REGRESSION"
    if not regression:
        if not np.all(y == np.round(y)):
            raise EngineError(
                f"{name}: the class property '{classProperty}' must hold whole numbers (class values) to classify; "
                "use setOutputMode('REGRESSION') for a continuous target."
            )
        y = y.astype(np.int64)
    model = _fit(c.kind, c.args, x, y, regression)
    return replace(c, schema=tuple(columns), model=model, data=(x, y))


@algorithm("Classifier.load", context=True)
def load(ctx, id):
    """A classifier asset (``Export.classifier.toAsset``), trained as it was saved."""
    return as_classifier("Classifier.load", ctx.catalog.classifier(id))


@algorithm("Classifier.setOutputMode")
def set_output_mode(classifier, mode):
    name = "Classifier.setOutputMode"
    c = as_classifier(name, classifier)
    if mode not in MODES:
        raise EngineError(f"{name}: unknown output mode {mode!r}; use one of {', '.join(MODES)}.")
    out = replace(c, mode=mode)
    if c.data is not None and (mode == "REGRESSION") != bool(c.model.regression):
        x, y = c.data
        if mode != "REGRESSION":
            if not np.all(y == np.round(y)):
                raise EngineError(f"{name}: the training target is continuous; train again in {mode} mode.")
            y = y.astype(np.int64)
        out = replace(out, model=_fit(c.kind, c.args, x, y, mode == "REGRESSION"))
    return out


@algorithm("Classifier.mode")
def mode(classifier):
    return as_classifier("Classifier.mode", classifier).mode


@algorithm("Classifier.schema")
def schema(classifier):
    c = as_classifier("Classifier.schema", classifier)
    if c.schema is None:
        raise EngineError("Classifier.schema: the classifier is not trained.")
    return list(c.schema)


@algorithm("Classifier.explain")
def explain(classifier):
    c = as_classifier("Classifier.explain", classifier)
    if not c.trained:
        raise EngineError("Classifier.explain: the classifier is not trained.")
    out = {"classifier": c.kind.removeprefix("Classifier."), "outputMode": c.mode, "schema": list(c.schema or [])}
    out.update(c.model.explain(c.schema or ()))
    return out


@algorithm("Classifier.confusionMatrix")
def classifier_confusion_matrix(classifier):
    """The resubstitution matrix: the training rows classified by the trained model."""
    c = as_classifier("Classifier.confusionMatrix", classifier)
    if c.data is None:
        raise EngineError("Classifier.confusionMatrix: the classifier was not trained here (no training data).")
    x, y = c.data
    pred = (
        replace(c, mode="CLASSIFICATION").predict("Classifier.confusionMatrix", x) if not c.model.regression else None
    )
    if pred is None:
        raise EngineError("Classifier.confusionMatrix: a REGRESSION classifier has no confusion matrix.")
    return ConfusionMatrix.from_labels(y, pred, None, "Classifier.confusionMatrix")


def output_type(c: Classifier):
    classes = getattr(c.model, "classes", None)
    if c.mode == "CLASSIFICATION" and classes is not None and len(classes):
        return PixelType.int_range(int(np.min(classes)), int(np.max(classes)))
    return PixelType("float")


def per_pixel(model):
    """A band function applying ``model`` (an ``(n, bands)`` float64 array -> ``n`` values) to the pixels
    unmasked in every input band; a pixel masked in any input is masked in the output."""

    def fn(*arrays: np.ma.MaskedArray) -> np.ma.MaskedArray:
        shape = arrays[0].shape
        masked = np.zeros(shape, dtype=bool)
        for a in arrays:
            masked |= np.ma.getmaskarray(a)
        ok = ~masked.reshape(-1)
        x = np.stack([np.asarray(a.data, dtype=np.float64).reshape(-1)[ok] for a in arrays], axis=1)
        out = np.zeros(ok.size)
        out[ok] = model(x)
        return np.ma.MaskedArray(out.reshape(shape), masked)

    return fn


@algorithm("Image.classify")
def image_classify(image, classifier, outputName):  # noqa: N803
    """One band ``outputName``: the classifier's output where every input band is unmasked."""
    name = "Image.classify"
    img = as_image(name, image)
    c = as_classifier(name, classifier)
    if not c.trained:
        raise EngineError(f"{name}: the classifier ({c.kind}) is not trained; call Classifier.train first.")
    have = set(img.band_names)
    missing = [s for s in c.schema if s not in have]
    if missing:
        raise EngineError(
            f"{name}: the image lacks the band(s) {missing} that the classifier was trained on "
            f"(it has {img.band_names})."
        )
    bands = [img.band(s) for s in c.schema]

    return Image([derive(str(outputName), bands, per_pixel(lambda x: c.predict(name, x)), output_type(c))])


@algorithm("FeatureCollection.classify")
def collection_classify(features, classifier, outputName):  # noqa: N803
    """Each feature with ``outputName`` set to the classifier's output (null where an input is missing)."""
    name = "FeatureCollection.classify"
    c = as_classifier(name, classifier)
    if not c.trained:
        raise EngineError(f"{name}: the classifier ({c.kind}) is not trained; call Classifier.train first.")
    fc = features
    _, x, keep = table(name, fc, list(c.schema))
    values = c.predict(name, x) if len(keep) else np.zeros(0)
    out_values: list[Any] = [None] * len(fc.features)
    ints = c.mode == "CLASSIFICATION"
    for i, v in zip(keep, values, strict=True):
        out_values[i] = int(v) if ints and float(v).is_integer() else float(v)
    return fc.with_features(
        [
            f.copy_with(properties={**f.properties, str(outputName): v})
            for f, v in zip(fc.features, out_values, strict=True)
        ]
    )

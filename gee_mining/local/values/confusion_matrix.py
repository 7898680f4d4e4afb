"""Confusion matrices: the ``ConfusionMatrix`` value and its algorithms, and ``Collection.errorMatrix``.

Earth Engine's rules (reference pages of ``ee.ConfusionMatrix`` and
``ee.FeatureCollection.errorMatrix``):

- Rows (axis 0) are the actual values, columns (axis 1) the predicted values.
- ``errorMatrix`` without ``order`` assumes small contiguous integers and spans
  0..max; with ``order`` only the listed values count, in that order.
- ``accuracy`` is correct / total; ``kappa`` Cohen's kappa.
- ``producersAccuracy`` (recall) is correct / actual total per class, an n x 1
  array; ``consumersAccuracy`` (precision, "reliability") correct / predicted
  total per class, a 1 x n array; ``fscore(beta)`` the F-beta score per class,
  a 1-D array. Arrays come back as nested lists (the engine has no array type).

Choices where the documentation is silent: a class with no actual (or no
predicted) member has a producer's (consumer's) accuracy of 0, and its F-score
is 0, as scikit-learn's ``zero_division`` default gives; a value that is not a
whole number, or a negative one without ``order``, is refused with an error
naming the property.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.values.featurecollection import as_collection


class ConfusionMatrix:
    """A square matrix of counts (rows actual, columns predicted) and the class value of each row."""

    ee_type = "ConfusionMatrix"
    __slots__ = ("matrix", "order")

    def __init__(self, matrix: np.ndarray, order: list[int] | None = None):
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise EngineError(f"ConfusionMatrix: the array must be square (2-D, n x n); got shape {list(m.shape)}.")
        self.matrix = m
        self.order = list(range(m.shape[0])) if order is None else [int(v) for v in order]
        if len(self.order) != m.shape[0]:
            raise EngineError(
                f"ConfusionMatrix: 'order' has {len(self.order)} values for a {m.shape[0]} x {m.shape[0]} matrix."
            )

    def to_info(self) -> list:
        return _as_list(self.matrix)

    @classmethod
    def from_labels(cls, actual: np.ndarray, predicted: np.ndarray, order: list[int] | None, what: str):
        """Count pairs; values outside ``order`` (or negative without one) are left out as Earth Engine does."""
        actual = _whole(actual, what, "actual")
        predicted = _whole(predicted, what, "predicted")
        if order is None:
            if actual.size and (actual.min() < 0 or predicted.min() < 0):
                raise EngineError(
                    f"{what}: values must be non-negative integers (0..max) when no 'order' is given; "
                    "pass order=[...] to list the class values."
                )
            n = int(max(actual.max(initial=-1), predicted.max(initial=-1))) + 1
            order = list(range(n))
        index = {int(v): i for i, v in enumerate(order)}
        m = np.zeros((len(order), len(order)))
        for a, p in zip(actual.tolist(), predicted.tolist(), strict=True):
            i, j = index.get(int(a)), index.get(int(p))
            if i is not None and j is not None:
                m[i, j] += 1
        return cls(m, order)


def _whole(values: np.ndarray, what: str, which: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.size and not np.all(np.isfinite(v) & (v == np.round(v))):
        raise EngineError(f"{what}: the {which} values must be whole numbers (class values); got e.g. {v[v != np.round(v)][:3].tolist()}.")  # fmt: skip
    return v.astype(np.int64)


def _as_list(a: np.ndarray) -> list:
    """Counts as ints where whole, other values as floats."""
    if np.all(a == np.round(a)):
        return a.astype(np.int64).tolist()
    return a.tolist()


def _as_matrix(name: str, value: Any) -> ConfusionMatrix:
    if not isinstance(value, ConfusionMatrix):
        raise EngineError(f"{name}: expected a ConfusionMatrix, got {getattr(value, 'ee_type', type(value).__name__)}.")
    return value


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den != 0)


@algorithm("ConfusionMatrix")
def confusion_matrix(array, order):
    """From a 2-D array (nested lists; an ``ee.Array`` is not available in this engine) and an optional order."""
    if isinstance(array, ConfusionMatrix):
        return ConfusionMatrix(array.matrix, order if order is not None else array.order)
    if not isinstance(array, list | tuple) or not all(isinstance(r, list | tuple) for r in array):
        raise EngineError("ConfusionMatrix: 'array' must be a 2-D array (a list of rows of counts).")
    try:
        m = np.array(array, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise EngineError(f"ConfusionMatrix: 'array' must hold numbers in rows of equal length ({e}).") from None
    return ConfusionMatrix(m, order)


@algorithm("Collection.errorMatrix")
def error_matrix(collection, actual, predicted, order):
    fc = as_collection("FeatureCollection.errorMatrix", collection)
    pairs = [(f.properties.get(actual), f.properties.get(predicted)) for f in fc.features]
    for name, k in ((actual, 0), (predicted, 1)):
        if any(p[k] is None for p in pairs):
            raise EngineError(
                f"FeatureCollection.errorMatrix: some features lack the property '{name}' (or it is null)."
            )
    a = np.array([p[0] for p in pairs], dtype=np.float64)
    p = np.array([p[1] for p in pairs], dtype=np.float64)
    return ConfusionMatrix.from_labels(a, p, order, "FeatureCollection.errorMatrix")


@algorithm("ConfusionMatrix.accuracy")
def accuracy(confusionMatrix):  # noqa: N803
    m = _as_matrix("ConfusionMatrix.accuracy", confusionMatrix).matrix
    total = m.sum()
    return float(np.trace(m) / total) if total else 0.0


@algorithm("ConfusionMatrix.kappa")
def kappa(confusionMatrix):  # noqa: N803
    """Cohen's kappa: (p_o - p_e) / (1 - p_e), p_e from the row and column totals."""
    m = _as_matrix("ConfusionMatrix.kappa", confusionMatrix).matrix
    total = m.sum()
    if not total:
        return 0.0
    po = np.trace(m) / total
    pe = float((m.sum(axis=0) * m.sum(axis=1)).sum()) / (total * total)
    return float((po - pe) / (1 - pe)) if pe != 1 else 0.0


@algorithm("ConfusionMatrix.producersAccuracy")
def producers_accuracy(confusionMatrix):  # noqa: N803
    m = _as_matrix("ConfusionMatrix.producersAccuracy", confusionMatrix).matrix
    return _ratio(np.diag(m), m.sum(axis=1)).reshape(-1, 1).tolist()


@algorithm("ConfusionMatrix.consumersAccuracy")
def consumers_accuracy(confusionMatrix):  # noqa: N803
    m = _as_matrix("ConfusionMatrix.consumersAccuracy", confusionMatrix).matrix
    return _ratio(np.diag(m), m.sum(axis=0)).reshape(1, -1).tolist()


@algorithm("ConfusionMatrix.fscore")
def fscore(confusionMatrix, beta):  # noqa: N803
    m = _as_matrix("ConfusionMatrix.fscore", confusionMatrix).matrix
    precision = _ratio(np.diag(m), m.sum(axis=0))
    recall = _ratio(np.diag(m), m.sum(axis=1))
    b2 = float(beta) ** 2
    return _ratio((1 + b2) * precision * recall, b2 * precision + recall).tolist()


@algorithm("ConfusionMatrix.array")
def array(confusionMatrix):  # noqa: N803
    return _as_list(_as_matrix("ConfusionMatrix.array", confusionMatrix).matrix)


@algorithm("ConfusionMatrix.order")
def order(confusionMatrix):  # noqa: N803
    return list(_as_matrix("ConfusionMatrix.order", confusionMatrix).order)

"""Regularisation paths on standardised features: linear LASSO and L1-penalised logistic regression.

Features are standardised with the training rows' mean and standard deviation, so a weight's size
is comparable across features and the penalty treats them alike. Then

- LASSO: scikit-learn's ``lasso_path`` (coordinate descent, objective
  ``1/(2n) ||y - ybar - Z w||^2 + alpha ||w||_1``) over a log grid of ``n`` alphas from
  ``alpha_max`` (every weight 0) down to ``eps * alpha_max``. The Gram matrix ``Z'Z`` and ``Z'y``
  are computed once here, with the standardisation folded in, and handed to ``lasso_path``, which
  then never copies the (n x p) matrix.
- L1-logistic: ``LogisticRegression(l1_ratio=1, C)`` (saga or liblinear) over ``C`` from
  ``min_c`` (every weight 0; ``l1_min_c`` for liblinear) up ``span`` decades, warm-started along the path. Its penalty in
  the LASSO's units is ``lambda = 1 / (C n)`` (objective ``1/n sum loss + lambda ||w||_1``).

For each penalty the weights, the number of non-zero weights and metrics on validation and test
rows are kept; ``dropout_order`` says in which order weights reach zero as the penalty grows.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, lasso_path
from sklearn.metrics import f1_score, precision_recall_curve, precision_score, recall_score, roc_auc_score
from sklearn.svm import l1_min_c

from gee_mining.errors import InputError

SOLVERS = ("saga", "liblinear")


@dataclass
class Standardizer:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, chunk: int = 65536) -> Standardizer:
        """Mean and standard deviation per column (accumulated in float64 chunks; constant columns get scale 1)."""
        n = len(X)
        if n == 0:
            raise InputError("no training rows to standardise.")
        mean = np.zeros(X.shape[1])
        for s in range(0, n, chunk):
            mean += X[s : s + chunk].sum(axis=0, dtype=np.float64)
        mean /= n
        var = np.zeros(X.shape[1])
        for s in range(0, n, chunk):
            d = X[s : s + chunk] - mean
            var += np.einsum("ij,ij->j", d, d)
        scale = np.sqrt(var / n)
        scale[~(scale > 0)] = 1.0
        return cls(mean, scale)

    def transform(self, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return (X - self.mean) / self.scale
        np.subtract(X, self.mean, out=out)
        np.divide(out, self.scale, out=out)
        return out


def standardized_gram(
    X: np.ndarray, yc: np.ndarray, chunk: int = 2048, overwrite_X: bool = False
) -> tuple[Standardizer, np.ndarray, np.ndarray]:
    """The standardiser of ``X`` and the Gram matrix ``Z'Z`` and ``Z'yc`` of the standardised features
    ``Z = (X - mean) / scale``, without forming ``Z``.

    One pass for the column means, one for the centred Gram matrix and ``X'yc`` accumulated over
    blocks of ``chunk`` centred rows (a block of 2,048 rows x 78 features is 1.2 MB; centring each
    block keeps the precision of a two-pass variance, unlike ``X'X - n mean mean'``). The variances are
    the Gram matrix's diagonal; the scaling is applied to the small matrices.

    ``overwrite_X=True`` (for a matrix the caller owns and no longer needs, such as a fold's copied training
    rows) centres ``X`` in place instead, leaving it centred, and takes the Gram matrix in one BLAS call: the
    same precision (the rows are centred before the products) with one call instead of one a block, which is
    faster, markedly so with threads on a busy machine.
    """
    n, p = X.shape
    if n == 0:
        raise InputError("no training rows to standardise.")
    if overwrite_X and X.dtype == np.float64:  # other types take the blocks (float64 products)
        return _scaled(*_centred_gram_in_place(X, yc), n)
    mean = np.zeros(p)
    for s in range(0, n, chunk):
        mean += X[s : s + chunk].sum(axis=0, dtype=np.float64)
    mean /= n
    gram = np.zeros((p, p))
    xy = np.zeros(p)
    block = np.empty((min(chunk, n), p), order="F" if X.flags.f_contiguous else "C")  # X's layout: no strided copy
    for s in range(0, n, chunk):
        d = block[: min(chunk, n - s)]
        np.subtract(X[s : s + chunk], mean, out=d)
        gram += d.T @ d
        xy += d.T @ yc[s : s + chunk]
    return _scaled(mean, gram, xy, n)


def _centred_gram_in_place(X: np.ndarray, yc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means of ``X``, then ``X`` centred in place and its Gram matrix and ``X'yc`` (no copy of ``X``)."""
    mean = X.sum(axis=0, dtype=np.float64) / len(X)
    X -= mean
    return mean, X.T @ X, X.T @ yc


def _scaled(mean: np.ndarray, gram: np.ndarray, xy: np.ndarray, n: int) -> tuple[Standardizer, np.ndarray, np.ndarray]:
    """The standardiser (scale from the centred Gram matrix's diagonal; 1 for constant columns), and the
    Gram matrix and ``X'yc`` of the standardised features."""
    scale = np.sqrt(np.diag(gram) / n)
    scale[~(scale > 0)] = 1.0
    gram /= np.outer(scale, scale)
    xy /= scale
    return Standardizer(mean, scale), np.ascontiguousarray(gram), xy


@dataclass
class Path:
    """One fitted path: ``coefs[j, k]`` is feature j's weight on standardised features at penalty k."""

    kind: str  # "lasso" or "logistic"
    features: list[str]
    penalties: np.ndarray  # alpha (lasso) or 1/(C n) (logistic), decreasing
    C: np.ndarray | None
    coefs: np.ndarray  # (p, k)
    intercepts: np.ndarray  # (k,)
    standardizer: Standardizer
    n_train: int

    def predict(self, X: np.ndarray, k: int | None = None) -> np.ndarray:
        """Raw model output: y-hat (lasso) or log-odds (logistic), for all penalties (n, k) or penalty ``k``."""
        Z = self.standardizer.transform(X)
        if k is None:
            return Z @ self.coefs + self.intercepts
        return Z @ self.coefs[:, k] + self.intercepts[k]

    def nonzero(self) -> np.ndarray:
        return (self.coefs != 0).sum(axis=0)


def _check_xy(X: np.ndarray, y: np.ndarray) -> None:
    if X.ndim != 2 or len(X) != len(y):
        raise InputError(f"features {X.shape} and target {np.shape(y)} do not match.")
    if len(X) < 2:
        raise InputError(f"{len(X)} training row(s): a path needs at least 2.")
    if not (np.isfinite(y).all()):
        raise InputError("the target has non-finite values; drop those rows first.")


def lasso(
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    n_penalties: int = 50,
    eps: float = 1e-3,
    alphas: np.ndarray | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    overwrite_X: bool = False,
) -> Path:
    """The LASSO path of ``y`` on standardised ``X`` (the training rows).

    ``overwrite_X=True``: ``X`` is a copy the caller no longer needs; it is centred in place (see
    ``standardized_gram``) and left so.
    """

    X = np.asarray(X)
    y = np.asarray(y, dtype=np.float64)
    _check_xy(X, y)
    n = len(X)
    ybar = float(y.mean())
    yc = np.ascontiguousarray(y - ybar)
    st, gram, xy = standardized_gram(X, yc, overwrite_X=overwrite_X)
    if alphas is None:
        alpha_max = float(np.abs(xy).max()) / n
        if not alpha_max > 0:
            raise InputError("the target is constant (or uncorrelated with every feature): no path to trace.")
        alphas = np.geomspace(alpha_max, alpha_max * eps, n_penalties)
    alphas = np.sort(np.asarray(alphas, dtype=np.float64))[::-1]

    with warnings.catch_warnings():  # near-collinear ND features converge slowly at the smallest penalties
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Given the Gram matrix and Xy (check_input=False), lasso_path's coordinate descent works on them
        # and y alone; of X it reads only the number of rows (the penalty's scale), so X goes in as is.
        _, coefs, gaps = lasso_path(
            X, yc, alphas=alphas, precompute=gram, Xy=xy, check_input=False, copy_X=False, tol=tol, max_iter=max_iter
        )
    return Path("lasso", list(features), alphas, None, coefs, np.full(len(alphas), ybar), st, n)


def logistic(
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    n_penalties: int = 50,
    span: float = 3.0,
    Cs: np.ndarray | None = None,
    solver: str = "saga",
    tol: float = 1e-4,
    max_iter: int = 2000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The L1-logistic path of binary ``y`` on standardised ``X``: ``n_penalties`` C's over ``span`` decades."""

    if solver not in SOLVERS:
        raise InputError(f"solver {solver!r}: use one of {SOLVERS}.")
    X = np.asarray(X)
    y = np.asarray(y)
    _check_xy(X, y)
    yb = (y >= 0.5).astype(np.int64)
    if yb.min() == yb.max():
        raise InputError(
            "the binary target has one class only in the training rows: add cells with (and without) mines."
        )
    st = Standardizer.fit(X)
    Z = st.transform(X)
    if Cs is None:
        Cs = min_c(Z, yb, solver) * np.logspace(0, span, n_penalties)
    Cs = np.sort(np.asarray(Cs, dtype=np.float64))
    clf = LogisticRegression(
        l1_ratio=1.0, solver=solver, tol=tol, max_iter=max_iter, warm_start=True, random_state=seed
    )
    coefs = np.zeros((X.shape[1], len(Cs)))
    intercepts = np.zeros(len(Cs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k, c in enumerate(Cs):
            clf.set_params(C=c)
            clf.fit(Z, yb)
            coefs[:, k] = clf.coef_[0]
            intercepts[k] = clf.intercept_[0]
            if progress and (k + 1) % 10 == 0:
                progress(f"[study] L1-logistic path: {k + 1}/{len(Cs)} penalties")
    n = len(X)
    # increasing C is decreasing penalty lambda = 1/(C n), the LASSO path's order
    return Path("logistic", list(features), 1.0 / (Cs * n), Cs, coefs, intercepts, st, n)


def min_c(Z: np.ndarray, y: np.ndarray, solver: str) -> float:
    """The C below which every weight of the L1-logistic fit on ``Z`` is zero.

    liblinear penalises the intercept as a weight on a constant column: scikit-learn's ``l1_min_c``.
    saga leaves the intercept free: at w = 0 the intercept fits the class share ``ybar``, and w = 0
    is optimal while ``C * max_j |Z_j . (y - ybar)| <= 1`` (the L1 subgradient condition).
    """

    if solver == "liblinear":
        return float(l1_min_c(Z, y, loss="log", fit_intercept=True))
    return 1.0 / float(np.abs(Z.T @ (y - y.mean())).max())


def dropout_order(path: Path) -> list[tuple[str, float, float]]:
    """Features by the largest penalty at which their weight is non-zero (first = last to reach zero).

    Returns (feature, that penalty, the weight's sign there); features never non-zero come last with
    penalty 0.
    """
    out = []
    for j, name in enumerate(path.features):
        nz = np.flatnonzero(path.coefs[j] != 0)
        if len(nz):
            k = int(nz[0])  # penalties decrease along the path
            out.append((name, float(path.penalties[k]), float(np.sign(path.coefs[j, k]))))
        else:
            out.append((name, 0.0, 0.0))
    return sorted(out, key=lambda t: (-t[1], path.features.index(t[0])))


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC (of the score) and F1, precision, recall of ``score > threshold``."""

    yb = (np.asarray(y) >= 0.5).astype(int)
    pred = (score > threshold).astype(int)
    both = 0 < yb.sum() < len(yb)
    return {
        "auc": float(roc_auc_score(yb, score)) if both else float("nan"),
        "f1": float(f1_score(yb, pred, zero_division=0)),
        "precision": float(precision_score(yb, pred, zero_division=0)),
        "recall": float(recall_score(yb, pred, zero_division=0)),
    }


def best_f1_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The score threshold that maximises F1 (predicting ``score > threshold``); 0.5-prob fallback."""

    yb = (np.asarray(y) >= 0.5).astype(int)
    if not 0 < yb.sum() < len(yb):
        return 0.0
    p, r, t = precision_recall_curve(yb, score)
    f1 = 2 * p[:-1] * r[:-1] / np.maximum(p[:-1] + r[:-1], 1e-12)
    i = int(np.argmax(f1))
    # precision_recall_curve predicts score >= t; step just below t for our strict ">"
    return float(np.nextafter(t[i], -np.inf))


def path_metrics(
    path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], lasso_threshold: float = 0.0
) -> list[dict]:
    """Metrics per penalty on each split: ``splits[name] = (X, target, mine)``.

    LASSO: R2 and RMSE of the target, ROC AUC of the prediction against ``_mine``, and F1, precision,
    recall of "prediction > threshold". Logistic: ROC AUC, and F1, precision, recall of "probability >
    threshold". Both thresholds are the ones that maximise F1 on the validation split (chosen there,
    applied to test); without a validation split, ``lasso_threshold`` (0: the mine edge for the distance
    target) and 0.5 for the logistic probability. A LASSO fitted on the distance is rarely calibrated
    at 0 (far pixels pull the fit), which is why its threshold is chosen like the logistic's.
    """
    rows: list[dict] = []
    outs = {name: path.predict(X) for name, (X, _, _) in splits.items()}
    nnz = path.nonzero()
    for k, pen in enumerate(path.penalties):
        thr = lasso_threshold if path.kind == "lasso" else 0.5
        if "val" in splits and len(splits["val"][2]):
            val = outs["val"][:, k]
            thr = best_f1_threshold(splits["val"][2], val if path.kind == "lasso" else 1 / (1 + np.exp(-val)))
        for name, (_, target, mine) in splits.items():
            if len(target) == 0:
                continue
            row = {"penalty_index": k, "penalty": float(pen), "nonzero": int(nnz[k]), "split": name}
            if path.C is not None:
                row["C"] = float(path.C[k])
            out = outs[name][:, k]
            if path.kind == "lasso":
                resid = target - out
                ss = float(((target - target.mean()) ** 2).sum())
                row["r2"] = 1 - float((resid**2).sum()) / ss if ss > 0 else float("nan")
                row["rmse"] = float(np.sqrt((resid**2).mean()))
                row.update(binary_metrics(mine, out, thr))
                row["threshold"] = thr
            else:
                prob = 1 / (1 + np.exp(-out))
                row.update(binary_metrics(mine, prob, thr))
                row["threshold"] = thr
            rows.append(row)
    return rows

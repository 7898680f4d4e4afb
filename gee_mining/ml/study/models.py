"""Other pixel classifiers on the same splits, and what each costs to apply per pixel.

Logistic regression (L2, all features), a random forest and scikit-learn's histogram gradient
boosting, each trained on the training rows (at most ``max_rows``, drawn at random) and scored on
validation and test with the same metrics as the paths (ROC AUC; F1, precision, recall at the
validation's best-F1 threshold). The apply cost is the wall time of ``predict_proba`` on the test
rows (at least ``timing_rows``, repeated) divided by their number, on the features already computed,
with the thread count the process has.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gee_mining.errors import InputError
from gee_mining.ml.study.paths import best_f1_threshold, binary_metrics

MODELS = ("logistic", "random_forest", "hist_gradient_boosting")


def make_model(name: str, seed: int = 0):

    if name == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=100, min_samples_leaf=5, n_jobs=-1, random_state=seed)
    if name == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=seed)
    raise InputError(f"model {name!r}: use one of {MODELS}.")


def apply_cost(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, timing_rows: int = 20000) -> float:
    """Seconds per pixel of ``predict`` on ``X`` (tiled up to ``timing_rows`` rows; best of 3)."""
    if len(X) == 0:
        return float("nan")
    reps = int(np.ceil(timing_rows / len(X)))
    Xt = np.tile(X, (reps, 1)) if reps > 1 else X
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        predict(Xt)
        best = min(best, time.perf_counter() - t)
    return best / len(Xt)


def compare_models(
    names,
    train: tuple[np.ndarray, np.ndarray],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    max_rows: int | None = 50000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Fit each model on ``train = (X, mine)``; metrics on ``splits[name] = (X, mine)``; cost per pixel."""
    X, y = train
    yb = (np.asarray(y) >= 0.5).astype(int)
    if yb.min() == yb.max():
        raise InputError("the training rows hold one class only: the models need pixels with and without mines.")
    if max_rows is not None and len(X) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(X), max_rows, replace=False))
        X, yb = X[keep], yb[keep]
    rows = []
    for name in names:
        model = make_model(name, seed)
        t = time.perf_counter()
        model.fit(X, yb)
        fit_s = time.perf_counter() - t
        proba = {s: model.predict_proba(Xs)[:, 1] for s, (Xs, _) in splits.items() if len(Xs)}
        thr = best_f1_threshold(splits["val"][1], proba["val"]) if "val" in proba else 0.5
        cost_X = splits.get("test", splits.get("val"))[0]
        cost = apply_cost(lambda A, m=model: m.predict_proba(A), cost_X)
        for s, p in proba.items():
            rows.append(
                {
                    "model": name,
                    "split": s,
                    **binary_metrics(splits[s][1], p, thr),
                    "threshold": thr,
                    "fit_s": fit_s,
                    "train_rows": len(X),
                    "apply_us_per_pixel": cost * 1e6,
                }
            )
        if progress:
            progress(f"[study] {name}: fitted on {len(X):,} rows in {fit_s:.1f} s, {cost * 1e6:.2f} us/pixel")
    return rows

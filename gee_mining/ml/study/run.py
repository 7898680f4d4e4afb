"""The study end to end: dataset -> folds -> paths and models -> metrics, drop-out order, ranking, outputs."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from gee_mining.contracts.models import LinearModel
from gee_mining.errors import InputError
from gee_mining.ml.study import paths as P
from gee_mining.ml.study.data import Dataset, FeatureSpec, TargetSpec, load_dataset
from gee_mining.ml.study.models import MODELS, apply_cost, compare_models
from gee_mining.ml.study.plots import save_all
from gee_mining.ml.study.splits import Fold, SplitSpec, make_folds

PATH_KINDS = ("lasso", "logistic")


@dataclass(frozen=True)
class StudySpec:
    """What to study. ``target`` is the LASSO's label (the L1-logistic path always learns ``_mine``)."""

    features: FeatureSpec = FeatureSpec()
    target: TargetSpec = TargetSpec(kind="distance")
    split: SplitSpec = SplitSpec()
    paths: tuple[str, ...] = PATH_KINDS
    n_penalties: int = 50  # LASSO
    n_logistic_penalties: int = 30  # each an L1-logistic fit (warm-started): ~10x a LASSO penalty's cost
    eps: float = 1e-3  # LASSO: smallest alpha / largest
    logistic_span: float = 3.0  # L1-logistic: decades of C above the smallest non-empty C (paths.min_c)
    solver: str = "saga"
    models: tuple[str, ...] = MODELS
    max_logistic_rows: int | None = 50_000  # training rows for the L1-logistic path (random sample); None = all
    max_model_rows: int | None = 50_000
    seed: int = 0

    def __post_init__(self):
        bad = sorted(set(self.paths) - set(PATH_KINDS))
        if bad:
            raise InputError(f"StudySpec.paths {bad}: use {PATH_KINDS}.")
        bad = sorted(set(self.models) - set(MODELS))
        if bad:
            raise InputError(f"StudySpec.models {bad}: use {MODELS}.")
        if min(self.n_penalties, self.n_logistic_penalties) < 2:
            raise InputError("StudySpec.n_penalties / n_logistic_penalties: a path needs at least 2 penalties.")
        if self.solver not in P.SOLVERS:
            raise InputError(f"StudySpec.solver = {self.solver!r}: use one of {P.SOLVERS}.")
        if not 0 < self.eps < 1:
            raise InputError(f"StudySpec.eps = {self.eps}: give a ratio between 0 and 1.")


@dataclass
class PathStudy:
    """One kind of path over all folds: ``fits[i]`` on ``folds[i]``, metrics in a long table."""

    kind: str
    fits: list[P.Path]
    metrics: pd.DataFrame  # fold, penalty_index, penalty, nonzero, split, metrics...
    best_index: int  # the chosen penalty (see choose_penalty)

    @property
    def penalties(self) -> np.ndarray:
        return self.fits[0].penalties

    def dropout(self) -> pd.DataFrame:
        """Drop-out order per fold and the mean rank: DataFrame (rank, feature, penalty, sign, folds...)."""

        rows = []
        for i, fit in enumerate(self.fits):
            for r, (name, pen, sign) in enumerate(P.dropout_order(fit)):
                rows.append({"fold": i, "feature": name, "last_nonzero_penalty": pen, "sign": sign, "fold_rank": r + 1})
        df = pd.DataFrame(rows)
        agg = (
            df.groupby("feature", sort=False)
            .agg(
                mean_rank=("fold_rank", "mean"),
                last_nonzero_penalty=("last_nonzero_penalty", "median"),
                sign=("sign", lambda s: float(np.sign(s.sum()))),
            )
            .sort_values(["mean_rank"], kind="stable")
            .reset_index()
        )
        agg.insert(0, "rank", np.arange(1, len(agg) + 1))
        return agg


@dataclass
class StudyResult:
    """Everything the study found: the paths per kind, the other models' metrics, the feature ranking."""

    spec: StudySpec
    features: list[str]
    folds: list[Fold]
    rows: dict[str, int]
    dropped: dict[str, int]
    paths: dict[str, PathStudy]
    models: pd.DataFrame
    ranking: pd.DataFrame
    univariate_auc: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def choose_penalty(kind: str, metrics) -> int:
    """The sparsest penalty within tolerance of the best validation score (mean over folds).

    L1-logistic: validation ROC AUC within 0.005 of the best. LASSO: validation RMSE within 1 % of the
    best. Why not the best alone: a model with fewer features is cheaper to deploy and the last few
    features buy next to nothing.
    """
    val = metrics[metrics["split"] == "val"].groupby("penalty_index").mean(numeric_only=True)
    if kind == "logistic" and val["auc"].isna().all():  # no mines (or only mines) in validation: judge on train
        val = metrics[metrics["split"] == "train"].groupby("penalty_index").mean(numeric_only=True)
    if kind == "logistic":
        score = val["auc"].fillna(-np.inf)
        ok = score >= score.max() - 0.005
    else:
        score = val["rmse"]
        ok = score <= score.min() * 1.01
    return int(val.index[ok.to_numpy()].min())  # penalties decrease with the index: the smallest index is sparsest


def univariate_auc(X: np.ndarray, mine: np.ndarray, features: list[str]) -> dict[str, float]:
    """Each feature alone as a mine score: ROC AUC, direction-free (max(auc, 1 - auc))."""

    yb = (mine >= 0.5).astype(int)
    if not 0 < yb.sum() < len(yb):
        return {f: float("nan") for f in features}
    out = {}
    for j, f in enumerate(features):
        a = float(roc_auc_score(yb, X[:, j]))
        out[f] = max(a, 1 - a)
    return out


def run_study(
    data: Dataset | str | os.PathLike,
    spec: StudySpec = StudySpec(),
    *,
    group_columns: tuple[str, ...] = (),
    sample_per_cell: int | None = None,
    progress: Callable[[str], None] = lambda m: None,
) -> StudyResult:
    """Run the whole study on a ``Dataset`` or a pixel-table path (read cell by cell)."""

    timings: dict[str, float] = {}
    t = time.perf_counter()
    data = _study_data(data, spec, group_columns, sample_per_cell, progress)
    timings["read and features"] = time.perf_counter() - t
    folds = make_folds(data.group(spec.split.by), data.mine >= 0.5, spec.split)
    warnings = one_class_splits(folds, data.mine >= 0.5, spec.split.by)
    for warning in warnings:
        progress(f"[study] warning: {warning}")
    progress(f"[study] {len(data):,} rows, {len(data.features)} features, {len(folds)} fold(s) by {spec.split.by}")
    rng = np.random.default_rng(spec.seed)
    path_studies: dict[str, PathStudy] = {}
    for kind in spec.paths:
        t = time.perf_counter()
        path_studies[kind] = _path_study(kind, data, folds, spec, rng, progress)
        timings[f"{kind} path"] = time.perf_counter() - t
        progress(f"[study] {kind} path: {len(folds)} fold(s) x {len(path_studies[kind].penalties)} penalties")
    t = time.perf_counter()
    models = pd.DataFrame([r for fold in folds for r in _model_rows(data, fold, folds, spec, path_studies, progress)])
    timings["other models"] = time.perf_counter() - t
    train0 = folds[0].train
    uni = univariate_auc(data.X[train0], data.mine[train0], data.features)
    ranking = rank_features(path_studies, uni)
    return StudyResult(
        spec,
        data.features,
        folds,
        {"rows": len(data), "mine_rows": int((data.mine >= 0.5).sum())},
        data.dropped,
        path_studies,
        models,
        ranking,
        uni,
        timings,
        warnings=warnings,
    )


def one_class_splits(folds: list[Fold], mine: np.ndarray, by: str) -> list[str]:
    """Warnings for validation splits of one class (their AUC is undefined: the L1-logistic penalty is then chosen on
    the training split); InputError for a training split of one class, on which no classifier can be fitted."""
    fix = (f"split by groups that mix mines and background: more groups (--split-by other than {by!r}), "
           "--scheme kfold, or a larger --val-fraction")  # fmt: skip
    warnings = []
    for fold in folds:
        for split, rows in (("train", fold.train), ("validation", fold.val)):
            classes = set(np.unique(mine[rows]).tolist()) if rows.any() else set()
            if len(classes) == 2 or (split == "validation" and not rows.any()):
                continue
            what = "no rows" if not classes else ("only mine pixels" if classes == {True} else "no mine pixel")
            if split == "train":
                raise InputError(f"fold {fold.name}: the training split holds {what}: nothing to learn; {fix}.")
            warnings.append(f"fold {fold.name}: the validation split holds {what}, so validation AUC is undefined "
                            f"(null in summary.json) and the L1-logistic penalty was chosen on training data; {fix}")  # fmt: skip
    return warnings


def _study_data(
    data: Dataset | str | os.PathLike,
    spec: StudySpec,
    group_columns: tuple[str, ...],
    sample_per_cell: int | None,
    progress: Callable[[str], None],
) -> Dataset:
    """The dataset to study: read from a pixel-table path, or the given one without pixels near an edge."""
    if not isinstance(data, Dataset):
        cols = tuple(dict.fromkeys([*group_columns, *([spec.split.by] if spec.split.by != "cell" else [])]))
        data = load_dataset(
            data,
            spec.features,
            group_columns=cols,
            sample_per_cell=sample_per_cell,
            edge_m=spec.target.edge_m,
            seed=spec.seed,
            progress=progress,
        )
    elif spec.target.edge_m > 0:
        data = data.subset(np.abs(data.distance) >= spec.target.edge_m)
    if data.features != spec.features.names:
        raise InputError("the dataset's features differ from spec.features; build it with the same FeatureSpec.")
    return data


def _path_study(
    kind: str,
    data: Dataset,
    folds: list[Fold],
    spec: StudySpec,
    rng: np.random.Generator,
    progress: Callable[[str], None],
) -> PathStudy:
    """One kind of path fitted on each fold's training rows (the first fold's penalties reused by the others),
    with its metrics per fold, penalty and split and the chosen penalty. ``rng`` samples the L1-logistic's rows."""
    y_lasso = data.target(spec.target)
    thr = 0.5 if spec.target.kind == "binary" else 0.0
    fits, rows = [], []
    grid = None
    for fold in folds:
        tr = np.flatnonzero(fold.train)
        if kind == "lasso":
            fit = P.lasso(  # data.X[tr] is a copy (an index array): centred in place, no second copy
                data.X[tr], y_lasso[tr], data.features, spec.n_penalties, spec.eps, alphas=grid, overwrite_X=True
            )
            grid = fit.penalties
        else:
            if spec.max_logistic_rows is not None and len(tr) > spec.max_logistic_rows:
                tr = np.sort(rng.choice(tr, spec.max_logistic_rows, replace=False))
            fit = P.logistic(
                data.X[tr], data.mine[tr], data.features, spec.n_logistic_penalties, spec.logistic_span,
                Cs=None if grid is None else grid, solver=spec.solver, seed=spec.seed, progress=progress,
            )  # fmt: skip
            grid = fit.C
        fits.append(fit)
        splits = {
            s: (data.X[m], y_lasso[m], data.mine[m])
            for s, m in (("train", fold.train), ("val", fold.val), ("test", fold.test))
        }
        rows += [{"fold": fold.name, **r} for r in P.path_metrics(fit, splits, lasso_threshold=thr)]
    metrics = pd.DataFrame(rows)
    return PathStudy(kind, fits, metrics, choose_penalty(kind, metrics))


def _model_rows(
    data: Dataset,
    fold: Fold,
    folds: list[Fold],
    spec: StudySpec,
    path_studies: dict[str, PathStudy],
    progress: Callable[[str], None],
) -> list[dict]:
    """One fold's rows of the models table: the other models (``compare_models``), then each path's chosen
    penalty on the validation and test rows, with its per-pixel cost."""
    out = []
    if spec.models:
        splits = {s: (data.X[m], data.mine[m]) for s, m in (("val", fold.val), ("test", fold.test))}
        train = (data.X[fold.train], data.mine[fold.train])
        for r in compare_models(spec.models, train, splits, spec.max_model_rows, spec.seed, progress):
            out.append({"fold": fold.name, **r})
    for kind, ps in path_studies.items():
        i = [f.name for f in folds].index(fold.name)
        fit, k = ps.fits[i], ps.best_index
        m = ps.metrics[(ps.metrics["fold"] == fold.name) & (ps.metrics["penalty_index"] == k)]
        used = np.flatnonzero(fit.coefs[:, k] != 0)
        w = fit.coefs[used, k] / fit.standardizer.scale[used]
        b = fit.intercepts[k] - float(fit.standardizer.mean[used] @ w)
        cost = apply_cost(lambda A, w=w, b=b, u=used: A[:, u] @ w + b, data.X[fold.test])
        label = "L1-logistic (chosen penalty)" if kind == "logistic" else "LASSO (chosen penalty)"
        for _, row in m[m["split"].isin(["val", "test"])].iterrows():
            out.append(
                {
                    "fold": fold.name,
                    "model": label,
                    "split": row["split"],
                    **{c: row[c] for c in ("auc", "f1", "precision", "recall", "threshold")},
                    "fit_s": float("nan"),
                    "train_rows": fit.n_train,
                    "apply_us_per_pixel": cost * 1e6,
                    "features_used": len(used),
                }
            )
    return out


def rank_features(path_studies: dict[str, PathStudy], uni: dict[str, float]) -> pd.DataFrame:
    """The answer to "which channel combinations enhance mines": features by when they leave the paths.

    Primary order: the L1-logistic path's drop-out order (mine vs not; the last features to reach zero
    as the penalty grows carry the most separating power the others do not); the LASSO's order when
    there is no logistic path. ``direction`` says whether the feature is higher or lower on mines.
    """

    primary = "logistic" if "logistic" in path_studies else next(iter(path_studies))
    base = path_studies[primary].dropout()
    out = pd.DataFrame(
        {
            "rank": base["rank"],
            "feature": base["feature"],
            "direction": np.where(
                base["sign"] > 0, "higher on mines", np.where(base["sign"] < 0, "lower on mines", "-")
            ),
            f"{primary}_last_nonzero_penalty": base["last_nonzero_penalty"],
        }
    )
    for kind, ps in path_studies.items():
        if kind != primary:
            d = ps.dropout().set_index("feature")
            out[f"{kind}_rank"] = out["feature"].map(d["rank"])
    out["univariate_auc"] = out["feature"].map(uni)
    return out


def _atomic_dir(out: Path):
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".partial-{out.name}-"))


def write_outputs(result: StudyResult, out_dir: str | os.PathLike) -> list[Path]:
    """Tables (CSV and Parquet), plots (PNG), the chosen linear models (JSON; none for a path whose chosen
    penalty keeps no feature) and summary.json.

    Written into a temporary folder beside ``out_dir`` and moved in only when all are written.
    """

    out = Path(out_dir)
    tmp = _atomic_dir(out)
    try:
        tables: dict[str, pd.DataFrame] = {"ranking": result.ranking, "models": result.models}
        for kind, ps in result.paths.items():
            tables[f"metrics_{kind}"] = ps.metrics
            tables[f"dropout_{kind}"] = ps.dropout()
            rows = []
            for i, fit in enumerate(ps.fits):
                for k, pen in enumerate(fit.penalties):
                    for j, f in enumerate(fit.features):
                        rows.append((result.folds[i].name, k, float(pen), f, float(fit.coefs[j, k])))
            tables[f"path_{kind}"] = pd.DataFrame(rows, columns=["fold", "penalty_index", "penalty", "feature", "coef"])
        for name, df in tables.items():
            df.to_csv(tmp / f"{name}.csv", index=False)
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        save_all(result, tmp)
        for kind, ps in result.paths.items():
            if np.any(ps.fits[0].coefs[:, ps.best_index] != 0):  # a model with no feature has nothing to deploy
                export_linear_model(result, tmp / f"model_{kind}.json", kind=kind)
        (tmp / "summary.json").write_text(json.dumps(json_safe(summary(result)), indent=2, allow_nan=False))
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
            written.append(out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.outputs = written
    return written


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON's null) and numpy scalars as Python numbers: JSON has no NaN,
    and a bare ``NaN`` makes the file unreadable to strict parsers (browsers, jq, most languages)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def summary(result: StudyResult) -> dict:
    """The study's headline numbers (JSON-friendly)."""
    out = {
        "spec": asdict(result.spec),
        "rows": result.rows,
        "dropped": result.dropped,
        "folds": [
            {
                "name": f.name,
                "train": list(map(str, f.train_groups)),
                "val": list(map(str, f.val_groups)),
                "test": list(map(str, f.test_groups)),
            }
            for f in result.folds
        ],
        "top_features": result.ranking["feature"].head(10).tolist(),
        "timings_s": result.timings,
        "warnings": result.warnings,
    }
    for kind, ps in result.paths.items():
        m = ps.metrics[ps.metrics["penalty_index"] == ps.best_index].groupby("split").mean(numeric_only=True)
        out[kind] = {
            "chosen_penalty_index": ps.best_index,
            "chosen_penalty": float(ps.penalties[ps.best_index]),
            "nonzero": int(m["nonzero"].iloc[0]),
            "metrics": {
                s: {k: float(v) for k, v in row.items() if k not in ("penalty_index", "nonzero")}
                for s, row in m.iterrows()
            },
        }
    return out


def export_linear_model(
    result: StudyResult, path: str | os.PathLike, kind: str = "logistic", penalty: int | str = "best", fold: int = 0
) -> LinearModel:
    """Write the linear model at one penalty of a path as JSON (the hand-off to the classifiers), and return it.

    The file is ``contracts.models.LinearModel``'s JSON: ``kind`` ("lasso" | "logistic"), ``features``
    (names of ``contracts.features``; only those with a non-zero weight), ``mean``, ``scale``, ``coef``
    (applied to ``(x - mean) / scale``), ``intercept``, ``threshold``, ``target``, ``source``.
    Logistic: score = intercept + coef . z is the log-odds; ``threshold`` is the probability above
    which a pixel is called mine (the validation's best-F1 threshold at that penalty). LASSO:
    score = intercept + coef . z predicts the target; ``threshold`` is the score above which a pixel
    is called mine, also the validation's best F1 (without a validation split: 0 for the distance
    target, the mine edge, as every TargetSpec transform keeps 0 there; 0.5 for binary).
    ``penalty``: "best" (``choose_penalty``), an index along the path, or "nonzero:K" (the
    largest penalty with at most K non-zero weights).
    """
    if kind not in result.paths:
        raise InputError(f"export_linear_model: the study has no {kind!r} path; it has {sorted(result.paths)}.")
    ps = result.paths[kind]
    if not 0 <= fold < len(ps.fits):
        raise InputError(f"export_linear_model: fold {fold} out of range (0..{len(ps.fits) - 1}).")
    fit = ps.fits[fold]
    k = _penalty_index(ps, fit, penalty)
    used = np.flatnonzero(fit.coefs[:, k] != 0)
    if not len(used):
        raise InputError(f"export_linear_model: no feature has a non-zero weight at penalty index {k}; "
                         "choose a smaller penalty (a larger index or 'nonzero:K').")  # fmt: skip
    m = ps.metrics
    sel = m[(m["fold"] == result.folds[fold].name) & (m["penalty_index"] == k) & (m["split"] == "val")]
    target = "binary" if kind == "logistic" else result.spec.target.kind
    default = 0.0 if target == "distance" else 0.5
    t = result.spec.target
    model = LinearModel(
        kind=kind,
        features=tuple(fit.features[j] for j in used),
        mean=tuple(float(fit.standardizer.mean[j]) for j in used),
        scale=tuple(float(fit.standardizer.scale[j]) for j in used),
        coef=tuple(float(fit.coefs[j, k]) for j in used),
        intercept=float(fit.intercepts[k]),
        threshold=float(sel["threshold"].iloc[0]) if len(sel) else default,
        target=target,
        source=(
            f"gee_mining.ml.study {kind} path, fold {result.folds[fold].name}, penalty index {k} "
            f"({'lambda=1/(C n)' if kind == 'logistic' else 'alpha'}={float(fit.penalties[k]):.6g}), "
            f"{len(used)} of {len(fit.features)} features, {fit.n_train} training rows"
            + (
                f"; target = -distance ({t.transform}, scale {t.scale_m:g} m): positive inside mines"
                if kind == "lasso" and target == "distance"
                else ""
            )
        ),
    )
    model.write(path)
    return model


def _penalty_index(ps: PathStudy, fit: P.Path, penalty: int | str) -> int:
    """The index along the path of ``penalty``: "best", "nonzero:K" or an index (see ``export_linear_model``)."""
    if penalty == "best":
        return ps.best_index
    if isinstance(penalty, str) and penalty.startswith("nonzero:"):
        want = int(penalty.split(":", 1)[1])
        ok = np.flatnonzero(fit.nonzero() <= want)
        return int(ok.max()) if len(ok) else 0
    try:
        k = int(penalty)
    except (TypeError, ValueError):
        raise InputError(
            f"penalty {penalty!r}: use 'best', 'nonzero:K' or an index 0..{len(fit.penalties) - 1}."
        ) from None
    if not 0 <= k < len(fit.penalties):
        raise InputError(f"penalty index {k}: use 0..{len(fit.penalties) - 1}.")
    return k

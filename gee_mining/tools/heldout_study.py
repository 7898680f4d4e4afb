"""``gee-mining evaluate study``: the pixel study's LASSO model chosen on train worlds, measured on held-out worlds.

Choice, on the train worlds only: the LASSO path of the study's distance target (``ml.study.paths.lasso`` on the
12 bands and their 66 normalised differences, standardised) is fitted leaving each train world out in turn and
scored on the world left out; the penalty is the study's own rule (:func:`gee_mining.ml.study.choose_penalty`:
the sparsest within 1 % of the best RMSE, averaged over the left-out worlds), and the threshold is the best-F1
threshold of the left-out worlds' predictions pooled. The model deployed is the path refitted on every train
world at that penalty, compiled to ``ee`` by ``ml.classify.compile_linear``.

Stability (:func:`ranking_stability`): the path fitted on each train world alone and on all of them pooled, the
order in which features enter each (the study's drop-out order read from the other end), the share of worlds
whose first ``top_k`` hold each feature, and the Spearman correlation of the entry ranks between every two
worlds. The pyramid's screening model (``pyramid.evaluate.fit_screening``, the evaluation's default kind, flagged where
p > 0.5) is measured beside it, on the same held-out worlds and real scenes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

import ee
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from gee_mining.contracts.models import LinearModel
from gee_mining.io.files import write_json
from gee_mining.ml.classify import compile_linear
from gee_mining.ml.study import Dataset, FeatureSpec, TargetSpec, choose_penalty, dropout_order, from_frame, lasso
from gee_mining.ml.study.paths import best_f1_threshold, path_metrics
from gee_mining.pyramid.evaluate import fit_screening
from gee_mining.pyramid.probability import probability_image
from gee_mining.tools import heldout as H
from gee_mining.tools.heldout_report import study_report

TARGET = TargetSpec(kind="distance")  # the study's default target: metres to the edge, clipped at 200 m
N_PENALTIES = 40


def train_dataset(worlds: H.Worlds, spec: H.HeldoutSpec, say: Callable[[str], None]) -> Dataset:
    """The train worlds' pixel samples as the study's ``Dataset`` (features by ``ml.study``'s grammar)."""
    tables = []
    for seed, sim in worlds.train.items():
        tables.append(H.sample_world(sim, seed, spec.pixels))
        say(f"[evaluate] sampled {len(tables[-1])} pixels of train world {seed}")
    return from_frame(pd.concat(tables, ignore_index=True), FeatureSpec(), group_columns=("world",))


def choose_lasso(data: Dataset) -> tuple[LinearModel, pd.DataFrame]:
    """The LASSO model chosen leaving one train world out (module docstring), refitted on all train worlds."""
    y, world = data.target(TARGET), data.group("world")
    full = lasso(data.X, y, data.features, N_PENALTIES)
    rows, held = [], []
    for w in np.unique(world):
        fit = lasso(data.X[world != w], y[world != w], data.features, alphas=full.penalties)
        out = world == w
        rows += [{"fold": f"world={w}", **r} for r in path_metrics(fit, {"val": (data.X[out], y[out], data.mine[out])})]
        held.append((fit, out))
    metrics = pd.DataFrame(rows)
    k = choose_penalty("lasso", metrics)
    scores = np.concatenate([fit.predict(data.X[out], k) for fit, out in held])
    truth = np.concatenate([data.mine[out] for _, out in held])
    threshold = best_f1_threshold(truth, scores)
    used = np.flatnonzero(full.coefs[:, k] != 0)
    if not len(used):
        used = np.array([int(np.argmax(np.abs(full.coefs[:, -1])))])  # never an empty model: the last feature left
    model = LinearModel(
        "lasso", [data.features[j] for j in used], full.standardizer.mean[used], full.standardizer.scale[used],
        full.coefs[used, k], float(full.intercepts[k]), threshold, "distance",
        f"gee-mining evaluate study: LASSO (distance target) on {len(np.unique(world))} train worlds, penalty index "
        f"{k} (alpha={full.penalties[k]:.4g}) chosen leaving one train world out, threshold = best F1 there",
    )  # fmt: skip
    return model, metrics


def entry_order(X: np.ndarray, y: np.ndarray, features: list[str]) -> list[str]:
    """Features in the order they enter the LASSO path as the penalty falls (never entering: last, in input order)."""
    return [name for name, _, _ in dropout_order(lasso(X, y, features, N_PENALTIES))]


def ranking_stability(orders: dict[str, list[str]], top_k: int = 5) -> dict[str, Any]:
    """How alike the worlds' entry orders are: each feature's rank per world, the share of worlds (``pooled``
    excluded) whose first ``top_k`` hold it, and the Spearman correlation of the ranks between every two worlds."""
    worlds = [w for w in orders if w != "pooled"]
    features = orders[worlds[0]]
    ranks = {w: {f: i + 1 for i, f in enumerate(o)} for w, o in orders.items()}
    table = [{"feature": f, **{f"rank_{w}": ranks[w][f] for w in orders},
              "top_k_share": sum(ranks[w][f] <= top_k for w in worlds) / len(worlds)} for f in features]  # fmt: skip
    table.sort(key=lambda r: (-r["top_k_share"], r.get("rank_pooled", 0)))
    pairs = [{"worlds": [a, b], "spearman": float(spearmanr([ranks[a][f] for f in features],
                                                            [ranks[b][f] for f in features]).statistic)}
             for a, b in combinations(worlds, 2)]  # fmt: skip
    rho = [p["spearman"] for p in pairs]
    return {"top_k": top_k, "orders": {w: o[:10] for w, o in orders.items()}, "features": table[:15],
            "pairs": pairs, "spearman_mean": float(np.mean(rho)) if rho else None,
            "spearman_min": float(np.min(rho)) if rho else None,
            "top_k_always": [r["feature"] for r in table if r["top_k_share"] == 1.0]}  # fmt: skip


def stability(data: Dataset, top_k: int = 5) -> dict[str, Any]:
    """:func:`ranking_stability` of the path fitted on each train world alone and on all of them."""
    y, world = data.target(TARGET), data.group("world")
    orders = {f"world_{w}": entry_order(data.X[world == w], y[world == w], data.features) for w in np.unique(world)}
    orders["pooled"] = entry_order(data.X, y, data.features)
    return ranking_stability(orders, top_k)


def evaluate_study(out_dir: str | os.PathLike, spec: H.HeldoutSpec, progress: Callable[[str], None] | None = None,
                   command: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Prepare the worlds, choose the LASSO model on the train worlds, measure it (and the pyramid's screening model)
    on the held-out worlds and the real scenes; writes ``evaluation_study.json`` and ``report_study/report.html`` in ``out_dir``
    (``command``: the command line the report names)."""
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    worlds = H.prepare(out, spec, say)
    data = train_dataset(worlds, spec, say)
    model, _ = choose_lasso(data)
    say(f"[evaluate] LASSO model chosen on {len(worlds.train)} train worlds: {len(model.features)} feature(s)")
    screening = fit_screening(worlds.train, spec.worlds_spec())
    models = {"lasso": lambda img: compile_linear(model, img).select("mine"),
              "pyramid_screening": lambda img: probability_image(ee, screening, img).gt(0.5)}  # fmt: skip
    per_model = {name: [] for name in models}
    for seed, sim in worlds.test.items():
        for name, make in models.items():
            per_model[name].append(H.measure_flags(make(ee.Image(sim.composite_id)), sim, seed,
                                                   worlds.truth_ids[seed], name, spec))  # fmt: skip
        r = per_model["lasso"][-1]
        say(f"[evaluate] test world {seed}: LASSO found {r.detected}/{r.mines} mines, "
            f"{r.detected_pixels}/{r.mine_pixels} mine pixels ({r.seconds:.0f} s)")  # fmt: skip
    report = {
        "SIMULATED": True,
        "what": "The study's LASSO model chosen on the train worlds only, measured on the held-out worlds",
        "protocol": {"train_seeds": list(spec.train_seeds), "test_seeds": list(spec.test_seeds),
                     "spec": H.spec_json(spec), "model": model.to_json(), "screening_model": screening.to_json()},
        "stability": stability(data),
        "models": {name: {"worlds": [w.as_json(spec) for w in ws], "pooled": H.pooled(ws, spec)}
                   for name, ws in per_model.items()},
        "real": H.real_false_alarms(models, worlds, say),
    }  # fmt: skip
    report["pooled"] = report["models"]["lasso"]["pooled"]
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out / "evaluation_study.json", report)
    study_report(out, report, command)
    return report

"""``gee-mining evaluate classify``: Earth Engine classifiers chosen on train worlds, measured on held-out worlds.

Each classifier (``ee.Classifier.<name>``, as ``gee-mining classify`` trains it, on ``ml.classify``'s default
features) gets a few hyper-parameter settings (:data:`CANDIDATES`); each setting is trained on the pixel samples
of all train worlds but one and scored on the one left out (``ml.classify.accuracy``: ``errorMatrix`` computed
by the engine), for every train world in turn. The setting with the best mean F1 of the mine class is trained
once more on every train world and frozen; it then classifies each held-out world (``Image.classify`` on the
composite's features) and the real mine-free scenes. The samples are fetched once and sent back as constant
features (a few thousand): a SIMULATED evaluation's size, not a global run's (that one exports its samples,
``ml.classify.exported_samples``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ee
import numpy as np
import pandas as pd

from gee_mining.contracts.bands import MINE_BAND
from gee_mining.errors import InputError
from gee_mining.io.files import write_json
from gee_mining.ml.classify import DEFAULT_FEATURES, ClassifySpec, accuracy, train
from gee_mining.steps.indices import feature_image
from gee_mining.tools import heldout as H
from gee_mining.tools.heldout_report import classify_report

CANDIDATES: dict[str, tuple[dict[str, Any], ...]] = {
    "smileRandomForest": ({"numberOfTrees": 30, "minLeafPopulation": 1, "seed": 0},
                          {"numberOfTrees": 30, "minLeafPopulation": 10, "seed": 0}),
    "smileCart": ({"maxNodes": 16}, {"maxNodes": 64}),
    "smileGradientTreeBoost": ({"numberOfTrees": 30, "shrinkage": 0.1, "seed": 0},),
    "minimumDistance": ({"metric": "mahalanobis"},),
    "smileNaiveBayes": ({},),
    "libsvm": ({"kernelType": "RBF", "gamma": 0.5, "cost": 1},),
}  # fmt: skip
"""The hyper-parameter settings tried for each classifier (chosen among on the train worlds only)."""


def constant_samples(table: pd.DataFrame, features: Sequence[str]):
    """A pixel table's rows as a constant ``ee.FeatureCollection`` (the features and ``_mine``)."""
    rows = table[[*features, MINE_BAND]].to_dict("records")
    return ee.FeatureCollection(
        [ee.Feature(None, {**{f: float(r[f]) for f in features}, MINE_BAND: int(r[MINE_BAND])}) for r in rows]
    )


def choose(name: str, tables: dict[int, pd.DataFrame], features: Sequence[str],
           say: Callable[[str], None]) -> tuple[ClassifySpec, list[dict[str, Any]]]:  # fmt: skip
    """The setting of classifier ``name`` with the best mean F1 (mine class) over the left-out train worlds."""
    scored = []
    for params in CANDIDATES[name]:
        spec = ClassifySpec(features=tuple(features), classifier=name, params=dict(params))
        f1 = []
        for w in tables:
            rest = pd.concat([t for v, t in tables.items() if v != w], ignore_index=True)
            acc = accuracy(train(constant_samples(rest, features), spec), constant_samples(tables[w], features))
            f1.append(acc.fscore[1])
        scored.append({"params": dict(params), "left_out_f1": f1, "mean_f1": float(np.mean(f1))})
        say(f"[evaluate] {name} {params}: F1 {np.mean(f1):.3f} on left-out train worlds")
    best = max(range(len(scored)), key=lambda i: scored[i]["mean_f1"])  # ties: the first setting
    chosen = ClassifySpec(features=tuple(features), classifier=name, params=scored[best]["params"])
    return chosen, scored


def evaluate_classify(out_dir: str | os.PathLike, spec: H.HeldoutSpec, classifiers: Sequence[str] = ("smileRandomForest", "smileCart"),
                      progress: Callable[[str], None] | None = None, command: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Prepare the worlds, choose each classifier's setting on the train worlds, measure the frozen classifiers on
    the held-out worlds and the real scenes; writes ``evaluation_classify.json`` and ``report_classify/report.html``
    (``command``: the command line the report names)."""
    bad = [c for c in classifiers if c not in CANDIDATES]
    if not classifiers or bad:
        raise InputError(f"classifiers {list(bad or classifiers)}: give some of {', '.join(CANDIDATES)}.")
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    worlds = H.prepare(out, spec, say)
    features = list(DEFAULT_FEATURES)
    tables = {s: H.sample_world(sim, s, spec.pixels, features) for s, sim in worlds.train.items()}
    everything = constant_samples(pd.concat(tables.values(), ignore_index=True), features)
    models, choices = {}, {}
    for name in classifiers:
        chosen, scored = choose(name, tables, features, say)
        clf = train(everything, chosen)
        models[name] = lambda img, c=clf: feature_image(img, features).classify(c)
        choices[name] = {"chosen": chosen.params, "settings": scored}
    per_model = {name: [] for name in models}
    for seed, sim in worlds.test.items():
        for name, make in models.items():
            per_model[name].append(H.measure_flags(make(ee.Image(sim.composite_id)), sim, seed,
                                                   worlds.truth_ids[seed], name, spec))  # fmt: skip
        say(f"[evaluate] test world {seed}: " + ", ".join(
            f"{n} found {ws[-1].detected}/{ws[-1].mines} mines" for n, ws in per_model.items()))  # fmt: skip
    report = {
        "SIMULATED": True,
        "what": "Earth Engine classifiers chosen on the train worlds only, measured on the held-out worlds",
        "protocol": {"train_seeds": list(spec.train_seeds), "test_seeds": list(spec.test_seeds),
                     "spec": H.spec_json(spec), "features": features, "choices": choices},
        "models": {name: {"worlds": [w.as_json(spec) for w in ws], "pooled": H.pooled(ws, spec)}
                   for name, ws in per_model.items()},
        "real": H.real_false_alarms(models, worlds, say),
    }  # fmt: skip
    report["pooled"] = report["models"][classifiers[0]]["pooled"]
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out / "evaluation_classify.json", report)
    classify_report(out, report, command)
    return report

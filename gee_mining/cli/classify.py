"""``gee-mining classify evaluate | deploy``.

- ``evaluate``: samples of a grid table's cells (split by cell) exported once to table assets (batch), an
  Earth Engine classifier trained on the training cells' asset, its ConfusionMatrix figures on the
  held-out cells' asset (one answer of a fixed size; printed and written as JSON).
- ``deploy``: a linear model JSON (the pixel study's) compiled to an image expression, or an Earth
  Engine classifier trained on the table's cells (their samples exported once to a table asset), trained
  once and saved as a classifier asset (``Export.classifier.toAsset``; ``--classifier-asset`` deploys a saved
  one), classifying each cell with ``ee.Classifier.load``: probability maps exported as GeoTIFFs to
  ``gs://BUCKET/PREFIX/<cell>.tif``. A classifier Earth Engine cannot save (libsvm, ...) is trained in
  each cell's task, from the sample asset.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from gee_mining.batch.tasks import run_tasks, succeeded
from gee_mining.cli.common import connect_with_polygons, parse_key_values
from gee_mining.cli.output import add_json_option, emit, progress
from gee_mining.contracts.models import LinearModel
from gee_mining.io.grid_table import read_grid_table
from gee_mining.ml.classify.model import compile_linear
from gee_mining.ml.classify.pipeline import (
    CLASSIFIERS,
    DEFAULT_FEATURES,
    SAMPLING,
    SAVED_CLASSIFIERS,
    ClassifySpec,
    accuracy,
    cell_features,
    classifier_asset_id,
    export_probability,
    exported_classifier,
    exported_samples,
    held_out_samples,
    load_classifier,
    probability_image,
    samples_asset_id,
    split_cells,
    train,
    training_samples,
)
from gee_mining.steps.sentinel2 import CompositeSpec


def _spec(args):

    params = parse_key_values(args.param, "--param", "numberOfTrees=100 (a classifier argument)")
    features = tuple(f.strip() for f in args.features.split(",")) if args.features else DEFAULT_FEATURES
    return ClassifySpec(
        features=features,
        classifier=args.classifier,
        params=params if params or args.classifier != "smileRandomForest" else {"numberOfTrees": 50},
        sampling=args.sampling,
        points_per_class=args.points,
        test_fraction=args.test_fraction,
        seed=args.seed,
        composite=CompositeSpec(start=args.start, end=args.end),
    )


def _rows(args):

    rows = read_grid_table(args.grid)
    if args.cells:
        wanted = set(args.cells.split(","))
        rows = [r for r in rows if r["name"] in wanted]
    return rows[: args.limit] if args.limit else rows


def _samples_prefix(args) -> str:
    """The table asset prefix of the exported samples (``--samples-asset``)."""
    return args.samples_asset or f"projects/{args.project}/assets/gee-mining-samples"


def _evaluate(args) -> int:

    polygons = connect_with_polygons(args)
    spec = _spec(args)
    train_rows, test_rows = split_cells(_rows(args), spec.test_fraction, spec.seed)
    print(f"{len(train_rows)} training cells, {len(test_rows)} held-out cells; sampling ({spec.sampling})")
    train_fc, test_fc = held_out_samples(train_rows, test_rows, polygons, spec, _samples_prefix(args), print)
    acc = accuracy(train(train_fc, spec), test_fc)
    result = {"spec": {"classifier": spec.classifier, "params": spec.params, "features": list(spec.features),
                       "sampling": spec.sampling},
              "train_cells": [r["name"] for r in train_rows], "test_cells": [r["name"] for r in test_rows],
              **acc.as_dict()}  # fmt: skip
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))

    def human() -> None:
        print(f"{spec.classifier} on held-out cells: accuracy {acc.accuracy:.3f}, kappa {acc.kappa:.3f}, "
              f"producers' {acc.producers}, consumers' {acc.consumers}, F1 {acc.fscore} ({acc.samples} samples)")  # fmt: skip
        print(f"confusion matrix (rows actual, columns predicted, classes {acc.order}): {acc.matrix}")
        if args.out:
            print(f"-> {args.out}")

    emit(args, result, human)
    return 0


def _classifier(args, rows, polygons, spec):
    """The deployed classifier: a saved one (``--classifier-asset``), or trained once on the cells' samples
    (exported once to a table asset) and saved as a classifier asset; each cell's task loads it. A
    classifier Earth Engine cannot save is trained in each cell's task, from the sample asset."""
    if args.classifier_asset:
        return load_classifier(args.classifier_asset)
    asset = samples_asset_id(_samples_prefix(args), rows, polygons, spec, "all")
    samples = exported_samples({asset: training_samples(rows, polygons, spec)}, progress=print)[asset]
    if spec.classifier not in SAVED_CLASSIFIERS:
        print(f"[classifier] {spec.classifier} cannot be saved as an asset: trained in each cell's task")
        return train(samples, spec)
    return exported_classifier(samples, spec, classifier_asset_id(asset, spec), progress=print)


def _deploy(args) -> int:

    polygons = connect_with_polygons(args)
    spec = _spec(args)
    rows = _rows(args)
    if args.linear:
        model = LinearModel.read(args.linear)

        lin_spec = replace(spec, features=model.features)
        images = [
            compile_linear(model, cell_features(r, None, lin_spec, labels=False), features_ready=True).select(
                "probability"
            )
            for r in rows
        ]
    else:
        images = [probability_image(r, _classifier(args, rows, polygons, spec), spec) for r in rows]
    tasks = [export_probability(row, image, args.out) for row, image in zip(rows, images, strict=True)]
    statuses = run_tasks(tasks, progress=progress(args))
    done = sum(succeeded(s) for s in statuses)
    for row, st in zip(rows, statuses, strict=True):
        if not succeeded(st):
            print(f"failed: {row['name']}: {st.get('error_message', st['state'])}")
    print(f"{done} of {len(tasks)} probability maps exported to {args.out}")
    return 0 if done == len(tasks) else 1


def add_cli(sub) -> None:

    p = sub.add_parser("classify", help="Step 3 server-side: Earth Engine classifiers, accuracy, probability maps")
    csub = p.add_subparsers(dest="classify_command", required=True)
    for name, func, text in (
        ("evaluate", _evaluate, "train an Earth Engine classifier on some cells, accuracy on held-out cells"),
        ("deploy", _deploy, "export probability maps per cell (a linear model JSON, or a classifier trained here)"),
    ):
        q = csub.add_parser(name, help=text)
        q.add_argument("--grid", required=True, help="grid table (Parquet/CSV from `gee-mining grid`)")
        q.add_argument("--polygons", required=True, help="mine polygons: a table asset id, or a file (local engine)")
        q.add_argument("--cells", help="comma-separated cell names (default: all)")
        q.add_argument("--limit", type=int, help="at most this many cells")
        q.add_argument("--features", help="comma-separated features: bands, ND_a_b, index names")
        q.add_argument("--classifier", default="smileRandomForest", choices=CLASSIFIERS, help="Earth Engine classifier")
        q.add_argument("--param", action="append", help="classifier argument name=value (repeatable)")
        q.add_argument("--sampling", default="stratified", choices=SAMPLING, help="how training pixels are drawn")
        q.add_argument("--points", type=int, default=200, help="samples per class and cell")
        q.add_argument("--test-fraction", type=float, default=0.3, help="share of cells held out")
        q.add_argument("--seed", type=int, default=0, help="seed of the cell split and the samples")
        q.add_argument("--start", default="2019-01-01", help="composite period start")
        q.add_argument("--end", default="2020-01-01", help="composite period end, exclusive")
        q.add_argument("--engine", default="local", choices=("local", "earthengine"),
                       help="which engine runs the graphs: the local engine (offline) or Earth Engine")  # fmt: skip
        q.add_argument("--project", default="gee-mining-local", help="Cloud project (Earth Engine) or local project id")
        q.add_argument("--catalog", help="local engine catalog TOML")
        q.add_argument("--storage", help="local engine storage folder (exports)")
        q.add_argument("--samples-asset", help="table asset prefix for the exported samples "
                       "(default projects/PROJECT/assets/gee-mining-samples; reused when they exist)")  # fmt: skip
        if name == "evaluate":
            q.add_argument("--out", help="write the figures as JSON here")
            add_json_option(q, "the held-out accuracy figures")
        else:
            q.add_argument("--out", required=True, help="gs://BUCKET/PREFIX for the GeoTIFFs")
            q.add_argument("--linear", help="a linear model JSON (kind, features, mean, scale, coef, ...)")
            q.add_argument("--classifier-asset", help="deploy this saved classifier (ee.Classifier.load) instead of "
                           "training one")  # fmt: skip
        q.set_defaults(func=func)

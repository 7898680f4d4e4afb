"""``gee-mining study run``: the pixel study on a pixel table, written to a folder."""

from __future__ import annotations

from pathlib import Path

from gee_mining.cli.output import add_json_option, emit, print_figures, progress
from gee_mining.contracts.bands import BANDS
from gee_mining.ml.study.data import FeatureSpec, TargetSpec
from gee_mining.ml.study.run import StudySpec, export_linear_model, json_safe, run_study, summary, write_outputs
from gee_mining.ml.study.splits import SplitSpec


def _list(text: str | None) -> tuple[str, ...]:
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_cli(sub) -> None:

    p = sub.add_parser("study", help="pixel study: LASSO and L1-logistic paths, splits, other models, ranked features")
    ssub = p.add_subparsers(dest="study_command", required=True)
    r = ssub.add_parser("run", help="run the study on a pixel table and write tables, plots and the chosen models")
    r.add_argument("--pixels", required=True, help="pixel table: a folder of per-cell Parquet/CSV files, or one file")
    r.add_argument("--out", required=True, help="output folder (tables CSV+Parquet, PNG plots, model_*.json)")
    r.add_argument(
        "--bands", default=",".join(BANDS), help="bands, comma-separated: the 12 of Sentinel-2 L2A unless given"
    )
    r.add_argument("--no-pairwise", action="store_true", help="leave out the pairwise normalised differences ND_a_b")
    r.add_argument("--indices", help="named spyndex indices to add, e.g. NDVI,NBR (read from the table or computed)")
    r.add_argument("--patch", type=int, default=1, help="k: features and label as k x k block means (default 1)")
    r.add_argument("--target", default="distance", help="LASSO label: distance (default) or binary")
    r.add_argument("--transform", default="clip", help="distance transform: clip (default), tanh or none")
    r.add_argument("--scale-m", type=float, default=200.0, help="clip / tanh scale in metres (default 200)")
    r.add_argument("--edge-m", type=float, default=0.0, help="drop pixels nearer a polygon edge than this (metres)")
    r.add_argument("--split-by", default="cell", help="group column: cell (default), country, or any metadata column")
    r.add_argument("--scheme", default="holdout", help="holdout (default), logo (leave one group out) or kfold")
    r.add_argument("--folds", type=int, default=5, help="folds of grouped k-fold (default 5)")
    r.add_argument("--val-fraction", type=float, default=0.2, help="holdout: share of groups for validation")
    r.add_argument("--test-fraction", type=float, default=0.2, help="holdout: share of groups kept for the test")
    r.add_argument("--paths", default="lasso,logistic", help="which paths (default lasso,logistic)")
    r.add_argument("--penalties", type=int, default=50, help="LASSO penalties (default 50)")
    r.add_argument("--logistic-penalties", type=int, default=30, help="L1-logistic penalties (default 30)")
    r.add_argument("--eps", type=float, default=1e-3, help="LASSO: smallest / largest alpha")
    r.add_argument("--span", type=float, default=3.0, help="L1-logistic: decades of C (default 3)")
    r.add_argument("--solver", default="saga", help="L1-logistic solver: saga (default) or liblinear")
    r.add_argument("--models", default="logistic,random_forest,hist_gradient_boosting", help="other models, or none")
    r.add_argument("--sample-per-cell", type=int, help="at most this many rows per cell (random)")
    r.add_argument("--max-logistic-rows", type=int, default=50_000, help="training rows for the L1-logistic path")
    r.add_argument("--max-model-rows", type=int, default=50_000, help="training rows for the other models")
    r.add_argument("--seed", type=int, default=0, help="seed of the splits and the row samples")
    r.add_argument("--export-model", help="also write the chosen linear model JSON here")
    r.add_argument("--export-kind", default="logistic", help="lasso or logistic (default)")
    r.add_argument("--export-penalty", default="best", help="best (default), an index, or nonzero:K")
    add_json_option(r, "the study's figures per path, its warnings and output folder")
    r.set_defaults(func=_run)


def _run(args) -> int:

    spec = StudySpec(
        features=FeatureSpec(_list(args.bands), not args.no_pairwise, _list(args.indices), args.patch),
        target=TargetSpec(args.target, args.transform, args.scale_m, args.edge_m),
        split=SplitSpec(args.split_by, args.scheme, args.folds, args.val_fraction, args.test_fraction, args.seed),
        paths=_list(args.paths),
        n_penalties=args.penalties,
        n_logistic_penalties=args.logistic_penalties,
        eps=args.eps,
        logistic_span=args.span,
        solver=args.solver,
        models=_list(args.models),
        max_logistic_rows=args.max_logistic_rows,
        max_model_rows=args.max_model_rows,
        seed=args.seed,
    )
    result = run_study(args.pixels, spec, sample_per_cell=args.sample_per_cell, progress=progress(args))
    write_outputs(result, args.out)
    if args.export_model:
        export_linear_model(result, args.export_model, kind=args.export_kind, penalty=args.export_penalty)
        print(f"model: {args.export_model}")
    s = json_safe(summary(result))
    figures = {k: s[k] for k in ("rows", *result.paths)}

    def human() -> None:
        print("which channel combinations enhance mines (last to leave the path first):")
        for _, row in result.ranking.head(10).iterrows():
            print(f"  {int(row['rank']):2d}. {row['feature']:<10} {row['direction']:<16} "
                  f"univariate AUC {row['univariate_auc']:.3f}")  # fmt: skip
        print_figures("figures", figures)
        for warning in result.warnings:
            print(f"warning: {warning}")
        print(f"outputs: {Path(args.out)}")

    emit(args, {**figures, "warnings": list(result.warnings), "outputs": str(Path(args.out))}, human)
    return 0

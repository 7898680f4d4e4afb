"""``gee-mining evaluate pyramid``: the pyramid trained and calibrated on some SIMULATED worlds, measured on others."""

from __future__ import annotations

from gee_mining.cli.monitor import parse_years
from gee_mining.cli.output import add_json_option, emit, print_figures, progress
from gee_mining.errors import InputError
from gee_mining.monitor.evaluate import MonitorEvaluationSpec, evaluate_monitor
from gee_mining.pyramid.evaluate import EvaluationSpec, evaluate_pyramid


def _seeds(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{option} {text!r}: comma-separated world seeds, e.g. 1,2,3.") from None


def _numbers(text: str, option: str, kind=float) -> tuple:
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{option} {text!r}: comma-separated numbers.") from None


def _margin(text: str) -> float | None:
    if text == "cv":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--margin {text!r}: cv (chosen across the train worlds) or a factor in (0, 1].") from None


def _pyramid(args) -> int:
    spec = EvaluationSpec(
        train_seeds=_seeds(args.train_seeds, "--train-seeds"), test_seeds=_seeds(args.test_seeds, "--test-seeds"),
        size_km=args.size_km, clusters=args.clusters, levels=_numbers(args.levels, "--levels"),
        zooms=_numbers(args.zooms, "--zooms", int), target_recall=args.target_recall, margin=_margin(args.margin),
        pixels=args.pixels, mine_share=args.mine_share, exhaustive=args.exhaustive, workers=args.workers,
        realism=args.realism, screening=args.screening,
    )  # fmt: skip
    report = evaluate_pyramid(args.out, spec, progress=progress(args))
    pooled = {"SIMULATED": True, "pooled": report["pooled"], "evaluation": f"{args.out}/evaluation.json"}
    emit(args, pooled, lambda: print_figures("SIMULATED, held-out worlds, pooled", report["pooled"],
                                             f"{args.out}/evaluation.json"))  # fmt: skip
    return 0


def _monitor(args) -> int:
    spec = MonitorEvaluationSpec(
        train_seeds=_seeds(args.train_seeds, "--train-seeds"), test_seeds=_seeds(args.test_seeds, "--test-seeds"),
        years=parse_years(args.years), size_km=args.size_km, months=args.months, known_mines=args.known_mines,
        new_mines=args.new_mines,
    )  # fmt: skip
    report = evaluate_monitor(args.out, spec, progress=progress(args))
    test = {k: v for k, v in report["test"].items() if k not in ("growth", "per_world")}
    result = {"SIMULATED": True, "rules": report["protocol"]["rules"], "test": test,
              "evaluation": f"{args.out}/monitor_evaluation.json"}  # fmt: skip
    emit(args, result, lambda: print_figures("SIMULATED, held-out multi-year worlds", test,
                                             f"{args.out}/monitor_evaluation.json"))  # fmt: skip
    return 0


def _add_monitor(act) -> None:
    q = act.add_parser("monitor", help="monitoring on SIMULATED multi-year worlds: tune on train seeds, report on test")
    q.add_argument("--train-seeds", required=True, help="world seeds to fit and tune on, e.g. 1,2,3")
    q.add_argument("--test-seeds", required=True, help="world seeds to report on, e.g. 11,12 (never tuned on)")
    q.add_argument("--out", required=True, help="output folder (worlds, runs, monitor_evaluation.json)")
    q.add_argument("--years", default="2019-2023", help="years of each world (default 2019-2023)")
    q.add_argument("--size-km", type=float, default=6.0, help="side of each world (km; default 6)")
    q.add_argument("--months", type=int, default=1, help="months of scenes each year (default 1)")
    q.add_argument("--known-mines", type=int, default=4, help="known mines per world (default 4)")
    q.add_argument("--new-mines", type=int, default=4, help="new mines planted per world (default 4)")
    add_json_option(q, "the rules chosen and the held-out figures")
    q.set_defaults(func=_monitor)


def add_cli(sub) -> None:
    p = sub.add_parser("evaluate", help="measure out of sample: train and calibrate on some worlds, report on others")
    act = p.add_subparsers(dest="target", required=True)
    q = act.add_parser("pyramid", help="the pyramid on SIMULATED worlds: train/calibrate seeds vs held-out seeds")
    q.add_argument("--train-seeds", required=True, help="world seeds to train and calibrate on, e.g. 1,2,3")
    q.add_argument("--test-seeds", required=True, help="world seeds to report on, e.g. 4,5 (never trained on)")
    q.add_argument("--out", required=True, help="output folder (worlds, patches, evaluation.json)")
    q.add_argument("--size-km", type=float, default=11.04, help="side of each world (km; default 11.04)")
    q.add_argument("--clusters", type=int, default=4, help="mine clusters per world (default 4)")
    q.add_argument("--levels", default="2750,1375,687.5,343.75", help="cell sizes, coarse to fine")
    q.add_argument("--zooms", default="15,16,17,18", help="zoom labels of the levels")
    q.add_argument("--target-recall", type=float, default=0.98, help="calibration target on the train worlds")
    q.add_argument("--margin", default="cv",
                   help="factor on each calibrated threshold, (0..1], or cv: chosen leaving one train world out")  # fmt: skip
    q.add_argument("--pixels", type=int, default=1000, help="sampled pixels per class per train world")
    q.add_argument("--mine-share", type=float, default=0.0007, help="share of land that is mine, for precision")
    q.add_argument("--exhaustive", action="store_true", help="also run the detector on every fine cell (slow)")
    q.add_argument("--workers", type=int, default=1, help="processes building worlds side by side")
    q.add_argument("--realism", choices=("hard", "easy"), default="hard",
                   help="the worlds' difficulty (docs/world.md): hard (default) or the old easy world")  # fmt: skip
    q.add_argument("--screening", choices=("forest", "logistic"), default="forest",
                   help="screening model: a random forest on context features (default) or the pixel-only logistic")  # fmt: skip
    add_json_option(q, "the pooled held-out figures")
    q.set_defaults(func=_pyramid)
    _add_monitor(act)

"""``gee-mining evaluate pyramid``: the pyramid trained and calibrated on some SIMULATED worlds, measured on others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gee_mining.cli.monitor import parse_years
from gee_mining.cli.output import add_json_option, emit, print_figures, progress
from gee_mining.errors import InputError
from gee_mining.monitor.evaluate import MonitorEvaluationSpec, evaluate_monitor
from gee_mining.pyramid.evaluate import MIN_PRUNE, EvaluationSpec, evaluate_pyramid
from gee_mining.pyramid.evaluate_yolo import YoloEvaluationSpec, evaluate_yolo
from gee_mining.tools.heldout import HeldoutSpec
from gee_mining.tools.heldout_classify import CANDIDATES, evaluate_classify
from gee_mining.tools.heldout_report import pyramid_report, yolo_report
from gee_mining.tools.heldout_study import evaluate_study


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


def _seasons(text: str) -> tuple[int, ...]:
    """``--seasons``: later months with scenes (``6``: January and June, the default), or ``none`` (January only)."""
    if text.strip().lower() in ("", "none"):
        return ()
    return _numbers(text, "--seasons", int)


def _margin(text: str) -> float | None:
    if text == "cv":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--margin {text!r}: cv (chosen across the train worlds) or a factor in (0, 1].") from None


def pyramid_spec(args) -> EvaluationSpec:
    """The :class:`EvaluationSpec` of ``evaluate pyramid``'s options (worlds with June's scenes unless ``--seasons
    none``, five levels down to 171.875 m unless ``--levels``: what the held-out figure was measured with,
    docs/pyramid.md)."""
    return EvaluationSpec(
        train_seeds=_seeds(args.train_seeds, "--train-seeds"), test_seeds=_seeds(args.test_seeds, "--test-seeds"),
        size_km=args.size_km, clusters=args.clusters, levels=_numbers(args.levels, "--levels"),
        zooms=_numbers(args.zooms, "--zooms", int), scales=_numbers(args.scales, "--scales") if args.scales else (),
        target_recall=args.target_recall, margin=_margin(args.margin),
        min_prune=args.min_prune,
        pixels=args.pixels, mine_strata_km2=_numbers(args.mine_strata, "--mine-strata") if args.mine_strata else (),
        hard_negatives=args.hard_negatives, mine_share=args.mine_share, exhaustive=args.exhaustive, workers=args.workers,
        realism=args.realism, detector=args.detector, weights=args.weights, screening=args.screening,
        seasons=_seasons(args.seasons), use_seasons=not args.ignore_seasons,
        island_weight=args.island_weight, cell_model=args.cell_model, cell_keep=args.cell_keep,
    )  # fmt: skip


def _pyramid(args) -> int:
    report = evaluate_pyramid(args.out, pyramid_spec(args), progress=progress(args))
    html_path = pyramid_report(Path(args.out), report, args.command_line)
    pooled = {"SIMULATED": True, "pooled": report["pooled"], "evaluation": f"{args.out}/evaluation.json",
              "report": str(html_path)}  # fmt: skip

    def text() -> None:
        print_figures("SIMULATED, held-out worlds, pooled", by_size(report["pooled"]), f"{args.out}/evaluation.json")
        print(f"report: {html_path}")

    emit(args, pooled, text)
    return 0


def by_size(pooled: dict[str, Any]) -> dict[str, Any]:
    """``pooled`` with its recall by mine area as one ``found/mines = recall`` line per size class, for people (the
    JSON keeps the full bins, with their intervals)."""
    lines = {}
    for b in pooled.get("recall_by_size", []):
        lo, hi = b["area_km2"]
        name = f"{lo:g}-{hi:g} km2" if hi is not None else f"{lo:g} km2 and over"
        lines[name] = f"{b['detected']}/{b['mines']}" + (f" = {b['recall']:.3f}" if b["mines"] else "")
    return {**pooled, "recall_by_size": lines} if lines else pooled


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


def _pixel_models(args) -> int:
    spec = HeldoutSpec(
        train_seeds=_seeds(args.train_seeds, "--train-seeds"), test_seeds=_seeds(args.test_seeds, "--test-seeds"),
        size_km=args.size_km, clusters=args.clusters, pixels=args.pixels, mine_share=args.mine_share,
        min_mine_share=args.min_mine_share, realism=args.realism, workers=args.workers, real_data=not args.no_real,
    )  # fmt: skip
    if args.target == "study":
        report, name = evaluate_study(args.out, spec, progress(args), args.command_line), "evaluation_study.json"
    else:
        classifiers = tuple(c.strip() for c in args.classifiers.split(",") if c.strip())
        report = evaluate_classify(args.out, spec, classifiers, progress(args), args.command_line)
        name = "evaluation_classify.json"
    pooled = {m: v["pooled"] for m, v in report["models"].items()}
    result = {"SIMULATED": True, "pooled": pooled, "real": report["real"], "evaluation": f"{args.out}/{name}",
              "report": f"{args.out}/report_{args.target}/report.html"}  # fmt: skip
    emit(args, result, lambda: print_pixel_models(pooled, result["evaluation"], result["report"]))
    return 0


def print_pixel_models(pooled: dict, evaluation: str, report: str) -> None:
    """Each model's pooled held-out figures, then the two files written, once (not once per model)."""
    for m, p in pooled.items():
        print_figures(f"SIMULATED, held-out worlds, pooled: {m}", p)
    print(f"written: {evaluation}")
    print(f"report: {report}")


def _add_worlds(q, fit: str, out: str) -> None:
    """The options every evaluation on the pyramid's SIMULATED worlds shares: which seeds to ``fit`` on and which
    to report on, the output folder (``out``: what it holds), the worlds' size, mines, difficulty, and the mine
    share that turns false alarms into precision."""
    q.add_argument("--train-seeds", required=True, help=f"world seeds to {fit}, e.g. 1,2,3")
    q.add_argument("--test-seeds", required=True, help="world seeds to report on, e.g. 4,5 (never used to fit)")
    q.add_argument("--out", required=True, help=f"output folder ({out})")
    q.add_argument("--size-km", type=float, default=11.04, help="side of each world (km; default 11.04)")
    q.add_argument("--clusters", type=int, default=4, help="mine clusters per world (default 4)")
    q.add_argument("--mine-share", type=float, default=0.0007, help="share of land that is mine, for precision")
    q.add_argument("--workers", type=int, default=1, help="processes building worlds side by side")
    q.add_argument("--realism", choices=("hard", "easy"), default="hard",
                   help="the worlds' difficulty (docs/world.md): hard (default) or the old easy world")  # fmt: skip


def _add_pixel_models(act) -> None:
    helps = {"study": "the pixel study's LASSO model on SIMULATED worlds: chosen on train seeds, measured on test",
             "classify": "Earth Engine classifiers on SIMULATED worlds: chosen on train seeds, measured on test"}  # fmt: skip
    for target, text in helps.items():
        q = act.add_parser(target, help=text)
        _add_worlds(q, "fit and choose on (two or more)",
                    f"worlds, evaluation_{target}.json, report_{target}/report.html")  # fmt: skip
        q.add_argument("--pixels", type=int, default=500, help="sampled pixels per class per train world")
        q.add_argument("--min-mine-share", type=float, default=0.25,
                       help="a mine counts as found when this share of its pixels is flagged")  # fmt: skip
        q.add_argument("--no-real", action="store_true",
                       help="skip the false alarms on the real mine-free scenes of ../shared/data")  # fmt: skip
        if target == "classify":
            q.add_argument("--classifiers", default="smileRandomForest,smileCart",
                           help=f"comma-separated, of: {', '.join(CANDIDATES)}")  # fmt: skip
        add_json_option(q, "the pooled held-out figures of each model and the real-scene false alarms")
        q.set_defaults(func=_pixel_models)


def _yolo(args) -> int:
    spec = YoloEvaluationSpec(
        train_seeds=_seeds(args.train_seeds, "--train-seeds"), test_seeds=_seeds(args.test_seeds, "--test-seeds"),
        size_km=args.size_km, clusters=args.clusters, realism=args.realism, workers=args.workers,
        patch_px=args.patch_px, mine_stride=args.mine_stride, bands=tuple(args.bands.split(",")), epochs=args.epochs,
        imgsz=args.imgsz, batch=args.batch, conf=args.conf, min_iou=args.min_iou, mine_share=args.mine_share,
    )  # fmt: skip
    report = evaluate_yolo(args.out, spec, progress=progress(args))
    html_path = yolo_report(Path(args.out), report, args.command_line)
    pooled = by_size(report["pooled"])
    result = {"SIMULATED": True, "pooled": report["pooled"], "training": report["training"],
              "evaluation": f"{args.out}/yolo_evaluation.json", "model": f"{args.out}/yolo_model.json",
              "report": str(html_path)}  # fmt: skip

    def text() -> None:
        figures = {**pooled, "training_s": report["training"]["seconds"]}
        print_figures(
            "SIMULATED, YOLO on held-out worlds' patches, pooled", figures, f"{args.out}/yolo_evaluation.json"
        )
        print(f"report: {html_path}")

    emit(args, result, text)
    return 0


def _add_yolo(act) -> None:
    q = act.add_parser("yolo", help="YOLO on SIMULATED worlds: train on the train seeds' patches, measure on others")
    _add_worlds(q, "train on", "worlds, patches, datasets, yolo_evaluation.json, report_yolo/report.html")
    q.add_argument("--patch-px", type=int, default=138, help="patch side, pixels (default 138: the 1375 m level)")
    q.add_argument("--mine-stride", type=int, default=46, help="train windows holding a mine every N px (default 46)")
    q.add_argument("--bands", default="B4,B3,B2", help="comma-separated bands (3 = PNG, else multi-page TIFF)")
    q.add_argument("--epochs", type=int, default=8, help="training epochs on the CPU (default 8)")
    q.add_argument("--imgsz", type=int, default=128, help="training and prediction image size (default 128)")
    q.add_argument("--batch", type=int, default=8, help="images per training batch (default 8)")
    q.add_argument("--conf", type=float, default=0.25, help="smallest box score counted (default 0.25)")
    q.add_argument("--min-iou", type=float, default=0.25,
                   help="a mine is matched by a box of this IoU with the mine inside the box's patch (default 0.25)")  # fmt: skip
    add_json_option(q, "the pooled held-out figures and the training's time")
    q.set_defaults(func=_yolo)


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
    _add_worlds(q, "train and calibrate on", "worlds, patches, evaluation.json, report_pyramid/report.html")
    q.add_argument("--levels", default="2750,1375,687.5,343.75,171.875",
                   help="cell sizes, coarse to fine (default: five levels, the finest 171.875 m, what the held-out "
                        "figure was measured with; 2750,1375,687.5,343.75 with --zooms 15,16,17,18 is the "
                        "four-level pyramid of earlier runs)")  # fmt: skip
    q.add_argument("--zooms", default="15,16,17,18,19", help="zoom labels of the levels")
    q.add_argument("--scales", default="",
                   help="metres per pixel each level is scored at, e.g. 10,10,10,10,10 (default: cell size / 64, "
                        ">= 10)")  # fmt: skip
    q.add_argument("--target-recall", type=float, default=0.98, help="calibration target on the train worlds")
    q.add_argument("--margin", default="cv",
                   help="factor on each calibrated threshold, (0..1], or cv: chosen leaving one train world out")  # fmt: skip
    q.add_argument("--min-prune", type=float, default=MIN_PRUNE,
                   help="a coarse level whose calibrated threshold drops less than this share of the train cells is "
                        f"not screened, it keeps every cell (default {MIN_PRUNE}; 0: every level screens)")  # fmt: skip
    q.add_argument("--pixels", type=int, default=1000, help="sampled pixels per class per train world")
    q.add_argument("--mine-strata", default="", metavar="KM2,...",
                   help="draw the forest's mine pixels in equal parts from the mines of each size class cut at these "
                        "areas, e.g. 0.05,1 (default: uniformly over mine area, where large mines give nearly all)")  # fmt: skip
    q.add_argument("--hard-negatives", type=int, default=0, metavar="N",
                   help="> 0: fit the forest twice, the second time also on N mine-free pixels a train world that the "
                        "first one flags (hard-negative mining; default 0: one forest)")  # fmt: skip
    q.add_argument("--exhaustive", action="store_true", help="also run the detector on every fine cell (slow)")
    q.add_argument("--detector", choices=("pixel", "yolo"), default="pixel",
                   help="the fine level's detector: pixel (the pixel model in boxes, default) or yolo (needs --weights)")  # fmt: skip
    q.add_argument(
        "--weights", help="with --detector yolo: the yolo_model.json (or weights) an `evaluate yolo` run wrote"
    )
    q.add_argument("--screening", choices=("forest", "logistic"), default="forest",
                   help="screening model: a random forest on context features (default) or the pixel-only logistic")  # fmt: skip
    q.add_argument("--seasons", default="6",
                   help="later months whose scenes the worlds also get (default 6: January and June): the composite "
                        "then holds the greenest NDVI over all of them, which the screening model reads; none: "
                        "January's scenes only (the one-month worlds of earlier runs)")  # fmt: skip
    q.add_argument("--ignore-seasons", action="store_true",
                   help="with --seasons: screen the same worlds without the greenest NDVI (the paired baseline; a "
                        "rerun into the same --out reuses the worlds)")  # fmt: skip
    q.add_argument("--island-weight", type=float, default=0.0,
                   help="> 0: the two finest levels score max(share, WEIGHT x share of isolated mine pixels), so a "
                        "small pit counts against natural bare ground (e.g. 10; default 0: the plain share)")  # fmt: skip
    q.add_argument("--cell-model", action="store_true",
                   help="the finest level scores each cell by a classifier trained on the train worlds' cells (a "
                        "handful of per-cell aggregates: shares, probability, island share, context under the mine "
                        "pixels) instead of its share of mine pixels (default: the share)")  # fmt: skip
    q.add_argument("--cell-keep", type=float, metavar="K",
                   help="with --cell-model: the share of train mines still alive at the finest level that its "
                        "threshold keeps, on cross-fitted scores, in (0, 1], e.g. 0.99 (default: 0.98)")  # fmt: skip
    add_json_option(q, "the pooled held-out figures")
    q.set_defaults(func=_pyramid)
    _add_pixel_models(act)
    _add_yolo(act)
    _add_monitor(act)

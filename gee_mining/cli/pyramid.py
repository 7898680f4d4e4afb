"""``gee-mining pyramid plan | simulate``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import ee

from gee_mining.cli.output import add_json_option, emit, print_figures, progress
from gee_mining.connection import connect
from gee_mining.errors import InputError
from gee_mining.io.polygons import register_polygon_file
from gee_mining.pyramid.core import PyramidSpec, calibrate, run_exhaustive, run_pyramid, start_cells
from gee_mining.pyramid.detectors import PixelModelDetector
from gee_mining.pyramid.plan import world_plan
from gee_mining.pyramid.probability import fit_probability
from gee_mining.pyramid.world import prepare_simulated


def _levels(args):

    try:
        sizes = [float(v) for v in args.levels.split(",")]
        zooms = [int(v) for v in args.zooms.split(",")] if args.zooms else None
    except ValueError:
        raise InputError(f"--levels {args.levels!r} / --zooms {args.zooms!r}: comma-separated numbers.") from None
    return PyramidSpec.of(sizes, zooms)


def _plan(args) -> int:

    spec = _levels(args)
    with tempfile.TemporaryDirectory() as tmp:
        asset, catalog, _ = register_polygon_file(args.polygons, Path(tmp), "gee-mining-local")
        connect("local", project="gee-mining-local", catalog=catalog)
        plan = world_plan(ee, asset, spec, Path(args.polygons).name, measured_down_to=args.measured_down_to,
                          fp_factor=args.fp_factor, scale_to_polygons=args.scale_to)  # fmt: skip
    header = ["stage", "cells with mines", "counts", "cells evaluated", "cells kept", "pixels", "EE tasks", "bytes"]
    rows = [dict(zip(header, r, strict=True)) for r in plan.rows()]
    result = {"polygons": plan.polygons, "tasks": plan.tasks, "notes": plan.notes, "levels": rows}

    def human() -> None:
        widths = [max(len(h), *(len(_cell(r[h])) for r in rows)) for h in header]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
        for r in rows:
            print("  ".join(_cell(r[h]).rjust(w) for h, w in zip(header, widths, strict=True)))
        print(f"{plan.polygons} polygons; {plan.tasks} Earth Engine tasks")
        for note in plan.notes:
            print(f"note: {note}")

    emit(args, result, human)
    return 0


def _cell(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}" if isinstance(value, float) else str(value)


def _simulate(args) -> int:

    spec = _levels(args)
    out = Path(args.out)
    sim = prepare_simulated(
        out, None, size_km=args.size_km, clusters=args.clusters, seed=args.seed, progress=progress(args)
    )
    model = fit_probability(ee, ee.Image(sim.composite_id), sim.region(ee), sim.mines_id, pixels=1000)
    cells = start_cells(ee, sim.region(ee), spec.levels[0], sim.epsg)
    spec = calibrate(ee, model.image, spec, cells, sim.mines_id, target_recall=args.target_recall,
                     export_to=args.scores_to and f"{args.scores_to.rstrip('/')}/calibration")  # fmt: skip
    detector = PixelModelDetector(model.image, block=8, folder=out / "patches")
    result = run_pyramid(ee, model.image, spec, cells, detector, sim.mines_id, progress=progress(args),
                         export_to=args.scores_to and f"{args.scores_to.rstrip('/')}/run")  # fmt: skip
    exhaustive = run_exhaustive(ee, spec, cells, detector, sim.mines_id)
    summary = {
        "SIMULATED": True,
        "thresholds": list(spec.thresholds),
        "levels": result.cost_rows(),
        "recall": {"pyramid": result.recall, "exhaustive": exhaustive.recall},
        "fine_cells": {"pyramid": result.detector.cells, "exhaustive": exhaustive.detector.cells},
        "dropped_mines": result.dropped_at(),
    }
    (out / "pyramid_summary.json").write_text(json.dumps(summary, indent=1))
    emit(args, summary, lambda: print_figures("SIMULATED pyramid vs exhaustive", summary, out / "pyramid_summary.json"))
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("pyramid", help="coarse-to-fine search for mines: world-scale cost plan, simulated study")
    act = p.add_subparsers(dest="action", required=True)
    q = act.add_parser("plan", help="the cost of a world-scale pyramid from a polygon set's level statistics")
    q.add_argument("--polygons", required=True, help="mine polygon file (GeoPackage, GeoJSON, ...)")
    q.add_argument("--levels", default="44000,22000,11000,5500,2750,1375", help="cell sizes, coarse to fine")
    q.add_argument("--zooms", default="11,12,13,14,15,16", help="zoom labels of the levels")
    q.add_argument(
        "--measured-down-to", type=float, help="count cells server-side down to this size, extrapolate below"
    )
    q.add_argument("--fp-factor", type=float, default=2.0, help="kept cells per cell with a mine (default 2)")
    q.add_argument("--scale-to", type=int, help="scale the counts to this many polygons (an extrapolation)")
    add_json_option(q, "the plan's levels, tasks and notes")
    q.set_defaults(func=_plan)
    q = act.add_parser("simulate", help="calibrate and run the pyramid on a SIMULATED world vs an exhaustive run")
    q.add_argument("--out", default="runs/pyramid", help="output folder")
    q.add_argument("--levels", default="2750,1375,687.5,343.75", help="cell sizes, coarse to fine")
    q.add_argument("--zooms", default="15,16,17,18", help="zoom labels of the levels")
    q.add_argument("--size-km", type=float, default=11.04, help="side of the world (km)")
    q.add_argument("--clusters", type=int, default=2, help="mine clusters")
    q.add_argument("--seed", type=int, default=0, help="the simulated world's seed (same seed, same world)")
    q.add_argument("--target-recall", type=float, default=0.98,
                   help="share of the mines each level's calibrated threshold keeps")  # fmt: skip
    q.add_argument("--scores-to", help="gs://BUCKET/PREFIX: score the cells by batch export (Export.table, one task "
                   "per batch of cells), as a global run does; default: interactive pages")  # fmt: skip
    add_json_option(q, "the summary (thresholds, cost per level, recall)")
    q.set_defaults(func=_simulate)

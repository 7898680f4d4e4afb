"""``gee-mining plan``: the tasks, interactive requests, bytes and wall time of a run, before it runs."""

from __future__ import annotations

from gee_mining.batch.batches import DEFAULT_FILES_PER_SIDE
from gee_mining.batch.plan import BATCHED_PLAN_PRODUCTS, PLAN_PRODUCTS, TaskModel, cells_of_polygons, plan_job
from gee_mining.cli.output import add_json_option, emit
from gee_mining.contracts.cells import GridSpec
from gee_mining.errors import InputError
from gee_mining.io.polygons import read_polygons
from gee_mining.steps.cell_image import ImagerySpec


def add_cli(sub) -> None:
    p = sub.add_parser("plan", help="tasks, interactive requests, bytes and wall time of an export run, offline")
    p.add_argument("--polygons", required=True, help="mine polygon file (GeoPackage, GeoJSON, Parquet, ...)")
    p.add_argument("--levels", default="5500,2750,1375", help="cell sizes in metres (default 5500,2750,1375)")
    p.add_argument("--products", default=",".join(BATCHED_PLAN_PRODUCTS),
                   help=f"comma-separated, of {', '.join(PLAN_PRODUCTS)} (default: every batched product)")  # fmt: skip
    p.add_argument("--concurrent", type=int, default=2, help="batch tasks Earth Engine runs at once (default 2)")
    p.add_argument(
        "--files-per-side",
        type=int,
        default=DEFAULT_FILES_PER_SIDE,
        help="file blocks a batch side (default: 2,816 km of them, a strip of a UTM zone)",
    )
    p.add_argument("--scale-to", type=int, help="extrapolate the counts to this many polygons (said so)")
    add_json_option(p, "the plan (products, levels, tasks, requests, bytes, days)")
    p.set_defaults(func=_plan)


def _levels(text: str) -> list[GridSpec]:
    try:
        sizes = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--levels {text!r}: give cell sizes in metres, e.g. 5500,2750,1375") from None
    return [GridSpec.of(s) if s in (5500.0, 2750.0, 1375.0) else GridSpec(s, 0) for s in sizes]


def _plan(args) -> int:
    products = [p.strip() for p in args.products.split(",") if p.strip()]
    shapes = [g for g in read_polygons(args.polygons).geometries if g is not None]
    levels = [cells_of_polygons(shapes, spec) for spec in _levels(args.levels)]
    bands = len(ImagerySpec(indices=()).band_names)
    plan = plan_job(levels, products, bands, args.concurrent, TaskModel(), args.files_per_side)
    out = plan.to_json()
    out["polygons"] = {"file": str(args.polygons), "count": len(shapes)}
    if args.scale_to:
        out["extrapolation"] = extrapolate(out, len(shapes), args.scale_to)

    def human() -> None:
        for p in out["products"]:
            print(f"{p['product']:>18} {p['level_m']:>6g} m: {p['cells']:>7} cells, {p['tasks']:>6} tasks")
        print(f"total_tasks {out['total_tasks']}, interactive_requests {out['interactive_requests']}, "
              f"{out['bytes_written'] / 1e9:.1f} GB, {out['wall_days']} days at {args.concurrent} tasks")  # fmt: skip

    emit(args, out, human)
    return 0


def extrapolate(plan: dict, polygons: int, target: int) -> dict:
    """The plan scaled to ``target`` polygons: cells, bytes and compute grow with the polygons; batch tasks
    grow with the area they spread over, bounded here by scaling them too (an EXTRAPOLATION, an upper bound
    for batches, whose count grows slower than the cells when the new polygons fill the same zones)."""
    k = target / polygons
    return {"polygons": target, "factor": round(k, 3), "total_tasks": round(plan["total_tasks"] * k),
            "bytes_written": round(plan["bytes_written"] * k), "wall_days": round(plan["wall_days"] * k, 2),
            "note": "EXTRAPOLATED linearly from the planned polygons, not planned from the polygons themselves"}  # fmt: skip

"""``gee-mining monitor``: footprints of known mines and new candidates across years, on a SIMULATED world
(``--world``) or a real region (``--region``, :mod:`gee_mining.monitor.region`)."""

from __future__ import annotations

import json
from pathlib import Path

import ee
import shapely

from gee_mining.cli.output import add_json_option, emit, progress
from gee_mining.connection import connect
from gee_mining.errors import InputError
from gee_mining.io.pages import iter_features
from gee_mining.monitor.core import REJECTED_STRATUM, MonitorSpec, fit_on_first_year, run_monitor
from gee_mining.monitor.region import region_bounds, region_composites, require_collection, utm_region
from gee_mining.monitor.review import read_verdicts, write_review
from gee_mining.monitor.world import known_outlines, prepare_world


def parse_years(text: str) -> tuple[int, ...]:
    """``2019-2023`` or ``2019,2020,2021``: the years, in order."""
    try:
        if "-" in text:
            a, b = (int(v) for v in text.split("-", 1))
            years = tuple(range(a, b + 1))
        else:
            years = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--years {text!r}: a span (2019-2023) or a list (2019,2020).") from None
    if not years:
        raise InputError(f"--years {text!r}: the span is empty; give the first year first, e.g. 2019-2023.")
    return years


def _rules(path: str | None) -> dict:
    """The candidate rules an evaluation chose on its train worlds (``monitor_evaluation.json``), if given."""
    if not path:
        return {}
    try:
        rules = json.loads(Path(path).read_text())["protocol"]["rules"]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"--rules {path}: not a monitor_evaluation.json ({exc}).") from None
    return {"threshold": rules["threshold"], "min_pixels": rules["min_pixels"], "min_years": rules["min_years"],
            "new_only": rules["new_only"], "persistent": rules.get("persistent", False),
            "min_ndvi_before": rules.get("min_ndvi_before"), "growth_scale": rules.get("growth_scale", 1.0),
            "footprint_threshold": rules.get("footprint_threshold")}  # fmt: skip


def _spec(args) -> MonitorSpec:
    chosen = {"threshold": args.threshold, "min_pixels": args.min_pixels, "min_years": args.min_years,
              "new_only": args.new_only, "persistent": args.persistent, "min_ndvi_before": args.min_ndvi_before,
              "growth_scale": args.growth_scale, "footprint_threshold": args.footprint_threshold,
              **_rules(args.rules)}  # fmt: skip
    where = {"destination": args.destination} if args.destination else {}
    return MonitorSpec(years=parse_years(args.years), months=args.months, known_buffer_m=args.buffer_m,
                       band=args.band, **chosen, **where)  # fmt: skip


def _on_world(args, spec: MonitorSpec, out: Path, say):
    """A SIMULATED world: its composites exported and served; (region, composites, known outlines, simulated)."""
    world = prepare_world(args.world, spec, out, progress=None)
    say(f"[monitor] {len(spec.years)} composites exported and served (SIMULATED world {args.world})")
    composites = {y: ee.Image(i) for y, i in world.composites.items()}
    return world.region, composites, lambda: known_outlines(world), True


def _on_region(args, spec: MonitorSpec, out: Path, say):
    """A real region (:mod:`gee_mining.monitor.region`); (region, composites, known outlines, simulated)."""
    if not args.mines:
        raise InputError("--mines: with --region give the known mines' table asset id (e.g. projects/P/assets/mines).")
    connect(args.engine, project=args.project, catalog=args.catalog,
            storage_root=(args.storage or out / "storage") if args.engine == "local" else None)  # fmt: skip
    require_collection()
    region = utm_region(region_bounds(args.region), args.mines, args.id_column)
    say(f"[monitor] region {args.region}: EPSG:{region.epsg} {region.bounds}, {region.area_km2:,.1f} km2")
    composites = region_composites(region, spec, out, args.assets, progress=say)
    say(f"[monitor] {len(spec.years)} composites exported")

    def known() -> list:  # the review page's map: the mines in the region, read in pages
        mines = ee.FeatureCollection(region.mines_id).filterBounds(region.geometry())
        return [shapely.geometry.shape(f["geometry"]) for f in iter_features(mines) if f.get("geometry")]

    return region, composites, known, False


def _monitor(args) -> int:
    if bool(args.world) == bool(args.region):
        raise InputError("give --world (a SIMULATED multi-year world) or --region (a real region), one of them.")
    spec = _spec(args)
    out = Path(args.out)
    say = progress(args)
    region, composites, known, simulated = (_on_world if args.world else _on_region)(args, spec, out, say)
    verdicts = read_verdicts(args.verdicts) if args.verdicts else []
    model, table = fit_on_first_year(composites[spec.years[0]], region, pixels=args.pixels, verdicts=verdicts)
    if verdicts:
        say(f"[monitor] {len(verdicts)} verdict(s) from {args.verdicts}: {int((table.stratum == REJECTED_STRATUM).sum())} "
              "hard-negative pixel(s) in the training sample")  # fmt: skip
    result = run_monitor(model, composites, region, spec, out, progress=say, reviewed=verdicts)
    if not args.no_review:
        page = write_review(out, result.candidates, region, composites, known(), simulated=simulated,
                            max_quicklooks=args.max_quicklooks, previous=verdicts)  # fmt: skip
        result.files["review"] = str(page)
    last = result.footprints[result.footprints.year == spec.years[-1]]
    summary = {"SIMULATED": simulated, "known_mines": int(last.mine_id.nunique()),
               "growth_m2_total": float(last.growth_m2.sum()), "candidates": len(result.new),
               "reviewed_before": len(result.candidates) - len(result.new), "files": result.files}  # fmt: skip

    def human() -> None:
        print(
            f"{'SIMULATED: ' if simulated else ''}{summary['known_mines']} known mine(s), their footprints grew by "
            f"{summary['growth_m2_total'] / 1e6:.3f} km2 in all; {summary['candidates']} new candidate(s) for review"
            f" ({summary['reviewed_before']} reviewed before, not shown again)"
        )
        for kind, path in result.files.items():
            print(f"  {kind}: {path}")

    emit(args, summary, human)
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("monitor", help="known mines' footprints and new candidates across years")
    p.add_argument("--world", help="a SIMULATED multi-year world folder (gee-mining world --years 2019-2023)")
    p.add_argument("--region", help="a real region: --region=west,south,east,north (degrees), a GeoJSON file or a country "
                   "name (LSIB); composites of COPERNICUS/S2_SR_HARMONIZED as batch exports")  # fmt: skip
    p.add_argument("--mines", help="--region: the known mines' table asset id")
    p.add_argument("--id-column", default="id", help="--region: the mines' id property (default id)")
    p.add_argument("--assets", help="--region on Earth Engine: asset folder for the composites")
    p.add_argument("--destination", metavar="gs://BUCKET/PREFIX", help="where the exports go")
    p.add_argument("--engine", default="local", choices=["local", "earthengine"], help="--region: which engine")
    p.add_argument("--project", default="gee-mining-local", help="--region: Cloud project or local project id")
    p.add_argument("--catalog", help="--region, local engine: catalog TOML serving the imagery and tables")
    p.add_argument("--storage", help="--region, local engine: folder where gs:// exports land (default OUT/storage)")
    p.add_argument("--years", required=True, help="years to monitor, e.g. 2019-2023")
    p.add_argument("--out", required=True, help="output folder (footprints.parquet, candidates.gpkg, monitor.json)")
    p.add_argument("--months", type=int, default=12, help="months of each year in its composite (default 12)")
    p.add_argument("--threshold", type=float, default=0.9, help="mine probability threshold (default 0.9)")
    p.add_argument("--band", type=float, default=0.05, help="area interval: areas at threshold +/- band (0.05)")
    p.add_argument("--min-pixels", type=int, default=20, help="smallest candidate in 10 m pixels (default 20)")
    p.add_argument("--min-years", type=int, default=1, help="years a candidate pixel is seen (default 1)")
    p.add_argument("--new-only", action="store_true", help="only candidates first seen after the first year")
    p.add_argument("--persistent", action="store_true", help="only pixels seen every year since first seen")
    p.add_argument("--min-ndvi-before", type=float, default=None,
                   help="only pixels whose NDVI in the first year is at least this (vegetation cleared)")  # fmt: skip
    p.add_argument("--footprint-threshold", type=float, default=None,
                   help="the footprints' own probability threshold (default: --threshold)")  # fmt: skip
    p.add_argument("--growth-scale", type=float, default=1.0, help="footprint growth times this (default 1)")
    p.add_argument("--buffer-m", type=float, default=200.0, help="known mine's room to grow, metres (default 200)")
    p.add_argument("--pixels", type=int, default=500, help="sampled pixels per land-cover stratum (default 500)")
    p.add_argument("--rules", help="monitor_evaluation.json: use the rules chosen there on train worlds")
    p.add_argument("--verdicts", help="verdicts.json saved by a review page: labels and hard negatives for training")
    p.add_argument("--no-review", action="store_true", help="no review.html (no quicklooks fetched)")
    p.add_argument("--max-quicklooks", type=int, default=50, help="candidates with quicklooks (default 50)")
    add_json_option(p, "the known mines, their growth, the candidates and the files written")
    p.set_defaults(func=_monitor)

"""The ``gee-mining`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import ee
import pandas as pd

from gee_mining.batch.exports import ExportSpec, export_cells, export_pixel_table
from gee_mining.batch.jobs import Ledger, cancel_job, retry_failed, run_job
from gee_mining.batch.spec import load_spec
from gee_mining.batch.tasks import DEFAULT_POLL_S, LOCAL_POLL_S, run_tasks, succeeded, wait_for
from gee_mining.cli.classify import add_cli as add_classify_cli
from gee_mining.cli.common import check_writable, connect_with_polygons, scratch_folder, storage_root
from gee_mining.cli.detect import add_cli as add_detect_cli
from gee_mining.cli.errors import explain
from gee_mining.cli.evaluate import add_cli as add_evaluate_cli
from gee_mining.cli.monitor import add_cli as add_monitor_cli
from gee_mining.cli.monitor import parse_years
from gee_mining.cli.output import (
    Parser,
    add_json_option,
    add_quiet_option,
    emit,
    json_stdout,
    leaf_parsers,
    plain_warnings,
    progress,
    quiet_third_party,
)
from gee_mining.cli.plan import add_cli as add_plan_cli
from gee_mining.cli.pyramid import add_cli as add_pyramid_cli
from gee_mining.cli.study import add_cli as add_study_cli
from gee_mining.connection import connect
from gee_mining.contracts.bands import BANDS
from gee_mining.contracts.cells import GridSpec
from gee_mining.contracts.signatures import signatures
from gee_mining.demo.run import run_demo
from gee_mining.errors import GeeMiningError, InputError
from gee_mining.io.grid_table import GridTableWriter, check_table_path, read_grid_table
from gee_mining.io.pixel_table import from_geotiff, write_pixel_table
from gee_mining.io.storage import parse_gs_url
from gee_mining.local import EngineError, LocalEngine
from gee_mining.local.core.registry import implemented
from gee_mining.ml.detect.dataset import CELL_ERRORS
from gee_mining.steps.cell_image import ImagerySpec, cell_image
from gee_mining.steps.grid import (
    GridSummary,
    Metadata,
    export_grid,
    grid_from_exports,
    parse_image_stat,
    parse_region,
    parse_table_property,
    stream_levels,
)
from gee_mining.steps.quicklooks import QuicklookSpec, write_quicklooks
from gee_mining.steps.sentinel2 import no_scene_error, scene_counts
from gee_mining.tools.algorithms_doc import algorithms_markdown
from gee_mining.tools.jsgen import cli
from gee_mining.tools.report import build_report
from gee_mining.world import generate_world
from gee_mining.world.years import YearsSpec, generate_years


def limits_option(text: str | None) -> bool | dict:
    """``--limits``: "on" (Earth Engine's limits, the default), "off" (none), a JSON object or
    ``name=value,name=value`` of the limits to change (``gee_mining.local.core.limits.Limits``)."""
    if text is None or text.strip().lower() == "on":
        return True
    if text.strip().lower() == "off":
        return False
    try:
        if text.lstrip().startswith("{"):
            return dict(json.loads(text))
        pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
        return {name.strip(): _json_or_text(value.strip()) for name, value in pairs}
    except ValueError as exc:
        raise InputError(
            f"--limits {text!r}: give on, off, a JSON object or name=value pairs, e.g. --limits max_concurrent_tasks=4"
        ) from exc


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


def _serve(args: argparse.Namespace) -> int:

    settings = {"limits": limits_option(args.limits)}
    if args.faults:
        settings["faults"] = json.loads(args.faults)
    try:
        engine = LocalEngine(args.catalog, project=args.project, storage_root=args.storage, settings=settings)
    except EngineError as exc:
        raise InputError(f"--limits / --faults: {exc}") from exc
    server = engine.serve(args.host, args.port)
    print(f"gee-mining local engine serving Earth Engine's REST API on {server.url} (Ctrl-C to stop)")
    print(
        f"  token: {server.token} (every request needs 'Authorization: Bearer <token>'; written to {server.runtime_file})"
    )
    print(f"  connect with: gee_mining.connect('local', project='{args.project}', url='{server.url}')")
    print(f"  catalog: {args.catalog or '(empty)'}; exports land under {engine.storage_root}")
    try:
        server.wait()
    except KeyboardInterrupt:
        refused = engine.router.quotas.refused
        print(f"stopping; requests refused: rate {refused['rate']}, concurrency {refused['concurrency']}")
    finally:
        engine.close()
    return 0


def _demo(args: argparse.Namespace) -> int:

    result = run_demo(args.out, catalog=args.catalog, progress=progress(args))
    print(f"report: {result.report.resolve()}")
    return 0


def _js(args: argparse.Namespace) -> int:

    return cli(args)


def _report(args: argparse.Namespace) -> int:

    files = build_report(args.run_dir, out=args.out, pdf=args.pdf or False)
    print(f"report: {files.html.resolve()}")
    if files.pdf is not None:
        print(f"pdf: {files.pdf.resolve()}")
    return 0


def _algorithms(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(algorithms_markdown(implemented()))
        return 0

    done = implemented()
    names = sorted(signatures()) if args.all else sorted(done)
    result = {"count": len(done), "of": len(signatures()), "implemented": sorted(done)}
    if args.all:
        result["missing"] = sorted(set(signatures()) - set(done))

    def human() -> None:
        for name in names:
            print(f"{'yes' if name in done else ' - '}  {name}" if args.all else name)
        print(f"# {len(done)} of {len(signatures())} Earth Engine algorithms implemented", file=sys.stderr)

    emit(args, result, human)
    return 0


def _grid(args: argparse.Namespace) -> int:

    if args.levels:
        specs = [GridSpec.of(float(v), projection=args.projection) for v in args.levels.split(",")]
    else:
        specs = [GridSpec.of(args.cell, args.zoom, projection=args.projection)]
    if not args.export and not args.out:
        raise InputError("give --out PATH for the grid table (or --export gs://BUCKET/PREFIX for a global run).")
    if args.from_exports and len(specs) != 1:
        raise InputError("--from-exports reads one level: give --cell (or --zoom), not --levels.")
    out = check_writable(check_table_path(args.out)) if args.out else None  # before any work
    metadata = Metadata(images=tuple(parse_image_stat(t) for t in args.image_stat),
                        tables=tuple(parse_table_property(t) for t in args.table_property))  # fmt: skip
    if args.export:
        return _grid_export(args, specs, metadata)
    paths = [out if len(specs) == 1 else out.with_name(f"{out.stem}_z{s.zoom}{out.suffix}") for s in specs]
    with contextlib.ExitStack() as stack:
        # Opened first: each removes the partial tables of killed runs from its folder, and a failure
        # anywhere below removes this run's.
        writers = [stack.enter_context(GridTableWriter(path)) for path in paths]
        polygons = connect_with_polygons(args)
        if args.from_exports:
            table = grid_from_exports(ee, args.from_exports, specs[0], metadata=metadata)
            writers[0].add(table.rows)
            summaries = [GridSummary(specs[0], len(table.positives), len(table.negatives), table.warnings)]
        else:
            region = parse_region(ee, args.region)
            summaries = stream_levels(ee, polygons, specs, [w.add for w in writers], region=region,
                                      margin=args.margin, progress=progress(args), metadata=metadata)  # fmt: skip
    levels = [{"zoom": s.spec.zoom, "cell_size_m": s.spec.cell_size, "cells": s.positives + s.negatives,
               "positives": s.positives, "negatives": s.negatives, "path": str(path), "warnings": list(s.warnings)}
              for s, path in zip(summaries, paths, strict=True)]  # fmt: skip

    def human() -> None:
        for level in levels:
            for warning in level["warnings"]:
                print(f"warning: {warning}")
            print(f"zoom {level['zoom']}: {level['positives']} positives, {level['negatives']} negatives "
                  f"-> {level['path']}")  # fmt: skip

    emit(args, {"levels": levels}, human)
    return 0


def _grid_export(args: argparse.Namespace, specs: list[GridSpec], metadata: Metadata) -> int:
    """``grid --export``: the global run's batch tasks started, and what to do when they finish. On the local
    engine the tasks run in this process, so they are waited for, into a kept folder (``--storage``, or one
    printed): the scratch folder would be gone, and the tasks with the process, before anyone read them."""
    bucket, prefix = parse_gs_url(args.export, "--export")  # before any work
    prefix = prefix or "grid"
    polygons = connect_with_polygons(args, keeps_exports=True)
    region = parse_region(ee, args.region)
    started, tasks = [], []
    for spec in specs:
        level = export_grid(ee, polygons, spec, bucket, prefix, region=region, margin=args.margin,
                            metadata=metadata)  # fmt: skip
        tasks += level
        started += [{"zoom": spec.zoom, "id": t.id, "description": t.status()["description"]} for t in level]
    root = storage_root(args, keeps_exports=True)
    failed = []
    if root is None:
        then = (
            f"when they finish, download gs://{bucket}/{prefix}/zZOOM/ and run: gee-mining grid --from-exports DIR ..."
        )
    else:
        statuses = wait_for(tasks, poll_s=LOCAL_POLL_S, progress=progress(args))
        failed = [f"{s.get('description')}: {s.get('error_message', s.get('state'))}" for s in statuses
                  if not succeeded(s)]  # fmt: skip
        folder = Path(root) / bucket / prefix
        then = f"the exports are in {folder}/zZOOM/: run gee-mining grid --from-exports {folder}/z{specs[0].zoom} ..."

    def human() -> None:
        for task in started:
            print(f"started {task['description']} ({task['id']})")
        for line in failed:
            print(f"FAILED {line}", file=sys.stderr)
        print(then)

    emit(args, {"tasks": started, "failed": failed, "next": then}, human)
    return 1 if failed else 0


def _imagery_spec(args: argparse.Namespace):

    params = {"start": args.start, "end": args.end, "mask": args.mask}
    if args.indices:
        params["indices"] = [n.strip() for n in args.indices.split(",") if n.strip()]
    if args.pairwise:
        params["pairwise"] = list(BANDS)
    return ImagerySpec.from_params(params)


def _cells(args: argparse.Namespace) -> list[dict]:

    rows = read_grid_table(args.grid)
    if args.cells:
        wanted = set(args.cells.split(","))
        rows = [r for r in rows if r["name"] in wanted]
    return rows[: args.limit] if args.limit else rows


def _covered(rows: list[dict], args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """The cells some Sentinel-2 scene covers in the period, and an error line for each other cell."""
    if not rows:
        raise InputError(f"--grid {args.grid}: no cells selected (check --cells and --limit).")
    spec = _imagery_spec(args).composite
    counts = scene_counts(rows, spec)
    kept = [r for r, n in zip(rows, counts, strict=True) if n > 0]
    errors = [f"failed: {no_scene_error(r, spec)}" for r, n in zip(rows, counts, strict=True) if n == 0]
    return kept, errors


def _export_cells(args: argparse.Namespace) -> int:

    spec = ExportSpec(args.out, args.format, patch_size=args.patch_size, margin=args.margin)
    polygons = connect_with_polygons(args, keeps_exports=not args.download)
    rows, uncovered = _covered(_cells(args), args)
    for line in uncovered:
        print(line)
    results = (
        export_cells(rows, polygons, spec, _imagery_spec(args), download_to=args.download, progress=progress(args))
        if rows
        else []
    )
    failed = [r for r in results if r.state != "COMPLETED"]
    for r in failed:
        print(f"failed: {r.cell}: {r.error}")
    total = len(results) + len(uncovered)
    print(f"{len(results) - len(failed)} of {total} cells exported to {args.out}")
    return 1 if failed or uncovered else 0


def _quicklooks(args: argparse.Namespace) -> int:

    polygons = connect_with_polygons(args)
    look = QuicklookSpec(vmax=args.vmax, opacity=args.opacity)
    rows, uncovered = _covered(_cells(args), args)
    for line in uncovered:
        print(line)
    paths = (
        write_quicklooks(rows, polygons, args.out, look, _imagery_spec(args).composite, progress=progress(args))
        if rows
        else []
    )
    print(f"{len(paths)} of {len(paths) + len(uncovered)} quicklooks in {args.out}")
    return 1 if uncovered else 0


def _pixels(args: argparse.Namespace) -> int:

    rows = _cells(args)
    formats = tuple(f.strip() for f in args.format.split(","))
    if args.from_geotiff:
        frames, failed = [], 0
        for row in rows:
            path = Path(args.from_geotiff) / f"{row['name']}.tif"
            if not path.exists():
                print(f"skipped {row['name']}: no {path}")
                continue
            try:
                frames.append(from_geotiff(path, row))
            except CELL_ERRORS as exc:  # one damaged GeoTIFF: reported, the other cells still go in
                failed += 1
                print(f"failed {row['name']}: {path} cannot be read ({exc}): export the cell again")
        if not frames:
            raise InputError(f"--from-geotiff {args.from_geotiff}: none of the cells' GeoTIFFs could be read.")
        paths = write_pixel_table(pd.concat(frames, ignore_index=True), args.out, formats)
        print(f"{len(paths)} files, {sum(len(f) for f in frames):,} pixels -> {args.out}"
              + (f"; {failed} cell(s) failed (above)" if failed else ""))  # fmt: skip
        return 1 if failed else 0

    if not str(args.out).startswith("gs://"):
        raise InputError("server-side pixel tables go to Cloud Storage: give --out gs://BUCKET/PREFIX, "
                         "or --from-geotiff DIR to read exported GeoTIFFs into a local folder.")  # fmt: skip
    parse_gs_url(args.out, "--out")  # before any work
    if not args.polygons:
        raise InputError("server-side pixel tables need --polygons (the mine polygons, for the labels).")
    polygons = connect_with_polygons(args, keeps_exports=True)
    spec = _imagery_spec(args)
    tasks = [export_pixel_table(row, cell_image(row, polygons, spec), spec.band_names, args.out) for row in rows]
    statuses = run_tasks(tasks, progress=progress(args))
    done = sum(succeeded(s) for s in statuses)
    print(f"{done} of {len(tasks)} pixel tables exported to {args.out} (CSV, one per cell)")
    return 0 if done == len(tasks) else 1


def _export(args: argparse.Namespace) -> int:

    spec = load_spec(args.job)
    ledger_path = args.ledger or spec.default_ledger()
    if args.action == "status":
        return _export_status(args, spec, ledger_path)
    if args.url:
        connect("local", project=args.project, url=args.url)
    else:
        storage = storage_root(args, keeps_exports=True) if spec.engine == "local" else None
        connect(spec.engine, project=args.project, catalog=args.catalog, storage_root=storage)

    if args.action == "cancel":
        print(f"{spec.name}: cancelled {cancel_job(ee, spec, ledger_path)} task(s)")
        return 0
    if args.action == "retry-failed":
        print(f"{spec.name}: {retry_failed(spec, ledger_path, say=print)} failed cell(s) queued again")
    poll = args.poll_interval
    if poll is None:
        poll = LOCAL_POLL_S if args.url or spec.engine == "local" else DEFAULT_POLL_S
    if poll < 0:
        raise InputError(f"--poll-interval {poll:g}: give a number of seconds >= 0 (15-60 on Earth Engine).")
    result = run_job(ee, spec, ledger_path, progress=progress(args), storage_root=args.storage if args.url else None,
                     adopt_existing=args.adopt_existing, poll_interval=poll)  # fmt: skip
    emit(args, {"job": spec.name, "counts": dict(result.counts), "submitted": result.submitted,
                "seconds": round(result.seconds, 1), "ok": result.ok},
         lambda: print(f"{spec.name}: " + ", ".join(f"{k} {v}" for k, v in result.counts.items() if v)
                       + f"; {result.submitted} submitted by this run in {result.seconds:.1f} s"))  # fmt: skip
    return 0 if result.ok else 1


def _export_status(args: argparse.Namespace, spec, ledger_path: Path) -> int:
    """``export status``: the ledger's counts and its failed and split cells."""
    ledger = Ledger.existing(ledger_path, args.job)
    if ledger is None:
        emit(args, {"job": spec.name, "ledger": str(ledger_path), "counts": {}, "failed": [], "split": []},
             lambda: print(f"{spec.name}: not run yet (no ledger at {ledger_path}); start it: "
                           f"gee-mining export run {args.job}"))  # fmt: skip
        return 0
    try:
        counts = ledger.counts()
        failed = [{"cell": r["cell"], "error": r.get("error") or ""} for r in ledger.rows("FAILED")]
        split = [{"cell": r["cell"], "error": r.get("error") or ""} for r in ledger.rows("SPLIT")]
    finally:
        ledger.close()

    def human() -> None:
        print(f"{spec.name}: " + (", ".join(f"{k} {v}" for k, v in counts.items() if v) or "no cells yet"))
        for row in failed:
            print(f"  failed {row['cell']}: {row['error']}")
        for row in split:
            print(f"  split {row['cell']} into its 4 children: {row['error']}")

    emit(args, {"job": spec.name, "ledger": str(ledger_path), "counts": dict(counts), "failed": failed,
                "split": split}, human)  # fmt: skip
    return 0


def _world(args: argparse.Namespace) -> int:

    center = tuple(float(v) for v in args.center.split(",")) if args.center else None
    if args.years:
        if args.realism != "easy":
            raise InputError("--realism hard is for one-year worlds: drop --years, or --realism.")
        return _world_years(args, center)
    m = generate_world(
        args.out, polygons=args.polygons, size_km=args.size_km, year=args.year, seed=args.seed,
        months=args.months, center=center, project=args.project, workers=args.workers,
        progress=progress(args), realism=args.realism,
    )  # fmt: skip
    print(f"simulated world: {len(m.scenes)} scenes over tile {m.mgrs_tile}, {m.size_bytes / 1e6:.1f} MB "
          f"in {m.timing_s['total']:.1f} s")  # fmt: skip
    w, so, e, n = m.grid["bounds_lonlat"]
    print(f"  square: {m.grid['size_m'] / 1000:g} km, lon {w:.4f}..{e:.4f}, lat {so:.4f}..{n:.4f} ({m.grid['crs']})")
    if m.polygons.get("source") == "user":
        print(f"  covers {m.polygons['count']} of the {m.polygons['count_in_file']} polygons of {m.polygons['path']}; "
              "cells elsewhere have no imagery (build another world with --center=LON,LAT)")  # fmt: skip
    print(
        f"  catalog: {m.catalog} (use it: --catalog {m.catalog}; or serve it: gee-mining serve --catalog {m.catalog})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``gee-mining`` parser: one subcommand per pipeline step or tool, each with its handler in ``func``."""
    parser = Parser(
        prog="gee-mining",
        description="Find mines in Sentinel-2 imagery with Earth Engine.",
        epilog="--debug (anywhere): show the full traceback of an error",
    )
    parser.set_defaults(command_line=None)  # main() sets it; a handler called without main() names the subcommand
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_runs(sub)
    _add_grid(sub)
    _add_cell_steps(sub)
    _add_export(sub)
    add_detect_cli(sub)
    add_classify_cli(sub)
    add_study_cli(sub)
    add_pyramid_cli(sub)
    add_monitor_cli(sub)
    add_plan_cli(sub)
    add_evaluate_cli(sub)
    _add_world(sub)
    _add_algorithms(sub)
    for _, command in leaf_parsers(parser):
        add_quiet_option(command)
    return parser


def _add_serve(sub: argparse._SubParsersAction) -> None:
    """``serve``: the local engine over HTTP."""
    p = sub.add_parser("serve", help="serve the local engine over HTTP on loopback")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--catalog", help="catalog TOML mapping asset ids to files")
    p.add_argument("--project", default="gee-mining-local", help="Cloud project id the engine answers for")
    p.add_argument("--storage", help="folder where exports land (default: a temporary folder)")
    p.add_argument("--faults", help="fault injection for testing launchers, JSON, e.g. '{\"transient_rate\": 0.1}'")
    p.add_argument(
        "--limits",
        default="on",
        help="Earth Engine's limits (docs/engines.md): on (default), off, or the ones to change, "
        "e.g. 'max_concurrent_tasks=4,request_time_s=600' or a JSON object",
    )
    p.set_defaults(func=_serve)


def _add_runs(sub: argparse._SubParsersAction) -> None:
    """``demo``, ``report`` and ``js``: a demo run, its report, the Code Editor scripts."""
    p = sub.add_parser("demo", help="run every pipeline step on the local engine and write a report")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--catalog", help="catalog TOML (default: the project's shared data, if found)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("report", help="(re)write a run's self-contained HTML report (and a PDF copy on request)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the folder a run wrote (report.json, summary.json, figures)")
    p.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html)")
    p.add_argument(
        "--pdf",
        nargs="?",
        const=True,
        metavar="PATH",
        help="also print it to PDF with headless Chromium (default RUN_DIR/report.pdf)",
    )
    p.set_defaults(func=_report)

    p = sub.add_parser("js", help="write the pipeline steps' Earth Engine Code Editor scripts (ee_scripts/)")
    p.add_argument("--out", default="ee_scripts", help="output folder (default ee_scripts)")
    p.set_defaults(func=_js)


def _add_grid(sub: argparse._SubParsersAction) -> None:
    """``grid`` (step 1): cells over mine polygons."""
    p = sub.add_parser("grid", help="Step 1: cells over mine polygons (positives, negatives, names) to a table")
    p.add_argument("--polygons", required=True, help="a table asset id, or a polygon file (local engine)")
    p.add_argument("--cell", type=float, help="cell size in metres (5500, 2750, 1375 = zoom 14, 15, 16)")
    p.add_argument("--zoom", type=int, help="zoom label (needed for other cell sizes)")
    p.add_argument("--levels", help="several nested sizes, coarse to fine, e.g. 5500,2750,1375")
    p.add_argument("--projection", default="utm", choices=["utm", "EPSG:3857"], help="grid projection (default utm)")
    p.add_argument("--region", help="west,south,east,north in degrees (default: everywhere)")
    p.add_argument("--margin", type=float, default=0.0, help="metres between negatives and any polygon")
    p.add_argument("--image-stat", action="append", default=[], metavar="COLUMN=IMAGE_ID:BAND:REDUCER",
                   help="an extra column: a statistic of an image band over each cell (repeatable)")  # fmt: skip
    p.add_argument("--table-property", action="append", default=[], metavar="COLUMN=TABLE_ID:PROPERTY",
                   help="an extra column: a property of the table's feature at each cell's centre (repeatable)")  # fmt: skip
    p.add_argument("--engine", default="local", choices=["local", "earthengine"],
                   help="which engine runs the graphs: the local engine (offline) or Earth Engine")  # fmt: skip
    p.add_argument("--project", default="gee-mining-local", help="Cloud project (Earth Engine) or local project id")
    p.add_argument("--catalog", help="local engine catalog TOML (for asset ids)")
    p.add_argument("--out", help="output table: .parquet (GeoParquet), .gpkg or .csv")
    p.add_argument("--export", metavar="gs://BUCKET/PREFIX", help="global run: start Export.table tasks per UTM zone")
    p.add_argument("--from-exports", metavar="DIR", help="build the table from a global run's downloaded exports")
    p.add_argument(
        "--storage", help="local engine: folder where --export's files land (default: a kept folder, printed)"
    )
    add_json_option(p, "each level's cells, positives, negatives, file and warnings")
    p.set_defaults(func=_grid)


def _cells_options(p: argparse.ArgumentParser, polygons_required: bool = True) -> None:
    """The options every per-cell step shares: which cells, the polygons, the composite and the engine."""
    p.add_argument("--grid", required=True, help="grid table (.parquet, .gpkg, .csv) written by gee-mining grid")
    p.add_argument("--cells", help="only these cell names (comma-separated)")
    p.add_argument("--limit", type=int, help="only the first N cells")
    p.add_argument("--polygons", required=polygons_required, help="mine polygons: asset id, or a file (local)")
    p.add_argument("--start", default="2019-01-01", help="composite period start (default 2019-01-01)")
    p.add_argument("--end", default="2020-01-01", help="composite period end, exclusive (default 2020-01-01)")
    p.add_argument("--mask", default="cs_plus", help="cloud mask: cs_plus, scl, s2cloudless, qa60, none")
    p.add_argument("--indices", help="spectral indices (spyndex names), comma-separated, e.g. NDVI,NBR")
    p.add_argument("--pairwise", action="store_true", help="add the 66 pairwise normalised differences")
    p.add_argument("--engine", default="local", choices=["local", "earthengine"],
                   help="which engine runs the graphs: the local engine (offline) or Earth Engine")  # fmt: skip
    p.add_argument("--project", default="gee-mining-local", help="Cloud project or local project id")
    p.add_argument("--catalog", help="local engine catalog TOML (for asset ids)")
    p.add_argument("--storage", help="local engine: folder where gs:// exports land")


def _add_cell_steps(sub: argparse._SubParsersAction) -> None:
    """``export-cells``, ``quicklooks`` and ``pixels`` (steps 2-3): per-cell outputs of a grid table."""
    p = sub.add_parser("export-cells", help="Steps 2-3: a COG or TFRecord patches per cell (image, indices, labels)")
    _cells_options(p)
    p.add_argument("--out", required=True, metavar="gs://BUCKET/PREFIX", help="where the files go")
    p.add_argument("--format", default="GeoTIFF", choices=["GeoTIFF", "TFRecord"],
                   help="a Cloud-Optimized GeoTIFF per cell, or TFRecord patches of --patch-size")  # fmt: skip
    p.add_argument("--patch-size", type=int, default=128, help="TFRecord patch side in pixels (default 128)")
    p.add_argument("--margin", type=int, default=0, help="TFRecord extra pixels on each side of a patch")
    p.add_argument("--download", metavar="DIR", help="also copy each cell's files into this local folder")
    p.set_defaults(func=_export_cells)

    p = sub.add_parser("quicklooks", help="Step 2: a JPEG per cell, polygons in translucent red")
    _cells_options(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--vmax", type=float, default=0.3, help="reflectance shown as white (default 0.3)")
    p.add_argument("--opacity", type=float, default=0.35, help="polygon fill opacity (default 0.35)")
    p.set_defaults(func=_quicklooks)

    p = sub.add_parser("pixels", help="Step 3: pixel tables, server-side to gs:// or from exported GeoTIFFs")
    _cells_options(p, polygons_required=False)
    p.add_argument("--out", required=True, help="gs://BUCKET/PREFIX (server-side CSV) or a folder (--from-geotiff)")
    p.add_argument("--from-geotiff", metavar="DIR", help="read <cell>.tif files exported by export-cells")
    p.add_argument("--format", default="parquet", help="with --from-geotiff: parquet, csv or parquet,csv")
    p.set_defaults(func=_pixels)


def _add_export(sub: argparse._SubParsersAction) -> None:
    """``export``: batch export jobs and their ledger."""
    p = sub.add_parser(
        "export", help="batch export jobs (export_jobs/*.toml): run/resume, status, retry-failed, cancel"
    )
    p.add_argument(
        "action",
        choices=["run", "status", "retry-failed", "cancel"],
        help="run (or resume) the job; show its ledger; re-run its failed cells; cancel its tasks",
    )
    p.add_argument("job", help="job spec TOML, e.g. export_jobs/z14-cells-cog.toml")
    p.add_argument("--ledger", help="ledger SQLite file (default: beside the job spec)")
    p.add_argument("--project", default="gee-mining-local", help="Cloud project (Earth Engine) or local project id")
    p.add_argument("--catalog", help="local engine catalog TOML")
    p.add_argument("--storage", help="local engine: folder where gs:// exports land")
    p.add_argument("--url", help="a local engine already serving (gee-mining serve), e.g. http://127.0.0.1:8765")
    p.add_argument("--poll-interval", type=float, default=None, metavar="S",
                   help="run: seconds between polls, a page of the operation listing each (default 30 on Earth Engine, 1 on "
                   "the local engine, whose tasks take seconds)")  # fmt: skip
    p.add_argument("--adopt-existing", action="store_true",
                   help="run: cells whose files are already at the destination count as done (a new ledger after a "
                   "damaged one)")  # fmt: skip
    add_json_option(p, "the ledger's counts and failed cells (status), or the run's result")
    p.set_defaults(func=_export)


def _world_years(args: argparse.Namespace, center) -> int:
    """``world --years``: a multi-year SIMULATED world (mines appear, grow, are abandoned; other change)."""
    if args.polygons:
        raise InputError("--years with --polygons: a multi-year world plants its own mines; leave --polygons out.")
    spec = YearsSpec(years=parse_years(args.years), size_km=args.size_km, months=args.months, center=center,
                     project=args.project)  # fmt: skip
    m = generate_years(args.out, spec, seed=args.seed, workers=args.workers, progress=progress(args))
    print(
        f"SIMULATED multi-year world: {len(m.scenes)} scenes over {spec.years[0]}-{spec.years[-1]}, "
        f"{m.size_bytes / 1e6:.1f} MB in {m.timing_s['total']:.1f} s; truth in {args.out}/truth/mines_by_year.parquet"
    )
    print(f"  monitor it: gee-mining monitor --world {args.out} --years {spec.years[0]}-{spec.years[-1]} --out DIR")
    return 0


def _add_world(sub: argparse._SubParsersAction) -> None:
    """``world``: a simulated Sentinel-2 world and its catalog."""
    p = sub.add_parser("world", help="write a SIMULATED Sentinel-2 world (scenes, cloud scores, land cover) + catalog")
    p.add_argument("--out", default="runs/world", help="output folder (default runs/world)")
    p.add_argument("--polygons", help="mine polygon file to build around (default: generated polygons)")
    p.add_argument("--size-km", type=float, default=20.0, help="side of the square world in km (default 20)")
    p.add_argument("--year", type=int, default=2019, help="year of the scenes (default 2019)")
    p.add_argument("--months", type=int, default=12, help="months of scenes from January (default 12)")
    p.add_argument("--years", help="a multi-year world over these years (e.g. 2019-2023): mines appear, grow, stop")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--center", help="lon,lat of the world's centre (default: densest polygons, or Tapajos)")
    p.add_argument("--project", default="gee-mining-local", help="project of the mine table's asset id")
    p.add_argument("--workers", type=int, help="processes rendering scenes (default: up to 2)")
    p.add_argument("--realism", choices=("easy", "hard"), default="easy",
                   help="easy (default) or hard: many spectra, mine-like bare soil, imperfect cloud flags, haze, "
                        "real texture (docs/world.md; one-year worlds only)")  # fmt: skip
    p.set_defaults(func=_world)


def _add_algorithms(sub: argparse._SubParsersAction) -> None:
    """``algorithms``: the Earth Engine algorithms the local engine implements."""
    p = sub.add_parser("algorithms", help="list the Earth Engine algorithms the local engine implements")
    p.add_argument("--all", action="store_true", help="list every Earth Engine algorithm, marking ours")
    p.add_argument("--markdown", action="store_true", help="the documentation page (docs/algorithms.md) instead")
    add_json_option(p, "the implemented algorithms (and with --all every algorithm)")
    p.set_defaults(func=_algorithms)


def command_line(argv: Sequence[str]) -> str:
    """``gee-mining`` and ``argv`` as one line a shell splits back into the same words: what reports name as the
    command that made them."""
    return shlex.join(["gee-mining", *argv])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every known failure ends as one line on stderr, exit status 2 (``cli.errors.explain``);
    ``--debug`` anywhere on the command line shows the traceback. The run's scratch folder (``gee-mining-*``
    under the temporary directory) is removed at the end, whatever happens."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    quiet_third_party()
    plain_warnings()
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.command_line = command_line(argv)
    with scratch_folder(args), json_stdout(args):
        try:
            return args.func(args)
        except KeyboardInterrupt:
            print("gee-mining: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            message = explain(exc, args)
            if message is None or debug:
                raise
            hint = "" if isinstance(exc, GeeMiningError) else " (--debug shows the traceback)"
            print(f"gee-mining: error: {message}{hint}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())

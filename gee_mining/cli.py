"""The ``gee-mining`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import GeeMiningError


def _serve(args: argparse.Namespace) -> int:
    from .local import LocalEngine

    engine = LocalEngine(args.catalog, project=args.project, storage_root=args.storage)
    server = engine.serve(args.host, args.port)
    print(f"gee-mining local engine serving Earth Engine's REST API on {server.url} (Ctrl-C to stop)")
    print(f"  connect with: gee_mining.connect('local', project='{args.project}', url='{server.url}')")
    print(f"  catalog: {args.catalog or '(empty)'}; exports land under {engine.storage_root}")
    try:
        server.wait()
    except KeyboardInterrupt:
        print("stopping")
    finally:
        engine.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(args.out, catalog=args.catalog)
    print(f"report: {result.report.resolve()}")
    return 0


def _js(args: argparse.Namespace) -> int:
    from .jsgen import cli

    return cli(args)


def _algorithms(args: argparse.Namespace) -> int:
    from .local.registry import implemented
    from .local.signatures import signatures

    done = implemented()
    names = sorted(signatures()) if args.all else sorted(done)
    for name in names:
        if args.all:
            print(f"{'yes' if name in done else ' - '}  {name}")
        else:
            print(name)
    print(f"# {len(done)} of {len(signatures())} Earth Engine algorithms implemented", file=sys.stderr)
    return 0


def _grid(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    import ee

    from .connect import connect
    from .errors import InputError
    from .grid import GridSpec, build_levels, parse_region, register_polygon_file, write_table
    from .local.catalog import TABLE_SUFFIXES

    if args.levels:
        specs = [GridSpec.of(float(v), projection=args.projection) for v in args.levels.split(",")]
    else:
        specs = [GridSpec.of(args.cell, args.zoom, projection=args.projection)]
    if not args.export and not args.out:
        raise InputError("give --out PATH for the grid table (or --export gs://BUCKET/PREFIX for a global run).")
    out = Path(args.out) if args.out else None
    polygons = args.polygons
    if Path(polygons).suffix.lower() in TABLE_SUFFIXES or Path(polygons).exists():
        if args.engine != "local":
            raise InputError(
                f"--polygons {polygons}: Earth Engine reads tables from assets; upload the file as a table asset "
                "and pass its id, or use --engine local."
            )
        polygons, catalog, _ = register_polygon_file(
            polygons, Path(tempfile.mkdtemp(prefix="gee-mining-grid-")), args.project
        )
        connect("local", project=args.project, catalog=catalog)
    else:
        connect(args.engine, project=args.project, catalog=args.catalog)
    region = parse_region(ee, args.region)
    if args.export:
        from .grid import export_grid

        bucket, _, prefix = args.export.removeprefix("gs://").partition("/")
        for spec in specs:
            for task in export_grid(ee, polygons, spec, bucket, prefix or "grid", region=region, margin=args.margin):
                print(f"started {task.status()['description']} ({task.id})")
        print(
            f"when they finish, download gs://{bucket}/{prefix or 'grid'}/zZOOM/ and run: gee-mining grid --from-exports DIR ..."
        )
        return 0
    if args.from_exports:
        from .grid import grid_from_exports

        if len(specs) != 1:
            raise InputError("--from-exports reads one level: give --cell (or --zoom), not --levels.")
        tables = [grid_from_exports(ee, args.from_exports, specs[0])]
    else:
        tables = build_levels(ee, polygons, specs, region=region, margin=args.margin, progress=print)
    for spec, table in zip(specs, tables, strict=True):
        path = out if len(specs) == 1 else out.with_name(f"{out.stem}_z{spec.zoom}{out.suffix}")
        write_table(table, path)
        for warning in table.warnings:
            print(f"warning: {warning}")
        print(f"zoom {spec.zoom}: {len(table.positives)} positives, {len(table.negatives)} negatives -> {path}")
    return 0


def _world(args: argparse.Namespace) -> int:
    from .world import generate_world

    center = tuple(float(v) for v in args.center.split(",")) if args.center else None
    m = generate_world(
        args.out, polygons=args.polygons, size_km=args.size_km, year=args.year, seed=args.seed,
        months=args.months, center=center, project=args.project, workers=args.workers,
        progress=print if args.verbose else None,
    )  # fmt: skip
    print(f"simulated world: {len(m.scenes)} scenes over tile {m.mgrs_tile}, {m.size_bytes / 1e6:.1f} MB "
          f"in {m.timing_s['total']:.1f} s")  # fmt: skip
    print(f"  catalog: {m.catalog} (serve it: gee-mining serve --catalog {m.catalog})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gee-mining", description="Find mines in Sentinel-2 imagery with Earth Engine."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the local engine over HTTP on loopback")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--catalog", help="catalog TOML mapping asset ids to files")
    p.add_argument("--project", default="gee-mining-local", help="Cloud project id the engine answers for")
    p.add_argument("--storage", help="folder where exports land (default: a temporary folder)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("demo", help="run every pipeline step on the local engine and write a report")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--catalog", help="catalog TOML (default: the project's shared data, if found)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("js", help="write the pipeline steps' Earth Engine Code Editor scripts (ee_scripts/)")
    p.add_argument("--out", default="ee_scripts", help="output folder (default ee_scripts)")
    p.set_defaults(func=_js)

    p = sub.add_parser("grid", help="Step 1: cells over mine polygons (positives, negatives, names) to a table")
    p.add_argument("--polygons", required=True, help="a table asset id, or a polygon file (local engine)")
    p.add_argument("--cell", type=float, help="cell size in metres (5500, 2750, 1375 = zoom 14, 15, 16)")
    p.add_argument("--zoom", type=int, help="zoom label (needed for other cell sizes)")
    p.add_argument("--levels", help="several nested sizes, coarse to fine, e.g. 5500,2750,1375")
    p.add_argument("--projection", default="utm", choices=["utm", "EPSG:3857"], help="grid projection (default utm)")
    p.add_argument("--region", help="west,south,east,north in degrees (default: everywhere)")
    p.add_argument("--margin", type=float, default=0.0, help="metres between negatives and any polygon")
    p.add_argument("--engine", default="local", choices=["local", "earthengine"])
    p.add_argument("--project", default="gee-mining-local", help="Cloud project (Earth Engine) or local project id")
    p.add_argument("--catalog", help="local engine catalog TOML (for asset ids)")
    p.add_argument("--out", help="output table: .parquet (GeoParquet), .gpkg or .csv")
    p.add_argument("--export", metavar="gs://BUCKET/PREFIX", help="global run: start Export.table tasks per UTM zone")
    p.add_argument("--from-exports", metavar="DIR", help="build the table from a global run's downloaded exports")
    p.set_defaults(func=_grid)

    p = sub.add_parser("world", help="write a SIMULATED Sentinel-2 world (scenes, cloud scores, land cover) + catalog")
    p.add_argument("--out", default="runs/world", help="output folder (default runs/world)")
    p.add_argument("--polygons", help="mine polygon file to build around (default: generated polygons)")
    p.add_argument("--size-km", type=float, default=20.0, help="side of the square world in km (default 20)")
    p.add_argument("--year", type=int, default=2019, help="year of the scenes (default 2019)")
    p.add_argument("--months", type=int, default=12, help="months of scenes from January (default 12)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--center", help="lon,lat of the world's centre (default: densest polygons, or Tapajos)")
    p.add_argument("--project", default="gee-mining-local", help="project of the mine table's asset id")
    p.add_argument("--workers", type=int, help="processes rendering scenes (default: up to 2)")
    p.add_argument("--verbose", action="store_true", help="print each scene")
    p.set_defaults(func=_world)

    p = sub.add_parser("algorithms", help="list the Earth Engine algorithms the local engine implements")
    p.add_argument("--all", action="store_true", help="list every Earth Engine algorithm, marking ours")
    p.set_defaults(func=_algorithms)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GeeMiningError as e:
        print(f"gee-mining: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

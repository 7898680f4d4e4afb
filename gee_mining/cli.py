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

"""Helpers shared by the CLI's commands: key=value options, connecting with a polygon file."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gee_mining.connection import connect
from gee_mining.errors import InputError
from gee_mining.io.polygons import register_polygon_file
from gee_mining.local.service.catalog import TABLE_SUFFIXES


def connect_with_polygons(args: argparse.Namespace) -> str:
    """Connect ``ee`` as ``--engine`` says; a polygon file (local engine) is served under an asset id, returned."""

    polygons = args.polygons
    if Path(polygons).suffix.lower() in TABLE_SUFFIXES or Path(polygons).exists():
        if args.engine != "local":
            raise InputError(
                f"--polygons {polygons}: Earth Engine reads tables from assets; upload the file as a table asset "
                "and pass its id, or use --engine local."
            )
        catalog_dir = Path(tempfile.mkdtemp(prefix="gee-mining-"))
        polygons, catalog, _ = register_polygon_file(polygons, catalog_dir, args.project, base=args.catalog)
        connect("local", project=args.project, catalog=catalog, storage_root=getattr(args, "storage", None))
    else:
        connect(args.engine, project=args.project, catalog=args.catalog, storage_root=getattr(args, "storage", None))
    return polygons


def parse_key_values(pairs: Sequence[str] | None, option: str, example: str) -> dict[str, Any]:
    """``key=value`` command-line pairs as keyword arguments; values become int, float, bool or None when they read
    as one (``numberOfTrees=100``, ``mosaic=0``, ``amp=false``), strings otherwise."""

    def value(text: str) -> Any:
        for cast in (int, float):
            try:
                return cast(text)
            except ValueError:
                pass
        return {"true": True, "false": False, "none": None}.get(text.lower(), text)

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{option} {pair!r}: write name=value, e.g. {example}.")
        out[key] = value(text)
    return out

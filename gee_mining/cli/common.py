"""Helpers shared by the CLI's commands: key=value options, connecting with a polygon file."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gee_mining.connection import connect, current_connection, disconnect
from gee_mining.errors import InputError
from gee_mining.io.polygons import register_polygon_file
from gee_mining.local.service.catalog import TABLE_SUFFIXES


def connect_with_polygons(args: argparse.Namespace, keeps_exports: bool = False) -> str:
    """Connect ``ee`` as ``--engine`` says; a polygon file (local engine) is served under an asset id, returned.
    ``keeps_exports``: the command's output is what its tasks export (see :func:`storage_root`)."""

    polygons = args.polygons
    if Path(polygons).suffix.lower() in TABLE_SUFFIXES or Path(polygons).exists():
        if args.engine != "local":
            raise InputError(
                f"--polygons {polygons}: Earth Engine reads tables from assets; upload the file as a table asset "
                "and pass its id, or use --engine local."
            )
        catalog_dir = Path(tempfile.mkdtemp(prefix="catalog-", dir=scratch(args)))
        polygons, catalog, _ = register_polygon_file(polygons, catalog_dir, args.project, base=args.catalog)
        connect("local", project=args.project, catalog=catalog, storage_root=storage_root(args, keeps_exports))
    else:
        connect(args.engine, project=args.project, catalog=args.catalog,
                storage_root=storage_root(args, keeps_exports))  # fmt: skip
    return polygons


@contextlib.contextmanager
def scratch_folder(args: argparse.Namespace) -> Iterator[Path]:
    """A ``gee-mining-*`` scratch folder for one command (polygon catalogs, the local engine's storage when
    nothing keeps its files), removed when the command ends, whatever happens."""
    with tempfile.TemporaryDirectory(prefix="gee-mining-") as tmp:
        args._scratch = Path(tmp)
        try:
            yield args._scratch
        finally:
            conn = current_connection()
            if (
                conn is not None
                and conn.local_engine is not None
                and Path(conn.local_engine.storage_root).is_relative_to(tmp)
            ):
                disconnect()  # the engine whose storage is about to go
            del args._scratch


def scratch(args: argparse.Namespace) -> Path:
    """This command's scratch folder (a fresh temporary one when the command runs outside ``main``)."""
    if getattr(args, "_scratch", None) is None:
        args._scratch = Path(tempfile.mkdtemp(prefix="gee-mining-"))
    return args._scratch


def storage_root(args: argparse.Namespace, keeps_exports: bool = False) -> str | None:
    """Where a local engine's gs:// exports land: ``--storage``; else, for a command whose exports are its output
    (``keeps_exports``), a kept ``gee-mining-exports-*`` folder that is printed; else the scratch folder."""
    if getattr(args, "storage", None):
        return args.storage
    if getattr(args, "engine", "local") != "local":
        return None
    if keeps_exports:
        if getattr(args, "_kept_storage", None) is None:
            args._kept_storage = tempfile.mkdtemp(prefix="gee-mining-exports-")
            print(f"exports (gs://...) land in the folder {args._kept_storage} (choose it with --storage DIR)")
        return args._kept_storage
    return str(scratch(args) / "storage")


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


def check_writable(path: Path) -> Path:
    """``path`` if its folder (the nearest existing one) can be written, else InputError: found before the work."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: the folder {folder} cannot be written: choose another output path (--out).")
    if path.is_dir():
        raise InputError(f"{path} is a folder: give a file name for --out, e.g. {path / 'grid.parquet'}.")
    return path

"""An export job's spec: the TOML file (``export_jobs/*.toml``) read and checked into a :class:`JobSpec`.

The spec names the product (one of ``batch.products.PRODUCTS``), the cells (a grid table), the parameters and the
Cloud Storage destination; each cell's ``requestId`` derives from it deterministically, so that a resumed job
resubmits a cell under the same id.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gee_mining.batch.products import (
    PRODUCTS,
)
from gee_mining.errors import InputError

ENGINES = ("local", "earthengine")


NAMESPACE = uuid.UUID("5f0c6d2e-7c1a-4d8e-9b3f-2a6e8c4d1b90")  # fixed: request ids must not change between runs


@dataclass(frozen=True)
class JobSpec:
    """One export job: ``product`` for every cell of ``cells``, into ``gs://bucket/prefix/``."""

    name: str
    product: str
    cells: Path
    bucket: str
    prefix: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    engine: str = "local"
    max_running: int = 2
    path: Path | None = None
    split_failed: bool = False
    max_split_depth: int = 2

    @property
    def params_hash(self) -> str:
        """A stable hash of what the tasks compute (params, product, destination): part of each request id."""
        blob = json.dumps(
            {"product": self.product, "params": self.params, "bucket": self.bucket, "prefix": self.prefix},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def request_id(self, cell: str, generation: int = 0) -> str:
        """The deterministic ``requestId`` of a cell's export; ``generation`` > 0 after a failed operation."""
        key = f"{self.name}|{self.product}|{cell}|{self.params_hash}"
        if generation:
            key += f"|#{generation}"
        return str(uuid.uuid5(NAMESPACE, key))

    def default_ledger(self) -> Path:
        """The ledger beside the spec file (``<spec>.ledger.sqlite``), or in the working directory."""
        if self.path is not None:
            return self.path.with_suffix(".ledger.sqlite")
        return Path(f"{self.name}.ledger.sqlite")


def _need(data: dict, key: str, kind: type, where: str, example: str):
    if key not in data:
        raise InputError(f"{where}: the field {key!r} is missing: add e.g. {example}")
    value = data[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"{where}: {key} = {value!r} should be a {kind.__name__}: e.g. {example}")
    return value


def parse_spec(data: dict[str, Any], base: Path | None = None, where: str = "job spec") -> JobSpec:
    """A :class:`JobSpec` from a TOML table; every bad field raises :class:`InputError` naming it and the fix."""
    name = _need(data, "name", str, where, 'name = "s2-cells-2019"')
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise InputError(
            f"{where}: name = {name!r}: use letters, digits, '_', '-', '.' (at most 100), e.g. \"z16-2019\""
        )
    product = _need(data, "product", str, where, 'product = "cell-geotiff"')
    if product not in PRODUCTS:
        raise InputError(f"{where}: product = {product!r} is unknown: use one of {', '.join(sorted(PRODUCTS))}")
    cells_text = _need(data, "cells", str, where, 'cells = "grids/z16.parquet"')
    cells = Path(cells_text).expanduser()
    if not cells.is_absolute() and base is not None:
        cells = base / cells
    if cells.suffix.lower() not in (".parquet", ".gpkg", ".csv"):
        raise InputError(
            f"{where}: cells = {cells_text!r}: give a grid table (.parquet, .gpkg or .csv) from gee-mining grid"
        )
    dest = _need(data, "destination", dict, where, '[destination] bucket = "my-bucket"')
    bucket = _need(dest, "bucket", str, f"{where} [destination]", 'bucket = "my-bucket"')
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]", bucket):
        raise InputError(
            f"{where}: destination.bucket = {bucket!r} is not a Cloud Storage bucket name (lowercase, 3-63)"
        )
    prefix = dest.get("prefix", "")
    if not isinstance(prefix, str):
        raise InputError(f'{where}: destination.prefix = {prefix!r} should be a string, e.g. "exports/z16"')
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise InputError(f"{where}: params should be a table, e.g. [params] scale = 10")
    engine = data.get("engine", "local")
    if engine not in ENGINES:
        raise InputError(f'{where}: engine = {engine!r}: use "local" or "earthengine"')
    max_running = data.get("max_running", 2)
    if isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 1:
        raise InputError(
            f"{where}: max_running = {max_running!r}: give a whole number >= 1 (2 on the noncommercial tier)"
        )
    split_failed = data.get("split_failed", False)
    if not isinstance(split_failed, bool):
        raise InputError(f"{where}: split_failed = {split_failed!r}: give true or false")
    max_split_depth = data.get("max_split_depth", 2)
    if isinstance(max_split_depth, bool) or not isinstance(max_split_depth, int) or max_split_depth < 0:
        raise InputError(f"{where}: max_split_depth = {max_split_depth!r}: give a whole number >= 0, e.g. 2")
    unknown = set(data) - {"name", "product", "cells", "destination", "params", "engine", "max_running",
                           "split_failed", "max_split_depth"}  # fmt: skip
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}: remove them or check the spelling")
    return JobSpec(name, product, cells, bucket, prefix.strip("/"), dict(params), engine, max_running, None,
                   split_failed, max_split_depth)  # fmt: skip


def load_spec(path: str | Path) -> JobSpec:
    """Read a job spec TOML; relative ``cells`` paths are relative to the spec file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such job spec: give a TOML file such as export_jobs/z16-geotiff.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc}): fix the syntax") from None
    spec = parse_spec(data, base=path.parent, where=str(path))
    return JobSpec(**{**spec.__dict__, "path": path})

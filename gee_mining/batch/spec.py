"""An export job's spec: the TOML file (``export_jobs/*.toml``) read and checked into a :class:`JobSpec`.

The spec names the product (one of ``batch.products.PRODUCTS``), the cells (a grid table), the parameters and the
Cloud Storage destination; each cell's ``requestId`` derives from it deterministically, so that a resumed job
resubmits a cell under the same id.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gee_mining.batch.products import PARAMS, PRODUCTS, check_params
from gee_mining.errors import InputError
from gee_mining.io.storage import check_bucket_name

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


TOP_KEYS = ("name", "product", "cells", "destination", "params", "engine", "max_running", "split_failed",
            "max_split_depth")  # fmt: skip
DESTINATION_KEYS = ("bucket", "prefix")


def _refuse_unknown(table: dict, valid: Sequence[str], where: str) -> None:
    """Unknown keys are an error, with the nearest valid key suggested: a typo must never fall back to a default."""
    for key in sorted(map(str, set(table) - set(valid))):
        near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(sorted(valid))}"
        raise InputError(f"{where}: unknown key {key!r}: {hint}")


def _need(data: dict, key: str, kind: type, where: str, example: str):
    if key not in data:
        raise InputError(f"{where}: the field {key!r} is missing: add e.g. {example}")
    value = data[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"{where}: {key} = {value!r} should be a {kind.__name__}: e.g. {example}")
    return value


def _whole(data: dict, key: str, default: int, least: int, where: str, hint: str) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{where}: {key} = {value!r}: give a whole number >= {least}{hint}")
    return value


def _cells(data: dict, base: Path | None, where: str) -> Path:
    cells_text = _need(data, "cells", str, where, 'cells = "grids/z16.parquet"')
    cells = Path(cells_text).expanduser()
    if not cells.is_absolute() and base is not None:
        cells = base / cells
    if cells.suffix.lower() not in (".parquet", ".gpkg", ".csv"):
        raise InputError(
            f"{where}: cells = {cells_text!r}: give a grid table (.parquet, .gpkg or .csv) from gee-mining grid"
        )
    return cells


def _destination(data: dict, where: str) -> tuple[str, str]:
    dest = _need(data, "destination", dict, where, '[destination] bucket = "my-bucket"')
    _refuse_unknown(dest, DESTINATION_KEYS, f"{where} [destination]")
    bucket = _need(dest, "bucket", str, f"{where} [destination]", 'bucket = "my-bucket"')
    check_bucket_name(bucket, f"{where}: destination.bucket =")
    prefix = dest.get("prefix", "")
    if not isinstance(prefix, str):
        raise InputError(f'{where}: destination.prefix = {prefix!r} should be a string, e.g. "exports/z16"')
    return bucket, prefix.strip("/")


def parse_spec(data: dict[str, Any], base: Path | None = None, where: str = "job spec") -> JobSpec:
    """A :class:`JobSpec` from a TOML table; every bad field raises :class:`InputError` naming it and the fix.

    Checked against the schema: unknown keys in any table (the top level, ``[destination]``, the product's
    ``[params]``) are refused with the nearest valid key suggested, and the product's parameters are checked
    up front (``batch.products.check_params``), so a bad value is one error, not one failed task per cell.
    """
    if not isinstance(data, dict):
        raise InputError(f'{where}: a job spec is a TOML table of fields, e.g. name = "z16"')
    _refuse_unknown(data, TOP_KEYS, where)
    name = _need(data, "name", str, where, 'name = "s2-cells-2019"')
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise InputError(
            f"{where}: name = {name!r}: use letters, digits, '_', '-', '.' (at most 100), e.g. \"z16-2019\""
        )
    product = _need(data, "product", str, where, 'product = "cell-geotiff"')
    if product not in PRODUCTS:
        near = difflib.get_close_matches(product, list(PRODUCTS), n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(sorted(PRODUCTS))}"
        raise InputError(f"{where}: product = {product!r} is unknown: {hint}")
    cells = _cells(data, base, where)
    bucket, prefix = _destination(data, where)
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise InputError(f"{where}: params should be a table, e.g. [params] scale = 10")
    if product in PARAMS:  # a product declares what it reads (batch.products.PARAMS); anything else is a typo
        _refuse_unknown(params, sorted(PARAMS[product]), f"{where} [params] of product {product!r}")
    engine = data.get("engine", "local")
    if engine not in ENGINES:
        raise InputError(f'{where}: engine = {engine!r}: use "local" or "earthengine"')
    max_running = _whole(data, "max_running", 2, 1, where, " (2 on the noncommercial tier)")
    split_failed = data.get("split_failed", False)
    if not isinstance(split_failed, bool):
        raise InputError(f"{where}: split_failed = {split_failed!r}: give true or false")
    max_split_depth = _whole(data, "max_split_depth", 2, 0, where, ", e.g. 2")
    spec = JobSpec(name, product, cells, bucket, prefix, dict(params), engine, max_running, None,
                   split_failed, max_split_depth)  # fmt: skip
    try:
        check_params(spec)
    except InputError as exc:
        raise InputError(f"{where} [params]: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where} [params]: {exc}: check the values' types against docs/jobs.md") from None
    return spec


def load_spec(path: str | Path) -> JobSpec:
    """Read a job spec TOML; relative ``cells`` paths are relative to the spec file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such job spec: give a TOML file such as export_jobs/z16-geotiff.toml") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (not UTF-8): give a job spec TOML such as "
                         "export_jobs/z16-cells-geotiff.toml") from None  # fmt: skip
    except OSError as exc:
        raise InputError(f"{path}: cannot read the job spec ({exc.strerror}): give a readable TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc}): fix the syntax") from None
    spec = parse_spec(data, base=path.parent, where=str(path))
    return JobSpec(**{**spec.__dict__, "path": path})

"""Batch exports. Tables go to a local folder standing in for the destination.

A Cloud Storage destination ``gs://BUCKET/PREFIX`` is written to
``<storage_root>/BUCKET/PREFIX.<ext>``; a Drive destination to
``<storage_root>/drive/FOLDER/PREFIX.<ext>``. (Cloud Storage through its
emulator and image exports arrive with the images issue.)
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import EngineError
from .evaluator import Context, evaluate
from .featurecollection import FeatureCollection

_EXTENSIONS = {"CSV": "csv", "GEO_JSON": "geojson"}


def _destination(engine: Any, options: dict) -> tuple[Path, str]:
    root = Path(engine.storage_root)
    if "cloudStorageDestination" in options:
        dest = options["cloudStorageDestination"]
        bucket = dest.get("bucket")
        if not bucket:
            raise EngineError("Export: a Cloud Storage destination needs a bucket.")
        prefix = dest.get("filenamePrefix") or "export"
        return root / bucket, prefix
    if "driveDestination" in options:
        dest = options["driveDestination"]
        return root / "drive" / (dest.get("folder") or ""), dest.get("filenamePrefix") or "export"
    raise EngineError("Export: the local engine writes to Cloud Storage or Drive destinations only.")


def table_export_work(engine: Any, payload: dict, ctx: Context):
    options = payload.get("fileExportOptions") or {}
    fmt = options.get("fileFormat", "CSV")
    if fmt not in _EXTENSIONS:
        raise EngineError(f"Export.table: file format {fmt} is not supported by the local engine (CSV, GEO_JSON).")
    folder, prefix = _destination(engine, options)
    selectors = payload.get("selectors")
    expression = payload["expression"]

    def work(op) -> list[str]:
        ctx.cancelled = op.cancel_event
        value = evaluate(expression, ctx)
        if not isinstance(value, FeatureCollection):
            raise EngineError("Export.table: the exported value is not a FeatureCollection.")
        path = folder / f"{prefix}.{_EXTENSIONS[fmt]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        write = _write_csv if fmt == "CSV" else _write_geojson
        _atomic(path, lambda fh: write(fh, value, selectors))
        return [path.resolve().as_uri()]

    return work


def _atomic(path: Path, writer) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_csv(fh, fc: FeatureCollection, selectors: list[str] | None) -> None:
    from .info import to_info

    infos = [f.to_info() for f in fc.features]
    cols = selectors or (["system:index", *sorted({k for i in infos for k in i["properties"]}), ".geo"])
    w = csv.writer(fh)
    w.writerow(cols)
    for feat, info in zip(fc.features, infos, strict=True):
        row = []
        for c in cols:
            if c == "system:index":
                row.append(feat.id or "")
            elif c == ".geo":
                row.append(json.dumps(info["geometry"], separators=(",", ":")) if info["geometry"] else "")
            else:
                v = to_info(feat.properties.get(c))
                row.append("" if v is None else json.dumps(v) if isinstance(v, list | dict) else v)
        w.writerow(row)


def _write_geojson(fh, fc: FeatureCollection, selectors: list[str] | None) -> None:
    out = fc.to_info()
    if selectors:
        for f in out["features"]:
            f["properties"] = {k: v for k, v in f["properties"].items() if k in selectors}
    json.dump({"type": "FeatureCollection", "features": out["features"]}, fh)

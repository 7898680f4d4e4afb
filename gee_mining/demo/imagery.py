"""The imagery step of ``make demo``: cells of the simulated world, their exports, quicklooks and pixel tables."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image as PILImage

from gee_mining.batch.exports import ExportResult, ExportSpec, export_cells
from gee_mining.contracts.cells import GridSpec
from gee_mining.contracts.features import DEFAULT_INDICES
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.io.catalog import WORLD_MINES_ID
from gee_mining.io.pixel_table import from_geotiff, write_pixel_table
from gee_mining.steps.cell_image import ImagerySpec, cell_image
from gee_mining.steps.grid import build_grid
from gee_mining.steps.pixel_tables import fetch_pixel_table
from gee_mining.steps.quicklooks import write_quicklooks
from gee_mining.tools.report import Report


def demo_cells(ee, ctx, zoom_cell: float = 1375.0, limit: int = 4) -> list[dict[str, Any]]:
    """Grid cells inside the demo's simulated world (positives and their negatives), built server-side."""

    table = build_grid(ee, WORLD_MINES_ID, GridSpec.of(zoom_cell))
    x0, top = ctx.world.grid["origin"]
    size = ctx.world.grid["size_m"]
    epsg = int(str(ctx.world.grid["crs"]).split(":")[1])

    def inside(r: dict[str, Any]) -> bool:
        xmin, ymin, xmax, ymax = pixel_grid(r).bounds
        return r["epsg"] == epsg and xmin >= x0 and xmax <= x0 + size and ymin >= top - size and ymax <= top

    negatives = {r["name"]: r for r in table.negatives if inside(r)}
    positives = [
        r for r in sorted(table.positives, key=lambda r: -r["overlap"]) if inside(r) and r["pair"] in negatives
    ]
    positives = positives[:limit]
    return positives + [negatives[r["pair"]] for r in positives]


@dataclass
class _ImageryOutputs:
    """What steps 2-3 produced for the demo's cells: exports, quicklooks and pixel tables."""

    out: Path  # the step's folder
    spec: ImagerySpec
    cells: list[dict[str, Any]]
    results: list[ExportResult]  # a cloud-optimized GeoTIFF per cell
    tfr: list[ExportResult]  # TFRecord patches of the first cell
    looks: list[Path]
    pixels: pd.DataFrame  # the pixel tables of every cell, from the GeoTIFFs
    same: bool  # the server-side pixel table of the first cell equals its GeoTIFF's

    @property
    def by_cell(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.cells}


def demo_step(ee, report, ctx) -> None:
    """Steps 2-3 in ``make demo``: composites, indices and labels of zoom-16 cells of the simulated world,
    exported as COG and TFRecord, quicklooks, and pixel tables (server-side and from the GeoTIFFs)."""

    matplotlib.use("Agg")

    if ctx.world is None:
        return
    cells = demo_cells(ee, ctx)
    ctx.progress(f"[demo] steps 2-3: {len(cells)} zoom-16 cells of the simulated world")
    run = _run_imagery(ee, ctx, cells)
    _imagery_section(report, run)
    mine = run.pixels["_mine"] == 1
    ctx.summary["imagery"] = {
        "warnings": _imagery_warnings(run),
        "cells": len(cells),
        "exports_completed": sum(r.state == "COMPLETED" for r in run.results + run.tfr),
        "pixels": len(run.pixels),
        "mine_pixels": int(mine.sum()),
        "server_table_equals_geotiff": run.same,
        "geotiff_dir": str(run.out / "geotiff"),
        "pixel_table_dir": str(run.out / "pixels"),
        "cells_table": [{k: v for k, v in r.items() if k != "polygon_ids"} for r in cells],
    }
    ctx.progress(f"[demo] steps 2-3: {len(run.pixels):,} pixels in tables, {len(run.looks)} quicklooks")


def _run_imagery(ee, ctx, cells: list[dict[str, Any]]) -> _ImageryOutputs:
    """Export the cells (COG each, TFRecord patches of the first), draw their quicklooks and build their pixel
    tables from the GeoTIFFs, checking the first against the server-side table; times each part in ``ctx``."""
    t0 = time.perf_counter()
    out = ctx.out / "imagery"
    spec = ImagerySpec(indices=DEFAULT_INDICES)
    mines = "projects/gee-mining-local/assets/world_mines"
    results = export_cells(
        cells, mines, ExportSpec("gs://gee-mining-demo/cells/z16"), spec, download_to=out / "geotiff"
    )
    tfr_cell = cells[0]
    tfr = export_cells(
        [tfr_cell], mines, ExportSpec("gs://gee-mining-demo/patches/z16", "TFRecord", patch_size=69, margin=8), spec,
        download_to=out / "tfrecord",
    )  # fmt: skip
    ctx.timings["steps 2-3: exports (COG per cell, TFRecord patches)"] = time.perf_counter() - t0
    t = time.perf_counter()
    looks = write_quicklooks(cells, mines, out / "quicklooks", composite_spec=spec.composite)
    ctx.timings["steps 2-3: quicklooks"] = time.perf_counter() - t
    t = time.perf_counter()
    by_cell = {r["name"]: r for r in cells}
    tables = [from_geotiff(p, by_cell[r.cell]) for r in results for p in r.local_files]
    pixels = pd.concat(tables, ignore_index=True)
    write_pixel_table(pixels, out / "pixels", formats=("parquet", "csv"))
    server = fetch_pixel_table(cells[0], cell_image(cells[0], mines, spec), spec.band_names)
    same = bool(
        len(server) == len(tables[0])
        and np.allclose(server[spec.band_names].to_numpy(), tables[0][spec.band_names].to_numpy(), rtol=1e-6)
    )
    ctx.timings["steps 2-3: pixel tables"] = time.perf_counter() - t
    return _ImageryOutputs(out, spec, cells, results, tfr, looks, pixels, same)


def _imagery_section(report, run: _ImageryOutputs) -> None:
    """The report's steps 2-3 section: what ran, the export tasks, quicklooks, pixel distributions and tables."""
    by_cell = run.by_cell
    s = report.section("SIMULATED · Steps 2-3: composites, indices, labels, exports, quicklooks, pixel tables")
    Report.text(
        s,
        f"SIMULATED imagery. {len(run.cells)} zoom-16 cells (1375 m; 138 x 138 pixels of 10 m on Sentinel-2's own "
        "lattice) over the simulated world's generated mines: the Cloud Score+ masked median of 2019, "
        f"{len(run.spec.indices)} spectral indices (spyndex formulas), the _mine label and the signed distance to the "
        "nearest polygon edge, all computed by Earth Engine expression graphs on the local engine, exported with "
        "Export.image (cloud-optimized GeoTIFF per cell, TFRecord patches) and sampled into pixel tables.",
        "warn",
    )
    rows = [
        (r.cell, by_cell[r.cell]["label"], f"{by_cell[r.cell]['overlap']:.1%}", r.state, ", ".join(f.rsplit("/", 1)[1] for f in r.files))
        for r in run.results + run.tfr
    ]  # fmt: skip
    Report.table(s, ["cell", "label", "overlap", "state", "files"], rows, "Export tasks and the files they wrote.")
    Report.figure(s, _quicklooks_figure(run.looks), "SIMULATED: quicklooks (B4, B3, B2) with the mine polygons in "
                  "translucent red, drawn by Image.visualize and Image.blend on the engine; top row positives, bottom "
                  "row their negatives.")  # fmt: skip
    mine = run.pixels["_mine"] == 1
    Report.figure(s, _distributions_figure(run.pixels, mine), "SIMULATED: pixel-table distributions of two indices "
                  "and the signed distance (m) for mine and non-mine pixels.")  # fmt: skip
    Report.table(
        s,
        ["pixels", "mine pixels", "columns", "server-side table equals the GeoTIFF's"],
        [(len(run.pixels), int(mine.sum()), len(run.pixels.columns), "yes" if run.same else "NO")],
        f"Pixel tables in {run.out / 'pixels'} (Parquet and CSV, one file per cell).",
    )


def _quicklooks_figure(looks: list[Path]):
    """The quicklooks on two rows (positives above, their negatives below)."""
    n = len(looks)
    fig, axes = plt.subplots(2, (n + 1) // 2, figsize=(3.2 * ((n + 1) // 2), 6.6))
    for ax, path in zip(np.ravel(axes), looks, strict=False):
        ax.imshow(PILImage.open(path))
        ax.set_title(path.stem, fontsize=7)
        ax.axis("off")
    for ax in np.ravel(axes)[n:]:
        ax.axis("off")
    return fig


def _distributions_figure(pixels: pd.DataFrame, mine: pd.Series):
    """Histograms of NDVI, NBR2 and the signed distance for mine and non-mine pixels."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
    xlabels = {"NDVI": "NDVI", "NBR2": "NBR2", "distance": "signed distance to the nearest mine edge, m (< 0 inside)"}
    for ax, band in zip(axes, ("NDVI", "NBR2", "distance"), strict=True):
        lo, hi = np.nanpercentile(pixels[band], [1, 99])
        bins = np.linspace(lo, hi, 50)
        ax.hist(pixels.loc[~mine, band], bins=bins, alpha=0.6, label="not mine", color="#2e7d32", density=True)
        ax.hist(pixels.loc[mine, band], bins=bins, alpha=0.6, label="mine", color="#c62828", density=True)
        ax.set_title(band)
        ax.set_xlabel(xlabels[band])
        ax.legend(fontsize=8)
    axes[0].set_ylabel("density (area under each class = 1)")
    return fig


def _imagery_warnings(run: _ImageryOutputs) -> list[str]:
    """Exports that did not complete, and cells with more than 5 % of their pixels masked in the composite."""
    warnings = [f"export of {r.cell} ended {r.state}: {r.error or 'no message'}" for r in run.results + run.tfr
                if r.state != "COMPLETED"]  # fmt: skip
    counts = run.pixels["cell"].value_counts()
    for r in run.cells:
        lattice = pixel_grid(r)
        masked = 1 - counts.get(r["name"], 0) / (lattice.width * lattice.height)
        if masked > 0.05:
            warnings.append(f"{r['name']}: {masked:.0%} of its pixels had no clear observation in the composite "
                            "(masked: no row in the pixel table)")  # fmt: skip
    return warnings

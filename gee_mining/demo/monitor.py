"""The monitoring step of ``make demo``: a small SIMULATED multi-year world, the footprints of its known mines
against the truth, its candidates, and the review page (``monitor/review.html``)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import shapely

from gee_mining.connection import connect, current_connection
from gee_mining.monitor.core import MonitorSpec, run_monitor
from gee_mining.monitor.review import write_review
from gee_mining.monitor.world import fit_first_year, known_outlines, prepare_world
from gee_mining.tools.report import Report
from gee_mining.world.years import YearsSpec, generate_years

YEARS = (2019, 2020, 2021)
WORLD = YearsSpec(years=YEARS, size_km=4.2, months=1, known_mines=2, new_mines=2, abandoned=1,
                  changes=(("field", 1), ("fire", 1), ("flood", 1), ("urban", 1)), project="gee-mining-monitor-demo")  # fmt: skip


def _truth_rows(run, world: Path) -> tuple[list, list]:
    """Footprint rows (estimated and true growth) and candidate rows (what each candidate is in the truth)."""
    truth = pd.read_parquet(world / "truth" / "mines_by_year.parquet")
    a = truth[truth.known].pivot(index="mine_id", columns="year", values="disturbed_m2")  # pit + cleared ring
    last = run.footprints[run.footprints.year == YEARS[-1]]
    foot = [[r.mine_id, f"{r.known_area_m2:.0f}", f"{r.area_m2:.0f}", f"{r.growth_m2:.0f}",
             f"{r.growth_low_m2:.0f} .. {r.growth_high_m2:.0f}", f"{a.loc[r.mine_id, YEARS[-1]] - a.loc[r.mine_id, YEARS[0]]:.0f}"]
            for r in last.itertuples()]  # fmt: skip
    outlines = {m: shapely.from_wkt(g) for m, g in zip(truth.mine_id, truth.geometry_wkt, strict=True)}
    cands = []
    for c in run.candidates:
        hit = sorted({m for m, g in outlines.items() if g.intersects(c.geometry)})
        what = f"new mine {', '.join(hit)}" if hit else "not a mine (false candidate)"
        near = c.attributes.get("nearest_mine")  # a year and an id as text: as numbers they would print 2,020
        cands.append([c.id, f"{c.score:.2f}", f"{c.area_m2:.0f}", str(c.first_year), "-" if near is None else str(near),
                      what])  # fmt: skip
    return foot, cands


def demo_step(ee, report, ctx) -> None:
    """Add the "Monitoring" section (see the module's docstring); the demo's own connection is restored after."""
    section = report.section("Monitoring: footprints of known mines and new candidates across years", simulated=True)
    conn = current_connection()
    if conn is None or not conn.is_local:
        Report.text(section, "Skipped: the monitoring demo runs on the local engine.", "warn")
        return
    t0 = time.perf_counter()
    out = Path(ctx.out) / "monitor"
    generate_years(out / "world", WORLD, seed=3)
    spec = MonitorSpec(
        years=YEARS,
        months=1,
        threshold=0.85,
        band=0.1,
        min_pixels=20,
        new_only=True,
        persistent=True,
        footprint_threshold=0.45,
        growth_scale=1.05,
    )  # the rules evaluated (docs/monitor.md)
    try:
        world = prepare_world(out / "world", spec, out)
        model, _ = fit_first_year(world, pixels=300)
        composites = {y: ee.Image(i) for y, i in world.composites.items()}
        run = run_monitor(model, composites, world.region, spec, out)
        page = write_review(out, run.candidates, world.region, composites, known_outlines(world), simulated=True)
    finally:
        connect("local", project=conn.project, catalog=conn.catalog, storage_root=conn.storage_root)
    ctx.timings["monitor: world, composites, footprints, candidates, review page"] = time.perf_counter() - t0
    foot, cands = _truth_rows(run, out / "world")
    Report.text(section, f"A {WORLD.size_km:g} km world over {YEARS[0]}-{YEARS[-1]} (one month of scenes a year): "
                "known mines grow or are abandoned, new mines appear, fields, a fire scar, a flood and new roofs "
                "change the land too. Footprint areas are scaled to the register's first-year outline; the interval "
                f"is the area at threshold +/- {spec.band}. The review page is below (monitor/review.html). SIMULATED.")  # fmt: skip
    Report.table(section, ["mine", "known m2", f"area {YEARS[-1]} m2", "growth m2", "interval", "true growth m2"],
                 foot, "Known mines: estimated growth against the truth (SIMULATED)")  # fmt: skip
    Report.table(section, ["candidate", "score", "area m2", "first year", "nearest mine", "in the truth"], cands,
                 "Candidates outside the known mines (SIMULATED)")  # fmt: skip
    Report.page(section, str(page.relative_to(ctx.out)), page.read_text(),
                "The review page (SIMULATED): record a verdict per candidate and save verdicts.json for the next run")  # fmt: skip
    ctx.summary["monitor"] = {"SIMULATED": True, "candidates": len(run.candidates), "known_mines": len(foot),
                              "review": str(page.relative_to(ctx.out)), "files": run.files}  # fmt: skip

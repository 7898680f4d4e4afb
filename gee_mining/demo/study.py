"""The pixel study in ``make demo``: on the pixel tables the imagery step wrote (SIMULATED world)."""

from __future__ import annotations

import time

from gee_mining.ml.study import plots
from gee_mining.ml.study.run import StudySpec, run_study, summary, write_outputs
from gee_mining.tools.report import Report

HELD_OUT = (
    "In-sample: the train, validation and test cells are of one world, so these figures say how well the models "
    "fit this world, not how they do on another. Measured on held-out worlds (`gee-mining evaluate study`, "
    "SIMULATED, 175 mines in 6 worlds never used to choose the model): the LASSO model finds 175/175 mines "
    "(95 % interval 0.979-1.000) only by flagging 310 km2 of every 1000 km2 of mine-free land and 87 % of natural "
    "bare ground; no feature is in the first 5 of all three train worlds; docs/pyramid.md."
)


def demo_step(ee, report, ctx) -> None:
    """Add "Pixel study": LASSO and L1-logistic paths, drop-out order, model comparison, the ranked answer."""

    section = report.section("SIMULATED · in-sample · Pixel study: which channel combinations make mines stand out")
    pixels = ctx.out / "imagery" / "pixels"
    if ctx.world is None or not pixels.is_dir():
        Report.text(section, "Skipped: the study runs on the pixel tables of the simulated world's cells.", "warn")
        return
    t0 = time.perf_counter()
    scale = ctx.scale
    spec = StudySpec(n_penalties=scale.study_lasso_penalties, n_logistic_penalties=scale.study_logistic_penalties,
                     max_logistic_rows=scale.study_rows, max_model_rows=scale.study_rows)  # fmt: skip
    result = run_study(pixels, spec, sample_per_cell=scale.study_pixels_per_cell, progress=ctx.progress)
    out = ctx.out / "study"
    write_outputs(result, out)
    ctx.timings["pixel study (paths, models, outputs)"] = time.perf_counter() - t0
    s = summary(result)
    Report.text(
        section,
        f"SIMULATED data: the pixel tables of the simulated world's zoom-16 cells (at most "
        f"{scale.study_pixels_per_cell:,} pixels per cell). "
        "Features: the 12 bands and their 66 pairwise normalised differences ND_a_b (the names add_indices uses, "
        "so the chosen transformation deploys server-side unchanged), standardised on the training cells. "
        "LASSO on the distance to a mine's edge (clipped at 200 m, positive inside), L1-logistic on the mine "
        "label; splits by cell (no cell in two splits): "
        + "; ".join(
            f"{k} {', '.join(v)}"
            for k, v in (
                ("train", s["folds"][0]["train"]),
                ("validation", s["folds"][0]["val"]),
                ("test", s["folds"][0]["test"]),
            )
        )
        + ".",
        "warn",
    )
    Report.text(section, HELD_OUT, "warn")
    _figures(section, result)
    _tables(section, result, out)
    ctx.summary["study"] = {
        "rows": s["rows"],
        "top_features": s["top_features"],
        "logistic": s.get("logistic"),
        "lasso": s.get("lasso"),
        "output_dir": str(out),
    }
    ctx.progress(f"[demo] pixel study: top features {', '.join(s['top_features'][:5])}")


def _figures(section, result) -> None:
    """The study's four figures: metrics along the paths, weights, drop-out order, models."""
    note = " - SIMULATED"
    Report.figure(section, plots.metrics_figure(result, note), "SIMULATED: validation (solid) and test (dashed) metrics "
                  "along each path, non-zero weights in grey; dotted: the chosen penalty (sparsest within 0.005 AUC "
                  "/ 1 % RMSE of the best on validation).")  # fmt: skip
    Report.figure(section, plots.weights_figure(result, note=note), "SIMULATED: |weight| of each standardised "
                  "feature vs the penalty; the ten last to reach zero in colour.")  # fmt: skip
    Report.figure(section, plots.dropout_figure(result, note=note), "SIMULATED: drop-out order - the largest "
                  "penalty at which each feature still has a non-zero weight.")  # fmt: skip
    if len(result.models):
        Report.figure(section, plots.models_figure(result, note), "SIMULATED: test metrics of each model and "
                      "its cost to apply per pixel (features given; this machine, its threads).")  # fmt: skip


def _tables(section, result, out) -> None:
    """The study's two tables: the ranked features and the models on the test split."""
    top = result.ranking.head(12)
    Report.table(
        section,
        ["rank", "feature", "direction", "L1-logistic: last non-zero penalty", "LASSO rank", "univariate AUC"],
        [
            (int(r["rank"]), r["feature"], r["direction"], float(r["logistic_last_nonzero_penalty"]),
             int(r["lasso_rank"]), float(r["univariate_auc"]))
            for _, r in top.iterrows()
        ],
        "SIMULATED: which channel combinations enhance mines - features in the order they leave the L1-logistic "
        "path as the penalty grows (last to leave first).",
    )  # fmt: skip
    m = result.models[result.models["split"] == "test"].groupby("model", sort=False).mean(numeric_only=True)
    Report.table(
        section,
        ["model", "test ROC AUC", "test F1", "precision", "recall", "us per pixel"],
        [(name, r["auc"], r["f1"], r["precision"], r["recall"], r["apply_us_per_pixel"]) for name, r in m.iterrows()],
        f"SIMULATED: models on the same split. Tables, plots and model_lasso.json / model_logistic.json in {out}.",
    )

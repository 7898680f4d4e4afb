"""The study's plots: metrics vs penalty, |w| vs penalty, drop-out order, model comparison (matplotlib figures)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from gee_mining.ml.study.paths import dropout_order

TITLES = {"lasso": "LASSO (distance to a mine)", "logistic": "L1-logistic (mine / not mine)"}


def _plt():

    matplotlib.use("Agg")

    return plt


def metrics_figure(result, note: str = ""):
    """Validation and test metrics vs penalty (mean over folds), one panel per path; the chosen penalty dashed."""
    plt = _plt()
    kinds = list(result.paths)
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.2 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        ps = result.paths[kind]
        m = ps.metrics.groupby(["split", "penalty_index"]).mean(numeric_only=True).reset_index()
        names = ("r2", "auc") if kind == "lasso" else ("auc", "f1")
        for split, style in (("val", "-"), ("test", "--")):
            part = m[m["split"] == split]
            for name, colour in zip(names, ("#1565c0", "#c62828"), strict=True):
                ax.plot(part["penalty"], part[name], style, color=colour, label=f"{name} ({split})")
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.axvline(ps.penalties[ps.best_index], color="#555", ls=":", lw=1)
        ax2 = ax.twinx()
        nz = m[m["split"] == "val"]
        ax2.step(nz["penalty"], nz["nonzero"], where="mid", color="#888", lw=1)
        ax2.set_ylabel("non-zero weights", color="#888")
        ax.set_xlabel("penalty (alpha)" if kind == "lasso" else "penalty lambda = 1/(C n)")
        ax.set_title(TITLES[kind] + note, fontsize=10)
        ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below: never over a line
    fig.tight_layout()
    return fig


def weights_figure(result, top: int = 10, note: str = ""):
    """|w_i| on standardised features vs penalty (fold 0), the ``top`` last-to-vanish features labelled."""
    plt = _plt()
    kinds = list(result.paths)
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.2 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        ps = result.paths[kind]
        fit = ps.fits[0]
        order = [f for f, _, _ in _order(fit)]
        label = set(order[:top])
        cmap = plt.get_cmap("tab10")
        c = 0
        for j, f in enumerate(fit.features):
            w = np.abs(fit.coefs[j])
            if f in label:
                ax.plot(fit.penalties, w, lw=1.6, color=cmap(c % 10), label=f)
                c += 1
            else:
                ax.plot(fit.penalties, w, lw=0.6, color="#bbb")
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.axvline(ps.penalties[ps.best_index], color="#555", ls=":", lw=1)
        ax.set_xlabel("penalty (alpha)" if kind == "lasso" else "penalty lambda = 1/(C n)")
        ax.set_ylabel("|w| (standardised features)")
        ax.set_title(TITLES[kind] + note, fontsize=10)
        ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.18))  # below: never over a line
    fig.tight_layout()
    return fig


def _order(fit):

    return dropout_order(fit)


def dropout_figure(result, top: int = 20, note: str = ""):
    """The penalty at which each of the ``top`` features reaches zero (mean-rank order over folds)."""
    plt = _plt()
    kinds = list(result.paths)
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 0.28 * top + 1.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        d = result.paths[kind].dropout().head(top)
        colours = np.where(d["sign"] > 0, "#c62828", "#1565c0")
        pen = d["last_nonzero_penalty"].replace(0, np.nan)
        ax.barh(np.arange(len(d)), pen, color=colours)
        ax.set_yticks(np.arange(len(d)), d["feature"], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("largest penalty with a non-zero weight")
        ax.set_title(f"{TITLES[kind]}{note}\ndrop-out order (red: higher on mines, blue: lower)", fontsize=9)
    fig.tight_layout()
    return fig


def models_figure(result, note: str = ""):
    """Test ROC AUC and F1 of each model (mean over folds) beside its apply cost per pixel."""
    plt = _plt()
    m = result.models
    m = m[m["split"] == "test"].groupby("model", sort=False).mean(numeric_only=True)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 0.45 * len(m) + 1.6))
    y = np.arange(len(m))
    a1.barh(y - 0.2, m["auc"], 0.4, color="#1565c0", label="ROC AUC")
    a1.barh(y + 0.2, m["f1"], 0.4, color="#c62828", label="F1")
    a1.set_yticks(y, m.index, fontsize=8)
    a1.invert_yaxis()
    a1.set_xlim(0, 1)
    a1.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.12))  # below the bars, not on them
    a1.set_title(f"test metrics{note}", fontsize=10)
    a2.barh(y, m["apply_us_per_pixel"], color="#555")
    a2.set_yticks(y, [""] * len(y))
    a2.invert_yaxis()
    a2.set_xscale("log")
    a2.set_xlabel("apply cost, microseconds per pixel (features given)")
    a2.set_title("cost to apply", fontsize=10)
    fig.tight_layout()
    return fig


def save_all(result, out: Path, note: str = "") -> list[Path]:
    plt = _plt()
    written = []
    figs = {
        "metrics_vs_penalty": metrics_figure(result, note),
        "weights_vs_penalty": weights_figure(result, note=note),
        "dropout_order": dropout_figure(result, note=note),
    }
    if len(result.models):
        figs["model_comparison"] = models_figure(result, note)
    for name, fig in figs.items():
        path = Path(out) / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written

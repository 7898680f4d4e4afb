"""Pyramid thresholds that generalise: calibrated on many mines of several worlds at once, with a margin.

:func:`gee_mining.pyramid.core.calibrate` picks each level's threshold on one region's mines; with
a handful of mines, "keep 98 %" puts the threshold exactly at the weakest mine, and a world of
another seed needs lower ones (measured: recall 0.28 out of sample, issue 25). Here the levels run
over every calibration world together: at each level the mines still alive in all worlds are
pooled (each mine's best cell score), the threshold that keeps ``target_recall ** (1/L)`` of them
is found as before, and then lowered by ``margin`` (a factor: 0.5 halves it), so that a mine
somewhat weaker than every calibration mine still passes. With ``margin=None`` the worlds choose the
factor themselves (:func:`cross_world_margin`, leave one world out): how far below the other worlds'
threshold each world's own weakest kept mine lies, the worst case over the worlds. Each level reports how many mines it was
chosen on and the Clopper-Pearson lower bound of the share it keeps, so the evidence behind a
threshold is stated with it. Server-side work is the same ``score_cells`` as a run: the cells
evaluated are those the calibration keeps, never the whole tree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import beta

from gee_mining.errors import InputError
from gee_mining.pyramid import cellmodel
from gee_mining.pyramid.cellmodel import CellModel, CellModelSpec
from gee_mining.pyramid.core import PyramidSpec, _choose_threshold, children, score_cells


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided ``confidence`` interval of a share of ``k`` successes in ``n``."""
    if n <= 0 or not 0 <= k <= n:
        raise InputError(f"{k} of {n}: a share needs 0 <= k <= n and n > 0.")
    a = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return low, high


def world_bootstrap_interval(detected: Sequence[int], mines: Sequence[int], confidence: float = 0.95,
                             draws: int = 20000, seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """The percentile bootstrap ``confidence`` interval of pooled recall (``sum(detected) / sum(mines)``) with the
    worlds resampled, not the mines.

    Mines of one world are not independent draws: they share its ground, its spectra and often one pit cluster
    (one 2750 m cell held 12-15 pits), so a miss comes in groups and :func:`clopper_pearson` over mines is too
    narrow. Worlds are independent by construction (no seed, mine or spectrum shared). With few worlds the
    percentile bootstrap is itself somewhat narrow; it is reported beside the exact interval, not instead of it."""
    d, m = np.asarray(detected, dtype=float), np.asarray(mines, dtype=float)
    if d.shape != m.shape or d.ndim != 1 or not len(d) or (d < 0).any() or (d > m).any() or m.sum() <= 0:
        raise InputError(f"detected {list(detected)} of mines {list(mines)}: one count per world, 0 <= detected <= "
                         "mines, and some mines.")  # fmt: skip
    idx = np.random.default_rng(seed).integers(0, len(d), size=(draws, len(d)))
    total = m[idx].sum(axis=1)
    shares = d[idx].sum(axis=1)[total > 0] / total[total > 0]
    a = 1 - confidence
    low, high = np.quantile(shares, [a / 2, 1 - a / 2])
    return float(low), float(high)


def cross_world_margin(best: dict[tuple[str, Any], float], keep_share: float) -> float:
    """The margin the calibration worlds themselves ask for (leave one world out): for each world, the threshold
    chosen on the other worlds' mines, and the factor it must be lowered by to keep ``keep_share`` of this world's
    mines; the smallest factor over the worlds (at most 1). ``best``: {(world, mine): best cell score}."""
    worlds = sorted({w for w, _ in best})
    if len(worlds) < 2:
        raise InputError(
            f"a cross-world margin needs mines in at least two calibration worlds (got {len(worlds)}): give more "
            "train worlds, or a fixed margin (e.g. 0.5)."
        )
    factors = []
    for w in worlds:
        rest, _ = _choose_threshold({k: v for k, v in best.items() if k[0] != w}, keep_share)
        own, _ = _choose_threshold({k: v for k, v in best.items() if k[0] == w}, keep_share)
        factors.append(min(1.0, own / rest) if rest > 0 else 1.0)
    return min(factors)


def margin_threshold(best: dict[Any, float], keep_share: float, margin: float) -> float:
    """``margin`` times the highest threshold that keeps ``keep_share`` of the mines (by their best cell score)."""
    if not 0 < margin <= 1:
        raise InputError(f"margin {margin}: a factor in (0, 1] (1 keeps the threshold at the weakest kept mine).")
    t, _ = _choose_threshold(best, keep_share)
    return t * margin


def level_threshold(best: dict[tuple[str, Any], float], scores: Sequence[float], keep_share: float,
                    margin: float | None, min_prune: float = 0.0) -> tuple[float | None, float, float, float]:  # fmt: skip
    """One level's threshold: ``(threshold, unmargined, margin, pruned)``. The threshold keeps ``keep_share`` of the
    mines by their best cell score (``best``: {(world, mine): score}), lowered by ``margin`` (None: the
    :func:`cross_world_margin`); ``pruned`` is the share of the evaluated cell ``scores`` it drops. When that share
    is under ``min_prune``, the threshold is None: the level keeps every cell. Why: a coarse cell holds whole
    clusters of mines, so a level that prunes few cells saves little and a miss there loses a cluster (measured on
    held-out worlds: a 2750 m level that kept 42 of 48 train cells dropped 12 and 15 artisanal pits in one cell each
    of two test worlds, issue 25)."""
    m = cross_world_margin(best, keep_share) if margin is None else margin
    t = margin_threshold(best, keep_share, m)
    pruned = sum(s < t for s in scores) / max(1, len(scores))
    return (None if pruned < min_prune else t), t / m, m, pruned


@dataclass(frozen=True)
class CalibrationWorld:
    """One world to calibrate on: its probability image, its first-level cells and its known mines (an ee table);
    ``context``: its context image, which a cell model (``PyramidSpec.cell_model``) reads."""

    name: str
    probability: Any
    cells: Sequence[dict[str, Any]]
    polygons: Any
    id_column: str = "id"
    context: Any = None


@dataclass
class LevelCalibration:
    """How one level's threshold was chosen: on ``mines`` pooled calibration mines, keeping ``kept`` of them."""

    zoom: int
    cell_size: float
    threshold: float | None  # None: the level is not screened (its margined threshold pruned under min_prune)
    unmargined: float  # the threshold before the margin
    margin: float  # the factor applied (fixed, or chosen across worlds)
    mines: int
    kept: int
    kept_ci_low: float  # Clopper-Pearson lower bound of kept / mines
    cells_evaluated: int
    cells_kept: int
    pruned: float = 0.0  # share of the evaluated calibration cells the margined threshold would drop


@dataclass
class Calibration:
    """The calibrated spec and, per level, what its threshold rests on."""

    spec: PyramidSpec
    levels: list[LevelCalibration] = field(default_factory=list)
    worlds: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        model = self.spec.cell_model
        return {
            "worlds": self.worlds,
            "thresholds": list(self.spec.thresholds),
            "levels": [vars(lv) for lv in self.levels],
            **({"cell_model": model.as_json()} if isinstance(model, CellModel) else {}),
        }


def cell_model_level(ee, worlds: Sequence[CalibrationWorld], current: dict[str, list[dict[str, Any]]],
                     spec: CellModelSpec, scale: float) -> CellModel:  # fmt: skip
    """The last level's scores of the calibration cells (``current``, updated in place: ``score``, ``pixels``,
    ``mines``) from a cell model cross-fitted by world (each world scored by a classifier trained on the others), and
    the classifier trained on every world, which the run uses."""
    missing = [w.name for w in worlds if w.context is None]
    if missing:
        raise InputError(f"a cell model reads each world's context image: calibration world(s) {missing} lack one.")
    available = ee.Image(worlds[0].context).bandNames().getInfo()
    context = cellmodel.context_bands(spec, available)
    names = cellmodel.feature_names(spec, context)
    tables = {}
    for w in worlds:
        feats = cellmodel.cell_features(ee, w.probability, w.context, current[w.name], scale, spec, context,
                                        w.polygons, w.id_column)  # fmt: skip
        tables[w.name] = [feats[r["name"]] | {"name": r["name"]} for r in current[w.name]]
    scores, model = cellmodel.cross_fitted_scores(ee, tables, spec, names)
    for w in worlds:
        for r, f in zip(current[w.name], tables[w.name], strict=True):
            r.update(score=scores[w.name][r["name"]], pixels=int(f.get("pixels") or 0),
                     mines=[str(m) for m in f.get("mines") or []])  # fmt: skip
    return model


def calibrate_worlds(ee, worlds: Sequence[CalibrationWorld], spec: PyramidSpec, target_recall: float = 0.98,
                     margin: float | None = 0.5, confidence: float = 0.95,
                     progress: Callable[[str], None] | None = None, min_prune: float = 0.0) -> Calibration:  # fmt: skip
    """``spec`` with thresholds chosen on the pooled mines of ``worlds`` (see the module's docstring). ``margin``:
    a fixed factor, or None: at each level the factor :func:`cross_world_margin` finds across the worlds.
    ``min_prune``: a level above the last whose margined threshold would drop less than this share of the
    calibration cells is not screened (threshold None, every cell kept): see :func:`level_threshold`."""
    say = progress or (lambda msg: None)
    if not worlds:
        raise InputError("calibration needs at least one world with known mines.")
    if not 0 < target_recall <= 1:
        raise InputError(f"target recall {target_recall}: a share in (0, 1].")
    keep_share = target_recall ** (1 / len(spec.levels))
    current = {w.name: [dict(r) for r in w.cells] for w in worlds}
    alive: dict[str, set[str]] = {}
    out = Calibration(spec, worlds=[w.name for w in worlds])
    thresholds: list[float] = []
    model = None
    for i, (level, scale) in enumerate(zip(spec.levels, spec.scales, strict=True)):
        best: dict[tuple[str, str], float] = {}
        learned = i + 1 == len(spec.levels) and isinstance(spec.cell_model, CellModelSpec)
        if learned:
            model = cell_model_level(ee, worlds, current, spec.cell_model, scale)
        for w in worlds:
            rows = current[w.name]
            if not learned:
                scores = score_cells(ee, w.probability, rows, scale, spec.pixel_threshold, w.polygons, w.id_column,
                                     island=spec.islands[i])  # fmt: skip
                for r in rows:
                    r.update(scores[r["name"]])
            touched = {m for r in rows for m in r["mines"]}
            alive[w.name] = touched if i == 0 else alive[w.name] & touched
            for r in rows:
                for m in set(r["mines"]) & alive[w.name]:
                    best[(w.name, m)] = max(best.get((w.name, m), 0.0), r["score"])
        if not best:
            raise InputError(f"no calibration mine is left at level z{level.zoom}: give worlds with mines.")
        cell_scores = [r["score"] for rows in current.values() for r in rows]
        last = i + 1 == len(spec.levels)
        if learned:  # out-of-world scores already: the spec's keep share, no margin
            t, _ = _choose_threshold(best, spec.cell_model.keep)
            unmargined, m, pruned = t, 1.0, sum(s < t for s in cell_scores) / max(1, len(cell_scores))
        else:
            t, unmargined, m, pruned = level_threshold(
                best, cell_scores, keep_share, margin, 0.0 if last else min_prune
            )
        evaluated = len(cell_scores)
        thresholds.append(t)
        kept_mines = sum(t is None or s >= t for s in best.values())
        for w in worlds:
            kept = [r for r in current[w.name] if t is None or r["score"] >= t]
            alive[w.name] &= {m for r in kept for m in r["mines"]}
            current[w.name] = (
                [c for r in kept for c in children(r, spec.levels[i + 1])] if i + 1 < len(spec.levels) else kept
            )
        n_kept = sum(len(rows) for rows in current.values()) // (4 if i + 1 < len(spec.levels) else 1)
        low = clopper_pearson(kept_mines, len(best), confidence)[0]
        out.levels.append(LevelCalibration(level.zoom, level.cell_size, t, unmargined, m, len(best), kept_mines, low,
                                           evaluated, n_kept, pruned))  # fmt: skip
        what = "not screened (keeps every cell)" if t is None else f"threshold {t:.4g}"
        say(f"[calibrate] z{level.zoom}: {what}, margin {m:.3g}, prunes {pruned:.0%} of cells; keeps {kept_mines}/{len(best)} "
            f"calibration mines (lower bound {low:.3f}), {n_kept}/{evaluated} cells")  # fmt: skip
    out.spec = spec.with_thresholds(thresholds)
    if model is not None:
        out.spec = dataclasses.replace(out.spec, cell_model=model)
    return out

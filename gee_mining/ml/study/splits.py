"""Splits by group: by cell (no cell in two splits) or by any metadata column (country, land cover...).

Every split is a partition of *groups*, never of rows: a group's rows all land in one of train,
validation or test. Groups that hold positives are dealt out separately from those that hold none,
so each split gets mines when there are enough positive groups.

Schemes:

- ``holdout``: one fold; ``test_fraction`` and ``val_fraction`` of the groups for test and validation.
- ``logo`` (leave one group out): one fold per group, that group is the test set.
- ``kfold`` (grouped k-fold): ``folds`` folds, each group in exactly one test set.

In ``logo`` and ``kfold`` the validation groups of a fold are ``val_fraction`` of its training groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gee_mining.errors import InputError

SCHEMES = ("holdout", "logo", "kfold")


@dataclass(frozen=True)
class SplitSpec:
    by: str = "cell"
    scheme: str = "holdout"
    folds: int = 5
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise InputError(f"SplitSpec.scheme = {self.scheme!r}: use one of {SCHEMES}.")
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise InputError(f"SplitSpec.{name} = {v}: give a fraction between 0 and 1.")
        if self.val_fraction + self.test_fraction >= 1:
            raise InputError("SplitSpec: val_fraction + test_fraction must leave groups for training (< 1).")
        if self.scheme == "kfold" and self.folds < 2:
            raise InputError(f"SplitSpec.folds = {self.folds}: grouped k-fold needs at least 2 folds.")


@dataclass(frozen=True)
class Fold:
    """One fold: the groups of each split and the boolean row masks."""

    name: str
    train_groups: tuple
    val_groups: tuple
    test_groups: tuple
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _take(groups: list, fraction: float, rng: np.random.Generator, at_least: int = 1) -> tuple[list, list]:
    """Draw ``fraction`` of ``groups`` (at least ``at_least`` when there are any to spare): (taken, rest)."""
    if not groups:
        return [], []
    n = max(at_least, int(round(fraction * len(groups)))) if len(groups) > at_least else 0
    order = rng.permutation(len(groups))
    taken = [groups[i] for i in order[:n]]
    return taken, [groups[i] for i in order[n:]]


def _stratified_take(pos: list, neg: list, fraction: float, rng) -> tuple[list, list, list, list]:
    tp, rp = _take(pos, fraction, rng)
    tn, rn = _take(neg, fraction, rng)
    return tp, tn, rp, rn


def make_folds(groups: np.ndarray, positive: np.ndarray, spec: SplitSpec) -> list[Fold]:
    """Folds of rows whose group is ``groups[i]``; ``positive[i]`` marks rows with a mine (for stratifying)."""
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != len(positive):
        raise InputError("make_folds: groups and positive must be 1-D and of the same length.")
    if len(groups) and np.any(groups != groups):  # NaN groups
        raise InputError(f"split by {spec.by!r}: some rows have no value (NaN); fill or drop them first.")
    uniq = sorted(set(groups.tolist()), key=str)
    has_pos = {g: False for g in uniq}
    for g in np.unique(groups[np.asarray(positive) > 0]).tolist():
        has_pos[g] = True
    pos = [g for g in uniq if has_pos[g]]
    neg = [g for g in uniq if not has_pos[g]]
    rng = np.random.default_rng(spec.seed)
    need = 3
    if len(uniq) < need:
        raise InputError(
            f"split by {spec.by!r}: {len(uniq)} group(s) {uniq[:5]}; train, validation and test need at least "
            f"{need} distinct groups. Add cells or split by another column."
        )
    plans: list[tuple[str, list, list]] = []  # (name, test groups, rest)
    if spec.scheme == "holdout":
        tp, tn, rp, rn = _stratified_take(pos, neg, spec.test_fraction, rng)
        plans.append(("holdout", tp + tn, rp + rn))
    elif spec.scheme == "logo":
        for g in uniq:
            plans.append((f"{spec.by}={g}", [g], [h for h in uniq if h != g]))
    else:
        if spec.folds > len(uniq):
            raise InputError(f"grouped {spec.folds}-fold by {spec.by!r}: only {len(uniq)} groups; use fewer folds.")
        # deal positive groups, then negative ones, round-robin over the folds after a shuffle
        dealt: list[list] = [[] for _ in range(spec.folds)]
        for i, g in enumerate(
            [pos[i] for i in rng.permutation(len(pos))] + [neg[i] for i in rng.permutation(len(neg))]
        ):
            dealt[i % spec.folds].append(g)
        for k, test in enumerate(dealt):
            plans.append((f"fold{k}", test, [g for g in uniq if g not in set(test)]))
    folds = []
    for name, test, rest in plans:
        rest_pos = [g for g in rest if has_pos[g]]
        rest_neg = [g for g in rest if not has_pos[g]]
        vp, vn, trp, trn = _stratified_take(rest_pos, rest_neg, spec.val_fraction / (1 - spec.test_fraction), rng)
        val, train = vp + vn, trp + trn
        if not val:  # too few groups to stratify: take one from the larger side
            val, train = train[-1:], train[:-1]
        if not train or not val or not test:
            raise InputError(
                f"split by {spec.by!r} ({spec.scheme}): fold {name} would leave a split without groups "
                f"(train {len(train)}, validation {len(val)}, test {len(test)}); add groups or change fractions."
            )
        folds.append(
            Fold(
                name,
                tuple(train),
                tuple(val),
                tuple(test),
                np.isin(groups, train),
                np.isin(groups, val),
                np.isin(groups, test),
            )
        )
    return folds

"""Geographic train/validation splits and k-fold cross-validation folds of a detection dataset.

Neighbouring cells look alike (same mine, same landscape, same scenes), so a random split
leaks: cells are grouped, and a group is entirely in train or entirely in validation.
Groups (``by``):

- ``"utm"``: the cell's UTM zone (EPSG code);
- ``"country"``: the ``country`` column of the grid table (pass ``table``);
- ``"region"``: blocks of ``region_deg`` x ``region_deg`` degrees of the cell centre
  (``floor(lat / d)``, ``floor(lon / d)``); the default, as it works everywhere;
- any other column name of the grid table.

Folds are scikit-learn's ``GroupKFold`` (each group in exactly one validation fold; sizes
balanced), shuffled with ``seed``. With ``stratify=True`` they are ``StratifiedGroupKFold``
on "the cell has a box": mines cluster, so a purely random choice of groups can leave a
validation set with almost no mine; stratifying keeps about the same share of positive
cells in every fold, still whole groups at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedGroupKFold

from gee_mining.errors import InputError
from gee_mining.ml.detect.dataset import DetectDataset


@dataclass(frozen=True)
class Fold:
    name: str
    train: list[str]
    val: list[str]


def cell_groups(
    ds: DetectDataset,
    by: str = "region",
    region_deg: float = 1.0,
    table: Mapping[str, dict] | Sequence[dict] | None = None,
) -> dict[str, str]:
    """``{cell name: group key}`` for every cell of the dataset."""
    rows = {}
    if table is not None:
        rows = dict(table) if isinstance(table, Mapping) else {r["name"]: r for r in table}
    out = {}
    for c in ds.cells:
        if by == "utm":
            out[c["name"]] = f"EPSG:{c['epsg']}"
        elif by == "region":
            if not region_deg > 0:
                raise InputError(f"region_deg={region_deg} must be a positive number of degrees.")
            out[c["name"]] = f"{math.floor(c['lat'] / region_deg)}_{math.floor(c['lon'] / region_deg)}"
        else:
            row = rows.get(c["name"])
            if row is None or row.get(by) in (None, ""):
                raise InputError(
                    f"cell {c['name']!r} has no {by!r} value: pass the grid table with a {by!r} column "
                    "(table=..., --table), or group by 'utm' or 'region'."
                )
            out[c["name"]] = str(row[by])
    return out


def geographic_folds(
    ds: DetectDataset,
    k: int = 5,
    by: str = "region",
    region_deg: float = 1.0,
    table=None,
    seed: int = 0,
    stratify: bool = False,
) -> list[Fold]:
    """``k`` folds; fold ``i`` validates on its groups and trains on the others (``stratify``: see the module)."""

    groups = cell_groups(ds, by, region_deg, table)
    names = list(groups)
    n_groups = len(set(groups.values()))
    if k < 2:
        raise InputError(f"k={k}: cross-validation needs at least 2 folds.")
    if n_groups < k:
        raise InputError(
            f"only {n_groups} {by} group(s) for k={k} folds: lower k, or use smaller groups "
            f"(by='region' with a smaller region_deg than {region_deg})."
        )
    labels = np.array([groups[n] for n in names])
    if stratify:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(names, _positive(ds, names), groups=labels)
    else:
        splits = GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(names, groups=labels)
    folds = []
    for i, (tr, va) in enumerate(splits):
        folds.append(Fold(f"fold{i}", [names[j] for j in tr], [names[j] for j in va]))
    return folds


def geographic_split(
    ds: DetectDataset,
    val_fraction: float = 0.25,
    by: str = "region",
    region_deg: float = 1.0,
    table=None,
    seed: int = 0,
    stratify: bool = False,
) -> Fold:
    """One train/validation split holding out about ``val_fraction`` of the cells, whole groups at a time.

    ``stratify=True``: the first fold of ``round(1 / val_fraction)`` stratified group folds, so that
    validation holds about ``val_fraction`` of the positive cells too (see the module).
    """

    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction={val_fraction} must be in (0, 1).")
    groups = cell_groups(ds, by, region_deg, table)
    names = list(groups)
    if len(set(groups.values())) < 2:
        raise InputError(f"all cells are in one {by} group: a geographic split needs two; use a smaller region_deg.")
    if stratify:
        k = max(2, round(1 / val_fraction))
        fold = geographic_folds(ds, k, by, region_deg, table, seed, stratify=True)[0]
        return Fold("split", fold.train, fold.val)
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    tr, va = next(splitter.split(names, groups=np.array([groups[n] for n in names])))
    return Fold("split", [names[j] for j in tr], [names[j] for j in va])


def _positive(ds: DetectDataset, names: Sequence[str]):

    return np.array([bool(ds.cell(n)["boxes"]) for n in names], dtype=int)

"""The study's data: pixel tables read by cell, features (bands, normalised differences, indices, patches), targets.

Offline ML reads what the exports wrote (the pixel tables of ``gee_mining.steps.pixel_tables``), so the
features are computed here with numpy from the table's band columns. Their names and formulas are those of
``gee_mining.contracts.features`` (``B4``, ``ND_B8_B4``, ``NDVI``), the ones ``steps.indices.add_indices``
computes server-side, so a transformation chosen here deploys on Earth Engine unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import spyndex

from gee_mining.contracts.bands import BANDS, DISTANCE_BAND, MINE_BAND
from gee_mining.contracts.features import (
    ALIASES,
    Arithmetic,
    index_formula,
    nd_pairs,
    normalized_difference,
    normalized_difference_names,
)
from gee_mining.contracts.models import TARGETS
from gee_mining.errors import InputError
from gee_mining.io.pixel_table import read_pixel_table

TRANSFORMS = ("clip", "tanh", "none")


@dataclass(frozen=True)
class FeatureSpec:
    """Which features: raw ``bands``, every pairwise ``ND_a_b`` of them, named spyndex ``indices``.

    ``patch`` = k > 1 turns pixels into non-overlapping k x k blocks of a cell's lattice: the bands
    (and indices read from the table) are averaged over the block, the normalised differences are
    taken of the block means (what ``reduceResolution(mean)`` then ``add_indices`` gives
    server-side), and the label is the block's mean label. Blocks with fewer than half their
    pixels observed are dropped.
    """

    bands: tuple[str, ...] = BANDS
    pairwise: bool = True
    indices: tuple[str, ...] = ()
    patch: int = 1

    def __post_init__(self):
        if len(self.bands) == 0 and not self.indices:
            raise InputError("FeatureSpec: no features; give bands and/or indices.")
        if len(set(self.bands)) != len(self.bands):
            raise InputError(f"FeatureSpec.bands repeat a band: {self.bands}.")
        if self.pairwise and len(self.bands) < 2:
            raise InputError("FeatureSpec.pairwise needs at least two bands.")
        if int(self.patch) != self.patch or self.patch < 1:
            raise InputError(f"FeatureSpec.patch = {self.patch}: give a whole number k >= 1 (k x k blocks).")

    @property
    def names(self) -> list[str]:
        nd = normalized_difference_names(list(self.bands)) if self.pairwise else []
        return [*self.bands, *nd, *self.indices]


@dataclass(frozen=True)
class TargetSpec:
    """The label to learn.

    ``binary``: the ``_mine`` band (1 inside a polygon). ``distance``: the distance to the nearest
    polygon edge with the sign flipped so that it grows towards the mines (positive inside, metres to
    the edge; negative outside), then ``transform``-ed: ``clip`` to [-scale_m, scale_m], ``tanh``
    (scale_m * tanh(d / scale_m)) or ``none``. Every transform keeps 0 at the edge, so a predicted
    value above 0 means "inside a mine".

    ``edge_m`` > 0 drops pixels whose centre is nearer a polygon edge than that (mixed pixels).
    """

    kind: str = "binary"
    transform: str = "clip"
    scale_m: float = 200.0
    edge_m: float = 0.0

    def __post_init__(self):
        if self.kind not in TARGETS:
            raise InputError(f"TargetSpec.kind = {self.kind!r}: use one of {TARGETS}.")
        if self.transform not in TRANSFORMS:
            raise InputError(f"TargetSpec.transform = {self.transform!r}: use one of {TRANSFORMS}.")
        if not self.scale_m > 0:
            raise InputError(f"TargetSpec.scale_m = {self.scale_m}: give a positive distance in metres.")
        if self.edge_m < 0:
            raise InputError(f"TargetSpec.edge_m = {self.edge_m}: give a distance >= 0 in metres.")

    def apply(self, distance: np.ndarray, mine: np.ndarray) -> np.ndarray:
        if self.kind == "binary":
            return np.asarray(mine, dtype=np.float64)
        d = -np.asarray(distance, dtype=np.float64)
        if self.transform == "clip":
            return np.clip(d, -self.scale_m, self.scale_m)
        if self.transform == "tanh":
            return self.scale_m * np.tanh(d / self.scale_m)
        return d


@dataclass
class Dataset:
    """Rows ready for the models: features ``X`` (float64, one column per name), labels, groups."""

    features: list[str]
    X: np.ndarray
    mine: np.ndarray  # (n,) float: 0/1 per pixel, the mean label per patch
    distance: np.ndarray  # (n,) signed metres as in the table (negative inside)
    cells: np.ndarray  # (n,) the cell of each row
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # metadata columns asked for
    dropped: dict[str, int] = field(default_factory=dict)  # why rows were dropped -> how many

    def __len__(self) -> int:
        return len(self.mine)

    def target(self, spec: TargetSpec) -> np.ndarray:
        return spec.apply(self.distance, self.mine)

    def subset(self, mask: np.ndarray) -> Dataset:
        return Dataset(
            self.features,
            self.X[mask],
            self.mine[mask],
            self.distance[mask],
            self.cells[mask],
            {k: v[mask] for k, v in self.groups.items()},
            dict(self.dropped),
        )

    def group(self, by: str) -> np.ndarray:
        if by == "cell":
            return self.cells
        if by not in self.groups:
            raise InputError(f"split by {by!r}: the dataset has no such column; load it with group_columns=[{by!r}].")
        return self.groups[by]


def named_index(name: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """A spyndex index from band columns, with the formula ``gee_mining.steps.indices`` deploys."""

    _, bands, constants = index_formula(name)
    missing = sorted({b for b in bands.values() if b not in columns})
    if missing:
        raise InputError(f"index {name!r} needs band(s) {missing}, which the pixel table lacks.")
    params = {s: np.asarray(columns[b], dtype=np.float64) for s, b in bands.items()}
    params.update(constants)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(spyndex.computeIndex(index=ALIASES.get(name, name), params=params), dtype=np.float64)


def feature_matrix(columns: dict[str, np.ndarray], spec: FeatureSpec, out: np.ndarray | None = None) -> np.ndarray:
    """The (n, len(spec.names)) float64 feature matrix from band (and index) columns.

    Indices present in ``columns`` are used as given (the table's own, computed server-side);
    others are computed with spyndex. ``out`` (e.g. a Fortran-ordered array) is filled in place.
    """
    missing = [b for b in spec.bands if b not in columns]
    if missing:
        raise InputError(f"features need band column(s) {missing}, which the pixel table lacks.")
    n = len(next(iter(columns.values())))
    names = spec.names
    X = np.empty((n, len(names)), dtype=np.float64, order="F") if out is None else out
    bands = {}
    for j, b in enumerate(spec.bands):
        X[:, j] = columns[b]  # cast in place; the ND below read the column back (no float64 copy per band)
        bands[b] = X[:, j]
    j = len(spec.bands)
    if spec.pairwise:
        scratch = np.empty(n)
        for a, b in nd_pairs(spec.bands):  # the one formula, computed into its column (one scratch column); not
            normalized_difference(bands[a], bands[b], _into(X[:, j], scratch))  # assigned back: numpy would copy
            j += 1  # the overlapping column through a temporary (8 MB a column at 1M rows)
    for name in spec.indices:
        X[:, j] = np.asarray(columns[name], dtype=np.float64) if name in columns else named_index(name, columns)
        j += 1
    return X


def _into(column: np.ndarray, scratch: np.ndarray) -> Arithmetic:
    """numpy arithmetic for ``(a - b) / (a + b)`` written into ``column`` (the sum into ``scratch``):
    no temporary arrays."""
    return Arithmetic(
        lambda x, y: np.add(x, y, out=scratch),
        lambda x, y: np.subtract(x, y, out=column),
        lambda x, y: np.divide(x, y, out=column),
    )


def table_cells(path: str | os.PathLike) -> list[str]:
    """The cells of a pixel table (file stems of a folder; the ``cell`` column of one file)."""

    path = Path(path)
    if path.is_dir():
        stems = sorted(f.stem for f in path.glob("*.parquet")) or sorted(f.stem for f in path.glob("*.csv"))
        if stems:
            return stems
    return sorted(set(read_pixel_table(path, ["cell"])["cell"].astype(str)))


def load_dataset(
    path: str | os.PathLike,
    spec: FeatureSpec = FeatureSpec(),
    *,
    cells: Sequence[str] | None = None,
    group_columns: Sequence[str] = (),
    sample_per_cell: int | None = None,
    edge_m: float = 0.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Dataset:
    """Read a pixel table cell by cell (only the needed columns) into a ``Dataset``.

    ``sample_per_cell`` keeps at most that many rows (pixels or patches) per cell, drawn at random
    with ``seed``, so tables larger than memory can be studied. ``edge_m`` drops pixels nearer a
    polygon edge than that (before patching, so a patch averages only the kept pixels).
    """

    path = Path(path)
    all_cells = _chosen_cells(path, cells)
    if sample_per_cell is not None and sample_per_cell < 1:
        raise InputError(f"sample_per_cell = {sample_per_cell}: give a positive number of rows (or None for all).")
    needed, indices_read = _needed_columns(path, spec, group_columns)
    rng = np.random.default_rng(seed)
    parts: list[Dataset] = []
    dropped = {"near an edge": 0, "non-finite feature": 0, "sparse patch": 0}
    for k, cell in enumerate(all_cells):
        df = read_pixel_table(path, needed, cells=[cell] if path.is_dir() else None)
        if not path.is_dir():
            df = df[df["cell"].astype(str) == cell]
        if edge_m > 0:
            near = np.abs(df[DISTANCE_BAND].to_numpy()) < edge_m
            dropped["near an edge"] += int(near.sum())
            df = df[~near]
        if spec.patch > 1:
            df, sparse = _patches(df, spec, indices_read, group_columns)
            dropped["sparse patch"] += sparse
        if sample_per_cell is not None and len(df) > sample_per_cell:
            df = df.iloc[np.sort(rng.choice(len(df), sample_per_cell, replace=False))]
        _check_numeric(df, [*spec.bands, *indices_read, MINE_BAND, DISTANCE_BAND], f"{path} (cell {cell})")
        cols = {c: df[c].to_numpy() for c in [*spec.bands, *indices_read]}
        part = _finite_rows(df, spec, feature_matrix(cols, spec, np.empty((len(df), len(spec.names)))), group_columns)
        dropped["non-finite feature"] += part.dropped["non-finite feature"]
        parts.append(part)
        if progress:
            progress(f"[study] read cell {k + 1}/{len(all_cells)} {cell}: {len(part):,} rows")
    if not parts or sum(len(p) for p in parts) == 0:
        raise InputError(f"{path}: no usable rows (cells {len(all_cells)}, dropped {dropped}).")
    return _concatenate(parts, spec.names, dropped)


def _chosen_cells(path: Path, cells: Sequence[str] | None) -> list[str]:
    """The table's cells, or those of ``cells`` (each must be in the table), in the table's order."""
    all_cells = table_cells(path)
    if cells is None:
        return all_cells
    unknown = sorted(set(cells) - set(all_cells))
    if unknown:
        raise InputError(f"{path}: no cell(s) {unknown[:5]} in the pixel table.")
    return [c for c in all_cells if c in set(cells)]


def _needed_columns(path: Path, spec: FeatureSpec, group_columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """The columns to read (checked against the table's schema) and the indices the table holds itself."""
    files = sorted(path.glob("*.parquet")) or sorted(path.glob("*.csv")) if path.is_dir() else [path]
    schema = pads.dataset([str(f) for f in files[:1]], format="csv" if files[0].suffix == ".csv" else "parquet").schema
    have = set(schema.names)
    needed = ["cell", MINE_BAND, DISTANCE_BAND, *spec.bands]
    if spec.patch > 1:
        needed += ["row", "col"]
    indices_read = [i for i in spec.indices if i in have]
    needed += indices_read
    needed += [g for g in group_columns if g != "cell"]
    needed = list(dict.fromkeys(needed))
    missing = [c for c in needed if c not in have]
    if missing:
        raise InputError(f"{path}: the pixel table lacks column(s) {missing}; it has {sorted(have)}.")
    return needed, indices_read


def _finite_rows(df: pd.DataFrame, spec: FeatureSpec, X: np.ndarray, group_columns: Sequence[str]) -> Dataset:
    """The rows of ``df`` (features ``X``) whose features are all finite; ``dropped`` counts the others."""
    ok = np.isfinite(X).all(axis=1)
    return Dataset(
        spec.names,
        np.asarray(X[ok]),
        df[MINE_BAND].to_numpy(np.float64)[ok],
        df[DISTANCE_BAND].to_numpy(np.float64)[ok],
        df["cell"].astype(str).to_numpy()[ok],
        {g: df[g].to_numpy()[ok] for g in group_columns if g != "cell"},
        {"non-finite feature": int((~ok).sum())},
    )


def _concatenate(parts: Sequence[Dataset], features: list[str], dropped: dict[str, int]) -> Dataset:
    """One ``Dataset`` of the rows of ``parts``, in order, with the drop counts of them all."""
    return Dataset(
        features,
        np.concatenate([p.X for p in parts]),
        np.concatenate([p.mine for p in parts]),
        np.concatenate([p.distance for p in parts]),
        np.concatenate([p.cells for p in parts]),
        {g: np.concatenate([p.groups[g] for p in parts]) for g in parts[0].groups},
        dropped,
    )


def _patches(df, spec: FeatureSpec, indices_read: Sequence[str], group_columns: Sequence[str]):
    """Non-overlapping k x k block means of one cell's pixels; returns (blocks, number dropped as sparse)."""
    k = int(spec.patch)
    keys = [df["row"].to_numpy() // k, df["col"].to_numpy() // k]
    mean_cols = [*spec.bands, *indices_read, MINE_BAND, DISTANCE_BAND]
    g = df.assign(_pr=keys[0], _pc=keys[1]).groupby(["_pr", "_pc"], sort=True)
    out = g[mean_cols].mean()
    count = g.size()
    first = g[["cell", *[c for c in group_columns if c != "cell"]]].first()
    out = out.join(first)
    keep = (count >= (k * k + 1) // 2).to_numpy()
    return out[keep].reset_index(drop=True), int((~keep).sum())


def from_frame(df, spec: FeatureSpec = FeatureSpec(), group_columns: Sequence[str] = ()) -> Dataset:
    """A ``Dataset`` from an in-memory pixel table (a pandas DataFrame with the table's columns)."""
    missing = [c for c in ["cell", MINE_BAND, DISTANCE_BAND, *spec.bands] if c not in df]
    if missing:
        raise InputError(f"the pixel table lacks column(s) {missing}.")
    if spec.patch > 1:
        parts = [
            _patches(part, spec, [i for i in spec.indices if i in df], group_columns)[0]
            for _, part in df.groupby("cell")
        ]

        df = pd.concat(parts, ignore_index=True)
    _check_numeric(df, [*spec.bands, *[i for i in spec.indices if i in df], MINE_BAND, DISTANCE_BAND], "pixel table")
    cols = {c: df[c].to_numpy() for c in [*spec.bands, *[i for i in spec.indices if i in df]]}
    return _finite_rows(df, spec, feature_matrix(cols, spec), group_columns)


def _check_numeric(df: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    """InputError naming the first column (and value) that is not a number: bands and labels must be numeric."""
    for column in columns:
        if column not in df or pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_bool_dtype(df[column]):
            continue
        values = pd.to_numeric(df[column], errors="coerce")
        bad = df[column][values.isna() & df[column].notna()]
        if len(bad):
            raise InputError(
                f"{where}: column {column!r} holds {bad.iloc[0]!r}, not a number ({len(bad)} such row(s)): pixel tables "
                "hold numbers only; write it again with gee-mining pixels, or fix those rows."
            )

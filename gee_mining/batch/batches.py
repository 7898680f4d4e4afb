"""Batches: many cells of one zone and level in ONE Earth Engine export task, each cell its own file.

Per-cell tasks do not scale: the Maus et al. layer makes about half a million of them, and Earth Engine
runs about 2 batch tasks at a time per noncommercial project (``../shared/notes/earth-engine-limits.md``
row 2). A batch is one task that writes many cells, the way Earth Engine is meant to be used:

- **File blocks.** A level's cells tile their zone from the zone's origin (``contracts.cells``). A file
  block is ``n x n`` cells (``n = cells_per_file``), ``B = n * cell_size`` metres and ``F = B / scale``
  pixels on a side: ``n = 1`` when a cell is a whole number of pixels (5500 m = 550 px, 2750 m = 275 px
  at 10 m), else the smallest ``n`` that makes ``F`` whole (1375 m: ``n = 2``, ``F = 275``; each cell's
  138 px lattice, ``contracts.lattice.pixel_grid``, lies inside its block). Block ``(bx, by)`` holds the
  cells ``x`` in ``[bx n, bx n + n)``, ``y`` in ``[by n, by n + n)``.
- **A batch** is a rectangle of blocks of one zone and level, at most ``files_per_side`` blocks on a side (by
  default 2,816 km: wider than any UTM zone, so a batch is a strip of its zone, at most 4 a hemisphere),
  holding the job's cells that fall in it, at most ``MAX_BATCH_CELLS`` of them (a fuller square is split into
  quadrants): :func:`plan_batches`. Its image export (``batch.products``) is the cell stack masked outside
  the batch's cells, on the zone's 10 m lattice, ``crsTransform`` starting at the batch's north-west block
  corner, ``dimensions`` of all its blocks, ``fileDimensions = F`` and ``skipEmptyTiles``: Earth Engine
  writes one file per block holding a cell, in one task. Its table export is one CSV, its TFRecord export
  one set of patches (``batch.products``).
- **Files back to cells** (the mapping, written down once, used by :func:`cells_of_file`). Earth Engine
  names the files ``PREFIX-RRRRRRRRRR-CCCCCCCCCC.tif``, the file's row then column pixel offset in the
  export ("Exporting Images" guide; ``gee_mining.local.service.export``), or ``PREFIX.tif`` when the
  export is a single file. The file at ``(R, C)`` is block ``bx = bx0 + C / F``, ``by = by1 - R / F``
  (rows grow southwards, ``by1`` is the batch's northernmost block row); each of its cells sits in it at
  the pixel window ``pixel_grid(cell)`` minus the block's corner. No name is guessed, none is ambiguous.

A batch that fails for its size is re-planned as its (up to 4) quadrants (:func:`split_batch`), each
cell in exactly one of them. Pure: numbers only, no ``ee``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from gee_mining.contracts.lattice import PixelGrid, pixel_grid
from gee_mining.errors import InputError

DEFAULT_BATCH_M = 2_816_000.0  # a batch side: 512 cells of 5500 m, 1024 of 2750 m, 1024 blocks of 2 x 2 1375 m cells
DEFAULT_FILES_PER_SIDE = None  # None: as many file blocks as fit DEFAULT_BATCH_M (281,600 px a side at 10 m)
SCALE = 10.0
MAX_BATCH_CELLS = 8000  # a batch's cells are in its graph (~0.5 kB each): 8,000 keep a request near 4 MB of 10
FILE_NAME = re.compile(r"-(\d{10})-(\d{10})\.tif$")


def cells_per_file(cell_size: float, scale: float = SCALE) -> int:
    """The smallest ``n`` for which ``n`` cells are a whole number of pixels (1 for 5500 m, 2 for 1375 m)."""
    ratio = Fraction(str(float(cell_size))) / Fraction(str(float(scale)))
    if ratio.denominator > 64:
        raise InputError(f"cell size {cell_size} m at {scale} m pixels: no small block of cells fits the lattice.")
    return ratio.denominator


@dataclass(frozen=True)
class Batch:
    """One export task's cells: blocks ``bx0..bx1`` x ``by0..by1`` of one zone (``epsg``) and level."""

    name: str
    epsg: int
    cell_size: float
    zoom: int | None
    bx0: int
    by0: int
    bx1: int
    by1: int
    cells: tuple[dict[str, Any], ...]
    split_depth: int = 0

    @property
    def n(self) -> int:
        return cells_per_file(self.cell_size)

    @property
    def block_m(self) -> float:
        return self.n * self.cell_size

    @property
    def file_px(self) -> int:
        """``F``: a file's side in pixels (``fileDimensions``)."""
        return int(round(self.block_m / SCALE))

    @property
    def grid(self) -> PixelGrid:
        """The export's lattice: every block of the rectangle, on the zone's 10 m lattice."""
        left, top = self.bx0 * self.block_m, (self.by1 + 1) * self.block_m
        width, height = (self.bx1 - self.bx0 + 1) * self.file_px, (self.by1 - self.by0 + 1) * self.file_px
        return PixelGrid(f"EPSG:{self.epsg}", (SCALE, 0.0, left, 0.0, -SCALE, top), width, height)

    @property
    def blocks(self) -> set[tuple[int, int]]:
        """The blocks that hold at least one of the batch's cells: the files Earth Engine may write."""
        return {block_of(c, self.n) for c in self.cells}

    def to_row(self) -> dict[str, Any]:
        """The batch as a ledger row (JSON-able; ``name`` is the unit the ledger tracks)."""
        return {"name": self.name, "batch": True, "epsg": self.epsg, "cell_size": self.cell_size, "zoom": self.zoom,
                "bx0": self.bx0, "by0": self.by0, "bx1": self.bx1, "by1": self.by1, "cells": list(self.cells),
                "split_depth": self.split_depth}  # fmt: skip

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Batch:
        keys = ("name", "epsg", "cell_size", "zoom", "bx0", "by0", "bx1", "by1")
        return cls(*(row[k] for k in keys), cells=tuple(row["cells"]), split_depth=int(row.get("split_depth", 0)))


def is_batch_row(row: dict[str, Any]) -> bool:
    return bool(row.get("batch"))


def block_of(cell: dict[str, Any], n: int) -> tuple[int, int]:
    return int(cell["cell_x"]) // n, int(cell["cell_y"]) // n


def _signed(value: int) -> str:
    return f"m{-value}" if value < 0 else str(value)


def files_per_side_of(cell_size: float, files_per_side: int | None = DEFAULT_FILES_PER_SIDE) -> int:
    """File blocks on a batch's side: ``files_per_side``, or by default those that fit ``DEFAULT_BATCH_M``."""
    if files_per_side is None:
        return max(1, int(DEFAULT_BATCH_M // (cells_per_file(cell_size) * float(cell_size))))
    if not (isinstance(files_per_side, int) and files_per_side >= 1):
        raise InputError(f"files_per_side {files_per_side!r}: give a whole number >= 1, e.g. 64.")
    return files_per_side


def plan_batches(rows: Iterable[dict[str, Any]], files_per_side: int | None = DEFAULT_FILES_PER_SIDE,
                 max_cells: int = MAX_BATCH_CELLS) -> list[Batch]:  # fmt: skip
    """The batches of a job's cells: grouped by zone and level, then by squares of ``files_per_side`` blocks
    (by default those of :data:`DEFAULT_BATCH_M` metres a side); a square holding more than ``max_cells`` cells
    is split into quadrants (:func:`split_batch`) until none does, which bounds the request (the cells are in
    the task's graph).

    Deterministic (a resumed job plans the same batches, under the same names and request ids). Each cell
    lands in exactly one batch; a cell name given twice is an error.
    """
    files_per_side_of(1.0, files_per_side)  # a bad value fails before any row is read
    if not (isinstance(max_cells, int) and max_cells >= 1):
        raise InputError(f"max_cells {max_cells!r}: give a whole number >= 1, e.g. {MAX_BATCH_CELLS}.")
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    for row in rows:
        if row["name"] in seen:
            raise InputError(f"cells: the cell {row['name']!r} is listed twice; give each cell once.")
        seen.add(row["name"])
        size = float(row["cell_size"])
        bx, by = block_of(row, cells_per_file(size))
        per_side = files_per_side_of(size, files_per_side)
        key = (int(row["epsg"]), size, row.get("zoom"), bx // per_side, by // per_side)
        groups[key].append(dict(row))
    out = []
    for (epsg, size, zoom, sx, sy), cells in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        batch = _batch(f"b{epsg}-{_level(size, zoom)}-{_signed(sx)}-{_signed(sy)}", epsg, size, zoom, cells, 0)
        out += _capped(batch, max_cells)
    return out


def _capped(batch: Batch, max_cells: int) -> list[Batch]:
    """``batch``, or its quadrants (recursively) while it holds more than ``max_cells`` cells."""
    if len(batch.cells) <= max_cells:
        return [batch]
    parts = split_batch(batch)
    if not parts:  # one block: its n x n cells cannot be split further
        return [batch]
    return [b for part in parts for b in _capped(part, max_cells)]


def _level(size: float, zoom: int | None) -> str:
    return f"z{zoom}" if zoom is not None else f"s{size:g}".replace(".", "p")


def _batch(name: str, epsg: int, size: float, zoom, cells: list[dict[str, Any]], depth: int) -> Batch:
    n = cells_per_file(size)
    bxs, bys = zip(*(block_of(c, n) for c in cells), strict=True)
    cells = sorted(cells, key=lambda c: c["name"])
    return Batch(name, epsg, size, zoom, min(bxs), min(bys), max(bxs), max(bys), tuple(cells), depth)


def split_batch(batch: Batch) -> list[Batch]:
    """The batch's quadrants that hold cells (``<name>_q0..q3``), or [] for a batch of one block.

    Used to re-plan a batch that failed for its size; every cell goes to exactly one quadrant.
    """
    if batch.bx0 == batch.bx1 and batch.by0 == batch.by1:
        return []
    mx, my = (batch.bx0 + batch.bx1 + 1) // 2, (batch.by0 + batch.by1 + 1) // 2
    quads: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for cell in batch.cells:
        bx, by = block_of(cell, batch.n)
        quads[(by < my) * 2 + (bx >= mx)].append(cell)
    return [_batch(f"{batch.name}_q{k}", batch.epsg, batch.cell_size, batch.zoom, quads[k], batch.split_depth + 1)
            for k in sorted(quads)]  # fmt: skip


def file_offsets(name: str, prefix: str) -> tuple[int, int]:
    """``(row, column)`` pixel offsets of a file Earth Engine wrote for ``prefix`` (``PREFIX.tif`` is (0, 0))."""
    if name == f"{prefix}.tif":
        return 0, 0
    m = FILE_NAME.search(name)
    if not name.startswith(prefix + "-") or m is None or len(name) != len(prefix) + 26:
        raise InputError(f"{name!r} is not a file of the batch export {prefix!r} (PREFIX-RRRRRRRRRR-CCCCCCCCCC.tif).")
    return int(m.group(1)), int(m.group(2))


def batch_files(names: Iterable[str], prefix: str) -> list[str]:
    """The objects of ``names`` that the batch export ``prefix`` wrote (not those of a ``prefix_q0`` quadrant)."""
    out = []
    for name in names:
        if name == f"{prefix}.tif" or (name.startswith(prefix + "-") and len(name) == len(prefix) + 26
                                       and FILE_NAME.search(name)):  # fmt: skip
            out.append(name)
    return sorted(out)


@dataclass(frozen=True)
class CellWindow:
    """Where a cell lies in its batch's file: the file's object name and the cell's pixel window in it."""

    cell: str
    file: str
    col_off: int
    row_off: int
    width: int
    height: int


def cells_of_file(batch: Batch, name: str, prefix: str) -> list[CellWindow]:
    """The batch's cells in the file ``name`` (see the module docstring for the mapping), with their windows."""
    row, col = file_offsets(name, prefix)
    f = batch.file_px
    if row % f or col % f:
        raise InputError(f"{name!r}: offsets ({row}, {col}) are not multiples of the file size {f} px.")
    bx, by = batch.bx0 + col // f, batch.by1 - row // f
    if not (batch.bx0 <= bx <= batch.bx1 and batch.by0 <= by <= batch.by1):
        raise InputError(f"{name!r}: offsets ({row}, {col}) fall outside batch {batch.name}.")
    left, top = bx * batch.block_m, (by + 1) * batch.block_m
    out = []
    for cell in batch.cells:
        if block_of(cell, batch.n) != (bx, by):
            continue
        g = pixel_grid(cell, SCALE)
        c0, r0 = round((g.transform[2] - left) / SCALE), round((top - g.transform[5]) / SCALE)
        out.append(CellWindow(cell["name"], name, c0, r0, g.width, g.height))
    return out


def search_radius(cell: dict[str, Any]) -> float:
    """The labels' default search radius of a cell (``steps.labels``): its lattice's diagonal, whole metres.

    A batch computes labels with its cells' radius, not its own extent's, so every cell's distances equal
    its per-cell export's."""
    g = pixel_grid(cell, SCALE)
    return float(math.ceil(math.hypot(g.width, g.height) * g.scale))

"""Smooth random fields defined in world metres, evaluated on any pixel lattice.

A field is a coarse grid of random values (one per ``cell`` metres) interpolated
bilinearly. Evaluating it is two small matrix products (rows x coarse x cols),
so the same field is cheap to sample at 10, 20 or 60 m, or shifted (cloud
shadows are the cloud field moved along the sun direction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _weights(centres: np.ndarray, cell: float, n: int) -> np.ndarray:
    """Bilinear weights (len(centres) x n) of coarse nodes at 0, cell, 2 cell, ..."""
    pos = np.clip(centres / cell, 0, n - 1.000001)
    i = np.floor(pos).astype(int)
    f = (pos - i).astype(np.float32)
    w = np.zeros((len(centres), n), dtype=np.float32)
    rows = np.arange(len(centres))
    w[rows, i] = 1 - f
    w[rows, i + 1] = f
    return w


@dataclass(frozen=True)
class Field:
    """A smooth field over a square of ``extent`` metres (origin top-left, y down), values ~N(0, 1)."""

    nodes: np.ndarray  # coarse values, (n, n)
    cell: float

    @classmethod
    def random(cls, rng: np.random.Generator, extent: float, cell: float, margin: float = 0.0) -> Field:
        n = int(np.ceil((extent + 2 * margin) / cell)) + 2
        return cls(rng.standard_normal((n, n)).astype(np.float32), cell)

    def sample(self, height: int, width: int, pixel: float, dx: float = 0.0, dy: float = 0.0, margin: float = 0.0):
        """Values at the centres of a ``height`` x ``width`` lattice of ``pixel`` metres, shifted by (dx, dy) metres."""
        n = self.nodes.shape[0]
        ys = (np.arange(height) + 0.5) * pixel + dy + margin
        xs = (np.arange(width) + 0.5) * pixel + dx + margin
        # bilinear interpolation of a unit-variance grid loses variance; rescale to ~unit variance
        gain = np.float32(1.5)
        if n <= 48:  # coarse: two small matrix products
            return (_weights(ys, self.cell, n) @ self.nodes @ _weights(xs, self.cell, n).T) * gain
        i0, fy = _cell_positions(ys, self.cell, n)
        j0, fx = _cell_positions(xs, self.cell, n)
        rows = self.nodes[i0] * (1 - fy)[:, None] + self.nodes[i0 + 1] * fy[:, None]
        rows *= gain
        out = rows[:, j0]
        out *= 1 - fx
        out += rows[:, j0 + 1] * fx
        return out


def _cell_positions(centres: np.ndarray, cell: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.clip(centres / cell, 0, n - 1.000001)
    i = np.floor(pos).astype(np.intp)
    return i, (pos - i).astype(np.float32)


def octaves(rng: np.random.Generator, extent: float, cells: list[float], weights: list[float], margin: float = 0.0):
    """Several fields summed with ``weights``: large shapes with detail."""
    fields = [Field.random(rng, extent, c, margin) for c in cells]
    return list(zip(fields, weights, strict=True))


def sample_octaves(parts, height: int, width: int, pixel: float, dx: float = 0.0, dy: float = 0.0, margin: float = 0.0):
    out = np.zeros((height, width), dtype=np.float32)
    for f, w in parts:
        out += np.float32(w) * f.sample(height, width, pixel, dx, dy, margin)
    return out


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks (what a coarser detector pixel sees of a finer scene)."""
    if f == 1:
        return a
    h, w = a.shape[-2] // f, a.shape[-1] // f
    rows = a[..., 0 : h * f : f, : w * f].astype(np.float32, copy=True)
    for i in range(1, f):
        rows += a[..., i : h * f : f, : w * f]
    out = rows[..., 0::f].copy()
    for j in range(1, f):
        out += rows[..., j::f]
    out *= np.float32(1.0 / (f * f))
    return out

"""Kernels: weighted neighbourhoods for focal operations (Earth Engine's ``ee.Kernel``).

A :class:`Kernel` is a value like any other engine value. Its weights are a
2-D array (rows top to bottom) with a focus cell ``(x, y)`` (column, row).
A kernel given in ``'meters'`` has no fixed size: :meth:`Kernel.weights_for`
builds its weights for the pixel size of each request grid, as Earth Engine
resizes metre kernels with the zoom level.

Shapes, checked against the weight matrices printed in the ``ee.Kernel.*``
reference pages (radius 3): ``circle`` keeps cells with ``dx² + dy² <= r²``
(29 cells), ``cross`` the diagonals (13 cells), ``octagon`` the cells of the
square with ``|dx| + |dy| <= floor(1.5 r)`` (37 cells), ``gaussian`` a
``2 (ceil(r) - 1) + 1`` wide square (5 x 5 for radius 3, as printed). Not
confirmed for other radii: ``square`` and ``rectangle`` keep ``|d| <= r``,
``plus`` the two axes, ``diamond`` ``|dx| + |dy| <= r``. ``normalize``
divides by the sum of the weights, then ``magnitude`` multiplies.

``to_info`` answers ``{'type': 'Kernel', 'width', 'height', 'x', 'y',
'weights'}`` (or the constructor and its arguments for metre kernels), a shape
not confirmed against Earth Engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm

Weights = tuple[np.ndarray, int, int]


@dataclass(frozen=True)
class Kernel:
    """``build(pixel_m)`` gives (weights, x, y) for a grid of ``pixel_m`` metres per pixel.

    ``distance`` names the metric of a distance kernel ('euclidean',
    'manhattan', 'chebyshev'), which ``Image.distance`` uses; ``radius`` and
    ``units`` are kept for it.
    """

    kind: str
    args: dict[str, Any]
    build: Callable[[float], Weights] = field(repr=False, compare=False)
    units: str = "pixels"
    distance: str | None = None
    radius: float | None = None

    ee_type = "Kernel"

    def weights_for(self, pixel_m: float = 1.0) -> Weights:
        return self.build(pixel_m)

    def to_info(self) -> dict[str, Any]:
        if self.units == "meters":
            return {"type": self.kind, **{k: v for k, v in self.args.items() if v is not None}}
        w, x, y = self.build(1.0)
        return {
            "type": "Kernel",
            "width": int(w.shape[1]),
            "height": int(w.shape[0]),
            "x": x,
            "y": y,
            "weights": [[_plain(v) for v in row] for row in w.tolist()],
        }


def _plain(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


def _finish(w: np.ndarray, normalize: bool, magnitude: float) -> np.ndarray:
    w = w.astype(np.float64)
    if normalize:
        total = w.sum()
        if total != 0:
            w = w / total
    return w * float(magnitude)


def _units(name: str, units: Any) -> str:
    if units not in ("pixels", "meters"):
        raise EngineError(f"{name}: Unknown units '{units}'. Use 'pixels' or 'meters'.")
    return units


def _pixels(radius: float, units: str, pixel_m: float) -> float:
    return radius / pixel_m if units == "meters" else radius


def _offsets(rx: float, ry: float) -> tuple[np.ndarray, np.ndarray]:
    nx, ny = int(math.floor(rx + 1e-9)), int(math.floor(ry + 1e-9))
    dy, dx = np.mgrid[-ny : ny + 1, -nx : nx + 1]
    return dx, dy


SHAPES: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "square": lambda dx, dy, r: np.ones(dx.shape, bool),
    "circle": lambda dx, dy, r: dx * dx + dy * dy <= r * r + 1e-9,
    "plus": lambda dx, dy, r: (dx == 0) | (dy == 0),
    "cross": lambda dx, dy, r: np.abs(dx) == np.abs(dy),
    "diamond": lambda dx, dy, r: np.abs(dx) + np.abs(dy) <= r + 1e-9,
    "octagon": lambda dx, dy, r: np.abs(dx) + np.abs(dy) <= math.floor(1.5 * r + 1e-9),
}


def shaped(kind: str, radius: float, units: str, normalize: bool, magnitude: float) -> Kernel:
    """A boolean kernel of one of :data:`SHAPES`."""
    name = f"Kernel.{kind}"
    units = _units(name, units)
    if radius is None or radius < 0:
        raise EngineError(f"{name}: The radius must be non-negative.")
    test = SHAPES[kind]

    def build(pixel_m: float) -> Weights:
        r = _pixels(float(radius), units, pixel_m)
        dx, dy = _offsets(r, r)
        w = _finish(test(dx, dy, r), normalize, magnitude)
        return w, w.shape[1] // 2, w.shape[0] // 2

    args = {"radius": radius, "units": units, "normalize": normalize, "magnitude": magnitude}
    return Kernel(name, args, build, units, radius=float(radius))


def named(kernel_type: str, radius: float, units: str) -> Kernel:
    """The kernel a focal operation names by ``kernelType`` (boolean, normalised)."""
    if kernel_type in SHAPES:
        return shaped(kernel_type, radius, units, True, 1.0)
    if kernel_type == "gaussian":
        return gaussian(radius=radius, sigma=1.0, units=units, normalize=True, magnitude=1.0)
    if kernel_type in ("euclidean", "manhattan", "chebyshev"):
        return _distance(kernel_type, radius, units, False, 1.0)
    raise EngineError(f"Unknown kernel type '{kernel_type}'.")


@algorithm("Kernel.square")
def square(radius, units, normalize, magnitude):
    return shaped("square", radius, units, normalize, magnitude)


@algorithm("Kernel.circle")
def circle(radius, units, normalize, magnitude):
    return shaped("circle", radius, units, normalize, magnitude)


@algorithm("Kernel.plus")
def plus(radius, units, normalize, magnitude):
    return shaped("plus", radius, units, normalize, magnitude)


@algorithm("Kernel.cross")
def cross(radius, units, normalize, magnitude):
    return shaped("cross", radius, units, normalize, magnitude)


@algorithm("Kernel.diamond")
def diamond(radius, units, normalize, magnitude):
    return shaped("diamond", radius, units, normalize, magnitude)


@algorithm("Kernel.octagon")
def octagon(radius, units, normalize, magnitude):
    return shaped("octagon", radius, units, normalize, magnitude)


@algorithm("Kernel.rectangle")
def rectangle(xRadius, yRadius, units, normalize, magnitude):  # noqa: N803
    units = _units("Kernel.rectangle", units)

    def build(pixel_m: float) -> Weights:
        dx, _ = _offsets(_pixels(float(xRadius), units, pixel_m), _pixels(float(yRadius), units, pixel_m))
        w = _finish(np.ones(dx.shape), normalize, magnitude)
        return w, w.shape[1] // 2, w.shape[0] // 2

    args = {"xRadius": xRadius, "yRadius": yRadius, "units": units, "normalize": normalize, "magnitude": magnitude}
    return Kernel("Kernel.rectangle", args, build, units, radius=float(max(xRadius, yRadius)))


@algorithm("Kernel.gaussian")
def gaussian(radius, sigma, units, normalize, magnitude):
    """Samples of exp(-d²/2σ²) on a 2 (ceil(r) - 1) + 1 square (the documented radius-3 example is 5 x 5)."""
    units = _units("Kernel.gaussian", units)

    def build(pixel_m: float) -> Weights:
        r = _pixels(float(radius), units, pixel_m)
        s = _pixels(float(sigma), units, pixel_m)
        n = max(0, math.ceil(r - 1e-9) - 1)
        dy, dx = np.mgrid[-n : n + 1, -n : n + 1]
        w = _finish(np.exp(-(dx * dx + dy * dy) / (2.0 * s * s)), normalize, magnitude)
        return w, n, n

    args = {"radius": radius, "sigma": sigma, "units": units, "normalize": normalize, "magnitude": magnitude}
    return Kernel("Kernel.gaussian", args, build, units, radius=float(radius))


def _distance(metric: str, radius: float, units: str, normalize: bool, magnitude: float) -> Kernel:
    name = f"Kernel.{metric}"
    units = _units(name, units)

    def build(pixel_m: float) -> Weights:
        r = _pixels(float(radius), units, pixel_m)
        dx, dy = _offsets(r, r)
        ax, ay = np.abs(dx), np.abs(dy)
        d = {"euclidean": np.hypot(ax, ay), "manhattan": ax + ay, "chebyshev": np.maximum(ax, ay)}[metric]
        w = _finish(d, normalize, magnitude)
        return w, w.shape[1] // 2, w.shape[0] // 2

    args = {"radius": radius, "units": units, "normalize": normalize, "magnitude": magnitude}
    return Kernel(name, args, build, units, distance=metric, radius=float(radius))


@algorithm("Kernel.euclidean")
def euclidean(radius, units, normalize, magnitude):
    return _distance("euclidean", radius, units, normalize, magnitude)


@algorithm("Kernel.manhattan")
def manhattan(radius, units, normalize, magnitude):
    return _distance("manhattan", radius, units, normalize, magnitude)


@algorithm("Kernel.chebyshev")
def chebyshev(radius, units, normalize, magnitude):
    return _distance("chebyshev", radius, units, normalize, magnitude)


@algorithm("Kernel.fixed")
def fixed(width, height, weights, x, y, normalize):
    """A kernel of the given weights; the focus defaults to the centre (``width // 2``, ``height // 2``)."""
    rows = [list(r) for r in weights]
    if not rows or not rows[0]:
        raise EngineError("Kernel.fixed: The weights must be a non-empty 2-D list.")
    if any(len(r) != len(rows[0]) for r in rows):
        raise EngineError("Kernel.fixed: All rows of the weights must have the same length.")
    w = np.asarray(rows, dtype=np.float64)
    h_, w_ = w.shape
    if (width not in (None, -1) and int(width) != w_) or (height not in (None, -1) and int(height) != h_):
        raise EngineError(f"Kernel.fixed: The weights are {w_}x{h_}, not {width}x{height}.")
    fx = w_ // 2 if x in (None, -1) else int(x)
    fy = h_ // 2 if y in (None, -1) else int(y)
    if not (0 <= fx < w_ and 0 <= fy < h_):
        raise EngineError("Kernel.fixed: The focus must lie inside the kernel.")
    out = _finish(w, bool(normalize), 1.0)
    args = {"width": w_, "height": h_, "weights": rows, "x": fx, "y": fy, "normalize": bool(normalize)}
    return Kernel("Kernel.fixed", args, lambda _m: (out, fx, fy))


_FIXED_3X3 = {
    "laplacian4": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "laplacian8": [[1, 1, 1], [1, -8, 1], [1, 1, 1]],
    "sobel": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "prewitt": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
}


def _edge(kind: str, magnitude: float, normalize: bool) -> Kernel:
    w = _finish(np.asarray(_FIXED_3X3[kind], dtype=np.float64), bool(normalize), magnitude)
    return Kernel(f"Kernel.{kind}", {"magnitude": magnitude, "normalize": normalize}, lambda _m: (w, 1, 1))


@algorithm("Kernel.laplacian4")
def laplacian4(magnitude, normalize):
    return _edge("laplacian4", magnitude, normalize)


@algorithm("Kernel.laplacian8")
def laplacian8(magnitude, normalize):
    return _edge("laplacian8", magnitude, normalize)


@algorithm("Kernel.inverse")
def inverse(kernel):
    def build(pixel_m: float) -> Weights:
        w, x, y = kernel.weights_for(pixel_m)
        out = np.zeros_like(w)
        nz = w != 0
        out[nz] = 1.0 / w[nz]
        return out, x, y

    return Kernel("Kernel.inverse", {"kernel": kernel.kind}, build, kernel.units, radius=kernel.radius)


@algorithm("Kernel.rotate")
def rotate(kernel, rotations):
    """Rotated by ``rotations`` quarter turns (positive: clockwise, as the reference describes)."""
    k = int(rotations) % 4

    def build(pixel_m: float) -> Weights:
        w, x, y = kernel.weights_for(pixel_m)
        h, wd = w.shape
        for _ in range(k):  # clockwise quarter turn: (x, y) -> (h - 1 - y, x)
            w, x, y = np.rot90(w, -1), h - 1 - y, x
            h, wd = wd, h
        return np.ascontiguousarray(w), x, y

    return Kernel("Kernel.rotate", {"kernel": kernel.kind, "rotations": int(rotations)}, build, kernel.units)

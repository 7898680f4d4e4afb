"""Kernel constructors against the weight matrices printed in the ee.Kernel.* reference pages."""

from __future__ import annotations

import numpy as np
import pytest


def _weights(ee, kernel):
    info = kernel.getInfo()
    return np.array(info["weights"], dtype=float), info


# Reference pages ee.Kernel.circle / cross / octagon (radius 3): 29, 13 and 37 cells of equal weight.
@pytest.mark.parametrize(
    ("ctor", "rows"),
    [
        ("circle", ["0001000", "0111110", "0111110", "1111111", "0111110", "0111110", "0001000"]),
        ("cross", ["1000001", "0100010", "0010100", "0001000", "0010100", "0100010", "1000001"]),
        ("octagon", ["0011100", "0111110", "1111111", "1111111", "1111111", "0111110", "0011100"]),
    ],
)
def test_boolean_kernels_match_reference_examples(ee_local, ctor, rows):
    w, info = _weights(ee_local, getattr(ee_local.Kernel, ctor)(radius=3))
    shape = np.array([[int(ch) for ch in r] for r in rows], dtype=float)
    assert w.shape == (7, 7) and (info["x"], info["y"]) == (3, 3)
    np.testing.assert_allclose(w, shape / shape.sum())


def test_gaussian_matches_reference_example(ee_local):
    # ee.Kernel.gaussian reference: radius 3, sigma 1 prints a 5x5 matrix with centre 0.162 (truncated to 1/1000)
    w, _ = _weights(ee_local, ee_local.Kernel.gaussian(radius=3))
    printed = [
        [0.002, 0.013, 0.021, 0.013, 0.002],
        [0.013, 0.059, 0.098, 0.059, 0.013],
        [0.021, 0.098, 0.162, 0.098, 0.021],
        [0.013, 0.059, 0.098, 0.059, 0.013],
        [0.002, 0.013, 0.021, 0.013, 0.002],
    ]
    np.testing.assert_allclose(np.floor(w * 1000) / 1000, printed)
    assert w.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("normalize", [True, False])
def test_square_normalize_and_magnitude(ee_local, normalize):
    w, _ = _weights(ee_local, ee_local.Kernel.square(radius=1, normalize=normalize, magnitude=2))
    expected = np.full((3, 3), 2.0 / 9 if normalize else 2.0)
    np.testing.assert_allclose(w, expected)


def test_fixed_kernel_keeps_weights_and_focus(ee_local):
    w, info = _weights(ee_local, ee_local.Kernel.fixed(3, 2, [[1, 2, 3], [4, 5, 6]], 0, 1))
    np.testing.assert_allclose(w, [[1, 2, 3], [4, 5, 6]])
    assert (info["x"], info["y"]) == (0, 1)


def test_rectangle_and_plus_shapes(ee_local):
    w, _ = _weights(ee_local, ee_local.Kernel.rectangle(2, 1, "pixels", False))
    assert w.shape == (3, 5) and (w == 1).all()
    w, _ = _weights(ee_local, ee_local.Kernel.plus(1, "pixels", False))
    np.testing.assert_allclose(w, [[0, 1, 0], [1, 1, 1], [0, 1, 0]])

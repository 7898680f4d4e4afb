"""gee_mining.io.pixels: NPY answers read as views of their bytes, checked against numpy's own np.save/np.load."""

from __future__ import annotations

import io

import numpy as np
import pytest

from gee_mining.errors import GeeMiningError
from gee_mining.io.pixels import compute_npy, read_npy


def _saved(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array)
    else:
        np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


@pytest.mark.parametrize("version", [None, (2, 0)])
def test_read_npy_equals_numpys_load_and_copies_nothing(version):
    rng = np.random.default_rng(0)
    want = np.zeros((7, 9), [("B4", "<f8"), ("ND", "<f4"), ("mask", "u1")])
    for name in want.dtype.names:
        want[name] = rng.uniform(0, 200, want.shape)
    body = _saved(want, version)
    got = read_npy(body)
    assert got.dtype == np.load(io.BytesIO(body)).dtype and got.shape == (7, 9)
    np.testing.assert_array_equal(got, np.load(io.BytesIO(body)))
    assert np.shares_memory(got, np.frombuffer(body, np.uint8))  # a view of the answer's bytes
    assert not got.flags.writeable


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_read_npy_of_a_memoryview_copies_nothing(version):
    # The local engine answers in-process with a read-only memoryview of its buffer; the header's length takes 2
    # bytes in version 1.0, 4 in version 2.0.
    want = np.zeros((3, 2), [(f"b{i}", "<u2") for i in range(300)])
    want["b299"] = [[1, 2], [3, 4], [5, 6]]
    body = _saved(want, version)
    buffer = np.frombuffer(body, np.uint8).copy()
    got = read_npy(memoryview(buffer).toreadonly())
    np.testing.assert_array_equal(got, want)
    assert np.shares_memory(got, buffer) and not got.flags.writeable


def test_read_npy_of_a_fortran_ordered_array():
    want = np.asfortranarray(np.arange(12, dtype="<i2").reshape(3, 4))
    np.testing.assert_array_equal(read_npy(_saved(want)), np.arange(12).reshape(3, 4))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"code": 400}}', "not an NPY array"),
        (_saved(np.arange(10.0))[:-8], "cut short or padded"),
        (_saved(np.arange(10.0)) + b"\0", "cut short or padded"),
        (_saved(np.array([1, "a"], dtype=object)), "Python objects"),
    ],
)
def test_read_npy_refuses_what_is_not_a_whole_npy_array(body, message):
    with pytest.raises(GeeMiningError, match=message):
        read_npy(body)


def test_compute_npy_gives_the_pixels_numpy_ndarray_gives(ee_local):
    ee = ee_local
    image = ee.Image.pixelCoordinates("EPSG:32633").addBands(ee.Image.constant(3).toUint8().rename("c"))
    grid = {
        "dimensions": {"width": 5, "height": 4},
        "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": 400000, "shearY": 0, "scaleY": -10,
                            "translateY": 5400000},
        "crsCode": "EPSG:32633",
    }  # fmt: skip
    got = compute_npy({"expression": image, "grid": grid, "fileFormat": "PNG"})  # the format is replaced
    assert got.dtype.names == ("x", "y", "c")
    x, y = np.meshgrid(400005 + 10 * np.arange(5), 5399995 - 10 * np.arange(4))  # pixel centres
    np.testing.assert_array_equal(got["x"], x)
    np.testing.assert_array_equal(got["y"], y)
    assert got["c"].dtype == np.uint8 and (got["c"] == 3).all()
    np.testing.assert_array_equal(
        got, ee.data.computePixels({"expression": image, "grid": grid, "fileFormat": "NUMPY_NDARRAY"})
    )

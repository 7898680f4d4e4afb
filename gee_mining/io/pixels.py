"""Pixels from an engine: ``image:computePixels`` answers in NPY, read without a copy.

``ee.data.computePixels`` with ``fileFormat="NUMPY_NDARRAY"`` hands the answer's bytes to
``numpy.load(io.BytesIO(...))``, which allocates a new structured array and copies the records into it
256 KB at a time, field by field (numpy copies a structured dtype one field at a time even between
identical dtypes). For the 78 bands of a composite (12 double medians, 66 float normalised differences,
360 bytes a pixel) that is about 0.05 s for each 36.8 MB strip, as long as the engine took to write it.
:func:`compute_npy` asks for the plain ``NPY`` format instead (the same answer, given as bytes) and
:func:`read_npy` makes the structured array a read-only view of those bytes: no copy at all.

Works on both engines: the NPY answer is Earth Engine's format (a structured array with one field per
band, in the bands' order).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import ee
import numpy as np

from gee_mining.errors import GeeMiningError

_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_npy(body: bytes | memoryview) -> np.ndarray:
    """The array of an NPY file's bytes, as a read-only view of ``body`` (no copy; ``.copy()`` it to
    write). ``body`` is ``bytes`` or another bytes-like object (the local engine answers in-process with a
    read-only memoryview of its answer buffer). Raises ``GeeMiningError`` for bytes that are not a complete
    NPY array of plain values."""
    view = memoryview(body).cast("B")
    try:
        stream = io.BytesIO(view[: _header_end(view)])  # only the header is copied (BytesIO copies all but bytes)
        version = np.lib.format.read_magic(stream)
        shape, fortran_order, dtype = _READERS[version](stream)
    except (ValueError, KeyError) as e:
        raise GeeMiningError(f"The engine's answer is not an NPY array ({view.nbytes} bytes): {e}") from None
    if dtype.hasobject:
        raise GeeMiningError("The engine's NPY answer holds Python objects; computePixels answers plain values.")
    count = int(np.prod(shape, dtype=np.int64))
    offset = stream.tell()
    if view.nbytes - offset != count * dtype.itemsize:
        raise GeeMiningError(
            f"The engine's NPY answer is cut short or padded: {view.nbytes - offset} bytes of data for "
            f"{count} values of {dtype.itemsize} bytes."
        )
    flat = np.frombuffer(view.toreadonly(), dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran_order else "C")


def _header_end(view: memoryview) -> int:
    """Where an NPY file's header ends: magic and version (8 bytes), the header's length (2 bytes in version 1,
    4 in version 2, little-endian), the header. Bytes that are not NPY give 8 (``read_magic`` refuses them)."""
    lengths = {1: 2, 2: 4}.get(view[6]) if len(view) >= 8 else None
    if lengths is None or len(view) < 8 + lengths:
        return min(len(view), 8)
    return 8 + lengths + int.from_bytes(view[8 : 8 + lengths], "little")


def compute_npy(params: Mapping[str, Any]) -> np.ndarray:
    """``ee.data.computePixels(params)`` as a structured array (one field per band), like ``fileFormat=
    "NUMPY_NDARRAY"`` but read-only and without the client's copy of the answer (``params``' own
    ``fileFormat`` is replaced by NPY)."""
    return read_npy(ee.data.computePixels({**params, "fileFormat": "NPY"}))

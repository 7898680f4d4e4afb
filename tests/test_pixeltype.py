"""PixelType: constructors and accessors (the "ee.PixelType" reference pages)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("name", ["int8", "uint8", "int16", "uint16", "int32", "uint32"])
def test_integer_types_have_their_numpy_range(ee_local, name):
    ee = ee_local
    info = getattr(ee.PixelType, name)().getInfo()
    iinfo = np.iinfo(name)
    assert info == {"type": "PixelType", "precision": "int", "min": int(iinfo.min), "max": int(iinfo.max)}
    t = getattr(ee.PixelType, name)()
    assert ee.List([t.minValue(), t.maxValue(), t.precision(), t.dimensions()]).getInfo() == [
        int(iinfo.min),
        int(iinfo.max),
        "int",
        0,
    ]


def test_float_types(ee_local):
    ee = ee_local
    assert ee.PixelType.float().getInfo() == {"type": "PixelType", "precision": "float"}
    assert ee.PixelType.double().precision().getInfo() == "double"
    assert ee.PixelType.float().maxValue().getInfo() == pytest.approx(float(np.finfo(np.float32).max))


def test_constructor_with_range(ee_local):
    ee = ee_local
    # "ee.PixelType": PixelType(precision, minValue, maxValue, dimensions)
    assert ee.PixelType("int", 0, 1000).getInfo() == {"type": "PixelType", "precision": "int", "min": 0, "max": 1000}

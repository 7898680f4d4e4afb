"""PixelType: a band's precision and range, and Earth Engine's promotion rules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


@dataclass(frozen=True)
class PixelType:
    """``precision`` is 'int', 'float' or 'double'; ints carry their value range."""

    precision: str = "double"
    min: float | None = None
    max: float | None = None

    ee_type = "PixelType"

    @classmethod
    def int_range(cls, lo: float, hi: float) -> PixelType:
        return cls("int", int(lo), int(hi))

    @classmethod
    def named(cls, name: str) -> PixelType:
        if name in _INT_RANGES:
            return cls.int_range(*_INT_RANGES[name])
        if name in ("float", "double"):
            return cls(name)
        raise EngineError(f"PixelType: Unknown type '{name}'.")

    @classmethod
    def from_dtype(cls, dtype: np.dtype) -> PixelType:
        dtype = np.dtype(dtype)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return cls.int_range(info.min, info.max)
        if dtype == np.float32:
            return cls("float")
        if dtype.kind == "f":
            return cls("double")
        if dtype.kind == "b":
            return cls.int_range(0, 1)
        raise EngineError(f"Unsupported pixel dtype {dtype}.")

    @property
    def is_int(self) -> bool:
        return self.precision == "int"

    def numpy_dtype(self) -> np.dtype:
        """The smallest numpy dtype holding every value of this type (for output files)."""
        if self.precision == "float":
            return np.dtype(np.float32)
        if self.precision == "double":
            return np.dtype(np.float64)
        for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64"):
            lo, hi = _INT_RANGES[name]
            if lo <= self.min and self.max <= hi:
                return np.dtype(name)
        return np.dtype(np.float64)

    def to_info(self) -> dict:
        info: dict = {"type": "PixelType", "precision": self.precision}
        if self.is_int:
            info["min"] = int(self.min)
            info["max"] = int(self.max)
        elif self.min is not None and self.max is not None:  # a floating type given a range
            info["min"] = self.min
            info["max"] = self.max
        return info


def widest(*types: PixelType) -> PixelType:
    """The type of a result that may hold any value of ``types`` (EE's promotion)."""
    if any(t.precision == "double" for t in types):
        return PixelType("double")
    if any(t.precision == "float" for t in types):
        return PixelType("float")
    return PixelType.int_range(min(t.min for t in types), max(t.max for t in types))


@algorithm("PixelType")
def pixel_type(precision, minValue, maxValue, dimensions):  # noqa: N803
    if isinstance(precision, PixelType):  # the client wraps PixelType.int8() and the like in PixelType(...)
        return precision
    if precision not in ("int", "float", "double"):
        raise EngineError(f"PixelType: Unknown precision '{precision}'.")
    if dimensions:
        raise EngineError("PixelType: array pixels (dimensions > 0) are not supported by the local engine.")
    if precision == "int":
        lo = -(2**63) if minValue is None else minValue
        hi = 2**63 - 1 if maxValue is None else maxValue
        return PixelType.int_range(lo, hi)
    if minValue is not None and maxValue is not None:  # API reference: PixelType('double', 1, 2) is "double ∈ [1, 2]"
        return PixelType(precision, float(minValue), float(maxValue))
    return PixelType(precision)  # one bound alone is dropped ("double", as the API reference prints it)


def _named(name: str):
    def make():
        return PixelType.named(name)

    make.__name__ = name
    return make


for _name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float", "double"):
    algorithm(f"PixelType.{_name}")(_named(_name))


@algorithm("PixelType.precision")
def precision(pixelType):  # noqa: N803
    return pixelType.precision


@algorithm("PixelType.minValue")
def min_value(pixelType):  # noqa: N803
    """The smallest value of an integer type; floating types report their IEEE range."""
    if pixelType.is_int:
        return int(pixelType.min)
    if pixelType.min is not None:
        return pixelType.min
    return -float(np.finfo(pixelType.numpy_dtype()).max)


@algorithm("PixelType.maxValue")
def max_value(pixelType):  # noqa: N803
    if pixelType.is_int:
        return int(pixelType.max)
    if pixelType.max is not None:
        return pixelType.max
    return float(np.finfo(pixelType.numpy_dtype()).max)


@algorithm("PixelType.dimensions")
def dimensions(pixelType):  # noqa: N803
    return 0

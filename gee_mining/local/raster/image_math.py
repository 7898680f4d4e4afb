"""Per-pixel image algorithms: arithmetic, comparisons, bit operations, casts, expressions.

Earth Engine's rules (guide "Mathematical Operations", the ``ee.Image.add``
family of reference pages):

- Binary operators match bands: when either image has one band it is used
  against every band of the other; otherwise the images must have the same
  number of bands, used pairwise in order. The output bands are named after
  the longer input, or after ``image1`` when both have the same length.
- A constant (the client promotes numbers with ``ee.Image.constant``) is a
  single-band image with no masked pixels.
- Only pixels unmasked in every input are unmasked in the result.
- The output pixel type is the union of the input types: integer results
  carry the value range that the operation can produce (``uint16 + uint16``
  is an int in [0, 131070]); any float input gives a float, any double a
  double. Division, roots, logarithms and trigonometry give floating point.
- Division by zero gives 0 (documented for ``ee.Image.divide``).
- The result of an operation is a new image: the inputs' properties are not
  kept (``ee.Image.normalizedDifference`` documents it; use
  ``copyProperties`` to carry metadata).

The default projection of an output band is that of its first input band,
except that an unbounded band in WGS84 at 1 degree (a constant, or
``pixelLonLat``) gives way to the other input's projection, so that
``ee.Image(1).subtract(b4)`` keeps b4's UTM projection and scale. (A
decision: Earth Engine documents the default projection of composites, not
of band math between a constant and a real band.)

Pixels are computed in float64 with numpy over whole request grids, with no
per-pixel Python; a band's pixel type only decides how results are encoded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyproj
import scipy.special

from gee_mining.contracts.lattice import PixelGrid
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.raster.band import RowsInto, RowWriter
from gee_mining.local.raster.image import (
    _DEGREE,
    Band,
    Image,
    as_image,
    band_pairs,
    constant_band,
    derive,
    select_bands,
)
from gee_mining.local.raster.pixeltype import _INT_RANGES, PixelType, widest
from gee_mining.local.values.number import _BINARY_ALGORITHMS, _ExpressionParser
from gee_mining.local.values.projection import Projection, crs_object, transformer

Masked = np.ma.MaskedArray
_INT64 = _INT_RANGES["int64"]


# -- helpers -------------------------------------------------------------------------------


def _mask(x: Masked) -> np.ndarray:
    return np.ma.getmaskarray(x)


def _out(values: np.ndarray, mask: np.ndarray) -> Masked:
    return Masked(values, mask)


def _is_placeholder(band: Band) -> bool:
    """An unbounded band in WGS84 at 1 degree: a constant or a synthetic band with no projection of its own."""
    return band.footprint is None and band.proj == _DEGREE


def _proj_of(bands: Sequence[Band]) -> Projection:
    for b in bands:
        if not _is_placeholder(b):
            return b.proj
    return bands[0].proj


def _new_band(
    name: str, inputs: Sequence[Band], fn: Callable[..., Masked], ptype: PixelType, strict: bool = False
) -> Band:
    """A pixelwise band; ``strict``: ``fn`` masks every pixel any input masks (arithmetic), so the band is surely
    masked wherever an input is (``Band.surely_masked``)."""
    band = derive(name, inputs, fn, ptype).replace(proj=_proj_of(inputs))
    if strict:
        band.masked_on = lambda grid: any(b.surely_masked(grid) for b in inputs)
    return band


def _float_type(*types: PixelType) -> PixelType:
    """Floating point results: double if any input is double, else float."""
    return PixelType("double") if any(t.precision == "double" for t in types) else PixelType("float")


def _int_type(lo: float, hi: float) -> PixelType:
    """An int range clamped to 64 bits (a wider range cannot be held by Earth Engine's ints either)."""
    return PixelType.int_range(max(lo, _INT64[0]), min(hi, _INT64[1]))


def _int_bounds(t: PixelType) -> tuple[int, int]:
    """The value range of an int type, or of int64 for floating types (bit operations truncate floats)."""
    if t.is_int:
        return int(t.min), int(t.max)
    return _INT64


# -- binary operations ---------------------------------------------------------------------

BinaryFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
TypeRule = Callable[[PixelType, PixelType], PixelType]


def _pixelwise(op: BinaryFn) -> Callable[[Masked, Masked], Masked]:
    def fn(x: Masked, y: Masked) -> Masked:
        with np.errstate(all="ignore"):
            values = op(x.data, y.data)
        return _out(values, _mask(x) | _mask(y))

    return fn


def binary(name: str, image1: Any, image2: Any, op: BinaryFn, rule: TypeRule) -> Image:
    """Apply ``op`` to each matched pair of bands (Earth Engine's band matching and naming)."""
    left = as_image(name, image1)
    right = as_image(name, image2)
    pairs = band_pairs(name, left, right)
    names = [b.name for b in (right.bands if len(right.bands) > len(left.bands) else left.bands)]
    fn = _pixelwise(op)
    return Image(
        _new_band(n, [lb, rb], fn, rule(lb.pixel_type, rb.pixel_type), strict=True)
        for n, (lb, rb) in zip(names, pairs, strict=True)
    )


def _union(a: PixelType, b: PixelType) -> PixelType:
    return widest(a, b)


def _ranged(combine: Callable[[int, int, int, int], tuple[float, float]]) -> TypeRule:
    """Int results get the range ``combine`` gives; floating inputs give float or double."""

    def rule(a: PixelType, b: PixelType) -> PixelType:
        if a.is_int and b.is_int:
            lo, hi = combine(int(a.min), int(a.max), int(b.min), int(b.max))
            return _int_type(lo, hi)
        return _float_type(a, b)

    return rule


def _products(a0: int, a1: int, b0: int, b1: int) -> tuple[int, int]:
    p = (a0 * b0, a0 * b1, a1 * b0, a1 * b1)
    return min(p), max(p)


def _mod_range(a0: int, a1: int, b0: int, b1: int) -> tuple[int, int]:
    """Java's remainder takes the dividend's sign and is smaller than the divisor's magnitude."""
    m = max(abs(b0), abs(b1), 1) - 1
    return (max(a0, -m) if a0 < 0 else 0), (min(a1, m) if a1 > 0 else 0)


def _float_rule(a: PixelType, b: PixelType) -> PixelType:
    return _float_type(a, b)


def _bool_rule(a: PixelType, b: PixelType) -> PixelType:
    return PixelType.int_range(0, 1)


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Floating point division; division by zero gives 0 (documented)."""
    return np.divide(a, b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape)), where=b != 0)


def _mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Java's ``%`` (the remainder has the dividend's sign); a zero divisor gives 0 like division."""
    return np.fmod(a, b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape)), where=b != 0)


def _pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.power(a, b)


def _first_nonzero(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(a != 0, a, b)


def _as_long(x: np.ndarray) -> np.ndarray:
    """Java's ``(long)`` conversion: truncation toward zero, saturating, NaN to 0."""
    x = np.nan_to_num(x, nan=0.0, posinf=float(_INT64[1]), neginf=float(_INT64[0]))
    return np.clip(np.trunc(x), -(2.0**63), 2.0**63 - 1024).astype(np.int64)


def _bitwise(op: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> BinaryFn:
    def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return op(_as_long(a), _as_long(b)).astype(np.float64)

    return fn


def _shift_left(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.left_shift(a, b & 63)


def _shift_right(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.right_shift(a, b & 63)


def _bit_range(a: PixelType, b: PixelType, op: str) -> PixelType:
    a0, a1 = _int_bounds(a)
    b0, b1 = _int_bounds(b)
    if min(a0, b0) >= 0:
        if op == "and":
            return PixelType.int_range(0, min(a1, b1))
        bits = max(a1, b1).bit_length()
        return PixelType.int_range(0, (1 << bits) - 1)
    bits = max(abs(a0), abs(a1), abs(b0), abs(b1)).bit_length()
    return _int_type(-(1 << bits), (1 << bits) - 1)


def _shift_range(left: bool) -> TypeRule:
    def rule(a: PixelType, b: PixelType) -> PixelType:
        a0, a1 = _int_bounds(a)
        b0, b1 = _int_bounds(b)
        if b0 < 0 or b1 > 63:
            return PixelType.int_range(*_INT64)
        if left:
            ends = [a0 << b0, a0 << b1, a1 << b0, a1 << b1]
        else:
            ends = [a0 >> b0, a0 >> b1, a1 >> b0, a1 >> b1]
        return _int_type(min(ends), max(ends))

    return rule


_BINARY: dict[str, tuple[BinaryFn, TypeRule]] = {
    "add": (np.add, _ranged(lambda a0, a1, b0, b1: (a0 + b0, a1 + b1))),
    "subtract": (np.subtract, _ranged(lambda a0, a1, b0, b1: (a0 - b1, a1 - b0))),
    "multiply": (np.multiply, _ranged(_products)),
    "divide": (_divide, _float_rule),
    "mod": (_mod, _ranged(_mod_range)),
    "pow": (_pow, _float_rule),
    "max": (np.fmax, _ranged(lambda a0, a1, b0, b1: (max(a0, b0), max(a1, b1)))),
    "min": (np.fmin, _ranged(lambda a0, a1, b0, b1: (min(a0, b0), min(a1, b1)))),
    "first": (lambda a, b: np.array(a, copy=True), _union),
    "firstNonZero": (_first_nonzero, _union),
    "first_nonzero": (_first_nonzero, _union),
    # Earth Engine: image1 is x and image2 is y ("the angle formed by the 2D vector [x, y]").
    "atan2": (lambda a, b: np.arctan2(b, a), _float_rule),
    "hypot": (np.hypot, _float_rule),
    "gammainc": (lambda a, b: _gammainc(a, b), _float_rule),
    "lt": (np.less, _bool_rule),
    "lte": (np.less_equal, _bool_rule),
    "gt": (np.greater, _bool_rule),
    "gte": (np.greater_equal, _bool_rule),
    "eq": (np.equal, _bool_rule),
    "neq": (np.not_equal, _bool_rule),
    "and": (lambda a, b: (a != 0) & (b != 0), _bool_rule),
    "or": (lambda a, b: (a != 0) | (b != 0), _bool_rule),
    "bitwiseAnd": (_bitwise(np.bitwise_and), lambda a, b: _bit_range(a, b, "and")),
    "bitwiseOr": (_bitwise(np.bitwise_or), lambda a, b: _bit_range(a, b, "or")),
    "bitwiseXor": (_bitwise(np.bitwise_xor), lambda a, b: _bit_range(a, b, "xor")),
    "leftShift": (_bitwise(_shift_left), _shift_range(True)),
    "rightShift": (_bitwise(_shift_right), _shift_range(False)),
}
_BINARY["bitwise_and"] = _BINARY["bitwiseAnd"]
_BINARY["bitwise_or"] = _BINARY["bitwiseOr"]
_BINARY["bitwise_xor"] = _BINARY["bitwiseXor"]
_BINARY["left_shift"] = _BINARY["leftShift"]
_BINARY["right_shift"] = _BINARY["rightShift"]


def _register_binary(short: str, op: BinaryFn, rule: TypeRule) -> None:
    name = f"Image.{short}"

    def as_float(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(op(a, b), dtype=np.float64)

    def apply(image1, image2):
        return binary(name, image1, image2, as_float, rule)

    apply.__name__ = short
    apply.__doc__ = f"{name}: applied to each matched pair of bands (Earth Engine's band matching and naming)."
    algorithm(name)(apply)


for _short, (_op, _rule) in _BINARY.items():
    _register_binary(_short, _op, _rule)


# -- unary operations ------------------------------------------------------------------------

UnaryFn = Callable[[np.ndarray], np.ndarray]
UnaryRule = Callable[[PixelType], PixelType]


def unary(name: str, value: Any, op: UnaryFn, rule: UnaryRule) -> Image:
    img = as_image(name, value)

    def fn(x: Masked) -> Masked:
        with np.errstate(all="ignore"):
            values = np.asarray(op(x.data), dtype=np.float64)
        return _out(values, _mask(x))

    return Image(_new_band(b.name, [b], fn, rule(b.pixel_type), strict=True) for b in img.bands)


def _float_of(t: PixelType) -> PixelType:
    return _float_type(t)


def _same(t: PixelType) -> PixelType:
    return t


def _abs_rule(t: PixelType) -> PixelType:
    if not t.is_int:
        return t
    lo, hi = int(t.min), int(t.max)
    top = max(abs(lo), abs(hi))
    return _int_type(0 if lo <= 0 <= hi else min(abs(lo), abs(hi)), top)


def _signum_rule(t: PixelType) -> PixelType:
    if not t.is_int:
        return t
    return PixelType.int_range(
        -1 if t.min < 0 else (0 if t.min == 0 else 1), 1 if t.max > 0 else (0 if t.max == 0 else -1)
    )


def _not_rule(t: PixelType) -> PixelType:
    return PixelType.int_range(0, 1)


def _bitwise_not_rule(t: PixelType) -> PixelType:
    lo, hi = _int_bounds(t)
    return _int_type(~hi, ~lo)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """Java's Math.round on doubles rounds halves up; Earth Engine documents 10.5 -> 11 and -10.5 -> -11
    for ee.Number.round, halves away from zero."""
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def _bit_count(x: np.ndarray) -> np.ndarray:
    v = _as_long(x).view(np.uint64)
    count = np.zeros(v.shape, dtype=np.uint64)
    for shift in range(64):
        count += (v >> np.uint64(shift)) & np.uint64(1)
    return count.astype(np.float64)


def _special(name: str) -> UnaryFn:
    """A scipy.special function (imported when first used)."""

    def fn(x: np.ndarray) -> np.ndarray:
        return getattr(scipy.special, name)(x)

    return fn


def _gamma(x: np.ndarray) -> np.ndarray:
    """Gamma; NaN at zero and the negative integers (poles), as ee.Number.gamma."""
    return np.where((x <= 0) & (x == np.floor(x)), np.nan, scipy.special.gamma(x))


def _gammainc(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The regularized lower incomplete gamma P(a, x) with x = image1 and a = image2 (as ee.Number.gammainc)."""
    return scipy.special.gammainc(a, x)


_UNARY: dict[str, tuple[UnaryFn, UnaryRule]] = {
    "abs": (np.abs, _abs_rule),
    "sqrt": (np.sqrt, _float_of),
    "cbrt": (np.cbrt, _float_of),
    "exp": (np.exp, _float_of),
    "log": (np.log, _float_of),
    "log10": (np.log10, _float_of),
    "sin": (np.sin, _float_of),
    "cos": (np.cos, _float_of),
    "tan": (np.tan, _float_of),
    "asin": (np.arcsin, _float_of),
    "acos": (np.arccos, _float_of),
    "atan": (np.arctan, _float_of),
    "sinh": (np.sinh, _float_of),
    "cosh": (np.cosh, _float_of),
    "tanh": (np.tanh, _float_of),
    "floor": (np.floor, _same),
    "ceil": (np.ceil, _same),
    "round": (_round_half_away, _same),
    "signum": (np.sign, _signum_rule),
    "not": (lambda x: x == 0, _not_rule),
    "bitwiseNot": (lambda x: np.invert(_as_long(x)), _bitwise_not_rule),
    "bitwise_not": (lambda x: np.invert(_as_long(x)), _bitwise_not_rule),
    "bitCount": (_bit_count, lambda t: PixelType.int_range(0, 64)),
    "erf": (_special("erf"), _float_of),
    "erfc": (_special("erfc"), _float_of),
    "erfInv": (_special("erfinv"), _float_of),
    "erfcInv": (_special("erfcinv"), _float_of),
    "gamma": (_gamma, _float_of),
}


def _register_unary(short: str, op: UnaryFn, rule: UnaryRule) -> None:
    name = f"Image.{short}"

    def apply(value):
        return unary(name, value, op, rule)

    apply.__name__ = short
    apply.__doc__ = f"{name}: applied to every band."
    algorithm(name)(apply)


for _short, (_uop, _urule) in _UNARY.items():
    _register_unary(_short, _uop, _urule)


# -- casts ----------------------------------------------------------------------------------------


def _cast_to(t: PixelType) -> UnaryFn:
    """Earth Engine's casts (documented for ee.Number.toInt and its siblings): floats lose their
    fraction (truncation toward zero), values outside the range become its nearest bound, NaN
    becomes 0; a cast to float rounds to single precision."""
    if t.is_int:
        lo, hi = float(t.min), float(t.max)

        def to_int(x: np.ndarray) -> np.ndarray:
            return np.clip(np.trunc(np.nan_to_num(x, nan=0.0, posinf=hi, neginf=lo)), lo, hi)

        return to_int
    if t.precision == "float":
        return lambda x: x.astype(np.float32).astype(np.float64)
    return lambda x: x


_CASTS = {
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "int": "int32",
    "long": "int64",
    "short": "int16",
    "byte": "uint8",
    "float": "float",
    "double": "double",
    "toInt": "int32",
    "toInt8": "int8",
    "toInt16": "int16",
    "toInt32": "int32",
    "toInt64": "int64",
    "toUint8": "uint8",
    "toUint16": "uint16",
    "toUint32": "uint32",
    "toLong": "int64",
    "toShort": "int16",
    "toByte": "uint8",
    "toFloat": "float",
    "toDouble": "double",
}


def cast_band(band: Band, t: PixelType) -> Band:
    """``band`` converted to pixel type ``t`` (same name and projection)."""
    convert = _cast_to(t)

    def fn(x: Masked) -> Masked:
        return _out(convert(x.data), _mask(x))

    # a cast keeps masks, and turns no zero into a non-zero
    return derive(band.name, [band], fn, t).replace(proj=band.proj, masked_on=band.surely_masked,
                                                    zero_on=band.surely_zero)  # fmt: skip


def _register_cast(short: str, type_name: str) -> None:
    name = f"Image.{short}"
    target = PixelType.named(type_name)

    def apply(value):
        img = as_image(name, value)
        return Image(cast_band(b, target) for b in img.bands)

    apply.__name__ = short
    apply.__doc__ = f"{name}: casts every band to {type_name}."
    algorithm(name)(apply)


for _short, _type_name in _CASTS.items():
    _register_cast(_short, _type_name)


def _pixel_type(name: str, value: Any) -> PixelType:
    if isinstance(value, PixelType):
        return value
    if isinstance(value, str):
        return PixelType.named(value)
    raise EngineError(f"{name}: Invalid pixel type {value!r}.")


@algorithm("Image.cast")
def cast(image, bandTypes, bandOrder):  # noqa: N803 - Earth Engine's argument names
    """Cast the bands named in ``bandTypes``; the others stay; ``bandOrder`` orders the result."""
    img = as_image("Image.cast", image)
    if not isinstance(bandTypes, Mapping):
        raise EngineError("Image.cast: 'bandTypes' must be a dictionary of band names to pixel types.")
    names = img.band_names
    for key in bandTypes:
        if key not in names:
            raise EngineError(f"Image.cast: Band '{key}' not found in the image. Available bands: {names}.")
    bands = [
        cast_band(b, _pixel_type("Image.cast", bandTypes[b.name])) if b.name in bandTypes else b for b in img.bands
    ]
    if bandOrder is not None:
        by_name = {b.name: b for b in bands}
        missing = [n for n in bandOrder if n not in by_name]
        if missing:
            raise EngineError(f"Image.cast: Band '{missing[0]}' in bandOrder not found in the image.")
        bands = [by_name[n] for n in bandOrder]
    return img.with_bands(bands)


# -- conditional and range operations --------------------------------------------------------


def _matching(name: str, image: Image, other: Image, what: str) -> list[Band]:
    """``other``'s band for each band of ``image``: one band serves all, else the same count in order."""
    if len(other.bands) == 1:
        return [other.bands[0]] * len(image.bands)
    if len(other.bands) != len(image.bands):
        raise EngineError(
            f"{name}: The {what} image must have 1 band or as many bands as the input ({len(image.bands)}); "
            f"it has {len(other.bands)}."
        )
    return list(other.bands)


def _where(x: Masked, t: Masked, v: Masked) -> Masked:
    take = (t.data != 0) & ~_mask(t) & ~_mask(v)
    return _out(np.where(take, v.data, x.data), _mask(x))


@algorithm("Image.where")
def where(input, test, value):  # noqa: A002
    """Where ``test`` is nonzero, ``value``; elsewhere, or where test or value is masked, ``input``.
    A masked input pixel stays masked (documented)."""
    img = as_image("Image.where", input)
    tests = _matching("Image.where", img, as_image("Image.where", test), "test")
    values = _matching("Image.where", img, as_image("Image.where", value), "value")
    return Image(
        _new_band(b.name, [b, t, v], _where, widest(b.pixel_type, v.pixel_type)).replace(
            proj=b.proj, footprint=b.footprint
        )
        for b, t, v in zip(img.bands, tests, values, strict=True)
    )


def _number(name: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"{name}: Parameter '{arg}' must be a number.")
    return value


@algorithm("Image.clamp")
def clamp(input, low, high):  # noqa: A002
    """Values below ``low`` become ``low``, above ``high`` become ``high``."""
    img = as_image("Image.clamp", input)
    lo, hi = _number("Image.clamp", "low", low), _number("Image.clamp", "high", high)

    def rule(t: PixelType) -> PixelType:
        if t.is_int and float(lo).is_integer() and float(hi).is_integer():
            return PixelType.int_range(min(max(t.min, lo), hi), max(min(t.max, hi), lo))
        return t if not t.is_int else _float_type(t)

    def fn(x: Masked) -> Masked:
        return _out(np.minimum(np.maximum(x.data, lo), hi), _mask(x))

    return Image(_new_band(b.name, [b], fn, rule(b.pixel_type), strict=True) for b in img.bands)


@algorithm("Image.unitScale")
def unit_scale(input, low, high):  # noqa: A002
    """(x - low) / (high - low), not clamped; always floating point (documented)."""
    img = as_image("Image.unitScale", input)
    lo, hi = _number("Image.unitScale", "low", low), _number("Image.unitScale", "high", high)
    span = float(hi) - float(lo)

    def fn(x: Masked) -> Masked:
        values = (x.data - lo) / span if span != 0 else np.zeros(x.shape)
        return _out(values, _mask(x))

    return Image(_new_band(b.name, [b], fn, _float_type(b.pixel_type), strict=True) for b in img.bands)


def _normalized_difference(first: Band, second: Band) -> Callable[[Masked, Masked], Masked]:
    """The pixel function; the negativity tests are skipped for bands whose type cannot be negative."""
    check_x, check_y = _may_be_negative(first), _may_be_negative(second)

    def fn(x: Masked, y: Masked) -> Masked:
        mask = _nd_mask(x, y, check_x, check_y)
        diff = np.empty(x.shape)
        _nd_into(x.data, y.data, diff, diff, zero_free=False)
        return _out(diff, mask)

    return fn


def _may_be_negative(band: Band) -> bool:
    return not (band.pixel_type.is_int and band.pixel_type.min >= 0)


def _nd_mask(x: Masked, y: Masked, check_x: bool, check_y: bool) -> np.ndarray:
    """Pixels masked in either input or negative in one that may be negative (documented)."""
    a, b = x.data, y.data
    mask = _mask(x) | _mask(y)
    if check_x and check_y:
        mask |= np.minimum(a, b) < 0  # one comparison for both
    elif check_x or check_y:
        mask |= (a if check_x else b) < 0
    return mask


def _nd_into(a: np.ndarray, b: np.ndarray, out: np.ndarray, diff: np.ndarray, zero_free: bool) -> None:
    """(a - b) / (a + b) of float64 ``a`` and ``b`` into ``out`` (any float type and strides: a band, or rows of an
    answer's field), computed in float64 and cast once; 0 where a + b is 0 (a - b is 0 there too unless an input is
    negative, and such a pixel is masked). ``diff``: float64 scratch of ``a``'s shape, or ``out`` itself.
    ``zero_free``: the caller knows a + b has no 0 (then no test; the plain divide is twice as fast as one with
    ``where=``)."""
    total = a + b
    np.subtract(a, b, out=diff)
    if zero_free:
        np.divide(diff, total, out=out)
        return
    zero = total == 0
    if not zero.any():
        np.divide(diff, total, out=out)
        return
    np.divide(diff, total, out=diff, where=~zero)
    if out is not diff:
        np.copyto(out, diff)


def _nd_rows_into(first: Band, second: Band) -> RowsInto:
    """``Band.rows_into`` of a normalised difference: the same arithmetic (:func:`_nd_into`), a block of rows at a
    time straight into the answer's field. Whether any pixel is masked or negative, or any a + b can be 0, is
    decided once per input band and grid (:func:`_lowest_and_masked`), so the usual case (medians of reflectance:
    all valid, all positive) is three ufunc calls a block and no mask at all."""
    check_x, check_y = _may_be_negative(first), _may_be_negative(second)

    def prepare(grid: PixelGrid, ctx: Any) -> RowWriter:
        x, y = first.compute(grid, ctx), second.compute(grid, ctx)
        (lo_a, masked_a), (lo_b, masked_b) = (
            _lowest_and_masked(first, x, grid, ctx),
            _lowest_and_masked(second, y, grid, ctx),
        )
        negative = (check_x and lo_a < 0) or (check_y and lo_b < 0)
        mask = _nd_mask(x, y, check_x, check_y) if negative or masked_a or masked_b else None
        zero_free = min(lo_a, lo_b) >= 0 and max(lo_a, lo_b) > 0  # False when either is NaN (all NaN)
        a, b = x.data, y.data

        def write(rows: slice, out: np.ndarray) -> None:
            _nd_into(a[rows], b[rows], out, np.empty(out.shape), zero_free)
            if mask is not None:
                np.copyto(out, 0, where=mask[rows])

        return write

    return prepare


def _lowest_and_masked(band: Band, x: Masked, grid: PixelGrid, ctx: Any) -> tuple[float, bool]:
    """The lowest value of ``x``'s data (NaN ignored, masked pixels included) and whether any pixel of it is
    masked; kept in the request's pixel cache beside the band's pixels (66 differences of 12 bands ask 132 times)."""
    cache = getattr(ctx, "pixels", None)
    key = (band.key, grid, "lowest, masked")
    got = cache.get(key) if cache is not None else None
    if got is None:
        got = float(np.fmin.reduce(x.data, axis=None)), bool(_mask(x).any())
        if cache is not None:
            cache[key] = got
    return got


@algorithm("Image.normalizedDifference")
def normalized_difference(input, bandNames):  # noqa: A002, N803
    """(first - second) / (first + second) in a band named 'nd', float; a negative pixel in either
    input masks the output pixel; the input's properties are not kept (all documented)."""
    img = as_image("Image.normalizedDifference", input)
    if bandNames is not None:
        if len(bandNames) != 2:
            raise EngineError(f"Image.normalizedDifference: Need exactly 2 bands, but got {len(bandNames)}.")
        bands = select_bands("Image.normalizedDifference", img, bandNames)
        if len(bands) != 2:
            raise EngineError(f"Image.normalizedDifference: Need exactly 2 bands, but got {len(bands)}.")
    else:
        if len(img.bands) < 2:
            raise EngineError(f"Image.normalizedDifference: Need 2 bands, but found {len(img.bands)}.")
        bands = list(img.bands[:2])
    band = _new_band("nd", bands, _normalized_difference(*bands), PixelType("float"), strict=True)
    band.rows_into = _nd_rows_into(*bands)
    return Image([band])


@algorithm("Image.id")
def image_id(element):
    """The element's id (``system:index``), or null."""
    return getattr(element, "id", None)


# -- synthetic images ----------------------------------------------------------------------------


def _lonlat(grid: PixelGrid) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = grid.pixel_centers()
    if grid.crs == "EPSG:4326":
        return xs, ys
    lon, lat = transformer(grid.crs, "EPSG:4326").transform(xs, ys)
    return np.asarray(lon), np.asarray(lat)


def _synthetic(name: str, compute: Callable[[PixelGrid], np.ndarray], proj: Projection = _DEGREE) -> Band:
    def band_compute(grid: PixelGrid, ctx: Any) -> Masked:
        values = np.asarray(compute(grid), dtype=np.float64)
        return _out(values, np.zeros(grid.shape, dtype=bool))

    return Band(name, PixelType("double"), proj, None, band_compute)


@algorithm("Image.pixelLonLat")
def pixel_lon_lat():
    """Bands 'longitude' and 'latitude': the WGS84 coordinates of each pixel centre, in degrees."""
    return Image(
        [
            _synthetic("longitude", lambda g: _lonlat(g)[0]),
            _synthetic("latitude", lambda g: _lonlat(g)[1]),
        ]
    )


@algorithm("Image.pixelCoordinates")
def pixel_coordinates(projection):
    """Bands 'x' and 'y': each pixel centre's coordinates in ``projection`` (its CRS, then the
    inverse of its transform); the image's default projection is ``projection``."""
    proj = projection if isinstance(projection, Projection) else Projection.coerce(projection)
    ia, ib, id_, ie, xoff, yoff = proj.inverse()

    def coords(grid: PixelGrid) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = grid.pixel_centers()
        if grid.crs != proj.crs:
            xs, ys = transformer(grid.crs, proj.crs).transform(xs, ys)
            xs, ys = np.asarray(xs), np.asarray(ys)
        return ia * xs + ib * ys + xoff, id_ * xs + ie * ys + yoff

    return Image([_synthetic("x", lambda g: coords(g)[0], proj), _synthetic("y", lambda g: coords(g)[1], proj)])


_WGS84_A = 6378137.0
_WGS84_F = 1 / 298.257223563
_WGS84_B = _WGS84_A * (1 - _WGS84_F)
_WGS84_E = math.sqrt(_WGS84_F * (2 - _WGS84_F))


def _authalic_q(lat_deg: np.ndarray) -> np.ndarray:
    """The area between the equator and latitude ``lat`` per radian of longitude on the WGS84 ellipsoid."""
    s = np.sin(np.radians(lat_deg))
    e = _WGS84_E
    return 0.5 * _WGS84_B**2 * (s / (1 - e * e * s * s) + np.arctanh(e * s) / e)


def _pixel_area(grid: PixelGrid) -> np.ndarray:
    """Each pixel's area in m² on the WGS84 ellipsoid.

    On a longitude/latitude grid the cell area is exact; on a projected grid
    it is the pixel's planar area divided by the projection's areal scale
    factor at the pixel centre (exact as pixels shrink; the error grows with
    the square of the pixel's size over the Earth's radius).
    """
    a, b, c, d, e, f = grid.transform
    crs = crs_object(grid.crs)
    if crs.is_geographic and grid.is_rectilinear:
        cols = np.arange(grid.width)
        rows = np.arange(grid.height)
        lat0 = f + e * rows
        lat1 = lat0 + e
        band = np.abs(_authalic_q(np.clip(lat1, -90, 90)) - _authalic_q(np.clip(lat0, -90, 90)))
        dlon = np.radians(abs(a)) * np.ones(cols.shape)
        return band[:, None] * dlon[None, :]
    if crs.is_geographic:
        raise EngineError("Image.pixelArea: rotated geographic grids are not supported by the local engine.")
    lon, lat = _lonlat(grid)
    factors = pyproj.Proj(crs).get_factors(lon, lat, errcheck=False)
    planar = abs(a * e - b * d)
    return planar / np.asarray(factors.areal_scale)


@algorithm("Image.pixelArea")
def pixel_area():
    """One band 'area': each pixel's area in square metres; default projection WGS84 at 1 degree (documented)."""
    return Image([_synthetic("area", _pixel_area)])


# -- expressions --------------------------------------------------------------------------------

_IMAGE_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<str>'[^']*'|\"[^\"]*\")"
    r"|(?P<op>\*\*|&&|\|\||==|!=|<=|>=|[-+*/%<>!?:(),.\[\]=^]))"
)

_IMAGE_LEVELS: tuple[tuple[str, ...], ...] = (
    ("||",),
    ("^",),
    ("&&",),
    ("==", "!="),
    ("<", "<=", ">", ">="),
    ("+", "-"),
    ("*", "/", "%"),
)

# Functions of the expression language (a subset of JavaScript's Math), by their argument count.
_EXPRESSION_FUNCTIONS = {
    **{n: 1 for n in ("abs", "sqrt", "cbrt", "exp", "log", "log10", "sin", "cos", "tan", "asin", "acos", "atan")},
    **{n: 1 for n in ("sinh", "cosh", "tanh", "floor", "ceil", "round", "signum")},
    **{n: 2 for n in ("min", "max", "pow", "atan2", "hypot")},
}


def _logical_xor(image1: Any, image2: Any) -> Image:
    return binary("Image.expression", image1, image2, lambda a, b: ((a != 0) ^ (b != 0)).astype(np.float64), _bool_rule)


def _as_operand(value: Any) -> Image:
    """Numbers in an expression are constant images, as the client makes them."""
    if isinstance(value, Image):
        return value
    return Image([constant_band(value)])


class _ImageExpression(_ExpressionParser):
    """Earth Engine's image expression language over the Number expression grammar.

    Values are images (numbers become constant images when an operator meets
    them). Additions to the number grammar: ``b(...)`` selects bands of the
    default image by index or name, ``img.band`` and ``img[...]`` bands of a
    variable, ``^`` is a logical xor, ``c ? a : b`` is ``b.where(c, a)`` and
    ``name = expr`` names a single-band result.
    """

    def __init__(self, text: str, images: Mapping[str, Image], default: str):
        self.default = default
        super().__init__(text, images, {})

    TOKEN_RE = _IMAGE_TOKEN_RE
    ALGORITHM = "Image.expression"

    @staticmethod
    def _token_value(kind: str, value: str) -> str:
        return value[1:-1] if kind == "str" else value

    def parse(self) -> Image:
        target = None
        if len(self.tokens) > 2 and self.tokens[0][0] == "name" and self.tokens[1] == ("op", "="):
            target = self.tokens[0][1]
            self.pos = 2
        value = self._ternary()
        if self._peek() is not None:
            raise EngineError(f"Image.expression: Unexpected '{self._peek()[1]}' in '{self.text}'.")
        image = _as_operand(value)
        if target is not None:
            if len(image.bands) != 1:
                raise EngineError(
                    f"Image.expression: Can't assign the name '{target}' to a result with {len(image.bands)} bands."
                )
            image = image.with_bands([image.bands[0].replace(name=target)])
        return image

    def _apply(self, short: str, *args: Any) -> Image:
        operands = [_as_operand(a) for a in args]
        if short == "xor":
            return _logical_xor(*operands)
        if short == "not":
            return unary("Image.expression", operands[0], *_UNARY["not"])
        op, rule = _BINARY[short]
        return binary("Image.expression", operands[0], operands[1], lambda a, b: np.asarray(op(a, b), np.float64), rule)

    def _ternary(self) -> Any:
        cond = self._binary(0)
        if self._accept("?"):
            when_true = self._ternary()
            self._take(":")
            when_false = self._ternary()
            return where(_as_operand(when_false), _as_operand(cond), _as_operand(when_true))
        return cond

    def _binary(self, level: int) -> Any:
        if level == len(_IMAGE_LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while (op := self._accept(*_IMAGE_LEVELS[level])) is not None:
            right = self._binary(level + 1)
            left = self._apply("xor" if op == "^" else _BINARY_ALGORITHMS[op], left, right)
        return left

    def _primary(self) -> Any:
        tok = self._peek()
        if tok is not None and tok[0] == "str":
            raise EngineError(f"Image.expression: Unexpected string '{tok[1]}' in '{self.text}'.")
        return super()._primary()

    def _selectors(self, closing: str) -> list[Any]:
        """Band selectors up to ``closing``: numbers (indices) or quoted names."""
        out: list[Any] = []
        if self._accept(closing) is not None:
            return out
        while True:
            kind, value = self._take()
            if kind == "num":
                out.append(int(float(value)))
            elif kind == "str":
                out.append(value)
            else:
                raise EngineError(f"Image.expression: Band selectors must be indices or quoted names in '{self.text}'.")
            if self._accept(","):
                continue
            self._take(closing)
            return out

    def _select(self, image: Image, selectors: list[Any]) -> Image:
        if not selectors:
            return image
        return Image(select_bands("Image.expression", image, selectors))

    def _call(self, fname: str) -> Any:
        if fname == "b":
            return self._select(self.variables[self.default], self._selectors(")"))
        arity = _EXPRESSION_FUNCTIONS.get(fname)
        if arity is None:
            raise EngineError(f"Image.expression: Unknown function '{fname}' in '{self.text}'.")
        args: list[Any] = []
        if self._accept(")") is None:
            args.append(self._ternary())
            while self._accept(","):
                args.append(self._ternary())
            self._take(")")
        if len(args) != arity:
            raise EngineError(f"Image.expression: {fname}() takes {arity} argument(s) but was given {len(args)}.")
        operands = [_as_operand(a) for a in args]
        if arity == 1:
            return unary(f"Image.{fname}", operands[0], *_UNARY[fname])
        op, rule = _BINARY[fname]
        return binary(f"Image.{fname}", operands[0], operands[1], lambda a, b: np.asarray(op(a, b), np.float64), rule)

    def _reference(self, first_name: str) -> Any:
        if first_name == "Math" and self._accept("."):
            kind, value = self._take()
            constant = {"PI": math.pi, "E": math.e}.get(value)
            if constant is None:
                raise EngineError(f"Image.expression: Unknown constant 'Math.{value}' in '{self.text}'.")
            return constant
        if first_name not in self.variables:
            raise EngineError(f"Image.expression: Variable '{first_name}' is not defined in '{self.text}'.")
        image = self.variables[first_name]
        if self._accept("."):
            kind, value = self._take()
            if kind != "name":
                raise EngineError(f"Image.expression: Expected a band name after '.' in '{self.text}'.")
            if value not in image.band_names:
                raise EngineError(
                    f"Image.expression: Image '{first_name}' has no band named '{value}' in '{self.text}'."
                )
            return Image([image.band(value)])
        if self._accept("["):
            return self._select(image, self._selectors("]"))
        return image


@algorithm("Image.parseExpression")
def parse_expression(expression, argName, vars, mapFreeVarsToDefaultImageBands):  # noqa: A002, N803
    """An algorithm that evaluates ``expression`` on the images passed to it by name.

    The expression is checked (tokenised) here; it is evaluated when the
    returned algorithm is called with the images (``ee.Image.expression``
    calls it with the default image under ``argName`` and each variable).
    """
    if not isinstance(expression, str):
        raise EngineError("Image.parseExpression: 'expression' must be a string.")
    _ImageExpression._tokenize(expression)
    names = list(vars or [])
    if argName not in names:
        names.insert(0, argName)
    free_to_bands = bool(mapFreeVarsToDefaultImageBands)

    def evaluate(**images: Any) -> Image:
        for key in images:
            if key not in names:
                raise EngineError(f"Image.expression: Unexpected argument '{key}'.")
        resolved: dict[str, Image] = {}
        for key in names:
            if images.get(key) is None:
                raise EngineError(f"Image.expression: Variable '{key}' has no value.")
            resolved[key] = (
                _as_operand(images[key])
                if isinstance(images[key], int | float)
                else as_image("Image.expression", images[key])
            )
        if free_to_bands:
            default = resolved[argName]
            for band in default.bands:
                resolved.setdefault(band.name, Image([band]))
        return _ImageExpression(expression, resolved, argName).parse()

    evaluate.ee_type = "Algorithm"  # type: ignore[attr-defined]
    return evaluate

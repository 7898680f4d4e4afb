"""Earth Engine number algorithms (``Number.*``).

Numbers are Python ints and floats. Integer inputs stay integers where Earth
Engine keeps them integral (add, subtract, multiply, min, max, casts), and
operations that Earth Engine computes in double precision (divide, sqrt, trig,
...) return floats. Earth Engine's service is Java: domain errors give NaN or
an infinity instead of failing (``sqrt(-1)`` is NaN, ``log(0)`` is -Infinity),
so the functions here return those values where Python's ``math`` would raise.
The special functions (gamma family, erf family, lanczos) follow the
definitions of Apache Commons Math, which Earth Engine documents through its
outputs (``ee.Number(0).lanczos()`` is 32.946318679).
"""

from __future__ import annotations

import functools
import math
import operator
import re
import struct
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import Column, algorithm, implemented, per_element, vectorised

Num = int | float

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


# -- argument handling ---------------------------------------------------------


def _num(name: str, arg: str, value: Any) -> Num:
    """``value`` as a number; booleans count as 0/1 as in Earth Engine."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if value is None:
        raise EngineError(f"{name}: Parameter '{arg}' is required.")
    raise EngineError(f"{name}, argument '{arg}': Invalid type.\nExpected type: Number.\nActual value: {value!r}")


def _as_float(x: Num) -> float:
    return float(x)


def _both_int(a: Num, b: Num) -> bool:
    return isinstance(a, int) and isinstance(b, int)


def _wrap64(x: int) -> int:
    """Two's complement wrap of an integer into a signed 64-bit long."""
    x &= 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x >= 1 << 63 else x


def _to_long(x: Num) -> int:
    """Java's ``(long)`` conversion: truncation toward zero, saturating, NaN -> 0."""
    if isinstance(x, int):
        return _wrap64(x)
    if math.isnan(x):
        return 0
    if x >= _INT64_MAX:
        return _INT64_MAX
    if x <= _INT64_MIN:
        return _INT64_MIN
    return int(x)


# -- Java-style floating point helpers ----------------------------------------


def _java_pow(a: Num, b: Num) -> float:
    """``Math.pow``: NaN for negative bases with fractional exponents, infinities on overflow."""
    x, y = float(a), float(b)
    if x == 0.0 and y < 0:
        if y.is_integer() and int(y) % 2 == 1 and math.copysign(1.0, x) < 0:
            return -math.inf
        return math.inf
    try:
        return math.pow(x, y)
    except OverflowError:
        if x < 0 and y.is_integer() and int(y) % 2 == 1:
            return -math.inf
        return math.inf
    except ValueError:
        return math.nan


def _unary(fn: Callable[[float], float], on_overflow: Callable[[float], float] | None = None) -> Callable[[Num], float]:
    """Wrap a ``math`` function to answer NaN for domain errors like Java does."""

    def apply(x: Num) -> float:
        v = float(x)
        if math.isnan(v):
            return math.nan
        try:
            return float(fn(v))
        except OverflowError:
            if on_overflow is None:
                return math.inf
            return on_overflow(v)
        except ValueError:
            return math.nan

    return apply


def _log(x: Num) -> float:
    v = float(x)
    if v == 0:
        return -math.inf
    if v < 0 or math.isnan(v):
        return math.nan
    return math.log(v)


def _log10(x: Num) -> float:
    v = float(x)
    if v == 0:
        return -math.inf
    if v < 0 or math.isnan(v):
        return math.nan
    return math.log10(v)


def _sqrt(x: Num) -> float:
    v = float(x)
    if v < 0 or math.isnan(v):
        return math.nan
    return math.sqrt(v)


# -- arithmetic ----------------------------------------------------------------


@algorithm("Number.add")
def add(left, right):
    a, b = _num("Number.add", "left", left), _num("Number.add", "right", right)
    return a + b


@algorithm("Number.subtract")
def subtract(left, right):
    a, b = _num("Number.subtract", "left", left), _num("Number.subtract", "right", right)
    return a - b


@algorithm("Number.multiply")
def multiply(left, right):
    a, b = _num("Number.multiply", "left", left), _num("Number.multiply", "right", right)
    if _both_int(a, b):
        return a * b
    try:
        return float(a) * float(b)
    except OverflowError:
        return math.copysign(math.inf, a) * math.copysign(1, b)


@algorithm("Number.divide")
def divide(left, right):
    """Floating point division; division by zero answers 0 (documented)."""
    a, b = _num("Number.divide", "left", left), _num("Number.divide", "right", right)
    if b == 0:
        return 0
    if _both_int(a, b):
        return a / b
    return float(a) / float(b)


@algorithm("Number.mod")
def mod(left, right):
    """Java's ``%``: the remainder takes the sign of the dividend (``-12 mod 5`` is -2)."""
    a, b = _num("Number.mod", "left", left), _num("Number.mod", "right", right)
    if b == 0:
        raise EngineError("Number.mod: the remainder of a division by zero is not supported by the local engine.")
    if _both_int(a, b):
        r = abs(a) % abs(b)
        return r if a >= 0 else -r
    if math.isinf(float(a)) or math.isnan(float(a)) or math.isnan(float(b)):
        return math.nan
    return math.fmod(float(a), float(b))


@algorithm("Number.pow")
def pow_(left, right):
    a, b = _num("Number.pow", "left", left), _num("Number.pow", "right", right)
    if _both_int(a, b) and b >= 0:
        if a in (0, 1, -1) or b <= 64:
            result = a**b
            if _INT64_MIN <= result <= _INT64_MAX:
                return result
    return _java_pow(a, b)


@algorithm("Number.max")
def max_(left, right):
    a, b = _num("Number.max", "left", left), _num("Number.max", "right", right)
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return math.nan
    return a if a >= b else b


@algorithm("Number.min")
def min_(left, right):
    a, b = _num("Number.min", "left", left), _num("Number.min", "right", right)
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return math.nan
    return a if a <= b else b


@algorithm("Number.first")
def first(left, right):
    return _num("Number.first", "left", left)


def _first_non_zero(name: str, left: Any, right: Any) -> Num:
    a, b = _num(name, "left", left), _num(name, "right", right)
    return a if a != 0 else b


@algorithm("Number.firstNonZero")
def first_non_zero(left, right):
    return _first_non_zero("Number.firstNonZero", left, right)


@algorithm("Number.first_nonzero")
def first_nonzero(left, right):
    return _first_non_zero("Number.first_nonzero", left, right)


@algorithm("Number.atan2")
def atan2(left, right):
    """``left`` is x and ``right`` is y (documented: ``ee.Number(-1).atan2(0)`` is pi)."""
    x, y = _num("Number.atan2", "left", left), _num("Number.atan2", "right", right)
    return math.atan2(float(y), float(x))


@algorithm("Number.hypot")
def hypot(left, right):
    a, b = _num("Number.hypot", "left", left), _num("Number.hypot", "right", right)
    return math.hypot(float(a), float(b))


# -- comparisons and logic (0/1 integers) --------------------------------------


def _compare(name: str, test: Callable[[Num, Num], bool]) -> Callable[[Any, Any], int]:
    def compare(left, right):
        return int(test(_num(name, "left", left), _num(name, "right", right)))

    compare.__name__ = name.split(".")[1]
    compare.__doc__ = f"{name}: 1 if the comparison holds, else 0."
    return compare


algorithm("Number.lt")(_compare("Number.lt", lambda a, b: a < b))
algorithm("Number.lte")(_compare("Number.lte", lambda a, b: a <= b))
algorithm("Number.gt")(_compare("Number.gt", lambda a, b: a > b))
algorithm("Number.gte")(_compare("Number.gte", lambda a, b: a >= b))
algorithm("Number.eq")(_compare("Number.eq", lambda a, b: a == b))
algorithm("Number.neq")(_compare("Number.neq", lambda a, b: a != b))
algorithm("Number.and")(_compare("Number.and", lambda a, b: a != 0 and b != 0))
algorithm("Number.or")(_compare("Number.or", lambda a, b: a != 0 or b != 0))


@algorithm("Number.not")
def not_(input):
    return int(_num("Number.not", "input", input) == 0)


# -- bitwise operations (64-bit two's complement) ------------------------------


def _bitwise(name: str, op: Callable[[int, int], int]) -> Callable[[Any, Any], int]:
    def bitwise(left, right):
        a = _to_long(_num(name, "left", left))
        b = _to_long(_num(name, "right", right))
        return _wrap64(op(a, b))

    bitwise.__name__ = name.split(".")[1]
    bitwise.__doc__ = f"{name} on the 64-bit two's complement integers of the inputs."
    return bitwise


for _alias, _snake, _op in (
    ("bitwiseAnd", "bitwise_and", lambda a, b: a & b),
    ("bitwiseOr", "bitwise_or", lambda a, b: a | b),
    ("bitwiseXor", "bitwise_xor", lambda a, b: a ^ b),
    ("leftShift", "left_shift", lambda a, b: a << (b & 63)),
    ("rightShift", "right_shift", lambda a, b: a >> (b & 63)),
):
    algorithm(f"Number.{_alias}")(_bitwise(f"Number.{_alias}", _op))
    algorithm(f"Number.{_snake}")(_bitwise(f"Number.{_snake}", _op))


def _bitwise_not(name: str) -> Callable[[Any], int]:
    def bitwise_not(input):
        """In the smallest signed type holding the input, NOT x is -x - 1 (``25`` gives -26)."""
        return ~_to_long(_num(name, "input", input))

    return bitwise_not


algorithm("Number.bitwiseNot")(_bitwise_not("Number.bitwiseNot"))
algorithm("Number.bitwise_not")(_bitwise_not("Number.bitwise_not"))


@algorithm("Number.bitCount")
def bit_count(input):
    """One-bits in the 64-bit two's complement representation."""
    return (_to_long(_num("Number.bitCount", "input", input)) & 0xFFFFFFFFFFFFFFFF).bit_count()


# -- unary math ----------------------------------------------------------------


def _sinh_overflow(v: float) -> float:
    return math.copysign(math.inf, v)


_UNARY: dict[str, Callable[[Num], float]] = {
    "sin": _unary(math.sin),
    "cos": _unary(math.cos),
    "tan": _unary(math.tan),
    "asin": _unary(math.asin),
    "acos": _unary(math.acos),
    "atan": _unary(math.atan),
    "sinh": _unary(math.sinh, _sinh_overflow),
    "cosh": _unary(math.cosh),
    "tanh": _unary(math.tanh),
    "sqrt": _sqrt,
    "cbrt": _unary(math.cbrt),
    "exp": _unary(math.exp),
    "log": _log,
    "log10": _log10,
    "erf": _unary(math.erf),
    "erfc": _unary(math.erfc),
}


def _register_unary(short: str, fn: Callable[[Num], float]) -> None:
    name = f"Number.{short}"

    def unary(input):
        return fn(_num(name, "input", input))

    unary.__name__ = short
    unary.__doc__ = f"{name} in double precision, NaN outside the domain."
    algorithm(name)(unary)


for _short, _fn in _UNARY.items():
    _register_unary(_short, _fn)


@algorithm("Number.abs")
def abs_(input):
    return abs(_num("Number.abs", "input", input))


@algorithm("Number.floor")
def floor(input):
    x = _num("Number.floor", "input", input)
    if isinstance(x, int) or not math.isfinite(x):
        return x
    return float(math.floor(x))


@algorithm("Number.ceil")
def ceil(input):
    x = _num("Number.ceil", "input", input)
    if isinstance(x, int) or not math.isfinite(x):
        return x
    return float(math.ceil(x))


@algorithm("Number.round")
def round_(input):
    """Nearest integer, halves away from zero (``10.5`` gives 11, ``-10.5`` gives -11)."""
    x = _num("Number.round", "input", input)
    if isinstance(x, int) or not math.isfinite(x):
        return x
    return math.copysign(math.floor(abs(x) + 0.5), x) if abs(x) < 2**52 else x


@algorithm("Number.signum")
def signum(input):
    x = _num("Number.signum", "input", input)
    if isinstance(x, int):
        return (x > 0) - (x < 0)
    if math.isnan(x) or x == 0:
        return x
    return math.copysign(1.0, x)


# -- special functions (Apache Commons Math definitions) -----------------------

_EULER_GAMMA = 0.577215664901532860606512090082
_LANCZOS = (
    0.99999999999999709182,
    57.156235665862923517,
    -59.597960355475491248,
    14.136097974741747174,
    -0.49191381609762019978,
    0.33994649984811888699e-4,
    0.46523628927048575665e-4,
    -0.98374475304879564677e-4,
    0.15808870322491248884e-3,
    -0.21026444172410488319e-3,
    0.21743961811521264320e-3,
    -0.16431810653676389022e-3,
    0.84418223983852743293e-4,
    -0.26190838401581408670e-4,
    0.36899182659531622704e-5,
)


def _java_div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def lanczos_sum(x: float) -> float:
    """The Lanczos sum A_g(x) of Commons Math, g = 607/128."""
    total = 0.0
    for i in range(len(_LANCZOS) - 1, 0, -1):
        total += _java_div(_LANCZOS[i], x + i)
    return total + _LANCZOS[0]


@algorithm("Number.lanczos")
def lanczos(input):
    return lanczos_sum(float(_num("Number.lanczos", "input", input)))


@algorithm("Number.gamma")
def gamma(input):
    x = float(_num("Number.gamma", "input", input))
    if math.isnan(x) or (x <= 0 and x.is_integer()):
        return math.nan
    if x == math.inf:
        return math.inf
    try:
        return math.gamma(x)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


_DIGAMMA_SMALL = 1e-5
_DIGAMMA_LARGE = 49.0
_RECURSION_LIMIT = 1e6


def _digamma(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return x
    if x < -_RECURSION_LIMIT:
        raise EngineError("Number.digamma: input below -1e6 is not supported by the local engine.")
    shift = 0.0
    while not (0 < x <= _DIGAMMA_SMALL or x >= _DIGAMMA_LARGE):
        shift -= _java_div(1.0, x)
        x += 1.0
    if x >= _DIGAMMA_LARGE:
        inv = 1 / (x * x)
        value = math.log(x) - 0.5 / x - inv * ((1.0 / 12) + inv * (1.0 / 120 - inv / 252))
    else:
        value = -_EULER_GAMMA - 1 / x
    return value + shift


def _trigamma(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return x
    if x < -_RECURSION_LIMIT:
        raise EngineError("Number.trigamma: input below -1e6 is not supported by the local engine.")
    shift = 0.0
    while not (0 < x <= _DIGAMMA_SMALL or x >= _DIGAMMA_LARGE):
        shift += _java_div(1.0, x * x)
        x += 1.0
    if x >= _DIGAMMA_LARGE:
        inv = 1 / (x * x)
        value = 1 / x + inv / 2 + inv / x * (1.0 / 6 - inv * (1.0 / 30 + inv / 42))
    else:
        value = 1 / (x * x)
    return value + shift


@algorithm("Number.digamma")
def digamma(input):
    return _digamma(float(_num("Number.digamma", "input", input)))


@algorithm("Number.trigamma")
def trigamma(input):
    return _trigamma(float(_num("Number.trigamma", "input", input)))


def _regularized_gamma_q_cf(a: float, x: float, epsilon: float = 1e-14, max_iter: int = 100000) -> float:
    """Q(a, x) by the modified Lentz continued fraction (Commons Math)."""
    small = 1e-50
    h_prev = 1.0 - a + x
    if abs(h_prev) < small:
        h_prev = small
    d_prev, c_prev, h_n = 0.0, h_prev, h_prev
    for n in range(1, max_iter):
        an = 2.0 * n + 1.0 - a + x
        bn = n * (a - n)
        d_n = an + bn * d_prev
        if abs(d_n) < small:
            d_n = small
        c_n = an + bn / c_prev
        if abs(c_n) < small:
            c_n = small
        d_n = 1 / d_n
        delta = c_n * d_n
        h_n = h_prev * delta
        if abs(delta - 1.0) < epsilon:
            break
        d_prev, c_prev, h_prev = d_n, c_n, h_n
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) / h_n


def regularized_gamma_p(a: float, x: float, epsilon: float = 1e-14, max_iter: int = 100000) -> float:
    """P(a, x), the regularized lower incomplete gamma function."""
    if math.isnan(a) or math.isnan(x) or a <= 0 or x < 0:
        return math.nan
    if x == 0:
        return 0.0
    if math.isinf(x):
        return 1.0
    if x >= a + 1:
        return 1.0 - _regularized_gamma_q_cf(a, x, epsilon, max_iter)
    n, an = 0, 1.0 / a
    total = an
    while abs(an / total) > epsilon and n < max_iter and total < math.inf:
        n += 1
        an *= x / (a + n)
        total += an
    if math.isinf(total):
        return 1.0
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * total


@algorithm("Number.gammainc")
def gammainc(left, right):
    """P(a, x) with x = ``left`` and a = ``right`` (``ee.Number(1).gammainc(1)`` is 1 - 1/e)."""
    x = float(_num("Number.gammainc", "left", left))
    a = float(_num("Number.gammainc", "right", right))
    return regularized_gamma_p(a, x)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _erfc_inv_positive(q: float) -> float:
    """y with erfc(y) = q for 0 < q <= 1 (y >= 0), Newton-refined."""
    # Initial guess from the asymptotic form erfc(y) ~ exp(-y^2) / (y sqrt(pi)).
    t = math.sqrt(-math.log(q)) if q < 0.5 else 0.5 * math.sqrt(math.pi) * (1.0 - q)
    y = t
    for _ in range(100):
        err = math.erfc(y) - q
        step = err / (_TWO_OVER_SQRT_PI * math.exp(-y * y))
        y += step
        if abs(step) <= 1e-16 * max(1.0, abs(y)):
            break
    return y


def erf_inv(x: float) -> float:
    """The inverse error function, NaN outside [-1, 1]."""
    if math.isnan(x) or abs(x) > 1:
        return math.nan
    if abs(x) == 1:
        return math.copysign(math.inf, x)
    if x == 0:
        return x
    if abs(x) >= 0.5:
        return math.copysign(_erfc_inv_positive(1.0 - abs(x)), x)
    y = math.sqrt(math.pi) / 2 * x
    for _ in range(100):
        step = (math.erf(y) - x) / (_TWO_OVER_SQRT_PI * math.exp(-y * y))
        y -= step
        if abs(step) <= 1e-17 * max(1.0, abs(y)):
            break
    return y


def erfc_inv(x: float) -> float:
    """The inverse complementary error function, NaN outside [0, 2]."""
    if math.isnan(x) or x < 0 or x > 2:
        return math.nan
    if x == 0:
        return math.inf
    if x == 2:
        return -math.inf
    if x <= 1:
        return _erfc_inv_positive(x) if x < 0.5 else erf_inv(1.0 - x)
    return -erfc_inv(2.0 - x)


@algorithm("Number.erfInv")
def erf_inv_(input):
    return erf_inv(float(_num("Number.erfInv", "input", input)))


@algorithm("Number.erfcInv")
def erfc_inv_(input):
    return erfc_inv(float(_num("Number.erfcInv", "input", input)))


# -- casts ---------------------------------------------------------------------

_INTEGER_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (_INT64_MIN, _INT64_MAX),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
}

_CAST_NAMES = {
    "int8": ("int8", "toInt8"),
    "int16": ("int16", "toInt16", "short", "toShort"),
    "int32": ("int32", "toInt32", "int", "toInt"),
    "int64": ("int64", "toInt64", "long", "toLong"),
    "uint8": ("uint8", "toUint8", "byte", "toByte"),
    "uint16": ("uint16", "toUint16"),
    "uint32": ("uint32", "toUint32"),
}


def cast_integer(x: Num, kind: str) -> int:
    """Truncate toward zero and clamp into the range of ``kind`` (documented for uint8/int8); NaN -> 0."""
    lo, hi = _INTEGER_RANGES[kind]
    if isinstance(x, float):
        if math.isnan(x):
            return 0
        if x >= hi:
            return hi
        if x <= lo:
            return lo
        x = int(x)
    return min(max(x, lo), hi)


def _register_cast(name: str, kind: str) -> None:
    def cast(input):
        return cast_integer(_num(name, "input", input), kind)

    cast.__name__ = name.split(".")[1]
    cast.__doc__ = f"{name}: cast to {kind}, clamping out-of-range values to the nearest bound."
    algorithm(name)(cast)


for _kind, _names in _CAST_NAMES.items():
    for _short in _names:
        _register_cast(f"Number.{_short}", _kind)


def to_float32(x: Num) -> float:
    """Round to the nearest 32-bit float, overflowing to an infinity as Java does."""
    v = float(x)
    if math.isnan(v) or math.isinf(v):
        return v
    try:
        return struct.unpack("f", struct.pack("f", v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


for _short in ("float", "toFloat"):
    algorithm(f"Number.{_short}")(
        (lambda name: lambda input: to_float32(_num(name, "input", input)))(f"Number.{_short}")
    )
for _short in ("double", "toDouble"):
    algorithm(f"Number.{_short}")((lambda name: lambda input: float(_num(name, "input", input)))(f"Number.{_short}"))


# -- scaling -------------------------------------------------------------------


@algorithm("Number.clamp")
def clamp(number, min, max):  # noqa: A002 - Earth Engine's argument names
    x = _num("Number.clamp", "number", number)
    lo, hi = _num("Number.clamp", "min", min), _num("Number.clamp", "max", max)
    # Math.min(Math.max(x, min), max): with min > max the result is max.
    low_bounded = lo if x < lo else x
    return hi if low_bounded > hi else low_bounded


@algorithm("Number.unitScale")
def unit_scale(number, min, max):  # noqa: A002 - Earth Engine's argument names
    """(number - min) / (max - min), unclamped; 0 when min == max (documented)."""
    x = _num("Number.unitScale", "number", number)
    lo, hi = _num("Number.unitScale", "min", min), _num("Number.unitScale", "max", max)
    if lo == hi:
        return 0
    return (float(x) - float(lo)) / (float(hi) - float(lo))


# -- strings: format and parse -------------------------------------------------


def java_double_to_string(x: float) -> str:
    """Java's ``Double.toString``: '5.0', '0.001', '1.0E7', '1.0E-4', 'NaN', 'Infinity'."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    digits, exponent = _shortest_digits(abs(x))
    # value = 0.d1d2d3... * 10**exponent
    if 1e-3 <= abs(x) < 1e7:
        if exponent <= 0:
            return f"{sign}0.{'0' * -exponent}{digits}"
        whole = digits[:exponent].ljust(exponent, "0")
        frac = digits[exponent:] or "0"
        return f"{sign}{whole}.{frac}"
    mantissa = digits[0] + "." + (digits[1:] or "0")
    return f"{sign}{mantissa}E{exponent - 1}"


def _shortest_digits(x: float) -> tuple[str, int]:
    """The shortest round-tripping decimal digits of ``x`` > 0 and e with x = 0.digits * 10**e."""
    _, digit_tuple, exp = Decimal(repr(x)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    return digits, len(digits) + int(exp)


def number_to_string(x: Num) -> str:
    """The string Earth Engine gives for a number: integers plainly, doubles as Java prints them."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    return java_double_to_string(x)


_FORMAT_RE = re.compile(
    r"^(?P<prefix>[^%]*)%(?P<flags>[#\-+ 0,(]*)(?P<width>\d+)?(?:\.(?P<prec>\d+))?(?P<conv>[sdoxXeEfgGaA])(?P<suffix>[^%]*)$"
)


def _half_up(x: float, places: int) -> Decimal:
    """Java's rounding for %f/%e: half up on the shortest decimal form of the double, with all its digits
    (``1e308`` has 309 before the point: more than the default context holds)."""
    d = Decimal(repr(x))
    digits = Context(prec=max(28, d.adjusted() + places + 2))
    return d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=digits)


def _group(int_digits: str) -> str:
    out = []
    for i, ch in enumerate(reversed(int_digits)):
        if i and i % 3 == 0:
            out.append(",")
        out.append(ch)
    return "".join(reversed(out))


_EXACT_INT = 2.0**53  # below it an integral double's shortest decimal form is the integer itself


def _fixed(x: float, prec: int, grouping: bool, alternate: bool) -> str:
    if x.is_integer() and x < _EXACT_INT:  # nothing to round (a cell index, a count): no Decimal
        text = str(int(x)) + ("." + "0" * prec if prec else "")
    else:
        text = format(_half_up(x, prec), "f")
    if grouping:
        whole, _, frac = text.partition(".")
        text = _group(whole) + ("." + frac if frac else "")
    if alternate and prec == 0:
        text += "."
    return text


def _scientific(x: float, prec: int, upper: bool) -> str:
    if x == 0:
        mantissa, exp10 = Decimal(0).quantize(Decimal(1).scaleb(-prec)), 0
    else:
        d = Decimal(repr(x))
        exp10 = d.adjusted()
        mantissa = (d.scaleb(-exp10)).quantize(Decimal(1).scaleb(-prec), rounding=ROUND_HALF_UP)
        if mantissa >= 10:
            exp10 += 1
            mantissa = (d.scaleb(-exp10)).quantize(Decimal(1).scaleb(-prec), rounding=ROUND_HALF_UP)
        elif mantissa < 1:
            exp10 -= 1
            mantissa = (d.scaleb(-exp10)).quantize(Decimal(1).scaleb(-prec), rounding=ROUND_HALF_UP)
    text = f"{format(mantissa, 'f')}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    return text.upper() if upper else text


def _general(x: float, prec: int, grouping: bool, upper: bool) -> str:
    """Java's %g: scientific when the rounded value is < 1e-4 or >= 10**precision; zeros kept."""
    prec = 1 if prec == 0 else prec
    if x == 0:
        return _fixed(0.0, prec - 1, grouping, False)
    exact = Decimal(repr(x))
    rounded = exact.quantize(Decimal(1).scaleb(exact.adjusted() - prec + 1), rounding=ROUND_HALF_UP)
    if Decimal("1e-4") <= rounded < Decimal(10) ** prec:
        exp10 = rounded.adjusted()
        return _fixed(x, max(prec - 1 - exp10, 0), grouping, False)
    return _scientific(x, prec - 1, upper)


def _hex_float(x: float, upper: bool) -> str:
    """Java's %a: Double.toHexString ('0x1.0p0')."""
    if x == 0:
        text = "0x0.0p0"
    else:
        h = float.hex(x)  # '0x1.8000000000000p+1'
        mant, _, exp = h[2:].partition("p")
        lead, _, frac = mant.partition(".")
        frac = frac.rstrip("0") or "0"
        if lead == "0":  # subnormal
            text = f"0x0.{frac}p-1022"
        else:
            text = f"0x1.{frac}p{int(exp)}"
    return text.upper() if upper else text


@functools.lru_cache(maxsize=256)
def _pattern(pattern: str) -> dict[str, str | None] | None:
    """A format pattern's parts (prefix, flags, width, precision, conversion, suffix), parsed once."""
    m = _FORMAT_RE.match(pattern)
    return None if m is None else m.groupdict()


def _integer_body(name: str, number: Num, conv: str, grouping: bool, alternate: bool) -> tuple[str, bool]:
    """The digits of ``%d``, ``%o``, ``%x`` or ``%X`` (no sign) and whether the number is negative."""
    x: Num = number
    if isinstance(x, float):
        if not x.is_integer():
            raise EngineError(f"{name}: Cannot format the non-integer {number_to_string(x)} with %{conv}.")
        x = int(x)
    if conv in "oxX" and x < 0:
        raise EngineError(f"{name}: Formatting a negative number with %{conv} is not supported by the local engine.")
    magnitude = abs(x)
    if conv == "d":
        body = _group(str(magnitude)) if grouping else str(magnitude)
    elif conv == "o":
        body = ("0" if alternate else "") + format(magnitude, "o")
    else:
        body = ("0x" if alternate else "") + format(magnitude, "x")
        body = body.upper() if conv == "X" else body
    return body, x < 0


def _float_body(
    name: str, number: Num, conv: str, prec: int | None, grouping: bool, alternate: bool
) -> tuple[str, bool, bool]:
    """The digits of ``%f``, ``%e``, ``%g`` or ``%a`` (no sign), whether the number is negative, and whether it is
    finite (Java pads NaN and Infinity with spaces, never zeros)."""
    v = float(number)
    if math.isnan(v) or math.isinf(v):
        return ("NaN" if math.isnan(v) else "Infinity"), v < 0, False
    negative = math.copysign(1.0, v) < 0
    v = abs(v)
    p = 6 if prec is None else prec
    if conv == "f":
        return _fixed(v, p, grouping, alternate), negative, True
    if conv in "eE":
        return _scientific(v, p, conv == "E"), negative, True
    if conv in "gG":
        return _general(v, p, grouping, conv == "G"), negative, True
    if prec is not None:
        raise EngineError(f"{name}: precision with %{conv} is not supported by the local engine.")
    return _hex_float(v, conv == "A"), negative, True


def format_number(name: str, number: Num, pattern: str) -> str:
    """A printf-style pattern as Java's Formatter applies it to one number."""
    m = _pattern(pattern)
    if m is None:
        raise EngineError(
            f"{name}: Invalid format pattern '{pattern}'. Expected a prefix, exactly one '%', modifiers in "
            "[#-+ 0,(.\\d], one conversion in [sdoxXeEfgGaA], and a suffix."
        )
    flags = m["flags"] or ""
    width = int(m["width"]) if m["width"] else 0
    prec = int(m["prec"]) if m["prec"] is not None else None
    conv = m["conv"]
    left_align, plus, space, zero, grouping, paren, alternate = (f in flags for f in "-+ 0,(#")
    if (left_align or zero) and not width:
        raise EngineError(f"{name}: Invalid format pattern '{pattern}': the '-' and '0' flags need a width.")
    if left_align and zero:
        raise EngineError(f"{name}: Invalid format pattern '{pattern}': the '-' and '0' flags are exclusive.")

    if conv == "s":
        body = number_to_string(number)
        if prec is not None:
            body = body[:prec]
        return m["prefix"] + (body.ljust(width) if left_align else body.rjust(width)) + m["suffix"]

    if conv in "doxX":
        if prec is not None:
            raise EngineError(f"{name}: Invalid format pattern '{pattern}': precision is not allowed with %{conv}.")
        body, negative = _integer_body(name, number, conv, grouping, alternate)
    else:
        body, negative, finite = _float_body(name, number, conv, prec, grouping, alternate)
        zero = zero and finite

    if negative:
        sign_prefix, sign_suffix = ("(", ")") if paren else ("-", "")
    else:
        sign_prefix, sign_suffix = ("+" if plus else " " if space else ""), ""
    core_len = len(sign_prefix) + len(body) + len(sign_suffix)
    if zero and core_len < width:
        body = "0" * (width - core_len) + body
    text = sign_prefix + body + sign_suffix
    text = text.ljust(width) if left_align else text.rjust(width)
    return m["prefix"] + text + m["suffix"]


@algorithm("Number.format")
def format_(number, pattern):
    x = _num("Number.format", "number", number)
    return format_number("Number.format", x, pattern if pattern is not None else "%s")


_JAVA_DOUBLE_RE = re.compile(
    r"^[+-]?(NaN|Infinity|((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)|(0[xX][0-9a-fA-F]*\.?[0-9a-fA-F]*[pP][+-]?\d+))[fFdD]?$"
)


@algorithm("Number.parse")
def parse(input, radix):
    """An integer in ``radix`` (2..36), or with radix 10 a decimal number (``'3E8'`` base 16 is 1000)."""
    if not isinstance(input, str):
        raise EngineError(
            f"Number.parse, argument 'input': Invalid type.\nExpected type: String.\nActual value: {input!r}"
        )
    base = _num("Number.parse", "radix", radix)
    if isinstance(base, float):
        if not base.is_integer():
            raise EngineError(f"Number.parse: Invalid radix: {number_to_string(base)}.")
        base = int(base)
    if not 2 <= base <= 36:
        raise EngineError(f"Number.parse: Invalid radix: {base}. The radix must be between 2 and 36.")
    if re.fullmatch(r"[+-]?[0-9a-zA-Z]+", input):
        try:
            value = int(input, base)
        except ValueError:
            value = None
        if value is not None and _INT64_MIN <= value <= _INT64_MAX:
            return value
    if base == 10:
        text = input.strip()
        if _JAVA_DOUBLE_RE.match(text):
            core = text.rstrip("fFdD") if not text.endswith("Infinity") else text
            if "x" in core.lower():
                sign = -1.0 if core.startswith("-") else 1.0
                return sign * float.fromhex(core.lstrip("+-"))
            if core.lstrip("+-") == "Infinity":
                return -math.inf if core.startswith("-") else math.inf
            return float(core)
    raise EngineError(f"Number.parse: Unable to parse '{input}' as a number in radix {base}.")


# -- expressions ---------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|&&|\|\||==|!=|<=|>=|[-+*/%<>!?:(),.]))"
)

_BINARY_LEVELS: tuple[tuple[str, ...], ...] = (
    ("||",),
    ("&&",),
    ("==", "!="),
    ("<", "<=", ">", ">="),
    ("+", "-"),
    ("*", "/", "%"),
)

_BINARY_ALGORITHMS = {
    "||": "or",
    "&&": "and",
    "==": "eq",
    "!=": "neq",
    "<": "lt",
    "<=": "lte",
    ">": "gt",
    ">=": "gte",
    "+": "add",
    "-": "subtract",
    "*": "multiply",
    "/": "divide",
    "%": "mod",
    "**": "pow",
}

_CONSTANTS = {"Math.PI": math.pi, "Math.E": math.e}


class _ExpressionParser:
    """Recursive descent over Earth Engine's number expression grammar.

    Precedence, loosest first: ``?:``, ``||``, ``&&``, equality, relational,
    additive, multiplicative, ``**`` (right associative), unary ``- + !``.
    Operators evaluate as the Number algorithms of the same meaning; a call
    ``f(a, b)`` evaluates the algorithm ``Number.f``; ``a.b`` reads nested
    dictionaries of ``vars``. Nothing is ever handed to Python's ``eval``.
    """

    def __init__(self, text: str, variables: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]):
        self.text = text
        self.variables = variables
        self.functions = functions
        self.tokens = self._tokenize(text)
        self.pos = 0

    TOKEN_RE = _TOKEN_RE
    ALGORITHM = "Number.expression"

    @staticmethod
    def _token_value(kind: str, value: str) -> str:
        return value

    @classmethod
    def _tokenize(cls, text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = cls.TOKEN_RE.match(text, pos)
            if m is None or m.end() == pos:
                raise EngineError(f"{cls.ALGORITHM}: Unexpected character '{text[pos:].lstrip()[0]}' in '{text}'.")
            kind = m.lastgroup or ""
            tokens.append((kind, cls._token_value(kind, m.group(kind))))
            pos = m.end()
        return tokens

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, value: str | None = None) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise EngineError(f"Number.expression: Unexpected end of expression '{self.text}'.")
        if value is not None and tok[1] != value:
            raise EngineError(f"Number.expression: Expected '{value}' but found '{tok[1]}' in '{self.text}'.")
        self.pos += 1
        return tok

    def _accept(self, *values: str) -> str | None:
        tok = self._peek()
        if tok is not None and tok[0] == "op" and tok[1] in values:
            self.pos += 1
            return tok[1]
        return None

    def parse(self) -> Num:
        value = self._ternary()
        if self._peek() is not None:
            raise EngineError(f"Number.expression: Unexpected '{self._peek()[1]}' in '{self.text}'.")
        return value

    def _apply(self, short: str, *args: Any) -> Any:
        return self.functions[short](*args)

    def _ternary(self) -> Num:
        cond = self._binary(0)
        if self._accept("?"):
            when_true = self._ternary()
            self._take(":")
            when_false = self._ternary()
            return when_true if cond != 0 else when_false
        return cond

    def _binary(self, level: int) -> Num:
        if level == len(_BINARY_LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while (op := self._accept(*_BINARY_LEVELS[level])) is not None:
            right = self._binary(level + 1)
            left = self._apply(_BINARY_ALGORITHMS[op], left, right)
        return left

    def _unary(self) -> Num:
        op = self._accept("-", "+", "!")
        if op == "-":
            return self._apply("multiply", -1, self._unary())
        if op == "+":
            return self._unary()
        if op == "!":
            return self._apply("not", self._unary())
        return self._power()

    def _power(self) -> Num:
        base = self._primary()
        if self._accept("**"):
            return self._apply("pow", base, self._unary())
        return base

    def _primary(self) -> Num:
        kind, value = self._take()
        if kind == "num":
            return float(value) if any(c in value for c in ".eE") else int(value)
        if kind == "op" and value == "(":
            inner = self._ternary()
            self._take(")")
            return inner
        if kind == "name":
            if self._accept("("):
                return self._call(value)
            return self._reference(value)
        raise EngineError(f"Number.expression: Unexpected '{value}' in '{self.text}'.")

    def _call(self, fname: str) -> Num:
        args: list[Num] = []
        if self._accept(")") is None:
            args.append(self._ternary())
            while self._accept(","):
                args.append(self._ternary())
            self._take(")")
        fn = self.functions.get(fname)
        if fn is None:
            raise EngineError(f"Number.expression: Unknown function '{fname}' in '{self.text}'.")
        return fn(*args)

    def _reference(self, first_name: str) -> Num:
        path = [first_name]
        while self._accept("."):
            kind, value = self._take()
            if kind != "name":
                raise EngineError(f"Number.expression: Expected a name after '.' in '{self.text}'.")
            path.append(value)
        dotted = ".".join(path)
        if dotted in _CONSTANTS and first_name not in self.variables:
            return _CONSTANTS[dotted]
        value: Any = self.variables
        for i, key in enumerate(path):
            if not isinstance(value, Mapping) or key not in value:
                shown = ".".join(path[: i + 1])
                raise EngineError(f"Number.expression: Variable '{shown}' is not defined in '{self.text}'.")
            value = value[key]
        if isinstance(value, bool):
            return int(value)
        if not isinstance(value, int | float):
            raise EngineError(f"Number.expression: Variable '{dotted}' is not a number.")
        return value


def _expression_functions() -> dict[str, Callable[..., Any]]:
    """Every registered Number algorithm whose arguments are all numbers, by short name."""
    out: dict[str, Callable[..., Any]] = {}
    for name, alg in implemented().items():
        if not name.startswith("Number.") or alg.lazy or alg.context:
            continue
        args = alg.signature.arguments
        if any(a.type not in ("Number", "Float", "Integer") for a in args):
            continue
        func = alg.func
        short = name.split(".", 1)[1]

        def call(*values: Any, _func=func, _args=args, _short=short) -> Any:
            required = [a for a in _args if not a.optional]
            if not len(required) <= len(values) <= len(_args):
                raise EngineError(
                    f"Number.expression: {_short}() takes {len(_args)} argument(s) but was given {len(values)}."
                )
            return _func(*values)

        out[short] = call
    return out


@algorithm("Number.expression")
def expression(expression, vars):  # noqa: A002 - Earth Engine's argument names
    if not isinstance(expression, str):
        raise EngineError("Number.expression, argument 'expression': Invalid type.\nExpected type: String.")
    variables = vars if isinstance(vars, Mapping) else {}
    return _ExpressionParser(expression, variables, _expression_functions()).parse()


# -- vectorised forms (a mapped function's numbers, a whole column at a time) ----------------------------
#
# Each is the scalar form applied to every element, written for lists of plain numbers (ints and floats, no
# booleans, which the scalar forms read as 0/1): anything else, or an overflow, and the whole column goes
# through the scalar form element by element, so that results and errors are the scalar form's.

_PLAIN = frozenset((int, float))


def _column(n: int, value: Any) -> list[Any]:
    return value if isinstance(value, Column) else [value] * n


def _plain(values: list[Any]) -> bool:
    return set(map(type, values)) <= _PLAIN


def _nan(x: Num) -> bool:
    return x != x  # noqa: PLR0124 - NaN is the one value unequal to itself


def _binary_many(name: str, fast: Callable[[list[Any], list[Any]], list[Any]]) -> None:
    def many(n, left, right):
        a, b = _column(n, left), _column(n, right)
        if _plain(a) and _plain(b):
            try:
                return fast(a, b)
            except (OverflowError, ZeroDivisionError):
                pass
        return per_element(name, n, {"left": left, "right": right})

    many.__name__ = name.split(".")[1] + "_many"
    vectorised(name)(many)


_binary_many("Number.add", lambda a, b: list(map(operator.add, a, b)))
_binary_many("Number.subtract", lambda a, b: list(map(operator.sub, a, b)))
_binary_many("Number.multiply", lambda a, b: list(map(operator.mul, a, b)))  # int*int exact, else as floats
_binary_many("Number.divide", lambda a, b: [x / y if y != 0 else 0 for x, y in zip(a, b, strict=True)])
_binary_many(
    "Number.max",
    lambda a, b: [math.nan if _nan(x) or _nan(y) else (x if x >= y else y) for x, y in zip(a, b, strict=True)],
)
_binary_many(
    "Number.min",
    lambda a, b: [math.nan if _nan(x) or _nan(y) else (x if x <= y else y) for x, y in zip(a, b, strict=True)],
)
for _name, _op in (
    ("lt", operator.lt),
    ("lte", operator.le),
    ("gt", operator.gt),
    ("gte", operator.ge),
    ("eq", operator.eq),
    ("neq", operator.ne),
):
    _binary_many(f"Number.{_name}", lambda a, b, op=_op: list(map(int, map(op, a, b))))


@vectorised("Number.floor")
def floor_many(n, input):  # noqa: A002
    values = _column(n, input)
    if not _plain(values):
        return per_element("Number.floor", n, {"input": input})
    return [x if type(x) is int or not math.isfinite(x) else float(math.floor(x)) for x in values]


def _cast_many(name: str, kind: str) -> None:
    lo, hi = _INTEGER_RANGES[kind]

    def many(n, input):  # noqa: A002
        values = _column(n, input)
        if not _plain(values):
            return per_element(name, n, {"input": input})
        return [
            min(max(x, lo), hi) if type(x) is int else (0 if _nan(x) else hi if x >= hi else lo if x <= lo else int(x))
            for x in values
        ]

    vectorised(name)(many)


for _kind, _names in _CAST_NAMES.items():
    for _short in _names:
        _cast_many(f"Number.{_short}", _kind)


@vectorised("Number.format")
def format_many(n, number, pattern):
    """Each distinct number formatted once per pattern (a mapped cell index repeats along its row)."""
    numbers = _column(n, number)
    if isinstance(pattern, Column) or not _plain(numbers):
        return per_element("Number.format", n, {"number": number, "pattern": pattern})
    text = pattern if pattern is not None else "%s"
    done: dict[tuple[type, Num], str] = {}
    out = []
    for x in numbers:
        key = (type(x), x)
        s = done.get(key) if x != 0 else None  # 0.0 and -0.0 are equal keys but print differently
        if s is None:
            s = done[key] = format_number("Number.format", x, text)
        out.append(s)
    return out

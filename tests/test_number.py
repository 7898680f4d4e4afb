"""Number algorithms through the real ``ee`` client.

Expected values come from Earth Engine's API reference pages (each case names
its page, e.g. "ee.Number.divide") or from independent references: Python's
``math``, ``struct`` (32-bit floats) and plain integer arithmetic.
"""

from __future__ import annotations

import math
import struct

import pytest

NAN = math.nan
INF = math.inf


def call(ee, name, *args):
    return ee.ApiFunction.call_(name, *args).getInfo()


def same(got, want, rel=1e-12, abs_=1e-12):
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    if isinstance(want, float) and math.isinf(want):
        return got == want
    return got == pytest.approx(want, rel=rel, abs=abs_)


# (algorithm, arguments, expected). Comments name the API reference page whose
# examples document the value; cases without one use Python's math as reference.
CASES = [
    # ee.Number.divide
    ("Number.divide", (5, 10), 0.5),
    ("Number.divide", (5, 10.2), 5 / 10.2),
    ("Number.divide", (5, -10.2), 5 / -10.2),
    ("Number.divide", (-10.2, 5), -2.04),
    ("Number.divide", (-10.2, -5), 2.04),
    ("Number.divide", (0, 10), 0),
    ("Number.divide", (10, 0), 0),
    # ee.Number.mod
    ("Number.mod", (12, 5), 2),
    ("Number.mod", (1, -2), 1),
    ("Number.mod", (1, 2), 1),
    ("Number.mod", (2, 3), 2),
    ("Number.mod", (5.5, 2), 1.5),
    ("Number.mod", (-12, 5), -2),
    ("Number.mod", (-1, 2), -1),
    ("Number.mod", (-4, 2), 0),
    # ee.Number.round
    ("Number.round", (10.4,), 10),
    ("Number.round", (10.5,), 11),
    ("Number.round", (10.9,), 11),
    # ee.Number.atan2: left is x, right is y
    ("Number.atan2", (0, 0), 0),
    ("Number.atan2", (1, 0), 0),
    ("Number.atan2", (0, 1), math.pi / 2),
    ("Number.atan2", (-1, 0), math.pi),
    ("Number.atan2", (0, -1), -math.pi / 2),
    # ee.Number.bitwiseNot / leftShift / rightShift
    ("Number.bitwiseNot", (25,), -26),
    ("Number.bitwise_not", (25,), -26),
    ("Number.leftShift", (20, 2), 80),
    ("Number.left_shift", (20, 2), 80),
    ("Number.rightShift", (20, 2), 5),
    ("Number.right_shift", (20, 2), 5),
    # ee.Number.lanczos
    ("Number.lanczos", (-1,), INF),
    ("Number.lanczos", (-0.9,), 524.955196990),
    ("Number.lanczos", (0,), 32.946318679),
    ("Number.lanczos", (10,), 2.281783181),
    ("Number.lanczos", (1e10,), 1.000000001),
    # ee.Number.gammainc: left is x, right is a
    ("Number.gammainc", (0, 1), 0),
    ("Number.gammainc", (1, 1), 1 - math.exp(-1)),
    ("Number.gammainc", (10, 1), 1 - math.exp(-10)),
    ("Number.gammainc", (-1, 1), NAN),
    ("Number.gammainc", (10, -1), NAN),
    # P(1/2, x) = erf(sqrt(x)) as an independent check of the series branch.
    ("Number.gammainc", (0.4, 0.5), math.erf(math.sqrt(0.4))),
    # ee.Number.erfInv
    ("Number.erfInv", (-1,), -INF),
    ("Number.erfInv", (-0.001,), -0.000886227),
    ("Number.erfInv", (0,), 0),
    ("Number.erfInv", (0.001,), 0.000886227),
    ("Number.erfInv", (1,), INF),
    # ee.Number.toUint8 / uint8 / int8 / toInt8: truncate, clamp to the range
    ("Number.toUint8", (100,), 100),
    ("Number.toUint8", (1.7,), 1),
    ("Number.toUint8", (255 + 12345,), 255),
    ("Number.toUint8", (0 - 12345,), 0),
    ("Number.uint8", (1.7,), 1),
    ("Number.uint8", (255 + 12345,), 255),
    ("Number.int8", (100,), 100),
    ("Number.int8", (1.7,), 1),
    ("Number.int8", (127 + 12345,), 127),
    ("Number.toInt8", (-128 - 12345,), -128),
]

# Independent references: Python arithmetic and math.
REFERENCE_CASES = [
    ("Number.add", (5, 3), 8),
    ("Number.add", (1.5, 2.25), 3.75),
    ("Number.subtract", (5, 8), -3),
    ("Number.multiply", (6, 7), 42),
    ("Number.multiply", (1.5, -2), -3.0),
    ("Number.pow", (2, 10), 1024),
    ("Number.pow", (2, -1), 0.5),
    ("Number.pow", (-8, 1 / 3), NAN),
    ("Number.max", (3, 7.5), 7.5),
    ("Number.min", (3, 7.5), 3),
    ("Number.first", (3, 7), 3),
    ("Number.firstNonZero", (0, 7), 7),
    ("Number.firstNonZero", (2, 7), 2),
    ("Number.first_nonzero", (0, 7), 7),
    ("Number.hypot", (3, 4), 5.0),
    ("Number.lt", (1, 2), 1),
    ("Number.lte", (2, 2), 1),
    ("Number.gt", (1, 2), 0),
    ("Number.gte", (1, 2), 0),
    ("Number.eq", (2, 2.0), 1),
    ("Number.neq", (2, 2.0), 0),
    ("Number.and", (3, 0), 0),
    ("Number.and", (3, -1), 1),
    ("Number.or", (0, 0), 0),
    ("Number.or", (0, 5), 1),
    ("Number.not", (0,), 1),
    ("Number.not", (5,), 0),
    ("Number.bitwiseAnd", (12, 10), 12 & 10),
    ("Number.bitwise_and", (12, 10), 12 & 10),
    ("Number.bitwiseOr", (12, 10), 12 | 10),
    ("Number.bitwise_or", (12, 10), 12 | 10),
    ("Number.bitwiseXor", (12, 10), 12 ^ 10),
    ("Number.bitwise_xor", (12, 10), 12 ^ 10),
    ("Number.bitwiseAnd", (-1, 255), 255),
    ("Number.bitCount", (255,), 8),
    ("Number.bitCount", (-1,), 64),
    ("Number.sin", (0.5,), math.sin(0.5)),
    ("Number.cos", (0.5,), math.cos(0.5)),
    ("Number.tan", (0.5,), math.tan(0.5)),
    ("Number.asin", (0.5,), math.asin(0.5)),
    ("Number.asin", (2,), NAN),
    ("Number.acos", (0.5,), math.acos(0.5)),
    ("Number.atan", (0.5,), math.atan(0.5)),
    ("Number.sinh", (0.5,), math.sinh(0.5)),
    ("Number.cosh", (0.5,), math.cosh(0.5)),
    ("Number.tanh", (0.5,), math.tanh(0.5)),
    ("Number.sqrt", (2,), math.sqrt(2)),
    ("Number.sqrt", (-1,), NAN),
    ("Number.cbrt", (-27,), -3.0),
    ("Number.exp", (1,), math.e),
    ("Number.exp", (1000,), INF),
    ("Number.log", (math.e,), 1.0),
    ("Number.log", (0,), -INF),
    ("Number.log", (-1,), NAN),
    ("Number.log10", (1000,), 3.0),
    ("Number.abs", (-3,), 3),
    ("Number.abs", (-2.5,), 2.5),
    ("Number.floor", (-2.5,), -3),
    ("Number.ceil", (-2.5,), -2),
    ("Number.signum", (-4.2,), -1),
    ("Number.signum", (0,), 0),
    ("Number.signum", (7,), 1),
    ("Number.erf", (0.5,), math.erf(0.5)),
    ("Number.erfc", (0.5,), math.erfc(0.5)),
    ("Number.erfcInv", (math.erfc(0.7),), 0.7),
    ("Number.erfcInv", (0,), INF),
    ("Number.erfcInv", (2,), -INF),
    ("Number.gamma", (5,), 24.0),
    ("Number.gamma", (0.5,), math.sqrt(math.pi)),
    ("Number.gamma", (-2,), NAN),
    ("Number.clamp", (5, 0, 3), 3),
    ("Number.clamp", (-5, 0, 3), 0),
    ("Number.clamp", (2, 0, 3), 2),
    ("Number.clamp", (4, 5, 3), min(max(4, 5), 3)),
    ("Number.unitScale", (5, 0, 10), 0.5),
    ("Number.unitScale", (15, 0, 10), 1.5),
    ("Number.unitScale", (5, 3, 3), 0),
    ("Number.double", (0.1,), 0.1),
    ("Number.toDouble", (7,), 7.0),
    ("Number.float", (0.1,), struct.unpack("f", struct.pack("f", 0.1))[0]),
    ("Number.toFloat", (100,), 100.0),
]

# Integer casts: truncation toward zero, then clamping to each type's range
# (the documented rule for uint8 and int8, applied to every integer type).
CAST_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "toInt8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "toInt16": (-(2**15), 2**15 - 1),
    "short": (-(2**15), 2**15 - 1),
    "toShort": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "toInt32": (-(2**31), 2**31 - 1),
    "int": (-(2**31), 2**31 - 1),
    "toInt": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "toInt64": (-(2**63), 2**63 - 1),
    "long": (-(2**63), 2**63 - 1),
    "toLong": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "toUint8": (0, 2**8 - 1),
    "byte": (0, 2**8 - 1),
    "toByte": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "toUint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "toUint32": (0, 2**32 - 1),
}


@pytest.mark.parametrize(("name", "args", "want"), CASES + REFERENCE_CASES, ids=lambda v: str(v))
def test_number_algorithm(ee_local, name, args, want):
    got = call(ee_local, name, *args)
    tolerance = 1e-9 if name in ("Number.lanczos", "Number.erfInv") else 1e-12
    assert same(got, want, rel=tolerance, abs_=tolerance), (name, args, got, want)


@pytest.mark.parametrize("short", sorted(CAST_RANGES))
def test_integer_casts_truncate_and_clamp(ee_local, short):
    lo, hi = CAST_RANGES[short]
    name = f"Number.{short}"
    assert call(ee_local, name, -7.9) == max(-7, lo)
    assert call(ee_local, name, 42.9) == 42
    assert call(ee_local, name, 1e30) == hi
    assert call(ee_local, name, -1e30) == lo


def test_documented_methods_through_client_methods(ee_local):
    """The client's own methods send the same algorithms (ee.Number.divide, ee.Number.round pages)."""
    ee = ee_local
    assert ee.Number(5).divide(ee.Number(10)).getInfo() == 0.5
    assert ee.Number(10.5).round().getInfo() == 11
    assert ee.Number(100).toUint8().getInfo() == 100


def test_integer_arithmetic_stays_integral(ee_local):
    ee = ee_local
    got = ee.Number(5).add(3).getInfo()
    assert got == 8 and isinstance(got, int)
    got = ee.Number(6).multiply(7).getInfo()
    assert got == 42 and isinstance(got, int)


@pytest.mark.parametrize(("x", "digamma", "trigamma"), [(1.0, -0.5772156649015329, math.pi**2 / 6), (0.5, None, None)])
def test_digamma_trigamma(ee_local, x, digamma, trigamma):
    """Commons Math's digamma/trigamma are accurate to 1e-8; compare with closed forms."""
    if digamma is None:  # psi(1/2) = -gamma - 2 ln 2, psi1(1/2) = pi^2 / 2
        digamma = -0.5772156649015329 - 2 * math.log(2)
        trigamma = math.pi**2 / 2
    assert ee_local.Number(x).digamma().getInfo() == pytest.approx(digamma, abs=1e-8)
    assert ee_local.Number(x).trigamma().getInfo() == pytest.approx(trigamma, abs=1e-8)


def test_erf_inv_inverts_erf(ee_local):
    for x in (-0.99, -0.3, 0.2, 0.75, 0.999999):
        y = ee_local.Number(x).erfInv().getInfo()
        assert math.erf(y) == pytest.approx(x, rel=1e-14, abs=1e-15)


# ee.Number.format: documented patterns, then Java Formatter behaviour.
@pytest.mark.parametrize(
    ("number", "pattern", "want"),
    [
        (1, "%03d", "001"),
        (1.23476, "%.1f", "1.2"),
        (1.23476, "%.3f", "1.235"),
        (123476, "%.3e", "1.235e+05"),
        (123476, "%.2f", "123476.00"),
        (42, "%05d", "00042"),
        (3.14159, "%.2f", "3.14"),
        (1234567, "%,d", "1,234,567"),
        (-5, "%+d", "-5"),
        (5, "%+d", "+5"),
        (-5, "%(d", "(5)"),
        (255, "%x", "ff"),
        (255, "%X", "FF"),
        (8, "%o", "10"),
        (42, "Value: %d km", "Value: 42 km"),
        (42, "%-5d|", "42   |"),
        (7, "%s", "7"),
        (2.5, "%s", "2.5"),
        # The pattern rules link Java's Formatter specification: %g keeps trailing
        # zeros and switches to scientific notation at 10**precision; %f and %e
        # round half up; %a is Double.toHexString.
        (123.0, "%g", "123.000"),
        (999999.5, "%g", "1.00000e+06"),
        (0.00001234, "%g", "1.23400e-05"),
        (0.125, "%.2f", "0.13"),
        (9.999, "%.2e", "1.00e+01"),
        (1.0, "%a", "0x1.0p0"),
        (-3.14159, "%08.2f", "-0003.14"),
        (1e308, "%.1f", "1" + "0" * 308 + ".0"),  # every digit before the point, as Java prints it
    ],
)
def test_format(ee_local, number, pattern, want):
    assert ee_local.Number(number).format(pattern).getInfo() == want


def _formatter(ee, pattern):
    return lambda x: ee.Number(x).format(pattern)


def test_format_of_integral_doubles_in_bulk_is_javas(ee_local):
    """``%.Nf`` and ``%,.0f`` of integral doubles (a mapped cell index: the bulk path, each distinct number
    once) against Java's definition, the double's shortest decimal form set to N places half up (Decimal),
    across signs, zero, -0.0, 2**53 and past it (1e23, whose shortest form is not its exact integer)."""
    from decimal import ROUND_HALF_UP, Context, Decimal

    values = [0.0, -0.0, 1.0, -7.0, 412.0, 7001.0, 2.0**53 - 1, 2.0**53, -(2.0**53) - 2, 1e22, 1e23, 123456789.0]

    def java(x, places, grouping=False):
        d = Decimal(repr(abs(x))).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP, Context(prec=60))
        whole, _, frac = format(d, "f").partition(".")
        whole = f"{int(whole):,}" if grouping else whole
        return ("-" if math.copysign(1.0, x) < 0 else "") + whole + ("." + frac if frac else "")

    numbers = ee_local.List(values)
    for pattern, places, grouping in (("%.0f", 0, False), ("%.2f", 2, False), ("%,.0f", 0, True)):
        got = numbers.map(_formatter(ee_local, pattern)).getInfo()
        assert got == [java(x, places, grouping) for x in values], pattern
    assert ee_local.Number(1e23).format("%.0f").getInfo() == "1" + "0" * 23  # not 99999999999999991611392


def test_format_default_pattern(ee_local):
    assert ee_local.Number(12).format().getInfo() == "12"


@pytest.mark.parametrize("pattern", ["%", "%d %d", "%q", "no percent"])
def test_format_rejects_invalid_patterns(ee_local, pattern):
    with pytest.raises(ee_local.EEException, match="Number.format"):
        ee_local.Number(1).format(pattern).getInfo()


# ee.Number.parse
@pytest.mark.parametrize(
    ("text", "radix", "want"),
    [("10", 10, 10), ("100", 10, 100), ("0001", 10, 1), ("3E8", 16, 1000), ("-101", 2, -5), ("1.5", 10, 1.5)],
)
def test_parse(ee_local, text, radix, want):
    assert ee_local.Number.parse(text, radix).getInfo() == want


def test_parse_from_string_object(ee_local):
    # ee.Number.parse: 'ee.String converted to ee.Number' is 100
    assert ee_local.Number.parse(ee_local.String("100")).getInfo() == 100


@pytest.mark.parametrize(("text", "radix"), [("abc", 10), ("1.5", 16), ("12", 40)])
def test_parse_errors(ee_local, text, radix):
    with pytest.raises(ee_local.EEException, match="Number.parse"):
        ee_local.Number.parse(text, radix).getInfo()


# ee.Number.expression: the documented operator set with {x: 5, y: 10}.
VARS = {"x": 5, "y": 10}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("x + y", 15),
        ("x - y", -5),
        ("x * y", 50),
        ("x / y", 0.5),
        ("x ** y", 5**10),
        ("x % y", 5),
        ("x || y", 1),
        ("x && y", 1),
        ("!(x)", 0),
        ("x > y", 0),
        ("x >= y", 0),
        ("x < y", 1),
        ("x <= y", 1),
        ("x == y", 0),
        ("x != y", 1),
        ("(x < y) ? 100 : 1000", 100),
        ("100 * (x + y)", 1500),
        ("Math.PI", math.pi),
        ("Math.E", math.e),
        ("sqrt(x * 5)", 5.0),
        ("max(x, y) - min(x, y)", 5),
        ("-x ** 2", -25),
        ("2 ** -1", 0.5),
        ("1 + 2 * 3 - 4 / 2", 5.0),
        ("x > 1 && y < 5 ? 1 : x > 1 ? 2 : 3", 2),
        ("abs(-2.5e1)", 25.0),
        ("hypot(3, 4)", 5.0),
    ],
)
def test_expression(ee_local, text, want):
    assert same(ee_local.Number.expression(text, VARS).getInfo(), want)


def test_expression_nested_variables(ee_local):
    got = ee_local.Number.expression("a.b * 2 + c", {"a": {"b": 4}, "c": 1}).getInfo()
    assert got == 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("z + 1", "not defined"),
        ("nope(1)", "Unknown function"),
        ("1 +", "end of expression"),
        ("__import__('os')", "Unexpected"),
        ("x; y", "Unexpected character"),
        ("(1 + 2", "end of expression"),
    ],
)
def test_expression_errors(ee_local, text, message):
    with pytest.raises(ee_local.EEException, match=message):
        ee_local.Number.expression(text, VARS).getInfo()


def test_type_error_is_reported(ee_local):
    """A String where a Number is expected fails on the server with Earth Engine's wording."""
    ee = ee_local
    with pytest.raises(ee.EEException, match=r"Number\.add, argument 'left': Invalid type") as info:
        ee.ApiFunction.call_("Number.add", ee.String("a").cat("b"), 1).getInfo()
    assert "Expected type: Number" in str(info.value)


def test_mod_by_zero_is_refused_not_guessed(ee_local):
    with pytest.raises(ee_local.EEException, match="Number.mod"):
        ee_local.Number(5).mod(0).getInfo()


def test_every_number_algorithm_is_covered():
    """Each registered Number algorithm appears in a test above."""
    from gee_mining.local.core.registry import implemented

    covered = {name for name, _, _ in CASES + REFERENCE_CASES}
    covered |= {f"Number.{s}" for s in CAST_RANGES}
    covered |= {
        "Number.format",
        "Number.parse",
        "Number.expression",
        "Number.digamma",
        "Number.trigamma",
    }
    registered = {name for name in implemented() if name.startswith("Number.")}
    assert registered - covered == set()

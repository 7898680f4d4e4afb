"""Filter: a predicate on elements, with what a catalog query can prune by.

A filter tests one element, or a pair in a join: ``leftField`` reads the
primary element and ``rightField`` the secondary one; outside a join both read
the element being filtered. ``leftValue``/``rightValue`` are constants. The
field ``.geo`` is an element's geometry and ``.all`` the element itself
(``filterBounds`` sends ``Filter.intersects{leftField: ".all", rightValue:
Feature}``). A filter used as a join condition may carry a *measure* (the
distance of ``withinDistance``, the difference of ``maxDifference``).

Null semantics, as Earth Engine's filters behave: a comparison with a missing
(null) operand fails, so ``Filter.not`` of it passes.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import shapely

from gee_mining.local.core import registry
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.info import to_info
from gee_mining.local.core.registry import algorithm
from gee_mining.local.core.types import ee_type_of, is_assignable
from gee_mining.local.values.date import Date, DateRange, to_datetime
from gee_mining.local.values.element import Element
from gee_mining.local.values.geometry import Geometry

Test = Callable[[Any, Any], bool]
Measure = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Filter:
    test: Test
    description: str = ""
    bounds: Any = None  # a Geometry every passing element intersects (for pruning)
    date_range: tuple[float, float] | None = None  # [start, end) of system:time_start
    measure: Measure | None = None  # the join measure of a (primary, secondary) pair
    # ``(field, predicate, geometry, maxError)`` when the filter is "the element's ``field`` (``.geo`` or
    # ``.all``) ``Geometry.<predicate>`` this fixed geometry": what a vectorised filter can test in bulk.
    geometry_test: tuple[str, str, Any, Any] | None = None
    # ``(field, values)`` when an element whose ``field`` holds a plain value (int, float, str) passes exactly
    # when that value is in ``values``: what a collection's value index answers without testing each element.
    membership: tuple[str, frozenset] | None = None
    # Several ``geometry_test``s of which an element must pass one (``Filter.or`` of bounds filters): what a
    # collection's filter can test a part at a time over all its elements.
    geometry_any: tuple[tuple[str, str, Any, Any], ...] | None = None
    # ``((field, op, number), ...)`` clauses, one of which an element must pass in full, when the filter is an
    # or of ands of comparisons (``lt``, ``lte``, ``gt``, ``gte``) of a property with a plain number: what a
    # collection's filter can test on a column of the property's numbers at once.
    # (``not_`` before an op: its negation, ``Filter.not`` of one comparison, as ``ee.Filter.lte`` sends it.)
    ranges: tuple[tuple[tuple[str, str, int | float], ...], ...] | None = None

    ee_type = "Filter"

    def __call__(self, element: Any, secondary: Any = None) -> bool:
        return bool(self.test(element, element if secondary is None else secondary))

    def to_info(self) -> dict:
        return {"type": "Filter", "description": self.description}


# -- operands ------------------------------------------------------------------


def field_value(element: Any, name: str) -> Any:
    """Field ``name`` of ``element``: a property, ``.geo`` (geometry) or ``.all`` (the element)."""
    if isinstance(element, Element):
        if name == ".geo":
            return getattr(element, "geometry", None)
        if name == ".all":
            return element
        return element.get(name)
    if isinstance(element, dict):
        return element.get(name)
    if name in ("item", ".all"):
        return element
    return None


def _operand(field: str | None, value: Any) -> Callable[[Any], Any]:
    if field is not None:
        return lambda element: field_value(element, field)
    return lambda element: value


def _binary(name: str, op: Callable[[Any, Any], bool], leftField, rightValue, rightField, leftValue, **extra) -> Filter:  # noqa: N803
    left = _operand(leftField, leftValue)
    right = _operand(rightField, rightValue)
    desc = f"{name}({leftField or _short(leftValue)}, {rightField or _short(rightValue)})"
    return Filter(lambda p, s: op(left(p), right(s)), desc, **extra)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


_PLAIN = (int, float, str)


def _millis(value: Any) -> Any:
    return value.millis if isinstance(value, Date) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _ordered(a: Any, b: Any) -> tuple[Any, Any] | None:
    """``(a, b)`` as comparable values, or None where Earth Engine's comparison fails."""
    if a is None or b is None:
        return None
    a, b = _millis(a), _millis(b)
    if _is_number(a) and _is_number(b):
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    return None


def values_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if type(a) in _PLAIN and type(b) in _PLAIN:  # the common case, first
        return a == b if (type(a) is str) == (type(b) is str) else False
    a, b = _millis(a), _millis(b)
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return type(a) is type(b) and to_info(a) == to_info(b)


def _compare(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def op(a: Any, b: Any) -> bool:
        pair = _ordered(a, b)
        return pair is not None and test(*pair)

    return op


def _strings(test: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    return lambda a, b: isinstance(a, str) and isinstance(b, str) and test(a, b)


def _list_contains(a: Any, b: Any) -> bool:
    return isinstance(a, list) and b is not None and any(values_equal(x, b) for x in a)


# -- comparison filters ----------------------------------------------------------

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": values_equal,
    "eq": values_equal,
    "notEquals": lambda a, b: a is not None and b is not None and not values_equal(a, b),
    "neq": lambda a, b: a is not None and b is not None and not values_equal(a, b),
    "lessThan": _compare(lambda a, b: a < b),
    "lt": _compare(lambda a, b: a < b),
    "lessThanOrEquals": _compare(lambda a, b: a <= b),
    "lte": _compare(lambda a, b: a <= b),
    "greaterThan": _compare(lambda a, b: a > b),
    "gt": _compare(lambda a, b: a > b),
    "greaterThanOrEquals": _compare(lambda a, b: a >= b),
    "gte": _compare(lambda a, b: a >= b),
    "stringStartsWith": _strings(str.startswith),
    "stringEndsWith": _strings(str.endswith),
    "stringContains": _strings(lambda a, b: b in a),
    "listContains": _list_contains,
    # Documented like listContains; a list on the right is read as "left is in the right list".
    "inList": lambda a, b: _list_contains(a, b) if isinstance(a, list) else _list_contains(b, a),
}


def _plain_set(values: Any) -> frozenset | None:
    """The values as a set when membership in it decides ``values_equal`` exactly (plain, non-NaN values)."""
    if not isinstance(values, list) or not all(type(v) in _PLAIN and v == v for v in values):
        return None
    return frozenset(values)


def _membership(name: str, field: str, allowed: frozenset, op: Callable[[Any, Any], bool], constant: Any) -> Filter:
    """A property ``eq``/``inList`` filter against plain constants: a set lookup for plain property
    values (the same answer as ``values_equal``), the full comparison for anything else."""

    def test(p: Any, s: Any) -> bool:
        value = field_value(p, field)
        if type(value) in _PLAIN:
            return value in allowed
        return op(value, constant)

    return Filter(test, f"{name}({field}, {_short(constant)})", membership=(field, allowed))


_RANGE_OPS = {
    "lessThan": "lt", "lt": "lt", "lessThanOrEquals": "le", "lte": "le",
    "greaterThan": "gt", "gt": "gt", "greaterThanOrEquals": "ge", "gte": "ge",
}  # fmt: skip


def _register_comparison(short: str, op: Callable[[Any, Any], bool]) -> None:
    def make(leftField, rightValue, rightField, leftValue):  # noqa: N803
        if short in ("eq", "equals", "inList") and leftField is not None and rightField is None and leftValue is None:
            allowed = _plain_set(rightValue if short == "inList" else [rightValue])
            if allowed is not None:
                return _membership(f"Filter.{short}", leftField, allowed, op, rightValue)
        if short == "listContains" and rightField is not None and leftField is None and rightValue is None:
            allowed = _plain_set(leftValue)  # ee.Filter.inList(field, list) arrives in this form
            if allowed is not None:
                return _membership(f"Filter.{short}", rightField, allowed, lambda v, c: op(c, v), leftValue)
        ranges = None
        if short in _RANGE_OPS and leftField is not None and rightField is None and leftValue is None:
            if type(rightValue) in (int, float) and abs(rightValue) <= 2**53:  # exact as a double
                ranges = (((leftField, _RANGE_OPS[short], rightValue),),)
        return _binary(f"Filter.{short}", op, leftField, rightValue, rightField, leftValue, ranges=ranges)

    make.__name__ = short
    make.__doc__ = f"``Filter.{short}``: compares the left and right operands (null operands fail)."
    algorithm(f"Filter.{short}")(make)


for _name, _op in _COMPARISONS.items():
    _register_comparison(_name, _op)


def _has_type(value: Any, type_name: Any) -> bool:
    if value is None or not isinstance(type_name, str):
        return False
    if type_name in ("Object", "Element") or ee_type_of(value) == type_name:
        return True
    return is_assignable(value, type_name)


@algorithm("Filter.hasType")
def has_type(leftField, rightValue, rightField, leftValue):  # noqa: N803
    return _binary("Filter.hasType", _has_type, leftField, rightValue, rightField, leftValue)


@algorithm("Filter.maxDifference")
def max_difference(difference, leftField, rightValue, rightField, leftValue):  # noqa: N803
    """Passes if ``|left - right| <= difference``; the difference is the join measure."""
    left = _operand(leftField, leftValue)
    right = _operand(rightField, rightValue)

    def measure(p: Any, s: Any) -> Any:
        pair = _ordered(left(p), right(s))
        if pair is None or not _is_number(pair[0]):
            return None
        return abs(pair[0] - pair[1])

    def test(p: Any, s: Any) -> bool:
        d = measure(p, s)
        return d is not None and d <= difference

    return Filter(test, f"Filter.maxDifference({difference})", measure=measure)


# -- logic -----------------------------------------------------------------------


@algorithm("Filter.always")
def always():
    return Filter(lambda p, s: True, "Filter.always")


@algorithm("Filter.never")
def never():
    return Filter(lambda p, s: False, "Filter.never")


@algorithm("Filter.hasGeometry")
def has_geometry():
    return Filter(lambda p, s: getattr(p, "geometry", None) is not None, "Filter.hasGeometry")


def _filters(name: str, filters: Any) -> list[Filter]:
    if not isinstance(filters, list) or not all(isinstance(f, Filter) for f in filters):
        raise EngineError(f"{name}: 'filters' must be a list of filters.")
    return filters


@algorithm("Filter.and")
def and_(filters):
    parts = _filters("Filter.and", filters)
    tests = [f.test for f in parts]
    bounds = next((f.bounds for f in parts if f.bounds is not None), None)
    ranges = [f.date_range for f in parts if f.date_range is not None]
    date_range = None
    if ranges:
        date_range = (max(r[0] for r in ranges), min(r[1] for r in ranges))
    measure = next((f.measure for f in parts if f.measure is not None), None)
    ranges = None
    if parts and all(f.ranges is not None and len(f.ranges) == 1 for f in parts):
        ranges = (tuple(c for f in parts for c in f.ranges[0]),)
    return Filter(
        lambda p, s: all(t(p, s) for t in tests),
        "and(" + ", ".join(f.description for f in parts) + ")",
        bounds,
        date_range,
        measure,
        ranges=ranges,
    )


@algorithm("Filter.or")
def or_(filters):
    parts = _filters("Filter.or", filters)
    tests = [f.test for f in parts]
    measure = parts[0].measure if len(parts) == 1 else None
    geometry = [f.geometry_test for f in parts]
    any_of = tuple(geometry) if parts and all(g is not None and g[1] == "intersects" for g in geometry) else None
    return Filter(
        lambda p, s: any(t(p, s) for t in tests),
        "or(" + ", ".join(f.description for f in parts) + ")",
        measure=measure,
        geometry_any=any_of,
        ranges=tuple(c for f in parts for c in f.ranges) if parts and all(f.ranges for f in parts) else None,
    )


@algorithm("Filter.not")
def not_(filter):  # noqa: A002
    if not isinstance(filter, Filter):
        raise EngineError("Filter.not: 'filter' must be a Filter.")
    inner = filter.test
    return Filter(lambda p, s: not inner(p, s), f"not({filter.description})", ranges=_negated_ranges(filter.ranges))


def _negated_ranges(ranges: Any) -> Any:
    """The ``ranges`` of ``not`` of one comparison (``ee.Filter.lte`` and ``gte`` arrive as ``not(gt)`` and
    ``not(lt)``): the comparison's op negated (``"not_gt"``), which a column of numbers tests as the negation of
    the comparison, as the scalar test does (NaN included: not NaN > x passes). Else None."""
    if ranges is None or len(ranges) != 1 or len(ranges[0]) != 1:
        return None
    field, op, number = ranges[0][0]
    return None if op.startswith("not_") else (((field, "not_" + op, number),),)


@algorithm("Filter.notNull")
def not_null(properties):
    names = list(properties)
    return Filter(lambda p, s: all(field_value(p, n) is not None for n in names), f"Filter.notNull({', '.join(names)})")


@algorithm("Filter.rangeContains")
def range_contains(field, minValue, maxValue):  # noqa: N803
    """Passes if ``minValue <= field <= maxValue``."""
    lo, hi = _compare(lambda a, b: a <= b), _compare(lambda a, b: a >= b)

    def test(p: Any, s: Any) -> bool:
        v = field_value(p, field)
        return lo(minValue, v) and hi(maxValue, v)

    return Filter(test, f"Filter.rangeContains({field}, {minValue}, {maxValue})")


# -- dates -----------------------------------------------------------------------


@algorithm("Filter.dateRangeContains")
def date_range_contains(leftField, rightValue, rightField, leftValue):  # noqa: N803
    """Passes if the left date range contains the right date (``filterDate``)."""

    def op(rng: Any, when: Any) -> bool:
        when = _millis(when)
        return isinstance(rng, DateRange) and _is_number(when) and rng.contains(when)

    pruning = None
    if isinstance(leftValue, DateRange) and rightField == "system:time_start" and leftField is None:
        pruning = (leftValue.start, leftValue.end)
    return _binary("Filter.dateRangeContains", op, leftField, rightValue, rightField, leftValue, date_range=pruning)


_CALENDAR_FIELDS: dict[str, Callable[[dt.datetime], int]] = {
    "year": lambda d: d.year,
    "month": lambda d: d.month,
    "hour": lambda d: d.hour,
    "minute": lambda d: d.minute,
    "day_of_year": lambda d: d.timetuple().tm_yday,
    "day_of_month": lambda d: d.day,
    "day_of_week": lambda d: d.isoweekday(),
}


def _calendar_filter(name: str, start: int, end: int, field: str) -> Filter:
    get = _CALENDAR_FIELDS.get(field)
    if get is None:
        raise EngineError(f"{name}: Unknown calendar field '{field}'. Options are: {', '.join(_CALENDAR_FIELDS)}.")
    start, end = int(start), int(end)

    def test(p: Any, s: Any) -> bool:
        when = _millis(field_value(p, "system:time_start"))
        if not _is_number(when):
            return False
        value = get(to_datetime(when))
        return start <= value <= end if start <= end else (value >= start or value <= end)

    return Filter(test, f"{name}({start}, {end}, {field})")


@algorithm("Filter.calendarRange")
def calendar_range(start, end, field):
    """Inclusive range of a UTC calendar field of ``system:time_start``; wraps when end < start."""
    return _calendar_filter("Filter.calendarRange", start, start if end is None else end, field)


@algorithm("Filter.dayOfYear")
def day_of_year(start, end):
    return _calendar_filter("Filter.dayOfYear", start, end, "day_of_year")


# -- geometry --------------------------------------------------------------------


@functools.cache
def _geometry_func(name: str) -> Callable[..., Any]:
    return registry.get(f"Geometry.{name}").func


def _geometry(value: Any) -> Any:
    if isinstance(value, Geometry):
        return value
    if getattr(value, "ee_type", None) == "Image":  # an image's geometry is its footprint; unbounded: the world
        footprint = value.footprint()
        return Geometry(shapely.box(-180, -90, 180, 90) if footprint is None else footprint, geodesic=False)
    return getattr(value, "geometry", None) if value is not None else None


def _geometry_filter(
    name: str,
    geometry_alg: str,
    leftField,
    rightValue,
    rightField,
    leftValue,
    maxError,
    **args: Any,  # noqa: N803
) -> Filter:

    left = _operand(leftField, leftValue)
    right = _operand(rightField, rightValue)
    func_name = geometry_alg

    def test(p: Any, s: Any) -> bool:
        a, b = _geometry(left(p)), _geometry(right(s))
        if a is None or b is None:
            return False
        return bool(_geometry_func(func_name)(left=a, right=b, maxError=maxError, proj=None, **args))

    bounds = None
    geometry_test = None
    if name == "Filter.intersects":
        if leftField in (".geo", ".all") and rightField is None:
            bounds = _geometry(rightValue)
            if bounds is not None and not args:
                geometry_test = (leftField, func_name, bounds, maxError)
        elif rightField in (".geo", ".all") and leftField is None:
            bounds = _geometry(leftValue)
    description = f"{name}({leftField or 'value'}, {rightField or 'value'})"
    return Filter(test, description, bounds=bounds, geometry_test=geometry_test)


@algorithm("Filter.intersects")
def intersects(leftField, rightValue, rightField, leftValue, maxError):  # noqa: N803
    return _geometry_filter("Filter.intersects", "intersects", leftField, rightValue, rightField, leftValue, maxError)


@algorithm("Filter.disjoint")
def disjoint(leftField, rightValue, rightField, leftValue, maxError):  # noqa: N803
    return _geometry_filter("Filter.disjoint", "disjoint", leftField, rightValue, rightField, leftValue, maxError)


@algorithm("Filter.contains")
def contains(leftField, rightValue, rightField, leftValue, maxError):  # noqa: N803
    """Passes if the left geometry contains the right one."""
    return _geometry_filter("Filter.contains", "contains", leftField, rightValue, rightField, leftValue, maxError)


@algorithm("Filter.isContained")
def is_contained(leftField, rightValue, rightField, leftValue, maxError):  # noqa: N803
    """Passes if the right geometry contains the left one."""
    return _geometry_filter("Filter.isContained", "containedIn", leftField, rightValue, rightField, leftValue, maxError)


@algorithm("Filter.withinDistance")
def within_distance(distance, leftField, rightValue, rightField, leftValue, maxError):  # noqa: N803
    """Passes if the geometries are within ``distance`` metres; the distance is the join measure."""

    left = _operand(leftField, leftValue)
    right = _operand(rightField, rightValue)

    def measure(p: Any, s: Any) -> Any:
        a, b = _geometry(left(p)), _geometry(right(s))
        if a is None or b is None:
            return None
        return _geometry_func("distance")(left=a, right=b, maxError=maxError, proj=None, spherical=False)

    def test(p: Any, s: Any) -> bool:
        a, b = _geometry(left(p)), _geometry(right(s))
        if a is None or b is None:
            return False
        return bool(_geometry_func("withinDistance")(left=a, right=b, distance=distance, maxError=maxError, proj=None))

    return Filter(test, f"Filter.withinDistance({distance})", measure=measure)


@algorithm("Filter.area")
def area(min, max, maxError, geometrySelector):  # noqa: A002, N803
    """Passes if the area (square metres) of the element's geometry is within ``[min, max]``."""
    selector = geometrySelector or ".geo"

    def test(p: Any, s: Any) -> bool:
        geom = _geometry(field_value(p, selector))
        if geom is None:
            return False
        value = _geometry_func("area")(geometry=geom, maxError=maxError, proj=None)
        return min <= value <= max

    return Filter(test, f"Filter.area({min}, {max})")


# -- expressions -------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<op>==|!=|<=|>=|&&|\|\||[<>!()])
    |(?P<name>[A-Za-z_][\w:.]*)
    )""",
    re.VERBOSE,
)

_EXPR_COMPARISONS = {"==": "equals", "!=": "notEquals", "<": "lessThan", "<=": "lessThanOrEquals"}
_EXPR_COMPARISONS.update({">": "greaterThan", ">=": "greaterThanOrEquals"})
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise EngineError(f"Filter.expression: Unable to parse the expression at '{text[pos:].strip()[:30]}'.")
        pos = m.end()
        kind = m.lastgroup
        raw = m.group(kind)
        if kind == "num":
            out.append(("value", float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif kind == "str":
            out.append(("value", re.sub(r"\\(.)", r"\1", raw[1:-1])))
        elif kind == "name" and raw in ("true", "false", "null"):
            out.append(("value", {"true": True, "false": False, "null": None}[raw]))
        else:
            out.append((kind, raw))
    return out


class _ExpressionParser:
    """``a == "x" && (b > 1 || !(c < 2))``: property names, literals, comparisons, ``&& || !`` and parentheses."""

    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.i = 0

    def parse(self) -> Filter:
        result = self.disjunction()
        if self.i != len(self.tokens):
            raise EngineError(f"Filter.expression: Unexpected '{self.tokens[self.i][1]}'.")
        return result

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise EngineError("Filter.expression: Unexpected end of the expression.")
        self.i += 1
        return tok

    def disjunction(self) -> Filter:
        parts = [self.conjunction()]
        while self.peek() == ("op", "||"):
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else or_(parts)

    def conjunction(self) -> Filter:
        parts = [self.unary()]
        while self.peek() == ("op", "&&"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else and_(parts)

    def unary(self) -> Filter:
        if self.peek() == ("op", "!"):
            self.take()
            return not_(self.unary())
        if self.peek() == ("op", "("):
            self.take()
            inner = self.disjunction()
            if self.take() != ("op", ")"):
                raise EngineError("Filter.expression: Expected ')'.")
            return inner
        return self.comparison()

    def comparison(self) -> Filter:
        left = self.take()
        op = self.take()
        right = self.take()
        if op[0] != "op" or op[1] not in _EXPR_COMPARISONS:
            raise EngineError(f"Filter.expression: Expected a comparison, found '{op[1]}'.")
        symbol = op[1]
        if left[0] == "value" and right[0] == "name":
            left, right, symbol = right, left, _FLIPPED[symbol]
        if left[0] != "name":
            raise EngineError("Filter.expression: A comparison needs a property name.")
        fn = _COMPARISONS[_EXPR_COMPARISONS[symbol]]
        if right[0] == "name":
            return _binary(symbol, fn, left[1], None, right[1], None)
        return _binary(symbol, fn, left[1], right[1], None, None)


def parse_expression(text: str) -> Filter:
    """The filter of an Earth Engine filter expression string (``fc.filter('a > 1')``)."""
    return _ExpressionParser(text).parse()


@algorithm("Filter.expression")
def expression(expression):
    return parse_expression(expression)

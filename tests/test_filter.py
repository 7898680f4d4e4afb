"""Filter algorithms through the real ``ee`` client.

Each filter over the squares table is compared with the same predicate applied
in plain Python to tests/data/squares.geojson; calendar filters with Python's
datetime. References: ee.Filter.* API pages (ee.Filter.calendarRange: "If end <
start then this tests for value >= start OR value <= end, to allow for
wrapping"; both ends inclusive; weeks begin on Monday as day 1).
"""

from __future__ import annotations

import datetime as dt
import json
import operator

import pytest
import shapely
from shapely.geometry import shape

from tests.conftest import TEST_DATA

SQUARES = "projects/gee-mining-test/assets/squares"


def needs(*names: str) -> None:
    from gee_mining.local.core import registry

    missing = [n for n in names if n not in registry.implemented()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not implemented yet")


@pytest.fixture(scope="module")
def rows():
    return [f["properties"] for f in json.loads((TEST_DATA / "squares.geojson").read_text())["features"]]


def names(ee, flt) -> list[str]:
    return ee.FeatureCollection(SQUARES).filter(flt).aggregate_array("name").getInfo()


def _cmp(op):
    return lambda v, ref: v is not None and op(v, ref)


@pytest.mark.parametrize(
    ("method", "prop", "value", "pred"),
    [
        ("eq", "kind", "x", _cmp(operator.eq)),
        ("eq", "value", 2, _cmp(operator.eq)),
        ("eq", "value", "2", lambda v, ref: False),  # a string never equals a number
        ("lt", "value", 2, _cmp(operator.lt)),
        # The client sends lte/gte as not(gt)/not(lt): null values pass them.
        ("lte", "value", 2, lambda v, ref: v is None or v <= ref),
        ("gt", "value", 1, _cmp(operator.gt)),
        ("gte", "value", 2, lambda v, ref: v is None or v >= ref),
        ("lt", "name", "c", _cmp(operator.lt)),  # strings compare lexicographically
        ("stringStartsWith", "kind", "x", _cmp(str.startswith)),
        ("stringEndsWith", "name", "d", _cmp(str.endswith)),
        ("stringContains", "name", "b", _cmp(operator.contains)),
        ("eq", "missing", 1, lambda v, ref: False),  # a missing property fails a comparison
    ],
)
def test_comparisons_match_python(ee_local, rows, method, prop, value, pred):
    got = names(ee_local, getattr(ee_local.Filter, method)(prop, value))
    assert got == [r["name"] for r in rows if pred(r.get(prop), value)]


def test_neq_is_not_eq_so_missing_values_pass(ee_local, rows):
    # The client sends ee.Filter.neq as Filter.not(Filter.equals): a null value passes.
    got = names(ee_local, ee_local.Filter.neq("value", 1))
    assert got == [r["name"] for r in rows if r["value"] != 1]


def test_in_list_and_list_contains(ee_local):
    assert names(ee_local, ee_local.Filter.inList("name", ["a", "d", "zz"])) == ["a", "d"]
    fc = ee_local.FeatureCollection(
        [ee_local.Feature(None, {"tags": ["p", "q"], "n": 1}), ee_local.Feature(None, {"tags": ["q"], "n": 2})]
    )
    assert fc.filter(ee_local.Filter.listContains("tags", "p")).aggregate_array("n").getInfo() == [1]


@pytest.mark.parametrize("copies", [1, 10])  # 80 elements: answered from the collection's value index
def test_eq_and_in_list_on_mixed_values(ee_local, copies):
    """Numbers equal across int and float, never a string; a list value equals only an equal list; null never."""
    ee = ee_local
    values = [1, 1.0, "1", None, [1], 2, "a", 2.5] * copies
    fc = ee.FeatureCollection([ee.Feature(None, {"p": v, "i": i}) for i, v in enumerate(values)])

    def picked(flt):
        return fc.filter(flt).aggregate_array("i").getInfo()

    def at(*positions):
        return [i for i in range(len(values)) if i % 8 in positions]

    assert picked(ee.Filter.eq("p", 1)) == at(0, 1)
    assert picked(ee.Filter.eq("p", "1")) == at(2)
    assert picked(ee.Filter.inList("p", [1, "a", 2.5])) == at(0, 1, 6, 7)
    assert picked(ee.Filter.inList("p", ["x"])) == []
    assert picked(ee.Filter.eq("p", [1])) == at(4)
    assert picked(ee.Filter.And(ee.Filter.eq("p", 1), ee.Filter.lt("i", 9))) == [i for i in at(0, 1) if i < 9]


def test_not_null_and_logic(ee_local, rows):
    F = ee_local.Filter
    assert names(ee_local, F.notNull(["value"])) == [r["name"] for r in rows if r["value"] is not None]
    assert names(ee_local, F.And(F.eq("kind", "y"), F.notNull(["value"]))) == ["c"]
    assert names(ee_local, F.Or(F.eq("name", "a"), F.eq("name", "d"))) == ["a", "d"]
    assert names(ee_local, F.eq("kind", "x").Not()) == ["c", "d"]
    assert names(ee_local, F.And()) == [r["name"] for r in rows]


def test_range_contains_is_inclusive(ee_local):
    assert names(ee_local, ee_local.Filter.rangeContains("value", 1, 2)) == ["a", "b"]


def test_filter_metadata(ee_local):
    got = ee_local.FeatureCollection(SQUARES).filterMetadata("value", "greater_than", 1.5)
    assert got.aggregate_array("name").getInfo() == ["b", "c"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('kind == "x"', ["a", "b"]),
        ("value > 1", ["b", "c"]),
        ("1 < value", ["b", "c"]),
        ("value >= 2 && kind == 'y'", ["c"]),
        ('name == "a" || name == "d"', ["a", "d"]),
        ('!(kind == "x")', ["c", "d"]),
        ("value != 2", ["a", "c"]),
    ],
)
def test_expression_strings(ee_local, expression, expected):
    # ee.FeatureCollection.filter takes a filter expression string (the aggregate_stats
    # reference filters with 'country_lg == "Belgium"').
    assert ee_local.FeatureCollection(SQUARES).filter(expression).aggregate_array("name").getInfo() == expected


def test_bad_expression_is_an_error(ee_local):
    with pytest.raises(ee_local.EEException, match="Filter.expression"):
        ee_local.FeatureCollection(SQUARES).filter("value >").size().getInfo()


def _dated(ee, stamps: list[dt.datetime]):
    return ee.FeatureCollection(
        [ee.Feature(None, {"system:time_start": int(s.timestamp() * 1000), "i": i}) for i, s in enumerate(stamps)]
    )


STAMPS = [
    dt.datetime(2020, m, d, h, tzinfo=dt.UTC)
    for m, d, h in [(1, 5, 0), (3, 31, 6), (6, 15, 12), (8, 31, 23), (11, 1, 3), (12, 31, 18)]
]


@pytest.mark.parametrize(
    ("start", "end", "field", "value"),
    [
        (6, 8, "month", lambda d: d.month),
        (11, 2, "month", lambda d: d.month),  # wraps: months >= 11 or <= 2
        (12, 2, "month", lambda d: d.month),
        (2020, 2020, "year", lambda d: d.year),
        (10, 20, "day_of_month", lambda d: d.day),
        (0, 6, "hour", lambda d: d.hour),
        (1, 3, "day_of_week", lambda d: d.isoweekday()),
        (60, 250, "day_of_year", lambda d: d.timetuple().tm_yday),
        (300, 10, "day_of_year", lambda d: d.timetuple().tm_yday),
    ],
)
def test_calendar_range(ee_local, start, end, field, value):
    fc = _dated(ee_local, STAMPS)
    got = fc.filter(ee_local.Filter.calendarRange(start, end, field)).aggregate_array("i").getInfo()
    inside = (lambda v: start <= v <= end) if start <= end else (lambda v: v >= start or v <= end)
    assert got == [i for i, s in enumerate(STAMPS) if inside(value(s))]


def test_calendar_range_end_defaults_to_start(ee_local):
    fc = _dated(ee_local, STAMPS)
    got = fc.filter(ee_local.Filter.calendarRange(6, None, "month")).aggregate_array("i").getInfo()
    assert got == [2]


def test_day_of_year(ee_local):
    fc = _dated(ee_local, STAMPS)
    got = fc.filter(ee_local.Filter.dayOfYear(1, 100)).aggregate_array("i").getInfo()
    assert got == [i for i, s in enumerate(STAMPS) if 1 <= s.timetuple().tm_yday <= 100]


def test_filter_date_is_half_open(ee_local):
    needs("DateRange")
    fc = _dated(ee_local, STAMPS)
    got = fc.filterDate("2020-03-31T06:00:00", "2020-08-31T23:00:00").aggregate_array("i").getInfo()
    assert got == [1, 2]


def test_date_filter_carries_its_range_for_pruning():
    from gee_mining.local.core import registry
    from gee_mining.local.values.date import DateRange

    flt = registry.get("Filter.dateRangeContains").func(
        leftField=None, rightValue=None, rightField="system:time_start", leftValue=DateRange(10, 20)
    )
    assert flt.date_range == (10, 20)


def test_max_difference(ee_local):
    assert names(ee_local, ee_local.Filter.maxDifference(0.6, "value", 3)) == ["c"]


def test_has_type(ee_local):
    fc = ee_local.FeatureCollection([ee_local.Feature(None, {"p": 1}), ee_local.Feature(None, {"p": "s"})])
    flt = ee_local.ApiFunction.call_("Filter.hasType", "p", "String")
    assert fc.filter(flt).aggregate_array("p").getInfo() == ["s"]


def test_has_geometry(ee_local):
    fc = ee_local.FeatureCollection(
        [ee_local.Feature(None, {"n": 1}), ee_local.Feature(ee_local.Geometry.Point([0, 0]), {"n": 2})]
    )
    assert fc.filter(ee_local.ApiFunction.call_("Filter.hasGeometry")).aggregate_array("n").getInfo() == [2]


@pytest.fixture(scope="module")
def square_shapes():
    return [
        (f["properties"]["name"], shape(f["geometry"]))
        for f in json.loads((TEST_DATA / "squares.geojson").read_text())["features"]
    ]


@pytest.mark.parametrize(
    "region",
    [
        [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]],
        [[1.2, 0.6], [2.5, 0.6], [2.5, 0.7], [1.2, 0.7]],
        [[9, 9], [11, 9], [11, 11], [9, 11]],
        [[5, 5], [6, 5], [6, 6], [5, 6]],
    ],
)
def test_filter_bounds_matches_shapely(ee_local, square_shapes, region):
    needs("Geometry.intersects")
    geom = ee_local.Geometry.Polygon([region], None, False)
    got = ee_local.FeatureCollection(SQUARES).filterBounds(geom).aggregate_array("name").getInfo()
    poly = shapely.Polygon(region)
    assert got == [n for n, s in square_shapes if s.intersects(poly)]


def test_filter_bounds_carries_the_geometry_for_pruning(ee_local):
    needs("Geometry.intersects")
    from gee_mining.local.core import registry
    from gee_mining.local.values.feature import Feature
    from gee_mining.local.values.geometry import Geometry

    g = Geometry(shapely.Point(1, 2))
    flt = registry.get("Filter.intersects").func(
        leftField=".all", rightValue=Feature(g, {}), rightField=None, leftValue=None, maxError=None
    )
    assert flt.bounds is g


def test_is_contained_and_contains(ee_local, square_shapes):
    needs("Geometry.containedIn", "Geometry.contains")
    region = ee_local.Geometry.Polygon([[[-1, -1], [1.2, -1], [1.2, 1.2], [-1, 1.2]]], None, False)
    got = names(ee_local, ee_local.Filter.isContained(leftField=".geo", rightValue=region))
    assert got == ["a"]
    point = ee_local.Geometry.Point([0.75, 0.75])
    got = names(ee_local, ee_local.Filter.contains(leftField=".geo", rightValue=point))
    assert got == [n for n, s in square_shapes if s.contains(shapely.Point(0.75, 0.75))]


def test_within_distance(ee_local):
    needs("Geometry.withinDistance")
    from pyproj import Geod

    # Point d is at (10, 10); the squares are within about 1,400 km of it.
    geod = Geod(ellps="WGS84")
    _, _, far = geod.inv(10, 10, 1.5, 1.5)
    got = names(ee_local, ee_local.Filter.withinDistance(far * 0.999, ".geo", ee_local.Geometry.Point([10, 10])))
    assert "d" in got and "a" not in got


@pytest.mark.parametrize("odd", [None, 2.5, "7", 2**60 + 1, float("nan")])
def test_or_of_ranges_on_a_large_collection_matches_python(ee_local, odd):
    """An or of ands of comparisons with numbers (the grid's polygons reaching a group's blocks), tested on
    a column of each property's numbers over a collection of more than 64 elements, keeps what Python's
    comparisons keep; with a null, a string, an integer past 2**53 or NaN among the values too."""
    ee = ee_local
    xs = [(i * 37) % 101 - 50 + (0.5 if i % 3 else 0) for i in range(120)]
    ys = [(i * 53) % 97 for i in range(120)]
    xs[17] = odd
    fc = ee.FeatureCollection(
        [ee.Feature(None, {"k": i, "x": x, "y": y}) for i, (x, y) in enumerate(zip(xs, ys, strict=True))]
    )
    flt = ee.Filter.Or(
        ee.Filter.And(ee.Filter.gte("x", -10), ee.Filter.lt("x", 10.5), ee.Filter.lte("y", 60)),
        ee.Filter.And(ee.Filter.gt("y", 90), ee.Filter.greaterThanOrEquals("x", 2**60)),
        ee.Filter.lessThan("x", -45),
    )

    def number(v):
        return type(v) in (int, float)

    want = [
        i
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
        if number(x) and (-10 <= x < 10.5 and y <= 60 or y > 90 and x >= 2**60 or x < -45)
    ]
    assert fc.filter(flt).aggregate_array("k").getInfo() == want
    assert 10 < len(want) < 100


@pytest.mark.parametrize("odd", [None, 2.5, "7", float("nan"), float("-inf")])
def test_lone_gte_and_lte_on_a_large_collection_match_their_not_form(ee_local, odd):
    """``ee.Filter.gte`` / ``lte`` arrive as ``not(lt)`` / ``not(gt)``: tested on a column of numbers (more than
    64 elements) they keep what Python's ``not (x < v)`` keeps, NaN, nulls and strings included (a comparison
    with them fails, so its negation passes), not what ``x >= v`` would."""
    ee = ee_local
    xs: list = [(i * 37) % 101 - 50 + 0.25 for i in range(100)]
    xs[3] = odd
    fc = ee.FeatureCollection([ee.Feature(None, {"k": i, "x": x}) for i, x in enumerate(xs)])

    def fails(x, compare):  # Earth Engine's comparison: only numbers with numbers (or strings with strings)
        return not (type(x) in (int, float) and compare(x))

    got_gte = fc.filter(ee.Filter.gte("x", 0)).aggregate_array("k").getInfo()
    got_lte = fc.filter(ee.Filter.lte("x", 0)).aggregate_array("k").getInfo()
    assert got_gte == [i for i, x in enumerate(xs) if fails(x, lambda v: v < 0)]
    assert got_lte == [i for i, x in enumerate(xs) if fails(x, lambda v: v > 0)]
    number = type(odd) is float and odd == odd
    assert (3 in got_gte, 3 in got_lte) == ((odd > 0, odd < 0) if number else (True, True))

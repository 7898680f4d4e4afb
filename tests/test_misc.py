"""ee.Algorithms.If, IsEqual, ObjectType and Describe through the real ``ee`` client.

Expected values are the outputs printed in Earth Engine's API reference
examples (page named in each test) or follow from the documented definitions
(the truth rules of If's 'condition' argument).
"""

from __future__ import annotations

import pytest

from gee_mining.local.core import registry


def requires(*names: str) -> None:
    missing = [n for n in names if n not in registry.implemented()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, which is not implemented yet")


@pytest.mark.parametrize("condition, expected", [(False, "*false*"), (True, "*true*")])
def test_if_documented(ee_local, condition, expected):
    # ee.Algorithms.If
    assert ee_local.Algorithms.If(condition, "*true*", "*false*").getInfo() == expected


def test_if_compare_to_documented(ee_local):
    requires("String.compareTo")
    # ee.Algorithms.If: compareTo gives 0 (false) for equal strings, nonzero (true) otherwise.
    assert ee_local.Algorithms.If(ee_local.String("Tree").compareTo("Tree"), 0, 1).getInfo() == 1
    assert ee_local.Algorithms.If(ee_local.String("NotTree").compareTo("Tree"), 0, 1).getInfo() == 0


@pytest.mark.parametrize(
    "condition, expected",
    [
        # If's 'condition': 0 and NaN, empty strings, lists and dictionaries, and null are false.
        (0, False),
        (0.0, False),
        (float("nan"), False),
        ("", False),
        ([], False),
        ({}, False),
        (None, False),
        (1, True),
        (-0.5, True),
        ("false", True),
        ([0], True),
        ({"a": 0}, True),
    ],
)
def test_if_truth_rules(ee_local, condition, expected):
    got = ee_local.Algorithms.If(condition, "yes", "no").getInfo()
    assert got == ("yes" if expected else "no")


def test_if_evaluates_only_the_chosen_branch(ee_local):
    # The branch not taken would fail (a missing dictionary key); If must not evaluate it.
    failing = ee_local.Dictionary({}).get("missing")
    assert ee_local.Algorithms.If(True, "ok", failing).getInfo() == "ok"
    assert ee_local.Algorithms.If(False, failing, "ok").getInfo() == "ok"


def test_if_inside_mapped_function(ee_local):
    requires("Number.gt", "Number.multiply")
    got = ee_local.List([1, 5, 2, 8]).map(
        lambda x: ee_local.Algorithms.If(ee_local.Number(x).gt(3), ee_local.Number(x).multiply(10), x)
    )
    assert got.getInfo() == [1, 50, 2, 80]


@pytest.mark.parametrize(
    "left, right, expected",
    [
        (1, 1, True),
        (1, 2, False),
        ("a", "a", True),
        ("a", "b", False),
        ([1, "a"], [1, "a"], True),
        ([1, "a"], ["a", 1], False),
        ({"a": 1, "b": [2]}, {"b": [2], "a": 1}, True),
        (True, 1, False),
        (None, None, True),
        (None, 0, False),
    ],
)
def test_is_equal(ee_local, left, right, expected):
    assert ee_local.Algorithms.IsEqual(left, right).getInfo() is expected


def test_is_equal_dates(ee_local):
    a = ee_local.Date("2020-01-01")
    assert ee_local.Algorithms.IsEqual(a, ee_local.Date(1577836800000)).getInfo() is True
    assert ee_local.Algorithms.IsEqual(a, 1577836800000).getInfo() is False  # a Date is not a Number


@pytest.mark.parametrize(
    "make, expected",
    [
        # ee.Algorithms.ObjectType
        (lambda ee: 1, "Integer"),
        (lambda ee: ee.Number(1), "Integer"),
        (lambda ee: ee.String("a string"), "String"),
        (lambda ee: ee.List([1, "a string"]), "List"),
        # By definition of the types.
        (lambda ee: 2.5, "Float"),
        (lambda ee: 2**40, "Long"),
        (lambda ee: True, "Boolean"),
        (lambda ee: ee.Dictionary({"a": 1}), "Dictionary"),
        (lambda ee: ee.Date("2020-01-01"), "Date"),
        (lambda ee: ee.DateRange("2020-01-01", "2020-02-01"), "DateRange"),
    ],
)
def test_object_type(ee_local, make, expected):
    assert ee_local.Algorithms.ObjectType(make(ee_local)).getInfo() == expected


def test_object_type_of_feature_property(ee_local):
    requires("Feature", "Element.get")
    # ee.Algorithms.ObjectType: a feature's integer property is "Integer".
    feature = ee_local.Feature(None, {"int": 42})
    assert ee_local.Algorithms.ObjectType(feature.get("int")).getInfo() == "Integer"


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda ee: ee.List([1, "a", [True]]), [1, "a", [True]]),
        (lambda ee: ee.Dictionary({"b": 2, "a": 1}), {"a": 1, "b": 2}),
        (lambda ee: ee.Date(0), {"type": "Date", "value": 0}),
        (lambda ee: ee.DateRange(0, 1000), {"type": "DateRange", "dates": [0, 1000]}),
    ],
)
def test_describe(ee_local, make, expected):
    # ee.Algorithms.Describe: "a simple JSON-compatible structure", as getInfo shows the object.
    assert ee_local.Algorithms.Describe(make(ee_local)).getInfo() == expected

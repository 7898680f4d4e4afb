"""ee.List algorithms through the real ``ee`` client.

Expected values are the outputs printed in Earth Engine's API reference
examples (page named in each test, e.g. "ee.List.sequence"; the examples are
those of google/earthengine-community samples/*/apidocs) or follow from the
algorithm's documented definition, computed independently with plain Python.
"""

from __future__ import annotations

import pytest

from gee_mining.local.core import registry


def requires(*names: str) -> None:
    """Skip when an algorithm another module provides is not registered yet."""
    missing = [n for n in names if n not in registry.implemented()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, which is not implemented yet")


# -- documented examples ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        # ee.List.sequence
        (dict(start=0, end=5), [0, 1, 2, 3, 4, 5]),
        (dict(start=0, end=10, step=2), [0, 2, 4, 6, 8, 10]),
        (dict(start=0, end=None, step=2, count=6), [0, 2, 4, 6, 8, 10]),
        (dict(start=0, end=None, step=-2, count=6), [0, -2, -4, -6, -8, -10]),
        (dict(start=0, end=10, step=2, count=3), [0, 5, 10]),
        (dict(start=10, count=3), [10, 11, 12]),
        (dict(start=3, step=2, end=6), [3, 5]),
        (dict(start=-1e9, end=1e9, count=3), [-1000000000, 0, 1000000000]),
    ],
)
def test_sequence_documented(ee_local, kwargs, expected):
    assert ee_local.List.sequence(**kwargs).getInfo() == expected


def test_sequence_count_overrides_step(ee_local):
    # ee.List.sequence: "Step ignored when present along with count" -> 999 elements.
    got = ee_local.List.sequence(0, 10, 2, 999).getInfo()
    assert len(got) == 999 and got[0] == 0 and got[-1] == 10


def test_sequence_fractional_step(ee_local):
    assert ee_local.List.sequence(0, 1, 0.25).getInfo() == [0, 0.25, 0.5, 0.75, 1]


def test_sequence_needs_end_or_count(ee_local):
    with pytest.raises(ee_local.EEException, match="List.sequence"):
        ee_local.List.sequence(0).getInfo()


@pytest.mark.parametrize(
    "base, element, expected",
    [
        # ee.List.add
        ([], "b", ["b"]),
        (["a"], "b", ["a", "b"]),
        (["a"], 1, ["a", 1]),
        (["a"], True, ["a", True]),
        (["a"], [], ["a", []]),
        (["a"], ["b"], ["a", ["b"]]),
        (["a"], {}, ["a", {}]),
        (["a"], {"b": "c"}, ["a", {"b": "c"}]),
    ],
)
def test_add_documented(ee_local, base, element, expected):
    assert ee_local.List(base).add(element).getInfo() == expected


def test_add_computed_values(ee_local):
    # ee.List.add: ee.String('b') and ee.Number(1) are appended as plain values.
    assert ee_local.List(["a"]).add(ee_local.String("b")).getInfo() == ["a", "b"]
    assert ee_local.List(["a"]).add(ee_local.Dictionary({"b": "c"})).getInfo() == ["a", {"b": "c"}]


@pytest.mark.parametrize(
    "a, b, expected",
    [
        # ee.List.cat
        (["dog"], ["squirrel"], ["dog", "squirrel"]),
        (["moose"], ["&", "squirrel"], ["moose", "&", "squirrel"]),
        ([["a", "b"]], [["1", 1]], [["a", "b"], ["1", 1]]),
        ([], [], []),
        ([1], [], [1]),
        ([], [2], [2]),
    ],
)
def test_cat_documented(ee_local, a, b, expected):
    assert ee_local.List(a).cat(ee_local.List(b)).getInfo() == expected


@pytest.mark.parametrize("element, expected", [(0, 1), (2, 2), (9, 0)])
def test_frequency_documented(ee_local, element, expected):
    # ee.List.frequency: list [0, 1, 2, 2, 3, 4].
    assert ee_local.List([0, 1, 2, 2, 3, 4]).frequency(element).getInfo() == expected


@pytest.mark.parametrize("index, expected", [(1, 10), (3, 20), (-1, 30), (-2, 25), (0, 5)])
def test_get_documented(ee_local, index, expected):
    # ee.List.get: list [5, 10, 15, 20, 25, 30]; negative indices count from the end.
    assert ee_local.List([5, 10, 15, 20, 25, 30]).get(index).getInfo() == expected


def test_get_computed_index(ee_local):
    # ee.List.get: "Computed object index input": list.get(list.get(0)) is list.get(5).
    lst = ee_local.List([5, 10, 15, 20, 25, 30])
    assert lst.get(lst.get(0)).getInfo() == 30


def test_get_then_number_add(ee_local):
    requires("Number.add")
    # ee.List.get: ee.Number(list.get(1)).add(2) -> 12.
    lst = ee_local.List([5, 10, 15, 20, 25, 30])
    assert ee_local.Number(lst.get(1)).add(2).getInfo() == 12


@pytest.mark.parametrize("index", [6, -7, 100])
def test_get_out_of_range(ee_local, index):
    with pytest.raises(ee_local.EEException, match="List.get"):
        ee_local.List([5, 10, 15, 20, 25, 30]).get(index).getInfo()


@pytest.mark.parametrize(
    "args, expected",
    [
        # ee.List.splice: list [0, 1, 2, 3, 4].
        ((2, 1, None), [0, 1, 3, 4]),
        ((-2, 1), [0, 1, 2, 4]),
        ((1, 3), [0, 4]),
        ((2, 0, ["X", "Y", "Z"]), [0, 1, "X", "Y", "Z", 2, 3, 4]),
        ((2, 3, ["X", "Y", "Z"]), [0, 1, "X", "Y", "Z"]),
    ],
)
def test_splice_documented(ee_local, args, expected):
    assert ee_local.List([0, 1, 2, 3, 4]).splice(*args).getInfo() == expected


def test_iterate_documented_halving(ee_local):
    requires("Number.divide")

    # ee.List.iterate: a series of sequentially halved quantities starting at 1000.
    def half_of_previous(current, previous):
        previous = ee_local.List(previous)
        return previous.add(ee_local.Number(previous.get(-1)).divide(2))

    got = ee_local.List(ee_local.List.sequence(1, 10).iterate(half_of_previous, [1000])).getInfo()
    assert got == pytest.approx([1000 / 2**i for i in range(11)])


# -- filters and reducers ------------------------------------------------------


@pytest.mark.parametrize(
    "make_filter, expected",
    [
        # ee.List.filter: list [1, 2, 3, null, 6, 7], elements read as property 'item'.
        (lambda ee: ee.Filter.eq("item", 3), [3]),
        (lambda ee: ee.Filter.gt("item", 4), [6, 7]),
        (lambda ee: ee.Filter.notNull(["item"]), [1, 2, 3, 6, 7]),
        (lambda ee: ee.Filter.inList("item", [1, 98, 99]), [1]),
    ],
)
def test_filter_documented(ee_local, make_filter, expected):
    requires("Filter.equals", "Filter.greaterThan", "Filter.notNull", "Filter.inList")
    assert ee_local.List([1, 2, 3, None, 6, 7]).filter(make_filter(ee_local)).getInfo() == expected


def test_filter_and_range(ee_local):
    # ee.List.filter: "List items 3 <= x <= 6". The client writes gte as not(lessThan),
    # so the documented list's null is left out here: Earth Engine's answer for it is
    # not printed in the reference.
    requires("Filter.and", "Filter.not", "Filter.lessThan", "Filter.greaterThan")
    f = ee_local.Filter.And(ee_local.Filter.gte("item", 3), ee_local.Filter.lte("item", 6))
    assert ee_local.List([1, 2, 3, 6, 7]).filter(f).getInfo() == [3, 6]


def test_reduce_single_output(ee_local):
    requires("Reducer.mean")
    # ee.List.reduce: one output is returned directly.
    assert ee_local.List([1, 2, 3, 4]).reduce(ee_local.Reducer.mean()).getInfo() == pytest.approx(2.5)


def test_reduce_several_outputs(ee_local):
    requires("Reducer.minMax")
    # ee.List.reduce: several outputs come back as a dictionary of named outputs.
    assert ee_local.List([4, -1, 7]).reduce(ee_local.Reducer.minMax()).getInfo() == {"min": -1, "max": 7}


# -- user functions ------------------------------------------------------------


def test_map_nested_with_closures(ee_local):
    requires("Number.add")
    outer = ee_local.Number(100)

    def row(x):
        return ee_local.List([10, 20]).map(lambda y: ee_local.Number(y).add(x).add(outer))

    got = ee_local.List([1, 2, 3]).map(row).getInfo()
    assert got == [[10 + x + 100, 20 + x + 100] for x in (1, 2, 3)]


def test_map_drop_nulls(ee_local):
    requires("Number.gt")

    def keep_big(x):
        return ee_local.Algorithms.If(ee_local.Number(x).gt(2), x, None)

    # ee.List.map: with dropNulls the elements mapped to null are dropped.
    assert ee_local.List([1, 2, 3, 4]).map(keep_big, True).getInfo() == [3, 4]


def test_iterate_nested_map_in_accumulator(ee_local):
    requires("Number.multiply", "Number.add")
    factor = ee_local.Number(3)

    def step(x, acc):
        scaled = ee_local.List(acc).map(lambda v: ee_local.Number(v).multiply(factor))
        return ee_local.List(scaled).add(ee_local.Number(x).add(0))

    got = ee_local.List([1, 2, 3]).iterate(step, ee_local.List([])).getInfo()
    expected: list = []
    for x in (1, 2, 3):
        expected = [v * 3 for v in expected] + [x]
    assert got == expected


def test_iterate_sum(ee_local):
    requires("Number.add")
    got = ee_local.List.sequence(1, 100).iterate(lambda x, acc: ee_local.Number(acc).add(x), 0).getInfo()
    assert got == sum(range(1, 101))


# -- the rest, by definition ---------------------------------------------------

ITEMS = [3, "a", 1, [1, 2], 3, {"k": 1}, True, 1.0]


@pytest.mark.parametrize(
    "element, expected",
    [(3, True), (1, True), (1.0, True), ("a", True), ("b", False), ([1, 2], True), ([2, 1], False), (False, False)],
)
def test_contains(ee_local, element, expected):
    assert ee_local.List(ITEMS).contains(element).getInfo() is expected


def test_booleans_are_not_numbers(ee_local):
    assert ee_local.List([1, 0]).contains(True).getInfo() is False
    assert ee_local.List([True]).indexOf(1).getInfo() == -1


@pytest.mark.parametrize("other, expected", [([3, "a"], True), ([{"k": 1}, [1, 2]], True), ([3, 4], False), ([], True)])
def test_contains_all(ee_local, other, expected):
    assert ee_local.List(ITEMS).containsAll(other).getInfo() is expected


def test_distinct_keeps_first_occurrences(ee_local):
    assert ee_local.List([3, 1, 3, "x", 2, 1, "x", [1], [1]]).distinct().getInfo() == [3, 1, "x", 2, [1]]


@pytest.mark.parametrize(
    "a, b, expected", [([1, "a"], [1, "a"], True), ([1, "a"], ["a", 1], False), ([1], [1, 1], False), ([], [], True)]
)
def test_equals(ee_local, a, b, expected):
    assert ee_local.List(a).equals(b).getInfo() is expected


def test_flatten_nested(ee_local):
    assert ee_local.List([[1, [2, [3]]], 4, [], ["a"]]).flatten().getInfo() == [1, 2, 3, 4, "a"]


@pytest.mark.parametrize("element, expected", [(3, 0), ("a", 1), (1, 2), ({"k": 1}, 5), ("zz", -1)])
def test_index_of(ee_local, element, expected):
    assert ee_local.List(ITEMS).indexOf(element).getInfo() == expected


@pytest.mark.parametrize(
    "target, first, last", [([1, 2], 0, 2), ([2, 1], 1, 1), ([1, 2, 1, 2], 0, 0), ([5], -1, -1), ([1, 2, 3], -1, -1)]
)
def test_sublist_positions(ee_local, target, first, last):
    lst = ee_local.List([1, 2, 1, 2])
    assert lst.indexOfSublist(target).getInfo() == first
    assert lst.lastIndexOfSubList(target).getInfo() == last


@pytest.mark.parametrize("index, expected", [(0, ["x", 1, 2, 3]), (3, [1, 2, 3, "x"]), (-1, [1, 2, "x", 3])])
def test_insert(ee_local, index, expected):
    assert ee_local.List([1, 2, 3]).insert(index, "x").getInfo() == expected


@pytest.mark.parametrize(
    "items, sep, expected",
    [
        (["a", "b", "c"], ",", "a,b,c"),
        ([1, 2.5, "x", True], "-", "1-2.5-x-true"),
        (["a", "b"], None, "ab"),
        ([], "/", ""),
    ],
)
def test_join(ee_local, items, sep, expected):
    lst = ee_local.List(items)
    assert (lst.join() if sep is None else lst.join(sep)).getInfo() == expected


@pytest.mark.parametrize("items", [[], [1], list(range(7))])
def test_length_and_size(ee_local, items):
    assert ee_local.List(items).length().getInfo() == len(items)
    assert ee_local.List(items).size().getInfo() == len(items)


def test_remove_first_occurrence(ee_local):
    assert ee_local.List([1, 2, 1, 3]).remove(1).getInfo() == [2, 1, 3]
    assert ee_local.List([1, 2]).remove(9).getInfo() == [1, 2]


def test_remove_all(ee_local):
    assert ee_local.List([1, 2, 1, 3, "a", [1]]).removeAll([1, "a", [1]]).getInfo() == [2, 3]


@pytest.mark.parametrize("value, count", [("x", 3), ([1], 2), (5, 0)])
def test_repeat(ee_local, value, count):
    assert ee_local.List.repeat(value, count).getInfo() == [value] * count


def test_replace_and_replace_all(ee_local):
    assert ee_local.List([1, 2, 1]).replace(1, "x").getInfo() == ["x", 2, 1]
    assert ee_local.List([1, 2, 1]).replaceAll(1, "x").getInfo() == ["x", 2, "x"]


def test_reverse(ee_local):
    assert ee_local.List([1, "a", [2]]).reverse().getInfo() == [[2], "a", 1]


@pytest.mark.parametrize("distance", [-7, -1, 0, 1, 2, 5, 12])
def test_rotate(ee_local, distance):
    items = [1, 2, 3, 4, 5]
    d = distance % len(items)
    # Java's Collections.rotate: the element at i moves to (i + distance) mod size.
    expected = [items[(i - d) % len(items)] for i in range(len(items))]
    assert ee_local.List(items).rotate(distance).getInfo() == expected


@pytest.mark.parametrize("index, expected", [(0, ["x", 2, 3]), (-1, [1, 2, "x"])])
def test_set(ee_local, index, expected):
    assert ee_local.List([1, 2, 3]).set(index, "x").getInfo() == expected


def test_shuffle_is_a_seeded_permutation(ee_local):
    # ee.List.shuffle: the same seed gives the same order. Earth Engine's own
    # order for a seed is not reproducible offline, so only that is checked.
    items = list(range(20))
    a = ee_local.List(items).shuffle(7).getInfo()
    b = ee_local.List(items).shuffle(7).getInfo()
    assert sorted(a) == items and a == b


@pytest.mark.parametrize(
    "args, expected",
    [((1,), [1, 2, 3, 4]), ((1, 3), [1, 2]), ((-2,), [3, 4]), ((0, 100), [0, 1, 2, 3, 4]), ((0, 5, 2), [0, 2, 4])],
)
def test_slice(ee_local, args, expected):
    # ee.List.slice: end exclusive, negatives from the end, large values truncated.
    assert ee_local.List([0, 1, 2, 3, 4]).slice(*args).getInfo() == expected


@pytest.mark.parametrize(
    "items, expected", [([3, 1, 2.5, -4], [-4, 1, 2.5, 3]), (["b", "a", "C"], ["C", "a", "b"]), ([], [])]
)
def test_sort(ee_local, items, expected):
    assert ee_local.List(items).sort().getInfo() == expected


def test_sort_by_keys(ee_local):
    # ee.List.sort: the keys are sorted and the list's elements placed in the same order.
    assert ee_local.List(["c", "a", "b"]).sort([3, 1, 2]).getInfo() == ["a", "b", "c"]


def test_sort_keys_length_mismatch(ee_local):
    with pytest.raises(ee_local.EEException, match="List.sort"):
        ee_local.List([1, 2]).sort([1]).getInfo()


@pytest.mark.parametrize("pos1, pos2, expected", [(0, 2, [3, 2, 1]), (-1, 0, [3, 2, 1]), (1, 1, [1, 2, 3])])
def test_swap(ee_local, pos1, pos2, expected):
    assert ee_local.List([1, 2, 3]).swap(pos1, pos2).getInfo() == expected


def test_zip_and_unzip(ee_local):
    # Shorter list bounds zip; unzip stops at the shortest inner list.
    assert ee_local.List([1, 2, 3]).zip(["a", "b"]).getInfo() == [[1, "a"], [2, "b"]]
    assert ee_local.List([[1, "a", True], [2, "b"]]).unzip().getInfo() == [[1, 2], ["a", "b"]]


def test_typed_getters(ee_local):
    requires("GeometryConstructors.Point")
    lst = ee_local.List([1.5, "s", ee_local.Geometry.Point([1, 2])])
    assert lst.getNumber(0).getInfo() == 1.5
    assert lst.getString(-2).getInfo() == "s"
    assert lst.getGeometry(2).getInfo()["coordinates"] == [1, 2]
    with pytest.raises(ee_local.EEException, match="List.getNumber"):
        lst.getNumber(1).getInfo()

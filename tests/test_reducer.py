"""Earth Engine reducers (``ee.Reducer.*``), through the real ``ee`` client and directly.

References are independent: Python's ``statistics``/``math`` and numpy, closed
forms, and the Earth Engine API reference pages named in comments
("ee.Reducer.percentile", "ee.Reducer.fixedHistogram", ...). Tests that need an
algorithm written elsewhere (``List.reduce``, ``Collection.reduceColumns``)
skip, saying so, until it is registered.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from gee_mining.local.core import registry
from gee_mining.local.core.errors import EngineError
from gee_mining.local.values import reducer as R

TEST_DATA = Path(__file__).parent / "data"
VALUES = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
FLOATS = [2.5, -1.25, 7.0, 0.5, 3.75, 3.75, 10.0]


def _needs(name: str) -> None:
    if name not in registry.implemented():
        pytest.skip(f"{name} is not registered yet (it belongs to another family module)")


@pytest.fixture
def list_reduce(ee_local):
    _needs("List.reduce")
    return lambda values, reducer: ee_local.List(values).reduce(reducer).getInfo()


# -- through ee: List.reduce ---------------------------------------------------


@pytest.mark.parametrize("values", [VALUES, FLOATS, [7], [1, None, 3]])
@pytest.mark.parametrize(
    "name, reference",
    [
        ("mean", statistics.fmean),
        ("sum", math.fsum),
        ("min", min),
        ("max", max),
        ("count", len),
        ("median", statistics.median),
        ("stdDev", statistics.pstdev),
        ("variance", statistics.pvariance),
        ("product", math.prod),
    ],
)
def test_single_output_reducers_on_lists(ee_local, list_reduce, values, name, reference):
    # ee.List.reduce: "If the reducer returns a single output, it is returned directly".
    # ee.Reducer.count: "the number of non-null inputs" - nulls are skipped.
    present = [v for v in values if v is not None]
    got = list_reduce(values, getattr(ee_local.Reducer, name)())
    assert got == pytest.approx(reference(present), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("values", [VALUES, FLOATS, [2, 4]])
def test_sample_statistics(ee_local, list_reduce, values):
    assert list_reduce(values, ee_local.Reducer.sampleStdDev()) == pytest.approx(statistics.stdev(values))
    assert list_reduce(values, ee_local.Reducer.sampleVariance()) == pytest.approx(statistics.variance(values))


def test_integer_sums_and_counts_stay_integers(ee_local, list_reduce):
    assert list_reduce(VALUES, ee_local.Reducer.sum()) == 44
    assert isinstance(list_reduce(VALUES, ee_local.Reducer.count()), int)
    assert list_reduce([1, None, None, 2], ee_local.Reducer.countEvery()) == 4


def test_min_max_gives_a_dictionary(ee_local, list_reduce):
    # ee.List.reduce: several outputs come back as a dictionary of the named outputs.
    assert list_reduce(FLOATS, ee_local.Reducer.minMax()) == {"min": -1.25, "max": 10.0}


@pytest.mark.parametrize("values", [VALUES, FLOATS, [1, 2, 3, 4], [10]])
def test_percentiles_include_min_median_max(ee_local, list_reduce, values):
    # ee.Reducer.percentile: "[0, 50, 100] will produce outputs named 'p0', 'p50', and 'p100' with the
    # min, median, and max respectively".
    got = list_reduce(values, ee_local.Reducer.percentile([0, 50, 100]))
    assert got == {"p0": min(values), "p50": pytest.approx(statistics.median(values)), "p100": max(values)}


def test_percentile_output_names_and_interpolation(ee_local, list_reduce):
    got = list_reduce([10, 20, 30, 40, 50], ee_local.Reducer.percentile([25, 90], ["q1", "top"]))
    assert got == {"q1": pytest.approx(20.0), "top": pytest.approx(46.0)}  # linear between closest ranks


def test_mode_picks_most_frequent(ee_local, list_reduce):
    assert list_reduce(VALUES, ee_local.Reducer.mode()) == statistics.mode(VALUES)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("first", None),
        ("firstNonNull", 3),
        ("last", 7),
        ("lastNonNull", 7),
        ("countDistinct", 4),
        ("countDistinctNonNull", 3),
        ("countRuns", 4),
    ],
)
def test_order_and_distinct_reducers(ee_local, list_reduce, name, expected):
    values = [None, 3, 3, 5, None, 5, 3, 7]
    assert list_reduce(values, getattr(ee_local.Reducer, name)()) == expected


def test_to_list_and_frequency_histogram(ee_local, list_reduce):
    assert list_reduce([3, None, "a", 3], ee_local.Reducer.toList()) == [3, "a", 3]
    # ee.Reducer.frequencyHistogram: a frequency table of the inputs, keyed by value.
    assert list_reduce([1, 2, 2, 2.5, "x"], ee_local.Reducer.frequencyHistogram()) == {
        "1": 1,
        "2": 2,
        "2.5": 1,
        "x": 1,
    }


def test_fixed_histogram(ee_local, list_reduce):
    # ee.Reducer.fixedHistogram: "Values outside of the [min, max) range are ignored. The output is a Nx2
    # array of bucket lower edges and counts (or cumulative counts)".
    values = [0, 0.5, 1, 2.2, 3.9, 4, -1]
    expected = np.histogram([v for v in values if 0 <= v < 4], bins=4, range=(0, 4))[0]
    got = list_reduce(values, ee_local.Reducer.fixedHistogram(0, 4, 4))
    assert got == [[float(i), int(c)] for i, c in enumerate(expected)]
    cumulative = list_reduce(values, ee_local.Reducer.fixedHistogram(0, 4, 4, True))
    assert [c for _, c in cumulative] == list(np.cumsum(expected))


@pytest.mark.parametrize(
    "name, values, expected",
    [
        ("allNonZero", [1, 2, -3], 1),
        ("allNonZero", [1, 0, 3], 0),
        ("anyNonZero", [0, 0, 2], 1),
        ("anyNonZero", [0, 0], 0),
        ("and", [1, 0], 0),
        ("or", [1, 0], 1),
        ("bitwiseAnd", [0b1110, 0b0111], 0b0110),
        ("bitwiseOr", [0b1000, 0b0011], 0b1011),
    ],
)
def test_logical_and_bitwise(ee_local, list_reduce, name, values, expected):
    # Reducer.and / Reducer.or by name: the client's Reducer.And/Or wrappers are deprecated.
    reducer = ee_local.ApiFunction.call_(f"Reducer.{name}")
    assert list_reduce(values, reducer) == expected


def test_circular_statistics(ee_local, list_reduce):
    # ee.Reducer.circularStddev: "using the sqrt(-2 * ln(R)) formula".
    angles = [math.pi - 0.1, -math.pi + 0.1, math.pi]
    s, c = sum(map(math.sin, angles)), sum(map(math.cos, angles))
    r = math.hypot(s, c) / len(angles)
    assert abs(list_reduce(angles, ee_local.Reducer.circularMean())) == pytest.approx(math.pi)
    assert list_reduce(angles, ee_local.Reducer.circularVariance()) == pytest.approx(1 - r)
    assert list_reduce(angles, ee_local.Reducer.circularStddev()) == pytest.approx(math.sqrt(-2 * math.log(r)))


def test_two_input_reducers_take_list_elements_as_tuples(ee_local, list_reduce):
    # ee.List.reduce: "If the reducer takes more than 1 input, then each element in the list is assumed
    # to be a list of inputs."
    x = [0.0, 1.0, 2.0, 3.0, 4.0]
    y = [1.1, 2.9, 5.2, 7.1, 8.8]
    pairs = [[a, b] for a, b in zip(x, y, strict=True)]
    slope, offset = np.polyfit(x, y, 1)
    got = list_reduce(pairs, ee_local.Reducer.linearFit())
    assert got == {"scale": pytest.approx(slope), "offset": pytest.approx(offset)}
    r = float(np.corrcoef(x, y)[0, 1])
    assert list_reduce(pairs, ee_local.Reducer.spearmansCorrelation()) == pytest.approx(1.0)
    pearson = list_reduce(pairs, ee_local.Reducer.pearsonsCorrelation())
    assert pearson["correlation"] == pytest.approx(r)


def test_min_with_extra_inputs(ee_local, list_reduce):
    # ee.Reducer.min: "If numInputs is greater than one, also outputs the corresponding values of the
    # additional inputs."
    rows = [[3, "c", 30], [1, "a", 10], [2, "b", 20]]
    assert list_reduce(rows, ee_local.Reducer.min(3)) == {"min": 1, "min1": "a", "min2": 10}
    assert list_reduce([r[:2] for r in rows], ee_local.Reducer.max(2)) == {"max": 3, "max1": "c"}


def test_combined_reducer(ee_local, list_reduce):
    # ee.Reducer.combine: outputs of reducer1 followed by those of reducer2, prefixed.
    combined = ee_local.Reducer.mean().combine(reducer2=ee_local.Reducer.stdDev(), sharedInputs=True)
    assert list_reduce(FLOATS, combined) == {
        "mean": pytest.approx(statistics.fmean(FLOATS)),
        "stdDev": pytest.approx(statistics.pstdev(FLOATS)),
    }


def test_grouped_reducer(ee_local, list_reduce):
    # ee.Reducer.group: records grouped by the value of input groupField, each group reduced.
    rows = [[1, "a"], [2, "b"], [3, "a"], [None, "b"], [10, None]]
    got = list_reduce(rows, ee_local.Reducer.sum().group(groupField=1, groupName="label"))
    assert got == [{"label": "a", "sum": 4}, {"label": "b", "sum": 2}]


def test_repeat_and_for_each(ee_local, list_reduce):
    rows = [[1, 10], [2, 20], [3, 60]]
    assert list_reduce(rows, ee_local.Reducer.mean().repeat(2)) == [2.0, 30.0]
    assert list_reduce(rows, ee_local.Reducer.minMax().forEach(["a", "b"])) == {
        "a_min": 1,
        "a_max": 3,
        "b_min": 10,
        "b_max": 60,
    }


def test_split_weights_gives_a_weighted_mean(ee_local, list_reduce):
    # ee.Reducer.splitWeights: each weighted input becomes two unweighted inputs (value, weight).
    rows = [[1.0, 1.0], [4.0, 3.0], [10.0, 0.0]]
    assert list_reduce(rows, ee_local.Reducer.mean().splitWeights()) == pytest.approx(13 / 4)


# -- through ee: the reducers themselves --------------------------------------


@pytest.mark.parametrize(
    "make, outputs",
    [
        (lambda ee: ee.Reducer.minMax(), ["min", "max"]),
        (lambda ee: ee.Reducer.percentile([5, 50, 97.5]), ["p5", "p50", "p97.5"]),
        (lambda ee: ee.Reducer.mean().combine(ee.Reducer.count(), "n_"), ["mean", "n_count"]),
        (lambda ee: ee.Reducer.sum().group(), ["groups"]),
        (lambda ee: ee.Reducer.linearFit(), ["scale", "offset"]),
        (lambda ee: ee.Reducer.pearsonsCorrelation(), ["correlation", "p-value"]),
        (lambda ee: ee.Reducer.minMax().setOutputs(["lo", "hi"]), ["lo", "hi"]),
        (lambda ee: ee.Reducer.mean().forEach(["B1", "B2"]), ["B1", "B2"]),
        (lambda ee: ee.Reducer.circularStddev(), ["circularStdDev"]),
        (lambda ee: ee.Reducer.toList(2), ["list"]),
    ],
)
def test_get_outputs(ee_local, make, outputs):
    # ee.Reducer.getOutputs: "a list of the output names of the given reducer".
    assert make(ee_local).getOutputs().getInfo() == outputs


def test_reducer_info_names_its_algorithm(ee_local):
    assert ee_local.Reducer.mean().getInfo()["type"] == "Reducer.mean"
    info = ee_local.Reducer.mean().combine(ee_local.Reducer.count(), sharedInputs=True).getInfo()
    assert info["type"] == "Reducer.combine"
    assert info["reducer2"]["type"] == "Reducer.count"


def test_bad_arguments_raise(ee_local):
    with pytest.raises(ee_local.EEException, match="between 0 and 100"):
        ee_local.Reducer.percentile([150]).getInfo()
    with pytest.raises(ee_local.EEException, match="same number of inputs"):
        ee_local.Reducer.mean().combine(ee_local.Reducer.linearFit(), sharedInputs=True).getInfo()


# -- through ee: collections ---------------------------------------------------


def _squares():
    """The squares test table's properties, read straight from its GeoJSON."""
    data = json.loads((TEST_DATA / "squares.geojson").read_text())
    return [f["properties"] for f in data["features"]]


SQUARES = "projects/gee-mining-test/assets/squares"


def test_reduce_columns_mean_and_combined(ee_local):
    _needs("Collection.reduceColumns")
    values = [p["value"] for p in _squares() if p.get("value") is not None]
    fc = ee_local.FeatureCollection(SQUARES)
    assert fc.reduceColumns(ee_local.Reducer.mean(), ["value"]).getInfo() == {
        "mean": pytest.approx(statistics.fmean(values))
    }
    both = ee_local.Reducer.minMax().combine(ee_local.Reducer.count(), "n_")
    assert fc.reduceColumns(both, ["value", "value"]).getInfo() == {
        "min": min(values),
        "max": max(values),
        "n_count": len(values),
    }


def test_reduce_columns_grouped(ee_local):
    # The grouping guide's pattern: reduceColumns(reducer.group(groupField=1), [value, group]).
    _needs("Collection.reduceColumns")
    expected: dict = {}
    for p in _squares():
        if p.get("value") is not None and p.get("kind") is not None:
            expected[p["kind"]] = expected.get(p["kind"], 0) + p["value"]
    fc = ee_local.FeatureCollection(SQUARES)
    got = fc.reduceColumns(ee_local.Reducer.sum().group(groupField=1, groupName="kind"), ["value", "kind"]).getInfo()
    assert got == {"groups": [{"kind": k, "sum": pytest.approx(v)} for k, v in sorted(expected.items())]}


def test_reduce_columns_weighted(ee_local):
    _needs("Collection.reduceColumns")
    rows = [p for p in _squares() if p.get("value") is not None]
    fc = ee_local.FeatureCollection(SQUARES)
    got = fc.reduceColumns(ee_local.Reducer.mean(), ["value"], ["value"]).getInfo()["mean"]
    weights = [r["value"] for r in rows if r["value"] > 0]
    assert got == pytest.approx(sum(w * w for w in weights) / sum(weights))


# -- the Reducer class directly (image reductions will use it like this) ------


def test_numpy_columns_and_masks():
    x = np.array([1.0, 2.0, 3.0, 100.0])
    masked = np.ma.masked_array(x, mask=[False, False, False, True])
    assert R.mean().reduce([x]) == {"mean": pytest.approx(26.5)}
    assert R.mean().reduce([masked]) == {"mean": pytest.approx(2.0)}
    assert R.count().reduce([masked]) == {"count": 3}
    assert R.count_every().reduce([masked]) == {"count": 4}
    assert R.min_max().reduce([masked]) == {"min": 1.0, "max": 3.0}
    assert R.sum_().reduce([np.arange(5, dtype=np.int16)]) == {"sum": 10}


def test_weights_weight_and_zero_weights_drop_rows():
    x = np.array([1.0, 2.0, 4.0, 50.0])
    w = np.array([1.0, 1.0, 2.0, 0.0])
    assert R.mean().reduce([x], w) == {"mean": pytest.approx(np.average(x[:3], weights=w[:3]))}
    assert R.sum_().reduce([x], w) == {"sum": pytest.approx(11.0)}
    assert R.mean().unweighted().reduce([x], w) == {"mean": pytest.approx(7 / 3)}
    assert R.count().reduce([x], w) == {"count": 3}
    assert R.max_(1).reduce([x], w) == {"max": 4.0}
    assert R.variance().reduce([x], w)["variance"] == pytest.approx(
        np.average((x[:3] - np.average(x[:3], weights=w[:3])) ** 2, weights=w[:3])
    )


def test_large_numpy_reduction_matches_numpy():
    rng = np.random.default_rng(7)
    x = rng.normal(size=200_000)
    y = 2 * x + rng.normal(scale=0.1, size=x.size)
    stats = R.combine(R.mean(), R.std_dev(), "", True).reduce([x])
    assert stats == {"mean": pytest.approx(x.mean()), "stdDev": pytest.approx(x.std())}
    assert R.median(None, None, None).reduce([x]) == {"median": pytest.approx(float(np.median(x)))}
    fit = R.linear_fit().reduce([x, y])
    assert fit["scale"] == pytest.approx(np.polyfit(x, y, 1)[0])


@pytest.mark.parametrize("n", [3, 4])
def test_pearson_p_value_closed_forms(n):
    # Two-sided p of Student's t: with 1 degree of freedom p = 1 - 2 atan|t| / pi, with 2 p = 1 - |t| / sqrt(2 + t^2).
    x = [0.0, 1.0, 2.0, 3.0][:n]
    y = [0.3, 0.1, 2.5, 2.0][:n]
    out = R.pearsons_correlation().reduce([x, y])
    r = float(np.corrcoef(x, y)[0, 1])
    df = n - 2
    t = abs(r) * math.sqrt(df / (1 - r * r))
    expected = 1 - 2 * math.atan(t) / math.pi if df == 1 else 1 - t / math.sqrt(2 + t * t)
    assert out["correlation"] == pytest.approx(r)
    assert out["p-value"] == pytest.approx(expected, rel=1e-9)


def test_empty_inputs():
    assert R.mean().reduce([[]]) == {"mean": None}
    assert R.count().reduce([[None]]) == {"count": 0}
    assert R.sum_().reduce([[]]) == {"sum": 0}
    assert R.min_max().reduce([[None, None]]) == {"min": None, "max": None}
    assert R.to_list(None, 0).reduce([[]]) == {"list": []}


def test_errors_are_engine_errors():
    with pytest.raises(EngineError, match="Expected a number"):
        R.mean().reduce([[1, "a"]])
    with pytest.raises(EngineError, match="takes 2 input"):
        R.linear_fit().reduce([[1, 2]])
    with pytest.raises(EngineError, match="same length"):
        R.linear_fit().reduce([[1, 2], [1]])


def test_numpy_fast_paths_match_list_paths():
    rng = np.random.default_rng(3)
    classes = rng.integers(0, 4, size=500)
    values = rng.normal(size=500)
    for reducer in (R.frequency_histogram(), R.count_runs(), R.count_distinct()):
        assert reducer.reduce([classes]) == reducer.reduce([classes.tolist()])
    grouped = R.group(R.mean(), 1, "class")
    fast = grouped.reduce([values, classes])["groups"]
    slow = grouped.reduce([values.tolist(), classes.tolist()])["groups"]
    assert [g["class"] for g in fast] == [0, 1, 2, 3] == [g["class"] for g in slow]
    for a, b in zip(fast, slow, strict=True):
        assert a["mean"] == pytest.approx(b["mean"]) == pytest.approx(values[classes == a["class"]].mean())

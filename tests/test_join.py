"""Join algorithms through the real ``ee`` client.

References: the ee.Join.* API pages (inner: each result has 'primary' and
'secondary' properties; saveAll adds the list of matches under matchesKey;
saveBest keeps the match with the best join measure; measures come from
withinDistance and maxDifference conditions) and plain-Python joins of the
same values.
"""

from __future__ import annotations

import pytest

PRIMARY = [{"k": 1, "t": 10}, {"k": 2, "t": 20}, {"k": 3, "t": 30}, {"k": 9, "t": 90}]
SECONDARY = [
    {"k": 1, "t": 12, "n": "s1"},
    {"k": 2, "t": 19, "n": "s2"},
    {"k": 1, "t": 11, "n": "s3"},
    {"k": 3, "t": 37, "n": "s4"},
]


def needs(*names: str) -> None:
    from gee_mining.local.core import registry

    missing = [n for n in names if n not in registry.implemented()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not implemented yet")


@pytest.fixture
def collections(ee_local):
    ee = ee_local
    primary = ee.FeatureCollection([ee.Feature(None, p) for p in PRIMARY])
    secondary = ee.FeatureCollection([ee.Feature(None, s) for s in SECONDARY])
    return primary, secondary


def key_filter(ee):
    return ee.Filter.equals(leftField="k", rightField="k")


def test_simple_and_inverted(ee_local, collections):
    primary, secondary = collections
    keys = {s["k"] for s in SECONDARY}
    simple = ee_local.Join.simple().apply(primary, secondary, key_filter(ee_local))
    inverted = ee_local.Join.inverted().apply(primary, secondary, key_filter(ee_local))
    assert simple.aggregate_array("k").getInfo() == [p["k"] for p in PRIMARY if p["k"] in keys]
    assert inverted.aggregate_array("k").getInfo() == [p["k"] for p in PRIMARY if p["k"] not in keys]


def test_inner_join_pairs(ee_local, collections):
    primary, secondary = collections
    joined = ee_local.Join.inner().apply(primary, secondary, key_filter(ee_local)).getInfo()
    pairs = [
        (f["properties"]["primary"]["properties"]["k"], f["properties"]["secondary"]["properties"]["n"])
        for f in joined["features"]
    ]
    assert pairs == [(p["k"], s["n"]) for p in PRIMARY for s in SECONDARY if p["k"] == s["k"]]
    assert all(f["geometry"] is None for f in joined["features"])


def test_inner_join_custom_keys(ee_local, collections):
    primary, secondary = collections
    joined = ee_local.Join.inner("p", "s").apply(primary, secondary, key_filter(ee_local))
    first = ee_local.Feature(joined.first())
    assert sorted(first.propertyNames().getInfo()) == ["p", "s", "system:index"]


def test_save_all(ee_local, collections):
    primary, secondary = collections
    joined = ee_local.Join.saveAll("matches").apply(primary, secondary, key_filter(ee_local)).getInfo()
    got = {f["properties"]["k"]: [m["properties"]["n"] for m in f["properties"]["matches"]] for f in joined["features"]}
    expected = {p["k"]: [s["n"] for s in SECONDARY if s["k"] == p["k"]] for p in PRIMARY}
    assert got == {k: v for k, v in expected.items() if v}  # outer=False drops primaries without matches


def test_save_all_ordering_and_outer(ee_local, collections):
    primary, secondary = collections
    join = ee_local.Join.saveAll("matches", "t", False, None, True)
    joined = join.apply(primary, secondary, key_filter(ee_local)).getInfo()
    got = {f["properties"]["k"]: [m["properties"]["t"] for m in f["properties"]["matches"]] for f in joined["features"]}
    expected = {p["k"]: sorted((s["t"] for s in SECONDARY if s["k"] == p["k"]), reverse=True) for p in PRIMARY}
    assert got == expected


def test_save_first(ee_local, collections):
    primary, secondary = collections
    joined = ee_local.Join.saveFirst("m", "t").apply(primary, secondary, key_filter(ee_local)).getInfo()
    got = {f["properties"]["k"]: f["properties"]["m"]["properties"]["t"] for f in joined["features"]}
    expected = {
        p["k"]: min(s["t"] for s in SECONDARY if s["k"] == p["k"])
        for p in PRIMARY
        if any(s["k"] == p["k"] for s in SECONDARY)
    }
    assert got == expected


def test_save_best_with_max_difference(ee_local, collections):
    primary, secondary = collections
    cond = ee_local.Filter.maxDifference(difference=5, leftField="t", rightField="t")
    joined = ee_local.Join.saveBest("best", "diff").apply(primary, secondary, cond).getInfo()
    got = {
        f["properties"]["k"]: (
            f["properties"]["best"]["properties"]["n"],
            f["properties"]["best"]["properties"]["diff"],
        )
        for f in joined["features"]
    }
    expected = {}
    for p in PRIMARY:
        cands = [(abs(p["t"] - s["t"]), s["n"]) for s in SECONDARY if abs(p["t"] - s["t"]) <= 5]
        if cands:
            d, n = min(cands)
            expected[p["k"]] = (n, d)
    assert got == expected


def test_save_all_with_measure(ee_local, collections):
    primary, secondary = collections
    cond = ee_local.Filter.maxDifference(difference=2, leftField="t", rightField="t")
    joined = ee_local.Join.saveAll("m", None, True, "d").apply(primary, secondary, cond).getInfo()
    got = {f["properties"]["k"]: [m["properties"]["d"] for m in f["properties"]["m"]] for f in joined["features"]}
    assert got == {1: [2, 1], 2: [1]}


def test_measure_without_measured_condition_is_an_error(ee_local, collections):
    primary, secondary = collections
    with pytest.raises(ee_local.EEException, match="join measure"):
        ee_local.Join.saveBest("b", "d").apply(primary, secondary, key_filter(ee_local)).getInfo()


def test_spatial_join_within_distance(ee_local):
    needs("Geometry.withinDistance", "Geometry.distance")
    from pyproj import Geod

    ee = ee_local
    pts = [(0, 0), (0.01, 0), (1, 1)]
    primary = ee.FeatureCollection([ee.Feature(ee.Geometry.Point(list(p)), {"i": i}) for i, p in enumerate(pts)])
    cond = ee.Filter.withinDistance(distance=5000, leftField=".geo", rightField=".geo")
    joined = ee.Join.saveAll("near", None, True, "dist").apply(primary, primary, cond).getInfo()
    geod = Geod(ellps="WGS84")
    got = {f["properties"]["i"]: [m["properties"]["i"] for m in f["properties"]["near"]] for f in joined["features"]}
    expected = {i: [j for j, q in enumerate(pts) if geod.inv(*p, *q)[2] <= 5000] for i, p in enumerate(pts)}
    assert got == expected
    d01 = [m["properties"]["dist"] for m in joined["features"][0]["properties"]["near"] if m["properties"]["i"] == 1][0]
    assert d01 == pytest.approx(geod.inv(0, 0, 0.01, 0)[2], rel=5e-3)

"""ee.Dictionary algorithms through the real ``ee`` client.

The dictionaries are those of Earth Engine's API reference examples (page
named in each test, e.g. "ee.Dictionary.rename"); expected values follow from
each algorithm's documented definition. Earth Engine keeps keys in natural
(sorted) order.
"""

from __future__ import annotations

import pytest

from gee_mining.local.core import registry

BANDS = {"B1": 182, "B2": 219, "B3": 443}


def requires(*names: str) -> None:
    missing = [n for n in names if n not in registry.implemented()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, which is not implemented yet")


@pytest.fixture
def dic(ee_local):
    return ee_local.Dictionary(BANDS)


def test_constructor_from_list(ee_local):
    # ee.Dictionary: a list of alternating keys and values.
    assert ee_local.Dictionary(["B1", 182, "B2", 219, "B3", 443]).getInfo() == BANDS


def test_constructor_from_computed_dictionary(ee_local):
    assert ee_local.Dictionary(ee_local.Dictionary(BANDS)).getInfo() == BANDS


def test_constructor_odd_list(ee_local):
    with pytest.raises(ee_local.EEException, match="Dictionary"):
        ee_local.Dictionary(["B1", 182, "B2"]).getInfo()


def test_combine(ee_local, dic):
    # ee.Dictionary.combine: B1 is in both dictionaries.
    other = ee_local.Dictionary(
        {
            "Region": "The Forest of Nisene Marks State Park",
            "Image": "Sentinel-2 surface reflectance (scaled by 1e4)",
            "B1": -9999,
        }
    )
    extra = {
        "Region": "The Forest of Nisene Marks State Park",
        "Image": "Sentinel-2 surface reflectance (scaled by 1e4)",
    }
    assert dic.combine(other, False).getInfo() == {**BANDS, **extra}
    assert dic.combine(other, True).getInfo() == {**BANDS, **extra, "B1": -9999}
    assert dic.combine(other).getInfo()["B1"] == -9999


def test_combine_drops_nulls(ee_local):
    # "Null values in both dictionaries are ignored / removed."
    got = ee_local.Dictionary({"a": None, "b": 1}).combine({"c": None, "b": 2}).getInfo()
    assert got == {"b": 2}


@pytest.mark.parametrize("key, expected", [("B1", True), ("Band_1", False)])
def test_contains(dic, key, expected):
    # ee.Dictionary.contains
    assert dic.contains(key).getInfo() is expected


def test_from_lists(ee_local):
    # ee.Dictionary.fromLists
    assert ee_local.Dictionary.fromLists(["B1", "B2", "B3"], [182, 219, 443]).getInfo() == BANDS


def test_from_lists_length_mismatch(ee_local):
    with pytest.raises(ee_local.EEException, match="Dictionary.fromLists"):
        ee_local.Dictionary.fromLists(["a", "b"], [1]).getInfo()


def test_get(dic):
    # ee.Dictionary.get: a missing key with a defaultValue gives the default.
    assert dic.get("B1").getInfo() == 182
    assert dic.get(**{"key": "Band_1", "defaultValue": -9999}).getInfo() == -9999


def test_get_missing_key_error(ee_local, dic):
    with pytest.raises(ee_local.EEException, match=r"Dictionary.get: Dictionary does not contain key: 'x'\."):
        dic.get("x").getInfo()


def test_typed_getters(ee_local):
    requires("GeometryConstructors.Point")
    # ee.Dictionary.getNumber / getString / getGeometry
    d = ee_local.Dictionary(
        {
            **BANDS,
            "Region": "The Forest of Nisene Marks State Park",
            "Geometry": ee_local.Geometry.Point([-122.01, 36.97]),
        }
    )
    assert d.getNumber("B1").getInfo() == 182
    assert d.getString("Region").getInfo() == "The Forest of Nisene Marks State Park"
    assert d.getGeometry("Geometry").getInfo() == {"type": "Point", "coordinates": [-122.01, 36.97]}
    with pytest.raises(ee_local.EEException, match="Dictionary.getNumber"):
        d.getNumber("Region").getInfo()
    with pytest.raises(ee_local.EEException, match="does not contain key"):
        d.getString("nope").getInfo()


def test_keys_sorted(ee_local, dic):
    # ee.Dictionary.keys: "The keys will be sorted in natural order."
    assert dic.keys().getInfo() == ["B1", "B2", "B3"]
    assert ee_local.Dictionary(["z", 1, "a", 2, "m", 3]).keys().getInfo() == ["a", "m", "z"]


def test_map(ee_local, dic):
    requires("Number.divide")
    # ee.Dictionary.map: scale S2 reflectance by 1e4.
    got = dic.map(lambda key, value: ee_local.Number(value).divide(1e4)).getInfo()
    assert got == pytest.approx({k: v / 1e4 for k, v in BANDS.items()})


def test_map_null_drops_key_and_sees_keys(ee_local, dic):
    requires("String.equals")

    def keep(key, value):
        return ee_local.Algorithms.If(ee_local.String(key).equals("B2"), None, value)

    # ee.Dictionary.map: "If the algorithm returns null, the key is dropped."
    assert dic.map(keep).getInfo() == {"B1": 182, "B3": 443}


def test_remove(ee_local, dic):
    # ee.Dictionary.remove
    assert dic.remove(["B2", "B3"]).getInfo() == {"B1": 182}
    assert dic.remove(**{"selectors": ["B2", "B3", "Region"], "ignoreMissing": True}).getInfo() == {"B1": 182}
    with pytest.raises(ee_local.EEException, match="Region"):
        dic.remove(["B2", "Region"]).getInfo()


def test_rename(ee_local, dic):
    # ee.Dictionary.rename
    assert dic.rename(["B2", "B3"], ["Band_2", "Band_3"]).getInfo() == {"B1": 182, "Band_2": 219, "Band_3": 443}
    overwritten = dic.rename(**{"from": ["B3"], "to": ["B1"], "overwrite": True}).getInfo()
    assert overwritten == {"B1": 443, "B2": 219}
    with pytest.raises(ee_local.EEException, match="Dictionary.rename"):
        dic.rename(["B3"], ["B1"]).getInfo()


def test_select(ee_local, dic):
    # ee.Dictionary.select: by name, by regular expression, ignoring missing keys.
    assert dic.select(["B1", "B2"]).getInfo() == {"B1": 182, "B2": 219}
    assert dic.select(["B[1-2]"]).getInfo() == {"B1": 182, "B2": 219}
    assert dic.select(**{"selectors": ["B1", "B2", "Region"], "ignoreMissing": True}).getInfo() == {
        "B1": 182,
        "B2": 219,
    }
    with pytest.raises(ee_local.EEException, match="Region"):
        dic.select(["B1", "Region"]).getInfo()


def test_set(dic):
    # ee.Dictionary.set
    assert dic.set("B3", -9999).getInfo() == {"B1": 182, "B2": 219, "B3": -9999}
    assert dic.set("A0", "x").keys().getInfo() == ["A0", "B1", "B2", "B3"]


def test_size(ee_local, dic):
    # ee.Dictionary.size
    assert dic.size().getInfo() == 3
    assert ee_local.Dictionary({}).size().getInfo() == 0


def test_values(ee_local, dic):
    # ee.Dictionary.values: all values in key order, or those of the keys given.
    assert dic.values(["B1", "B2"]).getInfo() == [182, 219]
    assert dic.values().getInfo() == [182, 219, 443]
    assert ee_local.Dictionary({"b": 1, "a": 2}).values().getInfo() == [2, 1]
    assert dic.values(["B3", "B1"]).getInfo() == [443, 182]

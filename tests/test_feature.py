"""Element and Feature algorithms through the real ``ee`` client.

References: Earth Engine's API pages (ee.Feature.*, ee.Element.*) and
independent computations (pyproj.Geod, shapely, the GeoJSON file read with json).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_DATA

SQUARES = "projects/gee-mining-test/assets/squares"


def needs(*names: str) -> None:
    """Skip when another family's algorithm is not implemented yet."""
    from gee_mining.local.core import registry

    missing = [n for n in names if n not in registry.implemented()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not implemented yet")


@pytest.fixture(scope="module")
def squares_json():
    return json.loads((TEST_DATA / "squares.geojson").read_text())["features"]


def test_feature_without_geometry_getinfo(ee_local):
    # ee.Feature(null, {...}) has a null geometry and no id until it joins a collection.
    info = ee_local.Feature(None, {"a": 1, "s": "x"}).getInfo()
    assert info == {"type": "Feature", "geometry": None, "properties": {"a": 1, "s": "x"}}


def test_set_get_setmulti(ee_local):
    f = ee_local.Feature(None, {"a": 1}).set("b", 2).set({"c": "three", "a": 10})
    assert f.get("a").getInfo() == 10
    assert f.get("b").getInfo() == 2
    assert f.get("missing").getInfo() is None
    assert f.toDictionary().getInfo() == {"a": 10, "b": 2, "c": "three"}


def test_set_system_index_sets_the_id(ee_local):
    f = ee_local.Feature(None, {"a": 1}).set("system:index", "my-id")
    assert f.id().getInfo() == "my-id"
    assert f.getInfo()["id"] == "my-id"


def test_get_number_and_string(ee_local):
    f = ee_local.Feature(None, {"n": 2.5, "s": "txt"})
    assert f.getNumber("n").getInfo() == 2.5
    assert f.getString("s").getInfo() == "txt"
    with pytest.raises(ee_local.EEException, match="not a Number"):
        f.getNumber("s").getInfo()


def test_table_feature_properties_and_id(ee_local, squares_json):
    first = ee_local.Feature(ee_local.FeatureCollection(SQUARES).first())
    info = first.getInfo()
    assert info["properties"] == squares_json[0]["properties"]
    assert first.id().getInfo() == info["id"]
    # Table features list their properties and then system:index (the feature id).
    names = first.propertyNames().getInfo()
    assert sorted(names) == sorted([*squares_json[0]["properties"], "system:index"])
    assert first.get("system:index").getInfo() == info["id"]


def test_to_dictionary_excludes_system_properties(ee_local, squares_json):
    # ee.Feature.toDictionary: "Defaults to all non-system properties."
    first = ee_local.Feature(ee_local.FeatureCollection(SQUARES).first())
    assert first.toDictionary().getInfo() == squares_json[0]["properties"]
    assert first.toDictionary(["name"]).getInfo() == {"name": "a"}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {"own": 0, "a": 1, "b": 2}),
        ({"properties": ["a"]}, {"own": 0, "a": 1}),
        ({"exclude": ["a"]}, {"own": 0, "b": 2}),
    ],
)
def test_copy_properties(ee_local, kwargs, expected):
    src = ee_local.Feature(None, {"a": 1, "b": 2})
    dst = ee_local.Feature(None, {"own": 0})
    out = ee_local.Feature(dst.copyProperties(src, **kwargs))
    assert out.toDictionary().getInfo() == expected


def test_copy_properties_keeps_destination_geometry(ee_local):
    dst = ee_local.Feature(ee_local.Geometry.Point([1, 2]), {})
    out = ee_local.Feature(dst.copyProperties(ee_local.Feature(None, {"a": 1})))
    assert out.getInfo()["geometry"]["coordinates"] == [1, 2]
    assert out.get("a").getInfo() == 1


@pytest.mark.parametrize(
    ("selectors", "new", "expected"),
    [
        (["name"], None, {"name": "a"}),
        (["name", "kind"], ["n", "k"], {"n": "a", "k": "x"}),
        (["na.*"], None, {"name": "a"}),  # selectors are regular expressions
        ([".*e"], None, {"name": "a", "value": 1}),
    ],
)
def test_select(ee_local, selectors, new, expected):
    first = ee_local.Feature(ee_local.FeatureCollection(SQUARES).first())
    out = first.select(selectors, new) if new else first.select(selectors)
    info = out.getInfo()
    assert info["properties"] == expected
    assert info["geometry"] is not None
    assert info["id"] == first.id().getInfo()


def test_select_without_geometry(ee_local):
    first = ee_local.Feature(ee_local.FeatureCollection(SQUARES).first())
    assert first.select(["name"], None, False).getInfo()["geometry"] is None


def test_set_geometry_and_geometry(ee_local):
    f = ee_local.Feature(None, {"a": 1}).setGeometry(ee_local.Geometry.Point([3, 4]))
    assert f.geometry().getInfo() == {"type": "Point", "coordinates": [3, 4]}
    assert f.get("a").getInfo() == 1


def test_feature_area_matches_geod(ee_local):
    needs("Geometry.area")
    from pyproj import Geod
    from shapely.geometry import Polygon

    ring = [(10, 40), (11, 40), (11, 41), (10, 41), (10, 40)]
    f = ee_local.Feature(ee_local.Geometry.Polygon([ring]), {"k": 1})
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(Polygon(ring))
    assert f.area(1).getInfo() == pytest.approx(abs(area), rel=1e-6)


def test_feature_wrappers_keep_properties(ee_local):
    needs("Geometry.centroid", "Geometry.buffer", "Geometry.bounds")
    f = ee_local.Feature(ee_local.Geometry.Polygon([[[0, 0], [1, 0], [1, 1], [0, 1]]]), {"k": "v"})
    for out in (f.centroid(1), f.buffer(100, 1), f.bounds(1)):
        info = out.getInfo()
        assert info["type"] == "Feature"
        assert info["properties"] == {"k": "v"}
    assert f.centroid(1).getInfo()["geometry"]["type"] == "Point"
    assert f.buffer(100, 1).getInfo()["geometry"]["type"] == "Polygon"


def test_feature_binary_predicates(ee_local):
    needs("Geometry.intersects", "Geometry.disjoint", "Geometry.contains")
    a = ee_local.Feature(ee_local.Geometry.Polygon([[[0, 0], [2, 0], [2, 2], [0, 2]]]), {})
    b = ee_local.Feature(ee_local.Geometry.Point([1, 1]), {})
    c = ee_local.Feature(ee_local.Geometry.Point([5, 5]), {})
    assert a.intersects(b, 1).getInfo() is True
    assert a.intersects(c, 1).getInfo() is False
    assert a.disjoint(c, 1).getInfo() is True
    assert a.contains(b, 1).getInfo() is True


def test_feature_intersection_keeps_left_properties(ee_local):
    needs("Geometry.intersection")
    a = ee_local.Feature(ee_local.Geometry.Polygon([[[0, 0], [2, 0], [2, 2], [0, 2]]]), {"side": "left"})
    b = ee_local.Feature(ee_local.Geometry.Polygon([[[1, 1], [3, 1], [3, 3], [1, 3]]]), {"side": "right"})
    assert a.intersection(b, 1).get("side").getInfo() == "left"


def test_feature_distance_matches_geod(ee_local):
    needs("Geometry.distance")
    from pyproj import Geod

    a = ee_local.Feature(ee_local.Geometry.Point([0, 0]), {})
    b = ee_local.Feature(ee_local.Geometry.Point([0, 1]), {})
    _, _, d = Geod(ellps="WGS84").inv(0, 0, 0, 1)
    # Earth Engine's distances are on a sphere: within 0.5% of the ellipsoidal distance.
    assert a.distance(b).getInfo() == pytest.approx(d, rel=5e-3)


def test_area_of_feature_without_geometry_is_an_error(ee_local):
    needs("Geometry.area")
    with pytest.raises(ee_local.EEException):
        ee_local.Feature(None, {}).area(1).getInfo()


def test_replace_properties(ee_local):
    # Element.replaceProperties is not wrapped by the Python client; call it by name.
    out = ee_local.ApiFunction.call_(
        "Element.replaceProperties", ee_local.Feature(None, {"a": 1}), ee_local.Feature(None, {"b": 2})
    )
    assert ee_local.Feature(out).toDictionary().getInfo() == {"b": 2}

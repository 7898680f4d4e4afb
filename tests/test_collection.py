"""Collection and FeatureCollection algorithms through the real ``ee`` client.

References: the ee.FeatureCollection.* API pages (remap drops elements whose
value is not in lookupIn; first() of an empty collection is null; union gives
one feature with id 'union_result') and independent Python over the GeoJSON
files read with json (shapely, pyproj.Geod).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_DATA, shared_file

SQUARES = "projects/gee-mining-test/assets/squares"
AMAZON = "projects/gee-mining-test/assets/amazon_mining_2024"


def needs(*names: str) -> None:
    from gee_mining.local.core import registry

    missing = [n for n in names if n not in registry.implemented()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not implemented yet")


@pytest.fixture(scope="module")
def squares_json():
    return json.loads((TEST_DATA / "squares.geojson").read_text())["features"]


@pytest.fixture(scope="module")
def amazon_json():
    return json.loads(shared_file("polygons/amazon_mining_2024_model.geojson").read_text())["features"]


def test_getinfo_shape(ee_local, squares_json):
    info = ee_local.FeatureCollection(SQUARES).getInfo()
    assert info["type"] == "FeatureCollection"
    assert info["id"] == SQUARES
    assert info["columns"] == {"kind": "String", "name": "String", "system:index": "String", "value": "Float"}
    assert len(info["features"]) == len(squares_json)
    ids = [f["id"] for f in info["features"]]
    assert len(set(ids)) == len(ids)
    for got, ref in zip(info["features"], squares_json, strict=True):
        assert got["type"] == "Feature"
        assert got["properties"] == ref["properties"]
        assert got["geometry"]["type"] == ref["geometry"]["type"]
        assert got["geometry"]["coordinates"] == ref["geometry"]["coordinates"]


def _pages(ee_local, fc, size: int) -> list[list[dict]]:
    pages, token = [], None
    while True:
        params = {"expression": fc, "pageSize": size}
        if token:
            params["pageToken"] = token
        answer = ee_local.data.computeFeatures(params)
        pages.append(answer["features"])
        token = answer.get("nextPageToken")
        if not token:
            return pages


def test_compute_features_paging_equals_one_list(ee_local, amazon_json):
    """Paged at 1,000 and at 10,000 a page, the features are the file's, in its order. ``pageSize`` is a maximum:
    "the server may return fewer" (REST ``projects.table.computeFeatures``), as the engine does by default."""
    fc = ee_local.FeatureCollection(AMAZON)
    small, large = _pages(ee_local, fc, 1000), _pages(ee_local, fc, 10_000)
    assert all(len(p) <= 1000 for p in small) and all(len(p) <= 10_000 for p in large)
    paged = [f for p in small for f in p]
    assert paged == [f for p in large for f in p]
    assert len(paged) == len(amazon_json)
    assert [f["properties"] for f in paged] == [f["properties"] for f in amazon_json]


def test_collection_from_features_numbers_ids(ee_local):
    fc = ee_local.FeatureCollection([ee_local.Feature(None, {"a": 1}), ee_local.Feature(None, {"a": 2})])
    info = fc.getInfo()
    assert [f["id"] for f in info["features"]] == ["0", "1"]
    assert info["columns"] == {"a": "Long", "system:index": "String"}


def test_collection_properties(ee_local):
    fc = ee_local.FeatureCollection(SQUARES).set("x", 1).set("label", "sq")
    assert fc.get("x").getInfo() == 1
    assert ee_local.FeatureCollection(fc).get("label").getInfo() == "sq"
    assert ee_local.FeatureCollection(fc).size().getInfo() == 4
    assert ee_local.FeatureCollection(SQUARES).get("system:id").getInfo() == SQUARES


def test_size_first_limit(ee_local, squares_json):
    fc = ee_local.FeatureCollection(SQUARES)
    assert fc.size().getInfo() == len(squares_json)
    assert ee_local.Feature(fc.first()).get("name").getInfo() == "a"
    assert fc.limit(2).aggregate_array("name").getInfo() == ["a", "b"]
    assert fc.filter(ee_local.Filter.eq("name", "zz")).first().getInfo() is None


@pytest.mark.parametrize(
    ("prop", "ascending", "expected"),
    [
        ("value", True, ["a", "b", "c", "d"]),  # the null value goes last
        ("value", False, ["c", "b", "a", "d"]),
        ("name", False, ["d", "c", "b", "a"]),
        ("kind", True, ["a", "b", "c", "d"]),  # stable among equal keys
    ],
)
def test_sort(ee_local, prop, ascending, expected):
    fc = ee_local.FeatureCollection(SQUARES).sort(prop, ascending)
    assert fc.aggregate_array("name").getInfo() == expected


def test_limit_with_key(ee_local, amazon_json):
    key = "Mined area (ha)"
    got = ee_local.FeatureCollection(AMAZON).limit(5, key, False).aggregate_array(key).getInfo()
    assert got == sorted((f["properties"][key] for f in amazon_json), reverse=True)[:5]


def test_map_keeps_ids_and_order(ee_local):
    fc = ee_local.FeatureCollection(SQUARES)
    mapped = fc.map(lambda f: ee_local.Feature(None, {"n": f.get("name")}))
    info = mapped.getInfo()
    assert [f["properties"]["n"] for f in info["features"]] == ["a", "b", "c", "d"]
    assert [f["id"] for f in info["features"]] == [f["id"] for f in fc.getInfo()["features"]]


def test_map_drop_nulls(ee_local):
    fc = ee_local.FeatureCollection(SQUARES)
    kept = fc.map(lambda f: ee_local.Algorithms.If(f.get("value"), f, None), True)
    assert kept.aggregate_array("name").getInfo() == ["a", "b", "c"]


def test_merge_prefixes_ids(ee_local):
    fc = ee_local.FeatureCollection([ee_local.Feature(None, {"a": 1})])
    merged = fc.merge(ee_local.FeatureCollection([ee_local.Feature(None, {"a": 2})]))
    assert [f["id"] for f in merged.getInfo()["features"]] == ["1_0", "2_0"]


def test_to_list_and_iterate(ee_local):
    fc = ee_local.FeatureCollection(SQUARES)
    items = fc.toList(2, 1).getInfo()
    assert [f["properties"]["name"] for f in items] == ["b", "c"]
    total = fc.filter(ee_local.Filter.notNull(["value"])).iterate(
        lambda f, acc: ee_local.Number(acc).add(f.get("value")), 0
    )
    needs("Number.add")
    assert total.getInfo() == pytest.approx(6.5)


def test_distinct(ee_local):
    fc = ee_local.FeatureCollection(SQUARES)
    assert fc.distinct("kind").aggregate_array("name").getInfo() == ["a", "c"]
    assert fc.distinct(["kind", "name"]).size().getInfo() == 4


def test_remap_reference_example(ee_local):
    # ee.FeatureCollection.remap reference: the 'nonsense' category gets dropped.
    ee = ee_local
    fc = ee.FeatureCollection(
        [
            ee.Feature(ee.Geometry.Point([1, 2]), {"isTree": "Tree"}),
            ee.Feature(ee.Geometry.Point([3, 4]), {"isTree": "NotTree"}),
            ee.Feature(ee.Geometry.Point([5, 6]), {"isTree": "nonsense"}),
        ]
    )
    trees = fc.remap(["NotTree", "Tree"], [0, 1], "isTree")
    assert trees.aggregate_array("isTree").getInfo() == [1, 0]


def test_random_column_is_deterministic_and_in_range(ee_local):
    shared_file("polygons/amazon_mining_2024_model.geojson")
    fc = ee_local.FeatureCollection(AMAZON)
    a = fc.randomColumn("r", 7).aggregate_array("r").getInfo()
    b = fc.randomColumn("r", 7).aggregate_array("r").getInfo()
    c = fc.randomColumn("r", 8).aggregate_array("r").getInfo()
    assert a == b and a != c
    assert all(0 <= v < 1 for v in a)
    assert 0.45 < sum(a) / len(a) < 0.55
    # A row's value depends on its key only, so filtering first does not change it.
    first = fc.limit(3).randomColumn("r", 7).aggregate_array("r").getInfo()
    assert first == a[:3]


def test_random_column_normal(ee_local):
    import statistics

    shared_file("polygons/amazon_mining_2024_model.geojson")
    vals = ee_local.FeatureCollection(AMAZON).randomColumn("z", 1, "normal").aggregate_array("z").getInfo()
    assert abs(statistics.fmean(vals)) < 0.1
    assert 0.9 < statistics.stdev(vals) < 1.1


def test_flatten_collection_of_collections(ee_local):
    ee = ee_local
    outer = (
        ee.FeatureCollection(SQUARES)
        .limit(2)
        .map(lambda f: ee.FeatureCollection([ee.Feature(None, {"n": f.get("name"), "j": j}) for j in range(2)]))
    )
    flat = outer.flatten()
    assert flat.aggregate_array("n").getInfo() == ["a", "a", "b", "b"]
    assert flat.aggregate_array("j").getInfo() == [0, 1, 0, 1]


def test_reduce_columns(ee_local, amazon_json):
    needs("Reducer.sum")
    key = "Mined area (ha)"
    got = ee_local.FeatureCollection(AMAZON).reduceColumns(ee_local.Reducer.sum(), [key]).getInfo()
    assert got["sum"] == pytest.approx(sum(f["properties"][key] for f in amazon_json), rel=1e-9)


def test_geometry_merges_without_dissolving(ee_local, squares_json):
    polys = ee_local.FeatureCollection(SQUARES).filter(ee_local.Filter.neq("name", "d"))
    info = polys.geometry().getInfo()
    assert info["type"] == "MultiPolygon"
    assert [ring for poly in info["coordinates"] for ring in poly] == [
        f["geometry"]["coordinates"][0] for f in squares_json[:3]
    ]
    mixed = ee_local.FeatureCollection(SQUARES).geometry().getInfo()
    assert mixed["type"] == "GeometryCollection"
    assert len(mixed["geometries"]) == 4


def test_union_and_bounds(ee_local):
    needs("Geometry.dissolve", "Geometry.bounds", "Geometry.area")
    import shapely
    from shapely.geometry import shape

    polys = ee_local.FeatureCollection(SQUARES).filter(ee_local.Filter.neq("name", "d"))
    union = polys.union(1).getInfo()
    assert len(union["features"]) == 1
    assert union["features"][0]["id"] == "union_result"
    got = shape(union["features"][0]["geometry"])
    ref = shapely.union_all([shapely.box(0, 0, 1, 1), shapely.box(2, 0, 3, 1), shapely.box(0.5, 0.5, 1.5, 1.5)])
    assert got.symmetric_difference(ref).area < 1e-9
    bounds = shape(polys.geometry().bounds().getInfo())
    assert bounds.bounds == pytest.approx((0, 0, 3, 1.5))


def test_random_points(ee_local):
    needs("Geometry.contains")
    import shapely

    region = ee_local.Geometry.Rectangle([10, 20, 11, 21])
    pts = ee_local.FeatureCollection.randomPoints(region, 50, 3).getInfo()
    again = ee_local.FeatureCollection.randomPoints(region, 50, 3).getInfo()
    assert pts == again
    coords = [f["geometry"]["coordinates"] for f in pts["features"]]
    assert len(coords) == 50 and len({tuple(c) for c in coords}) == 50
    box = shapely.box(10, 20, 11, 21)
    assert all(box.contains(shapely.Point(c)) for c in coords)

"""Code Editor scripts (gee_mining.tools.jsgen), round-tripped through the official JavaScript client.

Each script is run in node with the npm package ``@google/earthengine`` initialised offline
(tests/js/ee_offline.js: no server, the signatures come from the Python client's algorithms.json),
and the graph the JavaScript client builds (``ee.Serializer.encodeCloudApi``) must equal the Python
client's (``ee.serializer.encode(obj, for_cloud_api=True)``), compared as trees (references
expanded, key order aside, numbers as the doubles Earth Engine receives).

One documented difference: an ``integerValue`` beyond 2^53 (a Python int JavaScript numbers cannot
hold) is written as ``ee.Number.parse('digits')``, so it is compared with that call.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gee_mining.tools import jsgen

ROOT = Path(__file__).resolve().parents[1]
NODE_CLIENT = ROOT / "node_modules" / "@google" / "earthengine"
TABLE = "projects/gee-mining-test/assets/squares"


# ---------------------------------------------------------------------------------------------- the JavaScript client


class NodeClient:
    """A node process running Code Editor scripts with the official client, one JSON line per request."""

    def __init__(self) -> None:
        import ee

        algorithms = Path(ee.__file__).parent / "tests" / "algorithms.json"
        self.proc = subprocess.Popen(
            ["node", str(ROOT / "tests" / "js" / "ee_offline.js"), "serve", str(algorithms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            # No proxy, nothing to reach: the client is initialised without a server and never calls one.
            env={"PATH": "/usr/bin:/bin:/usr/local/bin", "NODE_PATH": str(ROOT / "node_modules")},
        )

    def run(self, source: str, outputs: list[str]) -> dict:
        self.proc.stdin.write(json.dumps({"source": source, "outputs": outputs}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        assert "error" not in answer, f"{answer['error']}\n--- script ---\n{source}"
        return answer

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def node(ee_local):
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the round trip through Earth Engine's JavaScript client needs it")
    if not (NODE_CLIENT / "package.json").exists():
        pytest.skip(f"{NODE_CLIENT} is missing: run `npm ci` (or `make install`) at the repository root")
    client = NodeClient()
    yield client
    client.close()


# ---------------------------------------------------------------------------------------------- comparing graphs


def canonical(tree, integer_as_parse: bool = False):
    """A graph tree in a comparable form: numbers as doubles, special floats tagged, integerValue as JS writes it."""
    if isinstance(tree, dict):
        if set(tree) == {"$float"}:
            return tree
        if integer_as_parse and set(tree) == {"integerValue"} and abs(int(tree["integerValue"])) > 2**53:
            return {
                "functionInvocationValue": {
                    "functionName": "Number.parse",
                    "arguments": {"input": {"constantValue": str(tree["integerValue"])}},
                }
            }
        if set(tree) == {"integerValue"}:
            return {"constantValue": float(int(tree["integerValue"]))}
        return {k: canonical(v, integer_as_parse) for k, v in tree.items()}
    if isinstance(tree, list):
        return [canonical(v, integer_as_parse) for v in tree]
    if isinstance(tree, bool) or tree is None or isinstance(tree, str):
        return tree
    x = float(tree)
    if math.isnan(x):
        return {"$float": "NaN"}
    if math.isinf(x):
        return {"$float": "Infinity" if x > 0 else "-Infinity"}
    if x == 0 and math.copysign(1, x) < 0:
        return {"$float": "-0"}
    return x


def python_graph(obj) -> dict:
    return canonical(jsgen.encode(obj), integer_as_parse=True)


def js_graph(expression: dict) -> dict:
    return canonical(jsgen.expand(expression))


def first_difference(a, b, path="") -> str:
    """Where two graph trees first differ, for a readable failure."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}: only in {'JavaScript' if k in a else 'Python'}"
            d = first_difference(a[k], b[k], f"{path}/{k}")
            if d:
                return d
        return ""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next(
            (d for i, (x, y) in enumerate(zip(a, b, strict=True)) if (d := first_difference(x, y, f"{path}/{i}"))), ""
        )
    return "" if a == b else f"{path}: JavaScript {json.dumps(a)[:300]} != Python {json.dumps(b)[:300]}"


def round_trip(node: NodeClient, script: jsgen.Script) -> tuple[str, dict]:
    """Render, run in node, and check every named value's graph; returns the source and node's answer."""
    source = script.render()
    outputs = script.outputs()
    answer = node.run(source, [name for name, _ in outputs])
    for name, obj in outputs:
        js, py = js_graph(answer["graphs"][name]), python_graph(obj)
        assert js == py, f"graph of {name} differs: {first_difference(js, py)}\n{source}"
    return source, answer


# ---------------------------------------------------------------------------------------------- a broad set of graphs


def _cases(ee):
    fc = ee.FeatureCollection(TABLE)
    img = ee.Image("COPERNICUS/S2_SR_HARMONIZED/20230101T000000_20230101T000000_T31TCJ")
    ic = ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED")
    point = ee.Geometry.Point([1.5, -2.25])
    return {
        "number_chain": ee.Number(1).add(2).multiply(3).divide(4),
        "string": ee.String("mine").cat("s").length(),
        "list_map_closure": ee.List([1, 2]).map(lambda x: ee.List([3, 4]).map(lambda y: ee.Number(y).add(x))),
        "list_iterate": ee.List.sequence(1, 5).iterate(lambda x, acc: ee.Number(acc).add(x), 0),
        "dictionary": ee.Dictionary({"a": 1, "b": ee.Number(2).add(1), "c d": [1, "x"]}).set("e", 5).keys(),
        "dictionary_map": ee.Dictionary({"a": 1, "b": 2}).map(lambda k, v: ee.Number(v).multiply(2)),
        "date": ee.Date("2020-01-01").advance(1, "month").millis(),
        "date_millis": ee.Date(1577836800000).format("YYYY-MM-dd"),
        "date_timezone": ee.Date("2020-01-01", "America/Sao_Paulo").get("hour"),
        "date_range": ee.DateRange("2020-01-01", "2021-01-01").contains(ee.Date("2020-06-01")),
        "point": point.buffer(100).area(1),
        "polygon_planar": ee.Geometry.Polygon([[[0, 0], [1, 0], [1, 1], [0, 0]]], None, False).area(1),
        "polygon_geodesic": ee.Geometry.Polygon([[[0, 0], [1, 0], [1, 1]]]).perimeter(1),
        "rectangle": ee.Geometry.Rectangle([0, 0, 1, 1]).centroid(1),
        "linestring": ee.Geometry.LineString([[0, 0], [1, 1]]).length(1),
        "multipoint": ee.Geometry.MultiPoint([[0, 0], [1, 1]]).bounds(1),
        "geometry_epsg": ee.Geometry.Point([500000, 0], "EPSG:32631").transform("EPSG:4326", 1),
        "filters": fc.filter(ee.Filter.And(ee.Filter.eq("name", "a"), ee.Filter.gt("size", 2))).size(),
        "filter_or_not": fc.filter(ee.Filter.Or(ee.Filter.lt("size", 1), ee.Filter.neq("name", "b"))).size(),
        "filter_bounds": fc.filterBounds(point).size(),
        "filter_date": ic.filterDate("2023-01-01", "2023-02-01").filterBounds(point).size(),
        "feature_map": fc.map(lambda f: f.set("area", f.geometry().area(1).divide(1e6))).aggregate_sum("area"),
        "nested_feature_map": fc.map(
            lambda f: ee.Feature(f.geometry().centroid(1), {"n": ee.List([1, 2]).map(lambda x: f.get("size"))})
        ),
        "shared_inside_function": fc.map(lambda f: f.set("a", f.geometry().area(1), "b", f.geometry().area(1))),
        "feature_collection_iterate": fc.iterate(lambda f, acc: ee.Number(acc).add(f.get("size")), 0),
        "reducers": fc.reduceColumns(ee.Reducer.mean().combine(ee.Reducer.stdDev(), None, True), ["size"]),
        "reducer_group": fc.reduceColumns(ee.Reducer.sum().group(groupField=1, groupName="g"), ["size", "name"]),
        "if": ee.Algorithms.If(ee.Number(1).gt(0), "yes", "no"),
        "image_ndvi": img.normalizedDifference(["B8", "B4"]).rename("ndvi"),
        "image_select": img.select(["B4", "B8"], ["red", "nir"]).multiply(0.0001),
        "image_reduce_region": img.select("B4").reduceRegion(ee.Reducer.mean(), point.buffer(50), 10),
        "image_collection_map": ic.filterBounds(point).map(lambda i: i.normalizedDifference(["B8", "B4"])).median(),
        "image_clip": img.clip(point.buffer(10)),
        "keyword_skipping": fc.reduceColumns(selectors=["size"], reducer=ee.Reducer.max(), weightSelectors=["w"]),
        "feature_null_geometry": ee.Feature(None, {"a": 1}).get("a"),
        "covering_grid": point.buffer(1000).coveringGrid(ee.Projection("EPSG:32631").atScale(500)).size(),
        "large_integers": ee.List([2**53 + 1, -(2**63), 2**70 + 1, ee.Number(2**53 + 1)]),
        "large_integer_number": ee.Number(2**62 + 1).add(1),
        "nan": ee.List([float("nan"), 1e-7, 1e21, 0.1, 1.5e300, 5e-324]),
        "infinity": ee.Number(float("inf")).add(1),
        "minus_infinity_minus_zero": ee.List([float("-inf"), -0.0, 2.5]),
        "strings_escaping": ee.List(["it's", 'say "hi"', "a\nb\r\tc", "back\\slash", "\x00\x7f\x1b", "</script>"]),
        "strings_unicode": ee.List(["São Paulo", "Ñandú", "ü€😀", "\u2028\u2029", "中文", "\ud800"]),
        "dictionary_keys": ee.Dictionary({"class": 1, "a-b": 2, "1x": 3, "x1": 4, "é": 5, "": 6}),
        "booleans_null": ee.List([True, False, None]).size(),
        "user_function": ee.List([1, 2]).map(lambda x: ee.Algorithms.If(ee.Number(x).eq(1), x, None), True),
        "shared_values": (lambda n: ee.List([n, n.add(1), n.multiply(n)]))(ee.Number(5).add(fc.size())),
        "element_set_multi": ee.Feature(point, {"a": 1}).set({"b": 2, "c": ee.Number(3).add(1)}),
        "terrain_like_static": ee.Kernel.square(2).getInfo if False else ee.Kernel.square(2),
    }


CASE_NAMES = [
    "number_chain",
    "string",
    "list_map_closure",
    "list_iterate",
    "dictionary",
    "dictionary_map",
    "date",
    "date_millis",
    "date_timezone",
    "date_range",
    "point",
    "polygon_planar",
    "polygon_geodesic",
    "rectangle",
    "linestring",
    "multipoint",
    "geometry_epsg",
    "filters",
    "filter_or_not",
    "filter_bounds",
    "filter_date",
    "feature_map",
    "nested_feature_map",
    "shared_inside_function",
    "feature_collection_iterate",
    "reducers",
    "reducer_group",
    "if",
    "image_ndvi",
    "image_select",
    "image_reduce_region",
    "image_collection_map",
    "image_clip",
    "keyword_skipping",
    "feature_null_geometry",
    "covering_grid",
    "large_integers",
    "large_integer_number",
    "nan",
    "infinity",
    "minus_infinity_minus_zero",
    "strings_escaping",
    "strings_unicode",
    "dictionary_keys",
    "booleans_null",
    "user_function",
    "shared_values",
    "element_set_multi",
    "terrain_like_static",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_round_trip(node, ee_local, case):
    obj = _cases(ee_local)[case]
    round_trip(node, jsgen.Script(case).value(obj, "result"))


def test_case_list_is_complete(ee_local):
    assert sorted(_cases(ee_local)) == sorted(CASE_NAMES)


def test_all_cases_in_one_script_share_variables(node, ee_local):
    """Several values in one script: shared sub-graphs become variables, and every value still round-trips."""
    script = jsgen.Script("everything")
    for name, obj in _cases(ee_local).items():
        script.value(obj, f"case_{name}")
    source, _ = round_trip(node, script)
    (ROOT / ".cache").mkdir(exist_ok=True)
    (ROOT / ".cache" / "jsgen_all_cases.js").write_text(source)
    assert source.count("var ") > len(CASE_NAMES)


# ---------------------------------------------------------------------------------------------- readable output


def test_readable_method_chains(ee_local):
    ee = ee_local
    js = jsgen.to_js(ee.Image("COPERNICUS/S2").normalizedDifference(["B8", "B4"]), "ndvi")
    assert js == "var ndvi = ee.Image('COPERNICUS/S2').normalizedDifference(['B8', 'B4']);\n"
    assert jsgen.to_js(ee.Number(1).add(2), "n") == "var n = ee.Number(1).add(2);\n"
    assert "ee.Reducer.mean()" in jsgen.to_js(ee.Reducer.mean())
    assert "ee.Filter.eq('a', 1)" in jsgen.to_js(ee.Filter.eq("a", 1))
    assert "ee.Geometry.Point([1, 2])" in jsgen.to_js(ee.Geometry.Point([1, 2]))
    assert "ee.Algorithms.If(" in jsgen.to_js(ee.Algorithms.If(True, 1, 2))
    fc = ee.FeatureCollection(TABLE)
    js = jsgen.to_js(fc.map(lambda f: f.set("a", 1)).size().add(fc.size()))
    assert "var table = ee.FeatureCollection(" in js
    assert "function (feature) {" in js and "return feature.set('a', 1);" in js


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (-0.0, "-0"),
        (1e6, "1e6"),
        (0.1, "0.1"),
        (1e-7, "1e-7"),
        (2.5, "2.5"),
        (3, "3"),
        (True, "true"),
    ],
)
def test_js_number(value, text):
    assert jsgen.js_number(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("a'b", r"'a\'b'"),
        ('a"b', "'a\"b'"),
        ("a\nb", r"'a\nb'"),
        ("a\\b", r"'a\\b'"),
        ("é", r"'\xe9'"),
        ("€", r"'\u20ac'"),
        ("😀", r"'\ud83d\ude00'"),
        ("\u2028", r"'\u2028'"),
    ],
)
def test_js_string(value, text):
    assert jsgen.js_string(value) == text


# ---------------------------------------------------------------------------------------------- literals, generated

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6).filter(lambda k: k != "__proto__"), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.parametrize(
    "values",
    [[float("nan"), float("inf")], [float("-inf"), float("inf")], [0, -0.0], [[float("nan")], {"a": float("-inf")}]],
)
def test_constants_the_javascript_client_would_merge_are_refused(ee_local, values):
    """The JavaScript client merges NaN/Infinity/-Infinity (and 0/-0) constants: such graphs are refused, not miswritten."""
    with pytest.raises(jsgen.JsGenError, match="cannot keep apart"):
        jsgen.to_js(ee_local.List(values))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_json, min_size=1, max_size=4))
def test_literals_round_trip(node, ee_local, values):
    """Any JSON-like constant (big integers, NaN, Infinity, -0, any string) survives the trip through JavaScript.

    Except the ones the JavaScript client would merge, which are refused (checked against node's own merge).
    """
    script = jsgen.Script().value(ee_local.List(values), "values")
    if jsgen.constant_collisions(jsgen.encode(ee_local.List(values))):
        with pytest.raises(jsgen.JsGenError):
            script.render()
        return
    round_trip(node, script)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=-(2**63), max_value=2**63 - 1), s=st.text(max_size=20))
def test_numbers_and_strings_round_trip(node, ee_local, n, s):
    ee = ee_local
    round_trip(node, jsgen.Script().value(ee.Number(n).add(1), "n").value(ee.String(s).cat(s), "s"))


# ---------------------------------------------------------------------------------------------- display and export


def test_display_and_export_calls(node, ee_local):
    ee = ee_local
    image = ee.Image("COPERNICUS/S2").normalizedDifference(["B8", "B4"])
    region = ee.Geometry.Rectangle([0, 0, 1, 1])
    fc = ee.FeatureCollection(TABLE)
    script = (
        jsgen.Script("display")
        .value(image, "ndvi")
        .print(image.bandNames(), label="bands")
        .add_layer(image, {"min": -1, "max": 1, "palette": ["white", "green"]}, "NDVI")
        .center_object(region, 8)
        .export_image_to_cloud_storage(
            image, description="ndvi", bucket="my-bucket", fileNamePrefix="ndvi/x", region=region, scale=10
        )
        .export_table_to_cloud_storage(fc, description="t", bucket="my-bucket", fileFormat="GeoJSON")
    )
    source, answer = round_trip(node, script)
    calls = {c["call"]: c["args"] for c in answer["calls"]}
    assert set(calls) == {
        "print",
        "Map.addLayer",
        "Map.centerObject",
        "Export.image.toCloudStorage",
        "Export.table.toCloudStorage",
    }
    assert calls["print"][0] == "bands"
    assert js_graph(calls["print"][1]["$graph"]) == python_graph(image.bandNames())
    layer = calls["Map.addLayer"]
    assert js_graph(layer[0]["$graph"]) == python_graph(image)
    assert layer[1] == {"min": -1, "max": 1, "palette": ["white", "green"]} and layer[2] == "NDVI"
    assert (
        js_graph(calls["Map.centerObject"][0]["$graph"]) == python_graph(region) and calls["Map.centerObject"][1] == 8
    )
    export = calls["Export.image.toCloudStorage"][0]
    assert js_graph(export["image"]["$graph"]) == python_graph(image)
    assert js_graph(export["region"]["$graph"]) == python_graph(region)
    assert {k: export[k] for k in ("description", "bucket", "fileNamePrefix", "scale")} == {
        "description": "ndvi",
        "bucket": "my-bucket",
        "fileNamePrefix": "ndvi/x",
        "scale": 10,
    }
    table = calls["Export.table.toCloudStorage"][0]
    assert js_graph(table["collection"]["$graph"]) == python_graph(fc) and table["fileFormat"] == "GeoJSON"
    # the image is written once, as the variable, and reused by the calls
    assert source.count("normalizedDifference") == 1


# ---------------------------------------------------------------------------------------------- ee_scripts/


@pytest.mark.parametrize("filename", sorted(jsgen.SCRIPTS))
def test_checked_in_script_is_current(ee_local, filename, tmp_path):
    """ee_scripts/ holds exactly what `gee-mining js` writes now: regenerate with `gee-mining js`."""
    jsgen.write_scripts(tmp_path)
    checked_in = ROOT / "ee_scripts" / filename
    assert checked_in.exists(), f"{checked_in} is missing: run `gee-mining js`"
    assert checked_in.read_text() == (tmp_path / filename).read_text(), f"{checked_in} is stale: run `gee-mining js`"


@pytest.mark.parametrize("filename", sorted(jsgen.SCRIPTS))
def test_checked_in_script_round_trips(node, ee_local, filename):
    """Each ee_scripts/ file, run as checked in, builds the graph of the library function it comes from."""
    script = jsgen.SCRIPTS[filename](ee_local)
    source = (ROOT / "ee_scripts" / filename).read_text()
    outputs = script.outputs()
    answer = node.run(source, [name for name, _ in outputs])
    for name, obj in outputs:
        assert js_graph(answer["graphs"][name]) == python_graph(obj)


def test_every_checked_in_script_is_registered():
    on_disk = {p.name for p in (ROOT / "ee_scripts").glob("*.js")}
    assert on_disk == set(jsgen.SCRIPTS)


def test_cli_writes_scripts(ee_local, tmp_path):
    from gee_mining.cli.main import main

    assert main(["js", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(jsgen.SCRIPTS)


def test_method_table_is_the_clients(node):
    """gee_mining/data/js_api.json is what the installed JavaScript client reports (regenerate as the test does)."""
    import ee

    algorithms = Path(ee.__file__).parent / "tests" / "algorithms.json"
    out = subprocess.run(
        ["node", str(ROOT / "tests" / "js" / "ee_offline.js"), "api", str(algorithms)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    shipped = json.loads((ROOT / "gee_mining" / "data" / "js_api.json").read_text())
    assert json.loads(out) == shipped, (
        "regenerate: node tests/js/ee_offline.js api ALGORITHMS_JSON > gee_mining/data/js_api.json"
    )

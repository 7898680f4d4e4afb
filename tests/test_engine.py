"""The engine as a server: both routes, errors in Earth Engine's shape, loopback only.

Everything goes through the real, unmodified ``ee`` client, except the few
malformed requests no client would send, which go over plain HTTP.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request

import pytest

import gee_mining
from gee_mining.local import EngineError, LocalEngine
from gee_mining.local.service.access import find_token


def raw_object(ee, node):
    """An ``ee`` object whose serialised node is given verbatim (for graphs no client builds)."""

    class Raw(ee.ComputedObject):
        def __init__(self):
            super().__init__(None, None)

        def encode_cloud_value(self, encoder=None):
            return node

    return Raw()


def compute_raw(engine_url_or_engine, values: dict, result: str = "0"):
    """POST a raw expression to value:compute; returns (status, body)."""
    payload = json.dumps({"expression": {"result": result, "values": values}}).encode()
    return _post(engine_url_or_engine, "/v1/projects/gee-mining-test/value:compute", payload)


def test_in_process_and_http_agree(ee_local, ee_http):
    ee = ee_http
    over_http = ee.Algorithms.If(ee.Algorithms.IsEqual(1, 1), "same", "different").getInfo()
    assert over_http == "same"


def test_http_route_answers_through_real_client(ee_http):
    ee = ee_http
    assert ee.Algorithms.ObjectType(ee.String("x")).getInfo() == "String"
    with pytest.raises(ee.EEException, match="not found"):
        ee.FeatureCollection("projects/gee-mining-test/assets/nope").size().getInfo()


def test_no_private_ee_function_is_patched(engine_catalog):
    """connect() replaces no function of the client, private or public."""
    import ee

    def functions():
        out = {}
        for mod in (ee, ee.data, ee.deprecation, ee.apifunction, ee.computedobject, ee._cloud_api_utils):
            for name, value in vars(mod).items():
                if isinstance(value, types.FunctionType):
                    out[(mod.__name__, name)] = value
        return out

    before = functions()
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    after = functions()
    changed = [k for k in before if after.get(k) is not before[k]]
    assert changed == []


@pytest.fixture
def raw_url(tmp_path):
    engine = LocalEngine(storage_root=tmp_path)
    yield engine.serve().url
    engine.close()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"0": {"functionInvocationValue": {"arguments": {}}}}, "needs a 'functionName'"),
        ({"0": {"noSuchKind": 1}}, "unknown value kind 'noSuchKind'"),
        ({"0": {"valueReference": "9"}}, "reference to missing value '9'"),
        ({"0": {"valueReference": "0"}}, "refers to itself"),
        ({"0": {"argumentReference": "x"}}, "Unbound argument reference: 'x'"),
        ({"0": {"integerValue": "twelve"}}, "bad integerValue"),
        ({"0": {"arrayValue": {"values": 3}}}, "expected 'values' to be a list"),
        ({"0": {"functionDefinitionValue": {"argumentNames": ["a"], "body": "7"}}}, "needs a 'body' value id"),
        (
            {"0": {"functionInvocationValue": {"functionName": "Mine.find", "arguments": {}}}},
            "Unknown algorithm: 'Mine.find'",
        ),
    ],
)
def test_malformed_graph_is_a_clear_error_and_server_keeps_serving(raw_url, values, message):
    status, body = compute_raw(raw_url, values)
    assert status == 400, body
    assert message in body["error"]["message"]
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    status, body = compute_raw(raw_url, {"0": {"constantValue": "still serving"}})
    assert (status, body) == (200, {"result": "still serving"})


def test_malformed_graph_through_the_client(ee_local):
    ee = ee_local
    with pytest.raises(ee.EEException, match="malformed value node"):
        ee.data.computeValue(raw_object(ee, {"noSuchKind": 1}))  # the client's serializer drops the node
    assert ee.Algorithms.If(1, 2, 3).getInfo() == 2


def test_unknown_algorithm_is_named(ee_local):
    ee = ee_local
    made_up = raw_object(ee, {"functionInvocationValue": {"functionName": "Mine.find", "arguments": {}}})
    with pytest.raises(ee.EEException, match="Unknown algorithm: 'Mine.find'"):
        ee.data.computeValue(made_up)


def test_unimplemented_earth_engine_algorithm_is_named_not_approximated(ee_local):
    ee = ee_local
    with pytest.raises(ee.EEException, match=r"Blob: this algorithm is not implemented by the gee-mining local engine"):
        ee.Blob("gs://bucket/object.json").getInfo()
    assert ee.Algorithms.If(0, 2, 3).getInfo() == 3


def test_unknown_asset_has_earth_engines_error(ee_local):
    ee = ee_local
    with pytest.raises(ee.EEException, match="Collection asset 'projects/gee-mining-test/assets/nope' not found"):
        ee.FeatureCollection("projects/gee-mining-test/assets/nope").getInfo()
    with pytest.raises(ee.EEException, match="not found"):
        ee.data.getAsset("projects/gee-mining-test/assets/nope")


def test_type_error_names_argument_and_types(ee_local):
    ee = ee_local
    add_text = raw_object(
        ee,
        {
            "functionInvocationValue": {
                "functionName": "Number.add",
                "arguments": {"left": {"constantValue": "a"}, "right": {"constantValue": 1}},
            }
        },
    )
    with pytest.raises(ee.EEException) as err:
        ee.data.computeValue(add_text)
    message = str(err.value)
    assert "Number.add, argument 'left': Invalid type." in message
    assert "Expected type: Number." in message and "Actual type: String." in message
    assert ee.Algorithms.If(1, "still serving", 0).getInfo() == "still serving"


def test_unknown_argument_and_missing_argument(ee_local):
    ee = ee_local
    extra = raw_object(
        ee,
        {
            "functionInvocationValue": {
                "functionName": "ObjectType",
                "arguments": {"value": {"constantValue": 1}, "bogus": {"constantValue": 2}},
            }
        },
    )
    with pytest.raises(ee.EEException, match="ObjectType: Unrecognized argument 'bogus'"):
        ee.data.computeValue(extra)
    missing = raw_object(ee, {"functionInvocationValue": {"functionName": "Describe", "arguments": {}}})
    with pytest.raises(ee.EEException, match="Describe: Parameter 'input' is required"):
        ee.data.computeValue(missing)


def test_if_evaluates_only_the_chosen_branch(ee_local):
    ee = ee_local
    failing = ee.FeatureCollection("projects/gee-mining-test/assets/nope").size()
    assert ee.Algorithms.If(1, "fine", failing).getInfo() == "fine"
    with pytest.raises(ee.EEException, match="not found"):
        ee.Algorithms.If(0, "fine", failing).getInfo()


def test_shared_subgraphs_are_evaluated_once(ee_local, monkeypatch):
    """A value used several times in one graph is computed once per request."""
    from gee_mining.local.core import registry

    ee = ee_local
    alg = registry.get("Collection.loadTable")
    calls = []

    def counting(**kwargs):
        calls.append(kwargs["tableId"])
        return alg.func(**kwargs)

    monkeypatch.setitem(registry._ALGORITHMS, alg.name, dataclasses.replace(alg, func=counting))
    fc = ee.FeatureCollection("projects/gee-mining-test/assets/squares")
    graph = ee.Algorithms.If(fc, ee.Algorithms.ObjectType(fc), ee.Algorithms.Describe(fc))
    assert ee.serializer.encode(graph, for_cloud_api=True)["values"].__len__() > 1  # fc is hoisted and shared
    assert graph.getInfo() == "FeatureCollection"
    assert calls == ["projects/gee-mining-test/assets/squares"]


def _counting_maps(monkeypatch) -> list[int]:
    """The sizes of the collections ``Collection.map`` is computed for, from now on."""
    from gee_mining.local.core import registry

    alg = registry.get("Collection.map")
    calls: list[int] = []

    def counting(**kwargs):
        calls.append(len(kwargs["collection"].features))
        return alg.func(**kwargs)

    monkeypatch.setitem(registry._ALGORITHMS, alg.name, dataclasses.replace(alg, func=counting))
    return calls


def test_mapped_collections_are_kept_across_requests(ee_local, monkeypatch):
    """A mapped collection reading no function argument is computed once per engine: later requests holding
    the same sub-graph (shared in their graph or written inline) get it without computing it again, with
    the same values as a fresh computation; a map reading an outer function's argument is computed each time."""
    ee = ee_local
    calls = _counting_maps(monkeypatch)
    token = time.time_ns()  # a sub-graph no earlier test has asked for
    fc = ee.FeatureCollection([ee.Feature(None, {"v": i}) for i in range(5)])
    mapped = fc.map(lambda f: f.set("w", ee.Number(f.get("v")).multiply(token)))
    assert mapped.aggregate_array("w").getInfo() == [i * token for i in range(5)]
    assert calls == [5]
    shared = ee.Algorithms.If(mapped, mapped.aggregate_sum("w"), 0)
    assert ee.serializer.encode(shared, for_cloud_api=True)["values"].__len__() > 1  # mapped is hoisted
    assert shared.getInfo() == 10 * token and mapped.size().getInfo() == 5
    assert calls == [5]  # kept: neither request computed it again
    inner = fc.map(lambda f: f.set("n", mapped.map(lambda g: g.set("x", f.get("v"))).aggregate_sum("x")))
    assert inner.aggregate_array("n").getInfo() == [5 * i for i in range(5)]
    assert sorted(calls) == [5, 5, 5, 5, 5, 5, 5]  # the outer map, once; the inner one per element


def test_kept_values_expire_when_an_asset_is_replaced(ee_local, monkeypatch, tmp_path):
    """A table asset added again under its id (an export overwriting it) is read afresh by the next request."""
    ee = ee_local
    engine = gee_mining.current_connection().local_engine
    table_id = f"projects/gee-mining-test/assets/kept_{time.time_ns()}"
    for n in (2, 3):
        path = tmp_path / f"t{n}.geojson"
        features = [{"type": "Feature", "geometry": None, "properties": {"v": i}} for i in range(n)]
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        engine.catalog.add_table(table_id, path)
        got = ee.FeatureCollection(table_id).map(lambda f: f.set("w", ee.Number(f.get("v")).add(1)))
        assert got.aggregate_array("w").getInfo() == list(range(1, n + 1))


def test_http_server_binds_loopback_only(tmp_path):
    engine = LocalEngine(storage_root=tmp_path)
    try:
        server = engine.serve()
        assert server.host == "127.0.0.1"
        assert server.url.startswith("http://127.0.0.1:")
        for host in ("0.0.0.0", "192.168.1.10", "::", "example.org"):
            with pytest.raises(EngineError, match="loopback"):
                engine.serve(host)
    finally:
        engine.close()


def _post(url: str, path: str, body: bytes):
    """POST to an engine served at ``url``, with the token it left in its runtime file."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {find_token(url)}"}
    req = urllib.request.Request(url + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_error_answers_have_earth_engines_shape_over_http(tmp_path):
    engine = LocalEngine(storage_root=tmp_path)
    try:
        url = engine.serve().url
        status, body = _post(url, "/v1/projects/p-local/value:compute", b"{not json")
        assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
        assert "not valid JSON" in body["error"]["message"]
        status, body = _post(url, "/v1/projects/p-local/value:compute", b'{"expression": {"result": "0"}}')
        assert status == 400 and "'values'" in body["error"]["message"]
        status, body = _post(url, "/v1/projects/p-local/nothing:here", b"{}")
        assert status == 404 and body["error"]["code"] == 404
        ok = {"expression": {"result": "0", "values": {"0": {"constantValue": [1, "two"]}}}}
        status, body = _post(url, "/v1/projects/p-local/value:compute", json.dumps(ok).encode())
        assert status == 200 and body == {"result": [1, "two"]}
    finally:
        engine.close()


def test_connect_reports_engine(engine_catalog):
    conn = gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    assert conn.engine == "local" and conn.is_local and conn.transport == "in-process"
    assert "local engine" in conn.describe()
    again = gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    assert again.local_engine is conn.local_engine  # reused, not restarted


def test_disconnect_closes_the_engine_and_the_next_connect_starts_afresh(tmp_path):
    import ee

    options = dict(project="gee-mining-closing", storage_root=tmp_path / "storage")
    first = gee_mining.connect("local", **options, http=True)
    assert ee.Number(2).add(3).getInfo() == 5
    gee_mining.disconnect()
    assert gee_mining.current_connection() is None
    with pytest.raises(ee.EEException, match="not initialized"):
        ee.Number(1).getInfo()
    with pytest.raises(urllib.error.URLError):  # its HTTP server is stopped
        urllib.request.urlopen(first.url + "/v1/projects/gee-mining-closing/value:compute", timeout=5)
    second = gee_mining.connect("local", **options)
    assert second.local_engine is not first.local_engine
    assert ee.Number(2).add(3).getInfo() == 5
    gee_mining.disconnect()
    gee_mining.disconnect()  # nothing connected: nothing to do


def test_connect_earthengine_needs_project_and_credentials(tmp_path, monkeypatch, engine_catalog):
    monkeypatch.setenv("HOME", str(tmp_path))  # no stored Earth Engine credentials
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(gee_mining.ConnectError, match="project="):
        gee_mining.connect("earthengine")
    try:
        with pytest.raises(gee_mining.ConnectError, match="earthengine authenticate"):
            gee_mining.connect("earthengine", project="some-project")
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    with pytest.raises(gee_mining.ConnectError, match="Unknown engine"):
        gee_mining.connect("gee")


def test_connect_bad_catalog_is_clear(tmp_path):
    bad = tmp_path / "catalog.toml"
    bad.write_text("[[table]]\nid = 'projects/x-project/assets/t'\n")
    with pytest.raises(gee_mining.ConnectError, match="needs 'id' and 'path'"):
        gee_mining.connect("local", project="gee-mining-test", catalog=bad)
    with pytest.raises(gee_mining.ConnectError, match="does not exist"):
        gee_mining.connect("local", project="gee-mining-test", catalog=tmp_path / "missing.toml")


def test_operations_list_get_cancel_through_the_client(ee_local, tmp_path):
    ee = ee_local
    fc = ee.FeatureCollection("projects/gee-mining-test/assets/squares")
    task = ee.batch.Export.table.toCloudStorage(fc, description="squares", bucket="test-bucket", fileNamePrefix="sq")
    task.start()
    for _ in range(200):
        status = task.status()
        if status["state"] in ("COMPLETED", "SUCCEEDED", "FAILED"):
            break
        time.sleep(0.05)
    assert status["state"] == "COMPLETED", status
    assert status["description"] == "squares"
    names = [op["name"] for op in ee.data.listOperations()]
    assert task.operation_name in names
    op = ee.data.getOperation(task.operation_name)
    assert op["done"] is True and op["metadata"]["state"] == "SUCCEEDED"
    uri = op["metadata"]["destinationUris"][0]
    assert uri.endswith("/test-bucket/sq.csv")
    task.cancel()  # cancelling a finished task changes nothing
    assert ee.data.getOperation(task.operation_name)["metadata"]["state"] == "SUCCEEDED"
    with pytest.raises(ee.EEException, match="not found"):
        ee.data.getOperation("projects/gee-mining-test/operations/NOSUCHOPERATION")


def test_failed_task_carries_its_error(ee_local):
    ee = ee_local
    fc = ee.FeatureCollection("projects/gee-mining-test/assets/nope")
    task = ee.batch.Export.table.toCloudStorage(fc, description="doomed", bucket="b-bucket", fileNamePrefix="x")
    task.start()
    for _ in range(200):
        status = task.status()
        if status["state"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.05)
    assert status["state"] == "FAILED"
    assert "not found" in status["error_message"]


def test_cli_serve_over_http(tmp_path, engine_catalog):
    """`gee-mining serve` in another process; the client connects by URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gee_mining.cli",
            "serve",
            "--catalog",
            str(engine_catalog),
            "--project",
            "gee-mining-test",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "serving Earth Engine's REST API on http://127.0.0.1:" in line
        url = line.split(" on ", 1)[1].split()[0]
        import ee

        conn = gee_mining.connect("local", project="gee-mining-test", url=url)
        assert conn.transport == "http"
        with pytest.raises(ee.EEException, match="not found"):
            ee.FeatureCollection("projects/gee-mining-test/assets/nope").getInfo()
        assert ee.Algorithms.ObjectType("text").getInfo() == "String"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1.0, "b": None, "c": [1e16, 1e-05, -0.0, 5e-324, 1.7976931348623157e308], "s": "Ñandú 中"},
        {"nan": float("nan"), "inf": [float("inf"), -float("inf")], "n": None},  # json's NaN/Infinity, kept
        {"big": 2**70, "k": [True, False, 0, -(2**63)]},  # beyond 64 bits: orjson refuses, json writes it
        [[[0.1, 0.2], [0.30000000000000004, 1 / 3]]],
    ],
)
def test_answers_decode_to_the_values_json_writes(value):
    """The engine's JSON answers (orjson where it writes the same values) decode, with the client's own
    ``json.loads``, to exactly what Python's ``json.dumps`` writes: floats to the bit, ints as ints,
    non-finite numbers as NaN / Infinity, not orjson's null."""
    from gee_mining.local.service.router import _dumps

    got, want = json.loads(_dumps(value)), json.loads(json.dumps(value))
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    assert repr(got) == repr(want)  # int stays int, float stays float, -0.0 keeps its sign


@pytest.mark.parametrize(
    "feature",
    [
        {"type": "Feature", "geometry": None, "properties": {"x": float("nan"), "n": 1}},  # NaN and a null geometry
        {"type": "Feature", "geometry": None, "properties": {"x": [float("-inf")], "t": "null"}},
        {"type": "Feature", "geometry": None, "properties": {"t": "null and null", "x": 0.5}},
        {"type": "Feature", "geometry": None, "properties": {"x": None}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1.0, float("nan")]}, "properties": {}},
        {"type": "Feature", "geometry": None, "properties": {"geometry": float("inf")}},
    ],
)
def test_features_without_geometry_keep_their_non_finite_numbers(feature):
    """A page's feature is written as ``json.dumps`` writes it, NaN and infinities included, also where its
    geometry is null (the one ``null`` the feature encoder does not search past)."""
    from gee_mining.local.service.router import _dumps_features

    plain = {"type": "Feature", "geometry": None, "properties": {"x": 1.5}}
    for page in ([feature], [plain, feature, plain]):
        got, want = json.loads(_dumps_features(page)), json.loads(json.dumps(page))
        assert repr(got) == repr(want)


@pytest.mark.parametrize("token", [None, "0123abcd:2"])
@pytest.mark.parametrize("x", [0.25, float("nan")])
def test_page_answer_is_encoded_once_with_its_list_length(token, x):
    """A computeFeatures answer is written in one encoding (orjson, or json where a non-finite number needs it),
    decodes to the page, and the length it reports is that of its features' list within it (what the page's
    size limit counts)."""
    from gee_mining.local.service.router import _dumps_page

    features = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1.5, -2.25]}, "id": "0",
         "properties": {"a": 0.1, "t": "Ñandú"}},
        {"type": "Feature", "geometry": None, "id": "1", "properties": {"x": x, "n": None}},
    ]  # fmt: skip
    answer, list_bytes = _dumps_page(features, token)
    want = {"type": "FeatureCollection", "features": features} | ({"nextPageToken": token} if token else {})
    assert repr(json.loads(answer)) == repr(want)
    head = b'{"type":"FeatureCollection","features":'
    tail = b"}" if token is None else f',"nextPageToken":"{token}"}}'.encode()
    assert answer.startswith(head) and answer.endswith(tail)
    listed = answer[len(head) : len(answer) - len(tail)]
    assert repr(json.loads(listed)) == repr(features) and list_bytes == len(listed)


def test_pages_of_features_through_the_client_keep_nan_and_text(ee_local):
    """A computeFeatures page through the real client: a NaN property comes back as NaN (as the engine
    wrote it before its pages were encoded with orjson), text outside ASCII unchanged, None as None."""
    import math

    from gee_mining.io.pages import fetch_features

    fc = ee_local.FeatureCollection([
        ee_local.Feature(ee_local.Geometry.Point([1.5, -2.25]), {"x": ee_local.Number(-1).sqrt(), "t": "Ñandú"}),
        ee_local.Feature(None, {"x": 2.5, "t": None}),
    ])  # fmt: skip
    got = fetch_features(fc)
    assert math.isnan(got[0]["properties"]["x"]) and got[0]["properties"]["t"] == "Ñandú"
    assert got[0]["geometry"] == {"type": "Point", "coordinates": [1.5, -2.25]}
    assert got[1]["properties"] == {"x": 2.5, "t": None} and got[1]["geometry"] is None


@pytest.mark.filterwarnings(
    "ignore:invalid value encountered in linearrings:RuntimeWarning"
)  # the NaN vertex, on purpose
def test_page_infos_made_in_bulk_equal_each_features_own():
    """A page's GeoJSON made in bulk (polygons without holes sliced from their own coordinates, the others
    through their rings, lon/lat geometries written inline) equals what each feature makes alone
    (``Feature.to_info``: its geometry's shape walked by itself), for lon/lat polygons with and without
    holes, geodesic or not, even-odd or not, multipolygons, points, a geometry in another projection, a
    collection and geometries among the properties."""
    import shapely

    from gee_mining.local.values.feature import Feature, features_info
    from gee_mining.local.values.geometry import Geometry
    from gee_mining.local.values.projection import Projection

    hole = shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 1)], [[(0.25, 0.25), (0.5, 0.25), (0.5, 0.5)]])
    box = shapely.box(-54.1, -5.2, -54.0, -5.1)
    geoms = [
        Geometry(box),
        Geometry(box, geodesic=False),
        Geometry(hole, even_odd=False),
        Geometry(shapely.MultiPolygon([box, shapely.box(-53.0, -5.2, -52.9, -5.1)]), geodesic=False),
        Geometry(shapely.Point(-54.0, -5.0)),
        Geometry(shapely.MultiPoint([(1.0, 2.0), (3.0, 4.0)])),
        Geometry(shapely.box(500_000.0, 9_000_000.0, 500_100.0, 9_000_100.0), Projection("EPSG:32721")),
        Geometry(shapely.GeometryCollection([shapely.Point(1.0, 2.0), box])),
        Geometry(shapely.Polygon()),
    ]
    features = [Feature(g, {"i": i, "c": geoms[i - 1], "s": "x"}) for i, g in enumerate(geoms)]
    features.append(Feature(None, {"c": geoms[0]}))
    want = [f.to_info() for f in features]
    assert features_info(features) == want
    bulk = features_info(features, arrays=True)
    assert json.loads(json.dumps(bulk, default=lambda a: a.tolist())) == json.loads(json.dumps(want))
    assert want[1]["geometry"].get("geodesic") is False and want[2]["geometry"].get("evenOdd") is False
    assert "crs" in want[6]["geometry"] and want[7]["geometry"]["type"] == "GeometryCollection"


def test_pages_with_rings_as_arrays_are_the_bytes_json_writes():
    """A page's polygon rings go to orjson as numpy arrays (no Python float per vertex): the page decodes to
    exactly what ``json.dumps`` writes for the same features as lists (floats to the bit, -0.0 kept, holes
    and multipolygons in order, points and geometries among the properties), and a NaN vertex still comes
    back as json's NaN, not null."""
    import shapely

    from gee_mining.local.service.router import _dumps
    from gee_mining.local.values.feature import Feature, features_info
    from gee_mining.local.values.geometry import Geometry

    hole = shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 1)], [[(0.25, 0.25), (0.5, 0.25), (0.5, 0.5)]])
    shapes = [
        hole,
        shapely.MultiPolygon([hole, shapely.box(-0.0, 2.0, 1 / 3, 2.1)]),
        shapely.Point(1e-05, -0.0),
        shapely.LineString([(0.1, 0.2), (0.3, 0.4)]),
        shapely.Polygon(),
    ]
    features = [
        Feature(Geometry(s, geodesic=False), {"k": i, "c": Geometry(shapely.centroid(s)), "v": [0.1, "t"]})
        for i, s in enumerate(shapes)
    ]
    features.append(Feature(None, {"k": 9}))
    for arrays, plain in zip(features_info(features, arrays=True), features_info(features), strict=True):
        assert json.loads(_dumps(arrays)) == json.loads(json.dumps(plain))
        assert repr(json.loads(_dumps(arrays))) == repr(json.loads(json.dumps(plain)))  # -0.0, ints
    bad = Feature(Geometry(shapely.Polygon([(0, 0), (1, 0), (float("nan"), 1)]), geodesic=False), {})
    text = _dumps(features_info([bad], arrays=True)[0])
    assert b"NaN" in text and b"null" not in text


@pytest.mark.parametrize(
    "text",
    [b"", b"n", b"nul", b"null", b"nnull", b"nulnull", b"null,null]", b'{"t":"null and nu","x":null}', b"ull" * 5],
)
def test_nulls_are_counted_as_bytes_count_counts_them(text):
    """The page encoder's count of ``null`` (found on the bytes as an array) is ``bytes.count``'s, at the
    ends of the text, overlapping near-misses and all, and on a page of numbers with a few nulls among them."""
    from gee_mining.local.service.router import _count_null

    assert _count_null(text) == text.count(b"null")
    page = b",".join(b"null" if k % 97 == 0 else str(k * 0.1).encode() for k in range(5000))
    assert _count_null(page) == page.count(b"null") == 52


def test_storage_the_engine_made_itself_is_removed_when_it_closes(tmp_path):
    """Without ``storage_root`` the engine's storage is a temporary folder of its own: gone after ``close``
    (the process's end too: a finalizer). A given ``storage_root`` is the caller's and stays."""
    made = LocalEngine()
    scratch = made.storage_root
    (scratch / "bkt").mkdir(parents=True, exist_ok=True)
    (scratch / "bkt" / "x.tif").write_bytes(b"x")
    made.close()
    assert not scratch.exists()
    (tmp_path / "mine" / "bkt").mkdir(parents=True)
    given = LocalEngine(storage_root=tmp_path / "mine")
    given.close()
    assert (tmp_path / "mine" / "bkt").is_dir()

"""A mapped function evaluated for all elements at once gives what it gives one element at a time.

``Collection.map`` and ``List.map`` evaluate their function as a batch (one
graph walk, vectorised geometry algorithms). The reference here is the same
function applied to each element outside any map, which the engine evaluates
one algorithm call at a time (the path the geometry tests check against
shapely and pyproj). Results must be equal, not close: the batch sends the
same coordinates through the same transformers. Also: ``If`` evaluates only
the branch each element takes, errors still name the algorithm, functions
nest, and the bulk reprojection equals the one-by-one one on random shapes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import shared_file

AMAZON = "projects/gee-mining-test/assets/amazon_mining_2024"


def _features(ee):
    """Geometries of every kind the grid and the pixel steps map over, with the awkward ones."""
    utm = "EPSG:32721"
    geoms = [
        ee.Geometry.Polygon([[[-55.0, -5.0], [-54.99, -5.0], [-54.99, -4.99], [-55.0, -4.99]]]),  # a mine
        ee.Geometry.Polygon([[[-60.0, -10.0], [-50.0, -10.0], [-50.0, 0.0], [-60.0, 0.0]]]),  # needs densifying
        ee.Geometry.Rectangle([687500, 9447000, 688875, 9448375], utm, False),  # a grid cell
        ee.Geometry.Rectangle([600000, 9300000, 700000, 9400000], utm, False),  # a big planar one
        ee.Geometry.Point([-54.5, -4.5]),
        ee.Geometry.MultiPoint([[-54.5, -4.5], [-54.4, -4.4]]),
        ee.Geometry.LineString([[-55.0, -5.0], [-54.0, -4.0]]),
        ee.Geometry.MultiPolygon(
            [
                [[[-55.0, -5.0], [-54.9, -5.0], [-54.9, -4.9], [-55.0, -4.9]]],
                [
                    [[-54.8, -5.0], [-54.6, -5.0], [-54.6, -4.8], [-54.8, -4.8]],
                    [[-54.75, -4.95], [-54.65, -4.95], [-54.65, -4.85], [-54.75, -4.85]],
                ],
            ]
        ),
        ee.Geometry.Polygon([[[10.0, 60.0], [11.0, 60.0], [11.0, 61.0], [10.0, 61.0]]], None, False),  # planar lon/lat
        ee.Geometry.Polygon([[[-55.0, -5.0], [-54.9, -4.9], [-54.9, -5.0], [-55.0, -4.9]]]),  # a bow-tie
    ]
    return [ee.Feature(g, {"k": i, "v": i * 1.5}) for i, g in enumerate(geoms)]


def _both(ee, fn, features):
    """``fn`` over the features as a mapped collection, and applied to each feature on its own."""
    batched = ee.FeatureCollection(features).map(fn).getInfo()["features"]
    one_by_one = ee.List([fn(f) for f in features]).getInfo()
    return [f["properties"] for f in batched], [f["properties"] for f in one_by_one]


def test_geometry_algorithms_equal(ee_local):
    ee = ee_local
    utm = ee.Projection("EPSG:32721")
    other = ee.Geometry.Rectangle([-55.2, -5.2, -54.7, -4.7])

    def fn(f):
        g = f.geometry()
        return ee.Feature(
            None,
            {
                "to_lonlat": g.transform("EPSG:4326", 1).coordinates(),
                "to_utm": g.transform(utm, 0.01).coordinates(),
                "bounds": g.bounds(1).coordinates(),
                "bounds_utm": g.bounds(1, utm).coordinates(),
                "centroid": g.centroid(1).coordinates(),
                "centroid_utm": g.centroid(1, utm).coordinates(),
                "area_utm": g.area(1, utm),
                "area": g.area(1),
                "dissolved": g.dissolve(1, utm).coordinates(),
                "cut": g.intersection(other, 1, utm).coordinates(),
                "joined": g.union(other, 1, utm).area(1, utm),
                "cut_lonlat": g.intersection(other, 1).area(1),
            },
        )

    batched, one_by_one = _both(ee, fn, _features(ee))
    assert batched == one_by_one


def test_made_geometries_keep_their_types_edges_and_projections(ee_local):
    """The geometries the vectorised forms make in bulk (boxes, centroids, overlays, dissolves,
    transforms) are the GeoJSON the one-by-one path makes: type, coordinates, edge kind and CRS; and their
    types are those shapely gives the same operation (an edge-touching cut is a collection, a cut far away
    an empty polygon)."""
    ee = ee_local
    utm = ee.Projection("EPSG:32721")
    other = ee.Geometry.Rectangle([-55.2, -5.2, -54.7, -4.7])

    def fn(f):
        g = f.geometry()
        made = {
            "box": g.bounds(1),
            "box_utm": g.bounds(1, utm),
            "centre": g.centroid(1),
            "centre_utm": g.centroid(1, utm),
            "cut": g.intersection(other, 1, utm),
            "dissolved": g.dissolve(1, utm),
            "to_lonlat": g.transform("EPSG:4326", 1),
            "to_utm": g.transform(utm, 1),
        }
        return ee.Feature(None, made)

    batched, one_by_one = _both(ee, fn, _features(ee))
    assert batched == one_by_one
    square = shapely.box(-55.2, -5.2, -54.7, -4.7)
    edge = ee.Geometry.Polygon([[[-54.7, -5.0], [-54.6, -5.0], [-54.6, -4.9], [-54.7, -4.9]]])  # touches its edge
    far = ee.Geometry.Polygon([[[10.0, 10.0], [10.1, 10.0], [10.1, 10.1], [10.0, 10.1]]])
    cuts = ee.FeatureCollection([ee.Feature(g) for g in (edge, far)]).map(
        lambda f: ee.Feature(f.geometry().intersection(other, 1, "EPSG:4326"))
    )
    got = [f["geometry"]["type"] for f in cuts.getInfo()["features"]]
    edge_shape = shapely.box(-54.7, -5.0, -54.6, -4.9)
    far_shape = shapely.box(10.0, 10.0, 10.1, 10.1)
    assert got == [shapely.intersection(s, square).geom_type for s in (edge_shape, far_shape)]


def test_bounds_filters_equal(ee_local):
    """``filterBounds`` of one collection inside a map (the grid's positives) picks what it picks alone."""
    shared_file("polygons/amazon_mining_2024_model.geojson")  # the Amazon table: skips without the shared data
    ee = ee_local
    polygons = ee.FeatureCollection(AMAZON).limit(300)
    utm = ee.Projection("EPSG:32721")

    def fn(f):
        hits = polygons.filterBounds(f.geometry())
        merged = hits.geometry()
        return ee.Feature(
            None,
            {
                "n": hits.size(),
                "ids": hits.aggregate_array("system:index"),
                "merged": merged.coordinates(),
                "overlap": merged.dissolve(1, utm).intersection(f.geometry(), 1, utm).area(1, utm),
            },
        )

    cells = ee.FeatureCollection(AMAZON).limit(80).geometry().coveringGrid(ee.Projection("EPSG:32721").atScale(5500))
    features = [ee.Feature(ee.Geometry(g)) for g in cells.geometry().geometries().getInfo()[:60]]
    features += [ee.Feature(ee.Geometry.Rectangle([x, 0, x + 0.1, 0.1])) for x in (10, 20)]  # no polygon there
    batched, one_by_one = _both(ee, fn, features)
    assert batched == one_by_one
    assert sum(p["n"] for p in one_by_one) > 0 and any(p["n"] == 0 for p in one_by_one)


def test_list_min_max_equal(ee_local):
    """``List.reduce`` with ``Reducer.min``/``max`` in a map (the grid's per-row bounds) picks what Python's
    ``min``/``max`` pick, the first of equals with its type kept; nulls and empty lists as the scalar form."""
    ee = ee_local
    lists = [[3, 1.0, 1, 2], [-2.5, 7, 7.0], [4], [], [None, 5, 2], [2, 2.0]]
    features = [ee.Feature(None, {"k": i}) for i in range(len(lists))]

    def fn(f):
        xs = ee.List(ee.List(lists).get(f.get("k")))
        return f.set({"lo": xs.reduce(ee.Reducer.min()), "hi": xs.reduce(ee.Reducer.max())})

    batched, one_by_one = _both(ee, fn, features)
    assert batched == one_by_one
    assert [(p["lo"], p["hi"]) for p in batched[:3]] == [(min(v), max(v)) for v in lists[:3]]
    assert [type(p["lo"]) for p in batched[:2]] == [float, float] and type(batched[1]["hi"]) is int


def test_number_operations_equal(ee_local):
    """The vectorised number forms (arithmetic, comparisons, floor, casts, format) give in a map what the
    scalar forms give one element at a time, types kept (ints stay ints), on the awkward values: zero
    divisors, -0.0, NaN, infinities, integers past 2**53, and a column mixing ints and floats."""
    ee = ee_local
    pairs = [(7, 2), (-7, 2.0), (2.5, 0), (0, 0), (-0.0, 3), (1e308, 10.0), (2**62 + 1, 3), (-2.5, -0.0)]
    pairs += [(math.nan, 1), (math.inf, -math.inf), (3, 3.0), (-1.5, 2**63)]
    features = [ee.Feature(None, {"k": i}) for i in range(len(pairs))]
    table = ee.List([list(p) for p in pairs])

    def fn(f):
        a = ee.Number(ee.List(table.get(f.get("k"))).get(0))
        b = ee.Number(ee.List(table.get(f.get("k"))).get(1))
        ops = ("add", "subtract", "multiply", "divide", "min", "max", "lt", "lte", "gt", "gte", "eq", "neq")
        out = {op: getattr(a, op)(b) for op in ops}
        out.update(floor=a.floor(), int=a.int(), uint8=b.uint8(), long=a.long(), fmt=a.format("%.1f"), s=b.format())
        return ee.Feature(None, out)

    batched, one_by_one = _both(ee, fn, features)
    assert json.dumps(batched) == json.dumps(one_by_one)  # NaN equal to NaN, and 1 distinct from 1.0
    assert batched[0]["add"] == 9 and type(batched[0]["add"]) is int and batched[0]["divide"] == 3.5
    assert batched[2]["divide"] == 0 and batched[3]["divide"] == 0  # division by zero answers 0 (documented)
    assert batched[6]["add"] == 2**62 + 4 and batched[0]["floor"] == 7  # exact beyond 2**53
    assert batched[4]["fmt"] == "-0.0" and batched[1]["fmt"] == "-7.0"  # -0.0 not taken for 0


def test_number_operations_refuse_what_the_scalar_form_refuses(ee_local):
    ee = ee_local
    fc = ee.FeatureCollection([ee.Feature(None, {"v": v}) for v in (1, 2.5, "three")])
    with pytest.raises(ee.EEException, match="Number.divide, argument 'left': Invalid type"):
        fc.map(lambda f: f.set("x", ee.Number(f.get("v")).divide(2))).getInfo()


def test_or_of_bounds_filters_equal(ee_local):
    """A ``Filter.or`` of bounds filters (the grid's cells kept in a group's blocks), tested a part at a time
    over a collection, keeps what ``Geometry.intersects`` decides for each cell and part; the parts in the
    cells' projection also against shapely on the cells' own coordinates."""
    ee = ee_local
    utm = "EPSG:32721"
    size = 1000.0
    cells = [(600000 + i * size, 9400000 + j * size) for i in range(12) for j in range(10)]
    fc = ee.FeatureCollection(
        [
            ee.Feature(ee.Geometry.Rectangle([x, y, x + size, y + size], utm, False), {"k": k})
            for k, (x, y) in enumerate(cells)
        ]
    )
    planar = [
        (603000, 9402000, 605000, 9404000),
        (608500, 9406500, 608600, 9406600),
        (611999, 9409999, 613000, 9411000),
    ]
    parts = [ee.Geometry.Rectangle(list(b), utm, False) for b in planar]
    lonlat = ee.Geometry.Polygon([[[-56.05, -5.40], [-56.0, -5.40], [-56.0, -5.35]]])  # geodesic, another CRS
    kept = fc.filter(ee.Filter.Or(*[ee.Filter.bounds(g) for g in [*parts, lonlat]])).aggregate_array("k").getInfo()
    tests = ee.List(
        [ee.Geometry.Rectangle([x, y, x + size, y + size], utm, False).intersects(lonlat) for x, y in cells]
    ).getInfo()
    boxes = shapely.box(*np.array(planar).T)
    shapely_hits = [any(shapely.intersects(shapely.box(x, y, x + size, y + size), boxes)) for x, y in cells]
    one_by_one = [k for k in range(len(cells)) if shapely_hits[k] or tests[k]]
    assert kept == one_by_one
    assert 0 < sum(tests) < len(cells) and 0 < sum(shapely_hits) < len(cells)  # both kinds of part keep cells


def test_list_get_equal(ee_local):
    """``List.get`` of one index in a map (the grid's coordinates) picks what it picks one element at a time,
    counting from the end for a negative index; an index past a list fails with the scalar form's error."""
    ee = ee_local
    lists = [[3, 1.5, "a"], [[1, 2], None, 7], [0, 0, 0, 9]]
    features = [ee.Feature(None, {"k": i}) for i in range(len(lists))]

    def fn(f):
        xs = ee.List(ee.List(lists).get(f.get("k")))
        return f.set({"first": xs.get(0), "last": xs.get(-1), "second": xs.get(1)})

    batched, one_by_one = _both(ee, fn, features)
    assert batched == one_by_one
    assert [(p["first"], p["last"]) for p in batched] == [(v[0], v[-1]) for v in lists]
    fc = ee.FeatureCollection(features)
    with pytest.raises(ee.EEException, match="List.get: List index must be between -3 and 2: 3"):
        fc.map(lambda f: f.set("x", ee.List(ee.List(lists).get(f.get("k"))).get(3))).getInfo()


def test_if_evaluates_only_the_branch_taken(ee_local):
    ee = ee_local
    fc = ee.FeatureCollection([ee.Feature(None, {"ok": i % 2, "v": i}) for i in range(6)])

    def fn(f):
        safe = ee.Algorithms.If(ee.Number(f.get("ok")).eq(1), ee.Number(f.get("v")).multiply(10), ee.Number(-1))
        return f.set("out", safe)

    assert fc.map(fn).aggregate_array("out").getInfo() == [-1, 10, -1, 30, -1, 50]

    def failing_when_odd(f):
        bad = ee.List([]).get(3)
        return f.set("out", ee.Algorithms.If(ee.Number(f.get("ok")).eq(0), f.get("v"), bad))

    assert fc.filter(ee.Filter.eq("ok", 0)).map(failing_when_odd).aggregate_array("out").getInfo() == [0, 2, 4]
    with pytest.raises(ee.EEException, match="List.get"):
        fc.map(failing_when_odd).getInfo()


def test_nested_functions_and_drop_nulls(ee_local):
    ee = ee_local
    fc = ee.FeatureCollection([ee.Feature(None, {"v": i}) for i in range(5)])
    out = fc.map(lambda f: f.set("l", ee.List([1, 2, 3]).map(lambda x: ee.Number(x).add(f.get("v")))))
    assert out.aggregate_array("l").getInfo() == [[1 + i, 2 + i, 3 + i] for i in range(5)]
    kept = fc.map(lambda f: ee.Algorithms.If(ee.Number(f.get("v")).gt(2), f, None), True)
    assert kept.aggregate_array("v").getInfo() == [3, 4]
    squares = ee.List.sequence(0, 9).map(lambda x: ee.Number(x).pow(2))
    assert squares.getInfo() == [float(i * i) for i in range(10)]


def test_errors_name_the_algorithm(ee_local):
    ee = ee_local
    fc = ee.FeatureCollection([ee.Feature(ee.Geometry.Point([0, i])) for i in range(3)])
    with pytest.raises(ee.EEException, match="Number.add"):
        fc.map(lambda f: f.set("x", ee.Number(f.get("missing")).add(1))).getInfo()


# -- the bulk reprojection against the one-by-one one, on random shapes ---------------------------------

_CRS = ("EPSG:4326", "EPSG:32721", "EPSG:32633", "EPSG:3857")


def _polygon(lon: float, lat: float, size: float, n: int, hole: bool) -> shapely.Geometry:
    angles = np.linspace(0, 2 * math.pi, n, endpoint=False)
    ring = np.column_stack([lon + size * np.cos(angles), lat + 0.8 * size * np.sin(angles)])
    holes = [ring[::-1] * 0.3 + np.array([lon, lat]) * 0.7] if hole else []
    return shapely.Polygon(ring, holes)


shapes_st = st.lists(
    st.builds(
        _polygon,
        st.floats(-60, -48),
        st.floats(-20, 5),
        st.sampled_from([0.001, 0.01, 0.2, 2.0]),
        st.integers(3, 40),
        st.booleans(),
    ),
    min_size=2,
    max_size=12,
)
# shapes (made in longitude/latitude), source CRS, target CRS, geodesic source edges, error margin
reprojections = (
    shapes_st,
    st.sampled_from(_CRS),
    st.sampled_from(_CRS),
    st.booleans(),
    st.sampled_from([0.01, 1.0, math.inf]),
)


def _in_source_crs(shapes: list, src: str) -> list:
    """The shapes (made in longitude/latitude) with their coordinates in ``src``, through pyproj."""
    if src == "EPSG:4326":
        return shapes
    tf = pyproj.Transformer.from_crs("EPSG:4326", src, always_xy=True)
    return [shapely.transform(s, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1]))) for s in shapes]


@settings(max_examples=40, deadline=None)
@example(  # far outside the UTM zone, where the analytic bound settles rings it does not bound
    shapes=[_polygon(lon, 0.0, size, 3, False) for lon, size in ((-48, 1e-3), (-48, 0.01), (-60, 1e-3), (-48, 1e-3))],
    src="EPSG:4326",
    dst="EPSG:32633",
    src_geo=False,
    max_err=0.01,
    multi=True,
)
@given(*reprojections, st.booleans())
def test_reproject_many_equals_reproject(shapes, src, dst, src_geo, max_err, multi):
    from gee_mining.local.values.geometry import reproject, reproject_many

    src_geo = src_geo and src == "EPSG:4326"
    dst_geo = dst == "EPSG:4326" and not src_geo
    shapes = _in_source_crs(shapes, src)
    if multi:
        shapes = [shapely.MultiPolygon(shapes[: len(shapes) // 2]), *shapes[len(shapes) // 2 :]]
    arr = np.empty(len(shapes), dtype=object)
    arr[:] = shapes
    bulk = reproject_many(arr, src, dst, src_geo, dst_geo, max_err)
    for a, b in zip(bulk, (reproject(s, src, dst, src_geo, dst_geo, max_err) for s in shapes), strict=True):
        assert a.geom_type == b.geom_type
        assert np.array_equal(shapely.get_coordinates(a), shapely.get_coordinates(b))


def test_amazon_polygons_reprojected_in_bulk():
    """The real polygons the grid bench covers, at coveringGrid's 1 cm: the same vertices one by one or together."""
    import pyogrio

    from gee_mining.local.values.geometry import reproject, reproject_many

    _, _, wkb, _ = pyogrio.raw.read(shared_file("polygons/amazon_mining_2024_model.geojson"))
    polys = shapely.from_wkb(wkb)[:600]
    bulk = reproject_many(polys, "EPSG:4326", "EPSG:32721", True, False, 0.01)
    one = [reproject(p, "EPSG:4326", "EPSG:32721", True, False, 0.01) for p in polys]
    assert all(
        np.array_equal(shapely.get_coordinates(a), shapely.get_coordinates(b)) for a, b in zip(bulk, one, strict=True)
    )
    assert sum(len(shapely.get_coordinates(b)) for b in one) > len(shapely.get_coordinates(polys))  # some densified


@settings(max_examples=40, deadline=None)
@given(*reprojections)
def test_merged_geometry_reprojected_member_by_member(shapes, src, dst, src_geo, max_err):
    """A collection's merged geometry is reprojected through its members' caches: the same vertices as
    reprojecting the merged MultiPolygon as one shape."""
    from gee_mining.local.values.geometry import Geometry, in_crs
    from gee_mining.local.values.projection import Projection

    shapes = _in_source_crs(shapes, src)
    proj = Projection.coerce(src)
    members = [Geometry(shapely.MultiPolygon(shapes[:2]), proj, src_geo)]  # a multi member too
    members += [Geometry(s, proj, src_geo) for s in shapes[2:]]
    whole = shapely.MultiPolygon(shapes)
    merged = Geometry.merged(whole, members)
    plain = Geometry(whole, proj, src_geo)
    dst_geo = dst == "EPSG:4326" and not members[0].edges_geodesic
    for _ in range(2):  # filled, then read from the members' caches
        a, b = in_crs(merged, dst, max_err, dst_geo), in_crs(plain, dst, max_err, dst_geo)
        assert a.geom_type == b.geom_type == "MultiPolygon"
        assert np.array_equal(shapely.get_coordinates(a), shapely.get_coordinates(b))
        merged = Geometry.merged(whole, members)


def _edge_errors_m(lonlat: np.ndarray, utm: str, geodesic: bool) -> np.ndarray:
    """For each edge of a reprojected ring (vertices on the image of straight UTM edges), how far (metres) its
    midpoint, straight in longitude/latitude or geodesic, lies from the image of the UTM midpoint between
    its two vertices' preimages (pyproj both ways)."""
    geod = pyproj.Geod(ellps="WGS84")
    back = pyproj.Transformer.from_crs("EPSG:4326", utm, always_xy=True)
    x, y = back.transform(lonlat[:, 0], lonlat[:, 1])
    mid = pyproj.Transformer.from_crs(utm, "EPSG:4326", always_xy=True).transform(
        (x[:-1] + x[1:]) / 2, (y[:-1] + y[1:]) / 2
    )
    a, b = lonlat[:-1], lonlat[1:]
    if geodesic:
        az, _, dist = geod.inv(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
        lon, lat, _ = geod.fwd(a[:, 0], a[:, 1], az, np.asarray(dist) / 2)
    else:
        lon, lat = (a[:, 0] + b[:, 0]) / 2, (a[:, 1] + b[:, 1]) / 2
    return np.asarray(geod.inv(lon, lat, mid[0], mid[1])[2])


def test_a_reprojection_adding_no_vertex_serves_both_kinds_of_edge():
    """A UTM grid cell reprojected to longitude/latitude needs no new vertex at 1 m, straight or geodesic:
    its vertices through pyproj either way, and the shape made for geodesic edges is kept for straight ones
    (the grid's spatial filter asks for both). A 100 km square needs vertices, a different number per kind
    of edge: neither serves the other, and each is within 1 m of the UTM edges (pyproj, pyproj.Geod)."""
    from gee_mining.local.values.geometry import Geometry, in_crs, in_crs_many
    from gee_mining.local.values.projection import Projection

    utm = "EPSG:32721"
    to_lonlat = pyproj.Transformer.from_crs(utm, "EPSG:4326", always_xy=True)
    cell = shapely.box(687500, 9447000, 688875, 9448375)
    cell_geom = Geometry(cell, Projection.coerce(utm), False)
    geodesic = in_crs_many([cell_geom], "EPSG:4326", 1.0, True)[0]
    assert ("EPSG:4326", 1.0, False) in cell_geom._in_crs  # kept for straight edges too
    straight = in_crs(cell_geom, "EPSG:4326", 1.0, False)
    xy = shapely.get_coordinates(cell)
    want = np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))
    for got in (geodesic, straight):
        assert np.array_equal(shapely.get_coordinates(got), want)

    square = shapely.box(600000, 9300000, 700000, 9400000)
    big = Geometry(square, Projection.coerce(utm), False)
    shapes = {kind: in_crs_many([big], "EPSG:4326", 1.0, kind)[0] for kind in (True, False)}
    for kind, shape in shapes.items():
        alone = in_crs(Geometry(square, Projection.coerce(utm), False), "EPSG:4326", 1.0, kind)
        assert np.array_equal(shapely.get_coordinates(shape), shapely.get_coordinates(alone))
        assert _edge_errors_m(shapely.get_coordinates(shape), utm, kind).max() <= 1.0 + 1e-6
    assert len(shapely.get_coordinates(shapes[True])) != len(shapely.get_coordinates(shapes[False]))
    assert len(shapely.get_coordinates(shapes[False])) > 5  # densified


def test_merged_geometries_dissolved_from_their_members_cached_parts():
    """``dissolve`` of collections' merged geometries (parts repaired and cached on each member) equals
    ``dissolve`` of the same MultiPolygons given as plain geometries; a bow-tie member is repaired alike."""
    import pyogrio

    from gee_mining.local.core.registry import Column
    from gee_mining.local.values.geometry import ErrorMargin, Geometry, dissolve_many
    from gee_mining.local.values.projection import Projection

    _, _, wkb, _ = pyogrio.raw.read(shared_file("polygons/amazon_mining_2024_model.geojson"))
    polys = list(shapely.from_wkb(wkb)[:40])
    x, y = shapely.get_coordinates(polys[0])[0]
    polys.append(shapely.Polygon([(x, y), (x + 0.01, y + 0.01), (x + 0.01, y), (x, y + 0.01)]))  # a bow-tie
    members = [Geometry(p) for p in polys]
    groups = [members[k : k + 5] for k in range(0, len(members), 3)]  # overlapping groups share members
    utm = Projection.coerce("EPSG:32721")
    for _ in range(2):  # parts computed, then read from the members' caches
        merged = Column([Geometry.merged(shapely.MultiPolygon([m.shape for m in g]), g) for g in groups])
        plain = Column([Geometry(shapely.MultiPolygon([m.shape for m in g])) for g in groups])
        got = dissolve_many(len(groups), merged, ErrorMargin(1.0), utm)
        want = dissolve_many(len(groups), plain, ErrorMargin(1.0), utm)
        for a, b in zip(got, want, strict=True):
            assert a.shape.is_valid and shapely.equals_exact(a.shape, b.shape, 0.0)


def test_element_set_feature_cat_slice_and_geometry_equal(ee_local):
    """The column forms of ``Element.set`` (a property, the id), ``Feature``, ``String.cat``, ``List.slice`` and
    ``Feature.geometry`` (what the grid's mapped functions make per cell) give what the one-by-one path gives,
    ids and geometries included, and what Python's own slicing and concatenation give."""
    ee = ee_local
    rows = [("ab", [1, 2, 3, 4, 5]), ("Ñ", []), ("", [[1, 2], [3]]), ("xyz", [None, "a", 2.5])]
    features = [
        ee.Feature(ee.Geometry.Point([i, -i]) if i % 2 else None, {"k": i, "s": s, "l": values}).set(
            "system:index", f"f{i}"
        )
        for i, (s, values) in enumerate(rows)
    ]

    def fn(f):
        s, values = ee.String(f.get("s")), ee.List(f.get("l"))
        made = ee.Feature(
            f.geometry(),
            {"cat": s.cat("-").cat(s), "odd": values.slice(1, None, 2), "head": values.slice(0, -1), "k": f.get("k")},
        )
        made = made.set("a", f.get("k")).set("system:index", s.cat("!")).set("b", ee.List([1, 2]))
        return made.set("num", s.cat(f.get("k")))  # a number promoted to its text

    batched = ee.FeatureCollection(features).map(fn).getInfo()["features"]
    one_by_one = ee.List([fn(f) for f in features]).getInfo()
    assert [json.dumps(f, sort_keys=True) for f in batched] == [json.dumps(f, sort_keys=True) for f in one_by_one]
    assert [f["id"] for f in batched] == [s + "!" for s, _ in rows]
    assert [f["properties"]["cat"] for f in batched] == [f"{s}-{s}" for s, _ in rows]
    assert [f["properties"]["num"] for f in batched] == [f"{s}{i}" for i, (s, _) in enumerate(rows)]
    assert [f["properties"]["odd"] for f in batched] == [v[1::2] for _, v in rows]
    assert [f["properties"]["head"] for f in batched] == [v[:-1] for _, v in rows]
    assert [f["geometry"] for f in batched] == [
        {"type": "Point", "coordinates": [i, -i]} if i % 2 else None for i in range(4)
    ]
    fc = ee.FeatureCollection(features)
    with pytest.raises(ee.EEException, match="List.slice: 'start' must be an integer, got 0.5"):
        fc.map(lambda f: f.set("x", ee.List(f.get("l")).slice(0.5))).getInfo()
    with pytest.raises(ee.EEException, match="Feature, argument 'metadata': Invalid type"):
        fc.map(lambda f: ee.Feature(None, f.get("l"))).getInfo()


def test_buffers_equal(ee_local):
    """``Geometry.buffer`` in a map (lon/lat geometries grouped by their local projection, reprojected and
    buffered in bulk) makes exactly the one-by-one buffers: outward, inward, with a coarse error margin and in
    a given projection; and the buffer reaches the distance asked for (within its error margin), measured
    with pyproj's geodesic inverse from a point."""
    ee = ee_local
    utm = ee.Projection("EPSG:32721")

    def fn(f):
        g = f.geometry()
        return ee.Feature(
            None,
            {
                "out": g.buffer(100, 1).coordinates(),
                "in": g.buffer(-30).coordinates(),
                "coarse": g.buffer(250, 20).coordinates(),
                "utm": g.buffer(100, 1, utm).coordinates(),
            },
        )

    features = _features(ee)
    batched, one_by_one = _both(ee, fn, features)
    assert batched == one_by_one
    ring = np.array(batched[4]["out"][0])  # the point (-54.5, -4.5), buffered by 100 m
    _, _, dist = pyproj.Geod(ellps="WGS84").inv(
        np.full(len(ring), -54.5), np.full(len(ring), -4.5), ring[:, 0], ring[:, 1]
    )
    assert 99.0 <= dist.min() and dist.max() <= 100.0 + 1e-6


def test_buffer_many_equals_buffer_on_real_polygons():
    """The batched buffer (every polygon to its local AEQD and back in one pass a way, one transformer call per
    projection, the edge test on all rings at once) gives exactly the scalar buffer's vertices, for real mine
    polygons (planar, as a table's, and geodesic), ones whose edges must be densified, inward buffers, and
    shapes it leaves to the scalar path (points, lines, empty, 3-d); its local projections are
    ``local_crs``'s, including where rounding meets a half and where the centre rounds to -0."""
    import pyogrio

    from gee_mining.local.core.registry import Column
    from gee_mining.local.values.geometry import ErrorMargin, Geometry, _local_crs_many, buffer, buffer_many, local_crs

    _, _, wkb, _ = pyogrio.raw.read(shared_file("polygons/amazon_mining_2024_model.geojson"))
    polys = list(shapely.from_wkb(wkb)[:150])
    odd = [
        shapely.box(-60.0, -10.0, -50.0, 0.0),  # its edges need densifying both ways
        shapely.box(-0.2, -0.2, 0.01, 0.01),  # a centre of -0.095: rounds to -0.0
        shapely.box(0.1, 0.1, 0.15, 0.15),  # 0.125 * 4 = 0.5: half to even
        shapely.box(179.9, 1.0, 180.0, 1.1),
        shapely.MultiPolygon([shapely.box(179.9, 1.0, 180.0, 1.1), shapely.box(-180.0, 1.0, -179.9, 1.1)]),
        shapely.Point(-54.5, -4.5),
        shapely.LineString([(-55.0, -5.0), (-54.9, -4.9)]),
        shapely.Polygon(),
        shapely.Polygon([(-55.0, -5.0, 1.0), (-54.99, -5.0, 1.0), (-54.99, -4.99, 1.0)]),
        # far from the equator, where the way back tests each box at its own latitude: boxes it settles,
        # ones left to the edge test, and past 84 degrees, where the test without latitudes holds
        *[shapely.box(10.0, lat, 10.0 + w, lat + w / 4) for lat in (60.0, 75.0, 83.9, 85.5, 88.0) for w in (0.02, 0.3)],
    ]
    geoms = Column([Geometry(p, geodesic=False) for p in polys + odd] + [Geometry(p) for p in polys[:40] + odd[:5]])
    shapes = np.array([g.shape for g in geoms if not g.shape.is_empty], dtype=object)
    assert _local_crs_many(shapes) == [local_crs(s) for s in shapes]
    assert "+lat_0=0.000000 +lon_0=0.000000" in local_crs(odd[1]) and "+lon_0=0.000000" in local_crs(odd[2])
    for distance, margin in ((100.0, ErrorMargin(1.0)), (-30.0, None), (5000.0, ErrorMargin(1.0))):
        bulk = buffer_many(len(geoms), geoms, distance, margin, None)
        for g, got in zip(geoms, bulk, strict=True):
            want = buffer(g, distance, margin, None)
            assert got.shape.geom_type == want.shape.geom_type and got.geodesic == want.geodesic
            assert np.array_equal(shapely.get_coordinates(got.shape), shapely.get_coordinates(want.shape))
    grown = buffer_many(len(geoms), geoms, 100.0, ErrorMargin(1.0), None)[0].shape  # a real mine, 100 m out
    ring = shapely.get_coordinates(shapely.get_exterior_ring(grown))
    edge = shapely.get_coordinates(shapely.segmentize(polys[0].exterior, 2e-6))  # its outline every 20 cm
    x, e = np.repeat(ring, len(edge), axis=0), np.tile(edge, (len(ring), 1))
    _, _, dist = pyproj.Geod(ellps="WGS84").inv(x[:, 0], x[:, 1], e[:, 0], e[:, 1])
    nearest = dist.reshape(len(ring), len(edge)).min(axis=1)  # each buffer vertex to the mine's outline
    assert 99.0 <= nearest.min() and nearest.max() <= 100.3


def test_box_test_with_latitudes_is_the_scalar_one():
    """The batched box test on the way back to lon/lat (each shape's largest latitude, taken from its
    vertices) decides as the scalar form does with and without the vertices' latitudes, from the equator to
    past 84 degrees, for boxes the test settles and ones it leaves to the edge test; the largest latitude
    of each shape is numpy's maximum over its own vertices."""
    from gee_mining.local.values.geometry import _bbox_small, _bbox_small_many, _largest_per_shape, local_crs
    from gee_mining.local.values.projection import transformer

    rng = np.random.default_rng(5)
    boxes = [
        shapely.box(x, y, x + w, y + w * f)
        for x, y, w, f in zip(
            rng.uniform(-170, 170, 300),
            rng.uniform(-89, 88, 300),
            10 ** rng.uniform(-3, 0, 300),
            rng.uniform(0.1, 2, 300),
            strict=True,
        )
    ]
    src = local_crs(shapely.box(10, 70, 11, 71))  # one AEQD for all: its planar boxes, as a buffer's way back
    local = np.array(
        [
            shapely.transform(
                b, lambda xy: np.column_stack(transformer("EPSG:4326", src).transform(xy[:, 0], xy[:, 1]))
            )
            for b in boxes
        ]
    )
    xy, owner = shapely.get_coordinates(local, return_index=True)
    lon, lat = transformer(src, "EPSG:4326").transform(xy[:, 0], xy[:, 1])
    starts = np.concatenate([[0], np.cumsum(shapely.get_num_coordinates(local))])
    lat_max = _largest_per_shape(np.abs(lat), starts)
    assert np.array_equal(lat_max, [np.abs(lat[owner == i]).max() for i in range(len(local))])
    for err in (1.0, 30.0):
        got = _bbox_small_many(shapely.bounds(local), src, err, lat_max)
        want = [
            _bbox_small(s.bounds, np.column_stack([lon, lat])[owner == i], src, err)
            or _bbox_small(s.bounds, None, src, err)
            for i, s in enumerate(local)
        ]
        assert got.tolist() == want
        assert 0 < got.sum() < len(got)

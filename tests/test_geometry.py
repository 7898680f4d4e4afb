"""Geometry and GeometryConstructors through the real ``ee`` client.

References are independent: ``pyproj.Geod(ellps="WGS84")`` for geodesic
measures, shapely on the same coordinates for topology, pyproj transformers for
reprojection. Earth Engine's documented behaviour is cited by API page name.
"""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
import shapely
from conftest import shared_file

GEOD = pyproj.Geod(ellps="WGS84")

# Small polygons (edges of tens of metres to a few km) at several latitudes.
SMALL = {
    "docs_example": [[-122.092, 37.424], [-122.086, 37.418], [-122.079, 37.425], [-122.085, 37.423]],
    "amazon_pit": [[-55.71, -6.41], [-55.69, -6.405], [-55.685, -6.43], [-55.70, -6.44], [-55.715, -6.425]],
    "ghana_square": [[-1.8, 6.2], [-1.79, 6.2], [-1.79, 6.21], [-1.8, 6.21]],
    "high_latitude": [[25.0, 67.8], [25.05, 67.8], [25.05, 67.82], [25.0, 67.83]],
    "clockwise": [[10.0, -3.0], [10.0, -2.99], [10.02, -2.99], [10.02, -3.0]],
}


def geodesic_area(ring: list) -> float:
    xy = np.asarray(ring, dtype=float)
    return abs(GEOD.polygon_area_perimeter(xy[:, 0], xy[:, 1])[0])


def geodesic_ring_length(ring: list) -> float:
    xy = np.asarray(list(ring) + [ring[0]], dtype=float)
    return GEOD.line_length(xy[:, 0], xy[:, 1])


def geodesic_points(a, b, n: int = 2000) -> np.ndarray:
    """Points along the geodesic from a to b, ends included."""
    mid = GEOD.npts(a[0], a[1], b[0], b[1], n)
    return np.array([a, *mid, b], dtype=float)


# -- constructors and getInfo shapes -----------------------------------------


def test_polygon_getinfo_closes_the_ring(ee_local):
    # "ee.Geometry.Polygon": GeoJSON Polygon coordinates, first point repeated last.
    coords = SMALL["docs_example"]
    info = ee_local.Geometry.Polygon([coords]).getInfo()
    assert info == {"type": "Polygon", "coordinates": [coords + [coords[0]]]}


def test_rectangle_numbers_are_geodesic(ee_local):
    # "ee.Geometry.Rectangle": geodesic "default is ... true if the inputs are numbers".
    rect = ee_local.Geometry.Rectangle([-122.09, 37.42, -122.08, 37.43])
    info = rect.getInfo()
    assert info["type"] == "Polygon"
    assert "geodesic" not in info
    ring = info["coordinates"][0]
    assert shapely.Polygon(ring).equals(shapely.box(-122.09, 37.42, -122.08, 37.43))
    assert rect.geodesic().getInfo() is True


def test_rectangle_server_side_planar(ee_local):
    # proj/geodesic given: the client calls GeometryConstructors.Rectangle on the server.
    rect = ee_local.Geometry.Rectangle([-122.09, 37.42, -122.08, 37.43], "EPSG:4326", False)
    info = rect.getInfo()
    assert info["geodesic"] is False
    assert info["type"] == "Polygon"
    assert info["coordinates"][0] == [
        [-122.09, 37.43],
        [-122.09, 37.42],
        [-122.08, 37.42],
        [-122.08, 37.43],
        [-122.09, 37.43],
    ]
    assert rect.edgesAreGeodesics().getInfo() is False


def test_rectangle_from_points_server_side(ee_local):
    ee = ee_local
    rect = ee.Geometry.Rectangle([ee.Geometry.Point(1, 2), ee.Geometry.Point(3, 4)])
    assert shapely.Polygon(rect.coordinates().getInfo()[0]).equals(shapely.box(1, 2, 3, 4))


def test_bbox_server_side_is_planar_wgs84(ee_local):
    # "ee.Geometry.BBox": "The result is a planar WGS84 rectangle"; east < west wraps by +360.
    ee = ee_local
    box = ee.Geometry.BBox(ee.Number(170), -10, ee.Number(-170), 10)
    info = box.getInfo()
    assert info["geodesic"] is False
    assert info["coordinates"][0] == [[170, 10], [170, -10], [190, -10], [190, 10], [170, 10]]
    with pytest.raises(ee.EEException, match="south must be at most"):
        ee.Geometry.BBox(ee.Number(0), 91, 10, 95).getInfo()


@pytest.mark.parametrize(
    ("make", "kind", "coords"),
    [
        (lambda ee: ee.Geometry.Point([1.5, 2.5]), "Point", [1.5, 2.5]),
        (lambda ee: ee.Geometry.MultiPoint([[1, 2], [3, 4]]), "MultiPoint", [[1, 2], [3, 4]]),
        (lambda ee: ee.Geometry.LineString([[1, 2], [3, 4], [5, 5]]), "LineString", [[1, 2], [3, 4], [5, 5]]),
        (lambda ee: ee.Geometry.LinearRing([[0, 0], [1, 0], [1, 1]]), "LinearRing", [[0, 0], [1, 0], [1, 1], [0, 0]]),
        (
            lambda ee: ee.Geometry.MultiLineString([[[0, 0], [1, 1]], [[2, 2], [3, 3]]]),
            "MultiLineString",
            [[[0, 0], [1, 1]], [[2, 2], [3, 3]]],
        ),
        (
            lambda ee: ee.Geometry.MultiPolygon([[[[0, 0], [1, 0], [1, 1]]], [[[5, 5], [6, 5], [6, 6]]]]),
            "MultiPolygon",
            [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[5, 5], [6, 5], [6, 6], [5, 5]]]],
        ),
    ],
)
def test_constructor_shapes(ee_local, make, kind, coords):
    geom = make(ee_local)
    info = geom.getInfo()
    assert info["type"] == kind
    assert info["coordinates"] == coords
    assert geom.type().getInfo() == kind
    assert geom.coordinates().getInfo() == coords


@pytest.mark.parametrize("server", [False, True])
def test_linestring_server_side_and_crs(ee_local, server):
    ee = ee_local
    if server:
        line = ee.Geometry.LineString([[500000, 0], [501000, 1000]], "EPSG:32633")
        info = line.getInfo()
        assert info["crs"] == {"type": "name", "properties": {"name": "EPSG:32633"}}
        assert "geodesic" not in info  # a projected CRS: planar by default
        assert line.projection().getInfo()["crs"] == "EPSG:32633"
        assert line.geodesic().getInfo() is False
    else:
        line = ee.Geometry.LineString([[0, 0], [1, 1]])
        assert line.geodesic().getInfo() is True
        assert line.projection().getInfo() == {
            "type": "Projection",
            "crs": "EPSG:4326",
            "transform": [1, 0, 0, 0, 1, 0],
        }


def test_multigeometry_and_geometries(ee_local):
    ee = ee_local
    coll = ee.Geometry.MultiPoint([[1, 2], [3, 4]])
    parts = coll.geometries().getInfo()
    assert parts == [{"type": "Point", "coordinates": [1, 2]}, {"type": "Point", "coordinates": [3, 4]}]
    mixed = ee.Geometry(
        {
            "type": "GeometryCollection",
            "geometries": [
                {"type": "Point", "coordinates": [1, 2]},
                {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
            ],
        }
    )
    info = mixed.getInfo()
    assert info["type"] == "GeometryCollection"
    assert [g["type"] for g in info["geometries"]] == ["Point", "LineString"]
    assert mixed.isUnbounded().getInfo() is False


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda ee: ee.Geometry.Polygon([[[1, 2], [3, 4]]]), "LinearRing"),
        (lambda ee: ee.Geometry.Polygon([[[1, 2], [3, 4], [1, 2]]]), "LinearRing"),
        (lambda ee: ee.Geometry.Point([0, 91]), "Latitude"),
        (lambda ee: ee.Geometry.LineString([[0, 0]], None, True), "LineString"),
        (lambda ee: ee.Geometry.Rectangle([ee.Number(1), 2, 3], None, False), "Rectangle"),
    ],
)
def test_bad_input_errors(ee_local, make, match):
    with pytest.raises(ee_local.EEException, match=match):
        make(ee_local).getInfo()


# -- measures ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_area_perimeter_match_geod(ee_local, name):
    # "ee.Geometry.area" / "ee.Geometry.perimeter": square metres / metres without proj.
    ring = SMALL[name]
    poly = ee_local.Geometry.Polygon([ring])
    assert poly.area(1).getInfo() == pytest.approx(geodesic_area(ring), rel=1e-9)
    assert poly.perimeter(1).getInfo() == pytest.approx(geodesic_ring_length(ring), rel=1e-9)
    assert poly.length(1).getInfo() == 0  # "Polygonal parts are ignored"


def test_area_with_hole_and_multi(ee_local):
    # "ee.Geometry.area": multi geometries sum their components (overlaps counted twice).
    ee = ee_local
    outer = [[0, 0], [0.1, 0], [0.1, 0.1], [0, 0.1]]
    hole = [[0.02, 0.02], [0.04, 0.02], [0.04, 0.04], [0.02, 0.04]]
    expect = geodesic_area(outer) - geodesic_area(hole)
    assert ee.Geometry.Polygon([outer, hole]).area(1).getInfo() == pytest.approx(expect, rel=1e-9)
    multi = ee.Geometry.MultiPolygon([[outer], [outer]])
    assert multi.area(1).getInfo() == pytest.approx(2 * geodesic_area(outer), rel=1e-9)
    assert ee.Geometry.Point([1, 1]).area(1).getInfo() == 0


def test_planar_polygon_area_follows_straight_lonlat_edges(ee_local):
    # A planar (geodesic=False) polygon's edges are straight in lon/lat: its area is
    # that of the densified straight edges, not of the geodesic polygon.
    ring = [[0, 50], [40, 50], [40, 60], [0, 60]]
    dense = shapely.segmentize(shapely.Polygon(ring), 0.01)
    expect = geodesic_area(list(dense.exterior.coords)[:-1])
    planar = ee_local.Geometry.Polygon([ring], None, False)
    got = planar.area(1).getInfo()
    # Densified to within 1 m of each edge: the area error is at most ~ perimeter * 1 m.
    assert got == pytest.approx(expect, abs=5_000 * 1.0 + 1e-6 * expect)
    assert abs(got - geodesic_area(ring)) > 1e9  # geodesic edges would differ by > 1000 km2


def test_length_geodesic_and_planar_lines(ee_local):
    ee = ee_local
    a, b = (0.0, 60.0), (40.0, 60.0)
    geodesic = ee.Geometry.LineString([a, b])
    assert geodesic.length(1).getInfo() == pytest.approx(GEOD.inv(*a, *b)[2], rel=1e-9)
    planar = ee.Geometry.LineString([a, b], None, False)
    lons = np.linspace(0, 40, 40_001)
    parallel = GEOD.line_length(lons, np.full_like(lons, 60.0))
    assert planar.length(1).getInfo() == pytest.approx(parallel, rel=1e-6)


def test_area_in_a_projection(ee_local):
    # "ee.Geometry.area": with proj, "the result will be in the units of the coordinate system".
    ring = SMALL["docs_example"]
    tf = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32610", always_xy=True)
    x, y = tf.transform(*np.asarray(ring).T)
    expect = shapely.Polygon(np.column_stack([x, y])).area
    assert ee_local.Geometry.Polygon([ring]).area(1, "EPSG:32610").getInfo() == pytest.approx(expect, rel=1e-9)


def test_geodesic_edges_bulge_poleward(ee_local):
    # "Geodesic vs planar geometries": a geodesic edge along 60N bulges north of the parallel.
    ee = ee_local
    ring = [[0, 50], [40, 50], [40, 60], [0, 60]]
    top = geodesic_points((40, 60), (0, 60))
    north = float(np.interp(20, top[::-1, 0], top[::-1, 1]))
    assert north > 61
    geodesic = ee.Geometry.Polygon([ring])
    planar = ee.Geometry.Polygon([ring], None, False)
    inside = ee.Geometry.Point([20, north - 0.05])
    assert geodesic.contains(inside, 1).getInfo() is True
    assert planar.contains(inside, 1).getInfo() is False
    assert geodesic.bounds(1).coordinates().getInfo()[0][2][1] == pytest.approx(north, abs=1e-4)


# -- distances ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"), [((0, 0), (1, 1)), ((-55.7, -6.4), (-55.6, -6.3)), ((25.0, 67.8), (-120.0, 37.0)), ((10, 10), (10, 10))]
)
def test_point_distance_matches_geod(ee_local, a, b):
    ee = ee_local
    got = ee.Geometry.Point(a).distance(ee.Geometry.Point(b), 1).getInfo()
    assert got == pytest.approx(GEOD.inv(*a, *b)[2], rel=1e-9, abs=1e-6)


def test_point_to_polygon_distance(ee_local):
    ee = ee_local
    ring = SMALL["amazon_pit"]
    point = (-55.66, -6.40)
    edges = [geodesic_points(ring[i], ring[(i + 1) % len(ring)], 3000) for i in range(len(ring))]
    pts = np.concatenate(edges)
    expect = GEOD.inv(np.full(len(pts), point[0]), np.full(len(pts), point[1]), pts[:, 0], pts[:, 1])[2].min()
    poly = ee.Geometry.Polygon([ring])
    got = poly.distance(ee.Geometry.Point(point), 0.01).getInfo()
    assert got == pytest.approx(expect, abs=0.05)
    assert poly.withinDistance(ee.Geometry.Point(point), expect + 1, 0.01).getInfo() is True
    assert poly.withinDistance(ee.Geometry.Point(point), expect - 1, 0.01).getInfo() is False
    inside = ee.Geometry.Point([-55.70, -6.42])
    assert poly.distance(inside, 1).getInfo() == 0


def test_closest_points(ee_local):
    ee = ee_local
    box = ee.Geometry.Rectangle([0, 0, 0.01, 0.01], None, False)
    out = box.closestPoints(ee.Geometry.Point([0.02, 0.005]), 0.01).getInfo()
    assert out["left"]["coordinates"] == pytest.approx([0.01, 0.005], abs=1e-7)
    assert out["right"]["coordinates"] == pytest.approx([0.02, 0.005], abs=1e-9)
    right = ee.Geometry.Point([0.02, 0.005]).closestPoint(box, 0.01).getInfo()
    assert right["coordinates"] == pytest.approx([0.01, 0.005], abs=1e-7)


# -- buffer and centroid -------------------------------------------------------


@pytest.mark.parametrize(("lon", "lat", "radius"), [(1.0, 2.0, 100.0), (-55.7, -6.4, 2750.0), (25.0, 67.8, 500.0)])
def test_point_buffer_is_a_geodesic_circle(ee_local, lon, lat, radius):
    # "ee.Geometry.buffer": distance in metres; maxError "defaults to 1% of the distance".
    circle = ee_local.Geometry.Point([lon, lat]).buffer(radius)
    ring = np.asarray(circle.coordinates().getInfo()[0])
    dist = GEOD.inv(np.full(len(ring), lon), np.full(len(ring), lat), ring[:, 0], ring[:, 1])[2]
    assert np.all(np.abs(dist - radius) <= radius * 1e-5)  # vertices on the circle
    n = len(ring) - 1
    edge_sag = radius * (1 - math.cos(math.pi / n))
    assert edge_sag <= radius * 0.01  # chords within maxError of the arc
    inscribed = n / 2 * radius**2 * math.sin(2 * math.pi / n)
    assert circle.area(0.01).getInfo() == pytest.approx(inscribed, rel=1e-4)


def test_negative_buffer_shrinks(ee_local):
    ee = ee_local
    poly = ee.Geometry.Polygon([SMALL["ghana_square"]])
    inner = poly.buffer(-100, 0.5)
    assert poly.contains(inner, 0.1).getInfo() is True
    assert inner.area(0.1).getInfo() < poly.area(0.1).getInfo()
    ring = np.asarray(inner.coordinates().getInfo()[0])
    edge = np.asarray(SMALL["ghana_square"][:2])
    # the shrunk south edge lies 100 m north of the original south edge
    south = ring[:, 1].min()
    assert GEOD.inv(edge[0, 0] + 0.005, edge[0, 1], edge[0, 0] + 0.005, south)[2] == pytest.approx(100, abs=0.5)


@pytest.mark.parametrize("name", ["amazon_pit", "high_latitude", "docs_example"])
def test_centroid_in_local_projection(ee_local, name):
    ring = SMALL[name]
    poly = shapely.Polygon(ring)
    lon, lat = poly.centroid.x, poly.centroid.y
    local = pyproj.CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
    fwd = pyproj.Transformer.from_crs("EPSG:4326", local, always_xy=True)
    x, y = fwd.transform(*np.asarray(ring).T)
    c = shapely.Polygon(np.column_stack([x, y])).centroid
    expect = fwd.transform(c.x, c.y, direction="INVERSE")
    got = ee_local.Geometry.Polygon([ring]).centroid(0.01).getInfo()
    assert got["type"] == "Point"
    assert got["coordinates"] == pytest.approx(list(expect), abs=1e-7)


def test_centroid_uses_highest_dimension(ee_local):
    # "ee.Geometry.centroid": lower-dimensional components are ignored.
    ee = ee_local
    square = [[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01]]
    coll = ee.Geometry(
        {
            "type": "GeometryCollection",
            "geometries": [{"type": "Polygon", "coordinates": [square]}, {"type": "Point", "coordinates": [5, 5]}],
        }
    )
    assert coll.centroid(0.01).coordinates().getInfo() == pytest.approx([0.005, 0.005], abs=1e-6)


# -- topology ------------------------------------------------------------------

A = [[0.0, 0.0], [0.02, 0.0], [0.02, 0.02], [0.0, 0.02]]
B = [[0.01, 0.01], [0.03, 0.01], [0.03, 0.03], [0.01, 0.03]]
C = [[0.005, 0.005], [0.008, 0.005], [0.008, 0.008], [0.005, 0.008]]
D = [[1.0, 1.0], [1.01, 1.0], [1.01, 1.01], [1.0, 1.01]]


@pytest.mark.parametrize(("left", "right"), [(A, B), (A, C), (C, A), (A, D), (B, C)])
def test_predicates_match_shapely(ee_local, left, right):
    ee = ee_local
    gl, gr = ee.Geometry.Polygon([left]), ee.Geometry.Polygon([right])
    sl, sr = shapely.Polygon(left), shapely.Polygon(right)
    assert gl.intersects(gr, 1).getInfo() is sl.intersects(sr)
    assert gl.disjoint(gr, 1).getInfo() is sl.disjoint(sr)
    assert gl.contains(gr, 1).getInfo() is sl.contains(sr)
    assert gl.containedIn(gr, 1).getInfo() is sl.within(sr)


@pytest.mark.parametrize(
    ("op", "ref"),
    [
        ("intersection", shapely.intersection),
        ("union", shapely.union),
        ("difference", shapely.difference),
        ("symmetricDifference", shapely.symmetric_difference),
    ],
)
def test_overlays_match_shapely(ee_local, op, ref):
    ee = ee_local
    got = getattr(ee.Geometry.Polygon([A]), op)(ee.Geometry.Polygon([B]), 1)
    expect = ref(shapely.Polygon(A), shapely.Polygon(B))
    shape = shapely.geometry.shape(got.getInfo())
    assert shapely.symmetric_difference(shape, expect).area < 1e-14
    expect_area = sum(
        abs(GEOD.geometry_area_perimeter(shapely.orient_polygons(p))[0]) for p in shapely.get_parts(expect)
    )
    assert got.area(1).getInfo() == pytest.approx(expect_area, rel=1e-9)


def test_dissolve_convex_hull_bounds_simplify(ee_local):
    ee = ee_local
    multi = ee.Geometry.MultiPolygon([[A], [B]])
    dissolved = shapely.geometry.shape(multi.dissolve(1).getInfo())
    assert dissolved.geom_type == "Polygon"
    assert shapely.symmetric_difference(dissolved, shapely.union(shapely.Polygon(A), shapely.Polygon(B))).area < 1e-14
    hull = shapely.geometry.shape(multi.convexHull(1).getInfo())
    expect_hull = shapely.MultiPolygon([shapely.Polygon(A), shapely.Polygon(B)]).convex_hull
    assert shapely.symmetric_difference(hull, expect_hull).area < 1e-14
    # "ee.Geometry.bounds": a planar rectangle in WGS84.
    box = ee.Geometry.Polygon([SMALL["amazon_pit"]]).bounds(1).getInfo()
    assert box["geodesic"] is False
    assert shapely.Polygon(box["coordinates"][0]).bounds == pytest.approx(shapely.Polygon(SMALL["amazon_pit"]).bounds)
    wiggly = ee.Geometry.LineString([[0, 0], [0.005, 0.000001], [0.01, 0]])
    assert len(wiggly.simplify(10).coordinates().getInfo()) == 2


def test_dissolve_of_one_part_keeps_its_area_and_still_nodes_a_lone_crossing_line(ee_local):
    """dissolve of a one-part multi-geometry (a collection's lone polygon, in UTM, as the grid's cells dissolve
    them; scalar and batched): the polygon's area (pyproj and shapely), a hole kept; one self-crossing line is
    still noded at the crossing (two tails and a loop), as shapely's union of it is."""
    ee = ee_local
    utm = ee.Projection("EPSG:32721")
    ring = SMALL["amazon_pit"]
    hole = [[-55.705, -6.425], [-55.705, -6.42], [-55.70, -6.42], [-55.70, -6.425]]
    polygon = shapely.Polygon(ring + [ring[0]])
    assert polygon.contains(shapely.Polygon(hole)), "the hole must lie inside the pit"
    tf = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32721", always_xy=True)

    def projected(r):
        return np.column_stack(tf.transform(*np.asarray(shapely.segmentize(shapely.LinearRing(r), 1e-5).coords).T))

    want = shapely.Polygon(projected(ring), [projected(hole)]).area
    one = ee.Geometry.MultiPolygon([[ring, hole]])
    fc = ee.FeatureCollection([ee.Feature(one, {"k": 1}), ee.Feature(one, {"k": 2})])
    batched = fc.map(lambda f: f.set("a", f.geometry().dissolve(1, utm).area(1, utm))).aggregate_array("a")
    scalar = one.dissolve(1, utm).area(1, utm)
    got = ee.List([scalar]).cat(batched).getInfo()
    assert got == pytest.approx([want] * 3, rel=1e-6)
    cross = [[0, 0], [0.01, 0.01], [0.01, 0], [0, 0.01]]  # crosses itself once
    noded = ee.Geometry.MultiLineString([cross], None, False).dissolve(1).getInfo()
    assert len(noded["coordinates"]) == len(shapely.get_parts(shapely.union_all(shapely.LineString(cross)))) == 3


def test_transform_to_utm_matches_pyproj(ee_local):
    ring = SMALL["amazon_pit"]
    got = ee_local.Geometry.Polygon([ring]).transform("EPSG:32721", 0.01).getInfo()
    assert got["crs"]["properties"]["name"] == "EPSG:32721"
    tf = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32721", always_xy=True)
    x, y = tf.transform(*np.asarray(ring + [ring[0]]).T)
    assert np.allclose(np.asarray(got["coordinates"][0]), np.column_stack([x, y]), atol=1e-6)


def test_cut_lines(ee_local):
    ee = ee_local
    line = ee.Geometry.LineString([[0, 0], [0.1, 0]])
    total = GEOD.inv(0, 0, 0.1, 0)[2]
    pieces = line.cutLines([1000, 5000], 0.01)
    info = pieces.getInfo()
    assert info["type"] == "MultiLineString"
    lengths = [GEOD.line_length(*np.asarray(p).T) for p in info["coordinates"]]
    assert lengths == pytest.approx([1000, 4000, total - 5000], abs=0.05)


def test_error_margin_arguments(ee_local):
    ee = ee_local
    poly = ee.Geometry.Polygon([SMALL["ghana_square"]])
    assert poly.area(ee.ErrorMargin(1, "meters")).getInfo() == pytest.approx(geodesic_area(SMALL["ghana_square"]))
    assert poly.area(ee.ErrorMargin(None, "infinite")).getInfo() == pytest.approx(geodesic_area(SMALL["ghana_square"]))
    with pytest.raises(ee.EEException, match="unit"):
        poly.area(ee.ErrorMargin(1, "furlongs")).getInfo()


# -- speed -------------------------------------------------------------------


def test_map_area_centroid_buffer_equals_direct(ee_local):
    """The engine's per-feature geometry work over real polygons equals the same
    work written directly with shapely and pyproj (bench/bench_map.py times it)."""
    shared_file("polygons/amazon_mining_2024_model.geojson")
    import pyogrio.raw

    ee = ee_local
    n = 1000
    fc = ee.FeatureCollection("projects/gee-mining-test/assets/amazon_mining_2024").limit(n)

    def per_feature(ft):
        geom = ft.geometry()
        return ft.set({"a": geom.area(1), "c": geom.centroid(1).coordinates(), "b": geom.buffer(50, 1).area(1)})

    def engine() -> list:
        return fc.map(per_feature).aggregate_array("b").getInfo()

    _, _, wkb = pyogrio.raw.read(shared_file("polygons/amazon_mining_2024_model.geojson"))[:3]
    geoms = shapely.from_wkb(wkb)[:n]

    def direct() -> list:
        cache: dict = {}
        out = []
        for g in geoms:
            abs(GEOD.geometry_area_perimeter(shapely.orient_polygons(g))[0])
            g.centroid  # the table is planar (geodesic=False): planar centroid  # noqa: B018
            x0, y0, x1, y1 = g.bounds
            key = (round((x0 + x1) * 2) / 4, round((y0 + y1) * 2) / 4)
            if key not in cache:
                step = f"+proj=aeqd +lat_0={key[1]} +lon_0={key[0]} +ellps=WGS84"
                cache[key] = (
                    pyproj.Transformer.from_pipeline(
                        f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step {step}"
                    ),
                    pyproj.Transformer.from_pipeline(
                        f"+proj=pipeline +step +inv {step} +step +proj=unitconvert +xy_in=rad +xy_out=deg"
                    ),
                )
            fw, bw = cache[key]
            local = shapely.transform(g, lambda xy, t=fw: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
            buf = shapely.transform(
                local.buffer(50, quad_segs=4), lambda xy, t=bw: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
            )
            out.append(
                sum(abs(GEOD.geometry_area_perimeter(shapely.orient_polygons(p))[0]) for p in shapely.get_parts(buf))
            )
        return out

    assert engine() == pytest.approx(direct(), rel=1e-9)


def test_polygons_given_new_coordinates_equal_shapely_set_coordinates():
    """A reprojection's shapes made from their new vertices (polygons without holes built anew, the rest by
    ``set_coordinates``) are ``shapely.set_coordinates``' shapes exactly, in order, for polygons alone, for
    polygons with holes and multipolygons alone, and for the two mixed."""
    from gee_mining.local.values.geometry import _with_coordinates

    hole = shapely.Polygon([(0, 0), (4, 0), (4, 4), (0, 4)], [[(1, 1), (2, 1), (2, 2), (1, 2)]])
    plain = [shapely.box(k, 0.0, k + 0.5, 0.5) for k in range(3)] + [shapely.Polygon([(0, 0), (1, 0), (0, 2)])]
    multi = shapely.MultiPolygon([shapely.box(10, 10, 11, 11), hole])
    for shapes in (plain, [hole, multi], [plain[0], hole, plain[1], multi, plain[3]]):
        arr = np.array(shapes, dtype=object)
        xy = shapely.get_coordinates(arr) * 1.5 + 0.25
        got, want = _with_coordinates(arr, xy), shapely.set_coordinates(arr.copy(), xy)
        assert list(shapely.get_type_id(got)) == list(shapely.get_type_id(want))
        assert shapely.equals_exact(got, want, 0.0).all()
        assert np.array_equal(shapely.get_coordinates(got), xy)
        assert all(a.equals_exact(b, 0.0) for a, b in zip(arr, shapes, strict=True))  # the inputs untouched

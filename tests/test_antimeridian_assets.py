"""Catalog assets (a scene, a table) across the antimeridian: their footprints split at +/-180 (RFC 7946), so a
spatial filter finds them from either side and not half a world away; checked against shapely in a frame
of longitudes 0..360 where they are whole."""

from __future__ import annotations

import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

import gee_mining

# A square of UTM zone 60 N (central meridian 177 E), x 780..880 km, y 10..110 km: about 179.5 E to 180.4 E.
X0, X1, Y0, Y1 = 780_000.0, 880_000.0, 10_000.0, 110_000.0
SCENE = "projects/gee-mining-test/assets/am_scenes"
TABLE = "projects/gee-mining-test/assets/am_table"


def _reference_0_360(step: float = 1000.0):
    """The square's outline in longitudes 0..360 (pyproj; edges densified every ``step`` metres: a table's
    vertices are reprojected as they are, as an upload to Earth Engine does, a scene's outline is curved)."""
    tf = pyproj.Transformer.from_crs(32660, 4326, always_xy=True)
    ring = shapely.segmentize(shapely.box(X0, Y0, X1, Y1), step)
    xy = shapely.get_coordinates(ring)
    lon, lat = tf.transform(xy[:, 0], xy[:, 1])
    return shapely.Polygon(np.column_stack([np.mod(lon, 360.0), lat]))


def _to_0_360(geojson):
    shape = shapely.geometry.shape(geojson)
    return shapely.transform(shape, lambda xy: np.column_stack([np.mod(xy[:, 0], 360.0), xy[:, 1]]))


@pytest.fixture
def assets(tmp_path, engine_catalog):
    with rasterio.open(
        tmp_path / "scene.tif", "w", driver="GTiff", width=100, height=100, count=1, dtype="uint8",
        crs="EPSG:32660", transform=from_origin(X0, Y1, 1000.0, 1000.0),
    ) as ds:  # fmt: skip
        ds.write(np.ones((1, 100, 100), dtype="uint8"))
    pyogrio.raw.write(
        tmp_path / "table.gpkg", geometry=np.array([shapely.to_wkb(shapely.box(X0, Y0, X1, Y1))], dtype=object),
        field_data=[np.array([1])], fields=["id"], crs="EPSG:32660", driver="GPKG", geometry_type="Polygon",
    )  # fmt: skip
    (tmp_path / "catalog.toml").write_text(
        f'[[image]]\nid = "{SCENE}/s1"\ncollection = "{SCENE}"\nbands = {{ B1 = "scene.tif" }}\n'
        f'[[table]]\nid = "{TABLE}"\npath = "table.gpkg"\n'
    )
    gee_mining.connect("local", project="gee-mining-test", catalog=tmp_path / "catalog.toml")
    import ee

    yield ee
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


def test_a_scene_and_a_table_across_the_antimeridian_are_found_from_both_sides(assets):
    ee = assets
    reference = _reference_0_360()
    west, east, far = ee.Geometry.Point([179.8, 0.5]), ee.Geometry.Point([-179.75, 0.5]), ee.Geometry.Point([0, 0.5])
    assert reference.contains(shapely.Point(179.8, 0.5)) and reference.contains(shapely.Point(180.25, 0.5))
    scenes, table = ee.ImageCollection(SCENE), ee.FeatureCollection(TABLE)
    counts = ee.List([c.filterBounds(p).size() for c in (scenes, table) for p in (west, east, far)]).getInfo()
    assert counts == [1, 1, 0, 1, 1, 0]
    footprint = ee.Image(f"{SCENE}/s1").get("system:footprint").getInfo()
    shape = table.geometry().getInfo()
    for got, want in ((footprint, reference), (shape, _reference_0_360(1e6))):
        assert _to_0_360(got).symmetric_difference(want).area < 1e-4 * want.area

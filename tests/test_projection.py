"""Projection algorithms through the real ``ee`` client.

"ee.Projection": a base CRS plus an affine transform from projected
coordinates to the base CRS; getInfo is ``{'type': 'Projection', 'crs', 'transform'}``.
"""

from __future__ import annotations

import math

import pyproj
import pytest

# Earth Engine's metres per degree at the point of true scale of EPSG:4326:
# the WGS84 equatorial circumference over 360 ("ee.Projection.nominalScale").
DEGREE = 2 * math.pi * 6378137 / 360


def test_getinfo_shape(ee_local):
    info = ee_local.Projection("EPSG:32633").getInfo()
    assert info == {"type": "Projection", "crs": "EPSG:32633", "transform": [1, 0, 0, 0, 1, 0]}


def test_transform_argument(ee_local):
    info = ee_local.Projection("EPSG:32633", [30, 0, 500000, 0, -30, 0]).getInfo()
    assert info["transform"] == [30, 0, 500000, 0, -30, 0]


@pytest.mark.parametrize(("crs", "meters"), [("EPSG:32633", 5500), ("EPSG:32721", 1375), ("EPSG:3857", 30)])
def test_at_scale_on_metric_crs(ee_local, crs, meters):
    # "ee.Projection.atScale": units "have the given scale in linear meters".
    proj = ee_local.Projection(crs).atScale(meters)
    assert proj.getInfo()["transform"] == pytest.approx([meters, 0, 0, 0, meters, 0])
    assert proj.nominalScale().getInfo() == pytest.approx(meters)


def test_at_scale_on_degrees(ee_local):
    proj = ee_local.Projection("EPSG:4326")
    assert proj.nominalScale().getInfo() == pytest.approx(DEGREE, rel=1e-12)
    scaled = proj.atScale(1000)
    assert scaled.getInfo()["transform"][0] == pytest.approx(1000 / DEGREE, rel=1e-12)
    assert scaled.nominalScale().getInfo() == pytest.approx(1000)


def test_scale_and_translate(ee_local):
    ee = ee_local
    proj = ee.Projection("EPSG:32633").scale(10, 20)
    assert proj.getInfo()["transform"] == [10, 0, 0, 0, 20, 0]
    moved = proj.translate(1, 2)  # one unit of the scaled projection: 10 m and 40 m
    assert moved.getInfo()["transform"] == [10, 0, 10, 0, 20, 40]


def test_crs_and_wkt(ee_local):
    ee = ee_local
    assert ee.Projection("EPSG:32633").crs().getInfo() == "EPSG:32633"
    wkt = ee.Projection("EPSG:4326").wkt().getInfo()
    assert pyproj.CRS.from_wkt(wkt).equals(pyproj.CRS("EPSG:4326"))
    text = ee.Projection("EPSG:32633").atScale(30).transform().getInfo()
    assert 'PARAM_MT["Affine"' in text
    assert 'PARAMETER["elt_0_0", 30.0]' in text


def test_geometry_projection_and_transform(ee_local):
    ee = ee_local
    point = ee.Geometry.Point([15.0, 0.0]).transform(ee.Projection("EPSG:32633"), 0.01)
    assert point.projection().getInfo()["crs"] == "EPSG:32633"
    assert point.coordinates().getInfo() == pytest.approx([500000.0, 0.0], abs=1e-6)


def test_unknown_crs_is_an_error(ee_local):
    with pytest.raises(ee_local.EEException, match="Unknown projection"):
        ee_local.Projection("EPSG:999999").getInfo()

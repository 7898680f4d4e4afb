"""filterBounds on large collections prunes with an index and still answers exactly."""

from __future__ import annotations

import json

import pytest
import shapely
from conftest import shared_file
from shapely.geometry import shape

AMAZON = "projects/gee-mining-test/assets/amazon_mining_2024"


@pytest.mark.parametrize(
    "region",
    [
        [-56.0, -6.0, -55.0, -5.0],
        [-63.5, -11.0, -63.0, -10.5],
        [-80.0, -20.0, -40.0, 5.0],  # larger than the pruning threshold: every element is tested
        [10.0, 10.0, 11.0, 11.0],  # nothing there
    ],
)
def test_filter_bounds_equals_brute_force(ee_local, region):
    path = shared_file("polygons/amazon_mining_2024_model.geojson")
    features = json.loads(path.read_text())["features"]
    box = shapely.box(*region)
    expected = [f"{i:020x}" for i, f in enumerate(features) if shape(f["geometry"]).intersects(box)]
    ee = ee_local
    got = (
        ee.FeatureCollection(AMAZON)
        .filterBounds(ee.Geometry.Rectangle(region, None, False))
        .aggregate_array("system:index")
        .getInfo()
    )
    assert got == expected

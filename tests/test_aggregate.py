"""AggregateFeatureCollection algorithms (``fc.aggregate_*``) through the real ``ee`` client.

References: the ee.FeatureCollection.aggregate_* API pages (aggregate_stats
lists max, mean, min, sample_sd, sample_var, sum, sum_sq, total_count,
total_sd, total_var, valid_count, weight_sum, weighted_sum) and Python's
statistics module over the same GeoJSON read with json.
"""

from __future__ import annotations

import json
import math
import statistics

import pytest

from tests.conftest import TEST_DATA, shared_file

SQUARES = "projects/gee-mining-test/assets/squares"
AMAZON = "projects/gee-mining-test/assets/amazon_mining_2024"
AREA = "Mined area (ha)"


@pytest.fixture(scope="module")
def square_values():
    feats = json.loads((TEST_DATA / "squares.geojson").read_text())["features"]
    return [f["properties"]["value"] for f in feats if f["properties"]["value"] is not None]


@pytest.fixture(scope="module")
def amazon_areas():
    feats = json.loads(shared_file("polygons/amazon_mining_2024_model.geojson").read_text())["features"]
    return [f["properties"][AREA] for f in feats if f["properties"][AREA] is not None]


def _reference(values: list[float]) -> dict:
    return {
        "sum": math.fsum(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "count": len(values),
        "sample_var": statistics.variance(values),
        "sample_sd": statistics.stdev(values),
        "total_var": statistics.pvariance(values),
        "total_sd": statistics.pstdev(values),
        "product": math.prod(values),
    }


@pytest.mark.parametrize(
    "stat", ["sum", "mean", "min", "max", "count", "sample_var", "sample_sd", "total_var", "total_sd", "product"]
)
def test_squares_aggregates(ee_local, square_values, stat):
    fc = ee_local.FeatureCollection(SQUARES)
    got = getattr(fc, f"aggregate_{stat}")("value").getInfo()
    assert got == pytest.approx(_reference(square_values)[stat], rel=1e-12)


@pytest.mark.parametrize("stat", ["sum", "mean", "min", "max", "count", "sample_sd", "total_var"])
def test_amazon_aggregates(ee_local, amazon_areas, stat):
    fc = ee_local.FeatureCollection(AMAZON)
    got = getattr(fc, f"aggregate_{stat}")(AREA).getInfo()
    assert got == pytest.approx(_reference(amazon_areas)[stat], rel=1e-9)


def test_stats_dictionary(ee_local, amazon_areas):
    got = ee_local.FeatureCollection(AMAZON).aggregate_stats(AREA).getInfo()
    assert sorted(got) == sorted(
        [
            "max",
            "mean",
            "min",
            "sample_sd",
            "sample_var",
            "sum",
            "sum_sq",
            "total_count",
            "total_sd",
            "total_var",
            "valid_count",
            "weight_sum",
            "weighted_sum",
        ]
    )
    ref = _reference(amazon_areas)
    for key in ("max", "mean", "min", "sample_sd", "sample_var", "sum", "total_sd", "total_var"):
        assert got[key] == pytest.approx(ref[key], rel=1e-9), key
    assert got["sum_sq"] == pytest.approx(math.fsum(v * v for v in amazon_areas), rel=1e-9)
    assert got["valid_count"] == got["total_count"] == got["weight_sum"] == len(amazon_areas)
    assert got["weighted_sum"] == pytest.approx(ref["sum"], rel=1e-9)


def test_stats_skip_nulls(ee_local, square_values):
    got = ee_local.FeatureCollection(SQUARES).aggregate_stats("value").getInfo()
    assert got["valid_count"] == len(square_values) == 3


def test_histogram_and_distinct(ee_local):
    fc = ee_local.FeatureCollection(SQUARES)
    assert fc.aggregate_histogram("kind").getInfo() == {"x": 2, "y": 2}
    assert fc.aggregate_count_distinct("kind").getInfo() == 2
    assert fc.aggregate_histogram("value").getInfo() == {"1": 1, "2": 1, "3.5": 1}


def test_first_array_and_count_skip_nulls(ee_local):
    fc = ee_local.FeatureCollection(SQUARES)
    assert fc.aggregate_first("name").getInfo() == "a"
    assert fc.aggregate_array("value").getInfo() == [1, 2, 3.5]
    assert fc.aggregate_count("value").getInfo() == 3
    assert fc.aggregate_count("missing").getInfo() == 0


def test_min_max_of_strings(ee_local):
    fc = ee_local.FeatureCollection(SQUARES)
    assert fc.aggregate_min("name").getInfo() == "a"
    assert fc.aggregate_max("name").getInfo() == "d"


def test_sum_of_strings_is_an_error(ee_local):
    with pytest.raises(ee_local.EEException, match="non-numeric"):
        ee_local.FeatureCollection(SQUARES).aggregate_sum("name").getInfo()


def test_amazon_histogram_counts(ee_local):
    feats = json.loads(shared_file("polygons/amazon_mining_2024_model.geojson").read_text())["features"]
    years: dict[str, int] = {}
    for f in feats:
        key = str(f["properties"]["year"])
        years[key] = years.get(key, 0) + 1
    assert ee_local.FeatureCollection(AMAZON).aggregate_histogram("year").getInfo() == years

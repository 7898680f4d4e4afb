"""Measurements of a polygon table, server-side: count, geodesic areas, a size histogram, areas by group."""

from __future__ import annotations

from gee_mining.io.catalog import COUNTRIES_ID, MINES_ID
from gee_mining.io.pages import iter_features


def measure_table(ee, table_id: str) -> dict:
    """Count, geodesic area and centroids of a polygon table, computed server-side."""
    summary = table_summary(ee, table_id)
    with_area = with_area_km2(ee.FeatureCollection(table_id))
    stats = summary.getInfo()
    centroids = with_area.map(lambda f: ee.Feature(f.geometry().centroid(1), {"area_km2": f.get("area_km2")}))
    stats["centroids"] = [
        (f["geometry"]["coordinates"][0], f["geometry"]["coordinates"][1], f["properties"]["area_km2"])
        for f in iter_features(centroids)
        if f.get("geometry")
    ]
    return stats


def with_area_km2(fc):
    """Each feature of ``fc`` with its geodesic area in km² (``area_km2``; 1 m error margin)."""
    return fc.map(lambda f: f.set("area_km2", f.geometry().area(1).divide(1e6)))


def table_summary(ee, table_id: str):
    """The demo's per-table summary as one ``ee.Dictionary`` (a pure graph builder: nothing is computed).

    Keys: count, total_area_km2, largest_km2, median_km2, log10_area_histogram (28 bins of 0.25 from
    10^-4 to 10^3 km²) and, for tables with a grouping field, by_group (area by country or continent).
    ``gee-mining js`` writes the same graph as ee_scripts/polygons_area.js.
    """
    fc = ee.FeatureCollection(table_id)
    with_area = with_area_km2(fc)
    group_field = {MINES_ID: "COUNTRY_NAME", COUNTRIES_ID: "continent"}.get(table_id)
    summary = ee.Dictionary(
        {
            "count": fc.size(),
            "total_area_km2": with_area.aggregate_sum("area_km2"),
            "largest_km2": with_area.aggregate_max("area_km2"),
            "median_km2": with_area.reduceColumns(ee.Reducer.median(), ["area_km2"]).get("median"),
            "log10_area_histogram": with_area.map(lambda f: f.set("log_area", ee.Number(f.get("area_km2")).log10()))
            .reduceColumns(ee.Reducer.fixedHistogram(-4, 3, 28), ["log_area"])
            .get("histogram"),
        }
    )
    if group_field:
        summary = summary.set(
            "by_group",
            with_area.reduceColumns(
                ee.Reducer.sum().group(groupField=1, groupName="group"), ["area_km2", group_field]
            ).get("groups"),
        )
    return summary

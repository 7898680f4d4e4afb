"""`make demo` end to end: the report it writes and the numbers in it (the run: conftest's ``demo_run``)."""

from __future__ import annotations

import json
import re

import pyogrio
import pyproj
import pytest
import shapely
from conftest import shared_file


def test_demo_measures_the_real_polygons(demo_run):
    path = shared_file("polygons/mining_tropics_demo.gpkg")
    _, _, wkb, _ = pyogrio.raw.read(path)
    geod = pyproj.Geod(ellps="WGS84")
    reference_km2 = sum(abs(geod.geometry_area_perimeter(g)[0]) for g in shapely.from_wkb(wkb)) / 1e6
    stats = demo_run.summary["tables"]["projects/gee-mining-local/assets/mining_tropics_demo"]
    assert stats["count"] == len(wkb) == 100
    assert stats["total_area_km2"] == pytest.approx(reference_km2, rel=1e-6)


def test_demo_writes_a_self_contained_report(demo_run):
    shared_file("polygons/mining_tropics_demo.gpkg")  # the attribution below is that of the real polygons
    html = demo_run.report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) >= 3  # a map, a size histogram and areas by country at least
    assert "Maus et al. 2022" in html  # attribution shown beside results derived from the data
    assert 'src="http' not in html and 'href="http' not in html  # nothing to fetch
    assert 'href="monitor/review.html"' in html and "srcdoc=" in html  # the review page, embedded and linked
    summary = json.loads((demo_run.out_dir / "summary.json").read_text())
    assert summary["engine"].startswith("gee-mining local engine")

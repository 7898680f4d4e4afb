"""Monitoring: footprints and candidates through the real ``ee`` client on the local engine, against shapely."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from types import SimpleNamespace

import ee
import numpy as np
import pandas as pd
import pyogrio
import pypdfium2 as pdfium
import pytest
import rasterio
import shapely
from browser import Browser
from PIL import Image
from pyproj import Transformer

import gee_mining
from gee_mining.cli.main import main
from gee_mining.cli.monitor import parse_years
from gee_mining.contracts.bands import MINE_BAND
from gee_mining.demo.monitor import _truth_rows
from gee_mining.errors import InputError
from gee_mining.io.catalog import table_entry, write_catalog
from gee_mining.io.prepared import read_prepared
from gee_mining.monitor.core import (
    REJECTED_STRATUM,
    Candidate,
    MonitorRegion,
    MonitorSpec,
    annotate,
    candidate_image,
    export_candidate_image,
    footprint_frame,
    footprint_table,
    pages,
    vectorise,
)
from gee_mining.monitor.evaluate import (
    GRID,
    MonitorEvaluationSpec,
    _looser_false,
    _prepare,
    _stamp,
    _World,
    choose_growth,
    growth_errors,
)
from gee_mining.monitor.region import region_bounds, utm_region
from gee_mining.monitor.review import QUICKLOOK_PX, read_verdicts, review_html
from gee_mining.monitor.world import MonitorWorld, fit_first_year, world_region
from gee_mining.tools.report import Report, build_report, print_pdf

EPSG = 32721
X0, TOP = 561000.0, 9306000.0  # a 1.5 km square in UTM 21S
BOUNDS = (X0, TOP - 1500, X0 + 1500, TOP)
YEARS = (2019, 2020, 2021)


def test_spec_and_years_refuse_bad_input():
    assert parse_years("2019-2021") == YEARS and parse_years("2019,2021") == (2019, 2021)
    with pytest.raises(InputError, match="--years"):
        parse_years("2021-2019")
    with pytest.raises(InputError, match="min_years"):
        MonitorSpec(years=YEARS, min_years=4)
    with pytest.raises(InputError, match="threshold"):
        MonitorSpec(years=YEARS, threshold=0.95, band=0.1)
    with pytest.raises(InputError, match="footprint_threshold"):
        MonitorSpec(years=YEARS, threshold=0.5, band=0.1, footprint_threshold=0.05)
    assert MonitorSpec(years=YEARS, threshold=0.95, band=0.1, footprint_threshold=0.45).threshold == 0.95
    with pytest.raises(InputError, match="growth_scale"):
        MonitorSpec(years=YEARS, growth_scale=0)
    with pytest.raises(InputError, match="min_ndvi_before"):
        MonitorSpec(years=YEARS, min_ndvi_before=2)


def test_footprint_frame_growth_is_the_change_over_the_share_detected_inside():
    """Zone areas 5000 -> 7500 at 0.5 with 4000 of a 10000 m2 polygon detected inside in the first year: growth
    2500 / 0.4 = 6250; at 0.6 and 0.4 the same rule gives the interval."""
    rows = [{"mine_id": "7", "known_area_m2": "10000", "a050_2019": "5000", "a060_2019": "4000", "a040_2019": "8000",
             "a050_2020": "7500", "a060_2020": "5000", "a040_2020": "10000", "i050": "4000", "i060": "2500",
             "i040": "8000"}]  # fmt: skip
    f = footprint_frame(rows, [2019, 2020], (0.5, 0.6, 0.4)).set_index("year")
    assert f.loc[2019, "area_m2"] == 10000 and f.loc[2019, "growth_m2"] == 0
    assert f.loc[2020, "growth_m2"] == pytest.approx(2500 / 0.4)
    assert f.loc[2020, "area_m2"] == pytest.approx(10000 + 2500 / 0.4)
    # 0.6: 1000 more over a share of 0.25 -> 4000; 0.4: 2000 over 0.8 -> 2500; 0.5: 6250
    assert f.loc[2020, "growth_low_m2"] == pytest.approx(2000 / 0.8)
    assert f.loc[2020, "growth_high_m2"] == pytest.approx(2500 / 0.4)
    assert f.loc[2020, "growth_low_m2"] <= f.loc[2020, "growth_m2"] <= f.loc[2020, "growth_high_m2"]


def _utm_to_ll(g):
    tf = Transformer.from_crs(EPSG, 4326, always_xy=True)
    return shapely.transform(g, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


@pytest.fixture
def painted(tmp_path, ee_local):
    """A known mine growing by 20 m a year, a new mine from 2020, a one-year patch in 2019 (a fire scar)."""
    known = shapely.box(X0 + 200, TOP - 500, X0 + 400, TOP - 300)
    new = shapely.box(X0 + 1000, TOP - 1200, X0 + 1200, TOP - 1000)
    scar = shapely.box(X0 + 900, TOP - 400, X0 + 1100, TOP - 300)
    path = tmp_path / "mines.geojson"
    feature = {"type": "Feature", "geometry": shapely.geometry.mapping(_utm_to_ll(known)), "properties": {"id": 7}}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    catalog = write_catalog(tmp_path / "catalog.toml", [table_entry("projects/gee-mining-mtest/assets/mines", path)])
    gee_mining.connect("local", project="gee-mining-mtest", catalog=catalog, storage_root=tmp_path / "storage")
    shapes = {2019: [known, scar], 2020: [known.buffer(20, join_style="mitre"), new],
              2021: [known.buffer(40, join_style="mitre"), new]}  # fmt: skip
    probs = {}
    for y, gs in shapes.items():
        fc = ee.FeatureCollection([ee.Feature(ee.Geometry(shapely.geometry.mapping(_utm_to_ll(g)))) for g in gs])
        probs[y] = ee.Image(0.1).paint(fc, 0.95).rename("probability")
    region = MonitorRegion(EPSG, BOUNDS, "projects/gee-mining-mtest/assets/mines")
    return probs, region, {"known": known, "new": new, "scar": scar}


def test_footprints_and_candidates_against_shapely(painted, tmp_path):
    probs, region, shapes = painted
    spec = MonitorSpec(years=YEARS, threshold=0.5, band=0.1, min_pixels=20, known_buffer_m=100)
    foot = footprint_table(probs, region, spec, tmp_path / "work")
    last = foot[foot.year == 2021].iloc[0]
    true_growth = shapes["known"].buffer(40, join_style="mitre").area - shapes["known"].area
    assert last.known_area_m2 == pytest.approx(shapes["known"].area, rel=0.01)
    assert last.growth_m2 == pytest.approx(true_growth, rel=0.05)
    raster = export_candidate_image(candidate_image(probs, region, spec), region, spec, tmp_path / "work")
    cands = vectorise(raster, 0.5, 1, 20)
    assert len(cands) == 2  # the new mine and the scar; the known mine's growth is in its zone
    by_first = {c.first_year: c for c in cands}
    assert by_first[2020].area_m2 == pytest.approx(shapes["new"].area, rel=0.05)
    assert by_first[2020].years_seen == 2 and by_first[2019].years_seen == 1
    assert _utm_to_ll(shapes["new"]).intersects(by_first[2020].geometry)
    assert len(vectorise(raster, 0.5, 2, 20)) == 1  # seen in two years: the scar drops
    (only_new,) = vectorise(raster, 0.5, 1, 20, after=2019)  # first seen after 2019: the new mine alone
    assert only_new.first_year == 2020 and only_new.area_m2 == pytest.approx(shapes["new"].area, rel=0.05)


def _fc(geoms):
    return ee.FeatureCollection([ee.Feature(ee.Geometry(shapely.geometry.mapping(_utm_to_ll(g)))) for g in geoms])


def test_temporal_evidence_keeps_new_mines_and_drops_floods_and_bare_ground(painted, tmp_path):
    """A flood seen in 2020 only is not persistent; ground bare (NDVI 0) in 2019's composite and seen from 2020 was
    not cleared vegetation; the new mine (vegetated in 2019, seen 2020 and 2021) passes both rules."""
    probs, region, shapes = painted
    flood = shapely.box(X0 + 200, TOP - 1300, X0 + 400, TOP - 1100)
    bare = shapely.box(X0 + 600, TOP - 1300, X0 + 800, TOP - 1150)
    probs = {
        2019: probs[2019],
        2020: probs[2020].paint(_fc([flood, bare]), 0.95),
        2021: probs[2021].paint(_fc([bare]), 0.95),
    }
    first = ee.Image.constant([500, 3000]).rename(["B4", "B8"]).paint(_fc([bare]), 1000)  # NDVI 0.71, bare 0
    spec = MonitorSpec(years=YEARS, threshold=0.5, band=0.1, min_pixels=20, known_buffer_m=100)
    raster = export_candidate_image(candidate_image(probs, region, spec, first_composite=first), region, spec, tmp_path)
    kept = sorted(round(c.area_m2 / 1000) for c in vectorise(raster, 0.5, 1, 20, after=2019))
    assert kept == sorted(round(g.area / 1000) for g in (shapes["new"], flood, bare))  # areas in 1000 m2
    kept = sorted(round(c.area_m2 / 1000) for c in vectorise(raster, 0.5, 1, 20, after=2019, persistent=True))
    assert kept == sorted(round(g.area / 1000) for g in (shapes["new"], bare))
    (mine,) = vectorise(raster, 0.5, 1, 20, after=2019, persistent=True, min_ndvi_before=0.5)
    assert mine.area_m2 == pytest.approx(shapes["new"].area, rel=0.05) and mine.first_year == 2020
    assert _utm_to_ll(shapes["new"]).intersects(mine.geometry)
    with pytest.raises(InputError, match="ndvi0"):
        vectorise(export_candidate_image(candidate_image(probs, region, spec), region, spec, tmp_path / "plain"),
                  0.5, 1, 20, min_ndvi_before=0.5)  # fmt: skip


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """``gee-mining world --years`` then ``gee-mining monitor`` on a small world; (world folder, run folder)."""
    tmp = tmp_path_factory.mktemp("monitor")
    world, out = tmp / "world", tmp / "run"
    assert main(["world", "--years", "2019-2020", "--size-km", "4.2", "--months", "1", "--seed", "4", "--out",
                 str(world)]) == 0  # fmt: skip
    assert main(["monitor", "--world", str(world), "--years", "2019-2020", "--months", "1", "--threshold", "0.6",
                 "--min-pixels", "10", "--out", str(out)]) == 0  # fmt: skip
    return world, out


@pytest.mark.slow
def test_cli_world_years_then_monitor(monitored):
    """The files, and each candidate's attributes against shapely (outside the buffered known mines, nearest mine
    and distance in UTM) and the world's own tables."""
    world, out = monitored
    foot = pd.read_parquet(out / "footprints.parquet")
    truth = pd.read_parquet(world / "truth" / "mines_by_year.parquet")
    known = sorted(truth.loc[truth.known, "mine_id"].unique())
    assert sorted(foot.mine_id.unique()) == known and len(foot) == 2 * len(known)
    cands = pyogrio.read_dataframe(out / "candidates.gpkg")
    assert cands.crs.to_epsg() == 4326 and len(cands)
    mines = json.loads((world / "tables" / "mines.geojson").read_text())["features"]
    tf = Transformer.from_crs(4326, 32721, always_xy=True)
    utm = {str(f["properties"]["id"]): shapely.transform(shapely.geometry.shape(f["geometry"]),
           lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1]))) for f in mines}  # fmt: skip
    for c in cands.itertuples():
        g = shapely.transform(c.geometry, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        dist = {m: g.distance(p) for m, p in utm.items()}
        assert min(dist.values()) > 200 - 15  # outside every known mine's 200 m zone (a pixel's tolerance)
        assert c.nearest_mine == min(dist, key=dist.get)
        assert c.distance_m == pytest.approx(min(dist.values()), abs=15)
        assert c.country == "Brazil" and c.land_cover in (10, 20, 30, 40, 50, 60, 80)
        assert c.first_year in (2019, 2020) and c.area_m2 >= 1000
    assert json.loads((out / "monitor.json").read_text())["candidates"] == len(cands)


@pytest.mark.slow
def test_review_page_in_chromium_and_verdicts_into_the_next_run(monitored, tmp_path):
    """The page opens in headless Chromium (screenshot), its table sorts, two verdicts clicked come back as the
    file the page saves, that file makes the rejected candidate's pixels hard negatives of the next model, and the
    next run does not show the reviewed candidates again."""
    world, out = monitored
    cands = pyogrio.read_dataframe(out / "candidates.gpkg")
    assert len(cands) >= 2, "the small world should give at least two candidates to review"
    with Browser() as b:
        b.open((out / "review.html").resolve().as_uri())
        shot = b.screenshot(tmp_path / "review.png")
        assert Image.open(shot).convert("L").getextrema()[1] > 0 and shot.stat().st_size > 10_000
        assert b.evaluate("document.querySelectorAll('#candidates tbody tr').length") == len(cands)
        assert b.evaluate("[...document.images].every(i => i.complete && i.naturalWidth === " + str(QUICKLOOK_PX) + ")")
        b.evaluate("sortBy(document.querySelectorAll('#candidates th')[1])")  # score, ascending
        scores = b.evaluate(
            "[...document.querySelectorAll('#candidates tbody tr')].map(r => Number(r.cells[1].textContent))"
        )
        assert scores == sorted(scores)
        first, second = (int(i) for i in cands.candidate_id[:2])
        b.evaluate(f"document.querySelector('tr[data-id=\"{first}\"] button[data-verdict=mine]').click()")
        b.evaluate(f"document.querySelector('tr[data-id=\"{second}\"] button[data-verdict=not_mine]').click()")
        saved = b.evaluate("verdictsJSON()")
    path = tmp_path / "verdicts.json"
    path.write_text(saved)
    verdicts = {v.candidate_id: v for v in read_verdicts(path)}
    assert verdicts[first].verdict == "mine" and verdicts[second].verdict == "not_mine"
    by_id = cands.set_index("candidate_id")
    assert verdicts[second].geometry.equals_exact(by_id.geometry[second], 1e-9)
    region, manifest = world_region(world)
    years = (2019, 2020)
    ids = {y: f"projects/{manifest['parameters']['project']}/assets/composite_{y}" for y in years}
    mw = MonitorWorld(world, region, ids, out / "work" / "catalog_monitor.toml", years)
    gee_mining.connect("local", project=manifest["parameters"]["project"], catalog=mw.catalog,
                       storage_root=out / "storage")  # fmt: skip
    _, table = fit_first_year(mw, pixels=50, verdicts=list(verdicts.values()))
    hard = table[table.stratum == REJECTED_STRATUM]
    assert len(hard) == min(50, round(by_id.area_m2[second] / 100)) and (hard[MINE_BAND] == 0).all()
    with pytest.raises(InputError, match="verdicts"):
        read_verdicts(tmp_path / "review.png")
    _next_run_hides_the_reviewed(world, path, verdicts, tmp_path / "run2")


def _next_run_hides_the_reviewed(world, path, verdicts: dict, out):
    """The next run given the saved file: candidates on a reviewed outline (shapely) carry its verdict in
    candidates.gpkg and are not on its review page, which saves the earlier verdicts again with no click."""
    assert main(["monitor", "--world", str(world), "--years", "2019-2020", "--months", "1", "--threshold", "0.6",
                 "--min-pixels", "10", "--verdicts", str(path), "--out", str(out)]) == 0  # fmt: skip
    cands = pyogrio.read_dataframe(out / "candidates.gpkg")
    for c in cands.itertuples():
        hit = [v.verdict for v in verdicts.values() if v.geometry.intersects(c.geometry)]
        was = c.previous_verdict if isinstance(c.previous_verdict, str) else None  # pyogrio reads a null as NaN
        assert was == (("mine" if "mine" in hit else hit[0]) if hit else None)
    assert (cands.previous_verdict == "mine").any(), "the confirmed candidate, now a label, is seen again"
    new = cands[cands.previous_verdict.isna()]
    assert len(new) < len(cands)
    with Browser() as b:
        b.open((out / "review.html").resolve().as_uri())
        rows = b.evaluate("[...document.querySelectorAll('#candidates tbody tr')].map(r => Number(r.dataset.id))")
        saved = b.evaluate("verdictsJSON()")
    assert sorted(rows) == sorted(int(i) for i in new.candidate_id)
    (out / "verdicts.json").write_text(saved)
    again = read_verdicts(out / "verdicts.json")
    assert sorted((v.verdict, v.geometry.wkt) for v in again) == sorted(
        (v.verdict, v.geometry.wkt) for v in verdicts.values()
    )


@pytest.mark.slow
def test_review_page_embedded_in_the_run_report(monitored, tmp_path):
    """A run report holding the review page: saved, rebuilt from the run's folder, opened in headless Chromium
    (screenshot) with the page's table inside it and a link to the page beside the report."""
    _, out = monitored
    run = tmp_path / "run"
    (run / "monitor").mkdir(parents=True)
    page = run / "monitor" / "review.html"
    page.write_text((out / "review.html").read_text())
    report = Report("monitoring")
    Report.page(report.section("Review", simulated=True), "monitor/review.html", page.read_text(), "the review page")
    report.save(run)
    assert "srcdoc" not in (run / "report.json").read_text()  # the page stays in its file, not copied
    html_path = build_report(run).html
    cands = pyogrio.read_dataframe(out / "candidates.gpkg")
    with Browser() as b:
        b.open(html_path.resolve().as_uri())
        shot = b.screenshot(tmp_path / "report.png")
        inner = "document.querySelector('figure.page iframe').contentDocument"
        rows = b.evaluate(f"{inner}.querySelectorAll('#candidates tbody tr').length")
        href = b.evaluate("document.querySelector('figure.page a').getAttribute('href')")
        note = b.evaluate("getComputedStyle(document.querySelector('figure.page .print-only')).display")
    assert Image.open(shot).convert("L").getextrema()[1] > 0
    assert rows == len(cands) and (html_path.parent / href).resolve() == page.resolve()
    # printed, the frame would show its first rows cut off: the PDF says where the page is instead
    pdf = pdfium.PdfDocument(print_pdf(html_path, tmp_path / "report.pdf"))
    text = " ".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    assert note == "none" and "An interactive page, not printed" in text and "monitor/review.html" in text
    assert "Save verdicts" not in text  # the page's own button: the frame itself was not printed


@pytest.mark.slow
def test_candidate_attributes_in_pages_each_request_bounded(monitored, tmp_path):
    """With Earth Engine's request limit lowered so all the outlines do not fit one export request, the attributes
    come in pages (one export task each), and match shapely's nearest mine and distance."""
    world, out = monitored
    region, manifest = world_region(world)
    gdf = pyogrio.read_dataframe(out / "candidates.gpkg")
    cands = [Candidate(int(r.candidate_id), r.geometry, r.score, r.area_m2, r.first_year, r.years_seen)
             for r in gdf.itertuples()]  # fmt: skip
    sizes = [len(json.dumps(shapely.geometry.mapping(c.geometry))) for c in cands]
    limit = round(1.5 * max(sizes)) + 8000  # the request: ~1.4 x its outlines' GeoJSON + ~6 KB of graph
    assert 1.4 * sum(sizes) > limit  # all of them do not fit one request
    gee_mining.connect("local", project=manifest["parameters"]["project"], catalog=out / "work" / "catalog_monitor.toml",
                       storage_root=tmp_path / "storage", engine_settings={"limits": {"request_bytes": limit}})  # fmt: skip
    spec = MonitorSpec(years=(2019, 2020), destination="gs://gee-mining-monitor/paged")
    with pytest.raises(Exception, match="Request payload size exceeds"):
        annotate(cands, region, spec, tmp_path / "one", page_bytes=sum(sizes) + 1)
    tasks = annotate(cands, region, spec, tmp_path / "paged", page_bytes=max(sizes))
    assert tasks == len(pages(cands, max(sizes))) > 1
    tf = Transformer.from_crs(4326, region.epsg, always_xy=True)
    mines = json.loads((world / "tables" / "mines.geojson").read_text())["features"]
    utm = {str(f["properties"]["id"]): shapely.transform(shapely.geometry.shape(f["geometry"]),
           lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1]))) for f in mines}  # fmt: skip
    for c in cands:
        g = shapely.transform(c.geometry, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        dist = {m: g.distance(p) for m, p in utm.items()}
        assert c.attributes["nearest_mine"] == min(dist, key=dist.get)
        assert c.attributes["distance_m"] == pytest.approx(min(dist.values()), abs=15)
        assert c.attributes["country"] == "Brazil"


def test_region_bounds_and_its_utm_rectangle(tmp_path):
    """A bbox or a GeoJSON file's bounds (shapely), and the 10 m UTM rectangle covering them (pyproj back)."""
    assert region_bounds("-55.8,-6.3,-55.7,-6.2") == (-55.8, -6.3, -55.7, -6.2)
    with pytest.raises(InputError, match="west < east"):
        region_bounds("-55.7,-6.3,-55.8,-6.2")
    poly = shapely.Polygon([(-55.8, -6.3), (-55.7, -6.25), (-55.75, -6.2)])
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps({"type": "Feature", "geometry": shapely.geometry.mapping(poly), "properties": {}}))
    assert region_bounds(str(path)) == pytest.approx(poly.bounds)
    r = utm_region(poly.bounds, "projects/p/assets/mines")
    assert r.epsg == 32721 and all(v % 10 == 0 for v in r.bounds)  # 55.75 W, 6.25 S: UTM zone 21 south
    rect = shapely.box(*r.bounds)
    tf = Transformer.from_crs(4326, r.epsg, always_xy=True)
    assert rect.covers(shapely.transform(shapely.box(*poly.bounds).segmentize(0.001),
                                         lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1]))))  # fmt: skip


def test_region_on_a_local_catalog_without_sentinel2(tmp_path, capsys, ee_local):
    """``--region`` on a local engine whose catalog lacks COPERNICUS/S2_SR_HARMONIZED: one clear line, no output."""
    mines = tmp_path / "mines.geojson"
    mines.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    catalog = write_catalog(tmp_path / "catalog.toml", [table_entry("projects/gee-mining-rtest/assets/mines", mines)])
    out = tmp_path / "run"
    code = main(["monitor", "--region=-55.8,-6.3,-55.7,-6.2", "--mines", "projects/gee-mining-rtest/assets/mines",
                 "--years", "2019-2020", "--project", "gee-mining-rtest", "--catalog", str(catalog), "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "has no COPERNICUS/S2_SR_HARMONIZED" in err and "--engine earthengine" in err
    assert not (out / "candidates.gpkg").exists()
    assert main(["monitor", "--years", "2019-2020", "--out", str(out)]) != 0
    assert "--world" in capsys.readouterr().err


@pytest.mark.slow
def test_region_on_a_catalog_that_serves_sentinel2(monitored, tmp_path):
    """``--region`` (a bbox inside the SIMULATED world) through the region path: composites exported and served,
    footprints of exactly the known mines whose polygons meet the rectangle (shapely), candidates inside it."""
    world, _ = monitored
    manifest = json.loads((world / "manifest.json").read_text())
    region, _ = world_region(world)
    cx, cy = (region.bounds[0] + region.bounds[2]) / 2, (region.bounds[1] + region.bounds[3]) / 2
    to_ll = Transformer.from_crs(region.epsg, 4326, always_xy=True)
    w, s = to_ll.transform(cx - 1200, cy - 1200)
    e, n = to_ll.transform(cx + 1200, cy + 1200)
    out = tmp_path / "run"
    assert main(["monitor", f"--region={w},{s},{e},{n}", "--mines", manifest["asset_ids"]["mines"], "--years",
                 "2019-2020", "--months", "1", "--threshold", "0.6", "--min-pixels", "10", "--no-review",
                 "--project", manifest["parameters"]["project"], "--catalog", str(world / "catalog.toml"),
                 "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "monitor.json").read_text())
    assert summary["region"]["epsg"] == int(manifest["grid"]["crs"].split(":")[1])
    rect = shapely.box(*summary["region"]["bounds"])
    tf = Transformer.from_crs(4326, region.epsg, always_xy=True)
    to_utm = lambda g: shapely.transform(g, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))  # noqa: E731
    mines = json.loads((world / "tables" / "mines.geojson").read_text())["features"]
    meeting = {
        str(f["properties"]["id"]) for f in mines if to_utm(shapely.geometry.shape(f["geometry"])).intersects(rect)
    }
    assert set(pd.read_parquet(out / "footprints.parquet").mine_id) == meeting
    for g in pyogrio.read_dataframe(out / "candidates.gpkg").geometry:
        assert rect.buffer(1).covers(to_utm(g))
    # a country name: its bounds from the world's LSIB table (shapely); a name no country has, a clear error
    countries = json.loads((world / "tables" / "lsib_simple_2017.geojson").read_text())["features"]
    brazil = [shapely.geometry.shape(f["geometry"]) for f in countries if f["properties"]["country_na"] == "Brazil"]
    gee_mining.connect("local", project=manifest["parameters"]["project"], catalog=world / "catalog.toml")
    assert region_bounds("Brazil") == pytest.approx(shapely.union_all(brazil).bounds, abs=0.02)  # 1 km margin
    with pytest.raises(InputError, match="no country of that name"):
        region_bounds("Atlantis")


@pytest.mark.slow
def test_evaluation_resumes_prepared_worlds(tmp_path):
    """An evaluation stopped after its worlds were prepared reuses them (same composites served, nothing
    regenerated: the files keep their times); a world made from another spec is not reused."""
    ev = MonitorEvaluationSpec(train_seeds=(1,), test_seeds=(2,), years=(2019, 2020), size_km=4.2, known_mines=1,
                               new_mines=1)  # fmt: skip
    spec = MonitorSpec(years=ev.years, months=ev.months, band=ev.band)
    said: list[str] = []
    first = _prepare(tmp_path, ev, spec, said.append)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("seed_*/world/manifest.json")}
    again = _prepare(tmp_path, ev, spec, said.append)
    assert [m for m in said if "reused" in m] == ["[monitor evaluate] world 1 reused (1/2)",
                                                  "[monitor evaluate] world 2 reused (2/2)"]  # fmt: skip
    assert {s: (w.region, w.composites) for s, w in again.items()} == {
        s: (w.region, w.composites) for s, w in first.items()
    }
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    with rasterio.open(next(tmp_path.glob("seed_2/run/work/composites/composite_2020.tif"))) as ds:
        assert ds.count > 0 and ds.read(1).std() > 0  # the served composite is there, not empty
    other = MonitorEvaluationSpec(**{**asdict(ev), "new_mines": 2})
    assert read_prepared(tmp_path / "seed_2", _stamp(ev, spec, 2)) == {}  # prepared from this spec
    assert read_prepared(tmp_path / "seed_2", _stamp(other, spec, 2)) is None  # not from another


def _sums_world(tmp_path):
    """One known mine of 10000 m2 whose zone area at every threshold goes 5000 -> 7500 with 4000 detected inside
    (growth 2500 / 0.4 = 6250), and its truth: the pit grows by 5000, the pit and its cleared ring by 6250."""
    row = {"mine_id": "7", "known_area_m2": "10000"}
    for t in GRID:
        row |= {f"a{round(t * 100):03d}_2019": "5000", f"a{round(t * 100):03d}_2020": "7500"}
        row[f"i{round(t * 100):03d}"] = "4000"
    truth = pd.DataFrame({"mine_id": ["7", "7"], "year": [2019, 2020], "known": [True, True],
                          "area_m2": [10000.0, 15000.0], "disturbed_m2": [12000.0, 18250.0]})  # fmt: skip
    return _World(1, None, tmp_path, [row], truth, 36.0)


def test_growth_error_against_either_truth_and_the_scale_chosen(tmp_path):
    w = _sums_world(tmp_path)
    (e,) = growth_errors(w, 0.5, 0.1, (2019, 2020)).itertuples()
    assert e.growth_m2 == pytest.approx(6250) and e.true_growth_m2 == 6250 and e.abs_rel_error == pytest.approx(0)
    (e,) = growth_errors(w, 0.5, 0.1, (2019, 2020), scale=0.8, truth_column="area_m2").itertuples()
    assert e.growth_m2 == pytest.approx(5000) and e.abs_rel_error == pytest.approx(0)
    ev = MonitorEvaluationSpec(train_seeds=(1,), test_seeds=(2,), years=(2019, 2020), growth_truth="area_m2")
    assert choose_growth([w], ev)[1] == pytest.approx(0.8)  # 5000 / 6250
    with pytest.raises(InputError, match="no 'x_m2'"):
        growth_errors(_World(1, MonitorWorld(tmp_path, None, {}, tmp_path, ()), tmp_path, w.sums, w.truth, 1.0),
                      0.5, 0.1, (2019, 2020), truth_column="x_m2")  # fmt: skip


def test_ties_go_to_the_rule_still_clean_when_loosened():
    base = {"min_pixels": 10, "min_years": 1, "new_only": True, "min_ndvi_before": None}
    tried = [{**base, "persistent": p, "threshold": t, "false_candidates": f}
             for p, fs in ((False, (3, 1, 0)), (True, (1, 0, 0))) for t, f in zip(GRID[:3], fs, strict=True)]  # fmt: skip
    margin = {
        (r["persistent"], r["threshold"]): v for r in tried for k, v in _looser_false(tried).items() if k == id(r)
    }
    assert margin[(False, GRID[2])] == 4 and margin[(True, GRID[2])] == 1 and margin[(True, GRID[0])] == 1


def test_evaluation_refuses_a_linked_seed_folder_before_building(tmp_path):
    """A seed folder linked to another run's is refused (naming it) before the first world is built."""
    other = tmp_path / "other" / "seed_2"
    other.mkdir(parents=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "seed_2").symlink_to(other)
    ev = MonitorEvaluationSpec(train_seeds=(1,), test_seeds=(2,), years=(2019, 2020), size_km=4.2, known_mines=1,
                               new_mines=1)  # fmt: skip
    spec = MonitorSpec(years=ev.years, months=ev.months, band=ev.band)
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "run" / "seed_2"))):
        _prepare(tmp_path / "run", ev, spec, print)
    assert not (tmp_path / "run" / "seed_1").exists() and list(other.iterdir()) == []


def test_demo_candidate_table_prints_years_as_years(tmp_path):
    """The demo's candidate table shows a candidate's first year as 2020, not as the number 2,020."""
    (tmp_path / "truth").mkdir()
    mine = shapely.box(-60.0, -3.0, -59.99, -2.99)
    pd.DataFrame({"mine_id": ["0", "0", "0"], "year": list(YEARS), "known": [True] * 3,
                  "disturbed_m2": [100.0, 200.0, 300.0], "geometry_wkt": [mine.wkt] * 3}).to_parquet(
        tmp_path / "truth" / "mines_by_year.parquet")  # fmt: skip
    fp = pd.DataFrame([{"mine_id": "0", "year": 2021, "known_area_m2": 90.0, "area_m2": 280.0, "growth_m2": 190.0,
                        "growth_low_m2": 150.0, "growth_high_m2": 210.0}])  # fmt: skip
    cand = Candidate(1, mine.centroid.buffer(0.001), 0.9, 1200.0, 2020, 2, {"nearest_mine": 1234})
    _, cands = _truth_rows(SimpleNamespace(footprints=fp, candidates=[cand]), tmp_path)
    report = Report("t")
    Report.table(report.section("c"), ["candidate", "score", "area m2", "first year", "nearest mine", "in the truth"],
                 cands)  # fmt: skip
    cells = re.findall(r"<td[^>]*>(.*?)</td>", report.render())
    assert cells[3:5] == ["2020", "1234"] and cells[5] == "new mine 0"


def test_review_page_names_the_land_cover_and_explains_its_map():
    """A candidate's WorldCover class shows with its name from the catalog's legend (60 is bare / sparse vegetation,
    30 grassland), and the map says which colour is which."""
    cands = [Candidate(1, shapely.box(-60.0, -3.0, -59.99, -2.99), 0.9, 1200.0, 2020, 2, {"land_cover": 60}),
             Candidate(2, shapely.box(-60.02, -3.0, -60.01, -2.99), 0.8, 900.0, 2020, 2, {"land_cover": 30}),
             Candidate(3, shapely.box(-60.04, -3.0, -60.03, -2.99), 0.7, 800.0, 2021, 1, {})]  # fmt: skip
    page = review_html(cands, [], (-60.05, -3.01, -59.98, -2.98), (2019, 2021), {}, "run", simulated=True)
    rows = re.findall(r"<tr data-id=.*?</tr>", page)
    cover = [re.findall(r"<td>(.*?)</td>", r)[8] for r in rows]
    assert cover == ["60 bare / sparse vegetation", "30 grassland", ""]
    assert "known mines grey, candidates red" in page


def test_footprint_frame_area_is_never_below_zero_when_a_mine_regrows():
    """A 10000 m2 mine with 4000 m2 detected inside (share 0.4) whose zone falls from 5000 to 0 m2: growth
    -5000 / 0.4 = -12500, more than its registered area; the area reads 0, the growth keeps its sign."""
    rows = [{"mine_id": "3", "known_area_m2": "10000", "a050_2019": "5000", "a060_2019": "4000", "a040_2019": "6000",
             "a050_2020": "0", "a060_2020": "0", "a040_2020": "0", "i050": "4000", "i060": "4000",
             "i040": "4000"}]  # fmt: skip
    f = footprint_frame(rows, [2019, 2020], (0.5, 0.6, 0.4)).set_index("year")
    assert f.loc[2020, "growth_m2"] == pytest.approx(-5000 / 0.4)
    assert f.loc[2020, "area_m2"] == 0 and f.loc[2020, "area_low_m2"] == 0 and f.loc[2020, "area_high_m2"] == 0
    assert f.loc[2019, "area_m2"] == 10000

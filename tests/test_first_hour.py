"""A new user's first hour (issue 27): from "my polygons" to imagery on the local engine, marked SIMULATED.

A synthetic global polygon file (four polygons on three continents); a small world built around one of them;
quicklooks and exports of a cell inside the world and one outside it. References: rasterio (the GeoTIFF's
tags), Pillow (the JPEG's comment and pixels), os.stat (the world's file sizes), the ee client's errors.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image

import gee_mining
from gee_mining.cli.main import main
from gee_mining.contracts.cells import GridSpec, cell_row, utm_epsg

CENTRE = (-69.87, -20.41)  # lon, lat: the world's polygon (Atacama)
PROJECT = "gee-mining-test"


def _global_file(path: Path) -> Path:
    lon, lat = CENTRE
    shapes = [shapely.box(lon - 0.003, lat - 0.003, lon + 0.003, lat + 0.003), shapely.box(13.8, -4.4, 13.9, -4.3),
              shapely.box(100, 10, 100.05, 10.05), shapely.box(120.0, -2.0, 120.02, -1.98)]  # fmt: skip
    features = [{"type": "Feature", "properties": {"id": i}, "geometry": shapely.geometry.mapping(s)}
                for i, s in enumerate(shapes)]  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _cell(lon: float, lat: float) -> dict:
    from pyproj import Transformer

    epsg = utm_epsg(lon, lat)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    spec = GridSpec.of(1375)
    return cell_row(epsg, int(x // 1375), int(y // 1375), spec)


@pytest.fixture(scope="module")
def first_hour(tmp_path_factory):
    root = tmp_path_factory.mktemp("first_hour")
    polygons = _global_file(root / "my_mines.geojson")
    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        rc = main(["world", "--out", str(root / "world"), "--polygons", str(polygons), "--size-km", "1.5",
                   "--months", "1", "--project", PROJECT, f"--center={CENTRE[0]},{CENTRE[1]}"])  # fmt: skip
    assert rc == 0
    inside, outside = _cell(*CENTRE), _cell(100.02, 10.02)
    names = ["name", "zoom", "cell_size", "epsg", "cell_x", "cell_y"]
    grid = root / "grid.csv"
    grid.write_text(
        ",".join(names) + "\n" + "".join(",".join(str(r[k]) for k in names) + "\n" for r in (inside, outside))
    )
    return {"root": root, "polygons": polygons, "world_out": out.getvalue(), "grid": grid, "inside": inside,
            "outside": outside}  # fmt: skip


def _cells_args(h, command: str, out: str) -> list[str]:
    return [command, "--grid", str(h["grid"]), "--polygons", str(h["polygons"]), "--project", PROJECT,
            "--catalog", str(h["root"] / "world" / "catalog.toml"), "--mask", "scl", "--out", out]  # fmt: skip


def test_world_says_where_its_square_is_and_what_it_covers(first_hour):
    text = first_hour["world_out"]
    assert "covers 1 of the 4 polygons" in text, text
    assert "lon -69.8" in text and "lat -20.4" in text
    world = first_hour["root"] / "world"
    manifest = json.loads((world / "manifest.json").read_text())
    on_disk = sum(p.stat().st_size for p in world.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert manifest["size_bytes"] == on_disk > 1_000_000


def test_quicklooks_inside_the_world_are_marked_simulated_and_outside_fail_clearly(first_hour, capsys):
    h = first_hour
    out = h["root"] / "ql"
    assert main(_cells_args(h, "quicklooks", str(out))) == 1  # one cell has no imagery: not a success
    text = capsys.readouterr().out
    assert f"failed: {h['outside']['name']}: no Sentinel-2 scene covers this cell" in text
    assert "gee-mining world --center=" in text
    assert not (out / f"{h['outside']['name']}.jpg").exists()
    image = Image.open(out / f"{h['inside']['name']}.jpg")
    assert b"SIMULATED" in image.info["comment"]
    corner = np.asarray(image.convert("L"))[:14, :60]
    assert (corner < 40).mean() > 0.4 and (corner > 200).sum() > 20  # white letters on a black box


def test_exports_inside_the_world_carry_the_simulated_tag(first_hour, capsys):
    h = first_hour
    down = h["root"] / "exports"
    rc = main(_cells_args(h, "export-cells", "gs://first-hour/cells") + ["--download", str(down)])
    text = capsys.readouterr().out
    assert rc == 1 and f"failed: {h['outside']['name']}: no Sentinel-2 scene" in text
    tifs = list(down.rglob("*.tif"))
    assert [p.stem for p in tifs] == [h["inside"]["name"]]
    with rasterio.open(tifs[0]) as ds:
        assert ds.tags()["GEE_MINING_SIMULATED"] == "true"
        assert np.isfinite(ds.read(1)).any()


def test_real_scenes_are_not_marked_simulated(ee_local):
    from conftest import shared_file

    from gee_mining.steps.sentinel2 import CompositeSpec, simulated_flag

    shared_file("imagery/bigearthnet_s2_l2a")  # real Level-2A patches, items of COPERNICUS/S2_SR_HARMONIZED
    ee = ee_local
    region = ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED").first().geometry()
    spec = CompositeSpec(start="2017-01-01", end="2018-01-01")
    assert ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED").filterBounds(region).size().getInfo() >= 1
    assert simulated_flag(region, spec).getInfo() == "false"


def test_missing_collection_says_how_to_get_imagery(tmp_path):
    import ee

    gee_mining.connect("local", project=PROJECT, catalog=None)
    with pytest.raises(ee.EEException, match="gee-mining world --polygons"):
        ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED").size().getInfo()


def test_describe_by_url_does_not_claim_an_empty_catalog(first_hour):
    from gee_mining.local import LocalEngine

    engine = LocalEngine(first_hour["root"] / "world" / "catalog.toml", project=PROJECT)
    server = engine.serve("127.0.0.1", 0)
    try:
        conn = gee_mining.connect("local", project=PROJECT, url=server.url)
        assert "empty" not in conn.describe(), conn.describe()
    finally:
        server.stop()
        engine.close()


def test_report_inputs_do_not_claim_real_scenes_from_a_polygon_file():
    from gee_mining.demo.run import inputs_text

    only_polygons = inputs_text(world=object(), real_polygons=True, real_scenes=False)
    assert "Sentinel-2 scenes" not in only_polygons and "mine polygons" in only_polygons
    assert "Sentinel-2 scenes" in inputs_text(world=None, real_polygons=True, real_scenes=True)
    assert "SIMULATED" in inputs_text(world=object(), real_polygons=False, real_scenes=False)

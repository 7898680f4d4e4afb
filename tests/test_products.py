"""Steps 2-3 products on a tiny simulated world: cell images, exports, quicklooks, pixel tables.

Independent references: shapely (which pixel centres lie in a mine polygon), rasterio's
affine transform (pixel centres), tensorflow's tf.data (TFRecord patches), PIL (the JPEG),
and ``computePixels`` of the same image (an engine route that shares no code with exports,
tables or the sampling algorithms).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely

from gee_mining.batch.exports import ExportSpec, cell_files, export_cells, export_pixel_table
from gee_mining.connection import open_bucket
from gee_mining.contracts.bands import NODATA
from gee_mining.contracts.cells import GridSpec
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.errors import InputError
from gee_mining.io.pixel_table import csv_to_table, from_geotiff, read_pixel_table, write_pixel_table
from gee_mining.steps.cell_image import ImagerySpec, cell_image
from gee_mining.steps.grid import build_grid
from gee_mining.steps.pixel_tables import fetch_pixel_table
from gee_mining.steps.quicklooks import QuicklookSpec, quicklook_bytes
from gee_mining.steps.sentinel2 import CompositeSpec
from gee_mining.world import world_catalog_toml

SPEC = ImagerySpec(composite=CompositeSpec(start="2019-01-01", end="2019-04-01"), indices=("NDVI",))


@pytest.fixture(scope="module")
def world(sim_world):
    """The session's simulated world (conftest.SIM_WORLD)."""
    return sim_world


@pytest.fixture(scope="module")
def ee_world(ee_local, engine_catalog, sim_catalog, tmp_path_factory):
    import gee_mining

    storage = tmp_path_factory.mktemp("pworld_storage")
    gee_mining.connect("local", project="gee-mining-test", catalog=sim_catalog, storage_root=storage)
    yield ee_local
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


@pytest.fixture(scope="module")
def grid(ee_world, world):
    """640 m cells over the world's mines (zoom label 19): real grid rows, positives and negatives."""
    table = build_grid(ee_world, world.asset_ids["mines"], GridSpec.of(640, zoom=19))
    assert table.positives and table.negatives
    return table


@pytest.fixture(scope="module")
def mines_utm(world, grid):
    """The world's mine polygons in the cells' UTM zone (read from the file, not through the engine)."""
    import pyogrio
    import pyproj

    _, _, wkb, _ = pyogrio.raw.read(Path(world.out_dir) / "tables" / "mines.geojson")
    tf = pyproj.Transformer.from_crs(4326, grid.positives[0]["epsg"], always_xy=True)
    return [
        shapely.transform(g, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        for g in shapely.from_wkb(wkb)
    ]


@pytest.fixture(scope="module")
def exported(ee_world, world, grid, tmp_path_factory):
    rows = grid.positives[:2] + grid.negatives[:1]
    folder = tmp_path_factory.mktemp("cells")
    results = export_cells(rows, world.asset_ids["mines"], ExportSpec("gs://cells/z19"), SPEC, download_to=folder)
    return rows, results, folder


def _centres_inside(grid, polygons) -> np.ndarray:
    xmin, ymin, xmax, ymax = grid.bounds
    xs = xmin + (np.arange(grid.width) + 0.5) * grid.scale
    ys = ymax - (np.arange(grid.height) + 0.5) * grid.scale
    xx, yy = np.meshgrid(xs, ys)
    union = shapely.union_all(polygons)
    return shapely.contains_xy(union, xx, yy)


def test_cell_geotiff_is_a_named_cog_on_the_cell_lattice(ee_world, exported, mines_utm):
    rows, results, folder = exported
    assert [r.state for r in results] == ["COMPLETED"] * 3
    for row, result in zip(rows, results, strict=True):
        assert result.files == [f"gs://cells/z19/{row['name']}.tif"]
        path = folder / f"{row['name']}.tif"
        assert result.local_files == [path]
        lattice = pixel_grid(row)
        with rasterio.open(path) as ds:
            assert ds.crs.to_epsg() == row["epsg"] and ds.count == len(SPEC.band_names)
            assert list(ds.descriptions) == SPEC.band_names
            assert tuple(ds.transform)[:6] == (10.0, 0.0, lattice.transform[2], 0.0, -10.0, lattice.transform[5])
            assert (ds.width, ds.height) == (64, 64) and ds.nodata == NODATA and ds.dtypes[0] == "float32"
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"  # GDAL recognises the COG layout
            data = ds.read()
        mine = data[SPEC.band_names.index("_mine")]
        np.testing.assert_array_equal(mine == 1, _centres_inside(lattice, mines_utm))
        assert (mine == 1).mean() == pytest.approx(row["overlap"], abs=0.03)  # pixel centres vs area overlap
        dist = data[SPEC.band_names.index("distance")]
        assert np.all((dist < 0) == (mine == 1))
        ref = ee_world.data.computePixels(
            {"expression": cell_image(row, "projects/gee-mining-test/assets/world_mines", SPEC),
             "fileFormat": "NUMPY_NDARRAY", "grid": lattice.ee_grid()}
        )  # fmt: skip
        for i, band in enumerate(SPEC.band_names):
            np.testing.assert_allclose(data[i], np.asarray(ref[band], dtype=np.float32), rtol=1e-6, atol=1e-6)


def test_tfrecord_patches_with_margin_read_back_with_tf_data(ee_world, world, exported, tmp_path):
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    rows, _, folder = exported
    row = rows[0]
    spec = ExportSpec("gs://cells/tfr", format="tfrecord", patch_size=32, margin=4)
    (result,) = export_cells([row], world.asset_ids["mines"], spec, SPEC, download_to=tmp_path)
    assert [f.rsplit("/", 1)[1] for f in result.files] == [
        f"{row['name']}-00000.tfrecord.gz",
        f"{row['name']}-mixer.json",
    ]
    mixer = json.loads((tmp_path / f"{row['name']}-mixer.json").read_text())
    assert mixer["patchesPerRow"] == 2 and mixer["totalPatches"] == 4
    side = 32 + 2 * 4
    features = {b: tf.io.FixedLenFeature([side, side], tf.float32) for b in SPEC.band_names}
    records = tf.data.TFRecordDataset([str(tmp_path / f"{row['name']}-00000.tfrecord.gz")], compression_type="GZIP")
    patches = [tf.io.parse_single_example(r, features) for r in records]
    assert len(patches) == 4
    with rasterio.open(folder / f"{row['name']}.tif") as ds:
        mine = ds.read(SPEC.band_names.index("_mine") + 1)
    for k, patch in enumerate(patches):
        r, c = divmod(k, 2)
        core = patch["_mine"].numpy()[4:-4, 4:-4]
        np.testing.assert_array_equal(core, mine[r * 32 : r * 32 + 32, c * 32 : c * 32 + 32])


def test_export_input_errors_are_clear(grid, world):
    with pytest.raises(InputError, match="gs://BUCKET/PREFIX"):
        ExportSpec("/tmp/somewhere")
    with pytest.raises(InputError, match="format"):
        ExportSpec("gs://bkt/p", format="PNG")
    with pytest.raises(InputError, match="divisor of 64"):
        export_cells(grid.positives[:1], world.asset_ids["mines"], ExportSpec("gs://bkt/p", "TFRecord", 48), SPEC)
    with pytest.raises(InputError, match="lacks"):
        export_cells([{"name": "x"}], world.asset_ids["mines"], ExportSpec("gs://bkt/p"), SPEC)
    with pytest.raises(InputError, match="mine polygons"):
        cell_image(grid.positives[0], None, SPEC)
    assert cell_files(["p/a.tif", "p/ab.tif", "p/a-00000.tfrecord.gz", "p/a-mixer.json", "p/a.csv"], "p/a") == [
        "p/a-00000.tfrecord.gz", "p/a-mixer.json", "p/a.tif"
    ]  # fmt: skip


def test_1375m_cells_get_the_covering_10m_lattice():
    """1375 m is 137.5 pixels of 10 m: the lattice stays on Sentinel-2's 10 m pixels and covers the cell."""
    for cx in (0, 1, 7, 123):
        row = {"name": "c", "epsg": 32633, "cell_x": cx, "cell_y": 4000 + cx, "cell_size": 1375.0}
        g = pixel_grid(row)
        assert (g.width, g.height) == (138, 138)
        xmin, ymin, xmax, ymax = g.bounds
        assert xmin % 10 == 0 and ymax % 10 == 0
        assert xmin <= cx * 1375 and xmax >= (cx + 1) * 1375 and xmax - xmin - 1375 < 10


def test_quicklook_draws_the_polygons_in_translucent_red(ee_world, world, grid, mines_utm):
    from PIL import Image

    row = grid.positives[0]
    look = QuicklookSpec(opacity=0.5, outline=0)
    jpeg = quicklook_bytes(row, world.asset_ids["mines"], look, SPEC.composite)
    picture = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=float)
    assert picture.shape == (64, 64, 3)
    plain = quicklook_bytes(row, ee_world.FeatureCollection([]), look, SPEC.composite)
    base = np.asarray(Image.open(io.BytesIO(plain)).convert("RGB"), dtype=float)
    inside = _centres_inside(pixel_grid(row), mines_utm)
    # inside: half-way to pure red (255, 0, 0); outside: the plain composite (JPEG error aside)
    expected = base.copy()
    expected[inside] = 0.5 * base[inside] + 0.5 * np.array([255.0, 0, 0])
    core = _away_from_edges(inside)  # JPEG blurs the edges
    assert np.abs(picture - expected)[core].mean() < 6
    assert picture[inside, 0].mean() - picture[inside, 1].mean() > 60
    with pytest.raises(InputError, match="opacity"):
        QuicklookSpec(opacity=2)


def _away_from_edges(mask: np.ndarray, k: int = 2) -> np.ndarray:
    """Pixels whose (2k+1)^2 neighbourhood is all inside or all outside ``mask``, off the image border."""
    same = np.ones_like(mask)
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            same &= np.roll(mask, (dy, dx), (0, 1)) == mask
    same[:k], same[-k:], same[:, :k], same[:, -k:] = False, False, False, False
    return same


def test_pixel_table_routes_agree_and_positions_are_right(ee_world, world, exported, tmp_path):
    rows, _, folder = exported
    row = rows[0]
    image = cell_image(row, world.asset_ids["mines"], SPEC)
    server = fetch_pixel_table(row, image, SPEC.band_names)
    offline = from_geotiff(folder / f"{row['name']}.tif", row)
    assert list(server.columns) == list(offline.columns)
    assert list(server.columns[:5]) == ["cell", "row", "col", "x", "y"]
    assert {"_mine", "distance", "NDVI", "epsg", "zoom", "cell_label", "overlap", "country"} <= set(server.columns)
    pd.testing.assert_frame_equal(server, offline, check_exact=False, rtol=1e-6)
    assert len(server) == 64 * 64 and server["cell_label"].eq(1).all()
    with rasterio.open(folder / f"{row['name']}.tif") as ds:
        xs, ys = rasterio.transform.xy(ds.transform, server["row"], server["col"])  # pixel centres
        b4 = ds.read(4)
    np.testing.assert_allclose(server["x"], xs)
    np.testing.assert_allclose(server["y"], ys)
    np.testing.assert_array_equal(server["B4"], b4[server["row"], server["col"]])
    ndvi = (server["B8"] - server["B4"]) / (server["B8"] + server["B4"])
    np.testing.assert_allclose(server["NDVI"], ndvi, rtol=1e-5)

    task = export_pixel_table(row, image, SPEC.band_names, "gs://tables/pixels")
    task.start()
    from gee_mining.batch.tasks import wait_for

    assert wait_for([task], poll_s=0.05)[0]["state"] == "COMPLETED"
    bucket = open_bucket("tables")
    assert bucket.list("pixels/") == [f"pixels/{row['name']}.csv"]
    csv_path = bucket.download(f"pixels/{row['name']}.csv", tmp_path / "p.csv")
    pd.testing.assert_frame_equal(csv_to_table(csv_path, SPEC.band_names), server, check_exact=False, rtol=1e-6)


def test_masked_pixels_have_no_row(ee_world, world, grid):
    """Cells reaching past the world's west edge: pixels no scene covers have no row; a cell
    wholly outside has an empty table (and an image with all its bands, all masked)."""
    base = dict(grid.positives[0])
    edge_x = int(world.grid["origin"][0] // 640)
    for name, cx, some in (("edge_cell", edge_x, True), ("outside_cell", edge_x - 2, False)):
        row = {**base, "name": name, "cell_x": cx}
        image = cell_image(row, world.asset_ids["mines"], SPEC)
        table = fetch_pixel_table(row, image, SPEC.band_names)
        arr = ee_world.data.computePixels(
            {"expression": image.select("B4").mask(), "fileFormat": "NUMPY_NDARRAY", "grid": pixel_grid(row).ee_grid()}
        )
        valid = np.asarray(arr["B4"]) > 0
        assert len(table) == valid.sum()
        assert (0 < len(table) < 64 * 64) if some else len(table) == 0
        assert valid[table["row"], table["col"]].all()


def test_write_and_read_pixel_tables_by_column_and_cell(ee_world, exported, tmp_path):
    rows, _, folder = exported
    frames = [from_geotiff(folder / f"{r['name']}.tif", r) for r in rows]
    written = write_pixel_table(pd.concat(frames, ignore_index=True), tmp_path / "t", formats=("parquet", "csv"))
    assert sorted(p.name for p in written) == sorted(f"{r['name']}.{s}" for r in rows for s in ("parquet", "csv"))
    some = read_pixel_table(tmp_path / "t", columns=["cell", "B8", "_mine"], cells=[rows[1]["name"]])
    assert list(some.columns) == ["cell", "B8", "_mine"] and set(some["cell"]) == {rows[1]["name"]}
    np.testing.assert_array_equal(some["B8"].to_numpy(), frames[1]["B8"].to_numpy())
    assert len(read_pixel_table(tmp_path / "t")) == sum(len(f) for f in frames)
    with pytest.raises(InputError, match="no column"):
        read_pixel_table(tmp_path / "t", columns=["B99"])
    with pytest.raises(InputError, match="no pixel table"):
        read_pixel_table(tmp_path / "missing")
    assert not list((tmp_path / "t").glob(".partial-*"))
    assert math.isclose(frames[0]["overlap"].iloc[0], rows[0]["overlap"])


def test_cli_exports_quicklooks_pixel_tables_and_a_job(world, grid, tmp_path, capsys):
    """The commands a user runs, end to end on the local engine, reading a grid table file."""
    from gee_mining.cli.main import main
    from gee_mining.io.grid_table import write_table

    grid_file = write_table(grid, tmp_path / "grid.parquet")
    catalog = tmp_path / "world.toml"
    catalog.write_text(world_catalog_toml(world.out_dir))
    mines = Path(world.out_dir) / "tables" / "mines.geojson"
    common = ["--grid", str(grid_file), "--polygons", str(mines), "--catalog", str(catalog), "--limit", "2",
              "--start", "2019-01-01", "--end", "2019-04-01", "--storage", str(tmp_path / "st")]  # fmt: skip
    assert (
        main(["export-cells", *common, "--indices", "NDVI", "--out", "gs://bkt/c", "--download", str(tmp_path / "tif")])
        == 0
    )
    tifs = sorted(p.name for p in (tmp_path / "tif").glob("*.tif"))
    assert tifs == sorted(f"{r['name']}.tif" for r in grid.rows[:2])
    assert main(["quicklooks", *common, "--out", str(tmp_path / "ql")]) == 0
    assert len(list((tmp_path / "ql").glob("*.jpg"))) == 2
    assert main(["pixels", "--grid", str(grid_file), "--from-geotiff", str(tmp_path / "tif"), "--out",
                 str(tmp_path / "px"), "--format", "parquet,csv"]) == 0  # fmt: skip
    table = read_pixel_table(tmp_path / "px", columns=["cell", "NDVI", "_mine"])
    assert set(table["cell"]) == {r["name"] for r in grid.rows[:2]} and table["NDVI"].notna().all()
    assert main(["export-cells", *common, "--out", "/not/a/bucket"]) == 2
    assert "gs://BUCKET/PREFIX" in capsys.readouterr().err

    job = tmp_path / "job.toml"
    job.write_text(
        f'name = "t"\nproduct = "cell-image"\ncells = "{grid_file}"\nengine = "local"\nmax_running = 2\n'
        '[destination]\nbucket = "jobs"\nprefix = "cells"\n'
        f'[params]\npolygons = "{world.asset_ids["mines"]}"\nstart = "2019-01-01"\nend = "2019-04-01"\n'
    )
    args = ["--catalog", str(catalog), "--project", "gee-mining-test", "--storage", str(tmp_path / "jobst")]
    assert main(["export", "run", str(job), *args]) == 0
    written = sorted(p.name for p in (tmp_path / "jobst" / "jobs" / "cells").glob("*.tif"))
    assert written == sorted(f"{r['name']}.tif" for r in grid.rows)
    assert main(["export", "run", str(job), *args]) == 0  # a re-run submits nothing
    assert "0 submitted by this run" in capsys.readouterr().out
    assert main(["export", "status", str(job)]) == 0
    assert f"SUCCEEDED {len(grid.rows)}" in capsys.readouterr().out


def test_cell_geotiff_carries_its_row_as_a_tag(ee_world, exported):
    """Each exported cell GeoTIFF holds its grid row (GEE_MINING_CELL tag); the pixel table needs no row."""
    rows, _, folder = exported
    for row in rows:
        path = folder / f"{row['name']}.tif"
        with rasterio.open(path) as ds:
            tag = json.loads(ds.tags()["GEE_MINING_CELL"])
        assert {k: tag[k] for k in ("name", "epsg", "zoom", "label")} == {
            k: row[k] for k in ("name", "epsg", "zoom", "label")
        }
        pd.testing.assert_frame_equal(from_geotiff(path), from_geotiff(path, row))


def test_from_geotiff_without_a_tag_warns_and_uses_the_row(ee_world, exported, tmp_path):
    rows, _, folder = exported
    row = rows[0]
    untagged = tmp_path / "renamed.tif"
    with rasterio.open(folder / f"{row['name']}.tif") as src:
        profile = {**src.profile, "driver": "GTiff"}
        with rasterio.open(untagged, "w", **profile) as dst:
            dst.write(src.read())
            dst.descriptions = src.descriptions
    with pytest.warns(UserWarning, match="GEE_MINING_CELL"):
        table = from_geotiff(untagged, row)
    assert (table["cell"] == row["name"]).all()
    with pytest.raises(InputError, match="GEE_MINING_CELL"):
        from_geotiff(untagged)


@pytest.mark.slow
def test_a_job_fails_a_cell_no_scene_covers_as_export_cells_does(world, grid, tmp_path, capsys):
    """A cell far outside the simulated world (100 cells north of a world cell, no scene there): ``export-cells``
    fails it with a one-line error, and a ``cell-image`` export job now fails it too, with the same error and no
    file and no task (before, the job's task succeeded with a file all nodata), while the world's cell succeeds."""
    from gee_mining.cli.main import main
    from gee_mining.contracts.cells import cell_row
    from gee_mining.io.grid_table import write_table
    from gee_mining.steps.sentinel2 import no_scene_error

    inside = grid.positives[0]
    far = {**grid.negatives[0], "pair": None} | cell_row(
        inside["epsg"], inside["cell_x"], inside["cell_y"] + 100, GridSpec(inside["cell_size"], inside["zoom"])
    )
    table = type(grid)(grid.spec)
    table.rows.extend([inside, far])
    grid_file = write_table(table, tmp_path / "grid.csv")
    catalog = tmp_path / "world.toml"
    catalog.write_text(world_catalog_toml(world.out_dir))
    period = ["--start", "2019-01-01", "--end", "2019-04-01"]
    engine = ["--catalog", str(catalog), "--project", "gee-mining-test", "--storage", str(tmp_path / "st")]
    mines = Path(world.out_dir) / "tables" / "mines.geojson"
    args = ["export-cells", "--grid", str(grid_file), "--polygons", str(mines), *period, *engine, "--out", "gs://bkt/c"]
    assert main(args) == 1
    error = no_scene_error(far, CompositeSpec(start="2019-01-01", end="2019-04-01"))
    assert f"failed: {error}" in capsys.readouterr().out
    job = tmp_path / "job.toml"
    job.write_text(
        f'name = "t"\nproduct = "cell-image"\ncells = "{grid_file}"\nengine = "local"\nmax_running = 2\n'
        '[destination]\nbucket = "jobs"\nprefix = "cells"\n'
        f'[params]\npolygons = "{world.asset_ids["mines"]}"\nstart = "2019-01-01"\nend = "2019-04-01"\n'
    )
    assert main(["export", "run", str(job), *engine]) == 1
    said = capsys.readouterr()
    assert f"FAILED {error}" in said.err and "SUCCEEDED 1, FAILED 1; 1 submitted" in said.out, said
    written = sorted(p.name for p in (tmp_path / "st" / "jobs" / "cells").glob("*"))
    assert written == [f"{inside['name']}.tif"]

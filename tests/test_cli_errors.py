"""Every command's errors: one line naming the input and the fix (the traceback behind --debug), per-cell failures
reported per cell while the rest of the run completes, no output or scratch folder left behind, arguments checked
before expensive work. Each case came from an adversarial run of the CLI (issues 27 and 29)."""

from __future__ import annotations

import csv
import json
import os
import stat
import tempfile

import numpy as np
import pyproj
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from gee_mining.cli.main import main
from gee_mining.errors import InputError


def _run(capsys, *argv):
    rc = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    first = err.strip().splitlines()[0]
    assert first.startswith("gee-mining: error:"), err
    for needle in needles:
        assert needle in first, first


def _geojson(path, geometries, crs=None):
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"id": i}, "geometry": g}
                                                    for i, g in enumerate(geometries)]}  # fmt: skip
    if crs:
        fc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(fc))
    return path


def _square(x, y, s=0.02):
    return {"type": "Polygon", "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]]}


BAD_POLYGONS = {
    "unclosed": ([{"type": "Polygon", "coordinates": [[[10, 45], [10.02, 45], [10.02, 45.02], [10, 45.02]]]}],
                 "close each ring"),
    "nan": ([{"type": "Polygon", "coordinates": [[[10, 45], [float("nan"), 45], [10.02, 45.02], [10, 45]]]}],
            "NaN"),
    "null": ([None], "holds no polygons"),
    "metres": ([_square(500000, 4500000, 2000)], "look like metres"),
    "latitude95": ([_square(10, 95)], "latitude -90..90"),
    "points": ([{"type": "Point", "coordinates": [10, 45]}], "only Point features"),
    "lines": ([{"type": "LineString", "coordinates": [[10, 45], [10.1, 45.1]]}], "only LineString features"),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", sorted(BAD_POLYGONS))
def test_bad_polygon_files_are_one_line_errors(case, tmp_path, capsys):
    geometries, message = BAD_POLYGONS[case]
    src = _geojson(tmp_path / f"{case}.geojson", geometries)
    out = tmp_path / "grid.parquet"
    rc, _, err = _run(capsys, "grid", "--polygons", src, "--cell", 5500, "--out", out)
    _one_line_error(rc, err, str(src), message)
    assert not out.exists()


@pytest.mark.parametrize("size", ["1e9", "0.001", "-5500"])
def test_absurd_cell_sizes_are_refused(size, tmp_path, capsys):
    src = _geojson(tmp_path / "m.geojson", [_square(10, 45)])
    rc, _, err = _run(capsys, "grid", "--polygons", src, "--cell", size, "--zoom", 3, "--out", tmp_path / "g.csv")
    _one_line_error(rc, err, "cell size", "10 to 200000 m")


def test_a_bad_output_suffix_is_found_before_any_work(tmp_path, capsys):
    """The polygon file does not even exist: the suffix is checked first (it used to be after the whole grid)."""
    rc, _, err = _run(capsys, "grid", "--polygons", tmp_path / "absent.gpkg", "--cell", 5500, "--out",
                      tmp_path / "grid.xlsx")  # fmt: skip
    _one_line_error(rc, err, "grid.xlsx", ".parquet")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_output_folder_is_found_before_any_work(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc, _, err = _run(capsys, "grid", "--polygons", tmp_path / "absent.gpkg", "--cell", 5500, "--out",
                          ro / "grid.parquet")  # fmt: skip
    finally:
        ro.chmod(0o700)
    _one_line_error(rc, err, "cannot be written")


def test_a_binary_job_spec_and_debug(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_bytes(bytes(range(256)))
    rc, _, err = _run(capsys, "export", "status", job)
    _one_line_error(rc, err, str(job), "not a text file")
    with pytest.raises(InputError):  # --debug: the exception itself, with its traceback
        main(["--debug", "export", "status", str(job)])


def _job(tmp_path, cells="cells.csv"):
    job = tmp_path / "job.toml"
    job.write_text(f'name = "j"\nproduct = "cell-geotiff"\ncells = "{cells}"\n[destination]\nbucket = "b-1"\n')
    return job


def test_status_of_a_job_never_run_creates_nothing(tmp_path, capsys):
    job = _job(tmp_path)
    rc, out, _ = _run(capsys, "export", "status", job)
    assert rc == 0 and "not run yet" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml"]


def test_a_damaged_ledger_gets_a_recovery_command(tmp_path, capsys):
    job = _job(tmp_path)
    (tmp_path / "job.ledger.sqlite").write_bytes(os.urandom(4096))
    rc, _, err = _run(capsys, "export", "status", job)
    _one_line_error(rc, err, "damaged", "mv ", "--adopt-existing")


def test_a_random_bytes_cells_file_is_a_one_line_error(tmp_path, capsys):
    cells = tmp_path / "cells.parquet"
    cells.write_bytes(os.urandom(2048))
    rc, _, err = _run(capsys, "pixels", "--grid", cells, "--from-geotiff", tmp_path, "--out", tmp_path / "px")
    _one_line_error(rc, err, "cells.parquet")


def _cell_tif(path, *, x0=500000.0, y0=5000000.0, n=8):
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=2, dtype="float32", crs="EPSG:32633",
                       transform=from_origin(x0, y0, 10, 10), compress="deflate", nodata=-9999) as ds:  # fmt: skip
        ds.write(np.arange(2 * n * n, dtype="float32").reshape(2, n, n) + 1)
        ds.descriptions = ("B4", "_mine")


def test_damaged_geotiffs_fail_per_cell_and_the_good_cells_are_written(tmp_path, capsys):
    """One good cell and three bad ones (zero bytes, truncated, bit-flipped): the good one's pixels are written,
    each bad one is named, exit status 1."""
    tifs = tmp_path / "tif"
    tifs.mkdir()
    names = ["good", "zero", "truncated", "flipped"]
    for name in names:
        _cell_tif(tifs / f"{name}.tif")
    blob = (tifs / "good.tif").read_bytes()
    (tifs / "zero.tif").write_bytes(b"")
    (tifs / "truncated.tif").write_bytes(blob[: len(blob) // 3])
    flipped = bytearray(blob)
    for i in range(8, len(flipped), 7):
        flipped[i] ^= 0xFF
    (tifs / "flipped.tif").write_bytes(bytes(flipped))
    grid = tmp_path / "grid.csv"
    with open(grid, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["name", "zoom", "label", "epsg", "cell_x", "cell_y", "cell_size"])
        w.writeheader()
        w.writerows({"name": n, "zoom": 16, "label": 0, "epsg": 32633, "cell_x": 0, "cell_y": i, "cell_size": 80}
                    for i, n in enumerate(names))  # fmt: skip
    rc, out, err = _run(capsys, "pixels", "--grid", grid, "--from-geotiff", tifs, "--out", tmp_path / "px")
    assert rc == 1, out + err
    for bad in names[1:]:
        assert f"failed {bad}:" in out
    from gee_mining.io.pixel_table import read_pixel_table

    table = read_pixel_table(tmp_path / "px")
    assert set(table["cell"]) == {"good"} and len(table) == 64


def test_a_cli_run_leaves_no_scratch_folder_and_its_grid_is_geoparquet_in_epsg_4326(tmp_path, capsys, monkeypatch):
    """The GeoParquet opens in geopandas with EPSG:4326 (it used to declare "crs": null, "unknown"); the file gets
    the umask's mode like any other; no gee-mining-* folder stays in the temporary directory."""
    import geopandas

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    src = _geojson(tmp_path / "m.geojson", [_square(10.1, 45.1)])
    out = tmp_path / "grid.parquet"
    old = os.umask(0o022)
    try:
        rc, printed, err = _run(capsys, "grid", "--polygons", src, "--cell", 5500, "--out", out)
    finally:
        os.umask(old)
    assert rc == 0, err
    assert list(scratch.iterdir()) == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    frame = geopandas.read_parquet(out)
    assert frame.crs is not None and frame.crs.equals(pyproj.CRS("EPSG:4326"))
    inside = frame[frame["label"] == 1].geometry
    assert len(inside) and inside.intersects(shapely.box(10.1, 45.1, 10.12, 45.12)).all()

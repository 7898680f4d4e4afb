"""A polygon file that spans the globe: labels and quicklooks of one cell draw only the cell's polygons.

Issue 27 item 1: with the real polygons (36 UTM zones) every cell failed with "Unable to transform
coordinates from EPSG:4326 to EPSG:32719": each cell projected every polygon into its own zone, and a
transverse Mercator zone cannot hold a point about 90 degrees of longitude away. The references here are
shapely (pixel centres inside the cell's polygon) and pyproj (the cell's corners in longitude/latitude).
"""

from __future__ import annotations

import io

import numpy as np
import pyproj
import shapely
from conftest import shared_file
from PIL import Image

from gee_mining.contracts.lattice import PixelGrid, pixel_grid
from gee_mining.steps.labels import label_bands
from gee_mining.steps.quicklooks import QuicklookSpec, quicklook_bytes

ROW = {"name": "global-test", "epsg": 32719, "cell_size": 1380.0, "cell_x": 200, "cell_y": 5000}  # Atacama
GRID = pixel_grid(ROW)


def _global_polygons():
    """A square inside the cell (in the cell's zone), and squares on the far side of the globe."""
    x0, y0 = ROW["cell_x"] * 1380.0, ROW["cell_y"] * 1380.0
    local = shapely.box(x0 + 300.3, y0 + 400.7, x0 + 900.1, y0 + 1000.9)  # EPSG:32719 metres
    to_lonlat = pyproj.Transformer.from_crs(32719, 4326, always_xy=True)
    local_ll = shapely.transform(local, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
    far = [
        shapely.box(13.8, -4.4, 13.9, -4.3),
        shapely.box(100, 10, 100.05, 10.05),
        shapely.box(179.9, 60, 179.95, 60.1),
    ]
    return local, [local_ll, *far]


def _fc(ee, shapes):
    return ee.FeatureCollection(
        [
            ee.Feature(ee.Geometry(shapely.geometry.mapping(s), "EPSG:4326", False), {"id": i})
            for i, s in enumerate(shapes)
        ]
    )


def test_labels_of_a_cell_ignore_polygons_across_the_globe(ee_local):
    ee = ee_local
    local, shapes = _global_polygons()
    got = ee.data.computePixels({"expression": label_bands(_fc(ee, shapes), GRID), "fileFormat": "NUMPY_NDARRAY",
                                 "grid": GRID.ee_grid()})  # fmt: skip
    xx, yy = GRID.pixel_centers()
    inside = shapely.contains_xy(local, xx, yy)
    assert inside.sum() > 3000
    edge = shapely.distance(local.boundary, shapely.points(xx, yy)) < 0.05  # reprojection round trip: centimetres
    assert np.array_equal((got["_mine"] == 1)[~edge], inside[~edge])


def test_quicklook_of_a_cell_with_a_global_polygon_file(ee_local):
    ee = ee_local
    local, shapes = _global_polygons()
    grey = ee.Image.constant([0.1, 0.1, 0.1]).rename(["B4", "B3", "B2"])
    jpeg = quicklook_bytes(ROW, _fc(ee, shapes), QuicklookSpec(outline=0), composite=grey)
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    xx, yy = GRID.pixel_centers()
    inside = shapely.contains_xy(local.buffer(-30), xx, yy)  # away from JPEG blur at the edge
    outside = ~shapely.contains_xy(local.buffer(30), xx, yy)
    assert (rgb[..., 0] - rgb[..., 1])[inside].mean() > 40  # red fill over the polygon
    assert abs((rgb[..., 0] - rgb[..., 1])[outside]).mean() < 5  # grey elsewhere


def test_quicklook_of_a_partly_masked_composite(ee_local):
    """Pixels without a clear observation show black; the polygons are still drawn over them (no blend error)."""
    ee = ee_local
    local, shapes = _global_polygons()
    grey = ee.Image.constant([0.1, 0.1, 0.1]).rename(["B4", "B3", "B2"])
    half = grey.updateMask(ee.Image.pixelCoordinates(GRID.crs).select("x").lt(GRID.bounds[0] + 690))
    rgb = np.asarray(Image.open(io.BytesIO(quicklook_bytes(ROW, _fc(ee, shapes), composite=half))).convert("RGB"))
    assert rgb[:, -20:].mean() < 5 and rgb[:, :20].mean() > 20


def test_lonlat_boxes_cover_the_cell_and_split_at_the_antimeridian():
    to_lonlat = pyproj.Transformer.from_crs(32719, 4326, always_xy=True)
    ((w, s, e, n),) = GRID.lonlat_boxes(1000)
    xmin, ymin, xmax, ymax = GRID.bounds
    lon, lat = to_lonlat.transform([xmin - 1000, xmax + 1000, xmin - 1000, xmax + 1000],
                                   [ymin - 1000, ymin - 1000, ymax + 1000, ymax + 1000])  # fmt: skip
    assert w <= min(lon) and e >= max(lon) and s <= min(lat) and n >= max(lat)
    assert e - w < 0.1 and n - s < 0.1
    # a cell in zone 60 touching 180 degrees: two boxes, one each side
    x = pyproj.Transformer.from_crs(4326, 32660, always_xy=True).transform(179.999, 10.0)[0]
    edge = PixelGrid("EPSG:32660", (10.0, 0.0, x - 500, 0.0, -10.0, 1106000.0), 100, 100)
    boxes = edge.lonlat_boxes(2000)
    assert len(boxes) == 2 and {b[2] for b in boxes} & {180.0} and {b[0] for b in boxes} & {-180.0}


def test_real_polygons_across_36_zones(ee_local):
    from gee_mining.io.polygons import read_polygons

    path = shared_file("polygons/mining_tropics_demo.gpkg")
    ee = ee_local
    shapes = [g for g in read_polygons(path).geometries if g is not None]
    got = ee.data.computePixels({"expression": label_bands(_fc(ee, shapes), GRID), "fileFormat": "NUMPY_NDARRAY",
                                 "grid": GRID.ee_grid()})  # fmt: skip
    xx, yy = GRID.pixel_centers()
    lon, lat = pyproj.Transformer.from_crs(32719, 4326, always_xy=True).transform(xx, yy)
    assert np.array_equal(got["_mine"] == 1, shapely.contains_xy(shapely.union_all(shapes), lon, lat))


def test_cli_shows_an_engine_error_in_one_line(tmp_path, capsys):
    from gee_mining.cli.main import main

    grid = tmp_path / "grid.csv"
    grid.write_text("name,zoom,cell_size,epsg,cell_x,cell_y\nc,16,1380,32719,200,5000\n")
    rc = main(["quicklooks", "--grid", str(grid), "--polygons", "projects/gee-mining-test/assets/no_such_table",
               "--project", "gee-mining-test", "--out", str(tmp_path / "q")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("gee-mining: error:")
    assert not list((tmp_path / "q").glob("*.jpg"))

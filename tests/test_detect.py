"""gee_mining.ml.detect on per-cell GeoTIFFs of a tiny simulated world, made through the real ``ee`` client.

References are independent of the code: boxes from shapely in pixel space (polygon -> pixel
coordinates with rasterio's inverse affine, clipped to the image rectangle there), label files
checked by ultralytics' own dataset scan, geography from rasterio's ``xy`` and pyproj.
"""

from __future__ import annotations

import json
import socket
import warnings

import numpy as np
import pytest
import rasterio
import shapely

from gee_mining.errors import InputError
from gee_mining.io.cell_tags import read_cell_tag

CELL = 640  # metres: 64 x 64 pixel cells
CELLS_X = range(995, 999)
CELLS_Y = range(14543, 14547)


@pytest.fixture(scope="module")
def world(sim_world):
    """The session's simulated world (conftest.SIM_WORLD)."""
    return sim_world


@pytest.fixture(scope="module")
def cells_dir(ee_local, engine_catalog, sim_catalog, world, tmp_path_factory):
    """16 per-cell GeoTIFFs (4 x 4 cells of 640 m) as the export writes them: composite + label bands, the cell's
    row in the file's GEE_MINING_CELL tag."""
    import gee_mining
    from gee_mining.contracts.lattice import pixel_grid
    from gee_mining.io.cell_tags import write_cell_tag
    from gee_mining.steps import labels, sentinel2

    ee = ee_local
    gee_mining.connect("local", project="gee-mining-test", catalog=sim_catalog)
    try:
        fc = ee.FeatureCollection(world.asset_ids["mines"])
        out = tmp_path_factory.mktemp("cells")
        epsg = int(world.grid["crs"].split(":")[1])
        for cx in CELLS_X:
            for cy in CELLS_Y:
                row = {"name": f"c{cx}_{cy}", "epsg": epsg, "cell_x": cx, "cell_y": cy, "cell_size": CELL}
                image = sentinel2.composite(row, start="2019-01-01", end="2019-04-01").addBands(
                    labels.label_bands(fc, row)
                )
                data = ee.data.computePixels(
                    {"expression": image, "fileFormat": "GEO_TIFF", "grid": pixel_grid(row).ee_grid()}
                )
                (out / f"{row['name']}.tif").write_bytes(data)
                write_cell_tag(out / f"{row['name']}.tif", row)  # as the export writes it (GEE_MINING_CELL)
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    return out


@pytest.fixture(scope="module")
def polygons_path(world):
    from pathlib import Path

    return Path(world.out_dir) / "tables" / "mines.geojson"


@pytest.fixture(scope="module")
def polygons(polygons_path):
    from shapely.geometry import shape

    return [shape(f["geometry"]) for f in json.loads(polygons_path.read_text())["features"]]


@pytest.fixture(scope="module")
def yolo_env(tmp_path_factory):
    from gee_mining.ml.detect.offline import prepare_ultralytics

    return prepare_ultralytics(tmp_path_factory.mktemp("ultralytics_cfg"))


@pytest.fixture(scope="module")
def rgb(cells_dir, polygons_path, tmp_path_factory):
    from gee_mining.ml.detect import DatasetSpec, build_dataset

    return build_dataset(cells_dir, polygons_path, tmp_path_factory.mktemp("ds") / "rgb", DatasetSpec())


@pytest.fixture(scope="module")
def ms(cells_dir, polygons_path, tmp_path_factory):
    from gee_mining.contracts.bands import BANDS as REFLECTANCE
    from gee_mining.ml.detect import DatasetSpec, build_dataset

    spec = DatasetSpec(bands=REFLECTANCE)
    return build_dataset(cells_dir, polygons_path, tmp_path_factory.mktemp("ds") / "ms", spec)


def _reference_boxes(tif, polygons, min_px, min_visible):
    """Boxes by shapely in pixel space: polygon -> (col, row) with the inverse affine, clipped to the image there."""
    import pyproj

    with rasterio.open(tif) as ds:
        inv, w, h, epsg = ~ds.transform, ds.width, ds.height, ds.crs.to_epsg()
    tf = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    frame = shapely.box(0, 0, w, h)
    out = []
    for g in polygons:
        parts = list(g.geoms) if g.geom_type == "MultiPolygon" else [g]
        for p in parts:

            def to_px(xy):
                x, y = tf.transform(xy[:, 0], xy[:, 1])
                c, r = inv @ (np.asarray(x), np.asarray(y))
                return np.column_stack([c, r])

            px = shapely.transform(p, to_px)
            vis = px.intersection(frame)
            if vis.is_empty or (vis.area / px.area < min_visible and vis.area < min_visible * frame.area):
                continue
            x0, y0, x1, y1 = vis.bounds
            if x1 - x0 >= min_px and y1 - y0 >= min_px:
                out.append((x0, y0, x1, y1))
    return sorted(out)


def test_boxes_equal_independent_bounding_boxes(rgb, cells_dir, polygons):
    n = 0
    for tif in sorted(cells_dir.glob("*.tif")):
        ref = _reference_boxes(tif, polygons, rgb.spec.min_box_px, rgb.spec.min_visible)
        got = sorted((b["x0"], b["y0"], b["x1"], b["y1"]) for b in rgb.cell(tif.stem)["boxes"])
        assert len(got) == len(ref), tif.stem
        np.testing.assert_allclose(np.array(got).reshape(-1, 4), np.array(ref).reshape(-1, 4), atol=1e-6)
        lines = (rgb.root / "labels" / f"{tif.stem}.txt").read_text().split()
        yolo = np.array(lines, float).reshape(-1, 5)
        expect = np.array([((a + c) / 128, (b + d) / 128, (c - a) / 64, (d - b) / 64) for a, b, c, d in ref])
        np.testing.assert_allclose(np.sort(yolo[:, 1:], axis=0), np.sort(expect.reshape(-1, 4), axis=0), atol=2e-6)
        n += len(ref)
    assert n >= 4  # the cells over the mines hold boxes; the others are negatives
    assert sum(1 for c in rgb.cells if not c["boxes"]) >= 6


def test_limits_are_applied(cells_dir, polygons_path, polygons, tmp_path):
    from gee_mining.ml.detect import DatasetSpec, build_dataset

    strict = build_dataset(cells_dir, polygons_path, tmp_path / "s", DatasetSpec(min_visible=0.9, min_box_px=20))
    for c in strict.cells:
        ref = _reference_boxes(cells_dir / f"{c['name']}.tif", polygons, 20, 0.9)
        assert len(c["boxes"]) == len(ref)
    with pytest.raises(InputError, match="distance"):
        DatasetSpec(bands=("B4", "distance"))
    with pytest.raises(InputError, match="B99"):
        build_dataset(cells_dir, polygons_path, tmp_path / "bad", DatasetSpec(bands=("B99", "B3", "B2")))
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.partial").exists()


def test_scaling_is_the_documented_formula(ms, cells_dir):
    from PIL import Image

    name = ms.cells[0]["name"]
    with rasterio.open(cells_dir / f"{name}.tif") as ds:
        b8 = ds.read(list(ds.descriptions).index("B8") + 1)
        b2 = ds.read(list(ds.descriptions).index("B2") + 1)
    img = Image.open(ms.root / "images" / f"{name}.tif")
    pages = []
    for i in range(img.n_frames):
        img.seek(i)
        pages.append(np.asarray(img))
    assert len(pages) == 12
    np.testing.assert_array_equal(
        pages[7], np.clip(np.rint((b8.astype(np.float64) - 0.0) / 0.5 * 255.0), 0, 255).astype(np.uint8)
    )
    np.testing.assert_array_equal(
        pages[1], np.clip(np.rint((b2.astype(np.float64) - 0.0) / 0.3 * 255.0), 0, 255).astype(np.uint8)
    )
    assert "channels: 12" in ms.yaml.read_text()


@pytest.mark.parametrize("which", ["rgb", "ms"])
def test_ultralytics_accepts_every_image(which, request, yolo_env):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    ds = request.getfixturevalue(which)
    data = check_det_dataset(str(ds.yaml))
    assert data["channels"] == ds.spec.channels
    yd = YOLODataset(img_path=data["train"], imgsz=64, data=data, augment=False, task="detect")
    assert len(yd.im_files) == len(ds.cells) == 16
    boxes = sum(len(lb["cls"]) for lb in yd.labels)
    assert boxes == sum(len(c["boxes"]) for c in ds.cells)
    im, _, _ = yd.load_image(0)
    assert im.shape[2] == ds.spec.channels


def test_geographic_folds_never_straddle(rgb):
    from gee_mining.ml.detect.splits import cell_groups, geographic_folds

    groups = cell_groups(rgb, "region", region_deg=0.006)
    folds = geographic_folds(rgb, k=3, by="region", region_deg=0.006)
    seen = []
    for f in folds:
        assert not {groups[c] for c in f.train} & {groups[c] for c in f.val}
        seen += f.val
    assert sorted(seen) == sorted(rgb.names)
    with pytest.raises(InputError, match="group"):
        geographic_folds(rgb, k=3, by="utm")
    with pytest.raises(InputError, match="country"):
        cell_groups(rgb, "country")


def test_train_predict_offline_and_georeferenced(rgb, ms, yolo_env, tmp_path, cells_dir, polygons):
    from gee_mining.ml.detect.evaluate import cell_metrics, evaluate
    from gee_mining.ml.detect.offline import no_network
    from gee_mining.ml.detect.predict import merge_detections, predict_cells, write_detections
    from gee_mining.ml.detect.train import load_model, train

    attempts = []
    real_connect = socket.socket.connect

    def spy(self, address):
        if isinstance(address, tuple) and not str(address[0]).startswith("127.") and address[0] != "::1":
            attempts.append(address)
        return real_connect(self, address)

    socket.socket.connect = spy
    try:
        with no_network() as refused:
            results = {}
            for ds in (rgb, ms):
                r = train(ds.yaml, "yolo11n.yaml", out_dir=tmp_path / "runs", name=f"c{ds.spec.channels}",
                          epochs=1, batch=8, mosaic=0.0)  # fmt: skip
                assert r.best.is_file() and r.epochs == 1 and r.images_per_s > 0
                model = load_model(None, r.best)
                metrics = evaluate(model, ds.yaml)
                assert set(metrics) == {"map50", "map50_95", "precision", "recall"}
                dets = predict_cells(model, cells_dir, ds.spec, conf=0.0001)
                results[ds.spec.channels] = dets
            path = write_detections(merge_detections(results[3]), tmp_path / "det.geojson")
    finally:
        socket.socket.connect = real_connect
    assert refused == [] and attempts == []
    feats = json.loads(path.read_text())["features"]
    assert all({"cell", "score", "class_name"} <= set(f["properties"]) for f in feats)
    m = cell_metrics({"a": 0.9, "b": 0.1}, {"a": True, "b": False, "c": True}, conf=0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 0, 1, 1)


def test_boxes_map_back_to_the_right_place(rgb, polygons):
    """Label boxes mapped back to EPSG:4326 cover their polygon's visible part: checked with rasterio + pyproj."""
    import pyproj

    from gee_mining.ml.detect.predict import detection_from_box, merge_detections

    dets = []
    for c in rgb.cells:
        cell = rgb.raster(c["name"])
        with rasterio.open(c["source"]) as ds:
            tf = pyproj.Transformer.from_crs(ds.crs.to_epsg(), 4326, always_xy=True)
            for b in c["boxes"]:
                d = detection_from_box(cell, (b["x0"], b["y0"], b["x1"], b["y1"]), 0.9)
                # corners by rasterio (pixel edges: offset='ul') and pyproj
                rows, cols = [b["y0"], b["y0"], b["y1"], b["y1"]], [b["x0"], b["x1"], b["x1"], b["x0"]]
                xs, ys = rasterio.transform.xy(ds.transform, rows, cols, offset="ul")
                lon, lat = tf.transform(np.array(xs, float), np.array(ys, float))
                gb = d.geometry.bounds
                assert min(lon) == pytest.approx(gb[0], abs=2e-6) and max(lon) == pytest.approx(gb[2], abs=2e-6)
                assert min(lat) == pytest.approx(gb[1], abs=2e-6) and max(lat) == pytest.approx(gb[3], abs=2e-6)
                poly = polygons[b["polygon"]]
                frame = shapely.box(*d.geometry.bounds)
                # the polygon's visible part fills the box: IoU of the two bounding boxes close to 1
                vis = poly.intersection(shapely.box(*shapely.Polygon(
                    np.column_stack(tf.transform(*np.array(rasterio.transform.xy(
                        ds.transform, [0, 0, 64, 64], [0, 64, 64, 0], offset="ul"), float)))).bounds))  # fmt: skip
                a = shapely.box(*vis.bounds)
                iou = a.intersection(frame).area / a.union(frame).area
                assert iou > 0.98, (c["name"], iou)
                dets.append(d)
    assert len(dets) >= 4
    merged = merge_detections(dets)
    assert len(merged) < len(dets)  # a polygon cut by a cell edge gives boxes that touch across it
    assert any(len(m.cells) > 1 for m in merged)


def test_missing_weights_name_the_file(yolo_env, tmp_path, cells_dir):
    from gee_mining.ml.detect.predict import zero_shot
    from gee_mining.ml.detect.train import load_model

    with pytest.raises(InputError, match=r"yolov8s-worldv2\.pt.*never downloads"):
        zero_shot(tmp_path / "yolov8s-worldv2.pt", cells_dir)
    with pytest.raises(InputError, match=r"yolo11n\.pt"):
        load_model("yolo11n.pt")
    assert not (tmp_path / "yolov8s-worldv2.pt").exists()


def test_cli_dataset_and_demo_step(cells_dir, polygons_path, world, ee_local, engine_catalog, tmp_path, yolo_env):
    import argparse

    import gee_mining
    from gee_mining.cli.detect import add_cli
    from gee_mining.demo.context import DemoContext
    from gee_mining.demo.detect import demo_step
    from gee_mining.ml.detect import DatasetSpec, build_dataset, open_dataset
    from gee_mining.tools.report import Report
    from gee_mining.world import world_catalog_toml

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["detect", "dataset", "--cells", str(cells_dir), "--polygons", str(polygons_path),
                              "--out", str(tmp_path / "cli"), "--bands", "B8,B11,B12,B4", "--min-box-px", "3"])  # fmt: skip
    assert args.func(args) == 0
    ds = open_dataset(tmp_path / "cli")
    assert ds.spec.channels == 4 and ds.spec.min_box_px == 3 and len(ds.cells) == 16
    args = parser.parse_args(["detect", "patches", "--images", str(cells_dir), "--out", str(tmp_path / "pt"),
                              "--size", "32", "--stride", "32"])  # fmt: skip
    assert args.func(args) == 0 and len(list((tmp_path / "pt").glob("*.tif"))) == 16 * 4
    args = parser.parse_args(["detect", "patches", "--images", str(cells_dir), "--out", str(tmp_path / "pm"),
                              "--size", "32", "--stride", "32", "--polygons", str(polygons_path),
                              "--mine-stride", "16"])  # fmt: skip
    assert args.func(args) == 0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*no GEE_MINING_CELL tag")  # every patch carries its tag
        dense = build_dataset(tmp_path / "pm", polygons_path, tmp_path / "dm", DatasetSpec())
    offsets = {c["name"]: tuple(int(v) for v in c["name"].rsplit("_", 2)[1:]) for c in dense.cells}
    assert sum(1 for o in offsets.values() if o[0] % 32 == 0 and o[1] % 32 == 0) == 16 * 4  # every sparse window
    extra = [n for n, o in offsets.items() if o[0] % 32 or o[1] % 32]
    assert extra and all(dense.cell(n)["boxes"] for n in extra)  # dense windows only where a mine box is

    catalog = tmp_path / "catalog.toml"
    catalog.write_text(engine_catalog.read_text() + "\n" + world_catalog_toml(world.out_dir))
    gee_mining.connect("local", project="gee-mining-test", catalog=catalog)
    try:
        report = Report("t", "t")
        ctx = DemoContext(tmp_path / "demo", world, world.asset_ids["mines"], progress=lambda s: None)
        demo_step(ee_local, report, ctx)
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    s = ctx.summary["detect"]
    assert s["positive_cells"] >= 1 and s["negative_cells"] >= 1 and s["boxes"] >= 1
    assert "Object detection" in report.render()


def test_cut_patches_keep_pixels_and_georeference(cells_dir, polygons, tmp_path):
    """Patches equal numpy slices of the source, at the window's corner computed from the source's affine."""
    from gee_mining.ml.detect import DatasetSpec, build_dataset
    from gee_mining.ml.detect.dataset import cut_patches

    src = sorted(cells_dir.glob("*.tif"))[:2]
    with pytest.raises(InputError, match="smaller than the patch size"):
        cut_patches(src, tmp_path / "big", size=128)
    assert not (tmp_path / "big").exists() and not (tmp_path / "big.partial").exists()
    written = cut_patches(src, tmp_path / "p", size=32, stride=16, keep=lambda name, r: not name.endswith("_16_16"))
    assert len(written) == 2 * (9 - 1)
    for tif in src:
        with rasterio.open(tif) as ds:
            full, t, names = ds.read(), ds.transform, ds.descriptions
        for col in (0, 16, 32):
            for row in (0, 16, 32):
                path = tmp_path / "p" / f"{tif.stem}_{col}_{row}.tif"
                if (col, row) == (16, 16):
                    assert not path.exists()
                    continue
                with rasterio.open(path) as p:
                    np.testing.assert_array_equal(p.read(), full[:, row : row + 32, col : col + 32])
                    assert p.descriptions == names and (p.width, p.height) == (32, 32)
                    assert p.transform.c == pytest.approx(t.c + col * t.a) and p.transform.f == pytest.approx(
                        t.f + row * t.e
                    )
    for path in written:  # each patch tagged with its name, its source cell and the window's pixel offsets
        stem, col, row = path.stem.rsplit("_", 2)
        assert read_cell_tag(path) == {"name": path.stem, "parent": stem, "col_off": int(col), "row_off": int(row)}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*no GEE_MINING_CELL tag")  # named from their tags, not their file names
        ds = build_dataset(tmp_path / "p", polygons, tmp_path / "ds", DatasetSpec())
    assert sorted(c["name"] for c in ds.cells) == sorted(p.stem for p in written)


def test_stratified_split_balances_positives(rgb):
    from gee_mining.ml.detect.splits import cell_groups, geographic_folds, geographic_split

    groups = cell_groups(rgb, "region", region_deg=0.006)
    folds = geographic_folds(rgb, k=2, by="region", region_deg=0.006, stratify=True)
    n_pos = sum(bool(c["boxes"]) for c in rgb.cells)
    for f in folds:
        assert not {groups[c] for c in f.train} & {groups[c] for c in f.val}
        assert any(rgb.cell(c)["boxes"] for c in f.val) or n_pos < 2
    split = geographic_split(rgb, 0.5, by="region", region_deg=0.006, stratify=True)
    assert sorted(split.train + split.val) == sorted(rgb.names)
    assert not {groups[c] for c in split.train} & {groups[c] for c in split.val}


def test_label_iou_by_hand(tmp_path):
    """IoU of predicted and label boxes against values worked out by hand (overlap / union of rectangles)."""
    from gee_mining.ml.detect import DatasetSpec, DetectDataset
    from gee_mining.ml.detect.evaluate import iou_summary, label_iou
    from gee_mining.ml.detect.predict import Detection

    box = {"x0": 5.0, "y0": 0.0, "x1": 15.0, "y1": 10.0, "polygon": 7}
    ds = DetectDataset(tmp_path, DatasetSpec(), [{"name": "a", "boxes": [box]}, {"name": "b", "boxes": []}])

    def det(cell, b):
        return Detection(cell, 0.9, 0, "mine", b, 32721, None, None)

    m = label_iou([det("a", (0, 0, 10, 10)), det("a", (5, 0, 15, 10)), det("b", (0, 0, 4, 4))], ds)
    assert [r["iou"] for r in m] == pytest.approx([50 / 150, 1.0, 0.0])
    assert [r["polygon"] for r in m] == [7, 7, None]
    s = iou_summary(m)
    assert s["n"] == 3 and s["mean"] == pytest.approx((1 / 3 + 1) / 3) and s["share_ge_0.5"] == pytest.approx(1 / 3)


def test_a_cell_inside_a_large_open_pit_gets_a_box():
    """Issue 27 item 2: a 1375 m cell inside a 46 km2 pit sees 4 % of it; it is all mine, not background.

    The reference is shapely: the pit clipped to the cell's footprint, in pixels."""
    import pyproj

    from gee_mining.contracts.lattice import pixel_grid
    from gee_mining.ml.detect import DatasetSpec
    from gee_mining.ml.detect.dataset import CellRaster, cell_boxes

    row = {"epsg": 32719, "cell_size": 1375.0, "cell_x": 300, "cell_y": 5630}
    lattice = pixel_grid(row)  # 138 x 138 px
    x0, y0 = 300 * 1375.0, 5630 * 1375.0
    pit = shapely.box(x0 - 3000.3, y0 - 2500.7, x0 + 3800.1, y0 + 4264.9)  # 46.0 km2, covers the cell
    corner = shapely.box(
        x0 + 1100.2, y0 + 1100.4, x0 + 1500.6, y0 + 1500.8
    )  # 0.16 km2, half of it inside: kept by either rule
    to_ll = pyproj.Transformer.from_crs(32719, 4326, always_xy=True)
    ll = [shapely.transform(g, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1]))) for g in (pit, corner)]
    cell = CellRaster("pit", "pit.tif", lattice)
    boxes = cell_boxes(cell, ll, DatasetSpec())
    assert round(pit.area / 1e6) == 46
    footprint = lattice.outline()
    share_of_pit = pit.intersection(footprint).area / pit.area
    assert share_of_pit < 0.2  # the old rule (share of the polygon alone) dropped it
    by_polygon = {b.polygon: b for b in boxes}
    assert set(by_polygon) == {0, 1}
    got = by_polygon[0]
    assert (got.x0, got.y0) == pytest.approx((0, 0), abs=1e-6)
    assert (got.x1, got.y1) == pytest.approx((lattice.width, lattice.height), abs=1e-6)  # clipped to the image
    # a polygon seen at under min_visible of itself and of the cell stays out
    small = shapely.box(x0 + 1300.2, y0 + 1300.4, x0 + 1700.6, y0 + 1700.8)  # 0.16 km2, 4 % of it inside
    far = shapely.transform(small, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    assert small.intersection(footprint).area / small.area < 0.2
    assert cell_boxes(cell, [far], DatasetSpec()) == []

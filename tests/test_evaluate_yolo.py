"""YOLO measured out of sample (SIMULATED): how its boxes are scored against a held-out world's mines, how the
pyramid's YOLO detector picks the blocks it exports and the boxes it keeps, and which weights it accepts.

References: shapely (intersections and IoU computed here on the UTM geometries), pyproj for the reprojection,
scipy's ``binomtest`` for the interval, and hand counts. No training: the scoring is pure geometry on given boxes;
the detector's export of blocks runs in ``tests/test_pyramid.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pyproj
import pytest
import shapely
from scipy.stats import binomtest

from gee_mining.contracts.lattice import PixelGrid
from gee_mining.errors import InputError
from gee_mining.ml.detect.dataset import CellRaster
from gee_mining.ml.detect.predict import detection_from_box
from gee_mining.pyramid.detectors import boxes_on_cells, context_blocks
from gee_mining.pyramid.evaluate import EvaluationSpec, read_model_file, yolo_model
from gee_mining.pyramid.evaluate_yolo import (
    YoloEvaluationSpec,
    YoloWorldResult,
    pooled,
    recall_figures,
    score_world,
)
from gee_mining.tools.heldout_report import yolo_report

EPSG = 32721
X0, TOP = 561000.0, 9306000.0


def _to_lonlat(geom):
    tf = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


@pytest.fixture
def world(tmp_path):
    """A fake held-out world: three mine squares (UTM) written as the world's mines.geojson in EPSG:4326, and a
    3 x 1 tiling of 100 px patches (A holds mines 0 and 2, B mine 1, C none)."""
    mines_utm = {
        "0": shapely.box(X0 + 100, TOP - 300, X0 + 300, TOP - 100),  # in patch A
        "1": shapely.box(X0 + 1500, TOP - 500, X0 + 1700, TOP - 300),  # in patch B
        "2": shapely.box(X0 + 600, TOP - 900, X0 + 650, TOP - 850),  # in patch A, small
    }
    feats = [{"type": "Feature", "geometry": shapely.geometry.mapping(_to_lonlat(g)),
              "properties": {"id": k, "area_m2": g.area}} for k, g in mines_utm.items()]  # fmt: skip
    tables = tmp_path / "world" / "tables"
    tables.mkdir(parents=True)
    (tables / "mines.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    sim = SimpleNamespace(world=SimpleNamespace(out_dir=str(tmp_path / "world")), epsg=EPSG)
    patches = [CellRaster(n, "", PixelGrid(f"EPSG:{EPSG}", (10.0, 0.0, X0 + dx, 0.0, -10.0, TOP), 100, 100))
               for n, dx in (("A", 0.0), ("B", 1000.0), ("C", 2000.0))]  # fmt: skip
    return sim, mines_utm, patches


def test_boxes_are_scored_against_the_mines_by_shapely(world):
    sim, mines, patches = world
    a, b, c = patches
    boxes = [
        (a, (10, 10, 30, 30), 0.9),  # exactly mine 0 (pixels 10..30 = 100..300 m): touches and matches it
        (a, (28, 28, 60, 60), 0.5),  # a corner over mine 0: touches, IoU small
        (b, (0, 60, 20, 80), 0.7),  # no mine there (B's mine is elsewhere): a false box
        (a, (80, 0, 100, 20), 0.3),  # no mine: false, in patch A which holds mines
        (c, (50, 50, 70, 70), 0.4),  # no mine: false, in patch C which holds none
    ]
    dets = [detection_from_box(p, box, s) for p, box, s in boxes]
    ev = YoloEvaluationSpec((1, 2), (3,), min_iou=0.25)
    r = score_world(3, sim, dets, patches, ev)
    # independent: each box in UTM against each mine with shapely
    utm = [shapely.box(p.lattice.transform[2] + 10 * x0, TOP - 10 * y1, p.lattice.transform[2] + 10 * x1, TOP - 10 * y0)
           for p, (x0, y0, x1, y1), _ in boxes]  # fmt: skip
    touched = {k for k, g in mines.items() for u in utm if u.intersects(g)}
    iou = {k: max(shapely.intersection(u, g).area / shapely.union(u, g).area for u in utm) for k, g in mines.items()}
    assert touched == {"0"} and iou["0"] == pytest.approx(1.0, abs=1e-3)  # the hand-placed truth, checked
    assert (r.mines, r.detected, r.matched) == (3, len(touched), sum(v >= 0.25 for v in iou.values()))
    assert r.boxes == 5 and r.false_alarm_boxes == sum(not any(u.intersects(g) for g in mines.values()) for u in utm)
    outlines = {p.name: shapely.box(*p.lattice.bounds) for p in patches}
    boxed = {p.name for p, _, _ in boxes}
    assert r.false_alarm_patches == sum(not any(outlines[n].intersects(g) for g in mines.values()) for n in boxed) == 1
    assert r.area_km2 == pytest.approx(3 * 1.0)  # three 1 km patches
    assert r.mine_area_km2 == pytest.approx(sum(g.area for g in mines.values()) / 1e6, rel=1e-6)
    assert r.detected_ids == ["0"]
    figs = pooled([r], ev)
    ci = binomtest(1, 3).proportion_ci(confidence_level=0.95, method="exact")
    assert figs["recall"] == pytest.approx(1 / 3) and (figs["recall_ci_low"], figs["recall_ci_high"]) == pytest.approx(
        (ci.low, ci.high)
    )
    free = 3.0 - sum(g.area for g in mines.values()) / 1e6
    assert figs["false_alarms_per_1000km2"] == pytest.approx(1000 * 3 / free)
    assert figs["recall_by_size"][0]["mines"] == 3 and figs["recall_by_size"][0]["detected"] == 1


def test_a_box_matches_a_mine_only_with_enough_overlap(world):
    """A box half over mine 1: IoU with the square = 100*200 / (200*200 + 100*200 - 100*200)... computed by
    shapely; matched at min_iou 0.25, not at 0.6."""
    sim, mines, patches = world
    b = patches[1]
    det = detection_from_box(b, (60, 30, 80, 50), 0.8)  # x 1600..1800 m, y 300..500 m below the top
    box = shapely.box(X0 + 1600, TOP - 500, X0 + 1800, TOP - 300)
    expected = shapely.intersection(box, mines["1"]).area / shapely.union(box, mines["1"]).area
    assert expected == pytest.approx(1 / 3)
    for min_iou, matched in ((0.25, 1), (0.6, 0)):
        r = score_world(3, sim, [det], patches, YoloEvaluationSpec((1, 2), (3,), min_iou=min_iou))
        assert (r.detected, r.matched) == (1, matched)


def test_recall_figures_without_mines_are_none():
    figs = recall_figures(0, 0, 0)
    assert figs["recall"] is None and figs["recall_matched_ci_low"] is None
    ci = binomtest(190, 200).proportion_ci(confidence_level=0.95, method="exact")
    assert recall_figures(200, 190, 150)["recall_ci_low"] == pytest.approx(ci.low)


def test_context_blocks_hold_each_kept_cell_once():
    fine = 343.75
    cells = [{"name": f"c{i}_{j}", "epsg": EPSG, "cell_x": i, "cell_y": j, "cell_size": fine}
             for i, j in [(1632, 27072), (1633, 27072), (1636, 27073), (1632, 27075)]]  # fmt: skip
    blocks = context_blocks(cells, 1375.0)
    # by hand: 1375 m blocks hold 4 x 4 fine cells; cell_x // 4 and cell_y // 4
    assert sorted((b["cell_x"], b["cell_y"]) for b in blocks) == sorted({(i // 4, j // 4) for i, j in
                                                                           [(1632, 27072), (1633, 27072), (1636, 27073),
                                                                            (1632, 27075)]})  # fmt: skip
    for c in cells:
        square = shapely.box(c["cell_x"] * fine, c["cell_y"] * fine, (c["cell_x"] + 1) * fine, (c["cell_y"] + 1) * fine)
        holders = [b for b in blocks if shapely.box(b["cell_x"] * 1375, b["cell_y"] * 1375, (b["cell_x"] + 1) * 1375,
                                                    (b["cell_y"] + 1) * 1375).covers(square)]  # fmt: skip
        assert len(holders) == 1
    assert len({b["name"] for b in blocks}) == len(blocks)


def test_only_boxes_over_a_kept_cell_are_kept():
    fine = 343.75
    cell = {"name": "k", "epsg": EPSG, "cell_x": 1632, "cell_y": 27072, "cell_size": fine}
    x0, y0 = 1632 * fine, 27072 * fine
    block = CellRaster("blk", "", PixelGrid(f"EPSG:{EPSG}", (10.0, 0.0, x0, 0.0, -10.0, y0 + 1380), 138, 138))
    inside = detection_from_box(block, (5, 110, 15, 120), 0.9)  # x0+50 .. x0+150, y0+180 .. y0+280: in the cell
    touching_edge = detection_from_box(block, (34.375, 120, 40, 130), 0.9)  # starts on the cell's right edge
    far = detection_from_box(block, (80, 10, 100, 30), 0.9)
    kept = boxes_on_cells([inside, touching_edge, far], [cell])
    square = shapely.box(x0, y0, x0 + fine, y0 + fine)
    expected = [d for d in (inside, touching_edge, far) if shapely.intersection(d.crs_geometry, square).area > 0]
    assert kept == expected and len(kept) == 1


def test_pyramid_yolo_needs_weights_trained_on_other_worlds(tmp_path):
    with pytest.raises(InputError, match="--weights"):
        EvaluationSpec((1, 2), (3,), detector="yolo")
    with pytest.raises(InputError, match="detector"):
        EvaluationSpec((1, 2), (3,), weights="x.pt")
    with pytest.raises(InputError, match="yolo_model.json"):
        read_model_file(tmp_path / "nothing.pt")
    weights = tmp_path / "yolo" / "runs" / "train_worlds" / "weights" / "last.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not read here")
    record = {"weights": "elsewhere.pt", "train_seeds": [1, 2], "dataset_spec": {"bands": ["B4", "B3", "B2"]},
              "imgsz": 128, "conf": 0.25, "patch_px": 138}  # fmt: skip
    (tmp_path / "yolo_model.json").write_text(json.dumps(record))
    assert read_model_file(tmp_path / "yolo_model.json")["weights"] == "elsewhere.pt"
    assert read_model_file(weights)["weights"] == str(weights)  # the weights given, with the run's record
    assert yolo_model(EvaluationSpec((1, 2), (3, 4), detector="yolo", weights=str(weights)))["train_seeds"] == [1, 2]
    with pytest.raises(InputError, match=r"seed\(s\) \[2\]"):
        yolo_model(EvaluationSpec((1, 5), (2, 3), detector="yolo", weights=str(tmp_path / "yolo_model.json")))


def test_yolo_spec_checks_its_inputs():
    with pytest.raises(InputError, match="both train and test"):
        YoloEvaluationSpec((1, 2), (2,))
    with pytest.raises(InputError, match="imgsz"):
        YoloEvaluationSpec((1,), (2,), imgsz=100)
    with pytest.raises(InputError, match="bands"):
        YoloEvaluationSpec((1,), (2,), bands=("_mine",))
    assert YoloEvaluationSpec((1,), (2,)).train_seeds == (1,)  # one train world is enough for YOLO


def test_cli_evaluate_yolo_options_reach_the_spec(monkeypatch, tmp_path):
    import gee_mining.cli.evaluate as cli
    from gee_mining.cli.main import build_parser

    seen = {}

    def fake(out, spec, progress=None):  # records the spec; the evaluation itself is tested above and by hand
        seen["spec"] = spec
        return {"pooled": {"recall": 1.0}, "training": {"seconds": 1.0}}

    monkeypatch.setattr(cli, "evaluate_yolo", fake)
    monkeypatch.setattr(
        cli, "yolo_report", lambda out, doc, command: out / "report_yolo" / "report.html"
    )  # needs a full doc
    args = build_parser().parse_args(["evaluate", "yolo", "--train-seeds", "1,2", "--test-seeds", "4,5", "--out",
                                      str(tmp_path), "--epochs", "3", "--bands", "B4,B3,B2,B8", "--json"])  # fmt: skip
    assert args.func(args) == 0
    s = seen["spec"]
    assert (s.train_seeds, s.test_seeds, s.epochs, s.bands, s.realism) == ((1, 2), (4, 5), 3, ("B4", "B3", "B2", "B8"),
                                                                           "hard")  # fmt: skip
    args = build_parser().parse_args(["evaluate", "pyramid", "--train-seeds", "1,2", "--test-seeds", "4", "--out",
                                      str(tmp_path), "--detector", "yolo"])  # fmt: skip
    with pytest.raises(InputError, match="--weights"):
        args.func(args)


def test_a_self_touching_mine_still_gets_its_box():
    """A ring that crosses itself (as a ragged lon/lat outline can once reprojected) is repaired, not a crash: its
    box is the bounding box of shapely's repair inside the cell."""
    from gee_mining.ml.detect.dataset import DatasetSpec, cell_boxes

    cell = CellRaster("c", "", PixelGrid(f"EPSG:{EPSG}", (10.0, 0.0, X0, 0.0, -10.0, TOP), 100, 100))
    bowtie = shapely.Polygon([(X0 + 100, TOP - 100), (X0 + 500, TOP - 500), (X0 + 500, TOP - 100),
                              (X0 + 100, TOP - 500)])  # fmt: skip
    assert not bowtie.is_valid
    boxes = cell_boxes(cell, [bowtie], DatasetSpec(), src_epsg=EPSG)
    parts = shapely.get_parts(shapely.make_valid(bowtie))  # two triangles: one box per part
    expected = sorted(((x0 - X0) / 10, (TOP - y1) / 10, (x1 - X0) / 10, (TOP - y0) / 10)
                      for x0, y0, x1, y1 in (p.bounds for p in parts))  # fmt: skip
    assert len(parts) == 2
    np.testing.assert_allclose(sorted((b.x0, b.y0, b.x1, b.y1) for b in boxes), expected, atol=1e-6)


def test_the_yolo_report_shows_the_held_out_figures(tmp_path):
    """`evaluate yolo`'s report: the pooled row sums the worlds' counts, its intervals are scipy's exact binomial
    ones, the counting rule names the score and IoU, and the training patches' mAP is labelled in-sample."""
    ev = YoloEvaluationSpec((1, 2), (3, 4), conf=0.3, min_iou=0.4)
    worlds = [YoloWorldResult(3, 20, 9, 5, 64, 14, 6, 4, 121.9, 3.1, {"a": 0.01, "b": 0.3}, ["a"]),
              YoloWorldResult(4, 10, 6, 2, 64, 9, 3, 2, 121.9, 1.2, {"c": 2.0}, ["c"])]  # fmt: skip
    p = pooled(worlds, ev) | {"box_map50": 0.042, "box_map50_95": 0.01}
    doc = {"what": "YOLO trained on the train worlds' patches only, measured on the test worlds' patches",
           "protocol": {"train_seeds": [1, 2], "test_seeds": [3, 4],
                        "spec": {k: v for k, v in asdict(ev).items() if k not in ("train_seeds", "test_seeds")}},
           "training": {"epochs": 8, "train_images": 439, "seconds": 646.4, "in_sample_metrics": {"map50": 0.135}},
           "worlds": [w.as_json(ev) for w in worlds], "pooled": p, "seconds": 958.0}  # fmt: skip
    page = yolo_report(tmp_path, doc).read_text()
    rows = {r[0]: r[1:] for r in (re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>.*?</tr>", page))
            if r}  # fmt: skip
    ci = binomtest(15, 30).proportion_ci(confidence_level=0.95, method="exact")
    assert rows["pooled"][:2] == ["15/30", f"0.500 ({ci.low:.3f}-{ci.high:.3f})"]
    assert rows["world 3"][0] == "9/20" and rows["world 4"][3] == "3/9"
    assert rows["a mine is found when"] == ["a box scoring at least 0.3 touches it (matched: IoU at least 0.4)"]
    assert rows["mAP50 on its own training patches (in-sample, not a result)"] == ["0.135"]
    assert page.count("<img") == 1

"""The pyramid on a SIMULATED world with known mines: calibrated thresholds, recall against an exhaustive run of
the same detector at the finest level, the fine cells it saves, and its cost accounting.

The world: 11 km square, 1 month (6 scenes), 2 compact mine clusters, its composite exported once and served as an
image asset. Levels 2750 -> 1375 -> 687.5 -> 343.75 m (zoom 15-18): a scaled-down pyramid (the bench runs 22 km,
5500 -> 687.5 m). The detector is the pixel model thresholded into boxes (documented in
gee_mining/pyramid/detectors.py): a YOLO run over the 1024 finest cells of the exhaustive reference is too slow for
CI. ``test_yolo_detector_exports_the_surviving_cells_and_georeferences_its_boxes`` runs the YOLO detector itself
(an untrained yolo11n: the plumbing, not the accuracy, which bench/bench_detect.py measures) on a few surviving cells.

Independent references: numpy on ``computePixels`` of the same probability image (the cell scores), shapely on
the mine polygons read from the world's file (which mines touch which cells, which detections touch which mines),
and the grid step's own labels (zoom check).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely

from gee_mining.contracts.cells import GridSpec
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.errors import InputError
from gee_mining.pyramid import (
    PixelModelDetector,
    PyramidSpec,
    calibrate,
    descendants,
    run_exhaustive,
    run_pyramid,
    score_cells,
    start_cells,
    zoom_check,
)
from gee_mining.pyramid.core import score_collection
from gee_mining.pyramid.probability import fit_probability
from gee_mining.pyramid.world import prepare_simulated
from gee_mining.steps.grid import NO_METADATA, build_levels, ee_cell_geometry

LEVELS = ([2750, 1375, 687.5, 343.75], [15, 16, 17, 18])


@pytest.fixture(scope="module")
def sim(ee_local, engine_catalog, tmp_path_factory):
    import gee_mining

    setup = prepare_simulated(tmp_path_factory.mktemp("pyramid"), engine_catalog, size_km=11.04, clusters=2, seed=0)
    yield setup
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


@pytest.fixture(scope="module")
def model(ee_local, sim):
    ee = ee_local
    return fit_probability(ee, ee.Image(sim.composite_id), sim.region(ee), sim.mines_id, pixels=1000)


@pytest.fixture(scope="module")
def runs(ee_local, sim, model):
    ee = ee_local
    spec = PyramidSpec.of(*LEVELS)
    cells = start_cells(ee, sim.region(ee), spec.levels[0], sim.epsg)
    calibrated = calibrate(ee, model.image, spec, cells, sim.mines_id, target_recall=0.98)
    detector = PixelModelDetector(model.image, threshold=0.5, block=8)
    pyramid = run_pyramid(ee, model.image, calibrated, cells, detector, sim.mines_id)
    exhaustive = run_exhaustive(ee, calibrated, cells, detector, sim.mines_id)
    return cells, calibrated, pyramid, exhaustive


def mines_utm(sim) -> dict[str, shapely.Geometry]:
    import pyproj

    data = json.loads((Path(sim.world.out_dir) / "tables" / "mines.geojson").read_text())
    tf = pyproj.Transformer.from_crs(4326, sim.epsg, always_xy=True)
    return {
        str(f["properties"]["id"]): shapely.transform(
            shapely.geometry.shape(f["geometry"]), lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1]))
        )
        for f in data["features"]
    }


def square(row) -> shapely.Polygon:
    s = row["cell_size"]
    return shapely.box(row["cell_x"] * s, row["cell_y"] * s, (row["cell_x"] + 1) * s, (row["cell_y"] + 1) * s)


def test_pyramid_keeps_the_exhaustive_recall_on_10x_fewer_fine_cells(runs, sim):
    cells, spec, pyramid, exhaustive = runs
    assert len(cells) == 16 and all(t is not None and 0 < t <= 1 for t in spec.thresholds)
    fine_all = exhaustive.detector.cells
    assert fine_all == 16 * 4**3
    assert exhaustive.recall > 0.5, exhaustive.detected_mines  # the detector finds mines at all
    assert pyramid.recall >= 0.98 * exhaustive.recall, (pyramid.recall, exhaustive.recall, pyramid.dropped_at())
    ratio = fine_all / max(1, pyramid.detector.cells)
    assert ratio >= 10, (fine_all, pyramid.detector.cells)
    # every known mine lies in the world (shapely), and the engine's count of them agrees
    assert sorted(pyramid.known_mines) == sorted(exhaustive.known_mines) == sorted(mines_utm(sim))
    print(
        f"\nthresholds {spec.thresholds}; fine cells: pyramid {pyramid.detector.cells} vs exhaustive {fine_all} "
        f"({ratio:.1f}x fewer); recall pyramid {pyramid.recall:.3f} vs exhaustive {exhaustive.recall:.3f}"
    )


def test_cost_accounting_adds_up(runs):
    cells, spec, pyramid, exhaustive = runs
    levels = pyramid.levels
    assert levels[0].cells_evaluated == len(cells)
    for coarse, fine in zip(levels, levels[1:], strict=False):
        assert fine.cells_evaluated == 4 * coarse.cells_kept
    assert pyramid.detector.cells == levels[-1].cells_kept == pyramid.detector.patches_seen
    for lv, size in zip(levels, LEVELS[0], strict=True):
        n = size / lv.scale  # pixel centres in a cell: no masked pixel in this world
        assert lv.cells_evaluated * math.floor(n) ** 2 <= lv.pixels <= lv.cells_evaluated * math.ceil(n) ** 2
    lattices = [pixel_grid(r) for r in exhaustive.fine_cells]
    assert exhaustive.detector.pixels == sum(g.width * g.height for g in lattices)
    rows = pyramid.cost_rows()
    assert [r["cells evaluated"] for r in rows] == [lv.cells_evaluated for lv in levels] + [pyramid.detector.cells]
    # mines dropped by a level are no longer alive below it
    alive = len(pyramid.known_mines)
    for lv in levels:
        assert lv.mines_alive == alive - len(lv.mines_dropped)
        alive = lv.mines_alive


def test_scores_equal_numpy_on_computed_pixels(ee_local, sim, model):
    ee = ee_local
    spec = PyramidSpec.of(*LEVELS)
    cells = start_cells(ee, sim.region(ee), spec.levels[0], sim.epsg)[:3]
    scale = spec.scales[0]
    scores = score_cells(ee, model.image, cells, scale, 0.5, sim.mines_id)
    mines = mines_utm(sim)
    for row in cells:
        n = round(row["cell_size"] / scale)
        x0, y1 = row["cell_x"] * row["cell_size"], (row["cell_y"] + 1) * row["cell_size"]
        grid = {
            "dimensions": {"width": n, "height": n},
            "affineTransform": {"scaleX": scale, "shearX": 0, "translateX": x0, "shearY": 0, "scaleY": -scale,
                                "translateY": y1},
            "crsCode": f"EPSG:{sim.epsg}",
        }  # fmt: skip
        prob = ee.data.computePixels({"expression": model.image, "fileFormat": "NUMPY_NDARRAY", "grid": grid})
        prob = np.asarray(prob["probability"], dtype=float)
        got = scores[row["name"]]
        assert got["score"] == pytest.approx(float((prob > 0.5).mean()), abs=1e-9)
        assert got["pixels"] == n * n
        touching = sorted(k for k, g in mines.items() if g.intersects(square(row)))
        assert sorted(got["mines"]) == touching


def test_exported_scores_equal_interactive_ones_and_requests_are_bounded(ee_local, sim, model, monkeypatch):
    """A global run scores cells by batch export (``export_to``: one ``Export.table`` task per batch of cells,
    read back from storage, no interactive request); a small run interactively, in pages of ``PAGE_CELLS``
    cells, so no request grows with the run. On the 16 first-level cells of the simulated world, pages of 4
    cells: the same scores both ways, one export task, 4 pages whose requests and answers hold 4 cells."""
    import gee_mining
    from gee_mining.batch.batches import plan_batches
    from gee_mining.local.service.router import INTERACTIVE
    from gee_mining.pyramid import core

    ee = ee_local
    spec = PyramidSpec.of(*LEVELS)
    cells = start_cells(ee, sim.region(ee), spec.levels[0], sim.epsg)
    assert len(cells) == 16
    scale = spec.scales[0]
    router = gee_mining.current_connection().local_engine.router
    seen: list[tuple[int, int, int]] = []  # per request: cells in its graph, features answered, answer bytes
    feature_bytes: list[int] = []  # each answered cell's feature
    compute = ee.data.computeFeatures

    def spy(params):
        page = compute(params)
        request = json.dumps(ee.serializer.encode(params["expression"], for_cloud_api=True))
        feature_bytes.extend(len(json.dumps(f)) for f in page["features"])
        seen.append((request.count('"name"'), len(page["features"]), len(json.dumps(page))))
        return page

    monkeypatch.setattr(ee.data, "computeFeatures", spy)
    monkeypatch.setattr(core, "PAGE_CELLS", 4)
    interactive = score_cells(ee, model.image, cells, scale, 0.5, sim.mines_id)
    assert len(seen) >= 4 and all(n <= 4 for _, n, _ in seen)  # the engine may answer a page in parts
    assert max(b for _, _, b in seen) <= 4 * max(feature_bytes) + 100  # at most 4 cells' features
    assert sum(feature_bytes) > 3 * max(b for _, _, b in seen)  # where one answer of all 16 would be 4x that
    assert 4 <= max(r for r, _, _ in seen) <= 6, seen  # a request's graph holds one page of cells, not 16
    before = {k: router.calls[k] for k in INTERACTIVE}
    seen.clear()
    exported = score_cells(ee, model.image, cells, scale, 0.5, sim.mines_id, export_to="gs://scores/z16")
    assert {k: router.calls[k] for k in INTERACTIVE} == before and not seen  # no interactive request
    assert exported == interactive and len(exported) == 16
    assert len({v["score"] for v in exported.values()}) > 8  # scores that differ between cells
    assert 0 < sum(bool(v["mines"]) for v in exported.values()) < 16  # known mines touch some cells, not all
    ops = [o for o in ee.data.listOperations() if o["metadata"]["type"] == "EXPORT_FEATURES"
           and o["metadata"]["description"].startswith("scores-")]  # fmt: skip
    assert len(ops) == len(plan_batches(cells)) == 1


def test_negatives_stay_negative_across_levels(ee_local, runs, sim):
    """No cell below a dropped cell is ever evaluated; and on a subset of the mines (one cluster) at two other zoom
    levels, no coarse negative of the grid holds a fine positive."""
    cells, spec, pyramid, _ = runs
    for i in range(1, len(spec.levels)):
        evaluated = {(r["cell_x"], r["cell_y"]) for r in pyramid.kept[i] + pyramid.dropped[i]}
        dropped_above = {(r["cell_x"], r["cell_y"]) for r in pyramid.dropped[i - 1]}
        assert not {(x // 2, y // 2) for x, y in evaluated} & dropped_above
    ee = ee_local
    mines = mines_utm(sim)
    first = min(mines, key=int)
    cluster = [k for k, g in mines.items() if g.distance(mines[first]) < 2000]
    subset = ee.FeatureCollection(sim.mines_id).filter(ee.Filter.inList("id", [int(k) for k in cluster]))
    coarse, fine = build_levels(ee, subset, [GridSpec.of(1375), GridSpec.of(687.5, 17)], metadata=NO_METADATA)
    check = zoom_check(coarse, fine)
    assert check.ok, check.broken
    # the reference: a fine negative inside a coarse positive is a negative next to a mine (shapely agrees)
    union = shapely.union_all([mines[k] for k in cluster])
    for _parent, child in check.fine_negatives_in_coarse_positives:
        row = next(r for r in fine.rows if r["name"] == child)
        assert not square(row).intersects(union)
    # a coarse negative holding a fine positive is caught
    coarse.rows = [dict(r, label=0) if r["label"] == 1 else r for r in coarse.rows]
    assert not zoom_check(coarse, fine).ok


def test_detections_touch_the_mines_they_are_counted_for(runs, sim):
    _, _, pyramid, _ = runs
    import pyproj

    mines = mines_utm(sim)
    tf = pyproj.Transformer.from_crs(sim.epsg, 4326, always_xy=True)
    found = set()
    for d in pyramid.detections:
        local = shapely.transform(d.crs_geometry, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        assert local.equals_exact(d.geometry, 1e-6) or local.buffer(1e-7).contains(d.geometry.centroid)
        found |= {k for k, g in mines.items() if g.intersects(d.crs_geometry)}
    assert sorted(found) == pyramid.detected_mines


def test_block_fetch_gives_the_per_cell_pixels(ee_local, sim, model, tmp_path):
    import rasterio

    ee = ee_local
    spec = PyramidSpec.of(*LEVELS)
    fine = descendants(start_cells(ee, sim.region(ee), spec.levels[0], sim.epsg)[:1], spec.levels)[:6]
    one = PixelModelDetector(model.image, folder=tmp_path / "one").detect(ee, fine)
    block = PixelModelDetector(model.image, folder=tmp_path / "block", block=8).detect(ee, fine)
    assert [p.name for p in one.files] == [p.name for p in block.files]
    for a, b in zip(one.files, block.files, strict=True):
        with rasterio.open(a) as da, rasterio.open(b) as db:
            assert da.transform == db.transform and da.crs == db.crs
            np.testing.assert_array_equal(da.read(), db.read())
    assert len(one.detections) == len(block.detections)


def test_graphs_use_only_earth_engine_algorithms(ee_local, sim, model):
    from test_grid import graph_algorithms

    from gee_mining.contracts.signatures import signatures

    ee = ee_local
    spec = PyramidSpec.of(*LEVELS)
    row = {"name": "c", "epsg": sim.epsg, "cell_x": 204, "cell_y": 3380, "cell_size": 2750.0}
    region = sim.region(ee)
    graph = ee.List([
        score_collection(ee, model.image, [row], spec.scales[0], 0.5, sim.mines_id),
        region.coveringGrid(ee.Projection(f"EPSG:{sim.epsg}").atScale(2750)).map(
            lambda c: c.set("inside", region.contains(c.geometry(), 1, ee.Projection(f"EPSG:{sim.epsg}")))
        ),
        ee_cell_geometry(ee, row),
    ])  # fmt: skip
    used = graph_algorithms(ee, graph)
    assert used and used <= set(signatures()), used - set(signatures())


def test_input_errors_are_clear():
    with pytest.raises(InputError, match="nesting"):
        PyramidSpec.of([5500, 1375])
    with pytest.raises(InputError, match="share of pixels"):
        PyramidSpec.of([5500, 2750], thresholds=[0.1, 2.0])
    with pytest.raises(InputError, match="one per level"):
        PyramidSpec.of([5500, 2750], thresholds=[0.1])
    with pytest.raises(InputError, match="zoom label"):
        PyramidSpec.of([44000, 22000])


def test_cli_plan_counts_cells_of_the_real_polygons(capsys):
    """The plan's level-0 count is the land over the cell area; the cells with mines at each level equal
    shapely's count of grid squares touching the polygons (reprojected to each polygon's UTM zone)."""
    from conftest import shared_file

    from gee_mining.cli.main import main
    from gee_mining.pyramid.plan import LAND_KM2

    path = shared_file("polygons/mining_tropics_demo.gpkg")
    assert (
        main(["pyramid", "plan", "--polygons", str(path), "--levels", "44000,22000", "--zooms", "11,12", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    first, second = out["levels"][0], out["levels"][1]
    assert first["cells evaluated"] == math.ceil(LAND_KM2 * 1e6 / 44000**2)
    assert second["cells evaluated"] == 4 * first["cells kept"]
    import pyogrio
    import pyproj

    _, _, wkb, _ = pyogrio.raw.read(path)
    for level, size in ((first, 44000), (second, 22000)):
        cells = set()
        for g in shapely.from_wkb(wkb):
            c = g.centroid
            epsg = (32600 if c.y >= 0 else 32700) + min(60, int((c.x + 180) // 6) + 1)
            tf = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
            u = shapely.transform(
                shapely.segmentize(g, 0.01), lambda xy, tf=tf: np.column_stack(tf.transform(xy[:, 0], xy[:, 1]))
            )
            x0, y0, x1, y1 = u.bounds
            for i in range(int(x0 // size), int(x1 // size) + 1):
                for j in range(int(y0 // size), int(y1 // size) + 1):
                    if shapely.box(i * size, j * size, (i + 1) * size, (j + 1) * size).intersects(u):
                        cells.add((epsg, i, j))
        assert abs(level["cells with mines"] - len(cells)) <= max(1, 0.01 * len(cells))


def test_yolo_detector_exports_the_surviving_cells_and_georeferences_its_boxes(ee_local, runs, sim, tmp_path):
    """The fine level's YOLO detector on 3 cells the pyramid kept: one export per cell (the served composite on
    the cell's 10 m lattice, checked with rasterio), the cost counted, and every box inside its cell, its
    EPSG:4326 polygon the reprojection of its box in the cell's CRS (pyproj)."""
    import pyproj
    import rasterio

    import gee_mining
    from gee_mining.ml.detect.dataset import DatasetSpec
    from gee_mining.ml.detect.train import load_model
    from gee_mining.pyramid import YoloDetector

    ee = ee_local
    _, _, pyramid, _ = runs
    cells = pyramid.fine_cells[:3]
    # an earlier test's CLI may have moved ``ee`` back to the session engine: serve the world's composite again
    gee_mining.connect("local", project="gee-mining-pyramid", catalog=sim.catalog, storage_root=tmp_path / "st")
    detector = YoloDetector(load_model("yolo11n.yaml"), DatasetSpec(), image=ee.Image(sim.composite_id),
                            destination="gs://gee-mining-test/yolo", conf=1e-4, folder=tmp_path)  # fmt: skip
    run = detector.detect(ee, cells)
    assert run.cost.cells == 3 and len(run.files) == 3
    for r, path in zip(cells, sorted(run.files, key=lambda p: [c["name"] for c in cells].index(p.stem)), strict=True):
        grid = pixel_grid(r)
        with rasterio.open(path) as ds:
            assert (ds.width, ds.height, ds.count) == (grid.width, grid.height, 12)
            assert tuple(ds.transform)[:6] == grid.transform
    assert run.detections, "an untrained model at conf 1e-4 still proposes boxes"
    by_name = {r["name"]: r for r in cells}
    to_lonlat = pyproj.Transformer.from_crs(sim.epsg, 4326, always_xy=True)
    for det in run.detections:
        lattice = shapely.box(*pixel_grid(by_name[det.cell]).bounds)  # the cell, or at most a pixel beyond it
        assert lattice.covers(det.crs_geometry) and det.epsg == sim.epsg
        ring = np.asarray(det.crs_geometry.exterior.coords)
        lon, lat = to_lonlat.transform(ring[:, 0], ring[:, 1])
        corners = shapely.Polygon(np.column_stack([lon, lat]))  # the detector densifies edges; corners suffice here
        assert corners.symmetric_difference(det.geometry).area < 1e-4 * det.geometry.area
    # with context: each cell's 1375 m block exported once (138 px, the training patch), boxes kept over a kept cell
    from gee_mining.pyramid.detectors import context_blocks

    detector.context, detector.folder = 1375.0, tmp_path / "context"
    run = detector.detect(ee, cells)
    blocks = {b["name"]: b for b in context_blocks(cells, 1375.0)}
    assert run.cost.patches_exported == len(blocks) == len(run.files) and run.cost.cells == 3
    assert run.cost.pixels == len(blocks) * 138 * 138
    for path in run.files:
        with rasterio.open(path) as ds:
            assert (ds.width, ds.height) == (138, 138)
            assert tuple(ds.transform)[:6] == pixel_grid(blocks[path.stem]).transform
    squares = [shapely.box(*(v * r["cell_size"] for v in (r["cell_x"], r["cell_y"], r["cell_x"] + 1, r["cell_y"] + 1)))
               for r in cells]  # fmt: skip
    assert run.detections, "an untrained model at conf 1e-4 still proposes boxes over the kept cells"
    assert all(max(shapely.intersection(d.crs_geometry, q).area for q in squares) > 0 for d in run.detections)


def test_known_polygons_are_filtered_server_side(ee_local, monkeypatch):
    """``known_polygons`` asks the engine for the wanted polygons only (numeric ids given as text, as the
    scores give them): 3 features cross, not the table's 100; each equals the polygon read from the file
    with pyogrio; an id the table lacks is left out."""
    import pyogrio
    from conftest import shared_file

    from gee_mining.pyramid.core import known_polygons

    ee = ee_local
    frame = pyogrio.read_dataframe(shared_file("polygons/mining_tropics_demo.gpkg"))
    crossed = []
    real = ee.data.computeFeatures

    def observing(params):  # counts the features each answer carries; changes nothing
        page = real(params)
        crossed.append(len(page.get("features", [])))
        return page

    monkeypatch.setattr(ee.data, "computeFeatures", observing)
    got = known_polygons(
        ee, "projects/gee-mining-test/assets/mining_tropics_demo", "id", ["3818", "4688", "12499", "99999999"]
    )
    assert sorted(got) == ["12499", "3818", "4688"] and sum(crossed) == 3 < len(frame)
    for key, shape in got.items():
        want = frame.loc[frame["id"] == int(key), "geometry"].iloc[0]
        assert shapely.symmetric_difference(shape, want).area <= 1e-9 * want.area

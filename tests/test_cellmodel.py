"""The learned fine-cell score (pyramid.cellmodel): its per-cell features against numpy and scipy on the real L1C
crop, its labels against shapely, and the server-side score against the same classifier applied to the features
read back."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from test_context import BANDS, L1C, l1c_crop  # noqa: F401  (the fixture)

from gee_mining.cli.evaluate import pyramid_spec
from gee_mining.cli.main import build_parser
from gee_mining.errors import InputError
from gee_mining.pyramid import cellmodel as cm
from gee_mining.steps.context import context_image, context_names

CELLS = [(965, 16930), (970, 16928), (990, 16932), (1000, 16925)]


def test_overlap_labels_follow_shapely():
    """A mine's main cells (holding at least ``cut`` of its largest overlap) are positives, cells of no mine
    negatives, a sliver of a mine neither; the overlaps here are shapely's."""
    mine = shapely.box(90, 0, 300, 100)
    cells = [shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100), shapely.box(200, 0, 290, 100),
             shapely.box(400, 0, 500, 100)]  # fmt: skip
    rows = [{"mines": ["a"] if c.intersects(mine) else [], "overlaps": [c.intersection(mine).area]
             if c.intersects(mine) else []} for c in cells]  # fmt: skip
    assert cm.overlap_labels(rows, 0.5) == [None, 1, 1, 0]  # 1,000 m2 of 10,000 is a sliver; 9,000 is main
    assert cm.overlap_labels(rows, 0.95) == [None, 1, None, 0]
    with pytest.raises(InputError, match="label_cut"):
        cm.CellModelSpec(label_cut=0)


def test_cell_features_equal_numpy(ee_local, l1c_crop):  # noqa: F811
    """Each feature of a 343.75 m cell scored at 343.75 / 32 m: shares above the thresholds, mean and max
    probability, the island share (kernel 3 pixels), context means and their means over the mine pixels, against
    numpy/scipy on the same pixels; the mines it touches and their overlaps against shapely. Then the server-side
    score (features and classifier in one graph) equals the classifier applied to the features read back."""
    ndimage = pytest.importorskip("scipy.ndimage")
    from gee_mining.contracts.cells import GridSpec, cell_row

    ee = ee_local
    probability = ee.Image(L1C).normalizedDifference(["B8", "B4"]).unitScale(-0.1, 0.5).rename("probability")
    ctx_image = context_image(ee.Image(L1C).select(BANDS), radii=[20, 60])
    scale = 343.75 / 32
    spec = cm.CellModelSpec(island_m=3 * scale, trees=5, min_leaf=1)
    context = cm.context_bands(spec, context_names(BANDS, [20, 60]))
    assert "B11_sd_20m" in context and "NDVI_max" not in context  # a one-season composite: no greenest NDVI
    rows = [cell_row(32633, x, y, GridSpec.of(343.75, 18)) for x, y in CELLS]
    mine = ee.Geometry.Rectangle([rows[0]["cell_x"] * 343.75 + 200, rows[0]["cell_y"] * 343.75 + 100,
                                  rows[0]["cell_x"] * 343.75 + 300, rows[0]["cell_y"] * 343.75 + 200],
                                 ee.Projection("EPSG:32633"), False)  # fmt: skip
    polygons = ee.FeatureCollection([ee.Feature(mine, {"id": "m1"})])
    got = cm.cell_features(ee, probability, ctx_image, rows, scale, spec, context, polygons)
    for row in rows:
        x0, y1 = row["cell_x"] * 343.75 - 3 * scale, (row["cell_y"] + 1) * 343.75 + 3 * scale
        grid = {"dimensions": {"width": 38, "height": 38}, "crsCode": "EPSG:32633",
                "affineTransform": {"scaleX": scale, "shearX": 0, "translateX": x0, "shearY": 0, "scaleY": -scale,
                                    "translateY": y1}}  # fmt: skip
        px = ee.data.computePixels({"expression": probability.addBands(ctx_image.select(context)),
                                    "fileFormat": "NUMPY_NDARRAY", "grid": grid})  # fmt: skip
        p = np.asarray(px["probability"], dtype=float)
        hits = (p > 0.5).astype(float)
        inner, hit = p[3:-3, 3:-3], hits[3:-3, 3:-3]
        around = ndimage.uniform_filter(hits, size=7, mode="constant")[3:-3, 3:-3]
        f = got[row["name"]]
        for t in spec.thresholds:
            assert f[f"share_{round(t * 100):02d}"] == pytest.approx(float((inner > t).mean()), abs=1e-9)
        assert f["p_mean"] == pytest.approx(inner.mean(), rel=1e-5)
        assert f["p_max"] == pytest.approx(inner.max(), rel=1e-5)
        assert f["island"] == pytest.approx(float(((hit > 0) & (around < 0.3 - 1e-9)).mean()), abs=1e-9)
        for b in context:
            v = np.asarray(px[b], dtype=float)[3:-3, 3:-3]
            assert f[b] == pytest.approx(v.mean(), rel=1e-4, abs=1e-6)
            want = (v * hit).sum() / hit.sum() if hit.sum() else 0.0
            assert f[f"{b}_hit"] == pytest.approx(want, rel=1e-4, abs=1e-6)
        assert f["mines"] == (["m1"] if row is rows[0] else [])
    assert got[rows[0]["name"]]["overlaps"] == [
        pytest.approx(shapely.box(0, 0, 100, 100).area, rel=1e-3)
    ]  # 100 m x 100 m
    names = cm.feature_names(spec, context)
    hits_share = [got[r["name"]]["share_50"] for r in rows]
    assert 0 < min(hits_share) < max(hits_share) < 1  # cells differ: the features are not constant
    labels = [int(s >= sorted(hits_share)[1]) for s in hits_share]  # both classes
    model = cm.train(ee, [got[r["name"]] | {"name": r["name"]} for r in rows], labels, spec, names)
    table = cm.classify_rows(ee, model, [got[r["name"]] | {"name": r["name"]} for r in rows])
    server = cm.score_rows(ee, model, probability, ctx_image, rows, scale)
    assert {n: s["score"] for n, s in server.items()} == pytest.approx(table, abs=1e-9)
    assert len(set(table.values())) > 1  # the classifier tells the cells apart
    assert all(s["pixels"] == 32 * 32 for s in server.values())


def test_a_cell_model_is_refused_where_it_cannot_run():
    """A cell model must be trained (by the calibration) before a run, reads the world's context image, scores
    interactively only, sits on the last level alone, and needs the forest screening's context image."""
    from gee_mining.pyramid.core import IslandScore, PyramidSpec, _check_cell_model
    from gee_mining.pyramid.evaluate import EvaluationSpec

    with pytest.raises(InputError, match="CellModelSpec"):
        PyramidSpec.of([687.5, 343.75], [17, 18], cell_model="forest")
    with pytest.raises(InputError, match="both an island score and a cell model"):
        PyramidSpec.of([687.5, 343.75], [17, 18], islands=(None, IslandScore()), cell_model=cm.CellModelSpec())
    untrained = PyramidSpec.of([687.5, 343.75], [17, 18], cell_model=cm.CellModelSpec())
    with pytest.raises(InputError, match="not trained"):
        _check_cell_model(untrained, object(), None)
    trained = PyramidSpec.of([687.5, 343.75], [17, 18], cell_model=cm.CellModel(cm.CellModelSpec(), ("p_mean",), None))
    with pytest.raises(InputError, match="context image"):
        _check_cell_model(trained, None, None)
    with pytest.raises(InputError, match="interactively"):
        _check_cell_model(trained, object(), "gs://b/p")
    assert EvaluationSpec((1, 2), (3,), cell_model=True).pyramid_spec().cell_model == cm.CellModelSpec()
    assert EvaluationSpec((1, 2), (3,)).pyramid_spec().cell_model is None  # the share unless asked
    islands = EvaluationSpec((1, 2), (3,), cell_model=True, island_weight=10).pyramid_spec().islands
    assert islands[-2] is not None and islands[-1] is None  # the cell model reads the island share itself
    with pytest.raises(InputError, match="--screening forest"):
        EvaluationSpec((1, 2), (3,), cell_model=True, screening="logistic")


def test_cell_keep_option_sets_the_fine_threshold_share_and_is_refused_out_of_range(capsys):
    """``evaluate pyramid --cell-keep K`` is ``CellModelSpec.keep``; outside (0, 1], without ``--cell-model`` or not
    a number it is refused by name."""
    base = ["evaluate", "pyramid", "--train-seeds", "1,2", "--test-seeds", "3", "--out", "o", "--cell-model"]
    assert pyramid_spec(build_parser().parse_args(base)).pyramid_spec().cell_model.keep == 0.98  # the default
    spec = pyramid_spec(build_parser().parse_args([*base, "--cell-keep", "0.995"])).pyramid_spec()
    assert spec.cell_model.keep == 0.995 and spec.cell_model.trees == cm.CellModelSpec().trees
    for bad in (["--cell-keep", "0"], ["--cell-keep", "1.5"]):
        with pytest.raises(InputError, match=r"--cell-keep\).*\(0, 1\]"):
            pyramid_spec(build_parser().parse_args([*base, *bad]))
    with pytest.raises(InputError, match="--cell-model"):
        pyramid_spec(build_parser().parse_args([*base[:-1], "--cell-keep", "0.99"]))
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--cell-keep", "most"])
    assert "--cell-keep" in capsys.readouterr().err


def test_pages_follow_band_pixels_not_a_fixed_count_of_cells():
    """A page holds PAGE_CELLS fine cells at the seasonal worlds' 40 bands and 64 x 64 pixels; half the pixel size
    (4x the pixels) or twice the bands make it smaller in proportion; a cell larger than the bound is a page alone.
    Pages never mix UTM zones."""
    fine = 343.75
    assert cm.page_cells(fine, fine / 64, 40) == cm.PAGE_CELLS == 500
    assert cm.page_cells(fine, fine / 64, 20) == 500  # fewer bands: not more than PAGE_CELLS
    assert cm.page_cells(fine, fine / 128, 40) == 500 // 4
    assert cm.page_cells(fine, fine / 64, 80) == 500 // 2
    assert cm.page_cells(fine * 64, 1.0, 40) == 1
    spec = cm.CellModelSpec()
    assert cm._image_bands(spec, cm.CELL_CONTEXT) == 40  # the feature image of the seasonal worlds
    rows = [{"epsg": 32633 + i % 2, "name": str(i)} for i in range(7)]
    pages = list(cm._pages(rows, 2))
    assert [len(p) for p in pages] == [2, 2, 2, 1] and all(len({r["epsg"] for r in p}) == 1 for p in pages)
    assert sorted(r["name"] for p in pages for r in p) == sorted(r["name"] for r in rows)

"""``evaluate study`` / ``evaluate classify``: pixel models chosen on train worlds, measured on held-out worlds
(SIMULATED) and on the real mine-free scenes.

References are independent: scipy's exact binomial interval, hand-computed rates, scikit-learn's ``lasso_path`` on
``StandardScaler`` features for the LASSO entry order, numpy's correlation of ranks for Spearman, and for the
engine's counts the world's own files read with rasterio (composite, truth raster) and its mine polygons
rasterised with rasterio from the GeoJSON (pyproj to UTM). Worlds are tiny (2.76 km, one mine cluster).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import ee
import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.features
import shapely
from scipy.stats import binomtest
from sklearn.linear_model import lasso_path
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from gee_mining.contracts.models import LinearModel
from gee_mining.errors import InputError
from gee_mining.io.catalog import find_shared_data, imagery_entries
from gee_mining.ml.classify import DEFAULT_FEATURES, ClassifySpec, accuracy, compile_linear, train
from gee_mining.tools import heldout as H
from gee_mining.tools.heldout import HeldoutSpec, spec_json
from gee_mining.tools.heldout_classify import CANDIDATES, constant_samples, evaluate_classify
from gee_mining.tools.heldout_report import EVIDENCE, _pooled_rows, _save, run_summary, screening
from gee_mining.tools.heldout_study import entry_order, evaluate_study, ranking_stability
from gee_mining.tools.report import Report
from tests.conftest import shared_file

SPEC = dict(size_km=2.76, clusters=1, pixels=60)


def test_spec_refuses_shared_seeds_and_a_single_train_world():
    with pytest.raises(InputError, match="both train and test"):
        H.HeldoutSpec((1, 2), (2, 3))
    with pytest.raises(InputError, match="at least two"):
        H.HeldoutSpec((1,), (2,))
    with pytest.raises(InputError, match="min_mine_share"):
        H.HeldoutSpec((1, 2), (3,), min_mine_share=0)


@pytest.mark.parametrize("target", ["study", "classify"])
def test_cli_refuses_a_single_train_world_in_one_line(target, tmp_path, capsys):
    from gee_mining.cli.main import main

    code = main(["evaluate", target, "--train-seeds", "1", "--test-seeds", "2", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code != 0 and "at least two" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # nothing written before the inputs are checked


def test_figures_against_hand_computation():
    spec = H.HeldoutSpec((1, 2), (3,), mine_share=0.01)
    c = {"pixels": 10_000, "mine_pixels": 400, "detected_pixels": 300, "false_alarm_pixels": 960, "bare_pixels": 200,
         "bare_flagged": 50, "mines": 7, "detected": 3, "area_km2": 1.0, "mine_area_km2": 0.04, "fine_cells": 9}  # fmt: skip
    f = H.figures(c, spec)
    ci = binomtest(3, 7).proportion_ci(confidence_level=0.95, method="exact")
    assert (f["recall"], f["recall_ci_low"], f["recall_ci_high"]) == pytest.approx((3 / 7, ci.low, ci.high))
    ci = binomtest(300, 400).proportion_ci(confidence_level=0.95, method="exact")
    assert (f["pixel_recall_ci_low"], f["pixel_recall_ci_high"]) == pytest.approx((ci.low, ci.high))
    assert f["false_alarms_per_1000km2"] == pytest.approx(1000 * 960 / 0.96)
    assert f["false_alarm_km2_per_1000km2"] == pytest.approx(1000 * 960 * 100 / 1e6 / 0.96)
    assert f["natural_bare_called_mine"] == pytest.approx(0.25)
    t, fa = 300 / 0.04 * 0.01, 960 / 0.96 * 0.99  # flagged pixels per km2 of mine and of mine-free land
    assert f["precision_at_mine_share"] == pytest.approx(t / (t + fa))


def test_entry_order_matches_scikit_learn():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 5)) * [1, 5, 0.2, 1, 3]  # unequal scales: the order is of standardised features
    y = 3 * X[:, 3] + 2 * X[:, 1] / 5 + 1 * X[:, 4] / 3 + rng.normal(0, 0.5, 400)
    Z = StandardScaler().fit_transform(X)
    alphas, coefs, _ = lasso_path(Z, y - y.mean(), alphas=200)
    first = [np.flatnonzero(coefs[j])[0] if coefs[j].any() else 10**6 for j in range(5)]
    expected = [f"f{j}" for j in sorted(range(5), key=lambda j: (first[j], j))]
    order = entry_order(X, y, [f"f{j}" for j in range(5)])
    assert order[:3] == expected[:3] == ["f3", "f1", "f4"]


def test_ranking_stability_against_numpy():
    orders = {
        "a": ["x", "y", "z", "w"],
        "b": ["y", "x", "w", "z"],
        "c": ["x", "z", "y", "w"],
        "pooled": ["x", "y", "z", "w"],
    }
    st = ranking_stability(orders, top_k=2)
    rank = {w: np.array([o.index(f) for f in orders["a"]]) for w, o in orders.items()}
    expected = [np.corrcoef(rank[a], rank[b])[0, 1] for a, b in (("a", "b"), ("a", "c"), ("b", "c"))]
    assert [p["spearman"] for p in st["pairs"]] == pytest.approx(expected)
    assert st["spearman_mean"] == pytest.approx(np.mean(expected))
    share = {r["feature"]: r["top_k_share"] for r in st["features"]}
    assert share == pytest.approx({"x": 1.0, "y": 2 / 3, "z": 1 / 3, "w": 0.0})  # "pooled" is not a world
    assert st["top_k_always"] == ["x"]


def test_real_false_alarms_match_numpy_on_a_bigearthnet_patch(ee_local):
    folder = shared_file("imagery/bigearthnet_s2_l2a/S2A_MSIL2A_20170613T101031_87_48")
    (sid,) = [e.fields["id"] for e in imagery_entries(find_shared_data()) if e.fields["id"].endswith("_87_48")]
    model = LinearModel("lasso", ["ND_B8_B4"], [0.0], [1.0], [-1.0], 0.3, 0.0, "binary")  # flag: NDVI < 0.3
    worlds = H.Worlds({}, {}, {}, [sid])
    models = {
        "low_ndvi": lambda img: compile_linear(model, img).select("mine"),
        "high_ndvi": lambda img: compile_linear(model, img).select("mine").Not(),
    }  # one request, two bands
    real = H.real_false_alarms(models, worlds, lambda m: None)
    with rasterio.open(next(folder.glob("*_B04.tif"))) as r4, rasterio.open(next(folder.glob("*_B08.tif"))) as r8:
        b4, b8 = r4.read(1).astype(float), r8.read(1).astype(float)
    share = float(np.mean((b8 - b4) / (b8 + b4) < 0.3))
    (scene,) = real["scenes"]
    assert real["available"] and 0 < share < 1
    assert scene["low_ndvi"]["flagged_share"] == pytest.approx(share, abs=1e-9)
    assert scene["low_ndvi"]["flagged_pixels_per_km2"] == pytest.approx(share * 1e4)
    assert scene["high_ndvi"]["flagged_share"] == pytest.approx(1 - share, abs=1e-9)


# -- on tiny worlds ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(ee_local, engine_catalog, tmp_path_factory):
    import gee_mining

    out = tmp_path_factory.mktemp("heldout")
    spec = H.HeldoutSpec((2, 3), (1,), real_data=False, **SPEC)  # seed 1 holds natural bare ground
    report = evaluate_study(out, spec)
    yield out, spec, report
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


@pytest.mark.slow
def test_study_trains_on_train_worlds_only_and_reports_held_out_ones(study):
    out, spec, report = study
    assert report["protocol"]["train_seeds"] == [2, 3] and report["protocol"]["test_seeds"] == [1]
    assert not set(report["protocol"]["train_seeds"]) & set(report["protocol"]["test_seeds"])
    for name in ("lasso", "pyramid_screening"):
        assert [w["seed"] for w in report["models"][name]["worlds"]] == [1]
    # the worlds' own files: train and test share no mine, no ground and no spectrum
    palettes, mines = {}, {}
    for s in (1, 2, 3):
        world = out / f"seed_{s}" / "world"
        palettes[s] = {n for n in json.loads((world / "manifest.json").read_text())["truth"]["palette"]
                       if not n.startswith("modelled:")}  # fmt: skip
        feats = json.loads((world / "tables" / "mines.geojson").read_text())["features"]
        shapes = [shapely.geometry.shape(f["geometry"]) for f in feats]
        assert all(g.is_valid for g in shapes), [shapely.is_valid_reason(g) for g in shapes if not g.is_valid]
        mines[s] = shapely.union_all(shapes)
    assert palettes[1] and not (palettes[2] | palettes[3]) & palettes[1]
    assert not mines[1].intersects(shapely.union_all([mines[2], mines[3]]))
    st = report["stability"]
    assert set(st["orders"]) == {"world_2", "world_3", "pooled"} and len(st["pairs"]) == 1
    assert "is not evidence" in EVIDENCE
    html = (out / "report_study" / "report.html").read_text()
    assert "SIMULATED" in html and "is not evidence" in html and "skipped (--no-real)" in html


def _numpy_counts(out: Path, seed: int, flag_of) -> dict[str, int]:
    """The world's pixels counted from its files: composite and truth (rasterio), mines rasterised (rasterio)."""
    with rasterio.open(out / f"seed_{seed}" / "composite.tif") as src:
        bands = {d: src.read(i + 1).astype(float) for i, d in enumerate(src.descriptions)}
        transform, shape, crs = src.transform, (src.height, src.width), src.crs
    with rasterio.open(out / f"seed_{seed}" / "world" / "truth" / "surface.tif") as src:
        material = src.read(1)
    feats = json.loads((out / f"seed_{seed}" / "world" / "tables" / "mines.geojson").read_text())["features"]
    to_utm = pyproj.Transformer.from_crs(4326, crs.to_epsg(), always_xy=True)
    polys = [shapely.transform(shapely.geometry.shape(f["geometry"]), lambda xy: np.column_stack(
        to_utm.transform(xy[:, 0], xy[:, 1]))) for f in feats]  # fmt: skip
    mine = rasterio.features.rasterize(polys, out_shape=shape, transform=transform).astype(bool)
    seen = np.all([np.isfinite(b) for b in bands.values()], axis=0)
    flag = flag_of(bands) & seen
    bare = np.isin(material, H.NATURAL_BARE) & ~mine
    return {"pixels": int(seen.sum()), "mine_pixels": int((mine & seen).sum()), "detected_pixels": int((flag & mine).sum()),
            "false_alarm_pixels": int((flag & ~mine).sum()), "bare_pixels": int((bare & seen).sum()),
            "bare_flagged": int((flag & bare).sum())}  # fmt: skip


@pytest.mark.slow
def test_measured_counts_match_the_worlds_files(study):
    out, spec, _ = study
    model = LinearModel("lasso", ["B12"], [0.0], [1.0], [1.0], -0.18, 0.0, "binary")  # flag: B12 > 0.18
    worlds = H.prepare(out, spec, lambda m: None)
    sim = worlds.test[1]
    got = H.measure_flags(compile_linear(model, ee.Image(sim.composite_id)).select("mine"), sim, 1,
                          worlds.truth_ids[1], "b12", spec)  # fmt: skip
    ref = _numpy_counts(out, 1, lambda b: b["B12"] > 0.18)
    assert ref["detected_pixels"] > 0 and ref["false_alarm_pixels"] > 0 and ref["bare_pixels"] > 0
    assert got.pixels == ref["pixels"]
    for k, v in ref.items():
        assert getattr(got, k) == pytest.approx(v, rel=0.02, abs=3), k  # polygon edges: paint vs rasterize
    assert got.mines == len(json.loads((out / "seed_1" / "world" / "tables" / "mines.geojson").read_text())["features"])


def test_real_scenes_absent_are_said_not_failed():
    worlds = H.Worlds({}, {}, {}, [], "the real scenes (../shared/data/imagery) are absent beside this checkout")
    real = H.real_false_alarms({"m": lambda img: img}, worlds, lambda m: None)
    assert real == {"available": False, "why": worlds.real_why}


@pytest.mark.slow
def test_classify_chooses_on_train_worlds_and_reports_held_out_ones(study):
    out, spec, _ = study
    report = evaluate_classify(out, spec, ("smileCart",))
    (choice,) = report["protocol"]["choices"].values()
    assert [c["params"] for c in choice["settings"]] == list(CANDIDATES["smileCart"])
    assert all(len(c["left_out_f1"]) == 2 for c in choice["settings"])  # each train world left out once, no other
    best = max(choice["settings"], key=lambda c: c["mean_f1"])
    assert choice["chosen"] == best["params"]
    assert [w["seed"] for w in report["models"]["smileCart"]["worlds"]] == [1]
    assert json.loads((out / "evaluation_classify.json").read_text())["pooled"]["mines"] == report["pooled"]["mines"]
    # the engine's F1 of the mine class against scikit-learn's on the same predictions
    worlds = H.prepare(out, spec, lambda m: None)
    tables = {s: H.sample_world(sim, s, 30, DEFAULT_FEATURES) for s, sim in worlds.train.items()}
    cart = ClassifySpec(features=DEFAULT_FEATURES, classifier="smileCart", params={"maxNodes": 8})
    clf = train(constant_samples(tables[2], DEFAULT_FEATURES), cart)
    test = constant_samples(tables[3], DEFAULT_FEATURES)
    pred = [f["properties"]["classification"] for f in test.classify(clf).getInfo()["features"]]
    assert accuracy(clf, test).fscore[1] == pytest.approx(f1_score(tables[3]["_mine"].astype(int), pred))
    assert ee.Image(worlds.truth_ids[1]).bandNames().getInfo()[0] == "material"


def test_report_box_shows_the_protocol_not_only_the_folder(tmp_path):
    """The "Parameters and engine" box of an evaluate report lists the seeds, the worlds and the counting rule the
    evaluation was given, and the report of a run without figures has no empty figures folder."""
    spec = HeldoutSpec((1, 2, 3), (4, 5), size_km=5.52, clusters=2, min_mine_share=0.4)
    doc = {"protocol": {"train_seeds": [1, 2, 3], "test_seeds": [4, 5], "spec": spec_json(spec)},
           "real": {"available": False, "why": "skipped (--no-real)"}, "seconds": 12.3}  # fmt: skip
    page = _save(Report("gee-mining evaluate study"), tmp_path / "report_study",
                 run_summary("gee-mining evaluate study", tmp_path, doc)).read_text()  # fmt: skip
    box = re.search(r'<table class="params">.*?</table>', page, re.S).group(0)
    rows = dict(re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", box))
    assert rows["train worlds (seeds)"] == "1, 2, 3" and rows["held-out worlds (seeds)"] == "4, 5"
    assert rows["worlds (SIMULATED)"].startswith("5.52 km square, 2 mine clusters, 1 month(s)")
    assert rows["a mine is found when"] == "at least 40% of its pixels are flagged"
    assert rows["real mine-free scenes"] == "none: skipped (--no-real)"
    assert rows["command"] == "gee-mining evaluate study" and rows["output folder"] == str(tmp_path.resolve())
    assert "SIMULATED inputs" in page
    assert not (tmp_path / "report_study" / "report_figures").exists()
    # worlds with June's scenes (--seasons 6) say so
    doc["protocol"]["spec"] = spec_json(HeldoutSpec((1, 2, 3), (4, 5), size_km=5.52, clusters=2, seasons=(6,)))
    seasonal = run_summary("gee-mining evaluate study", tmp_path, doc)
    assert "1 month(s) of scenes plus month(s) 6 (--seasons)" in str(seasonal)


def test_report_box_says_how_the_pyramid_screening_was_drawn():
    """The pyramid report's box names the screening model with the options that changed its sample and margin."""
    plain = {"screening": "forest", "margin": None, "hard_negatives": 0, "mine_strata_km2": ()}
    assert screening(plain) == "forest; thresholds' margin chosen across the train worlds"
    tuned = {**plain, "margin": 0.6, "hard_negatives": 1000, "mine_strata_km2": (0.05, 1)}
    assert screening(tuned) == ("forest; mine pixels drawn equally by mine size, cut at 0.05, 1 km2 (--mine-strata); "
                                "a second forest also fitted on 1000 of the first one's mine-free flagged pixels a "
                                "train world (--hard-negatives); thresholds' margin 0.6 at every level (--margin)")  # fmt: skip
    assert screening({"pixels": 500}) is None  # the study's and classifiers' reports have no screening row


def test_report_gives_false_alarms_as_flagged_area():
    """The report's false alarms are the flagged area of mine-free land in km2 per 1000 km2, as the docs give them:
    960 flagged 10 m pixels (0.096 km2) on 0.96 km2 of mine-free land are 100 km2 per 1000 km2."""
    spec = H.HeldoutSpec((1, 2), (3,))
    c = {"pixels": 10_000, "mine_pixels": 400, "detected_pixels": 300, "false_alarm_pixels": 960, "bare_pixels": 200,
         "bare_flagged": 50, "mines": 7, "detected": 3, "area_km2": 1.0, "mine_area_km2": 0.04, "fine_cells": 9}  # fmt: skip
    (row,) = _pooled_rows({"models": {"lasso": {"pooled": {**c, **H.figures(c, spec)}}}})
    assert row[4] == pytest.approx(1000 * 960 * 10 * 10 / 1e6 / 0.96) == 100.0

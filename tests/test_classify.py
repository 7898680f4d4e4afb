"""Server-side classification on a tiny simulated world, and offline models compiled to Earth Engine.

Independent references: scikit-learn (the same model's predictions on the same pixels; confusion-matrix
figures on the same labels), the client's signature list (every graph would run on Earth Engine) and
rasterio (the exported probability map).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sklearn import metrics

from gee_mining.contracts.cells import GridSpec
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.errors import InputError
from gee_mining.ml import classify as C
from gee_mining.steps.grid import build_grid
from gee_mining.steps.sentinel2 import CompositeSpec

FEATURES = ("B2", "B4", "B8", "B11", "B12", "NDVI", "ND_B11_B8")
SPEC = C.ClassifySpec(
    features=FEATURES,
    composite=CompositeSpec(start="2019-01-01", end="2019-04-01"),
    points_per_class=40,
    params={"numberOfTrees": 15},
)


@pytest.fixture(scope="module")
def world(sim_world):
    """The session's simulated world (conftest.SIM_WORLD)."""
    return sim_world


@pytest.fixture(scope="module")
def ee_world(ee_local, engine_catalog, sim_catalog, tmp_path_factory):
    import gee_mining

    storage = tmp_path_factory.mktemp("cworld_storage")
    gee_mining.connect("local", project="gee-mining-test", catalog=sim_catalog, storage_root=storage)
    yield ee_local
    gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)


@pytest.fixture(scope="module")
def cells(ee_world, world):
    table = build_grid(ee_world, world.asset_ids["mines"], GridSpec.of(640, zoom=19))
    return table.positives + table.negatives


@pytest.fixture(scope="module")
def samples(ee_world, world, cells):
    """Samples of the training and held-out cells, computed once (fetched back as constant collections)."""
    train_rows, test_rows = C.split_cells(cells, 0.3, seed=0)
    mines = world.asset_ids["mines"]
    graph = C.training_samples(train_rows, mines, SPEC), C.training_samples(test_rows, mines, SPEC)
    return train_rows, test_rows, C.fetch_samples(graph[0]), C.fetch_samples(graph[1]), graph


@pytest.fixture(scope="module")
def pixels(ee_world, world, cells):
    """One positive cell's features and labels on its lattice, read once with computePixels."""
    row = next(r for r in cells if r["label"] == 1)
    grid = pixel_grid(row)
    image = C.cell_features(row, world.asset_ids["mines"], SPEC)
    arr = ee_world.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid.ee_grid()})
    x = np.stack([arr[f] for f in FEATURES], axis=-1).reshape(-1, len(FEATURES)).astype(np.float64)
    y = arr["_mine"].reshape(-1).astype(int)
    assert np.isfinite(x).all() and 0 < y.mean() < 1
    return row, grid, x, y


def _compute(ee, image, grid):
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid.ee_grid()})


def test_split_keeps_pairs_and_holds_out_cells(cells):
    train_rows, test_rows = C.split_cells(cells, 0.3, seed=0)
    names_train, names_test = {r["name"] for r in train_rows}, {r["name"] for r in test_rows}
    assert names_train and names_test and not names_train & names_test
    assert names_train | names_test == {r["name"] for r in cells}
    for r in cells:
        side = names_train if r["name"] in names_train else names_test
        assert r.get("pair") is None or r["pair"] in side or r["pair"] not in {c["name"] for c in cells}


def test_compiled_logistic_equals_scikit_learn(ee_world, pixels):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    row, grid, x, y = pixels
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)).fit(x, y)
    model = C.LinearModel.from_sklearn(pipe, FEATURES, source="test")
    back = C.LinearModel.from_json(json.loads(json.dumps(model.to_json())))
    assert back == model and model.kind == "logistic"
    image = C.cell_features(row, None, SPEC, labels=False)
    out = _compute(ee_world, C.compile_linear(model, image, features_ready=True), grid)
    want = pipe.predict_proba(x)[:, 1]
    np.testing.assert_allclose(out["probability"].reshape(-1), want, atol=2e-6)
    np.testing.assert_allclose(out["score"].reshape(-1), pipe.decision_function(x), rtol=1e-5, atol=1e-4)
    clear = np.abs(want - 0.5) > 1e-5
    np.testing.assert_array_equal(out["mine"].reshape(-1)[clear], pipe.predict(x)[clear])


def test_compiled_forest_and_tree_equal_scikit_learn_exactly(ee_world, pixels):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    row, grid, x, y = pixels
    forest = RandomForestClassifier(n_estimators=15, random_state=0).fit(x, y)  # odd count: no 0.5 ties
    tree = DecisionTreeClassifier(max_depth=6, random_state=0).fit(x, y)
    image = C.cell_features(row, None, SPEC, labels=False)
    both = C.forest_image(forest, FEATURES, image, features_ready=True).addBands(
        C.forest_image(tree, FEATURES, image, features_ready=True).rename(["tree_p", "tree_mine"])
    )
    out = _compute(ee_world, both, grid)
    np.testing.assert_array_equal(out["mine"].reshape(-1), forest.predict(x))
    np.testing.assert_array_equal(out["tree_mine"].reshape(-1), tree.predict(x))
    np.testing.assert_allclose(out["probability"].reshape(-1), forest.predict_proba(x)[:, 1], atol=1e-6)
    np.testing.assert_array_equal(out["tree_p"].reshape(-1), tree.predict_proba(x)[:, 1].astype(np.float32))


def test_train_and_classify_on_held_out_cells(ee_world, samples):
    _, _, train_fc, test_fc, _ = samples
    clf = C.train(train_fc, SPEC)
    acc = C.accuracy(clf, test_fc)
    # the same figures from scikit-learn on the same labels
    got = test_fc.classify(clf, "predicted").getInfo()["features"]
    actual = np.array([f["properties"]["_mine"] for f in got])
    pred = np.array([f["properties"]["predicted"] for f in got])
    assert acc.samples == len(actual) > 0
    np.testing.assert_array_equal(acc.matrix, metrics.confusion_matrix(actual, pred, labels=[0, 1]))
    assert acc.accuracy == pytest.approx(metrics.accuracy_score(actual, pred), abs=1e-12)
    assert acc.kappa == pytest.approx(metrics.cohen_kappa_score(actual, pred), abs=1e-12)
    np.testing.assert_allclose(acc.producers, metrics.recall_score(actual, pred, average=None), atol=1e-12)
    np.testing.assert_allclose(acc.consumers, metrics.precision_score(actual, pred, average=None), atol=1e-12)
    np.testing.assert_allclose(acc.fscore, metrics.f1_score(actual, pred, average=None), atol=1e-12)
    print(f"held-out accuracy {acc.accuracy:.3f}, kappa {acc.kappa:.3f}, F1(mine) {acc.fscore[1]:.3f}")
    assert acc.accuracy > 0.85


def test_smile_cart_explain_round_trips_through_decision_tree(ee_world, samples):
    ee = ee_world
    _, _, train_fc, test_fc, _ = samples
    cart = ee.Classifier.smileCart().train(train_fc, "_mine", list(FEATURES))
    tree = ee.Classifier.decisionTree(ee.String(cart.explain().get("tree")))
    a = test_fc.classify(cart, "a").classify(tree, "b").getInfo()["features"]
    assert [f["properties"]["a"] for f in a] == [f["properties"]["b"] for f in a]


def test_clusters_matched_to_labels(ee_world, samples):
    _, _, train_fc, test_fc, _ = samples
    km = C.train_clusterer(train_fc, SPEC, "wekaKMeans", nClusters=4, seed=1)
    mapping = C.match_clusters(km, train_fc)
    assert set(mapping) <= set(range(4)) and set(mapping.values()) == {0, 1}
    acc = C.cluster_accuracy(km, mapping, test_fc)
    print(f"k-means (4 clusters matched to labels) held-out accuracy {acc.accuracy:.3f}")
    assert acc.accuracy > 0.6


def test_confusion_matrix_figures_equal_scikit_learn(ee_local):
    ee = ee_local
    rng = np.random.default_rng(1)
    actual = rng.integers(0, 3, 300)
    pred = np.where(rng.random(300) < 0.7, actual, rng.integers(0, 3, 300))
    fc = ee.FeatureCollection([ee.Feature(None, {"a": int(a), "p": int(p)}) for a, p in zip(actual, pred, strict=True)])
    cm = fc.errorMatrix("a", "p")
    d = ee.Dictionary({"m": cm.array(), "acc": cm.accuracy(), "k": cm.kappa(), "pa": cm.producersAccuracy(),
                       "ca": cm.consumersAccuracy(), "f1": cm.fscore(), "f2": cm.fscore(2), "o": cm.order()}).getInfo()  # fmt: skip
    np.testing.assert_array_equal(d["m"], metrics.confusion_matrix(actual, pred))
    assert d["acc"] == pytest.approx(metrics.accuracy_score(actual, pred))
    assert d["k"] == pytest.approx(metrics.cohen_kappa_score(actual, pred))
    np.testing.assert_allclose(np.array(d["pa"])[:, 0], metrics.recall_score(actual, pred, average=None))
    np.testing.assert_allclose(np.array(d["ca"])[0], metrics.precision_score(actual, pred, average=None))
    np.testing.assert_allclose(d["f1"], metrics.f1_score(actual, pred, average=None))
    np.testing.assert_allclose(d["f2"], metrics.fbeta_score(actual, pred, beta=2, average=None))
    assert d["o"] == [0, 1, 2]
    # order: only listed values, in that order
    sub = fc.errorMatrix("a", "p", [2, 0]).array().getInfo()
    np.testing.assert_array_equal(sub, metrics.confusion_matrix(actual, pred, labels=[2, 0]))
    # the reference page's example matrix (rows actual, columns predicted)
    example = [[32, 0, 0, 0, 1, 0], [0, 5, 0, 0, 1, 0], [0, 0, 1, 3, 0, 0], [0, 1, 4, 26, 8, 0], [0, 0, 0, 7, 15, 0],
               [0, 0, 0, 1, 0, 5]]  # fmt: skip
    a_ex = np.repeat(np.repeat(np.arange(6), 6), np.ravel(example))
    p_ex = np.repeat(np.tile(np.arange(6), 6), np.ravel(example))
    assert ee.ConfusionMatrix(example).kappa().getInfo() == pytest.approx(metrics.cohen_kappa_score(a_ex, p_ex))


def test_engine_classifiers_train_and_refuse_clearly(ee_local):
    ee = ee_local
    rng = np.random.default_rng(0)
    y = np.arange(120) % 2
    x = rng.normal(y[:, None] * [1.0, -1.0], 0.6, (120, 2))
    fc = ee.FeatureCollection([ee.Feature(None, {"a": float(a), "b": float(b), "c": int(c)}) for (a, b), c in zip(x, y, strict=True)])  # fmt: skip
    makers = [ee.Classifier.smileRandomForest(10), ee.Classifier.smileCart(), ee.Classifier.smileGradientTreeBoost(10),
              ee.Classifier.libsvm(), ee.Classifier.minimumDistance()]  # fmt: skip
    accs = ee.List([fc.classify(m.train(fc, "c", ["a", "b"])).errorMatrix("c", "classification").accuracy()
                    for m in makers]).getInfo()  # fmt: skip
    assert min(accs) > 0.8, accs
    # minimumDistance is nearest class mean: equal to scikit-learn's NearestCentroid
    from sklearn.neighbors import NearestCentroid

    md = fc.classify(ee.Classifier.minimumDistance().train(fc, "c", ["a", "b"])).aggregate_array("classification")
    np.testing.assert_array_equal(md.getInfo(), NearestCentroid().fit(x, y).predict(x))
    with pytest.raises(ee.EEException, match="MULTIPROBABILITY"):
        fc.classify(ee.Classifier.smileCart().setOutputMode("MULTIPROBABILITY").train(fc, "c", ["a", "b"])).getInfo()
    with pytest.raises(ee.EEException, match="libsvm.*ONE_CLASS"):
        ee.Classifier.libsvm(svmType="ONE_CLASS").getInfo()
    with pytest.raises(ee.EEException, match="wekaKMeans.*canopies"):
        ee.Clusterer.wekaKMeans(2, canopies=True).getInfo()
    with pytest.raises(ee.EEException, match="decisionTree.*node 5"):
        ee.Classifier.decisionTree("1) root 10 1 0\n  5) a<=1 5 0 1 *\n").getInfo()


def test_linear_model_json_contract_and_bad_input(tmp_path):
    m = C.LinearModel("lasso", ["B4", "ND_B8_B4", "NDVI"], [0.1, 0.2, 0.3], [1, 2, 3], [0.5, -1, 0], 0.2,
                      None, "distance", "study")  # fmt: skip
    path = m.write(tmp_path / "m.json")
    data = json.loads(path.read_text())
    assert set(data) == {"kind", "features", "mean", "scale", "coef", "intercept", "threshold", "target", "source"}
    assert C.LinearModel.read(path) == m and m.cutoff == 0.0
    with pytest.raises(InputError, match="scale"):
        C.LinearModel("lasso", ["B4"], [0], [0], [1], 0)
    with pytest.raises(InputError, match="B99"):
        C.LinearModel("lasso", ["B99"], [0], [1], [1], 0)
    with pytest.raises(InputError, match="unknown keys"):
        C.LinearModel.from_json({**data, "alpha": 1})
    with pytest.raises(InputError, match="classifier"):
        C.ClassifySpec(classifier="randomForest")


def test_export_probability_map(ee_world, samples, pixels, tmp_path):
    import rasterio

    from gee_mining.batch.tasks import wait_for
    from gee_mining.connection import open_bucket

    row, grid, _, y = pixels
    clf = C.train(samples[2], SPEC)
    image = C.probability_image(row, clf, SPEC)
    task = C.export_probability(row, image, "gs://prob/z19")
    task.start()
    assert wait_for([task])[0]["state"] in ("COMPLETED", "SUCCEEDED")
    path = open_bucket("prob").download(f"z19/{row['name']}.tif", tmp_path / "p.tif")
    with rasterio.open(path) as ds:
        data = ds.read(1)
        assert ds.crs.to_epsg() == row["epsg"] and (ds.width, ds.height) == (grid.width, grid.height)
    # the file holds what computePixels (no export code) gives for the same image on the same lattice
    ref = _compute(ee_world, image, grid)["probability"]
    np.testing.assert_allclose(data, np.asarray(ref, dtype=np.float32), rtol=0, atol=1e-6)
    # and it is a probability of a mine: high on the cell's mine pixels (the _mine labels), low elsewhere
    p = data.reshape(-1)
    assert p.min() >= 0 and p.max() <= 1
    assert p[y == 1].mean() > 0.7 and p[y == 0].mean() < 0.3, (p[y == 1].mean(), p[y == 0].mean())


def _export_maps(ee, rows, images, prefix, tmp_path) -> dict[str, np.ndarray]:
    """Each cell's probability map exported (one task a cell) and read back from storage with rasterio."""
    import rasterio

    from gee_mining.batch.tasks import run_tasks
    from gee_mining.connection import open_bucket

    tasks = [C.export_probability(r, im, f"gs://prob/{prefix}") for r, im in zip(rows, images, strict=True)]
    assert all(st["state"] == "COMPLETED" for st in run_tasks(tasks))
    out = {}
    for r in rows:
        with rasterio.open(open_bucket("prob").download(f"{prefix}/{r['name']}.tif", tmp_path / "p.tif")) as ds:
            out[r["name"]] = ds.read(1)
    return out


def test_deployed_classifier_is_trained_once_and_maps_equal_in_task_training(
    ee_world, samples, cells, tmp_path, monkeypatch
):
    """``Export.classifier.toAsset`` then ``ee.Classifier.load`` in each cell's export: the same probability
    maps, pixel for pixel, as training inside every export, with one ``Classifier.train`` in all instead of
    one per cell (counted where the engine evaluates it); a missing classifier asset is a clear error."""
    from dataclasses import replace

    from gee_mining.local.core import registry

    trains = []
    alg = registry.get("Classifier.train")
    monkeypatch.setitem(registry._ALGORITHMS, "Classifier.train",
                        replace(alg, func=lambda *a, **k: trains.append(1) or alg.func(*a, **k)))  # fmt: skip
    rows = [r for r in cells if r["label"] == 1][:1] + [r for r in cells if r["label"] == 0][:1]
    fc = samples[2]
    in_task = _export_maps(ee_world, rows, [C.probability_image(r, C.train(fc, SPEC), SPEC) for r in rows], "a",
                           tmp_path)  # fmt: skip
    assert len(trains) == len(rows)  # the old way: one training per cell's task
    trains.clear()
    asset = "projects/gee-mining-test/assets/clf-once"
    clf = C.exported_classifier(fc, SPEC, asset)
    assert len(trains) == 1  # the classifier export task
    saved = _export_maps(ee_world, rows, [C.probability_image(r, clf, SPEC) for r in rows], "b", tmp_path)
    assert len(trains) == 1  # no export trained again
    for name, want in in_task.items():
        assert 0 < want.mean() < 1
        np.testing.assert_array_equal(saved[name], want)
    assert C.exported_classifier(fc, SPEC, asset) is not None and len(trains) == 1  # the asset exists: reused
    ops = ee_world.data.listOperations()
    assert sum(o["metadata"]["type"] == "EXPORT_CLASSIFIER" for o in ops) == 1
    # missing: the library names the asset and the fix; the engine says what Earth Engine says
    with pytest.raises(InputError, match="classifier asset 'projects/gee-mining-test/assets/nope' not found"):
        C.load_classifier("projects/gee-mining-test/assets/nope")
    with pytest.raises(ee_world.EEException, match="Classifier asset 'projects/gee-mining-test/assets/nope' not"):
        ee_world.Classifier.load("projects/gee-mining-test/assets/nope").schema().getInfo()
    with pytest.raises(InputError, match="cannot be saved"):
        C.exported_classifier(fc, replace(SPEC, classifier="libsvm", params={}), asset + "-svm")


def test_graphs_use_only_earth_engine_algorithms(ee_world, samples, pixels, cells, world):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from test_grid import graph_algorithms

    from gee_mining.contracts.signatures import signatures

    ee = ee_world
    row, _, x, y = pixels
    train_graph, test_graph = samples[4]
    clf = C.train(train_graph, SPEC)
    km = C.train_clusterer(train_graph, SPEC, "wekaXMeans")
    points = C.training_samples(
        cells[:2], world.asset_ids["mines"], C.ClassifySpec(features=FEATURES, sampling="points")
    )
    image = C.cell_features(row, None, SPEC, labels=False)
    lin = C.LinearModel.from_sklearn(LogisticRegression().fit(x, y), FEATURES)
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    graphs = ee.List([
        test_graph.classify(clf).errorMatrix("_mine", "classification").accuracy(),
        C.probability_image(row, clf, SPEC), points, C.compile_linear(lin, image),
        C.forest_image(forest, FEATURES, image), C.clusters_to_labels(image.cluster(km), {0: 1, 1: 0}),
        test_graph.cluster(km).errorMatrix("_mine", "cluster", [0, 1]).fscore(),
    ])  # fmt: skip
    used = graph_algorithms(ee, graphs)
    assert {"Classifier.train", "Image.classify", "Collection.errorMatrix", "Classifier.decisionTreeEnsemble",
            "Image.stratifiedSample", "Clusterer.train", "Image.cluster"} <= used  # fmt: skip
    assert used <= set(signatures()), used - set(signatures())


def _sklearn_figures(actual, pred) -> dict:
    """The ConfusionMatrix figures of labels 0 and 1 by scikit-learn."""
    kw = {"labels": [0, 1], "average": None, "zero_division": 0}
    return {
        "matrix": metrics.confusion_matrix(actual, pred, labels=[0, 1]).tolist(),
        "accuracy": metrics.accuracy_score(actual, pred),
        "kappa": metrics.cohen_kappa_score(actual, pred, labels=[0, 1]),
        "producers": metrics.recall_score(actual, pred, **kw),
        "consumers": metrics.precision_score(actual, pred, **kw),
        "fscore": metrics.f1_score(actual, pred, **kw),
        "samples": len(actual),
    }


def _assert_figures(got: dict, want: dict, what: str) -> None:
    assert got["order"] == [0, 1], what
    assert got["matrix"] == want["matrix"] and got["samples"] == want["samples"], what
    for key in ("accuracy", "kappa"):
        assert got[key] == pytest.approx(want[key], abs=1e-9), (what, key)
    for key in ("producers", "consumers", "fscore"):
        np.testing.assert_allclose(got[key], want[key], atol=1e-9, err_msg=f"{what} {key}")


def test_demo_step_writes_a_simulated_section(ee_world, world, cells, tmp_path):
    from gee_mining.demo import classify as classify_demo
    from gee_mining.demo.context import DemoContext
    from gee_mining.demo.run import demo_steps
    from gee_mining.tools.report import Report

    """The demo's step 3 on two pairs of cells: its figures equal scikit-learn's on the same held-out samples
    (the forest's and the clusters' predictions from the engine, the logistic refitted here), and the report
    shows them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ee = ee_world
    assert classify_demo.demo_step in demo_steps()
    pairs = [r for r in cells if r["label"] == 1][:2]
    rows = pairs + [next(c for c in cells if c["name"] == p["pair"]) for p in pairs]
    ctx = DemoContext(tmp_path, world, world.asset_ids["mines"], summary={"imagery": {"cells_table": rows}},
                      progress=lambda m: None)  # fmt: skip
    report = Report("t", "t")
    classify_demo.demo_step(ee, report, ctx)
    got = ctx.summary["classify"]

    # held-out cells: whole pairs, each cell on one side
    train_names, test_names = set(got["train_cells"]), set(got["test_cells"])
    assert train_names and test_names and not train_names & test_names
    assert train_names | test_names == {r["name"] for r in rows}
    for p in pairs:
        assert (p["name"] in test_names) == (p["pair"] in test_names)

    # the same samples (the demo's spec: 150 points per class and cell), fetched here as plain arrays
    spec = C.ClassifySpec(points_per_class=150, params={"numberOfTrees": 50})
    mines = world.asset_ids["mines"]
    train_rows = [r for r in rows if r["name"] in train_names]
    test_rows = [r for r in rows if r["name"] in test_names]
    train_rows.sort(key=lambda r: got["train_cells"].index(r["name"]))
    test_rows.sort(key=lambda r: got["test_cells"].index(r["name"]))
    train_fc = C.fetch_samples(C.training_samples(train_rows, mines, spec))
    test_fc = C.fetch_samples(C.training_samples(test_rows, mines, spec))
    forest = C.train(train_fc, spec)
    km = C.train_clusterer(train_fc, spec, "wekaKMeans", nClusters=4, seed=1)
    train_f = train_fc.cluster(km, "cluster").getInfo()["features"]
    test_f = test_fc.classify(forest, "predicted").cluster(km, "cluster").getInfo()["features"]

    def column(features, name):
        return np.array([f["properties"][name] for f in features])

    x_train = np.stack([column(train_f, b) for b in spec.features], axis=1).astype(np.float64)
    x_test = np.stack([column(test_f, b) for b in spec.features], axis=1).astype(np.float64)
    y_train, y_test = column(train_f, "_mine").astype(int), column(test_f, "_mine").astype(int)
    assert set(y_train) == set(y_test) == {0, 1}

    want = {"random_forest": _sklearn_figures(y_test, column(test_f, "predicted"))}
    _assert_figures(got["random_forest"], want["random_forest"], "forest")

    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    model = C.LinearModel.read(tmp_path / "classify" / "logistic_model.json")
    assert model.kind == "logistic" and tuple(model.features) == spec.features
    np.testing.assert_allclose(model.mean, logistic[0].mean_, rtol=1e-9)
    np.testing.assert_allclose(model.scale, logistic[0].scale_, rtol=1e-9)
    np.testing.assert_allclose(model.coef, logistic[1].coef_[0], rtol=1e-6, atol=1e-9)
    assert model.intercept == pytest.approx(logistic[1].intercept_[0], rel=1e-6)
    assert np.abs(logistic.decision_function(x_test)).min() > 1e-6  # no sample on the boundary
    want["logistic_compiled"] = _sklearn_figures(y_test, logistic.predict(x_test))
    _assert_figures(got["logistic_compiled"], want["logistic_compiled"], "logistic")

    # clusters: each one labelled by the majority of its training samples (ties to not-mine)
    c_train, c_test = column(train_f, "cluster").astype(int), column(test_f, "cluster").astype(int)
    mapping = {int(k): int((y_train[c_train == k] == 1).sum() > (y_train[c_train == k] == 0).sum())
               for k in np.unique(c_train)}  # fmt: skip
    assert got["cluster_labels"] == mapping
    want["kmeans_matched"] = _sklearn_figures(y_test, [mapping[k] for k in c_test])
    _assert_figures(got["kmeans_matched"], want["kmeans_matched"], "k-means")

    # the report: one section, its table carries scikit-learn's figures, two figures drawn
    (section,) = [s for s in report.sections if s.title.startswith("SIMULATED · in-sample · Step 3 server-side")]
    (table,) = [p for p in section.parts if isinstance(p, dict) and p["kind"] == "table"]
    assert [r[0] for r in table["rows"]] == ["random forest (Earth Engine)", "logistic, compiled",
                                             "k-means (4) matched to labels"]  # fmt: skip
    for r, key in zip(table["rows"], ("random_forest", "logistic_compiled", "kmeans_matched"), strict=True):
        a = want[key]
        assert r[1:] == [a["samples"], f"{a['accuracy']:.3f}", f"{a['kappa']:.3f}", f"{a['producers'][1]:.3f}",
                         f"{a['consumers'][1]:.3f}", f"{a['fscore'][1]:.3f}"]  # fmt: skip
    assert sum(isinstance(p, dict) and p["kind"] == "figure" for p in section.parts) == 2
    html = report.write(tmp_path / "r.html").read_text()
    assert html.count("<img") == 2 and "SIMULATED · in-sample · Step 3 server-side" in html
    cells = re.sub(r"<td[^>]*>", "<td>", html)  # the cell's text, whatever its class
    for key in want:
        assert f"<td>{want[key]['accuracy']:.3f}</td><td>{want[key]['kappa']:.3f}</td>" in cells, key
    for name in test_names:
        assert name in html


def test_cli_evaluate_and_deploy(ee_world, world, cells, samples, pixels, tmp_path, capsys):
    """Last in this module: the CLI connects ``ee`` to its own engine."""
    from sklearn.linear_model import LogisticRegression

    import gee_mining
    from gee_mining.cli.main import main
    from gee_mining.io.grid_table import write_table

    conn = gee_mining.current_connection()
    catalog, storage = conn.catalog, conn.local_engine.storage_root
    table = build_grid(ee_world, world.asset_ids["mines"], GridSpec.of(640, zoom=19))
    write_table(table, tmp_path / "grid.parquet")
    pairs = [r for r in cells if r["label"] == 1][:2]
    names = ",".join(n for p in pairs for n in (p["name"], p["pair"]))
    common = ["--grid", str(tmp_path / "grid.parquet"), "--polygons", world.asset_ids["mines"], "--cells", names,
              "--features", ",".join(FEATURES), "--start", "2019-01-01", "--end", "2019-04-01", "--project",
              "gee-mining-test", "--catalog", str(catalog), "--storage", str(storage)]  # fmt: skip
    out = tmp_path / "acc.json"
    assert (
        main(["classify", "evaluate", *common, "--points", "20", "--param", "numberOfTrees=5", "--out", str(out)]) == 0
    )
    got = json.loads(out.read_text())
    assert got["order"] == [0, 1] and sum(map(sum, got["matrix"])) == got["samples"] > 0
    assert "0 sample table(s) exist, exporting 2" in capsys.readouterr().out
    # a rerun (another engine on the same storage) reuses the exported samples and gives the same figures
    assert (
        main(["classify", "evaluate", *common, "--points", "20", "--param", "numberOfTrees=5", "--out", str(out)]) == 0
    )
    assert "2 sample table(s) exist, exporting 0" in capsys.readouterr().out
    assert json.loads(out.read_text()) == got
    # deploy: the classifier trained once on the exported samples, one probability map per cell
    assert (
        main(["classify", "deploy", *common, "--points", "20", "--param", "numberOfTrees=5", "--out", "gs://prob/rf"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "0 sample table(s) exist, exporting 1" in printed and "[classifier] training once" in printed
    assert sorted((storage / "prob" / "rf").glob("*.tif")) and len(list((storage / "prob" / "rf").glob("*.tif"))) == 4
    _, _, x, y = pixels
    C.LinearModel.from_sklearn(LogisticRegression().fit(x, y), FEATURES).write(tmp_path / "m.json")
    assert main(["classify", "deploy", *common, "--linear", str(tmp_path / "m.json"), "--out", "gs://prob/cli"]) == 0
    assert main(["classify", "deploy", *common, "--linear", str(tmp_path / "nope.json"), "--out", "gs://p/x"]) == 2
    nope = ["--classifier-asset", "projects/gee-mining-test/assets/no-such-classifier", "--out", "gs://p/y"]
    assert main(["classify", "deploy", *common, *nope]) == 2
    assert "classifier asset 'projects/gee-mining-test/assets/no-such-classifier' not found" in capsys.readouterr().err


@pytest.mark.slow
def test_samples_over_5000_evaluate_through_table_assets(ee_local):
    """Earth Engine aborts ``getInfo`` of a collection "after accumulating over 5000 elements" (the local
    engine too, with its limits on): the evaluation path exports the samples to table assets (batch),
    trains on one and measures on the other with ``errorMatrix`` (a fixed-size answer). Figures checked
    against scikit-learn on the same labels and predictions, read from a CSV export in storage."""
    import csv
    import io

    import gee_mining

    ee = ee_local
    proj = ee.Projection("EPSG:32633").atScale(10)
    xy = ee.Image.pixelCoordinates(proj).floor()
    noisy = xy.select("x").multiply(7).add(xy.select("y").multiply(13)).mod(11).eq(0)
    label = xy.select("x").mod(80).add(xy.select("y")).gt(70).neq(noisy).rename("_mine").toInt()
    image = xy.select("x").mod(80).rename("a").addBands(xy.select("y").rename("b")).addBands(label)

    def part(x0: float):  # 80 x 70 pixels of 10 m: 5,600 samples, every pixel sampled
        region = ee.Geometry.Rectangle([x0, 0, x0 + 800, 700], "EPSG:32633", False)
        return image.sample(region=region, projection=proj, geometries=False)

    spec = C.ClassifySpec(features=("B2", "B3"), classifier="smileCart", params={})
    ids = {"projects/gee-mining-test/assets/big-samples-train": part(500000),
           "projects/gee-mining-test/assets/big-samples-test": part(500800)}  # fmt: skip
    with pytest.raises(ee.EEException, match="Collection query aborted after accumulating over 5000 elements"):
        part(500800).getInfo()  # the limit is on: the old fetch_samples path fails here
    tables = C.exported_samples(ids)
    train_fc, test_fc = tables.values()
    clf = ee.Classifier.smileCart().train(train_fc, "_mine", ["a", "b"])
    acc = C.accuracy(clf, test_fc)
    assert spec.classifier == "smileCart" and acc.samples == 5600

    task = ee.batch.Export.table.toCloudStorage(test_fc.classify(clf, "predicted"), "big-samples-check",
                                                bucket="checks", fileNamePrefix="big", selectors=["_mine", "predicted"])  # fmt: skip
    task.start()
    from gee_mining.batch.tasks import wait_for

    assert wait_for([task], poll_s=0.2)[0]["state"] == "COMPLETED"
    rows = list(csv.DictReader(io.StringIO(gee_mining.current_connection().storage("checks").read("big.csv").decode())))
    actual = np.array([int(r["_mine"]) for r in rows])
    pred = np.array([int(r["predicted"]) for r in rows])
    assert len(actual) == 5600 and 0.1 < actual.mean() < 0.9
    want = _sklearn_figures(actual, pred)
    _assert_figures(acc.as_dict(), want, "cart on 5,600 samples")
    assert 0.7 < acc.accuracy < 1  # the noise (1 pixel in 11) is not learnable from a, b alone
    again = C.exported_samples(ids)  # the assets exist: nothing is exported again
    assert list(again) == list(ids)

"""The pixel study on a tiny simulated world (exported through the real ``ee`` client and the local engine).

Independent references: scikit-learn's ``lasso_path`` and ``LogisticRegression`` fitted here on features
computed here with plain numpy; the world's truth (materials and the earthlib library spectra it drew
for each pixel) for which features must separate mines from natural bare soil.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from gee_mining.batch.exports import ExportSpec, export_cells
from gee_mining.contracts.bands import BANDS
from gee_mining.contracts.features import normalized_difference_names
from gee_mining.errors import InputError
from gee_mining.io.pixel_table import from_geotiff, read_pixel_table, write_pixel_table
from gee_mining.ml.study import (
    FeatureSpec,
    SplitSpec,
    StudySpec,
    TargetSpec,
    dropout_order,
    from_frame,
    lasso,
    logistic,
    make_folds,
    run_study,
)
from gee_mining.steps.cell_image import ImagerySpec
from gee_mining.steps.sentinel2 import CompositeSpec
from gee_mining.world import generate_world, world_catalog_toml
from gee_mining.world.spectra import library

SPEC = ImagerySpec(composite=CompositeSpec(start="2019-01-01", end="2019-04-01"), indices=())
MINE_SURFACES = (9, 10, 11, 12)  # mine_soil, tailings, mine_rock, haul_road (pit water is water, not a surface)
NATURAL_BARE = (6, 7)  # natural_soil, natural_rock
CELL = 640


@pytest.fixture(scope="module")
def sim(ee_local, engine_catalog, tmp_path_factory):
    """Seed 4's 3 km world holds natural soil beside its mines: 4 cells of 640 m, three over mines, one over soil."""
    import gee_mining

    tmp = tmp_path_factory.mktemp("study_world")
    world = generate_world(tmp / "world", size_km=3, months=3, seed=4, project="gee-mining-test")
    catalog = tmp / "catalog.toml"
    catalog.write_text(engine_catalog.read_text() + "\n" + world_catalog_toml(world.out_dir))
    gee_mining.connect("local", project="gee-mining-test", catalog=catalog, storage_root=tmp / "storage")
    try:
        with rasterio.open(Path(world.out_dir) / "truth" / "surface.tif") as ds:
            material, t, epsg = ds.read(1), ds.transform, ds.crs.to_epsg()
        counts = []
        for cx in range(math.ceil(t.c / CELL), math.floor((t.c + material.shape[1] * 10) / CELL)):
            for cy in range(math.ceil((t.f - material.shape[0] * 10) / CELL), math.floor(t.f / CELL)):
                c0, r0 = int((cx * CELL - t.c) / 10), int((t.f - (cy + 1) * CELL) / 10)
                block = material[r0 : r0 + CELL // 10, c0 : c0 + CELL // 10]
                counts.append((cx, cy, np.isin(block, MINE_SURFACES).sum(), np.isin(block, NATURAL_BARE).sum()))
        mine_cells = sorted(counts, key=lambda c: -c[2])[:3]
        soil = max((c for c in counts if c not in mine_cells), key=lambda c: c[3])
        rows = [
            {"name": f"c{cx}_{cy}", "epsg": epsg, "cell_x": cx, "cell_y": cy, "cell_size": CELL, "zoom": 19,
             "label": int(m > 0), "country": "A" if i else "B"}
            for i, (cx, cy, m, _) in enumerate([*mine_cells, soil])
        ]  # fmt: skip
        results = export_cells(
            rows, world.asset_ids["mines"], ExportSpec("gs://cells/s"), SPEC, download_to=tmp / "tif"
        )
    finally:
        gee_mining.connect("local", project="gee-mining-test", catalog=engine_catalog)
    by = {r["name"]: r for r in rows}
    table = pd.concat([from_geotiff(p, by[r.cell]) for r in results for p in r.local_files], ignore_index=True)
    write_pixel_table(table, tmp / "pixels")
    return world, tmp / "pixels", table


def numpy_features(df: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Bands and every (a - b) / (a + b), a later than b in BANDS, written out here with numpy."""
    cols, names = [], []
    for b in BANDS:
        cols.append(df[b].to_numpy(np.float64))
        names.append(b)
    for i, a in enumerate(BANDS):
        for b in BANDS[:i]:
            va, vb = df[a].to_numpy(np.float64), df[b].to_numpy(np.float64)
            cols.append((va - vb) / (va + vb))
            names.append(f"ND_{a}_{b}")
    return names, np.column_stack(cols)


def test_features_are_the_bands_and_66_normalised_differences_named_as_indices_py(sim):
    _, _, table = sim
    ds = from_frame(table, FeatureSpec())
    names, X = numpy_features(table)
    assert ds.features == names == [*BANDS, *normalized_difference_names(BANDS)] and len(names) == 78
    np.testing.assert_allclose(ds.X, X, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("overwrite_X", [False, True])
def test_lasso_path_equals_sklearn_and_weights_leave_one_after_another(sim, overwrite_X):
    from sklearn.linear_model import lasso_path

    _, _, table = sim
    names, X = numpy_features(table)
    y = np.clip(-table["distance"].to_numpy(np.float64), -200, 200)  # the distance target, as TargetSpec documents
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    given = np.asfortranarray(X) if overwrite_X else X.copy()
    fit = lasso(given, y, names, n_penalties=50, tol=1e-8, max_iter=20000, overwrite_X=overwrite_X)
    # overwrite_X leaves the matrix centred (documented); without it the caller's matrix is untouched
    np.testing.assert_allclose(given, X - X.mean(axis=0) if overwrite_X else X, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fit.standardizer.scale, X.std(axis=0), rtol=1e-10)
    assert len(fit.penalties) == 50
    assert np.isclose(fit.penalties[0], np.abs(Z.T @ (y - y.mean())).max() / len(y))  # the smallest all-zero alpha
    _, ref, _ = lasso_path(Z, y - y.mean(), alphas=fit.penalties, tol=1e-8, max_iter=20000)
    np.testing.assert_allclose(fit.coefs, ref, atol=1e-6 * np.abs(ref).max())
    np.testing.assert_allclose(fit.intercepts, y.mean())
    nz = fit.nonzero()
    assert nz[0] == 0 and nz[1] >= 1 and nz[-1] > 10
    # as the penalty grows the weights vanish one after another, not all at once
    last = [pen for _, pen, _ in dropout_order(fit)[:8]]
    assert len(set(last)) >= 6 and last == sorted(last, reverse=True)


@pytest.mark.parametrize("solver", ["saga", "liblinear"])
def test_l1_logistic_path_equals_sklearn_at_the_same_c(sim, solver):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import l1_min_c

    _, _, table = sim
    sub = table.sample(1500, random_state=0)
    names, X = numpy_features(sub)
    names, X = names[:24], X[:, :24]  # the bands and the first 12 ND: saga converges slowly on all 78 (collinear)
    y = sub["_mine"].to_numpy()
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    fit = logistic(X, y, names, n_penalties=8, span=1.5, solver=solver, tol=1e-7, max_iter=20000)
    if solver == "liblinear":
        assert np.isclose(fit.C[0], l1_min_c(Z, y, loss="log"))
    assert fit.nonzero()[0] == 0 and fit.nonzero()[-1] > fit.nonzero()[1]
    for k in (1, 4, 7):
        ref = LogisticRegression(l1_ratio=1.0, C=fit.C[k], solver=solver, tol=1e-7, max_iter=20000).fit(Z, y)
        np.testing.assert_allclose(fit.coefs[:, k], ref.coef_[0], atol=2e-3 * max(1.0, np.abs(ref.coef_).max()))
        assert np.isclose(fit.penalties[k], 1 / (fit.C[k] * len(y)))


def test_path_ranks_first_what_separates_mine_surfaces_from_natural_bare_soil(sim):
    """Which and why, from the spectra the world drew (not from the study's output).

    Mine soil is drawn from the brightest quarter of earthlib's soils, tailings from its sands, benches
    from its gravels, haul roads from dirt; natural soil from all of its (mostly iron-rich, reddish) soils.
    The natural soils' reflectance climbs steeply from red (B4) to the red edge and NIR (B6..B8); the mine
    surfaces are flatter there. So the NIR/red-edge vs red contrasts - ND_B8_B4 (NDVI on bare ground),
    ND_B7_B6, ND_B8A_B4... - are what set mines apart from bare soil, and lower on mines. The test
    computes, for every training pixel, its noise-free reflectance = brightness x the library spectrum
    the world painted there, each feature of it, and its correlation with the label; the first feature to
    enter a path is the one most correlated with the label, so it must be one of the top three here.
    """
    world, _, table = sim
    root = Path(world.out_dir)
    with rasterio.open(root / "truth" / "surface.tif") as ds:
        truth = np.array(list(ds.sample(zip(table["x"], table["y"], strict=True))))
    with rasterio.open(root / "truth" / "brightness.tif") as ds:
        bright = np.array(list(ds.sample(zip(table["x"], table["y"], strict=True))))[:, 0]
    material, base = truth[:, 0], truth[:, 1]
    mine = table["_mine"].to_numpy()
    keep = (np.isin(material, MINE_SURFACES) & (mine == 1)) | (np.isin(material, NATURAL_BARE) & (mine == 0))
    assert 500 < (keep & (mine == 1)).sum() and 500 < (keep & (mine == 0)).sum()
    palette = json.loads((root / "manifest.json").read_text())["truth"]["palette"]
    lib = library()
    index = {n: i for i, n in reversed(list(enumerate(lib.names)))}
    spectra = np.array([lib.values[index[n]] if n in index else np.zeros(12) for n in palette])
    refl = bright[keep, None] * spectra[base[keep]]
    truth_df = pd.DataFrame({b: refl[:, BANDS.index(b)] for b in BANDS})
    names, F = numpy_features(truth_df)
    yk = mine[keep].astype(float)
    signed = np.array([np.corrcoef(F[:, j], yk)[0, 1] for j in range(F.shape[1])])
    expected = [names[j] for j in np.argsort(-np.abs(signed))[:3]]
    assert all(n.startswith("ND_") for n in expected)  # ratios: brightness texture cancels

    ds = from_frame(table[keep].reset_index(drop=True), FeatureSpec())
    for fit in (
        logistic(ds.X, ds.mine, ds.features, n_penalties=12, span=1.0),
        lasso(ds.X, ds.mine, ds.features, n_penalties=30),
    ):
        order = dropout_order(fit)
        first, _, sign = order[0]
        assert first in expected, (fit.kind, order[:5], expected)
        assert sign == np.sign(signed[names.index(first)]) == -1  # lower on mines, as the spectra say


@settings(max_examples=40, deadline=None)
@given(
    groups=st.lists(st.integers(0, 9), min_size=20, max_size=200),
    pos=st.lists(st.booleans(), min_size=200, max_size=200),
    scheme=st.sampled_from(["holdout", "logo", "kfold"]),
    seed=st.integers(0, 5),
)
def test_no_group_in_two_splits(groups, pos, scheme, seed):
    g = np.array(groups)
    positive = np.array(pos[: len(g)])
    n_groups = len(set(groups))
    spec = SplitSpec(scheme=scheme, folds=3, seed=seed)
    if n_groups < 3 or (scheme == "kfold" and n_groups < 3):
        with pytest.raises(InputError):
            make_folds(g, positive, spec)
        return
    folds = make_folds(g, positive, spec)
    for f in folds:
        tr, va, te = set(g[f.train]), set(g[f.val]), set(g[f.test])
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr and va and te and (tr | va | te) == set(groups)
        assert not (f.train & f.val).any() and not (f.train & f.test).any() and not (f.val & f.test).any()
    tests = [x for f in folds for x in f.test_groups]
    if scheme in ("logo", "kfold"):
        assert sorted(tests) == sorted(set(groups))  # each group is tested exactly once


def test_targets_patches_and_edges(sim):
    _, pixels, table = sim
    d = np.array([-500.0, -50.0, 0.0, 30.0, 400.0])
    m = (d < 0).astype(float)
    assert np.allclose(TargetSpec("distance", "clip", 100).apply(d, m), [100, 50, 0, -30, -100])
    assert np.allclose(TargetSpec("distance", "tanh", 100).apply(d, m), 100 * np.tanh(-d / 100))
    assert np.allclose(TargetSpec("binary").apply(d, m), m)
    one = table[table["cell"] == table["cell"].iloc[0]]
    ds = from_frame(one, FeatureSpec(bands=("B4", "B8"), patch=4))
    ref = one.assign(r=one["row"] // 4, c=one["col"] // 4).groupby(["r", "c"])[["B4", "B8", "_mine"]].mean()
    np.testing.assert_allclose(ds.X[:, 0], ref["B4"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(ds.X[:, 2], (ref["B8"] - ref["B4"]) / (ref["B8"] + ref["B4"]), rtol=1e-6)
    np.testing.assert_allclose(ds.mine, ref["_mine"].to_numpy())
    from gee_mining.ml.study import load_dataset

    near = np.abs(read_pixel_table(pixels, ["distance"])["distance"].to_numpy()) < 25
    full = load_dataset(pixels, FeatureSpec(bands=("B4", "B8")))
    cut = load_dataset(pixels, FeatureSpec(bands=("B4", "B8")), edge_m=25)
    assert len(full) - len(cut) == near.sum() == cut.dropped["near an edge"] > 0
    rows = read_pixel_table(pixels)  # every cell's rows, as the files hold them, cell after cell
    b4, b8 = rows["B4"].to_numpy(np.float64), rows["B8"].to_numpy(np.float64)
    np.testing.assert_allclose(full.X, np.column_stack([b4, b8, (b8 - b4) / (b8 + b4)]), rtol=1e-6)
    assert full.cells.tolist() == rows["cell"].astype(str).tolist()
    assert (np.abs(cut.distance) >= 25).all()


def test_cli_runs_the_study_and_writes_tables_plots_and_the_model(sim, tmp_path, capsys):
    from gee_mining.cli.main import main

    _, pixels, table = sim
    out = tmp_path / "study"
    rc = main(["study", "run", "--pixels", str(pixels), "--out", str(out), "--penalties", "12",
               "--logistic-penalties", "6", "--models", "logistic,random_forest", "--sample-per-cell", "500",
               "--split-by", "cell", "--val-fraction", "0.34", "--test-fraction", "0.34"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "which channel combinations" in printed
    for name in ("ranking", "models", "metrics_lasso", "metrics_logistic", "path_lasso", "dropout_logistic"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.parquet").is_file()
    for name in ("metrics_vs_penalty", "weights_vs_penalty", "dropout_order", "model_comparison"):
        assert (out / f"{name}.png").stat().st_size > 5000
    metrics = pd.read_parquet(out / "metrics_lasso.parquet")
    assert set(metrics["split"]) == {"train", "val", "test"} and metrics["penalty_index"].nunique() == 12
    model = json.loads((out / "model_logistic.json").read_text())
    keys = ["kind", "features", "mean", "scale", "coef", "intercept", "threshold", "target", "source"]
    assert sorted(model) == sorted(keys) and model["kind"] == "logistic" and model["target"] == "binary"
    assert model["features"] and all(f in [*BANDS, *normalized_difference_names(BANDS)] for f in model["features"])
    # the JSON alone scores pixels: (x - mean) / scale . coef + intercept, features from the bands with numpy
    names, X = numpy_features(table)
    idx = [names.index(f) for f in model["features"]]
    score = ((X[:, idx] - model["mean"]) / model["scale"]) @ model["coef"] + model["intercept"]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(table["_mine"], score) > 0.9


def test_bad_input_is_a_clear_error_and_writes_nothing(sim, tmp_path, capsys):
    from gee_mining.cli.main import main

    _, pixels, table = sim
    with pytest.raises(InputError, match="lacks column"):
        from_frame(table.drop(columns=["B8"]), FeatureSpec())
    with pytest.raises(InputError, match="scheme"):
        SplitSpec(scheme="random")
    with pytest.raises(InputError, match="no such column|no column|lacks"):
        run_study(pixels, StudySpec(split=SplitSpec(by="biome")))
    with pytest.raises(InputError, match="distinct groups"):
        run_study(pixels, StudySpec(split=SplitSpec(by="country"), models=()))
    out = tmp_path / "never"
    assert main(["study", "run", "--pixels", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "no pixel table" in capsys.readouterr().err and not out.exists()
    assert main(["study", "run", "--pixels", str(pixels), "--out", str(out), "--target", "area"]) == 2
    assert not out.exists() and not list(tmp_path.glob(".partial-*"))


@pytest.mark.parametrize("kind", ["logistic", "lasso"])
def test_exported_model_deploys_server_side_with_the_same_scores(sim, tmp_path, kind):
    """The hand-off: the study's model JSON, read by ``classify.LinearModel`` and compiled to an ee.Image on the
    local engine over the cell's composite, scores every pixel as numpy does from the JSON and the pixel table
    (the LASSO on the distance target: positive inside mines, so "mine" means score > 0 on both sides)."""
    import ee

    import gee_mining
    from gee_mining.contracts.lattice import pixel_grid
    from gee_mining.ml import classify as C
    from gee_mining.ml.study import export_linear_model
    from gee_mining.steps.sentinel2 import composite

    world, pixels, table = sim
    spec = StudySpec(paths=(kind,), models=(), n_penalties=8, n_logistic_penalties=4, max_logistic_rows=3000,
                     split=SplitSpec(by="cell", val_fraction=0.34, test_fraction=0.34))  # fmt: skip
    result = run_study(pixels, spec, sample_per_cell=800)
    path = tmp_path / f"model_{kind}.json"
    export_linear_model(result, path, kind=kind, penalty="nonzero:6")
    model = C.LinearModel.read(path)
    assert model.kind == kind and model.target == ("binary" if kind == "logistic" else "distance")
    cell = sorted(table["cell"].unique())[0]
    rows = table[table["cell"] == cell]
    cx, cy = (int(v) for v in cell[1:].split("_"))  # the fixture names cells c{cell_x}_{cell_y}
    row = {"name": cell, "epsg": int(rows.iloc[0]["epsg"]), "zoom": 19, "cell_size": CELL, "cell_x": cx, "cell_y": cy}
    grid = pixel_grid(row)
    catalog = Path(world.out_dir).parent / "catalog.toml"
    gee_mining.connect("local", project="gee-mining-test", catalog=catalog)
    out = ee.data.computePixels({"expression": C.compile_linear(model, composite(row, SPEC.composite)),
                                 "fileFormat": "NUMPY_NDARRAY", "grid": grid.ee_grid()})  # fmt: skip
    names, X = numpy_features(rows)
    idx = [names.index(f) for f in model.features]
    want = ((X[:, idx] - np.array(model.mean)) / np.array(model.scale)) @ np.array(model.coef) + model.intercept
    got = out["score"][rows["row"].to_numpy(), rows["col"].to_numpy()]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))
    mine = out["mine"][rows["row"].to_numpy(), rows["col"].to_numpy()]
    clear = np.abs(want - (np.log(model.cutoff / (1 - model.cutoff)) if kind == "logistic" else model.cutoff)) > 1e-3
    np.testing.assert_array_equal(mine[clear], (want > (np.log(model.cutoff / (1 - model.cutoff))
                                                        if kind == "logistic" else model.cutoff))[clear])  # fmt: skip


def test_a_validation_split_of_one_class_is_reported_and_summary_json_stays_valid(sim, tmp_path):
    """Mines in one region only: the validation split holds background alone and its AUC is undefined. The study
    says so (a warning, in summary.json too), and summary.json is strict JSON (null, never a bare NaN)."""
    from gee_mining.ml.study.run import write_outputs

    _, _, table = sim
    table = table.iloc[::8].reset_index(drop=True)  # every cell, an eighth of its pixels: the splits are by region
    mine_cells = {c for c, m in table.groupby("cell")["_mine"].max().items() if m > 0}
    region = np.where(table["cell"].isin(mine_cells), "R1", np.array(["R2", "R3", "R4"])[np.arange(len(table)) % 3])
    data = from_frame(table.assign(region=region), FeatureSpec(), group_columns=("region",))
    spec = StudySpec(split=SplitSpec("region", "holdout", 5, 0.3, 0.3, 0), paths=("logistic",), models=(),
                     n_logistic_penalties=3)  # fmt: skip
    result = run_study(data, spec)
    assert any("validation split holds no mine pixel" in w for w in result.warnings)
    write_outputs(result, tmp_path / "study")

    def no_nan(token):
        raise AssertionError(f"summary.json holds a bare {token}")

    summary = json.loads((tmp_path / "study" / "summary.json").read_text(), parse_constant=no_nan)
    assert any("validation AUC is undefined" in w for w in summary["warnings"])
    assert summary["logistic"]["metrics"]["val"]["auc"] is None


def test_non_numeric_pixel_values_are_a_clear_error(sim, tmp_path):
    _, _, table = sim
    bad = table.copy()
    bad["B4"] = bad["B4"].astype(object)
    bad.loc[bad.index[3], "B4"] = "n/a"
    with pytest.raises(InputError, match="column 'B4' holds 'n/a', not a number"):
        from_frame(bad, FeatureSpec())
    write_pixel_table(bad.astype({"B4": str}), tmp_path / "bad")
    with pytest.raises(InputError, match="not a number"):
        run_study(tmp_path / "bad", StudySpec(models=()))

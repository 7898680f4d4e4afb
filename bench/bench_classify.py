"""Classifying one 550 x 550 cell (zoom 14, 5500 m at 10 m) on the local engine: a compiled linear
(LASSO / logistic) model vs a compiled 100-tree random forest, measured side by side in one run.

Both models are fitted offline with scikit-learn on the same pixels and compiled to Earth Engine
(``compile_linear``: an image expression; ``compile_forest``: ``ee.Classifier.decisionTreeEnsemble``
of 100 tree strings); each request computes the same input features (a synthetic 12-band image with
the pipeline's normalised differences) and then the model, so the ratio of times is the cost of the
model itself plus the shared feature cost. Also printed: the features alone, to separate the two.

Usage: ``.venv/bin/python bench/bench_classify.py [--repeat 3] [--trees 100]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
FEATURES = ("B2", "B4", "B8", "B11", "B12", "ND_B11_B8", "ND_B8_B4", "ND_B12_B4")
GRID = {
    "dimensions": {"width": 550, "height": 550},
    "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": 500000, "shearY": 0, "scaleY": -10,
                        "translateY": 7000000},
    "crsCode": "EPSG:32719",
}  # fmt: skip


def synthetic_bands(ee):
    """Six smooth, differently patterned reflectance-like bands in [0.02, 0.5]."""
    xy = ee.Image.pixelCoordinates(ee.Projection("EPSG:32719"))
    x, y = xy.select("x").divide(173.0), xy.select("y").divide(211.0)
    bands = []
    for i, b in enumerate(BANDS):
        wave = x.multiply(1 + 0.3 * i).sin().add(y.multiply(1.7 - 0.2 * i).cos()).add(x.add(y).multiply(0.11 * i).sin())
        bands.append(wave.multiply(0.08).add(0.26).rename(b))
    return ee.Image.cat(bands).toFloat()


def timed(ee, image, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": GRID})
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()

    import ee
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import gee_mining
    from gee_mining.ml.classify import LinearModel, compile_forest, compile_linear, feature_image

    gee_mining.connect("local", project="gee-mining-bench")
    features = feature_image(synthetic_bands(ee), FEATURES)
    arr = ee.data.computePixels({"expression": features, "fileFormat": "NUMPY_NDARRAY", "grid": GRID})
    x = np.stack([arr[f] for f in FEATURES], axis=-1).reshape(-1, len(FEATURES)).astype(np.float64)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(x), 20000, replace=False)
    score = x[:, 5] - 0.5 * x[:, 6] + 0.3 * x[:, 7]
    y = (score + rng.normal(0, 0.05, len(x)) > np.median(score)).astype(int)
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[rows], y[rows])
    forest = RandomForestClassifier(n_estimators=args.trees, min_samples_leaf=5, random_state=0, n_jobs=1)
    forest.fit(x[rows], y[rows])
    linear_img = compile_linear(LinearModel.from_sklearn(logistic, FEATURES), features, features_ready=True)
    forest_img = features.classify(compile_forest(forest, FEATURES), "probability")
    nodes = sum(t.tree_.node_count for t in forest.estimators_)

    timed(ee, linear_img.select("probability"), 1)  # warm-up
    lin, rf, feat = [], [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine state
        feat += timed(ee, features, 1)
        lin += timed(ee, linear_img.select("probability"), 1)
        rf += timed(ee, forest_img, 1)
    m_feat, m_lin, m_rf = (statistics.median(v) for v in (feat, lin, rf))
    print(f"550 x 550 pixels ({550 * 550:,}), {len(FEATURES)} features, local engine, median of {args.repeat}")
    print(f"  features only                     {m_feat:7.3f} s")
    print(f"  compiled logistic (image algebra) {m_lin:7.3f} s")
    print(f"  compiled forest ({args.trees} trees, {nodes:,} nodes) {m_rf:7.3f} s")
    print(f"  forest / linear time ratio:        {m_rf / m_lin:7.1f} x")
    print(f"  model-only ratio (minus features): {(m_rf - m_feat) / max(m_lin - m_feat, 1e-9):7.1f} x")


if __name__ == "__main__":
    main()

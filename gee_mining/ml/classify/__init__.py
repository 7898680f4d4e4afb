"""Step 3, server side: Earth Engine classifiers and clusterers on the transformed image, and offline
models (linear / logistic, scikit-learn trees and forests) compiled to Earth Engine.

See docs/classify.md. ``model``: ``compile_linear``, ``compile_forest`` of the formats of ``contracts.models``
(:class:`LinearModel`, the pixel study's JSON hand-off, and tree strings). ``pipeline``: samples split by
cell, training, accuracy on held-out cells, clusterers matched to labels, probability maps and their export.
"""

from gee_mining.contracts.models import LinearModel, forest_to_strings, tree_to_string
from gee_mining.ml.classify.model import compile_forest, compile_linear, forest_image
from gee_mining.ml.classify.pipeline import (
    CLASSIFIERS,
    CLUSTERERS,
    DEFAULT_FEATURES,
    SAVED_CLASSIFIERS,
    Accuracy,
    ClassifySpec,
    accuracy,
    cell_features,
    cell_region,
    classifier_asset_id,
    cluster_accuracy,
    clusters_to_labels,
    export_probability,
    export_samples,
    exported_classifier,
    exported_samples,
    fetch_samples,
    held_out_samples,
    load_classifier,
    match_clusters,
    matrix_figures,
    probability_image,
    samples_asset_id,
    split_cells,
    train,
    train_clusterer,
    training_samples,
)
from gee_mining.steps.indices import feature_image

__all__ = [
    "CLASSIFIERS",
    "CLUSTERERS",
    "DEFAULT_FEATURES",
    "SAVED_CLASSIFIERS",
    "Accuracy",
    "ClassifySpec",
    "LinearModel",
    "accuracy",
    "cell_features",
    "cell_region",
    "classifier_asset_id",
    "cluster_accuracy",
    "clusters_to_labels",
    "compile_forest",
    "compile_linear",
    "export_probability",
    "export_samples",
    "exported_classifier",
    "exported_samples",
    "feature_image",
    "fetch_samples",
    "forest_image",
    "forest_to_strings",
    "held_out_samples",
    "load_classifier",
    "match_clusters",
    "matrix_figures",
    "probability_image",
    "samples_asset_id",
    "split_cells",
    "train",
    "train_clusterer",
    "training_samples",
    "tree_to_string",
]

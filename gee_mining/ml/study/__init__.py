"""The pixel study: which Sentinel-2 channel combinations make mines stand out, and how cheap a pixel model can be.

From pixel tables (``gee_mining.steps.pixel_tables``, read cell by cell, only the needed columns):

- features: raw bands, all pairwise normalised differences ``ND_a_b`` (66 for 12 bands), named
  spyndex indices, optionally as k x k patch means (``data``);
- targets: ``_mine`` (binary) and the signed distance to a mine's edge (clipped or tanh-scaled),
  pixels near an edge dropped on request (``data.TargetSpec``);
- splits by cell or any metadata column: holdout, leave-one-group-out, grouped k-fold (``splits``);
- the LASSO path (continuous label) and the L1-logistic path (binary label) on standardised
  features, with metrics per penalty and the drop-out order (``paths``);
- logistic regression, random forest, histogram gradient boosting with their per-pixel cost (``models``);
- tables (CSV, Parquet), plots (PNG), a ranked answer and the chosen linear model as JSON (``run``).

``run_study(pixel_table_dir, StudySpec(...))`` runs it all; ``write_outputs`` writes it;
``export_linear_model`` hands a linear model to the classifiers. See docs/study.md.
"""

from gee_mining.contracts.features import normalized_difference
from gee_mining.ml.study.data import Dataset, FeatureSpec, TargetSpec, feature_matrix, from_frame, load_dataset
from gee_mining.ml.study.models import MODELS, compare_models
from gee_mining.ml.study.paths import Path as RegPath
from gee_mining.ml.study.paths import Standardizer, dropout_order, lasso, logistic
from gee_mining.ml.study.run import (
    StudyResult,
    StudySpec,
    choose_penalty,
    export_linear_model,
    rank_features,
    run_study,
    summary,
    write_outputs,
)
from gee_mining.ml.study.splits import Fold, SplitSpec, make_folds

__all__ = [
    "Dataset",
    "FeatureSpec",
    "TargetSpec",
    "feature_matrix",
    "from_frame",
    "load_dataset",
    "normalized_difference",
    "MODELS",
    "compare_models",
    "RegPath",
    "Standardizer",
    "dropout_order",
    "lasso",
    "logistic",
    "StudyResult",
    "StudySpec",
    "choose_penalty",
    "export_linear_model",
    "rank_features",
    "run_study",
    "summary",
    "write_outputs",
    "Fold",
    "SplitSpec",
    "make_folds",
]

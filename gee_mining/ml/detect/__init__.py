"""Object detection of mines with YOLO (ultralytics), offline, from exported per-cell GeoTIFFs.

The pipeline (see docs/detect.md):

1. :func:`~gee_mining.ml.detect.dataset.build_dataset` - per-cell GeoTIFFs + mine polygons -> YOLO images,
   labels (one box per polygon part) and ``data.yaml``; RGB PNG or multispectral multi-page TIFF.
2. :mod:`~gee_mining.ml.detect.splits` - geographic splits and k-fold folds (groups never straddle).
3. :func:`~gee_mining.ml.detect.train.train` - ultralytics training from a model yaml or your weights.
4. :mod:`~gee_mining.ml.detect.evaluate` - mAP50, mAP50-95, precision, recall, cell-level metrics, CV.
5. :func:`~gee_mining.ml.detect.predict.predict_cells` - boxes -> EPSG:4326 polygons with scores,
   merged across cell edges, written as GeoJSON / GeoParquet.

Nothing here reaches the network: :mod:`~gee_mining.ml.detect.offline` configures ultralytics and
guards every run. Importing this package does not import torch or ultralytics.
"""

from __future__ import annotations

from gee_mining.ml.detect.dataset import DatasetSpec, DetectDataset, build_dataset, open_dataset

__all__ = ["DatasetSpec", "DetectDataset", "build_dataset", "open_dataset"]

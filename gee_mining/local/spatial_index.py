"""A bounding-box index over a collection's elements, to prune spatial filters.

Built once per collection value (collections are immutable) and kept on it.
Pruning is conservative: only elements whose longitude/latitude bounding box
cannot meet the filter geometry's are skipped; the filter then tests the rest
exactly. Elements spanning more than a degree (whose geodesic edges may bulge
beyond their vertices' box) and elements without geometry are always tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

_SMALL_DEGREES = 1.0
_PAD_DEGREES = 1e-3


class _Index:
    def __init__(self, elements: list[Any]):
        from .geometry import Geometry, geodesic_lonlat

        boxes, small, always = [], [], []
        for i, element in enumerate(elements):
            geom = element if isinstance(element, Geometry) else getattr(element, "geometry", None)
            if callable(geom) or geom is None:
                footprint = element.footprint() if hasattr(element, "footprint") else None
                if footprint is None:
                    always.append(i)
                    continue
                x0, y0, x1, y1 = footprint.bounds
            else:
                shape = geom.shape if geom.proj.crs == "EPSG:4326" and not geom.geodesic else geodesic_lonlat(geom, 1.0)
                if shape.is_empty:
                    always.append(i)
                    continue
                x0, y0, x1, y1 = shape.bounds
            if x1 - x0 > _SMALL_DEGREES or y1 - y0 > _SMALL_DEGREES:
                always.append(i)
            else:
                small.append(i)
                boxes.append(shapely.box(x0, y0, x1, y1))
        self.small = np.asarray(small, dtype=np.int64)
        self.always = np.asarray(always, dtype=np.int64)
        self.tree = shapely.STRtree(boxes) if boxes else None

    def query(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        x0, y0, x1, y1 = bounds
        box = shapely.box(x0 - _PAD_DEGREES, y0 - _PAD_DEGREES, x1 + _PAD_DEGREES, y1 + _PAD_DEGREES)
        hits = self.small[self.tree.query(box)] if self.tree is not None else np.empty(0, dtype=np.int64)
        return np.sort(np.concatenate([hits, self.always]))


def candidates_intersecting(collection: Any, geometry: Any) -> list[Any]:
    """The collection's elements that may intersect ``geometry``, in collection order."""
    from .geometry import Geometry, geodesic_lonlat

    if not isinstance(geometry, Geometry):
        return collection.features
    index = getattr(collection, "spatial_index", None)
    if index is None:
        index = _Index(collection.features)
        collection.spatial_index = index
    shape = geodesic_lonlat(geometry, 1.0)
    if shape.is_empty:
        return []
    return [collection.features[i] for i in index.query(shape.bounds)]

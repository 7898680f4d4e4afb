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

from gee_mining.local.values.geometry import Geometry, geodesic_lonlat, in_crs_many

_SMALL_DEGREES = 1.0
_PAD_DEGREES = 1e-3


class _Index:
    def __init__(self, elements: list[Any]):
        positions, geoms, footprints, always = [], [], {}, []
        for i, element in enumerate(elements):
            geom = element if isinstance(element, Geometry) else getattr(element, "geometry", None)
            if callable(geom) or geom is None:
                footprint = element.footprint() if hasattr(element, "footprint") else None
                if footprint is None:
                    always.append(i)
                else:
                    footprints[i] = footprint
            else:
                positions.append(i)
                geoms.append(geom)
        # Longitude/latitude shapes: planar ones as they are, the rest with geodesic edges (reprojected once).
        plain = [g.proj.crs == "EPSG:4326" and not g.geodesic for g in geoms]
        shapes = np.empty(len(geoms) + len(footprints), dtype=object)
        shapes[: len(geoms)] = [g.shape if p else None for g, p in zip(geoms, plain, strict=True)]
        other = [k for k, p in enumerate(plain) if not p]
        for k, shape in zip(other, in_crs_many([geoms[k] for k in other], "EPSG:4326", 1.0, True), strict=True):
            shapes[k] = shape
        shapes[len(geoms) :] = list(footprints.values())
        positions = np.asarray(positions + list(footprints), dtype=np.int64)
        b = shapely.bounds(shapes).reshape(-1, 4)
        empty = shapely.is_empty(shapes)
        big = (b[:, 2] - b[:, 0] > _SMALL_DEGREES) | (b[:, 3] - b[:, 1] > _SMALL_DEGREES)
        small = ~empty & ~big
        self.small = positions[small]
        self.always = np.sort(np.concatenate([np.asarray(always, dtype=np.int64), positions[~small]]))
        boxes = shapely.box(b[small, 0], b[small, 1], b[small, 2], b[small, 3])
        self.tree = shapely.STRtree(boxes) if len(boxes) else None

    def query(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        x0, y0, x1, y1 = bounds
        box = shapely.box(x0 - _PAD_DEGREES, y0 - _PAD_DEGREES, x1 + _PAD_DEGREES, y1 + _PAD_DEGREES)
        hits = self.small[self.tree.query(box)] if self.tree is not None else np.empty(0, dtype=np.int64)
        return np.sort(np.concatenate([hits, self.always]))


def _index_of(collection: Any) -> _Index:
    """The collection's index, built on first use and kept with it."""
    index = getattr(collection, "spatial_index", None)
    if index is None:
        index = _Index(collection.features)
        collection.spatial_index = index
    return index


def candidates_intersecting(collection: Any, geometry: Any) -> list[Any]:
    """The collection's elements that may intersect ``geometry``, in collection order."""
    if not isinstance(geometry, Geometry):
        return collection.features
    index = _index_of(collection)
    shape = geodesic_lonlat(geometry, 1.0)
    if shape.is_empty:
        return []
    return [collection.features[i] for i in index.query(shape.bounds)]


def candidates_many(collection: Any, geometries: list[Any]) -> list[np.ndarray]:
    """For each geometry, the indices (ascending) of the collection's elements that may intersect it:
    :func:`candidates_intersecting` for many geometries, with one bulk query of the index."""
    index = _index_of(collection)
    shapes = np.fromiter(in_crs_many(geometries, "EPSG:4326", 1.0, True), dtype=object, count=len(geometries))
    empty = shapely.is_empty(shapes)
    b = shapely.bounds(shapes)
    boxes = shapely.box(b[:, 0] - _PAD_DEGREES, b[:, 1] - _PAD_DEGREES, b[:, 2] + _PAD_DEGREES, b[:, 3] + _PAD_DEGREES)
    per: list[list[np.ndarray]] = [[index.always] for _ in geometries]
    if index.tree is not None and (~empty).any():
        rows = np.nonzero(~empty)[0]
        which, hit = index.tree.query(boxes[rows])
        order = np.argsort(which, kind="stable")
        which, hit = which[order], hit[order]
        cuts = np.searchsorted(which, np.arange(len(rows) + 1))
        for k, row in enumerate(rows):
            per[row].append(index.small[hit[cuts[k] : cuts[k + 1]]])
    return [
        np.empty(0, dtype=np.int64) if empty[i] else np.sort(np.concatenate(per[i])) for i in range(len(geometries))
    ]

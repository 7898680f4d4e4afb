"""Bringing feature collections back from an engine, page by page.

``getInfo`` on a collection stops at 5,000 features (Earth Engine's limit);
``table:computeFeatures`` pages through any number. Works on both engines.

A page is an interactive answer, which Earth Engine holds to about 10 MB: ``page_size_for`` chooses the
number of features a page asks for from the properties each feature carries, so that a page stays under
``PAGE_BYTES`` (4 MB) whatever the width of the table (5,000 features of 90 pixel-table properties are
about 15 MB).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import ee

from gee_mining.contracts.gc_pause import deferred_gc

PAGE_BYTES = 4 * 1024 * 1024
"""The bound on one page's answer: well under Earth Engine's ~10 MB (notes: earth-engine-limits row 1)."""
MAX_PAGE_FEATURES = 5000  # a page asks for at most this (getInfo's element limit)
_FEATURE_BYTES = 96  # {"type":"Feature","geometry":null,"id":"...","properties":{...}} around the properties
_VALUE_BYTES = 32  # one value: the longest JSON number is 24 characters (-1.2345678901234567e-300); short strings


def page_size_for(properties: Sequence[str], max_bytes: int = PAGE_BYTES) -> int:
    """The number of features a ``computeFeatures`` page asks for so that its answer stays under ``max_bytes``:
    each feature's JSON is bounded by its envelope and, per property, ``"name":`` and a value of at most
    ``_VALUE_BYTES`` (numbers, or strings as short as a cell's name). Between 1 and ``MAX_PAGE_FEATURES``."""
    per_feature = _FEATURE_BYTES + sum(len(name) + 4 + _VALUE_BYTES for name in properties)
    return max(1, min(MAX_PAGE_FEATURES, int(max_bytes) // per_feature))


def iter_features(collection: Any, page_size: int = 1000) -> Iterator[dict]:
    """Yield the GeoJSON features of an ``ee.FeatureCollection``, paging as needed."""

    params: dict[str, Any] = {"expression": collection, "pageSize": page_size}
    while True:
        with deferred_gc():  # a page decodes to hundreds of thousands of objects the collector need not walk
            page = ee.data.computeFeatures(dict(params))
        yield from page.get("features", [])
        token = page.get("nextPageToken")
        if not token:
            return
        params["pageToken"] = token


def fetch_features(collection: Any, page_size: int = 1000) -> list[dict]:
    """All features of a collection as a list of GeoJSON dicts."""
    with deferred_gc():
        return list(iter_features(collection, page_size))

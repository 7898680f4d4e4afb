"""Bringing feature collections back from an engine, page by page.

``getInfo`` on a collection stops at 5,000 features (Earth Engine's limit);
``table:computeFeatures`` pages through any number. Works on both engines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ee

from gee_mining.contracts.gc_pause import deferred_gc


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

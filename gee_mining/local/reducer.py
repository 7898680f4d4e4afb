"""Earth Engine reducer algorithms."""

from __future__ import annotations

"""Earth Engine dictionary algorithms."""

from __future__ import annotations

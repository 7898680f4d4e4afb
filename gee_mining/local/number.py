"""Earth Engine number algorithms."""

from __future__ import annotations

"""Earth Engine aggregate algorithms."""

from __future__ import annotations

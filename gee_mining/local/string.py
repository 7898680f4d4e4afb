"""Earth Engine string algorithms."""

from __future__ import annotations

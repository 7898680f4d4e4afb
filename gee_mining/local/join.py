"""Earth Engine join algorithms."""

from __future__ import annotations

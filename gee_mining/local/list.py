"""Earth Engine list algorithms."""

from __future__ import annotations

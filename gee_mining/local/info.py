"""``getInfo`` shapes: an engine value as the JSON Earth Engine answers.

Made in one place: plain values map to themselves, engine objects answer
through their ``to_info()`` method (dates as ``{'type': 'Date', 'value':
millis}``, feature collections as GeoJSON with ``columns``, and so on).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import EngineError


def to_info(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer() and math.isfinite(value) and abs(value) < 2**53:
            return value
        return value
    if isinstance(value, list | tuple):
        return [to_info(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_info(v) for k, v in value.items()}
    method = getattr(value, "to_info", None)
    if method is not None:
        return method()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return to_info(value.tolist())
    raise EngineError(f"Cannot return a value of type {getattr(value, 'ee_type', type(value).__name__)}.")

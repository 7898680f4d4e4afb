"""``getInfo`` shapes: an engine value as the JSON Earth Engine answers.

Made in one place: plain values map to themselves, engine objects answer
through their ``to_info()`` method (dates as ``{'type': 'Date', 'value':
millis}``, feature collections as GeoJSON with ``columns``, and so on).
"""

from __future__ import annotations

from typing import Any

from gee_mining.local.core.errors import EngineError

_PLAIN = (type(None), bool, str, int, float)


def to_info(value: Any) -> Any:
    if type(value) in _PLAIN or isinstance(value, bool | str | int | float):
        return value
    if isinstance(value, list | tuple):
        return [v if type(v) in _PLAIN else to_info(v) for v in value]
    if isinstance(value, dict):
        return {str(k): v if type(v) in _PLAIN else to_info(v) for k, v in value.items()}
    method = getattr(value, "to_info", None)
    if method is not None:
        return method()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return to_info(value.tolist())
    raise EngineError(f"Cannot return a value of type {getattr(value, 'ee_type', type(value).__name__)}.")

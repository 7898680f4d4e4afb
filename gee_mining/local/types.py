"""Earth Engine's type names for engine values, and argument checks.

Every engine value class names its Earth Engine type in a class attribute
``ee_type``; plain Python values stand for Number, Boolean, String, List and
Dictionary. :func:`check_argument` applies the promotions the service applies
to arguments (a number where an ErrorMargin is expected, a CRS string where a
Projection is expected) and refuses values of the wrong type with Earth
Engine's message.
"""

from __future__ import annotations

import functools
from typing import Any

from .errors import EngineError
from .signatures import Argument

_NUMBER_TYPES = {"Number", "Float", "Integer", "Long", "Short", "Byte", "Double"}


def ee_type_of(value: Any) -> str:
    """The Earth Engine type name of an engine value (``ee.Algorithms.ObjectType``)."""
    if value is None:
        return "Object"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list | tuple):
        return "List"
    if isinstance(value, dict):
        return "Dictionary"
    return getattr(value, "ee_type", type(value).__name__)


@functools.cache
def _base(type_name: str) -> str:
    return type_name.split("<", 1)[0]


def is_assignable(value: Any, type_name: str) -> bool:
    """Whether Earth Engine accepts ``value`` for an argument of ``type_name``."""
    want = _base(type_name)
    have = ee_type_of(value)
    if want == "Object" or value is None:
        return True
    if want in _NUMBER_TYPES:
        return have in ("Number", "Boolean")
    if want == "Boolean":
        return have in ("Number", "Boolean")
    if want == "Element":
        return have in ("Element", "Feature", "Image", "FeatureCollection", "ImageCollection")
    if want in ("FeatureCollection", "Collection"):
        return have in ("FeatureCollection", "ImageCollection", "Collection")
    if want == "Image":
        return have == "Image"
    if want == "Rectangle":
        return have == "Geometry"
    if want == "Algorithm":
        return have in ("Function", "Algorithm")
    return have == want


_PLAIN = {"Object"}


_FAST_BUILTINS: dict[str, tuple[type, ...]] = {
    **{t: (int, float, bool) for t in _NUMBER_TYPES},
    "Boolean": (bool, int, float),
    "String": (str,),
    "List": (list,),
    "Dictionary": (dict,),
}


@functools.cache
def checker(type_name: str):
    """The check for arguments of ``type_name``, or None where any value passes.

    Values of exactly the expected kind pass at once (most arguments); the
    rest go through promotion and the full check."""
    base = _base(type_name)
    if base in _PLAIN:
        return None
    fast = _FAST_BUILTINS.get(base, ())

    def check(algorithm: str, arg: Argument, value: Any) -> Any:
        if type(value) in fast or getattr(value, "ee_type", None) == base:
            return value
        return check_argument(algorithm, arg, value)

    return check


def check_argument(algorithm: str, arg: Argument, value: Any) -> Any:
    """Promote ``value`` as Earth Engine does, or raise its type error."""
    want = _base(arg.type)
    if getattr(value, "ee_type", None) == want:
        return value
    if value is not None:
        value = _promote(want, value)
    if not is_assignable(value, arg.type):
        shown = repr(value) if isinstance(value, str | int | float) else ee_type_of(value)
        raise EngineError(
            f"{algorithm}, argument '{arg.name}': Invalid type.\n"
            f"Expected type: {arg.type}.\n"
            f"Actual type: {ee_type_of(value)}.\n"
            f"Actual value: {shown}"
        )
    return value


def _promote(want: str, value: Any) -> Any:
    have = ee_type_of(value)
    if want == have:
        return value
    if want == "Projection" and have == "String":
        from .projection import Projection

        return Projection.from_crs(value)
    if want == "ErrorMargin" and have == "Number":
        from .geometry import ErrorMargin

        return ErrorMargin(float(value), "meters")
    if want == "Date" and have in ("Number", "String"):
        from .date import Date

        return Date.coerce(value)
    if want == "Geometry" and have == "Feature":
        return value.geometry
    if want == "ImageCollection" and have == "FeatureCollection":
        # ee.ImageCollection(fc) is only a cast on Earth Engine: a collection of images is one.
        from .image import Image, ImageCollection

        if all(isinstance(f, Image) for f in value.features):
            return ImageCollection(value.features, value.properties, value.id)
    return value

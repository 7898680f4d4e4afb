"""Earth Engine's type names for engine values, and argument checks.

Every engine value class names its Earth Engine type in a class attribute
``ee_type``; plain Python values stand for Number, Boolean, String, List and
Dictionary. :func:`check_argument` applies the promotions the service applies
to arguments (a number where an ErrorMargin is expected, a CRS string where a
Projection is expected) and refuses values of the wrong type with Earth
Engine's message.

The promotions and the signature defaults that need a value class
(Projection, ErrorMargin, Date, ImageCollection) are registered here by the
modules that define those classes (:func:`promotion`, :func:`signature_default`),
so that this module depends on none of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from gee_mining.contracts.signatures import Argument
from gee_mining.local.core.errors import EngineError

_PROMOTIONS: dict[tuple[str, str], Callable[[Any], Any]] = {}
_SIGNATURE_DEFAULTS: dict[str, Callable[[dict], Any]] = {}


def promotion(want: str, *have: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register ``func(value)`` as the promotion of a value of type ``have`` given for an argument of type
    ``want`` (it may return the value unchanged where it does not apply)."""

    def register(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        for kind in have:
            _PROMOTIONS[(want, kind)] = func
        return func

    return register


def signature_default(type_name: str) -> Callable[[Callable[[dict], Any]], Callable[[dict], Any]]:
    """Register ``func(json)``: the engine value of a signature default given as a JSON object
    ``{"type": type_name, ...}`` (the signature list spells ErrorMargin and Projection defaults so)."""

    def register(func: Callable[[dict], Any]) -> Callable[[dict], Any]:
        _SIGNATURE_DEFAULTS[type_name] = func
        return func

    return register


def signature_default_decoder(default: Any) -> Callable[[dict], Any] | None:
    """The registered maker of the value of ``default`` if it is such a JSON object, else None."""
    if isinstance(default, dict):
        return _SIGNATURE_DEFAULTS.get(default.get("type"))
    return None


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
    if want == "Geometry" and have == "Feature":
        return value.geometry
    promote = _PROMOTIONS.get((want, have))
    return value if promote is None else promote(value)

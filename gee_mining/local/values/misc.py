"""Algorithms outside any family: If, IsEqual, ObjectType, Describe."""

from __future__ import annotations

import math
from typing import Any

from gee_mining.local.core.info import to_info
from gee_mining.local.core.registry import algorithm
from gee_mining.local.core.types import ee_type_of


def truthy(value: Any) -> bool:
    """Earth Engine's truth: null, 0, NaN, false, empty string/list/dictionary are false."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


@algorithm("If", lazy=True)
def if_(condition, trueCase, falseCase):  # noqa: N803 - Earth Engine's argument names
    """Only the chosen branch is evaluated."""
    return trueCase() if truthy(condition()) else falseCase()


@algorithm("IsEqual")
def is_equal(left, right):
    return to_info(left) == to_info(right) and ee_type_of(left) == ee_type_of(right)


_INT32 = range(-(2**31), 2**31)


@algorithm("ObjectType")
def object_type(value):
    """Numbers name their kind as Earth Engine does: ``Integer`` (32-bit), ``Long``, ``Float``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "Integer" if value in _INT32 else "Long"
    if isinstance(value, float):
        return "Float"
    return ee_type_of(value)


@algorithm("Describe")
def describe(input):
    return to_info(input)

"""Earth Engine dictionary algorithms (``ee.Dictionary``).

Dictionaries are Python dicts with string keys. Earth Engine keeps a
dictionary's keys in natural (sorted) order, so every dictionary made here is
sorted by key; ``keys()`` and ``values()`` follow that order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.core.types import ee_type_of
from gee_mining.local.values.string import selector_pattern


def _sorted(entries: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(entries.items()))


def _key(algorithm_name: str, key: Any) -> str:
    if not isinstance(key, str):
        raise EngineError(f"{algorithm_name}: Dictionary keys must be strings, got {ee_type_of(key)}.")
    return key


def _missing(algorithm_name: str, key: str) -> EngineError:
    return EngineError(f"{algorithm_name}: Dictionary does not contain key: '{key}'.")


def _matching(algorithm_name: str, keys: list[str], selectors: list[str], ignore_missing: bool) -> list[str]:
    """Keys that a selector (a key or a regular expression matching whole keys) names, in key order."""
    chosen: set[str] = set()
    for selector in selectors:
        pattern = selector_pattern(_key(algorithm_name, selector))
        hits = [k for k in keys if k == selector or (pattern is not None and pattern.fullmatch(k))]
        if not hits and not ignore_missing:
            raise EngineError(f"{algorithm_name}: Pattern '{selector}' did not match any keys.")
        chosen.update(hits)
    return [k for k in keys if k in chosen]


@algorithm("Dictionary")
def dictionary(input):
    """From a dictionary, or a list of alternating keys and values; no input gives {}."""
    if input is None:
        return {}
    if isinstance(input, dict):
        return _sorted({_key("Dictionary", k): v for k, v in input.items()})
    if isinstance(input, list):
        if len(input) % 2:
            raise EngineError("Dictionary: A list of alternating keys and values must have an even length.")
        return _sorted({_key("Dictionary", input[i]): input[i + 1] for i in range(0, len(input), 2)})
    raise EngineError(f"Dictionary: Can't convert a value of type {ee_type_of(input)} to a Dictionary.")


@algorithm("Dictionary.combine")
def dictionary_combine(first, second, overwrite):
    """``second`` wins duplicate keys unless ``overwrite`` is false; null values are dropped."""
    a = {k: v for k, v in first.items() if v is not None}
    b = {k: v for k, v in second.items() if v is not None}
    merged = {**a, **b} if overwrite else {**b, **a}
    return _sorted(merged)


@algorithm("Dictionary.contains")
def dictionary_contains(dictionary, key):
    return key in dictionary


@algorithm("Dictionary.fromLists")
def dictionary_from_lists(keys, values):
    if len(keys) != len(values):
        raise EngineError(
            f"Dictionary.fromLists: Keys and values must have the same length ({len(keys)} != {len(values)})."
        )
    return _sorted({_key("Dictionary.fromLists", k): v for k, v in zip(keys, values, strict=True)})


@algorithm("Dictionary.get")
def dictionary_get(dictionary, key, defaultValue):  # noqa: N803 - Earth Engine's argument names
    """A missing key gives ``defaultValue``, or an error when there is none."""
    if key in dictionary:
        return dictionary[key]
    if defaultValue is not None:
        return defaultValue
    raise _missing("Dictionary.get", key)


def _typed_get(name: str, dictionary: dict, key: str, want: str, check: Callable[[Any], bool]) -> Any:
    if key not in dictionary:
        raise _missing(name, key)
    value = dictionary[key]
    if not check(value):
        raise EngineError(f"{name}: Expected a {want} for key '{key}', got {ee_type_of(value)}.")
    return value


@algorithm("Dictionary.getGeometry")
def dictionary_get_geometry(dictionary, key):
    return _typed_get("Dictionary.getGeometry", dictionary, key, "Geometry", lambda v: ee_type_of(v) == "Geometry")


@algorithm("Dictionary.getNumber")
def dictionary_get_number(dictionary, key):
    return _typed_get(
        "Dictionary.getNumber",
        dictionary,
        key,
        "Number",
        lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    )


@algorithm("Dictionary.getString")
def dictionary_get_string(dictionary, key):
    return _typed_get("Dictionary.getString", dictionary, key, "String", lambda v: isinstance(v, str))


@algorithm("Dictionary.keys")
def dictionary_keys(dictionary):
    return sorted(dictionary)


@algorithm("Dictionary.map")
def dictionary_map(dictionary, baseAlgorithm):  # noqa: N803
    """``baseAlgorithm(key, value)`` for each entry; a null result drops the key."""
    out = {}
    for k in sorted(dictionary):
        v = baseAlgorithm(k, dictionary[k])
        if v is not None:
            out[k] = v
    return out


@algorithm("Dictionary.remove")
def dictionary_remove(dictionary, selectors, ignoreMissing):  # noqa: N803
    drop = set(_matching("Dictionary.remove", sorted(dictionary), selectors, bool(ignoreMissing)))
    return _sorted({k: v for k, v in dictionary.items() if k not in drop})


@algorithm("Dictionary.rename")
def dictionary_rename(dictionary, from_, to, overwrite):
    if len(from_) != len(to):
        raise EngineError(f"Dictionary.rename: 'from' and 'to' must have the same length ({len(from_)} != {len(to)}).")
    for old in from_:
        if old not in dictionary:
            raise _missing("Dictionary.rename", old)
    renamed = dict(zip(from_, to, strict=True))
    out = {k: v for k, v in dictionary.items() if k not in renamed}
    for old, new in renamed.items():
        new = _key("Dictionary.rename", new)
        if new in out and not overwrite:
            raise EngineError(f"Dictionary.rename: Key '{new}' already exists; set overwrite to true to replace it.")
        out[new] = dictionary[old]
    return _sorted(out)


@algorithm("Dictionary.select")
def dictionary_select(dictionary, selectors, ignoreMissing):  # noqa: N803
    keep = _matching("Dictionary.select", sorted(dictionary), selectors, bool(ignoreMissing))
    return {k: dictionary[k] for k in keep}


@algorithm("Dictionary.set")
def dictionary_set(dictionary, key, value):
    return _sorted({**dictionary, _key("Dictionary.set", key): value})


@algorithm("Dictionary.size")
def dictionary_size(dictionary):
    return len(dictionary)


@algorithm("Dictionary.values")
def dictionary_values(dictionary, keys):
    """All values in key order, or those of ``keys`` in the order given."""
    if keys is None:
        return [dictionary[k] for k in sorted(dictionary)]
    for k in keys:
        if k not in dictionary:
            raise _missing("Dictionary.values", k)
    return [dictionary[k] for k in keys]

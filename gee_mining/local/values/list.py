"""Earth Engine list algorithms (``ee.List``).

Lists are Python lists. Equality of elements (``contains``, ``indexOf``,
``distinct``, ``remove``...) is Earth Engine's value equality: numbers compare
by value (1 equals 1.0), booleans are not numbers, and lists, dictionaries and
engine objects compare by content (see :func:`canonical`). Negative indices
count from the end of the list.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import Column, algorithm, per_element, vectorised
from gee_mining.local.core.types import ee_type_of
from gee_mining.local.values.date import Date
from gee_mining.local.values.element import Element
from gee_mining.local.values.feature import Feature


def canonical(value: Any) -> Any:
    """A hashable key equal for exactly the values Earth Engine holds equal."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return ("nan",)
        return ("num", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list | tuple):
        return ("list", tuple(canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), canonical(v)) for k, v in value.items())))
    to_info = getattr(value, "to_info", None)
    if to_info is not None:
        return (ee_type_of(value), canonical(to_info()))
    return ("object", id(value))


def _index(algorithm_name: str, values: list, index: int, allow_end: bool = False) -> int:
    """A position in ``values`` from an Earth Engine index (negative counts from the end)."""
    if isinstance(index, float):
        if not index.is_integer():
            raise EngineError(f"{algorithm_name}: index must be an integer, got {index}.")
        index = int(index)
    n = len(values)
    i = index + n if index < 0 else index
    hi = n if allow_end else n - 1
    if not 0 <= i <= hi:
        raise EngineError(f"{algorithm_name}: List index must be between {-n} and {hi}: {index}.")
    return i


def _whole(algorithm_name: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise EngineError(f"{algorithm_name}: '{name}' must be an integer, got {value!r}.")
    return int(value)


def _tidy_number(value: float) -> int | float:
    """An integral float as an int (Earth Engine answers 2.0 as 2)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _find(values: list, target: list) -> list[int]:
    """Every start position of the sublist ``target`` in ``values``."""
    keys = [canonical(v) for v in values]
    want = [canonical(v) for v in target]
    m = len(want)
    return [i for i in range(len(keys) - m + 1) if keys[i : i + m] == want]


@algorithm("List.add")
def list_add(list, element):
    return [*list, element]


@algorithm("List.cat")
def list_cat(list, other):
    return [*list, *other]


@algorithm("List.contains")
def list_contains(list, element):
    key = canonical(element)
    return any(canonical(v) == key for v in list)


@algorithm("List.containsAll")
def list_contains_all(list, other):
    keys = {canonical(v) for v in list}
    return all(canonical(v) in keys for v in other)


@algorithm("List.distinct")
def list_distinct(list):
    """The first occurrence of each value, in order."""
    seen: set = set()
    out = []
    for v in list:
        key = canonical(v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


@algorithm("List.equals")
def list_equals(list, other):
    return canonical(list) == canonical(other)


@algorithm("List.filter")
def list_filter(list, filter):
    """Elements that pass ``filter``; a value that is not a Feature or Image is tested as property 'item'."""
    out = []
    for v in list:
        subject = v if isinstance(v, Element) else Feature(None, {"item": v})
        if filter(subject):
            out.append(v)
    return out


@algorithm("List.flatten")
def list_flatten(list):
    """Nested lists at any depth are flattened (a level at a time: each keeps the order of the one above)."""
    out: list_type = [*list]
    while any(isinstance(v, list_type) for v in out):
        level: list_type = []
        for v in out:
            if isinstance(v, list_type):
                level.extend(v)
            else:
                level.append(v)
        out = level
    return out


list_type = list


@algorithm("List.frequency")
def list_frequency(list, element):
    key = canonical(element)
    return sum(1 for v in list if canonical(v) == key)


@algorithm("List.get")
def list_get(list, index):
    return list[_index("List.get", list, index)]


@vectorised("List.get")
def list_get_many(n, list, index):
    """One index (a plain integer) into a column of lists: Python's indexing, which counts from the end as
    :func:`_index` does; an index outside some list, or anything else, and the column goes element by element
    (the scalar form's error)."""
    if isinstance(index, Column) or type(index) is not int or not isinstance(list, Column):
        return per_element("List.get", n, {"list": list, "index": index})
    if set(map(type, list)) <= {list_type}:
        try:
            return [values[index] for values in list]
        except IndexError:
            pass
    return per_element("List.get", n, {"list": list, "index": index})


def _typed_get(name: str, values: list, index: int, want: str, check: Callable[[Any], bool]) -> Any:
    value = values[_index(name, values, index)]
    if not check(value):
        raise EngineError(f"{name}: Expected a {want} at index {index}, got {ee_type_of(value)}.")
    return value


@algorithm("List.getGeometry")
def list_get_geometry(list, index):
    return _typed_get("List.getGeometry", list, index, "Geometry", lambda v: ee_type_of(v) == "Geometry")


@algorithm("List.getNumber")
def list_get_number(list, index):
    return _typed_get(
        "List.getNumber", list, index, "Number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    )


@algorithm("List.getString")
def list_get_string(list, index):
    return _typed_get("List.getString", list, index, "String", lambda v: isinstance(v, str))


@algorithm("List.indexOf")
def list_index_of(list, element):
    key = canonical(element)
    return next((i for i, v in enumerate(list) if canonical(v) == key), -1)


@algorithm("List.indexOfSublist")
def list_index_of_sublist(list, target):
    found = _find(list, target)
    return found[0] if found else -1


@algorithm("List.insert")
def list_insert(list, index, element):
    i = _index("List.insert", list, index, allow_end=True)
    return [*list[:i], element, *list[i:]]


@algorithm("List.iterate")
def list_iterate(list, function, first):
    """``function(element, previous)`` over the list, starting from ``first``."""
    acc = first
    for v in list:
        acc = function(v, acc)
    return acc


def _join_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(_tidy_number(value))
    raise EngineError(
        f"List.join: joining a {ee_type_of(value)} is not supported by the local engine "
        "(Earth Engine leaves the text of such elements undefined)."
    )


@algorithm("List.join")
def list_join(list, separator):
    return (separator or "").join(_join_text(v) for v in list)


@algorithm("List.lastIndexOfSubList")
def list_last_index_of_sublist(list, target):
    found = _find(list, target)
    return found[-1] if found else -1


@algorithm("List.length")
def list_length(list):
    return len(list)


@algorithm("List.map")
def list_map(list, baseAlgorithm, dropNulls):  # noqa: N803 - Earth Engine's argument names
    batched = getattr(baseAlgorithm, "map", None)
    out = batched(list) if batched is not None else [baseAlgorithm(v) for v in list]
    if dropNulls:
        out = [v for v in out if v is not None]
    return out


def _reducer_input_count(reducer: Any) -> int:
    for name in ("num_inputs", "input_count"):
        n = getattr(reducer, name, None)
        if isinstance(n, int):
            return n
    inputs = getattr(reducer, "inputs", None) or getattr(reducer, "input_names", None)
    return len(inputs) if isinstance(inputs, list | tuple) and inputs else 1


@algorithm("List.reduce")
def list_reduce(list, reducer):
    """A reducer of several inputs reads each element as a list of inputs."""
    n = _reducer_input_count(reducer)
    if n == 1:
        columns = [[*list]]
    else:
        rows = []
        for v in list:
            if not isinstance(v, list_type) or len(v) != n:
                raise EngineError(f"List.reduce: The reducer takes {n} inputs; each element must be a list of {n}.")
            rows.append(v)
        columns = [[row[i] for row in rows] for i in range(n)]
    result = reducer.reduce(columns)
    names = getattr(reducer, "output_names", None) or []
    if len(names) == 1:
        return result[names[0]]
    return result


@vectorised("List.reduce")
def list_reduce_many(n, list, reducer):
    """``Reducer.min`` or ``Reducer.max`` of one input over lists of plain numbers (no null, no NaN) without
    building a reducer's inputs per element: the first extreme element, as the scalar form picks it (Python's
    ``min``/``max`` keep the first of equals, as ``argmin``/``argmax`` do). Everything else per element."""
    kind = getattr(reducer, "kind", None)
    if isinstance(reducer, Column) or kind not in ("Reducer.min", "Reducer.max") or reducer.input_count != 1:
        return per_element("List.reduce", n, {"list": list, "reducer": reducer})
    pick = min if kind == "Reducer.min" else max
    out = []
    for values in list if isinstance(list, Column) else [list] * n:
        plain = isinstance(values, list_type) and values and all(type(v) in (int, float) and v == v for v in values)
        out.append(pick(values) if plain else list_reduce(values, reducer))
    return out


@algorithm("List.remove")
def list_remove(list, element):
    i = list_index_of(list, element)
    return [*list] if i < 0 else [*list[:i], *list[i + 1 :]]


@algorithm("List.removeAll")
def list_remove_all(list, other):
    drop = {canonical(v) for v in other}
    return [v for v in list if canonical(v) not in drop]


@algorithm("List.repeat", context=True)
def list_repeat(value, count, ctx):
    n = _whole("List.repeat", "count", count)
    if n < 0:
        raise EngineError(f"List.repeat: count must not be negative, got {n}.")
    ctx.limits.check_elements(n, "List.repeat")
    return [value] * n


@algorithm("List.replace")
def list_replace(list, oldval, newval):
    i = list_index_of(list, oldval)
    out = [*list]
    if i >= 0:
        out[i] = newval
    return out


@algorithm("List.replaceAll")
def list_replace_all(list, oldval, newval):
    key = canonical(oldval)
    return [newval if canonical(v) == key else v for v in list]


@algorithm("List.reverse")
def list_reverse(list):
    return [*reversed(list)]


@algorithm("List.rotate")
def list_rotate(list, distance):
    """A positive distance moves elements towards the end (Java's Collections.rotate)."""
    if not list:
        return []
    d = _whole("List.rotate", "distance", distance) % len(list)
    return [*list[-d:], *list[:-d]] if d else [*list]


@algorithm("List.sequence", context=True)
def list_sequence(start, end, step, count, ctx):
    """From ``start`` to ``end`` inclusive by ``step``, or ``count`` values (evenly spaced when ``end`` is given);
    its length is checked against the memory bound before the list is made."""
    if count is not None:
        n = _whole("List.sequence", "count", count)
        if n < 0:
            raise EngineError(f"List.sequence: count must not be negative, got {n}.")
        ctx.limits.check_elements(n, "List.sequence")
        if end is None:
            return [_tidy_number(start + step * i) for i in range(n)]
        if n == 1:
            return [_tidy_number(start)]
        return [_tidy_number(start + (end - start) * i / (n - 1)) for i in range(n)]
    if end is None:
        raise EngineError("List.sequence: At least one of 'end' or 'count' must be specified.")
    if step == 0:
        raise EngineError("List.sequence: 'step' must not be zero.")
    steps = (end - start) / step
    if steps >= 0:  # (an infinite end is bounded too)
        ctx.limits.check_elements(math.floor(min(steps, 1e18)) + 1, "List.sequence")
    out = []
    i = 0
    while True:
        value = start + step * i
        if (step > 0 and value > end) or (step < 0 and value < end):
            break
        out.append(_tidy_number(value))
        i += 1
    return out


@algorithm("List.set")
def list_set(list, index, element):
    i = _index("List.set", list, index)
    out = [*list]
    out[i] = element
    return out


@algorithm("List.shuffle")
def list_shuffle(list, seed):
    """A permutation fixed by ``seed`` (a fresh one each call when seed is false).

    Earth Engine's own permutation for a seed cannot be reproduced; this one is
    deterministic for a seed within this engine.
    """
    out = [*list]
    if seed is False:
        random.SystemRandom().shuffle(out)
    else:
        random.Random(0 if seed is None else repr(seed)).shuffle(out)
    return out


@algorithm("List.size")
def list_size(list):
    return len(list)


@algorithm("List.slice")
def list_slice(list, start, end, step):
    """Python slicing of ``[start, end)``; indices beyond the list are clamped."""
    s = _whole("List.slice", "start", start)
    e = None if end is None else _whole("List.slice", "end", end)
    k = 1 if step is None else _whole("List.slice", "step", step)
    if k <= 0:
        raise EngineError(f"List.slice: a step of {k} is not supported by the local engine.")
    return list[s:e:k]


@vectorised("List.slice")
def list_slice_many(n, list, start, end, step):
    """``List.slice`` of a column of lists with the same start, end and step (checked once, as the scalar form
    checks them); anything else element by element."""
    if isinstance(start, Column) or isinstance(end, Column) or isinstance(step, Column) or not isinstance(list, Column):
        return per_element("List.slice", n, {"list": list, "start": start, "end": end, "step": step})
    s = _whole("List.slice", "start", start)
    e = None if end is None else _whole("List.slice", "end", end)
    k = 1 if step is None else _whole("List.slice", "step", step)
    if k <= 0 or not set(map(type, list)) <= {list_type}:
        return per_element("List.slice", n, {"list": list, "start": start, "end": end, "step": step})
    return [values[s:e:k] for values in list]


def _sort_key(algorithm_name: str, values: list) -> Callable[[Any], Any]:
    """Ascending order of numbers, of strings, or of dates; mixed kinds are refused."""

    def kind(v: Any) -> str:
        if isinstance(v, bool):
            return "Boolean"
        if isinstance(v, int | float):
            return "Number"
        if isinstance(v, str):
            return "String"
        if isinstance(v, Date):
            return "Date"
        return ee_type_of(v)

    kinds = {kind(v) for v in values}
    if len(kinds) > 1 or not kinds <= {"Number", "String", "Date", "Boolean"}:
        raise EngineError(
            f"{algorithm_name}: sorting values of types {', '.join(sorted(kinds))} together is not supported "
            "by the local engine (only numbers, strings, booleans or dates, one kind per list)."
        )
    if kinds == {"Date"}:
        return lambda v: v.millis
    if kinds == {"Number"}:
        return lambda v: (math.isnan(v), v)
    return lambda v: v


@algorithm("List.sort")
def list_sort(list, keys):
    """A stable ascending sort, by ``keys`` when given (a list as long as ``list``)."""
    if keys is None:
        return sorted(list, key=_sort_key("List.sort", list))
    if len(keys) != len(list):
        raise EngineError(f"List.sort: 'keys' has {len(keys)} elements but 'list' has {len(list)}.")
    key = _sort_key("List.sort", keys)
    order = sorted(range(len(list)), key=lambda i: key(keys[i]))
    return [list[i] for i in order]


@algorithm("List.splice")
def list_splice(list, start, count, other):
    i = _index("List.splice", list, start, allow_end=True)
    n = _whole("List.splice", "count", count)
    if n < 0:
        raise EngineError(f"List.splice: count must not be negative, got {n}.")
    return [*list[:i], *(other or []), *list[i + n :]]


@algorithm("List.swap")
def list_swap(list, pos1, pos2):
    i, j = _index("List.swap", list, pos1), _index("List.swap", list, pos2)
    out = [*list]
    out[i], out[j] = out[j], out[i]
    return out


@algorithm("List.unzip")
def list_unzip(list):
    for v in list:
        if not isinstance(v, list_type):
            raise EngineError(f"List.unzip: every element must be a list, got {ee_type_of(v)}.")
    if not list:
        return []
    return [[*column] for column in zip(*list, strict=False)]


@algorithm("List.zip")
def list_zip(list, other):
    return [[a, b] for a, b in zip(list, other, strict=False)]

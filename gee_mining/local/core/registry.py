"""The table of Earth Engine algorithms the engine evaluates.

Each family module (``values/number.py``, ``values/geometry.py``, ...)
registers its functions under their Earth Engine names with :func:`algorithm`;
the engine's package names those modules (:func:`register_families`), and
they are imported on the first look-up. The function's
parameters must be exactly the arguments of the Earth Engine signature (an
argument named like a Python keyword, ``from`` or ``lambda``, is spelled with a
trailing underscore), so a misspelt name fails at import, not at a user's
request. Defaults of optional arguments come from the signature.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gee_mining.contracts.signatures import Argument, Signature, signatures
from gee_mining.local.core.errors import EngineError, NotImplementedAlgorithm
from gee_mining.local.core.types import checker, signature_default_decoder

_FAMILY_MODULES: list[str] = []


def register_families(*modules: str) -> None:
    """Name the modules (absolute names) whose import registers the algorithms: the engine's package
    names its family modules here, and :func:`load_families` imports them on first use."""
    _FAMILY_MODULES.extend(m for m in modules if m not in _FAMILY_MODULES)
    load_families.cache_clear()


@dataclass(frozen=True)
class Algorithm:
    """One registered implementation."""

    name: str
    func: Callable[..., Any]
    signature: Signature
    lazy: bool = False
    context: bool = False


class Column(list):
    """One value per element of a batched map (see ``evaluator.Evaluator.map_batched``): what a vectorised
    implementation receives for an argument that differs between elements."""

    __slots__ = ()


_ALGORITHMS: dict[str, Algorithm] = {}
_BATCHED: dict[str, Callable[..., list[Any]]] = {}


def _py_name(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) else name


def algorithm(
    name: str,
    *,
    lazy: bool = False,
    context: bool = False,
    arguments: tuple[Argument, ...] | None = None,
    return_type: str = "Object",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func`` as the Earth Engine algorithm ``name``.

    ``lazy``: the function receives zero-argument callables (thunks) in place of
    argument values, so it evaluates only the branches it needs (``If``).
    ``context``: the function receives the request context as ``ctx``.
    ``arguments``: a signature for an algorithm missing from the client's list.
    """

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = signatures().get(name)
        if sig is None:
            if arguments is None:
                raise RuntimeError(f"{name} is not in the Earth Engine signature list")
            sig = Signature(name, return_type, arguments)
        params = inspect.signature(func).parameters
        has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        got = {p for p in params if p != "ctx" and params[p].kind is not inspect.Parameter.VAR_KEYWORD}
        want = {_py_name(a.name) for a in sig.arguments}
        if (got != want and not has_var_kw) or (has_var_kw and not got <= want):
            raise RuntimeError(
                f"{func.__module__}.{func.__name__} registered as {name}: parameters {sorted(got)} "
                f"do not match the signature's arguments {sorted(want)}"
            )
        if context and "ctx" not in params:
            raise RuntimeError(f"{name}: context=True needs a 'ctx' parameter")
        if name in _ALGORITHMS:
            raise RuntimeError(f"{name} registered twice ({_ALGORITHMS[name].func.__module__})")
        _ALGORITHMS[name] = Algorithm(name, func, sig, lazy=lazy, context=context)
        return func

    return register


def vectorised(name: str) -> Callable[[Callable[..., list[Any]]], Callable[..., list[Any]]]:
    """Register a vectorised implementation of the already registered algorithm ``name``.

    It is called as ``func(n, **arguments)`` when a mapped function is evaluated
    for ``n`` elements at once: each argument is either one value for all
    elements or a list of ``n`` values (a :class:`Column`), already checked
    and promoted as :func:`bind` would; it returns the ``n`` results, each equal
    to what the scalar implementation returns for that element's arguments.
    """

    def register(func: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        if name not in _ALGORITHMS:
            raise RuntimeError(f"{name}: register the algorithm before its vectorised form")
        if name in _BATCHED or _ALGORITHMS[name].lazy:
            raise RuntimeError(f"{name}: a second vectorised form, or one for a lazy algorithm")
        _BATCHED[name] = func
        return func

    return register


def batched(name: str) -> Callable[..., list[Any]] | None:
    """The vectorised implementation of ``name``, if it has one."""
    return _BATCHED.get(name)


def per_element(name: str, n: int, arguments: Mapping[str, Any]) -> list[Any]:
    """The scalar implementation of ``name`` called once per element (columns indexed, the rest shared):
    what a vectorised implementation falls back to for the cases it does not vectorise. Called with
    positional arguments where the function allows (cheaper per call than unpacking a dict)."""
    func = _ALGORITHMS[name].func
    order = _positional_order(func)
    if order is None or len(order) != len(arguments) or not all(k in arguments for k in order):
        columns = [(k, v) for k, v in arguments.items() if isinstance(v, Column)]
        kwargs = dict(arguments)
        out = []
        for i in range(n):
            for k, v in columns:
                kwargs[k] = v[i]
            out.append(func(**kwargs))
        return out
    args = [arguments[k] for k in order]
    where = [j for j, v in enumerate(args) if isinstance(v, Column)]
    if not where:
        return [func(*args) for _ in range(n)]
    if len(where) == 1:
        j = where[0]
        before, after = args[:j], args[j + 1 :]
        return [func(*before, v, *after) for v in args[j]]
    out = []
    for values in zip(*(args[j] for j in where), strict=True):
        for j, v in zip(where, values, strict=True):
            args[j] = v
        out.append(func(*args))
    return out


@functools.cache
def _positional_order(func: Callable[..., Any]) -> tuple[str, ...] | None:
    """The names of ``func``'s parameters in order, if all can be given by position; else None."""
    params = inspect.signature(func).parameters.values()
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        return None
    return tuple(p.name for p in params)


@functools.cache
def load_families() -> None:
    """Import every family module so that its algorithms register (once: ``get`` calls it per invocation)."""
    for mod in _FAMILY_MODULES:
        importlib.import_module(mod)


def get(name: str) -> Algorithm:
    load_families()
    alg = _ALGORITHMS.get(name)
    if alg is None:
        if name in signatures():
            raise NotImplementedAlgorithm(name)
        raise EngineError(f"Unknown algorithm: '{name}'.")
    return alg


def implemented() -> Mapping[str, Algorithm]:
    """Every algorithm the engine evaluates, by name."""
    load_families()
    return dict(_ALGORITHMS)


def _checked_plan(alg: Algorithm, given: Mapping[str, Any]) -> _Plan:
    """The algorithm's binding plan, once ``given`` names only arguments it has."""
    plan = _plan(alg)
    for key in given:
        if key not in plan.names:
            raise EngineError(f"{alg.name}: Unrecognized argument '{key}'. Allowed arguments: {', '.join(plan.order)}.")
    return plan


def bind(alg: Algorithm, given: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``given`` against the signature and fill in defaults.

    Unknown and missing arguments, and values of the wrong Earth Engine type,
    raise errors worded as Earth Engine words them.
    """
    plan = _checked_plan(alg, given)
    out = {}
    for arg, py_name, check, default in plan.arguments:
        if arg.name in given:
            value = given[arg.name]
            if check is not None and value is not None:
                value = check(alg.name, arg, value)
        elif arg.optional:
            value = default()
            if alg.lazy:
                value = _constant_thunk(value)
        else:
            raise EngineError(f"{alg.name}: Parameter '{arg.name}' is required.")
        out[py_name] = value
    return out


def bind_batched(alg: Algorithm, given: Mapping[str, Any], n: int) -> dict[str, Any]:
    """:func:`bind` for a vectorised call: arguments that are columns (lists of ``n`` per-element values,
    :class:`Column`) are checked element by element and stay columns."""
    plan = _checked_plan(alg, given)
    out = {}
    for arg, py_name, check, default in plan.arguments:
        if arg.name in given:
            value = given[arg.name]
            if check is not None:
                if isinstance(value, Column):
                    value = _checked_column(check, alg.name, arg, value)
                elif value is not None:
                    value = check(alg.name, arg, value)
        elif arg.optional:
            value = default()
            if isinstance(value, list | dict):  # each element gets its own copy, as bind gives each call
                value = Column([value] + [default() for _ in range(n - 1)])
        else:
            raise EngineError(f"{alg.name}: Parameter '{arg.name}' is required.")
        out[py_name] = value
    return out


def _checked_column(check: Callable[..., Any], name: str, arg: Argument, column: Column) -> Column:
    """``check`` of each value; when all values share one type that passes unchanged, the column as it is."""
    first = next((v for v in column if v is not None), None)
    if first is None:
        return column
    kind = type(first)
    if check(name, arg, first) is first and set(map(type, column)) <= {kind, type(None)}:
        return column
    return Column([v if v is None else check(name, arg, v) for v in column])


@dataclass(frozen=True)
class _Plan:
    """What ``bind`` needs of a signature, worked out once per algorithm."""

    order: tuple[str, ...]
    names: frozenset[str]
    arguments: tuple[tuple[Argument, str, Callable[..., Any] | None, Callable[[], Any]], ...]


_PLANS: dict[str, _Plan] = {}


def _plan(alg: Algorithm) -> _Plan:
    plan = _PLANS.get(alg.name)
    if plan is None:
        order = alg.signature.argument_names
        plan = _Plan(
            order,
            frozenset(order),
            tuple(
                (a, _py_name(a.name), None if alg.lazy else checker(a.type), _default_factory(a))
                for a in alg.signature.arguments
            ),
        )
        _PLANS[alg.name] = plan
    return plan


def _default_factory(arg: Argument) -> Callable[[], Any]:
    """A signature's default as an engine value: ErrorMargin and Projection
    defaults are JSON objects in the signature list; lists and dictionaries are
    copied per call so that no algorithm can alter a shared default."""
    default = arg.default
    decode = signature_default_decoder(default)
    if decode is not None:
        value = decode(default)
        return lambda: value
    if isinstance(default, list | dict):
        return lambda: copy.deepcopy(default)
    return lambda: default


def _constant_thunk(value: Any) -> Callable[[], Any]:
    return lambda: value

"""Evaluation of Earth Engine expression graphs.

An expression is ``{"result": id, "values": {id: node}}`` as
``ee.serializer.encode(obj, for_cloud_api=True)`` writes it. Nodes are
``constantValue``, ``integerValue``, ``bytesValue``, ``valueReference``,
``arrayValue``, ``dictionaryValue``, ``functionInvocationValue``,
``functionDefinitionValue`` and ``argumentReference``.

Shared sub-graphs (entries of the ``values`` table) are evaluated once per
request; an entry that reads a function's arguments is evaluated once per call
of that function.

A function mapped over many elements (``Collection.map``) is evaluated for all
of them at once (:meth:`Evaluator.map_batched`): the graph is walked once, each
node yields a :class:`Column` of per-element values, and algorithms with a
vectorised implementation (``registry.batched``) compute a whole column in one
call; the others run once per element. ``If``, ``And``, ``Or`` and calls of
function values run per element, exactly as they would one element at a time,
so branches a condition skips are never evaluated. The results are those of
calling the function on each element in turn; only which element's error is
reported first may differ when several elements fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gee_mining.contracts.gc_pause import deferred_gc
from gee_mining.local.core import registry
from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.limits import Limits, RequestBudget
from gee_mining.local.core.registry import Column

CACHED_ALGORITHMS = frozenset({"Collection.map"})
"""What :class:`ResultCache` keeps: mapped collections, the work a graph asks for again request after request
(a table's polygons tagged with their zone, in every request of the grid's blocks)."""


class ResultCache:
    """Values of sub-graphs that read no function argument, kept across the requests of one engine by the
    digest of the sub-graph (as Earth Engine's service caches computed values by their expression): a later
    request holding the same sub-graph gets the same value without computing it. Values are immutable (every
    algorithm makes new ones), so sharing them is safe; the key also holds the catalog's generation (an asset
    added or replaced makes a new one) and the engine's settings. Bounded: at most ``entries`` values and
    ``elements`` collection elements in all, the least recently used dropped first."""

    def __init__(self, entries: int = 32, elements: int = 200_000):
        self.entries, self.elements = entries, elements
        self._values: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every value (a benchmark timing the work itself, run after run)."""
        with self._lock:
            self._values.clear()
            self._held = 0

    def get(self, key: tuple) -> Any:
        with self._lock:
            hit = self._values.get(key)
            if hit is None:
                return None
            self._values.move_to_end(key)
            return hit[0]

    def put(self, key: tuple, value: Any) -> None:
        size = len(getattr(value, "features", ()))
        if size > self.elements:
            return
        with self._lock:
            old = self._values.pop(key, None)
            self._held -= old[1] if old else 0
            self._values[key] = (value, size)
            self._held += size
            while len(self._values) > self.entries or self._held > self.elements:
                _, (_, dropped) = self._values.popitem(last=False)
                self._held -= dropped


@dataclass
class Context:
    """What one request may touch: the catalog, settings, a cancellation flag, the engine's limits and,
    for an interactive request, its budget (time and work; None for a batch task)."""

    catalog: Any = None
    project: str = "local-project"
    cancelled: threading.Event = field(default_factory=threading.Event)
    settings: dict[str, Any] = field(default_factory=dict)
    pixels: dict = field(default_factory=dict)  # band pixels computed in this request, by (band key, grid)
    limits: Limits = field(default_factory=Limits)
    budget: RequestBudget | None = None
    pixels_computed: int = 0  # band pixels computed in this request (every band of the graph, cached ones once)
    results: ResultCache | None = None  # the engine's values across requests (None: nothing kept)
    answer_buffers: Any = None  # the engine's NPY answer buffers (raster.pixels.AnswerBuffers; None: fresh memory)

    def cache_key(self, digest: str) -> tuple:
        """The key of a sub-graph's value in :attr:`results`: its digest, the catalog's generation, the
        settings."""
        settings = json.dumps(self.settings, sort_keys=True, default=repr)
        return digest, getattr(self.catalog, "generation", None), settings

    def check_cancelled(self) -> None:
        """Stop a cancelled request, or an interactive one past its time budget."""
        if self.cancelled.is_set():
            raise EngineError("Computation was cancelled.", status=499)
        if self.budget is not None:
            self.budget.check_time()

    def count_scanned(self, count: int) -> None:
        """Features tested by a filter on a computed collection (an interactive request's work bound)."""
        if self.budget is not None:
            self.budget.add_scanned(count)

    def count_pixels(self, count: int) -> None:
        """Band pixels computed (an interactive request's work bound; a batch task's work, ``pixels_computed``)."""
        self.pixels_computed += count
        if self.budget is not None:
            self.budget.add_pixels(count)


class _Frame:
    __slots__ = ("env", "memo", "parent")

    def __init__(self, env: Mapping[str, Any], parent: _Frame | None):
        self.env = env
        self.parent = parent
        self.memo: dict[str, Any] = {}

    def lookup(self, name: str) -> Any:
        frame: _Frame | None = self
        while frame is not None:
            if name in frame.env:
                return frame.env[name]
            frame = frame.parent
        raise EngineError(f"Unbound argument reference: '{name}'.")


class _Batch:
    """A batched call's state: the mapped argument's name, one scalar frame per element (made when a node is
    first evaluated element by element: a map whose every node is vectorised needs none), the memo."""

    __slots__ = ("name", "elements", "_frames", "parent", "memo", "unshared")

    def __init__(self, name: str, elements: list[Any], parent: _Frame):
        self.name = name
        self.elements = Column(elements)
        self.parent = parent
        self._frames: list[_Frame] | None = None
        self.memo: dict[str, Any] = {}
        self.unshared: list[str] = []  # memo entries not yet copied into the frames' own memos

    @property
    def frames(self) -> list[_Frame]:
        if self._frames is None:
            self._frames = [_Frame({self.name: e}, self.parent) for e in self.elements]
        return self._frames

    def share_memo(self) -> None:
        """Each element's values computed so far into its frame's memo, for a node evaluated element by
        element (``If``, calls of function values) that reads them: copied only when such a node runs."""
        for vid in self.unshared:
            result = self.memo[vid]
            if isinstance(result, Column):
                for frame, v in zip(self.frames, result, strict=True):
                    frame.memo[vid] = v
        self.unshared.clear()


class Closure:
    """A user function (``functionDefinitionValue``) with its captured frame."""

    ee_type = "Function"

    def __init__(self, evaluator: Evaluator, argument_names: list[str], body: str, frame: _Frame):
        self.evaluator = evaluator
        self.argument_names = list(argument_names)
        self.body = body
        self.frame = frame

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) > len(self.argument_names):
            raise EngineError(
                f"Function expects {len(self.argument_names)} argument(s) but was called with {len(args)}."
            )
        env = dict(zip(self.argument_names, args, strict=False))
        for key, value in kwargs.items():
            if key not in self.argument_names:
                raise EngineError(f"Function has no argument named '{key}'.")
            env[key] = value
        for name in self.argument_names:
            env.setdefault(name, None)
        frame = _Frame(env, self.frame)
        return self.evaluator.value(self.body, frame)

    @property
    def arity(self) -> int:
        return len(self.argument_names)

    def map(self, elements: list[Any]) -> list[Any]:
        """The function's value for each element (its only argument), evaluated as a batch."""
        if len(self.argument_names) != 1:
            return [self(e) for e in elements]
        return self.evaluator.map_batched(self, elements)


class Evaluator:
    """Evaluates one expression within one request context."""

    def __init__(self, expression: Mapping[str, Any], ctx: Context):
        if not isinstance(expression, Mapping) or "result" not in expression or "values" not in expression:
            raise EngineError("Invalid expression: expected an object with 'result' and 'values'.")
        values = expression["values"]
        if not isinstance(values, Mapping):
            raise EngineError("Invalid expression: 'values' must be an object.")
        self.values: Mapping[str, Any] = values
        self.result_id = str(expression["result"])
        self.ctx = ctx
        self.root = _Frame({}, None)
        self._free: dict[str, frozenset[str]] = {}
        self._in_progress: set[str] = set()
        self._digests: dict[str, str] = {}

    def evaluate(self) -> Any:
        with deferred_gc():
            return self.value(self.result_id, self.root)

    # -- value table -------------------------------------------------------

    def value(self, vid: str, frame: _Frame) -> Any:
        """The value of table entry ``vid``, memoised in the right frame."""
        if vid not in self.values:
            raise EngineError(f"Invalid expression: reference to missing value '{vid}'.")
        target = self.root if not self.free_arguments(vid) else frame
        if vid in target.memo:
            return target.memo[vid]
        result = self.node(self.values[vid], frame)
        target.memo[vid] = result
        return result

    def _kept(self, body: Mapping[str, Any], frame: _Frame) -> Any:
        """An invocation of a :data:`CACHED_ALGORITHMS` algorithm reading no function argument: its value from
        the engine's :class:`ResultCache`, computed and kept there on a miss."""
        node = {"functionInvocationValue": body}
        if frame is not self.root and self._node_free(node):
            return self.invoke(body, frame)
        key = self.ctx.cache_key(self._canonical(node))
        result = self.ctx.results.get(key)
        if result is None:
            result = self.invoke(body, frame)
            self.ctx.results.put(key, result)
        return result

    def digest(self, vid: str) -> str:
        """A digest of entry ``vid``'s sub-graph, equal to that of the same sub-graph written inline."""
        known = self._digests.get(vid)
        if known is None:
            known = self._digests[vid] = self._canonical(self.values[vid])
        return known

    def _canonical(self, node: Any) -> Any:
        """A value node as the digest of its kind and its children's digests (a reference to a table entry as
        that entry's digest): equal sub-graphs have equal digests, whether shared in the table or inline, in
        any request."""
        if isinstance(node, list):
            return [self._canonical(n) for n in node]
        if not isinstance(node, Mapping):
            return node
        if len(node) == 1 and isinstance(node.get("valueReference"), str) and node["valueReference"] in self.values:
            return self.digest(node["valueReference"])
        if "constantValue" in node:
            parts: Any = node
        else:
            parts = {}
            for key, value in node.items():
                if key in ("functionReference", "body") and isinstance(value, str) and value in self.values:
                    parts[key] = self.digest(value)
                else:
                    parts[key] = self._canonical(value)
        if len(node) != 1:
            return parts  # a node's body (its arguments, its function's name): digested with the node
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=repr)
        return "@" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def free_arguments(self, vid: str) -> frozenset[str]:
        """Argument names entry ``vid`` reads that it does not bind itself."""
        cached = self._free.get(vid)
        if cached is not None:
            return cached
        if vid in self._in_progress:
            raise EngineError(f"Invalid expression: value '{vid}' refers to itself.")
        self._in_progress.add(vid)
        try:
            free = self._node_free(self.values[vid])
        finally:
            self._in_progress.discard(vid)
        self._free[vid] = free
        return free

    def _node_free(self, node: Any) -> frozenset[str]:
        """Free argument names of a node; malformed nodes have none here and fail in ``node``."""
        if not isinstance(node, Mapping) or len(node) != 1:
            return frozenset()
        kind, body = next(iter(node.items()))
        if kind not in ("argumentReference", "valueReference") and not isinstance(body, Mapping):
            return frozenset()
        if kind == "valueReference":
            if not isinstance(body, str) or body not in self.values:
                raise EngineError(f"Invalid expression: reference to missing value '{body}'.")
            return self.free_arguments(body)
        if kind == "argumentReference":
            return frozenset([body]) if isinstance(body, str) else frozenset()
        if kind == "arrayValue" and isinstance(body.get("values"), list):
            return frozenset().union(*(self._node_free(n) for n in body["values"]))
        if kind == "dictionaryValue" and isinstance(body.get("values"), Mapping):
            return frozenset().union(*(self._node_free(n) for n in body["values"].values()))
        if kind == "functionInvocationValue":
            args = body.get("arguments") or {}
            free = (
                frozenset().union(*(self._node_free(n) for n in args.values()))
                if isinstance(args, Mapping)
                else frozenset()
            )
            ref = body.get("functionReference")
            if isinstance(ref, str) and ref in self.values:
                free |= self.free_arguments(ref)
            return free
        if kind == "functionDefinitionValue":
            inner = body.get("body")
            if not isinstance(inner, str) or inner not in self.values:
                return frozenset()
            names = body.get("argumentNames")
            return self.free_arguments(inner) - set(names if isinstance(names, list) else [])
        return frozenset()

    # -- nodes -------------------------------------------------------------

    def node(self, node: Any, frame: _Frame) -> Any:
        if not isinstance(node, Mapping) or len(node) != 1:
            raise EngineError(f"Invalid expression: malformed value node {str(node)[:200]}.")
        kind, body = next(iter(node.items()))
        if kind == "constantValue":
            return body
        if kind == "integerValue":
            try:
                return int(body)
            except (TypeError, ValueError):
                raise EngineError(f"Invalid expression: bad integerValue {body!r}.") from None
        if kind == "bytesValue":
            return base64.b64decode(body)
        if kind == "valueReference":
            return self.value(str(body), frame)
        if kind == "argumentReference":
            return frame.lookup(body)
        if kind == "arrayValue":
            return [self.node(n, frame) for n in _field(body, "values", list)]
        if kind == "dictionaryValue":
            return {k: self.node(n, frame) for k, n in _field(body, "values", Mapping).items()}
        if kind == "functionDefinitionValue":
            names = _field(body, "argumentNames", list)
            body_id = body.get("body")
            if not isinstance(body_id, str) or body_id not in self.values:
                raise EngineError("Invalid expression: functionDefinitionValue needs a 'body' value id.")
            return Closure(self, names, body_id, frame)
        if kind == "functionInvocationValue":
            if self.ctx.results is not None and body.get("functionName") in CACHED_ALGORITHMS:
                return self._kept(body, frame)
            return self.invoke(body, frame)
        raise EngineError(f"Invalid expression: unknown value kind '{kind}'.")

    def invoke(self, body: Mapping[str, Any], frame: _Frame) -> Any:
        self.ctx.check_cancelled()
        args_nodes = body.get("arguments", {}) or {}
        if not isinstance(args_nodes, Mapping):
            raise EngineError("Invalid expression: 'arguments' must be an object.")
        if "functionReference" in body:
            fn = self.value(str(body["functionReference"]), frame)
            if not callable(fn):
                raise EngineError("Invalid expression: functionReference does not name a function.")
            return fn(**{k: self.node(n, frame) for k, n in args_nodes.items()})
        name = body.get("functionName")
        if not isinstance(name, str):
            raise EngineError("Invalid expression: functionInvocationValue needs a 'functionName'.")
        alg = registry.get(name)
        if alg.lazy:
            given = {k: _thunk(self, n, frame) for k, n in args_nodes.items()}
        else:
            given = {k: self.node(n, frame) for k, n in args_nodes.items()}
        kwargs = registry.bind(alg, given)
        if alg.context:
            kwargs["ctx"] = self.ctx
        try:
            result = alg.func(**kwargs)
        except EngineError:
            raise
        except RecursionError:
            raise EngineError(f"{name}: expression nested too deeply.") from None
        except MemoryError:
            raise EngineError(f"User memory limit exceeded. (local engine: {name} ran out of memory)") from None
        except Exception as e:  # a bug or an unforeseen input: say where, keep serving
            # 400, not 500: the client retries 5xx answers, and a rerun fails the same way.
            raise EngineError(f"{name}: internal error: {type(e).__name__}: {e}") from e
        self.ctx.limits.check_value(result, name)
        return result

    # -- batched evaluation --------------------------------------------------

    def map_batched(self, closure: Closure, elements: list[Any]) -> list[Any]:
        """``closure`` (of one argument) called on each element, the graph walked once for all."""
        if not elements:
            return []
        batch = _Batch(closure.argument_names[0], list(elements), closure.frame)
        out = self._batch_value(closure.body, batch)
        return list(out) if isinstance(out, Column) else [out] * len(elements)

    def _batch_value(self, vid: str, batch: _Batch) -> Any:
        if batch.name not in self.free_arguments(vid):
            return self.value(vid, batch.parent)
        if vid in batch.memo:
            return batch.memo[vid]
        result = self._batch_node(self.values[vid], batch)
        batch.memo[vid] = result
        batch.unshared.append(vid)
        return result

    def _batch_node(self, node: Any, batch: _Batch) -> Any:
        if not isinstance(node, Mapping) or len(node) != 1:
            raise EngineError(f"Invalid expression: malformed value node {str(node)[:200]}.")
        kind, body = next(iter(node.items()))
        if kind == "valueReference":
            return self._batch_value(str(body), batch)
        if batch.name not in self._node_free(node):
            return self.node(node, batch.parent)
        if kind == "argumentReference":
            return batch.elements
        if kind == "arrayValue":
            items = [self._batch_node(n, batch) for n in _field(body, "values", list)]
            return Column([[v[i] if isinstance(v, Column) else v for v in items] for i in range(len(batch.elements))])
        if kind == "dictionaryValue":
            entries = {k: self._batch_node(n, batch) for k, n in _field(body, "values", Mapping).items()}
            return Column(
                [
                    {k: v[i] if isinstance(v, Column) else v for k, v in entries.items()}
                    for i in range(len(batch.elements))
                ]
            )
        if kind == "functionInvocationValue" and "functionReference" not in body:
            name = body.get("functionName")
            alg = registry.get(name) if isinstance(name, str) else None
            if alg is not None and not alg.lazy:
                return self._batch_invoke(alg, body, batch)
        # Calls of function values, lazy algorithms (If, And, Or) and function definitions: per element.
        batch.share_memo()
        return Column([self.node(node, frame) for frame in batch.frames])

    def _batch_invoke(self, alg: registry.Algorithm, body: Mapping[str, Any], batch: _Batch) -> Column:
        self.ctx.check_cancelled()
        args_nodes = body.get("arguments", {}) or {}
        if not isinstance(args_nodes, Mapping):
            raise EngineError("Invalid expression: 'arguments' must be an object.")
        given = {k: self._batch_node(n, batch) for k, n in args_nodes.items()}
        n = len(batch.elements)
        try:
            kwargs = registry.bind_batched(alg, given, n)
            if alg.context:
                kwargs["ctx"] = self.ctx
            vectorised = registry.batched(alg.name)
            if vectorised is not None:
                out = vectorised(n, **kwargs)
                if len(out) != n:
                    raise AssertionError(f"{len(out)} values for {n} elements")
                return Column(out)
            return Column(registry.per_element(alg.name, n, kwargs))
        except EngineError:
            raise
        except RecursionError:
            raise EngineError(f"{alg.name}: expression nested too deeply.") from None
        except MemoryError:
            raise EngineError(f"User memory limit exceeded. (local engine: {alg.name} ran out of memory)") from None
        except Exception as e:
            raise EngineError(f"{alg.name}: internal error: {type(e).__name__}: {e}") from e


def _thunk(evaluator: Evaluator, node: Any, frame: _Frame):
    return lambda: evaluator.node(node, frame)


def _field(body: Any, name: str, kind: type) -> Any:
    value = body.get(name) if isinstance(body, Mapping) else None
    if not isinstance(value, kind):
        raise EngineError(f"Invalid expression: expected '{name}' to be a {kind.__name__}.")
    return value


def evaluate(expression: Mapping[str, Any], ctx: Context) -> Any:
    """Evaluate an expression graph to an engine value."""
    return Evaluator(expression, ctx).evaluate()

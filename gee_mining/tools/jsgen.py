"""Earth Engine Code Editor scripts generated from expression graphs.

Many Earth Engine users work in the Code Editor (JavaScript). This module turns
any ``ee`` object into a readable Code Editor script that builds the same
expression graph: it reads the graph the Python client would send
(``ee.serializer.encode(obj, for_cloud_api=True)``), so the script cannot drift
from the Python code, and writes it in the JavaScript client's own style:

- method chains where the JavaScript client has the method
  (``ee.Image('...').normalizedDifference(['B8', 'B4'])``), static calls where it
  has those (``ee.Reducer.mean()``, ``ee.Filter.eq('a', 1)``, ``ee.Geometry.Point(...)``,
  ``ee.Algorithms.If(...)``), and ``ee.ApiFunction._call('Name', ...)`` only where it
  has neither. Which method exists on which class comes from the JavaScript
  client itself (``gee_mining/data/js_api.json``, dumped by
  ``node tests/js/ee_offline.js api``; a test keeps it current);
- a ``var`` for each value used more than once, named after what it is
  (``image``, ``collection``, ``geometry``, ...);
- user functions as ``function (feature) { ... return ...; }``;
- ``image.expression(text, {name: image})`` for the client's call of what ``Image.parseExpression``
  returns (a ``functionReference`` invocation, which ``expand`` turns into one ``$call`` node);
- literals as JavaScript: ``NaN``, ``Infinity``, ``-0``, strings escaped to ASCII
  (``\\uXXXX``), integers beyond 2^53 (``integerValue`` nodes, which JavaScript
  numbers cannot hold) as ``ee.Number.parse('...')``.

``Script`` collects values and the Code Editor's display and export calls
(``print``, ``Map.addLayer``, ``Map.centerObject``, ``Export.image/table.toCloudStorage``)
and renders them as one script. ``SCRIPTS`` registers the pipeline steps'
scripts, which ``gee-mining js`` writes into ``ee_scripts/``; adding a step's
script is one ``@script(...)`` function.

tests/test_jsgen.py runs every script through the official JavaScript client
(npm ``@google/earthengine``, offline) and checks that it builds the same graph.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import ee
import pyproj
from ee import serializer

from gee_mining.batch.exports import ExportSpec
from gee_mining.connection import connect
from gee_mining.contracts.bands import NODATA
from gee_mining.contracts.cells import GridSpec
from gee_mining.contracts.features import DEFAULT_INDICES
from gee_mining.contracts.lattice import pixel_grid
from gee_mining.contracts.schemas import columns
from gee_mining.contracts.signatures import signatures
from gee_mining.errors import GeeMiningError
from gee_mining.io.catalog import MINES_ID
from gee_mining.ml.classify import ClassifySpec, probability_image, train, training_samples
from gee_mining.steps.cell_image import ImagerySpec, cell_image
from gee_mining.steps.grid import positive_cells, tag_zones, touching_cells
from gee_mining.steps.measure import table_summary
from gee_mining.steps.pixel_tables import pixel_features
from gee_mining.steps.quicklooks import quicklook_image
from gee_mining.steps.sentinel2 import composite

WIDTH = 100
MAX_SAFE_INTEGER = 2**53

JS_RESERVED = frozenset(
    "break case catch class const continue debugger default delete do else enum export extends false finally for "
    "function if implements import in instanceof interface let new null package private protected public return "
    "static super switch this throw true try typeof var void while with yield await arguments eval undefined NaN "
    "Infinity ee Map print Export ui Chart Object Array String Number Math JSON Date".split()
)

# The JavaScript class an expression has, by the Earth Engine return type of its algorithm
# (ee.promote_ in the JavaScript client). Types not listed are ComputedObject unless the client has a class of that name.
_RETURN_CLASS = {
    "Collection": "FeatureCollection",
    "Float": "Number",
    "Long": "Number",
    "Integer": "Number",
    "Short": "Number",
    "Byte": "Number",
}

# Readable variable names, by JavaScript class.
_CLASS_NAMES = {
    "Image": "image",
    "ImageCollection": "images",
    "FeatureCollection": "collection",
    "Collection": "collection",
    "Feature": "feature",
    "Element": "element",
    "Geometry": "geometry",
    "Number": "number",
    "String": "text",
    "List": "list",
    "Dictionary": "dictionary",
    "Date": "date",
    "DateRange": "dateRange",
    "Filter": "filter",
    "Reducer": "reducer",
    "Kernel": "kernel",
    "Projection": "projection",
    "Array": "array",
    "Classifier": "classifier",
    "Join": "join",
    "ComputedObject": "value",
}


class JsGenError(GeeMiningError):
    """A graph this module cannot write as a Code Editor script."""


# --------------------------------------------------------------------------------------------------------------------
# What the JavaScript client offers


@dataclass(frozen=True)
class JsApi:
    """The JavaScript client's bindings of Earth Engine algorithms, and the algorithms' signatures."""

    instance: dict[str, dict[str, str]]  # class -> {method: algorithm}, API-bound methods only (inherited included)
    static: dict[str, dict[str, str]]  # class -> {function: algorithm}
    algorithms: dict[str, str]  # ee.Algorithms path -> algorithm
    casts: frozenset[str]  # classes whose constructor re-types a computed value without adding a node
    signatures: dict[str, Any]

    def instance_methods(self, algorithm: str) -> list[tuple[str, str]]:
        """(class, method) pairs that call ``algorithm`` on their receiver."""
        return [(c, m) for c, methods in self.instance.items() for m, a in methods.items() if a == algorithm]

    def static_function(self, algorithm: str) -> str | None:
        """``ee.Class.fn`` or ``ee.Algorithms.path`` that calls ``algorithm``, if the client has one."""
        family = algorithm.split(".")[0]
        candidates = [(c != family, c, m) for c, fns in self.static.items() for m, a in fns.items() if a == algorithm]
        if candidates:
            _, c, m = min(candidates)
            return f"ee.{c}.{m}"
        paths = [p for p, a in self.algorithms.items() if a == algorithm]
        return f"ee.Algorithms.{min(paths)}" if paths else None

    def has_class(self, name: str) -> bool:
        return name in self.instance


@functools.cache
def js_api() -> JsApi:
    """The JavaScript client's method table shipped with this package."""

    doc = json.loads((resources.files("gee_mining") / "data" / "js_api.json").read_text())
    classes = doc["classes"]
    return JsApi(
        instance={c: {m: a for m, a in v["instance"].items() if a} for c, v in classes.items()},
        static={c: {m: a for m, a in v["static"].items() if a} for c, v in classes.items()},
        algorithms=doc["algorithms"],
        casts=frozenset(doc.get("casts", [])),
        signatures=signatures(),
    )


def _bare_type(t: str | None) -> str:
    return re.sub(r"<.*>", "", t or "Object")


def return_class(type_name: str, api: JsApi) -> str:
    """The JavaScript class of a value of Earth Engine type ``type_name``."""
    t = _bare_type(type_name)
    t = _RETURN_CLASS.get(t, t)
    return t if api.has_class(t) else "ComputedObject"


# --------------------------------------------------------------------------------------------------------------------
# Graphs: the serializer's output, expanded and interned


@dataclass(eq=False)
class Node:
    """One distinct sub-expression of the graph(s) being written."""

    key: str  # canonical JSON: equal sub-expressions are one Node
    kind: str  # constantValue, integerValue, functionInvocationValue, arrayValue, dictionaryValue, ...
    value: Any = None  # the constant, the integer string, the argument name, the function name
    args: dict[str, Node] = field(default_factory=dict)  # invocation arguments, dictionary entries
    items: list[Node] = field(default_factory=list)  # array elements
    params: list[str] = field(default_factory=list)  # function definition argument names
    body: Node | None = None
    free: frozenset[str] = frozenset()  # argument names used but not bound inside


# The name ``expand`` gives a call of a computed function (a ``functionReference`` invocation).
CALL = "$call"


def expand(expression: dict) -> dict:
    """The Cloud API expression ``{"result", "values"}`` as one tree, every ``valueReference`` replaced."""
    values = expression["values"]

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            if "valueReference" in v and len(v) == 1:
                return walk(values[v["valueReference"]])
            if "functionDefinitionValue" in v:
                fd = v["functionDefinitionValue"]
                return {
                    "functionDefinitionValue": {
                        "argumentNames": fd.get("argumentNames", []),
                        "body": walk(values[fd["body"]]),
                    }
                }
            fi = v.get("functionInvocationValue")
            if isinstance(fi, dict) and "functionReference" in fi and len(v) == 1:
                # A call of a computed function (``Image.expression`` calls what Image.parseExpression
                # returns): one ``$call`` node holding the function and its arguments.
                args = {k: walk(x) for k, x in (fi.get("arguments") or {}).items()}
                return {
                    "functionInvocationValue": {
                        "functionName": CALL,
                        "arguments": {
                            "function": walk(values[fi["functionReference"]]),
                            "arguments": {"dictionaryValue": {"values": args}},
                        },
                    }
                }
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(values[expression["result"]])


def constant_collisions(tree: Any) -> list[str]:
    """Constants of ``tree`` that the JavaScript client would merge into one.

    The JavaScript client's serializer shares equal values by hashing their JSON text, in which
    NaN, Infinity and -Infinity are all ``null`` and -0 is ``0``: a graph holding two of NaN,
    Infinity and -Infinity (or both -0 and 0) comes out of it with one value in both places.
    Returns a description of each such clash (empty if none).
    """
    seen: dict[str, set[str]] = {"NaN, Infinity and -Infinity": set(), "0 and -0": set()}

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, float) and not math.isfinite(v):
            seen["NaN, Infinity and -Infinity"].add(repr(v))
        elif isinstance(v, int | float) and not isinstance(v, bool) and v == 0:
            seen["0 and -0"].add("-0" if math.copysign(1.0, v) < 0 else "0")

    walk(tree)
    return [f"{cls} ({', '.join(sorted(found))})" for cls, found in seen.items() if len(found) > 1]


def encode(obj: Any) -> dict:
    """The Python client's graph of ``obj``, expanded into one tree."""

    return expand(serializer.encode(obj, for_cloud_api=True))


class Graph:
    """Interned nodes of several trees, with how often each is used."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.uses: dict[str, int] = {}

    def add(self, tree: dict) -> Node:
        node = self._intern(tree)
        self._count(node, set())
        return node

    def _intern(self, tree: dict) -> Node:
        key = json.dumps(tree, sort_keys=True, allow_nan=True)
        if key in self.nodes:
            return self.nodes[key]
        (kind, v), *rest = tree.items()
        if rest:
            raise JsGenError(f"Unexpected graph node {tree!r}")
        node = Node(key, kind)
        if kind == "constantValue":
            node.value = v
        elif kind == "integerValue":
            node.value = str(v)
        elif kind == "argumentReference":
            node.value = v
            node.free = frozenset([v])
        elif kind == "functionInvocationValue":
            node.value = v["functionName"]
            node.args = {k: self._intern(a) for k, a in (v.get("arguments") or {}).items()}
            node.free = frozenset().union(*(a.free for a in node.args.values()))
        elif kind == "arrayValue":
            node.items = [self._intern(a) for a in v.get("values", [])]
            node.free = frozenset().union(*(a.free for a in node.items))
        elif kind == "dictionaryValue":
            node.args = {k: self._intern(a) for k, a in (v.get("values") or {}).items()}
            node.free = frozenset().union(*(a.free for a in node.args.values()))
        elif kind == "functionDefinitionValue":
            node.params = list(v.get("argumentNames", []))
            node.body = self._intern(v["body"])
            node.free = node.body.free - set(node.params)
        else:
            raise JsGenError(f"Graph node kind {kind!r} has no Code Editor form")
        self.nodes[key] = node
        return node

    def _count(self, node: Node, seen: set[str]) -> None:
        self.uses[node.key] = self.uses.get(node.key, 0) + 1
        if node.key in seen:
            return
        seen.add(node.key)
        for child in children(node):
            self._count(child, seen)


def children(node: Node) -> Iterator[Node]:
    yield from node.args.values()
    yield from node.items
    if node.body is not None:
        yield node.body


# --------------------------------------------------------------------------------------------------------------------
# JavaScript expressions and their layout


@dataclass
class Js:
    """A JavaScript expression: ``text`` on one line, or laid out over several by ``render``."""

    kind: str  # atom, call, method, array, object, function
    text: str = ""  # atom text; call/method name
    receiver: Js | None = None
    args: list[Js] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # object keys, already written as JavaScript
    statements: list[str] = field(default_factory=list)  # function body, already rendered (without the return)
    result: Js | None = None  # function return value
    cls: str = "ComputedObject"  # the JavaScript class of the value
    plain: bool = False  # a plain JavaScript literal (number, string, array, object), not an ee object

    def flat(self) -> str | None:
        """One-line text, or None if this expression holds a function."""
        if self.kind == "atom":
            return self.text
        if self.kind == "function":
            return None
        parts = [a.flat() for a in self.args]
        if any(p is None for p in parts):
            return None
        if self.kind == "array":
            return "[" + ", ".join(parts) + "]"
        if self.kind == "object":
            return "{" + ", ".join(f"{k}: {p}" for k, p in zip(self.keys, parts, strict=True)) + "}"
        head = self.text
        if self.kind == "method":
            r = self.receiver.flat()
            if r is None:
                return None
            head = f"{r}.{self.text}"
        return f"{head}(" + ", ".join(parts) + ")"


def atom(text: str, cls: str = "ComputedObject", plain: bool = False) -> Js:
    return Js("atom", text, cls=cls, plain=plain)


def render(e: Js, indent: int = 0, used: int = 0) -> str:
    """Lay out ``e`` starting at column ``indent + used``: one line if it fits, else broken at calls."""
    flat = e.flat()
    if e.kind == "atom" or flat is not None and indent + used + len(flat) <= WIDTH:
        return flat
    pad = " " * indent
    inner = " " * (indent + 2)
    if e.kind == "function":
        body = "".join(f"{inner}{s}\n" for s in e.statements)
        ret = render(e.result, indent + 2, len("return ")) + ";"
        return f"function ({', '.join(e.keys)}) {{\n{body}{inner}return {ret}\n{pad}}}"
    if e.kind in ("array", "object"):
        opening, closing = ("[", "]") if e.kind == "array" else ("{", "}")
        labels = [""] * len(e.args) if e.kind == "array" else [f"{k}: " for k in e.keys]
        lines = [inner + lab + render(a, indent + 2, len(lab)) for lab, a in zip(labels, e.args, strict=True)]
        return opening + "\n" + ",\n".join(lines) + "\n" + pad + closing
    if e.kind == "method":
        chain = []
        base: Js = e
        while base.kind == "method":
            chain.append(base)
            base = base.receiver
        chain.reverse()
        if len(chain) >= 2:
            head = render(base, indent, used)
            links = [f"\n{inner}.{c.text}{_args(c.args, indent + 2, len(c.text) + 1)}" for c in chain]
            return head + "".join(links)
        head = render(base, indent, used)
        return f"{head}.{e.text}{_args(e.args, indent, len(head.splitlines()[-1]) + len(e.text) + 1)}"
    return f"{e.text}{_args(e.args, indent, used + len(e.text))}"


def _args(args: list[Js], indent: int, used: int) -> str:
    if not args:
        return "()"
    flats = [a.flat() for a in args]
    if all(f is not None for f in flats):
        one = "(" + ", ".join(flats) + ")"
        if indent + used + len(one) <= WIDTH:
            return one
    blocks = [i for i, f in enumerate(flats) if f is None or len(f) > 40]
    if len(blocks) == 1 and args[blocks[0]].kind in ("function", "object", "array"):
        # One argument (a function, an object) opens a block; the short ones stay on the line around it.
        b = blocks[0]
        lead = "".join(f + ", " for f in flats[:b])
        tail = "".join(", " + f for f in flats[b + 1 :])
        if indent + used + 1 + len(lead) <= WIDTH:
            opened = render(args[b], indent, used + 1 + len(lead))
            if len(opened.splitlines()[-1]) + len(tail) + 1 <= WIDTH:
                return "(" + lead + opened + tail + ")"
    inner = " " * (indent + 2)
    return "(\n" + ",\n".join(inner + render(a, indent + 2) for a in args) + "\n" + " " * indent + ")"


# --------------------------------------------------------------------------------------------------------------------
# Literals


def js_string(s: str) -> str:
    """A single-quoted JavaScript string literal, ASCII only."""
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            o -= 0x10000
            out.append(f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}")
    return "'" + "".join(out) + "'"


def js_number(x: int | float) -> str:
    """A JavaScript number literal with the same value as ``x`` (as a double, which is what Earth Engine gets)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    candidates = [repr(x)]
    if x.is_integer() and abs(x) < 1e21:
        candidates.append(str(int(x)))
    mantissa, _, exponent = f"{x:.16e}".partition("e")
    candidates.append(mantissa.rstrip("0").rstrip(".") + "e" + str(int(exponent)))
    forms = []
    for c in candidates:
        if c.endswith(".0"):
            c = c[:-2]
        m, _, e = c.partition("e")
        c = f"{m}e{int(e)}" if e else m
        if float(c) == x:
            forms.append(c)
    return min(forms, key=len)


_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def js_key(k: str) -> str:
    if k == "__proto__":
        raise JsGenError("A dictionary key '__proto__' cannot be written as a JavaScript object literal key")
    return k if _IDENT.match(k) and k not in JS_RESERVED else js_string(k)


def literal(value: Any) -> Js:
    """A JSON value (a graph constant) as a JavaScript literal."""
    if value is None:
        return atom("null", plain=True)
    if isinstance(value, bool | int | float):
        return atom(js_number(value), "Number", plain=True)
    if isinstance(value, str):
        return atom(js_string(value), "String", plain=True)
    if isinstance(value, list):
        return Js("array", args=[literal(v) for v in value], cls="List", plain=True)
    if isinstance(value, dict):
        return Js(
            "object",
            keys=[js_key(k) for k in value],
            args=[literal(v) for v in value.values()],
            cls="Dictionary",
            plain=True,
        )
    raise JsGenError(f"Constant {value!r} has no JavaScript form")


# --------------------------------------------------------------------------------------------------------------------
# Writing a graph as statements


@dataclass
class Block:
    """A list of statements (the script, or a function body) and the names it declares."""

    parent: Block | None
    fn: Node | None = None  # the function definition whose body this is (None: the script)
    params: dict[str, tuple[str, str]] = field(default_factory=dict)  # graph argument -> (js name, js class)
    statements: list[str] = field(default_factory=list)
    declared: dict[str, Js] = field(default_factory=dict)  # node key -> the variable
    names: set[str] = field(default_factory=set)

    def chain(self) -> list[Block]:
        out, b = [], self
        while b is not None:
            out.append(b)
            b = b.parent
        return out[::-1]

    def taken(self, name: str) -> bool:
        return any(name in b.names for b in self.chain())

    def fresh(self, base: str) -> str:
        base = base if base not in JS_RESERVED else base + "Value"
        name, i = base, 2
        while self.taken(name):
            name, i = f"{base}{i}", i + 1
        self.names.add(name)
        return name


@dataclass(frozen=True)
class Formal:
    name: str
    type: str
    optional: bool


class Writer:
    """Writes interned graph nodes as JavaScript in the blocks of one script."""

    def __init__(self, graph: Graph, api: JsApi) -> None:
        self.graph = graph
        self.api = api
        self._body_uses: dict[str, dict[str, int]] = {}

    def uses(self, node: Node, block: Block) -> int:
        """How often ``node`` is used: in the whole script, or within the function body ``block`` is."""
        if block.fn is None:
            return self.graph.uses.get(node.key, 0)
        counts = self._body_uses.get(block.fn.key)
        if counts is None:
            sub = Graph()
            sub._count(block.fn.body, set())
            counts = self._body_uses[block.fn.key] = sub.uses
        return counts.get(node.key, 0)

    # ---- values and variables

    def value(self, node: Node, block: Block, expect: str | None = None) -> Js:
        """``node`` as an expression in ``block``, declaring the variables it needs first."""
        for b in block.chain():
            if node.key in b.declared:
                return b.declared[node.key]
        if node.kind == "argumentReference":
            for b in reversed(block.chain()):
                if node.value in b.params:
                    name, cls = b.params[node.value]
                    return atom(name, cls)
            raise JsGenError(f"Argument {node.value!r} is not bound by an enclosing function")
        home = self.home(node, block)
        if self.hoisted(node, home):
            e = self.expression(node, home, None)
            name = home.fresh(self.name_for(node, e))
            home.statements.append(f"var {name} = {render(e, len(home.chain()) * 2 - 2, len(name) + 7)};")
            var = atom(name, e.cls, plain=e.plain)
            home.declared[node.key] = var
            return var
        return self.expression(node, block, expect)

    def hoisted(self, node: Node, home: Block) -> bool:
        """Whether ``node`` gets a variable: used more than once where it can live, and more than a literal."""
        if node.kind != "functionInvocationValue" or self.uses(node, home) < 2:
            return False
        if self.unpromoted(node, None) is not None:
            return False
        loads = ("Image.load", "ImageCollection.load", "Collection.loadTable")
        return node.value in loads or any(a.kind not in ("constantValue", "integerValue") for a in node.args.values())

    def home(self, node: Node, block: Block) -> Block:
        """The outermost enclosing block where every argument ``node`` uses is bound."""
        bound: set[str] = set()
        for b in block.chain():
            bound |= set(b.params)
            if node.free <= bound:
                return b
        raise JsGenError(f"Arguments {sorted(node.free - bound)} are not bound")

    def name_for(self, node: Node, e: Js) -> str:
        if node.value in ("Collection.loadTable",):
            return "table"
        return _CLASS_NAMES.get(e.cls, "value")

    # ---- expressions

    def expression(self, node: Node, block: Block, expect: str | None) -> Js:
        k = node.kind
        if k == "constantValue":
            return literal(node.value)
        if k == "integerValue":
            n = int(node.value)
            if abs(n) <= MAX_SAFE_INTEGER:
                return atom(str(n), "Number", plain=True)
            # JavaScript numbers are doubles: Earth Engine parses the exact 64-bit integer from its text.
            return Js("call", "ee.Number.parse", args=[atom(js_string(node.value), "String", plain=True)], cls="Number")
        if k == "arrayValue":
            return Js("array", args=[self.value(n, block) for n in node.items], cls="List", plain=True)
        if k == "dictionaryValue":
            return Js(
                "object",
                keys=[js_key(key) for key in node.args],
                args=[self.value(n, block) for n in node.args.values()],
                cls="Dictionary",
                plain=True,
            )
        if k == "functionDefinitionValue":
            return self.function(node, block, ["ComputedObject"] * len(node.params))
        if k == "functionInvocationValue":
            small = self.unpromoted(node, expect)
            if small is not None:
                return small
            return self.invocation(node, block)
        raise JsGenError(f"Graph node kind {k!r} has no Code Editor form")

    def function(self, node: Node, block: Block, classes: list[str], names: list[str] | None = None) -> Js:
        body = Block(parent=block, fn=node)
        js_names = []
        for i, (param, cls) in enumerate(zip(node.params, classes, strict=True)):
            base = (names[i] if names and i < len(names) else None) or _CLASS_NAMES.get(cls, "value")
            if base == "value":
                base = ["x", "y", "z"][i] if len(node.params) <= 3 else f"arg{i}"
            name = body.fresh(base)
            body.params[param] = (name, cls)
            js_names.append(name)
        result = self.value(node.body, body)
        return Js("function", keys=js_names, statements=body.statements, result=result, cls="Function")

    def unpromoted(self, node: Node, expect: str | None) -> Js | None:
        """A literal the JavaScript client promotes into ``node`` in a slot of type ``expect``."""
        args = node.args
        consts = all(a.kind == "constantValue" for a in args.values())
        if expect == "ErrorMargin" and node.value == "ErrorMargin" and set(args) == {"value"} and consts:
            return literal(args["value"].value)
        if expect == "Image" and node.value == "Image.constant" and set(args) == {"value"} and consts:
            if isinstance(args["value"].value, int | float) and not isinstance(args["value"].value, bool):
                return literal(args["value"].value)
        if expect == "Projection" and node.value == "Projection" and set(args) == {"crs"} and _const_str(args["crs"]):
            return literal(args["crs"].value)
        return None

    def invocation(self, node: Node, block: Block) -> Js:
        name = node.value
        idiom = IDIOMS.get(name)
        if idiom is not None:
            e = idiom(self, node, block)
            if e is not None:
                return e
        sig = self.api.signatures.get(name)
        if sig is None:
            raise JsGenError(f"Unknown Earth Engine algorithm {name!r}")
        cls = return_class(sig.return_type, self.api)
        formal = [Formal(a.name, _bare_type(a.type), a.optional) for a in sig.arguments]
        provided = node.args
        unknown = set(provided) - {f.name for f in formal}
        if unknown:
            raise JsGenError(f"{name}: arguments {sorted(unknown)} are not in its signature")
        if formal and formal[0].name in provided:
            methods = self.api.instance_methods(name)
            if methods:
                receiver = self.value(provided[formal[0].name], block)
                target = self.receiver_for(receiver, methods, name)
                if target is not None:
                    recv, method, recv_cls = target
                    rest = formal[1:]
                    call_args = self.call_args({k: v for k, v in provided.items() if k != formal[0].name}, rest, block)
                    if call_args is not None:
                        return Js("method", method, receiver=recv, args=call_args, cls=cls)
        function = self.api.static_function(name)
        call_args = self.call_args(provided, formal, block) if function else None
        if function and call_args is not None:
            return Js("call", function, args=call_args, cls=cls)
        named = {f.name: self.value(provided[f.name], block, f.type) for f in formal if f.name in provided}
        if self.positional(list(provided), [f.name for f in formal]):
            args = [atom(js_string(name))] + list(named.values())
            return Js("call", "ee.ApiFunction._call", args=args, cls=cls)
        obj = Js("object", keys=[js_key(k) for k in named], args=list(named.values()), cls="Dictionary", plain=True)
        return Js("call", "ee.ApiFunction._apply", args=[atom(js_string(name)), obj], cls=cls)

    def receiver_for(self, receiver: Js, methods: list[tuple[str, str]], algorithm: str) -> tuple[Js, str, str] | None:
        """The receiver (cast if needed) and method name that call ``algorithm``."""
        own = self.api.instance.get(receiver.cls, {})
        for _, method in methods:
            if own.get(method) == algorithm and not receiver.plain:
                return receiver, method, receiver.cls
        family = algorithm.split(".")[0]
        ordered = sorted(methods, key=lambda cm: (cm[0] != family, cm[0]))
        for cls, method in ordered:
            if receiver.plain:
                ok = (cls, receiver.cls) in (("Number", "Number"), ("String", "String"), ("List", "List"))
                ok = ok or (cls, receiver.cls) == ("Dictionary", "Dictionary")
            else:
                ok = cls in self.api.casts
            if ok:
                return Js("call", f"ee.{cls}", args=[receiver], cls=cls), method, cls
        return None

    @staticmethod
    def positional(provided: list[str], formal: list[str]) -> bool:
        """Whether the provided arguments are a leading run of the formal ones (so positions say which is which)."""
        return set(formal[: len(provided)]) == set(provided)

    def call_args(self, provided: dict[str, Node], formal: list[Formal], block: Block) -> list[Js] | None:
        """Arguments for an API-bound call: positional where they are a leading run, else one object of named ones."""
        names = [f.name for f in formal]
        types = {f.name: f.type for f in formal}
        if self.positional(list(provided), names):
            args = [self.value(provided[n], block, types[n]) for n in names if n in provided]
            if len(args) == 1 and args[0].kind == "object" and self.keyword_call(formal):
                return None  # the client would read a lone object literal as named arguments
            return args
        if not self.keyword_call(formal):
            return None
        values = [self.value(provided[n], block, types[n]) for n in names if n in provided]
        keys = [js_key(n) for n in names if n in provided]
        return [Js("object", keys=keys, args=values, cls="Dictionary", plain=True)]

    @staticmethod
    def keyword_call(formal: list[Formal]) -> bool:
        """Whether the client reads a lone object argument as named arguments (ee.Types.useKeywordArgs)."""
        if not formal:
            return False
        requires_one = len(formal) == 1 or formal[1].optional
        return not requires_one or formal[0].type != "Dictionary"


# --------------------------------------------------------------------------------------------------------------------
# The JavaScript client's own spellings of common algorithms (client-written functions, not API bindings)

Idiom = Callable[[Writer, Node, Block], Js | None]
IDIOMS: dict[str, Idiom] = {}


def idiom(*names: str) -> Callable[[Idiom], Idiom]:
    def register(f: Idiom) -> Idiom:
        for n in names:
            IDIOMS[n] = f
        return f

    return register


def _const_str(node: Node | None) -> bool:
    return node is not None and node.kind == "constantValue" and isinstance(node.value, str)


def _only(node: Node, *allowed: str, required: tuple[str, ...] = ()) -> bool:
    return set(node.args) <= set(allowed) and set(required) <= set(node.args)


@idiom("Image.load")
def _image_load(w: Writer, node: Node, block: Block) -> Js | None:
    if _only(node, "id", required=("id",)) and _const_str(node.args["id"]):
        return Js("call", "ee.Image", args=[literal(node.args["id"].value)], cls="Image")
    return None


@idiom("ImageCollection.load")
def _image_collection_load(w: Writer, node: Node, block: Block) -> Js | None:
    if _only(node, "id", required=("id",)) and _const_str(node.args["id"]):
        return Js("call", "ee.ImageCollection", args=[literal(node.args["id"].value)], cls="ImageCollection")
    return None


@idiom("Collection.loadTable")
def _load_table(w: Writer, node: Node, block: Block) -> Js | None:
    if _only(node, "tableId", required=("tableId",)) and _const_str(node.args["tableId"]):
        return Js("call", "ee.FeatureCollection", args=[literal(node.args["tableId"].value)], cls="FeatureCollection")
    return None


@idiom("Date")
def _date(w: Writer, node: Node, block: Block) -> Js | None:
    value = node.args.get("value")
    if not _only(node, "value", "timeZone", required=("value",)) or value.kind != "constantValue":
        return None
    args = [literal(value.value)]
    if "timeZone" in node.args:
        args.append(w.value(node.args["timeZone"], block, "String"))
    return Js("call", "ee.Date", args=args, cls="Date")


@idiom("Feature")
def _feature(w: Writer, node: Node, block: Block) -> Js | None:
    # ee.Feature(geometry, properties) always sends both (a null geometry as null, no properties as {}).
    if set(node.args) != {"geometry", "metadata"}:
        return None
    g = w.value(node.args["geometry"], block, "Geometry")
    if g.cls != "Geometry":
        return None
    return Js("call", "ee.Feature", args=[g, w.value(node.args["metadata"], block, "Dictionary")], cls="Feature")


# ee.Geometry.X(coords, proj, geodesic, maxError, evenOdd): the JavaScript constructors' positional parameters.
_GEOMETRY_PARAMS = {
    "Point": ("coordinates", "crs"),
    "MultiPoint": ("coordinates", "crs"),
    "LineString": ("coordinates", "crs", "geodesic", "maxError"),
    "LinearRing": ("coordinates", "crs", "geodesic", "maxError"),
    "MultiLineString": ("coordinates", "crs", "geodesic", "maxError"),
    "Polygon": ("coordinates", "crs", "geodesic", "maxError", "evenOdd"),
    "MultiPolygon": ("coordinates", "crs", "geodesic", "maxError", "evenOdd"),
}
_GEOMETRY_DEPTH = {"Point": 1, "MultiPoint": 2, "LineString": 2, "LinearRing": 2, "MultiLineString": 3, "Polygon": 3}
_GEOMETRY_DEPTH["MultiPolygon"] = 4


def _depth(x: Any) -> int:
    return 1 + _depth(x[0]) if isinstance(x, list) and x else 0


@idiom(*(f"GeometryConstructors.{t}" for t in _GEOMETRY_PARAMS))
def _geometry(w: Writer, node: Node, block: Block) -> Js | None:
    kind = node.value.split(".")[1]
    params = _GEOMETRY_PARAMS[kind]
    coords = node.args.get("coordinates")
    rectangle = _rectangle(node)
    if rectangle is not None:
        return Js("call", "ee.Geometry.Rectangle", args=[literal(rectangle)], cls="Geometry")
    if not _only(node, *params, required=("coordinates",)) or coords.kind != "constantValue":
        return None
    if "maxError" in node.args or _depth(coords.value) != _GEOMETRY_DEPTH[kind]:
        return None
    crs = node.args.get("crs")
    if crs is not None and not (
        crs.kind == "functionInvocationValue"
        and crs.value == "Projection"
        and _only(crs, "crs", required=("crs",))
        and _const_str(crs.args["crs"])
    ):
        return None
    last = max(params.index(p) for p in node.args)
    args = []
    for p in params[: last + 1]:
        if p == "crs":
            args.append(literal(crs.args["crs"].value) if crs is not None else literal(None))
        elif p in node.args:
            if node.args[p].kind != "constantValue":
                return None
            args.append(literal(node.args[p].value))
        else:
            args.append(literal(None))
    return Js("call", f"ee.Geometry.{kind}", args=args, cls="Geometry")


def _rectangle(node: Node) -> list | None:
    """[x1, y1, x2, y2] if ``node`` is what ee.Geometry.Rectangle([x1, y1, x2, y2]) sends (an even-odd Polygon)."""
    if node.value != "GeometryConstructors.Polygon" or set(node.args) != {"coordinates", "evenOdd"}:
        return None
    coords, even_odd = node.args["coordinates"], node.args["evenOdd"]
    if coords.kind != "constantValue" or even_odd.kind != "constantValue" or even_odd.value is not True:
        return None
    ring = coords.value
    if not (isinstance(ring, list) and len(ring) == 1 and isinstance(ring[0], list) and len(ring[0]) == 4):
        return None
    if not all(isinstance(p, list) and len(p) == 2 for p in ring[0]):
        return None
    (a, b), (c, d), (e, f), (g, h) = ring[0]
    if a == c and d == f and e == g and b == h:
        return [a, d, e, b]
    return None


_FILTER_COMPARISONS = {"Filter.equals": "eq", "Filter.lessThan": "lt", "Filter.greaterThan": "gt"}


@idiom(*_FILTER_COMPARISONS)
def _filter_compare(w: Writer, node: Node, block: Block) -> Js | None:
    if set(node.args) == {"leftField", "rightValue"} and _const_str(node.args["leftField"]):
        field_, value = node.args["leftField"], node.args["rightValue"]
        return Js(
            "call",
            f"ee.Filter.{_FILTER_COMPARISONS[node.value]}",
            args=[literal(field_.value), w.value(value, block)],
            cls="Filter",
        )
    return None


@idiom("Filter.and", "Filter.or")
def _filter_combine(w: Writer, node: Node, block: Block) -> Js | None:
    filters = node.args.get("filters")
    if set(node.args) == {"filters"} and filters.kind == "arrayValue" and filters.items:
        args = [w.value(f, block, "Filter") for f in filters.items]
        if all(a.cls == "Filter" for a in args):
            return Js("call", "ee.Filter." + node.value.split(".")[1], args=args, cls="Filter")
    return None


@idiom("Collection.map")
def _collection_map(w: Writer, node: Node, block: Block) -> Js | None:
    fn, coll = node.args.get("baseAlgorithm"), node.args.get("collection")
    if not _only(node, "collection", "baseAlgorithm", "dropNulls", required=("collection", "baseAlgorithm")):
        return None
    if fn.kind != "functionDefinitionValue" or len(fn.params) != 1:
        return None
    receiver = _collection(w, coll, block)
    if receiver is None:
        return None
    element = "Image" if receiver.cls == "ImageCollection" else "Feature"
    args = [w.function(fn, block, [element])]
    if "dropNulls" in node.args:
        args.append(w.value(node.args["dropNulls"], block, "Boolean"))
    return Js("method", "map", receiver=receiver, args=args, cls=receiver.cls)


@idiom("Collection.iterate")
def _collection_iterate(w: Writer, node: Node, block: Block) -> Js | None:
    fn, coll = node.args.get("function"), node.args.get("collection")
    if not _only(node, "collection", "function", "first", required=("collection", "function")):
        return None
    if fn.kind != "functionDefinitionValue" or len(fn.params) != 2:
        return None
    receiver = _collection(w, coll, block)
    if receiver is None:
        return None
    element = "Image" if receiver.cls == "ImageCollection" else "Feature"
    args = [w.function(fn, block, [element, "ComputedObject"], [None, "previous"])]
    if "first" in node.args:
        args.append(w.value(node.args["first"], block))
    return Js("method", "iterate", receiver=receiver, args=args, cls="ComputedObject")


@idiom("Collection.filter")
def _collection_filter(w: Writer, node: Node, block: Block) -> Js | None:
    if not _only(node, "collection", "filter", required=("collection", "filter")):
        return None
    receiver = _collection(w, node.args["collection"], block)
    if receiver is None:
        return None
    g = _bounds_geometry(node.args["filter"])
    if g is not None and node.args["filter"].key not in {k for b in block.chain() for k in b.declared}:
        geometry = w.value(g, block, "Geometry")
        if geometry.cls == "Geometry":
            return Js("method", "filterBounds", receiver=receiver, args=[geometry], cls=receiver.cls)
    dates = _date_range(node.args["filter"])
    if dates is not None and node.args["filter"].key not in {k for b in block.chain() for k in b.declared}:
        args = [w.value(d, block) for d in dates]
        return Js("method", "filterDate", receiver=receiver, args=args, cls=receiver.cls)
    f = w.value(node.args["filter"], block, "Filter")
    if f.cls != "Filter":
        return None
    return Js("method", "filter", receiver=receiver, args=[f], cls=receiver.cls)


def _collection(w: Writer, node: Node, block: Block) -> Js | None:
    receiver = w.value(node, block, "FeatureCollection")
    if receiver.cls in ("FeatureCollection", "ImageCollection"):
        return receiver
    if receiver.plain:
        return None
    return Js("call", "ee.FeatureCollection", args=[receiver], cls="FeatureCollection")


@idiom(*("Array", "DateRange", "ErrorMargin", "PixelType", "Projection"))
def _generated_constructor(w: Writer, node: Node, block: Block) -> Js | None:
    """``ee.Projection('EPSG:4326')``, ``ee.DateRange(start, end)``: classes whose constructor is the algorithm."""
    sig = w.api.signatures.get(node.value)
    if sig is None or not w.api.has_class(node.value):
        return None
    formal = [Formal(a.name, _bare_type(a.type), a.optional) for a in sig.arguments]
    args = w.call_args(node.args, formal, block)
    if not args or not Writer.positional(list(node.args), [f.name for f in formal]):
        return None
    if len(args) == 1 and (not args[0].plain and args[0].cls == node.value or args[0].kind == "object"):
        return None  # a lone computed value of the same class is cast, not constructed
    return Js("call", f"ee.{node.value}", args=args, cls=node.value)


@idiom("Filter.not")
def _filter_not(w: Writer, node: Node, block: Block) -> Js | None:
    if set(node.args) != {"filter"}:
        return None
    f = w.value(node.args["filter"], block, "Filter")
    return Js("method", "not", receiver=f, cls="Filter") if f.cls == "Filter" and not f.plain else None


def _bounds_geometry(node: Node) -> Node | None:
    """G if ``node`` is ee.Filter.bounds(G): Filter.intersects{leftField: '.all', rightValue: Feature{geometry: G}}."""
    if node.kind != "functionInvocationValue" or node.value != "Filter.intersects":
        return None
    if set(node.args) != {"leftField", "rightValue"} or node.args["leftField"].value != ".all":
        return None
    feature = node.args["rightValue"]
    if feature.kind == "functionInvocationValue" and feature.value == "Feature" and set(feature.args) == {"geometry"}:
        return feature.args["geometry"]
    return None


def _date_range(node: Node) -> list[Node] | None:
    """[start, end?] if ``node`` is ee.Filter.date(start, end)."""
    if node.kind != "functionInvocationValue" or node.value != "Filter.dateRangeContains":
        return None
    if set(node.args) != {"leftValue", "rightField"} or node.args["rightField"].value != "system:time_start":
        return None
    r = node.args["leftValue"]
    if r.kind == "functionInvocationValue" and r.value == "DateRange" and set(r.args) in ({"start"}, {"start", "end"}):
        return [r.args[k] for k in ("start", "end") if k in r.args]
    return None


@idiom("Filter.intersects")
def _filter_bounds(w: Writer, node: Node, block: Block) -> Js | None:
    g = _bounds_geometry(node)
    if g is None:
        return None
    geometry = w.value(g, block, "Geometry")
    return Js("call", "ee.Filter.bounds", args=[geometry], cls="Filter") if geometry.cls == "Geometry" else None


@idiom("Filter.dateRangeContains")
def _filter_date(w: Writer, node: Node, block: Block) -> Js | None:
    dates = _date_range(node)
    if dates is None:
        return None
    return Js("call", "ee.Filter.date", args=[w.value(d, block) for d in dates], cls="Filter")


@idiom("Image.select")
def _image_select(w: Writer, node: Node, block: Block) -> Js | None:
    if not _only(node, "input", "bandSelectors", "newNames", required=("input", "bandSelectors")):
        return None
    image = w.value(node.args["input"], block, "Image")
    selectors = w.value(node.args["bandSelectors"], block, "List")
    if image.cls != "Image" or image.plain or selectors.kind != "array":
        return None  # select(var_args) reads a lone string or number as one selector, not a list
    args = [selectors]
    if "newNames" in node.args:
        args.append(w.value(node.args["newNames"], block, "List"))
    return Js("method", "select", receiver=image, args=args, cls="Image")


@idiom(CALL)
def _computed_call(w: Writer, node: Node, block: Block) -> Js | None:
    """``image.expression(text, {name: image, ...})``: the client's call of what Image.parseExpression returns."""
    fn, call = node.args.get("function"), node.args.get("arguments")
    if fn is None or call is None or fn.kind != "functionInvocationValue" or fn.value != "Image.parseExpression":
        raise JsGenError("A call of a computed function has no Code Editor form unless it is Image.expression")
    arg_name, text, names = fn.args.get("argName"), fn.args.get("expression"), fn.args.get("vars")
    if arg_name is None or text is None or names is None or arg_name.kind != "constantValue":
        raise JsGenError("Image.parseExpression without a constant argName, expression and vars")
    default = arg_name.value
    order = [n.value for n in names.items if n.kind == "constantValue"]
    if order[:1] != [default] or set(order) != set(call.args) or text.kind != "constantValue":
        raise JsGenError("Image.expression whose variables do not match its arguments")
    image = w.value(call.args[default], block, "Image")
    if image.cls != "Image" or image.plain:
        image = Js("call", "ee.Image", args=[image], cls="Image")
    args = [literal(text.value)]
    if len(order) > 1:
        mapping = [w.value(call.args[k], block, "Image") for k in order[1:]]
        args.append(Js("object", keys=[js_key(k) for k in order[1:]], args=mapping, cls="Dictionary", plain=True))
    return Js("method", "expression", receiver=image, args=args, cls="Image")


@idiom("Image.rename")
def _image_rename(w: Writer, node: Node, block: Block) -> Js | None:
    if set(node.args) != {"input", "names"}:
        return None
    image = w.value(node.args["input"], block, "Image")
    names = w.value(node.args["names"], block, "List")
    if image.cls != "Image" or image.plain:
        return None
    if names.kind == "array" and len(names.args) == 1 and names.args[0].cls == "String" and names.args[0].plain:
        return Js("method", "rename", receiver=image, args=[names.args[0]], cls="Image")
    if names.kind == "array" or not names.plain:
        return Js("method", "rename", receiver=image, args=[names], cls="Image")
    return None


@idiom("Image.clip")
def _image_clip(w: Writer, node: Node, block: Block) -> Js | None:
    if set(node.args) != {"input", "geometry"}:
        return None
    image = w.value(node.args["input"], block, "Image")
    geometry = w.value(node.args["geometry"], block, "Geometry")
    if image.cls != "Image" or image.plain or geometry.cls not in ("Geometry", "Feature", "ComputedObject"):
        return None
    return Js("method", "clip", receiver=image, args=[geometry], cls="Image")


@idiom("Element.set")
def _element_set(w: Writer, node: Node, block: Block) -> Js | None:
    if set(node.args) != {"object", "key", "value"}:
        return None
    receiver = w.value(node.args["object"], block, "Element")
    if receiver.cls not in ("Feature", "Image", "Element", "FeatureCollection", "ImageCollection"):
        return None
    key = w.value(node.args["key"], block, "String")
    value = w.value(node.args["value"], block)
    return Js("method", "set", receiver=receiver, args=[key, value], cls=receiver.cls)


# --------------------------------------------------------------------------------------------------------------------
# Scripts


@dataclass
class _Entry:
    kind: str  # value, print, addLayer, centerObject, exportImage, exportTable
    objects: list[Any]
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None


class Script:
    """A Code Editor script: named values, then display and export calls, written by ``render``.

    Values shared between entries (the same sub-graph) are written once, as a variable.
    """

    def __init__(self, title: str = "", description: str = "") -> None:
        self.title = title
        self.description = description
        self.entries: list[_Entry] = []

    def value(self, obj: Any, name: str) -> Script:
        """Declare ``var name = <obj>;``."""
        if not _IDENT.match(name) or name in JS_RESERVED:
            raise JsGenError(f"{name!r} is not a usable JavaScript variable name")
        if any(e.name == name for e in self.entries):
            raise JsGenError(f"Variable {name!r} is declared twice")
        self.entries.append(_Entry("value", [obj], name=name))
        return self

    def print(self, *objects: Any, label: str | None = None) -> Script:
        """``print(label, obj, ...)`` in the Code Editor console."""
        self.entries.append(_Entry("print", list(objects), {"label": label}))
        return self

    def add_layer(
        self, obj: Any, vis: dict | None = None, name: str | None = None, shown: bool | None = None
    ) -> Script:
        """``Map.addLayer(obj, vis, name, shown)``."""
        self.entries.append(_Entry("addLayer", [obj], {"vis": vis, "name": name, "shown": shown}))
        return self

    def center_object(self, obj: Any, zoom: int | None = None) -> Script:
        """``Map.centerObject(obj, zoom)``."""
        self.entries.append(_Entry("centerObject", [obj], {"zoom": zoom}))
        return self

    def export_image_to_cloud_storage(self, image: Any, **params: Any) -> Script:
        """``Export.image.toCloudStorage({image: ..., description, bucket, fileNamePrefix, region, scale, ...})``.

        ``region`` may be an ee object (a geometry); other parameters are JSON values.
        """
        self.entries.append(_Entry("Export.image.toCloudStorage", [image, params.pop("region", None)], params))
        return self

    def export_table_to_cloud_storage(self, collection: Any, **params: Any) -> Script:
        """``Export.table.toCloudStorage({collection: ..., description, bucket, fileNamePrefix, fileFormat, ...})``."""
        self.entries.append(_Entry("Export.table.toCloudStorage", [collection], params))
        return self

    def outputs(self) -> list[tuple[str, Any]]:
        """(variable name, object) for each ``value`` entry: what the script's variables hold."""
        return [(e.name, e.objects[0]) for e in self.entries if e.kind == "value"]

    def render(self, api: JsApi | None = None) -> str:
        """The Code Editor script: each entry's statement in order, under the title and description."""
        api = api or js_api()
        graph = Graph()
        roots = self._roots(graph)
        writer = Writer(graph, api)
        top = Block(parent=None)
        top.names |= {e.name for e in self.entries if e.kind == "value"}

        def expr(obj: Any) -> Js:
            if id(obj) in roots:
                return writer.value(roots[id(obj)], top)
            return literal(obj)

        for e in self.entries:
            if e.kind == "value":
                node = roots[id(e.objects[0])]
                v = writer.expression(node, top, None) if node.key not in top.declared else top.declared[node.key]
                v = _typed(v, e.objects[0], ee)
                top.statements.append(f"var {e.name} = {render(v, 0, len(e.name) + 7)};")
                top.declared.setdefault(node.key, atom(e.name, v.cls))
            else:
                top.statements.append(render(_call(e, expr)) + ";")
        header = [f"// {self.title}"] if self.title else []
        header += [f"// {line}".rstrip() for line in self.description.strip().splitlines()]
        return "\n".join(header + ([""] if header else []) + top.statements) + "\n"

    def _roots(self, graph: Graph) -> dict[int, Node]:
        """Each ee object of the entries added to ``graph`` once, by ``id``; a graph the JavaScript client would
        build differently (equal constants it merges) is refused."""
        roots: dict[int, Node] = {}
        for e in self.entries:
            for obj in e.objects:
                if isinstance(obj, ee.ComputedObject | ee.Function) and id(obj) not in roots:
                    tree = encode(obj)
                    clashes = constant_collisions(tree)
                    if clashes:
                        raise JsGenError(
                            "This graph holds constants that Earth Engine's JavaScript client cannot keep apart "
                            f"({'; '.join(clashes)}): its serializer merges constants whose JSON text is equal, "
                            "so no Code Editor script builds the same graph. Compute one of them instead."
                        )
                    roots[id(obj)] = graph.add(tree)
        return roots


def _call(e: Any, expr: Callable[[Any], Js]) -> Js:
    """The call of a print, addLayer, centerObject or Export entry; ``expr`` writes its ee objects."""
    if e.kind == "print":
        args = ([literal(e.params["label"])] if e.params["label"] else []) + [expr(o) for o in e.objects]
        return Js("call", "print", args=args)
    if e.kind == "addLayer":
        args = [expr(e.objects[0])]
        given = [e.params[p] is not None for p in ("vis", "name", "shown")]
        for i, p in enumerate(("vis", "name", "shown")):
            if given[i]:
                args.append(literal(e.params[p]))
            elif any(given[i:]):  # a later argument is given: this one's default is written out
                args.append(literal({} if p == "vis" else None))
        return Js("call", "Map.addLayer", args=args)
    if e.kind == "centerObject":
        args = [expr(e.objects[0])] + ([literal(e.params["zoom"])] if e.params["zoom"] is not None else [])
        return Js("call", "Map.centerObject", args=args)
    first = "image" if e.kind.startswith("Export.image") else "collection"
    keys, values = [first], [expr(e.objects[0])]
    if e.kind.startswith("Export.image") and e.objects[1] is not None:
        keys.append("region")
        values.append(expr(e.objects[1]))
    for k, v in e.params.items():
        keys.append(js_key(k))
        values.append(literal(v))
    return Js("call", e.kind, args=[Js("object", keys=keys, args=values, plain=True)])


def _typed(v: Js, obj: Any, ee: Any) -> Js:
    """A plain literal wrapped in its ee class (``ee.Number(1)``), so the variable is an ee object."""
    if not v.plain:
        return v
    for cls in ("Number", "String", "List", "Dictionary"):
        if isinstance(obj, getattr(ee, cls)):
            return Js("call", f"ee.{cls}", args=[v], cls=cls)
    return v


def to_js(obj: Any, name: str = "result", title: str = "") -> str:
    """A Code Editor script that builds ``obj`` as ``var name``."""
    return Script(title).value(obj, name).render()


# --------------------------------------------------------------------------------------------------------------------
# The pipeline steps' scripts (ee_scripts/)

ScriptFactory = Callable[[Any], Script]
SCRIPTS: dict[str, ScriptFactory] = {}


def script(filename: str) -> Callable[[ScriptFactory], ScriptFactory]:
    """Register a pipeline step's script: a function ``(ee) -> Script`` built from the library's own functions."""

    def register(f: ScriptFactory) -> ScriptFactory:
        SCRIPTS[filename] = f
        return f

    return register


@script("polygons_area.js")
def polygons_area(ee: Any) -> Script:
    """The foundation step: count and geodesic area of a polygon table (``demo.table_summary``)."""

    summary = table_summary(ee, MINES_ID)
    s = Script(
        "gee-mining: count and geodesic area of mining polygons",
        "Generated by `gee-mining js` from gee_mining.steps.measure.table_summary; do not edit by hand.\n"
        f"Replace the table id with your copy of {MINES_ID.rsplit('/', 1)[-1]}.",
    )
    return s.value(summary, "summary").print(summary, label="Mining polygons")


@script("grid.js")
def grid(ee: Any) -> Script:
    """Step 1: the positive cells of one UTM zone with overlap fractions, and the cells no negative may take.

    Built by ``gee_mining.steps.grid`` (``tag_zones``, ``positive_cells``, ``touching_cells``) for zone 19 south
    (EPSG:32719, the Chilean mines) at 5500 m. Negatives are then chosen by ``gee_mining.contracts.cells.assign_negatives``
    (integer cell arithmetic, outside Earth Engine).
    """

    spec = GridSpec.of(5500)
    epsg = 32719
    table = ee.FeatureCollection(MINES_ID)
    tagged = tag_zones(ee, table, spec)
    positives = positive_cells(ee, table, tagged, epsg, spec, "id")
    blocked = touching_cells(ee, tagged, epsg, spec, 0.0)
    s = Script(
        "gee-mining step 1: grid cells over mining polygons (one UTM zone)",
        "Generated by `gee-mining js` from gee_mining.steps.grid; do not edit by hand.\n"
        f"Parameters: cell size {spec.cell_size:g} m (zoom {spec.zoom}), zone EPSG:{epsg}, overlap >= 0.1 %.\n"
        f"Replace the table id with your copy of {MINES_ID.rsplit('/', 1)[-1]}.",
    )
    s.value(positives, "positives").value(blocked, "touching")
    s.print(positives.size(), label="Positive cells")
    s.add_layer(positives, {"color": "orange"}, "positive cells")
    s.export_table_to_cloud_storage(
        positives, description="grid_z14_EPSG32719", bucket="your-bucket", fileNamePrefix="grid/grid_z14_EPSG32719"
    )
    return s


def _example_cell() -> dict[str, Any]:
    """The zoom-14 cell holding a point of the Escondida copper mine (Chile, EPSG:32719): the scripts' example."""

    lon, lat, size, epsg = -69.07, -24.27, 5500.0, 32719
    x, y = pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    return {"name": "escondida_z14", "epsg": epsg, "cell_size": size,
            "cell_x": int(x // size), "cell_y": int(y // size), "label": 1, "zoom": 14}  # fmt: skip


@script("cell_image.js")
def cell_image_script(ee: Any) -> Script:
    """Steps 2-3 for one cell: composite, indices and labels; quicklook; COG, TFRecord and pixel-table exports."""

    row = _example_cell()
    spec = ImagerySpec(indices=DEFAULT_INDICES)
    image = cell_image(row, MINES_ID, spec)
    look = quicklook_image(composite(row, spec.composite), MINES_ID)
    grid = pixel_grid(row)
    where = {"crs": grid.crs, "crsTransform": list(grid.transform), "dimensions": f"{grid.width}x{grid.height}"}
    cog, tfr = ExportSpec("gs://your-bucket/cells/z14"), ExportSpec("gs://your-bucket/patches/z14", "TFRecord", 110)
    s = Script(
        "gee-mining steps 2-3: one cell's composite, indices, labels, quicklook and exports",
        "Generated by `gee-mining js` from gee_mining.steps.cell_image, quicklooks, exports and pixel_tables; do not edit.\n"
        f"Cell {row['name']} (EPSG:{row['epsg']}, {grid.width} x {grid.height} pixels of 10 m), 2019, Cloud Score+ "
        f"cs_cdf >= 0.6, indices {', '.join(DEFAULT_INDICES)}.\nReplace the table id with your copy of "
        f"{MINES_ID.rsplit('/', 1)[-1]} and the bucket with yours.",
    )
    s.value(image, "cell").value(look, "quicklook")
    s.add_layer(look, {}, "quicklook: B4/B3/B2, mines in red")
    s.export_image_to_cloud_storage(image, description=f"cell_{row['name']}", bucket=cog.bucket,
                                    fileNamePrefix=cog.file_prefix(row["name"]), fileFormat="GeoTIFF",
                                    formatOptions={"cloudOptimized": True, "noData": NODATA}, maxPixels=int(1e10),
                                    **where)  # fmt: skip
    s.export_image_to_cloud_storage(image, description=f"patches_{row['name']}", bucket=tfr.bucket,
                                    fileNamePrefix=tfr.file_prefix(row["name"]), fileFormat="TFRecord",
                                    formatOptions=tfr.format_options(), maxPixels=int(1e10), **where)  # fmt: skip
    s.export_table_to_cloud_storage(pixel_features(row, image), description=f"pixels_{row['name']}",
                                    bucket="your-bucket", fileNamePrefix=f"pixels/z14/{row['name']}",
                                    fileFormat="CSV", selectors=columns(spec.band_names, row))  # fmt: skip
    return s


@script("classify.js")
def classify_script(ee: Any) -> Script:
    """Step 3 on Earth Engine: samples of one cell, a random forest, its resubstitution accuracy and the
    probability map of the cell, exported as a GeoTIFF on the cell's lattice (``gee_mining.ml.classify``)."""

    row = _example_cell()
    spec = ClassifySpec(points_per_class=500, params={"numberOfTrees": 50})
    samples = training_samples([row], MINES_ID, spec)
    classifier = train(samples, spec)
    prob = probability_image(row, classifier, spec)
    grid = pixel_grid(row)
    s = Script(
        "gee-mining step 3: a random forest on one cell's features, and its probability map",
        "Generated by `gee-mining js` from gee_mining.ml.classify; do not edit.\n"
        f"Cell {row['name']} (EPSG:{row['epsg']}), features {', '.join(spec.features)}, stratified samples of "
        f"{spec.points_per_class} pixels per class, smileRandomForest(50).\n"
        "Train on many cells and measure accuracy on held-out cells with `gee-mining classify evaluate`; "
        f"replace the table id with your copy of {MINES_ID.rsplit('/', 1)[-1]} and the bucket with yours.",
    )
    s.value(samples, "samples").value(classifier, "classifier").value(prob, "probability")
    s.print(classifier.explain(), label="Random forest")
    s.print(classifier.confusionMatrix().accuracy(), label="Resubstitution accuracy")
    s.add_layer(prob, {"min": 0, "max": 1, "palette": ["white", "red"]}, "probability of a mine")
    s.export_image_to_cloud_storage(prob, description=f"prob_{row['name']}", bucket="your-bucket",
                                    fileNamePrefix=f"prob/z14/{row['name']}", crs=grid.crs,
                                    crsTransform=list(grid.transform), dimensions=f"{grid.width}x{grid.height}",
                                    maxPixels=int(1e10))  # fmt: skip
    return s


def write_scripts(out_dir: str | Path = "ee_scripts") -> list[Path]:
    """Write every registered script into ``out_dir``; ``ee`` must be initialised (any engine)."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, factory in sorted(SCRIPTS.items()):
        path = out / filename
        path.write_text(factory(ee).render())
        written.append(path)
    return written


def cli(args: Any) -> int:
    """``gee-mining js``: write ``ee_scripts/`` (graphs are built against an in-process local engine, offline)."""

    connect("local")
    for path in write_scripts(args.out):
        print(path)
    return 0

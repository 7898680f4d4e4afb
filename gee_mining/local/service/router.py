"""One door for every endpoint of Earth Engine's REST API that the engine answers.

``Router.handle(method, path, query, body, base_url, caller=None)`` returns
``(status, content_type, body)``: the body is ``bytes``, or for an NPY answer a read-only
``memoryview`` of the buffer it was written in (no copy; ``bytes``-like). The loopback HTTP server and the in-process
``http_transport`` are thin adapters around it. A request over HTTP comes with
its :class:`~.access.Caller`: its headers are checked against the server's
access rule (token, loopback Host and Origin, JSON bodies) before anything else,
and its ``gone`` event (set when the client goes away) cancels its evaluation.
The in-process transport has no caller: nothing to check, no socket to watch.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np
import orjson

from gee_mining.contracts import signatures
from gee_mining.contracts.gc_pause import deferred_gc
from gee_mining.local.core.errors import EngineError, NotFound
from gee_mining.local.core.evaluator import Context, ResultCache, evaluate
from gee_mining.local.core.info import to_info
from gee_mining.local.core.limits import Limits, RequestBudget, request_digest
from gee_mining.local.raster.pixels import (
    AnswerBuffers,
    RenderStore,
    compute_pixels,
    map_tile,
    prepare_render,
    thumbnail_pixels,
)
from gee_mining.local.service.access import Caller
from gee_mining.local.service.export import classifier_export_work, image_export_work, table_export_work
from gee_mining.local.service.quotas import Quotas
from gee_mining.local.values.feature import Feature, features_info
from gee_mining.local.values.featurecollection import FeatureCollection

JSON = "application/json; charset=UTF-8"
COMPUTE_COLLECTION_LIMIT = 5000
DEFAULT_PAGE_SIZE = 1000
MAX_OPERATIONS_PAGE = 1000

Response = tuple[int, str, bytes | memoryview]  # an NPY answer is a read-only memoryview (pixels.AnswerBuffers)


@dataclass(frozen=True)
class RawAnswer:
    """An answer that is not JSON (pixels, files)."""

    content_type: str
    content: bytes | memoryview


_ROUTES: list[tuple[str, re.Pattern, str]] = [
    ("GET", re.compile(r"^/\$discovery/rest$"), "discovery"),
    ("GET", re.compile(r"^/v1/projects/(?P<project>[^/]+)/algorithms$"), "algorithms"),
    ("POST", re.compile(r"^/v1/projects/(?P<project>[^/]+)/value:compute$"), "compute_value"),
    ("POST", re.compile(r"^/v1/projects/(?P<project>[^/]+)/table:computeFeatures$"), "compute_features"),
    ("POST", re.compile(r"^/v1/projects/(?P<project>[^/]+)/table:export$"), "export_table"),
    ("POST", re.compile(r"^/v1/projects/(?P<project>[^/]+)/image:export$"), "export_image"),
    ("POST", re.compile(r"^/v1/projects/(?P<project>[^/]+)/classifier:export$"), "export_classifier"),
    ("POST", re.compile(r"^/v1/projects/(?P<project>[^/]+)/image:computePixels$"), "compute_pixels"),
    ("POST", re.compile(r"^/v1/projects/(?P<project>[^/]+)/thumbnails$"), "create_thumbnail"),
    (
        "GET",
        re.compile(r"^/v1/projects/(?P<project>[^/]+)/thumbnails/(?P<thumb>[^/:]+):getPixels$"),
        "thumbnail_pixels",
    ),
    ("POST", re.compile(r"^/v1/projects/(?P<project>[^/]+)/maps$"), "create_map"),
    (
        "GET",
        re.compile(r"^/v1/projects/(?P<project>[^/]+)/maps/(?P<map_id>[^/]+)/tiles/(?P<z>\d+)/(?P<x>\d+)/(?P<y>\d+)$"),
        "map_tile",
    ),
    ("GET", re.compile(r"^/v1/projects/(?P<project>[^/]+)/operations$"), "list_operations"),
    ("GET", re.compile(r"^/v1/projects/(?P<project>[^/]+)/operations/(?P<op>[^/:]+)$"), "get_operation"),
    ("POST", re.compile(r"^/v1/projects/(?P<project>[^/]+)/operations/(?P<op>[^/:]+):cancel$"), "cancel_operation"),
    ("GET", re.compile(r"^/v1/projects/(?P<project>[^/]+)/assets/(?P<asset>.+)$"), "get_asset"),
]


_FAULTY = (
    "export_table",
    "export_image",
    "export_classifier",
    "get_operation",
    "list_operations",
)  # where faults.transient_rate applies
_UNMETERED = ("discovery", "algorithms")  # what the client fetches to start: outside the project's quotas
INTERACTIVE = ("compute_value", "compute_features", "compute_pixels", "create_thumbnail", "thumbnail_pixels",
               "create_map", "map_tile")  # fmt: skip
"""The requests that compute interactively (Earth Engine's 5-minute, ~10 MB answers), as counted in ``calls``."""


class Router:
    def __init__(self, engine: Any):
        self.engine = engine
        self._pages: OrderedDict[str, list] = OrderedDict()
        self._pages_lock = threading.Lock()
        self.results = ResultCache()  # sub-graph values across requests (the evaluator's)
        self.answer_buffers = AnswerBuffers()  # NPY answers are written in them, across requests
        self._renders: Any = None  # maps and thumbnails (pixels.RenderStore), made on first use
        self.quotas = Quotas(self.limits)
        self.calls: Counter[str] = Counter()  # requests answered, by handler: what a plan's counts are checked on
        self._request = threading.local()  # the running request's cancellation event, per server thread

    @property
    def limits(self) -> Limits:
        """The engine's limits (``gee_mining.local.core.limits``)."""
        return getattr(self.engine, "limits", None) or Limits(enabled=False)

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: bytes | str | None,
        base_url: str,
        caller: Caller | None = None,
    ) -> Response:
        try:
            for route_method, pattern, name in _ROUTES:
                m = pattern.match(path)
                if m and route_method == method.upper():
                    return self._dispatch(name, m.groupdict(), method, query, body, base_url, caller)
            raise NotFound(
                f"The gee-mining local engine does not serve {method.upper()} {path}. "
                "It answers the Earth Engine REST methods listed in docs/local-engine.md."
            )
        except EngineError as e:
            return e.status, JSON, json.dumps(e.to_json()).encode()
        except Exception as e:  # never take the server down with a request
            err = EngineError(f"Internal error in the local engine: {type(e).__name__}: {e}", status=500)
            return 500, JSON, json.dumps(err.to_json()).encode()

    def _dispatch(
        self, name: str, groups: dict, method: str, query, body, base_url: str, caller: Caller | None
    ) -> Response:
        """One matched request: who sent it (over HTTP), its size, the project's quotas, injected faults,
        then the handler, cancelled when its client goes away."""
        handler: Callable[..., Any] = getattr(self, name)
        if caller is not None:
            caller.access.check(name, method, caller.headers)
        self.calls[name] += 1
        self.limits.check_request(body)
        self._request.gone = caller.gone if caller is not None else None
        try:
            return self._run(handler, name, groups, method, query, body, base_url)
        finally:
            self._request.gone = None

    def _run(self, handler: Callable[..., Any], name: str, groups: dict, method: str, query, body, base_url):
        """The handler within the project's quotas, after any injected fault."""
        with self.quotas.admit() if name not in _UNMETERED else nullcontext():
            if name in _FAULTY and getattr(self.engine, "faults", None) is not None:
                self.engine.faults.request()
            with deferred_gc():  # the answer's objects too (see gee_mining.contracts.gc_pause)
                payload = _parse_body(body) if method.upper() == "POST" else {}
                result = handler(payload, base_url=base_url, query=query, **groups)
                if isinstance(result, RawAnswer):
                    return 200, result.content_type, result.content
                return 200, JSON, _dumps(result)

    # -- discovery ---------------------------------------------------------

    def discovery(self, payload, base_url: str, **_):
        doc = dict(signatures.discovery_document())
        doc["rootUrl"] = base_url.rstrip("/") + "/"
        doc["baseUrl"] = doc["rootUrl"]
        return doc

    def algorithms(self, payload, **_):
        return signatures.algorithms_document()

    # -- computation -------------------------------------------------------

    def _context(self, project: str, interactive: bool = True) -> Context:
        """A request's context; an interactive one carries its budget (time, work) and stops when its client
        goes away (over HTTP), a batch task's has neither."""
        limits = self.limits
        budget = RequestBudget(limits) if interactive and limits.enabled else None
        gone = getattr(self._request, "gone", None) if interactive else None
        return Context(
            catalog=self.engine.catalog,
            project=project,
            settings=self.engine.settings,
            limits=limits,
            budget=budget,
            cancelled=gone if gone is not None else threading.Event(),
            results=self.results,
            answer_buffers=self.answer_buffers,
        )

    def _evaluate(self, payload: Mapping, project: str) -> Any:
        return self._evaluate_in(payload, self._context(project))

    @staticmethod
    def _evaluate_in(payload: Mapping, ctx: Context) -> Any:
        expression = payload.get("expression")
        if expression is None:
            raise EngineError("Request is missing 'expression'.")
        return evaluate(expression, ctx)

    def compute_value(self, payload, project: str, **_):
        value = self._evaluate(payload, project)
        if isinstance(value, FeatureCollection) and len(value.features) > COMPUTE_COLLECTION_LIMIT:
            raise EngineError(f"Collection query aborted after accumulating over {COMPUTE_COLLECTION_LIMIT} elements.")
        answer = {"result": to_info(value)}
        if self.limits.enabled:  # encoded twice only to measure it; answers are small by this limit
            self.limits.check_answer(len(_dumps(answer)), "value:compute")
        return answer

    def compute_features(self, payload, project: str, **_):
        token = payload.get("pageToken")
        size = int(payload.get("pageSize") or DEFAULT_PAGE_SIZE)
        if size <= 0:
            raise EngineError("pageSize must be positive.")
        if token:
            key, _, offset_text = str(token).partition(":")
            with self._pages_lock:
                kept = self._pages.get(key)
            if kept is None:
                raise EngineError(f"Invalid or expired page token '{token}'.")
            features, digest = kept
            offset = int(offset_text)
        else:
            features, digest = self._collection(payload, project), request_digest(payload.get("expression"))
            key, offset = uuid.uuid4().hex, 0
            with self._pages_lock:
                self._pages[key] = (features, digest)
                while len(self._pages) > 64:
                    self._pages.popitem(last=False)
        # Earth Engine "may return fewer" than pageSize: a short page by default, and never over page_bytes.
        # Only this page's features are turned into GeoJSON (the rest are kept as the engine's features, a
        # few times smaller), and the whole answer encoded in one call, its bytes not copied after; the
        # features one by one only when the page must be cut to fit.
        chunk = features[offset : offset + self.limits.page_length(size, digest, offset)]
        infos = features_info(chunk, arrays=True)
        end = offset + len(infos)
        answer, list_bytes = _dumps_page(infos, f"{key}:{end}" if end < len(features) else None)
        if not self.limits.fits_page(list_bytes):
            page = self.limits.fit_page([_dumps_features([f])[1:-1] for f in infos])
            end = offset + len(page)
            tail = f',"nextPageToken":"{key}:{end}"'.encode() if end < len(features) else b""
            answer = _PAGE_HEAD + b"[" + b",".join(page) + b"]" + tail + b"}"
        if end >= len(features):  # the last page: nothing asks for this result again, so it need not stay in memory
            with self._pages_lock:
                self._pages.pop(key, None)
        return RawAnswer(JSON, answer)

    def _collection(self, payload, project: str) -> list[Feature]:
        """The features of a computeFeatures request's collection."""
        value = self._evaluate(payload, project)
        if not isinstance(value, FeatureCollection):
            raise EngineError(
                f"table:computeFeatures needs a FeatureCollection, not {getattr(value, 'ee_type', type(value).__name__)}."
            )
        return value.features

    def compute_pixels(self, payload, project: str, **_):
        ctx = self._context(project)
        value = self._evaluate_in(payload, ctx)
        content_type, content = compute_pixels(value, payload, ctx)
        return RawAnswer(content_type, content)

    # -- thumbnails and maps ---------------------------------------------------

    def _render_store(self):
        with self._pages_lock:
            if self._renders is None:
                self._renders = RenderStore()
            return self._renders

    def _create_render(self, payload, project: str, kind: str) -> str:
        value = self._evaluate_in(payload, self._context(project))
        return self._render_store().add(prepare_render(value, payload, kind))

    def create_thumbnail(self, payload, project: str, **_):
        return {"name": f"projects/{project}/thumbnails/{self._create_render(payload, project, 'thumbnail')}"}

    def thumbnail_pixels(self, payload, project: str, thumb: str, **_):
        render = self._render_store().get(thumb, "thumbnail")
        return RawAnswer(*thumbnail_pixels(render, self._context(project)))

    def create_map(self, payload, project: str, **_):
        return {"name": f"projects/{project}/maps/{self._create_render(payload, project, 'map')}"}

    def map_tile(self, payload, project: str, map_id: str, z: str, x: str, y: str, **_):
        render = self._render_store().get(map_id, "map")
        return RawAnswer(*map_tile(render, int(z), int(x), int(y), self._context(project)))

    # -- batch tasks ---------------------------------------------------------

    def _submit_export(self, payload, project: str, kind: str, default_name: str, make_work, needs_expression=True):
        """A batch export: the request id checked, its work built on a batch context, an operation submitted."""
        if needs_expression and payload.get("expression") is None:
            raise EngineError("Request is missing 'expression'.")
        self.limits.check_request_id(payload.get("requestId"))
        work = make_work(self.engine, payload, self._context(project, interactive=False))
        op = self.engine.operations.submit(kind, payload.get("description") or default_name, work,
                                           payload.get("requestId"))  # fmt: skip
        return op.to_json()

    def export_image(self, payload, project: str, **_):
        return self._submit_export(payload, project, "EXPORT_IMAGE", "myExportImageTask", image_export_work,
                                   needs_expression=False)  # fmt: skip

    def export_table(self, payload, project: str, **_):
        return self._submit_export(payload, project, "EXPORT_FEATURES", "myExportTableTask", table_export_work)

    def export_classifier(self, payload, project: str, **_):
        """``classifier:export`` (``Export.classifier.toAsset``): an EXPORT_CLASSIFIER task."""
        return self._submit_export(payload, project, "EXPORT_CLASSIFIER", "myExportClassifierTask",
                                   classifier_export_work)  # fmt: skip

    def list_operations(self, payload, query=None, **_):
        """``operations.list``: pages of at most ``pageSize`` with ``nextPageToken`` (the ``ee`` client asks for
        500 a page; without ``pageSize``, and above it, the engine's own cap of 1,000)."""
        query = query or {}
        try:
            size = int(query.get("pageSize") or MAX_OPERATIONS_PAGE)
        except ValueError:
            raise EngineError(f"pageSize must be an integer, not '{query.get('pageSize')}'.") from None
        if size <= 0:
            raise EngineError("pageSize must be positive.")
        page, token = self.engine.operations.page(min(size, MAX_OPERATIONS_PAGE), query.get("pageToken"))
        out: dict[str, Any] = {"operations": page}
        if token is not None:
            out["nextPageToken"] = token
        return out

    def get_operation(self, payload, op: str, **_):
        return self.engine.operations.get(op)

    def cancel_operation(self, payload, op: str, **_):
        self.engine.operations.cancel(op)
        return {}

    # -- assets --------------------------------------------------------------

    def get_asset(self, payload, project: str, asset: str, **_):
        asset = unquote(asset)
        asset_id = asset if asset.startswith("projects/") else f"projects/{project}/assets/{asset}"
        for candidate in (asset_id, asset):
            if self.engine.catalog.has(candidate):
                return self.engine.catalog.asset_info(candidate)
        raise NotFound(f"Asset '{asset_id}' not found.")


def _dumps(value: Any) -> bytes:
    """Compact JSON (UTF-8): answers of thousands of features are encoded, sent and decoded.

    orjson writes the same values as ``json.dumps`` ten times faster (a page of 5,000 polygons: 0.17 s in
    ``json``), except that it writes a non-finite number as ``null``, where ``json`` (and the engine's
    answers until now) write ``NaN`` / ``Infinity``; and it refuses integers beyond 64 bits and keys that
    are not strings. Those answers go through ``json``: its output is kept wherever orjson's would differ
    (an answer with a ``null`` is searched for non-finite numbers; one without cannot hold any)."""
    try:
        out = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # orjson.JSONEncodeError: a huge integer, a key that is not a string, an unknown type
        return _json_dumps(value)
    if b"null" in out and _has_non_finite(value):
        return _json_dumps(value)
    return out


_PAGE_HEAD = b'{"type":"FeatureCollection","features":'


def _dumps_page(features: list, token: str | None) -> tuple[bytes, int]:
    """A ``computeFeatures`` answer (``{"type":"FeatureCollection","features":[...],"nextPageToken":...}``,
    the token only if given) encoded in one call, as :func:`_dumps_features` encodes its features; and the
    length in bytes of its features' list, which the page's size limit counts."""
    answer: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if token is not None:
        answer["nextPageToken"] = token
    out = _dumps_features(features, answer)
    return out, len(out) - len(_dumps({**answer, "features": []})) + 2


def _dumps_features(features: list, value: Any = None) -> bytes:
    """:func:`_dumps` of a list of GeoJSON features (or of ``value``, which holds them and no other ``null``),
    where the ``null`` of a feature without geometry (every cell of a grid's tables) is not taken for a
    non-finite number: the features are searched for those (orjson writes NaN and the infinities as ``null``)
    only if the text holds more ``null`` than null geometries."""
    value = features if value is None else value
    try:
        out = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return _json_dumps(value)
    nulls = _count_null(out)
    if nulls:
        bare = sum(1 for f in features if type(f) is dict and "geometry" in f and f["geometry"] is None)
        if nulls > bare and _has_non_finite(features):
            return _json_dumps(value)
    return out


def _count_null(text: bytes) -> int:
    """How many times ``null`` occurs in ``text``: each ``n`` followed by ``ull``, found on the bytes as an array
    (``bytes.count(b"null")`` scans a page of digits at under 1 GB/s: its skip filter takes ``5``, ``.`` and ``,``
    for the letters of ``null``; a map's 11.7 MB answer took 15 ms)."""
    b = np.frombuffer(text, dtype=np.uint8)
    at = np.flatnonzero(b[:-3] == ord("n"))
    return int(np.count_nonzero((b[at + 1] == ord("u")) & (b[at + 2] == ord("l")) & (b[at + 3] == ord("l"))))


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), check_circular=False, default=_plain).encode()


def _plain(value: Any) -> Any:
    """A numpy array or scalar (a page's coordinates, see ``features_info``) as the lists or number ``json``
    writes; anything else is refused as ``json`` refuses it."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _has_non_finite(value: Any) -> bool:
    """Whether a JSON value holds NaN or an infinity anywhere (searched without recursion limits)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is float:
            if not math.isfinite(v):
                return True
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
        elif isinstance(v, float) and not math.isfinite(v):
            return True
        elif isinstance(v, np.ndarray) and v.dtype.kind in "fc" and not np.isfinite(v).all():
            return True
    return False


def _parse_body(body: bytes | str | None) -> dict:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EngineError("Request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise EngineError("Request body must be a JSON object.")
    return data

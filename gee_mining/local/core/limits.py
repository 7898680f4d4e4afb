"""Earth Engine's documented limits, as the local engine enforces them (on by default).

A graph that the local engine accepts should not fail at once on Earth Engine, so the engine refuses
what Earth Engine refuses, with the same HTTP status class and, where Earth Engine documents one, the
same error text (the real ``ee`` client then raises ``ee.EEException`` with it). Each limit is a field
of :class:`Limits` with Earth Engine's value as its default; the sources are listed in
``docs/engines.md`` and ``../shared/notes/earth-engine-limits.md``.

Settings: ``LocalEngine(settings={"limits": {...}})`` (``connect(engine_settings=...)``,
``gee-mining serve --limits JSON``) changes fields; ``{"limits": False}`` (``--limits off``) turns
every limit off, for a plain offline engine.

:class:`RequestBudget` is one interactive request's share of them: its time budget and the work it
has done (band pixels computed), carried by the request's context, never module state.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gee_mining.local.core.errors import EngineError

MB = 1 << 20
REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{1,60}$")
DUPLICATE_MODES = ("first", "error")


@dataclass(frozen=True)
class Limits:
    """The limits one engine enforces; every field defaults to Earth Engine's documented value.

    Payloads (REST ``projects.image.computePixels``, guide "Processing environments"):
    ``compute_pixels_bytes`` (48 MB uncompressed: pixels x bands x bytes of each band's type),
    ``pixels_per_side`` (32,768), ``bands`` (1,024), ``answer_bytes`` (about 10 MB of a
    ``value:compute`` answer), ``page_bytes`` (about 10 MB of one ``computeFeatures`` page: a longer
    page is cut short, as "the server may return fewer"), ``request_bytes`` (the serialised request).

    ``short_pages``: ``computeFeatures`` answers a random share of ``pageSize`` (deterministic per
    request and ``seed``), so every paging loop meets short pages.

    Interactive time (guide "Processing environments": about 5 minutes): ``request_time_s``; and
    work bounds standing in for Earth Engine's speed on this machine: ``pixels_per_request`` (band
    pixels computed by one interactive request) and ``features_scanned_per_request`` (features that the
    request's filters test on computed collections: Earth Engine filters a stored asset by its index but
    a computed collection, one made by ``map``, ``merge``, a list of features, ..., element by element;
    10 million is our bound, not an Earth Engine number: Earth Engine documents none). Batch exports
    have neither. The time budget is
    checked at every algorithm call and band computation, so one call's own work is bounded by the
    other limits (a regular expression runs in linear time; a list holds at most ``elements_per_value``).

    Memory (guide "Debugging": "User memory limit exceeded."; Earth Engine gives no number):
    ``elements_per_value``, the most elements one value may hold (list elements, a collection's
    features, a string's characters), a stand-in for Earth Engine's per-request memory: 10 million
    numbers take about 300 MB in the local engine. It applies to batch tasks too.

    Batch (guide "Earth Engine quotas"; REST ``projects.image.export``): ``max_concurrent_tasks``
    RUNNING at once (the rest stay PENDING, READY in the task list), ``max_queued_tasks`` unfinished
    tasks ("Too many tasks already in the queue (3000)."), ``request_id`` format (at most 60 letters,
    digits and '-'), ``duplicate_request_id``: "first" answers a repeated id with the operation it
    started, "error" answers 409 ALREADY_EXISTS (Earth Engine documents only that one request starts
    an operation).

    Quotas (guide "Earth Engine quotas"): ``requests_per_s`` (a token bucket holding one second of
    requests) and ``concurrent_requests``; both answer 429, which the ``ee`` client retries.
    """

    enabled: bool = True
    compute_pixels_bytes: int = 48 * MB
    pixels_per_side: int = 32768
    bands: int = 1024
    answer_bytes: int = 10 * MB
    page_bytes: int = 10 * MB
    request_bytes: int = 10 * MB
    short_pages: bool = True
    seed: int = 0
    request_time_s: float = 300.0
    pixels_per_request: int = 2_000_000_000
    features_scanned_per_request: int = 10_000_000
    elements_per_value: int = 10_000_000
    max_concurrent_tasks: int = 2
    max_queued_tasks: int = 3000
    duplicate_request_id: str = "error"
    requests_per_s: float = 100.0
    concurrent_requests: int = 40

    def __post_init__(self) -> None:
        if self.duplicate_request_id not in DUPLICATE_MODES:
            raise EngineError(
                f"limits.duplicate_request_id = {self.duplicate_request_id!r}: use one of {', '.join(DUPLICATE_MODES)}."
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", "float") and f.name != "seed" and not value > 0:
                raise EngineError(f"limits.{f.name} = {value!r}: give a positive number.")

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> Limits:
        """The limits of an engine's settings: ``settings["limits"]`` is absent or True (Earth Engine's
        values), False or "off" (none), or a mapping of fields to change."""
        spec = (settings or {}).get("limits", True)
        if spec is True or spec == "on":
            return cls()
        if spec is False or spec == "off" or spec is None:
            return cls(enabled=False)
        if not isinstance(spec, dict):
            raise EngineError(f"limits = {spec!r}: give true, false or a mapping of limit names to values.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise EngineError(f"unknown limit setting(s) {', '.join(unknown)}: use {', '.join(sorted(known))}.")
        return replace(cls(), **spec)

    def to_settings(self) -> dict[str, Any]:
        """The fields as a mapping (what ``from_settings`` reads back)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # -- payloads ------------------------------------------------------------------------------

    def check_request(self, body: bytes | str | None) -> None:
        """Refuse a serialised request over ``request_bytes`` (Google's front end answers 400)."""
        size = len(body or b"")
        if self.enabled and size > self.request_bytes:
            raise EngineError(
                f"Request payload size exceeds the limit: {self.request_bytes} bytes. "
                f"(this request: {size} bytes; limits.request_bytes)",
                status=400,
            )

    def check_answer(self, size: int, what: str) -> None:
        """Refuse an interactive answer over ``answer_bytes``."""
        if self.enabled and size > self.answer_bytes:
            raise EngineError(
                f"{what}: Response size exceeds limit of {self.answer_bytes} bytes (this answer: {size} bytes; "
                "limits.answer_bytes). Export the result (Export.table / Export.image) instead.",
                status=400,
            )

    def check_pixels(self, width: int, height: int, band_bytes: list[int]) -> None:
        """Refuse a computePixels request over the side, band or byte limits (REST computePixels)."""
        if not self.enabled:
            return
        if width > self.pixels_per_side or height > self.pixels_per_side:
            raise EngineError(
                f"Pixel grid dimensions ({width}x{height}) must be less than or equal to {self.pixels_per_side}.",
                status=400,
            )
        if len(band_bytes) > self.bands:
            raise EngineError(
                f"Number of bands ({len(band_bytes)}) must be less than or equal to {self.bands}.", status=400
            )
        total = width * height * sum(band_bytes)
        if total > self.compute_pixels_bytes:
            raise EngineError(
                f"Total request size ({total} bytes) must be less than or equal to {self.compute_pixels_bytes} bytes.",
                status=400,
            )

    def page_length(self, size: int, digest: str, offset: int) -> int:
        """How many features this ``computeFeatures`` page holds: ``size``, or with ``short_pages`` a
        share of it drawn from (seed, request, offset), so the same request pages the same way."""
        if not (self.enabled and self.short_pages) or size <= 1:
            return size
        draw = random.Random(f"{self.seed}|{digest}|{offset}").random()
        return max(1, math.ceil(draw * size))

    def fits_page(self, list_bytes: int) -> bool:
        """Whether features encoded together as one JSON list of ``list_bytes`` bytes fit ``page_bytes`` as
        :meth:`fit_page` counts them (the list's brackets and commas are what it adds per feature)."""
        return not self.enabled or list_bytes + 1 <= self.page_bytes

    def fit_page(self, page: list[str]) -> list[str]:
        """The longest head of ``page`` (features encoded as compact JSON) that fits ``page_bytes`` in a
        FeatureCollection (at least one feature, which must fit itself): Earth Engine may answer fewer
        features than asked."""
        if not self.enabled:
            return page
        total, kept = 2, 0
        for feature in page:
            total += len(feature) + 1
            if total > self.page_bytes:
                break
            kept += 1
        if kept == 0 and page:
            raise EngineError(
                f"table:computeFeatures: Response size exceeds limit of {self.page_bytes} bytes (one feature "
                f"is {total} bytes; limits.page_bytes). Export the collection (Export.table) instead.",
                status=400,
            )
        return page[:kept]

    # -- memory --------------------------------------------------------------------------------

    def check_elements(self, count: int, what: str) -> None:
        """Refuse a value of ``count`` elements over ``elements_per_value``, before it is made."""
        if self.enabled and count > self.elements_per_value:
            raise EngineError(
                f"User memory limit exceeded. (local engine: {what} would hold {count:,} elements, over the "
                f"bound of {self.elements_per_value:,} per value, limits.elements_per_value)",
                status=400,
            )

    def check_value(self, value: Any, what: str) -> None:
        """Refuse a list, string or collection (a value with ``features``) that an algorithm made over
        ``elements_per_value``: what no algorithm checks beforehand (a list grown by repeated ``cat``)."""
        if not self.enabled:
            return
        if isinstance(value, list | str):
            self.check_elements(len(value), what)
        elif isinstance(getattr(value, "features", None), list):
            self.check_elements(len(value.features), what)

    # -- batch ---------------------------------------------------------------------------------

    def check_request_id(self, request_id: Any) -> None:
        """Refuse a ``requestId`` outside Earth Engine's format (REST ``projects.image.export``)."""
        if self.enabled and request_id and not REQUEST_ID.match(str(request_id)):
            raise EngineError(
                f"Invalid requestId {str(request_id)!r}: a request id has at most 60 characters, "
                "each a letter, a digit or '-'.",
                status=400,
            )

    def check_queue(self, unfinished: int) -> None:
        """Refuse a new task when ``max_queued_tasks`` are unfinished (Earth Engine answers 429)."""
        if self.enabled and unfinished >= self.max_queued_tasks:
            raise EngineError(f"Too many tasks already in the queue ({self.max_queued_tasks}).", status=429)


def request_digest(payload: Any) -> str:
    """A short stable hash of a request's expression (what seeds its short pages)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RequestBudget:
    """One interactive request's budget: its deadline and the work it did, checked as it goes."""

    limits: Limits
    started: float = field(default_factory=time.monotonic)
    pixels: int = 0
    scanned: int = 0  # features tested by filters on computed collections

    def check_time(self) -> None:
        """Past ``request_time_s``: Earth Engine's "Computation timed out.", with the budget named."""
        elapsed = time.monotonic() - self.started
        if self.limits.enabled and elapsed > self.limits.request_time_s:
            raise EngineError(
                f"Computation timed out. (local engine: this interactive request ran {elapsed:.1f} s, over its "
                f"budget of {self.limits.request_time_s:g} s, limits.request_time_s; export the result instead)",
                status=400,
            )

    def add_scanned(self, count: int) -> None:
        """Count features a filter tested on a computed collection; past ``features_scanned_per_request``,
        "Computation timed out." with the count and the bound."""
        self.scanned += int(count)
        if self.limits.enabled and self.scanned > self.limits.features_scanned_per_request:
            raise EngineError(
                f"Computation timed out. (local engine: this interactive request's filters scanned {self.scanned:,} "
                f"features of computed collections, over its bound of {self.limits.features_scanned_per_request:,}, "
                "limits.features_scanned_per_request; Earth Engine filters an asset by its index but a computed "
                "collection feature by feature: filter the asset before mapping it, or export the result)",
                status=400,
            )

    def add_pixels(self, count: int) -> None:
        """Count band pixels computed; past ``pixels_per_request``, "Computation timed out." with the bound."""
        self.pixels += int(count)
        if self.limits.enabled and self.pixels > self.limits.pixels_per_request:
            raise EngineError(
                f"Computation timed out. (local engine: this interactive request computed {self.pixels:,} band "
                f"pixels, over its bound of {self.limits.pixels_per_request:,}, limits.pixels_per_request; "
                "Earth Engine does not finish such a request in 5 minutes: export it instead)",
                status=400,
            )

"""Per-project request quotas: a token bucket for requests per second and a cap on concurrent requests.

Earth Engine's guide "Earth Engine quotas" gives about 100 requests per second and 40 concurrent
requests per project; past them a request is answered HTTP 429 (RESOURCE_EXHAUSTED), which the ``ee``
client retries with exponential backoff. The bucket holds one second of requests and refills
continuously. Both limits come from the engine's :class:`~gee_mining.local.core.limits.Limits`
(``requests_per_s``, ``concurrent_requests``); with the limits off, every request is admitted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.limits import Limits

RATE_MESSAGE = (
    "Too many requests: quota exceeded for requests per second ({rate:g}/s; limits.requests_per_s). Retry later."
)
CONCURRENCY_MESSAGE = "Too many concurrent aggregations."


@dataclass
class Quotas:
    """The admission of one engine's requests (thread-safe)."""

    limits: Limits
    clock: object = time.monotonic
    _tokens: float = field(default=0.0, init=False)
    _stamp: float = field(default=0.0, init=False)
    _running: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    refused: dict[str, int] = field(default_factory=lambda: {"rate": 0, "concurrency": 0}, init=False)

    def __post_init__(self) -> None:
        self._tokens = max(1.0, float(self.limits.requests_per_s))
        self._stamp = self.clock()

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the concurrent slots for the request, after taking a token; 429 when neither is left."""
        if not self.limits.enabled:
            yield
            return
        with self._lock:
            now = self.clock()
            rate = float(self.limits.requests_per_s)
            self._tokens = min(max(1.0, rate), self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            if self._tokens < 1.0:
                self.refused["rate"] += 1
                raise EngineError(RATE_MESSAGE.format(rate=rate), status=429)
            if self._running >= self.limits.concurrent_requests:
                self.refused["concurrency"] += 1
                raise EngineError(
                    f"{CONCURRENCY_MESSAGE} (local engine: {self._running} requests running, "
                    f"limits.concurrent_requests = {self.limits.concurrent_requests})",
                    status=429,
                )
            self._tokens -= 1.0
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

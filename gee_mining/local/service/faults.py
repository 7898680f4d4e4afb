"""Fault injection for tests of what runs against the engine: transient errors, failed tasks, slow tasks.

Off by default. ``LocalEngine(settings={"faults": {...}})`` (or ``connect(..., engine_settings=...)``)
turns it on:

- ``transient_rate``: share of export submissions (``image:export``, ``table:export``) and
  operation polls answered with HTTP 503 "Service unavailable (injected fault)" before any work;
- ``task_failure_rate``: share of started tasks that end FAILED with "Internal error (injected fault)";
- ``slow_task_rate`` / ``slow_task_s``: share of tasks that wait ``slow_task_s`` seconds first;
- ``memory_limit_pixels``: an image export whose grid holds more pixels than this fails with
  "User memory limit exceeded." every time (Earth Engine's per-task memory limit, which a smaller
  region fixes and a retry never does);
- ``seed``: the random stream (same seed, same faults in the same order).

These are the failures Earth Engine's batch system shows under load (429/503 answers, tasks that die
with an internal error, queues that stall); a launcher must survive all of them without losing or
duplicating a cell.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from gee_mining.local.core.errors import EngineError


@dataclass
class Faults:
    transient_rate: float = 0.0
    task_failure_rate: float = 0.0
    slow_task_rate: float = 0.0
    slow_task_s: float = 0.0
    memory_limit_pixels: int | None = None
    seed: int = 0
    injected: dict[str, int] = field(
        default_factory=lambda: {"transient": 0, "task_failure": 0, "slow": 0, "memory": 0}
    )
    _rng: random.Random = field(default=None, repr=False)  # type: ignore[assignment]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        for name in ("transient_rate", "task_failure_rate", "slow_task_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise EngineError(f"faults.{name} = {value}: give a fraction between 0 and 1.")
        self._rng = random.Random(self.seed)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Faults | None:
        spec = settings.get("faults")
        if not spec:
            return None
        known = {"transient_rate", "task_failure_rate", "slow_task_rate", "slow_task_s", "memory_limit_pixels", "seed"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise EngineError(f"unknown fault setting(s) {', '.join(unknown)}: use {', '.join(sorted(known))}.")
        return cls(**spec)

    def _draw(self, rate: float, kind: str) -> bool:
        with self._lock:
            hit = rate > 0 and self._rng.random() < rate
            if hit:
                self.injected[kind] += 1
            return hit

    def request(self) -> None:
        """Before an export submission or an operation poll: maybe a 503."""
        if self._draw(self.transient_rate, "transient"):
            raise EngineError("Service unavailable (injected fault).", status=503)

    def task(self, cancelled: threading.Event) -> None:
        """At the start of a task: maybe a wait, maybe an internal error."""
        if self._draw(self.slow_task_rate, "slow"):
            cancelled.wait(self.slow_task_s)
        if self._draw(self.task_failure_rate, "task_failure"):
            raise EngineError("Internal error (injected fault).", status=500)

    def memory(self, pixels: int) -> None:
        """Before an image export writes: over ``memory_limit_pixels``, the deterministic memory error."""
        if self.memory_limit_pixels is not None and pixels > self.memory_limit_pixels:
            with self._lock:
                self.injected["memory"] += 1
            raise EngineError("User memory limit exceeded.", status=400)

"""Long-running operations (batch tasks) as Earth Engine's operations API shows them."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gee_mining.local.core.errors import EngineError, NotFound
from gee_mining.local.core.limits import Limits

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Operation:
    name: str
    metadata: dict[str, Any]
    error: str | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    pixels_computed: int = 0  # the task's work: band pixels its export computed (the engine's own measure, not EE's)

    @property
    def state(self) -> str:
        return self.metadata["state"]

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "metadata": dict(self.metadata)}
        if self.state in TERMINAL:
            out["done"] = True
        if self.error is not None:
            out["error"] = {"code": 3, "message": self.error}
        return out


class Operations:
    """Every operation of one engine; the operations endpoints read it.

    Work runs on a thread pool; ``submit`` returns at once with a PENDING
    operation. With the limits on, at most ``limits.max_concurrent_tasks`` run
    at once (the others stay PENDING, as on Earth Engine), at most
    ``limits.max_queued_tasks`` may be unfinished, and a ``request_id`` already
    seen is answered as ``limits.duplicate_request_id`` says: the first
    operation ("first") or 409 ALREADY_EXISTS ("error"); Earth Engine documents
    only that one of the requests starts an operation.
    """

    def __init__(self, project: str, workers: int = 2, limits: Limits | None = None):
        self.project = project
        self.limits = limits or Limits(enabled=False)
        self._ops: dict[str, Operation] = {}
        self._order: list[Operation] = []  # oldest first: a page is a slice, not a copy of every operation
        self._active: set[str] = set()  # names of the operations not yet finished: the queue's length, uncounted
        self._by_request: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.limits.enabled:  # Earth Engine runs this many whatever the machine
            workers = self.limits.max_concurrent_tasks
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="gee-mining-task")
        self.faults: Any = None  # faults.Faults when the engine injects faults (tests)

    def submit(
        self,
        task_type: str,
        description: str,
        work: Callable[[Operation], list[str] | None],
        request_id: str | None = None,
    ) -> Operation:
        with self._lock:
            if request_id and request_id in self._by_request:
                return self._repeated(request_id)
            self.limits.check_queue(len(self._active))
            op_id = uuid.uuid4().hex.upper()[:24]
            name = f"projects/{self.project}/operations/{op_id}"
            now = _now()
            op = Operation(
                name,
                {
                    "@type": "type.googleapis.com/google.earthengine.v1.OperationMetadata",
                    "state": "PENDING",
                    "description": description,
                    "type": task_type,
                    "priority": 100,
                    "createTime": now,
                    "updateTime": now,
                },
            )
            self._ops[op_id] = op
            self._order.append(op)
            self._active.add(name)
            if request_id:
                self._by_request[request_id] = op_id
        self._pool.submit(self._run, op, work)
        return op

    def _repeated(self, request_id: str) -> Operation:
        """A repeated request id: the operation it started, or Earth Engine's other answer, an error."""
        first = self._ops[self._by_request[request_id]]
        if self.limits.enabled and self.limits.duplicate_request_id == "error":
            raise EngineError(
                f"Request id '{request_id}' was already used: an operation was started with it "
                "(look it up with listOperations; limits.duplicate_request_id).",
                status=409,
            )
        return first

    def _run(self, op: Operation, work: Callable[[Operation], list[str] | None]) -> None:
        with self._lock:
            if op.cancel_event.is_set():
                return
            op.metadata.update(state="RUNNING", startTime=_now(), updateTime=_now(), progress=0.0)
        try:
            if self.faults is not None:
                self.faults.task(op.cancel_event)
            uris = work(op)
        except EngineError as e:
            self._finish(op, "CANCELLED" if op.cancel_event.is_set() else "FAILED", error=e.message)
            return
        except Exception as e:  # a bug: the task fails with it, the engine keeps serving
            self._finish(op, "FAILED", error=f"Internal error: {type(e).__name__}: {e}")
            return
        if op.cancel_event.is_set():
            self._finish(op, "CANCELLED")
        else:
            self._finish(op, "SUCCEEDED", uris=uris)

    def _finish(self, op: Operation, state: str, error: str | None = None, uris: list[str] | None = None):
        with self._lock:
            op.metadata.update(state=state, updateTime=_now(), endTime=_now())
            self._active.discard(op.name)
            if state == "SUCCEEDED":
                op.metadata["progress"] = 1.0
            if uris:
                op.metadata["destinationUris"] = list(uris)
            op.error = error if state == "FAILED" else ("Cancelled." if state == "CANCELLED" else None)

    def list(self) -> list[dict]:
        with self._lock:
            return [op.to_json() for op in reversed(self._order)]

    def page(self, size: int, token: str | None = None) -> tuple[list[dict], str | None]:
        """One page of operations, newest first, as ``operations.list`` answers: at most ``size`` of them and
        the token of the next page (None on the last). The token is the position, counted from the oldest,
        where the next page starts, so operations started between two pages neither shift nor repeat it."""
        with self._lock:
            ops = self._order
            end = len(ops)
            if token:
                if not token.isdigit() or int(token) > len(ops):
                    raise EngineError(f"Invalid page token '{token}' for operations.list.")
                end = int(token)
            start = max(0, end - size)
            page = [op.to_json() for op in reversed(ops[start:end])]
        return page, (str(start) if start > 0 else None)

    def get(self, op_id: str) -> dict:
        with self._lock:
            op = self._ops.get(op_id)
            if op is None:
                raise NotFound(f"Operation {op_id} not found.")
            return op.to_json()

    def pixels_computed(self, op_id: str) -> int:
        """The band pixels a finished export computed: its work, for benchmarks and tests (not in EE's API)."""
        with self._lock:
            op = self._ops.get(op_id)
            if op is None:
                raise NotFound(f"Operation {op_id} not found.")
            return op.pixels_computed

    def cancel(self, op_id: str) -> None:
        with self._lock:
            op = self._ops.get(op_id)
            if op is None:
                raise NotFound(f"Operation {op_id} not found.")
            if op.state in TERMINAL:
                return
            op.cancel_event.set()
            if op.state == "PENDING":
                op.metadata.update(state="CANCELLED", updateTime=_now(), endTime=_now())
                op.error = "Cancelled."
                self._active.discard(op.name)
            else:
                op.metadata.update(state="CANCELLING", updateTime=_now())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

"""Python's cyclic garbage collector paused during bulk work, then run once on the young objects.

Evaluating a graph, and decoding and tabulating thousands of features, make millions of small
objects that are freed by reference counting or live on as data; none of them need the cyclic
collector, whose passes (each full pass walks every object alive) found nothing to free but cost
the grid step about a tenth of its time client-side and a third engine-side (bench/bench_grid.py).
Both the local engine (per request) and the steps that tabulate many features use it.
"""

from __future__ import annotations

import contextlib
import gc
import threading

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextlib.contextmanager
def deferred_gc():
    """The collector paused inside the block, resumed (if it was on) with one pass over the young
    objects when the outermost block ends. Counted, so that blocks nest and concurrent ones (the HTTP
    server's requests, a step calling the in-process engine) pause it once. Reference cycles made inside
    wait until then. Usable as a decorator too."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            resume = _holders == 0 and _was_enabled
            if resume:
                gc.enable()
        if resume:
            gc.collect(0)

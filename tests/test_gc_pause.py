"""``gc_pause.deferred_gc``: the collector paused in nested and concurrent blocks, restored as it was."""

from __future__ import annotations

import gc
import threading

from gee_mining.contracts.gc_pause import deferred_gc


def test_nested_blocks_pause_once_and_restore():
    assert gc.isenabled()
    with deferred_gc():
        assert not gc.isenabled()
        with deferred_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still holds it
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off():
    gc.disable()
    try:
        with deferred_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_decorator_and_errors_restore_it():
    @deferred_gc()
    def work():
        assert not gc.isenabled()
        raise ValueError("boom")

    try:
        work()
    except ValueError:
        pass
    assert gc.isenabled()


def test_concurrent_blocks_resume_when_the_last_ends():
    inside, release = threading.Event(), threading.Event()

    def hold():
        with deferred_gc():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(10)
    with deferred_gc():
        pass
    assert not gc.isenabled()  # the other thread's block is still open
    release.set()
    t.join(10)
    assert gc.isenabled()


def test_cycles_made_inside_are_freed_when_it_ends():
    import weakref

    class Node:
        pass

    with deferred_gc():
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        assert ref() is not None  # a cycle waits while the collector is paused
    assert ref() is None

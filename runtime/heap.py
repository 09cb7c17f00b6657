"""Keeping loaded models out of the garbage collector's way.

Model frameworks (TensorFlow, Keras, the PMML bridge) leave millions of long-lived Python
objects behind. CPython's full (generation 2) collection walks every one of them: measured
on the demo repository, a 300 ms pause every few seconds under load that collected
nothing, and it was the runtime's p99 (BENCHMARKS.md, "Gateway overhead").

``settle()`` runs after a repository scan that loaded or retired a model: one full
collection frees whatever the change left unreachable (a retired model's cycles), then
``gc.freeze()`` moves every surviving object to the permanent generation, which later
collections skip. Requests' own garbage is collected as usual.

A version retired while it still served requests is unloaded by its last request; the
next scan (the poller's, within one poll interval) settles again and frees its objects.

The garbage collector is process-wide, so the process's owner decides: ``driftgate runtime``
calls ``enable()``; a test run or a library user that builds repositories is left alone.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

log = logging.getLogger("driftgate.runtime.heap")
_enabled = threading.Event()  # process-wide, like the collector it configures


def enable() -> None:
    """Let ``settle`` freeze this process's heap (``driftgate runtime`` does, at start)."""
    _enabled.set()


def settle() -> float:
    """Collect once, then freeze what survived; returns the seconds it took (0 when off)."""
    if not _enabled.is_set():
        return 0.0
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    elapsed = time.perf_counter() - started
    log.info("froze %d long-lived objects in %.2fs", gc.get_freeze_count(), elapsed)
    return elapsed

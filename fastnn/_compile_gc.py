"""Python's cyclic garbage collector, held back while Numba compiles one of fastnn's kernels.

Numba's compiler allocates hundreds of thousands of short-lived Python objects per kernel (IR nodes, type
records, deep copies of both), so at the collector's default thresholds a compilation triggers many collections,
and every few of them a full one that walks every object of the process (after a first compilation, ~170,000).
Measured on a cold SimpleConvNet training step in one process (``FASTNN_COMPILE_WORKERS=0``, empty cache): 5.9-6.2 s
of CPU at the default thresholds, 5.5-5.8 s with them raised during compilation, for ~20 MB more peak memory; with
the collector off altogether, about the same CPU for twice that memory. (A later measurement, interleaved, 4 runs
each: 5.94-6.32 s against 5.57-6.04 s, the same peak memory.)

While the outermost compilation of a fastnn kernel runs (a Numba ``"numba:compile"`` event whose function is
fastnn's), the thresholds are raised to at least :data:`THRESHOLDS`; the previous ones are restored when it ends,
also when it fails. Nothing changes when the collector is disabled, and compilations of other code (the user's own
``numba.njit`` functions) are left alone.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["THRESHOLDS", "held", "install"]

#: Least collector thresholds (generations 0, 1, 2) while a fastnn kernel compiles; the defaults are (700, 10, 10).
THRESHOLDS = (10_000, 50, 100)

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None
_listener: Any = None


def _hold() -> None:
    global _depth, _saved
    with _lock:
        _depth += 1
        if _depth == 1 and gc.isenabled():
            _saved = gc.get_threshold()
            gc.set_threshold(*(max(now, least) for now, least in zip(_saved, THRESHOLDS, strict=True)))


def _release() -> None:
    global _depth, _saved
    with _lock:
        _depth -= 1
        if _depth == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None


@contextlib.contextmanager
def held() -> Iterator[None]:
    """The thresholds raised inside the block, as during a compilation (for Numba's own start-up, which is the same
    kind of allocation: ~0.35 -> 0.29 s of CPU to load its CPU target, measured). Nests with compilations, in any
    thread: the thresholds come back when the last of them ends."""
    _hold()
    try:
        yield
    finally:
        _release()


def install() -> None:
    """Register the listener with Numba's event API, once per process (later calls do nothing)."""
    global _listener
    with _lock:
        if _listener is not None:
            return
        from numba.core import event

        class _HoldCollections(event.Listener):
            # Numba compiles under its global compiler lock, so one thread's events nest: a stack of whether each
            # open compilation holds the collector suffices.
            def __init__(self) -> None:
                self.holding: list[bool] = []

            def on_start(self, ev: Any) -> None:
                hold = _is_fastnn(ev)
                self.holding.append(hold)
                if hold:
                    _hold()

            def on_end(self, ev: Any) -> None:
                if self.holding.pop():
                    _release()

        _listener = _HoldCollections()
        event.register("numba:compile", _listener)


def _is_fastnn(ev: Any) -> bool:
    dispatcher = (ev.data or {}).get("dispatcher")
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", None) or ""
    return module == "fastnn" or module.startswith("fastnn.")

"""What the command line shows while Numba compiles kernels, and how long that took.

A fresh machine compiles every kernel a workload uses on its first run (seconds each; they are then cached on disk).
:func:`watch` counts those compilations through Numba's own event API (``"numba:compile"``, broadcast only when a
kernel is really compiled, not when it is loaded from the cache) and can show them as they happen, so a command can
tell the user what the wait is and keep it out of the timings it reports.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Compiled", "watch"]

NOTICE = "compiling kernels for this machine (first run only; later runs load them from the cache)"


@dataclass
class Compiled:
    """Kernels compiled inside a :func:`watch` block: how many, and the wall time spent compiling them."""

    count: int = 0
    seconds: float = 0.0
    _depth: int = field(default=0, repr=False)
    _start: float = field(default=0.0, repr=False)


@contextlib.contextmanager
def watch(show: bool = False, *, stream: Any = None) -> Iterator[Compiled]:
    """Count the kernels Numba compiles inside the block (a compilation that compiles helpers counts once).

    ``show``: on the first compilation print :data:`NOTICE`, then a tqdm counter of the kernels compiled so far
    (on ``stream``, default stderr; drawn only when it is a terminal and tqdm is installed).
    """
    from numba.core import event

    stream = sys.stderr if stream is None else stream
    done = Compiled()
    bar: list[Any] = []

    def on_start() -> None:
        if done._depth == 0:
            done._start = time.perf_counter()
            if show and not bar:
                bar.append(_bar(stream))
        done._depth += 1

    def on_end() -> None:
        done._depth -= 1
        if done._depth == 0:
            done.count += 1
            done.seconds += time.perf_counter() - done._start
            if bar and bar[0] is not None:
                bar[0].update(1)

    class Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            on_start()

        def on_end(self, ev: Any) -> None:
            on_end()

    try:
        with event.install_listener("numba:compile", Listener()):
            yield done
    finally:
        if bar and bar[0] is not None:
            bar[0].close()


def _bar(stream: Any) -> Any:
    """The notice, and a tqdm counter on a terminal (None elsewhere: the notice alone is the message)."""
    print(NOTICE, file=stream, flush=True)
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(desc="compiling", unit=" kernels", file=stream, leave=False, dynamic_ncols=True)

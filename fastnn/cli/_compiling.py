"""What the command line shows while Numba compiles kernels, and how long that took.

A fresh machine compiles every kernel a workload uses on its first run (seconds each; they are then cached on disk).
:func:`watch` counts those compilations through Numba's own event API (``"numba:compile"``, broadcast only when a
kernel is really compiled, not when it is loaded from the cache) and can show them as they happen, so a command can
tell the user what the wait is and keep it out of the timings it reports.

Numba compiles one function at a time per process (its compiler lock, and the GIL), so a machine's other cores sit
idle during a first run. :func:`in_worker` runs part of a workload in a new process that compiles into the same
on-disk cache (:mod:`fastnn._numba_cache` makes concurrent writers safe); this process then loads what the worker
compiled instead of compiling it again. ``python -m fastnn warmup`` fills the cache this way ahead of time.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .._numba_cache import cache_dir

__all__ = ["Compiled", "Worker", "cache_dir", "in_worker", "watch"]

NOTICE = "compiling kernels for this machine (first run only; later runs load them from the cache)"


@dataclass
class Compiled:
    """Kernels compiled inside a :func:`watch` block: how many, and the wall time spent compiling them."""

    count: int = 0
    seconds: float = 0.0
    _depth: int = field(default=0, repr=False)
    _start: float = field(default=0.0, repr=False)


@contextlib.contextmanager
def watch(show: bool = False, *, stream: Any = None, on_first: Callable[[], Any] | None = None
          ) -> Iterator[Compiled]:
    """Count the kernels Numba compiles inside the block (a compilation that compiles helpers counts once).

    ``show``: on the first compilation print :data:`NOTICE`, then a tqdm counter of the kernels compiled so far
    (on ``stream``, default stderr; drawn only when it is a terminal and tqdm is installed). ``on_first`` is
    called when the first compilation starts (e.g. to start an :func:`in_worker` only on a cold cache).
    """
    from numba.core import event

    stream = sys.stderr if stream is None else stream
    done = Compiled()
    bar: list[Any] = []
    called: list[bool] = []

    def on_start() -> None:
        if done._depth == 0:
            if on_first is not None and not called:
                called.append(True)
                on_first()
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
    from . import progress_bar

    print(NOTICE, file=stream, flush=True)
    return progress_bar(None, "compiling", " kernels", stream=stream)


class Worker:
    """A process running ``fn(*args)`` to compile kernels into the shared cache (see :func:`in_worker`)."""

    def __init__(self, process: multiprocessing.process.BaseProcess | None) -> None:
        self._process = process

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True if it finished cleanly (False: no worker, failed or timed out -- the kernels it
        was to compile are then compiled here when they are needed, as without it)."""
        if self._process is None:
            return False
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()  # it only fills a cache; entries it has not written are compiled here
            self._process.join()
            return False
        return self._process.exitcode == 0


def in_worker(fn: Callable[..., Any], *args: Any) -> Worker:
    """Start ``fn(*args)`` in a new process (``spawn``: a fresh interpreter, safe whatever this process's threads or
    OpenMP pool) whose only product is the kernels it compiles into the shared on-disk cache.

    ``fn`` and ``args`` must be picklable (a module-level function), and, as for any ``spawn`` start, the main
    module import-safe (``python -m fastnn`` is). Nothing is started when the cache is not
    shared (:func:`cache_dir` is None), on one core, or when ``FASTNN_COMPILE_WORKERS=0``: the returned worker's
    :meth:`Worker.join` is then False at once.
    """
    if os.environ.get("FASTNN_COMPILE_WORKERS", "1") == "0" or (os.cpu_count() or 1) < 2 or cache_dir() is None:
        return Worker(None)
    process = multiprocessing.get_context("spawn").Process(target=_quietly, args=(fn, args), daemon=True)
    try:
        process.start()
    except OSError:  # no processes left, /dev/shm missing ...: compile here instead
        return Worker(None)
    return Worker(process)


def _quietly(fn: Callable[..., Any], args: tuple) -> None:
    """Run ``fn(*args)`` with the worker's stdout and stderr discarded (the parent reports)."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        fn(*args)

"""What the command line shows while Numba compiles kernels, and how long that took.

A fresh machine compiles every kernel a workload uses on its first run (seconds each; they are then cached on disk).
:func:`watch` counts those compilations through Numba's own event API (``"numba:compile"``, broadcast only when a
kernel is really compiled, not when it is loaded from the cache) and can show them as they happen, so a command can
tell the user what the wait is and keep it out of the timings it reports.

Numba compiles one function at a time per process (its compiler lock, and the GIL), so a machine's other cores sit
idle during a first run. :func:`in_worker` runs part of a workload in a new process that compiles into the same
on-disk cache (:mod:`fastnn._numba_cache` makes concurrent writers safe); this process then loads what the worker
compiled instead of compiling it again. ``python -m fastnn warmup`` fills the cache this way ahead of time, and
:func:`first_gradient` does it for a net's first training step in user code (:meth:`fastnn.nets.Sequential.gradient`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._numba_cache import cache_dir

__all__ = ["Compiled", "Worker", "cache_dir", "compile_backward", "first_gradient", "in_worker", "watch"]

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
    from .cli import progress_bar

    print(NOTICE, file=stream, flush=True)
    return progress_bar(None, "compiling", " kernels", stream=stream)


#: Set in a worker's environment: a worker starts no worker of its own.
IN_WORKER = "FASTNN_IN_COMPILE_WORKER"

#: What a worker runs: the parent's ``sys.path`` first (so the same fastnn is imported, whatever the parent's working
#: directory or ``PYTHONPATH``), then the pickled ``(fn, args)``.
_CHILD = ("import pickle, sys; path, blob = pickle.load(sys.stdin.buffer); sys.path[:0] = path; "
          "fn, args = pickle.loads(blob); fn(*args)")


class Worker:
    """A process running ``fn(*args)`` to compile kernels into the shared cache (see :func:`in_worker`)."""

    def __init__(self, process: subprocess.Popen | None) -> None:
        self._process = process

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True if it finished cleanly (False: no worker, failed or timed out -- the kernels it
        was to compile are then compiled here when they are needed, as without it)."""
        if self._process is None:
            return False
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()  # it only fills a cache; entries it has not written are compiled here
            self._process.wait()
            return False
        return self._process.returncode == 0


def sharing() -> bool:
    """Whether :func:`in_worker` starts a process: not with ``FASTNN_COMPILE_WORKERS=0``, not inside a worker, not on
    one core, not without an on-disk cache shared by processes (:func:`cache_dir` None)."""
    return (os.environ.get("FASTNN_COMPILE_WORKERS", "1") != "0" and not os.environ.get(IN_WORKER)
            and (os.cpu_count() or 1) >= 2 and cache_dir() is not None)


def in_worker(fn: Callable[..., Any], *args: Any) -> Worker:
    """Start ``fn(*args)`` in a new Python process whose only product is the kernels it compiles into the shared
    on-disk cache; its stdout and stderr are discarded (this process reports).

    The process is ``python -c`` fed a pickle on its stdin, not a ``multiprocessing`` start: ``spawn`` would re-run
    the user's main module (a script without an ``if __name__ == "__main__"`` guard would run twice) and ``fork``
    is unsafe once OpenMP has started. ``fn`` and ``args`` must be picklable (a module-level function). Nothing is
    started when not :func:`sharing`, or when the process or the pickle cannot be made: the returned worker's
    :meth:`Worker.join` is then False at once.
    """
    if not sharing():
        return Worker(None)
    try:
        payload = pickle.dumps((list(sys.path), pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)),
                               pickle.HIGHEST_PROTOCOL)
        process = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, IN_WORKER: "1"})
    except (OSError, pickle.PicklingError, TypeError, AttributeError):  # no processes left, an unpicklable arg
        return Worker(None)
    try:
        with process.stdin:
            process.stdin.write(payload)
    except OSError:  # the worker died at start: compile here
        process.wait()
        return Worker(None)
    return Worker(process)


def compile_backward(net: Any, x: Any, t: Any) -> None:
    """The gradient of ``net`` with its forward ops on the NumPy twins: only the backward pass's kernels are
    compiled (in a worker process, see :func:`first_gradient` and ``fastnn demo``'s warm-up).

    The twins take and return what the kernels do, so the layers' caches feed the backward kernels as usual.
    ``matmul`` is the affine layers' forward product; the backward's products have its signature, which the
    process that runs the forward compiles anyway.
    """
    from . import backend

    backend.rewire_for_good("reference", lambda name: "forward" in name or name == "matmul")
    net.gradient(x, t)


#: Seconds :func:`first_gradient` waits for its worker at most (then stops it and compiles the rest here).
JOIN_TIMEOUT = 600.0

#: Optimizers built in this process that have not updated yet (see :func:`first_gradient`).
fresh_optimizers: weakref.WeakSet = weakref.WeakSet()


def first_gradient(net: Any, forward: Callable[[], Any], x: Any, t: Any) -> None:
    """Run ``forward()`` (``net``'s training forward on ``x``, ``t``), sharing a cold cache's compilation with a worker.

    If the forward compiles a kernel (so the on-disk cache is cold) and :func:`sharing` allows, one worker starts
    at that first compilation and compiles the backward pass (:func:`compile_backward` on a copy of ``net``) while
    this process compiles the forward and then the first step of every optimizer built and not yet used here, on
    copies of ``net.params`` with zero gradients (the user's optimizer and parameters are untouched). Returns after
    the worker has finished, so the backward loads its kernels from the cache; if the worker failed they are
    compiled here as without it. A warm cache starts nothing and costs one event listener.
    """
    if not sharing():
        forward()
        return
    worker: list[Worker] = []

    def share() -> None:
        try:
            snapshot = pickle.dumps((net, x, t), pickle.HIGHEST_PROTOCOL)
        except Exception:  # a net holding something unpicklable: no worker
            return
        worker.append(in_worker(_load_and_compile_backward, snapshot))

    try:
        with watch(on_first=share):
            forward()
    except BaseException:
        for w in worker:
            w.join(0)  # stopped: this step failed, and the next one compiles what the worker has not
        raise
    if not worker or worker[0]._process is None:
        return
    for optimizer in list(fresh_optimizers):
        if optimizer.iter == 0:
            params = copy.deepcopy(net.params)
            with contextlib.suppress(Exception):  # only compiles; the real update reports any error itself
                copy.deepcopy(optimizer).update(params, {k: np.zeros_like(v) for k, v in params.items()})
    worker[0].join(JOIN_TIMEOUT)


def _load_and_compile_backward(snapshot: bytes) -> None:
    compile_backward(*pickle.loads(snapshot))

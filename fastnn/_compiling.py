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
import re
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _compile_gc
from ._numba_cache import cache_dir

__all__ = ["Compiled", "Standby", "Worker", "cache_dir", "can_fork", "compile_backward", "first_gradient", "in_worker",
           "settle", "watch"]

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

    def __init__(self, process: subprocess.Popen | _Forked | None) -> None:
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

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the worker has compiled what this process waits for; True if it did. A forked copy says so
        and then goes on compiling the parallel twins it deferred (see :func:`first_gradient`) while this process
        goes on; a new process has done its part when it ends (:meth:`join`)."""
        if not isinstance(self._process, _Forked):
            return self.join(timeout)
        try:
            return self._process.wait_ready(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            return False


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
    is unsafe once OpenMP has started (:class:`Standby` forks while it is safe). ``fn`` and ``args`` must be
    picklable (a module-level function). Nothing is started when not :func:`sharing`, or when the process or the
    pickle cannot be made: the returned worker's :meth:`Worker.join` is then False at once.
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


_standing: list[int] = []  # the pid of the forked standby waiting or working, if any


def can_fork() -> bool:
    """Whether a copy of this process may be forked safely: Linux, one Python thread (this one, the main thread), no
    Numba thread pool started yet and no OpenMP runtime loaded by another library (GNU OpenMP does not survive a
    fork once its pool has started: a copy forked from a process that had run PyTorch hung at its first parallel
    launch), and no other standby waiting."""
    from ._jit import threading_layer

    return (sys.platform.startswith("linux") and threading.active_count() == 1
            and threading.current_thread() is threading.main_thread() and threading_layer() is None
            and not _standing and not openmp_runtimes())


_OPENMP = re.compile(r"/(lib(?:g|i|)omp[^/\s]*\.so[^/\s]*)$", re.M)


def openmp_runtimes(maps: str | None = None) -> list[str]:
    """The OpenMP runtimes (``libgomp``, ``libiomp5``, ``libomp``) mapped into this process (``maps``: the text of
    ``/proc/self/maps``, read when None; empty where there is none to read)."""
    if maps is None:
        try:
            with open("/proc/self/maps") as f:
                maps = f.read()
        except OSError:
            return []
    return sorted(set(_OPENMP.findall(maps)))


class _Forked:
    """A forked worker, waited for as a ``subprocess.Popen`` is (what :class:`Worker` uses of one), which also says
    when it has done the part this process waits for (a byte on the pipe ``ready``)."""

    def __init__(self, pid: int, ready: int = -1) -> None:
        self.pid, self.returncode, self._ready = pid, None, ready
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        """The exit code if the copy has ended (it is then reaped), else None; never blocks."""
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
                    with contextlib.suppress(ValueError):
                        _standing.remove(self.pid)
                    self._close_ready()
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        # polled: a pipe's end of file would also wait for any process forked from the copy meanwhile
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired("fastnn compile worker", timeout)
            time.sleep(0.002)
        return self.returncode

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the copy says its first part is done (True) or ends without saying so (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._ready >= 0:
            left = 0.05 if deadline is None else min(0.05, max(0.0, deadline - time.monotonic()))
            if select.select([self._ready], [], [], left)[0]:
                said = os.read(self._ready, 1)
                self._close_ready()
                if said == b"1":
                    return True
                break  # the end of file: it ended without saying so (only it holds the pipe's other end)
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired("fastnn compile worker", timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return False

    def defers(self, kernel: Any, args: tuple) -> bool:
        """:data:`fastnn._jit._defer` while this copy compiles the parallel twins: True for a same-bits kernel until
        the copy has ended."""
        if not kernel.same_bits:
            return False
        if self.poll() is None:
            return True
        from . import _jit

        if _jit._defer == self.defers:
            _jit._defer = None
        return False

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def _close_ready(self) -> None:
        if self._ready >= 0:
            os.close(self._ready)
            self._ready = -1


def _load_numba_target() -> None:
    """Load Numba's CPU target (its registries of NumPy and math implementations, and SciPy's BLAS bindings when
    SciPy is installed), which this process's first compilation or cache load would load anyway."""
    with contextlib.suppress(Exception), _compile_gc.held():  # Numba internals: else the copy loads it itself
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()


class Standby:
    """A worker made ready before a workload that may compile: ``fn(*args)`` is run when :meth:`start` is called
    (from any thread, e.g. at the first compilation, see :func:`watch`), or never (:meth:`cancel`).

    When :func:`can_fork`, this process is forked here, before any compilation: the copy sleeps until the word,
    then runs ``fn`` on its own copy of ``args`` (no pickling, and no new interpreter to start and import fastnn
    in: the worker's CPU time on a cold SimpleConvNet step went from 5.4-5.7 s to 4.7-5.0 s) and leaves with
    ``os._exit`` (this process's exit handlers and buffered output do not run twice). Otherwise :meth:`start`
    starts an :func:`in_worker` process then. Either way the worker only writes the shared on-disk cache; its
    output is discarded.

    The copy runs ``fn`` with :data:`fastnn._jit._defer` set: kernels whose twins give the same bits run (and so
    compile) their serial twin. It then tells this process it is done (:meth:`Worker.ready`) and goes on in the
    background: it compiles the parallel twins of those calls, then runs ``then()`` (if given) with nothing deferred.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, then: Callable[[], Any] | None = None) -> None:
        self._fn, self._args, self._then, self._forked, self._go = fn, args, then, None, -1
        if sharing() and can_fork():
            self._fork()

    def _fork(self) -> None:
        _load_numba_target()  # once, here: the copy inherits it instead of paying it again (~0.4 s here)
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no process left: start() makes a new one, or the work stays here
            for fd in (go_r, go_w, ready_r, ready_w):
                os.close(fd)
            return
        if pid == 0:  # the copy: wait for the word, compile, leave without running this process's exit handlers
            code = 1
            try:
                os.close(go_w)
                os.close(ready_r)
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.environ[IN_WORKER] = "1"
                if os.read(go_r, 1) == b"1":
                    self._run_copy(ready_w)
                code = 0
            finally:
                os._exit(code)
        os.close(go_r)
        os.close(ready_w)
        _standing.append(pid)
        self._forked, self._go = _Forked(pid, ready_r), go_w

    def _run_copy(self, ready: int) -> None:
        from . import _jit

        signal.alarm(int(JOIN_TIMEOUT))  # a copy that hangs ends (the user's process waits that long at most)
        deferred: list[tuple[Any, tuple]] = []

        def defer(kernel: Any, args: tuple) -> bool:
            if kernel.same_bits:
                deferred.append((kernel, args))
            return kernel.same_bits

        _jit._defer = defer
        self._fn(*self._args)
        _jit._defer = None
        os.write(ready, b"1")
        os.close(ready)
        for kernel, args in deferred:
            _compile_parallel(kernel, args)
        if self._then is not None:
            self._then()

    def pending(self, kernel: Any, args: tuple) -> bool:
        """:data:`fastnn._jit._defer` while the copy waits: True (run the serial twin) for a same-bits kernel whose
        parallel twin is neither compiled here nor in the on-disk cache, so that a first compilation is never a
        parallel twin that the copy is about to compile (that compilation then starts the copy, see
        :func:`first_gradient`)."""
        from ._numba_cache import cached

        return kernel.same_bits and not cached(kernel.parallel, _signature(kernel, args))

    def start(self) -> Worker:
        """Run ``fn(*args)`` in the worker: the forked copy, else a new process (:func:`in_worker`)."""
        if self._forked is None:
            return in_worker(self._fn, *self._args)
        os.write(self._go, b"1")
        os.close(self._go)
        self._go = -1
        return Worker(self._forked)

    def cancel(self) -> None:
        """Send a forked copy that was not started away (it exits at once; it is waited for here)."""
        if self._go >= 0:
            os.write(self._go, b"0")  # said, not left to an end of file that a later fork could hold open
            os.close(self._go)
            self._go = -1
            self._forked.wait()


def _signature(kernel: Any, args: tuple) -> tuple:
    return tuple(kernel.parallel.typeof_pyval(a) for a in args)


def _compile_parallel(kernel: Any, args: tuple) -> None:
    """Compile ``kernel``'s parallel twin for ``args`` (into the on-disk cache) without running it."""
    kernel.parallel.compile(_signature(kernel, args))


def compile_backward(net: Any, x: Any, t: Any) -> None:
    """The gradient of ``net`` with its forward ops on the NumPy twins: only the backward pass's kernels are
    compiled (in a worker process, see :func:`first_gradient` and ``fastnn demo``'s warm-up).

    The twins take and return what the kernels do, so the layers' caches feed the backward kernels as usual.
    ``matmul`` is the affine layers' forward product; the backward's products have its signature, which the
    process that runs the forward compiles anyway.

    First, each fresh optimizer's per-tensor step body (one update of one parameter, on copies): the process that
    runs the forward compiles the multi-tensor step later and loads that body from the cache, which evens the two
    processes' shares (a cold SimpleConvNet step: the parent's compilation 3.0 s of CPU, the copy's 2.4 s before;
    with these two moves 2.7 s and 2.8 s).
    """
    from . import backend

    _compile_fresh_optimizers(net, first_only=True)
    # the ReLU forward runs for real here: cheap to compile, and reached long before the user's process would
    backend.rewire_for_good("reference", lambda name: ("forward" in name and name != "relu_forward")
                            or name == "matmul")
    net.gradient(x, t)


#: Seconds :func:`first_gradient` waits for its worker at most (then stops it and compiles the rest here).
JOIN_TIMEOUT = 600.0

#: Optimizers built in this process that have not updated yet (see :func:`first_gradient`).
fresh_optimizers: weakref.WeakSet = weakref.WeakSet()


def first_gradient(net: Any, forward: Callable[[], Any], x: Any, t: Any) -> bool:
    """Run ``forward()`` (``net``'s training forward on ``x``, ``t``), sharing a cold cache's compilation with a worker.

    If the forward compiles a kernel (so the on-disk cache is cold) and :func:`sharing` allows, a worker
    (:class:`Standby`) compiles the backward pass (:func:`compile_backward` on its copy of ``net``) from that first
    compilation on, while this process compiles the forward and then the first step of every optimizer built and
    not yet used here, on copies of ``net.params`` with zero gradients (the user's optimizer and parameters are
    untouched). Returns after the worker has done the backward, so the backward loads its kernels from the cache;
    if the worker failed they are compiled here as without it. Returns whether a worker compiled its part. A warm
    cache starts no worker and costs one event listener (and, where :func:`can_fork`, a fork that is sent away).

    With a forked worker, kernels whose twins give the same bits (``Kernel.same_bits``: the parallel GEMM driver,
    the book's Adam) run their serial twins, in both processes, until the worker has ended: it compiles their
    parallel twins after the backward, in the background, and then the optimizers' first steps again with them (a
    parallel twin costs about three times the serial one's compilation: 1.15 s of CPU against 0.3 s for the GEMM
    driver). The results are the same bits either way; the first steps are slower until the worker ends. If this
    process ends first, the worker still finishes filling the cache.
    """
    if not sharing():
        forward()
        return False
    from . import _jit

    standby = Standby(compile_backward, net, x, t, then=lambda: _compile_fresh_optimizers(net))
    worker: list[Worker] = []
    if standby._forked is not None:
        _jit._defer = standby.pending

    def begin() -> None:
        worker.append(standby.start())
        _jit._defer = worker[0]._process.defers if isinstance(worker[0]._process, _Forked) else None

    try:
        with watch(on_first=begin):
            forward()
    except BaseException:
        for w in worker:
            w.join(0)  # stopped: this step failed, and the next one compiles what the worker has not
        raise
    finally:
        if _jit._defer == standby.pending:
            _jit._defer = None
        standby.cancel()
    if not worker or worker[0]._process is None:
        return False
    _compile_fresh_optimizers(net)
    return worker[0].ready(JOIN_TIMEOUT)


def settle(timeout: float | None = JOIN_TIMEOUT) -> bool:
    """Wait for a first run's forked worker that is still compiling in the background (the parallel twins that
    :func:`first_gradient` deferred), so that what follows runs, and is timed, on the kernels later runs use; the
    demo and the benchmarks call this before they time anything. Returns whether there was one to wait for."""
    from . import _jit

    defer = _jit._defer
    forked = getattr(defer, "__self__", None)
    if not isinstance(forked, _Forked):
        return False
    try:
        forked.wait(timeout)
    except subprocess.TimeoutExpired:
        forked.kill()  # it only fills a cache; what it has not written is compiled here when needed
        forked.wait()
    if _jit._defer == defer:
        _jit._defer = None
    return True


def _compile_fresh_optimizers(net: Any, first_only: bool = False) -> None:
    """Compile the first step of every optimizer built and not yet used, on copies of ``net.params`` with zero
    gradients (the user's optimizers and parameters are untouched); ``first_only``: of its first parameter alone,
    which compiles the per-tensor step body."""
    for optimizer in list(fresh_optimizers):
        if optimizer.iter == 0:
            with contextlib.suppress(Exception):  # only compiles; the real update reports any error itself
                params = copy.deepcopy(dict([next(iter(net.params.items()))]) if first_only else net.params)
                copy.deepcopy(optimizer).update(params, {k: np.zeros_like(v) for k, v in params.items()})


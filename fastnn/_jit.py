"""How a fastnn kernel is compiled and launched.

Every loop body is compiled twice from one Python function: a serial twin (``parallel=False``, where ``prange``
is a plain ``range``) and a parallel one (``parallel=True``). :meth:`Kernel.run` picks one by the size of the
work, by the thread count the user asked for, and by what is safe in this process:

* Starting Numba's thread pool costs ~20 us, so small inputs run the serial twin
  (thresholds in :mod:`fastnn.config`).
* Numba's ``workqueue`` threading layer aborts the process when two Python threads enter parallel code at
  once. ``omp`` and ``tbb`` are thread-safe. Until the layer is known (it is chosen at the first parallel
  launch) and whenever it is ``workqueue``, parallel launches are serialised by a lock.
* GNU OpenMP is not fork-safe: a child forked after the parent used the ``omp`` layer would abort or hang in
  its first parallel region, so such a child runs serial twins only.
"""

from __future__ import annotations

import os
import threading
import types
from collections.abc import Callable
from typing import Any

import numba

from . import config

_THREAD_SAFE_LAYERS = frozenset({"omp", "tbb"})

_launch_lock = threading.RLock()
_layer: str | None = None  # Numba's threading layer, known after the first parallel launch
_parallel_allowed = True  # False in a child forked from a parent that used a fork-unsafe layer
_num_threads: int | None = None  # set by set_num_threads; None: Numba's default


def _njit(fn: Callable, **options: Any) -> Callable:
    """``numba.njit`` with caching when possible: no writable cache directory must not break import."""
    if config.CACHE:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            pass
    return numba.njit(cache=False, **options)(fn)


def _renamed(fn: Callable, suffix: str) -> Callable:
    """A copy of ``fn`` under another qualified name, so its on-disk cache entry is its own."""
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return clone


def helper(fn: Callable | None = None, *, fastmath: frozenset[str] | bool = config.FASTMATH) -> Callable:
    """Compile a scalar or small helper that kernels call (inlined by LLVM; never launched on its own)."""
    if fn is None:
        return lambda f: helper(f, fastmath=fastmath)
    return _njit(fn, fastmath=set(fastmath) if isinstance(fastmath, frozenset) else fastmath)


class Kernel:
    """A loop body compiled as a serial and a parallel twin; :meth:`run` launches the right one.

    Parameters
    ----------
    fn
        The loop body, written with ``numba.prange`` over a dimension each iteration owns.
    family
        Key into :data:`fastnn.config.PARALLEL_MIN_WORK`.
    fastmath
        Flag subset (default :data:`fastnn.config.FASTMATH`) or ``False``.
    """

    def __init__(self, fn: Callable, family: str, fastmath: frozenset[str] | bool = config.FASTMATH) -> None:
        if family not in config.PARALLEL_MIN_WORK:
            raise ValueError(f"unknown kernel family {family!r}")
        flags = set(fastmath) if isinstance(fastmath, frozenset) else fastmath
        self.py_func = fn
        self.family = family
        self.serial = _njit(_renamed(fn, "__serial"), parallel=False, fastmath=flags)
        self.parallel = _njit(fn, parallel=True, fastmath=flags)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def use_parallel(self, work: int) -> bool:
        """Whether a call touching ``work`` elements runs the parallel twin."""
        return (
            _parallel_allowed
            and _num_threads != 1
            and numba.config.NUMBA_NUM_THREADS > 1
            and work >= config.parallel_min_work(self.family)
        )

    def run(self, work: int, *args: Any) -> Any:
        """Run the kernel on ``args``; ``work`` is the number of elements it touches."""
        if not self.use_parallel(work):
            return self.serial(*args)
        return _launch_parallel(self.parallel, args)

    def __call__(self, *args: Any) -> Any:
        """Run the serial twin (for tests and for callers that are already parallel)."""
        return self.serial(*args)


def _launch_parallel(dispatcher: Callable, args: tuple) -> Any:
    global _layer
    if _num_threads is not None and numba.get_num_threads() != _num_threads:
        numba.set_num_threads(_num_threads)  # Numba's thread count is per calling thread
    if _layer in _THREAD_SAFE_LAYERS:
        return dispatcher(*args)
    with _launch_lock:
        result = dispatcher(*args)
        if _layer is None:
            _layer = numba.threading_layer()
        return result


def kernel(family: str, fastmath: frozenset[str] | bool = config.FASTMATH) -> Callable[[Callable], Kernel]:
    """Decorator form of :class:`Kernel`."""
    return lambda fn: Kernel(fn, family, fastmath)


def threading_layer() -> str | None:
    """Numba's threading layer in this process, or None before the first parallel launch."""
    return _layer


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in every parallel kernel from now on, from every Python thread (1: serial twins only)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"set_num_threads: n must be an int in [1, {numba.config.NUMBA_NUM_THREADS}], got {n!r}"
        )
    numba.set_num_threads(n)
    _num_threads = n


def get_num_threads() -> int:
    """Threads a parallel kernel uses."""
    return _num_threads if _num_threads is not None else numba.config.NUMBA_NUM_THREADS


def _after_fork_in_child() -> None:
    global _parallel_allowed, _launch_lock
    _launch_lock = threading.RLock()  # a lock held by another parent thread at fork time would never be freed
    if _layer is not None and _layer not in ("tbb", "workqueue"):
        _parallel_allowed = False


os.register_at_fork(after_in_child=_after_fork_in_child)

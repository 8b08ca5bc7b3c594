"""How a fastnn kernel is compiled and launched, and why it is safe with threads and processes.

Every loop body is compiled twice from one Python function: a serial twin (``parallel=False``, where ``prange``
is a plain ``range``) and a parallel one (``parallel=True``). :meth:`Kernel.run` picks one by the size of the
work, by the thread count the user asked for, and by what is safe in this process. A body that already runs one
slot of per-thread scratch per call (the Winograd convolution) is a :class:`SlotKernel` instead: compiled once,
serial, its slots launched on Python threads -- a ``prange`` twin of such a body cost twice its compile time.

Size
    Starting Numba's thread pool costs ~20 us, so small inputs run the serial twin (thresholds in
    :mod:`fastnn.config`).

Python threads
    fastnn may be called from several Python threads at once (a thread pool doing inference). Compilation is
    serialised by Numba's own compiler lock. Launches of parallel twins depend on Numba's threading layer:

    * ``omp`` and ``tbb`` are thread-safe: launches from several threads run concurrently.
    * ``workqueue`` aborts the whole process ("Concurrent access has been detected") when two threads enter
      parallel code at once, so every parallel launch then takes a process-wide lock: threads take turns inside
      parallel kernels (serial twins still run concurrently).
    * Until the layer is known (Numba picks it at its first parallel launch, or when the thread pool is started by
      ``numba.set_num_threads``), launches take the lock too.

    ``tests/robustness/test_threads.py`` runs 8 threads x 20 calls of conv/pool/batch-norm/ReLU with the default
    (``omp``) and with ``NUMBA_THREADING_LAYER=workqueue``, and shows that unguarded concurrent launches do abort
    under ``workqueue``. :func:`set_num_threads` applies to every Python thread: Numba's own setting is
    per-thread, so each launch re-applies it in the launching thread.

Processes
    GNU OpenMP is not fork-safe: Numba terminates a child forked from a process whose OpenMP pool was started
    ("fork() called from a process already using GNU OpenMP, this is unsafe") at the child's first parallel launch.
    A child forked after the pool started (by a fastnn kernel, by ``set_num_threads`` or by any other Numba
    parallel code in the parent) therefore runs serial twins only; ``multiprocessing``'s ``spawn`` and
    ``forkserver`` start methods give children their own pool and full parallelism. ``workqueue`` and ``tbb``
    children keep their parallel twins (both are fork-safe).

On-disk cache (``cache=True``; :data:`fastnn.config.CACHE`)
    Both twins and every helper are compiled through :func:`fastnn._numba_cache.njit`, which keeps Numba's cache
    fresh, safe to share between processes and optional (read-only installs compile in memory); see that module.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import types
from collections.abc import Callable
from typing import Any

import numba
from numba.extending import intrinsic

from . import config
from ._malloc import tune as _tune_malloc
from ._numba_cache import njit as _njit  # also imported under this name by kernels/activations.py

#: Whether glibc malloc's thresholds were set for a training loop's arrays (:mod:`fastnn._malloc`).
MALLOC_TUNED = _tune_malloc()

_THREAD_SAFE_LAYERS = frozenset({"omp", "tbb"})

_launch_lock = threading.RLock()
_layer: str | None = None  # Numba's threading layer, once its thread pool has started
_parallel_allowed = True  # False in a child forked from a parent whose threading layer is not fork-safe
_num_threads: int | None = None  # set by set_num_threads; None: Numba's default
#: While a first run's compile worker fills the cache (:func:`fastnn._compiling.first_gradient`), called as
#: ``_defer(kernel, args)`` before a parallel launch: True runs the serial twin instead. It is so, in both processes,
#: for kernels whose twins give the same bits (``Kernel.same_bits``), whose serial compilation costs a fraction of
#: the parallel one's: the worker compiles that one after the backward, in the background.
_defer: Callable[[Kernel, tuple], bool] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Compilation


def _renamed(fn: Callable, suffix: str) -> Callable:
    """A copy of ``fn`` under another qualified name, so its on-disk cache entry is its own."""
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return clone


def helper(fn: Callable | None = None, *, fastmath: frozenset[str] | bool = config.FASTMATH,
           inline: bool = False) -> Callable:
    """Compile a scalar or small helper that kernels call (inlined by LLVM; never launched on its own).

    ``inline=True`` inlines it in Numba's own IR instead, which lets the caller's loops see through it (measured
    on the Winograd plane copies: LLVM's inlining left them ~25% slower).
    """
    if fn is None:
        return lambda f: helper(f, fastmath=fastmath, inline=inline)
    options = {"inline": "always"} if inline else {}
    return _njit(fn, fastmath=set(fastmath) if isinstance(fastmath, frozenset) else fastmath, **options)


# ---------------------------------------------------------------------------------------------------------------
# Launching


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
    nogil
        Compile the serial twin releasing the GIL, for callers that run it on several Python threads at once
        (each on its own part of the data; see :func:`run_on_slots`).
    same_bits
        The two twins give bit-identical results (each output element is computed by the same operations in
        either, as a test pins), so which one runs is only a matter of speed: while a first run's worker compiles
        the parallel twin (:data:`_defer`), the serial one runs.
    """

    same_bits = False

    def __init__(self, fn: Callable, family: str, fastmath: frozenset[str] | bool = config.FASTMATH,
                 nogil: bool = False, same_bits: bool = False) -> None:
        if family not in config.PARALLEL_MIN_WORK:
            raise ValueError(f"unknown kernel family {family!r}")
        flags = set(fastmath) if isinstance(fastmath, frozenset) else fastmath
        self.py_func = fn
        self.family = family
        self.serial = _njit(_renamed(fn, "__serial"), parallel=False, fastmath=flags, nogil=nogil)
        self.parallel = _njit(fn, parallel=True, fastmath=flags)
        self.same_bits = same_bits
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def use_parallel(self, work: int) -> bool:
        """Whether a call touching ``work`` elements runs the parallel twin."""
        return (  # the threshold first: most launches of a small net's step are serial
            work >= config.parallel_min_work(self.family)
            and _parallel_allowed
            and _num_threads != 1
            and numba.config.NUMBA_NUM_THREADS > 1
        )

    def parts(self, work: int) -> int:
        """Parts to cut a launch touching ``work`` elements into where the cut decides its results' bits (the
        row or column parts of BLAS products): one per thread of the machine (``numba.config.NUMBA_NUM_THREADS``) when
        the work is worth a parallel launch, whatever the count set now (``set_num_threads``) or a forked child's
        serial twins, which then run the same parts in turn and give the same bits."""
        if work < config.parallel_min_work(self.family):
            return 1
        return numba.config.NUMBA_NUM_THREADS

    def threads(self, work: int) -> int:
        """Threads a launch touching ``work`` elements runs on (1 for the serial twin), for kernels that keep
        one scratch slot per thread and run their parallel loop over the slots (see ``kernels/winograd.py``)."""
        if not self.use_parallel(work):
            return 1
        return _num_threads or numba.get_num_threads()

    def run(self, work: int, *args: Any) -> Any:
        """Run the kernel on ``args``; ``work`` is the number of elements it touches."""
        if not self.use_parallel(work) or (_defer is not None and _defer(self, args)):
            return self.serial(*args)
        return _launch_parallel(self.parallel, args)

    def __call__(self, *args: Any) -> Any:
        """Run the serial twin (for tests and for callers that are already parallel)."""
        return self.serial(*args)


class SlotKernel(Kernel):
    """A body that runs once per slot of per-thread scratch, launched on Python threads instead of Numba's pool.

    ``fn(slot, *args)`` is compiled once, serial and releasing the GIL; :meth:`run` calls it for every slot,
    slots 1.. on a pool of Python threads and slot 0 on the calling thread. For bodies whose slots are large
    (a chunk of images each, see ``kernels/winograd.py``) this costs ~10-20 us more per launch than a
    ``prange`` over the slots, and spares compiling a parallel twin: Numba's parallel pipeline re-optimises
    every helper the body links, which measured 2.1x the serial compile time for the Winograd kernels (4.4 s
    against 2.2 s forward, 5.8 s against 2.7 s backward, float32, cold cache) -- the largest part of a first
    training run. ``serial`` and ``parallel`` both name the one compiled body (cache checks iterate over them);
    calling the kernel runs the body for the one slot given as its first argument.

    ``claims``: the slots take their work from a shared counter (:func:`claim`) and a slot that runs no body at all
    leaves nothing unwritten, so :meth:`run` skips a slot whose thread has not started by the time slot 0 has
    finished (slot 0 then claimed everything). On this shared 2-core VM the second thread was often descheduled:
    a DeepConvNet step at two threads with another process busy waited 0.1-2.2 ms per launch for a slot thread
    that then found every chunk taken.
    """

    def __init__(self, fn: Callable, family: str, fastmath: frozenset[str] | bool = config.FASTMATH,
                 claims: bool = False) -> None:
        if family not in config.PARALLEL_MIN_WORK:
            raise ValueError(f"unknown kernel family {family!r}")
        flags = set(fastmath) if isinstance(fastmath, frozenset) else fastmath
        self.py_func = fn
        self.family = family
        self.claims = claims
        self.serial = self.parallel = _njit(fn, nogil=True, fastmath=flags)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def run(self, slots: int, *args: Any) -> None:
        """Run the body for slots 0 .. ``slots`` - 1 (one per thread, as sized by :meth:`threads`), concurrently
        when there are several (with ``claims``, slots not started when slot 0 returns are skipped)."""
        body = self.serial
        if slots == 1:
            body(0, *args)
            return
        pool = _slot_pool()
        futures = [pool.submit(body, slot, *args) for slot in range(1, slots)]
        body(0, *args)
        for f in futures:
            if self.claims and f.cancel():  # not started: slot 0 has claimed all the work it would have found
                continue
            f.result()  # re-raises a slot's exception here



_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _slot_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads :class:`SlotKernel` launches on (one fewer than Numba's, the caller runs a slot too)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                                              thread_name_prefix="fastnn-slot")
    return _pool


def run_on_slots(calls: list[Callable[[], Any]], concurrent: bool) -> None:
    """Run zero-argument ``calls`` (each a nogil compiled body on its own part of the data): calls 1.. on the
    slot pool and call 0 on the calling thread when ``concurrent``, else one after the other here."""
    if not concurrent or len(calls) == 1:
        for call in calls:
            call()
        return
    pool = _slot_pool()
    futures = [pool.submit(call) for call in calls[1:]]
    calls[0]()
    for f in futures:
        f.result()  # re-raises a slot's exception here


@intrinsic
def claim(typingctx, counter):
    """The next index from ``counter`` (a 1-D int64 array; its element 0 is taken and incremented atomically), for
    slot kernels whose slots take chunks of work as they come rather than a fixed share.

    Which slot takes which chunk then varies from run to run, so a body must give each chunk's results the same
    bits whichever slot computes it (per-slot scratch only as scratch; partial sums per chunk or per fixed group of
    chunks, never per slot).
    """
    if not (isinstance(counter, numba.types.Array) and counter.dtype == numba.types.int64):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        one = context.get_constant(numba.types.int64, 1)
        return builder.atomic_rmw("add", ary.data, one, "monotonic")

    return numba.types.int64(counter), codegen


def slot_kernel(family: str, fastmath: frozenset[str] | bool = config.FASTMATH,
                claims: bool = False) -> Callable[[Callable], SlotKernel]:
    """Decorator form of :class:`SlotKernel`."""
    return lambda fn: SlotKernel(fn, family, fastmath, claims)


def _numba_layer() -> str | None:
    """Numba's threading layer if its thread pool has started in this process, else None."""
    try:
        return numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return None


def _launch_parallel(dispatcher: Callable, args: tuple) -> Any:
    global _layer
    if _num_threads is not None and numba.get_num_threads() != _num_threads:
        numba.set_num_threads(_num_threads)  # Numba's thread count is per calling thread
    if _layer is None:
        _layer = _numba_layer()
    if _layer in _THREAD_SAFE_LAYERS:
        return dispatcher(*args)
    with _launch_lock:
        result = dispatcher(*args)
        if _layer is None:
            _layer = _numba_layer()
        return result


def kernel(family: str, fastmath: frozenset[str] | bool = config.FASTMATH,
           nogil: bool = False, same_bits: bool = False) -> Callable[[Callable], Kernel]:
    """Decorator form of :class:`Kernel`."""
    return lambda fn: Kernel(fn, family, fastmath, nogil, same_bits)


def threading_layer() -> str | None:
    """Numba's threading layer in this process, or None before its thread pool has started."""
    global _layer
    if _layer is None:
        _layer = _numba_layer()
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
    """Threads a parallel kernel uses (1 in a forked child that must run serial twins)."""
    if not _parallel_allowed:
        return 1
    return _num_threads if _num_threads is not None else numba.config.NUMBA_NUM_THREADS


def _fork_unsafe(layer: str | None) -> bool:
    """Whether a child forked now would be terminated at its first parallel launch."""
    if layer != "omp":
        return False  # not started, or tbb / workqueue, which survive a fork
    try:
        from numba.np.ufunc import omppool
    except ImportError:
        return True
    return getattr(omppool, "openmp_vendor", "GNU") != "Intel"


def _after_fork_in_child() -> None:
    global _parallel_allowed, _launch_lock, _layer, _pool, _pool_lock
    _launch_lock = threading.RLock()  # a lock held by another parent thread at fork time would never be freed
    _pool, _pool_lock = None, threading.Lock()  # the parent's slot threads do not exist in the child
    if _layer is None:
        _layer = _numba_layer()  # the pool may have been started outside fastnn (numba.set_num_threads)
    if _fork_unsafe(_layer):
        _parallel_allowed = False


os.register_at_fork(after_in_child=_after_fork_in_child)

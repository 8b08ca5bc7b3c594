"""Connecting to a Dask cluster, or starting a LocalCluster sized to this machine, with fastnn's thread settings."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

try:
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # the extra is not installed: the class still imports, connect() says what to install
    _WorkerPlugin = object

__all__ = ["FastnnThreads", "connect", "local_cluster"]


def _require() -> None:
    from ..datasets._optional import require

    require("distributed", "running on a Dask cluster", extra="distributed")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class FastnnThreads(_WorkerPlugin):
    """A Dask ``WorkerPlugin``: fastnn's kernels use ``threads`` Numba threads on every worker, including workers
    that join later (a worker restarted after a crash).

    On a LocalCluster the worker processes also get ``NUMBA_NUM_THREADS`` in their environment before Numba is
    imported; on workers started by hand (``dask worker``) Numba's pool keeps its size and
    :func:`fastnn.set_num_threads` caps the threads fastnn uses (at the pool size). With more than one thread the
    plugin also lets BLAS use as many (the nanny sets ``OPENBLAS_NUM_THREADS=1``), when threadpoolctl is installed.
    """

    name = "fastnn-threads"

    def __init__(self, threads: int = 1) -> None:
        self.threads = int(threads)

    def setup(self, worker: Any = None) -> None:
        import numba

        from .. import set_num_threads

        n = min(self.threads, numba.config.NUMBA_NUM_THREADS)
        set_num_threads(n)
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=n, user_api="blas")



def local_cluster(n_workers: int | None = None, threads: int = 1, *, threads_per_worker: int = 1,
                  **kwargs: Any) -> Any:
    """A ``distributed.LocalCluster`` for fastnn on this machine: worker processes on the loopback interface.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes; default ``cores // (threads * threads_per_worker)`` (at least 1).
    threads : int
        Numba threads per task (``NUMBA_NUM_THREADS`` of each worker). 1 (the default) gives every core its own
        training; more makes fewer, fatter workers for long single trainings.
    threads_per_worker : int
        Tasks a worker runs at once (Dask threads); each task's kernels use ``threads`` Numba threads.
    **kwargs
        Passed on to ``LocalCluster`` (``env``, ``memory_limit`` ...). Scheduler, workers and dashboard listen on
        127.0.0.1 (dashboard on a free port) unless ``host``/``dashboard_address`` say otherwise.

    Notes
    -----
    Workers are started by their nanny with Dask's default ``multiprocessing-method`` ``spawn``: a fresh
    interpreter that has not started GNU OpenMP (which is not fork-safe) and imports Numba after
    ``NUMBA_NUM_THREADS`` is set. Numba's threading layer in a worker is its default (``omp`` where Numba ships
    its GNU OpenMP pool, ``tbb`` or ``workqueue`` elsewhere; :func:`fastnn.threading_layer` on a worker tells).
    ``omp`` and ``tbb`` take concurrent launches from several Dask threads; under ``workqueue`` fastnn serialises
    parallel launches with a process-wide lock (see ``fastnn._jit``).
    """
    _require()
    from distributed import LocalCluster

    for name, value in (("threads", threads), ("threads_per_worker", threads_per_worker)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"local_cluster: {name} must be an int >= 1, got {value!r}")
    if n_workers is None:
        n_workers = max(_cores() // (threads * threads_per_worker), 1)
    env = {"NUMBA_NUM_THREADS": str(threads), **kwargs.pop("env", {})}
    kwargs.setdefault("host", "127.0.0.1")
    kwargs.setdefault("dashboard_address", "127.0.0.1:0")  # loopback, a free port
    kwargs.setdefault("processes", True)
    kwargs.setdefault("silence_logs", logging.ERROR)
    return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, env=env, **kwargs)


@contextlib.contextmanager
def connect(scheduler: str | None = None, *, n_workers: int | None = None, threads: int = 1,
            timeout: float = 60) -> Iterator[Any]:
    """A ``distributed.Client`` for the scheduler at ``scheduler``, or for a :func:`local_cluster` started and
    stopped with the ``with`` block (``scheduler`` None). Every worker gets :class:`FastnnThreads` ``(threads)``.
    """
    _require()
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(local_cluster(n_workers, threads))
            client = stack.enter_context(Client(cluster, timeout=timeout))
        else:
            client = stack.enter_context(Client(scheduler, timeout=timeout))
        client.register_plugin(FastnnThreads(threads))
        yield client

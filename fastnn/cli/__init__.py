"""The command line of fastnn (``python -m fastnn``): demo, chapter-6 experiments, and helpers they share."""

from __future__ import annotations


class CLIError(Exception):
    """A failure the user can fix (data could not be downloaded, a file is corrupt ...): printed without traceback."""


def add_threads_argument(p) -> None:
    """``--threads N``: the option demo and experiment share."""
    p.add_argument("--threads", type=int, default=None,
                   help="threads for fastnn's kernels and for NumPy's BLAS (default: fastnn's and BLAS's own "
                        "defaults, i.e. every core); 1 is often fastest on a busy machine")


def apply_threads(n: int | None) -> None:
    """Use ``n`` threads in fastnn kernels and, when threadpoolctl is installed, in BLAS (np.dot).

    Both pools together oversubscribe the cores when n is not set: on a loaded 2-core machine a training step
    was measured 50x slower with the default pools than with ``--threads 1``.
    """
    if n is None:
        return
    import numba

    from .._jit import set_num_threads

    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise CLIError(f"--threads must be in [1, {numba.config.NUMBA_NUM_THREADS}], got {n}")
    set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n, user_api="blas")

"""A STREAM-style triad, to know the memory bandwidth the bandwidth-bound kernels (optimizers) can reach.

McCalpin's STREAM "triad" ``a[i] = b[i] + s * c[i]`` on float64 arrays much larger than the caches; the
bandwidth is counted the STREAM way, 24 bytes per element (read b and c, write a). With ordinary (not
non-temporal) stores the CPU also reads each line of ``a`` before writing it, so the traffic actually moved is
32 bytes per element; the fused Adam step re-writes lines it has just read and moves exactly the 28 bytes per
float32 parameter it counts.
"""

from __future__ import annotations

import time

import numpy as np
from numba import prange

from .. import _validate
from .._jit import kernel

__all__ = ["triad_bandwidth"]

#: Bytes per element STREAM counts for the triad.
TRIAD_BYTES_PER_ELEMENT = 24


@kernel("elementwise")
def _triad(a, b, c, s):
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def triad_bandwidth(n: int = 20_000_000, repeats: int = 10) -> float:
    """Best triad bandwidth over ``repeats`` runs, in bytes per second (STREAM counting, 24 bytes/element).

    Parameters
    ----------
    n : int
        Elements per float64 array (3 arrays: 24*n bytes; the default 480 MB is far beyond any cache).
    repeats : int
        Timed runs after one warm-up run (which also compiles the kernel and faults the pages in).

    Returns
    -------
    float
        ``24 * n / best_time``. Runs the parallel twin when :mod:`fastnn.config` says ``n`` is large enough.
    """
    n = _validate.integer(n, "triad_bandwidth", "n", minimum=1)
    repeats = _validate.integer(repeats, "triad_bandwidth", "repeats", minimum=1)
    a = np.zeros(n)
    b = np.full(n, 1.0)
    c = np.full(n, 2.0)
    s = 3.0
    _triad.run(n, a, b, c, s)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        _triad.run(n, a, b, c, s)
        best = min(best, time.perf_counter() - t0)
    if a[0] != 7.0 or a[-1] != 7.0:  # guard against a kernel the compiler proved dead
        raise AssertionError("triad kernel produced wrong values")
    return TRIAD_BYTES_PER_ELEMENT * n / best

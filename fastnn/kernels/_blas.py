"""BLAS matrix products callable from inside compiled kernels (numpy's own OpenBLAS, one thread per caller).

The Winograd convolution (:mod:`fastnn.kernels.winograd`) runs many small products, each on data its thread
has just produced in cache. Calling ``np.matmul`` between compiled passes would hand every product to
OpenBLAS's thread pool and back, with the two pools (Numba's and OpenBLAS's) fighting for two cores; instead,
each Numba thread calls ``cblas_?gemm`` of the OpenBLAS that numpy wheels bundle, with OpenBLAS told to use one
thread for calls from that thread (``openblas_set_num_threads_local``; the previous value is restored after).

The functions are bound by symbol name (``numba.types.ExternalFunction``), so kernels that use them are still
cached on disk: the symbols are resolved from the already-loaded library when a cached kernel is linked.

:data:`AVAILABLE` is False when numpy does not bundle that library (numpy built against MKL, Accelerate or a
system BLAS, or an OpenBLAS without the per-thread setting); callers then take a path without these products.
"""

from __future__ import annotations

import ctypes
import glob
import os

import llvmlite.binding as llb
import numpy as np
from numba import types

from .._jit import helper

__all__ = ["AVAILABLE", "COL_MAJOR", "NO_TRANS", "ROW_MAJOR", "TRANS", "dgemm", "gemm", "set_threads_local", "sgemm"]

ROW_MAJOR, COL_MAJOR = 101, 102
NO_TRANS, TRANS = 111, 112

#: numpy wheels' OpenBLAS: 64-bit integers, symbols prefixed ``scipy_`` and suffixed ``64_``.
_SGEMM, _DGEMM, _THREADS_LOCAL = "scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", "openblas_set_num_threads_local"


def _find_library() -> str | None:
    """Path of numpy's bundled OpenBLAS exporting the three symbols, loaded for the JIT; None if there is none."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*"))):
        try:
            lib = ctypes.CDLL(path)  # numpy has loaded it already: this returns the same instance
        except OSError:
            continue
        if all(hasattr(lib, name) for name in (_SGEMM, _DGEMM, _THREADS_LOCAL)):
            llb.load_library_permanently(path)
            return path
    return None


LIBRARY: str | None = _find_library()
AVAILABLE: bool = LIBRARY is not None

_i32, _i64, _ptr = types.int32, types.int64, types.uintp


def _gemm_type(name: str, real: types.Type) -> types.ExternalFunction:
    # cblas_?gemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); pointers as integers
    return types.ExternalFunction(name, types.void(_i32, _i32, _i32, _i64, _i64, _i64, real, _ptr, _i64, _ptr,
                                                   _i64, real, _ptr, _i64))


#: ``C = alpha op(A) op(B) + beta C`` in float32 / float64; arrays passed as ``arr.ctypes.data`` addresses.
sgemm = _gemm_type(_SGEMM, types.float32)
dgemm = _gemm_type(_DGEMM, types.float64)
#: Threads OpenBLAS uses for calls from the calling thread; returns the previous setting.
set_threads_local = types.ExternalFunction(_THREADS_LOCAL, _i32(_i32))


@helper(inline=True)
def gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, item):
    """c (m, n) = op(a) @ op(b) + beta * c on this thread's OpenBLAS with one thread (op = transpose when ``ta`` /
    ``tb``); ``a``, ``b``, ``c`` are addresses (``arr.ctypes.data`` plus a byte offset), ``beta`` 0 or 1, ``item``
    the element size (4: float32, else float64). Nothing is called for an empty c.

    Inlined into the caller, where it passes its arguments on as plain bools, integers and a float: Numba compiles
    a function called with constants once per constant (``Literal[bool](False)``), so every caller's combination of
    transposes was a compilation of its own (seven in a first SimpleConvNet step); now there is one per dtype.
    """
    _gemm_call(bool(ta), bool(tb), int(m), int(n), int(k), a, int(lda), b, int(ldb), float(beta), c, int(ldc),
               int(item))


@helper
def _gemm_call(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, item):
    if m == 0 or n == 0:
        return
    before = set_threads_local(1)
    if item == 4:
        sgemm(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, np.float32(1.0), a, lda,
              b, ldb, np.float32(beta), c, ldc)
    else:
        dgemm(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 1.0, a, lda, b, ldb,
              np.float64(beta), c, ldc)
    set_threads_local(before)

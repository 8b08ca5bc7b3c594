"""Matrix products split across Numba's threads, each part one single-threaded OpenBLAS call.

Why not ``np.matmul``: numpy hands a product to OpenBLAS's own thread pool, whose threads keep spinning for a
while after it returns. A Numba kernel launched right after (the ReLU after an affine layer, the bias pass after
a convolution's GEMM) then shares the two cores with them, and measured up to twice as slow; a training step with
``OPENBLAS_NUM_THREADS=1`` ran faster than with OpenBLAS's threads. Here the parts of a product run on Numba's
threads (:mod:`fastnn.kernels._blas`), so only one pool is ever awake.

Results are the same bits with any number of threads: a cut reduction (whose parts' sums are added) is fixed
by the shapes, and cuts of the output's rows or columns follow the machine's threads, not the count set now
(:meth:`fastnn._jit.Kernel.parts`; fewer threads run the same parts in turn). Where a cut falls changes bits:
OpenBLAS rounds a column of the output by its place among the call's columns (its edge kernels; measured in
float64, a (120, 650) @ (650, 2600) product cut at column 1300 has columns 1296..1299 and 2596..2599 in other
bits than uncut). Each part is one BLAS call that packs its own share of the operands, so every way of cutting costs
extra memory traffic: cutting rows of the output packs all of ``b`` again in every part, cutting columns packs
all of ``a`` again, cutting the reduction writes one partial output per part and adds them up (in order). The
plan cuts the dimension whose extra traffic is least (the reduction of a convolution's weight gradient, the rows
of an affine layer's ``x.T @ dout``), into a power of two of parts so that two or four cores share them evenly.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from .. import _checks
from .._jit import kernel
from . import _blas
from ._blas import gemm

__all__ = ["add_into", "column_sum", "matmul", "matmul_bias"]

#: Parts a product is cut into (fewer when it is small): twice the two cores here, few enough that each part is a
#: large product. Measured (CPU time, one thread, the Transformer's (4096, E) products, E = 128..512): 8 parts cost
#: 111 ms of work where 4 cost 102.5 and one np.matmul 97.5 -- every part repacks an operand and pays the call.
_PARTS = 4
#: Smallest share of the split dimension a part gets (a part below it costs more in packing than it saves).
_MIN_ROWS = 32
#: Smallest share of the reduction a part gets when the reduction is cut.
_MIN_REDUCTION = 256
#: Least multiply-adds of a product whose row or column cut follows the machine's threads (see _plan; below, it
#: is cut into _PARTS): a quarter of it is still far above the sizes where OpenBLAS takes its small-matrix or
#: direct sgemm paths (up to 28*512*512), which sum in another order.
_THREAD_CUTS = 1 << 25
#: Products of at most this many multiply-adds go to ``np.matmul``: OpenBLAS runs them on the calling thread
#: (its threshold is 65536 * 4), so no pool wakes, and the split's fixed cost (~10 us) would dominate them.
_SMALL = 1 << 18


@kernel("gemm", same_bits=True)  # each part is one single-threaded BLAS call, whichever thread makes it
def _gemm_parts(a, b, c, ta, tb, lda, ldb, ldc, split, bounds, partial, bias, use_bias):
    """c (M, N) = op(a) @ op(b) (+ bias on every row when ``use_bias``), or its parts: ``split`` 0 cuts rows of
    c, 1 columns, 2 the reduction.

    ``a``/``b`` are the operands' storage (op = transpose when ``ta``/``tb``), ``bounds`` (P + 1,) the cut
    points, ``partial`` (P, M, N) the per-part products when split == 2 (else unused). The bias is written into
    the part's share of c first and the product added to it by BLAS (beta 1): the output is written once, by the
    thread that made it, not passed over again, and holds the bits of the product plus the bias (a cut reduction,
    whose outputs are small, adds its bias to the summed parts).
    """
    M, N = c.shape[0], c.shape[1]
    K = a.shape[0] if ta else a.shape[1]
    item = c.itemsize
    for p in prange(bounds.size - 1):
        lo = bounds[p]
        hi = bounds[p + 1]
        m, n, k = M, N, K
        oa, ob, oc = 0, 0, 0  # byte offsets of the part's corner in a, b, c
        if split == 0:  # rows lo..hi of c: rows of op(a)
            m = hi - lo
            oa = lo * item if ta else lo * lda * item
            oc = lo * ldc * item
        elif split == 1:  # columns lo..hi of c: columns of op(b)
            n = hi - lo
            ob = lo * ldb * item if tb else lo * item
            oc = lo * item
        else:  # reduction lo..hi, into partial[p]
            k = hi - lo
            oa = lo * lda * item if ta else lo * item
            ob = lo * item if tb else lo * ldb * item
        a0 = a.ctypes.data + np.uintp(oa)
        b0 = b.ctypes.data + np.uintp(ob)
        c0 = (partial[p].ctypes.data if split == 2 else c.ctypes.data) + np.uintp(oc)
        beta = 0
        if use_bias and split != 2:  # (a cut reduction gets its bias after the partial products are summed)
            beta = 1
            r0, r1, j0, j1 = (lo, hi, 0, N) if split == 0 else (0, M, lo, hi)
            for i in range(r0, r1):
                for j in range(j0, j1):
                    c[i, j] = bias[j]
        gemm(ta, tb, m, n, k, a0, lda, b0, ldb, beta, c0, N if split == 2 else ldc, item)


def _blas_view(x: np.ndarray) -> tuple[np.ndarray, bool, int]:
    """(storage, transposed, leading dimension) describing 2-D ``x`` to row-major BLAS; copies only if needed."""
    item = x.itemsize
    if x.strides[1] == item and x.strides[0] % item == 0 and x.strides[0] >= max(1, x.shape[1]) * item:
        return x, False, x.strides[0] // item
    if x.strides[0] == item and x.strides[1] % item == 0 and x.strides[1] >= max(1, x.shape[0]) * item:
        return x.T, True, x.strides[1] // item
    x = np.ascontiguousarray(x)
    return x, False, max(1, x.shape[1])


@functools.lru_cache(maxsize=256)
def _plan(M: int, N: int, K: int, threads: int = _PARTS) -> tuple[int, np.ndarray]:
    """(split, cut points) for an (M, K) @ (K, N) product; see the module docstring.

    A cut of the rows or columns of the output gives every element its whole reduction in one BLAS call, in bits
    that depend on where the cut falls (the module docstring), so those cuts are made one per thread of the
    machine (``threads``, from :meth:`fastnn._jit.Kernel.parts`; a power of two at most _PARTS): more parts on as
    many threads only pack their operands again (measured, CPU time, DLFS-2's
    BetterRnnlm products (700, 650) @ (650, 10000) and (650, 700) @ (700, 2600): 2 parts 2-4% less than 4).
    A cut reduction changes the bits with the number of parts, so it stays at _PARTS whatever the threads.
    Memoised (a net's products repeat their shapes every step; building the plan was ~1.5 us of a 100x100x100
    product's ~22 us call); the kernels only read the cut points.
    """
    # (extra traffic per extra part, split, size of the cut dimension, least share of a part)
    options = [(K * N, 0, M, _MIN_ROWS), (M * K, 1, N, _MIN_ROWS), (2 * M * N, 2, K, _MIN_REDUCTION)]
    usable = [option for option in options if option[2] >= 2 * option[3]]
    if not usable:
        return 0, np.array([0, M], dtype=np.int64)
    _, split, size, least = min(usable)
    most = _PARTS if split == 2 else max(1, min(_PARTS, threads))
    parts = 1 << (min(most, size // least).bit_length() - 1)  # a power of two, at most _PARTS
    return split, np.array([p * size // parts for p in range(parts + 1)], dtype=np.int64)


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """out = a @ b (+ bias on every row) for validated 2-D arrays of one dtype; ``out`` (M, N) has unit column
    stride, ``bias`` is (N,) of the same dtype."""
    M, K = a.shape
    N = b.shape[1]
    if (not _blas.AVAILABLE or out.dtype not in (np.float32, np.float64) or M == 0 or N == 0
            or M * N * K <= _SMALL):
        np.matmul(a, b, out=out)
        if bias is not None:
            out += bias
        return out
    if K == 0:
        out[...] = 0 if bias is None else bias
        return out
    assert out.strides[1] == out.itemsize and out.shape == (M, N)
    threads = _gemm_parts.parts(M * N * K // 8) if M * N * K >= _THREAD_CUTS else _PARTS
    split, bounds = _plan(M, N, K, threads)
    sa, ta, lda = _blas_view(a)
    sb, tb, ldb = _blas_view(b)
    parts = bounds.size - 1
    partial = np.empty((parts, M, N) if split == 2 else (1, 1, 1), dtype=out.dtype)
    args = (sa, sb, out, ta, tb, lda, ldb, out.strides[0] // out.itemsize, split, bounds, partial,
            out[0] if bias is None else bias, bias is not None)
    if parts > 1:
        _gemm_parts.run(M * N * K // 8, *args)
    else:  # the serial twin: a parallel launch of one part would only add its start-up cost
        _gemm_parts(*args)
    if split == 2:
        np.sum(partial, axis=0, out=out)
        if bias is not None:
            out += bias
    return out


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Products of more than ``2**18`` multiply-adds are cut into parts (the plan is in the module docstring), each one
    single-threaded OpenBLAS call, on Numba's threads from ``2**18`` multiply-adds (``config.PARALLEL_MIN_WORK``
    "gemm"; below, one after the other on the calling thread), so OpenBLAS's own pool never wakes; smaller ones go
    to ``np.matmul``. The same bits with any number of threads (see the module docstring). ``a`` and ``b`` may have
    any strides (a transposed view is passed to BLAS as such, without a copy). ``out`` is written by BLAS
    directly when its rows or its columns are contiguous (a Fortran-order ``out`` as ``out.T = b.T @ a.T``), which
    saves a layer's weight gradient a fresh array and a copy into its gradient array.
    """
    return _matmul(*_checks.check_matmul_out("matmul", a, b, out))


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return matmul_into(a, b, np.empty((a.shape[0], b.shape[1]), dtype=a.dtype))
    if np.may_share_memory(out, a) or np.may_share_memory(out, b):  # BLAS would read what it has written
        out[...] = _matmul(a, b)
    elif out.strides[1] == out.itemsize:
        matmul_into(a, b, out)
    elif out.strides[0] == out.itemsize:
        matmul_into(b.T, a.T, out.T)
    else:
        out[...] = _matmul(a, b)
    return out


def matmul_bias(a: np.ndarray, b: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """:func:`matmul`'s parts, each writing the bias into its share of the output before BLAS adds the product
    to it: no second pass over the output (which an ``a @ b + bias`` makes, single-threaded in numpy). The same
    bits as ``matmul(a, b) + bias``."""
    return _matmul_bias(*_checks.check_matmul_bias("matmul_bias", a, b, bias))


def _matmul_bias(a: np.ndarray, b: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return matmul_into(a, b, np.empty((a.shape[0], b.shape[1]), dtype=a.dtype), bias)


#: Rows one partial sum covers (blocked summation: the rounding error grows with the number of blocks, not of
#: rows, as numpy's pairwise sum keeps it small; the blocks are fixed by the shape, so the bits do not depend on
#: the thread count).
_SUM_BLOCK = 256


@kernel("window")
def _column_blocks(a, partial):
    """partial[b] (N,) = the sum of rows b*_SUM_BLOCK.. of ``a`` (M, N), each row added whole (unit stride)."""
    M, N = a.shape
    for blk in prange(partial.shape[0]):
        r0 = blk * _SUM_BLOCK
        acc = partial[blk]
        for j in range(N):
            acc[j] = a[r0, j]
        for i in range(r0 + 1, min(M, r0 + _SUM_BLOCK)):
            for j in range(N):
                acc[j] += a[i, j]


def column_sum(a: np.ndarray) -> np.ndarray:
    """Parallel over blocks of 256 rows, each summed into a partial row, the partial rows then added in order
    (the split depends on the shape only: the same bits with any number of threads). A layer's bias gradient,
    which ``dout.sum(axis=0)`` computes on one core."""
    return _column_sum(*_checks.check_column_sum("column_sum", a))


def _column_sum(a: np.ndarray) -> np.ndarray:
    M, N = a.shape
    if M == 0 or N == 0:
        return np.zeros(N, a.dtype)
    partial = np.empty(((M + _SUM_BLOCK - 1) // _SUM_BLOCK, N), a.dtype)
    _column_blocks.run(a.size, a, partial)
    return partial.sum(axis=0) if len(partial) > 1 else partial[0]


@kernel("elementwise")
def _add_flat(a, b):
    for i in prange(a.shape[0]):
        a[i] += b[i]


def add_into(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One parallel pass over C-contiguous arrays that do not overlap (numpy's in-place add, on one core,
    otherwise). A residual connection's sum, written into an array the caller owns."""
    return _add_into(*_checks.check_add_into("add_into", a, b))


def _add_into(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.flags.c_contiguous and b.flags.c_contiguous and not np.may_share_memory(a, b):
        _add_flat.run(a.size, a.reshape(-1), b.reshape(-1))
    else:
        np.add(a, b, out=a)
    return a

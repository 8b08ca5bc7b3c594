"""Embedding lookup and gradient, and global-norm gradient clipping, as Numba kernels.

Same names, signatures and results as :mod:`fastnn.reference.sequence` (formulas there).

The embedding gradient is a scatter-add in which ids repeat (a frequent word appears many times in a batch).
Threads split it by the embedding's *columns*: each owns a block of D and walks all ids in order, so no two
threads ever write one element and every element sums its terms in the order of ``idx``, as ``np.add.at`` does:
the result is deterministic, independent of the thread count, and equal to the twin's bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import _checks, _validate
from .._jit import helper, kernel

__all__ = ["embedding_forward", "embedding_backward", "embedding_dot_forward", "embedding_dot_backward", "clip_grads"]

#: Columns of D per parallel task of the embedding kernels (a 64-byte line of float32 and then some).
_COLS = 32


@kernel("embedding")
def _gather(W, idx, out):
    d = W.shape[1]
    for i in prange(idx.shape[0]):
        row = idx[i]
        for j in range(d):
            out[i, j] = W[row, j]


@kernel("embedding")
def _scatter_add(dout, idx, dW, cols):
    n, d = dout.shape
    for blk in prange((d + cols - 1) // cols):
        lo = blk * cols
        hi = min(lo + cols, d)
        for i in range(n):
            row = idx[i]
            for j in range(lo, hi):
                dW[row, j] += dout[i, j]


@kernel("embedding")
def _dot_rows(W, idx, h, out):
    d = h.shape[1]
    for i in prange(h.shape[0]):
        row = idx[i]
        acc = W[row, 0] * 0
        for j in range(d):
            acc += W[row, j] * h[i, j]
        out[i] = acc


@kernel("embedding")
def _dot_rows_bwd(dout, W, idx, h, dh, dW, cols):
    # dh row by row; dW by blocks of columns, each thread walking all ids in order (see _scatter_add)
    n, d = h.shape
    for i in prange(n):
        row = idx[i]
        for j in range(d):
            dh[i, j] = dout[i] * W[row, j]
    for blk in prange((d + cols - 1) // cols):
        lo = blk * cols
        hi = min(lo + cols, d)
        for i in range(n):
            row = idx[i]
            for j in range(lo, hi):
                dW[row, j] += dout[i] * h[i, j]


@helper
def _sum_squares_range(g, lo, hi):
    """Sum of ``g[lo:hi]**2`` in float64, with eight running sums: one sum converting float32 to float64 stayed a
    scalar chain (3.7 ms per million elements measured), eight vectorise (1.0 ms, memory speed)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    i = lo
    while i + 8 <= hi:
        v = np.float64(g[i])
        a0 += v * v
        v = np.float64(g[i + 1])
        a1 += v * v
        v = np.float64(g[i + 2])
        a2 += v * v
        v = np.float64(g[i + 3])
        a3 += v * v
        v = np.float64(g[i + 4])
        a4 += v * v
        v = np.float64(g[i + 5])
        a5 += v * v
        v = np.float64(g[i + 6])
        a6 += v * v
        v = np.float64(g[i + 7])
        a7 += v * v
        i += 8
    for j in range(i, hi):
        v = np.float64(g[j])
        a0 += v * v
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


@kernel("optimizer")
def _sum_squares(g, partial, chunk):
    # one slot of ``partial`` per chunk, summed afterwards: no reduction into shared memory from threads
    n = g.shape[0]
    for c in prange(partial.shape[0]):
        partial[c] = _sum_squares_range(g, c * chunk, min((c + 1) * chunk, n))


@kernel("optimizer")
def _scale(g, rate):
    for i in prange(g.shape[0]):
        g[i] *= rate


def embedding_forward(W: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Parallel over ids, each copying one row of ``W``."""
    W, idx = _checks.check_embedding_forward("embedding_forward", W, idx)
    return _embedding_forward(W, idx)


def _embedding_forward(W: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.empty((*idx.shape, W.shape[1]), W.dtype)
    if out.size:
        flat = np.ascontiguousarray(idx).reshape(-1)
        _gather.run(out.size, np.ascontiguousarray(W), flat, out.reshape(flat.shape[0], W.shape[1]))
    return out


def embedding_backward(dout: np.ndarray, idx: np.ndarray, vocab_size: int,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Parallel over blocks of 32 columns of D, each thread walking all ids in order (see the module docstring):
    race-free and bit-identical to ``np.add.at``. With ``out`` the gradient is written there (a layer's existing
    gradient array: no fresh (V, D) array and no copy of it, which at V = 10000 cost more than the scatter)."""
    return _embedding_backward(*_checks.check_embedding_backward("embedding_backward", dout, idx, vocab_size, out))


def _embedding_backward(dout: np.ndarray, idx: np.ndarray, vocab_size: int,
                        out: np.ndarray | None = None) -> np.ndarray:
    d = dout.shape[-1]
    if out is not None and (not out.flags.c_contiguous or np.may_share_memory(out, dout)):
        # computed apart, then copied: the kernel's one (C-order) specialisation; dout not overwritten first
        out[...] = _embedding_backward(dout, idx, vocab_size)
        return out
    if out is None:
        dW = np.zeros((vocab_size, d), dout.dtype)
    else:
        dW = out
        dW[...] = 0
    if dout.size:
        flat = np.ascontiguousarray(idx).reshape(-1)
        _scatter_add.run(dout.size, np.ascontiguousarray(dout).reshape(flat.shape[0], d), flat, dW, _COLS)
    return dW


def embedding_dot_forward(W: np.ndarray, idx: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Parallel over rows, each a dot product of D; no (N, D) temporary of the gathered rows."""
    return _embedding_dot_forward(*_checks.check_embedding_dot("embedding_dot_forward", W, idx, h))


def _embedding_dot_forward(W: np.ndarray, idx: np.ndarray, h: np.ndarray) -> np.ndarray:
    out = np.empty(h.shape[0], h.dtype)
    if h.size:
        _dot_rows.run(h.size, np.ascontiguousarray(W), np.ascontiguousarray(idx), np.ascontiguousarray(h), out)
    else:
        out[...] = 0
    return out


def embedding_dot_backward(dout: np.ndarray, W: np.ndarray, idx: np.ndarray,
                           h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dh parallel over rows, dW over blocks of columns as :func:`embedding_backward` (race-free and deterministic;
    each product may be fused into its addition, so dW can differ from the twin's by one rounding)."""
    return _embedding_dot_backward(*_checks.check_embedding_dot_backward("embedding_dot_backward", dout, W, idx, h))


def _embedding_dot_backward(dout: np.ndarray, W: np.ndarray, idx: np.ndarray,
                            h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dh = np.empty(h.shape, h.dtype)
    dW = np.zeros(W.shape, W.dtype)
    if h.size:
        _dot_rows_bwd.run(h.size, np.ascontiguousarray(dout), np.ascontiguousarray(W), np.ascontiguousarray(idx),
                          np.ascontiguousarray(h), dh, dW, _COLS)
    return dh, dW


def clip_grads(grads: list, max_norm: float) -> np.generic:
    """Two passes over each gradient: the sum of squares (in float64, per-chunk slots summed afterwards), then,
    only when clipping, the scaling in place."""
    return _clip_grads(*_checks.check_clip_grads("clip_grads", grads, max_norm))


#: Elements per slot of the sum of squares.
_CHUNK = 1 << 14


def _flat(g: np.ndarray) -> np.ndarray | None:
    """A 1-D view of ``g``'s memory in any order (C or Fortran contiguous, e.g. a transposed weight), else None."""
    if g.flags.c_contiguous:
        return g.reshape(-1)
    if g.flags.f_contiguous:
        return g.T.reshape(-1)
    return None


def _clip_grads(grads: list, max_norm: float) -> np.generic:
    flats = [_flat(g) for g in grads]
    total = 0.0
    for g, f in zip(grads, flats, strict=True):
        f = f if f is not None else np.ascontiguousarray(g).reshape(-1)
        partial = np.empty((f.shape[0] + _CHUNK - 1) // _CHUNK)
        _sum_squares.run(f.shape[0], f, partial, _CHUNK)
        total += float(partial.sum())
    total = float(np.sqrt(total))
    rate = max_norm / (total + 1e-6)
    if rate < 1:
        for g, f in zip(grads, flats, strict=True):
            c = f if f is not None else np.ascontiguousarray(g).reshape(-1)
            _scale.run(c.shape[0], c, g.dtype.type(rate))
            if f is None:  # a strided view: scaled as a copy, written back
                g[...] = c.reshape(g.shape)
    return _validate.norm_dtype(grads).type(total)

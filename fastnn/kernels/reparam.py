"""Weight normalization and spectral normalization as Numba kernels: reparametrizations of a layer's weight.

Same names, signatures and results as :mod:`fastnn.reference.reparam` (formulas there).

A weight is seen as a 2-D C-contiguous view with its output units on the first axis (``dim = 0``: a convolution's
(FN, C*FH*FW)) or on the last (``dim = -1``: an affine layer's (in, out)); any other ``dim`` is moved to the front
first (a copy). Per output unit the kernels need sums over the other axis: along rows for the first layout, down
columns for the second, where each work item (a chunk of rows) sums into its own row of a partial buffer and the
rows are added afterwards (no prange iteration writes another's element). Sums are float64; the element-wise passes
run in the weight's dtype with float64-computed, once-rounded coefficients.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import _checks
from .._jit import kernel
from . import _blas
from ._blas import gemm
from .linalg import _SMALL, _blas_view, _matmul

__all__ = ["weightnorm_forward", "weightnorm_backward", "weightnorm_affine_forward", "weightnorm_affine_backward",
           "spectralnorm_forward", "spectralnorm_backward"]

#: Rows per work item of the column sums (32 KiB of float32 rows of 32 columns; enough items for two threads at
#: the affine weights of the benchmarks).
_ROWS = 256


# ---------------------------------------------------------------------------------------------------------------
# Loop bodies on 2-D views


@kernel("normalization")
def _row_dots(a, b, out):
    """``out[i] = sum_j a[i, j] * b[i, j]`` (float64); b is a (R, J) array or, with one row, a vector for all."""
    for i in prange(a.shape[0]):
        ai = a[i]
        bi = b[i % b.shape[0]]
        acc = 0.0
        for j in range(ai.shape[0]):
            acc += np.float64(ai[j]) * np.float64(bi[j])
        out[i] = acc


@kernel("normalization")
def _column_dots(a, b, rows, partial):
    """``partial[t, j] = sum_{i in chunk t} a[i, j] * b[i, j]`` (float64), chunks of ``rows`` rows; b is (R, J),
    or (R, 1) for a column vector weighting every column."""
    R = a.shape[0]
    for t in prange(partial.shape[0]):
        pt = partial[t]
        pt[:] = 0.0
        for i in range(t * rows, min(R, (t + 1) * rows)):
            ai = a[i]
            bi = b[i]
            if bi.shape[0] == 1:
                f = np.float64(bi[0])
                for j in range(ai.shape[0]):
                    pt[j] += np.float64(ai[j]) * f
            else:
                for j in range(ai.shape[0]):
                    pt[j] += np.float64(ai[j]) * np.float64(bi[j])


@kernel("normalization")
def _rows_axpby(a, s, b, c, out):
    """``out[i, :] = a[i, :] * s[i] + b[i, :] * c[i]`` (x's dtype)."""
    for i in prange(a.shape[0]):
        ai, bi, oi = a[i], b[i], out[i]
        si, ci = s[i], c[i]
        for j in range(ai.shape[0]):
            oi[j] = ai[j] * si + bi[j] * ci


@kernel("normalization")
def _columns_axpby(a, s, b, c, out):
    """``out[i, :] = a[i, :] * s + b[i, :] * c`` with per-column s, c (x's dtype)."""
    for i in prange(a.shape[0]):
        ai, bi, oi = a[i], b[i], out[i]
        for j in range(ai.shape[0]):
            oi[j] = ai[j] * s[j] + bi[j] * c[j]


@kernel("normalization")
def _outer_update(d, inv, c, x, y, out):
    """``out[i, j] = d[i, j] * inv - c * x[i] * y[j]`` (d's dtype; x, y float64 vectors, inv, c scalars)."""
    for i in prange(d.shape[0]):
        di, oi = d[i], out[i]
        cx = c * x[i]
        for j in range(di.shape[0]):
            oi[j] = di[j] * inv - cx * y[j]


@kernel("normalization")
def _gemm_axpby_rows(a, ta, lda, b, tb, ldb, K, s, v, c, bounds, out):
    """``out = (op(a) @ op(b)) * s + v * c`` (s, c per column), one block of rows at a time: each block's product
    is one single-threaded BLAS call (as in :mod:`fastnn.kernels.linalg`) and is rescaled while it is still in
    cache, instead of a whole product written out and read back by a second pass."""
    N = out.shape[1]
    item = out.itemsize
    for p in prange(bounds.size - 1):
        lo = bounds[p]
        hi = bounds[p + 1]
        a0 = a.ctypes.data + np.uintp(lo * item if ta else lo * lda * item)
        gemm(ta, tb, hi - lo, N, K, a0, lda, b.ctypes.data, ldb, 0, out.ctypes.data + np.uintp(lo * N * item), N,
             item)
        for i in range(lo, hi):
            oi, vi = out[i], v[i]
            for j in range(N):
                oi[j] = oi[j] * s[j] + vi[j] * c[j]


#: Rows per block of :func:`_gemm_axpby_rows`: 256 rows of the benchmark's 512 float32 columns (512 KiB) stay in a
#: core's L2 from the product to the rescaling (measured at (4096, 64) @ (64, 512): 1.44 ms against 1.69 ms for
#: the product and a separate pass; 64, 128, 512 and 1024 rows gave 1.46-1.63 ms).
_AXPBY_ROWS = 256


def _matmul_axpby(a: np.ndarray, b: np.ndarray, s: np.ndarray, v: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``(a @ b) * s + v * c`` with s, c per column (float64, cast to v's dtype), v like the product."""
    M, K = a.shape
    N = b.shape[1]
    if not _blas.AVAILABLE or M * N * K <= _SMALL or K == 0:
        return _axpby(_matmul(a, b), s, v, c, False)
    sa, ta, lda = _blas_view(a)
    sb, tb, ldb = _blas_view(b)
    bounds = np.append(np.arange(0, M, _AXPBY_ROWS), M).astype(np.int64)
    out = np.empty((M, N), v.dtype)
    _gemm_axpby_rows.run(M * N * K // 8, sa, ta, lda, sb, tb, ldb, K, s.astype(v.dtype), np.ascontiguousarray(v),
                         c.astype(v.dtype), bounds, out)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Layouts


def _view(a: np.ndarray, dim: int) -> tuple[np.ndarray, bool]:
    """a as a C-contiguous 2-D view, and whether its output units (axis ``dim``) are its rows."""
    if dim == a.ndim - 1:
        return np.ascontiguousarray(a).reshape(-1, a.shape[dim]), False
    return np.ascontiguousarray(np.moveaxis(a, dim, 0)).reshape(a.shape[dim], -1), True


def _unview(a2: np.ndarray, shape: tuple[int, ...], dim: int, rows: bool) -> np.ndarray:
    """Inverse of :func:`_view` (a copy only for a middle ``dim``)."""
    if not rows or dim == 0:
        return a2.reshape(shape)
    moved = (shape[dim], *shape[:dim], *shape[dim + 1:])
    return np.ascontiguousarray(np.moveaxis(a2.reshape(moved), 0, dim))


def _dots(a2: np.ndarray, b2: np.ndarray, rows: bool) -> np.ndarray:
    """Per output unit, float64: ``sum(a * b)`` over the unit's elements (b2 like a2)."""
    if rows:
        out = np.empty(a2.shape[0])
        _row_dots.run(a2.size, a2, b2, out)
        return out
    partial = np.empty((-(-a2.shape[0] // _ROWS), a2.shape[1]))
    _column_dots.run(a2.size, a2, b2, _ROWS, partial)
    return partial.sum(axis=0)


def _axpby(a2, s, b2, c, rows: bool) -> np.ndarray:
    """``a * s + b * c`` with s, c per output unit (cast to a's dtype)."""
    out = np.empty_like(a2)
    s, c = s.astype(a2.dtype), c.astype(a2.dtype)
    (_rows_axpby if rows else _columns_axpby).run(a2.size, a2, s, b2, c, out)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Weight normalization


def weightnorm_forward(v: np.ndarray, g: np.ndarray, dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two passes over v: the per-unit sums of squares, then ``w = v * (g / norm)``."""
    return _weightnorm_forward(*_checks.check_weightnorm_forward("weightnorm_forward", v, g, dim))


def _weightnorm_forward(v: np.ndarray, g: np.ndarray, dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    v2, rows = _view(v, dim)
    norm = np.sqrt(_dots(v2, v2, rows))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = g / norm
    w2 = _axpby(v2, scale, v2, np.zeros_like(scale), rows)
    return _unview(w2, v.shape, dim, rows), norm.astype(v.dtype)


def weightnorm_backward(dw: np.ndarray, v: np.ndarray, g: np.ndarray, norm: np.ndarray,
                        dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two passes: the per-unit sums of ``dw * v``, then ``dv = dw * s + v * c`` with s, c per unit."""
    return _weightnorm_backward(*_checks.check_weightnorm_backward("weightnorm_backward", dw, v, g, norm, dim))


def _weightnorm_backward(dw: np.ndarray, v: np.ndarray, g: np.ndarray, norm: np.ndarray,
                         dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    v2, rows = _view(v, dim)
    dw2, _ = _view(dw, dim)
    n = norm.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dg = _dots(dw2, v2, rows) / n
        dv2 = _axpby(dw2, g / n, v2, -g * dg / (n * n), rows)
    return _unview(dv2, v.shape, dim, rows), dg.astype(v.dtype)


def weightnorm_affine_forward(x: np.ndarray, v: np.ndarray, g: np.ndarray,
                              b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass over v for the norms and one GEMM with v itself: w is never formed (each unit's scale is applied
    to the (N, out) product, which is far smaller than w)."""
    return _weightnorm_affine_forward(*_checks.check_weightnorm_affine_forward("weightnorm_affine_forward",
                                                                               x, v, g, b))


def _weightnorm_affine_forward(x: np.ndarray, v: np.ndarray, g: np.ndarray,
                               b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    norm = np.sqrt(_dots(v, v, False))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (g / norm).astype(v.dtype)
    t = _matmul(x, v)
    out = t * scale
    out += b
    return out, t, norm.astype(v.dtype)


def weightnorm_affine_backward(dout: np.ndarray, x: np.ndarray, v: np.ndarray, g: np.ndarray, norm: np.ndarray,
                               t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two GEMMs; ``dv = (x.T @ dout) * s + v * c`` block by block of rows, each block rescaled in cache right
    after its product (the product is never written out whole and read back); the sums ``dw . v`` come from the
    (N, out) arrays dout and t instead of a pass over the weights."""
    return _weightnorm_affine_backward(*_checks.check_weightnorm_affine_backward(
        "weightnorm_affine_backward", dout, x, v, g, norm, t))


def _weightnorm_affine_backward(dout: np.ndarray, x: np.ndarray, v: np.ndarray, g: np.ndarray, norm: np.ndarray,
                                t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = norm.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = g / n
        dg = np.einsum("nk,nk->k", dout, t, dtype=np.float64) / n
        c = -g * dg / (n * n)
    dx = _matmul(dout * scale.astype(v.dtype), v.T)
    dv = _matmul_axpby(x.T, dout, scale, v, c)
    return dx, dv, dg.astype(v.dtype), dout.sum(axis=0)


# ---------------------------------------------------------------------------------------------------------------
# Spectral normalization


def _matvec(w2: np.ndarray, x: np.ndarray, rows: bool) -> np.ndarray:
    """``W x`` (float64) for the weight matrix W (units x rest) of the 2-D view w2."""
    if rows:
        return _dots(w2, x.reshape(1, -1), True)
    return _dots(w2, x.reshape(-1, 1), False)


def _rmatvec(w2: np.ndarray, y: np.ndarray, rows: bool) -> np.ndarray:
    """``W^T y`` (float64)."""
    if rows:
        return _dots(w2, y.reshape(-1, 1), False)
    return _dots(w2, y.reshape(1, -1), True)


def _normalized(x: np.ndarray, eps: float) -> np.ndarray:
    return x / max(float(np.sqrt(x @ x)), eps)


def spectralnorm_forward(w: np.ndarray, u: np.ndarray, v: np.ndarray, dim: int = 0, n_power_iterations: int = 1,
                         eps: float = 1e-12, training: bool = True) -> tuple[np.ndarray, np.floating]:
    """Each power iteration is two matrix-vector kernels (float64 sums) on the weight's view; then one pass
    ``w / sigma``."""
    w, dim, n_power_iterations, eps, training = _checks.check_spectralnorm_forward(
        "spectralnorm_forward", w, u, v, dim, n_power_iterations, eps, training)
    return _spectralnorm_forward(w, u, v, dim, n_power_iterations, eps, training)


def _spectralnorm_forward(w: np.ndarray, u: np.ndarray, v: np.ndarray, dim: int = 0, n_power_iterations: int = 1,
                          eps: float = 1e-12, training: bool = True) -> tuple[np.ndarray, np.floating]:
    w2, rows = _view(w, dim)
    if training:
        for _ in range(n_power_iterations):
            u[...] = _normalized(_matvec(w2, v.astype(w.dtype, copy=False), rows), eps)
            v[...] = _normalized(_rmatvec(w2, u.astype(w.dtype, copy=False), rows), eps)
    sigma = float(u.astype(np.float64) @ _matvec(w2, v, rows))
    units = w2.shape[0] if rows else w2.shape[1]
    with np.errstate(divide="ignore"):
        inv = np.full(units, np.float64(1.0) / sigma)
    out = _axpby(w2, inv, w2, np.zeros(units), rows)
    return _unview(out, w.shape, dim, rows), w.dtype.type(sigma)


def spectralnorm_backward(dw: np.ndarray, w: np.ndarray, u: np.ndarray, v: np.ndarray, sigma: float,
                          dim: int = 0) -> np.ndarray:
    """One reduction ``sum(dw * w)`` and one pass ``dw / sigma - c * u v^T``."""
    return _spectralnorm_backward(*_checks.check_spectralnorm_backward("spectralnorm_backward", dw, w, u, v, sigma,
                                                                       dim))


def _spectralnorm_backward(dw: np.ndarray, w: np.ndarray, u: np.ndarray, v: np.ndarray, sigma: float,
                           dim: int = 0) -> np.ndarray:
    w2, rows = _view(w, dim)
    dw2, _ = _view(dw, dim)
    s = np.float64(sigma)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # a tiny sigma: inf, as the twin's
        c = _dots(dw2, w2, rows).sum() / s / s
        t = dw2.dtype.type
        inv, c = t(1.0 / s), t(c)
    u64, v64 = u.astype(np.float64), v.astype(np.float64)
    out = np.empty_like(dw2)
    x, y = (u64, v64) if rows else (v64, u64)
    _outer_update.run(dw2.size, dw2, inv, c, x, y, out)
    return _unview(out, w.shape, dim, rows)

r"""Batch, layer, group and instance normalization as Numba kernels.

Same names, signatures and results as :mod:`fastnn.reference.normalization` (formulas there).

One core serves all four. Every case is a C-contiguous 2-D view ``x2`` of ``x`` in which each statistic covers
either whole rows or whole columns:

=====================================  ========================  ========================================
case                                   view                      statistic of
=====================================  ========================  ========================================
batch norm, H*W >= ``_PLANE_MIN``      (N*C, H*W) "planes"       rows r with r % C == c (over N and H, W)
batch norm (N, D), or small H*W        (N, C*H*W) "columns"      the H*W columns of channel c (over N)
group/instance norm, H*W >= min        (N*G, C/G*H*W) rows       row (n, g); affine per plane (N*C, H*W)
group norm with small H*W, layer norm  (N*G, C/G*H*W) rows       row (n, g); affine per element, (G, M)
=====================================  ========================  ========================================

(layer norm is the G = 1 case of the last line: rows are samples, the affine vector is ``gamma`` itself.) The
kernels are written for these two geometries only:

* **statistics** (:func:`_moments_rows`, :func:`_moments_columns`): per work item (a row tile, or a chunk of rows
  x a block of columns) a mean and a centred sum of squares in one pass over x, with float64 sums of ``x - k``
  and ``(x - k)^2`` shifted by an element ``k`` of the item itself (the shifted-data algorithm, Chan, Golub &
  LeVeque 1983): ``M2 = S2 - S1^2 / n``. A large common mean cancels exactly in ``x - k``; what remains is the
  spread inside one item (<= 8192 or 512 values), so the result is accurate to ~n ulp of float64 even when the
  shift is an outlier (measured: variance within 1e-10 relative for float64 data with 1e6-sized outliers at
  every shift position, float32 statistics exact to rounding). A combine pass merges the items' partial buffers
  with the exact parallel-variance formula :math:`M_2 = \sum_i M_{2,i} + \sum_i n_i(\bar x_i - \bar x)^2`.
  No prange iteration ever adds into an array element another iteration writes.
* **normalize** (:func:`_normalize_rows`, :func:`_normalize_columns`): one pass,
  ``out = (x - centre) * scale + shift`` with per-row (or per-column) coefficients, followed for per-element
  affine rows by ``* gamma + beta``. Batch norm's gamma, beta, mean and inv_std are folded into the three
  coefficients. The centre is the mean rounded to x's dtype and ``shift`` carries the rounding remainder, so
  ``x - centre`` is exact (Sterbenz) for inputs with a large mean where ``x * scale + (beta - mean * scale)``
  would cancel catastrophically in float32.
* **backward sums** (:func:`_grad_sums_rows`, :func:`_grad_sums_columns`, :func:`_grad_sums_rows_affine`): the two
  reductions :math:`\sum dout` and :math:`\sum dout\,(x - \mu)` per row or column in one pass over dout and x;
  the per-element affine case also accumulates dgamma and dbeta into per-chunk buffers.
* **input gradient** (:func:`_grad_rows`, :func:`_grad_columns`): one pass,
  ``dx = dout * a + (x - mean) * v + e`` (``dout * gamma`` for per-element affine rows), the compact formula with
  its per-statistic sums folded into ``a, v, e``.

So a forward reads x twice and writes out once; a backward reads dout and x twice and writes dx once (PyTorch's
CPU batch norm makes one more pass: mean and variance separately).

Precision: sums and sums of squares accumulate in float64 whatever the input dtype (they are reductions of up to
N*H*W terms; float64 costs nothing here because the loops are memory bound and it makes the statistics as good as
the float32 input allows). Coefficients are computed in float64 from those sums and rounded once to x's dtype;
the element-wise passes then run entirely in x's dtype (float32 code for float32 data, checked in the
assembly of both twins: only ``vsubps``/``vfmadd213ps``/``vmulps`` on ymm registers -- LLVM's preferred width
here -- with scalar ``ss`` remainders, and no ``pd`` arithmetic or ``cvtps2pd``).

Parallel twins: every kernel has one ``prange`` loop over work items that own their outputs (row tiles, row
chunks x column blocks). Measured on the 2-core machine (serial vs parallel twin, min of 41 interleaved runs):
the element-wise and row kernels gain from 2**15 - 2**16 elements on (e.g. 2**16: 16 -> 14 us normalize,
19 -> 14 us gradient, 11 -> 8 us moments), the column moments and layer norm's backward sums from 2**17 - 2**18.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import _jit
from .._jit import helper, kernel
from ..reference.normalization import (
    _batchnorm_backward_args,
    _batchnorm_infer_args,
    _batchnorm_train_args,
    _groupnorm_backward_args,
    _groupnorm_forward_args,
    _instancenorm_backward_args,
    _instancenorm_forward_args,
    _layernorm_backward_args,
    _layernorm_forward_args,
)

__all__ = ["batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_backward", "layernorm_forward",
           "layernorm_backward", "groupnorm_forward", "groupnorm_backward", "instancenorm_forward",
           "instancenorm_backward"]

#: Elements of one row tile: the unit of work of the row kernels (32 KiB of float32).
_TILE = 8192
#: Columns of one column work item, and most rows of a column chunk (bounds the span each shift must cover).
_COLS = 2048
_CHUNK_ROWS = 512
#: Shortest H*W handled plane by plane. Shorter planes make the row loops too short to vectorise: batch norm
#: then works on columns (N, C*H*W) and group norm on per-element affine rows.
_PLANE_MIN = 32


# ---------------------------------------------------------------------------------------------------------------
# Loop bodies


@helper
def _span(w, tiles, tile, length):
    """Work item ``w`` of a (rows, ``tiles``) grid: its row, tile index and column span ``[j0, j1)``."""
    r = w // tiles
    t = w - r * tiles
    j0 = t * tile
    return r, t, j0, min(length, j0 + tile)


# Each kernel has one parallel loop; the combine passes after it are small (partials, not data) and run serially
# in the same call rather than paying a second fork/join.
# Inner loops run over 1-D views indexed from 0: LLVM then knows every index is non-negative and drops Numba's
# negative-index wraparound, which otherwise turns the loads into gathers (measured: vgatherqps, 20x slower).


@kernel("normalization")
def _moments_rows(x, tile, pmean, pm2, mean, m2):
    """Mean and centred sum of squares of the rows r with ``r % S == s`` (S = len(mean)) of x (R, J).

    pmean, pm2 (R, T) float64 are per-tile partial buffers, T = ceil(J / tile); mean, m2 (S,) float64 outputs.
    """
    R, J = x.shape
    T = pmean.shape[1]
    for w in prange(R * T):
        r, t, j0, j1 = _span(w, T, tile, J)
        xs = x[r, j0:j1]
        n = xs.shape[0]
        k = np.float64(xs[0])  # shift: an element of the tile
        s1 = 0.0
        s2 = 0.0
        for j in range(n):
            d = np.float64(xs[j]) - k
            s1 += d
            s2 += d * d
        pmean[r, t] = k + s1 / n
        pm2[r, t] = max(s2 - s1 * s1 / n, 0.0)
    S = mean.shape[0]
    for s in range(S):
        total = 0.0
        msum = 0.0
        for r in range(s, R, S):
            for t in range(T):
                cnt = min(J, (t + 1) * tile) - t * tile
                total += cnt
                msum += cnt * pmean[r, t]
        mu = msum / total
        q2 = 0.0
        for r in range(s, R, S):
            for t in range(T):
                cnt = min(J, (t + 1) * tile) - t * tile
                d = pmean[r, t] - mu
                q2 += pm2[r, t] + cnt * d * d
        mean[s] = mu
        m2[s] = q2


@kernel("normalization")
def _moments_columns(x, rows, cols, pmean, pm2, cmean, cm2, mean, m2):
    """Mean and centred sum of squares of the L = J // len(mean) adjacent columns of each channel of x (N, J).

    Work items are blocks of ``rows`` rows x ``cols`` columns; pmean, pm2 (K, J) float64 hold each row chunk's
    per-column partials (K = ceil(N / rows)), cmean, cm2 (J,) float64 the per-column totals. Outputs mean, m2
    (C,) float64.
    """
    N, J = x.shape
    K = pmean.shape[0]
    B = (J + cols - 1) // cols
    for w in prange(K * B):
        k, b, j0, j1 = _span(w, B, cols, J)
        n0 = k * rows
        n1 = min(N, n0 + rows)
        pk = pmean[k, j0:j1]
        qk = pm2[k, j0:j1]
        pk[:] = 0.0
        qk[:] = 0.0
        shift = x[n0, j0:j1]  # per column: an element of the block
        n = n0
        while n + 4 <= n1:  # four rows per sweep: a quarter of the read-modify-writes of pk, qk (measured 2x)
            x0, x1, x2, x3 = x[n, j0:j1], x[n + 1, j0:j1], x[n + 2, j0:j1], x[n + 3, j0:j1]
            for j in range(x0.shape[0]):
                h = np.float64(shift[j])
                d0, d1 = np.float64(x0[j]) - h, np.float64(x1[j]) - h
                d2, d3 = np.float64(x2[j]) - h, np.float64(x3[j]) - h
                pk[j] += (d0 + d1) + (d2 + d3)
                qk[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
            n += 4
        for m in range(n, n1):
            xn = x[m, j0:j1]
            for j in range(xn.shape[0]):
                d = np.float64(xn[j]) - np.float64(shift[j])
                pk[j] += d
                qk[j] += d * d
        cnt = n1 - n0
        for j in range(pk.shape[0]):
            qk[j] = max(qk[j] - pk[j] * pk[j] / cnt, 0.0)
            pk[j] = np.float64(shift[j]) + pk[j] / cnt
    # combine the row chunks column by column ...
    for b in range(B):
        j0 = b * cols
        j1 = min(J, j0 + cols)
        cm = cmean[j0:j1]
        c2 = cm2[j0:j1]
        cm[:] = 0.0
        c2[:] = 0.0
        for k in range(K):
            cnt = min(N, (k + 1) * rows) - k * rows
            pk = pmean[k, j0:j1]
            for j in range(cm.shape[0]):
                cm[j] += cnt * pk[j]
        inv = 1.0 / N
        for j in range(cm.shape[0]):
            cm[j] *= inv
        for k in range(K):
            cnt = min(N, (k + 1) * rows) - k * rows
            pk = pmean[k, j0:j1]
            qk = pm2[k, j0:j1]
            for j in range(cm.shape[0]):
                d = pk[j] - cm[j]
                c2[j] += qk[j] + cnt * d * d
    # ... then the L columns of each channel
    C = mean.shape[0]
    L = J // C
    for c in range(C):
        cm = cmean[c * L:(c + 1) * L]
        c2 = cm2[c * L:(c + 1) * L]
        mu = 0.0
        for l in range(L):
            mu += cm[l]
        mu /= L
        q = 0.0
        for l in range(L):
            d = cm[l] - mu
            q += c2[l] + N * d * d
        mean[c] = mu
        m2[c] = q


@kernel("normalization")
def _normalize_rows(x, tile, cen, scale, shift, g, b, out):
    """``out = (x - cen) * scale + shift`` per row of x (R, J), then ``* g + b`` when g is not empty.

    cen, scale, shift (P,) in x's dtype, row r uses entry r % P; g, b (Q, J) or (0, J), row r uses g[r % Q].
    """
    R, J = x.shape
    T = (J + tile - 1) // tile
    P = cen.shape[0]
    Q = g.shape[0]
    for w in prange(R * T):
        r, t, j0, j1 = _span(w, T, tile, J)
        p = r % P
        c = cen[p]
        s = scale[p]
        h = shift[p]
        xs = x[r, j0:j1]
        os = out[r, j0:j1]
        if Q == 0:
            for j in range(xs.shape[0]):
                os[j] = (xs[j] - c) * s + h
        else:
            gs = g[r % Q, j0:j1]
            bs = b[r % Q, j0:j1]
            for j in range(xs.shape[0]):
                os[j] = ((xs[j] - c) * s + h) * gs[j] + bs[j]


@kernel("normalization")
def _normalize_columns(x, cen, scale, shift, out):
    """``out = (x - cen) * scale + shift`` with per-column coefficients (J,) in x's dtype, x (N, J)."""
    N, J = x.shape
    for n in prange(N):
        xn = x[n]
        on = out[n]
        for j in range(J):
            on[j] = (xn[j] - cen[j]) * scale[j] + shift[j]


@kernel("normalization")
def _grad_sums_rows(dout, x, cen, tile, pp1, pp2, p1, p2):
    """Per row of (R, J): ``p1 = sum(dout)``, ``p2 = sum(dout * (x - cen[r % P]))`` in float64.

    pp1, pp2 (R, T) float64 are per-tile partial buffers; p1, p2 (R,) float64 outputs.
    """
    R, J = x.shape
    T = pp1.shape[1]
    P = cen.shape[0]
    for w in prange(R * T):
        r, t, j0, j1 = _span(w, T, tile, J)
        c = np.float64(cen[r % P])
        ds = dout[r, j0:j1]
        xs = x[r, j0:j1]
        s1 = 0.0
        s2 = 0.0
        for j in range(xs.shape[0]):
            d = np.float64(ds[j])
            s1 += d
            s2 += d * (np.float64(xs[j]) - c)
        pp1[r, t] = s1
        pp2[r, t] = s2
    for r in range(R):
        s1 = 0.0
        s2 = 0.0
        for t in range(T):
            s1 += pp1[r, t]
            s2 += pp2[r, t]
        p1[r] = s1
        p2[r] = s2


@kernel("normalization")
def _grad_sums_columns(dout, x, cen, rows, cols, q1, q2, p1, p2):
    """Per channel (L = J // len(p1) adjacent columns) of (N, J): ``sum(dout)``, ``sum(dout * (x - cen[j]))``.

    q1, q2 (K, J) float64 are per-row-chunk partial buffers (K = ceil(N / rows)); p1, p2 (C,) float64 outputs.
    """
    N, J = x.shape
    K = q1.shape[0]
    B = (J + cols - 1) // cols
    for w in prange(K * B):
        k, b, j0, j1 = _span(w, B, cols, J)
        a1 = q1[k, j0:j1]
        a2 = q2[k, j0:j1]
        cs = cen[j0:j1]
        a1[:] = 0.0
        a2[:] = 0.0
        n = k * rows
        n1 = min(N, n + rows)
        while n + 4 <= n1:  # four rows per sweep, as in _moments_columns
            d0, d1, d2, d3 = dout[n, j0:j1], dout[n + 1, j0:j1], dout[n + 2, j0:j1], dout[n + 3, j0:j1]
            x0, x1, x2, x3 = x[n, j0:j1], x[n + 1, j0:j1], x[n + 2, j0:j1], x[n + 3, j0:j1]
            for j in range(x0.shape[0]):
                c = np.float64(cs[j])
                e0, e1, e2, e3 = np.float64(d0[j]), np.float64(d1[j]), np.float64(d2[j]), np.float64(d3[j])
                a1[j] += (e0 + e1) + (e2 + e3)
                a2[j] += ((e0 * (np.float64(x0[j]) - c) + e1 * (np.float64(x1[j]) - c))
                          + (e2 * (np.float64(x2[j]) - c) + e3 * (np.float64(x3[j]) - c)))
            n += 4
        for m in range(n, n1):
            ds = dout[m, j0:j1]
            xs = x[m, j0:j1]
            for j in range(xs.shape[0]):
                d = np.float64(ds[j])
                a1[j] += d
                a2[j] += d * (np.float64(xs[j]) - np.float64(cs[j]))
    for b in range(B):
        j0 = b * cols
        j1 = min(J, j0 + cols)
        a1 = q1[0, j0:j1]
        a2 = q2[0, j0:j1]
        for k in range(1, K):
            b1 = q1[k, j0:j1]
            b2 = q2[k, j0:j1]
            for j in range(a1.shape[0]):
                a1[j] += b1[j]
                a2[j] += b2[j]
    C = p1.shape[0]
    L = J // C
    for c in range(C):
        s1 = 0.0
        s2 = 0.0
        for l in range(c * L, (c + 1) * L):
            s1 += q1[0, l]
            s2 += q2[0, l]
        p1[c] = s1
        p2[c] = s2


@kernel("normalization")
def _grad_sums_rows_affine(dout, x, cen, istd, g, rows, tile, q1, q2, r1, r2, dgamma, dbeta):
    """Rows of (R, J) with a per-element affine g (Q, J) (row r uses g[r % Q], cen/istd[r % P]):

    ``r1 = sum(g * dout)``, ``r2 = sum(g * dout * (x - cen))`` per row, and per element of g
    ``dbeta = sum(dout)``, ``dgamma = sum(dout * (x - cen) * istd)`` over the rows that use it. q1, q2 (K, Q, J)
    float64 are per-row-chunk partials (K = ceil(R / rows)); r1, r2 (R,) and dgamma, dbeta (Q, J) float64 outputs.
    """
    R, J = x.shape
    K = q1.shape[0]
    Q = q1.shape[1]
    P = cen.shape[0]
    for k in prange(K):
        q1[k] = 0.0
        q2[k] = 0.0
        for r in range(k * rows, min(R, k * rows + rows)):
            q = r % Q
            c = np.float64(cen[r % P])
            s = np.float64(istd[r % P])
            a1 = q1[k, q]
            a2 = q2[k, q]
            gs = g[q]
            ds = dout[r]
            xs = x[r]
            s1 = 0.0
            s2 = 0.0
            for j in range(J):
                d = np.float64(ds[j])
                xc = np.float64(xs[j]) - c
                gd = np.float64(gs[j]) * d
                s1 += gd
                s2 += gd * xc
                a1[j] += d
                a2[j] += d * xc * s
            r1[r] = s1
            r2[r] = s2
    B = (J + tile - 1) // tile
    for w in range(Q * B):
        q, b, j0, j1 = _span(w, B, tile, J)
        o1 = dbeta[q, j0:j1]
        o2 = dgamma[q, j0:j1]
        o1[:] = q1[0, q, j0:j1]
        o2[:] = q2[0, q, j0:j1]
        for k in range(1, K):
            a1 = q1[k, q, j0:j1]
            a2 = q2[k, q, j0:j1]
            for j in range(o1.shape[0]):
                o1[j] += a1[j]
                o2[j] += a2[j]


@kernel("normalization")
def _grad_rows(dout, x, tile, cen, a, v, e, g, dx):
    """``dx = dout * a + (x - cen) * v + e`` per row of (R, J) (``dout * g[r % Q]`` when g is not empty).

    cen, a, v, e (P,) in x's dtype, row r uses entry r % P.
    """
    R, J = x.shape
    T = (J + tile - 1) // tile
    P = cen.shape[0]
    Q = g.shape[0]
    for w in prange(R * T):
        r, t, j0, j1 = _span(w, T, tile, J)
        p = r % P
        c = cen[p]
        aa = a[p]
        vv = v[p]
        ee = e[p]
        ds = dout[r, j0:j1]
        xs = x[r, j0:j1]
        os = dx[r, j0:j1]
        if Q == 0:
            for j in range(xs.shape[0]):
                os[j] = ds[j] * aa + ((xs[j] - c) * vv + ee)
        else:
            gs = g[r % Q, j0:j1]
            for j in range(xs.shape[0]):
                os[j] = (ds[j] * gs[j]) * aa + ((xs[j] - c) * vv + ee)


@kernel("normalization")
def _grad_columns(dout, x, cen, a, v, e, dx):
    """``dx = dout * a + (x - cen) * v + e`` with per-column coefficients (J,) in x's dtype, x (N, J)."""
    N, J = x.shape
    for n in prange(N):
        ds = dout[n]
        xs = x[n]
        os = dx[n]
        for j in range(J):
            os[j] = ds[j] * a[j] + ((xs[j] - cen[j]) * v[j] + e[j])


# ---------------------------------------------------------------------------------------------------------------
# The core: statistics, normalize, backward sums and input gradient on a 2-D view


_NO_AFFINE = {np.dtype(np.float32): np.empty((0, 1), np.float32), np.dtype(np.float64): np.empty((0, 1))}


def _column_grid(N: int, J: int) -> tuple[int, int, int]:
    """Rows and columns of one column work item, and the number of row chunks K.

    Column blocks of up to _COLS; row chunks just fine enough to give every thread two items (fewer chunks mean
    smaller partial buffers to combine), and at most _CHUNK_ROWS rows.
    """
    cols = min(J, _COLS)
    B = -(-J // cols)
    chunks = -(-2 * _jit.get_num_threads() // B)
    rows = min(_CHUNK_ROWS, max(1, -(-N // chunks)))
    return rows, cols, -(-N // rows)


def _row_moments(x2: np.ndarray, stats: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance (float64, (stats,)) of the rows r with r % stats == s of x2 (R, J)."""
    R, J = x2.shape
    T = -(-J // _TILE)
    pmean, pm2 = np.empty((R, T)), np.empty((R, T))
    mean, m2 = np.empty(stats), np.empty(stats)
    _moments_rows.run(x2.size, x2, _TILE, pmean, pm2, mean, m2)
    return mean, m2 / (R // stats * J)


def _column_moments(x2: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance (float64, (channels,)) over the rows and each channel's columns of x2 (N, J)."""
    N, J = x2.shape
    rows, cols, K = _column_grid(N, J)
    pmean, pm2 = np.empty((K, J)), np.empty((K, J))
    mean, m2 = np.empty(channels), np.empty(channels)
    _moments_columns.run(x2.size, x2, rows, cols, pmean, pm2, np.empty(J), np.empty(J), mean, m2)
    return mean, m2 / x2.size * channels


def _coefficients(dtype: np.dtype, *arrays: np.ndarray) -> list[np.ndarray]:
    """Float64 coefficient vectors rounded once to the data's dtype, contiguous."""
    return [np.ascontiguousarray(a, dtype=dtype).reshape(-1) for a in arrays]


def _centre_scale_shift(mean, scale, shift, dtype):
    """Coefficients of ``(x - centre) * scale + shift`` equal to ``(x - mean) * scale + shift`` for a float64 mean.

    The centre is the mean rounded to ``dtype``; the rounding remainder moves into the shift (float64 math).
    """
    centre = mean.astype(dtype)
    return _coefficients(dtype, centre, scale, shift - (mean - centre) * scale)


def _normalize(x2: np.ndarray, coef: list[np.ndarray], g: np.ndarray | None = None, b: np.ndarray | None = None,
               *, columns: bool = False) -> np.ndarray:
    """One pass ``(x2 - centre) * scale + shift`` (coef = [centre, scale, shift]) then ``* g + b`` if given."""
    out = np.empty_like(x2)
    if columns:
        _normalize_columns.run(x2.size, x2, *coef, out)
    else:
        empty = _NO_AFFINE[x2.dtype]
        _normalize_rows.run(x2.size, x2, _TILE, *coef, empty if g is None else g, empty if b is None else b, out)
    return out


def _row_grad_sums(dout2: np.ndarray, x2: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, float64: sum(dout) and sum(dout * (x - centre[r % P]))."""
    R, J = x2.shape
    T = -(-J // _TILE)
    pp1, pp2 = np.empty((R, T)), np.empty((R, T))
    p1, p2 = np.empty(R), np.empty(R)
    _grad_sums_rows.run(x2.size, dout2, x2, centre, _TILE, pp1, pp2, p1, p2)
    return p1, p2


def _column_grad_sums(dout2, x2, centre, channels) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of (N, channels * L) columns, float64: sum(dout) and sum(dout * (x - centre[j]))."""
    N, J = x2.shape
    rows, cols, K = _column_grid(N, J)
    q1, q2 = np.empty((K, J)), np.empty((K, J))
    p1, p2 = np.empty(channels), np.empty(channels)
    _grad_sums_columns.run(x2.size, dout2, x2, centre, rows, cols, q1, q2, p1, p2)
    return p1, p2


def _input_grad(dout2, x2, centre, a, v, e, g=None, *, columns: bool = False) -> np.ndarray:
    """One pass ``dx = dout * a + (x - centre) * v + e`` (``dout * g`` per element when g is given)."""
    dx = np.empty_like(x2)
    a, v, e = _coefficients(x2.dtype, a, v, e)
    if columns:
        _grad_columns.run(x2.size, dout2, x2, centre, a, v, e, dx)
    else:
        _grad_rows.run(x2.size, dout2, x2, _TILE, centre, a, v, e, _NO_AFFINE[x2.dtype] if g is None else g, dx)
    return dx


def _affine_rows_forward(x2: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float):
    """Normalize each row of x2 (R, M) and apply the per-element affine g, b (Q, M) (row r uses g[r % Q])."""
    mean, var = _row_moments(x2, x2.shape[0])
    inv_std = 1.0 / np.sqrt(var + eps)
    out = _normalize(x2, _centre_scale_shift(mean, inv_std, 0.0, x2.dtype), g, b)
    return out, mean.astype(x2.dtype), inv_std.astype(x2.dtype)


def _affine_rows_backward(dout2, x2, g, mean, inv_std):
    """Gradients of :func:`_affine_rows_forward`: dx2 and the float64 (Q, M) sums dgamma, dbeta."""
    R, M = x2.shape
    Q = g.shape[0]
    rows = max(1, -(-R // (2 * _jit.get_num_threads())))
    K = -(-R // rows)
    q1, q2 = np.empty((K, Q, M)), np.empty((K, Q, M))
    r1, r2 = np.empty(R), np.empty(R)
    dgamma, dbeta = np.empty((Q, M)), np.empty((Q, M))
    _grad_sums_rows_affine.run(x2.size, dout2, x2, mean, inv_std, g, rows, _TILE, q1, q2, r1, r2, dgamma, dbeta)
    istd = inv_std.astype(np.float64)
    dx = _input_grad(dout2, x2, mean, istd, -istd**3 * r2 / M, -istd * r1 / M, g)
    return dx, dgamma, dbeta


def _flat2(a: np.ndarray, rows: int) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(rows, -1)


# ---------------------------------------------------------------------------------------------------------------
# Batch normalization


def _channels(x: np.ndarray) -> tuple[int, int, int]:
    """N, C and the plane size L (H*W, or 1 for (N, D) input)."""
    N, C = x.shape[:2]
    return N, C, x.size // (N * C) if N else int(np.prod(x.shape[2:]))


def _batch_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    N, C, L = _channels(x)
    if L >= _PLANE_MIN:
        return _row_moments(_flat2(x, N * C), C)
    return _column_moments(_flat2(x, N), C)


def _batch_normalize(x, mean, inv_std, gamma, beta) -> np.ndarray:
    """``gamma * (x - mean) * inv_std + beta`` per channel, as one scale-and-shift pass (mean, inv_std float64)."""
    N, C, L = _channels(x)
    scale = gamma.astype(np.float64) * inv_std
    coef = _centre_scale_shift(mean, scale, beta.astype(np.float64), x.dtype)
    if L >= _PLANE_MIN:
        return _normalize(_flat2(x, N * C), coef).reshape(x.shape)
    coef = [np.repeat(c, L) for c in coef] if L > 1 else coef
    return _normalize(_flat2(x, N), coef, columns=True).reshape(x.shape)


def batchnorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                            running_var: np.ndarray, momentum: float = 0.9,
                            eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch normalization with batch statistics; updates the running statistics in place.

    Parameters
    ----------
    x : array_like (N, D) or (N, C, H, W), N >= 1
        Statistics per feature D over N, or per channel C over N, H, W.
    gamma, beta : array_like (D,) or (C,)
    running_mean, running_var : ndarray (D,) or (C,), float32 or float64, writeable
        Updated in place: ``running = momentum * running + (1 - momentum) * batch`` (biased batch variance).
    momentum : float in [0, 1]
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape
    mean, inv_std : ndarray (D,) or (C,)
        In the common float dtype of x, gamma and beta.
    """
    x, gamma, beta, momentum, eps = _batchnorm_train_args(x, gamma, beta, running_mean, running_var, momentum, eps)
    x = np.ascontiguousarray(x)
    mean, var = _batch_moments(x)
    inv_std = 1.0 / np.sqrt(var + eps)
    out = _batch_normalize(x, mean, inv_std, gamma, beta)
    mean, var = mean.astype(x.dtype), var.astype(x.dtype)
    running_mean[...] = momentum * running_mean + (1 - momentum) * mean
    running_var[...] = momentum * running_var + (1 - momentum) * var
    return out, mean, inv_std.astype(x.dtype)


def batchnorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                            running_var: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Batch normalization with the running statistics (inference).

    Parameters
    ----------
    x : array_like (N, D) or (N, C, H, W)
    gamma, beta, running_mean, running_var : array_like (D,) or (C,)
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape, the common float dtype of all five arrays
    """
    x, gamma, beta, running_mean, running_var, eps = _batchnorm_infer_args(x, gamma, beta, running_mean,
                                                                           running_var, eps)
    if x.size == 0:
        return np.empty(x.shape, x.dtype)
    x = np.ascontiguousarray(x)
    inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    return _batch_normalize(x, running_mean.astype(np.float64), inv_std, gamma, beta)


def batchnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                       inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`batchnorm_forward_train`.

    Parameters
    ----------
    dout, x : array_like (N, D) or (N, C, H, W), N >= 1
    gamma, mean, inv_std : array_like (D,) or (C,)
        ``mean`` and ``inv_std`` as returned by the forward pass.

    Returns
    -------
    dx : ndarray, x's shape
    dgamma, dbeta : ndarray (D,) or (C,)
        In the common float dtype of the inputs.
    """
    dout, x, gamma, mean, inv_std = _batchnorm_backward_args(dout, x, gamma, mean, inv_std)
    N, C, L = _channels(x)
    mean = np.ascontiguousarray(mean)
    planes = L >= _PLANE_MIN
    if planes:
        dout2, x2 = _flat2(dout, N * C), _flat2(x, N * C)
        p1, p2 = _row_grad_sums(dout2, x2, mean)
        p1, p2 = p1.reshape(N, C).sum(axis=0), p2.reshape(N, C).sum(axis=0)
    else:
        dout2, x2 = _flat2(dout, N), _flat2(x, N)
        centre = np.repeat(mean, L) if L > 1 else mean
        p1, p2 = _column_grad_sums(dout2, x2, centre, C)
    M = N * L
    istd = inv_std.astype(np.float64)
    a = gamma.astype(np.float64) * istd
    v, e = -a * istd * istd * p2 / M, -a * p1 / M
    if planes:
        dx = _input_grad(dout2, x2, mean, a, v, e)
    else:
        a, v, e = (np.repeat(c, L) for c in (a, v, e)) if L > 1 else (a, v, e)
        dx = _input_grad(dout2, x2, centre, a, v, e, columns=True)
    return dx.reshape(x.shape), (p2 * istd).astype(x.dtype), p1.astype(x.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Layer normalization


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                      eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer normalization: each sample over all its non-batch axes.

    Parameters
    ----------
    x : array_like (N, ...), at least 2-D
    gamma, beta : array_like of shape x.shape[1:]
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape
    mean, inv_std : ndarray (N,)
        In the common float dtype of x, gamma and beta.
    """
    x, gamma, beta, eps = _layernorm_forward_args(x, gamma, beta, eps)
    N = x.shape[0]
    if N == 0:
        return np.empty(x.shape, x.dtype), np.empty(0, x.dtype), np.empty(0, x.dtype)
    out, mean, inv_std = _affine_rows_forward(_flat2(x, N), _flat2(gamma, 1), _flat2(beta, 1), eps)
    return out.reshape(x.shape), mean, inv_std


def layernorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                       inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`layernorm_forward`.

    Parameters
    ----------
    dout, x : array_like (N, ...)
    gamma : array_like of shape x.shape[1:]
    mean, inv_std : array_like (N,), as returned by the forward pass

    Returns
    -------
    dx : ndarray, x's shape
    dgamma, dbeta : ndarray of shape x.shape[1:]
    """
    dout, x, gamma, mean, inv_std = _layernorm_backward_args(dout, x, gamma, mean, inv_std)
    N = x.shape[0]
    if N == 0:
        return np.empty(x.shape, x.dtype), np.zeros(gamma.shape, x.dtype), np.zeros(gamma.shape, x.dtype)
    dx, dgamma, dbeta = _affine_rows_backward(_flat2(dout, N), _flat2(x, N), _flat2(gamma, 1),
                                              np.ascontiguousarray(mean), np.ascontiguousarray(inv_std))
    return dx.reshape(x.shape), dgamma.reshape(gamma.shape).astype(x.dtype), dbeta.reshape(gamma.shape).astype(
        x.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Group and instance normalization


def _group_forward(x, gamma, beta, G, eps):
    N, C, L = _channels(x)
    if N == 0:
        return np.empty(x.shape, x.dtype), np.empty((0, G), x.dtype), np.empty((0, G), x.dtype)
    cpg = C // G
    x2 = _flat2(x, N * G)
    if L < _PLANE_MIN:
        # short planes: per-element affine rows, gamma and beta spread over each group's elements
        g, b = (np.repeat(v, L).reshape(G, cpg * L) for v in (gamma, beta))
        out, mean, inv_std = _affine_rows_forward(x2, g, b, eps)
        return out.reshape(x.shape), mean.reshape(N, G), inv_std.reshape(N, G)
    mean, var = _row_moments(x2, N * G)
    inv_std = 1.0 / np.sqrt(var + eps)
    # per (n, c) plane coefficients: the group's statistics with the channel's gamma and beta
    scale = np.repeat(inv_std.reshape(N, G), cpg, axis=1) * gamma.astype(np.float64)
    shift = np.broadcast_to(beta.astype(np.float64), (N, C))
    coef = _centre_scale_shift(np.repeat(mean.reshape(N, G), cpg, axis=1), scale, shift, x.dtype)
    out = _normalize(_flat2(x, N * C), coef).reshape(x.shape)
    return out, mean.reshape(N, G).astype(x.dtype), inv_std.reshape(N, G).astype(x.dtype)


def _group_backward(dout, x, gamma, G, mean, inv_std):
    N, C, L = _channels(x)
    if N == 0:
        return np.empty(x.shape, x.dtype), np.zeros(C, x.dtype), np.zeros(C, x.dtype)
    cpg = C // G
    mean = np.ascontiguousarray(mean).reshape(-1)
    if L < _PLANE_MIN:
        g = np.repeat(gamma, L).reshape(G, cpg * L)
        dx, dgamma, dbeta = _affine_rows_backward(_flat2(dout, N * G), _flat2(x, N * G), g, mean,
                                                  np.ascontiguousarray(inv_std).reshape(-1))
        return (dx.reshape(x.shape), dgamma.reshape(C, L).sum(axis=1).astype(x.dtype),
                dbeta.reshape(C, L).sum(axis=1).astype(x.dtype))
    dout2, x2 = _flat2(dout, N * C), _flat2(x, N * C)
    centre = np.repeat(mean, cpg)
    p1, p2 = (p.reshape(N, G, cpg) for p in _row_grad_sums(dout2, x2, centre))
    istd = inv_std.astype(np.float64).reshape(N, G, 1)
    gam = gamma.astype(np.float64).reshape(1, G, cpg)
    M = cpg * L
    # per group: sum(dxhat) = sum_c gamma_c p1, sum(dxhat (x - mean)) = sum_c gamma_c p2
    s1, s2 = (gam * p1).sum(axis=2, keepdims=True), (gam * p2).sum(axis=2, keepdims=True)
    a = np.broadcast_to(istd * gam, (N, G, cpg))
    v = np.broadcast_to(-istd**3 * s2 / M, (N, G, cpg))
    e = np.broadcast_to(-istd * s1 / M, (N, G, cpg))
    dx = _input_grad(dout2, x2, centre, a, v, e).reshape(x.shape)
    dgamma = (p2 * istd).sum(axis=0).reshape(C)
    return dx, dgamma.astype(x.dtype), p1.sum(axis=0).reshape(C).astype(x.dtype)


def groupnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int,
                      eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group normalization: per sample, over each group of C/G channels and H, W.

    Parameters
    ----------
    x : array_like (N, C, H, W)
    gamma, beta : array_like (C,)
    groups : int G >= 1 dividing C
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape
    mean, inv_std : ndarray (N, G)
    """
    x, gamma, beta, groups, eps = _groupnorm_forward_args(x, gamma, beta, groups, eps)
    return _group_forward(x, gamma, beta, groups, eps)


def groupnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, groups: int, mean: np.ndarray,
                       inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`groupnorm_forward`.

    Parameters
    ----------
    dout, x : array_like (N, C, H, W)
    gamma : array_like (C,)
    groups : int G dividing C
    mean, inv_std : array_like (N, G), as returned by the forward pass

    Returns
    -------
    dx : ndarray, x's shape
    dgamma, dbeta : ndarray (C,)
    """
    dout, x, gamma, groups, mean, inv_std = _groupnorm_backward_args(dout, x, gamma, groups, mean, inv_std)
    return _group_backward(dout, x, gamma, groups, mean, inv_std)


def instancenorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                         eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance normalization: group normalization with one channel per group.

    Parameters
    ----------
    x : array_like (N, C, H, W)
    gamma, beta : array_like (C,)
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape
    mean, inv_std : ndarray (N, C)
    """
    x, gamma, beta, eps = _instancenorm_forward_args(x, gamma, beta, eps)
    return _group_forward(x, gamma, beta, x.shape[1], eps)


def instancenorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                          inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`instancenorm_forward`.

    Parameters
    ----------
    dout, x : array_like (N, C, H, W)
    gamma : array_like (C,)
    mean, inv_std : array_like (N, C), as returned by the forward pass

    Returns
    -------
    dx : ndarray, x's shape
    dgamma, dbeta : ndarray (C,)
    """
    dout, x, gamma, mean, inv_std = _instancenorm_backward_args(dout, x, gamma, mean, inv_std)
    return _group_backward(dout, x, gamma, x.shape[1], mean, inv_std)

r"""Batch, layer, group and instance normalization as Numba kernels.

Same names, signatures and results as :mod:`fastnn.reference.normalization` (formulas there).

One core serves all four: every case is a C-contiguous 2-D view of ``x`` in which a statistic covers whole rows
or whole columns, and a handful of span formulas (:func:`_span_moments`, :func:`_span_scale_shift`,
:func:`_span_grad_sums`, :func:`_span_grad`) written once are applied along the contiguous axis:

==========================================  =====================  ============================================
case                                        view                   statistic of
==========================================  =====================  ============================================
batch norm, H*W >= ``_PLANE_MIN``           (N*C, H*W) planes      the N rows r with r % C == c
batch norm (N, D), or shorter planes        (N, C*H*W) columns     the H*W adjacent columns of channel c
group / instance norm                       (N*G, C/G*H*W) rows    one row (n, g); gamma per plane, or per
                                                                   element for planes shorter than _PLANE_MIN
layer norm                                  (N, F) rows            one row; gamma per element (G = 1)
==========================================  =====================  ============================================

* **statistics**: per work item (a row tile, or a chunk of rows x a block of columns) a mean and a centred sum
  of squares in one pass over x, with float64 sums of ``x - k`` and ``(x - k)^2`` shifted by an element ``k``
  of the item itself (the shifted-data algorithm, Chan, Golub & LeVeque 1983): ``M2 = S2 - S1^2 / n``. A large
  common mean cancels exactly in ``x - k``; what remains is the spread inside one item (<= 8192 or 512 values),
  so the result is accurate to ~n ulp of float64 even when the shift is an outlier (measured: variance within
  1e-10 relative for float64 data with 1e6-sized outliers at every shift position; float32 statistics exact to
  rounding). Items are merged with the exact parallel-variance formula
  :math:`M_2 = \sum_i M_{2,i} + \sum_i n_i(\bar x_i - \bar x)^2`.
* **normalize**: one pass ``out = (x - centre) * scale + shift`` (then ``* gamma + beta`` for per-element
  gamma). gamma, beta, mean and inv_std are folded into the three coefficients. The centre is the mean rounded to
  x's dtype and ``shift`` carries the rounding remainder, so ``x - centre`` is exact (Sterbenz) for data with a
  large mean, where the folded ``x * scale + (beta - mean * scale)`` would cancel catastrophically in float32.
* **backward**: the two reductions :math:`\sum dout` and :math:`\sum dout\,(x - \mu)` per plane, column or row,
  then one pass ``dx = dout * a + (x - mean) * v + e``, the compact formula with the sums folded into a, v, e.

Batch norm needs every sample before it can normalize one, so it runs statistics and normalize (sums and
gradient) as two kernels: a forward reads x twice and writes out once, a backward reads dout and x twice and
writes dx once (PyTorch's CPU batch norm makes one more pass: mean and variance separately). Layer, group and
instance norm finish each row while it is in cache (:func:`_rows_forward_planes`, :func:`_rows_backward_planes`
and their per-element twins): x and dout are read from memory once.

No prange iteration ever adds into an array element another iteration writes: reductions across work items go
through per-item partial buffers and a combine pass (dgamma and dbeta of the per-sample norms through per-chunk
buffers for per-element gamma, per-row plane sums for per-plane gamma).

Precision: sums and sums of squares accumulate in float64 whatever the input dtype (reductions of up to N*H*W
terms; the loops are memory bound, so float64 costs little, and it makes the statistics as good as the float32
input allows). Coefficients are computed in float64 from those sums and rounded once to x's dtype; the
element-wise passes then run entirely in x's dtype. Checked for float32 on both twins of every element-wise
loop: ``inspect_types`` types every temporary float32, and the assembly has only packed-single arithmetic
(``vsubps``, ``vmulps``, ``vfmadd*ps`` on ymm registers -- LLVM's preferred width on this CPU -- with scalar ``ss``
remainders), no ``cvtps2pd`` and no gathers; the ``pd`` instructions in the same functions are the float64
reduction loops.

Parallel twins: every kernel has one ``prange`` loop over work items that own their outputs (row tiles, rows,
row chunks x column blocks). Measured on the 2-core machine (serial vs parallel twin, min of 31-41 interleaved
runs, work = x.size): the batch-norm reductions gain from 2**14 - 2**15 elements, the element-wise passes from
2**16 - 2**17 (2**17: 23 -> 17 us normalize, 39 -> 22 us gradient), the column moments from 2**18, the fused
per-sample kernels from 2**13 - 2**14. Below those sizes the parallel twin costs at most a few microseconds more.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import _checks, _jit
from .._jit import helper, kernel

__all__ = ["batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_backward", "layernorm_forward",
           "layernorm_backward", "groupnorm_forward", "groupnorm_backward", "instancenorm_forward",
           "instancenorm_backward", "batchrenorm_forward_train", "batchrenorm_forward_infer", "batchrenorm_backward"]

#: Elements of one row tile: the unit of work of the batch-norm row kernels (32 KiB of float32), and the longest
#: span one shift covers in the moments.
_TILE = 8192
#: Columns of one column work item, and most rows of a column chunk (bounds the span each shift must cover).
_COLS = 2048
_CHUNK_ROWS = 512
#: Shortest H*W handled plane by plane. Shorter planes make the per-plane loops too short to pay for themselves:
#: batch norm then works on columns (N, C*H*W) and group norm spreads gamma over each element. Measured (one
#: thread, forward + backward, short-plane path vs plane path): batch norm (64, 64, 8, 8) 345 vs 535 us,
#: (32, 64, 12, 12) 520 vs 395 us; group norm G=32 (64, 256, 4, 4) 426 vs 1083 us, (64, 64, 8, 8) 519 vs 507 us,
#: (8, 64, 32, 32) 918 vs 441 us.
_PLANE_MIN = 128


# ---------------------------------------------------------------------------------------------------------------
# Formulas on one contiguous span, written once and called by every kernel


@helper
def _span_moments(xs):
    """Mean and centred sum of squares (float64) of the 1-D span ``xs``, in one pass.

    Sums of ``x - k`` and ``(x - k)^2`` with the shift ``k`` an element of the span (Chan, Golub & LeVeque):
    ``M2 = S2 - S1^2 / n``.
    """
    n = xs.shape[0]
    k = np.float64(xs[0])
    s1 = 0.0
    s2 = 0.0
    for j in range(n):
        d = np.float64(xs[j]) - k
        s1 += d
        s2 += d * d
    m2 = s2 - s1 * s1 / n
    return k + s1 / n, 0.0 if m2 < 0.0 else m2  # rounding can leave -0.x ulp; NaN passes (max() would drop it)


@helper
def _span_sum(xs):
    """``sum(xs)`` in float64, unshifted: the mean of a span holding +-inf is then +-inf (NaN for both signs), as
    in NumPy, where a shift by an infinite element would give inf - inf. Only called when a shifted mean is NaN."""
    acc = 0.0
    for j in range(xs.shape[0]):
        acc += xs[j]
    return acc


@helper
def _span_scale_shift(xs, c, s, h, out):
    """``out = (xs - c) * s + h`` (all in xs's dtype)."""
    for j in range(xs.shape[0]):
        out[j] = (xs[j] - c) * s + h


@helper
def _span_grad_sums(ds, xs, c):
    """``sum(ds)`` and ``sum(ds * (xs - c))`` in float64 (``c`` float64)."""
    s1 = 0.0
    s2 = 0.0
    for j in range(xs.shape[0]):
        d = np.float64(ds[j])
        s1 += d
        s2 += d * (np.float64(xs[j]) - c)
    return s1, s2


@helper
def _span_grad(ds, xs, c, a, v, e, dx):
    """``dx = ds * a + (xs - c) * v + e`` (all in xs's dtype)."""
    for j in range(xs.shape[0]):
        dx[j] = ds[j] * a + ((xs[j] - c) * v + e)


@helper
def _span(w, tiles, tile, length):
    """Work item ``w`` of a (rows, ``tiles``) grid: its row, tile index and column span ``[j0, j1)``."""
    r = w // tiles
    t = w - r * tiles
    j0 = t * tile
    return r, t, j0, min(length, j0 + tile)


# ---------------------------------------------------------------------------------------------------------------
# Batch normalization loop bodies: statistics over rows (planes) or columns, then one pass each way.
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
        pmean[r, t], pm2[r, t] = _span_moments(x[r, j0:j1])
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
        if mu != mu:  # NaN: a NaN or an infinity in the data (see _span_sum)
            mu = 0.0
            for r in range(s, R, S):
                mu += _span_sum(x[r])
            mu /= total
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

    Work items are chunks of ``rows`` rows x blocks of ``cols`` columns; pmean, pm2 (K, J) float64 hold each row
    chunk's per-column partials (K = ceil(N / rows)), cmean, cm2 (J,) float64 the per-column totals. Outputs
    mean, m2 (C,) float64. Each column of a chunk is shifted by its value in the chunk's first row.
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
        shift = x[n0, j0:j1]
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
            q = qk[j] - pk[j] * pk[j] / cnt
            qk[j] = 0.0 if q < 0.0 else q
            pk[j] = np.float64(shift[j]) + pk[j] / cnt
    # combine the row chunks column by column ...
    cmean[:] = 0.0
    cm2[:] = 0.0
    for k in range(K):
        cnt = min(N, (k + 1) * rows) - k * rows
        pk = pmean[k]
        for j in range(J):
            cmean[j] += cnt * pk[j]
    inv = 1.0 / N
    for j in range(J):
        cmean[j] *= inv
    for k in range(K):
        cnt = min(N, (k + 1) * rows) - k * rows
        pk = pmean[k]
        qk = pm2[k]
        for j in range(J):
            d = pk[j] - cmean[j]
            cm2[j] += qk[j] + cnt * d * d
    # ... then the L columns of each channel
    C = mean.shape[0]
    L = J // C
    for c in range(C):  # indices, not views: C may be thousands of one-column channels
        j0 = c * L
        mu = 0.0
        for j in range(j0, j0 + L):
            mu += cmean[j]
        mu /= L
        if mu != mu:  # NaN: a NaN or an infinity in the data (see _span_sum)
            mu = 0.0
            for n in range(N):
                mu += _span_sum(x[n, j0:j0 + L])
            mu /= N * L
        q = 0.0
        for j in range(j0, j0 + L):
            d = cmean[j] - mu
            q += cm2[j] + N * d * d
        mean[c] = mu
        m2[c] = q


@kernel("normalization")
def _normalize_rows(x, tile, cen, scale, shift, out):
    """``out = (x - cen) * scale + shift`` per row of x (R, J); cen, scale, shift (P,) in x's dtype, row r uses
    entry r % P."""
    R, J = x.shape
    T = (J + tile - 1) // tile
    P = cen.shape[0]
    for w in prange(R * T):
        r, t, j0, j1 = _span(w, T, tile, J)
        p = r % P
        _span_scale_shift(x[r, j0:j1], cen[p], scale[p], shift[p], out[r, j0:j1])


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
        pp1[r, t], pp2[r, t] = _span_grad_sums(dout[r, j0:j1], x[r, j0:j1], np.float64(cen[r % P]))
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
    a1 = q1[0]
    a2 = q2[0]
    for k in range(1, K):
        b1 = q1[k]
        b2 = q2[k]
        for j in range(J):
            a1[j] += b1[j]
            a2[j] += b2[j]
    C = p1.shape[0]
    L = J // C
    for c in range(C):
        s1 = 0.0
        s2 = 0.0
        for l in range(c * L, (c + 1) * L):
            s1 += a1[l]
            s2 += a2[l]
        p1[c] = s1
        p2[c] = s2


@kernel("normalization")
def _grad_rows(dout, x, tile, cen, a, v, e, dx):
    """``dx = dout * a + (x - cen) * v + e`` per row of (R, J); cen, a, v, e (P,) in x's dtype, row r uses entry
    r % P."""
    R, J = x.shape
    T = (J + tile - 1) // tile
    P = cen.shape[0]
    for w in prange(R * T):
        r, t, j0, j1 = _span(w, T, tile, J)
        p = r % P
        _span_grad(dout[r, j0:j1], x[r, j0:j1], cen[p], a[p], v[p], e[p], dx[r, j0:j1])


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
# Per-sample normalization (layer, group, instance) loop bodies: a statistic covers one contiguous row, so each
# row is finished while it is in cache -- statistics then output in the forward, the two sums then dx in the
# backward -- and x, dout are read from memory once.
#
# Row r of x (R, M) uses affine row q = r % Q of g, b: one value per element (g (Q, M): layer norm, group norm on
# short planes) or one per plane of L elements (g (Q, M / L): group and instance norm). The two are separate
# kernels: with both loops behind a branch in one body, LLVM compiled the per-element loop 1.8x slower
# (measured: 186 vs 104 us for (2048, 128) rows; so was storing the statistics from inside a helper, 161 vs
# 116 us). Coefficients are computed in float64 and rounded to x's dtype
# by storing them in ``coef`` (x's dtype), so the element-wise loops stay in x's dtype.


@helper
def _long_span_moments(xs, tile):
    """Mean and centred sum of squares (float64) of a span of any length: tiles of ``tile`` values, each shifted
    by its own first element (:func:`_span_moments`), merged pairwise (Chan, Golub & LeVeque)."""
    M = xs.shape[0]
    n = 0.0
    mu = 0.0
    m2 = 0.0
    for j0 in range(0, M, tile):
        mt, qt = _span_moments(xs[j0:j0 + tile])
        nt = min(M - j0, tile)
        d = mt - mu
        n += nt
        mu += d * nt / n
        m2 += qt + d * d * (n - nt) * nt / n
    return mu, m2


@kernel("normalization")
def _rows_forward_elementwise(x, g, b, eps, tile, mean, inv_std, coef, out):
    """Normalize each row of x (R, M) by its own statistics, then ``* g[r % Q] + b[r % Q]`` (g, b (Q, M)).

    Outputs mean, inv_std (R,) and out (R, M) in x's dtype; coef (R, 2) x's dtype scratch.
    """
    R, M = x.shape
    Q = g.shape[0]
    for r in prange(R):
        xs = x[r]
        mu, m2 = _long_span_moments(xs, tile)
        if mu != mu:  # NaN: a NaN or an infinity in the row (see _span_sum)
            mu = _span_sum(xs) / M
        s = 1.0 / np.sqrt(m2 / M + eps)
        mean[r] = mu
        inv_std[r] = s
        c = mean[r]  # the centre: the mean rounded to x's dtype, so that x - c is exact for data near the mean
        rem = mu - c
        coef[r, 0] = s
        coef[r, 1] = -rem * s
        sc = coef[r, 0]
        sh = coef[r, 1]
        gs = g[r % Q]
        bs = b[r % Q]
        os = out[r]
        for j in range(M):
            os[j] = ((xs[j] - c) * sc + sh) * gs[j] + bs[j]


@kernel("normalization")
def _rows_forward_planes(x, L, g, b, eps, tile, mean, inv_std, coef, out):
    """Normalize each row of x (R, M) by its own statistics; plane k (elements [k*L, (k+1)*L)) of row r then
    gets ``* g[r % Q, k] + b[r % Q, k]`` (g, b (Q, M / L)), folded into one scale and shift per plane.

    Outputs mean, inv_std (R,) and out (R, M) in x's dtype; coef (R, 2, M / L) x's dtype scratch.
    """
    R, M = x.shape
    Q = g.shape[0]
    for r in prange(R):
        xs = x[r]
        mu, m2 = _long_span_moments(xs, tile)
        if mu != mu:  # NaN: a NaN or an infinity in the row (see _span_sum)
            mu = _span_sum(xs) / M
        s = 1.0 / np.sqrt(m2 / M + eps)
        mean[r] = mu
        inv_std[r] = s
        c = mean[r]  # the centre: the mean rounded to x's dtype, so that x - c is exact for data near the mean
        rem = mu - c
        q = r % Q
        os = out[r]
        for k in range(M // L):
            sc = g[q, k] * s
            coef[r, 0, k] = sc
            coef[r, 1, k] = b[q, k] - rem * sc
            _span_scale_shift(xs[k * L:(k + 1) * L], c, coef[r, 0, k], coef[r, 1, k], os[k * L:(k + 1) * L])


@kernel("normalization")
def _rows_backward_elementwise(dout, x, g, mean, inv_std, rows, coef, q1, q2, dx):
    """Gradient of :func:`_rows_forward_elementwise`: dx (R, M) in x's dtype, and per chunk k of ``rows`` rows
    the partial sums ``q1[k] = sum(dout)``, ``q2[k] = sum(dout * xhat)`` (float64, (K, Q, M)) of dbeta and
    dgamma, which the caller adds up. coef (R, 3) x's dtype scratch.
    """
    R, M = x.shape
    K = q1.shape[0]
    Q = g.shape[0]
    for k in prange(K):
        q1[k] = 0.0
        q2[k] = 0.0
        for r in range(k * rows, min(R, k * rows + rows)):
            q = r % Q
            c = mean[r]
            c64 = np.float64(c)
            s = np.float64(inv_std[r])
            ds = dout[r]
            xs = x[r]
            gs = g[q]
            a1 = q1[k, q]
            a2 = q2[k, q]
            # pass 1: sum(dxhat), sum(dxhat * (x - mean)) with dxhat = dout * gamma; dbeta, dgamma partials
            s1 = 0.0
            s2 = 0.0
            for j in range(M):
                d = np.float64(ds[j])
                xc = np.float64(xs[j]) - c64
                gd = np.float64(gs[j]) * d
                s1 += gd
                s2 += gd * xc
                a1[j] += d
                a2[j] += d * xc * s
            # pass 2, from cache: dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            coef[r, 0] = s
            coef[r, 1] = -s * s * s * s2 / M
            coef[r, 2] = -s * s1 / M
            a = coef[r, 0]
            v = coef[r, 1]
            e = coef[r, 2]
            os = dx[r]
            for j in range(M):
                os[j] = (ds[j] * gs[j]) * a + ((xs[j] - c) * v + e)


@kernel("normalization")
def _rows_backward_planes(dout, x, L, g, mean, inv_std, coef, p1, p2, dx):
    """Gradient of :func:`_rows_forward_planes`: dx (R, M) in x's dtype, and per row and plane the sums
    ``p1 = sum(dout)``, ``p2 = sum(dout * xhat)`` (float64, (R, M / L)) of dbeta and dgamma. coef (R, 3, M / L)
    x's dtype scratch.
    """
    R, M = x.shape
    Q = g.shape[0]
    S = M // L
    for r in prange(R):
        q = r % Q
        c = mean[r]
        c64 = np.float64(c)
        s = np.float64(inv_std[r])
        ds = dout[r]
        xs = x[r]
        s1 = 0.0
        s2 = 0.0
        for k in range(S):
            t1, t2 = _span_grad_sums(ds[k * L:(k + 1) * L], xs[k * L:(k + 1) * L], c64)
            gk = np.float64(g[q, k])
            s1 += gk * t1
            s2 += gk * t2
            p1[r, k] = t1
            p2[r, k] = t2 * s
        coef[r, 1, 0] = -s * s * s * s2 / M
        coef[r, 2, 0] = -s * s1 / M
        v = coef[r, 1, 0]
        e = coef[r, 2, 0]
        os = dx[r]
        for k in range(S):
            coef[r, 0, k] = g[q, k] * s
            _span_grad(ds[k * L:(k + 1) * L], xs[k * L:(k + 1) * L], c, coef[r, 0, k], v, e, os[k * L:(k + 1) * L])


# ---------------------------------------------------------------------------------------------------------------
# Batch normalization: statistics, normalize, backward sums and input gradient on a 2-D view


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


def _flat2(a: np.ndarray, rows: int) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(rows, -1)


def _per_column(per_channel: list[np.ndarray], L: int) -> list[np.ndarray]:
    """Per-channel vectors repeated for each of a channel's L columns (no copy when L = 1)."""
    return per_channel if L == 1 else [np.repeat(v, L) for v in per_channel]


def _normalize(x2: np.ndarray, coef: list[np.ndarray], *, columns: bool) -> np.ndarray:
    """One pass ``(x2 - centre) * scale + shift``, coef = [centre, scale, shift] per row or per column."""
    out = np.empty_like(x2)
    if columns:
        _normalize_columns.run(x2.size, x2, *coef, out)
    else:
        _normalize_rows.run(x2.size, x2, _TILE, *coef, out)
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


def _input_grad(dout2, x2, centre, a, v, e, *, columns: bool) -> np.ndarray:
    """One pass ``dx = dout * a + (x - centre) * v + e`` with coefficients (x's dtype) per row or per column."""
    dx = np.empty_like(x2)
    if columns:
        _grad_columns.run(x2.size, dout2, x2, centre, a, v, e, dx)
    else:
        _grad_rows.run(x2.size, dout2, x2, _TILE, centre, a, v, e, dx)
    return dx


# ---------------------------------------------------------------------------------------------------------------
# Layer, group and instance normalization: one row per statistic


def _sample_rows_forward(x2: np.ndarray, L: int, g: np.ndarray, b: np.ndarray, eps: float):
    """Rows of x2 (R, M) normalized by their own statistics, affine g, b (Q, S) per element (L = 1, S = M) or per
    plane of L elements (S = M / L)."""
    R, M = x2.shape
    mean, inv_std = np.empty(R, x2.dtype), np.empty(R, x2.dtype)
    out = np.empty_like(x2)
    if L == 1:
        coef = np.empty((R, 2), x2.dtype)
        _rows_forward_elementwise.run(x2.size, x2, g, b, eps, _TILE, mean, inv_std, coef, out)
    else:
        coef = np.empty((R, 2, M // L), x2.dtype)
        _rows_forward_planes.run(x2.size, x2, L, g, b, eps, _TILE, mean, inv_std, coef, out)
    return out, mean, inv_std


def _sample_rows_backward(dout2: np.ndarray, x2: np.ndarray, L: int, g: np.ndarray, mean: np.ndarray,
                          inv_std: np.ndarray):
    """dx2 and the float64 (Q, S) sums dgamma, dbeta of :func:`_sample_rows_forward`."""
    R, M = x2.shape
    Q, S = g.shape
    dx = np.empty_like(x2)
    mean, inv_std = np.ascontiguousarray(mean).reshape(-1), np.ascontiguousarray(inv_std).reshape(-1)
    if L == 1:
        rows = max(1, -(-R // (2 * _jit.get_num_threads())))  # a chunk of rows per work item, two per thread
        K = -(-R // rows)
        q1, q2 = np.empty((K, Q, S)), np.empty((K, Q, S))
        coef = np.empty((R, 3), x2.dtype)
        _rows_backward_elementwise.run(x2.size, dout2, x2, g, mean, inv_std, rows, coef, q1, q2, dx)
    else:
        q1, q2 = np.empty((R // Q, Q, S)), np.empty((R // Q, Q, S))  # per row and plane
        coef = np.empty((R, 3, S), x2.dtype)
        _rows_backward_planes.run(x2.size, dout2, x2, L, g, mean, inv_std, coef, q1.reshape(R, S),
                                  q2.reshape(R, S), dx)
    return dx, q2.sum(axis=0), q1.sum(axis=0)


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


@helper
def _batch_forward_coefficients(mean, var, gamma, beta, eps, centre, scale, shift, inv_std):
    """Per channel: ``inv_std = 1 / sqrt(var + eps)`` and the coefficients of ``out = (x - centre) * scale + shift``.

    mean, var float64; outputs in x's dtype. The centre is the mean rounded to x's dtype; the rounding remainder
    moves into the shift (float64 math), so the pass computes ``gamma * (x - mean) * inv_std + beta``. An infinite
    (or NaN) scale keeps the shift at beta: the remainder times it would be inf or NaN (0 * inf) and turn every
    output NaN, where the unfolded formula gives +-inf.
    """
    for c in range(mean.shape[0]):
        s = 1.0 / np.sqrt(var[c] + eps)
        inv_std[c] = s
        centre[c] = mean[c]
        sc = gamma[c] * s
        scale[c] = sc
        shift[c] = beta[c] - (mean[c] - centre[c]) * sc if np.isfinite(sc) else beta[c]


@helper
def _batch_backward_coefficients(p1, p2, gamma, inv_std, M, a, v, e, dgamma, dbeta):
    r"""Per channel c, from the partial sums ``p1 = sum(dout)``, ``p2 = sum(dout * (x - mean))`` of the entries
    r % C == c (one per (n, c) plane, or one per channel): the coefficients of ``dx = dout * a + (x - mean) * v
    + e`` and dgamma, dbeta, all in x's dtype.

    With :math:`a = \gamma\,\mathrm{inv\_std}`: :math:`dx = a\,dout - a\,\sum dout / M
    - a\,\mathrm{inv\_std}^2 (x - \mu) \sum dout\,(x - \mu) / M`.
    """
    C = gamma.shape[0]
    for c in range(C):
        s1 = 0.0
        s2 = 0.0
        for r in range(c, p1.shape[0], C):
            s1 += p1[r]
            s2 += p2[r]
        s = np.float64(inv_std[c])
        ga = np.float64(gamma[c]) * s
        a[c] = ga
        v[c] = -ga * s * s * s2 / M
        e[c] = -ga * s1 / M
        dgamma[c] = s2 * s
        dbeta[c] = s1


@helper(fastmath=False)
def _running_update(running_mean, running_stat, mean, stat, stat_x, m_mean, m_stat, rest):
    """Per channel, with every product and sum rounded as NumPy's expressions (no fused multiply-add)."""
    for c in range(mean.shape[0]):
        stat_x[c] = stat[c]  # the float64 statistic rounded to x's dtype first, as stat.astype(x.dtype)
        running_mean[c] = m_mean * running_mean[c] + rest * mean[c]
        running_stat[c] = m_stat * running_stat[c] + rest * stat_x[c]


def _update_running(running_mean: np.ndarray, running_stat: np.ndarray, mean: np.ndarray, stat: np.ndarray,
                    momentum: float) -> None:
    """``running_mean[...] = momentum * running_mean + (1 - momentum) * mean`` and the same for ``running_stat``
    with ``stat.astype(mean.dtype)``, to the bit, as one compiled call instead of nine NumPy ones (~5 us less per
    batch-norm layer and step; ``momentum`` a Python float, so each product is in its array's dtype).

    mean (C,) in x's dtype, stat (C,) float64; the running arrays (C,) of any float dtype, updated in place.
    """
    _running_update(running_mean, running_stat, mean, stat, np.empty(mean.shape, mean.dtype),
                    running_mean.dtype.type(momentum), running_stat.dtype.type(momentum),
                    mean.dtype.type(1 - momentum))


# The 2-D batch norm of a small batch (N, D) -- a multilayer net's, every step -- as one compiled call each way.
# Its passes run serially there, and the Python between them (a dozen small allocations, three or four
# dispatches, the grid) cost more than they do: measured on (100, 100) float32, thread CPU time, forward 15.8 ->
# ~9 us, backward 13.0 -> ~9 us. The loop bodies are inlined in Numba's IR (serial: prange is range) and compiled
# with the kernels' flags, in the same order on the same arguments as the Python path runs them, so the bits are
# the same (tests/kernels/test_normalization.py::test_small_batchnorm_is_the_general_path_to_the_bit). Compile
# cost, cold cache, float32, CPU time of the first forward + backward: 3.3 s, against 2.5 s for the Python path
# and 3.9 s calling the serial twins from here (Numba links their code into each caller and optimises it again).
# Larger or 4-D inputs, and any a parallel twin would take, go the Python way.
def _inlined(k):
    return helper(_jit._renamed(k.py_func, "__inline"), inline=True)


_moments_columns_body = _inlined(_moments_columns)
_normalize_columns_body = _inlined(_normalize_columns)
_grad_sums_columns_body = _inlined(_grad_sums_columns)
_grad_columns_body = _inlined(_grad_columns)


@helper(fastmath=False)
def _column_variance(m2, size, channels):
    """NumPy's ``m2 / size * channels`` (float64), unfused: with ``arcp`` the division would become a product."""
    var = np.empty(m2.shape[0])
    for c in range(m2.shape[0]):
        var[c] = m2[c] / size * channels
    return var


@helper
def _small_forward_train(x, gamma, beta, eps, rows, cols, K, running_mean, running_var, m_mean, m_var, rest):
    """:func:`_batchnorm_forward_train` for x (N, D), C-contiguous, in one call; the same results."""
    N, J = x.shape
    mean, m2 = np.empty(J), np.empty(J)
    _moments_columns_body(x, rows, cols, np.empty((K, J)), np.empty((K, J)), np.empty(J), np.empty(J), mean, m2)
    var = _column_variance(m2, x.size, J)
    centre, scale, shift, inv_std = np.empty(J, x.dtype), np.empty(J, x.dtype), np.empty(J, x.dtype), np.empty(
        J, x.dtype)
    _batch_forward_coefficients(mean, var, gamma, beta, eps, centre, scale, shift, inv_std)
    out = np.empty_like(x)
    _normalize_columns_body(x, centre, scale, shift, out)
    _running_update(running_mean, running_var, centre, var, np.empty(J, x.dtype), m_mean, m_var, rest)
    return out, centre, inv_std


@helper
def _small_backward(dout, x, gamma, mean, inv_std, rows, cols, K):
    """:func:`_batchnorm_backward` for dout, x (N, D) and mean, C-contiguous, in one call; the same results."""
    N, J = x.shape
    p1, p2 = np.empty(J), np.empty(J)
    _grad_sums_columns_body(dout, x, mean, rows, cols, np.empty((K, J)), np.empty((K, J)), p1, p2)
    a, v, e = np.empty(J, x.dtype), np.empty(J, x.dtype), np.empty(J, x.dtype)
    dgamma, dbeta = np.empty(J, x.dtype), np.empty(J, x.dtype)
    _batch_backward_coefficients(p1, p2, gamma, inv_std, N, a, v, e, dgamma, dbeta)
    dx = np.empty_like(x)
    _grad_columns_body(dout, x, mean, a, v, e, dx)
    return dx, dgamma, dbeta


def _small(x: np.ndarray) -> bool:
    """Whether batch norm of ``x`` takes :func:`_small_forward_train` / :func:`_small_backward`."""
    return x.ndim == 2 and x.size > 0 and not _moments_columns.use_parallel(x.size)


def _batch_normalize(x, mean, var, gamma, beta, eps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` per channel (mean, var float64) as one scale-and-shift
    pass; also returns the mean and inv_std in x's dtype."""
    C = x.shape[1]
    centre, scale, shift, inv_std = (np.empty(C, x.dtype) for _ in range(4))
    _batch_forward_coefficients(mean, var, gamma, beta, eps, centre, scale, shift, inv_std)
    return _channel_scale_shift(x, centre, scale, shift), centre, inv_std


def _channel_scale_shift(x: np.ndarray, centre: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """One pass ``(x - centre) * scale + shift`` with per-channel coefficients (C,) in x's dtype, on planes or
    columns (module docstring)."""
    N, C, L = _channels(x)
    if L >= _PLANE_MIN:
        out = _normalize(_flat2(x, N * C), [centre, scale, shift], columns=False)
    else:
        out = _normalize(_flat2(x, N), _per_column([centre, scale, shift], L), columns=True)
    return out.reshape(x.shape)


def batchnorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                            running_var: np.ndarray, momentum: float = 0.9,
                            eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two kernels: per-channel moments (float64 shifted sums, merged exactly), then one scale-and-shift pass with
    gamma, beta, mean and inv_std folded into three coefficients (module docstring: the views and measurements).
    """
    x, gamma, beta, momentum, eps = _checks.check_batchnorm_forward_train(
        "batchnorm_forward_train", x, gamma, beta, running_mean, running_var, momentum, eps)
    return _batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps)


def _batchnorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                             running_var: np.ndarray, momentum: float = 0.9,
                             eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(x)
    if _small(x):
        return _small_forward_train(x, gamma, beta, eps, *_column_grid(*x.shape), running_mean, running_var,
                                    running_mean.dtype.type(momentum), running_var.dtype.type(momentum),
                                    x.dtype.type(1 - momentum))
    mean, var = _batch_moments(x)
    out, mean, inv_std = _batch_normalize(x, mean, var, gamma, beta, eps)
    _update_running(running_mean, running_var, mean, var, momentum)
    return out, mean, inv_std


def batchnorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                            running_var: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """One scale-and-shift pass, the running statistics folded into its coefficients."""
    return _batchnorm_forward_infer(*_checks.check_batchnorm_forward_infer(
        "batchnorm_forward_infer", x, gamma, beta, running_mean, running_var, eps))


def _batchnorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                             running_var: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    if x.size == 0:
        return np.empty(x.shape, x.dtype)
    x = np.ascontiguousarray(x)
    return _batch_normalize(x, running_mean.astype(np.float64), running_var.astype(np.float64), gamma, beta, eps)[0]


def batchnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                       inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two kernels: the per-channel sums of ``dout`` and ``dout * (x - mean)``, then one pass
    ``dx = dout * a + (x - mean) * v + e`` with the sums folded into a, v, e.
    """
    return _batchnorm_backward(*_checks.check_batchnorm_backward("batchnorm_backward", dout, x, gamma, mean,
                                                                 inv_std))


def _batchnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                        inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N, C, L = _channels(x)
    mean = np.ascontiguousarray(mean)
    if _small(x):
        return _small_backward(np.ascontiguousarray(dout), np.ascontiguousarray(x), gamma, mean, inv_std,
                               *_column_grid(N, C))
    planes = L >= _PLANE_MIN
    if planes:
        dout2, x2 = _flat2(dout, N * C), _flat2(x, N * C)
        p1, p2 = _row_grad_sums(dout2, x2, mean)  # per (n, c) plane
    else:
        dout2, x2 = _flat2(dout, N), _flat2(x, N)
        (centre,) = _per_column([mean], L)
        p1, p2 = _column_grad_sums(dout2, x2, centre, C)  # per channel
    a, v, e, dgamma, dbeta = (np.empty(C, x.dtype) for _ in range(5))
    _batch_backward_coefficients(p1, p2, gamma, inv_std, N * L, a, v, e, dgamma, dbeta)
    if planes:
        dx = _input_grad(dout2, x2, mean, a, v, e, columns=False)
    else:
        dx = _input_grad(dout2, x2, centre, *_per_column([a, v, e], L), columns=True)
    return dx.reshape(x.shape), dgamma, dbeta


# ---------------------------------------------------------------------------------------------------------------
# Batch renormalization: batch normalization with gamma * r as the scale and beta + gamma * d as the shift (r, d
# are per-channel constants of the step), so it runs on the batch-norm kernels unchanged: the same two passes
# forward and backward. Only (C,)-sized coefficients are computed here, in float64.


def _renorm_affine(gamma: np.ndarray, beta: np.ndarray, r: np.ndarray, d: np.ndarray):
    """gamma * r and beta + gamma * d (float64); where d == 0 the shift stays beta, so an infinite gamma gives
    +-inf as the unfolded ``gamma * (xhat * r + d) + beta`` does, not inf * 0 = NaN."""
    g = gamma.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return g * r, np.where(d == 0, beta, beta + g * d)


def batchrenorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                              running_std: np.ndarray, rmax: float, dmax: float, momentum: float = 0.9,
                              eps: float = 1e-5) -> tuple[np.ndarray, ...]:
    """The batch-norm moments kernel, then its scale-and-shift pass with ``gamma * r`` and ``beta + gamma * d``
    folded into the coefficients (formulas: :func:`fastnn.reference.batchrenorm_forward_train`)."""
    x, gamma, beta, rmax, dmax, momentum, eps = _checks.check_batchrenorm_forward_train(
        "batchrenorm_forward_train", x, gamma, beta, running_mean, running_std, rmax, dmax, momentum, eps)
    return _batchrenorm_forward_train(x, gamma, beta, running_mean, running_std, rmax, dmax, momentum, eps)


def _batchrenorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                               running_std: np.ndarray, rmax: float, dmax: float, momentum: float = 0.9,
                               eps: float = 1e-5) -> tuple[np.ndarray, ...]:
    x = np.ascontiguousarray(x)
    mean, var = _batch_moments(x)
    sigma = np.sqrt(var + eps)
    rm, rs = running_mean.astype(np.float64), running_std.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(sigma / rs, 1.0 / rmax, rmax)
        d = np.clip((mean - rm) / rs, -dmax, dmax)
    out, centre, inv_std = _batch_normalize(x, mean, var, *_renorm_affine(gamma, beta, r, d), eps)
    _update_running(running_mean, running_std, centre, sigma, momentum)
    return out, centre, inv_std, r.astype(x.dtype), d.astype(x.dtype)


def batchrenorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                              running_std: np.ndarray) -> np.ndarray:
    """One scale-and-shift pass, the running mean and standard deviation folded into its coefficients."""
    return _batchrenorm_forward_infer(*_checks.check_batchrenorm_forward_infer(
        "batchrenorm_forward_infer", x, gamma, beta, running_mean, running_std))


def _batchrenorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                               running_std: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return np.empty(x.shape, x.dtype)
    rm = running_mean.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = gamma.astype(np.float64) / running_std
        centre = rm.astype(x.dtype)
        # the centre's rounding remainder moves into the shift (as _batch_forward_coefficients), unless the scale
        # is not finite: remainder * inf would turn a +-inf output into NaN
        shift = np.where(np.isfinite(scale), beta - (rm - centre) * scale, beta)
    return _channel_scale_shift(np.ascontiguousarray(x), centre, scale.astype(x.dtype), shift.astype(x.dtype))


def batchrenorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray, inv_std: np.ndarray,
                         r: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`batchnorm_backward`'s two kernels with gamma * r as the scale (r, d constants of the step);
    ``dgamma = r * sum(dout * xhat) + d * sum(dout)``."""
    return _batchrenorm_backward(*_checks.check_batchrenorm_backward(
        "batchrenorm_backward", dout, x, gamma, mean, inv_std, r, d))


def _batchrenorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray, inv_std: np.ndarray,
                          r: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dx, dxhat_sum, dbeta = _batchnorm_backward(dout, x, gamma * r, mean, inv_std)
    return dx, r * dxhat_sum + d * dbeta, dbeta


# ---------------------------------------------------------------------------------------------------------------
# Layer normalization


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                      eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One fused kernel per row: statistics and normalization while the row is in cache (x read from memory once)."""
    return _layernorm_forward(*_checks.check_layernorm_forward("layernorm_forward", x, gamma, beta, eps))


def _layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                       eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N = x.shape[0]
    if N == 0:
        return np.empty(x.shape, x.dtype), np.empty(0, x.dtype), np.empty(0, x.dtype)
    out, mean, inv_std = _sample_rows_forward(_flat2(x, N), 1, _flat2(gamma, 1), _flat2(beta, 1), eps)
    return out.reshape(x.shape), mean, inv_std


def layernorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                       inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One fused kernel per row; dgamma and dbeta through per-chunk float64 buffers and a combine pass."""
    return _layernorm_backward(*_checks.check_layernorm_backward("layernorm_backward", dout, x, gamma, mean,
                                                                 inv_std))


def _layernorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                        inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N = x.shape[0]
    if N == 0:
        return np.empty(x.shape, x.dtype), np.zeros(gamma.shape, x.dtype), np.zeros(gamma.shape, x.dtype)
    dx, dgamma, dbeta = _sample_rows_backward(_flat2(dout, N), _flat2(x, N), 1, _flat2(gamma, 1), mean, inv_std)
    return (dx.reshape(x.shape), dgamma.reshape(gamma.shape).astype(x.dtype),
            dbeta.reshape(gamma.shape).astype(x.dtype))


# ---------------------------------------------------------------------------------------------------------------
# Group and instance normalization


def _group_affine(gamma: np.ndarray, G: int, L: int) -> tuple[int, np.ndarray]:
    """Segment length and (G, S) affine rows for group rows of C/G planes of L values.

    Planes of at least _PLANE_MIN values keep one gamma per plane (segments of L); shorter ones get gamma spread
    over their elements (segments of 1) so the loops run along whole rows.
    """
    if L >= _PLANE_MIN:
        return L, np.ascontiguousarray(gamma).reshape(G, -1)
    return 1, np.repeat(gamma, L).reshape(G, -1)


def _group_forward(x, gamma, beta, G, eps):
    N, C, L = _channels(x)
    if N == 0:
        return np.empty(x.shape, x.dtype), np.empty((0, G), x.dtype), np.empty((0, G), x.dtype)
    seg, g = _group_affine(gamma, G, L)
    _, b = _group_affine(beta, G, L)
    out, mean, inv_std = _sample_rows_forward(_flat2(x, N * G), seg, g, b, eps)
    return out.reshape(x.shape), mean.reshape(N, G), inv_std.reshape(N, G)


def _group_backward(dout, x, gamma, G, mean, inv_std):
    N, C, L = _channels(x)
    if N == 0:
        return np.empty(x.shape, x.dtype), np.zeros(C, x.dtype), np.zeros(C, x.dtype)
    seg, g = _group_affine(gamma, G, L)
    dx, dgamma, dbeta = _sample_rows_backward(_flat2(dout, N * G), _flat2(x, N * G), seg, g, mean, inv_std)
    # per-element sums (short planes) add up over each channel's plane
    dgamma, dbeta = (d.reshape(C, -1).sum(axis=1) for d in (dgamma, dbeta))
    return dx.reshape(x.shape), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def groupnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int,
                      eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One fused kernel per (sample, group) row: x read from memory once."""
    return _groupnorm_forward(*_checks.check_groupnorm_forward("groupnorm_forward", x, gamma, beta, groups, eps))


def _groupnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int,
                       eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _group_forward(x, gamma, beta, groups, eps)


def groupnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, groups: int, mean: np.ndarray,
                       inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One fused kernel per (sample, group) row; dgamma and dbeta through per-row plane sums."""
    return _groupnorm_backward(*_checks.check_groupnorm_backward("groupnorm_backward", dout, x, gamma, groups, mean,
                                                                 inv_std))


def _groupnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, groups: int, mean: np.ndarray,
                        inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _group_backward(dout, x, gamma, groups, mean, inv_std)


def instancenorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                         eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`groupnorm_forward`'s kernel with G = C."""
    x, gamma, beta, eps = _checks.check_instancenorm_forward("instancenorm_forward", x, gamma, beta, eps)
    return _group_forward(x, gamma, beta, x.shape[1], eps)


def instancenorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                          inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`groupnorm_backward`'s kernel with G = C."""
    dout, x, gamma, mean, inv_std = _checks.check_instancenorm_backward(
        "instancenorm_backward", dout, x, gamma, mean, inv_std)
    return _group_backward(dout, x, gamma, x.shape[1], mean, inv_std)

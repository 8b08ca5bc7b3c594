"""Backward pass of the 3x3 stride-1 convolution by Winograd's F(4x4, 3x3): dx, dW, db as the exact adjoint.

The forward (Lavin & Gray 2016; the matrices B^T, G, A^T, the tiling and the transforms are those of
:mod:`fastnn.kernels.winograd43`) computes each 4x4 block of outputs of one filter ``g`` on one channel from the
6x6 input tile ``d`` under it as ``Y = A^T [(G g G^T) * (B^T d B)] A``; summed over channels, 36 products
``M[xi] (K, tiles) = U[xi] (K, C) @ V[xi] (C, tiles)``, one per position ``xi`` of the transformed tile. The
backward pass here is the adjoint of that forward, step by step, as :mod:`fastnn.kernels.winograd`'s:
``dM = A dY A^T`` per output tile, ``dU[xi] = dM[xi] @ V[xi]^T`` (``dW = G^T dU G``), ``dV[xi] = U[xi]^T @ dM[xi]``
and ``dx`` the overlap-added tiles ``B dV B^T``: 36 multiplications per 4x4 outputs in each product where
F(2x2, 3x3) takes 64. Which of the two backward passes a layer takes depends on its shapes only
(:func:`takes_f43`); the forward's choice is independent (``V`` is recomputed from ``x`` here).

Precision: the coefficients up to 8 (and 1/24 in ``G``) round more than F(2x2, 3x3)'s 0, +-1, +-1/2. Measured in
float32 against a float64 direct convolution (max error over max magnitude; ``tests/kernels/test_winograd.py``
bounds it by 1e-5): dx 3.1e-6 - 4.5e-6 and dW 1.8e-6 - 3.6e-6 on a CIFAR-like 32->32 16x16 layer and DeepConvNet's
16->16 28x28, 32->32 14x14 (pad 2), 64->64 8x8, where F(2x2, 3x3) and im2col give 1.6e-7 - 4e-7.

Special values: a call whose output gradient (seen through ReLU and pooling) or filters are not all finite goes to
F(2x2, 3x3) (the sums of the gradient planes, which give db, tell), whose results the docstring of
:mod:`fastnn.kernels.winograd` describes: here ``A dY A^T`` and ``B dV B^T`` would spread a non-finite output
gradient over the 6x6 input window of its tile where the direct sum (and F(2x2, 3x3)) keeps it to the 3x3 one.
A non-finite input reaches only dW, as in F(2x2, 3x3): all nine taps of the (filter, channel) pairs it touches.

Tiling and layout: :mod:`fastnn.kernels.winograd43`'s (``TH = ceil(OH / 4)`` rows of ``TW = ceil(OW / 4)`` tiles,
``L = TH * TW`` an image, no spare tile), and its :func:`~fastnn.kernels.winograd43.input_transform` recomputes V
per chunk. Output-gradient planes are loaded with pitch ``4 TW`` (rows and columns past OH, OW zero). The input
adjoint (:func:`_input_adjoint_chunk`) takes a chunk's planes of one channel at once, so that its steps are flat
loops over all the chunk's tiles.

Schedule, scratch and partial sums of ``dU``: as :mod:`fastnn.kernels.winograd` (a chunk of images per step on
each slot thread, the products by single-threaded OpenBLAS, ``dU`` in a fixed number of partial sums over fixed
chunk sets), except that each partial sum's filter adjoint is taken by the slot that made it and the adjoints
are added in group order after the launch (:func:`_finish`): the same bits with any number of threads.
:data:`fastnn.config.CONV_WINOGRAD43` (environment ``FASTNN_CONV_WINOGRAD43=0``) turns this backward off with the
F(4x4, 3x3) forward.
"""

from __future__ import annotations

import numpy as np
from numba import uintp

from .. import config
from .._jit import claim, helper, slot_kernel
from .._validate import WindowGeometry
from . import winograd, winograd43
from ._simd import lanes, load_part, splat, store_part
from ._workspace import buffer
from .winograd import chunk_span, chunking, grad_plane, grad_products, gradient_source
from .winograd43 import _EXACT, PAIRS, G, constants, input_transform, scratch_shapes, tiles, transformed

__all__ = ["backward", "backward43", "takes_f43"]

#: F(2x2, 3x3)'s backward, which takes the calls with a non-finite output gradient or filter (bound here: a spy on
#: ``winograd.backward`` counts the dispatches of :mod:`fastnn.kernels.conv`, not this).
_backward23 = winograd.backward


def takes_f43(g: WindowGeometry, K: int, dtype: np.dtype) -> bool:
    """Whether the backward pass of this (Winograd-eligible) convolution runs F(4x4, 3x3) rather than F(2x2, 3x3):
    :data:`fastnn.config.CONV_WINOGRAD43`, a dtype F(4x4, 3x3)'s forward takes (float32: see
    ``winograd43._DTYPES``), 4x4 tiles that cover at most :data:`_F43_MAX_COVER` times the outputs, and channels
    enough that the products it saves (K*C per transformed element) outweigh its dearer transforms (K + C per
    transformed element): ``K*C >= _F43_MIN_CHANNELS * (K + C)``. By the shapes only, never the thread count.

    Measured, DeepConvNet's layers (float32, N=100, with their fused ReLU / pool gradients), the backward alone, one
    thread, median of 21 alternating calls (ms, F(2x2, 3x3) -> F(4x4, 3x3)): 32->32 16x16 (K*C/(K+C) = 16)
    8.43 -> 7.53, 32->64 8x8 (21) 5.26 -> 4.10, 64->64 8x8 (32) 8.36 -> 6.66 take it; 16->16 28x28 (8) 7.92 -> 8.49
    and 16->32 14x14 (10.7; its tiles cover 16x16, 1.31x the outputs) 4.34 -> 4.64 did not. With the chunk-wide
    input adjoint (:func:`_input_adjoint_chunk`), median of 15 (ms): 16->16 28x28 7.62 -> 7.17, 16->32 14x14
    3.76 -> 3.53, 32->32 16x16 8.09 -> 6.40, 32->64 8x8 4.67 -> 3.21, 64->64 8x8 9.34 -> 6.13: all take it now.
    """
    TH, TW = tiles(g)
    return (config.CONV_WINOGRAD43 and np.dtype(dtype) in winograd43._DTYPES
            and 16 * TH * TW <= _F43_MAX_COVER * g.OH * g.OW and K * g.C >= _F43_MIN_CHANNELS * (K + g.C))


#: Bytes of the partial sums of dU (each 36 * K * C) up to which there are :data:`winograd._GROUPS` of them; fewer
#: (a multiple of ``_CHUNK_MULTIPLE``, at least that) beyond: 64 x 64 filters' eight took ~0.5 ms to allocate and
#: add, two ~0.25 ms (float32). With the adjoints in the slots (:func:`_group_adjoint`), more groups still did not
#: pay: 64 x 64 filters' backward, two threads, median of 100 alternating calls, 2 / 4 / 8 groups 6.44 / 6.71 /
#: 6.85 ms; DeepConvNet's 16- and 32-channel layers with up to 16 or 32 groups rather than 8: no gain beyond the
#: noise of a busy machine.
_DU_BYTES = 1 << 21

#: Largest ratio of the outputs F(4x4, 3x3)'s tiles compute to the real ones at which it takes the backward pass.
_F43_MAX_COVER = 1.35

#: Smallest K*C / (K + C) (filters, channels) at which F(4x4, 3x3) takes the backward pass (:func:`takes_f43`).
_F43_MIN_CHANNELS = 8


# ---------------------------------------------------------------------------------------------------------------
# Per-plane transforms.


@helper
def _b6(v0, v1, v2, v3, v4, v5, c2, c4, c5):
    """B v for one column v of six (B^T's columns, in order: the adjoint of the input transform's ``B^T d``);
    c2, c4, c5: 2, 4, 5 in v's type."""
    t = v3 - v4
    return (c4 * v0, c4 * ((v2 - v1) + v5) - c2 * t, -(c5 * v0 + c4 * (v1 + v2) + (v3 + v4)),
            (v1 - v2) + c2 * t - c5 * v5, v0 + v1 + v2 + v3 + v4, v5)


@helper
def _output_adjoint43(D, R, M, f, rows, TW, c2, c4):
    """M[:, f, t] = A dy_t A^T for the 4x4 tiles dy_t of ``rows`` (k * TH) rows of tiles of output-gradient planes
    loaded into D (rows of pitch 4 TW, image after image); R (6, 4 * rows * TW) scratch.

    A along the rows first (one loop over the 4 TW columns of each row of tiles), then along the columns: R[a]
    then holds each tile's four columns side by side, so that step is one flat loop over all the tiles.
    """
    P = 4 * TW
    for tr in range(rows):  # A dy: rows 4tr .. 4tr + 3 -> R[a, tr*P + q]
        base = tr * 4 * P
        so = tr * P
        for q in range(P):
            y0 = D[uintp(base + q)]
            y1 = D[uintp(base + P + q)]
            y2 = D[uintp(base + 2 * P + q)]
            y3 = D[uintp(base + 3 * P + q)]
            e = y0 + y2
            o = y1 + y3
            e4 = y0 + c4 * y2
            o8 = c2 * (y1 + c4 * y3)
            R[0, uintp(so + q)] = y0
            R[1, uintp(so + q)] = e + o
            R[2, uintp(so + q)] = e - o
            R[3, uintp(so + q)] = e4 + o8
            R[4, uintp(so + q)] = e4 - o8
            R[5, uintp(so + q)] = y3
    n = rows * TW
    for a in range(6):  # (A dy) A^T: tile t's columns are R[a, 4t .. 4t + 3]
        ra = R[a]
        m0 = M[6 * a, f]
        m1 = M[6 * a + 1, f]
        m2 = M[6 * a + 2, f]
        m3 = M[6 * a + 3, f]
        m4 = M[6 * a + 4, f]
        m5 = M[6 * a + 5, f]
        for t in range(n):
            y0 = ra[4 * t]
            y1 = ra[4 * t + 1]
            y2 = ra[4 * t + 2]
            y3 = ra[4 * t + 3]
            e = y0 + y2
            o = y1 + y3
            e4 = y0 + c4 * y2
            o8 = c2 * (y1 + c4 * y3)
            m0[t] = y0
            m1[t] = e + o
            m2[t] = e - o
            m3[t] = e4 + o8
            m4[t] = e4 - o8
            m5[t] = y3


@helper(fastmath=winograd43._EXACT)
def _adjoint_row(z0, z1, z2, z3, z4, z5, p, e, n, c2, c4, c5):
    """Padded row a of the n tiles (dv_t B^T along it, the tile's row z_j[t] = (B dv_t)[a, j]): columns 0-3 into
    ``p[4t:4t + 4]``, 4-5 into ``e[2t:2t + 2]``, and columns 4, 5 of tile t - 1 added into tile t's 0, 1 (wrong for
    the first tile of a row of tiles, which the caller redoes).

    The previous tile's columns 4, 5 are carried from one iteration to the next (a recurrence LLVM vectorises with
    a lane shift), so that the overlap costs no second pass: adding them per row of tiles afterwards was a scalar
    loop of TW - 1 tiles. A helper of its own, as :func:`fastnn.kernels.winograd43._column_row`.
    """
    r4 = c2 - c2
    r5 = r4
    for t in range(n):
        q0, q1, q2, q3, q4, q5 = _b6(z0[t], z1[t], z2[t], z3[t], z4[t], z5[t], c2, c4, c5)
        p[4 * t] = q0 + r4
        p[4 * t + 1] = q1 + r5
        p[4 * t + 2] = q2
        p[4 * t + 3] = q3
        e[2 * t] = q4
        e[2 * t + 1] = q5
        r4 = q4
        r5 = q5


@helper
def _input_adjoint_chunk(V, c, n0, m, PH, PW, TH, TW, P, E, dx, c2, c4, c5):
    """dx[n0 + s, c] (H, W) for s < m = the overlap-added tiles B dv_t B^T (dv_t = V[:, c, s*L + t]), padding cut
    off: the adjoint of :func:`~fastnn.kernels.winograd43.input_transform`, a chunk's planes of one channel at once.

    ``B (dv B^T)``, as the forward's ``(B^T d) B``. First B^T along each tile's rows in flat loops over all n = m*L
    tiles, straight from V: column b < 4 of tile t's row a into ``P[a, 4t + b]`` and columns 4, 5 (the next tile's
    0, 1) into ``E[a, 2t:2t + 2]``, those added into the next tile's first two columns on the way (a row of tiles'
    last pair is kept in E for padded columns 4 TW, 4 TW + 1). Then B along the columns: each row of tiles' six
    output rows from its six rows of P, in explicit vectors along the row (:mod:`fastnn.kernels._simd`), its rows 4
    and 5 added into the next row of tiles' 0 and 1, stored into dx as they are done; the data columns past
    padded column 4 TW - 1 from E, one by one. P (6, >= 4n), E (6, >= 2n) scratch.

    Measured, one thread, float32, N=100, the input adjoint of a whole batch (ms): per plane 64->64 8x8 2.03,
    32->64 8x8 0.98, 32->32 14x14 pad 2 1.88, 16->16 28x28 2.96; a chunk's planes at once, B along the columns
    first (through a scratch of B dv), then the rows, then dx copied from P, 0.76, 0.37, 0.85-0.87, 1.37-1.49
    (a later machine, min of 11: 0.75, 0.38, 0.87, 1.25); this way 0.53, 0.25, 0.48, 0.81 (16->32 14x14 0.46 ->
    0.25).
    """
    L = TH * TW
    n = m * L
    R = m * TH
    cu = uintp(c)
    for a in range(6):  # dv B^T: row a of every tile, its columns 0-3 into P[a], 4-5 into E[a]
        e0 = V[6 * a, cu]
        e1 = V[6 * a + 1, cu]
        e2 = V[6 * a + 2, cu]
        e3 = V[6 * a + 3, cu]
        e4 = V[6 * a + 4, cu]
        e5 = V[6 * a + 5, cu]
        p = P[a]
        e = E[a]
        if TW > 2:  # the overlap added on the way, then each row of tiles' first tile redone
            _adjoint_row(e0, e1, e2, e3, e4, e5, p, e, n, c2, c4, c5)
            for r in range(R if PW < 2 else 0):  # a row's first tile: columns 0, 1 alone (read unless padding)
                f = uintp(r * TW)
                q0, q1, q2, q3, q4, q5 = _b6(e0[f], e1[f], e2[f], e3[f], e4[f], e5[f], c2, c4, c5)
                p[4 * f] = q0
                p[4 * f + 1] = q1
            continue
        for t in range(n):  # two tiles a row: redoing half the tiles cost more than adding the overlap after
            q0, q1, q2, q3, q4, q5 = _b6(e0[t], e1[t], e2[t], e3[t], e4[t], e5[t], c2, c4, c5)
            p[4 * t] = q0
            p[4 * t + 1] = q1
            p[4 * t + 2] = q2
            p[4 * t + 3] = q3
            e[2 * t] = q4
            e[2 * t + 1] = q5
        for r in range(R):  # columns 4, 5 of tile tw are columns 0, 1 of tile tw + 1 (TW - 1 per row of tiles)
            f0 = r * TW
            for tw in range(1, TW):
                f = f0 + tw
                p[4 * f] += e[2 * f - 2]
                p[4 * f + 1] += e[2 * f - 1]
    N, C, H, W = dx.shape
    rows = dx.reshape((N * C * H, W))
    P4 = 4 * TW
    inner = min(W, P4 - PW)  # the data columns left of padded column 4 * TW
    q4 = P4 - PW  # data column of padded column 4 * TW (>= 0); the data columns there and after, ntail
    ntail = max(0, W - q4)
    zero = c2 - c2
    width = lanes(P)
    for q in range(0, inner, width):  # B (dv B^T), a block of data columns of every plane at a time
        k = min(width, inner - q)
        for s in range(m):
            plane = ((n0 + s) * C + c) * H
            r4 = splat(zero)
            r5 = r4
            for th in range(TH):
                col = (s * TH + th) * P4 + PW + q
                o0, o1, o2, o3, o4, o5 = _b6(load_part(P, 0, col, k, zero), load_part(P, 1, col, k, zero),
                                             load_part(P, 2, col, k, zero), load_part(P, 3, col, k, zero),
                                             load_part(P, 4, col, k, zero), load_part(P, 5, col, k, zero),
                                             c2, c4, c5)
                if th:  # rows 4, 5 of the row of tiles above are rows 0, 1 of this one
                    o0 = o0 + r4
                    o1 = o1 + r5
                y = 4 * th - PH
                _row_out(rows, plane, y, H, q, o0, k)
                _row_out(rows, plane, y + 1, H, q, o1, k)
                _row_out(rows, plane, y + 2, H, q, o2, k)
                _row_out(rows, plane, y + 3, H, q, o3, k)
                r4 = o4
                r5 = o5
            y = 4 * TH - PH
            _row_out(rows, plane, y, H, q, r4, k)
            _row_out(rows, plane, y + 1, H, q, r5, k)
    for b in range(ntail):  # padded columns 4 TW + b: each row of tiles' last pair in E, data column q4 + b
        qb = q4 + b
        for s in range(m):
            plane = ((n0 + s) * C + c) * H
            r4 = zero
            r5 = zero
            for th in range(TH):
                g = uintp(2 * ((s * TH + th) * TW + TW - 1) + b)
                o0, o1, o2, o3, o4, o5 = _b6(E[0, g], E[1, g], E[2, g], E[3, g], E[4, g], E[5, g], c2, c4, c5)
                if th:
                    o0 = o0 + r4
                    o1 = o1 + r5
                y = 4 * th - PH
                for a, v in enumerate((o0, o1, o2, o3)):
                    if 0 <= y + a < H:
                        rows[plane + y + a, qb] = v
                r4 = o4
                r5 = o5
            y = 4 * TH - PH
            if 0 <= y < H:
                rows[plane + y, qb] = r4
            if 0 <= y + 1 < H:
                rows[plane + y + 1, qb] = r5


@helper(inline=True)
def _row_out(rows, plane, y, H, q, v, k):
    """rows[plane + y, q:q + k] = v[:k] when data row y is in the plane (0 <= y < H)."""
    if 0 <= y < H:
        store_part(rows, plane + y, q, v, k)


@helper(fastmath=_EXACT)
def _group_adjoint(dU2, Gm, S, dW9):
    """dW9[3r + b, p] = (G^T du_p G)[r, b] for the (filter, channel) pairs' du_p = dU2[:, p] (36 = 6x6, row-major),
    p < dU2.shape[1]: the adjoint of :func:`fastnn.kernels.winograd43._transform_filters`, tap-major. Gm: G (6, 3);
    S (18, >= PAIRS) scratch.

    ``G^T du`` then ``(G^T du) G``, loops over a block of pairs per row (vectorised), every coefficient
    multiplied, zeros included: a non-finite du reaches all nine taps of its pair, as the dense product did.
    """
    n = dU2.shape[1]
    for p0 in range(0, n, PAIRS):
        m = min(PAIRS, n - p0)
        for j in range(6):  # S[6r + j] = sum_i G[i, r] du[i, j]
            d0 = dU2[j, p0:p0 + m]
            d1 = dU2[6 + j, p0:p0 + m]
            d2 = dU2[12 + j, p0:p0 + m]
            d3 = dU2[18 + j, p0:p0 + m]
            d4 = dU2[24 + j, p0:p0 + m]
            d5 = dU2[30 + j, p0:p0 + m]
            for r in range(3):
                a0 = Gm[0, r]
                a1 = Gm[1, r]
                a2 = Gm[2, r]
                a3 = Gm[3, r]
                a4 = Gm[4, r]
                a5 = Gm[5, r]
                sr = S[6 * r + j]
                for p in range(m):
                    sr[p] = a0 * d0[p] + a1 * d1[p] + a2 * d2[p] + a3 * d3[p] + a4 * d4[p] + a5 * d5[p]
        for r in range(3):  # dW[3r + b] = sum_j S[6r + j] G[j, b]
            e0 = S[6 * r]
            e1 = S[6 * r + 1]
            e2 = S[6 * r + 2]
            e3 = S[6 * r + 3]
            e4 = S[6 * r + 4]
            e5 = S[6 * r + 5]
            for b in range(3):
                c0 = Gm[0, b]
                c1 = Gm[1, b]
                c2 = Gm[2, b]
                c3 = Gm[3, b]
                c4 = Gm[4, b]
                c5 = Gm[5, b]
                w = dW9[3 * r + b, p0:p0 + m]
                for p in range(m):
                    w[p] = e0[p] * c0 + e1[p] * c1 + e2[p] * c2 + e3[p] * c3 + e4[p] * c4 + e5[p] * c5


@helper(fastmath=_EXACT)
def _finish(dWg, dbp, dW, db):
    """dW (K*C*9, flat: (K, C, 3, 3)) = the groups' filter gradients dWg (G, 9, K*C) summed in group order; db (K,)
    = dbp (N, K) summed over the images in order. dWg[0] is overwritten. Returns the sum of ``0 * dbp``: NaN when
    an output-gradient plane's sum is not finite, else zero."""
    Gs, n = dWg.shape[0], dWg.shape[2]
    first = dWg[0]
    for g in range(1, Gs):
        for q in range(9):
            a = first[q]
            d = dWg[g, q]
            for p in range(n):
                a[p] += d[p]
    for q in range(9):
        a = first[q]
        for p in range(n):
            dW[uintp(9 * p + q)] = a[p]
    N, K = dbp.shape
    acc = np.zeros(K, dtype=db.dtype)
    zero = acc[0]
    db[:] = dbp[0]
    for i in range(N):
        r = dbp[i]
        if i:
            for k in range(K):
                db[k] += r[k]
        for k in range(K):
            acc[k] += r[k] * zero
    bad = zero
    for k in range(K):
        bad += acc[k]
    return bad


@slot_kernel("window", claims=True)
def _backward43(slot, x, dout, out, argmax, U, dU, dWg, Gm, dbp, dx, V, M, VT, PH, PW, TH, TW, OH, OW, chunks,
                need_dx, mode, k, counter):
    """As :func:`fastnn.kernels.winograd._backward`, by F(4x4, 3x3): U, dU[g] (36, K, C); V (S, 36, C, w),
    M (S, 36, K, w) with w >= m*L; VT (S, w, C) or (S, 0, C); k: :func:`fastnn.kernels.winograd43.constants`.
    The slots take the groups of chunks (each group's partial sum dU[g]) as they come, by
    :func:`fastnn._jit.claim` on ``counter`` ((1,) int64 zero), as :func:`fastnn.kernels.winograd43._forward`;
    the slot that sums a group also takes its filter adjoint, dWg[g] (9, K*C) (:func:`_group_adjoint`; Gm: G
    (6, 3)), which :func:`_finish` adds in group order: those adjoints run on both threads, where the sum of the
    dU[g] and one adjoint ran on the calling thread after the launch (~0.3 ms a DeepConvNet step in NumPy)."""
    N, C = x.shape[0], x.shape[1]
    K = U.shape[1]
    G, w = dU.shape[0], V.shape[3]
    L = TH * TW
    pad_shape, end_shape = scratch_shapes(w // L, TH, TW)  # input_transform's, for chunks of up to w // L images
    pads = np.zeros(pad_shape, dtype=x.dtype)  # zero outside the data, which input_transform writes at the same
    ends = np.zeros(end_shape, dtype=x.dtype)  # places for every channel
    D = np.zeros(16 * w, dtype=x.dtype)  # zero outside the data, which grad_plane writes at the same places
    R = np.empty((6, 4 * w), dtype=x.dtype)
    P = np.empty((6, 4 * w), dtype=x.dtype)  # the input adjoint's scratch (input_transform's must stay zeroed)
    E = np.empty((6, 2 * w), dtype=x.dtype)
    S = np.empty((18, PAIRS), dtype=x.dtype)
    c2 = k[0]
    c4 = k[1]
    c5 = k[2]
    zero = c2 - c2
    Vs = V[slot]
    Ms = M[slot]
    VTs = VT[slot]
    transposed = VTs.shape[0] > 0
    while True:
        g = claim(counter)
        if g >= G:
            break
        dUg = dU[g]
        for ch in range(g, chunks, G):  # the group's first chunk writes dUg (beta 0), the others add to it
            n0, m = chunk_span(ch, chunks, N)
            for f in range(K):
                for i in range(m):  # the gradient planes, pitch 4 TW, and their sums on the way
                    dbp[n0 + i, f] = grad_plane(dout, out, argmax, n0 + i, f, mode, zero, OH, OW, D, 16 * i * L,
                                                8 * TW, 4 * TW)
                _output_adjoint43(D, R, Ms, f, m * TH, TW, c2, c4)
            for c in range(C):
                input_transform(x, n0, m, c, PH, PW, TH, TW, pads, ends, Vs, k)
            grad_products(Ms, Vs, VTs, U, dUg, m * L, transposed, need_dx, 0.0 if ch == g else 1.0)
            if need_dx:
                for c in range(C):
                    _input_adjoint_chunk(Vs, c, n0, m, PH, PW, TH, TW, P, E, dx, c2, c4, c5)
        _group_adjoint(dUg.reshape((36, K * C)), Gm, S, dWg[g])


# ---------------------------------------------------------------------------------------------------------------
# Entry point (called by fastnn.kernels.conv after validation)


def backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, g: WindowGeometry, ws: dict, need_dx: bool,
             out: np.ndarray | None = None,
             argmax: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """As :func:`fastnn.kernels.winograd.backward` (same arguments and results), by F(4x4, 3x3) where
    :func:`takes_f43`, else by that function."""
    if not takes_f43(g, W.shape[0], x.dtype):
        return winograd.backward(dout, x, W, g, ws, need_dx, out, argmax)
    return backward43(dout, x, W, g, ws, need_dx, out, argmax)


def backward43(dout: np.ndarray, x: np.ndarray, W: np.ndarray, g: WindowGeometry, ws: dict, need_dx: bool,
               out: np.ndarray | None = None,
               argmax: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """:func:`backward` by F(4x4, 3x3) whatever the shapes and dtype (but by F(2x2, 3x3) when the output gradient
    or the filters are not all finite: module docstring)."""
    K = W.shape[0]
    U, finite = transformed(W, ws)
    if not finite:
        return _backward23(dout, x, W, g, ws, need_dx, out, argmax)
    given = dout, x, W, g, ws, need_dx, out, argmax
    x = np.ascontiguousarray(x)
    dout, out, argmax, mode = gradient_source(dout, out, argmax, K)
    TH, TW = tiles(g)
    L = TH * TW
    per_image = 36 * (g.C + K) * L * x.itemsize
    chunks, m = chunking(g.N, max(1, min(g.N, winograd._SLOT_BYTES // per_image)))
    S = _backward43.threads(g.N * (g.C * g.H * g.W + K * g.OH * g.OW) * 4)
    w = m * L
    V = buffer(ws, "winograd.V", S * 36 * g.C * w, x.dtype).reshape(S, 36, g.C, w)
    M = buffer(ws, "winograd.M", S * 36 * K * w, x.dtype).reshape(S, 36, K, w)
    per_group = 36 * K * g.C * x.itemsize
    even = winograd._CHUNK_MULTIPLE
    groups = max(1, min(chunks, winograd._GROUPS, max(even, _DU_BYTES // per_group // even * even)))
    dU = buffer(ws, "winograd43.dU", groups * 36 * K * g.C, x.dtype).reshape(groups, 36, K, g.C)
    dWg = buffer(ws, "winograd43.dWg", groups * 9 * K * g.C, x.dtype).reshape(groups, 9, K * g.C)
    wT = w if K * g.C >= winograd._TRANSPOSED_DU else 0
    VT = buffer(ws, "winograd.VT", S * wT * g.C, x.dtype).reshape(S, wT, g.C)
    dbp = np.empty((g.N, K), dtype=x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else np.empty((1, 1, 1, 1), dtype=x.dtype)
    _backward43.run(S, x, dout, out, argmax, U, dU, dWg, G.astype(x.dtype), dbp, dx, V, M, VT, g.PH, g.PW, TH, TW,
                    g.OH, g.OW, chunks, need_dx, mode, constants(x.dtype), np.zeros(1, dtype=np.int64))
    dW = np.empty(W.shape, dtype=x.dtype)
    db = np.empty(K, dtype=x.dtype)
    if np.isnan(_finish(dWg, dbp, dW.reshape(-1), db)):  # a non-finite output gradient (its plane's sum): F(2x2,
        return _backward23(*given)  # 3x3)'s results instead
    return (dx if need_dx else None), dW, db

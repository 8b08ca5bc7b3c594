"""Whole-sequence tanh RNN, LSTM and GRU, forward and backward through time, as Numba kernels.

Same names, signatures and results as :mod:`fastnn.reference.recurrent` (formulas there). Built the way fast CPU
RNNs are:

* the input projection ``x @ Wx`` of all N*T rows is one product (:func:`fastnn.kernels.linalg.matmul_into`),
  written straight into the gate workspace ``acts`` (N, T, G*H); each step adds ``h_{t-1} @ Wh`` onto its slice
  there (BLAS ``beta = 1``) and one fused pass adds the bias and turns the pre-activations into the activated
  gates in place, updating the cell and the state -- no temporaries per gate, no copies per step;
* the backward runs one fused gate-gradient pass per step into a ``dA`` workspace (N, T, G*H) and the product
  ``dA_t @ Wh.T`` that carries the gradient to the step before; after the recurrence dx, dWx and dWh are one
  product each over all N*T rows.

The whole time loop is one compiled function: a step's hidden units are cut into parts, one per Numba thread, each
computing its columns of every gate block by single-threaded OpenBLAS calls (:mod:`fastnn.kernels._blas`, as
:mod:`fastnn.kernels.linalg` does) and then its units' gates, so one parallel region per step (two or three where a
product needs the whole of the step's gates first: the GRU's candidate, every backward step). The cut follows the
machine's threads, not the count set now (:func:`_parts`), so results do not depend on the number of threads. The
LSTM instead cuts the batch when Wh stays in a core's cache (:func:`_row_parts`): rows never meet in the recurrence,
so each part runs every step for its rows with no synchronisation per step, and the products before and after the
recurrence over its rows too (:func:`_launch_rows`); in float32 it cuts the batch for a large Wh too whenever the
units would have been cut across threads (:func:`_big_row_parts`), each part reading all of one shared packed Wh
from the L3 cache. Either way its per-step products in float32 are not BLAS calls but
:func:`fastnn.kernels._tile.packed_product` with Wh (forward) and Wh.T (backward) packed once per call (by each
part, for its panels; each part of a small Wh's batch cut has a copy of its own): OpenBLAS repacks all of Wh on
every few-row call (measured, one thread, DLFS-2's BetterRnnlm sizes: a step's (20, 650) @ (650, 2600) 0.95 ms in
OpenBLAS, 0.65 ms packed; (20, 2600) @ (2600, 650) 0.90 against 0.68 ms; the char LM N64 T100 D65 H256, two batch
parts of 32 rows run one after the other: backward 103 -> 93 ms).

Nonlinearities use :func:`fastnn.kernels._math._exp_nonpos` (vectorisable; libm's scalar exp stops LLVM from
vectorising the pass): sigmoid(a) from e = exp(-|a|), tanh(a) = sign(a) (1 - e) / (1 + e) with e = exp(-2|a|). The
LSTM's passes take them of explicit vectors (:mod:`fastnn.kernels._simd`), the RNN's and GRU's loops of scalars:
one body, the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import _checks, config
from .._jit import helper, kernel, run_on_slots
from . import _simd as simd
from ._blas import gemm
from ._math import _exp_nonpos, _fdiv, exp_nonpos_constants
from ._tile import PANEL, pack_part, packed_product, panels_shape
from ._workspace import buffer, workspace
from .linalg import matmul_into

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward"]

#: Least hidden units per part of a step (a narrower product costs more in packing than its thread saves), and
#: the multiple a part's width is rounded to (one AVX-512 register of float32).
_MIN_UNITS = 64
_ALIGN = 16
#: Least batch rows per part when the batch is cut instead (see _row_parts), and the most bytes of Wh for it:
#: every part then multiplies by all of Wh each step, which should stay in its core's L2 (2 MiB here).
_MIN_ROWS = 8
_ROWS_MAX_WH = 1 << 20


#: Compiler flags of the loop bodies (:data:`fastnn.config.FASTMATH_IN_ORDER`, without ``reassoc`` and
#: ``contract``). Numba compiles a parallel twin's loop body twice: as a library of its own, which the compiling
#: process runs, and again, re-optimised, inside the twin's object, which the on-disk cache keeps and every later
#: process runs. With that freedom LLVM rounded the two copies differently (``d * o * (1 - tc * tc)`` in the
#: LSTM's backward pass; the GRU's too, even with ``contract`` alone), so a first run's gradients were ~1 ulp off
#: later runs' and off the serial twin's (tests/robustness/test_cache.py). The bodies are element-wise passes
#: (the products are BLAS or kernels/_tile.py's explicit fused multiply-adds): no reductions to vectorise, no
#: speed lost (measured).
_FASTMATH = config.FASTMATH_IN_ORDER


# ---------------------------------------------------------------------------------------------------------------
# Nonlinearities and the in-kernel product


@helper
def _sigmoid(a, one, ec, coefs):
    """sigmoid(a) of a scalar, or of a vector (:mod:`fastnn.kernels._simd`) lane by lane: the same bits."""
    zero = one - one
    e = _exp_nonpos(simd.where_lt(a, zero, a, -a), ec, coefs)  # exp(-|a|)
    s = _fdiv(one, one + e)
    return simd.where_ge(a, zero, s, e * s)


@helper
def _tanh(a, one, ec, coefs):
    """tanh(a) of a scalar or a vector, as :func:`_sigmoid`."""
    zero = one - one
    e = _exp_nonpos(simd.where_lt(a, zero, a, -a) * (one + one), ec, coefs)  # exp(-2|a|)
    y = _fdiv(one - e, one + e)
    return simd.where_ge(a, zero, y, -y)


@helper
def _gemm_blocks(N, H, lo, hi, blocks, hp, ldh, Wh, ldw, acts, at, lda):
    """acts[:, t, k*H+lo : k*H+hi] += h_prev @ Wh[:, k*H+lo : k*H+hi] for the first ``blocks`` gate blocks k.

    ``acts`` is addressed from element ``at`` (step t's row start) with rows ``lda`` apart. One product over all
    the blocks' columns when the part is all H units (one call instead of ``blocks``: measured 20% faster at
    N=20, H=100), else one per block.
    """
    if hi - lo == H:
        gemm(False, False, N, blocks * H, H, hp, ldh, _addr(Wh, 0), ldw, 1, _addr(acts, at), lda, acts.itemsize)
    else:
        for k in range(blocks):
            gemm(False, False, N, hi - lo, H, hp, ldh, _addr(Wh, k * H + lo), ldw, 1, _addr(acts, at + k * H + lo), lda,
                 acts.itemsize)


@helper
def _addr(arr, offset):
    """Address of element ``offset`` (counted in elements of the flat buffer) of C-contiguous ``arr``."""
    return arr.ctypes.data + np.uintp(offset * arr.itemsize)


@helper
def _prev_state(h0, hs, t):
    """(address, leading dimension) of the state step t starts from: h0 (N, H) or hs[:, t-1] of hs (N, T, H)."""
    if t == 0:
        return _addr(h0, 0), h0.shape[1]
    return _addr(hs, (t - 1) * hs.shape[2]), hs.shape[1] * hs.shape[2]


# ---------------------------------------------------------------------------------------------------------------
# Loop bodies. ``bounds`` (P + 1,) cuts the H hidden units into P parts; acts/dA are (N, T, G*H) and C-contiguous.


@helper
def _activate(z, b, tanh, one, ec, coefs):
    """z = sigmoid (or tanh) of z + b in place, z and b 1-D of one length: one gate block's part of a row.

    Every fused pass works on 1-D slices indexed from 0: indexing a row at ``offset + j`` with offsets unknown to
    the compiler left the loops scalar (Numba's negative-index wraparound on each access), measured ~8x slower.
    """
    if tanh:
        for j in range(z.size):
            z[j] = _tanh(z[j] + b[j], one, ec, coefs)
    else:
        for j in range(z.size):
            z[j] = _sigmoid(z[j] + b[j], one, ec, coefs)


@helper
def _gate(a, b, t, j, m, tanh, one, ec, coefs):
    """a[t, j : j + m] = sigmoid (or tanh) of a[t, j : j + m] + b[0, j : j + m], m <= lanes, and that vector."""
    zero = one - one
    z = simd.load_part(a, t, j, m, zero) + simd.load_part(b, 0, j, m, zero)
    v = _tanh(z, one, ec, coefs) if tanh else _sigmoid(z, one, ec, coefs)
    simd.store_part(a, t, j, v, m)
    return v


@helper
def _row_prev(h0, hs, n, t, lo, hi):
    """h_{t-1}[n, lo:hi]: a slice of h0 at step 0, else of hs[n, t-1]."""
    return h0[n, lo:hi] if t == 0 else hs[n, t - 1, lo:hi]


@kernel("recurrent", _FASTMATH)
def _rnn_fwd(hs, h0, Wh, b, bounds, one, ec, coefs):
    # hs holds x @ Wx on entry (N, T, H) and the states on exit
    N, T, H = hs.shape
    for t in range(T):
        hp, ldh = _prev_state(h0, hs, t)
        for p in prange(bounds.size - 1):
            lo, hi = bounds[p], bounds[p + 1]
            gemm(False, False, N, hi - lo, H, hp, ldh, _addr(Wh, lo), H, 1, _addr(hs, t * H + lo), T * H, hs.itemsize)
            for n in range(N):
                _activate(hs[n, t, lo:hi], b[lo:hi], True, one, ec, coefs)


@kernel("recurrent", _FASTMATH)
def _rnn_bwd(dA, dhs, dh, hs, WhT, bounds, one):
    # dh (N, H): zeros on entry, dh0 on exit. Step t's region first finishes what step t+1 sends back
    # (dh = dA_{t+1} @ Wh.T, its columns lo..hi), then step t's units lo..hi: one parallel region per step
    # (t = -1 only finishes dh0). WhT is Wh.T stored row-major (see _transposed).
    N, T, H = hs.shape
    for t in range(T - 1, -2, -1):
        for p in prange(bounds.size - 1):
            lo, hi = bounds[p], bounds[p + 1]
            if t < T - 1:
                gemm(False, False, N, hi - lo, H, _addr(dA, (t + 1) * H), T * H, _addr(WhT, lo), H, 0, _addr(dh, lo), H,
                     dA.itemsize)
            if t >= 0:
                for n in range(N):
                    da, d, dn, h = dA[n, t, lo:hi], dhs[n, t, lo:hi], dh[n, lo:hi], hs[n, t, lo:hi]
                    for j in range(hi - lo):
                        da[j] = (d[j] + dn[j]) * (one - h[j] * h[j])


@helper(fastmath=_FASTMATH)  # the kernels' flags: see _FASTMATH
def _lstm_fwd_step(acts, hs, cs, h0, c0, Wh, packed, b, oi, of, og, oo, lo, hi, t, one, ec, coefs):
    """Step t of the forward for units lo..hi of every row of the arrays given (a row part's slices, or all rows):
    acts += h_{t-1} @ Wh (packed panels of lo..hi when ``packed`` is not empty, else BLAS), then the gates, c, h."""
    N, T, G = acts.shape
    H = hs.shape[2]
    W = PANEL // 4
    hp, ldh = _prev_state(h0, hs, t)
    if packed.shape[0] > 0:
        packed_product(N, hp, ldh, H, packed, lo // W, (hi + W - 1) // W, 4, H, acts, t * G, T * G, True)
    else:
        _gemm_blocks(N, H, lo, hi, 4, hp, ldh, Wh, G, acts, t * G, T * G)
    # a row's gates, c and h in explicit vectors (16 float32 units each, the rest in one masked vector), one pass:
    # the same bits and time as the loops LLVM vectorised before (one per gate block, two for c and h), ~0.4 s
    # less to compile cold
    L, zero = simd.lanes(acts), one - one
    b = b.reshape((1, b.size))
    for n in range(N):
        a, h_n, c_n = acts[n], hs[n], cs[n]
        c_prev, row = (c0, n) if t == 0 else (c_n, t - 1)
        for j in range(lo, hi, L):
            m = min(L, hi - j)
            i = _gate(a, b, t, oi + j, m, False, one, ec, coefs)
            f = _gate(a, b, t, of + j, m, False, one, ec, coefs)
            g = _gate(a, b, t, og + j, m, True, one, ec, coefs)
            o = _gate(a, b, t, oo + j, m, False, one, ec, coefs)
            c = f * simd.load_part(c_prev, row, j, m, zero) + i * g
            simd.store_part(c_n, t, j, c, m)
            simd.store_part(h_n, t, j, o * _tanh(c, one, ec, coefs), m)


@kernel("recurrent", _FASTMATH, nogil=True)
def _lstm_fwd(acts, hs, cs, h0, c0, Wh, packed, b, oi, of, og, oo, bounds, one, ec, coefs, x, Wx, project):
    # packed: panels of Wh (blocks 4) for the unit cut (bounds on panel edges; each part packs its own at the
    # first step), or empty (BLAS products). project: acts = x @ Wx first (a row part of the batch cut: see
    # _launch_rows), else acts holds it on entry
    N, T, G = acts.shape
    W = PANEL // 4
    if project:
        gemm(False, False, N * T, G, x.shape[2], _addr(x, 0), x.shape[2], _addr(Wx, 0), G, 0, _addr(acts, 0), G,
             acts.itemsize)
    for t in range(T):
        for p in prange(bounds.size - 1):
            lo, hi = bounds[p], bounds[p + 1]
            if packed.shape[0] > 0 and t == 0:
                pack_part(Wh, False, 4, packed, lo // W, (hi + W - 1) // W)
            _lstm_fwd_step(acts, hs, cs, h0, c0, Wh, packed, b, oi, of, og, oo, lo, hi, t, one, ec, coefs)


@kernel("recurrent", _FASTMATH)
def _lstm_fwd_rows(acts, hs, cs, h0, c0, Wh, packed, b, oi, of, og, oo, rows, one, ec, coefs):
    # the batch cut of a large Wh (see _big_row_parts): every part packs a share of Wh's panels (packed is
    # shared), then runs all steps for its rows, all units, with no synchronisation per step
    T, H = acts.shape[1], hs.shape[2]
    P, parts = packed.shape[0], rows.size - 1
    for q in prange(parts):
        pack_part(Wh, False, 4, packed, q * P // parts, (q + 1) * P // parts)
    for q in prange(parts):
        r0, r1 = rows[q], rows[q + 1]
        for t in range(T):
            _lstm_fwd_step(acts[r0:r1], hs[r0:r1], cs[r0:r1], h0[r0:r1], c0[r0:r1], Wh, packed, b, oi, of, og, oo,
                           0, H, t, one, ec, coefs)


@helper(fastmath=_FASTMATH)  # the kernels' flags: see _FASTMATH
def _lstm_bwd_step(dA, dhs, dh, dc, hs, cs, c0, acts, WhT, packed, oi, of, og, oo, lo, hi, t, one, ec, coefs):
    """Step t of the backward for units lo..hi of every row of the arrays given: dh = dA_{t+1} @ Wh.T (its
    columns lo..hi; t < T - 1), then step t's gate gradients (t >= 0)."""
    N, T, G = acts.shape
    H = hs.shape[2]
    if t < T - 1 and packed.shape[0] > 0:
        packed_product(N, _addr(dA, (t + 1) * G), T * G, G, packed, lo // PANEL, (hi + PANEL - 1) // PANEL, 1,
                       H, dh, 0, H, False)
    elif t < T - 1:
        gemm(False, False, N, hi - lo, G, _addr(dA, (t + 1) * G), T * G, _addr(WhT, lo), H, 0, _addr(dh, lo), H,
             dA.itemsize)
    L, zero = simd.lanes(acts), one - one
    for n in range(N if t >= 0 else 0):
        a, da, c_n, d_n = acts[n], dA[n], cs[n], dhs[n]
        c_prev, row = (c0, n) if t == 0 else (c_n, t - 1)
        # explicit vectors, as the forward's pass: the loop LLVM vectorised before (13 arrays, checked for overlap
        # at run time) made a fwd+bwd 2-6% slower at N10 and N20 T35 H100 (interleaved in one process), the same
        # bits
        for j in range(lo, hi, L):
            m = min(L, hi - j)
            i, f = simd.load_part(a, t, oi + j, m, zero), simd.load_part(a, t, of + j, m, zero)
            g, o = simd.load_part(a, t, og + j, m, zero), simd.load_part(a, t, oo + j, m, zero)
            tc = _tanh(simd.load_part(c_n, t, j, m, zero), one, ec, coefs)
            d = simd.load_part(d_n, t, j, m, zero) + simd.load_part(dh, n, j, m, zero)
            ds = simd.load_part(dc, n, j, m, zero) + d * o * (one - tc * tc)
            simd.store_part(da, t, oi + j, ds * g * i * (one - i), m)
            simd.store_part(da, t, of + j, ds * simd.load_part(c_prev, row, j, m, zero) * f * (one - f), m)
            simd.store_part(da, t, og + j, ds * i * (one - g * g), m)
            simd.store_part(da, t, oo + j, d * tc * o * (one - o), m)
            simd.store_part(dc, n, j, ds * f, m)


@kernel("recurrent", _FASTMATH, nogil=True)
def _lstm_bwd(dA, dhs, dh, dc, hs, cs, c0, acts, WhT, packed, oi, of, og, oo, bounds, one, ec, coefs, x, Wx, prev,
              dx, dWx, dWh, grads):
    # dh, dc (N, H): on entry the gradients into the last step's outputs (dh zero, dc = dc_last); on exit dh0, dc0
    # one parallel region per step, as in _rnn_bwd. packed: panels of Wh.T (blocks 1) for the unit cut (bounds
    # on panel edges; WhT is then Wh itself, each part packing its panels at the first step), or empty (BLAS
    # products by WhT). grads: then dx = dA @ Wx.T, dWx = x^T dA and dWh = prev^T dA over these rows (a row part
    # of the batch cut: see _launch_rows)
    N, T, G = acts.shape
    for t in range(T - 1, -2, -1):
        for p in prange(bounds.size - 1):
            lo, hi = bounds[p], bounds[p + 1]
            if t == T - 1 and packed.shape[0] > 0:
                pack_part(WhT, True, 1, packed, lo // PANEL, (hi + PANEL - 1) // PANEL)
            _lstm_bwd_step(dA, dhs, dh, dc, hs, cs, c0, acts, WhT, packed, oi, of, og, oo, lo, hi, t, one, ec, coefs)
    if grads:
        D, H, M, item = x.shape[2], hs.shape[2], N * T, dA.itemsize
        gemm(False, True, M, D, G, _addr(dA, 0), G, _addr(Wx, 0), G, 0, _addr(dx, 0), D, item)
        gemm(True, False, D, G, M, _addr(x, 0), D, _addr(dA, 0), G, 0, _addr(dWx, 0), G, item)
        gemm(True, False, H, G, M, _addr(prev, 0), H, _addr(dA, 0), G, 0, _addr(dWh, 0), G, item)


@kernel("recurrent", _FASTMATH)
def _lstm_bwd_rows(dA, dhs, dh, dc, hs, cs, c0, acts, Wh, packed, oi, of, og, oo, rows, one, ec, coefs):
    # the batch cut of a large Wh, as _lstm_fwd_rows: packed (shared) holds the panels of Wh.T
    T, H = acts.shape[1], hs.shape[2]
    P, parts = packed.shape[0], rows.size - 1
    for q in prange(parts):
        pack_part(Wh, True, 1, packed, q * P // parts, (q + 1) * P // parts)
    for q in prange(parts):
        r0, r1 = rows[q], rows[q + 1]
        for t in range(T - 1, -2, -1):
            _lstm_bwd_step(dA[r0:r1], dhs[r0:r1], dh[r0:r1], dc[r0:r1], hs[r0:r1], cs[r0:r1], c0[r0:r1],
                           acts[r0:r1], Wh, packed, oi, of, og, oo, 0, H, t, one, ec, coefs)


@kernel("recurrent", _FASTMATH)
def _gru_dlfs2_fwd(acts, hs, h0, Wh, b, rh, bounds, one, ec, coefs):
    # blocks z, r, h; rh (N, H) scratch for r * h_{t-1}
    N, T, G = acts.shape
    H = hs.shape[2]
    for t in range(T):
        hp, ldh = _prev_state(h0, hs, t)
        for p in prange(bounds.size - 1):
            lo, hi = bounds[p], bounds[p + 1]
            _gemm_blocks(N, H, lo, hi, 2, hp, ldh, Wh, G, acts, t * G, T * G)
            for n in range(N):
                a = acts[n, t]
                r = a[H + lo:H + hi]
                _activate(a[lo:hi], b[lo:hi], False, one, ec, coefs)
                _activate(r, b[H + lo:H + hi], False, one, ec, coefs)
                h_prev, rh_row = _row_prev(h0, hs, n, t, lo, hi), rh[n, lo:hi]
                for j in range(hi - lo):
                    rh_row[j] = r[j] * h_prev[j]
        for p in prange(bounds.size - 1):
            lo, hi = bounds[p], bounds[p + 1]
            gemm(False, False, N, hi - lo, H, _addr(rh, 0), H, _addr(Wh, 2 * H + lo), G, 1,
                 _addr(acts, t * G + 2 * H + lo), T * G, acts.itemsize)
            for n in range(N):
                a = acts[n, t]
                z, hh = a[lo:hi], a[2 * H + lo:2 * H + hi]
                _activate(hh, b[2 * H + lo:2 * H + hi], True, one, ec, coefs)
                h_prev, h_row = _row_prev(h0, hs, n, t, lo, hi), hs[n, t, lo:hi]
                for j in range(hi - lo):
                    h_row[j] = (one - z[j]) * h_prev[j] + z[j] * hh[j]


@kernel("recurrent", _FASTMATH)
def _gru_dlfs2_bwd(dA, dhs, dh, dcur, drh, hs, h0, acts, Wh, bounds, one):
    # dh (N, H) the gradient carried into step t's output (dh0 on exit); dcur, drh (N, H) scratch
    # two parallel regions per step: d(r h) needs all of the step's da^h
    N, T, G = dA.shape
    H = hs.shape[2]
    for t in range(T - 1, -2, -1):
        for p in prange(bounds.size - 1):
            lo, hi = bounds[p], bounds[p + 1]
            if t < T - 1:  # dh += [da^z, da^r]_{t+1} @ [Whz, Whr].T, columns lo..hi
                gemm(False, True, N, hi - lo, 2 * H, _addr(dA, (t + 1) * G), T * G, _addr(Wh, lo * G), G, 1,
                     _addr(dh, lo), H, dA.itemsize)
            for n in range(N if t >= 0 else 0):
                a, da = acts[n, t], dA[n, t]
                z, hh, dz, dhh = a[lo:hi], a[2 * H + lo:2 * H + hi], da[lo:hi], da[2 * H + lo:2 * H + hi]
                h_prev, d_out, dh_row, dcur_row = _row_prev(h0, hs, n, t, lo, hi), dhs[n, t, lo:hi], dh[n, lo:hi], \
                    dcur[n, lo:hi]
                for j in range(hi - lo):
                    d = d_out[j] + dh_row[j]
                    dcur_row[j] = d
                    dhh[j] = d * z[j] * (one - hh[j] * hh[j])
                    dz[j] = d * (hh[j] - h_prev[j]) * z[j] * (one - z[j])
        if t < 0:
            break
        for p in prange(bounds.size - 1):  # d(r h) = da^h @ Whh.T, then the reset gate and the direct terms
            lo, hi = bounds[p], bounds[p + 1]
            gemm(False, True, N, hi - lo, H, _addr(dA, t * G + 2 * H), T * G, _addr(Wh, lo * G + 2 * H), G, 0,
                 _addr(drh, lo), H, dA.itemsize)
            for n in range(N):
                a = acts[n, t]
                z, r, dr = a[lo:hi], a[H + lo:H + hi], dA[n, t, H + lo:H + hi]
                h_prev, drh_row, dh_row, dcur_row = _row_prev(h0, hs, n, t, lo, hi), drh[n, lo:hi], dh[n, lo:hi], \
                    dcur[n, lo:hi]
                for j in range(hi - lo):
                    dr[j] = drh_row[j] * h_prev[j] * r[j] * (one - r[j])
                    dh_row[j] = dcur_row[j] * (one - z[j]) + r[j] * drh_row[j]


@kernel("recurrent", _FASTMATH)
def _gru_torch_fwd(acts, hs, h0, Wh, b, bh, bounds, one, ec, coefs):
    # acts (N, T, 4H): blocks r, z, n hold x @ Wx on entry; the fourth gets h_{t-1} @ W_hn + b_hn
    N, T, A = acts.shape
    H = hs.shape[2]
    G = 3 * H
    for t in range(T):
        hp, ldh = _prev_state(h0, hs, t)
        for p in prange(bounds.size - 1):
            lo, hi = bounds[p], bounds[p + 1]
            _gemm_blocks(N, H, lo, hi, 2, hp, ldh, Wh, G, acts, t * A, T * A)
            gemm(False, False, N, hi - lo, H, hp, ldh, _addr(Wh, 2 * H + lo), G, 0, _addr(acts, t * A + 3 * H + lo),
                 T * A, acts.itemsize)
            for n in range(N):
                a = acts[n, t]
                r, z, nn, hn = a[lo:hi], a[H + lo:H + hi], a[2 * H + lo:2 * H + hi], a[3 * H + lo:3 * H + hi]
                br, bz, bn = b[lo:hi], b[H + lo:H + hi], b[2 * H + lo:2 * H + hi]
                bhr, bhz, bhn = bh[lo:hi], bh[H + lo:H + hi], bh[2 * H + lo:2 * H + hi]
                h_prev, h_row = _row_prev(h0, hs, n, t, lo, hi), hs[n, t, lo:hi]
                for j in range(hi - lo):
                    rj = _sigmoid(r[j] + br[j] + bhr[j], one, ec, coefs)
                    zj = _sigmoid(z[j] + bz[j] + bhz[j], one, ec, coefs)
                    hnj = hn[j] + bhn[j]
                    nj = _tanh(nn[j] + bn[j] + rj * hnj, one, ec, coefs)
                    r[j] = rj
                    z[j] = zj
                    nn[j] = nj
                    hn[j] = hnj
                    h_row[j] = (one - zj) * nj + zj * h_prev[j]


@kernel("recurrent", _FASTMATH)
def _gru_torch_bwd(dA, dAn, dhs, dh, hs, h0, acts, Wh, bounds, one):
    # dA (N, T, 3H) gradients of the input-side pre-activations; dAn (N, T, H) of h_{t-1} @ W_hn + b_hn
    # one parallel region per step, as in _rnn_bwd; dh holds d * z from step t+1's pass when its products add on
    N, T, G = dA.shape
    H = hs.shape[2]
    for t in range(T - 1, -2, -1):
        for p in prange(bounds.size - 1):
            lo, hi = bounds[p], bounds[p + 1]
            if t < T - 1:  # dh += [da^r, da^z]_{t+1} @ [Whr, Whz].T + (r da^n)_{t+1} @ Whn.T, columns lo..hi
                gemm(False, True, N, hi - lo, 2 * H, _addr(dA, (t + 1) * G), T * G, _addr(Wh, lo * G), G, 1,
                     _addr(dh, lo), H, dA.itemsize)
                gemm(False, True, N, hi - lo, H, _addr(dAn, (t + 1) * H), T * H, _addr(Wh, lo * G + 2 * H), G, 1,
                     _addr(dh, lo), H, dA.itemsize)
            for n in range(N if t >= 0 else 0):
                a, da = acts[n, t], dA[n, t]
                r, z, nn, hn = a[lo:hi], a[H + lo:H + hi], a[2 * H + lo:2 * H + hi], a[3 * H + lo:3 * H + hi]
                dr, dz, dnn = da[lo:hi], da[H + lo:H + hi], da[2 * H + lo:2 * H + hi]
                h_prev, d_out, dh_row, dan = _row_prev(h0, hs, n, t, lo, hi), dhs[n, t, lo:hi], dh[n, lo:hi], \
                    dAn[n, t, lo:hi]
                for j in range(hi - lo):
                    d = d_out[j] + dh_row[j]
                    dn = d * (one - z[j]) * (one - nn[j] * nn[j])
                    dnn[j] = dn
                    dz[j] = d * (h_prev[j] - nn[j]) * z[j] * (one - z[j])
                    dr[j] = dn * hn[j] * r[j] * (one - r[j])
                    dan[j] = r[j] * dn
                    dh_row[j] = d * z[j]


# ---------------------------------------------------------------------------------------------------------------
# Wrappers


def _parts(body, N: int, H: int, G: int, align: int = _ALIGN, nearest: bool = False) -> np.ndarray:
    """Cut points of the H hidden units: one part per thread of the machine when a step's product of N*G*H*H
    multiply-adds is worth a parallel launch (:data:`fastnn.config.PARALLEL_MIN_WORK` ``"recurrent"``), each
    >= _MIN_UNITS wide, cut at multiples of ``align`` above the even share, or the nearest ones when ``nearest``.

    The cut does not depend on how many threads run now (``fastnn.set_num_threads``, a forked child's one): fewer
    threads run the same parts in turn, the same BLAS calls, so the results keep their bits. OpenBLAS rounds a
    column differently by where it falls among a call's columns (its edge kernels: measured, a (5, 200) @
    (200, 600) product's columns 192..199 in float32 against the same columns of a call for 112..199 alone), so
    a cut that followed the thread count changed the bits of the GRU and of every float64 recurrent kernel with
    it (tests/kernels/test_recurrent.py ``test_results_do_not_depend_on_the_thread_count``).

    ``nearest`` is for the backward's packed product, whose last panel costs a quarter of a whole one when it
    holds at most 16 units: at DLFS-2's H = 650 (ten whole panels of 64 units and one of 10) the parts are then
    5 and 5 + 1/4 panels of work, not 6 and 5 (measured on a busy machine, in one process: the recurrence
    16.2 / 14.6 ms against 16.9 / 15.5; the whole lstm_backward 0.95-0.995x of its time with the old cut).
    """
    parts = max(1, min(body.parts(N * G * H * H), H // _MIN_UNITS))
    if nearest:
        cuts = [(p * H // parts + align // 2) // align * align for p in range(1, parts)]
    else:
        cuts = [min(H, -(-p * H // parts // align) * align) for p in range(1, parts)]
    cuts = [0] + cuts + [H]
    return np.array(cuts, dtype=np.int64)


def _row_parts(N: int, Wh: np.ndarray) -> np.ndarray:
    """Cut points of the batch when its rows are run as independent parts, else [0, N].

    A sequence's rows never meet in the recurrence, so each part runs the whole time loop for its rows on a
    thread of its own, with no synchronisation per step: the alternative to cutting the hidden units (one
    parallel region per step, ~20 us each) when Wh is small enough to stay in each core's cache (DLFS-2's Rnnlm,
    a char LM). The cut depends on the shapes only, never on the thread count, and a row's numbers are the same
    in any part: results do not depend on the number of threads.
    """
    parts = 2 if N >= 2 * _MIN_ROWS and Wh.nbytes <= _ROWS_MAX_WH else 1
    return np.array([p * N // parts for p in range(parts + 1)], dtype=np.int64)


def _big_row_parts(body, N: int, H: int, bounds: np.ndarray) -> np.ndarray | None:
    """Cut points of the batch for the LSTM's batch cut of a large Wh (:func:`_lstm_fwd_rows`), or None to keep
    the unit cut ``bounds``: where the units were cut into parts (a step's product worth more than one thread),
    the rows are cut instead, one part per thread, each >= _MIN_ROWS.

    Every part then multiplies by all of Wh each step (read from the shared L3, not a core's L2), for half the
    rows, but no part waits for another between steps. Per-row results do not depend on which rows a part holds
    (a product's rows are summed independently, in the same order), so the bits are those of the unit cut and of
    the serial twin: results do not depend on the number of threads.

    Measured at DLFS-2's BetterRnnlm size (N20 T35 H650, two threads, alternated runs of the old and new code): on
    a quiet machine the same times (forward 25.0-25.8 against 25.4-25.6 ms, backward 49.6-52.1 against 49.8-50.1;
    one part alone, one thread: the forward's recurrence as fast as a unit-cut part's, the backward's ~5% slower,
    each block of packed Wh.T serving two blocks of rows instead of four); with other processes keeping the cores
    busy, fwd+bwd 0.72-0.75x PyTorch's time before, 0.59-0.61x now (the unit cut's 71 steps each waited for the
    slower thread, and a descheduled one stalls both).
    """
    if bounds.size <= 2:
        return None
    parts = min(body.threads(N * 4 * H * H), N // _MIN_ROWS)
    if parts < 2:
        return None
    return np.array([p * N // parts for p in range(parts + 1)], dtype=np.int64)


def _launch_rows(body, rows: np.ndarray, work: int, args: tuple, batched: tuple[bool, ...], own: tuple[int, ...],
                 key: str) -> list[list]:
    """Run the serial twin of ``body`` once per row part, on the part's rows of each ``batched`` argument
    (concurrently on the slot pool when ``work``, a step's multiply-adds with its share of the products over all
    rows, is worth a parallel launch: the products run inside the parts); ``args`` cut the hidden units
    into one part. The arguments at positions ``own`` (the packed panels, which a body fills at its first step;
    per-part sums) are arrays of the same shape in every part (workspace buffers ``key``.i.p): no two threads
    write one array, and each core reads its own copy. Returns each part's arguments.

    Each part also runs the products before or after its recurrence (the forward's input projection, the
    backward's dx, dWx and dWh over its rows: ``project``/``grads``), on its own thread: no OpenMP region runs
    between two parts' launches. The slot pool's thread took 35-150 us to start after such a region, whose threads
    spin on after it. At DLFS-2's Rnnlm size (N20 T35 H100, both cores, median of 200 calls) the forward took 1.11
    -> 0.88 ms and the backward 2.12 -> 1.60 ms when the products moved into the parts.
    """
    parts = [[a[r0:r1] if cut else a for a, cut in zip(args, batched, strict=True)]
             for r0, r1 in zip(rows[:-1], rows[1:], strict=True)]
    for i in own:
        like = args[i]
        for p, part in enumerate(parts[1:], 1):
            part[i] = _scratch(f"{key}.{i}.{p}", like.shape, like.dtype)
    run_on_slots([lambda part=part: body.serial(*part) for part in parts], body.use_parallel(work))
    return parts


#: The ``packed`` argument of a body that runs BLAS products instead (float64, see _PACKED).
_NOT_PACKED = {t: np.empty((0, 1, PANEL), t) for t in (np.float32, np.float64)}
#: Whether the unit cut's steps use packed products: in float32 only. In float64 OpenBLAS was faster (one
#: thread, N25 T16 H512 fwd+bwd: 114 ms by BLAS, 126 ms packed), its packing a smaller share of twice the work.
_PACKED = {np.float32: True, np.float64: False}


def _c(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


#: Largest scratch array kept between calls (bytes); a larger one is allocated per call, so that one long
#: sequence does not pin its workspace for the rest of the process.
_SCRATCH_MAX = 1 << 26


def _scratch(key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array kept between calls in this thread's workspace (never a returned
    array): a fresh one pays its page faults on every call, measured (a process running only fastnn, DLFS-2's
    BetterRnnlm LSTM, N20 T35 H650) ~2000-2400 minor faults and 50-67 ms per backward against 46 ms without."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    if size * dtype.itemsize > _SCRATCH_MAX:
        return np.empty(shape, dtype)
    return buffer(workspace(None), f"recurrent.{key}", size, dtype).reshape(shape)


def _transposed(Wh: np.ndarray) -> np.ndarray:
    """Wh.T stored row-major, for the backward's per-step ``dA_t @ Wh.T``: OpenBLAS multiplies by a stored
    matrix ~2x faster than by a transposed one at these shapes (measured 20x400x100 and 20x2600x650, one
    thread), which pays for the one copy many times over."""
    return np.ascontiguousarray(Wh.T)


def _consts(dtype: np.dtype) -> tuple:
    ec, coefs = exp_nonpos_constants(dtype)
    return dtype.type(1), ec, coefs


def _project(x: np.ndarray, Wx: np.ndarray, out: np.ndarray) -> None:
    """out (N, T, G*H) [or its first columns] = x @ Wx for all N*T rows: one product."""
    N, T, D = x.shape
    matmul_into(_c(x).reshape(N * T, D), Wx, out.reshape(N * T, out.shape[2])[:, :Wx.shape[1]])


def _launch(body, bounds: np.ndarray, *args) -> None:
    """Run ``body``: its parallel twin when the hidden units were cut into parts, else the serial one."""
    if bounds.size > 2:
        body.run(1 << 62, *args)  # _parts has weighed the work already
    else:
        body(*args)


def _previous(h0: np.ndarray, hs: np.ndarray, prev: np.ndarray | None = None) -> np.ndarray:
    """h_{t-1} for every step (N, T, H), into ``prev`` when given."""
    N, T, H = hs.shape
    prev = np.empty((N, T, H), hs.dtype) if prev is None else prev
    prev[:, 0] = h0
    prev[:, 1:] = hs[:, :-1]
    return prev


def _sum_tn(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """sum over n, t of a[n, t]^T b[n, t]: a (N, T, P), b (N, T, Q) -> (P, Q), one product over all N*T rows."""
    N, T, P = a.shape
    Q = b.shape[2]
    out = np.empty((P, Q), a.dtype) if out is None else out
    return matmul_into(a.reshape(N * T, P).T, b.reshape(N * T, Q), out)


def _grads_after(x: np.ndarray, prev: np.ndarray | None, dA: np.ndarray, Wx: np.ndarray,
                 out: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, ...]:
    """dx = dA @ Wx.T, dWx = x^T dA, dWh = prev^T dA (None without prev), db = sum dA; dx, dWx, dWh into ``out``
    when given."""
    N, T, D = x.shape
    G = dA.shape[2]
    dA2 = dA.reshape(N * T, G)
    dx, dWx, dWh = (np.empty((N, T, D), dA.dtype), None, None) if out is None else out
    matmul_into(dA2, Wx.T, dx.reshape(N * T, D))
    dWx = _sum_tn(_c(x), dA, dWx)
    dWh = None if prev is None else _sum_tn(prev, dA, dWh)
    return dx, dWx, dWh, dA2.sum(axis=0)


def rnn_forward(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The input projection is one product into ``hs``; each step adds ``h @ Wh`` there and takes tanh in place."""
    return _rnn_forward(*_checks.check_rnn_forward("rnn_forward", x, h0, Wx, Wh, b))


def _rnn_forward(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> np.ndarray:
    N, T, _ = x.shape
    H = Wh.shape[0]
    hs = np.empty((N, T, H), x.dtype)
    if N == 0:
        return hs
    _project(x, Wx, hs)
    bounds = _parts(_rnn_fwd, N, H, 1)
    _launch(_rnn_fwd, bounds, hs, _c(h0), _c(Wh), _c(b), bounds, *_consts(x.dtype))
    return hs


def rnn_backward(dhs: np.ndarray, x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray,
                 hs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per step one fused pass and one ``dA_t @ Wh.T``; dx, dWx, dWh after the loop, one product each."""
    return _rnn_backward(*_checks.check_rnn_backward("rnn_backward", dhs, x, h0, Wx, Wh, hs))


def _rnn_backward(dhs: np.ndarray, x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray,
                 hs: np.ndarray) -> tuple[np.ndarray, ...]:
    N, T, H = hs.shape
    dh = np.zeros((N, H), hs.dtype)
    dA = np.empty((N, T, H), hs.dtype)
    if N > 0:
        hs = _c(hs)
        bounds = _parts(_rnn_bwd, N, H, 1)
        _launch(_rnn_bwd, bounds, dA, _c(dhs), dh, hs, _transposed(Wh), bounds, hs.dtype.type(1))
    dx, dWx, dWh, db = _grads_after(x, _previous(h0, hs), dA, Wx)
    return dx, dh, dWx, dWh, db


def lstm_forward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray, *,
                 layout: str = "ifgo") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``acts`` is the one workspace: the input projection goes there, each step adds ``h @ Wh`` onto its slice
    and one fused pass replaces the pre-activations by the activated gates and writes c and h."""
    *arrays, layout = _checks.check_lstm_forward("lstm_forward", x, h0, c0, Wx, Wh, b, layout)
    return _lstm_forward(*arrays, layout=layout)


def _lstm_forward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray, *,
                 layout: str = "ifgo") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N, T, D = x.shape
    H = Wh.shape[0]
    acts = np.empty((N, T, 4 * H), x.dtype)
    hs = np.empty((N, T, H), x.dtype)
    cs = np.empty((N, T, H), x.dtype)
    if N == 0:
        return hs, cs, acts
    offsets = [layout.index(g) * H for g in _checks.LSTM_GATES]  # where i, f, g, o start
    rows = _row_parts(N, Wh)
    bounds = _parts(_lstm_fwd, N, H, 4) if rows.size == 2 else np.array([0, H], dtype=np.int64)
    packed = _scratch("lstm_fwd.packed", panels_shape(H, H, 4), x.dtype) if _PACKED[x.dtype.type] \
        else _NOT_PACKED[x.dtype.type]
    args = (acts, hs, cs, _c(h0), _c(c0), _c(Wh), packed, _c(b), *offsets, bounds, *_consts(x.dtype), _c(x),
            _c(Wx))
    if rows.size > 2:  # each part projects its rows, then runs its recurrence
        batched = (True,) * 5 + (False,) * 11 + (True, False, False)
        _launch_rows(_lstm_fwd, rows, N * 4 * H * (H + D), (*args, True), batched, (6,), "lstm_fwd")
        return hs, cs, acts
    _project(x, Wx, acts)
    big_rows = _big_row_parts(_lstm_fwd_rows, N, H, bounds) if _PACKED[x.dtype.type] else None
    if big_rows is not None:
        _lstm_fwd_rows.run(1 << 62, *args[:12], big_rows, *args[13:16])
    else:
        _launch(_lstm_fwd, bounds, *args, False)
    return hs, cs, acts


def lstm_backward(dhs: np.ndarray, dc_last: np.ndarray | None, x: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                  Wx: np.ndarray, Wh: np.ndarray, hs: np.ndarray, cs: np.ndarray, acts: np.ndarray, *,
                  layout: str = "ifgo") -> tuple[np.ndarray, ...]:
    """Per step one fused gate-gradient pass into the ``dA`` workspace and one ``dA_t @ Wh.T``; dx, dWx, dWh
    after the loop, one product each (in a batch cut's parts, each over the part's rows: dWx and dWh the sums
    of the parts' products, in order)."""
    *arrays, layout = _checks.check_lstm_backward("lstm_backward", dhs, dc_last, x, h0, c0, Wx, Wh, hs, cs, acts,
                                                  layout)
    return _lstm_backward(*arrays, layout=layout)


def _lstm_backward(dhs: np.ndarray, dc_last: np.ndarray | None, x: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                  Wx: np.ndarray, Wh: np.ndarray, hs: np.ndarray, cs: np.ndarray, acts: np.ndarray, *,
                  layout: str = "ifgo") -> tuple[np.ndarray, ...]:
    N, T, H = hs.shape
    dh = np.zeros((N, H), hs.dtype)
    dc = np.zeros((N, H), hs.dtype) if dc_last is None else np.array(dc_last, dtype=hs.dtype, order="C")
    dA = _scratch("lstm_bwd.dA", (N, T, 4 * H), hs.dtype)
    hs = _c(hs)
    prev = _previous(h0, hs, _scratch("lstm_bwd.prev", hs.shape, hs.dtype))
    D, G = x.shape[2], 4 * H
    out = (np.empty((N, T, D), hs.dtype), np.empty((D, G), hs.dtype), np.empty((H, G), hs.dtype))
    if N > 0:
        offsets = [layout.index(g) * H for g in _checks.LSTM_GATES]  # where i, f, g, o start
        rows = _row_parts(N, Wh)
        if _PACKED[hs.dtype.type]:  # Wh.T packed, unit-cut parts on panel edges
            bounds = _parts(_lstm_bwd, N, H, 4, PANEL, nearest=True) if rows.size == 2 else \
                np.array([0, H], dtype=np.int64)
            WhT, packed = _c(Wh), _scratch("lstm_bwd.packed", panels_shape(4 * H, H, 1), hs.dtype)
        else:
            bounds = _parts(_lstm_bwd, N, H, 4) if rows.size == 2 else np.array([0, H], dtype=np.int64)
            WhT, packed = _transposed(Wh), _NOT_PACKED[hs.dtype.type]
        args = (dA, _c(dhs), dh, dc, hs, _c(cs), _c(c0), _c(acts), WhT, packed, *offsets, bounds,
                *_consts(hs.dtype), _c(x), _c(Wx), prev, *out)
        if rows.size > 2:  # each part runs its recurrence, then dx and its share of dWx, dWh (summed here)
            batched = (True,) * 8 + (False,) * 10 + (True, False, True, True, False, False, False)
            parts = _launch_rows(_lstm_bwd, rows, N * 4 * H * (H + D), (*args, True), batched, (9, 22, 23),
                                 "lstm_bwd")
            dx, dWx, dWh = out
            for part in parts[1:]:
                dWx += part[22]
                dWh += part[23]
            return dx, dh, dc, dWx, dWh, dA.reshape(N * T, G).sum(axis=0)
        big_rows = _big_row_parts(_lstm_bwd_rows, N, H, bounds) if _PACKED[hs.dtype.type] else None
        if big_rows is not None:
            _lstm_bwd_rows.run(1 << 62, *args[:14], big_rows, *args[15:18])
        else:
            _launch(_lstm_bwd, bounds, *args, False)
    dx, dWx, dWh, db = _grads_after(x, prev, dA, Wx, out)
    return dx, dh, dc, dWx, dWh, db


def gru_forward(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray,
                bh: np.ndarray | None = None, *, form: str = "dlfs2") -> tuple[np.ndarray, np.ndarray]:
    """As :func:`lstm_forward`; the dlfs2 form needs all of a step's r before the candidate's product, so its
    steps run two parallel regions."""
    *arrays, form = _checks.check_gru_forward("gru_forward", x, h0, Wx, Wh, b, bh, form)
    return _gru_forward(*arrays, form=form)


def _gru_forward(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray,
                bh: np.ndarray | None = None, *, form: str = "dlfs2") -> tuple[np.ndarray, np.ndarray]:
    N, T, _ = x.shape
    H = Wh.shape[0]
    acts = np.empty((N, T, (3 if form == "dlfs2" else 4) * H), x.dtype)
    hs = np.empty((N, T, H), x.dtype)
    if N == 0:
        return hs, acts
    _project(x, Wx, acts)
    body = _gru_dlfs2_fwd if form == "dlfs2" else _gru_torch_fwd
    bounds = _parts(body, N, H, 3)
    extra = (np.empty((N, H), x.dtype),) if form == "dlfs2" else (_c(bh),)
    _launch(body, bounds, acts, hs, _c(h0), _c(Wh), _c(b), *extra, bounds, *_consts(x.dtype))
    return hs, acts


def gru_backward(dhs: np.ndarray, x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, hs: np.ndarray,
                 acts: np.ndarray, *, form: str = "dlfs2") -> tuple[np.ndarray, ...]:
    """As :func:`lstm_backward`; the torch form keeps the gradient of the candidate's hidden product (r times
    the candidate's) in a (N, T, H) workspace of its own for dWh and dbh."""
    *arrays, form = _checks.check_gru_backward("gru_backward", dhs, x, h0, Wx, Wh, hs, acts, form)
    return _gru_backward(*arrays, form=form)


def _gru_backward(dhs: np.ndarray, x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, hs: np.ndarray,
                 acts: np.ndarray, *, form: str = "dlfs2") -> tuple[np.ndarray, ...]:
    N, T, H = hs.shape
    dtype = hs.dtype
    dh = np.zeros((N, H), dtype)
    dA = np.empty((N, T, 3 * H), dtype)
    hs, acts, h0 = _c(hs), _c(acts), _c(h0)
    prev = _previous(h0, hs)
    if form == "dlfs2":
        if N > 0:
            bounds = _parts(_gru_dlfs2_bwd, N, H, 3)
            _launch(_gru_dlfs2_bwd, bounds, dA, _c(dhs), dh, np.empty((N, H), dtype),
                    np.empty((N, H), dtype), hs, h0, acts, _c(Wh), bounds, dtype.type(1))
        dx, dWx, _, db = _grads_after(x, None, dA, Wx)
        # the gates' hidden weights multiply h_{t-1}, the candidate's r * h_{t-1}
        dWh = np.empty((H, 3 * H), dtype)
        _sum_tn(prev, dA[..., :2 * H], dWh[:, :2 * H])
        _sum_tn(acts[..., H:2 * H] * prev, dA[..., 2 * H:], dWh[:, 2 * H:])
        return dx, dh, dWx, dWh, db
    dAn = np.empty((N, T, H), dtype)
    if N > 0:
        bounds = _parts(_gru_torch_bwd, N, H, 3)
        _launch(_gru_torch_bwd, bounds, dA, dAn, _c(dhs), dh, hs, h0, acts, _c(Wh), bounds, dtype.type(1))
    dx, dWx, _, db = _grads_after(x, None, dA, Wx)
    dWh = np.empty((H, 3 * H), dtype)
    _sum_tn(prev, dA[..., :2 * H], dWh[:, :2 * H])
    _sum_tn(prev, dAn, dWh[:, 2 * H:])
    dbh = np.concatenate([db[:2 * H], dAn.reshape(N * T, H).sum(axis=0)])
    return dx, dh, dWx, dWh, db, dbh

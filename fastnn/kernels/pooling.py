"""Max and average pooling (NCHW), compiled with Numba. Same API and results as :mod:`fastnn.reference.pooling`.

Every kernel runs ``prange`` over the ``N * C`` planes: each iteration owns one input plane and one output
plane, so backward passes add overlapping windows into their own plane without races and without a
reduction across threads. Windows are walked with :func:`fastnn.kernels._window.window_span`, which skips
padding instead of materialising it.

Conventions (see ``docs/design.md`` and :mod:`fastnn.reference.pooling`):

* ``stride=None`` means stride = pool size; ``pad <= pool // 2`` per axis (PyTorch's limit).
* ``argmax``: row-major index ``kh * FW + kw`` inside the window, in the smallest unsigned dtype holding
  ``FH * FW - 1``. First maximum wins ties; a NaN gives output NaN and argmax the first NaN; padding is never
  the argmax (a window of input ``-inf`` points at its first input element); a window of padding alone
  (only when ``H == 0`` or ``W == 0``) gives ``-inf`` and argmax 0.
* Max-pool backward, ties: by default (``ties="first"``) a window's gradient goes to its argmax, the first
  maximum. ``ties="split"`` (cs231n's fast layer) divides it equally among all input elements equal to the
  window's maximum, recomputed from ``x``; a window whose maximum is NaN gives NaN to each of its elements
  (cs231n's ``0/0``).
* Average pooling divides by ``FH * FW``, padding included (PyTorch ``count_include_pad=True``).

Measured (2-core Xeon, float32, serial twins, N64 C64 32x32 unless said; see the pooling report for commands):

* 2x2 stride 2 without padding has its own kernels. Forward: ~2.6 ms, about 4x faster than the general window
  scan on the same input (whose per-window compare chain is serial); backward about 2x faster than the general
  zero-fill + scatter. LLVM does not vectorise output rows shorter than 32 here (its runtime
  alias checks set the vector loop's minimum trip count to 32), so the 16- and 12-wide rows of 32x32 and
  24x24 inputs run scalar while 64-wide rows reach memory speed (~0.8 ms for as many elements). Unrolled
  chunks of 8, two output rows per iteration and flat indexing did not vectorise either.
* Backward 2x2: one pass writing gradient-or-zero (~1.7 ms) instead of 4.6 ms for the same pass written
  along output columns; a zero-fill then scatter would add a second pass over dx.
* The parallel twin (planes split across 2 threads) halves large calls; it starts paying at ~8k input elements
  (2x2 forward), ~16k (2x2 backward), ~4k window reads (general kernels). The shared ``"window"`` threshold
  (:data:`fastnn.config.PARALLEL_MIN_WORK`) is compared with the number of window reads of the call.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import _checks, _validate, config
from .._jit import helper, kernel
from ._window import window_span

__all__ = ["avgpool2d_backward", "avgpool2d_forward", "maxpool2d_backward", "maxpool2d_forward"]


@helper
def _beats(v, best):
    """Whether ``v``, later in the row-major window scan, replaces the running maximum ``best``.

    Strictly greater wins, so the first of equal maxima stays; a NaN beats a number and nothing beats a NaN,
    so the first NaN stays. ``not (v <= best)`` is "v > best or either is NaN"; ``best == best`` rules out a
    NaN ``best``. Bitwise ``&`` keeps it branch-free.
    """
    return (not (v <= best)) & (best == best)


@helper
def _max4(a, b, c, d):
    """The maximum of a 2x2 window ``a b / c d`` by :func:`_beats`' rule and its row-major position 0-3 (the
    argmax code every 2x2 pooling here stores)."""
    t_top = _beats(b, a)
    m_top = b if t_top else a
    t_bottom = _beats(d, c)
    m_bottom = d if t_bottom else c
    if _beats(m_bottom, m_top):
        return m_bottom, 2 + t_bottom
    return m_top, 0 + t_top


@kernel("window")
def _maxpool_forward(x, out, argmax, FH, FW, SH, SW, PH, PW, neg_inf):
    """General max-pool over planes: x (P, H, W) -> out, argmax (P, OH, OW)."""
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in prange(P):
        for oh in range(OH):
            h0, kh0, kh1 = window_span(oh, SH, PH, FH, H)
            for ow in range(OW):
                w0, kw0, kw1 = window_span(ow, SW, PW, FW, W)
                best = neg_inf
                # The first input element is the answer when all input elements are -inf (never padding).
                idx = kh0 * FW + kw0 if kh0 < kh1 and kw0 < kw1 else 0
                for kh in range(kh0, kh1):
                    for kw in range(kw0, kw1):
                        v = x[p, h0 + kh, w0 + kw]
                        if _beats(v, best):
                            best = v
                            idx = kh * FW + kw
                out[p, oh, ow] = best
                argmax[p, oh, ow] = idx


@kernel("window")
def _maxpool_forward_2x2(x, out, argmax):
    """2x2 windows, stride 2, no padding: the common case, branch-free.

    The window is reduced as a tournament, (a vs b) and (c vs d) then the winners, where the earlier entry
    keeps ties and NaN wins over numbers. That picks exactly the first maximum / first NaN of the row-major scan
    with a shorter dependency chain: 2.6 ms against 6.4 ms for the scan a-b-c-d written with the same selects
    (N64 C64 32x32 float32, serial).
    """
    P = x.shape[0]
    OH, OW = out.shape[1], out.shape[2]
    for p in prange(P):
        for oh in range(OH):
            top = x[p, 2 * oh]
            bottom = x[p, 2 * oh + 1]
            o = out[p, oh]
            am = argmax[p, oh]
            for ow in range(OW):
                o[ow], am[ow] = _max4(top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1])


@kernel("window")
def _maxpool_backward(dout, argmax, dx, FH, FW, SH, SW, PH, PW):
    """General max-pool backward: scatter dout (P, OH, OW) through argmax into dx (P, H, W), adding overlaps."""
    P, H, W = dx.shape
    OH, OW = dout.shape[1], dout.shape[2]
    for p in prange(P):
        # Zeroing plane by plane keeps the plane in cache for the scatter that follows.
        for h in range(H):
            for w in range(W):
                dx[p, h, w] = 0
        for oh in range(OH):
            h0, kh0, kh1 = window_span(oh, SH, PH, FH, H)
            for ow in range(OW):
                w0, kw0, kw1 = window_span(ow, SW, PW, FW, W)
                k = np.int64(argmax[p, oh, ow])
                kh = k // FW
                kw = k - kh * FW
                # An index into padding (possible only for hand-made argmax or empty inputs) is dropped.
                if kh0 <= kh < kh1 and kw0 <= kw < kw1:
                    dx[p, h0 + kh, w0 + kw] += dout[p, oh, ow]


@kernel("window")
def _maxpool_backward_2x2(dout, argmax, dx, zero):
    """2x2 windows, stride 2, no padding: every dx element written once (gradient or zero), no zero-fill pass.

    The inner loop runs along the input row (2*OW contiguous stores per row) rather than along the output row:
    twice the trip count, which lets LLVM vectorise rows as short as 24 (MNIST): 1.7 ms against 4.6 ms for a
    loop over output columns writing four interleaved elements (N64 C64 32x32 float32, serial).
    """
    P, H, W = dx.shape
    OH, OW = dout.shape[1], dout.shape[2]
    for p in prange(P):
        for oh in range(OH):
            top = dx[p, 2 * oh]
            bottom = dx[p, 2 * oh + 1]
            g_row = dout[p, oh]
            k_row = argmax[p, oh]
            for w in range(2 * OW):
                g = g_row[w >> 1]
                k = k_row[w >> 1]
                right = w & 1
                top[w] = g if k == right else zero
                bottom[w] = g if k == 2 + right else zero
            for w in range(2 * OW, W):  # odd W: the last column is in no window
                top[w] = zero
                bottom[w] = zero
        for h in range(2 * OH, H):  # odd H: the last row is in no window
            for w in range(W):
                dx[p, h, w] = zero


#: Exact division for the split share: ``arcp`` would let LLVM turn ``g / count`` into ``g * (1 / count)``, one
#: rounding more than cs231n's ``dx /= count``, which the split mode reproduces bit for bit.
_SPLIT_FASTMATH = config.FASTMATH - {"arcp"}


@kernel("window", fastmath=_SPLIT_FASTMATH)
def _maxpool_backward_split(dout, x, dx, FH, FW, SH, SW, PH, PW, neg_inf, zero, one, nan):
    """Max-pool backward splitting ties: each window's dout / (number of its maxima) goes to each maximum.

    The window's maximum is found with the forward scan's rule (:func:`_beats`), then counted and shared in
    two more passes over the window. ``count`` is kept in dout's dtype (``zero``, ``one``: an integer literal
    would promote it to float64), so ``share`` is one division in that dtype, as ``dx /= count`` is in cs231n.
    A NaN maximum equals nothing: count stays 0 and every in-bounds element of the window receives NaN.
    """
    P, H, W = dx.shape
    OH, OW = dout.shape[1], dout.shape[2]
    for p in prange(P):
        for h in range(H):
            for w in range(W):
                dx[p, h, w] = zero
        for oh in range(OH):
            h0, kh0, kh1 = window_span(oh, SH, PH, FH, H)
            for ow in range(OW):
                w0, kw0, kw1 = window_span(ow, SW, PW, FW, W)
                best = neg_inf
                for kh in range(kh0, kh1):
                    for kw in range(kw0, kw1):
                        v = x[p, h0 + kh, w0 + kw]
                        if _beats(v, best):
                            best = v
                count = zero
                for kh in range(kh0, kh1):
                    for kw in range(kw0, kw1):
                        if x[p, h0 + kh, w0 + kw] == best:
                            count += one
                every = count == zero  # NaN maximum
                share = nan if every else dout[p, oh, ow] / count
                for kh in range(kh0, kh1):
                    for kw in range(kw0, kw1):
                        if every or x[p, h0 + kh, w0 + kw] == best:
                            dx[p, h0 + kh, w0 + kw] += share


@kernel("window", fastmath=_SPLIT_FASTMATH)
def _maxpool_backward_split_2x2(dout, x, dx, zero, one, nan):
    """2x2 windows, stride 2, no padding, ties split: every dx element written once, no zero-fill pass.

    The same maximum as the forward tournament, then branch-free selects: 5.4 ms against 29 ms for the general
    split kernel (N100 C32 32x32 float64, default launch, shared 2-core machine; cs231n's NumPy layer: 120 ms).
    This is cs231n's common case (``conv_relu_pool`` with 2x2 pools).
    """
    P, H, W = dx.shape
    OH, OW = dout.shape[1], dout.shape[2]
    for p in prange(P):
        for oh in range(OH):
            x_top = x[p, 2 * oh]
            x_bottom = x[p, 2 * oh + 1]
            top = dx[p, 2 * oh]
            bottom = dx[p, 2 * oh + 1]
            g_row = dout[p, oh]
            for ow in range(OW):
                a = x_top[2 * ow]
                b = x_top[2 * ow + 1]
                c = x_bottom[2 * ow]
                d = x_bottom[2 * ow + 1]
                m = _max4(a, b, c, d)[0]
                hit_a, hit_b, hit_c, hit_d = a == m, b == m, c == m, d == m
                count = ((one if hit_a else zero) + (one if hit_b else zero) + (one if hit_c else zero)
                         + (one if hit_d else zero))
                every = count == zero  # NaN maximum
                share = nan if every else g_row[ow] / count
                top[2 * ow] = share if hit_a | every else zero
                top[2 * ow + 1] = share if hit_b | every else zero
                bottom[2 * ow] = share if hit_c | every else zero
                bottom[2 * ow + 1] = share if hit_d | every else zero
            for w in range(2 * OW, W):  # odd W: the last column is in no window
                top[w] = zero
                bottom[w] = zero
        for h in range(2 * OH, H):  # odd H: the last row is in no window
            for w in range(W):
                dx[p, h, w] = zero


@kernel("window")
def _avgpool_forward(x, out, FH, FW, SH, SW, PH, PW, area, zero):
    """Average pool over planes: sum of the in-bounds window elements / area (padding counts as zeros)."""
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in prange(P):
        for oh in range(OH):
            h0, kh0, kh1 = window_span(oh, SH, PH, FH, H)
            for ow in range(OW):
                w0, kw0, kw1 = window_span(ow, SW, PW, FW, W)
                s = zero
                for kh in range(kh0, kh1):
                    for kw in range(kw0, kw1):
                        s += x[p, h0 + kh, w0 + kw]
                out[p, oh, ow] = s / area


@kernel("window")
def _avgpool_backward(dout, dx, FH, FW, SH, SW, PH, PW, area):
    """Average pool backward: each window adds dout / area to its in-bounds elements of its own plane."""
    P, H, W = dx.shape
    OH, OW = dout.shape[1], dout.shape[2]
    for p in prange(P):
        for h in range(H):
            for w in range(W):
                dx[p, h, w] = 0
        for oh in range(OH):
            h0, kh0, kh1 = window_span(oh, SH, PH, FH, H)
            for ow in range(OW):
                w0, kw0, kw1 = window_span(ow, SW, PW, FW, W)
                share = dout[p, oh, ow] / area
                for kh in range(kh0, kh1):
                    for kw in range(kw0, kw1):
                        dx[p, h0 + kh, w0 + kw] += share


def _is_2x2_stride_2(g: _validate.WindowGeometry) -> bool:
    return (g.FH, g.FW, g.SH, g.SW, g.PH, g.PW) == (2, 2, 2, 2, 0, 0)


def _window_reads(g: _validate.WindowGeometry) -> int:
    """Work of a window loop for :meth:`fastnn._jit.Kernel.run`: one unit per (window, offset) pair."""
    return g.N * g.C * g.OH * g.OW * g.FH * g.FW


def _planes(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) C-contiguous -> (N*C, H, W) view."""
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2], a.shape[3])


def maxpool2d_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                      pad: int | tuple[int, int] = 0) -> tuple[np.ndarray, np.ndarray]:
    """Parallel over the N*C planes (module docstring); 2x2 stride-2 unpadded pools take a branch-free kernel (a
    tournament per window, ~4x faster than the general scan). ``x`` may have any strides.

    Replaces ``sliding_window_view(np.pad(x, ..., constant_values=-inf), ...).max(-1)`` and its argmax.
    """
    x, _ = _checks.check_pool2d("maxpool2d_forward", x, pool_h, pool_w, stride, pad)
    return _maxpool2d_forward(x, pool_h, pool_w, stride, pad)


def _maxpool2d_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                       pad: int | tuple[int, int] = 0) -> tuple[np.ndarray, np.ndarray]:
    g = _validate.geometry(x.shape, pool_h, pool_w, stride, pad)
    out = np.empty((g.N, g.C, g.OH, g.OW), dtype=x.dtype)
    argmax = np.empty(out.shape, dtype=_validate.pool_index_dtype(g.FH * g.FW))
    if out.size == 0:
        return out, argmax
    xp = _planes(np.ascontiguousarray(x))
    work = _window_reads(g)
    if _is_2x2_stride_2(g):
        _maxpool_forward_2x2.run(work, xp, _planes(out), _planes(argmax))
    else:
        _maxpool_forward.run(work, xp, _planes(out), _planes(argmax), g.FH, g.FW, g.SH, g.SW, g.PH, g.PW,
                             x.dtype.type(-np.inf))
    return out, argmax


def maxpool2d_backward(dout: np.ndarray, argmax: np.ndarray | None, input_shape: tuple[int, int, int, int],
                       pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                       pad: int | tuple[int, int] = 0, *, ties: str = "first",
                       x: np.ndarray | None = None) -> np.ndarray:
    """Parallel over the N*C planes, each owned by one iteration, so overlapping windows add up without races or
    per-thread buffers. 2x2 stride-2 unpadded pools write every ``dx`` element once (no zero-fill pass), for both
    tie rules. ``x`` may have any strides.
    """
    where = "maxpool2d_backward"
    dout, argmax, x, _ = _checks.check_maxpool2d_backward(where, dout, argmax, input_shape, pool_h, pool_w, stride,
                                                          pad, ties, x)
    return _maxpool2d_backward(dout, argmax, input_shape, pool_h, pool_w, stride, pad, ties=ties, x=x)


def _maxpool2d_backward(dout: np.ndarray, argmax: np.ndarray | None, input_shape: tuple[int, int, int, int],
                        pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                        pad: int | tuple[int, int] = 0, *, ties: str = "first",
                        x: np.ndarray | None = None) -> np.ndarray:
    g = _validate.geometry(input_shape, pool_h, pool_w, stride, pad)
    dx = np.empty((g.N, g.C, g.H, g.W), dtype=dout.dtype)
    if dx.size == 0:
        return dx
    dp = _planes(np.ascontiguousarray(dout))
    if x is not None:
        xp = _planes(np.ascontiguousarray(x))
        zero, one, nan = dout.dtype.type(0), dout.dtype.type(1), dout.dtype.type(np.nan)
        if _is_2x2_stride_2(g):
            _maxpool_backward_split_2x2.run(dx.size + x.size, dp, xp, _planes(dx), zero, one, nan)
        else:
            # three passes over every window: find the maximum, count it, share the gradient
            _maxpool_backward_split.run(dx.size + 3 * _window_reads(g), dp, xp, _planes(dx), g.FH, g.FW, g.SH,
                                        g.SW, g.PH, g.PW, x.dtype.type(-np.inf), zero, one, nan)
        return dx
    work = dx.size + dout.size
    if _is_2x2_stride_2(g):
        _maxpool_backward_2x2.run(work, dp, _planes(argmax), _planes(dx), dout.dtype.type(0))
    else:
        _maxpool_backward.run(work, dp, _planes(argmax), _planes(dx), g.FH, g.FW, g.SH, g.SW, g.PH, g.PW)
    return dx


def avgpool2d_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                      pad: int | tuple[int, int] = 0) -> np.ndarray:
    """Parallel over the N*C planes (module docstring); padding is skipped, not materialised."""
    x, _ = _checks.check_pool2d("avgpool2d_forward", x, pool_h, pool_w, stride, pad)
    return _avgpool2d_forward(x, pool_h, pool_w, stride, pad)


def _avgpool2d_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                       pad: int | tuple[int, int] = 0) -> np.ndarray:
    g = _validate.geometry(x.shape, pool_h, pool_w, stride, pad)
    out = np.empty((g.N, g.C, g.OH, g.OW), dtype=x.dtype)
    if out.size == 0:
        return out
    _avgpool_forward.run(_window_reads(g), _planes(np.ascontiguousarray(x)), _planes(out), g.FH, g.FW, g.SH, g.SW,
                         g.PH, g.PW, x.dtype.type(g.FH * g.FW), x.dtype.type(0))
    return out


def avgpool2d_backward(dout: np.ndarray, input_shape: tuple[int, int, int, int], pool_h: int, pool_w: int,
                       stride: int | tuple[int, int] | None = None, pad: int | tuple[int, int] = 0) -> np.ndarray:
    """Parallel over the N*C planes, each owned by one iteration, so overlapping windows add up without races."""
    dout, _ = _checks.check_pool2d_backward("avgpool2d_backward", dout, input_shape, pool_h, pool_w, stride, pad)
    return _avgpool2d_backward(dout, input_shape, pool_h, pool_w, stride, pad)


def _avgpool2d_backward(dout: np.ndarray, input_shape: tuple[int, int, int, int], pool_h: int, pool_w: int,
                        stride: int | tuple[int, int] | None = None, pad: int | tuple[int, int] = 0) -> np.ndarray:
    g = _validate.geometry(input_shape, pool_h, pool_w, stride, pad)
    dx = np.empty((g.N, g.C, g.H, g.W), dtype=dout.dtype)
    if dx.size == 0:
        return dx
    _avgpool_backward.run(dx.size + _window_reads(g), _planes(np.ascontiguousarray(dout)), _planes(dx), g.FH, g.FW,
                          g.SH, g.SW, g.PH, g.PW, dout.dtype.type(g.FH * g.FW))
    return dx

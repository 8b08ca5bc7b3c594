"""Stride-1 convolutions with few input channels, summed directly: the first layer of a conv net, its forward
pass and its filter gradient (nobody needs its input gradient).

With one input channel (or three) the other paths have little to multiply: im2col's GEMM has an inner dimension of
C * FH * FW per output pixel (9 for DeepConvNet's first layer, 75 for SimpleConvNet's on CIFAR) and Winograd's
products one of C, so both spend their time moving data (DeepConvNet's first layer, 1 -> 16 channels on 28x28,
batch 100, one thread: the im2col pipeline's backward without dx 2.3 ms; SimpleConvNet's, 3 -> 30 channels 5x5 on
32x32: 9-12 ms).

Filter gradients. Each image's channels are copied once into zero-bordered planes of pitch ``Xp = W + 2 PW``
(``OW + FW - 1``); each output-gradient plane is loaded by :func:`fastnn.kernels.winograd.grad_plane` (ReLU mask
and unpooling on the way; its sum is the bias gradient) into a plane of the same pitch whose extra columns stay
zero; and each tap's gradient is a dot product of that plane with the image shifted by the tap, in flat loops that
LLVM vectorises:

* 3x3, one channel: the 9 taps' sums in one loop per filter (0.87 ms for DeepConvNet's first layer);
* 5x5, up to :data:`_MAX_C5` channels: per channel and filter row, the 5 taps of the row for two filters at once
  (one load of the image shifted by a tap serves both filters): SimpleConvNet's CIFAR layer, batch 100, 11.6 ->
  6.7-7.0 ms on one thread, 5.3-6.3 -> 3.4-3.8 ms on two.

Each image's sums go to their own row and are added over the batch in image order: the same bits on any number of
threads. With ``need_dx`` the pipeline runs the whole backward. Taken where OW >= 16 (:func:`applies`); the sums'
order is not the GEMM's, so dW differs from the pipeline's in the last bits.

The forward (3x3, one channel: :func:`forward_applies`) takes a row of outputs at a time in explicit vectors
(:mod:`fastnn.kernels._simd`): the nine shifted image rows under it are loaded once and each filter's outputs are
nine multiply-adds of them, with the bias and ReLU on the way; pooling runs the im2col pipeline's epilogue on the
products. DeepConvNet's first layer with ReLU, batch 100, float32: 0.91 -> 0.32 ms on one thread, 0.70 ->
0.24-0.26 ms on two (an earlier direct sum in loops that LLVM vectorised, ~9 us an image, was no faster than the
pipeline's ~8). The 5x5 forward stays the pipeline's.
"""

from __future__ import annotations

import numpy as np
from numba import uintp

from .. import config
from .._jit import helper, slot_kernel
from .._validate import WindowGeometry
from . import conv as _conv
from ._simd import lanes, load_part, store_part, where_lt
from ._workspace import buffer
from .winograd import chunking, claim_chunk, grad_plane, gradient_source, outputs

#: Output columns from which this path is taken (narrower planes are mostly their extra columns).
_MIN_OW = 16

#: Images a claimed chunk holds at most: small, so that two threads end together (the scratch is one image).
_CHUNK_IMAGES = 4

#: Most input channels of a 5x5 convolution taken here. Measured on 3 (SimpleConvNet on CIFAR); with many channels
#: im2col's GEMM has a long inner dimension (25 C) and runs near BLAS's speed, which these dot products do not.
_MAX_C5 = 4


def applies(g: WindowGeometry, dtype: np.dtype) -> bool:
    """Whether :func:`filter_gradient` takes the convolution: stride 1, rows of >= 16 outputs, float32 or float64,
    and either a 3x3 filter of one input channel or a 5x5 one of at most :data:`_MAX_C5`."""
    kind = (g.C == 1 and g.FH == 3 and g.FW == 3) or (g.FH == 5 and g.FW == 5 and g.C <= _MAX_C5)
    return (kind and g.SH == 1 and g.SW == 1 and g.OW >= _MIN_OW and g.OH >= 1 and g.N >= 1
            and dtype in (np.float32, np.float64))


@helper
def _padded(x, n, xs, PH, PW, Xp, plane):
    """Image n of x (N, C, H, W) into the interiors of xs: channel c's zero-bordered plane of pitch Xp starts at
    element c * plane."""
    n = uintp(n)
    for c in range(x.shape[1]):
        for y in range(x.shape[2]):
            row = uintp(c * plane + (y + PH) * Xp + PW)
            for q in range(x.shape[3]):
                xs[row + uintp(q)] = x[n, uintp(c), uintp(y), uintp(q)]


def forward_applies(g: WindowGeometry, dtype: np.dtype) -> bool:
    """Whether :func:`forward` takes the convolution: where :func:`applies`, with a 3x3 filter of one channel."""
    return applies(g, dtype) and g.C == 1 and g.FH == 3 and g.FW == 3


#: The forward's flags: without ``reassoc``, so that each output adds its nine products in the order written
#: (each addition fused with its product). Measured, DeepConvNet's first layer with ReLU (batch 100, float32):
#: 0.46 ms on one thread, 0.34 on two with neither ``reassoc`` nor ``contract``; 0.32 and 0.24-0.26 with
#: ``contract``; the im2col pipeline it replaces took 0.91 and 0.70.
_IN_ORDER = config.FASTMATH - {"reassoc"}


@slot_kernel("window", fastmath=_IN_ORDER, claims=True)
def _forward3(slot, x, W9, b, out2, prod, xp, PH, PW, OH, OW, chunks, relu, pool, out, argmax, zero, counter):
    """The 3x3 one-channel convolution of x (N, 1, H, W) with filters W9 (FN, 9), tap ky * 3 + kx, plus b (FN,):
    each output ``sum_tap W9[f, tap] * x[n, 0, y - PH + ky, q - PW + kx]`` (taps in order, zeros outside), then
    ``+ b[f]``; through ReLU when ``relu`` (the ReLU kernel's test). Without ``pool`` into out2 (N * FN * OH, OW):
    the output (N, FN, OH, OW) as rows. With ``pool``, each image's products go to ``prod[slot]`` (FN * OH, OW)
    and :func:`fastnn.kernels.conv._epilogue` (the pipeline's: bias, ReLU, its max-pool) writes out and argmax
    (N, FN, OH // 2, OW // 2) from there. xp (S, OH + 2, OW + 2): each slot's zero-bordered image.

    One row of outputs at a time, a vector of lanes columns (a masked one for the rest): the nine shifted rows of
    the image are loaded once and serve every filter. The slots take chunks of images as they come, as
    :func:`_filter_gradient`'s.
    """
    N, FN = x.shape[0], W9.shape[0]
    xs = xp[slot]
    ps = prod[slot]
    flat = ps.reshape(ps.size)
    nl = lanes(xs)
    pairs = np.empty(OH // 2 * OW if pool else 0, dtype=xs.dtype)  # the pooled epilogue's scratch
    wins = np.empty(OH // 2 * OW if pool else 0, dtype=np.uint8)
    while True:
        n0, k = claim_chunk(counter, chunks, N)
        if k == 0:
            break
        for i in range(k):
            n = n0 + i
            _padded(x, n, xs.reshape(xs.size), PH, PW, xs.shape[1], 0)
            for y in range(OH):
                for j in range(0, OW, nl):
                    m = min(nl, OW - j)
                    a0 = load_part(xs, y, j, m, zero)
                    a1 = load_part(xs, y, j + 1, m, zero)
                    a2 = load_part(xs, y, j + 2, m, zero)
                    b0 = load_part(xs, y + 1, j, m, zero)
                    b1 = load_part(xs, y + 1, j + 1, m, zero)
                    b2 = load_part(xs, y + 1, j + 2, m, zero)
                    c0 = load_part(xs, y + 2, j, m, zero)
                    c1 = load_part(xs, y + 2, j + 1, m, zero)
                    c2 = load_part(xs, y + 2, j + 2, m, zero)
                    for f in range(FN):
                        s = a0 * W9[f, 0] + a1 * W9[f, 1] + a2 * W9[f, 2] + b0 * W9[f, 3] + b1 * W9[f, 4]
                        s = s + b2 * W9[f, 5] + c0 * W9[f, 6] + c1 * W9[f, 7] + c2 * W9[f, 8]
                        if pool:
                            store_part(ps, f * OH + y, j, s, m)
                            continue
                        v = s + b[f]
                        if relu:
                            v = where_lt(v, zero, zero, v)
                        store_part(out2, (n * FN + f) * OH + y, j, v, m)
            if pool:
                for f in range(FN):
                    _conv._epilogue(flat, f * OH * OW, b[f], relu, True, zero, OH, OW, out, argmax, n, f, pairs,
                                    wins)


def forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, g: WindowGeometry, ws: dict, *, relu: bool = False,
            pool: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """As :func:`fastnn.kernels.winograd.forward` (validated, same-dtype arrays; out, or (out, argmax) with
    ``pool``), for a convolution that :func:`forward_applies` to."""
    FN = W.shape[0]
    x = np.ascontiguousarray(x)
    out, argmax = outputs(g, FN, x.dtype, pool)
    chunks, _ = chunking(g.N, _CHUNK_IMAGES)
    slots = _forward3.threads(g.N * (g.H * g.W + FN * g.OH * g.OW))
    xp = buffer(ws, "conv2d.direct.xf", slots * (g.OH + 2) * (g.OW + 2), x.dtype).reshape(slots, g.OH + 2, -1)
    xp[:] = 0  # the borders, which every image leaves as they are
    prod = np.empty((slots, FN * g.OH if pool else 0, g.OW), dtype=x.dtype)
    out2 = out.reshape(-1, g.OW) if not pool else np.empty((0, g.OW), dtype=x.dtype)
    _forward3.run(slots, x, np.ascontiguousarray(W.reshape(FN, 9)), np.ascontiguousarray(b), out2, prod, xp, g.PH,
                  g.PW, g.OH, g.OW, chunks, relu, pool, out, argmax, x.dtype.type(0), np.zeros(1, dtype=np.int64))
    return (out, argmax) if pool else out


@slot_kernel("window", claims=True)
def _filter_gradient(slot, x, dout, out, argmax, dWn, dbn, xp, D, PH, PW, OH, OW, Xp, plane, chunks, mode, zero,
                     counter):
    """dWn[n, f, 3 * ky + kx]: image n's share of the filter gradient; dbn[n, f]: its output-gradient plane's sum
    (:func:`fastnn.kernels.winograd.grad_plane` in ``mode``). xp (S, plane): the image's zero-bordered plane of pitch
    Xp = OW + 2; D (S, OH * Xp), extra columns zero: each slot's scratch. The slots take chunks of images as they
    come (:func:`fastnn._jit.claim` on ``counter``, (1,) int64 zero). The arguments are
    :func:`_filter_gradient5`'s."""
    N, FN = x.shape[0], dWn.shape[1]
    P = OH * Xp
    row = uintp(Xp)  # the tap rows' shift, unsigned as the flat index it is added to
    xs = xp[slot]
    Ds = D[slot]
    one, two = uintp(1), uintp(2)
    while True:
        n0, k = claim_chunk(counter, chunks, N)
        if k == 0:
            break
        for i in range(k):
            n = n0 + i
            _padded(x, n, xs, PH, PW, row, plane)
            for f in range(FN):
                dbn[n, f] = grad_plane(dout, out, argmax, n, f, mode, zero, OH, OW, Ds, 0, 2 * Xp, Xp)
                s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero
                for j in range(P):
                    p = uintp(j)
                    q = p + row
                    r = q + row
                    g = Ds[p]
                    s00 += g * xs[p]
                    s01 += g * xs[p + one]
                    s02 += g * xs[p + two]
                    s10 += g * xs[q]
                    s11 += g * xs[q + one]
                    s12 += g * xs[q + two]
                    s20 += g * xs[r]
                    s21 += g * xs[r + one]
                    s22 += g * xs[r + two]
                dWn[n, f, 0], dWn[n, f, 1], dWn[n, f, 2] = s00, s01, s02
                dWn[n, f, 3], dWn[n, f, 4], dWn[n, f, 5] = s10, s11, s12
                dWn[n, f, 6], dWn[n, f, 7], dWn[n, f, 8] = s20, s21, s22


@helper
def _row_taps5(Ds, d0, d1, xs, base, P, zero):
    """The 5 taps of one filter row for two output-gradient planes (at d0 and d1 in Ds) against the image plane
    shifted from ``base``: ten sums, each over the P elements in order."""
    s0 = s1 = s2 = s3 = s4 = t0 = t1 = t2 = t3 = t4 = zero
    one, two, three, four = uintp(1), uintp(2), uintp(3), uintp(4)
    for j in range(P):
        p = uintp(j)
        g = Ds[d0 + p]
        h = Ds[d1 + p]
        q = base + p
        x0, x1, x2, x3, x4 = xs[q], xs[q + one], xs[q + two], xs[q + three], xs[q + four]
        s0 += g * x0
        s1 += g * x1
        s2 += g * x2
        s3 += g * x3
        s4 += g * x4
        t0 += h * x0
        t1 += h * x1
        t2 += h * x2
        t3 += h * x3
        t4 += h * x4
    return s0, s1, s2, s3, s4, t0, t1, t2, t3, t4


@slot_kernel("window", claims=True)
def _filter_gradient5(slot, x, dout, out, argmax, dWn, dbn, xp, D, PH, PW, OH, OW, Xp, plane, chunks, mode, zero,
                      counter):
    """dWn[n, f, (c * 5 + ky) * 5 + kx]: image n's share of a 5x5 filter gradient; dbn[n, f] as in
    :func:`_filter_gradient`. xp (S, C * plane): each slot's channel planes (pitch Xp, zero borders); D (S, 2 * OH *
    Xp): two output-gradient planes of pitch Xp, extra columns zero. Filters go in pairs (an odd last one is paired
    with itself: both its sums are the same numbers), each sum its own accumulator in one loop, so a filter's
    gradient does not depend on the filter it is paired with."""
    N, C = x.shape[0], x.shape[1]
    FN = dWn.shape[1]
    P = OH * Xp
    xs = xp[slot]
    Ds = D[slot]
    d0, d1 = uintp(0), uintp(P)
    while True:
        n0, k = claim_chunk(counter, chunks, N)
        if k == 0:
            break
        for i in range(k):
            n = n0 + i
            _padded(x, n, xs, PH, PW, Xp, plane)
            for f in range(0, FN, 2):
                f2 = min(f + 1, FN - 1)
                dbn[n, f] = grad_plane(dout, out, argmax, n, f, mode, zero, OH, OW, Ds, 0, 2 * Xp, Xp)
                dbn[n, f2] = grad_plane(dout, out, argmax, n, f2, mode, zero, OH, OW, Ds, P, 2 * Xp, Xp)
                for c in range(C):
                    for ky in range(5):
                        sums = _row_taps5(Ds, d0, d1, xs, uintp(c * plane + ky * Xp), P, zero)
                        t = (c * 5 + ky) * 5
                        for kx in range(5):
                            dWn[n, f, t + kx] = sums[kx]
                            dWn[n, f2, t + kx] = sums[5 + kx]


def filter_gradient(dout: np.ndarray, x: np.ndarray, W: np.ndarray, g: WindowGeometry, ws: dict,
                    out: np.ndarray | None = None,
                    argmax: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(dW, db) of a validated convolution that :func:`applies`, from ``dout`` as
    :func:`fastnn.kernels.winograd.backward` takes it (with ``out``: after a ReLU; with also ``argmax``: after a
    ReLU and a 2x2 max-pool). None when dW is not all finite: the extra columns' zeros times an infinity in x make
    NaNs that the other paths do not, and the caller computes the gradient by one of them."""
    FN = W.shape[0]
    x = np.ascontiguousarray(x)
    dout, out, argmax, mode = gradient_source(dout, out, argmax, FN)
    chunks, _ = chunking(g.N, _CHUNK_IMAGES)
    kernel = _filter_gradient if g.FW == 3 else _filter_gradient5
    slots = kernel.threads(g.N * (g.C * g.H * g.W + FN * g.OH * g.OW))
    Xp = g.OW + g.FW - 1  # W + 2 PW: the padded image's pitch
    plane = (g.OH + g.FH - 1) * Xp + g.FW - 1  # one padded channel, and room for the last row's shifted reads
    xp = buffer(ws, "conv2d.direct.x", slots * g.C * plane, x.dtype).reshape(slots, g.C * plane)
    planes = 1 if kernel is _filter_gradient else 2  # output-gradient planes a slot holds at once
    D = buffer(ws, "conv2d.direct.grad", slots * planes * g.OH * Xp, x.dtype).reshape(slots, -1)
    xp[:] = 0  # the borders, which every image leaves as they are
    D[:] = 0  # the extra columns, which grad_plane never writes
    dWn = np.empty((g.N, FN, g.C * g.FH * g.FW), dtype=x.dtype)
    dbn = np.empty((g.N, FN), dtype=x.dtype)
    kernel.run(slots, x, dout, out, argmax, dWn, dbn, xp, D, g.PH, g.PW, g.OH, g.OW, Xp, plane, chunks, mode,
               x.dtype.type(0), np.zeros(1, dtype=np.int64))
    dW = dWn.sum(axis=0)
    if not np.isfinite(dW).all():
        return None
    return dW.reshape(W.shape), dbn.sum(axis=0)

"""Filter gradients of stride-1 convolutions with few input channels, summed directly: the first layer of a conv
net, whose input gradient nobody needs.

With one input channel (or three) the other paths have little to multiply: im2col's GEMM has an inner dimension of
C * FH * FW per output pixel (9 for DeepConvNet's first layer, 75 for SimpleConvNet's on CIFAR) and Winograd's
products one of C, so both spend their time moving data (DeepConvNet's first layer, 1 -> 16 channels on 28x28,
batch 100, one thread: the im2col pipeline's backward without dx 2.3 ms; SimpleConvNet's, 3 -> 30 channels 5x5 on
32x32: 9-12 ms). Here each image's channels are copied once into zero-bordered planes of pitch ``Xp = W + 2 PW``
(``OW + FW - 1``); each output-gradient plane is loaded by :func:`fastnn.kernels.winograd.grad_plane` (ReLU mask
and unpooling on the way; its sum is the bias gradient) into a plane of the same pitch whose extra columns stay
zero; and each tap's gradient is a dot product of that plane with the image shifted by the tap, in flat loops that
LLVM vectorises:

* 3x3, one channel: the 9 taps' sums in one loop per filter (0.87 ms for DeepConvNet's first layer);
* 5x5, up to :data:`_MAX_C5` channels: per channel and filter row, the 5 taps of the row for two filters at once
  (one load of the image shifted by a tap serves both filters): SimpleConvNet's CIFAR layer, batch 100, 11.6 ->
  6.7-7.0 ms on one thread, 5.3-6.3 -> 3.4-3.8 ms on two.

Each image's sums go to their own row and are added over the batch in image order: the same bits on any number of
threads. The forward pass stays the pipeline's: a direct sum measured no faster there (~9 us an image against ~8
for the 3x3 one-channel layer, the output's writes dominate). With ``need_dx`` the pipeline runs the whole backward.
Taken where OW >= 16 (:func:`applies`); the sums' order is not the GEMM's, so dW differs from the pipeline's in the
last bits.
"""

from __future__ import annotations

import numpy as np
from numba import uintp

from .._jit import helper, slot_kernel
from .._validate import WindowGeometry
from ._workspace import buffer
from .winograd import chunking, claim_chunk, grad_plane, gradient_source

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

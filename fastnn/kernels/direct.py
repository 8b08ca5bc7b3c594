"""The filter gradient of a 3x3 stride-1 convolution of one input channel, summed directly: the first layer of an
MNIST conv net, whose input gradient nobody needs.

With one input channel the other paths have little to multiply: im2col's GEMM has an inner dimension of 9 per
output pixel and Winograd's products one of 1, so both spend their time moving data (DeepConvNet's first layer,
1 -> 16 channels on 28x28, batch 100, one thread: the im2col pipeline's backward without dx 2.3 ms). Here each
image is copied once into a zero-bordered plane of pitch ``OW + 2``; each output-gradient plane is loaded by
:func:`fastnn.kernels.winograd.grad_plane` (ReLU mask and unpooling on the way; its sum is the bias gradient) into
a plane of the same pitch whose two extra columns stay zero; and the 9 taps' gradients are 9 dot products of that
plane with the image shifted by the tap, in one flat loop that LLVM vectorises (0.87 ms). Each image's 9 * FN
sums go to its own row and are added over the batch in image order: the same bits on any number of threads.

The forward pass stays the pipeline's: a direct sum measured no faster there (~9 us an image against ~8, the
output's writes dominate). With ``need_dx`` the pipeline runs the whole backward. Taken where OW >= 16
(:func:`applies`); the sums' order is not the GEMM's, so dW differs from the pipeline's in the last bits.
"""

from __future__ import annotations

import numpy as np
from numba import uintp

from .._jit import claim, helper, slot_kernel
from .._validate import WindowGeometry
from ._workspace import buffer
from .winograd import chunk_span, chunking, grad_plane, gradient_source

#: Output columns from which this path is taken (narrower planes are mostly their extra columns).
_MIN_OW = 16

#: Images a claimed chunk holds at most: small, so that two threads end together (the scratch is one image).
_CHUNK_IMAGES = 4


def applies(g: WindowGeometry, dtype: np.dtype) -> bool:
    """Whether :func:`filter_gradient` takes the convolution: one input channel, a 3x3 stride-1 filter, rows of
    >= 16 outputs, float32 or float64."""
    return (g.C == 1 and g.FH == 3 and g.FW == 3 and g.SH == 1 and g.SW == 1 and g.OW >= _MIN_OW and g.OH >= 1
            and g.N >= 1 and dtype in (np.float32, np.float64))


@helper
def _padded(x, n, xs, PH, PW, Xp):
    """Image n of x (N, 1, H, W) into the interior of xs (a zero-bordered plane of pitch Xp)."""
    n = uintp(n)
    for y in range(x.shape[2]):
        row = uintp((y + PH) * Xp + PW)
        for c in range(x.shape[3]):
            xs[row + uintp(c)] = x[n, 0, uintp(y), uintp(c)]


@slot_kernel("window", claims=True)
def _filter_gradient(slot, x, dout, out, argmax, dWn, dbn, xp, D, PH, PW, OH, OW, chunks, mode, zero, counter):
    """dWn[n, f, 3 * ky + kx]: image n's share of the filter gradient; dbn[n, f]: its output-gradient plane's sum
    (:func:`fastnn.kernels.winograd.grad_plane` in ``mode``). xp (S, (OH + 2) * (OW + 2) + 2) and D (S, OH *
    (OW + 2)), both zeroed: each slot's scratch. The slots take chunks of images as they come
    (:func:`fastnn._jit.claim` on ``counter``, (1,) int64 zero)."""
    N, FN = x.shape[0], dWn.shape[1]
    Xp = uintp(OW + 2)
    P = OH * (OW + 2)
    xs = xp[slot]
    Ds = D[slot]
    one, two = uintp(1), uintp(2)
    while True:
        ch = claim(counter)
        if ch >= chunks:
            break
        n0, k = chunk_span(ch, chunks, N)
        for i in range(k):
            n = n0 + i
            _padded(x, n, xs, PH, PW, Xp)
            for f in range(FN):
                dbn[n, f] = grad_plane(dout, out, argmax, n, f, mode, zero, OH, OW, Ds, 0, 2 * (OW + 2), OW + 2)
                s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero
                for j in range(P):
                    p = uintp(j)
                    q = p + Xp
                    r = q + Xp
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
    slots = _filter_gradient.threads(g.N * (g.H * g.W + FN * g.OH * g.OW))
    size = (g.OH + 2) * (g.OW + 2) + 2
    xp = buffer(ws, "conv2d.direct.x", slots * size, x.dtype).reshape(slots, size)
    D = buffer(ws, "conv2d.direct.grad", slots * g.OH * (g.OW + 2), x.dtype).reshape(slots, -1)
    xp[:] = 0  # the border, which every image leaves as it is
    D[:] = 0  # the extra columns, which grad_plane never writes
    dWn = np.empty((g.N, FN, 9), dtype=x.dtype)
    dbn = np.empty((g.N, FN), dtype=x.dtype)
    _filter_gradient.run(slots, x, dout, out, argmax, dWn, dbn, xp, D, g.PH, g.PW, g.OH, g.OW, chunks, mode,
                         x.dtype.type(0), np.zeros(1, dtype=np.int64))
    dW = dWn.sum(axis=0)
    if not np.isfinite(dW).all():
        return None
    return dW.reshape(W.shape), dbn.sum(axis=0)

"""2-D convolution: im2col + BLAS, with the data movement compiled and parallel.

3x3 stride-1 convolutions (any padding) of two or more input channels take :mod:`fastnn.kernels.winograd` instead,
2.25x fewer multiplications (switch: :data:`fastnn.config.CONV_WINOGRAD`); those of one channel take the pipeline
below, but their filter gradient without dx :mod:`fastnn.kernels.direct`'s sums (as for 5x5 ones of up to four
channels); what follows is the path of every other geometry.

Layout. The batch is processed in chunks of ``m`` samples. Each chunk is unfolded into a column matrix
``col`` of shape ``(C*FH*FW, m*OH*OW)`` (C-contiguous, written by :func:`~fastnn.kernels.im2col.im2col_into`),
so every product is one large 2-D GEMM:

* forward: ``tmp = W2 @ col`` (FN, m*OH*OW); a compiled pass adds the bias while moving ``tmp`` into NCHW;
* backward: a compiled pass moves ``dout`` to ``(FN, m*OH*OW)`` and sums ``db`` on the way;
  ``dW2ᵀ += col @ doutᵀ``; ``dcol = W2ᵀ @ dout`` (into the same buffer) is folded back by col2im.

What was measured (2 cores shared with other jobs; N=64, C=64, 32x32, 3x3, FN=64, float32):

* Chunks: the whole batch's columns take 151 MB. Single-threaded, 8 MB-32 MB chunks were within ~15% of each
  other (smaller is a little faster: the buffer stays in cache). With 2 threads on a busy machine each chunk
  costs several parallel regions and BLAS calls whose threads must all be scheduled, and 4M-element chunks
  were ~2x slower than 16M. ``_CHUNK_ELEMENTS`` (8M elements) is the compromise; scratch buffers are kept per
  thread (``_workspace``) because a fresh large buffer pays its page faults on every call.
* ``cache=`` (keyword-only, opt-in): the forward pass keeps the whole batch's columns for the backward pass,
  which then neither unfolds ``x`` again nor chunks: ~1.5x faster than 8M chunks on the busy machine, at the
  price of holding the column matrix between the two calls.
* One GEMM per chunk rather than a batched matmul per sample: OpenBLAS is faster on (64, 576) @ (576, m*1024)
  than on m products of width 1024, and the transposes into and out of NCHW ride on the bias and db passes.
* dx as a correlation of the padded dout with the rotated filters (stride 1) instead of ``W2ᵀ @ dout`` and
  col2im: not faster single-threaded (5-10% slower), one more parallel region per chunk; not used.

1x1 convolutions with stride 1 and no padding need no unfolding in the forward pass: ``x[n]`` viewed as
``(C, H*W)`` already is the column matrix, and the forward pass is one batched matmul straight into NCHW.
"""

from __future__ import annotations

import numpy as np
from numba import prange, uintp

from .. import _checks, _validate
from .._jit import Kernel, claim, helper, kernel, slot_kernel
from .._validate import WindowGeometry
from . import _blas, direct, winograd, winograd43, winograd43_grad
from ._blas import set_threads_local
from ._workspace import buffer as _buffer
from ._workspace import workspace as _workspace
from .activations import _relu_backward, _relu_forward
from .im2col import col2im_into, fold_plane, im2col_into, unfold_plane
from .linalg import matmul_into
from .pooling import _beats, _max4, _maxpool2d_backward, _maxpool2d_forward
from .winograd import _gemm, chunk_span, chunking, claim_chunk, grad_plane

__all__ = ["conv2d_backward", "conv2d_forward", "conv2d_relu_backward", "conv2d_relu_forward",
           "conv2d_relu_maxpool_backward", "conv2d_relu_maxpool_forward"]

#: Elements of the per-chunk column buffer (``C*FH*FW * m*OH*OW``); a chunk holds at least one sample.
_CHUNK_ELEMENTS = 1 << 23

#: Column-matrix rows (``C*FH*FW``) from which the pipeline's backward pass takes the filter gradient as
#: ``dWᵀ += col @ doutᵀ`` with ``doutᵀ`` transposed into scratch first, rather than ``dW += dout @ colᵀ``: OpenBLAS
#: is ~20% slower when both operands hold the reduction along their rows (one thread, per chunk: CIFAR's (30, 4704) @
#: (4704, 75) 412 us against 321 + 33 us for the transpose; at 25 rows (MNIST 5x5) 254 against 207 + 65 us, at 9
#: rows 26 against 29 + 22 us).
_TRANSPOSED_DW_ROWS = 48

#: Bytes of one chunk's columns and product (``(C*FH*FW + FN) * m*OH*OW`` elements) in the pipeline: half of this
#: machine's 2 MB L2, so that the columns the unfold writes are still there for the GEMM, and the product for the
#: epilogue. Measured (SimpleConvNet CIFAR, fused forward / backward without dx, wall, 2 threads): 2 MB (Winograd's
#: ``_SLOT_BYTES``, used before) 4.56 / 5.21-5.43 ms, 1 MB 4.16-4.29 / 5.06-5.15, 512 KB 4.26-4.29 / 5.08-5.10,
#: 4 MB 4.94 / 5.49-6.15.
_PIPE_SLOT_BYTES = 1 << 20

#: Bytes of one image's columns and product (``(C*FH*FW + FN) * OH*OW`` elements) up to which a convolution runs
#: as a per-thread pipeline (:func:`_pipe_forward`): small images and few channels, the book's conv nets. Larger
#: ones keep the batch-wide GEMMs above.
_PIPELINE_BYTES = 1 << 20


@kernel("window")
def _bias_to_nchw(tmp, b, out):
    """out[n, f, p] = tmp[f, n, p] + b[f]; tmp (FN, m, P), b (FN,), out (m, FN, P)."""
    FN, m, P = tmp.shape
    for t in prange(m * FN):
        n = t // FN
        f = t - n * FN
        src = tmp[f, n]
        dst = out[n, f]
        bf = b[f]
        for p in range(P):
            dst[p] = src[p] + bf


@kernel("window")
def _dout_to_fnp(dout, doutT, db):
    """doutT[f, n, p] = dout[n, f, p] and db[f] += sum over (n, p); dout (m, FN, P), doutT (FN, m, P).

    Parallel over filters: each thread owns rows ``f`` of doutT and the element db[f], so no races.
    """
    m, FN, P = dout.shape
    for f in prange(FN):
        acc = db[f]
        for n in range(m):
            src = dout[n, f]
            dst = doutT[f, n]
            for p in range(P):
                v = src[p]
                dst[p] = v
                acc += v
        db[f] = acc


def _chunk(g: WindowGeometry, FN: int) -> int:
    """Samples per chunk: as many as keep the column and the (FN, m*OH*OW) buffers within ``_CHUNK_ELEMENTS``."""
    per_sample = max(g.C * g.FH * g.FW, FN) * g.OH * g.OW
    return max(1, min(g.N, _CHUNK_ELEMENTS // max(per_sample, 1)))


def _is_pointwise(g: WindowGeometry) -> bool:
    return g.FH == 1 and g.FW == 1 and g.SH == 1 and g.SW == 1 and g.PH == 0 and g.PW == 0


def _cached_columns(cache: dict | None, x: np.ndarray, g: WindowGeometry) -> np.ndarray | None:
    """The forward pass's column matrix (CK, N*OH*OW) if ``cache`` holds it for this very ``x``, else None."""
    if cache is None or cache.get("conv2d.x") is not x:
        return None
    if cache.get("conv2d.key") != (g, x.dtype.str):
        return None
    return cache["conv2d.col"][:g.C * g.FH * g.FW * g.N * g.OH * g.OW].reshape(g.C * g.FH * g.FW, -1)


def _unfold_multiply(x: np.ndarray, W2: np.ndarray, b: np.ndarray, g: WindowGeometry, out3: np.ndarray, m: int,
                     ws: dict) -> None:
    """out3 (N, FN, OH*OW) = W2 (FN, CK) @ im2col(x) + b, ``m`` samples at a time (the forward pass's core).

    Leaves the last chunk's columns at the start of the workspace's column buffer (all of them when m == N).
    """
    FN, ck = W2.shape
    ohw = g.OH * g.OW
    col_buf = _buffer(ws, "conv2d.col", ck * m * ohw, x.dtype)
    tmp_buf = _buffer(ws, "conv2d.fnp", FN * m * ohw, x.dtype)
    for n0 in range(0, g.N, m):
        k = min(m, g.N - n0)
        col = col_buf[:ck * k * ohw].reshape(ck, k * ohw)
        tmp = tmp_buf[:FN * k * ohw].reshape(FN, k * ohw)
        im2col_into(x[n0:n0 + k], col, g)
        matmul_into(W2, col, tmp)
        _bias_to_nchw.run(tmp.size, tmp.reshape(FN, k, ohw), b, out3[n0:n0 + k])


# ---------------------------------------------------------------------------------------------------------------
# The per-thread pipeline for small convolutions: each thread takes chunks of images and runs, on its own scratch
# that stays in its cache, im2col -> one single-threaded OpenBLAS GEMM -> the epilogue into the output (bias, and
# the fused ReLU and 2x2 max-pool); backward: the output gradient (ReLU-masked) -> im2col again -> dW and dcol
# GEMMs -> col2im. The column matrix never goes to memory (SimpleConvNet's on a CIFAR batch is 24 MB). The filter
# gradient is summed in a fixed number of partial sums over fixed sets of chunks, so results are the same bits with
# any number of threads (as :mod:`fastnn.kernels.winograd`).


@helper
def _epilogue(src, s0, bias, relu, pool, zero, OH, OW, out, argmax, n, f, pairs, wins):
    """out[n, f] = src[s0:s0 + OH*OW] + bias, through ReLU when ``relu`` (the ReLU kernel's test), then when
    ``pool`` its 2x2 stride-2 max-pool with the max-pool kernel's tournament (out and argmax (N, FN, OH // 2,
    OW // 2)); else out (N, FN, OH, OW). pairs, wins (>= OH // 2 * OW,): scratch of the pooled pass.

    With an even OW the pooled pass is two: first every row's horizontal pairs, whole plane in one flat loop (a
    pair never straddles two rows), their maxima into ``pairs`` and which one won into ``wins``; then the vertical
    match of each window's two pairs. The same tournament as :func:`~fastnn.kernels.pooling._max4`, so the same
    bits; the argmax without a branch. Measured (one thread, SimpleConvNet's 3000 28x28 planes a CIFAR batch):
    2.37 -> 0.91 ms: the one-pass loop per window neither vectorises (rows of 14 windows) nor avoids a branch
    mispredicted on random data per window.

    Every array is indexed whole, never through a view of a plane or row (a view is an atomic increment and
    decrement of the array's reference count): the CIFAR batch's fused forward, one thread, 7.4-7.6 -> 6.7 ms.
    """
    n = uintp(n)
    f = uintp(f)
    if not pool:
        for oh in range(OH):
            for ow in range(OW):
                v = src[uintp(s0 + oh * OW + ow)] + bias
                out[n, f, uintp(oh), uintp(ow)] = zero if relu and v < 0 else v
        return
    POH, POW = out.shape[2], out.shape[3]
    if OW % 2:
        for py in range(POH):
            top = s0 + 2 * py * OW
            for px in range(POW):
                a = src[uintp(top + 2 * px)] + bias
                b = src[uintp(top + 2 * px + 1)] + bias
                c = src[uintp(top + OW + 2 * px)] + bias
                d = src[uintp(top + OW + 2 * px + 1)] + bias
                if relu:
                    a = zero if a < 0 else a
                    b = zero if b < 0 else b
                    c = zero if c < 0 else c
                    d = zero if d < 0 else d
                out[n, f, uintp(py), uintp(px)], argmax[n, f, uintp(py), uintp(px)] = _max4(a, b, c, d)
        return
    if relu:  # (two loops, so that neither tests relu per element)
        for e in range(POH * OW):
            a = src[uintp(s0 + 2 * e)] + bias
            b = src[uintp(s0 + 2 * e + 1)] + bias
            a = zero if a < 0 else a
            b = zero if b < 0 else b
            t = _beats(b, a)
            pairs[uintp(e)] = b if t else a
            wins[uintp(e)] = t
    else:
        for e in range(POH * OW):
            a = src[uintp(s0 + 2 * e)] + bias
            b = src[uintp(s0 + 2 * e + 1)] + bias
            t = _beats(b, a)
            pairs[uintp(e)] = b if t else a
            wins[uintp(e)] = t
    two = np.uint8(2)
    for py in range(POH):
        top = 2 * py * POW  # the window row's top pairs; its bottom pairs follow at + POW
        for px in range(POW):
            m_top = pairs[uintp(top + px)]
            m_bottom = pairs[uintp(top + POW + px)]
            t_top = wins[uintp(top + px)]
            t_bottom = wins[uintp(top + POW + px)]
            w = _beats(m_bottom, m_top)
            out[n, f, uintp(py), uintp(px)] = m_bottom if w else m_top
            argmax[n, f, uintp(py), uintp(px)] = t_top + np.uint8(w) * (two + t_bottom - t_top)  # else t_top


@slot_kernel("window", claims=True)
def _pipe_forward(slot, x, W2, b, out, argmax, col, tmp, FH, FW, SH, SW, PH, PW, OH, OW, chunks, relu, pool,
                  zero, counter):
    """out = conv(x (N, C, H, W), W2 (FN, C*FH*FW)) + b, with the epilogue's ReLU and pooling; col (S, CK, w) and
    tmp (S, FN, w), w >= m*OH*OW (m: the largest of the chunks, by :func:`~fastnn.kernels.winograd.chunk_span`):
    the scratch of each of S slots. The slots take the chunks as they come (:func:`fastnn._jit.claim` on
    ``counter``, (1,) int64 zero), as :func:`fastnn.kernels.winograd43._forward`: with slot s taking chunks s,
    s + S, ..., DeepConvNet's first layer on two threads of a busy machine had its slots end 0.6 ms apart
    (median of 60 steps), the slot thread starting 0.26 ms late."""
    N, C = x.shape[0], x.shape[1]
    FN, CK = W2.shape
    w = col.shape[2]
    P = OH * OW
    K = FH * FW
    cs = col[slot]
    ts = tmp[slot]
    pairs = np.empty(OH // 2 * OW, dtype=ts.dtype)  # the epilogue's scratch
    wins = np.empty(OH // 2 * OW, dtype=np.uint8)
    while True:
        n0, k = claim_chunk(counter, chunks, N)
        if k == 0:
            break
        for i in range(k):
            for c in range(C):
                unfold_plane(x[n0 + i, c], cs, c * K, i * P, FH, FW, SH, SW, PH, PW, OH, OW)
        before = set_threads_local(1)
        _gemm(False, False, FN, k * P, CK, W2, CK, cs, w, 0.0, ts, w)
        set_threads_local(before)
        for f in range(FN):
            tf = ts[f]
            for i in range(k):
                _epilogue(tf, i * P, b[f], relu, pool, zero, OH, OW, out, argmax, n0 + i, f, pairs, wins)


@slot_kernel("window", claims=True)
def _pipe_backward(slot, x, dout, out, argmax, W2, dWg, dbp, dx, col, dT, dTT, FH, FW, SH, SW, PH, PW, OH, OW,
                   chunks, need_dx, mode, zero, counter):
    """dWg[g] (FN, CK) = sum of dT @ col^T over chunks g, g + G, ... (G = len(dWg)); dbp (N, FN) = per-plane sums of
    the output gradient (:func:`fastnn.kernels.winograd.grad_plane` in ``mode``); dx when need_dx. col, dT: each
    slot's scratch, as in :func:`_pipe_forward`; the slots take the groups as they come (:func:`fastnn._jit.claim`
    on ``counter``; a group's chunks, and so its sum, are fixed: the same bits with any number of threads; with
    slot s taking groups s, s + S, ..., DeepConvNet's first layer on a busy machine had its two slots end 1.2 ms
    apart, median of 60 steps). With dTT (S, w, FN) rather than
    an empty (S, 0, FN), dWg[g] (CK, FN) is the transpose, summed as col @ dT^T with dT^T copied into dTT
    (:data:`_TRANSPOSED_DW_ROWS`)."""
    N, C = x.shape[0], x.shape[1]
    FN, CK = W2.shape
    G, w = dWg.shape[0], col.shape[2]
    P = OH * OW
    K = FH * FW
    cs = col[slot]
    ds = dT[slot]
    dsT = dTT[slot]
    transposed = dsT.shape[0] > 0
    while True:
        g = claim(counter)
        if g >= G:
            break
        dWg[g][:] = 0
        for ch in range(g, chunks, G):
            n0, k = chunk_span(ch, chunks, N)
            for f in range(FN):
                df = ds[f]
                for i in range(k):
                    dbp[n0 + i, f] = grad_plane(dout, out, argmax, n0 + i, f, mode, zero, OH, OW, df, i * P, 2 * OW,
                                                OW)
            for i in range(k):
                for c in range(C):
                    unfold_plane(x[n0 + i, c], cs, c * K, i * P, FH, FW, SH, SW, PH, PW, OH, OW)
            before = set_threads_local(1)
            if transposed:  # dWg[g] (CK, FN) += col @ dT^T
                for p in range(k * P):  # (here rather than in a helper: a helper is a compilation of its own)
                    for f in range(FN):
                        dsT[p, f] = ds[f, p]
                a, lda, b, ldb, rows, cols, trans_b = cs, w, dsT, FN, CK, FN, False
            else:  # dWg[g] (FN, CK) += dT @ col^T
                a, lda, b, ldb, rows, cols, trans_b = ds, w, cs, w, FN, CK, True
            _gemm(False, trans_b, rows, cols, k * P, a, lda, b, ldb, 1.0, dWg[g], cols)  # one call site: compiles once
            if need_dx:
                _gemm(True, False, CK, k * P, FN, W2, CK, ds, w, 0.0, cs, w)
            set_threads_local(before)
            if need_dx:
                for i in range(k):
                    for c in range(C):
                        fold_plane(cs, c * K, i * P, dx[n0 + i, c], FH, FW, SH, SW, PH, PW, OH, OW)


def _pipelined(g: WindowGeometry, FN: int, dtype: np.dtype) -> bool:
    """Whether the per-thread pipeline takes this convolution: BLAS callable, nothing empty, one image's scratch
    within ``_PIPELINE_BYTES``."""
    ck, ohw = g.C * g.FH * g.FW, g.OH * g.OW
    return (_blas.AVAILABLE and g.N > 0 and ck > 0 and FN > 0 and ohw > 0 and dtype in (np.float32, np.float64)
            and (ck + FN) * ohw * np.dtype(dtype).itemsize <= _PIPELINE_BYTES)


def _pipe_schedule(knl: Kernel, g: WindowGeometry, FN: int, dtype: np.dtype,
                   ws: dict) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of chunks (:func:`fastnn.kernels.winograd.chunking`: at least two, so two threads share even a small
    batch) and each thread's scratch col (S, CK, m*OH*OW), tmp (S, FN, m*OH*OW) for chunks of at most m images; one
    slot (run by :class:`fastnn._jit.SlotKernel`, as the Winograd bodies: no ``prange`` twin to compile) per
    thread."""
    ck, ohw = g.C * g.FH * g.FW, g.OH * g.OW
    work = g.N * (ck + FN) * ohw
    threads = knl.threads(work)
    chunks, m = chunking(g.N, max(1, min(g.N, _PIPE_SLOT_BYTES // ((ck + FN) * ohw * np.dtype(dtype).itemsize))))
    col = _buffer(ws, "conv2d.pipe.col", threads * ck * m * ohw, dtype).reshape(threads, ck, m * ohw)
    tmp = _buffer(ws, "conv2d.pipe.fnp", threads * FN * m * ohw, dtype).reshape(threads, FN, m * ohw)
    return chunks, col, tmp


def _pipe_conv_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, g: WindowGeometry, ws: dict, *,
                       relu: bool = False, pool: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """As :func:`fastnn.kernels.winograd.forward`, by the pipeline."""
    FN = W.shape[0]
    x = np.ascontiguousarray(x)
    out, argmax = winograd.outputs(g, FN, x.dtype, pool)
    chunks, col, tmp = _pipe_schedule(_pipe_forward, g, FN, x.dtype, ws)
    _pipe_forward.run(len(col), x, np.ascontiguousarray(W.reshape(FN, -1)), np.ascontiguousarray(b), out, argmax, col,
                      tmp, g.FH, g.FW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, chunks, relu, pool, x.dtype.type(0),
                      np.zeros(1, dtype=np.int64))
    return (out, argmax) if pool else out


def _fast_path(x: np.ndarray, W: np.ndarray, stride: int | tuple[int, int], pad: int | tuple[int, int],
               cache: dict | None) -> tuple[tuple | None, WindowGeometry]:
    """The (forward, backward) pair of the path that fuses ReLU and pooling for this convolution -- Winograd, else
    the pipeline -- or None; and the geometry. When there is one, the columns a ``cache`` holds are stale."""
    g = _validate.geometry(x.shape, W.shape[2], W.shape[3], stride, pad)
    pipelined = _pipelined(g, W.shape[0], x.dtype)
    # One input channel goes to the pipeline even when 3x3: Winograd's 16 products then have an inner dimension of
    # 1 and its transforms dominate (DeepConvNet's first layer, 1->16 on 28x28, one thread: forward 2.2 -> 1.2 ms,
    # backward without dx 2.6 -> 2.0 ms; with two channels Winograd's backward is already ahead). Its filter
    # gradient alone, where the direct sum applies, is that sum's (the same layer: 2.3 -> 0.87 ms; and a 5x5 first
    # layer's: SimpleConvNet on CIFAR, one thread, 11.6 -> 6.7-7.0 ms), and so is a 3x3 one's forward (the same
    # layer with ReLU: 0.91 -> 0.32 ms)
    if pipelined and direct.applies(g, x.dtype):
        path = (direct.forward if direct.forward_applies(g, x.dtype) else _pipe_conv_forward), _direct_backward
    elif winograd.applies(g, W.shape[0], x.dtype) and not (g.C == 1 and pipelined):
        # each pass picks F(4x4, 3x3) or F(2x2, 3x3) by the shapes (winograd43.chosen, winograd43_grad.takes_f43)
        forward = winograd43.forward if winograd43.chosen(g, W.shape[0], x.dtype) else winograd.forward
        path = forward, winograd43_grad.backward
    elif pipelined:
        path = _pipe_conv_forward, _pipe_conv_backward
    else:
        return None, g
    if cache is not None:
        cache["conv2d.x"] = None
    return path, g


def _direct_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, g: WindowGeometry, ws: dict, need_dx: bool,
                     out: np.ndarray | None = None,
                     argmax: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """As :func:`fastnn.kernels.winograd.backward`: without dx, the filter gradient by
    :func:`fastnn.kernels.direct.filter_gradient`; everything by the pipeline when dx is needed or that dW is not
    finite."""
    grads = None if need_dx else direct.filter_gradient(dout, x, W, g, ws, out, argmax)
    if grads is None:
        return _pipe_conv_backward(dout, x, W, g, ws, need_dx, out, argmax)
    return None, *grads


def _pipe_conv_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, g: WindowGeometry, ws: dict, need_dx: bool,
                        out: np.ndarray | None = None,
                        argmax: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """As :func:`fastnn.kernels.winograd.backward`, by the pipeline."""
    FN = W.shape[0]
    x = np.ascontiguousarray(x)
    dout, out, argmax, mode = winograd.gradient_source(dout, out, argmax, FN)
    chunks, col, dT = _pipe_schedule(_pipe_backward, g, FN, x.dtype, ws)
    ck = g.C * g.FH * g.FW
    groups = max(1, min(chunks, winograd._GROUPS))
    transposed = ck >= _TRANSPOSED_DW_ROWS
    dWg = np.empty((groups, ck, FN) if transposed else (groups, FN, ck), dtype=x.dtype)
    S, w = dT.shape[0], dT.shape[2]
    wT = w if transposed else 0
    dTT = _buffer(ws, "conv2d.pipe.fnpT", S * wT * FN, x.dtype).reshape(S, wT, FN)
    dbp = np.empty((g.N, FN), dtype=x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else np.empty((1, 1, 1, 1), dtype=x.dtype)
    _pipe_backward.run(len(col), x, dout, out, argmax, np.ascontiguousarray(W.reshape(FN, -1)), dWg, dbp, dx, col, dT,
                       dTT, g.FH, g.FW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, chunks, need_dx, mode, x.dtype.type(0),
                       np.zeros(1, dtype=np.int64))
    dW = dWg.sum(axis=0)
    dW = np.ascontiguousarray(dW.T) if transposed else dW
    return (dx if need_dx else None), dW.reshape(W.shape), dbp.sum(axis=0)


def conv2d_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                   pad: int | tuple[int, int] = 0, *, cache: dict | None = None) -> np.ndarray:
    """im2col + one OpenBLAS GEMM per chunk of samples, the bias added while moving the product into NCHW (module
    docstring: layout and measurements); 3x3 stride-1 filters take :mod:`fastnn.kernels.winograd`, 1x1 stride-1
    unpadded ones a batched matmul with no unfolding. ``x`` may have any strides; ``out`` is C-contiguous.

    With ``cache``, the whole batch's column matrix (``C*FH*FW * N*OH*OW`` elements) is kept in it for the backward
    pass, which then neither unfolds ``x`` again nor chunks (~1.5x faster), and its scratch memory is reused from
    call to call.
    """
    x_arg = x
    x, W, b, _ = _checks.check_conv2d_forward("conv2d_forward", x, W, b, stride, pad, cache)
    out = _conv2d_forward(x, W, b, stride, pad, cache=cache)
    _validate.adopt_cached(cache, "conv2d.x", x, x_arg)
    return out


def _conv2d_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                    pad: int | tuple[int, int] = 0, *, cache: dict | None = None) -> np.ndarray:
    g = _validate.geometry(x.shape, W.shape[2], W.shape[3], stride, pad)
    FN = W.shape[0]
    ck, ohw = g.C * g.FH * g.FW, g.OH * g.OW
    if cache is not None:
        cache["conv2d.x"] = None  # whatever happens below, older columns no longer match
    path, _ = _fast_path(x, W, stride, pad, cache)
    if path is not None:
        return path[0](x, W, b, g, _workspace(cache))
    out = np.empty((g.N, FN, g.OH, g.OW), dtype=x.dtype)
    if not out.size:
        return out
    W2 = np.ascontiguousarray(W.reshape(FN, ck))
    b = np.ascontiguousarray(b)
    out3 = out.reshape(g.N, FN, ohw)
    if _is_pointwise(g):
        x3 = np.ascontiguousarray(x).reshape(g.N, g.C, ohw)
        np.matmul(W2, x3, out=out3)
        out3 += b[:, None]
        return out
    m = g.N if cache is not None else _chunk(g, FN)
    _unfold_multiply(x, W2, b, g, out3, m, _workspace(cache))
    if cache is not None:
        cache["conv2d.x"] = x
        cache["conv2d.key"] = (g, x.dtype.str)
    return out


def conv2d_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, stride: int | tuple[int, int] = 1,
                    pad: int | tuple[int, int] = 0, *, cache: dict | None = None,
                    need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Per chunk of samples: ``dout`` moved to (FN, m*OH*OW) with ``db`` summed on the way, ``dW += col @ dout^T``
    and ``dcol = W^T @ dout`` (written over the columns), folded back by col2im; 3x3 stride-1 filters take
    :mod:`fastnn.kernels.winograd`. ``dout`` may have any strides; the results are C-contiguous.

    With ``cache``, the forward pass's columns are used when this is the same ``x`` object, then overwritten by the
    column gradient, so a second backward call with the same cache unfolds ``x`` itself.
    """
    x_arg = x
    dout, x, W, _, need_dx = _checks.check_conv2d_backward("conv2d_backward", dout, x, W, stride, pad, cache,
                                                           need_dx)
    _validate.adopt_cached(cache, "conv2d.x", x_arg, x)
    return _conv2d_backward(dout, x, W, stride, pad, cache=cache, need_dx=need_dx)


def _conv2d_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, stride: int | tuple[int, int] = 1,
                     pad: int | tuple[int, int] = 0, *, cache: dict | None = None,
                     need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    g = _validate.geometry(x.shape, W.shape[2], W.shape[3], stride, pad)
    FN = W.shape[0]
    ck, ohw = g.C * g.FH * g.FW, g.OH * g.OW
    dtype = x.dtype
    path, _ = _fast_path(x, W, stride, pad, cache)
    if path is not None:
        return path[1](dout, x, W, g, _workspace(cache), need_dx)
    dWT = np.zeros((ck, FN), dtype=dtype)
    db = np.zeros(FN, dtype=dtype)
    if not (g.N and FN):
        return np.zeros(x.shape, dtype=dtype) if need_dx else None, np.zeros(W.shape, dtype=dtype), db
    dx = np.empty(x.shape, dtype=dtype) if need_dx else None
    dout3 = dout.reshape(g.N, FN, ohw)
    cols = _cached_columns(cache, x, g)
    if cache is not None:
        cache["conv2d.x"] = None  # the columns are overwritten below
    m = g.N if cols is not None else _chunk(g, FN)
    ws = _workspace(cache)
    col_buf = cols.reshape(-1) if cols is not None else _buffer(ws, "conv2d.col", ck * m * ohw, dtype)
    doutT_buf = _buffer(ws, "conv2d.fnp", FN * m * ohw, dtype)
    W2T = np.ascontiguousarray(W.reshape(FN, ck).T)
    dWT_part = np.empty((ck, FN), dtype=dtype)
    for n0 in range(0, g.N, m):
        k = min(m, g.N - n0)
        col = col_buf[:ck * k * ohw].reshape(ck, k * ohw)
        doutT = doutT_buf[:FN * k * ohw].reshape(FN, k * ohw)
        _dout_to_fnp.run(doutT.size, dout3[n0:n0 + k], doutT.reshape(FN, k, ohw), db)
        if cols is None:
            im2col_into(x[n0:n0 + k], col, g)
        matmul_into(col, doutT.T, dWT_part)
        dWT += dWT_part
        if not need_dx:
            continue
        matmul_into(W2T, doutT, col)  # dcol overwrites the columns, which are no longer needed
        if g.C:
            col2im_into(col, dx[n0:n0 + k], g)
    return dx, np.ascontiguousarray(dWT.T).reshape(W.shape), db


# ---------------------------------------------------------------------------------------------------------------
# Convolution + ReLU (+ 2x2 max-pool): the Winograd path and the pipeline apply ReLU in their output pass and pool
# each 2x2 window as it is made, so the full-size output is never written; their backward applies the ReLU mask
# (and unpools) while loading the output gradient. Other geometries run the steps one after another.


def conv2d_relu_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                        pad: int | tuple[int, int] = 0, *, cache: dict | None = None) -> np.ndarray:
    """3x3 stride-1 filters: ReLU inside the Winograd output transform (one write of the output); otherwise
    :func:`conv2d_forward` then ReLU."""
    x_arg = x
    x, W, b, _ = _checks.check_conv2d_forward("conv2d_relu_forward", x, W, b, stride, pad, cache)
    out = _conv2d_relu_forward(x, W, b, stride, pad, cache=cache)
    _validate.adopt_cached(cache, "conv2d.x", x, x_arg)
    return out


def _conv2d_relu_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                         pad: int | tuple[int, int] = 0, *, cache: dict | None = None) -> np.ndarray:
    path, g = _fast_path(x, W, stride, pad, cache)
    if path is not None:
        return path[0](x, W, b, g, _workspace(cache), relu=True)
    return _relu_forward(_conv2d_forward(x, W, b, stride, pad, cache=cache))


def conv2d_relu_backward(dout: np.ndarray, out: np.ndarray, x: np.ndarray, W: np.ndarray,
                         stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0, *,
                         cache: dict | None = None,
                         need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """3x3 stride-1 filters: the ReLU mask applied while the output gradient is loaded into the Winograd
    transform; otherwise ReLU's backward then :func:`conv2d_backward`."""
    x_arg = x
    dout, out, x, W, _, need_dx = _checks.check_conv2d_relu_backward("conv2d_relu_backward", dout, out, x, W, stride,
                                                                     pad, cache, need_dx)
    _validate.adopt_cached(cache, "conv2d.x", x_arg, x)
    return _conv2d_relu_backward(dout, out, x, W, stride, pad, cache=cache, need_dx=need_dx)


def _conv2d_relu_backward(dout: np.ndarray, out: np.ndarray, x: np.ndarray, W: np.ndarray,
                          stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0, *,
                          cache: dict | None = None,
                          need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    path, g = _fast_path(x, W, stride, pad, cache)
    if path is not None:
        return path[1](dout, x, W, g, _workspace(cache), need_dx, out=out)
    return _conv2d_backward(_relu_backward(dout, out), x, W, stride, pad, cache=cache, need_dx=need_dx)


def conv2d_relu_maxpool_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                                pad: int | tuple[int, int] = 0, *,
                                cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """3x3 stride-1 filters: each 2x2 Winograd output tile, through ReLU, is pooled where it is made; only the
    pooled output is written. Otherwise :func:`conv2d_relu_forward` then the max-pool kernel."""
    x_arg = x
    x, W, b, _ = _checks.check_conv2d_relu_maxpool_forward("conv2d_relu_maxpool_forward", x, W, b, stride, pad,
                                                           cache)
    out = _conv2d_relu_maxpool_forward(x, W, b, stride, pad, cache=cache)
    _validate.adopt_cached(cache, "conv2d.x", x, x_arg)
    return out


def _conv2d_relu_maxpool_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                                 pad: int | tuple[int, int] = 0, *,
                                 cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    path, g = _fast_path(x, W, stride, pad, cache)
    if path is not None:
        return path[0](x, W, b, g, _workspace(cache), relu=True, pool=True)
    return _maxpool2d_forward(_conv2d_relu_forward(x, W, b, stride, pad, cache=cache), 2, 2, 2)


def conv2d_relu_maxpool_backward(dout: np.ndarray, out: np.ndarray, argmax: np.ndarray, x: np.ndarray,
                                 W: np.ndarray, stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0,
                                 *, cache: dict | None = None,
                                 need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """3x3 stride-1 filters and the pipeline's geometries: the pooled gradient is unpooled and ReLU-masked while
    it is loaded into the transform or column pass (:func:`fastnn.kernels.winograd.grad_plane`; the full-size
    gradient is never written). Otherwise the ReLU mask on the pooled gradient, the max-pool kernel's backward,
    then :func:`conv2d_backward`."""
    x_arg = x
    dout, out, argmax, x, W, g, need_dx = _checks.check_conv2d_relu_maxpool_backward(
        "conv2d_relu_maxpool_backward", dout, out, argmax, x, W, stride, pad, cache, need_dx)
    _validate.adopt_cached(cache, "conv2d.x", x_arg, x)
    return _conv2d_relu_maxpool_backward(dout, out, argmax, x, W, stride, pad, cache=cache, need_dx=need_dx)


def _conv2d_relu_maxpool_backward(dout: np.ndarray, out: np.ndarray, argmax: np.ndarray, x: np.ndarray,
                                  W: np.ndarray, stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0,
                                  *, cache: dict | None = None,
                                  need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    path, g = _fast_path(x, W, stride, pad, cache)
    if path is not None:
        return path[1](dout, x, W, g, _workspace(cache), need_dx, out=out, argmax=argmax)
    dconv = _maxpool2d_backward(_relu_backward(dout, out), argmax, (g.N, W.shape[0], g.OH, g.OW), 2, 2, 2)
    return _conv2d_backward(dconv, x, W, stride, pad, cache=cache, need_dx=need_dx)

"""2-D convolution: im2col + BLAS, with the data movement compiled and parallel.

Layout. The batch is processed in chunks of ``m`` samples. Each chunk is unfolded into a column matrix
``col`` of shape ``(C*FH*FW, m*OH*OW)`` (C-contiguous; :func:`~fastnn.kernels.im2col.im2col_into` writes it
through the view ``(m, C*FH*FW, OH*OW)``), so every product is one large 2-D GEMM:

* forward: ``tmp = W2 @ col`` (FN, m*OH*OW); a compiled pass adds the bias while moving ``tmp`` into NCHW;
* backward: a compiled pass moves ``dout`` to ``(FN, m*OH*OW)`` and sums ``db`` on the way;
  ``dW2ᵀ += col @ doutᵀ``; ``dcol = W2ᵀ @ dout`` (into the same buffer) is folded back by col2im.

Why chunks: the full column matrix of a batch is large (N=64, C=64, 32x32, 3x3: 151 MB); unfolding, multiplying
and folding a few samples at a time keeps the buffer in cache and allocates (page-faults) it once per call.
Why one GEMM per chunk rather than one per sample: OpenBLAS runs (64, 576) @ (576, m*1024) faster than m
products of width 1024, and the transposes into/out of NCHW are fused with the bias/db passes that are needed
anyway.

1x1 convolutions with stride 1 and no padding need no unfolding: ``x[n]`` viewed as ``(C, H*W)`` already is the
column matrix, and the forward pass is one batched matmul straight into NCHW.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import _validate
from .._jit import kernel
from .._validate import WindowGeometry
from .im2col import col2im_into, im2col_into

__all__ = ["conv2d_backward", "conv2d_forward"]

#: Elements of the per-chunk column buffer (``C*FH*FW * m*OH*OW``); a chunk holds at least one sample.
_CHUNK_ELEMENTS = 1 << 21


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


def _chunk(g: WindowGeometry) -> int:
    """Samples per chunk: as many as fit in ``_CHUNK_ELEMENTS`` column elements, at least one."""
    per_sample = g.C * g.FH * g.FW * g.OH * g.OW
    return max(1, min(g.N, _CHUNK_ELEMENTS // max(per_sample, 1)))


def _is_pointwise(g: WindowGeometry) -> bool:
    return g.FH == 1 and g.FW == 1 and g.SH == 1 and g.SW == 1 and g.PH == 0 and g.PW == 0


def conv2d_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                   pad: int | tuple[int, int] = 0) -> np.ndarray:
    """Convolve NCHW input with FN filters and add a bias per filter.

    .. math::

        out[n, f, i, j] = b[f] + \\sum_{c, k_h, k_w} W[f, c, k_h, k_w]\\, x_{pad}[n, c, i S_h + k_h, j S_w + k_w]

    Replaces ``im2col(x) @ W.reshape(FN, -1).T + b`` followed by a transpose to NCHW (Deep Learning from
    Scratch ``Convolution.forward``).

    Parameters
    ----------
    x : ndarray (N, C, H, W)
        float32 or float64 (ints/bools promote to float64); any strides.
    W : ndarray (FN, C, FH, FW)
        Filters.
    b : ndarray (FN,)
        Bias.
    stride : int or (int, int)
        Step between windows (vertical, horizontal), >= 1.
    pad : int or (int, int)
        Zeros added on each side (vertical, horizontal), >= 0.

    Returns
    -------
    out : ndarray (N, FN, OH, OW)
        Common dtype of x, W, b (NumPy promotion), C-contiguous; ``OH = (H + 2 pad_h - FH) // S_h + 1``.
    """
    where = "conv2d_forward"
    (x, W, b), g = _validate.conv_arrays(where, x, W, stride, pad, b=b)
    FN = W.shape[0]
    ck, ohw = g.C * g.FH * g.FW, g.OH * g.OW
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
    m = _chunk(g)
    col_buf = np.empty(ck * m * ohw, dtype=x.dtype)
    tmp_buf = np.empty(FN * m * ohw, dtype=x.dtype)
    for n0 in range(0, g.N, m):
        k = min(m, g.N - n0)
        col = col_buf[:ck * k * ohw].reshape(ck, k * ohw)
        tmp = tmp_buf[:FN * k * ohw].reshape(FN, k * ohw)
        im2col_into(x[n0:n0 + k], col.reshape(ck, k, ohw).transpose(1, 0, 2), g)
        np.matmul(W2, col, out=tmp)
        _bias_to_nchw.run(tmp.size, tmp.reshape(FN, k, ohw), b, out3[n0:n0 + k])
    return out


def conv2d_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, stride: int | tuple[int, int] = 1,
                    pad: int | tuple[int, int] = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward` with respect to its input, filters and bias.

    .. math::

        dW[f, c, k_h, k_w] = \\sum_{n, i, j} dout[n, f, i, j]\\, x_{pad}[n, c, i S_h + k_h, j S_w + k_w]

        db[f] = \\sum_{n, i, j} dout[n, f, i, j]

        dx = \\mathrm{col2im}\\big(W_{f, (c, k_h, k_w)}^T\\, dout_{f, (n, i, j)}\\big)

    Parameters
    ----------
    dout : ndarray (N, FN, OH, OW)
        Upstream gradient; any strides.
    x : ndarray (N, C, H, W)
        The forward input.
    W : ndarray (FN, C, FH, FW)
        The filters.
    stride, pad
        As in the forward pass.

    Returns
    -------
    dx : ndarray (N, C, H, W)
    dW : ndarray (FN, C, FH, FW)
    db : ndarray (FN,)
        All C-contiguous, in the common dtype of dout, x, W.
    """
    where = "conv2d_backward"
    (x, W, dout), g = _validate.conv_arrays(where, x, W, stride, pad, dout=dout)
    FN = W.shape[0]
    ck, ohw = g.C * g.FH * g.FW, g.OH * g.OW
    dtype = x.dtype
    dWT = np.zeros((ck, FN), dtype=dtype)
    db = np.zeros(FN, dtype=dtype)
    if not (g.N and FN):
        return np.zeros(x.shape, dtype=dtype), np.zeros(W.shape, dtype=dtype), db
    dx = np.empty(x.shape, dtype=dtype)
    W2T = np.ascontiguousarray(W.reshape(FN, ck).T)
    dout3 = dout.reshape(g.N, FN, ohw)
    m = _chunk(g)
    col_buf = np.empty(ck * m * ohw, dtype=dtype)
    doutT_buf = np.empty(FN * m * ohw, dtype=dtype)
    dWT_part = np.empty((ck, FN), dtype=dtype)
    for n0 in range(0, g.N, m):
        k = min(m, g.N - n0)
        col = col_buf[:ck * k * ohw].reshape(ck, k * ohw)
        col_view = col.reshape(ck, k, ohw).transpose(1, 0, 2)  # (k, CK, OH*OW): the kernels' per-sample view
        doutT = doutT_buf[:FN * k * ohw].reshape(FN, k * ohw)
        _dout_to_fnp.run(doutT.size, dout3[n0:n0 + k], doutT.reshape(FN, k, ohw), db)
        im2col_into(x[n0:n0 + k], col_view, g)
        np.matmul(col, doutT.T, out=dWT_part)
        dWT += dWT_part
        np.matmul(W2T, doutT, out=col)  # dcol overwrites the columns, which are no longer needed
        if g.C:
            col2im_into(col_view, dx[n0:n0 + k], g)
    return dx, np.ascontiguousarray(dWT.T).reshape(W.shape), db

"""2-D convolution: im2col + BLAS, with the data movement compiled and parallel.

3x3 stride-1 convolutions (any padding) take :mod:`fastnn.kernels.winograd` instead, 2.25x fewer multiplications
(switch: :data:`fastnn.config.CONV_WINOGRAD`); what follows is the path of every other geometry.

Layout. The batch is processed in chunks of ``m`` samples. Each chunk is unfolded into a column matrix
``col`` of shape ``(C*FH*FW, m*OH*OW)`` (C-contiguous; :func:`~fastnn.kernels.im2col.im2col_into` writes it
through the view ``(m, C*FH*FW, OH*OW)``), so every product is one large 2-D GEMM:

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
from numba import prange

from .. import _checks, _validate
from .._jit import kernel
from .._validate import WindowGeometry
from . import winograd
from ._workspace import buffer as _buffer
from ._workspace import workspace as _workspace
from .activations import _relu_backward, _relu_forward
from .im2col import col2im_into, im2col_into
from .linalg import matmul_into
from .pooling import _maxpool2d_backward, _maxpool2d_forward

__all__ = ["conv2d_backward", "conv2d_forward", "conv2d_relu_backward", "conv2d_relu_forward",
           "conv2d_relu_maxpool_backward", "conv2d_relu_maxpool_forward"]

#: Elements of the per-chunk column buffer (``C*FH*FW * m*OH*OW``); a chunk holds at least one sample.
_CHUNK_ELEMENTS = 1 << 23


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
        im2col_into(x[n0:n0 + k], col.reshape(ck, k, ohw).transpose(1, 0, 2), g)
        matmul_into(W2, col, tmp)
        _bias_to_nchw.run(tmp.size, tmp.reshape(FN, k, ohw), b, out3[n0:n0 + k])


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
    if winograd.applies(g, FN, x.dtype):
        return winograd.forward(x, W, b, g, _workspace(cache))
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
    if winograd.applies(g, FN, dtype):
        if cache is not None:
            cache["conv2d.x"] = None
        return winograd.backward(dout, x, W, g, _workspace(cache), need_dx)
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
        col_view = col.reshape(ck, k, ohw).transpose(1, 0, 2)  # (k, CK, OH*OW): the kernels' per-sample view
        doutT = doutT_buf[:FN * k * ohw].reshape(FN, k * ohw)
        _dout_to_fnp.run(doutT.size, dout3[n0:n0 + k], doutT.reshape(FN, k, ohw), db)
        if cols is None:
            im2col_into(x[n0:n0 + k], col_view, g)
        matmul_into(col, doutT.T, dWT_part)
        dWT += dWT_part
        if not need_dx:
            continue
        matmul_into(W2T, doutT, col)  # dcol overwrites the columns, which are no longer needed
        if g.C:
            col2im_into(col_view, dx[n0:n0 + k], g)
    return dx, np.ascontiguousarray(dWT.T).reshape(W.shape), db


# ---------------------------------------------------------------------------------------------------------------
# Convolution + ReLU (+ 2x2 max-pool): the Winograd path applies ReLU in its output transform and pools each 2x2
# output tile as it is made (a tile is a pooling window), so the full-size output is never written; its backward
# masks (and unpools) the output gradient while loading it into the tile transform. Other geometries run the steps
# one after another.


def _winograd(x: np.ndarray, W: np.ndarray, stride: int | tuple[int, int], pad: int | tuple[int, int],
              cache: dict | None) -> WindowGeometry | None:
    """The geometry when the Winograd path takes this convolution (the columns in ``cache`` are then stale)."""
    g = _validate.geometry(x.shape, W.shape[2], W.shape[3], stride, pad)
    if not winograd.applies(g, W.shape[0], x.dtype):
        return None
    if cache is not None:
        cache["conv2d.x"] = None
    return g


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
    g = _winograd(x, W, stride, pad, cache)
    if g is not None:
        return winograd.forward(x, W, b, g, _workspace(cache), relu=True)
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
    g = _winograd(x, W, stride, pad, cache)
    if g is not None:
        return winograd.backward(dout, x, W, g, _workspace(cache), need_dx, out=out)
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
    g = _winograd(x, W, stride, pad, cache)
    if g is not None:
        return winograd.forward(x, W, b, g, _workspace(cache), relu=True, pool=True)
    return _maxpool2d_forward(_conv2d_relu_forward(x, W, b, stride, pad, cache=cache), 2, 2, 2)


def conv2d_relu_maxpool_backward(dout: np.ndarray, out: np.ndarray, argmax: np.ndarray, x: np.ndarray,
                                 W: np.ndarray, stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0,
                                 *, cache: dict | None = None,
                                 need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """3x3 stride-1 filters: the pooled gradient is sent to each window's maximum and masked while it is loaded
    into the Winograd transform (no full-size gradient is written); otherwise the steps one after another."""
    x_arg = x
    dout, out, argmax, x, W, g, need_dx = _checks.check_conv2d_relu_maxpool_backward(
        "conv2d_relu_maxpool_backward", dout, out, argmax, x, W, stride, pad, cache, need_dx)
    _validate.adopt_cached(cache, "conv2d.x", x_arg, x)
    return _conv2d_relu_maxpool_backward(dout, out, argmax, x, W, stride, pad, cache=cache, need_dx=need_dx)


def _conv2d_relu_maxpool_backward(dout: np.ndarray, out: np.ndarray, argmax: np.ndarray, x: np.ndarray,
                                  W: np.ndarray, stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0,
                                  *, cache: dict | None = None,
                                  need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    g = _winograd(x, W, stride, pad, cache)
    if g is not None:
        return winograd.backward(dout, x, W, g, _workspace(cache), need_dx, out=out, argmax=argmax)
    g = _validate.geometry(x.shape, W.shape[2], W.shape[3], stride, pad)
    dconv = _maxpool2d_backward(_relu_backward(dout, out), argmax, (g.N, W.shape[0], g.OH, g.OW), 2, 2, 2)
    return _conv2d_backward(dconv, x, W, stride, pad, cache=cache, need_dx=need_dx)

"""2-D convolution in plain NumPy: the readable specification of :mod:`fastnn.kernels.conv`.

As in Deep Learning from Scratch ``common/layers.py`` (``Convolution``): unfold the input with
:func:`~fastnn.reference.im2col.im2col`, multiply by the flattened filters, and for the input gradient fold the
column gradient back with :func:`~fastnn.reference.im2col.col2im`. "Convolution" is cross-correlation, as in
every deep-learning library (the filter is not flipped).
"""

from __future__ import annotations

import numpy as np

from .. import _checks, _validate
from .activations import _relu_backward, _relu_forward
from .im2col import _col2im, _im2col
from .pooling import _maxpool2d_backward, _maxpool2d_forward

__all__ = ["conv2d_backward", "conv2d_forward", "conv2d_relu_backward", "conv2d_relu_forward",
           "conv2d_relu_maxpool_backward", "conv2d_relu_maxpool_forward"]


def conv2d_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                   pad: int | tuple[int, int] = 0, *, cache: dict | None = None) -> np.ndarray:
    """Convolve NCHW input with FN filters and add a bias per filter.

    .. math::

        out[n, f, i, j] = b[f] + \\sum_{c, k_h, k_w} W[f, c, k_h, k_w]\\, x_{pad}[n, c, i S_h + k_h, j S_w + k_w]

    Parameters
    ----------
    x : ndarray (N, C, H, W)
        float32 or float64 (ints/bools promote to float64).
    W : ndarray (FN, C, FH, FW)
        Filters.
    b : ndarray (FN,)
        Bias.
    stride : int or (int, int)
        Step between windows (vertical, horizontal), >= 1.
    pad : int or (int, int)
        Zeros added on each side (vertical, horizontal), >= 0.
    cache : dict, optional
        Keyword-only workspace owned by the caller, passed again to :func:`conv2d_backward`: the unfolded
        input is kept in it, and backward reuses it when it receives the same ``x`` object (unmodified) with
        the same geometry, instead of unfolding ``x`` again.

    Returns
    -------
    out : ndarray (N, FN, OH, OW)
        Common dtype of x, W, b (NumPy promotion); ``OH = (H + 2 pad_h - FH) // S_h + 1``, likewise OW.
    """
    x_arg = x
    x, W, b, _ = _checks.check_conv2d_forward("conv2d_forward", x, W, b, stride, pad, cache)
    out = _conv2d_forward(x, W, b, stride, pad, cache=cache)
    _validate.adopt_cached(cache, "conv2d.ref.x", x, x_arg)
    return out


def _conv2d_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                    pad: int | tuple[int, int] = 0, *, cache: dict | None = None) -> np.ndarray:
    g = _validate.geometry(x.shape, W.shape[2], W.shape[3], stride, pad)
    FN = W.shape[0]
    col = _im2col(x, g.FH, g.FW, (g.SH, g.SW), (g.PH, g.PW))  # (N*OH*OW, C*FH*FW)
    if cache is not None:
        cache.update({"conv2d.ref.x": x, "conv2d.ref.key": (g, x.dtype.str), "conv2d.ref.col": col})
    out = col @ W.reshape(FN, -1).T + b  # (N*OH*OW, FN)
    return np.ascontiguousarray(out.reshape(g.N, g.OH, g.OW, FN).transpose(0, 3, 1, 2))


def conv2d_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, stride: int | tuple[int, int] = 1,
                    pad: int | tuple[int, int] = 0, *, cache: dict | None = None,
                    need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward` with respect to its input, filters and bias.

    .. math::

        dW[f, c, k_h, k_w] = \\sum_{n, i, j} dout[n, f, i, j]\\, x_{pad}[n, c, i S_h + k_h, j S_w + k_w]

        db[f] = \\sum_{n, i, j} dout[n, f, i, j]

        dx = \\mathrm{col2im}\\big(dout_{(n, i, j), f} \\cdot W_{f, (c, k_h, k_w)}\\big)

    Parameters
    ----------
    dout : ndarray (N, FN, OH, OW)
        Upstream gradient.
    x : ndarray (N, C, H, W)
        The forward input.
    W : ndarray (FN, C, FH, FW)
        The filters.
    stride, pad
        As in the forward pass.
    cache : dict, optional
        Keyword-only: the dict given to :func:`conv2d_forward`; its unfolded input is reused when this is the
        same ``x`` object with the same geometry.
    need_dx : bool
        Keyword-only. False skips the input gradient and returns None for it: what the first layer of a network
        needs, as autograd skips inputs that need no gradient.

    Returns
    -------
    dx : ndarray (N, C, H, W), or None when ``need_dx`` is False
    dW : ndarray (FN, C, FH, FW)
    db : ndarray (FN,)
        All in the common dtype of dout, x, W.
    """
    x_arg = x
    dout, x, W, _, need_dx = _checks.check_conv2d_backward("conv2d_backward", dout, x, W, stride, pad, cache,
                                                           need_dx)
    _validate.adopt_cached(cache, "conv2d.ref.x", x_arg, x)
    return _conv2d_backward(dout, x, W, stride, pad, cache=cache, need_dx=need_dx)


def _conv2d_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, stride: int | tuple[int, int] = 1,
                     pad: int | tuple[int, int] = 0, *, cache: dict | None = None,
                     need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    g = _validate.geometry(x.shape, W.shape[2], W.shape[3], stride, pad)
    FN = W.shape[0]
    if cache is not None and cache.get("conv2d.ref.x") is x and cache.get("conv2d.ref.key") == (g, x.dtype.str):
        col = cache["conv2d.ref.col"]
    else:
        col = _im2col(x, g.FH, g.FW, (g.SH, g.SW), (g.PH, g.PW))
    d = dout.transpose(0, 2, 3, 1).reshape(-1, FN)  # (N*OH*OW, FN), rows in im2col's order
    db = d.sum(axis=0)
    dW = (d.T @ col).reshape(W.shape)
    if not need_dx:
        return None, dW, db
    dcol = d @ W.reshape(FN, -1)
    dx = _col2im(dcol, x.shape, g.FH, g.FW, (g.SH, g.SW), (g.PH, g.PW))
    return dx, dW, db


# ---------------------------------------------------------------------------------------------------------------
# Convolution followed by ReLU (and 2x2 max pooling): the runs of the book's conv nets as one call each. The kernels
# fuse them (no full-size intermediate passes); the specification is the composition.


def conv2d_relu_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                        pad: int | tuple[int, int] = 0, *, cache: dict | None = None) -> np.ndarray:
    """``relu_forward(conv2d_forward(x, W, b, stride, pad))``: a Convolution layer followed by a Relu layer.

    .. math::

        out = \\max(\\mathrm{conv}(x, W) + b,\\ 0)

    Parameters
    ----------
    x : ndarray (N, C, H, W)
    W : ndarray (FN, C, FH, FW)
    b : ndarray (FN,)
    stride, pad
        As in :func:`conv2d_forward`.
    cache : dict, optional
        Keyword-only workspace, as in :func:`conv2d_forward`.

    Returns
    -------
    out : ndarray (N, FN, OH, OW)
        Common dtype of x, W, b; NaN is kept (:func:`~fastnn.reference.relu_forward`).
    """
    x_arg = x
    x, W, b, _ = _checks.check_conv2d_forward("conv2d_relu_forward", x, W, b, stride, pad, cache)
    out = _conv2d_relu_forward(x, W, b, stride, pad, cache=cache)
    _validate.adopt_cached(cache, "conv2d.ref.x", x, x_arg)
    return out


def _conv2d_relu_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                         pad: int | tuple[int, int] = 0, *, cache: dict | None = None) -> np.ndarray:
    return _relu_forward(_conv2d_forward(x, W, b, stride, pad, cache=cache))


def conv2d_relu_backward(dout: np.ndarray, out: np.ndarray, x: np.ndarray, W: np.ndarray,
                         stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0, *,
                         cache: dict | None = None,
                         need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_relu_forward`: ``conv2d_backward(relu_backward(dout, out), x, W, ...)``.

    Parameters
    ----------
    dout : ndarray (N, FN, OH, OW)
        Upstream gradient.
    out : ndarray (N, FN, OH, OW)
        The forward's result: ReLU's gradient passes where ``out`` is not ``<= 0``, which is where the
        convolution's output was not (:func:`~fastnn.reference.relu_backward`'s rule, NaN passes).
    x, W, stride, pad, cache, need_dx
        As in :func:`conv2d_backward`.

    Returns
    -------
    dx : ndarray (N, C, H, W), or None when ``need_dx`` is False
    dW : ndarray (FN, C, FH, FW)
    db : ndarray (FN,)
        All in the common dtype of dout, out, x, W.
    """
    x_arg = x
    dout, out, x, W, _, need_dx = _checks.check_conv2d_relu_backward("conv2d_relu_backward", dout, out, x, W, stride,
                                                                     pad, cache, need_dx)
    _validate.adopt_cached(cache, "conv2d.ref.x", x_arg, x)
    return _conv2d_relu_backward(dout, out, x, W, stride, pad, cache=cache, need_dx=need_dx)


def _conv2d_relu_backward(dout: np.ndarray, out: np.ndarray, x: np.ndarray, W: np.ndarray,
                          stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0, *,
                          cache: dict | None = None,
                          need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    return _conv2d_backward(_relu_backward(dout, out), x, W, stride, pad, cache=cache, need_dx=need_dx)


def conv2d_relu_maxpool_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                                pad: int | tuple[int, int] = 0, *,
                                cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``maxpool2d_forward(conv2d_relu_forward(x, W, b, stride, pad), 2, 2, 2)``: Convolution, Relu and the book
    nets' ``Pooling(2, 2, stride=2)``.

    Parameters
    ----------
    x : ndarray (N, C, H, W)
    W : ndarray (FN, C, FH, FW)
    b : ndarray (FN,)
    stride, pad, cache
        As in :func:`conv2d_forward`. The convolution output (OH, OW) must be at least 2x2.

    Returns
    -------
    out : ndarray (N, FN, OH // 2, OW // 2)
        The pooled ReLU output (a last odd row or column of the convolution output is in no window).
    argmax : ndarray (N, FN, OH // 2, OW // 2), uint8
        Each maximum's offset in its window, ``2 * row + column`` (:func:`~fastnn.reference.maxpool2d_forward`).
    """
    x_arg = x
    x, W, b, _ = _checks.check_conv2d_relu_maxpool_forward("conv2d_relu_maxpool_forward", x, W, b, stride, pad,
                                                           cache)
    out = _conv2d_relu_maxpool_forward(x, W, b, stride, pad, cache=cache)
    _validate.adopt_cached(cache, "conv2d.ref.x", x, x_arg)
    return out


def _conv2d_relu_maxpool_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                                 pad: int | tuple[int, int] = 0, *,
                                 cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    return _maxpool2d_forward(_conv2d_relu_forward(x, W, b, stride, pad, cache=cache), 2, 2, 2)


def conv2d_relu_maxpool_backward(dout: np.ndarray, out: np.ndarray, argmax: np.ndarray, x: np.ndarray,
                                 W: np.ndarray, stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0,
                                 *, cache: dict | None = None,
                                 need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_relu_maxpool_forward`: each ``dout`` goes to its window's maximum (``argmax``)
    where the pooled ``out`` is not ``<= 0`` (ReLU's rule at that maximum), then :func:`conv2d_backward`.

    Parameters
    ----------
    dout : ndarray (N, FN, OH // 2, OW // 2)
        Upstream gradient.
    out, argmax : ndarray (N, FN, OH // 2, OW // 2)
        The forward's results (argmax: any integer dtype, values in [0, 4)).
    x, W, stride, pad, cache, need_dx
        As in :func:`conv2d_backward`.

    Returns
    -------
    dx : ndarray (N, C, H, W), or None when ``need_dx`` is False
    dW : ndarray (FN, C, FH, FW)
    db : ndarray (FN,)
        All in the common dtype of dout, out, x, W.
    """
    x_arg = x
    dout, out, argmax, x, W, g, need_dx = _checks.check_conv2d_relu_maxpool_backward(
        "conv2d_relu_maxpool_backward", dout, out, argmax, x, W, stride, pad, cache, need_dx)
    _validate.adopt_cached(cache, "conv2d.ref.x", x_arg, x)
    return _conv2d_relu_maxpool_backward(dout, out, argmax, x, W, stride, pad, cache=cache, need_dx=need_dx)


def _conv2d_relu_maxpool_backward(dout: np.ndarray, out: np.ndarray, argmax: np.ndarray, x: np.ndarray,
                                  W: np.ndarray, stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0,
                                  *, cache: dict | None = None,
                                  need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    g = _validate.geometry(x.shape, W.shape[2], W.shape[3], stride, pad)
    conv_shape = (g.N, W.shape[0], g.OH, g.OW)
    dconv = _maxpool2d_backward(_relu_backward(dout, out), argmax, conv_shape, 2, 2, 2)
    return _conv2d_backward(dconv, x, W, stride, pad, cache=cache, need_dx=need_dx)

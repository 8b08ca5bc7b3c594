"""Max and average pooling in plain NumPy: the readable specification of :mod:`fastnn.kernels.pooling`.

Every window is materialised with :func:`numpy.lib.stride_tricks.sliding_window_view` on the padded input
(``-inf`` for max, zeros for average), flattened row-major to ``FH * FW`` entries and reduced. Backward passes
loop over the ``FH * FW`` window offsets (never over elements): offset ``(kh, kw)`` of every window is one
strided slice of the padded gradient, so overlapping windows add up.

Conventions shared with the kernels (see ``docs/design.md``):

* ``stride=None`` means stride = pool size; ``stride``/``pad`` are an int or a (vertical, horizontal) pair;
  ``pad <= pool // 2`` per axis (PyTorch's limit), so every window of a non-empty input holds an input element.
* Max-pool ``argmax`` is the row-major index ``kh * FW + kw`` inside the window, in the smallest unsigned dtype
  holding ``FH * FW - 1``. Ties: the first maximum wins. A NaN makes the output NaN and the argmax the first
  NaN. Padding is never the argmax: a window whose input elements are all ``-inf`` points at its first input
  element (as PyTorch does). Only an input with ``H == 0`` or ``W == 0`` has windows of padding alone; they give
  ``-inf`` and argmax 0, and the backward pass drops gradients that point into padding.
* Max-pool backward with ``ties="split"`` (cs231n's fast layer) divides each window's gradient equally among
  the input elements equal to its maximum, found again in ``x``; a NaN maximum gives NaN to its whole window.
* Average pooling divides by ``FH * FW``, padded zeros included (PyTorch ``count_include_pad=True``).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import _checks, _validate
from .._validate import WindowGeometry

__all__ = ["avgpool2d_backward", "avgpool2d_forward", "maxpool2d_backward", "maxpool2d_forward"]


def _windows(x: np.ndarray, g: WindowGeometry, fill: float | bool) -> np.ndarray:
    """All windows of ``x`` padded with ``fill``, shape (N, C, OH, OW, FH*FW), row-major inside the window."""
    padded = np.pad(x, ((0, 0), (0, 0), (g.PH, g.PH), (g.PW, g.PW)), constant_values=fill)
    view = sliding_window_view(padded, (g.FH, g.FW), axis=(2, 3))[:, :, ::g.SH, ::g.SW]
    return view.reshape(*x.shape[:2], g.OH, g.OW, g.FH * g.FW)


def _scatter_windows(dout_per_offset, g: WindowGeometry, dtype: np.dtype) -> np.ndarray:
    """Adjoint of :func:`_windows`: add ``dout_per_offset(k)`` (N, C, OH, OW) into offset ``k`` of every window.

    Returns the gradient of the unpadded input (N, C, H, W); whatever lands on padding is dropped.
    """
    dx = np.zeros((g.N, g.C, g.H + 2 * g.PH, g.W + 2 * g.PW), dtype=dtype)
    for kh in range(g.FH):
        for kw in range(g.FW):
            rows = slice(kh, kh + g.SH * (g.OH - 1) + 1, g.SH)
            cols = slice(kw, kw + g.SW * (g.OW - 1) + 1, g.SW)
            # Within one offset the windows hit distinct elements, so a sliced += is exact.
            dx[:, :, rows, cols] += dout_per_offset(kh * g.FW + kw)
    return np.ascontiguousarray(dx[:, :, g.PH:g.PH + g.H, g.PW:g.PW + g.W])


def maxpool2d_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                      pad: int | tuple[int, int] = 0) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling of NCHW input, with the position of each maximum.

    .. math::

        out[n, c, i, j] = \\max_{0 \\le k_h < FH,\\ 0 \\le k_w < FW} x_{pad}[n, c, i S_h + k_h, j S_w + k_w]

    Parameters
    ----------
    x : ndarray (N, C, H, W)
        float32 or float64 (ints/bools promote to float64).
    pool_h, pool_w : int
        Window size FH, FW.
    stride : int or (int, int) or None
        Step between windows; None: (pool_h, pool_w).
    pad : int or (int, int)
        Implicit ``-inf`` padding on each side, at most ``pool // 2`` per axis.

    Returns
    -------
    out : ndarray (N, C, OH, OW)
        x.dtype; ``OH = (H + 2 pad_h - FH) // S_h + 1``, likewise OW.
    argmax : ndarray (N, C, OH, OW)
        Row-major index ``kh * FW + kw`` of the maximum inside its window, in the smallest unsigned dtype holding
        ``FH * FW - 1`` (uint8 for pools up to 16x16). First maximum on ties, first NaN if any; never padding
        unless the window holds no input (H or W is 0): then out is ``-inf`` and argmax 0.
    """
    x, _ = _checks.check_pool2d("maxpool2d_forward", x, pool_h, pool_w, stride, pad)
    return _maxpool2d_forward(x, pool_h, pool_w, stride, pad)


def _maxpool2d_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                       pad: int | tuple[int, int] = 0) -> tuple[np.ndarray, np.ndarray]:
    g = _validate.geometry(x.shape, pool_h, pool_w, stride, pad)
    windows = _windows(x, g, -np.inf)
    inside = _windows(np.ones((1, 1, g.H, g.W), dtype=bool), g, False)  # which window slots hold input
    out = windows.max(axis=-1)  # NaN propagates
    # Candidates: entries equal to the maximum, or NaNs (only present when the maximum is NaN), never padding;
    # np.argmax of a boolean array returns the first True, i.e. the first candidate in row-major order.
    candidate = ((windows == out[..., None]) | np.isnan(windows)) & inside
    argmax = np.argmax(candidate, axis=-1).astype(_validate.pool_index_dtype(g.FH * g.FW))
    return out, argmax


def maxpool2d_backward(dout: np.ndarray, argmax: np.ndarray | None, input_shape: tuple[int, int, int, int],
                       pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                       pad: int | tuple[int, int] = 0, *, ties: str = "first",
                       x: np.ndarray | None = None) -> np.ndarray:
    """Gradient of :func:`maxpool2d_forward`: each ``dout`` goes to its window's maximum.

    Two rules for a window holding several equal maxima:

    * ``ties="first"`` (default; PyTorch, Deep Learning from Scratch, cs231n's naive and im2col layers): all of
      the window's gradient goes to the element its ``argmax`` names, the first maximum in row-major order.
    * ``ties="split"`` (cs231n's ``max_pool_backward_reshape``, so its ``max_pool_backward_fast`` on tiling
      pools): the gradient is divided equally among the window's elements equal to its maximum, found again
      in ``x``; a window whose maximum is NaN gives NaN to every one of its elements (cs231n's ``0/0``).

    .. math::

        dx[n, c, h, w] = \\sum_{(i, j):\\ (h, w) \\in M_{ij}} \\frac{dout[n, c, i, j]}{|M_{ij}|}

    where :math:`M_{ij}` is the argmax element alone ("first") or every element equal to the maximum of window
    :math:`(i, j)` ("split").

    Parameters
    ----------
    dout : ndarray (N, C, OH, OW)
        Upstream gradient, float32 or float64.
    argmax : ndarray (N, C, OH, OW) or None
        Integer window indices in ``[0, FH*FW)`` as returned by the forward pass (any integer dtype; values are
        checked, since the kernel scatters through them). None with ``ties="split"``, which does not use it.
    input_shape : tuple (N, C, H, W)
        Shape of the forward input.
    pool_h, pool_w, stride, pad
        As in the forward pass.
    ties : {"first", "split"}
        Keyword-only: the rule for equal maxima, above.
    x : ndarray (N, C, H, W), optional
        Keyword-only: the forward input (float32 or float64), required with ``ties="split"`` and refused with
        "first".

    Returns
    -------
    dx : ndarray (N, C, H, W)
        dout.dtype. Overlapping windows (stride < pool) add up; an argmax pointing into padding contributes
        nothing, and padding never counts as a maximum.
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
    zero = np.zeros((), dtype=dout.dtype)
    if x is None:
        return _scatter_windows(lambda k: np.where(argmax == k, dout, zero), g, dout.dtype)
    windows = _windows(x, g, -np.inf)
    inside = _windows(np.ones((1, 1, g.H, g.W), dtype=bool), g, False)
    hit = (windows == windows.max(axis=-1, keepdims=True)) & inside  # no hit at all when the maximum is NaN
    count = hit.sum(axis=-1).astype(dout.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(count == 0, np.nan, dout / count).astype(dout.dtype)
    every = count == 0  # a NaN window: NaN to each element (padding is dropped by the scatter)
    return _scatter_windows(lambda k: np.where(hit[..., k] | every, share, zero), g, dout.dtype)


def avgpool2d_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                      pad: int | tuple[int, int] = 0) -> np.ndarray:
    """Average pooling of NCHW input; padded zeros count in the divisor (PyTorch ``count_include_pad=True``).

    .. math::

        out[n, c, i, j] = \\frac{1}{FH \\cdot FW} \\sum_{k_h, k_w} x_{pad}[n, c, i S_h + k_h, j S_w + k_w]

    Parameters
    ----------
    x : ndarray (N, C, H, W)
        float32 or float64 (ints/bools promote to float64).
    pool_h, pool_w : int
        Window size FH, FW.
    stride : int or (int, int) or None
        Step between windows; None: (pool_h, pool_w).
    pad : int or (int, int)
        Implicit zero padding on each side, at most ``pool // 2`` per axis.

    Returns
    -------
    out : ndarray (N, C, OH, OW)
        x.dtype.
    """
    x, _ = _checks.check_pool2d("avgpool2d_forward", x, pool_h, pool_w, stride, pad)
    return _avgpool2d_forward(x, pool_h, pool_w, stride, pad)


def _avgpool2d_forward(x: np.ndarray, pool_h: int, pool_w: int, stride: int | tuple[int, int] | None = None,
                       pad: int | tuple[int, int] = 0) -> np.ndarray:
    g = _validate.geometry(x.shape, pool_h, pool_w, stride, pad)
    return _windows(x, g, 0).mean(axis=-1)


def avgpool2d_backward(dout: np.ndarray, input_shape: tuple[int, int, int, int], pool_h: int, pool_w: int,
                       stride: int | tuple[int, int] | None = None, pad: int | tuple[int, int] = 0) -> np.ndarray:
    """Gradient of :func:`avgpool2d_forward`: every window spreads ``dout / (FH*FW)`` over its elements.

    .. math::

        dx[n, c, h, w] = \\frac{1}{FH \\cdot FW} \\sum_{(i, j):\\ (h, w) \\in \\text{window } (i, j)} dout[n, c, i, j]

    Parameters
    ----------
    dout : ndarray (N, C, OH, OW)
        Upstream gradient, float32 or float64.
    input_shape : tuple (N, C, H, W)
        Shape of the forward input.
    pool_h, pool_w, stride, pad
        As in the forward pass.

    Returns
    -------
    dx : ndarray (N, C, H, W)
        dout.dtype; overlapping windows add up, the share of padded positions is dropped.
    """
    dout, _ = _checks.check_pool2d_backward("avgpool2d_backward", dout, input_shape, pool_h, pool_w, stride, pad)
    return _avgpool2d_backward(dout, input_shape, pool_h, pool_w, stride, pad)


def _avgpool2d_backward(dout: np.ndarray, input_shape: tuple[int, int, int, int], pool_h: int, pool_w: int,
                        stride: int | tuple[int, int] | None = None, pad: int | tuple[int, int] = 0) -> np.ndarray:
    g = _validate.geometry(input_shape, pool_h, pool_w, stride, pad)
    share = dout / dout.dtype.type(g.FH * g.FW)
    return _scatter_windows(lambda k: share, g, dout.dtype)

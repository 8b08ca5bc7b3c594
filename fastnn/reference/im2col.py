"""im2col and col2im in plain NumPy: the readable specification of :mod:`fastnn.kernels.im2col`.

The layout is that of Deep Learning from Scratch ``common/util.py``: one row per output position, ordered
``(n, oh, ow)``, one column per window element, ordered ``(c, fh, fw)``. Both functions loop over the
``FH * FW`` window offsets (never over elements): offset ``(kh, kw)`` of every window is one strided slice of
the zero-padded input, so im2col copies ``FH * FW`` slices and col2im adds them back (overlapping windows add
up, which makes col2im the adjoint of im2col).
"""

from __future__ import annotations

import numpy as np

from .. import _checks, _validate

__all__ = ["col2im", "im2col"]


def _offset_slices(kh: int, kw: int, g: _validate.WindowGeometry) -> tuple[slice, slice]:
    """Rows and columns of the padded input that offset ``(kh, kw)`` of the OH x OW windows visit."""
    return (slice(kh, kh + g.SH * (g.OH - 1) + 1, g.SH), slice(kw, kw + g.SW * (g.OW - 1) + 1, g.SW))


def im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int | tuple[int, int] = 1,
           pad: int | tuple[int, int] = 0) -> np.ndarray:
    """Unfold every sliding window of ``x`` into a row.

    .. math::

        col[(n, i, j), (c, k_h, k_w)] = x_{pad}[n, c, i S_h + k_h, j S_w + k_w]

    where ``x_pad`` is ``x`` with ``pad`` zeros on each side.

    Parameters
    ----------
    x : ndarray (N, C, H, W)
        float32 or float64 (ints/bools promote to float64).
    filter_h, filter_w : int
        Window size FH, FW.
    stride : int or (int, int)
        Step between windows (vertical, horizontal), >= 1.
    pad : int or (int, int)
        Zeros added on each side (vertical, horizontal), >= 0.

    Returns
    -------
    col : ndarray (N*OH*OW, C*FH*FW)
        x.dtype; ``OH = (H + 2 pad_h - FH) // S_h + 1``, likewise OW. Rows ordered (n, oh, ow), columns
        (c, fh, fw), as in Deep Learning from Scratch.
    """
    x, _ = _checks.check_im2col("im2col", x, filter_h, filter_w, stride, pad)
    return _im2col(x, filter_h, filter_w, stride, pad)


def _im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int | tuple[int, int] = 1,
            pad: int | tuple[int, int] = 0) -> np.ndarray:
    g = _validate.geometry(x.shape, filter_h, filter_w, stride, pad)
    padded = np.pad(x, ((0, 0), (0, 0), (g.PH, g.PH), (g.PW, g.PW)))
    col = np.empty((g.N, g.C, g.FH, g.FW, g.OH, g.OW), dtype=x.dtype)
    for kh in range(g.FH):
        for kw in range(g.FW):
            rows, cols = _offset_slices(kh, kw, g)
            col[:, :, kh, kw] = padded[:, :, rows, cols]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(g.N * g.OH * g.OW, g.C * g.FH * g.FW)


def col2im(col: np.ndarray, input_shape: tuple[int, int, int, int], filter_h: int, filter_w: int,
           stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0) -> np.ndarray:
    """Fold rows of window elements back onto the input: the adjoint of :func:`im2col`.

    .. math::

        x[n, c, h, w] = \\sum_{(i, k_h):\\ i S_h + k_h - P_h = h} \\ \\sum_{(j, k_w):\\ j S_w + k_w - P_w = w}
            col[(n, i, j), (c, k_h, k_w)]

    Elements that several windows share receive the sum of their entries; entries that fall on padding are
    dropped. So ``<im2col(x), col> == <x, col2im(col)>`` for every ``x`` and ``col``.

    Parameters
    ----------
    col : ndarray (N*OH*OW, C*FH*FW)
        float32 or float64, laid out as :func:`im2col` returns.
    input_shape : tuple (N, C, H, W)
        Shape of the image the columns came from.
    filter_h, filter_w, stride, pad
        As in :func:`im2col`.

    Returns
    -------
    x : ndarray (N, C, H, W)
        col.dtype.
    """
    col, _ = _checks.check_col2im("col2im", col, input_shape, filter_h, filter_w, stride, pad)
    return _col2im(col, input_shape, filter_h, filter_w, stride, pad)


def _col2im(col: np.ndarray, input_shape: tuple[int, int, int, int], filter_h: int, filter_w: int,
            stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0) -> np.ndarray:
    g = _validate.geometry(input_shape, filter_h, filter_w, stride, pad)
    windows = col.reshape(g.N, g.OH, g.OW, g.C, g.FH, g.FW).transpose(0, 3, 4, 5, 1, 2)
    padded = np.zeros((g.N, g.C, g.H + 2 * g.PH, g.W + 2 * g.PW), dtype=col.dtype)
    for kh in range(g.FH):
        for kw in range(g.FW):
            rows, cols = _offset_slices(kh, kw, g)
            # One offset visits each padded element at most once, so a sliced += is exact.
            padded[:, :, rows, cols] += windows[:, :, kh, kw]
    return np.ascontiguousarray(padded[:, :, g.PH:g.PH + g.H, g.PW:g.PW + g.W])

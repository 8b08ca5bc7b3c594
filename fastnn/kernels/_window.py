"""The one window-iteration scheme shared by im2col/col2im, convolution and pooling.

Every sliding-window kernel walks output positions ``(oh, ow)`` of one ``(n, c)`` plane and, for each, the
window offsets ``(kh, kw)`` that land inside the unpadded input. Padding is never materialised: the offsets
that would read padding are skipped (im2col writes zeros there, max-pooling treats them as -inf, average
pooling counts them in the divisor). :func:`window_span` is the single source of truth for that arithmetic.
"""

from __future__ import annotations

from .._jit import helper


@helper
def window_span(o, stride, pad, window, size):
    """Input start of output position ``o`` and the in-bounds window offsets ``[k0, k1)``.

    Parameters
    ----------
    o : int
        Output index along one axis.
    stride, pad, window, size : int
        Stride, padding, window length and unpadded input length along that axis.

    Returns
    -------
    start : int
        Input index of window offset 0 (negative inside the top/left padding).
    k0, k1 : int
        Offsets ``k`` with ``0 <= start + k < size`` are exactly ``k0 <= k < k1`` (empty when k0 >= k1).
    """
    start = o * stride - pad
    k0 = max(0, -start)
    k1 = min(window, size - start)
    return start, k0, k1

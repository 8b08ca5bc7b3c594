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


@helper
def offset_span(k, stride, pad, size, out_size):
    """Output positions ``[o0, o1)`` at which window offset ``k`` lands inside the unpadded input.

    The converse view of :func:`window_span`: with the offset fixed, ``o`` runs over
    ``0 <= o * stride - pad + k < size`` (and ``0 <= o < out_size``). Kernels that walk one offset across a
    whole output row (im2col into the per-sample column layout, col2im) use it to copy the inner run without
    a bounds test per element.

    Parameters
    ----------
    k : int
        Window offset along one axis.
    stride, pad, size : int
        Stride, padding and unpadded input length along that axis.
    out_size : int
        Number of output positions along that axis.

    Returns
    -------
    o0, o1 : int
        ``0 <= o0 <= o1 <= out_size``; empty when ``o0 == o1``.
    """
    lo = pad - k  # o * stride >= lo
    o0 = 0 if lo <= 0 else (lo + stride - 1) // stride
    hi = size - 1 + pad - k  # o * stride <= hi
    o1 = 0 if hi < 0 else hi // stride + 1
    o0 = min(o0, out_size)
    o1 = max(o0, min(o1, out_size))
    return o0, o1

"""Numerical gradients by central differences, as Deep Learning from Scratch ``common/gradient.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _validate

__all__ = ["numerical_gradient"]


def numerical_gradient(f: Callable[[np.ndarray], Any], x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Gradient of the scalar function ``f`` at ``x`` by central differences.

    .. math:: \\frac{\\partial f}{\\partial x_i} \\approx \\frac{f(x + h e_i) - f(x - h e_i)}{2h}

    Parameters
    ----------
    f : callable
        Called as ``f(x)`` and returning a real scalar. It may ignore its argument and read ``x`` through
        another reference (the book's ``lambda W: net.loss(x, t)``): ``x`` is perturbed in place.
    x : ndarray of any shape, float32 or float64, writeable
        Each element is shifted by +h and -h in turn and then restored to its exact original value: on return
        ``x`` holds what it held before (also when ``f`` raises).
    h : float > 0
        The step (the book's 1e-4). In float32, round-off limits the accuracy to about 1e-3 relative.

    Returns
    -------
    ndarray of x's shape and dtype.
    """
    where = "numerical_gradient"
    if not callable(f):
        _validate.fail(where, "f", "callable", type(f).__name__, TypeError)
    if not isinstance(x, np.ndarray) or x.dtype not in _validate.FLOAT_DTYPES:
        got = f"dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        _validate.fail(where, "x", "a float32 or float64 ndarray (perturbed in place)", got, TypeError)
    if not x.flags.writeable:
        _validate.fail(where, "x", "writeable (it is perturbed in place and restored)", "a read-only array")
    h = _validate.scalar(h, where, "h", gt=0.0)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        original = x[idx]
        try:
            x[idx] = float(original) + h
            f_plus = float(f(x))
            x[idx] = float(original) - h
            f_minus = float(f(x))
        finally:
            x[idx] = original
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad

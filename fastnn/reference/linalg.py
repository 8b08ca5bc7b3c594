"""Matrix product: the reference twin of :mod:`fastnn.kernels.linalg`."""

from __future__ import annotations

import numpy as np

from .. import _checks

__all__ = ["matmul"]


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product of two 2-D arrays (what the affine layers compute).

    .. math::

        out[i, j] = \\sum_k a[i, k]\\, b[k, j]

    Parameters
    ----------
    a : ndarray (M, K)
        float32 or float64 (ints promote to float64); any strides.
    b : ndarray (K, N)

    Returns
    -------
    out : ndarray (M, N)
        Common dtype of a and b, C-contiguous.
    """
    return _matmul(*_checks.check_matmul("matmul", a, b))


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a @ b)

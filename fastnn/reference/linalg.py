"""Matrix product: the reference twin of :mod:`fastnn.kernels.linalg`."""

from __future__ import annotations

import numpy as np

from .. import _validate

__all__ = ["matmul"]


def _matmul_checks(where: str, a: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    """Both operands as 2-D floats of their common dtype with matching inner sizes."""
    a, b = _validate.float_arrays(where, a=a, b=b)
    for name, arr in (("a", a), ("b", b)):
        if arr.ndim != 2:
            _validate.fail(where, name, "a 2-D array", f"shape {arr.shape}", ValueError)
    if a.shape[1] != b.shape[0]:
        _validate.fail(where, "b", f"{a.shape[1]} rows (a has {a.shape[1]} columns)", f"shape {b.shape}",
                       ValueError)
    return a, b


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
    a, b = _matmul_checks("matmul", a, b)
    return np.ascontiguousarray(a @ b)

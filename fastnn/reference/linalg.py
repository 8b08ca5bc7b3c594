"""Matrix product: the reference twin of :mod:`fastnn.kernels.linalg`."""

from __future__ import annotations

import numpy as np

from .. import _checks

__all__ = ["add_into", "column_sum", "matmul", "matmul_bias"]


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Matrix product of two 2-D arrays (what the affine layers compute).

    .. math::

        out[i, j] = \\sum_k a[i, k]\\, b[k, j]

    Parameters
    ----------
    a : ndarray (M, K)
        float32 or float64 (ints promote to float64); any strides.
    b : ndarray (K, N)
    out : ndarray (M, N) of the common dtype, optional
        Written with the product (and returned) instead of a new array; writeable, any strides, and it may
        share memory with ``a`` or ``b`` (the product is then computed first).

    Returns
    -------
    out : ndarray (M, N)
        Common dtype of a and b, C-contiguous (or the given ``out``).
    """
    return _matmul(*_checks.check_matmul_out("matmul", a, b, out))


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return np.ascontiguousarray(a @ b)
    out[...] = a @ b
    return out


def matmul_bias(a: np.ndarray, b: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Matrix product plus a bias added to every row (an affine layer's forward, ``x @ W + b``).

    .. math::

        out[i, j] = \\sum_k a[i, k]\\, b[k, j] + bias[j]

    Parameters
    ----------
    a : ndarray (M, K)
        float32 or float64 (ints promote to float64); any strides.
    b : ndarray (K, N)
    bias : ndarray (N,)

    Returns
    -------
    out : ndarray (M, N)
        Common dtype of the three, C-contiguous.
    """
    return _matmul_bias(*_checks.check_matmul_bias("matmul_bias", a, b, bias))


def _matmul_bias(a: np.ndarray, b: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a @ b + bias)


def column_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the rows of a 2-D array (an affine layer's bias gradient, ``dout.sum(axis=0)``).

    .. math::

        out[j] = \\sum_i a[i, j]

    Parameters
    ----------
    a : ndarray (M, N)
        float32 or float64 (ints promote to float64); any strides.

    Returns
    -------
    out : ndarray (N,)
        a's dtype; zeros when M is 0.
    """
    return _column_sum(*_checks.check_column_sum("column_sum", a))


def _column_sum(a: np.ndarray) -> np.ndarray:
    return a.sum(axis=0)


def add_into(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a += b`` in place (a residual connection's sum into an array the caller owns).

    .. math::

        a[i] \\leftarrow a[i] + b[i]

    Parameters
    ----------
    a : ndarray, any shape
        float32 or float64, writeable; updated in place.
    b : array_like, a's shape
        Cast to a's dtype first (ints and the other float type included); may overlap a.

    Returns
    -------
    a : ndarray
        The same array, updated.
    """
    return _add_into(*_checks.check_add_into("add_into", a, b))


def _add_into(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    np.add(a, b, out=a)
    return a

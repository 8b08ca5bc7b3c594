"""Dropout as Numba kernels, with the counter-based mask of :mod:`fastnn.reference.dropout`.

Element ``i`` of a mask hashes ``(seed, i)`` with SplitMix64 (the formula is in the reference module), so the
parallel twin, the serial twin and the NumPy reference produce bit-identical masks for any thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .. import _checks, _splitmix
from .._jit import helper, kernel
from .._splitmix import GAMMA, MIX1, MIX2

__all__ = ["dropout_mask", "dropout_forward", "dropout_backward"]

# uint64 globals: a Python int literal mixed with uint64 would make Numba compute in float64
_GAMMA = np.uint64(GAMMA)
_MIX1 = np.uint64(MIX1)
_MIX2 = np.uint64(MIX2)
_ONE = np.uint64(1)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)


@helper
def _mix64(z):
    """SplitMix64 finaliser on a uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@kernel("elementwise")
def _mask(out, key, threshold):
    for i in prange(out.shape[0]):
        u = _mix64(key + (np.uint64(i) + _ONE) * _GAMMA)
        out[i] = (u >> _S11) >= threshold


@kernel("elementwise")
def _apply(a, mask, out, scale, zero, one):
    for i in prange(a.shape[0]):
        # (a * mask) * scale as NumPy computes it: a dropped nan/inf gives nan, not 0
        out[i] = (a[i] * (one if mask[i] else zero)) * scale


def dropout_mask(shape, drop_ratio: float, seed: int) -> np.ndarray:
    """One parallel pass hashing each flat index with the compiled SplitMix64: bit-identical to the twin's mask for
    any thread count.
    """
    return _keep_mask(*_checks.check_dropout_mask("dropout_mask", shape, drop_ratio, seed))


def _dropout_mask(shape, drop_ratio: float, seed: int) -> np.ndarray:
    return _keep_mask(tuple(shape), _splitmix.stream_key(seed), _splitmix.keep_threshold(drop_ratio))


def _keep_mask(shape: tuple[int, ...], key: int, threshold: int) -> np.ndarray:
    mask = np.empty(shape, np.bool_)
    n = math.prod(shape)
    _mask.run(n, mask.reshape(-1), np.uint64(key), np.uint64(threshold))
    return mask


def _run_apply(a: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    out = np.empty(a.shape, a.dtype)
    t = a.dtype.type
    _apply.run(a.size, np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(mask).reshape(-1),
               out.reshape(-1), t(scale), t(0), t(1))
    return out


def dropout_forward(x: np.ndarray, mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """One pass over the flattened arrays into a new C-contiguous array, computing ``(x * mask) * scale`` in NumPy's
    order, so a dropped NaN or inf gives NaN as in the twin.
    """
    return _run_apply(*_checks.check_dropout("dropout_forward", "x", x, mask, scale))


def _dropout_forward(x: np.ndarray, mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return _run_apply(x, mask, scale)


def dropout_backward(dout: np.ndarray, mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """One pass, as :func:`dropout_forward`."""
    return _run_apply(*_checks.check_dropout("dropout_backward", "dout", dout, mask, scale))


def _dropout_backward(dout: np.ndarray, mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return _run_apply(dout, mask, scale)

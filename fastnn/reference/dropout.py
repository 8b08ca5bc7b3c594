r"""Dropout with a counter-based random mask, in NumPy: the specification of :mod:`fastnn.kernels.dropout`.

The keep decision of element ``i`` (flat C-order index) is a pure function of ``(seed, i)``, so a mask is
reproducible from its seed and identical whichever implementation, thread count or chunking computes it:

.. math::
    k &= \mathrm{mix}(s + \gamma), \qquad u_i = \mathrm{mix}(k + (i + 1)\gamma) \quad (\mathrm{mod}\ 2^{64}) \\
    \mathrm{keep}_i &= \lfloor u_i / 2^{11} \rfloor \ \ge\ \lceil r \cdot 2^{53} \rceil

where :math:`\gamma` = ``0x9E3779B97F4A7C15`` and :math:`\mathrm{mix}` is the SplitMix64 finaliser (Steele, Lea
& Flood 2014, constants of Vigna's ``splitmix64.c``). :math:`u_i` is thus output :math:`i + 1` of a SplitMix64
generator seeded with the seed's own first output :math:`k` (hashing the seed first keeps nearby seeds from
giving shifted copies of one stream). The top 53 bits of :math:`u_i` are a uniform number
:math:`v_i = \lfloor u_i / 2^{11} \rfloor / 2^{53} \in [0, 1)`; keeping when :math:`v_i \ge r` (compared exactly,
in integers) gives :math:`P(\mathrm{keep}) = 1 - r` up to :math:`2^{-53}`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _checks, _splitmix
from .._splitmix import GAMMA, MIX1, MIX2

__all__ = ["dropout_mask", "dropout_forward", "dropout_backward"]

def dropout_mask(shape, drop_ratio: float, seed: int) -> np.ndarray:
    """Boolean keep-mask, ``True`` with probability ``1 - drop_ratio``, a pure function of (seed, flat index).

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the mask (the activations it applies to).
    drop_ratio : float
        Probability of dropping an element, in [0, 1].
    seed : int
        In [0, 2**64).

    Returns
    -------
    mask : ndarray of bool, ``shape``
    """
    return _keep_mask(*_checks.check_dropout_mask("dropout_mask", shape, drop_ratio, seed))


def _dropout_mask(shape, drop_ratio: float, seed: int) -> np.ndarray:
    return _keep_mask(tuple(shape), _splitmix.stream_key(seed), _splitmix.keep_threshold(drop_ratio))


def _keep_mask(shape: tuple[int, ...], key: int, threshold: int) -> np.ndarray:
    n = math.prod(shape)
    z = np.uint64(key) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GAMMA)  # wraps mod 2**64
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)) >= np.uint64(threshold)).reshape(shape)


def _apply(a: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    return a * mask * a.dtype.type(scale)


def _dropout_forward(x: np.ndarray, mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return _apply(x, mask, scale)


def _dropout_backward(dout: np.ndarray, mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return _apply(dout, mask, scale)


def dropout_forward(x: np.ndarray, mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    r"""Apply a dropout mask: :math:`x \cdot \mathrm{mask} \cdot \mathrm{scale}`.

    Use ``scale = 1 / (1 - drop_ratio)`` for inverted dropout. A dropped NaN or inf stays NaN (``nan * 0``), as
    in PyTorch.

    Parameters
    ----------
    x : array_like, any shape
    mask : ndarray of bool, x's shape
    scale : float
        Finite.

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    return _apply(*_checks.check_dropout("dropout_forward", "x", x, mask, scale))


def dropout_backward(dout: np.ndarray, mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    r"""Gradient of :func:`dropout_forward`: :math:`dout \cdot \mathrm{mask} \cdot \mathrm{scale}`.

    Parameters
    ----------
    dout : array_like, any shape
    mask : ndarray of bool, dout's shape
    scale : float
        The forward scale.

    Returns
    -------
    dx : ndarray, dout's shape and float dtype
    """
    return _apply(*_checks.check_dropout("dropout_backward", "dout", dout, mask, scale))

"""Element-wise activations, forward and backward, as Numba kernels.

Same names, signatures and results as :mod:`fastnn.reference.activations`, whose docstrings (the contract) each
function here carries too (see :mod:`fastnn.kernels`). Every function is one loop over the flattened input
(copied to C order first if it is not), run by the parallel twin from ``config.PARALLEL_MIN_WORK["elementwise"]``
elements; the output is a new C-contiguous array of the input's float dtype. NaN propagates as in
PyTorch: every comparison is written so that a NaN input takes the branch that carries it through
(``relu(nan) = nan``; ``relu_backward`` passes ``dout`` where ``x`` is NaN, as ``threshold_backward`` does).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .. import _checks, config
from .._jit import kernel
from ._math import _exp_nonpos, _fdiv, exp_nonpos_constants

__all__ = ["relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
           "leaky_relu_forward", "leaky_relu_backward"]


@kernel("elementwise")
def _relu_fwd(x, out):
    for i in prange(x.shape[0]):
        xi = x[i]
        if xi < 0:  # false for nan: nan is copied through
            out[i] = 0
        else:
            out[i] = xi


@kernel("elementwise")
def _relu_bwd(dout, x, dx):
    for i in prange(x.shape[0]):
        if x[i] <= 0:  # false for nan: the gradient passes, as PyTorch's threshold_backward
            dx[i] = 0
        else:
            dx[i] = dout[i]


@kernel("elementwise")
def _sigmoid_fwd(x, out, one, ec, coefs):
    for i in prange(x.shape[0]):
        xi = x[i]
        # exp of a non-positive number never overflows; both branches share it
        e = _exp_nonpos(-abs(xi), ec, coefs)
        if xi >= 0:
            out[i] = _fdiv(one, one + e)
        else:
            out[i] = _fdiv(e, one + e)


# (dout * o) * (1 - o) as written, in both twins and the cached copy: with reassociation the serial and the
# parallel twin rounded it differently (tools/thread_bits.py, 1.1e-7 of the largest value in float32)
@kernel("elementwise", config.FASTMATH_IN_ORDER)
def _sigmoid_bwd(dout, out, dx, one):
    for i in prange(out.shape[0]):
        o = out[i]
        dx[i] = dout[i] * o * (one - o)


@kernel("elementwise")
def _tanh_fwd(x, out):
    for i in prange(x.shape[0]):
        out[i] = math.tanh(x[i])


@kernel("elementwise")
def _tanh_bwd(dout, out, dx, one):
    for i in prange(out.shape[0]):
        o = out[i]
        dx[i] = dout[i] * (one - o * o)


@kernel("elementwise")
def _leaky_fwd(x, out, alpha):
    for i in prange(x.shape[0]):
        xi = x[i]
        if xi > 0:
            out[i] = xi
        else:
            out[i] = alpha * xi


@kernel("elementwise")
def _leaky_bwd(dout, x, dx, alpha):
    for i in prange(x.shape[0]):
        if x[i] > 0:
            dx[i] = dout[i]
        else:
            dx[i] = alpha * dout[i]


def _flat(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1)


def _unary(body, x: np.ndarray, *scalars) -> np.ndarray:
    """Run ``body`` on checked ``x`` into a new array of its shape and dtype."""
    out = np.empty(x.shape, x.dtype)
    body.run(x.size, _flat(x), out.reshape(-1), *(x.dtype.type(s) for s in scalars))
    return out


def _binary(body, dout: np.ndarray, a: np.ndarray, *scalars) -> np.ndarray:
    """Run ``body`` on checked ``dout`` and forward array ``a`` into a new array of their shape and dtype."""
    dx = np.empty(a.shape, a.dtype)
    body.run(a.size, _flat(dout), _flat(a), dx.reshape(-1), *(a.dtype.type(s) for s in scalars))
    return dx


def relu_forward(x: np.ndarray) -> np.ndarray:
    """One pass; the comparison is written so that NaN is copied through."""
    return _relu_forward(_checks.check_activation("relu_forward", x))


def _relu_forward(x: np.ndarray) -> np.ndarray:
    return _unary(_relu_fwd, x)


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """One pass; the comparison is written so that NaN in ``x`` passes ``dout`` (PyTorch's ``threshold_backward``)."""
    return _relu_backward(*_checks.check_activation_backward("relu_backward", dout, x, "x"))


def _relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    return _binary(_relu_bwd, dout, x)


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """One pass. The exponential is :func:`fastnn.kernels._math._exp_nonpos` of ``-|x|``: it never overflows,
    it vectorises (libm's scalar ``exp`` does not) and is within 1 ulp; the two branches give exact 0 and 1 at the ends.
    """
    return _sigmoid_forward(_checks.check_activation("sigmoid_forward", x))


def _sigmoid_forward(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape, x.dtype)
    _sigmoid_fwd.run(x.size, _flat(x), out.reshape(-1), x.dtype.type(1), *exp_nonpos_constants(x.dtype))
    return out


def sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """One pass."""
    return _sigmoid_backward(*_checks.check_activation_backward("sigmoid_backward", dout, out, "out"))


def _sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    return _binary(_sigmoid_bwd, dout, out, 1)


def tanh_forward(x: np.ndarray) -> np.ndarray:
    """One pass (libm's ``tanh`` per element)."""
    return _tanh_forward(_checks.check_activation("tanh_forward", x))


def _tanh_forward(x: np.ndarray) -> np.ndarray:
    return _unary(_tanh_fwd, x)


def tanh_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """One pass."""
    return _tanh_backward(*_checks.check_activation_backward("tanh_backward", dout, out, "out"))


def _tanh_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    return _binary(_tanh_bwd, dout, out, 1)


def leaky_relu_forward(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """One pass, ``alpha`` cast to x's dtype."""
    return _leaky_relu_forward(*_checks.check_leaky_relu("leaky_relu_forward", x, alpha))


def _leaky_relu_forward(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    return _unary(_leaky_fwd, x, alpha)


def leaky_relu_backward(dout: np.ndarray, x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """One pass, ``alpha`` cast to the arrays' dtype."""
    return _leaky_relu_backward(*_checks.check_leaky_relu_backward("leaky_relu_backward", dout, x, alpha))


def _leaky_relu_backward(dout: np.ndarray, x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    return _binary(_leaky_bwd, dout, x, alpha)

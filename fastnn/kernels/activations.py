"""Element-wise activations, forward and backward, as Numba kernels.

Same names, signatures and results as :mod:`fastnn.reference.activations` (formulas there). Inputs of any
shape and layout; the output is a new C-contiguous array of the input's float dtype. NaN propagates as in
PyTorch: every comparison is written so that a NaN input takes the branch that carries it through
(``relu(nan) = nan``; ``relu_backward`` passes ``dout`` where ``x`` is NaN, as ``threshold_backward`` does).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir as llvm_ir
from numba import prange, types
from numba.extending import intrinsic

from .. import _validate, config
from .._jit import _njit, helper, kernel
from ..reference.activations import _pair

__all__ = ["relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
           "leaky_relu_forward", "leaky_relu_backward"]


def _true_divide(a, b):
    return a / b


#: ``a / b`` with IEEE semantics, for use inside kernel bodies. Numba's default error model ("python") makes
#: every float division in a serial body test its divisor for zero and raise ZeroDivisionError; that branch
#: also stops LLVM from vectorising the loop (measured: the serial Adam body compiled to scalar ``ss`` code).
#: Compiled on its own with the NumPy error model, the division is inlined by LLVM without the test.
_fdiv = _njit(_true_divide, error_model="numpy", fastmath=set(config.FASTMATH))


# ---------------------------------------------------------------------------------------------------------------
# A vectorisable exp for non-positive arguments (softmax's x - max, sigmoid's -|x|). Numba calls libm's scalar
# exp/expf, which stops LLVM from vectorising a loop (there is no SVML here): measured 16 ns per element in a
# softmax row against NumPy's ~1 ns SIMD exp. This one is Cody & Waite's range reduction x = k ln2 + r,
# |r| <= ln2/2, then e^r by its Taylor polynomial (degree 7 in float32, 13 in float64: truncation below half an
# ulp), times 2^k built from exponent bits (no table: a gather from an array argument may alias the
# output, which also stops vectorisation). Measured error, float32 and float64: < 1 ulp for normal results
# (tests/kernels/test_activations.py::test_exp_nonpos_accuracy).

@intrinsic
def _pow2i(typingctx, k):
    """``2.0**k`` for an integer-valued float ``k`` in the normal exponent range, by writing the exponent bits."""
    if not isinstance(k, types.Float):
        return None
    bits, mantissa, bias = (32, 23, 127) if k.bitwidth == 32 else (64, 52, 1023)

    def codegen(context, builder, signature, args):
        ity = llvm_ir.IntType(bits)
        e = builder.add(builder.fptosi(args[0], ity), llvm_ir.Constant(ity, bias))
        return builder.bitcast(builder.shl(e, llvm_ir.Constant(ity, mantissa)), context.get_value_type(k))

    return k(k), codegen


def _exp_constants(dtype: np.dtype) -> tuple[tuple, tuple]:
    """Constants of :func:`_exp_nonpos` in ``dtype``, and the Taylor coefficients, highest degree first."""
    if dtype == np.float32:
        # Cephes expf's split of ln2: the high part has 9 bits, so k * hi is exact for |k| < 2**15.
        # Degree 7: truncation error 0.347^8/8! = 5e-9, a tenth of float32's ulp.
        ln2_hi, ln2_lo, kmax, degree = 0.693359375, -2.12194440e-4, 151, 7
    else:
        # fdlibm's split: the high part ends in 21 zero bits. Degree 13: 0.347^14/14! = 4e-18.
        ln2_hi, ln2_lo, kmax, degree = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1076, 13
    t = dtype.type
    underflow = math.log(2.0) * -(kmax - 1)  # below this e^x rounds to 0 in dtype
    consts = (t(1 / math.log(2.0)), t(ln2_hi), t(ln2_lo), t(underflow), t(0.5), t(0), t(-kmax))
    return consts, tuple(t(1 / math.factorial(i)) for i in range(degree, -1, -1))


_EXP = {dt: _exp_constants(dt) for dt in (np.dtype(np.float32), np.dtype(np.float64))}


def exp_nonpos_constants(dtype: np.dtype) -> tuple:
    """The constants a kernel passes on to :func:`_exp_nonpos` for arrays of ``dtype`` (a pair of tuples)."""
    return _EXP[np.dtype(dtype)]


@helper(fastmath=False)  # strict IEEE: reassociation would undo the exact two-part subtraction of k*ln2
def _exp_nonpos(x, ec, coefs):
    """``exp(x)`` for ``x <= 0``, ``-inf`` (gives 0) or NaN (gives NaN); ``ec, coefs`` from exp_nonpos_constants.

    (Two flat tuples: Numba's parallel launcher does not accept a tuple of tuples as an argument.)
    """
    k = np.floor(x * ec[0] + ec[4])
    if not k >= ec[6]:  # far below underflow, or nan: any k in range (the result is replaced, or nan anyway)
        k = ec[6]
    if k > ec[5]:  # never for x <= 0; keeps the exponent bits valid whatever x is
        k = ec[5]
    r = (x - k * ec[1]) - k * ec[2]
    p = coefs[0]
    for c in coefs[1:]:  # Horner; the tuple's length is a compile-time constant, so this unrolls
        p = p * r + c
    # 2^k as two normal powers, so results in the subnormal range are rounded once, correctly
    k1 = np.floor(k * ec[4])
    y = p * _pow2i(k1) * _pow2i(k - k1)
    if x < ec[3]:
        y = ec[5]
    return y


@kernel("elementwise")
def _exp_nonpos_array(x, out, ec, coefs):
    for i in prange(x.shape[0]):
        out[i] = _exp_nonpos(x[i], ec, coefs)


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


@kernel("elementwise")
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


def _unary(body, x, where: str, *scalars) -> np.ndarray:
    x = _validate.float_array(x, where, "x")
    out = np.empty(x.shape, x.dtype)
    body.run(x.size, _flat(x), out.reshape(-1), *(x.dtype.type(s) for s in scalars))
    return out


def _binary(body, dout, a, where: str, name: str, *scalars) -> np.ndarray:
    dout, a = _pair(where, dout, a, name)
    dx = np.empty(a.shape, a.dtype)
    body.run(a.size, _flat(dout), _flat(a), dx.reshape(-1), *(a.dtype.type(s) for s in scalars))
    return dx


def relu_forward(x: np.ndarray) -> np.ndarray:
    """ReLU, ``max(x, 0)`` with NaN propagated.

    Parameters
    ----------
    x : array_like, any shape, float32 or float64 (ints promote to float64)

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    return _unary(_relu_fwd, x, "relu_forward")


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of ReLU: ``dout`` where ``x > 0`` or ``x`` is NaN, else 0.

    Parameters
    ----------
    dout : array_like, x's shape
        Upstream gradient.
    x : array_like
        The forward input.

    Returns
    -------
    dx : ndarray, x's shape, the common float dtype of dout and x
    """
    return _binary(_relu_bwd, dout, x, "relu_backward", "x")


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """Logistic sigmoid, stable for large ``|x|`` (no overflow, exact 0 and 1 at the ends).

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    x = _validate.float_array(x, "sigmoid_forward", "x")
    out = np.empty(x.shape, x.dtype)
    _sigmoid_fwd.run(x.size, _flat(x), out.reshape(-1), x.dtype.type(1), *exp_nonpos_constants(x.dtype))
    return out


def sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Gradient of the sigmoid from its output: ``dout * out * (1 - out)``.

    Parameters
    ----------
    dout : array_like, out's shape
    out : array_like
        The forward output.

    Returns
    -------
    dx : ndarray, out's shape, the common float dtype
    """
    return _binary(_sigmoid_bwd, dout, out, "sigmoid_backward", "out", 1)


def tanh_forward(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    return _unary(_tanh_fwd, x, "tanh_forward")


def tanh_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Gradient of tanh from its output: ``dout * (1 - out**2)``.

    Parameters
    ----------
    dout : array_like, out's shape
    out : array_like
        The forward output.

    Returns
    -------
    dx : ndarray, out's shape, the common float dtype
    """
    return _binary(_tanh_bwd, dout, out, "tanh_backward", "out", 1)


def leaky_relu_forward(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """Leaky ReLU: ``x`` where ``x > 0``, else ``alpha * x`` (NaN propagates).

    Parameters
    ----------
    x : array_like, any shape
    alpha : float
        Slope for non-positive inputs (finite).

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    alpha = _validate.scalar(alpha, "leaky_relu_forward", "alpha")
    return _unary(_leaky_fwd, x, "leaky_relu_forward", alpha)


def leaky_relu_backward(dout: np.ndarray, x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """Gradient of leaky ReLU: ``dout`` where ``x > 0``, else ``alpha * dout`` (PyTorch's convention at NaN).

    Parameters
    ----------
    dout : array_like, x's shape
    x : array_like
        The forward input.
    alpha : float
        The forward slope.

    Returns
    -------
    dx : ndarray, x's shape, the common float dtype
    """
    alpha = _validate.scalar(alpha, "leaky_relu_backward", "alpha")
    return _binary(_leaky_bwd, dout, x, "leaky_relu_backward", "x", alpha)

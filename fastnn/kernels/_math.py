"""Scalar helpers that kernel bodies of several families call: the one place each is written.

Compiled with :func:`fastnn._jit.helper` (or ``_njit``), they are inlined into the loops that call them, so they
cost nothing per call; a kernel module imports them from here rather than from a sibling family. Moving one
changes the on-disk cache key of every kernel that uses it (:mod:`fastnn._jit` follows these imports).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir as llvm_ir
from numba import prange, types
from numba.extending import intrinsic, overload

from .. import config
from .._jit import _njit, helper, kernel
from . import _simd as simd


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

def _bits_type(ty: types.Type) -> tuple[int, int, int]:
    """(bits, mantissa bits, exponent bias) of a float type or of a vector's lanes."""
    return (32, 23, 127) if simd.lane_type(ty).bitwidth == 32 else (64, 52, 1023)


@intrinsic
def _horner(typingctx, coefs, r):
    """``coefs[0] * r**n + ... + coefs[n]`` by Horner's rule (p = p * r + c), unrolled here for scalars and
    vectors alike: as a Python loop over the tuple, LLVM left 12 steps of a float64 vector polynomial to a jump
    table (measured: the (128, 100) float64 cross-entropy 13 -> 23 us). The multiply and add of each step are
    separate instructions, fused by a ``contract`` caller as its own code would be.
    """
    if not (isinstance(coefs, types.UniTuple) and simd.lane_type(r) == coefs.dtype and isinstance(coefs.dtype,
                                                                                                 types.Float)):
        return None

    def codegen(context, builder, signature, args):
        ty = args[1].type
        p = None
        for i in range(coefs.count):
            c = builder.extract_value(args[0], i)
            if isinstance(ty, llvm_ir.VectorType):
                c = simd.splat_value(builder, ty, c)
            p = c if p is None else builder.fadd(builder.fmul(p, args[1]), c)
        return p

    return r(coefs, r), codegen


@intrinsic
def _pow2i(typingctx, k):
    """``2.0**k`` for an integer-valued float ``k`` in the normal exponent range, by writing the exponent bits (of
    each lane, for a vector)."""
    if not isinstance(simd.lane_type(k), types.Float):
        return None
    bits, mantissa, bias = _bits_type(k)

    def codegen(context, builder, signature, args):
        ity = simd.int_like(args[0].type, bits)
        e = builder.add(builder.fptosi(args[0], ity), simd.vector_const(builder, ity, bias))
        return builder.bitcast(builder.shl(e, simd.vector_const(builder, ity, mantissa)), args[0].type)

    return k(k), codegen

# ---------------------------------------------------------------------------------------------------------------
# Floats as integers of the same order, for max reductions LLVM vectorises: a float compare-select reduction is
# only vectorised with ``nnan`` (which fastnn does not use), an integer max always is.

def _ordered_codegen(to_int: bool):
    def codegen(context, builder, signature, args):
        (ty,) = signature.args
        bits = ty.bitwidth
        ity = llvm_ir.IntType(bits)
        b = builder.bitcast(args[0], ity) if to_int else args[0]
        # negative floats (sign bit set) order backwards as integers: flip their magnitude bits (an involution)
        sign = builder.ashr(b, llvm_ir.Constant(ity, bits - 1))  # all ones for a negative float, else 0
        flip = builder.and_(sign, llvm_ir.Constant(ity, (1 << (bits - 1)) - 1))
        key = builder.xor(b, flip)
        return key if to_int else builder.bitcast(key, context.get_value_type(signature.return_type))
    return codegen


@intrinsic
def _ordered_int(typingctx, f):
    """A signed integer of ``f``'s width that orders as the float does (-inf < ... < -0.0 < 0.0 < ... < +inf; a NaN
    with the sign bit clear above +inf, with it set below -inf)."""
    if not isinstance(f, types.Float):
        return None
    return (types.int32 if f.bitwidth == 32 else types.int64)(f), _ordered_codegen(True)


@intrinsic
def _ordered_float(typingctx, k):
    """The inverse of :func:`_ordered_int`."""
    if not isinstance(k, types.Integer) or k.bitwidth not in (32, 64):
        return None
    return (types.float32 if k.bitwidth == 32 else types.float64)(k), _ordered_codegen(False)


def _exp_constants(dtype: np.dtype) -> tuple[tuple, tuple]:
    """Constants of :func:`_exp_nonpos` and :func:`_exp_normal` in ``dtype``, and the Taylor coefficients, highest
    degree first."""
    if dtype == np.float32:
        # Cephes expf's split of ln2: the high part has 9 bits, so k * hi is exact for |k| < 2**15.
        # Degree 7: truncation error 0.347^8/8! = 5e-9, a tenth of float32's ulp.
        ln2_hi, ln2_lo, kmax, degree, kover = 0.693359375, -2.12194440e-4, 151, 7, 254
    else:
        # fdlibm's split: the high part ends in 21 zero bits. Degree 13: 0.347^14/14! = 4e-18.
        ln2_hi, ln2_lo, kmax, degree, kover = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1076, 13, 2046
    t = dtype.type
    underflow = math.log(2.0) * -(kmax - 1)  # below this e^x rounds to 0 in dtype
    # kover: 2^kover overflows as two normal powers, so a positive x (past the fast path's domain) still gets
    # e^x, up to inf
    # for _exp_normal: adding 1.5 * 2**mantissa rounds x / ln2 to the integer k in the sum's low bits; e^x is
    # normal for x >= normal_min, with the margin of two binades that p's exponent of -1 and rounding take
    mantissa, emin = (23, 126) if dtype == np.float32 else (52, 1022)
    normal_min = -math.log(2.0) * (emin - 2)
    consts = (t(1 / math.log(2.0)), t(ln2_hi), t(ln2_lo), t(underflow), t(0.5), t(0), t(-kmax), t(kover),
              t(1.5 * 2.0**mantissa), t(normal_min))
    return consts, tuple(t(1 / math.factorial(i)) for i in range(degree, -1, -1))


_EXP = {dt: _exp_constants(dt) for dt in (np.dtype(np.float32), np.dtype(np.float64))}


def exp_nonpos_constants(dtype: np.dtype) -> tuple:
    """The constants a kernel passes on to :func:`_exp_nonpos` for arrays of ``dtype`` (a pair of tuples)."""
    return _EXP[np.dtype(dtype)]


def exp_tables(x):
    """Inside a kernel: ``exp_nonpos_constants(x.dtype)`` for an array ``x``, as compile-time constants.

    Passing the two tuples as arguments instead costs Numba's dispatcher ~1.3 us per call (it types each of their
    18-24 NumPy scalars; measured on the softmax-CE forward, whose whole call is ~15 us at (128, 100)).
    """
    raise NotImplementedError("exp_tables is only callable from compiled kernels")


@overload(exp_tables, jit_options={"fastmath": set(config.FASTMATH)})
def _exp_tables(x):
    if not isinstance(x, types.Array) or not isinstance(x.dtype, types.Float):
        return None
    ec, coefs = exp_nonpos_constants(np.dtype(str(x.dtype)))
    return lambda x: (ec, coefs)


# Contraction only: reassociation would undo the two-part subtraction of k*ln2, but fused multiply-adds keep it
# (k * ln2_hi is exact, so fma(-k, ln2_hi, x) is the same number) and make Horner's rule half as many
# instructions. Measured on a (128, 100) softmax-like pass: float32 10.3 -> 8.4 us, float64 25 -> 17 us.
@helper(fastmath=frozenset({"contract"}))
def _exp_nonpos(x, ec, coefs):
    """``exp(x)`` for ``x <= 0``, ``-inf`` (gives 0) or NaN (gives NaN); ``ec, coefs`` from exp_nonpos_constants.
    Made and measured for ``x <= 0``; a positive x (attention's backward given an ``lse`` below a score) gets
    ``exp(x)`` too, to the same accuracy, and inf past overflow. ``x`` may be a scalar or a vector
    (:mod:`fastnn.kernels._simd`): the same operations lane by lane, the same bits
    (``tests/kernels/test_simd.py``).

    (Two flat tuples: Numba's parallel launcher does not accept a tuple of tuples as an argument.)
    """
    k = simd.floor(x * ec[0] + ec[4])
    # far below underflow, or nan: any k in range (the result is replaced, or nan anyway)
    k = simd.where_ge(k, ec[6], k, ec[6])
    k = simd.where_gt(k, ec[7], ec[7], k)  # never for x <= 0; keeps the exponent bits valid whatever x is
    r = (x - k * ec[1]) - k * ec[2]
    p = _horner(coefs, r)
    # 2^k as two normal powers, so results in the subnormal range are rounded once, correctly
    k1 = simd.floor(k * ec[4])
    y = p * _pow2i(k1) * _pow2i(k - k1)
    return simd.where_lt(x, ec[3], ec[5], y)


@intrinsic
def _times_pow2_bits(typingctx, p, t):
    """``p * 2**k`` for the integer ``k`` held in the low mantissa bits of ``t`` (``t = 1.5 * 2**mantissa + k``),
    by adding ``k`` to p's exponent bits: exact while the result is normal (lane-wise for vectors)."""
    if not isinstance(simd.lane_type(p), types.Float) or p != t:
        return None
    bits, mantissa, _ = _bits_type(p)

    def codegen(context, builder, signature, args):
        ity = simd.int_like(args[0].type, bits)
        # t's high bits drop out of the shift
        k = builder.shl(builder.bitcast(args[1], ity), simd.vector_const(builder, ity, mantissa))
        return builder.bitcast(builder.add(builder.bitcast(args[0], ity), k), args[0].type)

    return p(p, p), codegen


# The same flags as _exp_nonpos, for the same reason; reassociation would also fold (t - magic) back into x / ln2.
@helper(fastmath=frozenset({"contract"}))
def _exp_normal(x, ec, coefs):
    """``exp(x)`` for ``ec[9] <= x <= 0`` (``ec[9]``: -124 ln 2 in float32, -1020 ln 2 in float64), where it is
    normal: the same number as :func:`_exp_nonpos` (same reduction and polynomial) without its clamps and its
    two-part power for subnormal results, about half the instructions. The caller checks the range (softmax:
    once per row, from the row's minimum and maximum); outside it the result is wrong. A scalar or a vector, as
    :func:`_exp_nonpos`.
    """
    t = x * ec[0] + ec[8]  # k = round(x / ln2) in t's low bits
    k = t - ec[8]
    r = (x - k * ec[1]) - k * ec[2]
    p = _horner(coefs, r)
    return _times_pow2_bits(p, t)


@kernel("elementwise")
def _exp_normal_array(x, out, ec, coefs):
    """out = exp_normal(x) element-wise (1-D), for the accuracy tests."""
    for i in prange(x.shape[0]):
        out[i] = _exp_normal(x[i], ec, coefs)


@kernel("elementwise")
def _exp_nonpos_array(x, out, ec, coefs):
    """out = exp_nonpos(x) element-wise (1-D): the accuracy tests' way into the helper."""
    for i in prange(x.shape[0]):
        out[i] = _exp_nonpos(x[i], ec, coefs)

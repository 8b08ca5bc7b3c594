"""Explicit SIMD vectors for kernel bodies: a 512-bit vector of float32 or float64 lanes as a Numba value.

Numba has no vector type: a kernel's loops are vectorised by LLVM or not at all, and a loop LLVM vectorises gets
its choice of width, interleaving and remainder loops. Where a body works on many short rows (the softmax
cross-entropy: 100 classes, 128 rows), that choice costs more than the arithmetic: a 64-wide main loop, an 8-wide
epilogue and a scalar remainder per pass, and one row's dependency chain (range, exponentials, their sum, the
division) waiting on the next. With vectors as values, a body says exactly what runs: one vector per 16 float32
(8 float64) columns, one masked vector for the rest, and several rows interleaved in one loop.

A :class:`Vec` is LLVM's ``<16 x float>`` (``<8 x double>``; ``<16 x i32>``/``<8 x i64>`` for the integer keys
of a max). Targets without 512-bit registers split each operation in two or four; the results are the same.
``+``, ``-``, ``*`` and ``/`` work lane-wise between vectors and with scalars of their dtype, and unary ``-`` on a
vector; the operations below do the rest. Arithmetic is emitted as plain ``fadd``/``fsub``/``fmul``/``fdiv``/``fneg``,
so a body's fast-math flags apply to it as to its scalar code (``contract`` fuses the same multiply-adds: a vector
exponential gives the scalar one's bits).

Rows are the rows of C-contiguous 2-D arrays; a vector at (i, j) holds columns j .. j + lanes - 1 of row i. Callers
index whole vectors below the row's length and cover the rest with :func:`load_part`/:func:`store_part`. Bounds
are checked as Numba checks an element's (``NUMBA_BOUNDSCHECK=1`` or ``boundscheck=True``; ``IndexError``): the row,
and the first and last column a load or store touches (none for a part of no lanes).
"""

from __future__ import annotations

import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import lower_builtin
from numba.core.typing.templates import AbstractTemplate, infer_global, signature
from numba.extending import intrinsic, models, register_model

__all__ = ["Vec", "lanes", "load", "store", "load_part", "store_part", "splat", "head", "hsum", "keys", "kmax",
           "kmin", "hmax", "hmin", "floor", "where_ge", "where_gt", "where_lt", "vector_const", "splat_value",
           "lane_type", "int_like"]

#: Bits per vector.
WIDTH = 512


class Vec(types.Type):
    """A vector of ``WIDTH // dtype.bitwidth`` lanes of a float or integer Numba dtype."""

    def __init__(self, dtype: types.Type) -> None:
        self.dtype = dtype
        self.lanes = WIDTH // dtype.bitwidth
        super().__init__(name=f"Vec({dtype} x {self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def lane_type(ty: types.Type) -> types.Type:
    """The dtype of a vector's lanes, or ``ty`` itself for a scalar type (for intrinsics serving both)."""
    return ty.dtype if isinstance(ty, Vec) else ty


def int_like(ty: ir.Type, bits: int) -> ir.Type:
    """Codegen: the integer type of ``bits`` with ``ty``'s shape (a vector of as many lanes, or a scalar)."""
    if isinstance(ty, ir.VectorType):
        return ir.VectorType(ir.IntType(bits), ty.count)
    return ir.IntType(bits)


def _i32(v: int) -> ir.Constant:
    return ir.Constant(ir.IntType(32), v)


def splat_value(builder: ir.IRBuilder, vty: ir.VectorType, s: ir.Value) -> ir.Value:
    """Codegen: the scalar ``s`` in every lane of a vector of type ``vty``."""
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), s, _i32(0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vty.count), [0] * vty.count)
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), zeros)


def vector_const(builder: ir.IRBuilder, ty: ir.Type, value: int | float) -> ir.Value:
    """``value`` as a constant of ``ty``, every lane of it when ``ty`` is a vector type (for intrinsics that serve
    scalars and vectors alike, such as :func:`fastnn.kernels._math._times_pow2_bits`)."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, value)] * ty.count)
    return ir.Constant(ty, value)


def _row_ptr(context, builder, sig, args, count: int | ir.Value):
    """Address of a[i, j] for the (array, i, j, ...) arguments of an intrinsic, as a pointer to a vector, of which
    ``count`` elements are read or written (a constant, or an intp value; bounds-checked when the context checks)."""
    aryty, ity, jty = sig.args[:3]
    ary = context.make_array(aryty)(context, builder, args[0])
    i = context.cast(builder, args[1], ity, types.intp)
    j = context.cast(builder, args[2], jty, types.intp)
    if context.enable_boundscheck:
        intp = context.get_value_type(types.intp)
        count = ir.Constant(intp, count) if isinstance(count, int) else count
        with builder.if_then(builder.icmp_signed(">", count, ir.Constant(intp, 0))):
            last = builder.sub(builder.add(j, count), ir.Constant(intp, 1))
            for index in (j, last):
                cgutils.get_item_pointer(context, builder, aryty, ary, [i, index], boundscheck=True)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [i, j], wraparound=False)


def _is_rows(a: types.Type) -> bool:
    """A C-contiguous 2-D float array (a vector load reads a row's consecutive elements; other layouts fail to
    type)."""
    return isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C" and isinstance(a.dtype, types.Float)


def _lane_mask(builder: ir.IRBuilder, context, count: int, n: ir.Value, nty: types.Type) -> ir.Value:
    """<count x i1>: lane l is set where l < n."""
    ity = ir.IntType(64)
    index = ir.Constant(ir.VectorType(ity, count), list(range(count)))
    bound = splat_value(builder, ir.VectorType(ity, count), context.cast(builder, n, nty, types.int64))
    return builder.icmp_signed("<", index, bound)


@intrinsic
def lanes(typingctx, a):
    """Lanes of a vector of ``a``'s dtype (an array's), a compile-time constant."""
    if not (isinstance(a, types.Array) and isinstance(a.dtype, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, Vec(a.dtype).lanes)

    return types.intp(a), codegen


@intrinsic
def load(typingctx, a, i, j):
    """The vector a[i, j : j + lanes] (unaligned)."""
    if not (_is_rows(a) and isinstance(i, types.Integer) and isinstance(j, types.Integer)):
        return None
    vt = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(vt)
        ptr = builder.bitcast(_row_ptr(context, builder, sig, args, vt.lanes), vty.as_pointer())
        return builder.load(ptr, align=a.dtype.bitwidth // 8)

    return vt(a, i, j), codegen


@intrinsic
def store(typingctx, a, i, j, v):
    """a[i, j : j + lanes] = v."""
    if not (_is_rows(a) and isinstance(v, Vec) and v.dtype == a.dtype):
        return None

    def codegen(context, builder, sig, args):
        ptr = builder.bitcast(_row_ptr(context, builder, sig, args, v.lanes), args[3].type.as_pointer())
        builder.store(args[3], ptr, align=a.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(a, i, j, v), codegen


def _masked(name: str, context, builder, vty: ir.VectorType, ptr: ir.Value) -> ir.Function:
    """LLVM's masked load or store for ``vty`` (the form with an alignment operand, which LLVM upgrades itself)."""
    mty = ir.VectorType(ir.IntType(1), vty.count)
    suffix = f"v{vty.count}{'f32' if vty.element == ir.FloatType() else 'f64'}.p0"
    if name == "load":
        fnty = ir.FunctionType(vty, [ptr.type, ir.IntType(32), mty, vty])
    else:
        fnty = ir.FunctionType(ir.VoidType(), [vty, ptr.type, ir.IntType(32), mty])
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.{name}.{suffix}")


@intrinsic
def load_part(typingctx, a, i, j, n, fill):
    """The vector a[i, j : j + n] (0 <= n <= lanes) with ``fill`` in the other lanes; nothing past a[i, j + n - 1]
    is read."""
    if not (_is_rows(a) and isinstance(n, types.Integer) and fill == a.dtype):
        return None
    vt = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(vt)
        ptr = _row_ptr(context, builder, sig, args, context.cast(builder, args[3], sig.args[3], types.intp))
        mask = _lane_mask(builder, context, vt.lanes, args[3], sig.args[3])
        fn = _masked("load", context, builder, vty, ptr)
        return builder.call(fn, [ptr, _i32(a.dtype.bitwidth // 8), mask, splat_value(builder, vty, args[4])])

    return vt(a, i, j, n, fill), codegen


@intrinsic
def store_part(typingctx, a, i, j, v, n):
    """a[i, j : j + n] = v[:n] (0 <= n <= lanes); nothing else is written."""
    if not (_is_rows(a) and isinstance(v, Vec) and v.dtype == a.dtype and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _row_ptr(context, builder, sig, args, context.cast(builder, args[4], sig.args[4], types.intp))
        mask = _lane_mask(builder, context, v.lanes, args[4], sig.args[4])
        fn = _masked("store", context, builder, args[3].type, ptr)
        builder.call(fn, [args[3], ptr, _i32(a.dtype.bitwidth // 8), mask])
        return context.get_dummy_value()

    return types.none(a, i, j, v, n), codegen


@intrinsic
def splat(typingctx, s):
    """A vector with ``s`` in every lane."""
    if not isinstance(s, (types.Float, types.Integer)):
        return None
    vt = Vec(s)

    def codegen(context, builder, sig, args):
        return splat_value(builder, context.get_value_type(vt), args[0])

    return vt(s), codegen


@intrinsic
def head(typingctx, v, n, fill):
    """``v`` in lanes < n, ``fill`` in the others."""
    if not (isinstance(v, Vec) and isinstance(n, types.Integer) and fill == v.dtype):
        return None

    def codegen(context, builder, sig, args):
        mask = _lane_mask(builder, context, v.lanes, args[1], sig.args[1])
        return builder.select(mask, args[0], splat_value(builder, args[0].type, args[2]))

    return v(v, n, fill), codegen


def _operand(builder: ir.IRBuilder, vty: ir.VectorType, ty: types.Type, value: ir.Value) -> ir.Value:
    return value if isinstance(ty, Vec) else splat_value(builder, vty, value)


def _arith_kind(a: types.Type, b: types.Type) -> Vec | None:
    """The vector type of a lane-wise operation between ``a`` and ``b`` (vectors, or a vector and a scalar of its
    dtype, either side), else None."""
    vt = a if isinstance(a, Vec) else b
    if isinstance(vt, Vec) and isinstance(vt.dtype, types.Float) and {a, b} <= {vt, vt.dtype}:
        return vt
    return None


def _bind(operation, instruction: str) -> None:
    """``+``, ``-``, ``*`` or ``/`` on vectors, typed and lowered in place (no function compiled per operand types)."""

    @infer_global(operation)
    class _Typing(AbstractTemplate):
        def generic(self, args, kws):
            if len(args) == 2 and not kws and (vt := _arith_kind(*args)) is not None:
                return signature(vt, *args)
            return None

    def lower(context, builder, sig, args):
        vty = context.get_value_type(sig.return_type)
        x, y = (_operand(builder, vty, t, v) for t, v in zip(sig.args, args, strict=True))
        return getattr(builder, instruction)(x, y)

    for operands in ((Vec, Vec), (Vec, types.Float), (types.Float, Vec)):
        lower_builtin(operation, *operands)(lower)


for _operation, _instruction in ((operator.add, "fadd"), (operator.sub, "fsub"), (operator.mul, "fmul"),
                                (operator.truediv, "fdiv")):
    _bind(_operation, _instruction)


@infer_global(operator.neg)
class _NegTyping(AbstractTemplate):
    def generic(self, args, kws):
        if len(args) == 1 and not kws and isinstance(args[0], Vec) and isinstance(args[0].dtype, types.Float):
            return signature(args[0], args[0])
        return None


@lower_builtin(operator.neg, Vec)
def _neg(context, builder, sig, args):
    """``-v``: LLVM's ``fneg`` lane by lane, as Numba's scalar negation (the sign flipped, NaN and zeros
    included)."""
    return builder.fneg(args[0])


def _halves(builder: ir.IRBuilder, v: ir.Value, combine) -> ir.Value:
    """Lane 0 of combining the vector's halves, then their halves, down to one lane (a fixed order)."""
    n = v.type.count
    while n > 1:
        half = n // 2
        low = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), half), list(range(half))))
        high = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), half),
                                                        list(range(half, n))))
        v = combine(low, high)
        n = half
    return builder.extract_element(v, _i32(0))


@intrinsic
def hsum(typingctx, v):
    """The sum of a float vector's lanes, as a tree: lanes l and l + lanes/2 first, and so on (a fixed order)."""
    if not (isinstance(v, Vec) and isinstance(v.dtype, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        return _halves(builder, args[0], builder.fadd)

    return v.dtype(v), codegen


@intrinsic
def keys(typingctx, v):
    """The lanes' order-preserving integers (:func:`fastnn.kernels._math._ordered_int`, lane-wise)."""
    if not (isinstance(v, Vec) and isinstance(v.dtype, types.Float)):
        return None
    bits = v.dtype.bitwidth
    kt = Vec(types.int32 if bits == 32 else types.int64)

    def codegen(context, builder, sig, args):
        ivty = ir.VectorType(ir.IntType(bits), v.lanes)
        b = builder.bitcast(args[0], ivty)
        sign = builder.ashr(b, vector_const(builder, ivty, bits - 1))
        return builder.xor(b, builder.and_(sign, vector_const(builder, ivty, (1 << (bits - 1)) - 1)))

    return kt(v), codegen


def _is_int_vec(v: types.Type) -> bool:
    return isinstance(v, Vec) and isinstance(v.dtype, types.Integer)


def _choose(builder: ir.IRBuilder, predicate: str):
    return lambda a, b: builder.select(builder.icmp_signed(predicate, a, b), a, b)


def _lanewise_pick(predicate: str):
    """Lane-wise signed max (">") or min ("<") of two integer vectors."""

    @intrinsic
    def pick(typingctx, a, b):
        if not (_is_int_vec(a) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return _choose(builder, predicate)(*args)

        return a(a, b), codegen

    return pick


def _horizontal_pick(predicate: str):
    """The signed max (">") or min ("<") of an integer vector's lanes."""

    @intrinsic
    def pick(typingctx, v):
        if not _is_int_vec(v):
            return None

        def codegen(context, builder, sig, args):
            return _halves(builder, args[0], _choose(builder, predicate))

        return v.dtype(v), codegen

    return pick


kmax, kmin = _lanewise_pick(">"), _lanewise_pick("<")
hmax, hmin = _horizontal_pick(">"), _horizontal_pick("<")


def _float_kind(*tys: types.Type) -> types.Type | None:
    """The one vector type among ``tys`` (the rest scalars of its dtype), or the one float type when all are that
    scalar; None otherwise."""
    vt = next((t for t in tys if isinstance(t, Vec)), None)
    kind = vt if vt is not None else tys[0]
    dtype = kind.dtype if vt is not None else kind
    if not isinstance(dtype, types.Float) or not set(tys) <= {kind, dtype}:
        return None
    return kind


@intrinsic
def floor(typingctx, v):
    """Lane-wise floor (of a scalar too: ``np.floor``'s ``llvm.floor``)."""
    if _float_kind(v) is None:
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        element = ty.element if isinstance(ty, ir.VectorType) else ty
        suffix = ("f32" if element == ir.FloatType() else "f64")
        if isinstance(ty, ir.VectorType):
            suffix = f"v{ty.count}{suffix}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty]), f"llvm.floor.{suffix}")
        return builder.call(fn, [args[0]])

    return v(v), codegen


def _where(predicate: str):
    """``x`` where ``a <predicate> b`` (ordered: false where either is NaN), else ``y``: lane-wise when any of the
    four is a vector (the others scalars of its dtype), a select between scalars otherwise."""

    @intrinsic
    def where(typingctx, a, b, x, y):
        kind = _float_kind(a, b, x, y)
        if kind is None:
            return None

        def codegen(context, builder, sig, args):
            vty = context.get_value_type(kind)
            if isinstance(kind, Vec):
                args = [_operand(builder, vty, t, v) for t, v in zip(sig.args, args, strict=True)]
            va, vb, vx, vy = args
            return builder.select(builder.fcmp_ordered(predicate, va, vb), vx, vy)

        return kind(a, b, x, y), codegen

    return where


where_ge, where_gt, where_lt = _where(">="), _where(">"), _where("<")

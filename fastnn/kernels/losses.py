"""Softmax, softmax cross-entropy and the multiclass SVM loss as Numba kernels.

Same names, signatures and results as :mod:`fastnn.reference.losses` (formulas there). Rows are independent,
so the bodies run in parallel over samples; each row's loss goes to its own slot of a (N,) buffer and a serial
pass sums the buffer in float64 (no reduction into shared memory from threads). Losses are batch means returned
as 0-d NumPy scalars of x's dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .. import _checks, _validate
from .._jit import helper, kernel
from . import _simd as simd
from ._math import _exp_nonpos, _exp_normal, _fdiv, _ordered_float, _ordered_int, exp_tables

__all__ = ["softmax_forward", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "svm_loss",
           "time_softmax_cross_entropy_forward", "time_softmax_cross_entropy_backward", "softmax_backward"]


@helper(inline=True)
def _row_range(x, i):
    """Min and max of row ``i``; with a NaN in the row, either may be NaN or not (the row goes the general way).

    Over the floats' order-preserving integers (:func:`fastnn.kernels._math._ordered_int`), which LLVM
    vectorises; a float compare-select chain is not vectorised without ``nnan``. Measured on (128, 100): float32
    1.2 us for the max alone, against 2.4 us for eight interleaved float maxima (and 3.7 ns per element for one).
    """
    lo = hi = _ordered_int(x[i, 0])
    for j in range(1, x.shape[1]):
        k = _ordered_int(x[i, j])
        hi = k if k > hi else hi
        lo = k if k < lo else lo
    return _ordered_float(lo), _ordered_float(hi)


@helper(inline=True)
def _row_max(x, i):
    """Max of row ``i`` (the max half of :func:`_row_range`, for attention's rows; inlined, the unused minimum is
    dead code)."""
    return _row_range(x, i)[1]


@helper(inline=True)
def _softmax_row(x, probs, i, t, ec, coefs):
    """Write softmax(x[i]) to probs[i]; return log of the shifted sum of exponentials and x[i, t] - max (the
    shifted score of column ``t``: the label's for a cross-entropy, any column in [0, K) otherwise).

    Inlined in Numba's IR (measured: called as a function, the (128, 100) float32 loss kernel took 16.5 us, inlined
    ~13 us). A row whose exponentials are all normal (min - max >= ec[9], the usual case) takes
    :func:`fastnn.kernels._math._exp_normal`, the same numbers in half the instructions (measured on (128, 100):
    13.4 -> 10.5 us float32, 32 -> 16 us float64); any other row (a NaN, an inf, a spread past ~86 in float32)
    the general :func:`fastnn.kernels._math._exp_nonpos`.

    Why ``x`` is read last: inlining binds ``x`` and ``probs`` to new variables, each an array reference Numba
    counts up at the row's start and down after its last use. Read last in the exponential loops, x's count went
    down at the end of each branch, and Numba's refcount pruning removed neither pair: four atomic counter updates
    per row. Read again here at the end, both go down in one block and both pairs are pruned (measured on the
    (128, 100) float32 loss kernel: 8.5 -> 7.0 us, the same bits).

    A NaN anywhere in the row, or a +inf (inf - inf), makes the whole row NaN, as in the reference.
    """
    k = x.shape[1]
    lo, m = _row_range(x, i)
    s = ec[5]  # zero of x's dtype
    if lo - m >= ec[9]:  # False for NaN
        for j in range(k):
            e = _exp_normal(x[i, j] - m, ec, coefs)
            probs[i, j] = e
            s += e
    else:
        for j in range(k):
            e = _exp_nonpos(x[i, j] - m, ec, coefs)
            probs[i, j] = e
            s += e
    for j in range(k):
        probs[i, j] = _fdiv(probs[i, j], s)
    return math.log(s), x[i, t] - m


@kernel("loss")
def _softmax(x, probs):
    ec, coefs = exp_tables(x)
    for i in prange(x.shape[0]):
        _softmax_row(x, probs, i, 0, ec, coefs)


@helper(inline=True)
def _store_mean(row_loss, n):
    """row_loss[n] = the mean of row_loss[:n], summed in float64 and rounded once to the slots' dtype (NumPy's
    ``dtype.type(total / n)``). Read from Python as ``row_loss[n]``, a scalar of the dtype: ~0.2 us less than
    building it from a returned float (measured on the (128, 100) loss call)."""
    total = 0.0  # float64 accumulator for the batch mean
    for i in range(n):
        total += row_loss[i]
    row_loss[n] = total / n


#: Elements per block of rows of the cross-entropy kernel: its parallel twin's work items, a quarter of the loss
#: family's default parallel threshold, so a parallel launch has at least 4 (balanced over 2 threads within a
#: block). Below that threshold the kernel takes one block.
CE_BLOCK = 1 << 12


@helper
def _range_step(x, i, j, hi, lo):
    """Row i's running maximum and minimum keys (:func:`fastnn.kernels._simd.keys`) with the vector at column j."""
    key = simd.keys(simd.load(x, i, j))
    return simd.kmax(hi, key), simd.kmin(lo, key)


@helper
def _range_tail(x, i, j, n, hi, lo):
    """:func:`_range_step` over the row's last ``n`` (< lanes) columns; the other lanes repeat column 0."""
    key = simd.keys(simd.load_part(x, i, j, n, x[i, 0]))
    return simd.kmax(hi, key), simd.kmin(lo, key)


@helper
def _row_extremes(hi, lo):
    """(min, max) of a row from its key vectors."""
    return _ordered_float(simd.hmin(lo)), _ordered_float(simd.hmax(hi))


@helper
def _exp_step(x, probs, i, j, m, acc, ec, coefs, normal):
    """probs[i, j:j+lanes] = exp(x - m), added to the row's vector of sums ``acc``: by :func:`_exp_normal` when
    ``normal`` (a literal: each lane's exponential is normal), else by :func:`_exp_nonpos` (the same numbers where
    both apply)."""
    v = simd.load(x, i, j) - m
    e = _exp_normal(v, ec, coefs) if normal else _exp_nonpos(v, ec, coefs)
    simd.store(probs, i, j, e)
    return acc + e


@helper
def _exp_tail(x, probs, i, j, n, m, acc, ec, coefs, normal):
    """:func:`_exp_step` over the row's last ``n`` (< lanes) columns; the other lanes add zeros."""
    v = simd.load_part(x, i, j, n, m) - m
    e = _exp_normal(v, ec, coefs) if normal else _exp_nonpos(v, ec, coefs)
    simd.store_part(probs, i, j, e, n)
    return acc + simd.head(e, n, ec[5])


@helper
def _exp_row(x, probs, i, m, ec, coefs):
    """Row i's exponentials of x - m into probs by :func:`_exp_nonpos`, and their sum: the steps of the kernel's
    normal path, one row at a time, so the bits of a row whose exponentials are all normal. For groups with a row
    that is not (a call, not inlined four times: it is the rare path, and its compile time counts)."""
    k = x.shape[1]
    step = simd.lanes(x)
    whole = k - k % step
    acc = simd.splat(ec[5])
    for j in range(0, whole, step):
        acc = _exp_step(x, probs, i, j, m, acc, ec, coefs, False)
    if whole < k:
        acc = _exp_tail(x, probs, i, whole, k - whole, m, acc, ec, coefs, False)
    return simd.hsum(acc)


@helper
def _scale_step(probs, i, j, inv):
    simd.store(probs, i, j, simd.load(probs, i, j) * inv)


@helper
def _scale_tail(probs, i, j, n, inv):
    simd.store_part(probs, i, j, simd.load_part(probs, i, j, n, inv) * inv, n)


@kernel("loss")
def _softmax_ce(x, labels, probs, row_loss):
    """Each row's softmax into ``probs`` and its loss (log-sum-exp - x[i, t]) into ``row_loss``, then their mean
    into ``row_loss[n]``; blocks of rows in parallel (CE_BLOCK).

    Four rows at a time, in explicit vectors (:mod:`fastnn.kernels._simd`): in each pass (range, exponentials,
    division) one loop steps through the four rows' columns together, so one row's reductions and divisions
    overlap the other three's work instead of stalling the pipeline row by row; the last K % lanes columns are one
    masked vector. The blocks are of whole groups; the array's last group repeats its last row where it runs out:
    computed again to the same bits, and divided once (scaled by one). Measured on Zen 4, (128, 100) float32,
    serial: 7.2-7.6 us with LLVM's vectorised row-by-row loops (its choice: 64-wide main loops, 8-wide epilogues
    and scalar remainders per pass), 5.7 us here.

    The body is written out here rather than in helpers taking the arrays: inlined in Numba's IR, those cost
    reference-count calls per group that Numba did not prune (measured 6.4 against 5.7 us).

    Each row's numbers depend on the row alone (not on which rows share its group, so not on the thread count):
    a group with a row whose exponentials are not all normal (min - max < ec[9], a NaN, an inf) takes
    :func:`_exp_row` for all four, which gives the normal path's bits where both apply. A row's sum is a
    vector sum over its columns, then :func:`fastnn.kernels._simd.hsum`: another order than
    :func:`_softmax_row`'s, so a probability may differ from :func:`softmax_forward`'s in its last bits.
    """
    ec, coefs = exp_tables(x)
    n, k = x.shape
    groups = (n + 3) // 4
    # blocks of whole groups (each block has one): only the array's last group can run short
    blocks = 1 if x.size < 4 * CE_BLOCK else min(groups, (x.size + CE_BLOCK - 1) // CE_BLOCK)
    step = simd.lanes(x)
    whole = k - k % step  # columns in whole vectors
    part = k - whole
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)
    unit = coefs[-1]  # 1 / 0!: one, of x's dtype
    for b in prange(blocks):
        first = np.uint64(4 * (b * groups // blocks))
        last = np.uint64(min(4 * ((b + 1) * groups // blocks), n)) - one
        for i0 in range(first, last + one, np.uint64(4)):
            i1, i2, i3 = min(i0 + one, last), min(i0 + two, last), min(i0 + three, last)
            hi0 = lo0 = simd.keys(simd.splat(x[i0, 0]))
            hi1 = lo1 = simd.keys(simd.splat(x[i1, 0]))
            hi2 = lo2 = simd.keys(simd.splat(x[i2, 0]))
            hi3 = lo3 = simd.keys(simd.splat(x[i3, 0]))
            for j in range(0, whole, step):
                hi0, lo0 = _range_step(x, i0, j, hi0, lo0)
                hi1, lo1 = _range_step(x, i1, j, hi1, lo1)
                hi2, lo2 = _range_step(x, i2, j, hi2, lo2)
                hi3, lo3 = _range_step(x, i3, j, hi3, lo3)
            if part:
                hi0, lo0 = _range_tail(x, i0, whole, part, hi0, lo0)
                hi1, lo1 = _range_tail(x, i1, whole, part, hi1, lo1)
                hi2, lo2 = _range_tail(x, i2, whole, part, hi2, lo2)
                hi3, lo3 = _range_tail(x, i3, whole, part, hi3, lo3)
            (lo0, m0), (lo1, m1) = _row_extremes(hi0, lo0), _row_extremes(hi1, lo1)
            (lo2, m2), (lo3, m3) = _row_extremes(hi2, lo2), _row_extremes(hi3, lo3)
            if lo0 - m0 >= ec[9] and lo1 - m1 >= ec[9] and lo2 - m2 >= ec[9] and lo3 - m3 >= ec[9]:  # not NaN
                a0 = a1 = a2 = a3 = simd.splat(ec[5])  # zeros
                for j in range(0, whole, step):
                    a0 = _exp_step(x, probs, i0, j, m0, a0, ec, coefs, True)
                    a1 = _exp_step(x, probs, i1, j, m1, a1, ec, coefs, True)
                    a2 = _exp_step(x, probs, i2, j, m2, a2, ec, coefs, True)
                    a3 = _exp_step(x, probs, i3, j, m3, a3, ec, coefs, True)
                if part:
                    a0 = _exp_tail(x, probs, i0, whole, part, m0, a0, ec, coefs, True)
                    a1 = _exp_tail(x, probs, i1, whole, part, m1, a1, ec, coefs, True)
                    a2 = _exp_tail(x, probs, i2, whole, part, m2, a2, ec, coefs, True)
                    a3 = _exp_tail(x, probs, i3, whole, part, m3, a3, ec, coefs, True)
                s0, s1, s2, s3 = simd.hsum(a0), simd.hsum(a1), simd.hsum(a2), simd.hsum(a3)
            else:
                s0, s1 = _exp_row(x, probs, i0, m0, ec, coefs), _exp_row(x, probs, i1, m1, ec, coefs)
                s2, s3 = _exp_row(x, probs, i2, m2, ec, coefs), _exp_row(x, probs, i3, m3, ec, coefs)
            inv0 = _fdiv(unit, s0)
            inv1 = _fdiv(unit, s1) if i0 + one <= last else unit
            inv2 = _fdiv(unit, s2) if i0 + two <= last else unit
            inv3 = _fdiv(unit, s3) if i0 + three <= last else unit
            for j in range(0, whole, step):
                _scale_step(probs, i0, j, inv0)
                _scale_step(probs, i1, j, inv1)
                _scale_step(probs, i2, j, inv2)
                _scale_step(probs, i3, j, inv3)
            if part:
                _scale_tail(probs, i0, whole, part, inv0)
                _scale_tail(probs, i1, whole, part, inv1)
                _scale_tail(probs, i2, whole, part, inv2)
                _scale_tail(probs, i3, whole, part, inv3)
            row_loss[i0] = math.log(s0) - (x[i0, labels[i0]] - m0)
            row_loss[i1] = math.log(s1) - (x[i1, labels[i1]] - m1)
            row_loss[i2] = math.log(s2) - (x[i2, labels[i2]] - m2)
            row_loss[i3] = math.log(s3) - (x[i3, labels[i3]] - m3)
    _store_mean(row_loss, n)


@kernel("loss")
def _softmax_ce_delta(x, labels, probs, row_loss, delta):
    # The book's -log(p + delta), one scalar log per row. The book layers' loss is compiled inside a cold first
    # training step (issue 16's <= 4 s), so this body is the short one: the general exponential only (the same
    # numbers as _softmax_row's normal-range fast path, tests/kernels/test_activations.py pins that), no row
    # pipeline. Measured: compile 0.59 -> 0.43 s of CPU (a cold SimpleConvNet step 3.94 -> 3.77 s, median of 3,
    # interleaved), for ~1 us more per (100, 10) call (3.0 -> 4.0 us; (128, 100) 7.6 -> 10.6 us)
    ec, coefs = exp_tables(x)
    n, k = x.shape
    for i in prange(n):
        m = _row_max(x, i)
        s = ec[5]  # zero of x's dtype
        for j in range(k):
            e = _exp_nonpos(x[i, j] - m, ec, coefs)
            probs[i, j] = e
            s += e
        for j in range(k):
            probs[i, j] = _fdiv(probs[i, j], s)
        row_loss[i] = -math.log(probs[i, labels[i]] + delta)
    _store_mean(row_loss, n)


@kernel("loss")
def _softmax_ce_bwd(probs, labels, dx, scale, one):
    for i in prange(probs.shape[0]):
        for j in range(probs.shape[1]):
            dx[i, j] = probs[i, j] * scale
        t = labels[i]
        dx[i, t] = (probs[i, t] - one) * scale


@kernel("loss")
def _svm(x, labels, dx, row_loss, zero, one, nf):
    n = x.shape[0]
    inv_n = _fdiv(one, nf)
    for i in prange(n):
        y = labels[i]
        xy = x[i, y]
        acc = zero
        count = zero
        for j in range(x.shape[1]):
            margin = x[i, j] - xy + one
            if j == y:
                dx[i, j] = zero
            elif margin > 0:
                acc += margin
                count += one
                dx[i, j] = inv_n
            else:
                if margin != margin:  # np.maximum(0, nan) = nan: the loss is nan, the gradient 0
                    acc += margin
                dx[i, j] = zero
        dx[i, y] = _fdiv(-count, nf)
        row_loss[i] = acc
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    return total


def softmax_forward(x: np.ndarray) -> np.ndarray:
    """Parallel over rows. Each row: its minimum and maximum as vectorised integer reductions (see
    ``_row_range``), the exponentials with the vectorised :func:`fastnn.kernels._math._exp_normal` (or
    ``_exp_nonpos`` where some are not normal), one division pass.
    """
    x = _checks.check_softmax("softmax_forward", x)
    probs = np.empty(x.shape, x.dtype)
    if x.size:
        _softmax.run(x.size, np.ascontiguousarray(x), probs)
    return probs


def softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray, *, delta: float = 0.0) -> tuple[np.generic, np.ndarray]:
    """The softmax of :func:`softmax_forward`, parallel over rows; each row's loss goes to its own slot and a
    serial pass sums the slots in float64 for the mean.
    """
    x, labels, delta = _checks.check_softmax_cross_entropy("softmax_cross_entropy_forward", x, t, delta)
    return _softmax_cross_entropy_forward(x, labels, delta=delta)


def _softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray, *,
                                   delta: float = 0.0) -> tuple[np.generic, np.ndarray]:
    n = x.shape[0]
    probs = np.empty(x.shape, x.dtype)
    row_loss = np.empty(n + 1, x.dtype)  # a slot per row, then the mean
    if delta:
        _softmax_ce_delta.run(x.size, np.ascontiguousarray(x), np.ascontiguousarray(t), probs, row_loss,
                              x.dtype.type(delta))
    else:
        _softmax_ce.run(x.size, np.ascontiguousarray(x), np.ascontiguousarray(t), probs, row_loss)
    return row_loss[n], probs


def softmax_cross_entropy_backward(probs: np.ndarray, t: np.ndarray, dout: float = 1.0) -> np.ndarray:
    """One parallel pass over rows, writing each row of ``dx`` once."""
    return _softmax_cross_entropy_backward(*_checks.check_softmax_cross_entropy_backward(
        "softmax_cross_entropy_backward", probs, t, dout))


def _softmax_cross_entropy_backward(probs: np.ndarray, t: np.ndarray, dout: float = 1.0) -> np.ndarray:
    dx = np.empty(probs.shape, probs.dtype)
    tp = probs.dtype.type
    _softmax_ce_bwd.run(probs.size, np.ascontiguousarray(probs), np.ascontiguousarray(t), dx,
                        tp(dout / probs.shape[0]), tp(1))
    return dx


def svm_loss(x: np.ndarray, y: np.ndarray) -> tuple[np.generic, np.ndarray]:
    """One parallel pass over rows computing the loss and ``dx`` together; the row losses are summed serially in
    float64.
    """
    x, labels = _checks.check_svm_loss("svm_loss", x, y)
    dx = np.empty(x.shape, x.dtype)
    row_loss = np.empty(x.shape[0], x.dtype)
    tp = x.dtype.type
    total = _svm.run(x.size, np.ascontiguousarray(x), np.ascontiguousarray(labels), dx, row_loss, tp(0), tp(1),
                     tp(x.shape[0]))
    return tp(total / x.shape[0]), dx


# ---------------------------------------------------------------------------------------------------------------
# Time-distributed softmax cross-entropy (Deep Learning from Scratch 2's TimeSoftmaxWithLoss, cs231n's
# temporal_softmax_loss): the rows are the N*T positions; an ignored position has loss 0 and gradient 0.


@kernel("loss")
def _time_softmax_ce(x, labels, probs, row_loss, ignore):
    ec, coefs = exp_tables(x)
    n = x.shape[0]
    for i in prange(n):
        t = labels[i]
        log_s, xt = _softmax_row(x, probs, i, 0 if t == ignore else t, ec, coefs)  # ignore may be out of range
        row_loss[i] = 0 if t == ignore else log_s - xt
    total = 0.0  # float64 accumulator
    for i in range(n):
        total += row_loss[i]
    return total


@kernel("loss")
def _time_softmax_ce_bwd(probs, labels, dx, ignore, scale, one):
    for i in prange(probs.shape[0]):
        t = labels[i]
        if t == ignore:
            for j in range(probs.shape[1]):
                dx[i, j] = 0
        else:
            for j in range(probs.shape[1]):
                dx[i, j] = probs[i, j] * scale
            dx[i, t] = (probs[i, t] - one) * scale


def time_softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray, ignore_label: int = -1, *,
                                       average: str = "valid") -> tuple[np.generic, np.ndarray]:
    """The row softmax of :func:`softmax_forward` over the N*T positions, parallel over positions; each position's
    loss (0 when ignored) goes to its own slot, summed serially in float64."""
    x, t, ignore_label, average = _checks.check_time_softmax_cross_entropy(
        "time_softmax_cross_entropy_forward", x, t, ignore_label, average)
    return _time_softmax_cross_entropy_forward(x, t, ignore_label, average=average)


def _time_softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray, ignore_label: int = -1, *,
                                        average: str = "valid") -> tuple[np.generic, np.ndarray]:
    n, steps, v = x.shape
    probs = np.empty(x.shape, x.dtype)
    row_loss = np.empty(n * steps, x.dtype)
    total = 0.0
    if probs.size:
        total = _time_softmax_ce.run(x.size, np.ascontiguousarray(x).reshape(n * steps, v),
                                     np.ascontiguousarray(t).reshape(-1), probs.reshape(n * steps, v), row_loss,
                                     ignore_label)
    return x.dtype.type(total / _validate.time_loss_divisor(t, ignore_label, average)), probs


def time_softmax_cross_entropy_backward(probs: np.ndarray, t: np.ndarray, ignore_label: int = -1, dout: float = 1.0,
                                        *, average: str = "valid") -> np.ndarray:
    """One parallel pass over positions, writing each row of ``dx`` once (zeros at ignored positions)."""
    probs, t, ignore_label, dout, average = _checks.check_time_softmax_cross_entropy_backward(
        "time_softmax_cross_entropy_backward", probs, t, ignore_label, dout, average)
    return _time_softmax_cross_entropy_backward(probs, t, ignore_label, dout, average=average)


def _time_softmax_cross_entropy_backward(probs: np.ndarray, t: np.ndarray, ignore_label: int = -1, dout: float = 1.0,
                                         *, average: str = "valid") -> np.ndarray:
    n, steps, v = probs.shape
    dx = np.empty(probs.shape, probs.dtype)
    if dx.size:
        tp = probs.dtype.type
        _time_softmax_ce_bwd.run(probs.size, np.ascontiguousarray(probs).reshape(n * steps, v),
                                 np.ascontiguousarray(t).reshape(-1), dx.reshape(n * steps, v), ignore_label,
                                 tp(dout / _validate.time_loss_divisor(t, ignore_label, average)), tp(1))
    return dx


@kernel("loss")
def _softmax_bwd(dout, probs, dx):
    for i in prange(probs.shape[0]):
        s = probs[i, 0] * 0  # zero of the dtype
        for j in range(probs.shape[1]):
            s += probs[i, j] * dout[i, j]
        for j in range(probs.shape[1]):
            dx[i, j] = probs[i, j] * (dout[i, j] - s)


def softmax_backward(dout: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One parallel pass over rows: each row's dot product, then its row of ``dx``."""
    return _softmax_backward(*_checks.check_softmax_backward("softmax_backward", dout, probs))


def _softmax_backward(dout: np.ndarray, probs: np.ndarray) -> np.ndarray:
    dx = np.empty(probs.shape, probs.dtype)
    if dx.size:
        _softmax_bwd.run(probs.size, np.ascontiguousarray(dout), np.ascontiguousarray(probs), dx)
    return dx

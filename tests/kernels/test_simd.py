"""fastnn.kernels._simd: explicit vectors inside kernels, lane by lane against NumPy, and the exponentials' vector
forms against their scalar forms, bit for bit."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastnn.kernels import _simd as simd
from fastnn.kernels._math import _exp_nonpos, _exp_normal, _ordered_int, exp_nonpos_constants


def _lanes(dtype) -> int:
    return 64 // np.dtype(dtype).itemsize


@numba.njit(cache=False)
def _arith(x, out):
    """Row 0 of out: x0 + x1 * 2 - x2, vectors against scalars on both sides; row 1: zero, two ways; row 2:
    2 + x0; row 3: x0 / x1 / 2; row 4: 2 / x2."""
    a, b, c = simd.load(x, 0, 0), simd.load(x, 1, 0), simd.load(x, 2, 0)
    two = x[3, 0]
    simd.store(out, 0, 0, a + b * two - c)
    simd.store(out, 1, 0, two * a * b - two * (a * b))  # scalar on the left, both orders: exactly zero
    simd.store(out, 2, 0, simd.splat(two) + a)
    simd.store(out, 3, 0, a / b / two)
    simd.store(out, 4, 0, two / c)


@numba.njit(cache=False)
def _negate(x, out):
    simd.store(out, 0, 0, -simd.load(x, 0, 0))


@numba.njit(cache=False)
def _reduce(x):
    v = simd.load(x, 0, 0)
    k = simd.keys(v)
    w = simd.keys(simd.load(x, 1, 0))
    return (simd.hsum(v), simd.hmax(k), simd.hmin(k), simd.hmax(simd.kmax(k, w)), simd.hmin(simd.kmin(k, w)))


@numba.njit(cache=False)
def _parts(x, out, n, fill):
    v = simd.load_part(x, 0, 1, n, fill)
    simd.store(out, 0, 0, v)
    simd.store_part(out, 1, 1, v, n)
    simd.store(out, 2, 0, simd.head(simd.load(x, 0, 0), n, fill))


@numba.njit(cache=False)
def _select(x, out):
    a, b = simd.load(x, 0, 0), simd.load(x, 1, 0)
    simd.store(out, 0, 0, simd.floor(a))
    simd.store(out, 1, 0, simd.where_ge(a, b, a, b))
    simd.store(out, 2, 0, simd.where_gt(a, x[2, 0], x[2, 1], b))
    simd.store(out, 3, 0, simd.where_lt(a, b, x[2, 1], a))


@numba.njit(cache=False)
def _select_scalars(a, b, x, y):
    return simd.floor(a), simd.where_ge(a, b, x, y), simd.where_gt(a, b, x, y), simd.where_lt(a, b, x, y)


@numba.njit(cache=False)
def _exp_lanes(x, out, ec, coefs, normal):
    """out = the exponentials of x (rows of one vector each) as vectors; row r of out2 the same as scalars."""
    for i in range(x.shape[0]):
        v = simd.load(x, i, 0)
        simd.store(out, i, 0, _exp_normal(v, ec, coefs) if normal else _exp_nonpos(v, ec, coefs))


@numba.njit(cache=False)
def _exp_scalars(x, out, ec, coefs, normal):
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = _exp_normal(x[i, j], ec, coefs) if normal else _exp_nonpos(x[i, j], ec, coefs)


@numba.njit(cache=False)
def _keys_scalar(x):
    out = np.empty(x.shape[0], np.int64)
    for i in range(x.shape[0]):
        out[i] = _ordered_int(x[i])
    return out


def test_lanes_fill_a_512_bit_vector(dtype):
    @numba.njit(cache=False)
    def lanes(x):
        return simd.lanes(x)
    assert lanes(np.zeros((1, 1), dtype)) == _lanes(dtype)


def test_arithmetic_with_vectors_and_scalars(dtype):
    n = _lanes(dtype)
    x = np.random.default_rng(0).standard_normal((4, n)).astype(dtype)
    x[3, 0] = 2
    out = np.full((5, n), np.nan, dtype)
    _arith(x, out)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out[0], x[0] + x[1] * np.dtype(dtype).type(2) - x[2])  # float32 stays float32
    np.testing.assert_array_equal(out[1], np.zeros(n, dtype))
    np.testing.assert_array_equal(out[2], x[0] + np.dtype(dtype).type(2))
    np.testing.assert_array_equal(out[3], x[0] / x[1] / np.dtype(dtype).type(2))  # IEEE division, lane by lane
    np.testing.assert_array_equal(out[4], np.dtype(dtype).type(2) / x[2])


def test_unary_minus_flips_every_lane_sign(dtype):
    """Zeros of both signs, infinities and NaN included (their sign bits flip too), as NumPy's negative."""
    n = _lanes(dtype)
    x = np.random.default_rng(1).standard_normal((1, n)).astype(dtype)
    x[0, :5] = [0.0, -0.0, np.inf, -np.inf, np.nan]
    out = np.zeros_like(x)
    _negate(x, out)
    np.testing.assert_array_equal(out.view(f"u{x.itemsize}"), (-x).view(f"u{x.itemsize}"))


def test_horizontal_reductions(dtype):
    n = _lanes(dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, n)).astype(dtype)
    x[0, 3], x[1, 5] = -0.0, -np.inf
    total, hi, lo, hi2, lo2 = _reduce(x)
    pairwise = x[0].copy()
    while pairwise.size > 1:  # the documented order: lane l with lane l + half, and so on
        pairwise = pairwise[: pairwise.size // 2] + pairwise[pairwise.size // 2:]
    assert total == pairwise[0] and abs(total - x[0].sum(dtype=np.float64)) < 1e-5
    keys = _keys_scalar(x[0]), _keys_scalar(x[1])
    assert (hi, lo) == (keys[0].max(), keys[0].min())
    assert (hi2, lo2) == (max(keys[0].max(), keys[1].max()), min(keys[0].min(), keys[1].min()))
    # the keys order as the floats do: -inf below everything, -0.0 below +0.0
    assert lo2 == _keys_scalar(np.array([-np.inf], dtype))[0]


@pytest.mark.parametrize("n", [0, 1, 5, 7])
def test_partial_loads_and_stores_touch_n_lanes(dtype, n):
    lanes = _lanes(dtype)
    x = np.arange(1, 2 * lanes + 1, dtype=dtype).reshape(1, -1)
    out = np.full((3, lanes + 2), -1, dtype)
    _parts(x, out, n, np.dtype(dtype).type(9))
    want = np.concatenate([x[0, 1:n + 1], np.full(lanes - n, 9, dtype)])
    np.testing.assert_array_equal(out[0, :lanes], want)
    np.testing.assert_array_equal(out[1], np.concatenate([[-1], x[0, 1:n + 1], np.full(lanes + 1 - n, -1, dtype)]))
    np.testing.assert_array_equal(out[2, :lanes], np.concatenate([x[0, :n], np.full(lanes - n, 9, dtype)]))


def test_floor_and_ordered_selects(dtype):
    n = _lanes(dtype)
    a = np.array([1.5, -1.5, np.nan, 2.0, -np.inf, np.inf, -0.0, 3.0] * (n // 8), dtype)
    b = np.array([1.0, -1.0, 0.0, np.nan, 0.0, np.inf, 0.0, 3.0] * (n // 8), dtype)
    x = np.stack([a, b, np.array([2.0, 7.0] + [0.0] * (n - 2), dtype)])
    out = np.empty((4, n), dtype)
    _select(x, out)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(out[0], np.floor(a))
        np.testing.assert_array_equal(out[1], np.where(a >= b, a, b))  # NaN compares false: b
        np.testing.assert_array_equal(out[2], np.where(a > 2.0, 7.0, b).astype(dtype))
        np.testing.assert_array_equal(out[3], np.where(a < b, 7.0, a).astype(dtype))
    for s in (1.5, -1.5, np.nan):
        f, ge, gt, lt = _select_scalars(*(np.dtype(dtype).type(v) for v in (s, 0, 1, 2)))
        with np.errstate(invalid="ignore"):
            assert (f == np.floor(np.dtype(dtype).type(s)) or np.isnan(s)) and (ge, gt, lt) == (
                1 if s >= 0 else 2, 1 if s > 0 else 2, 1 if s < 0 else 2)


@pytest.mark.parametrize("normal", [True, False], ids=["normal", "nonpos"])
def test_vector_exponentials_give_the_scalar_bits(dtype, normal):
    """The exponentials' one body, called on vectors, gives the bits it gives lane by lane on scalars: over
    [-800, 0] for the general one (subnormal and zero results included), -inf, NaN and a few positive x; over
    its domain for the normal one."""
    n = _lanes(dtype)
    ec, coefs = exp_nonpos_constants(dtype)
    rng = np.random.default_rng(2)
    if normal:
        x = rng.uniform(float(ec[9]), 0.0, (512, n))
    else:
        x = np.concatenate([rng.uniform(-800, 0, (256, n)), rng.uniform(-100, 3, (256, n))])
        x[0, :4] = [-np.inf, np.nan, -0.0, 0.0]
    x = x.astype(dtype)
    vec, sca = np.empty_like(x), np.empty_like(x)
    _exp_lanes(x, vec, ec, coefs, normal)
    _exp_scalars(x, sca, ec, coefs, normal)
    np.testing.assert_array_equal(vec.view(np.uint8), sca.view(np.uint8))
    with np.errstate(over="ignore"):
        ok = np.isfinite(x) & (np.exp(x.astype(np.float64)) > np.finfo(dtype).tiny)
    rel = np.abs(vec[ok] / np.exp(x[ok].astype(np.float64)) - 1)
    assert rel.max() < 2 * np.finfo(dtype).eps


def test_vector_loads_take_c_contiguous_rows_only():
    """A vector holds consecutive elements of a row: a strided array does not type (no silent wrong lanes)."""
    x = np.zeros((2, 32), np.float32)
    out = np.zeros((3, 16), np.float32)
    with pytest.raises(numba.TypingError):
        _parts(x[:, ::2], out, 3, np.float32(0))

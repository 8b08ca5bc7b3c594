"""Counter-based dropout masks (kernel == NumPy twin, bit for bit) and the masked scaling kernels."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.kernels.dropout as KD
import fastnn.reference as R
from fastnn import _checks, _splitmix
from tests.conftest import assert_close

SEEDS = [0, 1, 12345, 2**63, 2**64 - 1]


def test_splitmix64_matches_published_vector():
    """SplitMix64 seeded with 1234567 gives Vigna's reference outputs; our key is its first output."""
    state, outs = 1234567, []
    for _ in range(3):
        state = (state + _splitmix.GAMMA) % 2**64
        outs.append(_splitmix.mix64_int(state))
    assert outs == [6457827717110365317, 3203168211198807973, 9817491932198370423]


@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4, 5), (300, 1001)], ids=str)
@pytest.mark.parametrize("drop", [0.0, 0.1, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("seed", SEEDS)
def test_kernel_mask_identical_to_reference(shape, drop, seed, twin):
    m = K.dropout_mask(shape, drop, seed)
    assert m.dtype == np.bool_ and m.shape == shape
    np.testing.assert_array_equal(m, R.dropout_mask(shape, drop, seed))


def test_mask_extremes():
    assert K.dropout_mask(1000, 0.0, 3).all()
    assert not K.dropout_mask(1000, 1.0, 3).any()


def test_mask_depends_only_on_seed_and_flat_index(twin):
    long = K.dropout_mask(5000, 0.3, 7)
    np.testing.assert_array_equal(K.dropout_mask(1000, 0.3, 7), long[:1000])
    np.testing.assert_array_equal(K.dropout_mask((50, 20), 0.3, 7), long[:1000].reshape(50, 20))
    np.testing.assert_array_equal(K.dropout_mask(np.int64(5000), 0.3, np.uint64(7)), long)
    assert not np.array_equal(K.dropout_mask(5000, 0.3, 8), long)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
def test_mask_independent_of_thread_count():
    shape, key, threshold = _checks.check_dropout_mask("t", (999_983,), 0.4, 99)
    saved = numba.get_num_threads()
    masks = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            m = np.empty(shape, np.bool_)
            KD._mask.parallel(m, np.uint64(key), np.uint64(threshold))
            masks.append(m)
    finally:
        numba.set_num_threads(saved)
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], R.dropout_mask(shape, 0.4, 99))


N_STAT = 2_000_000


def _within(observed, expected_p, n, sigmas=5.0):
    """|observed - p| within ``sigmas`` binomial standard deviations (a 5-sigma miss has probability 6e-7)."""
    return abs(observed - expected_p) < sigmas * math.sqrt(expected_p * (1 - expected_p) / n)


@pytest.mark.parametrize("drop", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2, 2**64 - 1])
def test_keep_rate_statistics(drop, seed):
    m = K.dropout_mask(N_STAT, drop, seed)
    q = 1 - drop
    assert _within(m.mean(), q, N_STAT)
    # neighbours independent: P(keep_i and keep_i+1) = q^2
    assert _within(np.mean(m[:-1] & m[1:]), q * q, N_STAT - 1)
    # consecutive seeds independent: P(both keep) = q^2
    other = K.dropout_mask(N_STAT, drop, seed + 1 if seed < 2**64 - 1 else 0)
    assert _within(np.mean(m & other), q * q, N_STAT)
    # no bias by position modulo small periods (vector width, cache line)
    for period in (2, 8, 16, 64):
        rates = m[: N_STAT // period * period].reshape(-1, period).mean(axis=0)
        assert all(_within(r, q, N_STAT // period) for r in rates)


@pytest.mark.parametrize("fn", ["dropout_forward", "dropout_backward"])
@pytest.mark.parametrize("shape", [(), (0,), (5,), (4, 3, 8, 9), (100_003,)], ids=str)
@pytest.mark.parametrize("scale", [1.0, 2.0, 1 / 0.7])
def test_apply_matches_reference(fn, shape, scale, dtype, twin):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    mask = K.dropout_mask(shape, 0.3, 5)
    x0, m0 = x.copy(), mask.copy()
    out = getattr(K, fn)(x, mask, scale)
    expected = getattr(R, fn)(x, mask, scale)
    assert_close(out, expected, dtype)
    np.testing.assert_array_equal(out, np.where(mask, x * dtype.type(scale), 0).astype(dtype))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(mask, m0)


@pytest.mark.parametrize("fn", ["dropout_forward", "dropout_backward"])
def test_apply_non_contiguous(fn, dtype, twin):
    base = np.random.default_rng(1).standard_normal((40, 60)).astype(dtype)
    x = base[::2, ::-3]
    mask = K.dropout_mask((60, 40), 0.5, 2).T[::2, ::3]
    assert_close(getattr(K, fn)(x, mask, 2.0), getattr(R, fn)(x.copy(), mask.copy(), 2.0), dtype)


def test_dropped_nan_stays_nan(twin):
    """x * mask * scale: a dropped nan or inf is nan (as PyTorch's dropout), a kept one propagates."""
    x = np.array([np.nan, np.nan, np.inf, np.inf, 1.0])
    mask = np.array([True, False, True, False, False])
    out = K.dropout_forward(x, mask, 2.0)
    np.testing.assert_array_equal(out, [np.nan, np.nan, np.inf, np.nan, 0.0])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(out, R.dropout_forward(x, mask, 2.0))


def test_int_input_promotes():
    out = K.dropout_forward(np.arange(4), np.array([True, False, True, True]))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [0.0, 0.0, 2.0, 3.0])


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
def test_mask_bad_input(mod):
    f = mod.dropout_mask
    with pytest.raises(ValueError, match="dropout_mask: drop_ratio must be a finite number >= 0"):
        f(10, 1.5, 0)
    with pytest.raises(ValueError, match="dropout_mask: drop_ratio must be"):
        f(10, -0.1, 0)
    with pytest.raises(ValueError, match="dropout_mask: seed must be >= 0"):
        f(10, 0.5, -1)
    with pytest.raises(ValueError, match=r"dropout_mask: seed must be an int in \[0, 2\*\*64\)"):
        f(10, 0.5, 2**64)
    with pytest.raises(TypeError, match="dropout_mask: seed must be an int"):
        f(10, 0.5, 1.0)
    with pytest.raises(ValueError, match=r"dropout_mask: shape\[1\] must be >= 0"):
        f((3, -1), 0.5, 0)
    with pytest.raises(TypeError, match="dropout_mask: shape must be an int or a tuple of ints"):
        f("10", 0.5, 0)


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize(("fn", "arg"), [("dropout_forward", "x"), ("dropout_backward", "dout")])
def test_apply_bad_input(mod, fn, arg):
    f = getattr(mod, fn)
    with pytest.raises(ValueError, match=rf"{fn}: mask must be of shape \(3, 4\)"):
        f(np.ones((3, 4)), np.ones((4, 3), bool))
    with pytest.raises(TypeError, match=rf"{fn}: mask must be a bool ndarray"):
        f(np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match=rf"{fn}: {arg} must be"):
        f(np.ones(3, np.complex64), np.ones(3, bool))
    with pytest.raises(ValueError, match=rf"{fn}: scale must be a finite number"):
        f(np.ones(3), np.ones(3, bool), float("inf"))

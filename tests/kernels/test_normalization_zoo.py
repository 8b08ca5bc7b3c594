"""Batch renormalization, weight normalization and spectral normalization kernels (issue 13) against their twins,
against the papers' formulas written out here, and against PyTorch where it has the operation.

Tolerances as ``tests/kernels/test_normalization.py``: float64 ``TOL``; float32 rtol 1e-5 of each quantity's
scale (the kernels accumulate in float64, the float32 twins in float32).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from tests.conftest import TOL

DTYPES = [np.float32, np.float64]


def _close(actual, expected, dtype, scale=None):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape
    if scale is None:
        scale = float(np.abs(expected).max()) if expected.size else 1.0
    rtol = 1e-5 if dtype == np.float32 else TOL[np.dtype(np.float64)]["rtol"]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-30))


# ---------------------------------------------------------------------------------------------------------------
# Batch renormalization

#: (N, D), per channel with planes shorter and longer than the plane threshold, batch 1, one channel, odd sizes
RENORM_SHAPES = [(5, 3), (1, 4), (7, 1), (3, 2, 2, 3), (1, 3, 5, 7), (2, 1, 3, 3), (2, 3, 12, 12)]


def _renorm_inputs(shape, dtype, rng, noncontig=False):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    if noncontig:
        x = np.asfortranarray(x)
    gamma, beta = (1 + 0.3 * rng.standard_normal(C)).astype(dtype), rng.standard_normal(C).astype(dtype)
    rm, rs = (0.3 * rng.standard_normal(C)).astype(dtype), (0.5 + rng.random(C) * 2).astype(dtype)
    return x, gamma, beta, rm, rs


def _paper(x, gamma, beta, rm, rs, rmax, dmax, eps):
    """Algorithm 1 of Ioffe (2017), in float64, one channel at a time."""
    x = x.astype(np.float64)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    out = np.empty_like(x)
    r, d = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        xc = np.take(x, c, axis=1)
        mu_b = xc.mean()
        sigma_b = np.sqrt(((xc - mu_b) ** 2).mean() + eps)
        r[c] = min(max(sigma_b / rs[c], 1 / rmax), rmax)
        d[c] = min(max((mu_b - rm[c]) / rs[c], -dmax), dmax)
        idx = (slice(None), c)
        out[idx] = gamma[c] * ((xc - mu_b) / sigma_b * r[c] + d[c]) + beta[c]
    return out, r, d, axes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", RENORM_SHAPES, ids=str)
def test_batchrenorm_train_matches_twin_and_paper(shape, dtype, twin):
    rng = np.random.default_rng(len(shape) * 10 + shape[1])
    x, gamma, beta, rm, rs = _renorm_inputs(shape, dtype, rng, noncontig=shape[0] == 3)
    rmax, dmax, momentum, eps = 1.5, 0.2, 0.8, 1e-3
    runs = {}
    for impl in (K, R):
        m, s = rm.copy(), rs.copy()
        runs[impl] = (*impl.batchrenorm_forward_train(x, gamma, beta, m, s, rmax, dmax, momentum, eps), m, s)
    for got, want in zip(runs[K], runs[R], strict=True):
        _close(got, want, dtype)
    out, mean, inv_std, r, d, m, s = runs[K]
    want_out, want_r, want_d, axes = _paper(x, gamma, beta, rm, rs, rmax, dmax, eps)
    _close(out, want_out.astype(dtype), dtype)
    _close(r, want_r.astype(dtype), dtype)
    _close(d, want_d.astype(dtype), dtype)
    # the running statistics: updated from the batch after r and d were taken from their old values
    sigma_b = np.sqrt(x.astype(np.float64).var(axis=axes) + eps)
    _close(m, (momentum * rm + (1 - momentum) * x.astype(np.float64).mean(axis=axes)).astype(dtype), dtype)
    _close(s, (momentum * rs + (1 - momentum) * sigma_b).astype(dtype), dtype)


def test_batchrenorm_clips_both_ways():
    """Channels whose batch std is far above / below the running one get r = rmax / 1/rmax; d the same."""
    x = np.array([[0.0, 10.0], [2.0, 10.2], [4.0, 10.4]])
    gamma, beta = np.ones(2), np.zeros(2)
    rm, rs = np.array([100.0, -100.0]), np.array([0.01, 10.0])
    _, _, _, r, d = K.batchrenorm_forward_train(x, gamma, beta, rm, rs, 2.0, 3.0)
    np.testing.assert_array_equal(r, [2.0, 0.5])
    np.testing.assert_array_equal(d, [-3.0, 3.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchrenorm_with_rmax_1_dmax_0_is_batchnorm(dtype):
    rng = np.random.default_rng(3)
    x, gamma, beta, rm, rs = _renorm_inputs((4, 3, 2, 5), dtype, rng)
    dout = rng.standard_normal(x.shape).astype(dtype)
    out, mean, inv_std, r, d = K.batchrenorm_forward_train(x, gamma, beta, rm.copy(), rs.copy(), 1.0, 0.0)
    np.testing.assert_array_equal(r, 1)
    np.testing.assert_array_equal(d, 0)
    bn_out, bn_mean, bn_inv_std = K.batchnorm_forward_train(x, gamma, beta, rm.copy(), rs.copy() ** 2)
    np.testing.assert_array_equal(out, bn_out)
    np.testing.assert_array_equal(inv_std, bn_inv_std)
    for a, b in zip(K.batchrenorm_backward(dout, x, gamma, mean, inv_std, r, d),
                    K.batchnorm_backward(dout, x, gamma, bn_mean, bn_inv_std), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", RENORM_SHAPES, ids=str)
def test_batchrenorm_backward_and_infer_match_twin(shape, dtype, twin):
    rng = np.random.default_rng(shape[0] + 7)
    x, gamma, beta, rm, rs = _renorm_inputs(shape, dtype, rng)
    dout = rng.standard_normal(shape).astype(dtype)
    _, mean, inv_std, r, d = R.batchrenorm_forward_train(x, gamma, beta, rm.copy(), rs.copy(), 1.5, 0.2)
    if shape[0] == 3:
        dout = np.asfortranarray(dout)
    got, want = (impl.batchrenorm_backward(dout, x, gamma, mean, inv_std, r, d) for impl in (K, R))
    scale = float(np.abs(dout * gamma.reshape((1, -1) + (1,) * (x.ndim - 2))).max() * np.abs(inv_std).max())
    _close(got[0], want[0], dtype, scale)
    _close(got[1], want[1], dtype)
    _close(got[2], want[2], dtype)
    _close(K.batchrenorm_forward_infer(x, gamma, beta, rm, rs), R.batchrenorm_forward_infer(x, gamma, beta, rm, rs),
           dtype)


def test_batchrenorm_infer_formula():
    x = np.array([[1.0, 2.0], [3.0, -4.0]])
    out = K.batchrenorm_forward_infer(x, np.array([2.0, 1.0]), np.array([0.5, 0.0]), np.array([1.0, 0.0]),
                                      np.array([2.0, 4.0]))
    np.testing.assert_allclose(out, [[2 * 0 / 2 + 0.5, 0.5], [2 * 2 / 2 + 0.5, -1.0]])


def test_batchrenorm_bad_input_writes_nothing():
    rng = np.random.default_rng(0)
    x, gamma, beta, rm, rs = _renorm_inputs((4, 3), np.float64, rng)
    rm0, rs0 = rm.copy(), rs.copy()
    for impl in (K, R):
        with pytest.raises(ValueError, match=r"^batchrenorm_forward_train: rmax must be a finite number >= 1\.0, "
                                             r"got 0\.5$"):
            impl.batchrenorm_forward_train(x, gamma, beta, rm, rs, 0.5, 1.0)
        with pytest.raises(ValueError, match=r"^batchrenorm_forward_train: dmax must be a finite number >= 0\.0"):
            impl.batchrenorm_forward_train(x, gamma, beta, rm, rs, 2.0, -1.0)
        with pytest.raises(ValueError, match=r"^batchrenorm_forward_train: running_std must be of shape \(3,\)"):
            impl.batchrenorm_forward_train(x, gamma, beta, rm, np.ones(4), 2.0, 1.0)
        with pytest.raises(ValueError, match=r"^batchrenorm_backward: r must be of shape \(3,\)"):
            impl.batchrenorm_backward(x, x, gamma, rm, rs, np.ones(2), np.ones(3))
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rs, rs0)

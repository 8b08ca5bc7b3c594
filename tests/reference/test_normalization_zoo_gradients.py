"""Twins of issue 13's normalizations (batch renorm, weight norm, spectral norm) against central differences
(float64): each backward is the gradient of ``sum(forward(...) * R)`` for a fixed random R."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.reference as R

from ._numeric import central_differences


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 2, 3), (1, 2, 2, 2)], ids=str)
def test_batchrenorm_backward_is_the_gradient_with_r_d_constant(shape):
    """r and d held constant: the running statistics are chosen so both are clipped (r = rmax, d = +-dmax), where
    the forward does not move them under small perturbations, so the forward's true gradient is the backward's."""
    rng = np.random.default_rng(5)
    C = shape[1]
    x = rng.standard_normal(shape) * 1.5 + 0.3
    gamma, beta = 1 + 0.5 * rng.standard_normal(C), rng.standard_normal(C)
    rm, rs = np.where(np.arange(C) % 2, 50.0, -50.0), np.full(C, 1e-3)
    weights = rng.standard_normal(shape)

    def forward():
        return R.batchrenorm_forward_train(x, gamma, beta, rm.copy(), rs.copy(), 2.0, 0.7, 0.9, 1e-3)

    _, mean, inv_std, r, d = forward()
    np.testing.assert_array_equal(r, 2.0)
    np.testing.assert_array_equal(np.abs(d), 0.7)
    dx, dgamma, dbeta = R.batchrenorm_backward(weights, x, gamma, mean, inv_std, r, d)
    for analytic, wrt in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        numerical = central_differences(lambda: float(np.sum(forward()[0] * weights)), wrt)
        np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-7)
    assert np.abs(dx).max() > 1e-3


@pytest.mark.parametrize(("shape", "dim"), [((4, 3), -1), ((3, 2, 2, 2), 0), ((2, 3, 2), 1)], ids=str)
def test_weightnorm_backward_is_the_gradient(shape, dim):
    rng = np.random.default_rng(6)
    v = rng.standard_normal(shape)
    g = 1 + rng.random(shape[dim])
    weights = rng.standard_normal(shape)
    _, norm = R.weightnorm_forward(v, g, dim)
    dv, dg = R.weightnorm_backward(weights, v, g, norm, dim)
    for analytic, wrt in ((dv, v), (dg, g)):
        numerical = central_differences(lambda: float(np.sum(R.weightnorm_forward(v, g, dim)[0] * weights)), wrt)
        np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-8)
    assert np.abs(dv).max() > 1e-3


def test_weightnorm_affine_backward_is_the_gradient():
    rng = np.random.default_rng(16)
    x, v = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    g, b = 1 + rng.random(5), rng.standard_normal(5)
    weights = rng.standard_normal((3, 5))
    _, t, norm = R.weightnorm_affine_forward(x, v, g, b)
    grads = R.weightnorm_affine_backward(weights, x, v, g, norm, t)
    for analytic, wrt in zip(grads, (x, v, g, b), strict=True):
        numerical = central_differences(lambda: float(np.sum(R.weightnorm_affine_forward(x, v, g, b)[0] * weights)),
                                        wrt)
        np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-8)
        assert np.abs(analytic).max() > 1e-3


@pytest.mark.parametrize(("shape", "dim"), [((4, 3), -1), ((3, 2, 2, 2), 0), ((2, 3, 2), 1)], ids=str)
def test_spectralnorm_backward_is_the_gradient_with_u_v_constant(shape, dim):
    """Evaluation mode: u and v are not updated, so sigma = u^T W v is exactly the forward's function of W."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal(shape)
    u, v = rng.standard_normal(shape[dim]), rng.standard_normal(w.size // shape[dim])
    R.spectralnorm_forward(w, u, v, dim, 5)  # u, v near the singular vectors: sigma > 0
    weights = rng.standard_normal(shape)
    _, sigma = R.spectralnorm_forward(w, u, v, dim, training=False)
    dw = R.spectralnorm_backward(weights, w, u, v, float(sigma), dim)
    numerical = central_differences(
        lambda: float(np.sum(R.spectralnorm_forward(w, u, v, dim, training=False)[0] * weights)), w)
    np.testing.assert_allclose(dw, numerical, rtol=1e-6, atol=1e-8)
    assert np.abs(dw).max() > 1e-3

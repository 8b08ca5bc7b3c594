"""The reference losses' gradients against central differences of their loss values (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.reference as R

from ._numeric import central_differences


@pytest.mark.parametrize("labels", ["int", "onehot"])
@pytest.mark.parametrize(("n", "k"), [(1, 2), (5, 7), (16, 10)])
@pytest.mark.parametrize("dout", [1.0, 0.3])
def test_softmax_cross_entropy_gradient(n, k, labels, dout):
    rng = np.random.default_rng(n * k)
    x = rng.standard_normal((n, k)) * 2
    t = rng.integers(0, k, n)
    tt = t if labels == "int" else np.eye(k)[t]
    _, probs = R.softmax_cross_entropy_forward(x, tt)
    dx = R.softmax_cross_entropy_backward(probs, tt, dout)
    num = central_differences(lambda: dout * R.softmax_cross_entropy_forward(x, tt)[0], x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dx.sum(axis=1), 0, atol=1e-15)  # softmax gradients sum to zero per row


def test_softmax_cross_entropy_gradient_large_scores():
    """Log-sum-exp keeps the gradient exact where exp(x) overflows."""
    x = np.array([[800.0, 801.0, 799.0], [-900.0, -901.0, -902.0]])
    t = np.array([0, 2])
    _, probs = R.softmax_cross_entropy_forward(x, t)
    dx = R.softmax_cross_entropy_backward(probs, t)
    num = central_differences(lambda: R.softmax_cross_entropy_forward(x, t)[0], x, h=1e-4)
    np.testing.assert_allclose(dx, num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(("n", "k"), [(1, 3), (6, 5), (20, 10)])
def test_svm_gradient(n, k):
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((n, k)) * 0.5  # small scores: most margins positive
    y = rng.integers(0, k, n)
    # keep every margin x_ij - x_iy + 1 away from the hinge's kink at 0
    margins = x - x[np.arange(n), y][:, None] + 1
    x[np.abs(margins) < 1e-3] += 0.01
    _, dx = R.svm_loss(x, y)
    num = central_differences(lambda: R.svm_loss(x, y)[0], x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)
    assert np.abs(dx).max() > 0


def test_softmax_forward_jacobian():
    """d softmax_i / d x_j = p_i (delta_ij - p_j), checked row by row."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 6))
    p = R.softmax_forward(x)[0]
    jac = np.diag(p) - np.outer(p, p)
    for i in range(6):
        num = central_differences(lambda i=i: R.softmax_forward(x)[0, i], x)[0]
        np.testing.assert_allclose(num, jac[i], rtol=1e-6, atol=1e-10)

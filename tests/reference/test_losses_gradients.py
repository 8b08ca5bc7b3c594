"""The reference losses' gradients against central differences of their loss values (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.reference as R


def numerical_grad(loss, x, h=1e-6):
    """d loss(x) / dx by central differences."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = float(loss(x))
        x[idx] = old - h
        minus = float(loss(x))
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


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
    num = numerical_grad(lambda z: dout * R.softmax_cross_entropy_forward(z, tt)[0], x.copy())
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dx.sum(axis=1), 0, atol=1e-15)  # softmax gradients sum to zero per row


def test_softmax_cross_entropy_gradient_large_scores():
    """Log-sum-exp keeps the gradient exact where exp(x) overflows."""
    x = np.array([[800.0, 801.0, 799.0], [-900.0, -901.0, -902.0]])
    t = np.array([0, 2])
    _, probs = R.softmax_cross_entropy_forward(x, t)
    dx = R.softmax_cross_entropy_backward(probs, t)
    num = numerical_grad(lambda z: R.softmax_cross_entropy_forward(z, t)[0], x.copy(), h=1e-4)
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
    num = numerical_grad(lambda z: R.svm_loss(z, y)[0], x.copy())
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)
    assert np.abs(dx).max() > 0


def test_softmax_forward_jacobian():
    """d softmax_i / d x_j = p_i (delta_ij - p_j), checked row by row."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 6))
    p = R.softmax_forward(x)[0]
    jac = np.diag(p) - np.outer(p, p)
    for i in range(6):
        num = numerical_grad(lambda z, i=i: R.softmax_forward(z)[0, i], x.copy())[0]
        np.testing.assert_allclose(num, jac[i], rtol=1e-6, atol=1e-10)

"""fastnn.gradient.numerical_gradient: the book's central differences, on any ndim, leaving x as it was."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.gradient import numerical_gradient


@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 1, 3, 2)])
def test_matches_analytic_gradient(shape):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape)
    original = x.copy()
    grad = numerical_gradient(lambda v: np.sum(np.sin(v) * v**2), x)
    assert grad.shape == x.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, np.cos(x) * x**2 + 2 * x * np.sin(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(x, original)


def test_book_style_closure_ignoring_its_argument():
    W = np.array([[1.0, -2.0], [0.5, 3.0]])
    x = np.array([0.3, -0.7])
    grad = numerical_gradient(lambda _: float(np.sum((x @ W) ** 2)), W)
    np.testing.assert_allclose(grad, 2 * np.outer(x, x @ W), rtol=1e-8)


def test_same_numbers_as_the_books_loop():
    """Same step (1e-4) and the same formula as the book's common/gradient.py, written out here."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2))

    def f(v):
        return np.sum(np.exp(v) * v)

    want = np.zeros_like(x)
    y = x.copy()
    for idx in np.ndindex(x.shape):
        tmp = y[idx]
        y[idx] = float(tmp) + 1e-4
        fp = f(y)
        y[idx] = tmp - 1e-4
        fm = f(y)
        want[idx] = (fp - fm) / (2 * 1e-4)
        y[idx] = tmp
    np.testing.assert_array_equal(numerical_gradient(f, x), want)


def test_float32_and_custom_step():
    x = np.linspace(-1, 1, 7).astype(np.float32)
    grad = numerical_gradient(lambda v: float(np.sum(v.astype(np.float64) ** 2)), x, h=1e-2)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-4, atol=1e-5)


def test_x_restored_when_f_raises():
    x = np.array([1.0, 2.0, 3.0])
    calls = []

    def f(v):
        calls.append(v.copy())
        if len(calls) == 4:
            raise ZeroDivisionError("boom")
        return 0.0

    with pytest.raises(ZeroDivisionError):
        numerical_gradient(f, x)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(calls[3], [1.0, 2.0 - 1e-4, 3.0])  # it was perturbed when f raised


@pytest.mark.parametrize("call, exc, prefix", [
    (lambda: numerical_gradient(np.sum, [1.0, 2.0]), TypeError, "numerical_gradient: x"),
    (lambda: numerical_gradient(np.sum, np.arange(3)), TypeError, "numerical_gradient: x"),
    (lambda: numerical_gradient(np.sum, np.ones(3, complex)), TypeError, "numerical_gradient: x"),
    (lambda: numerical_gradient(np.sum, np.broadcast_to(np.ones(1), (3,))), ValueError, "numerical_gradient: x"),
    (lambda: numerical_gradient("sum", np.ones(3)), TypeError, "numerical_gradient: f"),
    (lambda: numerical_gradient(np.sum, np.ones(3), h=0.0), ValueError, "numerical_gradient: h"),
], ids=["list", "int", "complex", "read-only", "f", "h"])
def test_bad_arguments(call, exc, prefix):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(prefix + " must be ")

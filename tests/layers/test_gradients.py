"""Backward of every layer against central differences (fastnn.gradient.numerical_gradient), float64."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.gradient import numerical_gradient
from tests.layers.cases import CASES, make_dout

#: The book's SoftmaxWithLoss (the default) pairs its loss -log(y + 1e-7) with the backward (y - t) / N, which is
#: the gradient of the exact cross-entropy: central differences of the default loss differ from it by ~1e-7 / y,
#: so the gradient is checked on the exact variants (the same backward; test_softmax_with_loss.py pins the book's).
WITH_BACKWARD = sorted(name for name in CASES if name not in ("batchnorm_infer", "softmax", "softmax_onehot"))


def _objective(built, dout):
    """A scalar function of the layer's input and parameters whose gradient backward computes: sum(out * dout)
    (the loss itself for SoftmaxWithLoss). Random layers replay their state so that f is deterministic."""
    state = built.layer._snapshot()

    def f(_):
        built.layer._restore(state)
        out = built.layer.forward(**built.inputs)
        return out if built.out_shape is None else np.sum(out * dout)

    return f, state


@pytest.mark.parametrize("name", WITH_BACKWARD)
def test_backward_matches_central_differences(name):
    dtype = np.dtype(np.float64)
    rng = np.random.default_rng(1000 + sum(map(ord, name)))
    built = CASES[name](dtype, rng)
    dout = make_dout(built, dtype, rng)
    f, state = _objective(built, dout)
    f(None)
    dx = built.layer.backward(dout) if built.out_shape is not None else built.layer.backward()
    grads = {k: g.copy() for k, g in built.layer.grads.items()}

    x = built.inputs["x"]
    num_dx = numerical_gradient(f, x)
    np.testing.assert_allclose(dx, num_dx, rtol=1e-6, atol=1e-8)
    assert np.abs(num_dx).max() > 1e-3  # the check is not vacuous
    for key in built.params_in_grad_check:
        num = numerical_gradient(f, built.layer.params[key])
        np.testing.assert_allclose(grads[key], num, rtol=1e-6, atol=1e-8, err_msg=key)
        assert np.abs(num).max() > 1e-3


def test_softmax_backward_scales_with_dout():
    rng = np.random.default_rng(5)
    built = CASES["softmax"](np.dtype(np.float64), rng)
    built.layer.forward(**built.inputs)
    np.testing.assert_allclose(built.layer.backward(2.5), 2.5 * built.layer.backward(1), rtol=1e-15)
    np.testing.assert_allclose(built.layer.backward(np.array(2.5)), 2.5 * built.layer.backward(), rtol=1e-15)

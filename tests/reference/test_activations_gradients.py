"""The reference activations' backward passes against central differences of their forwards (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.reference as R

from ._numeric import central_differences


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kinks of relu / leaky relu
    return x, rng.standard_normal(shape)


@pytest.mark.parametrize("shape", [(7,), (3, 4, 5)], ids=str)
@pytest.mark.parametrize(("fwd", "bwd", "from_output"), [
    (R.relu_forward, R.relu_backward, False),
    (R.sigmoid_forward, R.sigmoid_backward, True),
    (R.tanh_forward, R.tanh_backward, True),
    (R.leaky_relu_forward, R.leaky_relu_backward, False),
    (lambda x: R.leaky_relu_forward(x, 0.3), lambda d, x: R.leaky_relu_backward(d, x, 0.3), False),
], ids=["relu", "sigmoid", "tanh", "leaky_relu", "leaky_relu-0.3"])
def test_backward_is_gradient_of_forward(fwd, bwd, from_output, shape):
    x, dout = _inputs(shape)
    dx = bwd(dout, fwd(x) if from_output else x)
    np.testing.assert_allclose(dx, central_differences(lambda: np.sum(fwd(x) * dout), x), rtol=1e-6, atol=1e-8)
    assert np.abs(dx).max() > 0.1


def test_sigmoid_gradient_at_large_inputs():
    """Far in the tails the stable sigmoid's gradient is tiny but correct (no nan from inf/inf)."""
    x = np.array([-40.0, -20.0, 20.0, 40.0])
    dx = R.sigmoid_backward(np.ones(4), R.sigmoid_forward(x))
    np.testing.assert_allclose(dx[:2], np.exp(x[:2]), rtol=1e-6)  # sigma'(x) ~ e^x for x << 0
    assert np.all(dx >= 0) and np.all(np.isfinite(dx))

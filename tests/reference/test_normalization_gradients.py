"""fastnn.reference.normalization backward passes against central differences of the forward passes (float64).

For each normalization, the loss ``sum(forward(x, gamma, beta) * R)`` with a fixed random R has gradient
``backward(R, x, gamma, mean, inv_std)``; dx, dgamma and dbeta are each checked against the numerical gradient.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.reference import normalization as R

from ._numeric import central_differences


def _batchnorm(x, gamma, beta, groups):
    C = x.shape[1]
    return R.batchnorm_forward_train(x, gamma, beta, np.zeros(C), np.ones(C), 0.9, 1e-3)


def _batchnorm_backward(dout, x, gamma, groups, mean, inv_std):
    return R.batchnorm_backward(dout, x, gamma, mean, inv_std)


# name: (forward(x, gamma, beta, groups), backward(dout, x, gamma, groups, mean, inv_std), gamma shape of x.shape)
OPS = {
    "batchnorm": (_batchnorm, _batchnorm_backward, lambda s: (s[1],)),
    "layernorm": (lambda x, g, b, G: R.layernorm_forward(x, g, b, 1e-3),
                  lambda d, x, g, G, m, s: R.layernorm_backward(d, x, g, m, s), lambda s: s[1:]),
    "groupnorm": (lambda x, g, b, G: R.groupnorm_forward(x, g, b, G, 1e-3), R.groupnorm_backward, lambda s: (s[1],)),
    "instancenorm": (lambda x, g, b, G: R.instancenorm_forward(x, g, b, 1e-3),
                     lambda d, x, g, G, m, s: R.instancenorm_backward(d, x, g, m, s), lambda s: (s[1],)),
}

CASES = [
    ("batchnorm", (5, 3), None),  # (N, D)
    ("batchnorm", (3, 2, 2, 3), None),  # per channel over N, H, W
    ("batchnorm", (1, 2, 2, 2), None),  # batch 1: statistics over H, W
    ("layernorm", (3, 4), None),
    ("layernorm", (2, 2, 2, 3), None),  # gamma of shape (2, 2, 3)
    ("layernorm", (1, 5), None),
    ("groupnorm", (2, 4, 2, 3), 2),
    ("groupnorm", (2, 4, 2, 2), 1),
    ("groupnorm", (1, 4, 3, 2), 4),
    ("instancenorm", (2, 3, 2, 2), None),
]
IDS = [f"{n}-{'x'.join(map(str, s))}" + (f"-G{g}" if g else "") for n, s, g in CASES]


@pytest.mark.parametrize(("name", "shape", "groups"), CASES, ids=IDS)
def test_backward_is_the_gradient(name, shape, groups):
    forward, backward, pshape = OPS[name]
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) * 1.5 + 0.3
    gamma = 1 + 0.5 * rng.standard_normal(pshape(shape))
    beta = rng.standard_normal(pshape(shape))
    weights = rng.standard_normal(shape)

    def loss():
        return float(np.sum(forward(x, gamma, beta, groups)[0] * weights))

    _, mean, inv_std = forward(x, gamma, beta, groups)
    dx, dgamma, dbeta = backward(weights, x, gamma, groups, mean, inv_std)
    for analytic, wrt in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        numerical = central_differences(loss, wrt)
        assert analytic.shape == wrt.shape
        np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-7)
    assert np.abs(dx).max() > 1e-3  # a real gradient, not a vanishing one


def test_batchnorm_gradient_ignores_running_stats():
    """Running statistics do not enter the training forward, so they carry no gradient through it."""
    rng = np.random.default_rng(1)
    x, gamma, beta = rng.standard_normal((4, 3)), np.ones(3), np.zeros(3)
    rm, rv = np.zeros(3), np.ones(3)
    out1 = R.batchnorm_forward_train(x, gamma, beta, rm, rv)[0]
    out2 = R.batchnorm_forward_train(x, gamma, beta, rm + 5, rv * 3)[0]
    np.testing.assert_array_equal(out1, out2)

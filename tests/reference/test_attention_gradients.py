"""The reference attention, GELU and last-axis softmax backward passes against central differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.reference as R

from ._numeric import central_differences


@pytest.mark.parametrize("kw", [{}, {"causal": True}, {"mask": "bool"}, {"mask": "additive"},
                                {"dropout_p": 0.3, "seed": 4}, {"scale": 0.7, "causal": True}],
                         ids=["plain", "causal", "bool", "additive", "dropout", "scale"])
def test_attention_backward_is_gradient_of_forward(kw):
    rng = np.random.default_rng(0)
    N, H, S, T, d, dv = 1, 2, 4, 5, 3, 2
    q, k = rng.standard_normal((N, H, S, d)), rng.standard_normal((N, H, T, d))
    v, dout = rng.standard_normal((N, H, T, dv)), rng.standard_normal((N, H, S, dv))
    kw = dict(kw)
    if kw.get("mask") == "bool":
        kw["mask"] = rng.random((S, T)) < 0.7
    elif kw.get("mask") == "additive":
        kw["mask"] = rng.standard_normal((N, H, S, T))
    out, lse = R.attention_forward(q, k, v, **kw)
    grads = R.attention_backward(dout, q, k, v, out, lse, **kw)
    for g, a in zip(grads, (q, k, v), strict=True):
        num = central_differences(lambda: np.sum(R.attention_forward(q, k, v, **kw)[0] * dout), a)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)
        assert np.abs(g).max() > 1e-3


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_backward_is_gradient_of_forward(approximate):
    x = np.random.default_rng(1).standard_normal(11) * 3
    dout = np.random.default_rng(2).standard_normal(11)
    num = central_differences(lambda: np.sum(R.gelu_forward(x, approximate) * dout), x)
    np.testing.assert_allclose(R.gelu_backward(dout, x, approximate), num, rtol=1e-6, atol=1e-8)


def test_softmax_lastaxis_backward_is_gradient_of_forward():
    rng = np.random.default_rng(3)
    x, dout = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 5))
    num = central_differences(lambda: np.sum(R.softmax_lastaxis_forward(x) * dout), x)
    np.testing.assert_allclose(R.softmax_lastaxis_backward(dout, R.softmax_lastaxis_forward(x)), num, rtol=1e-6,
                               atol=1e-8)

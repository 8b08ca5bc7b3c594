"""The demo's NumPy baseline computes what fastnn's SimpleConvNet + Adam compute; the book's smoothing."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels
import fastnn.reference
from fastnn.cli._twin import TwinConvNet
from fastnn.cli.plotting import smooth_curve
from fastnn.nets import SimpleConvNet
from fastnn.optim import Adam


def _net(dtype):
    return SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 4, "filter_size": 3, "pad": 1, "stride": 1},
                         hidden_size=16, output_size=10, weight_init_std="relu", dtype=dtype, seed=3)


@pytest.mark.parametrize("ops", [fastnn.reference, fastnn.kernels], ids=["reference", "kernels"])
def test_twin_gradient_equals_simpleconvnet(ops):
    net = _net(np.float64)
    rng = np.random.default_rng(0)
    x = rng.random((7, 1, 10, 10))
    t = rng.integers(0, 10, 7)
    twin = TwinConvNet(net.params, 1, 1, ops)
    loss, grads = twin.loss_and_gradient(x, t)
    expected = net.gradient(x, t)
    assert loss == pytest.approx(float(net.loss(x, t)), rel=1e-12)
    assert sorted(grads) == sorted(expected)
    for k in expected:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_twin_training_steps_follow_fastnn_adam_float32():
    net = _net(np.float32)
    twin = TwinConvNet(net.params, 1, 1, fastnn.reference, lr=0.003)
    before = {k: v.copy() for k, v in net.params.items()}
    optimizer = Adam(lr=0.003)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.random((8, 1, 10, 10), dtype=np.float32)
        t = rng.integers(0, 10, 8)
        fast_loss = float(net.loss(x, t))
        optimizer.update(net.params, net.gradient(x, t))
        assert twin.step(x, t) == pytest.approx(fast_loss, rel=1e-5)
    for k, p in twin.params.items():
        assert p.dtype == np.float32
        np.testing.assert_allclose(p, net.params[k], rtol=1e-4, atol=1e-6, err_msg=k)
        assert not np.array_equal(p, before[k])  # they did train
    # The twin copied the parameters: the net's arrays are its own.
    assert all(twin.params[k] is not net.params[k] for k in twin.params)


def test_smooth_curve_is_the_books():
    x = np.random.default_rng(0).random(50)
    window_len = 11
    s = np.r_[x[window_len - 1:0:-1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    book = np.convolve(w / w.sum(), s, mode="valid")[5:-5]
    np.testing.assert_allclose(smooth_curve(x), book)
    assert smooth_curve(x).shape == x.shape
    np.testing.assert_allclose(smooth_curve(np.full(30, 2.5)), np.full(30, 2.5))
    np.testing.assert_array_equal(smooth_curve([1.0, 2.0, 3.0]), [1.0, 2.0, 3.0])  # too short: unchanged

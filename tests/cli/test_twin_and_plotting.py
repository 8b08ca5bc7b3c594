"""The demo's NumPy baseline (the same SimpleConvNet + Adam on the reference twins) computes what fastnn computes;
the book's smoothing."""

from __future__ import annotations

import copy
import gc

import numpy as np
import pytest

from fastnn import backend
from fastnn.cli.demo import compare_speed
from fastnn.cli.plotting import Drawer, smooth_curve
from fastnn.nets import SimpleConvNet
from fastnn.optim import Adam


def _net(dtype):
    return SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 4, "filter_size": 3, "pad": 1, "stride": 1},
                         hidden_size=16, output_size=10, weight_init_std="relu", dtype=dtype, seed=3)


@pytest.mark.parametrize("name", ["reference", "kernels"])
def test_twin_gradient_equals_simpleconvnet(name):
    net = _net(np.float64)
    rng = np.random.default_rng(0)
    x = rng.random((7, 1, 10, 10))
    t = rng.integers(0, 10, 7)
    with backend.using(name):
        loss, grads = float(net.loss(x, t)), net.gradient(x, t)
    expected = net.gradient(x, t)
    assert loss == pytest.approx(float(net.loss(x, t)), rel=1e-12)
    assert sorted(grads) == sorted(expected)
    for k in expected:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_twin_training_steps_follow_fastnn_adam_float32():
    net = _net(np.float32)
    twin = copy.deepcopy(net)  # as the demo's compare_speed makes it
    twin_optimizer = Adam(lr=0.003)
    before = {k: v.copy() for k, v in net.params.items()}
    optimizer = Adam(lr=0.003)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.random((8, 1, 10, 10), dtype=np.float32)
        t = rng.integers(0, 10, 8)
        fast_loss = float(net.loss(x, t))
        optimizer.update(net.params, net.gradient(x, t))
        with backend.using("reference"):
            twin_optimizer.update(twin.params, twin.gradient(x, t))
        assert float(twin.last_layer.loss) == pytest.approx(fast_loss, rel=1e-5)
    for k, p in twin.params.items():
        assert p.dtype == np.float32
        np.testing.assert_allclose(p, net.params[k], rtol=1e-4, atol=1e-6, err_msg=k)
        assert not np.array_equal(p, before[k])  # they did train
    # The twin copied the parameters: the net's arrays are its own.
    assert all(twin.params[k] is not net.params[k] for k in twin.params)


def test_compare_speed_runs_the_same_steps_on_both_backends():
    net = _net(np.float32)
    rng = np.random.default_rng(2)
    x = rng.random((40, 1, 10, 10), dtype=np.float32)
    t = rng.integers(0, 10, 40)
    before = {k: v.copy() for k, v in net.params.items()}
    speed = compare_speed(net, x, t, batch_size=8, steps=3, lr=0.003, seed=0)
    assert sorted(speed) == ["fastnn_s", "max_rel_loss_diff", "numpy_s", "speedup"]
    assert speed["fastnn_s"] > 0 and speed["numpy_s"] > 0
    assert speed["speedup"] == pytest.approx(speed["numpy_s"] / speed["fastnn_s"])
    assert speed["max_rel_loss_diff"] < 1e-5  # the same 4 steps: the losses agree to float32 rounding
    assert not np.array_equal(net.params["W1"], before["W1"])  # the given net is trained further
    assert backend.current() == "kernels"


def test_compare_speed_times_without_the_garbage_collector(monkeypatch):
    """A collection inside a timed step (a test session holds many objects) once made fastnn's steps look 160x slow
    in CI; the steps now run with the collector off, and it is on again afterwards, also after an error."""
    net = _net(np.float32)
    rng = np.random.default_rng(3)
    x = rng.random((16, 1, 10, 10), dtype=np.float32)
    t = rng.integers(0, 10, 16)
    seen = []
    gradient = type(net).gradient
    monkeypatch.setattr(type(net), "gradient", lambda self, *a: seen.append(gc.isenabled()) or gradient(self, *a))
    assert gc.isenabled()
    compare_speed(net, x, t, batch_size=4, steps=2, lr=0.003, seed=0)
    assert seen == [False] * 6 and gc.isenabled()  # 3 steps (one untimed) on each side
    with pytest.raises(IndexError):
        compare_speed(net, x, t[:3], batch_size=4, steps=2, lr=0.003, seed=0)  # fewer labels than images
    assert gc.isenabled()


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


def test_drawer_draws_in_its_helper_and_here_when_the_helper_is_gone(tmp_path):
    pytest.importorskip("matplotlib")
    from .test_cli import assert_png

    curves = ([2.0, 1.5, 1.2, 0.9] * 5, [0.2, 0.9], [0.25, 0.85])
    drawer = Drawer.start()
    helper = drawer._process
    assert drawer.draw("training_curves", *curves, str(tmp_path / "a.png"), "helper", 4) == str(tmp_path / "a.png")
    assert helper.returncode == 0 and drawer._process is None  # the helper drew it and exited
    dead = Drawer.start()
    dead._process.kill()
    assert dead.draw("training_curves", *curves, str(tmp_path / "b.png"), "here", 4) == str(tmp_path / "b.png")
    for name in ("a.png", "b.png"):
        assert_png(tmp_path / name)
    idle = Drawer.start()
    idle.close()  # not drawing stops the helper
    assert idle._process is None

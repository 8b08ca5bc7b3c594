"""Nets run Convolution -> Relu (-> Pooling) as one fused kernel call per pass (``Sequential(fuse=True)``, the
default): the same bits as the layers one by one, the layers' state where it exists, the same errors."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import layers as L
from fastnn.layers.conv import ConvReluRun
from fastnn.nets import DeepConvNet, Sequential, SimpleConvNet
from fastnn.optim import Adam

NETS = {
    "DeepConvNet": (lambda dtype: DeepConvNet((1, 12, 10), hidden_size=8, dtype=dtype, seed=1), (3, 1, 12, 10)),
    "SimpleConvNet": (lambda dtype: SimpleConvNet((2, 9, 9), {"filter_num": 3, "filter_size": 5, "pad": 1,
                                                              "stride": 1}, 6, 4, dtype=dtype, seed=2), (4, 2, 9, 9)),
}


@pytest.mark.parametrize("name", NETS)
def test_fused_net_gives_the_unfused_bits(name, dtype):
    build, shape = NETS[name]
    fused, unfused = build(dtype), build(dtype)
    unfused.fuse = False
    rng = np.random.default_rng(0)
    x, t = rng.random(shape).astype(dtype), rng.integers(0, 4, shape[0])
    opt_f, opt_u = Adam(), Adam()
    for _ in range(2):  # a second step: the workspaces and plans are reused
        gf, gu = fused.gradient(x, t), unfused.gradient(x, t)
        assert list(gf) == list(gu)
        for key in gf:
            assert gf[key].dtype == dtype
            np.testing.assert_array_equal(gf[key], gu[key], err_msg=key)
        opt_f.update(fused.params, gf)
        opt_u.update(unfused.params, gu)
    assert fused.loss(x, t) == unfused.loss(x, t)
    np.testing.assert_array_equal(fused.predict(x), unfused.predict(x))


def test_runs_found_and_layer_state_kept():
    net = DeepConvNet((1, 12, 10), hidden_size=8, seed=1)
    runs = [step for step, _ in net._plans[True] if isinstance(step, ConvReluRun)]
    assert [run.pool is not None for run in runs] == [False, True] * 3
    twin = DeepConvNet((1, 12, 10), hidden_size=8, seed=1)
    twin.fuse = False
    x, t = np.random.default_rng(3).random((2, 1, 12, 10)), np.array([1, 7])
    net.gradient(x, t)
    twin.gradient(x, t)
    for mine, theirs in zip(net.layers, twin.layers, strict=True):
        if isinstance(mine, L.Pooling):
            assert mine.input_shape == theirs.input_shape
            np.testing.assert_array_equal(mine.arg_max, theirs.arg_max)
        if isinstance(mine, L.Convolution):
            assert mine.x.shape == theirs.x.shape
            np.testing.assert_array_equal(mine.dW, theirs.dW)
    # the Relu's input is never made on the fused path: its own backward says so rather than using stale state
    with pytest.raises(RuntimeError, match="Relu.backward: forward must run before backward"):
        net.layers[1].backward(np.ones((2, 16, 12, 10)))


def _small(pool, seed=0):
    rng = np.random.default_rng(seed)
    conv = L.Convolution(rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3), pad=1)
    return Sequential([conv, L.Relu(), pool, L.Affine(rng.standard_normal((12, 4)), np.zeros(4))],
                      L.SoftmaxWithLoss())


@pytest.mark.parametrize(("pool", "hw"), [(L.Pooling(3, 3, stride=2), 5), (L.Pooling(2, 2, stride=1), 3),
                                          (L.AvgPooling(2, 2), 4)], ids=["3x3s2", "2x2s1", "avg"])
def test_other_poolings_are_not_fused_into_the_convolution(pool, hw):
    """Only the 2x2 stride-2 max-pool joins the kernel; with another pooling the Conv-Relu pair is fused and the
    pooling layer runs on its own, giving what the unfused net gives."""
    net = _small(pool)
    steps = [step for step, _ in net._plan]
    assert isinstance(steps[0], ConvReluRun) and steps[0].pool is None and steps[1] is pool
    x, t = np.random.default_rng(1).random((2, 2, hw, hw)), np.array([0, 3])
    fused = {k: v.copy() for k, v in net.gradient(x, t).items()}
    net.fuse = False
    for key, g in net.gradient(x, t).items():
        np.testing.assert_array_equal(fused[key], g)


def test_pool_rebound_after_construction_falls_back_to_the_layers():
    pool = L.Pooling(2, 2, stride=2)
    net = _small(pool)
    x, t = np.random.default_rng(2).random((2, 2, 4, 4)), np.array([1, 2])
    first = {k: v.copy() for k, v in net.gradient(x, t).items()}
    pool.stride = 1  # now (2, 2) windows at stride 1: not the fused kernel's; the layers run one by one
    with pytest.raises(ValueError, match="Affine.forward: x must be of shape"):
        net.gradient(x, t)
    pool.stride = 2
    for key, g in net.gradient(x, t).items():
        np.testing.assert_array_equal(first[key], g)


def test_errors_are_the_layers_errors():
    net = DeepConvNet((1, 12, 10), hidden_size=8, seed=1)
    with pytest.raises(ValueError, match=r"Convolution.forward: x must be of shape \(N, 1, H, W\)"):
        net.predict(np.zeros((2, 3, 12, 10)))
    with pytest.raises(ValueError, match="Convolution.forward: x must be 4-D"):
        net.predict(np.zeros((2, 12, 10)))
    with pytest.raises(TypeError, match="Sequential: fuse must be True or False"):
        Sequential([L.Relu()], L.SoftmaxWithLoss(), fuse=1)

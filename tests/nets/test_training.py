"""30 steps of plain SGD (written inline) through a fastnn net and through the same net written from
fastnn.reference functions and NumPy: same loss trajectory, parameters and running statistics, float32 and
float64, with the kernels on their serial and on their parallel twins."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn.reference as R
from fastnn.nets import MultiLayerNetExtend, SimpleConvNet

STEPS = 30
LR = 0.1
# 30 steps of SGD compound rounding differences (different summation orders in the kernels' GEMMs and
# reductions); float32 keeps about 4 significant digits of the loss after 30 steps.
TRAJ_TOL = {np.dtype(np.float32): {"rtol": 3e-4, "atol": 1e-5}, np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-12}}


def _batches(dtype, x_shape, classes, seed):
    """4 mini-batches cycled over 30 steps; labels a fixed linear function of the input, so there is something to
    learn."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4 * x_shape[0], *x_shape[1:])).astype(dtype)
    t = np.argmax(x.reshape(len(x), -1) @ rng.standard_normal((x[0].size, classes)), axis=1)
    n = x_shape[0]
    return [(x[i % 4 * n:(i % 4 + 1) * n], t[i % 4 * n:(i % 4 + 1) * n]) for i in range(STEPS)]


def _sgd(params, grads):
    for key in params:
        params[key] -= LR * grads[key]


# ----- SimpleConvNet -----------------------------------------------------------------------------------------

def _simple_convnet_twin(p, x, t, stride, pad):
    """conv - relu - pool - affine - relu - affine - softmax, forward and backward with fastnn.reference."""
    conv = R.conv2d_forward(x, p["W1"], p["b1"], stride, pad)
    relu1 = R.relu_forward(conv)
    pool, argmax = R.maxpool2d_forward(relu1, 2, 2, 2, 0)
    flat = pool.reshape(pool.shape[0], -1)
    hidden = flat @ p["W2"] + p["b2"]
    relu2 = R.relu_forward(hidden)
    scores = relu2 @ p["W3"] + p["b3"]
    loss, probs = R.softmax_cross_entropy_forward(scores, t, delta=1e-7)  # the book's loss, the default

    dscores = R.softmax_cross_entropy_backward(probs, t, 1.0)
    g = {"W3": relu2.T @ dscores, "b3": dscores.sum(axis=0)}
    dhidden = R.relu_backward(dscores @ p["W3"].T, hidden)
    g["W2"], g["b2"] = flat.T @ dhidden, dhidden.sum(axis=0)
    dpool = (dhidden @ p["W2"].T).reshape(pool.shape)
    dconv = R.relu_backward(R.maxpool2d_backward(dpool, argmax, relu1.shape, 2, 2, 2, 0), conv)
    _, g["W1"], g["b1"] = R.conv2d_backward(dconv, x, p["W1"], stride, pad)
    return loss, g


def test_simple_convnet_training_matches_reference_twin(dtype, twin):
    conv = {"filter_num": 4, "filter_size": 3, "pad": 1, "stride": 1}
    net = SimpleConvNet((2, 8, 7), conv, hidden_size=10, output_size=4, weight_init_std="he", dtype=dtype, seed=0)
    ref = {k: v.copy() for k, v in net.params.items()}
    losses, ref_losses = [], []
    for x, t in _batches(dtype, (6, 2, 8, 7), 4, seed=1):
        grads = net.gradient(x, t)
        losses.append(net.last_layer.loss)
        _sgd(net.params, grads)
        loss, ref_grads = _simple_convnet_twin(ref, x, t, 1, 1)
        ref_losses.append(loss)
        _sgd(ref, ref_grads)
    assert all(np.asarray(v).dtype == dtype for v in losses + ref_losses)
    np.testing.assert_allclose(losses, ref_losses, **TRAJ_TOL[dtype])
    assert losses[-1] < 0.7 * losses[0]  # it trains
    for key in ref:
        assert net.params[key].dtype == dtype
        np.testing.assert_allclose(net.params[key], ref[key], rtol=TRAJ_TOL[dtype]["rtol"], atol=1e-4
                                   if dtype == np.float32 else 1e-10, err_msg=key)


# ----- MultiLayerNetExtend with batch normalization, dropout and weight decay ------------------------------

class _ExtendTwin:
    """MultiLayerNetExtend(use_batchnorm=True, use_dropout=True) written with fastnn.reference functions.

    Initialised as the net documents its ``seed``: one Generator; weights W1, W2, ... drawn in order as
    ``sqrt(2 / fan_in) * standard_normal((fan_in, fan_out))`` in float64 then cast; then, at each training
    forward, each dropout layer in order draws one uint64 seed for its mask.
    """

    def __init__(self, sizes, dtype, seed, ratio, lam):
        self.rng = np.random.default_rng(seed)
        self.p, self.running = {}, {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
            W = math.sqrt(2.0 / fan_in) * self.rng.standard_normal((fan_in, fan_out))
            self.p[f"W{i}"], self.p[f"b{i}"] = W.astype(dtype), np.zeros(fan_out, dtype)
            if i < len(sizes) - 1:
                self.p[f"gamma{i}"], self.p[f"beta{i}"] = np.ones(fan_out, dtype), np.zeros(fan_out, dtype)
                self.running[i] = (np.zeros(fan_out, dtype), np.zeros(fan_out, dtype))
        self.hidden, self.ratio, self.lam = len(sizes) - 2, ratio, lam

    def loss_and_grads(self, x, t):
        p, caches, a = self.p, [], x
        for i in range(1, self.hidden + 1):
            h = a @ p[f"W{i}"] + p[f"b{i}"]
            bn, mean, inv_std = R.batchnorm_forward_train(h, p[f"gamma{i}"], p[f"beta{i}"], *self.running[i], 0.9,
                                                          1e-6)
            r = R.relu_forward(bn)
            seed = int(self.rng.integers(0, 2**64, dtype=np.uint64))
            mask = R.dropout_mask(r.shape, self.ratio, seed)
            caches.append((a, h, mean, inv_std, bn, mask))
            a = R.dropout_forward(r, mask)
        last = self.hidden + 1
        scores = a @ p[f"W{last}"] + p[f"b{last}"]
        loss, probs = R.softmax_cross_entropy_forward(scores, t, delta=1e-7)  # the book's loss, the default
        loss = loss + sum(0.5 * self.lam * np.sum(p[f"W{i}"] ** 2) for i in range(1, last + 1))

        d = R.softmax_cross_entropy_backward(probs, t, 1.0)
        g = {f"W{last}": a.T @ d, f"b{last}": d.sum(axis=0)}
        d = d @ p[f"W{last}"].T
        for i in range(self.hidden, 0, -1):
            a_in, h, mean, inv_std, bn, mask = caches[i - 1]
            d = R.relu_backward(R.dropout_backward(d, mask), bn)
            d, g[f"gamma{i}"], g[f"beta{i}"] = R.batchnorm_backward(d, h, p[f"gamma{i}"], mean, inv_std)
            g[f"W{i}"], g[f"b{i}"] = a_in.T @ d, d.sum(axis=0)
            d = d @ p[f"W{i}"].T
        for i in range(1, last + 1):
            g[f"W{i}"] = g[f"W{i}"] + self.lam * p[f"W{i}"]
        return loss, g


def test_multilayer_net_extend_training_matches_reference_twin(dtype, twin):
    sizes, lam, ratio = [12, 10, 8, 3], 0.01, 0.2
    net = MultiLayerNetExtend(12, [10, 8], 3, weight_decay_lambda=lam, use_dropout=True, dropout_ration=ratio,
                              use_batchnorm=True, dtype=dtype, seed=7)
    ref = _ExtendTwin(sizes, dtype, 7, ratio, lam)
    for key in ref.p:  # the documented initialisation, bit for bit
        np.testing.assert_array_equal(net.params[key], ref.p[key], err_msg=key)
    losses, ref_losses = [], []
    for x, t in _batches(dtype, (16, 12), 3, seed=2):
        grads = net.gradient(x, t)
        losses.append(net.last_layer.loss + net._weight_decay())
        _sgd(net.params, grads)
        loss, ref_grads = ref.loss_and_grads(x, t)
        ref_losses.append(loss)
        _sgd(ref.p, ref_grads)
    assert all(np.asarray(v).dtype == dtype for v in losses + ref_losses)
    np.testing.assert_allclose(losses, ref_losses, **TRAJ_TOL[dtype])
    assert losses[-1] < 0.8 * losses[0]
    atol = 1e-4 if dtype == np.float32 else 1e-10
    for key in ref.p:
        np.testing.assert_allclose(net.params[key], ref.p[key], rtol=TRAJ_TOL[dtype]["rtol"], atol=atol,
                                   err_msg=key)
    for i, (mean, var) in ref.running.items():
        np.testing.assert_allclose(net.buffers[f"running_mean{i}"], mean, rtol=TRAJ_TOL[dtype]["rtol"], atol=atol)
        np.testing.assert_allclose(net.buffers[f"running_var{i}"], var, rtol=TRAJ_TOL[dtype]["rtol"], atol=atol)


@pytest.mark.parametrize("seed", [3, np.random.default_rng(3)], ids=["int", "Generator"])
def test_same_seed_same_training(seed):
    def trajectory(s):
        net = MultiLayerNetExtend(12, [10], 3, use_dropout=True, use_batchnorm=True, seed=s)
        out = []
        for x, t in _batches(np.dtype(np.float64), (8, 12), 3, seed=4)[:5]:
            grads = net.gradient(x, t)
            out.append(float(net.last_layer.loss))
            _sgd(net.params, grads)
        return out

    first = trajectory(seed if isinstance(seed, int) else np.random.default_rng(3))
    assert trajectory(seed) == first
    assert trajectory(4) != first

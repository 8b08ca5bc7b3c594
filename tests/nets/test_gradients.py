"""Each net's gradient() (backpropagation) against its numerical_gradient() (central differences), float64."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import layers as L
from fastnn.nets import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, Sequential, SimpleConvNet


def _conv(n, size=3, pad=1, stride=1):
    return {"filter_num": n, "filter_size": size, "pad": pad, "stride": stride}


def _sequential(seed):
    """A stack using every other layer type, through the generic container."""
    rng = np.random.default_rng(seed)

    def p(*shape, scale=0.5):
        return scale * rng.standard_normal(shape)

    layers = [L.Convolution(p(4, 2, 3, 3), p(4), stride=1, pad=1), L.GroupNormalization(1 + p(4), p(4), 2),
              L.LeakyRelu(0.1), L.AvgPooling(2, 2, stride=2), L.BatchNormalization(1 + p(4), p(4)), L.Tanh(),
              L.Convolution(p(3, 4, 2, 2), p(3), stride=(1, 2)), L.Sigmoid(), L.Affine(p(12, 5), p(5)),
              L.LayerNormalization(1 + p(5), p(5)), L.Relu(), L.Dropout(0.3, seed=rng), L.Affine(p(5, 3), p(3))]
    return Sequential(layers, L.SoftmaxWithLoss(), weight_decay_lambda=0.05)


NETS = {
    "MultiLayerNet-relu": (lambda: MultiLayerNet(6, [5, 4], 3, weight_decay_lambda=0.1, seed=12), (7, 6)),
    "MultiLayerNet-sigmoid": (lambda: MultiLayerNet(6, [5], 3, activation="sigmoid", weight_init_std="xavier",
                                                    seed=2), (7, 6)),
    "MultiLayerNetExtend-bn-dropout": (lambda: MultiLayerNetExtend(6, [5, 4], 3, weight_decay_lambda=0.1,
                                                                   use_dropout=True, dropout_ration=0.3,
                                                                   use_batchnorm=True, seed=3), (7, 6)),
    "MultiLayerNetExtend-4d-input": (lambda: MultiLayerNetExtend(8, [4], 3, use_batchnorm=True, seed=4),
                                     (5, 2, 2, 2)),
    "SimpleConvNet": (lambda: SimpleConvNet((2, 7, 6), _conv(3, 3, 1, 1), hidden_size=5, output_size=3,
                                            weight_init_std="he", seed=5), (4, 2, 7, 6)),
    "DeepConvNet": (lambda: DeepConvNet((1, 8, 8), _conv(2), _conv(2), _conv(3), _conv(3, pad=2), _conv(2),
                                        _conv(2), hidden_size=4, output_size=3, seed=6), (3, 1, 8, 8)),
    "Sequential": (lambda: _sequential(7), (4, 2, 6, 8)),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_gradient_matches_numerical_gradient(name):
    make, x_shape = NETS[name]
    net = make()
    # backpropagation (the book's (y - t) / N) is the gradient of the exact cross-entropy; the default loss, the
    # book's log(y + 1e-7), differs from it by ~1e-7 / y (tests/layers/test_softmax_with_loss.py)
    net.last_layer = L.SoftmaxWithLoss(exact=True)
    rng = np.random.default_rng(100 + len(name))
    for key, p in net.params.items():
        if key.startswith("b"):
            # zero biases after dead ReLUs put pre-activations exactly on the kink, where central differences
            # see half a slope: check at a generic point instead
            p += 0.1 * rng.standard_normal(p.shape)
    x = rng.standard_normal(x_shape)
    t = rng.integers(0, 3, x_shape[0])
    numerical = net.numerical_gradient(x, t)
    backprop = net.gradient(x, t)  # draws the dropout masks numerical_gradient used (its state is restored)
    # the book's orders: gradient and numerical_gradient by layer; params (MultiLayerNetExtend) W, b first
    assert list(backprop) == list(numerical) == list(net._param_index) and set(backprop) == set(net.params)
    for key in net.params:
        np.testing.assert_allclose(backprop[key], numerical[key], rtol=1e-5, atol=1e-8, err_msg=key)
    # not vacuous: only a bias feeding batch normalization has a zero gradient
    vanishing = {key for key, g in backprop.items() if np.abs(g).max() < 1e-4}
    if isinstance(net, MultiLayerNetExtend) and net.use_batchnorm:
        assert vanishing == {f"b{i}" for i in range(1, net.hidden_layer_num + 1)}
    else:
        assert not vanishing


def test_numerical_gradient_leaves_the_net_as_it_was():
    net = MultiLayerNetExtend(6, [5], 3, use_dropout=True, use_batchnorm=True, seed=8)
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((4, 6)), rng.integers(0, 3, 4)
    net.gradient(x, t)  # running statistics move away from their start
    params = {k: v.copy() for k, v in net.params.items()}
    buffers = {k: v.copy() for k, v in net.buffers.items()}
    dropout = net.layers["Dropout1"]
    rng_state = dropout.random.get_state()
    net.numerical_gradient(x, t)
    for k, v in params.items():
        np.testing.assert_array_equal(net.params[k], v)
    for k, v in buffers.items():
        np.testing.assert_array_equal(net.buffers[k], v)
    assert dropout.random.get_state() == rng_state

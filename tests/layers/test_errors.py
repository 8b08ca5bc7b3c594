"""Bad input to a layer raises ValueError/TypeError whose message names the layer (method) and the argument,
before anything is computed or stored."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import layers as L

f64 = np.float64


def _ones(*shape, dtype=f64):
    return np.ones(shape, dtype)


def _forwarded(layer, *args, **kw):
    layer.forward(*args, **kw)
    return layer


def _affine():
    return L.Affine(_ones(6, 5), _ones(5))


def _conv():
    return L.Convolution(_ones(4, 3, 3, 3), _ones(4), stride=1, pad=1)


def _bn(size=5):
    return L.BatchNormalization(_ones(size), _ones(size))


X4 = _ones(2, 3, 5, 5)

# (id, call, exception type, message prefix "<where>: <argument>")
BAD = [
    # constructors
    ("affine W list", lambda: L.Affine([[1.0]], _ones(1)), TypeError, "Affine: W"),
    ("affine W int", lambda: L.Affine(np.ones((2, 2), int), _ones(2)), TypeError, "Affine: W"),
    ("affine W 1-D", lambda: L.Affine(_ones(4), _ones(4)), ValueError, "Affine: W"),
    ("affine b shape", lambda: L.Affine(_ones(6, 5), _ones(6)), ValueError, "Affine: b"),
    ("affine b 2-D", lambda: L.Affine(_ones(6, 5), _ones(1, 5)), ValueError, "Affine: b"),
    ("affine W complex", lambda: L.Affine(np.ones((2, 2), complex), _ones(2)), TypeError, "Affine: W"),
    ("conv W 3-D", lambda: L.Convolution(_ones(4, 3, 3), _ones(4)), ValueError, "Convolution: W"),
    ("conv b shape", lambda: L.Convolution(_ones(4, 3, 3, 3), _ones(3)), ValueError, "Convolution: b"),
    ("conv stride 0", lambda: L.Convolution(_ones(4, 3, 3, 3), _ones(4), stride=0), ValueError,
     "Convolution: stride"),
    ("conv stride -1 pair", lambda: L.Convolution(_ones(4, 3, 3, 3), _ones(4), stride=(1, -1)), ValueError,
     "Convolution: stride"),
    ("conv stride float", lambda: L.Convolution(_ones(4, 3, 3, 3), _ones(4), stride=1.5), TypeError,
     "Convolution: stride"),
    ("conv pad -1", lambda: L.Convolution(_ones(4, 3, 3, 3), _ones(4), pad=-1), ValueError, "Convolution: pad"),
    ("pool pool_h 0", lambda: L.Pooling(0, 2), ValueError, "Pooling: pool_h"),
    ("pool pool_w str", lambda: L.Pooling(2, "2"), TypeError, "Pooling: pool_w"),
    ("pool stride 0", lambda: L.Pooling(2, 2, stride=0), ValueError, "Pooling: stride"),
    ("pool pad too big", lambda: L.Pooling(2, 2, pad=2), ValueError, "Pooling: pad"),
    ("avgpool pad -1", lambda: L.AvgPooling(2, 2, pad=-1), ValueError, "AvgPooling: pad"),
    ("avgpool stride 0", lambda: L.AvgPooling(2, 2, stride=0), ValueError, "AvgPooling: stride"),
    ("leaky alpha nan", lambda: L.LeakyRelu(np.nan), ValueError, "LeakyRelu: alpha"),
    ("leaky alpha str", lambda: L.LeakyRelu("0.1"), TypeError, "LeakyRelu: alpha"),
    ("dropout ratio 1", lambda: L.Dropout(1.0), ValueError, "Dropout: dropout_ratio"),
    ("dropout ratio -0.1", lambda: L.Dropout(-0.1), ValueError, "Dropout: dropout_ratio"),
    ("dropout ratio str", lambda: L.Dropout("0.5"), TypeError, "Dropout: dropout_ratio"),
    ("dropout seed str", lambda: L.Dropout(0.5, seed="7"), TypeError, "Dropout: seed"),
    ("dropout seed -1", lambda: L.Dropout(0.5, seed=-1), ValueError, "Dropout: seed"),
    ("bn beta shape", lambda: L.BatchNormalization(_ones(5), _ones(4)), ValueError, "BatchNormalization: beta"),
    ("bn gamma empty", lambda: L.BatchNormalization(_ones(0), _ones(0)), ValueError, "BatchNormalization: gamma"),
    ("gn gamma empty", lambda: L.GroupNormalization(_ones(0), _ones(0), 1), ValueError, "GroupNormalization: gamma"),
    ("ln gamma empty", lambda: L.LayerNormalization(_ones(2, 0), _ones(2, 0)), ValueError,
     "LayerNormalization: gamma"),
    ("bn gamma 2-D", lambda: L.BatchNormalization(_ones(1, 5), _ones(1, 5)), ValueError,
     "BatchNormalization: gamma"),
    ("bn gamma list", lambda: L.BatchNormalization([1.0, 1.0], _ones(2)), TypeError, "BatchNormalization: gamma"),
    ("bn momentum", lambda: L.BatchNormalization(_ones(5), _ones(5), momentum=1.5), ValueError,
     "BatchNormalization: momentum"),
    ("bn eps 0", lambda: L.BatchNormalization(_ones(5), _ones(5), eps=0), ValueError, "BatchNormalization: eps"),
    ("bn running_mean shape", lambda: L.BatchNormalization(_ones(5), _ones(5), running_mean=_ones(4)), ValueError,
     "BatchNormalization: running_mean"),
    ("bn running_var complex", lambda: L.BatchNormalization(_ones(2), _ones(2), running_var=np.ones(2, complex)),
     TypeError, "BatchNormalization: running_var"),
    ("ln beta shape", lambda: L.LayerNormalization(_ones(2, 3), _ones(3, 2)), ValueError, "LayerNormalization: beta"),
    ("ln gamma 0-d", lambda: L.LayerNormalization(np.array(1.0), np.array(0.0)), ValueError,
     "LayerNormalization: gamma"),
    ("ln eps -1", lambda: L.LayerNormalization(_ones(3), _ones(3), eps=-1), ValueError, "LayerNormalization: eps"),
    ("gn groups 4 of 6", lambda: L.GroupNormalization(_ones(6), _ones(6), 4), ValueError,
     "GroupNormalization: groups"),
    ("gn groups 0", lambda: L.GroupNormalization(_ones(6), _ones(6), 0), ValueError, "GroupNormalization: groups"),
    ("gn groups float", lambda: L.GroupNormalization(_ones(6), _ones(6), 2.0), TypeError,
     "GroupNormalization: groups"),
    # forward inputs
    ("affine x features", lambda: _affine().forward(_ones(3, 7)), ValueError, "Affine.forward: x"),
    ("affine x 1-D", lambda: _affine().forward(_ones(6)), ValueError, "Affine.forward: x"),
    ("affine x complex", lambda: _affine().forward(np.ones((3, 6), complex)), TypeError, "Affine.forward: x"),
    ("affine x object", lambda: _affine().forward(np.ones((3, 6), object)), TypeError, "Affine.forward: x"),
    ("affine x str", lambda: _affine().forward("x"), TypeError, "Affine.forward: x"),
    ("relu x complex", lambda: L.Relu().forward(np.ones(3, complex)), TypeError, "Relu.forward: x"),
    ("sigmoid x object", lambda: L.Sigmoid().forward(np.array([1, None])), TypeError, "Sigmoid.forward: x"),
    ("tanh x None", lambda: L.Tanh().forward(None), TypeError, "Tanh.forward: x"),
    ("leaky x complex", lambda: L.LeakyRelu().forward(np.ones(2, complex)), TypeError, "LeakyRelu.forward: x"),
    ("dropout x complex", lambda: L.Dropout().forward(np.ones(2, complex)), TypeError, "Dropout.forward: x"),
    ("softmax x 3-D", lambda: L.SoftmaxWithLoss().forward(_ones(2, 4, 1), np.array([1, 0])), ValueError,
     "SoftmaxWithLoss.forward: x"),
    ("softmax one sample t size", lambda: L.SoftmaxWithLoss().forward(_ones(4), np.array([1, 0])), ValueError,
     "SoftmaxWithLoss.forward: t"),
    ("softmax t (N, 2)", lambda: L.SoftmaxWithLoss().forward(_ones(2, 3), np.array([[0, 1], [1, 2]])), ValueError,
     "SoftmaxWithLoss.forward: t"),
    ("softmax t (N, 1) out of range", lambda: L.SoftmaxWithLoss().forward(_ones(2, 3), np.array([[0], [3]])),
     ValueError, "SoftmaxWithLoss.forward: t"),
    ("softmax exact int", lambda: L.SoftmaxWithLoss(exact=1), TypeError, "SoftmaxWithLoss: exact"),
    ("softmax x empty", lambda: L.SoftmaxWithLoss().forward(_ones(0, 3), np.zeros(0, int)), ValueError,
     "SoftmaxWithLoss.forward: x"),
    ("softmax t out of range", lambda: L.SoftmaxWithLoss().forward(_ones(2, 3), np.array([0, 3])), ValueError,
     "SoftmaxWithLoss.forward: t"),
    ("softmax t negative", lambda: L.SoftmaxWithLoss().forward(_ones(2, 3), np.array([-1, 0])), ValueError,
     "SoftmaxWithLoss.forward: t"),
    ("softmax t length", lambda: L.SoftmaxWithLoss().forward(_ones(2, 3), np.array([0, 1, 2])), ValueError,
     "SoftmaxWithLoss.forward: t"),
    ("softmax t fractional", lambda: L.SoftmaxWithLoss().forward(_ones(2, 3), np.array([0.5, 1.0])), ValueError,
     "SoftmaxWithLoss.forward: t"),
    ("softmax t not one-hot", lambda: L.SoftmaxWithLoss().forward(_ones(2, 3), _ones(2, 3)), ValueError,
     "SoftmaxWithLoss.forward: t"),
    ("softmax t bool", lambda: L.SoftmaxWithLoss().forward(_ones(2, 3), np.array([True, False])), TypeError,
     "SoftmaxWithLoss.forward: t"),
    ("softmax t str", lambda: L.SoftmaxWithLoss().forward(_ones(2, 3), np.array(["a", "b"])), TypeError,
     "SoftmaxWithLoss.forward: t"),
    ("bn x 3-D", lambda: _bn().forward(_ones(2, 5, 1)), ValueError, "BatchNormalization.forward: x"),
    ("bn x features", lambda: _bn().forward(_ones(2, 4)), ValueError, "BatchNormalization.forward: x"),
    ("bn x 4-D size", lambda: _bn(4).forward(_ones(2, 3, 2, 2)), ValueError, "BatchNormalization.forward: x"),
    ("bn x empty train", lambda: _bn().forward(_ones(0, 5)), ValueError, "BatchNormalization.forward: x"),
    ("bn x complex", lambda: _bn().forward(np.ones((2, 5), complex)), TypeError, "BatchNormalization.forward: x"),
    ("ln x shape", lambda: L.LayerNormalization(_ones(3), _ones(3)).forward(_ones(2, 4)), ValueError,
     "LayerNormalization.forward: x"),
    ("ln x 1-D", lambda: L.LayerNormalization(_ones(3), _ones(3)).forward(_ones(3)), ValueError,
     "LayerNormalization.forward: x"),
    ("gn x channels", lambda: L.GroupNormalization(_ones(6), _ones(6), 3).forward(_ones(2, 4, 2, 2)), ValueError,
     "GroupNormalization.forward: x"),
    ("gn x 2-D", lambda: L.GroupNormalization(_ones(6), _ones(6), 3).forward(_ones(2, 6)), ValueError,
     "GroupNormalization.forward: x"),
    ("conv x 3-D", lambda: _conv().forward(_ones(3, 5, 5)), ValueError, "Convolution.forward: x"),
    ("conv x channels", lambda: _conv().forward(_ones(2, 2, 5, 5)), ValueError, "Convolution.forward: x"),
    ("conv filter larger than padded x",
     lambda: L.Convolution(_ones(1, 3, 5, 5), _ones(1), pad=1).forward(_ones(1, 3, 2, 6)), ValueError,
     "Convolution.forward: x"),
    ("conv x object", lambda: _conv().forward(np.ones((2, 3, 5, 5), object)), TypeError, "Convolution.forward: x"),
    ("pool x 2-D", lambda: L.Pooling(2, 2, stride=2).forward(_ones(4, 4)), ValueError, "Pooling.forward: x"),
    ("pool larger than x", lambda: L.Pooling(3, 3).forward(_ones(1, 1, 2, 5)), ValueError, "Pooling.forward: x"),
    ("pool x complex", lambda: L.Pooling(2, 2).forward(np.ones((1, 1, 2, 2), complex)), TypeError,
     "Pooling.forward: x"),
    ("avgpool larger than x", lambda: L.AvgPooling(2, 4, stride=2).forward(_ones(1, 1, 4, 3)), ValueError,
     "AvgPooling.forward: x"),
    # backward inputs
    ("affine dout shape", lambda: _forwarded(_affine(), _ones(3, 6)).backward(_ones(3, 4)), ValueError,
     "Affine.backward: dout"),
    ("affine dout complex", lambda: _forwarded(_affine(), _ones(3, 6)).backward(np.ones((3, 5), complex)),
     TypeError, "Affine.backward: dout"),
    ("relu dout shape", lambda: _forwarded(L.Relu(), _ones(3, 6)).backward(_ones(6, 3)), ValueError,
     "Relu.backward: dout"),
    ("sigmoid dout shape", lambda: _forwarded(L.Sigmoid(), _ones(3)).backward(_ones(4)), ValueError,
     "Sigmoid.backward: dout"),
    ("dropout dout shape", lambda: _forwarded(L.Dropout(), _ones(3)).backward(_ones(4)), ValueError,
     "Dropout.backward: dout"),
    ("softmax dout array", lambda: _forwarded(L.SoftmaxWithLoss(), _ones(2, 3), [0, 1]).backward(_ones(2, 3)),
     TypeError, "SoftmaxWithLoss.backward: dout"),
    ("softmax dout nan", lambda: _forwarded(L.SoftmaxWithLoss(), _ones(2, 3), [0, 1]).backward(np.nan),
     ValueError, "SoftmaxWithLoss.backward: dout"),
    ("bn dout shape", lambda: _forwarded(_bn(), _ones(2, 5)).backward(_ones(5, 2)), ValueError,
     "BatchNormalization.backward: dout"),
    ("conv dout shape", lambda: _forwarded(_conv(), X4).backward(_ones(2, 4, 5, 4)), ValueError,
     "Convolution.backward: dout"),
    ("pool dout shape", lambda: _forwarded(L.Pooling(2, 2, stride=2), X4).backward(_ones(2, 3, 3, 3)), ValueError,
     "Pooling.backward: dout"),
    ("avgpool dout shape", lambda: _forwarded(L.AvgPooling(2, 2, stride=2), X4).backward(_ones(2, 3, 2)),
     ValueError, "AvgPooling.backward: dout"),
    ("gn dout shape", lambda: _forwarded(L.GroupNormalization(_ones(6), _ones(6), 3), _ones(2, 6, 2, 2))
     .backward(_ones(2, 6, 2, 1)), ValueError, "GroupNormalization.backward: dout"),
    ("ln dout shape", lambda: _forwarded(L.LayerNormalization(_ones(3), _ones(3)), _ones(2, 3))
     .backward(_ones(2, 4)), ValueError, "LayerNormalization.backward: dout"),
]


@pytest.mark.parametrize("call, exc, prefix", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_layer_and_argument(call, exc, prefix):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(prefix + " must be "), str(info.value)


ORDER = [L.Relu(), L.Sigmoid(), L.Tanh(), L.LeakyRelu(), L.Dropout(), L.SoftmaxWithLoss(), _affine(), _bn(), _conv(),
         L.Pooling(2, 2), L.AvgPooling(2, 2), L.LayerNormalization(_ones(3), _ones(3)),
         L.GroupNormalization(_ones(6), _ones(6), 3)]


@pytest.mark.parametrize("layer", ORDER, ids=[type(layer).__name__ for layer in ORDER])
def test_backward_before_forward(layer):
    with pytest.raises(RuntimeError, match=f"^{type(layer).__name__}.backward: forward must run"):
        layer.backward(1.0 if isinstance(layer, L.SoftmaxWithLoss) else _ones(2))


def test_batchnorm_backward_after_inference_forward():
    layer = _bn()
    layer.forward(_ones(3, 5), train_flg=False)
    with pytest.raises(RuntimeError, match="^BatchNormalization.backward: the forward pass must run with train_flg"):
        layer.backward(_ones(3, 5))


def _cache(layer):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(layer).items()
            if k not in ("params", "grads", "buffers", "random")}


FAILING_AFTER_A_FORWARD = [
    (_affine, _ones(3, 6), lambda lyr: lyr.forward(_ones(3, 7))),
    (_bn, _ones(4, 5), lambda lyr: lyr.forward(_ones(4, 6))),
    (_bn, _ones(4, 5), lambda lyr: lyr.forward(_ones(0, 5))),
    (lambda: _bn(3), _ones(4, 3, 2, 2), lambda lyr: lyr.forward(_ones(4, 5, 2, 2))),
    (_conv, X4, lambda lyr: lyr.forward(_ones(2, 2, 5, 5))),
    (lambda: L.Pooling(2, 2, stride=2), X4, lambda lyr: lyr.forward(_ones(2, 3, 1, 1))),
    (lambda: L.LayerNormalization(_ones(3), _ones(3)), _ones(2, 3), lambda lyr: lyr.forward(_ones(2, 4))),
    (lambda: L.GroupNormalization(_ones(6), _ones(6), 3), _ones(2, 6, 2, 2),
     lambda lyr: lyr.forward(_ones(2, 4, 2, 2))),
    (L.SoftmaxWithLoss, _ones(2, 3), lambda lyr: lyr.forward(_ones(2, 3), np.array([0, 3]))),
    (L.Relu, _ones(2, 3), lambda lyr: lyr.forward(np.ones(2, complex))),
]


@pytest.mark.parametrize("make, x, bad", FAILING_AFTER_A_FORWARD,
                         ids=["Affine", "BN-features", "BN-empty", "BN-4d", "Convolution", "Pooling", "LN", "GN",
                              "SoftmaxWithLoss", "Relu"])
def test_failed_forward_keeps_previous_state(make, x, bad):
    """A rejected input raises before anything is stored: the previous forward's cache still serves backward."""
    layer = make()
    if isinstance(layer, L.SoftmaxWithLoss):
        layer.forward(x, np.array([0, 1]))
    else:
        layer.forward(x)
    before = _cache(layer)
    with pytest.raises((TypeError, ValueError)):
        bad(layer)
    after = _cache(layer)
    assert after.keys() == before.keys()
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(after[k], v, err_msg=k)
        else:
            assert after[k] == v, k
    if isinstance(layer, L.SoftmaxWithLoss):
        assert layer.backward().shape == x.shape
    else:
        assert layer.backward(np.ones(layer._out_shape)).shape == x.shape


def test_rebinding_a_parameter_is_checked():
    layer = _affine()
    with pytest.raises(TypeError, match="^Affine: W must be a float32 or float64 ndarray"):
        layer.W = [[1.0]]
    with pytest.raises(ValueError, match="^Affine: W must be 2-D"):
        layer.W = _ones(3)

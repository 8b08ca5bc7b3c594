"""The nets' contract: the book's structure, keys and initialisation; float32 end to end; save/load through
fastnn.checkpoint; the generic Sequential; bad arguments naming the net and the argument."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

from fastnn import layers as L
from fastnn.nets import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, Sequential, SimpleConvNet


def _conv(n, size=3, pad=1, stride=1):
    return {"filter_num": n, "filter_size": size, "pad": pad, "stride": stride}


def _small(name, dtype=np.float64, seed=0):
    """(net, input shape) of a small configuration of each net."""
    if name == "MultiLayerNet":
        return MultiLayerNet(10, [8, 6], 3, weight_decay_lambda=0.01, dtype=dtype, seed=seed), (5, 10)
    if name == "MultiLayerNetExtend":
        return MultiLayerNetExtend(10, [8, 6], 3, weight_decay_lambda=0.01, use_dropout=True, use_batchnorm=True,
                                   dtype=dtype, seed=seed), (5, 10)
    if name == "SimpleConvNet":
        return SimpleConvNet((1, 6, 6), _conv(3), hidden_size=7, output_size=3, dtype=dtype, seed=seed), (5, 1, 6, 6)
    if name == "DeepConvNet":
        return DeepConvNet((1, 8, 8), _conv(2), _conv(2), _conv(3), _conv(3, pad=2), _conv(2), _conv(2),
                           hidden_size=5, output_size=3, dtype=dtype, seed=seed), (5, 1, 8, 8)
    rng = np.random.default_rng(seed)
    layers = [L.Convolution((0.3 * rng.standard_normal((2, 1, 3, 3))).astype(dtype), np.zeros(2, dtype)),
              L.BatchNormalization(np.ones(2, dtype), np.zeros(2, dtype)), L.Relu(), L.AvgPooling(2, 2, stride=2),
              L.Dropout(0.2, seed=rng), L.Affine((0.3 * rng.standard_normal((8, 3))).astype(dtype), np.zeros(3, dtype))]
    return Sequential(layers, L.SoftmaxWithLoss(), dtype=dtype), (5, 1, 6, 6)


NAMES = ["MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet", "DeepConvNet", "Sequential"]


def _float_leaves(obj, path="net", seen=None):
    """(path, dtype) of every floating-point array or scalar reachable from obj's attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.kind in "fc":
            yield path, obj.dtype
    elif isinstance(obj, float):
        yield path, np.dtype(np.float64)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _float_leaves(v, f"{path}[{k!r}]", seen)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _float_leaves(v, f"{path}[{i}]", seen)
    elif type(obj).__module__.startswith("fastnn.") and hasattr(obj, "__dict__"):
        for k, v in vars(obj).items():
            if k in ("random",):  # the RNG holds no array data of the computation
                continue
            if isinstance(v, float) and k in ("dropout_ratio", "momentum", "eps", "alpha", "weight_decay_lambda"):
                continue  # hyperparameters, passed to kernels as scalars cast to the array dtype
            yield from _float_leaves(v, f"{path}.{k}", seen)


@pytest.mark.parametrize("name", NAMES)
def test_float32_end_to_end(name):
    net, x_shape = _small(name, np.float32)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape)  # float64 data: the net casts it to its dtype
    t = rng.integers(0, 3, x_shape[0])
    grads = net.gradient(x, t)
    for key in net.params:
        net.params[key] -= 0.1 * grads[key]
    losses = [net.loss(x, t), net.loss(x, t, train_flg=True), net.last_layer.loss]
    scores = net.predict(x)
    accuracy = net.accuracy(x, t)
    assert isinstance(accuracy, float)
    found = list(_float_leaves({"net": net, "grads": grads, "losses": losses, "scores": scores}))
    assert len(found) > 20
    wrong = [(p, d) for p, d in found if d != np.float32]
    assert not wrong, wrong
    assert all(isinstance(v, np.float32) for v in losses)


@pytest.mark.parametrize("name", NAMES)
def test_params_are_the_layers_arrays(name):
    net, x_shape = _small(name)
    layer_params = [p for layer in net._layer_list for p in layer.params.values()]
    assert len(layer_params) == len(net.params)
    assert all(any(p is q for q in layer_params) for p in net.params.values())
    rng = np.random.default_rng(2)
    grads = net.gradient(rng.standard_normal(x_shape), rng.integers(0, 3, x_shape[0]))
    for key, (layer, pname) in net._param_index.items():
        assert net.params[key] is layer.params[pname]
        if not (net.weight_decay_lambda and pname == "W"):
            assert grads[key] is layer.grads[pname]


def test_book_keys_and_layer_structure():
    net = MultiLayerNet(4, [3, 3], 2)
    assert list(net.layers) == ["Affine1", "Activation_function1", "Affine2", "Activation_function2", "Affine3"]
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert net.hidden_layer_num == 2 and isinstance(net.last_layer, L.SoftmaxWithLoss)
    ext = MultiLayerNetExtend(4, [3, 3], 2, use_dropout=True, use_batchnorm=True)
    assert list(ext.layers) == ["Affine1", "BatchNorm1", "Activation_function1", "Dropout1", "Affine2", "BatchNorm2",
                                "Activation_function2", "Dropout2", "Affine3"]
    # the book's order: the weights are made first, gamma/beta with the batch-norm layers
    assert list(ext.params) == ["W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2", "beta2"]
    assert sorted(ext.buffers) == ["running_mean1", "running_mean2", "running_var1", "running_var2"]
    simple = SimpleConvNet()
    assert type(simple.layers) is OrderedDict  # noqa: E721 -- the book's exact container
    assert list(simple.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert [type(layer) for layer in simple.layers.values()] == \
        [L.Convolution, L.Relu, L.Pooling, L.Affine, L.Relu, L.Affine]
    assert list(simple.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert isinstance(simple.last_layer, L.SoftmaxWithLoss)
    assert simple.params["W2"].shape == (30 * 12 * 12, 100)  # the book's 4320
    deep = DeepConvNet()
    assert type(deep.layers) is list  # noqa: E721 -- the book's exact container
    kinds = [L.Convolution, L.Relu, L.Convolution, L.Relu, L.Pooling] * 3 + [L.Affine, L.Relu, L.Dropout, L.Affine,
                                                                              L.Dropout]
    assert [type(layer) for layer in deep.layers] == kinds
    assert [i for i, layer in enumerate(deep.layers) if isinstance(layer, (L.Convolution, L.Affine))] == \
        [0, 2, 5, 7, 10, 12, 15, 18]  # the book's layer_idx
    assert list(deep.params) == [f"{n}{i}" for i in range(1, 9) for n in ("W", "b")]
    assert deep.params["W7"].shape == (64 * 4 * 4, 50)


def _with_global_seed(seed, make):
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        return make()
    finally:
        np.random.set_state(state)  # noqa: NPY002


def test_seed_none_draws_the_books_numbers_from_the_global_state():
    """With seed=None, np.random.seed(s) gives the book's initial weights (same draws, same order)."""
    def book_weights(sizes, rule):
        out = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            scale = {"relu": math.sqrt(2 / fan_in), "sigmoid": math.sqrt(1 / fan_in)}.get(rule, rule)
            out.append(scale * np.random.randn(fan_in, fan_out))  # noqa: NPY002
        return out

    for rule in ("relu", "sigmoid", 0.05):
        net = _with_global_seed(0, lambda rule=rule: MultiLayerNet(7, [5, 4], 3, weight_init_std=rule))
        want = _with_global_seed(0, lambda rule=rule: book_weights([7, 5, 4, 3], rule))
        for i, W in enumerate(want, start=1):
            np.testing.assert_array_equal(net.params[f"W{i}"], W)
    simple = _with_global_seed(1, lambda: SimpleConvNet((1, 10, 10), _conv(2, 3, 0, 1), hidden_size=4))
    want = _with_global_seed(1, lambda: [0.01 * np.random.randn(*s)  # noqa: NPY002
                                         for s in [(2, 1, 3, 3), (2 * 4 * 4, 4), (4, 10)]])
    for i, W in enumerate(want, start=1):
        np.testing.assert_array_equal(simple.params[f"W{i}"], W)
    deep = _with_global_seed(2, DeepConvNet)
    pre = [1 * 9, 16 * 9, 16 * 9, 32 * 9, 32 * 9, 64 * 9, 64 * 4 * 4, 50]  # the book's pre_node_nums
    shapes = [(16, 1, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3), (64, 64, 3, 3),
              (1024, 50), (50, 10)]
    want = _with_global_seed(2, lambda: [math.sqrt(2 / n) * np.random.randn(*s)  # noqa: NPY002
                                         for n, s in zip(pre, shapes, strict=True)])
    for i, W in enumerate(want, start=1):
        np.testing.assert_allclose(deep.params[f"W{i}"], W, rtol=1e-15)


def test_float32_init_is_the_float64_draw_rounded():
    a = MultiLayerNet(6, [4], 2, seed=5)
    b = MultiLayerNet(6, [4], 2, dtype=np.float32, seed=5)
    for key in a.params:
        assert b.params[key].dtype == np.float32
        np.testing.assert_array_equal(b.params[key], a.params[key].astype(np.float32))


def test_accuracy_counts_every_sample():
    net = SimpleConvNet((1, 6, 6), _conv(2), hidden_size=4, output_size=3, seed=3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((150, 1, 6, 6))
    predicted = np.argmax(net.predict(x), axis=1)
    t = predicted.copy()
    t[:7] = (t[:7] + 1) % 3  # 7 wrong answers, some in the first batch of 100 and none in the last 50
    t[120] = (t[120] + 1) % 3  # one in the last, partial batch (which the book's loop would skip)
    assert net.accuracy(x, t) == pytest.approx(142 / 150)
    assert net.accuracy(x, np.eye(3)[t], batch_size=7) == pytest.approx(142 / 150)
    mlp = MultiLayerNet(4, [3], 2, seed=0)
    xs = rng.standard_normal((9, 4))
    labels = np.argmax(mlp.predict(xs), axis=1)
    assert mlp.accuracy(xs, labels) == 1.0


def test_deep_convnet_loss_is_training_mode_by_default():
    net, x_shape = _small("DeepConvNet")
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal(x_shape), rng.integers(0, 3, 5)
    assert net.loss(x, t) != net.loss(x, t)  # fresh dropout masks each call, as the book's
    assert net.loss(x, t, train_flg=False) == net.loss(x, t, train_flg=False)


def test_weight_decay_in_loss_and_gradient():
    plain = MultiLayerNet(5, [4], 3, seed=6)
    decayed = MultiLayerNet(5, [4], 3, weight_decay_lambda=0.3, seed=6)
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((4, 5)), rng.integers(0, 3, 4)
    penalty = 0.5 * 0.3 * sum(np.sum(plain.params[k] ** 2) for k in ("W1", "W2"))
    assert decayed.loss(x, t) == pytest.approx(plain.loss(x, t) + penalty, rel=1e-12)
    g0, g1 = plain.gradient(x, t), decayed.gradient(x, t)
    np.testing.assert_allclose(g1["W1"], g0["W1"] + 0.3 * plain.params["W1"], rtol=1e-12)
    np.testing.assert_array_equal(g1["b1"], g0["b1"])


# ----- save_params / load_params -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_round_trip(name, tmp_path):
    net, x_shape = _small(name, seed=1)
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal(x_shape), rng.integers(0, 3, x_shape[0])
    grads = net.gradient(x, t)  # running statistics move too
    for key in net.params:
        net.params[key] -= 0.1 * grads[key]
    path = tmp_path / "params.npz"
    net.save_params(str(path))
    with np.load(path) as archive:
        assert sorted(archive.files) == sorted([*net.params, *net.buffers])

    other, _ = _small(name, seed=2)
    arrays = {k: v for k, v in other.params.items()}
    other.load_params(str(path))
    for key in net.params:
        assert other.params[key] is arrays[key]  # copied in place: layers and optimizer state keep working
        np.testing.assert_array_equal(other.params[key], net.params[key])
    for key in net.buffers:
        np.testing.assert_array_equal(other.buffers[key], net.buffers[key])
    np.testing.assert_array_equal(other.predict(x), net.predict(x))


def test_load_refuses_another_architecture_or_dtype(tmp_path):
    path = str(tmp_path / "p.npz")
    MultiLayerNet(6, [4], 3, seed=0).save_params(path)
    target = MultiLayerNet(6, [5], 3, seed=1)
    before = {k: v.copy() for k, v in target.params.items()}
    with pytest.raises(ValueError, match=r"^MultiLayerNet.load_params: 'W1' in .* must be of shape \(6, 5\)"):
        target.load_params(path)
    for key in before:  # nothing written
        np.testing.assert_array_equal(target.params[key], before[key])
    with pytest.raises(ValueError, match="^MultiLayerNet.load_params: .* dtype float32"):
        MultiLayerNet(6, [4], 3, dtype=np.float32).load_params(path)
    with pytest.raises(ValueError, match="^MultiLayerNetExtend.load_params: the arrays in .* must be exactly"):
        MultiLayerNetExtend(6, [4], 3, use_batchnorm=True).load_params(path)
    with pytest.raises(FileNotFoundError):
        MultiLayerNet(6, [4], 3).load_params(str(tmp_path / "missing.npz"))


# ----- Sequential -------------------------------------------------------------------------------------------

def test_sequential_numbering_and_train_flag_dispatch():
    seen = []

    class Probe:
        """A user's book-style layer without params: forward(x, train_flg) receives the flag."""

        def forward(self, x, train_flg=False):
            seen.append(train_flg)
            return x

        def backward(self, dout):
            return dout

    conv = L.Convolution(np.ones((2, 1, 3, 3)), np.zeros(2), pad=1)
    ln = L.LayerNormalization(np.ones((2, 2, 2)), np.zeros((2, 2, 2)))
    bn = L.BatchNormalization(np.ones(8), np.zeros(8))
    aff = L.Affine(np.ones((8, 2)) * 0.1, np.zeros(2))
    net = Sequential({"conv": conv, "pool": L.Pooling(2, 2, stride=2), "ln": ln, "probe": Probe(), "bn": bn,
                      "affine": aff}, L.SoftmaxWithLoss())
    assert list(net.params) == ["W1", "b1", "gamma1", "beta1", "gamma2", "beta2", "W2", "b2"]
    assert net.params["gamma2"] is bn.gamma and net.params["W2"] is aff.W
    assert list(net.buffers) == ["running_mean1", "running_var1"]
    x = np.arange(32.0).reshape(2, 1, 4, 4)
    net.predict(x)
    net.gradient(x, np.array([0, 1]))
    assert seen == [False, True]
    assert net.dtype is None and net.predict(x.astype(np.float32)).dtype == np.float64  # no cast: NumPy promotion


@pytest.mark.parametrize("call, exc, prefix", [
    (lambda: Sequential(L.Relu(), L.SoftmaxWithLoss()), TypeError, "Sequential: layers"),
    (lambda: Sequential([L.Relu(), object()], L.SoftmaxWithLoss()), TypeError, "Sequential: layers[1]"),
    (lambda: Sequential([L.Relu()], None), TypeError, "Sequential: loss_layer"),
    (lambda: Sequential([L.Relu()], L.SoftmaxWithLoss(), weight_decay_lambda=-1), ValueError,
     "Sequential: weight_decay_lambda"),
    (lambda: Sequential([L.Relu()], L.SoftmaxWithLoss(), dtype="int32"), TypeError, "Sequential: dtype"),
    (lambda: MultiLayerNet(0, [3], 2), ValueError, "MultiLayerNet: input_size"),
    (lambda: MultiLayerNet(4, [3, -1], 2), ValueError, "MultiLayerNet: hidden_size_list"),
    (lambda: MultiLayerNet(4, [3], 2, activation="softplus"), ValueError, "MultiLayerNet: activation"),
    (lambda: MultiLayerNet(4, [3], 2, weight_init_std="lecun"), ValueError, "MultiLayerNet: weight_init_std"),
    (lambda: MultiLayerNet(4, [3], 2, weight_init_std=-0.1), ValueError, "MultiLayerNet: weight_init_std"),
    (lambda: MultiLayerNet(4, [3], 2, dtype=np.float16), TypeError, "MultiLayerNet: dtype"),
    (lambda: MultiLayerNet(4, [3], 2, seed="0"), TypeError, "MultiLayerNet: seed"),
    (lambda: MultiLayerNetExtend(4, [3], 2, use_dropout=True, dropout_ration=1.5), ValueError,
     "Dropout: dropout_ratio"),
    (lambda: SimpleConvNet(conv_param={"filter_num": 3}), TypeError, "SimpleConvNet: conv_param"),
    (lambda: SimpleConvNet(conv_param=_conv(3, 0)), ValueError, "SimpleConvNet: conv_param['filter_size']"),
    (lambda: SimpleConvNet((1, 4, 4), _conv(3, 7, 1)), ValueError, "SimpleConvNet: conv_param"),
    (lambda: SimpleConvNet((1, 28)), TypeError, "SimpleConvNet: input_dim"),
    (lambda: DeepConvNet((1, 3, 3)), ValueError, "DeepConvNet: conv_param_6"),
    (lambda: DeepConvNet(conv_param_3=_conv(4, stride=0)), ValueError, "DeepConvNet: conv_param_3['stride']"),
    (lambda: MultiLayerNet(4, [3], 2).predict(np.ones((2, 4), complex)), TypeError, "MultiLayerNet.predict: x"),
    (lambda: MultiLayerNet(4, [3], 2).accuracy(np.ones((2, 4)), np.array([0, 2])), ValueError,
     "MultiLayerNet.accuracy: t"),
    (lambda: MultiLayerNet(4, [3], 2).accuracy(np.ones((2, 4)), np.array([0, 1]), batch_size=0), ValueError,
     "MultiLayerNet.accuracy: batch_size"),
    (lambda: MultiLayerNet(4, [3], 2).loss(np.ones((2, 5)), np.array([0, 1])), ValueError, "Affine.forward: x"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_arguments(call, exc, prefix):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(prefix) and " must be " in str(info.value), str(info.value)

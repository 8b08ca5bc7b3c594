"""The conv nets as the book's code uses them: its containers and keys (``layers['Conv1']``, ``layers[0]``), its
``load_params``/``gradient`` patterns on them, and its ``save_params`` pickles read with ``allow_pickle=True``.

The pickles are built here, in the book's format (``pickle.dump`` of a dict of name -> float64 ndarray, what
its ``save_params`` writes); no upstream file is used.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from fastnn import checkpoint
from fastnn import layers as L
from fastnn.nets import DeepConvNet, Sequential, SimpleConvNet

#: Where the book's load_params/gradient find each net's W1, b1, W2, ...: SimpleConvNet's keys (ch07), DeepConvNet's
#: list indices (ch08's ``for i, layer_idx in enumerate((0, 2, 5, 7, 10, 12, 15, 18))``).
OWNERS = {"SimpleConvNet": ("Conv1", "Affine1", "Affine2"), "DeepConvNet": (0, 2, 5, 7, 10, 12, 15, 18)}
NETS = {"SimpleConvNet": SimpleConvNet, "DeepConvNet": DeepConvNet}


def _arrays(net, seed):
    """New float64 values for every parameter, under the net's keys, in its order (as the book's pickles)."""
    rng = np.random.default_rng(seed)
    return {key: 0.1 * rng.standard_normal(p.shape) for key, p in net.params.items()}


def _book_pickle(path, arrays, protocol=None, container=dict):
    """What the book's save_params writes: a dict of name -> ndarray, pickled."""
    with open(path, "wb") as f:
        pickle.dump(container(arrays), f, protocol)
    return path


def _book_style_load(net, arrays, owners):
    """The book's load_params after its pickle.load: rebind params, then each owner layer's W and b."""
    for key, val in arrays.items():
        net.params[key] = val
    for i, owner in enumerate(owners, start=1):
        net.layers[owner].W = net.params[f"W{i}"]
        net.layers[owner].b = net.params[f"b{i}"]


def _from_arrays(name, a):
    """The same architecture assembled from fresh fastnn layers holding copies of ``a`` (no loading involved)."""
    c = {k: v.copy() for k, v in a.items()}
    if name == "SimpleConvNet":
        layers = [L.Convolution(c["W1"], c["b1"]), L.Relu(), L.Pooling(2, 2, stride=2), L.Affine(c["W2"], c["b2"]),
                  L.Relu(), L.Affine(c["W3"], c["b3"])]
    else:
        layers = []
        for i, pad in enumerate((1, 1, 1, 2, 1, 1), start=1):
            layers += [L.Convolution(c[f"W{i}"], c[f"b{i}"], 1, pad), L.Relu()]
            if i % 2 == 0:
                layers.append(L.Pooling(2, 2, stride=2))
        layers += [L.Affine(c["W7"], c["b7"]), L.Relu(), L.Dropout(0.5), L.Affine(c["W8"], c["b8"]), L.Dropout(0.5)]
    layers[0].need_dx = False  # as the nets set their first layer: the same kernels compute the same gradients
    return Sequential(layers, L.SoftmaxWithLoss())


def _x(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28)), rng.integers(0, 10, n)


def test_simple_convnet_layers_are_the_books_ordered_dict():
    net = SimpleConvNet(seed=0)
    assert type(net.layers) is OrderedDict  # noqa: E721 -- the book's exact container
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    for i, key in enumerate(OWNERS["SimpleConvNet"], start=1):
        assert net.layers[key].W is net.params[f"W{i}"] and net.layers[key].b is net.params[f"b{i}"]
    assert net.layers["Conv1"].W.shape == (30, 1, 5, 5)  # what ch07/visualize_filter.py-style code reads
    # the book's predict: every layer of layers.values() in turn
    x, t = _x()
    out = x
    for layer in net.layers.values():
        out = layer.forward(out)
    np.testing.assert_array_equal(out, net.predict(x))
    # the book's gradient: the grads are the owner layers' dW, db after a backward pass
    grads = net.gradient(x, t)
    assert list(grads) == ["W1", "b1", "W2", "b2", "W3", "b3"] == list(net.params)
    for i, key in enumerate(OWNERS["SimpleConvNet"], start=1):
        assert grads[f"W{i}"] is net.layers[key].dW and grads[f"b{i}"] is net.layers[key].db


def test_deep_convnet_layers_are_the_books_list():
    net = DeepConvNet(seed=0)
    assert type(net.layers) is list and len(net.layers) == 20  # noqa: E721 -- the book's exact container
    assert [i for i, layer in enumerate(net.layers) if isinstance(layer, L.Pooling)] == [4, 9, 14]
    assert [i for i, layer in enumerate(net.layers) if isinstance(layer, L.Dropout)] == [17, 19]
    x, t = _x(2)
    grads = net.gradient(x, t)
    assert list(grads) == [f"{n}{i}" for i in range(1, 9) for n in ("W", "b")] == list(net.params)
    for i, idx in enumerate(OWNERS["DeepConvNet"], start=1):
        assert net.layers[idx].W is net.params[f"W{i}"]
        assert grads[f"W{i}"] is net.layers[idx].dW and grads[f"b{i}"] is net.layers[idx].db


@pytest.mark.parametrize("name", sorted(NETS))
def test_books_load_params_pattern_then_training_and_saving_work(name, tmp_path):
    """Rebinding ``net.params[key]`` and ``net.layers[owner].W`` as the book's load_params does leaves a net that
    predicts, trains and saves with the new arrays."""
    net = NETS[name](seed=1)
    arrays = _arrays(net, seed=2)
    _book_style_load(net, arrays, OWNERS[name])
    for key in arrays:
        assert net.params[key] is arrays[key]
    x, t = _x()
    reference = _from_arrays(name, arrays)
    np.testing.assert_array_equal(net.predict(x), reference.predict(x))
    grads = net.gradient(x, t)
    for key in arrays:  # the gradients of the rebound arrays
        assert grads[key].shape == arrays[key].shape
    if name == "SimpleConvNet":  # (DeepConvNet's gradient draws dropout masks)
        np.testing.assert_array_equal(grads["W1"], reference.gradient(x, t)["W1"])
    for key in net.params:
        net.params[key] -= 0.01 * grads[key]  # the optimizer's in-place update reaches the layers
    assert net.layers[OWNERS[name][0]].W is arrays["W1"]
    net.save_params(tmp_path / "p.npz")
    other = NETS[name](seed=3)
    other.load_params(tmp_path / "p.npz")
    np.testing.assert_array_equal(other.predict(x), net.predict(x))


@pytest.mark.parametrize("protocol, container", [(None, dict), (2, dict), (4, OrderedDict),
                                                 (pickle.HIGHEST_PROTOCOL, dict)], ids=["default", "2", "4-od", "5"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_load_params_reads_the_books_pickle_with_allow_pickle(name, protocol, container, tmp_path):
    net = NETS[name](seed=4)
    arrays = _arrays(net, seed=5)
    arrays["W2"] = np.asfortranarray(arrays["W2"])  # any memory layout the pickle holds
    path = _book_pickle(tmp_path / "params.pkl", arrays, protocol, container)
    before = {key: p for key, p in net.params.items()}
    net.load_params(str(path), allow_pickle=True)
    for key in arrays:
        assert net.params[key] is before[key]  # copied in place, as from .npz
        np.testing.assert_array_equal(net.params[key], arrays[key])
    x, _ = _x(4, seed=6)
    built = _from_arrays(name, arrays)
    np.testing.assert_array_equal(net.predict(x), built.predict(x))
    booked = NETS[name](seed=7)
    # (C order: BLAS rounds a product with a Fortran-ordered W2 differently, in the book as here)
    _book_style_load(booked, {k: np.ascontiguousarray(v) for k, v in arrays.items()}, OWNERS[name])
    np.testing.assert_array_equal(net.predict(x), booked.predict(x))
    assert np.abs(net.predict(x)).max() > 1e-3  # not vacuous


def test_pickles_are_refused_without_opt_in_and_the_message_says_how(tmp_path):
    net = SimpleConvNet(seed=0)
    path = _book_pickle(tmp_path / "params.pkl", _arrays(net, seed=1))
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match=r"^SimpleConvNet.load_params: the file .*params.pkl' must be an .npz "
                                         r"archive .*allow_pickle=True.*got a pickle"):
        net.load_params(path)
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])
    with pytest.raises(ValueError, match="no pickle"):  # the lower-level reader has no opt-in at all
        checkpoint.load_arrays(path)
    # .npz files load the same with or without the opt-in
    net.save_params(tmp_path / "p.npz")
    SimpleConvNet(seed=9).load_params(tmp_path / "p.npz", allow_pickle=True)
    with pytest.raises(TypeError, match="^SimpleConvNet.load_params: allow_pickle must be True or False"):
        net.load_params(path, allow_pickle="yes")


class _Evil:
    """Unpickling this calls os.mkdir: what a hostile 'params.pkl' could do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def _bad_pickles(net, tmp_path):
    good = _arrays(net, seed=1)
    wrong_shape = {**good, "W2": np.zeros((10, 100))}
    missing = {k: v for k, v in good.items() if k != "b3"}
    extra = {**good, "W4": np.zeros(3)}
    as_float32 = {k: v.astype(np.float32) for k, v in good.items()}
    not_array = {**good, "b1": good["b1"].tolist()}
    return [
        ("shape", wrong_shape, r"'W2' in .* must be of shape \(4320, 100\) and dtype float64, got shape \(10, 100\)"),
        ("missing", missing, r"the arrays in .* must be exactly the keys .*missing \['b3'\]"),
        ("extra", extra, r"the arrays in .* must be exactly the keys .*unexpected \['W4'\]"),
        ("dtype", as_float32, r"'W1' in .* dtype float64, got shape \(30, 1, 5, 5\) and dtype float32"),
        ("not an array", not_array, r"'b1' in .* must be an ndarray of a plain \(non-object\) dtype, got list"),
        ("not a dict", list(good.values()), r"the file .* must be a pickled dict of name -> ndarray .*got a "
                                            r"pickled list"),
        ("code", {**good, "W1": _Evil(str(tmp_path / "pwned"))}, r"the file .* must be a pickled dict of name -> "
                                                                  r"ndarray .*refused pickle .*refers to \w+\.mkdir"),
    ]


@pytest.mark.parametrize("case", range(7), ids=["shape", "missing", "extra", "dtype", "not-array", "not-dict",
                                                "code"])
def test_bad_book_pickles_are_refused_before_anything_is_written(case, tmp_path):
    net = SimpleConvNet(seed=0)
    label, content, message = _bad_pickles(net, tmp_path)[case]
    path = tmp_path / "params.pkl"
    with open(path, "wb") as f:
        pickle.dump(content, f)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match="^SimpleConvNet.load_params: " + message):
        net.load_params(path, allow_pickle=True)
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key], err_msg=label)
    assert not (tmp_path / "pwned").exists()  # the hostile callable was never looked up, let alone called


def test_truncated_pickle_and_float32_net(tmp_path):
    net = SimpleConvNet(seed=0)
    data = pickle.dumps(_arrays(net, seed=1))
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="^SimpleConvNet.load_params: the file .* unreadable or refused pickle"):
        net.load_params(tmp_path / "cut.pkl", allow_pickle=True)
    # the book's pickles are float64: a float32 net refuses them (dtype checked), a float64 one reads them
    path = _book_pickle(tmp_path / "params.pkl", _arrays(net, seed=1))
    with pytest.raises(ValueError, match="must be of shape .* and dtype float32, got .* dtype float64"):
        SimpleConvNet(dtype=np.float32, seed=0).load_params(path, allow_pickle=True)
    with pytest.raises(FileNotFoundError):
        net.load_params(tmp_path / "missing.pkl", allow_pickle=True)


def test_layers_are_read_once_a_replaced_layer_object_is_not_used():
    """Documented difference (README, Fidelity): a net reads its layer objects when it is built. Rebinding a
    layer's arrays later is seen (the book's load_params); putting another object into ``net.layers`` is not, where
    the book's loop over ``self.layers.values()`` would call it."""
    net = SimpleConvNet(input_dim=(1, 8, 8), conv_param={"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1},
                        hidden_size=5, output_size=3)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    before = net.predict(x)
    net.layers["Affine2"].b = np.full(3, 7.0)  # rebinding an array: seen
    np.testing.assert_allclose(net.predict(x), before + 7.0, rtol=1e-12)
    net.layers["Relu2"] = L.Sigmoid()  # another object: not used
    np.testing.assert_allclose(net.predict(x), before + 7.0, rtol=1e-12)

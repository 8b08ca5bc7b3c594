"""What every layer promises beyond its numbers: the book's attributes, params/grads identity, inputs left alone,
any memory layout, NumPy promotion, empty batches, and the book-specific semantics of Dropout, BatchNormalization
and SoftmaxWithLoss."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import layers as L
from tests.layers.cases import CASES, make_dout, run

PARAMETRIC = sorted(n for n in CASES if CASES[n](np.dtype(np.float64), np.random.default_rng(0)).layer.params)


def _build(name, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    built = CASES[name](np.dtype(dtype), rng)
    return built, make_dout(built, np.dtype(dtype), rng)


@pytest.mark.parametrize("name", [n for n in PARAMETRIC if n != "batchnorm_infer"])
def test_params_and_grads_are_the_attributes(name):
    built, dout = _build(name)
    layer = built.layer
    for key, p in layer.params.items():
        assert getattr(layer, key) is p
        assert layer.grads[key] is None and getattr(layer, "d" + key) is None
    held = layer.grads  # e.g. a trainer keeping the dict across steps
    run(built, dout)
    first = {k: g for k, g in held.items()}
    for key in layer.params:
        assert held[key] is getattr(layer, "d" + key)
        assert held[key].shape == layer.params[key].shape
    run(built, 2 * dout)
    for key in layer.params:
        assert held[key] is getattr(layer, "d" + key)
        assert held[key] is not first[key]
        np.testing.assert_allclose(held[key], 2 * first[key], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", PARAMETRIC)
def test_in_place_update_and_rebinding_reach_the_layer(name):
    built, dout = _build(name)
    layer = built.layer
    key = next(iter(layer.params))
    before = layer.forward(**built.inputs).copy()
    layer.params[key] += 0.5  # what an optimizer does
    after = layer.forward(**built.inputs)
    assert not np.allclose(before, after)
    new = layer.params[key] - 0.5
    setattr(layer, key, new)  # what the book's load_params does
    assert layer.params[key] is new
    np.testing.assert_allclose(layer.forward(**built.inputs), before, rtol=1e-12, atol=1e-12)


def test_constructor_keeps_the_callers_arrays():
    W, b = np.ones((3, 2)), np.zeros(2)
    layer = L.Affine(W, b)
    assert layer.W is W and layer.b is b and layer.params == {"W": W, "b": b}
    gamma, beta = np.ones(4, np.float32), np.zeros(4, np.float32)
    bn = L.BatchNormalization(gamma, beta)
    assert bn.gamma is gamma and bn.beta is beta


@pytest.mark.parametrize("name", sorted(CASES))
def test_inputs_are_not_modified(name):
    built, dout = _build(name)
    inputs = {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v for k, v in built.inputs.items()}
    params = {k: p.copy() for k, p in built.layer.params.items()}
    dout_copy = np.array(dout, copy=True)
    run(built, dout)
    for k, v in inputs.items():
        np.testing.assert_array_equal(built.inputs[k], v)
    for k, p in params.items():
        np.testing.assert_array_equal(built.layer.params[k], p)
    np.testing.assert_array_equal(dout, dout_copy)


def test_relu_backward_leaves_dout_alone():
    """The book's Relu.backward zeroes dout in place; fastnn's returns a new array."""
    layer = L.Relu()
    layer.forward(np.array([-1.0, 2.0, -3.0]))
    dout = np.array([5.0, 6.0, 7.0])
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dout, [5.0, 6.0, 7.0])
    np.testing.assert_array_equal(dx, [0.0, 6.0, 0.0])


def _scrambled(a):
    """The same values in a non-contiguous array (every other element of a larger buffer)."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype) if a.ndim else np.zeros(2, a.dtype)
    view = big[..., ::2] if a.ndim else big[:1].reshape(())
    view[...] = a
    return view


@pytest.mark.parametrize("name", sorted(CASES))
def test_non_contiguous_inputs(name):
    built, dout = _build(name)
    out, dx = run(built, dout)
    want_grads = {k: np.copy(g) for k, g in built.layer.grads.items() if g is not None}
    built2, _ = _build(name)
    built2.inputs = {k: _scrambled(v) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
                     for k, v in built2.inputs.items()}
    assert not built2.inputs["x"].flags.c_contiguous
    dout2 = _scrambled(dout) if isinstance(dout, np.ndarray) else dout
    out2, dx2 = run(built2, dout2)
    np.testing.assert_allclose(out2, out, rtol=1e-13, atol=1e-14)
    if dx is not None:
        np.testing.assert_allclose(dx2, dx, rtol=1e-13, atol=1e-14)
    for k, g in want_grads.items():
        np.testing.assert_allclose(built2.layer.grads[k], g, rtol=1e-13, atol=1e-14)


def test_integer_and_bool_inputs_promote_as_numpy():
    out = L.Relu().forward(np.array([[-2, 3]]))
    assert out.dtype == np.float64 and out.tolist() == [[0.0, 3.0]]
    assert L.Sigmoid().forward(np.array([True, False])).dtype == np.float64
    W32 = np.ones((2, 3), np.float32)
    affine = L.Affine(W32, np.zeros(3, np.float32))
    out = affine.forward(np.array([[1, 2]], np.int64))
    assert out.dtype == np.result_type(np.int64, np.float32) == np.float64
    assert out.tolist() == [[3.0, 3.0, 3.0]]
    conv = L.Convolution(np.ones((1, 1, 2, 2), np.float32), np.zeros(1, np.float32))
    out = conv.forward(np.arange(9, dtype=np.int32).reshape(1, 1, 3, 3))
    assert out.dtype == np.float64 and out.ravel().tolist() == [8.0, 12.0, 20.0, 24.0]
    # float32 inputs through float32 parameters stay float32
    assert affine.forward(np.ones((1, 2), np.float32)).dtype == np.float32


@pytest.mark.parametrize("layer, shape, out_shape", [
    (L.Relu(), (0, 3), (0, 3)),
    (L.Affine(np.ones((6, 2)), np.zeros(2)), (0, 2, 3), (0, 2)),
    (L.Convolution(np.ones((2, 1, 3, 3)), np.zeros(2), pad=1), (0, 1, 4, 4), (0, 2, 4, 4)),
    (L.Pooling(2, 2, stride=2), (0, 3, 4, 4), (0, 3, 2, 2)),
    (L.AvgPooling(2, 2, stride=2), (0, 3, 4, 4), (0, 3, 2, 2)),
    (L.Dropout(0.5, seed=1), (0, 3), (0, 3)),
], ids=["Relu", "Affine", "Convolution", "Pooling", "AvgPooling", "Dropout"])
def test_empty_batch(layer, shape, out_shape):
    out = layer.forward(np.zeros(shape))
    assert out.shape == out_shape
    assert layer.backward(np.zeros(out_shape)).shape == shape


def test_book_attribute_names():
    affine = L.Affine(np.ones((6, 2)), np.zeros(2))
    affine.forward(np.ones((3, 2, 3)))
    affine.backward(np.ones((3, 2)))
    assert affine.original_x_shape == (3, 2, 3) and affine.x.shape == (3, 6)
    assert affine.dW.shape == (6, 2) and affine.db.shape == (2,)
    conv = L.Convolution(np.ones((2, 1, 3, 3)), np.zeros(2), stride=1, pad=1)
    assert (conv.stride, conv.pad) == (1, 1)
    pool = L.Pooling(pool_h=2, pool_w=2, stride=2)
    pool.forward(np.arange(16.0).reshape(1, 1, 4, 4))
    assert (pool.pool_h, pool.pool_w, pool.stride, pool.pad) == (2, 2, 2, 0)
    assert pool.arg_max.ravel().tolist() == [3, 3, 3, 3]
    sig = L.Sigmoid()
    assert sig.forward(np.zeros(2)) is sig.out
    loss = L.SoftmaxWithLoss()
    value = loss.forward(np.zeros((2, 4)), np.array([1, 2]))
    assert loss.loss == value and loss.y.shape == (2, 4) and loss.t.tolist() == [1, 2]
    drop = L.Dropout(0.25)
    assert drop.dropout_ratio == 0.25 and drop.mask is None
    bn = L.BatchNormalization(np.ones(3), np.zeros(3))
    bn.forward(np.arange(6.0).reshape(2, 3))
    assert bn.momentum == 0.9 and bn.input_shape == (2, 3)
    assert bn.running_mean.shape == bn.running_var.shape == (3,)


@pytest.mark.parametrize("cls, reduce", [(L.Pooling, np.max), (L.AvgPooling, np.mean)], ids=["max", "avg"])
def test_pooling_default_stride_is_the_books(cls, reduce):
    """The book's current signature is Pooling(pool_h, pool_w, stride=2, pad=0) (upstream commit "Change
    Pooling's stride 2 from 1"); its output size is int(1 + (H - pool_h) / stride): here 3 x 2, the last row
    and column left out. AvgPooling (not in the book) has the same defaults."""
    x = np.random.default_rng(0).permutation(2 * 3 * 7 * 5).astype(np.float64).reshape(2, 3, 7, 5)
    layer = cls(2, 2)
    assert (layer.stride, layer.pad) == (2, 0)
    out = layer.forward(x)
    book_oh, book_ow = int(1 + (7 - 2) / 2), int(1 + (5 - 2) / 2)
    assert out.shape == (2, 3, book_oh, book_ow) == (2, 3, 3, 2)
    want = np.array([[[[reduce(x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]) for j in range(2)] for i in range(3)]
                      for c in range(3)] for n in range(2)])
    np.testing.assert_array_equal(out, want)
    assert layer.backward(np.ones_like(out)).shape == x.shape
    # stride=1, the default of the book's first printings, must now be asked for
    assert L.Pooling(2, 2, stride=1).forward(np.arange(9.0).reshape(1, 1, 3, 3)).ravel().tolist() == [4, 5, 7, 8]


# ----- Dropout -----------------------------------------------------------------------------------------------

def test_dropout_masks_reproducible_from_seed_and_fresh_each_step():
    x = np.ones((50, 40))
    a, b = L.Dropout(0.3, seed=5), L.Dropout(0.3, seed=5)
    first = a.forward(x)
    np.testing.assert_array_equal(first, b.forward(x))
    second = a.forward(x)
    assert not np.array_equal(first, second)  # one seed draw per training forward
    assert a.mask.dtype == np.bool_ and a.mask.shape == x.shape
    keep = a.mask.mean()
    assert abs(keep - 0.7) < 0.03


def test_dropout_seed_none_follows_np_random_seed():
    x = np.ones((20, 20))
    np.random.seed(123)  # noqa: NPY002 -- the global state is what seed=None means
    m1 = L.Dropout(0.5).forward(x)
    np.random.seed(123)  # noqa: NPY002 -- the global state is what seed=None means
    m2 = L.Dropout(0.5).forward(x)
    np.testing.assert_array_equal(m1, m2)


def test_dropout_shared_generator_is_one_stream():
    g = np.random.default_rng(9)
    a, b = L.Dropout(0.5, seed=g), L.Dropout(0.5, seed=g)
    x = np.ones(64)
    ma, mb = a.forward(x), b.forward(x)
    assert not np.array_equal(ma, mb)
    g2 = np.random.default_rng(9)
    np.testing.assert_array_equal(ma, L.Dropout(0.5, seed=g2).forward(x))
    np.testing.assert_array_equal(mb, L.Dropout(0.5, seed=g2).forward(x))


def test_dropout_not_inverted_as_the_book():
    x = np.arange(1.0, 101.0)
    layer = L.Dropout(0.2, seed=0)
    out = layer.forward(x, train_flg=True)
    np.testing.assert_array_equal(out, np.where(layer.mask, x, 0.0))  # kept values are not rescaled
    np.testing.assert_array_equal(layer.backward(np.ones(100)), layer.mask.astype(float))
    out = layer.forward(x, train_flg=False)
    np.testing.assert_array_equal(out, x * 0.8)
    np.testing.assert_array_equal(layer.backward(np.ones(100)), np.full(100, 0.8))
    x32 = np.ones(4, np.float32)
    assert layer.forward(x32, train_flg=False).dtype == np.float32


def test_dropout_ratio_zero_keeps_everything():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(L.Dropout(0.0, seed=1).forward(x), x)


# ----- BatchNormalization --------------------------------------------------------------------------------------

def test_batchnorm_running_statistics_as_the_book():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3)) * 2 + 1
    start_mean, start_var = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])
    given_mean, given_var = start_mean.copy(), start_var.copy()
    layer = L.BatchNormalization(np.ones(3), np.zeros(3), momentum=0.7, running_mean=given_mean,
                                 running_var=given_var)
    out = layer.forward(x, train_flg=True)
    np.testing.assert_allclose(layer.running_mean, 0.7 * start_mean + 0.3 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, 0.7 * start_var + 0.3 * x.var(0), rtol=1e-12)
    np.testing.assert_array_equal(given_mean, start_mean)  # the caller's arrays are never written
    np.testing.assert_array_equal(given_var, start_var)
    np.testing.assert_allclose(out, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-6), rtol=1e-10, atol=1e-12)
    infer = layer.forward(x, train_flg=False)
    np.testing.assert_allclose(infer, (x - layer.running_mean) / np.sqrt(layer.running_var + 1e-6), rtol=1e-12)


def test_batchnorm_default_running_stats_and_dtype():
    layer = L.BatchNormalization(np.ones(4, np.float32), np.zeros(4, np.float32))
    assert layer.running_mean.dtype == layer.running_var.dtype == np.float32
    assert not layer.running_mean.any() and not layer.running_var.any()  # zeros, as the book
    assert layer.eps == 1e-6  # the book's 10e-7
    assert layer.buffers == {"running_mean": layer.running_mean, "running_var": layer.running_var}


def test_batchnorm_4d_layouts():
    """gamma of C entries: per channel over (N, H, W); of C*H*W: per feature of the flattened input (book)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 2, 2))
    per_channel = L.BatchNormalization(np.ones(3), np.zeros(3)).forward(x)
    mean, var = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(per_channel, (x - mean) / np.sqrt(var + 1e-6), rtol=1e-10, atol=1e-12)
    per_feature = L.BatchNormalization(np.ones(12), np.zeros(12)).forward(x)
    flat = x.reshape(4, 12)
    want = ((flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-6)).reshape(x.shape)
    np.testing.assert_allclose(per_feature, want, rtol=1e-10, atol=1e-12)


# ----- SoftmaxWithLoss --------------------------------------------------------------------------------------------

def test_softmax_with_loss_close_to_the_books_formula():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4)) * 3
    t = rng.integers(0, 4, 5)
    y = np.exp(x - x.max(1, keepdims=True))
    y /= y.sum(1, keepdims=True)
    book_loss = -np.sum(np.log(y[np.arange(5), t] + 1e-7)) / 5
    layer = L.SoftmaxWithLoss()
    loss = layer.forward(x, t)
    assert isinstance(loss, np.float64) and np.ndim(loss) == 0
    # the book's loss by default, 1e-7 inside the log (SoftmaxWithLoss(exact=True): the log-softmax)
    assert loss == pytest.approx(book_loss, rel=1e-14)
    book_dx = y.copy()
    book_dx[np.arange(5), t] -= 1
    np.testing.assert_allclose(layer.backward(), book_dx / 5, rtol=1e-12, atol=1e-15)
    onehot = L.SoftmaxWithLoss()
    assert onehot.forward(x, np.eye(4)[t]) == loss
    np.testing.assert_array_equal(onehot.backward(), layer.backward())
    loss32 = L.SoftmaxWithLoss().forward(x.astype(np.float32), t)
    assert loss32.dtype == np.float32


def test_first_conv_layer_of_the_book_convnets_skips_dx_and_others_do_not():
    from fastnn.layers import Convolution
    from fastnn.nets import DeepConvNet, SimpleConvNet

    for net in (SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 2, "filter_size": 3, "pad": 0,
                                                                   "stride": 1}, hidden_size=5, seed=0),
                DeepConvNet(seed=0)):
        layers = net.layers.values() if isinstance(net.layers, dict) else net.layers
        convs = [layer for layer in layers if isinstance(layer, Convolution)]
        assert [c.need_dx for c in convs] == [False] + [True] * (len(convs) - 1)
    layer = convs[0]
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28))
    out = layer.forward(x)
    assert layer.backward(np.ones_like(out)) is None
    layer.need_dx = True
    assert layer.backward(np.ones_like(out)).shape == x.shape


def test_first_affine_of_the_multilayer_nets_skips_dx_with_the_same_grads():
    """MultiLayerNet(Extend)'s first Affine computes no input gradient; dW and db are those of a layer that does."""
    from fastnn.layers import Affine
    from fastnn.nets import MultiLayerNet, MultiLayerNetExtend

    for net in (MultiLayerNet(6, [4, 3], 2, seed=0), MultiLayerNetExtend(6, [4], 2, use_batchnorm=True, seed=0)):
        affines = [layer for layer in net.layers.values() if isinstance(layer, Affine)]
        assert [a.need_dx for a in affines] == [False] + [True] * (len(affines) - 1)
    rng = np.random.default_rng(0)
    W, b, x = rng.standard_normal((6, 4)), rng.standard_normal(4), rng.standard_normal((3, 2, 3))
    dout = rng.standard_normal((3, 4))
    full, skip = Affine(W, b), Affine(W, b)
    skip.need_dx = False
    for layer in (full, skip):
        layer.forward(x)
    assert full.backward(dout).shape == x.shape and skip.backward(dout) is None
    np.testing.assert_array_equal(skip.dW, full.dW)
    np.testing.assert_array_equal(skip.db, full.db)


def test_number_bias_broadcasts_as_the_books():
    """ch07/apply_filter.py builds ``Convolution(w, 0)`` from one trained filter and a float32 image: a number
    bias is that value for every output, as the book's ``+ self.b`` broadcast gives (Affine alike)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((1, 1, 5, 5))
    img = rng.random((1, 1, 12, 10), dtype=np.float32)
    for b in (0, 0.5, np.float32(-1.5)):
        out = L.Convolution(w, b).forward(img)
        expected = L.Convolution(w, np.full(1, b, dtype=np.float64)).forward(img)
        assert out.dtype == np.float64 and out.shape == (1, 1, 8, 6)
        np.testing.assert_array_equal(out, expected)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    layer = L.Affine(W, 2)
    assert layer.b.dtype == np.float32 and layer.b.shape == (3,) and (layer.b == 2).all()
    np.testing.assert_array_equal(layer.forward(np.ones((2, 4), np.float32)), np.ones((2, 4), np.float32) @ W + 2)
    with pytest.raises(TypeError, match="Convolution: b must be a float32 or float64 ndarray"):
        L.Convolution(w, True)
    with pytest.raises(TypeError, match="Affine: b must be a float32 or float64 ndarray"):
        L.Affine(W, "0")

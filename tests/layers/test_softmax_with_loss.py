"""SoftmaxWithLoss against the book's ``common/functions.py`` and ``common/layers.py`` (formulas written here).

The book: ``y = softmax(x)``; ``cross_entropy_error(y, t) = -sum(log(y[arange(N), t] + 1e-7)) / N`` (one-hot t
converted by argmax; a 1-D y and its t reshaped to one row); ``backward = (y - t) / N``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.layers as L
from fastnn.nets import MultiLayerNetExtend


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _book_loss(x, t):
    """The book's softmax + cross_entropy_error for (N, C) scores and (N,) index labels."""
    y = _softmax(x)
    return -np.sum(np.log(y[np.arange(x.shape[0]), t] + 1e-7)) / x.shape[0]


def _book_dx(x, t):
    dx = _softmax(x)
    dx[np.arange(x.shape[0]), t] -= 1
    return dx / x.shape[0]


def _data(n=6, c=5, scale=8.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)) * scale, rng.integers(0, c, n)


def test_default_is_the_books_loss_and_gradient():
    x, t = _data()
    layer = L.SoftmaxWithLoss()
    loss = layer.forward(x, t)
    assert isinstance(loss, np.float64) and np.ndim(loss) == 0
    assert loss == pytest.approx(_book_loss(x, t), rel=1e-14)
    np.testing.assert_allclose(layer.backward(), _book_dx(x, t), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(layer.backward(2.0), 2 * _book_dx(x, t), rtol=1e-13, atol=1e-16)  # dout is applied
    assert layer.y.shape == x.shape and layer.t.tolist() == t.tolist() and layer.loss == loss
    loss32 = L.SoftmaxWithLoss().forward(x.astype(np.float32), t)
    assert loss32.dtype == np.float32 and loss32 == pytest.approx(_book_loss(x, t), rel=1e-5)


def test_exact_is_the_log_softmax_without_the_delta():
    x, t = _data()
    layer = L.SoftmaxWithLoss(exact=True)
    assert layer.exact is True and L.SoftmaxWithLoss().exact is False
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    assert layer.forward(x, t) == pytest.approx(np.mean(lse - x[np.arange(6), t]), rel=1e-14)
    np.testing.assert_allclose(layer.backward(), _book_dx(x, t), rtol=1e-13, atol=1e-16)  # same gradient
    sure = np.array([[40.0, 0.0]])
    assert 0 <= L.SoftmaxWithLoss(exact=True).forward(sure, [0]) < 1e-15
    assert L.SoftmaxWithLoss().forward(sure, [0]) == pytest.approx(-np.log(1 + 1e-7), rel=1e-9)
    with pytest.raises(TypeError):
        L.SoftmaxWithLoss(True)  # keyword-only: the book's constructor takes no argument


def test_untrained_batchnorm_net_with_large_weights_has_the_books_capped_loss():
    """The chapter-6 weight-scale experiment: before training, batch norm in inference mode uses running
    statistics 0 and 0, so scores of a 5x100 net are ~1e20. The book's loss caps each sample at -log(1e-7)."""
    rng = np.random.default_rng(1)
    x, t = rng.random((100, 784)), rng.integers(0, 10, 100)
    net = MultiLayerNetExtend(784, [100] * 5, 10, weight_init_std=1.0, use_batchnorm=True, seed=0)
    loss = net.loss(x, t)  # the net's own SoftmaxWithLoss(): the default
    scores = net.predict(x)
    assert loss == pytest.approx(_book_loss(scores, t), rel=1e-14)
    assert 10 < loss < -np.log(1e-7)  # measured 14.83 (fastnn before: 4.1e20, the exact cross-entropy)
    assert L.SoftmaxWithLoss(exact=True).forward(scores, t) > 1e8
    grads = net.gradient(x, t)
    assert all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("form", ["indices", "column", "one-hot", "one-hot float32"])
def test_label_forms_of_cross_entropy_error(form):
    x, t = _data()
    labels = {"indices": t, "column": t.reshape(-1, 1), "one-hot": np.eye(5)[t],
              "one-hot float32": np.eye(5, dtype=np.float32)[t]}[form]
    layer = L.SoftmaxWithLoss()
    assert layer.forward(x, labels) == pytest.approx(_book_loss(x, t), rel=1e-14)
    np.testing.assert_allclose(layer.backward(), _book_dx(x, t), rtol=1e-13, atol=1e-16)
    assert layer.t.tolist() == t.tolist()


def test_column_labels_are_indices_not_the_books_broadcast():
    """Fixed upstream bug: the book's ``y[np.arange(N), t]`` with t of shape (N, 1) picks an (N, N) block, so
    its loss mixes every sample with every label; fastnn reads the column as N labels."""
    x, t = _data()
    y = _softmax(x)
    book_buggy = -np.sum(np.log(y[np.arange(6), t.reshape(-1, 1)] + 1e-7)) / 6
    loss = L.SoftmaxWithLoss().forward(x, t.reshape(-1, 1))
    assert loss == pytest.approx(_book_loss(x, t), rel=1e-14)
    assert abs(loss - book_buggy) > 1.0


def test_gradient_check_labels_of_ch07():
    """ch07/gradient_check.py: one sample, ``t = np.array([1]).reshape(1, 1)``; here N = 1 the book's indexing is
    right, and fastnn gives its numbers."""
    x = np.random.default_rng(2).standard_normal((1, 10))
    t = np.array([1]).reshape(1, 1)
    layer = L.SoftmaxWithLoss()
    assert layer.forward(x, t) == pytest.approx(-np.log(_softmax(x)[0, 1] + 1e-7), rel=1e-14)
    np.testing.assert_allclose(layer.backward(), _book_dx(x, [1]), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("label", [np.int64(3), np.array(3), 3, np.array([3]), np.array([[3]]),
                                   np.eye(5)[3], np.eye(5)[3].reshape(1, 5), np.array([3.0])],
                         ids=["np.int64", "0-d", "int", "(1,)", "(1, 1)", "one-hot (C,)", "one-hot (1, C)",
                              "float index"])
def test_one_sample_with_1d_scores(label):
    """cross_entropy_error with a 1-D y reshapes y and t to one row: t an index or C one-hot values."""
    x = np.random.default_rng(3).standard_normal(5) * 4
    layer = L.SoftmaxWithLoss()
    loss = layer.forward(x, label)
    assert loss == pytest.approx(-np.log(_softmax(x)[3] + 1e-7), rel=1e-14)
    assert layer.y.shape == (5,)
    dx = layer.backward()
    # the book's backward divides a one-hot 1-D sample by t.shape[0] = C (and fails on an index); fastnn: by N = 1
    assert dx.shape == (5,)
    np.testing.assert_allclose(dx, _softmax(x) - np.eye(5)[3], rtol=1e-13, atol=1e-16)


BAD_LABELS = [
    ("index out of range", np.zeros((3, 4)), np.array([0, 4, 1]), ValueError, r"t must be labels in \[0, 4\)"),
    ("negative index", np.zeros((3, 4)), np.array([0, -1, 1]), ValueError, r"t must be labels in \[0, 4\)"),
    ("column out of range", np.zeros((3, 4)), np.array([[0], [9], [1]]), ValueError, r"t must be labels in"),
    ("wrong N", np.zeros((3, 4)), np.array([0, 1]), ValueError, r"t must be of shape \(3,\) to match 3 samples"),
    ("wrong N column", np.zeros((3, 4)), np.array([[0], [1]]), ValueError, r"t must be one-hot of shape \(3, 4\)"),
    ("floats not one-hot", np.zeros((3, 4)), np.full((3, 4), 0.25), ValueError, "t must be one-hot rows"),
    ("fractional index", np.zeros((3, 4)), np.array([0.5, 1.0, 2.0]), ValueError, "t must be whole-number"),
    ("one sample, wrong size", np.zeros(4), np.array([0, 1]), ValueError,
     r"t must be a class index or 4 one-hot values for one sample x of shape \(4,\), got shape \(2,\)"),
    ("one sample, index out of range", np.zeros(4), np.array(4), ValueError, r"t must be labels in \[0, 4\)"),
    ("one sample, not one-hot", np.zeros(4), np.full(4, 0.25), ValueError, "t must be one-hot rows"),
    ("bool", np.zeros((2, 3)), np.array([True, False]), TypeError, "t must be integer class labels"),
    ("str", np.zeros(3), "1", TypeError, "t must be integer class labels"),
]


@pytest.mark.parametrize("x, t, exc, msg", [b[1:] for b in BAD_LABELS], ids=[b[0] for b in BAD_LABELS])
def test_bad_labels_keep_clear_errors(x, t, exc, msg):
    layer = L.SoftmaxWithLoss()
    with pytest.raises(exc, match="^SoftmaxWithLoss.forward: " + msg):
        layer.forward(x, t)
    assert layer.y is None and layer.t is None and layer.loss is None


def test_ch07_gradient_check_script_runs():
    """ch07/gradient_check.py's calls: SimpleConvNet on one 10x10 image with ``T = np.array([1]).reshape((1, 1))``.

    Measured against the book's own script with the same weights: loss identical, backprop within 3e-16, and the
    mean |numerical - backprop| per parameter the book prints agreeing to 3 digits (W1 1.09e-6, b1 7.88e-6 ...).
    """
    from fastnn.nets import SimpleConvNet

    net = SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1},
                        hidden_size=10, output_size=10, weight_init_std=0.01, seed=0)
    x = np.random.default_rng(4).random(100).reshape((1, 1, 10, 10))
    t = np.array([1]).reshape((1, 1))
    assert net.loss(x, t) == pytest.approx(_book_loss(net.predict(x), [1]), rel=1e-14)
    grad_num = net.numerical_gradient(x, t)
    grad = net.gradient(x, t)
    for key in grad:  # the means the script prints: the book's are 1e-6 (W1, b1) to 5e-11 (W2) with its weights
        assert np.abs(grad_num[key] - grad[key]).mean() < 2e-5, key
    assert np.abs(grad["W3"]).max() > 1e-3

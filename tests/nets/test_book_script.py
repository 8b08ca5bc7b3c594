"""A program in the book's style runs unchanged with its layers swapped for fastnn's by import alone, and gives
the same numbers.

The program (tests/nets/book_style) has its own NumPy ``common.layers`` and ``common.gradient``; the swap puts
``fastnn.layers`` and ``fastnn.gradient`` in ``sys.modules`` under those names before the program is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import pathlib
import sys

import numpy as np
import pytest

import fastnn.gradient
import fastnn.layers

BOOK_DIR = pathlib.Path(__file__).parent / "book_style"
PROGRAM_MODULES = ("common", "common.functions", "common.layers", "common.gradient", "two_layer_net",
                   "train_neuralnet")


@pytest.fixture
def load_program(monkeypatch):
    """load_program(swap) -> the program's train_neuralnet module, freshly imported, book or fastnn layers."""
    monkeypatch.syspath_prepend(str(BOOK_DIR))

    def load(swap: bool):
        for name in PROGRAM_MODULES:
            sys.modules.pop(name, None)
        if swap:
            importlib.import_module("common")
            sys.modules["common.layers"] = fastnn.layers
            sys.modules["common.gradient"] = fastnn.gradient
        return importlib.import_module("train_neuralnet")

    yield load
    for name in PROGRAM_MODULES:
        sys.modules.pop(name, None)


def _data(seed=0, n=240, d=12, classes=3):
    """Gaussian blobs, one-hot labels (as load_mnist(one_hot_label=True))."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, d)) * 1.5
    labels = rng.integers(0, classes, n)
    x = centers[labels] + rng.standard_normal((n, d))
    t = np.eye(classes)[labels]
    return x[:200], t[:200], x[200:], t[200:]


@contextlib.contextmanager
def _global_seed(seed):
    """The program draws weights and batches from NumPy's global state: seed it, and put it back afterwards."""
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _run(program):
    with _global_seed(42):
        return program.train(*_data())


def test_training_program_gives_the_same_results_with_fastnn_layers(load_program):
    book = load_program(swap=False)
    book_net, book_init, book_loss, book_train_acc, book_test_acc = _run(book)
    assert type(book_net.layers["Affine1"]).__module__ == "common.layers"

    fast = load_program(swap=True)
    fast_net, fast_init, fast_loss, fast_train_acc, fast_test_acc = _run(fast)
    assert type(fast_net.layers["Affine1"]) is fastnn.layers.Affine
    assert type(fast_net.lastLayer) is fastnn.layers.SoftmaxWithLoss

    for key in book_init:  # same global-state draws
        np.testing.assert_array_equal(fast_init[key], book_init[key])
    # the book's loss, 1e-7 inside the log, is SoftmaxWithLoss's default
    np.testing.assert_allclose(fast_loss, book_loss, rtol=1e-10)
    assert book_loss[-1] < 0.5 * book_loss[0]  # it did train
    for key in book_net.params:
        np.testing.assert_allclose(fast_net.params[key], book_net.params[key], rtol=1e-9, atol=1e-12)
    assert fast_train_acc == book_train_acc and fast_test_acc == book_test_acc
    assert book_train_acc[-1] > 0.9
    # the net's params dict and the fastnn layers still hold the same arrays after 200 in-place updates
    assert fast_net.layers["Affine1"].W is fast_net.params["W1"]


def test_gradient_check_program_with_fastnn(load_program):
    """The book's gradient_check: backprop vs numerical_gradient, both taken from the swapped modules, give the
    book program's own numbers (its differences included: backprop is the gradient of the exact cross-entropy,
    the loss differentiated numerically has the book's + 1e-7 inside the log)."""
    checks = []
    for swap in (False, True):
        program = load_program(swap=swap)
        x, t, _, _ = _data(seed=1)
        with _global_seed(3):
            net = program.TwoLayerNet(input_size=12, hidden_size=6, output_size=3, weight_init_std=0.5)
        checks.append((net.gradient(x[:5], t[:5]), net.numerical_gradient(x[:5], t[:5])))
    (book_backprop, book_numerical), (grad_backprop, grad_numerical) = checks
    for key in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(grad_backprop[key], book_backprop[key], rtol=1e-12, atol=1e-15, err_msg=key)
        np.testing.assert_allclose(grad_numerical[key], book_numerical[key], rtol=1e-6, atol=1e-9, err_msg=key)
        diff = np.abs(grad_backprop[key] - grad_numerical[key]).max()
        book_diff = np.abs(book_backprop[key] - book_numerical[key]).max()
        assert diff == pytest.approx(book_diff, rel=1e-3), key  # measured: W1 2.7e-4 in both
        assert np.abs(grad_backprop[key]).max() > 1e-3

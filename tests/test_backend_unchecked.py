"""Each input is checked once on its way down: a layer or optimizer that has established what a kernel's check
establishes calls the kernel's body (``backend.unchecked``), while the public kernel, called directly, still checks.

The counts come from ``fastnn._checks.check_<op>`` replaced by a counting wrapper: a layer path must not reach it,
the public kernel must, on both backends.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from fastnn import _checks, backend
from fastnn.layers import Affine, BatchNormalization, Relu, Sigmoid, SoftmaxWithLoss, Tanh
from fastnn.optim import Adam, AdamW

BACKENDS = ("kernels", "reference")
#: The public functions with a body of their own (``_<op>`` in the module defining ``<op>``).
WITH_BODY = sorted(name for name in K.__all__ if backend._body(getattr(K, name)) is not getattr(K, name))


@pytest.fixture
def counts(monkeypatch):
    """``{check name: calls}`` for every ``fastnn._checks.check_*`` function, counted while the test runs."""
    seen: dict[str, int] = {}

    def counting(name, fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            seen[name] = seen.get(name, 0) + 1
            return fn(*args, **kwargs)

        return call

    for name in dir(_checks):
        if name.startswith("check_"):
            monkeypatch.setattr(_checks, name, counting(name, getattr(_checks, name)))
    return seen


def test_bodies_exist_on_both_sides_with_the_public_signature():
    assert {"matmul", "relu_forward", "batchnorm_forward_train", "adam_step"} <= set(WITH_BODY)
    assert WITH_BODY == sorted(name for name in R.__all__ if backend._body(getattr(R, name)) is not getattr(R, name))
    for name in WITH_BODY:
        for impl in (K, R):
            fn = getattr(impl, name)
            body = backend._body(fn)
            assert inspect.signature(body) == inspect.signature(fn), (impl.__name__, name)
            assert body.__name__ == f"_{name}" and body.__module__ == fn.__module__


def test_backend_unchecked_follows_using_and_a_replaced_function_stands_for_itself(monkeypatch):
    assert backend.unchecked.matmul is K.linalg._matmul
    assert backend.unchecked.svm_loss is K.svm_loss  # no body of its own: the checked function
    with backend.using("reference"):
        assert backend.unchecked.matmul is R.linalg._matmul
    assert backend.unchecked.matmul is K.linalg._matmul

    original = K.matmul

    @functools.wraps(original)  # the original's name and module: the wrapper must still be what runs
    def wrapper(a, b):
        return original(a, b)

    monkeypatch.setattr(K, "matmul", wrapper)
    with backend.using("kernels"):
        assert backend.unchecked.matmul is wrapper and backend.ops.matmul is wrapper
    monkeypatch.setattr(K, "matmul", original)
    with backend.using("kernels"):
        assert backend.unchecked.matmul is K.linalg._matmul


def _layer_runs(dtype):
    """``(name, run, checks the run must not reach)`` for each converted layer and optimizer."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5)).astype(dtype)
    t = rng.integers(0, 5, 6)

    def forward_backward(layer):
        def run():
            out = layer.forward(x)
            return out, layer.backward(np.ones_like(out))
        return run

    def loss():
        layer = SoftmaxWithLoss()
        return layer.forward(x, t), layer.backward()

    def bn():
        layer = BatchNormalization(np.ones(5, dtype), np.zeros(5, dtype))
        out = layer.forward(x)
        return out, layer.backward(np.ones_like(out)), layer.running_mean.copy()

    def optimizer(cls):
        def run():
            params = {"W": x.copy(), "b": x[0].copy()}
            opt = cls(lr=0.01)
            for _ in range(2):
                opt.update(params, {"W": np.ones_like(x), "b": np.ones_like(x[0])})
            return params["W"], params["b"]
        return run

    W, b = rng.standard_normal((5, 4)).astype(dtype), np.zeros(4, dtype)
    return [
        ("Affine", forward_backward(Affine(W, b)), {"check_matmul"}),
        ("Relu", forward_backward(Relu()), {"check_activation", "check_activation_backward"}),
        ("Sigmoid", forward_backward(Sigmoid()), {"check_activation", "check_activation_backward"}),
        ("Tanh", forward_backward(Tanh()), {"check_activation", "check_activation_backward"}),
        ("SoftmaxWithLoss", loss, {"check_softmax_cross_entropy"}),
        ("BatchNormalization", bn, {"check_batchnorm_forward_train", "check_batchnorm_backward"}),
        ("Adam", optimizer(Adam), {"check_adam_step"}),
        ("AdamW", optimizer(AdamW), {"check_adam_step"}),
    ]


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("case", range(8), ids=[name for name, _, _ in _layer_runs(np.float64)])
def test_a_layer_path_does_not_check_again_and_gives_the_checked_result(counts, impl, case, dtype):
    name, run, skipped = _layer_runs(dtype)[case]
    with backend.using(impl):
        fast = run()
    assert not skipped & set(counts), (name, counts)
    # the same path with every body replaced by its checked function: the same numbers
    with pytest.MonkeyPatch.context() as mp, backend.using(impl):
        for fn in WITH_BODY:
            mp.setattr(backend.unchecked, fn, getattr(backend.ops, fn))
        slow = run()
    assert skipped <= set(counts), (name, counts)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", BACKENDS)
def test_the_public_kernels_still_check(counts, impl):
    module = K if impl == "kernels" else R
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3))
    module.matmul(x, x.T)
    module.relu_backward(x, module.relu_forward(x))
    module.softmax_cross_entropy_forward(x, np.array([0, 1, 2, 0]))
    module.batchnorm_forward_train(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    module.adam_step(x.copy(), x, np.zeros_like(x), np.zeros_like(x), 0.1, 0.9, 0.999, 1e-8, 0.1, 0.001)
    assert {name: counts.get(name) for name in ("check_matmul", "check_activation", "check_activation_backward",
                                                "check_softmax_cross_entropy", "check_batchnorm_forward_train",
                                                "check_adam_step")} == dict.fromkeys(
        ("check_matmul", "check_activation", "check_activation_backward", "check_softmax_cross_entropy",
         "check_batchnorm_forward_train", "check_adam_step"), 1)
    with pytest.raises(ValueError, match="matmul: b must be"):
        module.matmul(x, x)


@pytest.mark.parametrize("impl", BACKENDS)
def test_what_a_layer_has_not_established_is_checked(counts, impl):
    """A float64 input to a float32 Affine layer (the check promotes both), a rebound learning rate out of range, a
    running statistic made read-only: the checked function runs, and raises where it always did."""
    rng = np.random.default_rng(2)
    layer = Affine(rng.standard_normal((3, 2)).astype(np.float32), np.zeros(2, np.float32))
    with backend.using(impl):
        out = layer.forward(rng.standard_normal((4, 3)))
        assert out.dtype == np.float64 and counts["check_matmul"] == 1
        opt = Adam()
        opt.lr = -1.0
        with pytest.raises(ValueError, match="adam_step: lr must be a finite number > 0"):
            opt.update({"W": np.ones(3)}, {"W": np.ones(3)})
        bn = BatchNormalization(np.ones(3), np.zeros(3))
        bn.running_var.flags.writeable = False
        with pytest.raises(ValueError, match="batchnorm_forward_train: running_var must be writeable"):
            bn.forward(rng.standard_normal((4, 3)))

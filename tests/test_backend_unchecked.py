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
from fastnn import backend
from fastnn.layers import (
    Affine,
    BatchNormalization,
    Dropout,
    GroupNormalization,
    LayerNormalization,
    LeakyRelu,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
    Tanh,
)
from fastnn.optim import SGD, AdaBound, AdaGrad, Adam, AdamW, AMSGrad, Momentum, Nesterov, RMSprop

BACKENDS = ("kernels", "reference")
#: The public functions with a body of their own (``_<op>`` in the module defining ``<op>``).
WITH_BODY = sorted(name for name in K.__all__ if backend._body(getattr(K, name)) is not getattr(K, name))


def test_bodies_exist_on_both_sides_with_the_public_signature():
    assert {"matmul", "relu_forward", "batchnorm_forward_train", "adam_step", "dropout_mask", "dropout_forward",
            "dropout_backward", "leaky_relu_forward", "leaky_relu_backward", "softmax_cross_entropy_backward",
            "batchnorm_forward_infer", "layernorm_forward", "layernorm_backward", "groupnorm_forward",
            "groupnorm_backward", "sgd_step", "momentum_step", "nesterov_step", "adagrad_step", "rmsprop_step",
            "adabound_step"} <= set(WITH_BODY)
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
        return out, layer.backward(np.ones_like(out)), layer.running_mean.copy(), layer.forward(x, train_flg=False)

    def dropout():  # a new layer per run: the same seeds, so the same masks
        layer = Dropout(0.3, seed=7)
        out = layer.forward(x)
        return out, layer.backward(np.ones_like(out)), layer.mask

    x4 = rng.standard_normal((2, 4, 3, 3)).astype(dtype)

    def group_norm():
        layer = GroupNormalization(np.linspace(0.5, 2, 4).astype(dtype), np.ones(4, dtype), groups=2)
        out = layer.forward(x4)
        return out, layer.backward(out), layer.dgamma, layer.dbeta

    def layer_norm():
        layer = LayerNormalization(np.linspace(0.5, 2, 5).astype(dtype), np.ones(5, dtype))
        out = layer.forward(x)
        return out, layer.backward(out), layer.dgamma, layer.dbeta

    def optimizer(cls, **hyper):
        def run():
            params = {"W": x.copy(), "b": x[0].copy()}
            opt = cls(lr=0.01, **hyper)
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
        ("LeakyRelu", forward_backward(LeakyRelu(0.1)), {"check_leaky_relu", "check_leaky_relu_backward"}),
        ("Dropout", dropout, {"check_dropout_mask", "check_dropout"}),
        # backward keeps its check on purpose: t is a public array the kernel writes through (memory safety)
        ("SoftmaxWithLoss", loss, {"check_softmax_cross_entropy"}),
        ("BatchNormalization", bn, {"check_batchnorm_forward_train", "check_batchnorm_backward",
                                    "check_batchnorm_forward_infer"}),
        ("LayerNormalization", layer_norm, {"check_layernorm_forward", "check_layernorm_backward"}),
        ("GroupNormalization", group_norm, {"check_groupnorm_forward", "check_groupnorm_backward"}),
        ("SGD", optimizer(SGD, weight_decay=0.1), {"check_optimizer_step"}),
        ("Momentum", optimizer(Momentum), {"check_optimizer_step"}),
        ("Nesterov", optimizer(Nesterov), {"check_nesterov_step", "check_optimizer_step"}),
        ("Nesterov-pytorch", optimizer(Nesterov, pytorch_form=True), {"check_nesterov_step", "check_optimizer_step"}),
        ("AdaGrad", optimizer(AdaGrad), {"check_optimizer_step"}),
        ("RMSprop", optimizer(RMSprop), {"check_optimizer_step"}),
        ("Adam", optimizer(Adam), {"check_adam_step", "check_optimizer_step"}),
        ("AdamW", optimizer(AdamW), {"check_adam_step", "check_optimizer_step"}),
        ("AMSGrad", optimizer(AMSGrad), {"check_adam_step", "check_optimizer_step"}),
        ("AdaBound", optimizer(AdaBound), {"check_adabound_step", "check_optimizer_step"}),
    ]


LAYER_RUNS = [name for name, _, _ in _layer_runs(np.float64)]


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("case", range(len(LAYER_RUNS)), ids=LAYER_RUNS)
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


def _public_calls(module):
    """``(check the call must reach, call)`` for the public kernels whose bodies the layers and optimizers above
    call unchecked."""
    rng = np.random.default_rng(3)
    x, x4 = rng.standard_normal((4, 3)), rng.standard_normal((2, 4, 2, 2))
    ones, zeros, mask = np.ones(3), np.zeros(3), x > 0
    stats = (np.zeros((2, 2)), np.ones((2, 2)))
    p, g, s = x.copy(), np.ones_like(x), np.zeros_like(x)
    return [
        ("check_leaky_relu", lambda: module.leaky_relu_forward(x, 0.1)),
        ("check_leaky_relu_backward", lambda: module.leaky_relu_backward(x, x, 0.1)),
        ("check_dropout_mask", lambda: module.dropout_mask(x.shape, 0.5, 1)),
        ("check_dropout", lambda: module.dropout_forward(x, mask)),
        ("check_dropout", lambda: module.dropout_backward(x, mask)),
        ("check_softmax_cross_entropy_backward",
         lambda: module.softmax_cross_entropy_backward(np.full((4, 3), 1 / 3), np.array([0, 1, 2, 0]))),
        ("check_batchnorm_forward_infer", lambda: module.batchnorm_forward_infer(x, ones, zeros, zeros, ones)),
        ("check_layernorm_forward", lambda: module.layernorm_forward(x, ones, zeros)),
        ("check_layernorm_backward", lambda: module.layernorm_backward(x, x, ones, np.zeros(4), np.ones(4))),
        ("check_groupnorm_forward", lambda: module.groupnorm_forward(x4, np.ones(4), np.zeros(4), 2)),
        ("check_groupnorm_backward", lambda: module.groupnorm_backward(x4, x4, np.ones(4), 2, *stats)),
        ("check_optimizer_step", lambda: module.sgd_step(p, g, 0.1)),
        ("check_optimizer_step", lambda: module.momentum_step(p, g, s, 0.1)),
        ("check_nesterov_step", lambda: module.nesterov_step(p, g, s, 0.1, pytorch_form=False)),
        ("check_optimizer_step", lambda: module.adagrad_step(p, g, s, 0.1)),
        ("check_optimizer_step", lambda: module.rmsprop_step(p, g, s, 0.1)),
        ("check_adabound_step", lambda: module.adabound_step(p, g, s, s.copy(), 0.1, 0.1, 1e-3, 0.9, 0.999, 1e-8, 1)),
    ]


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("case", range(17))
def test_the_public_kernels_of_the_converted_paths_still_check(counts, impl, case):
    check, call = _public_calls(K if impl == "kernels" else R)[case]
    call()
    assert counts.get(check) == 1, (check, counts)


def _not_established():
    """``(name, exception, message, run)``: a layer or optimizer attribute rebound since it was checked, or an
    array it did not make; the call must go through the checked kernel and raise what it always raised."""
    rng = np.random.default_rng(4)
    x, x4 = rng.standard_normal((6, 5)), rng.standard_normal((2, 4, 3, 3))

    def dropout_ratio():
        layer = Dropout(0.5, seed=0)
        layer.dropout_ratio = 1.5
        layer.forward(x)

    def dropout_mask():
        layer = Dropout(0.5, seed=0)
        layer.forward(x)
        layer.mask = layer.mask[:3]
        layer.backward(np.ones_like(x))

    def alpha(backward):
        def run():
            layer = LeakyRelu()
            out = layer.forward(x)
            layer.alpha = "0.1"
            (layer.backward(out) if backward else layer.forward(x))
        return run

    def labels():
        layer = SoftmaxWithLoss()
        layer.forward(x, np.arange(6) % 5)
        layer.t = np.array([0, 1, 2, 3, 4, 9])
        layer.backward()

    def layer_norm_eps():
        layer = LayerNormalization(np.ones(5), np.zeros(5))
        layer.eps = 0.0
        layer.forward(x)

    def groups():
        layer = GroupNormalization(np.ones(4), np.zeros(4), groups=2)
        layer.groups = 3
        layer.forward(x4)

    def bn_infer_eps():
        layer = BatchNormalization(np.ones(5), np.zeros(5))
        layer.eps = -1.0
        layer.forward(x, train_flg=False)

    def lr(cls):
        def run():
            opt = cls()
            opt.lr = -1
            opt.update({"W": np.ones(3)}, {"W": np.ones(3)})
        return run

    def adabound_iter():
        opt = AdaBound()
        opt.iter = -5
        opt.update({"W": np.ones(3)}, {"W": np.ones(3)})

    return [
        ("Dropout.dropout_ratio", ValueError, "dropout_mask: drop_ratio must be", dropout_ratio),
        ("Dropout.mask", ValueError, "dropout_backward: mask must be of shape", dropout_mask),
        ("LeakyRelu.alpha-forward", TypeError, "leaky_relu_forward: alpha must be a real number", alpha(False)),
        ("LeakyRelu.alpha-backward", TypeError, "leaky_relu_backward: alpha must be a real number", alpha(True)),
        ("SoftmaxWithLoss.t", ValueError, r"softmax_cross_entropy_backward: t must be labels in \[0, 5\)", labels),
        ("LayerNormalization.eps", ValueError, "layernorm_forward: eps must be a finite number > 0", layer_norm_eps),
        ("GroupNormalization.groups", ValueError, "groupnorm_forward: groups must be a divisor of C=4", groups),
        ("BatchNormalization.eps", ValueError, "batchnorm_forward_infer: eps must be a finite number > 0",
         bn_infer_eps),
        ("SGD.lr", ValueError, "sgd_step: lr must be a finite number > 0", lr(SGD)),
        ("Momentum.lr", ValueError, "momentum_step: lr must be a finite number > 0", lr(Momentum)),
        ("Nesterov.lr", ValueError, "nesterov_step: lr must be a finite number > 0", lr(Nesterov)),
        ("AdaGrad.lr", ValueError, "adagrad_step: lr must be a finite number > 0", lr(AdaGrad)),
        ("RMSprop.lr", ValueError, "rmsprop_step: lr must be a finite number > 0", lr(RMSprop)),
        ("AdaBound.lr", ValueError, "adabound_step: lr must be a finite number > 0", lr(AdaBound)),
        ("AdaBound.iter", ValueError, "adabound_step: step must be >= 1", adabound_iter),
    ]


NOT_ESTABLISHED = [name for name, *_ in _not_established()]


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("case", range(len(NOT_ESTABLISHED)), ids=NOT_ESTABLISHED)
def test_a_rebound_attribute_is_checked_and_raises_as_before(impl, case):
    _, exc, message, run = _not_established()[case]
    with backend.using(impl), pytest.raises(exc, match=message):
        run()


@pytest.mark.parametrize("impl", BACKENDS)
def test_rebound_labels_that_are_valid_go_through_the_check(counts, impl):
    layer = SoftmaxWithLoss()
    x = np.random.default_rng(5).standard_normal((4, 3))
    with backend.using(impl):
        layer.forward(x, np.array([0, 1, 2, 0]))
        layer.t = np.array([2, 1, 0, 0])  # rebound: its own labels, checked and used
        dx = layer.backward()
    assert counts["check_softmax_cross_entropy_backward"] == 1
    np.testing.assert_allclose(dx, (layer.y - np.eye(3)[[2, 1, 0, 0]]) / 4)

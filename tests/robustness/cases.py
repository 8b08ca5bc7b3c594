"""One valid call of every public kernel, as keyword arguments, shared by the robustness tests.

``CALLS[name](dtype, rng)`` returns the keyword arguments of a small, valid call of ``fastnn.kernels.<name>`` (and
of its twin ``fastnn.reference.<name>``). The validation table mutates one argument at a time; the thread, process
and special-value tests run the calls as they are. Arrays are freshly drawn on every call, so a test may modify
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import fastnn.kernels as K

Kwargs = dict[str, Any]

#: Arguments a kernel updates in place by contract (optimizer param and state, batch-norm running statistics).
INPLACE = {
    "sgd_step": ("param",),
    "momentum_step": ("param", "velocity"),
    "nesterov_step": ("param", "buf"),
    "adagrad_step": ("param", "h"),
    "rmsprop_step": ("param", "sq"),
    "adam_step": ("param", "m", "v"),
    "adamw_step": ("param", "m", "v"),
    "adabound_step": ("param", "m", "v"),
    "batchnorm_forward_train": ("running_mean", "running_var"),
}


def _n(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _pos(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return (rng.random(shape) + 0.5).astype(dtype)


def _elementwise(*names: str, **scalars: float) -> Callable[[np.dtype, np.random.Generator], Kwargs]:
    def build(dtype, rng):
        kw = {name: _n(rng, (2, 3, 4, 5), dtype) for name in names}
        if "out" in kw:  # a sigmoid/tanh output lies in (-1, 1)
            kw["out"] = np.tanh(kw["out"]).astype(dtype)
        return {**kw, **scalars}
    return build


def _conv_forward(dtype, rng):
    return {"x": _n(rng, (2, 3, 6, 6), dtype), "W": _n(rng, (4, 3, 3, 3), dtype), "b": _n(rng, (4,), dtype),
            "stride": 1, "pad": 1}


def _conv_backward(dtype, rng):
    return {"dout": _n(rng, (2, 4, 6, 6), dtype), "x": _n(rng, (2, 3, 6, 6), dtype),
            "W": _n(rng, (4, 3, 3, 3), dtype), "stride": 1, "pad": 1}


def _im2col(dtype, rng):
    return {"x": _n(rng, (2, 3, 5, 5), dtype), "filter_h": 3, "filter_w": 3, "stride": 2, "pad": 1}


def _col2im(dtype, rng):
    # (2, 3, 5, 5), 3x3, stride 2, pad 1: OH = OW = 3
    return {"col": _n(rng, (2 * 9, 27), dtype), "input_shape": (2, 3, 5, 5), "filter_h": 3, "filter_w": 3,
            "stride": 2, "pad": 1}


def _labels(rng, n=4, k=5):
    return rng.integers(0, k, n)


def _softmax(dtype, rng):
    return {"x": _n(rng, (4, 5), dtype)}


def _softmax_ce(dtype, rng):
    # delta: the book's log(p + 1e-7), as fastnn.layers.SoftmaxWithLoss calls it by default
    return {"x": _n(rng, (4, 5), dtype), "t": _labels(rng), "delta": 1e-7}


def _softmax_ce_backward(dtype, rng):
    x = _n(rng, (4, 5), dtype)
    probs = (np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)).astype(dtype)
    return {"probs": probs, "t": _labels(rng), "dout": 1.0}


def _svm(dtype, rng):
    return {"x": _n(rng, (4, 5), dtype), "y": _labels(rng)}


def _bn_train(dtype, rng):
    return {"x": _n(rng, (4, 3, 2, 2), dtype), "gamma": _pos(rng, (3,), dtype), "beta": _n(rng, (3,), dtype),
            "running_mean": np.zeros(3, dtype), "running_var": np.ones(3, dtype), "momentum": 0.9, "eps": 1e-5}


def _bn_infer(dtype, rng):
    return {"x": _n(rng, (4, 3, 2, 2), dtype), "gamma": _pos(rng, (3,), dtype), "beta": _n(rng, (3,), dtype),
            "running_mean": _n(rng, (3,), dtype), "running_var": _pos(rng, (3,), dtype), "eps": 1e-5}


def _bn_backward(dtype, rng):
    return {"dout": _n(rng, (4, 3, 2, 2), dtype), "x": _n(rng, (4, 3, 2, 2), dtype), "gamma": _pos(rng, (3,), dtype),
            "mean": _n(rng, (3,), dtype), "inv_std": _pos(rng, (3,), dtype)}


def _ln_forward(dtype, rng):
    return {"x": _n(rng, (4, 3, 2), dtype), "gamma": _pos(rng, (3, 2), dtype), "beta": _n(rng, (3, 2), dtype),
            "eps": 1e-5}


def _ln_backward(dtype, rng):
    return {"dout": _n(rng, (4, 3, 2), dtype), "x": _n(rng, (4, 3, 2), dtype), "gamma": _pos(rng, (3, 2), dtype),
            "mean": _n(rng, (4,), dtype), "inv_std": _pos(rng, (4,), dtype)}


def _gn_forward(dtype, rng):
    return {"x": _n(rng, (2, 4, 3, 3), dtype), "gamma": _pos(rng, (4,), dtype), "beta": _n(rng, (4,), dtype),
            "groups": 2, "eps": 1e-5}


def _gn_backward(dtype, rng):
    return {"dout": _n(rng, (2, 4, 3, 3), dtype), "x": _n(rng, (2, 4, 3, 3), dtype), "gamma": _pos(rng, (4,), dtype),
            "groups": 2, "mean": _n(rng, (2, 2), dtype), "inv_std": _pos(rng, (2, 2), dtype)}


def _in_forward(dtype, rng):
    return {"x": _n(rng, (2, 4, 3, 3), dtype), "gamma": _pos(rng, (4,), dtype), "beta": _n(rng, (4,), dtype),
            "eps": 1e-5}


def _in_backward(dtype, rng):
    return {"dout": _n(rng, (2, 4, 3, 3), dtype), "x": _n(rng, (2, 4, 3, 3), dtype), "gamma": _pos(rng, (4,), dtype),
            "mean": _n(rng, (2, 4), dtype), "inv_std": _pos(rng, (2, 4), dtype)}


def _optimizer(states: tuple[str, ...], positive: tuple[str, ...] = (), **scalars: Any):
    def build(dtype, rng):
        kw = {"param": _n(rng, (3, 4), dtype), "grad": _n(rng, (3, 4), dtype)}
        for s in states:
            kw[s] = _pos(rng, (3, 4), dtype) if s in positive else _n(rng, (3, 4), dtype)
        return {**kw, **scalars}
    return build


_ADAM = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "bias_correction1": 1 - 0.9**3,
         "bias_correction2": 1 - 0.999**3, "weight_decay": 0.01}


def _maxpool_forward(dtype, rng):
    return {"x": _n(rng, (2, 3, 5, 5), dtype), "pool_h": 3, "pool_w": 3, "stride": 2, "pad": 1}


def _maxpool_backward(dtype, rng):
    # (2, 3, 5, 5), 3x3, stride 2, pad 1: OH = OW = 3
    return {"dout": _n(rng, (2, 3, 3, 3), dtype), "argmax": rng.integers(0, 9, (2, 3, 3, 3)).astype(np.uint8),
            "input_shape": (2, 3, 5, 5), "pool_h": 3, "pool_w": 3, "stride": 2, "pad": 1}


def _avgpool_forward(dtype, rng):
    return {"x": _n(rng, (2, 3, 5, 5), dtype), "pool_h": 3, "pool_w": 3, "stride": 2, "pad": 1}


def _avgpool_backward(dtype, rng):
    return {"dout": _n(rng, (2, 3, 3, 3), dtype), "input_shape": (2, 3, 5, 5), "pool_h": 3, "pool_w": 3, "stride": 2,
            "pad": 1}


def _dropout_apply(name):
    def build(dtype, rng):
        return {name: _n(rng, (3, 4, 5), dtype), "mask": rng.random((3, 4, 5)) < 0.7, "scale": 2.0}
    return build


CALLS: dict[str, Callable[[np.dtype, np.random.Generator], Kwargs]] = {
    "relu_forward": _elementwise("x"),
    "relu_backward": _elementwise("dout", "x"),
    "sigmoid_forward": _elementwise("x"),
    "sigmoid_backward": _elementwise("dout", "out"),
    "tanh_forward": _elementwise("x"),
    "tanh_backward": _elementwise("dout", "out"),
    "leaky_relu_forward": _elementwise("x", alpha=0.1),
    "leaky_relu_backward": _elementwise("dout", "x", alpha=0.1),
    "conv2d_forward": _conv_forward,
    "conv2d_backward": _conv_backward,
    "matmul": lambda dtype, rng: {"a": _n(rng, (4, 6), dtype), "b": _n(rng, (6, 3), dtype)},
    "dropout_mask": lambda dtype, rng: {"shape": (3, 4, 5), "drop_ratio": 0.3, "seed": 12345},
    "dropout_forward": _dropout_apply("x"),
    "dropout_backward": _dropout_apply("dout"),
    "im2col": _im2col,
    "col2im": _col2im,
    "softmax_forward": _softmax,
    "softmax_cross_entropy_forward": _softmax_ce,
    "softmax_cross_entropy_backward": _softmax_ce_backward,
    "svm_loss": _svm,
    "batchnorm_forward_train": _bn_train,
    "batchnorm_forward_infer": _bn_infer,
    "batchnorm_backward": _bn_backward,
    "layernorm_forward": _ln_forward,
    "layernorm_backward": _ln_backward,
    "groupnorm_forward": _gn_forward,
    "groupnorm_backward": _gn_backward,
    "instancenorm_forward": _in_forward,
    "instancenorm_backward": _in_backward,
    "sgd_step": _optimizer((), lr=0.1, weight_decay=0.01),
    "momentum_step": _optimizer(("velocity",), lr=0.1, momentum=0.9, weight_decay=0.01),
    "nesterov_step": _optimizer(("buf",), lr=0.1, momentum=0.9, weight_decay=0.01, pytorch_form=False),
    "adagrad_step": _optimizer(("h",), ("h",), lr=0.1, eps=1e-7, weight_decay=0.01),
    "rmsprop_step": _optimizer(("sq",), ("sq",), lr=0.1, decay_rate=0.99, eps=1e-7, weight_decay=0.01),
    "adam_step": _optimizer(("m", "v"), ("v",), **_ADAM, eps_hat=True),  # the book's form (fastnn.optim.Adam)
    "adamw_step": _optimizer(("m", "v"), ("v",), **_ADAM),
    "adabound_step": _optimizer(("m", "v"), ("v",), lr=0.01, final_lr=0.1, gamma=1e-3, beta1=0.9, beta2=0.999,
                                eps=1e-8, step=3, weight_decay=0.01),
    "avgpool2d_backward": _avgpool_backward,
    "avgpool2d_forward": _avgpool_forward,
    "maxpool2d_backward": _maxpool_backward,
    "maxpool2d_forward": _maxpool_forward,
}

assert set(CALLS) == set(K.__all__), sorted(set(K.__all__) ^ set(CALLS))


def arrays_of(kw: Kwargs) -> dict[str, np.ndarray]:
    """The array arguments of a call."""
    return {k: v for k, v in kw.items() if isinstance(v, np.ndarray)}


def copies(kw: Kwargs) -> dict[str, np.ndarray]:
    """Copies of a call's arrays (to check later that nothing was written)."""
    return {k: v.copy() for k, v in arrays_of(kw).items()}


def assert_unchanged(kw: Kwargs, before: dict[str, np.ndarray], skip: tuple[str, ...] = ()) -> None:
    """Every array of ``kw`` still equals its copy in ``before`` (NaN equal to NaN), except names in ``skip``."""
    for k, v in before.items():
        if k in skip:
            continue
        np.testing.assert_array_equal(kw[k], v, err_msg=f"argument {k!r} was modified")


def outputs(result: Any) -> list[np.ndarray]:
    """A kernel's return value as a list of arrays (tuples flattened; 0-d scalars as 0-d arrays)."""
    if result is None:
        return []
    if isinstance(result, tuple):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]

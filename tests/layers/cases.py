"""One registry of layer test cases: a fastnn layer, its inputs, and a pure-NumPy twin built from fastnn.reference.

``CASES[name](dtype, rng)`` returns a :class:`Built`. The twin computes what the layer must return, from copies of
the layer's parameters taken at construction, with :mod:`fastnn.reference` functions and plain NumPy only (the
affine matmul is NumPy's), so the layer's bookkeeping (reshapes, caches, layouts, seeds) is checked as well as the
kernels it calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import fastnn.reference as R
from fastnn import layers as L


@dataclass
class Built:
    layer: Any
    inputs: dict[str, Any]  # forward's keyword arguments
    out_shape: tuple[int, ...] | None  # None: a scalar loss (backward takes dout=1)
    twin: Callable[[Any], tuple]  # twin(dout) -> (out, dx, grads, buffers); dx None when backward must raise
    params_in_grad_check: list[str] = field(default_factory=list)


def _away_from_zero(a: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Keep values out of [-margin, margin]: central differences with h = 1e-4 must not straddle ReLU's kink."""
    return a + np.where(a >= 0, margin, -margin)


def _normal(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def affine(dtype, rng, x_shape=(4, 6)):
    D = int(np.prod(x_shape[1:]))
    W, b, x = _normal(rng, (D, 5), dtype), _normal(rng, (5,), dtype), _normal(rng, x_shape, dtype)
    W0, b0 = W.copy(), b.copy()

    def twin(dout):
        x2 = x.reshape(x.shape[0], -1)
        return x2 @ W0 + b0, (dout @ W0.T).reshape(x.shape), {"W": x2.T @ dout, "b": dout.sum(axis=0)}, {}

    return Built(L.Affine(W, b), {"x": x}, (x_shape[0], 5), twin, ["W", "b"])


def affine_4d(dtype, rng):
    return affine(dtype, rng, x_shape=(3, 2, 2, 3))


def _elementwise(layer, fwd, bwd, uses_output):
    def build(dtype, rng):
        x = _away_from_zero(_normal(rng, (3, 4, 5), dtype)).astype(dtype)

        def twin(dout):
            out = fwd(x)
            return out, bwd(dout, out if uses_output else x), {}, {}

        return Built(layer(), {"x": x}, x.shape, twin)

    return build


relu = _elementwise(L.Relu, R.relu_forward, R.relu_backward, False)
sigmoid = _elementwise(L.Sigmoid, R.sigmoid_forward, R.sigmoid_backward, True)
tanh = _elementwise(L.Tanh, R.tanh_forward, R.tanh_backward, True)
leaky_relu = _elementwise(lambda: L.LeakyRelu(0.1), lambda x: R.leaky_relu_forward(x, 0.1),
                          lambda d, x: R.leaky_relu_backward(d, x, 0.1), False)


def softmax(dtype, rng, one_hot=False, exact=False):
    x = _normal(rng, (6, 4), dtype, 2.0)
    labels = rng.integers(0, 4, 6)
    t = np.eye(4, dtype=dtype)[labels] if one_hot else labels

    def twin(dout):
        # the layer's default is the book's log(y + 1e-7); exact=True is the log-softmax
        loss, probs = R.softmax_cross_entropy_forward(x, labels, delta=0.0 if exact else 1e-7)
        return loss, R.softmax_cross_entropy_backward(probs, labels, 1.0), {}, {}

    return Built(L.SoftmaxWithLoss(exact=exact), {"x": x, "t": t}, None, twin)


def softmax_onehot(dtype, rng):
    return softmax(dtype, rng, one_hot=True)


def softmax_exact(dtype, rng):
    return softmax(dtype, rng, exact=True)


def softmax_exact_onehot(dtype, rng):
    return softmax(dtype, rng, one_hot=True, exact=True)


def dropout(dtype, rng, train=True):
    x = _normal(rng, (5, 7, 3), dtype)

    def twin(dout):
        if not train:
            return x * dtype.type(0.7), dout * dtype.type(0.7), {}, {}
        seed = int(np.random.default_rng(11).integers(0, 2**64, dtype=np.uint64))
        mask = R.dropout_mask(x.shape, 0.3, seed)
        return R.dropout_forward(x, mask), R.dropout_backward(dout, mask), {}, {}

    return Built(L.Dropout(0.3, seed=np.random.default_rng(11)), {"x": x, "train_flg": train}, x.shape, twin)


def dropout_infer(dtype, rng):
    return dropout(dtype, rng, train=False)


def batchnorm(dtype, rng, x_shape=(6, 5), param_size=5, train=True):
    x = _normal(rng, x_shape, dtype, 2.0) + dtype.type(0.5)
    gamma, beta = _normal(rng, (param_size,), dtype) + dtype.type(1), _normal(rng, (param_size,), dtype)
    start_mean, start_var = _normal(rng, (param_size,), dtype), np.abs(_normal(rng, (param_size,), dtype)) + 0.5
    g0, b0 = gamma.copy(), beta.copy()
    layer = L.BatchNormalization(gamma, beta, momentum=0.8, running_mean=start_mean, running_var=start_var)

    def twin(dout):
        # per channel when gamma has C entries and x is 4-D, else per feature of the flattened input
        per_channel = len(x_shape) == 4 and param_size == x_shape[1]
        xk = x if per_channel else x.reshape(x.shape[0], -1)
        rm, rv = start_mean.copy(), start_var.copy()
        if not train:
            out = R.batchnorm_forward_infer(xk, g0, b0, rm, rv, 1e-6)
            return out.reshape(x.shape), None, {}, {"running_mean": rm, "running_var": rv}
        out, mean, inv_std = R.batchnorm_forward_train(xk, g0, b0, rm, rv, 0.8, 1e-6)
        dx, dgamma, dbeta = R.batchnorm_backward(dout.reshape(xk.shape), xk, g0, mean, inv_std)
        return (out.reshape(x.shape), dx.reshape(x.shape), {"gamma": dgamma, "beta": dbeta},
                {"running_mean": rm, "running_var": rv})

    return Built(layer, {"x": x, "train_flg": train}, x_shape, twin, ["gamma", "beta"])


def batchnorm_4d_channel(dtype, rng):
    return batchnorm(dtype, rng, x_shape=(3, 4, 3, 2), param_size=4)


def batchnorm_4d_feature(dtype, rng):
    return batchnorm(dtype, rng, x_shape=(3, 2, 3, 2), param_size=12)


def batchnorm_infer(dtype, rng):
    return batchnorm(dtype, rng, x_shape=(3, 4, 3, 2), param_size=4, train=False)


def batchrenorm(dtype, rng, train=True):
    """Per channel; the running statistics make r = rmax and d = +-dmax (clipped), so r and d stay constant under
    the central differences of test_gradients (the gradient treats them as constants)."""
    x = _normal(rng, (3, 4, 3, 2), dtype, 2.0) + dtype.type(0.5)
    gamma, beta = _normal(rng, (4,), dtype) + dtype.type(1), _normal(rng, (4,), dtype)
    start_mean = np.array([20, -20, 20, -20], dtype)
    start_std = np.full(4, 1e-2, dtype)
    g0, b0 = gamma.copy(), beta.copy()
    layer = L.BatchRenormalization(gamma, beta, momentum=0.8, rmax=2.0, dmax=lambda step: 0.5,
                                   running_mean=start_mean, running_std=start_std)

    def twin(dout):
        rm, rs = start_mean.copy(), start_std.copy()
        if not train:
            out = R.batchrenorm_forward_infer(x, g0, b0, rm, rs)
            return out, None, {}, {"running_mean": rm, "running_std": rs}
        out, mean, inv_std, r, d = R.batchrenorm_forward_train(x, g0, b0, rm, rs, 2.0, 0.5, 0.8, 1e-5)
        dx, dgamma, dbeta = R.batchrenorm_backward(dout, x, g0, mean, inv_std, r, d)
        return out, dx, {"gamma": dgamma, "beta": dbeta}, {"running_mean": rm, "running_std": rs}

    return Built(layer, {"x": x, "train_flg": train}, x.shape, twin, ["gamma", "beta"])


def layernorm(dtype, rng, x_shape=(4, 6)):
    x = _normal(rng, x_shape, dtype, 2.0)
    gamma, beta = _normal(rng, x_shape[1:], dtype) + dtype.type(1), _normal(rng, x_shape[1:], dtype)
    g0, b0 = gamma.copy(), beta.copy()

    def twin(dout):
        out, mean, inv_std = R.layernorm_forward(x, g0, b0, 1e-5)
        dx, dgamma, dbeta = R.layernorm_backward(dout, x, g0, mean, inv_std)
        return out, dx, {"gamma": dgamma, "beta": dbeta}, {}

    return Built(L.LayerNormalization(gamma, beta), {"x": x}, x_shape, twin, ["gamma", "beta"])


def layernorm_4d(dtype, rng):
    return layernorm(dtype, rng, x_shape=(3, 2, 3, 2))


def groupnorm(dtype, rng):
    x = _normal(rng, (3, 6, 2, 3), dtype, 2.0)
    gamma, beta = _normal(rng, (6,), dtype) + dtype.type(1), _normal(rng, (6,), dtype)
    g0, b0 = gamma.copy(), beta.copy()

    def twin(dout):
        out, mean, inv_std = R.groupnorm_forward(x, g0, b0, 3, 1e-5)
        dx, dgamma, dbeta = R.groupnorm_backward(dout, x, g0, 3, mean, inv_std)
        return out, dx, {"gamma": dgamma, "beta": dbeta}, {}

    return Built(L.GroupNormalization(gamma, beta, 3), {"x": x}, x.shape, twin, ["gamma", "beta"])


def instancenorm(dtype, rng):
    x = _normal(rng, (3, 4, 2, 3), dtype, 2.0)
    gamma, beta = _normal(rng, (4,), dtype) + dtype.type(1), _normal(rng, (4,), dtype)
    g0, b0 = gamma.copy(), beta.copy()

    def twin(dout):
        out, mean, inv_std = R.instancenorm_forward(x, g0, b0, 1e-5)
        dx, dgamma, dbeta = R.instancenorm_backward(dout, x, g0, mean, inv_std)
        return out, dx, {"gamma": dgamma, "beta": dbeta}, {}

    return Built(L.InstanceNormalization(gamma, beta), {"x": x}, x.shape, twin, ["gamma", "beta"])


def _wrapped(kind, conv):
    """WeightNorm / SpectralNorm of an Affine (W (in, out), units on axis -1) or a Convolution (units on axis 0);
    the twin applies the reparametrization with the reference kernels and runs the book's layer maths."""
    def build(dtype, rng):
        if conv:
            x, W = _normal(rng, (2, 3, 5, 4), dtype), _normal(rng, (4, 3, 3, 2), dtype, 0.5)
            inner, dim, out_shape = L.Convolution(W, _normal(rng, (4,), dtype), 1, 1), 0, (2, 4, 5, 5)
        else:
            x, W = _normal(rng, (4, 6), dtype), _normal(rng, (6, 5), dtype)
            inner, dim, out_shape = L.Affine(W, _normal(rng, (5,), dtype)), -1, (4, 5)
        W0, b0 = W.copy(), inner.b.copy()
        if kind == "weight":
            g = (1 + rng.random(W.shape[dim])).astype(dtype)
            layer, g0 = L.WeightNorm(inner, g=g), g.copy()
        else:
            layer = L.SpectralNorm(inner, seed=3)
            u0, v0 = layer.u.copy(), layer.v.copy()

        def layer_maths(w, dout):
            if conv:
                out = R.conv2d_forward(x, w, b0, 1, 1)
                dx, dw, db = R.conv2d_backward(dout, x, w, 1, 1)
                return out, dx, dw, db
            return x @ w + b0, dout @ w.T, x.T @ dout, dout.sum(axis=0)

        def twin(dout):
            if kind == "weight":
                w, norm = R.weightnorm_forward(W0, g0, dim)
                out, dx, dw, db = layer_maths(w, dout)
                dv, dg = R.weightnorm_backward(dw, W0, g0, norm, dim)
                return out, dx, {"v": dv, "g": dg, "b": db}, {}
            u, v = u0.copy(), v0.copy()
            w, sigma = R.spectralnorm_forward(W0, u, v, dim, training=False)
            out, dx, dw, db = layer_maths(w, dout)
            return out, dx, {"W": R.spectralnorm_backward(dw, W0, u, v, float(sigma), dim), "b": db}, {"u": u, "v": v}

        inputs = {"x": x} if kind == "weight" else {"x": x, "train_flg": False}
        return Built(layer, inputs, out_shape, twin, ["v", "g", "b"] if kind == "weight" else ["W", "b"])

    return build


weightnorm_affine, weightnorm_conv = _wrapped("weight", False), _wrapped("weight", True)
spectralnorm_affine, spectralnorm_conv = _wrapped("spectral", False), _wrapped("spectral", True)


def convolution(dtype, rng, x_shape=(2, 3, 7, 6), w_shape=(4, 3, 3, 3), stride=1, pad=0, out_hw=(5, 4)):
    x, W, b = _normal(rng, x_shape, dtype), _normal(rng, w_shape, dtype, 0.5), _normal(rng, (w_shape[0],), dtype)
    W0, b0 = W.copy(), b.copy()

    def twin(dout):
        out = R.conv2d_forward(x, W0, b0, stride, pad)
        dx, dW, db = R.conv2d_backward(dout, x, W0, stride, pad)
        return out, dx, {"W": dW, "b": db}, {}

    return Built(L.Convolution(W, b, stride, pad), {"x": x}, (x_shape[0], w_shape[0], *out_hw), twin, ["W", "b"])


def convolution_strided(dtype, rng):
    # stride (2, 1), pad (1, 2), a 3x2 filter: output (7 + 2 - 3)//2 + 1 = 4 by (6 + 4 - 2)//1 + 1 = 9
    return convolution(dtype, rng, x_shape=(2, 2, 7, 6), w_shape=(3, 2, 3, 2), stride=(2, 1), pad=(1, 2),
                       out_hw=(4, 9))


def _pooling(layer_cls, fwd, bwd, is_max, pool, stride, pad, x_shape, out_hw):
    def build(dtype, rng):
        x = _normal(rng, x_shape, dtype)

        def twin(dout):
            if is_max:
                out, argmax = fwd(x, *pool, stride, pad)
                return out, bwd(dout, argmax, x.shape, *pool, stride, pad), {}, {}
            return fwd(x, *pool, stride, pad), bwd(dout, x.shape, *pool, stride, pad), {}, {}

        return Built(layer_cls(*pool, stride=stride, pad=pad), {"x": x}, (*x_shape[:2], *out_hw), twin)

    return build


maxpool = _pooling(L.Pooling, R.maxpool2d_forward, R.maxpool2d_backward, True, (2, 2), 2, 0, (2, 3, 6, 5), (3, 2))
maxpool_padded = _pooling(L.Pooling, R.maxpool2d_forward, R.maxpool2d_backward, True, (3, 3), 2, 1, (2, 2, 7, 6),
                          (4, 3))
avgpool = _pooling(L.AvgPooling, R.avgpool2d_forward, R.avgpool2d_backward, False, (2, 2), 2, 0, (2, 3, 6, 5),
                   (3, 2))
avgpool_padded = _pooling(L.AvgPooling, R.avgpool2d_forward, R.avgpool2d_backward, False, (3, 2), 1, (1, 1),
                          (2, 2, 5, 4), (5, 5))

CASES = {name: globals()[name] for name in (
    "affine", "affine_4d", "relu", "sigmoid", "tanh", "leaky_relu", "softmax", "softmax_onehot", "softmax_exact",
    "softmax_exact_onehot", "dropout",
    "dropout_infer", "batchnorm", "batchrenorm", "batchnorm_4d_channel", "batchnorm_4d_feature", "batchnorm_infer",
    "layernorm", "layernorm_4d", "groupnorm", "instancenorm", "convolution", "convolution_strided", "maxpool",
    "maxpool_padded", "avgpool", "avgpool_padded", "weightnorm_affine", "weightnorm_conv", "spectralnorm_affine",
    "spectralnorm_conv")}


def run(built: Built, dout: Any) -> tuple:
    """Forward then (when the twin has a backward) backward through the fastnn layer: (out, dx)."""
    out = built.layer.forward(**built.inputs)
    dx = None
    if built.twin(dout)[1] is not None:
        dx = built.layer.backward(dout) if built.out_shape is not None else built.layer.backward()
    return out, dx


def make_dout(built: Built, dtype, rng) -> Any:
    if built.out_shape is None:
        return 1.0
    return _normal(rng, built.out_shape, dtype)

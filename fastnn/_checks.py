"""The argument checks of every operation, one function each: ``check_<op>(where, <the op's arguments>)``.

A public kernel in :mod:`fastnn.kernels` and its twin in :mod:`fastnn.reference` start with the same call here, so
both raise the same errors, in the same order, before any work. ``where`` is the public function's name (it leads
every message). Each check returns its arguments normalised for the body that follows: float arrays in their
common dtype (promoted as NumPy promotes), Python scalars, the window geometry, int64 labels. A caller that has
already produced such values (a layer that checked ``x``) can therefore hand them to a kernel's body directly.

The building blocks and the message form (``<where>: <argument> must be <expected>, got <what came>``) are in
:mod:`fastnn._validate`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _splitmix, _validate
from ._validate import WindowGeometry

#: The admissible range of every optimizer hyperparameter, by name (keyword arguments of
#: :func:`fastnn._validate.scalar`): the one statement of these bounds, used by the optimizer steps here and by
#: :class:`fastnn.optim.Optimizer`. ``gamma = 0`` would divide by zero in AdaBound's upper bound ``1 + 1/(gamma t)``;
#: ``final_lr = 0`` would freeze a net.
HYPERPARAMETER_BOUNDS: dict[str, dict[str, int]] = {
    "lr": {"gt": 0}, "final_lr": {"gt": 0}, "eps": {"gt": 0}, "weight_decay": {"ge": 0},
    "momentum": {"ge": 0, "lt": 1}, "decay_rate": {"ge": 0, "lt": 1}, "beta1": {"ge": 0, "lt": 1},
    "beta2": {"ge": 0, "lt": 1}, "gamma": {"gt": 0, "lt": 1},
    "bias_correction1": {"gt": 0, "le": 1}, "bias_correction2": {"gt": 0, "le": 1},
    "switch_eps": {"gt": 0},  # SWATS' switch threshold
}


# ---------------------------------------------------------------------------------------------------------------
# Activations


def check_activation(where: str, x: Any) -> np.ndarray:
    """An element-wise forward pass: ``x`` as a float array."""
    return _validate.float_array(x, where, "x")


def check_activation_backward(where: str, dout: Any, a: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """An element-wise backward pass: ``dout`` and the forward array ``a`` (called ``name`` in messages) as float
    arrays of their common dtype and one shape."""
    dout, a = _validate.float_arrays(where, dout=dout, **{name: a})
    if dout.shape != a.shape:
        _validate.fail(where, "dout", f"of shape {a.shape} like {name}", f"shape {dout.shape}")
    return dout, a


def check_leaky_relu(where: str, x: Any, alpha: Any) -> tuple[np.ndarray, float]:
    """Leaky ReLU's forward pass: the slope (finite), then ``x``."""
    alpha = _validate.scalar(alpha, where, "alpha")
    return _validate.float_array(x, where, "x"), alpha


def check_leaky_relu_backward(where: str, dout: Any, x: Any, alpha: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Leaky ReLU's backward pass: the slope, then ``dout`` and ``x`` as in :func:`check_activation_backward`."""
    alpha = _validate.scalar(alpha, where, "alpha")
    return (*check_activation_backward(where, dout, x, "x"), alpha)


# ---------------------------------------------------------------------------------------------------------------
# Convolution, im2col, matmul


def _conv(where: str, x: Any, W: Any, stride: Any, pad: Any, cache: Any,
          **operand: Any) -> tuple[list[np.ndarray], WindowGeometry]:
    arrays, g = _validate.conv_arrays(where, x, W, stride, pad, **operand)
    if cache is not None and not isinstance(cache, dict):
        _validate.fail(where, "cache", "a dict or None", type(cache).__name__, TypeError)
    return arrays, g


def check_conv2d_forward(where: str, x: Any, W: Any, b: Any, stride: Any, pad: Any,
                         cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, WindowGeometry]:
    """A convolution's forward pass: x, W, b in their common dtype, and the geometry (see
    :func:`fastnn._validate.conv_arrays`); ``cache`` a dict or None."""
    (x, W, b), g = _conv(where, x, W, stride, pad, cache, b=b)
    return x, W, b, g


def check_conv2d_backward(where: str, dout: Any, x: Any, W: Any, stride: Any, pad: Any, cache: Any,
                          need_dx: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, WindowGeometry, bool]:
    """A convolution's backward pass: dout, x, W in their common dtype, the geometry, and ``need_dx``."""
    (x, W, dout), g = _conv(where, x, W, stride, pad, cache, dout=dout)
    return dout, x, W, g, _validate.flag(need_dx, where, "need_dx")


def check_conv2d_relu_maxpool_forward(where: str, x: Any, W: Any, b: Any, stride: Any, pad: Any,
                                      cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, WindowGeometry]:
    """:func:`check_conv2d_forward`, and a convolution output of at least 2x2 for the 2x2 pooling window."""
    x, W, b, g = check_conv2d_forward(where, x, W, b, stride, pad, cache)
    _pooled(where, g)
    return x, W, b, g


def _pooled(where: str, g: WindowGeometry) -> None:
    if g.OH < 2 or g.OW < 2:
        _validate.fail(where, "x", "large enough for a convolution output of at least 2x2 (the pooling window)",
                       f"output {g.OH}x{g.OW}")


def _relu_grad(where: str, dout: Any, out: Any, x: Any, W: Any, stride: Any, pad: Any, cache: Any, need_dx: Any,
               pooled: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, WindowGeometry, bool]:
    (x, W), g = _conv(where, x, W, stride, pad, cache)
    if pooled:
        _pooled(where, g)
    expected = (g.N, W.shape[0], g.OH // 2, g.OW // 2) if pooled else (g.N, W.shape[0], g.OH, g.OW)
    dout, out = _validate.float_array(dout, where, "dout"), _validate.float_array(out, where, "out")
    _validate.shape(dout, expected, where, "dout")
    _validate.shape(out, expected, where, "out")
    x, W, dout, out = _validate.float_arrays(where, x=x, W=W, dout=dout, out=out)
    return dout, out, x, W, g, _validate.flag(need_dx, where, "need_dx")


def check_conv2d_relu_backward(where: str, dout: Any, out: Any, x: Any, W: Any, stride: Any, pad: Any, cache: Any,
                               need_dx: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, WindowGeometry,
                                                      bool]:
    """Backward of a convolution followed by ReLU: x and W as :func:`check_conv2d_backward`, ``dout`` and the
    forward result ``out`` of the output's shape (N, FN, OH, OW), all in their common dtype; ``need_dx``."""
    return _relu_grad(where, dout, out, x, W, stride, pad, cache, need_dx, False)


def check_conv2d_relu_maxpool_backward(where: str, dout: Any, out: Any, argmax: Any, x: Any, W: Any, stride: Any,
                                       pad: Any, cache: Any, need_dx: Any) -> tuple:
    """As :func:`check_conv2d_relu_backward` with the pooled shape (N, FN, OH // 2, OW // 2) for ``dout``, ``out``
    and the forward's ``argmax`` (window offsets in [0, 4)). Returns dout, out, argmax, x, W, geometry, need_dx."""
    dout, out, x, W, g, need_dx = _relu_grad(where, dout, out, x, W, stride, pad, cache, need_dx, True)
    return dout, out, _validate.pool_argmax(argmax, dout.shape, 4, where), x, W, g, need_dx


def check_im2col(where: str, x: Any, filter_h: Any, filter_w: Any, stride: Any,
                 pad: Any) -> tuple[np.ndarray, WindowGeometry]:
    """im2col: ``x`` as a 4-D float array, and the window geometry."""
    x = _validate.float_array(x, where, "x", ndim=4)
    return x, _validate.window_geometry(x.shape, filter_h, filter_w, stride, pad, where)


def check_col2im(where: str, col: Any, input_shape: Any, filter_h: Any, filter_w: Any, stride: Any,
                 pad: Any) -> tuple[np.ndarray, WindowGeometry]:
    """col2im: ``col`` as a 2-D float array of the geometry's shape (N*OH*OW, C*FH*FW), and the geometry."""
    col = _validate.float_array(col, where, "col", ndim=2)
    g = _validate.window_geometry(input_shape, filter_h, filter_w, stride, pad, where, name="input_shape")
    _validate.shape(col, (g.N * g.OH * g.OW, g.C * g.FH * g.FW), where, "col")
    return col, g


def check_matmul(where: str, a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """A matrix product: both operands as 2-D floats of their common dtype with matching inner sizes."""
    a, b = _validate.float_arrays(where, a=a, b=b)
    for name, arr in (("a", a), ("b", b)):
        if arr.ndim != 2:
            _validate.fail(where, name, "a 2-D array", f"shape {arr.shape}", ValueError)
    if a.shape[1] != b.shape[0]:
        _validate.fail(where, "b", f"{a.shape[1]} rows (a has {a.shape[1]} columns)", f"shape {b.shape}",
                       ValueError)
    return a, b


def check_out(where: str, out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """An optional output array a result is written into (``out=``): None, or a writeable ndarray of exactly the
    result's shape and dtype (no cast: the caller's array itself is written)."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray) or out.dtype != dtype:
        _validate.fail(where, "out", f"a {np.dtype(dtype)} ndarray (the result's dtype)", _validate.describe(out),
                       TypeError)
    if out.shape != shape:
        _validate.fail(where, "out", f"of shape {shape}", f"shape {out.shape}", ValueError)
    if not out.flags.writeable:
        _validate.fail(where, "out", "writeable (the result is written into it)", "a read-only array")
    return out


def check_matmul_out(where: str, a: Any, b: Any, out: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`check_matmul`'s operands and an optional ``out`` (M, N) of their common dtype."""
    a, b = check_matmul(where, a, b)
    return a, b, check_out(where, out, (a.shape[0], b.shape[1]), a.dtype)


def check_matmul_bias(where: str, a: Any, b: Any, bias: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A matrix product plus a bias row: :func:`check_matmul`'s operands and a bias of b's column count, all three
    of their common dtype."""
    a, b, bias = _validate.float_arrays(where, a=a, b=b, bias=bias)
    a, b = check_matmul(where, a, b)
    if bias.shape != (b.shape[1],):
        _validate.fail(where, "bias", f"of shape ({b.shape[1]},) (b has {b.shape[1]} columns)",
                       f"shape {bias.shape}", ValueError)
    return a, b, bias


def check_column_sum(where: str, a: Any) -> tuple[np.ndarray]:
    """Sums over the rows of a 2-D float array (float32 or float64; ints promote to float64)."""
    return (_validate.float_array(a, where, "a", ndim=2),)


def check_add_into(where: str, a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """An in-place sum: ``a`` a writeable float ndarray, ``b`` a float array of a's shape, cast to a's dtype."""
    a = _validate.inplace_array(a, where, "a")
    b = _validate.float_array(b, where, "b")
    b = b if b.dtype == a.dtype else b.astype(a.dtype)
    if b.shape != a.shape:
        _validate.fail(where, "b", f"of shape {a.shape} like a", f"shape {b.shape}")
    return a, b


# ---------------------------------------------------------------------------------------------------------------
# Dropout


def check_dropout_mask(where: str, shape: Any, drop_ratio: Any, seed: Any) -> tuple[tuple[int, ...], int, int]:
    """A dropout mask: the shape as a tuple, and the stream key and keep threshold that ``seed`` and
    ``drop_ratio`` give (:mod:`fastnn._splitmix`)."""
    shape = _validate.shape_tuple(shape, where, "shape")
    drop_ratio = _validate.scalar(drop_ratio, where, "drop_ratio", ge=0, le=1)
    seed = _validate.integer(seed, where, "seed", minimum=0)
    if seed > _splitmix.MASK64:
        _validate.fail(where, "seed", "an int in [0, 2**64)", seed)
    return shape, _splitmix.stream_key(seed), _splitmix.keep_threshold(drop_ratio)


def check_dropout(where: str, name: str, a: Any, mask: Any, scale: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Applying a dropout mask (either pass): ``a`` (called ``name``) as a float array, a bool mask of its shape,
    a finite scale."""
    a = _validate.float_array(a, where, name)
    mask = _validate.bool_array(mask, where, "mask", shape_of=a.shape)
    return a, mask, _validate.scalar(scale, where, "scale")


# ---------------------------------------------------------------------------------------------------------------
# Losses


def _scores(where: str, x: Any, *, loss: bool) -> np.ndarray:
    """(N, K) scores; a loss (a batch mean) needs N >= 1 and K >= 1."""
    x = _validate.float_array(x, where, "x", ndim=2)
    if loss and x.shape[0] < 1:
        _validate.fail(where, "N", ">= 1 (a loss is a mean over the batch)", x.shape[0])
    if loss and x.shape[1] < 1:
        _validate.fail(where, "K", ">= 1 class", x.shape[1])
    return x


def check_softmax(where: str, x: Any) -> np.ndarray:
    """Row-wise softmax: (N, K) scores as a float array (empty allowed)."""
    return _scores(where, x, loss=False)


def check_softmax_backward(where: str, dout: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Softmax's backward pass: ``probs`` (N, K) and ``dout`` of its shape, as floats of their common dtype."""
    dout, probs = _validate.float_arrays(where, dout=dout, probs=probs)
    if probs.ndim != 2:
        _validate.fail(where, "probs", "2-D", f"{probs.ndim}-D array of shape {probs.shape}")
    _validate.shape(dout, probs.shape, where, "dout")
    return dout, probs


def check_svm_loss(where: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """A loss over (N, K) scores with N, K >= 1, and their labels ``y`` as int64 (see
    :func:`fastnn._validate.labels`)."""
    x = _scores(where, x, loss=True)
    return x, _validate.labels(y, x.shape[0], x.shape[1], where, "y")


def check_softmax_cross_entropy(where: str, x: Any, t: Any, delta: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax cross-entropy's forward pass: scores and labels ``t`` as in :func:`check_svm_loss`, delta >= 0."""
    x = _scores(where, x, loss=True)
    labels = _validate.labels(t, x.shape[0], x.shape[1], where, "t")
    if delta.__class__ is float and 0.0 <= delta < math.inf:  # the usual case, ~0.15 us less than scalar()
        return x, labels, delta
    return x, labels, _validate.scalar(delta, where, "delta", ge=0.0)


def check_softmax_cross_entropy_backward(where: str, probs: Any, t: Any,
                                         dout: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax cross-entropy's backward pass: probs (N >= 1, K), labels, a finite ``dout``."""
    probs = _validate.float_array(probs, where, "probs", ndim=2)
    if probs.shape[0] < 1:
        _validate.fail(where, "N", ">= 1 (a loss is a mean over the batch)", probs.shape[0])
    labels = _validate.labels(t, probs.shape[0], probs.shape[1], where, "t")
    return probs, labels, _validate.scalar(dout, where, "dout")


# ---------------------------------------------------------------------------------------------------------------
# Normalization


def _norm_x(x: np.ndarray, where: str, ndims: tuple[int, ...] | None, min_batch: int) -> None:
    """x has one of ``ndims`` dimensions (None: any >= 2), >= ``min_batch`` samples, no empty non-batch axis."""
    if (x.ndim not in ndims) if ndims is not None else x.ndim < 2:
        want = {(2, 4): "2-D (N, D) or 4-D (N, C, H, W)", (4,): "4-D (N, C, H, W)", None: "at least 2-D (N, ...)"}
        _validate.fail(where, "x", want[ndims], f"{x.ndim}-D array of shape {x.shape}")
    _validate.integer(x.shape[0], where, "N", minimum=min_batch)
    for i, s in enumerate(x.shape[1:], 1):
        _validate.integer(s, where, f"x.shape[{i}]", minimum=1)


def _shapes(where: str, shape: tuple[int, ...], **arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        _validate.shape(a, shape, where, name)


def _norm_backward(where, ndims, min_batch, dout, x, gamma, mean, inv_std, param_shape, **extra):
    """What every normalization's backward checks: types, x, dout like x, gamma of ``param_shape(x.shape)``.
    Arrays in ``extra`` (batch renormalization's r, d) join the common dtype and are returned after inv_std."""
    dout, x, gamma, mean, inv_std, *extra_arrays = _validate.float_arrays(where, dout=dout, x=x, gamma=gamma,
                                                                          mean=mean, inv_std=inv_std, **extra)
    _norm_x(x, where, ndims, min_batch)
    _validate.shape(dout, x.shape, where, "dout")
    _validate.shape(gamma, param_shape(x.shape), where, "gamma")
    return dout, x, gamma, mean, inv_std, *extra_arrays


def _batch_train(where, x, gamma, beta, running):
    """x, gamma, beta of a batch-norm training pass in their common dtype; ``running`` (name -> array): writeable
    float arrays of shape (C,)."""
    x, gamma, beta = _validate.float_arrays(where, x=x, gamma=gamma, beta=beta)
    _norm_x(x, where, (2, 4), min_batch=1)
    C = x.shape[1]
    _shapes(where, (C,), gamma=gamma, beta=beta)
    for name, r in running.items():
        _validate.inplace_array(r, where, name)
        _validate.shape(r, (C,), where, name)
    return x, gamma, beta


def check_batchnorm_forward_train(where, x, gamma, beta, running_mean, running_var, momentum, eps):
    """Returns x, gamma, beta (common float dtype), momentum in [0, 1], eps > 0; the running statistics must be
    writeable float arrays of shape (C,)."""
    x, gamma, beta = _batch_train(where, x, gamma, beta, {"running_mean": running_mean, "running_var": running_var})
    momentum = _validate.scalar(momentum, where, "momentum", ge=0.0, le=1.0)
    eps = _validate.scalar(eps, where, "eps", gt=0.0)
    return x, gamma, beta, momentum, eps


def _batch_infer(where, x, **per_channel):
    """x and the (C,) arrays of a batch-norm inference pass, in their common float dtype."""
    x, *arrays = _validate.float_arrays(where, x=x, **per_channel)
    _norm_x(x, where, (2, 4), min_batch=0)
    _shapes(where, (x.shape[1],), **dict(zip(per_channel, arrays, strict=True)))
    return x, *arrays


def check_batchnorm_forward_infer(where, x, gamma, beta, running_mean, running_var, eps):
    """Returns the five arrays in their common float dtype and eps."""
    checked = _batch_infer(where, x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    return (*checked, _validate.scalar(eps, where, "eps", gt=0.0))


def check_batchrenorm_forward_train(where, x, gamma, beta, running_mean, running_std, rmax, dmax, momentum, eps):
    """Returns x, gamma, beta (common float dtype), rmax >= 1, dmax >= 0, momentum in [0, 1], eps > 0; the running
    statistics must be writeable float arrays of shape (C,)."""
    x, gamma, beta = _batch_train(where, x, gamma, beta, {"running_mean": running_mean, "running_std": running_std})
    rmax = _validate.scalar(rmax, where, "rmax", ge=1.0)
    dmax = _validate.scalar(dmax, where, "dmax", ge=0.0)
    momentum = _validate.scalar(momentum, where, "momentum", ge=0.0, le=1.0)
    eps = _validate.scalar(eps, where, "eps", gt=0.0)
    return x, gamma, beta, rmax, dmax, momentum, eps


def check_batchrenorm_forward_infer(where, x, gamma, beta, running_mean, running_std):
    """Returns the five arrays in their common float dtype."""
    return _batch_infer(where, x, gamma=gamma, beta=beta, running_mean=running_mean, running_std=running_std)


def check_batchrenorm_backward(where, dout, x, gamma, mean, inv_std, r, d):
    """Returns the seven arrays in their common float dtype."""
    checked = _norm_backward(where, (2, 4), 1, dout, x, gamma, mean, inv_std, lambda s: (s[1],), r=r, d=d)
    _shapes(where, (checked[1].shape[1],), mean=checked[3], inv_std=checked[4], r=checked[5], d=checked[6])
    return checked


def check_batchnorm_backward(where, dout, x, gamma, mean, inv_std):
    """Returns the five arrays in their common float dtype."""
    dout, x, gamma, mean, inv_std = _norm_backward(where, (2, 4), 1, dout, x, gamma, mean, inv_std,
                                                   lambda s: (s[1],))
    _shapes(where, (x.shape[1],), mean=mean, inv_std=inv_std)
    return dout, x, gamma, mean, inv_std


def check_layernorm_forward(where, x, gamma, beta, eps):
    """Returns x, gamma, beta in their common float dtype and eps."""
    x, gamma, beta = _validate.float_arrays(where, x=x, gamma=gamma, beta=beta)
    _norm_x(x, where, None, min_batch=0)
    _shapes(where, x.shape[1:], gamma=gamma, beta=beta)
    return x, gamma, beta, _validate.scalar(eps, where, "eps", gt=0.0)


def check_layernorm_backward(where, dout, x, gamma, mean, inv_std):
    """Returns the five arrays in their common float dtype."""
    dout, x, gamma, mean, inv_std = _norm_backward(where, None, 0, dout, x, gamma, mean, inv_std, lambda s: s[1:])
    _shapes(where, (x.shape[0],), mean=mean, inv_std=inv_std)
    return dout, x, gamma, mean, inv_std


def check_groupnorm_forward(where, x, gamma, beta, groups, eps):
    """Returns x, gamma, beta in their common float dtype, the group count (dividing C) and eps."""
    x, gamma, beta = _validate.float_arrays(where, x=x, gamma=gamma, beta=beta)
    _norm_x(x, where, (4,), min_batch=0)
    _shapes(where, (x.shape[1],), gamma=gamma, beta=beta)
    groups = _validate.divisor(groups, x.shape[1], where, "groups", "C")
    return x, gamma, beta, groups, _validate.scalar(eps, where, "eps", gt=0.0)


def check_groupnorm_backward(where, dout, x, gamma, groups, mean, inv_std):
    """Returns dout, x, gamma in their common float dtype, the group count (None: one per channel), mean, inv_std."""
    dout, x, gamma, mean, inv_std = _norm_backward(where, (4,), 0, dout, x, gamma, mean, inv_std, lambda s: (s[1],))
    groups = _validate.divisor(groups, x.shape[1], where, "groups", "C") if groups is not None else x.shape[1]
    _shapes(where, (x.shape[0], groups), mean=mean, inv_std=inv_std)
    return dout, x, gamma, groups, mean, inv_std


def check_instancenorm_forward(where, x, gamma, beta, eps):
    """Returns x, gamma, beta in their common float dtype and eps."""
    x, gamma, beta, _, eps = check_groupnorm_forward(where, x, gamma, beta, 1, eps)
    return x, gamma, beta, eps


def check_instancenorm_backward(where, dout, x, gamma, mean, inv_std):
    """Returns the five arrays in their common float dtype."""
    dout, x, gamma, _, mean, inv_std = check_groupnorm_backward(where, dout, x, gamma, None, mean, inv_std)
    return dout, x, gamma, mean, inv_std


# ---------------------------------------------------------------------------------------------------------------
# Weight reparametrizations (weight normalization, spectral normalization)


def _weight_dim(where: str, w: np.ndarray, dim: Any, name: str) -> int:
    """A weight of >= 2 dimensions and the axis ``dim`` of its output units, as an index in [0, ndim)."""
    if w.ndim < 2:
        _validate.fail(where, name, "at least 2-D (a layer's weight)", f"{w.ndim}-D array of shape {w.shape}")
    dim = _validate.integer(dim, where, "dim", minimum=-w.ndim, maximum=w.ndim - 1)
    return dim % w.ndim


def check_weightnorm_forward(where, v, g, dim):
    """Returns v, g in their common float dtype and dim in [0, v.ndim); g of shape (v.shape[dim],)."""
    v, g = _validate.float_arrays(where, v=v, g=g)
    dim = _weight_dim(where, v, dim, "v")
    _validate.shape(g, (v.shape[dim],), where, "g")
    return v, g, dim


def check_weightnorm_backward(where, dw, v, g, norm, dim):
    """Returns dw, v, g, norm in their common float dtype and dim; dw like v, g and norm (v.shape[dim],)."""
    dw, v, g, norm = _validate.float_arrays(where, dw=dw, v=v, g=g, norm=norm)
    dim = _weight_dim(where, v, dim, "v")
    _validate.shape(dw, v.shape, where, "dw")
    _shapes(where, (v.shape[dim],), g=g, norm=norm)
    return dw, v, g, norm, dim


def _weightnorm_affine(where: str, x: np.ndarray, v: np.ndarray) -> None:
    """x (N, in) and the affine weight v (in, out)."""
    for name, a, what in (("x", x, "(N, in)"), ("v", v, "(in, out)")):
        if a.ndim != 2:
            _validate.fail(where, name, f"a 2-D array {what}", f"shape {a.shape}")
    _validate.shape(x, (None, v.shape[0]), where, "x")


def check_weightnorm_affine_forward(where, x, v, g, b):
    """Returns x (N, in), v (in, out), g and b (out,) in their common float dtype."""
    x, v, g, b = _validate.float_arrays(where, x=x, v=v, g=g, b=b)
    _weightnorm_affine(where, x, v)
    _shapes(where, (v.shape[1],), g=g, b=b)
    return x, v, g, b


def check_weightnorm_affine_backward(where, dout, x, v, g, norm, t):
    """Returns dout (N, out), x (N, in), v (in, out), g, norm (out,) and the forward's t (N, out) in their common
    float dtype."""
    dout, x, v, g, norm, t = _validate.float_arrays(where, dout=dout, x=x, v=v, g=g, norm=norm, t=t)
    _weightnorm_affine(where, x, v)
    _shapes(where, (x.shape[0], v.shape[1]), dout=dout, t=t)
    _shapes(where, (v.shape[1],), g=g, norm=norm)
    return dout, x, v, g, norm, t


def _power_vectors(where: str, w: np.ndarray, u: Any, v: Any, dim: int) -> None:
    """u (w.shape[dim],) and v (w.size / w.shape[dim],): writeable arrays of w's dtype (updated in place)."""
    K = w.shape[dim]
    for name, a, n in (("u", u, K), ("v", v, w.size // K if K else 0)):
        _validate.inplace_array(a, where, name)
        if a.dtype != w.dtype:
            _validate.fail(where, name, f"of dtype {w.dtype} like w", f"dtype {a.dtype}", TypeError)
        _validate.shape(a, (n,), where, name)


def check_spectralnorm_forward(where, w, u, v, dim, n_power_iterations, eps, training):
    """Returns w (float), dim, n_power_iterations >= 1, eps > 0 and the ``training`` flag; u, v writeable vectors
    of w's dtype (see :func:`_power_vectors`)."""
    w = _validate.float_array(w, where, "w")
    dim = _weight_dim(where, w, dim, "w")
    _power_vectors(where, w, u, v, dim)
    n_power_iterations = _validate.integer(n_power_iterations, where, "n_power_iterations", minimum=1)
    eps = _validate.scalar(eps, where, "eps", gt=0.0)
    return w, dim, n_power_iterations, eps, _validate.flag(training, where, "training")


def check_spectralnorm_backward(where, dw, w, u, v, sigma, dim):
    """Returns dw, w, u, v in their common float dtype, sigma > 0 and dim."""
    dw, w, u, v = _validate.float_arrays(where, dw=dw, w=w, u=u, v=v)
    dim = _weight_dim(where, w, dim, "w")
    _validate.shape(dw, w.shape, where, "dw")
    K = w.shape[dim]
    _shapes(where, (K,), u=u)
    _shapes(where, (w.size // K if K else 0,), v=v)
    return dw, w, u, v, _validate.scalar(sigma, where, "sigma", gt=0.0), dim


# ---------------------------------------------------------------------------------------------------------------
# Optimizer steps


def check_optimizer_step(where: str, param: Any, grad: Any, states: dict, **scalars: Any) -> tuple:
    """One optimizer step's arrays (see :func:`fastnn._validate.optimizer_arrays`), then each hyperparameter
    against :data:`HYPERPARAMETER_BOUNDS`, in the order given; returns the gradient cast to param's dtype followed
    by the checked floats."""
    g = _validate.optimizer_arrays(where, param, grad, **states)
    return (g, *(_validate.scalar(value, where, name, **HYPERPARAMETER_BOUNDS[name])
                 for name, value in scalars.items()))


def check_nesterov_step(where, param, grad, buf, lr, momentum, weight_decay, pytorch_form) -> tuple:
    """Returns the cast gradient, lr, momentum, weight_decay and the ``pytorch_form`` flag."""
    checked = check_optimizer_step(where, param, grad, {"buf": buf}, lr=lr, momentum=momentum,
                                   weight_decay=weight_decay)
    return (*checked, _validate.flag(pytorch_form, where, "pytorch_form"))


def check_adam_step(where, param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2,
                    weight_decay, v_max, eps_hat) -> tuple:
    """Adam and AdamW; returns the cast gradient, lr, beta1, beta2, eps, the two bias corrections, weight_decay and
    the ``eps_hat`` flag."""
    states = {"m": m, "v": v} if v_max is None else {"m": m, "v": v, "v_max": v_max}
    checked = check_optimizer_step(where, param, grad, states, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                   bias_correction1=bias_correction1, bias_correction2=bias_correction2,
                                   weight_decay=weight_decay)
    return (*checked, _validate.flag(eps_hat, where, "eps_hat"))


def check_swats_adam_step(where, param, grad, m, v, lr, beta1, beta2, eps, step, weight_decay) -> tuple:
    """SWATS' Adam phase; returns the cast gradient and the checked ``lr, beta1, beta2, eps, step,
    weight_decay``."""
    g, lr, beta1, beta2, eps = check_optimizer_step(where, param, grad, {"m": m, "v": v}, lr=lr, beta1=beta1,
                                                    beta2=beta2, eps=eps)
    step = _validate.integer(step, where, "step", minimum=1)
    weight_decay = _validate.scalar(weight_decay, where, "weight_decay", **HYPERPARAMETER_BOUNDS["weight_decay"])
    return g, lr, beta1, beta2, eps, step, weight_decay


def check_adabound_step(where, param, grad, m, v, lr, final_lr, gamma, beta1, beta2, eps, step,
                        weight_decay) -> tuple:
    """AdaBound; returns the cast gradient and the checked ``lr, final_lr, gamma, beta1, beta2, eps, step,
    weight_decay`` (the per-step scalars are :func:`adabound_schedule`'s)."""
    g, lr, final_lr, gamma, beta1, beta2, eps = check_optimizer_step(
        where, param, grad, {"m": m, "v": v}, lr=lr, final_lr=final_lr, gamma=gamma, beta1=beta1, beta2=beta2,
        eps=eps)
    step = _validate.integer(step, where, "step", minimum=1)
    weight_decay = _validate.scalar(weight_decay, where, "weight_decay", **HYPERPARAMETER_BOUNDS["weight_decay"])
    return g, lr, final_lr, gamma, beta1, beta2, eps, step, weight_decay



# ---------------------------------------------------------------------------------------------------------------
# Pooling


def check_pool2d(where: str, x: Any, pool_h: Any, pool_w: Any, stride: Any,
                 pad: Any) -> tuple[np.ndarray, WindowGeometry]:
    """A pooling forward pass: ``x`` as a 4-D float array, and the geometry (see
    :func:`fastnn._validate.pool_geometry`)."""
    x = _validate.float_array(x, where, "x", ndim=4)
    return x, _validate.pool_geometry(x.shape, pool_h, pool_w, stride, pad, where)


def check_pool2d_backward(where: str, dout: Any, input_shape: Any, pool_h: Any, pool_w: Any, stride: Any,
                          pad: Any) -> tuple[np.ndarray, WindowGeometry]:
    """A pooling backward pass: the geometry, then ``dout`` of the output's shape."""
    g = _validate.pool_geometry(input_shape, pool_h, pool_w, stride, pad, where, name="input_shape")
    dout = _validate.float_array(dout, where, "dout", ndim=4)
    _validate.shape(dout, (g.N, g.C, g.OH, g.OW), where, "dout")
    return dout, g


def check_maxpool2d_backward(where: str, dout: Any, argmax: Any, input_shape: Any, pool_h: Any, pool_w: Any,
                             stride: Any, pad: Any, ties: Any,
                             x: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, WindowGeometry]:
    """Max-pool backward: :func:`check_pool2d_backward`, then the tie rule and the argument it needs. Returns
    dout, argmax (None with ``ties="split"``), x (None with ``ties="first"``) and the geometry."""
    dout, g = check_pool2d_backward(where, dout, input_shape, pool_h, pool_w, stride, pad)
    if not isinstance(ties, str):
        _validate.fail(where, "ties", "'first' or 'split'", f"{type(ties).__name__}", TypeError)
    if ties not in ("first", "split"):
        _validate.fail(where, "ties", "'first' or 'split'", repr(ties))
    if ties == "first":
        if x is not None:
            _validate.fail(where, "x", "None with ties='first' (argmax names each window's maximum)",
                           f"{type(x).__name__}")
        return dout, _validate.pool_argmax(argmax, (g.N, g.C, g.OH, g.OW), g.FH * g.FW, where), None, g
    if argmax is not None:
        _validate.fail(where, "argmax", "None with ties='split' (the maxima are found in x)",
                       f"{type(argmax).__name__}")
    if x is None:
        _validate.fail(where, "x", "the forward input (N, C, H, W) with ties='split'", "None")
    x = _validate.float_array(x, where, "x", ndim=4)
    _validate.shape(x, (g.N, g.C, g.H, g.W), where, "x")
    return dout, None, x, g


# ---------------------------------------------------------------------------------------------------------------
# Attention, GELU, last-axis softmax, positional encoding (fastnn/kernels/attention.py)

_GELU_FORMS = ("none", "tanh")


def _attention_options(where: str, q: np.ndarray, k: np.ndarray, mask: Any, causal: Any, scale: Any,
                       dropout_p: Any, seed: Any) -> tuple[Any, bool, float, float, int]:
    """The mask (None, a bool array, or an additive float array in q's dtype) broadcastable to (N, H, S, T), the
    causal flag, the scale (default 1/sqrt(d)), dropout_p in [0, 1) and the seed in [0, 2**64)."""
    N, H, S, d = q.shape
    T = k.shape[2]
    if mask is not None:
        if not isinstance(mask, np.ndarray) or not (mask.dtype == np.bool_ or mask.dtype.kind in "fiu"):
            _validate.fail(where, "mask", "None, a bool ndarray or a float ndarray (added to the scores)",
                           _validate.describe(mask), TypeError)
        try:
            if mask.ndim > 4 or np.broadcast_shapes(mask.shape, (N, H, S, T)) != (N, H, S, T):
                raise ValueError
        except ValueError:
            _validate.fail(where, "mask", f"broadcastable to (N, H, S, T) = {(N, H, S, T)}", f"shape {mask.shape}")
        if mask.dtype != np.bool_ and mask.dtype != q.dtype:
            mask = mask.astype(q.dtype)  # a mask never promotes the computation
    causal = _validate.flag(causal, where, "causal")
    scale = 1.0 / math.sqrt(d) if scale is None else _validate.scalar(scale, where, "scale")
    dropout_p = _validate.scalar(dropout_p, where, "dropout_p", ge=0.0, lt=1.0)
    seed = _validate.integer(seed, where, "seed", minimum=0)
    if seed > _splitmix.MASK64:
        _validate.fail(where, "seed", "an int in [0, 2**64)", seed)
    return mask, causal, scale, dropout_p, seed


def _attention_qkv(where: str, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
    for name, a in (("q", q), ("k", k), ("v", v)):
        if a.ndim != 4:
            _validate.fail(where, name, "4-D (N, H, S or T, d)", f"{a.ndim}-D array of shape {a.shape}")
    N, H, S, d = q.shape
    _validate.integer(d, where, "d (q.shape[3])", minimum=1)
    _validate.shape(k, (N, H, None, d), where, "k")
    _validate.shape(v, (N, H, k.shape[2], None), where, "v")


def check_attention_forward(where, q, k, v, mask, causal, scale, dropout_p, seed):
    """Scaled dot-product attention's forward pass: q (N, H, S, d), k (N, H, T, d), v (N, H, T, dv) in their common
    float dtype, then the options of :func:`_attention_options`."""
    q, k, v = _validate.float_arrays(where, q=q, k=k, v=v)
    _attention_qkv(where, q, k, v)
    return (q, k, v, *_attention_options(where, q, k, mask, causal, scale, dropout_p, seed))


def check_attention_backward(where, dout, q, k, v, out, lse, mask, causal, scale, dropout_p, seed, into):
    """Attention's backward pass: dout and out (N, H, S, dv), lse (N, H, S), what the forward checks, and ``into``:
    None or three writable arrays of q's, k's and v's shapes in the computation's dtype, overlapping no input."""
    dout, q, k, v, out, lse = _validate.float_arrays(where, dout=dout, q=q, k=k, v=v, out=out, lse=lse)
    _attention_qkv(where, q, k, v)
    N, H, S, _ = q.shape
    _validate.shape(out, (N, H, S, v.shape[3]), where, "out")
    _validate.shape(dout, out.shape, where, "dout")
    _validate.shape(lse, (N, H, S), where, "lse")
    options = _attention_options(where, q, k, mask, causal, scale, dropout_p, seed)
    if into is not None:
        if not isinstance(into, (tuple, list)) or len(into) != 3:
            _validate.fail(where, "into", "None or a tuple of three arrays (dq, dk, dv)", _validate.describe(into),
                           TypeError)
        inputs = (dout, q, k, v, out, lse) if options[0] is None else (dout, q, k, v, out, lse, options[0])
        for name, g, like in zip(("into[0]", "into[1]", "into[2]"), into, (q, k, v), strict=True):
            if not isinstance(g, np.ndarray) or g.dtype != q.dtype or not g.flags.writeable:
                _validate.fail(where, name, f"a writable {q.dtype} ndarray", _validate.describe(g), TypeError)
            _validate.shape(g, like.shape, where, name)
            if any(np.may_share_memory(g, a) for a in inputs):
                _validate.fail(where, name, "memory of its own (it overlaps an input)", "an overlapping array")
        if any(np.shares_memory(a, b) for a, b in ((into[0], into[1]), (into[0], into[2]), (into[1], into[2]))):
            _validate.fail(where, "into", "three arrays that do not overlap each other", "overlapping arrays")
        into = tuple(into)
    return (dout, q, k, v, out, lse, *options, into)


def check_gelu(where: str, x: Any, approximate: Any) -> tuple[np.ndarray, str]:
    """GELU's forward pass: ``approximate`` one of "none", "tanh" (PyTorch's), then ``x``."""
    if approximate not in _GELU_FORMS or not isinstance(approximate, str):
        _validate.fail(where, "approximate", "'none' or 'tanh'", _validate.describe(approximate))
    return _validate.float_array(x, where, "x"), approximate


def check_gelu_backward(where: str, dout: Any, x: Any, approximate: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """GELU's backward pass: ``approximate``, then dout and x as in :func:`check_activation_backward`."""
    _, approximate = check_gelu(where, 0.0, approximate)
    return (*check_activation_backward(where, dout, x, "x"), approximate)


def check_softmax_lastaxis(where: str, x: Any) -> np.ndarray:
    """Softmax over the last axis: x at least 1-D."""
    x = _validate.float_array(x, where, "x")
    if x.ndim < 1:
        _validate.fail(where, "x", "at least 1-D", "a 0-d array")
    return x


def check_softmax_lastaxis_backward(where: str, dout: Any, out: Any) -> tuple[np.ndarray, np.ndarray]:
    """Its backward pass: ``dout`` and the forward's ``out`` as in :func:`check_activation_backward`, at least 1-D
    as the forward's x."""
    dout, out = check_activation_backward(where, dout, out, "out")
    if out.ndim < 1:
        _validate.fail(where, "out", "at least 1-D", "a 0-d array")
    return dout, out


def check_positional_encoding(where: str, x: Any) -> np.ndarray:
    """Adding the sinusoidal positional encoding: x (N, S, D)."""
    return _validate.float_array(x, where, "x", ndim=3)


# ---------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------
# Recurrent networks (fastnn.kernels.recurrent)

#: The LSTM gate orders the compat APIs use: a permutation of the letters i, f, g, o names the order of the four
#: (H,)-blocks of Wx, Wh, b and the activations (Deep Learning from Scratch 2 "fgio", cs231n "ifog", PyTorch "ifgo").
LSTM_GATES = "ifgo"
#: GRU forms: "dlfs2" (blocks z, r, h; r applied to h before its product with Wh; one bias) and "torch" (blocks
#: r, z, n; r applied to h @ W_hn + b_hn; a second, hidden bias ``bh``).
GRU_FORMS = ("dlfs2", "torch")


def lstm_layout(layout: Any, where: str) -> str:
    """``layout`` checked: a permutation of "ifgo" naming the order of the gate blocks."""
    if not isinstance(layout, str) or sorted(layout) != sorted(LSTM_GATES):
        _validate.fail(where, "layout", "a permutation of 'ifgo' such as 'ifgo', 'ifog', 'fgio'",
                       _validate.describe(layout), TypeError if not isinstance(layout, str) else ValueError)
    return layout



def gru_form(form: Any, where: str) -> str:
    """``form`` as one of :data:`GRU_FORMS`."""
    if not isinstance(form, str) or form not in GRU_FORMS:
        _validate.fail(where, "form", "'dlfs2' or 'torch'", _validate.describe(form),
                       TypeError if not isinstance(form, str) else ValueError)
    return form


def _recurrent(where: str, gates: int, acts_gates: int, **named: Any) -> list[np.ndarray | None]:
    """The arrays of a recurrent pass in their common dtype, in the order given (``dc_last``, ``bh``: None kept).

    ``x`` (N, T, D) with T >= 1 and ``Wh`` (H, gates*H) fix the sizes; every other array must have its shape:
    ``h0``/``c0``/``dc_last`` (N, H), ``Wx`` (D, gates*H), ``b``/``bh`` (gates*H,), ``hs``/``cs``/``dhs``
    (N, T, H), ``acts`` (N, T, acts_gates*H).
    """
    given = {k: v for k, v in named.items() if v is not None or k not in ("dc_last", "bh")}  # only these optional
    arrays = dict(zip(given, _validate.float_arrays(where, **given), strict=True))
    x = arrays["x"]
    if x.ndim != 3 or x.shape[1] < 1:
        _validate.fail(where, "x", "of shape (N, T, D) with T >= 1", f"shape {x.shape}")
    N, T, D = x.shape
    Wh = arrays["Wh"]
    if Wh.ndim != 2 or Wh.shape[1] != gates * Wh.shape[0] or Wh.shape[0] < 1:
        _validate.fail(where, "Wh", f"of shape (H, {gates}*H) with H >= 1", f"shape {Wh.shape}")
    H = Wh.shape[0]
    shapes = {"h0": (N, H), "c0": (N, H), "dc_last": (N, H), "Wx": (D, gates * H), "b": (gates * H,),
              "bh": (gates * H,), "hs": (N, T, H), "cs": (N, T, H), "dhs": (N, T, H), "acts": (N, T, acts_gates * H)}
    for name, arr in arrays.items():
        if name in shapes:
            _validate.shape(arr, shapes[name], where, name)
    return [arrays.get(name) for name in named]


def check_rnn_forward(where, x, h0, Wx, Wh, b):
    """A tanh RNN's forward pass: x, h0, Wx, Wh, b in their common dtype (shapes in :func:`_recurrent`)."""
    return _recurrent(where, 1, 1, x=x, h0=h0, Wx=Wx, Wh=Wh, b=b)


def check_rnn_backward(where, dhs, x, h0, Wx, Wh, hs):
    """A tanh RNN's backward pass: dhs, x, h0, Wx, Wh, hs in their common dtype."""
    return _recurrent(where, 1, 1, dhs=dhs, x=x, h0=h0, Wx=Wx, Wh=Wh, hs=hs)


def check_lstm_forward(where, x, h0, c0, Wx, Wh, b, layout):
    """An LSTM's forward pass: the arrays in their common dtype, then ``layout``."""
    layout = lstm_layout(layout, where)
    return (*_recurrent(where, 4, 4, x=x, h0=h0, c0=c0, Wx=Wx, Wh=Wh, b=b), layout)


def check_lstm_backward(where, dhs, dc_last, x, h0, c0, Wx, Wh, hs, cs, acts, layout):
    """An LSTM's backward pass: the arrays in their common dtype (``dc_last`` may be None: zero), then
    ``layout``."""
    layout = lstm_layout(layout, where)
    return (*_recurrent(where, 4, 4, dhs=dhs, dc_last=dc_last, x=x, h0=h0, c0=c0, Wx=Wx, Wh=Wh, hs=hs, cs=cs,
                        acts=acts), layout)


def check_gru_forward(where, x, h0, Wx, Wh, b, bh, form):
    """A GRU's forward pass: the form, then the arrays in their common dtype; ``bh`` is required by the torch
    form and refused by the dlfs2 form."""
    form = gru_form(form, where)
    if (bh is None) != (form == "dlfs2"):
        _validate.fail(where, "bh", "None with form='dlfs2' and the hidden bias (3*H,) with form='torch'",
                       "None" if bh is None else _validate.describe(bh))
    return (*_recurrent(where, 3, 3, x=x, h0=h0, Wx=Wx, Wh=Wh, b=b, bh=bh), form)


def check_gru_backward(where, dhs, x, h0, Wx, Wh, hs, acts, form):
    """A GRU's backward pass: the form, then the arrays in their common dtype (``acts`` has 3 blocks in the
    dlfs2 form, 4 in the torch form)."""
    form = gru_form(form, where)
    return (*_recurrent(where, 3, 3 if form == "dlfs2" else 4, dhs=dhs, x=x, h0=h0, Wx=Wx, Wh=Wh, hs=hs,
                        acts=acts), form)


# Sequences: embedding, time-distributed softmax cross-entropy, gradient clipping


def _token_ids(idx: Any, vocab: int, where: str, name: str = "idx") -> np.ndarray:
    """Token ids: an integer array (any shape, 0-d included) with every value in [0, vocab), as int64."""
    if not isinstance(idx, (np.ndarray, list, tuple, int, np.integer)) or isinstance(idx, (bool, np.bool_)):
        _validate.fail(where, name, "an integer array of token ids", _validate.describe(idx), TypeError)
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        _validate.fail(where, name, "an integer array of token ids", f"dtype {idx.dtype}", TypeError)
    if idx.size and (idx.min() < 0 or idx.max() >= vocab):
        _validate.fail(where, name, f"token ids in [0, {vocab})", f"values in [{idx.min()}, {idx.max()}]")
    return idx.astype(np.int64, copy=False)


def check_embedding_forward(where: str, W: Any, idx: Any) -> tuple[np.ndarray, np.ndarray]:
    """An embedding lookup: ``W`` (V, D) as a float array, ``idx`` token ids in [0, V) as int64."""
    W = _validate.float_array(W, where, "W", ndim=2)
    return W, _token_ids(idx, W.shape[0], where)


def check_embedding_backward(where: str, dout: Any, idx: Any, vocab_size: Any,
                             out: Any = None) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """An embedding's weight gradient: ``vocab_size`` V >= 1, ids in [0, V), ``dout`` of shape idx.shape + (D,),
    an optional ``out`` (V, D) of dout's dtype."""
    vocab_size = _validate.integer(vocab_size, where, "vocab_size", minimum=1, maximum=_validate.MAX_SIZE)
    dout = _validate.float_array(dout, where, "dout")
    idx = _token_ids(idx, vocab_size, where)
    if dout.ndim != idx.ndim + 1 or dout.shape[:-1] != idx.shape:
        _validate.fail(where, "dout", f"of shape {idx.shape} + (D,) like idx", f"shape {dout.shape}")
    return dout, idx, vocab_size, check_out(where, out, (vocab_size, dout.shape[-1]), dout.dtype)


def check_embedding_dot(where: str, W: Any, idx: Any, h: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dot product of embedding rows with hidden vectors: ``W`` (V, D) and ``h`` (N, D) as floats of their
    common dtype, ``idx`` N token ids in [0, V)."""
    W, h = _validate.float_arrays(where, W=W, h=h)
    if W.ndim != 2:
        _validate.fail(where, "W", "2-D (V, D)", f"{W.ndim}-D array of shape {W.shape}")
    if h.ndim != 2 or h.shape[1] != W.shape[1]:
        _validate.fail(where, "h", f"of shape (N, {W.shape[1]})", f"shape {h.shape}")
    idx = _token_ids(idx, W.shape[0], where)
    if idx.shape != (h.shape[0],):
        _validate.fail(where, "idx", f"of shape ({h.shape[0]},) like h's rows", f"shape {idx.shape}")
    return W, idx, h


def check_embedding_dot_backward(where: str, dout: Any, W: Any, idx: Any,
                                 h: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Its backward pass: as :func:`check_embedding_dot`, and ``dout`` (N,) in the common dtype."""
    dout, W, h = _validate.float_arrays(where, dout=dout, W=W, h=h)
    W, idx, h = check_embedding_dot(where, W, idx, h)
    _validate.shape(dout, (h.shape[0],), where, "dout")
    return dout, W, idx, h


AVERAGES = ("valid", "batch")


def _time_labels(t: Any, shape: tuple[int, ...], ignore_label: int, where: str) -> np.ndarray:
    """Labels of (N, T) positions over V classes: ints in [0, V) or ``ignore_label``, or one-hot (N, T, V) (the
    book's TimeSoftmaxWithLoss takes both); returned as int64 (N, T)."""
    n, steps, classes = shape
    t = np.asarray(t)
    if t.dtype.kind not in "iuf" or t.dtype.kind == "b":
        _validate.fail(where, "t", "integer labels (N, T) or one-hot floats (N, T, V)", f"dtype {t.dtype}", TypeError)
    if t.ndim == 3:
        if t.shape != shape:
            _validate.fail(where, "t", f"one-hot of shape {shape}", f"shape {t.shape}")
        if not np.all((t == 0) | (t == 1)) or not np.all(t.sum(axis=2) == 1):
            _validate.fail(where, "t", "one-hot vectors (a single 1, zeros elsewhere)", "other values")
        return np.argmax(t, axis=2).astype(np.int64)
    if t.shape != (n, steps):
        _validate.fail(where, "t", f"of shape {(n, steps)} (or one-hot {shape})", f"shape {t.shape}")
    if t.dtype.kind == "f" and (not np.all(np.isfinite(t)) or not np.all(t == np.round(t))):
        _validate.fail(where, "t", "whole-number labels", "non-integer values")
    bad = (t != ignore_label) & ((t < 0) | (t >= classes))
    if bad.any():
        _validate.fail(where, "t", f"labels in [0, {classes}) or ignore_label {ignore_label}",
                       f"{t[bad].flat[0].item()!r} at {tuple(int(i) for i in np.argwhere(bad)[0])}")
    return t.astype(np.int64, copy=False)


def _time_loss_options(where: str, ignore_label: Any, average: Any) -> tuple[int, str]:
    ignore_label = _validate.integer(ignore_label, where, "ignore_label")
    if not isinstance(average, str) or average not in AVERAGES:
        _validate.fail(where, "average", "'valid' or 'batch'", _validate.describe(average),
                       ValueError if isinstance(average, str) else TypeError)
    return ignore_label, average


def _time_count(t: np.ndarray, ignore_label: int, average: str, where: str) -> None:
    if _validate.time_loss_divisor(t, ignore_label, average) == 0:
        _validate.fail(where, "t", f"at least one label other than ignore_label {ignore_label} (the loss is their "
                       "mean)", "none")


def check_time_softmax_cross_entropy(where: str, x: Any, t: Any, ignore_label: Any,
                                     average: Any) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Time-distributed softmax cross-entropy's forward pass: scores (N, T, V) with N, V >= 1, labels (at least
    one counted with ``average='valid'``), the options; returns x, int64 labels (N, T), ignore_label, average."""
    ignore_label, average = _time_loss_options(where, ignore_label, average)
    x = _validate.float_array(x, where, "x", ndim=3)
    if x.shape[0] < 1:
        _validate.fail(where, "N", ">= 1 (a loss is a mean over the batch)", x.shape[0])
    if x.shape[2] < 1:
        _validate.fail(where, "V", ">= 1 class", x.shape[2])
    t = _time_labels(t, x.shape, ignore_label, where)
    _time_count(t, ignore_label, average, where)
    return x, t, ignore_label, average


def check_time_softmax_cross_entropy_backward(where: str, probs: Any, t: Any, ignore_label: Any, dout: Any,
                                              average: Any) -> tuple[np.ndarray, np.ndarray, int, float, str]:
    """Its backward pass: probs (N, T, V) with N >= 1, labels as in the forward pass, a finite ``dout``, the
    options."""
    ignore_label, average = _time_loss_options(where, ignore_label, average)
    probs = _validate.float_array(probs, where, "probs", ndim=3)
    if probs.shape[0] < 1:
        _validate.fail(where, "N", ">= 1 (a loss is a mean over the batch)", probs.shape[0])
    t = _time_labels(t, probs.shape, ignore_label, where)
    dout = _validate.scalar(dout, where, "dout")
    _time_count(t, ignore_label, average, where)
    return probs, t, ignore_label, dout, average


def check_clip_grads(where: str, grads: Any, max_norm: Any) -> tuple[list[np.ndarray], float]:
    """Global-norm clipping: ``grads`` a list or tuple of writeable float32/float64 arrays (scaled in place),
    ``max_norm`` finite and >= 0."""
    if not isinstance(grads, (list, tuple)):
        _validate.fail(where, "grads", "a list of arrays", _validate.describe(grads), TypeError)
    for i, g in enumerate(grads):
        _validate.inplace_array(g, where, f"grads[{i}]")
    return list(grads), _validate.scalar(max_norm, where, "max_norm", ge=0.0)

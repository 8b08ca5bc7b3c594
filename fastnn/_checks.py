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


def check_svm_loss(where: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """A loss over (N, K) scores with N, K >= 1, and their labels ``y`` as int64 (see
    :func:`fastnn._validate.labels`)."""
    x = _scores(where, x, loss=True)
    return x, _validate.labels(y, x.shape[0], x.shape[1], where, "y")


def check_softmax_cross_entropy(where: str, x: Any, t: Any, delta: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax cross-entropy's forward pass: scores and labels ``t`` as in :func:`check_svm_loss`, delta >= 0."""
    x = _scores(where, x, loss=True)
    labels = _validate.labels(t, x.shape[0], x.shape[1], where, "t")
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


def _norm_backward(where, ndims, min_batch, dout, x, gamma, mean, inv_std, param_shape):
    """What every normalization's backward checks: types, x, dout like x, gamma of ``param_shape(x.shape)``."""
    dout, x, gamma, mean, inv_std = _validate.float_arrays(where, dout=dout, x=x, gamma=gamma, mean=mean,
                                                           inv_std=inv_std)
    _norm_x(x, where, ndims, min_batch)
    _validate.shape(dout, x.shape, where, "dout")
    _validate.shape(gamma, param_shape(x.shape), where, "gamma")
    return dout, x, gamma, mean, inv_std


def check_batchnorm_forward_train(where, x, gamma, beta, running_mean, running_var, momentum, eps):
    """Returns x, gamma, beta (common float dtype), momentum in [0, 1], eps > 0; the running statistics must be
    writeable float arrays of shape (C,)."""
    x, gamma, beta = _validate.float_arrays(where, x=x, gamma=gamma, beta=beta)
    _norm_x(x, where, (2, 4), min_batch=1)
    C = x.shape[1]
    _shapes(where, (C,), gamma=gamma, beta=beta)
    for name, r in (("running_mean", running_mean), ("running_var", running_var)):
        _validate.inplace_array(r, where, name)
        _validate.shape(r, (C,), where, name)
    momentum = _validate.scalar(momentum, where, "momentum", ge=0.0, le=1.0)
    eps = _validate.scalar(eps, where, "eps", gt=0.0)
    return x, gamma, beta, momentum, eps


def check_batchnorm_forward_infer(where, x, gamma, beta, running_mean, running_var, eps):
    """Returns the five arrays in their common float dtype and eps."""
    x, gamma, beta, running_mean, running_var = _validate.float_arrays(
        where, x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    _norm_x(x, where, (2, 4), min_batch=0)
    _shapes(where, (x.shape[1],), gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    eps = _validate.scalar(eps, where, "eps", gt=0.0)
    return x, gamma, beta, running_mean, running_var, eps


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

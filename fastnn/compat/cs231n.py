"""cs231n assignment 2 on fastnn kernels: the same functions, arguments, caches and update rules.

Drop-in for ``cs231n/layers.py``, ``layer_utils.py``, ``fast_layers.py`` and ``optim.py``::

    from fastnn.compat.cs231n import affine_relu_forward, softmax_loss, adam  # instead of cs231n.*

Forward functions return ``(out, cache)``, backward functions take ``(dout, cache)``; parameter dicts
(``bn_param``, ``ln_param``, ``gn_param``, ``dropout_param``, ``conv_param``, ``pool_param``) and update-rule
``config`` dicts have cs231n's keys and defaults. All numerics run in :mod:`fastnn.kernels` (affine products by
:func:`fastnn.kernels.matmul`); the module attribute :data:`backend` names the kernel module, and the tests swap in
:mod:`fastnn.reference` to build a pure-NumPy twin of every function here.

Differences from cs231n, all deliberate:

* Caches are fastnn's own tuples (whatever the backward needs), not cs231n's; pass them back unchanged.
* ``dropout_forward`` draws its mask from fastnn's counter-based generator: ``dropout_param["seed"]`` makes it
  reproducible (the mask differs from ``np.random.seed(seed); np.random.rand(...) < p``), and without a seed a
  seed is drawn from NumPy's global generator, so ``np.random.seed`` still controls it. The cached mask is
  boolean; ``dropout_backward`` applies the ``1/p`` scale itself. The global generator is not reseeded.
* Max pooling gives a tied window's gradient to its first maximum (cs231n's fast layer splits it).
* Update rules: state arrays in ``config`` (``velocity``, ``cache``, ``m``, ``v``) are updated in place and stay in
  the dict; ``next_w`` is a new array except for ``sgd``, which, as in cs231n, updates ``w`` in place.
* float32 inputs stay float32 (cs231n promotes some results to float64); errors are ValueError/TypeError naming
  the function and argument.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _validate, kernels

__all__ = [
    "affine_forward", "affine_backward", "relu_forward", "relu_backward", "affine_relu_forward",
    "affine_relu_backward", "softmax_loss", "svm_loss", "batchnorm_forward", "batchnorm_backward",
    "batchnorm_backward_alt", "layernorm_forward", "layernorm_backward", "dropout_forward", "dropout_backward",
    "conv_forward_naive", "conv_backward_naive", "conv_forward_fast", "conv_backward_fast",
    "max_pool_forward_naive", "max_pool_backward_naive", "max_pool_forward_fast", "max_pool_backward_fast",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward", "spatial_groupnorm_forward",
    "spatial_groupnorm_backward", "conv_relu_forward", "conv_relu_backward", "conv_relu_pool_forward",
    "conv_relu_pool_backward", "sgd", "sgd_momentum", "rmsprop", "adam",
]

#: The kernel module every function computes with (:mod:`fastnn.kernels`; tests swap in :mod:`fastnn.reference`).
backend: Any = kernels


# ------------------------------------------------------------------------------------------------ helpers


def _params(d: Any, where: str, name: str) -> Mapping:
    if not isinstance(d, Mapping):
        _validate.fail(where, name, "a dict", f"{type(d).__name__}", TypeError)
    return d


def _key(d: Mapping, where: str, name: str, key: str) -> Any:
    if key not in d:
        _validate.fail(where, name, f"a dict with key {key!r}", f"keys {sorted(d)}")
    return d[key]


def _mode(d: Mapping, where: str, name: str) -> str:
    mode = _key(d, where, name, "mode")
    if mode not in ("train", "test"):
        _validate.fail(where, f"{name}['mode']", "'train' or 'test'", repr(mode))
    return mode


def _running(d: dict, key: str, size: int, dtype: np.dtype, where: str, name: str) -> np.ndarray:
    """A running statistic of ``d`` usable in place: created as zeros, or brought to dtype (stored back)."""
    r = d.get(key)
    if r is None:
        r = np.zeros(size, dtype)
    else:
        r = _validate.float_array(r, where, f"{name}[{key!r}]")
        if r.shape != (size,):
            _validate.fail(where, f"{name}[{key!r}]", f"of shape ({size},)", f"shape {r.shape}")
        if r.dtype != dtype or not r.flags.writeable or not r.flags.c_contiguous:
            r = np.array(r, dtype=dtype, order="C")
    d[key] = r
    return r


def _cache(cache: Any, where: str, length: int) -> tuple:
    if not isinstance(cache, (tuple, list)) or len(cache) != length:
        _validate.fail(where, "cache", f"the cache tuple returned by the matching forward (length {length})",
                       f"{type(cache).__name__}", TypeError)
    return tuple(cache)


# ------------------------------------------------------------------------------------------------ affine, relu


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Fully connected layer: ``out = x.reshape(N, D) @ w + b``.

    Parameters
    ----------
    x : array_like (N, d_1, ..., d_k), D = d_1 * ... * d_k
    w : array_like (D, M)
    b : array_like (M,)

    Returns
    -------
    out : ndarray (N, M)
    cache : tuple for :func:`affine_backward`
    """
    where = "affine_forward"
    x, w, b = _validate.float_arrays(where, x=x, w=w, b=b)
    if w.ndim != 2:
        _validate.fail(where, "w", "2-D (D, M)", f"shape {w.shape}")
    if x.ndim < 1 or math.prod(x.shape[1:]) != w.shape[0]:
        _validate.fail(where, "x", f"of shape (N, d_1, ..., d_k) with d_1*...*d_k = {w.shape[0]} (w.shape[0])",
                       f"shape {x.shape}")
    _validate.shape(b, (w.shape[1],), where, "b")
    out = backend.matmul(x.reshape(x.shape[0], w.shape[0]), w) + b
    return out, (x, w, b)


def affine_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`affine_forward`.

    Parameters
    ----------
    dout : array_like (N, M)
    cache : from affine_forward

    Returns
    -------
    dx : ndarray, x's shape
    dw : ndarray (D, M)
    db : ndarray (M,)
    """
    where = "affine_backward"
    x, w, _ = _cache(cache, where, 3)
    dout = _validate.float_array(dout, where, "dout", dtype=x.dtype)
    _validate.shape(dout, (x.shape[0], w.shape[1]), where, "dout")
    x2 = x.reshape(x.shape[0], w.shape[0])
    return backend.matmul(dout, w.T).reshape(x.shape), backend.matmul(x2.T, dout), dout.sum(axis=0)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ReLU of any shape; cache = x."""
    x = _validate.float_array(x, "relu_forward", "x")
    return backend.relu_forward(x), x


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """Gradient of ReLU; ``cache`` is the forward input."""
    return backend.relu_backward(dout, cache)


def affine_relu_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Affine followed by ReLU (cs231n ``layer_utils``)."""
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`affine_relu_forward`: (dx, dw, db)."""
    fc_cache, relu_cache = _cache(cache, "affine_relu_backward", 2)
    return affine_backward(relu_backward(dout, relu_cache), fc_cache)


# ------------------------------------------------------------------------------------------------ losses


def softmax_loss(x: np.ndarray, y: np.ndarray) -> tuple[np.generic, np.ndarray]:
    """Mean softmax cross-entropy and its gradient.

    Parameters
    ----------
    x : array_like (N, C)
        Class scores.
    y : array_like int (N,)
        Labels in [0, C).

    Returns
    -------
    loss : 0-d scalar of x's float dtype
    dx : ndarray (N, C)
    """
    loss, probs = backend.softmax_cross_entropy_forward(x, y)
    return loss, backend.softmax_cross_entropy_backward(probs, y)


def svm_loss(x: np.ndarray, y: np.ndarray) -> tuple[np.generic, np.ndarray]:
    """Multiclass SVM (hinge, margin 1) loss and gradient; x (N, C), y int (N,)."""
    return backend.svm_loss(x, y)


# ------------------------------------------------------------------------------------------------ normalization


def _batchnorm(where: str, x, gamma, beta, bn_param, ndim: int) -> tuple[np.ndarray, tuple | None]:
    bn_param = _params(bn_param, where, "bn_param")
    mode = _mode(bn_param, where, "bn_param")
    eps = _validate.scalar(bn_param.get("eps", 1e-5), where, "bn_param['eps']", gt=0)
    momentum = _validate.scalar(bn_param.get("momentum", 0.9), where, "bn_param['momentum']", ge=0, le=1)
    x = _validate.float_array(x, where, "x", ndim=ndim)
    size = x.shape[1]
    running_mean = _running(bn_param, "running_mean", size, x.dtype, where, "bn_param")
    running_var = _running(bn_param, "running_var", size, x.dtype, where, "bn_param")
    if mode == "test":
        return backend.batchnorm_forward_infer(x, gamma, beta, running_mean, running_var, eps), None
    out, mean, inv_std = backend.batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps)
    return out, (x, _validate.float_array(gamma, where, "gamma"), mean, inv_std)


def _train_cache(cache: Any, where: str, length: int) -> tuple:
    if cache is None:
        _validate.fail(where, "cache", "a cache from a 'train' mode forward", "None (a 'test' mode forward)")
    return _cache(cache, where, length)


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: dict) -> tuple[np.ndarray, Any]:
    """Batch normalization of (N, D) features.

    Parameters
    ----------
    x : array_like (N, D)
    gamma, beta : array_like (D,)
    bn_param : dict
        ``mode`` ('train' or 'test', required), ``eps`` (1e-5), ``momentum`` (0.9), ``running_mean`` and
        ``running_var`` ((D,), created as zeros when missing, updated in place in 'train' mode:
        ``running = momentum * running + (1 - momentum) * batch``).

    Returns
    -------
    out : ndarray (N, D)
    cache : tuple for :func:`batchnorm_backward` ('train' mode), None in 'test' mode
    """
    return _batchnorm("batchnorm_forward", x, gamma, beta, bn_param, 2)


def batchnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of 'train' mode :func:`batchnorm_forward`: (dx (N, D), dgamma (D,), dbeta (D,))."""
    x, gamma, mean, inv_std = _train_cache(cache, "batchnorm_backward", 4)
    return backend.batchnorm_backward(dout, x, gamma, mean, inv_std)


def batchnorm_backward_alt(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same as :func:`batchnorm_backward` (fastnn has one, simplified, backward formula)."""
    x, gamma, mean, inv_std = _train_cache(cache, "batchnorm_backward_alt", 4)
    return backend.batchnorm_backward(dout, x, gamma, mean, inv_std)


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, ln_param: dict) -> tuple[np.ndarray, tuple]:
    """Layer normalization of each sample of (N, D); ``ln_param`` may hold ``eps`` (1e-5).

    Returns
    -------
    out : ndarray (N, D)
    cache : tuple for :func:`layernorm_backward`
    """
    where = "layernorm_forward"
    ln_param = _params(ln_param, where, "ln_param")
    eps = _validate.scalar(ln_param.get("eps", 1e-5), where, "ln_param['eps']", gt=0)
    x = _validate.float_array(x, where, "x", ndim=2)
    out, mean, inv_std = backend.layernorm_forward(x, gamma, beta, eps)
    return out, (x, _validate.float_array(gamma, where, "gamma"), mean, inv_std)


def layernorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`layernorm_forward`: (dx (N, D), dgamma (D,), dbeta (D,))."""
    x, gamma, mean, inv_std = _cache(cache, "layernorm_backward", 4)
    return backend.layernorm_backward(dout, x, gamma, mean, inv_std)


def spatial_batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                              bn_param: dict) -> tuple[np.ndarray, Any]:
    """Batch normalization per channel of (N, C, H, W); gamma, beta (C,); ``bn_param`` as in batchnorm_forward."""
    return _batchnorm("spatial_batchnorm_forward", x, gamma, beta, bn_param, 4)


def spatial_batchnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of 'train' mode :func:`spatial_batchnorm_forward`: (dx, dgamma (C,), dbeta (C,))."""
    x, gamma, mean, inv_std = _train_cache(cache, "spatial_batchnorm_backward", 4)
    return backend.batchnorm_backward(dout, x, gamma, mean, inv_std)


def spatial_groupnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, G: int,
                              gn_param: dict) -> tuple[np.ndarray, tuple]:
    """Group normalization of (N, C, H, W) in ``G`` groups of C/G channels.

    Parameters
    ----------
    x : array_like (N, C, H, W)
    gamma, beta : array_like (1, C, 1, 1)
    G : int
        Number of groups; divides C.
    gn_param : dict
        May hold ``eps`` (1e-5).

    Returns
    -------
    out : ndarray (N, C, H, W)
    cache : tuple for :func:`spatial_groupnorm_backward`
    """
    where = "spatial_groupnorm_forward"
    gn_param = _params(gn_param, where, "gn_param")
    eps = _validate.scalar(gn_param.get("eps", 1e-5), where, "gn_param['eps']", gt=0)
    x = _validate.float_array(x, where, "x", ndim=4)
    C = x.shape[1]
    gamma = _validate.float_array(gamma, where, "gamma")
    beta = _validate.float_array(beta, where, "beta")
    _validate.shape(gamma, (1, C, 1, 1), where, "gamma")
    _validate.shape(beta, (1, C, 1, 1), where, "beta")
    G = _validate.integer(G, where, "G", minimum=1)
    out, mean, inv_std = backend.groupnorm_forward(x, gamma.reshape(C), beta.reshape(C), G, eps)
    return out, (x, gamma.reshape(C), G, mean, inv_std)


def spatial_groupnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`spatial_groupnorm_forward`: (dx, dgamma (1, C, 1, 1), dbeta (1, C, 1, 1))."""
    x, gamma, G, mean, inv_std = _cache(cache, "spatial_groupnorm_backward", 5)
    dx, dgamma, dbeta = backend.groupnorm_backward(dout, x, gamma, G, mean, inv_std)
    C = x.shape[1]
    return dx, dgamma.reshape(1, C, 1, 1), dbeta.reshape(1, C, 1, 1)


# ------------------------------------------------------------------------------------------------ dropout


def dropout_forward(x: np.ndarray, dropout_param: dict) -> tuple[np.ndarray, tuple]:
    """Inverted dropout: in 'train' mode keep each element with probability ``p`` and scale it by ``1/p``.

    Parameters
    ----------
    x : array_like, any shape
    dropout_param : dict
        ``p`` (keep probability in (0, 1]), ``mode`` ('train' or 'test'), optional ``seed`` (int in [0, 2**64)).

    Returns
    -------
    out : ndarray, x's shape and float dtype (x itself, as a float array, in 'test' mode)
    cache : (dropout_param, mask); mask is a bool array in 'train' mode, None in 'test' mode
    """
    where = "dropout_forward"
    dropout_param = _params(dropout_param, where, "dropout_param")
    p = _validate.scalar(_key(dropout_param, where, "dropout_param", "p"), where, "dropout_param['p']", gt=0, le=1)
    mode = _mode(dropout_param, where, "dropout_param")
    x = _validate.float_array(x, where, "x")
    if mode == "test":
        return x, (dropout_param, None)
    seed = dropout_param.get("seed")
    if seed is None:
        # the legacy global generator on purpose: cs231n code seeds it with np.random.seed
        seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))  # noqa: NPY002
    mask = backend.dropout_mask(x.shape, 1.0 - p, seed)
    return backend.dropout_forward(x, mask, 1.0 / p), (dropout_param, mask)


def dropout_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Gradient of :func:`dropout_forward`."""
    where = "dropout_backward"
    dropout_param, mask = _cache(cache, where, 2)
    if dropout_param["mode"] == "test":
        return _validate.float_array(dout, where, "dout")
    return backend.dropout_backward(dout, mask, 1.0 / float(dropout_param["p"]))


# ------------------------------------------------------------------------------------------------ conv, pool


def _conv_geometry(conv_param: Any, where: str) -> tuple[Any, Any]:
    conv_param = _params(conv_param, where, "conv_param")
    return _key(conv_param, where, "conv_param", "stride"), _key(conv_param, where, "conv_param", "pad")


def conv_forward_fast(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict) -> tuple[np.ndarray, tuple]:
    """Convolution (cross-correlation) with zero padding.

    Parameters
    ----------
    x : array_like (N, C, H, W)
    w : array_like (F, C, HH, WW)
    b : array_like (F,)
    conv_param : dict
        ``stride`` and ``pad`` (ints, or (vertical, horizontal) pairs).

    Returns
    -------
    out : ndarray (N, F, H', W'), H' = 1 + (H + 2 pad - HH) // stride
    cache : (x, w, b, conv_param, workspace)
        ``workspace`` holds the forward's column matrix for the backward pass (cs231n's fast layer keeps
        ``x_cols`` the same way).
    """
    stride, pad = _conv_geometry(conv_param, "conv_forward_fast")
    workspace: dict = {}
    out = backend.conv2d_forward(x, w, b, stride, pad, cache=workspace)
    return out, (x, w, b, conv_param, workspace)


def conv_backward_fast(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_forward_fast`: (dx, dw, db)."""
    x, w, _, conv_param, workspace = _cache(cache, "conv_backward_fast", 5)
    stride, pad = _conv_geometry(conv_param, "conv_backward_fast")
    return backend.conv2d_backward(dout, x, w, stride, pad, cache=workspace)


#: cs231n's naive loops and its fast layers compute the same thing; here both are the kernel.
conv_forward_naive = conv_forward_fast
conv_backward_naive = conv_backward_fast


def _pool_geometry(pool_param: Any, where: str) -> tuple[Any, Any, Any]:
    pool_param = _params(pool_param, where, "pool_param")
    return tuple(_key(pool_param, where, "pool_param", k) for k in ("pool_height", "pool_width", "stride"))


def max_pool_forward_fast(x: np.ndarray, pool_param: dict) -> tuple[np.ndarray, tuple]:
    """Max pooling without padding.

    Parameters
    ----------
    x : array_like (N, C, H, W)
    pool_param : dict
        ``pool_height``, ``pool_width``, ``stride``.

    Returns
    -------
    out : ndarray (N, C, H', W'), H' = 1 + (H - pool_height) // stride
    cache : for :func:`max_pool_backward_fast`
    """
    ph, pw, stride = _pool_geometry(pool_param, "max_pool_forward_fast")
    x = _validate.float_array(x, "max_pool_forward_fast", "x", ndim=4)
    out, argmax = backend.maxpool2d_forward(x, ph, pw, stride)
    return out, (x.shape, argmax, pool_param)


def max_pool_backward_fast(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Gradient of :func:`max_pool_forward_fast` (each window's gradient goes to its first maximum)."""
    shape, argmax, pool_param = _cache(cache, "max_pool_backward_fast", 3)
    ph, pw, stride = _pool_geometry(pool_param, "max_pool_backward_fast")
    return backend.maxpool2d_backward(dout, argmax, shape, ph, pw, stride)


max_pool_forward_naive = max_pool_forward_fast
max_pool_backward_naive = max_pool_backward_fast


def conv_relu_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict) -> tuple[np.ndarray, tuple]:
    """Convolution followed by ReLU (cs231n ``layer_utils``)."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_relu_forward`: (dx, dw, db)."""
    conv_cache, relu_cache = _cache(cache, "conv_relu_backward", 2)
    return conv_backward_fast(relu_backward(dout, relu_cache), conv_cache)


def conv_relu_pool_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict,
                           pool_param: dict) -> tuple[np.ndarray, tuple]:
    """Convolution, ReLU, max pooling (cs231n ``layer_utils``)."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_relu_pool_forward`: (dx, dw, db)."""
    conv_cache, relu_cache, pool_cache = _cache(cache, "conv_relu_pool_backward", 3)
    ds = max_pool_backward_fast(dout, pool_cache)
    return conv_backward_fast(relu_backward(ds, relu_cache), conv_cache)


# ------------------------------------------------------------------------------------------------ update rules


def _config(config: Any, where: str) -> dict:
    if config is None:
        return {}
    if not isinstance(config, dict):
        _validate.fail(where, "config", "a dict or None", type(config).__name__, TypeError)
    return config


def _hyper(config: dict, where: str, key: str, **bounds: float) -> float:
    return _validate.scalar(config[key], where, f"config[{key!r}]", **bounds)


def _weights(w: Any, dw: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A new C-contiguous float copy of w (the next weights) and dw checked against it."""
    w = _validate.float_array(w, where, "w")
    dw = _validate.float_array(dw, where, "dw")
    if dw.shape != w.shape:
        _validate.fail(where, "dw", f"of shape {w.shape} like w", f"shape {dw.shape}")
    return np.array(w, order="C"), dw


def _state(config: dict, key: str, w: np.ndarray, where: str) -> np.ndarray:
    """config[key] as a writeable array of w's shape and dtype (zeros when missing), stored back in config."""
    s = config.get(key)
    if s is None:
        s = np.zeros_like(w)
    else:
        s = _validate.float_array(s, where, f"config[{key!r}]")
        if s.shape != w.shape:
            _validate.fail(where, f"config[{key!r}]", f"of shape {w.shape} like w", f"shape {s.shape}")
        if s.dtype != w.dtype or not s.flags.writeable:
            s = s.astype(w.dtype)
    config[key] = s
    return s


def sgd(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    """Vanilla SGD, ``w -= learning_rate * dw`` in place (as cs231n); config: ``learning_rate`` (1e-2).

    Returns
    -------
    next_w : ndarray
        ``w`` itself when it is a writeable float32/float64 array, else an updated float copy.
    config : dict
    """
    where = "sgd"
    config = _config(config, where)
    config.setdefault("learning_rate", 1e-2)
    lr = _hyper(config, where, "learning_rate", gt=0)
    if isinstance(w, np.ndarray) and w.dtype in _validate.FLOAT_DTYPES and w.flags.writeable:
        next_w = w
    else:
        next_w = np.array(_validate.float_array(w, where, "w"), order="C")
    backend.sgd_step(next_w, dw, lr)
    return next_w, config


def sgd_momentum(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    """SGD with momentum: ``v = momentum * v - learning_rate * dw; next_w = w + v``.

    config: ``learning_rate`` (1e-2), ``momentum`` (0.9), ``velocity`` (zeros; updated in place).
    """
    where = "sgd_momentum"
    config = _config(config, where)
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    lr = _hyper(config, where, "learning_rate", gt=0)
    momentum = _hyper(config, where, "momentum", ge=0, lt=1)
    next_w, dw = _weights(w, dw, where)
    v = _state(config, "velocity", next_w, where)
    backend.momentum_step(next_w, dw, v, lr, momentum)
    return next_w, config


def rmsprop(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    """RMSProp: ``cache = decay_rate * cache + (1 - decay_rate) * dw**2; next_w = w - lr * dw / (sqrt(cache) + eps)``.

    config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8), ``cache`` (zeros; in place).
    """
    where = "rmsprop"
    config = _config(config, where)
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    lr = _hyper(config, where, "learning_rate", gt=0)
    decay_rate = _hyper(config, where, "decay_rate", ge=0, lt=1)
    eps = _hyper(config, where, "epsilon", gt=0)
    next_w, dw = _weights(w, dw, where)
    cache = _state(config, "cache", next_w, where)
    backend.rmsprop_step(next_w, dw, cache, lr, decay_rate, eps)
    return next_w, config


def adam(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    """Adam with bias correction, cs231n's form (``t`` is incremented first), one fused kernel pass.

    .. math:: m \\leftarrow \\beta_1 m + (1 - \\beta_1) dw, \\quad v \\leftarrow \\beta_2 v + (1 - \\beta_2) dw^2,
              \\quad w \\leftarrow w - \\eta \\frac{m / (1 - \\beta_1^t)}{\\sqrt{v / (1 - \\beta_2^t)} + \\epsilon}

    config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``epsilon`` (1e-8), ``m``, ``v``
    (zeros; updated in place), ``t`` (0).
    """
    where = "adam"
    config = _config(config, where)
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("t", 0)
    lr = _hyper(config, where, "learning_rate", gt=0)
    b1 = _hyper(config, where, "beta1", ge=0, lt=1)
    b2 = _hyper(config, where, "beta2", ge=0, lt=1)
    eps = _hyper(config, where, "epsilon", gt=0)
    t = _validate.integer(config["t"], where, "config['t']", minimum=0) + 1
    next_w, dw = _weights(w, dw, where)
    m = _state(config, "m", next_w, where)
    v = _state(config, "v", next_w, where)
    backend.adam_step(next_w, dw, m, v, lr, b1, b2, eps, 1.0 - b1**t, 1.0 - b2**t)
    config["t"] = t
    return next_w, config

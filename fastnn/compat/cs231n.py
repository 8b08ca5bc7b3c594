"""cs231n assignment 2 on fastnn kernels: the same functions, arguments, caches and update rules.

Drop-in for ``cs231n/layers.py``, ``layer_utils.py``, ``fast_layers.py`` and ``optim.py``::

    from fastnn.compat.cs231n import affine_relu_forward, softmax_loss, adam  # instead of cs231n.*

Forward functions return ``(out, cache)``, backward functions take ``(dout, cache)``; parameter dicts
(``bn_param``, ``ln_param``, ``gn_param``, ``dropout_param``, ``conv_param``, ``pool_param``) and update-rule
``config`` dicts have cs231n's keys and defaults. All numerics run in :mod:`fastnn.kernels` (affine products by
:func:`fastnn.kernels.matmul`), called through :data:`fastnn.backend.ops`: inside
``with fastnn.backend.using("reference"):`` every function here is its pure-NumPy twin.

Differences from cs231n, all deliberate:

* Caches are fastnn's own tuples (whatever the backward needs); pass them back unchanged. Those of
  ``fast_layers.py`` keep cs231n's layout, except that fastnn builds no NumPy column matrix: conv caches are
  ``(x, w, b, conv_param, workspace)`` (cs231n: ``x_cols`` last), ``max_pool_forward_fast`` returns
  ``("reshape", (x, x_reshaped, out))`` or ``("im2col", (x, None, x_cols_argmax, pool_param))``;
  ``max_pool_forward_naive`` caches ``(x, pool_param)`` as the starter specifies.
* ``dropout_forward`` draws its mask from fastnn's counter-based generator: ``dropout_param["seed"]`` makes it
  reproducible (the mask differs from ``np.random.seed(seed); np.random.rand(...) < p``), and without a seed a
  seed is drawn from NumPy's global generator, so ``np.random.seed`` still controls it. The cached mask is
  boolean; ``dropout_backward`` applies the ``1/p`` scale itself. The global generator is not reseeded.
* Max-pool ties follow cs231n layer by layer: the reshape path (``max_pool_backward_reshape``, so
  ``max_pool_backward_fast`` on square tiling pools) splits a window's gradient equally among its equal maxima;
  the im2col path and the naive layer give it to the first maximum.
* Layers cs231n ships broken are fixed: ``max_pool_forward_im2col`` (cs231n calls an undefined ``im2col``, so
  ``max_pool_forward_fast`` fails on non-tiling pools) works, and ``conv_forward_im2col`` computes non-square
  filters (cs231n's Cython im2col misplaces their rows: wrong values, or writes out of bounds). Windows that do
  not tile the input, which cs231n's im2col layers refuse, are accepted by ``max_pool_forward_fast`` (as by the
  naive layers).
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

from .. import _validate
from ..backend import ops

__all__ = [
    "affine_forward", "affine_backward", "relu_forward", "relu_backward", "affine_relu_forward",
    "affine_relu_backward", "softmax_loss", "svm_loss", "batchnorm_forward", "batchnorm_backward",
    "batchnorm_backward_alt", "layernorm_forward", "layernorm_backward", "dropout_forward", "dropout_backward",
    "conv_forward_naive", "conv_backward_naive", "conv_forward_fast", "conv_backward_fast",
    "conv_forward_im2col", "conv_backward_im2col", "conv_forward_strides", "conv_backward_strides",
    "max_pool_forward_naive", "max_pool_backward_naive", "max_pool_forward_fast", "max_pool_backward_fast",
    "max_pool_forward_reshape", "max_pool_backward_reshape", "max_pool_forward_im2col", "max_pool_backward_im2col",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward", "spatial_groupnorm_forward",
    "spatial_groupnorm_backward", "conv_relu_forward", "conv_relu_backward", "conv_bn_relu_forward",
    "conv_bn_relu_backward", "conv_relu_pool_forward", "conv_relu_pool_backward", "sgd", "sgd_momentum", "rmsprop",
    "adam",
]

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
    out = ops.matmul(x.reshape(x.shape[0], w.shape[0]), w) + b
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
    return ops.matmul(dout, w.T).reshape(x.shape), ops.matmul(x2.T, dout), dout.sum(axis=0)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ReLU of any shape; cache = x."""
    x = _validate.float_array(x, "relu_forward", "x")
    return ops.relu_forward(x), x


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """Gradient of ReLU; ``cache`` is the forward input."""
    return ops.relu_backward(dout, cache)


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
    loss, probs = ops.softmax_cross_entropy_forward(x, y)
    return loss, ops.softmax_cross_entropy_backward(probs, y)


def svm_loss(x: np.ndarray, y: np.ndarray) -> tuple[np.generic, np.ndarray]:
    """Multiclass SVM (hinge, margin 1) loss and gradient; x (N, C), y int (N,)."""
    return ops.svm_loss(x, y)


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
        return ops.batchnorm_forward_infer(x, gamma, beta, running_mean, running_var, eps), None
    out, mean, inv_std = ops.batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps)
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
    return ops.batchnorm_backward(dout, x, gamma, mean, inv_std)


def batchnorm_backward_alt(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same as :func:`batchnorm_backward` (fastnn has one, simplified, backward formula)."""
    x, gamma, mean, inv_std = _train_cache(cache, "batchnorm_backward_alt", 4)
    return ops.batchnorm_backward(dout, x, gamma, mean, inv_std)


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
    out, mean, inv_std = ops.layernorm_forward(x, gamma, beta, eps)
    return out, (x, _validate.float_array(gamma, where, "gamma"), mean, inv_std)


def layernorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`layernorm_forward`: (dx (N, D), dgamma (D,), dbeta (D,))."""
    x, gamma, mean, inv_std = _cache(cache, "layernorm_backward", 4)
    return ops.layernorm_backward(dout, x, gamma, mean, inv_std)


def spatial_batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                              bn_param: dict) -> tuple[np.ndarray, Any]:
    """Batch normalization per channel of (N, C, H, W); gamma, beta (C,); ``bn_param`` as in batchnorm_forward."""
    return _batchnorm("spatial_batchnorm_forward", x, gamma, beta, bn_param, 4)


def spatial_batchnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of 'train' mode :func:`spatial_batchnorm_forward`: (dx, dgamma (C,), dbeta (C,))."""
    x, gamma, mean, inv_std = _train_cache(cache, "spatial_batchnorm_backward", 4)
    return ops.batchnorm_backward(dout, x, gamma, mean, inv_std)


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
    out, mean, inv_std = ops.groupnorm_forward(x, gamma.reshape(C), beta.reshape(C), G, eps)
    return out, (x, gamma.reshape(C), G, mean, inv_std)


def spatial_groupnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`spatial_groupnorm_forward`: (dx, dgamma (1, C, 1, 1), dbeta (1, C, 1, 1))."""
    x, gamma, G, mean, inv_std = _cache(cache, "spatial_groupnorm_backward", 5)
    dx, dgamma, dbeta = ops.groupnorm_backward(dout, x, gamma, G, mean, inv_std)
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
    mask = ops.dropout_mask(x.shape, 1.0 - p, seed)
    return ops.dropout_forward(x, mask, 1.0 / p), (dropout_param, mask)


def dropout_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Gradient of :func:`dropout_forward`."""
    where = "dropout_backward"
    dropout_param, mask = _cache(cache, where, 2)
    if dropout_param["mode"] == "test":
        return _validate.float_array(dout, where, "dout")
    return ops.dropout_backward(dout, mask, 1.0 / float(dropout_param["p"]))


# ------------------------------------------------------------------------------------------------ conv, pool


def _conv_geometry(conv_param: Any, where: str) -> tuple[Any, Any]:
    conv_param = _params(conv_param, where, "conv_param")
    return _key(conv_param, where, "conv_param", "stride"), _key(conv_param, where, "conv_param", "pad")


def _conv_forward(where: str, x, w, b, conv_param, *, tiles: bool) -> tuple[np.ndarray, tuple]:
    """The convolution of every cs231n conv layer; ``tiles``: refuse windows that do not tile the padded input."""
    stride, pad = _conv_geometry(conv_param, where)
    if tiles:
        x = _validate.float_array(x, where, "x", ndim=4)
        w = _validate.float_array(w, where, "w", ndim=4)
        g = _validate.window_geometry(x.shape, w.shape[2], w.shape[3], stride, pad, where)
        # cs231n asserts width first, then height
        for size, pad_, window, step, names in ((g.W, g.PW, g.FW, g.SW, "W + 2*pad - WW"),
                                                 (g.H, g.PH, g.FH, g.SH, "H + 2*pad - HH")):
            span = size + 2 * pad_ - window
            if span % step:
                _validate.fail(where, "conv_param['stride']",
                               f"a divisor of {names} = {span} (the im2col layer needs windows that tile the "
                               "padded input; conv_forward_strides does not)", step)
    workspace: dict = {}
    out = ops.conv2d_forward(x, w, b, stride, pad, cache=workspace)
    return out, (x, w, b, conv_param, workspace)


def _conv_backward(where: str, dout, cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w, _, conv_param, workspace = _cache(cache, where, 5)
    stride, pad = _conv_geometry(conv_param, where)
    return ops.conv2d_backward(dout, x, w, stride, pad, cache=workspace)


def conv_forward_fast(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict) -> tuple[np.ndarray, tuple]:
    """Convolution (cross-correlation) with zero padding; cs231n's ``conv_forward_fast`` (= ``conv_forward_strides``).

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
        cs231n's ``(x, w, b, conv_param, x_cols)`` with fastnn's workspace in the last place: the kernel keeps
        its column matrix there for the backward pass (3x3 stride-1 convolutions, computed by Winograd, keep
        none), instead of a NumPy ``x_cols``.
    """
    return _conv_forward("conv_forward_fast", x, w, b, conv_param, tiles=False)


def conv_backward_fast(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_forward_fast`: (dx, dw, db)."""
    return _conv_backward("conv_backward_fast", dout, cache)


def conv_forward_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict) -> tuple[np.ndarray, tuple]:
    """cs231n's naive convolution, on the kernel: as :func:`conv_forward_fast`, but with the starter's documented
    cache ``(x, w, b, conv_param)`` (code that unpacks it works; the backward recomputes what it needs)."""
    out, cache = _conv_forward("conv_forward_naive", x, w, b, conv_param, tiles=False)
    return out, cache[:4]


def conv_backward_naive(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_forward_naive`: (dx, dw, db)."""
    x, w, _, conv_param = _cache(cache, "conv_backward_naive", 4)
    stride, pad = _conv_geometry(conv_param, "conv_backward_naive")
    return ops.conv2d_backward(dout, x, w, stride, pad)


def conv_forward_strides(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict) -> tuple[np.ndarray, tuple]:
    """cs231n's stride-trick convolution: as :func:`conv_forward_fast` (windows need not tile; the rest is dropped).

    Returns ``(out, (x, w, b, conv_param, workspace))``; see :func:`conv_forward_fast`.
    """
    return _conv_forward("conv_forward_strides", x, w, b, conv_param, tiles=False)


def conv_backward_strides(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_forward_strides`: (dx, dw, db)."""
    return _conv_backward("conv_backward_strides", dout, cache)


def conv_forward_im2col(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict) -> tuple[np.ndarray, tuple]:
    """cs231n's im2col convolution: as :func:`conv_forward_fast`, for windows that tile the padded input.

    Non-square filters are convolved correctly; cs231n's Cython im2col indexes their rows by
    ``ii * field_height``, which gives wrong values (HH < WW) or writes past its column matrix (HH > WW).

    Returns
    -------
    out, cache
        As :func:`conv_forward_fast`: ``(out, (x, w, b, conv_param, workspace))``.

    Raises
    ------
    ValueError
        Unless ``stride`` divides ``W + 2*pad - WW`` and ``H + 2*pad - HH`` (cs231n asserts it).
    """
    return _conv_forward("conv_forward_im2col", x, w, b, conv_param, tiles=True)


def conv_backward_im2col(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_forward_im2col`: (dx, dw, db)."""
    return _conv_backward("conv_backward_im2col", dout, cache)


def _pool_geometry(pool_param: Any, where: str) -> tuple[Any, Any, Any]:
    pool_param = _params(pool_param, where, "pool_param")
    return tuple(_key(pool_param, where, "pool_param", k) for k in ("pool_height", "pool_width", "stride"))


def _pool_dout(dout: Any, x: np.ndarray, where: str) -> np.ndarray:
    """dout in x's dtype: cs231n's pooling gradients are written into an array like x."""
    return _validate.float_array(dout, where, "dout", ndim=4, dtype=x.dtype)


def _reshape_applies(shape: tuple[int, ...], ph: Any, pw: Any, stride: Any) -> bool:
    """cs231n's ``max_pool_forward_fast`` test: square pools, stride = pool size, tiling H and W."""
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (ph, pw, stride))
    return ints and ph == pw == stride >= 1 and shape[2] % ph == 0 and shape[3] % pw == 0


def _reshape_forward(x: np.ndarray, size: int) -> tuple[np.ndarray, tuple]:
    out, _ = ops.maxpool2d_forward(x, size, size, size)
    N, C, H, W = x.shape
    return out, (x, x.reshape(N, C, H // size, size, W // size, size), out)


def _im2col_forward(x: np.ndarray, pool_param: dict, ph: Any, pw: Any, stride: Any) -> tuple[np.ndarray, tuple]:
    out, argmax = ops.maxpool2d_forward(x, ph, pw, stride)
    # cs231n's x_cols_argmax: each window's row in its column, columns ordered (oh, ow, n, c); np.argmax's dtype
    cols_argmax = argmax.transpose(2, 3, 0, 1).astype(np.intp).reshape(-1)
    return out, (x, None, cols_argmax, pool_param)


def max_pool_forward_fast(x: np.ndarray, pool_param: dict) -> tuple[np.ndarray, tuple]:
    """Max pooling without padding, dispatching as cs231n does between the reshape and the im2col layers.

    Parameters
    ----------
    x : array_like (N, C, H, W)
    pool_param : dict
        ``pool_height``, ``pool_width``, ``stride``.

    Returns
    -------
    out : ndarray (N, C, H', W'), H' = 1 + (H - pool_height) // stride
    cache : ``("reshape", cache)`` when ``pool_height == pool_width == stride`` and the pools tile H and W (see
        :func:`max_pool_forward_reshape`: the backward pass splits ties), else ``("im2col", cache)`` (see
        :func:`max_pool_forward_im2col`: the first maximum takes the gradient). Windows that do not tile the
        input, which cs231n's im2col layer refuses, are accepted here; what no window covers is dropped.
    """
    where = "max_pool_forward_fast"
    ph, pw, stride = _pool_geometry(pool_param, where)
    x = _validate.float_array(x, where, "x", ndim=4)
    if _reshape_applies(x.shape, ph, pw, stride):
        out, cache = _reshape_forward(x, ph)
        return out, ("reshape", cache)
    out, cache = _im2col_forward(x, pool_param, ph, pw, stride)
    return out, ("im2col", cache)


def max_pool_backward_fast(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Gradient of :func:`max_pool_forward_fast` by the backward of the layer its forward pass used."""
    where = "max_pool_backward_fast"
    method, real_cache = _cache(cache, where, 2)
    if not isinstance(method, str):
        _validate.fail(where, "cache[0]", "'reshape' or 'im2col' (the method max_pool_forward_fast used)",
                       type(method).__name__, TypeError)
    if method == "reshape":
        return max_pool_backward_reshape(dout, real_cache)
    if method == "im2col":
        return max_pool_backward_im2col(dout, real_cache)
    _validate.fail(where, "cache[0]", "'reshape' or 'im2col' (the method max_pool_forward_fast used)", repr(method))


def max_pool_forward_reshape(x: np.ndarray, pool_param: dict) -> tuple[np.ndarray, tuple]:
    """cs231n's reshape max pooling: square pools, ``stride`` equal to the pool size, tiling the input.

    Returns
    -------
    out : ndarray (N, C, H / pool_height, W / pool_width)
    cache : (x, x_reshaped, out)
        As cs231n: ``x_reshaped`` is x viewed as (N, C, H / pool_height, pool_height, W / pool_width, pool_width).

    Raises
    ------
    ValueError
        Unless ``pool_height == pool_width == stride`` and both H and W are multiples of it (cs231n asserts).
    """
    where = "max_pool_forward_reshape"
    ph, pw, stride = _pool_geometry(pool_param, where)
    x = _validate.float_array(x, where, "x", ndim=4)
    ph = _validate.integer(ph, where, "pool_param['pool_height']", minimum=1)
    pw = _validate.integer(pw, where, "pool_param['pool_width']", minimum=1)
    stride = _validate.integer(stride, where, "pool_param['stride']", minimum=1)
    if not ph == pw == stride:
        _validate.fail(where, "pool_param", "square pools with stride = pool size (pool_height == pool_width == "
                       "stride)", f"pool_height={ph}, pool_width={pw}, stride={stride}")
    if x.shape[2] % ph or x.shape[3] % pw:
        _validate.fail(where, "x", f"of height and width multiples of the pool size {ph} (pools that tile the input)",
                       f"shape {x.shape}")
    return _reshape_forward(x, ph)


def max_pool_backward_reshape(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Gradient of :func:`max_pool_forward_reshape`, cs231n's rule for ties.

    Each window's gradient is divided equally among its elements equal to the window's maximum (a window whose
    maximum is NaN gives NaN to all its elements, cs231n's ``0/0``); the kernel's ``ties="split"`` mode.

    Returns
    -------
    dx : ndarray, x's shape and dtype
    """
    where = "max_pool_backward_reshape"
    x, x_reshaped, out = _cache(cache, where, 3)
    size = x_reshaped.shape[3]
    dout = _pool_dout(dout, x, where)
    return ops.maxpool2d_backward(dout, None, x.shape, size, size, size, ties="split", x=x)


def max_pool_forward_im2col(x: np.ndarray, pool_param: dict) -> tuple[np.ndarray, tuple]:
    """cs231n's im2col max pooling: any pool and stride whose windows tile the input.

    cs231n's own version fails on every call (it calls an ``im2col`` that ``im2col.py`` does not define); this is
    what it means to compute: each window's first maximum, as ``np.argmax`` over the window's column.

    Returns
    -------
    out : ndarray (N, C, H', W'), H' = 1 + (H - pool_height) // stride
    cache : (x, None, x_cols_argmax, pool_param)
        cs231n's layout without the column matrix, which fastnn does not build (None in its place);
        ``x_cols_argmax`` (intp, length ``N*C*H'*W'``) is cs231n's: the row-major index of each window's first
        maximum, windows ordered (h', w', n, c).

    Raises
    ------
    ValueError
        Unless ``stride`` divides ``H - pool_height`` and ``W - pool_width`` (cs231n asserts).
    """
    where = "max_pool_forward_im2col"
    ph, pw, stride = _pool_geometry(pool_param, where)
    x = _validate.float_array(x, where, "x", ndim=4)
    g = _validate.pool_geometry(x.shape, ph, pw, stride, 0, where)
    for size, window, step, axis, name in ((g.H, g.FH, g.SH, "H", "pool_height"), (g.W, g.FW, g.SW, "W", "pool_width")):
        if (size - window) % step:
            _validate.fail(where, "pool_param['stride']", f"a divisor of {axis} - {name} = {size - window} "
                           "(the im2col layer needs windows that tile the input)", step)
    return _im2col_forward(x, pool_param, ph, pw, stride)


def max_pool_backward_im2col(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Gradient of :func:`max_pool_forward_im2col`: each window's gradient to its first maximum, overlaps adding.

    Returns
    -------
    dx : ndarray, x's shape and dtype
    """
    where = "max_pool_backward_im2col"
    x, _, cols_argmax, pool_param = _cache(cache, where, 4)
    ph, pw, stride = _pool_geometry(pool_param, where)
    g = _validate.pool_geometry(x.shape, ph, pw, stride, 0, where)
    dout = _pool_dout(dout, x, where)
    _validate.shape(dout, (g.N, g.C, g.OH, g.OW), where, "dout")
    argmax = np.reshape(cols_argmax, (g.OH, g.OW, g.N, g.C)).transpose(2, 3, 0, 1)
    return ops.maxpool2d_backward(dout, argmax, x.shape, ph, pw, stride)


def max_pool_forward_naive(x: np.ndarray, pool_param: dict) -> tuple[np.ndarray, tuple]:
    """Max pooling without padding; cache ``(x, pool_param)`` as cs231n's starter specifies.

    Windows that do not tile the input are accepted (H' = 1 + (H - pool_height) // stride).
    """
    where = "max_pool_forward_naive"
    ph, pw, stride = _pool_geometry(pool_param, where)
    x = _validate.float_array(x, where, "x", ndim=4)
    out, _ = ops.maxpool2d_forward(x, ph, pw, stride)
    return out, (x, pool_param)


def max_pool_backward_naive(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Gradient of :func:`max_pool_forward_naive`: each window's gradient to its first maximum (an argmax).

    The maxima are found again in the cached x, as the naive layer does; x's dtype.
    """
    where = "max_pool_backward_naive"
    x, pool_param = _cache(cache, where, 2)
    ph, pw, stride = _pool_geometry(pool_param, where)
    dout = _pool_dout(dout, x, where)
    _, argmax = ops.maxpool2d_forward(x, ph, pw, stride)
    return ops.maxpool2d_backward(dout, argmax, x.shape, ph, pw, stride)


def conv_relu_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict) -> tuple[np.ndarray, tuple]:
    """Convolution followed by ReLU (cs231n ``layer_utils``)."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_relu_forward`: (dx, dw, db)."""
    conv_cache, relu_cache = _cache(cache, "conv_relu_backward", 2)
    return conv_backward_fast(relu_backward(dout, relu_cache), conv_cache)


def conv_bn_relu_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                         conv_param: dict, bn_param: dict) -> tuple[np.ndarray, tuple]:
    """Convolution, spatial batch normalization, ReLU (cs231n ``layer_utils``).

    Returns ``(out, (conv_cache, bn_cache, relu_cache))``; ``bn_param`` as in :func:`spatial_batchnorm_forward`.
    """
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, ...]:
    """Gradients of 'train' mode :func:`conv_bn_relu_forward`: (dx, dw, db, dgamma, dbeta)."""
    conv_cache, bn_cache, relu_cache = _cache(cache, "conv_bn_relu_backward", 3)
    da, dgamma, dbeta = spatial_batchnorm_backward(relu_backward(dout, relu_cache), bn_cache)
    dx, dw, db = conv_backward_fast(da, conv_cache)
    return dx, dw, db, dgamma, dbeta


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
    ops.sgd_step(next_w, dw, lr)
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
    ops.momentum_step(next_w, dw, v, lr, momentum)
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
    ops.rmsprop_step(next_w, dw, cache, lr, decay_rate, eps)
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
    ops.adam_step(next_w, dw, m, v, lr, b1, b2, eps, 1.0 - b1**t, 1.0 - b2**t)
    config["t"] = t
    return next_w, config


# ------------------------------------------------------------------------------------------------ rnn_layers.py:
# vanilla RNN and LSTM, single steps and whole sequences (assignment 3)
#
# One whole-sequence kernel call each (fastnn.kernels.recurrent, gate blocks in cs231n's order i, f, o, g); a
# single step is a sequence of one step. Caches are fastnn's own tuples: pass them back unchanged. Results have
# the inputs' common float dtype (cs231n's rnn_forward/lstm_forward allocate float64 whatever the inputs).

__all__ += ["rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward", "lstm_step_forward",
            "lstm_step_backward", "lstm_forward", "lstm_backward"]

#: cs231n's gate order: ``ai, af, ao, ag = np.split(a, 4, axis=1)``.
LSTM_LAYOUT = "ifog"


def _one_step(x: Any, where: str) -> np.ndarray:
    """A step's input (N, D) as a sequence of one step (N, 1, D)."""
    return _validate.float_array(x, where, "x", ndim=2)[:, None, :]


def rnn_step_forward(x: np.ndarray, prev_h: np.ndarray, Wx: np.ndarray, Wh: np.ndarray,
                     b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """One tanh RNN step: ``next_h = tanh(prev_h @ Wh + x @ Wx + b)``.

    Parameters
    ----------
    x : array_like (N, D)
    prev_h : array_like (N, H)
    Wx : array_like (D, H)
    Wh : array_like (H, H)
    b : array_like (H,)

    Returns
    -------
    next_h : ndarray (N, H)
    cache : tuple for :func:`rnn_step_backward`
    """
    xs = _one_step(x, "rnn_step_forward")
    hs = ops.rnn_forward(xs, prev_h, Wx, Wh, b)
    return hs[:, 0], (xs, prev_h, Wx, Wh, hs)


def rnn_step_backward(dnext_h: np.ndarray, cache: tuple) -> tuple[np.ndarray, ...]:
    """Gradients of :func:`rnn_step_forward`: (dx (N, D), dprev_h (N, H), dWx, dWh, db)."""
    xs, prev_h, Wx, Wh, hs = _cache(cache, "rnn_step_backward", 5)
    dnext_h = _validate.float_array(dnext_h, "rnn_step_backward", "dnext_h", ndim=2)
    dx, dprev_h, dWx, dWh, db = ops.rnn_backward(dnext_h[:, None], xs, prev_h, Wx, Wh, hs)
    return dx[:, 0], dprev_h, dWx, dWh, db


def rnn_forward(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray,
                b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """A tanh RNN over whole sequences.

    Parameters
    ----------
    x : array_like (N, T, D)
    h0 : array_like (N, H)
    Wx : array_like (D, H)
    Wh : array_like (H, H)
    b : array_like (H,)

    Returns
    -------
    h : ndarray (N, T, H), the hidden state of every step
    cache : tuple for :func:`rnn_backward`
    """
    h = ops.rnn_forward(x, h0, Wx, Wh, b)
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh: np.ndarray, cache: tuple) -> tuple[np.ndarray, ...]:
    """Gradients of :func:`rnn_forward` from the upstream gradients of every step's state ``dh`` (N, T, H):
    (dx (N, T, D), dh0 (N, H), dWx, dWh, db)."""
    x, h0, Wx, Wh, h = _cache(cache, "rnn_backward", 5)
    return ops.rnn_backward(dh, x, h0, Wx, Wh, h)


def lstm_step_forward(x: np.ndarray, prev_h: np.ndarray, prev_c: np.ndarray, Wx: np.ndarray, Wh: np.ndarray,
                      b: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """One LSTM step, gate blocks of ``a = x @ Wx + prev_h @ Wh + b`` in cs231n's order i, f, o, g.

    Parameters
    ----------
    x : array_like (N, D)
    prev_h, prev_c : array_like (N, H)
    Wx : array_like (D, 4H)
    Wh : array_like (H, 4H)
    b : array_like (4H,)

    Returns
    -------
    next_h, next_c : ndarray (N, H)
    cache : tuple for :func:`lstm_step_backward`
    """
    xs = _one_step(x, "lstm_step_forward")
    hs, cs, acts = ops.lstm_forward(xs, prev_h, prev_c, Wx, Wh, b, layout=LSTM_LAYOUT)
    return hs[:, 0], cs[:, 0], (xs, prev_h, prev_c, Wx, Wh, hs, cs, acts)


def lstm_step_backward(dnext_h: np.ndarray, dnext_c: np.ndarray, cache: tuple) -> tuple[np.ndarray, ...]:
    """Gradients of :func:`lstm_step_forward`: (dx, dprev_h, dprev_c, dWx, dWh, db). ``dnext_c`` is not modified."""
    xs, prev_h, prev_c, Wx, Wh, hs, cs, acts = _cache(cache, "lstm_step_backward", 8)
    dnext_h = _validate.float_array(dnext_h, "lstm_step_backward", "dnext_h", ndim=2)
    dx, dprev_h, dprev_c, dWx, dWh, db = ops.lstm_backward(dnext_h[:, None], dnext_c, xs, prev_h, prev_c, Wx, Wh,
                                                           hs, cs, acts, layout=LSTM_LAYOUT)
    return dx[:, 0], dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray,
                 b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """An LSTM over whole sequences from ``h0`` and a zero initial cell state (cs231n's contract).

    Parameters
    ----------
    x : array_like (N, T, D)
    h0 : array_like (N, H)
    Wx : array_like (D, 4H), gate blocks i, f, o, g
    Wh : array_like (H, 4H)
    b : array_like (4H,)

    Returns
    -------
    h : ndarray (N, T, H)
    cache : tuple for :func:`lstm_backward`
    """
    h0_arr = _validate.float_array(h0, "lstm_forward", "h0", ndim=2)
    c0 = np.zeros_like(h0_arr)
    h, cs, acts = ops.lstm_forward(x, h0_arr, c0, Wx, Wh, b, layout=LSTM_LAYOUT)
    return h, (x, h0_arr, c0, Wx, Wh, h, cs, acts)


def lstm_backward(dh: np.ndarray, cache: tuple) -> tuple[np.ndarray, ...]:
    """Gradients of :func:`lstm_forward` from ``dh`` (N, T, H): (dx, dh0, dWx, dWh, db); no gradient flows into
    the final cell state (it is not an output)."""
    x, h0, c0, Wx, Wh, h, cs, acts = _cache(cache, "lstm_backward", 8)
    dx, dh0, _, dWx, dWh, db = ops.lstm_backward(dh, None, x, h0, c0, Wx, Wh, h, cs, acts, layout=LSTM_LAYOUT)
    return dx, dh0, dWx, dWh, db


# ------------------------------------------------------------------------------------------------ rnn_layers.py:
# word embedding, temporal affine, temporal softmax loss (assignment 3)

__all__ += ["word_embedding_forward", "word_embedding_backward", "temporal_affine_forward",
            "temporal_affine_backward", "temporal_softmax_loss"]


def word_embedding_forward(x: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Word vectors of integer ids: ``out = W[x]``.

    Parameters
    ----------
    x : int array_like (N, T), ids in [0, V) (negative ids are refused, not wrapped)
    W : array_like (V, D)

    Returns
    -------
    out : ndarray (N, T, D), W's float dtype
    cache : ``(x, W)``, as cs231n's
    """
    W = _validate.float_array(W, "word_embedding_forward", "W", ndim=2)
    out = ops.embedding_forward(W, x)
    return out, (x, W)


def word_embedding_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Gradient of :func:`word_embedding_forward` w.r.t. ``W``: each ``dout[n, t]`` added to row ``x[n, t]``
    (repeated ids accumulate, in the order ``np.add.at`` adds them). Returns dW (V, D) in W's dtype."""
    x, W = _cache(cache, "word_embedding_backward", 2)
    return ops.embedding_backward(dout, x, W.shape[0]).astype(W.dtype, copy=False)


def temporal_affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """The affine map of every step: ``out[n, t] = x[n, t] @ w + b``.

    Parameters
    ----------
    x : array_like (N, T, D)
    w : array_like (D, M)
    b : array_like (M,)

    Returns
    -------
    out : ndarray (N, T, M)
    cache : ``(x, w, b, out)``, as cs231n's
    """
    where = "temporal_affine_forward"
    x, w, b = _validate.float_arrays(where, x=x, w=w, b=b)
    if x.ndim != 3:
        _validate.fail(where, "x", "3-D (N, T, D)", f"shape {x.shape}")
    if w.ndim != 2 or w.shape[0] != x.shape[2]:
        _validate.fail(where, "w", f"of shape ({x.shape[2]}, M)", f"shape {w.shape}")
    _validate.shape(b, (w.shape[1],), where, "b")
    N, T, D = x.shape
    out = (ops.matmul(x.reshape(N * T, D), w) + b).reshape(N, T, w.shape[1])
    return out, (x, w, b, out)


def temporal_affine_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`temporal_affine_forward`: dx (N, T, D), dw (D, M), db (M,)."""
    where = "temporal_affine_backward"
    x, w, _, _ = _cache(cache, where, 4)
    N, T, D = x.shape
    dout = _validate.float_array(dout, where, "dout", dtype=x.dtype)
    _validate.shape(dout, (N, T, w.shape[1]), where, "dout")
    d2 = dout.reshape(N * T, -1)
    return (ops.matmul(d2, w.T).reshape(N, T, D), ops.matmul(x.reshape(N * T, D).T, d2), d2.sum(axis=0))


def temporal_softmax_loss(x: np.ndarray, y: np.ndarray, mask: np.ndarray,
                          verbose: bool = False) -> tuple[np.generic, np.ndarray]:
    """Softmax cross-entropy at every step where ``mask`` is True, summed over steps and averaged over the batch
    (divided by N, not by the number of unmasked steps), and its gradient.

    Parameters
    ----------
    x : array_like (N, T, V)
        Scores.
    y : int array_like (N, T), labels in [0, V)
    mask : bool array_like (N, T)
    verbose : bool
        cs231n prints the gradient's flat shape.

    Returns
    -------
    loss : 0-d scalar of x's float dtype
    dx : ndarray (N, T, V), zero where ``mask`` is False
    """
    where = "temporal_softmax_loss"
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        _validate.fail(where, "mask", "a bool array (N, T)", f"dtype {mask.dtype}", TypeError)
    y = np.asarray(y)
    if y.shape != mask.shape:
        _validate.fail(where, "y", f"of mask's shape {mask.shape}", f"shape {y.shape}")
    if y.dtype.kind not in "iu":
        _validate.fail(where, "y", "integer labels", f"dtype {y.dtype}", TypeError)
    if y.size and (y.min() < 0 or (np.ndim(x) == 3 and y.max() >= np.shape(x)[2])):
        _validate.fail(where, "y", f"labels in [0, {np.shape(x)[2]})", f"values in [{y.min()}, {y.max()}]")
    # a masked-out step is an ignored label: fastnn's kernel skips it (cs231n multiplies its log by 0)
    t = np.where(mask, y, -1)
    loss, probs = ops.time_softmax_cross_entropy_forward(x, t, -1, average="batch")
    dx = ops.time_softmax_cross_entropy_backward(probs, t, -1, 1.0, average="batch")
    if verbose:
        print("dx_flat: ", (dx.shape[0] * dx.shape[1], dx.shape[2]))
    return loss, dx

"""Scaled dot-product attention, GELU, softmax over the last axis and the sinusoidal positional encoding in NumPy:
the readable specification of :mod:`fastnn.kernels.attention`.

Attention materialises the (N, H, S, T) scores here; the kernel never does (it works in tiles and keeps only the
row-wise log-sum-exp ``lse`` for the backward pass, as FlashAttention does), and this module is what it must agree
with. Conventions, as PyTorch's ``scaled_dot_product_attention``:

* a bool ``mask`` keeps the positions where it is True (False positions get weight 0); a float ``mask`` is added
  to the scaled scores (``-inf`` removes a position); either broadcasts to (N, H, S, T);
* ``causal=True`` lets query ``s`` see keys ``t <= s`` (the top-left aligned triangle, also when S != T);
* a query row that sees no key at all (fully masked) gets **zeros** as output and as gradient, and ``lse = -inf``
  (PyTorch's math backend gives the same zeros since 2.5; the naive softmax would give NaN);
* NaN and Inf propagate as in PyTorch: a NaN in ``q`` makes its row NaN, a NaN in a key that a row attends makes
  that row NaN (``+inf`` scores give NaN, as ``inf - inf``);
* dropout acts on the weights after the softmax: ``P * keep / (1 - p)``, with ``keep`` the counter-based mask of
  :func:`fastnn.reference.dropout.dropout_mask` of shape (N, H, S, T) (element ``((n*H + h)*S + s)*T + t``), so
  the kernel, its twin and any thread count draw the same mask from ``(seed, index)`` alone.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _checks
from .dropout import _dropout_mask

__all__ = ["attention_forward", "attention_backward", "gelu_forward", "gelu_backward", "softmax_lastaxis_forward",
           "softmax_lastaxis_backward", "positional_encoding"]


def _scores(q, k, mask, causal, scale):
    """Scaled scores (N, H, S, T) with the mask and the causal triangle applied (removed positions ``-inf``)."""
    s = (q @ np.swapaxes(k, -1, -2)) * q.dtype.type(scale)
    if mask is not None:
        # a bool mask replaces (a NaN score at a removed position must not survive, as masked_fill does)
        s = np.where(mask, s, -np.inf) if mask.dtype == np.bool_ else s + mask
    if causal:
        s = np.where(np.tri(s.shape[-2], s.shape[-1], dtype=bool), s, -np.inf)
    return s.astype(q.dtype, copy=False)


def _weights(s, lse):
    """Softmax weights ``exp(s - lse)``; rows with ``lse = -inf`` (nothing attended) are zero."""
    empty = np.isneginf(lse)
    with np.errstate(invalid="ignore"):
        return np.where(empty[..., None], 0, np.exp(s - np.where(empty, 0, lse)[..., None])).astype(s.dtype)


def _keep(shape, dropout_p, seed, dtype):
    """The dropout factor of every weight, ``keep / (1 - p)`` (None without dropout)."""
    if dropout_p == 0:
        return None
    return _dropout_mask(shape, dropout_p, seed) * dtype.type(1 / (1 - dropout_p))


def attention_forward(q, k, v, mask=None, causal=False, scale=None, dropout_p=0.0, seed=0):
    r"""Scaled dot-product attention.

    .. math:: P = \mathrm{softmax}(q k^T \cdot \mathrm{scale} + M), \quad out = (P \circ Z) v, \quad
              lse = \log \sum_t e^{(q k^T \cdot \mathrm{scale} + M)_t}

    with :math:`M` the mask (0 or :math:`-\infty` for a bool mask and the causal triangle; added as given for a float
    mask) and :math:`Z` the dropout factor (``keep / (1 - dropout_p)``, 1 without dropout).

    Parameters
    ----------
    q : array_like (N, H, S, d), float32 or float64
        Queries: batch N, heads H, S query positions, d features per head (d >= 1).
    k : array_like (N, H, T, d)
        Keys (T >= 0 positions).
    v : array_like (N, H, T, dv)
        Values.
    mask : None, bool ndarray or float ndarray, broadcastable to (N, H, S, T)
        True keeps a position (bool); a float mask is added to the scaled scores (cast to q's dtype, never
        promoting it).
    causal : bool
        Query s sees keys t <= s only.
    scale : float or None
        Score scale; None: ``1 / sqrt(d)``.
    dropout_p : float in [0, 1)
        Probability of dropping a weight (training); the kept ones are scaled by ``1 / (1 - dropout_p)``.
    seed : int in [0, 2**64)
        Seed of the dropout mask (unused when ``dropout_p == 0``).

    Returns
    -------
    out : ndarray (N, H, S, dv), the common float dtype
        Zero for query rows that attend nothing.
    lse : ndarray (N, H, S), the same dtype
        Log of each row's sum of exponentials (``-inf`` for rows that attend nothing): all the backward needs.
    """
    return _attention_forward(*_checks.check_attention_forward("attention_forward", q, k, v, mask, causal, scale,
                                                               dropout_p, seed))


def _attention_forward(q, k, v, mask=None, causal=False, scale=None, dropout_p=0.0, seed=0):
    scale = 1 / math.sqrt(q.shape[3]) if scale is None else scale
    s = _scores(q, k, mask, causal, scale)
    m = s.max(axis=-1, initial=-np.inf)
    m = np.where(np.isneginf(m), 0, m)  # a fully masked row: exp(-inf - 0) = 0, log(0) = -inf
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = (m + np.log(np.exp(s - m[..., None]).sum(axis=-1))).astype(q.dtype)
    p = _weights(s, lse)
    z = _keep(p.shape, dropout_p, seed, q.dtype)
    out = (p if z is None else p * z) @ v
    return np.where(np.isneginf(lse)[..., None], 0, out).astype(q.dtype), lse


def attention_backward(dout, q, k, v, out, lse, mask=None, causal=False, scale=None, dropout_p=0.0, seed=0,
                       into=None):
    r"""Gradients of :func:`attention_forward`, from its inputs, ``out`` and ``lse`` (the weights are recomputed).

    .. math:: dv = (P \circ Z)^T dout, \quad dP = (dout\, v^T) \circ Z, \quad
              dS = P \circ (dP - \mathrm{rowsum}(dout \circ out)), \quad
              dq = dS\, k \cdot \mathrm{scale}, \quad dk = dS^T q \cdot \mathrm{scale}

    Parameters
    ----------
    dout : array_like (N, H, S, dv)
    q, k, v, mask, causal, scale, dropout_p, seed
        As given to the forward pass.
    out : array_like (N, H, S, dv)
        The forward's output.
    lse : array_like (N, H, S)
        The forward's log-sum-exp.
    into : None or tuple of three ndarrays
        Where to write dq, dk and dv (writable, of q's, k's and v's shapes, in the computation's dtype, any strides,
        overlapping no input; e.g. the three thirds of one (N, S, 3, H, d) array, the gradient of a fused
        query-key-value projection). None: new arrays.

    Returns
    -------
    dq : ndarray (N, H, S, d)
    dk : ndarray (N, H, T, d)
    dv : ndarray (N, H, T, dv)
        In the common float dtype (the arrays of ``into`` when given); rows that attended nothing get zero dq.
    """
    return _attention_backward(*_checks.check_attention_backward("attention_backward", dout, q, k, v, out, lse,
                                                                 mask, causal, scale, dropout_p, seed, into))


def _attention_backward(dout, q, k, v, out, lse, mask=None, causal=False, scale=None, dropout_p=0.0, seed=0,
                        into=None):
    scale = 1 / math.sqrt(q.shape[3]) if scale is None else scale
    p = _weights(_scores(q, k, mask, causal, scale), lse)
    z = _keep(p.shape, dropout_p, seed, q.dtype)
    dv = np.swapaxes(p if z is None else p * z, -1, -2) @ dout
    dp = dout @ np.swapaxes(v, -1, -2)
    if z is not None:
        dp = dp * z
    ds = p * (dp - (dout * out).sum(axis=-1, keepdims=True))
    t = q.dtype.type(scale)
    grads = ((ds @ k) * t, (np.swapaxes(ds, -1, -2) @ q) * t, dv)
    if into is None:
        return grads
    for target, g in zip(into, grads, strict=True):
        target[...] = g
    return into


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_CUBIC = 0.044715


def gelu_forward(x, approximate="none"):
    r"""GELU, exact or by PyTorch's tanh approximation.

    .. math:: \mathrm{gelu}(x) = \tfrac12 x \left(1 + \mathrm{erf}(x / \sqrt2)\right) \quad\text{or}\quad
              \tfrac12 x \left(1 + \tanh\left(\sqrt{2/\pi}\,(x + 0.044715 x^3)\right)\right)

    Parameters
    ----------
    x : array_like, any shape
    approximate : {"none", "tanh"}
        As ``torch.nn.functional.gelu``.

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    return _gelu_forward(*_checks.check_gelu("gelu_forward", x, approximate))


def _gelu_forward(x, approximate="none"):
    x64 = x.astype(np.float64)  # erf and tanh in float64, the result rounded once to x's dtype
    if approximate == "tanh":
        out = 0.5 * x64 * (1 + np.tanh(_SQRT_2_OVER_PI * (x64 + _GELU_CUBIC * x64 ** 3)))
    else:
        out = 0.5 * x64 * (1 + _erf(x64 / math.sqrt(2)))
    return out.astype(x.dtype)


def gelu_backward(dout, x, approximate="none"):
    r"""Gradient of GELU.

    .. math:: \frac{d}{dx} = \Phi(x) + x \varphi(x) \quad\text{(exact)}; \quad
              \tfrac12 (1 + \tanh u) + \tfrac12 x (1 - \tanh^2 u)\sqrt{2/\pi}(1 + 3 \cdot 0.044715 x^2)
              \quad\text{(tanh, } u = \sqrt{2/\pi}(x + 0.044715 x^3))

    Parameters
    ----------
    dout : array_like, x's shape
    x : array_like
        The forward input.
    approximate : {"none", "tanh"}

    Returns
    -------
    dx : ndarray, x's shape, the common float dtype
    """
    return _gelu_backward(*_checks.check_gelu_backward("gelu_backward", dout, x, approximate))


def _gelu_backward(dout, x, approximate="none"):
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        t = np.tanh(_SQRT_2_OVER_PI * (x64 + _GELU_CUBIC * x64 ** 3))
        d = 0.5 * (1 + t) + 0.5 * x64 * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x64 ** 2)
    else:
        d = 0.5 * (1 + _erf(x64 / math.sqrt(2))) + x64 * np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
    return (dout * d.astype(x.dtype)).astype(x.dtype)


_erf = np.vectorize(math.erf, otypes=[np.float64])  # NumPy has no erf; math.erf is libm's, as the kernel's


def softmax_lastaxis_forward(x):
    r"""Softmax over the last axis of an array of any shape (rows of length K), stable.

    .. math:: out_{j} = e^{x_{j} - m} / \sum_i e^{x_{i} - m}, \quad m = \max_i x_{i}

    Parameters
    ----------
    x : array_like (..., K), at least 1-D

    Returns
    -------
    out : ndarray, x's shape and float dtype (a row with NaN or +inf is NaN)
    """
    return _softmax_lastaxis_forward(_checks.check_softmax_lastaxis("softmax_lastaxis_forward", x))


def _softmax_lastaxis_forward(x):
    if x.shape[-1] == 0:
        return np.empty(x.shape, x.dtype)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_lastaxis_backward(dout, out):
    r"""Gradient of :func:`softmax_lastaxis_forward` from its output.

    .. math:: dx = out \circ (dout - \sum_j dout_j\, out_j)

    Parameters
    ----------
    dout : array_like, out's shape
    out : array_like
        The forward output.

    Returns
    -------
    dx : ndarray, out's shape, the common float dtype
    """
    return _softmax_lastaxis_backward(*_checks.check_softmax_lastaxis_backward("softmax_lastaxis_backward", dout, out))


def _softmax_lastaxis_backward(dout, out):
    return out * (dout - (dout * out).sum(axis=-1, keepdims=True))


def positional_encoding(x):
    r"""``x`` plus the sinusoidal positional encoding of "Attention Is All You Need" (sine on even features, cosine
    on odd ones, as cs231n's ``PositionalEncoding``).

    .. math:: PE_{s, 2i} = \sin(s \cdot 10000^{-2i/D}), \quad PE_{s, 2i+1} = \cos(s \cdot 10000^{-2i/D})

    computed in float64 and rounded once to x's dtype.

    Parameters
    ----------
    x : array_like (N, S, D)

    Returns
    -------
    out : ndarray (N, S, D), x's float dtype
    """
    return _positional_encoding(_checks.check_positional_encoding("positional_encoding", x))


def _positional_encoding(x):
    S, D = x.shape[1], x.shape[2]
    j = np.arange(D)
    angle = np.arange(S)[:, None] * np.exp(-(j - j % 2) * (math.log(10000.0) / max(D, 1)))[None, :]  # D=0: empty
    pe = np.where(j % 2 == 0, np.sin(angle), np.cos(angle)).astype(x.dtype)
    return x + pe

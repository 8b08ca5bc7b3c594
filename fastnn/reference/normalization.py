r"""Batch, layer, group and instance normalization in NumPy: the readable specification of
:mod:`fastnn.kernels.normalization`.

All four normalize ``x`` over some axes and apply a learned affine map. With :math:`M` the number of elements a
statistic is taken over,

.. math::
    \mu = \frac{1}{M}\sum x, \qquad
    \sigma^2 = \frac{1}{M}\sum (x - \mu)^2 \ \text{(biased)}, \qquad
    \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
    y = \gamma \hat x + \beta

================  ==========================================  ==========================  ====================
normalization     statistic taken over                        gamma, beta                 mean, inv_std
================  ==========================================  ==========================  ====================
batch  (N, D)     N, per feature                              (D,)                        (D,)
batch  (N, C,H,W) N, H, W, per channel                        (C,)                        (C,)
layer  (N, ...)   all non-batch axes, per sample              x.shape[1:]                 (N,)
group  (N, C,H,W) C/G channels and H, W, per sample and group (C,)                        (N, G)
instance          H, W, per sample and channel (group, G = C) (C,)                        (N, C)
================  ==========================================  ==========================  ====================

The backward passes use the compact form of the gradient through the normalization (Ioffe & Szegedy 2015;
cs231n assignment 2), with :math:`\widehat{dx} = dout \cdot \gamma` and sums over the same :math:`M` elements
as the statistic:

.. math::
    dx = \frac{1}{M \sqrt{\sigma^2 + \epsilon}} \Big(M\,\widehat{dx} - \sum \widehat{dx}
         - \hat x \sum \widehat{dx}\,\hat x\Big), \qquad
    d\gamma = \sum dout\,\hat x, \qquad d\beta = \sum dout

where the sums for :math:`d\gamma, d\beta` run over every axis but those of :math:`\gamma`.

Arithmetic is done in the inputs' common float dtype (NumPy promotion; float32 stays float32) with NumPy's
pairwise sums; the variance is the two-pass ``x.var()`` (mean first, then centred squares), so inputs with a
large mean lose no precision to cancellation.
"""

from __future__ import annotations

import numpy as np

from .. import _checks

__all__ = ["batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_backward", "layernorm_forward",
           "layernorm_backward", "groupnorm_forward", "groupnorm_backward", "instancenorm_forward",
           "instancenorm_backward", "batchrenorm_forward_train", "batchrenorm_forward_infer", "batchrenorm_backward"]


# ---------------------------------------------------------------------------------------------------------------
# The formulas, written once


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast along axis 1 of an ``ndim``-D array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _input_grad(dxhat: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    r"""The compact gradient through a normalization over ``axes`` (``inv_std`` broadcasts against ``xhat``).

    .. math::
        dx = \frac{\mathrm{inv\_std}}{M}\Big(M\,\widehat{dx} - \sum\widehat{dx} - \hat x\sum\widehat{dx}\,\hat x\Big)
    """
    M = int(np.prod([xhat.shape[a] for a in axes]))
    return inv_std / M * (M * dxhat - dxhat.sum(axis=axes, keepdims=True)
                          - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True))


def _grouped(shape: tuple[int, ...], groups: int) -> tuple[int, int, int]:
    """(N, G, M): one row of M = C/G*H*W values per statistic of group normalization."""
    N, C, H, W = shape
    return N, groups, C // groups * H * W


def _batch_axes(ndim: int) -> tuple[int, ...]:
    return (0,) if ndim == 2 else (0, 2, 3)


# ---------------------------------------------------------------------------------------------------------------
# Batch normalization


def batchnorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                            running_var: np.ndarray, momentum: float = 0.9,
                            eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Batch normalization with batch statistics; updates the running statistics in place.

    .. math::
        \mu_c = \frac{1}{M}\sum_{n,h,w} x_{nchw}, \quad
        \sigma_c^2 = \frac{1}{M}\sum_{n,h,w}(x_{nchw} - \mu_c)^2, \quad
        y = \gamma_c\frac{x - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}} + \beta_c

        \mathrm{running} \leftarrow \mathrm{momentum}\cdot\mathrm{running} + (1 - \mathrm{momentum})\cdot
        \mathrm{batch}

    Parameters
    ----------
    x : array_like (N, D) or (N, C, H, W), N >= 1
        Statistics per feature D over N, or per channel C over N, H, W (M = N or N*H*W elements).
    gamma, beta : array_like (D,) or (C,)
    running_mean, running_var : ndarray (D,) or (C,), float32 or float64, writeable
        Updated in place with the batch mean and the biased batch variance.
    momentum : float in [0, 1]
        Weight of the old running value (Deep Learning from Scratch's convention, 1 - PyTorch's momentum).
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape
    mean, inv_std : ndarray (D,) or (C,)
        Batch mean and :math:`1/\sqrt{\sigma^2 + \epsilon}`, for :func:`batchnorm_backward`.
        All three in the common float dtype of x, gamma and beta.
    """
    x, gamma, beta, momentum, eps = _checks.check_batchnorm_forward_train(
        "batchnorm_forward_train", x, gamma, beta, running_mean, running_var, momentum, eps)
    return _batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps)


def _batchnorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                             running_var: np.ndarray, momentum: float = 0.9,
                             eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = _batch_axes(x.ndim)
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)
    inv_std = 1 / np.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    out = _per_channel(gamma, x.ndim) * xhat + _per_channel(beta, x.ndim)
    running_mean[...] = momentum * running_mean + (1 - momentum) * mean
    running_var[...] = momentum * running_var + (1 - momentum) * var
    return out, mean, inv_std


def batchnorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                            running_var: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    r"""Batch normalization with the running statistics (inference).

    .. math:: y = \gamma_c \frac{x - \mathrm{running\_mean}_c}{\sqrt{\mathrm{running\_var}_c + \epsilon}} + \beta_c

    Parameters
    ----------
    x : array_like (N, D) or (N, C, H, W)
    gamma, beta, running_mean, running_var : array_like (D,) or (C,)
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape, the common float dtype of all five arrays
    """
    return _batchnorm_forward_infer(*_checks.check_batchnorm_forward_infer(
        "batchnorm_forward_infer", x, gamma, beta, running_mean, running_var, eps))


def _batchnorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                             running_var: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    scale = gamma / np.sqrt(running_var + eps)
    return (x - _per_channel(running_mean, x.ndim)) * _per_channel(scale, x.ndim) + _per_channel(beta, x.ndim)


def batchnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                       inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`batchnorm_forward_train`.

    .. math::
        \hat x = (x - \mu)\,\mathrm{inv\_std}, \quad \widehat{dx} = dout\cdot\gamma, \quad
        dx = \frac{\mathrm{inv\_std}}{M}\Big(M\,\widehat{dx} - \sum\widehat{dx} - \hat x\sum\widehat{dx}\,\hat x\Big)

        d\gamma = \sum dout\,\hat x, \qquad d\beta = \sum dout \qquad \text{(sums over N, or N, H, W)}

    Parameters
    ----------
    dout, x : array_like (N, D) or (N, C, H, W), N >= 1
    gamma, mean, inv_std : array_like (D,) or (C,)
        ``mean`` and ``inv_std`` as returned by the forward pass.

    Returns
    -------
    dx : ndarray, x's shape
    dgamma, dbeta : ndarray (D,) or (C,)
        In the common float dtype of the inputs.
    """
    return _batchnorm_backward(*_checks.check_batchnorm_backward("batchnorm_backward", dout, x, gamma, mean,
                                                                 inv_std))


def _batchnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                        inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = _batch_axes(x.ndim)
    xhat = (x - _per_channel(mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    dx = _input_grad(dout * _per_channel(gamma, x.ndim), xhat, _per_channel(inv_std, x.ndim), axes)
    return dx, (dout * xhat).sum(axis=axes), dout.sum(axis=axes)


# ---------------------------------------------------------------------------------------------------------------
# Batch renormalization (Ioffe 2017, arXiv:1702.03275, Algorithm 1)


def batchrenorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                              running_std: np.ndarray, rmax: float, dmax: float, momentum: float = 0.9,
                              eps: float = 1e-5) -> tuple[np.ndarray, ...]:
    r"""Batch renormalization in training: batch statistics corrected towards the running ones by r and d.

    .. math::
        \sigma_B = \sqrt{\sigma_B^2 + \epsilon}, \quad
        r = \mathrm{clip}_{[1/r_{max},\, r_{max}]}\Big(\frac{\sigma_B}{\sigma}\Big), \quad
        d = \mathrm{clip}_{[-d_{max},\, d_{max}]}\Big(\frac{\mu_B - \mu}{\sigma}\Big)

        y = \gamma\Big(\frac{x - \mu_B}{\sigma_B}\,r + d\Big) + \beta

        \mu \leftarrow m\,\mu + (1 - m)\,\mu_B, \qquad \sigma \leftarrow m\,\sigma + (1 - m)\,\sigma_B

    with :math:`\mu, \sigma` the running mean and standard deviation *before* this step's update (the paper's
    order), :math:`\sigma_B^2` the biased batch variance and m = ``momentum`` (the paper's update rate
    :math:`\alpha` is 1 - m). r and d are constants of the step: :func:`batchrenorm_backward` treats them so
    (the paper's ``stop_gradient``). rmax = 1, dmax = 0 make r = 1, d = 0: plain batch normalization.

    Parameters
    ----------
    x : array_like (N, D) or (N, C, H, W), N >= 1
        Statistics per feature D over N, or per channel C over N, H, W.
    gamma, beta : array_like (D,) or (C,)
    running_mean, running_std : ndarray (D,) or (C,), float32 or float64, writeable
        :math:`\mu, \sigma`, read for r, d and then updated in place.
    rmax : float >= 1
    dmax : float >= 0
    momentum : float in [0, 1]
        Weight of the old running value (Deep Learning from Scratch's convention).
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape
    mean, inv_std : ndarray (D,) or (C,)
        :math:`\mu_B` and :math:`1/\sigma_B`, for :func:`batchrenorm_backward`.
    r, d : ndarray (D,) or (C,)
        The corrections used. All five in the common float dtype of x, gamma and beta.
    """
    x, gamma, beta, rmax, dmax, momentum, eps = _checks.check_batchrenorm_forward_train(
        "batchrenorm_forward_train", x, gamma, beta, running_mean, running_std, rmax, dmax, momentum, eps)
    return _batchrenorm_forward_train(x, gamma, beta, running_mean, running_std, rmax, dmax, momentum, eps)


def _batchrenorm_forward_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                               running_std: np.ndarray, rmax: float, dmax: float, momentum: float = 0.9,
                               eps: float = 1e-5) -> tuple[np.ndarray, ...]:
    axes = _batch_axes(x.ndim)
    mean = x.mean(axis=axes)
    sigma = np.sqrt(x.var(axis=axes) + eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(sigma / running_std, 1 / rmax, rmax).astype(x.dtype)
        d = np.clip((mean - running_mean) / running_std, -dmax, dmax).astype(x.dtype)
    xhat = (x - _per_channel(mean, x.ndim)) / _per_channel(sigma, x.ndim)
    out = _per_channel(gamma, x.ndim) * (xhat * _per_channel(r, x.ndim) + _per_channel(d, x.ndim)) \
        + _per_channel(beta, x.ndim)
    running_mean[...] = momentum * running_mean + (1 - momentum) * mean
    running_std[...] = momentum * running_std + (1 - momentum) * sigma
    return out, mean, 1 / sigma, r, d


def batchrenorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                              running_std: np.ndarray) -> np.ndarray:
    r"""Batch renormalization at inference: the running statistics, as in batch normalization.

    .. math:: y = \gamma_c \frac{x - \mathrm{running\_mean}_c}{\mathrm{running\_std}_c} + \beta_c

    (``running_std`` already holds :math:`\sqrt{\sigma_B^2 + \epsilon}` averages: no eps is added.)

    Parameters
    ----------
    x : array_like (N, D) or (N, C, H, W)
    gamma, beta, running_mean, running_std : array_like (D,) or (C,)

    Returns
    -------
    out : ndarray, x's shape, the common float dtype of all five arrays
    """
    return _batchrenorm_forward_infer(*_checks.check_batchrenorm_forward_infer(
        "batchrenorm_forward_infer", x, gamma, beta, running_mean, running_std))


def _batchrenorm_forward_infer(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                               running_std: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _per_channel(gamma, x.ndim) * (x - _per_channel(running_mean, x.ndim)) \
            / _per_channel(running_std, x.ndim) + _per_channel(beta, x.ndim)


def batchrenorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray, inv_std: np.ndarray,
                         r: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`batchrenorm_forward_train`, r and d held constant.

    .. math::
        \widehat{dx} = dout\cdot\gamma\,r, \quad
        dx = \frac{\mathrm{inv\_std}}{M}\Big(M\,\widehat{dx} - \sum\widehat{dx} - \hat x\sum\widehat{dx}\,\hat x\Big)

        d\gamma = \sum dout\,(\hat x\,r + d), \qquad d\beta = \sum dout

    Parameters
    ----------
    dout, x : array_like (N, D) or (N, C, H, W), N >= 1
    gamma, mean, inv_std, r, d : array_like (D,) or (C,)
        ``mean``, ``inv_std``, ``r`` and ``d`` as returned by the forward pass.

    Returns
    -------
    dx : ndarray, x's shape
    dgamma, dbeta : ndarray (D,) or (C,)
        In the common float dtype of the inputs.
    """
    return _batchrenorm_backward(*_checks.check_batchrenorm_backward(
        "batchrenorm_backward", dout, x, gamma, mean, inv_std, r, d))


def _batchrenorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray, inv_std: np.ndarray,
                          r: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes, n = _batch_axes(x.ndim), x.ndim
    xhat = (x - _per_channel(mean, n)) * _per_channel(inv_std, n)
    dx = _input_grad(dout * _per_channel(gamma * r, n), xhat, _per_channel(inv_std, n), axes)
    return dx, (dout * (xhat * _per_channel(r, n) + _per_channel(d, n))).sum(axis=axes), dout.sum(axis=axes)


# ---------------------------------------------------------------------------------------------------------------
# Layer normalization


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                      eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Layer normalization: each sample over all its non-batch axes.

    .. math::
        \mu_n = \frac{1}{F}\sum_{f} x_{nf}, \quad \sigma_n^2 = \frac{1}{F}\sum_f (x_{nf} - \mu_n)^2, \quad
        y_{nf} = \gamma_f \frac{x_{nf} - \mu_n}{\sqrt{\sigma_n^2 + \epsilon}} + \beta_f

    Parameters
    ----------
    x : array_like (N, ...), at least 2-D; F = prod(x.shape[1:])
    gamma, beta : array_like of shape x.shape[1:]
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape
    mean, inv_std : ndarray (N,)
        In the common float dtype of x, gamma and beta.
    """
    return _layernorm_forward(*_checks.check_layernorm_forward("layernorm_forward", x, gamma, beta, eps))


def _layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                       eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    out = gamma * ((x - mean) * inv_std) + beta
    return out, mean.reshape(-1), inv_std.reshape(-1)


def layernorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                       inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`layernorm_forward`.

    .. math::
        dx_n = \frac{\mathrm{inv\_std}_n}{F}\Big(F\,\widehat{dx}_n - \sum_f\widehat{dx}_{nf}
               - \hat x_n\sum_f\widehat{dx}_{nf}\,\hat x_{nf}\Big), \quad
        d\gamma_f = \sum_n dout_{nf}\,\hat x_{nf}, \quad d\beta_f = \sum_n dout_{nf}

    Parameters
    ----------
    dout, x : array_like (N, ...)
    gamma : array_like of shape x.shape[1:]
    mean, inv_std : array_like (N,), as returned by the forward pass

    Returns
    -------
    dx : ndarray, x's shape
    dgamma, dbeta : ndarray of shape x.shape[1:]
    """
    return _layernorm_backward(*_checks.check_layernorm_backward("layernorm_backward", dout, x, gamma, mean,
                                                                 inv_std))


def _layernorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                        inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = tuple(range(1, x.ndim))
    per_sample = (-1,) + (1,) * (x.ndim - 1)
    xhat = (x - mean.reshape(per_sample)) * inv_std.reshape(per_sample)
    dx = _input_grad(dout * gamma, xhat, inv_std.reshape(per_sample), axes)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


# ---------------------------------------------------------------------------------------------------------------
# Group and instance normalization


def groupnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int,
                      eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Group normalization (Wu & He 2018): per sample, over each group of C/G channels and H, W.

    .. math::
        \mu_{ng} = \frac{1}{M}\sum_{c \in g,\,h,\,w} x_{nchw}, \quad
        \sigma_{ng}^2 = \frac{1}{M}\sum_{c \in g,\,h,\,w}(x_{nchw} - \mu_{ng})^2, \quad
        y_{nchw} = \gamma_c \frac{x_{nchw} - \mu_{ng}}{\sqrt{\sigma_{ng}^2 + \epsilon}} + \beta_c

    with M = (C/G)·H·W and channel c in group g = c // (C/G).

    Parameters
    ----------
    x : array_like (N, C, H, W)
    gamma, beta : array_like (C,)
    groups : int G >= 1 dividing C
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape
    mean, inv_std : ndarray (N, G)
    """
    return _groupnorm_forward(*_checks.check_groupnorm_forward("groupnorm_forward", x, gamma, beta, groups, eps))


def _groupnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int,
                       eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xg = x.reshape(_grouped(x.shape, groups))
    mean = xg.mean(axis=2)
    inv_std = 1 / np.sqrt(xg.var(axis=2) + eps)
    xhat = ((xg - mean[:, :, None]) * inv_std[:, :, None]).reshape(x.shape)
    return _per_channel(gamma, 4) * xhat + _per_channel(beta, 4), mean, inv_std


def groupnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, groups: int, mean: np.ndarray,
                       inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`groupnorm_forward`.

    .. math::
        dx_{ng} = \frac{\mathrm{inv\_std}_{ng}}{M}\Big(M\,\widehat{dx}_{ng} - \sum\widehat{dx}_{ng}
                  - \hat x_{ng}\sum\widehat{dx}_{ng}\,\hat x_{ng}\Big), \quad
        d\gamma_c = \sum_{n,h,w} dout\,\hat x, \quad d\beta_c = \sum_{n,h,w} dout

    with :math:`\widehat{dx} = dout\cdot\gamma_c` and the sums for :math:`dx` over the group's M elements.

    Parameters
    ----------
    dout, x : array_like (N, C, H, W)
    gamma : array_like (C,)
    groups : int G dividing C
    mean, inv_std : array_like (N, G), as returned by the forward pass

    Returns
    -------
    dx : ndarray, x's shape
    dgamma, dbeta : ndarray (C,)
    """
    return _groupnorm_backward(*_checks.check_groupnorm_backward("groupnorm_backward", dout, x, gamma, groups, mean,
                                                                 inv_std))


def _groupnorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, groups: int, mean: np.ndarray,
                        inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    grouped = _grouped(x.shape, groups)
    xhat = (x.reshape(grouped) - mean[:, :, None]) * inv_std[:, :, None]
    dxhat = (dout * _per_channel(gamma, 4)).reshape(grouped)
    dx = _input_grad(dxhat, xhat, inv_std[:, :, None], (2,)).reshape(x.shape)
    return dx, (dout * xhat.reshape(x.shape)).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


def instancenorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                         eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Instance normalization (Ulyanov et al. 2016): group normalization with one channel per group.

    .. math:: y_{nchw} = \gamma_c \frac{x_{nchw} - \mu_{nc}}{\sqrt{\sigma_{nc}^2 + \epsilon}} + \beta_c
              \qquad (\mu_{nc}, \sigma_{nc}^2 \text{ over } h, w)

    Parameters
    ----------
    x : array_like (N, C, H, W)
    gamma, beta : array_like (C,)
    eps : float > 0

    Returns
    -------
    out : ndarray, x's shape
    mean, inv_std : ndarray (N, C)
    """
    x, gamma, beta, eps = _checks.check_instancenorm_forward("instancenorm_forward", x, gamma, beta, eps)
    return _groupnorm_forward(x, gamma, beta, x.shape[1], eps)


def instancenorm_backward(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                          inv_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`instancenorm_forward` (:func:`groupnorm_backward` with G = C).

    Parameters
    ----------
    dout, x : array_like (N, C, H, W)
    gamma : array_like (C,)
    mean, inv_std : array_like (N, C), as returned by the forward pass

    Returns
    -------
    dx : ndarray, x's shape
    dgamma, dbeta : ndarray (C,)
    """
    dout, x, gamma, mean, inv_std = _checks.check_instancenorm_backward(
        "instancenorm_backward", dout, x, gamma, mean, inv_std)
    return _groupnorm_backward(dout, x, gamma, x.shape[1], mean, inv_std)

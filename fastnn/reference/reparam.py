r"""Weight normalization and spectral normalization in NumPy: the readable specification of
:mod:`fastnn.kernels.reparam`.

Both reparametrize a layer's weight per *output unit*: axis ``dim`` of the weight (PyTorch's ``dim``), 0 for a
convolution's (FN, C, FH, FW) filters, -1 (the last) for an affine layer's W of shape (in, out). With
:math:`\hat W` the weight as a matrix of one row per output unit (PyTorch's ``weight_mat``: axis ``dim`` moved to
the front, the rest flattened):

* weight normalization (Salimans & Kingma 2016, arXiv:1602.07868):
  :math:`w_k = g_k\, v_k / \lVert v_k \rVert` for each unit k;
* spectral normalization (Miyato et al. 2018, arXiv:1802.05957): :math:`W / \sigma(W)`, with the largest
  singular value :math:`\sigma` estimated by power iteration on persistent vectors u, v.
"""

from __future__ import annotations

import numpy as np

from .. import _checks

__all__ = ["weightnorm_forward", "weightnorm_backward", "weightnorm_affine_forward", "weightnorm_affine_backward",
           "spectralnorm_forward", "spectralnorm_backward"]


def _others(ndim: int, dim: int) -> tuple[int, ...]:
    return tuple(a for a in range(ndim) if a != dim)


def _unit(x: np.ndarray, ndim: int, dim: int) -> np.ndarray:
    """A per-unit vector shaped to broadcast along axis ``dim`` of an ``ndim``-D array."""
    return x.reshape([-1 if a == dim else 1 for a in range(ndim)])


def weightnorm_forward(v: np.ndarray, g: np.ndarray, dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Weight normalization: each output unit's weights with norm ``g``.

    .. math:: \lVert v_k \rVert = \sqrt{\textstyle\sum v_k^2}, \qquad w_k = g_k \frac{v_k}{\lVert v_k \rVert}

    ``torch.nn.utils.parametrizations.weight_norm(module, dim=dim)`` computes the same ``w`` from its
    ``original0`` (g, with singleton axes) and ``original1`` (v) on PyTorch's weight layout (a Linear's
    (out, in) is the transpose of fastnn's (in, out), so fastnn's ``dim=-1`` is torch's ``dim=0`` there). No eps: a
    zero ``v_k`` gives NaN, as in PyTorch.

    Parameters
    ----------
    v : array_like, at least 2-D
        The direction parameters: an affine W (in, out) with dim=-1, a convolution W (FN, C, FH, FW) with dim=0.
    g : array_like (v.shape[dim],)
        The norms.
    dim : int
        The axis of the output units (negative counts from the end).

    Returns
    -------
    w : ndarray, v's shape
    norm : ndarray (v.shape[dim],)
        :math:`\lVert v_k \rVert`, for :func:`weightnorm_backward`. Both in the common float dtype of v and g.
    """
    return _weightnorm_forward(*_checks.check_weightnorm_forward("weightnorm_forward", v, g, dim))


def _weightnorm_forward(v: np.ndarray, g: np.ndarray, dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    norm = np.sqrt((v * v).sum(axis=_others(v.ndim, dim)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return v * _unit(g / norm, v.ndim, dim), norm


def weightnorm_backward(dw: np.ndarray, v: np.ndarray, g: np.ndarray, norm: np.ndarray,
                        dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Gradients of :func:`weightnorm_forward` (Salimans & Kingma 2016, eq. 3).

    .. math::
        dg_k = \frac{\sum dw_k\, v_k}{\lVert v_k \rVert}, \qquad
        dv_k = \frac{g_k}{\lVert v_k \rVert}\, dw_k - \frac{g_k\, dg_k}{\lVert v_k \rVert^2}\, v_k

    Parameters
    ----------
    dw : array_like, v's shape
        Gradient with respect to the normalized weight w.
    v, g, dim
        As given to the forward pass.
    norm : array_like (v.shape[dim],)
        As returned by the forward pass.

    Returns
    -------
    dv : ndarray, v's shape
    dg : ndarray (v.shape[dim],)
        In the common float dtype of the inputs.
    """
    return _weightnorm_backward(*_checks.check_weightnorm_backward("weightnorm_backward", dw, v, g, norm, dim))


def _weightnorm_backward(dw: np.ndarray, v: np.ndarray, g: np.ndarray, norm: np.ndarray,
                         dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        dg = (dw * v).sum(axis=_others(v.ndim, dim)) / norm
        dv = _unit(g / norm, v.ndim, dim) * dw - _unit(g * dg / (norm * norm), v.ndim, dim) * v
    return dv, dg


def weightnorm_affine_forward(x: np.ndarray, v: np.ndarray, g: np.ndarray,
                              b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""An affine layer whose weight (in, out) is weight-normalized over its columns: ``x @ w + b`` with
    ``w = weightnorm_forward(v, g, dim=-1)[0]``, computed without forming w. Each unit's scale
    :math:`s_k = g_k / \lVert v_k \rVert` multiplies column k of :math:`t = x v`:

    .. math:: out_{nk} = t_{nk}\, s_k + b_k

    (the same number as :math:`(x w)_{nk}` up to rounding).

    Parameters
    ----------
    x : array_like (N, in)
    v : array_like (in, out)
        The direction parameters (the Affine layer's W).
    g : array_like (out,)
    b : array_like (out,)

    Returns
    -------
    out : ndarray (N, out)
    t : ndarray (N, out)
        ``x @ v``, for :func:`weightnorm_affine_backward`.
    norm : ndarray (out,)
        The column norms of v. All in the common float dtype of the inputs.
    """
    return _weightnorm_affine_forward(*_checks.check_weightnorm_affine_forward("weightnorm_affine_forward",
                                                                               x, v, g, b))


def _weightnorm_affine_forward(x: np.ndarray, v: np.ndarray, g: np.ndarray,
                               b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    norm = np.sqrt((v * v).sum(axis=0))
    t = x @ v
    with np.errstate(divide="ignore", invalid="ignore"):
        return t * (g / norm) + b, t, norm


def weightnorm_affine_backward(dout: np.ndarray, x: np.ndarray, v: np.ndarray, g: np.ndarray, norm: np.ndarray,
                               t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`weightnorm_affine_forward`: :func:`weightnorm_backward` applied to the affine layer's
    ``dw = x.T @ dout``, with :math:`\sum_i dw_{ik} v_{ik} = \sum_n dout_{nk}\, t_{nk}` taken from the small
    (N, out) arrays:

    .. math::
        dx = (dout\, \mathrm{diag}(s))\, v^\top, \quad
        dg_k = \frac{\sum_n dout_{nk} t_{nk}}{\lVert v_k \rVert}, \quad
        dv = (x^\top dout)\, \mathrm{diag}(s) - v\, \mathrm{diag}(g_k\, dg_k / \lVert v_k \rVert^2),
        \quad db = \sum_n dout_n

    Parameters
    ----------
    dout : array_like (N, out)
    x, v, g
        As given to the forward pass.
    norm, t
        As returned by it.

    Returns
    -------
    dx : ndarray (N, in)
    dv : ndarray (in, out)
    dg : ndarray (out,)
    db : ndarray (out,)
        In the common float dtype of the inputs.
    """
    return _weightnorm_affine_backward(*_checks.check_weightnorm_affine_backward(
        "weightnorm_affine_backward", dout, x, v, g, norm, t))


def _weightnorm_affine_backward(dout: np.ndarray, x: np.ndarray, v: np.ndarray, g: np.ndarray, norm: np.ndarray,
                                t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = g / norm
        dg = (dout * t).sum(axis=0) / norm
        dv = (x.T @ dout) * scale - v * (g * dg / (norm * norm))
    return (dout * scale) @ v.T, dv, dg, dout.sum(axis=0)


def _matrix(w: np.ndarray, dim: int) -> np.ndarray:
    """PyTorch's ``weight_mat``: axis ``dim`` first, the rest flattened (a view where possible)."""
    return np.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)


def _normalize(x: np.ndarray, eps: float) -> np.ndarray:
    """``F.normalize(x, dim=0, eps=eps)``: x / max(||x||, eps)."""
    return x / max(float(np.linalg.norm(x)), eps)


def spectralnorm_forward(w: np.ndarray, u: np.ndarray, v: np.ndarray, dim: int = 0, n_power_iterations: int = 1,
                         eps: float = 1e-12, training: bool = True) -> tuple[np.ndarray, np.floating]:
    r"""Spectral normalization, as ``torch.nn.utils.parametrizations.spectral_norm``.

    In training, ``n_power_iterations`` steps of the power method update u and v in place:

    .. math:: u \leftarrow \frac{\hat W v}{\max(\lVert \hat W v \rVert, \epsilon)}, \qquad
              v \leftarrow \frac{\hat W^\top u}{\max(\lVert \hat W^\top u \rVert, \epsilon)}

    then (also in evaluation, where u and v are left as they are)

    .. math:: \sigma = u^\top \hat W v, \qquad W_{SN} = W / \sigma

    Parameters
    ----------
    w : array_like, at least 2-D
        The weight (see :func:`weightnorm_forward` for ``dim``).
    u : ndarray (w.shape[dim],), w's float dtype, writeable
        PyTorch's ``_u``; updated in place in training.
    v : ndarray (w.size / w.shape[dim],), w's float dtype, writeable
        PyTorch's ``_v``; updated in place in training.
    dim : int
        The axis of the output units.
    n_power_iterations : int >= 1
    eps : float > 0
    training : bool
        Run the power iterations (True) or use u, v as they are (False, PyTorch's eval mode).

    Returns
    -------
    w_sn : ndarray, w's shape and dtype
    sigma : 0-d NumPy scalar of w's dtype
        For :func:`spectralnorm_backward`.
    """
    w, dim, n_power_iterations, eps, training = _checks.check_spectralnorm_forward(
        "spectralnorm_forward", w, u, v, dim, n_power_iterations, eps, training)
    return _spectralnorm_forward(w, u, v, dim, n_power_iterations, eps, training)


def _spectralnorm_forward(w: np.ndarray, u: np.ndarray, v: np.ndarray, dim: int = 0, n_power_iterations: int = 1,
                          eps: float = 1e-12, training: bool = True) -> tuple[np.ndarray, np.floating]:
    mat = _matrix(w, dim)
    if training:
        for _ in range(n_power_iterations):
            u[...] = _normalize(mat @ v, eps)
            v[...] = _normalize(mat.T @ u, eps)
    sigma = u @ (mat @ v)
    with np.errstate(divide="ignore", invalid="ignore"):
        return w / sigma, w.dtype.type(sigma)


def spectralnorm_backward(dw: np.ndarray, w: np.ndarray, u: np.ndarray, v: np.ndarray, sigma: float,
                          dim: int = 0) -> np.ndarray:
    r"""Gradient of :func:`spectralnorm_forward` with u and v held constant (as PyTorch's autograd, which sees
    them as cloned buffers).

    .. math:: \frac{\partial}{\partial W} = \frac{dW_{SN}}{\sigma}
              - \frac{\sum dW_{SN} \odot W}{\sigma^2}\, u v^\top

    (:math:`u v^\top` laid out as W, i.e. reshaped from :math:`\hat W`'s layout.)

    Parameters
    ----------
    dw : array_like, w's shape
        Gradient with respect to the normalized weight.
    w, u, v, dim
        As in the forward pass (u, v after it).
    sigma : float > 0
        As returned by the forward pass.

    Returns
    -------
    dw : ndarray, w's shape, the common float dtype of dw, w, u and v
    """
    return _spectralnorm_backward(*_checks.check_spectralnorm_backward("spectralnorm_backward", dw, w, u, v, sigma,
                                                                       dim))


def _spectralnorm_backward(dw: np.ndarray, w: np.ndarray, u: np.ndarray, v: np.ndarray, sigma: float,
                           dim: int = 0) -> np.ndarray:
    t, s = dw.dtype.type, np.float64(sigma)
    outer = np.moveaxis(np.outer(u, v).reshape((w.shape[dim], *_others_shape(w.shape, dim))), 0, dim)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # a tiny sigma gives inf, not an error
        return dw * t(1.0 / s) - t((dw * w).sum(dtype=np.float64) / s / s) * outer.astype(dw.dtype)


def _others_shape(shape: tuple[int, ...], dim: int) -> tuple[int, ...]:
    return tuple(s for a, s in enumerate(shape) if a != dim)

"""Weight reparametrizations as layer wrappers: ``WeightNorm(layer)`` and ``SpectralNorm(layer)`` for an
:class:`~fastnn.layers.Affine` or a :class:`~fastnn.layers.Convolution`, as PyTorch's
``torch.nn.utils.parametrizations.weight_norm`` / ``spectral_norm`` wrap an ``nn.Linear`` or ``nn.Conv2d``.

The wrapper owns the trainable arrays (``params``), computes the layer's weight from them with a kernel before
the layer's own forward, and turns the layer's ``dW`` into their gradients after its backward. The wrapped layer
keeps its bias (the same array, shared) and receives a fresh computed weight at every forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from ..backend import ops
from ._base import Entry, Layer
from .basic import Affine
from .conv import Convolution

__all__ = ["SpectralNorm", "WeightNorm"]


def _unit_axis(layer: Any, where: str) -> int:
    """The axis of the output units of the wrapped layer's W: -1 for Affine's (in, out), 0 for a convolution's
    (FN, C, FH, FW) (PyTorch's ``dim=0`` on its own layouts)."""
    if isinstance(layer, Affine):
        return -1
    if isinstance(layer, Convolution):
        return 0
    _validate.fail(where, "layer", "an Affine or a Convolution layer", type(layer).__name__, TypeError)
    raise AssertionError  # unreachable


class _Wrapper(Layer):
    """What both wrappers share: the wrapped layer, its bias as a shared parameter, forward/backward around it."""

    b = Entry("params", ndim=1)
    db = Entry("grads")

    def __init__(self, layer: Any) -> None:
        super().__init__()
        where = type(self).__name__
        self.dim = _unit_axis(layer, where)
        self.layer = layer
        self.b = layer.b  # the same array: an optimizer's update of params["b"] is the layer's bias
        self.db = None

    def _run(self, x: Any, weight: np.ndarray) -> np.ndarray:
        self.layer.W, self.layer.b = weight, self.b
        return self._output(self.layer.forward(x))

    def _back(self, dout: Any) -> tuple[np.ndarray, np.ndarray]:
        """dx and the layer's dW; sets db."""
        dout = self._dout(dout, f"{type(self).__name__}.backward")
        dx = self.layer.backward(dout)
        self.db = self.layer.db
        return dx, self.layer.dW


class WeightNorm(_Wrapper):
    """Weight normalization (Salimans & Kingma 2016, arXiv:1602.07868) of an Affine or Convolution layer.

    .. math:: W_k = g_k \\frac{v_k}{\\lVert v_k \\rVert}

    per output unit k: a column of Affine's W (in, out) (the norm over axis 0), a filter of a convolution's
    (FN, C, FH, FW). ``torch.nn.utils.parametrizations.weight_norm(module)`` on the same weights gives the same
    numbers (its ``original1`` is v in PyTorch's layout, the transpose for a Linear).

    Parameters
    ----------
    layer : Affine or Convolution
        Its W becomes v (the same array, updated in place by optimizers); its bias is shared. An Affine keeps v as
        its W: the wrapper runs the product itself through one kernel that never forms w
        (:func:`~fastnn.kernels.weightnorm_affine_forward`). A Convolution's W is set to the computed w at every
        forward. :attr:`weight` gives w for either.
    g : ndarray (units,), optional
        Default: :math:`\\lVert v_k \\rVert`, so the wrapped layer starts computing what it did (PyTorch's
        initialization).
    init_x : array_like, optional
        A batch for the paper's data-dependent initialization (section 3): with :math:`t = v \\cdot x /
        \\lVert v \\rVert` the unit's pre-activation, :math:`g \\leftarrow 1/\\sigma[t]` and
        :math:`b \\leftarrow -\\mu[t]/\\sigma[t]` (statistics over the batch, and the pixels of a convolution), so
        the initial outputs have zero mean and unit variance per unit. See :meth:`initialize`.

    Attributes
    ----------
    params : dict with ``v``, ``g``, ``b``; grads the same keys after a backward.
    """

    v = Entry("params")
    g = Entry("params", ndim=1)
    dv = Entry("grads")
    dg = Entry("grads")

    def __init__(self, layer: Any, g: np.ndarray | None = None, init_x: Any = None) -> None:
        super().__init__(layer)
        self.v = layer.W
        units = self.v.shape[self.dim]
        if g is None:
            g = ops.weightnorm_forward(self.v, np.ones(units, self.v.dtype), self.dim)[1]
        self.g = g
        _validate.shape(self.g, (units,), "WeightNorm", "g")
        self.dv = self.dg = None
        self.norm = self._t = None
        if init_x is not None:
            self.initialize(init_x)

    def initialize(self, x: Any) -> None:
        """The data-dependent initialization (class docstring), from the batch ``x``; sets g and b in place."""
        unit_w = ops.weightnorm_forward(self.v, np.ones_like(self.g), self.dim)[0]
        self.b[...] = 0
        t = self._run(x, unit_w)  # (N, units) or (N, units, OH, OW): batch-norm statistics per unit
        self.layer.W = self.v
        C = t.shape[1]
        _, mean, inv_std = ops.batchnorm_forward_train(t, np.ones(C, t.dtype), np.zeros(C, t.dtype),
                                                       np.zeros(C, t.dtype), np.ones(C, t.dtype), 1.0, 1e-12)
        self.g[...] = inv_std
        self.b[...] = -mean * inv_std

    @property
    def weight(self) -> np.ndarray:
        """The normalized weight w that the current v and g give (a new array)."""
        return ops.weightnorm_forward(self.v, self.g, self.dim)[0]

    def forward(self, x: Any) -> np.ndarray:
        if isinstance(self.layer, Affine):  # w is never formed: the unit scales apply to x @ v (the kernel's doc)
            x = self.layer.flat_input(x, "WeightNorm.forward")
            out, self._t, self.norm = ops.weightnorm_affine_forward(x, self.v, self.g, self.b)
            return self._output(out)
        w, self.norm = ops.weightnorm_forward(self.v, self.g, self.dim)
        return self._run(x, w)

    def backward(self, dout: Any) -> np.ndarray:
        if isinstance(self.layer, Affine):
            dout = self._dout(dout, "WeightNorm.backward")
            dx, self.dv, self.dg, self.db = ops.weightnorm_affine_backward(dout, self.layer.x, self.v, self.g,
                                                                           self.norm, self._t)
            return dx.reshape(self.layer.original_x_shape)
        dx, dw = self._back(dout)
        self.dv, self.dg = ops.weightnorm_backward(dw, self.v, self.g, self.norm, self.dim)
        return dx


class SpectralNorm(_Wrapper):
    """Spectral normalization (Miyato et al. 2018, arXiv:1802.05957) of an Affine or Convolution layer:
    :math:`W / \\sigma(W)`, as ``torch.nn.utils.parametrizations.spectral_norm``.

    :math:`\\sigma` comes from power iteration on persistent vectors u (one entry per output unit) and v (one per
    input of a unit): ``n_power_iterations`` steps per training forward (u, v updated in place), none in
    evaluation (``train_flg=False``); the gradient treats u and v as constants. The weight matrix is PyTorch's:
    units x the rest (the transpose of Affine's W, a convolution's (FN, C*FH*FW)).

    Parameters
    ----------
    layer : Affine or Convolution
        Its W becomes the parameter ``W`` here (the same array); its bias is shared.
    n_power_iterations : int >= 1
    eps : float > 0
    u, v : array-like, optional
        Start vectors (e.g. copied from PyTorch's ``_u``, ``_v``). Default: normal draws from ``seed``, normalized,
        then 15 power iterations, as PyTorch initializes them.
    seed : int
    """

    W = Entry("params")
    dW = Entry("grads")
    u = Entry("buffers", ndim=1)
    v = Entry("buffers", ndim=1)

    def __init__(self, layer: Any, n_power_iterations: int = 1, eps: float = 1e-12, u: Any = None, v: Any = None,
                 seed: int = 0) -> None:
        super().__init__(layer)
        self.W = layer.W
        self.n_power_iterations = _validate.integer(n_power_iterations, "SpectralNorm", "n_power_iterations",
                                                    minimum=1)
        self.eps = _validate.scalar(eps, "SpectralNorm", "eps", gt=0.0)
        units = self.W.shape[self.dim]
        rng = np.random.default_rng(seed)
        given = u is not None and v is not None
        self.u = self._vector(u, units, rng, "u")
        self.v = self._vector(v, self.W.size // units, rng, "v")
        if not given:
            ops.spectralnorm_forward(self.W, self.u, self.v, self.dim, 15, self.eps, True)
        self.dW = None
        self.sigma = None

    def _vector(self, value: Any, n: int, rng: np.random.Generator, name: str) -> np.ndarray:
        if value is None:
            value = rng.standard_normal(n)
            value /= max(float(np.sqrt(value @ value)), self.eps)
        value = _validate.float_array(value, "SpectralNorm", name)
        _validate.shape(value, (n,), "SpectralNorm", name)
        return value.astype(self.W.dtype, copy=True)

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        w_sn, self.sigma = ops.spectralnorm_forward(self.W, self.u, self.v, self.dim, self.n_power_iterations,
                                                    self.eps, train_flg)
        return self._run(x, w_sn)

    def backward(self, dout: Any) -> np.ndarray:
        dx, dw = self._back(dout)
        self.dW = ops.spectralnorm_backward(dw, self.W, self.u, self.v, float(self.sigma), self.dim)
        return dx

    def _snapshot(self) -> Any:
        return self.u.copy(), self.v.copy()

    def _restore(self, state: Any) -> None:
        np.copyto(self.u, state[0])
        np.copyto(self.v, state[1])

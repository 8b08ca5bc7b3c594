"""Normalization layers: the book's BatchNormalization, plus layer, group and instance normalization, on fastnn
kernels.

Each keeps ``x``, ``mean`` and ``inv_std`` from the forward pass for the backward pass (the kernels recompute
the normalized input from them instead of caching it as the book's ``xc``/``xn``/``std``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _validate
from ..backend import ops, unchecked
from ._base import Entry, Layer, arrays_of, batch, features, kept_float, same_shape, scale_and_shift

__all__ = ["BatchNormalization", "BatchRenormalization", "GroupNormalization", "InstanceNormalization",
           "LayerNormalization", "paper_dmax", "paper_rmax"]


class BatchNormalization(Layer):
    """Batch normalization (Ioffe & Szegedy 2015, arXiv:1502.03167) as in the book.

    .. math:: y = \\gamma \\, (x - \\mu_B) / \\sqrt{\\sigma_B^2 + \\epsilon} + \\beta

    Parameters
    ----------
    gamma, beta : ndarray (D,) or (C,), float32 or float64
        Their size picks what is normalized: x (N, D) per feature; x (N, C, H, W) per channel when they have C
        elements, or per feature of the flattened (N, C*H*W) input when they have C*H*W elements (the book's
        layout, where a convolution's output is treated as a vector).
    momentum : float in [0, 1]
        ``running = momentum * running + (1 - momentum) * batch`` (batch variance biased, as the book).
    running_mean, running_var : array-like of gamma's shape, optional
        Start values (default zeros, as the book). Copied into the layer's own arrays in gamma's dtype, which
        training then updates in place: the arrays given are never written.
    eps : float > 0
        Added to the variance; the book's ``10e-7``.
    """

    gamma = Entry("params", ndim=1)
    beta = Entry("params", ndim=1)
    dgamma = Entry("grads")
    dbeta = Entry("grads")
    running_mean = Entry("buffers", ndim=1)
    running_var = Entry("buffers", ndim=1)

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, momentum: float = 0.9, running_mean: Any = None,
                 running_var: Any = None, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma, self.beta = gamma, beta
        scale_and_shift(self.gamma, self.beta, "BatchNormalization")
        self.momentum = _validate.scalar(momentum, "BatchNormalization", "momentum", ge=0.0, le=1.0)
        self.eps = _validate.scalar(eps, "BatchNormalization", "eps", gt=0.0)
        self.running_mean = self._own_copy(running_mean, "running_mean")
        self.running_var = self._own_copy(running_var, "running_var")
        self.dgamma = self.dbeta = None
        self.input_shape = self.x = self.mean = self.inv_std = None

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        """x (N, D) or (N, C, H, W) -> out of the same shape. Training (N >= 1) updates the running statistics."""
        x = batch(x, "BatchNormalization.forward", ndim=(2, 4))
        layout = self._layout(x)
        if train_flg and x.shape[0] == 0:
            _validate.fail("BatchNormalization.forward", "x", "a batch of N >= 1 samples in training",
                           f"shape {x.shape}")
        self.input_shape, self.x = x.shape, layout
        if train_flg:
            train = unchecked.batchnorm_forward_train if self._trusted(layout, True) else ops.batchnorm_forward_train
            out, self.mean, self.inv_std = train(self.x, self.gamma, self.beta, self.running_mean, self.running_var,
                                                 self.momentum, self.eps)
        else:
            infer = unchecked.batchnorm_forward_infer if self._trusted(layout, False) else ops.batchnorm_forward_infer
            out = infer(self.x, self.gamma, self.beta, self.running_mean, self.running_var, self.eps)
            self.mean = self.inv_std = None
        return self._output(out.reshape(self.input_shape))

    def backward(self, dout: Any) -> np.ndarray:
        """dout of the input's shape -> dx; sets dgamma, dbeta (gamma's shape). Needs a training forward."""
        dout = self._dout(dout, "BatchNormalization.backward")
        if self.mean is None:
            raise RuntimeError("BatchNormalization.backward: the forward pass must run with train_flg=True "
                               "(an inference forward keeps no batch statistics)")
        x, gamma, mean, inv_std = self.x, self.gamma, self.mean, self.inv_std
        trusted = (dout.dtype == x.dtype == gamma.dtype == mean.dtype == inv_std.dtype and x.size > 0
                   and mean.shape == inv_std.shape == gamma.shape == (x.shape[1],))
        backward = unchecked.batchnorm_backward if trusted else ops.batchnorm_backward
        dx, self.dgamma, self.dbeta = backward(dout.reshape(x.shape), x, gamma, mean, inv_std)
        return dx.reshape(self.input_shape)

    def _trusted(self, x: np.ndarray, train: bool) -> bool:
        """Whether the check of ``batchnorm_forward_train`` (``train``) or ``batchnorm_forward_infer`` would pass
        ``x`` (laid out, 2-D or 4-D, x.shape[1] == gamma.size, as ``forward`` checked) and the layer's own arrays
        and numbers unchanged, so that its body may run unchecked: one dtype (training: x, gamma, beta; inference:
        all five), no empty axis, beta and the running statistics of gamma's shape, eps a float > 0; training also
        writeable running statistics and momentum in [0, 1] (attributes rebound since the constructor fail this)."""
        g, rm, rv, e = self.gamma, self.running_mean, self.running_var, self.eps
        if not (x.dtype == g.dtype == self.beta.dtype and x.size > 0 and kept_float(e) and e > 0.0
                and self.beta.shape == rm.shape == rv.shape == g.shape):
            return False
        if train:
            return rm.flags.writeable and rv.flags.writeable and kept_float(self.momentum, 0.0, 1.0)
        return rm.dtype == rv.dtype == g.dtype

    def _layout(self, x: np.ndarray) -> np.ndarray:
        """x as the kernel takes it: (N, C, H, W) per channel, or (N, D) per feature."""
        size = self.gamma.size
        if x.ndim == 4 and x.shape[1] == size:
            return x
        if features(x) == size:
            return x.reshape(x.shape[0], size)
        _validate.fail(f"{type(self).__name__}.forward", "x", f"(N, {size}), (N, {size}, H, W) or (N, C, H, W) with "
                       f"C*H*W == {size} (the size of gamma)", f"shape {x.shape}")
        raise AssertionError  # unreachable

    def _own_copy(self, value: Any, name: str, default: float = 0.0) -> np.ndarray:
        if value is None:
            return np.full(self.gamma.shape, default, self.gamma.dtype)
        value = _validate.float_array(value, type(self).__name__, name)
        same_shape(value, self.gamma, type(self).__name__, name, "gamma")
        return value.astype(self.gamma.dtype, copy=True)

    def _snapshot(self) -> Any:
        return self.running_mean.copy(), self.running_var.copy()

    def _restore(self, state: Any) -> None:
        np.copyto(self.running_mean, state[0])
        np.copyto(self.running_var, state[1])


def _ramp(step: int, start: int, end: int, low: float, high: float) -> float:
    """``low`` until ``start``, then linear to ``high`` at ``end``, then ``high``."""
    return low + (high - low) * min(1.0, max(0.0, (step - start) / (end - start)))


def paper_rmax(step: int) -> float:
    """Ioffe (2017), section 5.1: rmax = 1 for the first 5000 training steps, then relaxed to reach 3 at 40k steps
    (linearly here: the paper says "gradually")."""
    return _ramp(step, 5000, 40000, 1.0, 3.0)


def paper_dmax(step: int) -> float:
    """Ioffe (2017), section 5.1: dmax = 0 for the first 5000 training steps, then relaxed to reach 5 at 25k steps
    (linearly here)."""
    return _ramp(step, 5000, 25000, 0.0, 5.0)


class BatchRenormalization(BatchNormalization):
    """Batch renormalization (Ioffe 2017, arXiv:1702.03275): batch normalization whose training output is corrected
    towards the running statistics, so training and inference compute the same function of x in expectation.

    .. math::
        y = \\gamma \\Big(\\frac{x - \\mu_B}{\\sigma_B} r + d\\Big) + \\beta, \\quad
        r = \\mathrm{clip}_{[1/r_{max}, r_{max}]}(\\sigma_B / \\sigma), \\quad
        d = \\mathrm{clip}_{[-d_{max}, d_{max}]}((\\mu_B - \\mu) / \\sigma)

    r and d are constants in the backward pass; inference uses :math:`(x - \\mu) / \\sigma`. The running mean
    :math:`\\mu` and standard deviation :math:`\\sigma` (of :math:`\\sqrt{\\sigma_B^2 + \\epsilon}`) are
    updated after r and d are computed, as in the paper's Algorithm 1.

    Parameters
    ----------
    gamma, beta : ndarray (D,) or (C,), float32 or float64
        As :class:`BatchNormalization` (per feature of (N, D), per channel of (N, C, H, W)).
    momentum : float in [0, 1]
        ``running = momentum * running + (1 - momentum) * batch`` (the paper's update rate is 1 - momentum).
    rmax, dmax : float, or callable ``step -> float``
        The clipping bounds, rmax >= 1, dmax >= 0. A callable is evaluated at every training forward with the
        number of training forwards done before it (:attr:`steps`, 0 first), so a schedule is followed, not read
        once. The defaults :func:`paper_rmax`, :func:`paper_dmax` are the paper's: plain batch normalization
        (rmax = 1, dmax = 0) for 5000 steps, then relaxed linearly to rmax = 3 at 40k and dmax = 5 at 25k steps.
    running_mean, running_std : array-like of gamma's shape, optional
        Start values (default 0 and 1). Copied into the layer's own arrays in gamma's dtype.
    eps : float > 0
        Added to the batch variance.

    Attributes
    ----------
    steps : ndarray, 0-d float64 (a buffer, so checkpoints resume the schedule)
        Training forwards done.
    r, d : ndarray or None
        The corrections of the last training forward.
    """

    running_std = Entry("buffers", ndim=1)
    steps = Entry("buffers", ndim=0)

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, momentum: float = 0.9,
                 rmax: float | Callable[[int], float] = paper_rmax, dmax: float | Callable[[int], float] = paper_dmax,
                 running_mean: Any = None, running_std: Any = None, eps: float = 1e-5) -> None:
        Layer.__init__(self)
        self.gamma, self.beta = gamma, beta
        scale_and_shift(self.gamma, self.beta, "BatchRenormalization")
        self.momentum = _validate.scalar(momentum, "BatchRenormalization", "momentum", ge=0.0, le=1.0)
        self.eps = _validate.scalar(eps, "BatchRenormalization", "eps", gt=0.0)
        self.rmax, self.dmax = rmax, dmax
        for name, low in (("rmax", 1.0), ("dmax", 0.0)):  # a bad number or schedule fails here, not in training
            _validate.scalar(self._bound(name, 0), "BatchRenormalization", name, ge=low)
        self.running_mean = self._own_copy(running_mean, "running_mean")
        self.running_std = self._own_copy(running_std, "running_std", 1.0)
        self.steps = np.zeros((), np.float64)
        self.dgamma = self.dbeta = None
        self.input_shape = self.x = self.mean = self.inv_std = self.r = self.d = None

    def _bound(self, name: str, step: int) -> Any:
        """rmax or dmax at training step ``step`` (the kernel checks the value)."""
        value = getattr(self, name)
        return value(step) if callable(value) else value

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        """x (N, D) or (N, C, H, W) -> out of the same shape. Training (N >= 1) updates the running statistics
        and :attr:`steps`."""
        where = "BatchRenormalization.forward"
        x = batch(x, where, ndim=(2, 4))
        layout = self._layout(x)
        self.input_shape, self.x = x.shape, layout
        if train_flg:
            step = int(self.steps)
            out, self.mean, self.inv_std, self.r, self.d = ops.batchrenorm_forward_train(
                layout, self.gamma, self.beta, self.running_mean, self.running_std, self._bound("rmax", step),
                self._bound("dmax", step), self.momentum, self.eps)
            self.steps[...] = step + 1
        else:
            out = ops.batchrenorm_forward_infer(layout, self.gamma, self.beta, self.running_mean, self.running_std)
            self.mean = self.inv_std = self.r = self.d = None
        return self._output(out.reshape(self.input_shape))

    def backward(self, dout: Any) -> np.ndarray:
        """dout of the input's shape -> dx; sets dgamma, dbeta. Needs a training forward."""
        dout = self._dout(dout, "BatchRenormalization.backward")
        if self.mean is None:
            raise RuntimeError("BatchRenormalization.backward: the forward pass must run with train_flg=True "
                               "(an inference forward keeps no batch statistics)")
        dx, self.dgamma, self.dbeta = ops.batchrenorm_backward(dout.reshape(self.x.shape), self.x, self.gamma,
                                                               self.mean, self.inv_std, self.r, self.d)
        return dx.reshape(self.input_shape)

    def _snapshot(self) -> Any:
        return self.running_mean.copy(), self.running_std.copy(), self.steps.copy()

    def _restore(self, state: Any) -> None:
        for a, saved in zip((self.running_mean, self.running_std, self.steps), state, strict=True):
            np.copyto(a, saved)


class LayerNormalization(Layer):
    """Layer normalization (Ba et al. 2016): each sample normalized over all its features.

    .. math:: y_n = \\gamma \\odot (x_n - \\mu_n) / \\sqrt{\\sigma_n^2 + \\epsilon} + \\beta

    Parameters
    ----------
    gamma, beta : ndarray of the shape of one sample (x.shape[1:]), float32 or float64
    eps : float > 0
    """

    gamma = Entry("params")
    beta = Entry("params")
    dgamma = Entry("grads")
    dbeta = Entry("grads")

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma, self.beta = gamma, beta
        if self.gamma.ndim == 0:
            _validate.fail("LayerNormalization", "gamma", "at least 1-D (the shape of one sample)", "a 0-d array")
        scale_and_shift(self.gamma, self.beta, "LayerNormalization")
        self.eps = _validate.scalar(eps, "LayerNormalization", "eps", gt=0.0)
        self.dgamma = self.dbeta = None
        self.x = self.mean = self.inv_std = None

    def forward(self, x: Any) -> np.ndarray:
        """x ``(N, *gamma.shape)`` -> out of the same shape; mean, inv_std (N,)."""
        x = batch(x, "LayerNormalization.forward", min_ndim=2)
        if x.shape[1:] != self.gamma.shape:
            _validate.fail("LayerNormalization.forward", "x", f"of shape (N, *{self.gamma.shape}) (gamma's shape "
                           "per sample)", f"shape {x.shape}")
        self.x = x
        g = self.gamma  # x (N, *gamma.shape) checked above; what layernorm_forward's check adds:
        trusted = (arrays_of(x.dtype, g, self.beta) and self.beta.shape == g.shape and g.size > 0
                   and kept_float(self.eps) and self.eps > 0.0)
        forward = unchecked.layernorm_forward if trusted else ops.layernorm_forward
        out, self.mean, self.inv_std = forward(x, g, self.beta, self.eps)
        return self._output(out)

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "LayerNormalization.backward")
        x, g, mean, inv_std = self.x, self.gamma, self.mean, self.inv_std  # (attributes rebound since: checked)
        trusted = (arrays_of(dout.dtype, x, g, mean, inv_std) and x.ndim >= 2 and dout.shape == x.shape
                   and g.shape == x.shape[1:] and g.size > 0 and mean.shape == inv_std.shape == x.shape[:1])
        backward = unchecked.layernorm_backward if trusted else ops.layernorm_backward
        dx, self.dgamma, self.dbeta = backward(dout, x, g, mean, inv_std)
        return dx


class GroupNormalization(Layer):
    """Group normalization (Wu & He 2018): the C channels of each sample split into ``groups`` groups of
    C/groups channels, each group normalized over its channels and pixels, then a per-channel scale and shift.

    Parameters
    ----------
    gamma, beta : ndarray (C,), float32 or float64
    groups : int, divides C
    eps : float > 0
    """

    gamma = Entry("params", ndim=1)
    beta = Entry("params", ndim=1)
    dgamma = Entry("grads")
    dbeta = Entry("grads")

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, groups: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma, self.beta = gamma, beta
        scale_and_shift(self.gamma, self.beta, "GroupNormalization")
        self.groups = _validate.divisor(groups, self.gamma.size, "GroupNormalization", "groups", "C (gamma's size)")
        self.eps = _validate.scalar(eps, "GroupNormalization", "eps", gt=0.0)
        self.dgamma = self.dbeta = None
        self.x = self.mean = self.inv_std = None

    #: The kernel pair this layer calls (``<_kernel>_forward``, ``<_kernel>_backward``).
    _kernel = "groupnorm"

    def forward(self, x: Any) -> np.ndarray:
        """x (N, C, H, W) -> out of the same shape; mean, inv_std (N, groups)."""
        where = f"{type(self).__name__}.forward"
        x = batch(x, where, ndim=4)
        if x.shape[1] != self.gamma.size:
            _validate.fail(where, "x", f"of shape (N, {self.gamma.size}, H, W) (C = size of gamma)",
                           f"shape {x.shape}")
        self.x = x
        g = self.gamma  # x (N, gamma.size, H, W) checked above; what the kernel's check adds:
        trusted = (arrays_of(x.dtype, g, self.beta) and self.beta.shape == g.shape and all(x.shape[1:])
                   and self._groups_kept(x) and kept_float(self.eps) and self.eps > 0.0)
        forward = getattr(unchecked if trusted else ops, f"{self._kernel}_forward")
        out, self.mean, self.inv_std = forward(x, g, self.beta, *self._groups_arg(), self.eps)
        return self._output(out)

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, f"{type(self).__name__}.backward")
        x, g, mean, inv_std = self.x, self.gamma, self.mean, self.inv_std  # (attributes rebound since: checked)
        trusted = (arrays_of(dout.dtype, x, g, mean, inv_std) and x.ndim == 4 and dout.shape == x.shape
                   and all(x.shape[1:]) and g.shape == x.shape[1:2] and self._groups_kept(x)
                   and mean.shape == inv_std.shape == (x.shape[0], self.groups))
        backward = getattr(unchecked if trusted else ops, f"{self._kernel}_backward")
        dx, self.dgamma, self.dbeta = backward(dout, x, g, *self._groups_arg(), mean, inv_std)
        return dx

    def _groups_arg(self) -> tuple[int, ...]:
        return (self.groups,)

    def _groups_kept(self, x: np.ndarray) -> bool:
        """``groups`` still an int >= 1 dividing x's C, as the constructor left it and the kernels check it."""
        G = self.groups
        return type(G) is int and G >= 1 and x.shape[1] % G == 0


class InstanceNormalization(GroupNormalization):
    """Instance normalization (Ulyanov et al. 2016, arXiv:1607.08022): each channel of each sample normalized over
    its H*W pixels, then a per-channel scale and shift -- group normalization with one channel per group, on the
    ``instancenorm_*`` kernels.

    .. math:: y_{nc} = \\gamma_c \\, (x_{nc} - \\mu_{nc}) / \\sqrt{\\sigma_{nc}^2 + \\epsilon} + \\beta_c

    Equals ``torch.nn.InstanceNorm2d(C, affine=True)`` in training mode (no running statistics are kept).

    Parameters
    ----------
    gamma, beta : ndarray (C,), float32 or float64
    eps : float > 0
    """

    _kernel = "instancenorm"

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5) -> None:
        Layer.__init__(self)
        self.gamma, self.beta = gamma, beta
        scale_and_shift(self.gamma, self.beta, "InstanceNormalization")
        self.groups = self.gamma.size
        self.eps = _validate.scalar(eps, "InstanceNormalization", "eps", gt=0.0)
        self.dgamma = self.dbeta = None
        self.x = self.mean = self.inv_std = None

    def _groups_arg(self) -> tuple[int, ...]:
        return ()

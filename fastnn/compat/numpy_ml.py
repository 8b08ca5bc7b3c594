"""numpy-ml's neural-net optimizers on fastnn's fused kernels.

Same classes, constructor arguments and defaults, ``update``/``__call__`` contract, per-parameter ``cache``,
``hyperparameters`` dict, ``cur_step``/``step()``/``reset_step()``, ``copy()`` and ``set_params()`` as
``numpy_ml.neural_nets.optimizers`` (ddbourgin/numpy-ml, ``optimizers/optimizers.py``)::

    from fastnn.compat.numpy_ml import Adam   # instead of numpy_ml.neural_nets.optimizers.Adam
    opt = Adam(lr=0.001)
    W = opt.update(W, dW, "W")                # a new array; W itself is not modified

``update`` returns the new parameter (a new array, as numpy-ml's ``param - update``); the update itself is one
fused pass of :mod:`fastnn.kernels` over a copy of the parameter, and the cache arrays are updated in place.

Differences from numpy-ml:

* ``lr_scheduler`` is None (a constant rate, shown as ``"ConstantScheduler(lr=...)"`` as numpy-ml does) or any
  callable ``scheduler(step, cur_loss) -> lr`` (numpy-ml's scheduler objects are such callables); scheduler
  names given as strings are not parsed (TypeError).
* The cache arrays have the parameter's dtype, so a float32 parameter stays float32 even with a float64
  gradient (numpy-ml promotes the result to float64).
* Hyperparameters are validated (lr > 0, 0 <= momentum < 1, ...); errors name the class and argument.
* ``hyperparams`` is an alias of ``hyperparameters``.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import Any

import numpy as np

from .. import _validate, kernels

__all__ = ["OptimizerBase", "SGD", "AdaGrad", "RMSProp", "Adam", "ConstantScheduler"]

#: The kernel module the optimizers compute with (:mod:`fastnn.kernels`; tests swap in :mod:`fastnn.reference`).
backend: Any = kernels


class ConstantScheduler:
    """numpy-ml's default scheduler: the same learning rate at every step."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr
        self.hyperparameters = {"id": "ConstantScheduler", "lr": self.lr}

    def __str__(self) -> str:
        return f"ConstantScheduler(lr={self.lr})"

    def __call__(self, step: int | None = None, cur_loss: float | None = None) -> float:
        return self.lr


class OptimizerBase:
    """Shared machinery of numpy-ml's optimizers (never used directly).

    Parameters
    ----------
    lr : float
        Learning rate (> 0), the scheduler's starting rate.
    scheduler : callable or None
        ``scheduler(cur_step, cur_loss) -> lr``; None: constant ``lr``.
    """

    def __init__(self, lr: float, scheduler: Callable | None = None) -> None:
        name = type(self).__name__
        _validate.scalar(lr, name, "lr", gt=0)
        if scheduler is None:
            scheduler = ConstantScheduler(lr=lr)
        elif not callable(scheduler):
            _validate.fail(name, "lr_scheduler", "None or a callable scheduler(step, cur_loss) -> lr",
                           repr(scheduler), TypeError)
        self.cache: dict[str, Any] = {}
        self.cur_step = 0
        self.hyperparameters: dict[str, Any] = {}
        self.lr_scheduler = scheduler

    @property
    def hyperparams(self) -> dict[str, Any]:
        """Alias of :attr:`hyperparameters`."""
        return self.hyperparameters

    def __call__(self, param: np.ndarray, param_grad: np.ndarray, param_name: str,
                 cur_loss: float | None = None) -> np.ndarray:
        return self.update(param, param_grad, param_name, cur_loss)

    def step(self) -> None:
        """Increment the step counter the scheduler sees by 1."""
        self.cur_step += 1

    def reset_step(self) -> None:
        """Reset the step counter to zero."""
        self.cur_step = 0

    def copy(self) -> OptimizerBase:
        """A deep copy (cache included)."""
        return deepcopy(self)

    def set_params(self, hparam_dict: dict | None = None, cache_dict: dict | None = None) -> None:
        """Set known hyperparameters and cache entries from dictionaries (unknown keys are ignored)."""
        if hparam_dict is not None:
            for k, v in hparam_dict.items():
                if k not in self.hyperparameters:
                    continue
                if k == "lr_scheduler":
                    if not callable(v):
                        _validate.fail(type(self).__name__, "lr_scheduler", "a callable scheduler", repr(v),
                                       TypeError)
                    self.lr_scheduler = v
                    v = str(v)
                self.hyperparameters[k] = v
        if cache_dict is not None:
            for k, v in cache_dict.items():
                if k in self.cache:
                    self.cache[k] = v

    def update(self, param: np.ndarray, param_grad: np.ndarray, param_name: str,
               cur_loss: float | None = None) -> np.ndarray:
        raise NotImplementedError

    # -- helpers

    def _prepare(self, param: Any, param_grad: Any, cur_loss: Any) -> tuple[np.ndarray, np.ndarray, float]:
        """A new C-contiguous copy of param to update in place, the (clipped) gradient, and this step's rate."""
        where = f"{type(self).__name__}.update"
        p = _validate.float_array(param, where, "param")
        g = _validate.float_array(param_grad, where, "param_grad")
        if g.shape != p.shape:
            _validate.fail(where, "param_grad", f"of shape {p.shape} like param", f"shape {g.shape}")
        clip_norm = self.hyperparameters["clip_norm"]
        if clip_norm is not None:
            norm = np.linalg.norm(g)
            if norm > clip_norm:  # numpy-ml: rescale the gradient to the maximum L2 norm
                g = g * clip_norm / norm
        lr = _validate.scalar(self.lr_scheduler(self.cur_step, cur_loss), where, "learning rate from lr_scheduler",
                              gt=0)
        return np.array(p, order="C"), g, lr

    def _state(self, container: dict, key: str, like: np.ndarray) -> np.ndarray:
        """container[key] as an array of like's shape and dtype (zeros when new), stored back."""
        s = container.get(key)
        if not (isinstance(s, np.ndarray) and s.shape == like.shape and s.dtype == like.dtype and s.flags.writeable):
            s = np.zeros_like(like) if s is None else np.array(s, dtype=like.dtype)
            if s.shape != like.shape:
                _validate.fail(f"{type(self).__name__}.update", f"cache[{key!r}]", f"of shape {like.shape}",
                               f"shape {s.shape}")
            container[key] = s
        return s


def _check_clip(clip_norm: Any, where: str) -> Any:
    return None if clip_norm is None else _validate.scalar(clip_norm, where, "clip_norm", gt=0)


class SGD(OptimizerBase):
    r"""Stochastic gradient descent with momentum, numpy-ml's form.

    .. math:: u \leftarrow \mathrm{momentum}\, u + \eta\, g, \qquad \theta \leftarrow \theta - u

    ``cache[param_name]`` is :math:`u` (the last update), as in numpy-ml.

    Parameters
    ----------
    lr : float
        Learning rate (default 0.01).
    momentum : float
        In [0, 1) (default 0).
    clip_norm : float or None
        Rescale gradients to at most this L2 norm.
    lr_scheduler : callable or None
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, clip_norm: float | None = None,
                 lr_scheduler: Callable | None = None, **kwargs: Any) -> None:
        super().__init__(lr, lr_scheduler)
        _validate.scalar(momentum, "SGD", "momentum", ge=0, lt=1)
        self.hyperparameters = {"id": "SGD", "lr": lr, "momentum": momentum,
                                "clip_norm": _check_clip(clip_norm, "SGD"), "lr_scheduler": str(self.lr_scheduler)}

    def __str__(self) -> str:
        H = self.hyperparameters
        return (f"SGD(lr={H['lr']}, momentum={H['momentum']}, clip_norm={H['clip_norm']}, "
                f"lr_scheduler={H['lr_scheduler']})")

    def update(self, param: np.ndarray, param_grad: np.ndarray, param_name: str,
               cur_loss: float | None = None) -> np.ndarray:
        """The new value of ``param`` after one step (``param`` is not modified)."""
        new, g, lr = self._prepare(param, param_grad, cur_loss)
        u = self._state(self.cache, param_name, new)
        # momentum_step keeps v = -u (v = m v - lr g; p += v): flip the sign around it instead of a second kernel
        np.negative(u, out=u)
        try:
            backend.momentum_step(new, g, u, lr, self.hyperparameters["momentum"])
        finally:  # the cache is numpy-ml's u again, also if the step raised (it validates before writing)
            np.negative(u, out=u)
        return new


class AdaGrad(OptimizerBase):
    r"""AdaGrad, numpy-ml's form.

    .. math:: c \leftarrow c + g^2, \qquad \theta \leftarrow \theta - \eta\, g / (\sqrt{c} + \epsilon)

    Parameters
    ----------
    lr : float
        Default 0.01.
    eps : float
        Default 1e-7.
    clip_norm : float or None
    lr_scheduler : callable or None
    """

    def __init__(self, lr: float = 0.01, eps: float = 1e-7, clip_norm: float | None = None,
                 lr_scheduler: Callable | None = None, **kwargs: Any) -> None:
        super().__init__(lr, lr_scheduler)
        _validate.scalar(eps, "AdaGrad", "eps", gt=0)
        self.hyperparameters = {"id": "AdaGrad", "lr": lr, "eps": eps, "clip_norm": _check_clip(clip_norm, "AdaGrad"),
                                "lr_scheduler": str(self.lr_scheduler)}

    def __str__(self) -> str:
        H = self.hyperparameters
        return f"AdaGrad(lr={H['lr']}, eps={H['eps']}, clip_norm={H['clip_norm']}, lr_scheduler={H['lr_scheduler']})"

    def update(self, param: np.ndarray, param_grad: np.ndarray, param_name: str,
               cur_loss: float | None = None) -> np.ndarray:
        """The new value of ``param`` after one step (``param`` is not modified)."""
        new, g, lr = self._prepare(param, param_grad, cur_loss)
        c = self._state(self.cache, param_name, new)
        backend.adagrad_step(new, g, c, lr, self.hyperparameters["eps"])
        return new


class RMSProp(OptimizerBase):
    r"""RMSProp, numpy-ml's form.

    .. math:: c \leftarrow d\, c + (1 - d) g^2, \qquad \theta \leftarrow \theta - \eta\, g / (\sqrt{c} + \epsilon)

    Parameters
    ----------
    lr : float
        Default 0.001.
    decay : float
        :math:`d` in [0, 1), default 0.9.
    eps : float
        Default 1e-7.
    clip_norm : float or None
    lr_scheduler : callable or None
    """

    def __init__(self, lr: float = 0.001, decay: float = 0.9, eps: float = 1e-7, clip_norm: float | None = None,
                 lr_scheduler: Callable | None = None, **kwargs: Any) -> None:
        super().__init__(lr, lr_scheduler)
        _validate.scalar(decay, "RMSProp", "decay", ge=0, lt=1)
        _validate.scalar(eps, "RMSProp", "eps", gt=0)
        self.hyperparameters = {"id": "RMSProp", "lr": lr, "eps": eps, "decay": decay,
                                "clip_norm": _check_clip(clip_norm, "RMSProp"),
                                "lr_scheduler": str(self.lr_scheduler)}

    def __str__(self) -> str:
        H = self.hyperparameters
        return (f"RMSProp(lr={H['lr']}, eps={H['eps']}, decay={H['decay']}, clip_norm={H['clip_norm']}, "
                f"lr_scheduler={H['lr_scheduler']})")

    def update(self, param: np.ndarray, param_grad: np.ndarray, param_name: str,
               cur_loss: float | None = None) -> np.ndarray:
        """The new value of ``param`` after one step (``param`` is not modified)."""
        new, g, lr = self._prepare(param, param_grad, cur_loss)
        c = self._state(self.cache, param_name, new)
        H = self.hyperparameters
        backend.rmsprop_step(new, g, c, lr, H["decay"], H["eps"])
        return new


class Adam(OptimizerBase):
    r"""Adam, numpy-ml's form (bias-corrected moments, ``eps`` outside the square root).

    .. math::
        m &\leftarrow d_1 m + (1 - d_1) g, \quad v \leftarrow d_2 v + (1 - d_2) g^2 \\
        \theta &\leftarrow \theta - \eta\, \frac{m / (1 - d_1^t)}{\sqrt{v / (1 - d_2^t)} + \epsilon}

    ``cache[param_name]`` is ``{"t": t, "mean": m, "var": v}``, as in numpy-ml.

    Parameters
    ----------
    lr : float
        Default 0.001.
    decay1, decay2 : float
        In [0, 1); defaults 0.9 and 0.999.
    eps : float
        Default 1e-7.
    clip_norm : float or None
    lr_scheduler : callable or None
    """

    def __init__(self, lr: float = 0.001, decay1: float = 0.9, decay2: float = 0.999, eps: float = 1e-7,
                 clip_norm: float | None = None, lr_scheduler: Callable | None = None, **kwargs: Any) -> None:
        super().__init__(lr, lr_scheduler)
        _validate.scalar(decay1, "Adam", "decay1", ge=0, lt=1)
        _validate.scalar(decay2, "Adam", "decay2", ge=0, lt=1)
        _validate.scalar(eps, "Adam", "eps", gt=0)
        self.hyperparameters = {"id": "Adam", "lr": lr, "eps": eps, "decay1": decay1, "decay2": decay2,
                                "clip_norm": _check_clip(clip_norm, "Adam"), "lr_scheduler": str(self.lr_scheduler)}

    def __str__(self) -> str:
        H = self.hyperparameters
        return (f"Adam(lr={H['lr']}, decay1={H['decay1']}, decay2={H['decay2']}, eps={H['eps']}, "
                f"clip_norm={H['clip_norm']}, lr_scheduler={H['lr_scheduler']})")

    def update(self, param: np.ndarray, param_grad: np.ndarray, param_name: str,
               cur_loss: float | None = None) -> np.ndarray:
        """The new value of ``param`` after one step (``param`` is not modified)."""
        new, g, lr = self._prepare(param, param_grad, cur_loss)
        entry = self.cache.setdefault(param_name, {"t": 0})
        m = self._state(entry, "mean", new)
        v = self._state(entry, "var", new)
        H = self.hyperparameters
        d1, d2 = H["decay1"], H["decay2"]
        t = int(entry["t"]) + 1
        backend.adam_step(new, g, m, v, lr, d1, d2, H["eps"], 1.0 - d1**t, 1.0 - d2**t)
        entry["t"] = t
        return new

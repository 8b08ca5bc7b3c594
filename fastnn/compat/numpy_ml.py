"""numpy-ml's neural-net optimizers on fastnn's fused kernels.

Same classes, constructor arguments and defaults, ``update``/``__call__`` contract, per-parameter ``cache``,
``hyperparameters`` dict, ``cur_step``/``step()``/``reset_step()``, ``copy()`` and ``set_params()`` as
``numpy_ml.neural_nets.optimizers`` (ddbourgin/numpy-ml, ``optimizers/optimizers.py``)::

    from fastnn.compat.numpy_ml import Adam   # instead of numpy_ml.neural_nets.optimizers.Adam
    opt = Adam(lr=0.001)
    W = opt.update(W, dW, "W")                # a new array; W itself is not modified

``update`` returns the new parameter (a new array, as numpy-ml's ``param - update``); the update itself is one
fused pass of :mod:`fastnn.kernels` over a copy of the parameter, and the cache arrays are updated in place. The
kernels are called through :data:`fastnn.backend.ops`, so ``fastnn.backend.using("reference")`` runs the
optimizers on the NumPy twins.

Learning-rate schedulers: ``ConstantScheduler``, ``ExponentialScheduler``, ``NoamScheduler`` and
``KingScheduler`` with numpy-ml's formulas (``schedulers/schedulers.py``). ``lr_scheduler`` takes what numpy-ml's
``SchedulerInitializer`` takes: None (a constant ``lr``), a scheduler object (fastnn's or numpy-ml's), its string
form (``"ExponentialScheduler(initial_lr=0.01, stage_length=500, staircase=False, decay=0.1)"``; the name is matched
case-insensitively by the words constant / exponential / noam / king) or a dict ``{"hyperparameters": {"id":
"NoamScheduler", ...}}`` (a layer's ``summary()`` form); fastnn also takes any callable ``scheduler(step, cur_loss)
-> lr``. With a scheduler given, ``lr`` is recorded in ``hyperparameters`` but the scheduler sets the rate, as in
numpy-ml.

With numpy-ml installed, fastnn's optimizers and schedulers are registered as virtual subclasses of numpy-ml's
``OptimizerBase`` and ``SchedulerBase`` (both ``abc.ABC``), so numpy-ml's layers and optimizers accept them
(``FullyConnected(10, optimizer=fastnn.compat.numpy_ml.Adam())``). numpy-ml is never imported by fastnn (it takes
about a second and imports matplotlib): the registration happens when numpy-ml's own import defines those classes.

Differences from numpy-ml:

* The cache arrays have the parameter's dtype, so a float32 parameter stays float32 even with a float64
  gradient (numpy-ml promotes the result to float64).
* Hyperparameters are validated (lr > 0, 0 <= momentum < 1, ...); errors name the class and argument.
* ``hyperparams`` is an alias of ``hyperparameters``.
* Scheduler strings are parsed by their keyword names: numpy-ml's pattern reads only the letters before ``=``, so
  ``initial_lr``, ``stage_length``, ``model_dim``, ``scale_factor`` and ``warmup_steps`` were silently dropped
  (the defaults were used) and ``staircase=False`` failed to parse (it lower-cases the string first). Text that
  is not ``key=value`` raises ValueError instead of being ignored.
* Scheduler dicts and ``set_params`` set the rate the scheduler computes; numpy-ml changed only the
  ``hyperparameters`` dict (the rate stayed at the defaults). The dict form also takes ``KingScheduler``, and
  ``"StepScheduler"`` (the id numpy-ml's ``ExponentialScheduler`` reports) as well as ``"ExponentialScheduler"``.
* A bad ``lr_scheduler`` (a number, an unknown name, a dict without ``hyperparameters``) raises a TypeError or
  ValueError naming the optimizer; numpy-ml raised UnboundLocalError or NotImplementedError.
"""

from __future__ import annotations

import ast
import importlib.abc
import math
import sys
from abc import ABCMeta
from collections.abc import Callable
from copy import deepcopy
from typing import Any

import numpy as np

from .. import _validate
from ..backend import ops

__all__ = ["OptimizerBase", "SGD", "AdaGrad", "RMSProp", "Adam", "SchedulerBase", "ConstantScheduler",
           "ExponentialScheduler", "NoamScheduler", "KingScheduler", "DotProductAttention",
           "MultiHeadedAttentionModule"]

# ------------------------------------------------------------------------------------------------ schedulers


class SchedulerBase:
    """Shared machinery of numpy-ml's learning-rate schedulers (never used directly).

    A scheduler is called as ``scheduler(step, cur_loss) -> lr``; ``hyperparameters`` holds its ``"id"`` and
    constructor arguments.
    """

    def __init__(self) -> None:
        self.hyperparameters: dict[str, Any] = {}

    def __call__(self, step: int | None = None, cur_loss: float | None = None) -> float:
        return self.learning_rate(step=step, cur_loss=cur_loss)

    def learning_rate(self, step: int | None = None, cur_loss: float | None = None) -> float:
        raise NotImplementedError

    def copy(self) -> SchedulerBase:
        """A deep copy (state such as KingScheduler's loss history included)."""
        return deepcopy(self)

    def set_params(self, hparam_dict: dict | None = None) -> None:
        """Set known hyperparameters from a dictionary (unknown keys are ignored).

        Unlike numpy-ml, whose ``set_params`` changes only the ``hyperparameters`` dict, the attributes the rate is
        computed from change too; the new values are validated before anything is set.
        """
        if hparam_dict is None:
            return
        known = {k: v for k, v in hparam_dict.items() if k in self.hyperparameters}
        self._set(**{k: v for k, v in known.items() if k != "id"})
        self.hyperparameters.update(known)

    def _set(self, **hp: Any) -> None:
        """Validate constructor arguments, then store them as attributes and in ``hyperparameters``."""
        raise NotImplementedError

    def _store(self, **hp: Any) -> None:
        for k, v in hp.items():
            setattr(self, k, v)
        self.hyperparameters.update(hp)


class ConstantScheduler(SchedulerBase):
    """numpy-ml's default scheduler: the same learning rate at every step.

    Parameters
    ----------
    lr : float
        The learning rate (> 0), default 0.01.
    """

    def __init__(self, lr: float = 0.01, **kwargs: Any) -> None:
        super().__init__()
        self.hyperparameters = {"id": "ConstantScheduler"}
        self._set(lr=lr)

    def _set(self, **hp: Any) -> None:
        if "lr" in hp:
            _validate.scalar(hp["lr"], "ConstantScheduler", "lr", gt=0)
        self._store(**hp)

    def __str__(self) -> str:
        return f"ConstantScheduler(lr={self.lr})"

    def learning_rate(self, step: int | None = None, cur_loss: float | None = None) -> float:
        return self.lr


class ExponentialScheduler(SchedulerBase):
    r"""numpy-ml's exponential decay: the rate falls by a factor ``decay`` every ``stage_length`` steps.

    .. math:: \eta_t = \eta_0\, d^{\,s}, \qquad s = t / L \ \text{or}\ \lfloor t / L \rfloor \ \text{(staircase)}

    ``hyperparameters["id"]`` is ``"StepScheduler"``, the id numpy-ml's class reports.

    Parameters
    ----------
    initial_lr : float
        :math:`\eta_0` (> 0), default 0.01.
    stage_length : int or float
        :math:`L` (> 0), default 500.
    staircase : bool
        Decay at stage boundaries only (default False: after every step).
    decay : float
        :math:`d` (> 0), default 0.1.
    """

    def __init__(self, initial_lr: float = 0.01, stage_length: float = 500, staircase: bool = False,
                 decay: float = 0.1, **kwargs: Any) -> None:
        super().__init__()
        self.hyperparameters = {"id": "StepScheduler"}
        self._set(decay=decay, staircase=staircase, initial_lr=initial_lr, stage_length=stage_length)

    def _set(self, **hp: Any) -> None:
        for name in ("initial_lr", "stage_length", "decay"):
            if name in hp:
                _validate.scalar(hp[name], "ExponentialScheduler", name, gt=0)
        if "staircase" in hp:
            _validate.flag(hp["staircase"], "ExponentialScheduler", "staircase")
        self._store(**hp)

    def __str__(self) -> str:
        return (f"ExponentialScheduler(initial_lr={self.initial_lr}, stage_length={self.stage_length}, "
                f"staircase={self.staircase}, decay={self.decay})")

    def learning_rate(self, step: int | None = None, cur_loss: float | None = None) -> float:
        stage = step / self.stage_length
        if self.staircase:
            stage = np.floor(stage)
        return self.initial_lr * self.decay**stage


class NoamScheduler(SchedulerBase):
    r"""numpy-ml's Noam schedule (Vaswani et al. 2017): linear warm-up, then decay as :math:`t^{-1/2}`.

    .. math:: \eta_t = f\, D^{-1/2} \min\!\left(t^{-1/2},\ t\, W^{-3/2}\right)

    The optimizer's ``lr`` is not used. Step 0 has no rate (``0 ** -0.5``; ValueError): numpy-ml's layers call
    ``step()`` before their first update.

    Parameters
    ----------
    model_dim : int
        :math:`D` (> 0), default 512.
    scale_factor : float
        :math:`f` (> 0), default 1.
    warmup_steps : int
        :math:`W` (> 0), default 4000.
    """

    def __init__(self, model_dim: int = 512, scale_factor: float = 1, warmup_steps: int = 4000,
                 **kwargs: Any) -> None:
        super().__init__()
        self.hyperparameters = {"id": "NoamScheduler"}
        self._set(model_dim=model_dim, scale_factor=scale_factor, warmup_steps=warmup_steps)

    def _set(self, **hp: Any) -> None:
        for name, v in hp.items():
            _validate.scalar(v, "NoamScheduler", name, gt=0)
        self._store(**hp)

    def __str__(self) -> str:
        return (f"NoamScheduler(model_dim={self.model_dim}, scale_factor={self.scale_factor}, "
                f"warmup_steps={self.warmup_steps})")

    def learning_rate(self, step: int | None = None, cur_loss: float | None = None) -> float:
        if isinstance(step, (int, np.integer)) and step < 1:  # numpy-ml: ZeroDivisionError from 0 ** -0.5
            _validate.fail("NoamScheduler", "step", ">= 1 (numpy-ml's layers call the optimizer's step() before "
                           "update)", step)
        rate = self.model_dim ** (-0.5) * min(step ** (-0.5), step * self.warmup_steps ** (-1.5))
        return self.scale_factor * rate


class KingScheduler(SchedulerBase):
    r"""numpy-ml's Davis King (dlib) schedule: multiply the rate by ``decay`` while the loss stops falling.

    Each call records ``cur_loss``. Once ``patience`` losses are recorded, the rate is multiplied by ``decay``
    whenever the probability that the loss is decreasing, judged from the slope of a least-squares line through
    the last ``patience + 1`` losses, is below 0.51 -- both for those losses and for them without their largest
    10% (spikes). The slope :math:`\hat s` has variance :math:`\hat\sigma^2_s = 12\,\hat\sigma^2 / (N^3 - N)`
    (:math:`\hat\sigma^2`: residual variance with :math:`N - 2` degrees of freedom), and
    :math:`P(s < 0) = \Phi(-\hat s / \hat\sigma_s)`. The history keeps the last ``ceil(1.1 (patience + 1))``
    losses.

    Parameters
    ----------
    initial_lr : float
        The starting rate (> 0), default 0.01.
    patience : int
        Steps without a decrease before the rate drops (>= 3: the residual variance needs 3 points), default 1000.
    decay : float
        Factor applied to the rate (> 0), default 0.99.
    """

    def __init__(self, initial_lr: float = 0.01, patience: int = 1000, decay: float = 0.99, **kwargs: Any) -> None:
        super().__init__()
        self.hyperparameters = {"id": "KingScheduler"}
        self._set(decay=decay, patience=patience, initial_lr=initial_lr)
        self.current_lr = initial_lr
        self.loss_history: list[float] = []

    def _set(self, **hp: Any) -> None:
        for name in ("initial_lr", "decay"):
            if name in hp:
                _validate.scalar(hp[name], "KingScheduler", name, gt=0)
        if "patience" in hp:
            _validate.integer(hp["patience"], "KingScheduler", "patience", minimum=3)
        self._store(**hp)
        self.max_history = int(np.ceil(1.1 * (self.patience + 1)))

    def __str__(self) -> str:
        return f"KingScheduler(initial_lr={self.initial_lr}, patience={self.patience}, decay={self.decay})"

    def learning_rate(self, step: int | None = None, cur_loss: float | None = None) -> float:
        """Record ``cur_loss`` (required) and return the rate for this step."""
        try:  # any real number, inf and nan included (a diverging run keeps its schedule, as in numpy-ml)
            float(cur_loss)
        except (TypeError, ValueError):
            _validate.fail("KingScheduler", "cur_loss", "a real number (the loss of this step)", repr(cur_loss),
                           TypeError)
        self.loss_history.append(cur_loss)
        if len(self.loss_history) < self.patience:
            return self.current_lr
        self.loss_history = self.loss_history[-self.max_history:]
        history = np.asarray(self.loss_history, dtype=np.float64)
        if self._stalled(history) and self._stalled(history[history <= np.quantile(history, 0.9)]):
            self.current_lr *= self.decay
        return self.current_lr

    def _stalled(self, losses: np.ndarray) -> bool:
        """Whether P(slope < 0) < 0.51 over more than ``patience`` of the last losses."""
        window = losses[max(0, len(losses) - self.patience - 1):]
        return len(window) > self.patience and self._p_decreasing(window) < 0.51

    @staticmethod
    def _p_decreasing(losses: np.ndarray) -> float:
        """P(slope < 0) of the least-squares line through ``losses`` against 0, 1, ..., N - 1."""
        n = len(losses)
        dx = np.arange(n) - (n - 1) / 2
        dy = losses - losses.mean()
        slope = (dx @ dy) / (dx @ dx)
        residual_var = np.sum((dy - slope * dx) ** 2) / (n - 2)
        slope_var = 12 * residual_var / (n**3 - n)
        z = -slope / np.sqrt(slope_var + np.finfo(float).eps)
        return (1 + math.erf(z / np.sqrt(2))) / 2


#: The names a scheduler string is recognised by (checked in this order, as numpy-ml does) and the ids of the dict
#: form ("StepScheduler": what numpy-ml's ExponentialScheduler reports as its id).
_SCHEDULER_WORDS = (("constant", ConstantScheduler), ("exponential", ExponentialScheduler), ("noam", NoamScheduler),
                    ("king", KingScheduler))
_SCHEDULER_IDS = {"ConstantScheduler": ConstantScheduler, "ExponentialScheduler": ExponentialScheduler,
                  "StepScheduler": ExponentialScheduler, "NoamScheduler": NoamScheduler, "KingScheduler": KingScheduler}
_SCHEDULER_FORMS = ("None, a scheduler object or callable scheduler(step, cur_loss) -> lr, a string such as "
                    "'ExponentialScheduler(initial_lr=0.01, decay=0.5)' or a dict "
                    "{'hyperparameters': {'id': ..., ...}}")


def _make_scheduler(spec: Any, lr: float | None, where: str) -> Callable:
    """The scheduler an optimizer's ``lr_scheduler`` argument stands for (numpy-ml's ``SchedulerInitializer``).

    Parameters
    ----------
    spec : None, scheduler object or callable, str or dict
        None: ``ConstantScheduler(lr)``. A callable (fastnn's or numpy-ml's scheduler objects included) is used as
        it is. A string ``"Name(key=value, ...)"``: the scheduler whose name contains constant / exponential / noam
        / king (any case), built with those keyword arguments (values are Python literals; true / false / none in
        any case). A dict ``{"hyperparameters": {"id": "<Name>Scheduler", **arguments}}``.
    lr : float or None
        The optimizer's rate (for None).
    where : str
        The caller, for error messages.

    Returns
    -------
    callable
        ``scheduler(step, cur_loss) -> lr``.
    """
    if spec is None and lr is not None:
        return ConstantScheduler(lr=lr)
    if isinstance(spec, str):
        return _scheduler_from_str(spec, where)
    if isinstance(spec, dict):
        hp = spec.get("hyperparameters")
        if not isinstance(hp, dict) or hp.get("id") not in _SCHEDULER_IDS:
            _validate.fail(where, "lr_scheduler", "a dict {'hyperparameters': {'id': <one of " +
                           ", ".join(_SCHEDULER_IDS) + ">, ...}}", repr(spec))
        return _SCHEDULER_IDS[hp["id"]](**{k: v for k, v in hp.items() if k != "id"})
    if spec is None or not callable(spec):
        _validate.fail(where, "lr_scheduler", _SCHEDULER_FORMS, repr(spec), TypeError)
    return spec


def _scheduler_from_str(text: str, where: str) -> SchedulerBase:
    """``"Name(key=value, ...)"`` -> the scheduler, keyword names read whole (numpy-ml dropped ``initial_`` etc.)."""
    name, paren, args = text.partition("(")
    cls = next((c for word, c in _SCHEDULER_WORDS if word in name.lower()), None)
    if cls is None:
        _validate.fail(where, "lr_scheduler", "a string naming ConstantScheduler, ExponentialScheduler, NoamScheduler "
                       "or KingScheduler", repr(text))
    args = args.strip()
    if paren and not args.endswith(")"):
        _validate.fail(where, "lr_scheduler", "a string 'Name(key=value, ...)' with its closing parenthesis",
                       repr(text))
    kwargs = {}
    for item in args[:-1].split(",") if paren else ():
        key, eq, value = (part.strip() for part in item.partition("="))
        if not item.strip():
            continue
        if not eq or not key.isidentifier():
            _validate.fail(where, "lr_scheduler", "a string 'Name(key=value, ...)' of keyword arguments", repr(text))
        kwargs[key.lower()] = _literal(value, text, where)  # numpy-ml lower-cases the whole string
    return cls(**kwargs)


def _literal(value: str, text: str, where: str) -> Any:
    """A Python literal; true / false / none in any case (numpy-ml lower-cases them, then could not read them)."""
    words = {"true": True, "false": False, "none": None}
    if value.lower() in words:
        return words[value.lower()]
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        _validate.fail(where, "lr_scheduler", "a string whose values are Python literals", repr(text))


# ------------------------------------------------------------------------------------------------ optimizers


class OptimizerBase:
    """Shared machinery of numpy-ml's optimizers (never used directly).

    Parameters
    ----------
    lr : float
        Learning rate (> 0), the scheduler's starting rate.
    scheduler : None, scheduler object or callable, str or dict
        None: constant ``lr``; otherwise what numpy-ml's ``SchedulerInitializer`` takes (see the module docstring),
        or any callable ``scheduler(cur_step, cur_loss) -> lr``.
    """

    def __init__(self, lr: float, scheduler: Callable | None = None) -> None:
        name = type(self).__name__
        _validate.scalar(lr, name, "lr", gt=0)
        scheduler = _make_scheduler(scheduler, lr, name)
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
        """Set known hyperparameters and cache entries from dictionaries (unknown keys are ignored).

        An ``"lr_scheduler"`` entry takes the forms the constructor takes (except None) and replaces the scheduler;
        ``hyperparameters["lr_scheduler"]`` keeps the value given, as in numpy-ml.
        """
        if hparam_dict is not None:
            known = {k: v for k, v in hparam_dict.items() if k in self.hyperparameters}
            # built before anything is set, so a bad scheduler leaves the optimizer as it was
            scheduler = (_make_scheduler(known["lr_scheduler"], None, f"{type(self).__name__}.set_params")
                         if "lr_scheduler" in known else self.lr_scheduler)
            self.hyperparameters.update(known)
            self.lr_scheduler = scheduler
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
    lr_scheduler : None, scheduler object or callable, str or dict
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
            ops.momentum_step(new, g, u, lr, self.hyperparameters["momentum"])
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
    lr_scheduler : None, scheduler object or callable, str or dict
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
        ops.adagrad_step(new, g, c, lr, self.hyperparameters["eps"])
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
    lr_scheduler : None, scheduler object or callable, str or dict
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
        ops.rmsprop_step(new, g, c, lr, H["decay"], H["eps"])
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
    lr_scheduler : None, scheduler object or callable, str or dict
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
        ops.adam_step(new, g, m, v, lr, d1, d2, H["eps"], 1.0 - d1**t, 1.0 - d2**t)
        entry["t"] = t
        return new


# ------------------------------------------------------------------------------------------------ numpy-ml interop

# numpy-ml's initializers accept an optimizer or scheduler object only if it is an instance of its own ABC
# (``isinstance(param, OptimizerBase)`` in ``OptimizerInitializer``, anything else falls through to an
# UnboundLocalError). Registering fastnn's bases as virtual subclasses makes fastnn's objects pass that check with
# no dependency and no change to their classes. numpy-ml is not imported here (about a second, and it imports
# matplotlib): the modules defining the ABCs are watched for, and the registration runs right after they load.
_NUMPY_ML_BASES = {"numpy_ml.neural_nets.optimizers.optimizers": ("OptimizerBase", OptimizerBase),
                   "numpy_ml.neural_nets.schedulers.schedulers": ("SchedulerBase", SchedulerBase)}


# ------------------------------------------------------------------------------------------------ attention


class DotProductAttention:
    """numpy-ml's ``DotProductAttention`` layer (``neural_nets/layers/layers.py``) on fastnn's fused attention kernel.

    ``Y = dropout(softmax(Q K^T / sqrt(d_k))) V`` over the last two axes: Q ``(n_ex, *, d_k)``, K ``(n_ex, *, d_k)``,
    V ``(n_ex, *, d_v)`` with the same middle axes (2-D inputs attend across the ``n_ex`` rows, as numpy-ml's
    ``Q @ K.T`` does). Same constructor, ``forward(Q, K, V, retain_derived=True)``, ``backward(dLdy,
    retain_grads=True) -> (dQ, dK, dV)`` (lists when several forwards were retained), ``X``, ``derived_variables``
    (``attention_weights``), ``hyperparameters``, ``parameters``/``gradients`` (empty), ``freeze``/``unfreeze``,
    ``flush_gradients``, ``update`` and ``summary``.

    Differences: with ``dropout_p > 0``, fastnn drops attention *weights* after the softmax (what numpy-ml's
    docstring states), with masks from its counter-based generator seeded from NumPy's global state; numpy-ml's
    ``Dropout(Softmax())`` wrapper zeroes *scores* before the softmax, scales the weights by ``1 / (1 - p)`` and
    leaves the mask out of the backward pass (its gradient is not the gradient of its forward). numpy-ml also draws
    ``np.random.rand`` of the scores' shape on every training forward even when ``p = 0``; fastnn draws one integer
    only when ``p > 0``. ``attention_weights`` are computed by the kernel (one extra call, made only when
    ``retain_derived``), the backward from the forward's log-sum-exp.
    """

    def __init__(self, scale: bool = True, dropout_p: float = 0, init: str = "glorot_uniform",
                 optimizer: Any = None) -> None:
        self.scale = _validate.flag(scale, "DotProductAttention", "scale")
        self.dropout_p = _validate.scalar(dropout_p, "DotProductAttention", "dropout_p", ge=0.0, lt=1.0)
        self.init, self.optimizer = init, optimizer
        self.trainable = True
        self.X: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.gradients: dict[str, np.ndarray] = {}
        self.parameters: dict[str, np.ndarray] = {}
        self.derived_variables: dict[str, list] = {"attention_weights": [], "dropout_mask": []}
        self._saved: list[tuple] = []

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {"layer": "DotProductAttention", "init": self.init, "scale": self.scale,
                "dropout_p": self.dropout_p, "optimizer": self.optimizer}

    def freeze(self) -> None:
        self.trainable = False

    def unfreeze(self) -> None:
        self.trainable = True

    def _heads(self, Q: Any, K: Any, V: Any) -> tuple[np.ndarray, ...]:
        where = "DotProductAttention.forward"
        Q, K, V = _validate.float_arrays(where, Q=Q, K=K, V=V)
        for name, a in (("Q", Q), ("K", K), ("V", V)):
            if a.ndim < 2:
                _validate.fail(where, name, "at least 2-D (n_ex, *, d)", f"shape {a.shape}")
        return tuple(a.reshape((-1, 1) + a.shape[-2:]) for a in (Q, K, V))

    def forward(self, Q: Any, K: Any, V: Any, retain_derived: bool = True) -> np.ndarray:
        q, k, v = self._heads(Q, K, V)
        lead = np.shape(Q)[:-2]
        p = self.dropout_p if self.trainable else 0.0
        opts = {"scale": (1 / math.sqrt(q.shape[-1])) if self.scale else 1.0, "dropout_p": p,
                "seed": int(np.random.randint(0, 2**63, dtype=np.int64)) if p > 0 else 0}  # noqa: NPY002
        out, lse = ops.attention_forward(q, k, v, **opts)
        if retain_derived:
            self.X.append((Q, K, V))
            eye = np.broadcast_to(np.eye(k.shape[2], dtype=q.dtype), (q.shape[0], 1, k.shape[2], k.shape[2]))
            weights = ops.attention_forward(q, k, eye, scale=opts["scale"])[0]
            self.derived_variables["attention_weights"].append(weights.reshape(lead + weights.shape[-2:]))
            self._saved.append((q, k, v, out, lse, opts, lead))
        return out.reshape(lead + out.shape[-2:])

    def backward(self, dLdy: Any, retain_grads: bool = True) -> tuple[Any, Any, Any]:
        if not self.trainable:
            raise AssertionError("Layer is frozen")
        dys = dLdy if isinstance(dLdy, list) else [dLdy]
        dQ, dK, dV = [], [], []
        for dy, (q, k, v, out, lse, opts, lead) in zip(dys, self._saved, strict=False):
            dy = _validate.float_array(dy, "DotProductAttention.backward", "dLdy").reshape(out.shape)
            dq, dk, dv = ops.attention_backward(dy, q, k, v, out, lse, **opts)
            dQ.append(dq.reshape(lead + dq.shape[-2:]))
            dK.append(dk.reshape(lead + dk.shape[-2:]))
            dV.append(dv.reshape(lead + dv.shape[-2:]))
        if len(self.X) == 1:
            return dQ[0], dK[0], dV[0]
        return dQ, dK, dV

    def flush_gradients(self) -> None:
        if not self.trainable:
            raise AssertionError("Layer is frozen")
        self.X, self._saved = [], []
        for key in self.derived_variables:
            self.derived_variables[key] = []

    def update(self, cur_loss: Any = None) -> None:
        """No parameters: flushes the retained inputs, as numpy-ml's ``update``."""
        self.flush_gradients()

    def summary(self) -> dict[str, Any]:
        return {"layer": "DotProductAttention", "parameters": self.parameters,
                "hyperparameters": self.hyperparameters}


_UNIFORM_INITS = {"glorot_uniform": lambda n_in, n_out: math.sqrt(6 / (n_in + n_out)),  # gain 1 (affine)
                  "he_uniform": lambda n_in, n_out: math.sqrt(6 / n_in)}


class _Projection:
    """numpy-ml's ``Dropout(FullyConnected(n_out, act_fn="Affine(slope=1, intercept=0)"), p)`` as used by
    :class:`MultiHeadedAttentionModule`: ``Y = (mask * X) @ W + b`` scaled by ``1 / (1 - p)``, ``mask = rand >= p``
    drawn from NumPy's global generator on every training forward (also when ``p = 0``, as numpy-ml), ``W`` (n_in,
    n_out) drawn at the first forward, ``b`` (1, n_out) zeros; gradients accumulate until ``update``."""

    def __init__(self, n_out: int, init: str, optimizer: Any, p: float) -> None:
        self.n_out, self.init, self.p, self.n_in = n_out, init, p, None
        self.optimizer = SGD() if optimizer is None else optimizer
        self.trainable = True
        self.parameters: dict[str, Any] = {"W": None, "b": None}
        self.gradients: dict[str, Any] = {}
        self.derived_variables: dict[str, list] = {"Z": [], "dropout_mask": []}
        self.X: list[np.ndarray] = []

    def forward(self, X: np.ndarray) -> np.ndarray:
        keep = None
        if self.trainable:  # numpy-ml's draw comes before the weights' (they are drawn at the first forward)
            keep = np.random.rand(*X.shape) >= self.p  # noqa: NPY002 -- numpy-ml's draws
        if self.parameters["W"] is None:
            self.n_in = X.shape[1]
            b = _UNIFORM_INITS[self.init](self.n_in, self.n_out)
            W = np.random.uniform(-b, b, size=(self.n_in, self.n_out))  # noqa: NPY002 -- numpy-ml's draws
            self.parameters = {"W": W, "b": np.zeros((1, self.n_out))}
            self.gradients = {"W": np.zeros_like(W), "b": np.zeros((1, self.n_out))}
        scale = 1.0 / (1.0 - self.p) if self.trainable else 1.0
        Xm = X if keep is None or self.p == 0 else ops.dropout_forward(X, keep, 1.0)
        Z = ops.matmul(Xm, self.parameters["W"]) + self.parameters["b"]
        if not self.X:  # numpy-ml's backward pairs one gradient with the first retained input
            self.X.append(Xm)
            self.derived_variables["Z"].append(Z)
            self.derived_variables["dropout_mask"].append(keep if keep is not None else np.ones(X.shape, bool))
        return Z if scale == 1.0 else Z * scale

    def backward(self, dLdy: np.ndarray) -> np.ndarray:
        keep = self.derived_variables["dropout_mask"][0]
        dz = dLdy if self.p == 0 else dLdy * (1.0 / (1.0 - self.p))
        dW = ops.matmul(self.X[0].T, dz)
        dX = ops.matmul(dz, self.parameters["W"].T)
        self.gradients["W"] += dW
        self.gradients["b"] += dz.sum(axis=0, keepdims=True)
        return dX if self.p == 0 else ops.dropout_forward(dX, keep, 1.0)  # the mask numpy-ml forgets

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {"layer": "FullyConnected", "init": self.init, "n_in": self.n_in, "n_out": self.n_out,
                "act_fn": "Affine(slope=1, intercept=0)", "wrapper": "Dropout", "p": self.p,
                "optimizer": {"cache": getattr(self.optimizer, "cache", None),
                              "hyperparameters": getattr(self.optimizer, "hyperparameters", None)}}

    def update(self, cur_loss: Any = None) -> None:
        if not self.trainable:
            raise AssertionError("Layer is frozen")
        self.optimizer.step()
        for k, g in self.gradients.items():
            self.parameters[k] = self.optimizer(self.parameters[k], g, k, cur_loss)
        self.flush_gradients()

    def flush_gradients(self) -> None:
        self.X = []
        self.derived_variables = {"Z": [], "dropout_mask": []}
        self.gradients = {k: np.zeros_like(g) for k, g in self.gradients.items()}


class MultiHeadedAttentionModule:
    """numpy-ml's ``MultiHeadedAttentionModule`` (``neural_nets/modules/modules.py``) on fastnn kernels.

    ``Y = concat_h(attention(Q W_h^Q, K W_h^K, V W_h^V)) W^O``: four affine projections of width ``kqv_dim`` (the
    inputs' last size, fixed at the first forward; ``latent_dim = kqv_dim / n_heads`` per head) around
    :class:`DotProductAttention` (scaled), each projection numpy-ml's ``Dropout(FullyConnected)`` pair (weights
    ``glorot_uniform`` from NumPy's global generator in numpy-ml's order, biases zero, float64). Same constructor,
    ``forward(Q, K, V)``, ``backward(dLdy) -> (dQ, dK, dV)``, ``projections``, ``attention``, ``kqv_dim``,
    ``latent_dim``, ``parameters``/``gradients``/``derived_variables``/``hyperparameters`` (nested under
    ``"components"``), ``update``, ``freeze``/``unfreeze``, ``flush_gradients`` and ``summary``.

    numpy-ml runs only on inputs (n_ex, kqv_dim): each example is one position, so every attention weight is 1 and
    the output is (n_ex, 1, kqv_dim). fastnn gives the same numbers there, and also takes sequences Q (n_ex, S, d),
    K and V (n_ex, T, d), attended per example and head (numpy-ml raises on them: its projections read ``n_in``
    from ``X.shape[1]`` and it reshapes to (n_ex, kqv_dim)); the output is then (n_ex, S, d).

    Differences: the projections' dropout backward applies the mask (numpy-ml's wrapper only rescales, and scales
    the caller's gradient array in place); the attention's dropout is :class:`DotProductAttention`'s (weights
    dropped after the softmax); ``init`` is one of "glorot_uniform" (the default) and "he_uniform"; bad arguments
    raise ValueError naming the module where numpy-ml asserts or fails later.
    """

    def __init__(self, n_heads: int = 8, dropout_p: float = 0, init: str = "glorot_uniform",
                 optimizer: Any = None) -> None:
        where = "MultiHeadedAttentionModule"
        self.n_heads = _validate.integer(n_heads, where, "n_heads", minimum=1)
        self.dropout_p = _validate.scalar(dropout_p, where, "dropout_p", ge=0.0, lt=1.0)
        if init not in _UNIFORM_INITS:
            _validate.fail(where, "init", "'glorot_uniform' or 'he_uniform'", _validate.describe(init))
        self.init, self.optimizer = init, optimizer
        self.kqv_dim = None
        self.latent_dim = None
        self.projections: dict[str, _Projection] = {}
        self.is_initialized = False
        self.trainable = True
        self.X: list = []
        self._dv: dict[str, Any] = {}
        self._q_ndim = 2

    def _init_params(self) -> None:
        if self.kqv_dim % self.n_heads:
            _validate.fail("MultiHeadedAttentionModule.forward", "Q", f"a last size divisible by n_heads = "
                           f"{self.n_heads}", f"kqv_dim = {self.kqv_dim}")
        self.latent_dim = self.kqv_dim // self.n_heads
        self.attention = DotProductAttention(scale=True, dropout_p=self.dropout_p)
        self.projections = {k: _Projection(self.kqv_dim, self.init, self.optimizer, self.dropout_p)
                            for k in ("Q", "K", "V", "O")}
        self.is_initialized = True

    def _inputs(self, Q: Any, K: Any, V: Any) -> tuple[np.ndarray, ...]:
        where = "MultiHeadedAttentionModule.forward"
        Q, K, V = _validate.float_arrays(where, Q=Q, K=K, V=V)
        d = self.kqv_dim if self.is_initialized else Q.shape[-1] if Q.ndim else 0
        for name, a in (("Q", Q), ("K", K), ("V", V)):
            if a.ndim not in (2, 3) or a.shape[-1] != d or a.shape[0] != Q.shape[0]:
                _validate.fail(where, name, f"(n_ex, {d}) or (n_ex, length, {d}) with n_ex = {Q.shape[0]}",
                               f"shape {a.shape}")
        if K.ndim != V.ndim or K.shape != V.shape or Q.ndim != K.ndim:
            _validate.fail(where, "V", f"the shape of K {K.shape} (and Q's number of axes)", f"shape {V.shape}")
        return Q, K, V

    def forward(self, Q: Any, K: Any, V: Any) -> np.ndarray:
        """Q (n_ex, d) -> (n_ex, 1, d) as numpy-ml; Q (n_ex, S, d), K and V (n_ex, T, d) -> (n_ex, S, d)."""
        Q, K, V = self._inputs(Q, K, V)
        if not self.is_initialized:
            self.kqv_dim = Q.shape[-1]
            self._init_params()
        n_ex, d, h = Q.shape[0], self.kqv_dim, self.n_heads
        self._q_ndim = Q.ndim
        for k, x in zip("QKV", (Q, K, V), strict=True):
            proj = self.projections[k].forward(x.reshape(-1, d))
            self._dv[f"{k}_proj"] = proj.reshape(n_ex, -1, h, self.latent_dim).swapaxes(1, 2)
        attn_out = self.attention.forward(self._dv["Q_proj"], self._dv["K_proj"], self._dv["V_proj"])
        if self.trainable and self.dropout_p == 0:
            # numpy-ml's attention draws a dropout mask of the scores' shape even when p = 0 (fastnn's
            # DotProductAttention does not): drawn here so that the O projection's weights are numpy-ml's
            np.random.rand(n_ex, h, self._dv["Q_proj"].shape[2], self._dv["K_proj"].shape[2])  # noqa: NPY002
        self._dv["attention_weights"] = self.attention.derived_variables["attention_weights"]
        attn_out = attn_out.swapaxes(1, 2).reshape(-1, d)
        self._dv["attention_out"] = attn_out.reshape(n_ex, -1, d)
        return self.projections["O"].forward(attn_out).reshape(n_ex, -1, d)

    def backward(self, dLdy: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """dLdy (n_ex, S, d) (or (n_ex, d) when S = 1) -> dQ, dK, dV in the inputs' shapes."""
        if not self.trainable:
            raise AssertionError("Layer is frozen")
        n_ex, h, S, lat = self._dv["Q_proj"].shape
        d = self.kqv_dim
        dLdy = _validate.float_array(dLdy, "MultiHeadedAttentionModule.backward", "dLdy")
        if dLdy.size != n_ex * S * d or dLdy.shape[0] != n_ex:
            _validate.fail("MultiHeadedAttentionModule.backward", "dLdy", f"{n_ex * S * d} values in "
                           f"(n_ex, S, d) = {(n_ex, S, d)}", f"shape {dLdy.shape}")
        dX = self.projections["O"].backward(dLdy.reshape(n_ex * S, d)).reshape(n_ex, S, h, lat).swapaxes(1, 2)
        dq, dk, dv = self.attention.backward(dX)
        self._dv.update(dQ_proj=dq, dK_proj=dk, dV_proj=dv)
        out = []
        for k, g in zip("QKV", (dq, dk, dv), strict=True):
            dx = self.projections[k].backward(g.swapaxes(1, 2).reshape(-1, d))
            out.append(dx if self._q_ndim == 2 else dx.reshape(n_ex, -1, d))  # numpy-ml's (n_ex, d)
        return tuple(out)

    @property
    def derived_variables(self) -> dict[str, Any]:
        dv = {"Q_proj": None, "K_proj": None, "V_proj": None,
              "components": {**{k: self.projections[k].derived_variables for k in self.projections},
                             "attention": self.attention.derived_variables}}
        dv.update(self._dv)
        return dv

    @property
    def gradients(self) -> dict[str, Any]:
        return {"components": {**{k: self.projections[k].gradients for k in self.projections},
                               "attention": self.attention.gradients}}

    @property
    def parameters(self) -> dict[str, Any]:
        return {"components": {**{k: self.projections[k].parameters for k in self.projections},
                               "attention": self.attention.parameters}}

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {"layer": "MultiHeadedAttentionModule", "init": self.init, "kqv_dim": self.kqv_dim,
                "latent_dim": self.latent_dim, "n_heads": self.n_heads, "dropout_p": self.dropout_p,
                "component_ids": ["attention", "Q", "K", "V", "O"],
                "components": {**{k: self.projections[k].hyperparameters for k in self.projections},
                               "attention": self.attention.hyperparameters}}

    @property
    def components(self) -> list[Any]:
        return [self.attention, *self.projections.values()] if self.is_initialized else []

    def freeze(self) -> None:
        self.trainable = False
        for c in self.components:
            c.trainable = False

    def unfreeze(self) -> None:
        self.trainable = True
        for c in self.components:
            c.trainable = True

    def update(self, cur_loss: Any = None) -> None:
        """Each projection's optimizer step on its accumulated gradients, then the gradients flushed."""
        if not self.trainable:
            raise AssertionError("Layer is frozen")
        for c in self.components:
            c.update(cur_loss)
        self.flush_gradients()

    def flush_gradients(self) -> None:
        if not self.trainable:
            raise AssertionError("Layer is frozen")
        self.X, self._dv = [], {}
        for c in self.components:
            c.flush_gradients()

    def summary(self) -> dict[str, Any]:
        return {"parameters": self.parameters, "layer": "MultiHeadedAttentionModule",
                "hyperparameters": self.hyperparameters}


def _register_with_numpy_ml(module: Any) -> None:
    attr, ours = _NUMPY_ML_BASES[module.__name__]
    base = getattr(module, attr, None)
    if isinstance(base, ABCMeta):
        base.register(ours)


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the wrapped loader, then registers fastnn's base with the module's ABC, then steps aside."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        # the module keeps its own loader (tracebacks, importlib.reload and pickling see nothing of this wrapper)
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _register_with_numpy_ml(module)


class _NumpyMLWatcher(importlib.abc.MetaPathFinder):
    """An import hook that hands numpy-ml's optimizer and scheduler modules to :class:`_RegisteringLoader`."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _NUMPY_ML_BASES:
            return None
        for finder in sys.meta_path:  # the spec the rest of the import system finds
            find = getattr(finder, "find_spec", None)
            if isinstance(finder, _NumpyMLWatcher) or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def _watch_numpy_ml() -> None:
    for name in _NUMPY_ML_BASES:
        if name in sys.modules:  # numpy-ml imported before this module
            _register_with_numpy_ml(sys.modules[name])
    # one watcher per process, also if this module is reloaded (the old one would register the old classes)
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_NumpyMLWatcher"]
    sys.meta_path.insert(0, _NumpyMLWatcher())


_watch_numpy_ml()

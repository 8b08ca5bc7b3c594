"""The optimizers of Deep Learning from Scratch (``common/optimizer.py``) and their successors, on fused kernels.

Each class is an ``__init__`` declaring its hyperparameters and an ``_apply`` making one fused in-place kernel
call (:mod:`fastnn.kernels.optimizers`) per parameter, sorted in order of increasing complexity. Use them as the
book's: ``optimizer.update(network.params, grads)``.

In every formula :math:`g` is the gradient plus :math:`\\lambda p` when ``weight_decay`` :math:`\\lambda > 0`
(L2 regularisation; AdamW decays decoupled instead), :math:`\\eta` is ``lr`` and :math:`t` the update count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _validate
from ._base import Optimizer

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW", "AMSGrad", "AdaBound"]

_Items = list[tuple[np.ndarray, Any, tuple[np.ndarray, ...]]]


class SGD(Optimizer):
    """Stochastic gradient descent.

    .. math:: p \\leftarrow p - \\eta g

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    eps : float
        Unused (accepted so every optimizer takes the same keywords), > 0.
    weight_decay : float
        L2 coefficient :math:`\\lambda` added to the gradient, >= 0.
    """

    def __init__(self, lr: float = 0.01, eps: float = 1e-7, weight_decay: float = 0.0) -> None:
        super().__init__(lr=lr, eps=eps, weight_decay=weight_decay)

    def _apply(self, t: int, items: _Items) -> None:
        for step, param, grad, _ in self._steps("sgd_step", items):
            step(param, grad, self.lr, weight_decay=self.weight_decay)


class Momentum(Optimizer):
    """Momentum SGD, the book's formulation (velocity ``v`` holds the step itself).

    .. math:: v \\leftarrow \\mu v - \\eta g, \\qquad p \\leftarrow p + v

    With a constant ``lr`` this is PyTorch's ``SGD(momentum=mu)`` (whose buffer is :math:`-v/\\eta`).

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    momentum : float
        :math:`\\mu`, in [0, 1).
    eps : float
        Unused, > 0.
    weight_decay : float
        L2 coefficient, >= 0.
    """

    state_names = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, eps: float = 1e-7, weight_decay: float = 0.0) -> None:
        super().__init__(lr=lr, momentum=momentum, eps=eps, weight_decay=weight_decay)

    def _apply(self, t: int, items: _Items) -> None:
        for step, param, grad, (v,) in self._steps("momentum_step", items):
            step(param, grad, v, self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


class Nesterov(Optimizer):
    """Nesterov's accelerated gradient, by default as the book's ``Nesterov`` class.

    The book's form (Bengio et al. 2012, arXiv:1212.0901) keeps the velocity ``v`` (state ``v``, the book's
    ``Nesterov.v``) and computes, in the book's order, ``p += mu*mu*v; p -= (1 + mu)*lr*g; v = mu*v - lr*g``:

    .. math:: p \\leftarrow p + \\mu^2 v - (1+\\mu)\\eta g, \\qquad v \\leftarrow \\mu v - \\eta g

    With ``pytorch_form=True``, ``torch.optim.SGD(nesterov=True)``, whose state is the buffer ``buf``:

    .. math:: b \\leftarrow \\mu b + g, \\qquad p \\leftarrow p - \\eta (g + \\mu b)

    While ``lr`` stays constant the two are one algorithm (:math:`v = -\\eta b`) and their trajectories agree to
    rounding; they differ in the state kept, and once ``lr`` changes between updates (the velocity carries the
    old rate, the buffer does not).

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    momentum : float
        :math:`\\mu`, in [0, 1).
    eps : float
        Unused, > 0.
    weight_decay : float
        L2 coefficient, >= 0.
    pytorch_form : bool, keyword-only
        False (default): the book's arithmetic; True: PyTorch's. State dicts saved before this switch existed
        load as ``pytorch_form=True``, the form they were trained with.
    """

    _legacy_hyper = {"pytorch_form": True}

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, eps: float = 1e-7, weight_decay: float = 0.0, *,
                 pytorch_form: bool = False) -> None:
        super().__init__(lr=lr, momentum=momentum, eps=eps, weight_decay=weight_decay, pytorch_form=pytorch_form)

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return self._state_names_for(self.hyperparameters)

    def _state_names_for(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("buf",) if hyper["pytorch_form"] else ("v",)

    def _apply(self, t: int, items: _Items) -> None:
        for step, param, grad, (buf,) in self._steps("nesterov_step", items):
            step(param, grad, buf, self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                 pytorch_form=self.pytorch_form)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011), as the book and ``torch.optim.Adagrad`` (no lr decay).

    .. math:: h \\leftarrow h + g^2, \\qquad p \\leftarrow p - \\eta \\frac{g}{\\sqrt{h} + \\epsilon}

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    eps : float
        :math:`\\epsilon`, > 0 (the book's 1e-7).
    weight_decay : float
        L2 coefficient, >= 0.
    """

    state_names = ("h",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-7, weight_decay: float = 0.0) -> None:
        super().__init__(lr=lr, eps=eps, weight_decay=weight_decay)

    def _apply(self, t: int, items: _Items) -> None:
        for step, param, grad, (h,) in self._steps("adagrad_step", items):
            step(param, grad, h, self.lr, eps=self.eps, weight_decay=self.weight_decay)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012), as the book and ``torch.optim.RMSprop`` (``alpha`` = ``decay_rate``).

    .. math:: h \\leftarrow \\rho h + (1-\\rho) g^2, \\qquad p \\leftarrow p - \\eta \\frac{g}{\\sqrt{h} + \\epsilon}

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    decay_rate : float
        :math:`\\rho`, in [0, 1).
    eps : float
        :math:`\\epsilon`, > 0.
    weight_decay : float
        L2 coefficient, >= 0.
    """

    state_names = ("h",)

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99, eps: float = 1e-7,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr=lr, decay_rate=decay_rate, eps=eps, weight_decay=weight_decay)

    def _apply(self, t: int, items: _Items) -> None:
        for step, param, grad, (h,) in self._steps("rmsprop_step", items):
            step(param, grad, h, self.lr, decay_rate=self.decay_rate, eps=self.eps, weight_decay=self.weight_decay)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), by default as the book's ``Adam``: the paper's efficient form (``eps_hat=True``).

    .. math::

        m \\leftarrow \\beta_1 m + (1-\\beta_1) g, \\qquad v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2, \\\\
        p \\leftarrow p - \\eta \\frac{\\sqrt{1-\\beta_2^t}}{1-\\beta_1^t} \\frac{m}{\\sqrt{v} + \\hat\\epsilon}

    in the book's arithmetic (``m += (1 - beta1) * (g - m)`` ...): :math:`\\hat\\epsilon` = ``eps`` is added to
    the root of the uncorrected :math:`v`. With ``eps_hat=False``, Algorithm 1 of the paper, PyTorch's form:

    .. math:: p \\leftarrow p - \\frac{\\eta}{1-\\beta_1^t} \\frac{m}{\\sqrt{v}/\\sqrt{1-\\beta_2^t} + \\epsilon}

    The two differ by :math:`\\epsilon` against :math:`\\epsilon\\sqrt{1-\\beta_2^t}`: 30x in the first step at
    ``beta2=0.999``, which matters wherever :math:`\\sqrt{v}` is not far above ``eps`` (small gradients, biases):
    20 steps of the book's ch07 SimpleConvNet end 1% apart in loss. With ``amsgrad=True`` (Reddi et al. 2018)
    :math:`\\hat v \\leftarrow \\max(\\hat v, v)` replaces :math:`v` in the step (state ``v_max``). The step
    scalars are computed once per update in float64.

    Parameters
    ----------
    lr : float
        Learning rate :math:`\\eta`, > 0.
    beta1, beta2 : float
        Moment decay rates, in [0, 1).
    amsgrad : bool
        Use the running maximum of :math:`v`.
    eps : float
        :math:`\\epsilon`, > 0 (the book's 1e-7; PyTorch's default is 1e-8).
    weight_decay : float
        L2 coefficient added to the gradient, >= 0 (see :class:`AdamW` for decoupled decay).
    eps_hat : bool, keyword-only
        True (default): the book's / the paper's efficient form; False: Algorithm 1, PyTorch's form. State dicts
        saved before this switch existed load as ``eps_hat=False``, the form they were trained with.
    """

    _legacy_hyper = {"eps_hat": False}

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, amsgrad: bool = False,
                 eps: float = 1e-7, weight_decay: float = 0.0, *, eps_hat: bool = True) -> None:
        super().__init__(lr=lr, beta1=beta1, beta2=beta2, amsgrad=amsgrad, eps=eps, weight_decay=weight_decay,
                         eps_hat=eps_hat)

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("m", "v", "v_max") if self.amsgrad else ("m", "v")

    def _state_names_for(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("m", "v", "v_max") if hyper["amsgrad"] else ("m", "v")

    _kernel_name = "adam_step"  # AdamW shares everything but the kernel

    def _apply(self, t: int, items: _Items) -> None:
        # Python floats are float64: the bias corrections are exact to double precision for every dtype.
        bc1 = 1.0 - self.beta1 ** t
        bc2 = 1.0 - self.beta2 ** t
        trusted = 0.0 < bc1 <= 1.0 and 0.0 < bc2 <= 1.0 and type(self.eps_hat) is bool
        for step, param, grad, (m, v, *v_max) in self._steps(self._kernel_name, items, trusted):
            step(param, grad, m, v, self.lr, self.beta1, self.beta2, self.eps, bc1, bc2,
                 weight_decay=self.weight_decay, v_max=v_max[0] if v_max else None, eps_hat=self.eps_hat)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW`` (PyTorch's form of
    the Adam step, :class:`Adam` with ``eps_hat=False``; the book has no AdamW).

    .. math:: p \\leftarrow p (1 - \\eta\\lambda), \\text{ then the Adam step of } :class:`Adam` \\text{ on } g

    where :math:`g` is the plain gradient (no L2 term).

    Parameters
    ----------
    lr, beta1, beta2, amsgrad, eps
        As :class:`Adam`.
    weight_decay : float
        Decoupled decay :math:`\\lambda`, >= 0; default 0.01 as PyTorch.
    """

    _legacy_hyper: Mapping[str, Any] = {}
    eps_hat = False  # fixed: PyTorch's form (not a hyperparameter of this class)

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, amsgrad: bool = False,
                 eps: float = 1e-7, weight_decay: float = 0.01) -> None:
        Optimizer.__init__(self, lr=lr, beta1=beta1, beta2=beta2, amsgrad=amsgrad, eps=eps, weight_decay=weight_decay)

    _kernel_name = "adamw_step"


class AMSGrad(Adam):
    """AMSGrad (Reddi et al. 2018): :class:`Adam` with ``amsgrad=True``, in PyTorch's form (``eps_hat=False``;
    the book has no AMSGrad).

    Parameters
    ----------
    lr, beta1, beta2, eps, weight_decay
        As :class:`Adam`.
    """

    _legacy_hyper: Mapping[str, Any] = {}
    eps_hat = False  # fixed: PyTorch's form (not a hyperparameter of this class)

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7,
                 weight_decay: float = 0.0) -> None:
        Optimizer.__init__(self, lr=lr, beta1=beta1, beta2=beta2, amsgrad=True, eps=eps, weight_decay=weight_decay)

    def __repr__(self) -> str:  # amsgrad is fixed, not a constructor argument
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items() if k != "amsgrad")
        return f"AMSGrad({args})"

    def _check_hyper(self, hyper: Mapping[str, Any], where: str) -> dict[str, Any]:
        checked = super()._check_hyper(hyper, where)
        if not checked["amsgrad"]:
            _validate.fail(where, "amsgrad", "True for AMSGrad", False)
        return checked


class AdaBound(Optimizer):
    """AdaBound (Luo et al. 2019): Adam whose per-element step size is clipped into bounds that close on
    ``final_lr``, so it turns into SGD as training goes on.

    .. math::

        m \\leftarrow \\beta_1 m + (1-\\beta_1) g, \\qquad v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2, \\\\
        \\alpha = \\eta \\frac{\\sqrt{1-\\beta_2^t}}{1-\\beta_1^t}, \\qquad
        \\eta_l = \\eta^* \\Big(1 - \\frac{1}{\\gamma t + 1}\\Big), \\qquad
        \\eta_u = \\eta^* \\Big(1 + \\frac{1}{\\gamma t}\\Big), \\\\
        p \\leftarrow p - \\operatorname{clip}\\Big(\\frac{\\alpha}{\\sqrt{v} + \\epsilon}, \\eta_l, \\eta_u\\Big) m

    as the authors' reference implementation (without its learning-rate-scheduler rescaling of
    :math:`\\eta^*`: fastnn has no schedulers).

    Parameters
    ----------
    lr : float
        Adam learning rate :math:`\\eta`, > 0.
    final_lr : float
        SGD learning rate :math:`\\eta^*` the bounds converge to, > 0.
    gamma : float
        Convergence speed of the bounds, in (0, 1).
    beta1, beta2 : float
        Moment decay rates, in [0, 1).
    eps : float
        :math:`\\epsilon`, > 0.
    weight_decay : float
        L2 coefficient added to the gradient, >= 0.
    """

    state_names = ("m", "v")

    def __init__(self, lr: float = 0.001, final_lr: float = 0.1, gamma: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-7, weight_decay: float = 0.0) -> None:
        super().__init__(lr=lr, final_lr=final_lr, gamma=gamma, beta1=beta1, beta2=beta2, eps=eps,
                         weight_decay=weight_decay)

    def _apply(self, t: int, items: _Items) -> None:
        # t is iter + 1: an int >= 1 unless iter was rebound (then the check says what it always said)
        for step, param, grad, (m, v) in self._steps("adabound_step", items, type(t) is int and t >= 1):
            step(param, grad, m, v, self.lr, self.final_lr, self.gamma, self.beta1, self.beta2, self.eps, t,
                 weight_decay=self.weight_decay)

"""Optimizer steps in plain NumPy: the readable specification of :mod:`fastnn.kernels.optimizers`.

Every step updates ``param`` and its state arrays **in place** and returns None. Hyperparameters arrive as Python
floats; derived scalars (``1 - beta1``, ``lr / bias_correction1``, ...) are computed in float64 and then cast to
param's dtype, exactly as the fused kernels do, so float32 parameters are updated in float32 arithmetic.
Weight decay is L2 (``g += weight_decay * param``) everywhere except :func:`adamw_step` (decoupled,
``param *= 1 - lr * weight_decay`` first). Unlike the kernels these use temporaries: several passes over memory.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _checks, _stepsizes

__all__ = ["sgd_step", "momentum_step", "nesterov_step", "adagrad_step", "rmsprop_step", "adam_step",
           "adamw_step", "adabound_step", "swats_adam_step", "swats_sgd_step"]


def _l2(g: np.ndarray, param: np.ndarray, weight_decay: float) -> np.ndarray:
    """The gradient with the L2 penalty's gradient added (a new array, never the caller's)."""
    if weight_decay == 0.0:
        return g
    return g + param.dtype.type(weight_decay) * param


def sgd_step(param: np.ndarray, grad: np.ndarray, lr: float, weight_decay: float = 0.0) -> None:
    r"""Plain gradient descent, in place.

    .. math:: g \leftarrow g + \lambda p, \qquad p \leftarrow p - \eta g

    Parameters
    ----------
    param : ndarray, float32 or float64, any shape
        Updated in place.
    grad : array_like, same shape as param
        Cast to param's dtype.
    lr : float
        Learning rate :math:`\eta > 0`.
    weight_decay : float
        L2 coefficient :math:`\lambda \ge 0`.
    """
    _sgd_step(param, *_checks.check_optimizer_step("sgd_step", param, grad, {}, lr=lr, weight_decay=weight_decay))


def _sgd_step(param: np.ndarray, grad: np.ndarray, lr: float, weight_decay: float = 0.0) -> None:
    g = _l2(grad, param, weight_decay)
    param -= param.dtype.type(lr) * g


def momentum_step(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float = 0.9,
                  weight_decay: float = 0.0) -> None:
    r"""Gradient descent with (cs231n-style) momentum, in place.

    .. math:: v \leftarrow \mu v - \eta g, \qquad p \leftarrow p + v

    For a constant :math:`\eta` this is PyTorch's ``SGD(momentum=mu)`` with :math:`v = -\eta\,\mathrm{buf}`.

    Parameters
    ----------
    param : ndarray, float32 or float64
        Updated in place.
    grad : array_like, param's shape
    velocity : ndarray, param's shape and dtype
        Updated in place (start from zeros).
    lr, momentum, weight_decay : float
        :math:`\eta > 0`, :math:`0 \le \mu < 1`, L2 coefficient :math:`\ge 0`.
    """
    g, lr, momentum, weight_decay = _checks.check_optimizer_step("momentum_step", param, grad, {"velocity": velocity},
                                                                 lr=lr, momentum=momentum, weight_decay=weight_decay)
    _momentum_step(param, g, velocity, lr, momentum, weight_decay)


def _momentum_step(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> None:
    t = param.dtype.type
    g = _l2(grad, param, weight_decay)
    velocity *= t(momentum)
    velocity -= t(lr) * g
    param += velocity


def nesterov_step(param: np.ndarray, grad: np.ndarray, buf: np.ndarray, lr: float, momentum: float = 0.9,
                  weight_decay: float = 0.0, *, pytorch_form: bool = True) -> None:
    r"""Nesterov momentum in PyTorch's form or (``pytorch_form=False``) the book's, in place.

    PyTorch's ``SGD(nesterov=True)``, ``buf`` the momentum buffer :math:`b`:

    .. math:: b \leftarrow \mu b + g, \qquad p \leftarrow p - \eta (g + \mu b)

    The book's ``Nesterov`` (Bengio et al. 2012, arXiv:1212.0901), ``buf`` the velocity :math:`v`, in the book's
    order of operations:

    .. math:: p \leftarrow p + \mu^2 v - (1 + \mu) \eta g, \qquad v \leftarrow \mu v - \eta g

    Parameters
    ----------
    param : ndarray, float32 or float64
        Updated in place.
    grad : array_like, param's shape
    buf : ndarray, param's shape and dtype
        Momentum buffer or velocity, updated in place (start from zeros).
    lr, momentum, weight_decay : float
        :math:`\eta > 0`, :math:`0 \le \mu < 1`, L2 coefficient :math:`\ge 0`.
    pytorch_form : bool, keyword-only
        Which of the two forms.
    """
    g, lr, momentum, weight_decay, pytorch_form = _checks.check_nesterov_step(
        "nesterov_step", param, grad, buf, lr, momentum, weight_decay, pytorch_form)
    _nesterov_step(param, g, buf, lr, momentum, weight_decay, pytorch_form=pytorch_form)


def _nesterov_step(param: np.ndarray, grad: np.ndarray, buf: np.ndarray, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, *, pytorch_form: bool = True) -> None:
    t = param.dtype.type
    g = _l2(grad, param, weight_decay)
    if pytorch_form:
        buf *= t(momentum)
        buf += g
        param -= t(lr) * (g + t(momentum) * buf)
    else:
        param += t(momentum * momentum) * buf
        param -= t((1.0 + momentum) * lr) * g
        buf *= t(momentum)
        buf -= t(lr) * g


def adagrad_step(param: np.ndarray, grad: np.ndarray, h: np.ndarray, lr: float, eps: float = 1e-7,
                 weight_decay: float = 0.0) -> None:
    r"""AdaGrad (Duchi et al. 2011), in place.

    .. math:: h \leftarrow h + g^2, \qquad p \leftarrow p - \eta\, g / (\sqrt{h} + \epsilon)

    Parameters
    ----------
    param : ndarray, float32 or float64
        Updated in place.
    grad : array_like, param's shape
    h : ndarray, param's shape and dtype
        Sum of squared gradients, updated in place (start from zeros).
    lr, eps, weight_decay : float
        :math:`\eta > 0`, :math:`\epsilon > 0`, L2 coefficient :math:`\ge 0`.
    """
    g, lr, eps, weight_decay = _checks.check_optimizer_step("adagrad_step", param, grad, {"h": h}, lr=lr, eps=eps,
                                                            weight_decay=weight_decay)
    _adagrad_step(param, g, h, lr, eps, weight_decay)


def _adagrad_step(param: np.ndarray, grad: np.ndarray, h: np.ndarray, lr: float, eps: float = 1e-7,
                  weight_decay: float = 0.0) -> None:
    t = param.dtype.type
    g = _l2(grad, param, weight_decay)
    h += g * g
    param -= t(lr) * g / (np.sqrt(h) + t(eps))


def rmsprop_step(param: np.ndarray, grad: np.ndarray, sq: np.ndarray, lr: float, decay_rate: float = 0.99,
                 eps: float = 1e-7, weight_decay: float = 0.0) -> None:
    r"""RMSprop (Tieleman & Hinton 2012), in place.

    .. math:: s \leftarrow \alpha s + (1 - \alpha) g^2, \qquad p \leftarrow p - \eta\, g / (\sqrt{s} + \epsilon)

    Parameters
    ----------
    param : ndarray, float32 or float64
        Updated in place.
    grad : array_like, param's shape
    sq : ndarray, param's shape and dtype
        Running mean of squared gradients, updated in place (start from zeros).
    lr, decay_rate, eps, weight_decay : float
        :math:`\eta > 0`, :math:`0 \le \alpha < 1`, :math:`\epsilon > 0`, L2 coefficient :math:`\ge 0`.
    """
    g, lr, decay_rate, eps, weight_decay = _checks.check_optimizer_step(
        "rmsprop_step", param, grad, {"sq": sq}, lr=lr, decay_rate=decay_rate, eps=eps, weight_decay=weight_decay)
    _rmsprop_step(param, g, sq, lr, decay_rate, eps, weight_decay)


def _rmsprop_step(param: np.ndarray, grad: np.ndarray, sq: np.ndarray, lr: float, decay_rate: float = 0.99,
                  eps: float = 1e-7, weight_decay: float = 0.0) -> None:
    t = param.dtype.type
    g = _l2(grad, param, weight_decay)
    sq *= t(decay_rate)
    sq += t(1.0 - decay_rate) * g * g  # the book's order: ((1 - rho) * g) * g
    param -= t(lr) * g / (np.sqrt(sq) + t(eps))


def _adam_update(param, g, m, v, v_max, lr, beta1, beta2, eps, bias_correction1, bias_correction2, eps_hat) -> None:
    """The Adam update proper (after any weight decay): PyTorch's form, or the paper's efficient form."""
    t = param.dtype.type
    if eps_hat:
        # the book's arithmetic: m += (1 - beta1) * (g - m), v += (1 - beta2) * (g**2 - v)
        m += t(1.0 - beta1) * (g - m)
        v += t(1.0 - beta2) * (g * g - v)
    else:
        m *= t(beta1)
        m += t(1.0 - beta1) * g
        v *= t(beta2)
        v += t(1.0 - beta2) * (g * g)
    if v_max is not None:
        np.maximum(v_max, v, out=v_max)
    root = np.sqrt(v if v_max is None else v_max)
    if eps_hat:
        param -= t(lr * math.sqrt(bias_correction2) / bias_correction1) * m / (root + t(eps))
    else:
        param -= t(lr / bias_correction1) * m / (root / t(math.sqrt(bias_correction2)) + t(eps))


def adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
              beta2: float, eps: float, bias_correction1: float, bias_correction2: float, weight_decay: float = 0.0,
              v_max: np.ndarray | None = None, *, eps_hat: bool = False) -> None:
    r"""Adam (Kingma & Ba 2015), optionally AMSGrad; in place. PyTorch's form, or the paper's efficient form.

    .. math::
        g &\leftarrow g + \lambda p \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        \hat v &= \max(\hat v, v) \ \text{(AMSGrad, else } \hat v = v) \\
        p &\leftarrow p - \frac{\eta}{c_1} \, \frac{m}{\sqrt{\hat v} / \sqrt{c_2} + \epsilon}
           \quad \text{(eps\_hat=False: Algorithm 1, PyTorch)} \\
        p &\leftarrow p - \frac{\eta \sqrt{c_2}}{c_1} \, \frac{m}{\sqrt{\hat v} + \epsilon}
           \quad \text{(eps\_hat=True: the paper's efficient form, the book's Adam)}

    with bias corrections :math:`c_1 = 1 - \beta_1^t`, :math:`c_2 = 1 - \beta_2^t` computed by the caller. With
    ``eps_hat=True`` the moments are updated as the book writes them, :math:`m \leftarrow m + (1 - \beta_1)(g - m)`
    and :math:`v \leftarrow v + (1 - \beta_2)(g^2 - v)` (the same values up to rounding).

    Parameters
    ----------
    param : ndarray, float32 or float64
        Updated in place.
    grad : array_like, param's shape
    m, v : ndarray, param's shape and dtype
        First and second moments, updated in place (start from zeros).
    lr, beta1, beta2, eps : float
        :math:`\eta > 0`, :math:`0 \le \beta_1, \beta_2 < 1`, :math:`\epsilon > 0`.
    bias_correction1, bias_correction2 : float
        :math:`c_1, c_2 \in (0, 1]` for the step :math:`t \ge 1` being taken.
    weight_decay : float
        L2 coefficient :math:`\lambda \ge 0` (added to the gradient).
    v_max : ndarray or None
        AMSGrad's running maximum of ``v`` (param's shape and dtype, updated in place); None for plain Adam.
    eps_hat : bool, keyword-only
        Which of the two forms (see above).
    """
    g, lr, beta1, beta2, eps, bc1, bc2, weight_decay, eps_hat = _checks.check_adam_step(
        "adam_step", param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2, weight_decay, v_max,
        eps_hat)
    _adam_step(param, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, v_max, eps_hat=eps_hat)


def _adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
               beta2: float, eps: float, bias_correction1: float, bias_correction2: float, weight_decay: float = 0.0,
               v_max: np.ndarray | None = None, *, eps_hat: bool = False) -> None:
    _adam_update(param, _l2(grad, param, weight_decay), m, v, v_max, lr, beta1, beta2, eps, bias_correction1,
                 bias_correction2, eps_hat)


def adamw_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
               beta2: float, eps: float, bias_correction1: float, bias_correction2: float, weight_decay: float = 0.0,
               v_max: np.ndarray | None = None, *, eps_hat: bool = False) -> None:
    r"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay; in place.

    .. math:: p \leftarrow p \, (1 - \eta \lambda), \ \text{then the Adam update of :func:`adam_step` without L2.}

    Parameters are those of :func:`adam_step`; ``weight_decay`` (:math:`\lambda \ge 0`) is decoupled instead of L2.
    """
    g, lr, beta1, beta2, eps, bc1, bc2, weight_decay, eps_hat = _checks.check_adam_step(
        "adamw_step", param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2, weight_decay, v_max,
        eps_hat)
    _adamw_step(param, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, v_max, eps_hat=eps_hat)


def _adamw_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
                beta2: float, eps: float, bias_correction1: float, bias_correction2: float, weight_decay: float = 0.0,
                v_max: np.ndarray | None = None, *, eps_hat: bool = False) -> None:
    param *= param.dtype.type(1.0 - lr * weight_decay)
    _adam_update(param, grad, m, v, v_max, lr, beta1, beta2, eps, bias_correction1, bias_correction2, eps_hat)


def adabound_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, final_lr: float,
                  gamma: float, beta1: float, beta2: float, eps: float, step: int, weight_decay: float = 0.0) -> None:
    r"""AdaBound (Luo et al. 2019, reference implementation ``Luolc/AdaBound``); in place.

    .. math::
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        p &\leftarrow p - \mathrm{clip}\!\left(\frac{\eta \sqrt{c_2} / c_1}{\sqrt v + \epsilon},
              \eta^* (1 - \tfrac{1}{\gamma t + 1}), \eta^* (1 + \tfrac{1}{\gamma t})\right) m

    with :math:`c_1 = 1 - \beta_1^t`, :math:`c_2 = 1 - \beta_2^t` (computed here in float64 from ``step``).

    Parameters
    ----------
    param : ndarray, float32 or float64
        Updated in place.
    grad : array_like, param's shape
    m, v : ndarray, param's shape and dtype
        Moments, updated in place (start from zeros).
    lr, final_lr : float
        Adam learning rate :math:`\eta > 0` and the final (SGD) rate :math:`\eta^* > 0`.
    gamma : float
        Convergence speed of the bounds, :math:`0 < \gamma < 1`.
    beta1, beta2, eps : float
        As in :func:`adam_step`.
    step : int
        The step :math:`t \ge 1` being taken.
    weight_decay : float
        L2 coefficient (added to the gradient).
    """
    g, *scalars = _checks.check_adabound_step("adabound_step", param, grad, m, v, lr, final_lr, gamma, beta1, beta2,
                                              eps, step, weight_decay)
    _adabound_step(param, g, m, v, *scalars)


def _adabound_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, final_lr: float,
                   gamma: float, beta1: float, beta2: float, eps: float, step: int, weight_decay: float = 0.0) -> None:
    step_size, lower, upper = _stepsizes.adabound_schedule(lr, final_lr, gamma, beta1, beta2, step)
    t = param.dtype.type
    g = _l2(grad, param, weight_decay)
    m *= t(beta1)
    m += t(1.0 - beta1) * g
    v *= t(beta2)
    v += t(1.0 - beta2) * (g * g)
    rate = np.clip(t(step_size) / (np.sqrt(v) + t(eps)), t(lower), t(upper))
    param -= rate * m


def swats_adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
                    beta2: float, eps: float, step: int, weight_decay: float = 0.0) -> tuple[np.floating, np.floating]:
    r"""The Adam phase of SWATS (Keskar & Socher 2017, arXiv:1712.07628, Algorithm 1), in place; returns the two
    dot products its switch criterion needs.

    .. math::
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad a \leftarrow \beta_2 a + (1 - \beta_2) g^2 \\
        p_k &= -\eta \frac{\sqrt{1 - \beta_2^k}}{1 - \beta_1^k} \frac{m}{\sqrt a + \epsilon}, \qquad
        w \leftarrow w + p_k

    (``v`` holds the paper's :math:`a`.) The criterion (:class:`fastnn.optim.SWATS`) uses
    :math:`p_k^\top g_k` and :math:`p_k^\top p_k`, with :math:`g_k` the gradient the step used (plus
    :math:`\lambda w` when ``weight_decay`` :math:`\lambda > 0`).

    Parameters
    ----------
    param : ndarray, float32 or float64
        Updated in place.
    grad : array_like, param's shape
    m, v : ndarray, param's shape and dtype
        Moments, updated in place (start from zeros).
    lr, beta1, beta2, eps : float
        As in :func:`adam_step`.
    step : int
        The step :math:`k \ge 1` being taken (the bias corrections are computed from it in float64).
    weight_decay : float
        L2 coefficient (added to the gradient).

    Returns
    -------
    pg, pp : param's dtype (0-d NumPy scalars)
        :math:`p_k^\top g_k` and :math:`p_k^\top p_k`, summed in float64 and rounded once.
    """
    g, *scalars = _checks.check_swats_adam_step("swats_adam_step", param, grad, m, v, lr, beta1, beta2, eps, step,
                                                weight_decay)
    return _swats_adam_step(param, g, m, v, *scalars)


def _swats_adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
                     beta2: float, eps: float, step: int, weight_decay: float = 0.0) -> tuple[np.floating, np.floating]:
    t = param.dtype.type
    g = _l2(grad, param, weight_decay)
    m *= t(beta1)
    m += t(1.0 - beta1) * g
    v *= t(beta2)
    v += t(1.0 - beta2) * (g * g)
    p = -(t(_stepsizes.adam_step_size(lr, beta1, beta2, step)) * m) / (np.sqrt(v) + t(eps))
    param += p
    p64 = p.astype(np.float64).ravel()
    return t(p64 @ g.astype(np.float64).ravel()), t(p64 @ p64)


def swats_sgd_step(param: np.ndarray, grad: np.ndarray, buf: np.ndarray, lr: float, beta1: float,
                   weight_decay: float = 0.0) -> None:
    r"""The SGD phase of SWATS (Keskar & Socher 2017, Algorithm 1), in place.

    .. math:: b \leftarrow \beta_1 b + g, \qquad w \leftarrow w - (1 - \beta_1)\,\Lambda\, b

    Parameters
    ----------
    param : ndarray, float32 or float64
        Updated in place.
    grad : array_like, param's shape
    buf : ndarray, param's shape and dtype
        The momentum buffer :math:`b` (the paper's :math:`v`), updated in place; zeros at the switch.
    lr : float
        :math:`\Lambda > 0`, the learning rate SWATS learned in its Adam phase.
    beta1 : float
        Momentum :math:`\beta_1` (Adam's, as in the paper).
    weight_decay : float
        L2 coefficient (added to the gradient).
    """
    g, lr, beta1, weight_decay = _checks.check_optimizer_step("swats_sgd_step", param, grad, {"buf": buf}, lr=lr,
                                                              beta1=beta1, weight_decay=weight_decay)
    _swats_sgd_step(param, g, buf, lr, beta1, weight_decay)


def _swats_sgd_step(param: np.ndarray, grad: np.ndarray, buf: np.ndarray, lr: float, beta1: float,
                    weight_decay: float = 0.0) -> None:
    t = param.dtype.type
    buf *= t(beta1)
    buf += _l2(grad, param, weight_decay)
    param -= t(lr * (1.0 - beta1)) * buf

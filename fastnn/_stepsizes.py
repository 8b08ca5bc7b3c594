"""Per-step scalars that a kernel and its twin both compute from their checked hyperparameters, in float64 once per
call: one formula for both sides (as :mod:`fastnn._splitmix` is one hash for both)."""

from __future__ import annotations

import math


def adabound_schedule(lr: float, final_lr: float, gamma: float, beta1: float, beta2: float,
                      step: int) -> tuple[float, float, float]:
    r"""AdaBound's per-step scalars in float64, from hyperparameters checked by
    :func:`fastnn._checks.check_adabound_step`: the step size :math:`\eta \sqrt{c_2} / c_1` and the clipping
    range of the per-element learning rate at step :math:`t` (the formula of :func:`fastnn.reference.adabound_step`),

    .. math:: \left[\eta^* \left(1 - \frac{1}{\gamma t + 1}\right),\ \eta^* \left(1 + \frac{1}{\gamma t}\right)\right]
    """
    lower, upper = final_lr * (1.0 - 1.0 / (gamma * step + 1.0)), final_lr * (1.0 + 1.0 / (gamma * step))
    return adam_step_size(lr, beta1, beta2, step), lower, upper


def adam_step_size(lr: float, beta1: float, beta2: float, step: int) -> float:
    r"""Adam's bias-corrected step size in the paper's efficient form, :math:`\eta \sqrt{1 - \beta_2^t} /
    (1 - \beta_1^t)`, in float64 (AdaBound's and SWATS' Adam phase)."""
    return lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)

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
    step_size = lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
    return step_size, final_lr * (1.0 - 1.0 / (gamma * step + 1.0)), final_lr * (1.0 + 1.0 / (gamma * step))

"""SWATS (Keskar & Socher 2017, arXiv:1712.07628): Adam until a learning rate for SGD has been estimated, then SGD
with momentum at that rate. Each phase is one fused kernel per parameter (:func:`fastnn.kernels.swats_adam_step`,
:func:`fastnn.kernels.swats_sgd_step`); the Adam kernel also returns the two dot products of the switch criterion,
computed in the same pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _validate
from ..backend import ops
from ._base import Optimizer, _scalar_value

__all__ = ["SWATS"]


class SWATS(Optimizer):
    """Switching from Adam to SGD, Algorithm 1 of Keskar & Socher (2017), per parameter array.

    Adam phase, step :math:`k` (``v`` holds the paper's :math:`a`):

    .. math::
        m \\leftarrow \\beta_1 m + (1-\\beta_1) g, \\quad a \\leftarrow \\beta_2 a + (1-\\beta_2) g^2, \\quad
        p_k = -\\eta \\frac{\\sqrt{1-\\beta_2^k}}{1-\\beta_1^k} \\frac{m}{\\sqrt a + \\epsilon}, \\quad
        w \\leftarrow w + p_k

    and, when :math:`p_k^\\top g_k \\ne 0`, the projected SGD rate and its running average

    .. math::
        \\gamma_k = \\frac{p_k^\\top p_k}{-p_k^\\top g_k}, \\qquad
        \\lambda_k = \\beta_2 \\lambda_{k-1} + (1-\\beta_2) \\gamma_k

    The parameter switches to SGD when :math:`k > 1` and
    :math:`|\\lambda_k / (1-\\beta_2^k) - \\gamma_k| <` ``switch_eps``, with the learned rate
    :math:`\\Lambda = \\lambda_k / (1-\\beta_2^k)`. SGD phase (momentum buffer ``buf`` from zeros at the switch):

    .. math:: b \\leftarrow \\beta_1 b + g, \\qquad w \\leftarrow w - (1-\\beta_1) \\Lambda b

    **Reading of the criterion.** Algorithm 1 writes :math:`p_k, g_k` as the whole parameter vector; the
    public implementations (``Mrpatekful/swats``, ``pytorch_optimizer.SWATS``) and this class evaluate it *per
    parameter array* (per key of ``params``: each layer's W, b, ... has its own :math:`\\lambda`, its own switch
    and its own :math:`\\Lambda`), so some arrays may be in SGD while others are still in Adam; the step count
    :math:`k` is the optimizer's (:attr:`iter` + 1) for all. :math:`g_k` is the gradient the step used (plus
    :math:`\\lambda_{wd} w` with weight decay). The switch happens only to a positive rate :math:`\\Lambda`
    (a negative estimate, from an Adam step that climbs, would make SGD ascend; the paper does not discuss it).
    The dot products are summed in float64 and returned in the parameter's dtype.

    Parameters
    ----------
    lr : float
        Adam's learning rate :math:`\\eta`, > 0.
    beta1, beta2 : float
        Moment decay rates, in [0, 1); beta1 is also the SGD phase's momentum, as in the paper.
    eps : float
        Adam's :math:`\\epsilon`, > 0.
    switch_eps : float
        The criterion's threshold, > 0. The paper uses one :math:`\\epsilon = 10^{-9}` for both.
    weight_decay : float
        L2 coefficient added to the gradient, >= 0.

    Attributes
    ----------
    switched : dict of str -> float
        :math:`\\Lambda` of every parameter key in its SGD phase.
    lam : dict of str -> float
        :math:`\\lambda_k` of every parameter key (the running average, not bias corrected).
    """

    state_names = ("m", "v", "buf")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-9,
                 switch_eps: float = 1e-9, weight_decay: float = 0.0) -> None:
        super().__init__(lr=lr, beta1=beta1, beta2=beta2, eps=eps, switch_eps=switch_eps, weight_decay=weight_decay)
        self.switched: dict[str, float] = {}
        self.lam: dict[str, float] = {}

    def _apply(self, t: int, items: list[tuple[np.ndarray, Any, tuple[np.ndarray, ...]]]) -> None:
        key_of = {id(m): k for k, m in self.m.items()}  # items come without their keys: find them by state array
        bc2 = 1.0 - self.beta2 ** t
        for param, grad, (m, v, buf) in items:
            key = key_of[id(m)]
            rate = self.switched.get(key)
            if rate is not None:
                ops.swats_sgd_step(param, grad, buf, rate, self.beta1, weight_decay=self.weight_decay)
                continue
            pg, pp = ops.swats_adam_step(param, grad, m, v, self.lr, self.beta1, self.beta2, self.eps, t,
                                         weight_decay=self.weight_decay)
            if pg == 0:
                continue
            gamma = float(pp) / -float(pg)
            lam = self.beta2 * self.lam.get(key, 0.0) + (1.0 - self.beta2) * gamma
            self.lam[key] = lam
            if t > 1 and abs(lam / bc2 - gamma) < self.switch_eps and lam / bc2 > 0.0:
                self.switched[key] = lam / bc2

    # -- state dicts: the per-key phase and rates beside the arrays -------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """:meth:`Optimizer.state_dict` plus ``"swats/lambda/<key>"`` (:math:`\\lambda_k`) and
        ``"swats/switched/<key>"`` (:math:`\\Lambda`, present only for keys in their SGD phase), 0-d float64: a run
        resumed after the switch continues in SGD mode."""
        sd = super().state_dict()
        for prefix, store in (("swats/lambda/", self.lam), ("swats/switched/", self.switched)):
            for key, value in store.items():
                sd[prefix + key] = np.array(value, dtype=np.float64)
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """:meth:`Optimizer.load_state_dict`, with the SWATS entries of :meth:`state_dict` (checked first: on error
        the optimizer is unchanged)."""
        where = "SWATS.load_state_dict"
        if not isinstance(state_dict, Mapping):
            _validate.fail(where, "state_dict", "a dict of arrays from state_dict()", type(state_dict).__name__,
                           TypeError)
        stores: dict[str, dict[str, float]] = {"swats/lambda/": {}, "swats/switched/": {}}
        rest = {}
        for k, value in state_dict.items():
            prefix = next((p for p in stores if isinstance(k, str) and k.startswith(p) and len(k) > len(p)), None)
            if prefix is None:
                rest[k] = value
                continue
            value = _scalar_value(value)
            low = {"gt": 0.0} if prefix == "swats/switched/" else {}
            if not isinstance(value, (float, int, np.floating)) or isinstance(value, bool) or not math.isfinite(
                    value) or ("gt" in low and not value > 0.0):
                _validate.fail(where, f"state_dict[{k!r}]", "a finite 0-d float" + (" > 0" if low else ""),
                               repr(value))
            stores[prefix][k[len(prefix):]] = float(value)
        super().load_state_dict(rest)
        self.lam, self.switched = stores["swats/lambda/"], stores["swats/switched/"]

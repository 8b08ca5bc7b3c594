"""Fused optimizer steps: one pass over memory, in place, no temporaries.

Each public step validates its arguments (the same checks as :mod:`fastnn.reference.optimizers`, before
anything is written), computes the per-step scalars once in float64 (``lr / bias_correction1``,
``1 - beta1``, ...), casts them to the parameter's dtype, and launches a loop body that reads each element of
param, grad and the state arrays once and writes param and state once. Adam on float32 thus moves 28 bytes
per parameter (read p, g, m, v; write p, m, v), the bandwidth floor of the update; the float32 body is pure
float32 arithmetic (checked with ``inspect_asm``: packed ``ps`` instructions on zmm registers, no ``pd``).

Layouts: the bodies see 1-D contiguous views. A param or state array that is not C-contiguous (a transposed or
sliced view) is still updated in place, correctly: it is copied into a contiguous buffer, updated there and
copied back with ``a[...] = buffer``. That costs two more passes over it, so keep parameters contiguous where
speed matters; it never silently updates a copy.

The steps' formulas are documented (``.. math::``) in :mod:`fastnn.reference.optimizers`.
"""

from __future__ import annotations

import math
import threading
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import prange

from .. import _checks, _stepsizes, config
from .._jit import Kernel, kernel
from ._math import _fdiv

__all__ = ["sgd_step", "momentum_step", "nesterov_step", "adagrad_step", "rmsprop_step", "adam_step",
           "adamw_step", "adabound_step", "swats_adam_step", "swats_sgd_step"]


# ---------------------------------------------------------------------------------------------------------------
# Loop bodies. Arrays are 1-D contiguous; scalars are already of the arrays' dtype. ``wd != 0`` tests are on loop
# invariants, which LLVM hoists out of the loop (unswitching), so the vectorised inner loop has no branch; they
# keep ``0 * inf = nan`` out of the update when weight decay is off, as PyTorch does.


@kernel("optimizer")
def _sgd(p, g, lr, wd):
    for i in prange(p.shape[0]):
        gi = g[i]
        if wd != 0:
            gi = gi + wd * p[i]
        p[i] = p[i] - lr * gi


@kernel("optimizer")
def _momentum(p, g, vel, lr, mu, wd):
    for i in prange(p.shape[0]):
        gi = g[i]
        if wd != 0:
            gi = gi + wd * p[i]
        vi = mu * vel[i] - lr * gi
        vel[i] = vi
        p[i] = p[i] + vi


@kernel("optimizer")
def _nesterov(p, g, buf, lr, mu, wd):
    for i in prange(p.shape[0]):
        gi = g[i]
        if wd != 0:
            gi = gi + wd * p[i]
        bi = mu * buf[i] + gi
        buf[i] = bi
        p[i] = p[i] - lr * (gi + mu * bi)


@kernel("optimizer")
def _nesterov_book(p, g, vel, lr, mu, mu_sq, lr_one_plus_mu, wd):
    # The book's order: p += mu*mu*v; p -= (1+mu)*lr*g; v = mu*v - lr*g (v is the velocity before this step).
    for i in prange(p.shape[0]):
        pi = p[i]
        gi = g[i]
        if wd != 0:
            gi = gi + wd * pi
        vi = vel[i]
        pi = pi + mu_sq * vi
        p[i] = pi - lr_one_plus_mu * gi
        vel[i] = mu * vi - lr * gi


@kernel("optimizer")
def _adagrad(p, g, h, lr, eps, wd):
    for i in prange(p.shape[0]):
        gi = g[i]
        if wd != 0:
            gi = gi + wd * p[i]
        hi = h[i] + gi * gi
        h[i] = hi
        p[i] = p[i] - _fdiv(lr * gi, math.sqrt(hi) + eps)


@kernel("optimizer")
def _rmsprop(p, g, sq, lr, alpha, one_minus_alpha, eps, wd):
    for i in prange(p.shape[0]):
        gi = g[i]
        if wd != 0:
            gi = gi + wd * p[i]
        si = alpha * sq[i] + one_minus_alpha * gi * gi  # the book's ((1-a)*g)*g
        sq[i] = si
        p[i] = p[i] - _fdiv(lr * gi, math.sqrt(si) + eps)


@kernel("optimizer")
def _adam(p, g, m, v, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, bc2_sqrt, l2, decay):
    # ``decay`` is 1 - lr*wd for AdamW and exactly 1 for Adam (x * 1 == x, also for inf and nan).
    for i in prange(p.shape[0]):
        pi = p[i]
        gi = g[i]
        if l2 != 0:
            gi = gi + l2 * pi
        pi = pi * decay
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = pi - _fdiv(step_size * mi, _fdiv(math.sqrt(vi), bc2_sqrt) + eps)


@kernel("optimizer")
def _adam_amsgrad(p, g, m, v, v_max, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, bc2_sqrt, l2,
                  decay):
    for i in prange(p.shape[0]):
        pi = p[i]
        gi = g[i]
        if l2 != 0:
            gi = gi + l2 * pi
        pi = pi * decay
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * (gi * gi)
        vm = v_max[i]
        # np.maximum semantics: a nan on either side wins
        if vm < vi or vi != vi:
            vm = vi
        m[i] = mi
        v[i] = vi
        v_max[i] = vm
        p[i] = pi - _fdiv(step_size * mi, _fdiv(math.sqrt(vm), bc2_sqrt) + eps)


# The paper's efficient form (Kingma & Ba, the last paragraph of section 2), eps_hat=True: the bias corrections are
# folded into ``step_size = lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` and eps is added to the uncorrected root.
# The moments are updated as ``m += (1 - beta1) * (g - m)``, the arithmetic of the book's Adam, so float64 results
# agree with it to rounding.


@kernel("optimizer", same_bits=True)  # elementwise, no reduction: tests/kernels/test_same_bits.py
def _adam_hat(p, g, m, v, step_size, one_minus_beta1, one_minus_beta2, eps, l2, decay):
    for i in prange(p.shape[0]):
        pi = p[i]
        gi = g[i]
        if l2 != 0:
            gi = gi + l2 * pi
        pi = pi * decay
        mi = m[i]
        mi = mi + one_minus_beta1 * (gi - mi)
        vi = v[i]
        vi = vi + one_minus_beta2 * (gi * gi - vi)
        m[i] = mi
        v[i] = vi
        p[i] = pi - _fdiv(step_size * mi, math.sqrt(vi) + eps)


@kernel("optimizer")
def _adam_hat_amsgrad(p, g, m, v, v_max, step_size, one_minus_beta1, one_minus_beta2, eps, l2, decay):
    for i in prange(p.shape[0]):
        pi = p[i]
        gi = g[i]
        if l2 != 0:
            gi = gi + l2 * pi
        pi = pi * decay
        mi = m[i]
        mi = mi + one_minus_beta1 * (gi - mi)
        vi = v[i]
        vi = vi + one_minus_beta2 * (gi * gi - vi)
        vm = v_max[i]
        if vm < vi or vi != vi:
            vm = vi
        m[i] = mi
        v[i] = vi
        v_max[i] = vm
        p[i] = pi - _fdiv(step_size * mi, math.sqrt(vm) + eps)


@kernel("optimizer")
def _adabound(p, g, m, v, step_size, lower, upper, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, l2):
    for i in prange(p.shape[0]):
        pi = p[i]
        gi = g[i]
        if l2 != 0:
            gi = gi + l2 * pi
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        rate = _fdiv(step_size, math.sqrt(vi) + eps)
        # np.clip semantics: nan passes through
        if rate < lower:
            rate = lower
        if rate > upper:
            rate = upper
        p[i] = pi - rate * mi


#: Elements per work item of SWATS' Adam phase: each item owns one row of the partial-dot-product buffer, so the
#: sums are the same whatever the thread count (a fixed split, then a serial sum of the items' partials).
_SWATS_CHUNK = 8192


@kernel("optimizer")
def _swats_adam(p, g, m, v, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, l2, chunk, dots):
    # The Adam step of Keskar & Socher's Algorithm 1, and in the same pass the float64 partial sums of p_k.g_k and
    # p_k.p_k (p_k the step taken) for the switch criterion; dots (K, 2) float64, one row per chunk.
    n = p.shape[0]
    for k in prange(dots.shape[0]):
        pg = 0.0
        pp = 0.0
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            pi = p[i]
            gi = g[i]
            if l2 != 0:
                gi = gi + l2 * pi
            mi = beta1 * m[i] + one_minus_beta1 * gi
            vi = beta2 * v[i] + one_minus_beta2 * (gi * gi)
            m[i] = mi
            v[i] = vi
            step = -_fdiv(step_size * mi, math.sqrt(vi) + eps)
            p[i] = pi + step
            s64 = np.float64(step)
            pg += s64 * np.float64(gi)
            pp += s64 * s64
        dots[k, 0] = pg
        dots[k, 1] = pp


@kernel("optimizer")
def _swats_sgd(p, g, buf, lr_one_minus_beta1, beta1, wd):
    for i in prange(p.shape[0]):
        gi = g[i]
        if wd != 0:
            gi = gi + wd * p[i]
        bi = beta1 * buf[i] + gi
        buf[i] = bi
        p[i] = p[i] - lr_one_minus_beta1 * bi


# ---------------------------------------------------------------------------------------------------------------


def _flat(a: np.ndarray) -> np.ndarray:
    """A 1-D C-order view of ``a`` when it is C-contiguous, else a contiguous copy."""
    return a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)


_capture = threading.local()  # .plans: a list while plan_of() runs a step body, which then launches nothing


def _launch(body: Kernel, param: np.ndarray, g: np.ndarray, states: tuple, *scalars) -> None:
    """Run ``body(param, grad, *states, *scalars)`` on flat views; write back what had to be copied."""
    plans = getattr(_capture, "plans", None)
    if plans is not None:
        plans.append((body, states, scalars))
        return
    inplace = (param, *states)
    flats = [_flat(a) for a in inplace]
    body.run(param.size, flats[0], _flat(g), *flats[1:], *scalars)
    for a, f in zip(inplace, flats, strict=True):
        if not a.flags.c_contiguous:
            a[...] = f.reshape(a.shape)


def sgd_step(param: np.ndarray, grad: np.ndarray, lr: float, weight_decay: float = 0.0) -> None:
    """One fused pass (module docstring)."""
    _sgd_step(param, *_checks.check_optimizer_step("sgd_step", param, grad, {}, lr=lr, weight_decay=weight_decay))


def _sgd_step(param: np.ndarray, grad: np.ndarray, lr: float, weight_decay: float = 0.0) -> None:
    t = param.dtype.type
    _launch(_sgd, param, grad, (), t(lr), t(weight_decay))


def momentum_step(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float = 0.9,
                  weight_decay: float = 0.0) -> None:
    """One fused pass (module docstring)."""
    g, lr, momentum, weight_decay = _checks.check_optimizer_step("momentum_step", param, grad, {"velocity": velocity},
                                                                 lr=lr, momentum=momentum, weight_decay=weight_decay)
    _momentum_step(param, g, velocity, lr, momentum, weight_decay)


def _momentum_step(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> None:
    t = param.dtype.type
    _launch(_momentum, param, grad, (velocity,), t(lr), t(momentum), t(weight_decay))


def nesterov_step(param: np.ndarray, grad: np.ndarray, buf: np.ndarray, lr: float, momentum: float = 0.9,
                  weight_decay: float = 0.0, *, pytorch_form: bool = True) -> None:
    """One fused pass (module docstring); the book's form has its own body, in the book's order of operations."""
    g, lr, momentum, weight_decay, pytorch_form = _checks.check_nesterov_step(
        "nesterov_step", param, grad, buf, lr, momentum, weight_decay, pytorch_form)
    _nesterov_step(param, g, buf, lr, momentum, weight_decay, pytorch_form=pytorch_form)


def _nesterov_step(param: np.ndarray, grad: np.ndarray, buf: np.ndarray, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, *, pytorch_form: bool = True) -> None:
    t = param.dtype.type
    if pytorch_form:
        _launch(_nesterov, param, grad, (buf,), t(lr), t(momentum), t(weight_decay))
    else:
        _launch(_nesterov_book, param, grad, (buf,), t(lr), t(momentum), t(momentum * momentum),
                t((1.0 + momentum) * lr), t(weight_decay))


def adagrad_step(param: np.ndarray, grad: np.ndarray, h: np.ndarray, lr: float, eps: float = 1e-7,
                 weight_decay: float = 0.0) -> None:
    """One fused pass (module docstring)."""
    g, lr, eps, weight_decay = _checks.check_optimizer_step("adagrad_step", param, grad, {"h": h}, lr=lr, eps=eps,
                                                            weight_decay=weight_decay)
    _adagrad_step(param, g, h, lr, eps, weight_decay)


def _adagrad_step(param: np.ndarray, grad: np.ndarray, h: np.ndarray, lr: float, eps: float = 1e-7,
                  weight_decay: float = 0.0) -> None:
    t = param.dtype.type
    _launch(_adagrad, param, grad, (h,), t(lr), t(eps), t(weight_decay))


def rmsprop_step(param: np.ndarray, grad: np.ndarray, sq: np.ndarray, lr: float, decay_rate: float = 0.99,
                 eps: float = 1e-7, weight_decay: float = 0.0) -> None:
    """One fused pass (module docstring)."""
    g, lr, decay_rate, eps, weight_decay = _checks.check_optimizer_step(
        "rmsprop_step", param, grad, {"sq": sq}, lr=lr, decay_rate=decay_rate, eps=eps, weight_decay=weight_decay)
    _rmsprop_step(param, g, sq, lr, decay_rate, eps, weight_decay)


def _rmsprop_step(param: np.ndarray, grad: np.ndarray, sq: np.ndarray, lr: float, decay_rate: float = 0.99,
                  eps: float = 1e-7, weight_decay: float = 0.0) -> None:
    t = param.dtype.type
    _launch(_rmsprop, param, grad, (sq,), t(lr), t(decay_rate), t(1.0 - decay_rate), t(eps), t(weight_decay))


def _adam_family(where: str, decoupled: bool, param, grad, m, v, lr, beta1, beta2, eps, bias_correction1,
                 bias_correction2, weight_decay, v_max, eps_hat) -> None:
    g, lr, beta1, beta2, eps, bc1, bc2, weight_decay, eps_hat = _checks.check_adam_step(
        where, param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2, weight_decay, v_max,
        eps_hat)
    _adam_launch(decoupled, param, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, v_max, eps_hat)


def _adam_launch(decoupled: bool, param, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay, v_max,
                 eps_hat) -> None:
    t = param.dtype.type
    l2, decay = (0.0, 1.0 - lr * weight_decay) if decoupled else (weight_decay, 1.0)
    states = (m, v) if v_max is None else (m, v, v_max)
    if eps_hat:
        scalars = (t(lr * math.sqrt(bc2) / bc1), t(1.0 - beta1), t(1.0 - beta2), t(eps), t(l2), t(decay))
        _launch(_adam_hat if v_max is None else _adam_hat_amsgrad, param, g, states, *scalars)
    else:
        scalars = (t(lr / bc1), t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(eps), t(math.sqrt(bc2)), t(l2),
                   t(decay))
        _launch(_adam if v_max is None else _adam_amsgrad, param, g, states, *scalars)


def adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
              beta2: float, eps: float, bias_correction1: float, bias_correction2: float, weight_decay: float = 0.0,
              v_max: np.ndarray | None = None, *, eps_hat: bool = False) -> None:
    """One fused pass (module docstring): on float32 it moves 28 bytes per parameter (read p, g, m, v; write p, m,
    v), the bandwidth floor of the update, in pure float32 arithmetic (``tests/kernels/test_codegen.py``). The
    per-step scalars (``lr / bias_correction1``, ``1 - beta1``, ...) are computed once in float64 and cast to param's
    dtype.
    """
    _adam_family("adam_step", False, param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2,
                 weight_decay, v_max, eps_hat)


def adamw_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
               beta2: float, eps: float, bias_correction1: float, bias_correction2: float, weight_decay: float = 0.0,
               v_max: np.ndarray | None = None, *, eps_hat: bool = False) -> None:
    """One fused pass: Adam's body, with the decay factor ``1 - lr * weight_decay`` applied to ``param`` in the
    same pass.
    """
    _adam_family("adamw_step", True, param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2,
                 weight_decay, v_max, eps_hat)


def adabound_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, final_lr: float,
                  gamma: float, beta1: float, beta2: float, eps: float, step: int, weight_decay: float = 0.0) -> None:
    """One fused pass; the step size and the clipping bounds are computed once per call, in float64."""
    g, *scalars = _checks.check_adabound_step("adabound_step", param, grad, m, v, lr, final_lr, gamma, beta1, beta2,
                                              eps, step, weight_decay)
    _adabound_step(param, g, m, v, *scalars)


def _adabound_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, final_lr: float,
                   gamma: float, beta1: float, beta2: float, eps: float, step: int, weight_decay: float = 0.0) -> None:
    step_size, lower, upper = _stepsizes.adabound_schedule(lr, final_lr, gamma, beta1, beta2, step)
    t = param.dtype.type
    _launch(_adabound, param, grad, (m, v), t(step_size), t(lower), t(upper), t(beta1), t(1.0 - beta1), t(beta2),
            t(1.0 - beta2), t(eps), t(weight_decay))


def _adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
               beta2: float, eps: float, bias_correction1: float, bias_correction2: float, weight_decay: float = 0.0,
               v_max: np.ndarray | None = None, *, eps_hat: bool = False) -> None:
    _adam_launch(False, param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2, weight_decay,
                 v_max, eps_hat)


def _adamw_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
                beta2: float, eps: float, bias_correction1: float, bias_correction2: float, weight_decay: float = 0.0,
                v_max: np.ndarray | None = None, *, eps_hat: bool = False) -> None:
    _adam_launch(True, param, grad, m, v, lr, beta1, beta2, eps, bias_correction1, bias_correction2, weight_decay,
                 v_max, eps_hat)


def swats_adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
                    beta2: float, eps: float, step: int, weight_decay: float = 0.0) -> tuple[np.floating, np.floating]:
    """One fused pass: the Adam update and, from the step it takes, the two dot products of the switch criterion
    (float64 partial sums over fixed chunks, each chunk a work item, summed serially: thread-count independent)."""
    g, *scalars = _checks.check_swats_adam_step("swats_adam_step", param, grad, m, v, lr, beta1, beta2, eps, step,
                                                weight_decay)
    return _swats_adam_step(param, g, m, v, *scalars)


def _swats_adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
                     beta2: float, eps: float, step: int, weight_decay: float = 0.0) -> tuple[np.floating, np.floating]:
    t = param.dtype.type
    dots = np.empty((-(-param.size // _SWATS_CHUNK), 2))
    _launch(_swats_adam, param, grad, (m, v), t(_stepsizes.adam_step_size(lr, beta1, beta2, step)), t(beta1),
            t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(eps), t(weight_decay), _SWATS_CHUNK, dots)
    pg, pp = dots.sum(axis=0)
    return t(pg), t(pp)


def swats_sgd_step(param: np.ndarray, grad: np.ndarray, buf: np.ndarray, lr: float, beta1: float,
                   weight_decay: float = 0.0) -> None:
    """One fused pass (module docstring)."""
    g, lr, beta1, weight_decay = _checks.check_optimizer_step("swats_sgd_step", param, grad, {"buf": buf}, lr=lr,
                                                              beta1=beta1, weight_decay=weight_decay)
    _swats_sgd_step(param, g, buf, lr, beta1, weight_decay)


def _swats_sgd_step(param: np.ndarray, grad: np.ndarray, buf: np.ndarray, lr: float, beta1: float,
                    weight_decay: float = 0.0) -> None:
    t = param.dtype.type
    _launch(_swats_sgd, param, grad, (buf,), t(lr * (1.0 - beta1)), t(beta1), t(weight_decay))

# ---------------------------------------------------------------------------------------------------------------
# Multi-tensor steps: one launch updates many parameters (an optimizer's whole update of a net).
#
# A launch takes the flat views of up to _GROUP parameters, gradients and state arrays as tuples of that fixed
# length (padded with empty arrays), so there is one compiled kernel per (loop body, state count, dtype) whatever
# the net (each compile takes ~1 s: one tuple length keeps the test suite's cold start short), and a work table
# of (tensor, start, stop) rows; each row runs the per-tensor body's serial twin on its slices, the very code of
# the per-tensor step, so the two paths agree to the last bit or two (LLVM may vectorise or contract the
# inlined body differently; tests/optim/test_multi_tensor.py). Tuples of arrays cost Numba ~0.1 us per array to
# unbox; a numba.typed.List costs several us per append, and per-array data pointers (``a.ctypes.data``) ~2 us
# each (measured), which is the per-parameter overhead this path removes. The rows are whole tensors: the launch
# is serial. A tensor large enough for the parallel twin (fastnn.config.PARALLEL_MIN_WORK) gets its own parallel
# per-tensor launch instead when parallel launches are on, which splits it evenly; a parallel multi-tensor
# launcher (prange over rows) took minutes to compile with 32-slot tuples, measured.

#: Tensors per launch: SimpleConvNet's 6 parameters take one, MultiLayerNetExtend's 22 three. The launcher's compile
#: time grows with the tuples' length: an Adam step's first call cost 1.9 s of CPU with 16 slots, 1.47 s with 8,
#: 1.3 s with 4 (import included, fresh cache, float32); fewer padded slots also unbox fewer arrays per launch.
_GROUP = 8


def _multi0(work, P, G, *scalars):
    for w in prange(work.shape[0]):
        k, s, e = work[w, 0], work[w, 1], work[w, 2]
        _BODY(P[k][s:e], G[k][s:e], *scalars)  # noqa: F821 (a global of each compiled copy, see _multi_kernel)


def _multi1(work, P, G, S1, *scalars):
    for w in prange(work.shape[0]):
        k, s, e = work[w, 0], work[w, 1], work[w, 2]
        _BODY(P[k][s:e], G[k][s:e], S1[k][s:e], *scalars)  # noqa: F821


def _multi2(work, P, G, S1, S2, *scalars):
    for w in prange(work.shape[0]):
        k, s, e = work[w, 0], work[w, 1], work[w, 2]
        _BODY(P[k][s:e], G[k][s:e], S1[k][s:e], S2[k][s:e], *scalars)  # noqa: F821


def _multi3(work, P, G, S1, S2, S3, *scalars):
    for w in prange(work.shape[0]):
        k, s, e = work[w, 0], work[w, 1], work[w, 2]
        _BODY(P[k][s:e], G[k][s:e], S1[k][s:e], S2[k][s:e], S3[k][s:e], *scalars)  # noqa: F821


_MULTI_TEMPLATES = (_multi0, _multi1, _multi2, _multi3)
_multi_kernels: dict[tuple[str, int], Kernel] = {}


def _multi_kernel(body: Kernel, n_states: int) -> Kernel:
    """The multi-tensor launcher of ``body``: a copy of the template for ``n_states`` whose global ``_BODY`` is
    ``body``'s serial twin, under its own name (so its on-disk cache entry is its own)."""
    key = (body.__name__, n_states)
    kern = _multi_kernels.get(key)
    if kern is None:
        template = _MULTI_TEMPLATES[n_states]
        fn = types.FunctionType(template.__code__, {**template.__globals__, "_BODY": body.serial},
                                f"{template.__name__}__{body.__name__}")
        fn.__qualname__ = fn.__name__
        fn.__module__ = template.__module__
        kern = _multi_kernels[key] = Kernel(fn, "optimizer")
    return kern


def plan_of(step, param: np.ndarray, grad: np.ndarray, *args, **kwargs) -> tuple[Kernel, tuple, tuple]:
    """``(loop body, state arrays, scalars)`` that the step body ``step`` (an unchecked ``_<name>_step`` of this
    module, on arguments its check would return) launches for this call, without running it."""
    _capture.plans = plans = []
    try:
        step(param, grad, *args, **kwargs)
    finally:
        _capture.plans = None
    (plan,) = plans
    return plan


class MultiTensorPlan:
    """The flat views and the work tables of one list of parameters and their state arrays, built once and
    reused while the same arrays are updated (:meth:`run` then only flattens the gradients).

    Every array must be C-contiguous and no two parameters may share memory; the optimizer checks that before
    making a plan and keeps non-contiguous or tied parameters on the per-tensor path.
    """

    def __init__(self, params: Sequence[np.ndarray], states: Sequence[tuple[np.ndarray, ...]]) -> None:
        self.groups = []
        for lo in range(0, len(params), _GROUP):
            ps, sts = params[lo:lo + _GROUP], states[lo:lo + _GROUP]
            pad = (np.empty(0, ps[0].dtype),) * (_GROUP - len(ps))
            flat = tuple(p.reshape(-1) for p in ps) + pad
            flat_states = tuple(tuple(st[j].reshape(-1) for st in sts) + pad for j in range(len(sts[0])))
            # rows: every tensor, and the tensors small enough for the serial body
            rows = np.array([(k, 0, p.size) for k, p in enumerate(ps)], dtype=np.int64).reshape(-1, 3)
            # tensors whose own launch may run the parallel twin; they leave the serial launch when it does
            large = [k for k, p in enumerate(ps) if p.size >= config.parallel_min_work("multi_tensor")]
            small = rows[[k for k in range(len(ps)) if k not in large]]
            self.groups.append((lo, len(ps), flat, flat_states, pad, rows, small, large))
        self._entries: dict[tuple[str, int], Any] = {}

    def _launcher(self, body: Kernel, group: int, args: tuple) -> Any:
        """The compiled multi-tensor launcher of ``body`` for group ``group``, called without Numba's dispatch.

        Every launch of a group passes the same plan-owned tuples, a work table and scalars of the parameters'
        dtype, and gradients that the optimizer checked to be C-contiguous ndarrays of the parameters' shapes
        and dtypes: the argument types are those of the first launch, so its compiled overload is looked up once
        and its entry point called from then on. Numba's dispatch types every array of the tuples on each call:
        ~3 us of a ~9 us launch of 16 tensors (thread CPU time, measured). A gradient that is read-only (or, in
        principle, unaligned) where the first was not has the same machine representation, and the launcher
        only reads gradients.
        """
        key = (body.__name__, group)
        entry = self._entries.get(key)
        if entry is None:
            launcher = _multi_kernel(body, len(self.groups[group][3])).serial
            launcher(*args[:-1], *args[-1])  # compiles for these types if needed
            signature = tuple(launcher.typeof_pyval(a) for a in args)
            entry = self._entries[key] = launcher.overloads[signature].entry_point
            return None
        return entry

    def run(self, body: Kernel, grads: Sequence[np.ndarray], scalars: tuple) -> None:
        """Launch ``body`` with ``scalars`` over every parameter, ``grads`` (C-contiguous, the parameters' shapes
        and dtype) in the parameters' order."""
        for group, (lo, n, flat, flat_states, pad, rows, small, large) in enumerate(self.groups):
            g = tuple(x.reshape(-1) for x in grads[lo:lo + n]) + pad
            work = rows
            if large and body.use_parallel(min(flat[k].size for k in large)):
                for k in large:
                    body.run(flat[k].size, flat[k], g[k], *(st[k] for st in flat_states), *scalars)
                work = small
            if len(work):
                args = (work, flat, g, *flat_states, scalars)  # the entry point takes *scalars as one tuple
                entry = self._launcher(body, group, args)
                if entry is not None:
                    entry(*args)

"""Fused optimizer kernels against the NumPy reference (and torch.optim where the formulation matches)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from tests.conftest import assert_close

B1, B2 = 0.9, 0.999


def _adam_hyper(lr, wd=0.0, **switch):
    """Adam's arguments at step t; ``switch``: an explicit ``eps_hat``."""
    def hyper(t):
        return dict(lr=lr, beta1=B1, beta2=B2, eps=1e-8, bias_correction1=1 - B1**t, bias_correction2=1 - B2**t,
                    weight_decay=wd, **switch)
    return hyper


def _const(**kw):
    return lambda t: dict(kw)


def _adabound_hyper(wd=0.0):
    return lambda t: dict(lr=1e-2, final_lr=0.1, gamma=1e-3, beta1=B1, beta2=B2, eps=1e-8, step=t, weight_decay=wd)


# (id, step function name, state argument names, hyperparameters of step t)
CASES = [
    ("sgd", "sgd_step", (), _const(lr=0.1)),
    ("sgd-wd", "sgd_step", (), _const(lr=0.1, weight_decay=0.05)),
    ("momentum", "momentum_step", ("velocity",), _const(lr=0.05, momentum=0.9)),
    ("momentum-wd", "momentum_step", ("velocity",), _const(lr=0.05, momentum=0.5, weight_decay=0.01)),
    ("nesterov", "nesterov_step", ("buf",), _const(lr=0.05, momentum=0.9)),
    ("nesterov-wd", "nesterov_step", ("buf",), _const(lr=0.05, momentum=0.8, weight_decay=0.01)),
    ("nesterov-book", "nesterov_step", ("buf",), _const(lr=0.05, momentum=0.9, pytorch_form=False)),
    ("nesterov-book-wd", "nesterov_step", ("buf",), _const(lr=0.05, momentum=0.8, weight_decay=0.01,
                                                            pytorch_form=False)),
    ("adagrad", "adagrad_step", ("h",), _const(lr=0.1)),
    ("adagrad-wd", "adagrad_step", ("h",), _const(lr=0.1, eps=1e-6, weight_decay=0.01)),
    ("rmsprop", "rmsprop_step", ("sq",), _const(lr=0.01)),
    ("rmsprop-wd", "rmsprop_step", ("sq",), _const(lr=0.01, decay_rate=0.9, eps=1e-8, weight_decay=0.01)),
    ("adam", "adam_step", ("m", "v"), _adam_hyper(0.01)),
    ("adam-wd", "adam_step", ("m", "v"), _adam_hyper(0.01, 0.05)),
    ("amsgrad", "adam_step", ("m", "v", "v_max"), _adam_hyper(0.01)),
    ("amsgrad-wd", "adam_step", ("m", "v", "v_max"), _adam_hyper(0.01, 0.05)),
    ("adamw", "adamw_step", ("m", "v"), _adam_hyper(0.01, 0.1)),
    ("adamw-amsgrad", "adamw_step", ("m", "v", "v_max"), _adam_hyper(0.01, 0.1)),
    ("adam-hat", "adam_step", ("m", "v"), _adam_hyper(0.01, eps_hat=True)),
    ("adam-hat-wd", "adam_step", ("m", "v"), _adam_hyper(0.01, 0.05, eps_hat=True)),
    ("amsgrad-hat", "adam_step", ("m", "v", "v_max"), _adam_hyper(0.01, eps_hat=True)),
    ("adamw-hat", "adamw_step", ("m", "v"), _adam_hyper(0.01, 0.1, eps_hat=True)),
    ("adamw-amsgrad-hat", "adamw_step", ("m", "v", "v_max"), _adam_hyper(0.01, 0.1, eps_hat=True)),
    ("adabound", "adabound_step", ("m", "v"), _adabound_hyper()),
    ("adabound-wd", "adabound_step", ("m", "v"), _adabound_hyper(0.01)),
]
IDS = [c[0] for c in CASES]


def _grads(shape, steps, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]


def _trajectory(mod, fn, state_names, hyper, param, grads, target):
    """Run len(grads) steps of the loss 0.5*|p - target|^2 + noise; return param and states after each step."""
    states = {name: np.zeros_like(param) for name in state_names}
    out = []
    for t, noise in enumerate(grads, start=1):
        g = (param - target) + noise
        getattr(mod, fn)(param=param, grad=g, **states, **hyper(t))
        out.append((param.copy(), {k: s.copy() for k, s in states.items()}))
    return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_trajectory_matches_reference(case, dtype, twin):
    _, fn, state_names, hyper = case
    shape = (37, 29)  # not a multiple of any vector width
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    grads = _grads(shape, 50, dtype)
    fast = _trajectory(K, fn, state_names, hyper, p0.copy(), grads, target)
    ref = _trajectory(R, fn, state_names, hyper, p0.copy(), grads, target)
    for (pf, sf), (pr, sr) in zip(fast, ref, strict=True):
        assert_close(pf, pr)
        for name in state_names:
            assert_close(sf[name], sr[name])
    # the trajectory actually moved (a no-op kernel would pass the comparison with a no-op reference)
    assert np.abs(fast[-1][0] - p0).max() > 1e-2


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("layout", ["transposed", "strided", "fortran"])
def test_non_contiguous_param_updated_in_place(case, layout, twin):
    """A view param (and view states) is updated in place, exactly as a contiguous copy would be."""
    _, fn, state_names, hyper = case
    rng = np.random.default_rng(2)

    def view(base):
        if layout == "transposed":
            return base.T
        if layout == "strided":
            return base[::2, 1::3]
        return np.asfortranarray(base)

    base = rng.standard_normal((40, 30))
    param = view(base)
    assert not param.flags.c_contiguous
    outside = base.copy()
    states = {name: view(np.zeros_like(base)) for name in state_names}
    contiguous = np.ascontiguousarray(param)
    contiguous_states = {name: np.zeros(param.shape) for name in state_names}
    for t in range(1, 6):
        g = rng.standard_normal((2 * param.shape[0], param.shape[1]))[::2]  # a non-contiguous grad too
        getattr(K, fn)(param=param, grad=g, **states, **hyper(t))
        getattr(R, fn)(param=contiguous, grad=g, **contiguous_states, **hyper(t))
    np.testing.assert_allclose(param, contiguous, rtol=1e-12, atol=1e-13)
    for name in state_names:
        np.testing.assert_allclose(states[name], contiguous_states[name], rtol=1e-12, atol=1e-13)
    if layout == "strided":  # elements outside the view are untouched
        mask = np.ones(base.shape, bool)
        mask[::2, 1::3] = False
        np.testing.assert_array_equal(base[mask], outside[mask])
    else:
        start = outside.T if layout == "transposed" else outside
        assert np.abs(param - start).max() > 1e-3


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("size", [0, 1, 7, 1000])
def test_sizes_and_float64_grad_on_float32_param(case, size, twin):
    """Any size incl. 0; a float64 grad is cast to the float32 param, which stays float32."""
    _, fn, state_names, hyper = case
    rng = np.random.default_rng(3)
    p = rng.standard_normal(size).astype(np.float32)
    pr = p.copy()
    g = rng.standard_normal(size)  # float64
    states = {n: np.zeros_like(p) for n in state_names}
    states_r = {n: np.zeros_like(p) for n in state_names}
    getattr(K, fn)(param=p, grad=g, **states, **hyper(1))
    getattr(R, fn)(param=pr, grad=g.astype(np.float32), **states_r, **hyper(1))
    assert p.dtype == np.float32
    assert_close(p, pr)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_grad_not_modified(case):
    _, fn, state_names, hyper = case
    rng = np.random.default_rng(4)
    p = rng.standard_normal(100)
    g = rng.standard_normal(100)
    g0 = g.copy()
    getattr(K, fn)(param=p, grad=g, **{n: np.zeros_like(p) for n in state_names}, **hyper(1))
    np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_nan_and_inf_propagate_like_reference(case, dtype, twin):
    _, fn, state_names, hyper = case
    p = np.array([0.5, -1.0, 2.0, np.inf, 1.0, 3.0], dtype)
    g = np.array([np.nan, 1.0, np.inf, 0.5, -np.inf, 0.0], dtype)
    pr = p.copy()
    states = {n: np.zeros_like(p) for n in state_names}
    states_r = {n: np.zeros_like(p) for n in state_names}
    with np.errstate(all="ignore"):
        for t in (1, 2):
            getattr(K, fn)(param=p, grad=g, **states, **hyper(t))
            getattr(R, fn)(param=pr, grad=g, **states_r, **hyper(t))
    assert_close(p, pr)
    assert np.isnan(p[0])  # a nan gradient poisons its parameter, never another one
    assert np.isfinite(p[[1, 5]]).all()


def test_adam_bias_correction_first_step_is_lr_sign():
    """At t = 1 with eps -> 0, Adam moves every parameter by exactly lr * sign(g) (PyTorch form)."""
    p = np.zeros(5)
    g = np.array([3.0, -2.0, 1e-3, -1e3, 7.0])
    m, v = np.zeros(5), np.zeros(5)
    K.adam_step(p, g, m, v, lr=0.01, beta1=B1, beta2=B2, eps=1e-300, bias_correction1=1 - B1,
                bias_correction2=1 - B2)
    np.testing.assert_allclose(p, -0.01 * np.sign(g), rtol=1e-12)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(v, 1e-3 * g * g, rtol=1e-12)


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
def test_adam_eps_hat_adds_eps_to_the_uncorrected_root(mod):
    """First step, m = (1-b1) g, v = (1-b2) g^2: PyTorch's form moves lr g / (|g| + eps), the book's / paper's
    efficient form lr g / (|g| + eps / sqrt(1 - b2)), 32x more eps at beta2 = 0.999."""
    g = np.array([1e-6, -3e-7, 2.0, -1e-9])
    lr, eps = 0.01, 1e-7
    for eps_hat, eff in ((False, eps), (True, eps / np.sqrt(1 - B2))):
        p, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
        mod.adam_step(p, g, m, v, lr, B1, B2, eps, 1 - B1, 1 - B2, eps_hat=eps_hat)
        np.testing.assert_allclose(p, -lr * g / (np.abs(g) + eff), rtol=1e-12)
        np.testing.assert_allclose(m, 0.1 * g, rtol=1e-14)
        np.testing.assert_allclose(v, (1 - B2) * g * g, rtol=1e-12)


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
def test_nesterov_book_form_written_out(mod):
    """pytorch_form=False: p += mu^2 v - (1 + mu) lr g, then v = mu v - lr g (the velocity before the step)."""
    rng = np.random.default_rng(8)
    p, v = rng.standard_normal(6), rng.standard_normal(6)
    g = rng.standard_normal(6)
    want_p, want_v = p + 0.81 * v - 1.9 * 0.1 * g, 0.9 * v - 0.1 * g
    mod.nesterov_step(p, g, v, 0.1, 0.9, pytorch_form=False)
    np.testing.assert_allclose(p, want_p, rtol=1e-14)
    np.testing.assert_allclose(v, want_v, rtol=1e-14)


def test_adabound_rate_is_clipped_to_bounds():
    """With a huge lr, the per-element rate sits at AdaBound's upper bound final_lr * (1 + 1/(gamma*t))."""
    p = np.zeros(3)
    g = np.array([1.0, -2.0, 0.5])
    m, v = np.zeros(3), np.zeros(3)
    K.adabound_step(p, g, m, v, lr=1e6, final_lr=0.1, gamma=0.5, beta1=B1, beta2=B2, eps=1e-8, step=1)
    np.testing.assert_allclose(p, -0.1 * (1 + 1 / 0.5) * (0.1 * g), rtol=1e-12)


# ------------------------------------------------------------------------------------------------ bad input


def _adam_args(**over):
    p = np.ones(4, np.float32)
    args = dict(param=p, grad=np.ones(4, np.float32), m=np.zeros(4, np.float32), v=np.zeros(4, np.float32),
                lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction1=0.1, bias_correction2=0.001)
    args.update(over)
    return args


BAD_ADAM = [
    ("grad", dict(grad=np.ones(5, np.float32)), ValueError),
    ("grad", dict(grad=np.ones(4, np.complex64)), TypeError),
    ("param", dict(param=np.ones(4, np.complex64)), TypeError),
    ("param", dict(param=[1.0, 1.0, 1.0, 1.0]), TypeError),
    ("param", dict(param=np.ones(4, np.int64)), TypeError),
    ("m", dict(m=np.zeros(5, np.float32)), ValueError),
    ("v", dict(v=np.zeros(4, np.float64)), TypeError),
    ("v_max", dict(v_max=np.zeros(3, np.float32)), ValueError),
    ("lr", dict(lr=0.0), ValueError),
    ("lr", dict(lr=-1e-3), ValueError),
    ("lr", dict(lr=float("nan")), ValueError),
    ("lr", dict(lr="0.1"), TypeError),
    ("beta1", dict(beta1=1.0), ValueError),
    ("beta2", dict(beta2=1.5), ValueError),
    ("beta1", dict(beta1=-0.1), ValueError),
    ("eps", dict(eps=0.0), ValueError),
    ("bias_correction1", dict(bias_correction1=0.0), ValueError),
    ("bias_correction2", dict(bias_correction2=1.5), ValueError),
    ("weight_decay", dict(weight_decay=-1.0), ValueError),
    ("eps_hat", dict(eps_hat=1), TypeError),
    ("eps_hat", dict(eps_hat=None), TypeError),
]


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("fn", ["adam_step", "adamw_step"])
@pytest.mark.parametrize(("name", "over", "exc"), BAD_ADAM, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_ADAM)])
def test_adam_bad_input_raises_before_writing(mod, fn, name, over, exc):
    args = _adam_args(**over)
    before = {k: np.array(a, copy=True) for k, a in args.items() if isinstance(a, np.ndarray)}
    with pytest.raises(exc, match=rf"{fn}: {name} must be"):
        getattr(mod, fn)(**args)
    for k, a in before.items():
        np.testing.assert_array_equal(args[k], a)


BAD_OTHER = [
    ("sgd_step", dict(lr=-0.1), "lr", ValueError),
    ("sgd_step", dict(weight_decay=float("inf")), "weight_decay", ValueError),
    ("momentum_step", dict(momentum=1.0), "momentum", ValueError),
    ("momentum_step", dict(velocity=np.zeros((2, 2))), "velocity", ValueError),
    ("nesterov_step", dict(momentum=-0.5), "momentum", ValueError),
    ("nesterov_step", dict(buf=np.zeros(4, np.float32)), "buf", TypeError),
    ("nesterov_step", dict(pytorch_form="yes"), "pytorch_form", TypeError),
    ("adagrad_step", dict(eps=-1e-7), "eps", ValueError),
    ("adagrad_step", dict(h=None), "h", TypeError),
    ("rmsprop_step", dict(decay_rate=1.0), "decay_rate", ValueError),
    ("rmsprop_step", dict(grad=np.ones((4, 1))), "grad", ValueError),
    ("adabound_step", dict(step=0), "step", ValueError),
    ("adabound_step", dict(step=1.5), "step", TypeError),
    ("adabound_step", dict(gamma=1.0), "gamma", ValueError),
    ("adabound_step", dict(final_lr=0.0), "final_lr", ValueError),
    ("adabound_step", dict(beta2=1.0), "beta2", ValueError),
]
_DEFAULTS = {
    "sgd_step": lambda: dict(lr=0.1),
    "momentum_step": lambda: dict(velocity=np.zeros(4), lr=0.1),
    "nesterov_step": lambda: dict(buf=np.zeros(4), lr=0.1),
    "adagrad_step": lambda: dict(h=np.zeros(4), lr=0.1),
    "rmsprop_step": lambda: dict(sq=np.zeros(4), lr=0.1),
    "adabound_step": lambda: dict(m=np.zeros(4), v=np.zeros(4), lr=0.1, final_lr=0.1, gamma=1e-3, beta1=0.9,
                                  beta2=0.999, eps=1e-8, step=1),
}


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize(("fn", "over", "name", "exc"), BAD_OTHER, ids=[f"{b[0]}-{b[2]}" for b in BAD_OTHER])
def test_other_bad_input_raises_before_writing(mod, fn, over, name, exc):
    args = dict(param=np.ones(4), grad=np.ones(4), **_DEFAULTS[fn]())
    args.update(over)
    before = {k: a.copy() for k, a in args.items() if isinstance(a, np.ndarray)}
    with pytest.raises(exc, match=rf"{fn}: {name} must be"):
        getattr(mod, fn)(**args)
    for k, a in before.items():
        np.testing.assert_array_equal(args[k], a)


def test_read_only_param_refused():
    p = np.ones(4)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="sgd_step: param must be writeable"):
        K.sgd_step(p, np.ones(4), 0.1)


# ------------------------------------------------------------------------------------------------ torch


def _torch_cases():
    return [
        ("adam", lambda t, ps: t.optim.Adam(ps, lr=0.01, betas=(B1, B2), eps=1e-8, weight_decay=0.05),
         "adam_step", ("m", "v"), _adam_hyper(0.01, 0.05, eps_hat=False)),
        ("adam-fused", lambda t, ps: t.optim.Adam(ps, lr=0.01, betas=(B1, B2), eps=1e-8, fused=True),
         "adam_step", ("m", "v"), _adam_hyper(0.01, eps_hat=False)),
        ("amsgrad", lambda t, ps: t.optim.Adam(ps, lr=0.01, betas=(B1, B2), eps=1e-8, amsgrad=True),
         "adam_step", ("m", "v", "v_max"), _adam_hyper(0.01, eps_hat=False)),
        ("adamw", lambda t, ps: t.optim.AdamW(ps, lr=0.01, betas=(B1, B2), eps=1e-8, weight_decay=0.1),
         "adamw_step", ("m", "v"), _adam_hyper(0.01, 0.1, eps_hat=False)),
        ("sgd-wd", lambda t, ps: t.optim.SGD(ps, lr=0.1, weight_decay=0.05), "sgd_step", (),
         _const(lr=0.1, weight_decay=0.05)),
        ("momentum", lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.9), "momentum_step", ("velocity",),
         _const(lr=0.05, momentum=0.9)),
        ("nesterov", lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
         "nesterov_step", ("buf",), _const(lr=0.05, momentum=0.9, weight_decay=0.01, pytorch_form=True)),
        ("rmsprop", lambda t, ps: t.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-7), "rmsprop_step", ("sq",),
         _const(lr=0.01, decay_rate=0.9, eps=1e-7)),
        ("adagrad", lambda t, ps: t.optim.Adagrad(ps, lr=0.1, eps=1e-7), "adagrad_step", ("h",),
         _const(lr=0.1, eps=1e-7)),
    ]


@pytest.mark.parametrize("idx", range(9), ids=[c[0] for c in _torch_cases()])
def test_trajectory_matches_torch(idx, dtype):
    torch = pytest.importorskip("torch")
    name, make, fn, state_names, hyper = _torch_cases()[idx]
    shape = (13, 11)
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    grads = _grads(shape, 50, dtype, seed=6)
    ours = _trajectory(K, fn, state_names, hyper, p0.copy(), grads, target)
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = make(torch, [tp])
    for (p_ours, _), noise in zip(ours, grads, strict=True):
        with torch.no_grad():
            tp.grad = (tp - torch.from_numpy(target)) + torch.from_numpy(noise)
        opt.step()
        assert_close(p_ours, tp.detach().numpy())
    assert np.abs(ours[-1][0] - p0).max() > 1e-2

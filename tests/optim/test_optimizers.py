"""fastnn.optim: trajectories against fastnn.reference, against the formulas of the papers/book, against torch;
state dicts; atomic failure; hyperparameter checks; the name registry."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.optim as optim
import fastnn.reference as R
from fastnn import checkpoint
from tests.conftest import TOL

SHAPES = {"W1": (7, 5), "b1": (5,), "conv/W": (2, 3, 4, 3), "s": (1,)}
STEPS = 50

#: Hyperparameters each optimizer is run with: defaults, then the weight_decay / amsgrad / non-default paths.
CASES = {
    "sgd": [{}, {"lr": 0.1, "weight_decay": 0.01}],
    "momentum": [{}, {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.01}],
    "nesterov": [{}, {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.01}, {"pytorch_form": True},
                 {"pytorch_form": True, "lr": 0.05, "momentum": 0.8, "weight_decay": 0.01}],
    "adagrad": [{}, {"lr": 0.1, "eps": 1e-6, "weight_decay": 0.01}],
    "rmsprop": [{}, {"lr": 0.001, "decay_rate": 0.9, "eps": 1e-6, "weight_decay": 0.01}],
    "adam": [{}, {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.01}, {"amsgrad": True},
             {"amsgrad": True, "weight_decay": 0.1, "lr": 0.01}, {"eps_hat": False},
             {"eps_hat": False, "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.01},
             {"eps_hat": False, "amsgrad": True}, {"eps_hat": False, "amsgrad": True, "weight_decay": 0.1, "lr": 0.01}],
    "adamw": [{}, {"lr": 0.01, "weight_decay": 0.1}, {"amsgrad": True, "weight_decay": 0.05}],
    "amsgrad": [{}, {"lr": 0.01, "beta2": 0.9, "weight_decay": 0.01}],
    "adabound": [{}, {"lr": 0.01, "final_lr": 0.05, "gamma": 0.1, "weight_decay": 0.01},
                 {"lr": 0.1, "final_lr": 0.001, "gamma": 0.5}],  # bounds close fast: clipping active
}
CASE_IDS = [(name, i) for name, hs in CASES.items() for i in range(len(hs))]


def _problem(dtype, seed=0, steps=STEPS):
    """Random params (of ``dtype``) and a sequence of random grad dicts (float64: cast by the optimizer)."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    # Gradients of mixed scales, including near-zero entries, so eps and clipping matter somewhere.
    grads = [{k: (rng.standard_normal(s) * rng.choice([1e-3, 1.0, 10.0], size=s)).astype(dtype)
              for k, s in SHAPES.items()} for _ in range(steps)]
    return params, grads


def _copy(params):
    return {k: v.copy() for k, v in params.items()}


def _run(opt, params, grads):
    for g in grads:
        opt.update(params, g)
    return params


# -- oracle 1: a loop over fastnn.reference steps ----------------------------------------------------------------

def _reference_run(name, h, params, grads):
    """The optimizer rebuilt from the pure-NumPy steps of fastnn.reference (same state layout)."""
    state = {k: {s: np.zeros_like(p) for s in ("a", "b", "c")} for k, p in params.items()}
    amsgrad = name == "amsgrad" or h.get("amsgrad", False)
    for t, gd in enumerate(grads, start=1):
        for k, p in params.items():
            g, st = gd[k], state[k]
            wd = h["weight_decay"]
            if name == "sgd":
                R.sgd_step(p, g, h["lr"], wd)
            elif name == "momentum":
                R.momentum_step(p, g, st["a"], h["lr"], h["momentum"], wd)
            elif name == "nesterov":
                R.nesterov_step(p, g, st["a"], h["lr"], h["momentum"], wd, pytorch_form=h["pytorch_form"])
            elif name == "adagrad":
                R.adagrad_step(p, g, st["a"], h["lr"], h["eps"], wd)
            elif name == "rmsprop":
                R.rmsprop_step(p, g, st["a"], h["lr"], h["decay_rate"], h["eps"], wd)
            elif name in ("adam", "adamw", "amsgrad"):
                step = R.adamw_step if name == "adamw" else R.adam_step
                step(p, g, st["a"], st["b"], h["lr"], h["beta1"], h["beta2"], h["eps"], 1.0 - h["beta1"] ** t,
                     1.0 - h["beta2"] ** t, wd, v_max=st["c"] if amsgrad else None,
                     eps_hat=h.get("eps_hat", False))
            elif name == "adabound":
                R.adabound_step(p, g, st["a"], st["b"], h["lr"], h["final_lr"], h["gamma"], h["beta1"], h["beta2"],
                                h["eps"], t, wd)
    return params


@pytest.mark.parametrize("name,case", CASE_IDS)
def test_trajectory_matches_reference(name, case, dtype, twin):
    h = CASES[name][case]
    params, grads = _problem(dtype)
    opt = optim.get(name, **h)
    got = _run(opt, _copy(params), grads)
    want = _reference_run(name, opt.hyperparameters, _copy(params), grads)
    # 50 steps compound the kernels' rounding differences (fused multiply-add): measured worst 5e-5 relative in
    # float32 (AdaBound, clipping boundary), 5e-14 in float64; 10x one step's TOL leaves a margin.
    tol = {"rtol": 10 * TOL[dtype]["rtol"], "atol": 10 * TOL[dtype]["atol"]}
    for k in params:
        assert got[k].dtype == dtype
        np.testing.assert_allclose(got[k], want[k], **tol, err_msg=k)
    assert opt.iter == STEPS
    for s in opt.state_names:
        for k, p in params.items():
            arr = getattr(opt, s)[k]
            assert arr.dtype == dtype and arr.shape == p.shape


# -- oracle 2: the formulas, written out from the book and the papers (float64) ----------------------------------

def _formula_run(name, h, params, grads):
    """Each update written as the source states it, in float64 NumPy, independent of fastnn."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    s1 = {k: np.zeros_like(v) for k, v in p.items()}
    s2 = {k: np.zeros_like(v) for k, v in p.items()}
    s3 = {k: np.zeros_like(v) for k, v in p.items()}
    lr, wd, eps = h["lr"], h["weight_decay"], h.get("eps")
    amsgrad = name == "amsgrad" or h.get("amsgrad", False)
    for t, gd in enumerate(grads, start=1):
        for k in p:
            g = gd[k].astype(np.float64)
            if name != "adamw":
                g = g + wd * p[k]
            if name == "sgd":  # book SGD
                p[k] -= lr * g
            elif name == "momentum":  # book Momentum
                s1[k] = h["momentum"] * s1[k] - lr * g
                p[k] += s1[k]
            elif name == "nesterov" and h["pytorch_form"]:  # torch.optim.SGD(nesterov=True) docs
                s1[k] = h["momentum"] * s1[k] + g
                p[k] -= lr * (g + h["momentum"] * s1[k])
            elif name == "nesterov":  # book Nesterov (velocity form, arXiv:1212.0901)
                mu = h["momentum"]
                p[k] += mu * mu * s1[k] - (1 + mu) * lr * g
                s1[k] = mu * s1[k] - lr * g
            elif name == "adagrad":  # book AdaGrad
                s1[k] += g * g
                p[k] -= lr * g / (np.sqrt(s1[k]) + eps)
            elif name == "rmsprop":  # book RMSprop
                s1[k] = h["decay_rate"] * s1[k] + (1 - h["decay_rate"]) * g * g
                p[k] -= lr * g / (np.sqrt(s1[k]) + eps)
            elif name == "adam" and h["eps_hat"]:  # book Adam: Kingma & Ba's efficient form, eps-hat
                b1, b2 = h["beta1"], h["beta2"]
                s1[k] = b1 * s1[k] + (1 - b1) * g
                s2[k] = b2 * s2[k] + (1 - b2) * g * g
                if amsgrad:
                    s3[k] = np.maximum(s3[k], s2[k])
                alpha_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                p[k] -= alpha_t * s1[k] / (np.sqrt(s3[k] if amsgrad else s2[k]) + eps)
            elif name in ("adam", "amsgrad", "adamw"):  # Kingma & Ba Algorithm 1 (+ Reddi et al., Loshchilov & Hutter)
                if name == "adamw":
                    p[k] *= 1 - lr * wd
                b1, b2 = h["beta1"], h["beta2"]
                s1[k] = b1 * s1[k] + (1 - b1) * g
                s2[k] = b2 * s2[k] + (1 - b2) * g * g
                if amsgrad:
                    s3[k] = np.maximum(s3[k], s2[k])
                m_hat = s1[k] / (1 - b1 ** t)
                v_hat = (s3[k] if amsgrad else s2[k]) / (1 - b2 ** t)
                p[k] -= lr * m_hat / (np.sqrt(v_hat) + eps)
            elif name == "adabound":  # Luolc/AdaBound adabound.py, step() without amsbound
                b1, b2 = h["beta1"], h["beta2"]
                s1[k] = s1[k] * b1 + (1 - b1) * g
                s2[k] = s2[k] * b2 + (1 - b2) * g * g
                denom = np.sqrt(s2[k]) + eps
                step_size = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                final_lr = h["final_lr"]
                lower = final_lr * (1 - 1 / (h["gamma"] * t + 1))
                upper = final_lr * (1 + 1 / (h["gamma"] * t))
                p[k] -= np.clip(np.full_like(denom, step_size) / denom, lower, upper) * s1[k]
    return p


@pytest.mark.parametrize("name,case", CASE_IDS)
def test_trajectory_matches_written_formulas(name, case):
    h = CASES[name][case]
    params, grads = _problem(np.float64, seed=1)
    opt = optim.get(name, **h)
    got = _run(opt, _copy(params), grads)
    want = _formula_run(name, opt.hyperparameters, params, grads)
    for k in params:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)
    # The update really moved the parameters (a test that a no-op optimizer would fail).
    assert not np.allclose(got["W1"], params["W1"])


def test_adabound_clipping_is_exercised():
    """In the third AdaBound case the bounds bind: the result differs from unclipped Adam-style steps."""
    h = optim.AdaBound(**CASES["adabound"][2]).hyperparameters
    params, grads = _problem(np.float64, seed=1)
    clipped = _formula_run("adabound", h, params, grads)
    loose = _formula_run("adabound", {**h, "final_lr": 1e6, "gamma": 1e-12}, params, grads)
    assert np.max(np.abs(clipped["W1"] - loose["W1"])) > 1e-3


def test_adam_pytorch_form_is_not_the_books_arithmetic():
    """The switch matters: the book's (default) Adam and PyTorch's give other trajectories (so both are tested)."""
    params, grads = _problem(np.float64, seed=2, steps=20)
    book = _run(optim.Adam(), _copy(params), grads)
    torch_form = _run(optim.Adam(eps_hat=False), _copy(params), grads)
    assert np.max(np.abs(book["W1"] - torch_form["W1"])) > 1e-5


def test_nesterov_forms_agree_at_constant_lr_and_differ_when_lr_changes():
    """The book's velocity form and PyTorch's buffer form are one algorithm while lr is constant (v = -lr * buf);
    a learning rate changed between updates acts differently (the velocity keeps the old rate)."""
    params, grads = _problem(np.float64, seed=2, steps=20)
    book, torch_form = optim.Nesterov(), optim.Nesterov(pytorch_form=True)
    p_book, p_torch = _run(book, _copy(params), grads[:10]), _run(torch_form, _copy(params), grads[:10])
    for k in params:
        np.testing.assert_allclose(p_book[k], p_torch[k], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(book.v[k], -0.01 * torch_form.buf[k], rtol=1e-12, atol=1e-16)
    book.lr = torch_form.lr = 0.1
    _run(book, p_book, grads[10:])
    _run(torch_form, p_torch, grads[10:])
    assert np.max(np.abs(p_book["W1"] - p_torch["W1"])) > 1e-3


# -- oracle 3: torch.optim ---------------------------------------------------------------------------------------

def _torch_optimizer(torch, name, h, tensors):
    o = torch.optim
    if name in ("sgd", "momentum", "nesterov"):
        mu = 0.0 if name == "sgd" else h["momentum"]
        return o.SGD(tensors, lr=h["lr"], momentum=mu, nesterov=name == "nesterov", weight_decay=h["weight_decay"])
    if name == "adagrad":
        return o.Adagrad(tensors, lr=h["lr"], eps=h["eps"], weight_decay=h["weight_decay"])
    if name == "rmsprop":
        return o.RMSprop(tensors, lr=h["lr"], alpha=h["decay_rate"], eps=h["eps"], weight_decay=h["weight_decay"])
    cls = o.AdamW if name == "adamw" else o.Adam
    return cls(tensors, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"], weight_decay=h["weight_decay"],
               amsgrad=h["amsgrad"], foreach=False)


def _pytorch_form(name, h):
    """The case runs in PyTorch's arithmetic: the switches say so explicitly (the book's forms are the defaults)."""
    if name == "adam":
        return h.get("eps_hat") is False
    if name == "nesterov":
        return h.get("pytorch_form") is True
    return name != "adabound"  # torch has no AdaBound


TORCH_IDS = [c for c in CASE_IDS if _pytorch_form(c[0], CASES[c[0]][c[1]])]


@pytest.mark.parametrize("name,case", TORCH_IDS)
def test_trajectory_matches_torch(name, case, dtype):
    torch = pytest.importorskip("torch")
    h = CASES[name][case]
    params, grads = _problem(dtype, seed=3)
    opt = optim.get(name, **h)
    got = _run(opt, _copy(params), grads)
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    topt = _torch_optimizer(torch, name, opt.hyperparameters, list(tensors.values()))
    for gd in grads:
        for k, tp in tensors.items():
            tp.grad = torch.from_numpy(gd[k].copy())
        topt.step()
    # torch evaluates the same formulas in another order (and Momentum keeps -v/lr as its buffer).
    tol = {"rtol": 1e-9, "atol": 1e-12} if dtype == np.float64 else {"rtol": 2e-4, "atol": 2e-5}
    for k in params:
        np.testing.assert_allclose(got[k], tensors[k].detach().numpy(), **tol, err_msg=k)


# -- dtypes, layouts, inputs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_float32_stays_float32_with_float64_grads(name):
    params, grads = _problem(np.float32, steps=3)
    opt = optim.get(name)
    for gd in grads:
        g64 = {k: g.astype(np.float64) for k, g in gd.items()}
        opt.update(params, g64)
    assert all(p.dtype == np.float32 for p in params.values())
    assert all(getattr(opt, s)[k].dtype == np.float32 for s in opt.state_names for k in params)


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_grads_not_modified_and_noncontiguous_param_updated_in_place(name, twin):
    rng = np.random.default_rng(4)
    base = rng.standard_normal((6, 8))
    original = base.copy()
    view = base.T  # not C-contiguous: must still be updated in place, in the caller's array
    expected = {"W": np.ascontiguousarray(view)}
    grads = [{"W": rng.standard_normal((8, 6))} for _ in range(3)]
    frozen = [g["W"].copy() for g in grads]
    _run(optim.get(name), {"W": view}, grads)
    _run(optim.get(name), expected, grads)
    np.testing.assert_allclose(base.T, expected["W"], rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(base - original)) > 1e-4  # the caller's array moved, not a copy
    for g, f in zip(grads, frozen, strict=True):
        np.testing.assert_array_equal(g["W"], f)


def test_defaults_are_the_briefs():
    assert optim.SGD().hyperparameters == {"lr": 0.01, "eps": 1e-7, "weight_decay": 0.0}
    assert optim.Momentum().hyperparameters == {"lr": 0.01, "momentum": 0.9, "eps": 1e-7, "weight_decay": 0.0}
    assert optim.Nesterov().hyperparameters == {"lr": 0.01, "momentum": 0.9, "eps": 1e-7, "weight_decay": 0.0,
                                                "pytorch_form": False}
    assert optim.AdaGrad().hyperparameters == {"lr": 0.01, "eps": 1e-7, "weight_decay": 0.0}
    assert optim.RMSprop().hyperparameters == {"lr": 0.01, "decay_rate": 0.99, "eps": 1e-7, "weight_decay": 0.0}
    adam = {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "amsgrad": False, "eps": 1e-7, "weight_decay": 0.0}
    assert optim.Adam().hyperparameters == {**adam, "eps_hat": True}
    # not the book's classes: PyTorch's form, fixed (no eps_hat hyperparameter)
    assert optim.AdamW().hyperparameters == {**adam, "weight_decay": 0.01}
    assert optim.AMSGrad().hyperparameters == {**adam, "amsgrad": True}
    assert optim.AdamW().eps_hat is False and optim.AMSGrad().eps_hat is False
    assert optim.AdaBound().hyperparameters == {"lr": 0.001, "final_lr": 0.1, "gamma": 1e-3, "beta1": 0.9,
                                                "beta2": 0.999, "eps": 1e-7, "weight_decay": 0.0}


def test_state_created_lazily_per_key():
    opt = optim.Adam()
    p = {"a": np.ones(3)}
    assert opt.m == {} and opt.v == {}
    opt.update(p, {"a": np.ones(3)})
    p["b"] = np.ones((2, 2), np.float32)  # a parameter that appears later gets its own state then
    opt.update(p, {"a": np.ones(3), "b": np.ones((2, 2))})
    assert set(opt.m) == {"a", "b"} and opt.m["b"].dtype == np.float32 and opt.m["b"].shape == (2, 2)
    # a's moments saw two steps, b's one: m_b = (1 - beta1) * 1
    np.testing.assert_allclose(opt.m["b"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(opt.m["a"], 0.1 * 0.9 + 0.1, rtol=1e-12)


# -- atomic failure ------------------------------------------------------------------------------------------------

def _snapshot(opt, params):
    return ({k: v.copy() for k, v in params.items()},
            {s: {k: a.copy() for k, a in getattr(opt, s).items()} for s in opt.state_names}, opt.iter)


def _assert_unchanged(opt, params, snap):
    p0, s0, it = snap
    assert opt.iter == it
    for k in params:
        np.testing.assert_array_equal(params[k], p0[k])
    for s in opt.state_names:
        assert set(getattr(opt, s)) == set(s0[s])
        for k, a in getattr(opt, s).items():
            np.testing.assert_array_equal(a, s0[s][k])


BAD_GRADS = {
    "wrong shape": (lambda g: np.zeros((3, 3)), ValueError, "grads['conv/W'] must be of shape"),
    "strings": (lambda g: np.full(g.shape, "x"), TypeError, "grads['conv/W'] must be a real numeric"),
    "object": (lambda g: {"not": "an array"}, ValueError, "grads['conv/W'] must be of shape"),
}


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
@pytest.mark.parametrize("bad", list(BAD_GRADS))
@pytest.mark.parametrize("warm", [0, 2], ids=["first-update", "after-2-updates"])
def test_bad_grad_in_the_middle_changes_nothing(name, bad, warm):
    params, grads = _problem(np.float32, steps=warm + 1)
    opt = optim.get(name)
    _run(opt, params, grads[:warm])
    make, exc, msg = BAD_GRADS[bad]
    g = dict(grads[warm])
    assert list(g).index("conv/W") == 2  # in the middle: W1 and b1 come before it, s after
    g["conv/W"] = make(g["conv/W"])
    snap = _snapshot(opt, params)
    with pytest.raises(exc, match=f"{type(opt).__name__}.update: " + msg.replace("[", r"\[").replace("]", r"\]")):
        opt.update(params, g)
    _assert_unchanged(opt, params, snap)


@pytest.mark.parametrize("name", ["momentum", "adam", "amsgrad"])
def test_other_bad_inputs_change_nothing(name):
    params, grads = _problem(np.float64, steps=2)
    opt = optim.get(name)
    opt.update(params, grads[0])
    snap = _snapshot(opt, params)
    missing = {k: v for k, v in grads[1].items() if k != "b1"}
    with pytest.raises(ValueError, match=r"grads must be the same keys as params.*missing \['b1'\]"):
        opt.update(params, missing)
    with pytest.raises(ValueError, match=r"unexpected \['zz'\]"):
        opt.update(params, {**grads[1], "zz": np.zeros(1)})
    readonly = _copy(params)
    readonly["s"].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\['s'\] must be writeable"):
        opt.update(readonly, grads[1])
    np.testing.assert_array_equal(readonly["W1"], params["W1"])
    ints = {**params, "b1": np.zeros(5, dtype=np.int64)}
    with pytest.raises(TypeError, match=r"params\['b1'\] must be a float32 or float64 ndarray"):
        opt.update(ints, grads[1])
    # A parameter whose shape or dtype changed since its state was made: refused before anything moves.
    changed = {**params, "s": np.zeros(2)}
    with pytest.raises(ValueError, match=r"state .*\['s'\] must be of shape \(2,\)"):
        opt.update(changed, {**grads[1], "s": np.zeros(2)})
    changed = {**params, "s": params["s"].astype(np.float32)}
    with pytest.raises(ValueError, match=r"and dtype float32"):
        opt.update(changed, grads[1])
    _assert_unchanged(opt, params, snap)
    with pytest.raises(TypeError, match="params and grads must be dicts of arrays"):
        opt.update(params["W1"], grads[1]["W1"])
    # lists are DLFS-2's convention (tests/optim/test_lists.py), but not mixed with a dict
    with pytest.raises(TypeError, match=r"params and grads must be both lists of arrays \(DLFS-2\) or both dicts"):
        opt.update([params["W1"]], grads[1])


# -- hyperparameters -----------------------------------------------------------------------------------------------

BAD_HYPER = [
    ("sgd", {"lr": 0}, ValueError, "lr must be a finite number > 0.0, got 0"),
    ("sgd", {"lr": -0.1}, ValueError, "lr must be a finite number > 0.0"),
    ("sgd", {"lr": float("nan")}, ValueError, "lr must be a finite number > 0.0, got nan"),
    ("sgd", {"lr": float("inf")}, ValueError, "lr must be a finite number"),
    ("sgd", {"lr": "0.1"}, TypeError, "lr must be a real number, got str"),
    ("sgd", {"lr": True}, TypeError, "lr must be a real number, got bool"),
    ("sgd", {"weight_decay": -1e-4}, ValueError, "weight_decay must be a finite number >= 0.0"),
    ("sgd", {"eps": 0.0}, ValueError, "eps must be a finite number > 0.0"),
    ("momentum", {"momentum": 1.0}, ValueError, r"momentum must be a finite number >= 0.0 and < 1.0, got 1.0"),
    ("momentum", {"momentum": -0.1}, ValueError, "momentum must be"),
    ("nesterov", {"momentum": 1.5}, ValueError, "momentum must be"),
    ("adagrad", {"eps": -1e-7}, ValueError, "eps must be"),
    ("rmsprop", {"decay_rate": 1.0}, ValueError, "decay_rate must be a finite number >= 0.0 and < 1.0"),
    ("adam", {"beta1": 1.0}, ValueError, "beta1 must be"),
    ("adam", {"beta2": -0.5}, ValueError, "beta2 must be"),
    ("adam", {"amsgrad": 1}, TypeError, "amsgrad must be a bool, got int 1"),
    ("adam", {"eps_hat": 1}, TypeError, "eps_hat must be a bool, got int 1"),
    ("adam", {"eps_hat": "False"}, TypeError, "eps_hat must be a bool, got str 'False'"),
    ("nesterov", {"pytorch_form": None}, TypeError, "pytorch_form must be a bool, got NoneType None"),
    ("adamw", {"weight_decay": float("nan")}, ValueError, "weight_decay must be"),
    ("amsgrad", {"lr": 0}, ValueError, "lr must be"),
    ("adabound", {"final_lr": 0.0}, ValueError, "final_lr must be a finite number > 0.0"),
    ("adabound", {"gamma": 0.0}, ValueError, "gamma must be a finite number > 0.0 and < 1.0"),
    ("adabound", {"gamma": 1.0}, ValueError, "gamma must be"),
]


@pytest.mark.parametrize("name,kwargs,exc,msg", BAD_HYPER)
def test_bad_hyperparameters_rejected_at_construction(name, kwargs, exc, msg):
    cls = optim.OPTIMIZERS[name]
    with pytest.raises(exc, match=f"^{cls.__name__}: {msg}"):
        cls(**kwargs)


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_repr_rebuilds_the_optimizer(name):
    opt = optim.get(name, lr=0.25)
    again = eval(repr(opt), {**vars(optim)})  # noqa: S307 -- our own repr, no user input
    assert type(again) is type(opt) and again.hyperparameters == opt.hyperparameters


def test_hyperparameters_accept_numpy_scalars_and_store_python_floats():
    opt = optim.Adam(lr=np.float32(0.5), beta1=np.float64(0.5), amsgrad=np.bool_(True), eps_hat=np.bool_(False))
    assert opt.lr == 0.5 and type(opt.lr) is float and opt.amsgrad is True and opt.eps_hat is False


@pytest.mark.parametrize("cls", [optim.AdamW, optim.AMSGrad])
def test_eps_hat_is_not_a_switch_of_the_classes_the_book_lacks(cls):
    with pytest.raises(TypeError, match="unexpected keyword argument 'eps_hat'"):
        cls(eps_hat=True)


# -- state dicts ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,case", CASE_IDS)
@pytest.mark.parametrize("via", ["dict", "npz"])
def test_stop_and_resume_is_bit_identical(name, case, via, dtype, tmp_path):
    h = CASES[name][case]
    params, grads = _problem(dtype, seed=5, steps=30)
    straight = _run(optim.get(name, **h), _copy(params), grads)

    first = optim.get(name, **h)
    resumed = _run(first, _copy(params), grads[:12])
    sd = first.state_dict()
    if via == "npz":
        checkpoint.save_arrays(tmp_path / "opt.npz", sd)
        sd = checkpoint.load_arrays(tmp_path / "opt.npz")
    # A fresh optimizer of the class built with other hyperparameters: load_state_dict must restore them.
    second = type(first)(lr=0.123)
    second.load_state_dict(sd)
    assert second.hyperparameters == first.hyperparameters
    assert second.iter == 12
    _run(second, resumed, grads[12:])
    for k in params:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
        assert resumed[k].dtype == dtype


def test_state_dict_is_a_flat_copy():
    params, grads = _problem(np.float32, steps=3)
    opt = optim.Adam(amsgrad=True)
    _run(opt, params, grads[:2])
    sd = opt.state_dict()
    assert str(sd["optimizer"]) == "Adam" and sd["iter"] == 2 and sd["iter"].dtype == np.int64
    assert sd["hyper/lr"].dtype == np.float64 and sd["hyper/amsgrad"].dtype == np.bool_
    assert set(k for k in sd if k.startswith("state/")) == {f"state/{s}/{k}" for s in ("m", "v", "v_max")
                                                            for k in SHAPES}
    assert sd["state/m/conv/W"].dtype == np.float32
    before = sd["state/m/W1"].copy()
    opt.update(params, grads[2])
    np.testing.assert_array_equal(sd["state/m/W1"], before)  # a copy, not the live array
    assert all(isinstance(v, np.ndarray) and not v.dtype.hasobject for v in sd.values())


def test_load_state_dict_switches_amsgrad_and_copies():
    params, grads = _problem(np.float64, steps=2)
    src = optim.Adam(amsgrad=True)
    _run(src, params, grads)
    dst = optim.Adam()
    sd = src.state_dict()
    dst.load_state_dict(sd)
    assert dst.amsgrad and dst.state_names == ("m", "v", "v_max") and set(dst.v_max) == set(SHAPES)
    sd["state/v_max/W1"][...] = -7.0
    assert not np.any(dst.v_max["W1"] == -7.0)
    back = optim.Adam(amsgrad=True)
    back.load_state_dict(optim.Adam().state_dict())
    assert not back.amsgrad and back.state_names == ("m", "v") and back.iter == 0


def test_load_state_dict_rejects_bad_input_and_changes_nothing():
    params, grads = _problem(np.float64, steps=2)
    opt = optim.Adam(lr=0.01)
    _run(opt, params, grads)
    good = opt.state_dict()
    snap = _snapshot(opt, params)
    where = r"^Adam\.load_state_dict: "
    bad = [
        (optim.SGD().state_dict(), ValueError, where + r"state_dict\['optimizer'\] must be 'Adam', got 'SGD'"),
        (optim.AdamW().state_dict(), ValueError, "must be 'Adam', got 'AdamW'"),
        ({k: v for k, v in good.items() if k != "hyper/beta2"}, ValueError, "hyperparameters in state_dict must be"),
        ({**good, "hyper/lr": np.array(-1.0)}, ValueError, where + "lr must be a finite number > 0.0"),
        ({k: v for k, v in good.items() if k != "iter"}, ValueError, "with an 'iter' entry"),
        ({**good, "iter": np.array(-3)}, ValueError, r"state_dict\['iter'\] must be >= 0"),
        ({**good, "state/q/W1": np.zeros(1)}, ValueError, "every key of state_dict must be"),
        ({**good, "state/m/W1": np.zeros((7, 5), np.int32)}, TypeError, "must be a float32 or float64 ndarray"),
        ({k: v for k, v in good.items() if k != "state/v/b1"}, ValueError, r"the 'state/v/\.\.\.' keys must be"),
        ({**good, "state/v/b1": np.zeros(4)}, ValueError, r"state_dict\['state/v/b1'\] must be of shape \(5,\)"),
        ([("optimizer", "Adam")], TypeError, "state_dict must be a dict"),
    ]
    for sd, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            opt.load_state_dict(sd)
        _assert_unchanged(opt, params, snap)
    assert opt.lr == 0.01


@pytest.mark.parametrize("name,switch,legacy", [("adam", "eps_hat", False), ("nesterov", "pytorch_form", True)])
def test_state_dict_without_the_new_switch_loads_as_it_was_trained(name, switch, legacy):
    """A state dict saved before eps_hat / pytorch_form existed was trained in PyTorch's form (fastnn's only form
    then): it loads with that form, so resuming continues the same trajectory."""
    params, grads = _problem(np.float64, seed=6, steps=8)
    straight = _run(optim.get(name, **{switch: legacy}), _copy(params), grads)
    first = optim.get(name, **{switch: legacy})
    resumed = _run(first, _copy(params), grads[:3])
    old = {k: v for k, v in first.state_dict().items() if k != f"hyper/{switch}"}
    second = optim.get(name)  # the new default form
    second.load_state_dict(old)
    assert getattr(second, switch) is legacy
    assert second.state_names == first.state_names
    _run(second, resumed, grads[3:])
    for k in params:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


def test_nesterov_state_names_follow_the_form():
    params, grads = _problem(np.float64, steps=2)
    book, torch_form = optim.Nesterov(), optim.Nesterov(pytorch_form=True)
    _run(book, _copy(params), grads)
    _run(torch_form, _copy(params), grads)
    assert book.state_names == ("v",) and set(book.v) == set(SHAPES)  # the book's Nesterov.v
    assert torch_form.state_names == ("buf",) and set(torch_form.buf) == set(SHAPES)
    assert {k for k in book.state_dict() if k.startswith("state/")} == {f"state/v/{k}" for k in SHAPES}
    switched = optim.Nesterov()
    switched.load_state_dict(torch_form.state_dict())  # loading switches the form and its state
    assert switched.pytorch_form is True and switched.state_names == ("buf",)
    np.testing.assert_array_equal(switched.buf["W1"], torch_form.buf["W1"])
    with pytest.raises(ValueError, match=r"every key of state_dict must be .*'state/<v>/<key>'"):
        optim.Nesterov().load_state_dict({**torch_form.state_dict(), "hyper/pytorch_form": np.array(False)})


def test_amsgrad_state_dict_must_say_amsgrad():
    sd = optim.AMSGrad().state_dict()
    sd["hyper/amsgrad"] = np.array(False)
    with pytest.raises(ValueError, match="AMSGrad.load_state_dict: amsgrad must be True for AMSGrad"):
        optim.AMSGrad().load_state_dict(sd)


def test_loaded_state_of_other_params_is_refused_at_update():
    params, grads = _problem(np.float64, steps=1)
    src = optim.Momentum()
    _run(src, params, grads)
    dst = optim.Momentum()
    dst.load_state_dict(src.state_dict())
    other = {**params, "W1": np.zeros((5, 7))}
    with pytest.raises(ValueError, match=r"Momentum.update: state v\['W1'\] must be of shape \(5, 7\)"):
        dst.update(other, {**grads[0], "W1": np.zeros((5, 7))})


# -- registry ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [("SGD", optim.SGD), ("sgd", optim.SGD), ("Momentum", optim.Momentum),
                                      ("NESTEROV", optim.Nesterov), ("AdaGrad", optim.AdaGrad),
                                      ("RMSprop", optim.RMSprop), ("Adam", optim.Adam), ("AdamW", optim.AdamW),
                                      ("AMSGrad", optim.AMSGrad), ("adabound", optim.AdaBound)])
def test_get_by_name_any_case(name, cls):
    opt = optim.get(name, lr=0.5)
    assert type(opt) is cls and opt.lr == 0.5


def test_get_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="fastnn.optim.get: name must be one of 'sgd', 'momentum', 'nesterov', "
                                         "'adagrad', 'rmsprop', 'adam', 'adamw', 'amsgrad', 'adabound'.*got 'adm'"):
        optim.get("adm")
    with pytest.raises(TypeError, match="name must be a str, got type"):
        optim.get(optim.Adam)
    with pytest.raises(TypeError, match="unexpected keyword argument 'momentum'"):
        optim.get("adam", momentum=0.9)

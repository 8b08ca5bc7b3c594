"""fastnn.compat.numpy_ml against numpy-ml's update formulas, a 30-step training twin, the API, bad input; its
schedulers and their string / dict forms; numpy-ml's own layers trained with fastnn's optimizers (numpy-ml from
the ``test`` extra; skipped without it)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastnn import backend
from fastnn.compat import numpy_ml as M
from tests.conftest import TOL, assert_close


class NumpyMLOracle:
    """numpy-ml's ``update`` bodies (neural_nets/optimizers/optimizers.py) with a constant learning rate."""

    def __init__(self, kind, lr, clip_norm=None, **h):
        self.kind, self.lr, self.clip_norm, self.h, self.cache = kind, lr, clip_norm, h, {}

    def update(self, param, param_grad, name):
        C, lr, h = self.cache, self.lr, self.h
        t = np.inf if self.clip_norm is None else self.clip_norm
        if np.linalg.norm(param_grad) > t:
            param_grad = param_grad * t / np.linalg.norm(param_grad)
        if self.kind == "SGD":
            C.setdefault(name, np.zeros_like(param_grad))
            update = h["momentum"] * C[name] + lr * param_grad
            C[name] = update
            return param - update
        if self.kind == "AdaGrad":
            C.setdefault(name, np.zeros_like(param_grad))
            C[name] += param_grad**2
            return param - lr * param_grad / (np.sqrt(C[name]) + h["eps"])
        if self.kind == "RMSProp":
            C.setdefault(name, np.zeros_like(param_grad))
            C[name] = h["decay"] * C[name] + (1 - h["decay"]) * param_grad**2
            return param - lr * param_grad / (np.sqrt(C[name]) + h["eps"])
        d1, d2 = h["decay1"], h["decay2"]
        e = C.setdefault(name, {"t": 0, "mean": np.zeros_like(param_grad), "var": np.zeros_like(param_grad)})
        e["t"] += 1
        e["var"] = d2 * e["var"] + (1 - d2) * param_grad**2
        e["mean"] = d1 * e["mean"] + (1 - d1) * param_grad
        v_hat, m_hat = e["var"] / (1 - d2 ** e["t"]), e["mean"] / (1 - d1 ** e["t"])
        return param - lr * m_hat / (np.sqrt(v_hat) + h["eps"])


CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.5, clip_norm=1.0)),
    ("AdaGrad", dict(lr=0.05, eps=1e-7)),
    ("AdaGrad", dict(lr=0.05, eps=1e-6, clip_norm=0.5)),
    ("RMSProp", dict(lr=0.01, decay=0.9, eps=1e-7)),
    ("RMSProp", dict(lr=0.01, decay=0.99, eps=1e-6, clip_norm=2.0)),
    ("Adam", dict(lr=0.01, decay1=0.9, decay2=0.999, eps=1e-7)),
    ("Adam", dict(lr=0.01, decay1=0.8, decay2=0.99, eps=1e-6, clip_norm=1.0)),
]
IDS = [f"{k}-{i}" for i, (k, _) in enumerate(CASES)]
DEFAULTS = {"SGD": dict(momentum=0.0), "AdaGrad": dict(eps=1e-7), "RMSProp": dict(decay=0.9, eps=1e-7),
            "Adam": dict(decay1=0.9, decay2=0.999, eps=1e-7)}


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=IDS)
def test_matches_numpy_ml_formulas(kind, kw, dtype):
    """30 updates of two named parameters against numpy-ml's own update code (same dtype in, same dtype out)."""
    ours = getattr(M, kind)(**kw)
    h = {**DEFAULTS[kind], **{k: v for k, v in kw.items() if k not in ("lr", "clip_norm")}}
    oracle = NumpyMLOracle(kind, kw["lr"], kw.get("clip_norm"), **h)
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((7, 5)).astype(dtype), "b": rng.standard_normal(5).astype(dtype)}
    theirs = {k: v.copy() for k, v in params.items()}
    for _ in range(30):
        for name in params:
            g = rng.standard_normal(params[name].shape).astype(dtype)
            before = params[name].copy()
            new = ours.update(params[name], g, name)
            np.testing.assert_array_equal(params[name], before)  # numpy-ml returns a new array
            params[name] = new
            theirs[name] = oracle.update(theirs[name], g, name)
            assert_close(params[name], theirs[name])
        ours.step()
    if kind == "Adam":
        for name in params:
            assert ours.cache[name]["t"] == 30
            assert_close(ours.cache[name]["mean"], oracle.cache[name]["mean"])
            assert_close(ours.cache[name]["var"], oracle.cache[name]["var"])
    else:
        for name in params:
            assert_close(ours.cache[name], oracle.cache[name])


@pytest.mark.parametrize("kind", ["SGD", "AdaGrad", "RMSProp", "Adam"])
def test_defaults_and_hyperparameters(kind):
    opt = getattr(M, kind)()
    expected = {"SGD": {"id": "SGD", "lr": 0.01, "momentum": 0.0, "clip_norm": None,
                        "lr_scheduler": "ConstantScheduler(lr=0.01)"},
                "AdaGrad": {"id": "AdaGrad", "lr": 0.01, "eps": 1e-7, "clip_norm": None,
                            "lr_scheduler": "ConstantScheduler(lr=0.01)"},
                "RMSProp": {"id": "RMSProp", "lr": 0.001, "eps": 1e-7, "decay": 0.9, "clip_norm": None,
                            "lr_scheduler": "ConstantScheduler(lr=0.001)"},
                "Adam": {"id": "Adam", "lr": 0.001, "eps": 1e-7, "decay1": 0.9, "decay2": 0.999, "clip_norm": None,
                         "lr_scheduler": "ConstantScheduler(lr=0.001)"}}[kind]
    assert opt.hyperparameters == expected
    assert opt.hyperparams is opt.hyperparameters
    assert str(opt).startswith(f"{kind}(lr=") and "lr_scheduler=ConstantScheduler" in str(opt)
    assert opt.cache == {} and opt.cur_step == 0


def test_scheduler_step_copy_and_set_params():
    seen = []

    def schedule(step, cur_loss):
        seen.append((step, cur_loss))
        return 0.1 / (1 + step)

    opt = M.SGD(lr=0.1, lr_scheduler=schedule)
    assert opt.hyperparameters["lr_scheduler"] == str(schedule)
    p = np.ones(3)
    p = opt(p, np.ones(3), "W", cur_loss=2.5)  # __call__ is update
    opt.step()
    p = opt.update(p, np.ones(3), "W", 1.5)
    np.testing.assert_allclose(p, 1 - 0.1 - 0.05)
    assert seen == [(0, 2.5), (1, 1.5)]
    clone = opt.copy()
    clone.update(p, np.ones(3), "W")
    np.testing.assert_allclose(opt.cache["W"], 0.05)  # the copy has its own cache
    opt.reset_step()
    assert opt.cur_step == 0
    opt.set_params({"momentum": 0.5, "unknown": 1}, {"W": np.zeros(3), "V": np.ones(3)})
    assert opt.hyperparameters["momentum"] == 0.5 and "unknown" not in opt.hyperparameters
    assert set(opt.cache) == {"W"} and not opt.cache["W"].any()


def test_float32_stays_float32_and_input_untouched():
    for kind in ("SGD", "AdaGrad", "RMSProp", "Adam"):
        opt = getattr(M, kind)(lr=0.01)
        p = np.ones((3, 2), np.float32)
        g = np.full((3, 2), 0.5)  # float64 gradient
        new = opt.update(p, g, "W")
        assert new.dtype == np.float32 and (p == 1).all() and (new < 1).all()


# ------------------------------------------------------------------------------------------------ training twin


def _train(opt, X, y, dtype, steps=30):
    """A 2-layer MLP (affine-relu-affine-softmax) trained full batch with a numpy-ml optimizer."""
    rng = np.random.default_rng(1)
    p = {"W1": (0.3 * rng.standard_normal((X.shape[1], 16))).astype(dtype), "b1": np.zeros(16, dtype),
         "W2": (0.3 * rng.standard_normal((16, 4))).astype(dtype), "b2": np.zeros(4, dtype)}
    k = backend.ops  # the same backend as the optimizer: fastnn.kernels, or fastnn.reference inside using()
    losses = []
    for _ in range(steps):
        a = X @ p["W1"] + p["b1"]
        h = k.relu_forward(a)
        scores = h @ p["W2"] + p["b2"]
        loss, probs = k.softmax_cross_entropy_forward(scores, y)
        losses.append(float(loss))
        ds = k.softmax_cross_entropy_backward(probs, y)
        grads = {"W2": h.T @ ds, "b2": ds.sum(0)}
        da = k.relu_backward(ds @ p["W2"].T, a)
        grads.update(W1=X.T @ da, b1=da.sum(0))
        for name in p:
            p[name] = opt.update(p[name], grads[name], name, cur_loss=loss)
            assert p[name].dtype == dtype
        opt.step()
    return np.array(losses)


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=IDS)
def test_training_matches_reference_twin(kind, kw, dtype, twin):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((64, 10)).astype(dtype)
    y = rng.integers(0, 4, 64)
    fast = _train(getattr(M, kind)(**kw), X, y, dtype)
    with backend.using("reference"):
        slow = _train(getattr(M, kind)(**kw), X, y, dtype)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else TOL[dtype]  # 30 steps of float32 rounding
    np.testing.assert_allclose(fast, slow, **tol)
    assert fast[-1] < 0.9 * fast[0]


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("make", "exc", "match"), [
    (lambda: M.SGD(lr=0.0), ValueError, "SGD: lr must be a finite number > 0"),
    (lambda: M.SGD(momentum=1.0), ValueError, "SGD: momentum must be"),
    (lambda: M.SGD(clip_norm=-1.0), ValueError, "SGD: clip_norm must be"),
    (lambda: M.AdaGrad(eps=0.0), ValueError, "AdaGrad: eps must be"),
    (lambda: M.RMSProp(decay=1.5), ValueError, "RMSProp: decay must be"),
    (lambda: M.Adam(decay1=1.0), ValueError, "Adam: decay1 must be"),
    (lambda: M.Adam(decay2=-0.1), ValueError, "Adam: decay2 must be"),
    (lambda: M.Adam(lr="0.1"), TypeError, "Adam: lr must be a real number"),
    (lambda: M.Adam(lr_scheduler=0.1), TypeError, "Adam: lr_scheduler must be None, a scheduler object"),
])
def test_bad_hyperparameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("kind", ["SGD", "AdaGrad", "RMSProp", "Adam"])
def test_bad_update_arguments_write_nothing(kind):
    opt = getattr(M, kind)(momentum=0.9) if kind == "SGD" else getattr(M, kind)()
    p = np.ones(3)
    opt.update(p, np.ones(3), "W")
    snapshot = {k: (dict(v) if isinstance(v, dict) else v.copy()) for k, v in opt.cache.items()}
    with pytest.raises(ValueError, match=rf"{kind}.update: param_grad must be of shape \(3,\)"):
        opt.update(p, np.ones(4), "W")
    with pytest.raises(TypeError, match=rf"{kind}.update: param must be"):
        opt.update(np.ones(3, complex), np.ones(3), "W")
    bad = getattr(M, kind)(lr_scheduler=lambda step, loss: -1.0)
    with pytest.raises(ValueError, match=rf"{kind}.update: learning rate from lr_scheduler must be"):
        bad.update(p, np.ones(3), "W")
    for k, v in snapshot.items():
        if isinstance(v, dict):
            assert opt.cache[k]["t"] == v["t"]
        else:
            np.testing.assert_array_equal(opt.cache[k], v)


# ------------------------------------------------------------------------------------------------ schedulers


def _king_oracle(losses, initial_lr, patience, decay):
    """numpy-ml's KingScheduler (schedulers.py) step by step: the slope's P(< 0) from an OLS fit by least squares."""
    def p_decreasing(h):
        n = len(h)
        X = np.c_[np.ones(n), np.arange(n)]
        (intercept, slope), *_ = np.linalg.lstsq(X, h, rcond=None)
        var = np.sum((h - X @ [intercept, slope]) ** 2) / (n - 2)
        z = (0 - slope) / np.sqrt(12 * var / (n**3 - n) + np.finfo(float).eps)
        return (1 + math.erf(z / np.sqrt(2))) / 2

    def steps_without_decrease(h):
        i = max(0, len(h) - patience - 1)
        return len(h) - i if p_decreasing(h[i:]) < 0.51 else 0

    lr, history, out = initial_lr, [], []
    for loss in losses:
        history.append(loss)
        if len(history) >= patience:
            history = history[-math.ceil(1.1 * (patience + 1)):]
            h = np.array(history)
            if steps_without_decrease(h) > patience and steps_without_decrease(h[h <= np.quantile(h, 0.9)]) > patience:
                lr *= decay
        out.append(lr)
    return np.array(out)


def _losses(n=200):
    """A loss that falls for 60 steps, then wanders around a plateau (KingScheduler must hold, then decay)."""
    rng = np.random.default_rng(3)
    return np.concatenate([np.linspace(3.0, 1.0, 60), 1.0 + 0.05 * rng.standard_normal(n - 60)]) + \
        0.01 * rng.standard_normal(n)


def _rates(sched, steps=range(1, 200), losses=None):
    losses = _losses(len(steps)) if losses is None else losses
    return np.array([float(sched(step, loss)) for step, loss in zip(steps, losses, strict=True)])


SCHEDULERS = [
    (M.ConstantScheduler, dict(lr=0.02), lambda t: np.full(len(t), 0.02)),
    (M.ExponentialScheduler, dict(initial_lr=0.1, stage_length=30, staircase=False, decay=0.5),
     lambda t: 0.1 * 0.5 ** (t / 30)),
    (M.ExponentialScheduler, dict(initial_lr=0.1, stage_length=30, staircase=True, decay=0.5),
     lambda t: 0.1 * 0.5 ** np.floor(t / 30)),
    (M.NoamScheduler, dict(model_dim=64, scale_factor=2, warmup_steps=50),
     lambda t: 2 * 64**-0.5 * np.minimum(t**-0.5, t * 50**-1.5)),
    (M.KingScheduler, dict(initial_lr=0.1, patience=10, decay=0.5),
     lambda t: _king_oracle(_losses(len(t)), 0.1, 10, 0.5)),
]
SCHED_IDS = ["constant", "exponential", "exponential-staircase", "noam", "king"]


@pytest.mark.parametrize(("cls", "kw", "formula"), SCHEDULERS, ids=SCHED_IDS)
def test_scheduler_formulas(cls, kw, formula):
    """199 steps of each schedule against numpy-ml's formula (KingScheduler: on a falling, then flat loss)."""
    rates = _rates(cls(**kw))
    np.testing.assert_allclose(rates, formula(np.arange(1, 200)), rtol=1e-14, atol=0)
    if cls is M.KingScheduler:  # holds while the loss falls, decays on the plateau
        assert (rates[:60] == 0.1).all() and rates[-1] <= 0.1 * 0.5**2
    assert cls(**kw).hyperparameters == {"id": "StepScheduler" if cls is M.ExponentialScheduler else cls.__name__,
                                         **kw}


@pytest.mark.parametrize(("cls", "kw", "formula"), SCHEDULERS, ids=SCHED_IDS)
def test_lr_scheduler_forms(cls, kw, formula):
    """Object, string (str of the object), dict (a layer summary's form) and callable give the same rates."""
    expected = _rates(cls(**kw))
    text = str(cls(**kw))
    # the str form round-trips, including the keywords numpy-ml's parser drops (initial_lr, stage_length, ...)
    assert text == f"{cls.__name__}(" + ", ".join(f"{k}={v}" for k, v in kw.items()) + ")"
    forms = [cls(**kw), text, text.lower(), {"hyperparameters": cls(**kw).hyperparameters}, cls(**kw).copy()]
    for form in forms:
        opt = M.SGD(lr=0.5, lr_scheduler=form)
        assert isinstance(opt.lr_scheduler, cls), form
        assert opt.hyperparameters["lr"] == 0.5 and opt.hyperparameters["lr_scheduler"] == text
        np.testing.assert_array_equal(_rates(opt.lr_scheduler), expected)
    # the rate the optimizer uses is the scheduler's, not lr
    opt = M.SGD(lr=0.5, lr_scheduler=text)
    opt.step()
    np.testing.assert_allclose(opt.update(np.zeros(2), np.ones(2), "W", cur_loss=1.0), -cls(**kw)(1, 1.0), rtol=1e-15)


def test_lr_scheduler_string_variants():
    """numpy-ml's matching: the name by substring in any case, bare names, literals in any case, unknown keys."""
    assert M.Adam(lr_scheduler="ConstantScheduler").lr_scheduler(0) == 0.01  # the scheduler's default, not Adam's lr
    assert M.Adam(lr_scheduler="constant(LR=0.3)").lr_scheduler(0) == 0.3
    s = M.Adam(lr_scheduler="exponentialscheduler( initial_lr = 1e-1 , staircase = TRUE, stage_length=10, )")
    assert str(s.lr_scheduler) == "ExponentialScheduler(initial_lr=0.1, stage_length=10, staircase=True, decay=0.1)"
    assert s.lr_scheduler(19) == pytest.approx(0.01, rel=1e-15)
    # keywords a scheduler does not take are ignored, as numpy-ml's constructors (**kwargs) do
    assert str(M.Adam(lr_scheduler="KingScheduler(patience=5, lr=0.5)").lr_scheduler) == \
        "KingScheduler(initial_lr=0.01, patience=5, decay=0.99)"
    # "StepScheduler" is the id numpy-ml's ExponentialScheduler reports; "ExponentialScheduler" is taken as well
    d = {"hyperparameters": {"id": "ExponentialScheduler", "initial_lr": 0.2, "decay": 0.5, "stage_length": 1}}
    assert M.SGD(lr_scheduler=d).lr_scheduler(2) == pytest.approx(0.05, rel=1e-15)


def test_lr_scheduler_callable_and_foreign_objects():
    """A numpy-ml scheduler object is a callable (step, cur_loss) -> lr and is used as it is."""
    class Halving:
        def __call__(self, step=None, cur_loss=None):
            return 0.4 / 2**step

        def __str__(self):
            return "Halving()"

    opt = M.Adam(lr_scheduler=Halving())
    assert opt.hyperparameters["lr_scheduler"] == "Halving()" and "lr_scheduler=Halving()" in str(opt)
    assert opt.lr_scheduler(3) == 0.05


def test_set_params_lr_scheduler():
    opt = M.SGD(lr=0.1)
    opt.set_params({"lr_scheduler": "ConstantScheduler(lr=0.25)", "momentum": 0.5})
    assert opt.hyperparameters["lr_scheduler"] == "ConstantScheduler(lr=0.25)"  # the value given, as numpy-ml
    np.testing.assert_allclose(opt.update(np.zeros(2), np.ones(2), "W"), -0.25)
    before = dict(opt.hyperparameters)
    with pytest.raises(ValueError, match=r"SGD.set_params: lr_scheduler must be a string naming"):
        opt.set_params({"momentum": 0.9, "lr_scheduler": "Cosine(lr=1)"})
    with pytest.raises(TypeError, match=r"SGD.set_params: lr_scheduler must be None, a scheduler"):
        opt.set_params({"lr_scheduler": None})
    assert opt.hyperparameters == before and opt.lr_scheduler(0) == 0.25  # nothing was set


def test_scheduler_set_params_and_copy():
    """set_params changes the rate (numpy-ml's changes only the dict); copy() carries KingScheduler's history."""
    s = M.ExponentialScheduler()
    s.set_params({"initial_lr": 0.2, "decay": 0.5, "stage_length": 1, "bogus": 1})
    assert s(3) == pytest.approx(0.025, rel=1e-15) and "bogus" not in s.hyperparameters
    with pytest.raises(ValueError, match="ExponentialScheduler: decay must be a finite number > 0"):
        s.set_params({"initial_lr": 0.3, "decay": -1.0})
    assert s.hyperparameters["initial_lr"] == 0.2 and s.initial_lr == 0.2
    king = M.KingScheduler(initial_lr=0.1, patience=10, decay=0.5)
    losses = _losses()
    for step, loss in enumerate(losses[:150]):
        king(step, loss)
    twin = king.copy()
    np.testing.assert_array_equal([king(s_, x) for s_, x in enumerate(losses[150:])],
                                  [twin(s_, x) for s_, x in enumerate(losses[150:])])
    king.set_params({"patience": 20})
    assert king.max_history == 24


@pytest.mark.parametrize(("spec", "exc", "match"), [
    (0.01, TypeError, r"Adam: lr_scheduler must be None, a scheduler object or callable .* got 0.01"),
    ([0.1], TypeError, r"Adam: lr_scheduler must be None, .* got \[0.1\]"),
    ("CosineScheduler(lr=0.1)", ValueError, r"Adam: lr_scheduler must be a string naming ConstantScheduler"),
    ("ConstantScheduler(0.1)", ValueError, r"Adam: lr_scheduler must be a string 'Name\(key=value, ...\)' of keyw"),
    ("ConstantScheduler(lr=0.1", ValueError, r"Adam: lr_scheduler must be .* with its closing parenthesis"),
    ("ConstantScheduler(lr=fast)", ValueError, r"Adam: lr_scheduler must be a string whose values are Python lit"),
    ({"id": "ConstantScheduler", "lr": 0.1}, ValueError, r"Adam: lr_scheduler must be a dict \{'hyperparameters'"),
    ({"hyperparameters": {"id": "CosineScheduler"}}, ValueError, r"Adam: lr_scheduler must be a dict"),
    ("ConstantScheduler(lr=-1)", ValueError, r"ConstantScheduler: lr must be a finite number > 0, got -1"),
    ("ExponentialScheduler(stage_length=0)", ValueError, r"ExponentialScheduler: stage_length must be a finite"),
    ("ExponentialScheduler(staircase=1)", TypeError, r"ExponentialScheduler: staircase must be True or False"),
    ("NoamScheduler(warmup_steps=0)", ValueError, r"NoamScheduler: warmup_steps must be a finite number > 0"),
    ("KingScheduler(patience=2)", ValueError, r"KingScheduler: patience must be >= 3, got 2"),
])
def test_bad_lr_scheduler(spec, exc, match):
    with pytest.raises(exc, match=match):
        M.Adam(lr_scheduler=spec)


def test_noam_scheduler_needs_a_step():
    opt = M.Adam(lr_scheduler="NoamScheduler()")
    with pytest.raises(ValueError, match=r"NoamScheduler: step must be >= 1 .*, got 0"):
        opt.update(np.ones(2), np.ones(2), "W")
    opt.step()
    lr = 512**-0.5 * 4000**-1.5  # Adam's first step is lr * g / (|g| + eps)
    np.testing.assert_allclose(opt.update(np.ones(2), np.ones(2), "W"), 1 - lr / (1 + 1e-7), rtol=1e-15)


def test_king_scheduler_needs_the_loss():
    opt = M.Adam(lr_scheduler="KingScheduler(patience=5)")
    with pytest.raises(TypeError, match=r"KingScheduler: cur_loss must be a real number \(the loss of this step\)"):
        opt.update(np.ones(2), np.ones(2), "W")  # no cur_loss
    assert opt.cache == {}


# ------------------------------------------------------------------------------------------------ numpy-ml interop

_FAKE_OPT = "from abc import ABC\n\n\nclass OptimizerBase(ABC):\n    pass\n"
_FAKE_SCHED = "from abc import ABC\n\n\nclass SchedulerBase(ABC):\n    pass\n"


@pytest.mark.parametrize("numpy_ml_first", [False, True], ids=["fastnn-first", "numpy-ml-first"])
def test_registration_with_numpy_ml_abcs(tmp_path, numpy_ml_first):
    """In a fresh process, with a stand-in numpy_ml package (numpy-ml's module names and ABCs): fastnn does not
    import numpy_ml, and its objects pass numpy-ml's isinstance checks whichever was imported first."""
    for sub, text in [("optimizers", _FAKE_OPT), ("schedulers", _FAKE_SCHED)]:
        d = tmp_path / "numpy_ml" / "neural_nets" / sub
        d.mkdir(parents=True)
        (d / "__init__.py").write_text(f"from .{sub} import *\n")
        (d / f"{sub}.py").write_text(text)
    (tmp_path / "numpy_ml" / "__init__.py").write_text("from . import neural_nets\n")
    (tmp_path / "numpy_ml" / "neural_nets" / "__init__.py").write_text("from . import optimizers, schedulers\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        if {numpy_ml_first}:
            import numpy_ml
        import fastnn.compat.numpy_ml as M
        assert {numpy_ml_first} or "numpy_ml" not in sys.modules
        opt, sched = M.Adam(), M.KingScheduler()   # made before numpy-ml is imported
        from numpy_ml.neural_nets.optimizers import OptimizerBase
        from numpy_ml.neural_nets.schedulers import SchedulerBase
        import numpy_ml.neural_nets.optimizers.optimizers as mod
        assert type(mod.__loader__).__name__ == "SourceFileLoader" and mod.__spec__.loader is mod.__loader__
        for obj in (opt, M.SGD(), M.AdaGrad(), M.RMSProp()):
            assert isinstance(obj, OptimizerBase) and not isinstance(obj, SchedulerBase)
        for obj in (sched, M.ConstantScheduler(), M.ExponentialScheduler(), M.NoamScheduler()):
            assert isinstance(obj, SchedulerBase) and not isinstance(obj, OptimizerBase)
        assert not isinstance(object(), OptimizerBase)
        import importlib
        importlib.reload(M)                       # still one watcher
        assert sum(type(f).__name__ == "_NumpyMLWatcher" for f in sys.meta_path) == 1
        print("ok")
        """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def _builds_from_dicts(nml) -> bool:
    """Whether numpy-ml's initializers build objects from dicts (its head does; PyPI's 0.1.2 returns None)."""
    return nml.initializers.SchedulerInitializer({"hyperparameters": {"id": "ConstantScheduler", "lr": 0.3}},
                                                 lr=None)() is not None


def test_numpy_ml_accepts_fastnn_objects(nml):
    from numpy_ml.neural_nets.initializers import OptimizerInitializer, SchedulerInitializer
    from numpy_ml.neural_nets.layers import FullyConnected

    opt = M.Adam(lr=0.01)
    layer = FullyConnected(4, optimizer=opt)
    assert layer.optimizer is opt and OptimizerInitializer(opt)() is opt
    king = M.KingScheduler(patience=5)
    assert SchedulerInitializer(king, lr=0.1)() is king
    theirs = nml.optimizers.SGD(lr=0.1, lr_scheduler=M.ExponentialScheduler(initial_lr=0.2, stage_length=1, decay=0.5))
    np.testing.assert_allclose(theirs.update(np.zeros(2), np.ones(2), "W"), -0.2)
    # and numpy-ml's scheduler objects in fastnn's optimizers
    ours = M.SGD(lr=0.1, lr_scheduler=nml.schedulers.ExponentialScheduler(initial_lr=0.2, stage_length=1, decay=0.5))
    ours.step()
    np.testing.assert_allclose(ours.update(np.zeros(2), np.ones(2), "W"), -0.1)


def _numpy_ml_net(nml, make_opt, steps=20):
    """numpy-ml's FullyConnected(16, ReLU) -> FullyConnected(3) -> softmax, CrossEntropy, trained full batch."""
    from numpy_ml.neural_nets.layers import FullyConnected, Softmax
    from numpy_ml.neural_nets.losses import CrossEntropy

    rng = np.random.default_rng(5)
    X = rng.standard_normal((32, 6))
    Y = np.eye(3)[rng.integers(0, 3, 32)]
    fc1, fc2 = FullyConnected(16, act_fn="ReLU", optimizer=make_opt()), FullyConnected(3, optimizer=make_opt())
    fc2.forward(fc1.forward(X))  # builds the parameters (float64, numpy-ml's default); replaced by the same values
    for layer, shape in ((fc1, (6, 16)), (fc2, (16, 3))):
        layer.flush_gradients()
        layer.parameters = {"W": 0.5 * rng.standard_normal(shape), "b": 0.1 * rng.standard_normal((1, shape[1]))}
    softmax, loss_fn, losses = Softmax(), CrossEntropy(), []
    for _ in range(steps):
        y_pred = softmax.forward(fc2.forward(fc1.forward(X)), retain_derived=False)
        losses.append(loss_fn(Y, y_pred))
        fc1.backward(fc2.backward(loss_fn.grad(Y, y_pred)))
        fc2.update(losses[-1])
        fc1.update(losses[-1])
    return losses, [layer.parameters[k] for layer in (fc1, fc2) for k in ("W", "b")], (fc1, fc2)


NET_CASES = [(kind, kw, None) for kind, kw in CASES] + [
    ("SGD", dict(lr=0.05, momentum=0.5), ("ExponentialScheduler", dict(initial_lr=0.1, stage_length=5, decay=0.5))),
    ("Adam", dict(lr=0.01), ("NoamScheduler", dict(model_dim=16, warmup_steps=5))),
    ("RMSProp", dict(lr=0.01), ("KingScheduler", dict(initial_lr=0.2, patience=4, decay=0.5))),
]


@pytest.mark.parametrize(("kind", "kw", "sched"), NET_CASES, ids=IDS + ["SGD-exp", "Adam-noam", "RMSProp-king"])
def test_numpy_ml_net_trains_as_with_numpy_ml_optimizer(nml, kind, kw, sched):
    """A numpy-ml net trained 20 steps with fastnn's optimizer ends where numpy-ml's own optimizer takes it.

    A scheduler is given to fastnn as a string and to numpy-ml as its object (numpy-ml's string parser drops
    ``initial_lr``, ``model_dim``, ...: see the module notes)."""
    ours_kw, theirs_kw, name = dict(kw), dict(kw), None
    if sched is not None:  # one scheduler per optimizer (a KingScheduler records every loss it is given)
        name, args = sched
        ours_kw["lr_scheduler"] = f"{name}(" + ", ".join(f"{k}={v}" for k, v in args.items()) + ")"
    losses, params, (fc1, _) = _numpy_ml_net(nml, lambda: getattr(M, kind)(**ours_kw))
    ref_losses, ref_params, _ = _numpy_ml_net(nml, lambda: getattr(nml.optimizers, kind)(
        **theirs_kw, **({} if sched is None else {"lr_scheduler": getattr(nml.schedulers, name)(**args)})))
    assert isinstance(fc1.optimizer, getattr(M, kind)) and fc1.optimizer.cur_step == 20
    # measured: losses within 1.1e-13 relative, parameters within 4e-14 of their largest entry (SGD with momentum
    # 0.9: the kernel's fused multiply-adds round differently; the other cases agree to ~5e-16)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12, atol=0)
    assert losses[-1] < 0.9 * losses[0]
    for p, q in zip(params, ref_params, strict=True):
        assert p.dtype == q.dtype == np.float64
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-12 * np.abs(q).max())
    if name == "KingScheduler":
        assert fc1.optimizer.lr_scheduler.current_lr == args["initial_lr"] / 4  # it did decay (twice)
    # (numpy-ml cannot read back an ExponentialScheduler's str, see the module notes; 0.1.2 builds nothing from dicts)
    if sched is None and _builds_from_dicts(nml):
        # the layer's summary (optimizer cache + hyperparameters) rebuilds a numpy-ml optimizer with the same settings
        rebuilt = nml.initializers.OptimizerInitializer(fc1.summary()["hyperparameters"]["optimizer"])()
        assert type(rebuilt).__name__ == kind and rebuilt.hyperparameters == fc1.optimizer.hyperparameters


@pytest.mark.parametrize(("cls", "kw", "formula"), SCHEDULERS, ids=SCHED_IDS)
def test_schedulers_match_numpy_ml(nml, cls, kw, formula):
    """Each scheduler's rates and str against numpy-ml's object with the same arguments."""
    theirs = getattr(nml.schedulers, cls.__name__)(**kw)
    assert str(cls(**kw)) == str(theirs) and cls(**kw).hyperparameters == theirs.hyperparameters
    np.testing.assert_allclose(_rates(cls(**kw)), _rates(theirs), rtol=1e-15, atol=0)


def test_scheduler_strings_against_numpy_ml(nml):
    """Strings numpy-ml reads correctly give its rates; the keywords it drops are the documented difference."""
    from numpy_ml.neural_nets.initializers import SchedulerInitializer

    for text in ["ConstantScheduler(lr=0.02)", "constantscheduler(lr=0.5)", "KingScheduler(patience=10, decay=0.5)",
                 "ExponentialScheduler(decay=0.5)", "NoamScheduler()"]:
        np.testing.assert_allclose(_rates(M.Adam(lr_scheduler=text).lr_scheduler),
                                   _rates(SchedulerInitializer(text, lr=None)()), rtol=1e-15, atol=0)
    text = "ExponentialScheduler(initial_lr=0.2, stage_length=5, decay=0.5)"
    assert str(SchedulerInitializer(text, lr=None)()) == \
        "ExponentialScheduler(initial_lr=0.01, stage_length=500, staircase=False, decay=0.5)"  # numpy-ml's reading
    assert str(M.Adam(lr_scheduler=text).lr_scheduler) == \
        "ExponentialScheduler(initial_lr=0.2, stage_length=5, staircase=False, decay=0.5)"
    with pytest.raises(ValueError, match="malformed node"):  # numpy-ml reads "staircase=false" after lower-casing
        SchedulerInitializer(str(nml.schedulers.ExponentialScheduler()), lr=None)()
    M.Adam(lr_scheduler=str(nml.schedulers.ExponentialScheduler()))
    # numpy-ml's dict form sets only the hyperparameters dict: the rate stays at the default 0.01
    d = {"hyperparameters": {"id": "ConstantScheduler", "lr": 0.3}}
    theirs = SchedulerInitializer(d, lr=None)()
    assert (theirs(0) == 0.01 if _builds_from_dicts(nml) else theirs is None)  # 0.1.2 builds nothing from a dict
    assert M.Adam(lr_scheduler=d).lr_scheduler(0) == 0.3

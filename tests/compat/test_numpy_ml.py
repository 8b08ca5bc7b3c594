"""fastnn.compat.numpy_ml against numpy-ml's update formulas, a 30-step training twin, the API, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference
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
    k = M.backend  # the same backend as the optimizer: fastnn.kernels or fastnn.reference
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
def test_training_matches_reference_twin(kind, kw, dtype, twin, monkeypatch):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((64, 10)).astype(dtype)
    y = rng.integers(0, 4, 64)
    monkeypatch.setattr(M, "backend", K)
    fast = _train(getattr(M, kind)(**kw), X, y, dtype)
    monkeypatch.setattr(M, "backend", fastnn.reference)
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
    (lambda: M.Adam(lr_scheduler="ConstantScheduler(lr=0.1)"), TypeError, "Adam: lr_scheduler must be"),
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

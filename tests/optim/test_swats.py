"""SWATS (Keskar & Socher 2017) against Algorithm 1 of the paper written out here, on a noisy least-squares
problem where the switch to SGD happens; its fused kernels against their twins; state dicts across the switch."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from fastnn import optim
from fastnn.checkpoint import load_arrays, save_arrays
from tests.conftest import TOL

LR, SWITCH_EPS, STEPS = 1e-3, 1e-5, 80  # on this problem b switches at step 20, w at step 45


def _problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    y = X @ rng.standard_normal(5) + 1.5 + 0.5 * rng.standard_normal(200)
    batches = [np.random.default_rng(k).integers(0, 200, 16) for k in range(STEPS)]

    def grads(params, k):
        idx = batches[k]
        err = X[idx] @ params["w"] + params["b"] - y[idx]
        return {"w": X[idx].T @ err / 16, "b": np.array(err.mean())}

    return grads


def _paper(grads, beta1=0.9, beta2=0.999, eps=1e-9):
    """Algorithm 1, one switch per parameter array, float64; returns the trajectory and the (step, Lambda) of
    each switch."""
    params = {"w": np.zeros(5), "b": np.zeros(())}
    state = {k: {"m": 0.0, "a": 0.0, "v": 0.0, "lam": 0.0, "sgd": None} for k in params}
    trajectory, switches = [], {}
    for k in range(1, STEPS + 1):
        g_all = grads(params, k - 1)
        for key, w in params.items():
            s, g = state[key], g_all[key]
            if s["sgd"] is not None:
                s["v"] = beta1 * s["v"] + g
                params[key] = w - (1 - beta1) * s["sgd"] * s["v"]
                continue
            s["m"] = beta1 * s["m"] + (1 - beta1) * g
            s["a"] = beta2 * s["a"] + (1 - beta2) * g * g
            p = -LR * np.sqrt(1 - beta2**k) / (1 - beta1**k) * s["m"] / (np.sqrt(s["a"]) + eps)
            params[key] = w + p
            pg = np.sum(p * g)
            if pg != 0:
                gamma = np.sum(p * p) / -pg
                s["lam"] = beta2 * s["lam"] + (1 - beta2) * gamma
                if k > 1 and abs(s["lam"] / (1 - beta2**k) - gamma) < SWITCH_EPS:
                    s["sgd"] = s["lam"] / (1 - beta2**k)
                    switches[key] = (k, s["sgd"])
        trajectory.append({key: np.copy(v) for key, v in params.items()})
    return trajectory, switches


def _run(opt, grads, params, start, stop):
    out = []
    for k in range(start, stop):
        opt.update(params, grads(params, k))
        out.append({key: np.copy(v) for key, v in params.items()})
    return out


def test_swats_follows_algorithm_1_through_the_switch():
    grads = _problem()
    want, switches = _paper(grads)
    assert set(switches) == {"w", "b"} and switches["w"][0] != switches["b"][0]  # both switch, at different steps
    assert all(3 < k < STEPS - 10 for k, _ in switches.values())
    opt = optim.SWATS(lr=LR, switch_eps=SWITCH_EPS)
    params = {"w": np.zeros(5), "b": np.zeros(())}
    got = []
    for k in range(STEPS):
        opt.update(params, grads(params, k))
        got.append({key: np.copy(v) for key, v in params.items()})
        for key, (when, _) in switches.items():  # the switch is taken at the paper's step, to its rate
            assert (key in opt.switched) == (k + 1 >= when), (key, k + 1)
    for key, (_, rate) in switches.items():
        assert opt.switched[key] == pytest.approx(rate, rel=1e-9)
    for g, w in zip(got, want, strict=True):
        for key in g:
            np.testing.assert_allclose(g[key], w[key], rtol=1e-10, atol=1e-13)


def test_swats_resumes_in_sgd_mode_from_a_state_dict(tmp_path):
    grads = _problem()
    params = {"w": np.zeros(5), "b": np.zeros(())}
    opt = optim.SWATS(lr=LR, switch_eps=SWITCH_EPS)
    _run(opt, grads, params, 0, 60)
    assert set(opt.switched) == {"w", "b"}
    save_arrays(tmp_path / "opt.npz", opt.state_dict())
    resumed_params = {k: v.copy() for k, v in params.items()}
    straight = _run(opt, grads, params, 60, STEPS)
    resumed = optim.get("swats", lr=LR, switch_eps=SWITCH_EPS)
    resumed.load_state_dict(load_arrays(tmp_path / "opt.npz"))
    assert resumed.switched == opt.switched and resumed.iter == 60
    again = _run(resumed, grads, resumed_params, 60, STEPS)
    for a, b in zip(again, straight, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_swats_bad_state_dict_changes_nothing():
    opt = optim.SWATS()
    params = {"w": np.ones(3)}
    opt.update(params, {"w": np.ones(3)})
    sd = opt.state_dict()
    sd["swats/switched/w"] = np.array(-1.0)
    with pytest.raises(ValueError, match=r"^SWATS.load_state_dict: state_dict\['swats/switched/w'\] must be"):
        opt.load_state_dict(sd)
    assert opt.switched == {} and opt.iter == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (20001,)], ids=str)
def test_swats_kernels_match_twins(shape, dtype, twin):
    rng = np.random.default_rng(shape[0])
    p0 = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    states0 = [np.abs(rng.standard_normal(shape)).astype(dtype) for _ in range(2)]
    results = []
    for impl in (K, R):
        p, m, v = p0.copy(), *(s.copy() for s in states0)
        dots = impl.swats_adam_step(p, g, m, v, 0.01, 0.9, 0.99, 1e-8, 4, weight_decay=0.1)
        buf, q = states0[0].copy(), p0.copy()
        impl.swats_sgd_step(q, g, buf, 0.3, 0.9, weight_decay=0.01)
        results.append((p, m, v, *dots, q, buf))
    for a, b in zip(*results, strict=True):
        assert np.asarray(a).dtype == dtype
        np.testing.assert_allclose(a, b, **TOL[np.dtype(dtype)])
    # the dot products are those of the step taken
    p, *_ = results[0]
    step = (p.astype(np.float64) - p0).ravel()
    g_l2 = (g + dtype(0.1) * p0).astype(np.float64).ravel()
    np.testing.assert_allclose(results[0][3], step @ g_l2, rtol=1e-4 if dtype == np.float32 else 1e-9)
    np.testing.assert_allclose(results[0][4], step @ step, rtol=1e-4 if dtype == np.float32 else 1e-9)

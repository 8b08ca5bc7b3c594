"""Parameters that are plain numbers or 0-d arrays, as the book's ``ch06/optimizer_compare_naive.py`` uses them.

The book's optimizers update ``params[key] -= ...``: an ndarray in place, a number by replacing the dict entry.
The trajectories on the book's f(x, y) = x**2 / 20 + y**2 are checked against each optimizer's formula from
``common/optimizer.py``, written here on Python floats.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from fastnn import optim


def _df(x, y):
    """Gradient of the book's f(x, y) = x**2 / 20 + y**2."""
    return x / 10.0, 2.0 * y


def _book_step(name, lr, state, p, g, t):
    """One update of the book's optimizer ``name`` on one float parameter; returns the new value."""
    if name == "SGD":
        return p - lr * g
    if name == "Momentum":
        state["v"] = 0.9 * state.get("v", 0.0) - lr * g
        return p + state["v"]
    if name == "Nesterov":
        v = state.get("v", 0.0)
        p = p + 0.9 * 0.9 * v - (1 + 0.9) * lr * g
        state["v"] = 0.9 * v - lr * g
        return p
    if name == "AdaGrad":
        state["h"] = state.get("h", 0.0) + g * g
        return p - lr * g / (math.sqrt(state["h"]) + 1e-7)
    if name == "RMSprop":
        state["h"] = 0.99 * state.get("h", 0.0) + (1 - 0.99) * g * g
        return p - lr * g / (math.sqrt(state["h"]) + 1e-7)
    assert name == "Adam"
    lr_t = lr * math.sqrt(1.0 - 0.999 ** t) / (1.0 - 0.9 ** t)
    state["m"] = state.get("m", 0.0) + (1 - 0.9) * (g - state.get("m", 0.0))
    state["v"] = state.get("v", 0.0) + (1 - 0.999) * (g * g - state.get("v", 0.0))
    return p - lr_t * state["m"] / (math.sqrt(state["v"]) + 1e-7)


# ch06/optimizer_compare_naive.py's four, and the book's other two at a rate that moves them visibly
BOOK_RUNS = [("SGD", 0.95), ("Momentum", 0.1), ("AdaGrad", 1.5), ("Adam", 0.3), ("Nesterov", 0.1), ("RMSprop", 0.1)]


@pytest.mark.parametrize("name,lr", BOOK_RUNS)
def test_optimizer_compare_naive_trajectories_are_the_books(name, lr):
    optimizer = getattr(optim, name)(lr=lr)
    params = {"x": -7.0, "y": 2.0}
    grads = {"x": 0, "y": 0}  # as the script: ints, replaced by floats before the first update
    history = []
    for _ in range(30):
        history.append((params["x"], params["y"]))
        grads["x"], grads["y"] = _df(params["x"], params["y"])
        optimizer.update(params, grads)
    history.append((params["x"], params["y"]))
    assert all(isinstance(params[k], float) for k in params)  # np.float64: numbers stay numbers

    book = [(-7.0, 2.0)]
    state = {"x": {}, "y": {}}
    for t in range(1, 31):
        x, y = book[-1]
        gx, gy = _df(x, y)
        book.append((_book_step(name, lr, state["x"], x, gx, t), _book_step(name, lr, state["y"], y, gy, t)))
    # measured: at most 1.6e-15 apart (fused multiply-adds in the kernels)
    np.testing.assert_allclose(np.array(history), np.array(book), rtol=1e-12, atol=1e-12)
    assert abs(history[-1][0] - -7.0) > 1.0  # it moved
    for s in optimizer.state_names:  # a number's state is a 0-d float64 array, as np.zeros_like(-7.0)
        assert getattr(optimizer, s)["x"].shape == () and getattr(optimizer, s)["x"].dtype == np.float64
    if name in ("Momentum", "Nesterov"):  # the book's velocity, under the book's name
        assert float(optimizer.v["x"]) == pytest.approx(state["x"]["v"], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_numbers_are_replaced_and_arrays_updated_in_place(name):
    zero_d = np.array(1.5)
    array = np.array([1.0, -2.0, 3.0], np.float32)
    params = {"py": 1.5, "int": 3, "np64": np.float64(1.5), "np32": np.float32(1.5), "npint": np.int64(3),
              "zero_d": zero_d, "array": array}
    grads = {"py": 0.5, "int": 1, "np64": np.float64(0.5), "np32": 0.5, "npint": np.array(1.0), "zero_d": 0.5,
             "array": np.array([0.5, 0.5, 0.5])}
    same = {k: optim.get(name) for k in params}  # each parameter alone, as a 0-d or 1-D array
    opt = optim.get(name)
    for _ in range(3):
        opt.update(params, grads)
    assert params["zero_d"] is zero_d and params["array"] is array  # ndarrays: in place, as the book
    for k in ("py", "int", "np64", "npint"):
        assert type(params[k]) is np.float64, k
    assert type(params["np32"]) is np.float32
    assert opt.iter == 3
    for k, p0 in {"py": 1.5, "int": 3.0, "np32": np.float32(1.5), "zero_d": 1.5}.items():
        alone = {"p": np.array(p0)}
        for _ in range(3):
            same[k].update(alone, {"p": np.asarray(grads[k], dtype=alone["p"].dtype)})
        assert params[k] == alone["p"][()], k
        assert params[k] != p0, k
    state = {s: getattr(opt, s) for s in opt.state_names}
    for s in state.values():
        assert s["py"].dtype == np.float64 and s["py"].shape == ()
        assert s["np32"].dtype == np.float32 and s["array"].dtype == np.float32


def test_number_params_in_state_dicts_round_trip():
    params = {"x": -7.0, "y": np.float32(2.0)}
    opt = optim.Adam(lr=0.3)
    for _ in range(3):
        opt.update(params, {"x": params["x"] / 10, "y": 2 * params["y"]})
    sd = opt.state_dict()
    assert sd["state/m/x"].shape == () and sd["state/m/y"].dtype == np.float32
    again = optim.Adam()
    again.load_state_dict(sd)
    p1, p2 = dict(params), dict(params)
    opt.update(p1, {"x": 1.0, "y": 1.0})
    again.update(p2, {"x": 1.0, "y": 1.0})
    assert p1 == p2


BAD_PARAMS = [
    ("int array", np.zeros(3, np.int64), 0.0, TypeError,
     r"params\['bad'\] must be a float32 or float64 ndarray \(updated in place\) or a real number, got array"),
    ("0-d int array", np.array(3), 0.0, TypeError, r"params\['bad'\] must be a float32 or float64 ndarray"),
    ("str", "1.0", 0.0, TypeError, r"params\['bad'\] must be .* or a real number, got str '1.0'"),
    ("bool", True, 0.0, TypeError, r"params\['bad'\] must be .* or a real number, got bool True"),
    ("complex", 1j, 0.0, TypeError, r"params\['bad'\] must be .* or a real number, got complex 1j"),
    ("float16", np.float16(1), 0.0, TypeError, r"params\['bad'\] must be .* or a real number, got float16"),
    ("None", None, 0.0, TypeError, r"params\['bad'\] must be .* or a real number, got NoneType None"),
    ("huge int", 10**400, 0.0, ValueError, r"params\['bad'\] must be representable as float64"),
    ("grad of a number is an array", 1.0, np.ones(3), ValueError, r"grads\['bad'\] must be of shape \(\) like"),
    ("grad str", 1.0, "x", TypeError, r"grads\['bad'\] must be a NumPy array of floats, got str"),
]


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
@pytest.mark.parametrize("bad", BAD_PARAMS, ids=[b[0] for b in BAD_PARAMS])
def test_bad_params_refused_and_nothing_half_updated(name, bad):
    _, value, grad, exc, msg = bad
    opt = optim.get(name)
    zero_d = np.array(2.0)
    params = {"a": 1.0, "z": zero_d, "bad": value, "w": np.ones(3)}
    grads = {"a": 0.5, "z": 0.5, "bad": grad, "w": np.ones(3)}
    good = {k: v for k, v in params.items() if k != "bad"}
    opt.update(good, {k: v for k, v in grads.items() if k != "bad"})  # a first update: state exists
    params.update(good)
    before = {k: np.array(v, copy=True) for k, v in good.items()}
    state = {s: {k: a.copy() for k, a in getattr(opt, s).items()} for s in opt.state_names}
    with pytest.raises(exc, match=f"^{type(opt).__name__}.update: {msg}"):
        opt.update(params, grads)
    assert params["z"] is zero_d and params["bad"] is value
    for k, v in before.items():
        np.testing.assert_array_equal(params[k], v, err_msg=k)
    assert opt.iter == 1
    for s in opt.state_names:
        assert set(getattr(opt, s)) == set(state[s])
        for k, a in getattr(opt, s).items():
            np.testing.assert_array_equal(a, state[s][k])


def test_numbers_need_a_mutable_dict():
    frozen = types.MappingProxyType({"x": 1.0})
    with pytest.raises(TypeError, match=r"^SGD.update: params must be a mutable dict \(the number params\['x'\] "
                                        r"is replaced\), got mappingproxy"):
        optim.SGD().update(frozen, {"x": 1.0})
    arrays_only = types.MappingProxyType({"x": np.ones(2)})  # arrays are updated in place: fine
    optim.SGD(lr=0.5).update(arrays_only, {"x": np.ones(2)})
    np.testing.assert_array_equal(arrays_only["x"], [0.5, 0.5])

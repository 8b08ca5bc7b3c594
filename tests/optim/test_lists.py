"""fastnn.optim with Deep Learning from Scratch 2's convention: ``update(params, grads)`` on lists of arrays.

DLFS-2's ``common/optimizer.py`` builds its state lists (``self.m``, ``self.v`` ...) on the first call, one entry
per list position, re-reads ``self.lr`` on every update and loops over the positions in order, updating each array
in place (``params[i] -= ...``). So an array listed twice, or listed again as a transposed view (BetterRnnlm's
``embed_W`` and ``TimeAffine(embed_W.T)`` when ``remove_duplicate`` was not applied), takes both updates in turn,
each with its own state. The oracle below is that loop written out in NumPy on the same kind of list.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn.optim as optim
from fastnn import checkpoint

BOOK = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]


def _book_update(name, opt_state, params, grads, lr):
    """One update of DLFS-2's optimizer ``name`` (defaults momentum 0.9, decay_rate 0.99, betas 0.9/0.999, eps
    1e-7) on lists, in place, as its loop does."""
    if name == "SGD":
        for p, g in zip(params, grads, strict=True):
            p -= lr * g
        return
    if "s1" not in opt_state:  # state lists built on the first call
        opt_state["s1"] = [np.zeros_like(p) for p in params]
        opt_state["s2"] = [np.zeros_like(p) for p in params]
        opt_state["t"] = 0
    s1, s2 = opt_state["s1"], opt_state["s2"]
    opt_state["t"] += 1
    t = opt_state["t"]
    lr_t = lr * math.sqrt(1.0 - 0.999 ** t) / (1.0 - 0.9 ** t)
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if name == "Momentum":
            s1[i] = 0.9 * s1[i] - lr * g
            p += s1[i]
        elif name == "Nesterov":
            # DLFS-1's order (fastnn's Nesterov, arXiv:1212.0901): the step uses the velocity before this update.
            # DLFS-2's class updates v first and then adds mu*mu*v_new, a different (and not Bengio et al.'s)
            # step: see test_nesterov_is_the_first_books_not_the_second_books_order.
            p += 0.9 * 0.9 * s1[i]
            p -= (1 + 0.9) * lr * g
            s1[i] *= 0.9
            s1[i] -= lr * g
        elif name == "AdaGrad":
            s1[i] += g * g
            p -= lr * g / (np.sqrt(s1[i]) + 1e-7)
        elif name == "RMSprop":
            s1[i] *= 0.99
            s1[i] += (1 - 0.99) * g * g
            p -= lr * g / (np.sqrt(s1[i]) + 1e-7)
        else:
            s1[i] += (1 - 0.9) * (g - s1[i])
            s2[i] += (1 - 0.999) * (g ** 2 - s2[i])
            p -= lr_t * s1[i] / (np.sqrt(s2[i]) + 1e-7)


def _tied_model(dtype, seed=0):
    """BetterRnnlm's tie in miniature: ``[embed_W, b, embed_W.T, embed_W]`` (a view and a repeat) and a second
    parameter; returns the base arrays and the params list over them."""
    rng = np.random.default_rng(seed)
    embed_w = rng.standard_normal((5, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    return embed_w, b, [embed_w, b, embed_w.T, embed_w]


def _grads(dtype, steps, seed=1):
    rng = np.random.default_rng(seed)
    shapes = [(5, 3), (5,), (3, 5), (5, 3)]
    return [[(rng.standard_normal(s) * rng.choice([1e-3, 1.0], size=s)).astype(dtype) for s in shapes]
            for _ in range(steps)]


@pytest.mark.parametrize("name", BOOK)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lists_with_tied_and_transposed_weights_match_the_books_loop(name, dtype):
    grads = _grads(dtype, 6)
    lrs = [0.01, 0.01, 0.003, 0.003, 0.02, 0.02]  # lr changed between updates: re-read every time
    w_got, b_got, got = _tied_model(dtype)
    w_want, b_want, want = _tied_model(dtype)
    opt = getattr(optim, name)()
    state: dict = {}
    for lr, g in zip(lrs, grads, strict=True):
        opt.lr = lr
        opt.update(got, g)
        _book_update(name, state, want, g, lr)
    tol = {np.float32: {"rtol": 2e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}[dtype]
    assert w_got.dtype == dtype and b_got.dtype == dtype
    np.testing.assert_allclose(w_got, w_want, **tol)
    np.testing.assert_allclose(b_got, b_want, **tol)
    assert got[2].base is w_got and got[0] is w_got  # the list still holds the caller's arrays and view
    assert np.max(np.abs(w_got - _tied_model(dtype)[0])) > 1e-3  # the updates reached the caller's array
    if name != "SGD":  # one state array per list position, of its entry's shape
        store = getattr(opt, opt.state_names[0])
        assert sorted(store) == ["0", "1", "2", "3"]
        assert store["2"].shape == (3, 5) and store["2"].dtype == dtype


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_list_and_dict_conventions_are_bit_identical(name):
    rng = np.random.default_rng(2)
    shapes = [(4, 3), (3,), (2, 1, 3)]
    as_list = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    as_dict = {str(i): p.copy() for i, p in enumerate(as_list)}
    a, b = optim.get(name), optim.get(name)
    for _ in range(3):
        g = [rng.standard_normal(s) for s in shapes]
        a.update(as_list, g)
        b.update(as_dict, {str(i): x for i, x in enumerate(g)})
    for i, p in enumerate(as_list):
        np.testing.assert_array_equal(p, as_dict[str(i)])
    assert a.iter == b.iter == 3


def test_numbers_in_a_list_are_replaced_and_tuples_of_arrays_accepted():
    params = [np.ones(2), 3.0]
    optim.SGD(lr=0.5).update(params, (np.ones(2), 2.0))
    assert params[1] == 2.0 and isinstance(params[1], np.float64)
    np.testing.assert_array_equal(params[0], [0.5, 0.5])
    arrays = (np.ones(2, np.float32),)
    optim.SGD(lr=0.5).update(arrays, [np.ones(2)])
    np.testing.assert_array_equal(arrays[0], [0.5, 0.5])


def _snapshot(opt, params):
    return ([p.copy() for p in params],
            {s: {k: a.copy() for k, a in getattr(opt, s).items()} for s in opt.state_names}, opt.iter)


@pytest.mark.parametrize("name", ["Adam", "Momentum"])
def test_bad_lists_are_rejected_before_anything_is_written(name):
    w, b, params = _tied_model(np.float32)
    opt = getattr(optim, name)()
    opt.update(params, _grads(np.float32, 1)[0])
    before = _snapshot(opt, params)
    good = _grads(np.float32, 1, seed=3)[0]
    bad_last = good[:3] + [np.ones((3, 5))]
    cases = [
        (bad_last, ValueError, r"Adam|Momentum.*grads\[3\] must be of shape \(5, 3\) like params\[3\]"),
        (good[:3], ValueError, r"grads must be a list of the same length as params \(4\), got length 3"),
        ({"0": good[0]}, TypeError, r"params and grads must be both lists of arrays \(DLFS-2\) or both dicts"),
        (good[:3] + [np.ones((5, 3), dtype=complex)], TypeError, r"grads\[3\] must be a real numeric array"),
    ]
    for grads, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            opt.update(params, grads)
        after = _snapshot(opt, params)
        for x, y in zip(before[0], after[0], strict=True):
            np.testing.assert_array_equal(x, y)
        assert before[1].keys() == after[1].keys() and before[2] == after[2]
        for s in before[1]:
            for k in before[1][s]:
                np.testing.assert_array_equal(before[1][s][k], after[1][s][k])
    with pytest.raises(TypeError, match=r"params must be a list \(the number params\[1\] is replaced\), got tuple"):
        opt.update((np.ones(2), 1.0), [np.ones(2), 1.0])
    ro = np.ones(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[1\] must be writeable"):
        opt.update([np.ones(2), ro], [np.ones(2), np.ones(2)])


def test_list_state_survives_a_state_dict_round_trip(tmp_path):
    _, _, params = _tied_model(np.float64)
    grads = _grads(np.float64, 4)
    opt = optim.Adam()
    for g in grads[:2]:
        opt.update(params, g)
    checkpoint.save_arrays(tmp_path / "opt.npz", opt.state_dict())
    resumed = optim.Adam()
    resumed.load_state_dict(checkpoint.load_arrays(tmp_path / "opt.npz"))
    _, _, other = _tied_model(np.float64)
    for p, q in zip(other, params, strict=True):
        p[...] = q
    for g in grads[2:]:
        opt.update(params, g)
        resumed.update(other, g)
    np.testing.assert_array_equal(params[0], other[0])
    np.testing.assert_array_equal(params[1], other[1])


def test_nesterov_is_the_first_books_not_the_second_books_order():
    """DLFS-2's Nesterov (``v *= mu; v -= lr*g; p += mu*mu*v; p -= (1+mu)*lr*g``) is p + mu**3 v - (1+mu+mu**2)
    lr g, not the paper's p + mu**2 v - (1+mu) lr g that DLFS-1 computes; fastnn.optim.Nesterov keeps DLFS-1's."""
    p = [np.array([1.0])]
    opt = optim.Nesterov(lr=0.1)
    opt.update(p, [np.array([1.0])])  # v = -0.1, p = 1 - 1.9 * 0.1
    opt.update(p, [np.array([1.0])])  # p += 0.81 * v_old - 0.19, v_old = -0.1
    np.testing.assert_allclose(p[0], [1.0 - 0.19 - 0.081 - 0.19], rtol=1e-14)
    dlfs2 = 1.0 - 0.81 * 0.1 - 0.19 - 0.81 * 0.19 - 0.19  # v1 = -0.1, v2 = -0.19 with the step of each after v
    assert abs(p[0][0] - dlfs2) > 0.05

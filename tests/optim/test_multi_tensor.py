"""The multi-tensor optimizer step: ``Optimizer.update`` on many parameters runs one launch per dtype
(``fastnn.kernels.optimizers.MultiTensorPlan``), and repeated updates of the same arrays take a fast path that
skips the per-parameter validation. Both must give the numbers of the per-tensor path (one kernel call per
parameter: an update of a single parameter always takes it) and of the NumPy twins, and every check and message of
the full path must stay.

"The same numbers" is to the last bit or two, not bit for bit: both paths run the same loop body, but LLVM
compiles it once standalone and once inlined into the launcher, and where it peels, vectorises or contracts
(FMA) differently, an element can round differently (measured: 1 element of 30 off by 1 ulp in float64, and only
for some array alignments, so exact equality would be a flaky test).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels.optimizers as K
import fastnn.optim as optim
from fastnn import backend, config
from tests.optim.test_optimizers import CASE_IDS, CASES

# sizes around the vector width and the parallel threshold (32768 elements: per-tensor launch when parallel; the
# fixture below pins the multi-tensor threshold there, whatever config's default)
SHAPES = [(3, 4), (40000,), (10, 1), (1,), (2, 3, 5), (7,), (130, 33), (16,), (5,)]


@pytest.fixture(autouse=True)
def _small_tensors_leave_the_plan(monkeypatch):
    """A tensor of 40000 elements takes its own (parallel) launch here even if config's "multi_tensor" threshold is
    raised above the optimizer family's (it was 2**18 for a while), so the per-tensor branch stays covered."""
    monkeypatch.setitem(config.PARALLEL_MIN_WORK, "multi_tensor", config.PARALLEL_MIN_WORK["optimizer"])


def _problem(dtype, seed=0, steps=3, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    params = {f"p{i}": rng.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)}
    grads = [{k: (rng.standard_normal(p.shape) * rng.choice([1e-3, 1.0], size=p.shape)).astype(dtype)
              for k, p in params.items()} for _ in range(steps)]
    return params, grads


def _assert_same(got, want, name=""):
    """Equal to rounding: a few ulps after a few steps (module docstring)."""
    tol = {"rtol": 1e-5, "atol": 1e-7} if got.dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-16}
    np.testing.assert_allclose(got, want, **tol, err_msg=name)


def _per_tensor(name, h, params, grads):
    """One optimizer per parameter: an update of one parameter is the per-tensor path."""
    params = {k: p.copy() for k, p in params.items()}
    opts = {k: optim.get(name, **h) for k in params}
    for g in grads:
        for k, p in params.items():
            opts[k].update({k: p}, {k: g[k]})
    return params, opts


@pytest.mark.parametrize("name,case", CASE_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multi_tensor_update_matches_per_tensor(name, case, dtype):
    h = CASES[name][case]
    params, grads = _problem(dtype)
    want, opts = _per_tensor(name, h, params, grads)
    opt = optim.get(name, **h)
    got = {k: p.copy() for k, p in params.items()}
    for g in grads:
        opt.update(got, g)
    assert opt._fast is not None  # the later updates took the fast path
    for k in params:
        _assert_same(got[k], want[k], k)
        for s in opt.state_names:
            _assert_same(getattr(opt, s)[k], getattr(opts[k], s)[k], f"{s}[{k}]")


def test_more_parameters_than_one_launch_takes():
    shapes = [(i + 1, 3) for i in range(20)] + [(1,), (2,)]  # 22, as MultiLayerNetExtend: three launches
    params, grads = _problem(np.float32, seed=2, shapes=shapes)
    want, _ = _per_tensor("adam", {}, params, grads)
    opt = optim.Adam()
    for g in grads:
        opt.update(params, g)
    assert [grp[1] for grp in opt._fast.plan.groups] == [8, 8, 6]
    for k in params:
        _assert_same(params[k], want[k], k)


@pytest.mark.parametrize("name", ["adam", "momentum", "adabound"])
def test_multi_tensor_update_matches_the_numpy_twins(name, dtype, twin):
    params, grads = _problem(dtype, seed=1)
    got, want = ({k: p.copy() for k, p in params.items()} for _ in range(2))
    a, b = optim.get(name), optim.get(name)
    for g in grads:
        a.update(got, g)
        with backend.using("reference"):
            b.update(want, g)
    tol = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}[np.dtype(dtype).type]
    for k in params:
        np.testing.assert_allclose(got[k], want[k], **tol, err_msg=k)


def test_plan_kept_while_the_arrays_stay_and_rebuilt_when_they_change():
    params, grads = _problem(np.float32, steps=4)
    opt = optim.Adam()
    opt.update(params, grads[0])
    first = opt._fast
    assert first is not None and sum(grp[1] for grp in first.plan.groups) == len(SHAPES)
    opt.update(params, grads[1])
    assert opt._fast is first  # the fast path: nothing rebuilt
    opt.lr = 0.01  # a schedule: the new lr is used, the plan is kept
    want_m = 0.9 * opt.m["p0"] + 0.1 * grads[2]["p0"]
    opt.update(params, grads[2])
    assert opt._fast.plan is first.plan and opt.lr == 0.01
    np.testing.assert_allclose(opt.m["p0"], want_m, rtol=1e-6)
    params["p3"] = params["p3"].copy()  # a parameter replaced: a new plan over the new array
    opt.update(params, grads[3])
    assert opt._fast.plan is not first.plan and opt._fast.params[3] is params["p3"]


def test_mixed_dtypes_views_and_casts_take_their_own_paths():
    """float32 and float64 parameters (one launch each), a transposed view (per tensor, copied in and out), a
    float64 gradient for a float32 parameter (the checked kernel casts it): each as the per-tensor path."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 5))
    params = {"a": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(7),
              "c": rng.standard_normal(9).astype(np.float32), "t": base.T, "d": rng.standard_normal((2, 2))}
    grads = [{k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()} for _ in range(3)]
    for g in grads:
        g["c"] = g["c"].astype(np.float64)
    want, _ = _per_tensor("adam", {}, params, grads)
    opt = optim.Adam()
    for g in grads:
        opt.update(params, g)
    assert opt._fast is None  # not one plan: the full path every time
    for k in params:
        _assert_same(params[k], want[k], k)
    assert params["t"].base is base and params["a"].dtype == np.float32


def test_fast_path_falls_back_to_the_full_checks_with_nothing_written():
    params, grads = _problem(np.float32, steps=2)
    opt = optim.Adam()
    opt.update(params, grads[0])
    snap = ({k: p.copy() for k, p in params.items()}, {k: m.copy() for k, m in opt.m.items()}, opt.iter)

    def unchanged():
        for k in params:
            np.testing.assert_array_equal(params[k], snap[0][k])
            np.testing.assert_array_equal(opt.m[k], snap[1][k])
        assert opt.iter == snap[2]

    g = grads[1]
    bad = [
        ({**g, "p2": np.ones((10, 2))}, ValueError, r"Adam.update: grads\['p2'\] must be of shape \(10, 1\)"),
        ({k: v for k, v in g.items() if k != "p5"}, ValueError, r"grads must be the same keys as params.*'p5'"),
        ({**g, "p4": np.ones((2, 3, 5), dtype=complex)}, TypeError, r"grads\['p4'\] must be a real numeric"),
    ]
    for grads_bad, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            opt.update(params, grads_bad)
        unchanged()
    params["p1"].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\['p1'\] must be writeable"):
        opt.update(params, g)
    params["p1"].flags.writeable = True
    unchanged()
    opt.m["p6"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"state m\['p6'\] must be of shape \(130, 33\)"):
        opt.update(params, g)
    opt.m["p6"] = snap[1]["p6"].copy()
    opt.lr = float("nan")
    with pytest.raises(ValueError, match="lr must be a finite number"):
        opt.update(params, g)
    opt.lr = 0.001
    unchanged()
    opt.update(params, g)  # and then it works again
    assert opt.iter == snap[2] + 1


def test_same_array_twice_in_a_list_keeps_list_order():
    """Tied weights share memory: the whole update goes per tensor, in order (tests/optim/test_lists.py checks
    the book's numbers); here the plan must not be used at all."""
    w = np.ones((3, 4), np.float32)
    others = [np.ones(5, np.float32) for _ in range(3)]
    opt = optim.Adam()
    opt.update([w, *others, w.T], [np.ones((3, 4)), *[np.ones(5)] * 3, np.ones((4, 3))])
    assert opt._fast is None and not getattr(opt, "_multi_plans", {})


def test_plan_rows_and_large_tensors():
    params = [np.zeros(s, np.float32) for s in [(40000,), (1,), (64, 64), (0,)]]
    plan = K.MultiTensorPlan(params, [() for _ in params])
    ((_, n, flat, _, pad, rows, small, large),) = plan.groups
    assert n == 4 and len(flat) == K._GROUP == 8 and len(pad) == 4
    assert rows.tolist() == [[0, 0, 40000], [1, 0, 1], [2, 0, 4096], [3, 0, 0]]
    assert large == [0] and small.tolist() == rows[1:].tolist()


def test_read_only_gradients_after_writeable_ones_take_the_kept_launcher():
    """The launcher's entry point is looked up at a plan's first launch; later gradients that are read-only (a
    different Numba type, the same machine representation) run through it with the same numbers as the per-tensor
    path, and the parameters are updated."""
    params, grads = _problem(np.float32, seed=3)
    want, _ = _per_tensor("adam", {}, params, grads)
    opt = optim.get("adam")
    got = {k: p.copy() for k, p in params.items()}
    for i, g in enumerate(grads):
        if i:
            for a in g.values():
                a.flags.writeable = False
        opt.update(got, g)
    assert opt._fast is not None and opt._fast.plan._entries  # the fast path and the kept entry point were used
    for k in params:
        _assert_same(got[k], want[k], k)
        assert not np.array_equal(got[k], params[k])

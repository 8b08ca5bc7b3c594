"""fastnn.backend reaches everything: inside ``backend.using("reference")`` a net's training step, an optimizer, the
cs231n and numpy-ml APIs call the NumPy twins only, and give the kernels' numbers within TOL; no caller module
imports fastnn.kernels or fastnn.reference itself."""

from __future__ import annotations

import ast
import copy
import functools
import pathlib

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from fastnn import backend
from fastnn.compat import cs231n as C
from fastnn.compat import numpy_ml as M
from fastnn.nets import MultiLayerNetExtend, SimpleConvNet
from fastnn.optim import SGD, Adam, Momentum
from tests.conftest import TOL, assert_close

#: The packages and modules above the kernels: each calls its numerics through backend.ops and nothing else.
CALLERS = ("layers", "optim", "nets", "compat", "cli", "trainer.py")
FASTNN = pathlib.Path(K.__file__).resolve().parents[1]


@pytest.fixture
def calls():
    """Every public function of fastnn.kernels and fastnn.reference records ``(backend, name)`` in the list yielded.

    Recording wrappers are what ``backend.using`` installs while the test runs; the real functions are installed
    again afterwards.
    """
    log: list[tuple[str, str]] = []

    def recording(impl, name, fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            log.append((impl, name))
            return fn(*args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as mp:
        for impl, module in (("kernels", K), ("reference", R)):
            for name in K.__all__:
                mp.setattr(module, name, recording(impl, name, getattr(module, name)))
        with backend.using("kernels"):
            yield log
    with backend.using("kernels"):  # the real functions, now that the modules hold them again
        pass
    assert backend.ops.conv2d_forward is K.conv2d_forward


def _on_both(calls, run):
    """``run()`` on the kernels, then on the twins; each side's result and the names it called, checked to be the
    same names and every call on its own backend."""
    del calls[:]
    fast = run()
    fast_names = [name for _, name in calls]
    assert fast_names and {impl for impl, _ in calls} == {"kernels"}
    del calls[:]
    with backend.using("reference"):
        slow = run()
    assert {impl for impl, _ in calls} == {"reference"}, sorted(set(calls))
    assert [name for _, name in calls] == fast_names  # the same calls, in the same order
    return fast, slow, set(fast_names)


def test_simpleconvnet_adam_step(calls, dtype):
    net = SimpleConvNet((2, 9, 8), {"filter_num": 4, "filter_size": 3, "pad": 1, "stride": 1}, hidden_size=12,
                        output_size=5, weight_init_std="he", dtype=dtype, seed=1)
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((6, 2, 9, 8)).astype(dtype), rng.integers(0, 5, 6)
    nets = [net, copy.deepcopy(net)]

    def step():
        net = nets.pop(0)
        optimizer = Adam(lr=0.01)
        for _ in range(2):
            optimizer.update(net.params, net.gradient(x, t))
        return net.last_layer.loss, net.params

    (fast_loss, fast), (slow_loss, slow), names = _on_both(calls, step)
    # Conv1-Relu1-Pool1 run as one fused call per pass (Sequential(fuse=True)); Relu2 follows an affine layer
    assert {"conv2d_relu_maxpool_forward", "conv2d_relu_maxpool_backward", "relu_forward", "matmul",
            "softmax_cross_entropy_forward", "adam_step"} <= names
    assert_close(fast_loss, slow_loss, dtype)
    for key in fast:
        assert_close(fast[key], slow[key], dtype)


def test_multilayer_net_extend_batchnorm_dropout_step(calls, dtype):
    net = MultiLayerNetExtend(12, [10, 8], 3, activation="relu", weight_decay_lambda=0.01, use_dropout=True,
                              dropout_ration=0.2, use_batchnorm=True, dtype=dtype, seed=7)
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((16, 12)).astype(dtype), rng.integers(0, 3, 16)
    nets = [net, copy.deepcopy(net)]  # the same weights and the same dropout seeds to come

    def step():
        net = nets.pop(0)
        # plain SGD: Adam would turn the rounding noise of the zero gradient of a bias before batch normalization
        # into steps of size lr, different on each backend
        optimizer = SGD(lr=0.1)
        for _ in range(2):
            optimizer.update(net.params, net.gradient(x, t))
        return net.loss(x, t, train_flg=False), {**net.params, **net.buffers}

    (fast_loss, fast), (slow_loss, slow), names = _on_both(calls, step)
    assert {"batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_backward", "dropout_mask",
            "dropout_forward", "dropout_backward", "sgd_step"} <= names
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {}  # normalization: a few ulps more
    assert_close(fast_loss, slow_loss, dtype, **tol)
    for key in fast:
        assert_close(fast[key], slow[key], dtype, **tol)


def test_cs231n_layers_and_update_rule(calls, dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 8, 8)).astype(dtype)
    w, b = (0.3 * rng.standard_normal((5, 3, 3, 3))).astype(dtype), np.zeros(5, dtype)
    dout = rng.standard_normal((4, 5, 4, 4)).astype(dtype)

    def run():
        out, cache = C.conv_relu_pool_forward(x, w, b, {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2,
                                                                                 "stride": 2})
        dx, dw, db = C.conv_relu_pool_backward(dout, cache)
        next_w, _ = C.adam(w, dw, {"learning_rate": 0.01})
        return out, dx, dw, db, next_w

    fast, slow, names = _on_both(calls, run)
    assert {"conv2d_forward", "conv2d_backward", "relu_forward", "relu_backward", "adam_step"} <= names
    for a, b_ in zip(fast, slow, strict=True):
        # norm-wise, as the convolution tests' close(): float32 Winograd F(4x4, 3x3) (this 8x8 layer's backward)
        # rounds at a few 1e-6 of dx's magnitude, so a near-zero element can miss an element-wise tolerance
        tol = TOL[np.dtype(dtype)]
        assert_close(a, b_, dtype, atol=tol["atol"] + tol["rtol"] * float(np.abs(b_).max()))


def test_numpy_ml_optimizers(calls, dtype):
    rng = np.random.default_rng(3)
    w, g = rng.standard_normal((6, 4)).astype(dtype), rng.standard_normal((6, 4)).astype(dtype)

    def run():
        out = []
        for opt in (M.SGD(lr=0.1, momentum=0.9), M.AdaGrad(), M.RMSProp(), M.Adam()):
            p = w
            for _ in range(3):
                p = opt.update(p, g, "W")
                opt.step()
            out.append(p)
        return out

    fast, slow, names = _on_both(calls, run)
    assert names == {"momentum_step", "adagrad_step", "rmsprop_step", "adam_step"}
    for a, b_ in zip(fast, slow, strict=True):
        assert_close(a, b_, dtype)


def test_a_layer_forward_backward_outside_a_net(calls):
    from fastnn.layers import GroupNormalization

    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 5, 5))

    def run():
        layer = GroupNormalization(np.ones(4), np.zeros(4), groups=2)
        out = layer.forward(x)
        return out, layer.backward(np.ones_like(out))

    fast, slow, names = _on_both(calls, run)
    assert names == {"groupnorm_forward", "groupnorm_backward"}
    for a, b_ in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b_, **TOL[np.dtype(np.float64)])


def test_momentum_inside_the_block_matches_outside(calls):
    p = np.linspace(-1, 1, 7)

    def run():
        params, opt = {"W": p.copy()}, Momentum(lr=0.1)
        for _ in range(3):
            opt.update(params, {"W": np.ones(7)})
        return params["W"]

    fast, slow, names = _on_both(calls, run)
    assert names == {"momentum_step"}
    np.testing.assert_allclose(fast, slow, **TOL[np.dtype(np.float64)])


def _imported_modules(path: pathlib.Path) -> set[str]:
    """The absolute names of the modules ``path`` imports (``from .. import kernels`` counts as fastnn.kernels)."""
    package = ".".join(path.relative_to(FASTNN.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("caller", CALLERS)
def test_callers_reach_the_numerics_through_the_seam_only(caller):
    root = FASTNN / caller
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    assert files
    for path in files:
        bad = {m for m in _imported_modules(path)
               if m.split(".")[:2] in (["fastnn", "kernels"], ["fastnn", "reference"])}
        assert not bad, f"{path.relative_to(FASTNN.parent)} imports {sorted(bad)}: call backend.ops.<kernel> instead"

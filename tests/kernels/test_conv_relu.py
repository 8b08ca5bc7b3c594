"""The fused convolution + ReLU (+ 2x2 max-pool) kernels: the same bits as the unfused kernels one after another,
the reference twins within tolerance, the twins against central differences, and their argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import kernels as K
from fastnn import reference as R
from fastnn.gradient import numerical_gradient
from fastnn.kernels import winograd43_grad

from .test_conv import close

# (N, C, H, W, FN, FH, pad): odd and non-square outputs (a last row/column in no pooling window), batch 1, one
# channel, one filter, pad 2 (DeepConvNet's fourth layer), a 2x2 output (one window), 5x5 filters (the im2col
# path: SimpleConvNet's), 3x3 with stride-1 pads on both sides
CASES = [
    (2, 3, 7, 9, 4, 3, 1),
    (1, 1, 6, 6, 1, 3, 1),
    (3, 2, 5, 8, 5, 3, 2),
    (2, 2, 4, 4, 3, 3, 0),
    (2, 3, 9, 8, 4, 5, 0),
    (1, 2, 11, 10, 3, 3, (1, 2)),
]
IDS = [f"N{n}C{c}-{h}x{w}-F{f}:{k}-p{p}" for n, c, h, w, f, k, p in CASES]


def _problem(case, dtype, seed=0):
    n, c, h, w, fn, k, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((fn, c, k, k)).astype(dtype)
    b = rng.standard_normal(fn).astype(dtype)
    return x, W, b, pad


def _unfused(x, W, b, pad, dout, pool):
    """The kernels one after another, as the layers run them: (forward results, (dx, dW, db))."""
    y = K.conv2d_forward(x, W, b, 1, pad)
    r = K.relu_forward(y)
    if not pool:
        return (r,), K.conv2d_backward(K.relu_backward(dout, y), x, W, 1, pad)
    p, am = K.maxpool2d_forward(r, 2, 2, 2)
    dr = K.maxpool2d_backward(dout, am, r.shape, 2, 2, 2)
    return (p, am), K.conv2d_backward(K.relu_backward(dr, y), x, W, 1, pad)


def _fused(impl, x, W, b, pad, dout, pool, **kw):
    if not pool:
        out = impl.conv2d_relu_forward(x, W, b, 1, pad, **kw)
        return (out,), impl.conv2d_relu_backward(dout, out, x, W, 1, pad, **kw)
    out, am = impl.conv2d_relu_maxpool_forward(x, W, b, 1, pad, **kw)
    return (out, am), impl.conv2d_relu_maxpool_backward(dout, out, am, x, W, 1, pad, **kw)


def _dout(x, W, b, pad, pool, dtype, seed=1):
    shape = R.conv2d_forward(x, W, b, 1, pad).shape
    if pool:
        shape = (*shape[:2], shape[2] // 2, shape[3] // 2)
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("pool", [False, True], ids=["relu", "relu_maxpool"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fused_gives_the_unfused_bits_and_the_twins_values(case, pool, dtype, twin):
    _fused_against_unfused(case, pool, dtype)


@pytest.mark.parametrize("pool", [False, True], ids=["relu", "relu_maxpool"])
@pytest.mark.parametrize("case", [CASES[0], CASES[5]], ids=[IDS[0], IDS[5]])
def test_fused_backward_in_f43_gives_the_unfused_bits(case, pool, dtype, monkeypatch):
    """The same with the backward in Winograd F(4x4, 3x3) whatever the shapes (it loads the fused gradient planes
    with its own pitch)."""
    calls = []
    monkeypatch.setattr(winograd43_grad, "takes_f43", lambda g, K, dtype: calls.append(g) or True)
    _fused_against_unfused(case, pool, dtype)
    assert len(calls) == 2


def _fused_against_unfused(case, pool, dtype):
    x, W, b, pad = _problem(case, dtype)
    # a third of the pre-activations negative by a margin, so ReLU and the pooling choose in every window
    b -= dtype.type(0.5)
    dout = _dout(x, W, b, pad, pool, dtype)
    ws: dict = {}
    fwd, grads = _fused(K, x, W, b, pad, dout, pool, cache=ws)
    ufwd, ugrads = _unfused(x, W, b, pad, dout, pool)
    rfwd, rgrads = _fused(R, x, W, b, pad, dout, pool)
    for a, u, r in zip(fwd, ufwd, rfwd, strict=True):
        assert a.dtype == u.dtype and a.shape == u.shape
        np.testing.assert_array_equal(a, u)
        if a.dtype.kind == "f":
            close(a, r, dtype)
    for a, u, r in zip(grads, ugrads, rgrads, strict=True):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, u)
        close(a, r, dtype)
    if pool:  # the pooling really chose: some windows at offsets other than the first, some outputs zero
        assert np.any(fwd[1] > 0) and np.any(fwd[0] == 0)


@pytest.mark.parametrize("pool", [False, True], ids=["relu", "relu_maxpool"])
def test_need_dx_false_and_non_contiguous_inputs(pool, dtype):
    x, W, b, pad = _problem(CASES[0], dtype, seed=3)
    dout = _dout(x, W, b, pad, pool, dtype)
    Wn = np.ascontiguousarray(W[:, :, ::-1])[:, :, ::-1]  # W's values through a negative stride
    fwd, grads = _fused(K, np.asfortranarray(x), Wn, b, pad, np.asfortranarray(dout), pool)
    ufwd, ugrads = _unfused(x, W, b, pad, dout, pool)
    np.testing.assert_array_equal(fwd[0], ufwd[0])
    backward = K.conv2d_relu_maxpool_backward if pool else K.conv2d_relu_backward
    extra = fwd if pool else fwd[:1]
    dx, dW, db = backward(dout, *extra, x, W, 1, pad, need_dx=False)
    assert dx is None
    np.testing.assert_array_equal(dW, ugrads[1])
    np.testing.assert_array_equal(db, ugrads[2])
    np.testing.assert_array_equal(grads[0], ugrads[0])


# Winograd (two channels); the im2col pipeline (one channel) with an even output width (its two-pass pooling) and
# an odd one (the window loop)
@pytest.mark.parametrize("case", [(2, 2, 6, 6, 3, 3, 1), (2, 1, 6, 6, 3, 3, 1), (2, 1, 6, 7, 3, 3, 1)],
                         ids=["winograd", "pipeline", "pipeline-odd"])
@pytest.mark.parametrize("special", [np.nan, np.inf, 0.0])
def test_special_values_and_ties_as_unfused(special, case):
    """NaN stays NaN through ReLU and wins its window (first NaN), zero ties keep the first offset; the fused
    pooling and gradient agree with pooling and masking the written output."""
    x, W, b, pad = _problem(case, np.float64, seed=5)
    x[0, -1, 2, 3] = special
    b[:] = -50.0 if special == 0.0 else b  # all pre-activations negative: every window a tie of zeros
    dout = _dout(x, W, b, pad, True, np.float64)
    fwd, grads = _fused(K, x, W, b, pad, dout, True)
    ufwd, ugrads = _unfused(x, W, b, pad, dout, True)
    for a, u in zip((*fwd, *grads), (*ufwd, *ugrads), strict=True):
        np.testing.assert_array_equal(a, u)
    if special == 0.0:
        assert np.all(fwd[0] == 0) and np.all(fwd[1] == 0) and np.all(grads[1] == 0)


@pytest.mark.parametrize("pool", [False, True], ids=["relu", "relu_maxpool"])
def test_twin_gradients_by_central_differences(pool):
    x, W, b, pad = _problem((2, 2, 5, 6, 3, 3, 1), np.float64, seed=7)
    dout = _dout(x, W, b, pad, pool, np.float64)
    fwd = R.conv2d_relu_maxpool_forward if pool else R.conv2d_relu_forward

    def loss(_):
        out = fwd(x, W, b, 1, pad)
        return float(np.sum((out[0] if pool else out) * dout))

    _, (dx, dW, db) = _fused(R, x, W, b, pad, dout, pool)
    for got, arr in ((dx, x), (dW, W), (db, b)):
        np.testing.assert_allclose(got, numerical_gradient(loss, arr, 1e-6), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
def test_bad_input(impl):
    x, W, b, pad = _problem(CASES[0], np.float32)
    out, am = impl.conv2d_relu_maxpool_forward(x, W, b, 1, pad)
    dout = np.ones_like(out)
    with pytest.raises(ValueError, match=r"conv2d_relu_maxpool_forward: x must be large enough .* got output 1x1"):
        impl.conv2d_relu_maxpool_forward(x[:, :, :1, :1], W, b, 1, pad)
    with pytest.raises(ValueError, match=r"conv2d_relu_maxpool_backward: argmax must be window indices in \[0, 4\)"):
        impl.conv2d_relu_maxpool_backward(dout, out, am + 4, x, W, 1, pad)
    with pytest.raises(ValueError, match=r"conv2d_relu_maxpool_backward: out must be of shape \(2, 4, 3, 4\)"):
        impl.conv2d_relu_maxpool_backward(dout, out[:, :, :2], am, x, W, 1, pad)
    full = impl.conv2d_relu_forward(x, W, b, 1, pad)
    with pytest.raises(ValueError, match=r"conv2d_relu_backward: dout must be of shape \(2, 4, 7, 9\)"):
        impl.conv2d_relu_backward(dout, full, x, W, 1, pad)
    with pytest.raises(TypeError, match="conv2d_relu_backward: need_dx must be True or False"):
        impl.conv2d_relu_backward(full, full, x, W, 1, pad, need_dx=1)
    # float64 out promotes the float32 arrays (NumPy's rule), as the unfused kernels do
    dx, dW, db = impl.conv2d_relu_backward(full, full.astype(np.float64), x, W, 1, pad)
    assert dx.dtype == dW.dtype == db.dtype == np.float64

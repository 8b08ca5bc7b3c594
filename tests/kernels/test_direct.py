"""The direct filter gradient of one-channel 3x3 stride-1 convolutions (:mod:`fastnn.kernels.direct`): taken by
the public backward kernels without dx, the twins' values, the pipeline's bias gradient bits, the same bits on one
and two threads, and the pipeline where it does not apply (dx needed, narrow rows, non-finite results)."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import _validate
from fastnn import kernels as K
from fastnn import reference as R
from fastnn.kernels import conv, direct

from .test_conv import close

# (N, H, W, FN, pad): batch 1 and one filter at the narrowest row taken (OW = 16), odd sizes, DeepConvNet's pad 2,
# an asymmetric pad, DeepConvNet's first layer (28x28, 16 filters)
CASES = [
    (1, 18, 18, 1, 0),
    (3, 17, 23, 5, 1),
    (2, 20, 31, 3, 2),
    (2, 9, 30, 4, (1, 0)),
    (4, 28, 28, 16, 1),
]
IDS = [f"N{n}-{h}x{w}-F{f}-p{p}" for n, h, w, f, p in CASES]
MODES = ["conv", "relu", "relu_maxpool"]


@pytest.fixture
def taken(monkeypatch):
    """The number of times the direct path computed a gradient (returned one, not None)."""
    calls = []
    real = direct.filter_gradient

    def spy(*args, **kw):
        grads = real(*args, **kw)
        calls.append(grads is not None)
        return grads

    monkeypatch.setattr(direct, "filter_gradient", spy)
    return calls


def _problem(case, dtype, mode, seed=0):
    """(x, W, b, pad, dout, extra): extra is what the mode's backward takes between dout and x."""
    n, h, w, fn, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, h, w)).astype(dtype)
    W = rng.standard_normal((fn, 1, 3, 3)).astype(dtype)
    b = (rng.standard_normal(fn) - 0.5).astype(dtype)  # ReLU zeroes a good share of the outputs
    if mode == "conv":
        extra = ()
    elif mode == "relu":
        extra = (R.conv2d_relu_forward(x, W, b, 1, pad),)
    else:
        extra = R.conv2d_relu_maxpool_forward(x, W, b, 1, pad)
    shape = (extra[0] if extra else R.conv2d_forward(x, W, b, 1, pad)).shape
    dout = rng.standard_normal(shape).astype(dtype)
    return x, W, b, pad, dout, extra


def _backward(impl, mode, dout, extra, x, W, pad, **kw):
    name = {"conv": "conv2d_backward", "relu": "conv2d_relu_backward",
            "relu_maxpool": "conv2d_relu_maxpool_backward"}[mode]
    return getattr(impl, name)(dout, *extra, x, W, 1, pad, **kw)


def _pipeline(mode, dout, extra, x, W, pad):
    """The im2col pipeline's (dx, dW, db), as the kernels computed them before the direct path."""
    g = _validate.geometry(x.shape, 3, 3, 1, pad)
    out, argmax = (extra + (None, None))[:2]
    return conv._pipe_conv_backward(dout, x, W, g, {}, False, out, argmax)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_filter_gradient_matches_the_twin(case, mode, dtype, twin, taken):
    x, W, b, pad, dout, extra = _problem(case, dtype, mode)
    dx, dW, db = _backward(K, mode, dout, extra, x, W, pad, need_dx=False)
    assert taken == [True]
    assert dx is None and dW.dtype == db.dtype == dtype and dW.shape == W.shape
    _, rdW, rdb = _backward(R, mode, dout, extra, x, W, pad)
    close(dW, rdW, dtype)
    close(db, rdb, dtype)
    _, pdW, pdb = _pipeline(mode, dout, extra, x, W, pad)
    np.testing.assert_array_equal(db, pdb)  # the same plane sums, added in the same order
    close(dW, pdW, dtype)


@pytest.mark.parametrize("mode", MODES)
def test_same_bits_on_one_and_two_threads(mode, dtype, monkeypatch, taken):
    x, W, b, pad, dout, extra = _problem(CASES[4], dtype, mode, seed=1)
    runs = []
    for work in ("1000000000000", "0"):  # one slot, then two (each takes the chunks as they come)
        monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", work)
        runs.append(_backward(K, mode, dout, extra, x, W, pad, need_dx=False))
    assert taken == [True, True]
    for a, b in zip(runs[0][1:], runs[1][1:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_non_contiguous_inputs_give_the_same_bits(dtype, taken):
    x, W, b, pad, dout, extra = _problem(CASES[1], dtype, "relu", seed=2)
    grads = _backward(K, "relu", dout, extra, x, W, pad, need_dx=False)
    Wn = np.ascontiguousarray(W[:, :, ::-1])[:, :, ::-1]  # W's values through a negative stride
    other = _backward(K, "relu", np.asfortranarray(dout), tuple(map(np.asfortranarray, extra)),
                      np.asfortranarray(x), Wn, pad, need_dx=False)
    assert taken == [True, True]
    for a, b in zip(grads[1:], other[1:], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_dx_takes_the_pipeline(mode, taken):
    x, W, b, pad, dout, extra = _problem(CASES[1], np.float64, mode)
    dx, dW, db = _backward(K, mode, dout, extra, x, W, pad)
    assert taken == []
    rdx, rdW, rdb = _backward(R, mode, dout, extra, x, W, pad)
    for a, r in ((dx, rdx), (dW, rdW), (db, rdb)):
        close(a, r, np.float64)


def test_narrow_rows_take_the_pipeline(taken):
    x, W, b, pad, dout, extra = _problem((2, 17, 15, 3, 1), np.float64, "relu")  # OW = 15
    _, dW, db = _backward(K, "relu", dout, extra, x, W, pad, need_dx=False)
    assert taken == []
    _, pdW, pdb = _pipeline("relu", dout, extra, x, W, pad)
    np.testing.assert_array_equal(dW, pdW)
    np.testing.assert_array_equal(db, pdb)


@pytest.mark.parametrize("special", [np.inf, np.nan])
def test_non_finite_input_gives_the_pipelines_gradient(special, taken):
    """An infinity in x meets the extra columns' zeros (NaN where the pipeline multiplies no zero by it): the
    direct sum gives up and the pipeline's gradient is returned, bit for bit."""
    x, W, b, pad, dout, extra = _problem(CASES[1], np.float64, "conv")
    x[1, 0, 5, 0] = special  # a first column: the tap shifts of the row before read it as an extra column's partner
    _, dW, db = _backward(K, "conv", dout, extra, x, W, pad, need_dx=False)
    assert taken == [False]
    _, pdW, pdb = _pipeline("conv", dout, extra, x, W, pad)
    np.testing.assert_array_equal(dW, pdW)
    np.testing.assert_array_equal(db, pdb)
    assert not np.isfinite(dW).all()

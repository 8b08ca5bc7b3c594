"""The direct filter gradients of stride-1 convolutions with few input channels (:mod:`fastnn.kernels.direct`:
one-channel 3x3, and 5x5 of up to four channels): taken by the public backward kernels without dx, the twins'
values, the pipeline's bias gradient bits, the same bits on one and two threads, and the pipeline where it does
not apply (dx needed, narrow rows, too many channels, non-finite results)."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import _validate
from fastnn import kernels as K
from fastnn import reference as R
from fastnn.kernels import conv, direct

from .test_conv import close

# (N, C, H, W, FN, K, pad), K x K filters. 3x3, one channel: batch 1 and one filter at the narrowest row taken
# (OW = 16), odd sizes, DeepConvNet's pad 2, an asymmetric pad, DeepConvNet's first layer (28x28, 16 filters).
# 5x5: the same kinds of shapes, odd filter counts (the last filter paired with itself), one to four channels,
# SimpleConvNet's CIFAR layer (3 channels, 32x32, 30 filters) on four images.
CASES = [
    (1, 1, 18, 18, 1, 3, 0),
    (3, 1, 17, 23, 5, 3, 1),
    (2, 1, 20, 31, 3, 3, 2),
    (2, 1, 9, 30, 4, 3, (1, 0)),
    (4, 1, 28, 28, 16, 3, 1),
    (1, 1, 20, 20, 1, 5, 0),
    (3, 3, 19, 24, 5, 5, 1),
    (2, 2, 21, 30, 4, 5, 2),
    (2, 3, 12, 22, 3, 5, (1, 0)),
    (2, 4, 20, 20, 6, 5, 0),
    (4, 3, 32, 32, 30, 5, 0),
]
IDS = [f"N{n}C{c}-{h}x{w}-F{f}:{k}-p{p}" for n, c, h, w, f, k, p in CASES]
#: One case of each kernel, for the tests that need not run every shape
KINDS = [CASES[4], CASES[6]]
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
    n, c, h, w, fn, k, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((fn, c, k, k)).astype(dtype)
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
    g = _validate.geometry(x.shape, W.shape[2], W.shape[3], 1, pad)
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


@pytest.mark.parametrize("case", KINDS, ids=["3x3", "5x5"])
@pytest.mark.parametrize("mode", MODES)
def test_same_bits_on_one_and_two_threads(mode, case, dtype, monkeypatch, taken):
    x, W, b, pad, dout, extra = _problem(case, dtype, mode, seed=1)
    runs = []
    for work in ("1000000000000", "0"):  # one slot, then two (each takes the chunks as they come)
        monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", work)
        runs.append(_backward(K, mode, dout, extra, x, W, pad, need_dx=False))
    assert taken == [True, True]
    for a, b in zip(runs[0][1:], runs[1][1:], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", [CASES[1], CASES[6]], ids=["3x3", "5x5"])
def test_non_contiguous_inputs_give_the_same_bits(case, dtype, taken):
    x, W, b, pad, dout, extra = _problem(case, dtype, "relu", seed=2)
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


@pytest.mark.parametrize("case", [(2, 1, 17, 15, 3, 3, 1), (2, 3, 19, 19, 3, 5, 0), (2, 5, 20, 20, 3, 5, 0)],
                         ids=["3x3-OW15", "5x5-OW15", "5x5-C5"])
def test_other_geometries_take_the_pipeline(case, taken):
    """Rows narrower than 16 outputs, a 5x5 filter of more than four channels."""
    x, W, b, pad, dout, extra = _problem(case, np.float64, "relu")
    _, dW, db = _backward(K, "relu", dout, extra, x, W, pad, need_dx=False)
    assert taken == []
    _, pdW, pdb = _pipeline("relu", dout, extra, x, W, pad)
    np.testing.assert_array_equal(dW, pdW)
    np.testing.assert_array_equal(db, pdb)


@pytest.mark.parametrize("case", [CASES[1], CASES[6]], ids=["3x3", "5x5"])
@pytest.mark.parametrize("special", [np.inf, np.nan])
def test_non_finite_input_gives_the_pipelines_gradient(special, case, taken):
    """An infinity in x meets the extra columns' zeros (NaN where the pipeline multiplies no zero by it): the
    direct sum gives up and the pipeline's gradient is returned, bit for bit."""
    x, W, b, pad, dout, extra = _problem(case, np.float64, "conv")
    x[1, -1, 5, 0] = special  # a first column: the tap shifts of the row before read it as an extra column's partner
    _, dW, db = _backward(K, "conv", dout, extra, x, W, pad, need_dx=False)
    assert taken == [False]
    _, pdW, pdb = _pipeline("conv", dout, extra, x, W, pad)
    np.testing.assert_array_equal(dW, pdW)
    np.testing.assert_array_equal(db, pdb)
    assert not np.isfinite(dW).all()

"""The direct sums of stride-1 convolutions with few input channels (:mod:`fastnn.kernels.direct`).

Filter gradients (one-channel 3x3, and 5x5 of up to four channels): taken by the public backward kernels without
dx, the twins' values, the pipeline's bias gradient bits, the same bits on one and two threads, and the pipeline
where it does not apply (dx needed, narrow rows, too many channels, non-finite results). The forward (one-channel
3x3): taken by the three public forward kernels, the twins' values, the fused kernels giving the unfused ones'
bits, the same bits on one and two threads and for non-contiguous inputs, non-finite inputs where the twin has
them, and the pipeline elsewhere."""

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


@pytest.fixture
def forward_taken(monkeypatch):
    """The number of times the direct forward ran."""
    calls = []
    real = direct.forward

    def spy(*args, **kw):
        calls.append(True)
        return real(*args, **kw)

    monkeypatch.setattr(direct, "forward", spy)
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


# ---------------------------------------------------------------------------------------------------------------
# The forward

#: The one-channel 3x3 cases, and wider ones: an output row of two whole vectors and a part (float32: 16 lanes), of
#: exactly one vector, and an odd height and width (a last row and column in no pooling window)
FORWARD_CASES = [c for c in CASES if c[1] == 1 and c[5] == 3] + [(2, 1, 11, 41, 3, 3, 1), (1, 1, 16, 18, 2, 3, 0),
                                                                 (2, 1, 13, 19, 3, 3, 1)]
FORWARD_IDS = [f"N{n}-{h}x{w}-F{f}-p{p}" for n, c, h, w, f, k, p in FORWARD_CASES]
FORWARDS = {"conv": "conv2d_forward", "relu": "conv2d_relu_forward", "relu_maxpool": "conv2d_relu_maxpool_forward"}


def _forward(impl, mode, x, W, b, pad):
    out = getattr(impl, FORWARDS[mode])(x, W, b, 1, pad)
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", FORWARD_CASES, ids=FORWARD_IDS)
def test_forward_matches_the_twin(case, mode, dtype, twin, forward_taken):
    x, W, b, pad, _, _ = _problem(case, dtype, "conv")
    got = _forward(K, mode, x, W, b, pad)
    assert forward_taken == [True]
    for a, r in zip(got, _forward(R, mode, x, W, b, pad), strict=True):
        assert a.dtype == r.dtype and a.shape == r.shape
        if r.dtype == np.uint8:  # argmax: the same window offsets (no ties in random data)
            np.testing.assert_array_equal(a, r)
        else:
            close(a, r, dtype)


@pytest.mark.parametrize("case", FORWARD_CASES, ids=FORWARD_IDS)
def test_forward_fused_gives_the_unfused_bits(case, dtype, forward_taken):
    x, W, b, pad, _, _ = _problem(case, dtype, "conv", seed=3)
    y = K.conv2d_forward(x, W, b, 1, pad)
    r = K.relu_forward(y)
    np.testing.assert_array_equal(K.conv2d_relu_forward(x, W, b, 1, pad), r)
    for a, u in zip(K.conv2d_relu_maxpool_forward(x, W, b, 1, pad), K.maxpool2d_forward(r, 2, 2, 2), strict=True):
        np.testing.assert_array_equal(a, u)
    assert forward_taken == [True] * 3


@pytest.mark.parametrize("mode", MODES)
def test_forward_same_bits_on_one_and_two_threads_and_any_layout(mode, dtype, monkeypatch, forward_taken):
    x, W, b, pad, _, _ = _problem(CASES[4], dtype, "conv", seed=4)
    runs = []
    for work in ("1000000000000", "0"):
        monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", work)
        runs.append(_forward(K, mode, x, W, b, pad))
    Wn = np.ascontiguousarray(W[:, :, ::-1])[:, :, ::-1]
    runs.append(_forward(K, mode, np.asfortranarray(x), Wn, np.repeat(b, 2)[::2], pad))
    assert forward_taken == [True] * 3
    for other in runs[1:]:
        for a, o in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a, o)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan])
def test_forward_non_finite_input_as_the_twin(special, mode, forward_taken):
    """An infinity or NaN in x reaches the outputs whose windows hold it, as in the twin (infinities of both signs
    in one sum make NaN there too); ReLU keeps NaN, and pooling lets it win its window."""
    x, W, b, pad, _, _ = _problem(CASES[1], np.float64, "conv", seed=5)
    x[1, 0, 4, 0] = special
    x[2, 0, 7, 9] = -special
    got = _forward(K, mode, x, W, b, pad)
    ref = _forward(R, mode, x, W, b, pad)
    assert forward_taken == [True]
    assert not np.isfinite(got[0]).all()
    for a, r in zip(got, ref, strict=True):
        if r.dtype == np.uint8:
            np.testing.assert_array_equal(a, r)
            continue
        np.testing.assert_array_equal(np.isnan(a), np.isnan(r))
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(r))
        finite = np.isfinite(r)
        close(a[finite], r[finite], np.float64)


@pytest.mark.parametrize("case", [(2, 1, 17, 15, 3, 3, 1), (2, 2, 18, 18, 3, 3, 1), (2, 1, 20, 20, 3, 5, 0)],
                         ids=["3x3-OW15", "3x3-C2", "5x5"])
def test_forward_elsewhere_takes_another_path(case, forward_taken):
    x, W, b, pad, _, _ = _problem(case, np.float64, "conv")
    close(K.conv2d_relu_forward(x, W, b, 1, pad), R.conv2d_relu_forward(x, W, b, 1, pad), np.float64)
    assert forward_taken == []

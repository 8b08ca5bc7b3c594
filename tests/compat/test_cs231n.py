"""fastnn.compat.cs231n: gradients by central differences, cs231n's formulas, a 30-step training twin, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import backend
from fastnn.compat import cs231n as C
from tests.conftest import TOL, assert_close

RNG = np.random.default_rng


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """cs231n's gradient check: d(sum(f(x) * df))/dx by central differences (x is perturbed in place)."""
    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        old = x[ix]
        x[ix] = old + h
        pos = np.array(f(x), copy=True)
        x[ix] = old - h
        neg = np.array(f(x), copy=True)
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
    return grad


def check(f, args, i, analytic, dout, rtol=1e-6, atol=1e-8):
    """Compare ``analytic`` with the numerical gradient of f(*args) with respect to args[i]."""
    def fi(v):
        a = list(args)
        a[i] = v
        return f(*a)
    num = eval_numerical_gradient_array(fi, args[i].copy(), dout)
    np.testing.assert_allclose(analytic, num, rtol=rtol, atol=atol)
    assert np.abs(num).max() > 1e-6  # the check is not comparing zeros


CONV = {"stride": 2, "pad": 1}
POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}


# ------------------------------------------------------------------------------------------------ gradients


def test_affine_gradients():
    rng = RNG(0)
    x, w, b = rng.standard_normal((4, 2, 3)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    out, cache = C.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x.reshape(4, 6) @ w + b, rtol=1e-14)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = C.affine_backward(dout, cache)
    assert dx.shape == x.shape
    for i, g in enumerate((dx, dw, db)):
        check(lambda *a: C.affine_forward(*a)[0], (x, w, b), i, g, dout)


def test_relu_and_affine_relu_gradients():
    rng = RNG(1)
    x = rng.standard_normal((5, 7))
    x[np.abs(x) < 1e-3] = 0.5
    out, cache = C.relu_forward(x)
    dout = rng.standard_normal(out.shape)
    check(lambda v: C.relu_forward(v)[0], (x,), 0, C.relu_backward(dout, cache), dout)
    w, b = rng.standard_normal((7, 4)), rng.standard_normal(4)
    out, cache = C.affine_relu_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    grads = C.affine_relu_backward(dout, cache)
    for i, g in enumerate(grads):
        check(lambda *a: C.affine_relu_forward(*a)[0], (x, w, b), i, g, dout)


@pytest.mark.parametrize("loss", [C.softmax_loss, C.svm_loss])
def test_loss_gradients(loss):
    rng = RNG(2)
    x = rng.standard_normal((10, 6)) * 0.5
    y = rng.integers(0, 6, 10)
    value, dx = loss(x, y)
    num = eval_numerical_gradient_array(lambda v: loss(v, y)[0], x.copy(), 1.0)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)
    assert np.ndim(value) == 0 and value > 0


def test_softmax_loss_at_chance():
    """cs231n's sanity check: small random scores give a loss near log(C)."""
    rng = RNG(3)
    loss, _ = C.softmax_loss(0.001 * rng.standard_normal((500, 10)), rng.integers(0, 10, 500))
    assert abs(loss - np.log(10)) < 1e-2


@pytest.mark.parametrize("backward", [C.batchnorm_backward, C.batchnorm_backward_alt])
def test_batchnorm_gradients(backward):
    rng = RNG(4)
    x = 5 * rng.standard_normal((6, 4)) + 12
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    out, cache = C.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)

    def fwd(*a):
        return C.batchnorm_forward(*a, {"mode": "train"})[0]
    for i, g in enumerate(grads):
        check(fwd, (x, gamma, beta), i, g, dout, rtol=1e-5)


def test_layernorm_gradients():
    rng = RNG(5)
    x = 5 * rng.standard_normal((4, 7)) - 3
    gamma, beta = rng.standard_normal(7), rng.standard_normal(7)
    out, cache = C.layernorm_forward(x, gamma, beta, {})
    dout = rng.standard_normal(out.shape)
    for i, g in enumerate(C.layernorm_backward(dout, cache)):
        check(lambda *a: C.layernorm_forward(*a, {})[0], (x, gamma, beta), i, g, dout, rtol=1e-5)


def test_spatial_batchnorm_gradients():
    rng = RNG(6)
    x = 4 * rng.standard_normal((2, 3, 4, 5)) + 10
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    out, cache = C.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    dout = rng.standard_normal(out.shape)
    for i, g in enumerate(C.spatial_batchnorm_backward(dout, cache)):
        check(lambda *a: C.spatial_batchnorm_forward(*a, {"mode": "train"})[0], (x, gamma, beta), i, g, dout,
              rtol=1e-5)


def test_spatial_groupnorm_gradients():
    rng = RNG(7)
    x = 4 * rng.standard_normal((2, 6, 4, 5)) + 10
    gamma, beta = rng.standard_normal((1, 6, 1, 1)), rng.standard_normal((1, 6, 1, 1))
    out, cache = C.spatial_groupnorm_forward(x, gamma, beta, 2, {})
    dout = rng.standard_normal(out.shape)
    grads = C.spatial_groupnorm_backward(dout, cache)
    assert grads[1].shape == grads[2].shape == (1, 6, 1, 1)
    for i, g in enumerate(grads):
        check(lambda *a: C.spatial_groupnorm_forward(*a, 2, {})[0], (x, gamma, beta), i, g, dout, rtol=1e-5)


def test_dropout_gradient():
    rng = RNG(8)
    x = rng.standard_normal((10, 10)) + 10
    param = {"mode": "train", "p": 0.2, "seed": 123}
    out, cache = C.dropout_forward(x, param)
    dout = rng.standard_normal(out.shape)
    check(lambda v: C.dropout_forward(v, param)[0], (x,), 0, C.dropout_backward(dout, cache), dout)


@pytest.mark.parametrize("conv_param", [{"stride": 1, "pad": 1}, {"stride": 2, "pad": 1}, {"stride": (1, 2), "pad": 0}])
def test_conv_gradients(conv_param):
    rng = RNG(9)
    x, w, b = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out, cache = C.conv_forward_naive(x, w, b, conv_param)
    dout = rng.standard_normal(out.shape)
    grads = C.conv_backward_naive(dout, cache)
    for i, g in enumerate(grads):
        check(lambda *a: C.conv_forward_fast(*a, conv_param)[0], (x, w, b), i, g, dout)


def test_conv_naive_cache_is_the_starters():
    """The starter documents the naive layer's cache as (x, w, b, conv_param); code unpacks it."""
    rng = RNG(9)
    x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out, cache = C.conv_forward_naive(x, w, b, CONV)
    cx, cw, cb, cparam = cache
    assert cx is x and cw is w and cb is b and cparam is CONV
    dout = rng.standard_normal(out.shape)
    for got, want in zip(C.conv_backward_naive(dout, cache), C.conv_backward_fast(dout, C.conv_forward_fast(
            x, w, b, CONV)[1]), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match=r"conv_backward_naive: cache must be the cache tuple .*length 4"):
        C.conv_backward_naive(dout, cache + (None,))


def test_conv_forward_matches_direct_sum():
    """cs231n's definition: zero padding, cross-correlation, H' = 1 + (H + 2 pad - HH) / stride."""
    rng = RNG(10)
    x, w, b = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    out, _ = C.conv_forward_fast(x, w, b, CONV)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    H2, W2 = 1 + (5 + 2 - 3) // 2, 1 + (6 + 2 - 2) // 2
    expected = np.empty((2, 4, H2, W2))
    for i in range(H2):
        for j in range(W2):
            window = xp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 2]
            expected[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", ["naive", "fast", "reshape", "im2col"])
def test_max_pool_gradients(layer):
    rng = RNG(11)
    x = rng.standard_normal((2, 3, 6, 8))
    forward, backward = getattr(C, f"max_pool_forward_{layer}"), getattr(C, f"max_pool_backward_{layer}")
    out, cache = forward(x, POOL)
    np.testing.assert_array_equal(out, x.reshape(2, 3, 3, 2, 4, 2).max(axis=(3, 5)))
    dout = rng.standard_normal(out.shape)
    check(lambda v: forward(v, POOL)[0], (x,), 0, backward(dout, cache), dout)


def test_conv_bn_relu_gradients_and_composition():
    """cs231n layer_utils: conv_forward_fast -> spatial_batchnorm_forward -> relu_forward; grads in that order."""
    rng = RNG(21)
    x, w, b = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    conv = {"stride": 1, "pad": 1}
    bn_param = {"mode": "train"}
    out, cache = C.conv_bn_relu_forward(x, w, b, gamma, beta, conv, bn_param)
    conv_cache, bn_cache, relu_cache = cache  # cs231n's layout
    a, _ = C.conv_forward_fast(x, w, b, conv)
    an, _ = C.spatial_batchnorm_forward(a, gamma, beta, {"mode": "train"})
    np.testing.assert_array_equal(out, np.maximum(an, 0))
    np.testing.assert_array_equal(relu_cache, an)
    np.testing.assert_allclose(bn_param["running_mean"], 0.1 * a.mean(axis=(0, 2, 3)), rtol=1e-12)
    dout = rng.standard_normal(out.shape)
    grads = C.conv_bn_relu_backward(dout, cache)
    assert [g.shape for g in grads] == [x.shape, w.shape, b.shape, gamma.shape, beta.shape]
    np.testing.assert_allclose(grads[2], 0, atol=1e-12)  # a bias before batch norm has no effect
    for i, g in enumerate(grads):
        if i == 2:
            continue
        check(lambda *v: C.conv_bn_relu_forward(*v, conv, {"mode": "train"})[0], (x, w, b, gamma, beta), i, g, dout,
              rtol=1e-5)
    with pytest.raises(ValueError, match="spatial_batchnorm_backward: cache must be a cache from a 'train' mode"):
        C.conv_bn_relu_backward(dout, C.conv_bn_relu_forward(x, w, b, gamma, beta, conv, {"mode": "test"})[1])


def test_conv_relu_and_conv_relu_pool_gradients():
    rng = RNG(12)
    x, w, b = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((3, 3, 3, 3)), rng.standard_normal(3)
    conv = {"stride": 1, "pad": 1}
    out, cache = C.conv_relu_forward(x, w, b, conv)
    dout = rng.standard_normal(out.shape)
    for i, g in enumerate(C.conv_relu_backward(dout, cache)):
        check(lambda *a: C.conv_relu_forward(*a, conv)[0], (x, w, b), i, g, dout)
    out, cache = C.conv_relu_pool_forward(x, w, b, conv, POOL)
    assert out.shape == (2, 3, 4, 4)
    dout = rng.standard_normal(out.shape)
    for i, g in enumerate(C.conv_relu_pool_backward(dout, cache)):
        check(lambda *a: C.conv_relu_pool_forward(*a, conv, POOL)[0], (x, w, b), i, g, dout)


# ------------------------------------------------------------------------------------------------ fast_layers.py
# Oracles written from cs231n's fast_layers.py behaviour: a direct-sum convolution, the reshape layer's tie split
# (the window's gradient divided by its number of maxima; 0/0 = NaN for a NaN window), the im2col layer's
# np.argmax (first maximum, windows ordered (oh, ow, n, c)).


def _conv_oracle(x, w, b, dout, stride, pad):
    """out, dx, dw, db of a zero-padded cross-correlation, by a loop over output positions (float64)."""
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    OH, OW = 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride
    out, dxp, dw = np.empty((N, F, OH, OW)), np.zeros_like(xp), np.zeros(w.shape)
    for i in range(OH):
        for j in range(OW):
            rows, cols = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            out[:, :, i, j] = np.tensordot(xp[:, :, rows, cols], w, axes=([1, 2, 3], [1, 2, 3])) + b
            if dout is not None:
                dw += np.tensordot(dout[:, :, i, j], xp[:, :, rows, cols], axes=([0], [0]))
                dxp[:, :, rows, cols] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    if dout is None:
        return out
    return out, dxp[:, :, pad:pad + H, pad:pad + W], dw, dout.sum(axis=(0, 2, 3))


def _windows(shape, ph, pw, stride):
    N, C_, H, W = shape
    for i in range((H - ph) // stride + 1):
        for j in range((W - pw) // stride + 1):
            yield i, j, (slice(i * stride, i * stride + ph), slice(j * stride, j * stride + pw))


def _reshape_backward_oracle(x, dout, size):
    dx = np.zeros_like(x)
    dout = dout.astype(x.dtype)
    for i, j, (rows, cols) in _windows(x.shape, size, size, size):
        for n, c in np.ndindex(x.shape[:2]):
            window = x[n, c, rows, cols]
            hits = window == window.max()
            k = hits.sum()
            dx[n, c, rows, cols] = np.where(hits, dout[n, c, i, j], 0) / x.dtype.type(k) if k else np.nan
    return dx


def _first_max_oracle(x, dout, ph, pw, stride):
    """out, dx and cs231n's x_cols_argmax of first-maximum pooling (np.argmax also stops at the first NaN)."""
    N, C_, H, W = x.shape
    OH, OW = (H - ph) // stride + 1, (W - pw) // stride + 1
    out, dx = np.empty((N, C_, OH, OW), x.dtype), np.zeros_like(x)
    cols_argmax = np.empty((OH, OW, N, C_), np.intp)
    for i, j, (rows, cols) in _windows(x.shape, ph, pw, stride):
        for n, c in np.ndindex(N, C_):
            window = x[n, c, rows, cols]
            k = np.argmax(window)
            cols_argmax[i, j, n, c] = k
            out[n, c, i, j] = window.flat[k]
            dx[n, c, rows, cols][np.unravel_index(k, window.shape)] += dout[n, c, i, j]
    return out, dx, cols_argmax.reshape(-1)


CONV_LAYERS = ["fast", "strides", "im2col", "naive"]


@pytest.mark.parametrize("layer", CONV_LAYERS)
@pytest.mark.parametrize(("xs", "ws", "stride", "pad"), [
    ((2, 3, 7, 7), (4, 3, 3, 3), 2, 1),
    ((2, 3, 8, 8), (4, 3, 3, 3), 1, 1),  # 3x3 stride 1: fastnn's Winograd path
    ((3, 2, 6, 9), (5, 2, 3, 2), 1, 0),  # non-square filters
    ((2, 2, 5, 5), (3, 2, 1, 1), 2, 0),
], ids=["3x3s2p1", "3x3s1p1", "3x2", "1x1s2"])
def test_conv_layers_match_direct_sum(layer, xs, ws, stride, pad):
    rng = RNG(30)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    conv_param = {"stride": stride, "pad": pad}
    out, cache = getattr(C, f"conv_forward_{layer}")(x, w, b, conv_param)
    assert len(cache) == (4 if layer == "naive" else 5)  # the naive layer: the starter's (x, w, b, conv_param)
    assert all(c is v for c, v in zip(cache[:4], (x, w, b, conv_param), strict=True))
    dout = rng.standard_normal(out.shape)
    grads = getattr(C, f"conv_backward_{layer}")(dout, cache)
    for ours, theirs in zip((out, *grads), _conv_oracle(x, w, b, dout, stride, pad), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", CONV_LAYERS)
def test_conv_layers_keep_float32(layer):
    rng = RNG(31)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 6, 6), (2, 3, 3, 3), (2,)))
    out, cache = getattr(C, f"conv_forward_{layer}")(x, w, b, {"stride": 1, "pad": 1})
    grads = getattr(C, f"conv_backward_{layer}")(np.ones_like(out), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    np.testing.assert_allclose(out, _conv_oracle(x, w, b, None, 1, 1), rtol=1e-4, atol=1e-5)


def test_conv_im2col_requires_tiling_windows_strides_does_not():
    rng = RNG(32)
    x, w, b = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2)
    conv_param = {"stride": 2, "pad": 1}  # W + 2 - 3 = 6 tiles, H + 2 - 3 = 5 does not
    with pytest.raises(ValueError, match=r"conv_forward_im2col: conv_param\['stride'\] must be a divisor of "
                                         r"H \+ 2\*pad - HH = 5 .*, got 2"):
        C.conv_forward_im2col(x, w, b, conv_param)
    x = x.transpose(0, 1, 3, 2)  # now the width fails, and it is checked first, as cs231n does
    with pytest.raises(ValueError, match=r"W \+ 2\*pad - WW = 5"):
        C.conv_forward_im2col(x, w, b, conv_param)
    for layer in ("strides", "fast"):  # the last row/column of windows is dropped
        out, _ = getattr(C, f"conv_forward_{layer}")(x, w, b, conv_param)
        assert out.shape == (2, 2, 4, 3)
        np.testing.assert_allclose(out, _conv_oracle(x, w, b, None, 2, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", ["fast", "reshape"])
@pytest.mark.parametrize(("shape", "size"), [((2, 3, 8, 6), 2), ((3, 2, 9, 6), 3), ((1, 2, 4, 4), 4),
                                             ((2, 2, 3, 5), 1)])
def test_max_pool_reshape_splits_ties(path, shape, size, dtype):
    """cs231n's max_pool_backward_reshape: mask of the maxima, then dx /= number of maxima per window."""
    rng = RNG(33)
    x = rng.integers(-1, 2, shape).astype(dtype)  # three values: most windows hold ties
    pool_param = {"pool_height": size, "pool_width": size, "stride": size}
    out, cache = getattr(C, f"max_pool_forward_{path}")(x, pool_param)
    if path == "fast":
        assert cache[0] == "reshape"
        cache_reshape = cache[1]
    else:
        cache_reshape = cache
    cx, x_reshaped, cout = cache_reshape  # cs231n's (x, x_reshaped, out)
    assert cx is x and cout is out and np.shares_memory(x_reshaped, x)
    np.testing.assert_array_equal(x_reshaped, x.reshape(shape[0], shape[1], shape[2] // size, size, -1, size))
    np.testing.assert_array_equal(out, x_reshaped.max(axis=(3, 5)))
    for dout_dtype in (np.float64, np.float32):  # dx is written in x's dtype, as cs231n's zeros_like(x_reshaped)
        dout = rng.standard_normal(out.shape).astype(dout_dtype)
        dx = getattr(C, f"max_pool_backward_{path}")(dout, cache)
        assert dx.dtype == dtype
        np.testing.assert_array_equal(dx, _reshape_backward_oracle(x, dout, size))
    tied = (x_reshaped == out[:, :, :, None, :, None]).sum(axis=(3, 5)) > 1
    assert size == 1 or tied.mean() > 0.2  # the test exercises ties


def test_max_pool_reshape_nan_window_is_nan():
    x = np.array([[1, 2, 5, 5], [2, np.nan, 0, 5]])[None, None]
    out, cache = C.max_pool_forward_fast(x, POOL)
    np.testing.assert_array_equal(out[0, 0], [[np.nan, 5]])
    dx = C.max_pool_backward_fast(np.array([[[[1.0, 6.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[np.nan, np.nan, 2, 2], [np.nan, np.nan, 0, 2]])  # cs231n's 0/0


@pytest.mark.parametrize("path", ["fast", "im2col"])
@pytest.mark.parametrize(("shape", "ph", "pw", "stride"), [
    ((2, 3, 7, 7), 3, 3, 2), ((2, 2, 5, 6), 2, 2, 1), ((1, 3, 6, 5), 2, 3, 2), ((2, 2, 4, 7), 1, 3, 1),
    ((2, 1, 5, 5), 3, 3, 1),
])
def test_max_pool_im2col_first_maximum(path, shape, ph, pw, stride, dtype):
    """cs231n's im2col layer: np.argmax per window column (first maximum), gradients of overlaps add up."""
    rng = RNG(34)
    x = rng.integers(-1, 2, shape).astype(dtype)
    x.flat[::17] = np.nan  # np.argmax stops at the first NaN
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out, cache = getattr(C, f"max_pool_forward_{path}")(x, pool_param)
    if path == "fast":
        assert cache[0] == "im2col"
        cache_im2col = cache[1]
    else:
        cache_im2col = cache
    dout = rng.standard_normal(out.shape)
    ref_out, ref_dx, ref_cols_argmax = _first_max_oracle(x, dout.astype(dtype), ph, pw, stride)
    np.testing.assert_array_equal(out, ref_out)
    cx, x_cols, cols_argmax, cparam = cache_im2col  # cs231n's (x, x_cols, x_cols_argmax, pool_param)
    assert cx is x and x_cols is None and cparam is pool_param
    assert cols_argmax.dtype == np.intp
    np.testing.assert_array_equal(cols_argmax, ref_cols_argmax)
    dx = getattr(C, f"max_pool_backward_{path}")(dout, cache)
    assert dx.dtype == dtype
    assert_close(dx, ref_dx, dtype)


@pytest.mark.parametrize(("shape", "pool_param", "method"), [
    ((2, 2, 8, 8), {"pool_height": 2, "pool_width": 2, "stride": 2}, "reshape"),
    ((2, 2, 9, 6), {"pool_height": 3, "pool_width": 3, "stride": 3}, "reshape"),
    ((2, 2, 7, 8), {"pool_height": 2, "pool_width": 2, "stride": 2}, "im2col"),  # H does not tile
    ((2, 2, 8, 8), {"pool_height": 2, "pool_width": 2, "stride": 1}, "im2col"),  # overlapping
    ((2, 2, 8, 8), {"pool_height": 2, "pool_width": 4, "stride": 2}, "im2col"),  # not square
])
def test_max_pool_fast_dispatch(shape, pool_param, method):
    x = RNG(35).integers(-1, 2, shape).astype(np.float64)
    out, cache = C.max_pool_forward_fast(x, pool_param)
    assert cache[0] == method
    dout = RNG(36).standard_normal(out.shape)
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    expected = _reshape_backward_oracle(x, dout, ph) if method == "reshape" else _first_max_oracle(
        x, dout, ph, pw, stride)[1]
    np.testing.assert_allclose(C.max_pool_backward_fast(dout, cache), expected, rtol=1e-15)


def test_max_pool_naive_first_maximum_and_cache():
    """The starter's naive layer: cache (x, pool_param); students' backward gives a window to one argmax."""
    x = RNG(37).integers(-1, 2, (2, 3, 8, 6)).astype(np.float32)
    out, cache = C.max_pool_forward_naive(x, POOL)
    assert cache[0] is x and cache[1] is POOL and len(cache) == 2
    dout = RNG(38).standard_normal(out.shape)
    ref_out, ref_dx, _ = _first_max_oracle(x, dout.astype(np.float32), 2, 2, 2)
    np.testing.assert_array_equal(out, ref_out)
    dx = C.max_pool_backward_naive(dout, cache)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, ref_dx)
    assert not np.array_equal(dx, C.max_pool_backward_fast(dout, C.max_pool_forward_fast(x, POOL)[1]))  # ties


# ------------------------------------------------------------------------------------------------ cs231n semantics


def test_batchnorm_train_and_test_modes():
    rng = RNG(13)
    x = 3 * rng.standard_normal((200, 3)) + np.array([-2.0, 5.0, 9.0])
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])
    bn_param = {"mode": "train"}
    out, _ = C.batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), gamma * np.sqrt(x.var(0) / (x.var(0) + 1e-5)), rtol=1e-12)
    # running statistics created as zeros and updated in place: 0.9 * 0 + 0.1 * batch
    np.testing.assert_allclose(bn_param["running_mean"], 0.1 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn_param["running_var"], 0.1 * x.var(axis=0), rtol=1e-12)
    bn_param["mode"] = "test"
    out_test, cache = C.batchnorm_forward(x, gamma, beta, bn_param)
    rm, rv = bn_param["running_mean"], bn_param["running_var"]
    np.testing.assert_allclose(out_test, (x - rm) / np.sqrt(rv + 1e-5) * gamma + beta, rtol=1e-12)
    assert cache is None


def test_batchnorm_custom_eps_momentum_and_float32():
    x = RNG(14).standard_normal((50, 4)).astype(np.float32)
    rm = np.ones(4, np.float32)
    bn_param = {"mode": "train", "eps": 1e-3, "momentum": 0.5, "running_mean": rm, "running_var": np.ones(4)}
    out, _ = C.batchnorm_forward(x, np.ones(4, np.float32), np.zeros(4, np.float32), bn_param)
    assert out.dtype == np.float32 and bn_param["running_mean"].dtype == np.float32
    np.testing.assert_allclose(bn_param["running_mean"], 0.5 + 0.5 * x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(out, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), rtol=1e-4, atol=1e-5)


def test_dropout_semantics():
    x = RNG(15).standard_normal((500, 500)) + 10
    for p in (0.25, 0.4, 0.7):
        out, (param, mask) = C.dropout_forward(x, {"mode": "train", "p": p})
        kept = out != 0
        np.testing.assert_array_equal(kept, mask)
        np.testing.assert_allclose(out[kept], x[kept] / p, rtol=1e-15)
        assert abs(kept.mean() - p) < 5 * np.sqrt(p * (1 - p) / x.size)  # keep probability p, 5 sigma
        out_test, cache = C.dropout_forward(x, {"mode": "test", "p": p})
        np.testing.assert_array_equal(out_test, x)
        np.testing.assert_array_equal(C.dropout_backward(x, cache), x)
    same = [C.dropout_forward(x, {"mode": "train", "p": 0.5, "seed": 7})[0] for _ in range(2)]
    np.testing.assert_array_equal(*same)
    np.random.seed(0)  # noqa: NPY002 - cs231n code controls dropout through the legacy global generator
    a = C.dropout_forward(x, {"mode": "train", "p": 0.5})[0]
    np.random.seed(0)  # noqa: NPY002
    b = C.dropout_forward(x, {"mode": "train", "p": 0.5})[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, C.dropout_forward(x, {"mode": "train", "p": 0.5})[0])


def _cs231n_rules():
    """cs231n's update rules written out as in the assignment's solutions (the oracle)."""
    def sgd_momentum(w, dw, config):
        v = config.get("velocity", np.zeros_like(w))
        v = config.get("momentum", 0.9) * v - config.get("learning_rate", 1e-2) * dw
        config["velocity"] = v
        return w + v

    def rmsprop(w, dw, config):
        dr, eps, lr = config.get("decay_rate", 0.99), config.get("epsilon", 1e-8), config.get("learning_rate", 1e-2)
        cache = dr * config.get("cache", np.zeros_like(w)) + (1 - dr) * dw**2
        config["cache"] = cache
        return w - lr * dw / (np.sqrt(cache) + eps)

    def adam(w, dw, config):
        b1, b2 = config.get("beta1", 0.9), config.get("beta2", 0.999)
        eps, lr = config.get("epsilon", 1e-8), config.get("learning_rate", 1e-3)
        t = config.get("t", 0) + 1
        m = b1 * config.get("m", np.zeros_like(w)) + (1 - b1) * dw
        v = b2 * config.get("v", np.zeros_like(w)) + (1 - b2) * dw**2
        config.update(m=m, v=v, t=t)
        return w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)

    return {"sgd_momentum": sgd_momentum, "rmsprop": rmsprop, "adam": adam}


@pytest.mark.parametrize("rule", ["sgd_momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("start", ["defaults", "notebook"])
def test_update_rules_match_cs231n_formulas(rule, start):
    """The notebook's check: N, D = 4, 5 linspace inputs, then 30 more steps from the returned config."""
    N, D = 4, 5
    w = np.linspace(-0.4, 0.6, num=N * D).reshape(N, D)
    dw = np.linspace(-0.6, 0.4, num=N * D).reshape(N, D)
    state = np.linspace(0.6, 0.9, num=N * D).reshape(N, D)
    ours, theirs = {}, {}
    if start == "notebook":
        key = {"sgd_momentum": "velocity", "rmsprop": "cache", "adam": "m"}[rule]
        for cfg in (ours, theirs):
            cfg.update({"learning_rate": 1e-2, key: state.copy()})
            if rule == "adam":
                cfg.update(v=np.linspace(0.7, 0.5, num=N * D).reshape(N, D), t=5)
    w_ours, w_theirs = w.copy(), w.copy()
    rng = RNG(16)
    for step in range(31):
        g = dw if step == 0 else rng.standard_normal((N, D))
        w_in, w_in_copy = w_ours, w_ours.copy()
        w_ours, ours = getattr(C, rule)(w_in, g, ours)
        np.testing.assert_array_equal(w_in, w_in_copy)  # next_w is a new array, w is kept
        w_theirs = _cs231n_rules()[rule](w_theirs, g, theirs)
        np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-12, atol=1e-15)
    for k, v in theirs.items():
        np.testing.assert_allclose(ours[k], v, rtol=1e-12, atol=1e-15)


def test_update_rules_leave_w_and_return_defaults():
    w, dw = np.ones(3), np.full(3, 2.0)
    for rule, defaults in [("sgd_momentum", {"learning_rate": 1e-2, "momentum": 0.9}),
                           ("rmsprop", {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}),
                           ("adam", {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 1})]:
        w0 = w.copy()
        next_w, config = getattr(C, rule)(w, dw)
        np.testing.assert_array_equal(w, w0)
        assert next_w is not w and not np.array_equal(next_w, w)
        for k, v in defaults.items():
            assert config[k] == v
    next_w, config = C.sgd(w, dw)
    assert next_w is w and config["learning_rate"] == 1e-2
    np.testing.assert_allclose(w, 1 - 2e-2)


def test_update_rules_keep_float32():
    w = np.ones(5, np.float32)
    for rule in ("sgd", "sgd_momentum", "rmsprop", "adam"):
        next_w, config = getattr(C, rule)(w.copy(), np.ones(5))
        assert next_w.dtype == np.float32
        assert all(v.dtype == np.float32 for v in config.values() if isinstance(v, np.ndarray))


# ------------------------------------------------------------------------------------------------ training twin


def _init(dtype, seed=0):
    rng = RNG(seed)
    p = {
        "W1": 0.3 * rng.standard_normal((6, 3, 3, 3)), "b1": np.zeros(6),
        "W2": 0.1 * rng.standard_normal((6 * 4 * 4, 20)), "b2": np.zeros(20),
        "gamma2": np.ones(20), "beta2": np.zeros(20),
        "W3": 0.1 * rng.standard_normal((20, 5)), "b3": np.zeros(5),
    }
    return {k: v.astype(dtype) for k, v in p.items()}


def _train(params, X, y, update, steps=30):
    """conv-relu-pool -> affine -> batchnorm -> relu -> dropout -> affine -> softmax, cs231n style."""
    conv, pool = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
    bn_param, configs, losses = {"mode": "train"}, {k: {} for k in params}, []
    for step in range(steps):
        a1, c1 = C.conv_relu_pool_forward(X, params["W1"], params["b1"], conv, pool)
        a2, c2 = C.affine_forward(a1, params["W2"], params["b2"])
        a3, c3 = C.batchnorm_forward(a2, params["gamma2"], params["beta2"], bn_param)
        a4, c4 = C.relu_forward(a3)
        a5, c5 = C.dropout_forward(a4, {"mode": "train", "p": 0.8, "seed": step})
        scores, c6 = C.affine_forward(a5, params["W3"], params["b3"])
        loss, dscores = C.softmax_loss(scores, y)
        losses.append(float(loss))
        grads = {}
        d5, grads["W3"], grads["b3"] = C.affine_backward(dscores, c6)
        d3, grads["gamma2"], grads["beta2"] = C.batchnorm_backward_alt(
            C.relu_backward(C.dropout_backward(d5, c5), c4), c3)
        d1, grads["W2"], grads["b2"] = C.affine_backward(d3, c2)
        _, grads["W1"], grads["b1"] = C.conv_relu_pool_backward(d1, c1)
        for k in params:
            assert grads[k].dtype == params[k].dtype
            if k == "b2":  # a bias before batchnorm has zero gradient: adaptive rules would amplify rounding noise
                np.testing.assert_allclose(grads[k], 0, atol=1e-5)
                continue
            params[k], configs[k] = update(params[k], grads[k], configs[k])
    return np.array(losses), bn_param


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_training_matches_reference_twin(rule, dtype, twin):
    rng = RNG(17)
    X = rng.standard_normal((16, 3, 8, 8)).astype(dtype)
    y = rng.integers(0, 5, 16)
    lr = {"sgd": 0.05, "sgd_momentum": 0.02, "rmsprop": 1e-3, "adam": 3e-3}[rule]

    def update(w, dw, config):
        config.setdefault("learning_rate", lr)
        return getattr(C, rule)(w, dw, config)

    fast, bn_fast = _train(_init(dtype), X, y, update)
    with backend.using("reference"):
        slow, bn_slow = _train(_init(dtype), X, y, update)
    # float32 rounding differences grow over 30 optimisation steps: 1e-4 relative is ~ 1000 ulp of the loss
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else TOL[dtype]
    np.testing.assert_allclose(fast, slow, **tol)
    np.testing.assert_allclose(bn_fast["running_mean"], bn_slow["running_mean"], **tol)
    assert fast[-1] < 0.7 * fast[0]  # it trains


# ------------------------------------------------------------------------------------------------ bad input


BAD = [
    (lambda: C.affine_forward(np.ones((2, 5)), np.ones((6, 3)), np.ones(3)), ValueError, "affine_forward: x must be"),
    (lambda: C.affine_forward(np.ones((2, 6)), np.ones((6, 3)), np.ones(4)), ValueError, "affine_forward: b must be"),
    (lambda: C.affine_forward(np.ones((2, 6)), np.ones(6, complex), np.ones(4)), TypeError,
     "affine_forward: w must be"),
    (lambda: C.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3), {"mode": "eval"}), ValueError,
     r"batchnorm_forward: bn_param\['mode'\] must be 'train' or 'test'"),
    (lambda: C.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3), {}), ValueError,
     "batchnorm_forward: bn_param must be a dict with key 'mode'"),
    (lambda: C.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3), None), TypeError,
     "batchnorm_forward: bn_param must be a dict"),
    (lambda: C.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3), {"mode": "train", "eps": 0}),
     ValueError, r"batchnorm_forward: bn_param\['eps'\] must be"),
    (lambda: C.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3),
                                 {"mode": "train", "running_mean": np.zeros(4)}),
     ValueError, r"batchnorm_forward: bn_param\['running_mean'\] must be of shape \(3,\)"),
    (lambda: C.batchnorm_backward(np.ones((2, 3)), None), ValueError,
     "batchnorm_backward: cache must be a cache from a 'train' mode forward"),
    (lambda: C.spatial_groupnorm_forward(np.ones((1, 4, 2, 2)), np.ones(4), np.zeros((1, 4, 1, 1)), 2, {}),
     ValueError, r"spatial_groupnorm_forward: gamma must be of shape \(1, 4, 1, 1\)"),
    (lambda: C.spatial_groupnorm_forward(np.ones((1, 4, 2, 2)), np.ones((1, 4, 1, 1)), np.zeros((1, 4, 1, 1)),
                                         0, {}), ValueError, "spatial_groupnorm_forward: G must be >= 1"),
    (lambda: C.dropout_forward(np.ones(3), {"mode": "train", "p": 0.0}), ValueError,
     r"dropout_forward: dropout_param\['p'\] must be a finite number > 0"),
    (lambda: C.dropout_forward(np.ones(3), {"mode": "train"}), ValueError,
     "dropout_forward: dropout_param must be a dict with key 'p'"),
    (lambda: C.conv_forward_fast(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), np.ones(1), {"stride": 1}),
     ValueError, "conv_forward_fast: conv_param must be a dict with key 'pad'"),
    (lambda: C.max_pool_forward_fast(np.ones((1, 1, 4, 4)), {"pool_height": 2, "stride": 2}), ValueError,
     "max_pool_forward_fast: pool_param must be a dict with key 'pool_width'"),
    (lambda: C.affine_backward(np.ones((2, 3)), "cache"), TypeError, "affine_backward: cache must be"),
    (lambda: C.conv_forward_im2col(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), np.ones(1), {"stride": 2, "pad": 0}),
     ValueError, r"conv_forward_im2col: conv_param\['stride'\] must be a divisor of W \+ 2\*pad - WW = 1"),
    (lambda: C.max_pool_forward_reshape(np.ones((1, 1, 4, 4)), {"pool_height": 2, "pool_width": 2, "stride": 1}),
     ValueError, "max_pool_forward_reshape: pool_param must be square pools with stride = pool size"),
    (lambda: C.max_pool_forward_reshape(np.ones((1, 1, 4, 5)), POOL), ValueError,
     r"max_pool_forward_reshape: x must be of height and width multiples of the pool size 2 .*, got shape "
     r"\(1, 1, 4, 5\)"),
    (lambda: C.max_pool_forward_reshape(np.ones((1, 1, 4, 4)), {"pool_height": 2, "pool_width": 2, "stride": 2.0}),
     TypeError, r"max_pool_forward_reshape: pool_param\['stride'\] must be"),
    (lambda: C.max_pool_forward_im2col(np.ones((1, 1, 5, 4)), POOL), ValueError,
     r"max_pool_forward_im2col: pool_param\['stride'\] must be a divisor of H - pool_height = 3 .*, got 2"),
    (lambda: C.max_pool_backward_fast(np.ones((1, 1, 2, 2)), ("strides", None)), ValueError,
     "max_pool_backward_fast: cache\\[0\\] must be 'reshape' or 'im2col'"),
    (lambda: C.max_pool_backward_fast(np.ones((1, 1, 2, 2)), C.max_pool_forward_naive(np.ones((1, 1, 4, 4)), POOL)[1]),
     TypeError, "max_pool_backward_fast: cache\\[0\\] must be 'reshape' or 'im2col'"),
    (lambda: C.max_pool_backward_reshape(np.ones((1, 1, 2, 3)), C.max_pool_forward_reshape(np.ones((1, 1, 4, 4)),
                                                                                           POOL)[1]),
     ValueError, "maxpool2d_backward: dout must be"),
    (lambda: C.sgd(np.ones(3), np.ones(3), [1]), TypeError, "sgd: config must be a dict or None"),
    (lambda: C.adam(np.ones(3), np.ones(4)), ValueError, r"adam: dw must be of shape \(3,\)"),
    (lambda: C.adam(np.ones(3), np.ones(3), {"m": np.zeros(2)}), ValueError, r"adam: config\['m'\] must be of shape"),
    (lambda: C.adam(np.ones(3), np.ones(3), {"beta1": 1.0}), ValueError, r"adam: config\['beta1'\] must be"),
    (lambda: C.rmsprop(np.ones(3), np.ones(3), {"learning_rate": -1.0}), ValueError,
     r"rmsprop: config\['learning_rate'\] must be a finite number > 0"),
    (lambda: C.sgd_momentum(np.ones(3), np.ones(3), {"momentum": 1.0}), ValueError,
     r"sgd_momentum: config\['momentum'\] must be"),
    (lambda: C.rmsprop(np.ones(3), np.ones(3), {"epsilon": 0.0}), ValueError, r"rmsprop: config\['epsilon'\] must be"),
    (lambda: C.adam(np.ones(3), np.ones(3), {"t": -1}), ValueError, r"adam: config\['t'\] must be >= 0"),
]


@pytest.mark.parametrize(("call", "exc", "match"), BAD, ids=[b[2].split(":")[0] + f"-{i}" for i, b in enumerate(BAD)])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_failed_update_writes_nothing():
    w = np.ones(3)
    config = {"learning_rate": 0.0}
    with pytest.raises(ValueError, match=r"sgd: config\['learning_rate'\] must be a finite number > 0"):
        C.sgd(w, np.ones(3), config)
    np.testing.assert_array_equal(w, 1.0)
    m = np.full(3, 0.5)
    config = {"beta2": 1.0, "t": 4, "m": m}
    with pytest.raises(ValueError):
        C.adam(w, np.ones(3), config)
    assert config["t"] == 4 and config["m"] is m and (m == 0.5).all()

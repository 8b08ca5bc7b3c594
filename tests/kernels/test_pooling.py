"""fastnn.kernels.pooling against fastnn.reference.pooling, hand-computed cases, edge values and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastnn.kernels import pooling as K
from fastnn.reference import pooling as R
from tests.conftest import assert_close

# (N, C, H, W), pool_h, pool_w, stride, pad
GEOMETRIES = [
    ((1, 1, 4, 4), 2, 2, None, 0),  # batch 1, one channel, 2x2 s2 fast path
    ((2, 3, 8, 8), 2, 2, None, 0),
    ((2, 3, 7, 9), 2, 2, None, 0),  # odd H and W: last row/column in no window (fast path)
    ((3, 2, 5, 7), 1, 1, None, 0),  # 1x1: identity
    ((2, 3, 9, 8), 3, 3, None, 0),  # 3x3 s3, W does not tile
    ((2, 2, 7, 9), 3, 3, 2, 1),  # overlapping windows with padding
    ((2, 2, 6, 5), 2, 3, 1, (1, 1)),  # non-square pool, stride 1, pad on both axes
    ((1, 3, 10, 6), 3, 2, (2, 1), (1, 0)),  # stride and pad as (v, h) pairs
    ((2, 2, 8, 8), 2, 2, 1, 0),  # 2x2 stride 1: every element in up to four windows
    ((2, 2, 8, 8), 2, 2, 2, 1),  # 2x2 s2 with padding (general path)
    ((2, 1, 11, 10), 3, 3, 3, 1),
    ((2, 2, 5, 5), 2, 2, 3, 0),  # stride > pool: gaps no window covers
    ((1, 1, 1, 1), 1, 1, 1, 0),
    ((1, 2, 3, 12), 3, 2, (1, 3), (1, 1)),
    ((0, 3, 4, 4), 2, 2, None, 0),  # empty batch
    ((2, 0, 4, 4), 2, 2, None, 0),  # no channels
]
IDS = [f"{s}-p{ph}x{pw}-s{st_}-pad{pd}" for s, ph, pw, st_, pd in GEOMETRIES]


def _data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _out_shape(shape, ph, pw, stride, pad):
    out, _ = R.maxpool2d_forward(np.zeros(shape), ph, pw, stride, pad)
    return out.shape


@pytest.mark.parametrize(("shape", "ph", "pw", "stride", "pad"), GEOMETRIES, ids=IDS)
def test_maxpool_matches_reference(shape, ph, pw, stride, pad, dtype, twin):
    x = _data(shape, dtype)
    out, argmax = K.maxpool2d_forward(x, ph, pw, stride, pad)
    ref_out, ref_argmax = R.maxpool2d_forward(x, ph, pw, stride, pad)
    assert out.dtype == dtype and argmax.dtype == np.uint8
    assert out.shape == ref_out.shape == argmax.shape
    np.testing.assert_array_equal(out, ref_out)  # a max is exact: no rounding to tolerate
    np.testing.assert_array_equal(argmax, ref_argmax)
    dout = _data(out.shape, dtype, seed=1)
    dx = K.maxpool2d_backward(dout, argmax, shape, ph, pw, stride, pad)
    assert dx.shape == shape
    assert_close(dx, R.maxpool2d_backward(dout, ref_argmax, shape, ph, pw, stride, pad), dtype)


@pytest.mark.parametrize(("shape", "ph", "pw", "stride", "pad"), GEOMETRIES, ids=IDS)
def test_maxpool_split_matches_reference(shape, ph, pw, stride, pad, dtype, twin):
    x = np.random.default_rng(2).integers(-2, 3, shape).astype(dtype)  # small integers: many ties
    out, _ = R.maxpool2d_forward(x, ph, pw, stride, pad)
    dout = _data(out.shape, dtype, seed=1)
    dx = K.maxpool2d_backward(dout, None, shape, ph, pw, stride, pad, ties="split", x=x)
    assert dx.shape == shape
    assert_close(dx, R.maxpool2d_backward(dout, None, shape, ph, pw, stride, pad, ties="split", x=x), dtype)
    # shares of a window add up to its gradient, and only maxima receive any
    assert_close(dx.sum(), dout.sum(), dtype, atol=1e-5 if dtype == np.float32 else 1e-12)
    first = K.maxpool2d_backward(dout, K.maxpool2d_forward(x, ph, pw, stride, pad)[1], shape, ph, pw, stride, pad)
    assert np.all((dx != 0) >= (first != 0))


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_maxpool_split_hand_computed(mod, twin):
    nan, inf = np.nan, np.inf
    x = np.array([[1, 3, 7, 7, -inf, -inf, 2, 0, 9],
                  [3, 0, 7, 7, -inf, -inf, nan, 2, 9],
                  [4, 4, 5, 4, inf, 1, nan, nan, 9]], dtype=np.float32)[None, None]
    dout = np.array([[[[1, 3, 6, 2]]]], np.float32)
    dx = mod.maxpool2d_backward(dout, None, x.shape, 2, 2, ties="split", x=x)
    assert dx.dtype == np.float32
    # two maxima share 1, four share 3, four -inf share 6, a NaN window is NaN throughout (cs231n's 0/0);
    # the last row and column are in no window
    np.testing.assert_array_equal(dx[0, 0], [[0, 0.5, 0.75, 0.75, 1.5, 1.5, nan, nan, 0],
                                             [0.5, 0, 0.75, 0.75, 1.5, 1.5, nan, nan, 0],
                                             [0, 0, 0, 0, 0, 0, 0, 0, 0]])
    # a share is one division in dout's dtype: 1/3 rounded once in float32
    x3 = np.array([[[[2, 2], [2, 1]]]], np.float64)
    dx3 = mod.maxpool2d_backward(np.ones((1, 1, 1, 1), np.float32), None, x3.shape, 2, 2, ties="split", x=x3)
    assert dx3.dtype == np.float32
    np.testing.assert_array_equal(dx3[0, 0], np.array([[1, 1], [1, 0]], np.float32) * (np.float32(1) / np.float32(3)))


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_maxpool_split_overlapping_windows_and_padding(mod, twin):
    x = np.ones((1, 1, 3, 3))
    dx = mod.maxpool2d_backward(np.ones((1, 1, 3, 3)), None, x.shape, 3, 3, stride=1, pad=1, ties="split", x=x)
    # padding never counts: corner windows hold 4 inputs, edge windows 6, the centre window 9
    corner, edge, centre = 1 / 4, 1 / 6, 1 / 9
    expected = [[corner + 2 * edge + centre, 2 * corner + 2 * edge + centre + edge, corner + 2 * edge + centre],
                [2 * corner + 3 * edge + centre, 4 * corner + 4 * edge + centre, 2 * corner + 3 * edge + centre],
                [corner + 2 * edge + centre, 2 * corner + 3 * edge + centre, corner + 2 * edge + centre]]
    np.testing.assert_allclose(dx[0, 0], expected, rtol=1e-15)
    np.testing.assert_allclose(dx.sum(), 9.0, rtol=1e-15)


@pytest.mark.parametrize(("ph", "pw", "stride", "pad"), [(2, 2, None, 0), (3, 2, (2, 1), (1, 1))], ids=["2x2", "3x2"])
def test_maxpool_split_non_contiguous_and_read_only(ph, pw, stride, pad, dtype, twin):
    base = np.random.default_rng(4).integers(-1, 2, (3, 2, 14, 18)).astype(dtype)
    x = base[::-1, :, ::2, 1::2].transpose(0, 1, 3, 2)  # (3, 2, 9, 7), every axis strided
    assert not x.flags.c_contiguous
    out, _ = R.maxpool2d_forward(x, ph, pw, stride, pad)
    dout = _data(out.shape, dtype, 1)
    expected = R.maxpool2d_backward(dout, None, x.shape, ph, pw, stride, pad, ties="split", x=np.ascontiguousarray(x))
    x_copy, dout_copy = x.copy(), dout.copy()
    x.setflags(write=False)
    dout.setflags(write=False)
    assert_close(K.maxpool2d_backward(dout, None, x.shape, ph, pw, stride, pad, ties="split", x=x), expected, dtype)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)


@pytest.mark.parametrize(("shape", "ph", "pw", "stride", "pad"), GEOMETRIES, ids=IDS)
def test_avgpool_matches_reference(shape, ph, pw, stride, pad, dtype, twin):
    x = _data(shape, dtype)
    out = K.avgpool2d_forward(x, ph, pw, stride, pad)
    assert_close(out, R.avgpool2d_forward(x, ph, pw, stride, pad), dtype)
    dout = _data(out.shape, dtype, seed=1)
    dx = K.avgpool2d_backward(dout, shape, ph, pw, stride, pad)
    assert dx.shape == shape
    assert_close(dx, R.avgpool2d_backward(dout, shape, ph, pw, stride, pad), dtype)


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_maxpool_hand_computed(mod, twin):
    x = np.array([[1, 3, 0, -1, 7],
                   [3, 2, -1, -1, 2],
                   [0, 0, 5, 4, 9],
                   [0, 1, 5, 5, 1]], dtype=np.float32)[None, None]
    out, argmax = mod.maxpool2d_forward(x, 2, 2)  # last column (7, 2, 9, 1) is in no window
    np.testing.assert_array_equal(out[0, 0], [[3, 0], [1, 5]])
    # ties: first maximum in row-major order (3 at index 1 before 3 at 2; 5 at 0 before 5 at 2 and 3)
    np.testing.assert_array_equal(argmax[0, 0], [[1, 0], [3, 0]])
    dx = mod.maxpool2d_backward(np.array([[[[10, 20], [30, 40]]]], np.float32), argmax, x.shape, 2, 2)
    np.testing.assert_array_equal(dx[0, 0], [[0, 10, 20, 0, 0],
                                             [0, 0, 0, 0, 0],
                                             [0, 0, 40, 0, 0],
                                             [0, 30, 0, 0, 0]])


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_maxpool_overlapping_windows_add(mod, twin):
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0  # the centre is the maximum of all four 2x2 stride-1 windows
    out, argmax = mod.maxpool2d_forward(x, 2, 2, stride=1)
    np.testing.assert_array_equal(out[0, 0], [[5, 5], [5, 5]])
    np.testing.assert_array_equal(argmax[0, 0], [[3, 2], [1, 0]])
    dx = mod.maxpool2d_backward(np.array([[[[1.0, 2.0], [4.0, 8.0]]]]), argmax, x.shape, 2, 2, stride=1)
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0], [0, 15, 0], [0, 0, 0]])


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_avgpool_counts_padding(mod, twin):
    x = np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)
    out = mod.avgpool2d_forward(x, 3, 3, stride=2, pad=1)
    # corner windows hold 4 input elements but divide by 9 (count_include_pad=True)
    np.testing.assert_allclose(out[0, 0], [[(1 + 2 + 4 + 5) / 9, (2 + 3 + 5 + 6) / 9],
                                           [(4 + 5 + 7 + 8) / 9, (5 + 6 + 8 + 9) / 9]], rtol=1e-15)
    dx = mod.avgpool2d_backward(np.ones((1, 1, 2, 2)), x.shape, 3, 3, stride=2, pad=1)
    np.testing.assert_allclose(dx[0, 0], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 9, rtol=1e-15)


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
@pytest.mark.parametrize(("ph", "pw", "stride", "pad"), [(2, 2, None, 0), (3, 3, 1, 1)], ids=["2x2s2", "3x3s1p1"])
def test_maxpool_nan_and_inf(mod, ph, pw, stride, pad, twin):
    nan, inf = np.nan, np.inf
    x = np.array([[1, nan, inf, -inf],
                   [nan, 5, inf, 2],
                   [-inf, -inf, 0, 0],
                   [-inf, -inf, 0, -0.0]], dtype=np.float32)[None, None]
    out, argmax = mod.maxpool2d_forward(x, ph, pw, stride, pad)
    if (ph, stride) == (2, None):
        # NaN: output NaN and the FIRST NaN's index; +inf ties: first; all -inf: first element
        np.testing.assert_array_equal(out[0, 0], [[nan, inf], [-inf, 0]])
        np.testing.assert_array_equal(argmax[0, 0], [[1, 0], [0, 0]])
    else:
        # 3x3 stride 1 pad 1: windows touching the two NaNs are NaN (first NaN in row-major order)
        np.testing.assert_array_equal(out[0, 0], [[nan, nan, nan, inf],
                                                  [nan, nan, nan, inf],
                                                  [nan, nan, inf, inf],
                                                  [-inf, 0, 0, 0]])
        np.testing.assert_array_equal(argmax[0, 0], [[5, 4, 3, 3],
                                                     [2, 1, 0, 0],
                                                     [1, 0, 1, 0],
                                                     [1, 2, 1, 0]])
    dout = np.ones(out.shape, np.float32)
    dx = mod.maxpool2d_backward(dout, argmax, x.shape, ph, pw, stride, pad)
    assert dx.sum() == out.size  # every window's gradient lands on an input element, never on padding


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # reference: inf - inf
@pytest.mark.parametrize(("ph", "pw", "stride", "pad"), [(2, 2, None, 0), (3, 3, 1, 1), (2, 3, (2, 1), (1, 1))])
def test_maxpool_special_values_random(ph, pw, stride, pad, dtype, twin):
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (3, 2, 9, 8)).astype(dtype)  # small integers: many ties
    for value, share in [(np.nan, 0.1), (np.inf, 0.1), (-np.inf, 0.3)]:
        x[rng.random(x.shape) < share] = value
    out, argmax = K.maxpool2d_forward(x, ph, pw, stride, pad)
    ref_out, ref_argmax = R.maxpool2d_forward(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(out, ref_out)  # NaNs compare equal here
    np.testing.assert_array_equal(argmax, ref_argmax)
    avg = K.avgpool2d_forward(x, ph, pw, stride, pad)
    assert_close(avg, R.avgpool2d_forward(x, ph, pw, stride, pad), dtype)  # inf - inf = NaN in both
    assert np.isnan(avg).any()


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_maxpool_all_minus_inf_window_points_at_first_input_element(mod, twin):
    x = np.full((1, 1, 3, 3), -np.inf)
    out, argmax = mod.maxpool2d_forward(x, 3, 3, stride=1, pad=1)
    assert np.all(out == -np.inf)
    # the first in-bounds element of each window, never a padded position
    np.testing.assert_array_equal(argmax[0, 0], [[4, 3, 3], [1, 0, 0], [1, 0, 0]])
    dx = mod.maxpool2d_backward(np.ones(out.shape), argmax, x.shape, 3, 3, stride=1, pad=1)
    np.testing.assert_array_equal(dx[0, 0], [[4, 2, 0], [2, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_windows_of_padding_alone(mod, twin):
    # W == 0 with pool_w = 2*pad: the only case (pad <= pool // 2) where a window holds no input element
    x = np.zeros((2, 1, 3, 0), np.float32)
    out, argmax = mod.maxpool2d_forward(x, 2, 2, stride=1, pad=1)
    assert out.shape == (2, 1, 4, 1) and out.dtype == np.float32
    assert np.all(out == -np.inf) and np.all(argmax == 0)
    dx = mod.maxpool2d_backward(np.ones(out.shape, np.float32), argmax, x.shape, 2, 2, stride=1, pad=1)
    assert dx.shape == x.shape and dx.dtype == np.float32
    np.testing.assert_array_equal(mod.avgpool2d_forward(x, 2, 2, stride=1, pad=1), np.zeros(out.shape))


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_backward_drops_argmax_into_padding(mod, twin):
    # a hand-made argmax may name a padded position: that gradient goes nowhere (never out of bounds)
    argmax = np.zeros((1, 1, 3, 3), np.uint8)  # offset (0, 0) of a 3x3 pad-1 window: padding on the top/left
    dx = mod.maxpool2d_backward(np.full((1, 1, 3, 3), 2.0), argmax, (1, 1, 3, 3), 3, 3, stride=1, pad=1)
    np.testing.assert_array_equal(dx[0, 0], [[2, 2, 0], [2, 2, 0], [0, 0, 0]])


@pytest.mark.parametrize(("pool", "dtype_"), [((1, 1), np.uint8), ((16, 16), np.uint8), ((17, 16), np.uint16),
                                              ((1, 300), np.uint16)])
def test_argmax_dtype_is_smallest_unsigned(pool, dtype_, twin):
    ph, pw = pool
    x = _data((2, 2, ph + 1, pw + 1), np.float32)
    out, argmax = K.maxpool2d_forward(x, ph, pw, stride=1)
    ref_out, ref_argmax = R.maxpool2d_forward(x, ph, pw, stride=1)
    assert argmax.dtype == ref_argmax.dtype == dtype_
    np.testing.assert_array_equal(argmax, ref_argmax)
    flat = x[:, :, :ph, :pw].reshape(2, 2, -1)
    np.testing.assert_array_equal(argmax[:, :, 0, 0], flat.argmax(axis=-1))
    dout = _data(out.shape, np.float32, 1)
    assert_close(K.maxpool2d_backward(dout, argmax, x.shape, ph, pw, 1),
                 R.maxpool2d_backward(dout, argmax, x.shape, ph, pw, 1))


@pytest.mark.parametrize(("ph", "pw", "stride", "pad"), [(2, 2, None, 0), (3, 2, (2, 1), (1, 1))], ids=["2x2", "3x2"])
def test_non_contiguous_inputs(ph, pw, stride, pad, dtype, twin):
    base = _data((3, 2, 14, 18), dtype)
    x = base[::-1, :, ::2, 1::2].transpose(0, 1, 3, 2)  # (3, 2, 9, 7), every axis strided
    assert not x.flags.c_contiguous
    xc = np.ascontiguousarray(x)
    out, argmax = K.maxpool2d_forward(x, ph, pw, stride, pad)
    ref_out, ref_argmax = R.maxpool2d_forward(xc, ph, pw, stride, pad)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    dout = _data((out.shape[0], out.shape[1], out.shape[3], 2 * out.shape[2]), dtype, 1)[..., ::2]
    dout = dout.transpose(0, 1, 3, 2)
    assert dout.shape == out.shape and not dout.flags.c_contiguous
    argmax_strided = np.repeat(argmax, 2, axis=3)[..., ::2]
    assert not argmax_strided.flags.c_contiguous
    assert_close(K.maxpool2d_backward(dout, argmax_strided, x.shape, ph, pw, stride, pad),
                 R.maxpool2d_backward(np.ascontiguousarray(dout), argmax, x.shape, ph, pw, stride, pad), dtype)
    assert_close(K.avgpool2d_forward(x, ph, pw, stride, pad), R.avgpool2d_forward(xc, ph, pw, stride, pad), dtype)
    assert_close(K.avgpool2d_backward(dout, x.shape, ph, pw, stride, pad),
                 R.avgpool2d_backward(np.ascontiguousarray(dout), x.shape, ph, pw, stride, pad), dtype)


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_inputs_not_modified(mod, twin):
    x = _data((2, 3, 7, 6), np.float32)
    x_copy = x.copy()
    out, argmax = mod.maxpool2d_forward(x, 3, 3, 2, 1)
    np.testing.assert_array_equal(x, x_copy)
    dout = _data(out.shape, np.float32, 1)
    dout_copy, argmax_copy = dout.copy(), argmax.copy()
    mod.maxpool2d_backward(dout, argmax, x.shape, 3, 3, 2, 1)
    mod.avgpool2d_forward(x, 3, 3, 2, 1)
    mod.avgpool2d_backward(dout, x.shape, 3, 3, 2, 1)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)
    np.testing.assert_array_equal(argmax, argmax_copy)


@pytest.mark.parametrize(("ph", "pw", "stride", "pad"), [(2, 2, None, 0), (3, 3, 2, 1)], ids=["2x2", "3x3"])
def test_read_only_inputs(ph, pw, stride, pad, twin):
    x = _data((2, 3, 8, 7), np.float32)
    out, argmax = K.maxpool2d_forward(x, ph, pw, stride, pad)
    dout = _data(out.shape, np.float32, 1)
    dx = K.maxpool2d_backward(dout, argmax, x.shape, ph, pw, stride, pad)
    for a in (x, dout, argmax):
        a.setflags(write=False)  # e.g. arrays from np.load(mmap_mode="r")
    out_ro, argmax_ro = K.maxpool2d_forward(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(out_ro, out)
    np.testing.assert_array_equal(argmax_ro, argmax)
    np.testing.assert_array_equal(K.maxpool2d_backward(dout, argmax, x.shape, ph, pw, stride, pad), dx)
    assert_close(K.avgpool2d_forward(x, ph, pw, stride, pad), R.avgpool2d_forward(x, ph, pw, stride, pad))
    assert_close(K.avgpool2d_backward(dout, x.shape, ph, pw, stride, pad),
                 R.avgpool2d_backward(dout, x.shape, ph, pw, stride, pad))


@pytest.mark.parametrize("mod", [K, R], ids=["kernel", "reference"])
def test_dtypes(mod, twin):
    xi = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)  # ints promote to float64
    out, argmax = mod.maxpool2d_forward(xi, 2, 2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, xi.reshape(2, 3, 2, 2, 2, 2).max(axis=(3, 5)))
    assert np.all(argmax == 3)
    assert mod.avgpool2d_forward(xi, 2, 2).dtype == np.float64
    d32 = np.ones((2, 3, 2, 2), np.float32)
    assert mod.maxpool2d_backward(d32, argmax, xi.shape, 2, 2).dtype == np.float32  # dx follows dout
    assert mod.avgpool2d_backward(d32, xi.shape, 2, 2).dtype == np.float32
    # any integer argmax dtype is accepted (values checked), e.g. int64 from other code
    dx = mod.maxpool2d_backward(d32, argmax.astype(np.int64), xi.shape, 2, 2)
    np.testing.assert_array_equal(dx, mod.maxpool2d_backward(d32, argmax, xi.shape, 2, 2))


@pytest.mark.parametrize(("ph", "pw", "stride", "pad", "shape"), [
    (2, 2, None, 0, (2, 64, 32, 32)),  # above the parallel threshold: the default launch picks the parallel twin
    (3, 3, 2, 1, (2, 64, 32, 32)),
])
def test_large_default_launch(ph, pw, stride, pad, shape):
    x = _data(shape, np.float32)
    out, argmax = K.maxpool2d_forward(x, ph, pw, stride, pad)
    ref_out, ref_argmax = R.maxpool2d_forward(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    dout = _data(out.shape, np.float32, 1)
    assert_close(K.maxpool2d_backward(dout, argmax, shape, ph, pw, stride, pad),
                 R.maxpool2d_backward(dout, argmax, shape, ph, pw, stride, pad))


@st.composite
def _pool_cases(draw):
    ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pad = (draw(st.integers(0, ph // 2)), draw(st.integers(0, pw // 2)))
    h = draw(st.integers(max(1, ph - 2 * pad[0]), 11))
    w = draw(st.integers(max(1, pw - 2 * pad[1]), 11))
    stride = draw(st.one_of(st.none(), st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    n, c = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    ties = draw(st.booleans())
    return (n, c, h, w), ph, pw, stride, pad, np.dtype(dtype), ties, draw(st.integers(0, 2**32 - 1))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_pool_cases())
def test_property_pooling_matches_reference(case, twin):
    shape, ph, pw, stride, pad, dtype, ties, seed = case
    rng = np.random.default_rng(seed)
    x = (rng.integers(-3, 4, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    out, argmax = K.maxpool2d_forward(x, ph, pw, stride, pad)
    ref_out, ref_argmax = R.maxpool2d_forward(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = K.maxpool2d_backward(dout, argmax, shape, ph, pw, stride, pad)
    assert_close(dx, R.maxpool2d_backward(dout, argmax, shape, ph, pw, stride, pad), dtype)
    # each window's gradient lands on an input element equal to that window's maximum
    assert_close(dx.sum(), dout.sum(), dtype, atol=1e-4 if dtype == np.float32 else 1e-10)
    split = K.maxpool2d_backward(dout, None, shape, ph, pw, stride, pad, ties="split", x=x)
    assert_close(split, R.maxpool2d_backward(dout, None, shape, ph, pw, stride, pad, ties="split", x=x), dtype)
    assert_close(split.sum(), dout.sum(), dtype, atol=1e-4 if dtype == np.float32 else 1e-10)
    avg = K.avgpool2d_forward(x, ph, pw, stride, pad)
    assert_close(avg, R.avgpool2d_forward(x, ph, pw, stride, pad), dtype)
    davg = K.avgpool2d_backward(dout, shape, ph, pw, stride, pad)
    assert_close(davg, R.avgpool2d_backward(dout, shape, ph, pw, stride, pad), dtype)
    # average pooling is linear: <avgpool(x), dout> == <x, avgpool_backward(dout)>
    np.testing.assert_allclose(np.vdot(avg.astype(np.float64), dout), np.vdot(x.astype(np.float64), davg),
                               rtol=1e-4, atol=1e-4)


# ---- bad input: same exception type and message from both twins, naming the argument, before any work ----

X = np.zeros((2, 3, 4, 4), np.float32)
D = np.zeros((2, 3, 2, 2), np.float32)
A = np.zeros((2, 3, 2, 2), np.uint8)
BAD = [
    ("maxpool2d_forward", dict(x="abc", pool_h=2, pool_w=2), TypeError, "x"),
    ("maxpool2d_forward", dict(x=X[0], pool_h=2, pool_w=2), ValueError, "x"),
    ("maxpool2d_forward", dict(x=X.astype(np.complex64), pool_h=2, pool_w=2), TypeError, "x"),
    ("maxpool2d_forward", dict(x=X, pool_h=0, pool_w=2), ValueError, "pool_h"),
    ("maxpool2d_forward", dict(x=X, pool_h=2, pool_w=2.0), TypeError, "pool_w"),
    ("maxpool2d_forward", dict(x=X, pool_h=True, pool_w=2), TypeError, "pool_h"),
    ("maxpool2d_forward", dict(x=X, pool_h=2, pool_w=2, stride=0), ValueError, "stride"),
    ("maxpool2d_forward", dict(x=X, pool_h=2, pool_w=2, stride=(1, 2, 3)), TypeError, "stride"),
    ("maxpool2d_forward", dict(x=X, pool_h=2, pool_w=2, pad=-1), ValueError, "pad"),
    ("maxpool2d_forward", dict(x=X, pool_h=3, pool_w=3, pad=2), ValueError, "pad"),
    ("maxpool2d_forward", dict(x=X, pool_h=2, pool_w=3, pad=(1, 2)), ValueError, "pad"),
    ("maxpool2d_forward", dict(x=X, pool_h=5, pool_w=2), ValueError, "vertical window"),
    ("avgpool2d_forward", dict(x=X, pool_h=2, pool_w=7, pad=(0, 1)), ValueError, "horizontal window"),
    ("avgpool2d_forward", dict(x=[[1.0]], pool_h=1, pool_w=1), ValueError, "x"),
    ("maxpool2d_backward", dict(dout=D[0], argmax=A, input_shape=X.shape, pool_h=2, pool_w=2), ValueError,
     "dout"),
    ("maxpool2d_backward", dict(dout=D[:, :, :1], argmax=A, input_shape=X.shape, pool_h=2, pool_w=2),
     ValueError, "dout"),
    ("maxpool2d_backward", dict(dout=D, argmax=A[:1], input_shape=X.shape, pool_h=2, pool_w=2), ValueError,
     "argmax"),
    ("maxpool2d_backward", dict(dout=D, argmax=A.astype(np.float32), input_shape=X.shape, pool_h=2,
                                    pool_w=2), TypeError, "argmax"),
    ("maxpool2d_backward", dict(dout=D, argmax=A.astype(bool), input_shape=X.shape, pool_h=2, pool_w=2),
     TypeError, "argmax"),
    ("maxpool2d_backward", dict(dout=D, argmax=A.tolist(), input_shape=X.shape, pool_h=2, pool_w=2),
     TypeError, "argmax"),
    ("maxpool2d_backward", dict(dout=D, argmax=A + 4, input_shape=X.shape, pool_h=2, pool_w=2), ValueError,
     "argmax"),
    ("maxpool2d_backward", dict(dout=D, argmax=A.astype(np.int16) - 1, input_shape=X.shape, pool_h=2,
                                    pool_w=2), ValueError, "argmax"),
    ("maxpool2d_backward", dict(dout=D, argmax=A, input_shape=(2, 3, 4), pool_h=2, pool_w=2), ValueError,
     "input_shape"),
    ("maxpool2d_backward", dict(dout=D, argmax=A, input_shape=(2, 3, -4, 4), pool_h=2, pool_w=2), ValueError,
     "input_shape"),
    ("maxpool2d_backward", dict(dout="d", argmax=A, input_shape=X.shape, pool_h=2, pool_w=2), TypeError,
     "dout"),
    ("maxpool2d_backward", dict(dout=D, argmax=A, input_shape=X.shape, pool_h=2, pool_w=2, ties="all"), ValueError,
     "ties"),
    ("maxpool2d_backward", dict(dout=D, argmax=A, input_shape=X.shape, pool_h=2, pool_w=2, ties=None), TypeError,
     "ties"),
    ("maxpool2d_backward", dict(dout=D, argmax=A, input_shape=X.shape, pool_h=2, pool_w=2, x=X), ValueError, "x"),
    ("maxpool2d_backward", dict(dout=D, argmax=None, input_shape=X.shape, pool_h=2, pool_w=2, ties="split"),
     ValueError, "x"),
    ("maxpool2d_backward", dict(dout=D, argmax=A, input_shape=X.shape, pool_h=2, pool_w=2, ties="split", x=X),
     ValueError, "argmax"),
    ("maxpool2d_backward", dict(dout=D, argmax=None, input_shape=X.shape, pool_h=2, pool_w=2, ties="split",
                                    x=X[:, :2]), ValueError, "x"),
    ("maxpool2d_backward", dict(dout=D, argmax=None, input_shape=X.shape, pool_h=2, pool_w=2, ties="split",
                                    x=X.astype(np.complex64)), TypeError, "x"),
    ("maxpool2d_backward", dict(dout=D, argmax=None, input_shape=X.shape, pool_h=2, pool_w=2), TypeError,
     "argmax"),
    ("avgpool2d_backward", dict(dout=D[..., :1], input_shape=X.shape, pool_h=2, pool_w=2), ValueError, "dout"),
    ("avgpool2d_backward", dict(dout=D, input_shape=X.shape, pool_h=2, pool_w=2, stride=(2, 0)), ValueError,
     "stride"),
]


@pytest.mark.parametrize(("fn", "kwargs", "exc", "name"), BAD, ids=[f"{b[0]}-{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_input(fn, kwargs, exc, name):
    messages = []
    for mod in (K, R):
        with pytest.raises(exc) as info:
            getattr(mod, fn)(**kwargs)
        msg = str(info.value)
        assert msg.startswith(f"{fn}: {name}"), msg
        assert " must be " in msg and ", got " in msg, msg
        messages.append(msg)
    assert messages[0] == messages[1]

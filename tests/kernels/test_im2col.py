"""im2col / col2im kernels against their NumPy reference twins, on both the serial and the parallel twin."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import assert_close

# The package rebinds ``fastnn.kernels.im2col`` to the function of that name, so fetch the modules themselves.
K = importlib.import_module("fastnn.kernels.im2col")
R = importlib.import_module("fastnn.reference.im2col")

# (x shape, FH, FW, stride, pad): batch 1, one channel, non-square images and filters, strides 1/2/3, pads 0/1/2,
# per-axis pairs, overlapping windows, windows that do not tile the input, 1x1, a window as large as the padded
# input, an image smaller than its window, an empty image axis, and windows that see only padding.
CASES = [
    ((2, 3, 7, 5), 3, 2, 1, 0),
    ((1, 1, 6, 6), 3, 3, 1, 1),
    ((2, 2, 9, 8), 3, 3, 2, 1),
    ((3, 2, 10, 7), 4, 3, 3, 2),
    ((2, 3, 8, 11), 2, 5, (2, 1), (0, 2)),
    ((1, 4, 5, 5), 1, 1, 1, 0),
    ((2, 3, 7, 6), 1, 1, 2, 0),
    ((2, 1, 4, 3), 4, 3, 1, 0),
    ((1, 2, 2, 3), 5, 4, 1, 2),
    ((2, 2, 6, 9), 2, 2, 3, 0),
    ((1, 1, 0, 3), 3, 1, 1, (2, 0)),
    ((2, 2, 1, 1), 1, 1, (1, 2), (0, 2)),  # windows wholly inside the padding
]
IDS = [f"{s}-{fh}x{fw}-s{st}-p{p}" for s, fh, fw, st, p in CASES]


def _rand(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize(("shape", "fh", "fw", "stride", "pad"), CASES, ids=IDS)
def test_im2col_matches_reference(shape, fh, fw, stride, pad, dtype, twin):
    x = _rand(shape, dtype)
    x_before = x.copy()
    got = K.im2col(x, fh, fw, stride, pad)
    want = R.im2col(x, fh, fw, stride, pad)
    assert got.shape == want.shape
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)  # a copy: exact
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize(("shape", "fh", "fw", "stride", "pad"), CASES, ids=IDS)
def test_col2im_matches_reference(shape, fh, fw, stride, pad, dtype, twin):
    rows = R.im2col(np.zeros(shape, dtype), fh, fw, stride, pad).shape
    col = _rand(rows, dtype, seed=1)
    col_before = col.copy()
    got = K.col2im(col, shape, fh, fw, stride, pad)
    want = R.col2im(col, shape, fh, fw, stride, pad)
    assert got.shape == tuple(shape) and got.flags.c_contiguous
    assert_close(got, want, dtype)
    np.testing.assert_array_equal(col, col_before)


def test_im2col_dlfs_layout_by_hand():
    """Rows (n, oh, ow), columns (c, fh, fw), zero padding: checked against the formula, element by element."""
    x = np.arange(2 * 2 * 3 * 4, dtype=np.float64).reshape(2, 2, 3, 4) + 1
    fh, fw, (sh, sw), (ph, pw) = 2, 3, (2, 1), (1, 1)
    col = K.im2col(x, fh, fw, (sh, sw), (ph, pw))
    oh, ow = (3 + 2 * ph - fh) // sh + 1, (4 + 2 * pw - fw) // sw + 1
    assert col.shape == (2 * oh * ow, 2 * fh * fw)
    for n in range(2):
        for i in range(oh):
            for j in range(ow):
                for c in range(2):
                    for kh in range(fh):
                        for kw in range(fw):
                            h, w = i * sh + kh - ph, j * sw + kw - pw
                            want = x[n, c, h, w] if 0 <= h < 3 and 0 <= w < 4 else 0.0
                            assert col[(n * oh + i) * ow + j, (c * fh + kh) * fw + kw] == want


@pytest.mark.parametrize(("shape", "fh", "fw", "stride", "pad"), CASES, ids=IDS)
def test_col2im_is_adjoint_of_im2col(shape, fh, fw, stride, pad, twin):
    x = _rand(shape, np.float64, seed=2)
    col = K.im2col(x, fh, fw, stride, pad)
    y = _rand(col.shape, np.float64, seed=3)
    lhs = np.vdot(col, y)
    rhs = np.vdot(x, K.col2im(y, shape, fh, fw, stride, pad))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(y).sum()))


def _noncontiguous_views(x):
    """The same values as ``x`` through a transposed view, a strided slice and negative strides."""
    t = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    big = np.zeros((x.shape[0], x.shape[1] * 2, x.shape[2], x.shape[3] * 3), x.dtype)
    big[:, ::2, :, ::3] = x
    flipped = np.ascontiguousarray(x[:, ::-1, ::-1, ::-1])[:, ::-1, ::-1, ::-1]
    return {"transposed": t, "sliced": big[:, ::2, :, ::3], "negative": flipped}


@pytest.mark.parametrize("view", ["transposed", "sliced", "negative"])
def test_noncontiguous_inputs(view, dtype, twin):
    shape, fh, fw, stride, pad = (2, 3, 7, 6), 3, 2, (2, 1), 1
    x = _rand(shape, dtype)
    xv = _noncontiguous_views(x)[view]
    assert not xv.flags.c_contiguous
    np.testing.assert_array_equal(K.im2col(xv, fh, fw, stride, pad), R.im2col(x, fh, fw, stride, pad))
    col = _rand(R.im2col(x, fh, fw, stride, pad).shape, dtype, seed=5)
    for cv in (np.asfortranarray(col), col[::-1][::-1], np.ascontiguousarray(col[::-1])[::-1]):
        assert_close(K.col2im(cv, shape, fh, fw, stride, pad), R.col2im(col, shape, fh, fw, stride, pad), dtype)


def test_dtypes_and_promotion():
    x32 = _rand((1, 2, 4, 4), np.float32)
    assert K.im2col(x32, 2, 2).dtype == np.float32
    xi = np.arange(32).reshape(1, 2, 4, 4)
    got = K.im2col(xi, 2, 2, 1, 1)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, R.im2col(xi, 2, 2, 1, 1))
    col = K.im2col(x32, 2, 2)
    assert K.col2im(col, (1, 2, 4, 4), 2, 2).dtype == np.float32


def test_empty_batch(twin):
    x = np.zeros((0, 3, 5, 5), np.float32)
    col = K.im2col(x, 3, 3, 1, 1)
    assert col.shape == (0, 27) and col.dtype == np.float32
    dx = K.col2im(col, (0, 3, 5, 5), 3, 3, 1, 1)
    assert dx.shape == (0, 3, 5, 5) and dx.dtype == np.float32


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_geometry_matches_reference(data, twin):
    n, c = data.draw(st.integers(1, 3), label="N"), data.draw(st.integers(1, 3), label="C")
    h, w = data.draw(st.integers(1, 9), label="H"), data.draw(st.integers(1, 9), label="W")
    ph, pw = data.draw(st.integers(0, 3), label="PH"), data.draw(st.integers(0, 3), label="PW")
    fh = data.draw(st.integers(1, h + 2 * ph), label="FH")
    fw = data.draw(st.integers(1, w + 2 * pw), label="FW")
    sh, sw = data.draw(st.integers(1, 4), label="SH"), data.draw(st.integers(1, 4), label="SW")
    dt = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    x = _rand((n, c, h, w), dt, seed=data.draw(st.integers(0, 2**16)))
    col = K.im2col(x, fh, fw, (sh, sw), (ph, pw))
    np.testing.assert_array_equal(col, R.im2col(x, fh, fw, (sh, sw), (ph, pw)))
    y = _rand(col.shape, dt, seed=7)
    assert_close(K.col2im(y, x.shape, fh, fw, (sh, sw), (ph, pw)), R.col2im(y, x.shape, fh, fw, (sh, sw), (ph, pw)))


BAD_IM2COL = [
    (lambda m: m.im2col(np.zeros((2, 3, 4)), 2, 2), ValueError, "im2col: x must be 4-D"),
    (lambda m: m.im2col(np.zeros((1, 1, 3, 3)), 4, 2), ValueError, "im2col: vertical window must be <="),
    (lambda m: m.im2col(np.zeros((1, 1, 3, 3)), 2, 6, 1, (0, 1)), ValueError, "im2col: horizontal window must be"),
    (lambda m: m.im2col(np.zeros((1, 1, 3, 3)), 2, 2, 0), ValueError, "im2col: stride must be >= 1, got 0"),
    (lambda m: m.im2col(np.zeros((1, 1, 3, 3)), 2, 2, 1, -1), ValueError, "im2col: pad must be >= 0, got -1"),
    (lambda m: m.im2col(np.zeros((1, 1, 3, 3)), 2, 2, (1, 2, 3)), TypeError, "im2col: stride must be an int or"),
    (lambda m: m.im2col(np.zeros((1, 1, 3, 3)), 2.0, 2), TypeError, "im2col: window height must be an int"),
    (lambda m: m.im2col(np.zeros((1, 1, 3, 3), complex), 2, 2), TypeError, "im2col: x must be a real numeric"),
    (lambda m: m.im2col("x", 2, 2), TypeError, "im2col: x must be a NumPy array"),
    (lambda m: m.col2im(np.zeros((5, 4)), (1, 1, 3, 3), 2, 2), ValueError, "col2im: col must be of shape (4, 4)"),
    (lambda m: m.col2im(np.zeros((4, 3)), (1, 1, 3, 3), 2, 2), ValueError, "col2im: col must be of shape (4, 4)"),
    (lambda m: m.col2im(np.zeros(16), (1, 1, 3, 3), 2, 2), ValueError, "col2im: col must be 2-D"),
    (lambda m: m.col2im(np.zeros((4, 4)), (1, 3, 3), 2, 2), ValueError, "col2im: input_shape must be 4-D"),
    (lambda m: m.col2im(np.zeros((4, 4)), (1, -1, 3, 3), 2, 2), ValueError, "col2im: input_shape.shape[1] must be"),
    (lambda m: m.col2im(np.zeros((4, 4), complex), (1, 1, 3, 3), 2, 2), TypeError, "col2im: col must be a real"),
]


@pytest.mark.parametrize("impl", ["kernels", "reference"])
@pytest.mark.parametrize(("call", "exc", "message"), BAD_IM2COL, ids=[m for _, _, m in BAD_IM2COL])
def test_bad_input(call, exc, message, impl):
    with pytest.raises(exc) as info:
        call(K if impl == "kernels" else R)
    assert str(info.value).startswith(message), str(info.value)

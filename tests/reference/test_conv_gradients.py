"""The reference conv2d backward pass checked by central differences (float64, small shapes), and the reference
im2col/col2im checked against their formulas: the oracle the kernels are tested against is itself tested here."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from fastnn import reference as R

from ._numeric import central_differences

Rim = importlib.import_module("fastnn.reference.im2col")

# (N, C, H, W, FN, FH, FW, stride, pad): overlapping and non-tiling windows, padding, 1x1, per-axis pairs.
CASES = [
    (2, 2, 5, 4, 3, 3, 2, 1, 0),
    (1, 1, 5, 5, 2, 3, 3, 1, 1),
    (2, 2, 6, 5, 2, 3, 3, 2, 1),
    (1, 2, 7, 6, 2, 2, 3, (3, 2), (2, 0)),
    (2, 3, 4, 3, 2, 1, 1, 1, 0),
]


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_central_differences(case):
    n, c, h, w, fn, fh, fw, stride, pad = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w))
    W = rng.standard_normal((fn, c, fh, fw))
    b = rng.standard_normal(fn)
    dout = rng.standard_normal(R.conv2d_forward(x, W, b, stride, pad).shape)

    def loss():
        return float(np.sum(R.conv2d_forward(x, W, b, stride, pad) * dout))

    dx, dW, db = R.conv2d_backward(dout, x, W, stride, pad)
    # The loss is linear in each argument, so central differences are exact up to rounding.
    for analytic, arg in ((dx, x), (dW, W), (db, b)):
        np.testing.assert_allclose(analytic, central_differences(loss, arg), rtol=1e-6, atol=1e-7)


def test_backward_reuses_forward_cache():
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    cache = {}
    out = R.conv2d_forward(x, W, b, 2, 1, cache=cache)
    assert cache["conv2d.ref.col"].shape == (2 * 3 * 3, 2 * 9)
    cache["conv2d.ref.col"] = cache["conv2d.ref.col"] * 0  # proves the cached columns are what backward uses
    dout = rng.standard_normal(out.shape)
    _, dW, _ = R.conv2d_backward(dout, x, W, 2, 1, cache=cache)
    np.testing.assert_array_equal(dW, 0)
    # Another x object (even with equal values) is unfolded afresh.
    for got, want in zip(R.conv2d_backward(dout, x.copy(), W, 2, 1, cache=cache),
                         R.conv2d_backward(dout, x, W, 2, 1), strict=True):
        np.testing.assert_array_equal(got, want)
        assert np.any(got != 0)


def test_forward_is_the_direct_sum():
    rng = np.random.default_rng(2)
    x, W, b = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 3, 2)), rng.standard_normal(2)
    (sh, sw), (ph, pw) = (2, 1), (1, 1)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = R.conv2d_forward(x, W, b, (sh, sw), (ph, pw))
    for idx in np.ndindex(out.shape):
        nn, f, i, j = idx
        want = b[f] + np.sum(W[f] * xp[nn, :, i * sh:i * sh + 3, j * sw:j * sw + 2])
        np.testing.assert_allclose(out[idx], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_col2im_is_adjoint_of_im2col(case):
    n, c, h, w, _, fh, fw, stride, pad = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, w))
    col = Rim.im2col(x, fh, fw, stride, pad)
    y = rng.standard_normal(col.shape)
    np.testing.assert_allclose(np.vdot(col, y), np.vdot(x, Rim.col2im(y, x.shape, fh, fw, stride, pad)),
                               rtol=1e-12)


def test_col2im_adds_overlaps():
    """With 2x2 windows at stride 1, an interior pixel belongs to four windows: col2im of ones counts them."""
    shape = (1, 1, 4, 5)
    ones = np.ones(Rim.im2col(np.zeros(shape), 2, 2).shape)
    counts = Rim.col2im(ones, shape, 2, 2)
    want = np.array([[1, 2, 2, 2, 1], [2, 4, 4, 4, 2], [2, 4, 4, 4, 2], [1, 2, 2, 2, 1]], dtype=float)
    np.testing.assert_array_equal(counts[0, 0], want)

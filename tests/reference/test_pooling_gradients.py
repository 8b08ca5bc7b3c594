"""fastnn.reference.pooling backward passes against central differences of the forward passes (float64)."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.reference import pooling as R

from ._numeric import central_differences

# (N, C, H, W), pool_h, pool_w, stride, pad
CASES = [
    ((2, 2, 4, 4), 2, 2, None, 0),
    ((1, 2, 5, 7), 2, 2, None, 0),  # odd sizes: elements in no window get zero gradient
    ((2, 1, 5, 5), 3, 3, 2, 1),  # overlapping, padded
    ((1, 2, 4, 5), 2, 3, 1, (1, 1)),  # every element in several windows
    ((1, 1, 6, 4), 3, 2, (2, 1), (1, 0)),
    ((2, 1, 3, 3), 1, 1, None, 0),
]
IDS = [f"{s}-p{ph}x{pw}-s{st}-pad{pd}" for s, ph, pw, st, pd in CASES]
EPS = 1e-6


def _distinct(shape, rng):
    """Values at least 0.01 apart: no ties, and a +-EPS step never changes which element is a window's max."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 + rng.uniform(-0.003, 0.003, shape)) - 1


@pytest.mark.parametrize(("shape", "ph", "pw", "stride", "pad"), CASES, ids=IDS)
def test_maxpool_backward_is_the_gradient(shape, ph, pw, stride, pad):
    rng = np.random.default_rng(0)
    x = _distinct(shape, rng)
    out, argmax = R.maxpool2d_forward(x, ph, pw, stride, pad)
    dout = rng.standard_normal(out.shape)
    numerical = central_differences(lambda: np.sum(R.maxpool2d_forward(x, ph, pw, stride, pad)[0] * dout), x, EPS)
    analytic = R.maxpool2d_backward(dout, argmax, shape, ph, pw, stride, pad)
    np.testing.assert_allclose(analytic, numerical, rtol=1e-7, atol=1e-8)
    assert np.count_nonzero(analytic) > 0


@pytest.mark.parametrize(("shape", "ph", "pw", "stride", "pad"), CASES, ids=IDS)
def test_avgpool_backward_is_the_gradient(shape, ph, pw, stride, pad):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    out = R.avgpool2d_forward(x, ph, pw, stride, pad)
    dout = rng.standard_normal(out.shape)
    numerical = central_differences(lambda: np.sum(R.avgpool2d_forward(x, ph, pw, stride, pad) * dout), x, EPS)
    analytic = R.avgpool2d_backward(dout, shape, ph, pw, stride, pad)
    np.testing.assert_allclose(analytic, numerical, rtol=1e-7, atol=1e-8)
    assert np.count_nonzero(analytic) > 0

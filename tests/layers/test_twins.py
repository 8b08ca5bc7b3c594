"""Every layer's forward and backward equal a pure-NumPy twin built from fastnn.reference, float32 and float64,
on the serial and the parallel kernel twins."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TOL, assert_close
from tests.layers.cases import CASES, make_dout, run

# Normalization kernels divide by a standard deviation computed with another summation order: a few ulps of
# float32 more than the elementwise kernels.
# "convolution" (3x3, stride 1): its float32 forward runs Winograd F(4x4, 3x3), whose coefficients (up to 8, and
# 1/6, 1/24) err by 1e-6 - 1e-5 of the output's magnitude (fastnn/kernels/winograd43.py), so outputs near zero miss
# the element-wise float32 rtol 2e-5 / atol 2e-6 (measured: 6.1e-6 off at -0.030).
LOOSER = {"batchnorm", "batchnorm_4d_channel", "batchnorm_4d_feature", "layernorm", "layernorm_4d", "groupnorm",
          "convolution"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_matches_reference_twin(name, dtype, twin):
    rng = np.random.default_rng(sum(map(ord, name)))
    built = CASES[name](dtype, rng)
    dout = make_dout(built, dtype, rng)
    out, dx = run(built, dout)
    want_out, want_dx, want_grads, want_buffers = built.twin(dout)
    tol = dict(TOL[dtype])
    if name in LOOSER and dtype == np.float32:
        tol = {"rtol": 1e-4, "atol": 1e-5}
    assert_close(out, want_out, dtype, **tol)
    if built.out_shape is None:
        assert np.ndim(out) == 0
    else:
        assert out.shape == built.out_shape
    if want_dx is None:  # no backward after an inference forward: gradients stay unset
        assert dx is None and all(g is None for g in built.layer.grads.values())
    else:
        assert_close(dx, want_dx, dtype, **tol)
        assert dx.shape == built.inputs["x"].shape
        assert sorted(built.layer.grads) == sorted(want_grads)
    for key, g in want_grads.items():
        assert_close(built.layer.grads[key], g, dtype, **tol)
        assert built.layer.grads[key].shape == built.layer.params[key].shape
    for key, b in want_buffers.items():
        assert_close(built.layer.buffers[key], b, dtype, **tol)

"""The normalization layers of issue 13 against PyTorch and against their papers' formulas: instance norm, batch
renormalization, weight normalization and spectral normalization."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import layers as L


def _rng():
    return np.random.default_rng(13)


# ---------------------------------------------------------------------------------------------------------------
# Instance normalization


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instancenorm_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = _rng()
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype) * 3 + 1
    gamma, beta = (rng.standard_normal(3) + 1).astype(dtype), rng.standard_normal(3).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    layer = L.InstanceNormalization(gamma.copy(), beta.copy())
    out = layer.forward(x)
    dx = layer.backward(dout)
    ref = torch.nn.InstanceNorm2d(3, affine=True, eps=1e-5).to(torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(gamma.astype(np.float64)))
        ref.bias.copy_(torch.from_numpy(beta.astype(np.float64)))
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    yt = ref(xt)
    yt.backward(torch.from_numpy(dout.astype(np.float64)))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert out.dtype == dx.dtype == layer.dgamma.dtype == dtype
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.dgamma, ref.weight.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.dbeta, ref.bias.grad.numpy(), rtol=tol, atol=tol)


def test_instancenorm_bad_input_names_the_layer():
    layer = L.InstanceNormalization(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"^InstanceNormalization.forward: x must be of shape \(N, 3, H, W\)"):
        layer.forward(np.ones((2, 4, 2, 2)))
    with pytest.raises(ValueError, match="^InstanceNormalization: beta"):
        L.InstanceNormalization(np.ones(3), np.zeros(4))
    with pytest.raises(ValueError, match="^InstanceNormalization: eps"):
        L.InstanceNormalization(np.ones(3), np.zeros(3), eps=0.0)

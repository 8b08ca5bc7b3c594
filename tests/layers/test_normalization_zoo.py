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


# ---------------------------------------------------------------------------------------------------------------
# Batch renormalization


def _renorm_layer(rmax, dmax, C=3):
    return L.BatchRenormalization(np.ones(C), np.zeros(C), momentum=0.5, rmax=rmax, dmax=dmax)


def test_batchrenorm_schedule_takes_effect_after_warm_up():
    """The bounds are read at every training step (the failure seen elsewhere: read once, plain batch norm
    forever): during warm-up the layer is batch norm, after it r and d move the output."""
    rng = np.random.default_rng(2)
    layer = _renorm_layer(lambda t: 1.0 if t < 3 else 3.0, lambda t: 0.0 if t < 3 else 5.0)
    bn = L.BatchNormalization(np.ones(3), np.zeros(3), momentum=0.5, running_var=np.ones(3), eps=1e-5)
    for step in range(5):
        # after warm-up the batches shift (std ~12, mean ~10) away from the running statistics (~4 and ~2)
        x = rng.standard_normal((8, 3)) * 4 + 2 if step < 3 else rng.standard_normal((8, 3)) * 12 + 10
        out, want = layer.forward(x), bn.forward(x)
        assert int(layer.steps) == step + 1
        if step < 3:
            np.testing.assert_array_equal(layer.r, 1)
            np.testing.assert_array_equal(layer.d, 0)
            np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
        else:
            if step == 3:  # the first step after warm-up: the running statistics are still the old ones
                assert np.all(layer.r > 1.5) and np.all(layer.d > 0.5)
            xhat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5)
            np.testing.assert_allclose(out, xhat * layer.r + layer.d, rtol=1e-12, atol=1e-12)
            assert np.abs(out - want).max() > 0.1  # not batch norm


def test_batchrenorm_paper_schedule_numbers():
    from fastnn.layers.normalization import paper_dmax, paper_rmax

    assert [paper_rmax(t) for t in (0, 5000, 22500, 40000, 10**6)] == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert [paper_dmax(t) for t in (0, 5000, 15000, 25000, 10**6)] == [0.0, 0.0, 2.5, 5.0, 5.0]
    default = L.BatchRenormalization(np.ones(2), np.zeros(2))
    x = np.array([[0.0, 1.0], [4.0, 3.0]])
    default.forward(x)
    np.testing.assert_array_equal(default.r, 1)  # step 0: plain batch norm
    resumed = L.BatchRenormalization(np.ones(2), np.zeros(2))
    resumed.steps[...] = 40000  # e.g. loaded from a checkpoint: the schedule continues from it
    resumed.forward(x)
    np.testing.assert_allclose(resumed.r, [2.0, 1.0], rtol=1e-5)  # sigma_B / sigma, unclipped under rmax = 3
    np.testing.assert_allclose(resumed.d, [2.0, 2.0], rtol=1e-5)  # (mu_B - 0) / 1, unclipped under dmax = 5


def test_batchrenorm_inference_uses_running_mean_and_std():
    layer = L.BatchRenormalization(np.array([2.0]), np.array([1.0]), running_mean=[3.0], running_std=[0.5])
    np.testing.assert_allclose(layer.forward(np.array([[4.0], [2.0]]), train_flg=False), [[5.0], [-3.0]])
    assert layer.mean is None and int(layer.steps) == 0


def test_batchrenorm_bad_schedule_value_fails_before_anything_changes():
    with pytest.raises(ValueError, match="^BatchRenormalization: rmax must be a finite number >= 1.0"):
        L.BatchRenormalization(np.ones(2), np.zeros(2), rmax=0.5)
    layer = _renorm_layer(lambda t: 2.0 if t < 1 else 0.5, 1.0)
    x = np.arange(6.0).reshape(2, 3)
    layer.forward(x)
    state = layer._snapshot()
    with pytest.raises(ValueError, match="^batchrenorm_forward_train: rmax must be a finite number >= 1.0"):
        layer.forward(x)
    for a, b in zip(layer._snapshot(), state, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------------------------
# WeightNorm and SpectralNorm wrappers against torch's parametrizations of nn.Linear / nn.Conv2d


def _pair(torch, conv, rng):
    """A fastnn layer and the torch module with the same weights (Linear's weight is Affine's W transposed)."""
    if conv:
        W, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
        mod = torch.nn.Conv2d(3, 4, 3, padding=1).double()
        layer, to_torch, x = L.Convolution(W.copy(), b.copy(), 1, 1), (lambda a: a), rng.standard_normal((2, 3, 5, 5))
    else:
        W, b = rng.standard_normal((6, 4)), rng.standard_normal(4)
        mod = torch.nn.Linear(6, 4).double()
        layer, to_torch, x = L.Affine(W.copy(), b.copy()), (lambda a: a.T), rng.standard_normal((5, 6))
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(np.ascontiguousarray(to_torch(W))))
        mod.bias.copy_(torch.from_numpy(b))
    return layer, mod, to_torch, x


@pytest.mark.parametrize("conv", [False, True], ids=["Affine", "Convolution"])
def test_weightnorm_layer_matches_torch(conv):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import parametrizations

    rng = np.random.default_rng(8)
    inner, mod, to_torch, x = _pair(torch, conv, rng)
    parametrizations.weight_norm(mod)
    layer = L.WeightNorm(inner)  # g defaults to ||v||, as torch initializes original0
    pw = mod.parametrizations.weight
    np.testing.assert_allclose(layer.g, pw.original0.detach().numpy().reshape(-1), rtol=1e-12)
    xt = torch.from_numpy(x).requires_grad_()
    dout = rng.standard_normal(layer.forward(x).shape)
    out = layer.forward(x)
    yt = mod(xt)
    yt.backward(torch.from_numpy(dout))
    dx = layer.backward(dout)
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_torch(layer.dv), pw.original1.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.dg, pw.original0.grad.numpy().reshape(-1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.db, mod.bias.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(to_torch(layer.weight), mod.weight.detach().numpy(), rtol=1e-12)
    assert layer.params["b"] is inner.b
    # an Affine's W stays v (the product never forms w); a Convolution's W is the computed weight
    assert (layer.params["v"] is inner.W) != conv


@pytest.mark.parametrize("conv", [False, True], ids=["Affine", "Convolution"])
def test_spectralnorm_layer_matches_torch_train_then_eval(conv):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import parametrizations

    torch.manual_seed(1)
    rng = np.random.default_rng(9)
    inner, mod, to_torch, x = _pair(torch, conv, rng)
    parametrizations.spectral_norm(mod)
    sn = mod.parametrizations.weight[0]
    layer = L.SpectralNorm(inner, u=sn._u.numpy(), v=sn._v.numpy())  # the same initial u (and v)
    for train in (True, True, False):
        mod.train(train)
        mod.zero_grad()
        xt = torch.from_numpy(x).requires_grad_()
        yt = mod(xt)
        dout = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.from_numpy(dout))
        out = layer.forward(x, train_flg=train)
        dx = layer.backward(dout)
        np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(to_torch(layer.dW), mod.parametrizations.weight.original.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(layer.u, sn._u.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.v, sn._v.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("conv", [False, True], ids=["Affine", "Convolution"])
def test_weightnorm_data_dependent_init_standardizes_the_first_batch(conv):
    rng = np.random.default_rng(10)
    if conv:
        inner, x = L.Convolution(rng.standard_normal((4, 3, 3, 3)), np.ones(4), 1, 1), rng.standard_normal((8, 3, 5, 5))
        axes = (0, 2, 3)
    else:
        inner, x = L.Affine(rng.standard_normal((6, 4)), np.ones(4)), rng.standard_normal((50, 6)) * 3 + 1
        axes = (0,)
    v0 = inner.W.copy()
    layer = L.WeightNorm(inner, init_x=x)
    out = layer.forward(x)
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=axes), 1, rtol=1e-8)
    np.testing.assert_array_equal(layer.v, v0)  # the direction is kept; only g and b are set


def test_reparam_wrappers_refuse_other_layers_and_bad_arguments():
    with pytest.raises(TypeError, match="^WeightNorm: layer must be an Affine or a Convolution layer, got Relu"):
        L.WeightNorm(L.Relu())
    with pytest.raises(ValueError, match=r"^WeightNorm: g must be of shape \(4,\)"):
        L.WeightNorm(L.Affine(np.ones((3, 4)), np.zeros(4)), g=np.ones(3))
    with pytest.raises(ValueError, match="^SpectralNorm: n_power_iterations must be >= 1"):
        L.SpectralNorm(L.Affine(np.ones((3, 4)), np.zeros(4)), n_power_iterations=0)
    with pytest.raises(ValueError, match=r"^SpectralNorm: u must be of shape \(4,\)"):
        L.SpectralNorm(L.Affine(np.ones((3, 4)), np.zeros(4)), u=np.ones(3), v=np.ones(3))

"""Batch renormalization, weight normalization and spectral normalization kernels (issue 13) against their twins,
against the papers' formulas written out here, and against PyTorch where it has the operation.

Tolerances as ``tests/kernels/test_normalization.py``: float64 ``TOL``; float32 rtol 1e-5 of each quantity's
scale (the kernels accumulate in float64, the float32 twins in float32).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from tests.conftest import TOL

DTYPES = [np.float32, np.float64]


def _close(actual, expected, dtype, scale=None):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape
    if scale is None:
        scale = float(np.abs(expected).max()) if expected.size else 1.0
    rtol = 1e-5 if dtype == np.float32 else TOL[np.dtype(np.float64)]["rtol"]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-30))


# ---------------------------------------------------------------------------------------------------------------
# Batch renormalization

#: (N, D), per channel with planes shorter and longer than the plane threshold, batch 1, one channel, odd sizes
RENORM_SHAPES = [(5, 3), (1, 4), (7, 1), (3, 2, 2, 3), (1, 3, 5, 7), (2, 1, 3, 3), (2, 3, 12, 12)]


def _renorm_inputs(shape, dtype, rng, noncontig=False):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    if noncontig:
        x = np.asfortranarray(x)
    gamma, beta = (1 + 0.3 * rng.standard_normal(C)).astype(dtype), rng.standard_normal(C).astype(dtype)
    rm, rs = (0.3 * rng.standard_normal(C)).astype(dtype), (0.5 + rng.random(C) * 2).astype(dtype)
    return x, gamma, beta, rm, rs


def _paper(x, gamma, beta, rm, rs, rmax, dmax, eps):
    """Algorithm 1 of Ioffe (2017), in float64, one channel at a time."""
    x = x.astype(np.float64)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    out = np.empty_like(x)
    r, d = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        xc = np.take(x, c, axis=1)
        mu_b = xc.mean()
        sigma_b = np.sqrt(((xc - mu_b) ** 2).mean() + eps)
        r[c] = min(max(sigma_b / rs[c], 1 / rmax), rmax)
        d[c] = min(max((mu_b - rm[c]) / rs[c], -dmax), dmax)
        idx = (slice(None), c)
        out[idx] = gamma[c] * ((xc - mu_b) / sigma_b * r[c] + d[c]) + beta[c]
    return out, r, d, axes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", RENORM_SHAPES, ids=str)
def test_batchrenorm_train_matches_twin_and_paper(shape, dtype, twin):
    rng = np.random.default_rng(len(shape) * 10 + shape[1])
    x, gamma, beta, rm, rs = _renorm_inputs(shape, dtype, rng, noncontig=shape[0] == 3)
    rmax, dmax, momentum, eps = 1.5, 0.2, 0.8, 1e-3
    runs = {}
    for impl in (K, R):
        m, s = rm.copy(), rs.copy()
        runs[impl] = (*impl.batchrenorm_forward_train(x, gamma, beta, m, s, rmax, dmax, momentum, eps), m, s)
    for got, want in zip(runs[K], runs[R], strict=True):
        _close(got, want, dtype)
    out, mean, inv_std, r, d, m, s = runs[K]
    want_out, want_r, want_d, axes = _paper(x, gamma, beta, rm, rs, rmax, dmax, eps)
    _close(out, want_out.astype(dtype), dtype)
    _close(r, want_r.astype(dtype), dtype)
    _close(d, want_d.astype(dtype), dtype)
    # the running statistics: updated from the batch after r and d were taken from their old values
    sigma_b = np.sqrt(x.astype(np.float64).var(axis=axes) + eps)
    _close(m, (momentum * rm + (1 - momentum) * x.astype(np.float64).mean(axis=axes)).astype(dtype), dtype)
    _close(s, (momentum * rs + (1 - momentum) * sigma_b).astype(dtype), dtype)


def test_batchrenorm_clips_both_ways():
    """Channels whose batch std is far above / below the running one get r = rmax / 1/rmax; d the same."""
    x = np.array([[0.0, 10.0], [2.0, 10.2], [4.0, 10.4]])
    gamma, beta = np.ones(2), np.zeros(2)
    rm, rs = np.array([100.0, -100.0]), np.array([0.01, 10.0])
    _, _, _, r, d = K.batchrenorm_forward_train(x, gamma, beta, rm, rs, 2.0, 3.0)
    np.testing.assert_array_equal(r, [2.0, 0.5])
    np.testing.assert_array_equal(d, [-3.0, 3.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchrenorm_with_rmax_1_dmax_0_is_batchnorm(dtype):
    rng = np.random.default_rng(3)
    x, gamma, beta, rm, rs = _renorm_inputs((4, 3, 2, 5), dtype, rng)
    dout = rng.standard_normal(x.shape).astype(dtype)
    out, mean, inv_std, r, d = K.batchrenorm_forward_train(x, gamma, beta, rm.copy(), rs.copy(), 1.0, 0.0)
    np.testing.assert_array_equal(r, 1)
    np.testing.assert_array_equal(d, 0)
    bn_out, bn_mean, bn_inv_std = K.batchnorm_forward_train(x, gamma, beta, rm.copy(), rs.copy() ** 2)
    np.testing.assert_array_equal(out, bn_out)
    np.testing.assert_array_equal(inv_std, bn_inv_std)
    for a, b in zip(K.batchrenorm_backward(dout, x, gamma, mean, inv_std, r, d),
                    K.batchnorm_backward(dout, x, gamma, bn_mean, bn_inv_std), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", RENORM_SHAPES, ids=str)
def test_batchrenorm_backward_and_infer_match_twin(shape, dtype, twin):
    rng = np.random.default_rng(shape[0] + 7)
    x, gamma, beta, rm, rs = _renorm_inputs(shape, dtype, rng)
    dout = rng.standard_normal(shape).astype(dtype)
    _, mean, inv_std, r, d = R.batchrenorm_forward_train(x, gamma, beta, rm.copy(), rs.copy(), 1.5, 0.2)
    if shape[0] == 3:
        dout = np.asfortranarray(dout)
    got, want = (impl.batchrenorm_backward(dout, x, gamma, mean, inv_std, r, d) for impl in (K, R))
    scale = float(np.abs(dout * gamma.reshape((1, -1) + (1,) * (x.ndim - 2))).max() * np.abs(inv_std).max())
    _close(got[0], want[0], dtype, scale)
    _close(got[1], want[1], dtype)
    _close(got[2], want[2], dtype)
    _close(K.batchrenorm_forward_infer(x, gamma, beta, rm, rs), R.batchrenorm_forward_infer(x, gamma, beta, rm, rs),
           dtype)


def test_batchrenorm_infer_formula():
    x = np.array([[1.0, 2.0], [3.0, -4.0]])
    out = K.batchrenorm_forward_infer(x, np.array([2.0, 1.0]), np.array([0.5, 0.0]), np.array([1.0, 0.0]),
                                      np.array([2.0, 4.0]))
    np.testing.assert_allclose(out, [[2 * 0 / 2 + 0.5, 0.5], [2 * 2 / 2 + 0.5, -1.0]])


def test_batchrenorm_bad_input_writes_nothing():
    rng = np.random.default_rng(0)
    x, gamma, beta, rm, rs = _renorm_inputs((4, 3), np.float64, rng)
    rm0, rs0 = rm.copy(), rs.copy()
    for impl in (K, R):
        with pytest.raises(ValueError, match=r"^batchrenorm_forward_train: rmax must be a finite number >= 1\.0, "
                                             r"got 0\.5$"):
            impl.batchrenorm_forward_train(x, gamma, beta, rm, rs, 0.5, 1.0)
        with pytest.raises(ValueError, match=r"^batchrenorm_forward_train: dmax must be a finite number >= 0\.0"):
            impl.batchrenorm_forward_train(x, gamma, beta, rm, rs, 2.0, -1.0)
        with pytest.raises(ValueError, match=r"^batchrenorm_forward_train: running_std must be of shape \(3,\)"):
            impl.batchrenorm_forward_train(x, gamma, beta, rm, np.ones(4), 2.0, 1.0)
        with pytest.raises(ValueError, match=r"^batchrenorm_backward: r must be of shape \(3,\)"):
            impl.batchrenorm_backward(x, x, gamma, rm, rs, np.ones(2), np.ones(3))
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rs, rs0)


# ---------------------------------------------------------------------------------------------------------------
# Weight normalization and spectral normalization

#: (shape, dim): affine W (in, out) per column, convolution filters, a middle axis, one unit, one input
WEIGHTS = [((7, 5), -1), ((7, 5), 1), ((4, 3, 3, 2), 0), ((3, 4, 2), 1), ((1, 6), 0), ((6, 1), -1),
           ((300, 3), -1), ((2, 3), 0)]


def _weight(shape, dtype, rng, noncontig=False):
    w = rng.standard_normal(shape).astype(dtype)
    return np.asfortranarray(w) if noncontig else w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "dim"), WEIGHTS, ids=str)
def test_weightnorm_matches_twin_and_paper(shape, dim, dtype, twin):
    rng = np.random.default_rng(sum(shape))
    v = _weight(shape, dtype, rng, noncontig=len(shape) == 4)
    K_ = shape[dim]
    g = (1 + rng.random(K_)).astype(dtype)
    dw = rng.standard_normal(shape).astype(dtype)
    got = K.weightnorm_forward(v, g, dim)
    want = R.weightnorm_forward(v, g, dim)
    for a, b in zip(got, want, strict=True):
        _close(a, b, dtype)
    # the paper's w = g v / ||v|| per unit, unit by unit in float64
    for k in range(K_):
        vk = np.take(v, k, axis=dim).astype(np.float64)
        np.testing.assert_allclose(np.take(got[0], k, axis=dim), g[k] * vk / np.sqrt((vk * vk).sum()),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12)
    gb, wb = (impl.weightnorm_backward(dw, v, g, got[1], dim) for impl in (K, R))
    for a, b in zip(gb, wb, strict=True):
        _close(a, b, dtype)


#: (N, in, out): batch 1, one input, one unit, odd sizes, and a weight tall enough for the kernels' chunked sums
AFFINE_WN = [(5, 7, 3), (1, 4, 6), (3, 1, 2), (4, 5, 1), (2, 300, 3), (70, 600, 40)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", AFFINE_WN, ids=str)
def test_weightnorm_affine_matches_twin_and_the_formed_weight(sizes, dtype, twin):
    N, D, M = sizes
    rng = np.random.default_rng(N * D + M)
    x = rng.standard_normal((D, N)).astype(dtype).T  # a transposed view: not C-contiguous
    v = rng.standard_normal((D, M)).astype(dtype)
    g, b = (1 + rng.random(M)).astype(dtype), rng.standard_normal(M).astype(dtype)
    dout = rng.standard_normal((N, M)).astype(dtype)
    kept = [a.copy() for a in (x, v, g, b, dout)]
    got, want = K.weightnorm_affine_forward(x, v, g, b), R.weightnorm_affine_forward(x, v, g, b)
    for a, e in zip(got, want, strict=True):
        _close(a, e, dtype)
    # the same numbers as forming w = weightnorm_forward(v, g, -1) and running the affine layer on it (float64)
    x64, v64, g64, d64 = (a.astype(np.float64) for a in (x, v, g, dout))
    w, norm = R.weightnorm_forward(v64, g64, -1)
    dv, dg = R.weightnorm_backward(x64.T @ d64, v64, g64, norm, -1)
    # dv is a difference of two terms that cancel exactly with one input (D = 1): compare on the terms' scale
    scales = (None, None, float(np.abs(x64.T @ d64 * (g64 / norm)).max()), None, None)
    back = [impl.weightnorm_affine_backward(dout, x, v, g, got[2], got[1]) for impl in (K, R)]
    for a, e, scale in zip(*back, scales[1:], strict=True):
        _close(a, e, dtype, scale)
    for a, e, scale in zip((*got[:1], *back[0]), (x64 @ w + b, d64 @ w.T, dv, dg, d64.sum(axis=0)), scales,
                           strict=True):
        _close(a, e.astype(dtype), dtype, scale)
    for a, k in zip((x, v, g, b, dout), kept, strict=True):
        np.testing.assert_array_equal(a, k)  # inputs untouched


def test_weightnorm_affine_bad_input():
    x, v, g = np.ones((2, 3)), np.ones((3, 4)), np.ones(4)
    for impl in (K, R):
        with pytest.raises(ValueError, match=r"^weightnorm_affine_forward: x must be of shape \(any, 3\), got shape "
                                             r"\(2, 4\)$"):
            impl.weightnorm_affine_forward(np.ones((2, 4)), v, g, g)
        with pytest.raises(ValueError, match=r"^weightnorm_affine_forward: v must be a 2-D array \(in, out\)"):
            impl.weightnorm_affine_forward(x, np.ones((3, 4, 1)), g, g)
        with pytest.raises(ValueError, match=r"^weightnorm_affine_backward: t must be of shape \(2, 4\)"):
            impl.weightnorm_affine_backward(np.ones((2, 4)), x, v, g, g, np.ones((2, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "dim"), WEIGHTS, ids=str)
def test_spectralnorm_matches_twin(shape, dim, dtype, twin):
    rng = np.random.default_rng(sum(shape) + 1)
    w = _weight(shape, dtype, rng, noncontig=len(shape) == 4)
    K_ = shape[dim]
    u0 = rng.standard_normal(K_).astype(dtype)
    v0 = rng.standard_normal(w.size // K_).astype(dtype)
    dw = rng.standard_normal(shape).astype(dtype)
    results = []
    for impl in (K, R):
        u, v = u0.copy(), v0.copy()
        w_sn, sigma = impl.spectralnorm_forward(w, u, v, dim, 2)
        u_eval, v_eval = u.copy(), v.copy()
        w_eval, sigma_eval = impl.spectralnorm_forward(w, u_eval, v_eval, dim, training=False)
        np.testing.assert_array_equal(u_eval, u)  # evaluation leaves u, v alone
        dw_in = impl.spectralnorm_backward(dw, w, u, v, float(sigma), dim)
        results.append((w_sn, np.asarray(sigma), u, v, w_eval, dw_in))
    for a, b in zip(*results, strict=True):
        _close(a, b, dtype)
    # the power method converges to the largest singular value
    mat = np.moveaxis(w.astype(np.float64), dim, 0).reshape(K_, -1)
    u, v = u0.astype(np.float64), v0.astype(np.float64)
    sigma = K.spectralnorm_forward(mat, u, v, 0, 200)[1]
    np.testing.assert_allclose(sigma, np.linalg.svd(mat, compute_uv=False)[0], rtol=1e-6)


def _torch_linear(torch, W, b):
    lin = torch.nn.Linear(*W.shape).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W.T.astype(np.float64)))
        lin.bias.copy_(torch.from_numpy(b.astype(np.float64)))
    return lin


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_weightnorm_matches_torch_parametrization(layer):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import parametrizations

    rng = np.random.default_rng(4)
    if layer == "linear":  # fastnn's Affine W (in, out) is the transpose of torch's (out, in)
        W = rng.standard_normal((6, 4))
        mod, dim, to_torch = _torch_linear(torch, W, np.zeros(4)), -1, (lambda a: a.T)
    else:
        W = rng.standard_normal((4, 3, 2, 2))
        mod = torch.nn.Conv2d(3, 4, 2).double()
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(W))
        dim, to_torch = 0, (lambda a: a)
    parametrizations.weight_norm(mod, dim=0)
    g_t, v_t = mod.parametrizations.weight.original0, mod.parametrizations.weight.original1
    g = g_t.detach().numpy().reshape(-1).copy()
    w, norm = K.weightnorm_forward(W, g, dim)
    np.testing.assert_allclose(to_torch(w), mod.weight.detach().numpy(), rtol=1e-12)
    dw = rng.standard_normal(W.shape)
    (mod.weight * torch.from_numpy(np.ascontiguousarray(to_torch(dw)))).sum().backward()
    dv, dg = K.weightnorm_backward(dw, W, g, norm, dim)
    np.testing.assert_allclose(to_torch(dv), v_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg, g_t.grad.numpy().reshape(-1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_spectralnorm_matches_torch_in_training_and_eval(layer):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import parametrizations

    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    if layer == "linear":
        W = rng.standard_normal((6, 4))
        mod, dim, to_torch = _torch_linear(torch, W, np.zeros(4)), -1, (lambda a: a.T)
    else:
        W = rng.standard_normal((4, 3, 2, 2))
        mod = torch.nn.Conv2d(3, 4, 2).double()
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(W))
        dim, to_torch = 0, (lambda a: a)
    parametrizations.spectral_norm(mod)
    sn = mod.parametrizations.weight[0]
    u, v = sn._u.numpy().copy(), sn._v.numpy().copy()  # the same initial u, v (after torch's 15 warm-up steps)
    w0 = mod.parametrizations.weight.original
    for training in (True, True, False):
        mod.train(training)
        w_sn, sigma = K.spectralnorm_forward(W, u, v, dim, training=training)
        w_t = mod.weight
        np.testing.assert_allclose(to_torch(w_sn), w_t.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(u, sn._u.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(v, sn._v.numpy(), rtol=1e-10, atol=1e-12)
        dw = rng.standard_normal(W.shape)
        w0.grad = None
        (w_t * torch.from_numpy(np.ascontiguousarray(to_torch(dw)))).sum().backward()
        np.testing.assert_allclose(to_torch(K.spectralnorm_backward(dw, W, u, v, float(sigma), dim)),
                                   w0.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_reparam_bad_input_writes_nothing():
    w, u, v = np.ones((3, 4)), np.ones(3), np.ones(4)
    for impl in (K, R):
        with pytest.raises(ValueError, match=r"^weightnorm_forward: g must be of shape \(4,\), got shape \(3,\)$"):
            impl.weightnorm_forward(w, np.ones(3), -1)
        with pytest.raises(ValueError, match=r"^weightnorm_forward: v must be at least 2-D"):
            impl.weightnorm_forward(np.ones(3), np.ones(3))
        with pytest.raises(ValueError, match=r"^weightnorm_forward: dim must be <= 1, got 2$"):
            impl.weightnorm_forward(w, np.ones(3), 2)
        with pytest.raises(TypeError, match=r"^spectralnorm_forward: u must be of dtype float64 like w"):
            impl.spectralnorm_forward(w, np.ones(3, np.float32), v)
        with pytest.raises(ValueError, match=r"^spectralnorm_forward: n_power_iterations must be >= 1, got 0$"):
            impl.spectralnorm_forward(w, u, v, n_power_iterations=0)
        with pytest.raises(ValueError, match=r"^spectralnorm_backward: sigma must be a finite number > 0"):
            impl.spectralnorm_backward(w, w, u, v, 0.0)
    np.testing.assert_array_equal(u, 1)
    np.testing.assert_array_equal(v, 1)

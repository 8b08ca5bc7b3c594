"""fastnn.kernels.normalization against fastnn.reference.normalization, numerics and bad input.

Tolerances. float64 uses ``tests.conftest.TOL``. float32 is looser: rtol = 1e-5, and every comparison's atol is
that factor times the scale of the quantity (max |expected| for outputs, statistics and parameter gradients;
max |dout * gamma| * max |inv_std| for dx, whose exact value can be ~0 when the sums cancel, e.g. batch norm over
N = 2). The kernels accumulate in float64 and the float32 reference in float32 with NumPy's pairwise sums: measured
differences are <= 7e-7 of that scale (the float32 reference is itself 7e-7 from a float64 one; the kernels are
within 1e-7 of float64), so 1e-5 leaves a margin of ~15 and still catches any wrong term.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastnn.kernels import normalization as K
from fastnn.kernels.normalization import _COLS, _PLANE_MIN, _TILE
from fastnn.reference import normalization as R
from tests.conftest import TOL

F32_TOL = 1e-5


def _tol(dtype: np.dtype) -> float:
    return F32_TOL if dtype == np.float32 else TOL[np.dtype(np.float64)]["rtol"]


def _close(actual, expected, dtype, scale=None):
    """Same dtype and shape, and equal within the dtype's tolerance relative to ``scale`` (see module doc)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape
    if scale is None:
        scale = float(np.abs(expected).max()) if expected.size else 1.0
    tol = _tol(dtype)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale + 1e-300)


# ---------------------------------------------------------------------------------------------------------------
# The four normalizations through one interface: forward(M, x, gamma, beta) and backward(M, dout, x, gamma, stats)


@dataclass(frozen=True)
class Op:
    name: str
    param_shape: Callable[[tuple], tuple]
    stat_shape: Callable[[tuple], tuple]
    forward: Callable
    backward: Callable


def _bn_forward(M, x, gamma, beta, groups=None, **kw):
    C = x.shape[1]
    return M.batchnorm_forward_train(x, gamma, beta, np.zeros(C), np.ones(C), **kw)


def _bn_backward(M, dout, x, gamma, mean, istd, groups=None):
    return M.batchnorm_backward(dout, x, gamma, mean, istd)


def _ln_forward(M, x, gamma, beta, groups=None, **kw):
    return M.layernorm_forward(x, gamma, beta, **kw)


def _ln_backward(M, dout, x, gamma, mean, istd, groups=None):
    return M.layernorm_backward(dout, x, gamma, mean, istd)


def _gn_forward(M, x, gamma, beta, groups=None, **kw):
    return M.groupnorm_forward(x, gamma, beta, groups, **kw)


def _gn_backward(M, dout, x, gamma, mean, istd, groups=None):
    return M.groupnorm_backward(dout, x, gamma, groups, mean, istd)


def _in_forward(M, x, gamma, beta, groups=None, **kw):
    return M.instancenorm_forward(x, gamma, beta, **kw)


def _in_backward(M, dout, x, gamma, mean, istd, groups=None):
    return M.instancenorm_backward(dout, x, gamma, mean, istd)


OPS = {
    "batchnorm": Op("batchnorm", lambda s: (s[1],), lambda s, g: (s[1],), _bn_forward, _bn_backward),
    "layernorm": Op("layernorm", lambda s: s[1:], lambda s, g: (s[0],), _ln_forward, _ln_backward),
    "groupnorm": Op("groupnorm", lambda s: (s[1],), lambda s, g: (s[0], g), _gn_forward, _gn_backward),
    "instancenorm": Op("instancenorm", lambda s: (s[1],), lambda s, g: (s[0], s[1]), _in_forward, _in_backward),
}

# (op, shape, groups): every path of the core -- planes (H*W >= _PLANE_MIN), columns (batch norm with short or
# no planes), per-element affine rows (layer norm; group norm with short planes) -- with batch 1, one channel,
# odd sizes, rows longer than a tile, column blocks wider than _COLS, row counts that leave a remainder
CASES = [
    ("batchnorm", (4, 3, 12, 11), None),  # planes of 132
    ("batchnorm", (6, 3, 8, 8), None),  # short planes: columns
    ("batchnorm", (1, 3, 12, 12), None),  # N = 1: still 144 values per channel
    ("batchnorm", (5, 1, 12, 13), None),  # one channel
    ("batchnorm", (2, 2, 90, 100), None),  # a plane spans two tiles
    ("batchnorm", (7, 6, 3, 2), None),
    ("batchnorm", (3, 4, 1, 1), None),
    ("batchnorm", (1, 3, 2, 2), None),
    ("batchnorm", (2, 5), None),  # (N, D)
    ("batchnorm", (33, 1), None),  # one feature
    ("batchnorm", (37, 2100), None),  # two column blocks, several row chunks, remainder rows
    ("batchnorm", (9, 700, 2, 2), None),  # short planes spread over column blocks
    ("layernorm", (4, 7), None),
    ("layernorm", (1, 5), None),  # batch 1
    ("layernorm", (3, 1), None),  # one feature: zero variance
    ("layernorm", (3, 4, 5, 6), None),  # gamma of shape (4, 5, 6)
    ("layernorm", (2, 3, 9000), None),  # rows longer than a tile
    ("layernorm", (13, 3, 3), None),  # several row chunks
    ("groupnorm", (4, 6, 12, 11), 1),  # planes: one gamma per plane
    ("groupnorm", (4, 6, 12, 11), 2),
    ("groupnorm", (4, 6, 12, 11), 3),
    ("groupnorm", (4, 6, 5, 7), 6),  # short planes: gamma spread per element
    ("groupnorm", (4, 6, 5, 7), 2),
    ("groupnorm", (1, 6, 12, 12), 3),  # batch 1
    ("groupnorm", (3, 1, 12, 12), 1),  # one channel
    ("groupnorm", (2, 4, 3, 3), 2),
    ("groupnorm", (2, 4, 1, 1), 4),  # one element per group
    ("groupnorm", (2, 2, 100, 90), 1),  # a group spans several tiles
    ("instancenorm", (3, 5, 12, 12), None),
    ("instancenorm", (1, 2, 7, 5), None),
    ("instancenorm", (2, 3, 2, 3), None),  # short planes
    ("instancenorm", (2, 1, 1, 1), None),  # one element per instance
]
IDS = [f"{op}-{'x'.join(map(str, s))}" + (f"-G{g}" if g else "") for op, s, g in CASES]


def test_cases_cover_every_path():
    """The shapes above reach the geometries and tile boundaries the kernels distinguish."""
    for name in ("batchnorm", "groupnorm", "instancenorm"):
        planes = [np.prod(s[2:]) for op, s, _ in CASES if op == name and len(s) == 4]
        assert any(L >= _PLANE_MIN for L in planes) and any(L < _PLANE_MIN for L in planes)
    assert any(np.prod(s[2:]) > _TILE for op, s, _ in CASES)
    assert any(op == "layernorm" and np.prod(s[1:]) > _TILE for op, s, _ in CASES)
    assert any(op == "batchnorm" and np.prod(s[1:]) > _COLS and np.prod(s[2:]) < _PLANE_MIN for op, s, _ in CASES)


def _inputs(op: Op, shape, dtype, seed=0, scale=2.0, offset=0.5):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale + offset).astype(dtype)
    pshape = op.param_shape(shape)
    gamma = (1 + 0.3 * rng.standard_normal(pshape)).astype(dtype)
    beta = rng.standard_normal(pshape).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dout


def _dx_scale(dout, gamma, inv_std):
    """Scale of the terms of dx (its exact value may be ~0 when they cancel)."""
    return float(np.abs(dout).max() * np.abs(gamma).max() * np.abs(inv_std).max())


@pytest.mark.parametrize(("name", "shape", "groups"), CASES, ids=IDS)
def test_matches_reference(name, shape, groups, dtype, twin):
    op = OPS[name]
    x, gamma, beta, dout = _inputs(op, shape, dtype)
    out, mean, istd = op.forward(K, x, gamma, beta, groups)
    r_out, r_mean, r_istd = op.forward(R, x, gamma, beta, groups)
    assert mean.shape == istd.shape == op.stat_shape(shape, groups)
    _close(out, r_out, dtype)
    _close(mean, r_mean, dtype)
    _close(istd, r_istd, dtype)
    # backward on the same (reference) statistics, so only the backward is compared
    dx, dgamma, dbeta = op.backward(K, dout, x, gamma, r_mean, r_istd, groups)
    r_dx, r_dgamma, r_dbeta = op.backward(R, dout, x, gamma, r_mean, r_istd, groups)
    _close(dx, r_dx, dtype, _dx_scale(dout, gamma, r_istd))
    _close(dgamma, r_dgamma, dtype)
    _close(dbeta, r_dbeta, dtype)
    assert dgamma.shape == dbeta.shape == gamma.shape


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(name=st.sampled_from(sorted(OPS)), n=st.integers(1, 9), c=st.integers(1, 8), h=st.integers(1, 12),
       w=st.integers(1, 12), g_index=st.integers(0, 7), seed=st.integers(0, 2**32 - 1))
def test_matches_reference_random_shapes(name, n, c, h, w, g_index, seed, twin):
    op = OPS[name]
    shape = (n, c, h, w)
    divisors = [d for d in range(1, c + 1) if c % d == 0]
    groups = divisors[g_index % len(divisors)]
    x, gamma, beta, dout = _inputs(op, shape, np.dtype(np.float64), seed)
    dt = np.dtype(np.float64)
    for got, want in zip(op.forward(K, x, gamma, beta, groups), op.forward(R, x, gamma, beta, groups), strict=True):
        _close(got, want, dt)
    _, mean, istd = op.forward(R, x, gamma, beta, groups)
    got = op.backward(K, dout, x, gamma, mean, istd, groups)
    want = op.backward(R, dout, x, gamma, mean, istd, groups)
    _close(got[0], want[0], dt, _dx_scale(dout, gamma, istd))
    _close(got[1], want[1], dt)
    _close(got[2], want[2], dt)


# ---------------------------------------------------------------------------------------------------------------
# Numerics


@pytest.mark.parametrize("name", sorted(OPS))
def test_large_mean(name, dtype, twin):
    """x = 1e4 + N(0, 1): the statistics and the normalize pass lose nothing to cancellation.

    Compared with the float64 reference on the same (float32-rounded) values. A one-pass E[x^2] - E[x]^2 in
    float32, or a folded ``x * scale + (beta - mean * scale)``, would be off by ~1e-3 here.
    """
    op = OPS[name]
    shape = (8, 4, 6, 6)
    groups = 2
    x, gamma, beta, dout = _inputs(op, shape, dtype, seed=3, scale=1.0, offset=1e4)
    f64 = [a.astype(np.float64) for a in (x, gamma, beta, dout)]
    out, mean, istd = op.forward(K, x, gamma, beta, groups)
    r_out, r_mean, r_istd = op.forward(R, *f64[:3], groups)
    tol = 4e-6 if dtype == np.float32 else 1e-11  # float32: rounding of the result plus a few ulp of x - mean
    np.testing.assert_allclose(out, r_out, rtol=tol, atol=tol * np.abs(r_out).max())
    np.testing.assert_allclose(istd, r_istd, rtol=tol)
    np.testing.assert_allclose(mean, r_mean, rtol=1e-7 if dtype == np.float32 else 1e-15)
    # backward from the statistics in x's dtype, as a layer would pass them
    dx, dgamma, dbeta = op.backward(K, dout, x, gamma, mean, istd, groups)
    r_dx, r_dgamma, r_dbeta = op.backward(R, f64[3], f64[0], f64[1], mean.astype(np.float64),
                                          istd.astype(np.float64), groups)
    np.testing.assert_allclose(dx, r_dx, rtol=tol, atol=tol * _dx_scale(dout, gamma, istd))
    np.testing.assert_allclose(dgamma, r_dgamma, rtol=tol, atol=tol * np.abs(r_dgamma).max())
    np.testing.assert_allclose(dbeta, r_dbeta, rtol=tol, atol=tol * np.abs(r_dbeta).max())


@pytest.mark.parametrize("name", sorted(OPS))
def test_statistics_are_the_moments(name, dtype):
    """mean and inv_std are the mean and 1/sqrt(biased var + eps) over the op's axes (NumPy in float64)."""
    op = OPS[name]
    shape = (5, 6, 4, 3)
    x, gamma, beta, _ = _inputs(op, shape, dtype)
    eps = 0.01
    _, mean, istd = op.forward(K, x, gamma, beta, 3, eps=eps)
    x64 = x.astype(np.float64)
    view = {"batchnorm": x64.transpose(1, 0, 2, 3).reshape(6, -1), "layernorm": x64.reshape(5, -1),
            "groupnorm": x64.reshape(15, -1), "instancenorm": x64.reshape(30, -1)}[name]
    np.testing.assert_allclose(mean.reshape(-1), view.mean(axis=1), rtol=_tol(dtype), atol=_tol(dtype))
    np.testing.assert_allclose(istd.reshape(-1), 1 / np.sqrt(view.var(axis=1) + eps), rtol=_tol(dtype))


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the reference's inf - inf
@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("shape", [(4, 6, 12, 12), (4, 6, 3, 3)], ids=["planes", "short-planes"])
def test_special_values_like_the_reference(name, shape, special, twin):
    """A NaN or +-inf poisons its own statistic and what it normalizes, nothing else; a +-inf gives a +-inf mean
    (as NumPy) even where it is the element the shifted sums start from (the first row of a column chunk)."""
    op = OPS[name]
    x, gamma, beta, dout = _inputs(op, shape, np.dtype(np.float64))
    x[2, 2, 0, 0] = special  # sample 2 starts the second column chunk of batch norm's short-plane path
    got = op.forward(K, x, gamma, beta, 3)
    want = op.forward(R, x, gamma, beta, 3)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(np.isinf(g), np.isinf(w))
        assert not np.isfinite(g).all() and np.isfinite(g).any()
        finite = np.isfinite(w)
        _close(np.where(finite, g, 0), np.where(finite, w, 0), np.dtype(np.float64))
    if np.isinf(special):
        mean = got[1].reshape(-1)
        assert mean[np.isinf(mean)].tolist() == [special]


def test_batchnorm_single_sample_features(dtype, twin):
    """(1, D): every feature has zero variance, so out = beta, inv_std = 1/sqrt(eps) and dx = 0 (up to rounding)."""
    x = np.array([[3.0, -1.5, 1e4, 0.0]], dtype)
    gamma = np.array([2.0, -1.0, 0.5, 1.0], dtype)
    beta = np.array([0.25, 1.0, -3.0, 0.0], dtype)
    out, mean, istd = K.batchnorm_forward_train(x, gamma, beta, np.zeros(4), np.ones(4), eps=1e-4)
    np.testing.assert_array_equal(out, beta[None, :])
    np.testing.assert_array_equal(mean, x[0])
    _close(istd, np.full(4, 100.0), dtype)
    dout = np.array([[1.0, -2.0, 0.5, 3.0]], dtype)
    dx, dgamma, dbeta = K.batchnorm_backward(dout, x, gamma, mean, istd)
    np.testing.assert_allclose(dx, 0, atol=_tol(dtype) * 600)
    np.testing.assert_array_equal(dgamma, np.zeros(4, dtype))
    np.testing.assert_array_equal(dbeta, dout[0])


def test_constant_input_gives_beta(dtype, twin):
    """Zero variance everywhere: every normalization returns beta exactly."""
    x = np.full((3, 4, 5, 5), 7.25, dtype)
    gamma, beta = np.full(4, 3.0, dtype), np.arange(4, dtype=dtype)
    want = np.broadcast_to(beta[None, :, None, None], x.shape)
    np.testing.assert_array_equal(K.batchnorm_forward_train(x, gamma, beta, np.zeros(4), np.ones(4))[0], want)
    np.testing.assert_array_equal(K.groupnorm_forward(x, gamma, beta, 2)[0], want)
    np.testing.assert_array_equal(K.instancenorm_forward(x, gamma, beta)[0], want)
    ln = K.layernorm_forward(x, np.ones(x.shape[1:], dtype), np.zeros(x.shape[1:], dtype))[0]
    np.testing.assert_array_equal(ln, np.zeros_like(x))


# ---------------------------------------------------------------------------------------------------------------
# Running statistics


@pytest.mark.parametrize("shape", [(6, 3, 4, 4), (6, 3, 1, 2), (9, 5)], ids=["planes", "columns", "2d"])
def test_running_stats_updated_in_place(shape, dtype, twin):
    x, gamma, beta, _ = _inputs(OPS["batchnorm"], shape, dtype)
    C = shape[1]
    rng = np.random.default_rng(5)
    rm, rv = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2, C).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    _, mean, _ = K.batchnorm_forward_train(x, gamma, beta, rm, rv, momentum=0.8)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    x64 = x.astype(np.float64)
    _close(rm, 0.8 * rm0 + 0.2 * x64.mean(axis=axes), dtype)
    _close(rv, 0.8 * rv0 + 0.2 * x64.var(axis=axes), dtype)  # biased batch variance
    # the same update as the reference, from the same starting point
    rm_r, rv_r = rm0.copy(), rv0.copy()
    R.batchnorm_forward_train(x, gamma, beta, rm_r, rv_r, momentum=0.8)
    _close(rm, rm_r, dtype)
    _close(rv, rv_r, dtype)


def test_running_stats_momentum_extremes(dtype, twin):
    x, gamma, beta, _ = _inputs(OPS["batchnorm"], (4, 3, 6, 6), dtype)
    rm, rv = np.full(3, 5.0, dtype), np.full(3, 7.0, dtype)
    K.batchnorm_forward_train(x, gamma, beta, rm, rv, momentum=1.0)
    np.testing.assert_array_equal(rm, np.full(3, 5.0, dtype))  # momentum 1: the batch is ignored
    np.testing.assert_array_equal(rv, np.full(3, 7.0, dtype))
    _, mean, istd = K.batchnorm_forward_train(x, gamma, beta, rm, rv, momentum=0.0, eps=1e-5)
    np.testing.assert_array_equal(rm, mean)  # momentum 0: exactly the batch statistics
    _close(rv, 1 / istd.astype(np.float64) ** 2 - 1e-5, dtype, scale=1.0)


def test_running_stats_through_views_and_other_dtype(twin):
    """Non-contiguous running arrays are updated through the view; float64 running stats with float32 x."""
    x, gamma, beta, _ = _inputs(OPS["batchnorm"], (5, 3, 4, 4), np.dtype(np.float32))
    store = np.zeros((2, 6))
    rm, rv = store[0, ::2], store[1, 1::2]
    K.batchnorm_forward_train(x, gamma, beta, rm, rv, momentum=0.5)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(store[0, ::2], 0.5 * x64.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(store[1, 1::2], 0.5 * x64.var(axis=(0, 2, 3)), rtol=1e-6)
    assert np.all(store[0, 1::2] == 0) and np.all(store[1, ::2] == 0)


def test_batchnorm_infer_uses_running_stats(dtype, twin):
    x, gamma, beta, _ = _inputs(OPS["batchnorm"], (4, 3, 6, 6), dtype)
    rm, rv = np.array([0.5, -1.0, 2.0], dtype), np.array([1.0, 4.0, 0.25], dtype)
    out = K.batchnorm_forward_infer(x, gamma, beta, rm, rv, eps=1e-3)
    x64 = x.astype(np.float64)
    want = (gamma.astype(np.float64)[:, None, None] * (x64 - rm.astype(np.float64)[:, None, None])
            / np.sqrt(rv.astype(np.float64)[:, None, None] + 1e-3) + beta.astype(np.float64)[:, None, None])
    _close(out, want.astype(dtype), dtype)
    _close(out, R.batchnorm_forward_infer(x, gamma, beta, rm, rv, eps=1e-3), dtype)
    x2 = x[:, :, 0, 0].copy()
    _close(K.batchnorm_forward_infer(x2, gamma, beta, rm, rv), R.batchnorm_forward_infer(x2, gamma, beta, rm, rv),
           dtype)


# ---------------------------------------------------------------------------------------------------------------
# Layout, dtype, inputs untouched, empty batch


def _noncontiguous(a):
    """The same values as ``a`` in a strided, non-contiguous view."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


NONCONTIGUOUS = [c for c in CASES if np.prod(c[1]) > 30][::2]


@pytest.mark.parametrize(("name", "shape", "groups"), NONCONTIGUOUS,
                         ids=[IDS[CASES.index(c)] for c in NONCONTIGUOUS])
def test_non_contiguous_inputs(name, shape, groups, twin):
    op = OPS[name]
    dtype = np.dtype(np.float32)
    x, gamma, beta, dout = _inputs(op, shape, dtype)
    nx, ng, nb, nd = (_noncontiguous(a) for a in (x, gamma, beta, dout))
    assert not nx.flags.c_contiguous
    for got, want in zip(op.forward(K, nx, ng, nb, groups), op.forward(K, x, gamma, beta, groups), strict=True):
        np.testing.assert_array_equal(got, want)
    _, mean, istd = op.forward(K, x, gamma, beta, groups)
    got = op.backward(K, nd, nx, ng, _noncontiguous(mean), _noncontiguous(istd), groups)
    want = op.backward(K, dout, x, gamma, mean, istd, groups)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    # a transposed (Fortran-ordered) x
    xf = np.asfortranarray(x)
    np.testing.assert_array_equal(op.forward(K, xf, gamma, beta, groups)[0], op.forward(K, x, gamma, beta, groups)[0])


@pytest.mark.parametrize("name", sorted(OPS))
def test_dtypes(name):
    op = OPS[name]
    shape = (3, 4, 5, 5)
    x32, g32, b32, d32 = _inputs(op, shape, np.dtype(np.float32))
    for x, g, b, d, want in [(x32, g32, b32, d32, np.float32),
                             (x32, g32.astype(np.float64), b32, d32, np.float64),  # mixed: NumPy promotion
                             (np.round(x32 * 10).astype(np.int32), g32, b32, d32, np.float64)]:  # ints -> float64
        for M in (K, R):
            out, mean, istd = op.forward(M, x, g, b, 2)
            assert out.dtype == mean.dtype == istd.dtype == want
            dx, dgamma, dbeta = op.backward(M, d, x, g, mean, istd, 2)
            assert dx.dtype == dgamma.dtype == dbeta.dtype == want
    # the kernels promote exactly as the reference
    xi = np.round(x32 * 10).astype(np.int64)
    for got, ref in zip(op.forward(K, xi, g32, b32, 2), op.forward(R, xi, g32, b32, 2), strict=True):
        _close(got, ref, np.dtype(np.float64))


@pytest.mark.parametrize("name", sorted(OPS))
def test_inputs_not_modified(name, twin):
    op = OPS[name]
    x, gamma, beta, dout = _inputs(op, (4, 6, 7, 7), np.dtype(np.float32))
    saved = [a.copy() for a in (x, gamma, beta, dout)]
    _, mean, istd = op.forward(K, x, gamma, beta, 3)
    stats = [mean.copy(), istd.copy()]
    op.backward(K, dout, x, gamma, mean, istd, 3)
    for a, s in zip((x, gamma, beta, dout, mean, istd), saved + stats, strict=True):
        np.testing.assert_array_equal(a, s)
    if name == "batchnorm":
        rm, rv = np.zeros(6, np.float32), np.ones(6, np.float32)
        K.batchnorm_forward_infer(x, gamma, beta, rm, rv)
        for a, s in zip((x, gamma, beta, rm, rv), saved[:3] + [np.zeros(6), np.ones(6)], strict=True):
            np.testing.assert_array_equal(a, s)


@pytest.mark.parametrize("name", ["layernorm", "groupnorm", "instancenorm"])
def test_empty_batch(name, dtype):
    op = OPS[name]
    shape = (0, 4, 3, 3)
    x = np.empty(shape, dtype)
    gamma, beta = np.ones(op.param_shape(shape), dtype), np.zeros(op.param_shape(shape), dtype)
    for M in (K, R):
        out, mean, istd = op.forward(M, x, gamma, beta, 2)
        assert out.shape == shape and mean.shape == istd.shape == op.stat_shape(shape, 2)
        assert out.dtype == mean.dtype == dtype
        dx, dgamma, dbeta = op.backward(M, x, x, gamma, mean, istd, 2)
        assert dx.shape == shape
        np.testing.assert_array_equal(dgamma, np.zeros_like(gamma))
        np.testing.assert_array_equal(dbeta, np.zeros_like(gamma))
    out = K.batchnorm_forward_infer(np.empty((0, 4)), np.ones(4), np.zeros(4), np.zeros(4), np.ones(4))
    assert out.shape == (0, 4)


# ---------------------------------------------------------------------------------------------------------------
# Bad input: both twins raise the same error, before anything is written


def _bn_args(**over):
    rng = np.random.default_rng(0)
    args = {"x": rng.standard_normal((4, 3, 2, 2)), "gamma": np.ones(3), "beta": np.zeros(3),
            "running_mean": np.zeros(3), "running_var": np.ones(3), "momentum": 0.9, "eps": 1e-5}
    args.update(over)
    return args


BAD_TRAIN = [
    ({"x": np.zeros((4, 3, 2))}, ValueError, "x must be 2-D (N, D) or 4-D (N, C, H, W)"),
    ({"x": np.zeros((0, 3, 2, 2))}, ValueError, "N must be >= 1, got 0"),
    ({"x": np.zeros((4, 3, 0, 2))}, ValueError, "x.shape[2] must be >= 1"),
    ({"x": "abc"}, TypeError, "x must be a NumPy array of floats"),
    ({"x": np.zeros((4, 3, 2, 2), complex)}, TypeError, "x must be a real numeric array"),
    ({"gamma": np.ones(4)}, ValueError, "gamma must be of shape (3,)"),
    ({"beta": np.ones((3, 1))}, ValueError, "beta must be of shape (3,)"),
    ({"running_mean": np.zeros(2)}, ValueError, "running_mean must be of shape (3,)"),
    ({"running_var": [1.0, 1.0, 1.0]}, TypeError, "running_var must be a float32 or float64 ndarray"),
    ({"running_var": np.ones(3, np.int64)}, TypeError, "running_var must be a float32 or float64 ndarray"),
    ({"momentum": 1.5}, ValueError, "momentum must be a finite number >= 0.0 and <= 1.0"),
    ({"momentum": -0.1}, ValueError, "momentum must be"),
    ({"eps": 0.0}, ValueError, "eps must be a finite number > 0.0"),
    ({"eps": float("nan")}, ValueError, "eps must be"),
    ({"eps": "1e-5"}, TypeError, "eps must be a real number"),
]


@pytest.mark.parametrize("M", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize(("over", "exc", "msg"), BAD_TRAIN, ids=[f"{list(o)[0]}-{i}" for i, (o, _, _) in
                                                                 enumerate(BAD_TRAIN)])
def test_batchnorm_train_bad_input(M, over, exc, msg):
    args = _bn_args(**over)
    rm, rv = args["running_mean"], args["running_var"]
    saved = [np.array(rm, copy=True), np.array(rv, copy=True)]
    with pytest.raises(exc, match="^batchnorm_forward_train: " + re.escape(msg)):
        M.batchnorm_forward_train(**args)
    np.testing.assert_array_equal(rm, saved[0])  # nothing written before the error
    np.testing.assert_array_equal(rv, saved[1])


def test_batchnorm_train_read_only_running_stats():
    rm = np.zeros(3)
    rm.flags.writeable = False
    for M in (K, R):
        with pytest.raises(ValueError, match="running_mean must be writeable"):
            M.batchnorm_forward_train(**_bn_args(running_mean=rm))


def _backward_call(name, M, **over):
    rng = np.random.default_rng(0)
    args = {"dout": rng.standard_normal((4, 6, 3, 3)), "x": rng.standard_normal((4, 6, 3, 3)),
            "gamma": np.ones(6)}
    stats = {"batchnorm": (6,), "layernorm": (4,), "groupnorm": (4, 3), "instancenorm": (4, 6)}[name]
    if name == "layernorm":
        args["gamma"] = np.ones((6, 3, 3))
    args.update(mean=np.zeros(stats), inv_std=np.ones(stats))
    if name == "groupnorm":
        args["groups"] = 3
    args.update(over)
    return getattr(M, f"{name}_backward")(**args)


BAD_BACKWARD = [
    ("batchnorm", {"x": np.zeros((4, 6, 3))}, ValueError, "x must be 2-D (N, D) or 4-D (N, C, H, W)"),
    ("batchnorm", {"x": np.zeros((0, 6, 3, 3)), "dout": np.zeros((0, 6, 3, 3))}, ValueError, "N must be >= 1"),
    ("batchnorm", {"dout": np.zeros((4, 6, 3, 4))}, ValueError, "dout must be of shape (4, 6, 3, 3)"),
    ("batchnorm", {"gamma": np.ones(5)}, ValueError, "gamma must be of shape (6,)"),
    ("batchnorm", {"mean": np.zeros((1, 6))}, ValueError, "mean must be of shape (6,)"),
    ("batchnorm", {"inv_std": np.ones(7)}, ValueError, "inv_std must be of shape (6,)"),
    ("layernorm", {"x": np.zeros(4), "dout": np.zeros(4)}, ValueError, "x must be at least 2-D (N, ...)"),
    ("layernorm", {"gamma": np.ones(6)}, ValueError, "gamma must be of shape (6, 3, 3)"),
    ("layernorm", {"mean": np.zeros(3)}, ValueError, "mean must be of shape (4,)"),
    ("groupnorm", {"groups": 4}, ValueError, "groups must be a divisor of C=6, got 4"),
    ("groupnorm", {"groups": 0}, ValueError, "groups must be >= 1, got 0"),
    ("groupnorm", {"groups": 2.0}, TypeError, "groups must be an int"),
    ("groupnorm", {"groups": True}, TypeError, "groups must be an int"),
    ("groupnorm", {"mean": np.zeros((4, 6))}, ValueError, "mean must be of shape (4, 3)"),
    ("groupnorm", {"x": np.zeros((4, 6, 9)), "dout": np.zeros((4, 6, 9))}, ValueError, "x must be 4-D"),
    ("instancenorm", {"inv_std": np.ones((4, 3))}, ValueError, "inv_std must be of shape (4, 6)"),
    ("instancenorm", {"gamma": np.ones((6, 1))}, ValueError, "gamma must be of shape (6,)"),
    ("instancenorm", {"dout": None}, TypeError, "dout must be a NumPy array of floats"),
]


@pytest.mark.parametrize("M", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize(("name", "over", "exc", "msg"), BAD_BACKWARD,
                         ids=[f"{n}-{list(o)[0]}-{i}" for i, (n, o, _, _) in enumerate(BAD_BACKWARD)])
def test_backward_bad_input(M, name, over, exc, msg):
    with pytest.raises(exc, match=f"^{name}_backward: " + re.escape(msg)):
        _backward_call(name, M, **over)


BAD_FORWARD = [
    ("layernorm_forward", {"gamma": np.ones((6, 3))}, ValueError, "gamma must be of shape (6, 3, 3)"),
    ("layernorm_forward", {"eps": -1.0}, ValueError, "eps must be a finite number > 0.0"),
    ("groupnorm_forward", {"groups": 5}, ValueError, "groups must be a divisor of C=6, got 5"),
    ("groupnorm_forward", {"beta": np.ones(3)}, ValueError, "beta must be of shape (6,)"),
    ("groupnorm_forward", {"x": np.zeros((4, 6))}, ValueError, "x must be 4-D (N, C, H, W)"),
    ("instancenorm_forward", {"x": np.zeros((4, 6, 0, 3))}, ValueError, "x.shape[2] must be >= 1, got 0"),
    ("instancenorm_forward", {"eps": 0}, ValueError, "eps must be a finite number > 0.0"),
    ("batchnorm_forward_infer", {"running_var": np.ones(2)}, ValueError, "running_var must be of shape (6,)"),
    ("batchnorm_forward_infer", {"x": np.zeros((4, 6, 2))}, ValueError, "x must be 2-D (N, D) or 4-D"),
]


def _forward_call(fname, M, **over):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 3, 3))
    pshape = (6, 3, 3) if fname.startswith("layer") else (6,)
    args = {"x": x, "gamma": np.ones(pshape), "beta": np.zeros(pshape), "eps": 1e-5}
    if fname.startswith("group"):
        args["groups"] = 3
    if fname == "batchnorm_forward_infer":
        args.update(running_mean=np.zeros(6), running_var=np.ones(6))
    args.update(over)
    return getattr(M, fname)(**args)


@pytest.mark.parametrize("M", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize(("fname", "over", "exc", "msg"), BAD_FORWARD,
                         ids=[f"{n}-{list(o)[0]}-{i}" for i, (n, o, _, _) in enumerate(BAD_FORWARD)])
def test_forward_bad_input(M, fname, over, exc, msg):
    with pytest.raises(exc, match=f"^{fname}: " + re.escape(msg)):
        _forward_call(fname, M, **over)


@pytest.mark.parametrize("running_dtype", [np.float32, np.float64])
def test_running_statistics_update_is_numpys_expression_to_the_bit(running_dtype):
    """The compiled running-statistics update rounds as ``momentum * running + (1 - momentum) * stat`` does in
    NumPy (each product in its array's dtype, no fused multiply-add), also at inf and NaN, momentum 0 and 1."""
    from fastnn.kernels.normalization import _update_running

    rng = np.random.default_rng(1)
    for momentum in (0.9, 0.37, 0.0, 1.0):
        mean, stat = rng.standard_normal(9).astype(np.float32), rng.random(9) * 3
        mean[0], stat[1] = np.inf, np.nan
        rm, rv = rng.standard_normal(9).astype(running_dtype), rng.random(9).astype(np.float32)
        with np.errstate(invalid="ignore"):
            em, ev = momentum * rm + (1 - momentum) * mean, momentum * rv + (1 - momentum) * stat.astype(np.float32)
        _update_running(rm, rv, mean, stat, momentum)
        np.testing.assert_array_equal(rm, em.astype(running_dtype))
        np.testing.assert_array_equal(rv, ev)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_batchnorm_is_the_general_path_to_the_bit(dtype, monkeypatch):
    """A small 2-D batch norm runs as one compiled call each way (``_small_forward_train``, ``_small_backward``):
    the same bits as the passes called one by one from Python, running statistics (float64 too) included, with a
    NaN, an infinity, one sample and an odd width; a non-contiguous dout."""
    monkeypatch.delenv("FASTNN_PARALLEL_MIN_WORK", raising=False)  # the default thresholds: these run serially
    rng = np.random.default_rng(2)
    small_path = K._small
    for n, d, special in ((7, 13, None), (1, 5, None), (33, 9, np.nan), (6, 4, np.inf)):
        x = (rng.standard_normal((n, d)) * 3 + 1).astype(dtype)
        if special is not None:
            x[0, 1] = special
        gamma, beta = rng.standard_normal(d).astype(dtype), rng.standard_normal(d).astype(dtype)
        dout = rng.standard_normal((d, n)).astype(dtype).T
        start = rng.standard_normal(d).astype(dtype), rng.random(d)  # a float64 running variance
        assert small_path(x)
        results = []
        for small in (small_path, lambda x: False):
            monkeypatch.setattr(K, "_small", small)
            running = start[0].copy(), start[1].copy()
            out, mean, inv_std = K.batchnorm_forward_train(x, gamma, beta, *running, momentum=0.8, eps=1e-6)
            results.append((out, mean, inv_std, *running, *K.batchnorm_backward(dout, x, gamma, mean, inv_std)))
        for a, b in zip(*results, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)

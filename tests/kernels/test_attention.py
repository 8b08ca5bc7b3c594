"""Fused attention, GELU, last-axis softmax and positional encoding: kernel vs twin at awkward shapes and code paths
(the registry tests cover the tiny size of every keyword form), special values, and PyTorch where it has the op."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R

from ..conftest import TOL, with_one_and_two_threads

# (N, H, S, T, d, dv): one of everything, S = 1, S != T both ways, several query and key blocks with ragged ends
SHAPES = [(1, 1, 1, 1, 1, 1), (2, 3, 1, 9, 5, 3), (1, 2, 70, 130, 17, 9), (2, 1, 131, 66, 33, 16)]


def _qkv(shape, dtype, seed=0, noncontiguous=False):
    N, H, S, T, d, dv = shape
    rng = np.random.default_rng(seed)

    def heads(L, D):
        if noncontiguous:  # the (N, L, H, D) layout of a projection, viewed as (N, H, L, D) as layers do
            return rng.standard_normal((N, L, H, D)).astype(dtype).transpose(0, 2, 1, 3)
        return rng.standard_normal((N, H, L, D)).astype(dtype)

    return heads(S, d), heads(T, d), heads(T, dv), heads(S, dv), rng


def _mask(kind, shape, rng, dtype):
    N, H, S, T = shape[:4]
    if kind == "bool":
        return rng.random((N, 1, S, T)) < 0.6
    if kind == "additive":
        return rng.standard_normal((H, S, T)).astype(dtype)
    return None


def _close(a, b, dtype):
    assert a.dtype == dtype
    np.testing.assert_allclose(a, b, **TOL[np.dtype(dtype)])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("mask", [None, "bool", "additive"])
def test_kernel_matches_twin(shape, causal, mask, dtype, twin):
    q, k, v, dout, rng = _qkv(shape, dtype, noncontiguous=shape[2] > 1)
    kw = {"mask": _mask(mask, shape, rng, dtype), "causal": causal}
    out, lse = K.attention_forward(q, k, v, **kw)
    rout, rlse = R.attention_forward(q, k, v, **kw)
    _close(out, rout, dtype)
    _close(lse, rlse, dtype)
    grads = K.attention_backward(dout, q, k, v, out, lse, **kw)
    for got, want in zip(grads, R.attention_backward(dout, q, k, v, rout, rlse, **kw), strict=True):
        _close(got, want, dtype)
    if shape[2] > 1 and shape[3] > 1:  # outputs in their inputs' memory order: (N, S, H, d) as the layer's heads
        assert all(a.transpose(0, 2, 1, 3).flags.c_contiguous for a in (out, *grads))


def test_forward_bits_do_not_depend_on_the_thread_count(dtype, monkeypatch):
    """Each row's weights are summed in explicit vectors, in one order in the serial and the parallel twin (with
    LLVM's vectorised sum the two rounded it differently: 1.4e-7 of the largest output apart in float32)."""
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "0")
    q, k, v, _, _ = _qkv((2, 3, 70, 131, 17, 9), dtype, seed=3)  # a full key block and a 3-column tail per row
    one, two = with_one_and_two_threads(lambda: K.attention_forward(q, k, v, causal=True))
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", [K, R], ids=["kernel", "twin"])
@pytest.mark.parametrize("layout", ["fused projection", "strided"])
def test_backward_writes_into_given_arrays(impl, layout, dtype, twin):
    """``into``: the gradients land in the caller's arrays (the thirds of one (N, S, 3, H, d) buffer, as a layer's
    fused projection; or views BLAS cannot address in place, written through a copy), which are returned."""
    N, H, S, d = 2, 3, 70, 5
    q, k, v, dout, _ = _qkv((N, H, S, S, d, d), dtype, noncontiguous=True)
    out, lse = impl.attention_forward(q, k, v, causal=True)
    want = impl.attention_backward(dout, q, k, v, out, lse, causal=True)
    if layout == "fused projection":
        buf = np.full((N, S, 3, H, d), np.nan, dtype)
        into = tuple(buf[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    else:
        buf = np.full((N, H, S, 2 * d), np.nan, dtype)
        into = (buf[..., ::2], buf[..., 1::2], np.full((N, H, S, d), np.nan, dtype))
    got = impl.attention_backward(dout, q, k, v, out, lse, causal=True, into=into)
    assert all(g is t for g, t in zip(got, into, strict=True))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert not np.isnan(buf).any()


def test_backward_into_is_checked_before_anything_is_written():
    q, k, v, dout, _ = _qkv((1, 2, 4, 6, 3, 3), np.float32)
    out, lse = K.attention_forward(q, k, v)
    fresh = [np.full(a.shape, 7, np.float32) for a in (q, k, v)]
    bad = [
        (fresh[:2], r"into must be None or a tuple of three arrays"),
        ((fresh[0], fresh[1], fresh[1][:, :, :5]), r"into\[2\] must be of shape"),
        ((fresh[0].astype(np.float64), fresh[1], fresh[2]), r"into\[0\] must be a writable float32 ndarray"),
        ((fresh[0], np.broadcast_to(fresh[1][:1], fresh[1].shape), fresh[2]), r"into\[1\] must be a writable"),
        ((fresh[0], k, fresh[2]), r"into\[1\] must be memory of its own \(it overlaps an input\)"),
        ((fresh[0], fresh[1], fresh[1]), r"into must be three arrays that do not overlap each other"),
    ]
    for impl in (K, R):
        for into, match in bad:
            with pytest.raises((ValueError, TypeError), match=f"^attention_backward: {match}"):
                impl.attention_backward(dout, q, k, v, out, lse, into=into)
            assert all((a == 7).all() for a in fresh)


def test_dropout_masks_the_weights_reproducibly(twin):
    """With v the identity the output is the dropped weights: zeros where the counter-based mask drops, the
    softmax weights / (1 - p) elsewhere; the same call gives the same bits."""
    N, H, S, T = 2, 2, 40, 50
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((N, H, S, 8)), rng.standard_normal((N, H, T, 8))
    v = np.broadcast_to(np.eye(T), (N, H, T, T))
    p = 0.3
    out, lse = K.attention_forward(q, k, v, dropout_p=p, seed=5)
    plain, _ = K.attention_forward(q, k, v)
    keep = R.dropout_mask((N, H, S, T), p, 5)
    np.testing.assert_allclose(out, np.where(keep, plain / (1 - p), 0), rtol=1e-12, atol=1e-15)
    assert abs((out == 0).mean() - p) < 0.03
    np.testing.assert_array_equal(K.attention_forward(q, k, v, dropout_p=p, seed=5)[0], out)
    assert not np.array_equal(K.attention_forward(q, k, v, dropout_p=p, seed=6)[0], out)


@pytest.mark.parametrize("impl", [K, R], ids=["kernel", "twin"])
def test_fully_masked_row_gives_zeros(impl, dtype):
    q, k, v, dout, _ = _qkv((2, 2, 4, 6, 3, 5), dtype)
    mask = np.ones((4, 6), bool)
    mask[2] = False
    out, lse = impl.attention_forward(q, k, v, mask=mask)
    assert np.all(out[:, :, 2] == 0) and np.all(np.isneginf(lse[:, :, 2]))
    assert np.all(np.isfinite(out)) and np.isfinite(lse[:, :, [0, 1, 3]]).all()
    dq, dk, dv = impl.attention_backward(dout, q, k, v, out, lse, mask=mask)
    assert np.all(dq[:, :, 2] == 0)
    assert all(np.isfinite(g).all() for g in (dq, dk, dv))
    # no key at all (T = 0): every row is fully masked
    out, lse = impl.attention_forward(q, k[:, :, :0], v[:, :, :0])
    assert out.shape == (2, 2, 4, 5) and np.all(out == 0) and np.all(np.isneginf(lse))


@pytest.mark.parametrize("impl", [K, R], ids=["kernel", "twin"])
@pytest.mark.parametrize("special", [np.nan, np.inf])
def test_nan_and_inf_propagate(impl, special):
    q, k, v, _, _ = _qkv((1, 2, 70, 70, 4, 3), np.float64)
    q = q.copy()
    q[0, 0, 5, 1] = special  # +-inf scores in a row: inf - inf, NaN (as PyTorch)
    out, _ = impl.attention_forward(q, k, v)
    assert np.isnan(out[0, 0, 5]).all()
    assert np.isfinite(np.delete(out[0, 0], 5, axis=0)).all() and np.isfinite(out[0, 1]).all()
    k = k.copy()
    k[0, 1, 66, 0] = np.nan  # a key seen by the rows s >= 66 under the causal mask
    out, _ = impl.attention_forward(q, k, v, causal=True)
    assert np.isnan(out[0, 1, 66:]).all() and np.isfinite(out[0, 1, :66]).all()


def test_matches_torch_with_masks_causal_and_scale(dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shape = (2, 3, 70, 70, 17, 9)
    q, k, v, dout, rng = _qkv(shape, dtype, noncontiguous=True)
    tol = {"rtol": 2e-4, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-11}
    for kw in ({"mask": _mask("bool", shape, rng, dtype)}, {"mask": _mask("additive", shape, rng, dtype)},
               {"causal": True, "scale": 0.3}):
        out, lse = K.attention_forward(q, k, v, **kw)
        grads = K.attention_backward(dout, q, k, v, out, lse, **kw)
        tq, tk, tv = (torch.from_numpy(np.ascontiguousarray(a)).requires_grad_() for a in (q, k, v))
        tkw = {"attn_mask": None if kw.get("mask") is None else torch.from_numpy(kw["mask"]),
               "is_causal": kw.get("causal", False), "scale": kw.get("scale")}
        tout = F.scaled_dot_product_attention(tq, tk, tv, **tkw)
        tout.backward(torch.from_numpy(dout))
        np.testing.assert_allclose(out, tout.detach().numpy(), **tol)
        for g, t in zip(grads, (tq, tk, tv), strict=True):
            np.testing.assert_allclose(g, t.grad.numpy(), **tol)


@pytest.mark.parametrize(("kw", "arg"), [
    ({"k": np.zeros((2, 3, 7, 4))}, "k"),                       # heads differ
    ({"v": np.zeros((2, 2, 6, 3))}, "v"),                       # key/value length mismatch
    ({"mask": np.ones((5, 8), bool)}, "mask"),                  # not broadcastable
    ({"mask": "causal"}, "mask"),
    ({"dropout_p": 1.0}, "dropout_p"),
    ({"dropout_p": -0.1}, "dropout_p"),
    ({"causal": 1}, "causal"),
    ({"seed": -1}, "seed"),
    ({"q": np.zeros((2, 2, 5, 0))}, "d"),
])
def test_bad_arguments_are_named(kw, arg):
    call = {"q": np.zeros((2, 2, 5, 4)), "k": np.zeros((2, 2, 7, 4)), "v": np.zeros((2, 2, 7, 3)), **kw}
    for impl in (K, R):
        with pytest.raises((ValueError, TypeError), match=rf"^attention_forward: {arg}"):
            impl.attention_forward(**call)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_at_extremes(approximate, dtype):
    torch = pytest.importorskip("torch")
    x = np.array([-40, -6, -1, -1e-3, 0, 1e-3, 0.5, 3, 9, 40], dtype)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    tout = torch.nn.functional.gelu(tx, approximate=approximate)
    dout = np.linspace(-1, 1, x.size).astype(dtype)
    tout.backward(torch.from_numpy(dout))
    tol = {"rtol": 2e-6, "atol": 1e-7} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-15}
    for impl in (K, R):
        np.testing.assert_allclose(impl.gelu_forward(x, approximate), tout.detach().numpy(), **tol)
        np.testing.assert_allclose(impl.gelu_backward(dout, x, approximate), tx.grad.numpy(), **tol)
        # the limits: gelu(inf) = inf (PyTorch's vectorised float32 path gives NaN there), -inf -> NaN (-inf * 0)
        with np.errstate(invalid="ignore"):
            special = impl.gelu_forward(np.array([np.inf, -np.inf, np.nan], dtype), approximate)
        assert special[0] == np.inf and np.isnan(special[1:]).all()
    with pytest.raises(ValueError, match="^gelu_forward: approximate must be 'none' or 'tanh'"):
        K.gelu_forward(x, "erf")


@pytest.mark.parametrize("shape", [(7,), (3, 1), (2, 3, 1, 130)], ids=str)
def test_softmax_lastaxis_any_shape(shape, dtype, twin):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    out = K.softmax_lastaxis_forward(x)
    _close(out, R.softmax_lastaxis_forward(x), dtype)
    np.testing.assert_allclose(out.sum(-1), 1, rtol=1e-5)
    _close(K.softmax_lastaxis_backward(dout, out), R.softmax_lastaxis_backward(dout, out), dtype)


def test_positional_encoding_is_cs231n_table(dtype):
    """Sine on even features, cosine on odd ones, exponents 0, 0, 2, 2, ... (cs231n's PositionalEncoding)."""
    N, S, D = 2, 9, 6
    x = np.zeros((N, S, D), dtype)
    pos = np.arange(S)[:, None]
    want = np.empty((S, D))
    for i in range(0, D, 2):
        want[:, i] = np.sin(pos[:, 0] * math.exp(-i * math.log(10000.0) / D))
        want[:, i + 1] = np.cos(pos[:, 0] * math.exp(-i * math.log(10000.0) / D))
    for impl in (K, R):
        out = impl.positional_encoding(x)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, np.broadcast_to(want, (N, S, D)), **TOL[np.dtype(dtype)])
    odd = np.ones((1, 4, 5), dtype)  # an odd width ends on a sine
    _close(K.positional_encoding(odd), R.positional_encoding(odd), dtype)

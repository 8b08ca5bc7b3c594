"""conv2d_forward / conv2d_backward kernels against their NumPy reference twins, on both Numba twins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastnn import kernels as K
from fastnn import reference as R
from fastnn.kernels import conv as kconv
from tests.conftest import TOL, assert_close

# (N, C, H, W, FN, FH, FW, stride, pad): batch 1, one channel, non-square images and filters, strides 1/2/3,
# pads 0/1/2, per-axis pairs, overlapping windows and windows that do not tile, 1x1 (the no-im2col path and
# its strided/padded variants that take the general path), a window as large as the padded input, windows that
# see only padding.
CASES = [
    (2, 3, 7, 5, 4, 3, 2, 1, 0),
    (1, 1, 6, 6, 2, 3, 3, 1, 1),
    (3, 2, 9, 8, 5, 3, 3, 2, 1),
    (2, 3, 10, 7, 3, 4, 3, 3, 2),
    (2, 2, 8, 11, 3, 2, 5, (2, 1), (0, 2)),
    (2, 4, 5, 6, 3, 1, 1, 1, 0),
    (1, 3, 7, 6, 2, 1, 1, 2, 0),
    (2, 3, 5, 5, 4, 1, 1, 1, 1),
    (2, 1, 4, 3, 2, 4, 3, 1, 0),
    (1, 2, 2, 3, 3, 5, 4, 1, 2),
    (3, 2, 6, 9, 1, 2, 2, 3, 0),
    (5, 3, 6, 6, 4, 3, 3, 1, 1),
    (2, 2, 1, 1, 2, 1, 1, (1, 2), (0, 2)),
]
IDS = [f"N{n}C{c}-{h}x{w}-F{fn}:{fh}x{fw}-s{s}-p{p}" for n, c, h, w, fn, fh, fw, s, p in CASES]


def _rand(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _problem(case, dtype, seed=0):
    n, c, h, w, fn, fh, fw, stride, pad = case
    x = _rand((n, c, h, w), dtype, seed)
    W = _rand((fn, c, fh, fw), dtype, seed + 1)
    b = _rand((fn,), dtype, seed + 2)
    out_shape = R.conv2d_forward(x, W, b, stride, pad).shape
    dout = _rand(out_shape, dtype, seed + 3)
    return x, W, b, dout, stride, pad


def close(actual, expected, dtype):
    """assert_close with the absolute tolerance scaled by the size of ``expected``.

    Convolutions sum many terms of both signs; an output near zero can carry the rounding error of its large
    terms, so the absolute tolerance follows the array's magnitude (norm-wise comparison).
    """
    expected = np.asarray(expected)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    assert_close(actual, expected, dtype, atol=TOL[np.dtype(dtype)]["atol"] + TOL[np.dtype(dtype)]["rtol"] * scale)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reference(case, dtype, twin):
    x, W, b, _, stride, pad = _problem(case, dtype)
    before = [a.copy() for a in (x, W, b)]
    got = K.conv2d_forward(x, W, b, stride, pad)
    want = R.conv2d_forward(x, W, b, stride, pad)
    assert got.shape == want.shape and got.flags.c_contiguous
    close(got, want, dtype)
    for a, a0 in zip((x, W, b), before, strict=True):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_matches_reference(case, dtype, twin):
    x, W, _, dout, stride, pad = _problem(case, dtype)
    before = [a.copy() for a in (dout, x, W)]
    got = K.conv2d_backward(dout, x, W, stride, pad)
    want = R.conv2d_backward(dout, x, W, stride, pad)
    for name, g, w, like in zip(("dx", "dW", "db"), got, want, (x, W, W[:, 0, 0, 0]), strict=True):
        assert g.shape == like.shape, name
        assert g.flags.c_contiguous, name
        close(g, w, dtype)
    for a, a0 in zip((dout, x, W), before, strict=True):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("stride", [1, (1, 2)])
@pytest.mark.parametrize("chunk", [1, 300, 10_000])
def test_batch_chunks(chunk, stride, monkeypatch, twin):
    """Chunk boundaries (one sample, a few samples, a remainder chunk) give the unchunked result."""
    case = (7, 3, 6, 5, 4, 3, 3, stride, 1)
    x, W, b, dout, stride, pad = _problem(case, np.float64)
    want_out = R.conv2d_forward(x, W, b, stride, pad)
    want_grads = R.conv2d_backward(dout, x, W, stride, pad)
    monkeypatch.setattr(kconv, "_CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(kconv, "_PIPELINE_BYTES", 0)
    close(K.conv2d_forward(x, W, b, stride, pad), want_out, np.float64)
    for g, w in zip(K.conv2d_backward(dout, x, W, stride, pad), want_grads, strict=True):
        close(g, w, np.float64)


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[5], CASES[11]], ids=[IDS[0], IDS[3], IDS[5], IDS[11]])
def test_cache_gives_uncached_results(case, dtype, twin):
    """The forward's columns reused by backward; a second backward, another x, other shapes: all still right."""
    x, W, b, dout, stride, pad = _problem(case, dtype)
    want_out = R.conv2d_forward(x, W, b, stride, pad)
    want = R.conv2d_backward(dout, x, W, stride, pad)
    cache = {}
    for _ in range(2):  # the second round reuses the cache's buffers
        close(K.conv2d_forward(x, W, b, stride, pad, cache=cache), want_out, dtype)
        for _ in range(2):  # the second backward finds the columns consumed and unfolds x again
            for g, w in zip(K.conv2d_backward(dout, x, W, stride, pad, cache=cache), want, strict=True):
                close(g, w, dtype)
    # A different x object after a forward with this cache: its own columns are used, not the cached ones.
    K.conv2d_forward(x, W, b, stride, pad, cache=cache)
    x2, _, _, dout2, _, _ = _problem(case, dtype, seed=10)
    for g, w in zip(K.conv2d_backward(dout2, x2, W, stride, pad, cache=cache),
                    R.conv2d_backward(dout2, x2, W, stride, pad), strict=True):
        close(g, w, dtype)
    # A smaller batch, then the other dtype, through the same cache.
    for xs, ds in ((x[:1], dout[:1]), (x.astype(np.float64), dout.astype(np.float64))):
        Ws, bs = W.astype(xs.dtype), b.astype(xs.dtype)
        close(K.conv2d_forward(xs, Ws, bs, stride, pad, cache=cache), R.conv2d_forward(xs, Ws, bs, stride, pad),
              xs.dtype)
        for g, w in zip(K.conv2d_backward(ds, xs, Ws, stride, pad, cache=cache),
                        R.conv2d_backward(ds, xs, Ws, stride, pad), strict=True):
            close(g, w, xs.dtype)


def test_cache_holds_the_columns(monkeypatch):
    monkeypatch.setattr(kconv, "_PIPELINE_BYTES", 0)  # the batch-wide path (small convolutions take the pipeline)
    x, W, b, dout, stride, pad = _problem(CASES[2], np.float64)
    cache = {}
    K.conv2d_forward(x, W, b, stride, pad, cache=cache)
    cache["conv2d.col"][:] = 0  # the backward pass must read these, not unfold x again
    _, dW, db = K.conv2d_backward(dout, x, W, stride, pad, cache=cache)
    np.testing.assert_array_equal(dW, 0)
    close(db, R.conv2d_backward(dout, x, W, stride, pad)[2], np.float64)


def test_conv_by_hand():
    """A direct evaluation of the formula on a tiny case (independent of im2col)."""
    rng = np.random.default_rng(3)
    x, W, b = rng.standard_normal((2, 2, 4, 5)), rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(3)
    (sh, sw), (ph, pw) = (2, 1), (1, 2)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (4 + 2 * ph - 2) // sh + 1, (5 + 2 * pw - 3) // sw + 1
    want = np.empty((2, 3, oh, ow))
    for n in range(2):
        for f in range(3):
            for i in range(oh):
                for j in range(ow):
                    want[n, f, i, j] = b[f] + np.sum(W[f] * xp[n, :, i * sh:i * sh + 2, j * sw:j * sw + 3])
    np.testing.assert_allclose(K.conv2d_forward(x, W, b, (sh, sw), (ph, pw)), want, rtol=1e-12, atol=1e-12)


def _noncontiguous(a, how):
    if how == "transposed":
        return np.ascontiguousarray(a.transpose(3, 2, 1, 0) if a.ndim == 4 else a).transpose(
            *((3, 2, 1, 0) if a.ndim == 4 else (0,)))
    if how == "sliced":
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        big[(slice(None, None, 2),) * a.ndim] = a
        return big[(slice(None, None, 2),) * a.ndim]
    flipped = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
    return flipped[(slice(None, None, -1),) * a.ndim]


@pytest.mark.parametrize("how", ["transposed", "sliced", "negative"])
@pytest.mark.parametrize("case", [CASES[2], CASES[5]], ids=[IDS[2], IDS[5]])
def test_noncontiguous_inputs(case, how, dtype, twin):
    x, W, b, dout, stride, pad = _problem(case, dtype)
    views = [_noncontiguous(a, how) for a in (x, W, b, dout)]
    for v, a in zip(views, (x, W, b, dout), strict=True):
        np.testing.assert_array_equal(v, a)
        assert v.ndim == 1 or not v.flags.c_contiguous
    xv, Wv, bv, dv = views
    close(K.conv2d_forward(xv, Wv, bv, stride, pad), R.conv2d_forward(x, W, b, stride, pad), dtype)
    for g, w in zip(K.conv2d_backward(dv, xv, Wv, stride, pad), R.conv2d_backward(dout, x, W, stride, pad),
                    strict=True):
        close(g, w, dtype)


def test_dtypes_and_promotion():
    x, W, b, dout, stride, pad = _problem(CASES[0], np.float32)
    assert K.conv2d_forward(x, W, b, stride, pad).dtype == np.float32
    assert all(g.dtype == np.float32 for g in K.conv2d_backward(dout, x, W, stride, pad))
    # float32 with float64 computes in float64, as NumPy does; ints promote to float64.
    assert K.conv2d_forward(x, W.astype(np.float64), b, stride, pad).dtype == np.float64
    assert all(g.dtype == np.float64 for g in K.conv2d_backward(dout.astype(np.float64), x, W, stride, pad))
    xi = np.arange(2 * 3 * 7 * 5).reshape(2, 3, 7, 5) % 5
    out = K.conv2d_forward(xi, W.astype(np.float64), b.astype(np.float64), stride, pad)
    close(out, R.conv2d_forward(xi, W.astype(np.float64), b.astype(np.float64), stride, pad), np.float64)


def test_empty_batch_and_filters(twin):
    x = np.zeros((0, 3, 6, 6), np.float32)
    W = np.ones((4, 3, 3, 3), np.float32)
    b = np.ones(4, np.float32)
    out = K.conv2d_forward(x, W, b, 1, 1)
    assert out.shape == (0, 4, 6, 6) and out.dtype == np.float32
    dx, dW, db = K.conv2d_backward(out, x, W, 1, 1)
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == (4,)
    np.testing.assert_array_equal(dW, 0)
    np.testing.assert_array_equal(db, 0)
    # No filters: an empty output, and zero gradients for x.
    x1 = np.ones((2, 3, 6, 6), np.float32)
    out0 = K.conv2d_forward(x1, W[:0], b[:0], 1, 1)
    assert out0.shape == (2, 0, 6, 6)
    dx0, dW0, db0 = K.conv2d_backward(out0, x1, W[:0], 1, 1)
    np.testing.assert_array_equal(dx0, np.zeros_like(x1))
    assert dW0.shape == (0, 3, 3, 3) and db0.shape == (0,)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_geometry_matches_reference(data, twin):
    n, c, fn = (data.draw(st.integers(1, 3), label=k) for k in ("N", "C", "FN"))
    h, w = data.draw(st.integers(1, 8), label="H"), data.draw(st.integers(1, 8), label="W")
    ph, pw = data.draw(st.integers(0, 2), label="PH"), data.draw(st.integers(0, 2), label="PW")
    fh = data.draw(st.integers(1, min(5, h + 2 * ph)), label="FH")
    fw = data.draw(st.integers(1, min(5, w + 2 * pw)), label="FW")
    sh, sw = data.draw(st.integers(1, 3), label="SH"), data.draw(st.integers(1, 3), label="SW")
    dt = np.dtype(data.draw(st.sampled_from([np.float32, np.float64]), label="dtype"))
    case = (n, c, h, w, fn, fh, fw, (sh, sw), (ph, pw))
    x, W, b, dout, stride, pad = _problem(case, dt, seed=data.draw(st.integers(0, 2**16), label="seed"))
    close(K.conv2d_forward(x, W, b, stride, pad), R.conv2d_forward(x, W, b, stride, pad), dt)
    for g, ww in zip(K.conv2d_backward(dout, x, W, stride, pad), R.conv2d_backward(dout, x, W, stride, pad),
                     strict=True):
        close(g, ww, dt)


_x = np.zeros((2, 3, 5, 5))
_W = np.zeros((4, 3, 3, 3))
_b = np.zeros(4)
_d = np.zeros((2, 4, 3, 3))
BAD = [
    (lambda m: m.conv2d_forward(_x[0], _W, _b), ValueError, "conv2d_forward: x must be 4-D"),
    (lambda m: m.conv2d_forward(_x, _W[0], _b), ValueError, "conv2d_forward: W must be 4-D"),
    (lambda m: m.conv2d_forward(_x, _W[:, :2], _b), ValueError, "conv2d_forward: W must be of shape (FN, 3, FH, FW)"),
    (lambda m: m.conv2d_forward(_x, _W, _b[:3]), ValueError, "conv2d_forward: b must be of shape (4,)"),
    (lambda m: m.conv2d_forward(_x, _W, _b[None]), ValueError, "conv2d_forward: b must be of shape (4,)"),
    (lambda m: m.conv2d_forward(_x[:, :, :2], _W, _b), ValueError, "conv2d_forward: vertical window must be <="),
    (lambda m: m.conv2d_forward(_x, _W, _b, 0), ValueError, "conv2d_forward: stride must be >= 1, got 0"),
    (lambda m: m.conv2d_forward(_x, _W, _b, 1, -1), ValueError, "conv2d_forward: pad must be >= 0, got -1"),
    (lambda m: m.conv2d_forward(_x, _W, _b, (1, 0)), ValueError, "conv2d_forward: stride must be >= 1, got 0"),
    (lambda m: m.conv2d_forward(_x, _W, _b, 1.5), TypeError, "conv2d_forward: stride must be an int"),
    (lambda m: m.conv2d_forward(_x.astype(complex), _W, _b), TypeError, "conv2d_forward: x must be a real numeric"),
    (lambda m: m.conv2d_forward(_x, _W.astype(complex), _b), TypeError, "conv2d_forward: W must be a real numeric"),
    (lambda m: m.conv2d_forward(_x, _W, None), TypeError, "conv2d_forward: b must be a NumPy array"),
    (lambda m: m.conv2d_backward(_d[:, :3], _x, _W), ValueError, "conv2d_backward: dout must be of shape (2, 4, 3, 3)"),
    (lambda m: m.conv2d_backward(_d, _x, _W, 1, 1), ValueError, "conv2d_backward: dout must be of shape (2, 4, 5, 5)"),
    (lambda m: m.conv2d_backward(_d[0], _x, _W), ValueError, "conv2d_backward: dout must be of shape"),
    (lambda m: m.conv2d_backward(_d, _x, _W[:, :1]), ValueError, "conv2d_backward: W must be of shape (FN, 3, FH, FW)"),
    (lambda m: m.conv2d_backward(_d.astype(complex), _x, _W), TypeError, "conv2d_backward: dout must be a real"),
    (lambda m: m.conv2d_backward(_d, _x, _W, 1, (0, -2)), ValueError, "conv2d_backward: pad must be >= 0, got -2"),
    (lambda m: m.conv2d_backward(_d, _x[..., :2], _W), ValueError, "conv2d_backward: horizontal window must be"),
    (lambda m: m.conv2d_forward(_x, _W, _b, cache=[]), TypeError, "conv2d_forward: cache must be a dict or None"),
    (lambda m: m.conv2d_backward(_d, _x, _W, cache=1), TypeError, "conv2d_backward: cache must be a dict or None"),
]


@pytest.mark.parametrize("impl", ["kernels", "reference"])
@pytest.mark.parametrize(("call", "exc", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_input(call, exc, message, impl):
    with pytest.raises(exc) as info:
        call(K if impl == "kernels" else R)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("use_cache", [False, True])
def test_backward_without_dx_gives_the_same_dw_db(impl, use_cache, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 7, 6)).astype(dtype)
    W = rng.standard_normal((4, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    ws = {} if use_cache else None
    out = impl.conv2d_forward(x, W, b, 2, 1, cache=ws)
    dout = rng.standard_normal(out.shape).astype(dtype)
    _, dW_full, db_full = R.conv2d_backward(dout, x, W, 2, 1)
    dx, dW, db = impl.conv2d_backward(dout, x, W, 2, 1, cache=ws, need_dx=False)
    assert dx is None
    assert_close(dW, dW_full)
    assert_close(db, db_full)


@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
def test_need_dx_must_be_a_bool(impl):
    x = np.zeros((1, 1, 3, 3))
    with pytest.raises(TypeError, match=r"^conv2d_backward: need_dx must be True or False, got str 'no'"):
        impl.conv2d_backward(np.zeros((1, 1, 3, 3)), x, np.zeros((1, 1, 1, 1)), need_dx="no")


@pytest.mark.parametrize("slot_bytes", [1, 2_000, 1 << 21])
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[11]], ids=[IDS[0], IDS[3], IDS[11]])
@pytest.mark.parametrize("dw_rows", [1, 1 << 30], ids=["dW-transposed", "dW"])
def test_pipeline_chunks_and_batch_wide_path_agree(case, slot_bytes, dw_rows, monkeypatch, twin):
    """The per-thread pipeline (one image per chunk, a few, the whole batch; the filter gradient in either
    orientation) against the twin and against the batch-wide GEMM path."""
    x, W, b, dout, stride, pad = _problem(case, np.float64)
    monkeypatch.setattr(kconv, "_PIPE_SLOT_BYTES", slot_bytes)
    monkeypatch.setattr(kconv, "_TRANSPOSED_DW_ROWS", dw_rows)
    got = (K.conv2d_forward(x, W, b, stride, pad), *K.conv2d_backward(dout, x, W, stride, pad))
    monkeypatch.setattr(kconv, "_PIPELINE_BYTES", 0)
    old = (K.conv2d_forward(x, W, b, stride, pad), *K.conv2d_backward(dout, x, W, stride, pad))
    want = (R.conv2d_forward(x, W, b, stride, pad), *R.conv2d_backward(dout, x, W, stride, pad))
    for g, o, w in zip(got, old, want, strict=True):
        close(g, w, np.float64)
        close(g, o, np.float64)

"""The Winograd path of conv2d_forward / conv2d_backward (3x3, stride 1) against the reference twin: F(2x2, 3x3) and
the backward's F(4x4, 3x3) (``alg`` forces either)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastnn import _jit, config
from fastnn import kernels as K
from fastnn import reference as R
from fastnn.kernels import _blas, winograd, winograd43, winograd43_grad
from fastnn.kernels import conv as kconv

from .test_conv import close

pytestmark = pytest.mark.skipif(not _blas.AVAILABLE, reason="numpy's bundled OpenBLAS is not available")

# (N, C, H, W, FN, pad): the smallest image, one channel and one filter, odd and non-square sizes (a half-empty
# last tile in either direction), pads 0-3 and per-axis pairs (odd pads shift the even/odd column split), an
# image smaller than the filter that only padding makes valid, a batch that is not a multiple of the chunk; for
# F(4x4, 3x3), outputs 4k + 1 (13x11, 5x5, 9x9) and 4k + 3 (7x7, 11x11), 13x5 (a whole tile and a one-column one).
CASES = [
    (1, 1, 3, 3, 1, 0),
    (1, 1, 4, 4, 1, 1),
    (2, 3, 7, 9, 4, 1),
    (3, 2, 8, 6, 5, 2),
    (1, 2, 6, 5, 2, 3),
    (2, 2, 5, 8, 3, (1, 0)),
    (2, 3, 6, 7, 2, (0, 3)),
    (2, 1, 1, 1, 2, 1),
    (1, 4, 2, 5, 3, (1, 2)),
    (5, 5, 13, 11, 7, 1),
    (1, 2, 15, 7, 3, 0),
    (2, 2, 11, 9, 3, 2),
]
IDS = [f"N{n}C{c}-{h}x{w}-F{f}-p{p}" for n, c, h, w, f, p in CASES]


def _problem(case, dtype, seed=0):
    n, c, h, w, f, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((f, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    dout = rng.standard_normal(R.conv2d_forward(x, W, b, 1, pad).shape).astype(dtype)
    return x, W, b, dout, pad


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls that reach the Winograd kernels, so a test knows which path ran (``forward`` either form's,
    ``calls.f43`` F(4x4, 3x3)'s forward; ``backward`` either form's); one-channel convolutions, which the pipeline
    takes first, stay on the Winograd path here, and F(4x4, 3x3)'s forward takes float64 and every size too."""
    monkeypatch.setattr(kconv, "_PIPELINE_BYTES", 0)
    monkeypatch.setattr(winograd43, "_DTYPES", (np.dtype(np.float32), np.dtype(np.float64)))
    monkeypatch.setattr(winograd43, "_WORK_RATIO", 10.0)
    calls = _Calls(forward=0, backward=0)
    calls.f43 = 0
    for module, name, key in ((winograd, "forward", "forward"), (winograd43, "forward", "forward"),
                              (winograd, "backward", "backward"), (winograd43_grad, "backward43", "backward")):
        real = getattr(module, name)

        def counted(*args, _real=real, _key=key, _f43=module is winograd43, **kw):
            calls[_key] += 1
            calls.f43 += _f43
            return _real(*args, **kw)

        monkeypatch.setattr(module, name, counted)
    return calls


class _Calls(dict):
    f43: int


@pytest.fixture(params=["F23", "F43"])
def alg(request, monkeypatch):
    """The backward pass by F(2x2, 3x3) or by F(4x4, 3x3) (:mod:`fastnn.kernels.winograd43_grad`) for every shape
    and dtype; checks afterwards that it ran."""
    f43 = request.param == "F43"
    monkeypatch.setattr(winograd43_grad, "takes_f43", lambda g, K, dtype: f43)
    calls = {"f43": 0}
    real = winograd43_grad.backward43

    def counted(*args, **kw):
        calls["f43"] += 1
        return real(*args, **kw)

    monkeypatch.setattr(winograd43_grad, "backward43", counted)
    yield request.param
    assert (calls["f43"] > 0) == f43


@pytest.mark.parametrize("f43", [False, True], ids=["f23", "f43"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_backward_matches_reference(case, f43, alg, dtype, twin, spy, monkeypatch):
    monkeypatch.setattr(config, "CONV_WINOGRAD43", f43)
    x, W, b, dout, pad = _problem(case, dtype)
    before = [a.copy() for a in (x, W, b, dout)]
    out = K.conv2d_forward(x, W, b, 1, pad)
    dx, dW, db = K.conv2d_backward(dout, x, W, 1, pad)
    assert spy == {"forward": 1, "backward": 1} and spy.f43 == f43
    close(out, R.conv2d_forward(x, W, b, 1, pad), dtype)
    for got, want in zip((dx, dW, db), R.conv2d_backward(dout, x, W, 1, pad), strict=True):
        assert got.flags.c_contiguous and got.shape == want.shape
        close(got, want, dtype)
    for a, a0 in zip((x, W, b, dout), before, strict=True):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("case", [CASES[2], CASES[9], CASES[11]], ids=[IDS[2], IDS[9], IDS[11]])
def test_f43_fused_relu_and_pool_match_reference(case, dtype, twin, spy):
    """F(4x4, 3x3)'s epilogues: ReLU, and ReLU + 2x2 max-pool (values and argmax; odd output sizes drop their last
    row and column) against the twins. Pads up to 2: with 3, outputs that see only padding are exactly the bias in
    the direct sum but not here (rounding from the rest of their tile), so a window of them may pick another
    argmax (equal values, module docstring)."""
    x, W, b, _, pad = _problem(case, dtype)
    close(K.conv2d_relu_forward(x, W, b, 1, pad), R.conv2d_relu_forward(x, W, b, 1, pad), dtype)
    out, argmax = K.conv2d_relu_maxpool_forward(x, W, b, 1, pad)
    want, want_argmax = R.conv2d_relu_maxpool_forward(x, W, b, 1, pad)
    close(out, want, dtype)
    np.testing.assert_array_equal(argmax, want_argmax)
    assert spy.f43 == 2


@pytest.mark.parametrize("f43", [False, True], ids=["f23", "f43"])
def test_float32_error_is_at_the_level_of_the_direct_sum(f43, alg, spy, monkeypatch):
    """Against a float64 reference on a CIFAR-like layer: F(2x2, 3x3)'s float32 error is no worse than im2col's.
    F(4x4, 3x3)'s forward (coefficients up to 8 and 1/24) is worse: measured 5.7x im2col's here, 3e-6 - 9e-6 of the
    output's magnitude on DeepConvNet's layers; the bound is 1e-5 of it (the convolution tests' float32 rtol is
    2e-5). So is its backward (``alg``): dx and dW 1.8e-6 - 4.5e-6 of their magnitude on this layer and
    DeepConvNet's (im2col's 1.6e-7 - 4e-7), the same bound."""
    monkeypatch.setattr(config, "CONV_WINOGRAD43", f43)
    x, W, b, dout, pad = _problem((8, 32, 16, 16, 32, 1), np.float32)
    want = R.conv2d_forward(*(a.astype(np.float64) for a in (x, W, b)), 1, pad)
    want_grads = R.conv2d_backward(*(a.astype(np.float64) for a in (dout, x, W)), 1, pad)
    got = [K.conv2d_forward(x, W, b, 1, pad), *K.conv2d_backward(dout, x, W, 1, pad)]
    assert spy == {"forward": 1, "backward": 1}
    monkeypatch.setattr(config, "CONV_WINOGRAD", False)
    direct = [K.conv2d_forward(x, W, b, 1, pad), *K.conv2d_backward(dout, x, W, 1, pad)]
    for i, (g, d, w) in enumerate(zip(got, direct, [want, *want_grads], strict=True)):
        scale = np.abs(w).max()
        err, err_direct = np.abs(g - w).max(), np.abs(d - w).max()
        if (f43 and i == 0) or (alg == "F43" and i in (1, 2)):
            assert err_direct < err <= 1e-5 * scale
        else:
            assert err <= max(2 * err_direct, 1e-6 * scale)


def test_f43_is_chosen_by_shape_and_dtype(monkeypatch):
    """F(4x4, 3x3) takes DeepConvNet's float32 layers (and any plane its tiles cover with little waste), not 5x5 or
    6x6 outputs (measured slower with many channels), float64, or anything when switched off."""
    from fastnn import _validate

    def chosen(hw, pad=1, dtype=np.float32):
        return winograd43.chosen(_validate.geometry((2, 16, hw, hw), 3, 3, 1, pad), 16, dtype)

    assert [chosen(28), chosen(14), chosen(14, 2), chosen(8), chosen(4), chosen(7), chosen(30)] == [True] * 7
    assert [chosen(5), chosen(6), chosen(8, 0), chosen(28, dtype=np.float64)] == [False] * 4
    monkeypatch.setattr(config, "CONV_WINOGRAD43", False)
    assert not chosen(28)


def test_chunking_is_even_and_balanced():
    """N images in an even number of chunks (N of one image when N is odd and smaller) whose sizes differ by at
    most one, none larger than asked, covering 0 .. N - 1 in order."""
    for N in range(1, 30):
        for m in range(1, N + 2):
            chunks, largest = winograd.chunking(N, m)
            spans = [winograd.chunk_span.py_func(ch, chunks, N) for ch in range(chunks)]
            assert chunks % 2 == 0 or chunks == N
            assert [n0 for n0, _ in spans] == list(np.cumsum([0] + [k for _, k in spans])[:-1])
            assert sum(k for _, k in spans) == N
            assert max(k for _, k in spans) == largest <= m
            assert min(k for _, k in spans) >= max(1, largest - 1)


@pytest.mark.parametrize("slot_bytes", [1, 40_000, 120_000])
@pytest.mark.parametrize("groups", [1, 3, 8])
@pytest.mark.parametrize("du_min", [1, 1 << 30], ids=["VT", "V"])
def test_chunks_and_groups(alg, slot_bytes, groups, du_min, twin, monkeypatch, spy):
    """One image per chunk, or chunks of 3 and 4 images; one, three (uneven) or eight partial sums of dW; dU from V
    or from its transposed copy: all the same result."""
    monkeypatch.setattr(winograd, "_SLOT_BYTES", slot_bytes)
    monkeypatch.setattr(winograd, "_GROUPS", groups)
    monkeypatch.setattr(winograd, "_TRANSPOSED_DU", du_min)
    x, W, b, dout, pad = _problem((7, 3, 9, 10, 4, 1), np.float64)
    close(K.conv2d_forward(x, W, b, 1, pad), R.conv2d_forward(x, W, b, 1, pad), np.float64)
    for g, w in zip(K.conv2d_backward(dout, x, W, 1, pad), R.conv2d_backward(dout, x, W, 1, pad), strict=True):
        close(g, w, np.float64)
    assert spy == {"forward": 1, "backward": 1}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("du_min", [1, 1 << 30], ids=["VT", "V"])
def test_same_bits_with_one_or_two_threads(alg, dtype, du_min, monkeypatch):
    """The parallel twin gives identical results on 1 and 2 Numba threads (dW partials do not follow threads)."""
    monkeypatch.setattr(winograd, "_TRANSPOSED_DU", du_min)
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "0")
    monkeypatch.setattr(_jit, "_num_threads", None)
    monkeypatch.setattr(winograd, "_SLOT_BYTES", 1)  # a chunk per image: 9 chunks in 8 partial sums
    x, W, b, dout, pad = _problem((9, 4, 10, 8, 5, 1), dtype)
    results = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results.append([K.conv2d_forward(x, W, b, 1, pad), *K.conv2d_backward(dout, x, W, 1, pad)])
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


def test_need_dx_false_and_non_contiguous_inputs(alg, dtype, twin, spy):
    x, W, b, dout, pad = _problem((3, 4, 9, 7, 5, 1), dtype)
    xt = np.asfortranarray(x)  # Fortran order
    Wt = W[:, ::-1][:, ::-1]  # negative strides, same values
    dt = np.ascontiguousarray(dout.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # NHWC memory
    dx, dW, db = K.conv2d_backward(dt, xt, Wt, 1, pad)
    none, dW2, db2 = K.conv2d_backward(dt, xt, Wt, 1, pad, need_dx=False)
    assert none is None
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db2, db)
    for g, w in zip((dx, dW, db), R.conv2d_backward(dout, x, W, 1, pad), strict=True):
        close(g, w, dtype)
    close(K.conv2d_forward(xt, Wt, b[::-1][::-1], 1, pad), R.conv2d_forward(x, W, b, 1, pad), dtype)
    assert spy == {"forward": 1, "backward": 2}


def test_cache_dict_and_layer_path(dtype, spy):
    """The cache= workspace (what the Convolution layer passes) holds the scratch across calls and shapes."""
    cache = {}
    for case in ((2, 3, 8, 8, 4, 1), (3, 2, 5, 7, 3, 0), (2, 3, 8, 8, 4, 1)):
        x, W, b, dout, pad = _problem(case, dtype)
        close(K.conv2d_forward(x, W, b, 1, pad, cache=cache), R.conv2d_forward(x, W, b, 1, pad), dtype)
        got = K.conv2d_backward(dout, x, W, 1, pad, cache=cache)
        for g, w in zip(got, R.conv2d_backward(dout, x, W, 1, pad), strict=True):
            close(g, w, dtype)
    assert spy == {"forward": 3, "backward": 3}


@pytest.mark.parametrize("why", ["switched off", "no BLAS", "stride 2", "5x5"])
def test_other_paths_when_winograd_does_not_apply(why, monkeypatch, spy):
    stride, fh = 1, 3
    if why == "switched off":
        monkeypatch.setattr(config, "CONV_WINOGRAD", False)
    elif why == "no BLAS":
        monkeypatch.setattr(_blas, "AVAILABLE", False)
    elif why == "stride 2":
        stride = 2
    else:
        fh = 5
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 9))
    W = rng.standard_normal((4, 3, fh, fh))
    b = rng.standard_normal(4)
    out = K.conv2d_forward(x, W, b, stride, 1)
    close(out, R.conv2d_forward(x, W, b, stride, 1), np.float64)
    dout = rng.standard_normal(out.shape)
    for g, w in zip(K.conv2d_backward(dout, x, W, stride, 1), R.conv2d_backward(dout, x, W, stride, 1),
                    strict=True):
        close(g, w, np.float64)
    assert spy == {"forward": 0, "backward": 0}


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("seed", range(6))
def test_special_values(alg, special, seed, twin, spy):
    """What the module docstring promises: the output and dx are non-finite exactly where the direct sum's are
    (+-inf may come out as NaN, NaN never goes away); dW is non-finite wherever the direct sum's is, and for a
    filter/channel pair touched by a special value in all nine taps; finite values match. F(4x4, 3x3)'s passes
    hand a call with a non-finite output (forward) or output gradient (backward) to F(2x2, 3x3)."""
    rng = np.random.default_rng(seed)
    x, W, b, dout, pad = _problem((2, 3, 7, 6, 4, int(seed % 3)), np.float64, seed)
    x[tuple(rng.integers(0, s) for s in x.shape)] = special
    dout[tuple(rng.integers(0, s) for s in dout.shape)] = special
    with np.errstate(invalid="ignore"):
        want = [R.conv2d_forward(x, W, b, 1, pad), *R.conv2d_backward(dout, x, W, 1, pad)]
    got = [K.conv2d_forward(x, W, b, 1, pad), *K.conv2d_backward(dout, x, W, 1, pad)]
    assert spy == {"forward": 1, "backward": 1}
    for name, g, w in zip(("out", "dx", "dW", "db"), got, want, strict=True):
        if name == "dW":
            assert (~np.isfinite(w) <= ~np.isfinite(g)).all(), name
        else:
            np.testing.assert_array_equal(np.isfinite(g), np.isfinite(w), err_msg=name)
        assert (np.isnan(w) <= np.isnan(g)).all(), name
        finite = np.isfinite(g)
        close(g[finite], w[finite], np.float64)



def test_f43_filter_transform_is_kept_only_for_the_same_filter_bits():
    """The forward's U is reused by the backward through the layer's workspace while W holds the same bytes; an
    in-place edit (a signed zero too) recomputes it."""
    W = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    W[0, 0, 0, 0] = 0.0
    ws = {}
    U = winograd43.filter_transform(W, ws)
    assert winograd43.filter_transform(W.copy(), ws) is U
    np.testing.assert_array_equal(U, winograd43.filter_transform(W))
    for edit in (lambda w: w.__setitem__((0, 0, 0, 0), -0.0), lambda w: w.__imul__(2)):
        edit(W)
        again = winograd43.filter_transform(W, ws)
        assert again is not U
        np.testing.assert_array_equal(again.view(np.uint32), winograd43.filter_transform(W).view(np.uint32))
        U = again

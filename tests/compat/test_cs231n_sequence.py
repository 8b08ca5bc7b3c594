"""cs231n assignment 3's word_embedding_*, temporal_affine_* and temporal_softmax_loss on fastnn kernels: cs231n's
signatures, caches and float64, against its own code where its repository is at hand and against the sanity
checks of its RNN_Captioning notebook."""

from __future__ import annotations

import os
import pathlib
import subprocess
import types

import numpy as np
import pytest

from fastnn import backend
from fastnn.compat import cs231n as C
from fastnn.gradient import numerical_gradient

_MIRROR = pathlib.Path(os.environ.get("FASTNN_CS231N_REPO", "/work/.mirror/Na-moe+CS231n-2024/repo"))


@pytest.fixture(scope="module")
def upstream():
    """cs231n's completed ``rnn_layers.py`` (read from the repository, executed in a fresh module)."""
    if not _MIRROR.exists():
        pytest.skip("the cs231n 2024 repository is not available (set FASTNN_CS231N_REPO)")
    src = subprocess.run(["git", f"--git-dir={_MIRROR}", "show", "HEAD:assignment3/cs231n/rnn_layers.py"],
                         capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("cs231n_rnn_layers")
    exec(compile(src, "rnn_layers.py", "exec"), module.__dict__)  # noqa: S102 -- the oracle's own code
    return module


def _data(seed=0):
    rng = np.random.default_rng(seed)
    N, T, V, D, M = 3, 4, 6, 5, 7
    return rng, N, T, V, D, M


@pytest.mark.parametrize("impl", ["kernels", "reference"])
def test_matches_cs231n(upstream, impl):
    rng, N, T, V, D, M = _data()
    x, W = rng.integers(0, V, (N, T)), rng.standard_normal((V, D))
    dout = rng.standard_normal((N, T, D))
    h, w, b = rng.standard_normal((N, T, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
    d = rng.standard_normal((N, T, M))
    s, y, mask = rng.standard_normal((N, T, V)), rng.integers(0, V, (N, T)), rng.random((N, T)) > 0.3
    with backend.using(impl):
        out, cache = C.word_embedding_forward(x, W)
        ref, ref_cache = upstream.word_embedding_forward(x, W)
        np.testing.assert_array_equal(out, ref)
        assert cache[0] is x and cache[1] is W  # cs231n's cache (x, W)
        np.testing.assert_array_equal(C.word_embedding_backward(dout, cache),
                                      upstream.word_embedding_backward(dout, ref_cache))
        out, cache = C.temporal_affine_forward(h, w, b)
        ref, ref_cache = upstream.temporal_affine_forward(h, w, b)
        np.testing.assert_allclose(out, ref, rtol=1e-12)
        assert len(cache) == 4 and cache[3] is out
        for a, r in zip(C.temporal_affine_backward(d, cache), upstream.temporal_affine_backward(d, ref_cache),
                        strict=True):
            assert a.dtype == np.float64
            np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-13)
        loss, dx = C.temporal_softmax_loss(s, y, mask)
        ref_loss, ref_dx = upstream.temporal_softmax_loss(s, y, mask)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-15)


def _check_loss(N, T, V, p, seed):
    rng = np.random.default_rng(seed)
    x = 0.001 * rng.standard_normal((N, T, V))
    y = rng.integers(0, V, (N, T))
    mask = rng.random((N, T)) <= p
    return float(C.temporal_softmax_loss(x, y, mask)[0])


def test_notebook_sanity_checks():
    """RNN_Captioning.ipynb: about 2.3, 23 and 2.3 (log 10 per counted step, summed over steps, over N)."""
    np.testing.assert_allclose(_check_loss(100, 1, 10, 1.0, 0), np.log(10), rtol=1e-3)
    np.testing.assert_allclose(_check_loss(100, 10, 10, 1.0, 1), 10 * np.log(10), rtol=1e-3)
    assert abs(_check_loss(5000, 10, 10, 0.1, 2) - np.log(10)) < 0.05


def test_gradients_by_central_differences():
    rng, N, T, V, D, M = _data(3)
    s, y, mask = rng.standard_normal((N, T, V)), rng.integers(0, V, (N, T)), rng.random((N, T)) > 0.3
    dx = C.temporal_softmax_loss(s, y, mask)[1]
    np.testing.assert_allclose(dx, numerical_gradient(lambda _: C.temporal_softmax_loss(s, y, mask)[0], s),
                               rtol=1e-6, atol=1e-9)
    x, W = rng.integers(0, V, (N, T)), rng.standard_normal((V, D))
    dout = rng.standard_normal((N, T, D))
    dW = C.word_embedding_backward(dout, C.word_embedding_forward(x, W)[1])
    np.testing.assert_allclose(dW, numerical_gradient(lambda _: np.sum(C.word_embedding_forward(x, W)[0] * dout),
                                                      W), rtol=1e-7, atol=1e-9)


def test_float32_stays_and_masked_steps_never_make_nan():
    rng, N, T, V, D, M = _data(4)
    W = rng.standard_normal((V, D)).astype(np.float32)
    out, cache = C.word_embedding_forward(rng.integers(0, V, (N, T)), W)
    assert out.dtype == np.float32
    assert C.word_embedding_backward(np.ones((N, T, D)), cache).dtype == np.float32  # dW like W (np.zeros_like)
    s = rng.standard_normal((N, T, V))
    y = rng.integers(0, V, (N, T))
    mask = np.ones((N, T), bool)
    mask[0, 0] = False
    s[0, 0, y[0, 0]] = -1e4  # cs231n: log(0) * 0 = NaN at a masked-out step; fastnn skips the step
    loss, dx = C.temporal_softmax_loss(s, y, mask)
    assert np.isfinite(loss) and not dx[0, 0].any()


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: C.word_embedding_forward(np.array([[0, 6]]), np.ones((6, 2))), ValueError, r"idx must be token ids"),
    (lambda: C.temporal_affine_forward(np.ones((2, 3)), np.ones((3, 4)), np.ones(4)), ValueError, "x must be 3-D"),
    (lambda: C.temporal_affine_forward(np.ones((2, 3, 3)), np.ones((3, 4)), np.ones(5)), ValueError, "b must be"),
    (lambda: C.temporal_softmax_loss(np.ones((1, 2, 3)), np.array([[0, 1]]), np.array([[1, 0]])), TypeError,
     "mask must be a bool array"),
    (lambda: C.temporal_softmax_loss(np.ones((1, 2, 3)), np.array([[0, 3]]), np.ones((1, 2), bool)), ValueError,
     r"y must be labels in \[0, 3\)"),
], ids=["id = V", "x 2-D", "b shape", "mask int", "label = V"])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()

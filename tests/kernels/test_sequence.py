"""Sequence kernels against their NumPy twins, central differences and PyTorch: the embedding lookup and its
scatter-add gradient, the time-distributed softmax cross-entropy (DLFS-2 ignore_label / cs231n batch average) and
global-norm gradient clipping."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from fastnn.gradient import numerical_gradient
from tests.conftest import assert_close

# (N, T, V, D): batch 1, T = 1, one feature, odd sizes, more positions than tokens (ids repeat)
SHAPES = [(1, 1, 1, 1), (1, 5, 3, 1), (3, 1, 7, 5), (4, 9, 6, 33), (2, 35, 50, 17)]


def _ids(shape, v, seed=0):
    return np.random.default_rng(seed).integers(0, v, shape)


def _rand(shape, dtype, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


# ---------------------------------------------------------------------------------------------------------------
# Embedding


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_embedding_matches_reference(shape, dtype, twin):
    n, t, v, d = shape
    W, idx = _rand((v, d), dtype), _ids((n, t), v)
    dout = _rand((n, t, d), dtype, 1)
    W0, idx0, dout0 = W.copy(), idx.copy(), dout.copy()
    out = K.embedding_forward(W, idx)
    assert out.shape == (n, t, d) and out.dtype == dtype
    np.testing.assert_array_equal(out, W[idx])
    np.testing.assert_array_equal(out, R.embedding_forward(W, idx))
    dW = K.embedding_backward(dout, idx, v)
    assert dW.shape == (v, d) and dW.dtype == dtype
    # the same additions in the same order as np.add.at: equal bit for bit, for any thread count
    np.testing.assert_array_equal(dW, R.embedding_backward(dout, idx, v))
    for a, a0 in ((W, W0), (idx, idx0), (dout, dout0)):
        np.testing.assert_array_equal(a, a0)


def test_embedding_repeated_ids_accumulate_in_order(twin):
    # float32 sums whose value depends on the order: 1e8 + 1 - 1e8 is 0 in float32, 1 - 1e8 + 1e8 is 0 too, but
    # 1e8 - 1e8 + 1 is 1
    dout = np.array([[1e8], [-1e8], [1.0]], np.float32)
    idx = np.array([2, 2, 2])
    dW = K.embedding_backward(dout, idx, 3)
    np.testing.assert_array_equal(dW, [[0], [0], [1]])
    dW = K.embedding_backward(dout[[2, 0, 1]], idx, 3)
    np.testing.assert_array_equal(dW, [[0], [0], [0]])


@pytest.mark.parametrize("idx_shape", [(), (7,), (2, 3, 4)], ids=str)
def test_embedding_any_index_shape_and_strided_inputs(idx_shape, dtype, twin):
    W = _rand((6, 40), dtype)[:, ::2]  # non-contiguous
    idx = _ids(idx_shape, 6).astype(np.int32)
    out = K.embedding_forward(W, idx)
    np.testing.assert_array_equal(out, W[idx])
    dout = _rand((*idx_shape, 40), dtype)[..., ::2]
    assert_close(K.embedding_backward(dout, idx, 6), R.embedding_backward(dout, idx, 6), dtype)


@pytest.mark.parametrize("layout", ["C", "F", "aliases dout"])
def test_embedding_backward_into_out(layout, dtype, twin):
    """out= (a layer's gradient array) is zeroed and written, whatever it held, and returned; Fortran order and
    memory shared with dout are computed apart and copied in."""
    n, t, v, d = 4, 9, 6, 33
    idx, dout0 = _ids((n, t), v), _rand((n, t, d), dtype, 1)
    buf = np.empty(max(n * t, v) * d, dtype)
    dout = buf[:n * t * d].reshape(n, t, d) if layout == "aliases dout" else dout0
    out = {"C": np.empty((v, d), dtype), "F": np.empty((v, d), dtype, order="F"),
           "aliases dout": buf[:v * d].reshape(v, d)}[layout]
    for impl in (K, R):
        out[...] = np.nan
        dout[...] = dout0
        assert impl.embedding_backward(dout, idx, v, out=out) is out
        np.testing.assert_array_equal(out, R.embedding_backward(dout0, idx, v))


@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
def test_embedding_backward_bad_out_writes_nothing(impl):
    dout, idx = np.ones((2, 3), np.float32), np.array([0, 1])
    for out, match in ((np.zeros((5, 3)), "out must be a float32 ndarray"), (np.zeros((4, 3), np.float32),
                       r"out must be of shape \(5, 3\), got shape \(4, 3\)")):
        with pytest.raises((TypeError, ValueError), match=f"embedding_backward: {match}"):
            impl.embedding_backward(dout, idx, 5, out=out)
        np.testing.assert_array_equal(out, 0)
    with pytest.raises(ValueError, match=r"idx must be token ids in \[0, 5\)"):  # ids checked before out written
        impl.embedding_backward(dout, np.array([0, 5]), 5, out=(out := np.ones((5, 3), np.float32)))
    np.testing.assert_array_equal(out, 1)


def test_embedding_twin_gradient_by_central_differences():
    W, idx = _rand((5, 3), np.float64), np.array([[0, 4, 4], [2, 0, 4]])
    dout = _rand((2, 3, 3), np.float64, 1)
    num = numerical_gradient(lambda _: float(np.sum(R.embedding_forward(W, idx) * dout)), W)
    np.testing.assert_allclose(R.embedding_backward(dout, idx, 5), num, rtol=1e-7, atol=1e-9)


def test_embedding_like_torch(dtype):
    torch = pytest.importorskip("torch")
    W, idx = _rand((11, 6), dtype), _ids((3, 7), 11)
    dout = _rand((3, 7, 6), dtype, 1)
    tW = torch.from_numpy(W.copy()).requires_grad_()
    out = torch.nn.functional.embedding(torch.from_numpy(idx), tW)
    out.backward(torch.from_numpy(dout))
    assert_close(K.embedding_forward(W, idx), out.detach().numpy(), dtype)
    assert_close(K.embedding_backward(dout, idx, 11), tW.grad.numpy(), dtype)


@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize(("call", "match"), [
    (lambda m: m.embedding_forward(np.ones((4, 2)), np.array([0, 4])), r"idx must be token ids in \[0, 4\)"),
    (lambda m: m.embedding_forward(np.ones((4, 2)), np.array([-1, 0])), r"idx must be token ids in \[0, 4\)"),
    (lambda m: m.embedding_forward(np.ones((4, 2)), np.array([0.0, 1.0])), "idx must be an integer array"),
    (lambda m: m.embedding_forward(np.ones((4, 2)), np.array([True])), "idx must be an integer array"),
    (lambda m: m.embedding_forward(np.ones(4), np.array([0])), "W must be 2-D"),
    (lambda m: m.embedding_backward(np.ones((2, 3)), np.array([0, 5]), 5), r"idx must be token ids in \[0, 5\)"),
    (lambda m: m.embedding_backward(np.ones((2, 3)), np.array([0, 1, 2]), 5), "dout must be of shape"),
    (lambda m: m.embedding_backward(np.ones((2, 3)), np.array([0, 1]), 0), "vocab_size must be >= 1"),
], ids=["id = V", "id < 0", "float ids", "bool ids", "W 1-D", "backward id = V", "dout shape", "V = 0"])
def test_embedding_bad_input(impl, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(impl)


# ---------------------------------------------------------------------------------------------------------------
# Time-distributed softmax cross-entropy


def _time_data(shape, dtype, seed=0, ignore=-1):
    n, t, v, _ = shape
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, t, v)) * 3).astype(dtype)
    labels = rng.integers(0, v, (n, t))
    if n * t > 1:
        labels[rng.random((n, t)) < 0.3] = ignore
        labels.flat[0] = 0  # at least one position counted
    return x, labels


def _definition(x, t, ignore, average):
    """-sum of log softmax at the counted labels over the count (or N), in float64 from scratch."""
    x = x.astype(np.float64)
    logp = x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)
    total = -sum(logp[i, j, t[i, j]] for i in range(t.shape[0]) for j in range(t.shape[1]) if t[i, j] != ignore)
    return total / (t.shape[0] if average == "batch" else np.count_nonzero(t != ignore))


@pytest.mark.parametrize("average", ["valid", "batch"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_time_softmax_cross_entropy_matches_reference(shape, average, dtype, twin):
    x, t = _time_data(shape, dtype)
    x0, t0 = x.copy(), t.copy()
    loss, probs = K.time_softmax_cross_entropy_forward(x, t, -1, average=average)
    loss_r, probs_r = R.time_softmax_cross_entropy_forward(x, t, -1, average=average)
    assert isinstance(loss, np.generic) and loss.dtype == dtype
    assert_close(loss, loss_r, dtype)
    assert_close(loss, _definition(x, t, -1, average), dtype, rtol=1e-5 if dtype == np.float32 else 1e-11)
    assert_close(probs, probs_r, dtype)
    dx = K.time_softmax_cross_entropy_backward(probs, t, -1, 2.0, average=average)
    assert_close(dx, R.time_softmax_cross_entropy_backward(probs, t, -1, 2.0, average=average), dtype)
    assert not dx[t == -1].any()  # ignored positions get no gradient
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)


def test_time_softmax_cross_entropy_other_ignore_label_one_hot_and_strided(dtype, twin):
    x, t = _time_data((3, 4, 5, 0), dtype, ignore=2)
    xs = np.ascontiguousarray(np.repeat(x, 2, axis=2))[:, :, ::2]  # non-contiguous, same values
    loss, probs = K.time_softmax_cross_entropy_forward(xs, t, 2)
    assert_close(loss, _definition(x, t, 2, "valid"), dtype, rtol=1e-5 if dtype == np.float32 else 1e-11)
    # a one-hot t (the book's TimeSoftmaxWithLoss takes it): no position ignored
    full = np.random.default_rng(3).integers(0, 5, (3, 4))
    onehot = np.eye(5)[full]
    for impl in (K, R):
        assert_close(impl.time_softmax_cross_entropy_forward(x, onehot)[0], K.time_softmax_cross_entropy_forward(
            x, full)[0], dtype)


@pytest.mark.parametrize("average", ["valid", "batch"])
def test_time_softmax_cross_entropy_twin_gradient_by_central_differences(average):
    x, t = _time_data((2, 3, 4, 0), np.float64, seed=1)

    def loss(_):
        return R.time_softmax_cross_entropy_forward(x, t, average=average)[0]

    probs = R.time_softmax_cross_entropy_forward(x, t, average=average)[1]
    np.testing.assert_allclose(R.time_softmax_cross_entropy_backward(probs, t, average=average),
                               numerical_gradient(loss, x), rtol=1e-6, atol=1e-9)


def test_time_softmax_cross_entropy_like_torch(dtype):
    torch = pytest.importorskip("torch")
    x, t = _time_data((3, 5, 7, 0), dtype)
    tx = torch.from_numpy(x.reshape(-1, 7).copy()).requires_grad_()
    tl = torch.nn.functional.cross_entropy(tx, torch.from_numpy(t.reshape(-1)), ignore_index=-1)
    tl.backward()
    loss, probs = K.time_softmax_cross_entropy_forward(x, t)
    assert_close(loss, tl.detach().numpy(), dtype, rtol=1e-5 if dtype == np.float32 else 1e-11)
    assert_close(K.time_softmax_cross_entropy_backward(probs, t).reshape(-1, 7), tx.grad.numpy(), dtype)


@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize(("kw", "exc", "match"), [
    ({"t": np.array([[0, 5]])}, ValueError, r"t must be labels in \[0, 5\) or ignore_label -1, got 5 at \(0, 1\)"),
    ({"t": np.array([[0, -2]])}, ValueError, r"t must be labels in \[0, 5\) or ignore_label -1, got -2"),
    ({"t": np.array([[-1, -1]])}, ValueError, "t must be at least one label other than ignore_label -1"),
    ({"t": np.array([[0, 1, 2]])}, ValueError, r"t must be of shape \(1, 2\)"),
    ({"t": np.array([[0.5, 1]])}, ValueError, "t must be whole-number labels"),
    ({"t": np.array([[True, False]])}, TypeError, "t must be integer labels"),
    ({"ignore_label": 1.5}, TypeError, "ignore_label must be an int"),
    ({"average": "mean"}, ValueError, "average must be 'valid' or 'batch'"),
    ({"x": np.ones((0, 2, 5)), "t": np.zeros((0, 2), int)}, ValueError, "N must be >= 1"),
    ({"x": np.ones((2, 5))}, ValueError, "x must be 3-D"),
], ids=["label = V", "label < -1", "all ignored", "t shape", "t 0.5", "t bool", "ignore float", "average",
        "N = 0", "x 2-D"])
def test_time_softmax_cross_entropy_bad_input(impl, kw, exc, match):
    args = {"x": np.ones((1, 2, 5)), "t": np.array([[0, 1]]), "ignore_label": -1, "average": "valid", **kw}
    with pytest.raises(exc, match="^time_softmax_cross_entropy_forward: " + match):
        impl.time_softmax_cross_entropy_forward(args["x"], args["t"], args["ignore_label"], average=args["average"])


# ---------------------------------------------------------------------------------------------------------------
# Gradient clipping


def _grads(dtype, scale, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in [(7, 3), (1,), (40,), (2, 5, 3)]]


@pytest.mark.parametrize("scale", [0.001, 1.0], ids=["below", "above"])
def test_clip_grads_matches_reference_and_the_formula(scale, dtype, twin):
    grads = _grads(dtype, scale)
    before = [g.copy() for g in grads]
    ref = [g.copy() for g in grads]
    norm = K.clip_grads(grads, 0.5)
    norm_r = R.clip_grads(ref, 0.5)
    assert isinstance(norm, np.generic) and norm.dtype == dtype
    expected = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in before))
    assert_close(norm, norm_r, dtype)
    assert_close(norm, expected, dtype)
    rate = 0.5 / (expected + 1e-6)
    for g, r, b in zip(grads, ref, before, strict=True):
        assert g.dtype == dtype
        assert_close(g, r, dtype)
        if rate < 1:
            assert_close(g, b * dtype.type(rate), dtype)
        else:
            np.testing.assert_array_equal(g, b)  # not touched when the norm is small enough
    if rate < 1:
        assert_close(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads)), 0.5, np.float64, rtol=1e-5)


def test_clip_grads_transposed_and_strided_views_are_scaled_in_place(twin):
    base = np.arange(1.0, 25.0).reshape(4, 6)
    a, b = base.copy(), base.copy()
    views = [a.T, a[:, ::2]]  # Fortran-contiguous and strided views of one array (overlapping)
    norm = K.clip_grads([a.T, b[:, ::2]], 1.0)
    ref_b = base.copy()
    R.clip_grads([base.T, ref_b[:, ::2]], 1.0)
    assert_close(a, base, np.float64)
    assert_close(b, ref_b, np.float64)
    assert norm > 1 and views[0].base is a


def test_clip_grads_like_torch(dtype):
    torch = pytest.importorskip("torch")
    grads = _grads(dtype, 1.0)
    params = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.from_numpy(g.copy())
    tnorm = torch.nn.utils.clip_grad_norm_(params, 0.3)
    norm = K.clip_grads(grads, 0.3)
    assert_close(norm, tnorm.numpy(), dtype)
    for p, g in zip(params, grads, strict=True):
        assert_close(g, p.grad.numpy(), dtype)


@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize(("grads_fn", "max_norm", "exc", "match"), [
    (lambda g: g, np.inf, ValueError, "max_norm must be a finite number >= 0.0"),
    (lambda g: g, np.nan, ValueError, "max_norm must be a finite number"),
    (lambda g: g, -1.0, ValueError, "max_norm must be a finite number >= 0.0"),
    (lambda g: g[0], 1.0, TypeError, "grads must be a list of arrays"),
    (lambda g: [*g[:3], g[3].astype(np.int64)], 1.0, TypeError, r"grads\[3\] must be a float32 or float64"),
    (lambda g: [*g[:3], np.asarray(g[3]).copy().view()], 1.0, None, None),
], ids=["inf", "nan", "negative", "not a list", "int grad", "ok"])
def test_clip_grads_bad_input_changes_nothing(impl, grads_fn, max_norm, exc, match):
    grads = grads_fn(_grads(np.float64, 1.0))
    if exc is None:
        impl.clip_grads(grads, max_norm)
        return
    before = [np.array(g, copy=True) for g in grads] if isinstance(grads, list) else None
    with pytest.raises(exc, match="^clip_grads: " + match):
        impl.clip_grads(grads, max_norm)
    if before is not None:
        for g, b in zip(grads, before, strict=True):
            np.testing.assert_array_equal(g, b)


def test_clip_grads_read_only_last_gradient_blocks_everything():
    grads = _grads(np.float64, 1.0)
    grads[-1].flags.writeable = False
    before = [g.copy() for g in grads]
    with pytest.raises(ValueError, match=r"^clip_grads: grads\[3\] must be writeable"):
        K.clip_grads(grads, 0.1)
    for g, b in zip(grads, before, strict=True):
        np.testing.assert_array_equal(g, b)


# ---------------------------------------------------------------------------------------------------------------
# Softmax backward (DLFS-2's Softmax layer)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 3), (33, 129)], ids=str)
def test_softmax_backward_matches_reference_and_torch(shape, dtype, twin):
    probs = R.softmax_forward(_rand(shape, dtype, 0, 3.0))
    dout = _rand(shape, dtype, 1)[:, ::-1]  # non-contiguous
    dx = K.softmax_backward(dout, probs)
    assert dx.dtype == dtype
    assert_close(dx, R.softmax_backward(dout, probs), dtype)
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(_rand(shape, dtype, 0, 3.0)).requires_grad_()
    torch.softmax(x, 1).backward(torch.from_numpy(dout.copy()))
    assert_close(dx, x.grad.numpy(), dtype, atol=1e-6 if dtype == np.float32 else 1e-12)


def test_softmax_backward_twin_gradient_by_central_differences():
    x, dout = _rand((3, 4), np.float64), _rand((3, 4), np.float64, 1)
    num = numerical_gradient(lambda _: float(np.sum(R.softmax_forward(x) * dout)), x)
    np.testing.assert_allclose(R.softmax_backward(dout, R.softmax_forward(x)), num, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Embedding dot product (DLFS-2's EmbeddingDot)


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 3, 1), (7, 4, 33), (40, 6, 17)], ids=str)
def test_embedding_dot_matches_reference_and_torch(shape, dtype, twin):
    n, v, d = shape
    W, h = _rand((v, d), dtype), _rand((n, 2 * d), dtype, 1)[:, ::2]  # h non-contiguous
    idx, dout = _ids((n,), v, 2), _rand((n,), dtype, 3)
    out = K.embedding_dot_forward(W, idx, h)
    assert out.dtype == dtype and out.shape == (n,)
    assert_close(out, R.embedding_dot_forward(W, idx, h), dtype)
    dh, dW = K.embedding_dot_backward(dout, W, idx, h)
    dh_r, dW_r = R.embedding_dot_backward(dout, W, idx, h)
    assert_close(dh, dh_r, dtype)
    assert_close(dW, dW_r, dtype)  # the same order; the kernel may fuse the multiply-add (one rounding less)
    torch = pytest.importorskip("torch")
    tW, th = torch.from_numpy(W.copy()).requires_grad_(), torch.from_numpy(h.copy()).requires_grad_()
    tout = (torch.nn.functional.embedding(torch.from_numpy(idx), tW) * th).sum(1)
    tout.backward(torch.from_numpy(dout))
    assert_close(out, tout.detach().numpy(), dtype)
    assert_close(dh, th.grad.numpy(), dtype)
    assert_close(dW, tW.grad.numpy(), dtype)


def test_embedding_dot_twin_gradients_by_central_differences():
    W, h, idx = _rand((4, 3), np.float64), _rand((5, 3), np.float64, 1), np.array([0, 3, 3, 1, 0])
    dout = _rand((5,), np.float64, 2)
    dh, dW = R.embedding_dot_backward(dout, W, idx, h)

    def f(_):
        return float(np.sum(R.embedding_dot_forward(W, idx, h) * dout))

    np.testing.assert_allclose(dW, numerical_gradient(f, W), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dh, numerical_gradient(f, h), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
def test_embedding_dot_bad_input(impl):
    W, h = np.ones((4, 3)), np.ones((2, 3))
    with pytest.raises(ValueError, match=r"^embedding_dot_forward: idx must be token ids in \[0, 4\)"):
        impl.embedding_dot_forward(W, np.array([0, 4]), h)
    with pytest.raises(ValueError, match=r"^embedding_dot_forward: idx must be of shape \(2,\)"):
        impl.embedding_dot_forward(W, np.array([0, 1, 2]), h)
    with pytest.raises(ValueError, match=r"^embedding_dot_forward: h must be of shape \(N, 3\)"):
        impl.embedding_dot_forward(W, np.array([0, 1]), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"^embedding_dot_backward: dout must be of shape \(2,\)"):
        impl.embedding_dot_backward(np.ones(3), W, np.array([0, 1]), h)

"""Softmax, softmax cross-entropy and SVM loss kernels against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from tests.conftest import assert_close

SHAPES = [(1, 1), (1, 7), (5, 3), (100, 10), (33, 129), (256, 1000)]


def _data(shape, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    t = rng.integers(0, shape[1], shape[0])
    return x, t


def _onehot(t, k):
    out = np.zeros((t.size, k))
    out[np.arange(t.size), t] = 1
    return out


def _assert_loss(loss, expected, dtype):
    assert isinstance(loss, np.generic) and np.ndim(loss) == 0
    assert_close(loss, expected, dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_matches_reference(shape, dtype, twin):
    x, _ = _data(shape, dtype)
    x0 = x.copy()
    p = K.softmax_forward(x)
    assert_close(p, R.softmax_forward(x), dtype)
    assert_close(p.sum(axis=1), np.ones(shape[0], dtype), dtype)
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("shape", [(0, 4), (3, 0), (0, 0)], ids=str)
def test_softmax_empty(shape, dtype):
    p = K.softmax_forward(np.zeros(shape, dtype))
    assert p.shape == shape and p.dtype == dtype
    assert R.softmax_forward(np.zeros(shape, dtype)).shape == shape


@pytest.mark.parametrize("labels", ["int", "onehot"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cross_entropy_matches_reference(shape, labels, dtype, twin):
    x, t = _data(shape, dtype)
    tt = t if labels == "int" else _onehot(t, shape[1])
    x0, tt0 = x.copy(), tt.copy()
    loss, probs = K.softmax_cross_entropy_forward(x, tt)
    loss_r, probs_r = R.softmax_cross_entropy_forward(x, tt)
    _assert_loss(loss, loss_r, dtype)
    assert_close(probs, probs_r, dtype)
    # the definition, in float64: mean of -log softmax at the label
    x64 = x.astype(np.float64)
    lse = np.log(np.exp(x64 - x64.max(1, keepdims=True)).sum(1)) + x64.max(1)
    assert_close(loss, dtype.type(np.mean(lse - x64[np.arange(shape[0]), t])), dtype)
    for dout in (1.0, -2.5):
        dx = K.softmax_cross_entropy_backward(probs, tt, dout)
        assert_close(dx, R.softmax_cross_entropy_backward(probs_r, tt, dout), dtype)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(tt, tt0)


@pytest.mark.parametrize("labels", ["int", "onehot"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cross_entropy_with_the_books_delta(shape, labels, dtype, twin):
    """delta > 0: Deep Learning from Scratch's -sum(log(y[arange(N), t] + delta)) / N of the softmax y."""
    x, t = _data(shape, dtype, scale=10.0)  # large scores: some true-class probabilities far below 1e-7
    tt = t if labels == "int" else _onehot(t, shape[1])
    x0 = x.copy()
    loss, probs = K.softmax_cross_entropy_forward(x, tt, delta=1e-7)
    loss_r, probs_r = R.softmax_cross_entropy_forward(x, tt, delta=1e-7)
    _assert_loss(loss, loss_r, dtype)
    assert_close(probs, probs_r, dtype)
    assert_close(probs, K.softmax_forward(x), dtype)  # the same softmax as without delta
    y = R.softmax_forward(x.astype(np.float64))
    book = -np.sum(np.log(y[np.arange(shape[0]), t] + 1e-7)) / shape[0]
    assert_close(loss, dtype.type(book), dtype)
    assert loss <= -np.log(dtype.type(1e-7)) * (1 + 1e-6)  # each sample capped at -log(delta) = 16.1
    np.testing.assert_array_equal(x, x0)


def test_delta_caps_a_hopeless_sample(dtype, twin):
    x = np.array([[1e4, 0.0, -1e4], [0.0, 5.0, 1.0]], dtype)
    t = np.array([2, 1])
    exact, _ = K.softmax_cross_entropy_forward(x, t)
    capped, _ = K.softmax_cross_entropy_forward(x, t, delta=1e-7)
    p1 = 1 / (np.exp(-5.0) + 1 + np.exp(-4.0))
    assert_close(exact, dtype.type((2e4 - np.log(p1)) / 2), dtype)
    assert_close(capped, dtype.type((-np.log(dtype.type(1e-7)) - np.log(p1 + 1e-7)) / 2), dtype)
    assert_close(capped, R.softmax_cross_entropy_forward(x, t, delta=1e-7)[0], dtype)


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
def test_delta_bad_input(mod):
    fn = "softmax_cross_entropy_forward"
    x, t = np.zeros((2, 3)), np.array([0, 1])
    for bad, exc, got in ((-1e-7, ValueError, "-1e-07"), (np.nan, ValueError, "nan"), (np.inf, ValueError, "inf"),
                          ("1e-7", TypeError, "str '1e-7'"), (None, TypeError, "NoneType None")):
        with pytest.raises(exc, match=rf"^{fn}: delta must be (a real number|a finite number >= 0.0), got {got}$"):
            mod.softmax_cross_entropy_forward(x, t, delta=bad)
    assert mod.softmax_cross_entropy_forward(x, t, delta=0)[0] == pytest.approx(np.log(3), rel=1e-15)


@pytest.mark.parametrize("labels", ["int", "onehot"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_svm_matches_reference(shape, labels, dtype, twin):
    x, t = _data(shape, dtype, scale=0.7)
    tt = t if labels == "int" else _onehot(t, shape[1])
    x0 = x.copy()
    loss, dx = K.svm_loss(x, tt)
    loss_r, dx_r = R.svm_loss(x, tt)
    _assert_loss(loss, loss_r, dtype)
    assert_close(dx, dx_r, dtype)
    np.testing.assert_array_equal(x, x0)


def test_svm_against_cs231n_naive_loops(twin):
    """cs231n's svm_loss_naive, written with explicit loops."""
    x, y = _data((20, 6), np.float64, scale=0.5)
    loss_naive, dx_naive = 0.0, np.zeros_like(x)
    for i in range(20):
        for j in range(6):
            if j == y[i]:
                continue
            margin = x[i, j] - x[i, y[i]] + 1
            if margin > 0:
                loss_naive += margin
                dx_naive[i, j] += 1
                dx_naive[i, y[i]] -= 1
    loss, dx = K.svm_loss(x, y)
    assert_close(loss, loss_naive / 20)
    assert_close(dx, dx_naive / 20)


LAYOUTS = {"row-padded": lambda a: np.pad(a, ((0, 0), (1, 0)))[:, 1:],
           "strided": lambda a: np.repeat(a, 2, axis=1)[:, ::2], "fortran": np.asfortranarray}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_non_contiguous(layout, dtype, twin):
    x, t = _data((37, 23), dtype)
    xv = LAYOUTS[layout](x)
    assert not xv.flags.c_contiguous
    assert_close(K.softmax_forward(xv), R.softmax_forward(x), dtype)
    loss, probs = K.softmax_cross_entropy_forward(xv, t[::-1].copy()[::-1])
    loss_r, probs_r = R.softmax_cross_entropy_forward(x, t)
    _assert_loss(loss, loss_r, dtype)
    assert_close(K.softmax_cross_entropy_backward(LAYOUTS[layout](probs), t), R.softmax_cross_entropy_backward(
        probs_r, t), dtype)
    loss, dx = K.svm_loss(xv, t)
    assert_close(dx, R.svm_loss(x, t)[1], dtype)


def test_large_scores_do_not_overflow(dtype, twin):
    """Log-sum-exp: scores of 1e4 (exp overflows even float64) give the exact loss."""
    x = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], dtype)
    t = np.array([1, 2])
    with np.errstate(over="raise", divide="raise"):
        loss_r, _ = R.softmax_cross_entropy_forward(x, t)
    loss, probs = K.softmax_cross_entropy_forward(x, t)
    assert_close(loss, dtype.type((1e4 + np.log(2)) / 2), dtype)
    assert_close(loss, loss_r, dtype)
    assert_close(probs, np.array([[1, 0, 0], [0, 0.5, 0.5]], dtype), dtype)


def test_confident_correct_prediction_has_tiny_loss_not_1e7(dtype):
    """No ``log(p + 1e-7)``: a loss far below 1e-7 is represented."""
    x = np.array([[40.0, 0.0]], dtype)
    loss, _ = K.softmax_cross_entropy_forward(x, np.array([0]))
    assert 0 <= loss < 1e-15


def test_nan_and_inf_rows(dtype, twin):
    x, t = _data((4, 5), dtype)
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    with np.errstate(invalid="ignore"):
        loss_r, probs_r = R.softmax_cross_entropy_forward(x, t)
        p_r = R.softmax_forward(x)
        svm_r, dsvm_r = R.svm_loss(x, t)
    loss, probs = K.softmax_cross_entropy_forward(x, t)
    assert np.isnan(loss) and np.isnan(loss_r)
    assert_close(probs, probs_r, dtype)
    with np.errstate(invalid="ignore"):
        loss_dr, _ = R.softmax_cross_entropy_forward(x, t, delta=1e-7)
    loss_d, probs_d = K.softmax_cross_entropy_forward(x, t, delta=1e-7)
    assert np.isnan(loss_d) and np.isnan(loss_dr)
    assert_close(probs_d, probs_r, dtype)
    clean = [0, 3]
    assert_close(K.softmax_cross_entropy_forward(x[clean], t[clean], delta=1e-7)[0],
                 R.softmax_cross_entropy_forward(x[clean], t[clean], delta=1e-7)[0], dtype)
    assert np.isnan(probs[1]).all() and np.isnan(probs[2]).all() and np.isfinite(probs[[0, 3]]).all()
    assert_close(K.softmax_forward(x), p_r, dtype)
    svm, dsvm = K.svm_loss(x, t)
    assert np.isnan(svm) and np.isnan(svm_r)
    assert_close(dsvm, dsvm_r, dtype)



def test_row_max_sign_cases(dtype, twin):
    """The row max runs on the floats' order-preserving integers: negative rows, signed zeros, -inf entries, and a
    NaN with its sign bit set (below -inf as an integer) or clear (above +inf) give the reference's rows."""
    x = np.array([[-3.0, -0.0, -1e-30, -7.0, -2.0, -5.0, -1.0, -4.0, -6.0],
                  [-np.inf, -1.0, -np.inf, -2.0, -3.0, -4.0, -5.0, -6.0, -9.0],
                  [0.0, -0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0],
                  [1.0, 2.0, -np.nan, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
                  [1.0, 2.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]], dtype)
    assert np.signbit(x[3, 2]) and not np.signbit(x[4, 2])
    with np.errstate(invalid="ignore"):
        want = R.softmax_forward(x)
    got = K.softmax_forward(x)
    assert_close(got, want, dtype)
    assert np.isnan(got[3:]).all() and np.isfinite(got[:3]).all()
    assert_close(K.softmax_cross_entropy_forward(x[:3], np.array([1, 1, 0]))[0],
                 R.softmax_cross_entropy_forward(x[:3], np.array([1, 1, 0]))[0], dtype)

def test_softmax_rows_either_side_of_fast_exp(dtype, twin):
    """Rows whose spread (max - min) is just inside and just past the fast exp's range (exp(-124 ln 2) in float32,
    exp(-1020 ln 2) in float64) and one with subnormal exponentials, each vs the twin, in one batch."""
    from fastnn.kernels._math import exp_nonpos_constants

    edge = -float(exp_nonpos_constants(dtype)[0][9])
    x = np.zeros((4, 7), dtype)
    x[0, 1], x[1, 1], x[2, 1], x[3, 1] = -edge * 0.999, -edge * 1.001, -edge * 1.04, 1.0
    x[:, 3] = -0.5
    t = np.array([1, 1, 3, 0])
    for kernel_out, twin_out in zip(K.softmax_cross_entropy_forward(x, t), R.softmax_cross_entropy_forward(x, t),
                                    strict=True):
        assert_close(kernel_out, twin_out, dtype, atol=0)
    assert K.softmax_forward(x)[2, 1] > 0  # a subnormal probability, as np.exp gives


def test_cross_entropy_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    x, t = _data((64, 17), dtype)
    xt = torch.from_numpy(x).requires_grad_()
    lt = torch.nn.functional.cross_entropy(xt, torch.from_numpy(t))
    lt.backward()
    loss, probs = K.softmax_cross_entropy_forward(x, t)
    assert_close(loss, lt.detach().numpy(), dtype)
    assert_close(K.softmax_cross_entropy_backward(probs, t), xt.grad.numpy(), dtype)


def test_svm_matches_torch_multi_margin(dtype):
    """torch's multi_margin_loss divides by K as well; cs231n's hinge is K times it."""
    torch = pytest.importorskip("torch")
    x, t = _data((32, 9), dtype, scale=0.5)
    xt = torch.from_numpy(x).requires_grad_()
    lt = torch.nn.functional.multi_margin_loss(xt, torch.from_numpy(t)) * 9
    lt.backward()
    loss, dx = K.svm_loss(x, t)
    assert_close(loss, lt.detach().numpy(), dtype)
    assert_close(dx, xt.grad.numpy(), dtype)


def test_int_scores_promote_to_float64():
    loss, probs = K.softmax_cross_entropy_forward(np.arange(6).reshape(2, 3), np.array([0, 2]))
    assert isinstance(loss, np.float64) and probs.dtype == np.float64


# ------------------------------------------------------------------------------------------------ bad input

FWD = ["softmax_cross_entropy_forward", "svm_loss"]


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("fn", FWD)
def test_loss_bad_input(mod, fn):
    f = getattr(mod, fn)
    arg = "t" if fn.startswith("softmax") else "y"
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=rf"{fn}: {arg} must be labels in \[0, 4\)"):
        f(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=rf"{fn}: {arg} must be labels in \[0, 4\)"):
        f(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=rf"{fn}: {arg} must be one-hot of shape \(3, 4\)"):
        f(x, np.eye(3))
    with pytest.raises(ValueError, match=rf"{fn}: {arg} must be of shape \(3,\)"):
        f(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=rf"{fn}: {arg} must be one-hot rows"):
        f(x, np.full((3, 4), 0.25))
    with pytest.raises(TypeError, match=rf"{fn}: {arg} must be integer class labels"):
        f(x, np.array([True, False, True]))
    with pytest.raises(TypeError, match=rf"{fn}: x must be a real numeric array"):
        f(x.astype(np.complex128), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=rf"{fn}: x must be 2-D"):
        f(np.zeros(4), np.array([0]))
    with pytest.raises(ValueError, match=rf"{fn}: N must be >= 1"):
        f(np.zeros((0, 4)), np.zeros(0, np.int64))


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
def test_backward_bad_input(mod):
    fn = "softmax_cross_entropy_backward"
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=rf"{fn}: t must be labels in \[0, 3\)"):
        mod.softmax_cross_entropy_backward(p, np.array([0, 3]))
    with pytest.raises(ValueError, match=rf"{fn}: dout must be a finite number"):
        mod.softmax_cross_entropy_backward(p, np.array([0, 1]), float("inf"))
    with pytest.raises(ValueError, match=rf"{fn}: N must be >= 1"):
        mod.softmax_cross_entropy_backward(np.zeros((0, 3)), np.zeros(0, np.int64))
    with pytest.raises(TypeError, match=rf"{fn}: probs must be"):
        mod.softmax_cross_entropy_backward(p.astype(np.complex64), np.array([0, 1]))
    with pytest.raises(ValueError, match="softmax_forward: x must be 2-D"):
        mod.softmax_forward(np.zeros((2, 3, 4)))


@pytest.mark.parametrize("code", ["<i1", "<i2", ">i4", "<i8", ">i8", "<u2", ">u8"])
def test_labels_out_of_range_refused_in_every_integer_dtype(code):
    """The range check views signed labels as unsigned (a negative one becomes huge): every width and byte order
    refuses -1 and K, and accepts 0 and K - 1, with the same message."""
    x = np.zeros((3, 4), np.float32)
    ok = np.array([0, 3, 1], dtype=code)
    assert np.isclose(K.softmax_cross_entropy_forward(x, ok)[0], np.log(4))
    bad = [[0, 4, 1]] + ([[0, -1, 1]] if np.dtype(code).kind == "i" else [])
    for values in bad:
        with pytest.raises(ValueError, match=r"softmax_cross_entropy_forward.*t.*labels in \[0, 4\)"):
            K.softmax_cross_entropy_forward(x, np.array(values, dtype=code))


@pytest.mark.parametrize("delta", [0.0, 1e-7])
@pytest.mark.parametrize("shape", [(1, 1), (2, 16), (3, 17), (4, 31), (130, 100)])
def test_int64_labels_out_of_range_refused_like_the_twin(shape, delta):
    """An int64 label of -1, K or a huge one, first, last or alone, gets the twin's error, in either loss form, and
    the same call with the label fixed computes the twin's numbers."""
    n, k = shape
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for where in {0, n - 1}:
        for value in (-1, k, 2**62, -(2**63)):
            t = np.zeros(n, np.int64)
            t[where] = value
            errors = []
            for mod in (K, R):
                with pytest.raises(ValueError, match=r"softmax_cross_entropy_forward: t must be labels") as exc:
                    mod.softmax_cross_entropy_forward(x, t, delta=delta)
                errors.append(str(exc.value))
            assert errors[0] == errors[1]
            t[where] = k - 1
            assert_close(K.softmax_cross_entropy_forward(x, t, delta=delta)[0],
                         R.softmax_cross_entropy_forward(x, t, delta=delta)[0], np.float32)


@pytest.mark.parametrize("k", [16, 17, 31, 100])
def test_cross_entropy_tail_vector_beside_the_general_path(dtype, k):
    """Rows that take the fast exponential with its overlapping tail vector (K not a multiple of 16), rows whose
    spread takes the general one, and a row with a NaN in the tail, in one batch, against the twin."""
    x = np.random.default_rng(k).standard_normal((6, k)).astype(dtype)
    x[1, k - 1] = -300.0  # spread past the fast path's range, in the tail's columns
    x[3, 0] = 300.0
    x[4, k - 2] = np.nan
    t = np.arange(6) % k
    with np.errstate(invalid="ignore", over="ignore"):
        want_loss, want = R.softmax_cross_entropy_forward(np.delete(x, 4, axis=0), np.delete(t, 4))
        loss, probs = K.softmax_cross_entropy_forward(np.delete(x, 4, axis=0), np.delete(t, 4))
        assert_close(probs, want, dtype)
        assert_close(loss, want_loss, dtype)
        assert np.isnan(K.softmax_cross_entropy_forward(x, t)[1][4]).all()
        assert np.isnan(K.softmax_cross_entropy_forward(x, t)[0])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9])
@pytest.mark.parametrize("k", [1, 7, 8, 9, 16, 17, 40])
def test_cross_entropy_rows_do_not_depend_on_their_group(dtype, n, k):
    """The kernel takes rows four at a time in vectors of 16 (float32) or 8 (float64) columns, the last group
    repeating its last row. Each row's probabilities have the bits the row gets alone, also beside a row whose
    exponentials are not all normal (a spread past the fast range, an inf), and the loss is the mean of the rows'
    own losses (summed in float64, in an order of LLVM's); the numbers are the twin's."""
    x, t = _data((n, k), dtype, seed=100 * n + k)
    if k > 1:
        x[n // 2, k - 1] = -300.0  # this row's group takes the general exponential
        x[n - 1, 0] = -np.inf
    loss, probs = K.softmax_cross_entropy_forward(x, t)
    alone = [K.softmax_cross_entropy_forward(x[i:i + 1], t[i:i + 1]) for i in range(n)]
    for i, (_, row_probs) in enumerate(alone):
        np.testing.assert_array_equal(probs[i], row_probs[0])
    total = 0.0
    for row_loss, _ in alone:
        total += float(row_loss)
    np.testing.assert_allclose(loss, total / n, rtol=2 * np.finfo(dtype).eps, atol=0)
    want_loss, want = R.softmax_cross_entropy_forward(x, t)
    assert_close(probs, want, dtype)
    assert_close(loss, want_loss, dtype)


def test_cross_entropy_blocks_of_groups_in_parallel(dtype, monkeypatch):
    """A batch large enough for blocks in parallel, of a row count that is no multiple of four: the serial and
    parallel twins give the same bits, and the twin's numbers."""
    x, t = _data((1027, 70), dtype, seed=3)
    runs = []
    for work in ("1000000000000", "0"):
        monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", work)
        runs.append(K.softmax_cross_entropy_forward(x, t))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    want_loss, want = R.softmax_cross_entropy_forward(x, t)
    assert_close(runs[0][1], want, dtype)
    assert_close(runs[0][0], want_loss, dtype)

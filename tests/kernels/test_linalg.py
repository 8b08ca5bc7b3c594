"""matmul, matmul_bias and column_sum: the threaded BLAS product (with its bias) and the blocked column sums
against their reference twins, on both Numba twins."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastnn import _jit
from fastnn import kernels as K
from fastnn import reference as R
from fastnn.kernels import _blas, linalg

from ..conftest import with_one_and_two_threads
from .test_conv import close

# (M, K, N): scalars, a row and a column, the affine layers of SimpleConvNet (forward, dW, dx), the shapes of a
# convolution's GEMMs (wide output; small output with a long reduction, split along the reduction), sizes that
# do not divide into the parts.
SHAPES = [(1, 1, 1), (1, 7, 1), (5, 1, 3), (100, 4320, 100), (4320, 100, 100), (100, 100, 4320),
          (30, 25, 5000), (25, 9000, 30), (7, 3001, 5), (67, 33, 131)]


def _pair(shape, dtype, seed=0):
    M, Kd, N = shape
    rng = np.random.default_rng(seed)
    return rng.standard_normal((M, Kd)).astype(dtype), rng.standard_normal((Kd, N)).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in SHAPES])
def test_matches_reference(shape, dtype, twin):
    a, b = _pair(shape, dtype)
    before = a.copy(), b.copy()
    got = K.matmul(a, b)
    assert got.dtype == dtype and got.flags.c_contiguous and got.shape == (shape[0], shape[2])
    close(got, R.matmul(a, b), dtype)
    np.testing.assert_array_equal(a, before[0])
    np.testing.assert_array_equal(b, before[1])


@pytest.mark.parametrize("layout", ["F", "transposed", "row slice", "column slice", "negative", "broadcast"])
def test_any_strides(layout, dtype, twin):
    rng = np.random.default_rng(1)
    big = rng.standard_normal((300, 260)).astype(dtype)
    a, b = {
        "F": (np.asfortranarray(big[:90, :70]), np.asfortranarray(big[:70, :120])),
        "transposed": (big[:70, :90].T, big[:120, :70].T),
        "row slice": (big[:90, 5:75], big[10:80, 100:220]),  # leading dimension larger than the row
        "column slice": (big[::3, :70], big[:70, ::2]),  # non-unit element stride: copied first
        "negative": (big[:90, :70][::-1], big[:70, :120][:, ::-1]),
        "broadcast": (np.broadcast_to(big[0, :70], (90, 70)), big[:70, :120]),
    }[layout]
    close(K.matmul(a, b), np.asarray(a) @ np.asarray(b), dtype)


def test_promotion_and_empty():
    a32 = np.ones((3, 4), np.float32)
    assert K.matmul(a32, np.ones((4, 2), np.float64)).dtype == np.float64
    assert K.matmul(np.arange(6).reshape(2, 3), np.ones((3, 1), np.float32)).dtype == np.float64
    np.testing.assert_array_equal(K.matmul(np.ones((3, 0), np.float32), np.ones((0, 2), np.float32)),
                                  np.zeros((3, 2), np.float32))
    assert K.matmul(np.ones((0, 4)), np.ones((4, 2))).shape == (0, 2)
    assert K.matmul(np.ones((3, 4)), np.ones((4, 0))).shape == (3, 0)


@pytest.mark.parametrize(("a", "b", "match"), [
    (np.ones(3), np.ones((3, 2)), r"matmul: a must be a 2-D array, got shape \(3,\)"),
    (np.ones((2, 3)), np.ones((2, 3, 1)), r"matmul: b must be a 2-D array"),
    (np.ones((2, 3)), np.ones((4, 2)), r"matmul: b must be 3 rows \(a has 3 columns\), got shape \(4, 2\)"),
    (np.ones((2, 3)), "x", r"matmul: b must be a NumPy array of floats"),
])
def test_bad_input(a, b, match):
    for impl in (K, R):
        with pytest.raises((ValueError, TypeError), match=match):
            impl.matmul(a, b)


@pytest.mark.skipif(not _blas.AVAILABLE, reason="numpy's bundled OpenBLAS is not available")
@pytest.mark.parametrize("shape", [(4320, 100, 100), (25, 9000, 30), (100, 100, 4320)])
def test_same_bits_with_one_or_two_threads(shape, monkeypatch):
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "0")
    monkeypatch.setattr(_jit, "_num_threads", None)
    a, b = _pair(shape, np.float32)
    np.testing.assert_array_equal(*with_one_and_two_threads(lambda: K.matmul(a, b), numba.set_num_threads))


@pytest.mark.skipif(not _blas.AVAILABLE, reason="numpy's bundled OpenBLAS is not available")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(120, 650, 2600), (333, 777, 555)])
def test_same_bits_with_one_or_two_threads_at_the_default_thresholds(shape, dtype):
    """Products above _THREAD_CUTS are cut by columns into one part per thread of the machine, also when one
    thread runs them: with one part then, the float64 columns at the two-part cut's edge (1296..1299 of 2600)
    were rounded otherwise."""
    M, Kd, N = shape
    assert M * N * Kd >= linalg._THREAD_CUTS and linalg._plan(M, N, Kd, 2)[0] == 1  # a column cut
    a, b = _pair(shape, dtype)
    np.testing.assert_array_equal(*with_one_and_two_threads(lambda: K.matmul(a, b)))


def test_plans():
    """The cut that re-packs least: the reduction of a small output, rows when b is the smaller operand to
    re-pack, columns when a is; a power of two of parts, never more than the size allows."""
    split, bounds = linalg._plan(25, 30, 57600)  # a convolution's weight gradient
    assert split == 2 and bounds[0] == 0 and bounds[-1] == 57600 and len(bounds) == linalg._PARTS + 1
    assert linalg._plan(4320, 100, 100)[0] == 0  # x.T @ dout of an affine layer: b (100, 100) is small
    assert linalg._plan(100, 4320, 100)[0] == 1  # dout @ W.T: a (100, 100) is small
    split, bounds = linalg._plan(100, 100, 784)  # x @ W of the book's MNIST MLP: a 100x100 output
    assert split == 2 and list(bounds) == [0, 392, 784]  # 784 // 256 = 3 parts, rounded down to 2
    assert list(linalg._plan(100, 100, 100)[1]) == [0, 50, 100]
    assert list(linalg._plan(3, 4, 5)[1]) == [0, 3]  # too small to cut: one part
    # rows or columns (bits unchanged by the cut): one part per thread; a reduction: _PARTS whatever the threads
    assert [len(linalg._plan(700, 10000, 650, t)[1]) - 1 for t in (1, 2, 3, 4, 8)] == [1, 2, 2, 4, 4]
    assert [len(linalg._plan(25, 30, 57600, t)[1]) - 1 for t in (1, 2)] == [linalg._PARTS] * 2


@pytest.mark.parametrize("shape", [(100, 4320, 100), (25, 9000, 30)], ids=["rows", "reduction"])
def test_without_the_bundled_blas(shape, monkeypatch):
    """numpy built against another BLAS: the kernel falls back to np.matmul, same results."""
    monkeypatch.setattr(_blas, "AVAILABLE", False)
    calls = []
    monkeypatch.setattr(linalg._gemm_parts, "run", lambda *a: calls.append(a))
    a, b = _pair(shape, np.float64)
    close(K.matmul(a, b), R.matmul(a, b), np.float64)
    assert calls == []


@pytest.mark.parametrize("layout", ["C", "F", "strided", "aliases a"])
@pytest.mark.parametrize("shape", [(67, 33, 131), (100, 4320, 100)], ids=["small", "cut"])
def test_out_is_written_in_any_layout(shape, layout, dtype, twin):
    """out= C-order (BLAS writes it), Fortran-order (written as out.T = b.T @ a.T: a tied weight's gradient),
    neither (computed, then copied), sharing memory with an operand (computed first): the product, returned."""
    a0, b = _pair(shape, dtype)
    M, Kd, N = shape
    buf = np.empty((M, max(Kd, N)), dtype)
    a = buf[:, :Kd] if layout == "aliases a" else a0
    out = {"C": np.empty((M, N), dtype), "F": np.empty((M, N), dtype, order="F"),
           "strided": np.empty((M, 2 * N), dtype)[:, ::2], "aliases a": buf[:, :N]}[layout]
    want = R.matmul(a0, b)
    for impl in (K, R):
        out[...] = np.nan
        buf[:, :Kd] = a0
        assert impl.matmul(a, b, out=out) is out
        close(out, want, dtype)
    if layout == "C":
        np.testing.assert_array_equal(K.matmul(a, b, out=out), K.matmul(a, b))  # the same plan: the same bits


@pytest.mark.parametrize(("out", "exc", "match"), [
    (np.empty((4, 2), np.float32), TypeError, r"matmul: out must be a float64 ndarray \(the result's dtype\)"),
    (np.empty((2, 4)), ValueError, r"matmul: out must be of shape \(4, 2\), got shape \(2, 4\)"),
    ([[0.0] * 2] * 4, TypeError, r"matmul: out must be a float64 ndarray"),
    (np.broadcast_to(np.zeros(2), (4, 2)), ValueError, "matmul: out must be writeable"),
], ids=["dtype", "shape", "list", "read-only"])
def test_out_bad_input_writes_nothing(out, exc, match):
    for impl in (K, R):
        before = np.array(out, copy=True)
        with pytest.raises(exc, match=match):
            impl.matmul(np.ones((4, 3)), np.ones((3, 2)), out=out)
        np.testing.assert_array_equal(np.asarray(out), before)


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in SHAPES])
def test_matmul_bias_matches_reference(shape, dtype, twin):
    """Every cut (rows, columns, the reduction: the bias goes into the first part's partial product) and the
    small products numpy makes; the bias broadcast along the rows."""
    a, b = _pair(shape, dtype)
    bias = np.random.default_rng(2).standard_normal(shape[2]).astype(dtype)
    before = a.copy(), b.copy(), bias.copy()
    got = K.matmul_bias(a, b, bias)
    assert got.dtype == dtype and got.flags.c_contiguous and got.shape == (shape[0], shape[2])
    close(got, R.matmul_bias(a, b, bias), dtype)
    np.testing.assert_array_equal(got, K.matmul(a, b) + bias)  # the bias in the parts changes no bit
    for arr, old in zip((a, b, bias), before, strict=True):
        np.testing.assert_array_equal(arr, old)


def test_matmul_bias_strides_promotion_and_empty():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((300, 260)).astype(np.float32)
    a, b, bias = big[:120, :90].T, big[100:220, 10:250:2], big[5, ::2][:120]  # transposed, strided
    close(K.matmul_bias(a, b, bias), np.asarray(a) @ b + bias, np.float32)
    assert K.matmul_bias(np.ones((3, 4), np.float32), np.ones((4, 2), np.float32), np.ones(2)).dtype == np.float64
    np.testing.assert_array_equal(K.matmul_bias(np.ones((3, 0)), np.ones((0, 2)), np.array([1.0, 2.0])),
                                  np.tile([1.0, 2.0], (3, 1)))
    assert K.matmul_bias(np.ones((0, 4)), np.ones((4, 2)), np.ones(2)).shape == (0, 2)


@pytest.mark.parametrize(("bias", "match"), [
    (np.ones(3), r"matmul_bias: bias must be of shape \(2,\) \(b has 2 columns\), got shape \(3,\)"),
    (np.ones((1, 2)), r"matmul_bias: bias must be of shape \(2,\)"),
    ("b", r"matmul_bias: bias must be a NumPy array of floats"),
])
def test_matmul_bias_bad_input(bias, match):
    for impl in (K, R):
        with pytest.raises((ValueError, TypeError), match=match):
            impl.matmul_bias(np.ones((4, 3)), np.ones((3, 2)), bias)
        with pytest.raises(ValueError, match=r"matmul_bias: b must be 3 rows"):
            impl.matmul_bias(np.ones((4, 3)), np.ones((2, 2)), np.ones(2))


# (M, N): one element, a row, a column, rows not a multiple of the 256-row block, the Transformer's bias gradients
SUM_SHAPES = [(1, 1), (1, 9), (700, 1), (257, 3), (513, 65), (4096, 384)]


@pytest.mark.parametrize("shape", SUM_SHAPES, ids=str)
def test_column_sum_matches_reference(shape, dtype, twin):
    a = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    got = K.column_sum(a)
    assert got.dtype == dtype and got.shape == (shape[1],)
    close(got, R.column_sum(a), dtype)
    close(K.column_sum(a[::-1, ::2]), R.column_sum(a[::-1, ::2]), dtype)  # any strides


def test_column_sum_edges_and_bad_input():
    np.testing.assert_array_equal(K.column_sum(np.ones((0, 3), np.float32)), np.zeros(3, np.float32))
    assert K.column_sum(np.ones((4, 0))).shape == (0,)
    assert K.column_sum(np.arange(6).reshape(3, 2)).dtype == np.float64
    np.testing.assert_array_equal(K.column_sum(np.arange(6).reshape(3, 2)), [6.0, 9.0])
    for impl in (K, R):
        with pytest.raises(ValueError, match=r"^column_sum: a must be 2-D"):
            impl.column_sum(np.ones(3))


@pytest.mark.parametrize("shape", [(4096, 384), (513, 65)], ids=str)
def test_column_sum_same_bits_with_one_or_two_threads(shape, monkeypatch):
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "0")
    monkeypatch.setattr(_jit, "_num_threads", None)
    a = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(*with_one_and_two_threads(lambda: K.column_sum(a), numba.set_num_threads))


@pytest.mark.parametrize("shape", [(1,), (3, 1, 5), (4096, 128), (257, 3, 3)], ids=str)
def test_add_into_matches_reference(shape, dtype, twin):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    want = R.add_into(a.copy(), b)
    got = K.add_into(a, b)
    assert got is a and got.dtype == dtype
    np.testing.assert_array_equal(got, want)  # one rounding per element, as numpy's


def test_add_into_strides_overlap_and_casts():
    base = np.arange(24.0).reshape(4, 6)
    a = base.copy()
    np.testing.assert_array_equal(K.add_into(a[:, ::2], a[:, 1::2]), base[:, ::2] + base[:, 1::2])
    a = base.copy()
    K.add_into(a[:, 1:], a[:, :-1])  # overlapping: numpy's buffered result
    want = base.copy()
    np.add(want[:, 1:], want[:, :-1], out=want[:, 1:])
    np.testing.assert_array_equal(a, want)
    a32 = np.ones(3, np.float32)
    assert K.add_into(a32, np.arange(3)) is a32 and a32.dtype == np.float32
    np.testing.assert_array_equal(a32, [1, 2, 3])


@pytest.mark.parametrize(("a", "b", "exc", "match"), [
    (np.ones(3, int), np.ones(3), TypeError, r"add_into: a must be a float32 or float64 ndarray \(updated in place\)"),
    (np.ones(3).view(), np.ones(4), ValueError, r"add_into: b must be of shape \(3,\) like a, got shape \(4,\)"),
    (np.broadcast_to(np.ones(1), (3,)), np.ones(3), ValueError, r"add_into: a must be writeable"),
    (np.ones(3), np.array(["x", "y", "z"]), TypeError, r"add_into: b must be a real numeric array"),
])
def test_add_into_bad_input(a, b, exc, match):
    for impl in (K, R):
        before = np.array(a)
        with pytest.raises(exc, match=match):
            impl.add_into(a, b)
        np.testing.assert_array_equal(a, before)

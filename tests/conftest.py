"""Shared test settings: tolerances per dtype, a fixture that runs every kernel on both of its twins, and one that
runs a test on one thread."""

from __future__ import annotations

import os
import pathlib

import numba
import numpy as np
import pytest
from hypothesis import settings

import fastnn

#: Tolerances for fastnn.kernels vs fastnn.reference. The kernels reorder sums (parallel chunks, vectorised
#: reductions), so results differ from the reference by rounding only.
TOL = {
    np.dtype(np.float32): {"rtol": 2e-5, "atol": 2e-6},
    np.dtype(np.float64): {"rtol": 1e-11, "atol": 1e-12},
}

#: Real MNIST files shared beside the project (absent outside this workplace: tests that need them skip).
SHARED_MNIST = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

# No compile worker processes (fastnn._compiling) unless a test asks for one: a net's first gradient on a cold cache
# would otherwise start one, and which test meets a cold cache depends on the order the tests run in.
os.environ.setdefault("FASTNN_COMPILE_WORKERS", "0")

# Hypothesis: a bounded number of examples in CI, many more for a long local run (FASTNN_FUZZ_EXAMPLES=5000).
settings.register_profile("ci", max_examples=int(os.environ.get("FASTNN_FUZZ_EXAMPLES", "60")), deadline=None,
                          derandomize=False, print_blob=True)
settings.load_profile("ci")


@pytest.fixture(params=["serial", "parallel"])
def twin(request, monkeypatch):
    """Run the test once with every kernel on its serial twin and once on its parallel twin."""
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "1000000000000" if request.param == "serial" else "0")
    return request.param


@pytest.fixture
def single_thread():
    """One thread for fastnn kernels and (when threadpoolctl is there) BLAS; the defaults again afterwards.

    On a 2-core machine shared with other jobs, Numba's and OpenBLAS's default pools together oversubscribe the
    cores (measured in tests/datasets/test_accuracy.py).
    """
    fastnn.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = None
    else:
        limits = threadpool_limits(limits=1, user_api="blas")
    try:
        yield
    finally:
        if limits is not None:
            limits.restore_original_limits()
        fastnn.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def with_one_and_two_threads(fn, set_threads=fastnn.set_num_threads):
    """(fn() with one thread, fn() with two): ``set_threads`` is fastnn's (1: the serial twins) or Numba's own
    (1: the parallel twins on one thread). The machine's count again afterwards, and fastnn's default."""
    from fastnn import _jit

    before = _jit._num_threads
    try:
        set_threads(1)
        one = fn()
        set_threads(2)
        return one, fn()
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        _jit._num_threads = before


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


def assert_close(actual, expected, dtype=None, **kw):
    """assert_allclose with the tolerance of ``dtype`` (default: expected's dtype) and an exact dtype check."""
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    dtype = np.dtype(dtype) if dtype is not None else expected.dtype
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    tol = dict(TOL[dtype])
    tol.update(kw)
    np.testing.assert_allclose(actual, expected, **tol)


@pytest.fixture
def counts(monkeypatch):
    """``{check name: calls}`` for every ``fastnn._checks.check_*`` function, counted while the test runs (the
    check-once tests: a layer path that has checked its inputs reaches none of them)."""
    import functools

    from fastnn import _checks

    seen: dict[str, int] = {}

    def counting(name, fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            seen[name] = seen.get(name, 0) + 1
            return fn(*args, **kwargs)

        return call

    for name in dir(_checks):
        if name.startswith("check_"):
            monkeypatch.setattr(_checks, name, counting(name, getattr(_checks, name)))
    return seen

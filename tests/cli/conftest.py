"""CLI tests run ``fastnn.__main__.main`` in this process, on one thread (fastnn kernels and BLAS).

On a 2-core machine shared with other jobs the two default thread pools oversubscribe the cores (see
tests/datasets/test_accuracy.py); the CLI's own ``--threads`` option is tested separately.
"""

from __future__ import annotations

import numba
import pytest

import fastnn


@pytest.fixture(autouse=True)
def single_thread():
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


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test reaches a public mirror or the user's cache."""
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "fastnn_data"))
    monkeypatch.setenv("FASTNN_MNIST_URLS", "http://127.0.0.1:9/nothing/")

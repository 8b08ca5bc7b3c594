"""CLI tests run ``fastnn.__main__.main`` in this process, on one thread (fastnn kernels and BLAS).

On a 2-core machine shared with other jobs the two default thread pools oversubscribe the cores (see
tests/datasets/test_accuracy.py); the CLI's own ``--threads`` option is tested separately.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every CLI test on one thread: the ``single_thread`` fixture of tests/conftest.py."""


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test reaches a public mirror or the user's cache."""
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "fastnn_data"))
    for name in ("MNIST", "TINYSHAKESPEARE", "PTB"):
        monkeypatch.setenv(f"FASTNN_{name}_URLS", "http://127.0.0.1:9/nothing/")

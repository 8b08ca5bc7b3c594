"""fastnn.backend: the one seam that switches every caller between fastnn.kernels and fastnn.reference."""

from __future__ import annotations

import threading

import pytest

import fastnn.kernels as K
import fastnn.reference as R
from fastnn import backend


def test_ops_holds_every_kernel_and_using_swaps_them_all():
    assert backend.current() == "kernels"
    assert all(getattr(backend.ops, name) is getattr(K, name) for name in K.__all__)
    with backend.using("reference") as ops:
        assert ops is backend.ops and backend.current() == "reference"
        assert all(getattr(ops, name) is getattr(R, name) for name in K.__all__)
        with backend.using("fastnn"):  # nests; the benchmarks' names work too
            assert backend.ops.conv2d_forward is K.conv2d_forward
        assert backend.ops.conv2d_forward is R.conv2d_forward
    assert all(getattr(backend.ops, name) is getattr(K, name) for name in K.__all__)


def test_restored_after_an_exception_and_bad_names_refused():
    with pytest.raises(RuntimeError), backend.using("numpy"):
        raise RuntimeError
    assert backend.current() == "kernels" and backend.ops.matmul is K.matmul
    for bad in ("torch", None, 1):
        with pytest.raises(ValueError, match="backend.using: name must be one of"):
            with backend.using(bad):
                pass
    assert backend.current() == "kernels"


def test_using_blocks_are_serialised_across_threads():
    inside = threading.Event()
    seen = []

    def other():
        inside.wait(10)
        with backend.using("kernels"):
            seen.append(backend.current())

    t = threading.Thread(target=other)
    t.start()
    with backend.using("reference"):
        inside.set()
        t.join(0.2)  # the other thread waits for this block to end
        assert t.is_alive() and backend.current() == "reference"
    t.join(10)
    assert seen == ["kernels"] and backend.current() == "kernels"

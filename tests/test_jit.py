"""fastnn._jit.SlotKernel: one compiled body, each slot run exactly once, on Python threads when there are several."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fastnn import _jit


def _record(slot, out, ids):
    out[slot] += slot + 1
    ids[slot] = 1


_RECORD = _jit.SlotKernel(_record, "window")


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_every_slot_runs_once(slots):
    out = np.zeros(slots)
    ids = np.zeros(slots, np.int64)
    _RECORD.run(slots, out, ids)
    np.testing.assert_array_equal(out, np.arange(1, slots + 1))
    np.testing.assert_array_equal(ids, np.ones(slots))
    assert _RECORD.serial is _RECORD.parallel  # one body: nothing else to compile or cache


def test_slots_run_on_other_threads_and_errors_reach_the_caller():
    seen = set()

    def body(slot, out):
        seen.add(threading.get_ident())
        if slot == 2:
            raise ValueError("slot 2")

    knl = _jit.SlotKernel(body, "window")
    knl.serial = knl.parallel = body  # plain Python stands in for the compiled body: the launch is under test
    with pytest.raises(ValueError, match="slot 2"):
        knl.run(3, None)
    assert threading.get_ident() in seen and len(seen) >= 2


def test_min_work_override_is_read_at_every_launch(monkeypatch):
    """FASTNN_PARALLEL_MIN_WORK set or removed at run time (as tests and ``fastnn warmup`` do) takes effect at
    once, through the fast environment read, in Kernel.use_parallel (which Kernel.run asks at every launch)."""
    from fastnn import config

    kern = _jit.Kernel(lambda a: a, "loss")
    monkeypatch.delenv("FASTNN_PARALLEL_MIN_WORK", raising=False)
    assert config.parallel_min_work("loss") == config.PARALLEL_MIN_WORK["loss"]
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "3")
    assert config.parallel_min_work("loss") == 3
    assert kern.use_parallel(3) == kern.use_parallel(config.PARALLEL_MIN_WORK["loss"])
    monkeypatch.delenv("FASTNN_PARALLEL_MIN_WORK")
    assert config.parallel_min_work("optimizer") == config.PARALLEL_MIN_WORK["optimizer"]
    assert not kern.use_parallel(3)


def test_run_sliced_runs_the_serial_body_on_one_slice_per_thread(monkeypatch):
    """Kernel.run_sliced: above the threshold, contiguous slices covering every element once, one per thread, on
    the slot threads; below it, the whole on this thread. The parallel twin is never compiled."""

    def body(x, out, k):
        out[:] += k * x  # plain Python stands in for the serial twin: the slicing is under test

    knl = _jit.Kernel(lambda x, out, k: None, "elementwise", nogil=True)
    knl.serial = body
    launches = []
    real = _jit.run_on_slots
    monkeypatch.setattr(_jit, "run_on_slots", lambda calls, concurrent: launches.append(len(calls)) or real(
        calls, concurrent))
    monkeypatch.setattr(knl, "threads", lambda work: 3 if work >= 10 else 1)
    for n, slices in [(11, [3]), (4, [])]:
        x, out = np.arange(n, dtype=np.float32), np.ones(n, np.float32)
        launches.clear()
        knl.run_sliced((x, out), (np.float32(2),))
        np.testing.assert_array_equal(out, 1 + 2 * x)  # each element once
        assert launches == slices
    assert knl.parallel.signatures == []

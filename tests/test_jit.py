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

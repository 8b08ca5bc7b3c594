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


def _claiming(slot, counter, seen, owner):
    while True:
        i = _jit.claim(counter)
        if i >= seen.shape[0]:
            break
        seen[i] += 1
        owner[i] = slot


_CLAIMING = _jit.SlotKernel(_claiming, "window")


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_claim_hands_out_each_index_once(slots):
    """Slots that take work from a shared counter (``claim``): every index is taken by exactly one slot, and the
    counter ends past the last one (each slot's failed claim included)."""
    counter = np.zeros(1, np.int64)
    seen = np.zeros(1000, np.int64)
    owner = np.full(1000, -1, np.int64)
    _CLAIMING.run(slots, counter, seen, owner)
    np.testing.assert_array_equal(seen, np.ones(1000))
    assert owner.min() >= 0 and owner.max() < slots
    assert counter[0] == 1000 + slots


def test_claiming_slots_not_started_are_skipped():
    """With ``claims``, slots whose thread has not started when slot 0 returns (here: every pool thread busy) are
    cancelled rather than waited for; slot 0 has taken all the work."""
    pool = _jit._slot_pool()
    release = threading.Event()
    blockers = [pool.submit(release.wait, 10) for _ in range(pool._max_workers)]
    ran = []

    def body(slot, work):
        ran.append(slot)
        while work:
            work.pop()

    knl = _jit.SlotKernel(body, "window", claims=True)
    knl.serial = knl.parallel = body  # plain Python stands in for the compiled body: the launch is under test
    work = list(range(100))
    try:
        knl.run(3, work)
    finally:
        release.set()
        for b in blockers:
            b.result()
    assert ran == [0] and not work

"""fastnn called from several Python threads at once (a thread pool doing inference).

8 threads x 20 calls, each call a mix of kernels on its own input: the inference mix (a convolution, a max pool
forward and backward, a batch-norm inference, a ReLU) or the sequence mix (the RNN's, LSTM's and GRU's forward and
backward, whose LSTM cuts its batch into row parts run on fastnn's slot pool and kept in per-thread workspaces; the
embedding, the time-step loss and the gradient clipping). Every result must equal, bit for bit, the result of the
same call made from one thread.
Run on the serial and the parallel twins with the default threading layer (``omp`` here), and in a child process
with ``NUMBA_THREADING_LAYER=workqueue``, where :mod:`fastnn._jit` serialises parallel launches. A control shows
that without that lock ``workqueue`` aborts the process.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastnn

from ._subproc import run_python
from ._workloads import INFERENCE, SEQUENCE, compute

THREADS = 8
CALLS_PER_THREAD = 20


def _pool_matches_single_thread(mix: tuple[str, ...] = INFERENCE) -> str:
    """Run the pool on the kernels of ``mix`` and compare; return the threading layer seen."""
    seeds = list(range(THREADS * CALLS_PER_THREAD))
    expected = {s: compute(s, mix) for s in seeds}
    start = threading.Barrier(THREADS)

    def task(chunk):
        start.wait()  # all threads enter the kernels together
        return [(s, compute(s, mix)) for s in chunk]

    chunks = [seeds[i::THREADS] for i in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        results = [r for part in pool.map(task, chunks) for r in part]
    assert len(results) == len(seeds)
    for s, got in results:
        assert set(got) == set(expected[s])
        for k, v in got.items():
            np.testing.assert_array_equal(v, expected[s][k], err_msg=f"seed {s}, {k}")
    return fastnn.threading_layer()


@pytest.mark.parametrize("mix", [INFERENCE, SEQUENCE], ids=["inference", "sequence"])
def test_thread_pool_matches_single_thread(twin, mix):
    layer = _pool_matches_single_thread(mix)
    if twin == "parallel":
        assert layer in ("omp", "tbb", "workqueue")


_POOL_SCRIPT = """
import os
os.environ["FASTNN_PARALLEL_MIN_WORK"] = "0"
import fastnn
from tests.robustness.test_threads import _pool_matches_single_thread, INFERENCE, SEQUENCE
print("layer", _pool_matches_single_thread(INFERENCE), _pool_matches_single_thread(SEQUENCE))
"""


def test_workqueue_layer_thread_pool_does_not_abort():
    proc = run_python(_POOL_SCRIPT, env={"NUMBA_THREADING_LAYER": "workqueue"}, timeout=300)
    assert proc.stdout.split() == ["layer", "workqueue", "workqueue"], proc.stdout


_UNGUARDED = """
import threading, time
import numpy as np
import fastnn.kernels.activations as A
x = np.ones(1 << 16, np.float32)
start = threading.Barrier(8)
def hammer():
    start.wait()
    end = time.perf_counter() + 20
    while time.perf_counter() < end:
        out = np.empty_like(x)
        A._relu_fwd.parallel(x, out)  # straight to Numba: no fastnn lock
threads = [threading.Thread(target=hammer) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("survived")
"""


def test_control_unguarded_workqueue_launches_abort():
    """Why the lock exists: the same concurrency without it kills the process."""
    proc = run_python(_UNGUARDED, env={"NUMBA_THREADING_LAYER": "workqueue"}, timeout=120, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "survived" not in proc.stdout
    assert "Concurrent access has been detected" in proc.stderr, proc.stderr[-2000:]


def test_set_num_threads_from_one_thread_applies_in_others():
    """The count set in the main thread is used by launches from a new thread (Numba's own is per-thread)."""
    code = """
    import threading, numba, numpy as np
    from numba import prange
    import fastnn
    from fastnn._jit import kernel

    @kernel("elementwise")
    def record(ids, counts):
        for i in prange(ids.shape[0]):
            ids[i] = numba.get_thread_id()
            counts[i] = numba.get_num_threads()

    fastnn.set_num_threads(3)
    seen = {}
    def launch():
        ids = np.full(4096, -1, np.int64); counts = np.zeros(4096, np.int64)
        record.run(1 << 40, ids, counts)
        seen["max_id"], seen["counts"] = int(ids.max()), sorted(set(counts.tolist()))
    t = threading.Thread(target=launch); t.start(); t.join()
    print(seen["max_id"], seen["counts"], fastnn.get_num_threads())
    """
    proc = run_python(code, env={"NUMBA_NUM_THREADS": "4"}, timeout=180)
    assert proc.stdout.split() == ["2", "[3]", "3"], proc.stdout


@pytest.mark.parametrize("n", [0, 3, -1, True, 1.0, "2"])
def test_set_num_threads_refuses_bad_counts(n):
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    bad = n if not (isinstance(n, int) and n == 3) else limit + 1
    with pytest.raises(ValueError, match=rf"^set_num_threads: n must be an int in \[1, {limit}\], got "):
        fastnn.set_num_threads(bad)

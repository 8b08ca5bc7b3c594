"""fastnn in child processes: ``fork`` after the parent ran parallel kernels, and ``spawn``.

Each scenario runs in a fresh interpreter (so the parent's threading state is exactly the one described) with a
timeout: a hang fails the test instead of blocking CI. Pools of 2 workers compute the whole kernel mix of
:func:`tests.robustness._workloads.compute` on 4 seeds and send the results back; they must match the parent's.
A forked child of an OpenMP parent runs serial twins, whose sums may be grouped differently from the parallel
twins' (measured: conv ``db`` and the Adam update, float32, within 2e-7 relative), so those comparisons use the
float32 tolerance; everything else, and every spawned child, must agree bit for bit.
"""

from __future__ import annotations

import numba

from ._subproc import run_python

_N = numba.config.NUMBA_NUM_THREADS  # a child's threads after set_num_threads(all) when it may run parallel

_POOL = """
import os, sys, multiprocessing as mp
import numpy as np
os.environ["FASTNN_PARALLEL_MIN_WORK"] = "0"
import fastnn
from fastnn import _jit
from tests.robustness import _workloads as W

def close(a, b, exact):
    if exact:
        return np.array_equal(a, b, equal_nan=True)
    return np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=2e-5, atol=2e-6)

if __name__ == "__main__":
    method, warm = METHOD, WARM
    seeds = [0, 1, 2, 3]
    if warm == "kernels":
        expected = {s: W.compute(s) for s in seeds}   # parallel twins: Numba's OpenMP pool starts here
    else:
        fastnn.set_num_threads(2)                       # starts the pool without any fastnn kernel
        expected = None
    print("parent layer", _jit.threading_layer())
    with mp.get_context(method).Pool(2) as pool:
        out = pool.map_async(W.worker_env, seeds).get(timeout=200)
    if expected is None:
        expected = {s: W.compute(s) for s in seeds}
    exact = method != "fork"
    bad = [(s, k) for s, (res, _) in zip(seeds, out) for k in expected[s]
           if not close(res[k], expected[s][k], exact)]
    infos = sorted({(str(i["parallel_allowed"]), str(i["layer"]), i["threads"]) for _, i in out})
    print("children", infos)
    print("mismatches", bad)
"""


def _run(method: str, warm: str, layer: str | None = None) -> list[str]:
    env = {"NUMBA_THREADING_LAYER": layer} if layer else {}
    code = _POOL.replace("METHOD, WARM", f"{method!r}, {warm!r}")
    proc = run_python(code, env=env, timeout=300)
    return proc.stdout.splitlines()


def test_fork_after_parallel_kernels_runs_serial_twins_and_matches():
    lines = _run("fork", "kernels")
    assert lines == ["parent layer omp", "children [('False', 'omp', 1)]", "mismatches []"], lines


def test_fork_after_set_num_threads_alone_is_safe():
    """The OpenMP pool started by set_num_threads (no fastnn kernel yet) must also keep children serial."""
    lines = _run("fork", "set_num_threads")
    assert lines == ["parent layer omp", "children [('False', 'omp', 1)]", "mismatches []"], lines


def test_fork_with_workqueue_parent_keeps_parallel_twins():
    lines = _run("fork", "kernels", layer="workqueue")
    assert lines == ["parent layer workqueue", f"children [('True', 'workqueue', {_N})]", "mismatches []"], lines


def test_spawn_children_run_parallel_and_match_bit_for_bit():
    lines = _run("spawn", "kernels")
    assert lines == ["parent layer omp", f"children [('True', 'omp', {_N})]", "mismatches []"], lines


_UNGUARDED_FORK = """
import multiprocessing as mp, numpy as np, os
os.environ["FASTNN_PARALLEL_MIN_WORK"] = "0"
import fastnn.kernels as K
import fastnn.kernels.activations as A
K.relu_forward(np.ones(10, np.float32))  # the parent's OpenMP pool starts

def child():
    x = np.ones(1 << 16, np.float32)
    A._relu_fwd.parallel(x, np.empty_like(x))  # straight to Numba: no fastnn guard
    print("child survived", flush=True)

if __name__ == "__main__":
    p = mp.get_context("fork").Process(target=child)
    p.start(); p.join(120)
    print("exitcode", p.exitcode)
"""


def test_control_unguarded_parallel_launch_in_forked_child_is_killed():
    """Why children go serial: Numba terminates a forked child's first OpenMP launch."""
    proc = run_python(_UNGUARDED_FORK, env={"NUMBA_THREADING_LAYER": "omp"}, timeout=180)
    assert "child survived" not in proc.stdout
    code = int(proc.stdout.split("exitcode")[-1])
    assert code != 0, proc.stdout
    assert "fork() called from a process already using GNU OpenMP" in proc.stderr, proc.stderr[-2000:]

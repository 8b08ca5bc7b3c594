"""fastnn.cli._compiling: compilations are counted as Numba does them, and the demo keeps them out of its timings."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import numba
import numpy as np
import pytest

from fastnn.cli import _compiling


def test_counts_compilations_not_cache_loads_or_calls():
    @numba.njit(cache=False)
    def helper(v):
        return v + 1.0

    @numba.njit(cache=False)
    def kernel(a):
        return helper(a[0])  # compiles helper inside kernel's compilation: one kernel, counted once

    stream = io.StringIO()
    with _compiling.watch(show=True, stream=stream) as done:
        kernel(np.ones(3))
        kernel(np.ones(3))  # compiled already: not counted
    assert done.count == 1 and done.seconds > 0
    assert stream.getvalue() == _compiling.NOTICE + "\n"  # not a terminal: the notice, no bar
    with _compiling.watch(show=True, stream=stream) as again:
        kernel(np.ones(4))
    assert again.count == 0 and again.seconds == 0.0 and stream.getvalue() == _compiling.NOTICE + "\n"
    with _compiling.watch() as float32:
        kernel(np.ones(3, np.float32))  # a new signature is a new compilation
    assert float32.count == 1


def test_listener_removed_after_an_error():
    with pytest.raises(RuntimeError), _compiling.watch() as done:
        raise RuntimeError

    @numba.njit(cache=False)
    def f(x):
        return x * 2

    f(1.0)
    assert done.count == 0


def test_first_demo_run_says_it_compiles_and_times_training_without_it(tmp_path):
    """A fresh process with an empty Numba cache: the notice, the compiled count, and a training time that is
    a small part of the wall time; a second run loads everything from the cache."""
    pytest.importorskip("sklearn")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "fastnn", "demo", "--epochs", "1", "--compare-steps", "1", "--no-plot",
           "--out", str(tmp_path), "--threads", "1"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert _compiling.NOTICE in out
    compiled = re.search(r"kernels: (\d+) compiled in ([0-9.]+) s", out)
    assert compiled and int(compiled[1]) >= 1, out  # the others may come from the compile worker's cache entries
    training = float(re.search(r"training: \d+ steps in ([0-9.]+) s", out)[1])
    wall = float(re.search(r"wall time: ([0-9.]+) s", out)[1])
    assert training < float(compiled[2]) < wall  # compilation is reported, and not inside the training time
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "kernels: loaded from the on-disk cache" in second.stdout and _compiling.NOTICE not in second.stdout

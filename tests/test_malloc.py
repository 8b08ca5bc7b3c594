"""fastnn._malloc: glibc's mmap and trim thresholds, set when the kernels load; each case in a new interpreter
(malloc's state is the process's)."""

from __future__ import annotations

import json

import pytest

from fastnn import _malloc
from tests.robustness._subproc import run_python

_GLIBC = pytest.mark.skipif(not _malloc._glibc(), reason="mallopt is glibc's")

# 30 arrays of 1 MB allocated, written and freed, 6 times: with glibc's defaults, each round's 30 MB free at the
# top of the heap goes back to the kernel and the next round faults it in again; with the thresholds it stays
_CHURN = """
import json, resource
import numpy as np
from fastnn import _jit

def churn():
    arrays = [np.ones(1 << 17) for _ in range(30)]
    del arrays

churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": _jit.MALLOC_TUNED, "faults": faults}))
"""


@pytest.fixture(autouse=True)
def _no_malloc_settings(monkeypatch):
    """The child inherits the parent's environment: none of the settings fastnn defers to (another test, Dask's
    worker spawning, may have left one)."""
    for name in (*_malloc._USER_SETTINGS, "GLIBC_TUNABLES", "FASTNN_MALLOC_TUNING"):
        monkeypatch.delenv(name, raising=False)


def _churn(**env):
    return json.loads(run_python(_CHURN, env=env).stdout)


@_GLIBC
def test_a_training_loops_arrays_stay_with_the_process():
    tuned = _churn()
    assert tuned["tuned"] is True
    assert tuned["faults"] < 500, tuned  # (a few for Python's own objects)
    untuned = _churn(FASTNN_MALLOC_TUNING="0")
    assert untuned["tuned"] is False
    assert untuned["faults"] > 5 * 7680 // 2, untuned  # 5 rounds of 30 MB in 4 KB pages, at least half of them


@_GLIBC
@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "131072"}, {"GLIBC_TUNABLES": "glibc.malloc.top_pad=0"}])
def test_the_users_malloc_settings_win(env):
    assert _churn(**env)["tuned"] is False


def test_other_c_libraries_are_not_touched(monkeypatch):
    def no_libc(*args):
        raise AssertionError("mallopt looked up")

    monkeypatch.setattr(_malloc.ctypes, "CDLL", no_libc)
    monkeypatch.setattr(_malloc, "_glibc", lambda: False)
    assert _malloc.tune() is False

"""The kernel test modules again, with Numba's bounds checking on: no kernel indexes outside an array.

Compiled kernels trust their inputs and do not check indices, so an off-by-one in a window span or a chunk
boundary reads or writes memory it does not own, usually without any visible error. ``NUMBA_BOUNDSCHECK=1``
makes every such access raise ``IndexError``. The child compiles into an empty ``NUMBA_CACHE_DIR`` (no unchecked
build can be loaded; fastnn also keys its cache entries on the flag, see the control below).

Runtime: the full ``tests/kernels`` (about 2500 tests, both dtypes and twins) took 7 minutes here, nearly all of
it compilation. The subset run in CI keeps every kernel and every geometry of the reference comparisons,
layouts, padding, empty batches and the Hypothesis geometry tests, in float64 on the serial twins (the parallel
twin is compiled from the same body, so its indices are the same): ~400 tests, 110 s on the 2 loaded cores. The
twin comparisons of the recurrent kernels (every LSTM layout, both GRU forms, strided inputs, the LSTM's batch
cut), of attention and of the normalization zoo joined it later: ~790 tests, 80 s here on a quiet machine.
It found a real out-of-bounds write in ``im2col`` (windows lying wholly in the padding) while that kernel was
being written.
"""

from __future__ import annotations

import re

from ._subproc import ROOT, run_python

SUBSET = ("not f32 and not float32 and serial and (matches_reference or random_geometry or non_contiguous or "
          "noncontiguous or padding or empty or chunks or special or filter_gradient or matches_twin or match_twin "
          "or batch_cut)")


def test_kernel_tests_pass_with_bounds_checking(tmp_path):
    code = f"""
    import sys, pytest
    sys.exit(pytest.main(["tests/kernels", "-q", "-p", "no:cacheprovider", "-k", {SUBSET!r}]))
    """
    proc = run_python(code, env={"NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}, cwd=ROOT,
                      timeout=900, check=False)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    m = re.search(r"(\d+) passed", summary)
    assert m and int(m.group(1)) >= 750 and "failed" not in summary and "error" not in summary, summary


_OOB_MODULE = '''
import numpy as np
from numba import prange
from fastnn._jit import kernel


@kernel("elementwise")
def off_by_one(x, out):
    for i in prange(out.shape[0]):
        out[i] = x[i + 1]  # reads one element past the end of x on the last iteration
'''


def test_control_cached_unchecked_build_is_not_reused_with_bounds_checking(tmp_path):
    """An off-by-one kernel cached without checks must raise once NUMBA_BOUNDSCHECK=1, same cache directory."""
    (tmp_path / "oob_kernel.py").write_text(_OOB_MODULE)
    code = """
    import numpy as np
    from oob_kernel import off_by_one
    x = np.arange(8.0)
    try:
        off_by_one.serial(x, np.empty(8))
        print("no error")
    except IndexError as e:
        print("IndexError", e)
    print("hits", sum(off_by_one.serial.stats.cache_hits.values()))
    """
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    first = run_python(code, env=env, cwd=tmp_path, timeout=180).stdout.split()
    cached = run_python(code, env=env, cwd=tmp_path, timeout=180).stdout.split()
    checked = run_python(code, env={**env, "NUMBA_BOUNDSCHECK": "1"}, cwd=tmp_path, timeout=180).stdout.split()
    assert first == ["no", "error", "hits", "0"]  # unchecked: silently reads past the end
    assert cached == ["no", "error", "hits", "1"]  # the cache works
    assert checked[0] == "IndexError" and checked[-2:] == ["hits", "0"], checked


def test_explicit_vector_loads_and_stores_are_checked_too(tmp_path):
    """fastnn.kernels._simd's loads and stores touch a run of a row at once: checked like an element (the row,
    the first and the last column touched), a part of no lanes at the row's end not at all."""
    code = """
    import numba
    import numpy as np
    from fastnn.kernels import _simd as simd

    @numba.njit
    def load(x, i, j, n):
        return simd.hsum(simd.load(x, i, j) if n == 16 else simd.load_part(x, i, j, n, np.float32(0)))

    @numba.njit
    def store(x, i, j, n):
        v = simd.splat(np.float32(1))
        if n == 16:
            simd.store(x, i, j, v)
        else:
            simd.store_part(x, i, j, v, n)

    x = np.zeros((2, 32), np.float32)
    for f in (load, store):
        for i, j, n in ((1, 16, 16), (0, 28, 4), (0, 32, 0), (0, 17, 16), (2, 0, 16), (0, -1, 16), (1, 30, 3)):
            try:
                f(x, i, j, n)
                print("ok", end=" ")
            except IndexError:
                print("IndexError", end=" ")
        print()
    """
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_BOUNDSCHECK": "1"}
    checked = run_python(code, env=env, cwd=ROOT, timeout=180).stdout.splitlines()
    assert checked == ["ok ok ok IndexError IndexError IndexError IndexError "] * 2, checked

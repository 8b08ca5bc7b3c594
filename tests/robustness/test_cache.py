"""Numba's on-disk cache under hostile conditions, each case in fresh interpreters on a copy of the package.

(a) read-only package, no writable cache directory anywhere: ``import fastnn`` works, kernels are compiled in
memory, results are right and nothing is written; (b) a helper edited in one module after its users in another
module were cached: the users are recompiled, unrelated kernels still load from the cache; (c) several processes
compiling into one empty cache at once (float32 and float64 signatures of the same functions): all right, and a
later process loads everything from the cache; (d) a corrupt cache costs a recompilation, not an error.

Children compute :func:`tests.robustness._workloads.compute` on small inputs (serial twins) and save the
results; they must equal the same computation in this process bit for bit (same code, same machine).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from ._subproc import ROOT, run_python
from ._workloads import compute

WHICH = ("relu", "maxpool", "softmax_ce")
_PACKAGE = ROOT / "fastnn"

_CHILD = """
import sys, json
import numpy as np
import fastnn, fastnn.kernels
from fastnn import _jit
from tests.robustness._workloads import compute
assert fastnn.__file__.startswith(PKG_ROOT), fastnn.__file__
results = {}
for dtype in DTYPES:
    for k, v in compute(7, WHICH, dtype=np.dtype(dtype)).items():
        results[f"{dtype}/{k}"] = v
results["softmax"] = fastnn.kernels.softmax_forward(np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4))
results["sigmoid"] = fastnn.kernels.sigmoid_forward(np.linspace(-3, 3, 12, dtype=np.float32))
np.savez(OUT, **results)

def dispatchers():
    mods = [m for name, m in sorted(sys.modules.items()) if name.startswith("fastnn.kernels.")]
    for m in mods:
        for obj in vars(m).values():
            if isinstance(obj, _jit.Kernel):
                yield f"{m.__name__}.{obj.__name__}", obj.serial
            elif hasattr(obj, "stats") and hasattr(obj, "py_func"):
                yield f"{m.__name__}.{obj.py_func.__name__}", obj

stats = {"caches": sorted({type(d._cache).__name__ for _, d in dispatchers()}), "hits": {}, "misses": {}}
for name, d in dispatchers():
    h, m = sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())
    if h: stats["hits"][name] = h
    if m: stats["misses"][name] = m
print(json.dumps(stats))
"""


def _child(out: pathlib.Path, pkg_root: pathlib.Path, dtypes=("float32",), which=WHICH) -> str:
    return (_CHILD.replace("PKG_ROOT", repr(str(pkg_root))).replace("DTYPES", repr(tuple(dtypes)))
            .replace("WHICH", repr(tuple(which))).replace("OUT", repr(str(out))))


def _expected(dtypes=("float32",)) -> dict[str, np.ndarray]:
    import fastnn.kernels as K

    exp = {f"{dt}/{k}": v for dt in dtypes for k, v in compute(7, WHICH, dtype=np.dtype(dt)).items()}
    exp["softmax"] = K.softmax_forward(np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4))
    exp["sigmoid"] = K.sigmoid_forward(np.linspace(-3, 3, 12, dtype=np.float32))
    return exp


def _load(path: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def _stats(stdout: str) -> dict:
    import json

    return json.loads(stdout.strip().splitlines()[-1])


def _copy_package(dest: pathlib.Path) -> pathlib.Path:
    """A copy of the fastnn package under ``dest/site`` without any cache; returns the site directory."""
    site = dest / "site"
    shutil.copytree(_PACKAGE, site / "fastnn", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return site


def _cache_files(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc"))


def test_read_only_package_without_writable_cache_dir(tmp_path):
    site = _copy_package(tmp_path)
    for d in [site / "fastnn", *(p for p in (site / "fastnn").rglob("*") if p.is_dir())]:
        (d / "__pycache__").write_text("a file where Numba and Python want a directory\n")  # stops root as well
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    for p in sorted((site / "fastnn").rglob("*"), reverse=True):
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    (site / "fastnn").chmod(0o555)
    out = tmp_path / "out.npz"
    env = {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "NUMBA_CACHE_DIR": str(blocker / "numba"),
           "HOME": str(blocker / "home"), "XDG_CACHE_HOME": str(blocker / "xdg")}
    try:
        proc = run_python(_child(out, site), env=env, cwd=tmp_path, timeout=300)
        stats = _stats(proc.stdout)
        assert stats["caches"] == ["NullCache"], stats  # compiled in memory, no cache object at all
        assert stats["hits"] == {}
        _assert_same(_load(out), _expected())
        assert _cache_files(tmp_path) == []
    finally:
        for p in [site, *site.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)


_DOUBLED_DIVISION = '''

# appended by tests/robustness/test_cache.py: the division helper every kernel imports now doubles
def _doubled_division(a, b):
    return (a + a) / b


_fdiv = _njit(_doubled_division, error_model="numpy", fastmath=set(config.FASTMATH))
'''


def test_helper_edited_in_another_module_invalidates_its_users(tmp_path):
    """losses' softmax inlines _math._fdiv: editing _math.py must recompile it, not reuse it."""
    losses = (_PACKAGE / "kernels" / "losses.py").read_text()
    assert "_fdiv" in losses and "from ._math import" in losses  # the dependency this test relies on
    site = _copy_package(tmp_path)
    cache = tmp_path / "cache"
    env = {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "NUMBA_CACHE_DIR": str(cache)}
    run_python(_child(tmp_path / "warm.npz", site), env=env, cwd=tmp_path, timeout=300)
    warm = _load(tmp_path / "warm.npz")
    _assert_same(warm, _expected())

    with open(site / "fastnn" / "kernels" / "_math.py", "a") as f:
        f.write(_DOUBLED_DIVISION)
    proc = run_python(_child(tmp_path / "after.npz", site), env=env, cwd=tmp_path, timeout=300)
    stats = _stats(proc.stdout)
    run_python(_child(tmp_path / "fresh.npz", site), env={**env, "FASTNN_NUMBA_CACHE": "0"}, cwd=tmp_path,
               timeout=300)
    after, fresh = _load(tmp_path / "after.npz"), _load(tmp_path / "fresh.npz")

    _assert_same(after, fresh)  # the cached build computes what the edited source computes
    np.testing.assert_allclose(fresh["softmax"], 2 * warm["softmax"], rtol=1e-6)  # the edit did change softmax
    np.testing.assert_array_equal(after["float32/maxpool"], warm["float32/maxpool"])
    # kernels that do not import _math were not recompiled
    assert any(name.startswith("fastnn.kernels.pooling.") for name in stats["hits"]), stats
    assert not any(name.startswith("fastnn.kernels.pooling.") for name in stats["misses"]), stats
    assert any(name.startswith("fastnn.kernels.losses.") for name in stats["misses"]), stats


def test_concurrent_first_use_then_cached_load(tmp_path):
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    workers = [("float32",), ("float64",), ("float32", "float64"), ("float64", "float32")]
    procs = []
    for i, dtypes in enumerate(workers):  # all start before any finishes: they compile into the empty cache together
        code = _child(tmp_path / f"w{i}.npz", ROOT, dtypes)
        full = {k: v for k, v in os.environ.items() if not k.startswith(("FASTNN_", "NUMBA_"))}
        full.update(env, PYTHONPATH=str(ROOT))
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=full, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        for p in procs:
            out, err = p.communicate(timeout=400)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, dtypes in enumerate(workers):
        _assert_same(_load(tmp_path / f"w{i}.npz"), _expected(dtypes))
    assert len(_cache_files(cache)) > 0

    proc = run_python(_child(tmp_path / "late.npz", ROOT, ("float32", "float64")), env=env, cwd=tmp_path,
                      timeout=300)
    stats = _stats(proc.stdout)
    _assert_same(_load(tmp_path / "late.npz"), _expected(("float32", "float64")))
    assert stats["misses"] == {}, stats  # everything came from the cache the four wrote together
    assert len(stats["hits"]) >= 5, stats


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_cache_costs_a_recompile_not_an_error(tmp_path, damage):
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    run_python(_child(tmp_path / "warm.npz", ROOT), env=env, cwd=tmp_path, timeout=300)
    files = _cache_files(cache)
    assert files
    for f in files:
        data = f.read_bytes()
        f.write_bytes(b"\x80\x04garbage" * 7 if damage == "garbage" else data[: len(data) // 2])
    proc = run_python(_child(tmp_path / "again.npz", ROOT), env=env, cwd=tmp_path, timeout=300)
    _assert_same(_load(tmp_path / "again.npz"), _expected())
    assert _stats(proc.stdout)["misses"], "the damaged entries must have been recompiled"


_TWINS_CHILD = """
import numpy as np
import fastnn.kernels.recurrent as R
from fastnn.kernels._tile import panels_shape
rng = np.random.default_rng(0)
N, T, H, f = 3, 2, 128, np.float32
u = lambda *s: rng.uniform(0.05, 0.95, s).astype(f)  # gate activations, states
one, ec, coefs = R._consts(np.dtype(f))
bounds = np.array([0, 64, H], np.int64)  # two parts, as two threads run them
dA, dh, dc = np.zeros((N, T, 4 * H), f), np.zeros((N, H), f), u(N, H)
R._lstm_bwd.parallel(dA, u(N, T, H), dh, dc, u(N, T, H), u(N, T, H), u(N, H), u(N, T, 4 * H), u(H, 4 * H) - f(0.5),
                     np.empty(panels_shape(4 * H, H, 1), f), 0, H, 2 * H, 3 * H, bounds, one, ec, coefs,
                     u(N, T, 1), u(1, 4 * H), u(N, T, H), np.empty((N, T, 1), f), np.empty((1, 4 * H), f),
                     np.empty((H, 4 * H), f), False)  # no products after the recurrence (the unit cut's)
rows = np.array([0, 1, N], np.int64)  # the batch cut of a large Wh (here a small one: the same code)
acts_r, hs_r, cs_r = u(N, T, 4 * H) - f(0.5), np.empty((N, T, H), f), np.empty((N, T, H), f)
R._lstm_fwd_rows.parallel(acts_r, hs_r, cs_r, u(N, H), u(N, H), u(H, 4 * H) - f(0.5),
                          np.empty(panels_shape(H, H, 4), f), u(4 * H), 0, H, 2 * H, 3 * H, rows, one, ec, coefs)
dA_r, dh_r, dc_r = np.zeros((N, T, 4 * H), f), np.zeros((N, H), f), u(N, H)
R._lstm_bwd_rows.parallel(dA_r, u(N, T, H), dh_r, dc_r, hs_r, cs_r, u(N, H), acts_r, u(H, 4 * H) - f(0.5),
                          np.empty(panels_shape(4 * H, H, 1), f), 0, H, 2 * H, 3 * H, rows, one, ec, coefs)
dG, dhg = np.zeros((N, T, 3 * H), f), np.zeros((N, H), f)
R._gru_dlfs2_bwd.parallel(dG, u(N, T, H), dhg, np.empty((N, H), f), np.empty((N, H), f), u(N, T, H), u(N, H),
                          u(N, T, 3 * H), u(H, 3 * H) - f(0.5), bounds, one)
np.savez(OUT, lstm_dA=dA, lstm_dh=dh, lstm_dc=dc, gru_dA=dG, gru_dh=dhg, rows_hs=hs_r, rows_cs=cs_r, rows_dA=dA_r,
         rows_dh=dh_r, rows_dc=dc_r)
"""


def test_parallel_twins_loaded_from_the_cache_give_the_compiled_bits(tmp_path):
    """A parallel twin's loop body runs as Numba compiled it in the compiling process, and as a second,
    re-optimised copy in every process that loads the twin from the cache; with ``reassoc`` (and, in the GRU,
    ``contract``) LLVM rounded the two differently: a first run's LSTM and GRU gradients were ~1 ulp off later
    runs'. The process that compiles and the one that loads must give the same bits."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    for run in ("cold", "warm"):
        run_python(_TWINS_CHILD.replace("OUT", repr(str(tmp_path / f"{run}.npz"))), env=env, cwd=tmp_path,
                   timeout=300)
    _assert_same(_load(tmp_path / "warm.npz"), _load(tmp_path / "cold.npz"))

"""fastnn._compiling: compilations are counted as Numba does them, and the demo keeps them out of its timings."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time

import numba
import numpy as np
import pytest

from fastnn import _compiling
from fastnn.nets import MultiLayerNet


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


# -- the compile worker a net's first gradient starts on a cold cache ----------------------------------------------


def _cold() -> None:
    """Compile a new function: stands for a forward that meets a cold cache (a compilation event)."""
    numba.njit(cache=False)(lambda v: v + 1)(1)


class _ColdNet(MultiLayerNet):
    """A net whose forward always compiles something, as on a cold cache (module level: it pickles)."""

    def loss(self, x, t, train_flg=False):
        _cold()
        return super().loss(x, t, train_flg)


def _net(cls=MultiLayerNet):
    return cls(input_size=6, hidden_size_list=[5], output_size=3, dtype="float32", seed=0)


def _batch():
    return np.random.default_rng(1).random((4, 6), dtype=np.float32), np.array([0, 1, 2, 0])


@pytest.fixture
def sharing(monkeypatch):
    """Workers allowed (tests/conftest.py turns them off), and ``in_worker`` recording what it is asked to run."""
    monkeypatch.setenv("FASTNN_COMPILE_WORKERS", "1")
    monkeypatch.delenv(_compiling.IN_WORKER, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(_compiling, "can_fork", lambda: False)  # the new-process path, which in_worker stands for
    started = []

    def record(fn, *args):
        started.append((fn, args))
        return _compiling.Worker(None)

    monkeypatch.setattr(_compiling, "in_worker", record)
    return started


def test_first_gradient_starts_a_worker_only_on_a_cold_cache(sharing, monkeypatch):
    x, t = _batch()
    with monkeypatch.context() as m:  # whatever this process has not compiled yet (the tests run in any order and
        m.setenv("FASTNN_COMPILE_WORKERS", "0")  # the cache may be empty), compiled here without a worker
        _net().gradient(x, t)
    warm = _net()
    warm.gradient(x, t)  # a new net, its kernels compiled in this process already: nothing to share
    warm.gradient(x, t)
    assert sharing == []
    cold = _net(_ColdNet)
    cold.gradient(x, t)
    assert len(sharing) == 1 and sharing[0][0] is _compiling.compile_backward
    cold.gradient(x, t)  # the first gradient only
    assert len(sharing) == 1


@pytest.mark.parametrize("off", ["FASTNN_COMPILE_WORKERS", _compiling.IN_WORKER, "one core"])
def test_no_worker_when_turned_off_inside_a_worker_or_on_one_core(off, monkeypatch):
    monkeypatch.setenv("FASTNN_COMPILE_WORKERS", "1")
    monkeypatch.delenv(_compiling.IN_WORKER, raising=False)
    if off == "one core":
        monkeypatch.setattr(os, "cpu_count", lambda: 1)
    else:
        monkeypatch.setenv(off, "0" if off == "FASTNN_COMPILE_WORKERS" else "1")

    def never(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "Popen", never)
    monkeypatch.setattr(os, "fork", never)
    assert _compiling.sharing() is False
    assert _compiling.in_worker(print, "never run").join() is False
    x, t = _batch()
    _net(_ColdNet).gradient(x, t)


@pytest.mark.parametrize("fork", [True, False])
def test_a_failing_worker_leaves_the_gradient_to_this_process(fork, monkeypatch):
    """A real worker process, forked or new, that fails at once (sys.exit called with the net): ready reports it,
    the backward is then compiled here, and the gradient is the one computed without any worker."""
    monkeypatch.setattr(_compiling, "can_fork", lambda: fork)  # the copy fails before running any kernel
    monkeypatch.setenv("FASTNN_COMPILE_WORKERS", "1")
    monkeypatch.delenv(_compiling.IN_WORKER, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    if _compiling.cache_dir() is None:
        pytest.skip("no on-disk cache: workers are off")
    joined = []
    real_ready = _compiling.Worker.ready

    def ready(self, timeout=None):
        joined.append(real_ready(self, timeout))
        return joined[-1]

    monkeypatch.setattr(_compiling.Worker, "ready", ready)
    monkeypatch.setattr(_compiling, "compile_backward", sys.exit)  # pickled by reference: sys.exit(net, x, t)
    x, t = _batch()
    net, alone = _net(_ColdNet), _net()
    grads = net.gradient(x, t)
    assert joined == [False]
    monkeypatch.setenv("FASTNN_COMPILE_WORKERS", "0")
    expected = alone.gradient(x, t)
    assert grads.keys() == expected.keys()
    for key in grads:
        np.testing.assert_array_equal(grads[key], expected[key])


def test_fresh_optimizers_step_is_compiled_beside_the_worker_on_copies(sharing):
    """While the worker compiles the backward, this process compiles the first step of each optimizer built and not
    yet used -- on copies: the optimizer's state and the net's parameters are untouched."""
    from fastnn.optim import SGD, Adam

    used = SGD()
    used.iter = 1  # an optimizer that has stepped already is left alone
    fresh = Adam()
    calls = []
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as mp:
        mp.setattr(Adam, "update", lambda self, params, grads: calls.append((self, params, grads)))
        mp.setattr(SGD, "update", lambda self, params, grads: calls.append((self, params, grads)))
        mp.setattr(_compiling, "in_worker", lambda fn, *args: _compiling.Worker(subprocess.Popen(
            [sys.executable, "-c", "pass"])))
        net = _net(_ColdNet)
        before = {k: v.copy() for k, v in net.params.items()}
        x, t = _batch()
        net.gradient(x, t)
    assert len(calls) == 1
    optimizer, params, grads = calls[0]
    assert type(optimizer) is Adam and optimizer is not fresh and fresh.iter == 0 and fresh.m == {}
    assert params.keys() == net.params.keys() and all(params[k] is not net.params[k] for k in params)
    assert all(not g.any() and g.dtype == np.float32 for g in grads.values())
    for key, value in before.items():
        np.testing.assert_array_equal(net.params[key], value)


@pytest.mark.parametrize("fork", [True, False])
def test_a_cold_step_shares_its_compilation_with_a_worker(fork, tmp_path):
    """A fresh process, empty cache: the worker (a forked copy, or a new process where forking is not allowed)
    compiles the backward kernels (this process loads them), the gradient agrees with the NumPy twins; a second
    process on the now warm cache compiles nothing, starts no worker."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: no worker")
    script = f"""
import numpy as np
from numba.core import event
from fastnn import _compiling, backend
from fastnn.nets import MultiLayerNet
if not {fork}:
    _compiling.can_fork = lambda: False
started, compiled = [], []
real = _compiling.Standby.start
_compiling.Standby.start = lambda self: started.append("fork" if self._forked else "new") or real(self)
class Names(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__name__)
    def on_end(self, ev):
        pass
net = MultiLayerNet(input_size=6, hidden_size_list=[5], output_size=3, dtype="float32", seed=0)
x = np.random.default_rng(1).random((4, 6), dtype=np.float32); t = np.array([0, 1, 2, 0])
with event.install_listener("numba:compile", Names()):
    grads = net.gradient(x, t)
with backend.using("reference"):
    expected = MultiLayerNet(input_size=6, hidden_size_list=[5], output_size=3, dtype="float32",
                             seed=0).gradient(x, t)
assert all(np.allclose(grads[k], expected[k], rtol=2e-5, atol=2e-6) for k in grads)
print(",".join(started) or "none", sorted(set(compiled)))
"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "FASTNN_COMPILE_WORKERS": "1"}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600,
                           check=False) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    started, compiled = runs[0].stdout.split(" ", 1)
    assert started == ("fork" if fork else "new") and "_relu_fwd__serial" in compiled
    assert "bwd" not in compiled  # the backward's kernels: compiled by the worker, loaded here
    assert runs[1].stdout.strip() == "none []"


def test_a_cold_step_defers_parallel_twins_to_the_worker_with_the_same_bits(tmp_path):
    """A forked worker on a cold cache: both processes run the serial twins of same-bits kernels (the GEMM driver,
    the book's Adam) and the worker compiles their parallel twins afterwards; once it has ended, nothing is left to
    compile, and the step's numbers are bit for bit those of a warm process running the parallel twins."""
    if (os.cpu_count() or 1) < 2 or not sys.platform.startswith("linux"):
        pytest.skip("one core or no fork: no forked worker")
    script = """
import sys, numpy as np
from numba.core import event
from fastnn import _compiling, _jit, config
from fastnn.nets import MultiLayerNet
from fastnn.optim import Adam
config.PARALLEL_MIN_WORK.update(gemm=1 << 15, multi_tensor=1 << 15)  # this small net's products and W1 in parallel
compiled, deferred, forked = [], set(), []
real_defers = _compiling._Forked.defers
def defers(self, kernel, args):
    forked[:] = [self]
    said = real_defers(self, kernel, args)
    deferred.add((kernel.__name__, said))
    return said
_compiling._Forked.defers = defers
class Names(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__name__)
    def on_end(self, ev):
        pass
net = MultiLayerNet(input_size=300, hidden_size_list=[300], output_size=10, dtype="float32", seed=0)
x = np.random.default_rng(1).random((64, 300), dtype=np.float32); t = np.arange(64) % 10
optimizer = Adam()
with event.install_listener("numba:compile", Names()):
    optimizer.update(net.params, net.gradient(x, t))
first = b"".join(v.tobytes() for v in net.params.values())
deferring = {("_gemm_parts", True), ("_adam_hat", True)} <= deferred
if forked:
    forked[0].wait(600)
n = len(compiled)
with event.install_listener("numba:compile", Names()):
    Adam().update(net.params, net.gradient(x, t))
print(deferring, sorted(set(compiled[:n])), compiled[n:], __import__("hashlib").sha256(first).hexdigest())
"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "FASTNN_COMPILE_WORKERS": "1"}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600,
                           check=False) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    cold, warm = (run.stdout.split(" ", 1) for run in runs)
    assert cold[0] == "True" and warm[0] == "False"
    assert "_gemm_parts'" not in cold[1] and "'_adam_hat'" not in cold[1]  # the parallel twins: not compiled here
    assert cold[1].rsplit(" ", 1)[0].endswith("[]") and warm[1].startswith("[] [] ")  # nothing left to compile
    assert cold[1].rsplit(" ", 1)[1] == warm[1].rsplit(" ", 1)[1]  # the first step's parameters, bit for bit


def _touch(path):
    """What a standby runs in these tests: leaves a mark (module level: a new process imports it)."""
    with open(path, "w") as f:
        f.write("ran")


@pytest.fixture
def forking(monkeypatch):
    """Workers allowed and forking allowed here (the copies below run no kernel, so the pytest process's
    thread pools do not matter to them)."""
    monkeypatch.setenv("FASTNN_COMPILE_WORKERS", "1")
    monkeypatch.delenv(_compiling.IN_WORKER, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    if _compiling.cache_dir() is None or not hasattr(os, "fork"):
        pytest.skip("no on-disk cache or no fork: no standby copy")
    monkeypatch.setattr(_compiling, "can_fork", lambda: True)


def test_a_standby_copy_runs_only_when_started(forking, tmp_path):
    mark = tmp_path / "mark"
    sent_away = _compiling.Standby(_touch, str(mark))
    assert sent_away._forked is not None
    pid = sent_away._forked.pid
    sent_away.cancel()  # the copy exits without running, and has been waited for (no zombie left)
    assert not mark.exists() and sent_away._forked.returncode == 0 and pid not in _compiling._standing
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, 0)
    started = _compiling.Standby(_touch, str(mark))
    assert started.start().join(60) is True and mark.read_text() == "ran"
    started.cancel()  # after start: nothing to send away


def test_a_standby_that_hangs_is_stopped_at_the_timeout(forking):
    worker = _compiling.Standby(time.sleep, 60).start()
    t0 = time.perf_counter()
    assert worker.join(0.2) is False and time.perf_counter() - t0 < 30


def test_no_fork_beside_another_thread_or_a_started_thread_pool(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(_compiling, "_standing", [])
    from fastnn import _jit

    monkeypatch.setattr(_jit, "threading_layer", lambda: None)
    monkeypatch.setattr(_compiling, "openmp_runtimes", lambda: [])
    assert _compiling.can_fork() is (threading.active_count() == 1)
    with monkeypatch.context() as m:  # another library's OpenMP (PyTorch's, scikit-learn's) may have started its pool
        m.setattr(_compiling, "openmp_runtimes", lambda: ["libgomp.so.1"])
        assert _compiling.can_fork() is False
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _compiling.can_fork() is False
    finally:
        stop.set()
        other.join()
    monkeypatch.setattr(_jit, "threading_layer", lambda: "omp")
    assert _compiling.can_fork() is False


def test_settle_waits_for_a_worker_still_compiling_in_the_background(forking, monkeypatch):
    from fastnn import _jit
    from fastnn.kernels import linalg, optimizers

    worker = _compiling.Standby(time.sleep, 0.1, then=lambda: time.sleep(2)).start()
    assert worker.ready(60) is True  # said after fn, before the background part (then)
    defers = worker._process.defers
    monkeypatch.setattr(_jit, "_defer", defers)
    assert defers(linalg._gemm_parts, ()) is True and defers(optimizers._sgd, ()) is False  # same bits only
    assert _compiling.settle(60) is True
    assert worker._process.returncode == 0 and _jit._defer is None
    assert defers(linalg._gemm_parts, ()) is False
    assert _compiling.settle(60) is False  # nothing left to wait for


def test_openmp_runtimes_are_read_from_the_maps():
    maps = "\n".join(["7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0",
                      "7f02-7f03 r-xp 0 08:01 2 /site/torch/lib/libgomp-e985bcbb.so.1",
                      "7f04-7f05 r-xp 0 08:01 3 /opt/intel/libiomp5.so",
                      "7f06-7f07 r-xp 0 08:01 4 /usr/lib/llvm/libomp.so.5",
                      "7f08-7f09 r-xp 0 08:01 5 /site/numba/np/ufunc/omppool.cpython-311-x86_64-linux-gnu.so",
                      "7f0a-7f0b r-xp 0 08:01 6 /site/scipy/linalg/_decomp_lu_cython.cpython-311.so",
                      "7f0c-7f0d rw-p 0 00:00 0 [heap]"])
    assert _compiling.openmp_runtimes(maps) == ["libgomp-e985bcbb.so.1", "libgomp.so.1.0.0", "libiomp5.so",
                                                "libomp.so.5"]
    assert _compiling.openmp_runtimes("") == []

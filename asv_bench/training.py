"""Whole training steps (forward, backward, Adam update) of the book's nets, and fastnn's compile time."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from .common import KernelBenchmark


class SimpleConvNet(KernelBenchmark):
    """conv(30 5x5) - relu - maxpool - affine(100) - relu - affine(10), batch 100; torch: the same nn.Sequential."""

    cases = {"step": "train_simpleconvnet"}
    timeout = 600

    def time_step(self, *params):
        self.step()

    def peakmem_step(self, *params):
        self.step()


class DeepConvNet(KernelBenchmark):
    """The book's ch08 net: (conv - relu - conv - relu - pool) x 3 of 16/32/64 3x3 filters, affine - relu - dropout -
    affine - dropout, batch 100; torch: the same nn.Sequential with the book's dropout masks."""

    cases = {"step": "train_deepconvnet"}
    timeout = 600

    def time_step(self, *params):
        self.step()


class MultiLayerNetExtend(KernelBenchmark):
    """Five hidden layers of 100 with batch normalization, batch 100 (the book's ch06 experiment)."""

    cases = {"step": "train_multilayer_bn"}
    timeout = 600

    def time_step(self, *params):
        self.step()


#: A fresh interpreter's time to its first SimpleConvNet training step (MNIST batch, float32, fastnn kernels),
#: imports included, printed in seconds.
_FIRST_STEP = """
import time
t0 = time.perf_counter()
from fastnn.bench_cases import CASES
run = CASES["train_simpleconvnet"].prepare("fastnn", "mnist", "float32")
run.call()
print(time.perf_counter() - t0)
from fastnn import _compiling
_compiling.settle()  # the cache complete before the next process starts
"""


def first_step_seconds(cache_dir: str) -> float:
    """Seconds a new process takes to import fastnn and run one training step with Numba's cache in ``cache_dir``."""
    out = subprocess.run([sys.executable, "-c", _FIRST_STEP], env=_cache_env(cache_dir), capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _cache_env(cache_dir: str) -> dict[str, str]:
    """This process's environment with Numba's on-disk cache in ``cache_dir`` (and fastnn's use of it on)."""
    return {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "FASTNN_NUMBA_CACHE": "1"}


class CompileTime:
    """Time to the first training step in a new process: with an empty Numba cache (everything the step needs is
    compiled) and with the cache the first run left (kernels are loaded from disk)."""

    timeout = 1200

    def setup(self):
        self._dir = tempfile.TemporaryDirectory(prefix="fastnn-numba-cache-")

    def teardown(self):
        self._dir.cleanup()

    def track_first_step_empty_cache(self):
        return first_step_seconds(self._dir.name)

    track_first_step_empty_cache.unit = "seconds"

    def track_first_step_warm_cache(self):
        first_step_seconds(self._dir.name)  # fills the cache
        return first_step_seconds(self._dir.name)

    track_first_step_warm_cache.unit = "seconds"


def process_seconds(args: list[str], cache_dir: str) -> float:
    """Wall seconds of ``python <args>`` in a new process with Numba's cache in ``cache_dir`` (output discarded)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=_cache_env(cache_dir), capture_output=True, check=True)
    return time.perf_counter() - start


#: Issue 16's third measure as a user writes it: import, build SimpleConvNet, one Adam step on an MNIST-sized batch.
_USER_STEP = """
import numpy as np, fastnn
from fastnn.nets import SimpleConvNet
from fastnn.optim import Adam
net = SimpleConvNet(input_dim=(1, 28, 28), dtype='float32')
x = np.random.default_rng(0).random((100, 1, 28, 28), dtype=np.float32); t = np.arange(100) % 10
Adam().update(net.params, net.gradient(x, t))
"""


class FirstRun:
    """What a new user meets, as whole processes: ``python -m fastnn demo --epochs 1`` (digits) with an empty Numba
    cache and with the cache the first run left, the user's first SimpleConvNet step (:data:`_USER_STEP`) with an
    empty cache, and ``import fastnn`` (README and issue targets: 8 s, 1.5 s, 4 s, 0.3 s);
    and the demo once ``python -m fastnn warmup --dtype float32`` has filled the cache (the install step)."""

    timeout = 1200

    def setup(self):
        import importlib.util

        if importlib.util.find_spec("sklearn") is None:
            raise NotImplementedError("the demo's digits need scikit-learn (the examples extra)")
        self._dir = tempfile.TemporaryDirectory(prefix="fastnn-first-run-")
        self._demo = ["-m", "fastnn", "demo", "--epochs", "1", "--no-plot", "--out", self._dir.name]

    def teardown(self):
        self._dir.cleanup()

    def track_demo_empty_cache(self):
        return process_seconds(self._demo, os.path.join(self._dir.name, "cold"))

    track_demo_empty_cache.unit = "seconds"

    def track_demo_warm_cache(self):
        cache = os.path.join(self._dir.name, "warm")
        process_seconds(self._demo, cache)  # fills the cache
        return process_seconds(self._demo, cache)

    track_demo_warm_cache.unit = "seconds"

    def track_step_empty_cache(self):
        return process_seconds(["-c", _USER_STEP], os.path.join(self._dir.name, "step"))

    track_step_empty_cache.unit = "seconds"

    def track_import(self):
        return process_seconds(["-c", "import fastnn"], os.path.join(self._dir.name, "import"))

    track_import.unit = "seconds"

    def track_demo_after_warmup(self):
        cache = os.path.join(self._dir.name, "installed")
        process_seconds(["-m", "fastnn", "warmup", "--dtype", "float32", "--quiet"], cache)
        return process_seconds(self._demo, cache)

    track_demo_after_warmup.unit = "seconds"


class Warmup:
    """``python -m fastnn warmup --dtype float32`` into an empty cache (the optional install step), whole process."""

    timeout = 1800

    def setup(self):
        self._dir = tempfile.TemporaryDirectory(prefix="fastnn-warmup-")

    def teardown(self):
        self._dir.cleanup()

    def track_float32(self):
        return process_seconds(["-m", "fastnn", "warmup", "--dtype", "float32", "--quiet"], self._dir.name)

    track_float32.unit = "seconds"

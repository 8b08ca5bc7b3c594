"""Kernels declared ``same_bits``: their serial and parallel twins give bit-identical results.

A first run runs the serial twin of such a kernel while a worker compiles the parallel one
(:func:`fastnn._compiling.first_gradient`), so a cold run's numbers are a warm run's only if this holds. Each
case captures the launches a public call makes (through :data:`fastnn._jit._defer`) and replays every one on
both twins, on copies of its arrays.
"""

import copy
import importlib
import pkgutil

import numpy as np
import pytest

import fastnn.kernels
from fastnn import _jit
from fastnn.kernels import linalg, optimizers


def _same_bits_kernels():
    found = set()
    for info in pkgutil.iter_modules(fastnn.kernels.__path__):
        module = importlib.import_module(f"fastnn.kernels.{info.name}")
        found |= {k for k in vars(module).values() if isinstance(k, _jit.Kernel) and k.same_bits}
    return found


def _launches(call, monkeypatch):
    """The (kernel, args) of every same-bits launch ``call()`` makes (run on the serial twin meanwhile)."""
    seen = []
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "0")  # every launch would be parallel
    monkeypatch.setattr(_jit, "_defer", lambda kernel, args: seen.append((kernel, copy.deepcopy(args))) or True)
    call()
    monkeypatch.setattr(_jit, "_defer", None)
    return seen


def _replay_on_both_twins(launches):
    assert launches
    for kernel, args in launches:
        serial, parallel = copy.deepcopy(args), copy.deepcopy(args)
        out_s = kernel.serial(*serial)
        out_p = kernel.parallel(*parallel)
        assert out_s == out_p or (out_s is None and out_p is None)
        for a, b in zip(serial, parallel, strict=True):
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=kernel.__name__)


def _gemm_calls(dtype):
    rng = np.random.default_rng(0)

    def call():
        for m, k, n in [(300, 64, 40), (40, 64, 300), (33, 2000, 35), (1, 5000, 300)]:  # rows, columns, reduction
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            bias = rng.standard_normal(n).astype(dtype)
            linalg.matmul(a, b)
            linalg.matmul_bias(a, b, bias)
            linalg.matmul(np.asfortranarray(a), b[:, ::1].T.copy().T)  # a transposed operand
    return call


def _adam_hat_calls(dtype):
    rng = np.random.default_rng(1)

    def call():
        for size in (1, 15, 16, 17, 1000, 70_001):
            p, g = (rng.standard_normal(size).astype(dtype) for _ in range(2))
            m = rng.standard_normal(size).astype(dtype) * dtype(0.1)
            v = np.abs(rng.standard_normal(size)).astype(dtype) * dtype(0.01)
            for decoupled, wd in ((False, 0.0), (False, 0.01), (True, 0.01)):
                optimizers._adam_family("adam_step", decoupled, p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001,
                                        wd, None, True)
    return call


CASES = {linalg._gemm_parts: _gemm_calls, optimizers._adam_hat: _adam_hat_calls}


def test_every_same_bits_kernel_has_a_case():
    assert _same_bits_kernels() == set(CASES)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", list(CASES), ids=lambda k: k.__name__)
def test_serial_and_parallel_twins_give_the_same_bits(kernel, dtype, monkeypatch):
    launches = _launches(CASES[kernel](dtype), monkeypatch)
    assert {k for k, _ in launches} == {kernel}
    if kernel is linalg._gemm_parts:
        assert {int(args[8]) for _, args in launches} == {0, 1, 2}  # every way of cutting a product
    _replay_on_both_twins(launches)


def test_a_launch_runs_the_serial_twin_when_defer_says_so(monkeypatch):
    asked = []
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "0")
    monkeypatch.setattr(_jit, "_num_threads", None)
    monkeypatch.setattr(_jit, "_defer", lambda kernel, args: asked.append(kernel) or kernel.same_bits)
    launched = []
    monkeypatch.setattr(_jit, "_launch_parallel", lambda dispatcher, args: launched.append(dispatcher))
    a = np.ones((300, 64), np.float32)
    linalg.matmul(a, a.T.copy())
    assert asked == [linalg._gemm_parts] and launched == []
    p = np.ones(100, np.float32)
    optimizers.sgd_step(p, p.copy(), 0.1)  # not same_bits: asked, and launched in parallel
    assert asked == [linalg._gemm_parts, optimizers._sgd] and launched == [optimizers._sgd.parallel]
    monkeypatch.setattr(_jit, "_defer", lambda kernel, args: False)  # the worker has ended
    linalg.matmul(a, a.T.copy())
    assert launched[-1] is linalg._gemm_parts.parallel

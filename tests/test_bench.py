"""The benchmark registry checks itself: every case's implementations agree at a tiny size, and the bench prints."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from fastnn import bench, bench_cases
from fastnn.bench_cases import CASES

from .conftest import TOL

#: torch computes the same maths in another order (and other algorithms: convolution by its own GEMM paths)
TORCH_TOL = {
    np.dtype(np.float32): {"rtol": 2e-4, "atol": 2e-5},
    np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-11},
}


def _outputs(case: bench_cases.Case, impl: str, dtype: np.dtype, inputs: dict) -> tuple[np.ndarray, ...]:
    try:
        run = case.prepare(impl, "tiny", dtype, inputs)
    except NotImplementedError as exc:
        pytest.skip(f"{case.name}: {exc}")
    return run.result(run.call())


def _snapshot(inputs: dict) -> dict:
    return {k: v.copy() for k, v in inputs.items() if isinstance(v, np.ndarray)}


@pytest.mark.parametrize("name", list(CASES))
def test_fastnn_matches_numpy(name, dtype, twin):
    case = CASES[name]
    inputs = case.inputs("tiny", dtype)
    before = _snapshot(inputs)
    fast = _outputs(case, "fastnn", dtype, inputs)
    ref = _outputs(case, "numpy", dtype, inputs)
    assert len(fast) == len(ref) >= 1
    for i, (a, b) in enumerate(zip(fast, ref, strict=True)):
        assert a.shape == b.shape, f"output {i}"
        assert a.dtype == b.dtype, f"output {i}"
        if a.dtype.kind == "f":
            assert a.dtype == dtype, f"output {i}"
            np.testing.assert_allclose(a, b, **TOL[dtype], err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"output {i}")
    # a run must not write into the shared inputs, or later repeats (and other implementations) time other data
    for k, v in before.items():
        np.testing.assert_array_equal(inputs[k], v, err_msg=k)


@pytest.mark.parametrize("name", list(CASES))
def test_torch_is_the_same_operation(name, dtype):
    """The torch column times the same maths: its results match the NumPy reference's leading outputs."""
    pytest.importorskip("torch")
    case = CASES[name]
    if "torch" not in case.impls:
        pytest.skip(f"{name} has no torch equivalent")
    inputs = case.inputs("tiny", dtype)
    before = _snapshot(inputs)
    ref = _outputs(case, "numpy", dtype, inputs)
    tor = _outputs(case, "torch", dtype, inputs)
    assert 1 <= len(tor) <= len(ref)
    for i, (a, b) in enumerate(zip(tor, ref[:len(tor)], strict=True)):
        assert a.shape == b.shape, f"output {i}"
        np.testing.assert_allclose(a, b, **TORCH_TOL[dtype], err_msg=f"output {i}")
    for k, v in before.items():
        np.testing.assert_array_equal(inputs[k], v, err_msg=k)


def test_every_case_has_the_benchmark_sizes():
    for case in CASES.values():
        assert {"tiny", "mnist", "cifar"} <= set(case.sizes), case.name
        assert set(case.impls) >= {"fastnn", "numpy"}, case.name
        assert case.module in {"im2col_conv", "linalg", "pooling", "normalization", "optimizers",
                               "activations_losses", "training"}, case.name


def test_bytes_moved_of_adam_is_seven_streams():
    # param, grad, m, v read; param, m, v written
    assert CASES["adam_step"].bytes_moved("cifar", "float32") == 7 * 10_000_000 * 4
    assert CASES["batchnorm2d_forward"].bytes_moved("cifar", "float64") == 2 * 64 * 64 * 32 * 32 * 8


def test_measure_reports_the_median_per_call():
    calls = {"sleep": lambda: time.sleep(0.002), "noop": lambda: None}
    t = bench.measure(calls, repeat=3, min_time=0.01)
    assert 0.002 <= t["sleep"] < 0.05
    assert 0 < t["noop"] < 1e-4


def test_bench_prints_a_table(capsys):
    status = bench.main(["--size", "tiny", "--dtype", "float32,float64", "--filter", "^(relu_forward|sgd_step)$",
                         "--repeat", "2", "--quick", "--no-triad"])
    assert status == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("case "))
    assert header.split()[:5] == ["case", "size", "dtype", "fastnn", "numpy"]
    assert "numpy/fastnn" in header
    rows = [line.split() for line in lines if re.match(r"(relu_forward|sgd_step)\s", line)]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("relu_forward", "tiny", "float32"), ("relu_forward", "tiny", "float64"),
        ("sgd_step", "tiny", "float32"), ("sgd_step", "tiny", "float64")]
    for r in rows:
        # fastnn and numpy times ("12.3 us"), then the numpy/fastnn ratio ("4.56x")
        assert re.fullmatch(r"[0-9.]+", r[3]) and r[4] in ("ns", "us", "ms", "s"), r
        assert any(re.fullmatch(r"[0-9.]+x", c) for c in r), r


def test_bench_rejects_bad_options(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--filter", "no-such-case"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        bench.main(["--size", "huge"])
    assert "--size must be" in capsys.readouterr().err


def test_asv_suite_times_every_case_once():
    """Every registry case has an asv benchmark in the module of its family, and every asv class names real cases."""
    import importlib
    import inspect

    from asv_bench.common import KernelBenchmark

    seen: dict[str, str] = {}
    for module in ("im2col_conv", "linalg", "pooling", "normalization", "optimizers", "activations_losses",
                   "training"):
        mod = importlib.import_module(f"asv_bench.{module}")
        for cls_name, cls in inspect.getmembers(mod, inspect.isclass):
            if not issubclass(cls, KernelBenchmark) or cls is KernelBenchmark:
                continue
            for attr, case in cls.cases.items():
                assert CASES[case].module == module, (cls_name, case)
                assert case not in seen, (case, seen.get(case), cls_name)
                seen[case] = cls_name
                timed = [m for m in vars(cls) if m.startswith(("time_", "peakmem_")) and m.endswith(f"_{attr}")]
                assert f"time_{attr}" in timed, (cls_name, attr)
    assert sorted(seen) == sorted(CASES)


def test_bench_lists_the_shapes(capsys):
    assert bench.main(["--list", "--filter", "^conv2d_forward$", "--size", "all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["conv2d_forward", "tiny"], ["conv2d_forward", "mnist"],
                                                    ["conv2d_forward", "cifar"]]
    assert "N=100 C=1 H=28 W=28 FN=30 FH=5 FW=5" in lines[1]

"""python -m fastnn.bench and the asv suite: every registry case is timed, the tables print.

The registry's agreement tests (kernel vs twin vs torch) are in tests/kernels/test_registry.py."""

from __future__ import annotations

import re
import time

import pytest

from fastnn import bench
from fastnn.bench_cases import CASES


def test_every_case_has_the_benchmark_sizes():
    for case in CASES.values():
        assert {"tiny", "mnist", "cifar"} <= set(case.sizes), case.name
        assert set(case.impls) >= {"fastnn", "numpy"}, case.name
        assert case.module in {"im2col_conv", "linalg", "pooling", "normalization", "optimizers",
                               "activations_losses", "training", "attention", "sequence", "transformer",
                               "recurrent"}, case.name


def test_bytes_moved_of_adam_is_seven_streams():
    # param, grad, m, v read; param, m, v written
    assert CASES["adam_step"].bytes_moved("cifar", "float32") == 7 * 10_000_000 * 4
    assert CASES["batchnorm_forward_train"].bytes_moved("cifar", "float64") == 2 * 64 * 64 * 32 * 32 * 8


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
    """Every registry case has an asv benchmark: in the module of its family when a class there names it, else in
    asv_bench.kernels; every asv class names real cases."""
    import importlib
    import inspect

    from asv_bench.common import KernelBenchmark
    from asv_bench.kernels import Kernel

    seen: dict[str, str] = {}
    for module in ("im2col_conv", "linalg", "pooling", "normalization", "optimizers", "activations_losses",
                   "training", "attention", "transformer"):
        mod = importlib.import_module(f"asv_bench.{module}")
        for cls_name, cls in inspect.getmembers(mod, inspect.isclass):
            if not issubclass(cls, KernelBenchmark) or cls_name.startswith("_") or cls is KernelBenchmark:
                continue  # asv collects no class whose name starts with "_"
            for attr, case in cls.cases.items():
                assert CASES[case].module == module, (cls_name, case)
                assert case not in seen, (case, seen.get(case), cls_name)
                seen[case] = cls_name
                timed = [m for m in dir(cls) if m.startswith(("time_", "peakmem_")) and m.endswith(f"_{attr}")]
                assert f"time_{attr}" in timed, (cls_name, attr)
    for case in Kernel.params[0]:
        assert case not in seen, (case, seen.get(case), "kernels.Kernel")
        seen[case] = "kernels.Kernel"
    assert sorted(seen) == sorted(CASES)


def test_asv_kernel_benchmark_times_a_registry_case():
    from asv_bench.kernels import Kernel

    bench_ = Kernel()
    bench_.setup("sigmoid_forward", "fastnn", "float32", "mnist")
    bench_.time_call()
    with pytest.raises(NotImplementedError):
        Kernel().setup("dropout_forward", "torch", "float32", "mnist")


def test_targets_are_the_cases_with_a_goal(capsys):
    goals = {name: case.goal for name, case in CASES.items() if case.goal is not None}
    recurrent = [f"{cell}_fwd_bwd{tag}" for cell in ("gru", "lstm") for tag in ("", "_char", "_rnnlm")]
    assert sorted(goals) == sorted([
        "adam_multilayer_bn", "adam_step", "attention_causal_forward_backward",
        "attention_causal_forward_backward_long", "batchnorm1d_forward_backward", "batchnorm2d_forward_backward",
        "conv2d_forward_backward", "instancenorm_forward_backward", "maxpool2d_forward_backward",
        "mha_causal_forward_backward", "softmax_cross_entropy_forward", "spectralnorm_affine_forward_backward",
        "spectralnorm_conv_forward_backward", "train_better_rnnlm", "train_deepconvnet", "train_multilayer_bn",
        "train_multilayer_bn_cifar",
        "train_simpleconvnet", "train_transformer_lm", "weightnorm_affine_forward_backward",
        "weightnorm_conv_forward_backward", *recurrent])
    flops = {n: CASES[n].product_flops(g.size) for n, g in goals.items()}
    # torch's products at 120 GFLOP/s where counted: 0.6 of the peak, so only a target below 0.6x is out of reach
    rows = [{"case": g.title, "goal": g.ratio, "threads": 2, "traffic": CASES[n].bytes_moved(g.size, "float32"),
             "triad": 2e10, "flops": flops[n], "peak": 2e11, "fastnn": 1e-3, "numpy": 1e-2,
             "torch": flops[n] / 1.2e11 if flops[n] else 2e-3} for n, g in goals.items()]
    lines = bench.format_targets(rows).splitlines()
    assert lines[0].split() == ["case", "fastnn", "NumPy", "ref", "torch", "ref/fastnn", "fastnn/torch", "target",
                                "GB/s", "of", "triad", "GFLOP/s", "of", "peak"]
    adam = next(line for line in lines if line.startswith("Adam step, 10M float32 params"))
    # 7 streams of 10M float32 in 1 ms: 280 GB/s, 14x the triad; no products counted
    assert adam.split()[-7:] == ["0.50", "<=", "1.0", "280.0", "1400%", "-", "-"]
    rnnlm = next(line for line in lines if line.startswith("LSTM N20 T35 D100 H100"))
    # 6 products of 20*35*400*100 multiply-adds (D = H = 100): 336 MFLOP in 1 ms, 168% of a 200 GFLOP/s peak
    assert rnnlm.split()[-7:] == ["0.36", "<=", "0.5", "-", "-", "336", "168%"]
    tail = lines[lines.index("STREAM triad (Numba, 2 threads): 20.0 GB/s"):]
    # the one target shorter than its products at the peak: 0.5 x 2.80 ms < 336 MFLOP / 200 GFLOP/s = 1.68 ms
    assert tail == ["STREAM triad (Numba, 2 threads): 20.0 GB/s",
                    "GEMM peak (float32 2048 x 2048 through NumPy's BLAS): 200 GFLOP/s",
                    "LSTM N20 T35 D100 H100 (DLFS-2 Rnnlm), fwd+bwd: the target, 0.5 x torch = 1.40 ms, is below "
                    "1.68 ms, the time of its products' 336 MFLOP at the GEMM peak"]


def test_gemm_peak_is_a_rate_in_flops():
    peak = bench.gemm_peak(n=256, repeats=2)
    assert 1e8 < peak < 1e14  # 33.5 MFLOP per product: at least 0.1 GFLOP/s, at most any CPU's


def test_bench_lists_the_shapes(capsys):
    assert bench.main(["--list", "--filter", "^conv2d_forward$", "--size", "all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["conv2d_forward", "tiny"], ["conv2d_forward", "mnist"],
                                                    ["conv2d_forward", "cifar"]]
    assert "N=100 C=1 H=28 W=28 FN=30 FH=5 FW=5" in lines[1]

"""``--threads N``: one handler for demo, experiment and bench sets Numba's, BLAS's and (bench) torch's threads."""

from __future__ import annotations

import importlib.util

import numba
import pytest

import fastnn
from fastnn.__main__ import main
from fastnn.cli import CLIError, apply_threads

needs_threadpoolctl = pytest.mark.skipif(importlib.util.find_spec("threadpoolctl") is None,
                                         reason="threadpoolctl (examples extra) not installed: BLAS is not limited")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")

#: A thread count other than the ``single_thread`` fixture's 1 when the machine has more than one core, so that a
#: handler that did nothing would be seen.
N = min(2, numba.config.NUMBA_NUM_THREADS)


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.fixture
def torch_threads():
    """torch's thread count restored after the test."""
    import torch

    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def test_none_changes_nothing():
    apply_threads(None, torch=True)
    assert fastnn.get_num_threads() == 1  # as the single_thread fixture left it


def test_sets_numba_threads():
    apply_threads(N)
    assert fastnn.get_num_threads() == N


@needs_threadpoolctl
def test_sets_blas_threads():
    apply_threads(N)
    assert _blas_threads() == {N}  # every BLAS library loaded in this process (NumPy's at least)


def test_out_of_range_is_a_cli_error_caused_by_set_num_threads():
    with pytest.raises(CLIError, match=r"^--threads must be in \[1, \d+\], got 0$") as info:
        apply_threads(0)
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__).startswith("set_num_threads: n must be an int in [1, ")
    assert fastnn.get_num_threads() == 1


def test_demo_and_experiment_share_the_option():
    from fastnn.__main__ import build_parser

    for command in (["demo"], ["experiment", "init"]):
        assert build_parser().parse_args(command).threads is None  # default: every pool as it is
        assert build_parser().parse_args([*command, "--threads", str(N)]).threads == N


@needs_threadpoolctl
def test_experiment_sets_numba_and_blas_threads(tmp_path, capsys):
    code = main(["experiment", "activations", "--threads", str(N), "--scheduler", "none", "--no-plot", "--out",
                 str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert fastnn.get_num_threads() == N
    assert _blas_threads() == {N}


@needs_torch
def test_bench_sets_numba_blas_and_torch_threads(torch_threads, capsys):
    torch_threads.set_num_threads(3)
    code = main(["bench", "--threads", str(N), "--size", "tiny", "--filter", "^relu_forward$", "--repeat", "1",
                 "--quick", "--no-triad"])
    assert code == 0
    assert f"{N} threads" in capsys.readouterr().out
    assert fastnn.get_num_threads() == N
    assert torch_threads.get_num_threads() == N
    if importlib.util.find_spec("threadpoolctl") is not None:
        assert _blas_threads() == {N}


def test_bench_rejects_a_bad_thread_count(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--threads", "0", "--size", "tiny", "--filter", "^relu_forward$", "--no-triad"])
    assert info.value.code == 2
    assert "--threads: set_num_threads: n must be an int in [1, " in capsys.readouterr().err

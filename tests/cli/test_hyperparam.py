"""``python -m fastnn experiment hyperparam``: the book's search on a LocalCluster started by the command, its
results file, figure and ``--resume``; ``--scheduler`` for another experiment."""

from __future__ import annotations

import importlib.util

import pytest

from fastnn.distributed import read_results
from tests.cli.test_cli import assert_png, number, run

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                       reason="the distributed extra (dask, distributed) is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("sklearn") is None or importlib.util.find_spec("matplotlib") is None,
                       reason="the examples extra (scikit-learn, matplotlib) is not installed"),
]


def test_hyperparam_local_cluster_then_resume_in_process(tmp_path, capsys):
    code, out, err = run(capsys, "experiment", "hyperparam", "--trials", "4", "--epochs", "2", "--out", str(tmp_path))
    assert code == 0, err
    assert "cluster: LocalCluster, 2 workers x 1 Numba thread(s)" in out
    assert "4 trials: lr 10^U(-6,-2), weight decay 10^U(-8,-4); 6x100 net, 400 training and 100 validation" in out
    assert "4 trials done, 0 failed" in out
    best = number(r"Best-1 +\d+ +([0-9.]+)", out)
    results = tmp_path / "experiment_hyperparam.jsonl"
    first = read_results(results)
    assert sorted(r["trial"] for r in first) == [0, 1, 2, 3]
    assert best == pytest.approx(max(r["result"]["final_val_acc"] for r in first), abs=1e-4)
    assert all(len(r["result"]["val_acc"]) == 2 for r in first)
    assert_png(tmp_path / "experiment_hyperparam.png")

    code, out, err = run(capsys, "experiment", "hyperparam", "--trials", "6", "--epochs", "2", "--out", str(tmp_path),
                         "--no-plot")
    assert code == 1 and "exists: resume it" in err
    code, out, err = run(capsys, "experiment", "hyperparam", "--trials", "6", "--epochs", "2", "--out", str(tmp_path),
                         "--no-plot", "--resume", "--scheduler", "none", "--threads", "1")
    assert code == 0, err
    assert "running in this process" in out
    after = read_results(results)
    assert [r["trial"] for r in after[:4]] == [r["trial"] for r in first]
    assert after[:4] == first  # finished trials are kept, not re-run
    assert sorted(r["trial"] for r in after[4:]) == [4, 5]
    code, out, err = run(capsys, "experiment", "hyperparam", "--trials", "6", "--epochs", "3", "--out", str(tmp_path),
                         "--no-plot", "--resume", "--scheduler", "none")
    assert code == 1 and "another search" in err  # other epochs: other results


def test_scheduler_address_for_another_experiment(tmp_path, capsys):
    from fastnn.distributed import connect

    with connect(n_workers=1) as client:
        address = client.scheduler.address
        code, out, err = run(capsys, "experiment", "overfit", "--epochs", "2", "--no-plot", "--scheduler", address)
    assert code == 0, err
    assert f"cluster: scheduler {address}, 1 workers x 1 Numba thread(s)" in out
    code, local, err = run(capsys, "experiment", "overfit", "--epochs", "2", "--no-plot", "--scheduler", "none")
    assert code == 0, err
    table = lambda text: [line for line in text.splitlines() if line.startswith(("no reg", "weight", "dropout"))]  # noqa: E731
    assert len(table(out)) == 3 and table(out) == table(local)  # the same numbers on the cluster and here


def test_results_options_are_hyperparam_only(capsys):
    code, out, err = run(capsys, "experiment", "overfit", "--resume", "--no-plot", "--scheduler", "none")
    assert code == 1 and "--results and --resume apply to the hyperparam experiment only" in err

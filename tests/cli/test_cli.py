"""``python -m fastnn``: demo and experiments with tiny settings; outputs exist, printed numbers parse and fit."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

from fastnn.__main__ import main
from fastnn.checkpoint import load_arrays
from tests.conftest import SHARED_MNIST

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The demo's default data set and the figures need the examples extra (pip install "fastnn[examples]").
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn (examples extra) not installed: digits unavailable")
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib (examples extra) not installed: no figures")


def number(pattern: str, text: str) -> float:
    """The number captured by ``pattern`` (one group) in ``text``; fails when absent."""
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not found in:\n{text}"
    return float(m.group(1))


def assert_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes  # a drawn figure, not an empty canvas
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 500 and height >= 300


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@needs_sklearn
@needs_matplotlib
def test_demo_digits(tmp_path, capsys):
    code, out, err = run(capsys, "demo", "--epochs", "1", "--compare-steps", "2", "--out", str(tmp_path))
    assert code == 0, err
    test_acc = number(r"final test accuracy: ([0-9.]+)", out)
    train_acc = number(r"final train accuracy: ([0-9.]+)", out)
    assert 0.8 <= test_acc <= 1.0  # one epoch of 29 Adam steps already learns the digits (measured 0.94)
    assert 0.8 <= train_acc <= 1.0
    speedup = number(r"speed-up: ([0-9.]+)x", out)
    assert speedup > 0
    fast_ms = number(r"fastnn ([0-9.]+) ms", out)
    numpy_ms = number(r"NumPy reference ([0-9.]+) ms", out)
    assert speedup == pytest.approx(numpy_ms / fast_ms, rel=0.1)
    # The NumPy twin computes the same training steps: the losses agree to float32 rounding.
    assert number(r"largest relative loss difference on the same steps: ([0-9.e+-]+)\)", out) < 1e-4
    assert number(r"wall time: ([0-9.]+) s", out) > 0
    assert "data: digits, 1437 training and 360 test images of shape (1, 8, 8), float32" in out
    assert_png(tmp_path / "demo_digits.png")
    assert f"plot: {tmp_path / 'demo_digits.png'}" in out
    params = load_arrays(tmp_path / "demo_digits_params.npz", {
        "W1": ((30, 1, 3, 3), np.float32), "b1": ((30,), np.float32), "W2": ((480, 100), np.float32),
        "b2": ((100,), np.float32), "W3": ((100, 10), np.float32), "b3": ((10,), np.float32)})
    assert np.all(np.isfinite(params["W1"]))


@needs_sklearn
def test_demo_float64_no_plot_other_optimizer(tmp_path, capsys):
    code, out, err = run(capsys, "demo", "--epochs", "1", "--compare-steps", "1", "--out", str(tmp_path),
                         "--dtype", "float64", "--optimizer", "momentum", "--no-plot", "--batch-size", "100")
    assert code == 0, err
    assert not list(tmp_path.glob("*.png"))
    assert "momentum lr 0.01, batch 100, 1 epochs" in out
    params = load_arrays(tmp_path / "demo_digits_params.npz")
    assert all(p.dtype == np.float64 for p in params.values())
    assert 0.0 <= number(r"final test accuracy: ([0-9.]+)", out) <= 1.0


def test_demo_on_real_mnist_test_images(tmp_path, capsys):
    files = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    if not all((SHARED_MNIST / f).is_file() for f in files):
        pytest.skip(f"real MNIST test files not found in {SHARED_MNIST}")
    code, out, err = run(capsys, "demo", "--dataset", "mnist-small", "--data-dir", str(SHARED_MNIST), "--epochs",
                         "1", "--compare-steps", "1", "--out", str(tmp_path), "--no-plot")
    assert code == 0, err
    assert "data: mnist-small, 8000 training and 2000 test images of shape (1, 28, 28), float32" in out
    assert number(r"final test accuracy: ([0-9.]+)", out) >= 0.9  # measured 0.963 after one epoch


def test_download_failure_is_a_message_not_a_traceback(tmp_path, capsys):
    code, out, err = run(capsys, "demo", "--dataset", "mnist", "--data-dir", str(tmp_path / "m"), "--no-plot")
    assert code == 1
    assert "Traceback" not in err
    assert err.startswith("fastnn demo: load_mnist: could not download train-images-idx3-ubyte.gz")
    assert "http://127.0.0.1:9/nothing/train-images-idx3-ubyte.gz: cannot connect" in err
    assert f"put it in {tmp_path / 'm'}" in err
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


@pytest.mark.parametrize("module, argv", [
    ("matplotlib", ["demo", "--epochs", "1"]),
    ("sklearn", ["demo", "--epochs", "1", "--no-plot"]),
    ("matplotlib", ["experiment", "activations"]),
])
def test_missing_optional_dependency_exit_2_names_the_extra(tmp_path, capsys, monkeypatch, module, argv):
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, module, None)
    if module == "sklearn":
        monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    code, out, err = run(capsys, *argv, "--out", str(tmp_path))
    assert code == 2
    assert "Traceback" not in err
    assert 'pip install "fastnn[examples]"' in err
    assert {"matplotlib": "matplotlib", "sklearn": "scikit-learn"}[module] in err


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--epochs", "0"])
    assert info.value.code == 2
    assert "must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["experiment", "nonsense"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_threads_option(tmp_path, capsys):
    import fastnn

    code, out, err = run(capsys, "experiment", "activations", "--threads", "1", "--no-plot", "--out", str(tmp_path))
    assert code == 0, err
    assert fastnn.get_num_threads() == 1
    code, out, err = run(capsys, "experiment", "activations", "--threads", "999", "--no-plot")
    assert code == 1
    assert "--threads must be in [1, " in err


def test_bench_is_delegated(monkeypatch):
    import fastnn.bench

    seen = []
    monkeypatch.setattr(fastnn.bench, "main", lambda argv: seen.append(argv) or 3)
    assert main(["bench", "--case", "conv", "--help"]) == 3
    assert seen == [["--case", "conv", "--help"]]


def test_console_script_and_module_entry():
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts.get("fastnn") == "fastnn.__main__:run"
    done = subprocess.run([sys.executable, "-m", "fastnn", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "{demo,experiment,bench,warmup}" in done.stdout


def _table_rows(out: str, first_cells: list[str]) -> dict[str, list[float]]:
    rows = {}
    for line in out.splitlines():
        for name in first_cells:
            if line.startswith(name + "  "):
                rows[name] = [float(v) for v in line[len(name):].split()]
    assert sorted(rows) == sorted(first_cells), out
    return rows


@needs_sklearn
@needs_matplotlib
def test_experiment_optimizers(tmp_path, capsys):
    code, out, err = run(capsys, "experiment", "optimizers", "--iters", "30", "--out", str(tmp_path))
    assert code == 0, err
    names = ["SGD (lr 0.01)", "Momentum (lr 0.01)", "AdaGrad (lr 0.01)", "RMSprop (lr 0.001)", "Adam (lr 0.001)",
             "AdamW (lr 0.001, wd 0.01)"]
    rows = _table_rows(out, names)
    for name, (loss, train_acc, test_acc, ms) in rows.items():
        assert 0 < loss < 2.4, name  # below ln(10) = 2.30 + noise: every optimizer moved
        assert 0 <= train_acc <= 1 and 0 <= test_acc <= 1 and ms > 0
    # The book's point: after the same steps AdaGrad's loss is far below SGD's.
    assert rows["AdaGrad (lr 0.01)"][0] < rows["SGD (lr 0.01)"][0]
    assert_png(tmp_path / "experiment_optimizers.png")


@needs_sklearn
@needs_matplotlib
def test_experiment_init(tmp_path, capsys):
    code, out, err = run(capsys, "experiment", "init", "--iters", "60", "--out", str(tmp_path))
    assert code == 0, err
    rows = _table_rows(out, ["std=0.01", "Xavier", "He"])
    # std=0.01 does not learn in 60 steps (loss stays at ln 10); He learns fastest.
    assert rows["std=0.01"][0] == pytest.approx(np.log(10), abs=0.01)
    assert rows["He"][0] < rows["Xavier"][0] < rows["std=0.01"][0]
    assert_png(tmp_path / "experiment_init.png")


@needs_matplotlib
def test_experiment_activations(tmp_path, capsys):
    code, out, err = run(capsys, "experiment", "activations", "--out", str(tmp_path))
    assert code == 0, err
    stats = {}
    for line in out.splitlines():
        m = re.match(r"^(\S.*?)\s{2,}((?:-?[0-9.]+/[0-9.]+\s*){5})$", line)
        if m:
            stats[m.group(1)] = [tuple(map(float, c.split("/"))) for c in m.group(2).split()]
    assert len(stats) == 7, out
    # Figure 6-11: std=0.01 sigmoid activations collapse at 0.5; Figure 6-14: ReLU with std=0.01 vanishes,
    # He keeps the spread layer after layer.
    assert all(abs(m - 0.5) < 0.01 and s < 0.05 for m, s in stats["sigmoid, std=0.01"])
    assert stats["ReLU, std=0.01"][-1][1] < 1e-3
    he = [s for _, s in stats["ReLU, He"]]
    assert max(he) / min(he) < 1.5
    xavier = [s for _, s in stats["ReLU, Xavier"]]
    assert xavier[-1] < 0.5 * xavier[0]
    assert_png(tmp_path / "experiment_activations.png")


@needs_sklearn
@needs_matplotlib
def test_experiment_batchnorm(tmp_path, capsys):
    code, out, err = run(capsys, "experiment", "batchnorm", "--epochs", "3", "--scales", "2", "--out", str(tmp_path))
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if re.match(r"^[0-9.]+e[-+][0-9]+\s", line)]
    assert [r[0] for r in rows] == ["1.00e+00", "1.00e-04"]
    for r in rows:
        assert all(0 <= float(v) <= 1 for v in r[1:])
    # With scale 1e-4 the plain net cannot start learning; batch normalization can.
    assert float(rows[1][1]) > float(rows[1][2])
    assert_png(tmp_path / "experiment_batchnorm.png")


@needs_sklearn
@needs_matplotlib
def test_experiment_overfit(tmp_path, capsys):
    code, out, err = run(capsys, "experiment", "overfit", "--epochs", "3", "--out", str(tmp_path))
    assert code == 0, err
    rows = _table_rows(out, ["no regularisation", "weight decay (lambda 0.1)", "dropout (ratio 0.2)"])
    for epochs, train_acc, test_acc, gap in rows.values():
        assert epochs == 3
        assert 0 <= train_acc <= 1 and 0 <= test_acc <= 1
        assert gap == pytest.approx(train_acc - test_acc, abs=2e-4)
    assert "300 training images, 360 test images" in out
    assert_png(tmp_path / "experiment_overfit.png")


def test_the_command_line_flushes_runs_exit_handlers_and_keeps_its_exit_code():
    """``run`` ends the process with os._exit after the command: its piped output is complete, exit handlers
    registered by the command's libraries still run, and the command's code is the process's."""
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('exit handler ran'))\n"
              "from fastnn import __main__ as cli\n"
              "cli.main = lambda: print('partial line, no newline', end='') or 3\n"
              "cli.run()\n"
              "print('not reached')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stdout == "partial line, no newlineexit handler ran\n"


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """``fastnn ... | head``: no BrokenPipeError traceback, status 1. The command writes more than a pipe holds, so
    it is still writing when the reader closes."""
    script = ("from fastnn import __main__ as cli\n"
              "cli.main = lambda: print('x' * 1_000_000) or 0\n"
              "cli.run()\n")
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        first = process.stdout.read(10)
        process.stdout.close()
        err = process.stderr.read()
        code = process.wait(timeout=120)
    assert first == b"x" * 10
    assert err == b"" and code == 1

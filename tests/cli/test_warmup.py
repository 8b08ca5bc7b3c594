"""``python -m fastnn warmup`` fills the on-disk cache from the kernel registry; long commands are quiet in a pipe
or under ``--quiet``; the demo's compile worker compiles the backward half of a step."""

from __future__ import annotations

import glob
import io
import os
import subprocess
import sys

import pytest

from fastnn import _compiling
from fastnn.__main__ import main
from fastnn.bench_cases import CASES
from fastnn.cli import progress_bar, warmup

_COUNT = """
import numpy as np
from fastnn import kernels
from fastnn import _compiling
with _compiling.watch() as done:
    for shape in [(2, 3, 4, 5), (100, 30, 24, 24)]:  # the registry's tiny and mnist sizes: serial and parallel twins
        x = np.ones(shape, np.float32)
        kernels.relu_forward(x)
        kernels.relu_backward(x, x)
print(done.count)
"""


def _env(cache, **extra):
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache), "FASTNN_NUMBA_CACHE": "1", **extra}


def test_tasks_cover_every_registry_case_once_per_dtype_by_family():
    units = warmup.tasks(["float32", "float64"])
    names = [(n, dtype) for _, dtype, names in units for n in names]
    assert sorted(names) == sorted((n, d) for n, c in CASES.items() for d in ("float32", "float64") if d in c.dtypes)
    assert len({(family, dtype) for family, dtype, _ in units}) == len(units)  # one unit per family and dtype
    for family, _, names in units:
        assert {CASES[n].module for n in names} == {family}
    last = [family in warmup.LAST for family, _, _ in units]
    assert last == sorted(last) and any(last)  # the training steps come after every family they chain
    assert [(f, d, n) for f, d, n in warmup.tasks(["float64"], "^relu_")] == [
        ("activations_losses", "float64", ("relu_forward", "relu_backward"))]


def test_warmup_fills_the_cache_a_new_process_then_compiles_nothing(tmp_path):
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "fastnn", "warmup", "--filter", "^relu_", "--dtype", "float32", "--jobs", "1"]
    # FASTNN_PARALLEL_MIN_WORK is the user's to set; warmup must restore it for the rest of its process
    done = subprocess.run(cmd, env=_env(cache), capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warmup: 4 kernels compiled (float32; 1 families"), done.stdout
    assert str(cache) in lines[0] and done.stderr == ""  # a pipe gets the summary, no bar
    loaded = subprocess.run([sys.executable, "-c", _COUNT], env=_env(cache), capture_output=True, text=True,
                            timeout=600, check=False)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["0"]
    again = subprocess.run([*cmd, "--quiet"], env=_env(cache), capture_output=True, text=True, timeout=600,
                           check=False)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


@pytest.mark.parametrize("argv, message", [
    (["--dtype", "float16"], "--dtype must be float32, float64 or both"),
    (["--filter", "no-such-case"], "no registry case matches --filter 'no-such-case'"),
    (["--filter", "("], "--filter is not a regular expression"),
])
def test_bad_options_are_messages(argv, message, capsys):
    assert main(["warmup", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastnn warmup: ") and message in err


def test_no_cache_to_fill_is_a_message(monkeypatch, capsys):
    from fastnn import config

    monkeypatch.setattr(config, "CACHE", False)
    assert _compiling.cache_dir() is None
    assert main(["warmup", "--filter", "^relu_forward$"]) == 1
    assert "no on-disk cache to fill" in capsys.readouterr().err
    assert _compiling.in_worker(print, "never run").join() is False  # nothing to share: no process is started


def test_compile_workers_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("FASTNN_COMPILE_WORKERS", "0")
    assert _compiling.in_worker(print, "never run").join() is False


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_only_on_a_terminal_and_never_when_quiet():
    pytest.importorskip("tqdm")
    assert progress_bar(3, "x", " y", stream=io.StringIO()) is None
    assert progress_bar(3, "x", " y", stream=_Terminal(), quiet=True) is None
    bar = progress_bar(3, "x", " y", stream=_Terminal())
    assert bar is not None and bar.total == 3
    bar.close()


def test_bench_quiet_and_piped_output_is_the_table_only(capsys):
    from fastnn import bench

    assert bench.main(["--filter", "^relu_forward$", "--size", "tiny", "--dtype", "float32", "--repeat", "1",
                       "--no-triad", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "relu_forward" in out.splitlines()[-1]


@pytest.mark.parametrize("argv", [["demo", "--quiet", "--epochs", "1"], ["experiment", "optimizers", "--quiet"]])
def test_long_commands_take_quiet(argv):
    from fastnn.__main__ import build_parser

    assert build_parser().parse_args(argv).quiet is True


def test_compile_backward_compiles_the_backward_half_only(tmp_path):
    """The demo's worker: forward ops on the NumPy twins except the ReLU's (cheap, and reached long before the
    user's process would), so its cache holds the backward kernels and no other forward one (no optimizer was
    built, so no step body either)."""
    script = """
import numpy as np
from fastnn._compiling import compile_backward
from fastnn.nets import MultiLayerNet
net = MultiLayerNet(input_size=6, hidden_size_list=[5], output_size=3, dtype="float32")
x = np.ones((4, 6), np.float32)
compile_backward(net, x, np.array([0, 1, 2, 0]))
"""
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-c", script], env=_env(cache), capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    index = {os.path.basename(p).split("-")[0] for p in glob.glob(str(cache / "**" / "*.nbi"), recursive=True)}
    assert {"activations._relu_bwd__serial", "losses._softmax_ce_bwd__serial", "activations._relu_fwd__serial"} <= index
    assert not {n for n in index if ("fwd" in n and "_relu_fwd" not in n) or "_softmax_ce__" in n or "delta" in n
                or "optimizers" in n}, index

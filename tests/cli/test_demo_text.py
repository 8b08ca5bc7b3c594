"""``python -m fastnn demo --task text``: the char LSTM on Tiny Shakespeare, offline from the shared copy."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.checkpoint import load_arrays
from tests.cli.test_cli import assert_png, needs_matplotlib, number, run
from tests.datasets.conftest import SHARED_TINYSHAKESPEARE


@pytest.fixture
def corpus_dir():
    if not (SHARED_TINYSHAKESPEARE / "input.txt").is_file():
        pytest.skip(f"Tiny Shakespeare not found in {SHARED_TINYSHAKESPEARE} (shared data of this workplace)")
    return str(SHARED_TINYSHAKESPEARE)


@needs_matplotlib
def test_demo_text(tmp_path, capsys, corpus_dir):
    code, out, err = run(capsys, "demo", "--task", "text", "--data-dir", corpus_dir, "--steps", "40",
                         "--hidden-size", "32", "--seq-len", "16", "--batch-size", "8", "--evals", "4",
                         "--compare-steps", "3", "--generate", "120", "--out", str(tmp_path))
    assert code == 0, err
    assert "data: Tiny Shakespeare, 1003854 training and 111540 validation characters, vocabulary 65" in out
    assert "model: CharLSTM embedding 65x32 -> LSTM 32 -> affine 65" in out
    assert out.count("\n    10  ") + out.count("\n    20  ") + out.count("\n    40  ") == 3  # the eval table
    bits = number(r"validation: ([0-9.]+) bits per character", out)
    assert number(r"unigram baseline ([0-9.]+);", out) == pytest.approx(4.829, abs=1e-3)
    assert 2.0 < bits < 6.5  # 40 tiny steps: still near the baseline, but a number in the plausible range
    speedup = number(r"speed-up: ([0-9.]+)x", out)
    assert speedup == pytest.approx(number(r"NumPy reference ([0-9.]+) ms", out)
                                    / number(r"fastnn ([0-9.]+) ms", out), rel=0.1)
    assert number(r"largest relative loss difference on the same steps: ([0-9.e+-]+)\)", out) < 1e-4
    generated = out.split("generated (temperature 0.8):\n", 1)[1].split("\nparameters:", 1)[0]
    assert generated.startswith("ROMEO:\n") and len(generated) == len("ROMEO:\n") + 120
    params = load_arrays(tmp_path / "demo_text_params.npz", {
        "embed_W": ((65, 32), np.float32), "Wx": ((32, 128), np.float32), "Wh": ((32, 128), np.float32),
        "b": ((128,), np.float32), "W": ((32, 65), np.float32), "b_out": ((65,), np.float32)})
    assert np.all(np.isfinite(params["Wh"]))
    assert_png(tmp_path / "demo_text.png")
    assert "compiling kernels" not in err  # shown on stdout, with the rest of the demo's report


def test_demo_text_without_the_corpus_says_what_to_do(tmp_path, capsys):
    code, out, err = run(capsys, "demo", "--task", "text", "--data-dir", str(tmp_path / "ts"), "--no-plot")
    assert code == 1 and "Traceback" not in err
    assert err.startswith("fastnn demo: load_tinyshakespeare: could not download input.txt")
    assert "http://127.0.0.1:9/nothing/input.txt: cannot connect" in err
    assert "FASTNN_TINYSHAKESPEARE_URLS" in err
    assert not (tmp_path / "ts").exists() or not any((tmp_path / "ts").iterdir())

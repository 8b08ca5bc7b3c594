"""``python -m fastnn demo --task transformer`` on the shared Tiny Shakespeare, and the claim behind it: a small
TransformerLM learns the corpus (validation below the unigram baseline) and its NumPy-twin copy follows the same
loss trajectory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastnn import backend
from fastnn.cli.demo_text import evaluate, unigram_bits, windows
from fastnn.nets import TransformerLM
from fastnn.optim import Adam
from tests.cli.test_cli import number, run
from tests.datasets.conftest import SHARED_TINYSHAKESPEARE


@pytest.fixture
def corpus_dir():
    if not (SHARED_TINYSHAKESPEARE / "input.txt").is_file():
        pytest.skip(f"Tiny Shakespeare not found in {SHARED_TINYSHAKESPEARE} (shared data of this workplace)")
    return str(SHARED_TINYSHAKESPEARE)


def test_demo_transformer(tmp_path, capsys, corpus_dir):
    code, out, err = run(capsys, "demo", "--task", "transformer", "--data-dir", corpus_dir, "--steps", "6",
                         "--layers", "1", "--heads", "2", "--width", "16", "--seq-len", "16", "--batch-size", "8",
                         "--evals", "2", "--compare-steps", "2", "--generate", "40", "--no-plot",
                         "--out", str(tmp_path))
    assert code == 0, err
    assert "model: TransformerLM 1 pre-norm blocks x width 16, 2 heads, context 16" in out
    assert number(r"unigram baseline ([0-9.]+);", out) == pytest.approx(4.829, abs=1e-3)
    assert number(r"largest relative loss difference on the same steps: ([0-9.e+-]+)\)", out) < 1e-4
    generated = out.split("generated (temperature 0.8):\n", 1)[1].split("\nparameters:", 1)[0]
    assert generated.startswith("ROMEO:\n") and len(generated) == len("ROMEO:\n") + 40
    assert (tmp_path / "demo_transformer_params.npz").is_file()


def test_small_transformer_learns_shakespeare_and_twin_follows(corpus_dir):
    from fastnn.datasets import load_tinyshakespeare

    corpus, char_to_id, _ = load_tinyshakespeare(data_dir=corpus_dir, download=False)
    cut = int(0.9 * corpus.size)
    train, valid = corpus[:cut], corpus[cut:]
    V, T = len(char_to_id), 32
    rng = np.random.default_rng(0)
    batches = [windows(train, rng.integers(0, train.size - T - 1, 16), T) for _ in range(150)]
    starts = np.random.default_rng(2).integers(0, valid.size - T - 1, 64)
    losses = {}
    for name, steps in (("reference", 3), ("kernels", len(batches))):
        net = TransformerLM(V, T, 32, 2, 1, seed=0)
        opt = Adam(lr=0.01)
        with backend.using(name):
            losses[name] = []
            for xb, tb in batches[:steps]:
                opt.update(net.params, net.gradient(xb, tb))
                losses[name].append(float(net.last_loss))
    np.testing.assert_allclose(losses["kernels"][:3], losses["reference"], rtol=1e-5)
    bits = evaluate(net, valid, starts, T, 64) / math.log(2)
    # measured: 4.58 bits after 120 such steps, 4.83 for the unigram model
    assert bits < unigram_bits(train, valid, V) - 0.15, bits

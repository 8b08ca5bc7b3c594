"""fastnn.nets.CharLSTM: gradients by central differences, kernels = twins step by step, and real-data quality on
Tiny Shakespeare (a short training run on one core must beat the unigram model clearly)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from fastnn import backend
from fastnn.cli.demo_text import unigram_bits, windows
from fastnn.gradient import numerical_gradient
from fastnn.nets.char_lm import CharLSTM
from fastnn.optim import Adam
from tests.datasets.conftest import SHARED_TINYSHAKESPEARE

#: The real-data run: Adam steps of batch 16 x 32 characters, H = 64 (~3 s on one core), and the validation
#: bits per character it must reach (measured 3.18; the unigram baseline is 4.83).
STEPS, BITS_BELOW = 200, 3.5


def test_gradient_matches_central_differences():
    net = CharLSTM(7, 5, 3, dtype=np.float64, seed=1)
    for p in net.params.values():  # nonzero biases, so their gradients are checked at a generic point
        p += np.random.default_rng(2).normal(0, 0.3, p.shape)
    rng = np.random.default_rng(3)
    xs, ts = np.array([[1, 4, 1, 6], [0, 1, 2, 1]]), rng.integers(0, 7, (2, 4))  # repeated ids: scatter-add
    grads = net.gradient(xs, ts)
    for name, p in net.params.items():
        num = numerical_gradient(lambda _: net.loss(xs, ts), p, h=1e-5)
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-8, err_msg=name)
        assert grads[name].dtype == np.float64


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_kernels_and_twins_train_alike(dtype, rtol, single_thread):
    """The same Adam steps on fastnn's kernels and, on a copy, on the NumPy twins: the same loss trajectory."""
    net = CharLSTM(11, 9, 4, dtype=dtype, seed=4)
    twin = copy.deepcopy(net)
    opt, twin_opt = Adam(lr=0.01), Adam(lr=0.01)
    rng = np.random.default_rng(5)
    xs, ts = rng.integers(0, 11, (3, 5)), rng.integers(0, 11, (3, 5))  # one batch, learnt by heart
    fast, ref = [], []
    for _ in range(6):
        opt.update(net.params, net.gradient(xs, ts))
        with backend.using("reference"):
            twin_opt.update(twin.params, twin.gradient(xs, ts))
        fast.append(net.last_loss)
        ref.append(twin.last_loss)
    np.testing.assert_allclose(fast, ref, rtol=rtol)
    assert fast[-1] < fast[0]
    assert net.params["Wx"].dtype == dtype


def test_generate_and_bad_input():
    net = CharLSTM(5, 4, 2, seed=0)
    ids = net.generate([1, 2], 20, np.random.default_rng(0))
    assert len(ids) == 20 and all(0 <= i < 5 for i in ids)
    assert ids == net.generate([1, 2], 20, np.random.default_rng(0))  # deterministic for a given generator
    with pytest.raises(ValueError, match=r"CharLSTM.loss: xs must be ids in \[0, 5\), got values in \[0, 5\]"):
        net.loss(np.array([[0, 5]]), np.array([[0, 1]]))
    with pytest.raises(ValueError, match=r"CharLSTM.loss: ts must be the shape of xs \(1, 2\), got shape"):
        net.loss(np.array([[0, 1]]), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="CharLSTM.generate: temperature must be a finite number > 0"):
        net.generate([0], 3, np.random.default_rng(0), temperature=0)


def test_unigram_baseline():
    # train frequencies a: 3/4, b: 1/4; valid "ab": (log2(4/3) + log2(4)) / 2 bits
    assert unigram_bits(np.array([0, 0, 0, 1]), np.array([0, 1]), 3) == pytest.approx(
        (math.log2(4 / 3) + 2) / 2)
    assert unigram_bits(np.array([0, 0]), np.array([1]), 2) == math.inf


def test_short_training_beats_the_unigram_baseline_on_tiny_shakespeare(single_thread):
    """One core, ~200 Adam steps of a small char LSTM on the real corpus (first 90% / last 10%)."""
    from fastnn.datasets import load_tinyshakespeare

    if not (SHARED_TINYSHAKESPEARE / "input.txt").is_file():
        pytest.skip(f"Tiny Shakespeare not found in {SHARED_TINYSHAKESPEARE} (shared data of this workplace)")
    corpus, char_to_id, _ = load_tinyshakespeare(data_dir=SHARED_TINYSHAKESPEARE, download=False)
    cut = int(0.9 * corpus.size)
    train, valid = corpus[:cut], corpus[cut:]
    baseline = unigram_bits(train, valid, len(char_to_id))
    assert baseline == pytest.approx(4.829, abs=1e-3)  # bits per character of the context-free model
    N, T = 16, 32
    net = CharLSTM(len(char_to_id), 64, seed=0)
    twin, opt, twin_opt = copy.deepcopy(net), Adam(lr=0.01), Adam(lr=0.01)
    rng = np.random.default_rng(0)
    fast, ref = [], []
    for step in range(STEPS):
        batch = windows(train, rng.integers(0, train.size - T - 1, N), T)
        opt.update(net.params, net.gradient(*batch))
        fast.append(net.last_loss)
        if step < 3:  # the same model on the NumPy twins: the same loss trajectory
            with backend.using("reference"):
                twin_opt.update(twin.params, twin.gradient(*batch))
            ref.append(twin.last_loss)
    np.testing.assert_allclose(fast[:3], ref, rtol=1e-5)
    starts = np.random.default_rng(1).integers(0, valid.size - T - 1, 64)
    bits = net.loss(*windows(valid, starts, T)) / math.log(2)
    print(f"validation {bits:.3f} bits per character after {STEPS} steps; unigram baseline {baseline:.3f}")
    assert bits < BITS_BELOW


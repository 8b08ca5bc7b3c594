"""Real data, real training: SimpleConvNet on fastnn kernels learns handwritten digits (float32 end to end).

* MNIST: trained on the first 8,000 of the 10,000 real MNIST test images, evaluated on the other 2,000:
  >= 97% after 4 epochs (320 Adam steps of 100 images); measured 97.8%.
* scikit-learn's 8x8 digits: 1,437 training / 360 test images, >= 95% after 8 epochs; measured 98.1%.

Both run with one thread for fastnn's kernels and one for BLAS (the ``single_thread`` fixture of
tests/conftest.py): on this 2-core machine shared with other jobs, Numba's and OpenBLAS's thread pools together
oversubscribed the cores and the same MNIST run took 261 s instead of 35 s. Timing with one thread each (noisy,
shared machine): MNIST 20-35 s, digits 2-4 s.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from fastnn.datasets import load_digits, load_mnist
from fastnn.nets import SimpleConvNet
from fastnn.trainer import Trainer
from tests.conftest import SHARED_MNIST
from tests.datasets.conftest import TEST_FILES, need_shared_mnist


def _train(x, t, xt, tt, conv_param, epochs, batch_size, lr):
    net = SimpleConvNet(input_dim=x.shape[1:], conv_param=conv_param, hidden_size=100, output_size=10,
                        weight_init_std="relu", dtype=np.float32, seed=0)
    trainer = Trainer(net, x, t, xt, tt, epochs=epochs, mini_batch_size=batch_size, optimizer="Adam",
                      optimizer_param={"lr": lr}, evaluate_sample_num_per_epoch=500, verbose=False, seed=0,
                      progress=False)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    for k, p in net.params.items():
        assert p.dtype == np.float32, k  # float32 stays float32 through training
    assert np.all(np.isfinite(trainer.train_loss_list))
    # the loss came down: mean of the last 20 batches far below the first batch's ~2.3
    assert np.mean(trainer.train_loss_list[-20:]) < 0.3 < trainer.train_loss_list[0]
    print(f"{result.iterations} steps, {seconds:.1f} s, train acc {result.train_acc:.4f}, test acc "
          f"{result.test_acc:.4f}")
    return result


def test_simpleconvnet_on_real_mnist_reaches_97_percent(single_thread):
    need_shared_mnist(*TEST_FILES)
    ((x, t),) = load_mnist(flatten=False, data_dir=SHARED_MNIST, download=False, subsets=("test",))
    assert x.dtype == np.float32 and x.shape == (10000, 1, 28, 28)
    result = _train(x[:8000], t[:8000], x[8000:], t[8000:],
                    {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}, epochs=4, batch_size=100,
                    lr=0.003)
    assert result.iterations == 320
    assert result.test_acc >= 0.97


def test_simpleconvnet_on_sklearn_digits_reaches_95_percent(single_thread):
    pytest.importorskip("sklearn", reason="scikit-learn (examples extra) not installed")
    (x, t), (xt, tt) = load_digits(flatten=False)
    result = _train(x, t, xt, tt, {"filter_num": 30, "filter_size": 3, "pad": 1, "stride": 1}, epochs=8,
                    batch_size=50, lr=0.003)
    assert result.test_acc >= 0.95

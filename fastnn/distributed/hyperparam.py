"""The book's random hyperparameter search (``ch06/hyperparameter_optimization.py``) as trials for Dask.

The book keeps the first 500 MNIST training images, shuffles them, holds out 20% (100) for validation and trains a
6x100 ReLU :class:`~fastnn.nets.MultiLayerNet` with its ``Trainer`` (SGD, batch 100, 50 epochs) for 100 trials of
learning rate ``10 ** U(-6, -2)`` and weight decay ``10 ** U(-8, -4)``, then plots the validation curves of the best
20. Here each trial is one call of :func:`train`; :data:`SPACE` is the book's space.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._search import LogUniform

__all__ = ["BOOK", "SPACE", "split", "train", "warm"]

#: The book's space, drawn in its order (weight decay, then learning rate).
SPACE = {"weight_decay": LogUniform(-8, -4), "lr": LogUniform(-6, -2)}

#: The book's settings: trials, training rows kept, validation share, epochs, batch, hidden layers.
BOOK = {"trials": 100, "train_size": 500, "validation_rate": 0.2, "epochs": 50, "batch_size": 100,
        "hidden": (100, 100, 100, 100, 100, 100), "top": 20}


def split(x: np.ndarray, t: np.ndarray, *, train_size: int = 500, validation_rate: float = 0.2,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, t_train, x_val, t_val)``: the first ``train_size`` rows, shuffled (the book's
    ``shuffle_dataset``, here by ``default_rng(seed).permutation``), the first ``int(train_size *
    validation_rate)`` of them held out for validation."""
    x, t = x[:train_size], t[:train_size]
    order = np.random.default_rng(seed).permutation(len(x))
    x, t = x[order], t[order]
    n_val = int(len(x) * validation_rate)
    return x[n_val:], t[n_val:], x[:n_val], t[:n_val]


def train(params: dict[str, Any], seed: int, data: tuple, epochs: int = 50, batch_size: int = 100
          ) -> dict[str, Any]:
    """One trial: the book's ``__train(lr, weight_decay)``.

    ``data`` is ``(x_train, t_train, x_val, t_val)`` (:func:`split`). Weights come from ``default_rng([seed, 0])``
    and batches from ``default_rng([seed, 1])``. A diverging learning rate gives NaN losses and chance accuracy, as
    in the book; it is a result, not an error.

    Returns ``{'val_acc': [...], 'train_acc': [...], 'final_val_acc', 'final_loss'}``, accuracies once per epoch.
    """
    from ..nets import MultiLayerNet
    from ..trainer import Trainer

    x, t, xv, tv = data
    net = MultiLayerNet(x.shape[1], list(BOOK["hidden"]), 10, weight_decay_lambda=params["weight_decay"],
                        dtype=x.dtype, seed=np.random.default_rng([seed, 0]))
    trainer = Trainer(net, x, t, xv, tv, epochs=epochs, mini_batch_size=batch_size, optimizer="sgd",
                      optimizer_param={"lr": params["lr"]}, verbose=False, seed=np.random.default_rng([seed, 1]),
                      progress=False)
    with np.errstate(all="ignore"):  # large learning rates overflow; the NaN they give is the result
        trainer.train()
    return {"val_acc": trainer.test_acc_list, "train_acc": trainer.train_acc_list,
            "final_val_acc": trainer.test_acc_list[-1], "final_loss": trainer.train_loss_list[-1]}


def warm(data: tuple) -> None:
    """Compile (or load from the cache) every kernel a trial uses: one epoch of a trial."""
    train({"lr": 1e-3, "weight_decay": 1e-6}, 0, data, epochs=1)

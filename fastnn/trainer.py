"""The training loop of Deep Learning from Scratch (``common/trainer.py``), with reproducible batches, a progress
bar and a result object.

Any network with the book's interface works: ``params`` (dict of arrays), ``gradient(x, t)`` (dict of arrays of
the same keys), ``loss(x, t)`` and ``accuracy(x, t)``.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from . import _validate, optim

__all__ = ["Trainer", "TrainResult"]

#: The book's default ``optimizer_param={'lr': 0.01}``, read-only so the shared default cannot be mutated.
_DEFAULT_OPTIMIZER_PARAM: Mapping[str, Any] = MappingProxyType({"lr": 0.01})


@dataclass(frozen=True)
class TrainResult:
    """What :meth:`Trainer.train` returns.

    Attributes
    ----------
    train_acc : float
        Accuracy on the training sample evaluated each epoch (all of ``x_train``, or its first
        ``evaluate_sample_num_per_epoch`` rows), after the last step.
    test_acc : float
        Accuracy on all of ``x_test`` after the last step (the book's "Final Test Accuracy").
    final_loss : float
        The last mini-batch loss recorded (nan when no step ran).
    iterations : int
        Steps run by this call.
    epochs : int
        Epochs evaluated so far (the trainer's ``current_epoch``).
    wall_time : float
        Seconds spent in this call, evaluation included.
    """

    train_acc: float
    test_acc: float
    final_loss: float
    iterations: int
    epochs: int
    wall_time: float


class Trainer:
    """Trains ``network`` by mini-batch gradient descent, as the book's ``Trainer``.

    Each step draws ``mini_batch_size`` training rows at random *with replacement* (the book's
    ``np.random.choice(train_size, batch_size)``), computes ``network.gradient``, lets the optimizer update
    ``network.params`` in place and records ``network.loss`` on the batch after the update. At the first step of
    each epoch it records train and test accuracy. One epoch is ``max(train_size / mini_batch_size, 1)`` steps
    and ``train()`` runs ``int(epochs * that)`` steps.

    Parameters
    ----------
    network : object
        Has ``params``, ``gradient(x, t)``, ``loss(x, t)`` and ``accuracy(x, t)``.
    x_train, t_train : ndarray
        Training inputs (N, ...) and labels (N,) or one-hot (N, K); N >= 1.
    x_test, t_test : ndarray
        Test inputs and labels.
    epochs : int
        Epochs to train, >= 1.
    mini_batch_size : int
        Rows per step, >= 1.
    optimizer : str or Optimizer
        A name for :func:`fastnn.optim.get` (``'SGD'``, ``'Adam'`` ..., any case) or an object with
        ``update(params, grads)`` (then ``optimizer_param`` must be left at its default).
    optimizer_param : dict
        Hyperparameters for a named optimizer. Default ``{'lr': 0.01}`` as the book, whatever the optimizer.
    evaluate_sample_num_per_epoch : int or None
        Evaluate the per-epoch accuracies on the first this many rows of the train and test sets (None: all).
    verbose : bool
        Print as the book does: ``train loss:`` every step, one line per epoch and the final test accuracy.
        With a progress bar the per-step lines are left out (the bar shows the loss).
    seed : int, numpy.random.Generator or None
        Batch sampling: an int seeds a private ``np.random.default_rng(seed)`` (same seed, same batches);
        a Generator is used as is; None draws from NumPy's global generator as the book does, so
        ``np.random.seed(...)`` still controls it.
    progress : bool or None
        Show a tqdm progress bar with the loss and the accuracies. None: when ``verbose`` is on, stdout is a
        terminal and tqdm can be imported. True forces it (falling back, with a warning, to the book's prints
        if tqdm is missing); False never shows it.

    Attributes
    ----------
    train_loss_list : list of float
        Loss after every step.
    train_acc_list, test_acc_list : list of float
        Accuracies at the first step of every epoch.
    optimizer : Optimizer
        The optimizer in use (built from its name, or the instance given).
    """

    def __init__(self, network: Any, x_train: np.ndarray, t_train: np.ndarray, x_test: np.ndarray,
                 t_test: np.ndarray, epochs: int = 20, mini_batch_size: int = 100, optimizer: str | Any = "SGD",
                 optimizer_param: Mapping[str, Any] = _DEFAULT_OPTIMIZER_PARAM,
                 evaluate_sample_num_per_epoch: int | None = None, verbose: bool = True, *,
                 seed: int | np.random.Generator | None = None, progress: bool | None = None) -> None:
        where = "Trainer"
        for attr in ("params", "gradient", "loss", "accuracy"):
            if not hasattr(network, attr):
                _validate.fail(where, "network", "an object with params, gradient(x, t), loss(x, t) and "
                               "accuracy(x, t)", f"{type(network).__name__} without {attr!r}", TypeError)
        for name, x, t in (("x_train", x_train, t_train), ("x_test", x_test, t_test)):
            if not hasattr(x, "shape") or not hasattr(t, "shape"):
                _validate.fail(where, f"{name} and its labels", "arrays", f"{type(x).__name__} and "
                               f"{type(t).__name__}", TypeError)
            if len(x) != len(t):
                _validate.fail(where, f"the labels of {name}", f"{len(x)} rows like {name}", f"{len(t)} rows")
        if len(x_train) < 1:
            _validate.fail(where, "x_train", "at least 1 row", "0 rows")
        self.epochs = _validate.integer(epochs, where, "epochs", minimum=1)
        self.batch_size = _validate.integer(mini_batch_size, where, "mini_batch_size", minimum=1)
        if evaluate_sample_num_per_epoch is not None:
            evaluate_sample_num_per_epoch = _validate.integer(evaluate_sample_num_per_epoch, where,
                                                              "evaluate_sample_num_per_epoch", minimum=1)
        if progress is not None and not isinstance(progress, bool):
            _validate.fail(where, "progress", "None, True or False", repr(progress), TypeError)
        if isinstance(optimizer, str):
            if not isinstance(optimizer_param, Mapping):
                _validate.fail(where, "optimizer_param", "a dict of hyperparameters",
                               type(optimizer_param).__name__, TypeError)
            self.optimizer = optim.get(optimizer, **optimizer_param)
        elif callable(getattr(optimizer, "update", None)):
            if optimizer_param is not _DEFAULT_OPTIMIZER_PARAM and optimizer_param:
                _validate.fail(where, "optimizer_param", "left out when optimizer is an instance (set its "
                               "hyperparameters when you build it)", dict(optimizer_param))
            self.optimizer = optimizer
        else:
            _validate.fail(where, "optimizer", "a name such as 'Adam' or an object with update(params, grads)",
                           f"{type(optimizer).__name__} {optimizer!r}", TypeError)
        if seed is None or isinstance(seed, np.random.Generator):
            self._rng = seed
        else:
            self._rng = np.random.default_rng(_validate.integer(seed, where, "seed", minimum=0))

        self.network = network
        self.verbose = bool(verbose)
        self.progress = progress
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.train_size = len(x_train)
        self.iter_per_epoch = max(self.train_size / self.batch_size, 1)
        self.max_iter = int(self.epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0
        self.train_loss_list: list[float] = []
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []
        self._bar: Any = None

    # -- one step --------------------------------------------------------------------------------------------------
    def _batch_indices(self) -> np.ndarray:
        if self._rng is None:
            # Deliberately the legacy global generator: scripts from the book seed it with np.random.seed.
            return np.random.choice(self.train_size, self.batch_size)  # noqa: NPY002
        return self._rng.integers(0, self.train_size, self.batch_size)

    def _epoch_starts(self, i: int) -> bool:
        """Whether step ``i`` is the first of an epoch.

        The book tests ``i % iter_per_epoch == 0`` on a float, which for a fractional ``iter_per_epoch``
        (train size not a multiple of the batch) is true at step 0 only. Steps are split into ``epochs`` equal
        runs instead: for a whole ``iter_per_epoch`` this is the book's rule, otherwise every epoch still gets
        its evaluation.
        """
        return i == 0 or (i * self.epochs) // self.max_iter != ((i - 1) * self.epochs) // self.max_iter

    def _samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = self.evaluate_sample_num_per_epoch
        if n is None:
            return self.x_train, self.t_train, self.x_test, self.t_test
        return self.x_train[:n], self.t_train[:n], self.x_test[:n], self.t_test[:n]

    def train_step(self) -> float:
        """One mini-batch update; at an epoch's first step also the accuracies. Returns the batch loss."""
        mask = self._batch_indices()
        x_batch, t_batch = self.x_train[mask], self.t_train[mask]
        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = float(self.network.loss(x_batch, t_batch))
        self.train_loss_list.append(loss)
        if self.verbose and self._bar is None:
            print("train loss:" + str(loss))

        if self._epoch_starts(self.current_iter):
            self.current_epoch += 1
            x_tr, t_tr, x_te, t_te = self._samples()
            train_acc = float(self.network.accuracy(x_tr, t_tr))
            test_acc = float(self.network.accuracy(x_te, t_te))
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.verbose:
                self._write(f"=== epoch:{self.current_epoch}, train acc:{train_acc}, test acc:{test_acc} ===")
        self.current_iter += 1
        if self._bar is not None:
            acc = (f", train acc {self.train_acc_list[-1]:.4f}, test acc {self.test_acc_list[-1]:.4f}"
                   if self.test_acc_list else "")
            self._bar.set_description(f"epoch {self.current_epoch}/{self.epochs}", refresh=False)
            self._bar.set_postfix_str(f"loss {loss:.4f}{acc}", refresh=False)
            self._bar.update(1)
        return loss

    # -- the loop --------------------------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run ``max_iter`` steps, then evaluate; returns a :class:`TrainResult`."""
        start = time.perf_counter()
        self._bar = self._open_bar()
        try:
            for _ in range(self.max_iter):
                self.train_step()
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        x_tr, t_tr, _, _ = self._samples()
        train_acc = float(self.network.accuracy(x_tr, t_tr))
        test_acc = float(self.network.accuracy(self.x_test, self.t_test))
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))
        return TrainResult(train_acc=train_acc, test_acc=test_acc,
                           final_loss=self.train_loss_list[-1] if self.train_loss_list else float("nan"),
                           iterations=self.max_iter, epochs=self.current_epoch,
                           wall_time=time.perf_counter() - start)

    def _open_bar(self) -> Any:
        """A tqdm bar on stdout, or None (tqdm is optional: imported only when a bar is wanted)."""
        want = self.progress
        if want is None:
            isatty = getattr(sys.stdout, "isatty", None)
            want = self.verbose and callable(isatty) and isatty()
        if not want:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            if self.progress:  # asked for explicitly: say why there is none
                warnings.warn("Trainer: progress=True needs tqdm (pip install tqdm); printing as the book does",
                              RuntimeWarning, stacklevel=3)
            return None
        return tqdm(total=self.max_iter, file=sys.stdout, unit="step", dynamic_ncols=True, leave=True)

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line)

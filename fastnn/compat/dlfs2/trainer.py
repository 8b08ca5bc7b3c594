"""Deep Learning from Scratch 2's ``common/trainer.py``: ``Trainer``, ``RnnlmTrainer`` and ``remove_duplicate``.

The loops are the book's, with the book's random draws (``Trainer`` shuffles with ``numpy.random.permutation``
each epoch; ``RnnlmTrainer`` reads ``batch_size`` streams at evenly spaced offsets, no randomness), so a seeded
script gives the book's numbers. Gradients are merged by :func:`remove_duplicate`, clipped by the fused
:func:`fastnn.kernels.clip_grads` when ``max_grad`` is given, and applied by the optimizer's fused steps.
Differences: arguments are validated before training starts (``max_grad`` must be a finite number >= 0, sizes
positive and the data long enough for one batch), and ``plot`` imports matplotlib only when called.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ... import _validate
from .util import clip_grads

__all__ = ["Trainer", "RnnlmTrainer", "remove_duplicate"]


def _check_fit(where: str, n: int, per_iter: int, max_epoch: Any, max_grad: Any, eval_interval: Any) -> None:
    _validate.integer(max_epoch, where, "max_epoch", minimum=0)
    if max_grad is not None:
        _validate.scalar(max_grad, where, "max_grad", ge=0.0)
    if eval_interval is not None:
        _validate.integer(eval_interval, where, "eval_interval", minimum=1)
    if n < per_iter:
        _validate.fail(where, "the data", f"at least one batch ({per_iter} items)", f"{n} items")


def _step(model: Any, optimizer: Any, batch: tuple[Any, Any], max_grad: float | None) -> Any:
    """One of the book's iterations: forward, backward, tied weights merged, clipping, update; returns the loss."""
    loss = model.forward(*batch)
    model.backward()
    params, grads = remove_duplicate(model.params, model.grads)  # tied weights merged into one
    if max_grad is not None:
        clip_grads(grads, max_grad)
    optimizer.update(params, grads)
    return loss


def _train(trainer: Any, epoch: Callable[[], Iterable[tuple[Any, Any]]], max_epoch: int, max_iters: int,
           max_grad: float | None, eval_interval: int | None, label: str, measure: Callable[[Any], Any],
           values: list[float]) -> None:
    """The book's training loop, shared by both trainers: ``max_epoch`` passes over the batches ``epoch()``
    yields (``max_iters`` of them), one :func:`_step` each; every ``eval_interval`` iterations the mean loss since
    the last report goes through ``measure`` (the loss itself, or its exp: the perplexity), is printed as the
    book prints it under ``label`` and appended to ``values``."""
    total_loss = 0
    loss_count = 0
    start_time = time.time()
    for _ in range(max_epoch):
        for iters, batch in enumerate(epoch()):
            total_loss += _step(trainer.model, trainer.optimizer, batch, max_grad)
            loss_count += 1
            if eval_interval is not None and iters % eval_interval == 0:
                value = measure(total_loss / loss_count)
                elapsed_time = time.time() - start_time
                print(f'| epoch {trainer.current_epoch + 1} |  iter {iters + 1} / {max_iters} | '
                      f'time {int(elapsed_time)}[s] | {label} {value:.2f}')
                values.append(float(value))
                total_loss, loss_count = 0, 0
        trainer.current_epoch += 1


class Trainer:
    """Mini-batch training of ``model`` (``forward(x, t)`` returning the loss, ``backward()``, ``params``,
    ``grads``) with ``optimizer``; the average loss every ``eval_interval`` iterations goes to ``loss_list``."""

    def __init__(self, model: Any, optimizer: Any) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss_list: list[float] = []
        self.eval_interval = None
        self.current_epoch = 0

    def fit(self, x: Any, t: Any, max_epoch: int = 10, batch_size: int = 32, max_grad: float | None = None,
            eval_interval: int | None = 20) -> None:
        batch_size = _validate.integer(batch_size, "Trainer.fit", "batch_size", minimum=1)
        data_size = len(x)
        _check_fit("Trainer.fit", data_size, batch_size, max_epoch, max_grad, eval_interval)
        max_iters = data_size // batch_size
        self.eval_interval = eval_interval

        def epoch() -> Iterator[tuple[Any, Any]]:
            nonlocal x, t
            idx = np.random.permutation(np.arange(data_size))  # noqa: NPY002 -- the book's draws
            x = x[idx]
            t = t[idx]
            for iters in range(max_iters):
                yield x[iters * batch_size:(iters + 1) * batch_size], t[iters * batch_size:(iters + 1) * batch_size]

        _train(self, epoch, max_epoch, max_iters, max_grad, eval_interval, 'loss', float, self.loss_list)

    def plot(self, ylim: Any = None) -> None:
        _plot(self.loss_list, self.eval_interval, 'loss', ylim)


class RnnlmTrainer:
    """Truncated-BPTT training of a language model on one long id sequence ``xs`` (inputs) and ``ts`` (targets):
    ``batch_size`` streams, ``time_size`` steps per batch; the perplexity every ``eval_interval`` iterations goes
    to ``ppl_list``."""

    def __init__(self, model: Any, optimizer: Any) -> None:
        self.model = model
        self.optimizer = optimizer
        self.time_idx = None
        self.ppl_list = None
        self.eval_interval = None
        self.current_epoch = 0

    def get_batch(self, x: Any, t: Any, batch_size: int, time_size: int) -> tuple[np.ndarray, np.ndarray]:
        """The next (batch_size, time_size) int32 windows of the streams; advances ``time_idx`` by ``time_size``."""
        data_size = len(x)
        jump = data_size // batch_size
        pos = (np.arange(batch_size)[:, None] * jump + self.time_idx + np.arange(time_size)[None, :]) % data_size
        self.time_idx += time_size
        return np.asarray(x)[pos].astype(np.int32), np.asarray(t)[pos].astype(np.int32)

    def fit(self, xs: Any, ts: Any, max_epoch: int = 10, batch_size: int = 20, time_size: int = 35,
            max_grad: float | None = None, eval_interval: int | None = 20) -> None:
        where = "RnnlmTrainer.fit"
        batch_size = _validate.integer(batch_size, where, "batch_size", minimum=1)
        time_size = _validate.integer(time_size, where, "time_size", minimum=1)
        data_size = len(xs)
        if len(ts) != data_size:
            _validate.fail(where, "ts", f"as long as xs ({data_size})", len(ts))
        _check_fit(where, data_size, batch_size * time_size, max_epoch, max_grad, eval_interval)
        max_iters = data_size // (batch_size * time_size)
        self.time_idx = 0
        self.ppl_list = []
        self.eval_interval = eval_interval

        def epoch() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            return (self.get_batch(xs, ts, batch_size, time_size) for _ in range(max_iters))

        _train(self, epoch, max_epoch, max_iters, max_grad, eval_interval, 'perplexity', np.exp, self.ppl_list)

    def plot(self, ylim: Any = None) -> None:
        _plot(self.ppl_list, self.eval_interval, 'perplexity', ylim)


def _plot(values: list[float], eval_interval: Any, label: str, ylim: Any) -> None:
    import matplotlib.pyplot as plt  # optional: only plotting needs it

    if ylim is not None:
        plt.ylim(*ylim)
    plt.plot(np.arange(len(values)), values, label='train')
    plt.xlabel('iterations (x' + str(eval_interval) + ')')
    plt.ylabel(label)
    plt.show()


def _transposed_tie(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``b`` equals ``a.T`` (2-D both): the book compares values; a view of ``a``'s memory with swapped
    strides (``TimeAffine(embed_W.T, b)``) is recognised without reading the arrays."""
    if a.ndim != 2 or b.ndim != 2 or a.T.shape != b.shape:
        return False
    if (a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.strides[::-1] == b.strides
            and a.dtype == b.dtype):
        return True
    return bool(np.all(a.T == b))


def remove_duplicate(params: list, grads: list) -> tuple[list, list]:
    """Merge weights that appear more than once in ``params`` (the same array, or one array and its transpose, a
    tied embedding): the first occurrence stays, the gradients of the others are added into its gradient array
    **in place** (``grads[i] += grads[j]``, or ``grads[j].T`` for a transposed tie), and the others are dropped.
    Returns new lists (the arguments' lists are not changed; their gradient arrays are), as the book's.
    """
    params, grads = params[:], grads[:]
    i = 0
    while i < len(params) - 1:
        j = i + 1
        while j < len(params):
            if params[i] is params[j]:
                grads[i] += grads[j]
            elif _transposed_tie(params[i], params[j]):
                grads[i] += grads[j].T
            else:
                j += 1
                continue
            params.pop(j)
            grads.pop(j)
        i += 1
    return params, grads

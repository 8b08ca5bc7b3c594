"""The helpers of Deep Learning from Scratch 2's ``common/util.py`` that its training scripts import:
``clip_grads``, ``eval_perplexity``, ``eval_seq2seq``, ``to_cpu``, ``to_gpu``.

``clip_grads`` is one fused kernel (:func:`fastnn.kernels.clip_grads`): the global norm accumulated in float64,
the gradients scaled in place by ``max_norm / (norm + 1e-6)`` when that is below 1, as the book's.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from ... import _validate
from ...backend import ops

__all__ = ["clip_grads", "eval_perplexity", "eval_seq2seq", "to_cpu", "to_gpu"]


def clip_grads(grads: list, max_norm: float) -> None:
    """Scale ``grads`` (a list of arrays) in place so that their global L2 norm is at most ``max_norm``.

    Raises before any gradient is touched when ``max_norm`` is not a finite number >= 0 or a gradient is not a
    writeable float array.
    """
    ops.clip_grads(grads, max_norm)


def to_cpu(x: Any) -> np.ndarray:
    """The book's CuPy-to-NumPy helper: fastnn arrays are NumPy arrays already."""
    return x if isinstance(x, np.ndarray) else np.asarray(x)


def to_gpu(x: Any) -> np.ndarray:
    """The book moves arrays to CuPy; fastnn runs on the CPU, so arrays stay NumPy arrays."""
    return to_cpu(x)


def eval_perplexity(model: Any, corpus: Any, batch_size: int = 10, time_size: int = 35) -> np.floating:
    """Perplexity of ``model`` on ``corpus`` read as the book does: ``batch_size`` streams at evenly spaced offsets,
    ``time_size`` steps per forward pass (``model.forward(xs, ts, train_flg=False)``, or ``model.forward(xs, ts)``
    for models without that argument); the exponential of the mean loss."""
    where = "eval_perplexity"
    batch_size = _validate.integer(batch_size, where, "batch_size", minimum=1)
    time_size = _validate.integer(time_size, where, "time_size", minimum=1)
    corpus = np.asarray(corpus)
    print('evaluating perplexity ...')
    corpus_size = len(corpus)
    total_loss = 0
    max_iters = (corpus_size - 1) // (batch_size * time_size)
    if max_iters < 1:
        _validate.fail(where, "corpus", f"longer than batch_size * time_size + 1 = {batch_size * time_size + 1}",
                       f"{corpus_size} ids")
    jump = (corpus_size - 1) // batch_size
    steps = np.arange(time_size)
    for iters in range(max_iters):
        offsets = iters * time_size + np.arange(batch_size) * jump
        pos = offsets[:, None] + steps[None, :]
        xs = corpus[pos % corpus_size].astype(np.int32)
        ts = corpus[(pos + 1) % corpus_size].astype(np.int32)
        try:
            loss = model.forward(xs, ts, train_flg=False)
        except TypeError:
            loss = model.forward(xs, ts)
        total_loss += loss
        sys.stdout.write(f'\r{iters} / {max_iters}')
        sys.stdout.flush()
    print('')
    return np.exp(total_loss / max_iters)


def eval_seq2seq(model: Any, question: Any, correct: Any, id_to_char: dict, verbose: bool = False,
                 is_reverse: bool = False) -> int:
    """1 when ``model.generate`` answers ``question`` with ``correct`` (whose first id is the start mark), else 0;
    ``verbose`` prints the question, the answer and the guess as the book does."""
    correct = np.asarray(correct).flatten()
    start_id = correct[0]
    correct = correct[1:]
    guess = model.generate(question, start_id, len(correct))
    question = ''.join([id_to_char[int(c)] for c in np.asarray(question).flatten()])
    correct = ''.join([id_to_char[int(c)] for c in correct])
    guess = ''.join([id_to_char[int(c)] for c in guess])
    if verbose:
        if is_reverse:
            question = question[::-1]
        colors = {'ok': '\033[92m', 'fail': '\033[91m', 'close': '\033[0m'}
        print('Q', question)
        print('T', correct)
        windows = os.name == 'nt'
        if correct == guess:
            mark = 'O' if windows else colors['ok'] + '\u2611' + colors['close']
        else:
            mark = 'X' if windows else colors['fail'] + '\u2612' + colors['close']
        print(mark + ' ' + guess)
        print('---')
    return 1 if guess == correct else 0

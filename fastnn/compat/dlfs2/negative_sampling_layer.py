"""Deep Learning from Scratch 2's ``ch04/negative_sampling_layer.py``: ``EmbeddingDot``, ``UnigramSampler`` and
``NegativeSamplingLoss``.

``UnigramSampler`` draws the book's negative samples: for each target, ``np.random.choice(vocab_size,
sample_size, replace=False, p=p)`` from NumPy's global generator, with ``p`` the book's unigram distribution to the
power 0.75 computed by the same NumPy operations (so ``p``, and therefore every draw, is the book's bit for bit).
As in the book, ``vocab_size`` is the number of distinct ids in the corpus and ``p[i]`` is the count of id ``i``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _validate
from ...backend import ops
from .layers import Embedding, SigmoidWithLoss

__all__ = ["EmbeddingDot", "UnigramSampler", "NegativeSamplingLoss"]


class EmbeddingDot:
    """The dot product of each hidden vector ``h[i]`` with the embedding row of ``idx[i]``: (N, D), (N,) -> (N,),
    fused in :func:`fastnn.kernels.embedding_dot_forward` (no gathered (N, D) copy). ``params = [W]`` and
    ``grads = [dW]`` are its Embedding's (``embed``), as the book's; ``cache`` holds ``(h, idx)`` (the book keeps
    the gathered rows instead)."""

    def __init__(self, W: np.ndarray) -> None:
        self.embed = Embedding(W)
        self.params = self.embed.params
        self.grads = self.embed.grads
        self.cache = None

    def forward(self, h: Any, idx: Any) -> np.ndarray:
        out = ops.embedding_dot_forward(self.params[0], idx, h)
        self.cache = (h, idx)
        return out

    def backward(self, dout: Any) -> np.ndarray:
        h, idx = self.cache
        dh, dW = ops.embedding_dot_backward(dout, self.params[0], idx, h)
        self.grads[0][...] = dW
        return dh


class UnigramSampler:
    """Negative samples drawn from the unigram distribution of ``corpus`` raised to ``power``."""

    def __init__(self, corpus: Any, power: float, sample_size: int) -> None:
        corpus = np.asarray(corpus)
        if corpus.dtype.kind not in "iu" or corpus.ndim != 1 or corpus.size == 0 or corpus.min() < 0:
            _validate.fail("UnigramSampler", "corpus", "a non-empty 1-D array of ids >= 0", _validate.describe(corpus))
        self.sample_size = _validate.integer(sample_size, "UnigramSampler", "sample_size", minimum=1)
        power = _validate.scalar(power, "UnigramSampler", "power")
        counts = np.bincount(corpus)
        self.vocab_size = int(np.count_nonzero(counts))
        if self.sample_size >= self.vocab_size:
            _validate.fail("UnigramSampler", "sample_size", f"< the {self.vocab_size} distinct ids (each sample "
                           "excludes its target and draws without replacement)", self.sample_size)
        word_p = np.zeros(self.vocab_size)
        n = min(self.vocab_size, counts.size)
        word_p[:n] = counts[:n]
        self.word_p = np.power(word_p, power)
        self.word_p /= np.sum(self.word_p)

    def get_negative_sample(self, target: Any) -> np.ndarray:
        """(N, sample_size) int32 ids, row ``i`` without ``target[i]`` and without repeats (the book's draws)."""
        target = np.asarray(target)
        if target.ndim != 1 or target.dtype.kind not in "iu" or (target.size and (
                target.min() < 0 or target.max() >= self.vocab_size)):
            _validate.fail("UnigramSampler.get_negative_sample", "target",
                           f"a 1-D array of ids in [0, {self.vocab_size})", _validate.describe(target))
        negative_sample = np.zeros((target.shape[0], self.sample_size), dtype=np.int32)
        for i in range(target.shape[0]):
            p = self.word_p.copy()
            p[target[i]] = 0
            p /= p.sum()
            negative_sample[i, :] = np.random.choice(  # noqa: NPY002 -- the book's draws
                self.vocab_size, size=self.sample_size, replace=False, p=p)
        return negative_sample


class NegativeSamplingLoss:
    """Binary cross-entropy of the target's score (label 1) and of ``sample_size`` sampled negatives' (label 0).
    ``params`` lists ``W`` once per EmbeddingDot (``sample_size + 1`` times), as the book's, for
    ``remove_duplicate`` to merge."""

    def __init__(self, W: np.ndarray, corpus: Any, power: float = 0.75, sample_size: int = 5) -> None:
        self.sample_size = sample_size
        self.sampler = UnigramSampler(corpus, power, sample_size)
        self.loss_layers = [SigmoidWithLoss() for _ in range(sample_size + 1)]
        self.embed_dot_layers = [EmbeddingDot(W) for _ in range(sample_size + 1)]
        self.params, self.grads = [], []
        for layer in self.embed_dot_layers:
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, h: Any, target: Any) -> np.floating:
        target = np.asarray(target)
        batch_size = target.shape[0]
        negative_sample = self.sampler.get_negative_sample(target)
        labels = [np.ones(batch_size, np.int32)] + [np.zeros(batch_size, np.int32)] * self.sample_size
        targets = [target] + [negative_sample[:, i] for i in range(self.sample_size)]
        loss = 0
        for dot, lossl, tgt, lab in zip(self.embed_dot_layers, self.loss_layers, targets, labels, strict=True):
            loss += lossl.forward(dot.forward(h, tgt), lab)
        return loss

    def backward(self, dout: Any = 1) -> np.ndarray:
        dh = 0
        for lossl, dot in zip(self.loss_layers, self.embed_dot_layers, strict=True):
            dh += dot.backward(lossl.backward(dout))
        return dh

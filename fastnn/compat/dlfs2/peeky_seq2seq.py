"""Deep Learning from Scratch 2's ``ch07/peeky_seq2seq.py``: ``PeekyDecoder`` (the encoder's state is fed, beside
the embedding, to the LSTM and to the affine layer at every step) and ``PeekySeq2seq``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import book_weight, collect
from .seq2seq import Encoder, Seq2seq
from .time_layers import TimeAffine, TimeEmbedding, TimeLSTM

__all__ = ["PeekyDecoder", "PeekySeq2seq"]


class PeekyDecoder:
    """Decoder whose LSTM input is ``[h, embedding]`` (H + D) and whose affine input is ``[h, lstm output]``."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int) -> None:
        V, D, H = vocab_size, wordvec_size, hidden_size
        self.embed = TimeEmbedding(book_weight(V, D, 100))
        Wx = book_weight(H + D, 4 * H, np.sqrt(H + D))
        Wh = book_weight(H, 4 * H, np.sqrt(H))
        self.lstm = TimeLSTM(Wx, Wh, np.zeros(4 * H, 'f'), stateful=True)
        self.affine = TimeAffine(book_weight(H + H, V, np.sqrt(H + H)), np.zeros(V, 'f'))
        self.params, self.grads = collect(self.embed, self.lstm, self.affine)
        self.cache = None

    def _scores(self, xs: Any, peek: np.ndarray) -> np.ndarray:
        out = self.lstm.forward(np.concatenate((peek, self.embed.forward(xs)), axis=2))
        return self.affine.forward(np.concatenate((peek, out), axis=2))

    def forward(self, xs: Any, h: Any) -> np.ndarray:
        N, T = np.shape(xs)
        H = np.shape(h)[1]
        self.lstm.set_state(h)
        self.cache = H
        return self._scores(xs, np.broadcast_to(np.asarray(h)[:, None, :], (N, T, H)))

    def backward(self, dscore: Any) -> np.ndarray:
        H = self.cache
        dout = self.affine.backward(dscore)
        dx = self.lstm.backward(dout[:, :, H:])
        self.embed.backward(dx[:, :, H:])
        # the state reached every step twice (LSTM input and affine input) and started the LSTM
        return self.lstm.dh + np.sum(dout[:, :, :H] + dx[:, :, :H], axis=1)

    def generate(self, h: Any, start_id: int, sample_size: int) -> list:
        self.lstm.set_state(h)
        peek = np.asarray(h).reshape(1, 1, -1)
        sampled = []
        char_id = start_id
        for _ in range(sample_size):
            score = self._scores(np.array([char_id]).reshape(1, 1), peek)
            char_id = np.argmax(score.flatten())
            sampled.append(char_id)
        return sampled


class PeekySeq2seq(Seq2seq):
    """Seq2seq with a :class:`PeekyDecoder`."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int) -> None:
        self._build(Encoder(vocab_size, wordvec_size, hidden_size),
                    PeekyDecoder(vocab_size, wordvec_size, hidden_size))

"""Deep Learning from Scratch 2's ``ch07/seq2seq.py``: ``Encoder``, ``Decoder`` and ``Seq2seq`` (an LSTM encoder
whose last hidden state starts an LSTM decoder), initialised with the book's draws from NumPy's global generator.

The decoder's ``set_state`` never writes into its argument (the encoder's ``hs[:, -1, :]``, a strided view)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import book_weight, collect
from .base_model import BaseModel
from .time_layers import TimeAffine, TimeEmbedding, TimeLSTM, TimeSoftmaxWithLoss

__all__ = ["Encoder", "Decoder", "Seq2seq"]


def _lstm(D: int, H: int, stateful: bool) -> TimeLSTM:
    Wx = book_weight(D, 4 * H, np.sqrt(D))
    Wh = book_weight(H, 4 * H, np.sqrt(H))
    return TimeLSTM(Wx, Wh, np.zeros(4 * H, 'f'), stateful=stateful)


class Encoder:
    """Token ids (N, T) -> the last hidden state (N, H) of a non-stateful LSTM over their embeddings."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int) -> None:
        V, D, H = vocab_size, wordvec_size, hidden_size
        self.embed = TimeEmbedding(book_weight(V, D, 100))
        self.lstm = _lstm(D, H, stateful=False)
        self.params, self.grads = collect(self.embed, self.lstm)
        self.hs = None

    def forward(self, xs: Any) -> np.ndarray:
        self.hs = self.lstm.forward(self.embed.forward(xs))
        return self.hs[:, -1, :]

    def backward(self, dh: Any) -> None:
        dhs = np.zeros_like(self.hs)  # only the last step's output was used
        dhs[:, -1, :] = dh
        return self.embed.backward(self.lstm.backward(dhs))


class Decoder:
    """An LSTM language model started from the encoder's state: ids (N, T) -> scores (N, T, V)."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int) -> None:
        V, D, H = vocab_size, wordvec_size, hidden_size
        self.embed = TimeEmbedding(book_weight(V, D, 100))
        self.lstm = _lstm(D, H, stateful=True)
        self.affine = TimeAffine(book_weight(H, V, np.sqrt(H)), np.zeros(V, 'f'))
        self.params, self.grads = collect(self.embed, self.lstm, self.affine)

    def _scores(self, xs: Any) -> np.ndarray:
        return self.affine.forward(self.lstm.forward(self.embed.forward(xs)))

    def forward(self, xs: Any, h: Any) -> np.ndarray:
        self.lstm.set_state(h)
        return self._scores(xs)

    def backward(self, dscore: Any) -> np.ndarray:
        self.embed.backward(self.lstm.backward(self.affine.backward(dscore)))
        return self.lstm.dh

    def generate(self, h: Any, start_id: int, sample_size: int) -> list[int]:
        """Greedy decoding: ``sample_size`` ids, each the argmax of the scores after the previous one."""
        self.lstm.set_state(h)
        sampled = []
        sample_id = start_id
        for _ in range(sample_size):
            score = self._scores(np.array(sample_id).reshape(1, 1))
            sample_id = int(np.argmax(score.flatten()))
            sampled.append(sample_id)
        return sampled


class Seq2seq(BaseModel):
    """Encoder + Decoder + TimeSoftmaxWithLoss; ``forward(xs, ts)`` teaches the decoder ``ts[:, 1:]`` from
    ``ts[:, :-1]``."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int) -> None:
        self._build(Encoder(vocab_size, wordvec_size, hidden_size), Decoder(vocab_size, wordvec_size, hidden_size))

    def _build(self, encoder: Any, decoder: Any) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.softmax = TimeSoftmaxWithLoss()
        self.params = self.encoder.params + self.decoder.params
        self.grads = self.encoder.grads + self.decoder.grads

    def forward(self, xs: Any, ts: Any) -> np.floating:
        h = self.encoder.forward(xs)
        score = self.decoder.forward(ts[:, :-1], h)
        return self.softmax.forward(score, ts[:, 1:])

    def backward(self, dout: Any = 1) -> None:
        return self.encoder.backward(self.decoder.backward(self.softmax.backward(dout)))

    def generate(self, xs: Any, start_id: int, sample_size: int) -> list[int]:
        return self.decoder.generate(self.encoder.forward(xs), start_id, sample_size)

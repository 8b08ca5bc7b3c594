"""Deep Learning from Scratch 2's ``ch08/attention_seq2seq.py``: ``AttentionEncoder``, ``AttentionDecoder`` and
``AttentionSeq2seq``, initialised with the book's draws from NumPy's global generator (encoder: embedding, LSTM
``Wx``, ``Wh``; decoder: embedding, LSTM ``Wx``, ``Wh``, then the affine layer's (2H, V) weight).

``from attention_seq2seq import AttentionSeq2seq`` becomes ``from fastnn.compat.dlfs2.attention_seq2seq import
AttentionSeq2seq``. The decoder's scores are the affine map of ``[context, decoder state]`` at every step, the
context coming from :class:`~fastnn.compat.dlfs2.attention_layer.TimeAttention`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import book_weight, collect
from .attention_layer import TimeAttention
from .seq2seq import Encoder, Seq2seq, _lstm
from .time_layers import TimeAffine, TimeEmbedding

__all__ = ["AttentionEncoder", "AttentionDecoder", "AttentionSeq2seq"]


class AttentionEncoder(Encoder):
    """Token ids (N, T) -> all the LSTM's hidden states (N, T, H) (the attention reads every one)."""

    def forward(self, xs: Any) -> np.ndarray:
        self.hs = self.lstm.forward(self.embed.forward(xs))
        return self.hs

    def backward(self, dhs: Any) -> None:
        return self.embed.backward(self.lstm.backward(dhs))


class AttentionDecoder:
    """An LSTM started from the encoder's last state whose every output attends over the encoder's states:
    ids (N, T), enc_hs (N, T_enc, H) -> scores (N, T, V)."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int) -> None:
        V, D, H = vocab_size, wordvec_size, hidden_size
        self.embed = TimeEmbedding(book_weight(V, D, 100))
        self.lstm = _lstm(D, H, stateful=True)
        self.attention = TimeAttention()
        self.affine = TimeAffine(book_weight(2 * H, V, np.sqrt(2 * H)), np.zeros(V, 'f'))
        self.params, self.grads = collect(self.embed, self.lstm, self.attention, self.affine)

    def _scores(self, xs: Any, enc_hs: np.ndarray) -> np.ndarray:
        dec_hs = self.lstm.forward(self.embed.forward(xs))
        c = self.attention.forward(enc_hs, dec_hs)
        return self.affine.forward(np.concatenate((c, dec_hs), axis=2))

    def forward(self, xs: Any, enc_hs: Any) -> np.ndarray:
        enc_hs = np.asarray(enc_hs)
        self.lstm.set_state(enc_hs[:, -1])
        return self._scores(xs, enc_hs)

    def backward(self, dscore: Any) -> np.ndarray:
        """dscore (N, T, V) -> denc_hs (N, T_enc, H): the attention's gradient plus, at the last step, the
        gradient of the LSTM's initial state."""
        dout = self.affine.backward(dscore)
        H = dout.shape[2] // 2
        denc_hs, ddec_hs = self.attention.backward(dout[:, :, :H])
        self.embed.backward(self.lstm.backward(ddec_hs + dout[:, :, H:]))
        denc_hs[:, -1] += self.lstm.dh
        return denc_hs

    def generate(self, enc_hs: Any, start_id: int, sample_size: int) -> list[int]:
        """Greedy decoding: ``sample_size`` ids, each the argmax of the scores after the previous one."""
        enc_hs = np.asarray(enc_hs)
        self.lstm.set_state(enc_hs[:, -1])
        sampled = []
        sample_id = start_id
        for _ in range(sample_size):
            score = self._scores(np.array(sample_id).reshape(1, 1), enc_hs)
            sample_id = int(np.argmax(score.flatten()))
            sampled.append(sample_id)
        return sampled


class AttentionSeq2seq(Seq2seq):
    """AttentionEncoder + AttentionDecoder + TimeSoftmaxWithLoss (``forward``, ``backward``, ``generate`` and the
    parameter file methods of :class:`~fastnn.compat.dlfs2.seq2seq.Seq2seq`)."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int) -> None:
        args = vocab_size, wordvec_size, hidden_size
        self._build(AttentionEncoder(*args), AttentionDecoder(*args))

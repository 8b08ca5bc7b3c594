"""Deep Learning from Scratch 2's ``ch05/simple_rnnlm.py``: ``SimpleRnnlm``, a vanilla-RNN language model
(embedding, one stateful TimeRNN, affine, softmax loss), initialised with the book's draws."""

from __future__ import annotations

import numpy as np

from ._common import book_weight
from .rnnlm import LayerStack
from .time_layers import TimeAffine, TimeEmbedding, TimeRNN

__all__ = ["SimpleRnnlm"]


class SimpleRnnlm(LayerStack):
    """TimeEmbedding (V, D) -> TimeRNN (H, stateful) -> TimeAffine (H, V) -> TimeSoftmaxWithLoss."""

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int) -> None:
        V, D, H = vocab_size, wordvec_size, hidden_size
        embed_W = book_weight(V, D, 100)
        rnn_Wx = book_weight(D, H, np.sqrt(D))
        rnn_Wh = book_weight(H, H, np.sqrt(H))
        affine_W = book_weight(H, V, np.sqrt(H))
        self.rnn_layer = TimeRNN(rnn_Wx, rnn_Wh, np.zeros(H, 'f'), stateful=True)
        self._build([TimeEmbedding(embed_W), self.rnn_layer, TimeAffine(affine_W, np.zeros(V, 'f'))],
                    [self.rnn_layer])

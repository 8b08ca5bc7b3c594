"""Deep Learning from Scratch 2's ``ch06/better_rnnlm.py``: ``BetterRnnlm``, two stateful LSTM layers with dropout
around each (Zaremba et al. 2014) and the output affine tied to the embedding (``TimeAffine(embed_W.T, b)``: the
transposed view is kept, so the tie survives updates; ``remove_duplicate`` merges its gradient into the
embedding's). Initialised with the book's draws; the dropout masks are the book's draws too."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import book_weight
from .rnnlm import LayerStack
from .time_layers import TimeAffine, TimeDropout, TimeEmbedding, TimeLSTM

__all__ = ["BetterRnnlm"]


class BetterRnnlm(LayerStack):
    """TimeEmbedding -> (TimeDropout -> TimeLSTM) x 2 -> TimeDropout -> TimeAffine(embed_W.T) -> loss."""

    def __init__(self, vocab_size: int = 10000, wordvec_size: int = 650, hidden_size: int = 650,
                 dropout_ratio: float = 0.5) -> None:
        V, D, H = vocab_size, wordvec_size, hidden_size
        embed_W = book_weight(V, D, 100)
        lstm_Wx1 = book_weight(D, 4 * H, np.sqrt(D))
        lstm_Wh1 = book_weight(H, 4 * H, np.sqrt(H))
        lstm_Wx2 = book_weight(H, 4 * H, np.sqrt(H))
        lstm_Wh2 = book_weight(H, 4 * H, np.sqrt(H))
        self.lstm_layers = [TimeLSTM(lstm_Wx1, lstm_Wh1, np.zeros(4 * H, 'f'), stateful=True),
                            TimeLSTM(lstm_Wx2, lstm_Wh2, np.zeros(4 * H, 'f'), stateful=True)]
        self.drop_layers = [TimeDropout(dropout_ratio) for _ in range(3)]
        layers = [TimeEmbedding(embed_W), self.drop_layers[0], self.lstm_layers[0], self.drop_layers[1],
                  self.lstm_layers[1], self.drop_layers[2], TimeAffine(embed_W.T, np.zeros(V, 'f'))]
        self._build(layers, self.lstm_layers)

    def predict(self, xs: Any, train_flg: bool = False) -> np.ndarray:
        for layer in self.drop_layers:
            layer.train_flg = train_flg
        return super().predict(xs)

    def forward(self, xs: Any, ts: Any, train_flg: bool = True) -> np.floating:
        return self.loss_layer.forward(self.predict(xs, train_flg), ts)

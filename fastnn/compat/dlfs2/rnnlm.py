"""Deep Learning from Scratch 2's ``ch06/rnnlm.py``: ``Rnnlm``, an LSTM language model (embedding, one stateful
TimeLSTM, affine, softmax loss), initialised with the book's draws from NumPy's global generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import book_weight, collect
from .base_model import BaseModel
from .time_layers import TimeAffine, TimeEmbedding, TimeLSTM, TimeSoftmaxWithLoss

__all__ = ["Rnnlm", "LayerStack"]


class LayerStack(BaseModel):
    """What the book's language models share: ``layers`` run in order, a ``loss_layer`` on top, ``params`` and
    ``grads`` collected once from the layers, ``reset_state`` of the stateful recurrent layers."""

    def _build(self, layers: list, recurrent: list) -> None:
        self.layers = layers
        self.loss_layer = TimeSoftmaxWithLoss()
        self._recurrent = recurrent
        self.params, self.grads = collect(*layers)

    def predict(self, xs: Any) -> np.ndarray:
        """Scores (N, T, V) for token ids (N, T)."""
        for layer in self.layers:
            xs = layer.forward(xs)
        return xs

    def forward(self, xs: Any, ts: Any) -> np.floating:
        return self.loss_layer.forward(self.predict(xs), ts)

    def backward(self, dout: Any = 1) -> Any:
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def reset_state(self) -> None:
        for layer in self._recurrent:
            layer.reset_state()


class Rnnlm(LayerStack):
    """TimeEmbedding (V, D) -> TimeLSTM (H, stateful) -> TimeAffine (H, V) -> TimeSoftmaxWithLoss."""

    def __init__(self, vocab_size: int = 10000, wordvec_size: int = 100, hidden_size: int = 100) -> None:
        V, D, H = vocab_size, wordvec_size, hidden_size
        embed_W = book_weight(V, D, 100)
        lstm_Wx = book_weight(D, 4 * H, np.sqrt(D))
        lstm_Wh = book_weight(H, 4 * H, np.sqrt(H))
        affine_W = book_weight(H, V, np.sqrt(H))
        self.lstm_layer = TimeLSTM(lstm_Wx, lstm_Wh, np.zeros(4 * H, 'f'), stateful=True)
        self._build([TimeEmbedding(embed_W), self.lstm_layer, TimeAffine(affine_W, np.zeros(V, 'f'))],
                    [self.lstm_layer])

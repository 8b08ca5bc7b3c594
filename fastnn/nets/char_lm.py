"""A character-level LSTM language model: the network of ``python -m fastnn demo --task text``.

DLFS-2's ``Rnnlm`` for characters: ``TimeEmbedding`` -> ``TimeLSTM`` -> ``TimeAffine`` -> ``TimeSoftmaxWithLoss``
(the loss averaged over all N*T positions), written as one small net whose every numeric step is a kernel called
through :mod:`fastnn.backend` (:func:`~fastnn.kernels.embedding_forward`, :func:`~fastnn.kernels.lstm_forward`
in PyTorch's gate layout "ifgo", :func:`~fastnn.kernels.matmul`,
:func:`~fastnn.kernels.softmax_cross_entropy_forward` and their backwards), so ``backend.using("reference")``
runs the same model on the NumPy twins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from ..backend import ops
from ..layers._random import RandomSource
from ._init import normal

__all__ = ["CharLSTM"]


class CharLSTM:
    """Embedding (V -> E) -> LSTM (H) -> affine (V) -> softmax cross-entropy at every time step.

    Parameters
    ----------
    vocab_size : int
        V, the number of distinct characters (65 for Tiny Shakespeare).
    hidden_size : int
        H, the LSTM's state size.
    wordvec_size : int
        E, the embedding size.
    dtype : float32 or float64
        Of every parameter, activation and gradient.
    seed : int
        Initial weights at DLFS-2's ``Rnnlm`` scales: ``embed_W`` ~ N(0, 0.01^2), ``Wx`` ~ N(0, 1/E),
        ``Wh`` ~ N(0, 1/H), ``W`` ~ N(0, 1/H); biases 0.

    Attributes
    ----------
    params : dict of str -> ndarray
        ``embed_W`` (V, E); ``Wx`` (E, 4H), ``Wh`` (H, 4H), ``b`` (4H,) of the LSTM (gate blocks i, f, g, o);
        ``W`` (H, V), ``b_out`` (V,) of the output layer.
    """

    LAYOUT = "ifgo"

    def __init__(self, vocab_size: int, hidden_size: int = 256, wordvec_size: int = 32, *, dtype: Any = np.float32,
                 seed: int = 0) -> None:
        where = "CharLSTM"
        V = _validate.integer(vocab_size, where, "vocab_size", minimum=1)
        H = _validate.integer(hidden_size, where, "hidden_size", minimum=1)
        E = _validate.integer(wordvec_size, where, "wordvec_size", minimum=1)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            _validate.fail(where, "dtype", "float32 or float64", str(self.dtype))
        random = RandomSource(seed, where)
        self.params = {
            "embed_W": normal(random, 0.01, (V, E), self.dtype),
            "Wx": normal(random, 1 / np.sqrt(E), (E, 4 * H), self.dtype),
            "Wh": normal(random, 1 / np.sqrt(H), (H, 4 * H), self.dtype),
            "b": np.zeros(4 * H, self.dtype),
            "W": normal(random, 1 / np.sqrt(H), (H, V), self.dtype),
            "b_out": np.zeros(V, self.dtype),
        }
        self.vocab_size, self.hidden_size = V, H
        self._cache: tuple | None = None

    def _ids(self, ids: Any, name: str, where: str) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu" or 0 in ids.shape:
            _validate.fail(where, name, "a non-empty (N, T) array of character ids", _validate.describe(ids))
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            _validate.fail(where, name, f"ids in [0, {self.vocab_size})", f"values in [{ids.min()}, {ids.max()}]")
        return ids

    def loss(self, xs: Any, ts: Any) -> float:
        """Mean cross-entropy (nats per character) of predicting ``ts`` (N, T) from ``xs`` (N, T), both int ids;
        each sequence starts from a zero state. Keeps what :meth:`gradient` needs."""
        where = "CharLSTM.loss"
        xs, ts = self._ids(xs, "xs", where), self._ids(ts, "ts", where)
        if ts.shape != xs.shape:
            _validate.fail(where, "ts", f"the shape of xs {xs.shape}", f"shape {ts.shape}")
        p = self.params
        N, T = xs.shape
        x = ops.embedding_forward(p["embed_W"], xs)
        h0 = np.zeros((N, self.hidden_size), self.dtype)
        hs, cs, acts = ops.lstm_forward(x, h0, h0, p["Wx"], p["Wh"], p["b"], layout=self.LAYOUT)
        flat = hs.reshape(N * T, self.hidden_size)
        scores = ops.matmul(flat, p["W"]) + p["b_out"]
        loss, probs = ops.softmax_cross_entropy_forward(scores, ts.reshape(-1))
        self._cache = (xs, x, h0, hs, cs, acts, flat, probs, ts.reshape(-1))
        return float(loss)

    def gradient(self, xs: Any, ts: Any) -> dict[str, np.ndarray]:
        """Forward (:meth:`loss`, whose value is then :attr:`last_loss`) and backward through time; gradients of
        :attr:`params` by name."""
        self.last_loss = self.loss(xs, ts)
        xs, x, h0, hs, cs, acts, flat, probs, labels = self._cache
        p = self.params
        dscores = ops.softmax_cross_entropy_backward(probs, labels, 1.0)
        dhs = ops.matmul(dscores, p["W"].T).reshape(hs.shape)
        dx, _, _, dWx, dWh, db = ops.lstm_backward(dhs, None, x, h0, h0, p["Wx"], p["Wh"], hs, cs, acts,
                                                   layout=self.LAYOUT)
        return {"embed_W": ops.embedding_backward(dx, xs, self.vocab_size), "Wx": dWx, "Wh": dWh, "b": db,
                "W": ops.matmul(flat.T, dscores), "b_out": dscores.sum(axis=0)}

    def generate(self, prime: Any, length: int, rng: np.random.Generator, temperature: float = 1.0) -> list[int]:
        """``length`` character ids sampled one at a time after reading the ids ``prime`` (1-D, non-empty);
        each is drawn from softmax(scores / temperature)."""
        where = "CharLSTM.generate"
        prime = self._ids(np.asarray(prime).reshape(1, -1), "prime", where)
        length = _validate.integer(length, where, "length", minimum=0)
        temperature = _validate.scalar(temperature, where, "temperature", gt=0.0)
        p = self.params
        h = c = np.zeros((1, self.hidden_size), self.dtype)
        x = ops.embedding_forward(p["embed_W"], prime)
        out = []
        for _ in range(length):
            hs, cs, _ = ops.lstm_forward(x, h, c, p["Wx"], p["Wh"], p["b"], layout=self.LAYOUT)
            h, c = hs[:, -1], cs[:, -1]
            scores = (ops.matmul(h, p["W"]) + p["b_out"]) / self.dtype.type(temperature)
            probs = ops.softmax_forward(scores)[0].astype(np.float64)
            nxt = int(rng.choice(self.vocab_size, p=probs / probs.sum()))
            out.append(nxt)
            x = ops.embedding_forward(p["embed_W"], np.array([[nxt]]))
        return out

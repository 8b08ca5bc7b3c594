"""A decoder-only (GPT-style) Transformer language model on fastnn layers, trainable by :class:`fastnn.trainer.Trainer`.

Token embedding + sinusoidal positions, ``num_layers`` causal :class:`fastnn.layers.TransformerEncoderLayer` blocks
(pre-norm by default, with a final layer norm), and an output projection to the vocabulary that is the embedding
matrix transposed (``tie_weights=True``) or its own (E, V) weight and bias. The loss is the mean cross-entropy of
every next-token prediction (log-sum-exp, exact).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _validate
from ..backend import ops
from ..layers import PositionalEncoding, TransformerEncoderLayer
from ..layers._random import RandomSource
from ..layers.transformer import _dtype, _TokenNorm

__all__ = ["TransformerLM"]


class TransformerLM:
    """Character- or word-level causal language model.

    Parameters
    ----------
    vocab_size : int >= 1
        V.
    context : int >= 1
        Longest input sequence T (positions beyond it are refused).
    embed_dim, num_heads, num_layers : int
        Width E (divisible by ``num_heads``), heads, blocks.
    dim_feedforward : int, optional
        Hidden width of the feed-forward blocks (default 4E).
    dropout : float in [0, 1)
        On the embeddings, the attention weights and every sub-block's output (training only).
    tie_weights : bool
        Output projection = embedding matrix transposed (no separate ``head.W``); a bias ``head.b`` always.
    norm_first : bool
        Pre-norm blocks (GPT-2's) with a final layer norm; False: post-norm blocks, no final norm.
    approximate : {"tanh", "none"}
        The GELU form (GPT-2's tanh approximation by default).
    dtype : float32 (default) or float64, keyword-only
    seed : None, int or Generator, keyword-only
        Initial weights (embedding N(0, 0.02^2), projections N(0, 1/fan_in)) and dropout masks.

    Attributes
    ----------
    params : dict of str to ndarray
        ``embed.W`` (V, E), ``block<i>.<layer key>`` for i = 1..num_layers, ``norm.gamma``/``norm.beta`` (pre-norm),
        ``head.W`` (E, V) when untied, ``head.b`` (V,).

    ``x`` is an int array (N, T) of token ids, ``t`` the ids that follow each position, (N, T).
    """

    def __init__(self, vocab_size: int, context: int, embed_dim: int = 128, num_heads: int = 4, num_layers: int = 4,
                 dim_feedforward: int | None = None, dropout: float = 0.0, tie_weights: bool = True,
                 norm_first: bool = True, approximate: str = "tanh", *, dtype: Any = np.float32,
                 seed: Any = None) -> None:
        where = "TransformerLM"
        V = self.vocab_size = _validate.integer(vocab_size, where, "vocab_size", minimum=1)
        self.context = _validate.integer(context, where, "context", minimum=1)
        E = self.embed_dim = _validate.integer(embed_dim, where, "embed_dim", minimum=1)
        layers = _validate.integer(num_layers, where, "num_layers", minimum=1)
        self.tie_weights = _validate.flag(tie_weights, where, "tie_weights")
        self.norm_first = _validate.flag(norm_first, where, "norm_first")
        dt = self.dtype = _dtype(dtype, where)
        self.random = RandomSource(seed, where)
        rng = self.random.generator
        self.embed_W = (self.random.standard_normal((V, E)) * 0.02).astype(dt)
        self.pos = PositionalEncoding(E, dropout, max_len=self.context, seed=rng)
        self.blocks = [TransformerEncoderLayer(E, num_heads, dim_feedforward, dropout, causal=True,
                                               norm_first=norm_first, approximate=approximate, dtype=dt, seed=rng)
                       for _ in range(layers)]
        self.norm = _TokenNorm(E, dt) if self.norm_first else None
        self.params: dict[str, np.ndarray] = {"embed.W": self.embed_W}
        for i, block in enumerate(self.blocks, 1):
            self.params.update({f"block{i}.{k}": v for k, v in block.params.items()})
        if self.norm is not None:
            self.params.update({f"norm.{k}": v for k, v in self.norm.params.items()})
        if not self.tie_weights:
            self.params["head.W"] = (self.random.standard_normal((E, V)) / math.sqrt(E)).astype(dt)
        self.params["head.b"] = np.zeros(V, dt)
        self._cache: dict[str, Any] = {}
        self.last_loss = None  # the loss of the last ``gradient`` call (before its update)

    def _ids(self, x: Any, where: str, name: str = "x") -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.dtype.kind not in "iu" or not 1 <= x.shape[1] <= self.context:
            _validate.fail(where, name, f"an int array (N, T) of token ids with 1 <= T <= {self.context}",
                           _validate.describe(x))
        return x

    def predict(self, x: Any, train_flg: bool = False) -> np.ndarray:
        """Logits (N, T, V) of the token after each position."""
        x = self._ids(x, "TransformerLM.predict")
        N, T = x.shape
        h = self.pos.forward(ops.embedding_forward(self.params["embed.W"], x), train_flg)
        for block in self.blocks:
            h = block.forward(h, train_flg=train_flg)
        if self.norm is not None:
            h = self.norm.forward(h)
        h2 = h.reshape(N * T, self.embed_dim)
        W = self.params["embed.W"].T if self.tie_weights else self.params["head.W"]
        self._cache = {"x": x, "h2": h2}
        logits = ops.matmul_bias(h2, W, self.params["head.b"])
        return logits.reshape(N, T, self.vocab_size)

    def loss(self, x: Any, t: Any, train_flg: bool = False) -> Any:
        """Mean cross-entropy over all N*T predictions (a 0-d array of the model's dtype)."""
        logits = self.predict(x, train_flg)
        t = self._ids(t, "TransformerLM.loss", "t")
        if t.shape != logits.shape[:2]:
            _validate.fail("TransformerLM.loss", "t", f"of shape {logits.shape[:2]} like x", f"shape {t.shape}")
        loss, probs = ops.softmax_cross_entropy_forward(logits.reshape(-1, self.vocab_size), t.reshape(-1))
        self._cache.update(probs=probs, t=t.reshape(-1))
        return loss

    def gradient(self, x: Any, t: Any) -> dict[str, np.ndarray]:
        """Gradients of ``loss(x, t, train_flg=True)`` under the keys of ``params``."""
        self.last_loss = self.loss(x, t, train_flg=True)
        c = self._cache
        N, T = c["x"].shape
        d = ops.softmax_cross_entropy_backward(c["probs"], c["t"], 1.0)  # (N*T, V), already / (N*T)
        grads: dict[str, np.ndarray] = {"head.b": ops.column_sum(d)}
        if self.tie_weights:
            dW_out = ops.matmul(d.T, c["h2"])  # (V, E): the transposed use of the embedding
            dh = ops.matmul(d, self.params["embed.W"])
        else:
            grads["head.W"] = ops.matmul(c["h2"].T, d)
            dh = ops.matmul(d, self.params["head.W"].T)
        dh = dh.reshape(N, T, self.embed_dim)
        if self.norm is not None:
            dh = self.norm.backward(dh)
            grads.update({f"norm.{k}": v for k, v in self.norm.grads.items()})
        for i in range(len(self.blocks), 0, -1):
            dh = self.blocks[i - 1].backward(dh)
            grads.update({f"block{i}.{k}": v for k, v in self.blocks[i - 1].grads.items()})
        dW = ops.embedding_backward(self.pos.backward(dh), c["x"], self.vocab_size)
        grads["embed.W"] = dW + dW_out if self.tie_weights else dW
        return {k: grads[k] for k in self.params}

    def accuracy(self, x: Any, t: Any, batch_size: int | None = None) -> float:
        """Fraction of positions whose most likely next token is ``t`` (inference mode)."""
        x = self._ids(x, "TransformerLM.accuracy")
        t = self._ids(t, "TransformerLM.accuracy", "t")
        step = len(x) if batch_size is None else _validate.integer(batch_size, "TransformerLM.accuracy",
                                                                   "batch_size", minimum=1)
        hits = sum(int(np.count_nonzero(self.predict(x[i:i + step]).argmax(axis=-1) == t[i:i + step]))
                   for i in range(0, len(x), step))
        return hits / t.size

    def generate(self, prime: Any, length: int, rng: Any = None, temperature: float = 1.0) -> list[int]:
        """``length`` token ids sampled one by one after the ids ``prime`` (the last ``context`` ids are seen);
        ``rng`` a numpy Generator or a seed (CharLSTM's signature)."""
        where = "TransformerLM.generate"
        ids = [int(i) for i in np.asarray(prime).reshape(-1)]
        self._ids(np.array([ids[-self.context:]]), where, "prime")
        length = _validate.integer(length, where, "length", minimum=0)
        temperature = _validate.scalar(temperature, where, "temperature", gt=0.0)
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        out = []
        for _ in range(length):
            logits = self.predict(np.array([ids[-self.context:]]))[0, -1].astype(np.float64) / temperature
            p = np.exp(logits - logits.max())
            ids.append(int(rng.choice(self.vocab_size, p=p / p.sum())))
            out.append(ids[-1])
        return out

"""Transformer layers on fastnn kernels: GELU, PositionalEncoding, MultiHeadAttention, FeedForward and the encoder
and decoder layers (pre-norm and post-norm), in the book's layer style.

Every layer has ``forward``/``backward`` and ``params``/``grads`` dicts; composite layers list their children's
arrays under dotted keys (``attn.W_in``, ``norm1.gamma``, ...), the same array objects, so an optimizer updating
``params`` in place trains the children. Inputs are (N, S, E) batches of S tokens of width E; float32 stays
float32. The numerics are kernel calls through :data:`fastnn.backend.ops` (attention, GELU, layer norm, matmul,
dropout); what a layer adds is reshaping, bias additions and bookkeeping.

Weight layout: the NumPy convention ``x @ W`` with W of shape (in, out). PyTorch stores (out, in):

* ``MultiHeadAttention.W_in`` (E, 3E) is ``torch.nn.MultiheadAttention.in_proj_weight.T`` (query, key, value
  columns in that order), ``b_in`` its ``in_proj_bias``; ``W_out`` (E, E) is ``out_proj.weight.T``, ``b_out``
  ``out_proj.bias``;
* ``FeedForward.W1``/``W2`` are ``linear1.weight.T``/``linear2.weight.T`` of ``torch.nn.TransformerEncoderLayer``.

Masks follow ``scaled_dot_product_attention`` and cs231n: a bool ``attn_mask`` is True where a query may attend
(``torch.nn.MultiheadAttention``'s bool mask is the opposite: True *forbids*); a float mask is added to the scores.
Dropout is inverted dropout (PyTorch's: kept values scaled by ``1 / (1 - p)`` in training, identity at inference),
with masks from fastnn's counter-based generator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _validate
from ..backend import ops
from ._base import Layer, batch
from ._random import RandomSource
from .normalization import LayerNormalization

__all__ = ["FeedForward", "GELU", "MultiHeadAttention", "PositionalEncoding", "TransformerDecoderLayer",
           "TransformerEncoderLayer"]


def _dtype(dtype: Any, where: str) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in _validate.FLOAT_DTYPES:
        _validate.fail(where, "dtype", "float32 or float64", dt)
    return dt


def _weight(random: RandomSource, fan_in: int, fan_out: int, dtype: np.dtype) -> np.ndarray:
    """A (fan_in, fan_out) weight with std 1/sqrt(fan_in) (LeCun normal; keeps activations at unit scale)."""
    return (random.standard_normal((fan_in, fan_out)) / math.sqrt(fan_in)).astype(dtype)


def _tokens(x: Any, where: str, width: int, name: str = "x") -> np.ndarray:
    x = batch(x, where, ndim=3) if name == "x" else _validate.float_array(x, where, name, ndim=3)
    if x.shape[2] != width:
        _validate.fail(where, name, f"of shape (N, S, {width})", f"shape {x.shape}")
    return x


class _InvertedDropout:
    """PyTorch's dropout: training keeps an element with probability 1 - p and scales it by 1 / (1 - p)."""

    def __init__(self, p: float, random: RandomSource) -> None:
        self.p, self.random, self.mask = p, random, None

    def forward(self, x: np.ndarray, train_flg: bool) -> np.ndarray:
        if not train_flg or self.p == 0:
            self.mask = None
            return x
        self.mask = ops.dropout_mask(x.shape, self.p, self.random.seed64())
        return ops.dropout_forward(x, self.mask, 1 / (1 - self.p))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout if self.mask is None else ops.dropout_backward(dout, self.mask, 1 / (1 - self.p))


class _Composite(Layer):
    """A layer made of child layers: ``params``/``grads`` gather the children's under ``<child>.<name>``."""

    _children: tuple[str, ...] = ()

    def _gather(self) -> None:
        self.params = {f"{c}.{k}": v for c in self._children for k, v in getattr(self, c).params.items()}
        self.grads = {f"{c}.{k}": v for c in self._children for k, v in getattr(self, c).grads.items()}


class GELU(Layer):
    """GELU elementwise, exact (``approximate="none"``) or by the tanh approximation, as ``torch.nn.GELU``."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        ops.gelu_forward(np.zeros(0), approximate)  # the kernel's check of ``approximate``, once
        self.approximate = approximate
        self.x = None

    def forward(self, x: Any) -> np.ndarray:
        self.x = batch(x, "GELU.forward")
        return self._output(ops.gelu_forward(self.x, self.approximate))

    def backward(self, dout: Any) -> np.ndarray:
        return ops.gelu_backward(self._dout(dout, "GELU.backward"), self.x, self.approximate)


class PositionalEncoding(Layer):
    """``x + PE`` (sine on even features, cosine on odd ones; cs231n's table) followed by dropout.

    Parameters
    ----------
    embed_dim : int >= 1
    dropout : float in [0, 1)
    max_len : int >= 1
        Longest sequence accepted (cs231n's buffer length; nothing is stored, the kernel computes the table).
    seed : None, int or Generator, keyword-only
        Source of the dropout masks.
    """

    def __init__(self, embed_dim: int, dropout: float = 0.0, max_len: int = 5000, *, seed: Any = None) -> None:
        super().__init__()
        where = "PositionalEncoding"
        self.embed_dim = _validate.integer(embed_dim, where, "embed_dim", minimum=1)
        self.max_len = _validate.integer(max_len, where, "max_len", minimum=1)
        self.dropout = _InvertedDropout(_validate.scalar(dropout, where, "dropout", ge=0.0, lt=1.0),
                                        RandomSource(seed, where))

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        x = _tokens(x, "PositionalEncoding.forward", self.embed_dim)
        if x.shape[1] > self.max_len:
            _validate.fail("PositionalEncoding.forward", "x", f"at most max_len={self.max_len} positions",
                           f"shape {x.shape}")
        return self._output(self.dropout.forward(ops.positional_encoding(x), train_flg))

    def backward(self, dout: Any) -> np.ndarray:
        return self.dropout.backward(self._dout(dout, "PositionalEncoding.backward"))


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention with input and output projections (cs231n's and PyTorch's layer).

    ``forward(query, key=None, value=None, attn_mask=None, train_flg=True)``: query (N, S, E); key and value
    (N, T, E), or both None for self-attention (one GEMM for the three projections). Returns (N, S, E).
    ``backward(dout)`` returns dquery for self-attention, else ``(dquery, dkey, dvalue)``.

    Parameters
    ----------
    embed_dim : int
        E, divisible by ``num_heads``; each head has E / num_heads features, scores scaled by 1/sqrt(E/H).
    num_heads : int >= 1
    dropout : float in [0, 1)
        Dropout on the attention weights in training (inside the fused kernel).
    causal : bool
        Query s attends keys t <= s only.
    dtype : float32 (default) or float64, keyword-only
    seed : None, int or Generator, keyword-only
        Source of the initial weights and the dropout seeds.

    Attributes
    ----------
    params : ``W_in`` (E, 3E), ``b_in`` (3E,), ``W_out`` (E, E), ``b_out`` (E,) (the PyTorch mapping is in the
        module docstring).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, causal: bool = False, *,
                 dtype: Any = np.float32, seed: Any = None) -> None:
        super().__init__()
        where = "MultiHeadAttention"
        E = self.embed_dim = _validate.integer(embed_dim, where, "embed_dim", minimum=1)
        self.num_heads = _validate.integer(num_heads, where, "num_heads", minimum=1)
        if E % self.num_heads:
            _validate.fail(where, "num_heads", f"a divisor of embed_dim={E}", num_heads)
        self.dropout = _validate.scalar(dropout, where, "dropout", ge=0.0, lt=1.0)
        self.causal = _validate.flag(causal, where, "causal")
        dt = _dtype(dtype, where)
        self.random = RandomSource(seed, where)
        self.params = {"W_in": _weight(self.random, E, 3 * E, dt), "b_in": np.zeros(3 * E, dt),
                       "W_out": _weight(self.random, E, E, dt), "b_out": np.zeros(E, dt)}
        self.grads = dict.fromkeys(self.params)
        self._cache: dict[str, Any] = {}

    def _heads(self, a: np.ndarray, N: int, L: int) -> np.ndarray:
        """(N*L, E) -> (N, H, L, E/H) view."""
        return a.reshape(N, L, self.num_heads, -1).transpose(0, 2, 1, 3)

    def forward(self, query: Any, key: Any = None, value: Any = None, attn_mask: Any = None,
                train_flg: bool = True) -> np.ndarray:
        where = "MultiHeadAttention.forward"
        E = self.embed_dim
        x = _tokens(query, where, E)
        N, S, _ = x.shape
        W, b = self.params["W_in"], self.params["b_in"]
        x2 = x.reshape(N * S, E)
        if key is None and value is None:
            qkv = ops.matmul_bias(x2, W, b)
            q, k, v = (self._heads(qkv[:, i * E:(i + 1) * E], N, S) for i in range(3))
            sources = None
        else:
            if key is None or value is None:
                _validate.fail(where, "key and value", "both given (cross-attention) or both None (self-attention)",
                               "one of them")
            key, value = _tokens(key, where, E, "key"), _tokens(value, where, E, "value")
            if key.shape[:2] != value.shape[:2] or key.shape[0] != N:
                _validate.fail(where, "value", f"of shape ({N}, T, {E}) like key {key.shape}", f"shape {value.shape}")
            T = key.shape[1]
            sources = (x2, key.reshape(N * T, E), value.reshape(N * T, E))
            q, k, v = (self._heads(ops.matmul_bias(s, W[:, i * E:(i + 1) * E], b[i * E:(i + 1) * E]), N, L)
                       for i, (s, L) in enumerate(zip(sources, (S, T, T), strict=True)))
        p = self.dropout if train_flg else 0.0
        seed = self.random.seed64() if p > 0 else 0
        opts = {"mask": attn_mask, "causal": self.causal, "dropout_p": p, "seed": seed}
        out, lse = ops.attention_forward(q, k, v, **opts)  # out keeps q's (N, S, H, d) memory order
        ctx = out.transpose(0, 2, 1, 3).reshape(N * S, E)  # so merging the heads is a view, not a copy
        self._cache = {"x2": x2, "sources": sources, "q": q, "k": k, "v": v, "out": out, "lse": lse, "ctx": ctx,
                       "opts": opts, "shape": (N, S)}
        return self._output(ops.matmul_bias(ctx, self.params["W_out"], self.params["b_out"]).reshape(N, S, E))

    def backward(self, dout: Any) -> Any:
        dout = self._dout(dout, "MultiHeadAttention.backward")
        c, E = self._cache, self.embed_dim
        N, S = c["shape"]
        W_in = self.params["W_in"]
        d2 = dout.reshape(N * S, E)
        self.grads["W_out"] = ops.matmul(c["ctx"].T, d2)
        self.grads["b_out"] = ops.column_sum(d2)
        dctx = self._heads(ops.matmul(d2, self.params["W_out"].T), N, S)
        if c["sources"] is None:  # self-attention: one (N*S, 3E) gradient of the fused projection, written by
            dqkv = np.empty((N * S, 3 * E), W_in.dtype)  # the kernel in place, its thirds as q, k and v are
            into = tuple(self._heads(dqkv[:, i * E:(i + 1) * E], N, S) for i in range(3))
            ops.attention_backward(dctx, c["q"], c["k"], c["v"], c["out"], c["lse"], **c["opts"], into=into)
            self.grads["W_in"] = ops.matmul(c["x2"].T, dqkv)
            self.grads["b_in"] = ops.column_sum(dqkv)
            return ops.matmul(dqkv, W_in.T).reshape(N, S, E)
        dq, dk, dv = ops.attention_backward(dctx, c["q"], c["k"], c["v"], c["out"], c["lse"], **c["opts"])
        # the gradients keep q, k and v's (N, S, H, d) memory order: (N*S, E) views once the heads are merged
        dq, dk, dv = (g.transpose(0, 2, 1, 3).reshape(-1, E) for g in (dq, dk, dv))
        dW, db, dx = np.empty_like(W_in), np.empty_like(self.params["b_in"]), []
        for i, (g2, s) in enumerate(zip((dq, dk, dv), c["sources"], strict=True)):
            dW[:, i * E:(i + 1) * E] = ops.matmul(s.T, g2)
            db[i * E:(i + 1) * E] = ops.column_sum(g2)
            dx.append(ops.matmul(g2, W_in[:, i * E:(i + 1) * E].T).reshape(N, -1, E))
        self.grads["W_in"], self.grads["b_in"] = dW, db
        return tuple(dx)


class FeedForward(Layer):
    """Linear - GELU - Dropout - Linear on (N, S, E) tokens (cs231n's and PyTorch's feed-forward block).

    Parameters: ``W1`` (E, F), ``b1`` (F,), ``W2`` (F, E), ``b2`` (E,); ``dim_feedforward`` F (default 4E).
    """

    def __init__(self, embed_dim: int, dim_feedforward: int | None = None, dropout: float = 0.0,
                 approximate: str = "none", *, dtype: Any = np.float32, seed: Any = None) -> None:
        super().__init__()
        where = "FeedForward"
        E = self.embed_dim = _validate.integer(embed_dim, where, "embed_dim", minimum=1)
        F = 4 * E if dim_feedforward is None else _validate.integer(dim_feedforward, where, "dim_feedforward",
                                                                    minimum=1)
        dt = _dtype(dtype, where)
        self.random = RandomSource(seed, where)
        self.params = {"W1": _weight(self.random, E, F, dt), "b1": np.zeros(F, dt),
                       "W2": _weight(self.random, F, E, dt), "b2": np.zeros(E, dt)}
        self.grads = dict.fromkeys(self.params)
        self.gelu = GELU(approximate)
        self.drop = _InvertedDropout(_validate.scalar(dropout, where, "dropout", ge=0.0, lt=1.0), self.random)
        self.x2 = self.h = None

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        x = _tokens(x, "FeedForward.forward", self.embed_dim)
        N, S, E = x.shape
        self.x2 = x.reshape(N * S, E)
        a = ops.matmul_bias(self.x2, self.params["W1"], self.params["b1"])
        self.h = self.drop.forward(self.gelu.forward(a), train_flg)
        return self._output(ops.matmul_bias(self.h, self.params["W2"], self.params["b2"]).reshape(N, S, E))

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "FeedForward.backward")
        d2 = dout.reshape(-1, self.embed_dim)
        self.grads["W2"], self.grads["b2"] = ops.matmul(self.h.T, d2), ops.column_sum(d2)
        da = self.gelu.backward(self.drop.backward(ops.matmul(d2, self.params["W2"].T)))
        self.grads["W1"], self.grads["b1"] = ops.matmul(self.x2.T, da), ops.column_sum(da)
        return ops.matmul(da, self.params["W1"].T).reshape(dout.shape)


class _TokenNorm(LayerNormalization):
    """Layer normalization of each token's E features (the layer-norm kernels on (N*S, E))."""

    def __init__(self, E: int, dtype: np.dtype) -> None:
        super().__init__(np.ones(E, dtype), np.zeros(E, dtype))

    def forward(self, x: Any) -> np.ndarray:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    def backward(self, dout: Any) -> np.ndarray:
        return super().backward(dout.reshape(-1, dout.shape[-1])).reshape(dout.shape)


class _Block(_Composite):
    """What the encoder and decoder layers share: arguments, children, residual dropouts."""

    def _setup(self, where, embed_dim, num_heads, dim_feedforward, dropout, norm_first, approximate, dtype, seed,
               norms):
        E = _validate.integer(embed_dim, where, "embed_dim", minimum=1)
        self.norm_first = _validate.flag(norm_first, where, "norm_first")
        dt = _dtype(dtype, where)
        self.random = RandomSource(seed, where)
        p = _validate.scalar(dropout, where, "dropout", ge=0.0, lt=1.0)
        rng = self.random.generator if self.random.generator is not None else None
        self.ff = FeedForward(E, dim_feedforward, p, approximate, dtype=dt, seed=rng)
        for i in range(1, norms + 1):
            setattr(self, f"norm{i}", _TokenNorm(E, dt))
        self.drops = [_InvertedDropout(p, self.random) for _ in range(norms)]
        return E, p, dt, rng

    def _residual(self, i: int, x: np.ndarray, sub, train_flg: bool) -> np.ndarray:
        """Sub-block ``i`` (1-based) with its residual connection and norm, pre- or post-norm.

        The residual sums here and in :meth:`_residual_backward` are written into their first operand, an array the
        sub-block, its dropout or its norm has just made and keeps no reference to.
        """
        norm, drop = getattr(self, f"norm{i}"), self.drops[i - 1]
        if self.norm_first:
            return ops.add_into(drop.forward(sub(norm.forward(x)), train_flg), x)
        return norm.forward(ops.add_into(drop.forward(sub(x), train_flg), x))

    def _residual_backward(self, i: int, dy: np.ndarray, sub_backward) -> tuple[np.ndarray, Any]:
        """(gradient into the block's input, whatever else ``sub_backward`` returns) for sub-block ``i``."""
        norm, drop = getattr(self, f"norm{i}"), self.drops[i - 1]
        if self.norm_first:
            g = sub_backward(drop.backward(dy))
            extra = g[1:] if isinstance(g, tuple) else ()
            return ops.add_into(norm.backward(g[0] if isinstance(g, tuple) else g), dy), extra
        dz = norm.backward(dy)
        g = sub_backward(drop.backward(dz))
        extra = g[1:] if isinstance(g, tuple) else ()
        return ops.add_into(g[0] if isinstance(g, tuple) else g, dz), extra


class TransformerEncoderLayer(_Block):
    """Self-attention and feed-forward sub-blocks with residual connections and layer norms.

    Pre-norm (``norm_first=True``, GPT-2's): ``h = x + attn(norm1(x)); y = h + ff(norm2(h))``.
    Post-norm (the original Transformer's and PyTorch's default): ``h = norm1(x + attn(x)); y = norm2(h + ff(h))``.
    Dropout on each sub-block's output and on the attention weights. ``causal=True`` makes it a decoder-only
    (GPT) block.

    ``forward(x, attn_mask=None, train_flg=True)``: x (N, S, E) -> (N, S, E); ``backward(dout) -> dx``.
    """

    _children = ("attn", "ff", "norm1", "norm2")

    def __init__(self, embed_dim: int, num_heads: int, dim_feedforward: int | None = None, dropout: float = 0.0,
                 causal: bool = False, norm_first: bool = True, approximate: str = "none", *,
                 dtype: Any = np.float32, seed: Any = None) -> None:
        super().__init__()
        E, p, dt, rng = self._setup("TransformerEncoderLayer", embed_dim, num_heads, dim_feedforward, dropout,
                                    norm_first, approximate, dtype, seed, 2)
        self.attn = MultiHeadAttention(E, num_heads, p, causal, dtype=dt, seed=rng)
        self._gather()

    def forward(self, x: Any, attn_mask: Any = None, train_flg: bool = True) -> np.ndarray:
        x = _tokens(x, "TransformerEncoderLayer.forward", self.attn.embed_dim)
        h = self._residual(1, x, lambda a: self.attn.forward(a, attn_mask=attn_mask, train_flg=train_flg),
                           train_flg)
        return self._output(self._residual(2, h, lambda a: self.ff.forward(a, train_flg), train_flg))

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "TransformerEncoderLayer.backward")
        dh, _ = self._residual_backward(2, dout, self.ff.backward)
        dx, _ = self._residual_backward(1, dh, self.attn.backward)
        self._gather()
        return dx


class TransformerDecoderLayer(_Block):
    """Causal self-attention, cross-attention to ``memory`` and feed-forward, each with a residual connection and
    a layer norm (pre- or post-norm as :class:`TransformerEncoderLayer`; cs231n's decoder layer is post-norm).

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, train_flg=True)``: tgt (N, S, E), memory (N, T, E)
    -> (N, S, E); ``backward(dout) -> (dtgt, dmemory)``.
    """

    _children = ("self_attn", "cross_attn", "ff", "norm1", "norm2", "norm3")

    def __init__(self, embed_dim: int, num_heads: int, dim_feedforward: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, approximate: str = "none", *, dtype: Any = np.float32,
                 seed: Any = None) -> None:
        super().__init__()
        E, p, dt, rng = self._setup("TransformerDecoderLayer", embed_dim, num_heads, dim_feedforward, dropout,
                                    norm_first, approximate, dtype, seed, 3)
        self.self_attn = MultiHeadAttention(E, num_heads, p, causal=True, dtype=dt, seed=rng)
        self.cross_attn = MultiHeadAttention(E, num_heads, p, dtype=dt, seed=rng)
        self._gather()

    def forward(self, tgt: Any, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,
                train_flg: bool = True) -> np.ndarray:
        where = "TransformerDecoderLayer.forward"
        E = self.self_attn.embed_dim
        x, memory = _tokens(tgt, where, E), _tokens(memory, where, E, "memory")
        h = self._residual(1, x, lambda a: self.self_attn.forward(a, attn_mask=tgt_mask, train_flg=train_flg),
                           train_flg)
        h = self._residual(2, h, lambda a: self.cross_attn.forward(a, memory, memory, memory_mask, train_flg),
                           train_flg)
        return self._output(self._residual(3, h, lambda a: self.ff.forward(a, train_flg), train_flg))

    def backward(self, dout: Any) -> tuple[np.ndarray, np.ndarray]:
        dout = self._dout(dout, "TransformerDecoderLayer.backward")
        dh, _ = self._residual_backward(3, dout, self.ff.backward)
        dh, (dkey, dvalue) = self._residual_backward(2, dh, self.cross_attn.backward)
        dx, _ = self._residual_backward(1, dh, self.self_attn.backward)
        self._gather()
        return dx, dkey + dvalue

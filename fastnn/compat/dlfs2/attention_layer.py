"""Deep Learning from Scratch 2's ``ch08/attention_layer.py`` on fastnn kernels: ``WeightSum``, ``AttentionWeight``,
``Attention`` and ``TimeAttention`` with the book's arguments, attributes and numbers.

``from attention_layer import TimeAttention`` becomes ``from fastnn.compat.dlfs2.attention_layer import
TimeAttention``. The book's attention is dot-product attention without a scale: for the encoder's states ``hs``
(N, T, H) and one decoder state ``h`` (N, H), the weights are ``a = softmax(hs @ h)`` (N, T) and the context is
``c = a @ hs`` (N, H). ``Attention`` and ``TimeAttention`` are one call of the fused attention kernel
(:func:`fastnn.kernels.attention_forward` with one head and ``scale=1``, the decoder's states as queries and the
encoder's as keys and values); its backward gives the book's ``dh`` as the query gradient and the book's ``dhs`` as
the sum of the key and value gradients. ``TimeAttention`` treats all decoder steps in that one call where the book
loops over them.

Differences from the book: inputs are validated (an error names the layer and the argument); the weights
(``Attention.attention_weight``, ``TimeAttention.attention_weights``, a list of T arrays (N, T_enc) as the book's)
are computed when first read, by the same kernel with the identity as values (``softmax(s) @ I``), so training does
not pay for them; ``TimeAttention.layers`` stays None (the book keeps one ``Attention`` per step); float rounding
differs from the book's (the kernel sums in BLAS order and exponentiates in its own tiles).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _validate
from ...backend import ops
from ._common import sequences

__all__ = ["WeightSum", "AttentionWeight", "Attention", "TimeAttention"]


def _states(hs: Any, h: Any, where: str, h_name: str, h_ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """``hs`` (N, T, H) and ``h`` ((N, H) or (N, T', H)) in their common float dtype."""
    hs = sequences(hs, where, "hs" if h_ndim == 2 else "hs_enc")
    h = _validate.float_array(h, where, h_name, ndim=h_ndim)
    N, _, H = hs.shape
    _validate.shape(h, (N, H) if h_ndim == 2 else (N, None, H), where, h_name)
    dt = np.result_type(hs, h)
    return hs.astype(dt, copy=False), h.astype(dt, copy=False)


def _qkv(hs: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's one-head views: queries (N, 1, S, H) from ``h`` ((N, H): S = 1), keys (N, 1, T, H) from
    ``hs``."""
    N, T, H = hs.shape
    return h.reshape(N, 1, -1, H), hs.reshape(N, 1, T, H)


def _identity(N: int, T: int, dtype: np.dtype) -> np.ndarray:
    """T one-hot rows per sample as the values (N, 1, T, T): the attention of them is the weights themselves."""
    return np.broadcast_to(np.eye(T, dtype=dtype), (N, 1, T, T))


def _weights(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """softmax(q k^T) (N, 1, S, T), by the kernel with the identity as values."""
    return ops.attention_forward(q, k, _identity(k.shape[0], k.shape[2], k.dtype), scale=1.0)[0]


class WeightSum:
    """The context ``c = sum_t a[:, t] * hs[:, t]``: hs (N, T, H), weights a (N, T) -> c (N, H)."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.cache = None

    def forward(self, hs: Any, a: Any) -> np.ndarray:
        hs, a = self._check(hs, a)
        # one (1, T) @ (T, H) product per sample: the book's WeightSum stands alone here (TimeAttention runs the
        # fused kernel), so it is not worth a kernel of its own
        c = np.stack([ops.matmul(a[n:n + 1], hs[n])[0] for n in range(hs.shape[0])])
        self.cache = (hs, a)
        return c.reshape(hs.shape[0], hs.shape[2])

    @staticmethod
    def _check(hs: Any, a: Any) -> tuple[np.ndarray, np.ndarray]:
        hs = sequences(hs, "WeightSum.forward", "hs")
        a = _validate.float_array(a, "WeightSum.forward", "a", ndim=2)
        _validate.shape(a, hs.shape[:2], "WeightSum.forward", "a")
        dt = np.result_type(hs, a)
        return hs.astype(dt, copy=False), a.astype(dt, copy=False)

    def backward(self, dc: Any) -> tuple[np.ndarray, np.ndarray]:
        """dc (N, H) -> dhs (N, T, H) (``a[:, t] * dc``), da (N, T) (``hs[:, t] . dc``)."""
        hs, a = self.cache
        N, T, H = hs.shape
        dc = _validate.float_array(dc, "WeightSum.backward", "dc", ndim=2).astype(hs.dtype, copy=False)
        _validate.shape(dc, (N, H), "WeightSum.backward", "dc")
        dhs = np.stack([ops.matmul(a[n].reshape(T, 1), dc[n:n + 1]) for n in range(N)])
        da = np.stack([ops.matmul(hs[n], dc[n].reshape(H, 1))[:, 0] for n in range(N)])
        return dhs.reshape(N, T, H), da.reshape(N, T)


class AttentionWeight:
    """The weights ``a = softmax(hs @ h)``: hs (N, T, H), h (N, H) -> a (N, T) (the book's ``Softmax`` layer is
    the kernel's softmax here)."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.cache = None

    def forward(self, hs: Any, h: Any) -> np.ndarray:
        hs, h = _states(hs, h, "AttentionWeight.forward", "h", 2)
        q, k = _qkv(hs, h)
        v = _identity(hs.shape[0], hs.shape[1], hs.dtype)
        a, lse = ops.attention_forward(q, k, v, scale=1.0)
        self.cache = (q, k, v, a, lse)
        return a.reshape(hs.shape[:2])

    def backward(self, da: Any) -> tuple[np.ndarray, np.ndarray]:
        """da (N, T) -> dhs (N, T, H), dh (N, H): the kernel's key and query gradients (the values, the identity,
        take none)."""
        q, k, v, a, lse = self.cache
        N, _, T, H = k.shape
        da = _validate.float_array(da, "AttentionWeight.backward", "da", ndim=2).astype(k.dtype, copy=False)
        _validate.shape(da, (N, T), "AttentionWeight.backward", "da")
        dq, dk, _ = ops.attention_backward(da.reshape(a.shape), q, k, v, a, lse, scale=1.0)
        return dk.reshape(N, T, H), dq.reshape(N, H)


class _Fused:
    """The fused attention of decoder states (queries) over encoder states (keys = values), forward and backward."""

    def _attend(self, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        out, lse = ops.attention_forward(q, k, k, scale=1.0)
        self._cache = (q, k, out, lse)
        self._weights = None
        return out

    def _attend_backward(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, k, out, lse = self._cache
        dq, dk, dv = ops.attention_backward(dout.reshape(out.shape), q, k, k, out, lse, scale=1.0)
        N, _, T, H = k.shape
        return (dk + dv).reshape(N, T, H), dq  # the encoder's states are both the keys and the values

    def _attention_weights(self) -> np.ndarray | None:
        """softmax(q k^T) (N, S, T) of the last forward pass, computed on first read."""
        if getattr(self, "_cache", None) is None:
            return None
        if self._weights is None:
            q, k, _, _ = self._cache
            self._weights = _weights(q, k)[:, 0]
        return self._weights


class Attention(_Fused):
    """Attention of one decoder state over the encoder's: hs (N, T, H), h (N, H) -> the context (N, H)."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self._cache = None

    @property
    def attention_weight(self) -> np.ndarray | None:
        """The weights (N, T) of the last forward pass (None before one)."""
        w = self._attention_weights()
        return None if w is None else w[:, 0]

    def forward(self, hs: Any, h: Any) -> np.ndarray:
        hs, h = _states(hs, h, "Attention.forward", "h", 2)
        return self._attend(*_qkv(hs, h)).reshape(h.shape)

    def backward(self, dout: Any) -> tuple[np.ndarray, np.ndarray]:
        """dout (N, H) -> dhs (N, T, H), dh (N, H)."""
        q = self._cache[0]
        N, H = q.shape[0], q.shape[3]
        dout = _validate.float_array(dout, "Attention.backward", "dout", ndim=2).astype(q.dtype, copy=False)
        _validate.shape(dout, (N, H), "Attention.backward", "dout")
        dhs, dq = self._attend_backward(dout)
        return dhs, dq.reshape(N, H)


class TimeAttention(_Fused):
    """Attention of every decoder state over the encoder's: hs_enc (N, T_enc, H), hs_dec (N, T, H) -> contexts
    (N, T, H), one fused kernel call for all T steps."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.layers = None
        self._cache = None

    @property
    def attention_weights(self) -> list[np.ndarray] | None:
        """The book's list of T weight arrays (N, T_enc), one per decoder step, of the last forward pass."""
        w = self._attention_weights()
        return None if w is None else [w[:, t] for t in range(w.shape[1])]

    def forward(self, hs_enc: Any, hs_dec: Any) -> np.ndarray:
        hs_enc, hs_dec = _states(hs_enc, hs_dec, "TimeAttention.forward", "hs_dec", 3)
        return self._attend(*_qkv(hs_enc, hs_dec)).reshape(hs_dec.shape)

    def backward(self, dout: Any) -> tuple[np.ndarray, np.ndarray]:
        """dout (N, T, H) -> dhs_enc (N, T_enc, H), dhs_dec (N, T, H)."""
        q = self._cache[0]
        N, _, T, H = q.shape
        dout = sequences(dout, "TimeAttention.backward", "dout").astype(q.dtype, copy=False)
        _validate.shape(dout, (N, T, H), "TimeAttention.backward", "dout")
        dhs_enc, dq = self._attend_backward(dout)
        return dhs_enc, dq.reshape(N, T, H)
